"""models/MANIFEST.json ties every released file to its hash and its measured accuracy."""

import json
import os
import re

import numpy as np
import pytest

from tf_gtsrb.models import flatbuffer
from tf_gtsrb.export import release

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
MODELS = os.path.join(ROOT, "models")


@pytest.fixture(scope="module")
def manifest():
  with open(os.path.join(MODELS, release.MANIFEST_FILE)) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def sample_test_split():
  from tf_gtsrb.data import input_pipeline  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.data import prepare  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    summary = prepare.prepare_dataset(tmp, source="official", balance_target=0)
    return input_pipeline.load_arrays(summary["dataset_dir"], "test")


def _tflite_models(manifest):
  return sorted(name for name in manifest["files"] if name.endswith(".tflite"))


def test_every_released_file_matches_the_manifest(manifest):
  assert release.manifest_problems(MODELS, manifest) == []
  assert "traffic_sign_cnn_pruned_int8.tflite" in manifest["files"]


def test_a_changed_file_is_detected(manifest, tmp_path):
  for name in manifest["files"]:
    os.makedirs(os.path.dirname(tmp_path / name) or tmp_path, exist_ok=True)
    with open(os.path.join(MODELS, name), "rb") as src, open(tmp_path / name, "wb") as dst:
      dst.write(src.read())
  with open(tmp_path / "labels.txt", "a") as f:
    f.write("x")
  (tmp_path / "extra.bin").write_bytes(b"1")
  problems = release.manifest_problems(str(tmp_path), manifest)
  assert any("labels.txt" in p for p in problems)
  assert any("extra.bin" in p for p in problems)


@pytest.mark.slow
def test_every_released_model_scores_its_pinned_sample_count(manifest, sample_test_split):
  images, labels = sample_test_split
  assert len(labels) == 430
  for name in _tflite_models(manifest):
    if name not in manifest["metrics"]:
      continue  # A compiled NPU build, not runnable on the CPU interpreter.
    metrics = manifest["metrics"][name]
    assert metrics["sample_images"] == len(labels)
    with open(os.path.join(MODELS, name), "rb") as f:
      assert release.count_correct(f.read(), images, labels) == metrics["sample_correct"], name


def _perturb_last_layer(content, seed=0):
  """The model with int8 noise added to its last FULLY_CONNECTED weights (same size)."""
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  graph = flatbuffer.parse(content)
  last_fc = [op for op in graph.operators if op.name == "FULLY_CONNECTED"][-1]
  interpreter = Interpreter(model_content=content)
  weights = interpreter.get_tensor(last_fc.inputs[1])
  raw = weights.tobytes()
  start = content.find(raw)
  assert start > 0 and content.find(raw, start + 1) == -1
  noise = np.random.default_rng(seed).integers(-12, 13, size=weights.size)
  noisy = np.clip(weights.astype(np.int32).ravel() + noise, -127, 127).astype(np.int8)
  return content[:start] + noisy.tobytes() + content[start + len(raw):]


@pytest.mark.slow
def test_a_slightly_worse_model_of_the_same_size_fails_the_pin(manifest, sample_test_split):
  images, labels = sample_test_split
  name = "traffic_sign_cnn_pruned_int8.tflite"
  with open(os.path.join(MODELS, name), "rb") as f:
    content = f.read()
  worse = _perturb_last_layer(content)
  assert len(worse) == len(content)
  assert release.count_correct(worse, images, labels) != manifest["metrics"][name]["sample_correct"]


def test_c_header_and_source_hold_the_int8_model():
  with open(os.path.join(MODELS, "traffic_sign_cnn_pruned_int8.tflite"), "rb") as f:
    content = f.read()
  with open(os.path.join(MODELS, "traffic_sign_cnn_pruned_int8.cc")) as f:
    source = f.read()
  with open(os.path.join(MODELS, "traffic_sign_cnn_pruned_int8.h")) as f:
    header = f.read()
  array = re.search(r"unsigned char (\w+)\[\]", source).group(1)
  length = re.search(r"(?:unsigned )?int (\w+) = (\d+);", source)
  assert array in header and length.group(1) in header
  assert int(length.group(2)) == len(content)
  body = source[source.index("{") + 1:source.index("}")]
  values = bytes(int(v, 16) for v in re.findall(r"0x[0-9a-fA-F]{2}", body))
  assert values == content


def test_float_release_opens_and_is_a_float_image_classifier():
  path = os.path.join(MODELS, "traffic_sign_cnn_float32.tflite")
  graph = flatbuffer.parse(flatbuffer.read_file(path), path)
  image = graph.tensors[graph.inputs[0]]
  assert image.dtype == "float32" and image.shape == (1, 32, 32, 3)
  assert graph.tensors[graph.outputs[0]].shape == (1, 43)


def test_readme_numbers_match_the_manifest(manifest):
  with open(os.path.join(MODELS, "README.md")) as f:
    readme = f.read()
  for name in ("traffic_sign_cnn_float32.tflite", "traffic_sign_cnn_pruned_int8.tflite"):
    accuracy = manifest["metrics"][name]["test_accuracy"]["litert"]
    row = next(line for line in readme.splitlines() if line.startswith(f"| `{name}`"))
    assert f"{100 * accuracy:.2f}%" in row, row


def test_benchmark_accuracies_of_released_files_go_into_the_manifest(tmp_path):
  from tf_gtsrb import errors  # pylint: disable=g-import-not-at-top
  (tmp_path / "a.tflite").write_bytes(b"x")
  benchmark = {
      "data": {"split": "test", "num_images": release.TEST_IMAGES},
      "models": {"A": {"path": "/elsewhere/a.tflite", "format": "tflite",
                       "metrics": {"accuracy": 0.98}},
                 "K": {"path": "/elsewhere/k.keras", "format": "keras",
                       "metrics": {"accuracy": 0.99}},
                 "B": {"path": "/elsewhere/b.tflite", "format": "tflite",
                       "metrics": {"accuracy": 0.5}}},
      "runtimes": {"tflite_micro": {"A": {"accuracy": 0.981}},
                   "mediapipe": {"A": {"skipped": "int8 input"}}}}
  assert release.benchmark_metrics(benchmark, str(tmp_path)) == {
      "a.tflite": {"test_accuracy": {"litert": 0.98, "tflite_micro": 0.981}}}
  benchmark["data"]["num_images"] = 430
  with pytest.raises(errors.ConfigError, match="not the official test set"):
    release.benchmark_metrics(benchmark, str(tmp_path))


def test_the_front_page_table_matches_the_manifest(manifest):
  """README.md's released-models table: each accuracy named there and each size, as measured."""
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  shown = {"traffic_sign_cnn_pruned_int8.tflite": ("litert", "tflite_micro"),
           "traffic_sign_cnn_pruned_uint8.tflite": ("litert", "mediapipe"),
           "traffic_sign_cnn_pruned_sparse_int8.tflite": ("litert", "tflite_micro"),
           "traffic_sign_cnn_float32.tflite": ("litert",)}
  for name, runtimes in shown.items():
    row = next(line for line in readme.splitlines() if line.startswith(f"| `{name}`"))
    accuracy = manifest["metrics"][name]["test_accuracy"]
    for runtime in runtimes:
      assert f"{100 * accuracy[runtime]:.2f}%" in row, (name, runtime, row)
    assert f"{manifest['files'][name]['bytes'] / 1024:,.1f} KB" in row, row

"""Tests for tf_gtsrb.evaluation.corruptions and robustness (no TensorFlow, no model)."""

import json

import numpy as np
import pytest

from tf_gtsrb import errors
from tf_gtsrb.evaluation import corruptions
from tf_gtsrb.evaluation import robustness


def _images(n=6, height=32, width=32):
  """Smooth synthetic 'signs': a coloured disk with a bar on a gradient background."""
  rng = np.random.default_rng(1)
  rows, cols = np.mgrid[0:height, 0:width]
  out = []
  for _ in range(n):
    background = (rows[..., None] * rng.uniform(2, 6, 3) + 40).clip(0, 255)
    disk = ((rows - height / 2) ** 2 + (cols - width / 2) ** 2) < (min(height, width) / 3) ** 2
    image = background.copy()
    image[disk] = rng.uniform(60, 230, 3)
    image[(np.abs(rows - height / 2) < height / 12) & disk] = 250
    out.append(image.astype(np.uint8))
  return np.stack(out)


@pytest.mark.parametrize("kind", corruptions.KINDS)
def test_each_kind_is_deterministic_changes_the_image_and_keeps_shape(kind):
  image = _images(1)[0]
  for severity in corruptions.SEVERITIES:
    a = corruptions.corrupt(image, kind, severity, index=3, seed=7)
    b = corruptions.corrupt(image.copy(), kind, severity, index=3, seed=7)
    assert a.dtype == np.uint8 and a.shape == image.shape
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, image)


@pytest.mark.parametrize("kind", corruptions.KINDS)
def test_severity_is_monotone_in_mean_absolute_difference(kind):
  images = _images(8)
  differences = [np.mean([np.abs(corruptions.corrupt(im, kind, s, index=i).astype(float)
                                 - im).mean() for i, im in enumerate(images)])
                 for s in corruptions.SEVERITIES]
  assert all(a < b for a, b in zip(differences, differences[1:])), differences


@pytest.mark.parametrize("kind", corruptions.KINDS)
def test_works_on_non_square_sizes(kind):
  image = _images(1, height=50, width=37)[0]
  out = corruptions.corrupt(image, kind, 5, index=0)
  assert out.shape == (50, 37, 3) and out.dtype == np.uint8
  assert not np.array_equal(out, image)


def test_seed_is_per_image_index_not_batch_position():
  images = _images(5)
  batch = corruptions.corrupt_batch(images, "gaussian_noise", 3, indices=[10, 11, 12, 13, 14])
  alone = corruptions.corrupt(images[2], "gaussian_noise", 3, index=12)
  np.testing.assert_array_equal(batch[2], alone)
  other_seed = corruptions.corrupt(images[2], "gaussian_noise", 3, index=12, seed=1)
  assert not np.array_equal(other_seed, alone)


def test_parse_and_check_reject_bad_values():
  assert corruptions.parse_kinds("all") == corruptions.KINDS
  assert corruptions.parse_kinds("fog, jpeg") == ("fog", "jpeg")
  assert corruptions.parse_severities("1-3,5") == (1, 2, 3, 5)
  with pytest.raises(errors.ConfigError, match="unknown corruption 'smoke'"):
    corruptions.parse_kinds("fog,smoke")
  with pytest.raises(errors.ConfigError, match="out of range"):
    corruptions.parse_severities("0,3")
  with pytest.raises(errors.ConfigError, match="out of range"):
    corruptions.parse_severities("6")
  with pytest.raises(errors.ConfigError, match="severity"):
    corruptions.corrupt(_images(1)[0], "fog", 6)
  with pytest.raises(errors.ConfigError, match="subset"):
    robustness.select_indices(100, 0)


def test_select_indices_is_a_seeded_sorted_sample():
  a = robustness.select_indices(1000, 50, seed=3)
  assert len(a) == 50 and len(set(a)) == 50 and np.all(np.diff(a) > 0)
  np.testing.assert_array_equal(a, robustness.select_indices(1000, 50, seed=3))
  assert not np.array_equal(a, robustness.select_indices(1000, 50, seed=4))
  np.testing.assert_array_equal(robustness.select_indices(10, None), np.arange(10))


def test_evaluate_scores_and_summaries(tmp_path):
  images = _images(6)
  labels = np.arange(6)
  clean_bytes = {im.tobytes(): i for i, im in enumerate(images)}

  def recognises_only_clean(batch):  # Right on unchanged images, wrong on changed ones.
    scores = np.zeros((len(batch), 6))
    for row, im in enumerate(batch):
      scores[row, clean_bytes.get(im.tobytes(), (row + 1) % 6)] = 1
    return scores

  result = robustness.evaluate(recognises_only_clean, images, labels, kinds=["fog", "jpeg"],
                               severities=[1, 5])
  assert result["clean_accuracy"] == 1.0
  assert result["accuracy"] == {"fog": {"1": 0.0, "5": 0.0}, "jpeg": {"1": 0.0, "5": 0.0}}
  assert result["mean_corruption_accuracy"] == 0.0 and result["num_images"] == 6
  summary = robustness.summarize({"a": {"1": 0.9, "2": 0.5}, "b": {"1": 0.6, "2": 0.6}}, 0.95)
  assert summary["kind_mean"] == pytest.approx({"a": 0.7, "b": 0.6})
  assert summary["mean_corruption_accuracy"] == pytest.approx(0.65)
  assert summary["worst_kind"] == "b"
  paths = robustness.write_results(summary | {"num_images": 2, "seed": 0,
                                              "image_size": [32, 32]}, str(tmp_path), "m")
  with open(paths["json"]) as f:
    assert json.load(f)["accuracy"]["a"]["2"] == 0.5
  assert "| a | 90.00 | 50.00 | 70.00 |" in open(paths["markdown"]).read()
  assert open(paths["png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_benchmark_tool_scores_the_corruption_suite(tiny_data_dir, tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  import tool_runner  # pylint: disable=g-import-not-at-top
  model = os.path.join(os.path.dirname(__file__), os.pardir, "models",
                       "traffic_sign_cnn_pruned_int8.tflite")
  out = tmp_path / "bench"
  done = tool_runner.run_tool(
      "benchmark_tflite", f"--models=int8={model}", f"--data_dir={tiny_data_dir}",
      f"--output_dir={out}", "--latency_rounds=2", "--warmup=1", "--memory=false",
      "--html=none", "--corruptions", "--corruption_kinds=fog,jpeg",
      "--corruption_severities=1,5", "--corruption_subset=40")
  assert done.returncode == 0, done.stderr
  with open(out / "corruptions" / "int8" / "corruptions.json") as f:
    result = json.load(f)
  assert set(result["accuracy"]) == {"fog", "jpeg"}
  assert set(result["accuracy"]["jpeg"]) == {"1", "5"}
  assert 0.0 <= result["mean_corruption_accuracy"] <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--corruption_kinds=hail", "--corruption_severities=9",
                                  "--corruption_subset=-5"])
def test_benchmark_tool_refuses_bad_corruption_flags(tiny_data_dir, tmp_path, flag):
  import os  # pylint: disable=g-import-not-at-top
  import tool_runner  # pylint: disable=g-import-not-at-top
  model = os.path.join(os.path.dirname(__file__), os.pardir, "models",
                       "traffic_sign_cnn_pruned_int8.tflite")
  done = tool_runner.run_tool("benchmark_tflite", f"--models=int8={model}",
                              f"--data_dir={tiny_data_dir}", f"--output_dir={tmp_path}",
                              "--corruptions", flag)
  assert done.returncode != 0
  assert "error:" in done.stderr and "Traceback" not in done.stderr

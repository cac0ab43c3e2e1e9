"""Deployable files: TFLite metadata, the C array (compiled for real) and the TFLite Micro arena."""

import filecmp
import os
import shutil
import subprocess

import numpy as np
import pytest

from tf_gtsrb import errors
from tf_gtsrb.data import class_names
from tf_gtsrb.export import c_array
from tf_gtsrb.export import metadata
from tf_gtsrb.export import micro
from tf_gtsrb.export import release

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
INT8 = os.path.join(ROOT, "models", "traffic_sign_cnn_pruned_int8.tflite")


@pytest.fixture(scope="module")
def int8_bytes():
  with open(INT8, "rb") as f:
    return f.read()


def _outputs(content, inputs):
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  interpreter = Interpreter(model_content=content)
  interpreter.allocate_tensors()
  interpreter.set_tensor(interpreter.get_input_details()[0]["index"], inputs)
  interpreter.invoke()
  return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_metadata_reads_back_and_leaves_predictions_unchanged(int8_bytes):
  described = metadata.add_metadata(int8_bytes, metadata.ModelInfo(name="my_model"))
  record = metadata.read_metadata(described)
  assert record["name"] == "my_model"
  assert record["license"] == "Apache-2.0" and record["version"]
  assert list(record["output"]["labels"]) == list(class_names.CLASS_NAMES)
  assert record["input"]["mean"] and record["input"]["std"]
  inputs = np.random.default_rng(0).integers(-128, 128, (1, 32, 32, 3)).astype(np.int8)
  np.testing.assert_array_equal(_outputs(described, inputs), _outputs(int8_bytes, inputs))


def test_released_models_carry_metadata():
  for name in ("traffic_sign_cnn_pruned_int8.tflite", "traffic_sign_cnn_pruned_uint8.tflite",
               "traffic_sign_cnn_float32.tflite"):
    with open(os.path.join(ROOT, "models", name), "rb") as f:
      data = f.read()
    record = metadata.read_metadata(data, name)
    assert record["name"] == os.path.splitext(name)[0]
    assert len(record["output"]["labels"]) == 43
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
    signature = Interpreter(model_content=data).get_signature_list()
    assert signature == {"serving_default": {"inputs": ["image"], "outputs": ["probabilities"]}}


def test_released_uint8_variant_is_the_int8_model_behind_a_uint8_interface(tmp_path):
  shutil.copy(os.path.join(ROOT, "models", "traffic_sign_cnn_pruned_int8.tflite"), tmp_path)
  release.write_uint8_variant(str(tmp_path))
  assert filecmp.cmp(tmp_path / "traffic_sign_cnn_pruned_uint8.tflite",
                     os.path.join(ROOT, "models", "traffic_sign_cnn_pruned_uint8.tflite"),
                     shallow=False)


def test_a_model_without_metadata_is_a_model_error(int8_bytes):
  plain = metadata.add_metadata(int8_bytes, metadata.ModelInfo(name="x"))
  with pytest.raises(errors.ModelError):
    metadata.read_metadata(b"TFL3" * 8, "junk.tflite")
  assert metadata.read_metadata(plain)["name"] == "x"


@pytest.mark.parametrize("name", ["int", "class", "1abc", "a-b", "_x", "a__b", "main", ""])
def test_bad_array_names_are_refused(int8_bytes, name):
  with pytest.raises(errors.ConfigError):
    c_array.to_c_files(int8_bytes, name)


def test_array_and_arena_names_come_from_the_model_name():
  assert c_array.array_name_for("traffic_sign_cnn_pruned_int8") == (
      "g_traffic_sign_cnn_pruned_int8_model")
  assert c_array.array_name_for("my-model v2") == "g_my_model_v2_model"
  assert c_array.arena_constant_for("g_traffic_sign_cnn_pruned_int8_model") == (
      "kTrafficSignCnnPrunedInt8TensorArenaSize")


def test_measured_arena_is_the_smallest_that_runs(int8_bytes):
  arena = micro.tensor_arena(int8_bytes)
  measured = arena["measured_bytes"]
  assert measured % 16 == 0
  assert arena["bytes"] >= measured * 1.1 and arena["bytes"] % 16 == 0
  assert micro._runs_in(int8_bytes, measured)  # pylint: disable=protected-access
  assert not micro._runs_in(int8_bytes, measured - 16)  # pylint: disable=protected-access


_MAIN = r"""
#include <cstdio>
#include "MODEL.h"
int main() {
  std::printf("%d %d %d\n", ARRAY_len, static_cast<int>(ARRAY[0] == ARRAY[0]), ARENA);
  return 0;
}
"""


@pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler (g++) on PATH")
def test_generated_c_files_compile_with_warnings_as_errors(int8_bytes, tmp_path):
  stem = "traffic_sign_cnn_pruned_int8"
  arena = micro.tensor_arena(int8_bytes)
  header, source = c_array.write_c_files(int8_bytes, str(tmp_path), file_stem=stem, arena=arena)
  array = c_array.array_name_for(stem)
  main = (_MAIN.replace("MODEL", stem).replace("ARRAY", array)
          .replace("ARENA", c_array.arena_constant_for(array)))
  (tmp_path / "main.cc").write_text(main)
  binary = str(tmp_path / "model_main")
  subprocess.run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-o", binary,
                  str(tmp_path / "main.cc"), source], check=True, capture_output=True,
                 text=True, timeout=300, cwd=tmp_path)
  printed = subprocess.run([binary], check=True, capture_output=True, text=True).stdout.split()
  assert printed == [str(len(int8_bytes)), "1", str(arena["bytes"])]


@pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler (g++) on PATH")
def test_released_c_files_compile_and_hold_the_model(tmp_path):
  models = os.path.join(ROOT, "models")
  stem = "traffic_sign_cnn_pruned_int8"
  with open(os.path.join(models, stem + ".h")) as f:
    header = f.read()
  array = next(word for word in header.replace("[", " ").split() if word.startswith("g_"))
  arena = next(word for word in header.split() if word.endswith("TensorArenaSize"))
  main = _MAIN.replace("MODEL", os.path.join(models, stem)).replace("ARRAY", array).replace(
      "ARENA", arena)
  (tmp_path / "main.cc").write_text(main)
  binary = str(tmp_path / "released_main")
  subprocess.run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-o", binary,
                  str(tmp_path / "main.cc"), os.path.join(models, stem + ".cc")],
                 check=True, capture_output=True, text=True, timeout=300,
                 cwd=models)
  printed = subprocess.run([binary], check=True, capture_output=True, text=True).stdout.split()
  assert printed[0] == str(os.path.getsize(INT8))


@pytest.mark.parametrize("name", ["traffic_sign_cnn_float32.tflite",
                                  "traffic_sign_cnn_pruned_uint8.tflite"])
def test_mediapipe_classifies_with_the_released_metadata(name):
  vision = pytest.importorskip("mediapipe.tasks.python.vision")
  import mediapipe as mp  # pylint: disable=g-import-not-at-top
  from mediapipe.tasks.python.core import base_options  # pylint: disable=g-import-not-at-top
  options = vision.ImageClassifierOptions(
      base_options=base_options.BaseOptions(model_asset_path=os.path.join(ROOT, "models", name)),
      max_results=2)
  with vision.ImageClassifier.create_from_options(options) as classifier:
    result = classifier.classify(
        mp.Image.create_from_file(os.path.join(ROOT, "docs", "images", "stop.png")))
  best = result.classifications[0].categories[0]
  assert (best.index, best.category_name) == (14, "Stop")

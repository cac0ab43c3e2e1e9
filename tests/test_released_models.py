"""The files committed under models/: what models/README.md promises of them holds.

The INT8 model is run exactly as the documented input contract says (int8 =
pixel - 128, no other preprocessing) on the bundled sample's test images, which
are official test images, through the LiteRT interpreter.
"""

import os
import re

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import numpy as np
import pytest
from ai_edge_litert import interpreter as litert

from tf_gtsrb import io_utils
from tf_gtsrb.data import class_names
from tf_gtsrb.data import input_pipeline
from tf_gtsrb.export import c_array
from tf_gtsrb.export import labels
from tf_gtsrb.export import micro
from tf_gtsrb.export import tflite

MODELS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")
INT8_FILE = os.path.join(MODELS_DIR, "traffic_sign_cnn_pruned_int8.tflite")


@pytest.fixture(scope="module")
def int8_bytes():
  with open(INT8_FILE, "rb") as f:
    return f.read()


def test_int8_model_is_a_fully_integer_flatbuffer_within_100_kb(int8_bytes):
  assert len(int8_bytes) <= 100 * 1024
  assert not tflite.integer_problems(int8_bytes)
  details = tflite.io_details(int8_bytes)
  (image,), (scores,) = details["inputs"], details["outputs"]
  assert image["dtype"] == "int8" and list(image["shape"]) == [1, 32, 32, 3]
  assert tflite.input_quantization_ok(int8_bytes)
  assert scores["dtype"] == "int8" and list(scores["shape"]) == [1, class_names.NUM_CLASSES]


def test_c_array_micro_ops_and_labels_match_the_flatbuffer(int8_bytes):
  with open(os.path.join(MODELS_DIR, "traffic_sign_cnn_pruned_int8.cc")) as f:
    assert c_array.parse_c_array(f.read(), c_array.array_name_for("traffic_sign_cnn_pruned_int8")) == int8_bytes
  with open(os.path.join(MODELS_DIR, "micro_ops.txt")) as f:
    assert f.read() == micro.op_resolver_snippet(int8_bytes)
  assert labels.read_labels(os.path.join(MODELS_DIR, "labels.txt")) == tuple(
      class_names.CLASS_NAMES)


def test_readme_states_the_measured_test_accuracy():
  report = io_utils.read_json(os.path.join(MODELS_DIR, "report.json"))
  int8 = [m for name, m in report["benchmark"]["models"].items() if "INT8" in name
          and "QAT" in name]
  assert len(int8) == 1
  with open(os.path.join(MODELS_DIR, "README.md")) as f:
    row = re.search(r"`traffic_sign_cnn_pruned_int8\.tflite` \|[^|]*\| ([\d.]+)%", f.read())
  assert row and float(row.group(1)) == round(100 * int8[0]["metrics"]["accuracy"], 2)


def test_input_contract_classifies_official_test_images(int8_bytes, tiny_data_dir):
  images, expected = input_pipeline.load_arrays(tiny_data_dir, "test")
  runner = litert.Interpreter(model_content=int8_bytes, num_threads=1)
  runner.allocate_tensors()
  (image,), (scores,) = runner.get_input_details(), runner.get_output_details()
  predicted = []
  for pixels in images:
    runner.set_tensor(image["index"], (pixels.astype(np.int16) - 128).astype(np.int8)[None])
    runner.invoke()
    predicted.append(int(np.argmax(runner.get_tensor(scores["index"])[0])))
  assert np.mean(np.array(predicted) == expected) >= 0.95

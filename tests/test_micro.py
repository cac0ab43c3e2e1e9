"""Tests of tf_gtsrb.export.micro: op resolver code and tensor-arena estimate."""

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import numpy as np
import pytest

from tf_gtsrb.models import flatbuffer
from tf_gtsrb.export import micro
from tf_gtsrb.export import tflite
import synthetic

SIZE = 32
CHANNELS = (4, 8, 8, 16)


@pytest.fixture(scope="module")
def model():
  return synthetic.tiny_cnn(input_size=SIZE, channels=CHANNELS)


@pytest.fixture(scope="module")
def images():
  """Calibration images for the `int8_bytes` fixture."""
  return np.random.default_rng(0).integers(0, 256, (16, SIZE, SIZE, 3), dtype=np.uint8)


def test_resolver_lists_exactly_the_models_ops(int8_bytes):
  snippet = micro.op_resolver_snippet(int8_bytes)
  lines = snippet.strip().splitlines()
  ops = tflite.list_ops(int8_bytes)
  assert lines[0] == f"static tflite::MicroMutableOpResolver<{len(ops)}> resolver;"
  assert lines[1:] == [f"resolver.{micro.resolver_method(op)}();" for op in ops]
  for method in ("AddConv2D", "AddMaxPool2D", "AddMean", "AddFullyConnected", "AddSoftmax"):
    assert f"resolver.{method}();" in lines


@pytest.mark.parametrize("op,method", [
    ("CONV_2D", "AddConv2D"), ("MAX_POOL_2D", "AddMaxPool2D"), ("MEAN", "AddMean"),
    ("FULLY_CONNECTED", "AddFullyConnected"), ("SOFTMAX", "AddSoftmax"),
    ("QUANTIZE", "AddQuantize"), ("DEQUANTIZE", "AddDequantize"), ("RESHAPE", "AddReshape"),
    ("DEPTHWISE_CONV_2D", "AddDepthwiseConv2D"), ("AVERAGE_POOL_2D", "AddAveragePool2D"),
    ("RESIZE_NEAREST_NEIGHBOR", "AddResizeNearestNeighbor"), ("L2_POOL_2D", "AddL2Pool2D"),
    ("BATCH_MATMUL", "AddBatchMatMul"), ("RELU6", "AddRelu6"), ("HARD_SWISH", "AddHardSwish"),
])
def test_resolver_method_names(op, method):
  assert micro.resolver_method(op) == method


def _activation_sizes(data):
  graph = flatbuffer.parse(data)
  return [t.nbytes for t in graph.tensors if not t.is_constant]


def test_arena_estimate_covers_the_activations(int8_bytes):
  plan = micro.arena_plan(int8_bytes)
  largest = max(_activation_sizes(int8_bytes))
  assert plan["largest_tensor_bytes"] == largest == SIZE * SIZE * CHANNELS[0]
  # The peak is conv1: its int8 input and output are live together.
  assert plan["activation_peak_bytes"] == SIZE * SIZE * 3 + SIZE * SIZE * CHANNELS[0]
  assert plan["peak_op"]["name"] == "CONV_2D"
  estimate = micro.estimate_arena_bytes(int8_bytes)
  assert estimate == plan["estimate_bytes"]
  assert estimate % micro.ALIGNMENT == 0
  assert estimate >= plan["activation_peak_bytes"] + micro.FIXED_OVERHEAD_BYTES > largest
  assert estimate < 4 * plan["activation_peak_bytes"]


def test_float_model_needs_four_times_the_activation_memory(int8_bytes, float_bytes):
  assert (micro.arena_plan(float_bytes)["activation_peak_bytes"]
          == 4 * micro.arena_plan(int8_bytes)["activation_peak_bytes"])
  assert micro.estimate_arena_bytes(float_bytes) > micro.estimate_arena_bytes(int8_bytes)


def test_estimate_is_enough_for_tflite_micro(int8_bytes):
  """With the tflite-micro Python package installed, the estimate runs the model."""
  runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
  estimate = micro.estimate_arena_bytes(int8_bytes)
  interpreter = runtime.Interpreter.from_bytes(int8_bytes, arena_size=estimate)
  details = interpreter.get_input_details(0)
  interpreter.set_input(np.zeros(details["shape"], details["dtype"]), 0)
  interpreter.invoke()
  assert interpreter.get_output(0).shape == (1, 43)
  with pytest.raises(Exception):  # The activations alone do not fit.
    runtime.Interpreter.from_bytes(
        int8_bytes, arena_size=micro.arena_plan(int8_bytes)["activation_peak_bytes"])

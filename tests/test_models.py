"""Model builders: parameter counts, shapes and argument checks."""

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import numpy as np
import pytest

from tf_gtsrb import errors
from tf_gtsrb.models import MODEL_NAMES
from tf_gtsrb.models import alexnet
from tf_gtsrb.models import build_model
from tf_gtsrb.models import traffic_sign_cnn


def _trainable(model):
  return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _cnn_params(channels, num_classes=43):
  """Trainable parameters of TrafficSignCNN, counted by hand: bias-free 3x3 convs, BN, dense."""
  inputs = (3,) + tuple(channels[:-1])
  conv = sum(9 * i * o for i, o in zip(inputs, channels))
  return conv + 2 * sum(channels) + channels[-1] * num_classes + num_classes


def test_model_names():
  assert set(MODEL_NAMES) == {"traffic_sign_cnn", "alexnet"}


def test_traffic_sign_cnn_default_has_published_parameter_count():
  model = build_model("traffic_sign_cnn")
  assert _trainable(model) == 399_947
  assert _cnn_params(traffic_sign_cnn.DEFAULT_CHANNELS) == 399_947
  assert traffic_sign_cnn.channels_of(model) == (32, 64, 128, 256)
  assert model.output_shape == (None, 43)
  assert model.input_shape == (None, 32, 32, 3)


def test_traffic_sign_cnn_layer_names():
  model = traffic_sign_cnn.build(channels=(4, 8, 8, 16))
  names = [layer.name for layer in model.layers]
  for i in range(1, 5):
    for prefix in ("conv", "bn", "relu", "pool"):
      assert f"{prefix}{i}" in names
  for name in ("gap", "dropout", "logits", "probabilities"):
    assert name in names
  assert not model.get_layer("conv1").use_bias


def test_traffic_sign_cnn_pruned_channels():
  channels = (21, 41, 82, 164)
  model = build_model("traffic_sign_cnn", channels=channels)
  assert model.output_shape == (None, 43)
  assert traffic_sign_cnn.channels_of(model) == channels
  assert _trainable(model) == _cnn_params(channels)
  probabilities = model(np.random.default_rng(0).random((2, 32, 32, 3), np.float32))
  np.testing.assert_allclose(np.sum(probabilities, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("multiplier, expected", [
    (0.5, (16, 32, 64, 128)),
    (0.25, (8, 16, 32, 64)),
    (2.0, (64, 128, 256, 512)),
])
def test_traffic_sign_cnn_width_multiplier(multiplier, expected):
  model = traffic_sign_cnn.build(width_multiplier=multiplier)
  assert traffic_sign_cnn.channels_of(model) == expected
  assert _trainable(model) == _cnn_params(expected)


def test_traffic_sign_cnn_tiny_multiplier_keeps_one_channel():
  model = traffic_sign_cnn.build(channels=(1, 2, 2, 4), width_multiplier=0.1)
  assert traffic_sign_cnn.channels_of(model) == (1, 1, 1, 1)


def test_traffic_sign_cnn_other_input_size():
  model = traffic_sign_cnn.build(channels=(4, 8, 8, 16), input_size=48)
  assert model.input_shape == (None, 48, 48, 3)
  assert model.output_shape == (None, 43)
  # The smallest size that survives four 2x2 poolings.
  assert traffic_sign_cnn.build(channels=(4, 8, 8, 16), input_size=16).output_shape == (None, 43)


@pytest.mark.parametrize("channels", [(32, 64, 128), (32, 64, 128, 256, 512), ()])
def test_traffic_sign_cnn_rejects_wrong_number_of_channels(channels):
  with pytest.raises(errors.ConfigError, match="channels"):
    traffic_sign_cnn.build(channels=channels)


@pytest.mark.parametrize("input_size", [15, 8, 0])
def test_traffic_sign_cnn_rejects_too_small_input(input_size):
  with pytest.raises(errors.ConfigError, match="input_size"):
    traffic_sign_cnn.build(channels=(4, 8, 8, 16), input_size=input_size)


def test_traffic_sign_cnn_rejects_bad_dropout():
  with pytest.raises(errors.ConfigError, match="dropout"):
    traffic_sign_cnn.build(channels=(4, 8, 8, 16), dropout=1.0)


def test_unknown_model_name():
  with pytest.raises(errors.ConfigError, match="resnet") as raised:
    build_model("resnet")
  assert "traffic_sign_cnn" in str(raised.value)  # Lists the known ones.
  assert isinstance(raised.value, ValueError)


def test_alexnet_at_published_size():
  model = build_model("alexnet")
  assert model.input_shape == (None, 227, 227, 3)
  assert model.output_shape == (None, 43)
  assert model.get_layer("conv1").kernel_size == (11, 11)
  assert model.get_layer("conv1").strides == (4, 4)
  # 227 -> conv1 55 -> pool 27 -> pool 13 -> pool 6: 6 * 6 * 256 features into fc6.
  assert model.get_layer("flatten").output_shape == (None, 6 * 6 * 256)
  convs = [(11 * 11 * 3, 96), (5 * 5 * 96, 256), (9 * 256, 384), (9 * 384, 384), (9 * 384, 256)]
  expected = (sum(fan_in * out + 2 * out for fan_in, out in convs)  # bias-free convs + BN
              + 9216 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 43 + 43)
  assert _trainable(model) == expected == 58_458_891
  assert model.count_params() == expected + 2 * (96 + 256 + 384 + 384 + 256)  # BN moving stats


def test_alexnet_at_32_pixels():
  model = alexnet.build(input_size=32, dense_units=256)
  assert model.input_shape == (None, 32, 32, 3)
  assert model.output_shape == (None, 43)
  assert model.get_layer("conv1").kernel_size == (5, 5)
  probabilities = model(np.zeros((1, 32, 32, 3), np.float32))
  assert probabilities.shape == (1, 43)


def test_alexnet_rejects_too_small_input():
  with pytest.raises(errors.ConfigError, match="input_size"):
    alexnet.build(input_size=7, dense_units=16)


def test_unknown_builder_argument():
  with pytest.raises(errors.ConfigError, match="dense_units") as raised:
    build_model("traffic_sign_cnn", dense_units=16)
  assert "channels" in str(raised.value)  # Lists the arguments it takes.


def _separable_params(channels, separable_blocks, num_classes=43):
  """Trainable parameters counted by hand: the last blocks a 3x3 depthwise conv (with its BN)
  then a 1x1 conv, the others bias-free 3x3 convs; BN after each conv, then the dense."""
  inputs = (3,) + tuple(channels[:-1])
  total = channels[-1] * num_classes + num_classes
  for block, (i, o) in enumerate(zip(inputs, channels), start=1):
    if block > len(channels) - separable_blocks:
      total += 9 * i + 2 * i + i * o + 2 * o
    else:
      total += 9 * i * o + 2 * o
  return total


def test_separable_variant_counts_and_layers():
  channels = (24, 64, 144, 320)
  model = traffic_sign_cnn.build(channels=channels, separable_blocks=2)
  assert _trainable(model) == _separable_params(channels, 2) == 86_963
  assert traffic_sign_cnn.channels_of(model) == channels
  names = [layer.name for layer in model.layers]
  assert "dw3" in names and "dw4" in names and "dw2" not in names
  assert model.get_layer("conv4").kernel_size == (1, 1)
  assert model.get_layer("conv2").kernel_size == (3, 3)


@pytest.mark.parametrize("separable_blocks", [-1, 4])
def test_separable_blocks_out_of_range(separable_blocks):
  with pytest.raises(errors.ConfigError, match="separable_blocks"):
    traffic_sign_cnn.build(separable_blocks=separable_blocks)


@pytest.mark.slow
def test_separable_variant_converts_to_int8_after_qat(tmp_path):
  """tfmot wraps the depthwise blocks for QAT and the converter makes them fully INT8."""
  from tf_gtsrb.compression import quantization  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.export import tflite  # pylint: disable=g-import-not-at-top
  model = traffic_sign_cnn.build(channels=(4, 8, 8, 16), input_size=16, separable_blocks=2)
  qat_model = quantization.quantize_aware(model)
  images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), np.uint8)
  int8 = tflite.convert(qat_model, "int8", images)
  tflite.check_fully_int8(int8)
  assert "DEPTHWISE_CONV_2D" in tflite.list_ops(int8)

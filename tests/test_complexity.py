"""Tests for tf_gtsrb.evaluation.complexity: parameters, MACs and file sizes."""

import gzip
import os

import tf_gtsrb  # noqa: F401  (before TensorFlow)
import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

from tf_gtsrb import errors
from tf_gtsrb.evaluation import complexity
from tf_gtsrb.keras import keras
from tf_gtsrb.models import io as model_io
from tf_gtsrb.models import traffic_sign_cnn


def _cnn_macs(channels, size, num_classes=43):
  """TrafficSignCNN MACs by hand: 3x3 'same' convs, each followed by a 2x2 pool."""
  total, cin = 0, 3
  for cout in channels:
    total += size * size * 3 * 3 * cin * cout
    cin, size = cout, size // 2
  return total + cin * num_classes


def test_default_traffic_sign_cnn():
  model = traffic_sign_cnn.build()
  assert complexity.count_params(model) == {
      "trainable": 399_947, "non_trainable": 960, "total": 400_907}
  expected = (32 * 32 * 3 * 3 * 3 * 32      # conv1
              + 16 * 16 * 3 * 3 * 32 * 64   # conv2
              + 8 * 8 * 3 * 3 * 64 * 128    # conv3
              + 4 * 4 * 3 * 3 * 128 * 256   # conv4
              + 256 * 43)                   # logits
  assert expected == 15_051_520
  assert complexity.count_macs(model) == expected
  assert complexity.per_layer_macs(model) == [
      ("conv1", 884_736), ("conv2", 4_718_592), ("conv3", 4_718_592),
      ("conv4", 4_718_592), ("logits", 11_008)]


def test_channel_pruned_traffic_sign_cnn():
  channels = (21, 41, 82, 164)
  model = traffic_sign_cnn.build(channels=channels)
  convs = 9 * (3 * 21 + 21 * 41 + 41 * 82 + 82 * 164)
  trainable = convs + 2 * sum(channels) + 164 * 43 + 43
  assert complexity.count_params(model) == {
      "trainable": trainable, "non_trainable": 2 * sum(channels),
      "total": trainable + 2 * sum(channels)}
  expected = (32 * 32 * 9 * 3 * 21 + 16 * 16 * 9 * 21 * 41 + 8 * 8 * 9 * 41 * 82
              + 4 * 4 * 9 * 82 * 164 + 164 * 43)
  assert complexity.count_macs(model) == expected == _cnn_macs(channels, 32)


def test_macs_scale_with_input_size():
  model = traffic_sign_cnn.build(channels=(4, 8, 8, 8), input_size=48)
  assert complexity.count_macs(model) == _cnn_macs((4, 8, 8, 8), 48)


def _tiny():
  return traffic_sign_cnn.build(channels=(4, 8, 8, 8), input_size=16)


def _prune(model):
  def wrap(layer):
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
      return tfmot.sparsity.keras.prune_low_magnitude(layer)
    return layer
  return keras.models.clone_model(model, clone_function=wrap)


def test_pruned_model_counts_like_plain_model(tmp_path):
  model = _tiny()
  pruned = _prune(model)
  assert "prune_low_magnitude_conv1" in [l.name for l in pruned.layers]
  assert complexity.count_macs(pruned) == complexity.count_macs(model)
  assert complexity.per_layer_macs(pruned) == complexity.per_layer_macs(model)
  plain, wrapped = complexity.count_params(model), complexity.count_params(pruned)
  assert wrapped["trainable"] == plain["trainable"]
  assert wrapped["non_trainable"] > plain["non_trainable"]  # Masks and thresholds.

  path = str(tmp_path / "pruned.keras")
  model_io.save_model(pruned, path)
  assert complexity.count_macs(model_io.load_model(path)) == complexity.count_macs(model)


def test_qat_model_counts_like_plain_model():
  model = _tiny()
  qat = tfmot.quantization.keras.quantize_model(model)
  assert any(l.name == "quant_conv1" for l in qat.layers)
  assert complexity.count_macs(qat) == complexity.count_macs(model)
  assert [n for n, _ in complexity.per_layer_macs(qat)] == [
      "conv1", "conv2", "conv3", "conv4", "logits"]
  assert complexity.count_params(qat)["trainable"] == complexity.count_params(model)["trainable"]


def test_nested_model_is_walked():
  inner = _tiny()
  inputs = keras.Input((16, 16, 3))
  outer = keras.Model(inputs, inner(inputs))
  assert complexity.count_macs(outer) == complexity.count_macs(inner)
  assert complexity.per_layer_macs(outer)[0] == (
      "traffic_sign_cnn/conv1", 16 * 16 * 9 * 3 * 4)


def test_other_layer_types():
  inputs = keras.Input((8, 8, 4))
  x = keras.layers.Conv2D(8, 3, strides=2, padding="valid", groups=2, name="grouped")(inputs)
  x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)
  x = keras.layers.SeparableConv2D(6, 3, padding="same", name="sep")(x)
  x = keras.layers.Conv2DTranspose(5, 2, strides=2, name="up")(x)
  x = keras.layers.BatchNormalization()(x)
  x = keras.layers.Dense(7, name="dense3d")(x)  # Applied at each of 6x6 positions.
  model = keras.Model(inputs, x)
  assert complexity.per_layer_macs(model) == [
      ("grouped", 3 * 3 * (3 * 3 * 2 * 8)),              # 3x3 out, groups halve Cin.
      ("dw", 3 * 3 * (3 * 3 * 8 * 2)),                   # Depthwise: no Cin x Cout.
      ("sep", 3 * 3 * (3 * 3 * 16 + 16 * 6)),            # Depthwise + 1x1 pointwise.
      ("up", 3 * 3 * (2 * 2 * 6 * 5)),                   # Per input position.
      ("dense3d", 6 * 6 * 5 * 7),
  ]


def test_unbuilt_model_raises_model_error():
  model = keras.Sequential([keras.layers.Conv2D(2, 3)])
  model.build((None, None, None, 3))  # Spatial size unknown.
  with pytest.raises(errors.ModelError):
    complexity.count_macs(model)
  with pytest.raises(errors.ModelError, match="Keras model"):
    complexity.count_macs(object())


def test_file_sizes(tmp_path):
  rng = np.random.default_rng(0)
  zeros, noise = tmp_path / "zeros.bin", tmp_path / "noise.bin"
  zeros.write_bytes(bytes(100_000))
  noise.write_bytes(rng.integers(0, 256, 100_000, dtype=np.uint8).tobytes())
  assert complexity.model_file_size(str(zeros)) == 100_000 == os.path.getsize(zeros)
  assert complexity.gzip_size(str(zeros)) == len(gzip.compress(bytes(100_000), 9))
  assert complexity.gzip_size(str(zeros)) < 1_000
  assert complexity.gzip_size(str(noise)) > 100_000  # Random bytes do not compress.
  for function in (complexity.model_file_size, complexity.gzip_size):
    with pytest.raises(errors.ModelError, match="missing.keras"):
      function(str(tmp_path / "missing.keras"))

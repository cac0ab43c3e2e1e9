"""TrafficSignCNN: four Conv-BN-ReLU-MaxPool blocks, global pooling, dropout, dense.

A Keras reimplementation of the published PyTorch model. With the default
channels (32, 64, 128, 256) it has exactly 399,947 trainable parameters. A
channel-pruned model is the same builder with thinner `channels`. With
`separable_blocks=k` the last k blocks are depthwise-separable (a 3x3 depthwise
convolution `dw<i>` with its BN and ReLU, then the 1x1 `conv<i>`): wider late
blocks for the same weights, a compact variant to train directly.

Input: float32 RGB, pixel / 255, shape (input_size, input_size, 3). Output:
class probabilities (softmax). No preprocessing layer sits inside the model, so
pruning and quantization-aware training see only Conv2D/BN/ReLU/Pool/Dense.
"""

from tf_gtsrb import errors
from tf_gtsrb.data.class_names import NUM_CLASSES
from tf_gtsrb.keras import keras
from tf_gtsrb.models import common

DEFAULT_CHANNELS = (32, 64, 128, 256)
NUM_BLOCKS = 4


def build(channels=DEFAULT_CHANNELS, input_size=32, dropout=0.5,
          width_multiplier=1.0, num_classes=NUM_CLASSES, separable_blocks=0):
  """Returns an uncompiled TrafficSignCNN `keras.Model` named 'traffic_sign_cnn'."""
  channels = tuple(channels)
  if len(channels) != NUM_BLOCKS:
    raise errors.ConfigError(
        f"traffic_sign_cnn: channels needs {NUM_BLOCKS} values, got {len(channels)}: "
        f"{channels}")
  channels = tuple(max(1, int(round(c * width_multiplier))) for c in channels)
  if min(channels) < 1:
    raise errors.ConfigError(f"traffic_sign_cnn: every block needs >= 1 channel: {channels}")
  if not 0.0 <= dropout < 1.0:
    raise errors.ConfigError(f"traffic_sign_cnn: dropout must be in [0, 1): {dropout}")
  common.check_input_size(input_size, NUM_BLOCKS, "traffic_sign_cnn")
  if not 0 <= separable_blocks < NUM_BLOCKS:
    raise errors.ConfigError(f"traffic_sign_cnn: separable_blocks must be in [0, "
                             f"{NUM_BLOCKS - 1}], got {separable_blocks}")

  inputs = keras.Input((input_size, input_size, 3), name="image")
  x = inputs
  for i, filters in enumerate(channels, start=1):
    separable = i > NUM_BLOCKS - separable_blocks
    if separable:
      x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{i}")(x)
      x = keras.layers.BatchNormalization(name=f"bn_dw{i}")(x)
      x = keras.layers.ReLU(name=f"relu_dw{i}")(x)
    x = keras.layers.Conv2D(filters, 1 if separable else 3, padding="same", use_bias=False,
                            name=f"conv{i}")(x)
    x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
    x = keras.layers.ReLU(name=f"relu{i}")(x)
    x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
  x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
  x = keras.layers.Dropout(dropout, name="dropout")(x)
  x = keras.layers.Dense(num_classes, name="logits")(x)
  outputs = keras.layers.Softmax(name="probabilities")(x)
  return keras.Model(inputs, outputs, name="traffic_sign_cnn")


def channels_of(model):
  """Returns the per-block output channels of a TrafficSignCNN model."""
  return tuple(model.get_layer(f"conv{i}").filters for i in range(1, NUM_BLOCKS + 1))

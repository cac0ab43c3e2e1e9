"""AlexNet (Krizhevsky et al., 2012) for GTSRB, with BatchNorm in place of LRN.

The published TensorFlow GTSRB project trained AlexNet at 227x227 (first conv
11x11, stride 4). `input_size` is an argument so it can be trained on a CPU at
a reduced size: below 128 pixels the first conv uses a 5x5 kernel with stride 1
(the spatial sizes after it then match a 227 input's third block), and
`dense_units` shrinks the classifier head.

Input: float32 RGB, pixel / 255. Output: class probabilities.
"""

from tf_gtsrb.data.class_names import NUM_CLASSES
from tf_gtsrb.keras import keras
from tf_gtsrb.models import common

PUBLISHED_INPUT_SIZE = 227


def build(input_size=PUBLISHED_INPUT_SIZE, dense_units=4096, dropout=0.5,
          num_classes=NUM_CLASSES):
  """Returns an uncompiled AlexNet `keras.Model` named 'alexnet'."""
  common.check_input_size(input_size, 3 if input_size < 128 else 5, "alexnet")
  large = input_size >= 128
  inputs = keras.Input((input_size, input_size, 3), name="image")
  x = _conv_bn(inputs, 96, 11 if large else 5, 4 if large else 1, "conv1",
               padding="valid" if large else "same")
  x = keras.layers.MaxPooling2D(3, 2, name="pool1")(x)
  x = _conv_bn(x, 256, 5, 1, "conv2")
  x = keras.layers.MaxPooling2D(3, 2, name="pool2")(x)
  x = _conv_bn(x, 384, 3, 1, "conv3")
  x = _conv_bn(x, 384, 3, 1, "conv4")
  x = _conv_bn(x, 256, 3, 1, "conv5")
  x = keras.layers.MaxPooling2D(3, 2, name="pool5")(x)
  x = keras.layers.Flatten(name="flatten")(x)
  for i in (6, 7):
    x = keras.layers.Dense(dense_units, activation="relu", name=f"fc{i}")(x)
    x = keras.layers.Dropout(dropout, name=f"dropout{i}")(x)
  x = keras.layers.Dense(num_classes, name="logits")(x)
  outputs = keras.layers.Softmax(name="probabilities")(x)
  return keras.Model(inputs, outputs, name="alexnet")


def _conv_bn(x, filters, kernel, stride, name, padding="same"):
  x = keras.layers.Conv2D(filters, kernel, stride, padding=padding, use_bias=False,
                          name=name)(x)
  x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
  return keras.layers.ReLU(name=f"{name}_relu")(x)

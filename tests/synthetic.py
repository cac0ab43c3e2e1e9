"""Synthetic models, images and datasets built in tests (tiny, seeded, no real data)."""

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import json
import zipfile

import numpy as np
import tensorflow as tf

from tf_gtsrb.compression import magnitude_pruning
from tf_gtsrb.data.class_names import NUM_CLASSES
from tf_gtsrb.keras import keras
from tf_gtsrb.models import traffic_sign_cnn

# The Conv2D and Dense layers of a TrafficSignCNN, in order.
KERNEL_LAYERS = ("conv1", "conv2", "conv3", "conv4", "logits")
# The default input size of `tiny_cnn`.
TINY_SIZE = 16


def tiny_cnn(input_size=TINY_SIZE, channels=(4, 8, 8, 16), seed=0, num_classes=NUM_CLASSES):
  """A small TrafficSignCNN with weights drawn after seeding Python, NumPy and TensorFlow."""
  keras.utils.set_random_seed(seed)
  return traffic_sign_cnn.build(channels=channels, input_size=input_size,
                                num_classes=num_classes)


def random_float_data(size, n=64, seed=0):
  """`n` float32 RGB images in [0, 1) of `size`x`size` and `n` int64 labels in [0, 43)."""
  rng = np.random.default_rng(seed)
  images = rng.random((n, size, size, 3), dtype=np.float32)
  labels = rng.integers(0, NUM_CLASSES, n)
  return images, labels


def random_float_dataset(size, n=64, batch=16, seed=0):
  """`random_float_data` as a tf.data.Dataset of (images, labels) batches, in order."""
  return tf.data.Dataset.from_tensor_slices(random_float_data(size, n, seed)).batch(batch)


def blocky_images(n=64, size=32, seed=0, low=0, high=255):
  """uint8 RGB images of 8x8 blocks plus noise, every pixel within [low, high]."""
  rng = np.random.default_rng(seed)
  blocks = rng.integers(low, high + 1, (n, size // 8, size // 8, 3))
  images = np.repeat(np.repeat(blocks, 8, axis=1), 8, axis=2)
  images = images + rng.integers(-15, 16, images.shape)
  return np.clip(images, low, high).astype(np.uint8)


def random_sparse_copy(model, share=0.5, seed=1):
  """A copy of `model` with `share` of every Conv2D/Dense kernel set to zero at random."""
  rng = np.random.default_rng(seed)
  sparse = magnitude_pruning.copy_model(model)
  for name in KERNEL_LAYERS:
    layer = sparse.get_layer(name)
    weights = layer.get_weights()
    weights[0][rng.random(weights[0].shape) < share] = 0.0
    layer.set_weights(weights)
  return sparse


def int8_kernels(tflite_bytes):
  """{op index: int8 weights} of every CONV_2D / FULLY_CONNECTED of a converted model."""
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.models import flatbuffer  # pylint: disable=g-import-not-at-top
  graph = flatbuffer.parse(tflite_bytes)
  interpreter = Interpreter(model_content=tflite_bytes)
  return {i: interpreter.get_tensor(op.inputs[1]) for i, op in enumerate(graph.operators)
          if op.name in ("CONV_2D", "FULLY_CONNECTED")}


def bad_keras_models(directory):
  """{what: path} of .keras files that are not RGB image classifiers, and a Keras 3 file."""
  from tf_gtsrb.models import io as io_lib  # pylint: disable=g-import-not-at-top
  paths = {}
  vector = keras.Input((10,))
  paths["not an image"] = keras.Model(vector, keras.layers.Dense(43)(vector))
  grey = keras.Input((32, 32, 1))
  paths["greyscale"] = keras.Model(
      grey, keras.layers.Dense(43)(keras.layers.GlobalAveragePooling2D()(grey)))
  rgb = keras.Input((32, 32, 3))
  pooled = keras.layers.GlobalAveragePooling2D()(rgb)
  paths["two outputs"] = keras.Model(rgb, [keras.layers.Dense(43)(pooled),
                                           keras.layers.Dense(2)(pooled)])
  for what, model in list(paths.items()):
    paths[what] = str(directory / f"{what.replace(' ', '_')}.keras")
    io_lib.save_model(model, paths[what])
  keras3 = directory / "keras3.keras"  # A Keras 3 file: its metadata says so.
  with zipfile.ZipFile(paths["greyscale"]) as source, zipfile.ZipFile(keras3, "w") as target:
    for item in source.namelist():
      data = source.read(item)
      if item == "metadata.json":
        data = json.dumps({**json.loads(data), "keras_version": "3.12.0"}).encode()
      target.writestr(item, data)
  paths["keras 3"] = str(keras3)
  return paths

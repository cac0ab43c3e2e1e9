"""Tests of tf_gtsrb.models.from_tflite: TrafficSignCNNs rebuilt from float flatbuffers."""

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import numpy as np
import pytest

from tests import synthetic
from tf_gtsrb import errors
from tf_gtsrb.export import tflite
from tf_gtsrb.keras import keras
from tf_gtsrb.models import ensemble
from tf_gtsrb.models import from_tflite
from tf_gtsrb.models import io as model_io


def _trained_looking_cnn(seed=0):
  """A tiny TrafficSignCNN whose BatchNorm layers hold non-trivial parameters and statistics."""
  model = synthetic.tiny_cnn(seed=seed)
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      n = layer.gamma.shape[0]
      layer.set_weights([rng.uniform(0.5, 2.0, n), rng.normal(0, 0.5, n),
                         rng.normal(0, 0.5, n), rng.uniform(0.2, 3.0, n)])
  return model


def _float_export(model, path):
  path.write_bytes(tflite.convert(model, "float32"))
  return str(path)


def test_rebuilt_model_predicts_what_the_original_predicts(tmp_path):
  model = _trained_looking_cnn()
  path = _float_export(model, tmp_path / "model.tflite")
  images, _ = synthetic.random_float_data(synthetic.TINY_SIZE, n=16)

  rebuilt = from_tflite.load(path)

  assert [rebuilt.get_layer(f"conv{i}").filters for i in range(1, 5)] == [4, 8, 8, 16]
  assert rebuilt.input_shape == model.input_shape
  np.testing.assert_allclose(rebuilt.predict(images, verbose=0), model.predict(images, verbose=0),
                             atol=1e-5)


def test_rebuilt_model_gets_the_statistics_of_given_images(tmp_path):
  model = _trained_looking_cnn(seed=1)
  path = _float_export(model, tmp_path / "model.tflite")
  images, _ = synthetic.random_float_data(synthetic.TINY_SIZE, n=32)

  rebuilt = from_tflite.load(path, images)

  conv1_out = rebuilt.get_layer("conv1")(images).numpy()
  bn1 = rebuilt.get_layer("bn1")
  np.testing.assert_allclose(bn1.moving_mean.numpy(), conv1_out.mean(axis=(0, 1, 2)), rtol=1e-4,
                             atol=1e-5)
  np.testing.assert_allclose(bn1.moving_variance.numpy(), conv1_out.var(axis=(0, 1, 2)),
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(rebuilt.predict(images, verbose=0), model.predict(images, verbose=0),
                             atol=1e-5)


def test_load_teacher_mixes_tflite_and_keras_members(tmp_path):
  first, second = _trained_looking_cnn(seed=2), _trained_looking_cnn(seed=3)
  tflite_path = _float_export(first, tmp_path / "first.tflite")
  keras_path = str(tmp_path / "second.keras")
  model_io.save_model(second, keras_path)
  images, _ = synthetic.random_float_data(synthetic.TINY_SIZE, n=8)

  teacher = ensemble.load_teacher(f"{tflite_path},{keras_path}")

  expected = (first.predict(images, verbose=0) + second.predict(images, verbose=0)) / 2
  np.testing.assert_allclose(teacher.predict(images, verbose=0), expected, atol=1e-5)


def test_refuses_a_file_that_is_not_a_flatbuffer(tmp_path):
  path = tmp_path / "notes.tflite"
  path.write_text("not a model")
  with pytest.raises(errors.ModelError, match="notes.tflite"):
    from_tflite.load(str(path))


def test_refuses_a_flatbuffer_of_another_architecture(tmp_path):
  inputs = keras.Input((synthetic.TINY_SIZE, synthetic.TINY_SIZE, 3))
  outputs = keras.layers.Dense(43, activation="softmax")(keras.layers.Flatten()(inputs))
  path = _float_export(keras.Model(inputs, outputs), tmp_path / "dense.tflite")
  with pytest.raises(errors.ModelError, match="dense.tflite: not a TrafficSignCNN export"):
    from_tflite.load(path)


def test_int8_export_is_dequantized_into_the_model_it_approximates(tmp_path):
  model = _trained_looking_cnn()
  images = np.random.default_rng(0).integers(
      0, 256, (64, synthetic.TINY_SIZE, synthetic.TINY_SIZE, 3), dtype=np.uint8)
  path = tmp_path / "model_int8.tflite"
  path.write_bytes(tflite.convert(model, "int8", images))

  weights = from_tflite.folded_weights(str(path))
  rebuilt = from_tflite.rebuild(weights)

  # Dequantized kernels are within half a quantization step of the float ones.
  float_weights = from_tflite.folded_weights(_float_export(model, tmp_path / "model.tflite"))
  for name in ("conv1", "conv4", "logits"):
    kernel, float_kernel = weights[name][0], float_weights[name][0]
    step = np.abs(float_kernel).max(axis=tuple(range(kernel.ndim - 1))) / 127
    assert np.all(np.abs(kernel - float_kernel) <= step * 0.51 + 1e-7)
  floats = images.astype(np.float32) / 255
  agree = (rebuilt.predict(floats, verbose=0).argmax(1)
           == model.predict(floats, verbose=0).argmax(1)).mean()
  assert agree >= 0.9

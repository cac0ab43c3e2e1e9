"""Ensemble teachers: the mean prediction of several trained models.

A distillation teacher may be one .keras file or several, written as one
comma-separated string ("a.keras,b.keras"); a TrafficSignCNN's float32 .tflite
export serves as well (rebuilt by `from_tflite`). Several are averaged into one
Keras model (each member's class probabilities, weighted equally). Averaging
models trained with other seeds or schedules gives a teacher that is right more
often than any one of them, which is what a small student learns from.
"""

import os

from tf_gtsrb import errors
from tf_gtsrb.keras import keras


def teacher_paths(spec):
  """The model paths in a comma-separated `spec`; ConfigError naming a missing file."""
  paths = [p.strip() for p in spec.split(",") if p.strip()]
  if not paths:
    raise errors.ConfigError(f"no teacher model in {spec!r}")
  for path in paths:
    if not os.path.isfile(path):
      raise errors.ConfigError(f"{path}: teacher model file not found")
  return paths


def absolute_teacher_paths(spec):
  """`teacher_paths(spec)` made absolute, as run records and fingerprints keep them."""
  return [os.path.abspath(path) for path in teacher_paths(spec)]


def average(models):
  """One Keras model whose output is the mean of `models`' outputs (the model itself
  if there is only one); ConfigError if their input or output shapes differ."""
  models = list(models)
  if len(models) == 1:
    return models[0]
  first = models[0]
  for i, model in enumerate(models[1:], start=1):
    if model.input_shape != first.input_shape or model.output_shape != first.output_shape:
      raise errors.ConfigError(
          f"ensemble member {i} maps {model.input_shape} -> {model.output_shape} but member 0 "
          f"{first.input_shape} -> {first.output_shape}")
  inputs = keras.Input(first.input_shape[1:], name="image")
  # Each member is wrapped under a unique name: loaded models share one name.
  outputs = [keras.Model(m.inputs, m.outputs, name=f"member{i}")(inputs)
             for i, m in enumerate(models)]
  return keras.Model(inputs, keras.layers.Average(name="mean")(outputs), name="ensemble")


def load_teacher(spec):
  """Loads the teacher in `spec` (one model path, or several comma-separated: their mean)."""
  return average(load_member(path) for path in teacher_paths(spec))


def load_member(path):
  """A .keras model, or a TrafficSignCNN rebuilt from its float32 .tflite export."""
  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.models import from_tflite
  from tf_gtsrb.models import io as model_io
  if path.endswith(".tflite"):
    return from_tflite.load(path)
  return model_io.load_classifier(path)

"""Saving and loading Keras models (.keras files), including pruned and QAT models."""

import os
import zipfile

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb.keras import keras


def save_model(model, path):
  """Saves `model` to a .keras file atomically (never leaves a partial file)."""
  if not path.endswith(".keras"):
    raise errors.ConfigError(f"{path}: model files must end in .keras")
  tmp = io_utils.temporary_path(path, suffix=".keras")  # Keras insists on the suffix.
  model = _inference_copy(model)
  try:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    model.save(tmp)
    os.replace(tmp, path)
  except OSError as e:
    raise errors.GtsrbError(f"{path}: cannot write model: {e.strerror or e}") from e
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _inference_copy(model):
  """The model without optimizer or metric state, which tf_keras would otherwise save.

  Quantization-aware models go through `quantization.saveable_copy`, the form
  tfmot 0.8.1 QAT models can be loaded back from.
  """
  from tf_gtsrb.compression import quantization  # pylint: disable=g-import-not-at-top
  if quantization.is_quantize_aware(model):
    return quantization.saveable_copy(model)
  if getattr(model, "optimizer", None) is None:
    return model
  with quantization.tfmot_scope():
    copy = keras.models.clone_model(model)
  copy.set_weights(model.get_weights())
  return copy


def load_model(path):
  """Loads a .keras model (float, pruned or quantization-aware), uncompiled.

  Raises ModelError naming the file when it is missing, truncated or not a
  Keras model.
  """
  if not os.path.isfile(path):
    raise errors.ModelError(f"{path}: model file not found")
  if not zipfile.is_zipfile(path):
    raise errors.ModelError(f"{path}: not a .keras model file (truncated or wrong format)")
  from tf_gtsrb.compression import quantization  # pylint: disable=g-import-not-at-top
  try:
    if quantization.is_quantize_aware_file(path):
      return quantization.load_quantize_aware(path)
    with quantization.tfmot_scope():
      return keras.models.load_model(path, compile=False)
  except Exception as e:  # Keras raises many types for a bad file.
    raise errors.ModelError(f"{path}: cannot load model: {e}") from e

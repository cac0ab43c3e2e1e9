"""Saving and loading Keras models (.keras files), including pruned and QAT models."""

import os
import zipfile

import tensorflow_model_optimization as tfmot

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb.keras import keras


def save_model(model, path):
  """Saves `model` to a .keras file atomically (never leaves a partial file)."""
  if not path.endswith(".keras"):
    raise errors.ConfigError(f"{path}: model files must end in .keras")
  tmp = io_utils._tmp_name(path) + ".keras"  # Keras insists on the suffix.
  try:
    model.save(tmp)
    os.replace(tmp, path)
  except OSError as e:
    raise errors.GtsrbError(f"{path}: cannot write model: {e.strerror or e}") from e
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def load_model(path):
  """Loads a .keras model (float, pruned or quantization-aware), uncompiled.

  Raises ModelError naming the file when it is missing, truncated or not a
  Keras model.
  """
  if not os.path.isfile(path):
    raise errors.ModelError(f"{path}: model file not found")
  if not zipfile.is_zipfile(path):
    raise errors.ModelError(f"{path}: not a .keras model file (truncated or wrong format)")
  try:
    with tfmot.quantization.keras.quantize_scope(), \
        tfmot.sparsity.keras.prune_scope(), \
        tfmot.clustering.keras.cluster_scope():
      return keras.models.load_model(path, compile=False)
  except Exception as e:  # Keras raises many types for a bad file.
    raise errors.ModelError(f"{path}: cannot load model: {e}") from e

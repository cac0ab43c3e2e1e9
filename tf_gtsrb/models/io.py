"""Saving and loading Keras models (.keras files), including pruned and QAT models."""

import json
import os
import zipfile

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb.keras import keras
from tf_gtsrb.models import tfmot_files


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

  Quantization-aware models go through `tfmot_files.saveable_copy`, the form
  tfmot 0.8.1 QAT models can be loaded back from.
  """
  if tfmot_files.is_quantize_aware(model):
    return tfmot_files.saveable_copy(model)
  if getattr(model, "optimizer", None) is None:
    return model
  with tfmot_files.tfmot_scope():
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
  version = _saved_keras_version(path)
  if version.startswith("3"):
    raise errors.ModelError(f"{path}: saved by Keras {version}; this project reads models saved "
                            "by Keras 2 (tf_keras, TF_USE_LEGACY_KERAS=1)")
  try:
    if tfmot_files.is_quantize_aware_file(path):
      return tfmot_files.load_quantize_aware(path)
    with tfmot_files.tfmot_scope():
      return keras.models.load_model(path, compile=False)
  except Exception as e:  # Keras raises many types for a bad file.
    first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise errors.ModelError(f"{path}: cannot load model: {first_line[:200]}") from e


def load_classifier(path):
  """`load_model`, then `check_classifier`: a ModelError naming the file unless it holds
  an image classifier (one square RGB input, one vector of class scores)."""
  model = load_model(path)
  check_classifier(model, path)
  return model


def _saved_keras_version(path):
  """The Keras version a .keras file records in its metadata.json ('' if none)."""
  try:
    with zipfile.ZipFile(path) as archive:
      return str(json.loads(archive.read("metadata.json")).get("keras_version", ""))
  except (KeyError, ValueError, OSError, zipfile.BadZipFile, AttributeError):
    return ""


def check_classifier(model, source):
  """ModelError naming `source` unless `model` maps one square RGB image (None, S, S, 3)
  to one vector of class scores (None, C); returns S."""
  inputs, outputs = getattr(model, "inputs", None) or [], getattr(model, "outputs", None) or []
  shape = tuple(inputs[0].shape) if len(inputs) == 1 else None
  if shape is None or len(shape) != 4 or shape[3] != 3 or shape[1] is None \
      or shape[1] != shape[2]:
    raise errors.ModelError(
        f"{source}: input is not a square RGB image tensor (None, S, S, 3): got "
        f"{shape if shape is not None else f'{len(inputs)} inputs'}")
  out_shape = tuple(outputs[0].shape) if len(outputs) == 1 else None
  if out_shape is None or len(out_shape) != 2 or not out_shape[1]:
    raise errors.ModelError(
        f"{source}: output is not one vector of class scores (None, C): got "
        f"{out_shape if out_shape is not None else f'{len(outputs)} outputs'}")
  return int(shape[1])

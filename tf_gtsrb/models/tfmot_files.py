"""Saving and loading Keras models wrapped by tfmot (quantization-aware, pruning, clustering).

Saving: tfmot 0.8.1 QAT models do not survive a plain .keras round trip (the
input QuantizeLayer is built twice on loading, and quantize_apply leaves
wrappers whose variable lists differ from those of a rebuilt model), and the
prune/cluster-preserving weight quantizers are not serialised at all.
`saveable_copy` builds the plain-QAT twin of a model (same inference, variable
layout a fresh load reproduces) and `load_quantize_aware` loads it back; a
reloaded PQAT/CQAT model is a plain QAT model (its zeros and clusters are in the
weights, but further QAT would no longer preserve them).
"""

import contextlib
import json
import zipfile

import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer

from tf_gtsrb import errors
from tf_gtsrb.keras import keras

quantization = tfmot.quantization.keras

_QUANTIZE_CLASS_NAMES = ("QuantizeLayer", "QuantizeWrapper", "QuantizeWrapperV2")


def is_quantize_aware(model):
  """True when `model` holds tfmot quantization layers."""
  return any(isinstance(layer, (quantization.QuantizeWrapper, quantize_layer.QuantizeLayer))
             for layer in model.layers)


@contextlib.contextmanager
def tfmot_scope():
  """Makes tfmot's quantization, pruning and clustering layers known to Keras."""
  with quantization.quantize_scope(), tfmot.sparsity.keras.prune_scope(), \
      tfmot.clustering.keras.cluster_scope():
    yield


def _without_build_configs(config):
  """Drops the per-layer build configs so each layer is built once, by the functional graph."""
  config = json.loads(json.dumps(config))
  for layer in config.get("layers", []):
    layer.pop("build_config", None)
  return config


def _short_name(variable):
  return variable.name.split("/")[-1].split(":")[0]


def _copy_variables(source, target):
  by_name = {}
  for variable in source.weights:
    candidates = by_name.setdefault(_short_name(variable), [])
    if all(variable is not other for other in candidates):
      candidates.append(variable)
  for variable in target.weights:
    matches = [v for v in by_name.get(_short_name(variable), []) if v.shape == variable.shape]
    if len(matches) != 1:
      raise errors.ModelError(
          f"layer {source.name!r}: cannot match variable {variable.name!r} "
          f"({len(matches)} candidates)")
    variable.assign(matches[0])


def saveable_copy(model):
  """Returns the plain-QAT twin of QAT `model`: same inference, loadable from a .keras file.

  tf_gtsrb.models.io.save_model saves QAT models through this.
  """
  with tfmot_scope():
    twin = keras.Model.from_config(_without_build_configs(model.get_config()))
  for layer in twin.layers:
    _copy_variables(model.get_layer(layer.name), layer)
  return twin


def _class_names(config):
  """Yields every 'class_name' in a nested Keras config."""
  if isinstance(config, dict):
    if isinstance(config.get("class_name"), str):
      yield config["class_name"]
    for value in config.values():
      yield from _class_names(value)
  elif isinstance(config, list):
    for value in config:
      yield from _class_names(value)


def _read_config(path):
  try:
    with zipfile.ZipFile(path) as archive:
      return json.loads(archive.read("config.json"))
  except (KeyError, ValueError, zipfile.BadZipFile) as e:
    raise errors.ModelError(f"{path}: no readable model config in the .keras file: {e}") from e
  except OSError as e:
    raise errors.ModelError(f"{path}: cannot read model file: {e.strerror or e}") from e


def is_quantize_aware_file(path):
  """True when the .keras file at `path` holds a QAT model; unreadable files raise ModelError."""
  return any(name in _QUANTIZE_CLASS_NAMES for name in _class_names(_read_config(path)))


def load_quantize_aware(path):
  """Loads a QAT model saved from `saveable_copy` (uncompiled).

  tf_gtsrb.models.io.load_model loads QAT files through this; Keras errors
  propagate (io turns them into ModelError).
  """
  config = _read_config(path)
  with tfmot_scope():
    config["config"] = _without_build_configs(config["config"])
    model = keras.models.model_from_json(json.dumps(config))
  model.load_weights(path)
  return model

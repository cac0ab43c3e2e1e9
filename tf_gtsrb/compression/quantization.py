"""Quantization-aware training (QAT) with tfmot's default 8-bit scheme.

`quantize_aware` wraps a float model in fake-quantization so that fine-tuning
learns weights that survive full-INT8 conversion. Layer support (tfmot 0.8.1,
checked on TrafficSignCNN): every layer is covered by the default registry and
needs no custom QuantizeConfig:

- Conv2D -> BatchNormalization -> ReLU is matched as one block: no fake-quant
  between the three, weights quantized per output channel, the ReLU output
  quantized. QAT trains the unfolded BatchNorm; the TFLite converter folds it
  into the convolution (a Conv2D without bias is fine).
- MaxPooling2D and Dropout pass their input's quantization through;
  GlobalAveragePooling2D, Dense (per-tensor weights) and Softmax quantize their
  outputs; the model input gets a QuantizeLayer.

Collaborative optimization (tfmot.experimental.combine):
- `preserve_sparsity=True` (PQAT) multiplies each Conv2D/Dense kernel by the
  zero mask it had when QAT started, so zeros from magnitude pruning stay zero
  (the mask is a constant taken from the weights, not a variable).
- `preserve_clusters=True` (CQAT, PCQAT with preserve_sparsity) trains the
  cluster centroids of a clustered model instead of its weights. tfmot treats a
  Conv2D kernel whose output channels each hold (nearly) the same number of
  distinct values as clustered per channel, so a per-tensor clustered kernel
  may leave CQAT with up to N distinct values per output channel.

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
from tf_gtsrb.compression import magnitude_pruning
from tf_gtsrb.keras import keras
from tf_gtsrb.training import compile as compile_lib
from tf_gtsrb.training import distill

quantization = tfmot.quantization.keras

_QUANTIZE_CLASS_NAMES = ("QuantizeLayer", "QuantizeWrapper", "QuantizeWrapperV2")


def quantize_aware(model, preserve_sparsity=False, preserve_clusters=False):
  """Returns a QAT copy of float `model` (fake-quantized INT8 weights and activations).

  `preserve_sparsity` keeps the zero weights zero (PQAT; for pruned models);
  `preserve_clusters` keeps the weight clusters (CQAT; for clustered, stripped
  models). The input model is not changed; the result is uncompiled.
  """
  magnitude_pruning.check_float_model(model, "quantize")
  base = magnitude_pruning.copy_model(model)
  if not preserve_sparsity and not preserve_clusters:
    return quantization.quantize_model(base)
  if preserve_clusters:
    scheme = tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(
        preserve_sparsity=bool(preserve_sparsity))
  else:
    scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
  return quantization.quantize_apply(quantization.quantize_annotate_model(base), scheme)


def qat_fine_tune(model, train_ds, val_ds, epochs, learning_rate=1e-5, preserve_sparsity=None,
                  preserve_clusters=False, steps_per_epoch=None, callbacks=(), verbose=2,
                  teacher=None, distill_temperature=distill.DEFAULT_TEMPERATURE,
                  distill_alpha=distill.DEFAULT_ALPHA, distill_mixup=distill.DEFAULT_MIXUP,
                  label_smoothing=compile_lib.DEFAULT_LABEL_SMOOTHING):
  """Makes float `model` quantization-aware and fine-tunes it; returns the QAT model.

  `preserve_sparsity=None` preserves sparsity when the model is at least
  magnitude_pruning.SPARSE_THRESHOLD sparse. `steps_per_epoch` is needed for endless
  datasets. With a `teacher`, fine-tuning distils from it (`compile.fine_tune`).
  """
  epochs = magnitude_pruning.check_positive_int(epochs, "epochs")
  magnitude_pruning.check_float_model(model, "quantize")
  if steps_per_epoch is None:
    magnitude_pruning.steps_per_epoch_of(train_ds)
  if preserve_sparsity is None:
    preserve_sparsity = magnitude_pruning.is_sparse(model)
  qat_model = quantize_aware(model, preserve_sparsity, preserve_clusters)
  compile_lib.fine_tune(qat_model, train_ds, val_ds, epochs, learning_rate, callbacks=callbacks,
                        label_smoothing=label_smoothing, steps_per_epoch=steps_per_epoch,
                        verbose=verbose, teacher=teacher,
                        distill_temperature=distill_temperature, distill_alpha=distill_alpha,
                        distill_mixup=distill_mixup)
  return qat_model


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

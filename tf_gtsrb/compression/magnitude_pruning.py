"""Unstructured magnitude pruning of Conv2D/Dense kernels (tfmot prune_low_magnitude).

The smallest-magnitude kernel weights are set to zero on a polynomial schedule
while the model fine-tunes; `strip` then removes the pruning wrappers and
leaves a plain Keras model whose kernels hold the zeros. Zeros make no model
smaller by themselves: they pay off through compression (gzip of the model
file) and sparse kernels. Works on any model built from Conv2D/Dense plus
weight-free or BatchNorm layers, including channel-pruned TrafficSignCNNs, so
structured and unstructured pruning combine.

Only Conv2D and Dense layers are wrapped: `prune_low_magnitude` applied to a
whole model refuses layers it cannot prune.
"""

import math

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot

from tf_gtsrb import errors
from tf_gtsrb.keras import keras
from tf_gtsrb.training import compile as compile_lib

sparsity = tfmot.sparsity.keras

# Layers whose kernels are pruned (and clustered, and reported).
KERNEL_LAYERS = (keras.layers.Conv2D, keras.layers.Dense)

# prune_and_fine_tune reaches the target sparsity after this fraction of the
# fine-tuning steps and spends the rest recovering accuracy at that sparsity.
PRUNING_FRACTION = 0.75
# ...and updates the masks at least this many times on the way.
MIN_MASK_UPDATES = 10
# QAT and clustering preserve zeros by default in models at least this sparse.
SPARSE_THRESHOLD = 0.3


def check_target_sparsity(target_sparsity, name="target_sparsity"):
  """Raises ConfigError (naming the setting `name`) unless 0 <= target_sparsity < 1."""
  if isinstance(target_sparsity, bool) \
      or not isinstance(target_sparsity, (int, float, np.integer, np.floating)) \
      or not 0.0 <= target_sparsity < 1.0:
    raise errors.ConfigError(
        f"{name} must be a fraction in [0, 1) (0.8 = 80% zeros), got "
        f"{target_sparsity!r}")
  return float(target_sparsity)


def check_positive_int(value, name, minimum=1):
  """Returns `value` as an int; ConfigError unless it is an integer >= `minimum`."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise errors.ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
  return int(value)


def unwrap(layer):
  """Returns the layer inside tfmot wrappers (pruning, clustering, quantization)."""
  while isinstance(layer, keras.layers.Wrapper):
    layer = layer.layer
  return layer


def kernel_layers(model):
  """Returns the (possibly wrapped) layers of `model` whose core is Conv2D or Dense."""
  return [layer for layer in model.layers if isinstance(unwrap(layer), KERNEL_LAYERS)]


def kernel_variable(layer):
  """Returns the kernel variable of a Conv2D/Dense layer, wrapped or not.

  Wrappers replace the `kernel` attribute of the layer they hold by a pruned,
  clustered or fake-quantized tensor; the variable itself is found by name.
  """
  core = unwrap(layer)
  for candidate in (core, layer):
    for variable in candidate.weights:
      if variable.name.split("/")[-1].split(":")[0] == "kernel":
        return variable
  raise errors.ModelError(f"layer {layer.name!r} has no kernel; is the model built?")


def check_float_model(model, what):
  """Raises ModelError unless `model` is a Keras model free of tfmot wrappers."""
  if not isinstance(model, keras.Model):
    raise errors.ModelError(f"{what} needs a Keras model, got {type(model).__name__}")
  wrapped = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Wrapper)]
  if wrapped:
    raise errors.ModelError(
        f"{what} needs a float model without pruning/clustering/quantization wrappers "
        f"(strip it first); model {model.name!r} has wrapped layers {', '.join(wrapped)}")
  if not kernel_layers(model):
    raise errors.ModelError(f"model {model.name!r} has no Conv2D or Dense layer to {what}")


def copy_model(model):
  """Returns an independent copy of `model` with the same weights."""
  copy = keras.models.clone_model(model)
  copy.set_weights(model.get_weights())
  return copy


def wrap_kernel_layers(model, wrap):
  """Returns a copy of `model` with `wrap(layer)` around every Conv2D/Dense layer.

  The input model is left untouched: the wrappers hold the layers of a private
  copy, so training the result never changes `model`.
  """
  base = copy_model(model)

  def clone_function(layer):
    return wrap(layer) if isinstance(layer, KERNEL_LAYERS) else layer

  return keras.models.clone_model(base, clone_function=clone_function)


def apply_magnitude_pruning(model, target_sparsity, end_step, begin_step=0, frequency=100,
                            initial_sparsity=0.0):
  """Returns a copy of `model` with Conv2D/Dense wrapped in prune_low_magnitude.

  The kernels' sparsity follows tfmot's PolynomialDecay from
  `initial_sparsity` at `begin_step` to `target_sparsity` at `end_step`
  (optimizer steps), updating the masks every `frequency` steps. Train the
  result with `pruning_callbacks()`, then `strip` it. Bad arguments raise
  ConfigError, a model that is already wrapped ModelError.
  """
  target_sparsity = check_target_sparsity(target_sparsity)
  begin_step = check_positive_int(begin_step, "begin_step", minimum=0)
  end_step = check_positive_int(end_step, "end_step", minimum=1)
  frequency = check_positive_int(frequency, "frequency")
  if end_step <= begin_step:
    raise errors.ConfigError(
        f"end_step ({end_step}) must be larger than begin_step ({begin_step})")
  if isinstance(initial_sparsity, bool) or not isinstance(initial_sparsity, (int, float)) \
      or not 0.0 <= initial_sparsity <= target_sparsity:
    raise errors.ConfigError(
        f"initial_sparsity must be in [0, target_sparsity={target_sparsity}], got "
        f"{initial_sparsity!r}")
  check_float_model(model, "prune")
  schedule = sparsity.PolynomialDecay(
      initial_sparsity=float(initial_sparsity), final_sparsity=target_sparsity,
      begin_step=begin_step, end_step=end_step, frequency=frequency)
  return wrap_kernel_layers(
      model, lambda layer: sparsity.prune_low_magnitude(layer, pruning_schedule=schedule))


def pruning_callbacks(log_dir=None):
  """Callbacks a pruning model must train with; `log_dir` adds TensorBoard sparsity summaries."""
  callbacks = [sparsity.UpdatePruningStep()]
  if log_dir:
    callbacks.append(sparsity.PruningSummaries(log_dir=log_dir))
  return callbacks


def strip(model):
  """Removes the pruning wrappers; the zeros stay in the plain Conv2D/Dense kernels."""
  return sparsity.strip_pruning(model)


def sparsity_report(model):
  """Returns the fraction of zero weights in each Conv2D/Dense kernel and overall.

  {'layers': [{'layer', 'weights', 'zeros', 'sparsity'}...], 'weights', 'zeros',
  'sparsity'} where the totals cover all Conv2D/Dense kernels (biases and
  BatchNorm are not pruned and not counted). Works on plain models and on
  pruning-, clustering- or quantization-wrapped ones.
  """
  rows = []
  for layer in kernel_layers(model):
    kernel = np.asarray(kernel_variable(layer).numpy())
    zeros = int(np.count_nonzero(kernel == 0))
    rows.append({"layer": unwrap(layer).name, "weights": int(kernel.size), "zeros": zeros,
                 "sparsity": zeros / kernel.size if kernel.size else 0.0})
  total = sum(row["weights"] for row in rows)
  zeros = sum(row["zeros"] for row in rows)
  return {"layers": rows, "weights": total, "zeros": zeros,
          "sparsity": zeros / total if total else 0.0}


def is_sparse(model, threshold=SPARSE_THRESHOLD):
  """True when at least `threshold` of `model`'s Conv2D/Dense kernel weights are zero."""
  return sparsity_report(model)["sparsity"] >= threshold


def steps_per_epoch_of(train_ds, steps_per_epoch=None):
  """Returns the optimizer steps of one epoch: `steps_per_epoch` or the dataset's cardinality.

  An endless or unknown-length dataset needs an explicit `steps_per_epoch`
  (ConfigError otherwise).
  """
  if steps_per_epoch is not None:
    return check_positive_int(steps_per_epoch, "steps_per_epoch")
  cardinality = int(tf.data.experimental.cardinality(train_ds))
  if cardinality == 0:
    raise errors.ConfigError("the training dataset is empty")
  if cardinality == tf.data.experimental.INFINITE_CARDINALITY:
    raise errors.ConfigError("the training dataset is endless; pass steps_per_epoch")
  if cardinality < 0:
    raise errors.ConfigError("the training dataset is of unknown length; pass steps_per_epoch")
  return cardinality


def schedule_steps(total_steps, frequency=100):
  """Returns (end_step, frequency) that reach the target within `total_steps` optimizer steps.

  Pruning ends after PRUNING_FRACTION of the steps, on a mask-update step, and
  updates the masks at least MIN_MASK_UPDATES times when there are steps
  enough (`frequency` is lowered for short runs).
  """
  total_steps = check_positive_int(total_steps, "total_steps")
  frequency = check_positive_int(frequency, "frequency")
  if total_steps < 2:
    raise errors.ConfigError(
        f"pruning needs at least 2 training steps, got {total_steps}; use more data or epochs")
  pruning_steps = max(1, min(total_steps, math.ceil(total_steps * PRUNING_FRACTION)))
  frequency = max(1, min(frequency, pruning_steps // MIN_MASK_UPDATES))
  return (pruning_steps // frequency) * frequency, frequency


def prune_and_fine_tune(model, train_ds, val_ds, target_sparsity, epochs, learning_rate=1e-4,
                        steps_per_epoch=None, frequency=100, log_dir=None, verbose=2,
                        **fine_tune_kwargs):
  """Prunes `model`'s Conv2D/Dense kernels to `target_sparsity` while fine-tuning.

  Runs `epochs` epochs of `steps_per_epoch` steps (default: the dataset's
  length); sparsity rises from 0 to the target over the first
  PRUNING_FRACTION of the steps. `fine_tune_kwargs` go to `compile.fine_tune`
  (e.g. teacher, distill_mixup, label_smoothing). Returns the stripped (plain
  Keras) model; the input model is not changed.
  """
  target_sparsity = check_target_sparsity(target_sparsity)
  epochs = check_positive_int(epochs, "epochs")
  check_float_model(model, "prune")
  steps = steps_per_epoch_of(train_ds, steps_per_epoch)
  end_step, frequency = schedule_steps(steps * epochs, frequency)
  pruned = apply_magnitude_pruning(model, target_sparsity, end_step=end_step,
                                   frequency=frequency)
  history = compile_lib.fine_tune(pruned, train_ds, val_ds, epochs, learning_rate,
                                  callbacks=pruning_callbacks(log_dir),
                                  steps_per_epoch=steps_per_epoch, verbose=verbose,
                                  **fine_tune_kwargs)
  stripped = strip(pruned)
  stripped.history = history
  return stripped

"""Stochastic weight averaging (SWA; Izmailov et al. 2018) of a trained model.

A short fine-tune at a constant learning rate, with the usual augmentation and
loss, whose weights are averaged over its epoch ends; the average sits nearer
the middle of the flat region the single-epoch weights wander around in. Its
BatchNorm statistics belong to none of the averaged weights, so they are
recomputed on training batches afterwards (`recompute_batch_norm`), mixed as the
fine-tune mixed them when it learnt by mixup distillation.
"""

import tensorflow as tf

from tf_gtsrb import errors
from tf_gtsrb.keras import keras
from tf_gtsrb.training import compile as compile_lib
from tf_gtsrb.training import distill

DEFAULT_LEARNING_RATE = 5e-4


class EpochAverage(keras.callbacks.Callback):
  """Running mean of `model`'s weights at each epoch's end.

  `model` is given explicitly: the model being fitted may be a `Distiller`
  holding it, whose weights include the teacher's.
  """

  def __init__(self, model):
    super().__init__()
    self._averaged = model
    self.count = 0
    self._mean = None

  def on_epoch_end(self, epoch, logs=None):
    weights = self._averaged.get_weights()
    self.count += 1
    if self._mean is None:
      self._mean = weights
    else:
      self._mean = [m + (w - m) / self.count for m, w in zip(self._mean, weights)]

  def average(self):
    if self._mean is None:
      raise errors.ConfigError("no epoch has ended yet: nothing to average")
    return self._mean


def recompute_batch_norm(model, batches, steps, mixup=0.0, seed=0):
  """Sets every BatchNorm's moving mean and variance to their mean over `steps` batches.

  `batches` yields (images, labels), or ((images, teacher's images), labels) of which it
  uses the images; the model runs in training mode on each
  (forward only; no weight changes). Other layers' state is left as it was.
  With `mixup` > 0 each batch is first mixed as a distillation with that mixup
  mixes it (`distill.mix`, draws seeded by `seed`): a model trained on mixed
  images has learnt with their statistics, which are not those of clean images.
  """
  layers = [layer for layer in model.submodules
            if isinstance(layer, keras.layers.BatchNormalization)]
  if not layers:
    return
  rng = tf.random.Generator.from_seed(seed) if mixup else None
  momenta = [layer.momentum for layer in layers]
  try:
    for k, (images, labels) in enumerate(batches.take(steps), start=1):
      images = images[0] if isinstance(images, (tuple, list)) else images
      for layer in layers:
        layer.momentum = 1.0 - 1.0 / k  # Batch k gets weight 1/k: a cumulative mean.
      if mixup:
        images = distill.mix(images, labels, mixup, rng)[0]
      model(images, training=True)
  finally:
    for layer, momentum in zip(layers, momenta):
      layer.momentum = momentum


def average_weights(model, train_ds, val_ds, epochs, steps_per_epoch,
                    learning_rate=DEFAULT_LEARNING_RATE,
                    label_smoothing=compile_lib.DEFAULT_LABEL_SMOOTHING, verbose=2,
                    callbacks=(), **distillation):
  """Fine-tunes `model` in place for `epochs` and leaves it holding their average.

  `train_ds` is an endless training dataset (`input_pipeline.train_dataset`);
  afterwards its first `steps_per_epoch` batches, iterated again (and mixed, when
  the distillation mixes), recompute the BatchNorm statistics. Returns
  {"val_accuracy": per-epoch validation accuracy of the single-epoch weights,
  "average_val_accuracy": that of the average}
  (empty/None without `val_ds`). `distillation` (teacher and the distill_*
  settings) goes to `compile_lib.fine_tune`, with `callbacks` (e.g. `training_logs`).
  """
  if epochs < 1:
    raise errors.ConfigError(f"weight averaging needs >= 1 epoch, got {epochs}")
  averager = EpochAverage(model)
  history = compile_lib.fine_tune(
      model, train_ds, val_ds, epochs, learning_rate, label_smoothing=label_smoothing,
      callbacks=[averager, *callbacks], steps_per_epoch=steps_per_epoch, verbose=verbose, **distillation)
  model.set_weights(averager.average())
  distilled = distillation.get("teacher") is not None
  mixup = (distillation.get("distill_mixup") or 0.0) if distilled else 0.0
  recompute_batch_norm(model, train_ds, steps_per_epoch, mixup)
  record = {"epochs": epochs, "learning_rate": learning_rate,
            "val_accuracy": [float(a) for a in history.history.get("val_accuracy", [])],
            "average_val_accuracy": None}
  if val_ds is not None:
    compile_lib.compile_model(model)
    record["average_val_accuracy"] = float(model.evaluate(val_ds, verbose=0)[1])
  return record

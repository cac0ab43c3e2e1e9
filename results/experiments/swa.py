"""Stochastic weight averaging (Izmailov et al. 2018) as a short fine-tune of a trained
model: constant learning rate, augmentation and label smoothing as in training, the
weights averaged at each epoch's end; BatchNorm statistics recomputed for the average.
Prints validation and test accuracy of the last epoch's weights and of the average.

  python results/experiments/swa.py MODEL.keras DATA_DIR EPOCHS LEARNING_RATE [OUT.keras]
"""

import sys

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import numpy as np

from tf_gtsrb.data import input_pipeline
from tf_gtsrb.keras import keras
from tf_gtsrb.models import io as model_io
from tf_gtsrb.training import compile as compile_lib

BATCH = 128


def accuracies(model, data_dir):
  compile_lib.compile_model(model)
  return {split: 100 * model.evaluate(input_pipeline.eval_dataset(data_dir, split, 512),
                                      verbose=0)[1] for split in ("validation", "test")}


def recompute_batch_norm(model, batches, steps):
  """Sets each BatchNorm's moving statistics to their mean over `steps` training batches."""
  layers = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
  saved = [l.momentum for l in layers]
  for k, (images, _) in enumerate(batches.take(steps), start=1):
    for layer in layers:
      layer.momentum = 1.0 - 1.0 / k  # Cumulative mean: the first batch replaces the old value.
    model(images, training=True)
  for layer, momentum in zip(layers, saved):
    layer.momentum = momentum


class Averager(keras.callbacks.Callback):
  def __init__(self):
    super().__init__()
    self.sum, self.count = None, 0

  def on_epoch_end(self, epoch, logs=None):
    weights = self.model.get_weights()
    self.sum = weights if self.sum is None else [s + w for s, w in zip(self.sum, weights)]
    self.count += 1

  def average(self):
    return [s / self.count for s in self.sum]


def main(model_path, data_dir, epochs, learning_rate, out=None):
  model = model_io.load_model(model_path)
  print("start", accuracies(model, data_dir), flush=True)
  steps = input_pipeline.steps_per_epoch(input_pipeline.split_size(data_dir, "train"), BATCH)
  averager = Averager()
  compile_lib.fine_tune(model, input_pipeline.train_dataset(data_dir, BATCH, seed=5),
                        input_pipeline.eval_dataset(data_dir, "validation", 512), int(epochs),
                        float(learning_rate), label_smoothing=0.1, steps_per_epoch=steps,
                        callbacks=[averager])
  print("last epoch", accuracies(model, data_dir), flush=True)
  model.set_weights(averager.average())
  recompute_batch_norm(model, input_pipeline.train_dataset(data_dir, BATCH, seed=6), steps)
  print(f"average of {averager.count} epochs", accuracies(model, data_dir), flush=True)
  if out:
    model_io.save_model(model, out)


if __name__ == "__main__":
  main(*sys.argv[1:])

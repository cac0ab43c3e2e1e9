"""Stochastic weight averaging (`tf_gtsrb.training.swa`) as a short fine-tune of a trained
model: constant learning rate, augmentation and label smoothing as in training, the weights
averaged at each epoch's end, BatchNorm statistics recomputed for the average. Prints
validation and test accuracy before, after the last epoch, and of the average.

  python results/experiments/swa.py MODEL.keras DATA_DIR EPOCHS LEARNING_RATE [OUT.keras]

The swa_*.log files beside it were made by this script as of commit a959ef6 (its own copy of
the averaging code then, training batches seeded with 5); `gtsrb-train --swa_epochs` and
`gtsrb-pipeline --swa_epochs` do the same inside a run.
"""

import sys

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

from tf_gtsrb.data import input_pipeline
from tf_gtsrb.models import io as model_io
from tf_gtsrb.training import compile as compile_lib
from tf_gtsrb.training import swa

BATCH = 128


def accuracies(model, data_dir):
  compile_lib.compile_model(model)
  return {split: 100 * model.evaluate(input_pipeline.eval_dataset(data_dir, split, 512),
                                      verbose=0)[1] for split in ("validation", "test")}


def main(model_path, data_dir, epochs, learning_rate, out=None):
  model = model_io.load_model(model_path)
  print("start", accuracies(model, data_dir), flush=True)
  steps = input_pipeline.steps_per_epoch(input_pipeline.split_size(data_dir, "train"), BATCH)
  record = swa.average_weights(
      model, input_pipeline.train_dataset(data_dir, BATCH, seed=5),
      input_pipeline.eval_dataset(data_dir, "validation", 512), int(epochs), steps,
      float(learning_rate))
  print("last epoch validation", record["val_accuracy"][-1])
  print(f"average of {epochs} epochs", accuracies(model, data_dir), flush=True)
  if out:
    model_io.save_model(model, out)


if __name__ == "__main__":
  main(*sys.argv[1:])

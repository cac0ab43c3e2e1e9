"""Validation accuracy of pruned models that share one pruned initialisation, and of
their weight averages ("model soups", Wortsman et al. 2022): each pair's midpoint and the
mean of all, BatchNorm statistics recomputed on training batches blended as mixup
distillation (strength 1) blends them. Test accuracy is not read.

  python results/experiments/weight_soup.py DATA_DIR PRUNED.keras PRUNED.keras ...
"""

import itertools
import sys

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import numpy as np

from tf_gtsrb.data import input_pipeline
from tf_gtsrb.models import io as model_io
from tf_gtsrb.training import compile as compile_lib
from tf_gtsrb.training import swa

BATCH_SIZE = 128
MIXUP = 1.0


def main(data_dir, paths):
  train_ds = input_pipeline.train_dataset(data_dir, BATCH_SIZE, seed=0)
  val_ds = input_pipeline.eval_dataset(data_dir, "validation", BATCH_SIZE)
  steps = input_pipeline.steps_per_epoch(input_pipeline.split_size(data_dir, "train"),
                                         BATCH_SIZE)
  weights = {path: model_io.load_model(path).get_weights() for path in paths}

  def accuracy(model):
    compile_lib.compile_model(model)
    return 100 * model.evaluate(val_ds, verbose=0)[1]

  def soup(members):
    model = model_io.load_model(members[0])
    model.set_weights([np.mean(w, axis=0) for w in zip(*(weights[m] for m in members))])
    swa.recompute_batch_norm(model, train_ds, steps, mixup=MIXUP)
    return model

  for path in paths:
    print(f"{path}: validation {accuracy(model_io.load_model(path)):.2f}%", flush=True)
  for a, b in itertools.combinations(paths, 2):
    print(f"midpoint of {a} and {b}: validation {accuracy(soup([a, b])):.2f}%", flush=True)
  print(f"mean of all {len(paths)}: validation {accuracy(soup(paths)):.2f}%")


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2:])

"""Accuracy and log-loss of models on the validation split and on the test set.

Does a continuous validation signal (mean negative log-likelihood of the true class)
rank recipes the way the test set does, where validation accuracy (99.2-99.8%) no
longer does? Usage, from the repository root:
  python results/experiments/validation_signals.py runs/gtsrb MODEL [MODEL ...]
"""

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # pylint: disable=g-import-not-at-top

from tf_gtsrb.data import input_pipeline  # pylint: disable=g-import-not-at-top
from tf_gtsrb.models import runners  # pylint: disable=g-import-not-at-top


def scores(runner, images, labels):
  """(accuracy %, mean NLL of the true class) of a runner's softmax outputs."""
  probabilities = runner.predict(images)
  nll = -np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, 1)).mean()
  return 100 * (probabilities.argmax(axis=1) == labels).mean(), nll


def main(data_dir, *models):
  splits = {split: input_pipeline.load_arrays(data_dir, split) for split in ("validation", "test")}
  print("| Model | Val (%) | Val NLL | Test (%) | Test NLL |\n|---|---:|---:|---:|---:|")
  for path in models:
    runner = runners.load_runner(path)
    (val_acc, val_nll), (test_acc, test_nll) = (scores(runner, *splits[s]) for s in splits)
    print(f"| `{path}` | {val_acc:.2f} | {val_nll:.4f} | {test_acc:.2f} | {test_nll:.4f} |",
          flush=True)


if __name__ == "__main__":
  main(*sys.argv[1:])

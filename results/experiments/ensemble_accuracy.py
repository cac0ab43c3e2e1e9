"""Validation and test accuracy of each model and of their mean prediction (the ensemble
teacher `--teacher=a.keras,b.keras,...` distils from). Models: .keras or .tflite.

  python results/experiments/ensemble_accuracy.py DATA_DIR MODEL MODEL ...
"""

import sys

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import numpy as np

from tf_gtsrb.data import input_pipeline
from tf_gtsrb.models import runners


def main(data_dir, paths):
  for split in ("validation", "test"):
    images, labels = input_pipeline.load_arrays(data_dir, split)
    predictions = []
    for path in paths:
      predictions.append(runners.load_runner(path).predict(images))
      print(f"{split} {path}: {100 * np.mean(predictions[-1].argmax(1) == labels):.2f}%")
    mean = np.mean(predictions, axis=0)
    print(f"{split} mean of {len(paths)}: {100 * np.mean(mean.argmax(1) == labels):.2f}% "
          f"({int(np.sum(mean.argmax(1) != labels))} errors in {len(labels)})")


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2:])

"""Per-image predictions of a benchmark run: predictions.npz beside benchmark.json.

Arrays: `names` [M] (model names, in benchmark order), `labels` [N] (true class
ids of the scored split, in its order), `predicted` [M, N] (class ids) and
`confidence` [M, N] (the predicted class's probability). The images are not
stored: they are the first N images of the split named in benchmark.json.
"""

import os

import numpy as np

from tf_gtsrb import errors
from tf_gtsrb import io_utils

FILE_NAME = "predictions.npz"


def save_predictions(path, labels, predicted, confidence):
  """Writes `predicted` and `confidence` ({model name: [N]}) with `labels` [N], atomically."""
  names = list(predicted)
  with io_utils.atomic_write(path, "wb") as f:
    np.savez_compressed(
        f, names=np.array(names, dtype=str), labels=np.asarray(labels, dtype=np.int64),
        predicted=np.stack([np.asarray(predicted[n], dtype=np.int16) for n in names]),
        confidence=np.stack([np.asarray(confidence[n], dtype=np.float32) for n in names]))
  return path


def load_predictions(path):
  """{'labels': [N], 'models': {name: {'predicted': [N], 'confidence': [N]}}}, or None if
  `path` does not exist; a malformed file raises DataError naming it."""
  if not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as data:
      names, labels = [str(n) for n in data["names"]], data["labels"]
      predicted, confidence = data["predicted"], data["confidence"]
  except (OSError, ValueError, KeyError) as e:
    raise errors.DataError(f"{path}: not a predictions file: {e}") from e
  if predicted.shape != (len(names), len(labels)) or confidence.shape != predicted.shape:
    raise errors.DataError(f"{path}: predictions of shape {predicted.shape} do not fit "
                           f"{len(names)} models x {len(labels)} labels")
  return {"labels": labels,
          "models": {n: {"predicted": predicted[i].astype(np.int64),
                         "confidence": confidence[i]} for i, n in enumerate(names)}}

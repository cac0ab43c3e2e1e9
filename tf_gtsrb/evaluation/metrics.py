"""Classification metrics computed with numpy from the confusion matrix.

All scores are fractions in [0, 1]. Conventions follow scikit-learn's
`precision_recall_fscore_support(..., labels=range(num_classes))`:

- a 0/0 ratio (a class never predicted has no precision; a class absent from
  `y_true` has no recall) counts as 0;
- macro averages include ALL `num_classes` classes, so a class with neither
  examples nor predictions adds a 0 to the mean;
- weighted averages weight each class by its support (number of true
  examples), so classes absent from `y_true` do not count.
"""

import numpy as np

from tf_gtsrb import errors
from tf_gtsrb.data.class_names import CLASS_NAMES
from tf_gtsrb.data.class_names import NUM_CLASSES


def _as_labels(values, name, num_classes):
  array = np.asarray(values)
  if array.ndim != 1:
    raise errors.ConfigError(f"{name} must be a 1-D array of class ids, got shape {array.shape}")
  if array.dtype.kind not in "iu" and array.size:
    if array.dtype.kind != "f" or not np.all(np.mod(array, 1) == 0):
      raise errors.ConfigError(f"{name} must hold integer class ids, got dtype {array.dtype}")
  array = array.astype(np.int64)
  bad = (array < 0) | (array >= num_classes)
  if np.any(bad):
    raise errors.ConfigError(
        f"{name} holds class id {int(array[bad][0])} outside [0, {num_classes})")
  return array


def _validate(y_true, y_pred, num_classes):
  if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
    raise errors.ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
  y_true = _as_labels(y_true, "y_true", num_classes)
  y_pred = _as_labels(y_pred, "y_pred", num_classes)
  if y_true.shape != y_pred.shape:
    raise errors.ConfigError(
        f"y_true and y_pred differ in length: {y_true.size} vs {y_pred.size}")
  return y_true, y_pred


def confusion_matrix(y_true, y_pred, num_classes=NUM_CLASSES):
  """Returns an int64 [num_classes, num_classes] matrix: rows = true, cols = predicted."""
  y_true, y_pred = _validate(y_true, y_pred, num_classes)
  cm = np.zeros((num_classes, num_classes), dtype=np.int64)
  np.add.at(cm, (y_true, y_pred), 1)
  return cm


def _safe_divide(numerator, denominator):
  numerator = np.asarray(numerator, dtype=np.float64)
  denominator = np.asarray(denominator, dtype=np.float64)
  out = np.zeros_like(numerator)
  np.divide(numerator, denominator, out=out, where=denominator != 0)
  return out


def classification_report(y_true, y_pred, num_classes=NUM_CLASSES):
  """Returns accuracy, weighted and macro precision/recall/F1, per-class scores.

  Keys: accuracy, precision_weighted, recall_weighted, f1_weighted,
  precision_macro, recall_macro, f1_macro, num_examples, per_class (list of
  {class_id, name, precision, recall, f1, support}; `name` is the GTSRB sign
  name when num_classes == 43, else str(class_id)) and confusion_matrix (list
  of lists, rows = true class, columns = predicted class). Mismatched lengths,
  empty inputs or labels outside [0, num_classes) raise ConfigError.
  """
  cm = confusion_matrix(y_true, y_pred, num_classes)
  total = int(cm.sum())
  if total == 0:
    raise errors.ConfigError("cannot score an empty set of predictions")
  tp = np.diag(cm).astype(np.float64)
  support = cm.sum(axis=1)
  predicted = cm.sum(axis=0)
  precision = _safe_divide(tp, predicted)
  recall = _safe_divide(tp, support)
  f1 = _safe_divide(2 * precision * recall, precision + recall)
  weights = support / total

  names = CLASS_NAMES if num_classes == NUM_CLASSES else None
  per_class = [{
      "class_id": c,
      "name": names[c] if names else str(c),
      "precision": float(precision[c]),
      "recall": float(recall[c]),
      "f1": float(f1[c]),
      "support": int(support[c]),
  } for c in range(num_classes)]
  return {
      "accuracy": float(tp.sum() / total),
      "precision_weighted": float(np.dot(weights, precision)),
      "recall_weighted": float(np.dot(weights, recall)),
      "f1_weighted": float(np.dot(weights, f1)),
      "precision_macro": float(precision.mean()),
      "recall_macro": float(recall.mean()),
      "f1_macro": float(f1.mean()),
      "num_examples": total,
      "per_class": per_class,
      "confusion_matrix": cm.tolist(),
  }

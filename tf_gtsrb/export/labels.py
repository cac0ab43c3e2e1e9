"""labels.txt: one class name per line, line index = class id.

This is the label file format of TFLite image-classification metadata
(an associated file of type TENSOR_AXIS_LABELS). The labels are not embedded
into the .tflite file: the file is written beside the model, which keeps the
model bytes (and the C array built from them) free of strings.
"""

import os

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb.data.class_names import CLASS_NAMES
from tf_gtsrb.data.class_names import NUM_CLASSES

LABELS_FILE = "labels.txt"


def labels_text(class_names=CLASS_NAMES):
  """The labels.txt contents for `class_names`."""
  names = [str(n) for n in class_names]
  for i, name in enumerate(names):
    if not name.strip() or "\n" in name or "\r" in name:
      raise errors.ConfigError(f"class {i}: name {name!r} is empty or spans lines")
  return "\n".join(names) + "\n"


def write_labels(path, class_names=CLASS_NAMES):
  """Writes labels.txt atomically; a directory `path` gets 'labels.txt' inside it.

  Returns the path written.
  """
  if os.path.isdir(path):
    path = os.path.join(path, LABELS_FILE)
  io_utils.write_text(path, labels_text(class_names))
  return path


def read_labels(path, num_classes=NUM_CLASSES):
  """Reads labels.txt; returns a tuple of `num_classes` names.

  Raises DataError naming the file when it is missing, has another number of
  lines, or an empty line.
  """
  try:
    with open(path, encoding="utf-8") as f:
      lines = f.read().splitlines()
  except FileNotFoundError as e:
    raise errors.DataError(f"{path}: labels file not found") from e
  except (OSError, UnicodeDecodeError) as e:
    raise errors.DataError(f"{path}: cannot read labels file: {e}") from e
  if len(lines) != num_classes:
    raise errors.DataError(f"{path}: expected {num_classes} labels (one a line), got {len(lines)}")
  for i, line in enumerate(lines):
    if not line.strip():
      raise errors.DataError(f"{path}: line {i + 1} (class {i}) is empty")
  return tuple(lines)

"""Classify traffic-sign images with the released INT8 model (or any compatible .tflite).

Runs on the LiteRT interpreter alone: importing this module and classifying
never imports TensorFlow. Images of any size and mode are prepared as the
training data was: the whole image, turned upright (EXIF), converted to RGB
(alpha composited on black, 16-bit scaled to 8 bits) and resized bilinearly
to the model's input size.

Example (from the repository root):

  >>> import tf_gtsrb
  >>> classifier = tf_gtsrb.Classifier()  # The released INT8 model and labels.
  >>> best = classifier.classify("docs/images/stop.png", top_k=1)[0]
  >>> best.class_id, best.name
  (14, 'Stop')

A fresh process imports, loads the model and classifies one PNG in about
0.4 s on a 2-core CPU (no TensorFlow is loaded).
"""

import csv
import dataclasses
import glob
import importlib.resources
import io
import json
import os

import numpy as np
from PIL import Image
from PIL import ImageOps

from tf_gtsrb import errors
from tf_gtsrb.models import runners
from tf_gtsrb.data import images as image_lib
from tf_gtsrb.export import labels as labels_lib

MODELS_PACKAGE = "tf_gtsrb_models"  # models/ of the repository, installed as package data.
DEFAULT_MODEL = "traffic_sign_cnn_pruned_int8.tflite"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".pnm", ".bmp", ".gif", ".webp",
                    ".tif", ".tiff")


@dataclasses.dataclass(frozen=True)
class Prediction:
  """One of the top-k classes of an image."""
  class_id: int
  name: str
  probability: float


def released_file(name):
  """The path of file `name` of the released models (package `tf_gtsrb_models`)."""
  return os.fspath(importlib.resources.files(MODELS_PACKAGE).joinpath(name))


class Classifier:
  """A .tflite traffic-sign classifier with its labels.

  `model`: a .tflite path or its bytes; default the released INT8 model. Its
  input may be int8, uint8 (quantization read from the tensor) or float32
  (pixel / 255), of shape [1 or N, S, S, 3]. `labels`: a labels.txt (one class
  name a line, line index = class id); default the released labels.txt.

  Bad files raise ModelError or DataError naming the file.
  """

  def __init__(self, model=None, labels=None, num_threads=1):
    if model is None:
      model = released_file(DEFAULT_MODEL)
    self._runner = runners.TFLiteRunner(model, num_threads=num_threads)
    self.model_source = self._runner.source
    self.input_size = self._runner.input_size
    output = self._runner.graph.tensors[self._runner.graph.outputs[0]]
    if len(output.shape) != 2:
      raise errors.ModelError(
          f"{self.model_source}: expected an output of shape [1, classes], got {output.shape}")
    self.num_classes = int(output.shape[1])
    labels = released_file(labels_lib.LABELS_FILE) if labels is None else os.fspath(labels)
    self.labels_path = labels
    self.class_names = _read_labels(labels, self.num_classes, self.model_source)

  def probabilities(self, images):
    """Class probabilities, float32 [N, num_classes], of one image or a list of images."""
    batch = images if _is_batch(images) else [images]
    if len(batch) == 0:
      return np.zeros((0, self.num_classes), np.float32)
    pixels = np.stack([self.prepare(image, f"image {i}") for i, image in enumerate(batch)])
    return self._runner.predict(pixels)

  def classify(self, images, top_k=3):
    """The `top_k` Predictions, most probable first, of one image or of each in a list.

    An image is a file path, encoded bytes (PNG, JPEG, PPM...), a PIL image or
    a uint8 array [H, W], [H, W, 3] or [H, W, 4]; a list (or a uint8 array
    [N, H, W, 3]) is a batch and gives one list of Predictions per image.
    """
    top_k = _check_top_k(top_k, self.num_classes)
    batch = _is_batch(images)
    results = [self._top(p, top_k) for p in self.probabilities(images)]
    return results if batch else results[0]

  def prepare(self, image, source="image"):
    """One image -> RGB uint8 [S, S, 3] at the model's input size."""
    return image_lib.crop_and_resize(load_rgb(image, source), self.input_size)

  def _top(self, probabilities, top_k):
    order = np.argsort(-probabilities, kind="stable")[:top_k]  # Ties: lower class id first.
    return [Prediction(int(i), self.class_names[i], float(probabilities[i])) for i in order]


def load_rgb(image, source="image"):
  """A path, encoded bytes, PIL image or uint8 array -> RGB uint8 array (H, W, 3).

  Unreadable, corrupt or too large images raise DataError naming the path (or
  `source` for in-memory images); an unsupported type raises ConfigError.
  """
  if isinstance(image, (str, os.PathLike)):
    path = os.fspath(image)
    try:
      with open(path, "rb") as f:
        data = f.read()
    except OSError as e:
      raise errors.DataError(f"{path}: cannot read image: {e.strerror or e}") from e
    return image_lib.decode_image(data, path, exif_transpose=True)
  if isinstance(image, (bytes, bytearray, memoryview)):
    return image_lib.decode_image(bytes(image), source, exif_transpose=True)
  if isinstance(image, Image.Image):
    if image.width * image.height > image_lib.MAX_PIXELS:
      raise errors.DataError(
          f"{source}: image of {image.width}x{image.height} pixels is too large")
    return image_lib.to_rgb_array(ImageOps.exif_transpose(image))
  if isinstance(image, np.ndarray):
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (
        image.ndim == 3 and image.shape[2] not in (1, 3, 4)) or 0 in image.shape:
      raise errors.ConfigError(
          f"{source}: expected a uint8 array [H, W], [H, W, 3] or [H, W, 4], got "
          f"{image.dtype} {tuple(image.shape)}")
    if image.ndim == 3 and image.shape[2] == 3:
      return np.ascontiguousarray(image)
    return image_lib.to_rgb_array(Image.fromarray(image.squeeze(axis=2) if image.ndim == 3
                                                  and image.shape[2] == 1 else image))
  raise errors.ConfigError(f"{source}: cannot classify an image given as {type(image).__name__}")


def image_paths(patterns):
  """Expands files, directories (their image files, sorted) and glob patterns to paths.

  A pattern that names nothing is kept as it is, so that classifying it reports
  the missing file.
  """
  paths = []
  for pattern in patterns:
    if os.path.isdir(pattern):
      paths.extend(sorted(os.path.join(pattern, name) for name in os.listdir(pattern)
                          if name.lower().endswith(IMAGE_EXTENSIONS)
                          and os.path.isfile(os.path.join(pattern, name))))
    elif os.path.exists(pattern) or not glob.has_magic(pattern):
      paths.append(pattern)
    else:
      paths.extend(sorted(glob.glob(pattern, recursive=True)) or [pattern])
  return paths


def classify_files(classifier, paths, top_k=3):
  """Yields (path, Predictions or None, error message or None) for each file, in order.

  A file that cannot be read or decoded yields its one-line error; the rest
  still run.
  """
  for path in paths:
    try:
      yield path, classifier.classify(path, top_k=top_k), None
    except errors.GtsrbError as e:
      yield path, None, str(e)


CSV_HEADER = "image,rank,class_id,name,probability"


def format_result(path, predictions, output_format="text"):
  """One image's Predictions as a text line, a JSON line or CSV rows (see CSV_HEADER)."""
  if output_format == "text":
    return f"{path}: " + "; ".join(
        f"{p.class_id} {p.name} {p.probability:.4f}" for p in predictions)
  if output_format == "json":
    return json.dumps({"image": path, "predictions": [dataclasses.asdict(p) for p in predictions]})
  if output_format == "csv":
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for rank, p in enumerate(predictions, 1):
      writer.writerow([path, rank, p.class_id, p.name, f"{p.probability:.6f}"])
    return out.getvalue().rstrip("\n")
  raise errors.ConfigError(f"unknown output format {output_format!r} (text, json or csv)")


def _read_labels(path, num_classes, model_source):
  """The class names in `path`; DataError naming the file (and the model when they differ)."""
  if not os.path.isfile(path):
    raise errors.DataError(f"{path}: labels file not found")
  try:
    return labels_lib.read_labels(path, num_classes)
  except errors.DataError as e:
    raise errors.DataError(f"{e} (the model {model_source} has {num_classes} classes)") from e


def _check_top_k(top_k, num_classes):
  if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
    raise errors.ConfigError(f"top_k must be a positive integer, got {top_k!r}")
  return min(int(top_k), num_classes)


def _is_batch(images):
  return isinstance(images, (list, tuple)) or (
      isinstance(images, np.ndarray) and images.ndim == 4)

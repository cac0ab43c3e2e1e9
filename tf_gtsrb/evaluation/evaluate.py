"""Scoring a Keras model on a prepared dataset split, and writing the results."""

import os

import numpy as np
import tensorflow as tf

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb.evaluation import complexity
from tf_gtsrb.evaluation import metrics
from tf_gtsrb.evaluation import plots
from tf_gtsrb.evaluation import report

SPLITS = ("train", "validation", "test")
JSON_NAME = "evaluation.json"
MARKDOWN_NAME = "evaluation.md"
PNG_NAME = "confusion_matrix.png"


def _check_batch_size(batch_size):
  if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
      or batch_size < 1:
    raise errors.ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")


def predict_keras(model, images, batch_size=256):
  """Returns class probabilities [N, num_classes] as a float32 numpy array.

  `images`: float32 images in [0, 1] ([N, S, S, 3]; uint8 pixels are divided by
  255), or a tf.data.Dataset of image batches or (images, labels) batches.
  """
  _check_batch_size(batch_size)
  if isinstance(images, tf.data.Dataset):
    probabilities = model.predict(images, verbose=0)
  else:
    images = np.asarray(images)
    if images.dtype == np.uint8:
      images = images.astype(np.float32) / 255.0
    if images.ndim != 4:
      raise errors.ConfigError(f"images must be a [N, H, W, C] array, got shape {images.shape}")
    if len(images) == 0:
      return np.zeros((0,) + tuple(model.output_shape[1:]), np.float32)
    probabilities = model.predict(images, batch_size=batch_size, verbose=0)
  return np.asarray(probabilities, dtype=np.float32)


def predict_dataset(model, dataset):
  """Runs `model` over (images, labels) batches once; returns (probabilities, labels)."""
  probabilities, labels = [], []
  for batch_images, batch_labels in dataset:
    probabilities.append(np.asarray(model.predict_on_batch(batch_images), np.float32))
    labels.append(np.asarray(batch_labels).reshape(-1))
  if not labels:
    raise errors.DataError("the dataset split is empty; nothing to evaluate")
  return np.concatenate(probabilities), np.concatenate(labels).astype(np.int64)


def evaluate_keras_model(model, data_dir, split="test", batch_size=256, source=None):
  """Scores `model` on a split of a prepared dataset.

  Returns {'metrics': classification_report, 'params': count_params,
  'macs': MACs per image, 'split': split, 'num_classes': ...}. A bad split,
  batch size or data_dir raises ConfigError; a model that is not an RGB image
  classifier, or whose input size differs from the dataset's images, ModelError
  naming `source` (default: the model's name); all before any prediction.
  """
  from tf_gtsrb.data import input_pipeline  # pylint: disable=g-import-not-at-top

  if split not in SPLITS:
    raise errors.ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
  _check_batch_size(batch_size)
  if not os.path.isdir(data_dir):
    raise errors.ConfigError(f"{data_dir}: data directory not found")
  from tf_gtsrb.models import io as model_io  # pylint: disable=g-import-not-at-top
  model_io.check_classifier(model, source or f"model {model.name!r}")
  size = input_pipeline.image_size(data_dir)
  expected = tuple(model.input_shape[1:3])
  if None not in expected and expected != (size, size):
    raise errors.ModelError(
        f"model {model.name!r} takes {expected[0]}x{expected[1]} images but {data_dir} holds "
        f"{size}x{size} images")
  num_classes = int(model.output_shape[-1])

  dataset = input_pipeline.eval_dataset(data_dir, split, batch_size)
  probabilities, labels = predict_dataset(model, dataset)
  predictions = probabilities.argmax(axis=-1)
  return {
      "metrics": metrics.classification_report(labels, predictions, num_classes),
      "params": complexity.count_params(model),
      "macs": complexity.count_macs(model),
      "split": split,
      "num_classes": num_classes,
  }


def write_evaluation(result, output_dir, model_path=None, name=None, recorded_path=None):
  """Writes evaluation.json, confusion_matrix.png and evaluation.md to `output_dir`.

  `result` comes from `evaluate_keras_model`. With `model_path`, the model
  file's size, gzip-compressed size and SHA-256 are recorded too, and its path
  (or `recorded_path`: where a staged model file will end up). `name` labels the
  table rows (default: the model file name, else 'model'). Each file is written
  atomically. Returns {'json', 'png', 'markdown'} paths.
  """
  result = dict(result)
  if name is None:
    name = os.path.splitext(os.path.basename(model_path))[0] if model_path else "model"
  result["name"] = name
  if model_path:
    result["model_path"] = recorded_path or model_path
    result["model_size_bytes"] = complexity.model_file_size(model_path)
    result["model_gzip_size_bytes"] = complexity.gzip_size(model_path)
    from tf_gtsrb.data import archives  # pylint: disable=g-import-not-at-top
    result["model_sha256"] = archives.sha256sum(model_path)

  os.makedirs(output_dir, exist_ok=True)
  paths = {
      "json": os.path.join(output_dir, JSON_NAME),
      "png": os.path.join(output_dir, PNG_NAME),
      "markdown": os.path.join(output_dir, MARKDOWN_NAME),
  }
  scores = result["metrics"]
  class_names = [c["name"] for c in scores["per_class"]]
  plots.save_confusion_matrix_png(
      scores["confusion_matrix"], paths["png"], class_names=class_names,
      title=f"{name}: {result.get('split', '')} split, accuracy "
            f"{100 * scores['accuracy']:.2f}%")
  io_utils.write_text(paths["markdown"], markdown_summary(result))
  io_utils.write_json(paths["json"], result)
  return paths


def markdown_summary(result):
  """The evaluation.md text: metrics table, performance row, most frequent
  confusions, per-class table."""
  name = result.get("name", "model")
  scores = result["metrics"]
  performance = {"name": name, "macs": result.get("macs"), "params": result.get("params"),
                 "size_bytes": result.get("model_size_bytes"),
                 "latency_ms": result.get("latency_ms"), "fps": result.get("fps")}
  return "\n".join([
      f"# Evaluation of {name} on the {result.get('split', '?')} split",
      "",
      f"{scores['num_examples']} images.",
      "",
      report.metrics_table([(name, scores)]),
      report.performance_table([performance]),
      "## Most frequent confusions",
      "",
      report.confusions_table(scores),
      "## Per-class scores",
      "",
      report.per_class_table(scores),
  ])

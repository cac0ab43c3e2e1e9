"""Scores a .keras model on a prepared GTSRB split; writes JSON, markdown and a confusion matrix.

Example:
  gtsrb-evaluate --model=runs/base/model.keras --data_dir=data/gtsrb --split=test
"""

import os
import sys

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from absl import app
from absl import flags

from tf_gtsrb import errors

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "Path to the .keras model file to evaluate.")
flags.DEFINE_string("data_dir", None, "Prepared dataset directory (written by gtsrb-prepare-data).")
flags.DEFINE_enum("split", "test", ["train", "validation", "test"], "Dataset split to score.")
flags.DEFINE_string("output_dir", None,
                    "Directory for evaluation.json/.md and confusion_matrix.png "
                    "(default: <model directory>/eval_<split>).")
flags.DEFINE_integer("batch_size", 256, "Images per inference batch.")
flags.DEFINE_string("name", None, "Model name in the tables (default: model file name).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    _evaluate()
  except errors.GtsrbError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


def _evaluate():
  model_path, data_dir = FLAGS.model, FLAGS.data_dir
  if not model_path:
    raise errors.ConfigError("--model is required (path to a .keras file)")
  if not data_dir:
    raise errors.ConfigError("--data_dir is required (prepared dataset directory)")
  if not os.path.isfile(model_path):
    raise errors.ConfigError(f"{model_path}: model file not found (--model)")
  if not os.path.isdir(data_dir):
    raise errors.ConfigError(f"{data_dir}: data directory not found (--data_dir)")
  if FLAGS.batch_size < 1:
    raise errors.ConfigError(f"--batch_size must be >= 1, got {FLAGS.batch_size}")
  output_dir = FLAGS.output_dir or os.path.join(
      os.path.dirname(os.path.abspath(model_path)), f"eval_{FLAGS.split}")

  # Imported here so that flag errors are reported without loading TensorFlow.
  from tf_gtsrb.evaluation import evaluate  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.evaluation import report  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.models import io as model_io  # pylint: disable=g-import-not-at-top

  model = model_io.load_model(model_path)
  result = evaluate.evaluate_keras_model(model, data_dir, FLAGS.split, FLAGS.batch_size)
  paths = evaluate.write_evaluation(result, output_dir, model_path=model_path, name=FLAGS.name)
  name = FLAGS.name or os.path.splitext(os.path.basename(model_path))[0]
  scores = result["metrics"]
  print(f"{name}: {scores['num_examples']} {FLAGS.split} images")
  print(report.metrics_table([(name, scores)]))
  print(report.performance_table([{
      "name": name, "macs": result["macs"], "params": result["params"],
      "size_bytes": os.path.getsize(model_path)}]))
  for kind in ("json", "markdown", "png"):
    print(f"wrote {paths[kind]}")


def run():
  app.run(main)


if __name__ == "__main__":
  run()

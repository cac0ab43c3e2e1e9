"""Scores a .keras model on a prepared GTSRB split; writes JSON, markdown and a confusion matrix.

Example:
  gtsrb-evaluate --model=runs/base/model.keras --data_dir=data/gtsrb --split=test
  gtsrb-evaluate --model=runs/base/model.keras --data_dir=data/gtsrb --corruptions \
      --corruption_subset=2000   # also the corruption suite (docs/robustness.md)
"""

import os

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from absl import flags

from tf_gtsrb import errors
from tf_gtsrb_tools import common

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "Path to the .keras model file to evaluate.")
flags.DEFINE_string("data_dir", None, "Prepared dataset directory (written by gtsrb-prepare-data).")
flags.DEFINE_enum("split", "test", ["train", "validation", "test"], "Dataset split to score.")
flags.DEFINE_string("output_dir", None,
                    "Directory for evaluation.json/.md and confusion_matrix.png "
                    "(default: <model directory>/eval_<split>).")
flags.DEFINE_integer("batch_size", 256, "Images per inference batch.")
flags.DEFINE_string("name", None, "Model name in the tables (default: model file name).")
common.define_corruption_flags()


def main():
  common.require_flags("model", "data_dir")
  model_path, data_dir = common.existing_file("model"), common.existing_dir("data_dir")
  if model_path.endswith(".tflite"):
    raise errors.ConfigError(f"{model_path}: gtsrb-evaluate scores .keras models; score a "
                             f".tflite with gtsrb-benchmark-tflite --models=NAME={model_path}")
  common.at_least("batch_size", 1)
  output_dir = FLAGS.output_dir or os.path.join(
      os.path.dirname(os.path.abspath(model_path)), f"eval_{FLAGS.split}")

  # Imported here so that flag errors are reported without loading TensorFlow.
  from tf_gtsrb import io_utils  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.evaluation import evaluate  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.evaluation import report  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.data import input_pipeline  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.models import io as model_io  # pylint: disable=g-import-not-at-top

  common.corruption_settings()  # Bad names fail before any work.
  input_pipeline.find_dataset_dir(data_dir)  # A prepared dataset, before loading the model.
  model = model_io.load_model(model_path)
  result = evaluate.evaluate_keras_model(model, data_dir, FLAGS.split, FLAGS.batch_size,
                                         source=model_path)
  name = FLAGS.name or os.path.splitext(os.path.basename(model_path))[0]
  scores = result["metrics"]
  print(f"{name}: {scores['num_examples']} {FLAGS.split} images")
  print(report.metrics_table([(name, scores)]))
  print(report.performance_table([{
      "name": name, "macs": result["macs"], "params": result["params"],
      "size_bytes": os.path.getsize(model_path)}]))
  # The files commit as one set: a failed or killed run leaves the previous set intact.
  with io_utils.atomic_directory(output_dir, carry_over=True) as staging:
    paths = evaluate.write_evaluation(result, staging, model_path=model_path, name=FLAGS.name)
    if FLAGS.corruptions:
      common.corruption_suite({name: model_path}, data_dir, staging, FLAGS.split)
  for kind in ("json", "markdown", "png"):
    print(f"wrote {os.path.join(output_dir, os.path.basename(paths[kind]))}")
  if FLAGS.corruptions:
    print(f"wrote {output_dir}: {common.CORRUPTION_FILES}")


def run():
  common.run(main, writes=("output_dir",))


if __name__ == "__main__":
  run()

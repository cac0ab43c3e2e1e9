"""Magnitude-prunes a trained model's Conv2D/Dense kernels while fine-tuning it.

Writes <output_dir>/pruned_sparse.keras (plain Keras model whose kernels hold
the zeros) and sparsity.json (per-layer sparsity, validation accuracy before and
after, file and gzip sizes against the dense model). --fine_tune_on_validation
is the final fit: it trains on the validation split too and measures validation
accuracy only before.

Example:
  gtsrb-prune-magnitude --model=work/baseline/model.keras --data_dir=work/data \
      --output_dir=work/sparse80 --target_sparsity=0.8 --epochs=5
"""

import os
import tempfile

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from absl import flags

from tf_gtsrb_tools import common

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "Trained float .keras model to prune.")
flags.DEFINE_string("data_dir", None, "Prepared dataset directory (written by gtsrb-prepare-data).")
flags.DEFINE_string("output_dir", None, "Directory for pruned_sparse.keras and sparsity.json.")
flags.DEFINE_float("target_sparsity", 0.8, "Fraction of Conv2D/Dense kernel weights set to zero, "
                   "in [0, 1) (0.8 = 80% zeros).")
common.define_fine_tuning_flags(epochs=5, learning_rate=1e-4)
common.define_final_fit_flag()

MODEL_FILE = "pruned_sparse.keras"
REPORT_FILE = "sparsity.json"


def _check_flags():
  common.require_flags("model", "data_dir", "output_dir")
  common.existing_file("model")
  common.existing_dir("data_dir")
  common.fine_tune_flags(min_epochs=1)


def file_sizes(path):
  """{'bytes', 'gzip_bytes'} of a model file."""
  from tf_gtsrb.evaluation import complexity  # pylint: disable=g-import-not-at-top
  return {"bytes": complexity.model_file_size(path), "gzip_bytes": complexity.gzip_size(path)}


def dense_reference_sizes(model):
  """Sizes of `model` saved the way the pruned model is (no optimizer state), for comparison."""
  from tf_gtsrb.compression import magnitude_pruning  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.models import io as model_io  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "dense.keras")
    model_io.save_model(magnitude_pruning.copy_model(model), path)
    return file_sizes(path)


def main():
  _check_flags()
  # Imported here so that flag errors are reported without loading TensorFlow.
  from tf_gtsrb import io_utils  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.compression import magnitude_pruning  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.evaluation import evaluate  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.models import io as model_io  # pylint: disable=g-import-not-at-top

  target = magnitude_pruning.check_target_sparsity(FLAGS.target_sparsity)
  model = model_io.load_classifier(FLAGS.model)
  magnitude_pruning.check_float_model(model, "prune")
  data_dir, batch_size = FLAGS.data_dir, FLAGS.batch_size
  train_ds, val_ds, steps = common.fine_tune_datasets(FLAGS.fine_tune_on_validation)

  before = evaluate.evaluate_keras_model(model, data_dir, "validation", batch_size)
  pruned = magnitude_pruning.prune_and_fine_tune(
      model, train_ds, val_ds, target, FLAGS.epochs, FLAGS.learning_rate, steps_per_epoch=steps,
      verbose=FLAGS.verbose)
  after = (None if FLAGS.fine_tune_on_validation
           else evaluate.evaluate_keras_model(pruned, data_dir, "validation", batch_size))

  model_path = os.path.join(FLAGS.output_dir, MODEL_FILE)
  report_path = os.path.join(FLAGS.output_dir, REPORT_FILE)
  # The model and its report commit as one set: a failed run leaves the previous pair intact.
  with io_utils.atomic_directory(FLAGS.output_dir, carry_over=True) as staging:
    staged_model = os.path.join(staging, MODEL_FILE)
    model_io.save_model(pruned, staged_model)
    report = _report(model, pruned, model_path, file_sizes(staged_model), target, steps,
                     before, after)
    io_utils.write_json(os.path.join(staging, REPORT_FILE), report)
  _print_summary(report)
  print(f"wrote {model_path}\nwrote {report_path}")


def _report(model, pruned, model_path, sparse, target, steps, before, after):
  """sparsity.json: settings, sparsity, validation accuracy and file sizes, dense vs sparse."""
  from tf_gtsrb.compression import magnitude_pruning  # pylint: disable=g-import-not-at-top
  dense = dense_reference_sizes(model)
  batch_size = FLAGS.batch_size
  return {
      "input_model": os.path.abspath(FLAGS.model),
      "model": os.path.abspath(model_path),
      "target_sparsity": target,
      "epochs": FLAGS.epochs,
      "steps_per_epoch": steps,
      "learning_rate": FLAGS.learning_rate,
      "batch_size": batch_size,
      **common.robust_augmentation_record(),
      "sparsity": magnitude_pruning.sparsity_report(pruned),
      "fine_tune_split": "train+validation" if FLAGS.fine_tune_on_validation else "train",
      "validation_accuracy": {"dense": before["metrics"]["accuracy"],
                              "sparse": None if after is None else after["metrics"]["accuracy"]},
      "file_size": {
          "dense_bytes": dense["bytes"], "dense_gzip_bytes": dense["gzip_bytes"],
          "sparse_bytes": sparse["bytes"], "sparse_gzip_bytes": sparse["gzip_bytes"],
          "gzip_reduction": 1.0 - sparse["gzip_bytes"] / dense["gzip_bytes"],
      },
  }


def _print_summary(report):
  print("| layer | weights | zeros | sparsity |\n|---|---:|---:|---:|")
  for row in report["sparsity"]["layers"] + [dict(report["sparsity"], layer="all kernels")]:
    print(f"| {row['layer']} | {row['weights']} | {row['zeros']} | {row['sparsity']:.1%} |")
  accuracy, size = report["validation_accuracy"], report["file_size"]
  sparse = (common.NOT_MEASURED_AFTER_FINAL_FIT if accuracy["sparse"] is None
            else f"{accuracy['sparse']:.4f}")
  print(f"validation accuracy: dense {accuracy['dense']:.4f} -> sparse {sparse}")
  print(f"model file gzip: dense {size['dense_gzip_bytes']} B -> sparse "
        f"{size['sparse_gzip_bytes']} B ({size['gzip_reduction']:.1%} smaller)")


def run():
  common.run(main, writes=("output_dir",))


if __name__ == "__main__":
  run()

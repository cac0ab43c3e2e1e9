"""Quantization-aware training: fine-tunes a float model with INT8 fake quantization.

Sparse input models (>= 30% zero kernel weights, e.g. from gtsrb-prune-magnitude)
get sparsity-preserving QAT by default. With --cluster=N the kernels are first
clustered to N shared values and fine-tuned (the same --epochs), then QAT keeps
the clusters. Writes <output_dir>/qat.keras and qat.json (validation accuracy
of the fake-quantized model simulated in float, and test accuracy when the
dataset has a test split). --fine_tune_on_validation is the final fit: it trains
on the validation split too and measures no validation accuracy. Convert
qat.keras to INT8 TFLite afterwards.

Example:
  gtsrb-qat --model=work/sparse80/pruned_sparse.keras --data_dir=work/data \
      --output_dir=work/qat --epochs=2
"""

import os

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from absl import flags

from tf_gtsrb import errors
from tf_gtsrb_tools import common

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "Float .keras model (trained, possibly pruned) to quantize.")
flags.DEFINE_string("data_dir", None, "Prepared dataset directory (written by gtsrb-prepare-data).")
flags.DEFINE_string("output_dir", None, "Directory for qat.keras and qat.json.")
common.define_fine_tuning_flags(epochs=2, learning_rate=1e-5, what="QAT fine-tuning")
common.define_distillation_flags()
common.define_final_fit_flag()
flags.DEFINE_enum("preserve_sparsity", "auto", ["auto", "true", "false"],
                  "Keep zero weights zero during QAT; auto: when the model is >= 30% sparse.")
flags.DEFINE_integer("cluster", 0, "Cluster each kernel to this many shared values before QAT "
                     "(cluster-preserving QAT); 0: no clustering.")

MODEL_FILE = "qat.keras"
REPORT_FILE = "qat.json"


def _check_flags():
  common.require_flags("model", "data_dir", "output_dir")
  common.distillation_flags()
  common.existing_file("model")
  common.existing_dir("data_dir")
  common.fine_tune_flags(min_epochs=1)
  if FLAGS.cluster and not 2 <= FLAGS.cluster <= 256:
    raise errors.ConfigError(f"--cluster must be 0 (off) or in [2, 256], got {FLAGS.cluster}")


def _accuracy(model, split):
  """Accuracy of `model` on `split`, or None when the dataset has no such split."""
  from tf_gtsrb.evaluation import evaluate  # pylint: disable=g-import-not-at-top
  try:
    result = evaluate.evaluate_keras_model(model, FLAGS.data_dir, split, FLAGS.batch_size)
  except errors.DataError as e:
    print(f"no {split} accuracy: {e}")
    return None
  return result["metrics"]["accuracy"]


def main():
  _check_flags()
  # Imported here so that flag errors are reported without loading TensorFlow.
  from tf_gtsrb import io_utils  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.compression import quantization  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.models import io as model_io  # pylint: disable=g-import-not-at-top

  model = model_io.load_classifier(FLAGS.model)
  train_ds, val_ds, steps = common.fine_tune_datasets(FLAGS.fine_tune_on_validation)
  preserve = {"auto": None, "true": True, "false": False}[FLAGS.preserve_sparsity]
  qat_model, record = quantization.run_qat(
      model, train_ds, val_ds, FLAGS.epochs, FLAGS.learning_rate, steps,
      preserve_sparsity=preserve, clusters=FLAGS.cluster, verbose=FLAGS.verbose,
      **common.distillation_kwargs())

  model_path = os.path.join(FLAGS.output_dir, MODEL_FILE)
  report = {
      "input_model": os.path.abspath(FLAGS.model),
      "model": os.path.abspath(model_path),
      "epochs": FLAGS.epochs,
      "steps_per_epoch": steps,
      "learning_rate": FLAGS.learning_rate,
      "batch_size": FLAGS.batch_size,
      **common.robust_augmentation_record(),
      "preserve_sparsity": record["preserve_sparsity"],
      "cluster": record["clusters"],
      "teacher": common.teacher_record(),
      "input_sparsity": record["input_sparsity"],
      "sparsity": record["sparsity"],
      "unique_weights": record["unique_weights"],
      "fine_tune_split": "train+validation" if FLAGS.fine_tune_on_validation else "train",
      "validation_accuracy": None if val_ds is None else _accuracy(qat_model, "validation"),
      "test_accuracy": _accuracy(qat_model, "test"),
      "accuracy_note": "Keras model with fake quantization, simulated in float32",
  }
  report_path = os.path.join(FLAGS.output_dir, REPORT_FILE)
  # The model and its report commit as one set: a failed run leaves the previous pair intact.
  with io_utils.atomic_directory(FLAGS.output_dir, carry_over=True) as staging:
    model_io.save_model(qat_model, os.path.join(staging, MODEL_FILE))
    io_utils.write_json(os.path.join(staging, REPORT_FILE), report)
  print(f"quantization-aware training (preserve_sparsity={record['preserve_sparsity']}, "
        f"preserve_clusters={record['preserve_clusters']})")
  print(f"kernel sparsity: input {record['input_sparsity']:.1%} -> QAT "
        f"{record['sparsity']['sparsity']:.1%}")
  if report["validation_accuracy"] is not None:
    print(f"validation accuracy (fake-quant, float simulation): "
          f"{report['validation_accuracy']:.4f}")
  if report["test_accuracy"] is not None:
    print(f"test accuracy (fake-quant, float simulation): {report['test_accuracy']:.4f}")
  print(f"wrote {model_path}\nwrote {report_path}")


def run():
  common.run(main, writes=("output_dir",))


if __name__ == "__main__":
  run()

"""Removes conv channels from a trained TrafficSignCNN, fine-tunes the thinner model, scores it.

Prune either a fixed percentage of every conv layer (--percent) or the
per-layer percentages recommended by gtsrb-analyze (--analysis), at once or in
--stages equal stages with fine-tuning between; --swa_epochs weight-averages
the fine-tuned model (tf_gtsrb.training.swa). Writes pruned.keras,
prune_config.json (kept channel indices) and the validation
evaluation (evaluation.json/.md, confusion_matrix.png) into --output_dir.
--fine_tune_on_validation is the final fit: the fine-tune trains on the
validation split too, and only the accuracy before it is measured.

Example:
  gtsrb-prune-channels --model=runs/base/model.keras --data_dir=data/gtsrb \\
      --analysis=runs/base/analysis/analysis.json --epochs=10 --output_dir=runs/pruned
"""

import os

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from absl import flags

from tf_gtsrb import errors
from tf_gtsrb_tools import common

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "Path to the trained TrafficSignCNN .keras file.")
flags.DEFINE_string("data_dir", None, "Prepared dataset directory (written by gtsrb-prepare-data).")
flags.DEFINE_string("output_dir", None, "Directory for pruned.keras, prune_config.json and the "
                    "validation evaluation.")
flags.DEFINE_float("percent", None, "Share of every conv layer's channels to remove (%, [0, 100)).")
flags.DEFINE_string("analysis", None, "analysis.json from gtsrb-analyze: prune each layer by its "
                    "recommended percentage (instead of --percent).")
flags.DEFINE_enum("criterion", "l1", ["l1", "bn_gamma"],
                  "Which filters to keep: largest filter L1 norm or largest |BN gamma|.")
flags.DEFINE_integer("stages", 1, "Remove the channels in this many equal stages, each chosen "
                     "on the model the previous stage fine-tuned and followed by --epochs / "
                     "--stages epochs; 1: all at once.")
common.define_fine_tuning_flags(epochs=5, learning_rate=1e-4)
common.define_distillation_flags()
common.define_final_fit_flag()
flags.DEFINE_integer("swa_epochs", 0, "Stochastic weight averaging after the fine-tune: this many "
                     "more epochs at --swa_learning_rate (same loss and teacher), their weights "
                     "averaged into pruned.keras; 0: none.")
flags.DEFINE_float("swa_learning_rate", 2.5e-4,
                   "Constant learning rate of the weight-averaging epochs.")


def _check_flags():
  common.require_flags("model", "data_dir", "output_dir")
  if (FLAGS.percent is None) == (FLAGS.analysis is None):
    raise errors.ConfigError("give exactly one of --percent and --analysis")
  common.percent("percent")
  common.fine_tune_flags(min_epochs=0)
  common.distillation_flags()
  if FLAGS.epochs % FLAGS.stages:
    raise errors.ConfigError(f"--epochs={FLAGS.epochs} does not split into --stages="
                             f"{FLAGS.stages} equal stages")
  common.at_least("swa_epochs", 0)
  common.positive("swa_learning_rate")
  if FLAGS.swa_epochs and not FLAGS.epochs:
    raise errors.ConfigError("--swa_epochs averages the fine-tune's epochs: set --epochs >= 1")
  common.existing_file("model")
  common.existing_dir("data_dir")
  if FLAGS.analysis is not None:
    common.existing_file("analysis", kind="analysis")


def main():
  _check_flags()
  # Imported here so that flag errors are reported without loading TensorFlow.
  from tf_gtsrb import io_utils  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.compression import analysis  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.compression import channel_pruning  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.data import input_pipeline  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.evaluation import evaluate  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.models import io as model_io  # pylint: disable=g-import-not-at-top

  model_path, data_dir, output_dir = FLAGS.model, FLAGS.data_dir, FLAGS.output_dir
  if FLAGS.analysis is not None:
    percentages = analysis.load_recommendations(FLAGS.analysis)
  else:
    percentages = channel_pruning.parse_percentages(FLAGS.percent)
  model = model_io.load_classifier(model_path)
  batch_size = FLAGS.batch_size
  train_ds, val_ds, steps = common.fine_tune_datasets(FLAGS.fine_tune_on_validation)
  pruned, config = channel_pruning.prune_and_fine_tune(
      model, percentages, train_ds, val_ds, FLAGS.epochs, FLAGS.learning_rate, steps,
      criterion=FLAGS.criterion, stages=FLAGS.stages, swa_epochs=FLAGS.swa_epochs,
      swa_learning_rate=FLAGS.swa_learning_rate, verbose=FLAGS.verbose,
      before_ds=input_pipeline.eval_dataset(data_dir, "validation", batch_size),
      **common.distillation_kwargs())
  config.update(source_model=os.path.abspath(model_path), percentages_from=FLAGS.analysis,
                validation_accuracy_before_fine_tune=config.pop("accuracy_before_fine_tune"))
  del config["val_accuracy"]  # Measured below, as the evaluation files report it.
  result = (None if FLAGS.fine_tune_on_validation and FLAGS.epochs
            else evaluate.evaluate_keras_model(pruned, data_dir, "validation", batch_size))
  config["fine_tune"] = {"epochs": FLAGS.epochs, "learning_rate": FLAGS.learning_rate,
                         "batch_size": batch_size, "steps_per_epoch": steps, "seed": FLAGS.seed,
                         "split": ("train+validation" if FLAGS.fine_tune_on_validation
                                   else "train"),
                         "teacher": common.teacher_record(),
                         **common.robust_augmentation_record()}
  config["validation_accuracy"] = None if result is None else result["metrics"]["accuracy"]

  # The files commit as one set: a failed or killed run leaves the previous set intact.
  pruned_path = os.path.join(output_dir, "pruned.keras")
  config_path = os.path.join(output_dir, "prune_config.json")
  with io_utils.atomic_directory(output_dir, carry_over=True) as staging:
    staged_model = os.path.join(staging, "pruned.keras")
    model_io.save_model(pruned, staged_model)
    io_utils.write_json(os.path.join(staging, "prune_config.json"), config)
    paths = (evaluate.write_evaluation(result, staging, model_path=staged_model, name="pruned",
                                       recorded_path=pruned_path)
             if result else {})
  paths = {kind: os.path.join(output_dir, os.path.basename(p)) for kind, p in paths.items()}

  print(f"{model_path}: pruned by {FLAGS.criterion}")
  print("| Layer | Channels before | Channels after | Pruned (%) |")
  print("|---|---|---|---|")
  for name, layer in config["layers"].items():
    print(f"| {name} | {layer['channels_before']} | {layer['channels_after']} | "
          f"{layer['pruned_percent']:.1f} |")
  print(f"params {config['params_before']:,} -> {config['params_after']:,}; "
        f"MACs {config['macs_before'] / 1e6:.2f}M -> {config['macs_after'] / 1e6:.2f}M")
  after = (common.NOT_MEASURED_AFTER_FINAL_FIT if result is None
           else f"{100 * config['validation_accuracy']:.2f}%")
  print(f"validation accuracy {100 * config['validation_accuracy_before_fine_tune']:.2f}% "
        f"after pruning, {after} after {FLAGS.epochs} fine-tuning epoch(s)"
        + (f" and weight averaging over {FLAGS.swa_epochs} more" if FLAGS.swa_epochs else ""))
  for path in (pruned_path, config_path, *paths.values()):
    print(f"wrote {path}")


def run():
  common.run(main, writes=("output_dir",))


if __name__ == "__main__":
  run()

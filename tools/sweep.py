"""Channel-pruning sweep: prune a baseline at fixed percentages, fine-tune each, score on test.

Writes sweep.json, sweep.md (summary table, baseline first), sweep.png
(test accuracy vs MACs) and models/*.keras into --output_dir.

Example:
  gtsrb-sweep --model=runs/base/model.keras --data_dir=data/gtsrb --epochs=5 \\
      --output_dir=runs/sweep
"""


import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from absl import flags

from tf_gtsrb import errors
from tf_gtsrb_tools import common

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "Path to the trained TrafficSignCNN .keras file (baseline).")
flags.DEFINE_string("data_dir", None, "Prepared dataset directory (written by gtsrb-prepare-data).")
flags.DEFINE_string("output_dir", None, "Directory for the sweep report and pruned models.")
flags.DEFINE_list("percentages", ["10", "30", "50", "90"],
                  "Comma-separated prune percentages (%, each in [0, 100)).")
flags.DEFINE_enum("criterion", "l1", ["l1", "bn_gamma"],
                  "Which filters to keep: largest filter L1 norm or largest |BN gamma|.")
common.define_fine_tuning_flags(epochs=5, learning_rate=1e-4)


def _percentages():
  values = []
  for text in FLAGS.percentages:
    try:
      value = float(text)
    except ValueError:
      raise errors.ConfigError(f"--percentages: {text!r} is not a number") from None
    if not 0.0 <= value < 100.0:
      raise errors.ConfigError(f"--percentages: {value} is outside [0, 100)")
    values.append(value)
  if not values:
    raise errors.ConfigError("--percentages: give at least one percentage")
  return values


def main():
  common.require_flags("model", "data_dir", "output_dir")
  percentages = _percentages()
  common.fine_tune_flags(min_epochs=0)
  common.existing_file("model")
  common.existing_dir("data_dir")

  # Imported here so that flag errors are reported without loading TensorFlow.
  from tf_gtsrb.compression import sweep  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.data import input_pipeline  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.models import io as model_io  # pylint: disable=g-import-not-at-top

  data_dir, batch_size = FLAGS.data_dir, FLAGS.batch_size
  model = model_io.load_classifier(FLAGS.model)
  size = input_pipeline.image_size(data_dir)
  if tuple(model.input_shape[1:3]) != (size, size):
    raise errors.ModelError(
        f"{FLAGS.model}: model takes {model.input_shape[1]}x{model.input_shape[2]} images but "
        f"{data_dir} holds {size}x{size} images")
  sweep.check_sweep_args(model, percentages, FLAGS.criterion, FLAGS.epochs, FLAGS.learning_rate)
  train_ds, val_ds, steps = common.fine_tune_datasets()
  result = sweep.run_sweep(
      model, train_ds, val_ds,
      input_pipeline.eval_dataset(data_dir, "test", batch_size),
      FLAGS.output_dir, percentages=percentages, criterion=FLAGS.criterion,
      epochs=FLAGS.epochs, learning_rate=FLAGS.learning_rate, steps_per_epoch=steps,
      verbose=FLAGS.verbose, log=print)
  print(sweep.markdown_table(result["rows"]))
  for kind in ("json", "markdown", "png"):
    print(f"wrote {result['paths'][kind]}")


def run():
  common.run(main, writes=("output_dir",))


if __name__ == "__main__":
  run()

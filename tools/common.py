"""What every command-line tool shares: the absl entry point and flag checks.

Flag checks raise errors.ConfigError, which `run` reports as `error: ...` with
exit status 1. This module loads no TensorFlow, so flag errors come quickly.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging

from tf_gtsrb import errors

FLAGS = flags.FLAGS

# What a missing flag should hold, appended to "--NAME is required".
_REQUIRED_HINTS = {
    "model": "path to a .keras file",
    "data_dir": "prepared dataset directory",
}


def run(main):
  """Runs `main()` (no arguments) as an absl app; exits with its status (None: 0).

  Extra positional arguments are a usage error. absl logging is lowered to
  WARNING unless --verbosity is given (TensorFlow logs a lot at INFO). A
  GtsrbError becomes `error: <message>` on stderr and exit status 1.
  """
  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    try:
      status = main()
    except errors.GtsrbError as e:
      print(f"error: {e}", file=sys.stderr)
      return 1
    return 0 if status is None else status

  app.run(_main)


def define_fine_tuning_flags(epochs, learning_rate, what="Fine-tuning"):
  """Defines --epochs, --learning_rate, --batch_size, --steps_per_epoch, --seed, --verbose."""
  flags.DEFINE_integer("epochs", epochs, f"{what} epochs.")
  flags.DEFINE_float("learning_rate", learning_rate, f"{what} learning rate (Adam).")
  flags.DEFINE_integer("batch_size", 64, "Images per batch.")
  flags.DEFINE_integer("steps_per_epoch", 0, "Steps per epoch; 0 is one pass over the train split.")
  flags.DEFINE_integer("seed", 0, "Seed of the training-data shuffle and augmentation.")
  flags.DEFINE_integer("verbose", 2, "Keras progress output: 0 silent, 1 progress bar, 2 per epoch.")


# What a final fit prints in place of the validation accuracy it cannot measure.
NOT_MEASURED_AFTER_FINAL_FIT = "n/a (fine-tuned on the validation split too)"


def define_final_fit_flag():
  """Defines --fine_tune_on_validation."""
  flags.DEFINE_bool("fine_tune_on_validation", False,
                    "Final fit, once the settings are chosen on validation: train on the train "
                    "and validation splits together; no validation accuracy is measured.")


def define_distillation_flags():
  """Defines --teacher, --distill_temperature, --distill_alpha and --distill_mixup."""
  flags.DEFINE_string("teacher", None, "A float .keras model (e.g. the baseline) or a "
                      "TrafficSignCNN's float32 .tflite export to distil from, "
                      "or several comma-separated (their mean prediction teaches); none: learn "
                      "from the labels only.")
  flags.DEFINE_float("distill_temperature", None, "Softmax temperature of the distillation "
                     "loss; default: tf_gtsrb.training.distill.DEFAULT_TEMPERATURE (1).")
  flags.DEFINE_float("distill_alpha", None, "Weight of the label loss (the teacher's gets "
                     "1 - alpha); default: tf_gtsrb.training.distill.DEFAULT_ALPHA (0.1).")
  flags.DEFINE_float("distill_mixup", None, "Mixup strength a of the distillation: teacher and "
                     "student see the same images blended with Beta(a, a) weights; default: "
                     "tf_gtsrb.training.distill.DEFAULT_MIXUP (0, no mixing).")


def distillation_flags():
  """Checks --teacher (when given) and the --distill_* settings."""
  if FLAGS.teacher is not None:
    from tf_gtsrb.models import ensemble  # pylint: disable=g-import-not-at-top
    ensemble.teacher_paths(FLAGS.teacher)
  if FLAGS.distill_temperature is not None:
    positive("distill_temperature")
  if FLAGS.distill_alpha is not None and not 0.0 <= FLAGS.distill_alpha <= 1.0:
    raise errors.ConfigError(f"--distill_alpha must be in [0, 1], got {FLAGS.distill_alpha}")
  if FLAGS.distill_mixup is not None and FLAGS.distill_mixup < 0:
    raise errors.ConfigError(f"--distill_mixup must be >= 0, got {FLAGS.distill_mixup}")


def teacher_record():
  """The absolute paths of --teacher's models, for a run's config file; None without one."""
  if FLAGS.teacher is None:
    return None
  from tf_gtsrb.models import ensemble  # pylint: disable=g-import-not-at-top
  return ensemble.absolute_teacher_paths(FLAGS.teacher)


def distillation_settings():
  """{'distill_temperature': .., 'distill_alpha': .., 'distill_mixup': ..} for the flags
  that are set."""
  return {name: FLAGS[name].value
          for name in ("distill_temperature", "distill_alpha", "distill_mixup")
          if FLAGS[name].value is not None}


def distillation_kwargs():
  """The teacher-related keyword arguments of `compile.fine_tune` (the teacher loaded),
  or {} without --teacher."""
  if FLAGS.teacher is None:
    return {}
  from tf_gtsrb.models import ensemble  # pylint: disable=g-import-not-at-top
  return {"teacher": ensemble.load_teacher(FLAGS.teacher), **distillation_settings()}


def require_flags(*names):
  """Raises ConfigError for the first of the flags `names` that is not set."""
  for name in names:
    if not FLAGS[name].value:
      hint = _REQUIRED_HINTS.get(name)
      raise errors.ConfigError(f"--{name} is required" + (f" ({hint})" if hint else ""))


def existing_file(flag_name, kind="model"):
  """The path in --flag_name; ConfigError unless it is a file."""
  path = FLAGS[flag_name].value
  if not os.path.isfile(path):
    raise errors.ConfigError(f"{path}: {kind} file not found (--{flag_name})")
  return path


def existing_dir(flag_name, kind="data"):
  """The path in --flag_name; ConfigError unless it is a directory."""
  path = FLAGS[flag_name].value
  if not os.path.isdir(path):
    raise errors.ConfigError(f"{path}: {kind} directory not found (--{flag_name})")
  return path


def at_least(flag_name, minimum):
  """ConfigError unless --flag_name >= minimum (an unset optional flag, None, passes)."""
  value = FLAGS[flag_name].value
  if value is not None and value < minimum:
    raise errors.ConfigError(f"--{flag_name} must be >= {minimum}, got {value}")


def positive(flag_name):
  """ConfigError unless --flag_name > 0 (NaN fails)."""
  value = FLAGS[flag_name].value
  if not value > 0:
    raise errors.ConfigError(f"--{flag_name} must be > 0, got {value}")


def fine_tune_flags(min_epochs):
  """Checks --epochs (>= min_epochs), --learning_rate, --batch_size, --steps_per_epoch."""
  at_least("epochs", min_epochs)
  positive("learning_rate")
  at_least("batch_size", 1)
  at_least("steps_per_epoch", 0)


def percent(flag_name):
  """ConfigError unless --flag_name is in [0, 100) (an unset optional flag, None, passes)."""
  value = FLAGS[flag_name].value
  if value is not None and not 0.0 <= value < 100.0:
    raise errors.ConfigError(f"--{flag_name} must be in [0, 100), got {value}")

"""What every command-line tool shares: the absl entry point and flag checks.

Flag checks raise errors.ConfigError, which `run` reports as `error: ...` with
exit status 1. This module loads no TensorFlow, so flag errors come quickly.
"""

import contextlib
import dataclasses
import math
import os
import sys

from absl import app
from absl import flags
from absl import logging

from tf_gtsrb import errors
from tf_gtsrb import locking

FLAGS = flags.FLAGS

# What a missing flag should hold, appended to "--NAME is required".
_REQUIRED_HINTS = {
    "model": "path to a .keras file",
    "data_dir": "prepared dataset directory",
}


@dataclasses.dataclass(frozen=True)
class Range:
  """The values a numeric flag may take: finite, in [low, high] (an end open or absent);
  with `or_zero`, 0 (off) too."""
  low: float = None
  high: float = None
  low_open: bool = False
  high_open: bool = False
  or_zero: bool = False

  def problem(self, value):
    """Why `value` is refused ("must be ..."), or None when it is allowed."""
    if self.or_zero and value == 0:
      return None
    below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
    above = self.high is not None and (value >= self.high if self.high_open
                                       else value > self.high)
    if not math.isfinite(value) or below or above:
      return "must be " + ("0 or " if self.or_zero else "") + self.text()
    return None

  def text(self):
    if self.low is not None and self.high is not None:
      return (f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
              f"{')' if self.high_open else ']'}")
    if self.low is not None:
      return f"{'>' if self.low_open else '>='} {self.low:g}"
    return "a finite number"


_COUNT = Range(1)
_NON_NEGATIVE = Range(0)
_RATE = Range(0, low_open=True)
_FRACTION = Range(0, 1)
_PERCENT = Range(0, 100, high_open=True)

# The range of every numeric flag a tool defines, by flag name (one meaning per name
# across tools; a tool may narrow it in its own checks). `run` checks them before any
# work, and for list flags every element; every float flag must also be finite.
FLAG_RANGES = {
    "balance_target": _NON_NEGATIVE,
    "batch_size": _COUNT,
    "channels": _COUNT,
    "checkpoint_every_steps": _COUNT,
    "cluster": Range(2, 256, or_zero=True),
    "corruption_subset": Range(1, or_zero=True),  # 0: the pipeline's "off", the tools' "all".
    "distill_alpha": _FRACTION,
    "distill_mixup": _NON_NEGATIVE,
    "distill_temperature": _RATE,
    "early_stopping_patience": _NON_NEGATIVE,
    "epochs": _NON_NEGATIVE,
    "erase_probability": _FRACTION,
    "noise_probability": _FRACTION,
    "sticker_probability": _FRACTION,
    "jpeg_probability": _FRACTION,
    "max_skipped_fraction": _FRACTION,
    "frames_per_track": _COUNT,
    "indices": _NON_NEGATIVE,
    "image_size": _COUNT,
    "label_smoothing": Range(0, 1, high_open=True),
    "latency_rounds": _COUNT,
    "learning_rate": _RATE,
    "limit": _COUNT,
    "max_pairs": _COUNT,
    "max_percent": _PERCENT,
    "min_agreement": _FRACTION,
    "num_calibration_images": _COUNT,
    "num_images": _COUNT,
    "percent": _PERCENT,
    "percentages": _PERCENT,
    "seed": _NON_NEGATIVE,
    "split_seed": _NON_NEGATIVE,
    "stages": _COUNT,
    "steps": _COUNT,
    "steps_per_epoch": _NON_NEGATIVE,
    "swa_epochs": _NON_NEGATIVE,
    "swa_learning_rate": _RATE,
    "target_sparsity": Range(0, 1, high_open=True),
    "test_per_class": _COUNT,
    "threads": _COUNT,
    "threshold": _FRACTION,
    "top_k": _COUNT,
    "tracks_per_class": _COUNT,
    "upscale": _COUNT,
    "val_fraction": Range(0, 1, high_open=True),
    "verbose": Range(0, 2),
    "warmup": _NON_NEGATIVE,
    "warmup_epochs": _NON_NEGATIVE,
}

# List flags that hold names, not numbers (not range-checked).
TEXT_LIST_FLAGS = frozenset({"modes", "agreement", "hash_files", "runtimes", "benchmark",
                             "npu"})


def check_flag_ranges(flag_values=FLAGS):
  """ConfigError for the first set numeric flag outside FLAG_RANGES, or non-finite float."""
  for name in sorted(flag_values):
    flag = flag_values[name]
    value = flag.value
    if value is None or isinstance(value, bool):
      continue
    values = value if isinstance(value, list) else [value]
    allowed = FLAG_RANGES.get(name)
    for item in values:
      if isinstance(value, list):
        if name in TEXT_LIST_FLAGS or allowed is None:
          break
        try:
          item = float(item)
        except (TypeError, ValueError):
          raise errors.ConfigError(f"--{name}: {item!r} is not a number") from None
      if not isinstance(item, (int, float)):
        continue
      problem = (allowed.problem(item) if allowed is not None
                 else None if math.isfinite(item) else "must be a finite number")
      if problem:
        raise errors.ConfigError(f"--{name} {problem}, got {','.join(map(str, values))}"
                                 if isinstance(value, list) else
                                 f"--{name} {problem}, got {item}")


def run(main, takes_args=False, writes=()):
  """Runs `main()` as an absl app; exits with its status (None: 0).

  With `takes_args`, `main(args)` gets the positional arguments; otherwise
  they are a usage error. `writes` names the flags of directories the tool
  writes: `main` runs holding their locks (`locking.directory_lock`), so a
  second writer is refused. `--help` prints the tool module's docstring and its
  flags and exits 0. absl logging is lowered to
  WARNING unless --verbosity is given (TensorFlow logs a lot at INFO). Numeric
  flags are checked against FLAG_RANGES before `main` runs. A GtsrbError
  becomes `error: <message>` on stderr and exit status 1.
  """
  def _main(argv):
    if len(argv) > 1 and not takes_args:
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    try:
      check_flag_ranges()
      with contextlib.ExitStack() as locks:
        for name in writes:
          if FLAGS[name].value:
            locks.enter_context(locking.directory_lock(FLAGS[name].value))
        status = main(argv[1:]) if takes_args else main()
    except errors.GtsrbError as e:
      print(f"error: {e}", file=sys.stderr)
      return 1
    return 0 if status is None else status

  _show_tool_in_help(sys.modules[main.__module__])
  app.run(_main, flags_parser=_parse_flags)


# The flags after which absl prints help, then exits with status 1.
_HELP_ARGS = frozenset(f"{dashes}{name}" for dashes in ("-", "--")
                       for name in ("help", "helpshort", "helpfull", "?"))


def _show_tool_in_help(tool):
  """Makes absl's --help describe `tool`: its docstring and its flags.

  absl prints the docstring of `__main__` and the flags of the module named
  sys.argv[0]; under a console script `__main__` is the installed wrapper,
  which has neither. Flags a tool defines through this module's `define_*`
  helpers are the tool's too.
  """
  main_module = sys.modules["__main__"]
  if tool is not main_module and tool.__doc__:
    main_module.__doc__ = tool.__doc__
  for module_name in (tool.__name__, __name__):
    for flag in FLAGS.get_flags_for_module(module_name):
      FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def _parse_flags(argv):
  """absl's flag parsing, with exit status 0 after --help."""
  try:
    return app.parse_flags_with_usage(argv)
  except SystemExit as e:
    if e.code == 1 and _HELP_ARGS.intersection(argv[1:]):
      raise SystemExit(0) from None
    raise


def define_fine_tuning_flags(epochs, learning_rate, what="Fine-tuning"):
  """Defines --epochs, --learning_rate, --batch_size, --steps_per_epoch, --seed, --verbose
  and the robust augmentation flags."""
  flags.DEFINE_integer("epochs", epochs, f"{what} epochs.")
  flags.DEFINE_float("learning_rate", learning_rate, f"{what} learning rate (Adam).")
  flags.DEFINE_integer("batch_size", 64, "Images per batch.")
  flags.DEFINE_integer("steps_per_epoch", 0, "Steps per epoch; 0 is one pass over the train split.")
  flags.DEFINE_integer("seed", 0, "Seed of the training-data shuffle and augmentation.")
  flags.DEFINE_integer("verbose", 2, "Keras progress output: 0 silent, 1 progress bar, 2 per epoch.")
  define_robust_augmentation_flags()


def define_robust_augmentation_flags():
  """Defines --erase_probability, --noise_probability, --sticker_probability and
  --jpeg_probability (docs/robustness.md)."""
  flags.DEFINE_float("erase_probability", 0.0, "Share of training images that also get a random "
                     "erasing (a square filled with the image's mean colour); 0: none.")
  flags.DEFINE_float("noise_probability", 0.0, "Share of training images that also get sensor "
                     "noise (Gaussian, sigma 0.02-0.12 of the pixel range); 0: none.")
  flags.DEFINE_float("sticker_probability", 0.0, "Share of training images that also get "
                     "stickers (1-3 opaque patches of random colour covering 2-33% of the "
                     "image); 0: none.")
  flags.DEFINE_float("jpeg_probability", 0.0, "Share of training images that are also "
                     "JPEG-compressed (quality 20-90), after any noise; 0: none.")


def robust_augmentation_record():
  """The robust augmentation flags as a tool's report records them."""
  return {"erase_probability": FLAGS.erase_probability,
          "noise_probability": FLAGS.noise_probability,
          "sticker_probability": FLAGS.sticker_probability,
          "jpeg_probability": FLAGS.jpeg_probability}


def fine_tune_datasets(on_validation=False):
  """`input_pipeline.fine_tune_datasets` as the fine-tuning flags ask; `on_validation`:
  a final fit (a tool's --fine_tune_on_validation)."""
  from tf_gtsrb.data import input_pipeline  # pylint: disable=g-import-not-at-top
  return input_pipeline.fine_tune_datasets(
      FLAGS.data_dir, FLAGS.batch_size, seed=FLAGS.seed, steps=FLAGS.steps_per_epoch,
      on_validation=on_validation, erase_probability=FLAGS.erase_probability,
      noise_probability=FLAGS.noise_probability, sticker_probability=FLAGS.sticker_probability,
      jpeg_probability=FLAGS.jpeg_probability)


# What a final fit prints in place of the validation accuracy it cannot measure.
NOT_MEASURED_AFTER_FINAL_FIT = "n/a (fine-tuned on the validation split too)"


def define_final_fit_flag():
  """Defines --fine_tune_on_validation."""
  flags.DEFINE_bool("fine_tune_on_validation", False,
                    "Final fit, once the settings are chosen on validation: train on the train "
                    "and validation splits together; no validation accuracy is measured.")


def define_corruption_flags():
  """Defines --corruptions, --corruption_kinds, --corruption_severities, --corruption_subset."""
  flags.DEFINE_bool("corruptions", False, "Also score the model(s) on the corruption suite "
                    "(docs/robustness.md): corruptions/<model>/corruptions.json/.md/.png and "
                    "robustness.json in the output directory.")
  flags.DEFINE_string("corruption_kinds", "all", "Corruption kinds, comma-separated, or 'all'.")
  flags.DEFINE_string("corruption_severities", "1-5", "Severities, e.g. '1,3,5' or '1-5'.")
  flags.DEFINE_integer("corruption_subset", None, "Score a seeded sample of this many images "
                       "(count; default or 0: the whole split).")


def corruption_settings():
  """(kinds, severities) the --corruption_* flags name; ConfigError for an unknown one.
  Tools call it before any work, so that a typo fails at once."""
  from tf_gtsrb.evaluation import corruptions  # pylint: disable=g-import-not-at-top
  return (corruptions.parse_kinds(FLAGS.corruption_kinds),
          corruptions.parse_severities(FLAGS.corruption_severities))


def corruption_suite(specs, data_dir, output_dir, split):
  """Runs the corruption suite the --corruption_* flags ask for on `specs` ({name: path}),
  prints the comparison table; returns {name: result}."""
  from tf_gtsrb.evaluation import robustness  # pylint: disable=g-import-not-at-top
  kinds, severities = corruption_settings()
  scores = robustness.evaluate_model_files(
      specs, data_dir, output_dir, split=split, kinds=kinds, severities=severities,
      subset=FLAGS.corruption_subset or None, log=print)
  print(robustness.comparison_table(scores))
  return scores


CORRUPTION_FILES = "robustness.json and corruptions/<model>/corruptions.json, .md, .png"


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

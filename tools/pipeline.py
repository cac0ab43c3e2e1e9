"""The whole job: prepare -> train -> analyse -> prune -> QAT -> convert -> benchmark -> report.

  gtsrb-pipeline                                   # bundled sample, a few minutes on a CPU
  gtsrb-pipeline --archive_dir=../shared/gtsrb --work_dir=runs/real --epochs=30 \
      --prune_epochs=8 --qat_epochs=3 --batch_size=128

Each step is skipped when its outputs are up to date; a killed run continues
where it stopped when started again with the same flags.
"""

import dataclasses
import sys
import typing

from absl import flags

from tf_gtsrb import pipeline
from tf_gtsrb_tools import common

FLAGS = flags.FLAGS


def define_config_flags(flag_values=FLAGS):
  """Defines one flag per PipelineConfig field: its name, default and metadata `help`; the
  type from the annotation (Optional[T] as T with default None), `choices` as an enum."""
  hints = typing.get_type_hints(pipeline.PipelineConfig)
  for field in dataclasses.fields(pipeline.PipelineConfig):
    kind = hints[field.name]
    if typing.get_origin(kind) is typing.Union:
      kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    help_text = field.metadata["help"]
    if "choices" in field.metadata:
      flags.DEFINE_enum(field.name, field.default, list(field.metadata["choices"]), help_text,
                        flag_values=flag_values)
    else:
      _DEFINE_BY_TYPE[kind](field.name, field.default, help_text, flag_values=flag_values)


_DEFINE_BY_TYPE = {str: flags.DEFINE_string, int: flags.DEFINE_integer,
                   float: flags.DEFINE_float, bool: flags.DEFINE_bool}


def define_flags(flag_values=FLAGS):
  """Defines the tool's flags: the PipelineConfig fields and the run controls."""
  define_config_flags(flag_values)
  flags.DEFINE_enum("until", None, pipeline.STEPS, "Stop after this step.",
                    flag_values=flag_values)
  flags.DEFINE_list("force", [], "Steps to run again even if up to date.",
                    flag_values=flag_values)
  flags.DEFINE_bool("fresh", False, "Delete --work_dir first and run everything.",
                    flag_values=flag_values)
  flags.DEFINE_string("release_dir", None,
                      "Also copy the deployable artifacts and a README with their numbers here.",
                      flag_values=flag_values)
  flags.DEFINE_bool("allow_failed_checks", False,
                    "Exit 0 even when a correctness check fails (INT8 predictions agreeing "
                    "with the QAT model on fewer images than required); default: exit 4.",
                    flag_values=flag_values)
  flags.DEFINE_bool("require_targets", False,
                    "Exit with status 3 unless the released-model targets are all met.",
                    flag_values=flag_values)


define_flags()


def main():
  config = pipeline.PipelineConfig(**{
      name: FLAGS[name].value for name in pipeline.PipelineConfig.__dataclass_fields__})
  config.validate()
  if FLAGS.fresh:
    pipeline.clean(config.work_dir)
  results = pipeline.Pipeline(config).run(only=FLAGS.until, force=FLAGS.force)
  if "report" in results:
    print(f"Report: {results['report'].report_md}")
    if FLAGS.release_dir:
      from tf_gtsrb.export import release  # pylint: disable=g-import-not-at-top
      command = "gtsrb-pipeline " + " ".join(
          a for a in sys.argv[1:] if not a.startswith(("--release_dir", "--force")))
      files = release.release(results, FLAGS.release_dir, command)
      print(f"Released to {FLAGS.release_dir}: {', '.join(files)}")
    if FLAGS.require_targets and not results["report"].targets_met:
      return 3
  failure = failed_check(results)
  if failure and FLAGS.allow_failed_checks:
    print(f"warning: failed check accepted (--allow_failed_checks): {failure}", file=sys.stderr)
  elif failure:
    print(f"error: failed check: {failure} (--allow_failed_checks to accept)", file=sys.stderr)
    return 4
  return 0


def failed_check(results):
  """What failed among the run's correctness checks, or None (missed targets don't count)."""
  benchmark = results.get("benchmark")
  agreement = (benchmark.agreement if benchmark else None) or {}
  if agreement and not agreement.get("passed", True):
    return (f"INT8 and QAT predictions agree on {100 * agreement['agreement']:.2f}% of test "
            f"images, below the required {100 * agreement['min_agreement']:.2f}%")
  return None


def run():
  common.run(main, writes=("work_dir", "release_dir"))


if __name__ == "__main__":
  run()

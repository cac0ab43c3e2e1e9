"""Benchmarks Keras and TFLite models on a prepared GTSRB split with the LiteRT interpreter.

Writes benchmark.json, benchmark.md (metrics and performance tables plus
ratios against the reference model), a confusion matrix PNG per model,
predictions.npz (each image's predicted class and confidence) and report.html,
a self-contained model card (docs/report.md).

Example:
  gtsrb-benchmark-tflite --data_dir=data/gtsrb --output_dir=runs/bench \
      --models=keras_float=runs/base/model.keras,tflite_int8=runs/qat/tflite/model_int8.tflite \
      --reference=keras_float --agreement=keras_float,tflite_int8
"""

import os

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from absl import flags

from tf_gtsrb import errors
from tf_gtsrb_tools import common

FLAGS = flags.FLAGS

flags.DEFINE_string("models", None,
                    "Comma list of NAME=PATH, PATH a .keras or .tflite model file.")
flags.DEFINE_string("data_dir", None, "Prepared dataset directory (written by gtsrb-prepare-data).")
flags.DEFINE_enum("split", "test", ["train", "validation", "test"], "Dataset split to score.")
flags.DEFINE_integer("limit", None, "Use only the first N images of the split (count).")
flags.DEFINE_integer("threads", 1, "CPU threads for the LiteRT interpreter and TensorFlow.")
flags.DEFINE_integer("latency_rounds", 200, "Timed batch-1 runs per model (count).")
flags.DEFINE_integer("warmup", 20, "Untimed batch-1 runs per model before timing (count).")
flags.DEFINE_integer("batch_size", 32, "Images per batch for predictions and throughput.")
flags.DEFINE_string("reference", None, "Model NAME the ratios compare against (default: first).")
flags.DEFINE_list("agreement", [], "Two model NAMEs A,B whose predictions are compared.")
flags.DEFINE_float("min_agreement", 0.99,
                   "Fail (exit 1) when the --agreement pair agrees on fewer images (fraction).")
flags.DEFINE_bool("allow_failed_checks", False,
                  "Exit 0 even when the --agreement check fails.")
flags.DEFINE_list("runtimes", [], "Also score each .tflite model at batch 1 under these runtimes: "
                  "litert_reference_kernels, tflite_micro (pip install --pre tflite-micro), "
                  "mediapipe (float32/uint8 models with metadata); accuracy and agreement with "
                  "LiteRT go to benchmark.json's 'runtimes' and the report.")
flags.DEFINE_list("npu", [], "Compile every int8 .tflite with Vela for these Arm Ethos-U NPUs "
                  "(ethos-u55-128, ethos-u55-256, ethos-u65-256; pip install ethos-u-vela): time, "
                  "cycles, operators on the NPU, SRAM, flash, encoded weights.")
common.define_corruption_flags()
flags.DEFINE_boolean("memory", True,
                     "Measure peak resident memory per model in a subprocess (MB).")
flags.DEFINE_string("output_dir", None, "Directory for benchmark.json/.md and PNGs.")
flags.DEFINE_string("html", "",
                    "Path of the self-contained HTML report (model card); default: "
                    "OUTPUT_DIR/report.html; 'none': no report.")
flags.DEFINE_string("recipe", None, "Flagfile of the recipe that made the models, shown in the "
                    "HTML report.")
flags.DEFINE_list("hash_files", [], "Files whose SHA-256 the HTML report lists (default: the "
                  "--models files).")
flags.DEFINE_string("work_dir", None, "Pipeline work directory whose training curves, report "
                    "and sweep the HTML report shows.")
flags.DEFINE_string("gallery_model", None, "Model NAME whose mistakes the HTML report shows "
                    "(default: the last of --models).")
flags.DEFINE_string("title", "GTSRB traffic-sign classifier", "Title of the HTML report.")


def _check_flags():
  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.benchmark import compare
  from tf_gtsrb.benchmark import runtimes
  # pylint: enable=g-import-not-at-top
  specs = compare.parse_model_specs(FLAGS.models)
  runtimes.parse_runtimes(FLAGS.runtimes)
  if FLAGS.npu:
    from tf_gtsrb.benchmark import vela  # pylint: disable=g-import-not-at-top
    vela.check_accelerators(FLAGS.npu)
    vela.check_available()
  for name, path in specs.items():
    if not os.path.isfile(path):
      raise errors.ConfigError(f"{path}: model file not found (--models {name}=...)")
  common.require_flags("data_dir")
  common.existing_dir("data_dir")
  common.require_flags("output_dir")
  for name, minimum in (("threads", 1), ("latency_rounds", 1), ("warmup", 0), ("batch_size", 1),
                        ("limit", 1)):
    common.at_least(name, minimum)
  if FLAGS.reference is not None and FLAGS.reference not in specs:
    raise errors.ConfigError(
        f"--reference {FLAGS.reference!r} is not among --models: {', '.join(specs)}")
  pair = [n.strip() for n in FLAGS.agreement if n.strip()]
  if pair:
    if len(pair) != 2:
      raise errors.ConfigError(f"--agreement takes two model names A,B, got {pair}")
    for name in pair:
      if name not in specs:
        raise errors.ConfigError(
            f"--agreement: {name!r} is not among --models: {', '.join(specs)}")
  if not 0.0 <= FLAGS.min_agreement <= 1.0:
    raise errors.ConfigError(f"--min_agreement must be in [0, 1], got {FLAGS.min_agreement}")
  if FLAGS.gallery_model is not None and FLAGS.gallery_model not in specs:
    raise errors.ConfigError(
        f"--gallery_model {FLAGS.gallery_model!r} is not among --models: {', '.join(specs)}")
  for path in ([FLAGS.recipe] if FLAGS.recipe else []) + FLAGS.hash_files:
    if not os.path.isfile(path):
      raise errors.ConfigError(f"{path}: file not found (--recipe / --hash_files)")
  return specs, pair


def main():
  specs, pair = _check_flags()
  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.models import runners
  runners.set_tf_threads(FLAGS.threads)  # Before TensorFlow runs anything.
  from tf_gtsrb.benchmark import run as bench
  # pylint: enable=g-import-not-at-top
  common.corruption_settings()  # Bad names fail before the benchmark.
  result = bench.run_benchmark(
      specs, FLAGS.data_dir, FLAGS.output_dir, split=FLAGS.split, limit=FLAGS.limit,
      threads=FLAGS.threads, latency_rounds=FLAGS.latency_rounds, warmup=FLAGS.warmup,
      batch_size=FLAGS.batch_size, reference=FLAGS.reference, measure_memory=FLAGS.memory,
      agreement_pair=pair or None, min_agreement=FLAGS.min_agreement, runtimes=FLAGS.runtimes,
      npu=FLAGS.npu)
  print(result["markdown"])
  print(bench.details_table(result))
  print(f"wrote {FLAGS.output_dir}: benchmark.json, benchmark.md, predictions.npz, "
        "confusion matrix PNGs")
  if FLAGS.corruptions:
    common.corruption_suite(specs, FLAGS.data_dir, FLAGS.output_dir, FLAGS.split)
    print(f"wrote {FLAGS.output_dir}: {common.CORRUPTION_FILES}")
  if FLAGS.html != "none":
    from tf_gtsrb.evaluation import html_report  # pylint: disable=g-import-not-at-top
    html_path = html_report.write_html_report(
        FLAGS.html or os.path.join(FLAGS.output_dir, "report.html"),
        benchmark_dir=FLAGS.output_dir, work_dir=FLAGS.work_dir, data_dir=FLAGS.data_dir,
        recipe_path=FLAGS.recipe, files=FLAGS.hash_files or list(specs.values()),
        title=FLAGS.title, gallery_model=FLAGS.gallery_model)
    print(f"wrote {html_path}")
  agreement = result.get("agreement")
  return 0 if agreement is None or agreement["passed"] or FLAGS.allow_failed_checks else 1


def run():
  common.run(main, writes=("output_dir",))


if __name__ == "__main__":
  run()

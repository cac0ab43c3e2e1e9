"""Benchmarks Keras and TFLite models on a prepared GTSRB split with the LiteRT interpreter.

Writes benchmark.json, benchmark.md (metrics and performance tables plus
ratios against the reference model) and a confusion matrix PNG per model.

Example:
  gtsrb-benchmark-tflite --data_dir=data/gtsrb --output_dir=runs/bench \
      --models=keras_float=runs/base/model.keras,tflite_int8=runs/qat/tflite/model_int8.tflite \
      --reference=keras_float --agreement=keras_float,tflite_int8
"""

import os
import platform
import sys

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from absl import app
from absl import flags

from tf_gtsrb import errors

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
flags.DEFINE_boolean("memory", True,
                     "Measure peak resident memory per model in a subprocess (MB).")
flags.DEFINE_string("output_dir", None, "Directory for benchmark.json/.md and PNGs.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    return _benchmark()
  except errors.GtsrbError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1


def cpu_name():
  """The CPU model name from /proc/cpuinfo (or the platform's processor string)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.lower().startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine() or "unknown CPU"


def _check_flags():
  from tf_gtsrb.benchmark import compare  # pylint: disable=g-import-not-at-top
  specs = compare.parse_model_specs(FLAGS.models)
  for name, path in specs.items():
    if not os.path.isfile(path):
      raise errors.ConfigError(f"{path}: model file not found (--models {name}=...)")
  if not FLAGS.data_dir:
    raise errors.ConfigError("--data_dir is required (prepared dataset directory)")
  if not os.path.isdir(FLAGS.data_dir):
    raise errors.ConfigError(f"{FLAGS.data_dir}: data directory not found (--data_dir)")
  if not FLAGS.output_dir:
    raise errors.ConfigError("--output_dir is required")
  for value, flag, minimum in ((FLAGS.threads, "--threads", 1),
                               (FLAGS.latency_rounds, "--latency_rounds", 1),
                               (FLAGS.warmup, "--warmup", 0),
                               (FLAGS.batch_size, "--batch_size", 1)):
    if value < minimum:
      raise errors.ConfigError(f"{flag} must be >= {minimum}, got {value}")
  if FLAGS.limit is not None and FLAGS.limit < 1:
    raise errors.ConfigError(f"--limit must be >= 1, got {FLAGS.limit}")
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
  return specs, pair


def _benchmark():
  specs, pair = _check_flags()
  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.benchmark import runners
  runners.set_tf_threads(FLAGS.threads)  # Before TensorFlow runs anything.
  from tf_gtsrb import io_utils
  from tf_gtsrb.benchmark import compare
  from tf_gtsrb.data import input_pipeline
  from tf_gtsrb.data.class_names import CLASS_NAMES
  from tf_gtsrb.evaluation import plots
  # pylint: enable=g-import-not-at-top

  images, labels = input_pipeline.load_arrays(FLAGS.data_dir, FLAGS.split, limit=FLAGS.limit)
  cpu = cpu_name()
  machine = (f"CPU: {cpu}; threads: {FLAGS.threads}; {len(images)} {FLAGS.split} images; "
             f"latency: batch 1, median of {FLAGS.latency_rounds} runs; throughput: batch "
             f"{FLAGS.batch_size}")
  print(machine)
  result = compare.benchmark_models(
      specs, images, labels, threads=FLAGS.threads, latency_rounds=FLAGS.latency_rounds,
      warmup=FLAGS.warmup, batch_size=FLAGS.batch_size, reference=FLAGS.reference,
      measure_memory=FLAGS.memory)
  predictions = result.pop("predictions")
  result["machine"] = {"cpu": cpu, "threads": FLAGS.threads, "platform": platform.platform()}
  result["data"] = {"data_dir": os.path.abspath(FLAGS.data_dir), "split": FLAGS.split,
                    "num_images": int(len(images))}
  exit_code = 0
  check_lines = []
  if pair:
    value = compare.agreement(predictions[pair[0]], predictions[pair[1]])
    passed = value >= FLAGS.min_agreement
    result["agreement"] = {"models": pair, "agreement": value,
                           "min_agreement": FLAGS.min_agreement, "passed": passed}
    check_lines.append(
        f"agreement {pair[0]} vs {pair[1]}: {100 * value:.2f}% of images get the same class "
        f"({'PASS' if passed else 'FAIL'}: required >= {100 * FLAGS.min_agreement:.2f}%)")
    exit_code = 0 if passed else 1

  os.makedirs(FLAGS.output_dir, exist_ok=True)
  pngs = []
  for name, entry in result["models"].items():
    path = os.path.join(FLAGS.output_dir, f"confusion_matrix_{_safe(name)}.png")
    plots.save_confusion_matrix_png(entry["metrics"]["confusion_matrix"], path,
                                    class_names=CLASS_NAMES, title=f"{name} ({FLAGS.split})")
    entry["confusion_matrix_png"] = path
    pngs.append(path)
  json_path = os.path.join(FLAGS.output_dir, "benchmark.json")
  io_utils.write_json(json_path, result)
  markdown = compare.markdown_report(result, title=f"GTSRB {FLAGS.split} benchmark",
                                     header_lines=[machine] + check_lines)
  md_path = os.path.join(FLAGS.output_dir, "benchmark.md")
  io_utils.write_text(md_path, markdown)

  print(markdown)
  print(_details(result))
  for line in check_lines:
    print(line)
  for path in [json_path, md_path] + pngs:
    print(f"wrote {path}")
  return exit_code


def _details(result):
  header = ("model", "input", "p50 ms", "p90 ms", "FPS", "img/s (batch)", "size KB", "gzip KB",
            "peak RSS MB", "RSS +MB")
  rows = []
  for name, m in result["models"].items():
    memory = m.get("memory") or {}
    rows.append((name, m["input_type"], f"{m['latency']['median_ms']:.3f}",
                 f"{m['latency']['p90_ms']:.3f}", f"{m['latency']['fps']:.1f}",
                 f"{m['throughput_images_per_s']:.1f}",
                 _kb(m["file_size_bytes"]), _kb(m["gzip_size_bytes"]),
                 _mb(memory.get("peak_mb")), _mb(memory.get("increase_mb"))))
  widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
  return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()
                   for row in [header] + rows)


def _kb(value):
  return "-" if value is None else f"{value / 1024:.1f}"


def _mb(value):
  return "-" if value is None else f"{value:.1f}"


def _safe(name):
  return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def run():
  app.run(main)


if __name__ == "__main__":
  run()

"""One benchmark run on a prepared split: score, time and compare models, write the report.

Writes benchmark.json, benchmark.md (the metrics and performance tables plus
ratios against the reference model and the agreement check), a confusion
matrix PNG per model and predictions.npz (every image's predicted class and
confidence per model, `predictions.load_predictions`); optionally the scores
under other runtimes (`runtimes`: TFLite Micro, reference kernels, MediaPipe).
The files commit as a set: they are written into a staging copy of the output
directory that replaces it only when complete, so a failed or killed run leaves
the previous set intact.

`python -m tf_gtsrb.benchmark.run KWARGS_JSON` runs `run_benchmark(**kwargs)` in
a fresh process (`run_in_subprocess`).
"""

import json
import os
import platform
import subprocess
import sys
import tempfile

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb.benchmark import compare
from tf_gtsrb.evaluation import predictions as predictions_lib
from tf_gtsrb.benchmark import runtimes as runtimes_lib
from tf_gtsrb.benchmark import vela
from tf_gtsrb.data import archives
from tf_gtsrb.data import input_pipeline
from tf_gtsrb.data import prepare
from tf_gtsrb.models import flatbuffer
from tf_gtsrb.data.class_names import CLASS_NAMES
from tf_gtsrb.evaluation import plots


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


def run_benchmark(specs, data_dir, output_dir, split="test", limit=None, threads=1,
                  latency_rounds=200, warmup=20, batch_size=32, reference=None,
                  measure_memory=True, agreement_pair=None, min_agreement=0.99, runtimes=(),
                  npu=(), log=print):
  """Benchmarks `specs` (name -> model path) on `split`; returns the result dict.

  `runtimes` (names from `runtimes.RUNTIMES`) also scores each `.tflite` model
  under those runtimes: `result['runtimes']`. `npu` (Ethos-U accelerators from
  `vela.TARGETS`) compiles each int8-input `.tflite` with Vela for them:
  `result['npu']` = {model: `vela.benchmark` result}, files under OUTPUT_DIR/vela.

  `result['agreement']['passed']` tells whether the `agreement_pair` (A, B)
  predicts the same class on at least `min_agreement` of the images.
  """
  for name in agreement_pair or ():
    if name not in specs:
      raise errors.ConfigError(f"agreement: {name!r} is not among the models: {', '.join(specs)}")
  images, labels = input_pipeline.load_arrays(data_dir, split, limit=limit)
  machine = (f"CPU: {cpu_name()}; threads: {threads}; {len(images)} {split} images; "
             f"latency: batch 1, median of {latency_rounds} runs; throughput: batch {batch_size}")
  log(machine)
  with io_utils.atomic_directory(output_dir, carry_over=True) as staging:
    final = lambda path: os.path.join(output_dir, os.path.relpath(path, staging))
    result = compare.benchmark_models(
        specs, images, labels, threads=threads, latency_rounds=latency_rounds, warmup=warmup,
        batch_size=batch_size, reference=reference, measure_memory=measure_memory, log=log)
    predictions = result.pop("predictions")
    confidences = result.pop("confidences")
    if runtimes:
      result["runtimes"] = runtimes_lib.score_runtimes(specs, images, labels, runtimes, log=log)
    if npu:
      result["npu"] = _npu_estimates(specs, staging, npu, log, final)
    result["machine"] = {"cpu": cpu_name(), "threads": threads, "platform": platform.platform()}
    result["data"] = {"data_dir": os.path.abspath(data_dir), "split": split,
                      "num_images": int(len(images)),
                      "source": prepare.recorded_source(input_pipeline.find_dataset_dir(data_dir))}
    for entry in result["models"].values():  # What was measured, by content.
      entry["sha256"] = archives.sha256sum(entry["path"]) if entry.get("path") else None
    check_lines = []
    if agreement_pair:
      a, b = agreement_pair
      value = compare.agreement(predictions[a], predictions[b])
      passed = value >= min_agreement
      result["agreement"] = {"models": [a, b], "agreement": value,
                             "min_agreement": min_agreement, "passed": passed}
      check_lines.append(
          f"agreement {a} vs {b}: {100 * value:.2f}% of images get the same class "
          f"({'PASS' if passed else 'FAIL'}: required >= {100 * min_agreement:.2f}%)")
    for name, entry in result["models"].items():
      path = os.path.join(staging, f"confusion_matrix_{_safe(name)}.png")
      plots.save_confusion_matrix_png(entry["metrics"]["confusion_matrix"], path,
                                      class_names=CLASS_NAMES, title=f"{name} ({split})")
      entry["confusion_matrix_png"] = final(path)
    markdown = compare.markdown_report(result, title=f"GTSRB {split} benchmark",
                                       header_lines=[machine] + check_lines)
    if runtimes:
      markdown += "\n## Runtimes (batch 1)\n\n" + runtimes_lib.markdown_table(result["runtimes"])
    if npu:
      markdown += "\n## Arm Ethos-U NPU (Vela estimates)\n\n" + "\n\n".join(
          vela.markdown_table(r) for r in result["npu"].values()) + "\n"
    predictions_lib.save_predictions(os.path.join(staging, predictions_lib.FILE_NAME),
                                    labels, predictions, confidences)
    io_utils.write_json(os.path.join(staging, "benchmark.json"), result)
    io_utils.write_text(os.path.join(staging, "benchmark.md"), markdown)
  result["markdown"] = markdown
  return result


def run_in_subprocess(log=print, **kwargs):
  """`run_benchmark(**kwargs)` in a fresh Python process, so that TensorFlow starts with
  `threads` threads (settable only before it starts); its lines go to `log` as they come.

  Returns the result read back from OUTPUT_DIR/benchmark.json; raises GtsrbError
  (with the end of the process's stderr) when it fails.
  """
  output_dir = kwargs["output_dir"]
  command = [sys.executable, "-u", "-m", "tf_gtsrb.benchmark.run", json.dumps(kwargs)]
  with tempfile.TemporaryFile("w+") as stderr:
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True) as process:
      for line in process.stdout:
        log(line.rstrip("\n"))
    stderr.seek(0)
    if process.returncode != 0:
      raise errors.GtsrbError(f"benchmark failed (exit {process.returncode}):\n"
                              f"{stderr.read()[-3000:]}")
  return io_utils.read_json(os.path.join(output_dir, "benchmark.json"))


def _npu_estimates(specs, output_dir, accelerators, log, final):
  """{model name: vela.benchmark(...)} for every int8-input .tflite of `specs`, compiled
  models under `output_dir`/vela, their paths recorded as `final(path)`."""
  estimates = {}
  for name, path in specs.items():
    if not str(path).endswith(".tflite"):
      continue
    graph = flatbuffer.parse(flatbuffer.read_file(path), path)
    if graph.tensors[graph.inputs[0]].dtype != "int8":
      log(f"{name}: not an int8 model, no NPU estimate")
      continue
    log(f"{name}: compiling with Vela for {', '.join(accelerators)}")
    estimates[name] = vela.benchmark(path, os.path.join(output_dir, "vela", _safe(name)),
                                     accelerators)
    for target in estimates[name]["targets"].values():
      target["vela_model"] = final(target["vela_model"])
  return estimates


def details_table(result):
  """Plain-text table of latency, throughput, sizes and memory per model."""
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


def _main(kwargs_json):
  """Entry point of `run_in_subprocess`: TensorFlow's threads set first, then the run."""
  kwargs = json.loads(kwargs_json)
  from tf_gtsrb.models import runners  # pylint: disable=g-import-not-at-top
  runners.set_tf_threads(kwargs.get("threads", 1))
  result = run_benchmark(**kwargs)
  print(result["markdown"], flush=True)


if __name__ == "__main__":
  _main(sys.argv[1])

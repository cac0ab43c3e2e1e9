"""Copies a pipeline run's deployable artifacts into a release folder with a README.

The README's numbers are read from the run's report, never typed in.
"""

import os

from tf_gtsrb import io_utils
from tf_gtsrb.evaluation import pipeline_report

FILES = {
    "baseline_float": "traffic_sign_cnn_float32.tflite",
    "int8": "traffic_sign_cnn_pruned_int8.tflite",
    "c_source": "traffic_sign_cnn_pruned_int8.cc",
    "c_header": "traffic_sign_cnn_pruned_int8.h",
    "micro_ops": "micro_ops.txt",
    "labels": "labels.txt",
    "report": "report.json",
}


def release(results, release_dir, command):
  """Writes the released files and README.md into `release_dir`; returns the file list."""
  conversion = results["convert"]["conversion"]["models"]["int8"]
  export_dir = os.path.dirname(results["convert"]["int8"])
  sources = {
      "baseline_float": results["convert"]["baseline_float32"],
      "int8": results["convert"]["int8"],
      "c_source": conversion["c_source"],
      "c_header": conversion["c_header"],
      "micro_ops": conversion["micro_ops"],
      "labels": os.path.join(export_dir, "labels.txt"),
      "report": results["report"]["report_json"],
  }
  os.makedirs(release_dir, exist_ok=True)
  for key, source in sources.items():
    with open(source, "rb") as f:
      data = f.read()
    if key in ("c_source", "c_header"):  # Keep the #include consistent with the new name.
      data = data.replace(b'"model_int8.h"', f'"{FILES["c_header"]}"'.encode())
    with io_utils.atomic_write(os.path.join(release_dir, FILES[key])) as f:
      f.write(data)
  report = io_utils.read_json(results["report"]["report_json"])
  io_utils.write_text(os.path.join(release_dir, "README.md"),
                      readme_text(report, conversion, command))
  return sorted(FILES.values()) + ["README.md"]


def readme_text(report, conversion, command):
  """models/README.md: each file, its test accuracy, its input contract and how it was made."""
  models = report["benchmark"]["models"]
  baseline = models[pipeline_report.FLOAT_TFLITE_NAME]
  int8 = models[pipeline_report.INT8_NAME]
  inp = conversion["io"]["inputs"][0]
  out = conversion["io"]["outputs"][0]
  prune = report["pruning"]
  acc = lambda m: f"{100 * m['metrics']['accuracy']:.2f}%"
  size = lambda m: f"{m['file_size_bytes'] / 1024:.1f} KB"
  lines = [
      "# Released models", "",
      "Made by one run of the pipeline on the official GTSRB archives (32x32 mirror):", "",
      "```sh", command, "```", "",
      f"Test accuracy is on the {report['benchmark']['data']['num_images']:,} official test "
      "images, measured with the LiteRT interpreter (`gtsrb-benchmark-tflite`).", "",
      "| File | What | Test accuracy | Size |", "|---|---|---:|---:|",
      f"| `{FILES['baseline_float']}` | float baseline TrafficSignCNN, channels "
      f"{prune['channels_before']}, {prune['params_before']:,} params | {acc(baseline)} | "
      f"{size(baseline)} |",
      f"| `{FILES['int8']}` | channel-pruned ({prune['channels_after']}, "
      f"{prune['params_after']:,} params) + quantization-aware trained, full INT8 | "
      f"{acc(int8)} | {size(int8)} |",
      f"| `{FILES['c_source']}`, `{FILES['c_header']}` | the INT8 flatbuffer as "
      "`alignas(16) const unsigned char g_model[]` and `g_model_len` | same | |",
      f"| `{FILES['micro_ops']}` | the `MicroMutableOpResolver` lines the INT8 model needs | | |",
      f"| `{FILES['labels']}` | 43 class names, line index = class id | | |",
      f"| `{FILES['report']}` | the run's full report (settings, metrics, latency, targets) | | |",
      "", "## Input contract of the INT8 model", "",
      "- The whole GTSRB-style image (the sign with its margin, not ROI-cropped), resized "
      "bilinearly to 32x32, RGB.",
      f"- Input tensor `{inp['dtype']}` of shape {inp['shape']}: value = pixel - 128 (scale "
      f"{inp['scale']:.8f} = 1/255, zero point {inp['zero_point']}).",
      f"- Output `{out['dtype']}` of shape {out['shape']}: class probabilities with scale "
      f"{out['scale']:.8f} and zero point {out['zero_point']}; argmax is the class id.",
      f"- Ops: {', '.join(conversion['ops'])}. Tensor arena estimate: "
      f"{conversion['arena']['estimate_bytes']:,} bytes (an estimate; measure on the target).",
      "", "## Targets", "", "| Target | Measured | Met |", "|---|---:|:---:|",
  ] + [f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else 'NO'} |"
       for t in report["targets"]] + [
      "", f"Latency measured on: {report['benchmark']['machine']['cpu']}, "
      f"{report['benchmark']['machine']['threads']} thread(s).", ""]
  return "\n".join(lines)

"""Converts a .keras model to TFLite (full INT8, float32, float16, dynamic range).

Writes model_<mode>.tflite for every mode, and for INT8 the C array
(model_int8.cc/.h), micro_ops.txt (TFLite Micro op resolver lines); also
labels.txt and conversion.json (sizes, ops, io quantization, arena estimate,
integer check).

Example:
  gtsrb-convert --model=runs/qat/model.keras --data_dir=data/gtsrb \
      --output_dir=runs/qat/tflite
"""

import os
import sys

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from absl import app
from absl import flags

from tf_gtsrb import errors

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "Path to the .keras model to convert.")
flags.DEFINE_string("data_dir", None,
                    "Prepared dataset directory; INT8 calibration images come from its "
                    "train split (needed for the int8 mode).")
flags.DEFINE_string("output_dir", None,
                    "Directory for the outputs (default: <model directory>/tflite).")
flags.DEFINE_list("modes", ["int8", "float32", "float16", "dynamic"],
                  "Comma list of conversions: int8, float32, float16, dynamic.")
flags.DEFINE_enum("io_type", "int8", ["int8", "uint8"],
                  "Input/output type of the int8 model.")
flags.DEFINE_integer("num_calibration_images", 500,
                     "Number of train images (count) for INT8 calibration.")
flags.DEFINE_boolean("c_array", True,
                     "Also write the int8 model as a C array (model_int8.cc/.h) and the "
                     "TFLite Micro op resolver lines (micro_ops.txt).")
flags.DEFINE_string("array_name", "g_model", "C identifier of the model array.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    _convert()
  except errors.GtsrbError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


def _check_flags():
  from tf_gtsrb.export import tflite  # pylint: disable=g-import-not-at-top
  if not FLAGS.model:
    raise errors.ConfigError("--model is required (path to a .keras file)")
  if not os.path.isfile(FLAGS.model):
    raise errors.ConfigError(f"{FLAGS.model}: model file not found (--model)")
  modes = [m.strip() for m in FLAGS.modes if m.strip()]
  if not modes:
    raise errors.ConfigError("--modes is empty")
  for mode in modes:
    if mode not in tflite.MODES:
      raise errors.ConfigError(
          f"--modes: unknown mode {mode!r}; choose from {', '.join(tflite.MODES)}")
  if len(set(modes)) != len(modes):
    raise errors.ConfigError(f"--modes lists a mode twice: {','.join(modes)}")
  if "int8" in modes:
    if not FLAGS.data_dir:
      raise errors.ConfigError("--data_dir is required for int8 conversion (calibration images)")
    if not os.path.isdir(FLAGS.data_dir):
      raise errors.ConfigError(f"{FLAGS.data_dir}: data directory not found (--data_dir)")
  if FLAGS.num_calibration_images < 1:
    raise errors.ConfigError(
        f"--num_calibration_images must be >= 1, got {FLAGS.num_calibration_images}")
  if FLAGS.c_array and "int8" in modes:
    from tf_gtsrb.export import c_array  # pylint: disable=g-import-not-at-top
    c_array._check_name(FLAGS.array_name, "--array_name")  # pylint: disable=protected-access
  return modes


def _convert():
  modes = _check_flags()
  output_dir = FLAGS.output_dir or os.path.join(
      os.path.dirname(os.path.abspath(FLAGS.model)), "tflite")

  # pylint: disable=g-import-not-at-top
  import numpy as np
  from tf_gtsrb import io_utils
  from tf_gtsrb.data import input_pipeline
  from tf_gtsrb.export import c_array
  from tf_gtsrb.export import labels
  from tf_gtsrb.export import micro
  from tf_gtsrb.export import tflite
  from tf_gtsrb.models import io as model_io
  # pylint: enable=g-import-not-at-top

  model = model_io.load_model(FLAGS.model)
  calibration = None
  if "int8" in modes:
    calibration, calibration_labels = input_pipeline.load_arrays(
        FLAGS.data_dir, "train", limit=FLAGS.num_calibration_images)
    print(f"calibration: {len(calibration)} train images covering "
          f"{len(np.unique(calibration_labels))} classes, pixel range "
          f"[{calibration.min()}, {calibration.max()}]")

  summary = {"model": os.path.abspath(FLAGS.model), "io_type": FLAGS.io_type,
             "num_calibration_images": 0 if calibration is None else int(len(calibration)),
             "models": {}}
  os.makedirs(output_dir, exist_ok=True)
  for mode in modes:
    data = tflite.convert(model, mode, representative_images=calibration,
                          io_type=FLAGS.io_type)
    path = tflite.save_tflite(data, os.path.join(output_dir, f"model_{mode}.tflite"))
    problems = tflite.integer_problems(data)
    entry = {
        "path": path,
        "size_bytes": len(data),
        "gzip_size_bytes": _gzip_size(data),
        "ops": tflite.list_ops(data),
        "io": tflite.io_details(data),
        "macs": tflite.count_macs(data),
        "params": tflite.count_params(data),
        "fully_integer": not problems,
        "integer_problems": problems,
        "input_quantization_ok": tflite.input_quantization_ok(data),
        "arena": micro.arena_plan(data),
    }
    if mode == "int8" and FLAGS.c_array:
      header, source = c_array.write_c_files(data, output_dir, FLAGS.array_name,
                                             file_stem="model_int8")
      ops_path = os.path.join(output_dir, "micro_ops.txt")
      io_utils.write_text(ops_path, micro.op_resolver_snippet(data))
      entry.update(c_header=header, c_source=source, micro_ops=ops_path)
    summary["models"][mode] = entry
  summary["labels"] = labels.write_labels(os.path.join(output_dir, labels.LABELS_FILE))
  json_path = os.path.join(output_dir, "conversion.json")
  io_utils.write_json(json_path, summary)
  _print_summary(summary, output_dir, json_path)
  int8 = summary["models"].get("int8")
  if int8 and not int8["fully_integer"]:
    raise errors.ModelError(f"{int8['path']}: the int8 model is not fully integer:\n  "
                            + "\n  ".join(int8["integer_problems"]))


def _gzip_size(data):
  import gzip  # pylint: disable=g-import-not-at-top
  return len(gzip.compress(data, compresslevel=9, mtime=0))


def _print_summary(summary, output_dir, json_path):
  header = ("mode", "size (KB)", "gzip (KB)", "input", "in scale", "in zp", "output",
            "arena est. (KB)", "integer only", "ops")
  rows = []
  for mode, m in summary["models"].items():
    inp, out = m["io"]["inputs"][0], m["io"]["outputs"][0]
    rows.append((mode, f"{m['size_bytes'] / 1024:.1f}", f"{m['gzip_size_bytes'] / 1024:.1f}",
                 inp["dtype"], "-" if inp["scale"] is None else f"{inp['scale']:.8f}",
                 "-" if inp["zero_point"] is None else str(inp["zero_point"]),
                 out["dtype"], f"{m['arena']['estimate_bytes'] / 1024:.1f}",
                 "yes" if m["fully_integer"] else "no", " ".join(m["ops"])))
  widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
  for row in [header] + rows:
    print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
  int8 = summary["models"].get("int8")
  if int8:
    inp = int8["io"]["inputs"][0]
    note = ("value = pixel - 128" if inp["dtype"] == "int8" else "value = pixel") \
        if int8["input_quantization_ok"] else \
        "NOT 1/255: runners quantize with the recorded scale/zero point"
    print(f"int8 input quantization: scale {inp['scale']:.10f}, zero point "
          f"{inp['zero_point']} ({note})")
    print(f"TFLite Micro arena estimate: {int8['arena']['estimate_bytes']} bytes "
          f"(activation peak {int8['arena']['activation_peak_bytes']} bytes; an estimate, "
          "measure on the target)")
  print(f"wrote {output_dir}: {', '.join(sorted(os.listdir(output_dir)))}")
  print(f"wrote {json_path}")


def run():
  app.run(main)


if __name__ == "__main__":
  run()

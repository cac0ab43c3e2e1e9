"""Exports a Keras model as deployable files: TFLite variants, C array, op list, labels.

`export_model` writes `<stem>_<mode>.tflite` for each mode, each with TFLite
metadata and labels.txt attached (`metadata.add_metadata`); for INT8 also the C
array (`<stem>_int8.cc/.h`, array `g_<stem>_int8_model` and the tensor arena
constant), `micro_ops.txt` (TFLite Micro op resolver lines); and `labels.txt`
and `conversion.json` (sizes, ops, io quantization, arena estimate, integer
check). An INT8 model that keeps float ops is an error.
"""

import gzip
import os

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb.export import c_array
from tf_gtsrb.export import labels
from tf_gtsrb.export import metadata
from tf_gtsrb.export import micro
from tf_gtsrb.export import tflite


def export_model(model, output_dir, modes, calibration_images=None, io_type="int8",
                 stem="model", write_c_array=True, array_name=None):
  """Converts `model` in every mode of `modes`; returns the conversion summary dict.

  `array_name` (the C array's) defaults to `c_array.array_name_for('<stem>_int8')`.
  """
  for mode in modes:
    if mode not in tflite.MODES:
      raise errors.ConfigError(f"unknown mode {mode!r}; choose from {', '.join(tflite.MODES)}")
  summary = {"io_type": io_type, "models": {},
             "num_calibration_images": 0 if calibration_images is None
             else int(len(calibration_images))}
  for mode in modes:
    data = tflite.convert(model, mode, representative_images=calibration_images, io_type=io_type)
    data = metadata.add_metadata(data, metadata.ModelInfo(name=f"{stem}_{mode}"))
    path = tflite.save_tflite(data, os.path.join(output_dir, f"{stem}_{mode}.tflite"))
    problems = tflite.integer_problems(data)
    entry = {
        "path": path,
        "size_bytes": len(data),
        "gzip_size_bytes": len(gzip.compress(data, compresslevel=9, mtime=0)),
        "ops": tflite.list_ops(data),
        "io": tflite.io_details(data),
        "macs": tflite.count_macs(data),
        "params": tflite.count_params(data),
        "fully_integer": not problems,
        "integer_problems": problems,
        "input_quantization_ok": tflite.input_quantization_ok(data),
        "arena": micro.arena_plan(data),
    }
    if mode == "int8" and write_c_array:
      arena = micro.tensor_arena(data)
      header, source = c_array.write_c_files(data, output_dir, array_name,
                                             file_stem=f"{stem}_int8", arena=arena)
      entry["arena"]["header_bytes"] = arena["bytes"]
      entry["arena"]["measured_bytes"] = arena["measured_bytes"]
      ops_path = os.path.join(output_dir, "micro_ops.txt")
      io_utils.write_text(ops_path, micro.op_resolver_snippet(data))
      entry.update(c_header=header, c_source=source, micro_ops=ops_path)
    summary["models"][mode] = entry
  summary["labels"] = labels.write_labels(os.path.join(output_dir, labels.LABELS_FILE))
  io_utils.write_json(os.path.join(output_dir, "conversion.json"), summary)
  int8 = summary["models"].get("int8")
  if int8 and not int8["fully_integer"]:
    raise errors.ModelError(f"{int8['path']}: the int8 model is not fully integer:\n  "
                            + "\n  ".join(int8["integer_problems"]))
  return summary


def summary_lines(summary):
  """Human-readable table of a conversion summary, plus the INT8 input contract."""
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
  lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()
           for row in [header] + rows]
  int8 = summary["models"].get("int8")
  if int8:
    inp = int8["io"]["inputs"][0]
    note = ("value = pixel - 128" if inp["dtype"] == "int8" else "value = pixel") \
        if int8["input_quantization_ok"] else \
        "NOT 1/255: runners quantize with the recorded scale/zero point"
    lines.append(f"int8 input quantization: scale {inp['scale']:.10f}, zero point "
                 f"{inp['zero_point']} ({note})")
    lines.append(f"TFLite Micro arena estimate: {int8['arena']['estimate_bytes']} bytes "
                 f"(activation peak {int8['arena']['activation_peak_bytes']} bytes; an "
                 "estimate, measure on the target)")
  return lines

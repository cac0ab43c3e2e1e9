"""Exports a Keras model as deployable files: TFLite variants, C array, op list, labels.

`export_model` writes `<stem>_<mode>.tflite` for each mode, each with TFLite
metadata and labels.txt attached (`metadata.add_metadata`); for INT8 also the C
array (`<stem>_int8.cc/.h`, array `g_<stem>_int8_model` and the tensor arena
constant), `micro_ops.txt` (TFLite Micro op resolver lines); and `labels.txt`
and `conversion.json` (sizes, ops, io quantization, arena estimate, integer
check). An INT8 model that keeps float ops is an error.
"""

import gzip
import hashlib
import os
import time

import numpy as np

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb.export import c_array
from tf_gtsrb.export import labels
from tf_gtsrb.export import metadata
from tf_gtsrb.export import micro
from tf_gtsrb.export import tflite


def export_model(model, output_dir, modes, calibration_images=None, io_type="int8",
                 stem="model", write_c_array=True, array_name=None, source=None, log=None):
  """Converts `model` in every mode of `modes`; returns the conversion summary dict.

  The files commit as a set: written into a staging directory that replaces
  `output_dir` once all are written (files already in `output_dir` that this
  export does not write are carried over), so a failed or killed export leaves
  the previous set intact. conversion.json records the SHA-256 of the model file
  `source` (when given) and of the calibration images. `array_name` (the C
  array's) defaults to `c_array.array_name_for('<stem>_int8')`. `log` gets a line as
  each conversion starts and ends.
  """
  for mode in modes:
    if mode not in tflite.MODES:
      raise errors.ConfigError(f"unknown mode {mode!r}; choose from {', '.join(tflite.MODES)}")
  summary = {"io_type": io_type, "models": {},
             "num_calibration_images": 0 if calibration_images is None
             else int(len(calibration_images)),
             "inputs": _input_hashes(source, calibration_images)}
  with io_utils.atomic_directory(output_dir, carry_over=True) as staging:
    final = lambda path: os.path.join(output_dir, os.path.relpath(path, staging))
    for mode in modes:
      start = time.perf_counter()
      (log or (lambda line: None))(
          f"converting {stem} to {mode}" + (f" (calibrating on {len(calibration_images)} images)"
                                            if mode == "int8" else ""))
      data = tflite.convert(model, mode, representative_images=calibration_images,
                            io_type=io_type)
      (log or (lambda line: None))(f"{stem}_{mode}.tflite: {len(data):,} bytes "
                                   f"({time.perf_counter() - start:.0f} s)")
      data = metadata.add_metadata(data, metadata.ModelInfo(name=f"{stem}_{mode}"))
      path = tflite.save_tflite(data, os.path.join(staging, f"{stem}_{mode}.tflite"))
      problems = tflite.integer_problems(data)
      entry = {
          "path": final(path),
          "size_bytes": len(data),
          "gzip_size_bytes": len(gzip.compress(data, compresslevel=9, mtime=0)),
          "sha256": hashlib.sha256(data).hexdigest(),
          "ops": tflite.list_ops(data),
          "io": tflite.io_details(data),
          "macs": tflite.count_macs(data),
          "params": tflite.count_params(data),
          "fully_integer": not problems,
          "integer_problems": problems,
          "input_quantization_ok": tflite.input_quantization_ok(data),
          "arena": micro.arena_plan(data),
      }
      if mode == "int8" and not entry["fully_integer"]:
        raise errors.ModelError(f"{entry['path']}: the int8 model is not fully integer:\n  "
                                + "\n  ".join(problems))
      if mode == "int8" and write_c_array:
        arena = micro.tensor_arena(data)
        header, c_source = c_array.write_c_files(data, staging, array_name,
                                                 file_stem=f"{stem}_int8", arena=arena)
        entry["arena"]["header_bytes"] = arena["bytes"]
        entry["arena"]["measured_bytes"] = arena["measured_bytes"]
        ops_path = os.path.join(staging, "micro_ops.txt")
        io_utils.write_text(ops_path, micro.op_resolver_snippet(data))
        entry.update(c_header=final(header), c_source=final(c_source), micro_ops=final(ops_path))
      summary["models"][mode] = entry
    summary["labels"] = final(labels.write_labels(os.path.join(staging, labels.LABELS_FILE)))
    io_utils.write_json(os.path.join(staging, "conversion.json"), summary)
  return summary


def _input_hashes(source, calibration_images):
  """SHA-256 of the model file and of the calibration images' bytes (shape and dtype too)."""
  hashes = {"model": None, "calibration_images": None}
  if source:
    from tf_gtsrb.data import archives  # pylint: disable=g-import-not-at-top
    hashes["model"] = {"path": os.path.abspath(source), "sha256": archives.sha256sum(source)}
  if calibration_images is not None:
    images = np.ascontiguousarray(calibration_images)
    digest = hashlib.sha256(f"{images.dtype}{images.shape}".encode())
    digest.update(images.tobytes())
    hashes["calibration_images"] = digest.hexdigest()
  return hashes


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

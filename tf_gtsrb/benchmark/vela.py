"""Arm Ethos-U NPU deployment: compile an INT8 .tflite with Vela and read back its estimates.

Vela (pip package ethos-u-vela, extra `ethos`) rewrites the operators it can
place on the NPU into one `ethos-u` custom operator holding a command stream
and the compressed ("encoded") weights; operators it cannot place stay as
TFLite operators that the Cortex-M runs with TFLite Micro. Its performance
estimate, memory use and weight sizes come from the summary CSV it writes
beside the compiled model. Vela runs as a subprocess (`python -m ethosu.vela`)
of this interpreter, so the numbers are those of the installed Vela.

Each target uses a system configuration from Vela's bundled Arm/vela.ini with
the weights in flash and the tensor arena in SRAM shared with the CPU
("Shared_Sram"): a microcontroller.

Example:
  result = vela.benchmark("models/traffic_sign_cnn_pruned_int8.tflite", "runs/vela")
  result["targets"]["ethos-u55-128"]["inference_ms"]
"""

import csv
import glob
import gzip
import importlib.util
import os
import re
import subprocess
import sys
import tempfile

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb.models import flatbuffer

VELA_CONFIG = "Arm/vela.ini"
# Accelerator -> (system configuration, memory mode) in VELA_CONFIG.
TARGETS = {
    "ethos-u55-128": ("Ethos_U55_High_End_Embedded", "Shared_Sram"),
    "ethos-u55-256": ("Ethos_U55_High_End_Embedded", "Shared_Sram"),
    "ethos-u65-256": ("Ethos_U65_Embedded", "Shared_Sram"),
}
NPU_OP = "CUSTOM:ethos-u"
NOT_INSTALLED = "ethos-u-vela not installed"
INSTALL_HINT = "pip install 'tf_gtsrb[ethos]' (ethos-u-vela==5.2.0)"
TIMEOUT_S = 600


def is_available():
  """True when Vela (the ethosu.vela package) can be imported by this interpreter."""
  try:
    return importlib.util.find_spec("ethosu.vela") is not None
  except ModuleNotFoundError:
    return False


def check_available():
  """Raises ConfigError with the install command unless Vela is installed."""
  if not is_available():
    raise errors.ConfigError(f"{NOT_INSTALLED}; {INSTALL_HINT}")


def check_accelerators(accelerators):
  """Returns `accelerators` as a list; ConfigError for an unknown or empty one."""
  accelerators = [a.strip() for a in accelerators if a.strip()]
  unknown = [a for a in accelerators if a not in TARGETS]
  if unknown or not accelerators:
    raise errors.ConfigError(f"unknown Ethos-U accelerator(s) {unknown or accelerators}; "
                             f"choose from {', '.join(TARGETS)}")
  return accelerators


def gzip_size(data):
  """Bytes of `data` gzip-compressed at level 9: the size of a compressed download."""
  return len(gzip.compress(bytes(data), compresslevel=9, mtime=0))


def _operator_counts(stdout):
  """(NPU operators, CPU operators) from Vela's printed network summary."""
  counts = {}
  for kind in ("CPU", "NPU"):
    match = re.search(rf"^{kind} operators = (\d+)", stdout, re.MULTILINE)
    if match is None:
      raise errors.ModelError(f"Vela printed no '{kind} operators' line")
    counts[kind] = int(match.group(1))
  return counts["NPU"], counts["CPU"]


def _summary_row(output_dir, source):
  paths = glob.glob(os.path.join(output_dir, "*_summary_*.csv"))
  if len(paths) != 1:
    raise errors.ModelError(f"{source}: Vela wrote {len(paths)} summary CSV files, expected 1")
  with open(paths[0], newline="") as f:
    rows = list(csv.DictReader(f))
  if len(rows) != 1:
    raise errors.ModelError(f"{source}: Vela's summary CSV holds {len(rows)} rows, expected 1")
  return rows[0]


def _kib_to_bytes(value):
  return int(round(float(value) * 1024))


def compile_for(path, accelerator, output_dir):
  """Compiles the INT8 .tflite at `path` for `accelerator`; returns its numbers.

  Writes `output_dir`/<stem>_vela.tflite. Returns {'accelerator',
  'system_config', 'memory_mode', 'clock_hz', 'cycles', 'inference_ms',
  'npu_operators', 'cpu_operators', 'npu_share', 'cpu_ops' (names of the ops
  left to the CPU, sorted), 'sram_bytes', 'flash_bytes', 'original_weight_bytes',
  'encoded_weight_bytes', 'vela_model', 'vela_model_bytes'}. Raises
  ConfigError without Vela, ModelError when Vela fails or places no operator
  on the NPU (naming the CPU ops).
  """
  check_available()
  (accelerator,) = check_accelerators([accelerator])
  graph = flatbuffer.parse(flatbuffer.read_file(path), path)
  system_config, memory_mode = TARGETS[accelerator]
  with tempfile.TemporaryDirectory(prefix="vela_") as work:
    command = [sys.executable, "-m", "ethosu.vela", os.path.abspath(path),
               f"--accelerator-config={accelerator}", f"--config={VELA_CONFIG}",
               f"--system-config={system_config}", f"--memory-mode={memory_mode}",
               f"--output-dir={work}"]
    try:
      completed = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S,
                                 check=False, cwd=work)
    except subprocess.TimeoutExpired as e:
      raise errors.ModelError(f"{path}: Vela took over {TIMEOUT_S} s") from e
    if completed.returncode != 0:
      lines = (completed.stderr or completed.stdout).strip().splitlines() or ["no output"]
      raise errors.ModelError(f"{path}: Vela failed for {accelerator}: {lines[-1]}")
    npu_operators, cpu_operators = _operator_counts(completed.stdout)
    row = _summary_row(work, path)
    compiled = glob.glob(os.path.join(work, "*_vela.tflite"))
    if len(compiled) != 1:
      raise errors.ModelError(f"{path}: Vela wrote no compiled model for {accelerator}")
    with open(compiled[0], "rb") as f:
      compiled_bytes = f.read()
  compiled_graph = flatbuffer.parse(compiled_bytes, compiled[0])
  cpu_ops = sorted({op.name for op in compiled_graph.operators if op.name != NPU_OP})
  if npu_operators == 0:
    names = ", ".join(cpu_ops) or ", ".join(graph.all_op_names)
    raise errors.ModelError(
        f"{path}: Vela placed none of its {cpu_operators} operators on the {accelerator} NPU "
        f"(all run on the CPU: {names}); the NPU needs a full-INT8 model")
  stem = os.path.splitext(os.path.basename(path))[0]
  vela_model = os.path.join(output_dir, f"{stem}_vela_{accelerator.removeprefix('ethos-').replace('-', '_')}.tflite")
  with io_utils.atomic_write(vela_model) as f:
    f.write(compiled_bytes)
  total_operators = npu_operators + cpu_operators
  return {
      "accelerator": accelerator,
      "system_config": system_config,
      "memory_mode": memory_mode,
      "clock_hz": float(row["core_clock"]),
      "cycles": int(float(row["cycles_total"])),
      "inference_ms": float(row["inference_time"]) * 1000,
      "npu_operators": npu_operators,
      "cpu_operators": cpu_operators,
      "npu_share": npu_operators / total_operators if total_operators else 0.0,
      "cpu_ops": cpu_ops,
      "sram_bytes": _kib_to_bytes(row["sram_memory_used"]),
      "flash_bytes": _kib_to_bytes(row["off_chip_flash_memory_used"])
                     + _kib_to_bytes(row["on_chip_flash_memory_used"]),
      "original_weight_bytes": int(float(row["total_original_weights"])),
      "encoded_weight_bytes": int(float(row["total_npu_encoded_weights"])),
      "vela_model": vela_model,
      "vela_model_bytes": len(compiled_bytes),
  }


def benchmark(path, output_dir, accelerators=tuple(TARGETS)):
  """Compiles `path` for every accelerator; returns {'model', 'size_bytes',
  'gzip_size_bytes', 'vela_version', 'targets': {accelerator: compile_for(...)}}."""
  check_available()
  accelerators = check_accelerators(accelerators)
  data = flatbuffer.read_file(path)
  return {"model": path, "size_bytes": len(data), "gzip_size_bytes": gzip_size(data),
          "vela_version": vela_version(),
          "targets": {a: compile_for(path, a, output_dir) for a in accelerators}}


def vela_version():
  """The installed Vela's version string."""
  from ethosu.vela import _version  # pylint: disable=g-import-not-at-top
  return _version.__version__


def markdown_table(result):
  """One row per accelerator: time, cycles, NPU share, CPU ops, memory, weights."""
  lines = [
      f"Vela {result['vela_version']} on `{os.path.basename(result['model'])}` "
      f"({result['size_bytes']:,} bytes, gzip {result['gzip_size_bytes']:,} bytes)",
      "",
      "| Accelerator | Clock | Inference ms | Cycles | NPU ops | CPU ops | SRAM KiB | "
      "Flash KiB | Weights (original -> encoded bytes) |",
      "|---|---:|---:|---:|---:|---|---:|---:|---:|"]
  for t in result["targets"].values():
    cpu = ", ".join(t["cpu_ops"]) if t["cpu_ops"] else "none"
    lines.append(
        f"| {t['accelerator']} | {t['clock_hz'] / 1e6:.0f} MHz | {t['inference_ms']:.3f} | "
        f"{t['cycles']:,} | {t['npu_operators']}/{t['npu_operators'] + t['cpu_operators']} "
        f"({100 * t['npu_share']:.1f}%) | {t['cpu_operators']}: {cpu} | "
        f"{t['sram_bytes'] / 1024:.1f} | {t['flash_bytes'] / 1024:.1f} | "
        f"{t['original_weight_bytes']:,} -> {t['encoded_weight_bytes']:,} |")
  return "\n".join(lines)

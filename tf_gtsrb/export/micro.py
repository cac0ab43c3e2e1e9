"""TFLite Micro support: op resolver code and a tensor-arena size estimate.

The arena size is an ESTIMATE for sizing `kTensorArenaSize` before a first
build; the real figure depends on the TFLite Micro version, the kernels
(reference vs. CMSIS-NN) and the target's pointer size. Measure it on the
target with `tflite::RecordingMicroInterpreter` (or `arena_used_bytes()`) and
keep a margin.

Estimate = activation peak + largest scratch buffer + overhead, where
- activation peak: a liveness plan over the operators in execution order.
  Every non-constant tensor lives from the op that writes it (model inputs:
  from the start) to the last op that reads it (model outputs: to the end);
  the peak over all ops of the summed sizes of live tensors, each rounded up
  to 16 bytes. This is the "head" TFLM's greedy planner needs for models
  like TrafficSignCNN (a chain of ops);
- scratch: for CONV_2D, the im2col buffer CMSIS-NN asks for
  (2 * kh * kw * in_channels int16 values); reference kernels need none, so
  there the estimate errs high by this much;
- overhead (TFLM's "tail"): FIXED_OVERHEAD_BYTES for interpreter and
  allocator bookkeeping and the input/output TfLiteTensors, PER_TENSOR_BYTES
  per tensor (TfLiteEvalTensor), PER_OP_BYTES per operator (node,
  registration and kernel data) and PER_CHANNEL_BYTES per output channel of
  conv/dense ops (per-channel multipliers and shifts).

The constants were fitted to TFLM's RecordingMicroAllocator (tflite-micro
Python package, x86-64, reference kernels) on TrafficSignCNN int8 models of
three widths: the activation peak equalled the allocator's head exactly and
the overhead its tail within 16 bytes. On a 32-bit MCU, pointer-sized fields
shrink, so the tail is smaller there.
"""

import contextlib
import math
import os
import re
import sys

import numpy as np

from tf_gtsrb import errors
from tf_gtsrb.models import flatbuffer

ALIGNMENT = 16
FIXED_OVERHEAD_BYTES = 1024
PER_TENSOR_BYTES = 24
PER_OP_BYTES = 128
PER_CHANNEL_BYTES = 8

# TFLite builtin op name -> MicroMutableOpResolver method. Names not listed
# follow the rule of TFLM's generator: CONV_2D -> AddConv2D.
RESOLVER_METHODS = {
    "ADD": "AddAdd",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul",
    "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEQUANTIZE": "AddDequantize",
    "FULLY_CONNECTED": "AddFullyConnected",
    "HARD_SWISH": "AddHardSwish",
    "L2_NORMALIZATION": "AddL2Normalization",
    "LOGISTIC": "AddLogistic",
    "MAX_POOL_2D": "AddMaxPool2D",
    "MEAN": "AddMean",
    "MUL": "AddMul",
    "PAD": "AddPad",
    "QUANTIZE": "AddQuantize",
    "RELU": "AddRelu",
    "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape",
    "SOFTMAX": "AddSoftmax",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
}
_QUANTIZED = frozenset({"int8", "uint8", "int16"})


def resolver_method(op_name):
  """MicroMutableOpResolver method for a builtin op name ('MAX_POOL_2D' -> 'AddMaxPool2D')."""
  if op_name in RESOLVER_METHODS:
    return RESOLVER_METHODS[op_name]
  parts = [p for p in re.split(r"[_-]", op_name) if p]
  return "Add" + "".join(p[0].upper() + p[1:].lower() if p[0].isalpha() else p.upper()
                         for p in parts)


def op_resolver_snippet(tflite_bytes, resolver="resolver"):
  """C++ lines declaring a MicroMutableOpResolver with exactly the model's ops.

  Custom ops (none in a fully builtin model) appear as a comment to fill in.
  """
  ops = flatbuffer.parse(tflite_bytes).all_op_names
  lines = [f"static tflite::MicroMutableOpResolver<{len(ops)}> {resolver};"]
  for op in ops:
    if op.startswith("CUSTOM:"):
      code = op.split(":", 1)[1]
      lines.append(f"// {resolver}.AddCustom(\"{code}\", <registration of {code}>);")
    else:
      lines.append(f"{resolver}.{resolver_method(op)}();")
  return "\n".join(lines) + "\n"


def _align(n):
  return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def arena_plan(tflite_bytes):
  """The arena estimate and its parts (see the module docstring), as a dict.

  Keys: activation_peak_bytes, peak_op (index and name of the op at the peak),
  largest_tensor_bytes, scratch_bytes, overhead_bytes, estimate_bytes,
  num_activation_tensors, num_ops.
  """
  graph = flatbuffer.parse(tflite_bytes)
  num_ops = len(graph.operators)
  first, last = {}, {}
  for i in graph.inputs:
    first[i] = 0
    last[i] = 0
  for op in graph.operators:
    for i in op.outputs:
      if i >= 0:
        first.setdefault(i, op.index)
        last[i] = max(last.get(i, op.index), op.index)
    for i in op.inputs:
      if i >= 0:
        first.setdefault(i, op.index)
        last[i] = max(last.get(i, op.index), op.index)
  for i in graph.outputs:
    first.setdefault(i, max(num_ops - 1, 0))
    last[i] = max(num_ops - 1, 0)

  activations = [i for i in first
                 if not graph.tensors[i].is_constant and not graph.tensors[i].is_variable]
  variables = sum(_align(t.nbytes) for t in graph.tensors if t.is_variable)
  peak, peak_op = 0, 0
  for step in range(max(num_ops, 1)):
    live = sum(_align(graph.tensors[i].nbytes) for i in activations
               if first[i] <= step <= last[i])
    if live > peak:
      peak, peak_op = live, step
  largest = max((graph.tensors[i].nbytes for i in activations), default=0)

  scratch = 0
  channels = 0
  for op in graph.operators:
    if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
      weights = graph.tensors[op.inputs[1]]
      output = graph.tensors[op.outputs[0]]
      if output.dtype in _QUANTIZED and output.shape:
        channels += int(output.shape[-1])
      if op.name == "CONV_2D" and len(weights.shape) == 4:
        scratch = max(scratch, 2 * weights.shape[1] * weights.shape[2] * weights.shape[3] * 2)
  overhead = (FIXED_OVERHEAD_BYTES + PER_TENSOR_BYTES * len(graph.tensors)
              + PER_OP_BYTES * num_ops + PER_CHANNEL_BYTES * channels + variables)
  estimate = _align(peak + _align(scratch) + overhead)
  return {
      "activation_peak_bytes": int(peak),
      "peak_op": {"index": peak_op,
                  "name": graph.operators[peak_op].name if graph.operators else None},
      "largest_tensor_bytes": int(largest),
      "scratch_bytes": int(scratch),
      "overhead_bytes": int(overhead),
      "estimate_bytes": int(estimate),
      "num_activation_tensors": len(activations),
      "num_ops": num_ops,
  }


def estimate_arena_bytes(tflite_bytes):
  """Estimated TFLite Micro tensor arena size in bytes (an estimate: see module doc)."""
  return arena_plan(tflite_bytes)["estimate_bytes"]


ARENA_MARGIN = 0.10  # Share added to the measured arena for the header constant.


def load_tflm_runtime():
  """The tflite-micro Python runtime module; ConfigError when it is not installed."""
  try:
    from tflite_micro.python.tflite_micro import runtime  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise errors.ConfigError(
        "tflite-micro is not installed: pip install 'tf_gtsrb[tflm]'") from e
  return runtime


@contextlib.contextmanager
def _quiet_stderr():
  """Silences file descriptor 2 (TFLM prints every failed allocation there)."""
  sys.stderr.flush()
  saved = os.dup(2)
  try:
    with open(os.devnull, "wb") as devnull:
      os.dup2(devnull.fileno(), 2)
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)


def micro_interpreter(tflite_bytes, arena_size, source="<tflite bytes>"):
  """A TFLite Micro interpreter (tflite-micro Python package) over an arena of `arena_size`.

  Raises ModelError when the model does not fit the arena or TFLM cannot run it.
  """
  runtime = load_tflm_runtime()
  try:
    with _quiet_stderr():
      return runtime.Interpreter.from_bytes(bytes(tflite_bytes), arena_size=int(arena_size))
  except (RuntimeError, ValueError) as e:
    raise errors.ModelError(
        f"{source}: TFLite Micro cannot run the model in a {arena_size}-byte arena: "
        f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from e


def _runs_in(tflite_bytes, arena_size):
  try:
    interpreter = micro_interpreter(tflite_bytes, arena_size)
    details = interpreter.get_input_details(0)
    interpreter.set_input(np.zeros(details["shape"], details["dtype"]), 0)
    with _quiet_stderr():
      interpreter.invoke()
  except (errors.ModelError, RuntimeError, ValueError):
    return False
  return True


def measure_arena_bytes(tflite_bytes, source="<tflite bytes>"):
  """The smallest tensor arena (a multiple of 16 bytes) in which TFLite Micro runs the model.

  A binary search with the tflite-micro Python interpreter (x86-64, reference
  kernels): each try allocates the tensors and invokes once on zeros. Raises
  ConfigError without tflite-micro and ModelError when even 4x the estimate
  does not fit.
  """
  load_tflm_runtime()
  high = _align(4 * estimate_arena_bytes(tflite_bytes))
  if not _runs_in(tflite_bytes, high):
    raise errors.ModelError(f"{source}: TFLite Micro cannot run the model even in a "
                            f"{high}-byte arena")
  low, high = 0, high // ALIGNMENT  # In units of ALIGNMENT bytes: `high` runs, `low` not.
  while high - low > 1:
    middle = (low + high) // 2
    if _runs_in(tflite_bytes, middle * ALIGNMENT):
      high = middle
    else:
      low = middle
  return high * ALIGNMENT


def arena_with_margin(measured_bytes, margin=ARENA_MARGIN):
  """`measured_bytes` plus `margin` of it, rounded up to a multiple of 16 bytes."""
  return _align(math.ceil(measured_bytes * (1.0 + margin)))


def tensor_arena(tflite_bytes):
  """The arena size for a model's C header: {'bytes', 'measured_bytes', 'note'}.

  Measured with tflite-micro when it is installed (plus ARENA_MARGIN); the
  estimate of `arena_plan` otherwise. `note` says which, for a C comment.
  """
  try:
    measured = measure_arena_bytes(tflite_bytes)
  except errors.ConfigError:
    estimate = estimate_arena_bytes(tflite_bytes)
    return {"bytes": estimate, "measured_bytes": None,
            "note": f"an ESTIMATE ({estimate} bytes; tflite-micro was not installed to "
                    "measure it): measure on the target"}
  size = arena_with_margin(measured)
  return {"bytes": size, "measured_bytes": measured,
          "note": f"{measured} bytes measured with the TFLite Micro Python interpreter "
                  f"(x86-64, reference kernels) + {round(100 * ARENA_MARGIN)}% margin, rounded "
                  "up to 16 bytes; 32-bit targets need a little less"}

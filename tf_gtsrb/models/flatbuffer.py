"""Reading TFLite flatbuffers without TensorFlow: tensors, operators, buffers.

Uses the schema bindings that ship with ai-edge-litert, so the benchmark
runners can inspect a model in a process that never imports TensorFlow. Only
what this project needs is parsed: tensor types, shapes, quantization, which
tensors hold constant data, and the operators in execution order.
"""

import dataclasses
import math
import os
import struct

from ai_edge_litert import schema_py_generated as schema

from tf_gtsrb import errors

FILE_IDENTIFIER = b"TFL3"

_TYPE_NAMES = {value: name.lower() for name, value in vars(schema.TensorType).items()
               if not name.startswith("_")}
_OP_NAMES = {value: name for name, value in vars(schema.BuiltinOperator).items()
             if not name.startswith("_")}
# Storage size in bits of one element, per tensor type name.
_BITS = {"float32": 32, "float16": 16, "int32": 32, "uint8": 8, "int64": 64, "bool": 8,
         "int16": 16, "complex64": 64, "int8": 8, "float64": 64, "complex128": 128,
         "uint64": 64, "uint32": 32, "uint16": 16, "int4": 4, "bfloat16": 16, "int2": 2,
         "uint4": 4, "float8_e4m3fn": 8, "float8_e5m2": 8}
FLOAT_TYPES = frozenset({"float32", "float16", "float64", "bfloat16", "float8_e4m3fn",
                         "float8_e5m2", "complex64", "complex128"})


@dataclasses.dataclass(frozen=True)
class Tensor:
  """One tensor of a subgraph."""
  index: int
  name: str
  dtype: str  # Lower-case TFLite type name: 'int8', 'float32', ...
  shape: tuple  # Shape as stored (batch 1 for the model input).
  shape_signature: tuple  # Like `shape`, with -1 for dynamic dimensions.
  is_constant: bool  # Holds data in a buffer (weights, biases, shape constants).
  is_variable: bool
  scale: tuple  # Quantization scales (empty when not quantized).
  zero_point: tuple

  @property
  def num_elements(self):
    return math.prod(self.shape) if self.shape else 1

  @property
  def nbytes(self):
    """Storage size in bytes (sub-byte types packed)."""
    return (self.num_elements * _BITS.get(self.dtype, 32) + 7) // 8

  @property
  def is_float(self):
    return self.dtype in FLOAT_TYPES


@dataclasses.dataclass(frozen=True)
class Operator:
  """One operator, in execution order."""
  index: int
  name: str  # Builtin name ('CONV_2D'), or 'CUSTOM:<code>' for custom ops.
  inputs: tuple  # Tensor indices; -1 marks an omitted optional input.
  outputs: tuple


@dataclasses.dataclass(frozen=True)
class Graph:
  """The main subgraph of a model, plus op names of all subgraphs."""
  tensors: tuple
  operators: tuple
  inputs: tuple  # Tensor indices.
  outputs: tuple
  all_op_names: tuple  # Sorted unique op names over every subgraph.
  num_subgraphs: int
  size_bytes: int


def read_file(path):
  """Reads a .tflite file and checks its header; returns the bytes.

  Missing, empty or non-TFLite files raise ModelError naming the file.
  """
  if not os.path.isfile(path):
    raise errors.ModelError(f"{path}: TFLite model file not found")
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise errors.ModelError(f"{path}: cannot read TFLite model: {e.strerror or e}") from e
  check_identifier(data, path)
  return data


def check_identifier(data, source="<bytes>"):
  """Raises ModelError unless `data` is non-empty and carries the 'TFL3' identifier."""
  if not isinstance(data, (bytes, bytearray, memoryview)):
    raise errors.ModelError(f"{source}: expected TFLite model bytes, got {type(data).__name__}")
  if len(data) == 0:
    raise errors.ModelError(f"{source}: TFLite model file is empty")
  if len(data) < 8 or bytes(data[4:8]) != FILE_IDENTIFIER:
    raise errors.ModelError(
        f"{source}: not a TFLite flatbuffer (no 'TFL3' identifier at bytes 4..8)")


def parse(data, source="<bytes>"):
  """Parses TFLite model bytes into a `Graph` (its first subgraph).

  Raises ModelError naming `source` for empty, truncated or malformed data.
  """
  check_identifier(data, source)
  data = bytes(data)
  try:
    return _parse(data)
  except (struct.error, IndexError, ValueError, TypeError, AttributeError,
          UnicodeDecodeError) as e:
    raise errors.ModelError(
        f"{source}: TFLite model is truncated or corrupt ({type(e).__name__}: {e})") from e


def _parse(data):
  model = schema.Model.GetRootAs(data, 0)
  if model.SubgraphsLength() < 1:
    raise ValueError("the model has no subgraph")
  constant_buffers = set()
  for i in range(model.BuffersLength()):
    buffer = model.Buffers(i)
    if buffer.Offset() > 1:  # Data stored after the flatbuffer (models > 2 GB).
      if buffer.Offset() + buffer.Size() > len(data):
        raise ValueError(f"buffer {i} extends past the end of the file")
      constant_buffers.add(i)
    elif buffer.DataLength() > 0:
      buffer.DataAsNumpy()  # Raises ValueError when the data is cut off.
      constant_buffers.add(i)

  op_names = [_op_name(model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())]
  all_names = set()
  for s in range(model.SubgraphsLength()):
    subgraph = model.Subgraphs(s)
    for o in range(subgraph.OperatorsLength()):
      all_names.add(op_names[subgraph.Operators(o).OpcodeIndex()])

  subgraph = model.Subgraphs(0)
  tensors = tuple(_tensor(i, subgraph.Tensors(i), constant_buffers)
                  for i in range(subgraph.TensorsLength()))
  operators = []
  for o in range(subgraph.OperatorsLength()):
    op = subgraph.Operators(o)
    operators.append(Operator(
        index=o, name=op_names[op.OpcodeIndex()],
        inputs=_ints(op.InputsAsNumpy, op.InputsLength),
        outputs=_ints(op.OutputsAsNumpy, op.OutputsLength)))
  return Graph(
      tensors=tensors, operators=tuple(operators),
      inputs=_ints(subgraph.InputsAsNumpy, subgraph.InputsLength),
      outputs=_ints(subgraph.OutputsAsNumpy, subgraph.OutputsLength),
      all_op_names=tuple(sorted(all_names)), num_subgraphs=model.SubgraphsLength(),
      size_bytes=len(data))


def _ints(as_numpy, length):
  return tuple(int(v) for v in as_numpy()) if length() else ()


def _op_name(code):
  builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
  name = _OP_NAMES.get(builtin, f"BUILTIN_{builtin}")
  if name == "CUSTOM":
    custom = code.CustomCode()
    return f"CUSTOM:{custom.decode('utf-8') if custom else '?'}"
  return name


def _tensor(index, tensor, constant_buffers):
  quant = tensor.Quantization()
  scale = zero_point = ()
  if quant is not None and quant.ScaleLength():
    scale = tuple(float(v) for v in quant.ScaleAsNumpy())
    zero_point = tuple(int(v) for v in quant.ZeroPointAsNumpy()) if quant.ZeroPointLength() \
        else (0,) * len(scale)
  shape = _ints(tensor.ShapeAsNumpy, tensor.ShapeLength)
  signature = _ints(tensor.ShapeSignatureAsNumpy, tensor.ShapeSignatureLength) or shape
  name = tensor.Name()
  return Tensor(
      index=index, name=name.decode("utf-8") if name else f"tensor_{index}",
      dtype=_TYPE_NAMES.get(tensor.Type(), f"type_{tensor.Type()}"),
      shape=shape, shape_signature=signature,
      is_constant=tensor.Buffer() in constant_buffers, is_variable=bool(tensor.IsVariable()),
      scale=scale, zero_point=zero_point)


def io_tensor_info(tensor):
  """JSON-ready description of an input/output tensor."""
  quantized = bool(tensor.scale)
  return {
      "name": tensor.name,
      "dtype": tensor.dtype,
      "shape": list(tensor.shape),
      "shape_signature": list(tensor.shape_signature),
      "scale": tensor.scale[0] if quantized else None,
      "zero_point": tensor.zero_point[0] if quantized else None,
  }


def check_image_input(graph, source="<bytes>"):
  """Returns the single input tensor; ModelError unless it is an NHWC RGB image."""
  if len(graph.inputs) != 1:
    raise errors.ModelError(
        f"{source}: expected one image input, the model has {len(graph.inputs)} inputs")
  tensor = graph.tensors[graph.inputs[0]]
  if len(tensor.shape) != 4 or tensor.shape[3] != 3:
    raise errors.ModelError(
        f"{source}: input {tensor.name!r} is not an RGB image tensor: expected shape "
        f"(1, H, W, 3), got {tensor.shape}")
  if tensor.dtype not in ("float32", "int8", "uint8"):
    raise errors.ModelError(
        f"{source}: input {tensor.name!r} has type {tensor.dtype}; expected float32, int8 "
        "or uint8")
  return tensor

"""Keras -> TFLite conversion (full INT8, float32, float16, dynamic range) and checks.

Full-INT8 conversion calibrates with uint8 images fed as pixel / 255, the same
preprocessing the Keras model was trained on. The calibration set is made to
contain the pixel values 0 and 255 (one pixel of one image is set to each if
no image has them), so the int8 input quantization comes out as scale 1/255,
zero point -128: the int8 input value is exactly `pixel - 128` (uint8 io:
scale 1/255, zero point 0, the value is the pixel itself). Models trained
with quantization-aware training take their input range from the QAT input
quantizer instead; `io_details` reports what the converter chose.
"""

import tempfile

import numpy as np

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb.models import flatbuffer

MODES = ("int8", "float32", "float16", "dynamic")
IO_TYPES = ("int8", "uint8")
# Input quantization the INT8 model should get: value = pixel - 128 (int8 io).
EXPECTED_INPUT_SCALE = 1.0 / 255.0
EXPECTED_INPUT_ZERO_POINT = {"int8": -128, "uint8": 0}


def convert(model, mode, representative_images=None, io_type="int8"):
  """Converts a Keras model (float, pruned-and-stripped or QAT) to TFLite bytes.

  Args:
    model: tf_keras model taking float32 RGB pixel/255 of shape (None, S, S, 3).
    mode: 'int8' (full integer: TFLITE_BUILTINS_INT8 ops, integer input and
      output), 'float32', 'float16' (float16 weights, float32 compute and io) or
      'dynamic' (int8 weights, float io and activations).
    representative_images: uint8 array [N, S, S, 3] for INT8 calibration
      (required for 'int8', ignored otherwise).
    io_type: 'int8' or 'uint8', the input/output type of the 'int8' model.

  Returns:
    The .tflite flatbuffer as bytes.

  Raises:
    ConfigError: bad mode, io_type or calibration images (before converting).
    ModelError: the model input is not an image tensor, or conversion fails.
  """
  if mode not in MODES:
    raise errors.ConfigError(f"unknown conversion mode {mode!r}; choose from {', '.join(MODES)}")
  if io_type not in IO_TYPES:
    raise errors.ConfigError(f"unknown io_type {io_type!r}; choose from {', '.join(IO_TYPES)}")
  size = _check_model_input(model)
  calibration = None
  if mode == "int8":
    calibration = _check_calibration(representative_images, size)

  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def configure(converter):
    if mode == "float16":
      converter.optimizations = [tf.lite.Optimize.DEFAULT]
      converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
      converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
      converter.optimizations = [tf.lite.Optimize.DEFAULT]
      converter.representative_dataset = _representative_dataset(calibration)
      converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
      converter.inference_input_type = tf.int8 if io_type == "int8" else tf.uint8
      converter.inference_output_type = converter.inference_input_type
    return converter

  failures = []
  for name, make in (("from_keras_model", _keras_converter),
                     ("from_concrete_functions", _concrete_function_converter)):
    try:
      with tempfile.TemporaryDirectory(prefix="tflite-convert-") as tmp:
        data = configure(make(tf, model, size, tmp)).convert()
      flatbuffer.parse(data, f"{mode} conversion of {model.name}")
      return bytes(data)
    except errors.ModelError:
      raise
    except Exception as e:  # The converter raises many types; try the fallback.
      failures.append(f"{name}: {type(e).__name__}: {str(e).strip()[:2000]}")
  raise errors.ModelError(
      f"model {model.name!r}: TFLite {mode} conversion failed:\n" + "\n".join(failures))


def with_uint8_io(int8_bytes, source="<tflite bytes>"):
  """The full-INT8 model with a uint8 input and output, for MediaPipe Tasks and the Task
  Library (which take uint8 or float32 inputs only).

  A QUANTIZE op in front requantizes the uint8 pixel to the int8 input, one behind
  the int8 scores to uint8: same scales, zero points shifted by 128, so both are exact
  and the predictions equal the INT8 model's. Metadata is dropped: add it again.
  """
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.export import metadata  # pylint: disable=g-import-not-at-top
  graph = flatbuffer.parse(int8_bytes, source)
  ends = [graph.tensors[i] for i in list(graph.inputs) + list(graph.outputs)]
  if len(ends) != 2 or {t.dtype for t in ends} != {"int8"}:
    raise errors.ModelError(f"{source}: needs one int8 input and one int8 output to get a uint8 "
                            f"interface, got {', '.join(t.dtype for t in ends)}")
  model = metadata.unpack(int8_bytes)
  model.metadata, model.signatureDefs = None, None
  codes = [c.builtinCode for c in model.operatorCodes]
  if schema.BuiltinOperator.QUANTIZE not in codes:
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.QUANTIZE
    code.version = 2
    model.operatorCodes.append(code)
    codes.append(schema.BuiltinOperator.QUANTIZE)
  subgraph = model.subgraphs[0]

  def uint8_twin(index, name):
    int8 = subgraph.tensors[index]
    twin = schema.TensorT()
    twin.name, twin.type, twin.buffer = name, schema.TensorType.UINT8, 0
    twin.shape, twin.shapeSignature = int8.shape, int8.shapeSignature
    twin.quantization = schema.QuantizationParametersT()
    twin.quantization.scale = list(int8.quantization.scale)
    twin.quantization.zeroPoint = [int(z) + 128 for z in int8.quantization.zeroPoint]
    subgraph.tensors.append(twin)
    return len(subgraph.tensors) - 1

  def quantize(source_index, target_index):
    op = schema.OperatorT()
    op.opcodeIndex = codes.index(schema.BuiltinOperator.QUANTIZE)
    op.inputs, op.outputs = [source_index], [target_index]
    return op

  image, scores = int(subgraph.inputs[0]), int(subgraph.outputs[0])
  image_uint8, scores_uint8 = uint8_twin(image, b"image_uint8"), uint8_twin(scores, b"scores_uint8")
  subgraph.operators = ([quantize(image_uint8, image)] + list(subgraph.operators)
                        + [quantize(scores, scores_uint8)])
  subgraph.inputs, subgraph.outputs = [image_uint8], [scores_uint8]
  return metadata.pack(model)


def _keras_converter(tf, model, size, tmp):
  del size, tmp
  return tf.lite.TFLiteConverter.from_keras_model(model)


def _concrete_function_converter(tf, model, size, tmp):
  del tmp
  call = tf.function(lambda images: model(images, training=False))
  concrete = call.get_concrete_function(tf.TensorSpec([None, size, size, 3], tf.float32))
  return tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)


def _check_model_input(model):
  """Returns the input size S of an image model (None, S, S, 3); ModelError otherwise."""
  inputs = getattr(model, "inputs", None)
  if not inputs or len(inputs) != 1:
    raise errors.ModelError(
        f"model {getattr(model, 'name', model)!r}: expected one image input, got "
        f"{0 if not inputs else len(inputs)}")
  shape = tuple(inputs[0].shape)
  if len(shape) != 4 or shape[3] != 3 or shape[1] is None or shape[1] != shape[2]:
    raise errors.ModelError(
        f"model {model.name!r}: input is not a square RGB image tensor (None, S, S, 3): "
        f"got shape {shape}")
  return int(shape[1])


def _check_calibration(images, size):
  if images is None:
    raise errors.ConfigError("int8 conversion needs representative images (uint8 [N, S, S, 3])")
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[0] == 0:
    raise errors.ConfigError(
        f"representative images must be a non-empty uint8 array [N, {size}, {size}, 3], "
        f"got shape {images.shape}")
  if images.dtype != np.uint8:
    raise errors.ConfigError(f"representative images must be uint8 pixels, got {images.dtype}")
  if images.shape[1:] != (size, size, 3):
    raise errors.ConfigError(
        f"representative images have shape {images.shape[1:]}; the model expects "
        f"({size}, {size}, 3)")
  return with_full_range(images)


def with_full_range(images):
  """Returns uint8 images whose pixel values include both 0 and 255.

  If no image has a 0 (or a 255), the top-left pixel (or the one right of it)
  of the first image is set to it in a copy, so calibration sees the whole
  [0, 1] input range and the input scale comes out as 1/255.
  """
  images = np.asarray(images)
  if images.min() == 0 and images.max() == 255:
    return images
  images = images.copy()
  if images.min() > 0:
    images[0, 0, 0, :] = 0
  if images.max() < 255:
    images[0, 0, min(1, images.shape[2] - 1), :] = 255
  return images


def _representative_dataset(images):
  def generate():
    for image in images:
      yield [image[np.newaxis].astype(np.float32) / np.float32(255.0)]
  return generate


def list_ops(tflite_bytes):
  """Sorted unique operator names in the model ('CONV_2D', 'SOFTMAX', ...)."""
  return list(flatbuffer.parse(tflite_bytes).all_op_names)


def float_tensors(tflite_bytes):
  """Names of floating-point tensors read or written by operators (none in full INT8)."""
  graph = flatbuffer.parse(tflite_bytes)
  used = sorted({i for op in graph.operators for i in op.inputs + op.outputs if i >= 0})
  return [graph.tensors[i].name for i in used if graph.tensors[i].is_float]


def integer_problems(tflite_bytes):
  """Lists what keeps a model from being fully integer; empty when it is.

  Checks every operator's tensors (float inputs/outputs, e.g. QUANTIZE or
  DEQUANTIZE at the edges) and the model input/output types.
  """
  graph = flatbuffer.parse(tflite_bytes)
  problems = []
  for op in graph.operators:
    floats = [graph.tensors[i] for i in op.inputs + op.outputs
              if i >= 0 and graph.tensors[i].is_float]
    if floats:
      problems.append(f"op {op.index} {op.name} uses float tensors: " +
                      ", ".join(f"{t.name} ({t.dtype})" for t in floats))
  for kind, indices in (("input", graph.inputs), ("output", graph.outputs)):
    for i in indices:
      tensor = graph.tensors[i]
      if tensor.dtype not in ("int8", "uint8"):
        problems.append(f"model {kind} {tensor.name} is {tensor.dtype}, not int8/uint8")
  return problems


def check_fully_int8(tflite_bytes):
  """Raises ModelError listing float ops/tensors unless the model is fully integer."""
  problems = integer_problems(tflite_bytes)
  if problems:
    raise errors.ModelError("TFLite model is not fully integer:\n  " + "\n  ".join(problems))


def io_details(tflite_bytes):
  """{'inputs': [...], 'outputs': [...]}: name, dtype, shape, scale, zero_point of each."""
  graph = flatbuffer.parse(tflite_bytes)
  return {
      "inputs": [flatbuffer.io_tensor_info(graph.tensors[i]) for i in graph.inputs],
      "outputs": [flatbuffer.io_tensor_info(graph.tensors[i]) for i in graph.outputs],
  }


def input_quantization_ok(tflite_bytes, rel_tol=1e-6):
  """True if an integer input has scale 1/255 and the zero point that makes it pixel-based.

  Float inputs return True (they take pixel / 255 directly).
  """
  info = io_details(tflite_bytes)["inputs"][0]
  if info["dtype"] == "float32":
    return True
  expected_zero = EXPECTED_INPUT_ZERO_POINT.get(info["dtype"])
  return (info["scale"] is not None and expected_zero is not None
          and abs(info["scale"] - EXPECTED_INPUT_SCALE) <= rel_tol * EXPECTED_INPUT_SCALE
          and info["zero_point"] == expected_zero)


_WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def count_macs(tflite_bytes):
  """Multiply-accumulates per image of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED ops."""
  graph = flatbuffer.parse(tflite_bytes)
  total = 0
  for op in graph.operators:
    if op.name not in _WEIGHTED_OPS:
      continue
    weights = graph.tensors[op.inputs[1]].shape
    output = graph.tensors[op.outputs[0]].shape
    per_image = int(np.prod(output)) // max(int(output[0]), 1) if output else 1
    if op.name == "CONV_2D":  # weights [O, kh, kw, I]
      total += per_image * int(np.prod(weights[1:]))
    elif op.name == "DEPTHWISE_CONV_2D":  # weights [1, kh, kw, O]
      total += per_image * int(weights[1] * weights[2])
    else:  # weights [O, I]
      total += per_image * int(weights[-1])
  return total


def count_params(tflite_bytes):
  """Weight and bias elements of the CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED ops.

  Batch normalization is folded into the convolutions in a TFLite model, so
  this is below the Keras parameter count of the same network.
  """
  graph = flatbuffer.parse(tflite_bytes)
  producer = {o: op for op in graph.operators for o in op.outputs}
  counted = set()
  for op in graph.operators:
    if op.name not in _WEIGHTED_OPS:
      continue
    for i in op.inputs[1:3]:
      if i < 0:
        continue
      source = producer.get(i)
      if source is not None and source.name == "DEQUANTIZE":  # float16 weights.
        i = source.inputs[0]
      if graph.tensors[i].is_constant:
        counted.add(i)
  return int(sum(graph.tensors[i].num_elements for i in counted))


def save_tflite(tflite_bytes, path):
  """Writes TFLite bytes to `path` atomically; non-TFLite bytes raise ModelError."""
  flatbuffer.check_identifier(tflite_bytes, path)
  with io_utils.atomic_write(path, "wb") as f:
    f.write(bytes(tflite_bytes))
  return path


def load_tflite(path):
  """Reads a .tflite file; missing, empty or non-TFLite files raise ModelError."""
  return flatbuffer.read_file(path)

"""Uniform inference over TFLite (LiteRT interpreter) and Keras models.

Every runner takes uint8 RGB images [N, S, S, 3] and returns float class
probabilities [N, num_classes]. For latency measurements a runner splits
`predict` into `prepare` (uint8 pixels -> model input) and `run` (set input,
invoke, read output), so the timed part is model execution alone.

This module imports TensorFlow only when a Keras model is used, so a TFLite
model can be measured in a process without TensorFlow.
"""

import os

import numpy as np

from tf_gtsrb import errors
from tf_gtsrb.models import flatbuffer

DEFAULT_BATCH_SIZE = 32


def check_images(images, size, source):
  """Returns `images` as a uint8 array [N, size, size, 3]; ConfigError otherwise."""
  if not isinstance(images, np.ndarray):
    raise errors.ConfigError(
        f"{source}: images must be a numpy uint8 array, got {type(images).__name__}")
  expected = f"uint8 [N, {size}, {size}, 3]"
  if images.dtype != np.uint8:
    raise errors.ConfigError(f"{source}: expected {expected} images, got dtype {images.dtype}")
  if images.ndim != 4 or images.shape[1:] != (size, size, 3):
    raise errors.ConfigError(
        f"{source}: expected {expected} images, got shape {tuple(images.shape)}")
  if images.shape[0] == 0:
    raise errors.ConfigError(f"{source}: got an empty batch of images")
  return images


def _check_batch_size(batch_size):
  if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise errors.ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
  return int(batch_size)


class TFLiteRunner:
  """Runs a .tflite model with the LiteRT interpreter.

  Integer inputs get `round(pixel / 255 / scale + zero_point)` with the
  model's own input scale and zero point (= pixel - 128 for the usual int8
  model); float inputs get pixel / 255. Integer outputs are dequantized.
  """

  kind = "tflite"

  def __init__(self, model, num_threads=1, name=None, reference_kernels=False):
    """`model` is a .tflite path or the model bytes.

    `reference_kernels` runs LiteRT's reference kernels (BUILTIN_REF, no XNNPACK
    delegate): slower, but the same results on every CPU.
    Raises ModelError naming the file when it is missing, empty, truncated,
    not a TFLite flatbuffer, or its input is not an RGB image tensor.
    """
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
    from ai_edge_litert.interpreter import OpResolverType  # pylint: disable=g-import-not-at-top

    if isinstance(model, (str, os.PathLike)):
      self.path = os.fspath(model)
      self.source = self.path
      self.content = flatbuffer.read_file(self.path)
    else:
      self.path = None
      self.source = name or "<tflite bytes>"
      flatbuffer.check_identifier(model, self.source)
      self.content = bytes(model)
    self.name = name or (os.path.basename(self.path) if self.path else self.source)
    self.graph = flatbuffer.parse(self.content, self.source)
    tensor = flatbuffer.check_image_input(self.graph, self.source)
    if len(self.graph.outputs) != 1:
      raise errors.ModelError(
          f"{self.source}: expected one output (class probabilities), got "
          f"{len(self.graph.outputs)}")
    self.input_size = int(tensor.shape[1])
    if tensor.shape[2] != self.input_size:
      raise errors.ModelError(f"{self.source}: input is not square: {tensor.shape}")
    self.num_threads = int(num_threads)
    if self.num_threads < 1:
      raise errors.ConfigError(f"num_threads must be >= 1, got {num_threads}")
    try:
      resolver = {"experimental_op_resolver_type": OpResolverType.BUILTIN_REF} \
          if reference_kernels else {}
      self._interpreter = Interpreter(model_content=self.content, num_threads=self.num_threads,
                                      **resolver)
      self._interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
      raise errors.ModelError(f"{self.source}: the interpreter cannot load the model: {e}") from e
    self._input = self._interpreter.get_input_details()[0]
    self._output = self._interpreter.get_output_details()[0]
    self.input_dtype = np.dtype(self._input["dtype"])
    self.input_scale, self.input_zero_point = self._input["quantization"]
    self.output_dtype = np.dtype(self._output["dtype"])
    self.output_scale, self.output_zero_point = self._output["quantization"]
    if self.input_dtype.kind in "iu" and not self.input_scale:
      raise errors.ModelError(f"{self.source}: integer input without quantization parameters")
    self.dynamic_batch = int(self._input["shape_signature"][0]) == -1
    self._batch = 1

  @property
  def size_bytes(self):
    return len(self.content)

  def prepare(self, images):
    """uint8 images [N, S, S, 3] -> the model's input array (float or quantized)."""
    images = check_images(images, self.input_size, self.source)
    if self.input_dtype == np.float32:
      return images.astype(np.float32) / np.float32(255.0)
    info = np.iinfo(self.input_dtype)
    values = np.rint(images.astype(np.float64) / 255.0 / self.input_scale
                     + self.input_zero_point)
    return np.clip(values, info.min, info.max).astype(self.input_dtype)

  def _resize(self, batch):
    if batch != self._batch:
      index = self._input["index"]
      self._interpreter.resize_tensor_input(index, [batch, self.input_size, self.input_size, 3],
                                            strict=True)
      self._interpreter.allocate_tensors()
      self._batch = batch

  def run(self, prepared):
    """Runs one prepared batch; returns the raw output (not dequantized)."""
    self._resize(len(prepared))
    self._interpreter.set_tensor(self._input["index"], prepared)
    self._interpreter.invoke()
    return self._interpreter.get_tensor(self._output["index"])

  def postprocess(self, raw):
    """Raw output -> float32 probabilities."""
    if self.output_dtype.kind in "iu" and self.output_scale:
      return ((raw.astype(np.float32) - np.float32(self.output_zero_point))
              * np.float32(self.output_scale))
    return raw.astype(np.float32)

  def predict(self, images, batch_size=DEFAULT_BATCH_SIZE):
    """uint8 images [N, S, S, 3] -> float32 probabilities [N, num_classes].

    Runs batches of `batch_size` (1 for a model with a fixed batch of 1).
    """
    batch_size = _check_batch_size(batch_size) if self.dynamic_batch else 1
    prepared = self.prepare(images)
    outputs = []
    for start in range(0, len(prepared), batch_size):
      outputs.append(self.postprocess(self.run(prepared[start:start + batch_size])))
    return np.concatenate(outputs, axis=0)


class KerasRunner:
  """Runs a Keras model (object or .keras path) on uint8 images.

  The timed call is a `tf.function` of `model(x, training=False)`, traced
  once per batch size, so latency excludes Python-level Keras overhead.
  """

  kind = "keras"

  def __init__(self, model, name=None):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from tf_gtsrb.models import io as model_io  # pylint: disable=g-import-not-at-top

    if isinstance(model, (str, os.PathLike)):
      self.path = os.fspath(model)
      self.source = self.path
      self.model = model_io.load_model(self.path)
    else:
      self.path = None
      self.model = model
      self.source = name or getattr(model, "name", "<keras model>")
    self.name = name or (os.path.basename(self.path) if self.path else self.source)
    self.input_size = model_io.check_classifier(self.model, self.source)
    self._call = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)

  @property
  def size_bytes(self):
    return os.path.getsize(self.path) if self.path else None

  def prepare(self, images):
    images = check_images(images, self.input_size, self.source)
    return images.astype(np.float32) / np.float32(255.0)

  def run(self, prepared):
    """Runs one prepared batch; returns the output as a numpy array."""
    return self._call(prepared).numpy()

  def postprocess(self, raw):
    return np.asarray(raw, dtype=np.float32)

  def predict(self, images, batch_size=DEFAULT_BATCH_SIZE):
    """uint8 images [N, S, S, 3] -> float32 probabilities [N, num_classes]."""
    batch_size = _check_batch_size(batch_size)
    prepared = self.prepare(images)
    outputs = []
    for start in range(0, len(prepared), batch_size):
      outputs.append(self.postprocess(self.run(prepared[start:start + batch_size])))
    return np.concatenate(outputs, axis=0)


def load_runner(model, num_threads=1, name=None):
  """A runner for a .tflite/.keras path, TFLite bytes or a Keras model.

  Unknown file extensions raise ConfigError. `num_threads` applies to TFLite;
  a Keras model uses TensorFlow's thread settings (see `set_tf_threads`).
  """
  if isinstance(model, (bytes, bytearray)):
    return TFLiteRunner(model, num_threads=num_threads, name=name)
  if isinstance(model, (str, os.PathLike)):
    path = os.fspath(model)
    if path.endswith(".tflite"):
      return TFLiteRunner(path, num_threads=num_threads, name=name)
    if path.endswith(".keras"):
      return KerasRunner(path, name=name)
    raise errors.ConfigError(f"{path}: model files must end in .tflite or .keras")
  if hasattr(model, "predict") and hasattr(model, "inputs"):
    return KerasRunner(model, name=name)
  raise errors.ConfigError(f"cannot run a model given as {type(model).__name__}")


def set_tf_threads(num_threads):
  """Limits TensorFlow's intra/inter-op threads (call before TF runs anything)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.config.threading.set_intra_op_parallelism_threads(int(num_threads))
    tf.config.threading.set_inter_op_parallelism_threads(int(num_threads))
  except RuntimeError:  # TF already initialized: keep its settings.
    return False
  return True

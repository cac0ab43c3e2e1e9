"""Model complexity: parameter counts, multiply-accumulates (MACs), file sizes.

MACs are counted analytically from layer shapes, per image, for the layers that
do nearly all the arithmetic: convolutions (Conv1D/2D/3D, grouped,
depthwise, separable, transposed) and Dense. BatchNormalization, pooling,
activations, softmax and element-wise layers are not counted, nor are biases.
Layers wrapped for pruning (PruneLowMagnitude), quantization-aware training
(QuantizeWrapperV2) or clustering are counted through the layer they wrap, so a
compressed model reports the MACs of the dense model it came from (pruning
makes weights zero, it does not remove them). Nested models are walked
recursively; a layer shared by several calls is counted once.
"""

import gzip
import math
import os

from tf_gtsrb import errors
from tf_gtsrb.keras import keras

_L = keras.layers
_SEPARABLE = tuple(c for c in (getattr(_L, "SeparableConv1D", None), _L.SeparableConv2D) if c)
_TRANSPOSED = tuple(c for c in (getattr(_L, "Conv1DTranspose", None), _L.Conv2DTranspose,
                                _L.Conv3DTranspose) if c)
_CONV = tuple(c for c in (_L.Conv1D, _L.Conv2D, _L.Conv3D, getattr(_L, "DepthwiseConv1D", None),
                          _L.DepthwiseConv2D) if c)


def count_params(model):
  """Returns {'trainable', 'non_trainable', 'total'} weight counts of `model`.

  Counts what Keras holds: for a pruned model the non-trainable count includes
  the pruning masks and thresholds, for a QAT model the quantizer ranges.
  """
  trainable = _count(model.trainable_weights)
  non_trainable = _count(model.non_trainable_weights)
  return {"trainable": trainable, "non_trainable": non_trainable,
          "total": trainable + non_trainable}


def _count(weights):
  return int(sum(math.prod(int(d) for d in w.shape) for w in weights))


def unwrap(layer):
  """Returns the layer inside pruning/QAT/clustering wrappers (or `layer` itself)."""
  while isinstance(getattr(layer, "layer", None), keras.layers.Layer):
    layer = layer.layer
  return layer


def per_layer_macs(model):
  """Returns [(layer_name, macs_per_image)] for every conv/dense layer, in order.

  Names are those of the wrapped layers ('conv1', not 'prune_low_magnitude_conv1'),
  prefixed with 'outer_model/' for layers of nested models.
  """
  if not isinstance(model, keras.Model):
    raise errors.ModelError(f"expected a Keras model, got {type(model).__name__}")
  rows = []
  _collect(model, "", rows)
  return rows


def count_macs(model):
  """Returns the multiply-accumulates needed for one image (conv + dense only)."""
  return int(sum(macs for _, macs in per_layer_macs(model)))


def _collect(model, prefix, rows):
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      _collect(layer, f"{prefix}{layer.name}/", rows)
      continue
    core = unwrap(layer)
    if isinstance(core, keras.Model):
      _collect(core, f"{prefix}{core.name}/", rows)
      continue
    macs = _layer_macs(layer, core)
    if macs is not None:
      rows.append((prefix + core.name, macs))


def _layer_macs(outer, core):
  """MACs of `core` (possibly inside wrapper `outer`), or None if not counted."""
  if isinstance(core, _SEPARABLE):
    spatial = _spatial(_shape(outer, "output"), core)
    return spatial * (_size(core, "depthwise_kernel") + _size(core, "pointwise_kernel"))
  if isinstance(core, _TRANSPOSED):
    return _spatial(_shape(outer, "input"), core) * _size(core, "kernel")
  if isinstance(core, _CONV):
    name = "depthwise_kernel" if hasattr(core, "depthwise_kernel") else "kernel"
    return _spatial(_shape(outer, "output"), core) * _size(core, name)
  if isinstance(core, keras.layers.Dense):
    positions = math.prod(_shape(outer, "output")[1:-1])
    return positions * _size(core, "kernel")
  return None


def _shape(layer, which):
  """The input or output shape of `layer`'s first call, as a tuple."""
  try:
    getter = layer.get_output_shape_at if which == "output" else layer.get_input_shape_at
    shape = getter(0)
  except (AttributeError, RuntimeError, ValueError) as e:
    raise errors.ModelError(
        f"layer {layer.name!r}: {which} shape unknown; build the model on a fixed "
        f"input shape first ({e})") from e
  if isinstance(shape, list):
    shape = shape[0]
  shape = tuple(shape)
  if any(d is None for d in shape[1:]):
    raise errors.ModelError(
        f"layer {layer.name!r}: {which} shape {shape} has unknown dimensions; MACs need a "
        "fixed input size")
  return shape


def _spatial(shape, core):
  dims = shape[2:] if getattr(core, "data_format", None) == "channels_first" else shape[1:-1]
  return math.prod(dims)


def _size(core, attribute):
  weight = getattr(core, attribute, None)
  if weight is None:
    raise errors.ModelError(f"layer {core.name!r} has no {attribute}; is the model built?")
  return math.prod(int(d) for d in weight.shape)


def model_file_size(path):
  """Returns the size of a model file in bytes; a missing file raises ModelError."""
  try:
    return os.path.getsize(path)
  except OSError as e:
    raise errors.ModelError(f"{path}: cannot read model file: {e.strerror or e}") from e


def gzip_size(path):
  """Returns the size in bytes of `path` compressed with gzip level 9 (in memory).

  A proxy for how much of a model is redundant (pruned weights compress well).
  """
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise errors.ModelError(f"{path}: cannot read model file: {e.strerror or e}") from e
  return len(gzip.compress(data, compresslevel=9, mtime=0))


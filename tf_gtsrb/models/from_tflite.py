"""TrafficSignCNN Keras models rebuilt from their float32 or full-INT8 TFLite exports.

The converter folds each BatchNormalization into the convolution before it, so
a float flatbuffer holds folded kernels and biases. `load` writes them back
into a fresh TrafficSignCNN whose BatchNorm layers compute exactly the folded
function at inference, so the rebuilt model predicts what the flatbuffer
predicts. That is all a distillation teacher needs. A model that will be
trained further also needs BatchNorm statistics of its own: given training
images, each BatchNorm gets the mean and variance its convolution produces on
them (gamma and beta chosen so that inference is still the folded function).
An INT8 export's kernels and biases are dequantized (value = scale * (q - zero
point), per output channel), so the rebuilt float model computes what the INT8
model approximates: a start for further float training (magnitude pruning,
clustering, QAT) of a released INT8 model whose Keras model is not at hand.
"""

import numpy as np
from ai_edge_litert import interpreter as litert

from tf_gtsrb import errors
from tf_gtsrb.models import flatbuffer
from tf_gtsrb.models import traffic_sign_cnn

# Training images a rebuilt model that will be trained further measures its BatchNorm
# statistics on (enough for stable per-channel means and variances).
STATISTICS_IMAGES = 4096


def folded_weights(path):
  """{'conv1': (kernel HWIO, bias), ..., 'logits': (kernel, bias), 'input_size': S}.

  Reads the float or INT8 flatbuffer at `path` by its operators, in execution
  order: the TrafficSignCNN's four CONV_2D and one FULLY_CONNECTED (INT8
  weights dequantized). Raises ModelError naming the file when it is not a
  TrafficSignCNN export.
  """
  data = flatbuffer.read_file(path)
  graph = flatbuffer.parse(data, path)
  convs = [op for op in graph.operators if op.name == "CONV_2D"]
  denses = [op for op in graph.operators if op.name == "FULLY_CONNECTED"]
  weight_types = {graph.tensors[op.inputs[1]].dtype for op in convs + denses}
  if len(convs) != traffic_sign_cnn.NUM_BLOCKS or len(denses) != 1 \
      or weight_types not in ({"float32"}, {"int8"}):
    raise errors.ModelError(
        f"{path}: not a TrafficSignCNN export: expected {traffic_sign_cnn.NUM_BLOCKS} "
        f"CONV_2D and 1 FULLY_CONNECTED with float32 or int8 weights, found {len(convs)} "
        f"CONV_2D and {len(denses)} FULLY_CONNECTED with {sorted(weight_types)} weights")
  interpreter = litert.Interpreter(model_content=data)
  interpreter.allocate_tensors()

  def dequantized(index):
    values = interpreter.get_tensor(index)
    tensor = graph.tensors[index]
    if tensor.is_float or not tensor.scale:
      return values.astype(np.float32)
    scale = np.asarray(tensor.scale, np.float64)
    zero_point = np.asarray(tensor.zero_point, np.float64)
    if scale.size > 1:  # Per output channel: axis 0 of OHWI kernels, [out, in] and biases.
      shape = (-1,) + (1,) * (values.ndim - 1)
      scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    return ((values - zero_point) * scale).astype(np.float32)

  def kernel_and_bias(op):
    kernel = dequantized(op.inputs[1])
    bias_index = op.inputs[2] if len(op.inputs) > 2 else -1
    bias = dequantized(bias_index) if bias_index >= 0 else np.zeros(
        kernel.shape[0], np.float32)
    return kernel, bias

  weights = {}
  for i, op in enumerate(convs, start=1):
    kernel, bias = kernel_and_bias(op)  # Kernel OHWI.
    weights[f"conv{i}"] = (kernel.transpose(1, 2, 3, 0), bias)
  kernel, bias = kernel_and_bias(denses[0])  # Kernel [out, in].
  weights["logits"] = (kernel.T, bias)
  weights["input_size"] = graph.tensors[graph.inputs[0]].shape[1]
  return weights


def rebuild(weights, images=None):
  """A TrafficSignCNN computing the folded function in `weights` (`folded_weights`).

  With `images` (float, pixel / 255), each BatchNorm's moving statistics are
  those its convolution produces on them; without, mean 0 and variance 1.
  """
  channels = [weights[f"conv{i}"][0].shape[-1] for i in range(1, traffic_sign_cnn.NUM_BLOCKS + 1)]
  model = traffic_sign_cnn.build(channels, input_size=int(weights["input_size"]),
                                 num_classes=weights["logits"][1].shape[0])
  x = images
  for i in range(1, traffic_sign_cnn.NUM_BLOCKS + 1):
    kernel, bias = weights[f"conv{i}"]
    model.get_layer(f"conv{i}").set_weights([kernel])
    bn = model.get_layer(f"bn{i}")
    if x is None:
      mean, variance = np.zeros_like(bias), np.ones_like(bias)
    else:
      conv_out = model.get_layer(f"conv{i}")(x).numpy()
      mean, variance = conv_out.mean(axis=(0, 1, 2)), conv_out.var(axis=(0, 1, 2))
    # gamma * (y - mean) / sqrt(variance + eps) + beta == y + bias.
    bn.set_weights([np.sqrt(variance + bn.epsilon), mean + bias, mean, variance])
    if x is not None:
      x = model.get_layer(f"pool{i}")(model.get_layer(f"relu{i}")(bn(conv_out)))
  model.get_layer("logits").set_weights(list(weights["logits"]))
  return model


def load(path, images=None):
  """The TrafficSignCNN in the float or INT8 flatbuffer at `path` (see `rebuild` for `images`)."""
  return rebuild(folded_weights(path), images)


def load_for_training(path, data_dir):
  """`load` with BatchNorm statistics measured on the first STATISTICS_IMAGES training
  images of the prepared dataset in `data_dir`."""
  from tf_gtsrb.data import input_pipeline  # pylint: disable=g-import-not-at-top
  images, _ = input_pipeline.load_arrays(data_dir, "train", limit=STATISTICS_IMAGES)
  return load(path, input_pipeline.to_float(images))

"""Rebuilds a trained TrafficSignCNN .keras model from its float32 TFLite export.

The converter folds each BatchNormalization into the convolution before it, so
the flatbuffer holds folded kernels and biases. This writes them into a fresh
TrafficSignCNN and gives each BatchNormalization the statistics its folded
convolution actually produces on training images (moving mean and variance),
with gamma and beta chosen so that inference computes exactly the folded
function: the rebuilt model predicts what the flatbuffer predicts, and trains
like a model whose BatchNorm statistics are its own. It prints the largest
difference between the two models' probabilities on validation images and the
rebuilt model's validation accuracy (test accuracy is not read).

  python results/experiments/baseline_from_tflite.py MODEL.tflite DATA_DIR OUTPUT.keras
"""

import sys

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import numpy as np
from ai_edge_litert import interpreter as litert

from tf_gtsrb.data import input_pipeline
from tf_gtsrb.evaluation import evaluate
from tf_gtsrb.models import io as model_io
from tf_gtsrb.models import traffic_sign_cnn

STATISTICS_IMAGES = 4096  # Training images the BatchNorm statistics are measured on.
CHECK_IMAGES = 512  # Validation images the two models are compared on.


def folded_weights(path):
  """{'conv1': (kernel HWIO, bias), ..., 'logits': (kernel, bias)} from the flatbuffer."""
  interpreter = litert.Interpreter(model_path=path)
  interpreter.allocate_tensors()
  tensors = {}
  for detail in interpreter.get_tensor_details():
    tensors.setdefault(detail["name"], []).append(detail)

  def constant(name_part, rank):
    """The rank-`rank` tensor whose name holds `name_part` (a kernel's name ends in it;
    activations and biases carry the fused ops' names)."""
    found = [d for name, details in tensors.items() for d in details
             if len(d["shape"]) == rank
             and (name.endswith(name_part) if rank > 1 else name_part in name)]
    if len(found) != 1:
      raise ValueError(f"{path}: expected one rank-{rank} tensor named *{name_part}*, "
                       f"found {len(found)}")
    return interpreter.get_tensor(found[0]["index"])

  weights = {}
  for i in range(1, traffic_sign_cnn.NUM_BLOCKS + 1):
    kernel = constant(f"conv{i}/Conv2D", 4)  # OHWI
    weights[f"conv{i}"] = (kernel.transpose(1, 2, 3, 0), constant(f"bn{i}/FusedBatchNormV3", 1))
  weights["logits"] = (constant("logits/MatMul", 2).T, constant("logits/BiasAdd", 1))
  return weights


def rebuild(weights, train_images):
  """A TrafficSignCNN computing the folded function, with measured BatchNorm statistics."""
  channels = [weights[f"conv{i}"][0].shape[-1] for i in range(1, traffic_sign_cnn.NUM_BLOCKS + 1)]
  model = traffic_sign_cnn.build(channels, input_size=train_images.shape[1])
  x = train_images
  for i in range(1, traffic_sign_cnn.NUM_BLOCKS + 1):
    kernel, bias = weights[f"conv{i}"]
    model.get_layer(f"conv{i}").set_weights([kernel])
    bn = model.get_layer(f"bn{i}")
    conv_out = model.get_layer(f"conv{i}")(x).numpy()
    mean, variance = conv_out.mean(axis=(0, 1, 2)), conv_out.var(axis=(0, 1, 2))
    # gamma * (y - mean) / sqrt(variance + eps) + beta == y + bias.
    gamma = np.sqrt(variance + bn.epsilon)
    bn.set_weights([gamma, mean + bias, mean, variance])
    x = model.get_layer(f"pool{i}")(model.get_layer(f"relu{i}")(bn(conv_out)))
  model.get_layer("logits").set_weights(list(weights["logits"]))
  return model


def tflite_probabilities(path, images):
  interpreter = litert.Interpreter(model_path=path)
  interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], images.shape)
  interpreter.allocate_tensors()
  interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images)
  interpreter.invoke()
  return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def main(tflite_path, data_dir, output_path):
  train_images, _ = input_pipeline.load_arrays(data_dir, "train", limit=STATISTICS_IMAGES)
  model = rebuild(folded_weights(tflite_path),
                  input_pipeline.to_float(train_images))
  val_images, _ = input_pipeline.load_arrays(data_dir, "validation", limit=CHECK_IMAGES)
  val_images = input_pipeline.to_float(val_images)
  difference = np.abs(model.predict(val_images, verbose=0)
                      - tflite_probabilities(tflite_path, val_images)).max()
  print(f"largest probability difference, Keras vs {tflite_path}, {len(val_images)} "
        f"validation images: {difference:.2e}")
  if difference > 1e-3:
    raise SystemExit(f"{tflite_path}: the rebuilt model does not match the flatbuffer")
  accuracy = evaluate.evaluate_keras_model(model, data_dir, "validation", 256)
  print(f"validation accuracy of the rebuilt model: {100 * accuracy['metrics']['accuracy']:.2f}%")
  model_io.save_model(model, output_path)
  print(f"wrote {output_path}")


if __name__ == "__main__":
  if len(sys.argv) != 4:
    sys.exit(__doc__)
  main(*sys.argv[1:])

"""Rebuilds a trained TrafficSignCNN .keras model from its float32 TFLite export.

`tf_gtsrb.models.from_tflite` writes the flatbuffer's folded kernels and
biases into a fresh TrafficSignCNN and gives each BatchNormalization the
statistics its folded convolution produces on training images, so the rebuilt
model predicts what the flatbuffer predicts and trains like a model whose
BatchNorm statistics are its own (what --baseline_model needs). It prints the largest
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
from tf_gtsrb.models import from_tflite
from tf_gtsrb.models import io as model_io

CHECK_IMAGES = 512  # Validation images the two models are compared on.


def tflite_probabilities(path, images):
  interpreter = litert.Interpreter(model_path=path)
  interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], images.shape)
  interpreter.allocate_tensors()
  interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images)
  interpreter.invoke()
  return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def main(tflite_path, data_dir, output_path):
  model = from_tflite.load_for_training(tflite_path, data_dir)
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

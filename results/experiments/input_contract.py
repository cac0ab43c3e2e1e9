"""Accuracy of a released INT8 model on the bundled sample's official test images (430, 32x32)
fed as its input contract says (int8 = pixel - 128, RGB), and fed wrongly (BGR; no -128 shift),
through the LiteRT interpreter: how much the documented preprocessing matters.

  python results/experiments/input_contract.py models/traffic_sign_cnn_pruned_int8.tflite
"""

import sys
import tempfile

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import numpy as np
from ai_edge_litert import interpreter as litert

from tf_gtsrb.data import input_pipeline
from tf_gtsrb.data import prepare

FEEDS = {
    "contract: RGB, pixel - 128": lambda p: (p.astype(np.int16) - 128).astype(np.int8),
    "BGR, pixel - 128": lambda p: (p[..., ::-1].astype(np.int16) - 128).astype(np.int8),
    "RGB, no shift": lambda p: p.astype(np.int8),
}


def main(model_path):
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = prepare.prepare_dataset(tmp, source="official", balance_target=0)["dataset_dir"]
    images, labels = input_pipeline.load_arrays(data_dir, "test")
  runner = litert.Interpreter(model_path=model_path, num_threads=1)
  runner.allocate_tensors()
  (image,), (scores,) = runner.get_input_details(), runner.get_output_details()
  for name, feed in FEEDS.items():
    predicted = []
    for pixels in images:
      runner.set_tensor(image["index"], feed(pixels)[None])
      runner.invoke()
      predicted.append(int(np.argmax(runner.get_tensor(scores["index"])[0])))
    print(f"{name}: {100 * np.mean(np.array(predicted) == labels):.1f}% of {len(labels)}")


if __name__ == "__main__":
  main(sys.argv[1])

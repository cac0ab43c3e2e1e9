"""The released INT8 model on the official test set under three runtimes.

LiteRT with its default XNNPACK delegate, LiteRT's reference kernels, and TFLite
Micro (the tflite-micro Python interpreter, arena from the released header):
accuracy of each and how often their argmax and raw int8 outputs agree.

  python results/experiments/runtimes.py runs/gtsrb   # a prepared dataset dir
"""

import os
import sys
import time

import numpy as np

from tf_gtsrb.models import runners
from tf_gtsrb.data import input_pipeline
from tf_gtsrb.export import micro

MODELS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "models")
INT8 = os.path.join(MODELS, "traffic_sign_cnn_pruned_int8.tflite")


def main(data_dir):
  images, labels = input_pipeline.load_arrays(data_dir, "test")
  with open(INT8, "rb") as f:
    content = f.read()
  raw = {}
  for name, reference in (("litert_xnnpack", False), ("litert_reference", True)):
    runner = runners.TFLiteRunner(content, reference_kernels=reference)
    raw[name] = np.concatenate([runner.run(runner.prepare(images[i:i + 1]))
                                for i in range(len(images))])
  arena = micro.tensor_arena(content)
  interpreter = micro.micro_interpreter(content, arena["bytes"], INT8)
  start = time.time()
  outputs = []
  for image in images:
    interpreter.set_input((image.astype(np.int16) - 128).astype(np.int8)[None], 0)
    interpreter.invoke()
    outputs.append(interpreter.get_output(0).copy())
  raw["tflm"] = np.concatenate(outputs)
  print(f"{len(labels)} test images; TFLite Micro arena measured {arena['measured_bytes']} "
        f"bytes, header {arena['bytes']}; TFLM {1000 * (time.time() - start) / len(labels):.2f} "
        "ms/image")
  for name, out in raw.items():
    correct = int(np.sum(out.reshape(len(labels), -1).argmax(1) == labels))
    print(f"{name}: {correct}/{len(labels)} = {100 * correct / len(labels):.2f}%")
  for a, b in (("tflm", "litert_reference"), ("tflm", "litert_xnnpack")):
    same_class = np.mean(raw[a].reshape(len(labels), -1).argmax(1)
                         == raw[b].reshape(len(labels), -1).argmax(1))
    same_raw = np.mean(np.all(raw[a].reshape(len(labels), -1)
                              == raw[b].reshape(len(labels), -1), axis=1))
    print(f"{a} vs {b}: same class {100 * same_class:.2f}%, identical int8 outputs "
          f"{100 * same_raw:.2f}% of images")


if __name__ == "__main__":
  main(sys.argv[1])

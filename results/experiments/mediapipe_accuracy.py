"""Scores a released model through MediaPipe Tasks' ImageClassifier on the official test images.

The images are decoded from the official test archive's files (PIL), handed to
MediaPipe as SRGB images; MediaPipe resizes and normalizes them from the model's
TFLite metadata. Prints the accuracy beside LiteRT's on the same images.

  python results/experiments/mediapipe_accuracy.py ../shared/gtsrb models/traffic_sign_cnn_float32.tflite
"""

import csv
import io
import os
import sys
import zipfile

import mediapipe as mp
from mediapipe.tasks.python import vision
from mediapipe.tasks.python.core.base_options import BaseOptions
import numpy as np
from PIL import Image

from tf_gtsrb.models import runners


def main(archive_dir, model_path):
  with zipfile.ZipFile(os.path.join(archive_dir, "GTSRB_Final_Test_GT.zip")) as z:
    rows = list(csv.DictReader(io.TextIOWrapper(z.open("GT-final_test.csv")), delimiter=";"))
  labels = np.array([int(r["ClassId"]) for r in rows])
  images = []
  with zipfile.ZipFile(os.path.join(archive_dir, "GTSRB_Final_Test_Images.zip")) as z:
    for r in rows:
      data = z.read(f"GTSRB/Final_Test/Images/{r['Filename']}")
      images.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
  options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model_path),
                                          max_results=1)
  classifier = vision.ImageClassifier.create_from_options(options)
  predicted = np.array([
      classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=image))
      .classifications[0].categories[0].index for image in images])
  classifier.close()
  litert = runners.TFLiteRunner(model_path).predict(np.stack(images)).argmax(1)
  for name, pred in (("mediapipe", predicted), ("litert", litert)):
    correct = int(np.sum(pred == labels))
    print(f"{name}: {correct}/{len(labels)} = {100 * correct / len(labels):.2f}%")
  print(f"same class: {100 * np.mean(predicted == litert):.2f}% of images")


if __name__ == "__main__":
  main(*sys.argv[1:3])

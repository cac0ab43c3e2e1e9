"""How far a pruned model is from its distillation teacher: the mean KL divergence
(teacher || student, nats per image, temperature 1) on augmented training batches, clean and
mixed as `--distill_mixup=1.0` mixes them, the student in training mode as it learns.

  python results/experiments/distill_gap.py DATASET_DIR STUDENT.keras TEACHER[,TEACHER...]
"""

import sys

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import numpy as np
import tensorflow as tf

from tf_gtsrb.data import input_pipeline
from tf_gtsrb.models import ensemble
from tf_gtsrb.models import io as model_io
from tf_gtsrb.training import distill

BATCHES = 20


def main(dataset_dir, student_path, teacher_spec):
  student = model_io.load_model(student_path)
  teacher = ensemble.load_teacher(teacher_spec)
  gap = distill.Distiller(student, teacher, temperature=1.0).distillation_loss
  rng = tf.random.Generator.from_seed(1)
  clean, mixed = [], []
  for images, labels in input_pipeline.train_dataset(dataset_dir, 128, seed=0).take(BATCHES):
    clean.append(float(gap(teacher(images, training=False), student(images, training=True))))
    blends, _, _ = distill.mix(images, labels, 1.0, rng)
    mixed.append(float(gap(teacher(blends, training=False), student(blends, training=True))))
  print(f"{BATCHES} batches of 128 augmented training images")
  print(f"KL(teacher || student), clean: {np.mean(clean):.3f} nats per image")
  print(f"KL(teacher || student), mixed: {np.mean(mixed):.3f} nats per image")


if __name__ == "__main__":
  main(*sys.argv[1:4])

"""Magnitude pruning (+ optional clustering) and prune/cluster-preserving QAT of the released
INT8 model, rebuilt as a float Keras model from its dequantized weights; scored as full INT8
by LiteRT on the validation and test splits.

  python results/experiments/sparse_release.py DATASET_DIR OUT_DIR SPARSITY CLUSTERS \
      PRUNE_EPOCHS QAT_EPOCHS [train|train+validation] [TEACHERS]

CLUSTERS 0: no clustering. TEACHERS (comma-separated .keras / float32 .tflite baselines):
every fine-tune also learns from their mean prediction, on mixup blends (as the pipeline's
sparsify step does with --distill_pruning --distill_mixup=1); the clustering then runs
PRUNE_EPOCHS // 3 epochs instead of one. Writes OUT_DIR/model_int8.tflite and
OUT_DIR/result.json.
"""

import json
import os
import sys

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

from tf_gtsrb.models import runners
from tf_gtsrb.compression import clustering
from tf_gtsrb.compression import magnitude_pruning
from tf_gtsrb.compression import quantization
from tf_gtsrb.data import input_pipeline
from tf_gtsrb.export import export
from tf_gtsrb.models import ensemble
from tf_gtsrb.models import from_tflite
from tf_gtsrb.training import compile as compile_lib

RELEASED = "models/traffic_sign_cnn_pruned_int8.tflite"
BATCH = 128
PRUNE_LR = 2e-4
CLUSTER_LR = 1e-5
QAT_LR = 5e-5


def accuracy(path, images, labels):
  return float((runners.TFLiteRunner(path).predict(images).argmax(axis=1) == labels).mean())


def main(data_dir, out_dir, target, clusters, prune_epochs, qat_epochs, split="train",
         teachers=""):
  on_validation = split == "train+validation"
  model = from_tflite.load_for_training(RELEASED, data_dir)
  train_ds, val_ds, steps = input_pipeline.fine_tune_datasets(
      data_dir, BATCH, seed=0, on_validation=on_validation)
  distillation = ({"teacher": ensemble.load_teacher(teachers), "distill_mixup": 1.0}
                  if teachers else {})
  sparse = magnitude_pruning.prune_and_fine_tune(
      model, train_ds, val_ds, target, prune_epochs, steps_per_epoch=steps,
      learning_rate=compile_lib.cosine_decay(PRUNE_LR, prune_epochs * steps), **distillation)
  if clusters:
    sparse = clustering.cluster_and_fine_tune(
        sparse, train_ds, val_ds, clusters, epochs=max(1, prune_epochs // 3) if teachers else 1,
        learning_rate=CLUSTER_LR, preserve_sparsity=True, steps_per_epoch=steps,
        **distillation)
  qat = quantization.qat_fine_tune(
      sparse, train_ds, val_ds, qat_epochs, preserve_sparsity=True,
      preserve_clusters=bool(clusters), steps_per_epoch=steps,
      learning_rate=compile_lib.cosine_decay(QAT_LR, qat_epochs * steps), **distillation)
  calibration, _ = input_pipeline.load_arrays(data_dir, "train", limit=500)
  summary = export.export_model(qat, out_dir, ["int8"], calibration, write_c_array=False)
  path = summary["models"]["int8"]["path"]
  result = {"sparsity": target, "clusters": clusters, "prune_epochs": prune_epochs,
            "qat_epochs": qat_epochs, "split": split, "teachers": teachers or None,
            "keras_sparsity": magnitude_pruning.sparsity_report(sparse)["sparsity"],
            "size_bytes": summary["models"]["int8"]["size_bytes"],
            "gzip_size_bytes": summary["models"]["int8"]["gzip_size_bytes"]}
  for name in ("validation", "test"):
    if input_pipeline.has_split(data_dir, name):
      images, labels = input_pipeline.load_arrays(data_dir, name)
      result[f"{name}_accuracy"] = accuracy(path, images, labels)
  with open(os.path.join(out_dir, "result.json"), "w") as f:
    json.dump(result, f, indent=2)
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
       int(sys.argv[6]), *sys.argv[7:])

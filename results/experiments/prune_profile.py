"""Compares channel profiles of the same parameter budget: prunes a trained baseline
to CHANNELS by filter L1 norm, fine-tunes as the pipeline does (cosine from the given
learning rate, label smoothing 0.1, batch 128, augmentation, seed 0), and prints the
validation history and the test accuracy.

  python results/experiments/prune_profile.py BASELINE.keras DATA_DIR 24/40/64/88 15 1e-3 \
      [teacher=TEACHER.keras] [dropout=RATE]

dropout=RATE replaces the dropout rate the pruned model inherits from the baseline.
"""

import sys

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from tf_gtsrb.compression import channel_pruning
from tf_gtsrb.data import input_pipeline
from tf_gtsrb.models import io as model_io
from tf_gtsrb.models import traffic_sign_cnn
from tf_gtsrb.training import compile as compile_lib


def main(baseline, data_dir, channels, epochs, learning_rate, teacher=None, dropout=None):
  model = model_io.load_model(baseline)
  channels = [int(c) for c in channels.split("/")]
  before = traffic_sign_cnn.channels_of(model)
  percentages = {f"conv{i}": 100 * (1 - after / full)
                 for i, (after, full) in enumerate(zip(channels, before), start=1)}
  pruned = channel_pruning.prune_kept(
      model, channel_pruning.select_channels(model, percentages, "l1"))
  if dropout is not None:
    pruned.get_layer("dropout").rate = float(dropout)
  print("channels", traffic_sign_cnn.channels_of(pruned), "params", pruned.count_params(),
        "dropout", pruned.get_layer("dropout").rate)
  steps = input_pipeline.steps_per_epoch(input_pipeline.split_size(data_dir, "train"), 128)
  compile_lib.fine_tune(
      pruned, input_pipeline.train_dataset(data_dir, 128, seed=0),
      input_pipeline.eval_dataset(data_dir, "validation", 512), int(epochs),
      compile_lib.cosine_decay(float(learning_rate), int(epochs) * steps), label_smoothing=0.1,
      steps_per_epoch=steps, teacher=model_io.load_model(teacher) if teacher else None)
  compile_lib.compile_model(pruned)
  _, accuracy = pruned.evaluate(input_pipeline.eval_dataset(data_dir, "test", 512), verbose=0)
  print(f"test accuracy {100 * accuracy:.2f}%")


if __name__ == "__main__":
  main(*sys.argv[1:6], **dict(arg.split("=", 1) for arg in sys.argv[6:]))

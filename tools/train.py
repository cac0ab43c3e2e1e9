"""Trains a GTSRB classifier (float baseline).

  gtsrb-train --data_dir=work/data --model_dir=work/baseline --epochs=30
  gtsrb-train --data_dir=work/data --model_dir=work/baseline --epochs=30 --resume
  gtsrb-train ... --resume --swa_epochs=15   # weight-average a finished run into swa.keras
"""

import json
import os

from absl import flags

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb.models import MODEL_NAMES
from tf_gtsrb.training import distribute
from tf_gtsrb.training import swa
from tf_gtsrb.training import trainer
from tf_gtsrb_tools import common

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "work/data", "Prepared dataset (gtsrb-prepare-data --output_dir).")
flags.DEFINE_string("model_dir", "work/baseline", "Output directory of this run.")
flags.DEFINE_enum("model", "traffic_sign_cnn", MODEL_NAMES, "Architecture.")
flags.DEFINE_list("channels", None, "TrafficSignCNN channels per block, e.g. 32,64,128,256.")
flags.DEFINE_string("model_kwargs", "{}", "Extra builder arguments as JSON, e.g. "
                    "'{\"dense_units\": 1024}'.")
flags.DEFINE_integer("epochs", 30, "Training epochs.")
flags.DEFINE_integer("batch_size", 64, "Global batch size (images).")
flags.DEFINE_float("learning_rate", 1e-3, "Peak learning rate of Adam.")
flags.DEFINE_enum("schedule", "cosine", trainer.SCHEDULES, "Learning-rate schedule.")
flags.DEFINE_float("warmup_epochs", 1.0, "Linear warm-up length for the cosine schedule (epochs).")
flags.DEFINE_float("label_smoothing", 0.1, "Label smoothing of the cross-entropy.")
flags.DEFINE_bool("augment", True,
                  "Online augmentation (rotation, shift, zoom, colour, gamma, shadow, blur).")
common.define_robust_augmentation_flags()
flags.DEFINE_integer("seed", 0, "Seed of weights init, data order and augmentation.")
flags.DEFINE_integer("early_stopping_patience", 0, "Stop after this many epochs without a "
                     "better validation accuracy; 0 never stops early.")
flags.DEFINE_integer("checkpoint_every_steps", 200, "Checkpoint interval in steps (for resume).")
flags.DEFINE_integer("steps_per_epoch", 0, "Steps per epoch; 0 is one pass over the train split.")
flags.DEFINE_integer("swa_epochs", 0, "Stochastic weight averaging after training: this many "
                     "more epochs at --swa_learning_rate, their weights averaged into "
                     "swa.keras; 0: none.")
flags.DEFINE_float("swa_learning_rate", swa.DEFAULT_LEARNING_RATE,
                   "Constant learning rate of the weight-averaging epochs.")
flags.DEFINE_enum("strategy", "default", distribute.STRATEGIES, "tf.distribute strategy.")
flags.DEFINE_bool("resume", False, "Continue the run in --model_dir from its last checkpoint.")
flags.DEFINE_bool("overwrite", False, "Start again even if --model_dir holds a previous run.")
common.define_distillation_flags()
flags.DEFINE_integer("verbose", 2, "Keras progress output: 0 silent, 1 progress bar, 2 per epoch.")


def main():
  history = trainer.train(_config(), resume=FLAGS.resume, overwrite=FLAGS.overwrite,
                          verbose=FLAGS.verbose)
  if "val_accuracy" in history:
    print(f"Best validation accuracy {max(history['val_accuracy']):.4f}; "
          f"model: {FLAGS.model_dir}/model.keras")
  else:
    print(f"No validation split: model.keras holds the last epoch; "
          f"model: {FLAGS.model_dir}/model.keras")
  if FLAGS.swa_epochs:
    averaged = io_utils.read_json(os.path.join(FLAGS.model_dir, "swa.json"))
    accuracy = averaged["average_val_accuracy"]
    print(f"Weight average of {FLAGS.swa_epochs} epochs"
          + (f": validation accuracy {accuracy:.4f}" if accuracy is not None else "")
          + f"; model: {FLAGS.model_dir}/swa.keras")


def _config():
  """The TrainConfig the flags describe."""
  common.distillation_flags()
  try:
    model_kwargs = json.loads(FLAGS.model_kwargs)
  except json.JSONDecodeError as e:
    raise errors.ConfigError(f"--model_kwargs is not valid JSON: {e}") from e
  if not isinstance(model_kwargs, dict):
    raise errors.ConfigError(f"--model_kwargs must be a JSON object, got {FLAGS.model_kwargs}")
  if FLAGS.channels:
    try:
      model_kwargs["channels"] = [int(c) for c in FLAGS.channels]
    except ValueError:
      raise errors.ConfigError(
          f"--channels must be integers, got {','.join(FLAGS.channels)}") from None
  return trainer.TrainConfig(
      data_dir=FLAGS.data_dir, model_dir=FLAGS.model_dir, model=FLAGS.model,
      model_kwargs=model_kwargs, epochs=FLAGS.epochs, batch_size=FLAGS.batch_size,
      learning_rate=FLAGS.learning_rate, schedule=FLAGS.schedule,
      warmup_epochs=FLAGS.warmup_epochs, label_smoothing=FLAGS.label_smoothing,
      augment=FLAGS.augment, erase_probability=FLAGS.erase_probability,
      noise_probability=FLAGS.noise_probability,
      sticker_probability=FLAGS.sticker_probability, jpeg_probability=FLAGS.jpeg_probability,
      seed=FLAGS.seed,
      early_stopping_patience=FLAGS.early_stopping_patience,
      checkpoint_every_steps=FLAGS.checkpoint_every_steps, strategy=FLAGS.strategy,
      steps_per_epoch=FLAGS.steps_per_epoch, teacher=FLAGS.teacher or "",
      swa_epochs=FLAGS.swa_epochs, swa_learning_rate=FLAGS.swa_learning_rate,
      **common.distillation_settings())


def run():
  common.run(main)  # The trainer locks --model_dir itself: only the chief of a multi-worker run writes there.


if __name__ == "__main__":
  run()

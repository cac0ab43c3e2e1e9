"""TensorBoard logs of fine-tuning steps: losses, accuracies and the learning rate per epoch."""

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import glob
import os

import pytest
import tensorflow as tf

from tf_gtsrb.training import compile as compile_lib
from tf_gtsrb.training import swa
import synthetic


def _scalars(log_dir):
  """{tag: [values]} of every scalar in the event files under `log_dir`."""
  found = {}
  for path in glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"), recursive=True):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag.startswith("epoch_"):  # Scalars; the graph and model are text.
          found.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
  return found


@pytest.mark.slow
def test_fine_tune_logs_loss_accuracy_and_learning_rate(cnn16, batches16, tmp_path):
  log_dir = str(tmp_path / "logs")
  compile_lib.fine_tune(cnn16, batches16, batches16, epochs=2, learning_rate=3e-4,
                        callbacks=compile_lib.training_logs(log_dir), verbose=0)
  scalars = _scalars(log_dir)
  for tag in ("epoch_loss", "epoch_accuracy"):
    assert len(scalars.get(tag, [])) == 4, (tag, sorted(scalars))  # 2 epochs, train + val.
  assert scalars["epoch_learning_rate"] == pytest.approx([3e-4, 3e-4])


@pytest.mark.slow
def test_weight_averaging_takes_the_same_logs(cnn16, batches16, tmp_path):
  log_dir = str(tmp_path / "swa_logs")
  swa.average_weights(cnn16, batches16.repeat(), batches16, epochs=1, steps_per_epoch=4,
                      learning_rate=5e-4, verbose=0,
                      callbacks=compile_lib.training_logs(log_dir))
  assert _scalars(log_dir)["epoch_learning_rate"][0] == pytest.approx(5e-4)

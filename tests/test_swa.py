"""Stochastic weight averaging: the running mean, BatchNorm recomputation, the fine-tune."""

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import numpy as np
import pytest
import tensorflow as tf

from tf_gtsrb import errors
from tf_gtsrb.data import input_pipeline
from tf_gtsrb.keras import keras
from tf_gtsrb.training import distill
from tf_gtsrb.training import swa
import synthetic


def test_epoch_average_is_the_mean_of_epoch_end_weights(cnn16):
  start = cnn16.get_weights()
  averager = swa.EpochAverage(cnn16)
  snapshots = []
  try:
    for epoch in range(3):
      cnn16.set_weights([w + epoch * 1.5 + 0.25 for w in start])
      snapshots.append(cnn16.get_weights())
      averager.on_epoch_end(epoch)
  finally:
    cnn16.set_weights(start)
  assert averager.count == 3
  for averaged, *epochs in zip(averager.average(), *snapshots):
    np.testing.assert_allclose(averaged, np.mean(epochs, axis=0), rtol=1e-6, atol=1e-6)


def test_epoch_average_before_any_epoch_is_an_error(cnn16):
  with pytest.raises(errors.ConfigError, match="nothing to average"):
    swa.EpochAverage(cnn16).average()


def _batch_norm_model():
  inputs = keras.Input((3,))
  outputs = keras.layers.BatchNormalization(momentum=0.9, name="bn")(inputs)
  return keras.Model(inputs, outputs)


def test_recompute_batch_norm_gives_the_mean_of_batch_statistics():
  model = _batch_norm_model()
  rng = np.random.default_rng(0)
  batches = [rng.normal(loc=k, scale=1 + k, size=(512, 3)).astype(np.float32) for k in range(4)]
  dataset = tf.data.Dataset.from_tensor_slices(
      (np.concatenate(batches), np.zeros(4 * 512))).batch(512)
  swa.recompute_batch_norm(model, dataset, steps=4)
  bn = model.get_layer("bn")
  np.testing.assert_allclose(bn.moving_mean.numpy(),
                             np.mean([b.mean(axis=0) for b in batches], axis=0), rtol=1e-4)
  np.testing.assert_allclose(bn.moving_variance.numpy(),
                             np.mean([b.var(axis=0) for b in batches], axis=0), rtol=5e-3)
  assert bn.momentum == 0.9  # Restored.


def test_recompute_batch_norm_with_mixup_takes_the_mixed_batches_statistics():
  rng = np.random.default_rng(0)
  images = rng.normal(loc=2.0, scale=3.0, size=(4 * 256, 3)).astype(np.float32)
  dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(4 * 256))).batch(256)
  clean, mixed = _batch_norm_model(), _batch_norm_model()
  swa.recompute_batch_norm(clean, dataset, steps=4)
  swa.recompute_batch_norm(mixed, dataset, steps=4, mixup=1.0, seed=3)
  generator = tf.random.Generator.from_seed(3)
  expected = [distill.mix(x, y, 1.0, generator)[0].numpy() for x, y in dataset]
  bn, clean_bn = mixed.get_layer("bn"), clean.get_layer("bn")
  np.testing.assert_allclose(bn.moving_mean.numpy(),
                             np.mean([b.mean(axis=0) for b in expected], axis=0), rtol=1e-4)
  np.testing.assert_allclose(bn.moving_variance.numpy(),
                             np.mean([b.var(axis=0) for b in expected], axis=0), rtol=5e-3)
  # A blend of two images varies less than either: mixed statistics are not clean ones.
  assert np.all(bn.moving_variance.numpy() < 0.9 * clean_bn.moving_variance.numpy())


@pytest.mark.parametrize("teacher, distill_mixup, mixup", [
    (True, 0.5, 0.5), (True, 0.0, 0.0), (False, None, 0.0)])
def test_average_weights_recomputes_batch_norm_as_the_fine_tune_mixed(
    tiny_data_dir, monkeypatch, teacher, distill_mixup, mixup):
  calls = []
  monkeypatch.setattr(swa, "recompute_batch_norm",
                      lambda model, batches, steps, mixup=0.0: calls.append(mixup))
  distillation = {}
  if teacher:
    distillation = {"distill_mixup": distill_mixup, "teacher": synthetic.tiny_cnn(
        input_size=32, channels=(4, 4, 8, 8), seed=1)}
  swa.average_weights(synthetic.tiny_cnn(input_size=32),
                      input_pipeline.train_dataset(tiny_data_dir, 32), None, epochs=1,
                      steps_per_epoch=2, verbose=0, **distillation)
  assert calls == [mixup]


def test_average_weights_records_and_changes_the_model(tiny_data_dir):
  model = synthetic.tiny_cnn(input_size=32)
  before = model.get_weights()
  train_ds = input_pipeline.train_dataset(tiny_data_dir, 32)
  val_ds = input_pipeline.eval_dataset(tiny_data_dir, "validation", 64)
  teacher = synthetic.tiny_cnn(input_size=32, channels=(4, 4, 8, 8), seed=1)
  record = swa.average_weights(model, train_ds, val_ds, epochs=2, steps_per_epoch=3,
                               learning_rate=1e-3, verbose=0, teacher=teacher)
  assert record["epochs"] == 2 and len(record["val_accuracy"]) == 2
  assert 0.0 <= record["average_val_accuracy"] <= 1.0
  # The student holds the average (the teacher's weights have other shapes).
  assert [w.shape for w in model.get_weights()] == [w.shape for w in before]
  assert any(not np.allclose(a, b) for a, b in zip(model.get_weights(), before))


def test_average_weights_needs_an_epoch(cnn16, batches16):
  with pytest.raises(errors.ConfigError, match=">= 1 epoch"):
    swa.average_weights(cnn16, batches16, None, epochs=0, steps_per_epoch=1)


def test_pipeline_default_learning_rate_is_the_libraries():
  from tf_gtsrb import pipeline  # pylint: disable=g-import-not-at-top
  assert pipeline.PipelineConfig().swa_learning_rate == swa.DEFAULT_LEARNING_RATE

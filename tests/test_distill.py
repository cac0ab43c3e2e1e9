"""Knowledge distillation: the loss, what it trains, and bad settings."""

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import numpy as np
import pytest
import tensorflow as tf

from tf_gtsrb import errors
from tf_gtsrb.compression import quantization
from tf_gtsrb.keras import keras
from tf_gtsrb.models import tfmot_files
from tf_gtsrb.models import traffic_sign_cnn
from tf_gtsrb.training import compile as compile_lib
from tf_gtsrb.training import distill
import synthetic


def test_distillation_loss_is_zero_for_identical_predictions_and_grows_with_difference():
  distiller = distill.Distiller(synthetic.tiny_cnn(), synthetic.tiny_cnn(seed=1), temperature=2.0)
  p = tf.constant([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
  q = tf.constant([[0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
  assert float(distiller.distillation_loss(p, p)) == pytest.approx(0.0, abs=1e-6)
  # Hand computation: softened p^(1/T) renormalised, KL summed over classes, mean over
  # the batch, times T^2.
  soft = lambda x: np.sqrt(x) / np.sqrt(x).sum(axis=1, keepdims=True)
  sp, sq = soft(p.numpy()), soft(q.numpy())
  expected = np.mean(np.sum(sp * np.log(sp / sq), axis=1)) * 4.0
  assert float(distiller.distillation_loss(p, q)) == pytest.approx(expected, rel=1e-4)


def test_fine_tune_with_teacher_trains_only_the_student(batches16):
  student, teacher = synthetic.tiny_cnn(seed=0), synthetic.tiny_cnn(seed=1)
  student_before = [w.copy() for w in student.get_weights()]
  teacher_before = [w.copy() for w in teacher.get_weights()]
  history = compile_lib.fine_tune(student, batches16, batches16, epochs=2, learning_rate=1e-2,
                                  teacher=teacher, verbose=0)
  assert set(history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
  assert any(not np.array_equal(a, b) for a, b in zip(student_before, student.get_weights()))
  for a, b in zip(teacher_before, teacher.get_weights()):
    np.testing.assert_array_equal(a, b)
  # The caller's teacher is still a trainable model (the pipeline's baseline is the
  # teacher of its pruned model and is described after the fine-tuning).
  assert teacher.trainable and len(teacher.trainable_weights) == len(student.trainable_weights)


def _still_distiller(**kwargs):
  """(a Distiller compiled at learning rate 0, so its weights stay put, and its label
  loss); the student has no dropout, so a training call is the one fit makes."""
  keras.utils.set_random_seed(0)
  student = traffic_sign_cnn.build(channels=(4, 8, 8, 16), input_size=synthetic.TINY_SIZE,
                                   dropout=0.0)
  distiller = distill.Distiller(student, synthetic.tiny_cnn(seed=1), temperature=2.0,
                                alpha=0.3, **kwargs)
  compile_lib.compile_model(distiller, 0.0, label_smoothing=0.1)
  return distiller, compile_lib.SparseSmoothedCrossentropy(0.1)


def test_logged_loss_is_the_objective_and_val_loss_the_label_loss(batches16):
  images, labels = next(iter(batches16))
  one_batch = tf.data.Dataset.from_tensors((images, labels))
  distiller, label_loss = _still_distiller()
  student, teacher = distiller.student, distiller.teacher
  training_outputs = student(images, training=True)
  objective = (0.3 * float(label_loss(labels, training_outputs))
               + 0.7 * float(distiller.distillation_loss(teacher(images), training_outputs)))
  history = distiller.fit(one_batch, validation_data=one_batch, epochs=1, verbose=0).history
  assert history["loss"][0] == pytest.approx(objective, rel=1e-4)
  assert history["val_loss"][0] == pytest.approx(
      float(label_loss(labels, student(images, training=False))), rel=1e-4)


def test_both_views_learn_against_the_teachers_targets_on_the_clean_view(batches16):
  noisy, labels = next(iter(batches16))
  clean = noisy * 0.5
  pair = tf.data.Dataset.from_tensors(((noisy, clean), labels))
  distiller, label_loss = _still_distiller(both_views=True)
  student, teacher = distiller.student, distiller.teacher
  outputs = student(tf.concat([noisy, clean], axis=0), training=True)
  targets = tf.concat([teacher(clean)] * 2, axis=0)
  objective = (0.3 * float(label_loss(tf.concat([labels] * 2, axis=0), outputs))
               + 0.7 * float(distiller.distillation_loss(targets, outputs)))
  history = distiller.fit(pair, epochs=1, verbose=0).history
  assert history["loss"][0] == pytest.approx(objective, rel=1e-4)
  # The logged accuracy is the student's on its own (noisy) view.
  own_view = np.mean(outputs[:16].numpy().argmax(axis=1) == labels.numpy())
  assert history["accuracy"][0] == pytest.approx(own_view)


def test_student_learns_the_teachers_answers(batches16):
  """With alpha=0 the labels are ignored: the student's predictions move towards the
  teacher's."""
  images = np.concatenate([x for x, _ in batches16])
  student, teacher = synthetic.tiny_cnn(seed=0), synthetic.tiny_cnn(seed=1)
  logits = teacher.get_layer("logits")
  logits.set_weights([w * 20 for w in logits.get_weights()])  # Confident, image-dependent.
  distiller = distill.Distiller(student, teacher, temperature=1.0, alpha=0.0)
  gap = lambda: float(distiller.distillation_loss(teacher(images), student(images)))
  gap_before = gap()
  compile_lib.fine_tune(student, batches16.repeat(), batches16, epochs=5, learning_rate=1e-2,
                        steps_per_epoch=8, teacher=teacher, distill_temperature=1.0,
                        distill_alpha=0.0, verbose=0)
  assert gap() < gap_before / 2


def test_quantization_aware_student(batches16, cnn16):
  qat_model = quantization.qat_fine_tune(cnn16, batches16.take(1), batches16.take(1), epochs=1,
                                         teacher=synthetic.tiny_cnn(seed=1), verbose=0)
  assert tfmot_files.is_quantize_aware(qat_model)
  assert "val_accuracy" in qat_model.history.history


def test_mixup_blends_each_image_with_a_partner_and_returns_the_partners_labels():
  distiller = distill.Distiller(synthetic.tiny_cnn(), synthetic.tiny_cnn(seed=1), mixup=1.0)
  # Image i is the constant i, so a blend lam * i + (1 - lam) * j names its partner j.
  images = tf.constant(np.arange(16, dtype=np.float32)[:, None, None, None]
                       * np.ones((1, 16, 16, 3), np.float32))
  labels = tf.constant(np.arange(16) % 3)
  for _ in range(5):
    mixed, partner_labels, lam = distiller.mix(images, labels)
    lam = float(lam)
    assert 0.5 <= lam < 1.0
    partners = (mixed.numpy()[:, 0, 0, 0] - lam * np.arange(16)) / (1 - lam)
    np.testing.assert_allclose(partners, np.round(partners), atol=1e-2)
    partners = np.round(partners).astype(int)
    assert sorted(partners) == list(range(16))  # A permutation of the batch.
    np.testing.assert_array_equal(partner_labels.numpy(), labels.numpy()[partners])
    np.testing.assert_allclose(mixed.numpy(), lam * images.numpy()
                               + (1 - lam) * images.numpy()[partners], rtol=1e-5, atol=1e-4)


class _Recording:
  """Calls `model`, keeping the images of the last call."""

  def __init__(self, model):
    self.model, self.images = model, None

  def __call__(self, images, training=False):
    self.images = images.numpy()
    return self.model(images, training=training)

  @property
  def trainable_variables(self):
    return self.model.trainable_variables

  @property
  def losses(self):
    return self.model.losses


def _recorded_mixup_distiller():
  """(a compiled mixup Distiller, its recorded teacher, its recorded student)."""
  distiller = distill.Distiller(synthetic.tiny_cnn(seed=0), synthetic.tiny_cnn(seed=1),
                                mixup=1.0)
  compile_lib.compile_model(distiller, 1e-2)
  teacher, student = _Recording(distiller.teacher), _Recording(distiller.student)
  distiller.teacher, distiller.student = teacher, student
  return distiller, teacher, student


def test_teacher_and_student_see_the_same_mixed_images(batches16):
  distiller, teacher, student = _recorded_mixup_distiller()
  images, labels = next(iter(batches16))
  distiller.train_step((images, labels))  # Eager: the recordings hold the real inputs.
  np.testing.assert_array_equal(teacher.images, student.images)
  assert not np.allclose(teacher.images, images.numpy())


def test_teacher_sees_its_own_view_mixed_as_the_students(batches16):
  distiller, teacher, student = _recorded_mixup_distiller()
  images, labels = next(iter(batches16))
  teacher_view = images + 1.0  # Every pixel 1 above the student's view.
  distiller.train_step(((images, teacher_view), labels))
  np.testing.assert_allclose(teacher.images, student.images + 1.0, rtol=1e-5, atol=1e-5)
  assert not np.allclose(student.images, images.numpy())  # Mixed, the same way.


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": 0.0}, "temperature"),
    ({"alpha": 1.5}, "alpha"),
    ({"mixup": -0.1}, "mixup"),
])
def test_bad_settings(kwargs, message):
  with pytest.raises(errors.ConfigError, match=message):
    distill.Distiller(synthetic.tiny_cnn(), synthetic.tiny_cnn(seed=1), **kwargs)


def test_teacher_with_other_classes_is_rejected():
  with pytest.raises(errors.ConfigError, match="classes"):
    distill.Distiller(synthetic.tiny_cnn(), synthetic.tiny_cnn(seed=1, num_classes=10))

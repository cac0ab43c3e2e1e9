"""Knowledge distillation: a small (pruned or quantization-aware) student learns from
the float baseline's softened predictions as well as from the labels.

Hinton et al. 2015: loss = alpha * CE(labels, student)
                         + (1 - alpha) * T^2 * KL(teacher_T || student_T),
where `_T` are the probabilities at temperature T. The models here end in a
softmax, so their log-probabilities stand in for logits: softmax(log p / T) is
p^(1/T), renormalised, exactly what the logits would give.

With `mixup` > 0 teacher and student see the same mixed batch (Zhang et al. 2018: each
image blended with another of the batch), so the student matches the teacher between
training images too ("function matching", Beyer et al. 2022); the label loss takes both
images' labels in proportion.

Training images may come as a pair (student's images, teacher's images) of the same
batch (`input_pipeline.train_dataset(teacher_view=True)`): the teacher then predicts
on its own view, e.g. each image before the sensor noise and stickers the student
sees, so a teacher trained without them still gives the right targets. With
`both_views` the student learns on both images of the pair, both against the teacher's
predictions on the teacher's (clean) image: the clean image keeps its clean target and the
corrupted one learns to match it, a consistency objective (as AugMix's, Hendrycks et al.
2020) anchored to the teacher. Each step then costs the student twice the work.
"""

import numpy as np
import tensorflow as tf

from tf_gtsrb import errors
from tf_gtsrb.keras import keras

_EPSILON = 1e-7

# The teachers here are trained with label smoothing, which already spreads their
# probabilities; a higher temperature flattens them towards uniform (p^(1/T) of
# 0.9 vs 0.0023 per wrong class leaves the true class under 10% at T=4).
DEFAULT_TEMPERATURE = 1.0
DEFAULT_ALPHA = 0.1  # Weight of the label loss; the teacher's gets 1 - alpha.
DEFAULT_MIXUP = 0.0  # Beta(mixup, mixup) draws the blend; 0: no mixing.


def _soften(probabilities, temperature):
  log_p = tf.math.log(tf.clip_by_value(probabilities, _EPSILON, 1.0))
  return tf.nn.softmax(log_p / temperature)


def _twice(batch):
  return tf.concat([batch, batch], axis=0)


def mix(images, labels, mixup, rng):
  """Mixup of a batch: (lam * images + (1 - lam) * shuffled images, shuffled labels, lam),
  lam drawn from Beta(mixup, mixup) and folded to >= 0.5 so each image stays itself.

  `images` may be a tuple of views of one batch; each is mixed the same way.
  `rng` is the `tf.random.Generator` the draws come from.
  """
  seeds = rng.make_seeds(2)
  draws = tf.random.stateless_gamma([2], seeds[:, 0], alpha=mixup)
  lam = tf.maximum(draws[0], draws[1]) / tf.maximum(tf.reduce_sum(draws), _EPSILON)
  order = tf.argsort(tf.random.stateless_uniform(tf.shape(labels)[:1], seeds[:, 1]))
  mixed = tf.nest.map_structure(lambda view: lam * view + (1 - lam) * tf.gather(view, order),
                                images)
  return mixed, tf.gather(labels, order), lam


class Distiller(keras.Model):
  """Trains `student` against `teacher` (frozen); evaluates and predicts with the student.

  Compile with the student's loss (on labels) and metrics; `fit` trains the
  student's weights in place, so the student is what you save afterwards. The
  logged training `loss` is the objective it minimises (label and distillation
  terms); `val_loss` is the compiled loss on the labels alone.
  """

  def __init__(self, student, teacher, temperature=DEFAULT_TEMPERATURE, alpha=DEFAULT_ALPHA,
               mixup=DEFAULT_MIXUP, both_views=False, **kwargs):
    super().__init__(**kwargs)
    if temperature <= 0:
      raise errors.ConfigError(f"distillation temperature must be > 0: {temperature}")
    if not 0.0 <= alpha <= 1.0:
      raise errors.ConfigError(f"distillation alpha must be in [0, 1]: {alpha}")
    if mixup < 0:
      raise errors.ConfigError(f"distillation mixup must be >= 0: {mixup}")
    if student.input_shape != teacher.input_shape:
      raise errors.ConfigError(f"student takes input {student.input_shape} but the teacher "
                               f"{teacher.input_shape}")
    student_classes, teacher_classes = student.output_shape[-1], teacher.output_shape[-1]
    if student_classes != teacher_classes:
      raise errors.ConfigError(
          f"student predicts {student_classes} classes but the teacher {teacher_classes}")
    self.student = student
    # Left as the caller gave it (not set to trainable=False, which would change the
    # caller's model): train_step runs it outside the tape and updates only the student.
    self.teacher = teacher
    self.temperature = float(temperature)
    self.alpha = float(alpha)
    self.mixup = float(mixup)
    self.both_views = bool(both_views)
    # Its own generator (seeded from NumPy, which keras.utils.set_random_seed seeds), so a
    # checkpoint can hold the mixing sequence and a resumed run mixes as an unbroken one.
    self.mixup_rng = (tf.random.Generator.from_seed(np.random.randint(2**31 - 1))
                      if self.mixup else None)
    self.loss_tracker = keras.metrics.Mean(name="loss")

  def call(self, inputs, training=False):
    return self.student(inputs, training=training)

  def distillation_loss(self, teacher_probabilities, student_probabilities):
    """T^2-scaled KL divergence between the softened distributions, mean over the batch."""
    t = self.temperature
    kl = keras.losses.kl_divergence(_soften(teacher_probabilities, t),
                                    _soften(student_probabilities, t))
    return tf.reduce_mean(kl) * t * t

  def mix(self, images, labels):
    """`mix` with this distillation's strength and generator."""
    return mix(images, labels, self.mixup, self.mixup_rng)

  @property
  def metrics(self):
    # The objective's own tracker instead of the compiled loss's (which would log the
    # label term alone as 'loss'), then the compiled metrics.
    return [self.loss_tracker] + (self.compiled_metrics.metrics if self.compiled_metrics else [])

  def label_loss(self, labels, probabilities):
    """The compiled loss on `labels` plus the student's regularisation losses."""
    loss = self.loss(labels, probabilities)
    if self.student.losses:
      loss += tf.add_n(self.student.losses)
    return loss

  def train_step(self, data):
    images, labels = data
    if self.mixup:
      images, other_labels, lam = self.mix(images, labels)
    images, teacher_images = images if isinstance(images, (tuple, list)) else (images, images)
    teacher_probabilities = self.teacher(teacher_images, training=False)
    batch = tf.shape(labels)[0]
    if self.both_views:  # One batch of both views, with the targets and labels twice over.
      images = tf.concat([images, teacher_images], axis=0)
      teacher_probabilities, labels = _twice(teacher_probabilities), _twice(labels)
      if self.mixup:
        other_labels = _twice(other_labels)
    with tf.GradientTape() as tape:
      student_probabilities = self.student(images, training=True)
      label_loss = self.label_loss(labels, student_probabilities)
      if self.mixup:
        label_loss = lam * label_loss + (1 - lam) * self.label_loss(
            other_labels, student_probabilities)
      loss = (self.alpha * label_loss
              + (1 - self.alpha) * self.distillation_loss(teacher_probabilities,
                                                          student_probabilities))
    variables = self.student.trainable_variables
    self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    self.loss_tracker.update_state(loss)
    # Training accuracy is the student's on its own view, with or without the other.
    self.compiled_metrics.update_state(labels[:batch], student_probabilities[:batch])
    return {m.name: m.result() for m in self.metrics}

  def test_step(self, data):
    images, labels = data
    probabilities = self.student(images, training=False)
    self.loss_tracker.update_state(self.label_loss(labels, probabilities))
    self.compiled_metrics.update_state(labels, probabilities)
    return {m.name: m.result() for m in self.metrics}

"""Loss, optimizer and metrics shared by training, fine-tuning and QAT."""

import tensorflow as tf

from tf_gtsrb.keras import keras
from tf_gtsrb.training import distill


# Training's label smoothing; fine-tuning (pruning, QAT, clustering) keeps the same loss by
# default, so it does not pull a smoothed model towards over-confident outputs.
DEFAULT_LABEL_SMOOTHING = 0.1


class SparseSmoothedCrossentropy(keras.losses.Loss):
  """Cross-entropy on integer labels and predicted probabilities, with label smoothing."""

  def __init__(self, label_smoothing=0.0, name="sparse_smoothed_crossentropy", **kwargs):
    super().__init__(name=name, **kwargs)
    self.label_smoothing = float(label_smoothing)

  def call(self, y_true, y_pred):
    labels = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
    one_hot = tf.one_hot(labels, tf.shape(y_pred)[-1], dtype=y_pred.dtype)
    return keras.losses.categorical_crossentropy(
        one_hot, y_pred, label_smoothing=self.label_smoothing)

  def get_config(self):
    return {**super().get_config(), "label_smoothing": self.label_smoothing}


def cosine_decay(peak_learning_rate, total_steps, warmup_steps=0):
  """Cosine decay from `peak_learning_rate` to 1% of it over `total_steps`, after an
  optional linear warm-up from a tenth of the peak."""
  return keras.optimizers.schedules.CosineDecay(
      peak_learning_rate / 10 if warmup_steps else peak_learning_rate,
      decay_steps=max(1, total_steps - warmup_steps), alpha=0.01,
      warmup_target=peak_learning_rate if warmup_steps else None, warmup_steps=warmup_steps)


def compile_model(model, learning_rate=1e-3, label_smoothing=0.0):
  """Compiles `model` with Adam, smoothed cross-entropy and an 'accuracy' metric.

  `learning_rate` may be a float or a `keras.optimizers.schedules` schedule.
  """
  model.compile(
      optimizer=keras.optimizers.Adam(learning_rate),
      loss=SparseSmoothedCrossentropy(label_smoothing),
      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
  return model


class LearningRateLogger(keras.callbacks.Callback):
  """Adds the optimizer's current learning rate to each epoch's logs as `learning_rate`."""

  def on_epoch_end(self, epoch, logs=None):
    if logs is None:
      return
    optimizer = self.model.optimizer
    rate = optimizer.learning_rate
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
      rate = rate(optimizer.iterations)
    logs["learning_rate"] = float(keras.backend.get_value(rate))


def training_logs(log_dir):
  """Callbacks that log losses, accuracies and the learning rate per epoch to TensorBoard
  under `log_dir` (the learning rate first, so TensorBoard sees it)."""
  return [LearningRateLogger(), keras.callbacks.TensorBoard(log_dir, update_freq="epoch")]


def last_val_accuracy(history):
  """The last epoch's validation accuracy in a Keras History; None without a validation set."""
  accuracies = history.history.get("val_accuracy")
  return float(accuracies[-1]) if accuracies else None


def fine_tune(model, train_ds, val_ds, epochs, learning_rate=1e-4,
              label_smoothing=DEFAULT_LABEL_SMOOTHING,
              callbacks=(), steps_per_epoch=None, verbose=2, teacher=None,
              distill_temperature=distill.DEFAULT_TEMPERATURE,
              distill_alpha=distill.DEFAULT_ALPHA, distill_mixup=distill.DEFAULT_MIXUP,
              distill_both_views=False):
  """Compiles and fits `model` for `epochs`; returns the Keras History.

  Used by pruning, QAT and clustering to recover accuracy; full training with
  checkpoints and resume lives in `tf_gtsrb.training.trainer`. Endless
  datasets (`input_pipeline.train_dataset`) need `steps_per_epoch`. With a
  `teacher` model, `model` learns by knowledge distillation (`distill.Distiller`).
  """
  trained = model
  if teacher is not None:
    trained = distill.Distiller(model, teacher, distill_temperature, distill_alpha,
                                distill_mixup, distill_both_views)
  compile_model(trained, learning_rate, label_smoothing)
  history = trained.fit(train_ds, validation_data=val_ds, epochs=epochs,
                        steps_per_epoch=steps_per_epoch, callbacks=list(callbacks),
                        verbose=verbose)
  model.history = history
  return history

"""Training with best-validation checkpointing, early stopping, TensorBoard and exact resume.

Every `checkpoint_every_steps` steps and at each epoch's end the model,
optimizer and dropout RNG state are checkpointed together with `state.json`
(global step, best validation accuracy, early-stopping counter, history).
Training batches are a pure function of (seed, global step) (see
`input_pipeline`), so `train(config, resume=True)` after a kill continues
mid-epoch and ends with the weights and validation history an uninterrupted
run would have (the training loss and accuracy logged for the epoch it resumed
in average only the steps after the resume).

With `teacher` set (a .keras model, or several comma-separated: their mean),
the model learns by knowledge distillation from it as well as from the labels
(`distill.Distiller`, `ensemble.load_teacher`).

With `swa_epochs` set, model.keras then goes through stochastic weight
averaging (`swa.average_weights`: that many more epochs at the constant
`swa_learning_rate`, same loss, teacher and augmentation, weights averaged
over their ends) into swa.keras and swa.json. The averaging settings are not
part of the run's identity: a finished run resumed with them only averages,
and gets the swa.keras an unbroken run gets (its dropout seeds are drawn from
where they stood before training). A killed averaging phase starts again from
model.keras.

Files in `model_dir`: model.keras (best validation accuracy; the last epoch's
weights when the dataset has no validation split), final.keras,
history.json, config.json, state.json, checkpoints/, logs/ (TensorBoard),
and with averaging swa.keras and swa.json.
"""

import dataclasses
import glob
import json
import math
import os
import shutil
import tempfile

from absl import logging
import tensorflow as tf

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb import locking
from tf_gtsrb.data import input_pipeline
from tf_gtsrb.keras import keras
from tf_gtsrb.keras import keras_backend
from tf_gtsrb.models import build_model
from tf_gtsrb.models import ensemble
from tf_gtsrb.models import io as model_io
from tf_gtsrb.training import compile as compile_lib
from tf_gtsrb.training import distill
from tf_gtsrb.training import distribute
from tf_gtsrb.training import swa

SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass
class TrainConfig:
  """Everything that defines a training run; saved as config.json."""
  data_dir: str
  model_dir: str
  model: str = "traffic_sign_cnn"
  model_kwargs: dict = dataclasses.field(default_factory=dict)
  epochs: int = 30
  batch_size: int = 64
  learning_rate: float = 1e-3
  schedule: str = "cosine"
  warmup_epochs: float = 1.0
  label_smoothing: float = compile_lib.DEFAULT_LABEL_SMOOTHING
  augment: bool = True
  erase_probability: float = 0.0  # Share of images given a random erasing (with augment).
  noise_probability: float = 0.0  # Share of images given sensor noise (with augment).
  sticker_probability: float = 0.0  # Share of images given stickers (with augment).
  jpeg_probability: float = 0.0  # Share of images JPEG-compressed (with augment).
  seed: int = 0
  early_stopping_patience: int = 0
  checkpoint_every_steps: int = 200
  strategy: str = "default"
  steps_per_epoch: int = 0  # 0: one pass over the training split.
  # .keras model(s) to distil from (several comma-separated: their mean); "": none.
  teacher: str = ""
  distill_temperature: float = distill.DEFAULT_TEMPERATURE
  distill_alpha: float = distill.DEFAULT_ALPHA
  distill_mixup: float = distill.DEFAULT_MIXUP
  swa_epochs: int = 0  # Weight-averaging epochs after training; 0: none.
  swa_learning_rate: float = swa.DEFAULT_LEARNING_RATE

  def validate(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if isinstance(value, float) and not math.isfinite(value):
        raise errors.ConfigError(f"{field.name} must be a finite number, got {value}")
    for name in ("steps_per_epoch", "early_stopping_patience", "warmup_epochs"):
      if getattr(self, name) < 0:
        raise errors.ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
    if self.checkpoint_every_steps < 1:
      raise errors.ConfigError(
          f"checkpoint_every_steps must be >= 1, got {self.checkpoint_every_steps}")
    if self.epochs < 1 or self.batch_size < 1:
      raise errors.ConfigError(f"epochs and batch_size must be >= 1: {self.epochs}, {self.batch_size}")
    if self.schedule not in SCHEDULES:
      raise errors.ConfigError(f"unknown schedule {self.schedule!r}; choose one of {SCHEDULES}")
    if not 0.0 <= self.label_smoothing < 1.0:
      raise errors.ConfigError(f"label_smoothing must be in [0, 1): {self.label_smoothing}")
    for name in ("erase_probability", "noise_probability", "sticker_probability",
                 "jpeg_probability"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise errors.ConfigError(f"{name} must be in [0, 1]: {getattr(self, name)}")
    if self.learning_rate <= 0:
      raise errors.ConfigError(f"learning_rate must be positive: {self.learning_rate}")
    if self.swa_epochs < 0:
      raise errors.ConfigError(f"swa_epochs must be >= 0: {self.swa_epochs}")
    if self.swa_learning_rate <= 0:
      raise errors.ConfigError(f"swa_learning_rate must be positive: {self.swa_learning_rate}")
    if self.strategy not in distribute.STRATEGIES:
      raise errors.ConfigError(f"unknown strategy {self.strategy!r}")
    if self.teacher:
      ensemble.teacher_paths(self.teacher)

  def identity(self):
    """The fields a resumed run must share with the run it continues."""
    fields = dataclasses.asdict(self)
    fields.pop("model_dir")
    fields.pop("data_dir")
    for name in ("strategy", "swa_epochs", "swa_learning_rate"):
      fields.pop(name)
    return fields


def _paths(model_dir):
  return {name: os.path.join(model_dir, name) for name in (
      "model.keras", "final.keras", "history.json", "config.json", "state.json",
      "checkpoints", "logs", "swa.keras", "swa.json")}


def train(config, resume=False, overwrite=False, verbose=1):
  """Trains per `config`; returns the history dict. See the module docstring.

  Holds the lock of `config.model_dir` throughout: a second writer is refused.
  """
  config.validate()
  role = distribute.worker_role(config.strategy)
  if role is not None and not role.is_chief:
    return _train_as_worker(config, role, resume, overwrite, verbose)
  with locking.directory_lock(config.model_dir):
    return _cluster_errors(config, _train_locked, config, resume, overwrite, verbose)


def _train_as_worker(config, role, resume, overwrite, verbose):
  """A non-chief worker of a multi-worker run: it runs every step with the chief (the
  collective ops need it) but writes into a temporary directory, deleted at the end."""
  with tempfile.TemporaryDirectory(prefix=f"gtsrb-{role.task_type}{role.index}-") as scratch:
    model_dir = os.path.join(scratch, "run")
    if resume and os.path.isdir(config.model_dir):
      shutil.copytree(config.model_dir, model_dir)  # The chief's state to resume from.
    worker_config = dataclasses.replace(config, model_dir=model_dir)
    return _cluster_errors(config, _train_locked, worker_config, resume, overwrite, verbose)


def _cluster_errors(config, function, *args):
  """Runs `function(*args)`; under multi_worker a lost peer becomes a one-line GtsrbError."""
  if config.strategy != "multi_worker":
    return function(*args)
  try:
    return function(*args)
  except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
          tf.errors.CancelledError, tf.errors.AbortedError) as e:
    first_line = (e.message or type(e).__name__).strip().splitlines()[0]
    raise errors.GtsrbError(
        f"{config.model_dir}: multi-worker training stopped: a worker of the cluster failed "
        f"or cannot be reached ({first_line}); restart every worker with --resume") from e


def _train_locked(config, resume, overwrite, verbose):
  # Fail on a bad dataset before touching the model directory.
  num_train = input_pipeline.split_size(config.data_dir, "train")
  has_validation = input_pipeline.has_split(config.data_dir, "validation")
  if not has_validation and config.early_stopping_patience:
    raise errors.ConfigError(
        f"{config.data_dir}: no validation split (prepared with val_fraction 0), so early "
        f"stopping has nothing to watch; set early_stopping_patience to 0")
  paths = _paths(config.model_dir)
  state = _start_state(config, paths, resume, overwrite)
  steps = config.steps_per_epoch or input_pipeline.steps_per_epoch(num_train, config.batch_size)
  size = input_pipeline.image_size(config.data_dir)

  keras.utils.set_random_seed(config.seed)
  keras.backend.experimental.enable_tf_random_generator()
  strategy = distribute.get_strategy(config.strategy)
  with strategy.scope():
    model = build_model(config.model, input_size=size, **config.model_kwargs)
    trained = model
    if config.teacher:
      trained = distill.Distiller(model, ensemble.load_teacher(config.teacher),
                                  config.distill_temperature, config.distill_alpha,
                                  config.distill_mixup)
    compile_lib.compile_model(trained, _learning_rate(config, steps), config.label_smoothing)
    # Keras keeps dropout's generator state out of checkpoints; without it a
    # resumed run would draw different dropout masks than an uninterrupted one.
    checkpoint = tf.train.Checkpoint(
        model=model, optimizer=trained.optimizer,
        dropout_rng=tf.train.Checkpoint(**_random_generators(model, trained)))
    manager = tf.train.CheckpointManager(checkpoint, paths["checkpoints"], max_to_keep=2)
    if resume and state["step"] > 0:
      _restore(checkpoint, manager, state, paths)
  if resume:
    _remove_stale_temporaries(config.model_dir)
  # Rewritten on resume too: what may differ then (averaging, strategy) is not identity.
  io_utils.write_json(paths["config.json"], dataclasses.asdict(config))

  images, labels = input_pipeline.load_arrays(config.data_dir, "train")
  val_ds = (input_pipeline.eval_dataset(config.data_dir, "validation", config.batch_size)
            if has_validation else None)
  if val_ds is not None and config.strategy == "multi_worker":
    val_ds = val_ds.with_options(_shard_by_data())  # One TFRecord file: shard the examples.
  _log_example_images(paths["logs"], images[:8], state["step"])
  recorder = _StateRecorder(config, paths, manager, state, model)
  callbacks = [compile_lib.LearningRateLogger(), recorder,
               keras.callbacks.TensorBoard(paths["logs"], update_freq="epoch")]

  total = config.epochs * steps
  trains = state["step"] < total and not state["stopped_early"]
  seeds = _seed_generator_state()
  while state["step"] < total and not state["stopped_early"]:
    # A resumed run first finishes its interrupted epoch, then runs the rest in one fit.
    epoch, in_epoch = divmod(state["step"], steps)
    train_ds = input_pipeline.batches_from_arrays(
        images, labels, config.batch_size, config.augment, config.seed, state["step"],
        config.erase_probability, config.noise_probability, config.sticker_probability,
        config.jpeg_probability)
    trained.fit(train_ds, validation_data=val_ds, initial_epoch=epoch,
                epochs=epoch + 1 if in_epoch else config.epochs,
                steps_per_epoch=steps - in_epoch, callbacks=callbacks, verbose=verbose)
  # What follows starts from the seeds the run had before training, so a finished run
  # resumed only to average draws the same dropout masks as an unbroken one.
  _set_seed_generator_state(seeds)
  model_io.save_model(model, paths["final.keras"])
  if config.swa_epochs and (trains or not _averaged(config, paths)):
    with strategy.scope():
      _average(config, paths, images, labels, val_ds, steps, verbose)
  return state["history"]


def _average(config, paths, images, labels, val_ds, steps, verbose):
  """Weight-averages model.keras into swa.keras, continuing the run's batch sequence."""
  model = model_io.load_model(paths["model.keras"])
  train_ds = input_pipeline.batches_from_arrays(
      images, labels, config.batch_size, config.augment, config.seed,
      config.epochs * steps, config.erase_probability, config.noise_probability,
      config.sticker_probability, config.jpeg_probability)
  distillation = {}
  if config.teacher:
    distillation = {"teacher": ensemble.load_teacher(config.teacher),
                    "distill_temperature": config.distill_temperature,
                    "distill_alpha": config.distill_alpha,
                    "distill_mixup": config.distill_mixup}
  record = swa.average_weights(
      model, train_ds, val_ds, config.swa_epochs, steps, config.swa_learning_rate,
      config.label_smoothing, verbose=verbose, **distillation)
  model_io.save_model(model, paths["swa.keras"])
  io_utils.write_json(paths["swa.json"], record)


def _averaged(config, paths):
  """Whether swa.keras holds this finished run's average with the config's averaging
  settings (a finished run resumed again keeps it)."""
  if not os.path.exists(paths["swa.keras"]) or not os.path.exists(paths["swa.json"]):
    return False
  record = io_utils.read_json(paths["swa.json"])
  return (record.get("epochs"), record.get("learning_rate")) == (config.swa_epochs,
                                                                config.swa_learning_rate)


def _shard_by_data():
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return options


def _seed_generator_state():
  """The state of the generator Keras draws new layers' seeds from (`set_random_seed`)."""
  return keras_backend._SEED_GENERATOR.generator.getstate()  # pylint: disable=protected-access


def _set_seed_generator_state(state):
  keras_backend._SEED_GENERATOR.generator.setstate(state)  # pylint: disable=protected-access


def _random_generators(model, trained=None):
  """The tf.random.Generator of each random layer (dropout), by layer name, and that of
  the distillation's mixup when `trained` (the model that fits) mixes."""
  generators = {}
  if getattr(trained, "mixup_rng", None) is not None:
    generators["distill_mixup"] = trained.mixup_rng
  for layer in model.submodules:
    generator = getattr(getattr(layer, "_random_generator", None), "_generator", None)
    if isinstance(generator, tf.random.Generator):
      generators[layer.name] = generator
  return generators


def _remove_stale_temporaries(model_dir):
  """Removes partial outputs a killed run left behind (atomic-write and checkpoint temporaries)."""
  stale = (glob.glob(os.path.join(model_dir, ".*.tmp-*"))
           + glob.glob(os.path.join(model_dir, "checkpoints", "*_temp*")))
  for path in stale:
    if os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    else:
      os.remove(path)


def _learning_rate(config, steps):
  if config.schedule == "constant":
    return config.learning_rate
  return compile_lib.cosine_decay(config.learning_rate, config.epochs * steps,
                                  int(config.warmup_epochs * steps))


def _start_state(config, paths, resume, overwrite):
  """Checks the model directory before any work; returns the state to start from."""
  fresh = {"step": 0, "best_val_accuracy": -1.0, "epochs_without_improvement": 0,
           "stopped_early": False, "history": {}, "checkpoint": None}
  has_run = os.path.exists(paths["state.json"]) or os.path.exists(paths["config.json"])
  if resume:
    if not os.path.exists(paths["state.json"]):
      if os.path.exists(paths["config.json"]):  # Killed before the first checkpoint.
        _check_same_run(config, paths)
      return fresh
    _check_same_run(config, paths)
    state = io_utils.read_json(paths["state.json"])
    if not isinstance(state, dict) or "step" not in state:
      raise errors.ModelError(f"{paths['state.json']}: not a training state file")
    return state
  if has_run and not overwrite:
    raise errors.ConfigError(
        f"{config.model_dir}: holds a previous run; pass --resume to continue it or "
        f"--overwrite to start again")
  if has_run:
    shutil.rmtree(paths["checkpoints"], ignore_errors=True)
    for name in ("state.json", "swa.keras", "swa.json"):
      if os.path.exists(paths[name]):
        os.remove(paths[name])
  return fresh


def _check_same_run(config, paths):
  # A setting added after the saved run started counts as its default there.
  defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)
              if f.default is not dataclasses.MISSING}
  saved = {**defaults, **io_utils.read_json(paths["config.json"])}
  mine = config.identity()
  different = sorted(k for k in mine if saved.get(k) != json.loads(json.dumps(mine[k])))
  if different:
    raise errors.ConfigError(
        f"{paths['config.json']}: --resume with settings that differ from the saved run: "
        + ", ".join(f"{k} (saved {saved.get(k)!r}, now {mine[k]!r})" for k in different))


def _restore(checkpoint, manager, state, paths):
  path = os.path.join(paths["checkpoints"], os.path.basename(state["checkpoint"] or ""))
  if not state["checkpoint"] or not tf.io.gfile.exists(path + ".index"):
    raise errors.ModelError(f"{paths['checkpoints']}: checkpoint for step {state['step']} is missing")
  try:
    saved = [name for name, _ in tf.train.list_variables(path)]
    if (_random_generators(checkpoint.model)
        and not any(name.startswith("dropout_rng/") for name in saved)):
      logging.warning("%s: checkpoint has no dropout RNG state; the resumed run will not "
                      "match an uninterrupted one exactly", path)
      checkpoint = tf.train.Checkpoint(model=checkpoint.model, optimizer=checkpoint.optimizer)
    # expect_partial: optimizer slots are created lazily, so a finished run never claims them.
    checkpoint.restore(path).assert_existing_objects_matched().expect_partial()
  # A truncated data file surfaces as IndexError from the checkpoint reader.
  except (tf.errors.OpError, AssertionError, ValueError, IndexError) as e:
    raise errors.ModelError(f"{path}: checkpoint is corrupt or does not fit the model: {e}") from e
  restored = int(checkpoint.optimizer.iterations.numpy())
  if restored != state["step"]:
    raise errors.ModelError(f"{path}: checkpoint holds step {restored}, state.json says {state['step']}")


class _StateRecorder(keras.callbacks.Callback):
  """Checkpoints every N steps and at epoch ends; keeps the best model; early-stops."""

  def __init__(self, config, paths, manager, state, model):
    super().__init__()
    self._config, self._paths, self._manager, self.state = config, paths, manager, state
    self._model = model

  def on_train_batch_end(self, batch, logs=None):
    self.state["step"] += 1
    every = self._config.checkpoint_every_steps
    if every and self.state["step"] % every == 0:
      self._save()

  def on_epoch_end(self, epoch, logs=None):
    logs = logs or {}
    for key, value in logs.items():
      self.state["history"].setdefault(key, []).append(float(value))
    if "val_accuracy" not in logs:  # No validation split: the latest epoch is the model.
      model_io.save_model(self._model, self._paths["model.keras"])
    elif float(logs["val_accuracy"]) > self.state["best_val_accuracy"]:
      self.state["best_val_accuracy"] = float(logs["val_accuracy"])
      self.state["epochs_without_improvement"] = 0
      model_io.save_model(self._model, self._paths["model.keras"])
    else:
      self.state["epochs_without_improvement"] += 1
    patience = self._config.early_stopping_patience
    if patience and self.state["epochs_without_improvement"] >= patience:
      self.state["stopped_early"] = True
      self.model.stop_training = True  # The model being fitted (a Distiller, with a teacher).
    io_utils.write_json(self._paths["history.json"], self.state["history"])
    self._save()

  def _save(self):
    # At an epoch end the step's checkpoint usually exists already; rewriting
    # it would put the checkpoint state.json points at at risk.
    if self.state["checkpoint"] != f"ckpt-{self.state['step']}":
      self.state["checkpoint"] = os.path.basename(
          self._manager.save(checkpoint_number=self.state["step"]))
    io_utils.write_json(self._paths["state.json"], self.state)


def _log_example_images(log_dir, images, step):
  writer = tf.summary.create_file_writer(os.path.join(log_dir, "examples"))
  with writer.as_default():
    tf.summary.image("training_examples", images, step=step, max_outputs=len(images))
  writer.close()

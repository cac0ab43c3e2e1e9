"""The end-to-end job: prepare -> train -> analyse -> prune -> QAT -> convert -> benchmark -> report.

Each step writes into its own directory under `work_dir` and, last of all, a
`.done.json` marker holding a fingerprint of its settings and of the markers of
the steps it reads. A step whose marker matches is skipped; a step killed
midway has no marker and runs again (training resumes from its checkpoint when
its settings are unchanged). Changing a setting, or forcing a step, re-runs that
step and every step after it.
"""

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

from tf_gtsrb import errors
from tf_gtsrb import io_utils

STEPS = ("prepare", "train", "analyze", "prune", "qat", "convert", "benchmark", "report")
PRUNE_CRITERIA = ("l1", "bn_gamma")
_DEFAULT_VAL_FRACTION = 0.15
_TRAIN_STARTED = ".started.json"  # Fingerprint of the training run in progress in train/.


@dataclasses.dataclass
class PipelineConfig:
  """Settings of the whole job; defaults suit the bundled sample."""
  work_dir: str = "work"
  source: str = "official"
  archive_dir: str = None  # None: the bundled sample.
  image_size: int = 32
  balance_target: int = 0
  # Share of each class's training tracks held out; 0: final fit, no validation split.
  val_fraction: float = _DEFAULT_VAL_FRACTION
  # A trained TrafficSignCNN .keras file to compress instead of training one (the
  # baseline's training settings then go unused); None: train it.
  baseline_model: str = None
  epochs: int = 30
  batch_size: int = 32
  learning_rate: float = 2e-3
  label_smoothing: float = 0.1
  dropout: float = 0.5
  erase_probability: float = 0.0  # Random erasing in the baseline's augmentation; 0: none.
  steps_per_epoch: int = 0  # 0: one pass over the training split.
  # .keras model(s) the baseline also learns from (distillation; several comma-separated:
  # their mean); None: none.
  teacher: str = None
  swa_epochs: int = 0  # Weight-averaging epochs after the baseline's training; 0: none.
  swa_learning_rate: float = 5e-4  # swa.DEFAULT_LEARNING_RATE (not imported: TF loads late).
  prune_percentages: str = "analysis"  # Or '40' (every layer) or 'conv1=30,...,conv4=60'.
  max_params: int = 90000  # Pruned-model parameter budget (about 99 KB as INT8); 0: none.
  max_macs_percent: float = 40.0  # Pruned-model MAC budget, % of the baseline's; 0: none.
  prune_criterion: str = "l1"
  prune_dropout: float = None  # The pruned model's dropout rate; None: the baseline's.
  distill_pruning: bool = False  # The pruned model also learns from the baseline (distillation).
  # More .keras models (comma-separated) averaged with the baseline into the pruned model's
  # teacher (for distill_pruning and distill_qat); None: the baseline alone.
  pruning_teachers: str = None
  prune_epochs: int = 10
  prune_learning_rate: float = 5e-4
  # Weight-averaging epochs after the pruned model's fine-tune (same loss and teacher); 0: none.
  prune_swa_epochs: int = 0
  prune_swa_learning_rate: float = 2.5e-4
  # The pruning and QAT fine-tunes also train on the validation split's images: the final
  # fit of settings chosen on validation (their validation accuracies are then n/a).
  fine_tune_on_validation: bool = False
  qat_epochs: int = 3
  qat_learning_rate: float = 1e-4
  distill_qat: bool = False  # QAT also learns from the pruned model's teacher (distillation).
  # Mixup strength of those distillations (teacher and student see the same mixed images;
  # distill.Distiller); 0: none.
  distill_mixup: float = 0.0
  num_calibration_images: int = 500
  threads: int = 1
  latency_rounds: int = 100
  seed: int = 0

  def dirs(self):
    return {step: os.path.join(self.work_dir, step) for step in STEPS}

  def validate(self):
    """Raises ConfigError for a setting a later step would reject, before any step runs."""
    from tf_gtsrb.data import sources  # pylint: disable=g-import-not-at-top
    if self.source not in sources.SOURCES:
      raise errors.ConfigError(
          f"unknown source {self.source!r}; choose one of {', '.join(sources.SOURCES)}")
    for name in ("image_size", "epochs", "batch_size", "prune_epochs", "qat_epochs",
                 "num_calibration_images", "threads", "latency_rounds"):
      if getattr(self, name) < 1:
        raise errors.ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
    for name in ("balance_target", "steps_per_epoch", "max_params", "swa_epochs",
                 "prune_swa_epochs"):
      if getattr(self, name) < 0:
        raise errors.ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
    for name in ("learning_rate", "swa_learning_rate", "prune_learning_rate",
                 "prune_swa_learning_rate", "qat_learning_rate"):
      if getattr(self, name) <= 0:
        raise errors.ConfigError(f"{name} must be positive, got {getattr(self, name)}")
    if not 0.0 <= self.max_macs_percent <= 100.0:
      raise errors.ConfigError(
          f"max_macs_percent must be in [0, 100], got {self.max_macs_percent}")
    if not 0.0 <= self.val_fraction < 1.0:
      raise errors.ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
    if not 0.0 <= self.label_smoothing < 1.0:
      raise errors.ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
    if not 0.0 <= self.erase_probability <= 1.0:
      raise errors.ConfigError(
          f"erase_probability must be in [0, 1], got {self.erase_probability}")
    if not 0.0 <= self.dropout < 1.0:
      raise errors.ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
    if self.prune_dropout is not None and not 0.0 <= self.prune_dropout < 1.0:
      raise errors.ConfigError(f"prune_dropout must be in [0, 1), got {self.prune_dropout}")
    if self.prune_criterion not in PRUNE_CRITERIA:
      raise errors.ConfigError(f"unknown prune_criterion {self.prune_criterion!r}; choose one "
                               f"of {', '.join(PRUNE_CRITERIA)}")
    if self.baseline_model:
      if not os.path.isfile(self.baseline_model):
        raise errors.ConfigError(f"{self.baseline_model}: baseline_model file not found")
      if self.teacher or self.swa_epochs:
        raise errors.ConfigError("teacher and swa_epochs shape the baseline's training: "
                                 "not with a given baseline_model")
    from tf_gtsrb.models import ensemble  # pylint: disable=g-import-not-at-top
    if self.teacher:
      ensemble.teacher_paths(self.teacher)
    if self.pruning_teachers:
      if not (self.distill_pruning or self.distill_qat):
        raise errors.ConfigError("pruning_teachers teach the pruned model only with "
                                 "distill_pruning or distill_qat set")
      ensemble.teacher_paths(self.pruning_teachers)
    if self.distill_mixup:
      if self.distill_mixup < 0:
        raise errors.ConfigError(f"distill_mixup must be >= 0, got {self.distill_mixup}")
      if not (self.distill_pruning or self.distill_qat):
        raise errors.ConfigError("distill_mixup mixes the images of a distillation: set "
                                 "distill_pruning or distill_qat")
    if self.fine_tune_on_validation and self.val_fraction == 0:
      raise errors.ConfigError("fine_tune_on_validation needs a validation split to train "
                               "on: val_fraction is 0")
    if self.prune_percentages != "analysis":
      from tf_gtsrb.compression import channel_pruning  # pylint: disable=g-import-not-at-top
      channel_pruning.percentages_from_text(self.prune_percentages)


def _fingerprint(settings, upstream):
  blob = json.dumps({"settings": settings, "upstream": upstream}, sort_keys=True, default=str)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Pipeline:
  """Runs the steps in order, skipping those whose outputs are up to date."""

  def __init__(self, config, log=print):
    self.config = config
    self.dirs = config.dirs()
    self.log = log
    self.fingerprints = {}
    self._running = None  # (fingerprint, forced) of the step being run.

  def _marker(self, step):
    return os.path.join(self.dirs[step], ".done.json")

  def run(self, only=None, force=()):
    """Runs every step (or up to `only`); `force` names steps to run even if up to date.

    A step that runs makes every step reading its outputs run too.
    """
    force = [force] if isinstance(force, str) else list(force)
    unknown = [s for s in force + ([only] if only else []) if s not in STEPS]
    if unknown:
      raise errors.ConfigError(f"unknown step(s) {unknown}; steps are {', '.join(STEPS)}")
    self.config.validate()
    results = {}
    ran = set()
    for step in STEPS:
      settings, upstream = self._inputs(step)
      fingerprint = _fingerprint(settings, [self.fingerprints[u] for u in upstream])
      marker = self._marker(step)
      done = (os.path.exists(marker) and _read_marker(marker).get("fingerprint") == fingerprint
              and not ran.intersection(upstream))
      if done and step not in force:
        self.log(f"[{step}] up to date, skipped")
        results[step] = _read_marker(marker)["outputs"]
      else:
        if os.path.exists(marker):
          os.remove(marker)  # Outputs about to change: no stale "complete" claim.
        self.log(f"[{step}] running")
        start = time.time()
        self._running = (fingerprint, step in force)
        outputs = getattr(self, f"_{step}")(results)
        ran.add(step)
        io_utils.write_json(marker, {"fingerprint": fingerprint, "outputs": outputs,
                                     "seconds": round(time.time() - start, 1)})
        results[step] = outputs
        self.log(f"[{step}] done in {time.time() - start:.0f} s")
      self.fingerprints[step] = fingerprint
      if step == only:
        break
    return results

  def _inputs(self, step):
    """(settings that change the step's outputs, steps it reads)."""
    from tf_gtsrb.models import ensemble  # pylint: disable=g-import-not-at-top
    c = self.config
    distillation = {"teacher": ensemble.absolute_teacher_paths(c.teacher)} if c.teacher else {}
    teaching = ({"teachers": ensemble.absolute_teacher_paths(c.pruning_teachers)}
                if c.pruning_teachers else {})
    if c.distill_mixup:
      teaching["mixup"] = c.distill_mixup
    pruning_distillation = {"distill": True, **teaching} if c.distill_pruning else {}
    qat_distillation = {"distill": True, **teaching} if c.distill_qat else {}
    if c.fine_tune_on_validation:
      pruning_distillation["split"] = qat_distillation["split"] = self._fine_tune_split()
    table = {
        "prepare": ({"source": c.source, "archive_dir": c.archive_dir, "size": c.image_size,
                     "balance": c.balance_target, "seed": c.seed,
                     **({"val": c.val_fraction}
                        if c.val_fraction != _DEFAULT_VAL_FRACTION else {})}, []),
        "train": ({"baseline_model": os.path.abspath(c.baseline_model),
                   "sha256": self._baseline_sha256}, ["prepare"])
                 if c.baseline_model else
                 ({"epochs": c.epochs, "batch": c.batch_size, "lr": c.learning_rate,
                   "ls": c.label_smoothing, "dropout": c.dropout, "steps": c.steps_per_epoch,
                   "seed": c.seed, **distillation,
                   **({"erase": c.erase_probability} if c.erase_probability else {}),
                   **({"swa": [c.swa_epochs, c.swa_learning_rate]} if c.swa_epochs else {})},
                  ["prepare"]),
        "analyze": ({}, ["prepare", "train"]),
        "prune": ({"percent": c.prune_percentages, "max_params": c.max_params,
                   "max_macs_percent": c.max_macs_percent, "criterion": c.prune_criterion,
                   "epochs": c.prune_epochs, "lr": c.prune_learning_rate,
                   **({"dropout": c.prune_dropout} if c.prune_dropout is not None else {}),
                   **pruning_distillation,
                   **({"swa": [c.prune_swa_epochs, c.prune_swa_learning_rate]}
                      if c.prune_swa_epochs else {})}, ["analyze"]),
        "qat": ({"epochs": c.qat_epochs, "lr": c.qat_learning_rate, "ls": c.label_smoothing,
                 **qat_distillation}, ["prune"]),
        "convert": ({"calibration": c.num_calibration_images}, ["train", "qat"]),
        "benchmark": ({"threads": c.threads, "rounds": c.latency_rounds}, ["convert"]),
        "report": ({}, ["benchmark"]),
    }
    return table[step]

  @functools.cached_property
  def _baseline_sha256(self):
    """SHA-256 of the given baseline_model file, read once per run."""
    from tf_gtsrb.data import archives  # pylint: disable=g-import-not-at-top
    return archives.sha256sum(self.config.baseline_model)

  # Steps. Each returns a JSON-ready dict of what it produced.

  def _prepare(self, results):
    from tf_gtsrb.data import prepare  # pylint: disable=g-import-not-at-top
    c = self.config
    summary = prepare.prepare_dataset(
        self.dirs["prepare"], source=c.source, source_dir=c.archive_dir,
        image_size=c.image_size, balance_target=c.balance_target, split_seed=c.seed,
        val_fraction=c.val_fraction)
    self.log(prepare.summary_table(summary))
    return summary

  def _train(self, results):
    from tf_gtsrb.training import trainer  # pylint: disable=g-import-not-at-top
    c = self.config
    if c.baseline_model:
      return self._given_baseline(results)
    config = trainer.TrainConfig(
        data_dir=results["prepare"]["dataset_dir"], model_dir=self.dirs["train"],
        epochs=c.epochs, batch_size=c.batch_size, learning_rate=c.learning_rate,
        label_smoothing=c.label_smoothing, seed=c.seed, steps_per_epoch=c.steps_per_epoch,
        model_kwargs={"dropout": c.dropout}, teacher=c.teacher or "",
        erase_probability=c.erase_probability, swa_epochs=c.swa_epochs,
        swa_learning_rate=c.swa_learning_rate)
    # Resume only a run started with these settings and upstream outputs: the
    # trainer's own check ignores the dataset, which may have been rebuilt. A run
    # with no record (older work directories) is left to the trainer's check.
    # Weight averaging follows the run and is not part of what it resumes.
    settings, upstream = self._inputs("train")
    settings.pop("swa", None)
    fingerprint = _fingerprint(settings, [self.fingerprints[u] for u in upstream])
    forced = self._running[1]
    started = os.path.join(self.dirs["train"], _TRAIN_STARTED)
    has_run = os.path.exists(os.path.join(self.dirs["train"], "config.json"))
    recorded = _read_marker(started).get("fingerprint")
    resume = has_run and not forced and recorded in (None, fingerprint)
    if has_run and not resume:
      self.log("[train] settings or data changed since the last run (or forced): "
               "training again from scratch")
    io_utils.write_json(started, {"fingerprint": fingerprint})
    try:
      history = trainer.train(config, resume=resume, overwrite=not resume, verbose=2)
    except errors.ConfigError:
      if not resume:
        raise
      self.log("[train] the saved run cannot be resumed: training again from scratch")
      history = trainer.train(config, overwrite=True, verbose=2)
    outputs = {"model": os.path.join(self.dirs["train"], "model.keras"),
               "best_val_accuracy": _best(history)}
    if c.swa_epochs:
      averaged = io_utils.read_json(os.path.join(self.dirs["train"], "swa.json"))
      outputs.update(model=os.path.join(self.dirs["train"], "swa.keras"),
                     average_val_accuracy=averaged["average_val_accuracy"])
    return outputs

  def _given_baseline(self, results):
    """The train step for a given baseline_model: checks it, copies it into train/ (a float
    .tflite export rebuilt by `from_tflite`, BatchNorm statistics measured on training
    images), and measures its validation accuracy."""
    # pylint: disable=g-import-not-at-top
    from tf_gtsrb.compression import channel_pruning
    from tf_gtsrb.data import input_pipeline
    from tf_gtsrb.evaluation import evaluate
    from tf_gtsrb.models import from_tflite
    from tf_gtsrb.models import io as model_io
    c = self.config
    data_dir = results["prepare"]["dataset_dir"]
    if c.baseline_model.endswith(".tflite"):
      model = from_tflite.load_for_training(c.baseline_model, data_dir)
    else:
      model = model_io.load_model(c.baseline_model)
    try:
      channel_pruning.check_traffic_sign_cnn(model)
    except errors.ModelError as e:
      raise errors.ModelError(f"{c.baseline_model}: {e}") from e
    if tuple(model.input_shape[1:]) != (c.image_size, c.image_size, 3):
      raise errors.ModelError(f"{c.baseline_model}: takes input {model.input_shape[1:]}, the "
                              f"data is {c.image_size}x{c.image_size}x3 (image_size)")
    path = os.path.join(self.dirs["train"], "baseline.keras")
    model_io.save_model(model, path)
    accuracy = None
    if input_pipeline.has_split(data_dir, "validation"):
      accuracy = evaluate.evaluate_keras_model(model, data_dir, "validation",
                                               c.batch_size)["metrics"]["accuracy"]
    return {"model": path, "given": os.path.abspath(c.baseline_model),
            "best_val_accuracy": accuracy}

  def _analyze(self, results):
    # pylint: disable=g-import-not-at-top
    from tf_gtsrb.compression import analysis
    from tf_gtsrb.data import input_pipeline
    from tf_gtsrb.models import io as model_io
    model = model_io.load_model(results["train"]["model"])
    images, _ = input_pipeline.load_arrays(results["prepare"]["dataset_dir"], "train",
                                           limit=1000)
    report = analysis.analyze_model(model, input_pipeline.to_float(images), seed=self.config.seed)
    recommended = analysis.recommend_prune_percentages(report)
    analysis.write_analysis_report(report, recommended, self.dirs["analyze"])
    self.log(analysis.markdown_table(report, recommended))
    return {"recommended_percentages": recommended,
            "analysis": os.path.join(self.dirs["analyze"], "analysis.json")}

  def _fine_tune_split(self):
    """The split the pruning and QAT fine-tunes train on."""
    return "train+validation" if self.config.fine_tune_on_validation else "train"

  def _datasets(self, results):
    """(training batches, validation batches or None, steps per epoch) of the fine-tunes."""
    from tf_gtsrb.data import input_pipeline  # pylint: disable=g-import-not-at-top
    c = self.config
    return input_pipeline.fine_tune_datasets(
        results["prepare"]["dataset_dir"], c.batch_size, seed=c.seed, steps=c.steps_per_epoch,
        on_validation=c.fine_tune_on_validation)

  def _prune(self, results):
    # pylint: disable=g-import-not-at-top
    from tf_gtsrb.compression import channel_pruning
    from tf_gtsrb.evaluation import complexity
    from tf_gtsrb.models import io as model_io
    from tf_gtsrb.models import traffic_sign_cnn
    from tf_gtsrb.training import compile as compile_lib
    from tf_gtsrb.training import swa
    c = self.config
    model = model_io.load_model(results["train"]["model"])
    percentages = (results["analyze"]["recommended_percentages"]
                   if c.prune_percentages == "analysis"
                   else channel_pruning.percentages_from_text(c.prune_percentages))
    percentages = channel_pruning.fit_to_budget(
        traffic_sign_cnn.channels_of(model), percentages, max_params=c.max_params,
        max_macs=int(complexity.count_macs(model) * c.max_macs_percent / 100),
        input_size=model.input_shape[1])
    kept = channel_pruning.select_channels(model, percentages, c.prune_criterion)
    pruned = channel_pruning.prune_kept(model, kept, dropout=c.prune_dropout)
    train_ds, val_ds, steps = self._datasets(results)
    teacher = self._pruned_model_teacher(model) if c.distill_pruning else None
    history = compile_lib.fine_tune(pruned, train_ds, val_ds, c.prune_epochs,
                                    learning_rate=compile_lib.cosine_decay(
                                        c.prune_learning_rate, c.prune_epochs * steps),
                                    label_smoothing=c.label_smoothing, steps_per_epoch=steps,
                                    teacher=teacher, distill_mixup=c.distill_mixup)
    record = channel_pruning.describe_pruning(model, pruned, kept, percentages, c.prune_criterion)
    record["val_accuracy"] = _last(history.history)
    if c.prune_swa_epochs:
      record["swa"] = swa.average_weights(
          pruned, train_ds, val_ds, c.prune_swa_epochs, steps, c.prune_swa_learning_rate,
          label_smoothing=c.label_smoothing, teacher=teacher, distill_mixup=c.distill_mixup)
      record["val_accuracy"] = record["swa"]["average_val_accuracy"]
    path = os.path.join(self.dirs["prune"], "pruned.keras")
    model_io.save_model(pruned, path)
    io_utils.write_json(os.path.join(self.dirs["prune"], "prune.json"), record)
    return {"model": path, "channels": record.get("channels_after"),
            "val_accuracy": record["val_accuracy"]}

  def _pruned_model_teacher(self, baseline):
    """The baseline, averaged with pruning_teachers when given (`ensemble.average`)."""
    from tf_gtsrb.models import ensemble  # pylint: disable=g-import-not-at-top
    paths = self.config.pruning_teachers
    extra = ensemble.teacher_paths(paths) if paths else []
    return ensemble.average([baseline] + [ensemble.load_member(p) for p in extra])

  def _qat(self, results):
    # pylint: disable=g-import-not-at-top
    from tf_gtsrb.compression import quantization
    from tf_gtsrb.models import io as model_io
    from tf_gtsrb.training import compile as compile_lib
    c = self.config
    model = model_io.load_model(results["prune"]["model"])
    train_ds, val_ds, steps = self._datasets(results)
    teacher = None
    if c.distill_qat:
      teacher = self._pruned_model_teacher(model_io.load_model(results["train"]["model"]))
    qat_model = quantization.qat_fine_tune(model, train_ds, val_ds, c.qat_epochs,
                                           learning_rate=compile_lib.cosine_decay(
                                               c.qat_learning_rate, c.qat_epochs * steps),
                                           steps_per_epoch=steps,
                                           label_smoothing=c.label_smoothing, teacher=teacher,
                                           distill_mixup=c.distill_mixup)
    path = os.path.join(self.dirs["qat"], "qat.keras")
    model_io.save_model(qat_model, path)
    return {"model": path,
            "val_accuracy": _last(qat_model.history.history)}

  def _convert(self, results):
    # pylint: disable=g-import-not-at-top
    from tf_gtsrb.data import input_pipeline
    from tf_gtsrb.export import export
    from tf_gtsrb.models import io as model_io
    c = self.config
    calibration, _ = input_pipeline.load_arrays(results["prepare"]["dataset_dir"], "train",
                                                limit=c.num_calibration_images)
    out = self.dirs["convert"]
    int8 = export.export_model(model_io.load_model(results["qat"]["model"]), out, ["int8"],
                               calibration, stem="model")
    baseline = export.export_model(model_io.load_model(results["train"]["model"]),
                                   os.path.join(out, "baseline"), ["float32"], None,
                                   stem="baseline")
    # Post-training quantization of the pruned float model: the baseline QAT must beat.
    ptq = export.export_model(model_io.load_model(results["prune"]["model"]),
                              os.path.join(out, "ptq"), ["int8"], calibration,
                              stem="pruned_ptq", write_c_array=False)
    paths = {"int8": int8["models"]["int8"]["path"], "ptq_int8": ptq["models"]["int8"]["path"]}
    return {**paths,
            "baseline_float32": baseline["models"]["float32"]["path"],
            "conversion": int8,
            "val_accuracy": self._flatbuffer_val_accuracies(results, paths)}

  def _flatbuffer_val_accuracies(self, results, paths):
    """{name: validation accuracy of the flatbuffer at paths[name], run by LiteRT}: what the
    deployed model scores where runs are compared. None without a validation split, or when
    the fine-tunes trained on it (a final fit)."""
    # pylint: disable=g-import-not-at-top
    from tf_gtsrb.benchmark import runners
    from tf_gtsrb.data import input_pipeline
    data_dir = results["prepare"]["dataset_dir"]
    if self.config.fine_tune_on_validation or not input_pipeline.has_split(data_dir,
                                                                          "validation"):
      return {name: None for name in paths}
    images, labels = input_pipeline.load_arrays(data_dir, "validation")
    return {name: float((runners.TFLiteRunner(path).predict(images).argmax(axis=1)
                         == labels).mean())
            for name, path in paths.items()}

  def _benchmark(self, results):
    """Runs gtsrb-benchmark-tflite in a subprocess: TensorFlow's thread count (for the
    Keras models' latency) can only be set before TensorFlow starts."""
    from tf_gtsrb.evaluation import pipeline_report  # pylint: disable=g-import-not-at-top
    c = self.config
    specs = {
        pipeline_report.KERAS_NAME: results["train"]["model"],
        pipeline_report.FLOAT_TFLITE_NAME: results["convert"]["baseline_float32"],
        pipeline_report.PRUNED_NAME: results["prune"]["model"],
        pipeline_report.PTQ_NAME: results["convert"]["ptq_int8"],
        pipeline_report.QAT_NAME: results["qat"]["model"],
        pipeline_report.INT8_NAME: results["convert"]["int8"],
    }
    command = [
        sys.executable, "-m", "tf_gtsrb_tools.benchmark_tflite",
        "--models=" + ",".join(f"{name}={path}" for name, path in specs.items()),
        f"--data_dir={results['prepare']['dataset_dir']}", "--split=test",
        f"--output_dir={self.dirs['benchmark']}", f"--threads={c.threads}",
        f"--latency_rounds={c.latency_rounds}", f"--reference={pipeline_report.KERAS_NAME}",
        f"--agreement={pipeline_report.INT8_NAME},{pipeline_report.QAT_NAME}"]
    json_path = os.path.join(self.dirs["benchmark"], "benchmark.json")
    if os.path.exists(json_path):
      os.remove(json_path)  # A failed run must not leave the last run's results looking new.
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    self.log(completed.stdout)
    if completed.returncode not in (0, 1) or not os.path.exists(json_path):
      raise errors.GtsrbError(f"benchmark failed (exit {completed.returncode}):\n"
                              f"{completed.stderr[-3000:]}")
    return {"benchmark": json_path,
            "agreement": io_utils.read_json(json_path).get("agreement")}

  def _report(self, results):
    from tf_gtsrb.evaluation import pipeline_report  # pylint: disable=g-import-not-at-top
    outputs = pipeline_report.write_pipeline_report(results, self.config, self.dirs["report"])
    with open(outputs["report_md"]) as f:
      self.log(f.read())
    return outputs


def _best(history):
  """Best validation accuracy in a Keras history dict; None without a validation split."""
  return max(history["val_accuracy"]) if history.get("val_accuracy") else None


def _last(history):
  """Last validation accuracy in a Keras history dict; None without a validation split."""
  return float(history["val_accuracy"][-1]) if history.get("val_accuracy") else None


def _read_marker(path):
  try:
    marker = io_utils.read_json(path)
  except errors.GtsrbError:
    return {}
  return marker if isinstance(marker, dict) else {}


def clean(work_dir):
  """Removes a work directory (for --fresh runs); refuses one holding anything but steps."""
  if not os.path.isdir(work_dir):
    return
  foreign = sorted(set(os.listdir(work_dir)) - set(STEPS))
  if foreign:
    raise errors.ConfigError(f"{work_dir}: not a pipeline work directory (holds "
                             f"{', '.join(foreign[:5])}); not deleting it")
  shutil.rmtree(work_dir, ignore_errors=True)

"""The end-to-end job: prepare -> train -> analyse -> prune -> sparsify -> QAT -> convert ->
benchmark -> report.

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
import math
import os
import shutil
import time
from typing import Optional

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb.data import sources

STEPS = ("prepare", "train", "analyze", "prune", "sparsify", "qat", "convert", "benchmark",
         "report")
PRUNE_CRITERIA = ("l1", "bn_gamma")
_DEFAULT_VAL_FRACTION = 0.15
# The augmentations a share of the training images gets, as TrainConfig names them.
_AUGMENTATION_SHARES = ("erase_probability", "noise_probability", "sticker_probability",
                        "jpeg_probability")
_TRAIN_STARTED = ".started.json"  # Fingerprint of the training run in progress in train/.
# Steps that fine-tune from scratch when they run: their TensorBoard logs start empty, so a
# rerun's curves are not mixed with the last run's (train's resume and keep theirs).
_FINE_TUNE_STEPS = ("prune", "sparsify", "qat")
# The steps whose outputs each step reads (its fingerprint holds theirs).
UPSTREAM = {"prepare": (), "train": ("prepare",), "analyze": ("prepare", "train"),
            "prune": ("analyze",), "sparsify": ("prune",), "qat": ("sparsify",),
            "convert": ("train", "qat"),
            "benchmark": ("convert",), "report": ("benchmark",)}


# What each step produced: typed records, kept as JSON in the step's marker.


@dataclasses.dataclass(frozen=True)
class PrepareRecord:
  """The prepared dataset (`prepare.prepare_dataset`'s summary)."""
  dataset_dir: str
  config: str
  source_dir: str
  source_fingerprint: str
  splits: dict
  skipped: int
  missing_classes: dict
  class_counts: dict
  seconds: float


@dataclasses.dataclass(frozen=True)
class TrainRecord:
  """The baseline the later steps use (trained, weight-averaged, or `given`), and the
  teacher baselines trained beside it."""
  model: str
  best_val_accuracy: Optional[float]
  average_val_accuracy: Optional[float] = None
  given: Optional[str] = None
  teachers: tuple = ()


@dataclasses.dataclass(frozen=True)
class AnalyzeRecord:
  recommended_percentages: dict
  analysis: str


@dataclasses.dataclass(frozen=True)
class PruneRecord:
  model: str
  channels: list
  val_accuracy: Optional[float]


@dataclasses.dataclass(frozen=True)
class SparsifyRecord:
  """The model QAT starts from; `kernel_sparsity` None when the step passed it through."""
  model: str
  val_accuracy: Optional[float]
  kernel_sparsity: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class QatRecord:
  model: str
  val_accuracy: Optional[float]


@dataclasses.dataclass(frozen=True)
class ConvertRecord:
  """The flatbuffers, `export.export_model`'s record of the INT8 one (`conversion`) and
  their validation accuracies by LiteRT (None after a final fit)."""
  int8: str
  ptq_int8: str
  baseline_float32: str
  conversion: dict
  val_accuracy: dict


@dataclasses.dataclass(frozen=True)
class BenchmarkRecord:
  benchmark: str
  agreement: Optional[dict]
  robustness: Optional[str] = None  # The suite on test images (reports).
  validation_robustness: Optional[str] = None  # The suite on validation images (decides).


@dataclasses.dataclass(frozen=True)
class ReportRecord:
  report_md: str
  report_json: str
  report_html: str
  targets_met: bool


RECORDS = {"prepare": PrepareRecord, "train": TrainRecord, "analyze": AnalyzeRecord,
           "prune": PruneRecord, "sparsify": SparsifyRecord, "qat": QatRecord,
           "convert": ConvertRecord, "benchmark": BenchmarkRecord, "report": ReportRecord}


def _setting(default, step, help, **metadata):  # pylint: disable=redefined-builtin
  """A PipelineConfig field: `step` is the first step whose outputs it changes (None: not
  part of a run's identity), `help` the flag's help text."""
  return dataclasses.field(default=default, metadata={"step": step, "help": help, **metadata})


@dataclasses.dataclass
class PipelineConfig:
  """Settings of the whole job; defaults suit the bundled sample.

  Every field's metadata holds `help` (the --flag's help text) and `step`: the
  first step whose outputs it changes. That step's fingerprint holds the field,
  so changing it re-runs that step and every later one; None marks a field that
  is not part of a run's identity (where outputs go). Optional metadata:
  `choices` (the allowed values), `paths` ("absolute": comma-separated files,
  fingerprinted by absolute path; "content": one file, by path and SHA-256; "data": a
  data source, by path and `sources.fingerprint`) and
  `trains_baseline` (left out of the fingerprint when baseline_model is given).
  """
  work_dir: str = _setting("work", None, "Directory for every step's outputs.")
  source: str = _setting("official", "prepare", "Layout of the input data.",
                         choices=sources.SOURCES)
  archive_dir: Optional[str] = _setting(
      None, "prepare", "The data (official zips, Kaggle copy or folder); default: the bundled "
      "sample.", paths="data")
  image_size: int = _setting(32, "prepare", "Model input size in pixels.")
  balance_target: int = _setting(0, "prepare", "Grow every training class to this many images "
                                 "offline; 0 off.")
  val_fraction: float = _setting(
      _DEFAULT_VAL_FRACTION, "prepare", "Share of each class's training tracks held out for "
      "validation; 0: a final fit on every track (no validation split; each step keeps its "
      "last epoch).")
  baseline_model: Optional[str] = _setting(
      None, "train", "A trained TrafficSignCNN .keras file (or its float32 .tflite export) to "
      "compress instead of training a baseline (the training flags then go unused).",
      paths="content")
  epochs: int = _setting(30, "train", "Baseline training epochs.", trains_baseline=True)
  batch_size: int = _setting(32, "train", "Batch size (images).")
  learning_rate: float = _setting(2e-3, "train", "Baseline peak learning rate.",
                                  trains_baseline=True)
  label_smoothing: float = _setting(0.1, "train", "Label smoothing (of every training step).")
  dropout: float = _setting(0.5, "train", "Dropout before the classifier (fraction).",
                            trains_baseline=True)
  erase_probability: float = _setting(
      0.0, "train", "Share of the training images of every training step (baseline, pruning "
      "fine-tune, sparsify, QAT; see --fine_tune_erase_probability) that also get a random "
      "erasing (a square filled with the image's mean colour); 0: none.")
  noise_probability: float = _setting(
      0.0, "train", "Share of the training images of every training step (baseline, pruning "
      "fine-tune, sparsify, QAT; see --fine_tune_noise_probability) that also get sensor noise "
      "(Gaussian, sigma 0.02-0.12 of the pixel range); 0: none.")
  sticker_probability: float = _setting(
      0.0, "train", "Share of the training images of every training step (baseline, pruning "
      "fine-tune, sparsify, QAT; see --fine_tune_sticker_probability) that also get stickers "
      "(1-3 opaque patches of random colour covering 2-33% of the image); 0: none.")
  jpeg_probability: float = _setting(
      0.0, "train", "Share of the training images of every training step (baseline, pruning "
      "fine-tune, sparsify, QAT; see --fine_tune_jpeg_probability) that are also "
      "JPEG-compressed (quality 20-90), after any noise; 0: none.")
  steps_per_epoch: int = _setting(0, "train", "Steps per epoch; 0 is one pass over the train "
                                  "split.")
  teacher: Optional[str] = _setting(
      None, "train", "A trained .keras model (or a TrafficSignCNN's float32 .tflite export) the "
      "baseline also learns from by knowledge distillation (e.g. an earlier run's baseline), or "
      "several comma-separated (their mean prediction teaches); none by default.",
      paths="absolute", trains_baseline=True)
  teacher_baselines: int = _setting(
      0, "train", "More baselines the train step trains with the baseline's settings and "
      "split but other seeds (--seed+1, ...); with --distill_pruning or --distill_qat their "
      "mean prediction with the baseline's teaches the pruned model, so the recipe needs no "
      "kept teachers (count; 0: none).", trains_baseline=True)
  teacher_baseline_epochs: int = _setting(
      0, "train", "Training epochs of each teacher baseline, before its weight averaging; 0: "
      "--epochs.", trains_baseline=True)
  clean_teacher_baselines: bool = _setting(
      False, "train", "Train the teacher baselines without the robust augmentation "
      "(--erase_probability, --noise_probability, --sticker_probability, "
      "--jpeg_probability): clean teachers of a robust baseline.", trains_baseline=True)
  swa_epochs: int = _setting(
      0, "train", "Stochastic weight averaging of the baseline: this many epochs after its "
      "training at --swa_learning_rate, their weights averaged into the model the later steps "
      "use; 0: none.", trains_baseline=True)
  # swa.DEFAULT_LEARNING_RATE (not imported: TF loads late).
  swa_learning_rate: float = _setting(
      5e-4, "train", "Constant learning rate of the weight-averaging epochs.",
      trains_baseline=True)
  prune_percentages: str = _setting(
      "analysis", "prune", "Channels to remove per conv layer (%): 'analysis' (the "
      "analysis-recommended per-layer percentages), one number for every layer, or "
      "conv1=P,conv2=P,conv3=P,conv4=P.")
  max_params: int = _setting(
      90000, "prune", "Parameter budget of the pruned model: the percentages are raised evenly "
      "until it fits (90,000 is about 99 KB as INT8); 0: no parameter budget.")
  max_macs_percent: float = _setting(
      40.0, "prune", "MAC budget of the pruned model, in % of the baseline's MACs per image: "
      "the percentages are raised evenly until it fits; 0: no MAC budget.")
  prune_criterion: str = _setting("l1", "prune", "Which filters go: smallest L1 norm or "
                                  "smallest |BN gamma|.", choices=PRUNE_CRITERIA)
  prune_dropout: Optional[float] = _setting(
      None, "prune", "Dropout rate of the pruned model (and of its QAT copy); default: the "
      "baseline's.")
  distill_pruning: bool = _setting(
      False, "prune", "Fine-tune the pruned model by knowledge distillation from the baseline "
      "it was cut from (temperature 1, alpha 0.1), as well as on the labels.")
  pruning_teachers: Optional[str] = _setting(
      None, "prune", "With --distill_pruning or --distill_qat: more trained .keras models or "
      "float32 .tflite TrafficSignCNN exports (comma-separated, e.g. baselines of other seeds, "
      "results/teachers/*.tflite) averaged with the baseline into the pruned model's teacher; "
      "none by default.", paths="absolute")
  prune_epochs: int = _setting(10, "prune", "Fine-tuning epochs after pruning.")
  prune_stages: int = _setting(
      1, "prune", "Remove the channels in this many equal stages, each chosen on the model "
      "the previous stage fine-tuned and followed by prune_epochs / prune_stages epochs of "
      "the fine-tune (its learning rate schedule restarting); 1: all at once.")
  prune_learning_rate: float = _setting(5e-4, "prune",
                                        "Fine-tuning learning rate after pruning.")
  prune_swa_epochs: int = _setting(
      0, "prune", "Stochastic weight averaging of the pruned model: this many epochs after its "
      "fine-tune at --prune_swa_learning_rate (same loss, teacher and mixup), their weights "
      "averaged into the model QAT starts from; 0: none.")
  prune_swa_learning_rate: float = _setting(
      2.5e-4, "prune", "Constant learning rate of the pruned model's weight-averaging epochs.")
  fine_tune_on_validation: bool = _setting(
      False, "prune", "The pruning and QAT fine-tunes also train on the validation split's "
      "images (a final fit, once the settings were chosen on validation); their validation "
      "accuracies are then not reported.")
  fine_tune_erase_probability: Optional[float] = _setting(
      None, "prune", "Random erasing share of the fine-tunes (pruning, sparsify, QAT) alone; "
      "default: --erase_probability.")
  fine_tune_noise_probability: Optional[float] = _setting(
      None, "prune", "Sensor noise share of the fine-tunes (pruning, sparsify, QAT) alone; "
      "default: --noise_probability.")
  fine_tune_sticker_probability: Optional[float] = _setting(
      None, "prune", "Stickers share of the fine-tunes (pruning, sparsify, QAT) alone; "
      "default: --sticker_probability.")
  fine_tune_jpeg_probability: Optional[float] = _setting(
      None, "prune", "JPEG share of the fine-tunes (pruning, sparsify, QAT) alone; "
      "default: --jpeg_probability.")
  sparsity: float = _setting(
      0.0, "sparsify", "Kernel sparsity that tfmot magnitude pruning (prune_low_magnitude) "
      "gives the channel-pruned model while it fine-tunes, before QAT, which keeps the zeros "
      "(fraction in [0, 1); 0: off). Zeros shrink Vela-encoded weights (NPU flash) and the "
      "gzip size, not CPU latency or memory (docs/npu.md).")
  clusters: int = _setting(
      0, "sparsify", "Weight clustering (tfmot) of every kernel to this many values after the "
      "magnitude pruning, kept by cluster-preserving QAT (count; 0: off).")
  sparsify_epochs: int = _setting(
      2, "sparsify", "Fine-tuning epochs of the magnitude pruning, and of the clustering.")
  sparsify_learning_rate: float = _setting(
      2e-4, "sparsify", "Peak (cosine-decayed) learning rate of the magnitude pruning's "
      "fine-tune; the clustering's is a tenth of it.")
  qat_epochs: int = _setting(3, "qat", "Quantization-aware training epochs.")
  qat_learning_rate: float = _setting(1e-4, "qat", "QAT learning rate.")
  distill_qat: bool = _setting(
      False, "qat", "Quantization-aware training also learns from the pruned model's teacher "
      "(the baseline, with --pruning_teachers averaged in; temperature 1, alpha 0.1).")
  distill_mixup: float = _setting(
      0.0, "prune", "With --distill_pruning or --distill_qat: mixup strength (Beta(a, a)) of "
      "the distillation, teacher and student seeing the same mixed images; 0: none.")
  distill_teacher_view: bool = _setting(
      False, "prune", "With --distill_pruning or --distill_qat: the teachers see each "
      "fine-tune image before its erasing, stickers and noise, the student after, so "
      "teachers trained without them (--clean_teacher_baselines) still give the right targets.")
  distill_both_views: bool = _setting(
      False, "prune", "With --distill_teacher_view: the student learns on both views, each "
      "against the teachers' predictions on the clean one, so clean images keep their clean "
      "targets and the corrupted ones learn to match them (twice the student's work per step).")
  num_calibration_images: int = _setting(
      500, "convert", "Train images used to calibrate the INT8 conversion (count).")
  threads: int = _setting(1, "benchmark", "CPU threads for the latency benchmark.")
  latency_rounds: int = _setting(100, "benchmark",
                                 "Timed batch-1 runs per model in the benchmark (count).")
  npu: str = _setting(
      "", "benchmark", "Arm Ethos-U NPUs (comma-separated: ethos-u55-128, ethos-u55-256, "
      "ethos-u65-256) to compile the INT8 models for with Vela (pip install ethos-u-vela): "
      "time, cycles, NPU share, SRAM, flash and encoded weights in the benchmark and report.")
  corruption_subset: int = _setting(
      0, "benchmark", "Also score the float32 and INT8 flatbuffers under the corruption suite "
      "(docs/robustness.md) on a seeded sample of this many test images, and of this many "
      "validation images when the fine-tunes did not train on them (count; 0: off).")
  seed: int = _setting(0, "prepare", "Seed of the split, training and augmentation.")

  def fine_tune_augmentation(self):
    """{erase,noise,sticker,jpeg}_probability of the fine-tunes: their own shares where set, else
    the baseline's."""
    shares = {}
    for name in _AUGMENTATION_SHARES:
      own = getattr(self, f"fine_tune_{name}")
      shares[name] = getattr(self, name) if own is None else own
    return shares

  def dirs(self):
    return {step: os.path.join(self.work_dir, step) for step in STEPS}

  def validate(self):
    """Raises ConfigError for a setting a later step would reject, before any step runs."""
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if isinstance(value, float) and not math.isfinite(value):
        raise errors.ConfigError(f"{field.name} must be a finite number, got {value}")
      if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise errors.ConfigError(f"{field.name} must be >= 0, got {value}")
    if self.source not in sources.SOURCES:
      raise errors.ConfigError(
          f"unknown source {self.source!r}; choose one of {', '.join(sources.SOURCES)}")
    for name in ("image_size", "epochs", "batch_size", "prune_epochs", "prune_stages",
                 "sparsify_epochs", "qat_epochs",
                 "num_calibration_images", "threads", "latency_rounds"):
      if getattr(self, name) < 1:
        raise errors.ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
    for name in ("balance_target", "steps_per_epoch", "max_params", "swa_epochs",
                 "prune_swa_epochs"):
      if getattr(self, name) < 0:
        raise errors.ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
    for name in ("learning_rate", "swa_learning_rate", "prune_learning_rate",
                 "prune_swa_learning_rate", "sparsify_learning_rate", "qat_learning_rate"):
      if getattr(self, name) <= 0:
        raise errors.ConfigError(f"{name} must be positive, got {getattr(self, name)}")
    if not 0.0 <= self.max_macs_percent <= 100.0:
      raise errors.ConfigError(
          f"max_macs_percent must be in [0, 100], got {self.max_macs_percent}")
    if not 0.0 <= self.val_fraction < 1.0:
      raise errors.ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
    if not 0.0 <= self.label_smoothing < 1.0:
      raise errors.ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
    for name in _AUGMENTATION_SHARES + tuple(f"fine_tune_{n}" for n in _AUGMENTATION_SHARES):
      if getattr(self, name) is not None and not 0.0 <= getattr(self, name) <= 1.0:
        raise errors.ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
    if not 0.0 <= self.dropout < 1.0:
      raise errors.ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
    if self.prune_dropout is not None and not 0.0 <= self.prune_dropout < 1.0:
      raise errors.ConfigError(f"prune_dropout must be in [0, 1), got {self.prune_dropout}")
    if self.sparsity:
      from tf_gtsrb.compression import magnitude_pruning  # pylint: disable=g-import-not-at-top
      magnitude_pruning.check_target_sparsity(self.sparsity, "sparsity")
    if self.clusters:
      from tf_gtsrb.compression import clustering  # pylint: disable=g-import-not-at-top
      clustering.check_clusters(self.clusters, "clusters")
    if self.npu:
      from tf_gtsrb.benchmark import vela  # pylint: disable=g-import-not-at-top
      vela.check_accelerators(self.npu.split(","))
      vela.check_available()
    if self.prune_epochs % self.prune_stages:
      raise errors.ConfigError(f"prune_epochs ({self.prune_epochs}) must split into "
                               f"prune_stages ({self.prune_stages}) equal stages")
    if self.prune_criterion not in PRUNE_CRITERIA:
      raise errors.ConfigError(f"unknown prune_criterion {self.prune_criterion!r}; choose one "
                               f"of {', '.join(PRUNE_CRITERIA)}")
    if self.baseline_model:
      if not os.path.isfile(self.baseline_model):
        raise errors.ConfigError(f"{self.baseline_model}: baseline_model file not found")
      if self.teacher or self.swa_epochs or self.teacher_baselines:
        raise errors.ConfigError("teacher, swa_epochs and teacher_baselines shape the "
                                 "baseline's training: not with a given baseline_model")
    from tf_gtsrb.models import ensemble  # pylint: disable=g-import-not-at-top
    if self.teacher:
      ensemble.teacher_paths(self.teacher)
    if self.pruning_teachers:
      if not (self.distill_pruning or self.distill_qat):
        raise errors.ConfigError("pruning_teachers teach the pruned model only with "
                                 "distill_pruning or distill_qat set")
      ensemble.teacher_paths(self.pruning_teachers)
    if self.teacher_baselines and not (self.distill_pruning or self.distill_qat):
      raise errors.ConfigError("teacher_baselines teach the pruned model only with "
                               "distill_pruning or distill_qat set")
    if (self.teacher_baseline_epochs or self.clean_teacher_baselines) and not (
        self.teacher_baselines):
      raise errors.ConfigError("teacher_baseline_epochs and clean_teacher_baselines shape the "
                               "teacher baselines: set teacher_baselines")
    if self.distill_mixup:
      if self.distill_mixup < 0:
        raise errors.ConfigError(f"distill_mixup must be >= 0, got {self.distill_mixup}")
      if not (self.distill_pruning or self.distill_qat):
        raise errors.ConfigError("distill_mixup mixes the images of a distillation: set "
                                 "distill_pruning or distill_qat")
    if self.distill_teacher_view:
      if not (self.distill_pruning or self.distill_qat):
        raise errors.ConfigError("distill_teacher_view shows the teachers their own images: "
                                 "set distill_pruning or distill_qat")
      if not any(self.fine_tune_augmentation().values()):
        raise errors.ConfigError("distill_teacher_view needs erasing, stickers or noise in the "
                                 "fine-tunes (their probabilities are all 0)")
    if self.distill_both_views and not self.distill_teacher_view:
      raise errors.ConfigError("distill_both_views trains the student on the teachers' view "
                               "as well: set distill_teacher_view")
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
    self.seconds = {}  # Wall time of each step's last run (recorded in its marker).
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
      recorded = _read_marker(marker)
      done = (recorded.get("fingerprint") == fingerprint and not ran.intersection(upstream)
              and _record(step, recorded.get("outputs")) is not None)
      if done and step not in force:
        self.log(f"[{step}] up to date, skipped")
        results[step] = _record(step, recorded["outputs"])
        self.seconds[step] = recorded.get("seconds")
      else:
        if os.path.exists(marker):
          os.remove(marker)  # Outputs about to change: no stale "complete" claim.
        if step in _FINE_TUNE_STEPS:
          shutil.rmtree(os.path.join(self.dirs[step], "logs"), ignore_errors=True)
        self.log(f"[{step}] running")
        start = time.time()
        self._running = (fingerprint, step in force)
        record = getattr(self, f"_{step}")(results)
        ran.add(step)
        self.seconds[step] = round(time.time() - start, 1)
        io_utils.write_json(marker, {"fingerprint": fingerprint,
                                     "outputs": dataclasses.asdict(record),
                                     "seconds": self.seconds[step]})
        results[step] = record
        self.log(f"[{step}] done in {time.time() - start:.0f} s")
      self.fingerprints[step] = fingerprint
      if step == only:
        break
    return results

  def _inputs(self, step):
    """(settings that change the step's outputs, steps it reads).

    The settings are the PipelineConfig fields whose `step` metadata names this
    step; a field without that metadata counts for the first step, so that it
    re-runs everything rather than nothing.
    """
    c = self.config
    settings = {}
    for field in dataclasses.fields(c):
      if field.metadata.get("step", STEPS[0]) != step:
        continue
      if c.baseline_model and field.metadata.get("trains_baseline"):
        continue
      settings[field.name] = self._fingerprinted_value(field)
    return settings, list(UPSTREAM[step])

  def _fingerprinted_value(self, field):
    """A field's value as the fingerprint holds it: paths made absolute, a `content`
    file also by its SHA-256."""
    value = getattr(self.config, field.name)
    kind = field.metadata.get("paths")
    if not value or kind is None:
      return value
    if kind == "content":
      return {"path": os.path.abspath(value), "sha256": self._sha256(value)}
    if kind == "data":
      return {"path": os.path.abspath(value),
              "fingerprint": sources.fingerprint(self.config.source, value)}
    from tf_gtsrb.models import ensemble  # pylint: disable=g-import-not-at-top
    return ensemble.absolute_teacher_paths(value)

  @functools.lru_cache(maxsize=None)
  def _sha256(self, path):
    """SHA-256 of a file, read once per run."""
    from tf_gtsrb.data import archives  # pylint: disable=g-import-not-at-top
    return archives.sha256sum(path)

  def _training_logs(self, step, phase="fit"):
    """TensorBoard callbacks writing under <work_dir>/<step>/logs/<phase>: one log root per
    work directory (`tensorboard --logdir=<work_dir>`)."""
    from tf_gtsrb.training import compile as compile_lib  # pylint: disable=g-import-not-at-top
    return compile_lib.training_logs(os.path.join(self.dirs[step], "logs", phase))

  # Steps. Each returns its record (RECORDS) of what it produced.

  def _prepare(self, results):
    from tf_gtsrb.data import prepare  # pylint: disable=g-import-not-at-top
    c = self.config
    summary = prepare.prepare_dataset(
        self.dirs["prepare"], source=c.source, source_dir=c.archive_dir, rebuild=True,
        image_size=c.image_size, balance_target=c.balance_target, split_seed=c.seed,
        val_fraction=c.val_fraction)
    self.log(prepare.summary_table(summary))
    return PrepareRecord(**summary)

  def _train(self, results):
    from tf_gtsrb.training import trainer  # pylint: disable=g-import-not-at-top
    c = self.config
    if c.baseline_model:
      return self._given_baseline(results)
    config = trainer.TrainConfig(
        data_dir=results["prepare"].dataset_dir, model_dir=self.dirs["train"],
        epochs=c.epochs, batch_size=c.batch_size, learning_rate=c.learning_rate,
        label_smoothing=c.label_smoothing, seed=c.seed, steps_per_epoch=c.steps_per_epoch,
        model_kwargs={"dropout": c.dropout}, teacher=c.teacher or "",
        erase_probability=c.erase_probability, noise_probability=c.noise_probability,
        sticker_probability=c.sticker_probability, jpeg_probability=c.jpeg_probability,
        swa_epochs=c.swa_epochs,
        swa_learning_rate=c.swa_learning_rate)
    # Resume only a run started with these settings and upstream outputs: the
    # trainer's own check ignores the dataset, which may have been rebuilt. A run
    # with no record (older work directories) is left to the trainer's check.
    # Weight averaging follows the run and is not part of what it resumes; the
    # teacher baselines are runs of their own.
    settings, upstream = self._inputs("train")
    for name in ("swa_epochs", "swa_learning_rate", "teacher_baselines",
                 "teacher_baseline_epochs", "clean_teacher_baselines"):
      settings.pop(name, None)
    fingerprint = _fingerprint(settings, [self.fingerprints[u] for u in upstream])
    started = os.path.join(self.dirs["train"], _TRAIN_STARTED)
    may_resume = (not self._running[1]
                  and _read_marker(started).get("fingerprint") in (None, fingerprint))
    io_utils.write_json(started, {"fingerprint": fingerprint})
    history = self._train_run(config, may_resume)
    teachers = []
    clean = {name: 0.0 for name in _AUGMENTATION_SHARES} if c.clean_teacher_baselines else {}
    for offset in range(1, c.teacher_baselines + 1):
      self.log(f"[train] teacher baseline {offset} of {c.teacher_baselines} "
               f"(seed {c.seed + offset})")
      teacher = dataclasses.replace(
          config, seed=c.seed + offset, epochs=c.teacher_baseline_epochs or c.epochs,
          model_dir=os.path.join(self.dirs["train"], f"teacher_seed{c.seed + offset}"),
          **clean)
      self._train_run(teacher, may_resume)
      teachers.append(_trained_model(teacher))
    return TrainRecord(_trained_model(config), _best(history),
                       average_val_accuracy=_average_val_accuracy(config),
                       teachers=tuple(teachers))

  def _train_run(self, config, may_resume):
    """Trains per the TrainConfig, resuming the run in its model_dir when `may_resume`;
    returns the history dict."""
    from tf_gtsrb.training import trainer  # pylint: disable=g-import-not-at-top
    has_run = os.path.exists(os.path.join(config.model_dir, "config.json"))
    resume = may_resume and has_run
    if has_run and not resume:
      self.log(f"[train] {config.model_dir}: settings or data changed since the last run (or "
               "forced): training again from scratch")
    try:
      return trainer.train(config, resume=resume, overwrite=not resume, verbose=2)
    except errors.ConfigError:
      if not resume:
        raise
      self.log(f"[train] {config.model_dir}: the saved run cannot be resumed: training "
               "again from scratch")
      return trainer.train(config, overwrite=True, verbose=2)

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
    data_dir = results["prepare"].dataset_dir
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
    return TrainRecord(path, accuracy, given=os.path.abspath(c.baseline_model))

  def _analyze(self, results):
    # pylint: disable=g-import-not-at-top
    from tf_gtsrb.compression import analysis
    from tf_gtsrb.data import input_pipeline
    from tf_gtsrb.models import io as model_io
    model = model_io.load_model(results["train"].model)
    images, _ = input_pipeline.load_arrays(results["prepare"].dataset_dir, "train",
                                           limit=1000)
    report = analysis.analyze_model(model, input_pipeline.to_float(images), seed=self.config.seed)
    recommended = analysis.recommend_prune_percentages(report)
    analysis.write_analysis_report(report, recommended, self.dirs["analyze"])
    self.log(analysis.markdown_table(report, recommended))
    return AnalyzeRecord(recommended, os.path.join(self.dirs["analyze"], "analysis.json"))

  def _fine_tune_split(self):
    """The split the pruning and QAT fine-tunes train on."""
    return "train+validation" if self.config.fine_tune_on_validation else "train"

  def _datasets(self, results, distil):
    """(training batches, validation batches or None, steps per epoch) of a fine-tune;
    `distil`: whether it learns from teachers (which may then get their own view)."""
    from tf_gtsrb.data import input_pipeline  # pylint: disable=g-import-not-at-top
    c = self.config
    return input_pipeline.fine_tune_datasets(
        results["prepare"].dataset_dir, c.batch_size, seed=c.seed, steps=c.steps_per_epoch,
        on_validation=c.fine_tune_on_validation, teacher_view=c.distill_teacher_view and distil,
        **c.fine_tune_augmentation())

  def _prune(self, results):
    # pylint: disable=g-import-not-at-top
    from tf_gtsrb.compression import channel_pruning
    from tf_gtsrb.evaluation import complexity
    from tf_gtsrb.models import io as model_io
    from tf_gtsrb.models import traffic_sign_cnn
    from tf_gtsrb.training import compile as compile_lib
    c = self.config
    model = model_io.load_model(results["train"].model)
    percentages = (results["analyze"].recommended_percentages
                   if c.prune_percentages == "analysis"
                   else channel_pruning.percentages_from_text(c.prune_percentages))
    percentages = channel_pruning.fit_to_budget(
        traffic_sign_cnn.channels_of(model), percentages, max_params=c.max_params,
        max_macs=int(complexity.count_macs(model) * c.max_macs_percent / 100),
        input_size=model.input_shape[1])
    train_ds, val_ds, steps = self._datasets(results, c.distill_pruning)
    pruned, record = channel_pruning.prune_and_fine_tune(
        model, percentages, train_ds, val_ds, c.prune_epochs,
        compile_lib.cosine_decay(c.prune_learning_rate, c.prune_epochs // c.prune_stages * steps),
        steps, criterion=c.prune_criterion, dropout=c.prune_dropout, stages=c.prune_stages,
        swa_epochs=c.prune_swa_epochs,
        swa_learning_rate=c.prune_swa_learning_rate,
        log_dir=os.path.join(self.dirs["prune"], "logs"), label_smoothing=c.label_smoothing,
        **self._distillation(results, model, c.distill_pruning))
    history = pruned.history
    path = os.path.join(self.dirs["prune"], "pruned.keras")
    model_io.save_model(pruned, path)
    io_utils.write_json(os.path.join(self.dirs["prune"], "prune.json"), record)
    _write_history(self.dirs["prune"], history)
    return PruneRecord(path, record["channels_after"], record["val_accuracy"])

  def _sparsify(self, results):
    """tfmot magnitude pruning, then clustering, of the channel-pruned model; with both
    off, the pruned model passes through unchanged."""
    c = self.config
    if not (c.sparsity or c.clusters):
      return SparsifyRecord(results["prune"].model, results["prune"].val_accuracy)
    # pylint: disable=g-import-not-at-top
    from tf_gtsrb.compression import clustering
    from tf_gtsrb.compression import magnitude_pruning
    from tf_gtsrb.models import io as model_io
    from tf_gtsrb.training import compile as compile_lib
    model = model_io.load_model(results["prune"].model)
    train_ds, val_ds, steps = self._datasets(results, c.distill_pruning)
    baseline = model_io.load_model(results["train"].model) if c.distill_pruning else None
    distillation = {"label_smoothing": c.label_smoothing,
                    **self._distillation(results, baseline, c.distill_pruning)}
    record = {"sparsity": c.sparsity, "clusters": c.clusters or None}
    history = None
    if c.sparsity:
      model = magnitude_pruning.prune_and_fine_tune(
          model, train_ds, val_ds, c.sparsity, c.sparsify_epochs,
          learning_rate=compile_lib.cosine_decay(c.sparsify_learning_rate,
                                                 c.sparsify_epochs * steps),
          steps_per_epoch=steps, log_dir=os.path.join(self.dirs["sparsify"], "logs", "prune"),
          **distillation)
      history = model.history
    if c.clusters:
      model = clustering.cluster_and_fine_tune(
          model, train_ds, val_ds, c.clusters, c.sparsify_epochs,
          learning_rate=c.sparsify_learning_rate / 10, preserve_sparsity=bool(c.sparsity),
          steps_per_epoch=steps, callbacks=self._training_logs("sparsify", "cluster"),
          **distillation)
      history = model.history
      record["unique_weights"] = clustering.unique_weight_counts(model)
    record["kernel_sparsity"] = magnitude_pruning.sparsity_report(model)["sparsity"]
    record["val_accuracy"] = compile_lib.last_val_accuracy(history)
    path = os.path.join(self.dirs["sparsify"], "sparse.keras")
    model_io.save_model(model, path)
    io_utils.write_json(os.path.join(self.dirs["sparsify"], "sparsify.json"), record)
    _write_history(self.dirs["sparsify"], history)
    return SparsifyRecord(path, record["val_accuracy"], record["kernel_sparsity"])

  def _distillation(self, results, baseline, distil):
    """The fine-tune's teacher settings: with `distil`, the `baseline` averaged with the
    teacher baselines and pruning_teachers (`ensemble.average`), distill_mixup and
    distill_both_views; otherwise none."""
    if not distil:
      return {}
    from tf_gtsrb.models import ensemble  # pylint: disable=g-import-not-at-top
    paths = self.config.pruning_teachers
    extra = list(results["train"].teachers)
    extra += ensemble.teacher_paths(paths) if paths else []
    return {"teacher": ensemble.average([baseline] + [ensemble.load_member(p) for p in extra]),
            "distill_mixup": self.config.distill_mixup,
            "distill_both_views": self.config.distill_both_views}

  def _qat(self, results):
    # pylint: disable=g-import-not-at-top
    from tf_gtsrb.compression import quantization
    from tf_gtsrb.models import io as model_io
    from tf_gtsrb.training import compile as compile_lib
    c = self.config
    model = model_io.load_model(results["sparsify"].model)
    train_ds, val_ds, steps = self._datasets(results, c.distill_qat)
    baseline = model_io.load_model(results["train"].model) if c.distill_qat else None
    qat_model, record = quantization.run_qat(
        model, train_ds, val_ds, c.qat_epochs,
        compile_lib.cosine_decay(c.qat_learning_rate, c.qat_epochs * steps), steps,
        preserve_sparsity=bool(c.sparsity), preserve_clusters=bool(c.clusters),
        log_dir=os.path.join(self.dirs["qat"], "logs"), label_smoothing=c.label_smoothing,
        **self._distillation(results, baseline, c.distill_qat))
    path = os.path.join(self.dirs["qat"], "qat.keras")
    model_io.save_model(qat_model, path)
    _write_history(self.dirs["qat"], qat_model.history)
    return QatRecord(path, record["val_accuracy"])

  def _convert(self, results):
    # pylint: disable=g-import-not-at-top
    from tf_gtsrb.data import input_pipeline
    from tf_gtsrb.export import export
    from tf_gtsrb.models import io as model_io
    c = self.config
    calibration, _ = input_pipeline.load_arrays(results["prepare"].dataset_dir, "train",
                                                limit=c.num_calibration_images)
    out = self.dirs["convert"]
    int8 = export.export_model(model_io.load_model(results["qat"].model), out, ["int8"],
                               calibration, stem="model", source=results["qat"].model,
                               log=self.log)
    baseline = export.export_model(model_io.load_model(results["train"].model),
                                   os.path.join(out, "baseline"), ["float32"], None,
                                   stem="baseline", source=results["train"].model, log=self.log)
    # Post-training quantization of the pruned float model: the baseline QAT must beat.
    ptq = export.export_model(model_io.load_model(results["prune"].model),
                              os.path.join(out, "ptq"), ["int8"], calibration,
                              stem="pruned_ptq", write_c_array=False,
                              source=results["prune"].model, log=self.log)
    paths = {"int8": int8["models"]["int8"]["path"], "ptq_int8": ptq["models"]["int8"]["path"]}
    return ConvertRecord(**paths, baseline_float32=baseline["models"]["float32"]["path"],
                         conversion=int8,
                         val_accuracy=self._flatbuffer_val_accuracies(results, paths))

  def _flatbuffer_val_accuracies(self, results, paths):
    """{name: validation accuracy of the flatbuffer at paths[name], run by LiteRT}: what the
    deployed model scores where runs are compared. None without a validation split, or when
    the fine-tunes trained on it (a final fit)."""
    # pylint: disable=g-import-not-at-top
    from tf_gtsrb.models import runners
    from tf_gtsrb.data import input_pipeline
    data_dir = results["prepare"].dataset_dir
    if not self._validation_held_out(data_dir):
      return {name: None for name in paths}
    images, labels = input_pipeline.load_arrays(data_dir, "validation")
    return {name: float((runners.TFLiteRunner(path).predict(images).argmax(axis=1)
                         == labels).mean())
            for name, path in paths.items()}

  def _validation_held_out(self, data_dir):
    """Whether the dataset has validation images the fine-tunes did not train on."""
    from tf_gtsrb.data import input_pipeline  # pylint: disable=g-import-not-at-top
    return (not self.config.fine_tune_on_validation
            and input_pipeline.has_split(data_dir, "validation"))

  def _benchmark(self, results):
    """Runs the benchmark in a fresh process (`run.run_in_subprocess`): TensorFlow's thread
    count (for the Keras models' latency) can only be set before TensorFlow starts."""
    # pylint: disable=g-import-not-at-top
    from tf_gtsrb.benchmark import run as bench
    from tf_gtsrb.evaluation import pipeline_report
    # pylint: enable=g-import-not-at-top
    c = self.config
    specs = {
        pipeline_report.KERAS_NAME: results["train"].model,
        pipeline_report.FLOAT_TFLITE_NAME: results["convert"].baseline_float32,
        pipeline_report.PRUNED_NAME: results["prune"].model,
        pipeline_report.PTQ_NAME: results["convert"].ptq_int8,
        pipeline_report.QAT_NAME: results["qat"].model,
        pipeline_report.INT8_NAME: results["convert"].int8,
    }
    json_path = os.path.join(self.dirs["benchmark"], "benchmark.json")
    benchmark = bench.run_in_subprocess(
        log=self.log, specs=specs, data_dir=results["prepare"].dataset_dir, split="test",
        output_dir=self.dirs["benchmark"], threads=c.threads, latency_rounds=c.latency_rounds,
        reference=pipeline_report.KERAS_NAME,
        agreement_pair=[pipeline_report.INT8_NAME, pipeline_report.QAT_NAME],
        npu=c.npu.split(",") if c.npu else ())
    output_dirs = {"test": self.dirs["benchmark"],
                   "validation": os.path.join(self.dirs["benchmark"], "validation")}
    for output_dir in output_dirs.values():
      if os.path.exists(os.path.join(output_dir, "robustness.json")):
        os.remove(os.path.join(output_dir, "robustness.json"))
    if not c.corruption_subset:
      return BenchmarkRecord(json_path, benchmark.get("agreement"))
    from tf_gtsrb.evaluation import robustness  # pylint: disable=g-import-not-at-top
    dataset_dir = results["prepare"].dataset_dir
    if not self._validation_held_out(dataset_dir):
      del output_dirs["validation"]  # No held-out validation images to score.
    paths = {}
    for split, output_dir in output_dirs.items():
      self.log(f"corruption suite on {split} images")
      scores = robustness.evaluate_model_files(
          {name: specs[name] for name in (pipeline_report.FLOAT_TFLITE_NAME,
                                          pipeline_report.INT8_NAME)},
          dataset_dir, output_dir, split=split, subset=c.corruption_subset, log=self.log)
      self.log(robustness.comparison_table(scores))
      paths[split] = os.path.join(output_dir, "robustness.json")
    return BenchmarkRecord(json_path, benchmark.get("agreement"), paths["test"],
                           paths.get("validation"))

  def _report(self, results):
    from tf_gtsrb.evaluation import pipeline_report  # pylint: disable=g-import-not-at-top
    record = ReportRecord(**pipeline_report.write_pipeline_report(
        results, self.config, self.dirs["report"], seconds=self.seconds))
    with open(record.report_md) as f:
      self.log(f.read())
    return record


def _trained_model(config):
  """The model a TrainConfig's run leaves for the later steps: weight-averaged or last."""
  return os.path.join(config.model_dir, "swa.keras" if config.swa_epochs else "model.keras")


def _average_val_accuracy(config):
  """The weight-averaged model's validation accuracy (swa.json); None without averaging."""
  if not config.swa_epochs:
    return None
  return io_utils.read_json(os.path.join(config.model_dir, "swa.json"))["average_val_accuracy"]


def _best(history):
  """Best validation accuracy in a Keras history dict; None without a validation split."""
  return max(history["val_accuracy"]) if history.get("val_accuracy") else None


def _write_history(step_dir, history):
  """The fine-tune's per-epoch logs (loss, accuracy, learning rate...) as history.json."""
  io_utils.write_json(os.path.join(step_dir, "history.json"),
                      {k: [float(v) for v in values] for k, values in history.history.items()})


def _record(step, outputs):
  """The step's typed record from its marker's outputs; None when they do not fit it (a
  marker written by another version: the step runs again)."""
  try:
    return RECORDS[step](**outputs)
  except TypeError:
    return None


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

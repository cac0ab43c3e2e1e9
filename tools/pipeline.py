"""The whole job: prepare -> train -> analyse -> prune -> QAT -> convert -> benchmark -> report.

  gtsrb-pipeline                                   # bundled sample, a few minutes on a CPU
  gtsrb-pipeline --archive_dir=../shared/gtsrb --work_dir=runs/real --epochs=30 \
      --prune_epochs=8 --qat_epochs=3 --batch_size=128

Each step is skipped when its outputs are up to date; a killed run continues
where it stopped when started again with the same flags.
"""

import sys

from absl import flags

from tf_gtsrb import pipeline
from tf_gtsrb.data import sources
from tf_gtsrb_tools import common

FLAGS = flags.FLAGS
_DEFAULTS = pipeline.PipelineConfig()
flags.DEFINE_string("work_dir", _DEFAULTS.work_dir, "Directory for every step's outputs.")
flags.DEFINE_enum("source", _DEFAULTS.source, sources.SOURCES, "Layout of the input data.")
flags.DEFINE_string("archive_dir", None, "The data (official zips, Kaggle copy or folder); "
                    "default: the bundled sample.")
flags.DEFINE_integer("image_size", _DEFAULTS.image_size, "Model input size in pixels.")
flags.DEFINE_integer("balance_target", _DEFAULTS.balance_target,
                     "Grow every training class to this many images offline; 0 off.")
flags.DEFINE_float("val_fraction", _DEFAULTS.val_fraction,
                   "Share of each class's training tracks held out for validation; 0: a final "
                   "fit on every track (no validation split; each step keeps its last epoch).")
flags.DEFINE_string("baseline_model", None, "A trained TrafficSignCNN .keras file (or its float32 "
                    ".tflite export) to compress instead of training a baseline (the training "
                    "flags then go unused).")
flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Baseline training epochs.")
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Batch size (images).")
flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate, "Baseline peak learning rate.")
flags.DEFINE_float("label_smoothing", _DEFAULTS.label_smoothing, "Label smoothing.")
flags.DEFINE_float("dropout", _DEFAULTS.dropout, "Dropout before the classifier (fraction).")
flags.DEFINE_float("erase_probability", _DEFAULTS.erase_probability,
                   "Share of the baseline's training images that also get a random erasing "
                   "(a square filled with the image's mean colour); 0: none.")
flags.DEFINE_string("teacher", None, "A trained .keras model (or a TrafficSignCNN's float32 "
                    ".tflite export) the baseline also learns from by knowledge distillation "
                    "(e.g. an earlier run's baseline), or several comma-separated (their mean "
                    "prediction teaches); none by default.")
flags.DEFINE_integer("swa_epochs", _DEFAULTS.swa_epochs,
                     "Stochastic weight averaging of the baseline: this many epochs after its "
                     "training at --swa_learning_rate, their weights averaged into the model "
                     "the later steps use; 0: none.")
flags.DEFINE_float("swa_learning_rate", _DEFAULTS.swa_learning_rate,
                   "Constant learning rate of the weight-averaging epochs.")
flags.DEFINE_integer("steps_per_epoch", _DEFAULTS.steps_per_epoch,
                     "Steps per epoch; 0 is one pass over the train split.")
flags.DEFINE_string("prune_percentages", _DEFAULTS.prune_percentages,
                    "Channels to remove per conv layer (%): 'analysis' (the analysis-recommended "
                    "per-layer percentages), one number for every layer, or "
                    "conv1=P,conv2=P,conv3=P,conv4=P.")
flags.DEFINE_integer("max_params", _DEFAULTS.max_params,
                     "Parameter budget of the pruned model: the percentages are raised evenly "
                     "until it fits (90,000 is about 99 KB as INT8); 0: no parameter budget.")
flags.DEFINE_float("max_macs_percent", _DEFAULTS.max_macs_percent,
                   "MAC budget of the pruned model, in % of the baseline's MACs per image: the "
                   "percentages are raised evenly until it fits; 0: no MAC budget.")
flags.DEFINE_enum("prune_criterion", _DEFAULTS.prune_criterion, ["l1", "bn_gamma"],
                  "Which filters go: smallest L1 norm or smallest |BN gamma|.")
flags.DEFINE_float("prune_dropout", _DEFAULTS.prune_dropout,
                   "Dropout rate of the pruned model (and of its QAT copy); default: the "
                   "baseline's.")
flags.DEFINE_bool("distill_pruning", _DEFAULTS.distill_pruning,
                  "Fine-tune the pruned model by knowledge distillation from the baseline it was "
                  "cut from (temperature 1, alpha 0.1), as well as on the labels.")
flags.DEFINE_string("pruning_teachers", _DEFAULTS.pruning_teachers,
                    "With --distill_pruning or --distill_qat: more trained .keras models or "
                    "float32 .tflite TrafficSignCNN exports (comma-separated, e.g. baselines of "
                    "other seeds, results/teachers/*.tflite) averaged with the baseline "
                    "into the pruned model's teacher; none by default.")
flags.DEFINE_integer("prune_epochs", _DEFAULTS.prune_epochs, "Fine-tuning epochs after pruning.")
flags.DEFINE_float("prune_learning_rate", _DEFAULTS.prune_learning_rate,
                   "Fine-tuning learning rate after pruning.")
flags.DEFINE_integer("prune_swa_epochs", _DEFAULTS.prune_swa_epochs,
                     "Stochastic weight averaging of the pruned model: this many epochs after its "
                     "fine-tune at --prune_swa_learning_rate (same loss, teacher and mixup), "
                     "their weights averaged into the model QAT starts from; 0: none.")
flags.DEFINE_float("prune_swa_learning_rate", _DEFAULTS.prune_swa_learning_rate,
                   "Constant learning rate of the pruned model's weight-averaging epochs.")
flags.DEFINE_bool("fine_tune_on_validation", _DEFAULTS.fine_tune_on_validation,
                  "The pruning and QAT fine-tunes also train on the validation split's images "
                  "(a final fit, once the settings were chosen on validation); their "
                  "validation accuracies are then not reported.")
flags.DEFINE_integer("qat_epochs", _DEFAULTS.qat_epochs, "Quantization-aware training epochs.")
flags.DEFINE_float("qat_learning_rate", _DEFAULTS.qat_learning_rate, "QAT learning rate.")
flags.DEFINE_bool("distill_qat", _DEFAULTS.distill_qat,
                  "Quantization-aware training also learns from the pruned model's teacher "
                  "(the baseline, with --pruning_teachers averaged in; temperature 1, alpha 0.1).")
flags.DEFINE_float("distill_mixup", _DEFAULTS.distill_mixup,
                   "With --distill_pruning or --distill_qat: mixup strength (Beta(a, a)) of "
                   "the distillation, teacher and student seeing the same mixed images; "
                   "0: none.")
flags.DEFINE_integer("num_calibration_images", _DEFAULTS.num_calibration_images,
                     "Train images used to calibrate the INT8 conversion (count).")
flags.DEFINE_integer("threads", _DEFAULTS.threads, "CPU threads for the latency benchmark.")
flags.DEFINE_integer("latency_rounds", _DEFAULTS.latency_rounds,
                     "Timed batch-1 runs per model in the benchmark (count).")
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed of the split, training and augmentation.")
flags.DEFINE_enum("until", None, pipeline.STEPS, "Stop after this step.")
flags.DEFINE_list("force", [], "Steps to run again even if up to date.")
flags.DEFINE_bool("fresh", False, "Delete --work_dir first and run everything.")
flags.DEFINE_string("release_dir", None,
                    "Also copy the deployable artifacts and a README with their numbers here.")
flags.DEFINE_bool("require_targets", False,
                  "Exit with status 3 unless the released-model targets are all met.")


def main():
  config = pipeline.PipelineConfig(**{
      name: FLAGS[name].value for name in pipeline.PipelineConfig.__dataclass_fields__})
  config.validate()
  if FLAGS.fresh:
    pipeline.clean(config.work_dir)
  results = pipeline.Pipeline(config).run(only=FLAGS.until, force=FLAGS.force)
  if "report" in results:
    print(f"Report: {results['report']['report_md']}")
    if FLAGS.release_dir:
      from tf_gtsrb.export import release  # pylint: disable=g-import-not-at-top
      command = "gtsrb-pipeline " + " ".join(
          a for a in sys.argv[1:] if not a.startswith(("--release_dir", "--force")))
      files = release.release(results, FLAGS.release_dir, command)
      print(f"Released to {FLAGS.release_dir}: {', '.join(files)}")
    if FLAGS.require_targets and not results["report"]["targets_met"]:
      return 3
  return 0


def run():
  common.run(main)


if __name__ == "__main__":
  run()

"""The end-to-end job's report: benchmark tables, compression summary and target checks."""

import dataclasses
import os

from tf_gtsrb import io_utils

INT8_NAME = "pruned+QAT (TFLite INT8)"
QAT_NAME = "pruned+QAT (Keras)"
PRUNED_NAME = "pruned (Keras float)"
PTQ_NAME = "pruned+PTQ (TFLite INT8)"
FLOAT_TFLITE_NAME = "baseline (TFLite float32)"
KERAS_NAME = "baseline (Keras float)"

# The project's targets for the released INT8 model.
TARGETS = {
    "int8_test_accuracy_min": 0.988,
    "int8_file_kb_max": 100,
    "macs_share_of_baseline_max": 0.40,
    "speedup_vs_keras_min": 5.0,
    "corruption_kind_min": 0.80,  # Each corruption kind's mean accuracy, when the suite ran.
}


def target_checks(benchmark, robustness=None):
  """[(description, measured text, passed)] for the released INT8 model; `robustness`: the
  corruption suite's test scores ({model name: result}), when it ran."""
  models = benchmark["models"]
  int8, keras_float = models[INT8_NAME], models[KERAS_NAME]
  tflite_float = models[FLOAT_TFLITE_NAME]
  macs_share = int8["macs"] / keras_float["macs"]
  speedup = keras_float["latency"]["median_ms"] / int8["latency"]["median_ms"]
  accuracy = int8["metrics"]["accuracy"]
  size_kb = int8["file_size_bytes"] / 1024
  checks = [
      ("INT8 test accuracy >= 98.8%", f"{100 * accuracy:.2f}%",
       accuracy >= TARGETS["int8_test_accuracy_min"]),
      ("INT8 flatbuffer <= 100 KB", f"{size_kb:.1f} KB", size_kb <= TARGETS["int8_file_kb_max"]),
      ("MACs <= 40% of the baseline", f"{100 * macs_share:.1f}%",
       macs_share <= TARGETS["macs_share_of_baseline_max"]),
      ("batch-1 latency >= 5x lower than Keras float", f"{speedup:.1f}x",
       speedup >= TARGETS["speedup_vs_keras_min"]),
      ("INT8 latency lower than TFLite float32",
       f"{int8['latency']['median_ms']:.3f} ms vs {tflite_float['latency']['median_ms']:.3f} ms",
       int8["latency"]["median_ms"] < tflite_float["latency"]["median_ms"]),
  ]
  ptq = models.get(PTQ_NAME)
  if ptq:
    checks.append(("QAT beats post-training quantization (test accuracy)",
                   f"{100 * accuracy:.2f}% vs {100 * ptq['metrics']['accuracy']:.2f}%",
                   accuracy > ptq["metrics"]["accuracy"]))  # A tie does not beat it.
  agreement = benchmark.get("agreement")
  if agreement:
    checks.append(("INT8 agrees with its QAT Keras model on >= 99% of test images",
                   f"{100 * agreement['agreement']:.2f}%", agreement["passed"]))
  if robustness and INT8_NAME in robustness:
    scores = robustness[INT8_NAME]
    worst = scores["worst_kind"]
    checks.append((f"Every corruption kind >= 80% (INT8, {scores['num_images']:,} test images)",
                   f"{worst} {100 * scores['kind_mean'][worst]:.2f}%",
                   scores["kind_mean"][worst] >= TARGETS["corruption_kind_min"]))
  return checks


def write_pipeline_report(results, config, output_dir, seconds=None):
  """Writes report.md, report.json and report.html (`html_report`) from the pipeline
  steps' results; returns their paths. `seconds`: {step: wall time of its last run}."""
  benchmark = io_utils.read_json(results["benchmark"].benchmark)
  bench_md = _read_text(os.path.join(os.path.dirname(results["benchmark"].benchmark),
                                     "benchmark.md"))
  prune = io_utils.read_json(os.path.join(os.path.dirname(results["prune"].model),
                                          "prune.json"))
  robustness = {split: io_utils.read_json(path) if path else None
                for split, path in (("validation", results["benchmark"].validation_robustness),
                                    ("test", results["benchmark"].robustness))}
  checks = target_checks(benchmark, robustness["test"])
  why_missing = (_TRAINED_ON_VALIDATION if config.fine_tune_on_validation
                 else _NO_VALIDATION_SPLIT)  # For the fine-tuned models' validation accuracy.
  splits = results["prepare"].splits
  lines = [
      "# tf_gtsrb pipeline report", "",
      f"Data: {results['prepare'].source_dir} ({results['prepare'].config}); "
      + ", ".join(f"{k} {v:,}" for k, v in sorted(splits.items())) + ".  ",
      (f"Baseline {results['train'].given} (given), validation accuracy (track split): "
       if results["train"].given else "Baseline best validation accuracy (track split): ")
      + f"{_percent(results['train'].best_val_accuracy)}"
      + (f", {_percent(results['train'].average_val_accuracy)} after weight averaging"
         if config.swa_epochs else "") + ". "
      f"Pruned channels {prune['channels_before']} -> {prune['channels_after']} "
      f"({prune['criterion']}{_in_stages(prune)}), params {prune['params_before']:,} -> "
      f"{prune['params_after']:,}, MACs {prune['macs_before']:,} -> {prune['macs_after']:,}; "
      f"validation accuracy {_percent(results['prune'].val_accuracy, why_missing)}"
      + (" after weight averaging" if "swa" in prune else "") + ".  ",
      *_sparsify_line(results.get("sparsify"), config, why_missing),
      "QAT validation accuracy (float simulation): "
      f"{_percent(results['qat'].val_accuracy, why_missing)}"
      + _flatbuffer_validation(results["convert"].val_accuracy, why_missing) + ".",
      "",
      bench_md.replace("# GTSRB test benchmark", "## Official test set").strip(), "",
      *_robustness_lines(robustness),
      *_wall_time_lines(seconds),
      "## Targets", "", "| Target | Measured | Met |", "|---|---:|:---:|",
  ] + [f"| {name} | {value} | {'yes' if ok else 'NO'} |" for name, value, ok in checks] + [
      "", "## Settings", "", "```",
      *[f"{k} = {v}" for k, v in dataclasses.asdict(config).items()], "```", ""]
  report = {"settings": dataclasses.asdict(config),
            "steps": {step: dataclasses.asdict(record) for step, record in results.items()},
            "targets": [{"target": n, "measured": v, "met": ok} for n, v, ok in checks],
            "benchmark": benchmark, "pruning": prune, "corruption_suite": robustness,
            "seconds": seconds or {}}
  md_path = os.path.join(output_dir, "report.md")
  json_path = os.path.join(output_dir, "report.json")
  io_utils.write_json(json_path, report)
  io_utils.write_text(md_path, "\n".join(lines))
  from tf_gtsrb.evaluation import html_report  # pylint: disable=g-import-not-at-top
  html_path = html_report.write_html_report(
      os.path.join(output_dir, "report.html"),
      benchmark_dir=os.path.dirname(results["benchmark"].benchmark),
      work_dir=os.path.dirname(os.path.abspath(output_dir)),
      data_dir=results["prepare"].dataset_dir, gallery_model=INT8_NAME,
      files=[results["convert"].int8, results["convert"].ptq_int8,
             results["convert"].baseline_float32])
  return {"report_md": md_path, "report_json": json_path, "report_html": html_path,
          "targets_met": all(ok for _, _, ok in checks)}


def _sparsify_line(sparsify, config, why_missing):
  """The magnitude pruning / clustering step's sentence; none when it was off."""
  if not sparsify or sparsify.kernel_sparsity is None:
    return []
  return [f"Magnitude pruning to {100 * config.sparsity:.0f}% sparsity"
          + (f", clustered to {config.clusters} values" if config.clusters else "")
          + f": kernel sparsity {100 * sparsify.kernel_sparsity:.1f}%, validation accuracy "
          f"{_percent(sparsify.val_accuracy, why_missing)}.  "]


def wall_time(seconds):
  """'74.2 minutes (train 48.0, prune 20.1, ...)' from {step: seconds}, longest first; None
  if unknown."""
  if not seconds or None in seconds.values():
    return None
  steps = ", ".join(f"{step} {s / 60:.1f}"
                    for step, s in sorted(seconds.items(), key=lambda item: -item[1]))
  return f"{sum(seconds.values()) / 60:.1f} minutes ({steps})"


def _wall_time_lines(seconds):
  """The steps' wall time as a report section; none when not known."""
  text = wall_time(seconds)
  if not text:
    return []
  return ["## Wall time", "", f"The steps before this report took {text}, each as its last "
          "run measured it (a run resumed after a stop counts only what ran after it).", ""]


def _robustness_lines(robustness):
  """The corruption suite's comparison tables ({split: scores or None}; validation decides,
  test reports) as a report section; none when not run."""
  if not robustness["test"]:
    return []
  lines = ["## Robustness to corruptions", "",
           "The corruption suite (docs/robustness.md): accuracy per kind, averaged over its "
           "severities.", ""]
  for split in ("validation", "test"):
    if robustness[split]:
      lines += robustness_table_lines(robustness[split], split)
  return lines


def robustness_table_lines(scores, split):
  """'On N <split> images:' and the suite's comparison table, as markdown lines."""
  from tf_gtsrb.evaluation import robustness  # pylint: disable=g-import-not-at-top
  sample = next(iter(scores.values()))["num_images"]
  return [f"On {sample:,} {split} images:", "", robustness.comparison_table(scores).strip(), ""]


def _flatbuffer_validation(accuracies, why_missing):
  """'; INT8 flatbuffers on it (LiteRT): ...' from the convert step's validation scores."""
  if accuracies is None:  # A convert step from before these were measured.
    return ""
  return ("; INT8 flatbuffers on it (LiteRT): "
          f"pruned+QAT {_percent(accuracies['int8'], why_missing)}, "
          f"pruned+PTQ {_percent(accuracies['ptq_int8'], why_missing)}")


def _read_text(path):
  with open(path) as f:
    return f.read()


_NO_VALIDATION_SPLIT = "(no validation split: final fit on every track)"
_TRAINED_ON_VALIDATION = "(fine-tuned on the validation tracks too: final fit)"


def _in_stages(prune):
  """', in N stages' for a gradual pruning (records before stages existed cut at once)."""
  return f", in {prune['stages']} stages" if prune.get("stages", 1) > 1 else ""


def _percent(accuracy, why_missing=_NO_VALIDATION_SPLIT):
  """An accuracy as '99.12%', or why it was not measured."""
  return f"n/a {why_missing}" if accuracy is None else f"{100 * accuracy:.2f}%"

"""End-to-end tests of tf_gtsrb.pipeline on the bundled sample: outputs, skipping, re-runs, kills.

One tiny run of the whole job is shared by the module; tests that change
settings work on a copy of its work directory (markers keep absolute paths, so
a copy reads the unchanged upstream files of the shared run).
"""

import dataclasses
import importlib
import json
import os
import shutil
import subprocess
import sys
import time

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import numpy as np
import pytest

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb import pipeline
from tf_gtsrb.export import tflite
from tf_gtsrb.models import io as model_io

STEPS = pipeline.STEPS


def _through(step):
  """The steps up to and including `step`."""
  return STEPS[:STEPS.index(step) + 1]

SETTINGS = dict(epochs=1, steps_per_epoch=3, batch_size=32, prune_epochs=1, qat_epochs=1,
                latency_rounds=5, num_calibration_images=64,
                max_macs_percent=15)  # Tighter than the parameter budget, so that it binds.


def _config(work_dir, **changes):
  return pipeline.PipelineConfig(work_dir=str(work_dir), **{**SETTINGS, **changes})


def _run(config, **kwargs):
  """Runs the pipeline; returns (results, log lines)."""
  lines = []
  results = pipeline.Pipeline(config, log=lines.append).run(**kwargs)
  return results, lines


def _run_until_interrupted(config):
  """Runs the pipeline until a patched step raises KeyboardInterrupt; returns the log lines."""
  lines = []
  with pytest.raises(KeyboardInterrupt):
    pipeline.Pipeline(config, log=lines.append).run()
  return lines


def _status(lines):
  """{step: 'ran' | 'skipped'} from the pipeline's log lines."""
  status = {}
  for line in lines:
    for step in STEPS:
      if line == f"[{step}] running":
        status[step] = "ran"
      elif line == f"[{step}] up to date, skipped":
        status[step] = "skipped"
  return status


def _marker(work_dir, step):
  return os.path.join(str(work_dir), step, ".done.json")


def _marker_mtimes(work_dir):
  return {step: os.stat(_marker(work_dir, step)).st_mtime_ns for step in STEPS}


def _copy(finished, tmp_path):
  work_dir = tmp_path / "work"
  shutil.copytree(finished["work_dir"], work_dir)
  return work_dir


def _as_json(record):
  """A step record as its marker holds it."""
  return json.loads(json.dumps(dataclasses.asdict(record)))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """The whole job run once with tiny settings."""
  work_dir = tmp_path_factory.mktemp("pipeline") / "work"
  results, lines = _run(_config(work_dir))
  return {"work_dir": str(work_dir), "results": results, "lines": lines}


def test_run_writes_every_output(finished):
  work_dir, results = finished["work_dir"], finished["results"]
  assert _status(finished["lines"]) == {step: "ran" for step in STEPS}
  for step in STEPS:
    marker = io_utils.read_json(_marker(work_dir, step))
    assert marker["outputs"] == _as_json(results[step])

  # The INT8 flatbuffer: integer only, pixel - 128 input, 43 int8 outputs.
  int8_path = results["convert"].int8
  assert int8_path.startswith(os.path.join(work_dir, "convert"))
  with open(int8_path, "rb") as f:
    tflite.check_fully_int8(f.read())
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  interpreter = Interpreter(model_path=int8_path)
  interpreter.allocate_tensors()
  (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
  assert inp["dtype"] == np.int8 and tuple(inp["shape"]) == (1, 32, 32, 3)
  scale, zero_point = inp["quantization"]
  assert scale == pytest.approx(1 / 255, rel=1e-5) and zero_point == -128
  assert out["dtype"] == np.int8 and tuple(out["shape"]) == (1, 43)

  from tf_gtsrb.data import input_pipeline  # pylint: disable=g-import-not-at-top
  images, _ = input_pipeline.load_arrays(results["prepare"].dataset_dir, "test", limit=8)
  assert images.shape == (8, 32, 32, 3)
  out_scale, out_zero = out["quantization"]
  for image in images:
    interpreter.set_tensor(inp["index"], (image.astype(np.int16) - 128).astype(np.int8)[None])
    interpreter.invoke()
    scores = interpreter.get_tensor(out["index"])
    assert scores.shape == (1, 43)
    probabilities = (scores.astype(np.float32) - out_zero) * out_scale
    assert abs(probabilities.sum() - 1.0) < 0.25  # Softmax, up to INT8 rounding.

  # The flatbuffers' validation accuracy, as the interpreter scores them image by image.
  images, labels = input_pipeline.load_arrays(results["prepare"].dataset_dir, "validation")
  for name in ("int8", "ptq_int8"):
    scorer = Interpreter(model_path=getattr(results["convert"], name))
    scorer.allocate_tensors()
    (inp,), (out,) = scorer.get_input_details(), scorer.get_output_details()
    scale, zero_point = inp["quantization"]
    correct = 0
    for image, label in zip(images, labels):
      quantized = np.clip(np.rint(image / 255.0 / scale + zero_point), -128, 127)
      scorer.set_tensor(inp["index"], quantized.astype(np.int8)[None])
      scorer.invoke()
      correct += int(scorer.get_tensor(out["index"])[0].argmax() == label)
    assert results["convert"].val_accuracy[name] == pytest.approx(correct / len(labels))
  with open(results["report"].report_md) as f:
    assert (f"pruned+QAT {100 * results['convert'].val_accuracy['int8']:.2f}%, pruned+PTQ "
            in f.read())

  convert_dir = os.path.join(work_dir, "convert")
  for name in ("model_int8.cc", "model_int8.h", "micro_ops.txt"):
    assert os.path.getsize(os.path.join(convert_dir, name)) > 0
  with open(os.path.join(convert_dir, "labels.txt")) as f:
    assert len(f.read().splitlines()) == 43
  assert os.path.exists(results["convert"].baseline_float32)

  # Pruning shrank the model (and the budget held).
  prune = io_utils.read_json(os.path.join(work_dir, "prune", "prune.json"))
  assert prune["params_after"] <= pipeline.PipelineConfig.max_params
  assert prune["macs_after"] <= prune["macs_before"] * SETTINGS["max_macs_percent"] / 100

  # The report: the two published tables and the targets.
  with open(results["report"].report_md) as f:
    report = f.read()
  assert "| Model | Accuracy (%)" in report
  assert "| Model | Inference Time (ms)" in report
  assert "## Targets" in report
  report_json = io_utils.read_json(results["report"].report_json)
  assert report_json["targets"]
  assert {"target", "measured", "met"} <= set(report_json["targets"][0])
  assert report_json["settings"]["latency_rounds"] == SETTINGS["latency_rounds"]
  benchmark = io_utils.read_json(results["benchmark"].benchmark)
  assert all(m["latency"]["rounds"] == SETTINGS["latency_rounds"]
             for m in benchmark["models"].values())


def test_every_training_step_writes_tensorboard_logs_under_the_work_dir(finished):
  import glob  # pylint: disable=g-import-not-at-top
  for logs in ("train/logs", "prune/logs/fit", "qat/logs/fit"):
    events = glob.glob(os.path.join(finished["work_dir"], logs, "**", "events.out.tfevents.*"),
                       recursive=True)
    assert events, logs
  for step in ("train", "prune", "qat"):  # The curves of the HTML report.
    history = io_utils.read_json(os.path.join(finished["work_dir"], step, "history.json"))
    assert history["learning_rate"] and len(history["loss"]) == len(history["learning_rate"])


def test_a_marker_that_does_not_fit_its_record_reruns_the_step(finished, tmp_path):
  """A marker from another version (its outputs not the step's record) claims nothing."""
  work_dir = _copy(finished, tmp_path)
  marker = io_utils.read_json(_marker(work_dir, "report"))
  marker["outputs"]["from_another_version"] = True
  io_utils.write_json(_marker(work_dir, "report"), marker)
  results, lines = _run(_config(work_dir))
  assert _status(lines) == {**{step: "skipped" for step in STEPS[:-1]}, "report": "ran"}
  assert isinstance(results["report"], pipeline.ReportRecord)
  assert "from_another_version" not in io_utils.read_json(_marker(work_dir, "report"))["outputs"]


def test_second_run_skips_every_step(finished):
  work_dir = finished["work_dir"]
  before = _marker_mtimes(work_dir)
  results, lines = _run(_config(work_dir))
  assert _status(lines) == {step: "skipped" for step in STEPS}
  assert not any("running" in line for line in lines)
  assert _marker_mtimes(work_dir) == before
  assert {step: _as_json(r) for step, r in results.items()} == {
      step: _as_json(r) for step, r in finished["results"].items()}


def test_changed_setting_reruns_that_step_and_later_ones(finished, tmp_path):
  work_dir = _copy(finished, tmp_path)
  before = _marker_mtimes(work_dir)
  results, lines = _run(_config(work_dir, latency_rounds=6))
  status = _status(lines)
  assert status == {**{step: "skipped" for step in _through("convert")},
                    "benchmark": "ran", "report": "ran"}
  after = _marker_mtimes(work_dir)
  assert all(after[step] == before[step] for step in _through("convert"))
  benchmark = io_utils.read_json(results["benchmark"].benchmark)
  assert results["benchmark"].benchmark.startswith(str(work_dir))
  assert all(m["latency"]["rounds"] == 6 for m in benchmark["models"].values())
  assert io_utils.read_json(results["report"].report_json)["settings"]["latency_rounds"] == 6

  # And now it is up to date with the new setting.
  _, lines = _run(_config(work_dir, latency_rounds=6))
  assert _status(lines) == {step: "skipped" for step in STEPS}


def test_teacher_makes_the_baseline_train_again_learning_from_it(finished, tmp_path,
                                                               monkeypatch):
  from tf_gtsrb.training import trainer  # pylint: disable=g-import-not-at-top
  work_dir = _copy(finished, tmp_path)
  teacher = str(tmp_path / "teacher.keras")
  shutil.copy(os.path.join(work_dir, "train", "model.keras"), teacher)
  configs = []

  def stop_at_training(config, **kwargs):
    configs.append(config)
    raise KeyboardInterrupt
  monkeypatch.setattr(trainer, "train", stop_at_training)
  lines = _run_until_interrupted(_config(work_dir, teacher=teacher))
  assert _status(lines) == {"prepare": "skipped", "train": "ran"}
  assert configs[0].teacher == teacher


def _teacher_given_to(function_owner, function_name, config, monkeypatch):
  """Runs the pipeline until `function_owner.function_name` is called; returns (its
  `teacher` argument, the log lines)."""
  kwargs, lines = _keywords_given_to(function_owner, function_name, config, monkeypatch)
  return kwargs.get("teacher"), lines


def _keywords_given_to(function_owner, function_name, config, monkeypatch):
  """Runs the pipeline until `function_owner.function_name` is called; returns (its
  keyword arguments, the log lines)."""
  calls = []

  def stop(model, *args, **kwargs):
    calls.append(kwargs)
    raise KeyboardInterrupt
  monkeypatch.setattr(function_owner, function_name, stop)
  lines = _run_until_interrupted(config)
  return calls[0], lines


def _baseline_and_copy(work_dir, tmp_path):
  """(the run's baseline path, a copy of it standing in for another seed's baseline)."""
  baseline = io_utils.read_json(_marker(work_dir, "train"))["outputs"]["model"]
  other = str(tmp_path / "other_seed.keras")
  shutil.copy(baseline, other)
  return baseline, other


def test_distill_pruning_fine_tunes_the_pruned_model_against_the_baseline(finished, tmp_path,
                                                                          monkeypatch):
  from tf_gtsrb.training import compile as compile_lib  # pylint: disable=g-import-not-at-top
  work_dir = _copy(finished, tmp_path)
  teacher, lines = _teacher_given_to(compile_lib, "fine_tune",
                                     _config(work_dir, distill_pruning=True), monkeypatch)
  assert _status(lines) == {"prepare": "skipped", "train": "skipped", "analyze": "skipped",
                            "prune": "ran"}
  baseline = io_utils.read_json(_marker(work_dir, "train"))["outputs"]["model"]
  assert teacher.count_params() == model_io.load_model(baseline).count_params()


def test_distill_qat_fine_tunes_the_quantization_aware_model_against_the_teachers(
    finished, tmp_path, monkeypatch):
  from tf_gtsrb.compression import quantization  # pylint: disable=g-import-not-at-top
  work_dir = _copy(finished, tmp_path)
  baseline, other = _baseline_and_copy(work_dir, tmp_path)
  teacher, lines = _teacher_given_to(
      quantization, "qat_fine_tune", _config(work_dir, distill_qat=True, pruning_teachers=other),
      monkeypatch)
  # The teachers are a setting of the prune step (their fingerprint does not depend on which
  # fine-tune uses them), so pruning runs again too: more than needed, never stale.
  assert _status(lines) == {**{step: "skipped" for step in _through("analyze")}, "prune": "ran",
                            "sparsify": "ran", "qat": "ran"}
  assert teacher.count_params() == 2 * model_io.load_model(baseline).count_params()


@pytest.mark.parametrize("owner, function, step", [
    ("tf_gtsrb.training.compile", "fine_tune", "distill_pruning"),
    ("tf_gtsrb.compression.quantization", "qat_fine_tune", "distill_qat")])
def test_distill_settings_reach_the_distilled_step(finished, tmp_path, monkeypatch, owner,
                                                   function, step):
  work_dir = _copy(finished, tmp_path)
  config = _config(work_dir, distill_mixup=0.4, distill_teacher_view=True,
                   distill_both_views=True, fine_tune_noise_probability=0.5, **{step: True})
  kwargs, lines = _keywords_given_to(importlib.import_module(owner), function, config,
                                     monkeypatch)
  assert kwargs["teacher"] is not None and kwargs["distill_mixup"] == 0.4
  assert kwargs["distill_both_views"]
  assert "ran" in _status(lines).values()


def test_distill_teacher_view_gives_only_the_distilled_fine_tunes_a_view_pair(
    finished, tmp_path, monkeypatch):
  from tf_gtsrb.training import compile as compile_lib  # pylint: disable=g-import-not-at-top
  work_dir = _copy(finished, tmp_path)
  fine_tune, calls = compile_lib.fine_tune, []

  def recording(model, train_ds, *args, **kwargs):
    calls.append((train_ds.element_spec[0], kwargs.get("teacher") is not None))
    return fine_tune(model, train_ds, *args, **kwargs)
  monkeypatch.setattr(compile_lib, "fine_tune", recording)
  _, lines = _run(_config(work_dir, distill_pruning=True, distill_teacher_view=True,
                          distill_both_views=True, distill_mixup=0.4, prune_swa_epochs=1,
                          fine_tune_noise_probability=0.5))
  assert _status(lines)["report"] == "ran"
  (prune_images, prune_taught), *_, (qat_images, qat_taught) = calls
  assert prune_taught and isinstance(prune_images, tuple) and len(prune_images) == 2
  assert not qat_taught and not isinstance(qat_images, tuple)


def test_pruning_teachers_join_the_baseline_in_the_pruned_models_teacher(finished, tmp_path,
                                                                         monkeypatch):
  from tf_gtsrb.training import compile as compile_lib  # pylint: disable=g-import-not-at-top
  work_dir = _copy(finished, tmp_path)
  baseline, other = _baseline_and_copy(work_dir, tmp_path)
  teacher, lines = _teacher_given_to(
      compile_lib, "fine_tune", _config(work_dir, distill_pruning=True, pruning_teachers=other),
      monkeypatch)
  assert _status(lines)["prune"] == "ran"
  baseline_model = model_io.load_model(baseline)
  assert teacher.count_params() == 2 * baseline_model.count_params()
  images = np.random.default_rng(0).random((4, *baseline_model.input_shape[1:]), np.float32)
  np.testing.assert_allclose(teacher.predict(images, verbose=0),
                             baseline_model.predict(images, verbose=0), rtol=1e-5, atol=1e-6)


def test_pruning_teachers_may_be_float_tflite_exports(finished, tmp_path, monkeypatch):
  from tf_gtsrb.export import tflite  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.training import compile as compile_lib  # pylint: disable=g-import-not-at-top
  work_dir = _copy(finished, tmp_path)
  baseline_model = model_io.load_model(
      io_utils.read_json(_marker(work_dir, "train"))["outputs"]["model"])
  exported = tmp_path / "baseline_float32.tflite"
  exported.write_bytes(tflite.convert(baseline_model, "float32"))
  teacher, lines = _teacher_given_to(
      compile_lib, "fine_tune",
      _config(work_dir, distill_pruning=True, pruning_teachers=str(exported)), monkeypatch)
  assert _status(lines)["prune"] == "ran"
  assert teacher.count_params() == 2 * baseline_model.count_params()
  images = np.random.default_rng(0).random((4, *baseline_model.input_shape[1:]), np.float32)
  np.testing.assert_allclose(teacher.predict(images, verbose=0),
                             baseline_model.predict(images, verbose=0), rtol=1e-4, atol=1e-5)


def test_teacher_baselines_are_trained_beside_the_baseline_and_join_its_teacher(
    finished, tmp_path, monkeypatch):
  from tf_gtsrb.training import compile as compile_lib  # pylint: disable=g-import-not-at-top
  work_dir = _copy(finished, tmp_path)
  history = os.path.join(work_dir, "train", "history.json")
  with open(history, "rb") as f:
    trained_history = f.read()
  teacher, lines = _teacher_given_to(
      compile_lib, "fine_tune", _config(work_dir, distill_pruning=True, teacher_baselines=1),
      monkeypatch)
  assert _status(lines)["train"] == "ran"
  assert not any("again from scratch" in line for line in lines)  # The baseline is kept,
  with open(history, "rb") as f:
    assert f.read() == trained_history
  other = os.path.join(work_dir, "train", "teacher_seed1")  # and one of seed 1 trained.
  assert io_utils.read_json(os.path.join(other, "config.json"))["seed"] == 1
  baseline = model_io.load_model(os.path.join(work_dir, "train", "model.keras"))
  second = model_io.load_model(os.path.join(other, "model.keras"))
  images = np.random.default_rng(0).random((4, *baseline.input_shape[1:]), np.float32)
  assert not np.allclose(second.predict(images, verbose=0),
                         baseline.predict(images, verbose=0))
  assert teacher.count_params() == 2 * baseline.count_params()  # Their mean teaches.
  np.testing.assert_allclose(
      teacher.predict(images, verbose=0),
      (baseline.predict(images, verbose=0) + second.predict(images, verbose=0)) / 2,
      rtol=1e-5, atol=1e-6)


def test_clean_teacher_baselines_train_on_their_own_schedule_without_robust_shares(
    finished, tmp_path, monkeypatch):
  from tf_gtsrb.training import compile as compile_lib  # pylint: disable=g-import-not-at-top
  work_dir = _copy(finished, tmp_path)
  robust = dict(noise_probability=0.5, sticker_probability=0.5, jpeg_probability=0.5)
  _, lines = _teacher_given_to(
      compile_lib, "fine_tune",
      _config(work_dir, distill_pruning=True, teacher_baselines=2, teacher_baseline_epochs=2,
              clean_teacher_baselines=True, **robust), monkeypatch)
  assert any("again from scratch" in line for line in lines)  # The baseline: other shares.
  baseline = io_utils.read_json(os.path.join(work_dir, "train", "config.json"))
  assert (baseline["epochs"], baseline["noise_probability"], baseline["jpeg_probability"]) == (
      SETTINGS["epochs"], 0.5, 0.5)
  for seed in (1, 2):
    config = io_utils.read_json(os.path.join(work_dir, "train", f"teacher_seed{seed}",
                                             "config.json"))
    assert config["seed"] == seed and config["epochs"] == 2
    assert (config["noise_probability"] == config["sticker_probability"]
            == config["jpeg_probability"] == 0.0)


def test_weight_averaging_added_to_a_finished_run_averages_without_retraining(finished,
                                                                              tmp_path):
  work_dir = _copy(finished, tmp_path)
  history = os.path.join(work_dir, "train", "history.json")
  with open(history, "rb") as f:
    trained_history = f.read()
  results, lines = _run(_config(work_dir, swa_epochs=1))
  assert _status(lines) == {"prepare": "skipped", **{step: "ran" for step in STEPS[1:]}}
  assert not any("again from scratch" in line for line in lines)
  with open(history, "rb") as f:
    assert f.read() == trained_history
  assert results["train"].model == os.path.join(work_dir, "train", "swa.keras")
  assert 0.0 <= results["train"].average_val_accuracy <= 1.0
  assert model_io.load_model(results["train"].model).output_shape == (None, 43)
  with open(results["report"].report_md) as f:
    assert "after weight averaging" in f.read()


def test_staged_pruning_then_weight_averaging_saves_the_average_taught_like_the_fine_tune(
    finished, tmp_path, monkeypatch):
  from tf_gtsrb.training import swa  # pylint: disable=g-import-not-at-top
  work_dir = _copy(finished, tmp_path)
  averaged = []
  average_weights = swa.average_weights

  def recording(model, *args, **kwargs):
    averaged.append((model, kwargs))
    return average_weights(model, *args, **kwargs)
  monkeypatch.setattr(swa, "average_weights", recording)
  results, lines = _run(_config(work_dir, distill_pruning=True, distill_mixup=0.4,
                                prune_epochs=2, prune_stages=2, prune_swa_epochs=1))
  assert _status(lines) == {**{step: "skipped" for step in _through("analyze")},
                            **{step: "ran" for step in STEPS[3:]}}
  (model, kwargs), = averaged
  assert kwargs["teacher"] is not None and kwargs["distill_mixup"] == 0.4
  record = io_utils.read_json(os.path.join(work_dir, "prune", "prune.json"))
  assert record["swa"]["epochs"] == 1 and record["stages"] == 2
  assert len(io_utils.read_json(os.path.join(work_dir, "prune", "history.json"))["loss"]) == 2
  assert sorted(os.listdir(os.path.join(work_dir, "prune", "logs"))) == ["fit1", "fit2", "swa"]
  assert results["prune"].val_accuracy == record["swa"]["average_val_accuracy"]
  saved = model_io.load_model(results["prune"].model)
  for saved_weights, averaged_weights in zip(saved.get_weights(), model.get_weights()):
    np.testing.assert_array_equal(saved_weights, averaged_weights)
  with open(results["report"].report_md) as f:
    report = f.read()
  assert (f"validation accuracy {100 * record['swa']['average_val_accuracy']:.2f}% after "
          "weight averaging") in report
  assert "(l1, in 2 stages)" in report


def test_final_fit_without_validation_split_runs_every_step(tmp_path):
  results, lines = _run(_config(tmp_path / "work", val_fraction=0.0))
  assert _status(lines) == {step: "ran" for step in STEPS}
  assert "validation" not in results["prepare"].splits
  assert "-val0-" in results["prepare"].config
  assert results["train"].best_val_accuracy is None
  assert results["prune"].val_accuracy is None and results["qat"].val_accuracy is None
  with open(results["report"].report_md) as f:
    report = f.read()
  # Baseline, pruned, QAT, and the two INT8 flatbuffers' accuracy.
  assert report.count("n/a (no validation split") == 5
  assert results["convert"].val_accuracy == {"int8": None, "ptq_int8": None}
  with open(results["convert"].int8, "rb") as f:
    assert not tflite.integer_problems(f.read())


def test_fine_tune_on_validation_trains_the_compressed_models_on_both_splits(
    finished, tmp_path, monkeypatch):
  from tf_gtsrb.data import input_pipeline  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.training import compile as compile_lib  # pylint: disable=g-import-not-at-top
  work_dir = _copy(finished, tmp_path)
  splits, validations = [], []
  train_dataset, fine_tune = input_pipeline.train_dataset, compile_lib.fine_tune

  def recording_dataset(data_dir, batch_size, **kwargs):
    splits.append(kwargs.get("split"))
    return train_dataset(data_dir, batch_size, **kwargs)

  def recording_fine_tune(model, train_ds, val_ds, *args, **kwargs):
    validations.append(val_ds)
    return fine_tune(model, train_ds, val_ds, *args, **kwargs)
  monkeypatch.setattr(input_pipeline, "train_dataset", recording_dataset)
  monkeypatch.setattr(compile_lib, "fine_tune", recording_fine_tune)
  results, lines = _run(_config(work_dir, fine_tune_on_validation=True))
  assert _status(lines) == {**{step: "skipped" for step in _through("analyze")},
                            **{step: "ran" for step in STEPS[3:]}}
  assert splits == ["train+validation"] * 2  # Pruning fine-tune, then QAT.
  assert validations and all(v is None for v in validations)
  assert results["prune"].val_accuracy is None and results["qat"].val_accuracy is None
  with open(results["report"].report_md) as f:
    report = f.read()
  assert report.count("n/a (fine-tuned on the validation tracks too") == 4
  assert "n/a (no validation split" not in report  # The baseline's is measured.


def test_given_baseline_model_is_compressed_without_training(finished, tmp_path, monkeypatch):
  from tf_gtsrb.training import trainer  # pylint: disable=g-import-not-at-top
  work_dir = _copy(finished, tmp_path)
  given = str(tmp_path / "mine.keras")
  shutil.copy(finished["results"]["train"].model, given)

  def no_training(*args, **kwargs):
    raise AssertionError("a given baseline must not be trained")
  monkeypatch.setattr(trainer, "train", no_training)
  results, lines = _run(_config(work_dir, baseline_model=given))
  assert _status(lines) == {"prepare": "skipped", **{step: "ran" for step in STEPS[1:]}}
  train = results["train"]
  assert train.given == given and train.model == str(work_dir / "train" / "baseline.keras")
  np.testing.assert_array_equal(
      model_io.load_model(train.model).get_layer("conv1").get_weights()[0],
      model_io.load_model(given).get_layer("conv1").get_weights()[0])
  assert 0.0 <= train.best_val_accuracy <= 1.0
  with open(results["report"].report_md) as f:
    assert f"Baseline {given} (given), validation accuracy" in f.read()
  _, lines = _run(_config(work_dir, baseline_model=given))
  assert _status(lines) == {step: "skipped" for step in STEPS}

  model_io.save_model(model_io.load_model(results["prune"].model), given)  # Changed file.
  _, lines = _run(_config(work_dir, baseline_model=given), only="train")
  assert _status(lines) == {"prepare": "skipped", "train": "ran"}


def test_given_baseline_may_be_a_float_tflite_export(finished, tmp_path):
  from tf_gtsrb.export import tflite  # pylint: disable=g-import-not-at-top
  work_dir = _copy(finished, tmp_path)
  trained = model_io.load_model(finished["results"]["train"].model)
  given = tmp_path / "released_float32.tflite"
  given.write_bytes(tflite.convert(trained, "float32"))
  results, lines = _run(_config(work_dir, baseline_model=str(given)), only="train")
  assert _status(lines) == {"prepare": "skipped", "train": "ran"}
  rebuilt = model_io.load_model(results["train"].model)
  images = np.random.default_rng(0).random((8, *trained.input_shape[1:]), np.float32)
  np.testing.assert_allclose(rebuilt.predict(images, verbose=0), trained.predict(images, verbose=0),
                             atol=1e-5)
  # BatchNorm statistics measured on training images, not left at mean 0 and variance 1.
  assert np.abs(rebuilt.get_layer("bn1").moving_mean.numpy()).max() > 0
  from tf_gtsrb.evaluation import evaluate  # pylint: disable=g-import-not-at-top
  measured = evaluate.evaluate_keras_model(trained, results["prepare"].dataset_dir,
                                           "validation", 32)["metrics"]["accuracy"]
  assert results["train"].best_val_accuracy == pytest.approx(measured)


def test_given_baseline_that_is_not_a_traffic_sign_cnn(finished, tmp_path):
  from tf_gtsrb.keras import keras  # pylint: disable=g-import-not-at-top
  work_dir = _copy(finished, tmp_path)
  given = str(tmp_path / "dense.keras")
  model_io.save_model(keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                                        keras.layers.Dense(43)]), given)
  with pytest.raises(errors.ModelError, match=f"{given}: .*not a TrafficSignCNN"):
    _run(_config(work_dir, baseline_model=given))
  assert not os.path.exists(_marker(work_dir, "train"))


def test_forced_step_reruns_the_steps_after_it(finished, tmp_path, monkeypatch):
  work_dir = _copy(finished, tmp_path)
  outputs = io_utils.read_json(_marker(work_dir, "benchmark"))["outputs"]
  calls = []
  monkeypatch.setattr(pipeline.Pipeline, "_benchmark",
                      lambda self, results: calls.append(1) or pipeline.BenchmarkRecord(**outputs))
  _, lines = _run(_config(work_dir), force=["benchmark"])
  assert calls == [1]
  assert _status(lines) == {**{step: "skipped" for step in _through("convert")},
                            "benchmark": "ran", "report": "ran"}


def test_failed_step_leaves_no_marker_and_runs_again(finished, tmp_path, monkeypatch):
  work_dir = _copy(finished, tmp_path)
  partial = os.path.join(work_dir, "convert", "model_int8.tflite")

  def failing_convert(self, results):
    del self, results
    with open(partial, "wb") as f:
      f.write(b"partial")
    raise RuntimeError("conversion interrupted")

  with monkeypatch.context() as patch:
    patch.setattr(pipeline.Pipeline, "_convert", failing_convert)
    with pytest.raises(RuntimeError, match="interrupted"):
      _run(_config(work_dir, num_calibration_images=32))
  assert not os.path.exists(_marker(work_dir, "convert"))
  assert os.path.exists(_marker(work_dir, "qat"))

  results, lines = _run(_config(work_dir, num_calibration_images=32), only="convert")
  assert _status(lines) == {**{step: "skipped" for step in _through("qat")}, "convert": "ran"}
  assert os.path.exists(_marker(work_dir, "convert"))
  assert set(results) == set(_through("convert"))
  assert results["convert"].conversion["num_calibration_images"] == 32
  with open(partial, "rb") as f:
    tflite.check_fully_int8(f.read())


def test_failed_benchmark_does_not_pass_off_old_results(finished, tmp_path, monkeypatch):
  """The failed run's error is shown; the previous benchmark set stays whole (byte for byte)
  but no marker claims it is up to date, so the next run benchmarks again."""
  from tf_gtsrb.benchmark import run as bench  # pylint: disable=g-import-not-at-top
  work_dir = _copy(finished, tmp_path)
  previous = os.path.join(work_dir, "benchmark", "benchmark.json")
  with open(previous, "rb") as f:
    before = f.read()
  failing = tmp_path / "failing_python"  # Stands in for the interpreter the benchmark runs in.
  failing.write_text("#!/bin/sh\necho partial output\necho 'error: no data' >&2\nexit 1\n")
  failing.chmod(0o755)
  with monkeypatch.context() as patch:
    patch.setattr(bench.sys, "executable", str(failing))
    with pytest.raises(errors.GtsrbError, match=r"benchmark failed \(exit 1\):\nerror: no data"):
      _run(_config(work_dir), force=["benchmark"])
  with open(previous, "rb") as f:
    assert f.read() == before
  assert not os.path.exists(_marker(work_dir, "benchmark"))
  assert os.path.exists(_marker(work_dir, "convert"))
  _, lines = _run(_config(work_dir))
  assert _status(lines) == {**{step: "skipped" for step in _through("convert")},
                            "benchmark": "ran", "report": "ran"}


@pytest.mark.parametrize("content", ["", "{\"fingerprint\": ", "[]", "{}"])
def test_damaged_marker_reruns_its_step(finished, tmp_path, content):
  work_dir = _copy(finished, tmp_path)
  with open(_marker(work_dir, "report"), "w") as f:
    f.write(content)
  _, lines = _run(_config(work_dir))
  assert _status(lines) == {**{step: "skipped" for step in STEPS[:-1]}, "report": "ran"}
  assert io_utils.read_json(_marker(work_dir, "report"))["outputs"]["report_md"].startswith(
      str(work_dir))


def test_rebuilt_dataset_retrains_from_scratch(finished, tmp_path):
  """A prepare setting the trainer does not see (the balancing) must not resume the old run."""
  work_dir = _copy(finished, tmp_path)
  results, lines = _run(_config(work_dir, balance_target=11), only="train")
  assert _status(lines) == {"prepare": "ran", "train": "ran"}
  assert any("from scratch" in line for line in lines)
  new_dataset = results["prepare"].dataset_dir
  assert new_dataset != finished["results"]["prepare"].dataset_dir
  saved = io_utils.read_json(os.path.join(work_dir, "train", "config.json"))
  assert saved["data_dir"] == new_dataset
  assert os.path.exists(_marker(work_dir, "train"))


def test_other_data_in_the_same_work_dir_rebuilds_the_dataset(finished, tmp_path):
  """The sample's dataset is never reused for other data, at another path or changed in place."""
  import layouts  # pylint: disable=g-import-not-at-top
  work_dir = _copy(finished, tmp_path)
  layout = layouts.OfficialLayout(classes=(1, 2))
  archive_dir = layout.write(tmp_path / "archives")
  results, lines = _run(_config(work_dir, archive_dir=archive_dir), only="prepare")
  assert _status(lines) == {"prepare": "ran"}
  assert results["prepare"].splits["test"] == 4  # Not the sample's 430.
  assert results["prepare"].dataset_dir == finished["results"]["prepare"].dataset_dir.replace(
      finished["work_dir"], str(work_dir))
  extra = ["00099.ppm", *layout.test_rows[0][1:]]  # The same path, other content.
  layout.test_rows.append(extra)
  layout.test_images["GTSRB/Final_Test/Images/00099.ppm"] = layout.test_images[
      "GTSRB/Final_Test/Images/00000.ppm"]
  layout.write(tmp_path / "archives")
  results, lines = _run(_config(work_dir, archive_dir=archive_dir), only="prepare")
  assert _status(lines) == {"prepare": "ran"}
  assert results["prepare"].splits["test"] == 5


def test_report_and_release_state_the_wall_time_of_the_steps(finished, tmp_path):
  from tf_gtsrb.export import release  # pylint: disable=g-import-not-at-top
  work_dir, results = finished["work_dir"], finished["results"]
  report = io_utils.read_json(results["report"].report_json)
  steps_before_report = STEPS[:STEPS.index("report")]
  assert set(report["seconds"]) == set(steps_before_report)
  for step in steps_before_report:  # As each step's marker recorded it.
    assert report["seconds"][step] == io_utils.read_json(_marker(work_dir, step))["seconds"]
  total = sum(report["seconds"].values()) / 60
  longest = max(report["seconds"], key=report["seconds"].get)
  text = f"{total:.1f} minutes ({longest} {report['seconds'][longest] / 60:.1f}, "
  assert f"## Wall time\n\nThe steps before this report took {text}" \
      in open(results["report"].report_md).read()
  release.release(results, str(tmp_path / "models"), "gtsrb-pipeline --flagfile=x.flags")
  readme = (tmp_path / "models" / "README.md").read_text()
  assert f"Wall time of the recipe on that machine: {text}" in readme


def test_release_names_each_file_after_itself(finished, tmp_path):
  """The release is what models/ holds: metadata, C array and arena constant named after the
  released files, the C array holding the released INT8 bytes."""
  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.export import c_array
  from tf_gtsrb.export import metadata
  from tf_gtsrb.export import release
  # pylint: enable=g-import-not-at-top
  models = tmp_path / "models"
  release.release(finished["results"], str(models), "gtsrb-pipeline --flagfile=x.flags")
  for name in (release.FILES[key] for key in ("baseline_float", "int8", "uint8")):
    data = tflite.load_tflite(str(models / name))
    assert metadata.read_metadata(data)["name"] == name[:-len(".tflite")]
  stem = "traffic_sign_cnn_pruned_int8"
  header = (models / f"{stem}.h").read_text()
  assert "constexpr int kTrafficSignCnnPrunedInt8TensorArenaSize" in header
  assert "g_traffic_sign_cnn_pruned_int8_model[]" in (models / "README.md").read_text()
  source = (models / f"{stem}.cc").read_text()
  assert f'#include "{stem}.h"' in source
  assert c_array.parse_c_array(source, f"g_{stem}_model") == tflite.load_tflite(
      str(models / f"{stem}.tflite"))


def test_corruption_subset_adds_robustness_to_the_benchmark_and_the_reports(finished, tmp_path):
  work_dir = _copy(finished, tmp_path)
  results, lines = _run(_config(work_dir, corruption_subset=30))
  assert {s for s, v in _status(lines).items() if v == "ran"} == {"benchmark", "report"}
  scores = io_utils.read_json(results["benchmark"].robustness)
  assert set(scores) == {"baseline (TFLite float32)", "pruned+QAT (TFLite INT8)"}
  assert all(r["num_images"] == 30 and len(r["accuracy"]) == 13 for r in scores.values())
  validation_scores = io_utils.read_json(results["benchmark"].validation_robustness)
  assert set(validation_scores) == set(scores)
  assert all(r["num_images"] == 30 for r in validation_scores.values())
  assert validation_scores != scores  # Other images.
  report_md = open(results["report"].report_md).read()
  assert "## Robustness to corruptions" in report_md
  assert "On 30 validation images" in report_md and "On 30 test images" in report_md
  report_html = open(results["report"].report_html).read()
  assert "no corruption benchmark" not in report_html and "severity 5" in report_html
  report = io_utils.read_json(results["report"].report_json)
  assert report["corruption_suite"] == {"validation": validation_scores, "test": scores}
  assert any(t["target"].startswith("Every corruption kind >= 80%") for t in report["targets"])
  from tf_gtsrb.export import release  # pylint: disable=g-import-not-at-top
  release.release(results, str(tmp_path / "models"), "gtsrb-pipeline --flagfile=x.flags")
  readme = (tmp_path / "models" / "README.md").read_text()
  assert "## Robustness to corruptions" in readme and "On 30 test images" in readme
  results, lines = _run(_config(work_dir))  # Off again: no stale robustness left behind.
  assert results["benchmark"].robustness is None
  assert results["benchmark"].validation_robustness is None
  assert not os.path.exists(os.path.join(work_dir, "benchmark", "robustness.json"))
  assert not os.path.exists(os.path.join(work_dir, "benchmark", "validation", "robustness.json"))
  assert "## Robustness" not in open(results["report"].report_md).read()


def test_sparsify_step_zeros_and_clusters_reach_the_int8_flatbuffer(finished, tmp_path):
  """Magnitude pruning and clustering in the main job: the shipped INT8 kernels hold the
  zeros and at most `clusters` non-zero values per channel; off again, the step passes the
  channel-pruned model through and nothing sparse is left behind."""
  import synthetic  # pylint: disable=g-import-not-at-top
  work_dir = _copy(finished, tmp_path)
  results, lines = _run(_config(work_dir, sparsity=0.5, clusters=4, sparsify_epochs=1,
                                distill_pruning=True))
  # distill_pruning is a setting of the prune step: it runs again too.
  assert _status(lines) == {**{step: "skipped" for step in _through("analyze")},
                            **{step: "ran" for step in STEPS[STEPS.index("prune"):]}}
  record = io_utils.read_json(os.path.join(work_dir, "sparsify", "sparsify.json"))
  assert record["kernel_sparsity"] >= 0.45
  assert max(record["unique_weights"].values()) <= 4 + 1  # The clusters and the zero.
  with open(results["convert"].int8, "rb") as f:
    kernels = synthetic.int8_kernels(f.read())
  for index, kernel in kernels.items():
    assert np.mean(kernel == 0) >= 0.45, index
    for channel in kernel.reshape(kernel.shape[0], -1):
      assert np.unique(channel[channel != 0]).size <= 4, index
  assert "Magnitude pruning to 50% sparsity, clustered to 4 values" in open(
      results["report"].report_md).read()

  results, lines = _run(_config(work_dir))
  assert results["sparsify"].model == results["prune"].model
  with open(results["convert"].int8, "rb") as f:
    assert all(np.mean(k == 0) < 0.2 for k in synthetic.int8_kernels(f.read()).values())
  assert "Magnitude pruning" not in open(results["report"].report_md).read()


@pytest.mark.parametrize("changes, message", [
    (dict(sparsity=1.0), "^sparsity must be a fraction in \\[0, 1\\)"),
    (dict(clusters=1), "^clusters must be an integer in \\[2, 256\\]"),
    (dict(sparsify_epochs=0), "sparsify_epochs must be >= 1"),
])
def test_bad_sparsify_settings_are_refused_before_any_step(tmp_path, changes, message):
  with pytest.raises(errors.ConfigError, match=message):
    _run(_config(tmp_path / "work", **changes))
  assert not os.path.exists(tmp_path / "work")


def test_killed_run_resumes_when_started_again(tmp_path, capfd):
  """Killed after training's first epoch: the next run continues the training and finishes."""
  work_dir = tmp_path / "work"
  settings = dict(SETTINGS, epochs=4, steps_per_epoch=2)
  command = [sys.executable, "-m", "tf_gtsrb_tools.pipeline", f"--work_dir={work_dir}"]
  command += [f"--{name}={value}" for name, value in settings.items()]
  train_dir = work_dir / "train"
  with open(tmp_path / "stdout.txt", "wb") as stdout:
    process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.STDOUT)
    try:
      deadline = time.time() + 300
      while not (train_dir / "state.json").exists():
        assert process.poll() is None, (tmp_path / "stdout.txt").read_text()[-3000:]
        assert time.time() < deadline, "training never started"
        time.sleep(0.05)
    finally:
      process.kill()
      process.wait()
  assert not os.path.exists(_marker(work_dir, "train"))
  assert os.path.exists(_marker(work_dir, "prepare"))
  killed_at = io_utils.read_json(train_dir / "state.json")["step"]
  assert killed_at > 0

  capfd.readouterr()
  results, lines = _run(_config(work_dir, **settings))
  keras_output = capfd.readouterr().out
  status = _status(lines)
  assert status["prepare"] == "skipped"
  assert {status[step] for step in STEPS[1:]} == {"ran"}
  assert not any("from scratch" in line for line in lines)
  for step in STEPS:
    assert os.path.exists(_marker(work_dir, step))
  state = io_utils.read_json(train_dir / "state.json")
  assert state["step"] == settings["epochs"] * settings["steps_per_epoch"]
  assert len(state["history"]["val_accuracy"]) == settings["epochs"]
  epochs = settings["epochs"]
  assert f"Epoch 1/{epochs}" not in keras_output  # Resumed, not started again.
  assert f"Epoch {epochs}/{epochs}" in keras_output
  assert os.path.exists(results["report"].report_md)


@pytest.mark.parametrize("kwargs", [{"force": ["trian"]}, {"only": "reprot"},
                                    {"force": ["train", "nope"]}])
def test_unknown_step_is_a_config_error(tmp_path, kwargs):
  with pytest.raises(errors.ConfigError, match="unknown step"):
    pipeline.Pipeline(_config(tmp_path / "work")).run(**kwargs)
  assert not os.path.exists(tmp_path / "work")


@pytest.mark.parametrize("changes", [
    {"epochs": 0}, {"qat_epochs": 0}, {"latency_rounds": 0}, {"learning_rate": 0.0},
    {"label_smoothing": 1.0}, {"prune_criterion": "random"}, {"prune_percentages": "lots"},
    {"prune_percentages": "conv9=40"}, {"max_params": -1}, {"max_macs_percent": 101},
    {"source": "zip"}, {"val_fraction": 1.0}, {"val_fraction": -0.1},
    {"teacher": "no/such/teacher.keras"},
    {"distill_pruning": True, "pruning_teachers": "no/such/teacher.keras"},
    {"swa_epochs": -1}, {"swa_learning_rate": 0.0},
    {"prune_swa_epochs": -1}, {"prune_swa_learning_rate": 0.0},
    {"prune_stages": 0}, {"prune_epochs": 3, "prune_stages": 2},
    {"prune_dropout": 1.0}, {"prune_dropout": -0.1},
    {"val_fraction": 0.0, "fine_tune_on_validation": True},
    {"distill_pruning": True, "distill_mixup": -0.5},
    {"distill_mixup": 0.4},  # Mixup without a distillation to mix for.
    {"distill_teacher_view": True, "noise_probability": 0.5},  # No teachers to see it.
    {"distill_teacher_view": True, "distill_pruning": True},  # No robust shares to hide.
    {"distill_both_views": True, "distill_pruning": True,  # Both of one view.
     "noise_probability": 0.5},
    {"baseline_model": "no/such/baseline.keras"},
    {"baseline_model": __file__, "swa_epochs": 2},  # Settings of a training that won't run.
    {"pruning_teachers": __file__},  # A teacher for pruning without distill_pruning or distill_qat.
    {"baseline_model": __file__, "teacher_baselines": 1, "distill_pruning": True},
    {"teacher_baselines": -1}, {"teacher_baselines": 1},  # Teachers without distillation.
    {"teacher_baseline_epochs": 5}, {"clean_teacher_baselines": True},  # Of no teachers.
    {"npu": "ethos-u99"}, {"corruption_subset": -5}])
def test_bad_setting_is_a_config_error_before_any_step(tmp_path, changes):
  with pytest.raises(errors.ConfigError):
    pipeline.Pipeline(_config(tmp_path / "work", **changes)).run()
  assert not os.path.exists(tmp_path / "work")


def test_clean_refuses_a_directory_that_is_not_a_work_directory(tmp_path):
  (tmp_path / "train").mkdir()
  (tmp_path / "notes.txt").write_text("keep me")
  with pytest.raises(errors.ConfigError, match="not a pipeline work directory"):
    pipeline.clean(str(tmp_path))
  assert (tmp_path / "notes.txt").exists()
  work_dir = tmp_path / "work"
  (work_dir / "train").mkdir(parents=True)
  pipeline.clean(str(work_dir))
  assert not work_dir.exists()
  pipeline.clean(str(work_dir))  # Missing: nothing to do.


@pytest.mark.parametrize("flag, message", [("--epochs=0", "epochs must be >= 1"),
                                           ("--force=nope", "unknown step")])
def test_tool_reports_bad_flags_before_any_work(tmp_path, flag, message):
  work_dir = tmp_path / "work"
  completed = subprocess.run(
      [sys.executable, "-m", "tf_gtsrb_tools.pipeline", f"--work_dir={work_dir}", flag],
      capture_output=True, text=True, timeout=300, check=False)
  assert completed.returncode == 1
  assert "error: " in completed.stderr and message in completed.stderr
  assert "Traceback" not in completed.stderr
  assert not work_dir.exists()

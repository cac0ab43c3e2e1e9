"""Trainer end to end on the tiny prepared dataset: outputs, refusals and bad inputs."""

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb.data import input_pipeline
from tf_gtsrb.models import io as model_io
from tf_gtsrb.training import trainer

EPOCHS = 2
STEPS = 3


def _config(data_dir, model_dir, **overrides):
  fields = dict(data_dir=data_dir, model_dir=str(model_dir),
                model_kwargs={"channels": [4, 8, 8, 16]}, epochs=EPOCHS, batch_size=32,
                steps_per_epoch=STEPS, checkpoint_every_steps=2, warmup_epochs=0.5)
  fields.update(overrides)
  return trainer.TrainConfig(**fields)


def _snapshot(directory):
  """{relative path: (mtime_ns, bytes)} of every file under `directory`."""
  result = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        result[os.path.relpath(path, directory)] = (os.stat(path).st_mtime_ns, f.read())
  return result


@pytest.fixture(scope="module")
def trained(tiny_data_dir, tmp_path_factory):
  """(config, history) of one finished few-step run."""
  config = _config(tiny_data_dir, tmp_path_factory.mktemp("train") / "run")
  history = trainer.train(config, verbose=0)
  return config, history


@pytest.fixture
def trained_copy(trained, tmp_path):
  """A copy of the finished run that a test may damage, with its config."""
  config, _ = trained
  model_dir = tmp_path / "run"
  shutil.copytree(config.model_dir, model_dir)
  return dataclasses.replace(config, model_dir=str(model_dir))


def test_run_writes_all_outputs(trained):
  config, history = trained
  names = set(os.listdir(config.model_dir))
  assert {"model.keras", "final.keras", "history.json", "config.json", "state.json",
          "checkpoints", "logs"} <= names
  assert not [n for n in names if ".tmp-" in n]
  assert any(files for _, _, files in os.walk(os.path.join(config.model_dir, "logs")))

  for name in ("model.keras", "final.keras"):
    model = model_io.load_model(os.path.join(config.model_dir, name))
    assert model.output_shape == (None, 43)
    assert model.get_layer("conv4").filters == 16

  with open(os.path.join(config.model_dir, "history.json")) as f:
    saved_history = json.load(f)
  assert saved_history == history
  for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
    assert len(history[key]) == EPOCHS

  with open(os.path.join(config.model_dir, "config.json")) as f:
    assert json.load(f) == json.loads(json.dumps(dataclasses.asdict(config)))

  with open(os.path.join(config.model_dir, "state.json")) as f:
    state = json.load(f)
  assert state["step"] == EPOCHS * STEPS
  assert state["best_val_accuracy"] == max(history["val_accuracy"])
  checkpoint = os.path.join(config.model_dir, "checkpoints", state["checkpoint"])
  assert os.path.exists(checkpoint + ".index")


def test_final_model_matches_last_checkpoint_accuracy(trained, tiny_data_dir):
  """final.keras is the model after the last step: it reproduces the last val_accuracy."""
  config, history = trained
  from tf_gtsrb.data import input_pipeline  # pylint: disable=g-import-not-at-top
  images, labels = input_pipeline.load_arrays(tiny_data_dir, "validation")
  model = model_io.load_model(os.path.join(config.model_dir, "final.keras"))
  predicted = np.argmax(model.predict(input_pipeline.to_float(images), verbose=0), axis=1)
  assert np.mean(predicted == labels) == pytest.approx(history["val_accuracy"][-1], abs=1e-6)


def test_second_run_without_resume_or_overwrite_is_refused(trained):
  config, _ = trained
  before = _snapshot(config.model_dir)
  with pytest.raises(errors.ConfigError, match="--resume"):
    trainer.train(config, verbose=0)
  assert _snapshot(config.model_dir) == before


def test_resume_with_different_settings_is_refused_before_work(trained_copy, monkeypatch):
  def no_build(*args, **kwargs):
    raise AssertionError("built a model before checking the configuration")
  monkeypatch.setattr(trainer, "build_model", no_build)
  before = _snapshot(trained_copy.model_dir)
  changed = dataclasses.replace(trained_copy, batch_size=16)
  with pytest.raises(errors.ConfigError, match="batch_size"):
    trainer.train(changed, resume=True, verbose=0)
  assert _snapshot(trained_copy.model_dir) == before


def test_resume_accepts_a_saved_config_without_a_newer_setting(trained_copy):
  """A run saved before a setting existed resumes when that setting is at its default."""
  path = os.path.join(trained_copy.model_dir, "config.json")
  saved = io_utils.read_json(path)
  del saved["erase_probability"]
  io_utils.write_json(path, saved)
  paths = {"config.json": path}
  trainer._check_same_run(trained_copy, paths)  # pylint: disable=protected-access
  with pytest.raises(errors.ConfigError, match="erase_probability"):
    trainer._check_same_run(  # pylint: disable=protected-access
        dataclasses.replace(trained_copy, erase_probability=0.5), paths)


def test_bad_config_is_refused_before_work(tiny_data_dir, tmp_path):
  for overrides in ({"epochs": 0}, {"schedule": "step"}, {"label_smoothing": 1.0},
                    {"learning_rate": 0.0}, {"strategy": "tpu"}, {"erase_probability": 1.5},
                    {"sticker_probability": -0.1},
                    {"teacher": str(tmp_path / "no_teacher.keras")}, {"swa_epochs": -1},
                    {"swa_learning_rate": 0.0}):
    with pytest.raises(errors.ConfigError):
      trainer.train(_config(tiny_data_dir, tmp_path / "run", **overrides), verbose=0)
  assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.99])
def test_truncated_checkpoint_on_resume_raises_model_error(trained_copy, keep):
  with open(os.path.join(trained_copy.model_dir, "state.json")) as f:
    checkpoint = json.load(f)["checkpoint"]
  data_file = os.path.join(trained_copy.model_dir, "checkpoints",
                           checkpoint + ".data-00000-of-00001")
  size = os.path.getsize(data_file)
  with open(data_file, "r+b") as f:
    f.truncate(int(size * keep))
  with pytest.raises(errors.ModelError, match=checkpoint):
    trainer.train(trained_copy, resume=True, verbose=0)


def test_missing_checkpoint_on_resume_raises_model_error(trained_copy):
  shutil.rmtree(os.path.join(trained_copy.model_dir, "checkpoints"))
  with pytest.raises(errors.ModelError, match="missing"):
    trainer.train(trained_copy, resume=True, verbose=0)


def test_without_validation_split_the_last_epoch_is_the_model(tiny_final_fit_data_dir, tmp_path):
  config = _config(tiny_final_fit_data_dir, tmp_path / "run")
  history = trainer.train(config, verbose=0)
  assert len(history["accuracy"]) == EPOCHS and "val_accuracy" not in history
  images, _ = input_pipeline.load_arrays(tiny_final_fit_data_dir, "test", limit=64)
  images = input_pipeline.to_float(images)
  best = model_io.load_model(os.path.join(config.model_dir, "model.keras"))
  final = model_io.load_model(os.path.join(config.model_dir, "final.keras"))
  np.testing.assert_allclose(best.predict(images, verbose=0), final.predict(images, verbose=0),
                             rtol=1e-5, atol=1e-6)


def test_early_stopping_without_validation_split_is_refused(tiny_final_fit_data_dir, tmp_path):
  config = _config(tiny_final_fit_data_dir, tmp_path / "run", early_stopping_patience=2)
  with pytest.raises(errors.ConfigError, match="no validation split"):
    trainer.train(config, verbose=0)
  assert not os.path.exists(config.model_dir)


def test_data_dir_without_dataset_raises_before_output(tmp_path):
  data_dir = tmp_path / "empty"
  data_dir.mkdir()
  model_dir = tmp_path / "run"
  with pytest.raises(errors.DataError, match="no prepared dataset"):
    trainer.train(_config(str(data_dir), model_dir), verbose=0)
  assert not os.path.exists(model_dir) or not os.listdir(model_dir)


def test_resume_of_finished_run_removes_partial_files_and_trains_no_more(trained_copy, trained):
  """A killed run can leave atomic-write and checkpoint temporaries; --resume removes them."""
  _, history = trained
  model_dir = trained_copy.model_dir
  leftovers = [os.path.join(model_dir, ".state.json.tmp-99999"),
               os.path.join(model_dir, ".final.keras.tmp-99999.keras"),
               os.path.join(model_dir, "checkpoints", "ckpt-4_temp", "part-00000-of-00001.index")]
  for path in leftovers:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
      f.write(b"partial")
  assert trainer.train(trained_copy, resume=True, verbose=0) == history
  for path in leftovers:
    assert not os.path.exists(path)
  assert not os.path.exists(os.path.join(model_dir, "checkpoints", "ckpt-4_temp"))
  with open(os.path.join(model_dir, "state.json")) as f:
    assert json.load(f)["step"] == EPOCHS * STEPS
  assert model_io.load_model(os.path.join(model_dir, "final.keras")).output_shape == (None, 43)


def test_finished_run_resumed_with_averaging_only_averages(trained_copy, trained):
  _, history = trained
  model_dir = trained_copy.model_dir
  before = _snapshot(model_dir)
  averaged = dataclasses.replace(trained_copy, swa_epochs=2)
  assert trainer.train(averaged, resume=True, verbose=0) == history
  after = _snapshot(model_dir)
  for name in ("model.keras", "state.json", "history.json"):
    assert after[name] == before[name]
  record = io_utils.read_json(os.path.join(model_dir, "swa.json"))
  assert record["epochs"] == 2 and len(record["val_accuracy"]) == 2
  assert 0.0 <= record["average_val_accuracy"] <= 1.0
  best = model_io.load_model(os.path.join(model_dir, "model.keras"))
  swa_model = model_io.load_model(os.path.join(model_dir, "swa.keras"))
  assert any(not np.allclose(a, b) for a, b in zip(best.get_weights(), swa_model.get_weights()))
  assert io_utils.read_json(os.path.join(model_dir, "config.json"))["swa_epochs"] == 2

  averaged_files = _snapshot(model_dir)  # Resumed again, the average is kept as it is;
  assert trainer.train(averaged, resume=True, verbose=0) == history
  assert _snapshot(model_dir)["swa.keras"] == averaged_files["swa.keras"]
  trainer.train(dataclasses.replace(averaged, swa_learning_rate=1e-4), resume=True, verbose=0)
  assert _snapshot(model_dir)["swa.keras"] != averaged_files["swa.keras"]  # redone if changed.
  assert io_utils.read_json(os.path.join(model_dir, "swa.json"))["learning_rate"] == 1e-4

  trainer.train(trained_copy, overwrite=True, verbose=0)  # A new run drops the old average.
  assert not {"swa.keras", "swa.json"} & set(os.listdir(model_dir))

"""Exact resume: an interrupted and resumed run ends with the weights of an uninterrupted one.

Training batches are a pure function of (seed, step), and the checkpoints hold
the model, the optimizer (moments, step) and the dropout layers' generator
state, so the weights match to float32 round-off (in practice bit for bit;
the tolerance is atol=1e-6). The training loss and accuracy logged for the
interrupted epoch cover only the steps after the resume (Keras resets its
metrics at each epoch's start), so those two entries are not compared; every
other history entry is.
"""

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import dataclasses
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tf_gtsrb.models import io as model_io
from tf_gtsrb.training import trainer
import synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ATOL = 1e-6


def _config(data_dir, model_dir, epochs=3, steps=5, teacher="", distill_mixup=0.0):
  return trainer.TrainConfig(
      data_dir=data_dir, model_dir=str(model_dir), model_kwargs={"channels": [4, 8, 8, 16]},
      epochs=epochs, batch_size=32, steps_per_epoch=steps, checkpoint_every_steps=2,
      warmup_epochs=0.5, teacher=teacher, distill_mixup=distill_mixup)


def _read_json(path):
  with open(path) as f:
    return json.load(f)


def _assert_same_weights(dir_a, dir_b, name="final.keras"):
  a = model_io.load_model(os.path.join(dir_a, name)).get_weights()
  b = model_io.load_model(os.path.join(dir_b, name)).get_weights()
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_allclose(x, y, rtol=0, atol=ATOL)


def _assert_same_history(a, b, interrupted_epoch):
  assert sorted(a) == sorted(b)
  for key in a:
    assert len(a[key]) == len(b[key]), key
    for epoch, (x, y) in enumerate(zip(a[key], b[key])):
      if key in ("loss", "accuracy") and epoch == interrupted_epoch:
        continue  # Averaged over the resumed part of the epoch only.
      assert x == pytest.approx(y, abs=ATOL), (key, epoch)


def _leftovers(model_dir):
  return (glob.glob(os.path.join(model_dir, "**", "*.tmp-*"), recursive=True)
          + glob.glob(os.path.join(model_dir, "**", ".*.tmp-*"), recursive=True)
          + glob.glob(os.path.join(model_dir, "checkpoints", "*_temp*")))


@pytest.mark.parametrize("distilled, mixup", [(False, 0.0), (True, 0.0), (True, 1.0)])
def test_interrupted_in_process_run_resumes_exactly(tiny_data_dir, tmp_path, monkeypatch,
                                                    distilled, mixup):
  teacher = ""
  if distilled:  # Distillation from a (random) two-model ensemble resumes exactly too,
    # with mixup (its generator is in the checkpoint) or without.
    teachers = [str(tmp_path / f"teacher{seed}.keras") for seed in (1, 2)]
    for seed, path in zip((1, 2), teachers):
      model_io.save_model(synthetic.tiny_cnn(input_size=32, seed=seed), path)
    teacher = ",".join(teachers)
  reference = _config(tiny_data_dir, tmp_path / "a", teacher=teacher, distill_mixup=mixup)
  history_a = trainer.train(reference, verbose=0)

  config = _config(tiny_data_dir, tmp_path / "b", teacher=teacher, distill_mixup=mixup)
  record = trainer._StateRecorder.on_train_batch_end  # pylint: disable=protected-access

  def interrupt_after_step_7(self, batch, logs=None):
    record(self, batch, logs)
    if self.state["step"] == 7:  # Mid-epoch (epoch 1 of 3, 5 steps each).
      raise KeyboardInterrupt

  monkeypatch.setattr(trainer._StateRecorder, "on_train_batch_end", interrupt_after_step_7)
  with pytest.raises(KeyboardInterrupt):
    trainer.train(config, verbose=0)
  monkeypatch.undo()
  state = _read_json(os.path.join(config.model_dir, "state.json"))
  assert state["step"] == 6  # The last checkpoint (every 2 steps) before the interrupt.
  assert not os.path.exists(os.path.join(config.model_dir, "final.keras"))

  history_b = trainer.train(config, resume=True, verbose=0)

  _assert_same_weights(reference.model_dir, config.model_dir)
  _assert_same_weights(reference.model_dir, config.model_dir, "model.keras")
  _assert_same_history(history_a, history_b, interrupted_epoch=1)
  assert history_b["val_accuracy"][-1] == history_a["val_accuracy"][-1]
  assert _read_json(os.path.join(config.model_dir, "state.json"))["step"] == 15
  assert not _leftovers(config.model_dir)


def test_averaging_after_a_resume_draws_what_an_unbroken_run_draws(tiny_data_dir, tmp_path):
  # The pipeline resumes a finished training run only to average its weights when the
  # averaging flags are added later; the averaged model must not depend on that.
  unbroken = dataclasses.replace(_config(tiny_data_dir, tmp_path / "a", epochs=2),
                                 swa_epochs=2)
  trainer.train(unbroken, verbose=0)
  config = _config(tiny_data_dir, tmp_path / "b", epochs=2)
  trainer.train(config, verbose=0)
  assert not os.path.exists(os.path.join(config.model_dir, "swa.keras"))
  trainer.train(dataclasses.replace(config, swa_epochs=2), resume=True, verbose=0)

  _assert_same_weights(unbroken.model_dir, config.model_dir, "model.keras")
  a = model_io.load_model(os.path.join(unbroken.model_dir, "swa.keras")).get_weights()
  b = model_io.load_model(os.path.join(config.model_dir, "swa.keras")).get_weights()
  assert any(np.abs(x - y).max() > 0 for x, y in zip(
      a, model_io.load_model(os.path.join(unbroken.model_dir, "model.keras")).get_weights()))
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)  # Dropout masks drawn alike, batches alike.
  assert (_read_json(os.path.join(unbroken.model_dir, "swa.json"))
          == _read_json(os.path.join(config.model_dir, "swa.json")))


def _train_command(data_dir, model_dir, *extra):
  return [sys.executable, os.path.join(REPO, "tools", "train.py"), f"--data_dir={data_dir}",
          f"--model_dir={model_dir}", "--channels=4,8,8,16", "--epochs=3", "--batch_size=32",
          "--steps_per_epoch=6", "--checkpoint_every_steps=2", "--warmup_epochs=0.5",
          "--verbose=0", *extra]


def _env():
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")


def _state_step(model_dir):
  try:
    return _read_json(os.path.join(model_dir, "state.json"))["step"]
  except (OSError, ValueError, KeyError):
    return -1


def test_killed_tool_run_resumes_exactly(tiny_data_dir, tmp_path):
  reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
  total = 3 * 6
  reference = subprocess.Popen(_train_command(tiny_data_dir, reference_dir), env=_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  killed = subprocess.Popen(_train_command(tiny_data_dir, killed_dir), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.monotonic() + 240
    while _state_step(killed_dir) < 4:
      assert killed.poll() is None, "training ended before it could be killed"
      assert time.monotonic() < deadline, "training never reached step 4"
      time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    output, _ = reference.communicate(timeout=240)
  finally:
    for process in (killed, reference):
      if process.poll() is None:
        process.kill()
        process.wait()
  assert reference.returncode == 0, output
  assert killed.returncode == -signal.SIGKILL
  assert 4 <= _state_step(killed_dir) < total
  assert not os.path.exists(killed_dir / "final.keras")

  resumed = subprocess.run(_train_command(tiny_data_dir, killed_dir, "--resume"), env=_env(),
                           capture_output=True, text=True, timeout=240, check=False)
  assert resumed.returncode == 0, resumed.stdout + resumed.stderr
  assert "Best validation accuracy" in resumed.stdout

  assert _state_step(killed_dir) == _state_step(reference_dir) == total
  _assert_same_weights(reference_dir, killed_dir)
  history_ref = _read_json(reference_dir / "history.json")
  history_resumed = _read_json(killed_dir / "history.json")
  assert len(history_resumed["val_accuracy"]) == len(history_ref["val_accuracy"]) == 3
  assert history_resumed["val_accuracy"] == history_ref["val_accuracy"]
  assert history_resumed["val_loss"] == pytest.approx(history_ref["val_loss"], abs=ATOL)
  assert not _leftovers(killed_dir)
  assert not _leftovers(reference_dir)

  # Starting again over a finished run without --resume/--overwrite is refused cleanly.
  before = _read_json(killed_dir / "state.json")
  refused = subprocess.run(_train_command(tiny_data_dir, killed_dir), env=_env(),
                           capture_output=True, text=True, timeout=240, check=False)
  assert refused.returncode == 1, refused.stdout + refused.stderr
  assert "error:" in refused.stderr and "--resume" in refused.stderr
  assert "Traceback" not in refused.stderr
  assert _read_json(killed_dir / "state.json") == before

"""MultiWorkerMirroredStrategy for real: two `gtsrb-train` worker processes on localhost."""

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tf_gtsrb import errors
from tf_gtsrb.training import distribute

_TRAIN = os.path.join(os.path.dirname(__file__), os.pardir, "tools", "train.py")
_TIMEOUT_S = 240


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("localhost", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _start_workers(data_dir, model_dir, tmp_path, epochs, steps):
  """Starts worker 0 (the chief) and worker 1; returns their Popen objects."""
  cluster = {"worker": [f"localhost:{port}" for port in _free_ports(2)]}
  workers = []
  for index in range(2):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TMPDIR=str(tmp_path / f"tmp{index}"),
               TF_CONFIG=json.dumps({"cluster": cluster,
                                     "task": {"type": "worker", "index": index}}))
    os.makedirs(env["TMPDIR"])
    workers.append(subprocess.Popen(
        [sys.executable, _TRAIN, f"--data_dir={data_dir}", f"--model_dir={model_dir}",
         "--channels=4,8,8,16", f"--epochs={epochs}", f"--steps_per_epoch={steps}",
         "--batch_size=32", "--checkpoint_every_steps=2", "--strategy=multi_worker",
         "--verbose=0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  return workers


def _finish(worker, timeout=_TIMEOUT_S):
  try:
    out, err = worker.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    worker.kill()
    out, err = worker.communicate()
    pytest.fail(f"worker hung past {timeout} s:\n{out}\n{err}")
  return worker.returncode, out + err


@pytest.mark.slow
def test_two_workers_train_and_only_the_chief_writes(tiny_data_dir, tmp_path):
  model_dir = tmp_path / "run"
  workers = _start_workers(tiny_data_dir, model_dir, tmp_path, epochs=2, steps=3)
  results = [_finish(w) for w in workers]
  for code, output in results:
    assert code == 0, output
  names = set(os.listdir(model_dir))
  assert {"model.keras", "final.keras", "history.json", "state.json", "checkpoints"} <= names
  with open(model_dir / "state.json") as f:
    assert json.load(f)["step"] == 6
  # The second worker wrote only into its temporary directory, and removed it.
  assert os.listdir(tmp_path / "tmp1") == []
  assert not [n for n in os.listdir(tmp_path) if n not in ("run", "tmp0", "tmp1")
              and not n.startswith(".run.lock")]


@pytest.mark.slow
def test_killing_a_worker_ends_the_other_with_a_clear_error(tiny_data_dir, tmp_path):
  model_dir = tmp_path / "run"
  chief, other = _start_workers(tiny_data_dir, model_dir, tmp_path, epochs=200, steps=5)
  deadline = time.time() + _TIMEOUT_S
  while not (model_dir / "state.json").exists():  # Training has started on both.
    assert chief.poll() is None and other.poll() is None, "a worker ended before training"
    assert time.time() < deadline, "training never started"
    time.sleep(0.5)
  other.send_signal(signal.SIGKILL)
  other.wait()
  code, output = _finish(chief)
  assert code != 0
  assert "multi-worker training stopped" in output, output
  assert "Traceback" not in output, output


def test_worker_role_from_tf_config(monkeypatch):
  cluster = {"worker": ["a:1", "b:2"]}
  monkeypatch.setenv("TF_CONFIG", json.dumps(
      {"cluster": cluster, "task": {"type": "worker", "index": 1}}))
  assert distribute.worker_role("multi_worker") == ("worker", 1, False)
  monkeypatch.setenv("TF_CONFIG", json.dumps(
      {"cluster": cluster, "task": {"type": "worker", "index": 0}}))
  assert distribute.worker_role("multi_worker").is_chief
  monkeypatch.setenv("TF_CONFIG", json.dumps(
      {"cluster": {"chief": ["c:0"], **cluster}, "task": {"type": "worker", "index": 0}}))
  assert not distribute.worker_role("multi_worker").is_chief
  assert distribute.worker_role("mirrored") is None


@pytest.mark.parametrize("tf_config", ["", "not json", '{"cluster": {}}',
                                       '{"cluster": {"worker": ["a:1"]}, '
                                       '"task": {"type": "worker", "index": 3}}'])
def test_bad_tf_config_is_a_config_error(monkeypatch, tf_config):
  monkeypatch.setenv("TF_CONFIG", tf_config)
  with pytest.raises(errors.ConfigError, match="TF_CONFIG"):
    distribute.worker_role("multi_worker")

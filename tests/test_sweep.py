"""Tests of the channel-pruning sweep (tf_gtsrb.compression.sweep)."""

import json
import os

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import numpy as np
import pytest

from tf_gtsrb import errors
from tf_gtsrb.compression import sweep
from tf_gtsrb.evaluation import complexity
from tf_gtsrb.models import io as model_io
from tf_gtsrb.models import traffic_sign_cnn
import synthetic
import tool_runner

CHANNELS = (8, 8, 16, 16)
SIZE = 16
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _datasets(n=64, batch_size=32, seed=0):
  """(train, validation, test) datasets: n random images in batches, validation one batch."""
  ds = synthetic.random_float_dataset(SIZE, n, batch_size, seed)
  return ds, ds.take(1), ds


def _model():
  return synthetic.tiny_cnn(input_size=SIZE, channels=CHANNELS)


def test_sweep_end_to_end(tmp_path):
  model = _model()
  weights = [w.copy() for w in model.get_weights()]
  train_ds, val_ds, test_ds = _datasets()
  out = str(tmp_path / "sweep")
  lines = []
  result = sweep.run_sweep(model, train_ds, val_ds, test_ds, out, epochs=1, log=lines.append)

  rows = result["rows"]
  assert [r["name"] for r in rows] == ["baseline", "prune_10", "prune_30", "prune_50", "prune_90"]
  assert rows[0]["channels"] == list(CHANNELS)
  assert rows[-1]["channels"] == [1, 1, 2, 2]
  assert rows[0]["params"] == complexity.count_params(model)["trainable"]
  for previous, row in zip(rows, rows[1:]):
    assert row["params"] < previous["params"]
    assert row["macs"] < previous["macs"]
    assert row["size_bytes"] < previous["size_bytes"]  # no optimizer state saved
  for row in rows:
    assert row["float32_bytes"] == 4 * row["params"]
    assert row["size_bytes"] == os.path.getsize(row["model_path"])
    assert 0.0 <= row["test_accuracy"] <= 1.0
  # The saved pruned models load back with the recorded channels.
  reloaded = model_io.load_model(rows[2]["model_path"])
  assert list(traffic_sign_cnn.channels_of(reloaded)) == rows[2]["channels"]
  # The baseline is not modified by the sweep.
  for before, after in zip(weights, model.get_weights()):
    np.testing.assert_array_equal(before, after)
  assert len(lines) == 5

  assert sorted(result["paths"]) == ["json", "markdown", "png"]
  with open(os.path.join(out, "sweep.json")) as f:
    saved = json.load(f)
  assert [r["name"] for r in saved["rows"]] == [r["name"] for r in rows]
  assert saved["settings"]["epochs"] == 1
  with open(os.path.join(out, "sweep.md")) as f:
    text = f.read()
  assert ("| Prune % | Channels | Params | Test accuracy (%) | Size (KB) | MACs (M) |" in text)
  table = [line for line in text.splitlines() if line.startswith("| ")]
  assert table[1].startswith("| 0 (baseline) | 8/8/16/16 |")
  assert table[-1].startswith("| 90 | 1/1/2/2 |")
  with open(os.path.join(out, "sweep.png"), "rb") as f:
    assert f.read(8) == PNG_MAGIC


def test_sweep_without_fine_tuning_scores_the_pruned_model(tmp_path):
  model = _model()
  train_ds, val_ds, test_ds = _datasets(n=32)
  result = sweep.run_sweep(model, train_ds, val_ds, test_ds, str(tmp_path), percentages=[25],
                           epochs=0, criterion="bn_gamma", log=None)
  row = result["rows"][1]
  assert row["channels"] == [6, 6, 12, 12]
  assert row["test_accuracy"] == row["test_accuracy_before_fine_tune"]


@pytest.mark.parametrize("kwargs", [
    {"percentages": [100]},
    {"percentages": []},
    {"percentages": [10, 10]},
    {"percentages": [99]},  # leaves no channel of 8
    {"criterion": "random"},
    {"epochs": -1},
    {"learning_rate": 0},
    {"steps_per_epoch": 0},
])
def test_bad_arguments_raise_before_work(tmp_path, kwargs):
  train_ds, val_ds, test_ds = _datasets(n=32)
  out = tmp_path / "sweep"
  with pytest.raises(errors.ConfigError):
    sweep.run_sweep(_model(), train_ds, val_ds, test_ds, str(out), log=None, **kwargs)
  assert not out.exists()


def test_sweep_tool_end_to_end(tmp_path, tiny_data_dir):
  model_path = str(tmp_path / "model.keras")
  model_io.save_model(synthetic.tiny_cnn(input_size=32, channels=CHANNELS), model_path)
  out = tmp_path / "sweep"
  done = tool_runner.run_tool("sweep", f"--model={model_path}", f"--data_dir={tiny_data_dir}",
                              f"--output_dir={out}", "--percentages=50", "--epochs=1",
                              "--steps_per_epoch=2", "--batch_size=16", "--verbose=0")
  assert done.returncode == 0, done.stderr[-3000:]
  assert "| 50 | 4/4/8/8 |" in done.stdout
  assert {"sweep.json", "sweep.md", "sweep.png", "models"} <= set(os.listdir(out))


@pytest.mark.parametrize("args, message", [
    (["--percentages=10,100"], "must be in [0, 100)"),
    (["--percentages=ten"], "not a number"),
    (["--epochs=-1"], "--epochs"),
])
def test_sweep_tool_rejects_bad_flags(tmp_path, args, message):
  tool_runner.assert_rejects_flags("sweep", tmp_path, args, message)

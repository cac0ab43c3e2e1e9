"""Smoke tests of the input-bottleneck benchmark (no timing assertions)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tf_gtsrb import errors
from tf_gtsrb.benchmark import input_speed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"channels": (4, 8, 8, 8)}


def synthetic(num=48, size=32):
  rng = np.random.default_rng(0)
  return (rng.integers(0, 256, (num, size, size, 3), dtype=np.uint8),
          rng.integers(0, 43, num).astype(np.int64))


def test_benchmark_arrays_reports_positive_figures():
  images, labels = synthetic()
  results = input_speed.benchmark_arrays(images, labels, batch_size=16, steps=3, warmup=1,
                                             model_kwargs=TINY)
  for key in ("pipeline_images_per_second", "pipeline_ms_per_batch", "live_images_per_second",
              "materialised_images_per_second", "wait_ms_per_step", "compute_ms_per_step",
              "live_ms_per_step", "materialised_ms_per_step", "pipeline_to_compute_ratio"):
    assert results[key] > 0, key
  assert 0 < results["input_wait_share"] < 1
  assert results["input_overhead"] < 1
  assert results["live_ms_per_step"] == pytest.approx(
      results["wait_ms_per_step"] + results["compute_ms_per_step"])
  assert isinstance(results["input_bound"], bool)
  assert (results["model"], results["image_size"], results["num_examples"]) == (
      "traffic_sign_cnn", 32, 48)
  json.dumps(results)  # Plain values only.
  table = input_speed.results_table(results)
  assert "images/s" in table and "waiting for input" in table
  assert "bottleneck" in input_speed.verdict(results)


def test_verdict_follows_the_threshold():
  base = {"input_wait_share": 0.25, "threshold": 0.1, "pipeline_to_compute_ratio": 0.5,
          "input_bound": True}
  assert input_speed.verdict(base).startswith("Input IS the bottleneck")
  assert "fewer images/s" in input_speed.verdict(base)
  calm = {**base, "input_wait_share": 0.01, "input_bound": False,
          "pipeline_to_compute_ratio": 3.0}
  assert input_speed.verdict(calm).startswith("Input is NOT the bottleneck")
  assert "slower" not in input_speed.verdict({**calm, "input_overhead": 0.02})
  assert "30% slower" in input_speed.verdict({**calm, "input_overhead": 0.3})


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"steps": 0}, {"warmup": -1},
                                    {"threshold": 1.5}, {"batch_size": 64}])
def test_bad_arguments(kwargs):
  images, labels = synthetic()
  with pytest.raises(errors.ConfigError):
    input_speed.benchmark_arrays(images, labels, **{"steps": 1, "warmup": 0, **kwargs})


def test_tool_end_to_end(tiny_data_dir, tmp_path):
  output = tmp_path / "bench.json"
  done = subprocess.run(
      [sys.executable, os.path.join(REPO, "tools", "benchmark_input.py"),
       f"--data_dir={tiny_data_dir}", "--batch_size=16", "--steps=2", "--warmup=1",
       "--limit=64", f"--output_json={output}"],
      capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "Input pipeline alone" in done.stdout and "bottleneck" in done.stdout
  assert json.loads(output.read_text())["num_examples"] == 64


def test_missing_dataset(tmp_path):
  with pytest.raises(errors.DataError, match="no prepared dataset"):
    input_speed.benchmark_data_dir(str(tmp_path), steps=1)

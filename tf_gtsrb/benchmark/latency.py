"""Latency, throughput and peak-memory measurements of model runners.

Latency: one image, batch 1. The timed part is `runner.run` (set input,
invoke, read output); converting uint8 pixels to the model input happens once
before timing. Runners take turns within every round (the starting runner
rotates), so background load and CPU frequency changes hit all of them alike.

Peak memory: each model is loaded and run in a fresh Python subprocess that
first imports only the runtime it needs (LiteRT for .tflite; TensorFlow and
tf_keras for .keras). The process's peak resident set size (VmHWM from
/proc/self/status on Linux; `resource.getrusage(RUSAGE_SELF).ru_maxrss`
elsewhere, which on Linux would carry the parent's peak across fork/exec) is
read after the imports (baseline) and again after loading the model and
running inference on a few images; the difference is the model's share of
peak resident memory, the final value the whole process's peak. Python-level
tracers such as tracemalloc would miss the interpreter's native allocations.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np

from tf_gtsrb import errors


def _check_count(value, name, minimum):
  if not isinstance(value, (int, np.integer)) or value < minimum:
    raise errors.ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
  return int(value)


def summarize_ms(times_ms):
  """Median, p90, mean, min, max and FPS (1000 / median) of latencies in ms."""
  times = np.asarray(times_ms, dtype=np.float64)
  median = float(np.median(times))
  return {
      "median_ms": median,
      "p90_ms": float(np.percentile(times, 90)),
      "mean_ms": float(times.mean()),
      "min_ms": float(times.min()),
      "max_ms": float(times.max()),
      "fps": 1000.0 / median if median > 0 else float("inf"),
      "rounds": int(times.size),
  }


def measure_latency(runners, image, rounds=200, warmup=20):
  """Batch-1 latency of each runner on `image` (uint8 [S, S, 3] or [1, S, S, 3]).

  Args:
    runners: dict name -> runner (see `runners.py`).
    image: one uint8 image.
    rounds: timed calls per runner.
    warmup: untimed calls per runner first.

  Returns:
    dict name -> {median_ms, p90_ms, mean_ms, min_ms, max_ms, fps, rounds}.
  """
  if not runners:
    raise errors.ConfigError("measure_latency needs at least one runner")
  rounds = _check_count(rounds, "rounds", 1)
  warmup = _check_count(warmup, "warmup", 0)
  image = np.asarray(image)
  batch = image[np.newaxis] if image.ndim == 3 else image
  if batch.ndim != 4 or batch.shape[0] != 1:
    raise errors.ConfigError(f"latency needs one image [S, S, 3], got shape {image.shape}")
  names = list(runners)
  prepared = {name: runners[name].prepare(batch) for name in names}
  for name in names:
    for _ in range(warmup):
      runners[name].run(prepared[name])
  times = {name: [] for name in names}
  clock = time.perf_counter_ns
  for r in range(rounds):
    shift = r % len(names)
    for name in names[shift:] + names[:shift]:
      runner, data = runners[name], prepared[name]
      start = clock()
      runner.run(data)
      times[name].append((clock() - start) / 1e6)
  return {name: summarize_ms(times[name]) for name in names}


def measure_throughput(runner, images, batch_size=32):
  """Images per second of `runner.run` over `images` in batches of `batch_size`.

  Input conversion happens before timing; one untimed batch warms up the
  runner (and sizes its input tensor). A model with a fixed batch of 1 runs
  one image at a time.
  """
  batch_size = _check_count(batch_size, "batch_size", 1)
  if getattr(runner, "dynamic_batch", True) is False:
    batch_size = 1
  prepared = runner.prepare(images)
  batches = [prepared[i:i + batch_size] for i in range(0, len(prepared), batch_size)]
  runner.run(batches[0])
  start = time.perf_counter()
  for batch in batches:
    runner.run(batch)
  seconds = time.perf_counter() - start
  return len(prepared) / seconds if seconds > 0 else float("inf")


def measure_peak_memory(model_path, num_threads=1, num_images=8, timeout_s=600):
  """Peak resident memory of loading and running a model, in a subprocess.

  Returns {'baseline_mb' (after importing the runtime), 'peak_mb' (process
  peak), 'increase_mb' (peak - baseline), 'runtime'}; MB = 2**20 bytes.
  Raises ModelError when the subprocess fails.
  """
  if not isinstance(model_path, (str, os.PathLike)) or not os.path.isfile(model_path):
    raise errors.ModelError(f"{model_path}: model file not found (peak memory needs a file)")
  num_images = _check_count(num_images, "num_images", 1)
  command = [sys.executable, "-m", "tf_gtsrb.benchmark.memory", os.fspath(model_path),
             str(int(num_threads)), str(num_images)]
  try:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                          check=False)
  except subprocess.TimeoutExpired as e:
    raise errors.ModelError(f"{model_path}: memory measurement timed out") from e
  if done.returncode != 0:
    raise errors.ModelError(
        f"{model_path}: memory measurement failed: {done.stderr.strip()[-2000:]}")
  for line in reversed(done.stdout.splitlines()):
    if line.startswith("{"):
      return json.loads(line)
  raise errors.ModelError(f"{model_path}: memory measurement printed no result")

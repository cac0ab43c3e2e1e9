"""Is the input pipeline the training bottleneck?

Measures, on the same in-memory training images:

1. the throughput of `input_pipeline.batches_from_arrays(..., augment=True)`
   iterated alone (after a warm-up);
2. a short training run fed by that pipeline, stepping manually: the time in
   `next(iterator)` (waiting for input) and in the compiled train step, per step;
3. the same train step on one pre-materialised batch (no input work at all).

Input is the bottleneck when the share of each step spent waiting for input
reaches `threshold`. `input_overhead` (1 - materialised step / live step) also
counts the CPU the pipeline takes from the train step while running beside it.
"""

import os
import time

import numpy as np
import tensorflow as tf

from tf_gtsrb import errors
from tf_gtsrb import models
from tf_gtsrb.data import input_pipeline
from tf_gtsrb.training import compile as compile_lib

DEFAULT_THRESHOLD = 0.10


def _check(batch_size, steps, warmup, threshold=DEFAULT_THRESHOLD):
  if batch_size < 1:
    raise errors.ConfigError(f"batch_size must be >= 1, got {batch_size}")
  if steps < 1:
    raise errors.ConfigError(f"steps must be >= 1, got {steps}")
  if warmup < 0:
    raise errors.ConfigError(f"warmup must be >= 0, got {warmup}")
  if not 0.0 < threshold < 1.0:
    raise errors.ConfigError(f"threshold must be in (0, 1), got {threshold}")


def _sync(structure):
  """Waits until every tensor of `structure` is computed."""
  tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, structure)


def pipeline_throughput(images, labels, batch_size=128, steps=100, warmup=10, augment=True,
                        seed=0):
  """Images/s of the training pipeline iterated alone, after `warmup` batches."""
  _check(batch_size, steps, warmup)
  iterator = iter(input_pipeline.batches_from_arrays(images, labels, batch_size, augment, seed))
  for _ in range(warmup):
    _sync(next(iterator))
  start = time.perf_counter()
  for _ in range(steps):
    _sync(next(iterator))
  seconds = time.perf_counter() - start
  return {"steps": steps, "seconds": seconds, "ms_per_batch": 1000 * seconds / steps,
          "images_per_second": steps * batch_size / seconds}


def train_step_function(model):
  """The compiled train step of a compiled Keras model on one (images, labels) batch."""
  @tf.function(reduce_retracing=True)
  def step(images, labels):
    return model.train_step((images, labels))
  return step


def training_input_share(model, images, labels, batch_size=128, steps=100, warmup=10, seed=0):
  """Times `steps` train steps fed by the augmented pipeline, then on one fixed batch.

  `model` must be compiled. Returns per-step milliseconds waiting for input
  (`next(iterator)`), in the train step, and of the step on a pre-materialised
  batch, with the derived shares and throughputs.
  """
  _check(batch_size, steps, warmup)
  step = train_step_function(model)
  iterator = iter(input_pipeline.batches_from_arrays(images, labels, batch_size, True, seed))
  fixed = next(iterator)
  _sync(step(*fixed))  # Traces the step.
  for _ in range(warmup):
    _sync(step(*next(iterator)))
  wait = compute = 0.0
  for _ in range(steps):
    t0 = time.perf_counter()
    batch = next(iterator)
    t1 = time.perf_counter()
    _sync(step(*batch))
    t2 = time.perf_counter()
    wait += t1 - t0
    compute += t2 - t1
  del iterator  # Stops the pipeline's background work before the fixed-batch timing.
  start = time.perf_counter()
  for _ in range(steps):
    _sync(step(*fixed))
  materialised = time.perf_counter() - start
  live = wait + compute
  return {
      "steps": steps,
      "wait_ms_per_step": 1000 * wait / steps,
      "compute_ms_per_step": 1000 * compute / steps,
      "live_ms_per_step": 1000 * live / steps,
      "materialised_ms_per_step": 1000 * materialised / steps,
      "live_images_per_second": steps * batch_size / live,
      "materialised_images_per_second": steps * batch_size / materialised,
      "input_wait_share": wait / live,
      "input_overhead": 1.0 - materialised / live,
  }


def benchmark_arrays(images, labels, model_name="traffic_sign_cnn", batch_size=128, steps=100,
                     warmup=10, seed=0, threshold=DEFAULT_THRESHOLD, model_kwargs=None):
  """Runs both measurements on uint8 `images` [N,S,S,3] and `labels`; returns a flat dict."""
  _check(batch_size, steps, warmup, threshold)
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[3] != 3:
    raise errors.ConfigError(f"images must be [N, S, S, 3], got shape {images.shape}")
  input_pipeline.steps_per_epoch(len(images), batch_size)  # batch_size <= N, else ConfigError.
  size = int(images.shape[1])
  pipeline = pipeline_throughput(images, labels, batch_size, steps, warmup, True, seed)
  tf.random.set_seed(seed)  # Same initial weights for the same seed.
  model = models.build_model(model_name, input_size=size, **(model_kwargs or {}))
  compile_lib.compile_model(model)
  training = training_input_share(model, images, labels, batch_size, steps, warmup, seed)
  ratio = pipeline["images_per_second"] / training["materialised_images_per_second"]
  return {
      "model": model_name,
      "image_size": size,
      "num_examples": int(len(images)),
      "batch_size": batch_size,
      "steps": steps,
      "warmup": warmup,
      "threshold": threshold,
      "cpu_count": os.cpu_count(),
      "gpus": len(tf.config.list_physical_devices("GPU")),
      "pipeline_images_per_second": pipeline["images_per_second"],
      "pipeline_ms_per_batch": pipeline["ms_per_batch"],
      **training,
      "pipeline_to_compute_ratio": ratio,
      "input_bound": bool(training["input_wait_share"] >= threshold),
  }


def benchmark_data_dir(data_dir, split="train", limit=None, **kwargs):
  """`benchmark_arrays` on a prepared dataset's split (the first `limit` images if given)."""
  images, labels = input_pipeline.load_arrays(data_dir, split, limit)
  results = benchmark_arrays(images, labels, **kwargs)
  results["data_dir"] = str(data_dir)
  results["split"] = split
  return results


def verdict(results):
  """One sentence: is input the bottleneck, and why."""
  share = 100 * results["input_wait_share"]
  limit = 100 * results["threshold"]
  if results["input_bound"]:
    text = (f"Input IS the bottleneck: each step waits {share:.1f}% of its time for input "
            f"(threshold {limit:.0f}%).")
  else:
    text = (f"Input is NOT the bottleneck: each step waits {share:.1f}% of its time for input "
            f"(threshold {limit:.0f}%).")
  if results.get("input_overhead", 0.0) >= results["threshold"]:
    text += (f" Running beside training, the pipeline still makes each step "
             f"{100 * results['input_overhead']:.0f}% slower than on a pre-materialised batch "
             f"(CPU shared by input and train step).")
  if results["pipeline_to_compute_ratio"] < 1.0:
    text += (" The pipeline alone delivers fewer images/s than the train step consumes "
             f"({results['pipeline_to_compute_ratio']:.2f}x).")
  return text


def results_table(results):
  """Markdown table of the measurements."""
  r = results
  rows = [
      ("Input pipeline alone (augment=True)", f"{r['pipeline_images_per_second']:,.0f} images/s",
       f"{r['pipeline_ms_per_batch']:.2f} ms/batch"),
      ("Training, live pipeline", f"{r['live_images_per_second']:,.0f} images/s",
       f"{r['live_ms_per_step']:.2f} ms/step"),
      ("... waiting for input (next)", f"{100 * r['input_wait_share']:.1f}% of step",
       f"{r['wait_ms_per_step']:.2f} ms/step"),
      ("... in the compiled train step", f"{100 * (1 - r['input_wait_share']):.1f}% of step",
       f"{r['compute_ms_per_step']:.2f} ms/step"),
      ("Training, pre-materialised batch", f"{r['materialised_images_per_second']:,.0f} images/s",
       f"{r['materialised_ms_per_step']:.2f} ms/step"),
      ("Input overhead (1 - materialised/live)", f"{100 * r['input_overhead']:.1f}%", ""),
      ("Pipeline / train-step throughput", f"{r['pipeline_to_compute_ratio']:.2f}x", ""),
  ]
  lines = ["| Measure | Throughput / share | Time |", "|---|---:|---:|"]
  lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
  return "\n".join(lines)

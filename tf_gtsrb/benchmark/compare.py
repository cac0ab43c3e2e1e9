"""Side-by-side benchmark of Keras and TFLite models on the same images.

For every model: classification metrics, batch-1 latency (all models measured
in alternation), batched throughput, MACs and parameters, file and gzip size,
optionally peak memory; then ratios against a reference model.
"""

import gzip
import os
import time

import numpy as np

from tf_gtsrb import errors
from tf_gtsrb.benchmark import latency as latency_lib
from tf_gtsrb.models import runners as runners_lib
from tf_gtsrb.data.class_names import NUM_CLASSES


def parse_model_specs(text):
  """'a=path.keras,b=path.tflite' -> {'a': 'path.keras', 'b': 'path.tflite'} (in order).

  Raises ConfigError for empty entries, missing names, duplicate names or
  unknown file extensions.
  """
  specs = {}
  for entry in (text or "").split(","):
    entry = entry.strip()
    if not entry:
      continue
    name, sep, path = entry.partition("=")
    name, path = name.strip(), path.strip()
    if not sep or not name or not path:
      raise errors.ConfigError(f"model spec {entry!r} must be NAME=PATH")
    if name in specs:
      raise errors.ConfigError(f"model name {name!r} given twice")
    if not path.endswith((".keras", ".tflite")):
      raise errors.ConfigError(f"{path}: model files must end in .keras or .tflite")
    specs[name] = path
  if not specs:
    raise errors.ConfigError("no models given (expected NAME=PATH[,NAME=PATH...])")
  return specs


def agreement(pred_a, pred_b):
  """Share of images on which two models predict the same class.

  Each argument is class ids [N] or probabilities [N, C] (argmax taken).
  """
  a, b = _class_ids(pred_a, "pred_a"), _class_ids(pred_b, "pred_b")
  if a.shape != b.shape:
    raise errors.ConfigError(f"predictions differ in length: {a.size} vs {b.size}")
  if a.size == 0:
    raise errors.ConfigError("cannot compare empty predictions")
  return float(np.mean(a == b))


def _class_ids(pred, name):
  pred = np.asarray(pred)
  if pred.ndim == 2:
    return pred.argmax(axis=1)
  if pred.ndim == 1:
    return pred.astype(np.int64)
  raise errors.ConfigError(f"{name}: expected class ids [N] or probabilities [N, C], "
                           f"got shape {pred.shape}")


def _file_sizes(model):
  """(file_size_bytes, gzip_size_bytes) of a path or TFLite bytes; (None, None) otherwise."""
  from tf_gtsrb.evaluation import complexity  # pylint: disable=g-import-not-at-top
  if isinstance(model, (str, os.PathLike)):
    return complexity.model_file_size(model), complexity.gzip_size(model)
  if isinstance(model, (bytes, bytearray)):
    return len(model), len(gzip.compress(bytes(model), compresslevel=9, mtime=0))
  return None, None


def _complexity(runner):
  """(macs, params, params_source) from the Keras model or the TFLite flatbuffer.

  Keras: trainable weights (`complexity.count_params`); TFLite: weights and
  biases of conv/dense ops, with batch normalization folded in.
  """
  if runner.kind == "keras":
    from tf_gtsrb.evaluation import complexity  # pylint: disable=g-import-not-at-top
    try:
      macs = complexity.count_macs(runner.model)
    except errors.ModelError:
      macs = None
    return macs, complexity.count_params(runner.model)["trainable"], "keras_trainable"
  from tf_gtsrb.export import tflite  # pylint: disable=g-import-not-at-top
  return (tflite.count_macs(runner.content), tflite.count_params(runner.content),
          "tflite_weights")


def _input_type(runner):
  if runner.kind == "keras":
    return "float32"
  return runner.input_dtype.name


def benchmark_models(model_specs, images, labels, threads=1, latency_rounds=100, warmup=10,
                     batch_size=32, reference=None, measure_memory=False,
                     latency_image_index=0, num_classes=NUM_CLASSES, log=None):
  """Benchmarks every model on uint8 `images` [N, S, S, 3] with int `labels` [N].

  Args:
    model_specs: dict name -> .keras/.tflite path, TFLite bytes or Keras model.
    images, labels: the evaluation set.
    threads: LiteRT interpreter threads (TensorFlow threads are set by the
      caller: `runners.set_tf_threads` before TensorFlow starts).
    latency_rounds, warmup: for `latency.measure_latency` (batch 1).
    batch_size: for predictions and `latency.measure_throughput`.
    reference: model name the ratios compare against (default: the first).
    measure_memory: also measure peak RSS per model file in a subprocess.
    latency_image_index: which image the latency rounds use.
    log: called with a progress line as each model and measurement starts and ends.

  Returns:
    {'models': {name: {...}}, 'ratios': {name: {...}}, 'reference': name,
     'settings': {...}, 'predictions': {name: class ids [N]},
     'confidences': {name: the predicted class's probability [N]}}. Each model entry
    has format, input_type, metrics (classification_report), latency,
    throughput_images_per_s, macs, params, params_source, file_size_bytes,
    gzip_size_bytes and (with measure_memory) memory.
  """
  from tf_gtsrb.evaluation import metrics  # pylint: disable=g-import-not-at-top

  if not model_specs:
    raise errors.ConfigError("benchmark_models needs at least one model")
  names = list(model_specs)
  reference = names[0] if reference is None else reference
  if reference not in model_specs:
    raise errors.ConfigError(
        f"reference model {reference!r} is not among the models: {', '.join(names)}")
  images = np.asarray(images)
  labels = np.asarray(labels)
  if images.ndim != 4 or images.dtype != np.uint8 or len(images) == 0:
    raise errors.ConfigError(
        f"images must be a non-empty uint8 array [N, S, S, 3], got {images.dtype} "
        f"{images.shape}")
  if labels.shape != (len(images),):
    raise errors.ConfigError(
        f"labels must have shape ({len(images)},) to match the images, got {labels.shape}")
  if not 0 <= latency_image_index < len(images):
    raise errors.ConfigError(
        f"latency_image_index {latency_image_index} outside [0, {len(images)})")
  if not isinstance(threads, (int, np.integer)) or threads < 1:
    raise errors.ConfigError(f"threads must be a positive integer, got {threads!r}")
  for value, what, minimum in ((latency_rounds, "latency_rounds", 1), (warmup, "warmup", 0),
                               (batch_size, "batch_size", 1)):
    if not isinstance(value, (int, np.integer)) or value < minimum:
      raise errors.ConfigError(f"{what} must be an integer >= {minimum}, got {value!r}")

  runners = {name: runners_lib.load_runner(model, num_threads=threads, name=name)
             for name, model in model_specs.items()}
  log = log or (lambda line: None)
  results, predictions, confidences = {}, {}, {}
  for number, (name, runner) in enumerate(runners.items(), 1):
    start = time.perf_counter()
    log(f"[{number}/{len(runners)}] {name}: predicting {len(images):,} images")
    probabilities = runner.predict(images, batch_size=batch_size)
    if probabilities.shape != (len(images), num_classes):
      raise errors.ModelError(
          f"{runner.source}: expected {num_classes} class probabilities per image, got "
          f"output shape {probabilities.shape[1:]}")
    predictions[name] = probabilities.argmax(axis=1)
    confidences[name] = probabilities.max(axis=1)
    macs, params, params_source = _complexity(runner)
    size, gzipped = _file_sizes(model_specs[name])
    results[name] = {
        "name": name,
        "path": runner.path,
        "format": runner.kind,
        "input_type": _input_type(runner),
        "metrics": metrics.classification_report(labels, predictions[name], num_classes),
        "macs": macs,
        "params": params,
        "params_source": params_source,
        "file_size_bytes": size,
        "gzip_size_bytes": gzipped,
        "throughput_images_per_s": latency_lib.measure_throughput(runner, images, batch_size),
    }
    log(f"[{number}/{len(runners)}] {name}: accuracy "
        f"{100 * results[name]['metrics']['accuracy']:.2f}% ({time.perf_counter() - start:.0f} s)")

  log(f"latency: {latency_rounds} batch-1 rounds per model")
  timings = latency_lib.measure_latency(runners, images[latency_image_index],
                                        rounds=latency_rounds, warmup=warmup)
  for name in names:
    results[name]["latency"] = timings[name]
    if measure_memory:
      log(f"{name}: peak memory in a fresh process")
      model = model_specs[name]
      results[name]["memory"] = (
          latency_lib.measure_peak_memory(model, num_threads=threads)
          if isinstance(model, (str, os.PathLike)) else None)

  return {
      "models": results,
      "reference": reference,
      "ratios": {name: ratios(results[name], results[reference], predictions[name],
                              predictions[reference]) for name in names},
      "settings": {"threads": int(threads), "latency_rounds": int(latency_rounds),
                   "warmup": int(warmup), "batch_size": int(batch_size),
                   "num_images": int(len(images)),
                   "latency_image_index": int(latency_image_index)},
      "predictions": predictions,
      "confidences": confidences,
  }


def _ratio(numerator, denominator):
  if numerator is None or denominator is None or denominator == 0:
    return None
  return float(numerator) / float(denominator)


def ratios(result, reference, pred=None, reference_pred=None):
  """How a model compares with the reference (values > 1 favour the model).

  speedup = reference median latency / model median latency; throughput_ratio
  = model / reference images per second; size_reduction and
  gzip_size_reduction = reference / model bytes; accuracy_delta and
  f1_delta = model - reference (fractions); agreement = share of identical
  predictions.
  """
  out = {
      "speedup": _ratio(reference["latency"]["median_ms"], result["latency"]["median_ms"]),
      "throughput_ratio": _ratio(result["throughput_images_per_s"],
                                 reference["throughput_images_per_s"]),
      "size_reduction": _ratio(reference["file_size_bytes"], result["file_size_bytes"]),
      "gzip_size_reduction": _ratio(reference["gzip_size_bytes"], result["gzip_size_bytes"]),
      "accuracy_delta": result["metrics"]["accuracy"] - reference["metrics"]["accuracy"],
      "f1_delta": result["metrics"]["f1_weighted"] - reference["metrics"]["f1_weighted"],
  }
  if pred is not None and reference_pred is not None:
    out["agreement"] = agreement(pred, reference_pred)
  return out


def performance_rows(result):
  """Rows for `evaluation.report.performance_table` from a `benchmark_models` result."""
  return [{
      "name": name,
      "latency_ms": m["latency"]["median_ms"],
      "fps": m["latency"]["fps"],
      "macs": m["macs"],
      "params": m["params"],
      "size_bytes": m["file_size_bytes"],
  } for name, m in result["models"].items()]


def metrics_rows(result):
  """Rows for `evaluation.report.metrics_table` from a `benchmark_models` result."""
  return [(name, m["metrics"]) for name, m in result["models"].items()]


def ratio_lines(result):
  """Human-readable comparison lines against the reference model."""
  reference = result["reference"]
  lines = []
  for name, r in result["ratios"].items():
    if name == reference:
      continue
    parts = []
    if r["speedup"] is not None:
      parts.append(f"{r['speedup']:.2f}x faster (batch-1 median latency)")
    if r["throughput_ratio"] is not None:
      parts.append(f"{r['throughput_ratio']:.2f}x throughput")
    if r["size_reduction"] is not None:
      parts.append(f"{r['size_reduction']:.2f}x smaller file")
    if r["gzip_size_reduction"] is not None:
      parts.append(f"{r['gzip_size_reduction']:.2f}x smaller gzipped")
    parts.append(f"accuracy {100 * r['accuracy_delta']:+.2f} points")
    if "agreement" in r:
      parts.append(f"{100 * r['agreement']:.2f}% same predictions")
    lines.append(f"{name} vs {reference}: " + ", ".join(parts))
  return lines


def markdown_report(result, title="Benchmark", header_lines=()):
  """benchmark.md: the metrics and performance tables, the ratio lines and each
  model's five most frequent confusions."""
  from tf_gtsrb.evaluation import report  # pylint: disable=g-import-not-at-top
  parts = [f"# {title}", ""]
  parts.extend(f"{line}  " for line in header_lines)
  if header_lines:
    parts.append("")
  parts += ["## Metrics", "", report.metrics_table(metrics_rows(result)),
            "## Performance", "", report.performance_table(performance_rows(result))]
  lines = ratio_lines(result)
  if lines:
    parts += ["## Compared with " + result["reference"], ""]
    parts += [f"- {line}" for line in lines]
    parts.append("")
  parts += ["## Most frequent confusions", ""]
  for name, model in result["models"].items():
    parts += [f"### {name}", "", report.confusions_table(model["metrics"], limit=5)]
  return "\n".join(parts)

"""Scores TFLite models under the runtimes they deploy to, beside LiteRT's default.

  litert_reference_kernels  LiteRT with its reference kernels (BUILTIN_REF, no XNNPACK):
                            what TFLite Micro matches.
  tflite_micro              the TFLite Micro Python interpreter (`pip install --pre
                            tflite-micro`) over the model's measured arena.
  mediapipe                 MediaPipe Tasks' ImageClassifier (`pip install mediapipe`):
                            models with TFLite metadata and uint8 or float32 input; it
                            resizes and normalizes from the metadata.

Every image runs at batch 1, as on a device. Each runtime's entry per model: its
accuracy, and the share of images where it predicts the same class as LiteRT's
default (XNNPACK) interpreter and, for the interpreters, gives identical raw outputs;
TFLite Micro's also against the reference kernels, and its measured arena in bytes.
"""

import time

import numpy as np

from tf_gtsrb import errors
from tf_gtsrb.models import runners

RUNTIMES = ("litert_reference_kernels", "tflite_micro", "mediapipe")


def parse_runtimes(names):
  """Checks a list of runtime names; ConfigError naming an unknown one."""
  names = [n.strip() for n in names if n.strip()]
  for name in names:
    if name not in RUNTIMES:
      raise errors.ConfigError(f"unknown runtime {name!r}; choose from {', '.join(RUNTIMES)}")
  return names


def score_runtimes(models, images, labels, runtimes, log=print):
  """{runtime: {model name: scores}} for each `.tflite` model in `models` (name -> path).

  A model a runtime cannot take (MediaPipe and an INT8 input) gets {'skipped': why}.
  """
  labels = np.asarray(labels)
  results = {name: {} for name in parse_runtimes(runtimes)}
  for model_name, path in models.items():
    if not str(path).endswith(".tflite"):
      continue
    litert = runners.TFLiteRunner(path)
    prepared = litert.prepare(images)
    litert_raw = np.concatenate([litert.run(prepared[i:i + 1]) for i in range(len(prepared))])
    raws = {}
    for runtime in results:
      start = time.perf_counter()
      try:
        raw, extra = _RUNNERS[runtime](litert, prepared, images)
      except _Unsupported as e:
        results[runtime][model_name] = {"skipped": str(e)}
        log(f"{runtime} {model_name}: skipped ({e})")
        continue
      seconds = time.perf_counter() - start
      raws[runtime] = raw
      scores = {**_scores(raw, litert_raw, labels), **extra,
                "ms_per_image": round(1000 * seconds / len(images), 3)}
      if runtime == "tflite_micro":  # TFLite Micro runs the reference kernels: compare.
        if "litert_reference_kernels" not in raws:
          raws["litert_reference_kernels"] = _reference_kernels(litert, prepared, images)[0]
        versus = _scores(raw, raws["litert_reference_kernels"], labels)
        scores["same_class_as_reference_kernels"] = versus["same_class_as_litert"]
        scores["identical_to_reference_kernels"] = versus["identical_outputs"]
      results[runtime][model_name] = scores
      log(f"{runtime} {model_name}: accuracy {100 * scores['accuracy']:.2f}%, same class as "
          f"LiteRT on {100 * scores['same_class_as_litert']:.2f}% of {len(images)} images")
  return results


def markdown_table(results):
  """One row per runtime and model."""
  lines = ["| Runtime | Model | Accuracy | Same class as LiteRT | Identical outputs | ms/image |",
           "|---|---|---:|---:|---:|---:|"]
  for runtime, per_model in results.items():
    for model_name, s in per_model.items():
      if "skipped" in s:
        lines.append(f"| {runtime} | {model_name} | skipped: {s['skipped']} | | | |")
        continue
      identical = s.get("identical_outputs")
      lines.append(
          f"| {runtime} | {model_name} | {100 * s['accuracy']:.2f}% ({s['correct']:,}/"
          f"{s['images']:,}) | {100 * s['same_class_as_litert']:.2f}% | "
          f"{'-' if identical is None else f'{100 * identical:.2f}%'} | {s['ms_per_image']:.3f} |")
  return "\n".join(lines) + "\n"


class _Unsupported(Exception):
  """The runtime cannot take this model."""


def _scores(raw, litert_raw, labels):
  """Accuracy and agreement with LiteRT; raw outputs [N, classes], or class ids [N]."""
  classes = raw if raw.ndim == 1 else raw.reshape(len(labels), -1).argmax(1)
  litert_classes = litert_raw.reshape(len(labels), -1).argmax(1)
  correct = int(np.sum(classes == labels))
  scores = {"accuracy": correct / len(labels), "correct": correct, "images": int(len(labels)),
            "same_class_as_litert": float(np.mean(classes == litert_classes)),
            "identical_outputs": None}
  if raw.ndim > 1:
    scores["identical_outputs"] = float(np.mean(np.all(
        raw.reshape(len(labels), -1) == litert_raw.reshape(len(labels), -1), axis=1)))
  return scores


# Each runner returns (raw outputs [N, classes] or class ids [N], extra scores).


def _reference_kernels(litert, prepared, images):
  del images
  runner = runners.TFLiteRunner(litert.content, name=litert.source, reference_kernels=True)
  return np.concatenate([runner.run(prepared[i:i + 1]) for i in range(len(prepared))]), {}


def _tflite_micro(litert, prepared, images):
  del images
  from tf_gtsrb.export import micro  # pylint: disable=g-import-not-at-top
  arena = micro.measure_arena_bytes(litert.content, litert.source)
  interpreter = micro.micro_interpreter(litert.content, arena, litert.source)
  outputs = []
  for i in range(len(prepared)):
    interpreter.set_input(prepared[i:i + 1], 0)
    interpreter.invoke()
    outputs.append(interpreter.get_output(0).copy())
  return np.concatenate(outputs), {"arena_bytes": arena}


def _mediapipe(litert, prepared, images):
  """Class ids from MediaPipe's ImageClassifier on the uint8 images."""
  del prepared
  if litert.input_dtype not in (np.uint8, np.float32):
    raise _Unsupported(f"MediaPipe takes uint8 or float32 input, the model has {litert.input_dtype}")
  try:
    # pylint: disable=g-import-not-at-top
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions
    # pylint: enable=g-import-not-at-top
  except ImportError as e:
    raise errors.ConfigError('mediapipe is not installed: pip install "mediapipe>=1.2.3,<1.3"') \
        from e
  options = vision.ImageClassifierOptions(
      base_options=BaseOptions(model_asset_buffer=litert.content), max_results=1)
  try:
    classifier = vision.ImageClassifier.create_from_options(options)
  except (RuntimeError, ValueError, OSError) as e:  # OSError: MediaPipe's missing metadata.
    raise errors.ModelError(f"{litert.source}: MediaPipe cannot load the model (it needs TFLite "
                            f"metadata): {str(e).strip().splitlines()[0]}") from e
  with classifier:
    return np.array([
        classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB,
                                     data=np.ascontiguousarray(image)))
        .classifications[0].categories[0].index for image in images]), {}


_RUNNERS = {"litert_reference_kernels": _reference_kernels, "tflite_micro": _tflite_micro,
            "mediapipe": _mediapipe}

"""Copies a pipeline run's deployable artifacts into a release folder with a README.

The README's numbers are read from the run's report, never typed in. The
release manifest (`MANIFEST.json`) ties every released file to its SHA-256 and
size, and every released `.tflite` to its measured accuracy.
"""

import hashlib
import os

import numpy as np

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb.evaluation import pipeline_report
from tf_gtsrb.export import c_array
from tf_gtsrb.models import flatbuffer

FILES = {
    "baseline_float": "traffic_sign_cnn_float32.tflite",
    "int8": "traffic_sign_cnn_pruned_int8.tflite",
    "uint8": "traffic_sign_cnn_pruned_uint8.tflite",
    "c_source": "traffic_sign_cnn_pruned_int8.cc",
    "c_header": "traffic_sign_cnn_pruned_int8.h",
    "micro_ops": "micro_ops.txt",
    "labels": "labels.txt",
    "report": "report.json",
}
C_ARRAY = "g_traffic_sign_cnn_pruned_int8_model"  # The released INT8 model's C array.


def release(results, release_dir, command):
  """Writes the released files and README.md into `release_dir`; returns the file list.

  Each released model carries metadata under its released name, and the C array is
  written again from the released INT8 bytes, named after them.
  """
  from tf_gtsrb.export import tflite  # pylint: disable=g-import-not-at-top
  conversion = results["convert"].conversion["models"]["int8"]
  export_dir = os.path.dirname(results["convert"].int8)
  os.makedirs(release_dir, exist_ok=True)
  for key, source in (("baseline_float", results["convert"].baseline_float32),
                      ("int8", results["convert"].int8)):
    _save_named(tflite.load_tflite(source), os.path.join(release_dir, FILES[key]), source)
  copies = {"micro_ops": conversion["micro_ops"],
            "labels": os.path.join(export_dir, "labels.txt"),
            "report": results["report"].report_json}
  for key, source in copies.items():
    with open(source, "rb") as f:
      data = f.read()
    with io_utils.atomic_write(os.path.join(release_dir, FILES[key])) as f:
      f.write(data)
  write_c_array(release_dir)
  write_uint8_variant(release_dir)
  report = io_utils.read_json(results["report"].report_json)
  io_utils.write_text(os.path.join(release_dir, "README.md"),
                      readme_text(report, conversion, command))
  return sorted(FILES.values()) + ["README.md"]


def _save_named(data, path, source="<tflite bytes>"):
  """Saves the .tflite bytes at `path` with their metadata named after `path`'s stem."""
  from tf_gtsrb.export import metadata  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.export import tflite  # pylint: disable=g-import-not-at-top
  name = os.path.splitext(os.path.basename(path))[0]
  return tflite.save_tflite(
      metadata.add_metadata(data, metadata.ModelInfo(name=name), source=source), path)


def write_c_array(models_dir):
  """Writes the released INT8 model as C source and header beside it (`c_array.write_c_files`,
  array and arena constant named after the file, the arena measured by `micro.tensor_arena`);
  returns (header_path, source_path)."""
  from tf_gtsrb.export import micro  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.export import tflite  # pylint: disable=g-import-not-at-top
  data = tflite.load_tflite(os.path.join(models_dir, FILES["int8"]))
  return c_array.write_c_files(data, models_dir, C_ARRAY,
                               file_stem=os.path.splitext(FILES["c_source"])[0],
                               arena=micro.tensor_arena(data))


def write_uint8_variant(models_dir):
  """Writes the released INT8 model with a uint8 interface (`tflite.with_uint8_io`) and its
  own metadata beside it; returns the path. Its predictions equal the INT8 model's."""
  from tf_gtsrb.export import tflite  # pylint: disable=g-import-not-at-top
  int8_path = os.path.join(models_dir, FILES["int8"])
  data = tflite.with_uint8_io(tflite.load_tflite(int8_path), int8_path)
  return _save_named(data, os.path.join(models_dir, FILES["uint8"]))


def readme_text(report, conversion, command):
  """models/README.md: each file, its test accuracy, its input contract and how it was made."""
  models = report["benchmark"]["models"]
  baseline = models[pipeline_report.FLOAT_TFLITE_NAME]
  int8 = models[pipeline_report.INT8_NAME]
  inp = conversion["io"]["inputs"][0]
  out = conversion["io"]["outputs"][0]
  prune = report["pruning"]
  acc = lambda m: f"{100 * m['metrics']['accuracy']:.2f}%"
  size = lambda m: f"{m['file_size_bytes'] / 1024:.1f} KB"
  lines = [
      "# Released models", "",
      "Made by one run of the pipeline on the official GTSRB archives (32x32 mirror):", "",
      "```sh", command, "```", "",
      f"Test accuracy is on the {report['benchmark']['data']['num_images']:,} official test "
      "images, measured with the LiteRT interpreter (`gtsrb-benchmark-tflite`).", "",
      "| File | What | Test accuracy | Size |", "|---|---|---:|---:|",
      f"| `{FILES['baseline_float']}` | float baseline TrafficSignCNN, channels "
      f"{prune['channels_before']}, {prune['params_before']:,} params | {acc(baseline)} | "
      f"{size(baseline)} |",
      f"| `{FILES['int8']}` | channel-pruned ({prune['channels_after']}, "
      f"{prune['params_after']:,} params) + quantization-aware trained, full INT8 | "
      f"{acc(int8)} | {size(int8)} |",
      f"| `{FILES['c_source']}`, `{FILES['c_header']}` | the INT8 flatbuffer as "
      f"`alignas(16) const unsigned char {C_ARRAY}[]`, its `_len` and "
      f"`{c_array.arena_constant_for(C_ARRAY)}` (the measured arena + 10%) | same | |",
      f"| `{FILES['micro_ops']}` | the `MicroMutableOpResolver` lines the INT8 model needs | | |",
      f"| `{FILES['labels']}` | 43 class names, line index = class id | | |",
      f"| `{FILES['report']}` | the run's full report (settings, metrics, latency, targets) | | |",
      "", "## Input contract of the INT8 model", "",
      "- The whole GTSRB-style image (the sign with its margin, not ROI-cropped), resized "
      "bilinearly to 32x32, RGB.",
      f"- Input tensor `{inp['dtype']}` of shape {inp['shape']}: value = pixel - 128 (scale "
      f"{inp['scale']:.8f} = 1/255, zero point {inp['zero_point']}).",
      f"- Output `{out['dtype']}` of shape {out['shape']}: class probabilities with scale "
      f"{out['scale']:.8f} and zero point {out['zero_point']}; argmax is the class id.",
      f"- Ops: {', '.join(conversion['ops'])}. Tensor arena estimate: "
      f"{conversion['arena']['estimate_bytes']:,} bytes (an estimate; measure on the target).",
      "", "## Targets", "", "| Target | Measured | Met |", "|---|---:|:---:|",
  ] + [f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else 'NO'} |"
       for t in report["targets"]] + [
      "", f"Latency measured on: {report['benchmark']['machine']['cpu']}, "
      f"{report['benchmark']['machine']['threads']} thread(s).", ""]
  test_robustness = (report.get("corruption_suite") or {}).get("test")
  if test_robustness:
    lines += ["## Robustness to corruptions", "",
              "The corruption suite (`docs/robustness.md`): accuracy in % per kind, averaged "
              "over its severities, measured by the pipeline's benchmark step.", "",
              *pipeline_report.robustness_table_lines(test_robustness, "test")]
  recipe_time = pipeline_report.wall_time(report.get("seconds"))
  if recipe_time:
    lines += [f"Wall time of the recipe on that machine: {recipe_time}.", ""]
  return "\n".join(lines)


MANIFEST_FILE = "MANIFEST.json"
# How `sample_correct` is measured: the bundled sample's official test images,
# fed as `runners.TFLiteRunner` feeds them, through LiteRT's reference kernels.
SAMPLE_RUNTIME = "litert-reference-kernels"
# Released file name -> its model's name in report.json.
REPORT_NAMES = {
    FILES["baseline_float"]: pipeline_report.FLOAT_TFLITE_NAME,
    FILES["int8"]: pipeline_report.INT8_NAME,
}


def file_digest(path):
  """{'sha256': hex digest, 'bytes': size} of the file at `path`."""
  digest = hashlib.sha256()
  size = 0
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
      size += len(block)
  return {"sha256": digest.hexdigest(), "bytes": size}


def released_files(models_dir):
  """Relative paths ('/'-separated) of every file under `models_dir` but the manifest.

  Hidden names (temporary files of an interrupted write) and `__pycache__` are left out.
  """
  names = []
  for root, dirs, files in os.walk(models_dir):
    dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
    for name in files:
      rel = os.path.relpath(os.path.join(root, name), models_dir).replace(os.sep, "/")
      if not name.startswith(".") and rel != MANIFEST_FILE:
        names.append(rel)
  return sorted(names)


def report_metrics(report):
  """Test-set metrics of the released `.tflite` files, from a pipeline report.

  Returns {file name: {'report_name', 'test_accuracy': {'litert': ..},
  'test_correct', 'test_images'}}; `test_correct` is the confusion matrix's trace.
  """
  models = report["benchmark"]["models"]
  metrics = {}
  for file_name, report_name in REPORT_NAMES.items():
    if report_name not in models:
      continue
    scores = models[report_name]["metrics"]
    matrix = np.asarray(scores["confusion_matrix"])
    metrics[file_name] = {
        "report_name": report_name,
        "test_accuracy": {"litert": scores["accuracy"]},
        "test_correct": int(np.trace(matrix)),
        "test_images": int(matrix.sum()),
    }
  return metrics


TEST_IMAGES = 12630  # The official GTSRB test set.


def benchmark_metrics(benchmark, models_dir):
  """Test accuracies a `gtsrb-benchmark-tflite` run measured for files of `models_dir`.

  Only a run over the whole official test split counts. Returns {file name:
  {'test_accuracy': {'litert': .., <runtime>: ..}}}: LiteRT from the benchmarked
  models, other runtimes from its 'runtimes' entry.
  """
  data = benchmark.get("data") or {}
  if data.get("split") != "test" or data.get("num_images") != TEST_IMAGES:
    raise errors.ConfigError(f"a benchmark of {data.get('num_images')} {data.get('split')} "
                             f"images is not the official test set ({TEST_IMAGES:,} images)")
  released = set(released_files(models_dir))
  files = {}
  for model_name, entry in benchmark["models"].items():
    file_name = os.path.basename(entry.get("path") or "")
    if entry.get("format") == "tflite" and file_name in released:
      files[model_name] = file_name
  metrics = {}
  for model_name, file_name in files.items():
    accuracy = {"litert": benchmark["models"][model_name]["metrics"]["accuracy"]}
    for runtime, per_model in (benchmark.get("runtimes") or {}).items():
      scores = per_model.get(model_name) or {}
      if "accuracy" in scores:
        accuracy[runtime] = scores["accuracy"]
    metrics[file_name] = {"test_accuracy": accuracy}
  return metrics


def count_correct(model, images, labels):
  """How many of `images` (uint8 [N, S, S, 3]) the `.tflite` `model` (path or bytes)
  classifies as `labels`, run through LiteRT's reference kernels."""
  from tf_gtsrb.models import runners  # pylint: disable=g-import-not-at-top
  runner = runners.TFLiteRunner(model, reference_kernels=True)
  predicted = np.argmax(runner.predict(images), axis=1)
  return int(np.sum(predicted == np.asarray(labels)))


def is_npu_build(path):
  """True for a Vela-compiled `.tflite` (an `ethos-u` operator): it runs only beside an
  Ethos-U NPU, so it has no CPU accuracy of its own (its source model's is the same)."""
  graph = flatbuffer.parse(flatbuffer.read_file(path), path)
  return any(op.name == "CUSTOM:ethos-u" for op in graph.operators)  # vela.NPU_OP


def build_manifest(models_dir, sample_images, sample_labels, previous=None, measured=None):
  """The manifest of `models_dir`: every file's SHA-256 and size; per `.tflite`, metrics.

  A model's metrics are those of `previous` (a manifest whose measurements other
  tools added, e.g. another runtime's accuracy), updated with report.json's
  test metrics, then `measured` ({file: {'test_accuracy': {runtime: ..}}}, from
  `benchmark_metrics`), and a fresh count of correct sample images
  (`sample_correct` of `sample_images`).
  """
  files = {name: file_digest(os.path.join(models_dir, name))
           for name in released_files(models_dir)}
  report_path = os.path.join(models_dir, FILES["report"])
  from_report = report_metrics(io_utils.read_json(report_path)) \
      if os.path.exists(report_path) else {}
  old = (previous or {}).get("metrics", {})
  metrics = {}
  for name in files:
    if not name.endswith(".tflite") or is_npu_build(os.path.join(models_dir, name)):
      continue
    entry = dict(old.get(name, {}))
    new = from_report.get(name, {})
    accuracy = {**entry.get("test_accuracy", {}), **new.get("test_accuracy", {}),
                **(measured or {}).get(name, {}).get("test_accuracy", {})}
    entry.update(new)
    if accuracy:
      entry["test_accuracy"] = accuracy
    entry["sample_correct"] = count_correct(os.path.join(models_dir, name), sample_images,
                                            sample_labels)
    entry["sample_images"] = len(sample_labels)
    metrics[name] = entry
  return {"files": files, "metrics": metrics,
          "sample": {"split": "test", "runtime": SAMPLE_RUNTIME}}


def manifest_problems(models_dir, manifest):
  """What in `models_dir` disagrees with `manifest`: one line per file; [] when all match."""
  listed = manifest.get("files", {})
  present = released_files(models_dir)
  problems = [f"{name}: not in {MANIFEST_FILE}" for name in present if name not in listed]
  for name, expected in sorted(listed.items()):
    path = os.path.join(models_dir, name)
    if not os.path.isfile(path):
      problems.append(f"{name}: listed in {MANIFEST_FILE} but missing")
      continue
    actual = file_digest(path)
    for key in ("bytes", "sha256"):
      if actual[key] != expected.get(key):
        problems.append(f"{name}: {key} is {actual[key]}, {MANIFEST_FILE} says "
                        f"{expected.get(key)}")
  return problems


def write_manifest(models_dir, data_dir=None, benchmarks=()):
  """Measures `models_dir` and writes its MANIFEST.json; returns (path, manifest).

  `data_dir` is a prepared dataset whose test split holds the sample images; by
  default the bundled sample is prepared in a temporary directory. `benchmarks`
  are benchmark.json paths whose test accuracies are recorded (`benchmark_metrics`).
  """
  import tempfile  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.data import input_pipeline  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.data import prepare  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(models_dir):
    raise errors.ConfigError(f"{models_dir}: models directory not found")
  path = os.path.join(models_dir, MANIFEST_FILE)
  previous = io_utils.read_json(path) if os.path.exists(path) else None
  with tempfile.TemporaryDirectory() as tmp:
    if data_dir is None:
      data_dir = prepare.prepare_dataset(tmp, source="official", balance_target=0)["dataset_dir"]
    images, labels = input_pipeline.load_arrays(data_dir, "test")
    measured = {}
    for benchmark in benchmarks:
      for name, entry in benchmark_metrics(io_utils.read_json(benchmark), models_dir).items():
        measured.setdefault(name, {"test_accuracy": {}})["test_accuracy"].update(
            entry["test_accuracy"])
    manifest = build_manifest(models_dir, images, labels, previous, measured)
  io_utils.write_json(path, manifest)
  return path, manifest

"""Tests of tf_gtsrb.benchmark: runners, latency/throughput/memory, model comparison.

No timing figure is asserted: only that measurements exist and are consistent.
"""

import os

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import numpy as np
import pytest

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb.benchmark import compare
from tf_gtsrb.benchmark import latency
from tf_gtsrb.evaluation import predictions as predictions_lib
from tf_gtsrb.models import runners
from tf_gtsrb.export import metadata
from tf_gtsrb.export import tflite
from tf_gtsrb.keras import keras
from tf_gtsrb.models import io as model_io
import synthetic
import tool_runner

SIZE = 32


@pytest.fixture(scope="module")
def model(images):
  net = synthetic.tiny_cnn(input_size=SIZE)
  # A random net maps every image to about the same class; centre and scale the
  # logits on the test images so that the predictions spread over classes.
  features = keras.Model(net.input, net.get_layer("gap").output)(images / 255.0).numpy()
  kernel = np.random.default_rng(0).normal(size=(features.shape[1], 43))
  logits = features @ kernel
  kernel = kernel * (3.0 / logits.std(axis=0).mean())
  bias = -(features @ kernel).mean(axis=0)
  net.get_layer("logits").set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
  return net


@pytest.fixture(scope="module")
def images():
  return synthetic.blocky_images(64, SIZE)


@pytest.fixture(scope="module")
def labels(images):
  return np.arange(len(images)) % 43


@pytest.fixture(scope="module")
def model_files(tmp_path_factory, model, int8_bytes, float_bytes):
  directory = tmp_path_factory.mktemp("models")
  paths = {"keras_float": str(directory / "model.keras"),
           "tflite_float": str(directory / "model_float32.tflite"),
           "tflite_int8": str(directory / "model_int8.tflite")}
  model_io.save_model(model, paths["keras_float"])
  info = metadata.ModelInfo(name="test_model")  # As gtsrb-convert writes them.
  tflite.save_tflite(metadata.add_metadata(float_bytes, info), paths["tflite_float"])
  tflite.save_tflite(metadata.add_metadata(int8_bytes, info), paths["tflite_int8"])
  return paths


def test_float_tflite_matches_keras(model, images, float_bytes, model_files):
  expected = runners.KerasRunner(model).predict(images)
  assert expected.shape == (len(images), 43)
  for runner in (runners.TFLiteRunner(float_bytes), runners.TFLiteRunner(
      model_files["tflite_float"], num_threads=2)):
    for batch_size in (1, 32, 64):
      np.testing.assert_allclose(runner.predict(images, batch_size=batch_size), expected,
                                 atol=1e-4)
  from_file = runners.KerasRunner(model_files["keras_float"]).predict(images[:5])
  np.testing.assert_allclose(from_file, expected[:5], atol=1e-6)


def test_int8_agrees_with_float_on_most_images(model, images, int8_bytes):
  reference = runners.KerasRunner(model).predict(images)
  assert len(np.unique(reference.argmax(axis=1))) >= 5  # Not a constant prediction.
  probabilities = runners.TFLiteRunner(int8_bytes).predict(images)
  assert probabilities.dtype == np.float32 and probabilities.shape == (len(images), 43)
  np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=0.05)
  assert compare.agreement(probabilities, reference) >= 0.75


def test_int8_input_is_pixel_minus_128(int8_bytes, images):
  runner = runners.TFLiteRunner(int8_bytes)
  assert runner.input_dtype == np.int8 and runner.input_zero_point == -128
  expected = (images.astype(np.int16) - 128).astype(np.int8)
  np.testing.assert_array_equal(runner.prepare(images), expected)


def test_runner_uses_the_recorded_input_quantization(model):
  """A model calibrated on dark images (another input scale) is still fed correctly."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  dark = synthetic.blocky_images(32, SIZE, seed=1, low=0, high=100)

  def representative():
    for image in dark:
      yield [image[np.newaxis].astype(np.float32) / 255.0]

  converter = tf.lite.TFLiteConverter.from_keras_model(model)
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  converter.representative_dataset = representative
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  converter.inference_input_type = tf.int8
  converter.inference_output_type = tf.int8
  data = converter.convert()
  assert not tflite.input_quantization_ok(data)
  runner = runners.TFLiteRunner(data)
  scale, zero_point = runner.input_scale, runner.input_zero_point
  assert scale == pytest.approx(100 / 255 / 255, rel=1e-3)
  prepared = runner.prepare(dark)
  np.testing.assert_allclose((prepared.astype(np.float64) - zero_point) * scale,
                             dark / 255.0, atol=scale / 2 + 1e-7)
  reference = runners.KerasRunner(model).predict(dark)
  assert compare.agreement(runner.predict(dark), reference) >= 0.75


def test_runner_rejects_bad_files(tmp_path, int8_bytes):
  cases = {
      "missing.tflite": None,
      "empty.tflite": b"",
      "truncated.tflite": int8_bytes[:len(int8_bytes) // 3],
      "cut.tflite": int8_bytes[:-4],
      "text.tflite": b"this is not a model, just some text\n",
  }
  messages = {"missing.tflite": "not found", "empty.tflite": "empty",
              "truncated.tflite": "truncated", "cut.tflite": "truncated",
              "text.tflite": "TFL3"}
  for name, content in cases.items():
    path = tmp_path / name
    if content is not None:
      path.write_bytes(content)
    with pytest.raises(errors.ModelError, match=messages[name]) as info:
      runners.TFLiteRunner(str(path))
    assert name in str(info.value)


def test_runner_rejects_non_image_model():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  inputs = keras.Input((10,))
  dense = keras.Model(inputs, keras.layers.Dense(43, activation="softmax")(inputs))
  data = tf.lite.TFLiteConverter.from_keras_model(dense).convert()
  with pytest.raises(errors.ModelError, match="image"):
    runners.TFLiteRunner(data, name="dense.tflite")


def test_runner_rejects_wrong_images(int8_bytes, model, images):
  for runner in (runners.TFLiteRunner(int8_bytes, name="m.tflite"), runners.KerasRunner(model)):
    with pytest.raises(errors.ConfigError, match=r"expected uint8 \[N, 32, 32, 3\].*got shape"):
      runner.predict(np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(errors.ConfigError, match="got shape"):
      runner.predict(images[0])
    with pytest.raises(errors.ConfigError, match="float32"):
      runner.predict(images.astype(np.float32))


def test_load_runner_dispatches_on_extension(model_files, tmp_path):
  assert runners.load_runner(model_files["tflite_int8"]).kind == "tflite"
  assert runners.load_runner(model_files["keras_float"]).kind == "keras"
  with pytest.raises(errors.ConfigError, match=".onnx"):
    runners.load_runner(str(tmp_path / "model.onnx"))


def test_latency_and_throughput(model, int8_bytes, float_bytes, images):
  group = {"keras": runners.KerasRunner(model), "int8": runners.TFLiteRunner(int8_bytes),
           "float": runners.TFLiteRunner(float_bytes)}
  result = latency.measure_latency(group, images[0], rounds=5, warmup=1)
  assert set(result) == set(group)
  for timing in result.values():
    assert timing["rounds"] == 5
    assert 0 < timing["min_ms"] <= timing["median_ms"] <= timing["p90_ms"] <= timing["max_ms"]
    assert timing["fps"] == pytest.approx(1000 / timing["median_ms"])
  assert latency.measure_throughput(group["int8"], images, batch_size=16) > 0
  with pytest.raises(errors.ConfigError):
    latency.measure_latency(group, images[0], rounds=0)
  with pytest.raises(errors.ConfigError):
    latency.measure_latency({}, images[0])


def test_peak_memory_in_subprocess(model_files):
  memory = latency.measure_peak_memory(model_files["tflite_int8"], num_images=2)
  assert memory["runtime"] == "litert"
  assert memory["peak_mb"] >= memory["baseline_mb"] > 0
  assert memory["increase_mb"] == pytest.approx(memory["peak_mb"] - memory["baseline_mb"])


def test_agreement():
  assert compare.agreement([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75
  probabilities = np.eye(4)[[1, 2, 3, 0]]
  assert compare.agreement(probabilities, [1, 2, 3, 3]) == 0.75
  with pytest.raises(errors.ConfigError, match="length"):
    compare.agreement([1, 2], [1, 2, 3])
  with pytest.raises(errors.ConfigError, match="empty"):
    compare.agreement([], [])


def test_parse_model_specs():
  specs = compare.parse_model_specs("a=x.keras, b=y.tflite")
  assert specs == {"a": "x.keras", "b": "y.tflite"}
  for bad, message in (("", "no models"), ("x.keras", "NAME=PATH"), ("a=x.onnx", "end in"),
                       ("a=x.keras,a=y.tflite", "twice")):
    with pytest.raises(errors.ConfigError, match=message):
      compare.parse_model_specs(bad)


def test_benchmark_models(model_files, images, labels):
  result = compare.benchmark_models(model_files, images, labels, latency_rounds=3, warmup=1,
                                    batch_size=16, reference="keras_float")
  assert set(result) == {"models", "ratios", "reference", "settings", "predictions", "confidences"}
  assert list(result["models"]) == list(model_files)
  for name, entry in result["models"].items():
    for key in ("metrics", "latency", "throughput_images_per_s", "macs", "params",
                "file_size_bytes", "gzip_size_bytes", "format", "input_type"):
      assert entry[key] is not None, (name, key)
    assert entry["file_size_bytes"] == os.path.getsize(model_files[name])
    assert 0 < entry["gzip_size_bytes"]
    assert entry["metrics"]["num_examples"] == len(images)
    assert result["predictions"][name].shape == (len(images),)
    assert np.all((0 < result["confidences"][name]) & (result["confidences"][name] <= 1.0001))
  models = result["models"]
  assert models["keras_float"]["macs"] == models["tflite_int8"]["macs"] > 0
  assert models["tflite_int8"]["input_type"] == "int8"
  assert models["keras_float"]["format"] == "keras"
  ratios = result["ratios"]
  assert ratios["keras_float"]["speedup"] == 1.0
  assert ratios["keras_float"]["agreement"] == 1.0
  assert ratios["tflite_float"]["agreement"] == 1.0
  assert ratios["tflite_int8"]["agreement"] >= 0.75
  assert ratios["tflite_int8"]["size_reduction"] > 1
  assert ratios["tflite_int8"]["speedup"] > 0
  assert ratios["tflite_int8"]["accuracy_delta"] == pytest.approx(
      models["tflite_int8"]["metrics"]["accuracy"] - models["keras_float"]["metrics"]["accuracy"])
  markdown = compare.markdown_report(result)
  assert "Accuracy (%)" in markdown and "Inference Time (ms)" in markdown
  assert "tflite_int8 vs keras_float" in markdown
  assert markdown.count("| True class | Predicted as |") == len(model_files)
  with pytest.raises(errors.ConfigError, match="reference"):
    compare.benchmark_models(model_files, images, labels, reference="nope")
  with pytest.raises(errors.ConfigError, match="labels"):
    compare.benchmark_models(model_files, images, labels[:3])


def test_runtimes_score_each_flatbuffer_and_tflite_micro_follows_the_reference_kernels(
    model_files, images, labels):
  from tf_gtsrb.benchmark import runtimes  # pylint: disable=g-import-not-at-top
  scores = runtimes.score_runtimes(model_files, images, labels, runtimes.RUNTIMES, log=lambda line: None)
  assert set(scores) == set(runtimes.RUNTIMES)
  for runtime, per_model in scores.items():
    assert set(per_model) == {"tflite_float", "tflite_int8"}, runtime  # Not the .keras model.
  assert scores["mediapipe"]["tflite_int8"] == {
      "skipped": "MediaPipe takes uint8 or float32 input, the model has int8"}
  litert_int8 = runners.TFLiteRunner(model_files["tflite_int8"]).predict(images).argmax(1)
  for runtime in ("litert_reference_kernels", "tflite_micro"):
    s = scores[runtime]["tflite_int8"]
    assert s["images"] == len(images) and s["accuracy"] == s["correct"] / len(images)
    assert s["same_class_as_litert"] >= 0.9
    assert s["ms_per_image"] > 0
  # TFLite Micro's int8 outputs stay within a few units of the reference kernels'.
  litert = runners.TFLiteRunner(model_files["tflite_int8"])
  prepared = litert.prepare(images)
  micro_raw = runtimes._tflite_micro(litert, prepared, images)[0].astype(int)
  reference_raw = runtimes._reference_kernels(litert, prepared, images)[0].astype(int)
  assert micro_raw.shape == reference_raw.shape == (len(images), 43)
  assert np.abs(micro_raw - reference_raw).max() <= 8
  assert np.mean(micro_raw == reference_raw) >= 0.95
  micro_scores = scores["tflite_micro"]["tflite_int8"]
  assert micro_scores["identical_to_reference_kernels"] == np.mean(
      np.all(micro_raw == reference_raw, axis=1))
  assert micro_scores["same_class_as_reference_kernels"] >= 0.9
  assert micro_scores["arena_bytes"] > 0 and micro_scores["arena_bytes"] % 16 == 0
  float_mp = scores["mediapipe"]["tflite_float"]  # Normalization read from the metadata.
  assert float_mp["same_class_as_litert"] == 1.0 and float_mp["identical_outputs"] is None
  assert abs(scores["tflite_micro"]["tflite_int8"]["accuracy"]
             - np.mean(litert_int8 == labels)) <= 0.1
  table = runtimes.markdown_table(scores)
  assert "| tflite_micro | tflite_int8 |" in table and "| mediapipe | tflite_int8 | skipped" in table
  with pytest.raises(errors.ConfigError, match="unknown runtime 'tflm'"):
    runtimes.parse_runtimes(["tflm"])


def test_benchmark_tool_end_to_end(tmp_path, model_files, tiny_data_dir):
  out = tmp_path / "bench"
  models = ",".join(f"{name}={path}" for name, path in model_files.items())
  done = tool_runner.run_tool(
      "benchmark_tflite", f"--models={models}", f"--data_dir={tiny_data_dir}", "--limit=48",
      "--latency_rounds=3", "--warmup=1", "--batch_size=16", "--reference=keras_float",
      "--agreement=tflite_float,keras_float", f"--output_dir={out}", "--nomemory",
      "--runtimes=tflite_micro,mediapipe", "--npu=ethos-u55-128")
  assert done.returncode == 0, done.stderr[-3000:]
  saved = io_utils.read_json(str(out / "benchmark.json"))
  from tf_gtsrb.data import archives  # pylint: disable=g-import-not-at-top
  for name, path in model_files.items():  # The inputs, by content.
    assert saved["models"][name]["sha256"] == archives.sha256sum(path)
  assert saved["data"]["source"]["fingerprint"]
  npu = saved["npu"]
  assert list(npu) == ["tflite_int8"]  # The float models get no NPU estimate.
  assert npu["tflite_int8"]["targets"]["ethos-u55-128"]["inference_ms"] > 0
  assert "## Arm Ethos-U NPU (Vela estimates)" in (out / "benchmark.md").read_text()
  assert "| tflite_micro | tflite_int8 |" in (out / "benchmark.md").read_text()
  saved_runtimes = io_utils.read_json(str(out / "benchmark.json"))["runtimes"]
  assert saved_runtimes["tflite_micro"]["tflite_int8"]["images"] == 48
  assert "skipped" in saved_runtimes["mediapipe"]["tflite_int8"]
  assert "CPU:" in done.stdout and "threads: 1" in done.stdout
  assert "[1/3] keras_float: predicting 48 images" in done.stdout  # Progress, model by model.
  assert "[3/3] tflite_int8: accuracy" in done.stdout
  assert "agreement tflite_float vs keras_float: 100.00%" in done.stdout
  names = set(os.listdir(out))
  assert {"benchmark.json", "benchmark.md", "predictions.npz", "report.html"} <= names
  saved = predictions_lib.load_predictions(str(out / "predictions.npz"))
  assert list(saved["models"]) == list(model_files) and len(saved["labels"]) == 48
  report = (out / "report.html").read_text()
  assert "Error gallery (tflite_int8)" in report and "data:image/png;base64," in report
  assert {f"confusion_matrix_{n}.png" for n in model_files} <= names


def test_failed_benchmark_leaves_the_previous_set_intact(tmp_path, model_files, tiny_data_dir,
                                                         monkeypatch):
  """The files of a run commit as a set: a run failing after it wrote some of them leaves
  every file of the previous run as it was, and no staging directory behind."""
  from tf_gtsrb.benchmark import run as bench  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.evaluation import plots  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / "bench")
  kwargs = dict(data_dir=tiny_data_dir, output_dir=out, limit=16, latency_rounds=2, warmup=0,
                batch_size=16, measure_memory=False, log=lambda line: None)
  bench.run_benchmark(model_files, **kwargs)
  before = {name: (os.stat(os.path.join(out, name)).st_mtime_ns,
                   open(os.path.join(out, name), "rb").read()) for name in os.listdir(out)}
  assert {"benchmark.json", "benchmark.md", "predictions.npz"} <= set(before)
  save_png = plots.save_confusion_matrix_png
  calls = []

  def failing_second_png(*args, **kwargs_):
    calls.append(1)
    if len(calls) == 2:
      raise OSError(28, "No space left on device")
    return save_png(*args, **kwargs_)

  monkeypatch.setattr(plots, "save_confusion_matrix_png", failing_second_png)
  with pytest.raises(errors.GtsrbError, match="No space left on device"):
    bench.run_benchmark({"only": model_files["tflite_int8"], **model_files}, **kwargs)
  after = {name: (os.stat(os.path.join(out, name)).st_mtime_ns,
                  open(os.path.join(out, name), "rb").read()) for name in os.listdir(out)}
  assert after == before
  assert os.listdir(tmp_path) == ["bench"]


def test_run_in_subprocess_streams_progress_and_returns_the_result(tmp_path, model_files,
                                                                  tiny_data_dir):
  from tf_gtsrb.benchmark import run as bench  # pylint: disable=g-import-not-at-top
  lines = []
  result = bench.run_in_subprocess(
      log=lines.append, specs={"tflite_int8": model_files["tflite_int8"]},
      data_dir=tiny_data_dir, output_dir=str(tmp_path / "bench"), limit=16, threads=1,
      latency_rounds=2, warmup=0, measure_memory=False)
  assert result["models"]["tflite_int8"]["metrics"]["num_examples"] == 16
  assert any("threads: 1; 16 test images" in line for line in lines)
  assert any(line.startswith("| ") for line in lines)  # The markdown report, as it comes.
  with pytest.raises(errors.GtsrbError, match="benchmark failed"):
    bench.run_in_subprocess(log=lines.append, specs={"x": str(tmp_path / "missing.tflite")},
                            data_dir=tiny_data_dir, output_dir=str(tmp_path / "bench2"))


def test_benchmark_tool_rejects_bad_flags(tmp_path):
  done = tool_runner.run_tool("benchmark_tflite", f"--models=a={tmp_path}/missing.tflite",
                              f"--data_dir={tmp_path}", f"--output_dir={tmp_path}/out",
                              timeout=120)
  assert done.returncode == 1 and "model file not found" in done.stderr

"""Tests for tf_gtsrb.evaluation.evaluate and the gtsrb-evaluate tool."""

import json
import os
import subprocess
import sys

import tf_gtsrb  # noqa: F401  (before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from tf_gtsrb import errors
from tf_gtsrb.data import input_pipeline
from tf_gtsrb.evaluation import complexity
from tf_gtsrb.evaluation import evaluate
from tf_gtsrb.evaluation import metrics
from tf_gtsrb.models import io as model_io
from tf_gtsrb.models import traffic_sign_cnn
import synthetic

TOOL = [sys.executable, "-m", "tf_gtsrb_tools.evaluate"]


@pytest.fixture(scope="module")
def tiny_model():
  tf.keras.utils.set_random_seed(0)
  return traffic_sign_cnn.build(channels=(4, 8, 8, 8), input_size=32)


def test_predict_keras_arrays_and_datasets(tiny_model):
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
  images = pixels.astype(np.float32) / 255.0
  probabilities = evaluate.predict_keras(tiny_model, images, batch_size=4)
  assert probabilities.shape == (10, 43) and probabilities.dtype == np.float32
  np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(evaluate.predict_keras(tiny_model, pixels), probabilities,
                             atol=1e-6)
  labelled = tf.data.Dataset.from_tensor_slices((images, np.arange(10))).batch(3)
  np.testing.assert_allclose(evaluate.predict_keras(tiny_model, labelled), probabilities,
                             atol=1e-6)
  unlabelled = tf.data.Dataset.from_tensor_slices(images).batch(3)
  np.testing.assert_allclose(evaluate.predict_keras(tiny_model, unlabelled), probabilities,
                             atol=1e-6)
  got, labels = evaluate.predict_dataset(tiny_model, labelled)
  np.testing.assert_allclose(got, probabilities, atol=1e-6)
  np.testing.assert_array_equal(labels, np.arange(10))


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_predict_keras_rejects_bad_batch_size(tiny_model, batch_size):
  with pytest.raises(errors.ConfigError, match="batch_size"):
    evaluate.predict_keras(tiny_model, np.zeros((1, 32, 32, 3), np.float32), batch_size)


def test_evaluate_keras_model_rejects_bad_arguments(tiny_model, tmp_path):
  with pytest.raises(errors.ConfigError, match="split"):
    evaluate.evaluate_keras_model(tiny_model, str(tmp_path), split="dev")
  with pytest.raises(errors.ConfigError, match="batch_size"):
    evaluate.evaluate_keras_model(tiny_model, str(tmp_path), batch_size=0)
  with pytest.raises(errors.ConfigError, match="not found"):
    evaluate.evaluate_keras_model(tiny_model, str(tmp_path / "missing"))


def _synthetic_result():
  y_true = np.arange(86) % 43
  y_pred = np.where(y_true % 5 == 0, 0, y_true)
  model = traffic_sign_cnn.build(channels=(4, 8, 8, 8))
  return {"metrics": metrics.classification_report(y_true, y_pred),
          "params": complexity.count_params(model), "macs": complexity.count_macs(model),
          "split": "test", "num_classes": 43}


def test_write_evaluation(tmp_path):
  result = _synthetic_result()
  model_file = tmp_path / "model.keras"
  model_file.write_bytes(b"x" * 3000)
  out = tmp_path / "eval"
  paths = evaluate.write_evaluation(result, str(out), model_path=str(model_file), name="tiny")
  assert sorted(os.listdir(out)) == ["confusion_matrix.png", "evaluation.json", "evaluation.md"]
  saved = json.loads((out / "evaluation.json").read_text())
  assert saved["model_size_bytes"] == 3000
  assert 0 < saved["model_gzip_size_bytes"] < 3000
  assert saved["name"] == "tiny"
  assert saved["metrics"]["accuracy"] == pytest.approx(result["metrics"]["accuracy"])
  assert saved["macs"] == result["macs"]
  markdown = (out / "evaluation.md").read_text()
  accuracy = 100 * result["metrics"]["accuracy"]
  assert "| Model | Accuracy (%) | Precision (%) | Recall (%) | F1-Score (%) |" in markdown
  assert f"| tiny | {accuracy:.2f} |" in markdown
  assert "| Model | Inference Time (ms) | FPS | MACs (M) |" in markdown
  assert f"| tiny | - | - | {result['macs'] / 1e6:.2f} |" in markdown
  assert "| 14 | Stop |" in markdown
  assert open(paths["png"], "rb").read(4) == b"\x89PNG"

  # Without a model file: no size, and the default row name.
  paths = evaluate.write_evaluation(result, str(tmp_path / "eval2"))
  saved = json.loads(open(paths["json"]).read())
  assert "model_size_bytes" not in saved and saved["name"] == "model"


def test_evaluate_on_tiny_dataset(tiny_model, tiny_data_dir):
  result = evaluate.evaluate_keras_model(tiny_model, tiny_data_dir, "validation", batch_size=64)
  _, labels = input_pipeline.load_arrays(tiny_data_dir, "validation")
  scores = result["metrics"]
  assert scores["num_examples"] == len(labels)
  assert [c["support"] for c in scores["per_class"]] == np.bincount(labels, minlength=43).tolist()
  probabilities = evaluate.predict_keras(
      tiny_model, input_pipeline.load_arrays(tiny_data_dir, "validation")[0])
  expected = metrics.classification_report(labels, probabilities.argmax(axis=1))
  assert scores["accuracy"] == pytest.approx(expected["accuracy"])
  assert result["macs"] == complexity.count_macs(tiny_model)
  assert result["params"] == complexity.count_params(tiny_model)
  assert result["split"] == "validation"

  wrong_size = traffic_sign_cnn.build(channels=(4, 8, 8, 8), input_size=48)
  with pytest.raises(errors.ModelError, match="48x48"):
    evaluate.evaluate_keras_model(wrong_size, tiny_data_dir)


def _run_tool(*args):
  return subprocess.run(TOOL + list(args), capture_output=True, text=True, timeout=300)


def test_tool_rejects_missing_inputs_before_work(tmp_path, tiny_data_dir):
  done = _run_tool(f"--model={tmp_path}/none.keras", f"--data_dir={tiny_data_dir}")
  assert done.returncode != 0
  assert "none.keras: model file not found" in done.stderr

  model_file = tmp_path / "m.keras"
  model_file.write_bytes(b"not a model")
  done = _run_tool(f"--model={model_file}", f"--data_dir={tmp_path}/nodata")
  assert done.returncode != 0
  assert "nodata: data directory not found" in done.stderr
  assert not (tmp_path / "eval_test").exists()

  flatbuffer = tmp_path / "m.tflite"
  flatbuffer.write_bytes(b"TFL3")
  done = _run_tool(f"--model={flatbuffer}", f"--data_dir={tiny_data_dir}")
  assert done.returncode == 1
  assert done.stderr.strip().splitlines()[-1] == (
      f"error: {flatbuffer}: gtsrb-evaluate scores .keras models; score a .tflite with "
      f"gtsrb-benchmark-tflite --models=NAME={flatbuffer}")


def test_tool_end_to_end(tmp_path, tiny_model, tiny_data_dir):
  model_path = str(tmp_path / "run" / "tiny.keras")
  os.makedirs(os.path.dirname(model_path))
  model_io.save_model(tiny_model, model_path)
  done = _run_tool(f"--model={model_path}", f"--data_dir={tiny_data_dir}", "--batch_size=128",
                   "--split=test")
  assert done.returncode == 0, done.stderr
  assert "| Model | Accuracy (%) |" in done.stdout
  assert "| tiny |" in done.stdout
  out = tmp_path / "run" / "eval_test"  # Default output directory.
  assert sorted(os.listdir(out)) == ["confusion_matrix.png", "evaluation.json", "evaluation.md"]
  saved = json.loads((out / "evaluation.json").read_text())
  assert saved["model_size_bytes"] == os.path.getsize(model_path)
  from tf_gtsrb.data import archives  # pylint: disable=g-import-not-at-top
  assert saved["model_sha256"] == archives.sha256sum(model_path)
  assert saved["metrics"]["num_examples"] == input_pipeline.split_size(tiny_data_dir, "test")


def test_tool_refuses_models_that_are_not_rgb_classifiers_in_one_line(tmp_path, tiny_data_dir):
  expected = {"not an image": "input is not a square RGB image tensor (None, S, S, 3): got "
                              "(None, 10)",
              "greyscale": "input is not a square RGB image tensor (None, S, S, 3): got "
                           "(None, 32, 32, 1)",
              "two outputs": "output is not one vector of class scores (None, C): got 2 outputs",
              "keras 3": "saved by Keras 3.12.0; this project reads models saved by Keras 2 "
                         "(tf_keras, TF_USE_LEGACY_KERAS=1)"}
  for what, path in synthetic.bad_keras_models(tmp_path).items():
    done = _run_tool(f"--model={path}", f"--data_dir={tiny_data_dir}",
                     f"--output_dir={tmp_path}/out")
    assert done.returncode == 1, (what, done.stderr[-2000:])
    assert done.stderr.strip().splitlines()[-1] == f"error: {path}: {expected[what]}", what
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_tool_runs_the_corruption_suite(tmp_path, tiny_model, tiny_data_dir):
  model_path = str(tmp_path / "tiny.keras")
  model_io.save_model(tiny_model, model_path)
  out = tmp_path / "eval"
  done = _run_tool(f"--model={model_path}", f"--data_dir={tiny_data_dir}", f"--output_dir={out}",
                   "--corruptions", "--corruption_kinds=fog,jpeg", "--corruption_severities=1,5",
                   "--corruption_subset=40")
  assert done.returncode == 0, done.stderr[-3000:]
  saved = json.loads((out / "robustness.json").read_text())
  assert set(saved) == {"tiny"}
  assert saved["tiny"]["num_images"] == 40
  assert set(saved["tiny"]["accuracy"]) == {"fog", "jpeg"}
  assert set(saved["tiny"]["accuracy"]["fog"]) == {"1", "5"}
  assert (out / "corruptions" / "tiny" / "corruptions.png").exists()
  bad = _run_tool(f"--model={model_path}", f"--data_dir={tiny_data_dir}",
                  f"--output_dir={tmp_path}/bad", "--corruptions", "--corruption_kinds=smoke")
  assert bad.returncode == 1 and "smoke" in bad.stderr and not (tmp_path / "bad").exists()

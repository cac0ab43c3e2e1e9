"""Quantization-aware training: layer coverage, training, PQAT zeros, save/load round trips."""

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import json
import os

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

from tf_gtsrb import errors
from tf_gtsrb.compression import clustering
from tf_gtsrb.compression import magnitude_pruning as mp
from tf_gtsrb.compression import quantization
from tf_gtsrb.data import input_pipeline
from tf_gtsrb.keras import keras
from tf_gtsrb.models import io as model_io
from tf_gtsrb.models import tfmot_files
from tf_gtsrb.training import compile as compile_lib
import synthetic
from synthetic import KERNEL_LAYERS
import tool_runner


@pytest.fixture(scope="module")
def images():
  """The images of `batches16`, in order."""
  return synthetic.random_float_data(synthetic.TINY_SIZE)[0]


@pytest.fixture(scope="module")
def sparse_model(cnn16):
  """`cnn16` with half of every Conv2D/Dense kernel set to zero at random."""
  return synthetic.random_sparse_copy(cnn16)


def _wrapped_kernels(qat_model):
  """{layer: kernel variable value} of the quantize-wrapped Conv2D/Dense layers."""
  return {mp.unwrap(layer).name: mp.kernel_variable(layer).numpy()
          for layer in mp.kernel_layers(qat_model)}


def _round_trip(qat_model, images, tmp_path):
  path = str(tmp_path / "qat.keras")
  model_io.save_model(qat_model, path)
  assert tfmot_files.is_quantize_aware_file(path)
  loaded = model_io.load_model(path)
  assert tfmot_files.is_quantize_aware(loaded)
  np.testing.assert_allclose(loaded.predict(images, verbose=0),
                             qat_model.predict(images, verbose=0), atol=1e-6)
  return loaded


def test_every_layer_is_quantize_wrapped(cnn16):
  qat_model = quantization.quantize_aware(cnn16)
  assert tfmot_files.is_quantize_aware(qat_model)
  assert not tfmot_files.is_quantize_aware(cnn16)
  inner = [layer for layer in qat_model.layers if not isinstance(layer, keras.layers.InputLayer)]
  assert type(inner[0]).__name__ == "QuantizeLayer"
  assert all(isinstance(layer, tfmot.quantization.keras.QuantizeWrapperV2)
             for layer in inner[1:])
  assert [layer.layer.name for layer in inner[1:]] == [
      layer.name for layer in cnn16.layers[1:]]


def test_qat_trains_predicts_and_round_trips(cnn16, batches16, images, tmp_path):
  before = _wrapped_kernels(quantization.quantize_aware(cnn16))
  qat_model = quantization.qat_fine_tune(cnn16, batches16.take(1), batches16.take(1), epochs=1,
                                         learning_rate=1e-2, verbose=0)
  after = _wrapped_kernels(qat_model)
  assert any(not np.array_equal(before[name], after[name]) for name in KERNEL_LAYERS)
  # QAT fine-tunes with the training loss (label smoothing 0.1), not a sharper one.
  assert qat_model.loss.label_smoothing == compile_lib.DEFAULT_LABEL_SMOOTHING == 0.1
  predictions = qat_model.predict(images, verbose=0)
  assert predictions.shape == (64, 43)
  np.testing.assert_allclose(predictions.sum(axis=1), 1.0, atol=1e-3)
  _round_trip(qat_model, images, tmp_path)


def test_pqat_keeps_zeros_of_a_sparse_model(cnn16, sparse_model, batches16, images, tmp_path):
  zeros = {name: sparse_model.get_layer(name).get_weights()[0] == 0 for name in KERNEL_LAYERS}
  assert mp.is_sparse(sparse_model) and not mp.is_sparse(cnn16)
  # preserve_sparsity=None: automatic, on because the model is 50% sparse.
  qat_model = quantization.qat_fine_tune(sparse_model, batches16, batches16, epochs=1,
                                         learning_rate=1e-2, verbose=0)
  kernels = _wrapped_kernels(qat_model)
  for name in KERNEL_LAYERS:
    assert np.all(kernels[name][zeros[name]] == 0), name
    assert np.any(kernels[name][~zeros[name]] != sparse_model.get_layer(name).get_weights()[0][
        ~zeros[name]]), f"{name} did not train"
  loaded = _round_trip(qat_model, images, tmp_path)
  for name, kernel in _wrapped_kernels(loaded).items():
    assert np.all(kernel[zeros[name]] == 0), name


def test_cluster_preserving_qat_round_trips(cnn16, batches16, images, tmp_path):
  clustered = clustering.cluster_and_fine_tune(cnn16, batches16.take(1), batches16.take(1),
                                               number_of_clusters=4, epochs=1, verbose=0)
  qat_model = quantization.qat_fine_tune(clustered, batches16.take(1), batches16.take(1), epochs=1,
                                         preserve_clusters=True, verbose=0)
  _round_trip(qat_model, images, tmp_path)


@pytest.mark.slow
def test_qat_step_clusters_first_and_records_what_it_kept(cnn16, batches16, tmp_path):
  """`run_qat` (the pipeline's and gtsrb-qat's QAT step) with clusters: kernels keep at most
  that many values through QAT, sparsity is detected from the input, TensorBoard logs both
  phases."""
  sparse = synthetic.random_sparse_copy(cnn16)
  qat_model, record = quantization.run_qat(
      sparse, batches16.repeat(), batches16, epochs=1, learning_rate=1e-4, steps_per_epoch=2,
      clusters=4, log_dir=str(tmp_path / "logs"), verbose=0)
  assert tfmot_files.is_quantize_aware(qat_model)
  assert record["preserve_sparsity"] and record["preserve_clusters"] and record["clusters"] == 4
  assert record["input_sparsity"] >= mp.SPARSE_THRESHOLD
  assert record["sparsity"]["sparsity"] >= record["input_sparsity"] - 1e-9
  for name, kernel in _wrapped_kernels(qat_model).items():  # Per output channel (CQAT).
    channels = kernel.reshape(-1, kernel.shape[-1]).T
    assert max(np.unique(c).size for c in channels) <= 4 + 1, name  # Clusters and the zero.
  assert set(record["unique_weights"]) == set(_wrapped_kernels(qat_model))
  assert 0.0 <= record["val_accuracy"] <= 1.0
  assert sorted(os.listdir(tmp_path / "logs")) == ["cluster", "fit"]


def test_quantize_aware_needs_a_float_model(cnn16):
  with pytest.raises(errors.ModelError, match="wrapped"):
    quantization.quantize_aware(mp.apply_magnitude_pruning(cnn16, 0.5, end_step=10))
  with pytest.raises(errors.ConfigError, match="epochs"):
    quantization.qat_fine_tune(cnn16, None, None, epochs=0)


def _run_tool(name, *args):
  done = tool_runner.run_tool(name, *args, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return done.stdout


def test_prune_and_qat_tools_end_to_end(tiny_data_dir, tmp_path):
  dense_path = str(tmp_path / "dense.keras")
  model_io.save_model(synthetic.tiny_cnn(input_size=32), dense_path)
  common = [f"--data_dir={tiny_data_dir}", "--epochs=1", "--batch_size=16",
            "--steps_per_epoch=4", "--verbose=0"]
  sparse_dir = tmp_path / "sparse"
  out = _run_tool("prune_magnitude", f"--model={dense_path}", f"--output_dir={sparse_dir}",
                  "--target_sparsity=0.5", *common)
  assert "all kernels" in out
  report = json.loads((sparse_dir / "sparsity.json").read_text())
  assert report["sparsity"]["sparsity"] == pytest.approx(0.5, abs=0.01)
  assert report["file_size"]["sparse_gzip_bytes"] < report["file_size"]["dense_gzip_bytes"]
  assert 0.0 <= report["validation_accuracy"]["sparse"] <= 1.0

  qat_dir = tmp_path / "qat"
  _run_tool("qat", f"--model={sparse_dir / 'pruned_sparse.keras'}", f"--output_dir={qat_dir}",
            f"--teacher={dense_path}", "--noise_probability=0.5", "--sticker_probability=0.25",
            "--jpeg_probability=0.75", *common)
  report = json.loads((qat_dir / "qat.json").read_text())
  assert report["teacher"] == [os.path.abspath(dense_path)]
  assert (report["noise_probability"], report["erase_probability"],
          report["sticker_probability"], report["jpeg_probability"]) == (0.5, 0.0, 0.25, 0.75)
  assert report["preserve_sparsity"] is True  # automatic: the input is 50% sparse
  assert report["sparsity"]["sparsity"] == pytest.approx(report["input_sparsity"])
  assert 0.0 <= report["validation_accuracy"] <= 1.0 and 0.0 <= report["test_accuracy"] <= 1.0
  assert tfmot_files.is_quantize_aware(model_io.load_model(str(qat_dir / "qat.keras")))


def test_prune_and_qat_tools_final_fit_train_on_the_validation_split_too(tiny_data_dir,
                                                                         tmp_path):
  dense_path = str(tmp_path / "dense.keras")
  model_io.save_model(synthetic.tiny_cnn(input_size=32), dense_path)
  common = [f"--data_dir={tiny_data_dir}", "--epochs=1", "--batch_size=64", "--verbose=0",
            "--fine_tune_on_validation"]
  both_splits_steps = input_pipeline.split_size(tiny_data_dir, "train+validation") // 64
  assert both_splits_steps > input_pipeline.split_size(tiny_data_dir, "train") // 64
  sparse_dir = tmp_path / "sparse"
  out = _run_tool("prune_magnitude", f"--model={dense_path}", f"--output_dir={sparse_dir}",
                  "--target_sparsity=0.5", *common)
  assert "sparse n/a (fine-tuned on the validation split too)" in out
  report = json.loads((sparse_dir / "sparsity.json").read_text())
  assert report["steps_per_epoch"] == both_splits_steps
  assert report["fine_tune_split"] == "train+validation"
  assert report["validation_accuracy"]["sparse"] is None
  assert 0.0 <= report["validation_accuracy"]["dense"] <= 1.0  # Measured before the fit.

  qat_dir = tmp_path / "qat"
  out = _run_tool("qat", f"--model={sparse_dir / 'pruned_sparse.keras'}",
                  f"--output_dir={qat_dir}", *common)
  assert "validation accuracy" not in out
  report = json.loads((qat_dir / "qat.json").read_text())
  assert report["steps_per_epoch"] == both_splits_steps
  assert report["fine_tune_split"] == "train+validation"
  assert report["validation_accuracy"] is None and 0.0 <= report["test_accuracy"] <= 1.0


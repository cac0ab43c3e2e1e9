"""Unstructured magnitude pruning: target sparsity, argument checks, reports."""

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import numpy as np
import pytest

from tf_gtsrb import errors
from tf_gtsrb.compression import channel_pruning
from tf_gtsrb.compression import magnitude_pruning as mp
from tf_gtsrb.compression import quantization
from tf_gtsrb.keras import keras
from tf_gtsrb.models import io as model_io
from tf_gtsrb.models import tfmot_files
from tf_gtsrb.models import traffic_sign_cnn


def _kernels(model):
  return {layer.name: layer.get_weights()[0] for layer in model.layers
          if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))}


@pytest.mark.parametrize("target", [0.5, 0.8])
def test_prune_and_fine_tune_reaches_target_sparsity(cnn16, batches16, target):
  before = [w.copy() for w in cnn16.get_weights()]
  pruned = mp.prune_and_fine_tune(cnn16, batches16, batches16, target, epochs=1, verbose=0)
  assert not any(isinstance(layer, keras.layers.Wrapper) for layer in pruned.layers)
  kernels = _kernels(pruned)
  assert set(kernels) == {"conv1", "conv2", "conv3", "conv4", "logits"}
  for name, kernel in kernels.items():
    assert np.mean(kernel == 0) == pytest.approx(target, abs=0.015), name
  assert mp.sparsity_report(pruned)["sparsity"] == pytest.approx(target, abs=0.01)
  # The input model is not touched.
  for old, new in zip(before, cnn16.get_weights()):
    np.testing.assert_array_equal(old, new)


def test_channel_pruned_model_prunes_too(cnn16, batches16):
  thin = channel_pruning.prune_channels(cnn16, 50)
  assert traffic_sign_cnn.channels_of(thin) == (2, 4, 4, 8)
  pruned = mp.prune_and_fine_tune(thin, batches16, batches16, 0.5, epochs=1, verbose=0)
  assert traffic_sign_cnn.channels_of(pruned) == (2, 4, 4, 8)
  assert mp.sparsity_report(pruned)["sparsity"] == pytest.approx(0.5, abs=0.02)


def test_stripped_sparse_model_round_trips(cnn16, batches16, tmp_path):
  pruned = mp.prune_and_fine_tune(cnn16, batches16, batches16, 0.5, epochs=1, verbose=0)
  path = str(tmp_path / "pruned_sparse.keras")
  model_io.save_model(pruned, path)
  assert not tfmot_files.is_quantize_aware_file(path)
  loaded = model_io.load_model(path)
  for name, kernel in _kernels(loaded).items():
    np.testing.assert_array_equal(kernel, _kernels(pruned)[name])


@pytest.mark.parametrize("target", [-0.1, 1.0, 1.5, "0.5", True, None])
def test_bad_target_sparsity_is_config_error(cnn16, batches16, target):
  with pytest.raises(errors.ConfigError, match="target_sparsity"):
    mp.apply_magnitude_pruning(cnn16, target, end_step=10)
  with pytest.raises(errors.ConfigError, match="target_sparsity"):
    mp.prune_and_fine_tune(cnn16, batches16, batches16, target, epochs=1)


@pytest.mark.parametrize("kwargs", [
    {"end_step": 0}, {"end_step": 5, "begin_step": 5}, {"end_step": 10, "frequency": 0},
    {"end_step": 10, "initial_sparsity": 0.9}, {"end_step": 10, "begin_step": -1}])
def test_bad_schedule_is_config_error(cnn16, kwargs):
  with pytest.raises(errors.ConfigError):
    mp.apply_magnitude_pruning(cnn16, 0.5, **kwargs)


def test_apply_wraps_only_conv_and_dense(cnn16):
  pruned = mp.apply_magnitude_pruning(cnn16, 0.5, end_step=10)
  wrapped = [layer.layer.name for layer in pruned.layers
             if type(layer).__name__ == "PruneLowMagnitude"]
  assert wrapped == ["conv1", "conv2", "conv3", "conv4", "logits"]
  assert mp.sparsity_report(pruned)["sparsity"] == 0.0
  with pytest.raises(errors.ModelError, match="wrapped"):
    mp.apply_magnitude_pruning(pruned, 0.5, end_step=10)


def test_endless_dataset_needs_steps_per_epoch(cnn16, batches16):
  with pytest.raises(errors.ConfigError, match="steps_per_epoch"):
    mp.prune_and_fine_tune(cnn16, batches16.repeat(), batches16, 0.5, epochs=1)


def test_schedule_steps_end_on_a_mask_update_within_training():
  for total in (2, 4, 37, 1000, 100000):
    end_step, frequency = mp.schedule_steps(total, 100)
    assert 1 <= end_step <= total and end_step % frequency == 0
    assert end_step // frequency >= min(mp.MIN_MASK_UPDATES, end_step)
  with pytest.raises(errors.ConfigError):
    mp.schedule_steps(1)


def test_sparsity_report_counts_zeros(cnn16):
  copy = mp.copy_model(cnn16)
  layer = copy.get_layer("conv2")
  kernel = layer.get_weights()[0]
  kernel.reshape(-1)[:100] = 0.0
  layer.set_weights([kernel])
  report = mp.sparsity_report(copy)
  row = {r["layer"]: r for r in report["layers"]}["conv2"]
  assert row == {"layer": "conv2", "weights": 3 * 3 * 4 * 8, "zeros": 100,
                 "sparsity": 100 / 288}
  assert report["zeros"] == 100
  assert report["weights"] == sum(r["weights"] for r in report["layers"])
  assert not mp.is_sparse(copy)


def test_pruning_callbacks(tmp_path):
  assert [type(c).__name__ for c in mp.pruning_callbacks()] == ["UpdatePruningStep"]
  assert [type(c).__name__ for c in mp.pruning_callbacks(str(tmp_path))] == [
      "UpdatePruningStep", "PruningSummaries"]

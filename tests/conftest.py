"""Shared fixtures: a tiny prepared dataset, a tiny model, random batches, TFLite models."""

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import pytest

from tf_gtsrb.data import prepare
from tf_gtsrb.export import tflite
import synthetic


# Modules whose tests train, fine-tune or convert models (seconds to minutes each): the whole
# module is `slow`, so `pytest -m "not slow"` is the inner loop (docs/testing.md).
SLOW_MODULES = frozenset({
    "test_bad_inputs", "test_benchmark", "test_channel_pruning", "test_clustering", "test_deploy_files",
    "test_distill", "test_distributed", "test_ensemble", "test_evaluate_tool", "test_export",
    "test_from_tflite", "test_magnitude_pruning", "test_micro", "test_pipeline",
    "test_quantization", "test_resume", "test_swa", "test_sweep", "test_training", "test_vela",
})


def pytest_collection_modifyitems(items):
  for item in items:
    if item.module.__name__ in SLOW_MODULES:
      item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
  """The bundled sample prepared at 32x32, track split, no balancing (~430/215/430 images)."""
  output_dir = str(tmp_path_factory.mktemp("tiny_data"))
  summary = prepare.prepare_dataset(output_dir, source="official", balance_target=0)
  return summary["dataset_dir"]


@pytest.fixture(scope="session")
def tiny_final_fit_data_dir(tmp_path_factory):
  """The bundled sample prepared with val_fraction 0: every track in train, no validation."""
  output_dir = str(tmp_path_factory.mktemp("tiny_final_fit_data"))
  summary = prepare.prepare_dataset(output_dir, source="official", balance_target=0,
                                    val_fraction=0.0)
  return summary["dataset_dir"]


@pytest.fixture(scope="module")
def cnn16():
  """`synthetic.tiny_cnn()`: 16x16 input, channels (4, 8, 8, 16), seed 0; one per test file."""
  return synthetic.tiny_cnn()


@pytest.fixture(scope="module")
def batches16():
  """64 random 16x16 float images with random labels, batches of 16 (seed 0)."""
  return synthetic.random_float_dataset(synthetic.TINY_SIZE)


@pytest.fixture(scope="module")
def int8_bytes(model, images):
  """The test file's `model` fixture as full INT8 TFLite, calibrated on its `images` fixture."""
  return tflite.convert(model, "int8", images)


@pytest.fixture(scope="module")
def float_bytes(model):
  """The test file's `model` fixture as float32 TFLite."""
  return tflite.convert(model, "float32")

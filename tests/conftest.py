"""Shared fixtures: a tiny prepared dataset built from the bundled sample."""

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import pytest

from tf_gtsrb.data import prepare


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
  """The bundled sample prepared at 32x32, track split, no balancing (~430/215/430 images)."""
  output_dir = str(tmp_path_factory.mktemp("tiny_data"))
  summary = prepare.prepare_dataset(output_dir, source="official", balance_target=0)
  return summary["dataset_dir"]

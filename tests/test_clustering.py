"""Weight clustering: at most N distinct values per kernel, zeros kept, argument checks."""

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import numpy as np
import pytest
import tensorflow as tf

from tf_gtsrb import errors
from tf_gtsrb.compression import clustering
from tf_gtsrb.compression import magnitude_pruning as mp
from tf_gtsrb.keras import keras
from tf_gtsrb.models import io as model_io
from tf_gtsrb.models import traffic_sign_cnn

SIZE = 16
KERNEL_LAYERS = ("conv1", "conv2", "conv3", "conv4", "logits")


@pytest.fixture(scope="module")
def model():
  tf.keras.utils.set_random_seed(0)
  return traffic_sign_cnn.build(channels=(4, 8, 8, 16), input_size=SIZE)


@pytest.fixture(scope="module")
def dataset():
  rng = np.random.default_rng(0)
  images = rng.random((64, SIZE, SIZE, 3), dtype=np.float32)
  labels = rng.integers(0, 43, 64)
  return tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)


def test_clustered_kernels_hold_at_most_n_values(model, dataset, tmp_path):
  assert min(clustering.unique_weight_counts(model).values()) > 8
  clustered = clustering.cluster_and_fine_tune(model, dataset, dataset, number_of_clusters=8,
                                               epochs=1, learning_rate=1e-3, verbose=0)
  assert not any(isinstance(layer, keras.layers.Wrapper) for layer in clustered.layers)
  counts = clustering.unique_weight_counts(clustered)
  assert set(counts) == set(KERNEL_LAYERS)
  assert all(2 <= count <= 8 for count in counts.values()), counts
  path = str(tmp_path / "clustered.keras")
  model_io.save_model(clustered, path)
  assert clustering.unique_weight_counts(model_io.load_model(path)) == counts


def test_sparsity_preserving_clustering_keeps_zeros(model, dataset):
  rng = np.random.default_rng(1)
  sparse = mp.copy_model(model)
  for name in KERNEL_LAYERS:
    layer = sparse.get_layer(name)
    weights = layer.get_weights()
    weights[0][rng.random(weights[0].shape) < 0.5] = 0.0
    layer.set_weights(weights)
  clustered = clustering.cluster_and_fine_tune(sparse, dataset.take(2), dataset.take(1),
                                               number_of_clusters=8, epochs=1,
                                               learning_rate=1e-3, verbose=0)
  for name in KERNEL_LAYERS:
    zeros = sparse.get_layer(name).get_weights()[0] == 0
    kernel = clustered.get_layer(name).get_weights()[0]
    assert np.all(kernel[zeros] == 0), name
    assert np.unique(kernel).size <= 8 + 1, name  # the zeros plus N clusters at most


def test_cluster_weights_wraps_only_conv_and_dense(model):
  wrapped = clustering.cluster_weights(model, number_of_clusters=4)
  names = [layer.layer.name for layer in wrapped.layers if isinstance(layer, keras.layers.Wrapper)]
  assert names == list(KERNEL_LAYERS)
  assert clustering.strip(wrapped).count_params() == model.count_params()


@pytest.mark.parametrize("clusters", [0, 1, 257, 2.5, "16", True])
def test_bad_number_of_clusters_is_config_error(model, dataset, clusters):
  with pytest.raises(errors.ConfigError, match="number_of_clusters"):
    clustering.cluster_weights(model, clusters)
  with pytest.raises(errors.ConfigError, match="number_of_clusters"):
    clustering.cluster_and_fine_tune(model, dataset, dataset, clusters)


def test_more_clusters_than_weights_is_config_error():
  tiny = traffic_sign_cnn.build(channels=(1, 1, 1, 1), input_size=SIZE, num_classes=2)
  with pytest.raises(errors.ConfigError, match="conv2"):
    clustering.cluster_weights(tiny, number_of_clusters=16)

"""Weight clustering: at most N distinct values per kernel, zeros kept, argument checks."""

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import numpy as np
import pytest

from tf_gtsrb import errors
from tf_gtsrb.compression import clustering
from tf_gtsrb.keras import keras
from tf_gtsrb.models import io as model_io
from tf_gtsrb.models import traffic_sign_cnn
import synthetic
from synthetic import KERNEL_LAYERS

SIZE = synthetic.TINY_SIZE


def test_clustered_kernels_hold_at_most_n_values(cnn16, batches16, tmp_path):
  assert min(clustering.unique_weight_counts(cnn16).values()) > 8
  clustered = clustering.cluster_and_fine_tune(cnn16, batches16, batches16, number_of_clusters=8,
                                               epochs=1, learning_rate=1e-3, verbose=0)
  assert not any(isinstance(layer, keras.layers.Wrapper) for layer in clustered.layers)
  counts = clustering.unique_weight_counts(clustered)
  assert set(counts) == set(KERNEL_LAYERS)
  assert all(2 <= count <= 8 for count in counts.values()), counts
  path = str(tmp_path / "clustered.keras")
  model_io.save_model(clustered, path)
  assert clustering.unique_weight_counts(model_io.load_model(path)) == counts


def test_sparsity_preserving_clustering_keeps_zeros(cnn16, batches16):
  sparse = synthetic.random_sparse_copy(cnn16)
  clustered = clustering.cluster_and_fine_tune(sparse, batches16.take(2), batches16.take(1),
                                               number_of_clusters=8, epochs=1,
                                               learning_rate=1e-3, verbose=0)
  for name in KERNEL_LAYERS:
    zeros = sparse.get_layer(name).get_weights()[0] == 0
    kernel = clustered.get_layer(name).get_weights()[0]
    assert np.all(kernel[zeros] == 0), name
    assert np.unique(kernel).size <= 8 + 1, name  # the zeros plus N clusters at most


def test_cluster_weights_wraps_only_conv_and_dense(cnn16):
  wrapped = clustering.cluster_weights(cnn16, number_of_clusters=4)
  names = [layer.layer.name for layer in wrapped.layers if isinstance(layer, keras.layers.Wrapper)]
  assert names == list(KERNEL_LAYERS)
  assert clustering.strip(wrapped).count_params() == cnn16.count_params()


@pytest.mark.parametrize("clusters", [0, 1, 257, 2.5, "16", True])
def test_bad_number_of_clusters_is_config_error(cnn16, batches16, clusters):
  with pytest.raises(errors.ConfigError, match="number_of_clusters"):
    clustering.cluster_weights(cnn16, clusters)
  with pytest.raises(errors.ConfigError, match="number_of_clusters"):
    clustering.cluster_and_fine_tune(cnn16, batches16, batches16, clusters)


def test_more_clusters_than_weights_is_config_error():
  tiny = traffic_sign_cnn.build(channels=(1, 1, 1, 1), input_size=SIZE, num_classes=2)
  with pytest.raises(errors.ConfigError, match="conv2"):
    clustering.cluster_weights(tiny, number_of_clusters=16)

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


def test_zeros_and_clusters_survive_preserving_qat_and_int8_conversion(cnn16, batches16):
  """What the NPU's weight encoding feeds on is still in the .tflite: per kernel, the zeros
  of the sparse model and at most N non-zero values."""
  from tf_gtsrb.compression import quantization  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.export import tflite  # pylint: disable=g-import-not-at-top
  sparse = synthetic.random_sparse_copy(cnn16, share=0.5)
  clustered = clustering.cluster_and_fine_tune(sparse, batches16.take(2), batches16.take(1),
                                               number_of_clusters=8, epochs=1,
                                               learning_rate=1e-3, verbose=0)
  qat = quantization.qat_fine_tune(clustered, batches16.take(2), batches16.take(1), epochs=1,
                                   preserve_sparsity=True, preserve_clusters=True, verbose=0)
  images = (np.random.default_rng(0).random((32, SIZE, SIZE, 3)) * 255).astype(np.uint8)
  kernels = synthetic.int8_kernels(tflite.convert(qat, "int8", images))
  assert len(kernels) == len(KERNEL_LAYERS)
  for index, kernel in kernels.items():
    assert kernel.dtype == np.int8
    assert np.mean(kernel == 0) >= 0.45, index  # Half the float weights were zero.
    for channel in kernel.reshape(kernel.shape[0], -1):  # Per-channel scales: per channel.
      assert np.unique(channel[channel != 0]).size <= 8, index
  dense = synthetic.int8_kernels(tflite.convert(cnn16, "int8", images))
  assert all(np.mean(k == 0) < 0.2 for k in dense.values())  # The checks can fail:
  assert any(np.unique(k[0]).size > 8 for k in dense.values())

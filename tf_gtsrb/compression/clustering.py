"""Weight clustering (weight sharing) of Conv2D/Dense kernels with tfmot.

Each kernel's weights are replaced by the nearest of `number_of_clusters`
centroids (k-means++ initialised), and fine-tuning trains the centroids. After
`strip` every kernel holds at most `number_of_clusters` distinct values, so the
model file compresses well and a runtime can store small indices into a table.

This is the trainable successor of the fixed-grid weight rounding found in
earlier TensorFlow model-compression projects (`round_weights(num_steps=256)`,
which snapped weights to 256 evenly spaced levels after training): the levels
here are learned per kernel and fine-tuned, so far fewer (16) suffice.

With `preserve_sparsity=True` the zeros of a magnitude-pruned model stay zero
(they form their own cluster).
"""

import numpy as np
import tensorflow_model_optimization as tfmot

from tf_gtsrb import errors
from tf_gtsrb.compression import magnitude_pruning
from tf_gtsrb.training import compile as compile_lib

clustering = tfmot.clustering.keras

MAX_CLUSTERS = 256


def check_clusters(number_of_clusters, name="number_of_clusters"):
  """Returns `number_of_clusters` as an int; ConfigError (naming the setting `name`)
  unless it is in [2, MAX_CLUSTERS]."""
  if isinstance(number_of_clusters, bool) or not isinstance(number_of_clusters, (int, np.integer)) \
      or not 2 <= number_of_clusters <= MAX_CLUSTERS:
    raise errors.ConfigError(
        f"{name} must be an integer in [2, {MAX_CLUSTERS}], got "
        f"{number_of_clusters!r}")
  return int(number_of_clusters)


def cluster_weights(model, number_of_clusters=16, preserve_sparsity=False):
  """Returns a copy of float `model` with Conv2D/Dense wrapped for weight clustering.

  Centroids start from k-means++; fine-tune the result, then `strip` it.
  """
  number_of_clusters = check_clusters(number_of_clusters)
  magnitude_pruning.check_float_model(model, "cluster")
  too_small = [layer.name for layer in magnitude_pruning.kernel_layers(model)
               if magnitude_pruning.kernel_variable(layer).shape.num_elements()
               < number_of_clusters]
  if too_small:
    raise errors.ConfigError(
        f"number_of_clusters {number_of_clusters} exceeds the weights of layer(s) "
        f"{', '.join(too_small)}")
  return magnitude_pruning.wrap_kernel_layers(
      model, lambda layer: clustering.cluster_weights(
          layer, number_of_clusters=number_of_clusters,
          cluster_centroids_init=clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
          preserve_sparsity=bool(preserve_sparsity)))


def strip(model):
  """Removes the clustering wrappers; the kernels keep their clustered values."""
  return clustering.strip_clustering(model)


def unique_weight_counts(model):
  """Returns {layer name: number of distinct values in its Conv2D/Dense kernel}."""
  return {magnitude_pruning.unwrap(layer).name:
          int(np.unique(magnitude_pruning.kernel_variable(layer).numpy()).size)
          for layer in magnitude_pruning.kernel_layers(model)}


def cluster_and_fine_tune(model, train_ds, val_ds, number_of_clusters=16, epochs=1,
                          learning_rate=1e-5, preserve_sparsity=None, steps_per_epoch=None,
                          verbose=2, **fine_tune_kwargs):
  """Clusters float `model`'s kernels, fine-tunes the centroids; returns the stripped model.

  `preserve_sparsity=None` keeps zeros when the model is at least
  magnitude_pruning.SPARSE_THRESHOLD sparse. `fine_tune_kwargs` go to
  `compile.fine_tune` (e.g. teacher, distill_mixup, label_smoothing).
  """
  epochs = magnitude_pruning.check_positive_int(epochs, "epochs")
  if steps_per_epoch is None:
    magnitude_pruning.steps_per_epoch_of(train_ds)
  if preserve_sparsity is None:
    preserve_sparsity = magnitude_pruning.is_sparse(model)
  clustered = cluster_weights(model, number_of_clusters, preserve_sparsity)
  history = compile_lib.fine_tune(clustered, train_ds, val_ds, epochs, learning_rate,
                                  steps_per_epoch=steps_per_epoch, verbose=verbose,
                                  **fine_tune_kwargs)
  stripped = strip(clustered)
  stripped.history = history
  return stripped

"""The one place that imports Keras: tf_keras (Keras 2), as tfmot requires."""

import tf_gtsrb  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tf_keras as keras  # noqa: E402
# Not public in tf_keras: holds the generator new layers draw their seeds from.
from tf_keras.src import backend as keras_backend  # noqa: E402

__all__ = ["keras", "keras_backend"]

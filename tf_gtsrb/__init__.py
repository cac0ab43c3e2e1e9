"""tf_gtsrb: compact, pruned and INT8-quantized GTSRB traffic-sign classifiers.

Importing this package selects Keras 2 (``tf_keras``) for TensorFlow, which
tensorflow-model-optimization requires; import it before TensorFlow.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"


def __getattr__(name):
  """`tf_gtsrb.Classifier` and `tf_gtsrb.Prediction`, imported on first use (no TensorFlow)."""
  if name in ("Classifier", "Prediction"):
    from tf_gtsrb import classifier  # pylint: disable=g-import-not-at-top
    return getattr(classifier, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

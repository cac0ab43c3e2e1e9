"""Models: the architectures (`build_model(name, **kwargs)` for each), and reading and running
model files: io (.keras, QAT included), flatbuffer (TensorFlow-free .tflite parsing),
runners (LiteRT and Keras inference alike), from_tflite, ensemble."""

import inspect

from tf_gtsrb import errors
from tf_gtsrb.models import alexnet
from tf_gtsrb.models import traffic_sign_cnn

_BUILDERS = {
    "traffic_sign_cnn": traffic_sign_cnn.build,
    "alexnet": alexnet.build,
}

MODEL_NAMES = tuple(sorted(_BUILDERS))


def build_model(name, **kwargs):
  """Builds the named model; unknown names or arguments raise ConfigError listing the known ones."""
  try:
    builder = _BUILDERS[name]
  except KeyError:
    raise errors.ConfigError(
        f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}") from None
  parameters = inspect.signature(builder).parameters
  unknown = sorted(set(kwargs) - set(parameters))
  if unknown:
    raise errors.ConfigError(
        f"{name}: unknown arguments {', '.join(unknown)}; it takes {', '.join(parameters)}")
  return builder(**kwargs)

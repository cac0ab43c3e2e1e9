"""Models: the architectures (`build_model(name, **kwargs)` for each), and reading and running
model files: io (.keras, QAT included), flatbuffer (TensorFlow-free .tflite parsing),
runners (LiteRT and Keras inference alike), from_tflite, ensemble."""

import importlib
import inspect

from tf_gtsrb import errors

# Each architecture's module (holding `build`), imported when built: reading and running model
# files (flatbuffer, runners) must not load TensorFlow.
_BUILDER_MODULES = {
    "traffic_sign_cnn": "tf_gtsrb.models.traffic_sign_cnn",
    "alexnet": "tf_gtsrb.models.alexnet",
}

MODEL_NAMES = tuple(sorted(_BUILDER_MODULES))


def build_model(name, **kwargs):
  """Builds the named model; unknown names or arguments raise ConfigError listing the known ones."""
  try:
    builder = importlib.import_module(_BUILDER_MODULES[name]).build
  except KeyError:
    raise errors.ConfigError(
        f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}") from None
  parameters = inspect.signature(builder).parameters
  unknown = sorted(set(kwargs) - set(parameters))
  if unknown:
    raise errors.ConfigError(
        f"{name}: unknown arguments {', '.join(unknown)}; it takes {', '.join(parameters)}")
  return builder(**kwargs)

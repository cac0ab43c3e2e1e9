"""Model registry: `build_model(name, **kwargs)` for every architecture here."""

from tf_gtsrb import errors
from tf_gtsrb.models import alexnet
from tf_gtsrb.models import traffic_sign_cnn

_BUILDERS = {
    "traffic_sign_cnn": traffic_sign_cnn.build,
    "alexnet": alexnet.build,
}

MODEL_NAMES = tuple(sorted(_BUILDERS))


def build_model(name, **kwargs):
  """Builds the named model; unknown names raise ConfigError listing the known ones."""
  try:
    builder = _BUILDERS[name]
  except KeyError:
    raise errors.ConfigError(
        f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}") from None
  return builder(**kwargs)

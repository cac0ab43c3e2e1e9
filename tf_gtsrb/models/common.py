"""Checks shared by the model builders."""

from tf_gtsrb import errors


def check_input_size(input_size, num_poolings, name):
  """Raises ConfigError unless `input_size` survives `num_poolings` halvings."""
  if not isinstance(input_size, int) or input_size < 2**num_poolings:
    raise errors.ConfigError(
        f"{name}: input_size {input_size} is too small for {num_poolings} "
        f"2x2 poolings; use at least {2**num_poolings}")

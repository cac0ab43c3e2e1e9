"""tf.distribute strategy selection by name."""

import tensorflow as tf

from tf_gtsrb import errors

STRATEGIES = ("default", "mirrored", "multi_worker")


def get_strategy(name):
  """Returns the strategy called `name`.

  default: the current (single-device) strategy. mirrored: synchronous data
  parallelism over all local devices (GPUs, or logical CPUs). multi_worker:
  synchronous training across the machines described by the TF_CONFIG
  environment variable (cluster spec and this worker's task).
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise errors.ConfigError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")

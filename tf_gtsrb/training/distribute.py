"""tf.distribute strategy selection by name."""

import collections
import json
import os

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


WorkerRole = collections.namedtuple("WorkerRole", ["task_type", "index", "is_chief"])


def worker_role(strategy_name):
  """This process's role in a multi-worker cluster (from TF_CONFIG); None for other strategies.

  The chief is the task of type 'chief', or worker 0 when the cluster has no chief:
  only it writes the run's files (the others write to a temporary directory).
  """
  if strategy_name != "multi_worker":
    return None
  text = os.environ.get("TF_CONFIG", "")
  try:
    tf_config = json.loads(text)
    cluster, task = tf_config["cluster"], tf_config["task"]
    task_type, index = task["type"], int(task["index"])
  except (ValueError, TypeError, KeyError) as e:
    raise errors.ConfigError(
        f"TF_CONFIG: multi_worker needs a JSON cluster spec and this task, e.g. "
        f'{{"cluster": {{"worker": ["host1:port", "host2:port"]}}, '
        f'"task": {{"type": "worker", "index": 0}}}}; got {text!r} ({e})') from e
  if task_type not in cluster or not 0 <= index < len(cluster[task_type]):
    raise errors.ConfigError(f"TF_CONFIG: task {task_type}:{index} is not in the cluster "
                             f"{sorted(cluster)}")
  is_chief = task_type == "chief" or (task_type == "worker" and index == 0
                                      and "chief" not in cluster)
  return WorkerRole(task_type, index, is_chief)

"""Distribution strategies: MirroredStrategy training (and weight averaging) on two logical
CPU devices."""

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import json
import os
import subprocess
import sys

import pytest

from tf_gtsrb import errors
from tf_gtsrb.models import io as model_io
from tf_gtsrb.training import distribute

# Logical devices must be configured before TensorFlow initialises its runtime,
# which pytest's process has already done, so the run happens in a fresh process.
_SCRIPT = """
import dataclasses, json, sys
import tf_gtsrb
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from tf_gtsrb.training import distribute
from tf_gtsrb.training import trainer

created = []
get_strategy = distribute.get_strategy
def recording_get_strategy(name):
  created.append(get_strategy(name))
  return created[-1]
distribute.get_strategy = recording_get_strategy

data_dir, model_dir = sys.argv[1:3]
config = trainer.TrainConfig(
    data_dir=data_dir, model_dir=model_dir, model_kwargs={"channels": [4, 8, 8, 16]},
    epochs=2, batch_size=32, steps_per_epoch=3, checkpoint_every_steps=2,
    strategy="mirrored")
history = trainer.train(config, verbose=0)
# Restores the mirrored checkpoint, then weight-averages under the strategy.
resumed = trainer.train(dataclasses.replace(config, swa_epochs=1), resume=True, verbose=0)
print("RESULT " + json.dumps({
    "strategy": type(created[0]).__name__,
    "replicas": created[0].num_replicas_in_sync,
    "devices": list(created[0].extended.worker_devices),
    "epochs": len(history["val_accuracy"]),
    "resumed_same": resumed == history,
}))
"""


def test_mirrored_strategy_on_two_logical_cpus(tiny_data_dir, tmp_path):
  model_dir = tmp_path / "mirrored"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  done = subprocess.run([sys.executable, "-c", _SCRIPT, tiny_data_dir, str(model_dir)],
                        capture_output=True, text=True, timeout=300, env=env, check=False)
  assert done.returncode == 0, done.stdout + done.stderr
  lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
  assert lines, done.stdout + done.stderr
  result = json.loads(lines[-1][len("RESULT "):])
  assert result["strategy"] == "MirroredStrategy"
  assert result["replicas"] == 2
  assert len(result["devices"]) == 2
  assert result["epochs"] == 2
  assert result["resumed_same"]
  for name in ("model.keras", "final.keras", "swa.keras"):
    model = model_io.load_model(str(model_dir / name))
    assert model.output_shape == (None, 43)
  with open(model_dir / "state.json") as f:
    assert json.load(f)["step"] == 6


def test_default_strategy():
  assert distribute.get_strategy("default").num_replicas_in_sync == 1


def test_unknown_strategy():
  with pytest.raises(errors.ConfigError, match="nonsense"):
    distribute.get_strategy("nonsense")

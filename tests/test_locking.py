"""One writer per directory (tf_gtsrb.locking) and the flag range table (tools/common.py)."""

import json
import math
import os
import re
import socket
import subprocess
import sys

from absl import flags
import pytest

from tf_gtsrb import errors
from tf_gtsrb import locking
from tf_gtsrb_tools import common
import tool_runner

_HOLD = """
import sys, time
from tf_gtsrb import locking
with locking.directory_lock(sys.argv[1]):
  print("locked", flush=True)
  time.sleep(60)
"""


def test_second_writer_is_refused_with_pid_and_host(tmp_path):
  target = str(tmp_path / "out")
  holder = subprocess.Popen([sys.executable, "-c", _HOLD, target], stdout=subprocess.PIPE,
                            text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(errors.GtsrbError) as e:
      with locking.directory_lock(target):
        pass
    message = str(e.value)
    assert f"in use by pid {holder.pid} on {socket.gethostname()}" in message
    assert locking.lock_path(target) in message
  finally:
    holder.kill()
    holder.wait()
  # The holder died without releasing: the next writer recovers the lock.
  with locking.directory_lock(target):
    assert json.load(open(locking.lock_path(target)))["pid"] == os.getpid()
  assert not os.path.exists(locking.lock_path(target))


def test_lock_is_reentrant_in_one_process_and_outside_the_directory(tmp_path):
  target = tmp_path / "model"
  target.mkdir()
  with locking.directory_lock(str(target)):
    with locking.directory_lock(str(target)):
      pass
    assert os.path.exists(locking.lock_path(str(target)))
    assert os.listdir(target) == []  # The lock file is a sibling, not inside.
  assert not os.path.exists(locking.lock_path(str(target)))


def _flag_values(**defined):
  values = flags.FlagValues()
  for name, (kind, default) in defined.items():
    getattr(flags, f"DEFINE_{kind}")(name, default, "", flag_values=values)
  values(["prog"])
  return values


@pytest.mark.parametrize("name,kind,value", [
    ("learning_rate", "float", math.nan), ("learning_rate", "float", math.inf),
    ("learning_rate", "float", 0.0), ("steps_per_epoch", "integer", -3),
    ("early_stopping_patience", "integer", -1), ("channels", "list", ["0", "0", "0", "0"]),
    ("percentages", "list", ["10", "100"]), ("cluster", "integer", 1),
    ("val_fraction", "float", 1.0), ("unlisted_float", "float", math.nan)])
def test_out_of_range_flags_are_refused(name, kind, value):
  values = _flag_values(**{name: (kind, value)})
  with pytest.raises(errors.ConfigError, match=f"--{name} must be"):
    common.check_flag_ranges(values)


@pytest.mark.parametrize("name,kind,value", [
    ("learning_rate", "float", 1e-3), ("steps_per_epoch", "integer", 0), ("cluster", "integer", 0),
    ("channels", "list", ["32", "64"]), ("modes", "list", ["int8"]), ("limit", "integer", None)])
def test_in_range_flags_pass(name, kind, value):
  common.check_flag_ranges(_flag_values(**{name: (kind, value)}))


@pytest.mark.slow
def test_every_numeric_flag_of_every_tool_has_a_range():
  """Imports each tool (one process) and lists its integer, float and list flags."""
  script = """
import importlib, json, sys
from absl import flags
from tf_gtsrb_tools import common
base = set(flags.FLAGS)
missing = {}
for tool in sys.argv[1:]:
  importlib.import_module("tf_gtsrb_tools." + tool)
  for name in sorted(set(flags.FLAGS) - base):
    if not flags.FLAGS.find_module_defining_flag(name, "").startswith("tf_gtsrb_tools"):
      continue  # Flags of absl.testing or TensorFlow.
    parser = type(flags.FLAGS[name].parser).__name__
    numeric = parser in ("IntegerParser", "FloatParser") or (
        parser == "ListParser" and name not in common.TEXT_LIST_FLAGS)
    if numeric and name not in common.FLAG_RANGES:
      missing.setdefault(tool, []).append(name)
  for name in set(flags.FLAGS) - base:
    delattr(flags.FLAGS, name)
print(json.dumps(missing))
"""
  tools_dir = os.path.join(os.path.dirname(os.path.dirname(__file__)), "tools")
  # The pipeline's settings are checked by PipelineConfig.validate (test_pipeline_config).
  tools = sorted(n[:-3] for n in os.listdir(tools_dir)
                 if n.endswith(".py") and n not in ("__init__.py", "common.py", "pipeline.py"))
  done = subprocess.run([sys.executable, "-c", script, *tools], capture_output=True,
                        text=True, check=False, timeout=600)
  assert done.returncode == 0, done.stderr[-2000:]
  assert json.loads(done.stdout.strip().splitlines()[-1]) == {}


def test_pipeline_config_refuses_non_finite_and_negative_numbers():
  import dataclasses  # pylint: disable=g-import-not-at-top
  from tf_gtsrb import pipeline  # pylint: disable=g-import-not-at-top
  numeric = [f for f in dataclasses.fields(pipeline.PipelineConfig)
             if f.type in (int, float, "int", "float")]
  assert len(numeric) > 10
  for field in numeric:
    for bad in ((math.nan, math.inf, -1.0) if field.type in (float, "float") else (-1,)):
      config = dataclasses.replace(pipeline.PipelineConfig(), **{field.name: bad})
      with pytest.raises(errors.ConfigError, match=field.name):
        config.validate()


_HOLD_MANY = """
import contextlib, sys, time
from tf_gtsrb import locking
with contextlib.ExitStack() as stack:
  for directory in sys.argv[1:]:
    stack.enter_context(locking.directory_lock(directory))
  print("locked", flush=True)
  time.sleep(300)
"""


def _written_dir_flags():
  """{tool: flag} for every tool defining a directory flag it writes."""
  tools_dir = os.path.join(os.path.dirname(os.path.dirname(__file__)), "tools")
  found = {"pipeline": "work_dir"}  # Its flags come from PipelineConfig's fields.
  for name in sorted(os.listdir(tools_dir)):
    match = re.search(r'DEFINE_string\("(output_dir|model_dir|models_dir)"',
                      open(os.path.join(tools_dir, name)).read())
    if match:
      found[name[:-3]] = match.group(1)
  return found


@pytest.mark.slow
def test_every_tool_refuses_a_directory_another_run_writes(tmp_path):
  """One holder locks a directory per tool; each tool, pointed at its own, exits 1 saying so."""
  tools = _written_dir_flags()
  assert len(tools) >= 12
  targets = {tool: str(tmp_path / tool) for tool in tools}
  holder = subprocess.Popen([sys.executable, "-c", _HOLD_MANY, *targets.values()],
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    for tool, flag in tools.items():
      done = tool_runner.run_tool(tool, f"--{flag}={targets[tool]}",
                                  f"--archive_dir={tmp_path}", f"--data_dir={tmp_path}",
                                  "--undefok=archive_dir,data_dir")
      assert done.returncode == 1, (tool, done.stderr[-1500:])
      assert f"error: {targets[tool]}: in use by pid {holder.pid}" in done.stderr, tool
      assert not os.path.exists(targets[tool]), tool
  finally:
    holder.kill()
    holder.wait()

"""Runs the command-line tools in tools/ as subprocesses, the way a user does."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_tool(name, *args, timeout=300):
  """Runs tools/<name>.py with `args`; returns the CompletedProcess (text stdout and stderr)."""
  return subprocess.run([sys.executable, os.path.join(REPO, "tools", f"{name}.py"), *args],
                        capture_output=True, text=True, timeout=timeout, check=False)


def assert_rejects_flags(name, tmp_path, args, message):
  """Given a missing model and `args`, the tool exits 1 naming `message` and writes nothing."""
  out = tmp_path / "out"
  done = run_tool(name, f"--model={tmp_path}/missing.keras", f"--data_dir={tmp_path}",
                  f"--output_dir={out}", *args)
  assert done.returncode == 1
  assert message in done.stderr
  assert not out.exists()

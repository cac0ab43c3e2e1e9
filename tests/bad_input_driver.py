"""Runs one tool several times in this process, as a user would from a shell, to keep a
corpus of bad inputs cheap: `python bad_input_driver.py TOOL RUNS_JSON` (RUNS_JSON: a list
of argument lists). Prints `RESULTS <json>`: per run its exit status and what it wrote to
stderr. An exception escaping the tool (the traceback a user would see) has status
"traceback"."""

import contextlib
import importlib
import io
import json
import sys
import traceback


def main(tool, runs):
  module = importlib.import_module(f"tf_gtsrb_tools.{tool}")
  results = []
  for args in runs:
    sys.argv = [tool, *args]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
      try:
        module.run()
        status = 0
      except SystemExit as e:
        status = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
      except BaseException:  # pylint: disable=broad-except
        traceback.print_exc()
        status = "traceback"
    results.append({"status": status, "stderr": stderr.getvalue()})
  print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
  main(sys.argv[1], json.loads(sys.argv[2]))

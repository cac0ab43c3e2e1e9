"""Imports flow one way through the library's layers, and the library never uses the tools.

data -> models -> evaluation -> training -> compression -> export -> benchmark -> the job
(pipeline, classifier): a module imports only from its own layer or those before it (at module
level or inside a function alike). errors, io_utils, locking and keras sit below them all.
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "tf_gtsrb")
LAYERS = ("base", "data", "models", "evaluation", "training", "compression", "export",
          "benchmark", "job")
_BASE = {"errors", "io_utils", "locking", "keras"}
_JOB = {"pipeline", "classifier"}


def layer_of(module):
  """The layer of a `tf_gtsrb...` module name; None outside the package."""
  parts = module.split(".")
  if parts[0] != "tf_gtsrb":
    return None
  if len(parts) == 1 or parts[1] in _BASE:
    return "base"
  return "job" if parts[1] in _JOB else parts[1]


def imports(path):
  """(line, imported module) of every import statement in the file at `path`."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module:
      yield from ((node.lineno, f"{node.module}.{a.name}") for a in node.names)
    elif isinstance(node, ast.Import):
      yield from ((node.lineno, a.name) for a in node.names)


def _modules():
  for directory, _, files in os.walk(PACKAGE):
    for name in sorted(files):
      if name.endswith(".py"):
        path = os.path.join(directory, name)
        module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        yield path, module.removesuffix(".__init__")


def test_every_package_of_the_library_has_a_layer():
  packages = {layer_of(module) for _, module in _modules()}
  assert packages <= set(LAYERS), packages - set(LAYERS)


def test_imports_flow_one_way():
  upward = []
  for path, module in _modules():
    if module == "tf_gtsrb":
      continue  # The package's public names (tf_gtsrb.Classifier) re-export the job layer.
    source = LAYERS.index(layer_of(module))
    for line, imported in imports(path):
      target = layer_of(imported)
      if target is not None and LAYERS.index(target) > source:
        upward.append(f"{os.path.relpath(path, ROOT)}:{line} {module} imports {imported}")
  assert not upward, "\n".join(upward)


def test_the_library_never_imports_or_runs_the_tools():
  for path, _ in _modules():
    with open(path) as f:
      assert "tf_gtsrb_tools" not in f.read(), path


@pytest.mark.parametrize("module, layer", [
    ("tf_gtsrb.errors", "base"), ("tf_gtsrb.data.splits", "data"),
    ("tf_gtsrb.models.runners", "models"), ("tf_gtsrb.pipeline", "job"), ("numpy", None)])
def test_layer_of(module, layer):
  assert layer_of(module) == layer


def test_an_upward_import_is_found(tmp_path):
  path = tmp_path / "m.py"
  path.write_text("def f():\n  from tf_gtsrb.benchmark import run\n")
  assert [(line, m) for line, m in imports(str(path))] == [(2, "tf_gtsrb.benchmark.run")]

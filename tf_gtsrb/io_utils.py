"""Atomic file output: a file appears under its final name only when complete."""

import contextlib
import json
import os
import shutil
import tempfile

from tf_gtsrb import errors


def temporary_path(path, suffix=""):
  """A hidden temporary name beside `path` (same file system, so a rename is atomic)."""
  directory, name = os.path.split(os.path.abspath(path))
  return os.path.join(directory, f".{name}.tmp-{os.getpid()}{suffix}")


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
  """Opens a temporary file beside `path`; renames it over `path` on success.

  On any exception the temporary file is removed and an existing `path` is left
  untouched. OS errors (read-only directory, disk full) become ConfigError
  naming the file.
  """
  directory = os.path.dirname(os.path.abspath(path))
  tmp = temporary_path(path)
  try:
    os.makedirs(directory, exist_ok=True)
    with open(tmp, mode) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except OSError as e:
    _remove_quietly(tmp)
    raise errors.GtsrbError(f"{path}: cannot write output: {e.strerror or e}") from e
  except BaseException:
    _remove_quietly(tmp)
    raise


@contextlib.contextmanager
def atomic_directory(path, carry_over=False):
  """Yields a temporary directory beside `path`; swaps it in for `path` on success.

  A previous `path` is replaced only after the new one is complete; on failure
  the temporary directory is removed and the previous `path` stays intact. With
  `carry_over`, the temporary directory starts as a copy of the previous `path`, so
  that files the new set does not rewrite are kept.
  """
  parent = os.path.dirname(os.path.abspath(path))
  try:
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
  except OSError as e:
    raise errors.GtsrbError(f"{path}: cannot write output: {e.strerror or e}") from e
  try:
    if carry_over and os.path.isdir(path):
      shutil.copytree(path, tmp, symlinks=True, dirs_exist_ok=True)
    yield tmp
    old = None
    if os.path.exists(path):
      old = tmp + ".old"
      os.replace(path, old)
    try:
      os.replace(tmp, path)
    except OSError:
      if old:
        os.replace(old, path)  # Put the previous directory back.
      raise
    if old:
      shutil.rmtree(old, ignore_errors=True)
  except OSError as e:
    shutil.rmtree(tmp, ignore_errors=True)
    raise errors.GtsrbError(f"{path}: cannot write output: {e.strerror or e}") from e
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def write_json(path, obj):
  """Writes `obj` as indented JSON, atomically."""
  with atomic_write(path, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=_to_builtin)
    f.write("\n")


def write_text(path, text):
  """Writes `text` atomically."""
  with atomic_write(path, "w") as f:
    f.write(text)


def read_json(path):
  """Reads a JSON file; a missing or malformed file raises GtsrbError naming it."""
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError as e:
    raise errors.GtsrbError(f"{path}: file not found") from e
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise errors.GtsrbError(f"{path}: not valid JSON: {e}") from e


def _to_builtin(value):
  """JSON fallback for numpy scalars and arrays."""
  if hasattr(value, "tolist"):
    return value.tolist()
  raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _remove_quietly(path):
  with contextlib.suppress(OSError):
    os.remove(path)

"""Tests of tf_gtsrb.io_utils: outputs appear complete or not at all."""

import builtins
import errno
import os

import pytest

from tf_gtsrb import errors
from tf_gtsrb import io_utils


def _listing(directory):
  return sorted(os.listdir(directory))


@pytest.fixture
def previous(tmp_path):
  path = tmp_path / "out.txt"
  path.write_text("previous")
  return path


def test_atomic_write_success(tmp_path, previous):
  with io_utils.atomic_write(str(previous), "w") as f:
    f.write("new")
    assert previous.read_text() == "previous"  # Not visible until done.
  assert previous.read_text() == "new"
  assert _listing(tmp_path) == ["out.txt"]


def test_writer_raising_mid_write_keeps_previous(tmp_path, previous):
  with pytest.raises(RuntimeError):
    with io_utils.atomic_write(str(previous), "w") as f:
      f.write("half of the new con")
      f.flush()
      raise RuntimeError("boom")
  assert previous.read_text() == "previous"
  assert _listing(tmp_path) == ["out.txt"]


def test_interrupt_keeps_previous(tmp_path, previous):
  with pytest.raises(KeyboardInterrupt):
    with io_utils.atomic_write(str(previous), "wb") as f:
      f.write(b"partial")
      raise KeyboardInterrupt
  assert previous.read_text() == "previous"
  assert _listing(tmp_path) == ["out.txt"]


def test_write_json_failing_mid_dump_keeps_previous(tmp_path, previous):
  with pytest.raises(TypeError):
    io_utils.write_json(str(previous), {"a": list(range(1000)), "z": object()})
  assert previous.read_text() == "previous"
  assert _listing(tmp_path) == ["out.txt"]
  io_utils.write_json(str(previous), {"a": 1})
  assert io_utils.read_json(str(previous)) == {"a": 1}


class _DiskFullFile:
  """Wraps a real file; every write fails with ENOSPC."""

  def __init__(self, f):
    self._f = f

  def write(self, data):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  def __getattr__(self, name):
    return getattr(self._f, name)

  def __enter__(self):
    return self

  def __exit__(self, *args):
    return self._f.__exit__(*args)


def test_disk_full_on_write(tmp_path, previous, monkeypatch):
  real_open = builtins.open
  monkeypatch.setattr(io_utils, "open",
                      lambda *a, **k: _DiskFullFile(real_open(*a, **k)), raising=False)
  with pytest.raises(errors.GtsrbError) as e:
    io_utils.write_text(str(previous), "new content")
  assert str(previous) in str(e.value)
  assert "No space left" in str(e.value)
  assert previous.read_text() == "previous"
  assert _listing(tmp_path) == ["out.txt"]


def test_disk_full_on_fsync(tmp_path, monkeypatch):
  def fail(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(os, "fsync", fail)
  path = tmp_path / "new.json"
  with pytest.raises(errors.GtsrbError, match="new.json"):
    io_utils.write_json(str(path), {"a": 1})
  assert _listing(tmp_path) == []


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.ENOSPC])
def test_rename_failure(tmp_path, previous, monkeypatch, code):
  def fail(src, dst):
    raise OSError(code, os.strerror(code))

  monkeypatch.setattr(os, "replace", fail)
  with pytest.raises(errors.GtsrbError) as e:
    io_utils.write_text(str(previous), "new")
  assert str(previous) in str(e.value)
  assert os.strerror(code) in str(e.value)
  assert previous.read_text() == "previous"
  assert _listing(tmp_path) == ["out.txt"]


def test_read_only_directory(tmp_path, monkeypatch):
  """Opening the temporary file fails as in a read-only directory."""
  def fail(*args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))

  monkeypatch.setattr(io_utils, "open", fail, raising=False)
  path = tmp_path / "ro" / "model.json"
  with pytest.raises(errors.GtsrbError) as e:
    io_utils.write_json(str(path), {"a": 1})
  assert str(path) in str(e.value) and "Read-only" in str(e.value)
  assert not path.exists()
  assert _listing(tmp_path / "ro") == []


def test_atomic_directory_success_replaces_old(tmp_path):
  target = tmp_path / "data"
  target.mkdir()
  (target / "old.txt").write_text("old")
  with io_utils.atomic_directory(str(target)) as tmp:
    assert os.path.dirname(tmp) == str(tmp_path)
    with open(os.path.join(tmp, "new.txt"), "w") as f:
      f.write("new")
    assert _listing(target) == ["old.txt"]  # Untouched until the end.
  assert _listing(target) == ["new.txt"]
  assert _listing(tmp_path) == ["data"]


def test_atomic_directory_carry_over_keeps_files_not_rewritten(tmp_path):
  target = tmp_path / "data"
  (target / "sub").mkdir(parents=True)
  (target / "kept.txt").write_text("kept")
  (target / "sub" / "kept.bin").write_bytes(b"\x00")
  (target / "rewritten.txt").write_text("old")
  with io_utils.atomic_directory(str(target), carry_over=True) as tmp:
    with open(os.path.join(tmp, "rewritten.txt"), "w") as f:
      f.write("new")
    assert (target / "rewritten.txt").read_text() == "old"  # Untouched until the end.
  assert (target / "kept.txt").read_text() == "kept"
  assert (target / "sub" / "kept.bin").read_bytes() == b"\x00"
  assert (target / "rewritten.txt").read_text() == "new"
  assert _listing(tmp_path) == ["data"]


def test_atomic_directory_keeps_old_on_failure(tmp_path):
  target = tmp_path / "data"
  target.mkdir()
  (target / "old.txt").write_text("old")
  with pytest.raises(RuntimeError):
    with io_utils.atomic_directory(str(target)) as tmp:
      with open(os.path.join(tmp, "partial.txt"), "w") as f:
        f.write("partial")
      raise RuntimeError("boom")
  assert _listing(target) == ["old.txt"]
  assert (target / "old.txt").read_text() == "old"
  assert _listing(tmp_path) == ["data"]


def test_atomic_directory_new_target_absent_on_failure(tmp_path):
  with pytest.raises(RuntimeError):
    with io_utils.atomic_directory(str(tmp_path / "fresh")) as tmp:
      open(os.path.join(tmp, "x"), "w").close()
      raise RuntimeError("boom")
  assert _listing(tmp_path) == []


def test_atomic_directory_keeps_old_when_swap_fails(tmp_path, monkeypatch):
  """If moving the new directory into place fails, the old one is restored."""
  target = tmp_path / "data"
  target.mkdir()
  (target / "old.txt").write_text("old")
  real_replace = os.replace

  def replace(src, dst):
    if os.path.abspath(dst) == str(target) and ".tmp-" in os.path.basename(src) \
        and not src.endswith(".old"):
      raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    return real_replace(src, dst)

  monkeypatch.setattr(os, "replace", replace)
  with pytest.raises(errors.GtsrbError, match="data"):
    with io_utils.atomic_directory(str(target)) as tmp:
      open(os.path.join(tmp, "new.txt"), "w").close()
  assert _listing(target) == ["old.txt"]
  assert _listing(tmp_path) == ["data"]


def test_atomic_directory_unwritable_parent(tmp_path, monkeypatch):
  def fail(*args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))

  monkeypatch.setattr(io_utils.tempfile, "mkdtemp", fail)
  with pytest.raises(errors.GtsrbError, match="out_dir"):
    with io_utils.atomic_directory(str(tmp_path / "out_dir")):
      pass
  assert _listing(tmp_path) == []

"""One writer per directory: an exclusive lock held while a tool writes into a directory.

  with locking.directory_lock(model_dir):
    ...  # A second writer gets GtsrbError "<dir>: in use by pid N on HOST (lock file ...)".

The lock is `fcntl.flock` on a sibling file `.<name>.lock` (beside the directory,
not in it, so the directory's own listing and an atomic swap of the directory are
unaffected). The file holds the holder's pid and host for the message. The kernel
drops a flock when its holder dies, so a lock left by a killed run is recovered
(with a warning naming the dead pid) by the next run. Locks are per process:
taking a lock the same process already holds is a no-op (nested library calls).
"""

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading

from absl import logging

from tf_gtsrb import errors

_held = {}  # Absolute lock path -> nesting depth, for this process.
_held_guard = threading.Lock()


def lock_path(directory):
  """The lock file of `directory`: `.<name>.lock` in its parent."""
  directory = os.path.abspath(directory)
  parent, name = os.path.split(directory.rstrip(os.sep))
  return os.path.join(parent, f".{name}.lock")


def holder(directory):
  """{'pid': .., 'host': ..} recorded in `directory`'s lock file, or {} if none."""
  try:
    with open(lock_path(directory)) as f:
      record = json.load(f)
  except (OSError, ValueError):
    return {}
  return record if isinstance(record, dict) else {}


@contextlib.contextmanager
def directory_lock(directory):
  """Holds the exclusive lock of `directory` (created if missing) for the block.

  Raises GtsrbError naming the directory, holder pid and host, and the lock
  file when another process holds it, or when the lock file cannot be made.
  """
  path = lock_path(directory)
  with _held_guard:
    if path in _held:
      _held[path] += 1
      nested = True
    else:
      nested = False
  if nested:
    try:
      yield path
    finally:
      with _held_guard:
        _held[path] -= 1
    return
  fd = _acquire(directory, path)
  with _held_guard:
    _held[path] = 1
  try:
    yield path
  finally:
    with _held_guard:
      del _held[path]
    with contextlib.suppress(OSError):
      os.remove(path)  # Still ours: we hold the flock on this inode.
    os.close(fd)


def _acquire(directory, path):
  """Opens and flocks `path`; retries when the file was replaced meanwhile."""
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
  except OSError as e:
    raise errors.GtsrbError(f"{directory}: cannot create lock file {path}: "
                            f"{e.strerror or e}") from e
  while True:
    try:
      fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise errors.GtsrbError(f"{directory}: cannot create lock file {path}: "
                              f"{e.strerror or e}") from e
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      os.close(fd)
      if e.errno not in (errno.EAGAIN, errno.EACCES):
        raise errors.GtsrbError(f"{directory}: cannot lock {path}: {e.strerror or e}") from e
      record = holder(directory)
      raise errors.GtsrbError(
          f"{directory}: in use by pid {record.get('pid', '?')} on "
          f"{record.get('host', '?')} (lock file {path})") from None
    try:
      same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
      same_file = False
    if same_file:
      break
    os.close(fd)  # The holder released and removed it between our open and flock.
  previous = holder(directory)
  if previous.get("pid"):
    logging.warning("%s: recovered a stale lock of pid %s on %s (that run ended without "
                    "releasing it)", directory, previous.get("pid"), previous.get("host"))
  record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
  try:
    os.ftruncate(fd, 0)
    os.pwrite(fd, record, 0)
  except OSError as e:
    os.close(fd)
    raise errors.GtsrbError(f"{directory}: cannot write lock file {path}: "
                            f"{e.strerror or e}") from e
  return fd

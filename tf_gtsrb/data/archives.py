"""GTSRB archives: checksums, resumable downloads and safe zip extraction.

Checksums. `OFFICIAL_ARCHIVES` lists the archives published by the GTSRB
authors with their size and MD5. `MIRROR_SHA256` lists the SHA-256 of a mirror
whose images were resized to 32x32 (same file names and layout, different
bytes). `verify_archive` accepts a file that matches EITHER its official size
and MD5 OR its mirror SHA-256; `fetch_official_archives(verify=False)` skips the
check for other repackaged copies.

Zip safety. `validate_zip` checks every entry before anything is read:

* the file is a readable zip (not truncated, central directory intact);
* entry names are relative paths: no leading `/` or `\\`, no drive letter
  (`C:`), no `..` component (`/` and `\\` both count as separators);
* names contain no NUL and no control characters (U+0000-U+001F, U+007F-U+009F);
* names are ASCII, or valid UTF-8 with the UTF-8 flag (bit 0x800) set; a
  non-ASCII name without that flag has no defined encoding and is rejected;
* no symlinks or other special files (Unix mode in `external_attr`), no
  encrypted entries, only stored/deflate/bzip2/lzma compression;
* no two entries extract to the same path, and no file is also used as a
  directory;
* zip bombs: the declared total uncompressed size is at most
  `max_total_bytes`, every entry larger than `ratio_min_bytes` expands at most
  `max_ratio` times, and entries' data do not overlap (overlapping entries
  let a small archive declare a huge total).

`safe_extract` then streams every entry into a temporary directory beside the
target, refusing to write more bytes than an entry declares, and swaps the
directory into place only when everything was written; CRC errors and
truncated data raise ArchiveError naming the archive and the member.
"""

import collections
import hashlib
import http.client
import logging
import os
import re
import stat
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib

import tqdm

from tf_gtsrb import errors
from tf_gtsrb import io_utils

OFFICIAL_BASE_URL = (
    "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/")

ArchiveInfo = collections.namedtuple("ArchiveInfo", ["url", "size", "md5"])

OFFICIAL_ARCHIVES = {
    name: ArchiveInfo(OFFICIAL_BASE_URL + name, size, md5)
    for name, size, md5 in (
        ("GTSRB_Final_Training_Images.zip", 276_294_756,
         "f33fd80ac59bff73c82d25ab499e03a3"),
        ("GTSRB_Final_Test_Images.zip", 88_978_620,
         "c7e4e6327067d32654124b0fe9e82185"),
        ("GTSRB_Final_Test_GT.zip", 99_620,
         "fe31e9c9270bbcd7b84b7f21a9d9d9e5"),
    )
}

# SHA-256 of the 32x32 mirror of the same archives (images resized).
MIRROR_SHA256 = {
    "GTSRB_Final_Training_Images.zip":
        "0c64c6f0fbc6ab3c222a3136409fd8e0e77b84615637b09e77ceb60bfef43be2",
    "GTSRB_Final_Test_Images.zip":
        "5550e2134a338dcaffb968009f0d87eefe75edced11748cb3440a91c8ce990e8",
    "GTSRB_Final_Test_GT.zip":
        "8fa79d0fd77f05f709ee4814b474f883b116761a99d4663d635717b36e24dd4c",
}

DEFAULT_MAX_TOTAL_BYTES = 4 << 30  # 4 GiB uncompressed in all.
DEFAULT_MAX_RATIO = 200  # Per entry, uncompressed / compressed.
DEFAULT_RATIO_MIN_BYTES = 1 << 20  # Entries smaller than this skip the ratio check.
DEFAULT_MAX_ENTRIES = 1_000_000

_CHUNK = 1 << 20
_USER_AGENT = "tf_gtsrb-downloader"
_LOCAL_HEADER_BYTES = 30
_SUPPORTED_COMPRESSION = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED,
                          zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]")
_DRIVE = re.compile("^[A-Za-z]:")
# Errors zipfile raises on corrupt or truncated member data.
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError,
                RuntimeError, ValueError, OSError)

_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------
# Checksums.


def _hashes(path, algorithms):
  """Returns {algorithm: hexdigest} of `path`, reading it once in chunks."""
  hashers = {a: hashlib.new(a) for a in algorithms}
  try:
    with open(path, "rb") as f:
      for chunk in iter(lambda: f.read(_CHUNK), b""):
        for h in hashers.values():
          h.update(chunk)
  except FileNotFoundError as e:
    raise errors.DataError(f"{path}: file not found") from e
  except OSError as e:
    raise errors.DataError(f"{path}: cannot read: {e.strerror or e}") from e
  return {a: h.hexdigest() for a, h in hashers.items()}


def md5sum(path):
  """Returns the hex MD5 of a file, read in chunks."""
  return _hashes(path, ["md5"])["md5"]


def sha256sum(path):
  """Returns the hex SHA-256 of a file, read in chunks."""
  return _hashes(path, ["sha256"])["sha256"]


def verify_checksum(path, md5, size=None):
  """Raises ChecksumError unless `path` has this MD5 (and size, if given)."""
  if size is not None:
    actual_size = _file_size(path)
    if actual_size != size:
      raise errors.ChecksumError(
          f"{path}: size is {actual_size} bytes, expected {size}")
  actual = md5sum(path)
  if actual.lower() != md5.lower():
    raise errors.ChecksumError(f"{path}: md5 is {actual}, expected {md5}")


def verify_archive(path, name=None):
  """Checks a GTSRB archive against the official MD5 or the mirror SHA-256.

  Args:
    path: the archive file.
    name: its name in OFFICIAL_ARCHIVES; defaults to the base name of `path`.

  Returns:
    'official' or 'mirror', whichever checksum matched.

  Raises:
    ConfigError: `name` is not a known archive.
    ChecksumError: neither checksum matches (the message gives both).
  """
  name = name or os.path.basename(path)
  if name not in OFFICIAL_ARCHIVES:
    raise errors.ConfigError(
        f"{name}: unknown archive; expected one of {sorted(OFFICIAL_ARCHIVES)}")
  info = OFFICIAL_ARCHIVES[name]
  digests = _hashes(path, ["md5", "sha256"])
  if digests["md5"] == info.md5 and _file_size(path) == info.size:
    return "official"
  if digests["sha256"] == MIRROR_SHA256.get(name):
    return "mirror"
  raise errors.ChecksumError(
      f"{path}: checksum matches neither the official archive (md5 "
      f"{info.md5}, {info.size} bytes) nor the 32x32 mirror (sha256 "
      f"{MIRROR_SHA256.get(name)}); got md5 {digests['md5']}, sha256 "
      f"{digests['sha256']}, {_file_size(path)} bytes")


def _file_size(path):
  try:
    return os.path.getsize(path)
  except FileNotFoundError as e:
    raise errors.DataError(f"{path}: file not found") from e


# --------------------------------------------------------------------------
# Downloads.


def download(url, dest_path, md5=None, size=None, timeout=60, progress=True):
  """Downloads `url` to `dest_path`, resuming a previous partial download.

  Bytes go to `dest_path + '.part'`; when a .part exists the download resumes
  with an HTTP Range request (a server that answers 200 instead of 206 makes
  it start over). The .part is checked against `md5` and `size` and only then
  renamed to `dest_path`. An existing `dest_path` that passes the checks (or
  any existing `dest_path` when neither is given) is kept as it is.

  Args:
    url: http or https URL.
    dest_path: final file name.
    md5: expected hex MD5, or None.
    size: expected size in bytes, or None.
    timeout: socket timeout in seconds.
    progress: show a tqdm progress bar on stderr.

  Returns:
    dest_path.

  Raises:
    ConfigError: bad arguments.
    DownloadError: the request or transfer failed (the .part is kept).
    ChecksumError: the complete file has the wrong size or MD5 (the .part is
      deleted).
    GtsrbError: the file cannot be written (disk full, read-only...).
  """
  try:
    scheme = urllib.parse.urlparse(str(url)).scheme
  except ValueError as e:
    raise errors.ConfigError(f"{url}: not a valid URL: {e}") from e
  if scheme not in ("http", "https"):
    raise errors.ConfigError(f"{url}: only http and https URLs can be downloaded")
  if not dest_path:
    raise errors.ConfigError("download: dest_path is empty")
  if size is not None and (not isinstance(size, int) or size < 0):
    raise errors.ConfigError(f"{url}: size must be a non-negative int, got {size!r}")
  if md5 is not None and not re.fullmatch(r"[0-9a-fA-F]{32}", str(md5)):
    raise errors.ConfigError(f"{url}: md5 must be 32 hex digits, got {md5!r}")
  if not timeout or timeout <= 0:
    raise errors.ConfigError(f"{url}: timeout must be > 0 seconds, got {timeout!r}")

  dest_path = os.fspath(dest_path)
  if os.path.isfile(dest_path):
    if md5 is None and size is None:
      _log.info("%s: already present, not verified", dest_path)
      return dest_path
    try:
      _verify(dest_path, md5, size)
      _log.info("%s: already present and verified", dest_path)
      return dest_path
    except errors.ChecksumError as e:
      _log.warning("%s; downloading it again", e)

  part = dest_path + ".part"
  try:
    os.makedirs(os.path.dirname(os.path.abspath(dest_path)), exist_ok=True)
  except OSError as e:
    raise errors.GtsrbError(f"{dest_path}: cannot write output: {e.strerror or e}") from e

  if size is not None and os.path.exists(part) and os.path.getsize(part) > size:
    _remove(part)  # Longer than the file can be: start over.
  if not (size is not None and os.path.exists(part)
          and os.path.getsize(part) == size):
    _fetch(url, part, size, timeout, progress)

  if size is not None and os.path.getsize(part) < size:
    raise errors.DownloadError(
        f"{url}: transfer ended after {os.path.getsize(part)} of {size} bytes; "
        f"partial file kept at {part}, run again to resume")
  try:
    _verify(part, md5, size)
  except errors.ChecksumError as e:
    _remove(part)
    raise errors.ChecksumError(f"{url}: downloaded file is wrong, deleted: {e}") from e
  try:
    os.replace(part, dest_path)
  except OSError as e:
    raise errors.GtsrbError(f"{dest_path}: cannot write output: {e.strerror or e}") from e
  return dest_path


def _verify(path, md5, size):
  if md5 is not None:
    verify_checksum(path, md5, size)
  elif size is not None and _file_size(path) != size:
    raise errors.ChecksumError(
        f"{path}: size is {_file_size(path)} bytes, expected {size}")


def _fetch(url, part, size, timeout, progress):
  """Appends the missing bytes of `url` to `part`; restarts at most once."""
  for _ in range(2):
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    if offset:
      request.add_header("Range", f"bytes={offset}-")
    try:
      response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
      if e.code == 416 and offset:
        total = _content_range(e.headers.get("Content-Range"))[2]
        e.close()
        if total == offset:
          return  # The .part is already complete.
        _remove(part)
        continue
      raise errors.DownloadError(
          f"{url}: HTTP {e.code} {e.reason}" + _kept(part)) from e
    except (urllib.error.URLError, OSError, http.client.HTTPException,
            ValueError) as e:
      reason = getattr(e, "reason", None) or e
      raise errors.DownloadError(f"{url}: cannot connect: {reason}" + _kept(part)) from e

    with response:
      status = response.status
      length = response.headers.get("Content-Length")
      length = int(length) if length and length.isdigit() else None
      if status == 206:
        start, _, total = _content_range(response.headers.get("Content-Range"))
        if start != offset:
          _log.warning("%s: server resumed at byte %s instead of %s; restarting",
                       url, start, offset)
          _remove(part)
          continue
        mode = "ab"
      elif status == 200:
        if offset:
          _log.info("%s: server ignored the resume request; restarting", url)
        offset, mode, total = 0, "wb", length
      else:
        raise errors.DownloadError(f"{url}: unexpected HTTP status {status}" + _kept(part))
      _copy(response, url, part, mode, offset, length,
            total if total is not None else size, progress)
      return
  raise errors.DownloadError(f"{url}: server does not resume consistently" + _kept(part))


def _copy(response, url, part, mode, offset, length, total, progress):
  """Streams `response` into `part`; raises DownloadError when cut short."""
  received = 0
  try:
    f = open(part, mode)
  except OSError as e:
    raise errors.GtsrbError(f"{part}: cannot write output: {e.strerror or e}") from e
  with f, tqdm.tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                    unit_divisor=1024, desc=os.path.basename(part[:-5]),
                    disable=not progress, leave=False) as bar:
    while True:
      try:
        # read1 returns whatever has arrived, so a stall loses no bytes.
        chunk = response.read1(_CHUNK)
      except (OSError, http.client.HTTPException, ValueError) as e:
        raise errors.DownloadError(
            f"{url}: transfer failed after {offset + received} bytes: {e}" +
            _kept(part)) from e
      if not chunk:
        break
      try:
        f.write(chunk)
      except OSError as e:
        raise errors.GtsrbError(f"{part}: cannot write output: {e.strerror or e}") from e
      received += len(chunk)
      bar.update(len(chunk))
  if length is not None and received < length:
    raise errors.DownloadError(
        f"{url}: connection closed after {offset + received} bytes, expected "
        f"{offset + length}" + _kept(part))


def _content_range(value):
  """Parses 'bytes START-END/TOTAL' or 'bytes */TOTAL' -> (start, end, total)."""
  match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*", value or "")
  if not match:
    return None, None, None
  start, end, total = match.groups()
  as_int = lambda v: int(v) if v and v != "*" else None
  return as_int(start), as_int(end), as_int(total)


def _kept(part):
  if os.path.exists(part):
    return f"; partial file kept at {part}, run again to resume"
  return ""


def _remove(path):
  try:
    os.remove(path)
  except FileNotFoundError:
    pass


def fetch_official_archives(download_dir, names=None, verify=True, progress=True):
  """Makes sure the GTSRB archives are in `download_dir`; downloads missing ones.

  Archives already present are checked with `verify_archive`: the official
  MD5 and size, or the SHA-256 of the 32x32 mirror, must match. With
  `verify=False` present archives are used as they are (for other
  repackaged copies); downloaded ones are always checked.

  Args:
    download_dir: directory holding (or receiving) the archives.
    names: archive names (keys of OFFICIAL_ARCHIVES); default all three.
    verify: check archives that are already present.
    progress: show download progress bars.

  Returns:
    dict name -> path, in the order of `names`.
  """
  if not download_dir:
    raise errors.ConfigError("fetch_official_archives: download_dir is empty")
  names = list(OFFICIAL_ARCHIVES) if names is None else list(names)
  unknown = [n for n in names if n not in OFFICIAL_ARCHIVES]
  if unknown:
    raise errors.ConfigError(
        f"unknown archive(s) {unknown}; expected some of {sorted(OFFICIAL_ARCHIVES)}")
  paths = {}
  for name in names:
    info = OFFICIAL_ARCHIVES[name]
    path = os.path.join(os.fspath(download_dir), name)
    if os.path.isfile(path):
      if verify:
        kind = verify_archive(path, name)
        _log.info("%s: present, matches the %s checksum", path, kind)
    else:
      download(info.url, path, md5=info.md5, size=info.size, progress=progress)
    paths[name] = path
  return paths


# --------------------------------------------------------------------------
# Zip archives.


def validate_zip(path, max_total_bytes=DEFAULT_MAX_TOTAL_BYTES,
                 max_ratio=DEFAULT_MAX_RATIO,
                 ratio_min_bytes=DEFAULT_RATIO_MIN_BYTES,
                 max_entries=DEFAULT_MAX_ENTRIES, check_data=False):
  """Opens a zip archive after checking every entry (see the module docstring).

  Args:
    path: the zip file.
    max_total_bytes: limit on the declared uncompressed size of all entries.
    max_ratio: limit on uncompressed/compressed size of one entry.
    ratio_min_bytes: entries up to this uncompressed size skip the ratio check.
    max_entries: limit on the number of entries.
    check_data: also decompress every entry and check its CRC (reads the
      whole archive).

  Returns:
    An open zipfile.ZipFile; the caller closes it.

  Raises:
    ArchiveError naming the archive (and the entry) on the first problem.
  """
  for arg, value in (("max_total_bytes", max_total_bytes), ("max_ratio", max_ratio),
                     ("max_entries", max_entries)):
    if value is None or value <= 0:
      raise errors.ConfigError(f"validate_zip: {arg} must be > 0, got {value!r}")
  try:
    zf = zipfile.ZipFile(path)
  except FileNotFoundError as e:
    raise errors.ArchiveError(f"{path}: file not found") from e
  except UnicodeDecodeError as e:
    raise errors.ArchiveError(
        f"{path}: an entry name is flagged UTF-8 but is not valid UTF-8") from e
  except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as e:
    raise errors.ArchiveError(f"{path}: not a zip archive or truncated: {e}") from e
  except NotImplementedError as e:
    raise errors.ArchiveError(f"{path}: unsupported zip feature: {e}") from e
  try:
    _check_entries(zf, path, max_total_bytes, max_ratio, ratio_min_bytes,
                   max_entries)
    if check_data:
      for info in zf.infolist():
        if not info.is_dir():
          with _open_member(zf, info, path) as src:
            _drain(src, info, path, sink=None)
  except BaseException:
    zf.close()
    raise
  return zf


def _check_entries(zf, path, max_total_bytes, max_ratio, ratio_min_bytes,
                   max_entries):
  infos = zf.infolist()
  if len(infos) > max_entries:
    raise errors.ArchiveError(
        f"{path}: {len(infos)} entries, more than the limit of {max_entries}")
  seen = {}
  files, parents = set(), set()
  total = 0
  for info in infos:
    parts = entry_parts(info, path)
    key = "/".join(parts)
    if key in seen:
      raise errors.ArchiveError(
          f"{path}: entries {seen[key]!r} and {info.orig_filename!r} extract "
          "to the same path")
    seen[key] = info.orig_filename
    for i in range(1, len(parts)):
      parents.add("/".join(parts[:i]))
    if not info.is_dir():
      files.add(key)

    if info.flag_bits & 0x1:
      raise errors.ArchiveError(f"{path}: entry {info.filename!r} is encrypted")
    if info.compress_type not in _SUPPORTED_COMPRESSION:
      raise errors.ArchiveError(
          f"{path}: entry {info.filename!r} uses unsupported compression "
          f"method {info.compress_type}")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
      raise errors.ArchiveError(
          f"{path}: stored entry {info.filename!r} declares {info.file_size} "
          f"bytes but holds {info.compress_size}")
    if (info.file_size > ratio_min_bytes and
        info.file_size > max_ratio * max(info.compress_size, 1)):
      raise errors.ArchiveError(
          f"{path}: entry {info.filename!r} expands {info.compress_size} bytes "
          f"to {info.file_size} (ratio over {max_ratio}): zip bomb?")
    total += info.file_size
    if total > max_total_bytes:
      raise errors.ArchiveError(
          f"{path}: entries declare more than {max_total_bytes} bytes "
          "uncompressed in all: zip bomb?")

  clashes = sorted(files & parents)
  if clashes:
    raise errors.ArchiveError(
        f"{path}: {clashes[0]!r} is both a file and a directory")
  _check_no_overlap(zf, path, infos)


def _check_no_overlap(zf, path, infos):
  """Rejects entries whose local header + data overlap the next entry."""
  end_of_data = getattr(zf, "start_dir", None)
  ordered = sorted(infos, key=lambda i: i.header_offset)
  for info, following in zip(ordered, ordered[1:] + [None]):
    limit = following.header_offset if following is not None else end_of_data
    if limit is None:
      continue
    raw_name = _raw_name(info)
    end = info.header_offset + _LOCAL_HEADER_BYTES + len(raw_name) + info.compress_size
    if end > limit:
      raise errors.ArchiveError(
          f"{path}: entry {info.filename!r} overlaps the next entry or the "
          "central directory (overlapping-entries zip bomb or corrupt archive)")


def _raw_name(info):
  encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
  try:
    return info.orig_filename.encode(encoding)
  except UnicodeEncodeError:
    return info.orig_filename.encode("utf-8", "surrogateescape")


def entry_parts(info, archive_path):
  """Returns the path components of a zip entry, or raises ArchiveError.

  Applies the name rules of the module docstring; '' and '.' components are
  dropped.
  """
  name = info.orig_filename
  where = f"{archive_path}: entry {name!r}"
  if "\x00" in name:
    raise errors.ArchiveError(f"{where}: name contains a NUL byte")
  if _CONTROL_CHARS.search(name):
    raise errors.ArchiveError(f"{where}: name contains control characters")
  if not info.flag_bits & 0x800 and not name.isascii():
    raise errors.ArchiveError(
        f"{where}: non-ASCII name without the UTF-8 flag (unknown encoding)")
  if name.startswith(("/", "\\")) or _DRIVE.match(name):
    raise errors.ArchiveError(f"{where}: absolute path")
  parts = [p for p in re.split(r"[\\/]", name) if p not in ("", ".")]
  if ".." in parts:
    raise errors.ArchiveError(f"{where}: path escapes the target ('..')")
  if not parts:
    raise errors.ArchiveError(f"{where}: empty name")
  mode = info.external_attr >> 16
  if stat.S_ISLNK(mode):
    raise errors.ArchiveError(f"{where}: symbolic links are not allowed")
  if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
    raise errors.ArchiveError(f"{where}: special files are not allowed")
  return parts


def _open_member(zf, info, archive_path):
  try:
    return zf.open(info)
  except _READ_ERRORS as e:
    raise _member_error(archive_path, info.filename, e) from e


def _drain(src, info, archive_path, sink):
  """Copies `src` to `sink` (or discards it), never more than declared."""
  written = 0
  while True:
    try:
      chunk = src.read(_CHUNK)
    except _READ_ERRORS as e:
      raise _member_error(archive_path, info.filename, e) from e
    if not chunk:
      break
    written += len(chunk)
    if written > info.file_size:
      raise errors.ArchiveError(
          f"{archive_path}: member {info.filename!r} holds more than the "
          f"{info.file_size} bytes it declares")
    if sink is not None:
      sink(chunk)
  if written != info.file_size:
    raise errors.ArchiveError(
        f"{archive_path}: member {info.filename!r} is truncated "
        f"({written} of {info.file_size} bytes)")


def _member_error(archive_path, member, error):
  return errors.ArchiveError(
      f"{archive_path}: member {member!r} is corrupt or truncated "
      f"({type(error).__name__}: {error})")


def read_member(zf, name, archive_path=None):
  """Returns the bytes of member `name`; corrupt data raises ArchiveError.

  The message names the archive (`archive_path`, default `zf.filename`) and
  the member.
  """
  archive_path = archive_path or zf.filename
  try:
    info = zf.getinfo(name)
  except KeyError as e:
    raise errors.ArchiveError(f"{archive_path}: no member {name!r}") from e
  chunks = []
  with _open_member(zf, info, archive_path) as src:
    _drain(src, info, archive_path, sink=chunks.append)
  return b"".join(chunks)


def safe_extract(zip_path, target_dir, **limits):
  """Validates `zip_path` and extracts it to `target_dir`, all or nothing.

  Entries are written into a temporary directory beside `target_dir` that
  replaces `target_dir` (an existing one included) only when every entry was
  written and passed its CRC check. On any error nothing is left behind and
  an existing `target_dir` is untouched.

  Args:
    zip_path: the archive.
    target_dir: directory to create (or replace).
    **limits: keyword arguments of `validate_zip` (max_total_bytes, ...).

  Returns:
    target_dir.

  Raises:
    ArchiveError: the archive is corrupt, truncated or hostile.
    GtsrbError: the output cannot be written.
  """
  if not target_dir:
    raise errors.ConfigError("safe_extract: target_dir is empty")
  target_dir = os.fspath(target_dir)
  with validate_zip(zip_path, **limits) as zf:
    with io_utils.atomic_directory(target_dir) as tmp:
      root = os.path.realpath(tmp)
      for info in zf.infolist():
        parts = entry_parts(info, zip_path)
        dest = os.path.join(root, *parts)
        if os.path.commonpath([root, os.path.realpath(dest)]) != root:
          raise errors.ArchiveError(
              f"{zip_path}: entry {info.filename!r} escapes the target")
        try:
          if info.is_dir():
            os.makedirs(dest, exist_ok=True)
            continue
          os.makedirs(os.path.dirname(dest), exist_ok=True)
          with open(dest, "xb") as out, _open_member(zf, info, zip_path) as src:
            _drain(src, info, zip_path, sink=out.write)
        except OSError as e:
          raise errors.GtsrbError(
              f"{target_dir}: cannot extract {info.filename!r}: "
              f"{e.strerror or e}") from e
  return target_dir

"""Tests of tf_gtsrb.data.archives: checksums and safe zip handling."""

import hashlib
import os
import stat
import struct
import warnings
import zipfile

import pytest

from tf_gtsrb import errors
from tf_gtsrb.data import archives

MIRROR_DIR = "/work/shared/gtsrb"

# --------------------------------------------------------------------------
# Helpers: every archive is built here, in tmp_path.


def make_zip(path, entries, compression=zipfile.ZIP_DEFLATED):
  """Writes a zip; entries: list of (name or ZipInfo, bytes)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Duplicate names are wanted in some tests.
    with zipfile.ZipFile(path, "w", compression) as zf:
      for name, data in entries:
        zf.writestr(name, data)
  return str(path)


def patch_bytes(path, old, new):
  """Replaces every occurrence of `old` by `new` (same length) in a file."""
  assert len(old) == len(new)
  with open(path, "rb") as f:
    data = f.read()
  assert old in data
  with open(path, "wb") as f:
    f.write(data.replace(old, new))


def _headers(data, signature):
  pos = data.find(signature)
  while pos >= 0:
    yield pos
    pos = data.find(signature, pos + 4)


def patch_header_field(path, name, central=None, local=None):
  """Overwrites 4- or 2-byte fields in the headers of entry `name`.

  central/local: {offset_in_header: (struct_format, value)}.
  """
  with open(path, "rb") as f:
    data = bytearray(f.read())
  raw = name.encode("utf-8")
  for signature, fields, name_offset in ((b"PK\x01\x02", central, 46),
                                         (b"PK\x03\x04", local, 30)):
    for pos in _headers(bytes(data), signature):
      if fields and data[pos + name_offset:pos + name_offset + len(raw)] == raw:
        for offset, (fmt, value) in fields.items():
          struct.pack_into(fmt, data, pos + offset, value)
  with open(path, "wb") as f:
    f.write(bytes(data))


def listing(root):
  """All paths under root, relative, sorted."""
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames + filenames:
      found.append(os.path.relpath(os.path.join(dirpath, name), root))
  return sorted(found)


GOOD_ENTRIES = [
    ("GTSRB/", b""),
    ("GTSRB/Final_Training/Images/00000/GT-00000.csv", b"Filename;ClassId\n"),
    ("GTSRB/Final_Training/Images/00000/00000_00000.ppm", b"P6\n1 1\n255\n\x01\x02\x03"),
    ("readme.txt", b"hello" * 100),
]


# --------------------------------------------------------------------------
# Checksums.


def test_md5sum_and_verify_checksum(tmp_path):
  path = tmp_path / "f.bin"
  data = os.urandom(3 << 20)  # Spans several read chunks.
  path.write_bytes(data)
  md5 = hashlib.md5(data).hexdigest()
  assert archives.md5sum(path) == md5
  assert archives.sha256sum(path) == hashlib.sha256(data).hexdigest()
  archives.verify_checksum(path, md5)
  archives.verify_checksum(path, md5.upper(), size=len(data))


def test_verify_checksum_mismatch_names_file_expected_and_actual(tmp_path):
  path = tmp_path / "f.bin"
  path.write_bytes(b"abc")
  actual = hashlib.md5(b"abc").hexdigest()
  with pytest.raises(errors.ChecksumError) as e:
    archives.verify_checksum(path, "0" * 32)
  assert str(path) in str(e.value)
  assert "0" * 32 in str(e.value) and actual in str(e.value)
  with pytest.raises(errors.ChecksumError, match="size is 3 bytes, expected 4"):
    archives.verify_checksum(path, actual, size=4)


def test_md5sum_missing_file(tmp_path):
  with pytest.raises(errors.DataError, match="missing.bin"):
    archives.md5sum(tmp_path / "missing.bin")


def test_official_table():
  assert set(archives.OFFICIAL_ARCHIVES) == set(archives.MIRROR_SHA256)
  info = archives.OFFICIAL_ARCHIVES["GTSRB_Final_Training_Images.zip"]
  url, size, md5 = info
  assert url == archives.OFFICIAL_BASE_URL + "GTSRB_Final_Training_Images.zip"
  assert url.startswith("https://sid.erda.dk/")
  assert size == 276_294_756 and md5 == "f33fd80ac59bff73c82d25ab499e03a3"


def test_verify_archive_accepts_official_or_mirror(tmp_path, monkeypatch):
  name = "GTSRB_Final_Test_GT.zip"
  official = tmp_path / "official" / name
  official.parent.mkdir()
  official.write_bytes(b"official bytes")
  mirror = tmp_path / "mirror" / name
  mirror.parent.mkdir()
  mirror.write_bytes(b"mirror bytes")
  monkeypatch.setitem(
      archives.OFFICIAL_ARCHIVES, name,
      archives.ArchiveInfo("http://x/" + name, 14, hashlib.md5(b"official bytes").hexdigest()))
  monkeypatch.setitem(archives.MIRROR_SHA256, name,
                      hashlib.sha256(b"mirror bytes").hexdigest())
  assert archives.verify_archive(official) == "official"
  assert archives.verify_archive(mirror, name) == "mirror"
  other = tmp_path / name
  other.write_bytes(b"something else")
  with pytest.raises(errors.ChecksumError, match="neither"):
    archives.verify_archive(other)
  with pytest.raises(errors.ConfigError):
    archives.verify_archive(other, "unknown.zip")


def test_fetch_official_archives_uses_present_files(tmp_path, monkeypatch):
  for name in archives.OFFICIAL_ARCHIVES:
    data = name.encode()
    (tmp_path / name).write_bytes(data)
    monkeypatch.setitem(archives.MIRROR_SHA256, name, hashlib.sha256(data).hexdigest())
  paths = archives.fetch_official_archives(tmp_path)
  assert paths == {n: os.path.join(tmp_path, n) for n in archives.OFFICIAL_ARCHIVES}
  # A file matching neither checksum is refused unless verify=False.
  (tmp_path / "GTSRB_Final_Test_GT.zip").write_bytes(b"repacked")
  with pytest.raises(errors.ChecksumError, match="GTSRB_Final_Test_GT.zip"):
    archives.fetch_official_archives(tmp_path, names=["GTSRB_Final_Test_GT.zip"])
  paths = archives.fetch_official_archives(
      tmp_path, names=["GTSRB_Final_Test_GT.zip"], verify=False)
  assert list(paths) == ["GTSRB_Final_Test_GT.zip"]
  with pytest.raises(errors.ConfigError, match="nope.zip"):
    archives.fetch_official_archives(tmp_path, names=["nope.zip"])


@pytest.mark.skipif(not os.path.isdir(MIRROR_DIR), reason="no local mirror")
def test_local_mirror_gt_archive_verifies_and_validates():
  path = os.path.join(MIRROR_DIR, "GTSRB_Final_Test_GT.zip")
  assert archives.verify_archive(path) == "mirror"
  with archives.validate_zip(path, check_data=True) as zf:
    data = archives.read_member(zf, "GT-final_test.csv")
  assert data.startswith(b"Filename;")


# --------------------------------------------------------------------------
# Safe extraction of good archives.


def test_safe_extract_good_archive(tmp_path):
  src = make_zip(tmp_path / "src" / "good.zip", GOOD_ENTRIES)
  target = tmp_path / "out" / "target"
  assert archives.safe_extract(src, target) == str(target)
  for name, data in GOOD_ENTRIES:
    path = target / name
    if name.endswith("/"):
      assert path.is_dir()
    else:
      assert path.read_bytes() == data
  assert listing(tmp_path / "out") == ["target"] + [
      "target/" + p for p in listing(target)]


def test_safe_extract_replaces_previous_target(tmp_path):
  target = tmp_path / "target"
  target.mkdir()
  (target / "stale.txt").write_text("old")
  src = make_zip(tmp_path / "src" / "good.zip", [("new.txt", b"new")])
  archives.safe_extract(src, target)
  assert listing(target) == ["new.txt"]
  assert listing(tmp_path) == ["src", "src/good.zip", "target", "target/new.txt"]


def test_safe_extract_stored_and_large_entries(tmp_path):
  data = os.urandom((1 << 20) + 123)  # Incompressible, several chunks.
  src = make_zip(tmp_path / "src" / "stored.zip", [("big.bin", data)],
                 compression=zipfile.ZIP_STORED)
  archives.safe_extract(src, tmp_path / "t")
  assert (tmp_path / "t" / "big.bin").read_bytes() == data


def test_read_member(tmp_path):
  src = make_zip(tmp_path / "good.zip", GOOD_ENTRIES)
  with archives.validate_zip(src) as zf:
    assert archives.read_member(zf, "readme.txt") == b"hello" * 100
    with pytest.raises(errors.ArchiveError, match="no member 'absent.txt'"):
      archives.read_member(zf, "absent.txt")


# --------------------------------------------------------------------------
# Hostile and broken archives: all rejected, nothing written anywhere.


def _unix_entry(name, mode):
  """A ZipInfo made on Unix with file type and permission bits `mode`."""
  info = zipfile.ZipInfo(name)
  info.create_system = 3
  info.external_attr = mode << 16
  return info


def _zip_of(*entries):
  """A builder: a zip of `entries`, (name, bytes) pairs."""
  return lambda path: make_zip(path, list(entries))


def _forged_size(path):
  make_zip(path, [("ok.txt", b"x"), ("big.bin", b"y" * 1000)])
  patch_header_field(path, "big.bin", central={24: ("<I", 0xFFFFFFFE)},
                     local={22: ("<I", 0xFFFFFFFE)})
  return path


def _forged_total(path):
  """Many entries, each declaring 1 MiB (below the ratio check), 4100 MiB in all."""
  make_zip(path, [(f"f{i:04d}.bin", b"y" * 10) for i in range(4100)])
  with open(path, "rb") as f:
    data = bytearray(f.read())
  for pos in _headers(bytes(data), b"PK\x01\x02"):
    struct.pack_into("<I", data, pos + 24, 1 << 20)
  with open(path, "wb") as f:
    f.write(bytes(data))
  return path


def _lying(half, declared):
  """A builder: 'lie.bin' (`half` bytes of z, `half` random) declaring `declared` bytes."""
  def build(path):
    make_zip(path, [("lie.bin", b"z" * half + os.urandom(half))])
    patch_header_field(path, "lie.bin", central={24: ("<I", declared)},
                       local={22: ("<I", declared)})
    return path
  return build


def _raw_name(placeholder, raw, utf8_flag=False):
  """A builder: one entry named by the bytes `raw` (written as `placeholder`, then patched)."""
  def build(path):
    make_zip(path, [(placeholder, b"x")])
    if utf8_flag:
      patch_header_field(path, placeholder, central={8: ("<H", 0x800)},
                         local={6: ("<H", 0x800)})
    patch_bytes(path, placeholder.encode(), raw)
    return path
  return build


def _truncated(path):
  make_zip(path, GOOD_ENTRIES + [("r.bin", os.urandom(20000))])
  data = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])
  return path


def _not_a_zip(path):
  with open(path, "wb") as f:
    f.write(b"this is not a zip file at all" * 10)
  return path


def _empty_file(path):
  open(path, "wb").close()
  return path


def _overlapping(path):
  make_zip(path, [("a.txt", b"a" * 100), ("b.txt", b"b" * 100)])
  with zipfile.ZipFile(path) as zf:
    offset_a = zf.getinfo("a.txt").header_offset
  patch_header_field(path, "b.txt", central={42: ("<I", offset_a)})
  return path


def _encrypted(path):
  make_zip(path, [("secret.txt", b"x" * 10)])
  patch_header_field(path, "secret.txt", central={8: ("<H", 0x1)})
  return path


# kind -> (builder(path) -> path, regex the error message must match).
HOSTILE = {
    "zip_slip": (_zip_of(("ok.txt", b"x"), ("../evil.txt", b"pwned")),
                 r"'\.\./evil.txt': path escapes"),
    "zip_slip_nested": (_zip_of(("a/b/../../../evil.txt", b"pwned")), "path escapes"),
    "zip_slip_backslash": (_zip_of(("..\\evil.txt", b"pwned")), "path escapes"),
    "absolute_posix": (_zip_of(("/tmp/evil.txt", b"pwned")), "absolute path"),
    "absolute_drive": (_zip_of(("C:\\evil.txt", b"pwned")), "absolute path"),
    "absolute_drive_slash": (_zip_of(("C:/evil.txt", b"pwned")), "absolute path"),
    "absolute_unc": (_zip_of(("\\\\server\\share\\evil.txt", b"pwned")), "absolute path"),
    "nul_in_name": (_raw_name("okXevil.txt", b"ok\x00evil.txt"), "NUL"),
    "control_char": (_zip_of(("evil\x1b[2J.txt", b"x")), "control characters"),
    # Each archive gets a fresh ZipInfo: writing one into a zip updates it.
    "symlink": (
        lambda p: make_zip(p, [("ok.txt", b"x"),
                               (_unix_entry("link", stat.S_IFLNK | 0o777), b"/etc/passwd")]),
        "'link': symbolic links"),
    "fifo": (lambda p: make_zip(p, [(_unix_entry("fifo", stat.S_IFIFO | 0o644), b"")]),
             "special files"),
    "duplicate": (_zip_of(("a.txt", b"1"), ("a.txt", b"2")), "same path"),
    "duplicate_normalized": (_zip_of(("a/b.txt", b"1"), ("a/./b.txt", b"2")), "same path"),
    "file_and_dir": (_zip_of(("a", b"1"), ("a/b.txt", b"2")), "both a file and a directory"),
    "bad_utf8_name": (_raw_name("bad_XX.txt", b"bad_\xff\xfe.txt", utf8_flag=True),
                      "not valid UTF-8"),
    "non_ascii_without_utf8_flag": (_raw_name("bad_XX.txt", b"bad_\xe9\x81.txt"),
                                    "without the UTF-8 flag"),
    "bomb_ratio": (_zip_of(("ok.txt", b"x"), ("zeros.bin", bytes(4 << 20))),
                   "'zeros.bin' expands .* zip bomb"),
    "bomb_forged_size": (_forged_size, "'big.bin' expands .* zip bomb"),
    "bomb_forged_total": (_forged_total, "uncompressed in all: zip bomb"),
    "bomb_overlapping": (_overlapping, "overlaps"),
    "lying_header_small": (_lying(5000, declared=100), "'lie.bin' is corrupt"),
    "lying_header_large": (_lying(500, declared=5000), "'lie.bin' is truncated"),
    "encrypted": (_encrypted, "encrypted"),
    "truncated": (_truncated, "not a zip archive or truncated"),
    "not_a_zip": (_not_a_zip, "not a zip archive"),
    "empty_file": (_empty_file, "not a zip archive"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_archive_rejected_nothing_written(tmp_path, kind):
  src_dir = tmp_path / "src"
  src_dir.mkdir()
  build, pattern = HOSTILE[kind]
  src = build(str(src_dir / f"{kind}.zip"))
  out = tmp_path / "out" / "deep"
  out.mkdir(parents=True)
  (out / "keep.txt").write_text("keep")
  before_tmp = listing(tmp_path)
  target = out / "target"
  with pytest.raises(errors.ArchiveError, match=pattern) as e:
    archives.safe_extract(src, target)
  assert src in str(e.value)
  assert not target.exists()
  assert listing(tmp_path) == before_tmp


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_archive_rejected_by_validate_or_read(tmp_path, kind):
  """Metadata attacks fail in validate_zip; data attacks fail when read."""
  build, pattern = HOSTILE[kind]
  src = build(str(tmp_path / f"{kind}.zip"))
  data_attacks = {"lying_header_small", "lying_header_large"}
  if kind not in data_attacks:
    with pytest.raises(errors.ArchiveError, match=pattern):
      archives.validate_zip(src).close()
    return
  with archives.validate_zip(src) as zf:
    with pytest.raises(errors.ArchiveError, match="lie.bin"):
      archives.read_member(zf, "lie.bin")
  with pytest.raises(errors.ArchiveError, match="lie.bin"):
    archives.validate_zip(src, check_data=True)


def test_failed_extract_keeps_previous_target(tmp_path):
  target = tmp_path / "target"
  target.mkdir()
  (target / "old.txt").write_text("old")
  src = make_zip(tmp_path / "src" / "evil.zip",
                 [("fine.txt", b"fine"), ("../evil.txt", b"pwned")])
  with pytest.raises(errors.ArchiveError):
    archives.safe_extract(src, target)
  assert listing(target) == ["old.txt"]
  assert (target / "old.txt").read_text() == "old"
  assert listing(tmp_path) == ["src", "src/evil.zip", "target", "target/old.txt"]


def test_limits_are_arguments(tmp_path):
  src = make_zip(tmp_path / "z.zip", [("zeros.bin", bytes(2 << 20)), ("b", b"1"), ("c", b"2")])
  with pytest.raises(errors.ArchiveError, match="ratio"):
    archives.validate_zip(src)
  archives.validate_zip(src, max_ratio=100_000).close()
  archives.validate_zip(src, max_ratio=2, ratio_min_bytes=4 << 20).close()
  with pytest.raises(errors.ArchiveError, match="bytes uncompressed"):
    archives.validate_zip(src, max_ratio=100_000, max_total_bytes=1 << 20)
  with pytest.raises(errors.ArchiveError, match="3 entries"):
    archives.validate_zip(src, max_ratio=100_000, max_entries=2)
  with pytest.raises(errors.ConfigError):
    archives.validate_zip(src, max_ratio=0)


def test_missing_archive(tmp_path):
  with pytest.raises(errors.ArchiveError, match="missing.zip: file not found"):
    archives.safe_extract(tmp_path / "missing.zip", tmp_path / "t")
  assert not (tmp_path / "t").exists()


def test_utf8_names_are_accepted(tmp_path):
  src = make_zip(tmp_path / "u.zip", [("Vorfahrt/Straße.txt", b"x")])
  archives.safe_extract(src, tmp_path / "t")
  assert (tmp_path / "t" / "Vorfahrt" / "Straße.txt").read_bytes() == b"x"


# --------------------------------------------------------------------------
# Corrupt member data.


def _corrupt_member(path, name):
  """Flips bytes in the middle of the compressed data of `name`."""
  with zipfile.ZipFile(path) as zf:
    info = zf.getinfo(name)
  with open(path, "r+b") as f:
    f.seek(info.header_offset + 26)
    name_len, extra_len = struct.unpack("<HH", f.read(4))
    start = info.header_offset + 30 + name_len + extra_len
    middle = start + info.compress_size // 2
    f.seek(middle)
    chunk = f.read(8)
    f.seek(middle)
    f.write(bytes(b ^ 0xFF for b in chunk))


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_corrupt_member_names_archive_and_member(tmp_path, compression):
  data = (b"traffic sign " * 500) + os.urandom(4000)
  src = make_zip(tmp_path / "src" / "c.zip",
                 [("ok.txt", b"fine"), ("Images/00001.ppm", data)],
                 compression=compression)
  _corrupt_member(src, "Images/00001.ppm")
  with archives.validate_zip(src) as zf:  # Metadata is intact.
    assert archives.read_member(zf, "ok.txt") == b"fine"
    with pytest.raises(errors.ArchiveError) as e:
      archives.read_member(zf, "Images/00001.ppm")
  assert src in str(e.value) and "Images/00001.ppm" in str(e.value)

  with pytest.raises(errors.ArchiveError, match="Images/00001.ppm"):
    archives.validate_zip(src, check_data=True)

  target = tmp_path / "out" / "t"
  with pytest.raises(errors.ArchiveError) as e:
    archives.safe_extract(src, target)
  assert src in str(e.value) and "Images/00001.ppm" in str(e.value)
  assert not target.exists()
  assert listing(tmp_path / "out") == []

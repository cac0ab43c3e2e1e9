"""Fuzz tests: CSV parsers, the image decoder and zip validation only return or raise DataError.

Any other exception type (IndexError, struct.error, ...) or a hang on hostile
input is a bug.
"""

import contextlib
import io
import signal
import zipfile

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
from PIL import Image
import pytest

from tf_gtsrb import errors
from tf_gtsrb.data import annotations
from tf_gtsrb.data import archives
from tf_gtsrb.data import images
from tf_gtsrb.data.class_names import NUM_CLASSES

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")  # Corrupt EXIF etc.

FUZZ = settings(max_examples=200, deadline=None)
TIME_LIMIT_S = 20


class Hang(Exception):
  """One input took longer than TIME_LIMIT_S."""


@contextlib.contextmanager
def time_limit(seconds=TIME_LIMIT_S):
  def on_alarm(signum, frame):
    raise Hang(f"no answer after {seconds} s")
  previous = signal.signal(signal.SIGALRM, on_alarm)
  signal.setitimer(signal.ITIMER_REAL, seconds)
  try:
    yield
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------
# CSV parsers.

OFFICIAL_ROWS = [
    ["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"],
    ["00000_00000.ppm", "29", "30", "5", "6", "24", "25", "0"],
    ["00000_00001.ppm", "30", "30", "5", "5", "25", "25", "0"],
    ["00001_00000.ppm", "40", "37", "4", "4", "35", "32", "42"],
]
KAGGLE_ROWS = [
    ["Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId", "Path"],
    ["27", "26", "5", "5", "22", "20", "20", "Train/20/00020_00000_00000.png"],
    ["53", "54", "6", "5", "48", "49", "16", "Test/00000.png"],
    ["33", "35", "5", "5", "28", "29", "1", "Train/1/00001_00000_00003.png"],
]
INTERESTING = st.sampled_from([
    "", " ", "-1", "43", "0", "1e3", "2.5", "0x10", "4_2", "\uff14", "\u0663", " 7 ",
    "9" * 40, "NaN", '"', '"a;b"', ";", ",", "\n", "\r", "\x00", "\ufeff", "\udcff",
])


@st.composite
def mutated_csv(draw, rows, delimiter):
  rows = [list(row) for row in rows]
  for _ in range(draw(st.integers(1, 5))):
    if not rows:
      break
    i = draw(st.integers(0, len(rows) - 1))
    action = draw(st.sampled_from(["replace", "truncate", "extend", "drop", "duplicate",
                                   "swap_delimiter"]))
    if action == "replace" and rows[i]:
      j = draw(st.integers(0, len(rows[i]) - 1))
      rows[i][j] = draw(st.one_of(st.text(max_size=12), INTERESTING))
    elif action == "truncate":
      rows[i] = rows[i][:draw(st.integers(0, len(rows[i])))]
    elif action == "extend":
      rows[i] += [draw(st.one_of(st.text(max_size=5), INTERESTING))] * draw(st.integers(1, 3))
    elif action == "drop":
      del rows[i]
    elif action == "duplicate":
      rows.insert(i, list(rows[i]))
    else:
      rows[i] = [";".join(rows[i]) if delimiter == "," else ",".join(rows[i])]
  newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
  text = newline.join(delimiter.join(row) for row in rows)
  if draw(st.booleans()):
    cut = draw(st.integers(0, len(text)))
    text = text[:cut]
  return text


def check_parse(parse, data):
  try:
    with time_limit():
      rows = parse(data)
  except errors.DataError as e:
    assert str(e).startswith("in.csv: ")
    return
  assert isinstance(rows, list)
  for row in rows:
    assert isinstance(row, annotations.Annotation)
    assert 0 <= row.class_id < NUM_CLASSES
    assert row.width > 0 and row.height > 0 and row.filename
    x1, y1, x2, y2 = row.roi
    assert 0 <= x1 <= x2 <= row.width and 0 <= y1 <= y2 <= row.height


def as_bytes_sometimes(text, encode):
  return text.encode("utf-8", "surrogatepass") if encode else text


PARSERS = {
    "official": lambda d: annotations.parse_official_csv(d, "in.csv"),
    "official_class": lambda d: annotations.parse_official_csv(d, "in.csv", class_id=3),
    "kaggle": lambda d: annotations.parse_kaggle_csv(d, "in.csv"),
}


@pytest.mark.parametrize("parser", PARSERS)
@FUZZ
@given(data=st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_csv_parsers_on_random_input(parser, data):
  check_parse(PARSERS[parser], data)


@FUZZ
@given(text=mutated_csv(OFFICIAL_ROWS, ";"), encode=st.booleans())
def test_official_csv_mutations(text, encode):
  check_parse(PARSERS["official"], as_bytes_sometimes(text, encode))
  check_parse(PARSERS["official_class"], as_bytes_sometimes(text, encode))


@FUZZ
@given(text=mutated_csv(KAGGLE_ROWS, ","), encode=st.booleans())
def test_kaggle_csv_mutations(text, encode):
  check_parse(PARSERS["kaggle"], as_bytes_sometimes(text, encode))


def test_valid_csvs_parse():
  assert len(annotations.parse_official_csv(
      "\n".join(";".join(r) for r in OFFICIAL_ROWS), "in.csv")) == 3
  assert len(annotations.parse_kaggle_csv(
      "\n".join(",".join(r) for r in KAGGLE_ROWS), "in.csv")) == 3


# --------------------------------------------------------------------------
# Image decoding.


def _encode(array, fmt):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, fmt)
  return buffer.getvalue()


_RNG = np.random.default_rng(0)
_RGB = _RNG.integers(0, 256, (13, 11, 3), dtype=np.uint8)
VALID_IMAGES = [
    _encode(_RGB, "PNG"),
    _encode(_RGB, "PPM"),
    _encode(_RGB, "JPEG"),
    _encode(_RGB, "BMP"),
    _encode(_RGB[..., 0], "PNG"),  # L
    _encode(_RGB[..., 0], "PPM"),  # PGM
    _encode(np.dstack([_RGB, _RGB[..., :1]]), "PNG"),  # RGBA
    _encode((_RGB[..., 0].astype(np.uint16) * 257), "PNG"),  # 16-bit grey
    _encode(_RGB, "GIF"),  # Palette
]
MAGIC = [b"P6\n", b"P5\n", b"P3\n", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"BM",
         b"GIF89a", b"II*\x00", b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"\x00\x00\x01\x00"]


def check_decode(data):
  try:
    with time_limit():
      image = images.decode_image(data, "in.img")
  except errors.DataError as e:
    assert str(e).startswith("in.img: ")
    return
  assert isinstance(image, np.ndarray) and image.dtype == np.uint8
  assert image.ndim == 3 and image.shape[2] == 3 and image.shape[0] > 0 and image.shape[1] > 0


@FUZZ
@given(data=st.one_of(st.binary(max_size=600),
                      st.builds(lambda m, b: m + b, st.sampled_from(MAGIC),
                                st.binary(max_size=600))))
def test_decode_random_bytes(data):
  check_decode(data)


@FUZZ
@given(index=st.integers(0, len(VALID_IMAGES) - 1), cut=st.floats(0.0, 1.0))
def test_decode_truncated_images(index, cut):
  data = VALID_IMAGES[index]
  check_decode(data[:int(len(data) * cut)])


@FUZZ
@given(index=st.integers(0, len(VALID_IMAGES) - 1),
       flips=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 7)),
                      min_size=1, max_size=8))
def test_decode_bit_flipped_images(index, flips):
  data = bytearray(VALID_IMAGES[index])
  for where, bit in flips:
    data[int(where * len(data))] ^= 1 << bit
  check_decode(bytes(data))


def test_valid_images_decode():
  for data in VALID_IMAGES:
    assert images.decode_image(data, "x").shape == (13, 11, 3)


# --------------------------------------------------------------------------
# Zip validation.


def _zip_bytes(compression):
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w", compression) as zf:
    zf.writestr("GTSRB/Final_Training/Images/00000/GT-00000.csv",
                "\n".join(";".join(r) for r in OFFICIAL_ROWS))
    zf.writestr("GTSRB/Final_Training/Images/00000/00000_00000.ppm", VALID_IMAGES[1])
    zf.writestr("GTSRB/readme.txt", b"hello " * 50)
  return buffer.getvalue()


VALID_ZIPS = [_zip_bytes(zipfile.ZIP_DEFLATED), _zip_bytes(zipfile.ZIP_STORED)]


@pytest.fixture(scope="module")
def zip_path(tmp_path_factory):
  return str(tmp_path_factory.mktemp("fuzz_zip") / "in.zip")


def check_zip(path, data):
  with open(path, "wb") as f:
    f.write(data)
  try:
    with time_limit():
      zf = archives.validate_zip(path)
      with zf:
        for name in zf.namelist():
          try:
            archives.read_member(zf, name, path)
          except errors.DataError as e:  # ArchiveError is a DataError.
            assert path in str(e)
  except errors.DataError as e:
    assert path in str(e)


@FUZZ
@given(data=st.one_of(st.binary(max_size=400),
                      st.builds(lambda b: b"PK\x03\x04" + b, st.binary(max_size=400))))
def test_validate_zip_random_bytes(zip_path, data):
  check_zip(zip_path, data)


@FUZZ
@given(index=st.integers(0, len(VALID_ZIPS) - 1),
       edits=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.binary(min_size=1,
                                                                                  max_size=4)),
                      min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.floats(0.0, 1.0)))
def test_validate_zip_mutated_archives(zip_path, index, edits, cut):
  data = bytearray(VALID_ZIPS[index])
  for where, patch in edits:
    start = int(where * len(data))
    data[start:start + len(patch)] = patch
  if cut is not None:
    data = data[:int(len(data) * cut)]
  check_zip(zip_path, bytes(data))


def test_valid_zips_validate(zip_path):
  for data in VALID_ZIPS:
    check_zip(zip_path, data)
    with archives.validate_zip(zip_path, check_data=True) as zf:
      assert len(zf.namelist()) == 3


def test_zip_needing_a_newer_zip_version_is_an_archive_error(zip_path):
  data = bytearray(VALID_ZIPS[1])
  central = data.index(b"PK\x01\x02")
  data[central + 6] = 64  # "Version needed to extract" of the first entry: 6.4.
  with open(zip_path, "wb") as f:
    f.write(data)
  with pytest.raises(errors.ArchiveError, match="in.zip"):
    archives.validate_zip(zip_path).close()

"""Parsers for GTSRB annotation CSVs: official `GT-*.csv` and Kaggle `Train.csv`/`Test.csv`.

Both parsers return `Annotation` records and raise `DataError` naming the file
and line for anything malformed: missing columns, non-integer fields, ROI
outside the image, class id out of range.
"""

import csv
import dataclasses
import io
import re

from tf_gtsrb import errors
from tf_gtsrb.data.class_names import NUM_CLASSES

OFFICIAL_COLUMNS = ("Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2")
KAGGLE_COLUMNS = ("Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId", "Path")
NO_TRACK = -1
_TRAIN_NAME = re.compile(r"^(\d{5})_(\d{5})\.(ppm|png|jpg|jpeg)$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Annotation:
  """One annotated image. `roi` is (x1, y1, x2, y2) in pixels, inclusive."""
  filename: str
  width: int
  height: int
  roi: tuple
  class_id: int
  track_id: int = NO_TRACK


def track_id_from_filename(filename):
  """Returns TTTTT of a training file `TTTTT_IIIII.ppm`, or NO_TRACK for other names."""
  match = _TRAIN_NAME.match(filename.rsplit("/", 1)[-1])
  return int(match.group(1)) if match else NO_TRACK


def parse_official_csv(data, source, class_id=None):
  """Parses an official `GT-*.csv` (semicolon separated).

  Args:
    data: the CSV as bytes or str.
    source: file name used in error messages.
    class_id: class of every row for per-class training CSVs that lack a
      ClassId column; None to read the ClassId column.

  Returns:
    A list of Annotation, track ids taken from training file names.
  """
  rows = _read_rows(data, source, delimiter=";")
  required = OFFICIAL_COLUMNS + (() if class_id is not None else ("ClassId",))
  header = _check_header(rows, required, source)
  annotations = []
  for line, row in rows[1:]:
    fields = _row_dict(header, row, line, source)
    label = class_id if class_id is not None and "ClassId" not in fields else None
    annotations.append(_make_annotation(
        fields, fields["Filename"], source, line, label))
  return annotations


def parse_kaggle_csv(data, source):
  """Parses the Kaggle copy's `Train.csv`/`Test.csv` (comma separated, `Path` column)."""
  rows = _read_rows(data, source, delimiter=",")
  header = _check_header(rows, KAGGLE_COLUMNS, source)
  return [
      _make_annotation(_row_dict(header, row, line, source),
                       _row_dict(header, row, line, source)["Path"], source, line)
      for line, row in rows[1:]
  ]


def _read_rows(data, source, delimiter):
  if isinstance(data, bytes):
    try:
      data = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
      raise errors.DataError(f"{source}: not a UTF-8 text file ({e.reason} at byte {e.start})")
  data = data.removeprefix("\ufeff")  # A byte-order mark read as text.
  if "\x00" in data:
    raise errors.DataError(f"{source}: contains NUL bytes; not a CSV file")
  try:
    rows = [(i, row) for i, row in enumerate(csv.reader(io.StringIO(data), delimiter=delimiter),
                                             start=1) if any(f.strip() for f in row)]
  except csv.Error as e:
    raise errors.DataError(f"{source}: malformed CSV: {e}") from e
  if not rows:
    raise errors.DataError(f"{source}: empty annotation file")
  return rows


def _check_header(rows, required, source):
  header = [h.strip() for h in rows[0][1]]
  missing = [c for c in required if c not in header]
  if missing:
    raise errors.DataError(
        f"{source}: line 1: header lacks column(s) {', '.join(missing)} (got {';'.join(header)})")
  return header


def _row_dict(header, row, line, source):
  if len(row) != len(header):
    raise errors.DataError(
        f"{source}: line {line}: expected {len(header)} fields, got {len(row)}")
  return {h: v.strip() for h, v in zip(header, row)}


def _make_annotation(fields, filename, source, line, class_id=None):
  where = f"{source}: line {line}"
  if not filename:
    raise errors.DataError(f"{where}: empty file name")
  ints = {}
  for name in ("Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2") + (
      ("ClassId",) if class_id is None else ()):
    try:
      ints[name] = int(fields[name])
    except ValueError:
      raise errors.DataError(
          f"{where}: {name} must be an integer, got {fields[name]!r}") from None
  label = ints.get("ClassId", class_id)
  if not 0 <= label < NUM_CLASSES:
    raise errors.DataError(f"{where}: ClassId {label} out of range [0, {NUM_CLASSES})")
  width, height = ints["Width"], ints["Height"]
  if width <= 0 or height <= 0:
    raise errors.DataError(f"{where}: image size {width}x{height} must be positive")
  roi = (ints["Roi.X1"], ints["Roi.Y1"], ints["Roi.X2"], ints["Roi.Y2"])
  # Inclusive corners: the top-left must be a pixel of the image; X2/Y2 may touch the edge.
  if not (0 <= roi[0] <= roi[2] <= width and 0 <= roi[1] <= roi[3] <= height
          and roi[0] < width and roi[1] < height):
    raise errors.DataError(f"{where}: ROI {roi} lies outside the {width}x{height} image")
  return Annotation(filename, width, height, roi, label, track_id_from_filename(filename))

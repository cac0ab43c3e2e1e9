"""Where GTSRB images come from: official archives, the Kaggle copy, or a plain folder.

Each reader returns `Record`s: an `Annotation` plus a function that loads the
image's bytes, so splits can be computed before any image is decoded. Layouts:

- official: `archive_dir/` holding GTSRB_Final_Training_Images.zip,
  GTSRB_Final_Test_Images.zip and GTSRB_Final_Test_GT.zip (read in place).
- kaggle: an extracted Kaggle copy with Train.csv, Test.csv, Train/, Test/.
- folder: `root/train/<class_id>/*.png|ppm|jpg` and optionally `root/test/<class_id>/...`.
"""

import dataclasses
import hashlib
import os
import re
from typing import Callable

from tf_gtsrb import errors
from tf_gtsrb.data import annotations
from tf_gtsrb.data import archives
from tf_gtsrb.data.class_names import NUM_CLASSES

SOURCES = ("official", "kaggle", "folder")
TRAIN_ARCHIVE = "GTSRB_Final_Training_Images.zip"
TEST_ARCHIVE = "GTSRB_Final_Test_Images.zip"
TEST_GT_ARCHIVE = "GTSRB_Final_Test_GT.zip"
_TRAIN_CSV = re.compile(r"^GTSRB/Final_Training/Images/(\d{5})/GT-(\d{5})\.csv$")
_IMAGE_SUFFIXES = (".ppm", ".png", ".jpg", ".jpeg", ".bmp")
_KAGGLE_NAME = re.compile(r"^(\d{5})_(\d{5})_(\d{5})\.png$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Record:
  """An annotated image whose bytes are loaded on demand; `source` names it in errors."""
  annotation: annotations.Annotation
  source: str
  load: Callable[[], bytes]


def read_records(source, path, split):
  """Returns the records of `split` ('train' or 'test') from `source` at `path`."""
  readers = {"official": official_records, "kaggle": kaggle_records, "folder": folder_records}
  if source not in readers:
    raise errors.ConfigError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
  if split not in ("train", "test"):
    raise errors.ConfigError(f"unknown split {split!r}; sources provide 'train' and 'test'")
  if not os.path.isdir(path):
    raise errors.DataError(f"{path}: {source} data directory not found")
  return readers[source](path, split)


def fingerprint(source, path):
  """A short content fingerprint of the data at `path`, for telling sources apart.

  official: SHA-256 of the three archives' contents. kaggle and folder: every
  file's relative name and size, and the full content of CSV files (hashing
  50,000 image files would cost more than the rebuild it guards).
  """
  digest = hashlib.sha256(source.encode())
  if source == "official":
    for name in (TRAIN_ARCHIVE, TEST_ARCHIVE, TEST_GT_ARCHIVE):
      archive = os.path.join(path, name)
      digest.update(f"{name}:{archives.sha256sum(archive) if os.path.isfile(archive) else '-'}\n"
                    .encode())
    return digest.hexdigest()[:16]
  for folder, subdirs, files in os.walk(path):
    subdirs.sort()
    for name in sorted(files):
      full = os.path.join(folder, name)
      digest.update(f"{os.path.relpath(full, path)}:{os.path.getsize(full)}\n".encode())
      if name.lower().endswith(".csv"):
        digest.update(_read_file(full))
  return digest.hexdigest()[:16]


def official_records(archive_dir, split):
  """Records from the official INI archives in `archive_dir`, read without extracting."""
  if split == "train":
    return _official_train(os.path.join(archive_dir, TRAIN_ARCHIVE))
  return _official_test(os.path.join(archive_dir, TEST_ARCHIVE),
                        os.path.join(archive_dir, TEST_GT_ARCHIVE))


def _open_archive(path):
  if not os.path.isfile(path):
    raise errors.DataError(f"{path}: archive not found")
  return archives.validate_zip(path)


def _official_train(path):
  zf = _open_archive(path)
  members = set(zf.namelist())
  csv_names = sorted(n for n in members if _TRAIN_CSV.match(n))
  if not csv_names:
    raise errors.DataError(f"{path}: no GTSRB/Final_Training/Images/000NN/GT-000NN.csv inside")
  records = []
  for csv_name in csv_names:
    folder_class = int(_TRAIN_CSV.match(csv_name).group(1))
    source = f"{path}:{csv_name}"
    if folder_class >= NUM_CLASSES:
      raise errors.DataError(f"{source}: class folder {folder_class} out of range [0, {NUM_CLASSES})")
    rows = annotations.parse_official_csv(
        archives.read_member(zf, csv_name, path), source, class_id=folder_class)
    folder = csv_name.rsplit("/", 1)[0]
    for row in rows:
      if row.class_id != folder_class:
        raise errors.DataError(
            f"{source}: {row.filename} has ClassId {row.class_id} inside class folder "
            f"{folder_class:05d}")
      records.append(_zip_record(zf, path, f"{folder}/{row.filename}", row, members))
  return records


def _official_test(images_path, gt_path):
  gt_zip = _open_archive(gt_path)
  csv_names = [n for n in gt_zip.namelist() if n.endswith("GT-final_test.csv")]
  if not csv_names:
    raise errors.DataError(f"{gt_path}: GT-final_test.csv not found inside")
  source = f"{gt_path}:{csv_names[0]}"
  rows = annotations.parse_official_csv(archives.read_member(gt_zip, csv_names[0], gt_path), source)
  zf = _open_archive(images_path)
  members = set(zf.namelist())
  return [_zip_record(zf, images_path, f"GTSRB/Final_Test/Images/{row.filename}", row, members)
          for row in rows]


def _zip_record(zf, archive_path, member, row, members):
  source = f"{archive_path}:{member}"

  def load():
    if member not in members:
      raise errors.DataError(f"{source}: listed in the annotations but absent from the archive")
    return archives.read_member(zf, member, archive_path)

  return Record(row, source, load)


def kaggle_records(root, split):
  """Records from an extracted Kaggle copy (`Train.csv`/`Test.csv` with a `Path` column)."""
  csv_path = os.path.join(root, "Train.csv" if split == "train" else "Test.csv")
  rows = annotations.parse_kaggle_csv(_read_file(csv_path), csv_path)
  records = []
  for row in rows:
    match = _KAGGLE_NAME.match(os.path.basename(row.filename))
    if match:  # Kaggle names are CCCCC_TTTTT_IIIII.png: class, track, frame.
      if int(match.group(1)) != row.class_id:
        raise errors.DataError(
            f"{csv_path}: {row.filename} has ClassId {row.class_id} but its name says class "
            f"{int(match.group(1))}")
      row = dataclasses.replace(row, track_id=int(match.group(2)))
    records.append(_file_record(root, row.filename, row))
  return records


def folder_records(root, split):
  """Records from `root/<split>/<class_id>/*` (class folders named 0..42 or 00000..00042)."""
  split_dir = os.path.join(root, split)
  if not os.path.isdir(split_dir):
    if split == "test":
      return []
    raise errors.DataError(f"{split_dir}: folder source needs a '{split}' directory of class folders")
  records = []
  for class_dir in sorted(os.listdir(split_dir)):
    full = os.path.join(split_dir, class_dir)
    if not os.path.isdir(full):
      continue
    numeric = class_dir.isascii() and class_dir.isdigit()
    if not numeric or not 0 <= int(class_dir) < NUM_CLASSES:
      raise errors.DataError(
          f"{full}: class folder names must be class ids 0..{NUM_CLASSES - 1}, got {class_dir!r}")
    for name in sorted(os.listdir(full)):
      if name.lower().endswith(_IMAGE_SUFFIXES):
        row = annotations.Annotation(f"{split}/{class_dir}/{name}", 0, 0, None, int(class_dir),
                                     annotations.track_id_from_filename(name))
        records.append(_file_record(root, row.filename, row))
  if not records:
    raise errors.DataError(f"{split_dir}: no images found in its class folders")
  return records


def _file_record(root, relative, row):
  path = os.path.normpath(os.path.join(root, relative))
  if not path.startswith(os.path.abspath(root) + os.sep) and not path.startswith(root + os.sep):
    raise errors.DataError(f"{root}: annotation path {relative!r} points outside the dataset")
  return Record(row, path, lambda: _read_file(path))


def _read_file(path):
  try:
    with open(path, "rb") as f:
      return f.read()
  except FileNotFoundError:
    raise errors.DataError(f"{path}: file not found") from None
  except OSError as e:
    raise errors.DataError(f"{path}: cannot read: {e.strerror}") from e

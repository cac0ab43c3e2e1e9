"""Tests of tf_gtsrb.data.sources: official zips, the Kaggle copy and class folders.

Every layout is written in tmp_path (see layouts.py); building datasets from
them is tested in test_gtsrb_builder.py.
"""

import collections
import os
import re
import zipfile

import pytest

from tf_gtsrb import errors
from tf_gtsrb.data import images
from tf_gtsrb.data import sources
import layouts


def decoded_size(record):
  image = images.decode_image(record.load(), record.source)
  return image.shape[1], image.shape[0]


# --------------------------------------------------------------------------
# Official archives.


def test_official_train_records(tmp_path):
  root = layouts.OfficialLayout(classes=(0, 4, 42), tracks=2, frames=3).write(tmp_path)
  records = sources.read_records("official", root, "train")
  assert len(records) == 18
  assert collections.Counter(r.annotation.class_id for r in records) == {0: 6, 4: 6, 42: 6}
  assert {(r.annotation.class_id, r.annotation.track_id) for r in records} == {
      (c, t) for c in (0, 4, 42) for t in (0, 1)}
  for record in records:
    row = record.annotation
    assert record.source.startswith(os.path.join(root, sources.TRAIN_ARCHIVE) + ":GTSRB/")
    assert record.source.endswith(f"{row.class_id:05d}/{row.filename}")
    assert decoded_size(record) == (row.width, row.height)
  assert {(r.annotation.width, r.annotation.height) for r in records} >= {(40, 37), (15, 15)}


def test_official_test_records(tmp_path):
  root = layouts.OfficialLayout(classes=(1, 2), test_per_class=3).write(tmp_path)
  records = sources.read_records("official", root, "test")
  assert [r.annotation.filename for r in records] == [f"{i:05d}.ppm" for i in range(6)]
  assert [r.annotation.class_id for r in records] == [1, 2] * 3
  assert {r.annotation.track_id for r in records} == {-1}
  for record in records:
    assert decoded_size(record) == (record.annotation.width, record.annotation.height)


def test_official_csv_without_class_column(tmp_path):
  layout = layouts.OfficialLayout(classes=(5,))
  rows = layout.train_rows[5]
  layout.train_rows[5] = [row[:-1] for row in rows]
  layout.train_header = layout.test_header = layouts.OFFICIAL_HEADER[:-1]
  layout.test_rows = [row[:-1] for row in layout.test_rows]
  root = layout.write(tmp_path)
  # Training CSVs may lack ClassId (the folder gives it); the test GT CSV may not.
  assert {r.annotation.class_id for r in sources.read_records("official", root, "train")} == {5}
  with pytest.raises(errors.DataError, match=r"GT-final_test.csv: line 1: .*ClassId"):
    sources.read_records("official", root, "test")


def test_official_missing_image_fails_on_load_only(tmp_path):
  layout = layouts.OfficialLayout(classes=(1,))
  del layout.train_images[layout.train_member(1, "00000_00001.ppm")]
  root = layout.write(tmp_path)
  records = sources.read_records("official", root, "train")
  assert len(records) == 6
  missing = [r for r in records if r.annotation.filename == "00000_00001.ppm"][0]
  with pytest.raises(errors.DataError, match="00000_00001.ppm: listed in the annotations"):
    missing.load()


def test_official_missing_archive(tmp_path):
  root = layouts.OfficialLayout().write(tmp_path)
  os.remove(os.path.join(root, sources.TEST_GT_ARCHIVE))
  assert sources.read_records("official", root, "train")
  with pytest.raises(errors.DataError, match=f"{sources.TEST_GT_ARCHIVE}: archive not found"):
    sources.read_records("official", root, "test")


def test_official_zip_without_training_csvs(tmp_path):
  layouts.write_zip(tmp_path / sources.TRAIN_ARCHIVE, {"readme.txt": b"hello"})
  with pytest.raises(errors.DataError, match="no GTSRB/Final_Training/Images"):
    sources.read_records("official", str(tmp_path), "train")


def test_official_not_a_zip(tmp_path):
  (tmp_path / sources.TRAIN_ARCHIVE).write_bytes(b"this is not a zip file" * 10)
  with pytest.raises(errors.ArchiveError, match=sources.TRAIN_ARCHIVE):
    sources.read_records("official", str(tmp_path), "train")


def test_official_corrupt_member_fails_on_load_only(tmp_path):
  layout = layouts.OfficialLayout(classes=(3,))
  root = layout.write(tmp_path)
  path = os.path.join(root, sources.TRAIN_ARCHIVE)
  member = layout.train_member(3, "00001_00001.ppm")
  with zipfile.ZipFile(path) as zf:
    info = zf.getinfo(member)
  with open(path, "r+b") as f:  # Overwrite the compressed data of one member.
    f.seek(info.header_offset + 30 + len(member.encode()) + 2)
    f.write(b"\x00\xff" * 8)
  records = {r.annotation.filename: r for r in sources.read_records("official", root, "train")}
  with pytest.raises(errors.DataError, match="00001_00001.ppm"):
    records["00001_00001.ppm"].load()
  assert records["00000_00000.ppm"].load()


# --------------------------------------------------------------------------
# Kaggle copy.


def test_kaggle_records(tmp_path):
  root = layouts.KaggleLayout(classes=(0, 7), tracks=3, frames=2).write(tmp_path)
  train = sources.read_records("kaggle", root, "train")
  assert len(train) == 12
  assert {(r.annotation.class_id, r.annotation.track_id) for r in train} == {
      (c, t) for c in (0, 7) for t in range(3)}
  for record in train:
    assert record.source == os.path.join(root, record.annotation.filename)
    assert decoded_size(record) == (record.annotation.width, record.annotation.height)
  test = sources.read_records("kaggle", root, "test")
  assert [r.annotation.filename for r in test] == [f"Test/{i:05d}.png" for i in range(4)]
  assert {r.annotation.track_id for r in test} == {-1}
  assert [r.annotation.class_id for r in test] == [0, 7, 0, 7]


def test_kaggle_missing_csv_and_missing_image(tmp_path):
  layout = layouts.KaggleLayout(classes=(3,))
  root = layout.write(tmp_path)
  os.remove(os.path.join(root, "Train/3/00003_00001_00002.png"))
  records = {r.annotation.filename: r for r in sources.read_records("kaggle", root, "train")}
  with pytest.raises(errors.DataError, match="00003_00001_00002.png: file not found"):
    records["Train/3/00003_00001_00002.png"].load()
  os.remove(os.path.join(root, "Test.csv"))
  with pytest.raises(errors.DataError, match="Test.csv: file not found"):
    sources.read_records("kaggle", root, "test")


# --------------------------------------------------------------------------
# Bad training annotations, either layout.

# id -> (source, classes, keys to the edited value in `layout.train_rows`, new value,
#        regex the error must match).
BAD_TRAIN_ROWS = {
    "official_class_mismatching_its_folder": (
        "official", (1, 2), (1, 2, -1), 2,
        r"GT-00001.csv: 00000_00002.ppm has ClassId 2 inside class folder 00001"),
    "official_class_43_names_archive_member_and_line": (
        "official", (1,), (1, 1, -1), 43,
        re.escape(f"{sources.TRAIN_ARCHIVE}:GTSRB/Final_Training/Images/00001/GT-00001.csv: "
                  "line 3")),
    "official_class_folder_out_of_range": (
        "official", (1,), (43,), [], "class folder 43 out of range"),
    "kaggle_class_mismatching_its_name": (
        "kaggle", (3,), (1, -2), 4, r"Train.csv: Train/3/00003_00000_00001.png has ClassId 4"),
    "kaggle_path_outside_the_copy": (
        "kaggle", (3,), (0, -1), "../elsewhere/00003_00000_00000.png", "points outside"),
}
LAYOUTS = {"official": layouts.OfficialLayout, "kaggle": layouts.KaggleLayout}


@pytest.mark.parametrize("source, classes, keys, value, pattern", BAD_TRAIN_ROWS.values(),
                         ids=BAD_TRAIN_ROWS.keys())
def test_bad_training_annotation(tmp_path, source, classes, keys, value, pattern):
  layout = LAYOUTS[source](classes=classes)
  *path, last = keys
  edited = layout.train_rows
  for key in path:
    edited = edited[key]
  edited[last] = value
  root = layout.write(tmp_path / "copy")
  with pytest.raises(errors.DataError, match=pattern):
    sources.read_records(source, root, "train")


# --------------------------------------------------------------------------
# Class folders.


@pytest.mark.parametrize("zero_pad", [False, True])
def test_folder_records(tmp_path, zero_pad):
  root = layouts.write_folder(tmp_path, {0: 2, 12: 3, 42: 1}, {12: 2}, zero_pad=zero_pad)
  (tmp_path / "train" / ("00012" if zero_pad else "12") / "notes.txt").write_text("skip me")
  (tmp_path / "train" / "README").write_text("a file beside the class folders is ignored")
  train = sources.read_records("folder", root, "train")
  assert collections.Counter(r.annotation.class_id for r in train) == {0: 2, 12: 3, 42: 1}
  assert {r.annotation.track_id for r in train} == {-1}
  assert all(decoded_size(r) for r in train)
  test = sources.read_records("folder", root, "test")
  assert [r.annotation.class_id for r in test] == [12, 12]


def test_folder_without_test_directory(tmp_path):
  root = layouts.write_folder(tmp_path, {5: 2})
  assert sources.read_records("folder", root, "test") == []


def test_folder_track_ids_from_official_style_names(tmp_path):
  folder = tmp_path / "train" / "9"
  folder.mkdir(parents=True)
  for name in ("00004_00000.ppm", "00004_00001.ppm", "00007_00000.ppm"):
    (folder / name).write_bytes(layouts.sign_image(20, 20, 9))
  records = sources.read_records("folder", str(tmp_path), "train")
  assert sorted(r.annotation.track_id for r in records) == [4, 4, 7]


@pytest.mark.parametrize("name", ["stop", "43", "-1", "1.5", "\u0663"])
def test_folder_with_bad_class_name(tmp_path, name):
  root = layouts.write_folder(tmp_path, {1: 2})
  (tmp_path / "train" / name).mkdir()
  with pytest.raises(errors.DataError, match="class folder names must be class ids"):
    sources.read_records("folder", root, "train")


def test_folder_without_train_or_without_images(tmp_path):
  with pytest.raises(errors.DataError, match="needs a 'train' directory"):
    sources.read_records("folder", str(tmp_path), "train")
  (tmp_path / "train" / "3").mkdir(parents=True)
  with pytest.raises(errors.DataError, match="no images found"):
    sources.read_records("folder", str(tmp_path), "train")


# --------------------------------------------------------------------------
# Arguments.


def test_bad_arguments(tmp_path):
  with pytest.raises(errors.ConfigError, match="unknown source"):
    sources.read_records("imagenet", str(tmp_path), "train")
  with pytest.raises(errors.ConfigError, match="unknown split"):
    sources.read_records("folder", str(tmp_path), "validation")
  with pytest.raises(errors.DataError, match="data directory not found"):
    sources.read_records("kaggle", str(tmp_path / "absent"), "train")

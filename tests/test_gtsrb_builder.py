"""Tests of the GTSRB TFDS builder through prepare.prepare_dataset, on tiny layouts in tmp_path."""

import collections
import glob
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tf_gtsrb import errors
from tf_gtsrb.data import input_pipeline
from tf_gtsrb.data import prepare
from tf_gtsrb.data.class_names import NUM_CLASSES
import layouts


def examples(dataset_dir, split):
  """All examples of `split` as a list of numpy dicts."""
  return list(tfds.as_numpy(input_pipeline.load_split(dataset_dir, split)))


def label_counts(dataset_dir, split):
  return collections.Counter(int(ex["label"]) for ex in examples(dataset_dir, split))


def build(tmp_path, source, root, **kwargs):
  kwargs = {"image_size": 32, "balance_target": 0, **kwargs}
  return prepare.prepare_dataset(str(tmp_path / "out"), source=source, source_dir=root, **kwargs)


# --------------------------------------------------------------------------
# The bundled sample (tiny_data_dir fixture).


def test_sample_dataset_sizes(tiny_data_dir):
  assert (input_pipeline.split_size(tiny_data_dir, "train") +
          input_pipeline.split_size(tiny_data_dir, "validation")) == 645
  assert input_pipeline.split_size(tiny_data_dir, "test") == 430
  assert input_pipeline.image_size(tiny_data_dir) == 32


def test_sample_dataset_contents(tiny_data_dir):
  tracks = {}
  for split in ("train", "validation"):
    rows = examples(tiny_data_dir, split)
    for ex in rows[:20]:
      assert ex["image"].shape == (32, 32, 3) and ex["image"].dtype == np.uint8
    assert all(0 <= ex["label"] < NUM_CLASSES for ex in rows)
    assert all(ex["track_id"] >= 0 and not ex["augmented"] for ex in rows)
    tracks[split] = {(int(ex["label"]), int(ex["track_id"])) for ex in rows}
  assert not tracks["train"] & tracks["validation"]  # Whole tracks on one side.
  assert len({label for label, _ in tracks["validation"]}) == NUM_CLASSES
  images, labels = input_pipeline.load_arrays(tiny_data_dir, "test")
  assert images.shape == (430, 32, 32, 3) and images.dtype == np.uint8
  assert labels.dtype == np.int64 and set(labels) == set(range(NUM_CLASSES))


# --------------------------------------------------------------------------
# Other layouts.


def test_kaggle_layout_builds(tmp_path):
  root = layouts.KaggleLayout(classes=(0, 1, 2), tracks=4, frames=3).write(tmp_path / "kaggle")
  summary = build(tmp_path, "kaggle", root)
  assert summary["skipped"] == []
  assert summary["splits"]["train"] + summary["splits"]["validation"] == 36
  assert summary["splits"]["test"] == 6
  assert summary["config"].startswith("kaggle-32px-track0")
  train = examples(summary["dataset_dir"], "train")
  assert {int(ex["track_id"]) for ex in train} <= {0, 1, 2, 3}
  assert all(ex["image"].shape == (32, 32, 3) for ex in train)
  assert label_counts(summary["dataset_dir"], "test") == {0: 2, 1: 2, 2: 2}
  again = build(tmp_path, "kaggle", root)  # A complete dataset is reused.
  assert again["dataset_dir"] == summary["dataset_dir"] and again["splits"] == summary["splits"]
  assert "| test | 6 |" in prepare.summary_table(summary)


def test_folder_layout_builds(tmp_path):
  root = layouts.write_folder(tmp_path / "folder", {0: 5, 1: 6, 7: 4}, {0: 2, 7: 1})
  summary = build(tmp_path, "folder", root, image_size=24)
  assert summary["splits"]["train"] + summary["splits"]["validation"] == 15
  assert summary["splits"]["test"] == 3
  assert input_pipeline.image_size(summary["dataset_dir"]) == 24
  ex = examples(summary["dataset_dir"], "test")[0]
  assert ex["image"].shape == (24, 24, 3)
  np.testing.assert_allclose(ex["roi"], [0.0, 0.0, 1.0, 1.0])  # No ROI known: whole image.


def test_folder_layout_without_test_has_no_test_split(tmp_path):
  root = layouts.write_folder(tmp_path / "folder", {3: 4})
  summary = build(tmp_path, "folder", root)
  assert set(summary["splits"]) == {"train", "validation"}


def test_val_fraction_zero_trains_on_every_track(tmp_path):
  root = layouts.OfficialLayout(classes=(2, 30), tracks=3, frames=2).write(tmp_path / "official")
  summary = build(tmp_path, "official", root, val_fraction=0.0, balance_target=8)
  assert "-val0-" in summary["config"]
  assert set(summary["splits"]) == {"train", "test"}
  assert not input_pipeline.has_split(summary["dataset_dir"], "validation")
  train = examples(summary["dataset_dir"], "train")
  originals = {(int(ex["label"]), int(ex["track_id"])) for ex in train if not ex["augmented"]}
  assert len(originals) == 6  # Every track of both classes.
  assert label_counts(summary["dataset_dir"], "train") == {2: 8, 30: 8}
  with pytest.raises(errors.DataError, match="no split 'validation'"):
    input_pipeline.load_split(summary["dataset_dir"], "validation")


def test_roi_crop(tmp_path):
  root = layouts.OfficialLayout(classes=(2, 30), tracks=2, frames=3).write(tmp_path / "official")
  cropped = build(tmp_path, "official", root, roi_crop=True)
  whole = build(tmp_path, "official", root)
  assert cropped["dataset_dir"] != whole["dataset_dir"]
  for ex in examples(cropped["dataset_dir"], "train") + examples(cropped["dataset_dir"], "test"):
    colour = layouts.sign_colour(int(ex["label"]))
    assert np.abs(ex["image"].astype(int) - colour).max() <= 1  # Only the sign is left.
    ymin, xmin, ymax, xmax = ex["roi"]
    assert 0 < xmin < xmax < 1 and 0 < ymin < ymax < 1
  for ex in examples(whole["dataset_dir"], "train"):
    assert tuple(ex["image"][-1, -1]) == layouts.MARGIN  # The margin is still there.


def test_balancing_to_a_small_target(tmp_path):
  root = layouts.write_folder(tmp_path / "folder", {0: 4, 1: 14, 2: 8})
  summary = build(tmp_path, "folder", root, balance_target=10)
  # Every image is its own track: round(0.15 * n) images per class go to validation.
  assert summary["class_counts"]["before"] == {0: 3, 1: 12, 2: 7}
  assert summary["class_counts"]["after"] == {0: 10, 1: 12, 2: 10}
  train = examples(summary["dataset_dir"], "train")
  assert collections.Counter(int(ex["label"]) for ex in train) == {0: 10, 1: 12, 2: 10}
  augmented = [ex for ex in train if ex["augmented"]]
  assert collections.Counter(int(ex["label"]) for ex in augmented) == {0: 7, 2: 3}
  assert not any(ex["augmented"] for ex in examples(summary["dataset_dir"], "validation"))


def first_augmented(dataset_dir):
  train = examples(dataset_dir, "train")
  return min((ex for ex in train if ex["augmented"]), key=lambda ex: ex["filename"])


def test_balancing_is_deterministic_by_seed(tmp_path):
  root = layouts.write_folder(tmp_path / "folder", {0: 3, 1: 4})
  one = build(tmp_path / "a", "folder", root, balance_target=6, balance_seed=5)
  two = build(tmp_path / "b", "folder", root, balance_target=6, balance_seed=5)
  other = build(tmp_path / "a", "folder", root, balance_target=6, balance_seed=6)
  assert other["dataset_dir"] != one["dataset_dir"]  # A new seed is a new dataset, not a reuse.
  first = first_augmented(one["dataset_dir"])
  assert first["filename"] == first_augmented(two["dataset_dir"])["filename"]
  assert first["image"].tobytes() == first_augmented(two["dataset_dir"])["image"].tobytes()
  assert first["image"].tobytes() != first_augmented(other["dataset_dir"])["image"].tobytes()


def test_frame_split_makes_a_frame_test_split(tmp_path):
  root = layouts.OfficialLayout(classes=(0, 1, 2), tracks=4, frames=5).write(tmp_path / "off")
  summary = build(tmp_path, "official", root, split_mode="frame")
  assert summary["splits"] == {"train": 42, "validation": 9, "frame_test": 9, "test": 6}
  names = {split: {(ex["label"], ex["filename"]) for ex in examples(summary["dataset_dir"], split)}
           for split in ("train", "validation", "frame_test")}
  assert len(names["train"] | names["validation"] | names["frame_test"]) == 60


# --------------------------------------------------------------------------
# Bad data.


def test_bad_images_are_counted_skips(tmp_path):
  layout = layouts.OfficialLayout(classes=(1, 2), tracks=2, frames=3)
  del layout.train_images[layout.train_member(1, "00000_00001.ppm")]  # Listed, absent.
  layout.train_images[layout.train_member(2, "00001_00002.ppm")] = b"P6\n40 37\n255\n\x00\x01"
  layout.train_rows[2][0][1] += 1  # The CSV says one pixel wider than the image is.
  layout.test_images["GTSRB/Final_Test/Images/00003.ppm"] = b"garbage"
  root = layout.write(tmp_path / "official")
  with pytest.raises(errors.DataError, match=r"more than 1% of its \d+ listed images are unread"):
    build(tmp_path, "official", root)  # 4 of 15 is a damaged archive, not the odd bad file.
  summary = build(tmp_path, "official", root, max_skipped_fraction=0.5)
  skipped = "\n".join(summary["skipped"])
  assert len(summary["skipped"]) == 4
  assert "00001/00000_00001.ppm: listed in the annotations but absent" in skipped
  assert "00002/00001_00002.ppm: cannot decode image" in skipped
  assert "00002/00000_00000.ppm: image is" in skipped
  assert "Final_Test/Images/00003.ppm" in skipped
  assert summary["splits"]["train"] + summary["splits"]["validation"] == 12 - 3
  assert summary["splits"]["test"] == 3
  assert "| skipped (bad images) | 4 |" in prepare.summary_table(summary)


@pytest.mark.parametrize("where", ["train", "test"])
def test_class_43_fails_and_leaves_no_dataset(tmp_path, where):
  layout = layouts.OfficialLayout(classes=(1, 2))
  if where == "train":
    layout.train_rows[2][3][-1] = 43
  else:
    layout.test_rows[1][-1] = 43
  root = layout.write(tmp_path / "official")
  output_dir = tmp_path / "out"
  with pytest.raises(errors.DataError, match="line [35]: ClassId 43 out of range"):
    build(tmp_path, "official", root)
  assert not glob.glob(str(output_dir / "**" / "dataset_info.json"), recursive=True)
  assert not glob.glob(str(output_dir / "**" / "*.tfrecord*"), recursive=True)
  assert not glob.glob(str(output_dir / "gtsrb" / "*" / "*"))  # No version, no temp directory.
  with pytest.raises(errors.DataError, match="no prepared dataset"):
    input_pipeline.find_dataset_dir(str(output_dir))


def test_bad_arguments_fail_before_any_work(tmp_path):
  with pytest.raises(errors.ConfigError):
    prepare.prepare_dataset(str(tmp_path / "out"), source="folder", source_dir=str(tmp_path),
                            split_mode="frame", val_fraction=0.6)
  with pytest.raises(errors.DataError, match="data directory not found"):
    prepare.prepare_dataset(str(tmp_path / "out"), source="folder",
                            source_dir=str(tmp_path / "absent"))
  assert not os.path.exists(tmp_path / "out")


# --------------------------------------------------------------------------
# A dataset is keyed by its source.


def test_a_dataset_from_other_data_is_refused_then_rebuilt_on_request(tmp_path):
  first = layouts.OfficialLayout(classes=(1, 2)).write(tmp_path / "first")
  other = layouts.OfficialLayout(classes=(1, 2, 5)).write(tmp_path / "other")
  built = build(tmp_path, "official", first)
  os.rename(first, tmp_path / "moved")  # The same data at another path is still the same.
  assert build(tmp_path, "official", str(tmp_path / "moved"))["splits"] == built["splits"]
  with pytest.raises(errors.DataError) as e:
    build(tmp_path, "official", other)
  assert f"{built['dataset_dir']}: built from {first} (fingerprint " in str(e.value)
  assert "pass --rebuild" in str(e.value)
  assert label_counts(built["dataset_dir"], "test") == {1: 2, 2: 2}  # Untouched.
  rebuilt = build(tmp_path, "official", other, rebuild=True)
  assert rebuilt["dataset_dir"] == built["dataset_dir"]
  assert rebuilt["source_fingerprint"] != built["source_fingerprint"]
  assert label_counts(rebuilt["dataset_dir"], "test") == {1: 2, 2: 2, 5: 2}
  assert os.listdir(os.path.dirname(built["dataset_dir"])) == ["1.0.0"]  # Old one gone.


def test_a_failed_rebuild_keeps_the_previous_dataset(tmp_path):
  first = layouts.OfficialLayout(classes=(1, 2)).write(tmp_path / "first")
  broken = layouts.OfficialLayout(classes=(1, 2))
  broken.test_rows[1][-1] = 43
  built = build(tmp_path, "official", first)
  with pytest.raises(errors.DataError, match="ClassId 43 out of range"):
    build(tmp_path, "official", broken.write(tmp_path / "broken"), rebuild=True)
  assert os.listdir(os.path.dirname(built["dataset_dir"])) == ["1.0.0"]
  assert label_counts(built["dataset_dir"], "test") == {1: 2, 2: 2}
  assert build(tmp_path, "official", first)["splits"] == built["splits"]  # Still reusable.


def test_a_dataset_without_a_recorded_source_is_not_reused(tmp_path):
  root = layouts.write_folder(tmp_path / "folder", {0: 4, 1: 4})
  built = build(tmp_path, "folder", root)
  os.remove(os.path.join(built["dataset_dir"], prepare.SOURCE_FILE))  # As older versions left it.
  with pytest.raises(errors.DataError, match="built from an unrecorded source"):
    build(tmp_path, "folder", root)
  (tmp_path / "folder" / "train" / "1" / "extra.png").write_bytes(
      (tmp_path / "folder" / "train" / "1" / os.listdir(tmp_path / "folder" / "train" / "1")[0])
      .read_bytes())
  with pytest.raises(errors.DataError, match="built from"):
    build(tmp_path, "folder", root)  # A folder source is fingerprinted by names and sizes.


def test_an_empty_or_misrooted_test_archive_is_refused_in_one_error(tmp_path):
  layout = layouts.OfficialLayout(classes=(1, 2))
  layout.test_images = {f"Other/Root/{name.rsplit('/', 1)[1]}": data
                        for name, data in layout.test_images.items()}
  root = layout.write(tmp_path / "official")
  with pytest.raises(errors.DataError) as e:
    build(tmp_path, "official", root)
  assert "GTSRB_Final_Test_Images.zip:GTSRB/Final_Test/Images/00000.ppm: split test: more " \
         "than 1% of its 4 listed images are unreadable" in str(e.value)
  assert not glob.glob(str(tmp_path / "out" / "**" / "dataset_info.json"), recursive=True)


def test_duplicate_rows_are_refused_and_missing_classes_reported(tmp_path):
  layout = layouts.OfficialLayout(classes=(1, 2))
  layout.test_rows.append(list(layout.test_rows[0]))
  with pytest.raises(errors.DataError, match=r"00000.ppm: listed twice in the annotations "
                                             r"\(1 duplicate rows in all\)"):
    build(tmp_path, "official", layout.write(tmp_path / "dup"))
  summary = build(tmp_path, "official",
                  layouts.OfficialLayout(classes=(1, 2)).write(tmp_path / "two"))
  assert summary["missing_classes"]["test"] == [c for c in range(NUM_CLASSES) if c not in (1, 2)]
  assert "| test: classes with no image | 41 (0, 3, 4," in prepare.summary_table(summary)


def test_a_full_disk_is_one_error_and_keeps_the_previous_dataset(tmp_path, monkeypatch):
  import errno  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.data import images as image_lib  # pylint: disable=g-import-not-at-top
  first = layouts.OfficialLayout(classes=(1, 2)).write(tmp_path / "first")
  other = layouts.OfficialLayout(classes=(1, 2, 5)).write(tmp_path / "other")
  built = build(tmp_path, "official", first)

  def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(image_lib, "crop_and_resize", full_disk)
  with pytest.raises(errors.GtsrbError, match=r"out: cannot write the dataset: No space left"):
    build(tmp_path, "official", other, rebuild=True)
  assert os.listdir(os.path.dirname(built["dataset_dir"])) == ["1.0.0"]
  assert label_counts(built["dataset_dir"], "test") == {1: 2, 2: 2}

"""Tests of tf_gtsrb.data.splits: track-wise and frame-wise train/validation splits."""

import collections

import pytest

from tf_gtsrb import errors
from tf_gtsrb.data import gtsrb
from tf_gtsrb.data import splits
from tf_gtsrb.data.annotations import Annotation
from tf_gtsrb.data.annotations import NO_TRACK

TRACKS_PER_CLASS = {0: 20, 1: 7, 2: 2, 3: 1, 4: 40}


def make_rows(tracks_per_class=TRACKS_PER_CLASS, frames=5, untracked=0):
  rows = []
  for class_id, tracks in tracks_per_class.items():
    for track in range(tracks):
      for frame in range(frames):
        rows.append(Annotation(f"{track:05d}_{frame:05d}.ppm", 30, 30, (2, 2, 27, 27),
                               class_id, track))
  rows += [Annotation(f"{i:05d}.ppm", 30, 30, (2, 2, 27, 27), 0, NO_TRACK)
           for i in range(untracked)]
  return rows


def side_of_tracks(rows, indices):
  return {(rows[i].class_id, rows[i].track_id) for i in indices}


def test_track_split_keeps_tracks_whole_and_partitions():
  rows = make_rows()
  train, val = splits.split_by_track(rows, 0.15, seed=0)
  assert sorted(train + val) == list(range(len(rows)))
  assert not side_of_tracks(rows, train) & side_of_tracks(rows, val)
  assert train == sorted(train) and val == sorted(val)


@pytest.mark.parametrize("fraction", [0.1, 0.15, 0.3])
def test_track_split_takes_the_fraction_of_tracks_of_every_class(fraction):
  rows = make_rows()
  _, val = splits.split_by_track(rows, fraction, seed=3)
  val_tracks = collections.Counter(c for c, _ in side_of_tracks(rows, val))
  for class_id, tracks in TRACKS_PER_CLASS.items():
    if tracks == 1:
      expected = 0  # A single track stays in training.
    else:
      expected = min(max(int(round(fraction * tracks)), 1), tracks - 1)
    assert val_tracks[class_id] == expected, class_id


def test_track_split_is_deterministic_by_seed():
  rows = make_rows()
  assert splits.split_by_track(rows, 0.15, seed=7) == splits.split_by_track(rows, 0.15, seed=7)
  different = {tuple(splits.split_by_track(rows, 0.15, seed=s)[1]) for s in range(5)}
  assert len(different) == 5


def test_track_split_does_not_depend_on_row_order():
  rows = make_rows()
  reordered = rows[::-1]
  _, val = splits.split_by_track(rows, 0.15, seed=1)
  _, val_reordered = splits.split_by_track(reordered, 0.15, seed=1)
  assert side_of_tracks(rows, val) == side_of_tracks(reordered, val_reordered)


def test_images_without_track_are_tracks_of_their_own():
  rows = make_rows({0: 0}, untracked=100)
  train, val = splits.split_by_track(rows, 0.2, seed=0)
  assert len(val) == 20 and len(train) == 80


def test_same_track_number_in_two_classes_is_two_tracks():
  rows = make_rows({0: 2, 1: 2}, frames=3)
  train, val = splits.split_by_track(rows, 0.5, seed=0)
  assert len(side_of_tracks(rows, val)) == 2
  assert {c for c, _ in side_of_tracks(rows, val)} == {0, 1}


def test_tracked_and_untracked_images_of_one_class_split_together():
  rows = make_rows({0: 4}, untracked=4)  # Track ids (ints) beside one-image tracks (names).
  train, val = splits.split_by_track(rows, 0.25, seed=0)
  assert len(side_of_tracks(rows, val)) == 2 and sorted(train + val) == list(range(len(rows)))


def test_a_large_fraction_still_leaves_every_class_a_training_track():
  rows = make_rows({0: 2, 1: 3}, frames=2)
  train, val = splits.split_by_track(rows, 0.9, seed=0)
  assert {c for c, _ in side_of_tracks(rows, train)} == {0, 1}
  assert len(side_of_tracks(rows, val)) == 1 + 2


def test_zero_fraction_keeps_everything_in_training():
  rows = make_rows()
  train, val = splits.split_by_track(rows, 0.0)
  assert val == [] and len(train) == len(rows)


@pytest.mark.parametrize("num", [1000, 997, 20])
def test_frame_split_sizes_70_15_15(num):
  train, val, held = splits.split_by_frame(num, seed=0)
  assert sorted(train + val + held) == list(range(num))
  assert len(train) == round(0.7 * num)
  assert len(val) == round(0.15 * num)
  assert abs(len(held) - 0.15 * num) <= 1


def test_frame_split_is_deterministic_by_seed():
  assert splits.split_by_frame(200, seed=4) == splits.split_by_frame(200, seed=4)
  assert splits.split_by_frame(200, seed=4) != splits.split_by_frame(200, seed=5)


def test_frame_split_custom_fractions():
  train, val, held = splits.split_by_frame(100, (0.5, 0.3, 0.2))
  assert (len(train), len(val), len(held)) == (50, 30, 20)
  train, val, held = splits.split_by_frame(10, (1.0, 0.0, 0.0))  # An empty side is allowed.
  assert (len(train), val, held) == (10, [], [])


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_bad_track_fraction(fraction):
  with pytest.raises(errors.ConfigError, match=r"^val_fraction must be in \[0, 1\), got "):
    splits.split_by_track(make_rows(), fraction)


@pytest.mark.parametrize("fractions", [(0.7, 0.3), (0.5, 0.5, 0.5), (1.2, -0.1, -0.1),
                                       (0.7, 0.15, 0.1), ()])
def test_bad_frame_fractions(fractions):
  with pytest.raises(errors.ConfigError, match="fractions"):
    splits.split_by_frame(100, fractions)


@pytest.mark.parametrize("kwargs", [
    {"val_fraction": -0.1}, {"val_fraction": 1.0}, {"split_mode": "random"},
    {"split_mode": "frame", "val_fraction": 0.5}, {"split_mode": "frame", "val_fraction": 0.0}, {"source": "imagenet"},
    {"image_size": 8}, {"balance_target": -1},
])
def test_bad_config_is_refused_before_any_work(kwargs):
  with pytest.raises(errors.ConfigError):
    gtsrb.GtsrbConfig.create(**kwargs)


def test_config_names_differ_for_different_records():
  names = {gtsrb.GtsrbConfig.create(**kwargs).name for kwargs in [
      {}, {"split_seed": 1}, {"val_fraction": 0.2}, {"split_mode": "frame"},
      {"roi_crop": True}, {"image_size": 48}, {"balance_target": 0},
      {"balance_seed": 1}, {"source": "kaggle"}, {"val_fraction": 0.0}]}
  assert len(names) == 10
  assert (gtsrb.GtsrbConfig.create(balance_target=0, balance_seed=1).name ==
          gtsrb.GtsrbConfig.create(balance_target=0).name)  # Seed unused without balancing.


def test_defaults_are_the_declared_splits():
  rows = make_rows()
  assert splits.split_by_track(rows) == splits.split_by_track(rows, 0.15, seed=0)
  assert splits.split_by_frame(200) == splits.split_by_frame(200, (0.70, 0.15, 0.15), seed=0)

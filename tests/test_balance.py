"""Tests of tf_gtsrb.data.balance: offline class balancing with augmented copies."""

import collections

import numpy as np
import pytest

from tf_gtsrb.data import balance


def sign(seed=0, size=32):
  rng = np.random.default_rng(seed)
  image = np.zeros((size, size, 3), np.uint8)
  image[:] = rng.integers(0, 256, 3)
  image[size // 4:3 * size // 4, size // 4:3 * size // 4] = rng.integers(0, 256, 3)
  return image


def test_plan_grows_small_classes_to_the_target():
  labels = [0] * 3 + [1] * 12 + [2] * 20 + [5] * 1
  plan = balance.plan_balancing(labels, target=12, seed=0)
  added = collections.Counter(labels[i] for i, _ in plan)
  assert added == {0: 9, 5: 11}
  after = collections.Counter(labels) + added
  assert after == {0: 12, 1: 12, 2: 20, 5: 12}


def test_plan_copies_only_images_of_the_same_class():
  labels = np.array([3, 3, 7, 7, 7, 9])
  for index, _ in balance.plan_balancing(labels, target=10, seed=1):
    assert 0 <= index < len(labels)
  plan = balance.plan_balancing(labels, target=10, seed=1)
  assert collections.Counter(int(labels[i]) for i, _ in plan) == {3: 8, 7: 7, 9: 9}


def test_plan_is_deterministic_by_seed():
  labels = [0] * 3 + [1] * 5
  assert balance.plan_balancing(labels, 20, seed=2) == balance.plan_balancing(labels, 20, seed=2)
  assert balance.plan_balancing(labels, 20, seed=2) != balance.plan_balancing(labels, 20, seed=3)


@pytest.mark.parametrize("target", [0, -5, 3])
def test_no_copies_when_every_class_reaches_the_target(target):
  assert balance.plan_balancing([0, 0, 0, 1, 1, 1], target) == []


def test_augment_image_keeps_shape_and_type_and_changes_pixels():
  image = sign()
  for seed in range(5):
    copy = balance.augment_image(image, seed)
    assert copy.shape == image.shape and copy.dtype == np.uint8
    assert not np.array_equal(copy, image)


def test_augment_image_is_deterministic_by_seed():
  image = sign(1, size=48)
  np.testing.assert_array_equal(balance.augment_image(image, 11), balance.augment_image(image, 11))
  assert not np.array_equal(balance.augment_image(image, 11), balance.augment_image(image, 12))


def test_augment_image_stays_close_to_the_original():
  image = sign(2)
  copies = np.stack([balance.augment_image(image, s) for s in range(20)]).astype(float)
  # Colour jitter and a shift of at most 10%: the mean colour moves, but not far.
  assert np.abs(copies.mean(axis=(0, 1, 2)) - image.mean(axis=(0, 1))).max() < 60


def test_class_count_table():
  table = balance.class_count_table({0: 3, 1: 20}, {0: 12, 1: 20}, ["Speed 20", "Speed 30", "X"])
  lines = table.splitlines()
  assert lines[2] == "| 0 | Speed 20 | 3 | 12 |"
  assert lines[4] == "| 2 | X | 0 | 0 |"
  assert lines[-1] == "| | **Total** | 23 | 32 |"

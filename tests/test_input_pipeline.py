"""Tests of tf_gtsrb.data.input_pipeline and augment on synthetic in-memory data."""

import collections
import os

import numpy as np
import pytest
import tensorflow as tf

from tf_gtsrb import errors
from tf_gtsrb.data import augment
from tf_gtsrb.data import input_pipeline

NUM, SIZE, BATCH = 48, 16, 8  # 6 steps per epoch.


def synthetic(num=NUM, size=SIZE, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (num, size, size, 3), dtype=np.uint8)
  labels = np.arange(num, dtype=np.int64)  # Unique labels identify the images.
  return images, labels


def take(dataset, n):
  return [(x.numpy(), y.numpy()) for x, y in dataset.take(n)]


def test_batches_have_the_model_input_format():
  images, labels = synthetic()
  x, y = next(iter(input_pipeline.batches_from_arrays(images, labels, BATCH, augment=True)))
  assert x.shape == (BATCH, SIZE, SIZE, 3) and x.dtype == tf.float32
  assert y.shape == (BATCH,) and y.dtype == tf.int64
  assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0


def test_without_augmentation_batches_are_the_images_over_255():
  images, labels = synthetic()
  for x, y in take(input_pipeline.batches_from_arrays(images, labels, BATCH, augment=False), 3):
    np.testing.assert_array_equal(x, images[y].astype(np.float32) / 255.0)


@pytest.mark.parametrize("start_step", [1, 5, 6, 7, 13])
def test_batch_at_step_k_equals_first_batch_of_a_run_resumed_at_k(start_step):
  images, labels = synthetic()
  full = take(input_pipeline.batches_from_arrays(images, labels, BATCH, True, seed=3), 15)
  resumed = take(input_pipeline.batches_from_arrays(images, labels, BATCH, True, seed=3,
                                                    start_step=start_step), 2)
  for offset in range(2):
    np.testing.assert_array_equal(resumed[offset][0], full[start_step + offset][0])
    np.testing.assert_array_equal(resumed[offset][1], full[start_step + offset][1])


def test_same_seed_same_batches_other_seed_other_batches():
  images, labels = synthetic()
  one = take(input_pipeline.batches_from_arrays(images, labels, BATCH, True, seed=1), 2)
  two = take(input_pipeline.batches_from_arrays(images, labels, BATCH, True, seed=1), 2)
  other = take(input_pipeline.batches_from_arrays(images, labels, BATCH, True, seed=2), 2)
  for a, b in zip(one, two):
    np.testing.assert_array_equal(a[0], b[0])
  assert not np.array_equal(one[0][1], other[0][1])


def test_augmentation_depends_on_the_step_not_only_the_image():
  images = np.repeat(synthetic(1)[0], NUM, axis=0)  # One image everywhere.
  labels = np.zeros(NUM, np.int64)
  batches = take(input_pipeline.batches_from_arrays(images, labels, BATCH, True), 2)
  assert not np.allclose(batches[0][0], batches[1][0])
  assert not np.allclose(batches[0][0][0], batches[0][0][1])  # Per-image randomness.


def test_every_epoch_is_a_permutation():
  images, labels = synthetic()
  steps = NUM // BATCH
  batches = take(input_pipeline.batches_from_arrays(images, labels, BATCH, augment=False),
                 3 * steps)
  epochs = [np.concatenate([y for _, y in batches[e * steps:(e + 1) * steps]]) for e in range(3)]
  for epoch in epochs:
    assert sorted(epoch) == list(range(NUM))
  assert not np.array_equal(epochs[0], epochs[1])
  assert not np.array_equal(epochs[0], np.arange(NUM))


def test_partial_last_batch_is_dropped_and_never_repeated_within_an_epoch():
  images, labels = synthetic(num=21)
  batches = take(input_pipeline.batches_from_arrays(images, labels, 5, augment=False), 8)
  for e in range(2):
    epoch = np.concatenate([y for _, y in batches[4 * e:4 * (e + 1)]])
    assert len(epoch) == 20 and len(set(epoch)) == 20


def test_labels_follow_their_images():
  images, labels = synthetic()
  labels = labels % 5
  for x, y in take(input_pipeline.batches_from_arrays(images, labels, BATCH, augment=False), 6):
    ids = [np.flatnonzero((images.astype(np.float32) / 255 == xi).all(axis=(1, 2, 3)))[0]
           for xi in x]
    np.testing.assert_array_equal(labels[ids], y)


def test_batch_larger_than_the_data():
  images, labels = synthetic(num=4)
  with pytest.raises(errors.ConfigError, match="batch_size 8 is larger than the 4"):
    input_pipeline.batches_from_arrays(images, labels, 8)
  assert input_pipeline.steps_per_epoch(17, 4) == 4


def test_to_float():
  images = np.array([[0, 51, 255]], np.uint8)
  np.testing.assert_allclose(input_pipeline.to_float(images), [[0.0, 0.2, 1.0]])
  assert input_pipeline.to_float(images).dtype == np.float32
  tensor = input_pipeline.to_float(tf.constant(images))
  assert tensor.dtype == tf.float32
  np.testing.assert_allclose(tensor.numpy(), [[0.0, 0.2, 1.0]])


# --------------------------------------------------------------------------
# augment_batch.


def test_augment_batch_keeps_shape_and_range_and_changes_images():
  images = tf.constant(synthetic(num=6, size=24)[0], tf.float32) / 255.0
  out = augment.augment_batch(images, tf.constant([1, 2], tf.int64))
  assert out.shape == images.shape and out.dtype == tf.float32
  assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 1.0
  for i in range(6):
    assert not np.allclose(out[i].numpy(), images[i].numpy(), atol=0.01)


def test_augment_batch_is_a_function_of_the_seed():
  images = tf.constant(synthetic(num=4)[0], tf.float32) / 255.0
  a = augment.augment_batch(images, tf.constant([3, 4], tf.int64)).numpy()
  b = augment.augment_batch(images, tf.constant([3, 4], tf.int64)).numpy()
  c = augment.augment_batch(images, tf.constant([3, 5], tf.int64)).numpy()
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)


def test_augment_batch_keeps_a_plain_image_recognisable():
  image = np.zeros((1, 32, 32, 3), np.float32)
  image[:, 8:24, 8:24] = [1.0, 0.0, 0.0]  # A red square on black.
  outs = augment.augment_batch(tf.constant(np.repeat(image, 8, axis=0)), tf.constant([0, 0]))
  centre = outs.numpy()[:, 14:18, 14:18]
  # Still clearly red, though a shadow or gamma may have darkened it.
  assert (centre[..., 0] > 0.25).all()
  assert (centre[..., 0] > 2 * centre[..., 1:].max(axis=-1)).all()


def test_shadow_darkens_the_part_beyond_a_straight_edge(monkeypatch):
  monkeypatch.setattr(augment, "SHADOW_PROBABILITY", 1.0)
  white = tf.ones((16, 32, 32, 3))
  seeds = tf.random.experimental.stateless_split(tf.constant([5, 6], tf.int64), num=4)
  out = augment._maybe_shadow(white, seeds).numpy()
  low, _ = augment.SHADOW_DARKNESS
  assert out.min() >= low - 1e-6 and out.max() <= 1.0
  np.testing.assert_array_equal(out[..., 0], out[..., 2])  # Shadows are grey.
  for image in out[..., 0]:
    shaded = image < 0.9
    assert 0 < shaded.sum() < image.size  # Part of the image, never all or nothing...
    lit = image > 0.99
    assert lit.sum() > 0
    # ...split by a straight edge: the shaded pixels are one side of a line, so a pixel
    # halfway between two shaded pixels is shaded too (convexity), up to the soft edge.
    ys, xs = np.nonzero(shaded)
    mid_y, mid_x = (ys[0] + ys[-1]) // 2, (xs[0] + xs[-1]) // 2
    assert image[mid_y, mid_x] < 0.99


def test_without_a_shadow_nothing_changes(monkeypatch):
  monkeypatch.setattr(augment, "SHADOW_PROBABILITY", 0.0)
  images = tf.random.stateless_uniform((4, 16, 16, 3), seed=[1, 2])
  seeds = tf.random.experimental.stateless_split(tf.constant([5, 6], tf.int64), num=4)
  np.testing.assert_array_equal(augment._maybe_shadow(images, seeds).numpy(), images.numpy())


def test_random_erasing_fills_one_square_with_the_image_mean():
  images = tf.random.stateless_uniform((16, 32, 32, 3), seed=[3, 4])
  seeds = tf.random.experimental.stateless_split(tf.constant([7, 8], tf.int64), num=4)
  out = augment._maybe_erase(images, seeds, probability=1.0).numpy()
  means = images.numpy().mean(axis=(1, 2))
  low, high = augment.ERASE_SIDE
  for image, original, mean in zip(out, images.numpy(), means):
    erased = np.any(image != original, axis=-1)
    ys, xs = np.nonzero(erased)
    assert erased.sum() > 0
    # One axis-aligned rectangle (a square, unless the border cuts it)...
    assert erased.sum() == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 <= high * 32 + 1
    # ...filled with the image's mean colour.
    np.testing.assert_allclose(image[erased], np.broadcast_to(mean, image[erased].shape),
                               rtol=1e-6)
  assert np.array_equal(augment._maybe_erase(images, seeds, 0.0).numpy(), images.numpy())


def test_erasing_leaves_the_other_augmentations_unchanged():
  images = tf.random.stateless_uniform((8, 32, 32, 3), seed=[1, 2])
  plain = augment.augment_batch(images, tf.constant([0, 5])).numpy()
  erased = augment.augment_batch(images, tf.constant([0, 5]), erase_probability=1.0).numpy()
  changed = np.any(plain != erased, axis=-1)
  assert all(0 < c.sum() < c.size for c in changed)  # Every image lost a part, only a part.
  np.testing.assert_array_equal(plain[~changed], erased[~changed])


def test_stickers_are_one_to_three_solid_patches_of_random_colour():
  images = tf.random.stateless_uniform((64, 32, 32, 3), seed=[3, 4])
  seeds = tf.random.experimental.stateless_split(
      tf.constant([7, 8], tf.int64), num=2 + 5 * augment.MAX_STICKERS)
  out = augment._maybe_stickers(images, seeds, probability=1.0).numpy()
  covered = np.any(out != images.numpy(), axis=-1)
  shares = covered.mean(axis=(1, 2))
  low, high = augment.STICKER_AREA
  # Patches round to whole pixels and may overlap; each image keeps most of itself.
  assert np.all(shares > 0) and np.all(shares <= high + 0.05)
  assert shares.std() > 0.03  # The covered area varies from image to image.
  colours = [np.unique(image[mask], axis=0) for image, mask in zip(out, covered)]
  assert all(1 <= len(c) <= augment.MAX_STICKERS for c in colours)
  assert {len(c) for c in colours} == {1, 2, 3}
  _assert_applies_to_its_share(augment._maybe_stickers, images, seeds)


def test_stickers_leave_the_other_augmentations_unchanged_and_are_deterministic():
  images = tf.random.stateless_uniform((8, 32, 32, 3), seed=[1, 2])
  plain = augment.augment_batch(images, tf.constant([0, 5])).numpy()
  stickered = augment.augment_batch(images, tf.constant([0, 5]), sticker_probability=1.0)
  again = augment.augment_batch(images, tf.constant([0, 5]), sticker_probability=1.0)
  np.testing.assert_array_equal(stickered.numpy(), again.numpy())
  changed = np.any(plain != stickered.numpy(), axis=-1)
  assert all(0 < c.sum() < c.size / 2 for c in changed)
  np.testing.assert_array_equal(plain[~changed], stickered.numpy()[~changed])


def test_teacher_view_is_the_augmented_batch_before_its_stickers_and_noise():
  images = tf.random.stateless_uniform((8, 32, 32, 3), seed=[1, 2])
  plain = augment.augment_batch(images, tf.constant([0, 5])).numpy()
  robust, clean = augment.augment_views(images, tf.constant([0, 5]), noise_probability=1.0,
                                        sticker_probability=1.0)
  np.testing.assert_array_equal(clean.numpy(), plain)
  np.testing.assert_array_equal(
      robust.numpy(), augment.augment_batch(images, tf.constant([0, 5]), noise_probability=1.0,
                                            sticker_probability=1.0).numpy())
  assert not np.allclose(robust.numpy(), plain)
  uint8 = (np.random.default_rng(0).random((16, 32, 32, 3)) * 255).astype(np.uint8)
  labels = np.arange(16)
  views = input_pipeline.batches_from_arrays(uint8, labels, 8, noise_probability=1.0,
                                             teacher_view=True)
  singles = input_pipeline.batches_from_arrays(uint8, labels, 8, noise_probability=1.0)
  for ((student, teacher), view_labels), (single, single_labels) in zip(
      views.take(2), singles.take(2)):
    np.testing.assert_array_equal(student.numpy(), single.numpy())
    np.testing.assert_array_equal(view_labels.numpy(), single_labels.numpy())
    assert not np.allclose(teacher.numpy(), student.numpy())


def test_sensor_noise_has_a_per_image_strength_within_its_range():
  images = tf.fill((64, 32, 32, 3), 0.5)
  seeds = tf.random.experimental.stateless_split(tf.constant([9, 10], tf.int64), num=3)
  noisy = augment._maybe_noise(images, seeds, probability=1.0).numpy() - 0.5
  sigmas = noisy.reshape(64, -1).std(axis=1)
  low, high = augment.NOISE_SIGMA
  assert np.all(sigmas > 0.9 * low) and np.all(sigmas < 1.1 * high)
  assert sigmas.std() > 0.01  # The strength varies from image to image.
  _assert_applies_to_its_share(augment._maybe_noise, images, seeds)


def test_noise_leaves_the_other_augmentations_unchanged_and_is_deterministic():
  images = tf.random.stateless_uniform((8, 32, 32, 3), seed=[1, 2])
  plain = augment.augment_batch(images, tf.constant([0, 5])).numpy()
  noisy = augment.augment_batch(images, tf.constant([0, 5]), noise_probability=1.0).numpy()
  again = augment.augment_batch(images, tf.constant([0, 5]), noise_probability=1.0).numpy()
  np.testing.assert_array_equal(noisy, again)
  difference = (noisy - plain)[(plain > 0.01) & (plain < 0.99)]  # Where no clipping hides it.
  assert abs(difference.mean()) < 0.01 and difference.std() > 0.01


def test_jpeg_compresses_a_share_of_the_images_at_qualities_within_its_range():
  images = tf.random.stateless_uniform((64, 32, 32, 3), seed=[3, 4])
  seeds = tf.random.experimental.stateless_split(tf.constant([9, 10], tf.int64), num=2)
  compressed = augment._maybe_jpeg(images, seeds, probability=1.0).numpy()
  qualities = _jpeg_qualities(seeds[0], 64)
  for image, result, quality in zip(images[:4], compressed[:4], qualities[:4]):
    np.testing.assert_array_equal(
        result, tf.image.adjust_jpeg_quality(image, int(quality)).numpy())
  assert np.all(np.abs(compressed - images.numpy()).mean(axis=(1, 2, 3)) > 0.01)
  assert 0.0 <= compressed.min() and compressed.max() <= 1.0
  _assert_applies_to_its_share(augment._maybe_jpeg, images, seeds)


def _assert_applies_to_its_share(maybe_augment, images, seeds):
  """`maybe_augment` at probability 0.5 leaves about half of 64 images alone, at 0 all."""
  half = maybe_augment(images, seeds, probability=0.5).numpy()
  untouched = np.all(half == images.numpy(), axis=(1, 2, 3))
  assert 16 < untouched.sum() < 48
  assert np.array_equal(maybe_augment(images, seeds, 0.0).numpy(), images.numpy())


def test_jpeg_comes_last_leaves_the_teacher_view_clean_and_is_deterministic():
  images = tf.random.stateless_uniform((8, 32, 32, 3), seed=[1, 2])
  seed = tf.constant([0, 5])
  plain = augment.augment_batch(images, seed).numpy()
  noisy = augment.augment_batch(images, seed, noise_probability=1.0).numpy()
  robust, clean = augment.augment_views(images, seed, noise_probability=1.0,
                                        jpeg_probability=1.0)
  np.testing.assert_array_equal(clean.numpy(), plain)
  np.testing.assert_array_equal(
      robust.numpy(), augment.augment_batch(images, seed, noise_probability=1.0,
                                            jpeg_probability=1.0).numpy())
  jpeg_seeds = tf.random.experimental.stateless_split(
      tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), 4), num=2)
  quality = _jpeg_qualities(jpeg_seeds[0], 8)[0]
  np.testing.assert_array_equal(robust.numpy()[0],
                                tf.image.adjust_jpeg_quality(noisy[0], int(quality)).numpy())


def _jpeg_qualities(seed, count):
  """The JPEG qualities `_maybe_jpeg` draws for `count` images from its first seed."""
  return np.round(tf.random.stateless_uniform([count], seed=seed,
                                              minval=augment.JPEG_QUALITY[0],
                                              maxval=augment.JPEG_QUALITY[1]).numpy())


# --------------------------------------------------------------------------
# find_dataset_dir and the prepared-dataset readers.


def test_find_dataset_dir_on_an_empty_directory(tmp_path):
  with pytest.raises(errors.DataError) as raised:
    input_pipeline.find_dataset_dir(str(tmp_path))
  assert str(raised.value).startswith(f"{tmp_path}: no prepared dataset here")
  assert "gtsrb-prepare-data" in str(raised.value)
  with pytest.raises(errors.DataError, match="no prepared dataset"):
    input_pipeline.find_dataset_dir(str(tmp_path / "absent"))


def test_find_dataset_dir_with_two_datasets(tmp_path):
  for name in ("a/1.0.0", "b/1.0.0"):
    os.makedirs(tmp_path / name)
    (tmp_path / name / "dataset_info.json").write_text("{}")
  with pytest.raises(errors.DataError, match="several prepared datasets"):
    input_pipeline.find_dataset_dir(str(tmp_path))
  assert input_pipeline.find_dataset_dir(str(tmp_path / "a")) == str(tmp_path / "a" / "1.0.0")


def test_joined_splits_are_the_first_split_followed_by_the_second(tiny_data_dir):
  train_images, train_labels = input_pipeline.load_arrays(tiny_data_dir, "train")
  val_images, val_labels = input_pipeline.load_arrays(tiny_data_dir, "validation")
  images, labels = input_pipeline.load_arrays(tiny_data_dir, "train+validation")
  np.testing.assert_array_equal(images, np.concatenate([train_images, val_images]))
  np.testing.assert_array_equal(labels, np.concatenate([train_labels, val_labels]))
  assert input_pipeline.has_split(tiny_data_dir, "train+validation")
  assert input_pipeline.split_size(tiny_data_dir, "train+validation") == len(labels)


def test_fine_tune_datasets_train_on_train_and_validate_on_validation(tiny_data_dir):
  train_ds, val_ds, steps = input_pipeline.fine_tune_datasets(tiny_data_dir, 16)
  assert steps == input_pipeline.split_size(tiny_data_dir, "train") // 16
  val_labels = np.concatenate([y.numpy() for _, y in val_ds])
  np.testing.assert_array_equal(val_labels,
                                input_pipeline.load_arrays(tiny_data_dir, "validation")[1])
  assert next(iter(train_ds))[0].shape == (16, 32, 32, 3)
  assert input_pipeline.fine_tune_datasets(tiny_data_dir, 16, steps=3)[2] == 3


def test_fine_tune_datasets_add_the_robust_augmentation(tiny_data_dir):
  plain_images, plain_labels = next(iter(input_pipeline.fine_tune_datasets(tiny_data_dir, 16)[0]))
  noisy_images, noisy_labels = next(iter(input_pipeline.fine_tune_datasets(
      tiny_data_dir, 16, noise_probability=1.0)[0]))
  erased_images, _ = next(iter(input_pipeline.fine_tune_datasets(
      tiny_data_dir, 16, erase_probability=1.0)[0]))
  stickered_images, _ = next(iter(input_pipeline.fine_tune_datasets(
      tiny_data_dir, 16, sticker_probability=1.0)[0]))
  compressed_images, _ = next(iter(input_pipeline.fine_tune_datasets(
      tiny_data_dir, 16, jpeg_probability=1.0)[0]))
  assert np.abs(compressed_images - plain_images).mean() > 0.005
  np.testing.assert_array_equal(noisy_labels, plain_labels)  # Same images, same order.
  assert np.abs(noisy_images - plain_images).mean() > 0.01
  assert not np.array_equal(erased_images, plain_images)
  assert not np.array_equal(stickered_images, plain_images)
  assert not np.array_equal(stickered_images, erased_images)


def test_final_fit_datasets_train_on_both_splits_and_validate_on_nothing(tiny_data_dir):
  train_ds, val_ds, steps = input_pipeline.fine_tune_datasets(tiny_data_dir, 16,
                                                              on_validation=True)
  assert val_ds is None
  assert steps == input_pipeline.split_size(tiny_data_dir, "train+validation") // 16
  seen = np.concatenate([y.numpy() for _, y in train_ds.take(steps)])
  # One epoch draws from both splits: more examples than the train split alone holds.
  assert len(seen) > input_pipeline.split_size(tiny_data_dir, "train")


def test_fine_tune_without_a_validation_split(tiny_final_fit_data_dir):
  _, val_ds, steps = input_pipeline.fine_tune_datasets(tiny_final_fit_data_dir, 16)
  assert val_ds is None and steps == input_pipeline.split_size(tiny_final_fit_data_dir,
                                                               "train") // 16
  with pytest.raises(errors.ConfigError, match="prepared without"):
    input_pipeline.fine_tune_datasets(tiny_final_fit_data_dir, 16, on_validation=True)


def test_prepared_dataset_readers(tiny_data_dir):
  root = tiny_data_dir.split(os.sep + "gtsrb" + os.sep)[0]
  assert input_pipeline.find_dataset_dir(root) == tiny_data_dir
  assert input_pipeline.find_dataset_dir(tiny_data_dir) == tiny_data_dir
  images, labels = input_pipeline.load_arrays(tiny_data_dir, "validation", limit=10)
  assert images.shape == (10, 32, 32, 3) and labels.shape == (10,)
  x, y = next(iter(input_pipeline.eval_dataset(tiny_data_dir, "validation", 10)))
  np.testing.assert_allclose(x.numpy(), images / 255.0, atol=1e-7)
  np.testing.assert_array_equal(y.numpy(), labels)
  x, y = next(iter(input_pipeline.train_dataset(tiny_data_dir, 16, seed=0)))
  assert x.shape == (16, 32, 32, 3) and y.dtype == tf.int64
  with pytest.raises(errors.DataError, match="no split 'frame_test'"):
    input_pipeline.load_split(tiny_data_dir, "frame_test")
  with pytest.raises(errors.DataError, match="no split 'frame_test'"):
    input_pipeline.load_split(tiny_data_dir, "train+frame_test")
  assert not input_pipeline.has_split(tiny_data_dir, "train+frame_test")
  counts = collections.Counter(labels.tolist())
  assert sum(counts.values()) == 10

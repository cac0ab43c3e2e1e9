"""tf.data pipelines over a prepared GTSRB dataset (the directory `gtsrb-prepare-data` wrote).

Training batches are a pure function of (seed, global step): epoch `e` visits
the training images in a stateless shuffle seeded by (seed, e), and batch `k`
is augmented with randomness seeded by (seed, k). A run resumed at step k
therefore sees exactly the batches an uninterrupted run would have.
"""

import functools
import glob
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tf_gtsrb import errors
from tf_gtsrb.data import augment as augment_lib

AUTOTUNE = tf.data.AUTOTUNE


def find_dataset_dir(data_dir):
  """Returns the dataset version directory under `data_dir` (holding dataset_info.json)."""
  if os.path.isfile(os.path.join(data_dir, "dataset_info.json")):
    return data_dir
  found = sorted(os.path.dirname(p) for p in
                 glob.glob(os.path.join(data_dir, "**", "dataset_info.json"), recursive=True))
  if not found:
    raise errors.DataError(
        f"{data_dir}: no prepared dataset here; build one with gtsrb-prepare-data "
        f"--output_dir={data_dir}")
  if len(found) > 1:
    raise errors.DataError(
        f"{data_dir}: holds several prepared datasets; pass one of: {', '.join(found)}")
  return found[0]


def _builder(data_dir):
  return tfds.builder_from_directory(find_dataset_dir(data_dir))


def has_split(data_dir, split):
  """Whether the prepared dataset has `split` (one built with val_fraction 0 has no
  validation split); 'train+validation' asks for both."""
  return all(name in _builder(data_dir).info.splits for name in split.split("+"))


def load_split(data_dir, split):
  """Returns the examples of `split` as a tf.data.Dataset of feature dicts, in file order.

  `split` is a split name or several joined by '+': 'train+validation' is the
  training examples followed by the validation examples.
  """
  builder = _builder(data_dir)
  names = split.split("+")
  for name in names:
    if name not in builder.info.splits:
      raise errors.DataError(f"{data_dir}: dataset has no split {name!r}; it has "
                             f"{', '.join(builder.info.splits)}")
  datasets = [builder.as_dataset(split=name, shuffle_files=False) for name in names]
  return functools.reduce(tf.data.Dataset.concatenate, datasets)


def split_size(data_dir, split):
  """Number of examples in `split` (names joined by '+' count together)."""
  splits = _builder(data_dir).info.splits
  return sum(splits[name].num_examples for name in split.split("+"))


def image_size(data_dir):
  """Side length in pixels of the dataset's square images."""
  return int(_builder(data_dir).info.features["image"].shape[0])


def to_float(images):
  """uint8 pixels -> float32 pixel / 255, the models' input (tf tensors or numpy arrays)."""
  if isinstance(images, np.ndarray):
    return images.astype(np.float32) / 255.0
  return tf.cast(images, tf.float32) / 255.0


def load_arrays(data_dir, split, limit=None):
  """Returns (images uint8 [N,S,S,3], labels int64 [N]) of `split`, the first `limit` if given."""
  ds = load_split(data_dir, split).map(lambda ex: (ex["image"], ex["label"]),
                                       num_parallel_calls=AUTOTUNE)
  if limit is not None:
    ds = ds.take(limit)
  images, labels = [], []
  for image_batch, label_batch in tfds.as_numpy(ds.batch(1024)):
    images.append(image_batch)
    labels.append(label_batch)
  if not images:
    raise errors.DataError(f"{data_dir}: split {split!r} is empty")
  return np.concatenate(images), np.concatenate(labels).astype(np.int64)


def eval_dataset(data_dir, split, batch_size):
  """(float images, labels) batches of `split`, in order, for evaluation."""
  return (load_split(data_dir, split)
          .map(lambda ex: (to_float(ex["image"]), ex["label"]), num_parallel_calls=AUTOTUNE)
          .batch(batch_size)
          .prefetch(AUTOTUNE))


def steps_per_epoch(num_examples, batch_size):
  """Full batches per epoch (training drops the last partial batch)."""
  if num_examples < batch_size:
    raise errors.ConfigError(
        f"batch_size {batch_size} is larger than the {num_examples} training examples")
  return num_examples // batch_size


def train_dataset(data_dir, batch_size, augment=True, seed=0, start_step=0, split="train",
                  erase_probability=0.0, noise_probability=0.0, sticker_probability=0.0,
                  jpeg_probability=0.0, teacher_view=False):
  """Endless (float images, labels) training batches starting at global step `start_step`.

  Use with `model.fit(..., steps_per_epoch=steps_per_epoch(split_size(...), batch_size))`.
  With `teacher_view` the images are a pair for `distill.Distiller`: (the augmented
  batch, the same batch before its erasing, stickers, noise and JPEG).
  """
  images, labels = load_arrays(data_dir, split)
  return batches_from_arrays(images, labels, batch_size, augment, seed, start_step,
                             erase_probability, noise_probability, sticker_probability,
                             jpeg_probability, teacher_view)


def fine_tune_datasets(data_dir, batch_size, seed=0, steps=0, on_validation=False,
                       erase_probability=0.0, noise_probability=0.0,
                       sticker_probability=0.0, jpeg_probability=0.0, teacher_view=False):
  """(training batches, validation batches or None, steps per epoch) of a fine-tune.

  It trains on the train split and validates on the validation split when the
  dataset has one. With `on_validation` (a final fit) it trains on
  'train+validation' and validates on nothing. `steps` 0 is one pass per epoch.
  The probabilities add robust augmentation and `teacher_view` the teachers' view
  as in `train_dataset`.
  """
  split = "train+validation" if on_validation else "train"
  if on_validation and not has_split(data_dir, "validation"):
    raise errors.ConfigError(f"{data_dir}: a fine-tune on the validation split needs one; "
                             "this dataset was prepared without (val_fraction 0)")
  steps = steps or steps_per_epoch(split_size(data_dir, split), batch_size)
  val_ds = (eval_dataset(data_dir, "validation", batch_size)
            if not on_validation and has_split(data_dir, "validation") else None)
  train_ds = train_dataset(data_dir, batch_size, seed=seed, split=split,
                           erase_probability=erase_probability,
                           noise_probability=noise_probability,
                           sticker_probability=sticker_probability,
                           jpeg_probability=jpeg_probability, teacher_view=teacher_view)
  return train_ds, val_ds, steps


def batches_from_arrays(images, labels, batch_size, augment=True, seed=0, start_step=0,
                        erase_probability=0.0, noise_probability=0.0,
                        sticker_probability=0.0, jpeg_probability=0.0, teacher_view=False):
  """Like `train_dataset`, from in-memory uint8 images and integer labels."""
  num = len(images)
  steps = steps_per_epoch(num, batch_size)
  images = tf.constant(images)
  labels = tf.constant(labels, tf.int64)
  first_epoch, skip = divmod(start_step, steps)

  def epoch_batches(epoch):
    order = tf.random.experimental.stateless_shuffle(
        tf.range(num, dtype=tf.int64), seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
    return tf.data.Dataset.from_tensor_slices(order[:steps * batch_size]).batch(
        batch_size, drop_remainder=True)

  def gather(step, index):
    batch = clean = to_float(tf.gather(images, index))
    if augment:
      batch, clean = augment_lib.augment_views(
          batch, tf.stack([tf.cast(seed, tf.int64) + 1, step]), erase_probability,
          noise_probability, sticker_probability, jpeg_probability)
    return ((batch, clean) if teacher_view else batch), tf.gather(labels, index)

  return (tf.data.Dataset.range(first_epoch, 2**62)
          .flat_map(epoch_batches)
          .skip(skip)
          .enumerate(start=start_step)
          .map(gather, num_parallel_calls=AUTOTUNE, deterministic=True)
          .prefetch(AUTOTUNE))

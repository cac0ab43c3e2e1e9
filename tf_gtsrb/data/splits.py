"""Train/validation splits of the GTSRB training set.

GTSRB training images come in tracks of ~30 near-identical frames of one
physical sign. `split_by_track` keeps whole tracks on one side (stratified by
class, seeded); `split_by_frame` is the random frame-level 70/15/15 split of the
published project, offered for comparison: it leaks frames of one sign across
splits and overstates accuracy.
"""

import collections

import numpy as np

from tf_gtsrb import errors
from tf_gtsrb.data.annotations import NO_TRACK

SPLIT_MODES = ("track", "frame")


def split_by_track(rows, val_fraction=0.15, seed=0):
  """Returns (train_indices, val_indices) of `rows` (Annotations), whole tracks kept together.

  For every class, round(val_fraction * tracks) of its tracks (at least one when
  the class has two or more) go to validation. Images without a track id are
  tracks of their own.
  """
  _check_fraction(val_fraction, "val_fraction")
  groups = collections.defaultdict(list)
  for i, row in enumerate(rows):
    track = row.track_id if row.track_id != NO_TRACK else f"image{i}"
    groups[(row.class_id, track)].append(i)
  by_class = collections.defaultdict(list)
  for key in sorted(groups, key=str):
    by_class[key[0]].append(key)
  rng = np.random.default_rng(seed)
  train, val = [], []
  for class_id in sorted(by_class):
    tracks = by_class[class_id]
    order = rng.permutation(len(tracks))
    n_val = int(round(val_fraction * len(tracks)))
    if val_fraction > 0 and len(tracks) >= 2:
      n_val = min(max(n_val, 1), len(tracks) - 1)
    for rank, t in enumerate(order):
      (val if rank < n_val else train).extend(groups[tracks[t]])
  return sorted(train), sorted(val)


def split_by_frame(num_rows, fractions=(0.70, 0.15, 0.15), seed=0):
  """Returns (train, validation, held_out) index lists from a random frame-level split."""
  if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
    raise errors.ConfigError(f"frame split fractions must be 3 values summing to 1: {fractions}")
  order = np.random.default_rng(seed).permutation(num_rows)
  n_train = int(round(fractions[0] * num_rows))
  n_val = int(round(fractions[1] * num_rows))
  return (sorted(order[:n_train].tolist()), sorted(order[n_train:n_train + n_val].tolist()),
          sorted(order[n_train + n_val:].tolist()))


def _check_fraction(value, name):
  if not 0.0 <= value < 1.0:
    raise errors.ConfigError(f"{name} must be in [0, 1), got {value}")

"""How large a validation accuracy difference the track-wise split can resolve.

Validation images come in tracks of about 30 frames of one sign, so errors come in
tracks too. This scores every model on the validation split and, for each model
against the first, resamples whole tracks with replacement (paired: both models
see the same resampled tracks) to give a 95% interval of the accuracy difference.
Usage, from the repository root:
  python results/experiments/validation_resolution.py DATA_DIR REFERENCE MODEL [MODEL ...]
"""

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # pylint: disable=g-import-not-at-top

from tf_gtsrb.data import input_pipeline  # pylint: disable=g-import-not-at-top
from tf_gtsrb.models import runners  # pylint: disable=g-import-not-at-top

RESAMPLES = 10_000


def validation_tracks(data_dir):
  """(images, labels, track index per image) of the validation split."""
  images, labels, tracks = [], [], []
  for example in input_pipeline.load_split(data_dir, "validation").as_numpy_iterator():
    images.append(example["image"])
    labels.append(example["label"])
    tracks.append((example["label"], example["track_id"]))
  _, track_index = np.unique(np.array(tracks), axis=0, return_inverse=True)
  return np.stack(images), np.array(labels), track_index.ravel()


def track_bootstrap(correct_a, correct_b, track_index, seed=0):
  """2.5th and 97.5th percentiles of accuracy(b) - accuracy(a), in points, over
  resampled tracks."""
  num_tracks = track_index.max() + 1
  sizes = np.bincount(track_index, minlength=num_tracks)
  difference = np.bincount(track_index, weights=correct_b.astype(float) - correct_a,
                           minlength=num_tracks)
  draws = np.random.default_rng(seed).integers(0, num_tracks, (RESAMPLES, num_tracks))
  deltas = 100 * difference[draws].sum(axis=1) / sizes[draws].sum(axis=1)
  return np.percentile(deltas, [2.5, 97.5])


def main(data_dir, reference, *models):
  images, labels, track_index = validation_tracks(data_dir)
  print(f"{len(labels):,} validation images in {track_index.max() + 1} tracks; "
        f"{RESAMPLES:,} paired track resamples\n")
  print("| Model | Val (%) | Errors | Wrong tracks | Difference to the first (points) | "
        "95% interval |\n|---|---:|---:|---:|---:|---|")
  correct = {}
  for path in (reference,) + models:
    correct[path] = runners.load_runner(path).predict(images).argmax(axis=1) == labels
    wrong_tracks = len(np.unique(track_index[~correct[path]]))
    difference = 100 * (correct[path].mean() - correct[reference].mean())
    low, high = track_bootstrap(correct[reference], correct[path], track_index)
    print(f"| `{path}` | {100 * correct[path].mean():.2f} | {(~correct[path]).sum()} | "
          f"{wrong_tracks} | {difference:+.2f} | [{low:+.2f}, {high:+.2f}] |", flush=True)


if __name__ == "__main__":
  main(*sys.argv[1:])

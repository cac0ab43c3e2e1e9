"""Tiny GTSRB source layouts (official zips, Kaggle copy, class folders) written in tests.

Every image has a blue margin and a coloured sign area (its ROI), so ROI
cropping can be checked from the pixels: the ROI colour encodes the class.
"""

import io
import itertools
import os
import zipfile

import numpy as np
from PIL import Image

from tf_gtsrb.data import sources

OFFICIAL_HEADER = ["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2",
                   "ClassId"]
KAGGLE_HEADER = ["Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId", "Path"]
SIZES = ((40, 37), (29, 31), (53, 48), (15, 15), (33, 60))
MARGIN = (0, 0, 255)


def sign_colour(class_id):
  return (255, 5 * class_id, 40)


def roi_of(width, height):
  """An inclusive ROI leaving a margin of about 20% on each side."""
  return (width // 5, height // 5, width - 1 - width // 5, height - 1 - height // 5)


def sign_image(width, height, class_id, fmt="PPM", variant=0):
  """Encoded image bytes: MARGIN outside the ROI, the class colour inside, a variant pixel."""
  pixels = np.empty((height, width, 3), np.uint8)
  pixels[:] = MARGIN
  x1, y1, x2, y2 = roi_of(width, height)
  pixels[y1:y2 + 1, x1:x2 + 1] = sign_colour(class_id)
  pixels[0, 0] = (variant % 256, (variant // 256) % 256, 7)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, fmt)
  return buffer.getvalue()


def write_zip(path, members):
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
    for name in sorted(members):
      zf.writestr(name, members[name])


def csv_text(header, rows, delimiter):
  return "\r\n".join(delimiter.join(str(v) for v in row) for row in [header] + rows) + "\r\n"


def _train_specs(classes, tracks, frames):
  """Yields (n, class, track, frame, width, height) of every training image, n from 0."""
  for n, (c, track, frame) in enumerate(itertools.product(classes, range(tracks), range(frames))):
    yield (n, c, track, frame) + SIZES[n % len(SIZES)]


def _test_specs(classes, per_class):
  """Yields (i, class, width, height) of every test image, the classes taking turns."""
  for i in range(per_class * len(classes)):
    yield (i, classes[i % len(classes)]) + SIZES[i % len(SIZES)]


class OfficialLayout:
  """The three official archives, held as editable rows and members until `write`."""

  def __init__(self, classes=(0, 1, 2), tracks=2, frames=3, test_per_class=2):
    self.train_header = list(OFFICIAL_HEADER)
    self.test_header = list(OFFICIAL_HEADER)
    self.train_rows = {c: [] for c in classes}  # class -> rows of train_header values.
    self.train_images = {}  # zip member -> bytes.
    self.test_rows = []
    self.test_images = {}
    for n, c, track, frame, width, height in _train_specs(classes, tracks, frames):
      name = f"{track:05d}_{frame:05d}.ppm"
      self.train_rows[c].append([name, width, height, *roi_of(width, height), c])
      self.train_images[self.train_member(c, name)] = sign_image(width, height, c, variant=n)
    for i, c, width, height in _test_specs(classes, test_per_class):
      name = f"{i:05d}.ppm"
      self.test_rows.append([name, width, height, *roi_of(width, height), c])
      self.test_images[f"GTSRB/Final_Test/Images/{name}"] = sign_image(width, height, c,
                                                                       variant=1000 + i)

  @staticmethod
  def train_member(class_id, name):
    return f"GTSRB/Final_Training/Images/{class_id:05d}/{name}"

  @property
  def num_train(self):
    return sum(len(rows) for rows in self.train_rows.values())

  def write(self, root):
    os.makedirs(root, exist_ok=True)
    members = dict(self.train_images)
    for c, rows in self.train_rows.items():
      members[self.train_member(c, f"GT-{c:05d}.csv")] = csv_text(self.train_header, rows, ";")
    write_zip(os.path.join(root, sources.TRAIN_ARCHIVE), members)
    write_zip(os.path.join(root, sources.TEST_ARCHIVE), self.test_images)
    write_zip(os.path.join(root, sources.TEST_GT_ARCHIVE),
              {"GT-final_test.csv": csv_text(self.test_header, self.test_rows, ";")})
    return str(root)


class KaggleLayout:
  """An extracted Kaggle copy: Train.csv, Test.csv, Train/<cls>/CCCCC_TTTTT_IIIII.png, Test/."""

  def __init__(self, classes=(0, 1, 2), tracks=2, frames=3, test_per_class=2):
    self.train_rows, self.test_rows, self.files = [], [], {}
    for n, c, track, frame, width, height in _train_specs(classes, tracks, frames):
      path = f"Train/{c}/{c:05d}_{track:05d}_{frame:05d}.png"
      self.train_rows.append([width, height, *roi_of(width, height), c, path])
      self.files[path] = sign_image(width, height, c, "PNG", variant=n)
    for i, c, width, height in _test_specs(classes, test_per_class):
      path = f"Test/{i:05d}.png"
      self.test_rows.append([width, height, *roi_of(width, height), c, path])
      self.files[path] = sign_image(width, height, c, "PNG", variant=1000 + i)

  def write(self, root):
    for path, data in self.files.items():
      full = os.path.join(root, path)
      os.makedirs(os.path.dirname(full), exist_ok=True)
      with open(full, "wb") as f:
        f.write(data)
    with open(os.path.join(root, "Train.csv"), "w", newline="") as f:
      f.write(csv_text(KAGGLE_HEADER, self.train_rows, ","))
    with open(os.path.join(root, "Test.csv"), "w", newline="") as f:
      f.write(csv_text(KAGGLE_HEADER, self.test_rows, ","))
    return str(root)


def write_folder(root, train_counts, test_counts=None, fmt="PNG", suffix=".png",
                 zero_pad=False):
  """Writes root/train/<cls>/*.png (and root/test/... when `test_counts`); returns root."""
  n = 0
  for split, counts in (("train", train_counts), ("test", test_counts)):
    for c, count in (counts or {}).items():
      folder = os.path.join(root, split, f"{c:05d}" if zero_pad else str(c))
      os.makedirs(folder, exist_ok=True)
      for i in range(count):
        width, height = SIZES[n % len(SIZES)]
        with open(os.path.join(folder, f"img{i:03d}{suffix}"), "wb") as f:
          f.write(sign_image(width, height, c, fmt, variant=n))
        n += 1
  return str(root)

"""GTSRB: the German Traffic Sign Recognition Benchmark as a TFDS dataset.

Manual download: put the three official archives in one directory
(GTSRB_Final_Training_Images.zip, GTSRB_Final_Test_Images.zip,
GTSRB_Final_Test_GT.zip), or an extracted Kaggle copy, or a folder of
class sub-directories, and build with

  gtsrb-prepare-data --source=official --archive_dir=/path/to/archives \
      --output_dir=~/tensorflow_datasets

then load it with

  builder = tfds.builder_from_directory(dataset_dir)
  ds = builder.as_dataset(split="train")

Splits: `train` and `validation` come from the official training set, split by
track (whole ~30-frame tracks of one physical sign on one side, stratified by
class) or, with `split_mode="frame"`, by a random 70/15/15 frame split whose
remaining 15% is the extra split `frame_test`. With `val_fraction=0` (track split)
every training track goes to `train` and there is no `validation` split: the
final fit of a recipe already tuned on the track split. `test` is the official test set
(12,630 images). Balancing with augmented copies applies to `train` only.
"""

import collections
import dataclasses
import logging

import numpy as np
import tensorflow_datasets as tfds

from tf_gtsrb import errors
from tf_gtsrb.data import balance
from tf_gtsrb.data import images as image_lib
from tf_gtsrb.data import sources
from tf_gtsrb.data import splits
from tf_gtsrb.data.annotations import NO_TRACK
from tf_gtsrb.data.class_names import CLASS_NAMES

_CITATION = """\
@article{Stallkamp2012,
  title = {Man vs. computer: Benchmarking machine learning algorithms for traffic sign recognition},
  author = {J. Stallkamp and M. Schlipsing and J. Salmen and C. Igel},
  journal = {Neural Networks},
  year = {2012},
  volume = {32},
  pages = {323-332},
}"""
_HOMEPAGE = "https://benchmark.ini.rub.de/gtsrb_news.html"


@dataclasses.dataclass
class GtsrbConfig(tfds.core.BuilderConfig):
  """How the dataset is built: source layout, image size, ROI crop, split, balancing."""
  source: str = "official"
  image_size: int = 32
  roi_crop: bool = False
  split_mode: str = "track"
  val_fraction: float = 0.15
  split_seed: int = 0
  balance_target: int = 2250
  balance_seed: int = 0

  @classmethod
  def create(cls, **kwargs):
    """Builds a config whose name encodes every setting that changes the records."""
    config = cls(name="x", **kwargs)
    config.validate()
    seeded = config.balance_target and config.balance_seed
    name = (f"{config.source}-{config.image_size}px{'-roi' if config.roi_crop else ''}-"
            f"{config.split_mode}{config.split_seed}-val{int(round(config.val_fraction * 100))}-"
            f"bal{config.balance_target}{f'-seed{config.balance_seed}' if seeded else ''}")
    return dataclasses.replace(config, name=name)

  def validate(self):
    if self.source not in sources.SOURCES:
      raise errors.ConfigError(f"unknown source {self.source!r}; choose one of {sources.SOURCES}")
    if not isinstance(self.image_size, int) or self.image_size < 16:
      raise errors.ConfigError(f"image_size must be an integer >= 16, got {self.image_size}")
    if self.split_mode not in splits.SPLIT_MODES:
      raise errors.ConfigError(f"split_mode must be one of {splits.SPLIT_MODES}")
    if not 0.0 <= self.val_fraction < 1.0:
      raise errors.ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
    if self.split_mode == "frame" and not 0.0 < self.val_fraction < 0.5:
      raise errors.ConfigError(
          f"split_mode 'frame' holds out 2 x val_fraction; val_fraction must be in (0, 0.5), "
          f"got {self.val_fraction}")
    if self.balance_target < 0:
      raise errors.ConfigError(f"balance_target must be >= 0, got {self.balance_target}")


# A split whose unreadable images exceed this share of its listed ones is refused: a wrong
# or damaged archive, not the odd bad file (those are skipped, counted and reported).
MAX_SKIPPED_FRACTION = 0.01


class Gtsrb(tfds.core.GeneratorBasedBuilder):
  """GTSRB traffic signs: 43 classes, official train/test sets, track-wise validation."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [GtsrbConfig.create()]
  MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

  def __init__(self, *args, max_skipped_fraction=MAX_SKIPPED_FRACTION, **kwargs):
    super().__init__(*args, **kwargs)
    self.max_skipped_fraction = max_skipped_fraction
    self.stats = {"skipped": [], "counts": {}, "class_counts": {}, "missing_classes": {}}

  def _info(self):
    size = self.builder_config.image_size
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(size, size, 3)),
            "label": tfds.features.ClassLabel(names=CLASS_NAMES),
            "track_id": tfds.features.Scalar(dtype=np.int64),
            "roi": tfds.features.BBoxFeature(),
            "filename": tfds.features.Text(),
            "augmented": tfds.features.Scalar(dtype=np.bool_),
        }),
        supervised_keys=("image", "label"),
        homepage=_HOMEPAGE,
        citation=_CITATION,
    )

  def _split_generators(self, dl_manager):
    config = self.builder_config
    root = str(dl_manager.manual_dir)
    train_records = sources.read_records(config.source, root, "train")
    test_records = sources.read_records(config.source, root, "test")
    for records in (train_records, test_records):
      _check_unique(records)
    rows = [r.annotation for r in train_records]
    generators = {}
    if config.split_mode == "track":
      train_idx, val_idx = splits.split_by_track(rows, config.val_fraction, config.split_seed)
    else:
      held = config.val_fraction
      train_idx, val_idx, frame_test_idx = splits.split_by_frame(
          len(rows), (1 - 2 * held, held, held), config.split_seed)
      generators["frame_test"] = self._generate_examples(
          [train_records[i] for i in frame_test_idx], "frame_test")
    generators["train"] = self._generate_examples(
        [train_records[i] for i in train_idx], "train", balance_target=config.balance_target)
    if val_idx:  # val_fraction 0: every track trains (a final fit), no validation split.
      generators["validation"] = self._generate_examples([train_records[i] for i in val_idx],
                                                         "validation")
    if test_records:
      generators["test"] = self._generate_examples(test_records, "test")
    return generators

  def _generate_examples(self, records, split, balance_target=0):
    """Yields decoded, resized examples; then, for `train`, the balancing copies.

    Raises DataError when more than `max_skipped_fraction` of the split's images
    are unreadable; logs a warning (and records it) for classes the split lacks.
    """
    config = self.builder_config
    missing = sorted(set(range(len(CLASS_NAMES))) - {r.annotation.class_id for r in records})
    if missing:
      self.stats["missing_classes"][split] = missing
      logging.warning("split %s has no images of %d classes: %s", split, len(missing),
                      ", ".join(map(str, missing)))
    kept_images, kept_labels, kept_rows = [], [], []
    skipped = 0
    for record in records:
      example = self._decode(record)
      if example is None:
        skipped += 1
        if skipped > self.max_skipped_fraction * len(records):
          raise errors.DataError(
              f"{record.source}: split {split}: more than {100 * self.max_skipped_fraction:g}% "
              f"of its {len(records)} listed images are unreadable ({skipped} so far; this one: "
              f"{self.stats['skipped'][-1].split(': ', 1)[-1]}); a wrong or damaged archive?")
        continue
      if balance_target:
        kept_images.append(example["image"])
        kept_labels.append(record.annotation.class_id)
        kept_rows.append(record.annotation)
      yield record.source, example
    if balance_target:
      before = collections.Counter(kept_labels)
      for n, (index, seed) in enumerate(
          balance.plan_balancing(kept_labels, balance_target, config.balance_seed)):
        row = kept_rows[index]
        yield f"balance/{n}", {
            "image": balance.augment_image(kept_images[index], seed),
            "label": row.class_id,
            "track_id": row.track_id,
            "roi": _roi_box(row),
            "filename": f"balance_{n:06d}_{row.filename}",
            "augmented": True,
        }
      after = collections.Counter(kept_labels)
      for class_id, count in before.items():
        after[class_id] = max(count, balance_target)
      self.stats["class_counts"] = {"before": dict(before), "after": dict(after)}

  def _decode(self, record):
    """Decodes one record, or logs and counts a skip when its image is bad."""
    row = record.annotation
    try:
      image = image_lib.decode_image(record.load(), record.source)
      if row.width and (image.shape[1], image.shape[0]) != (row.width, row.height):
        raise errors.DataError(
            f"{record.source}: image is {image.shape[1]}x{image.shape[0]} but the annotation "
            f"says {row.width}x{row.height}")
    except errors.DataError as e:  # One bad image is skipped, counted and reported.
      logging.warning("skipping image: %s", e)
      self.stats["skipped"].append(str(e))
      return None
    roi = row.roi if self.builder_config.roi_crop and row.roi else None
    return {
        "image": image_lib.crop_and_resize(image, self.builder_config.image_size, roi),
        "label": row.class_id,
        "track_id": row.track_id if row.track_id != NO_TRACK else NO_TRACK,
        "roi": _roi_box(row),
        "filename": row.filename,
        "augmented": False,
    }


def _check_unique(records):
  """DataError naming the first image listed twice, with the number of duplicates."""
  seen, duplicates = set(), []
  for record in records:
    if record.source in seen:
      duplicates.append(record.source)
    seen.add(record.source)
  if duplicates:
    raise errors.DataError(f"{duplicates[0]}: listed twice in the annotations "
                           f"({len(duplicates)} duplicate rows in all)")


def _roi_box(row):
  """The ROI as a TFDS BBox (normalised ymin, xmin, ymax, xmax); the whole image if unknown."""
  if not row.roi or not row.width:
    return tfds.features.BBox(0.0, 0.0, 1.0, 1.0)
  x1, y1, x2, y2 = row.roi
  clip = lambda v: float(min(max(v, 0.0), 1.0))
  return tfds.features.BBox(clip(y1 / row.height), clip(x1 / row.width),
                            clip((y2 + 1) / row.height), clip((x2 + 1) / row.width))

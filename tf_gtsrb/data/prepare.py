"""Builds the GTSRB TFDS dataset from official archives, the Kaggle copy or a folder."""

import os
import shutil
import time

import tensorflow as tf
import tensorflow_datasets as tfds

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb import locking
from tf_gtsrb.data import archives
from tf_gtsrb.data import gtsrb
from tf_gtsrb.data import kaggle_download
from tf_gtsrb.data import sample
from tf_gtsrb.data import sources
from tf_gtsrb.data.class_names import CLASS_NAMES


def resolve_source_dir(source, source_dir=None, download_dir=None):
  """Returns the directory to read `source` from, downloading it first if asked.

  Official archives: `source_dir` if given, else downloaded into `download_dir`
  (checksums verified), else the bundled sample. Kaggle: `source_dir` (an
  extracted copy) or a download through the Kaggle API into `download_dir`.
  """
  if source_dir:
    if not os.path.isdir(source_dir):
      raise errors.DataError(f"{source_dir}: {source} data directory not found")
    return source_dir
  if source == "official":
    if download_dir:
      archives.fetch_official_archives(download_dir)
      return download_dir
    return sample.SAMPLE_DIR
  if source == "kaggle":
    if not download_dir:
      raise errors.ConfigError("kaggle source needs --archive_dir (extracted copy) or --download_dir")
    return kaggle_download.download_kaggle(download_dir)
  raise errors.ConfigError(f"{source} source needs --archive_dir pointing at the folder")


SOURCE_FILE = "source.json"  # In the dataset directory: the source it was built from.


def prepare_dataset(output_dir, source="official", source_dir=None, download_dir=None,
                    rebuild=False, max_skipped_fraction=gtsrb.MAX_SKIPPED_FRACTION,
                    **config_kwargs):
  """Builds the dataset, or reuses it when built from the same source; returns a summary.

  The dataset's identity is its settings (the TFDS config name) and its source's
  content fingerprint (`sources.fingerprint`, recorded in SOURCE_FILE). A
  dataset built from other data is never reused: DataError, or with `rebuild`
  it is rebuilt, the old one kept until the new one is complete. Holds the lock
  of `output_dir` throughout. A split with more than `max_skipped_fraction`
  unreadable images, or an image listed twice, is a DataError (nothing is
  written); a class missing from a split is logged and listed in the summary's
  `missing_classes`. `config_kwargs` are `GtsrbConfig` fields:
  image_size, roi_crop, split_mode, val_fraction, split_seed, balance_target,
  balance_seed.
  """
  config = gtsrb.GtsrbConfig.create(source=source, **config_kwargs)
  root = resolve_source_dir(source, source_dir, download_dir)
  wanted = {"source": source, "path": os.path.abspath(root),
            "fingerprint": sources.fingerprint(source, root)}
  start = time.time()
  with locking.directory_lock(output_dir):
    builder = _builder(config, output_dir, max_skipped_fraction)
    dataset_dir = str(builder.data_dir)
    replaced = None
    built = recorded_source(dataset_dir) if os.path.isdir(dataset_dir) else None
    if built is not None and (built.get("source"), built.get("fingerprint")) != (
        source, wanted["fingerprint"]):
      if not rebuild:
        raise errors.DataError(
            f"{dataset_dir}: built from {built.get('path', 'an unrecorded source')} "
            f"(fingerprint {built.get('fingerprint', 'unknown')}), not from {root} "
            f"(fingerprint {wanted['fingerprint']}); pass --rebuild or another output directory")
      replaced = f"{dataset_dir}.replaced-{os.getpid()}"
      os.rename(dataset_dir, replaced)
      builder = _builder(config, output_dir, max_skipped_fraction)
      built = None
    try:
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=root))
      if built is None:
        io_utils.write_json(os.path.join(dataset_dir, SOURCE_FILE), wanted)
    except BaseException as e:
      if replaced and not os.path.exists(dataset_dir):
        os.rename(replaced, dataset_dir)  # The old dataset stays usable.
      if isinstance(e, (OSError, tf.errors.OpError)):  # A full disk, a read-only directory.
        reason = getattr(e, "strerror", None) or getattr(e, "message", None) or str(e)
        raise errors.GtsrbError(f"{output_dir}: cannot write the dataset: {reason}") from e
      raise
    if replaced:
      shutil.rmtree(replaced)
  splits = {name: info.num_examples for name, info in builder.info.splits.items()}
  return {
      "dataset_dir": dataset_dir,
      "config": config.name,
      "source_dir": root,
      "source_fingerprint": wanted["fingerprint"],
      "splits": splits,
      "skipped": builder.stats["skipped"],
      "missing_classes": builder.stats["missing_classes"],
      "class_counts": builder.stats["class_counts"],
      "seconds": round(time.time() - start, 1),
  }


def recorded_source(dataset_dir):
  """What SOURCE_FILE in `dataset_dir` records; {} when absent or unreadable."""
  try:
    record = io_utils.read_json(os.path.join(dataset_dir, SOURCE_FILE))
  except errors.GtsrbError:
    return {}
  return record if isinstance(record, dict) else {}


def _builder(config, output_dir, max_skipped_fraction=gtsrb.MAX_SKIPPED_FRACTION):
  registered = config.name in gtsrb.Gtsrb.builder_configs  # TFDS wants registered ones by name.
  return gtsrb.Gtsrb(config=config.name if registered else config, data_dir=output_dir,
                     max_skipped_fraction=max_skipped_fraction)


def summary_table(summary):
  """Markdown table of split sizes, skips and (when balanced) per-class counts."""
  lines = ["| Split | Examples |", "|---|---:|"]
  lines += [f"| {name} | {count:,} |" for name, count in sorted(summary["splits"].items())]
  lines.append(f"| skipped (bad images) | {len(summary['skipped'])} |")
  for split, missing in sorted((summary.get("missing_classes") or {}).items()):
    lines.append(f"| {split}: classes with no image | {len(missing)} ({', '.join(map(str, missing))}) |")
  counts = summary["class_counts"]
  if counts:
    from tf_gtsrb.data import balance  # pylint: disable=g-import-not-at-top
    before = {int(k): v for k, v in counts["before"].items()}
    after = {int(k): v for k, v in counts["after"].items()}
    lines += ["", "Training images per class (balancing):", "",
              balance.class_count_table(before, after, CLASS_NAMES)]
  return "\n".join(lines)

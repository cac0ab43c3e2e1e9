"""Builds the GTSRB TFDS dataset from official archives, the Kaggle copy or a folder."""

import os
import time

import tensorflow_datasets as tfds

from tf_gtsrb import errors
from tf_gtsrb.data import archives
from tf_gtsrb.data import gtsrb
from tf_gtsrb.data import kaggle_download
from tf_gtsrb.data import sample
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


def prepare_dataset(output_dir, source="official", source_dir=None, download_dir=None,
                    **config_kwargs):
  """Builds (or reuses, if already complete) the dataset; returns a summary dict.

  `config_kwargs` are `GtsrbConfig` fields: image_size, roi_crop, split_mode,
  val_fraction, split_seed, balance_target, balance_seed.
  """
  config = gtsrb.GtsrbConfig.create(source=source, **config_kwargs)
  root = resolve_source_dir(source, source_dir, download_dir)
  registered = config.name in gtsrb.Gtsrb.builder_configs  # TFDS wants registered ones by name.
  builder = gtsrb.Gtsrb(config=config.name if registered else config, data_dir=output_dir)
  start = time.time()
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=root))
  splits = {name: info.num_examples for name, info in builder.info.splits.items()}
  return {
      "dataset_dir": str(builder.data_dir),
      "config": config.name,
      "source_dir": root,
      "splits": splits,
      "skipped": builder.stats["skipped"],
      "class_counts": builder.stats["class_counts"],
      "seconds": round(time.time() - start, 1),
  }


def summary_table(summary):
  """Markdown table of split sizes, skips and (when balanced) per-class counts."""
  lines = ["| Split | Examples |", "|---|---:|"]
  lines += [f"| {name} | {count:,} |" for name, count in sorted(summary["splits"].items())]
  lines.append(f"| skipped (bad images) | {len(summary['skipped'])} |")
  counts = summary["class_counts"]
  if counts:
    from tf_gtsrb.data import balance  # pylint: disable=g-import-not-at-top
    before = {int(k): v for k, v in counts["before"].items()}
    after = {int(k): v for k, v in counts["after"].items()}
    lines += ["", "Training images per class (balancing):", "",
              balance.class_count_table(before, after, CLASS_NAMES)]
  return "\n".join(lines)

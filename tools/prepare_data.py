"""Builds the GTSRB TFDS dataset (train / validation / test TFRecords).

  gtsrb-prepare-data --output_dir=work/data                          # bundled sample
  gtsrb-prepare-data --archive_dir=../shared/gtsrb --output_dir=work/data
  gtsrb-prepare-data --download_dir=~/gtsrb_archives --output_dir=work/data
  gtsrb-prepare-data --source=kaggle --archive_dir=~/kaggle_gtsrb --output_dir=work/data
"""

from absl import flags

from tf_gtsrb import io_utils
from tf_gtsrb.data import prepare
from tf_gtsrb.data import sources
from tf_gtsrb.data import splits
from tf_gtsrb_tools import common

FLAGS = flags.FLAGS
flags.DEFINE_enum("source", "official", sources.SOURCES, "Layout of the input data.")
flags.DEFINE_string("archive_dir", None,
                    "Directory holding the data already: the three official zips, an extracted "
                    "Kaggle copy, or a folder of class sub-directories. Default: the bundled "
                    "sample (official source) unless --download_dir is given.")
flags.DEFINE_string("download_dir", None,
                    "Download the data here first (official site, or the Kaggle API).")
flags.DEFINE_string("output_dir", "work/data", "TFDS data directory to write.")
flags.DEFINE_integer("image_size", 32, "Side of the square images, in pixels.")
flags.DEFINE_bool("roi_crop", False, "Crop each image to its annotated ROI before resizing.")
flags.DEFINE_enum("split_mode", "track", splits.SPLIT_MODES,
                  "track: whole tracks per side (honest); frame: published 70/15/15 frame split.")
flags.DEFINE_float("val_fraction", 0.15,
                   "Share of training tracks (or frames) for validation; 0 (track split only): "
                   "every track trains and there is no validation split.")
flags.DEFINE_integer("split_seed", 0, "Seed of the train/validation split.")
flags.DEFINE_bool("rebuild", False,
                  "Rebuild a dataset in --output_dir that was built from other data (without it, "
                  "that is an error; a dataset from the same data is always reused).")
flags.DEFINE_float("max_skipped_fraction", 0.01,
                   "Refuse a split when more than this share of its listed images cannot be read "
                   "(a wrong or damaged archive); fewer are skipped, counted and listed.")
flags.DEFINE_integer("balance_target", 2250,
                     "Grow every training class to this many images with augmented copies; 0 off.")


def main():
  summary = prepare.prepare_dataset(
      FLAGS.output_dir, source=FLAGS.source, source_dir=FLAGS.archive_dir,
      download_dir=FLAGS.download_dir, rebuild=FLAGS.rebuild,
      max_skipped_fraction=FLAGS.max_skipped_fraction, image_size=FLAGS.image_size, roi_crop=FLAGS.roi_crop,
      split_mode=FLAGS.split_mode, val_fraction=FLAGS.val_fraction,
      split_seed=FLAGS.split_seed, balance_target=FLAGS.balance_target)
  io_utils.write_json(f"{summary['dataset_dir']}/prepare_summary.json", summary)
  print(f"Dataset {summary['config']} in {summary['dataset_dir']} "
        f"(from {summary['source_dir']}, {summary['seconds']} s)\n")
  print(prepare.summary_table(summary))
  for problem in summary["skipped"][:20]:
    print(f"skipped: {problem}")


def run():
  common.run(main, writes=("output_dir",))


if __name__ == "__main__":
  run()

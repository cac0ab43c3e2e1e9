"""Cuts the bundled GTSRB sample out of the official archives.

  python tools/make_sample.py --archive_dir=../shared/gtsrb --output_dir=tf_gtsrb/data/sample
"""

from absl import flags

from tf_gtsrb.data import sample
from tf_gtsrb_tools import common

FLAGS = flags.FLAGS
flags.DEFINE_string("archive_dir", None, "Directory holding the three official GTSRB archives.")
flags.DEFINE_string("output_dir", sample.SAMPLE_DIR, "Where to write the cut-down archives.")
flags.DEFINE_integer("tracks_per_class", 3, "Training tracks kept per class.")
flags.DEFINE_integer("frames_per_track", 5, "Frames kept per training track.")
flags.DEFINE_integer("test_per_class", 10, "Test images kept per class.")
flags.mark_flag_as_required("archive_dir")


def main():
  counts = sample.make_sample(FLAGS.archive_dir, FLAGS.output_dir, FLAGS.tracks_per_class,
                              FLAGS.frames_per_track, FLAGS.test_per_class)
  print(f"Wrote {counts['train']} training and {counts['test']} test images to {FLAGS.output_dir}")


def run():
  common.run(main, writes=("output_dir",))


if __name__ == "__main__":
  run()

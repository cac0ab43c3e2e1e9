"""Renders the corruption contact sheet: a few test images under every kind and severity.

Used to calibrate the severities by eye (the top one must stay recognisable).

Example:
  python tools/corruption_sheet.py --data_dir=runs/gtsrb --output=docs/corruptions.png
"""

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from absl import flags

from tf_gtsrb_tools import common

FLAGS = flags.FLAGS

flags.DEFINE_string("data_dir", None, "Prepared dataset directory (written by gtsrb-prepare-data).")
flags.DEFINE_string("output", "docs/corruptions.png", "Contact sheet PNG to write.")
flags.DEFINE_list("indices", ["0", "1", "2"], "Test-split positions of the images shown.")
flags.DEFINE_string("kinds", "all", "Comma list of corruption kinds, or 'all'.")
flags.DEFINE_integer("upscale", 4, "Nearest-neighbour magnification of each tile (factor).")
flags.DEFINE_integer("seed", 0, "Corruption seed.")


def main():
  common.require_flags("data_dir")
  common.existing_dir("data_dir")
  common.at_least("upscale", 1)
  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.data import input_pipeline
  from tf_gtsrb.evaluation import corruptions
  from tf_gtsrb.evaluation import robustness
  # pylint: enable=g-import-not-at-top
  kinds = corruptions.parse_kinds(FLAGS.kinds)
  indices = [int(i) for i in FLAGS.indices]
  images, _ = input_pipeline.load_arrays(FLAGS.data_dir, "test", limit=max(indices) + 1)
  robustness.save_contact_sheet(images[indices], FLAGS.output, kinds=kinds, seed=FLAGS.seed,
                                upscale=FLAGS.upscale, indices=indices)
  print(f"wrote {FLAGS.output}")


def run():
  common.run(main)


if __name__ == "__main__":
  run()

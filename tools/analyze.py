"""Analyses a trained TrafficSignCNN for channel pruning; recommends per-layer prune percentages.

Writes analysis.json (with 'recommended_percentages', the input of
gtsrb-prune-channels --analysis), analysis.md and per-layer histogram PNGs.

Example:
  gtsrb-analyze --model=runs/base/model.keras --data_dir=data/gtsrb --num_images=512
"""

import os

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from absl import flags

from tf_gtsrb import errors
from tf_gtsrb_tools import common

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "Path to the trained TrafficSignCNN .keras file.")
flags.DEFINE_string("data_dir", None, "Prepared dataset directory (written by gtsrb-prepare-data).")
flags.DEFINE_integer("num_images", 512,
                     "Number of training images (random sample) used for activation statistics.")
flags.DEFINE_integer("seed", 0, "Seed of the image sample.")
flags.DEFINE_integer("max_pairs", 200_000,
                     "Most filter pairs compared per layer for redundancy (count).")
flags.DEFINE_float("max_percent", 50.0, "Upper limit of a recommended prune percentage (%).")
flags.DEFINE_string("output_dir", None,
                    "Directory for analysis.json/.md and histograms "
                    "(default: <model directory>/analysis).")


def main():
  common.require_flags("model", "data_dir")
  model_path, data_dir = common.existing_file("model"), common.existing_dir("data_dir")
  common.at_least("num_images", 1)
  common.at_least("max_pairs", 1)
  common.percent("max_percent")
  output_dir = FLAGS.output_dir or os.path.join(
      os.path.dirname(os.path.abspath(model_path)), "analysis")

  # Imported here so that flag errors are reported without loading TensorFlow.
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.compression import analysis  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.data import input_pipeline  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.models import io as model_io  # pylint: disable=g-import-not-at-top

  model = model_io.load_classifier(model_path)
  size = input_pipeline.image_size(data_dir)
  if tuple(model.input_shape[1:3]) != (size, size):
    raise errors.ModelError(
        f"{model_path}: model takes {model.input_shape[1]}x{model.input_shape[2]} images but "
        f"{data_dir} holds {size}x{size} images")
  images, _ = input_pipeline.load_arrays(data_dir, "train")
  rng = np.random.default_rng(FLAGS.seed)
  sample = np.sort(rng.choice(len(images), min(FLAGS.num_images, len(images)), replace=False))
  images = input_pipeline.to_float(images[sample])

  result = analysis.analyze_model(model, images, max_pairs=FLAGS.max_pairs)
  recommendations = analysis.recommend_prune_percentages(result, FLAGS.max_percent)
  paths = analysis.write_analysis_report(result, recommendations, output_dir)
  print(f"{model_path}: analysed on {len(images)} training images")
  print(analysis.markdown_table(result, recommendations))
  for path in paths:
    print(f"wrote {path}")


def run():
  common.run(main, writes=("output_dir",))


if __name__ == "__main__":
  run()

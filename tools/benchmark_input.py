"""Measures whether the tf.data input pipeline limits training speed.

Prints the augmented pipeline's throughput alone, the share of each training
step spent waiting for input, and the verdict.

  gtsrb-benchmark-input --data_dir=work/data --batch_size=128 --steps=100
"""

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from absl import flags

from tf_gtsrb import io_utils
from tf_gtsrb.benchmark import input_speed
from tf_gtsrb.models import MODEL_NAMES
from tf_gtsrb_tools import common

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None,
                    "Prepared dataset directory (gtsrb-prepare-data --output_dir).")
flags.DEFINE_enum("split", "train", ["train", "validation", "test"],
                  "Split whose images feed the pipeline.")
flags.DEFINE_integer("limit", None, "Use only the first N images of the split (count).")
flags.DEFINE_integer("batch_size", 128, "Images per batch.")
flags.DEFINE_integer("steps", 100, "Timed batches / training steps per measurement (count).")
flags.DEFINE_integer("warmup", 10, "Untimed batches / steps before timing (count).")
flags.DEFINE_enum("model", "traffic_sign_cnn", MODEL_NAMES, "Architecture trained in part 2.")
flags.DEFINE_integer("seed", 0, "Seed of data order, augmentation and initial weights.")
flags.DEFINE_float("threshold", input_speed.DEFAULT_THRESHOLD,
                   "Input is the bottleneck when steps wait at least this share of their time "
                   "for input (fraction).")
flags.DEFINE_string("output_json", None, "Also write the measurements to this JSON file.")
flags.mark_flag_as_required("data_dir")


def main():
  results = input_speed.benchmark_data_dir(
      FLAGS.data_dir, split=FLAGS.split, limit=FLAGS.limit, model_name=FLAGS.model,
      batch_size=FLAGS.batch_size, steps=FLAGS.steps, warmup=FLAGS.warmup, seed=FLAGS.seed,
      threshold=FLAGS.threshold)
  print(f"Input benchmark: {results['model']} on {results['num_examples']:,} "
        f"{results['image_size']}x{results['image_size']} images of '{results['split']}', "
        f"batch {results['batch_size']}, {results['steps']} timed steps, "
        f"{results['cpu_count']} CPUs, {results['gpus']} GPUs\n")
  print(input_speed.results_table(results))
  print()
  print(input_speed.verdict(results))
  if FLAGS.output_json:
    io_utils.write_json(FLAGS.output_json, results)
    print(f"\nWrote {FLAGS.output_json}")


def run():
  common.run(main)


if __name__ == "__main__":
  run()

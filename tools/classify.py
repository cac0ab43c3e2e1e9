"""Classifies traffic-sign images with the released INT8 model (or another .tflite).

Arguments are image files, directories (their image files) or glob patterns.
Prints one result per image; an image that cannot be read gets an error line
on stderr, the others still run, and the exit status is 1.

Example:
  gtsrb-classify docs/images/stop.png --top_k=3
  gtsrb-classify 'photos/*.jpg' --format=csv > predictions.csv
"""

import sys

from absl import flags

from tf_gtsrb import classifier as classifier_lib
from tf_gtsrb import errors
from tf_gtsrb_tools import common

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "A .tflite model (int8, uint8 or float32 input); default: "
                    "the released INT8 model.")
flags.DEFINE_string("labels", None, "labels.txt, one class name a line (line index = class "
                    "id); default: the released labels.")
flags.DEFINE_integer("top_k", 1, "Classes printed per image, most probable first (count).")
flags.DEFINE_enum("format", "text", ["text", "json", "csv"],
                  "Output: text lines, JSON lines (one object per image) or CSV (one row per "
                  "image and rank).")
flags.DEFINE_integer("threads", 1, "CPU threads for the LiteRT interpreter.")


def main(args):
  if not args:
    raise errors.ConfigError("give one or more image files, directories or glob patterns")
  common.at_least("top_k", 1)
  common.at_least("threads", 1)
  classifier = classifier_lib.Classifier(FLAGS.model, FLAGS.labels, num_threads=FLAGS.threads)
  if FLAGS.format == "csv":
    print(classifier_lib.CSV_HEADER)
  failed = 0
  for path, predictions, error in classifier_lib.classify_files(
      classifier, classifier_lib.image_paths(args), FLAGS.top_k):
    if error:
      failed += 1
      print(f"error: {error}", file=sys.stderr)
    else:
      print(classifier_lib.format_result(path, predictions, FLAGS.format), flush=True)
  return 1 if failed else 0


def run():
  common.run(main, takes_args=True)


if __name__ == "__main__":
  run()

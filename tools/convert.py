"""Converts a .keras model to TFLite (full INT8, float32, float16, dynamic range).

Writes model_<mode>.tflite for every mode, and for INT8 the C array
(model_int8.cc/.h), micro_ops.txt (TFLite Micro op resolver lines); also
labels.txt and conversion.json (sizes, ops, io quantization, arena estimate,
integer check).

Example:
  gtsrb-convert --model=runs/qat/model.keras --data_dir=data/gtsrb \
      --output_dir=runs/qat/tflite
"""

import os

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from absl import flags

from tf_gtsrb import errors
from tf_gtsrb_tools import common

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "Path to the .keras model to convert.")
flags.DEFINE_string("data_dir", None,
                    "Prepared dataset directory; INT8 calibration images come from its "
                    "train split (needed for the int8 mode).")
flags.DEFINE_string("output_dir", None,
                    "Directory for the outputs (default: <model directory>/tflite).")
flags.DEFINE_list("modes", ["int8", "float32", "float16", "dynamic"],
                  "Comma list of conversions: int8, float32, float16, dynamic.")
flags.DEFINE_enum("io_type", "int8", ["int8", "uint8"],
                  "Input/output type of the int8 model.")
flags.DEFINE_integer("num_calibration_images", 500,
                     "Number of train images (count) for INT8 calibration.")
flags.DEFINE_boolean("c_array", True,
                     "Also write the int8 model as a C array (model_int8.cc/.h) and the "
                     "TFLite Micro op resolver lines (micro_ops.txt).")
flags.DEFINE_string("array_name", None,
                    "C identifier of the model array (default: g_model_int8_model, from the "
                    "file name).")


def _check_flags():
  from tf_gtsrb.export import tflite  # pylint: disable=g-import-not-at-top
  common.require_flags("model")
  common.existing_file("model")
  modes = [m.strip() for m in FLAGS.modes if m.strip()]
  if not modes:
    raise errors.ConfigError("--modes is empty")
  for mode in modes:
    if mode not in tflite.MODES:
      raise errors.ConfigError(
          f"--modes: unknown mode {mode!r}; choose from {', '.join(tflite.MODES)}")
  if len(set(modes)) != len(modes):
    raise errors.ConfigError(f"--modes lists a mode twice: {','.join(modes)}")
  if "int8" in modes:
    if not FLAGS.data_dir:
      raise errors.ConfigError("--data_dir is required for int8 conversion (calibration images)")
    common.existing_dir("data_dir")
  common.at_least("num_calibration_images", 1)
  if FLAGS.c_array and "int8" in modes and FLAGS.array_name is not None:
    from tf_gtsrb.export import c_array  # pylint: disable=g-import-not-at-top
    c_array.check_name(FLAGS.array_name, "--array_name")
  return modes


def main():
  modes = _check_flags()
  output_dir = FLAGS.output_dir or os.path.join(
      os.path.dirname(os.path.abspath(FLAGS.model)), "tflite")

  # pylint: disable=g-import-not-at-top
  import numpy as np
  from tf_gtsrb.data import input_pipeline
  from tf_gtsrb.export import export
  from tf_gtsrb.models import io as model_io
  # pylint: enable=g-import-not-at-top

  model = model_io.load_classifier(FLAGS.model)
  calibration = None
  if "int8" in modes:
    calibration, calibration_labels = input_pipeline.load_arrays(
        FLAGS.data_dir, "train", limit=FLAGS.num_calibration_images)
    print(f"calibration: {len(calibration)} train images covering "
          f"{len(np.unique(calibration_labels))} classes, pixel range "
          f"[{calibration.min()}, {calibration.max()}]")

  summary = export.export_model(model, output_dir, modes, calibration, io_type=FLAGS.io_type,
                                write_c_array=FLAGS.c_array, array_name=FLAGS.array_name,
                                source=FLAGS.model, log=print)
  for line in export.summary_lines(summary):
    print(line)
  print(f"wrote {output_dir}: {', '.join(sorted(os.listdir(output_dir)))}")


def run():
  common.run(main, writes=("output_dir",))


if __name__ == "__main__":
  run()

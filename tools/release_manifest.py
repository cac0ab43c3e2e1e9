"""Writes models/MANIFEST.json: every released file's SHA-256 and size, each model's accuracy.

  gtsrb-release-manifest --models_dir=models           # measure and write the manifest
  gtsrb-release-manifest --models_dir=models --check   # compare the files with it, write nothing
  gtsrb-release-manifest --benchmark=runs/model_card/benchmark.json  # also record its accuracies

Test metrics come from the folder's report.json (and stay as other tools recorded
them); `sample_correct` is measured here: the bundled sample's 430 official test
images, LiteRT reference kernels.
"""

import os

from absl import flags

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb.export import release
from tf_gtsrb_tools import common

FLAGS = flags.FLAGS
flags.DEFINE_string("models_dir", "models", "Folder of released files.")
flags.DEFINE_list("benchmark", [], "benchmark.json files of gtsrb-benchmark-tflite runs over "
                  "the official test set: their accuracies (LiteRT and every --runtimes) of "
                  "files in --models_dir go into the manifest.")
flags.DEFINE_bool("check", False, "Only compare the files with the existing manifest; exit "
                  "status 1 when one differs.")


def main():
  models_dir = common.existing_dir("models_dir", kind="models")
  if FLAGS.check:
    path = os.path.join(models_dir, release.MANIFEST_FILE)
    problems = release.manifest_problems(models_dir, io_utils.read_json(path))
    if problems:
      raise errors.ModelError(f"{path}: " + "; ".join(problems))
    print(f"{path}: all files match")
    return
  for benchmark in FLAGS.benchmark:
    if not os.path.isfile(benchmark):
      raise errors.ConfigError(f"{benchmark}: benchmark file not found (--benchmark)")
  path, manifest = release.write_manifest(models_dir, benchmarks=FLAGS.benchmark)
  print(f"Wrote {path}: {len(manifest['files'])} files")
  for name, metrics in sorted(manifest["metrics"].items()):
    accuracy = ", ".join(f"{runtime} {100 * value:.2f}%"
                         for runtime, value in sorted(metrics.get("test_accuracy", {}).items()))
    print(f"  {name}: sample {metrics['sample_correct']}/{metrics['sample_images']}"
          + (f"; test {accuracy}" if accuracy else ""))


def run():
  common.run(main, writes=("models_dir",))


if __name__ == "__main__":
  run()

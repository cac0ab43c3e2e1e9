"""Subprocess entry point of `latency.measure_peak_memory`.

Usage: python -m tf_gtsrb.benchmark.memory MODEL_PATH NUM_THREADS NUM_IMAGES
Prints one JSON line: baseline_mb, peak_mb, increase_mb, runtime.
"""

import json
import resource
import sys


def _maxrss_mb():
  """Peak resident memory of this process so far, in MB (2**20 bytes).

  On Linux, VmHWM of /proc/self/status: unlike ru_maxrss, which keeps the
  parent's peak across fork and exec, it counts this program alone.
  """
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024  # Reported in kB.
  except OSError:
    pass
  # Linux reports ru_maxrss in KiB, macOS in bytes.
  scale = 1 if sys.platform == "darwin" else 1024
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def main(argv):
  path, num_threads, num_images = argv[1], int(argv[2]), int(argv[3])
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tf_gtsrb  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  from tf_gtsrb.models import runners  # pylint: disable=g-import-not-at-top
  if path.endswith(".keras"):
    runtime = "tensorflow"
    import tensorflow as tf  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    from tf_gtsrb.keras import keras  # noqa: F401  pylint: disable=g-import-not-at-top
    from tf_gtsrb.models import io  # noqa: F401  pylint: disable=g-import-not-at-top
    runners.set_tf_threads(num_threads)
  else:
    runtime = "litert"
    from ai_edge_litert import interpreter  # noqa: F401  pylint: disable=g-import-not-at-top
  baseline = _maxrss_mb()
  runner = runners.load_runner(path, num_threads=num_threads)
  images = np.random.default_rng(0).integers(
      0, 256, (num_images, runner.input_size, runner.input_size, 3), dtype=np.uint8)
  runner.predict(images, batch_size=1)
  peak = _maxrss_mb()
  print(json.dumps({"baseline_mb": baseline, "peak_mb": peak, "increase_mb": peak - baseline,
                    "runtime": runtime, "threads": num_threads}))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))

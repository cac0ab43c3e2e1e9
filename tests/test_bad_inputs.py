"""Every tool that reads a model, over one corpus of bad model files built here: each run
ends with exit status 1 and one line `error: <file>: <what is wrong>`, never a
traceback, and writes no output directory. (Bad archives and data: test_archives.py,
test_gtsrb_builder.py and test_download.py.)"""

import json
import os
import subprocess
import sys

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import pytest
import tensorflow as tf

from tf_gtsrb.keras import keras
import synthetic

DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bad_input_driver.py")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """{what: path}: Keras files that are not RGB classifiers or not Keras 2 models, files
  that are not models at all, and flatbuffers that are broken or not image models."""
  directory = tmp_path_factory.mktemp("bad_models")
  paths = synthetic.bad_keras_models(directory)
  (directory / "empty.keras").write_bytes(b"")
  (directory / "text.keras").write_text("not a model\n")
  paths.update({"empty .keras": str(directory / "empty.keras"),
                "text .keras": str(directory / "text.keras")})
  vector = keras.Input((10,))
  converter = tf.lite.TFLiteConverter.from_keras_model(
      keras.Model(vector, keras.layers.Dense(43)(vector)))  # The project refuses to convert it.
  data = converter.convert()
  flatbuffers = {"not an image .tflite": data, "truncated .tflite": data[:200],
                 "text .tflite": b"not a model\n", "empty .tflite": b""}
  for what, content in flatbuffers.items():
    path = directory / (what.replace(" ", "_").replace(".", "") + ".tflite")
    path.write_bytes(content)
    paths[what] = str(path)
  return paths


# Each tool that reads a model: its arguments, given the model path and a fresh output path.
TOOLS = {
    "evaluate": lambda m, d, o: [f"--model={m}", f"--data_dir={d}", f"--output_dir={o}"],
    "benchmark_tflite": lambda m, d, o: [f"--models=bad={m}", f"--data_dir={d}",
                                         f"--output_dir={o}", "--nomemory"],
    "convert": lambda m, d, o: [f"--model={m}", f"--data_dir={d}", f"--output_dir={o}",
                                "--modes=float32"],
    "analyze": lambda m, d, o: [f"--model={m}", f"--data_dir={d}", f"--output_dir={o}"],
    "prune_channels": lambda m, d, o: [f"--model={m}", f"--data_dir={d}", f"--output_dir={o}",
                                       "--percent=25", "--epochs=0"],
    "prune_magnitude": lambda m, d, o: [f"--model={m}", f"--data_dir={d}",
                                        f"--output_dir={o}", "--epochs=1"],
    "qat": lambda m, d, o: [f"--model={m}", f"--data_dir={d}", f"--output_dir={o}",
                            "--epochs=1"],
    "sweep": lambda m, d, o: [f"--model={m}", f"--data_dir={d}", f"--output_dir={o}"],
    "classify": lambda m, d, o: [f"--model={m}", os.path.join(d, "..", "image.png")],
}


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_tool_refuses_every_bad_model_in_one_line(tool, corpus, tiny_data_dir, tmp_path):
  cases = list(corpus.items())
  runs = [TOOLS[tool](path, tiny_data_dir, str(tmp_path / f"out{i}"))
          for i, (_, path) in enumerate(cases)]
  done = subprocess.run([sys.executable, DRIVER, tool, json.dumps(runs)], capture_output=True,
                        text=True, timeout=600, check=False)
  lines = [line for line in done.stdout.splitlines() if line.startswith("RESULTS ")]
  assert lines, done.stderr[-3000:]
  results = json.loads(lines[-1][len("RESULTS "):])
  failures = []
  for (what, path), result in zip(cases, results):
    stderr = result["stderr"].strip().splitlines()
    last = stderr[-1] if stderr else ""
    if (result["status"] != 1 or not last.startswith(f"error: {path}: ")
        or "Traceback" in result["stderr"]):
      failures.append(f"{what}: status {result['status']}: {result['stderr'][-600:]}")
  assert not failures, "\n".join(failures)
  assert not [p for p in os.listdir(tmp_path) if p.startswith("out")]

"""tf_gtsrb.Classifier and gtsrb-classify: the released model from Python and the shell."""

import configparser
import concurrent.futures
import filecmp
import importlib.resources
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
from PIL import Image
import pytest

import tf_gtsrb
from tf_gtsrb import errors

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
STOP = os.path.join(ROOT, "docs", "images", "stop.png")
SPEED_30 = os.path.join(ROOT, "docs", "images", "speed_limit_30.png")
BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def classifier():
  return tf_gtsrb.Classifier()


def test_released_model_names_the_sample_signs(classifier):
  assert classifier.classify(STOP, top_k=1)[0].class_id == 14
  best = classifier.classify(SPEED_30, top_k=3)
  assert best[0].class_id == 1 and best[0].name == "Speed limit (30km/h)"
  assert len(best) == 3 and best[0].probability >= best[1].probability >= best[2].probability


def test_every_input_kind_gives_the_same_answer(classifier):
  with open(STOP, "rb") as f:
    data = f.read()
  pil = Image.open(io.BytesIO(data))
  array = np.asarray(pil.convert("RGB"))
  rgba = pil.convert("RGBA")
  expected = classifier.classify(STOP)
  for image in (data, pil, array, rgba, np.asarray(rgba)):
    assert classifier.classify(image) == expected
  batch = classifier.classify([STOP, SPEED_30])
  assert [b[0].class_id for b in batch] == [14, 1]


def test_odd_modes_and_sizes_are_accepted(classifier):
  pil = Image.open(STOP).convert("RGB").resize((97, 61))
  for image in (pil.convert("L"), pil.convert("P"), pil.convert("I;16"), pil):
    result = classifier.classify(image, top_k=1)
    assert 0 <= result[0].class_id < 43


def test_exif_rotation_is_applied(classifier):
  upright = Image.open(STOP).convert("RGB").resize((64, 48))
  rotated = upright.transpose(Image.Transpose.ROTATE_90)  # Stored sideways...
  exif = Image.Exif()
  exif[0x0112] = 6  # ...with the orientation tag that turns it back upright (ROTATE_270).
  buffer = io.BytesIO()
  rotated.save(buffer, "JPEG", quality=95, exif=exif)
  plain = io.BytesIO()
  upright.save(plain, "JPEG", quality=95)
  a = classifier.probabilities(buffer.getvalue())
  b = classifier.probabilities(plain.getvalue())
  assert np.argmax(a) == np.argmax(b)
  assert np.abs(a - b).max() < 0.1


def test_predictions_equal_the_benchmark_runner(classifier, tiny_data_dir):
  from tf_gtsrb.models import runners  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.data import input_pipeline  # pylint: disable=g-import-not-at-top
  images, _ = input_pipeline.load_arrays(tiny_data_dir, "test")
  runner = runners.load_runner(classifier.model_source)
  expected = np.argmax(runner.predict(images), axis=1)
  got = np.argmax(classifier.probabilities(list(images)), axis=1)
  np.testing.assert_array_equal(got, expected)


def test_import_and_classify_never_load_tensorflow():
  code = ("import sys, tf_gtsrb; tf_gtsrb.Classifier().classify(sys.argv[1]); "
          "print(sorted(m for m in sys.modules if m.split('.')[0] in "
          "('tensorflow', 'tf_keras', 'keras')))")
  done = subprocess.run([sys.executable, "-c", code, STOP], capture_output=True, text=True,
                        timeout=120, check=True)
  assert done.stdout.strip() == "[]"


def test_bad_images_are_one_line_errors(classifier, tmp_path):
  text = tmp_path / "notes.png"
  text.write_text("not an image")
  truncated = tmp_path / "cut.png"
  truncated.write_bytes(open(STOP, "rb").read()[:60])
  for path in (text, truncated, tmp_path / "missing.png"):
    with pytest.raises(errors.DataError, match=re.escape(str(path))):
      classifier.classify(str(path))


def test_decompression_bomb_is_refused(classifier, tmp_path):
  huge = tmp_path / "huge.png"
  Image.new("L", (20000, 20000)).save(huge, optimize=True)
  with pytest.raises(errors.DataError, match="huge.png"):
    classifier.classify(str(huge))


def test_a_model_of_another_shape_or_class_count_is_refused(tmp_path):
  labels = tmp_path / "labels.txt"
  labels.write_text("a\nb\n")
  with pytest.raises(errors.GtsrbError, match="labels.txt"):
    tf_gtsrb.Classifier(labels=str(labels))
  with pytest.raises(errors.GtsrbError, match="nowhere.txt"):
    tf_gtsrb.Classifier(labels=str(tmp_path / "nowhere.txt"))
  junk = tmp_path / "junk.tflite"
  junk.write_bytes(b"\0" * 100)
  with pytest.raises(errors.ModelError, match="junk.tflite"):
    tf_gtsrb.Classifier(model=str(junk))


def test_packaged_models_are_the_repository_models():
  packaged = importlib.resources.files("tf_gtsrb_models")
  names = sorted(n for n in os.listdir(os.path.join(ROOT, "models"))
                 if not n.startswith((".", "__")))
  assert "traffic_sign_cnn_pruned_int8.tflite" in names
  for name in names:
    assert filecmp.cmp(os.fspath(packaged / name), os.path.join(ROOT, "models", name),
                       shallow=False), name


@pytest.mark.slow
def test_a_built_wheel_carries_every_released_file_and_the_sample(tmp_path):
  """What `pip install tf_gtsrb` (no clone, not editable) gets: the wheel pip builds from
  the project's files holds models/ byte for byte, and the bundled sample."""
  listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                          cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
  source = tmp_path / "src"
  for name in listed:
    if os.path.isfile(os.path.join(ROOT, name)):
      os.makedirs(source / os.path.dirname(name), exist_ok=True)
      shutil.copy(os.path.join(ROOT, name), source / name)
  built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                          str(tmp_path / "wheel"), str(source)],
                         capture_output=True, text=True, timeout=600, check=False)
  assert built.returncode == 0, built.stderr[-3000:]
  (wheel,) = os.listdir(tmp_path / "wheel")
  with zipfile.ZipFile(tmp_path / "wheel" / wheel) as archive:
    names = set(archive.namelist())
    released = sorted(n for n in os.listdir(os.path.join(ROOT, "models"))
                      if os.path.isfile(os.path.join(ROOT, "models", n))
                      and not n.startswith((".", "__")) and not n.endswith(".py"))
    assert "traffic_sign_cnn_pruned_uint8.tflite" in released
    for name in released:
      with open(os.path.join(ROOT, "models", name), "rb") as f:
        assert archive.read(f"tf_gtsrb_models/{name}") == f.read(), name
    assert {n for n in names if n.startswith("tf_gtsrb/data/sample/")} >= {
        f"tf_gtsrb/data/sample/{n}" for n in os.listdir(os.path.join(ROOT, "tf_gtsrb", "data",
                                                                     "sample"))
        if n.endswith(".zip")}
    assert any(n.startswith("tf_gtsrb_tools/") for n in names)


@pytest.mark.slow
def test_command_line_reports_each_image_and_fails_on_bad_ones(tmp_path):
  bad = tmp_path / "bad.jpg"
  bad.write_bytes(b"garbage")
  done = subprocess.run([os.path.join(BIN, "gtsrb-classify"), STOP, str(bad), SPEED_30,
                         "--format=json", "--top_k=2"],
                        capture_output=True, text=True, timeout=120, check=False)
  assert done.returncode == 1
  rows = [json.loads(line) for line in done.stdout.splitlines()]
  assert len(rows) == 2
  assert "bad.jpg" in done.stderr and "Traceback" not in done.stderr
  errors_printed = [l for l in done.stderr.splitlines() if l.startswith("error:")]
  assert errors_printed == [f"error: {bad}: not an image (unknown or unsupported format)"]
  ok = subprocess.run([os.path.join(BIN, "gtsrb-classify"), os.path.dirname(STOP),
                       "--format=csv"], capture_output=True, text=True, timeout=120,
                      check=False)
  assert ok.returncode == 0, ok.stderr
  assert len(ok.stdout.strip().splitlines()) == 3  # Header and the two images.


@pytest.mark.slow
def test_help_of_every_console_script_lists_its_own_flags():
  config = configparser.ConfigParser()
  config.read(os.path.join(ROOT, "setup.cfg"))
  entries = [line.split("=") for line in
             config["options.entry_points"]["console_scripts"].strip().splitlines()]
  expected = {}
  for script, target in entries:
    module = target.strip().split(":")[0].split(".")[-1]
    with open(os.path.join(ROOT, "tools", module + ".py")) as f:
      own = re.findall(r'DEFINE_\w+\(\s*"(\w+)"', f.read())
    expected[script.strip()] = own

  def help_of(script):
    return subprocess.run([os.path.join(BIN, script), "--help"], capture_output=True,
                          text=True, timeout=180, check=False)

  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    done = dict(zip(expected, pool.map(help_of, expected)))
  for script, own in expected.items():
    assert done[script].returncode == 0, (script, done[script].stderr[-500:])
    text = done[script].stdout + done[script].stderr
    if own:
      assert f"--{own[0]}" in text, (script, text[:500])


def _readme_blocks(kind):
  """The fenced code blocks of README.md marked with `<!-- test: KIND -->`."""
  with open(os.path.join(ROOT, "README.md")) as f:
    text = f.read()
  return re.findall(rf"<!-- test: {kind} -->\s*```\w*\n(.*?)```", text, re.S)


def test_readme_has_python_snippets():
  assert len(_readme_blocks("python")) >= 2


@pytest.mark.parametrize("block", _readme_blocks("python"),
                         ids=lambda block: block.split("\n", 1)[0])
def test_readme_python_snippets_run_as_written(block):
  if "import mediapipe" in block:  # Installed apart (README), as CI does: runs there.
    pytest.importorskip("mediapipe")
  done = subprocess.run([sys.executable, "-c", block], cwd=ROOT, capture_output=True,
                        text=True, timeout=120, check=False)
  assert done.returncode == 0, done.stderr
  assert "14 Stop" in done.stdout


@pytest.mark.slow
def test_readme_shell_snippets_run_as_written():
  blocks = _readme_blocks("sh")
  assert blocks
  env = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"])
  for block in blocks:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "14 Stop" in done.stdout

"""Tests of tf_gtsrb.evaluation.html_report: sections, missing steps, escaping, a real browser."""

import hashlib
import html
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from tf_gtsrb import io_utils
from tf_gtsrb.evaluation import predictions as predictions_lib
from tf_gtsrb.data.class_names import CLASS_NAMES
from tf_gtsrb.evaluation import html_report
from tf_gtsrb.evaluation import metrics
import synthetic

HOSTILE = "<script>alert(1)</script>"


def _model_entry(labels, predicted):
  return {"format": "tflite", "input_type": "int8", "path": "m.tflite",
          "metrics": metrics.classification_report(labels, predicted),
          "latency": {"median_ms": 0.1, "p90_ms": 0.2, "fps": 1e4}, "macs": 2_000_000,
          "params": 1234, "file_size_bytes": 4096, "throughput_images_per_s": 900.0}


def _synthetic_predictions(labels):
  """Every third image predicted as the next class, confidence falling with the index."""
  predicted = labels.copy()
  predicted[::3] = (labels[::3] + 1) % 43
  confidence = np.linspace(0.99, 0.3, len(labels)).astype(np.float32)
  return predicted, confidence


def _write_run(root, labels, data_dir=None, model_name="int8"):
  """A benchmark dir (benchmark.json, predictions.npz) and a work dir with train/history.json
  only; returns (benchmark_dir, work_dir)."""
  predicted, confidence = _synthetic_predictions(labels)
  benchmark = {
      "models": {"float": _model_entry(labels, labels), model_name: _model_entry(labels, predicted)},
      "data": {"data_dir": data_dir, "split": "test", "num_images": len(labels)},
      "machine": {"cpu": "test CPU", "threads": 1},
      "robustness": {model_name: {"gaussian_noise": {"1": 0.9, "3": 0.7},
                                  "blur": {"1": 0.95, "3": 0.8}}},
      "runtimes": {"tflite_micro": {"accuracy": 0.97, "arena_bytes": 38080}},
  }
  benchmark_dir, work_dir = os.path.join(root, "benchmark"), os.path.join(root, "work")
  io_utils.write_json(os.path.join(benchmark_dir, "benchmark.json"), benchmark)
  predictions_lib.save_predictions(
      os.path.join(benchmark_dir, predictions_lib.FILE_NAME), labels,
      {"float": labels, model_name: predicted},
      {"float": np.ones(len(labels), np.float32), model_name: confidence})
  io_utils.write_json(os.path.join(work_dir, "train", "history.json"), {
      "loss": [2.0, 1.0, 0.5], "val_loss": [2.1, 1.2, 0.7], "accuracy": [0.3, 0.6, 0.8],
      "val_accuracy": [0.25, 0.55, 0.75], "learning_rate": [1e-3, 5e-4, 1e-4]})
  return benchmark_dir, work_dir


def _sections(page):
  """{section title: its HTML}."""
  parts = re.split(r'<h2 id="[^"]*">', page)[1:]
  return {part.split("</h2>", 1)[0]: part.split("</h2>", 1)[1] for part in parts}


def test_missing_outputs_give_not_run_sections(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  path = html_report.write_html_report(str(tmp_path / "r.html"), benchmark_dir=str(empty),
                                       work_dir=str(empty))
  sections = _sections(open(path).read())
  for title in ("Data and split", "Headline results", "Per-class accuracy", "Confusion matrix",
                "Pruning sweep: accuracy against size and MACs"):
    assert "not run" in sections[title], title
  assert "not measured" in sections["Robustness to corruptions"]
  assert sections["Results per runtime"].count("not measured") == 4  # LiteRT, Micro, MP, NPU.
  assert sections["Training and fine-tuning curves"].count("not run") == 3
  assert "<img" not in open(path).read()


def test_report_of_a_partial_run(tmp_path):
  labels = np.arange(90) % 43
  benchmark_dir, work_dir = _write_run(str(tmp_path), labels)
  path = html_report.write_html_report(str(tmp_path / "r.html"), benchmark_dir=benchmark_dir,
                                       work_dir=work_dir, files=[os.path.join(benchmark_dir,
                                                                              "benchmark.json")])
  page = open(path).read()
  sections = _sections(page)
  curves = sections["Training and fine-tuning curves"]
  assert curves.count("<img") == 1  # train only.
  assert "no prune/history.json" in curves and "no qat/history.json" in curves
  # The data directory is unknown: mistakes listed, images not shown.
  gallery = sections["Error gallery (int8)"]
  assert "30 of 90 images misclassified" in gallery and "<img" not in gallery
  assert "0 Speed limit (20km/h) \u2192 1 Speed limit (30km/h) (99%)" in html.unescape(gallery)
  headline = sections["Headline results"]
  assert "66.67%" in headline and "100.00%" in headline and "4.0" in headline
  assert "38080" in sections["Results per runtime"]
  assert sections["Results per runtime"].count("not measured") == 2  # MediaPipe, NPU.
  robustness = sections["Robustness to corruptions"]
  assert "gaussian_noise" in robustness and "70.00%" in robustness and "<img" in robustness
  digest = hashlib.sha256(open(os.path.join(benchmark_dir, "benchmark.json"), "rb").read())
  assert digest.hexdigest() in sections["Files (SHA-256)"]
  assert "http://" not in page.replace("http://www.w3.org", "")
  assert "https://" not in page


def test_names_and_captions_are_escaped(tmp_path):
  labels = np.arange(43)
  predicted, confidence = _synthetic_predictions(labels)
  names = [f"{HOSTILE} {i}" for i in range(43)]
  benchmark = {"models": {HOSTILE: _model_entry(labels, predicted)},
               "runtimes": {HOSTILE: {HOSTILE: HOSTILE}}}
  predictions = {"labels": labels,
                 "models": {HOSTILE: {"predicted": predicted, "confidence": confidence}}}
  page = html_report.build_html(
      title=HOSTILE, benchmark=benchmark, predictions=predictions,
      images=synthetic.blocky_images(43, 32), class_names=names,
      recipe=(HOSTILE, f"--note={HOSTILE}"), robustness=[{"kind": HOSTILE, "accuracy": 0.5}])
  assert "<script" not in page
  assert page.count(html.escape(HOSTILE)) > 20
  gallery = _sections(page)[f"Error gallery ({html.escape(HOSTILE)})"]
  assert f"0 {html.escape(HOSTILE)} 0 \u2192 1 {html.escape(HOSTILE)} 1" in gallery
  assert gallery.count('class="thumb"') == 15  # One image per mistake, every third image.


def test_gallery_caps_each_class_and_counts_the_rest():
  labels = np.array([5] * 10 + [7] * 2)
  predicted = np.array([6] * 9 + [5] + [7, 8])
  confidence = np.arange(12, dtype=np.float32) / 20
  groups = html_report.misclassified_by_class(labels, predicted, confidence)
  assert list(groups) == [5, 7]
  assert [index for index, _, _ in groups[5]] == [8, 7, 6, 5, 4, 3, 2, 1, 0]  # Most confident.
  assert groups[7] == [(11, 8, pytest.approx(0.55))]
  predictions = {"labels": labels,
                 "models": {"m": {"predicted": predicted, "confidence": confidence}}}
  page = html_report.build_html(
      benchmark={"models": {"m": _model_entry(labels, predicted)}}, predictions=predictions,
      images=synthetic.blocky_images(12, 32))
  gallery = _sections(page)["Error gallery (m)"]
  assert gallery.count('class="thumb"') == html_report.MAX_PER_CLASS + 1
  assert f"and {9 - html_report.MAX_PER_CLASS} more" in gallery
  assert "image-rendering:pixelated" in page


def test_robustness_records_from_nested_and_flat_results():
  nested = {"int8": {"fog": {"1": 0.9, "2": 0.8}}, "num_images": 430}
  assert sorted(html_report.robustness_records(nested)) == [
      ("int8", "fog", "1", 0.9), ("int8", "fog", "2", 0.8)]
  by_kind = {"fog": {"severity_1": {"accuracy": 0.75, "images": 10}}}
  assert html_report.robustness_records(by_kind) == [("", "fog", "1", 0.75)]
  flat = [{"corruption": "snow", "severity": 3, "accuracy": 0.5, "model": "a"}, {"x": 1}]
  assert html_report.robustness_records(flat) == [("a", "snow", "3", 0.5)]


def test_the_corruption_suites_own_output_gets_a_table_per_model(tmp_path):
  from tf_gtsrb.evaluation import robustness  # pylint: disable=g-import-not-at-top
  images = synthetic.blocky_images(20, 32)
  labels = np.zeros(20, int)  # "float" always right, "int8" always wrong.
  results = robustness.evaluate_models(
      {"int8": lambda batch: np.eye(43)[np.ones(len(batch), int)],
       "float": lambda batch: np.eye(43)[np.zeros(len(batch), int)]},
      images, labels, kinds=["fog", "jpeg"], severities=[1, 5])
  io_utils.write_json(str(tmp_path / "robustness.json"), results)
  page = html_report.build_html(robustness=io_utils.read_json(str(tmp_path / "robustness.json")))
  section = _sections(page)["Robustness to corruptions"]
  assert section.count("<h3>") == 2 and "<h3>float</h3>" in section
  assert "severity 1" in section and "severity 5" in section and "<td>jpeg</td>" in section
  assert section.count("100.00%") >= 2 + 2 * 2  # float: clean, mean, and each cell.
  assert "<img" in section
  one_model = html_report.build_html(robustness=results["int8"])
  assert "<h3>model</h3>" in _sections(one_model)["Robustness to corruptions"]


# The page in a real browser.

_CHECK_SCRIPT = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  window.__errors.push(e.message || ("failed to load " + (e.target && e.target.tagName)));
}, true);
var __consoleError = console.error;
console.error = function () {
  window.__errors.push(Array.prototype.join.call(arguments, " "));
  __consoleError.apply(console, arguments);
};
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var out = document.createElement("pre");
  out.id = "browser-check";
  out.textContent = JSON.stringify({
    images: images.length,
    undecoded: images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                     .map(function (i) { return i.alt; }),
    errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


def _chromium():
  return shutil.which("chromium") or shutil.which("chromium-browser")


def _run_chromium(binary, profile, *args):
  return subprocess.run(
      [binary, "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
       "--hide-scrollbars", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
       *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (apt-get install "
                    "chromium; .ci/run installs it)")
def test_report_renders_in_chromium(tmp_path, tiny_data_dir):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.data import input_pipeline  # pylint: disable=g-import-not-at-top
  _, labels = input_pipeline.load_arrays(tiny_data_dir, "test")
  benchmark_dir, work_dir = _write_run(str(tmp_path), labels, data_dir=tiny_data_dir,
                                       model_name=f"int8 {HOSTILE}")
  path = html_report.write_html_report(str(tmp_path / "report.html"),
                                       benchmark_dir=benchmark_dir, work_dir=work_dir)
  page = open(path).read()
  assert len(page) < 3_000_000
  thumbnails = page.count('class="thumb"')
  assert thumbnails > 50  # The tiny test split's mistakes, as images.
  checked = tmp_path / "checked.html"
  checked.write_text(page.replace("<head>", "<head>" + _CHECK_SCRIPT, 1))

  binary = _chromium()
  dom = _run_chromium(binary, tmp_path / "profile1", "--dump-dom", checked.as_uri())
  found = re.search(r'<pre id="browser-check">(.*?)</pre>', dom.stdout, re.DOTALL)
  assert found, (dom.returncode, dom.stderr[-2000:])
  result = json.loads(html.unescape(found.group(1)))
  assert result["errors"] == []
  assert result["undecoded"] == []
  assert result["images"] == page.count("<img ") == thumbnails + 4  # + 4 figures.

  shot = tmp_path / "shot.png"
  done = _run_chromium(binary, tmp_path / "profile2", f"--screenshot={shot}",
                       "--window-size=1200,3000", pathlib_uri(path))
  assert shot.exists(), done.stderr[-2000:]
  pixels = np.asarray(Image.open(shot).convert("RGB"))
  assert pixels.shape[:2] == (3000, 1200)
  assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # Text and figures, not blank.


def pathlib_uri(path):
  return "file://" + os.path.abspath(path)

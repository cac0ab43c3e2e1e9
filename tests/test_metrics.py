"""Tests for tf_gtsrb.evaluation.metrics, report tables and the confusion-matrix PNG."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from tf_gtsrb import errors
from tf_gtsrb.data.class_names import CLASS_NAMES
from tf_gtsrb.evaluation import metrics
from tf_gtsrb.evaluation import plots
from tf_gtsrb.evaluation import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# y_true=[0,0,1,2], y_pred=[0,1,1,2]:
#   cm = [[1,1,0],[0,1,0],[0,0,1]]; support = [2,1,1]; predicted = [1,2,1]
#   precision = [1, 1/2, 1]; recall = [1/2, 1, 1]; f1 = [2/3, 2/3, 1]
SMALL = ([0, 0, 1, 2], [0, 1, 1, 2])


def test_confusion_matrix_rows_are_true_classes():
  cm = metrics.confusion_matrix(*SMALL, num_classes=3)
  np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [0, 0, 1]])
  assert cm.dtype == np.int64


def test_small_case_by_hand():
  r = metrics.classification_report(*SMALL, num_classes=3)
  assert r["num_examples"] == 4
  assert r["accuracy"] == pytest.approx(0.75)
  assert r["precision_weighted"] == pytest.approx((2 * 1 + 1 * 0.5 + 1 * 1) / 4)  # 0.875
  assert r["recall_weighted"] == pytest.approx((2 * 0.5 + 1 * 1 + 1 * 1) / 4)  # 0.75
  assert r["f1_weighted"] == pytest.approx((2 * 2 / 3 + 2 / 3 + 1) / 4)  # 0.75
  assert r["precision_macro"] == pytest.approx(2.5 / 3)
  assert r["recall_macro"] == pytest.approx(2.5 / 3)
  assert r["f1_macro"] == pytest.approx(7 / 9)
  per_class = r["per_class"]
  assert [c["class_id"] for c in per_class] == [0, 1, 2]
  assert [c["name"] for c in per_class] == ["0", "1", "2"]
  assert [c["support"] for c in per_class] == [2, 1, 1]
  assert [c["precision"] for c in per_class] == pytest.approx([1.0, 0.5, 1.0])
  assert [c["recall"] for c in per_class] == pytest.approx([0.5, 1.0, 1.0])
  assert [c["f1"] for c in per_class] == pytest.approx([2 / 3, 2 / 3, 1.0])
  assert r["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
  json.dumps(r)  # Plain Python types only.


def test_class_never_predicted_has_zero_precision():
  r = metrics.classification_report([0, 1, 1], [0, 0, 0], num_classes=2)
  c0, c1 = r["per_class"]
  assert (c1["precision"], c1["recall"], c1["f1"]) == (0.0, 0.0, 0.0)
  assert c0["precision"] == pytest.approx(1 / 3)
  assert c0["recall"] == 1.0
  assert c0["f1"] == pytest.approx(0.5)
  assert r["precision_weighted"] == pytest.approx(1 / 9)
  assert r["accuracy"] == pytest.approx(1 / 3)


def test_absent_class_counts_zero_in_macro_not_in_weighted():
  # Class 2 has neither examples nor predictions: 0/0 -> 0, included in macro.
  r = metrics.classification_report([0, 1], [0, 1], num_classes=3)
  assert r["accuracy"] == 1.0
  assert r["f1_weighted"] == 1.0
  assert r["f1_macro"] == pytest.approx(2 / 3)
  assert r["per_class"][2] == {"class_id": 2, "name": "2", "precision": 0.0,
                               "recall": 0.0, "f1": 0.0, "support": 0}


def test_43_classes_use_sign_names():
  r = metrics.classification_report([14, 14], [14, 13])
  assert len(r["per_class"]) == 43
  assert r["per_class"][14]["name"] == CLASS_NAMES[14] == "Stop"
  assert np.array(r["confusion_matrix"]).shape == (43, 43)


def test_accepts_numpy_and_integral_floats():
  a = metrics.classification_report(np.array([0, 1], np.int32), np.array([1.0, 1.0]), 2)
  assert a["accuracy"] == 0.5


@pytest.mark.parametrize("y_true, y_pred, num_classes, message", [
    ([0, 1], [0], 2, "^y_true and y_pred differ in length: 2 vs 1$"),
    ([0, 2], [0, 1], 2, r"^y_true holds class id 2 outside \[0, 2\)$"),
    ([0, -1], [0, 1], 2, "^y_true holds class id -1"),
    ([0, 1], [0, 5], 3, r"^y_pred holds class id 5 outside \[0, 3\)$"),
    ([[0, 1]], [[0, 1]], 2, "^y_true must be a 1-D array"),
    ([0.5, 1], [0, 1], 2, "^y_true must hold integer class ids"),
    ([0, 1], ["a", "b"], 2, "^y_pred must hold integer class ids"),
    ([], [], 2, "^cannot score an empty set of predictions$"),
    ([0], [0], 0, "^num_classes must be a positive integer"),
])
def test_bad_inputs_raise_config_error(y_true, y_pred, num_classes, message):
  with pytest.raises(errors.ConfigError, match=message):
    metrics.classification_report(y_true, y_pred, num_classes)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 6).flatmap(lambda n: st.tuples(
    st.just(n),
    st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), min_size=1,
             max_size=40))))
def test_invariants(case):
  n, pairs = case
  y_true, y_pred = (list(v) for v in zip(*pairs))
  r = metrics.classification_report(y_true, y_pred, n)
  assert r["accuracy"] == pytest.approx(np.mean(np.array(y_true) == np.array(y_pred)))
  # Support-weighted recall is accuracy, whatever the predictions.
  assert r["recall_weighted"] == pytest.approx(r["accuracy"])
  cm = np.array(r["confusion_matrix"])
  assert cm.sum() == len(pairs)
  for key in ("precision_weighted", "recall_weighted", "f1_weighted", "precision_macro",
              "recall_macro", "f1_macro"):
    assert 0.0 <= r[key] <= 1.0
  for c in r["per_class"]:
    lo, hi = sorted((c["precision"], c["recall"]))
    assert lo - 1e-12 <= c["f1"] <= hi + 1e-12  # Harmonic mean lies between.


# --- report tables -----------------------------------------------------------------


def test_metrics_table_layout_and_numbers():
  r = metrics.classification_report(*SMALL, num_classes=3)
  table = report.metrics_table([("TrafficSignCNN", r)])
  lines = table.strip().splitlines()
  assert lines[0] == "| Model | Accuracy (%) | Precision (%) | Recall (%) | F1-Score (%) |"
  assert lines[1] == "|---|---|---|---|---|"
  assert lines[2] == "| TrafficSignCNN | 75.00 | 87.50 | 75.00 | 75.00 |"


def test_performance_table_layout_numbers_and_missing_values():
  table = report.performance_table([
      {"name": "base", "latency_ms": 1.234, "fps": 810.37, "macs": 15_051_520,
       "params": {"trainable": 399_947, "non_trainable": 960, "total": 400_907},
       "size_bytes": 2048},
      {"name": "int8", "macs": 3_000_000, "params": 100},
  ])
  lines = table.strip().splitlines()
  assert lines[0] == ("| Model | Inference Time (ms) | FPS | MACs (M) | Parameters "
                      "| Model Size (KB) |")
  assert lines[2] == "| base | 1.23 | 810.4 | 15.05 | 399,947 | 2.00 |"
  assert lines[3] == "| int8 | - | - | 3.00 | 100 | - |"


def test_per_class_table():
  r = metrics.classification_report([14, 14], [14, 13])
  lines = report.per_class_table(r).strip().splitlines()
  assert lines[0].startswith("| Class | Name | Precision (%) | Recall (%) | F1-Score (%)")
  assert len(lines) == 2 + 43
  assert lines[2 + 14] == "| 14 | Stop | 100.00 | 50.00 | 66.67 | 2 |"


def test_confusions_table_lists_the_most_frequent_mistakes_first():
  y_true = [27, 27, 27, 27, 3, 3, 3, 18]
  y_pred = [11, 11, 20, 27, 5, 5, 3, 18]
  lines = report.confusions_table(metrics.classification_report(y_true, y_pred)).splitlines()
  assert lines[0] == ("| True class | Predicted as | Images | Share of the true class (%) |")
  assert lines[2:] == ["| 3 Speed limit (60km/h) | 5 Speed limit (80km/h) | 2 | 66.67 |",
                       "| 27 Pedestrians | 11 Right-of-way at the next intersection | 2 | 50.00 |",
                       "| 27 Pedestrians | 20 Dangerous curve to the right | 1 | 25.00 |"]
  limited = report.confusions_table(metrics.classification_report(y_true, y_pred), limit=1)
  assert len(limited.splitlines()) == 3
  perfect = report.confusions_table(metrics.classification_report([1, 2], [1, 2]))
  assert len(perfect.splitlines()) == 2  # Header only.


def test_table_cells_escape_pipes():
  r = metrics.classification_report([0], [0], 1)
  assert "| a\\|b |" in report.metrics_table([("a|b", r)])


# --- confusion-matrix PNG ----------------------------------------------------------


def test_normalize_rows():
  np.testing.assert_allclose(plots.normalize_rows([[1, 3], [0, 0]]), [[0.25, 0.75], [0, 0]])


def test_confusion_matrix_png_written(tmp_path):
  rng = np.random.default_rng(0)
  y = rng.integers(0, 43, 200)
  cm = metrics.confusion_matrix(y, np.where(rng.random(200) < 0.8, y, 0))
  path = tmp_path / "out" / "cm.png"
  plots.save_confusion_matrix_png(cm, str(path), class_names=CLASS_NAMES, title="test")
  data = path.read_bytes()
  assert data.startswith(PNG_MAGIC)
  width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
  assert width > 1000 and height > 900  # Large enough to read 43 classes.
  assert [p.name for p in path.parent.iterdir()] == ["cm.png"]  # No temporary files left.


def test_confusion_matrix_png_small_and_bad_shapes(tmp_path):
  path = tmp_path / "cm.png"
  plots.save_confusion_matrix_png([[2, 0], [1, 1]], str(path))
  assert path.read_bytes().startswith(PNG_MAGIC)
  with pytest.raises(errors.ConfigError, match="square"):
    plots.save_confusion_matrix_png([[1, 2, 3]], str(tmp_path / "bad.png"))
  with pytest.raises(errors.ConfigError, match="class names"):
    plots.save_confusion_matrix_png([[1]], str(tmp_path / "bad.png"), class_names=["a", "b"])
  assert not (tmp_path / "bad.png").exists()

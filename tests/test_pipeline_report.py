"""Tests of tf_gtsrb.evaluation.pipeline_report.target_checks on hand-made benchmark results."""

import pytest

from tf_gtsrb.evaluation import pipeline_report as pr


def _model(accuracy, median_ms, macs=100, size_bytes=50 * 1024):
  return {"metrics": {"accuracy": accuracy}, "latency": {"median_ms": median_ms},
          "macs": macs, "file_size_bytes": size_bytes}


def _benchmark(int8_accuracy, ptq_accuracy):
  return {"models": {
      pr.KERAS_NAME: _model(0.99, 1.0, macs=1000, size_bytes=1600 * 1024),
      pr.FLOAT_TFLITE_NAME: _model(0.99, 0.4, macs=1000, size_bytes=1500 * 1024),
      pr.PTQ_NAME: _model(ptq_accuracy, 0.08),
      pr.INT8_NAME: _model(int8_accuracy, 0.08)},
          "agreement": {"agreement": 0.995, "passed": True}}


@pytest.mark.parametrize("int8, ptq, beats", [(0.9835, 0.9831, True), (0.9835, 0.9835, False),
                                              (0.9835, 0.9841, False)])
def test_qat_must_beat_post_training_quantization_strictly(int8, ptq, beats):
  checks = {name: passed for name, _, passed in pr.target_checks(_benchmark(int8, ptq))}
  assert checks["QAT beats post-training quantization (test accuracy)"] is beats


def test_every_target_is_checked_against_its_threshold():
  checks = {name: (text, passed)
            for name, text, passed in pr.target_checks(_benchmark(0.9881, 0.98))}
  assert checks["INT8 test accuracy >= 98.8%"] == ("98.81%", True)
  assert checks["INT8 flatbuffer <= 100 KB"] == ("50.0 KB", True)
  assert checks["MACs <= 40% of the baseline"] == ("10.0%", True)
  assert checks["batch-1 latency >= 5x lower than Keras float"] == ("12.5x", True)
  assert checks["INT8 latency lower than TFLite float32"][1]
  assert checks["INT8 agrees with its QAT Keras model on >= 99% of test images"][1]
  low = {name: passed for name, _, passed in pr.target_checks(_benchmark(0.9879, 0.98))}
  assert not low["INT8 test accuracy >= 98.8%"]


@pytest.mark.parametrize("worst, met", [(0.80, True), (0.7999, False)])
def test_every_corruption_kind_must_reach_80_percent_when_the_suite_ran(worst, met):
  scores = {pr.INT8_NAME: {"num_images": 1000, "worst_kind": "occlusion",
                           "kind_mean": {"occlusion": worst, "fog": 0.95}}}
  checks = {name: (text, passed)
            for name, text, passed in pr.target_checks(_benchmark(0.9881, 0.98), scores)}
  assert checks["Every corruption kind >= 80% (INT8, 1,000 test images)"] == (
      f"occlusion {100 * worst:.2f}%", met)
  assert not any("corruption" in name
                 for name, _, _ in pr.target_checks(_benchmark(0.9881, 0.98)))

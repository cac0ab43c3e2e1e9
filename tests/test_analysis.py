"""Tests of the prunability analysis (tf_gtsrb.compression.analysis)."""

import json
import os

import numpy as np
import pytest

from tf_gtsrb import errors
from tf_gtsrb.compression import analysis
from tf_gtsrb.compression import channel_pruning
from tf_gtsrb.keras import keras
from tf_gtsrb.models import io as model_io
import synthetic
import tool_runner

CHANNELS = (8, 8, 16, 16)
SIZE = 16
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _images(n=16, seed=1):
  return synthetic.random_float_data(SIZE, n, seed)[0]


def _strong_model(seed=0):
  """Every filter random (so distinct) with the same L1 norm; gamma 1, beta 1."""
  model = synthetic.tiny_cnn(input_size=SIZE, channels=CHANNELS, seed=seed)
  rng = np.random.default_rng(seed)
  for i, n in enumerate(CHANNELS, start=1):
    conv = model.get_layer(f"conv{i}")
    kernel = rng.normal(size=conv.get_weights()[0].shape)
    kernel *= 0.5 / np.abs(kernel).reshape(-1, n).sum(axis=0)
    conv.set_weights([kernel.astype(np.float32)])
    ones, zeros = np.ones(n, np.float32), np.zeros(n, np.float32)
    model.get_layer(f"bn{i}").set_weights([ones, ones, zeros, ones])
  return model


def _model_with_dead_channels(dead_share=0.25, seed=0):
  """A random model whose first `dead_share` of channels per layer output zero."""
  model = synthetic.tiny_cnn(input_size=SIZE, channels=CHANNELS, seed=seed)
  rng = np.random.default_rng(seed)
  dead = {}
  for i, n in enumerate(CHANNELS, start=1):
    name = f"conv{i}"
    idx = np.sort(rng.choice(n, size=int(n * dead_share), replace=False))
    dead[name] = idx.tolist()
    conv = model.get_layer(name)
    (kernel,) = conv.get_weights()
    kernel[..., idx] = 0.0
    conv.set_weights([kernel])
    gamma = rng.uniform(0.5, 1.5, n).astype(np.float32)
    beta = rng.normal(0.0, 0.3, n).astype(np.float32)
    gamma[idx] = 0.0
    beta[idx] = -0.5
    model.get_layer(f"bn{i}").set_weights([
        gamma, beta, rng.normal(0.0, 0.1, n).astype(np.float32),
        rng.uniform(0.5, 2.0, n).astype(np.float32)])
  return model, dead


def test_dead_channels_are_found_and_recommended():
  model, dead = _model_with_dead_channels(0.25)
  result = analysis.analyze_model(model, _images())
  recommendations = analysis.recommend_prune_percentages(result)
  for name, n in zip(channel_pruning.CONV_LAYERS, CHANNELS):
    layer = result["layers"][name]
    assert set(dead[name]) <= set(layer["flags"]["dead"])
    assert layer["activation"]["dead_share"] >= 0.25
    assert recommendations[name] >= 100.0 * len(dead[name]) / n
    # Pruning by the recommendation removes at least the dead channels.
    kept = channel_pruning.select_channels(model, recommendations, criterion="bn_gamma")
    assert not set(kept[name]) & set(dead[name])


def test_high_dead_share_is_capped_and_keeps_a_channel():
  model, _ = _model_with_dead_channels(0.75)
  result = analysis.analyze_model(model, _images())
  recommendations = analysis.recommend_prune_percentages(result)
  assert all(p == analysis.MAX_PRUNE_PERCENT for p in recommendations.values())
  everything = analysis.recommend_prune_percentages(result, max_percent=99.9)
  for name, n in zip(channel_pruning.CONV_LAYERS, CHANNELS):
    assert channel_pruning.num_kept(n, everything[name]) >= 1


def test_strong_distinct_channels_recommend_nothing():
  result = analysis.analyze_model(_strong_model(), _images())
  recommendations = analysis.recommend_prune_percentages(result)
  assert recommendations == {name: 0.0 for name in channel_pruning.CONV_LAYERS}
  for layer in result["layers"].values():
    assert layer["activation"]["dead_share"] == 0.0
    assert layer["redundancy"]["near_duplicate_share"] == 0.0


def test_duplicate_filters_count_as_redundant_once():
  model = _strong_model()
  conv = model.get_layer("conv3")
  (kernel,) = conv.get_weights()
  kernel[..., 1] = 1.5 * kernel[..., 0]  # same direction, stronger
  kernel[..., 2] = kernel[..., 0] + 1e-4
  conv.set_weights([kernel])
  result = analysis.analyze_model(model, _images())
  layer = result["layers"]["conv3"]
  assert layer["flags"]["redundant"] == [0, 2]
  assert layer["redundancy"]["near_duplicate_share"] == pytest.approx(3 / 16)
  assert analysis.recommend_prune_percentages(result)["conv3"] >= 12.5


def test_statistics_and_parameter_counts():
  model = _strong_model()
  result = analysis.analyze_model(model, _images(n=5), batch_size=2)
  assert result["num_images"] == 5
  conv2 = result["layers"]["conv2"]
  assert conv2["channels"] == 8
  assert conv2["params"]["conv"] == 3 * 3 * 8 * 8
  assert conv2["params"]["trainable"] == 3 * 3 * 8 * 8 + 16
  assert conv2["l1"]["mean"] == pytest.approx(0.5, rel=1e-5)
  assert conv2["gamma"]["max"] == pytest.approx(1.0)
  assert sum(conv2["gamma"]["histogram"]["counts"]) == 8
  assert len(conv2["activation"]["channel_means"]) == 8
  json.dumps(result)  # JSON-ready


def test_max_pairs_limits_redundancy_comparisons():
  result = analysis.analyze_model(_strong_model(), _images(n=2), max_pairs=10)
  conv4 = result["layers"]["conv4"]["redundancy"]
  assert conv4["pairs_compared"] <= 10
  assert conv4["filters_compared"] == 5


def test_bad_inputs_raise():
  model = _strong_model()
  with pytest.raises(errors.ConfigError, match="shape"):
    analysis.analyze_model(model, np.zeros((2, 32, 32, 3), np.float32))
  with pytest.raises(errors.ConfigError, match="dtype"):
    analysis.analyze_model(model, np.zeros((2, SIZE, SIZE, 3), np.uint8))
  with pytest.raises(errors.ConfigError, match="at least one"):
    analysis.analyze_model(model, np.zeros((0, SIZE, SIZE, 3), np.float32))
  with pytest.raises(errors.ConfigError):
    analysis.analyze_model(model, _images(), max_pairs=0)
  with pytest.raises(errors.ModelError):
    analysis.analyze_model(keras.Sequential([keras.Input((SIZE, SIZE, 3)),
                                             keras.layers.Flatten()]), _images())


def test_report_files(tmp_path):
  model, _ = _model_with_dead_channels(0.25)
  result = analysis.analyze_model(model, _images(n=4))
  recommendations = analysis.recommend_prune_percentages(result)
  out = str(tmp_path / "report")
  paths = analysis.write_analysis_report(result, recommendations, out)
  assert sorted(os.listdir(out)) == sorted(
      ["analysis.json", "analysis.md"] + [f"conv{i}_histograms.png" for i in range(1, 5)])
  assert sorted(paths) == sorted(os.path.join(out, f) for f in os.listdir(out))
  for i in range(1, 5):
    with open(os.path.join(out, f"conv{i}_histograms.png"), "rb") as f:
      assert f.read(8) == PNG_MAGIC
  with open(os.path.join(out, "analysis.md")) as f:
    text = f.read()
  assert "| Layer | Channels | Small gamma (%)" in text
  assert "Channels kept" in text
  for name in channel_pruning.CONV_LAYERS:
    assert f"| {name} |" in text
  loaded = analysis.load_recommendations(os.path.join(out, "analysis.json"))
  assert loaded == recommendations


def test_load_recommendations_rejects_bad_files(tmp_path):
  bad = tmp_path / "bad.json"
  bad.write_text(json.dumps({"recommended_percentages": {"conv1": 120}}))
  with pytest.raises(errors.ConfigError, match="bad.json"):
    analysis.load_recommendations(str(bad))
  other = tmp_path / "other.json"
  other.write_text("{}")
  with pytest.raises(errors.ConfigError, match="recommended_percentages"):
    analysis.load_recommendations(str(other))
  with pytest.raises(errors.GtsrbError, match="not found"):
    analysis.load_recommendations(str(tmp_path / "missing.json"))


def test_analyze_tool_end_to_end(tmp_path, tiny_data_dir):
  model_path = str(tmp_path / "model.keras")
  model_io.save_model(synthetic.tiny_cnn(input_size=32), model_path)
  out = tmp_path / "analysis"
  done = tool_runner.run_tool("analyze", f"--model={model_path}", f"--data_dir={tiny_data_dir}",
                              "--num_images=24", f"--output_dir={out}")
  assert done.returncode == 0, done.stderr[-3000:]
  assert "analysed on 24 training images" in done.stdout
  assert "| conv4 | 16 |" in done.stdout
  assert {"analysis.json", "analysis.md", "conv1_histograms.png"} <= set(os.listdir(out))
  recommendations = analysis.load_recommendations(str(out / "analysis.json"))
  assert sorted(recommendations) == list(channel_pruning.CONV_LAYERS)


def test_analyze_tool_rejects_bad_flags(tmp_path):
  done = tool_runner.run_tool("analyze", f"--model={tmp_path}/missing.keras",
                              f"--data_dir={tmp_path}", timeout=120)
  assert done.returncode == 1 and "model file not found" in done.stderr

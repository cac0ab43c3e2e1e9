"""Tests of structured channel pruning (tf_gtsrb.compression.channel_pruning)."""

import json
import os

import numpy as np
import pytest

from tf_gtsrb import errors
from tf_gtsrb.compression import channel_pruning
from tf_gtsrb.data import input_pipeline
from tf_gtsrb.evaluation import complexity
from tf_gtsrb.keras import keras
from tf_gtsrb.models import io as model_io
from tf_gtsrb.models import traffic_sign_cnn
import synthetic
import tool_runner

CHANNELS = (4, 8, 8, 16)
SIZE = 16


def _random_model(channels=CHANNELS, seed=0):
  """A tiny TrafficSignCNN with random weights and random BN statistics."""
  model = synthetic.tiny_cnn(input_size=SIZE, channels=channels, seed=seed)
  rng = np.random.default_rng(seed)
  for i, n in enumerate(channels, start=1):
    model.get_layer(f"bn{i}").set_weights([
        rng.uniform(0.5, 1.5, n).astype(np.float32),
        rng.normal(0.0, 0.3, n).astype(np.float32),
        rng.normal(0.0, 0.1, n).astype(np.float32),
        rng.uniform(0.5, 2.0, n).astype(np.float32)])
  kernel, _ = model.get_layer("logits").get_weights()
  model.get_layer("logits").set_weights(
      [kernel, rng.normal(0.0, 0.1, kernel.shape[1]).astype(np.float32)])
  return model


def _images(n=6, seed=1):
  return synthetic.random_float_data(SIZE, n, seed)[0]


def _logits_model(model):
  return keras.Model(model.inputs, model.get_layer("logits").output)


def test_pruned_model_matches_zeroed_original():
  model = _random_model()
  kept = channel_pruning.select_channels(
      model, {"conv1": 25, "conv2": 50, "conv3": 25, "conv4": 50})
  thin = channel_pruning.prune_kept(model, kept)
  zeroed = channel_pruning.zero_pruned_channels(model, kept)

  assert traffic_sign_cnn.channels_of(thin) == (3, 4, 6, 8)
  assert thin.count_params() < model.count_params()
  x = _images()
  np.testing.assert_allclose(_logits_model(thin)(x, training=False).numpy(),
                             _logits_model(zeroed)(x, training=False).numpy(), atol=1e-5)
  assert np.allclose(thin(x, training=False).numpy(), zeroed(x, training=False).numpy(),
                     atol=1e-5)
  # Removing channels changes the function (the test would not notice a no-op).
  assert not np.allclose(model(x, training=False).numpy(), thin(x, training=False).numpy(),
                         atol=1e-5)


def test_zeroed_channels_output_exactly_zero():
  model = _random_model()
  kept = channel_pruning.select_channels(model, 50)
  zeroed = channel_pruning.zero_pruned_channels(model, kept)
  probe = keras.Model(zeroed.inputs, [zeroed.get_layer(f"relu{i}").output for i in range(1, 5)])
  for name, act in zip(channel_pruning.CONV_LAYERS, probe(_images(), training=False)):
    removed = np.setdiff1d(np.arange(act.shape[-1]), kept[name])
    assert np.all(act.numpy()[..., removed] == 0.0)
  # The source model is left unchanged.
  assert np.any(model.get_layer("conv1").get_weights()[0] != 0)
  assert not np.allclose(model.get_layer("bn1").get_weights()[0], 0.0)


def test_prune_channels_keeps_settings_and_copies_weights():
  model = _random_model()
  thin = channel_pruning.prune_channels(model, 50, criterion="bn_gamma")
  assert traffic_sign_cnn.channels_of(thin) == (2, 4, 4, 8)
  assert thin.input_shape == model.input_shape
  assert thin.get_layer("dropout").rate == 0.5
  assert thin.get_layer("logits").units == 43
  kept = channel_pruning.select_channels(model, 50, criterion="bn_gamma")
  np.testing.assert_array_equal(
      thin.get_layer("bn2").get_weights()[3],
      model.get_layer("bn2").get_weights()[3][kept["conv2"]])
  np.testing.assert_array_equal(
      thin.get_layer("conv2").get_weights()[0],
      model.get_layer("conv2").get_weights()[0][:, :, kept["conv1"], :][..., kept["conv2"]])
  np.testing.assert_array_equal(
      thin.get_layer("logits").get_weights()[0],
      model.get_layer("logits").get_weights()[0][kept["conv4"], :])


def test_pruned_model_takes_another_dropout_rate_when_given():
  model = _random_model()
  kept = channel_pruning.select_channels(model, 50)
  thin = channel_pruning.prune_kept(model, kept, dropout=0.0)
  assert thin.get_layer("dropout").rate == 0.0
  assert model.get_layer("dropout").rate == 0.5
  x = _images()
  np.testing.assert_array_equal(thin(x, training=False).numpy(),
                                channel_pruning.prune_kept(model, kept)(x, training=False).numpy())


def test_zero_percent_is_identity():
  model = _random_model()
  thin = channel_pruning.prune_channels(model, 0)
  x = _images()
  np.testing.assert_allclose(thin(x, training=False).numpy(), model(x, training=False).numpy(),
                             atol=1e-6)


def test_select_by_l1_keeps_largest_norm_filters():
  model = _random_model()
  conv = model.get_layer("conv2")
  (kernel,) = conv.get_weights()
  base = np.sign(kernel) * 0.01 + 0.0  # equal L1 per filter before scaling
  scales = np.array([5, 1, 7, 2, 9, 3, 8, 4], np.float32)
  conv.set_weights([base * scales])
  kept = channel_pruning.select_channels(model, 50, criterion="l1")
  assert kept["conv2"] == [0, 2, 4, 6]  # scales 5, 7, 9, 8
  assert all(kept[name] == sorted(kept[name]) for name in kept)


def test_select_by_gamma_uses_absolute_gamma():
  model = _random_model()
  bn = model.get_layer("bn1")
  _, beta, mean, var = bn.get_weights()
  bn.set_weights([np.array([0.1, -2.0, 0.5, 1.0], np.float32), beta, mean, var])
  kept = channel_pruning.select_channels(model, 50, criterion="bn_gamma")
  assert kept["conv1"] == [1, 3]


def test_per_layer_dict_prunes_only_named_layers():
  model = _random_model()
  kept = channel_pruning.select_channels(model, {"conv4": 25})
  assert [len(kept[n]) for n in channel_pruning.CONV_LAYERS] == [4, 8, 8, 12]


@pytest.mark.parametrize("percent", [100, 150, -1, float("nan"), "30", True, None])
def test_bad_percentages_raise_config_error(percent):
  with pytest.raises(errors.ConfigError):
    channel_pruning.select_channels(_random_model(), percent)


def test_unknown_layer_and_criterion_raise_config_error():
  model = _random_model()
  with pytest.raises(errors.ConfigError, match="conv5"):
    channel_pruning.select_channels(model, {"conv5": 10})
  with pytest.raises(errors.ConfigError, match="criterion"):
    channel_pruning.prune_channels(model, 10, criterion="random")


def test_percentage_leaving_no_channel_names_layer():
  with pytest.raises(errors.ConfigError, match="conv1"):
    channel_pruning.select_channels(_random_model(), 90)  # 4 channels -> 0 kept
  with pytest.raises(errors.ConfigError, match="conv1"):
    channel_pruning.select_channels(_random_model(), {"conv1": 90, "conv2": 10})


@pytest.mark.parametrize("input_size, percentages", [
    (32, {"conv1": 25, "conv2": 25, "conv3": 50, "conv4": 68.75}),
    (32, 0), (20, {"conv1": 50, "conv4": 10})])
def test_params_and_macs_after_match_the_built_model(input_size, percentages):
  full = traffic_sign_cnn.DEFAULT_CHANNELS
  parsed = channel_pruning.parse_percentages(percentages)
  kept = tuple(channel_pruning.num_kept(c, parsed[n])
               for c, n in zip(full, channel_pruning.CONV_LAYERS))
  model = traffic_sign_cnn.build(channels=kept, input_size=input_size)
  trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
  assert channel_pruning.params_after(full, parsed) == trainable
  assert channel_pruning.macs_after(full, parsed, input_size) == complexity.count_macs(model)


def test_fit_to_budget_meets_both_budgets_by_raising_the_lowest_first():
  full = traffic_sign_cnn.DEFAULT_CHANNELS
  start = {"conv1": 34, "conv2": 33, "conv3": 29, "conv4": 13}
  baseline_macs = channel_pruning.macs_after(full, channel_pruning.parse_percentages(0))

  by_params = channel_pruning.fit_to_budget(full, start, max_params=90000)
  assert channel_pruning.params_after(full, by_params) <= 90000
  assert all(by_params[n] >= start[n] for n in start)
  # Water-filling: the layers it raised end level, within one step.
  raised = [v for n, v in by_params.items() if v > start[n]]
  assert raised and max(raised) - min(raised) <= 0.5

  by_macs = channel_pruning.fit_to_budget(full, start, max_macs=0.2 * baseline_macs)
  assert channel_pruning.macs_after(full, by_macs) <= 0.2 * baseline_macs

  both = channel_pruning.fit_to_budget(full, start, max_params=90000,
                                       max_macs=0.2 * baseline_macs)
  assert channel_pruning.params_after(full, both) <= 90000
  assert channel_pruning.macs_after(full, both) <= 0.2 * baseline_macs


def test_fit_to_budget_keeps_percentages_that_fit():
  released = {"conv1": 25.0, "conv2": 25.0, "conv3": 50.0, "conv4": 68.75}
  full = traffic_sign_cnn.DEFAULT_CHANNELS
  budget_macs = 0.4 * channel_pruning.macs_after(full, channel_pruning.parse_percentages(0))
  assert channel_pruning.fit_to_budget(full, released, max_params=90000,
                                       max_macs=budget_macs) == released
  assert channel_pruning.fit_to_budget(full, released) == released  # No budget.


def test_unreachable_budget_raises_config_error():
  with pytest.raises(errors.ConfigError, match="cannot reach 100 parameters"):
    channel_pruning.fit_to_budget(traffic_sign_cnn.DEFAULT_CHANNELS, 10, max_params=100)
  with pytest.raises(errors.ConfigError, match="cannot reach any number of parameters and 10 MACs"):
    channel_pruning.fit_to_budget(traffic_sign_cnn.DEFAULT_CHANNELS, 10, max_macs=10)


def test_bad_kept_indices_raise_config_error():
  model = _random_model()
  kept = channel_pruning.select_channels(model, 25)
  with pytest.raises(errors.ConfigError):
    channel_pruning.prune_kept(model, {**kept, "conv1": []})
  with pytest.raises(errors.ConfigError):
    channel_pruning.prune_kept(model, {**kept, "conv2": [0, 8]})
  with pytest.raises(errors.ConfigError):
    channel_pruning.zero_pruned_channels(model, {"conv1": [0]})


def test_other_architectures_raise_model_error():
  inputs = keras.Input((16, 16, 3))
  x = keras.layers.Conv2D(4, 3, name="conv1")(inputs)
  x = keras.layers.GlobalAveragePooling2D()(x)
  outputs = keras.layers.Dense(43, name="logits")(x)
  other = keras.Model(inputs, outputs)
  with pytest.raises(errors.ModelError, match="conv2"):
    channel_pruning.prune_channels(other, 10)


def test_prune_step_without_epochs_prunes_and_scores_before(batches16):
  model = _random_model()
  pruned, record = channel_pruning.prune_and_fine_tune(
      model, 50, None, None, 0, 1e-3, None, dropout=0.2, before_ds=batches16)
  assert traffic_sign_cnn.channels_of(pruned) == (2, 4, 4, 8)
  assert pruned.get_layer("dropout").rate == 0.2
  assert record["channels_after"] == [2, 4, 4, 8] and record["val_accuracy"] is None
  assert 0.0 <= record["accuracy_before_fine_tune"] <= 1.0
  assert pruned.history is None and "swa" not in record


def test_stage_counts_remove_equal_shares_and_end_at_the_kept_channels():
  layers = channel_pruning.CONV_LAYERS
  before = dict(zip(layers, (32, 64, 128, 256)))
  after = dict(zip(layers, (24, 48, 64, 80)))
  counts = channel_pruning.stage_counts(before, after, 3)
  assert [[stage[n] for n in layers] for stage in counts] == [
      [29, 59, 107, 197], [27, 53, 85, 139], [24, 48, 64, 80]]
  assert channel_pruning.stage_counts(before, after, 1) == [after]


def test_staged_pruning_cuts_on_the_pruned_model_and_records_the_source_channels():
  model = _random_model()
  pruned, record = channel_pruning.prune_and_fine_tune(model, 50, None, None, 0, 1e-3, None,
                                                       stages=2)
  assert traffic_sign_cnn.channels_of(pruned) == (2, 4, 4, 8) and record["stages"] == 2
  kept = record["kept_channels"]
  expected = model.get_layer("conv1").get_weights()[0][..., kept["conv1"]]
  np.testing.assert_array_equal(pruned.get_layer("conv1").get_weights()[0], expected)
  expected = model.get_layer("conv4").get_weights()[0][:, :, kept["conv3"]][..., kept["conv4"]]
  np.testing.assert_array_equal(pruned.get_layer("conv4").get_weights()[0], expected)
  # The second cut scores conv4 on the first's conv3 inputs only: another choice than one cut.
  once = channel_pruning.select_channels(model, 50)
  assert kept["conv4"] != once["conv4"]


@pytest.mark.parametrize("epochs, stages", [(3, 2), (2, 0)])
def test_stages_must_split_the_fine_tune_evenly(epochs, stages):
  with pytest.raises(errors.ConfigError, match="equal pruning stages"):
    channel_pruning.prune_and_fine_tune(_random_model(), 50, None, None, epochs, 1e-3, None,
                                        stages=stages)


@pytest.mark.slow
def test_prune_step_fine_tunes_averages_and_logs(batches16, tmp_path):
  pruned, record = channel_pruning.prune_and_fine_tune(
      _random_model(), 25, batches16.repeat(), batches16, 1, 1e-3, 2, swa_epochs=2,
      log_dir=str(tmp_path))
  assert len(pruned.history.history["val_accuracy"]) == 1  # The fine-tune's, not the average's.
  assert record["val_accuracy"] == record["swa"]["average_val_accuracy"]
  assert sorted(os.listdir(tmp_path)) == ["fit", "swa"]


def test_prune_summary():
  model = _random_model()
  kept = channel_pruning.select_channels(model, 25)
  summary = channel_pruning.prune_summary(model, kept)
  assert summary["conv4"]["channels_before"] == 16
  assert summary["conv4"]["channels_after"] == 12
  assert summary["conv4"]["pruned_percent"] == 25.0
  assert summary["conv4"]["kept_indices"] == kept["conv4"]


def test_prune_tool_end_to_end(tmp_path, tiny_data_dir):
  model_path = str(tmp_path / "model.keras")
  model_io.save_model(synthetic.tiny_cnn(input_size=32), model_path)
  analysis_path = tmp_path / "analysis.json"
  analysis_path.write_text(json.dumps({"recommended_percentages": {
      "conv1": 25.0, "conv2": 50.0, "conv3": 0.0, "conv4": 25.0}}))
  out = tmp_path / "pruned"
  done = tool_runner.run_tool(
      "prune_channels", f"--model={model_path}", f"--data_dir={tiny_data_dir}",
      f"--output_dir={out}", f"--analysis={analysis_path}", "--criterion=bn_gamma", "--epochs=2",
      "--stages=2", "--steps_per_epoch=2", "--batch_size=16", "--verbose=0",
      f"--teacher={model_path}", "--swa_epochs=2")
  assert done.returncode == 0, done.stderr[-3000:]
  assert "| conv2 | 8 | 4 | 50.0 |" in done.stdout
  assert {"pruned.keras", "prune_config.json", "evaluation.json", "evaluation.md"} <= set(
      os.listdir(out))
  pruned = model_io.load_model(str(out / "pruned.keras"))
  assert traffic_sign_cnn.channels_of(pruned) == (3, 4, 8, 12)
  with open(out / "prune_config.json") as f:
    config = json.load(f)
  assert config["channels_after"] == [3, 4, 8, 12]
  assert [len(config["kept_channels"][n]) for n in channel_pruning.CONV_LAYERS] == [3, 4, 8, 12]
  assert config["criterion"] == "bn_gamma" and config["stages"] == 2
  assert config["params_after"] < config["params_before"]
  assert config["fine_tune"]["teacher"] == [os.path.abspath(model_path)]
  assert len(config["swa"]["val_accuracy"]) == 2
  assert config["validation_accuracy"] == pytest.approx(config["swa"]["average_val_accuracy"])
  with open(out / "evaluation.json") as f:
    assert json.load(f)["split"] == "validation"


def test_prune_tool_final_fit_measures_validation_only_before_the_fine_tune(tmp_path,
                                                                          tiny_data_dir):
  model_path = str(tmp_path / "model.keras")
  model_io.save_model(synthetic.tiny_cnn(input_size=32), model_path)
  out = tmp_path / "pruned"
  done = tool_runner.run_tool(
      "prune_channels", f"--model={model_path}", f"--data_dir={tiny_data_dir}",
      f"--output_dir={out}", "--percent=25", "--epochs=1", "--batch_size=64", "--verbose=0",
      "--fine_tune_on_validation")
  assert done.returncode == 0, done.stderr[-3000:]
  assert "n/a (fine-tuned on the validation split too) after 1 fine-tuning epoch" in done.stdout
  assert set(os.listdir(out)) == {"pruned.keras", "prune_config.json"}  # No evaluation.
  with open(out / "prune_config.json") as f:
    config = json.load(f)
  assert config["fine_tune"]["split"] == "train+validation"
  assert config["fine_tune"]["steps_per_epoch"] == input_pipeline.split_size(
      tiny_data_dir, "train+validation") // 64
  assert config["validation_accuracy"] is None
  assert 0.0 <= config["validation_accuracy_before_fine_tune"] <= 1.0


@pytest.mark.parametrize("args, message", [
    (["--percent=100"], "--percent must be in [0, 100)"),
    (["--percent=10", "--analysis=a.json"], "exactly one of --percent and --analysis"),
    ([], "exactly one of --percent and --analysis"),
    (["--percent=10", "--epochs=-1"], "--epochs"),
    (["--percent=10", "--teacher=no_teacher.keras"], "no_teacher.keras"),
    (["--percent=10", "--distill_alpha=2"], "--distill_alpha must be in [0, 1]"),
    (["--percent=10", "--distill_temperature=0"], "--distill_temperature must be > 0"),
    (["--percent=10", "--distill_mixup=-1"], "--distill_mixup must be >= 0"),
    (["--percent=10", "--swa_epochs=-1"], "--swa_epochs must be >= 0"),
    (["--percent=10", "--swa_learning_rate=0"], "--swa_learning_rate must be > 0"),
    (["--percent=10", "--epochs=0", "--swa_epochs=2"], "set --epochs >= 1"),
    (["--percent=10", "--stages=0"], "--stages must be >= 1"),
    (["--percent=10", "--epochs=5", "--stages=2"], "--epochs=5 does not split into --stages=2"),
])
def test_prune_tool_rejects_bad_flags(tmp_path, args, message):
  tool_runner.assert_rejects_flags("prune_channels", tmp_path, args, message)

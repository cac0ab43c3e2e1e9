"""The pure arithmetic of channel pruning: percentages, kept channels, params/MACs, budget fitting.

No model is built. Counts come from the TrafficSignCNN layer formulas written out below
(`traffic_sign_cnn.build`: 3x3 'same' conv without bias, BN, ReLU, 2x2 max pool; global
average pooling; dense with bias) and from hand-computed totals; the default model's 399,947
parameters and the released model's 88,659 parameters / 5,827,952 MACs are the published ones.
"""

import math
import re

import numpy as np
import pytest

from tf_gtsrb import errors
from tf_gtsrb.compression import channel_pruning

FULL = (32, 64, 128, 256)
RELEASED = {"conv1": 25.0, "conv2": 25.0, "conv3": 50.0, "conv4": 68.75}
TEN = (10, 10, 10, 10)


def _params(kept, num_classes=43, input_channels=3):
  """Trainable weights, layer by layer."""
  total, inputs = 0, input_channels
  for out in kept:
    total += 3 * 3 * inputs * out  # conv kernel, no bias
    total += 2 * out  # BN gamma and beta (moving mean/variance are not trainable)
    inputs = out
  return total + inputs * num_classes + num_classes  # dense kernel + bias


def _macs(kept, input_size, num_classes=43, input_channels=3):
  """Conv + dense multiply-accumulates per image, layer by layer."""
  total, inputs, side = 0, input_channels, input_size
  for out in kept:
    total += side * side * 3 * 3 * inputs * out  # 'same' conv at the block's input side
    side //= 2  # 2x2 max pooling (floor)
    inputs = out
  return total + inputs * num_classes  # after global pooling


def _all(value):
  return {f"conv{i}": value for i in range(1, 5)}


def test_reference_formulas_give_the_published_counts():
  assert _params(FULL) == 399947
  assert _macs(FULL, 32) == 15051520
  assert _params((24, 48, 64, 80)) == 88659
  assert _macs((24, 48, 64, 80), 32) == 5827952


# --- parse_percentages / percentages_from_text


@pytest.mark.parametrize("value", [0, 40, 12.5, 99.99, np.int64(30), np.float32(12.5)])
def test_one_number_applies_to_every_layer(value):
  parsed = channel_pruning.parse_percentages(value)
  assert parsed == _all(float(value))
  assert all(type(v) is float for v in parsed.values())  # pylint: disable=unidiomatic-typecheck


def test_a_dict_leaves_missing_layers_unpruned():
  parsed = channel_pruning.parse_percentages({"conv4": 60, "conv1": np.int32(30)})
  assert parsed == {"conv1": 30.0, "conv2": 0.0, "conv3": 0.0, "conv4": 60.0}
  assert list(parsed) == ["conv1", "conv2", "conv3", "conv4"]
  assert all(type(v) is float for v in parsed.values())  # pylint: disable=unidiomatic-typecheck
  assert channel_pruning.parse_percentages({}) == _all(0.0)


@pytest.mark.parametrize("value, message", [
    (100, "prune percentage for conv1: 100 is outside [0, 100)"),
    (100.0, "is outside [0, 100)"), (-0.001, "-0.001 is outside"), (150, "outside"),
    (float("nan"), "nan is outside"), (float("inf"), "inf is outside"),
    (-float("inf"), "outside"),
    (True, "prune percentage for conv1: not a number: True"), (None, "not a number: None"),
    ("40", "not a number: '40'"), ([40], "not a number"),
])
def test_bad_percentages(value, message):
  with pytest.raises(errors.ConfigError, match=re.escape(message)):
    channel_pruning.parse_percentages(value)


def test_bad_values_in_a_dict_name_their_layer():
  with pytest.raises(errors.ConfigError, match=re.escape("for conv3: 100 is outside")):
    channel_pruning.parse_percentages({"conv1": 10, "conv3": 100})
  with pytest.raises(errors.ConfigError, match=re.escape("for conv2: not a number: False")):
    channel_pruning.parse_percentages({"conv2": False})


def test_unknown_layers_are_listed():
  expected = ("prune percentages: unknown layer(s) ['conv0', 'conv5']; expected some of "
              "['conv1', 'conv2', 'conv3', 'conv4']")
  with pytest.raises(errors.ConfigError, match=re.escape(expected)):
    channel_pruning.parse_percentages({"conv5": 1, "conv1": 2, "conv0": 3})


@pytest.mark.parametrize("text, expected", [
    ("40", _all(40.0)), (" 12.5 ", _all(12.5)), (40, _all(40.0)), ("0", _all(0.0)),
    ("conv1=30,conv4=60", {"conv1": 30.0, "conv2": 0.0, "conv3": 0.0, "conv4": 60.0}),
    (" conv2 = 10 , conv3=20 ,", {"conv1": 0.0, "conv2": 10.0, "conv3": 20.0, "conv4": 0.0}),
    ("conv1=30,,conv4=1e1", {"conv1": 30.0, "conv2": 0.0, "conv3": 0.0, "conv4": 10.0}),
])
def test_percentages_from_text(text, expected):
  assert channel_pruning.percentages_from_text(text) == expected


@pytest.mark.parametrize("text, message", [
    ("abc", "prune percentages 'abc': expected a number or conv1=P,...,conv4=P"),
    ("conv1=abc", "prune percentages 'conv1=abc': expected a number"),
    ("conv1", "prune percentages 'conv1': expected a number"),
    ("conv1=30=4", "expected a number or conv1=P"),
    ("", "prune percentages '': expected a number"),
    ("conv5=10", "unknown layer(s) ['conv5']"),
    ("conv1=100", "prune percentage for conv1: 100.0 is outside [0, 100)"),
    ("100", "prune percentage for conv1: 100.0 is outside"),
    ("nan", "nan is outside"),
])
def test_bad_text_is_a_config_error(text, message):
  with pytest.raises(errors.ConfigError, match=re.escape(message)) as e:
    channel_pruning.percentages_from_text(text)
  if "expected a number" in message:
    assert isinstance(e.value.__cause__, ValueError)


# --- num_kept / params_after / macs_after


@pytest.mark.parametrize("channels, percent, kept", [
    (256, 68.75, 80), (32, 25, 24), (64, 12.5, 56), (128, 50, 64),
    (10, 0, 10), (10, 4.9, 10), (10, 5, 9), (10, 24, 8), (10, 25, 7), (10, 26, 7),
    (10, 94.9, 1), (10, 95, 0), (3, 50, 1), (1, 49, 1), (1, 50, 0), (40, 90, 4), (40, 95, 2),
    (40, 96, 2),
])
def test_num_kept_rounds_the_pruned_count_half_up(channels, percent, kept):
  assert channel_pruning.num_kept(channels, percent) == kept
  assert isinstance(channel_pruning.num_kept(channels, percent), int)


def test_kept_channels_per_layer():
  percentages = {"conv1": 25.0, "conv2": 12.5, "conv3": 50.0, "conv4": 68.75}
  kept_channels = channel_pruning._kept_channels  # pylint: disable=protected-access
  assert kept_channels(FULL, percentages) == [24, 56, 64, 80]
  assert kept_channels(TEN, _all(0.0)) == [10, 10, 10, 10]


def test_params_and_macs_of_the_published_models():
  assert channel_pruning.params_after(FULL, _all(0.0)) == 399947
  assert channel_pruning.macs_after(FULL, _all(0.0)) == 15051520
  assert channel_pruning.params_after(FULL, RELEASED) == 88659
  assert channel_pruning.macs_after(FULL, RELEASED) == 5827952
  assert channel_pruning.macs_after(FULL, RELEASED, 32) == 5827952


def test_params_and_macs_by_hand():
  # (10, 9, 8, 8): conv 9*3*10 + 20, 9*10*9 + 18, 9*9*8 + 16, 9*8*8 + 16; dense 8*43 + 43.
  start = {"conv1": 0.0, "conv2": 10.0, "conv3": 20.0, "conv4": 20.0}
  assert channel_pruning.params_after(TEN, start) == 290 + 828 + 664 + 592 + 387 == 2761
  # 8x8 input: sides 8, 4, 2, 1.
  assert channel_pruning.macs_after(TEN, start, 8) == (
      64 * 27 * 10 + 16 * 9 * 90 + 4 * 9 * 72 + 1 * 9 * 64 + 8 * 43) == 33752
  # 20x20 input: sides 20, 10, 5, 2 (pooling floors 5 -> 2).
  assert channel_pruning.macs_after(FULL, _all(0.0), 20) == (
      400 * 864 + 100 * 18432 + 25 * 73728 + 4 * 294912 + 256 * 43) == 5222656


def test_params_and_macs_with_other_classes_and_inputs():
  # Grey 16x16 input, 10 classes, (4, 8, 8, 16): 44 + 304 + 592 + 1184 + 170.
  assert channel_pruning.params_after((4, 8, 8, 16), _all(0.0), num_classes=10,
                                      input_channels=1) == 2294
  assert channel_pruning.macs_after((4, 8, 8, 16), _all(0.0), input_size=16, num_classes=10,
                                    input_channels=1) == 9216 + 18432 + 9216 + 4608 + 160


@pytest.mark.parametrize("channels, percentages, input_size", [
    (FULL, RELEASED, 32), (FULL, {"conv1": 50.0, "conv2": 0.0, "conv3": 0.0, "conv4": 10.0}, 20),
    ((16, 24, 40, 72), {"conv1": 12.5, "conv2": 33.0, "conv3": 70.0, "conv4": 4.0}, 48),
    ((7, 5, 3, 2), _all(0.0), 17)])
def test_params_and_macs_follow_the_layer_formulas(channels, percentages, input_size):
  kept = [c - math.floor(c * percentages[n] / 100 + 0.5)
          for c, n in zip(channels, ("conv1", "conv2", "conv3", "conv4"))]
  assert channel_pruning.params_after(channels, percentages) == _params(kept)
  assert channel_pruning.macs_after(channels, percentages, input_size) == _macs(kept, input_size)
  assert channel_pruning.params_after(channels, percentages, 7, 2) == _params(kept, 7, 2)
  assert channel_pruning.macs_after(channels, percentages, input_size, 7, 2) == _macs(
      kept, input_size, 7, 2)


# --- fit_to_budget. Channels (10, 10, 10, 10) with step 10, hand-simulated: the lowest
# percentages rise by one step per round until the budget holds.
#   {0, 10, 20, 20}  kept (10, 9, 8, 8)  params 2761  MACs(8x8) 33752  MACs(32x32) 534872
#   {10, 10, 20, 20} kept (9, 9, 8, 8)   params 2651  MACs(8x8) 30728  MACs(32x32) 486488
#   {20, 20, 20, 20} kept (8, 8, 8, 8)   params 2395  MACs(8x8) 26264
#   {30, 30, 30, 30} kept (7, 7, 7, 7)   params 1912  MACs(8x8) 21658

START = {"conv1": 0.0, "conv2": 10.0, "conv3": 20.0, "conv4": 20.0}
ROUND1 = {"conv1": 10.0, "conv2": 10.0, "conv3": 20.0, "conv4": 20.0}


def test_hand_simulated_rounds_match_the_formulas():
  assert _params((10, 9, 8, 8)) == 2761 and _macs((10, 9, 8, 8), 8) == 33752
  assert _params((9, 9, 8, 8)) == 2651 and _macs((9, 9, 8, 8), 8) == 30728
  assert _params((8, 8, 8, 8)) == 2395 and _macs((8, 8, 8, 8), 8) == 26264
  assert _params((7, 7, 7, 7)) == 1912 and _macs((7, 7, 7, 7), 8) == 21658
  assert _macs((10, 9, 8, 8), 32) == 534872 and _macs((9, 9, 8, 8), 32) == 486488


@pytest.mark.parametrize("max_params, expected", [
    (2761, START), (2760, ROUND1), (2651, ROUND1), (2650, _all(20.0)), (2395, _all(20.0)),
    (2394, _all(30.0)), (1912, _all(30.0))])
def test_fit_to_a_parameter_budget(max_params, expected):
  assert channel_pruning.fit_to_budget(TEN, START, max_params=max_params, step=10) == expected


@pytest.mark.parametrize("max_macs, expected", [
    (33752, START), (30728, ROUND1), (30727, _all(20.0)), (26264, _all(20.0)),
    (26263, _all(30.0))])
def test_fit_to_a_mac_budget(max_macs, expected):
  assert channel_pruning.fit_to_budget(TEN, START, max_macs=max_macs, input_size=8,
                                       step=10) == expected


def test_mac_budget_uses_a_32x32_input_by_default():
  assert channel_pruning.fit_to_budget(TEN, START, max_macs=534872, step=10) == START
  assert channel_pruning.fit_to_budget(TEN, START, max_macs=486488, step=10) == ROUND1
  assert channel_pruning.fit_to_budget(TEN, START, max_macs=486487, step=10) == _all(20.0)


def test_both_budgets_must_hold():
  # Params alone would stop at ROUND1, MACs alone at {20, ...}; and the other way round.
  assert channel_pruning.fit_to_budget(TEN, START, max_params=2651, max_macs=26264,
                                       input_size=8, step=10) == _all(20.0)
  assert channel_pruning.fit_to_budget(TEN, START, max_params=2394, max_macs=30728,
                                       input_size=8, step=10) == _all(30.0)
  assert channel_pruning.fit_to_budget(TEN, START, max_params=2761, max_macs=33752,
                                       input_size=8, step=10) == START


def test_only_the_lowest_layers_rise():
  # conv2 at 0.5 is above the lowest (0) by less than a step: it must not rise with conv1.
  # (9, 10, 7, 7): 261 + 830 + 644 + 455 + 344 = 2534; (10, 10, 7, 7) = 2653.
  start = {"conv1": 0.0, "conv2": 0.5, "conv3": 30.0, "conv4": 30.0}
  assert _params((9, 10, 7, 7)) == 2534 and _params((10, 10, 7, 7)) == 2653
  assert channel_pruning.fit_to_budget(TEN, start, max_params=2600, step=10) == {
      "conv1": 10.0, "conv2": 0.5, "conv3": 30.0, "conv4": 30.0}


def test_layers_within_1e_9_of_the_lowest_rise_with_it():
  # Float sums (0.1 + 0.2 != 0.3) must not leave a layer a hair above the others behind.
  start = {"conv1": 0.0, "conv2": 1e-9, "conv3": 30.0, "conv4": 30.0}
  assert channel_pruning.fit_to_budget(TEN, start, max_params=2600, step=10) == {
      "conv1": 10.0, "conv2": 10.0 + 1e-9, "conv3": 30.0, "conv4": 30.0}


def test_default_step_is_half_a_percent():
  # Rounds: {4.5, 4.5, ...} keeps (10, 10, 7, 7) = 2653 params; {5, 5, ...} keeps
  # (9, 9, 7, 7) = 2388 params, within 2400.
  start = {"conv1": 4.0, "conv2": 4.5, "conv3": 30.0, "conv4": 30.0}
  assert _params((9, 9, 7, 7)) == 2388
  assert channel_pruning.fit_to_budget(TEN, start, max_params=2400) == {
      "conv1": 5.0, "conv2": 5.0, "conv3": 30.0, "conv4": 30.0}


def test_percentages_are_capped_at_95_by_default():
  # (40, 40, 40, 40): 90% keeps 4 channels, 95% and 96% keep 2.
  # (4, 2, 2, 2): 116 + 76 + 40 + 40 + 129 = 401 params; (2, 2, 2, 2) = 307.
  forty = (40, 40, 40, 40)
  start = {"conv1": 90.0, "conv2": 95.0, "conv3": 95.0, "conv4": 95.0}
  assert _params((4, 2, 2, 2)) == 401 and _params((2, 2, 2, 2)) == 307
  assert channel_pruning.fit_to_budget(forty, start, max_params=350, step=10) == _all(95.0)
  with pytest.raises(errors.ConfigError, match=re.escape(
      "cannot reach 306 parameters and any number of MACs with at most 95.0% pruning per "
      "layer")):
    channel_pruning.fit_to_budget(forty, start, max_params=306, step=10)


def test_max_percent_caps_every_step():
  assert channel_pruning.fit_to_budget(TEN, START, max_params=2650, step=10,
                                       max_percent=15.0) == {
      "conv1": 15.0, "conv2": 15.0, "conv3": 20.0, "conv4": 20.0}
  with pytest.raises(errors.ConfigError, match=re.escape(
      "cannot reach any number of parameters and 5 MACs with at most 15.0% pruning")):
    channel_pruning.fit_to_budget(TEN, START, max_macs=5, step=10, max_percent=15.0)


def test_no_budget_returns_the_parsed_percentages():
  start = dict(START)
  assert channel_pruning.fit_to_budget(TEN, start) == START
  assert channel_pruning.fit_to_budget(TEN, 10) == _all(10.0)
  assert channel_pruning.fit_to_budget(TEN, 10, max_params=0, max_macs=0) == _all(10.0)
  channel_pruning.fit_to_budget(TEN, start, max_params=2395, step=10)
  assert start == START  # The caller's dict is not changed.
  with pytest.raises(errors.ConfigError, match="outside"):
    channel_pruning.fit_to_budget(TEN, 100, max_params=1)

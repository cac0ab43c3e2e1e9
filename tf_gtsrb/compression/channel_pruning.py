"""Structured channel pruning of TrafficSignCNN: remove whole conv filters.

A pruned model is a genuinely thinner TrafficSignCNN (fewer parameters, fewer
MACs), built with `traffic_sign_cnn.build(channels=...)` and initialised from
the kept slices of the source weights:

  conv{i} kernel  [:, :, kept{i-1}, kept{i}]   (conv1 keeps all 3 RGB inputs)
  bn{i}           gamma, beta, moving mean, moving variance [kept{i}]
  logits kernel   [kept4, :]                   (bias unchanged)

Which filters survive is decided per layer by `criterion`: 'l1' keeps the
filters with the largest L1 norm, 'bn_gamma' those with the largest |gamma|.
The prune step may remove them at once or in equal stages with fine-tuning between
(`prune_and_fine_tune(stages=...)`).
"""

import math
import os

import numpy as np

from tf_gtsrb import errors
from tf_gtsrb.evaluation import complexity
from tf_gtsrb.keras import keras
from tf_gtsrb.models import traffic_sign_cnn
from tf_gtsrb.training import compile as compile_lib
from tf_gtsrb.training import swa

CONV_LAYERS = tuple(f"conv{i}" for i in range(1, traffic_sign_cnn.NUM_BLOCKS + 1))
BN_LAYERS = tuple(f"bn{i}" for i in range(1, traffic_sign_cnn.NUM_BLOCKS + 1))
CRITERIA = ("l1", "bn_gamma")


def check_traffic_sign_cnn(model):
  """Raises ModelError unless `model` has the TrafficSignCNN layers this module edits."""
  expected = ([(n, keras.layers.Conv2D) for n in CONV_LAYERS] +
              [(n, keras.layers.BatchNormalization) for n in BN_LAYERS] +
              [("logits", keras.layers.Dense)])
  names = {layer.name: layer for layer in model.layers}
  for name, layer_type in expected:
    layer = names.get(name)
    if layer is None:
      raise errors.ModelError(
          f"model {model.name!r}: not a TrafficSignCNN (no layer {name!r}); channel "
          "pruning needs conv1..conv4, bn1..bn4 and logits (strip tfmot wrappers first)")
    if not isinstance(layer, layer_type):
      raise errors.ModelError(
          f"model {model.name!r}: layer {name!r} is a {type(layer).__name__}, "
          f"expected {layer_type.__name__}")
  for name in BN_LAYERS:
    if len(names[name].get_weights()) != 4:
      raise errors.ModelError(
          f"model {model.name!r}: layer {name!r} must have gamma, beta, moving mean and "
          "moving variance")


def parse_percentages(percentages):
  """Returns {conv layer: percent} from a number (all layers) or a per-layer dict.

  Layers missing from a dict are not pruned. Raises ConfigError for unknown
  layer names, non-numbers and percentages outside [0, 100).
  """
  if isinstance(percentages, dict):
    unknown = sorted(set(percentages) - set(CONV_LAYERS))
    if unknown:
      raise errors.ConfigError(
          f"prune percentages: unknown layer(s) {unknown}; expected some of {list(CONV_LAYERS)}")
    result = {name: percentages.get(name, 0.0) for name in CONV_LAYERS}
  else:
    result = {name: percentages for name in CONV_LAYERS}
  for name, value in result.items():
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
      raise errors.ConfigError(f"prune percentage for {name}: not a number: {value!r}")
    if not (math.isfinite(value) and 0.0 <= value < 100.0):
      raise errors.ConfigError(
          f"prune percentage for {name}: {value} is outside [0, 100)")
    result[name] = float(value)
  return result


def percentages_from_text(text):
  """'40' -> 40.0 (every layer); 'conv1=30,conv4=60' -> per-layer dict; validated."""
  text = str(text).strip()
  try:
    if "=" not in text:
      return parse_percentages(float(text))
    pairs = (item.split("=", 1) for item in text.split(",") if item.strip())
    return parse_percentages({name.strip(): float(value) for name, value in pairs})
  except ValueError as e:
    if isinstance(e, errors.ConfigError):
      raise
    raise errors.ConfigError(
        f"prune percentages {text!r}: expected a number or conv1=P,...,conv4=P") from e


def _kept_channels(channels, percentages):
  return [num_kept(c, percentages[name]) for c, name in zip(channels, CONV_LAYERS)]


def params_after(channels, percentages, num_classes=43, input_channels=3):
  """Trainable parameters of a TrafficSignCNN with `channels` pruned by `percentages`."""
  kept = _kept_channels(channels, percentages)
  inputs = [input_channels] + kept[:-1]
  convs = sum(9 * i * o + 2 * o for i, o in zip(inputs, kept))  # kernels + BN gamma/beta
  return convs + kept[-1] * num_classes + num_classes


def macs_after(channels, percentages, input_size=32, num_classes=43, input_channels=3):
  """MACs per image of a TrafficSignCNN with `channels` pruned by `percentages`
  (conv + dense, as `complexity.count_macs` counts them)."""
  kept = _kept_channels(channels, percentages)
  inputs = [input_channels] + kept[:-1]
  sides = [input_size // 2**block for block in range(len(kept))]  # 'same' conv, then pool
  convs = sum(side * side * 9 * i * o for side, i, o in zip(sides, inputs, kept))
  return convs + kept[-1] * num_classes


def fit_to_budget(channels, percentages, max_params=0, max_macs=0, input_size=32, step=0.5,
                  max_percent=95.0):
  """Raises prune percentages until the pruned model has at most `max_params`
  parameters and `max_macs` MACs per image (0: no limit).

  Water-filling: the lowest percentages rise first, so every layer keeps at
  least its recommended share pruned and the layers the analysis would spare
  most do not end up far wider than the rest (which would keep the parameters
  in the largest layer, conv4).
  """
  percentages = dict(parse_percentages(percentages))

  def over_budget():
    return ((max_params and params_after(channels, percentages) > max_params) or
            (max_macs and macs_after(channels, percentages, input_size) > max_macs))

  while over_budget():
    lowest = min(percentages.values())
    if lowest >= max_percent:
      raise errors.ConfigError(
          f"cannot reach {max_params or 'any number of'} parameters and "
          f"{max_macs or 'any number of'} MACs with at most {max_percent}% pruning per layer")
    for name, value in percentages.items():
      if value <= lowest + 1e-9:
        percentages[name] = min(max_percent, value + step)
  return percentages


def num_kept(num_channels, percent):
  """Channels left after pruning `percent` % of `num_channels` (round half up)."""
  return num_channels - int(math.floor(num_channels * percent / 100.0 + 0.5))


def channel_scores(model, criterion="l1"):
  """Returns {conv layer: per-filter importance (numpy, larger = more important)}."""
  if criterion not in CRITERIA:
    raise errors.ConfigError(
        f"unknown pruning criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")
  check_traffic_sign_cnn(model)
  scores = {}
  for conv, bn in zip(CONV_LAYERS, BN_LAYERS):
    if criterion == "l1":
      kernel = model.get_layer(conv).get_weights()[0]
      scores[conv] = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
    else:
      scores[conv] = np.abs(model.get_layer(bn).get_weights()[0])
  return scores


def select_channels(model, percentages, criterion="l1"):
  """Returns {conv layer: sorted list of kept filter indices}.

  `percentages` is one number for every conv layer or a dict {conv name: %}.
  Within a layer the highest-scoring filters are kept (ties: lower index).
  Raises ConfigError for bad percentages or one that would leave no channel.
  """
  if criterion not in CRITERIA:
    raise errors.ConfigError(
        f"unknown pruning criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")
  return _strongest(model, kept_counts(model, percentages), criterion)


def kept_counts(model, percentages):
  """{conv layer: channels left after removing `percentages` of `model`'s}.

  Raises ConfigError for bad percentages or one that would leave no channel.
  """
  percents = parse_percentages(percentages)
  check_traffic_sign_cnn(model)
  counts = {}
  for name in CONV_LAYERS:
    n = model.get_layer(name).filters
    counts[name] = num_kept(n, percents[name])
    if counts[name] < 1:
      raise errors.ConfigError(
          f"prune percentage for {name}: {percents[name]}% of {n} channels leaves none; "
          "use a smaller percentage")
  return counts


def _strongest(model, counts, criterion):
  """{conv layer: sorted indices of its `counts[layer]` highest-scoring filters}."""
  scores = channel_scores(model, criterion)
  return {name: sorted(int(i) for i in np.argsort(-scores[name], kind="stable")[:counts[name]])
          for name in CONV_LAYERS}


def stage_counts(channels, kept_counts, stages):
  """Channels of each conv layer after each of `stages` equal pruning stages: stage s has
  removed s/stages of the layer's pruned channels (rounded half up), the last all of them.

  `channels` and `kept_counts` are {conv layer: count} before and after the whole pruning.
  """
  return [{name: channels[name] - int(math.floor(
      (channels[name] - kept_counts[name]) * stage / stages + 0.5)) for name in CONV_LAYERS}
          for stage in range(1, stages + 1)]


def check_kept(model, kept):
  """Validates a {conv layer: kept indices} mapping against `model`; returns it normalised."""
  check_traffic_sign_cnn(model)
  missing = [name for name in CONV_LAYERS if name not in kept]
  if missing:
    raise errors.ConfigError(f"kept channels: missing layer(s) {missing}")
  result = {}
  for name in CONV_LAYERS:
    n = model.get_layer(name).filters
    indices = sorted(int(i) for i in kept[name])
    if not indices:
      raise errors.ConfigError(f"kept channels for {name}: keeps no channel")
    if len(set(indices)) != len(indices):
      raise errors.ConfigError(f"kept channels for {name}: repeated indices")
    if indices[0] < 0 or indices[-1] >= n:
      raise errors.ConfigError(
          f"kept channels for {name}: indices must lie in [0, {n}), got {indices}")
    result[name] = indices
  return result


def _model_settings(model):
  input_size = model.input_shape[1]
  try:
    dropout = float(model.get_layer("dropout").rate)
  except ValueError:
    dropout = 0.0
  num_classes = model.get_layer("logits").units
  return input_size, dropout, num_classes


def prune_kept(model, kept, dropout=None):
  """Returns a thinner TrafficSignCNN holding only the `kept` filters of `model`.

  Its dropout rate is `dropout`, or `model`'s when None.
  """
  kept = check_kept(model, kept)
  input_size, model_dropout, num_classes = _model_settings(model)
  dropout = model_dropout if dropout is None else dropout
  pruned = traffic_sign_cnn.build(
      channels=tuple(len(kept[name]) for name in CONV_LAYERS), input_size=input_size,
      dropout=dropout, num_classes=num_classes)
  previous = None
  for conv, bn in zip(CONV_LAYERS, BN_LAYERS):
    out_idx = kept[conv]
    kernel = model.get_layer(conv).get_weights()[0]
    if previous is not None:
      kernel = kernel[:, :, previous, :]
    pruned.get_layer(conv).set_weights([kernel[..., out_idx]])
    pruned.get_layer(bn).set_weights([w[out_idx] for w in model.get_layer(bn).get_weights()])
    previous = out_idx
  kernel, bias = model.get_layer("logits").get_weights()
  pruned.get_layer("logits").set_weights([kernel[previous, :], bias])
  return pruned


def prune_channels(model, percentages, criterion="l1"):
  """Prunes `percentages` of each conv layer's filters; returns the thinner model.

  The new model is uncompiled; fine-tune it to recover accuracy.
  """
  return prune_kept(model, select_channels(model, percentages, criterion))


def zero_pruned_channels(model, kept):
  """Returns a copy of `model` whose non-kept channels output exactly zero.

  The removed filters are set to zero and their BN gamma and beta to zero, so
  after ReLU those channels are 0 in both inference and training mode. The
  copy has the original architecture and computes what `prune_kept` computes.
  """
  kept = check_kept(model, kept)
  copy = keras.models.clone_model(model)
  copy.set_weights(model.get_weights())
  for conv, bn in zip(CONV_LAYERS, BN_LAYERS):
    n = model.get_layer(conv).filters
    removed = np.setdiff1d(np.arange(n), kept[conv])
    (kernel,) = copy.get_layer(conv).get_weights()
    kernel[..., removed] = 0.0
    copy.get_layer(conv).set_weights([kernel])
    gamma, beta, mean, variance = copy.get_layer(bn).get_weights()
    gamma[removed] = 0.0
    beta[removed] = 0.0
    copy.get_layer(bn).set_weights([gamma, beta, mean, variance])
  return copy


def prune_summary(model, kept):
  """Returns a JSON-ready description of a pruning: channels before/after and kept indices."""
  kept = check_kept(model, kept)
  layers = {}
  for name in CONV_LAYERS:
    n = model.get_layer(name).filters
    layers[name] = {
        "channels_before": n,
        "channels_after": len(kept[name]),
        "pruned_percent": round(100.0 * (n - len(kept[name])) / n, 2),
        "kept_indices": kept[name],
    }
  return layers


def describe_pruning(model, pruned, kept, percentages, criterion):
  """JSON-ready record of a pruning: settings, kept channels, params and MACs before/after."""
  return {
      "criterion": criterion,
      "percentages": parse_percentages(percentages),
      "channels_before": list(traffic_sign_cnn.channels_of(model)),
      "channels_after": list(traffic_sign_cnn.channels_of(pruned)),
      "kept_channels": check_kept(model, kept),
      "layers": prune_summary(model, kept),
      "params_before": complexity.count_params(model)["trainable"],
      "params_after": complexity.count_params(pruned)["trainable"],
      "macs_before": complexity.count_macs(model),
      "macs_after": complexity.count_macs(pruned),
  }



def prune_and_fine_tune(model, percentages, train_ds, val_ds, epochs, learning_rate,
                        steps_per_epoch, criterion="l1", dropout=None, stages=1, swa_epochs=0,
                        swa_learning_rate=swa.DEFAULT_LEARNING_RATE, before_ds=None,
                        log_dir=None, verbose=2, **fine_tune_kwargs):
  """The prune step: keeps each layer's strongest channels (`select_channels`), builds the
  thinner model (`prune_kept`, with `dropout`), fine-tunes it for `epochs` (none at 0) and
  weight-averages it over `swa_epochs` more.

  With `stages` > 1 the channels go gradually, as gradual pruning removes weights (Zhu &
  Gupta 2017): each stage removes an equal share of them (`stage_counts`), chosen by
  `criterion` on the model the previous stage fine-tuned, then fine-tunes for
  epochs / stages epochs (`epochs` must divide evenly).

  `learning_rate` is a rate or a schedule (it restarts with each stage); `fine_tune_kwargs`
  (label_smoothing, teacher, distill_*) go to every fine-tuning epoch. With `log_dir`,
  TensorBoard logs go to its `fit` (`fit1`, `fit2`... by stage) and `swa` subdirectories.
  Returns (pruned model, record): `describe_pruning`'s record (kept channels as indices of
  `model`'s) plus "stages", "val_accuracy" (after the last epoch, or of the average; None
  without `val_ds` or epochs), "swa" (`swa.average_weights`' record) when averaged, and
  given `before_ds` (batches), "accuracy_before_fine_tune" on it (after the first stage's
  cut). The pruned model's `history` is the fine-tune's, all stages in order (None at 0
  epochs).
  """
  if stages < 1 or epochs % stages:
    raise errors.ConfigError(f"{epochs} fine-tuning epochs do not split into {stages} equal "
                             "pruning stages")
  final_counts = kept_counts(model, percentages)
  channels = {name: model.get_layer(name).filters for name in CONV_LAYERS}
  kept = {name: list(range(count)) for name, count in channels.items()}
  pruned, histories, record_extra = model, [], {"stages": stages}

  def logs(phase):
    return compile_lib.training_logs(os.path.join(log_dir, phase)) if log_dir else ()

  for stage, counts in enumerate(stage_counts(channels, final_counts, stages), 1):
    stage_kept = _strongest(pruned, counts, criterion)
    pruned = prune_kept(pruned, stage_kept, dropout=dropout)
    kept = {name: [kept[name][i] for i in stage_kept[name]] for name in CONV_LAYERS}
    if stage == 1 and before_ds is not None:
      compile_lib.compile_model(pruned)
      record_extra["accuracy_before_fine_tune"] = float(pruned.evaluate(before_ds, verbose=0)[1])
    if epochs:
      histories.append(compile_lib.fine_tune(
          pruned, train_ds, val_ds, epochs // stages, learning_rate=learning_rate,
          steps_per_epoch=steps_per_epoch,
          callbacks=logs("fit" if stages == 1 else f"fit{stage}"), verbose=verbose,
          **fine_tune_kwargs))
  record = describe_pruning(model, pruned, kept, percentages, criterion)
  record.update(record_extra)
  record["val_accuracy"] = None
  pruned.history = None
  if not epochs:
    return pruned, record
  history = _joined(histories)
  record["val_accuracy"] = compile_lib.last_val_accuracy(history)
  if swa_epochs:
    record["swa"] = swa.average_weights(pruned, train_ds, val_ds, swa_epochs, steps_per_epoch,
                                        swa_learning_rate, verbose=verbose, callbacks=logs("swa"),
                                        **fine_tune_kwargs)
    record["val_accuracy"] = record["swa"]["average_val_accuracy"]
  pruned.history = history
  return pruned, record


def _joined(histories):
  """The last Keras History, holding every history's per-epoch logs in order."""
  last = histories[-1]
  last.history = {key: [value for h in histories for value in h.history[key]]
                  for key in last.history}
  last.epoch = list(range(sum(len(h.epoch) for h in histories)))
  return last

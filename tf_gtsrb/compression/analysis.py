"""Per-layer prunability analysis of a trained TrafficSignCNN.

For each conv layer (conv1..conv4) `analyze_model` measures:
  * BN gamma: |gamma| statistics, histogram, share of small gammas;
  * filter L1 norms: statistics, histogram, share of low-norm filters;
  * filter redundancy: pairwise cosine similarity of the flattened filters;
  * activation utility on sample images: per-channel mean post-ReLU activation,
    dead channels (never positive) and low-activation ones;
  * parameter counts.

`recommend_prune_percentages` turns these into one prune percentage per
layer (see its docstring for the rule), and `write_analysis_report` writes
analysis.json, analysis.md and per-layer histogram PNGs.
"""

import io
import math
import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb.compression import channel_pruning
from tf_gtsrb.keras import keras

CONV_LAYERS = channel_pruning.CONV_LAYERS

# A channel is "small-gamma" when |gamma| < GAMMA_RELATIVE * max|gamma| of its
# layer or |gamma| < GAMMA_ABSOLUTE.
GAMMA_RELATIVE = 0.1
GAMMA_ABSOLUTE = 1e-2
# A filter is "low-L1" when its L1 norm < L1_FRACTION * the layer's median.
L1_FRACTION = 0.5
# Two filters are near-duplicates when their cosine similarity > COSINE_DUPLICATE.
COSINE_DUPLICATE = 0.9
# A channel has "low activation" when its mean post-ReLU activation on the
# sample is < ACTIVATION_FRACTION * the layer's median channel mean (the
# mean-activation ranking criterion); "dead" when it is never positive. Mean
# activations of a trained layer spread roughly log-normally; for log-spreads
# (sigma) of 0.4 to 1.0 this factor flags about 30 to 40 % of the channels,
# while a layer whose channels are all equally active gets none flagged.
ACTIVATION_FRACTION = 0.8
# Recommendations never exceed this share of a layer and always keep a channel.
MAX_PRUNE_PERCENT = 50.0
HISTOGRAM_BINS = 20
DEFAULT_MAX_PAIRS = 200_000


def analyze_model(model, images_float, max_pairs=DEFAULT_MAX_PAIRS, batch_size=64, seed=0):
  """Analyses every conv layer of a TrafficSignCNN; returns a JSON-ready dict.

  Args:
    model: a TrafficSignCNN `keras.Model` (float, not wrapped by tfmot).
    images_float: float array [N, S, S, 3] of pixel / 255 sample images (N >= 1).
    max_pairs: most filter pairs compared per layer for redundancy; larger
      layers are compared on a seeded random subset of their filters.
    batch_size: images per forward pass when collecting activations.
    seed: seed of that subset.

  Returns:
    {"num_images": N, "thresholds": {...}, "layers": {conv name: {...}}} where
    each layer has 'channels', 'params', 'gamma', 'l1', 'redundancy',
    'activation' sections and a per-channel 'flags' section (lists of indices).
  """
  channel_pruning.check_traffic_sign_cnn(model)
  images = _check_images(model, images_float)
  if not isinstance(max_pairs, int) or max_pairs < 1:
    raise errors.ConfigError(f"max_pairs must be a positive integer, got {max_pairs!r}")
  if not isinstance(batch_size, int) or batch_size < 1:
    raise errors.ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
  activations = _channel_activation_stats(model, images, batch_size)
  rng = np.random.default_rng(seed)
  layers = {}
  for i, name in enumerate(CONV_LAYERS, start=1):
    (kernel,) = model.get_layer(name).get_weights()
    bn_weights = model.get_layer(f"bn{i}").get_weights()
    gamma = np.abs(bn_weights[0]).astype(np.float64)
    filters = kernel.reshape(-1, kernel.shape[-1]).T.astype(np.float64)  # [out, k*k*in]
    l1 = np.abs(filters).sum(axis=1)
    mean_act, max_act = activations[name]
    layers[name] = _layer_analysis(kernel, bn_weights, gamma, filters, l1, mean_act, max_act,
                                   max_pairs, rng)
  return {
      "num_images": int(images.shape[0]),
      "thresholds": {
          "gamma_relative": GAMMA_RELATIVE,
          "gamma_absolute": GAMMA_ABSOLUTE,
          "l1_fraction_of_median": L1_FRACTION,
          "cosine_duplicate": COSINE_DUPLICATE,
          "activation_fraction_of_median": ACTIVATION_FRACTION,
          "max_prune_percent": MAX_PRUNE_PERCENT,
      },
      "layers": layers,
  }


def _check_images(model, images_float):
  images = np.asarray(images_float)
  expected = tuple(model.input_shape[1:])
  if images.ndim != 4 or tuple(images.shape[1:]) != expected:
    raise errors.ConfigError(
        f"analysis images: expected shape [N, {', '.join(map(str, expected))}], "
        f"got {list(images.shape)}")
  if images.shape[0] < 1:
    raise errors.ConfigError("analysis images: need at least one image")
  if not np.issubdtype(images.dtype, np.floating):
    raise errors.ConfigError(
        f"analysis images: expected float pixels / 255, got dtype {images.dtype}")
  return images.astype(np.float32, copy=False)


def _channel_activation_stats(model, images, batch_size):
  """Returns {conv name: (mean, max) of post-ReLU activation per channel} in inference mode."""
  outputs = [model.get_layer(f"relu{i}").output for i in range(1, len(CONV_LAYERS) + 1)]
  probe = keras.Model(model.inputs, outputs)
  sums = [0.0] * len(CONV_LAYERS)
  maxima = [None] * len(CONV_LAYERS)
  count = [0] * len(CONV_LAYERS)
  for start in range(0, images.shape[0], batch_size):
    batch = images[start:start + batch_size]
    results = probe(batch, training=False)
    for j, act in enumerate(results):
      act = act.numpy().astype(np.float64)
      flat = act.reshape(-1, act.shape[-1])
      sums[j] = sums[j] + flat.sum(axis=0)
      count[j] += flat.shape[0]
      batch_max = flat.max(axis=0)
      maxima[j] = batch_max if maxima[j] is None else np.maximum(maxima[j], batch_max)
  return {name: (sums[j] / count[j], maxima[j]) for j, name in enumerate(CONV_LAYERS)}


def _stats(values):
  return {
      "min": float(np.min(values)),
      "max": float(np.max(values)),
      "mean": float(np.mean(values)),
      "median": float(np.median(values)),
      "std": float(np.std(values)),
  }


def _histogram(values):
  counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
  return {"counts": counts.tolist(), "edges": edges.tolist()}


def _cosine_matrix(filters):
  norms = np.linalg.norm(filters, axis=1)
  safe = np.where(norms > 0, norms, 1.0)
  unit = filters / safe[:, None]
  cos = unit @ unit.T
  zero = norms == 0
  cos[zero, :] = 0.0
  cos[:, zero] = 0.0
  np.fill_diagonal(cos, 0.0)
  return cos


def _redundancy(filters, l1, max_pairs, rng):
  """Near-duplicate analysis on (a subset of) the filters of one layer."""
  n = filters.shape[0]
  if n * (n - 1) // 2 > max_pairs:
    m = max(2, int((1 + math.sqrt(1 + 8 * max_pairs)) // 2))
    subset = np.sort(rng.choice(n, size=min(m, n), replace=False))
  else:
    subset = np.arange(n)
  cos = _cosine_matrix(filters[subset])
  m = len(subset)
  upper = cos[np.triu_indices(m, k=1)]
  has_duplicate = (cos > COSINE_DUPLICATE).any(axis=1)
  # Greedily keep the stronger (larger L1) filter of each near-duplicate group;
  # the weaker ones are redundant: the kept one can take over their role.
  redundant = []
  kept_local = []
  for local in np.argsort(-l1[subset], kind="stable"):
    if any(cos[local, k] > COSINE_DUPLICATE for k in kept_local):
      redundant.append(int(subset[local]))
    else:
      kept_local.append(local)
  return {
      "filters_compared": int(m),
      "pairs_compared": int(len(upper)),
      "mean_cosine": float(upper.mean()) if len(upper) else 0.0,
      "max_cosine": float(upper.max()) if len(upper) else 0.0,
      "near_duplicate_share": float(has_duplicate.mean()) if m else 0.0,
      "redundant_share": len(redundant) / m if m else 0.0,
      "cosine_histogram": _histogram(upper) if len(upper) else {"counts": [], "edges": []},
  }, sorted(redundant)


def _layer_analysis(kernel, bn_weights, gamma, filters, l1, mean_act, max_act, max_pairs, rng):
  n = len(gamma)
  small_gamma = (gamma < GAMMA_RELATIVE * gamma.max()) | (gamma < GAMMA_ABSOLUTE)
  low_l1 = l1 < L1_FRACTION * np.median(l1)
  dead = max_act <= 0.0
  low_act = (mean_act < ACTIVATION_FRACTION * np.median(mean_act)) | dead
  redundancy, redundant = _redundancy(filters, l1, max_pairs, rng)
  conv_params = int(kernel.size)
  bn_trainable = 2 * n
  return {
      "channels": n,
      "params": {
          "conv": conv_params,
          "bn_trainable": bn_trainable,
          "bn_non_trainable": int(sum(w.size for w in bn_weights[2:])),
          "trainable": conv_params + bn_trainable,
      },
      "gamma": {
          **_stats(gamma),
          "small_share": float(small_gamma.mean()),
          "small_relative_share": float((gamma < GAMMA_RELATIVE * gamma.max()).mean()),
          "small_absolute_share": float((gamma < GAMMA_ABSOLUTE).mean()),
          "histogram": _histogram(gamma),
      },
      "l1": {
          **_stats(l1),
          "low_share": float(low_l1.mean()),
          "histogram": _histogram(l1),
      },
      "redundancy": redundancy,
      "activation": {
          **_stats(mean_act),
          "dead_share": float(dead.mean()),
          "low_share": float(low_act.mean()),
          "channel_means": mean_act.tolist(),
      },
      "flags": {
          "small_gamma": np.flatnonzero(small_gamma).tolist(),
          "low_l1": np.flatnonzero(low_l1).tolist(),
          "redundant": redundant,
          "dead": np.flatnonzero(dead).tolist(),
          "low_activation": np.flatnonzero(low_act).tolist(),
      },
  }


def prunable_channels(layer):
  """Indices flagged by any signal (dead, low activation, small gamma, low L1, redundant)."""
  flags = layer["flags"]
  union = set()
  for key in ("dead", "low_activation", "small_gamma", "low_l1", "redundant"):
    union.update(flags[key])
  return sorted(union)


def recommend_prune_percentages(analysis, max_percent=MAX_PRUNE_PERCENT):
  """Returns {conv name: recommended prune percentage}.

  Rule: a channel is prunable when it is dead or has a low mean activation on the
  sample, has a small BN gamma, a low filter L1 norm, or is a near-duplicate
  of a stronger filter. The recommendation is the prunable share of the
  layer, rounded UP to 0.1 % (so pruning it removes at least that many
  channels), capped at `max_percent` and at the share that leaves one channel.
  """
  if not 0.0 <= max_percent < 100.0:
    raise errors.ConfigError(f"max_percent must be in [0, 100), got {max_percent}")
  result = {}
  for name, layer in analysis["layers"].items():
    n = layer["channels"]
    share = 100.0 * len(prunable_channels(layer)) / n
    percent = math.ceil(round(share * 10.0, 6)) / 10.0
    percent = min(percent, max_percent)
    while percent > 0 and channel_pruning.num_kept(n, percent) < 1:
      percent = round(percent - 0.1, 1)
    result[name] = max(percent, 0.0)
  return result


def summary_rows(analysis, recommendations):
  """Rows (dicts) of the per-layer summary table."""
  rows = []
  for name, layer in analysis["layers"].items():
    n = layer["channels"]
    percent = recommendations.get(name, 0.0)
    rows.append({
        "layer": name,
        "channels": n,
        "small_gamma_percent": 100.0 * layer["gamma"]["small_share"],
        "low_l1_percent": 100.0 * layer["l1"]["low_share"],
        "redundant_percent": 100.0 * layer["redundancy"]["redundant_share"],
        "dead_percent": 100.0 * layer["activation"]["dead_share"],
        "low_activation_percent": 100.0 * layer["activation"]["low_share"],
        "recommended_percent": percent,
        "channels_kept": channel_pruning.num_kept(n, percent),
    })
  return rows


def markdown_table(analysis, recommendations):
  """The summary table as GitHub Markdown."""
  header = ("| Layer | Channels | Small gamma (%) | Low L1 (%) | Redundant (%) | Dead (%) | "
            "Low activation (%) | Recommended prune (%) | Channels kept |")
  lines = [header, "|" + "---|" * 9]
  for r in summary_rows(analysis, recommendations):
    lines.append(
        f"| {r['layer']} | {r['channels']} | {r['small_gamma_percent']:.1f} | "
        f"{r['low_l1_percent']:.1f} | {r['redundant_percent']:.1f} | {r['dead_percent']:.1f} | "
        f"{r['low_activation_percent']:.1f} | {r['recommended_percent']:.1f} | "
        f"{r['channels_kept']} |")
  return "\n".join(lines) + "\n"


def _markdown(analysis, recommendations):
  t = analysis["thresholds"]
  text = [
      "# Channel pruning analysis",
      "",
      f"Activation statistics from {analysis['num_images']} sample images.",
      "",
      markdown_table(analysis, recommendations),
      "A channel counts as prunable when any of these holds:",
      "",
      f"- small gamma: |gamma| < {t['gamma_relative']} x max |gamma| of the layer, "
      f"or < {t['gamma_absolute']};",
      f"- low L1: filter L1 norm < {t['l1_fraction_of_median']} x the layer median;",
      f"- redundant: cosine similarity > {t['cosine_duplicate']} with a stronger filter;",
      "- dead: post-ReLU activation never positive on the sample;",
      f"- low activation: mean post-ReLU activation < {t['activation_fraction_of_median']} "
      "x the layer median.",
      "",
      f"Recommended prune % = prunable share, rounded up to 0.1 %, capped at "
      f"{t['max_prune_percent']} % and at one kept channel.",
      "",
      "Histograms: " + ", ".join(f"`{name}_histograms.png`" for name in analysis["layers"]),
      "",
  ]
  return "\n".join(text)


def _histogram_png(name, layer):
  """PNG bytes: |gamma| and L1 histograms and sorted channel mean activations."""
  figure = Figure(figsize=(12, 3.2))
  FigureCanvasAgg(figure)
  axes = figure.subplots(1, 3)
  for ax, key, title in ((axes[0], "gamma", "|BN gamma|"), (axes[1], "l1", "filter L1 norm")):
    hist = layer[key]["histogram"]
    edges = np.asarray(hist["edges"])
    ax.bar(edges[:-1], hist["counts"], width=np.diff(edges), align="edge", edgecolor="black")
    ax.set_title(f"{name}: {title}")
    ax.set_ylabel("channels")
  means = np.asarray(layer["activation"]["channel_means"])
  axes[2].bar(np.arange(len(means)), np.sort(means)[::-1], width=1.0)
  axes[2].set_title(f"{name}: mean activation (sorted)")
  axes[2].set_xlabel("channel rank")
  axes[2].set_ylabel("mean post-ReLU activation")
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=90)
  return buffer.getvalue()


def write_analysis_report(analysis, recommendations, output_dir):
  """Writes analysis.json, analysis.md and {layer}_histograms.png into `output_dir`, as one
  set: a failure leaves the previous set intact (`io_utils.atomic_directory`).

  Returns the list of paths written.
  """
  names = ["analysis.json", "analysis.md"] + [f"{name}_histograms.png"
                                              for name in analysis["layers"]]
  with io_utils.atomic_directory(output_dir, carry_over=True) as staging:
    io_utils.write_json(os.path.join(staging, "analysis.json"), {
        "analysis": analysis,
        "recommended_percentages": recommendations,
        "summary": summary_rows(analysis, recommendations),
    })
    io_utils.write_text(os.path.join(staging, "analysis.md"),
                        _markdown(analysis, recommendations))
    for name, layer in analysis["layers"].items():
      with io_utils.atomic_write(os.path.join(staging, f"{name}_histograms.png"), "wb") as f:
        f.write(_histogram_png(name, layer))
  return [os.path.join(output_dir, name) for name in names]


def load_recommendations(path):
  """Reads the recommended per-layer percentages from an analysis.json file."""
  data = io_utils.read_json(path)
  try:
    recommendations = data["recommended_percentages"]
  except (KeyError, TypeError):
    raise errors.ConfigError(
        f"{path}: no 'recommended_percentages' (not written by the analysis tool?)") from None
  if not isinstance(recommendations, dict):
    raise errors.ConfigError(f"{path}: 'recommended_percentages' must be an object")
  try:
    return channel_pruning.parse_percentages(recommendations)
  except errors.ConfigError as e:
    raise errors.ConfigError(f"{path}: {e}") from e

"""Accuracy under the road-camera corruptions of `corruptions`: tables, JSON and a plot.

  from tf_gtsrb.models import runners
  from tf_gtsrb.evaluation import robustness
  runner = runners.load_runner("models/traffic_sign_cnn_pruned_int8.tflite")
  result = robustness.evaluate(runner.predict, images, labels)   # uint8 test images
  robustness.write_results(result, "runs/robustness", name="int8")

The mean corruption accuracy is the mean over every kind and severity scored;
each kind's mean is over its severities.
"""

import io
import os

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb.evaluation import corruptions

JSON_NAME = "corruptions.json"
MARKDOWN_NAME = "corruptions.md"
PNG_NAME = "corruptions.png"


def select_indices(num_images, subset=None, seed=0):
  """Sorted indices of a seeded sample of `subset` of `num_images` images (all when None
  or >= num_images); subset < 1 raises ConfigError."""
  if subset is None or subset >= num_images:
    return np.arange(num_images)
  if isinstance(subset, bool) or not isinstance(subset, (int, np.integer)) or subset < 1:
    raise errors.ConfigError(f"corruption subset must be a positive integer, got {subset!r}")
  rng = np.random.default_rng([int(seed), num_images, 0x5EB5E7])
  return np.sort(rng.choice(num_images, int(subset), replace=False))


def resize_images(images, size):
  """uint8 images [N, H, W, 3] resized to size x size (bilinear, Pillow); unchanged if so."""
  if images.shape[1:3] == (size, size):
    return images
  return np.stack([np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
                   for image in images])


def evaluate_models(predict_fns, images, labels, kinds=None, severities=None, subset=None,
                    seed=0, input_size=None, log=None):
  """Scores each model of `predict_fns` ({name: fn}) on clean and corrupted images.

  `images` are uint8 [N, H, W, 3] at their stored size; each fn takes uint8
  images (resized to `input_size` after corrupting, when given) and returns
  class scores [n, num_classes]. Every (kind, severity) is corrupted once and
  shared by all models. Returns {name: result} (see `evaluate`).
  """
  kinds = corruptions.KINDS if kinds is None else tuple(kinds)
  severities = corruptions.SEVERITIES if severities is None else tuple(severities)
  for kind in kinds:
    corruptions.check_kind(kind)
  for severity in severities:
    corruptions.check_severity(severity)
  images, labels = np.asarray(images), np.asarray(labels).reshape(-1)
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or not len(images):
    raise errors.ConfigError(f"expected uint8 images [N, H, W, 3], got {images.dtype} "
                             f"{images.shape}")
  if len(labels) != len(images):
    raise errors.ConfigError(f"{len(labels)} labels for {len(images)} images")
  indices = select_indices(len(images), subset, seed)
  images, labels = images[indices], labels[indices]

  def accuracies(batch):
    if input_size:
      batch = resize_images(batch, input_size)
    return {name: float((np.asarray(fn(batch)).argmax(axis=-1) == labels).mean())
            for name, fn in predict_fns.items()}

  clean = accuracies(images)
  scores = {name: {} for name in predict_fns}
  for kind in kinds:
    for severity in severities:
      batch = corruptions.corrupt_batch(images, kind, severity, indices=indices, seed=seed)
      for name, accuracy in accuracies(batch).items():
        scores[name].setdefault(kind, {})[str(severity)] = accuracy
    if log:
      log(f"{kind}: " + ", ".join(
          f"{name} {100 * np.mean(list(s[kind].values())):.2f}%" for name, s in scores.items()))
  settings = {"num_images": int(len(images)), "subset": None if subset is None else int(subset),
              "seed": int(seed), "severities": list(severities),
              "image_size": list(images.shape[1:3])}
  return {name: summarize(scores[name], clean[name], settings) for name in predict_fns}


def evaluate(predict_fn, images, labels, kinds=None, severities=None, subset=None, seed=0,
             input_size=None, log=None):
  """Scores one model; returns {'clean_accuracy', 'accuracy': {kind: {severity: acc}},
  'kind_mean': {kind: mean}, 'mean_corruption_accuracy', 'worst_kind', settings}."""
  return evaluate_models({"model": predict_fn}, images, labels, kinds, severities, subset,
                         seed, input_size, log)["model"]


def summarize(scores, clean_accuracy, settings=None):
  """The result dict of `evaluate` from {kind: {severity: accuracy}} and the clean accuracy."""
  kind_mean = {kind: float(np.mean(list(by_severity.values())))
               for kind, by_severity in scores.items()}
  every = [a for by_severity in scores.values() for a in by_severity.values()]
  return {
      "clean_accuracy": float(clean_accuracy),
      "accuracy": scores,
      "kind_mean": kind_mean,
      "mean_corruption_accuracy": float(np.mean(every)),
      "worst_kind": min(kind_mean, key=kind_mean.get),
      **(settings or {}),
  }


def markdown_table(result):
  """Accuracy (%) per kind (rows) and severity (columns), with each kind's mean."""
  severities = sorted({int(s) for by in result["accuracy"].values() for s in by})
  lines = ["| Corruption | " + " | ".join(f"s{s}" for s in severities) + " | Mean |",
           "|---|" + "---:|" * (len(severities) + 1)]
  for kind, by_severity in result["accuracy"].items():
    cells = [_percent(by_severity.get(str(s))) for s in severities]
    lines.append(f"| {kind} | " + " | ".join(cells) + f" | {_percent(result['kind_mean'][kind])} |")
  lines.append(f"| **clean** | {_percent(result['clean_accuracy'])} |"
               + " |" * len(severities))
  lines.append(f"| **mean corruption accuracy** | "
               + " |" * len(severities) + f" {_percent(result['mean_corruption_accuracy'])} |")
  return "\n".join(lines) + "\n"


def comparison_table(results):
  """One row per model ({name: result}): clean, mean corruption accuracy, worst kind, and
  each kind's mean, in %."""
  kinds = list(next(iter(results.values()))["kind_mean"])
  lines = ["| Model | Clean | Mean corr. | Worst kind | " + " | ".join(kinds) + " |",
           "|---|---:|---:|---|" + "---:|" * len(kinds)]
  for name, r in results.items():
    worst = r["worst_kind"]
    lines.append(
        f"| {name} | {_percent(r['clean_accuracy'])} | {_percent(r['mean_corruption_accuracy'])} "
        f"| {worst} ({_percent(r['kind_mean'][worst])}) | "
        + " | ".join(_percent(r["kind_mean"].get(k)) for k in kinds) + " |")
  return "\n".join(lines) + "\n"


def write_results(result, output_dir, name="model"):
  """Writes corruptions.json, corruptions.md and corruptions.png (accuracy vs severity per
  kind) to `output_dir`, atomically; returns {'json', 'markdown', 'png'} paths."""
  paths = {"json": os.path.join(output_dir, JSON_NAME),
           "markdown": os.path.join(output_dir, MARKDOWN_NAME),
           "png": os.path.join(output_dir, PNG_NAME)}
  os.makedirs(output_dir, exist_ok=True)
  save_severity_plot(result, paths["png"], title=f"{name}: accuracy under corruption")
  io_utils.write_text(paths["markdown"], "\n".join([
      f"# {name}: accuracy under corruption", "",
      f"{result['num_images']} images (seed {result['seed']}), "
      f"stored size {result['image_size'][0]}x{result['image_size'][1]}; "
      f"worst kind: {result['worst_kind']}.", "",
      markdown_table(result)]))
  io_utils.write_json(paths["json"], {"name": name, **result})
  return paths


def save_severity_plot(result, path, title=""):
  """PNG of accuracy (%) against severity, one line per kind, the clean accuracy dashed."""
  figure = Figure(figsize=(8, 5), dpi=100)
  FigureCanvasAgg(figure)
  axes = figure.add_subplot(1, 1, 1)
  cmap = colormaps["tab20"]
  for i, (kind, by_severity) in enumerate(result["accuracy"].items()):
    severities = sorted(int(s) for s in by_severity)
    axes.plot(severities, [100 * by_severity[str(s)] for s in severities], marker="o",
              color=cmap(i % 20), label=kind)
  axes.axhline(100 * result["clean_accuracy"], color="black", linestyle="--", label="clean")
  axes.set_xlabel("severity")
  axes.set_ylabel("accuracy (%)")
  axes.set_xticks(list(corruptions.SEVERITIES))
  axes.set_title(title)
  axes.grid(alpha=0.3)
  axes.legend(fontsize=7, ncol=2, loc="lower left")
  figure.tight_layout()
  _save_figure(figure, path)


def save_contact_sheet(images, path, kinds=None, severities=None, seed=0, upscale=4,
                       indices=None):
  """PNG of `images` (uint8 [N, H, W, 3]) clean and under every kind at every severity.

  One row per kind; for each image a group of columns: clean, then the
  severities. Tiles are upscaled `upscale` times (nearest neighbour) so single
  pixels stay visible.
  """
  kinds = corruptions.KINDS if kinds is None else tuple(kinds)
  severities = corruptions.SEVERITIES if severities is None else tuple(severities)
  indices = list(range(len(images))) if indices is None else list(indices)
  group = len(severities) + 1
  columns = group * len(images)
  figure = Figure(figsize=(0.75 * columns + 0.6, 0.8 * len(kinds) + 0.3), dpi=100)
  FigureCanvasAgg(figure)
  for r, kind in enumerate(kinds):
    for i, (image, index) in enumerate(zip(images, indices)):
      tiles = [image] + [corruptions.corrupt(image, kind, s, index=index, seed=seed)
                         for s in severities]
      for c, tile in enumerate(tiles):
        axes = figure.add_subplot(len(kinds), columns, r * columns + i * group + c + 1)
        axes.imshow(np.kron(tile, np.ones((upscale, upscale, 1), np.uint8)),
                    interpolation="nearest")
        axes.set_xticks([])
        axes.set_yticks([])
        if i == 0 and c == 0:
          axes.set_ylabel(kind, fontsize=7)
        if r == 0:
          axes.set_title("clean" if c == 0 else f"s{severities[c - 1]}", fontsize=8)
  figure.subplots_adjust(left=0.03, right=0.995, top=0.97, bottom=0.005, wspace=0.05,
                         hspace=0.08)
  _save_figure(figure, path)


def _save_figure(figure, path):
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png")
  with io_utils.atomic_write(path) as f:
    f.write(buffer.getvalue())


def _percent(value):
  return "-" if value is None else f"{100 * value:.2f}"


def evaluate_model_files(specs, data_dir, output_dir, split="test", kinds=None, severities=None,
                         subset=None, seed=0, log=None):
  """The corruption suite for model files ({name: .keras or .tflite path}) on a prepared split.

  Writes each model's corruptions.json/.md/.png under `output_dir`/corruptions/<name>
  and all of them as `output_dir`/robustness.json (what the HTML report reads), and
  returns {name: result}. Images are corrupted at their stored size, then resized
  to each model's input by its runner.
  """
  from tf_gtsrb.models import runners  # pylint: disable=g-import-not-at-top
  from tf_gtsrb.data import input_pipeline  # pylint: disable=g-import-not-at-top
  images, labels = input_pipeline.load_arrays(data_dir, split)
  models = {name: runners.load_runner(path, name=name) for name, path in specs.items()}
  results = evaluate_models({name: runner.predict for name, runner in models.items()},
                            images, labels, kinds, severities, subset, seed, log=log)
  for name, result in results.items():
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    write_results(result, os.path.join(output_dir, "corruptions", safe), name=name)
  io_utils.write_json(os.path.join(output_dir, "robustness.json"), results)
  return results

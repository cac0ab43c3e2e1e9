"""Channel-pruning sweep: prune a baseline at fixed percentages, fine-tune, score.

For each percentage the baseline TrafficSignCNN is pruned uniformly (every
conv layer loses that share of its filters), fine-tuned, scored on a test
dataset and saved. The results are written as sweep.json, sweep.md (the
published summary table, baseline first) and sweep.png (test accuracy
against MACs).
"""

import io
import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb.compression import channel_pruning
from tf_gtsrb.evaluation import complexity
from tf_gtsrb.evaluation import evaluate
from tf_gtsrb.evaluation import metrics
from tf_gtsrb.evaluation import report
from tf_gtsrb.models import io as model_io
from tf_gtsrb.models import traffic_sign_cnn
from tf_gtsrb.training import compile as compile_lib

DEFAULT_PERCENTAGES = (10, 30, 50, 90)
JSON_NAME = "sweep.json"
MARKDOWN_NAME = "sweep.md"
PNG_NAME = "sweep.png"
MODELS_DIR = "models"
TABLE_HEADER = ("Prune %", "Channels", "Params", "Test accuracy (%)", "Size (KB)", "MACs (M)")


def check_sweep_args(model, percentages, criterion="l1", epochs=1, learning_rate=1e-4,
                     steps_per_epoch=None):
  """Raises ConfigError/ModelError for arguments `run_sweep` cannot use."""
  channel_pruning.check_traffic_sign_cnn(model)
  percentages = list(percentages)
  if not percentages:
    raise errors.ConfigError("sweep: give at least one prune percentage")
  for percent in percentages:
    channel_pruning.select_channels(model, percent, criterion)  # validates
  if len(set(float(p) for p in percentages)) != len(percentages):
    raise errors.ConfigError(f"sweep: repeated prune percentages in {percentages}")
  if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
    raise errors.ConfigError(f"sweep: epochs must be an integer >= 0, got {epochs!r}")
  if not learning_rate > 0:
    raise errors.ConfigError(f"sweep: learning_rate must be > 0, got {learning_rate!r}")
  if steps_per_epoch is not None and (
      isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, (int, np.integer))
      or steps_per_epoch < 1):
    raise errors.ConfigError(
        f"sweep: steps_per_epoch must be a positive integer or None, got {steps_per_epoch!r}")


def score(model, dataset):
  """Returns the classification report of `model` on (images, labels) batches."""
  probabilities, labels = evaluate.predict_dataset(model, dataset)
  return metrics.classification_report(
      labels, probabilities.argmax(axis=-1), int(model.output_shape[-1]))


def _percent_name(percent):
  return f"prune_{float(percent):g}"


def _row(name, percent, model, scores, model_path, scores_before=None):
  params = complexity.count_params(model)
  row = {
      "name": name,
      "prune_percent": float(percent),
      "channels": list(traffic_sign_cnn.channels_of(model)),
      "params": params["trainable"],
      "params_total": params["total"],
      "float32_bytes": 4 * params["trainable"],
      "size_bytes": complexity.model_file_size(model_path),
      "macs": complexity.count_macs(model),
      "test_accuracy": scores["accuracy"],
      "test_f1_macro": scores["f1_macro"],
      "model_path": model_path,
  }
  if scores_before is not None:
    row["test_accuracy_before_fine_tune"] = scores_before["accuracy"]
  return row


def run_sweep(model, train_ds, val_ds, test_ds, output_dir, percentages=DEFAULT_PERCENTAGES,
              criterion="l1", epochs=1, learning_rate=1e-4, steps_per_epoch=None, verbose=0,
              log=None):
  """Prunes `model` at each percentage, fine-tunes, scores; writes the sweep report.

  Args:
    model: the trained baseline TrafficSignCNN (left unchanged).
    train_ds, val_ds: (images, labels) batch datasets for fine-tuning (val_ds may be None).
    test_ds: (images, labels) batch dataset, scored once per model.
    output_dir: receives sweep.json, sweep.md, sweep.png and models/*.keras.
    percentages: uniform prune percentages, each in [0, 100).
    criterion: 'l1' or 'bn_gamma' (see `channel_pruning.select_channels`).
    epochs: fine-tuning epochs per pruned model (0 = no fine-tuning).
    learning_rate: fine-tuning learning rate.
    steps_per_epoch: optimizer steps per fine-tuning epoch; needed when
      `train_ds` is endless (None: one pass over a finite `train_ds`).
    verbose: Keras fit verbosity.
    log: callable taking a progress line, e.g. `print` (None: silent).

  Returns:
    {'rows': [baseline row, one row per percentage], 'paths': {...}}.
  """
  check_sweep_args(model, percentages, criterion, epochs, learning_rate, steps_per_epoch)
  log = log or (lambda _: None)
  # The models and the report commit as one set: a failure leaves the previous set intact.
  with io_utils.atomic_directory(output_dir, carry_over=True) as staging:
    models_dir = os.path.join(staging, MODELS_DIR)
    os.makedirs(models_dir, exist_ok=True)
    baseline_path = os.path.join(models_dir, "baseline.keras")
    model_io.save_model(model, baseline_path)
    rows = [_row("baseline", 0.0, model, score(model, test_ds), baseline_path)]
    log(f"baseline: test accuracy {100 * rows[0]['test_accuracy']:.2f}%")
    for percent in percentages:
      name = _percent_name(percent)
      pruned = channel_pruning.prune_channels(model, percent, criterion)
      before = score(pruned, test_ds)
      if epochs > 0:
        compile_lib.fine_tune(pruned, train_ds, val_ds, epochs, learning_rate=learning_rate,
                              steps_per_epoch=steps_per_epoch, verbose=verbose)
      path = os.path.join(models_dir, f"{name}.keras")
      model_io.save_model(pruned, path)
      rows.append(_row(name, percent, pruned, score(pruned, test_ds), path, before))
      log(f"{name}: channels {_channels(rows[-1])}, test accuracy "
          f"{100 * before['accuracy']:.2f}% -> {100 * rows[-1]['test_accuracy']:.2f}%")
    for row in rows:  # Where each model will be once the set is committed.
      row["model_path"] = os.path.join(output_dir, os.path.relpath(row["model_path"], staging))
    write_sweep_report(rows, staging, {
        "criterion": criterion, "epochs": int(epochs), "learning_rate": float(learning_rate),
        "steps_per_epoch": steps_per_epoch})
  paths = {"json": os.path.join(output_dir, JSON_NAME),
           "markdown": os.path.join(output_dir, MARKDOWN_NAME),
           "png": os.path.join(output_dir, PNG_NAME)}
  return {"rows": rows, "paths": paths}


def _channels(row):
  return "/".join(str(c) for c in row["channels"])


def markdown_table(rows):
  """The published summary table: one line per model, baseline first."""
  return report.markdown_table(TABLE_HEADER, [
      ("0 (baseline)" if r["name"] == "baseline" else f"{r['prune_percent']:g}",
       _channels(r), f"{r['params']:,}", f"{100 * r['test_accuracy']:.2f}",
       f"{r['size_bytes'] / 1024:.1f}", f"{r['macs'] / 1e6:.2f}")
      for r in rows])


def _plot_png(rows):
  figure = Figure(figsize=(6, 4.5))
  FigureCanvasAgg(figure)
  axes = figure.add_subplot(1, 1, 1)
  macs = [r["macs"] / 1e6 for r in rows]
  accuracy = [100 * r["test_accuracy"] for r in rows]
  axes.plot(macs, accuracy, "o-", color="tab:blue")
  for r, x, y in zip(rows, macs, accuracy):
    label = "baseline" if r["name"] == "baseline" else f"{r['prune_percent']:g}%"
    axes.annotate(label, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
  axes.set_xlabel("MACs per image (M)")
  axes.set_ylabel("Test accuracy (%)")
  axes.set_title("Channel pruning: accuracy vs. compute")
  axes.grid(True, alpha=0.3)
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=100)
  return buffer.getvalue()


def write_sweep_report(rows, output_dir, settings=None):
  """Writes sweep.json, sweep.md and sweep.png into `output_dir`; returns their paths."""
  os.makedirs(output_dir, exist_ok=True)
  paths = {
      "json": os.path.join(output_dir, JSON_NAME),
      "markdown": os.path.join(output_dir, MARKDOWN_NAME),
      "png": os.path.join(output_dir, PNG_NAME),
  }
  settings = dict(settings or {})
  with io_utils.atomic_write(paths["png"], "wb") as f:
    f.write(_plot_png(rows))
  details = ", ".join(f"{k}={v}" for k, v in sorted(settings.items()))
  io_utils.write_text(paths["markdown"], "\n".join([
      "# Channel pruning sweep",
      "",
      "Every conv layer pruned by the same percentage, then fine-tuned"
      + (f" ({details})." if details else "."),
      "Size is the .keras file; MACs are per image.",
      "",
      markdown_table(rows),
      f"![accuracy vs MACs]({PNG_NAME})",
      "",
  ]))
  io_utils.write_json(paths["json"], {"settings": settings, "rows": rows})
  return paths

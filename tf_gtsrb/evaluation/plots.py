"""Confusion-matrix figure (PNG), rendered off-screen and written atomically."""

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tf_gtsrb import errors
from tf_gtsrb import io_utils


def normalize_rows(cm):
  """Returns `cm` with each row divided by its sum (rows summing to 0 stay 0)."""
  cm = np.asarray(cm, dtype=np.float64)
  sums = cm.sum(axis=1, keepdims=True)
  return np.divide(cm, sums, out=np.zeros_like(cm), where=sums != 0)


def save_confusion_matrix_png(cm, path, class_names=None, title=""):
  """Writes a row-normalised confusion matrix (rows = true class) as a PNG.

  Ticks are class ids; with `class_names` the y-axis reads 'id: name'. Sized to
  stay legible for the 43 GTSRB classes.
  """
  png = confusion_matrix_png(cm, class_names, title, what=path)
  with io_utils.atomic_write(path, "wb") as f:
    f.write(png)
  return path


def confusion_matrix_png(cm, class_names=None, title="", dpi=100, what="confusion matrix"):
  """The PNG bytes `save_confusion_matrix_png` writes; errors name `what`."""
  cm = np.asarray(cm)
  if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
    raise errors.ConfigError(f"{what}: confusion matrix must be square, got shape {cm.shape}")
  n = cm.shape[0]
  if class_names is not None and len(class_names) != n:
    raise errors.ConfigError(
        f"{what}: {len(class_names)} class names for a {n}-class confusion matrix")
  normalized = normalize_rows(cm)

  small = n <= 12
  figure = Figure(figsize=(8, 7) if small else (14, 12))
  FigureCanvasAgg(figure)
  axes = figure.add_subplot(1, 1, 1)
  image = axes.imshow(normalized, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
  figure.colorbar(image, ax=axes, fraction=0.046, pad=0.02, label="fraction of true class")
  ticks = np.arange(n)
  fontsize = 9 if small else 7
  axes.set_xticks(ticks)
  axes.set_xticklabels([str(i) for i in ticks], fontsize=fontsize, rotation=0 if small else 90)
  axes.set_yticks(ticks)
  if class_names is not None:
    labels = [f"{i}: {_shorten(name)}" for i, name in zip(ticks, class_names)]
  else:
    labels = [str(i) for i in ticks]
  axes.set_yticklabels(labels, fontsize=fontsize)
  axes.set_xlabel("Predicted class")
  axes.set_ylabel("True class")
  if title:
    axes.set_title(title)
  if small:
    for (row, col), value in np.ndenumerate(normalized):
      if value > 0:
        axes.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=9,
                  color="white" if value > 0.5 else "black")

  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.2)
  return buffer.getvalue()


def _shorten(name, limit=28):
  return name if len(name) <= limit else name[:limit - 1] + "\u2026"

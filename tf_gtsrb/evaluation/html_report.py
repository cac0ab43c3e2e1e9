"""A self-contained HTML report (model card) of a benchmark or pipeline run.

One file: every figure and image is inlined as a base64 PNG data URI, the CSS is
inline, there is no script and nothing is fetched. Sections: intended use and
limits, data and split, headline results, results per runtime, robustness,
error gallery, per-class accuracy, confusion matrix, training curves, pruning
sweep, recipe, SHA-256 of the files. A section whose inputs are absent says
"not run" (the step that makes them did not run) or "not measured".

  html_report.write_html_report("work/report/report.html", benchmark_dir="work/benchmark",
                                work_dir="work")
"""

import base64
import datetime
import glob
import html
import io
import json
import os
import re

import numpy as np

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb.data.class_names import CLASS_NAMES

NOT_RUN = "not run"
NOT_MEASURED = "not measured"
TRAINING_STEPS = ("train", "prune", "qat")  # Pipeline steps whose fits write history.json.
# Runtimes the project deploys to: (title, pattern matching the result keys that hold them).
RUNTIMES = (("TFLite Micro", r"micro"), ("MediaPipe", r"mediapipe"),
            ("NPU (Ethos-U / Vela)", r"npu|vela|ethos"))
ROBUSTNESS_KEYS = ("robustness", "corruptions", "corruption")
MAX_PER_CLASS = 6  # Misclassified images shown per true class.
MAX_GALLERY = 240  # Misclassified images shown in all.
THUMBNAIL_PX = 64  # Displayed size of a gallery image (CSS, pixelated).
FIGURE_DPI = 72

INTENDED_USE = (
    "Classifies one image of a single German traffic sign, as cropped by a detector or "
    "tracker (the whole GTSRB-style crop, sign with a margin, resized to the model's input "
    "size), into one of the 43 GTSRB classes. Made for microcontrollers and phones: an INT8 "
    "flatbuffer for LiteRT and TFLite Micro.")
LIMITS = (
    "It does not find signs in a scene: it needs a crop. Every input gets one of the 43 "
    "classes, also images of no sign or of a sign outside GTSRB; the confidence is not "
    "calibrated against such inputs.",
    "Trained and tested on GTSRB only (German signs, daytime video of 2010-2011); signs of "
    "other countries, other cameras, night, snow, heavy occlusion or damage are not covered "
    "by the test figures below.",
    "The test accuracy is an average: the per-class accuracy and the error gallery show "
    "where it is lower. Not validated for safety-critical use (driver assistance, "
    "autonomous driving).",
)

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2em auto;
max-width:1100px;padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}
.status{color:#888;font-style:italic}.fail{color:#b00020;font-weight:bold}
.ok{color:#176f2c}img.figure{max-width:100%;height:auto;display:block;margin:.5em 0}
.gallery{display:flex;flex-wrap:wrap;gap:.5em;margin:.3em 0 1em}
figure.err{margin:0;width:9em;font-size:.78em;text-align:center}
figure.err img{width:%(px)dpx;height:%(px)dpx;image-rendering:pixelated;
image-rendering:crisp-edges;border:1px solid #999}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.85em}
code{font-size:.9em}.muted{color:#666}
""".replace("%(px)d", str(THUMBNAIL_PX))


# Loading a run's outputs.

def write_html_report(path, benchmark_dir=None, work_dir=None, data_dir=None, recipe_path=None,
                      files=(), title="GTSRB traffic-sign classifier", gallery_model=None,
                      settings=None):
  """Builds the report from what a run left on disk and writes it to `path`, atomically.

  Args:
    benchmark_dir: holds benchmark.json and predictions.npz (`benchmark.run`).
    work_dir: a pipeline work directory: report/report.json, {train,prune,qat}/history.json,
      any sweep.json below it.
    data_dir: the prepared dataset the benchmark scored (default: the one benchmark.json
      names); its images fill the error gallery.
    recipe_path: the flagfile of the run's recipe, shown verbatim.
    files: released files whose SHA-256 is listed.
    gallery_model: the model whose mistakes are shown (default: the last benchmarked).
    settings: {flag: value} shown as the recipe when no `recipe_path` is given.
  Returns `path`.
  """
  report = _read_optional_json(work_dir and os.path.join(work_dir, "report", "report.json"))
  benchmark = _read_optional_json(benchmark_dir and os.path.join(benchmark_dir,
                                                                 "benchmark.json"))
  if benchmark is None and report:
    benchmark = report.get("benchmark")
  predictions = None
  if benchmark_dir:
    from tf_gtsrb.evaluation import predictions as predictions_lib  # pylint: disable=g-import-not-at-top
    predictions = predictions_lib.load_predictions(
        os.path.join(benchmark_dir, predictions_lib.FILE_NAME))
  images, images_note = _gallery_images(benchmark, predictions, data_dir)
  histories = {step: _read_optional_json(work_dir and os.path.join(work_dir, step,
                                                                   "history.json"))
               for step in TRAINING_STEPS} if work_dir else {}
  sweep = None
  if work_dir:
    found = sorted(glob.glob(os.path.join(work_dir, "**", "sweep.json"), recursive=True))
    sweep = _read_optional_json(found[0]) if found else None
  robustness = _find_robustness(benchmark, report, benchmark_dir)
  recipe = None
  if recipe_path:
    try:
      with open(recipe_path) as f:
        recipe = (recipe_path, f.read())
    except OSError as e:
      raise errors.ConfigError(f"{recipe_path}: cannot read the recipe: {e.strerror}") from e
  elif settings or (report and report.get("settings")):
    settings = settings or report["settings"]
    recipe = ("the run's settings", "\n".join(f"--{k}={_flag_value(v)}"
                                              for k, v in sorted(settings.items())
                                              if v is not None))
  page = build_html(title=title, benchmark=benchmark, report=report, predictions=predictions,
                    images=images, images_note=images_note, histories=histories, sweep=sweep,
                    robustness=robustness, recipe=recipe, files=files,
                    gallery_model=gallery_model, pipeline=bool(work_dir))
  io_utils.write_text(path, page)
  return path


def _read_optional_json(path):
  """The JSON at `path`, or None when there is no such file."""
  if not path or not os.path.exists(path):
    return None
  return io_utils.read_json(path)


def _flag_value(value):
  return str(value).lower() if isinstance(value, bool) else str(value)


def _gallery_images(benchmark, predictions, data_dir):
  """(uint8 images of the scored split in its order, or None; why they are missing)."""
  if predictions is None:
    return None, "no per-image predictions (predictions.npz): run the benchmark again"
  data = (benchmark or {}).get("data", {})
  data_dir = data_dir or data.get("data_dir")
  if not data_dir or not os.path.isdir(data_dir):
    return None, f"the scored dataset ({data_dir or 'unknown'}) is not here"
  from tf_gtsrb.data import input_pipeline  # pylint: disable=g-import-not-at-top
  labels = predictions["labels"]
  try:
    images, image_labels = input_pipeline.load_arrays(data_dir, data.get("split", "test"),
                                                      limit=len(labels))
  except errors.GtsrbError as e:
    return None, f"the scored images cannot be read: {e}"
  if not np.array_equal(image_labels, labels):
    return None, f"{data_dir}: its images do not match the benchmark's labels"
  return images, None


def _find_robustness(benchmark, report, benchmark_dir):
  for source in (benchmark, report):
    for key in ROBUSTNESS_KEYS:
      if source and source.get(key):
        return source[key]
  if benchmark_dir:
    for name in ("robustness.json", "corruptions.json"):
      found = _read_optional_json(os.path.join(benchmark_dir, name))
      if found:
        return found
  return None


# The page.

def build_html(title="GTSRB traffic-sign classifier", benchmark=None, report=None,
               predictions=None, images=None, images_note=None, histories=None, sweep=None,
               robustness=None, recipe=None, files=(), gallery_model=None,
               class_names=CLASS_NAMES, pipeline=True):
  """The report page as a string. Every argument may be None: its section then says so.

  `benchmark`: benchmark.json; `report`: the pipeline's report.json; `predictions`:
  `predictions.load_predictions`; `images`: the scored images, in order; `histories`:
  {step: Keras history dict or None}; `sweep`: sweep.json; `robustness`: corruption
  accuracies (nested {model: {kind: {severity: accuracy}}} or records); `recipe`:
  (where from, text); `files`: paths to hash. `pipeline`: the run is a pipeline run
  (missing training steps then read "not run" rather than "not part of this run").
  """
  models = (benchmark or {}).get("models") or {}
  if gallery_model is None and models:
    gallery_model = list(models)[-1]
  if gallery_model is not None and models and gallery_model not in models:
    raise errors.ConfigError(f"gallery model {gallery_model!r} is not among the benchmarked "
                             f"models: {', '.join(models)}")
  sections = [
      ("Intended use and limits", _intended_use()),
      ("Data and split", _data_section(benchmark, report)),
      ("Headline results", _headline_section(benchmark, report)),
      ("Results per runtime", _runtime_section(benchmark, report)),
      ("Robustness to corruptions", _robustness_section(robustness)),
      (f"Error gallery ({_e(gallery_model or 'no model')})",
       _gallery_section(models.get(gallery_model), gallery_model, predictions, images,
                        images_note, class_names)),
      ("Per-class accuracy", _per_class_section(models.get(gallery_model), gallery_model,
                                                class_names)),
      ("Confusion matrix", _confusion_section(models.get(gallery_model), gallery_model,
                                              class_names)),
      ("Training and fine-tuning curves", _curves_section(histories, pipeline)),
      ("Pruning sweep: accuracy against size and MACs", _sweep_section(sweep)),
      ("Recipe", _recipe_section(recipe)),
      ("Files (SHA-256)", _files_section(files)),
  ]
  body = "\n".join(f'<section><h2 id="{_anchor(name)}">{name}</h2>\n{content}</section>'
                   for name, content in sections)
  toc = " &middot; ".join(f'<a href="#{_anchor(name)}">{name}</a>' for name, _ in sections)
  generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
          f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
          f"<title>{_e(title)}</title>\n<style>{_CSS}</style></head>\n<body>\n"
          f"<h1>{_e(title)}</h1>\n<p class=\"muted\">Model card, generated {generated} by "
          f"tf_gtsrb.</p>\n<nav>{toc}</nav>\n{body}\n</body></html>\n")


def _e(text):
  return html.escape(str(text), quote=True)


def _anchor(name):
  return re.sub(r"[^a-z0-9]+", "-", re.sub(r"<[^>]*>|&[a-z]+;", "", name.lower())).strip("-")


def _status(text):
  return f'<p class="status">{_e(text)}</p>'


def _table(header, rows, numeric=()):
  """An HTML table of escaped cells; columns whose index is in `numeric` align right."""
  head = "".join(f"<th>{_e(h)}</th>" for h in header)
  body = "".join(
      "<tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>{_e(c)}</td>'
                       for i, c in enumerate(row)) + "</tr>" for row in rows)
  return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _percent(value, digits=2):
  return "-" if value is None else f"{100 * value:.{digits}f}%"


def _number(value, fmt="{:,}"):
  return "-" if value is None else fmt.format(value)


def _png_uri(png_bytes):
  return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


def _img(png_bytes, alt, css_class="figure"):
  return f'<img class="{css_class}" alt="{_e(alt)}" src="{_png_uri(png_bytes)}">'


def _figure(width, height):
  """A matplotlib figure drawn off-screen (Agg), no pyplot state."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  figure = Figure(figsize=(width, height))
  FigureCanvasAgg(figure)
  return figure


def _png(figure):
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight", pad_inches=0.15)
  return buffer.getvalue()


def _class_label(class_id, class_names):
  name = class_names[class_id] if 0 <= class_id < len(class_names) else "?"
  return f"{class_id} {name}"


# Sections.

def _intended_use():
  return (f"<p><b>Intended use.</b> {_e(INTENDED_USE)}</p>\n<p><b>Limits.</b></p><ul>"
          + "".join(f"<li>{_e(line)}</li>" for line in LIMITS) + "</ul>")


def _data_section(benchmark, report):
  parts = []
  prepare = ((report or {}).get("steps") or {}).get("prepare")
  if prepare:
    splits = prepare.get("splits") or {}
    parts.append(f"<p>Prepared from {_e(prepare.get('source_dir', '?'))} (configuration "
                 f"<code>{_e(prepare.get('config', '?'))}</code>): the validation split holds "
                 "whole tracks (every image of a physical sign stays on one side), the "
                 "training split may be balanced by augmentation.</p>")
    parts.append(_table(("Split", "Images"), [(k, f"{v:,}") for k, v in sorted(splits.items())],
                        numeric=(1,)))
  data = (benchmark or {}).get("data")
  if data:
    parts.append(f"<p>Scored on the <b>{_e(data.get('split', '?'))}</b> split, "
                 f"{_e(_number(data.get('num_images')))} images, of "
                 f"<code>{_e(data.get('data_dir', '?'))}</code>.</p>")
  return "\n".join(parts) or _status(f"{NOT_RUN}: no prepare step or benchmark results")


def _headline_section(benchmark, report):
  models = (benchmark or {}).get("models")
  if not models:
    return _status(f"{NOT_RUN}: no benchmark results")
  rows = []
  for name, m in models.items():
    metrics = m.get("metrics") or {}
    latency = m.get("latency") or {}
    size = m.get("file_size_bytes")
    rows.append((name, m.get("format", "?"), m.get("input_type", "?"),
                 _percent(metrics.get("accuracy")), _percent(metrics.get("f1_macro")),
                 _number(latency.get("median_ms"), "{:.3f}"),
                 _number(None if m.get("macs") is None else m["macs"] / 1e6, "{:.2f}"),
                 _number(m.get("params")), _number(None if size is None else size / 1024,
                                                   "{:.1f}")))
  parts = [_table(("Model", "Format", "Input", "Accuracy", "F1 (macro)",
                   "Latency p50 (ms, batch 1)", "MACs (M)", "Params", "Size (KB)"), rows,
                  numeric=range(3, 9))]
  machine = benchmark.get("machine") or {}
  if machine:
    parts.append(f"<p class=\"muted\">Latency measured on {_e(machine.get('cpu', '?'))}, "
                 f"{_e(machine.get('threads', '?'))} thread(s).</p>")
  agreement = benchmark.get("agreement")
  if agreement:
    parts.append(f"<p>Agreement {_e(' vs '.join(agreement.get('models', [])))}: "
                 f"{_percent(agreement.get('agreement'))} of images get the same class "
                 f"(required {_percent(agreement.get('min_agreement'))}).</p>")
  targets = (report or {}).get("targets")
  if targets:
    parts.append("<h3>Targets</h3>" + _table(
        ("Target", "Measured", "Met"),
        [(t["target"], t["measured"], "yes" if t["met"] else "NO") for t in targets]))
  return "\n".join(parts)


def _runtime_section(benchmark, report):
  """LiteRT from the benchmarked flatbuffers; other runtimes from whatever result entries
  name them (rendered generically), 'not measured' otherwise."""
  parts = ["<h3>LiteRT (CPU interpreter)</h3>"]
  tflite = {n: m for n, m in ((benchmark or {}).get("models") or {}).items()
            if m.get("format") == "tflite"}
  if tflite:
    parts.append(_table(
        ("Model", "Accuracy", "Latency p50 (ms)", "Latency p90 (ms)", "Batch throughput (img/s)",
         "Peak memory (MB)"),
        [(n, _percent(m["metrics"]["accuracy"]),
          _number((m.get("latency") or {}).get("median_ms"), "{:.3f}"),
          _number((m.get("latency") or {}).get("p90_ms"), "{:.3f}"),
          _number(m.get("throughput_images_per_s"), "{:.0f}"),
          _number((m.get("memory") or {}).get("peak_mb"), "{:.1f}"))
         for n, m in tflite.items()], numeric=range(1, 6)))
  else:
    parts.append(_status(f"{NOT_MEASURED}: no TFLite flatbuffer was benchmarked"))
  entries = _runtime_entries(benchmark, report)
  shown = set()
  for title, pattern in RUNTIMES:
    parts.append(f"<h3>{_e(title)}</h3>")
    matching = [key for key in entries if re.search(pattern, key, re.IGNORECASE)]
    if not matching:
      parts.append(_status(NOT_MEASURED))
    for key in matching:
      parts.append(f"<p class=\"muted\">{_e(key)}</p>" + _value_table(entries[key]))
      shown.add(key)
  for key in entries:
    if key not in shown:
      parts.append(f"<h3>{_e(key)}</h3>" + _value_table(entries[key]))
  return "\n".join(parts)


def _runtime_entries(benchmark, report):
  """{name: result} of the runtimes the results hold: a 'runtimes' mapping, and any
  top-level entry named after a runtime."""
  entries = {}
  for source in (benchmark, report):
    if not isinstance(source, dict):
      continue
    runtimes = source.get("runtimes")
    if isinstance(runtimes, dict):
      entries.update({str(k): v for k, v in runtimes.items()})
    for key, value in source.items():
      if key != "runtimes" and any(re.search(p, key, re.IGNORECASE) for _, p in RUNTIMES):
        entries.setdefault(key, value)
  return {k: v for k, v in entries.items() if v}


def _value_table(value):
  """Any JSON value as a two-column table of its scalar leaves ('a / b' paths)."""
  rows = []

  def walk(prefix, item, depth):
    if isinstance(item, dict) and depth < 4:
      for key, sub in item.items():
        walk(f"{prefix} / {key}" if prefix else str(key), sub, depth + 1)
    elif isinstance(item, list) and item and all(isinstance(v, (int, float, str)) for v in item):
      text = ", ".join(_scalar(prefix, v) for v in item[:12])
      rows.append((prefix, text + (f", ... ({len(item)} values)" if len(item) > 12 else "")))
    elif isinstance(item, (dict, list)):
      rows.append((prefix, json.dumps(item, default=str)[:300]))
    else:
      rows.append((prefix or "value", _scalar(prefix, item)))

  walk("", value, 0)
  return _table(("Measure", "Value"), rows) if rows else _status(NOT_MEASURED)


def _scalar(key, value):
  if isinstance(value, bool) or value is None:
    return str(value)
  if isinstance(value, float):
    if "accuracy" in key.lower() and 0.0 <= value <= 1.0:
      return _percent(value)
    return f"{value:.4g}"
  return str(value)


def robustness_records(robustness):
  """[(model, kind, severity, accuracy)] from nested {[model:] {kind: {severity: accuracy}}}
  dicts or a list of records with kind/corruption, severity, accuracy (and model) keys.
  Entries that fit neither shape are left out."""
  records = []
  if isinstance(robustness, list):
    for r in robustness:
      if isinstance(r, dict) and "accuracy" in r and ("kind" in r or "corruption" in r):
        records.append((str(r.get("model", "")), str(r.get("kind", r.get("corruption"))),
                        str(r.get("severity", "")), float(r["accuracy"])))
    return records

  def walk(path, item):
    if isinstance(item, dict):
      if "accuracy" in item and isinstance(item["accuracy"], (int, float)) and path:
        leaf(path, item["accuracy"])
        return
      for key, sub in item.items():
        walk(path + [str(key)], sub)
    elif isinstance(item, (int, float)) and not isinstance(item, bool):
      leaf(path, item)

  def leaf(path, accuracy):
    if not 0.0 <= accuracy <= 1.0 or not path:  # Counts, settings: not an accuracy.
      return
    severity = _SEVERITY.fullmatch(path[-1])
    if severity and len(path) >= 2:
      records.append((" / ".join(path[:-2]), path[-2], severity.group(1), float(accuracy)))
    else:
      records.append((" / ".join(path[:-1]), path[-1], "", float(accuracy)))

  if isinstance(robustness, dict):
    walk([], robustness)
  return records


_SEVERITY = re.compile(r"(?:severity|level|s)?[_ -]?(\d+(?:\.\d+)?)", re.IGNORECASE)


def _robustness_section(robustness):
  if not robustness:
    return _status(f"{NOT_MEASURED}: no corruption benchmark in these results")
  suite = _suite_results(robustness)
  if suite:
    return _suite_section(suite)
  records = robustness_records(robustness)
  if not records:
    return (_status("results present but not in a known shape; as stored:")
            + f"<pre>{_e(json.dumps(robustness, indent=1, default=str)[:4000])}</pre>")
  rows = [(m or "-", k, s or "-", _percent(a)) for m, k, s, a in records]
  parts = [_table(("Model", "Corruption", "Severity", "Accuracy"), rows, numeric=(3,))]
  curves = {}
  for model, kind, severity, accuracy in records:
    curves.setdefault((model, kind), []).append((severity, accuracy))
  figure = _figure(7, 4)
  axes = figure.add_subplot(1, 1, 1)
  for (model, kind), points in curves.items():
    label = f"{model}: {kind}" if model else kind
    if len(points) > 1 and all(re.fullmatch(r"\d+(\.\d+)?", s) for s, _ in points):
      points = sorted(points, key=lambda p: float(p[0]))
      axes.plot([float(s) for s, _ in points], [100 * a for _, a in points], "o-", label=label)
    else:
      axes.plot([0] * len(points), [100 * a for _, a in points], "s", label=label)
  _label_severity_axes(axes, "accuracy (%)", legend_size=7)
  parts.append(_img(_png(figure), "accuracy per corruption kind and severity"))
  return "\n".join(parts)


def _suite_results(robustness):
  """{model: result} when `robustness` is the corruption suite's own output
  (`robustness.evaluate_model_files`, or one model's corruptions.json); else None."""
  if not isinstance(robustness, dict):
    return None
  if "mean_corruption_accuracy" in robustness:
    return {"model": robustness}
  if robustness and all(isinstance(r, dict) and "mean_corruption_accuracy" in r
                        for r in robustness.values()):
    return robustness
  return None


def _suite_section(suite):
  """Per model: clean and mean corruption accuracy, a kind x severity table; one plot of
  every model's accuracy against severity, averaged over kinds."""
  parts = [_table(("Model", "Clean accuracy", "Mean corruption accuracy", "Weakest kind",
                   "Images"),
                  [(name, _percent(r.get("clean_accuracy")),
                    _percent(r["mean_corruption_accuracy"]), r.get("worst_kind", "-"),
                    _number(r.get("num_images"), "{:,}")) for name, r in suite.items()],
                  numeric=(1, 2, 4))]
  figure = _figure(7, 4)
  axes = figure.add_subplot(1, 1, 1)
  for name, result in suite.items():
    by_kind = result["accuracy"]
    severities = sorted({s for per in by_kind.values() for s in per}, key=float)
    parts.append(f"<h3>{_e(name)}</h3>" + _table(
        ("Corruption", *[f"severity {s}" for s in severities], "mean"),
        [(kind, *[_percent(per.get(s)) for s in severities],
          _percent((result.get("kind_mean") or {}).get(kind)))
         for kind, per in sorted(by_kind.items())],
        numeric=range(1, len(severities) + 2)))
    means = [float(np.mean([per[s] for per in by_kind.values() if s in per]))
             for s in severities]
    axes.plot([float(s) for s in severities], [100 * m for m in means], "o-", label=name)
  _label_severity_axes(axes, "accuracy averaged over kinds (%)", legend_size=8)
  parts.append(_img(_png(figure), "accuracy against corruption severity, averaged over kinds"))
  return "\n".join(parts)


def _label_severity_axes(axes, ylabel, legend_size):
  axes.set_xlabel("severity")
  axes.set_ylabel(ylabel)
  axes.grid(True, alpha=0.3)
  axes.legend(fontsize=legend_size, loc="best")


def misclassified_by_class(labels, predicted, confidence):
  """{true class: [(index, predicted class, confidence)]} of the wrong predictions, each
  list most confident first (ties by index)."""
  groups = {}
  for index in np.flatnonzero(np.asarray(predicted) != np.asarray(labels)):
    groups.setdefault(int(labels[index]), []).append(
        (int(index), int(predicted[index]), float(confidence[index])))
  return {c: sorted(g, key=lambda e: (-e[2], e[0])) for c, g in sorted(groups.items())}


def _thumbnail(image):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG", optimize=True)
  return buffer.getvalue()


def _gallery_section(model, name, predictions, images, images_note, class_names,
                     max_per_class=MAX_PER_CLASS, max_total=MAX_GALLERY):
  if model is None:
    return _status(f"{NOT_RUN}: no benchmark results")
  per_model = (predictions or {}).get("models", {}).get(name)
  if per_model is None:
    return _status(f"{NOT_MEASURED}: " + (images_note or f"no per-image predictions of {name}"))
  labels = predictions["labels"]
  groups = misclassified_by_class(labels, per_model["predicted"], per_model["confidence"])
  wrong = sum(len(g) for g in groups.values())
  parts = [f"<p>{wrong:,} of {len(labels):,} images misclassified by {_e(name)}, grouped by "
           f"true class, most confident mistakes first (caption: true &rarr; predicted "
           f"(confidence)); at most {max_per_class} shown per class.</p>"]
  if not wrong:
    return parts[0]
  if images is None:
    parts.append(_status(f"images not shown: {images_note}"))
  shown = 0
  for true_class, mistakes in groups.items():
    parts.append(f"<h4>{_e(_class_label(true_class, class_names))}: {len(mistakes)} "
                 f"misclassified</h4>")
    figures = []
    for index, predicted, confidence in mistakes[:max_per_class]:
      caption = (f"{_class_label(true_class, class_names)} \u2192 "
                 f"{_class_label(predicted, class_names)} ({100 * confidence:.0f}%)")
      picture = ""
      if images is not None and shown < max_total:
        picture = _img(_thumbnail(images[index]), f"test image {index}", css_class="thumb")
        shown += 1
      figures.append(f'<figure class="err">{picture}<figcaption>{_e(caption)}'
                     f'<br><span class="muted">image {index}</span></figcaption></figure>')
    rest = len(mistakes) - max_per_class
    parts.append('<div class="gallery">' + "".join(figures) + "</div>"
                 + (f'<p class="muted">and {rest} more</p>' if rest > 0 else ""))
  if images is not None and shown >= max_total:
    parts.append(_status(f"images shown for the first {max_total} mistakes only"))
  return "\n".join(parts)


def _per_class_section(model, name, class_names):
  if model is None:
    return _status(f"{NOT_RUN}: no benchmark results")
  per_class = model["metrics"]["per_class"]
  present = [c for c in per_class if c["support"]]
  figure = _figure(8, 0.2 * len(per_class) + 1.2)
  axes = figure.add_subplot(1, 1, 1)
  ids = [c["class_id"] for c in per_class]
  accuracy = [100 * c["recall"] if c["support"] else 0.0 for c in per_class]
  colors = ["tab:red" if c["support"] and c["recall"] < model["metrics"]["accuracy"]
            else "tab:blue" for c in per_class]
  axes.barh(range(len(ids)), accuracy, color=colors)
  axes.set_yticks(range(len(ids)))
  axes.set_yticklabels([_shorten(_class_label(i, class_names)) for i in ids], fontsize=7)
  axes.invert_yaxis()
  axes.axvline(100 * model["metrics"]["accuracy"], color="black", linewidth=0.8,
               linestyle="--", label="overall accuracy")
  lowest = min((a for a, c in zip(accuracy, per_class) if c["support"]), default=0.0)
  axes.set_xlim(max(0.0, min(lowest - 5, 90.0)), 100.5)
  axes.set_xlabel("accuracy on the class's images (recall, %)")
  axes.set_title(f"{name}: per-class accuracy (red: below overall)", fontsize=9)
  axes.legend(fontsize=7, loc="lower left")
  text = (f"<p>{len(present)} classes present; red bars are below the overall accuracy of "
          f"{_percent(model['metrics']['accuracy'])}.</p>")
  return text + _img(_png(figure), f"per-class accuracy of {name}")


def _shorten(text, limit=40):
  return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _confusion_section(model, name, class_names):
  if model is None:
    return _status(f"{NOT_RUN}: no benchmark results")
  from tf_gtsrb.evaluation import plots  # pylint: disable=g-import-not-at-top
  cm = model["metrics"]["confusion_matrix"]
  names = list(class_names) if len(class_names) == len(cm) else None
  png = plots.confusion_matrix_png(cm, names, title=f"{name}: rows normalized", dpi=FIGURE_DPI)
  return ("<p>Rows: true class, columns: predicted class; each row divided by its number "
          "of images.</p>" + _img(png, f"normalized confusion matrix of {name}"))


def _curves_section(histories, pipeline):
  if not histories:
    return _status(f"{NOT_RUN}: not a pipeline run (no work directory given)"
                   if not pipeline else f"{NOT_RUN}: no training step")
  parts = []
  for step, history in histories.items():
    parts.append(f"<h3>{_e(step)}</h3>")
    if not history or not any(history.values()):
      parts.append(_status(f"{NOT_RUN}: no {step}/history.json"))
      continue
    rate_key = next((k for k in ("learning_rate", "lr") if history.get(k)), None)
    panels = [("loss", ("loss", "val_loss")), ("accuracy", ("accuracy", "val_accuracy"))]
    if rate_key:
      panels.append(("learning rate", (rate_key,)))
    figure = _figure(4 * len(panels), 3)
    for i, (what, keys) in enumerate(panels):
      axes = figure.add_subplot(1, len(panels), i + 1)
      for key in keys:
        values = history.get(key) or []
        if values:
          axes.plot(range(1, len(values) + 1), values, label=key)
      axes.set_xlabel("epoch")
      axes.set_title(what, fontsize=9)
      axes.grid(True, alpha=0.3)
      if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7)
    figure.tight_layout()
    parts.append(_img(_png(figure), f"{step} curves"))
    if not rate_key:
      parts.append(_status("learning rate not recorded in this history"))
  return "\n".join(parts)


def _sweep_section(sweep):
  rows = (sweep or {}).get("rows")
  if not rows:
    return _status(f"{NOT_RUN}: no sweep.json (gtsrb-sweep) in the work directory")
  figure = _figure(9, 3.5)
  for i, (key, scale, label) in enumerate((("size_bytes", 1 / 1024, "file size (KB)"),
                                           ("macs", 1e-6, "MACs per image (M)"))):
    axes = figure.add_subplot(1, 2, i + 1)
    xs = [r[key] * scale for r in rows]
    ys = [100 * r["test_accuracy"] for r in rows]
    axes.plot(xs, ys, "o-")
    for r, x, y in zip(rows, xs, ys):
      axes.annotate("baseline" if r.get("name") == "baseline" else f"{r['prune_percent']:g}%",
                    (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    axes.set_xlabel(label)
    axes.set_ylabel("test accuracy (%)")
    axes.grid(True, alpha=0.3)
  figure.tight_layout()
  table = _table(("Prune %", "Channels", "Params", "Test accuracy", "Size (KB)", "MACs (M)"),
                 [(f"{r.get('prune_percent', 0):g}", "/".join(map(str, r.get("channels", []))),
                   _number(r.get("params")), _percent(r["test_accuracy"]),
                   f"{r['size_bytes'] / 1024:.1f}", f"{r['macs'] / 1e6:.2f}") for r in rows],
                 numeric=range(2, 6))
  return table + _img(_png(figure), "pruning sweep: accuracy against size and MACs")


def _recipe_section(recipe):
  if not recipe:
    return _status("not given (pass the recipe's flagfile)")
  source, text = recipe
  return f"<p>From <code>{_e(source)}</code>:</p><pre>{_e(text.strip())}</pre>"


def _files_section(files):
  if not files:
    return _status("no files given")
  from tf_gtsrb.data import archives  # pylint: disable=g-import-not-at-top
  rows = []
  for path in files:
    if not os.path.isfile(path):
      raise errors.ConfigError(f"{path}: file to hash not found")
    rows.append((os.path.basename(path), f"{os.path.getsize(path):,}",
                 archives.sha256sum(path)))
  return _table(("File", "Bytes", "SHA-256"), rows, numeric=(1,))

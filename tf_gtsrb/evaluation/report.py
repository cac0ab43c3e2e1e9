"""Markdown tables of evaluation results, in the published project's layout.

Scores are shown in percent with 2 decimals; a missing value shows as '-'.
"""

import math

METRICS_HEADER = ("Model", "Accuracy (%)", "Precision (%)", "Recall (%)", "F1-Score (%)")
PERFORMANCE_HEADER = ("Model", "Inference Time (ms)", "FPS", "MACs (M)", "Parameters",
                      "Model Size (KB)")
PER_CLASS_HEADER = ("Class", "Name", "Precision (%)", "Recall (%)", "F1-Score (%)", "Support")
CONFUSIONS_HEADER = ("True class", "Predicted as", "Images", "Share of the true class (%)")
MISSING = "-"


def markdown_table(header, rows):
  """Returns a markdown table (ending in a newline) of string cells."""
  lines = [_row(header), "|" + "|".join("---" for _ in header) + "|"]
  lines.extend(_row(row) for row in rows)
  return "\n".join(lines) + "\n"


def metrics_table(rows):
  """Accuracy and weighted precision/recall/F1 per model.

  `rows`: iterable of (name, report) with `report` from
  `metrics.classification_report`.
  """
  return markdown_table(METRICS_HEADER, [
      (name, _percent(r.get("accuracy")), _percent(r.get("precision_weighted")),
       _percent(r.get("recall_weighted")), _percent(r.get("f1_weighted")))
      for name, r in rows])


def performance_table(rows):
  """Speed and size per model.

  `rows`: iterable of dicts with keys name, latency_ms (per image), fps, macs
  (per image), params (an int, or a `count_params` dict whose 'trainable' count
  is shown) and size_bytes; absent or None values show as '-'.
  """
  table = []
  for row in rows:
    params = row.get("params")
    if isinstance(params, dict):
      params = params.get("trainable")
    macs = row.get("macs")
    size = row.get("size_bytes")
    table.append((
        row.get("name", MISSING),
        _number(row.get("latency_ms"), "{:.2f}"),
        _number(row.get("fps"), "{:.1f}"),
        _number(None if macs is None else macs / 1e6, "{:.2f}"),
        _number(params, "{:,}"),
        _number(None if size is None else size / 1024, "{:.2f}"),
    ))
  return markdown_table(PERFORMANCE_HEADER, table)


def per_class_table(report):
  """Precision/recall/F1 and support for every class of a classification report."""
  return markdown_table(PER_CLASS_HEADER, [
      (str(c["class_id"]), c["name"], _percent(c["precision"]), _percent(c["recall"]),
       _percent(c["f1"]), str(c["support"]))
      for c in report["per_class"]])


def confusions_table(report, limit=10):
  """The `limit` most frequent mistakes (true class -> predicted class) of a
  classification report, most frequent first; ties by class ids."""
  names = {c["class_id"]: f'{c["class_id"]} {c["name"]}' for c in report["per_class"]}
  matrix = report["confusion_matrix"]
  mistakes = sorted(((-count, true, predicted)
                     for true, row in enumerate(matrix)
                     for predicted, count in enumerate(row) if count and true != predicted))
  return markdown_table(CONFUSIONS_HEADER, [
      (names[true], names[predicted], str(-negative),
       _percent(-negative / sum(matrix[true])))
      for negative, true, predicted in mistakes[:limit]])


def _percent(value):
  return _number(None if value is None else 100.0 * value, "{:.2f}")


def _number(value, fmt):
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return MISSING
  return fmt.format(value)


def _row(cells):
  return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

"""TFLite model as a C/C++ byte array, laid out like the TFLite Micro examples.

The source defines `alignas(16) const unsigned char g_model[] = {...};` (12
bytes a line) and `const int g_model_len = N;`; the header declares both
`extern`. The source includes the header, so the `const` array gets external
linkage in C++. Compile the source as C++11 or later (for `alignas`).
"""

import os
import re

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb.export import flatbuffer

BYTES_PER_LINE = 12
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_name(name, what):
  if not isinstance(name, str) or not _IDENTIFIER.match(name):
    raise errors.ConfigError(f"{what} {name!r} is not a valid C identifier")


def include_guard(header_file):
  """'model_int8.h' -> 'MODEL_INT8_H_'."""
  return re.sub(r"[^A-Za-z0-9]", "_", os.path.basename(header_file)).upper() + "_"


def to_c_files(tflite_bytes, name="g_model", header_file=None):
  """Returns (header_text, source_text) holding `tflite_bytes` as array `name`.

  `header_file` is the header's file name the source includes (default
  '<name>.h').
  """
  _check_name(name, "array name")
  flatbuffer.check_identifier(tflite_bytes, f"C array {name}")
  data = bytes(tflite_bytes)
  header_file = header_file or f"{name}.h"
  guard = include_guard(header_file)
  header = (
      f"// TFLite model as a C array: {len(data)} bytes.\n"
      f"#ifndef {guard}\n"
      f"#define {guard}\n"
      "\n"
      f"extern const unsigned char {name}[];\n"
      f"extern const int {name}_len;\n"
      "\n"
      f"#endif  // {guard}\n")
  lines = []
  for start in range(0, len(data), BYTES_PER_LINE):
    chunk = data[start:start + BYTES_PER_LINE]
    lines.append("    " + ", ".join(f"0x{b:02x}" for b in chunk) + ",")
  source = (
      f"// TFLite model as a C array: {len(data)} bytes.\n"
      f"#include \"{header_file}\"\n"
      "\n"
      "// Aligned to 16 bytes: TFLite Micro reads the flatbuffer in place.\n"
      f"alignas(16) const unsigned char {name}[] = {{\n"
      + "\n".join(lines) + "\n"
      "};\n"
      f"const int {name}_len = {len(data)};\n")
  return header, source


def write_c_files(tflite_bytes, out_dir, name="g_model", file_stem=None):
  """Writes '<file_stem>.h' and '<file_stem>.cc' (stem defaults to `name`) atomically.

  Returns (header_path, source_path).
  """
  file_stem = file_stem or name
  _check_name(file_stem, "file stem")
  header, source = to_c_files(tflite_bytes, name, header_file=f"{file_stem}.h")
  header_path = os.path.join(out_dir, f"{file_stem}.h")
  source_path = os.path.join(out_dir, f"{file_stem}.cc")
  io_utils.write_text(header_path, header)
  io_utils.write_text(source_path, source)
  return header_path, source_path


def parse_c_array(source_text, name="g_model"):
  """Reads the bytes of array `name` back from C source; checks `<name>_len` if present.

  Raises ConfigError when the array is missing or its length disagrees.
  """
  _check_name(name, "array name")
  match = re.search(
      r"\b" + re.escape(name) + r"\s*\[\s*\]\s*=\s*\{(?P<body>[^}]*)\}", source_text)
  if not match:
    raise errors.ConfigError(f"no array {name}[] found in the C source")
  tokens = [t.strip() for t in match.group("body").split(",") if t.strip()]
  try:
    data = bytes(int(t, 0) for t in tokens)
  except ValueError as e:
    raise errors.ConfigError(f"array {name}[] holds a value that is not a byte: {e}") from e
  length = re.search(r"\b" + re.escape(name) + r"_len\s*=\s*(\d+)\s*;", source_text)
  if length and int(length.group(1)) != len(data):
    raise errors.ConfigError(
        f"{name}_len = {length.group(1)} but the array holds {len(data)} bytes")
  return data

"""TFLite model as a C/C++ byte array, laid out like the TFLite Micro examples.

The source defines `alignas(16) const unsigned char g_<model>_model[] = {...};`
(12 bytes a line) and `const int g_<model>_model_len = N;`; the header declares
both `extern` and, given an arena size, defines `constexpr int
k<Model>TensorArenaSize`. The names come from the model's name
(`array_name_for`). The source includes the header, so the `const` array gets
external linkage in C++. Compile the source as C++11 or later (for `alignas`).
"""

import os
import re

from tf_gtsrb import errors
from tf_gtsrb import io_utils
from tf_gtsrb.models import flatbuffer

BYTES_PER_LINE = 12
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# C11 and C++17/20 keywords and alternative operator names: never a variable name.
KEYWORDS = frozenset("""
    alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t
    char16_t char32_t class compl concept const consteval constexpr constinit const_cast
    continue co_await co_return co_yield decltype default delete do double dynamic_cast else
    enum explicit export extern false float for friend goto if inline int long mutable
    namespace new noexcept not not_eq nullptr operator or or_eq private protected public
    register reinterpret_cast requires restrict return short signed sizeof static
    static_assert static_cast struct switch template this thread_local throw true try typedef
    typeid typename union unsigned using virtual void volatile wchar_t while xor xor_eq
    _Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn _Static_assert
    _Thread_local main""".split())


def check_name(name, what):
  """ConfigError unless `name` is an identifier a C++ compiler accepts for a global."""
  if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
    raise errors.ConfigError(f"{what} {name!r} is not a valid C identifier")
  if name in KEYWORDS:
    raise errors.ConfigError(f"{what} {name!r} is a C/C++ keyword")
  if name.startswith("_") or "__" in name:
    raise errors.ConfigError(
        f"{what} {name!r} is reserved for the implementation (leading underscore or a "
        "double underscore)")


def array_name_for(model_name):
  """'traffic_sign_cnn_pruned_int8' -> 'g_traffic_sign_cnn_pruned_int8_model'.

  Characters that cannot be in a C identifier become '_'.
  """
  stem = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9]", "_", str(model_name))).strip("_")
  name = f"g_{stem}_model" if stem else "g_model"
  check_name(name, "array name")
  return name


def arena_constant_for(array_name):
  """'g_traffic_sign_cnn_int8_model' -> 'kTrafficSignCnnInt8TensorArenaSize' ('g_model' -> 'kTensorArenaSize')."""
  stem = array_name
  if stem.startswith("g_"):
    stem = stem[2:]
  if stem == "model" or stem.endswith("_model"):
    stem = stem[:-len("model")]
  camel = "".join(p[0].upper() + p[1:] for p in stem.split("_") if p)
  return f"k{camel}TensorArenaSize"


def include_guard(header_file):
  """'model_int8.h' -> 'MODEL_INT8_H_'."""
  return re.sub(r"[^A-Za-z0-9]", "_", os.path.basename(header_file)).upper() + "_"


def to_c_files(tflite_bytes, name="g_model", header_file=None, arena=None):
  """Returns (header_text, source_text) holding `tflite_bytes` as array `name`.

  `header_file` is the header's file name the source includes (default
  '<name>.h'). `arena` ({'bytes', 'note'}, e.g. `micro.tensor_arena(...)`)
  adds `constexpr int k<Model>TensorArenaSize` to the header, `note` as its
  comment.
  """
  check_name(name, "array name")
  flatbuffer.check_identifier(tflite_bytes, f"C array {name}")
  data = bytes(tflite_bytes)
  header_file = header_file or f"{name}.h"
  guard = include_guard(header_file)
  arena_lines = ""
  if arena is not None:
    arena_lines = (
        "\n"
        f"// Tensor arena for TFLite Micro: {arena['note']}.\n"
        f"constexpr int {arena_constant_for(name)} = {int(arena['bytes'])};\n")
  header = (
      f"// TFLite model as a C array: {len(data)} bytes.\n"
      f"#ifndef {guard}\n"
      f"#define {guard}\n"
      "\n"
      f"extern const unsigned char {name}[];\n"
      f"extern const int {name}_len;\n"
      f"{arena_lines}"
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


def write_c_files(tflite_bytes, out_dir, name=None, file_stem=None, arena=None):
  """Writes '<file_stem>.h' and '<file_stem>.cc' atomically; returns (header_path, source_path).

  `name` defaults to `array_name_for(file_stem)`, `file_stem` to `name`; `arena`
  as in `to_c_files`.
  """
  if name is None and file_stem is None:
    raise errors.ConfigError("write_c_files needs an array name or a file stem")
  name = name or array_name_for(file_stem)
  file_stem = file_stem or name
  if not isinstance(file_stem, str) or not _IDENTIFIER.fullmatch(file_stem):
    raise errors.ConfigError(f"file stem {file_stem!r} is not a valid C identifier")
  header, source = to_c_files(tflite_bytes, name, header_file=f"{file_stem}.h", arena=arena)
  header_path = os.path.join(out_dir, f"{file_stem}.h")
  source_path = os.path.join(out_dir, f"{file_stem}.cc")
  io_utils.write_text(header_path, header)
  io_utils.write_text(source_path, source)
  return header_path, source_path


def parse_c_array(source_text, name="g_model"):
  """Reads the bytes of array `name` back from C source; checks `<name>_len` if present.

  Raises ConfigError when the array is missing or its length disagrees.
  """
  check_name(name, "array name")
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

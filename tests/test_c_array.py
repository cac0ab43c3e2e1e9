"""The C array export (`c_array`) without converting a model: names, exact text, bytes read back.

Expected texts are written out by hand; bytes are read back from the generated C with a regex
of this file, not only with `parse_c_array`.
"""

import os
import re

import pytest

from tf_gtsrb import errors
from tf_gtsrb.export import c_array

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
# Smallest input `to_c_files` accepts: 'TFL3' at bytes 4..8. 14 bytes: a full line of 12, then 2.
DATA = b"\x1c\x00\x00\x00TFL3\x00\x01\x0a\xff\x80\x7f"

SOURCE = """\
// TFLite model as a C array: 14 bytes.
#include "model_int8.h"

// Aligned to 16 bytes: TFLite Micro reads the flatbuffer in place.
alignas(16) const unsigned char g_model[] = {
    0x1c, 0x00, 0x00, 0x00, 0x54, 0x46, 0x4c, 0x33, 0x00, 0x01, 0x0a, 0xff,
    0x80, 0x7f,
};
const int g_model_len = 14;
"""

HEADER = """\
// TFLite model as a C array: 14 bytes.
#ifndef MODEL_INT8_H_
#define MODEL_INT8_H_

extern const unsigned char g_model[];
extern const int g_model_len;

#endif  // MODEL_INT8_H_
"""

HEADER_WITH_ARENA = """\
// TFLite model as a C array: 14 bytes.
#ifndef G_SIGN_MODEL_H_
#define G_SIGN_MODEL_H_

extern const unsigned char g_sign_model[];
extern const int g_sign_model_len;

// Tensor arena for TFLite Micro: measured + 10%.
constexpr int kSignTensorArenaSize = 4096;

#endif  // G_SIGN_MODEL_H_
"""


def _hex_bytes(source):
  """The bytes between '{' and '}' of a C source, read with this test's own regex."""
  body = source[source.index("{") + 1:source.index("}")]
  return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2}),", body))


@pytest.mark.parametrize("name", ["g_model", "a", "Z9", "g_sign_model", "model_", "x1_y2"])
def test_valid_names_pass(name):
  c_array.check_name(name, "array name")


@pytest.mark.parametrize("name, message", [
    ("", "not a valid C identifier"), ("1abc", "not a valid C identifier"),
    ("a-b", "not a valid C identifier"), ("a b", "not a valid C identifier"),
    ("a.b", "not a valid C identifier"), ("g_model\n", "not a valid C identifier"),
    (None, "not a valid C identifier"),
    (7, "not a valid C identifier"),
    ("alignas", "keyword"), ("int", "keyword"), ("class", "keyword"), ("xor_eq", "keyword"),
    ("_Thread_local", "keyword"), ("main", "keyword"),
    ("_x", "reserved"), ("_", "reserved"), ("a__b", "reserved"), ("g_model__", "reserved")])
def test_bad_names_are_refused_with_the_reason(name, message):
  with pytest.raises(errors.ConfigError, match=re.escape(message)) as e:
    c_array.check_name(name, "array name")
  assert str(e.value).startswith(f"array name {name!r} ")


def test_reserved_name_message():
  with pytest.raises(errors.ConfigError) as e:
    c_array.check_name("a__b", "file stem")
  assert str(e.value) == ("file stem 'a__b' is reserved for the implementation (leading "
                          "underscore or a double underscore)")


@pytest.mark.parametrize("model_name, expected", [
    ("traffic_sign_cnn_pruned_int8", "g_traffic_sign_cnn_pruned_int8_model"),
    ("my-model v2", "g_my_model_v2_model"),
    ("a__b", "g_a_b_model"),
    ("--a..b--", "g_a_b_model"),
    ("_a_", "g_a_model"),
    ("X-ray_X", "g_X_ray_X_model"),
    ("model.tflite", "g_model_tflite_model"),
    ("Sign", "g_Sign_model"),
    ("caf\u00e9", "g_caf_model"),
    (5, "g_5_model"),
    ("", "g_model"),
    ("!!!", "g_model"),
])
def test_array_name_for(model_name, expected):
  assert c_array.array_name_for(model_name) == expected


@pytest.mark.parametrize("array_name, expected", [
    ("g_model", "kTensorArenaSize"),
    ("model", "kTensorArenaSize"),
    ("g_traffic_sign_cnn_int8_model", "kTrafficSignCnnInt8TensorArenaSize"),
    ("g_sign_model", "kSignTensorArenaSize"),
    ("sign_model", "kSignTensorArenaSize"),
    ("g_mymodel", "kMymodelTensorArenaSize"),
    ("g_x_y", "kXYTensorArenaSize"),
    ("g_a__b_model", "kABTensorArenaSize"),
    ("gx_model", "kGxTensorArenaSize"),
    ("foo", "kFooTensorArenaSize"),
])
def test_arena_constant_for(array_name, expected):
  assert c_array.arena_constant_for(array_name) == expected


@pytest.mark.parametrize("header_file, expected", [
    ("model_int8.h", "MODEL_INT8_H_"), ("g_model.h", "G_MODEL_H_"),
    ("dir/sub/model-v2.h", "MODEL_V2_H_"), ("a b.hpp", "A_B_HPP_"),
    ("Model_Int8.H", "MODEL_INT8_H_")])
def test_include_guard(header_file, expected):
  assert c_array.include_guard(header_file) == expected


def test_to_c_files_writes_exactly_the_tflite_micro_layout():
  header, source = c_array.to_c_files(DATA, "g_model", header_file="model_int8.h")
  assert source == SOURCE
  assert header == HEADER
  assert _hex_bytes(source) == DATA


def test_to_c_files_defaults_and_arena():
  header, source = c_array.to_c_files(
      bytearray(DATA), "g_sign_model", arena={"bytes": 4096.0, "note": "measured + 10%"})
  assert header == HEADER_WITH_ARENA
  assert '#include "g_sign_model.h"\n' in source
  assert "alignas(16) const unsigned char g_sign_model[] = {\n" in source
  assert source.endswith("};\nconst int g_sign_model_len = 14;\n")
  assert _hex_bytes(source) == DATA
  # Default name.
  header, source = c_array.to_c_files(memoryview(DATA))
  assert header == HEADER.replace("MODEL_INT8_H_", "G_MODEL_H_")
  assert source == SOURCE.replace("model_int8.h", "g_model.h")


@pytest.mark.parametrize("length, rows", [(8, [8]), (12, [12]), (13, [12, 1]), (24, [12, 12]),
                                          (25, [12, 12, 1])])
def test_rows_hold_twelve_bytes(length, rows):
  data = (b"\x00\x01\x02\x03TFL3" + bytes(range(200, 256)))[:length]
  _, source = c_array.to_c_files(data)
  lines = [line for line in source.splitlines() if line.startswith("    0x")]
  assert [line.count("0x") for line in lines] == rows
  assert all(line.endswith(",") for line in lines)
  assert _hex_bytes(source) == data
  assert f"// TFLite model as a C array: {length} bytes.\n" in source
  assert source.endswith(f"const int g_model_len = {length};\n")


def test_to_c_files_refuses_bad_names_and_non_tflite_bytes():
  with pytest.raises(errors.ConfigError, match="array name 'int' is a C/C"):
    c_array.to_c_files(DATA, "int")
  with pytest.raises(errors.ModelError, match="C array g_model: not a TFLite"):
    c_array.to_c_files(b"\x00" * 4 + b"TFL2" + b"\x00" * 4, "g_model")
  with pytest.raises(errors.ModelError, match="C array g_x: TFLite model file is empty"):
    c_array.to_c_files(b"", "g_x")


def test_write_c_files_with_name_and_stem(tmp_path):
  header_path, source_path = c_array.write_c_files(DATA, str(tmp_path), "g_model",
                                                   file_stem="model_int8")
  assert header_path == os.path.join(str(tmp_path), "model_int8.h")
  assert source_path == os.path.join(str(tmp_path), "model_int8.cc")
  assert (tmp_path / "model_int8.h").read_text() == HEADER
  assert (tmp_path / "model_int8.cc").read_text() == SOURCE
  assert sorted(os.listdir(tmp_path)) == ["model_int8.cc", "model_int8.h"]


def test_write_c_files_derives_the_missing_name_or_stem(tmp_path):
  # Stem only: the array name comes from the stem.
  header_path, source_path = c_array.write_c_files(DATA, str(tmp_path), file_stem="sign")
  assert os.path.basename(header_path) == "sign.h" and os.path.basename(source_path) == "sign.cc"
  source = (tmp_path / "sign.cc").read_text()
  assert "alignas(16) const unsigned char g_sign_model[] = {\n" in source
  assert '#include "sign.h"\n' in source
  assert "#ifndef SIGN_H_\n" in (tmp_path / "sign.h").read_text()
  # Name only: the files are named after the array.
  header_path, source_path = c_array.write_c_files(
      DATA, str(tmp_path), name="g_sign_model", arena={"bytes": 4096, "note": "measured + 10%"})
  assert os.path.basename(header_path) == "g_sign_model.h"
  assert os.path.basename(source_path) == "g_sign_model.cc"
  assert (tmp_path / "g_sign_model.h").read_text() == HEADER_WITH_ARENA
  assert _hex_bytes((tmp_path / "g_sign_model.cc").read_text()) == DATA


def test_write_c_files_refuses_missing_or_bad_names(tmp_path):
  with pytest.raises(errors.ConfigError,
                     match="^write_c_files needs an array name or a file stem$"):
    c_array.write_c_files(DATA, str(tmp_path))
  for stem in ("1model", "model-int8", "model int8"):
    with pytest.raises(errors.ConfigError, match="file stem .* is not a valid C identifier"):
      c_array.write_c_files(DATA, str(tmp_path), name="g_model", file_stem=stem)
  with pytest.raises(errors.ConfigError, match="array name"):
    c_array.write_c_files(DATA, str(tmp_path), name="int", file_stem="model")
  assert os.listdir(tmp_path) == []


def test_released_c_files_are_what_write_c_files_makes(tmp_path):
  """The shipped .h/.cc regenerate byte for byte from the shipped .tflite and arena."""
  stem = "traffic_sign_cnn_pruned_int8"
  models = os.path.join(ROOT, "models")
  with open(os.path.join(models, stem + ".tflite"), "rb") as f:
    data = f.read()
  with open(os.path.join(models, stem + ".h")) as f:
    released_header = f.read()
  with open(os.path.join(models, stem + ".cc")) as f:
    released_source = f.read()
  note, size = re.search(r"// Tensor arena for TFLite Micro: (.*)\.\nconstexpr int "
                         r"kTrafficSignCnnPrunedInt8TensorArenaSize = (\d+);",
                         released_header).groups()
  c_array.write_c_files(data, str(tmp_path), file_stem=stem,
                        arena={"bytes": int(size), "note": note})
  assert (tmp_path / (stem + ".h")).read_text() == released_header
  assert (tmp_path / (stem + ".cc")).read_text() == released_source
  assert _hex_bytes(released_source) == data


def test_parse_c_array_reads_what_to_c_files_wrote():
  _, source = c_array.to_c_files(DATA, "g_model")
  assert c_array.parse_c_array(source) == DATA
  assert c_array.parse_c_array(source, "g_model") == DATA


@pytest.mark.parametrize("source, name, expected", [
    ("const unsigned char g_model[] = {0x01, 2, 0X03, 0xff, 0};", "g_model",
     b"\x01\x02\x03\xff\x00"),
    ("unsigned char g_m [ ] = {\n  0x10 ,0x20,\n};\nconst int g_m_len = 2;", "g_m",
     b"\x10\x20"),
    ("char g_m[]={};", "g_m", b""),
    ("char g_a[] = {1, 2, 3}; char g_b[] = {4, 5};\nconst int g_b_len = 2;", "g_a",
     b"\x01\x02\x03"),
    ("char g_a[] = {1, 2, 3}; char g_b[] = {4, 5};\nconst int g_b_len = 2;", "g_b", b"\x04\x05"),
    ("char xg_a[] = {9}; char g_a[] = {7};", "g_a", b"\x07"),
    ("char g_a[] = {7};\nconst int g_a_len2 = 5;", "g_a", b"\x07"),
])
def test_parse_c_array_formats(source, name, expected):
  assert c_array.parse_c_array(source, name) == expected


@pytest.mark.parametrize("source, name, message", [
    ("char xg_a[] = {9};", "g_a", "no array g_a[] found"),
    ("char g_a = 9;", "g_a", "no array g_a[] found"),
    ("char g_a[] = {1, 256};", "g_a", "array g_a[] holds a value that is not a byte"),
    ("char g_a[] = {1, 0xzz};", "g_a", "array g_a[] holds a value that is not a byte"),
    ("char g_a[] = {1, -1};", "g_a", "array g_a[] holds a value that is not a byte"),
    ("char g_a[] = {1, 2};\nconst int g_a_len = 3;", "g_a",
     "g_a_len = 3 but the array holds 2 bytes"),
    ("char g_a[] = {1, 2};\nconst int g_a_len=1;", "g_a", "g_a_len = 1 but the array holds 2"),
    ("char int[] = {1};", "int", "array name 'int' is a C/C"),
])
def test_parse_c_array_errors(source, name, message):
  with pytest.raises(errors.ConfigError, match=re.escape(message)):
    c_array.parse_c_array(source, name)

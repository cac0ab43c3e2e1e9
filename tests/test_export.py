"""Tests of tf_gtsrb.export: TFLite conversion, integer checks, C arrays, labels."""

import os

import tf_gtsrb  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import numpy as np
import pytest

from tf_gtsrb import errors
from tf_gtsrb.data.class_names import CLASS_NAMES
from tf_gtsrb.evaluation import complexity
from tf_gtsrb.export import c_array
from tf_gtsrb.models import flatbuffer
from tf_gtsrb.export import labels
from tf_gtsrb.export import tflite
from tf_gtsrb.keras import keras
from tf_gtsrb.models import io as model_io
import synthetic
import tool_runner

SIZE = 32


@pytest.fixture(scope="module")
def model():
  return synthetic.tiny_cnn(input_size=SIZE)


@pytest.fixture(scope="module")
def images():
  # No pixel is 0 or 255: conversion must still reach the full input range.
  return synthetic.blocky_images(64, SIZE, low=10, high=245)


def test_int8_model_is_fully_integer(int8_bytes):
  tflite.check_fully_int8(int8_bytes)
  assert tflite.integer_problems(int8_bytes) == []
  assert tflite.float_tensors(int8_bytes) == []
  ops = tflite.list_ops(int8_bytes)
  assert ops == sorted(ops)
  assert {"CONV_2D", "MAX_POOL_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"} <= set(ops)
  assert "QUANTIZE" not in ops and "DEQUANTIZE" not in ops


def test_int8_input_is_pixel_minus_128(int8_bytes):
  io = tflite.io_details(int8_bytes)
  (inp,), (out,) = io["inputs"], io["outputs"]
  assert inp["dtype"] == "int8" and out["dtype"] == "int8"
  assert inp["shape"] == [1, SIZE, SIZE, 3]
  assert inp["shape_signature"][0] == -1
  assert inp["scale"] == pytest.approx(1 / 255, rel=1e-6)
  assert inp["zero_point"] == -128
  assert out["shape"] == [1, 43]
  assert tflite.input_quantization_ok(int8_bytes)


def test_uint8_io(model, images):
  data = tflite.convert(model, "int8", images, io_type="uint8")
  tflite.check_fully_int8(data)
  io = tflite.io_details(data)
  assert io["inputs"][0]["dtype"] == "uint8" and io["outputs"][0]["dtype"] == "uint8"
  assert io["inputs"][0]["scale"] == pytest.approx(1 / 255, rel=1e-6)
  assert io["inputs"][0]["zero_point"] == 0


def test_uint8_interface_of_an_int8_model_predicts_exactly_the_same(int8_bytes, float_bytes,
                                                                    images):
  from tf_gtsrb.models import runners  # pylint: disable=g-import-not-at-top
  data = tflite.with_uint8_io(int8_bytes)
  tflite.check_fully_int8(data)
  io = tflite.io_details(data)
  assert [io["inputs"][0]["dtype"], io["outputs"][0]["dtype"]] == ["uint8", "uint8"]
  int8_io = tflite.io_details(int8_bytes)
  for end in ("inputs", "outputs"):
    assert io[end][0]["scale"] == int8_io[end][0]["scale"]
    assert io[end][0]["zero_point"] == int8_io[end][0]["zero_point"] + 128
  for reference in (False, True):
    np.testing.assert_array_equal(
        runners.TFLiteRunner(data, reference_kernels=reference).predict(images),
        runners.TFLiteRunner(int8_bytes, reference_kernels=reference).predict(images))
  with pytest.raises(errors.ModelError, match="needs one int8 input and one int8 output"):
    tflite.with_uint8_io(float_bytes, "float.tflite")


def test_check_fully_int8_rejects_float_model(float_bytes):
  assert tflite.float_tensors(float_bytes)
  with pytest.raises(errors.ModelError, match="float32"):
    tflite.check_fully_int8(float_bytes)
  io = tflite.io_details(float_bytes)
  assert io["inputs"][0]["dtype"] == "float32" and io["inputs"][0]["scale"] is None


@pytest.mark.parametrize("mode", ["float16", "dynamic"])
def test_other_modes_keep_float_io(model, mode):
  data = tflite.convert(model, mode)
  io = tflite.io_details(data)
  assert io["inputs"][0]["dtype"] == "float32" and io["outputs"][0]["dtype"] == "float32"
  if mode == "float16":
    assert "DEQUANTIZE" in tflite.list_ops(data)


def test_macs_and_params_from_flatbuffer(model, int8_bytes, float_bytes):
  assert tflite.count_macs(int8_bytes) == complexity.count_macs(model)
  assert tflite.count_macs(float_bytes) == complexity.count_macs(model)
  # Conv and dense kernels, plus biases (BN folds into conv biases; the converter
  # may drop an all-zero dense bias).
  kernels = 3 * 3 * (3 * 4 + 4 * 8 + 8 * 8 + 8 * 16) + 16 * 43
  biases = 4 + 8 + 8 + 16 + 43
  for data in (int8_bytes, float_bytes):
    assert kernels < tflite.count_params(data) <= kernels + biases


def test_with_full_range():
  images = synthetic.blocky_images(4, SIZE, low=30, high=200)
  full = tflite.with_full_range(images)
  assert full.min() == 0 and full.max() == 255
  assert np.count_nonzero(full != images) <= 6  # Two pixels of the first image.
  assert images.min() == 30  # The input is not modified.
  already = synthetic.blocky_images(4, SIZE, low=0, high=255)
  already[0, 0, 0, 0], already[0, 0, 0, 1] = 0, 255
  assert tflite.with_full_range(already) is already


def test_convert_rejects_bad_arguments(model, images):
  with pytest.raises(errors.ConfigError, match="mode"):
    tflite.convert(model, "int4", images)
  with pytest.raises(errors.ConfigError, match="io_type"):
    tflite.convert(model, "int8", images, io_type="int16")
  with pytest.raises(errors.ConfigError, match="representative"):
    tflite.convert(model, "int8")
  with pytest.raises(errors.ConfigError, match="non-empty"):
    tflite.convert(model, "int8", images[:0])
  with pytest.raises(errors.ConfigError, match="uint8"):
    tflite.convert(model, "int8", images.astype(np.float32) / 255)
  with pytest.raises(errors.ConfigError, match="expects"):
    tflite.convert(model, "int8", np.zeros((2, 16, 16, 3), np.uint8))


def test_convert_rejects_non_image_model():
  inputs = keras.Input((10,))
  dense = keras.Model(inputs, keras.layers.Dense(43, activation="softmax")(inputs))
  with pytest.raises(errors.ModelError, match="image"):
    tflite.convert(dense, "float32")


def test_save_and_load_tflite(tmp_path, int8_bytes):
  path = str(tmp_path / "m.tflite")
  tflite.save_tflite(int8_bytes, path)
  assert tflite.load_tflite(path) == int8_bytes
  assert [p for p in os.listdir(tmp_path) if p != "m.tflite"] == []
  with pytest.raises(errors.ModelError, match="TFL3"):
    tflite.save_tflite(b"not a model at all", str(tmp_path / "bad.tflite"))
  assert not (tmp_path / "bad.tflite").exists()
  with pytest.raises(errors.ModelError, match="not found"):
    tflite.load_tflite(str(tmp_path / "missing.tflite"))


def test_parse_rejects_truncated_and_foreign_bytes(int8_bytes):
  for data, message in ((b"", "empty"), (b"PK\x03\x04" + b"\0" * 100, "TFL3"),
                        (int8_bytes[:len(int8_bytes) // 2], "truncated"),
                        (int8_bytes[:-1], "truncated")):
    with pytest.raises(errors.ModelError, match=message):
      flatbuffer.parse(data, "x.tflite")


def test_c_array_round_trip(int8_bytes):
  header, source = c_array.to_c_files(int8_bytes, "g_model", header_file="model_int8.h")
  assert c_array.parse_c_array(source, "g_model") == int8_bytes
  assert f"const int g_model_len = {len(int8_bytes)};" in source
  assert "alignas(16) const unsigned char g_model[] = {" in source
  assert '#include "model_int8.h"' in source
  rows = [line for line in source.splitlines() if line.startswith("    0x")]
  assert all(line.count("0x") == 12 for line in rows[:-1])
  assert 1 <= rows[-1].count("0x") <= 12
  assert len(rows) == -(-len(int8_bytes) // 12)
  for line in ("#ifndef MODEL_INT8_H_", "#define MODEL_INT8_H_",
               "extern const unsigned char g_model[];", "extern const int g_model_len;",
               "#endif  // MODEL_INT8_H_"):
    assert line in header


def test_write_c_files(tmp_path, int8_bytes):
  header_path, source_path = c_array.write_c_files(int8_bytes, str(tmp_path), "g_sign_model",
                                                   file_stem="model_int8")
  assert os.path.basename(header_path) == "model_int8.h"
  with open(source_path) as f:
    assert c_array.parse_c_array(f.read(), "g_sign_model") == int8_bytes
  with pytest.raises(errors.ConfigError, match="identifier"):
    c_array.to_c_files(int8_bytes, "1bad-name")


def test_parse_c_array_detects_wrong_length():
  source = "alignas(16) const unsigned char g_model[] = {\n    0x01, 0x02,\n};\n" \
           "const int g_model_len = 3;\n"
  with pytest.raises(errors.ConfigError, match="g_model_len"):
    c_array.parse_c_array(source)
  with pytest.raises(errors.ConfigError, match="no array"):
    c_array.parse_c_array(source, "other")


def test_labels_round_trip(tmp_path):
  path = labels.write_labels(str(tmp_path))
  assert os.path.basename(path) == "labels.txt"
  with open(path) as f:
    lines = f.read().splitlines()
  assert lines == list(CLASS_NAMES) and len(lines) == 43
  assert labels.read_labels(path) == CLASS_NAMES


def test_read_labels_rejects_bad_files(tmp_path):
  short = tmp_path / "short.txt"
  short.write_text("\n".join(CLASS_NAMES[:42]) + "\n")
  with pytest.raises(errors.DataError, match="expected 43"):
    labels.read_labels(str(short))
  blank = tmp_path / "blank.txt"
  blank.write_text("\n".join(CLASS_NAMES[:5] + ("",) + CLASS_NAMES[6:]) + "\n")
  with pytest.raises(errors.DataError, match="line 6"):
    labels.read_labels(str(blank))
  with pytest.raises(errors.DataError, match="not found"):
    labels.read_labels(str(tmp_path / "missing.txt"))


def _tool(*args):
  return tool_runner.run_tool("convert", *args)


def test_convert_tool_rejects_bad_flags(tmp_path):
  done = _tool(f"--model={tmp_path}/missing.keras")
  assert done.returncode == 1 and "model file not found" in done.stderr
  path = str(tmp_path / "m.keras")
  open(path, "wb").close()
  done = _tool(f"--model={path}", "--modes=int8")
  assert done.returncode == 1 and "--data_dir is required" in done.stderr
  done = _tool(f"--model={path}", "--modes=float32,int3")
  assert done.returncode == 1 and "int3" in done.stderr


def test_convert_tool_end_to_end(tmp_path, model, tiny_data_dir):
  model_path = str(tmp_path / "model.keras")
  model_io.save_model(model, model_path)
  out = tmp_path / "tflite"
  done = _tool(f"--model={model_path}", f"--data_dir={tiny_data_dir}", f"--output_dir={out}",
               "--modes=int8", "--num_calibration_images=32")
  assert done.returncode == 0, done.stderr[-3000:]
  names = set(os.listdir(out))
  assert {"model_int8.tflite", "model_int8.cc", "model_int8.h",
          "micro_ops.txt", "labels.txt", "conversion.json"} <= names
  from tf_gtsrb import io_utils  # pylint: disable=g-import-not-at-top
  summary = io_utils.read_json(str(out / "conversion.json"))
  int8 = summary["models"]["int8"]
  assert int8["fully_integer"] and list(summary["models"]) == ["int8"]
  assert int8["io"]["inputs"][0]["zero_point"] == -128
  assert int8["arena"]["estimate_bytes"] > 0
  with open(out / "model_int8.cc") as f:
    assert c_array.parse_c_array(f.read(), c_array.array_name_for("model_int8")) == tflite.load_tflite(str(out / "model_int8.tflite"))
  assert "int8 input quantization" in done.stdout
  assert "converting model to int8 (calibrating on 32 images)" in done.stdout
  from tf_gtsrb.data import archives  # pylint: disable=g-import-not-at-top
  assert summary["inputs"]["model"] == {"path": model_path,
                                        "sha256": archives.sha256sum(model_path)}
  assert len(summary["inputs"]["calibration_images"]) == 64
  assert int8["sha256"] == archives.sha256sum(str(out / "model_int8.tflite"))


def test_a_failed_export_leaves_the_previous_set_whole(tmp_path, model, images, monkeypatch):
  from tf_gtsrb.export import export  # pylint: disable=g-import-not-at-top
  out = tmp_path / "tflite"
  out.mkdir()
  (out / "notes.txt").write_text("mine")  # Not the export's: carried over by every export.
  export.export_model(model, str(out), ["int8", "float32"], images[:16])
  before = {name: (out / name).read_bytes() for name in os.listdir(out)}
  real_convert = tflite.convert

  def full_disk_on_float32(model, mode, *args, **kwargs):
    if mode == "float32":
      raise OSError(28, "No space left on device")
    return real_convert(model, mode, *args, **kwargs)

  monkeypatch.setattr(tflite, "convert", full_disk_on_float32)
  with pytest.raises(errors.GtsrbError, match="tflite: cannot write output: No space left"):
    export.export_model(model, str(out), ["int8", "float32"], images[16:32])  # New int8 first.
  assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before
  assert sorted(os.listdir(tmp_path)) == ["tflite"]  # No staging directory left.
  monkeypatch.setattr(tflite, "convert", real_convert)
  summary = export.export_model(model, str(out), ["int8"], images[16:32])
  assert (out / "notes.txt").read_text() == "mine"
  assert summary["models"]["int8"]["path"] == str(out / "model_int8.tflite")


def test_quantization_aware_model_converts_to_full_int8(model, images):
  from tf_gtsrb.compression import quantization  # pylint: disable=g-import-not-at-top
  qat = quantization.quantize_aware(model)
  full_range = tflite.with_full_range(images)
  qat.compile(optimizer=keras.optimizers.SGD(1e-3), loss="sparse_categorical_crossentropy")
  # One step sets the input quantizer's range to what it saw: [0, 1].
  qat.train_on_batch(full_range / 255.0, np.arange(len(images)) % 43)
  data = tflite.convert(qat, "int8", images)
  tflite.check_fully_int8(data)
  inp = tflite.io_details(data)["inputs"][0]
  assert inp["scale"] == pytest.approx(1 / 255, rel=1e-6) and inp["zero_point"] == -128

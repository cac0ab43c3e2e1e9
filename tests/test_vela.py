"""Vela (Arm Ethos-U NPU compiler) figures for an INT8 model."""

import gzip
import os

import pytest

from tf_gtsrb import errors
from tf_gtsrb.benchmark import vela

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
INT8 = os.path.join(ROOT, "models", "traffic_sign_cnn_pruned_int8.tflite")

pytestmark = pytest.mark.skipif(not vela.is_available(), reason=vela.NOT_INSTALLED)


@pytest.mark.slow
def test_released_model_compiles_entirely_for_the_npu(tmp_path):
  result = vela.benchmark(INT8, str(tmp_path), accelerators=("ethos-u55-128",))
  with open(INT8, "rb") as f:
    data = f.read()
  assert result["size_bytes"] == len(data)
  assert result["gzip_size_bytes"] == len(gzip.compress(data, mtime=0)) or (
      0 < result["gzip_size_bytes"] < len(data))
  u55 = result["targets"]["ethos-u55-128"]
  assert u55["cpu_operators"] == 0 and u55["cpu_ops"] == [] and u55["npu_share"] == 1.0
  assert u55["cycles"] > 0 and u55["inference_ms"] == pytest.approx(
      1000 * u55["cycles"] / u55["clock_hz"], rel=0.01)
  assert 0 < u55["encoded_weight_bytes"] <= u55["original_weight_bytes"]
  assert u55["flash_bytes"] > u55["encoded_weight_bytes"] and u55["sram_bytes"] > 0
  assert os.path.isfile(u55["vela_model"])
  assert "ethos-u55-128" in vela.markdown_table(result)


def test_unknown_accelerator_is_a_config_error():
  with pytest.raises(errors.ConfigError, match="ethos-u99"):
    vela.check_accelerators(["ethos-u99"])

"""Attaches TFLite metadata to the released models in place and regenerates the C array.

The weights are untouched (the tests check predictions are unchanged); what
`gtsrb-convert` now does for every new conversion, applied to real31's files:

  python results/experiments/attach_metadata.py && gtsrb-release-manifest --models_dir=models
"""

import os

from tf_gtsrb import io_utils
from tf_gtsrb.export import c_array
from tf_gtsrb.export import metadata
from tf_gtsrb.export import micro

MODELS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "models")

for stem in ("traffic_sign_cnn_float32", "traffic_sign_cnn_pruned_int8"):
  path = os.path.join(MODELS, stem + ".tflite")
  with open(path, "rb") as f:
    data = f.read()
  if metadata.metadata_buffer(data, path) is None:
    data = metadata.add_metadata(data, metadata.ModelInfo(name=stem), source=path)
    with io_utils.atomic_write(path, "wb") as f:
      f.write(data)
  print(f"{path}: {len(data)} bytes with metadata")
  if stem.endswith("int8"):
    arena = micro.tensor_arena(data)
    header, source = c_array.write_c_files(data, MODELS, file_stem=stem, arena=arena)
    print(f"wrote {header}, {source}; arena {arena['note']}")

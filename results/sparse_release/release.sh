#!/bin/sh
# The sparse NPU variant beside the released INT8 model (run from the repository root).
# 1. Magnitude pruning to 50% zeros, 16 clusters per kernel, prune- and cluster-preserving QAT
#    of the released INT8 model (rebuilt in float), distilled from the release's three teachers
#    (declared before scoring; about 21 minutes on 2 cores beside another training):
python results/experiments/sparse_release.py runs/gtsrb runs/sparse/s50c16d 0.5 16 6 2 train \
  results/teachers/real14_swa.keras,results/teachers/real3_swa_float32.tflite,results/teachers/real17_float32.tflite
# 2. Its own metadata, as every released model has:
python -c "
from tf_gtsrb.export import metadata, tflite
data = tflite.load_tflite('runs/sparse/s50c16d/model_int8.tflite')
name = 'traffic_sign_cnn_pruned_sparse_int8'
tflite.save_tflite(metadata.add_metadata(data, metadata.ModelInfo(name=name)), f'models/{name}.tflite')"
# 3. Both INT8 models on the 12,630 test images and through Vela for three Ethos-U NPUs:
gtsrb-benchmark-tflite --models=released_int8=models/traffic_sign_cnn_pruned_int8.tflite,sparse_int8=models/traffic_sign_cnn_pruned_sparse_int8.tflite \
  --data_dir=runs/gtsrb --output_dir=results/sparse_release/benchmark \
  --runtimes=litert_reference_kernels,tflite_micro --npu=ethos-u55-128,ethos-u55-256,ethos-u65-256 \
  --latency_rounds=100 --nomemory --html=none
# 4. The Ethos-U55-128 builds are released beside their source models:
cp results/sparse_release/benchmark/vela/released_int8/traffic_sign_cnn_pruned_int8_vela_u55_128.tflite models/
cp results/sparse_release/benchmark/vela/sparse_int8/traffic_sign_cnn_pruned_sparse_int8_vela_u55_128.tflite models/

#!/usr/bin/env bash
# AlexNet (configs/train/alexnet.flags, trained into runs/alexnet) to float32 and full-INT8
# TFLite, scored on the 12,630 official test images with LiteRT; logs beside this script.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/alexnet
gtsrb-evaluate --model=runs/alexnet/model.keras --data_dir=runs/gtsrb --split=validation \
  --output_dir=runs/alexnet/eval_validation > $out/evaluate_validation.log 2>&1
gtsrb-evaluate --model=runs/alexnet/model.keras --data_dir=runs/gtsrb --split=test \
  --output_dir=runs/alexnet/eval_test > $out/evaluate_test.log 2>&1
gtsrb-convert --model=runs/alexnet/model.keras --data_dir=runs/gtsrb --modes=int8,float32 \
  --output_dir=runs/alexnet/tflite --noc_array > $out/convert.log 2>&1
gtsrb-benchmark-tflite --data_dir=runs/gtsrb --split=test --output_dir=runs/alexnet/bench \
  --models="AlexNet (TFLite float32)=runs/alexnet/tflite/model_float32.tflite,AlexNet (TFLite INT8)=runs/alexnet/tflite/model_int8.tflite" \
  --agreement="AlexNet (TFLite INT8),AlexNet (TFLite float32)" --min_agreement=0.99 \
  --latency_rounds=50 --warmup=5 --nomemory --html=none > $out/benchmark.log 2>&1
cp runs/alexnet/bench/benchmark.json runs/alexnet/bench/benchmark.md $out/
cp runs/alexnet/tflite/conversion.json $out/

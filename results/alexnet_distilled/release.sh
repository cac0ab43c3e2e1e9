#!/usr/bin/env bash
# AlexNet distilled (configs/train/alexnet_distilled.flags, trained into runs/alexnet_distilled):
# validation first (the release rule in the flagfile), then float32 and full-INT8 TFLite scored
# on the 12,630 official test images with LiteRT and TFLite Micro; logs beside this script.
set -euo pipefail
cd "$(dirname "$0")/../.."
run=runs/alexnet_distilled
out=results/alexnet_distilled
gtsrb-evaluate --model=$run/model.keras --data_dir=runs/gtsrb --split=validation \
  --output_dir=$run/eval_validation > $out/evaluate_validation.log 2>&1
gtsrb-convert --model=$run/model.keras --data_dir=runs/gtsrb --modes=int8,float32 \
  --output_dir=$run/tflite --noc_array > $out/convert.log 2>&1
gtsrb-benchmark-tflite --data_dir=runs/gtsrb --split=test --output_dir=$run/bench \
  --models="AlexNet distilled (TFLite float32)=$run/tflite/model_float32.tflite,AlexNet distilled (TFLite INT8)=$run/tflite/model_int8.tflite" \
  --agreement="AlexNet distilled (TFLite INT8),AlexNet distilled (TFLite float32)" --min_agreement=0.99 \
  --latency_rounds=50 --warmup=5 --nomemory --html=none > $out/benchmark.log 2>&1
cp $run/bench/benchmark.json $run/bench/benchmark.md $run/tflite/conversion.json $run/history.json $out/

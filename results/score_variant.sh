#!/usr/bin/env bash
# Scores a trained TrafficSignCNN variant as the release is made: QAT as the release's (4 epochs
# at 1e-4, the release's three teachers, mixup), INT8 conversion, then LiteRT on the validation
# split and on the 12,630 official test images beside the released model, with the corruption
# suite on the seeded 1,000-image test subset. Copies the records into the results folder.
# Usage: results/score_variant.sh RUN_DIR RESULTS_DIR LABEL [more gtsrb-qat flags]
set -euo pipefail
cd "$(dirname "$0")/.."
run=$1 out=$2 label=$3
shift 3
teachers=results/teachers/real14_swa.keras,results/teachers/real3_swa_float32.tflite,results/teachers/real17_float32.tflite
gtsrb-qat --model=$run/model.keras --data_dir=runs/gtsrb --output_dir=$run/qat --epochs=4 \
  --learning_rate=1e-4 --batch_size=128 --teacher=$teachers --distill_mixup=1.0 "$@" \
  > $out/qat.log 2>&1
gtsrb-convert --model=$run/qat/qat.keras --data_dir=runs/gtsrb --modes=int8 \
  --output_dir=$run/tflite > $out/convert.log 2>&1
gtsrb-benchmark-tflite --data_dir=runs/gtsrb --split=validation --output_dir=$run/bench_validation \
  --models="$label (TFLite INT8)=$run/tflite/model_int8.tflite" --latency_rounds=10 \
  --nomemory --html=none > $out/validation.log 2>&1
gtsrb-benchmark-tflite --data_dir=runs/gtsrb --split=test --output_dir=$run/bench \
  --models="$label (TFLite INT8)=$run/tflite/model_int8.tflite,released (TFLite INT8)=models/traffic_sign_cnn_pruned_int8.tflite" \
  --latency_rounds=100 --warmup=5 --nomemory --html=none --corruptions --corruption_subset=1000 \
  > $out/benchmark.log 2>&1
cp $run/bench_validation/benchmark.md $out/validation.md
cp $run/qat/qat.json $run/bench/benchmark.json $run/bench/benchmark.md $run/tflite/conversion.json \
  $run/bench/robustness.json $run/history.json $out/

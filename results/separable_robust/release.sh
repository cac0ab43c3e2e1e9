#!/usr/bin/env bash
# The robust separable variant (configs/train/separable_robust.flags, trained into
# runs/separable_robust): the same QAT (with the training's noise and erasing, as the release
# recipe's fine-tunes now get them) and scoring as results/separable/release.sh, side by side
# with the released model on the same seeded 1,000-image corruption subset, so that its numbers
# compare with results/separable/robustness.json without retraining the separable model. The
# rule that decides (validation within 0.1 points of separable's, higher mean corruption
# accuracy) is in the flagfile, declared before scoring.
set -euo pipefail
cd "$(dirname "$0")/../.."
run=runs/separable_robust
out=results/separable_robust
teachers=results/teachers/real14_swa.keras,results/teachers/real3_swa_float32.tflite,results/teachers/real17_float32.tflite
gtsrb-qat --model=$run/model.keras --data_dir=runs/gtsrb --output_dir=$run/qat --epochs=4 \
  --learning_rate=1e-4 --batch_size=128 --teacher=$teachers --distill_mixup=1.0 \
  --noise_probability=0.5 --erase_probability=0.5 > $out/qat.log 2>&1
gtsrb-convert --model=$run/qat/qat.keras --data_dir=runs/gtsrb --modes=int8 \
  --output_dir=$run/tflite > $out/convert.log 2>&1
gtsrb-benchmark-tflite --data_dir=runs/gtsrb --split=validation --output_dir=$run/bench_validation \
  --models="separable robust (TFLite INT8)=$run/tflite/model_int8.tflite" --latency_rounds=10 \
  --nomemory --html=none > $out/validation.log 2>&1
gtsrb-benchmark-tflite --data_dir=runs/gtsrb --split=test --output_dir=$run/bench \
  --models="separable robust (TFLite INT8)=$run/tflite/model_int8.tflite,released (TFLite INT8)=models/traffic_sign_cnn_pruned_int8.tflite" \
  --latency_rounds=100 --warmup=5 --nomemory --html=none --corruptions --corruption_subset=1000 \
  > $out/benchmark.log 2>&1
cp $run/bench_validation/benchmark.md $out/validation.md
cp $run/qat/qat.json $run/bench/benchmark.json $run/bench/benchmark.md $run/tflite/conversion.json \
  $run/bench/robustness.json $run/history.json $out/

#!/usr/bin/env bash
# Baseline with and without robust augmentation (configs/train/{baseline12,robust12}.flags):
# trains both, then scores each on the validation split and on the corruption suite
# (2,000 seeded official test images) with gtsrb-evaluate. Logs beside this script.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/robustness_training
for recipe in baseline12 robust12; do
  gtsrb-train --flagfile=configs/train/$recipe.flags --verbose=2 > $out/train_$recipe.log 2>&1 &
done
wait
for recipe in baseline12 robust12; do
  gtsrb-evaluate --model=runs/robust/$recipe/model.keras --data_dir=runs/gtsrb --split=validation \
    --output_dir=runs/robust/$recipe/eval_validation > $out/validation_$recipe.log 2>&1
  gtsrb-evaluate --model=runs/robust/$recipe/model.keras --data_dir=runs/gtsrb --split=test \
    --output_dir=runs/robust/$recipe/eval_test --corruptions --corruption_subset=2000 \
    > $out/test_$recipe.log 2>&1
  cp runs/robust/$recipe/eval_test/robustness.json $out/robustness_$recipe.json
done

#!/usr/bin/env bash
# Stickers against random erasing (configs/train/{robust12,sticker12,sticker12_light}.flags):
# trains the three 12-epoch baselines at once, then scores each with gtsrb-evaluate on the
# validation split, clean and under the corruption suite (1,000 seeded validation images), which
# decides (rule in configs/train/sticker12.flags); then, to report, on the 12,630 test images and
# the suite on 1,000 seeded test images. Logs and robustness JSON beside this script.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/stickers
recipes="robust12 sticker12 sticker12_light"
if [[ "${1:-}" != "--score_only" ]]; then
  for recipe in $recipes; do
    gtsrb-train --flagfile=configs/train/$recipe.flags --verbose=2 > $out/train_$recipe.log 2>&1 &
  done
  wait
fi
for recipe in $recipes; do
  run=runs/robust/$recipe
  gtsrb-evaluate --model=$run/model.keras --data_dir=runs/gtsrb --split=validation \
    --output_dir=$run/eval_validation --corruptions --corruption_subset=1000 \
    > $out/validation_$recipe.log 2>&1
  cp $run/eval_validation/robustness.json $out/validation_robustness_$recipe.json
done
for recipe in $recipes; do
  run=runs/robust/$recipe
  gtsrb-evaluate --model=$run/model.keras --data_dir=runs/gtsrb --split=test \
    --output_dir=$run/eval_test --corruptions --corruption_subset=1000 > $out/test_$recipe.log 2>&1
  cp $run/eval_test/robustness.json $out/test_robustness_$recipe.json
done

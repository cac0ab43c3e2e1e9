#!/usr/bin/env bash
# The robust separable variant (configs/train/separable_robust.flags, trained into
# runs/separable_robust), scored as the separable one (results/score_variant.sh), its QAT with
# the training's noise and erasing (as the release recipe's fine-tunes now get them). Its
# corruption figures compare with results/separable/robustness.json: the same seeded subset,
# beside the same released model. The rule that decides (validation within 0.1 points of
# separable's, higher mean corruption accuracy) is in the flagfile, declared before scoring.
set -euo pipefail
cd "$(dirname "$0")/../.."
results/score_variant.sh runs/separable_robust results/separable_robust "separable robust" \
  --noise_probability=0.5 --erase_probability=0.5

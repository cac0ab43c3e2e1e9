#!/usr/bin/env bash
# The separable variant (configs/train/separable.flags, trained into runs/separable), scored as
# the release is made (results/score_variant.sh). The rule that decides (QAT validation accuracy
# against real30's 99.61%) is in the flagfile, declared before scoring.
set -euo pipefail
cd "$(dirname "$0")/../.."
results/score_variant.sh runs/separable results/separable separable

#!/usr/bin/env bash
# Long soaks, kept out of the test suite: the engine's property test with a large budget
# (MODEL_CASES cases of up to MODEL_MOVES world moves each; MODEL_SEED=N replays a run).
#
#   scripts/soak.sh [CASES] [MOVES]     (defaults: 20000 cases, 300 moves)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL_CASES=${1:-20000} MODEL_MOVES=${2:-300} \
  cargo test --release --lib engine::model -- --nocapture

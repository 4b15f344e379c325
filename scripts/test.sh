#!/usr/bin/env bash
# The whole test suite: unit and integration tests with the native watcher, then the
# integration tests again with the watcher off (DESIGN.md invariant 7: polling alone must
# be enough).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --all-targets
MAESTRO_WATCH=off cargo test --test it

#!/usr/bin/env bash
# Fuzz every target in fuzz/ (cargo-fuzz, libFuzzer) for SECONDS each, one after the other.
#
#   scripts/fuzz.sh            the long run: 600 s a target
#   scripts/fuzz.sh SECONDS    SECONDS a target
#   scripts/fuzz.sh --smoke    15 s a target (a build check more than a search)
#
# Installs cargo-fuzz when it is missing. cargo-fuzz passes nightly-only compiler flags;
# a stable rustc accepts them with RUSTC_BOOTSTRAP=1, so no nightly toolchain is needed.
# The first build takes about ten minutes on two cores (every dependency is built with
# coverage instrumentation), which is why CI does not fuzz: `cargo test` replays
# fuzz/corpus/ through the same checks instead (tests/it/fuzz_corpus.rs).
#
# Built without a sanitizer (`-s none`): maestro's own code has almost no unsafe, and what
# is hunted here (panics, arithmetic overflow, hangs, huge allocations) needs none; the
# targets then run about six times faster than under AddressSanitizer. Overflow checks
# and debug assertions are on.
#
# New inputs go to a scratch copy of each corpus; fuzz/corpus/ is only read. A crash,
# hang or out-of-memory input is saved under fuzz/artifacts/TARGET/ and named in the
# output: fix the library, add a regression test, and copy the input into
# fuzz/corpus/TARGET/ so `cargo test` replays it from then on. Replay one input with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run -s none TARGET FILE`.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  --smoke) secs=15 ;;
  "") secs=600 ;;
  *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS | --smoke]" >&2; exit 2 ;;
  *) secs=$1 ;;
esac

export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

targets=(plan_toml plan_toml_large plan_json records journal worker_journal)
declare -A dict=(
  [plan_toml]=plan_toml [plan_toml_large]=plan_toml [plan_json]=plan_json
  [records]=json [journal]=json [worker_journal]=json
)

cargo fuzz build -s none
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
  echo "== $t: $secs s"
  mkdir -p "$work/$t"
  # -timeout: an input that takes 10 s is a hang; -malloc_limit_mb: one allocation
  # of 512 MiB from inputs of a few KiB is a bug too.
  if ! cargo fuzz run -s none "$t" "$work/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
    -dict="fuzz/dict/${dict[$t]}.dict" -print_final_stats=1; then
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, $secs s each, no failure"

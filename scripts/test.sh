#!/usr/bin/env bash
# The whole test suite: unit and integration tests with the native (inotify) watcher, then
# the integration tests again with notify's poll watcher and with no watcher at all
# (docs/PROTOCOL.md rule 6: events are hints; rescanning alone must be enough), and last
# the fault sweep, which needs binaries built with the `fault-injection` feature (every
# write of a small run failed in turn, then resumed; src/fsio/fault.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --all-targets
MAESTRO_WATCH=poll cargo test --test it
MAESTRO_WATCH=off cargo test --test it
cargo test --features fault-injection --test it faults::every_failed_write

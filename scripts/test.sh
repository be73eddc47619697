#!/usr/bin/env bash
# The project's test command (README): unit, translation-fixture and gateway tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"

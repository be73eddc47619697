#!/usr/bin/env bash
# The project's test command (README): sets up what the tests need (scripts/test-deps.sh), then
# runs every test: unit, translation fixtures, the gateway end to end, Kubernetes mode against a
# real kube-apiserver, deploy assets, observability with a headless browser.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
cargo test --workspace --locked "$@"

#!/usr/bin/env bash
# Sluice vs nginx (and haproxy) on this machine, with ../shared/bench. Prints raw lines, medians and
# the sluice/nginx ratios. Examples:
#   bash bench/compare.sh                         # all peers, ROUNDS=2
#   PEERS=nginx ROUNDS=3 bash bench/compare.sh    # only against nginx
#   SCENARIOS=https-short bash bench/compare.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shared=${SHARED_BENCH:-$here/../../shared/bench}
[ -d "$shared" ] || { echo "bench harness not found at $shared (set SHARED_BENCH)" >&2; exit 1; }
cargo build --release -p sluice --manifest-path "$here/../Cargo.toml"
bash "$shared/setup.sh"
export CUSTOM_NAME=${CUSTOM_NAME:-sluice}
export CUSTOM_CMD="bash $here/sluice-peer.sh"
exec bash "$shared/compare.sh" "$@"

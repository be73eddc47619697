#!/usr/bin/env bash
# The per-core ceiling of full TLS 1.2 handshakes with rustls + aws-lc-rs on this machine: builds
# handshake-ceiling/ (its own cargo project, target in /tmp) and runs it pinned to cpu0 for the
# RSA-2048 and the ECDSA P-256 certificate of ../shared/bench/certs.sh, ROUNDS times each,
# with Sluice's server settings (ticket + session cache) and `--bare`.
#   bash bench/handshake-ceiling.sh [HANDSHAKES (3000)] [ROUNDS (3)]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shared=${SHARED_BENCH:-$here/../../shared/bench}
build=${BENCH_BUILD_DIR:-/tmp/bench-build}/handshake-ceiling
n=${1:-3000} rounds=${2:-3}
certs=/tmp/bench-run/certs
bash "$shared/certs.sh" "$certs" >/dev/null
CARGO_TARGET_DIR=$build cargo build --release --offline --manifest-path "$here/handshake-ceiling/Cargo.toml" >&2
for _ in $(seq "$rounds"); do
  for key in rsa ecdsa; do
    for mode in "" --bare; do
      taskset -c 0 "$build/release/handshake-ceiling" "$certs/$key.crt" "$certs/$key.key" "$n" $mode
    done
  done
done

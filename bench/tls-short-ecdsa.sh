#!/usr/bin/env bash
# Builds (once) a variant of ../shared/bench/tools/tls-short whose ClientHello offers
# ECDHE-ECDSA-AES128-GCM-SHA256 first and ECDHE-RSA-AES128-GCM-SHA256 second (still TLS 1.2,
# X25519, full handshake per request): against a dual-certificate host the server picks the
# ECDSA certificate (P1e). Prints the binary's path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shared=${SHARED_BENCH:-$here/../../shared/bench}
build=${BENCH_BUILD_DIR:-/tmp/bench-build}
src=$build/tls-short-ecdsa-src
bin=$build/tls-short-ecdsa/release/tls-short
if [[ ! -x $bin || $shared/tools/tls-short/src/main.rs -nt $bin ]]; then
  rm -rf "$src"; mkdir -p "$src"
  cp -r "$shared/tools/tls-short/Cargo.toml" "$shared/tools/tls-short/Cargo.lock" "$shared/tools/tls-short/src" "$src/"
  needle='cipher_suites: vec![prov::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256],'
  grep -qF "$needle" "$src/src/main.rs" || { echo "tls-short changed: cipher suite line not found" >&2; exit 1; }
  sed -i "s|cipher_suites: vec!\[prov::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\],|cipher_suites: vec![prov::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, prov::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256],|" "$src/src/main.rs"
  CARGO_TARGET_DIR=$build/tls-short-ecdsa cargo build --release --offline --manifest-path "$src/Cargo.toml" >&2
fi
echo "$bin"

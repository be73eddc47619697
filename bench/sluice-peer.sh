#!/usr/bin/env bash
# Runs Sluice as the third peer of ../shared/bench (custom.sh starts it and tracks its pid, so the
# last step is exec). Reads the $BENCH_* variables custom.sh exports.
#   SLUICE_BIN      binary (default: target/release/sluice of this repo)
#   SLUICE_WORKERS  worker threads (default 1, like the peers)
#   SLUICE_HOSTS    hosts in the configuration (default 1; P5 uses 20000)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${SLUICE_BIN:-$here/../target/release/sluice}
dir=$(mktemp -d /tmp/sluice-bench-manifests.XXXXXX)
python3 "$here/gen_manifests.py" --out "$dir" --backend "${BENCH_BACKEND:-127.0.0.1:18080}" \
  --hosts "${SLUICE_HOSTS:-1}" --tls "${SLUICE_TLS_HOSTS:-1}" --cert "$BENCH_CERT" --key "$BENCH_KEY"
exec "$bin" serve --manifests "$dir" \
  --http-listen "127.0.0.1:${BENCH_HTTP_PORT:-38081}" \
  --https-listen "127.0.0.1:${BENCH_HTTPS_PORT:-38443}" \
  --admin-listen "127.0.0.1:${SLUICE_ADMIN_PORT:-38254}" \
  --workers "${SLUICE_WORKERS:-1}" --drain-delay 0s --drain-timeout 2s

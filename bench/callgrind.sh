#!/usr/bin/env bash
# Deterministic user-space cost per request: runs Sluice under callgrind (collection switched on
# only around the measured load) and prints instructions per request and the top functions.
# Immune to the machine's noise; blind to kernel time (see profile.sh SYSCALLS=1 for syscalls).
#   bash bench/callgrind.sh SCENARIO [REQUESTS]   SCENARIO: http1 | h1tls | h2 | short
#   SLUICE_BIN (default target/release/sluice), OUT (/tmp/sluice-callgrind); extra env is passed
#   to Sluice (e.g. SLUICE_WORKERS).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
shared=${SHARED_BENCH:-$here/../../shared/bench}
scenario=${1:?scenario: http1 | h1tls | h2 | short}
n=${2:-5000}
bin=${SLUICE_BIN:-$here/../target/release/sluice}
out=${OUT:-/tmp/sluice-callgrind}
mkdir -p "$out"
certs=/tmp/bench-run/certs
bash "$shared/certs.sh" "$certs" >/dev/null
bash "$shared/backend/backend.sh" start >/dev/null 2>&1 || true
dir=$(mktemp -d /tmp/sluice-cg-manifests.XXXXXX)
python3 "$here/gen_manifests.py" --out "$dir" --backend 127.0.0.1:18080 --hosts "${SLUICE_HOSTS:-1}" \
  --tls 1 --cert "$certs/rsa.crt" --key "$certs/rsa.key"
rm -f "$out/$scenario".cg.*
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/$scenario.cg.%p" \
  "$bin" serve --manifests "$dir" --http-listen 127.0.0.1:23281 --https-listen 127.0.0.1:23643 \
  --admin-listen 127.0.0.1:23454 --workers "${SLUICE_WORKERS:-1}" --drain-delay 0s --drain-timeout 1s \
  > "$out/$scenario.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 600); do curl -sf -o /dev/null http://127.0.0.1:23454/readyz && break; sleep 0.2; done
export OPENSSL_CONF=$shared/tls12-client.cnf
cipher=ECDHE-RSA-AES128-GCM-SHA256
tls_short=${BENCH_BUILD_DIR:-/tmp/bench-build}/tls-short/release/tls-short
load() {
  case $scenario in
    http1) h2load --h1 -c16 -n "$1" http://bench.local:23281/22k ;;
    h1tls) h2load --h1 -c16 -n "$1" --ciphers=$cipher https://bench.local:23643/22k ;;
    h2) h2load -c16 -m10 -n "$1" --ciphers=$cipher https://bench.local:23643/22k ;;
    # tls-short runs for a time, not a count: $1 / 100 seconds (callgrind does ~100 handshakes/s).
    short) "$tls_short" -c 8 -d $(( $1 / 100 + 1 )) -e 22528 https://bench.local:23643/22k ;;
  esac
}
load 200 > /dev/null
callgrind_control -i on "$pid" > /dev/null
load "$n" > "$out/$scenario.load.txt" 2>&1
callgrind_control -i off "$pid" > /dev/null
callgrind_control -d "$pid" > /dev/null
sleep 1
if [[ $scenario == short ]]; then n=$(awk '/^requests/ {print $2}' "$out/$scenario.load.txt"); fi
f=$out/$scenario.cg.$pid.1
total=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}' || true)
total=${total:-0}
grep -E "succeeded|^requests|^errors" "$out/$scenario.load.txt" | head -3
echo "instructions: $total  per request: $((total / n))"
callgrind_annotate --inclusive=no "$f" 2>/dev/null | sed -n '/file:function/,$p' | head -40 > "$out/$scenario.top.txt"
callgrind_annotate --inclusive=yes "$f" 2>/dev/null | sed -n '/file:function/,$p' | head -60 > "$out/$scenario.incl.txt"
head -25 "$out/$scenario.top.txt"

#!/usr/bin/env bash
# CPU time per request of several Sluice binaries (or settings), alternated A B A B: each runs
# pinned to cpu0 and serves a fixed number of requests from a client on cpu1; perf stat measures
# the process's task-clock (user + kernel), so a busy machine changes the result much less than
# it changes req/s.
#   bash bench/cpu_ab.sh SCENARIO REQUESTS ROUNDS NAME=BINARY[:ENV=V,ENV=V] ...
#   SCENARIO: http1 | h1tls | h2 | short | short-ecdsa (short*: REQUESTS is ignored, runs 10 s;
#   short-ecdsa: bench.local holds the RSA and the ECDSA certificate and the client offers
#   ECDHE-ECDSA first, so the handshake signs with ECDSA P-256: P1e)
#   PIN=0 pins nothing (with SLUICE_WORKERS=2: what a user sees); SLUICE_WORKERS (default 1).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
shared=${SHARED_BENCH:-$here/../../shared/bench}
scenario=$1 n=$2 rounds=$3; shift 3
certs=/tmp/bench-run/certs
bash "$shared/certs.sh" "$certs" >/dev/null
bash "$shared/backend/backend.sh" start >/dev/null 2>&1 || true
bpid=$(bash "$shared/backend/backend.sh" pid)
if [[ ${PIN:-1} == 1 ]]; then
  cpu0=(taskset -c 0) cpu1=(taskset -c 1)
  taskset -apc 1 "$bpid" >/dev/null; for p in $(pgrep -P "$bpid"); do taskset -apc 1 "$p" >/dev/null; done
else
  cpu0=() cpu1=()
  taskset -apc 0-1 "$bpid" >/dev/null; for p in $(pgrep -P "$bpid"); do taskset -apc 0-1 "$p" >/dev/null; done
fi
dir=$(mktemp -d /tmp/sluice-ab-manifests.XXXXXX)
dual=()
[[ $scenario == short-ecdsa ]] && dual=(--cert2 "$certs/ecdsa.crt" --key2 "$certs/ecdsa.key")
python3 "$here/gen_manifests.py" --out "$dir" --backend 127.0.0.1:18080 --hosts "${SLUICE_HOSTS:-1}" \
  --tls 1 --cert "$certs/rsa.crt" --key "$certs/rsa.key" "${dual[@]}"
export OPENSSL_CONF=$shared/tls12-client.cnf
cipher=ECDHE-RSA-AES128-GCM-SHA256
tls_short=${BENCH_BUILD_DIR:-/tmp/bench-build}/tls-short/release/tls-short
[[ $scenario == short-ecdsa ]] && tls_short=$(bash "$here/tls-short-ecdsa.sh")
load() {
  case $scenario in
    http1) "${cpu1[@]}" h2load --h1 -c64 -n "$1" http://bench.local:24081/22k ;;
    h1tls) "${cpu1[@]}" h2load --h1 -c64 -n "$1" --ciphers=$cipher https://bench.local:24443/22k ;;
    h2) "${cpu1[@]}" h2load -c32 -m10 -n "$1" --ciphers=$cipher https://bench.local:24443/22k ;;
    short | short-ecdsa) "${cpu1[@]}" "$tls_short" -c 32 -d 10 -e 22528 https://bench.local:24443/22k ;;
  esac
}
for r in $(seq "$rounds"); do
  for spec in "$@"; do
    name=${spec%%=*} rest=${spec#*=}
    bin=${rest%%:*} envs=""
    [[ $rest == *:* ]] && envs=${rest#*:}
    env ${envs//,/ } "${cpu0[@]}" "$bin" serve --manifests "$dir" --http-listen 127.0.0.1:24081 \
      --https-listen 127.0.0.1:24443 --admin-listen 127.0.0.1:24254 --workers "${SLUICE_WORKERS:-1}" \
      --drain-delay 0s --drain-timeout 1s > /tmp/sluice-ab-$name.log 2>&1 &
    pid=$!
    for _ in $(seq 200); do curl -sf -o /dev/null http://127.0.0.1:24254/readyz && break; sleep 0.05; done
    load 3000 > /dev/null 2>&1
    # Time on CPU in ns, all threads (/proc/PID/schedstat is the main thread only).
    cpu_ns() { cat /proc/"$pid"/task/*/schedstat | awk '{s += $1} END {printf "%.0f\n", s}'; }
    c0=$(cpu_ns)
    start=$(date +%s.%N)
    out=$(load "$n" 2>&1)
    end=$(date +%s.%N)
    c1=$(cpu_ns)
    kill $pid; wait $pid 2>/dev/null || true
    ms=$(( (c1 - c0) / 1000000 ))
    if [[ $scenario == short* ]]; then
      done_n=$(awk '/^requests/ {print $2}' <<<"$out")
    else
      done_n=$(awk '/^requests:/ {print $8}' <<<"$out")
    fi
    awk -v name="$name" -v r="$r" -v ms="$ms" -v n="$done_n" -v s="$start" -v e="$end" 'BEGIN {
      printf "round %d %-12s requests %7d  cpu %8.1f ms  %6.2f us/req  %7.0f req/cpu-s  %7.0f req/s\n",
        r, name, n, ms, ms * 1000 / n, n / (ms / 1000), n / (e - s) }'
  done
done
rm -rf "$dir"

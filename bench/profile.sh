#!/usr/bin/env bash
# Profiles one Sluice binary under one scenario's load: Sluice pinned to cpu0, load generator and
# backend on cpu1 (the harness's layout A), `perf record -e cpu-clock` on the Sluice process.
#   bash bench/profile.sh SCENARIO [SECONDS]   SCENARIO: http1 | h1tls | h2 | short | short-ecdsa
#   (short-ecdsa: dual-certificate host, client offering ECDHE-ECDSA first, see cpu_ab.sh)
#   SLUICE_BIN (default target/release/sluice), SLUICE_WORKERS (1), OUT (/tmp/sluice-profile),
#   PERF=0 runs the load without perf (a quick throughput check).
# Writes $OUT/SCENARIO.{load.txt,perf.data,report.txt} and, when inferno is installed, a
# flamegraph $OUT/SCENARIO.svg. Uses its own ports (21081/21443/21254) so it can run beside the
# harness's peers.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shared=${SHARED_BENCH:-$here/../../shared/bench}
scenario=${1:?scenario: http1 | h1tls | h2 | short}
secs=${2:-10}
bin=${SLUICE_BIN:-$here/../target/release/sluice}
out=${OUT:-/tmp/sluice-profile}
mkdir -p "$out"
certs=/tmp/bench-run/certs
bash "$shared/certs.sh" "$certs" >/dev/null
bash "$shared/backend/backend.sh" start >/dev/null 2>&1 || true
taskset -pc 1 "$(bash "$shared/backend/backend.sh" pid)" >/dev/null 2>&1 || true
for p in $(pgrep -P "$(bash "$shared/backend/backend.sh" pid)" 2>/dev/null); do taskset -pc 1 "$p" >/dev/null; done

dir=$(mktemp -d /tmp/sluice-profile-manifests.XXXXXX)
dual=()
[[ $scenario == short-ecdsa ]] && dual=(--cert2 "$certs/ecdsa.crt" --key2 "$certs/ecdsa.key")
python3 "$here/gen_manifests.py" --out "$dir" --backend 127.0.0.1:18080 --hosts "${SLUICE_HOSTS:-1}" \
  --tls 1 --cert "$certs/rsa.crt" --key "$certs/rsa.key" "${dual[@]}"
taskset -c 0 "$bin" serve --manifests "$dir" --http-listen 127.0.0.1:21081 --https-listen 127.0.0.1:21443 \
  --admin-listen 127.0.0.1:21254 --workers "${SLUICE_WORKERS:-1}" --drain-delay 0s --drain-timeout 1s \
  > "$out/$scenario.sluice.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:21254/readyz && break; sleep 0.1; done
export OPENSSL_CONF=$shared/tls12-client.cnf
cipher=ECDHE-RSA-AES128-GCM-SHA256
tls_short=${BENCH_BUILD_DIR:-/tmp/bench-build}/tls-short/release/tls-short
[[ $scenario == short-ecdsa ]] && tls_short=$(bash "$here/tls-short-ecdsa.sh")
load() {
  case $scenario in
    http1) taskset -c 1 wrk -t1 -c64 -d"$1"s --latency http://bench.local:21081/22k ;;
    h1tls) taskset -c 1 wrk -t1 -c64 -d"$1"s --latency https://bench.local:21443/22k ;;
    h2) taskset -c 1 h2load -t1 -c32 -m10 -D"$1" --ciphers=$cipher https://bench.local:21443/22k ;;
    short | short-ecdsa) taskset -c 1 "$tls_short" -c 32 -d "$1" -e 22528 https://bench.local:21443/22k ;;
    *) echo "unknown scenario $scenario" >&2; exit 2 ;;
  esac
}
load 2 > /dev/null
cpu0=$(awk '{print $14+$15}' /proc/$pid/stat)
if [[ ${SYSCALLS:-0} == 1 ]]; then
  # Syscalls per request: what the kernel side costs, independent of how busy the machine is.
  ev=raw_syscalls:sys_enter
  for s in recvfrom sendto read write writev readv epoll_wait epoll_ctl futex sendmsg recvmsg accept4 close shutdown setsockopt getsockopt getsockname getpeername socket connect sched_yield; do
    ev="$ev,syscalls:sys_enter_$s"
  done
  perf stat -e "$ev" -p "$pid" -o "$out/$scenario.syscalls.txt" -- sleep "$secs" > /dev/null 2>&1 &
  perf_pid=$!
  PERF=0
elif [[ ${PERF:-1} == 1 ]]; then
  perf record -e cpu-clock -F 999 -g --call-graph dwarf,16384 -p "$pid" -o "$out/$scenario.perf.data" \
    -- sleep "$secs" > /dev/null 2>&1 &
  perf_pid=$!
fi
load "$secs" > "$out/$scenario.load.txt" 2>&1
cpu1=$(awk '{print $14+$15}' /proc/$pid/stat)
[[ -n ${perf_pid:-} ]] && wait $perf_pid
echo "cpu_ticks=$((cpu1 - cpu0)) (1/100 s)" >> "$out/$scenario.load.txt"
grep -E "Requests/sec|finished in|req/s|requests|cpu_ticks" "$out/$scenario.load.txt" || tail -5 "$out/$scenario.load.txt"
[[ -f $out/$scenario.syscalls.txt ]] && grep -E "syscalls" "$out/$scenario.syscalls.txt"
if [[ ${PERF:-1} == 1 ]]; then
  perf report -i "$out/$scenario.perf.data" --no-children --percent-limit 0.7 --stdio -g none \
    > "$out/$scenario.report.txt" 2>/dev/null || true
  if command -v inferno-collapse-perf >/dev/null; then
    perf script -i "$out/$scenario.perf.data" 2>/dev/null | inferno-collapse-perf > "$out/$scenario.folded"
    inferno-flamegraph < "$out/$scenario.folded" > "$out/$scenario.svg"
  fi
fi

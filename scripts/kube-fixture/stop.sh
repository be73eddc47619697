#!/usr/bin/env bash
# Stops the kube-apiserver and etcd that start.sh DIR started, by their pid files.
# Safe to run twice, or after a partial start. DIR itself is left for the caller to inspect
# or remove.
#
# Usage: scripts/kube-fixture/stop.sh DIR
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR   (the directory given to start.sh)" >&2
    exit 2
fi
dir="$1"

# Only a process whose command line still names the binary is ours: after a reboot or a
# long pause the pid may belong to something else.
is_ours() {
    local pid="$1" name="$2"
    [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name"
}

# A zombie (killed but not yet reaped by the start.sh that is cleaning up after itself)
# still answers kill -0, yet has stopped.
is_running() {
    local pid="$1" state
    kill -0 "$pid" 2>/dev/null || return 1
    state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
    [[ -n "$state" && "$state" != "Z" ]]
}

stop_one() {
    local name="$1" pidfile="$dir/$1.pid" pid
    [[ -f "$pidfile" ]] || return 0
    pid="$(cat "$pidfile")"
    if [[ "$pid" =~ ^[0-9]+$ ]] && is_ours "$pid" "$name"; then
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$(( $(date +%s) + 15 ))
        while is_running "$pid" && (( $(date +%s) < deadline )); do
            sleep 0.1
        done
        if is_running "$pid"; then
            echo "stop.sh: $name (pid $pid) ignored SIGTERM for 15s; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidfile"
}

# The API server first, so it does not log a storm of etcd connection errors while stopping.
stop_one kube-apiserver
stop_one etcd

#!/usr/bin/env bash
# Starts a throwaway etcd and kube-apiserver on 127.0.0.1 for the Kubernetes tests, with
# everything (certificates, tokens, etcd data, logs, pid files, kubeconfigs) inside DIR.
#
# Usage: scripts/kube-fixture/start.sh DIR     (prints the API server URL on success)
# Env:   SLUICE_CACHE                  cache root that build.sh filled (default ~/.cache/sluice)
#        KUBE_FIXTURE_APISERVER_PORT   HTTPS port of the API server (default: a free one)
#        KUBE_FIXTURE_ETCD_PORT        etcd client port (default: a free one)
#        KUBE_FIXTURE_ETCD_PEER_PORT   etcd peer port (default: a free one)
#        KUBE_FIXTURE_TIMEOUT          seconds to wait for readiness (default 120)
#
# Files in DIR afterwards: ca.crt, admin.token, sluice.token, admin.kubeconfig,
# sluice.kubeconfig, url, env (shell-sourceable), etcd.pid, kube-apiserver.pid, *.log.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=version.sh
source "$here/version.sh"

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR   (DIR receives certificates, etcd data, logs, pid files and kubeconfigs)" >&2
    exit 2
fi
mkdir -p "$1"
dir="$(cd "$1" && pwd)"
timeout_s="${KUBE_FIXTURE_TIMEOUT:-120}"

bin_dir="$(kube_fixture_bin_dir)"
for b in etcd kube-apiserver; do
    if [[ ! -x "$bin_dir/$b" ]]; then
        echo "start.sh: $bin_dir/$b is missing; run scripts/kube-fixture/build.sh first" >&2
        exit 1
    fi
done
for name in etcd kube-apiserver; do
    if [[ -f "$dir/$name.pid" ]] && kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null; then
        echo "start.sh: $name is already running from $dir (pid $(cat "$dir/$name.pid")); run stop.sh $dir first" >&2
        exit 1
    fi
done

# Whatever this script started is stopped again if a later step fails, so a failed start
# never leaves an etcd or apiserver running behind the test that called it.
cleanup_on_failure() {
    local status=$?
    if [[ $status -ne 0 ]]; then
        "$here/stop.sh" "$dir" >&2 || true
    fi
}
trap cleanup_on_failure EXIT

# A port that no socket on this machine uses now (listening or connected) and that this script
# has not handed out already. It is taken below the kernel's ephemeral range, so outgoing
# connections opened meanwhile cannot claim it; another process may still bind it first, which
# shows up as a start failure with the log tail printed, and a retry picks new ports.
# Sets $port (no subshell, so $taken_ports accumulates).
taken_ports=" "
read -r ephemeral_low _ 2>/dev/null </proc/sys/net/ipv4/ip_local_port_range || ephemeral_low=32768
(( ephemeral_low > 12000 )) || ephemeral_low=32768
port_in_use() {
    if command -v ss >/dev/null 2>&1; then
        [[ -n "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}
pick_free_port() {
    for _ in $(seq 1 100); do
        port=$(( 10000 + RANDOM % (ephemeral_low - 10000) ))
        if [[ "$taken_ports" != *" $port "* ]] && ! port_in_use "$port"; then
            taken_ports+="$port "
            return 0
        fi
    done
    echo "start.sh: found no free TCP port on 127.0.0.1 after 100 tries" >&2
    return 1
}

# Polls until the command succeeds; fails with the log tail if the process died or the
# deadline passed, so the caller sees why instead of a bare timeout.
wait_until() {
    local what="$1" pid="$2" log="$3"
    shift 3
    local deadline=$(( $(date +%s) + timeout_s ))
    until "$@"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "start.sh: $what exited before it became ready; last lines of $log:" >&2
            tail -n 30 "$log" >&2
            return 1
        fi
        if (( $(date +%s) >= deadline )); then
            echo "start.sh: $what was not ready after ${timeout_s}s (raise KUBE_FIXTURE_TIMEOUT?); last lines of $log:" >&2
            tail -n 30 "$log" >&2
            return 1
        fi
        sleep 0.2
    done
}

# Sets $port to the preset from the environment if there is one, else to a free port.
port_or_free() {
    if [[ -n "$1" ]]; then
        port="$1"
        taken_ports+="$port "
    else
        pick_free_port
    fi
}
port_or_free "${KUBE_FIXTURE_ETCD_PORT:-}"
etcd_port="$port"
port_or_free "${KUBE_FIXTURE_ETCD_PEER_PORT:-}"
etcd_peer_port="$port"
port_or_free "${KUBE_FIXTURE_APISERVER_PORT:-}"
api_port="$port"
url="https://127.0.0.1:$api_port"

# --- certificates and keys (ECDSA P-256: fast to generate, accepted everywhere needed) ---
pki="$dir/pki"
mkdir -p "$pki"
openssl_quiet() {
    local out
    out="$(openssl "$@" 2>&1)" || { echo "start.sh: openssl $1 failed: $out" >&2; return 1; }
}
openssl_quiet ecparam -name prime256v1 -genkey -noout -out "$pki/ca.key"
openssl_quiet req -x509 -new -key "$pki/ca.key" -sha256 -days 3650 \
    -subj "/CN=sluice-test-ca" -out "$pki/ca.crt"
openssl_quiet ecparam -name prime256v1 -genkey -noout -out "$pki/apiserver.key"
openssl_quiet req -new -key "$pki/apiserver.key" -subj "/CN=kube-apiserver" -out "$pki/apiserver.csr"
cat >"$pki/apiserver.ext" <<'EOF'
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
openssl_quiet x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -sha256 -days 3650 -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt"
openssl_quiet ecparam -name prime256v1 -genkey -noout -out "$pki/sa.key"
openssl_quiet ec -in "$pki/sa.key" -pubout -out "$pki/sa.pub"
cp "$pki/ca.crt" "$dir/ca.crt"

# --- static tokens: token,user,uid,"groups" ---
admin_token="$(openssl rand -hex 24)"
sluice_token="$(openssl rand -hex 24)"
# The sluice identity is named like the ServiceAccount sluice/sluice, so a ClusterRoleBinding
# whose subject is that ServiceAccount (as the project ships) applies to this token. It gets
# no groups beyond system:authenticated, so it can do only what RBAC grants it.
sluice_user="system:serviceaccount:sluice:sluice"
cat >"$pki/tokens.csv" <<EOF
$admin_token,admin,admin-uid,"system:masters"
$sluice_token,$sluice_user,sluice-uid
EOF
printf '%s\n' "$admin_token" >"$dir/admin.token"
printf '%s\n' "$sluice_token" >"$dir/sluice.token"
chmod 600 "$pki"/*.key "$pki/tokens.csv" "$dir"/*.token

# --- etcd ---
mkdir -p "$dir/etcd"
chmod 700 "$dir/etcd"
# --unsafe-no-fsync: the data is thrown away after the test; fsync only slows a noisy machine.
"$bin_dir/etcd" \
    --name sluice-test \
    --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "sluice-test=http://127.0.0.1:$etcd_peer_port" \
    --unsafe-no-fsync \
    --log-level warn \
    >"$dir/etcd.log" 2>&1 </dev/null &
echo $! >"$dir/etcd.pid"
etcd_healthy() {
    curl -fsS --max-time 2 "http://127.0.0.1:$etcd_port/health" 2>/dev/null | grep -q '"health":"true"'
}
wait_until etcd "$(cat "$dir/etcd.pid")" "$dir/etcd.log" etcd_healthy

# --- kube-apiserver ---
mkdir -p "$dir/apiserver-certs"
# --endpoint-reconciler-type=none: the reconciler would publish 127.0.0.1 as the endpoint of
# the default/kubernetes Service, which the API server itself rejects as a loopback address.
"$bin_dir/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 \
    --advertise-address 127.0.0.1 \
    --secure-port "$api_port" \
    --cert-dir "$dir/apiserver-certs" \
    --tls-cert-file "$pki/apiserver.crt" \
    --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --token-auth-file "$pki/tokens.csv" \
    --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" \
    --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 \
    --endpoint-reconciler-type none \
    --profiling=false \
    >"$dir/kube-apiserver.log" 2>&1 </dev/null &
echo $! >"$dir/kube-apiserver.pid"
apiserver_ready() {
    [[ "$(curl -sS --max-time 5 --cacert "$pki/ca.crt" "$url/readyz" 2>/dev/null)" == "ok" ]]
}
wait_until kube-apiserver "$(cat "$dir/kube-apiserver.pid")" "$dir/kube-apiserver.log" apiserver_ready

# --- kubeconfigs (CA embedded, so each file stands alone) ---
ca_data="$(base64 -w0 <"$pki/ca.crt")"
write_kubeconfig() {
    local user="$1" token="$2"
    cat >"$dir/$user.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: sluice-test
  cluster:
    server: $url
    certificate-authority-data: $ca_data
users:
- name: $user
  user:
    token: $token
contexts:
- name: $user@sluice-test
  context:
    cluster: sluice-test
    user: $user
current-context: $user@sluice-test
EOF
    chmod 600 "$dir/$user.kubeconfig"
}
write_kubeconfig admin "$admin_token"
write_kubeconfig sluice "$sluice_token"

echo "$url" >"$dir/url"
cat >"$dir/env" <<EOF
KUBE_FIXTURE_URL=$url
KUBE_FIXTURE_CA=$dir/ca.crt
KUBE_FIXTURE_ADMIN_TOKEN=$admin_token
KUBE_FIXTURE_SLUICE_TOKEN=$sluice_token
KUBE_FIXTURE_SLUICE_USER=$sluice_user
KUBE_FIXTURE_ADMIN_KUBECONFIG=$dir/admin.kubeconfig
KUBE_FIXTURE_SLUICE_KUBECONFIG=$dir/sluice.kubeconfig
KUBE_FIXTURE_ETCD_URL=http://127.0.0.1:$etcd_port
EOF
echo "$url"

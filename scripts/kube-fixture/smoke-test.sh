#!/usr/bin/env bash
# Proves the fixture is usable for the Kubernetes tests: builds (or reuses) the binaries,
# starts etcd + kube-apiserver in a temporary directory, creates the kinds of objects the tests
# create, checks that RBAC is enforced for the sluice identity and that a binding to the
# ServiceAccount sluice/sluice applies to it, then stops everything.
#
# Usage: scripts/kube-fixture/smoke-test.sh      (exit 0 and "N passed, 0 failed" on success)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/build.sh" >/dev/null

dir="$(mktemp -d "${TMPDIR:-/tmp}/sluice-kube-smoke.XXXXXX")"
cleanup() {
    "$here/stop.sh" "$dir" || true
    rm -rf "$dir"
}
trap cleanup EXIT

url="$("$here/start.sh" "$dir")"
admin="$(cat "$dir/admin.token")"
sluice="$(cat "$dir/sluice.token")"
echo "API server at $url"

passed=0
failed=0
check() {
    local what="$1"
    shift
    if "$@"; then
        echo "ok: $what"
        passed=$((passed + 1))
    else
        echo "FAILED: $what"
        failed=$((failed + 1))
    fi
}

# api TOKEN METHOD PATH [BODY] -> prints the body, then the HTTP status on the last line.
api() {
    local token="$1" method="$2" path="$3" body="${4:-}"
    local args=(-sS --max-time 10 --cacert "$dir/ca.crt" -H "Authorization: Bearer $token"
        -X "$method" -w '\n%{http_code}')
    if [[ -n "$body" ]]; then
        args+=(-H 'Content-Type: application/json' --data "$body")
    fi
    curl "${args[@]}" "$url$path"
}
status_is() { # status_is CODE TOKEN METHOD PATH [BODY]
    local want="$1"
    shift
    local out
    out="$(api "$@")"
    [[ "$(tail -n1 <<<"$out")" == "$want" ]] || { echo "  got: $out" | head -c 600; echo; return 1; }
}
body_has() { # body_has NEEDLE TOKEN METHOD PATH
    local needle="$1"
    shift
    api "$@" | grep -q -- "$needle"
}
# RBAC changes reach the authorizer's informer asynchronously: poll, with a deadline.
eventually_status_is() {
    local deadline=$(( $(date +%s) + 30 ))
    until status_is "$@" >/dev/null; do
        (( $(date +%s) < deadline )) || { status_is "$@"; return 1; }
        sleep 0.2
    done
}

ns='{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"smoke"}}'
svc='{"apiVersion":"v1","kind":"Service","metadata":{"name":"echo"},
  "spec":{"ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"}]}}'
slice='{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
  "metadata":{"name":"echo-1","labels":{"kubernetes.io/service-name":"echo",
    "endpointslice.kubernetes.io/managed-by":"sluice-tests"}},
  "addressType":"IPv4",
  "endpoints":[{"addresses":["10.244.0.2"],"conditions":{"ready":true}}],
  "ports":[{"name":"http","port":8080,"protocol":"TCP"}]}'
loopback_slice="${slice//echo-1/echo-loopback}"
loopback_slice="${loopback_slice//10.244.0.2/127.0.0.1}"
ingress='{"apiVersion":"networking.k8s.io/v1","kind":"Ingress","metadata":{"name":"echo"},
  "spec":{"rules":[{"host":"echo.test","http":{"paths":[{"path":"/","pathType":"Prefix",
    "backend":{"service":{"name":"echo","port":{"number":80}}}}]}}]}}'

check "admin creates Namespace smoke" status_is 201 "$admin" POST /api/v1/namespaces "$ns"
check "admin creates Service smoke/echo" \
    status_is 201 "$admin" POST /api/v1/namespaces/smoke/services "$svc"
check "admin creates EndpointSlice smoke/echo-1 with 10.244.0.2" \
    status_is 201 "$admin" POST /apis/discovery.k8s.io/v1/namespaces/smoke/endpointslices "$slice"
check "the API server refuses a loopback endpoint address (422)" \
    status_is 422 "$admin" POST /apis/discovery.k8s.io/v1/namespaces/smoke/endpointslices "$loopback_slice"
check "admin creates Ingress smoke/echo" \
    status_is 201 "$admin" POST /apis/networking.k8s.io/v1/namespaces/smoke/ingresses "$ingress"

check "Service listed back" body_has '"name": *"echo"' "$admin" GET /api/v1/namespaces/smoke/services
check "EndpointSlice listed back with 10.244.0.2" \
    body_has '"10.244.0.2"' "$admin" GET /apis/discovery.k8s.io/v1/namespaces/smoke/endpointslices
check "Ingress listed back with host echo.test" \
    body_has '"host": *"echo.test"' "$admin" GET /apis/networking.k8s.io/v1/namespaces/smoke/ingresses

whoami='{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}'
check "the sluice token authenticates as system:serviceaccount:sluice:sluice" \
    body_has '"username": *"system:serviceaccount:sluice:sluice"' \
    "$sluice" POST /apis/authentication.k8s.io/v1/selfsubjectreviews "$whoami"
check "sluice gets 403 listing secrets cluster-wide (RBAC on)" status_is 403 "$sluice" GET /api/v1/secrets
check "sluice gets 403 listing ingresses before any binding" \
    status_is 403 "$sluice" GET /apis/networking.k8s.io/v1/ingresses

role='{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"smoke-ingress-reader"},
  "rules":[{"apiGroups":["networking.k8s.io"],"resources":["ingresses"],"verbs":["get","list","watch"]}]}'
binding='{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"smoke-ingress-reader"},
  "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"smoke-ingress-reader"},
  "subjects":[{"kind":"ServiceAccount","name":"sluice","namespace":"sluice"}]}'
create_binding() {
    status_is 201 "$admin" POST /apis/rbac.authorization.k8s.io/v1/clusterroles "$role" &&
        status_is 201 "$admin" POST /apis/rbac.authorization.k8s.io/v1/clusterrolebindings "$binding"
}
check "admin creates a ClusterRole and binds it to ServiceAccount sluice/sluice" create_binding
check "the binding applies to the sluice token: ingresses 200" \
    eventually_status_is 200 "$sluice" GET /apis/networking.k8s.io/v1/ingresses
check "secrets stay 403 for sluice" status_is 403 "$sluice" GET /api/v1/secrets

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]

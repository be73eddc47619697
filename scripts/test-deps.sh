#!/usr/bin/env bash
# Installs and builds what the tests need; idempotent and quick once done (scripts/test.sh runs it).
#   - openssl: RSA keys in tests and the demo certificates
#   - chromium: the dashboard test loads the admin page in a real headless browser
#   - iproute2 + curl: Kubernetes tests put backends in network namespaces; the fixture polls with curl
#   - kube-apiserver + etcd (scripts/kube-fixture, ~6-9 min the first time, cached per machine)
#   - helm (scripts/helm.sh, ~3 min the first time, cached per machine)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
command -v go >/dev/null || { echo "go not found: the Kubernetes test fixture is built with Go" >&2; exit 1; }
missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v chromium >/dev/null || missing+=(chromium)
command -v ip >/dev/null || missing+=(iproute2)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
  echo "test-deps: installing ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
bash scripts/kube-fixture/build.sh >/dev/null
bash scripts/helm.sh >/dev/null

#!/usr/bin/env bash
# Builds the Helm CLI that the deploy-asset tests render charts/sluice with, once per machine:
# Helm is not installed here, and the Go module proxy serves its sources. The release is the one
# scripts/helm/go.mod pins; the binary is cached outside the clone, keyed by that release.
#
# Usage: scripts/helm.sh            (prints the path of the helm binary on success)
# Env:   SLUICE_CACHE   cache root (default ~/.cache/sluice)
set -euo pipefail

module_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/helm" && pwd)"

# go.mod is the one place that names the release; reading it here keeps the cache key honest.
helm_version="$(awk '$1 == "helm.sh/helm/v3" { print $2 }' "$module_dir/go.mod")"
if [[ -z "$helm_version" ]]; then
    echo "helm.sh: $module_dir/go.mod does not require helm.sh/helm/v3; restore it from git" >&2
    exit 1
fi
# The Kubernetes version Helm assumes for `helm template` (Capabilities.KubeVersion) follows
# the client-go it is built with, as Helm's own Makefile does.
client_go="$(awk '$1 == "k8s.io/client-go" { print $2 }' "$module_dir/go.mod")"
kube_minor="${client_go#v0.}"; kube_minor="${kube_minor%%.*}"

bin_dir="${SLUICE_CACHE:-$HOME/.cache/sluice}/helm/$helm_version"
if [[ -x "$bin_dir/helm" ]]; then
    echo "$bin_dir/helm"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    echo "helm.sh: 'go' is not on PATH; install Go 1.26 or newer to build Helm $helm_version" >&2
    exit 1
fi

started=$(date +%s)
mkdir -p "$(dirname "$bin_dir")"
# Build into a scratch directory and rename it into place, so an interrupted build never
# leaves a binary that the check above would take for complete.
scratch="$(mktemp -d "$(dirname "$bin_dir")/$helm_version.partial.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
chmod 755 "$scratch"

ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
if [[ -n "$kube_minor" ]]; then
    for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$kube_minor"
    done
fi

echo "helm.sh: building Helm $helm_version into $bin_dir (a few minutes on 2 cores)" >&2
(
    cd "$module_dir"
    # -mod=readonly: go.mod and go.sum are committed and complete; a build must never rewrite them.
    export GOFLAGS="${GOFLAGS:-} -mod=readonly"
    export CGO_ENABLED=0
    nice -n 19 go build -trimpath -ldflags "$ldflags" -o "$scratch/helm" helm.sh/helm/v3/cmd/helm
)
"$scratch/helm" version --short >&2

rm -rf "$bin_dir"
mv "$scratch" "$bin_dir"
trap - EXIT

elapsed=$(( $(date +%s) - started ))
printf 'helm.sh: built in %dm%02ds\n' $((elapsed / 60)) $((elapsed % 60)) >&2
echo "$bin_dir/helm"

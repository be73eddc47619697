#!/usr/bin/env bash
# Builds the kube-apiserver and etcd that the Kubernetes tests run against, once per machine:
# they are cached outside the clone, keyed by Kubernetes version, because a build takes many
# minutes on two cores while a check for the cached binaries takes none.
#
# Usage: scripts/kube-fixture/build.sh      (prints the bin directory on success)
# Env:   SLUICE_CACHE   cache root (default ~/.cache/sluice)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=version.sh
source "$here/version.sh"

bin_dir="$(kube_fixture_bin_dir)"
if [[ -x "$bin_dir/kube-apiserver" && -x "$bin_dir/etcd" ]]; then
    echo "$bin_dir"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    echo "build.sh: 'go' is not on PATH; install Go 1.24 or newer to build kube-apiserver and etcd" >&2
    exit 1
fi

started=$(date +%s)
mkdir -p "$(dirname "$bin_dir")"
# Build into a scratch directory and rename it into place, so an interrupted build never
# leaves a bin directory that the check above would take for complete.
scratch="$(mktemp -d "$(dirname "$bin_dir")/bin.partial.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
chmod 755 "$scratch"

# The apiserver reports this as its /version; without it clients would see v0.0.0-master.
major="${KUBE_VERSION#v}"; major="${major%%.*}"
minor="${KUBE_VERSION#v*.}"; minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean"
done

echo "build.sh: building kube-apiserver and etcd for Kubernetes $KUBE_VERSION into $bin_dir" >&2
echo "build.sh: this takes a long time on a small machine (about $KUBE_FIXTURE_TYPICAL_BUILD here)" >&2
(
    cd "$here"
    # -mod=readonly: go.mod and go.sum are committed and complete; a build must never rewrite them.
    # The module cache stays in its default place so every later build on this machine reuses it.
    export GOFLAGS="${GOFLAGS:-} -mod=readonly"
    export CGO_ENABLED=0
    nice -n 19 go build -trimpath -ldflags "$ldflags" -o "$scratch/" \
        k8s.io/kubernetes/cmd/kube-apiserver ./etcd
)

"$scratch/kube-apiserver" --version >&2
"$scratch/etcd" --version >&2

rm -rf "$bin_dir"
mv "$scratch" "$bin_dir"
trap - EXIT

elapsed=$(( $(date +%s) - started ))
printf 'build.sh: built in %dm%02ds\n' $((elapsed / 60)) $((elapsed % 60)) >&2
echo "$bin_dir"

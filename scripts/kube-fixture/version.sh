# shellcheck shell=bash
# Sourced by the kube-fixture scripts: the one place that names the Kubernetes release.
# Changing it also means regenerating go.mod's replace lines (see README.md).
KUBE_VERSION="v1.34.4"
# shellcheck disable=SC2034 # shown by build.sh before a build starts
KUBE_FIXTURE_TYPICAL_BUILD="6 to 9 minutes on 2 busy cores, plus ~500 MB of Go modules the first time"

kube_fixture_bin_dir() {
    echo "${SLUICE_CACHE:-$HOME/.cache/sluice}/kube/$KUBE_VERSION/bin"
}

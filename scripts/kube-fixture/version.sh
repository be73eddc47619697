# Sourced by the kube-fixture scripts: the one place that names the Kubernetes release.
# Changing it also means regenerating go.mod's replace lines (see README.md).
KUBE_VERSION="v1.34.4"
KUBE_FIXTURE_TYPICAL_BUILD="TBD"

kube_fixture_bin_dir() {
    echo "${SLUICE_CACHE:-$HOME/.cache/sluice}/kube/$KUBE_VERSION/bin"
}

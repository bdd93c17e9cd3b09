#!/usr/bin/env bash
# Helm for the chart tests and `make manifests`, built from Go modules like the e2e binaries.
#   helm-env.sh build [--force]   go install helm.sh/helm/v3/cmd/helm into build/helm (skipped when up to date)
#   helm-env.sh path              print the helm binary's path (building it first if needed)
# The Go build and module caches stay in their default per-user places (go env GOCACHE GOMODCACHE),
# so only the first build on a machine is slow (~1-2 min); a second run only hashes its inputs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/build/helm
HELM_VERSION=v3.22.0
# the Kubernetes version helm assumes without a cluster (.Capabilities.KubeVersion, lint's deprecation
# rules): that of the k8s.io modules helm is built with, as helm's own Makefile sets it
HELM_K8S_MINOR=37 # helm v3.22.0 requires k8s.io/client-go v0.37

die() { echo "helm-env: $*" >&2; exit 1; }

if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
  PATH="/usr/local/go/bin:$PATH"
fi

inputs_hash() { { go version; echo "$HELM_VERSION $HELM_K8S_MINOR"; } | sha256sum | cut -d' ' -f1; }

cmd_build() {
  command -v go >/dev/null || die "Go is not installed"
  mkdir -p "$OUT"
  local hash; hash=$(inputs_hash)
  if [ "${1:-}" != "--force" ] && [ -x "$OUT/helm" ] && [ "$(cat "$OUT/.inputs" 2>/dev/null)" = "$hash" ]; then
    echo "helm-env: build/helm is up to date ($HELM_VERSION)"; return 0
  fi
  echo "helm-env: building helm $HELM_VERSION from Go modules (cache: $(go env GOCACHE))"
  local t0=$SECONDS
  rm -f "$OUT/.inputs"
  local x=helm.sh/helm/v3 ldflags="-s -w"
  ldflags="$ldflags -X $x/internal/version.version=$HELM_VERSION -X $x/internal/version.gitTreeState=clean"
  ldflags="$ldflags -X $x/pkg/chartutil.k8sVersionMajor=1 -X $x/pkg/chartutil.k8sVersionMinor=$HELM_K8S_MINOR"
  ldflags="$ldflags -X $x/pkg/lint/rules.k8sVersionMajor=1 -X $x/pkg/lint/rules.k8sVersionMinor=$HELM_K8S_MINOR"
  # outside any module, so e2e/go.mod's graph does not matter
  (cd / && GOBIN="$OUT" GOFLAGS="-buildvcs=false" go install -ldflags "$ldflags" "$x/cmd/helm@$HELM_VERSION")
  echo "$hash" >"$OUT/.inputs"
  echo "helm-env: built in $((SECONDS - t0))s"
}

case "${1:-}" in
  build) shift; cmd_build "$@" ;;
  path) cmd_build >&2; echo "$OUT/helm" ;;
  *) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

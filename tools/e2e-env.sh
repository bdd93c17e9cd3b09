#!/usr/bin/env bash
# A real kube-apiserver (with embedded etcd) and kubectl for the e2e tests, built from Go modules.
#   e2e-env.sh build [--force]   go build build/e2e/{limen-apiserver,kubectl} (skipped when up to date)
#   e2e-env.sh start DIR         start the API server in DIR on a free loopback port, wait for /readyz
#   e2e-env.sh stop DIR          SIGTERM it, wait, SIGKILL if it will not go
#   e2e-env.sh status DIR        exit 0 and print the URL if it is running and ready
# Each command is idempotent. The Go build and module caches stay in their default per-user
# places (go env GOCACHE GOMODCACHE), so only the first build on a machine is slow.
# Environment: LIMEN_E2E_PORT (default 0: pick one), LIMEN_E2E_START_TIMEOUT (seconds, 60),
# LIMEN_E2E_STOP_TIMEOUT (seconds, 30).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MOD=$ROOT/e2e
OUT=$ROOT/build/e2e
K8S_VERSION=v1.36.3 # keep in step with e2e/go.mod

die() { echo "e2e-env: $*" >&2; exit 1; }

# the machines have Go in /usr/local/go; a non-login shell may not have it on PATH
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
  PATH="/usr/local/go/bin:$PATH"
fi

# a hash of everything the binaries are built from, to skip a build that would change nothing
inputs_hash() {
  { go version; echo "$K8S_VERSION"; cat "$MOD/go.mod" "$MOD/go.sum"
    find "$MOD/cmd" -name '*.go' | LC_ALL=C sort | xargs cat; } | sha256sum | cut -d' ' -f1
}

cmd_build() {
  command -v go >/dev/null || die "Go is not installed (need go >= 1.26 for k8s.io/kubernetes $K8S_VERSION)"
  mkdir -p "$OUT"
  local hash; hash=$(inputs_hash)
  if [ "${1:-}" != "--force" ] && [ -x "$OUT/limen-apiserver" ] && [ -x "$OUT/kubectl" ] &&
     [ "$(cat "$OUT/.inputs" 2>/dev/null)" = "$hash" ]; then
    echo "e2e-env: build/e2e is up to date"; return 0
  fi
  local v=${K8S_VERSION#v} x
  local ldflags="-s -w"
  for x in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $x.gitVersion=$K8S_VERSION -X $x.gitMajor=${v%%.*} -X $x.gitMinor=$(echo "$v" | cut -d. -f2)"
    ldflags="$ldflags -X $x.gitTreeState=clean"
  done
  echo "e2e-env: building kube-apiserver $K8S_VERSION + etcd and kubectl from Go modules (cache: $(go env GOCACHE))"
  local t0=$SECONDS
  rm -f "$OUT/.inputs"
  (cd "$MOD" && GOFLAGS="-mod=mod -buildvcs=false" go build -ldflags "$ldflags" -o "$OUT/" \
      ./cmd/limen-apiserver k8s.io/kubernetes/cmd/kubectl)
  echo "$hash" >"$OUT/.inputs"
  echo "e2e-env: built in $((SECONDS - t0))s"
}

# the pid in DIR/pid, if that process is still our API server
running_pid() {
  local pid; pid=$(cat "$1/pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "limen-apiserver --dir $1" || return 1
  echo "$pid"
}

ready() { # DIR
  [ -f "$1/kubeconfig" ] &&
    [ "$("$OUT/kubectl" --kubeconfig "$1/kubeconfig" --request-timeout=2s get --raw /readyz 2>/dev/null)" = ok ]
}

cmd_start() {
  local dir=${1:?usage: e2e-env.sh start DIR}
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  [ -x "$OUT/limen-apiserver" ] && [ -x "$OUT/kubectl" ] || cmd_build
  if running_pid "$dir" >/dev/null && ready "$dir"; then
    echo "e2e-env: already running: $(cat "$dir/url")"; return 0
  fi
  cmd_stop "$dir" >/dev/null
  local t0 attempt; t0=$(date +%s%N)
  local limit=$((SECONDS + ${LIMEN_E2E_START_TIMEOUT:-60}))
  for attempt in 1 2 3; do
    : >"$dir/apiserver.log"
    rm -f "$dir/pid"
    # the shell writes its own pid and then becomes the API server (exec keeps the pid), so the
    # pid file is right whether or not setsid had to fork
    setsid sh -c 'echo $$ >"$1/pid.tmp" && mv "$1/pid.tmp" "$1/pid" && exec "$2" --dir "$1" --port "$3"' \
      sh "$dir" "$OUT/limen-apiserver" "${LIMEN_E2E_PORT:-0}" </dev/null >>"$dir/apiserver.log" 2>&1 &
    while [ ! -s "$dir/pid" ] && [ $SECONDS -lt $limit ]; do sleep 0.05; done
    local pid; pid=$(cat "$dir/pid" 2>/dev/null)
    while [ $SECONDS -lt $limit ]; do
      if ! kill -0 "$pid" 2>/dev/null; then
        # a free port picked by the server (or etcd) can be taken before it binds: try again
        if [ -z "${LIMEN_E2E_PORT:-}" ] && [ $attempt -lt 3 ] &&
           grep -q 'address already in use' "$dir/apiserver.log"; then continue 2; fi
        tail -40 "$dir/apiserver.log" >&2; die "the API server exited during start (log: $dir/apiserver.log)"
      fi
      if ready "$dir"; then
        local ms=$((($(date +%s%N) - t0) / 1000000))
        printf 'e2e-env: ready in %d.%03ds: %s (kubeconfig %s)\n' $((ms / 1000)) $((ms % 1000)) \
          "$(cat "$dir/url" 2>/dev/null || echo '?')" "$dir/kubeconfig"
        return 0
      fi
      sleep 0.25
    done
    break
  done
  tail -40 "$dir/apiserver.log" >&2
  cmd_stop "$dir" >/dev/null
  die "not ready after ${LIMEN_E2E_START_TIMEOUT:-60}s (log: $dir/apiserver.log)"
}

cmd_stop() {
  local dir=${1:?usage: e2e-env.sh stop DIR}
  [ -d "$dir" ] || { echo "e2e-env: $dir: nothing to stop"; return 0; }
  dir=$(cd "$dir" && pwd)
  local pid
  if ! pid=$(running_pid "$dir"); then
    rm -f "$dir/pid"; echo "e2e-env: not running"; return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local limit=$((SECONDS + ${LIMEN_E2E_STOP_TIMEOUT:-30}))
  while running_pid "$dir" >/dev/null && [ $SECONDS -lt $limit ]; do sleep 0.2; done
  if running_pid "$dir" >/dev/null; then
    echo "e2e-env: $pid did not stop after SIGTERM; SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    while running_pid "$dir" >/dev/null; do sleep 0.1; done
  fi
  rm -f "$dir/pid" "$dir/ready"
  echo "e2e-env: stopped"
}

cmd_status() {
  local dir=${1:?usage: e2e-env.sh status DIR}
  dir=$(cd "$dir" 2>/dev/null && pwd) || die "$1: no such directory"
  running_pid "$dir" >/dev/null && ready "$dir" || die "not running"
  cat "$dir/url"
}

case "${1:-}" in
  build) shift; cmd_build "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  status) shift; cmd_status "$@" ;;
  *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

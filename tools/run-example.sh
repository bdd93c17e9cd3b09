#!/usr/bin/env bash
# `make run`: starts the example upstream and the proxy on examples/limen.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=build/run-state
mkdir -p "$STATE"
python3 examples/upstream.py 9000 &
UP=$!
trap 'kill $UP 2>/dev/null || true' EXIT
cat <<MSG

  Limen is starting on http://localhost:8000 with examples/limen.yaml. Try:

    curl -i localhost:8000/api/hello             # route echo-api, strip_path: the upstream sees /hello
    curl -i -H 'Host: echo.localhost' localhost:8000/any/path
    curl -i localhost:8000/users/42              # regex route: the upstream sees /v2/users/42
    curl -i localhost:8000/nothing-here          # 404 {"message":"no Route matched with those values"}
    curl -s localhost:8100/metrics | head        # Prometheus metrics
    curl -s --unix-socket $STATE/admin.sock localhost/routes    # admin API
    curl -s --unix-socket $STATE/admin.sock localhost/config -H 'Content-Type: application/yaml' \\
         --data-binary @examples/limen.yaml       # apply a config live

  Ctrl-C stops it.

MSG
exec_status=0
bin/limen-dataplane --config examples/limen.yaml --proxy-listen 0.0.0.0:8000 \
  --admin-listen "unix:$STATE/admin.sock" --status-listen 127.0.0.1:8100 --state-dir "$STATE" || exec_status=$?
exit $exec_status

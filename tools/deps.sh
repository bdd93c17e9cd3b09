#!/usr/bin/env bash
# Installs the Debian packages Limen's build, tests and benchmarks need, only
# those that are missing (idempotent). Run as root (or with sudo available).
set -euo pipefail

BUILD_PKGS="build-essential pkg-config libuv1-dev libssl-dev libcjson-dev libyaml-dev libpcre2-dev zlib1g-dev libcurl4-openssl-dev libnghttp2-dev"
TEST_PKGS="clang libclang-rt-14-dev llvm curl python3 procps nghttp2-client libwebsockets-dev"
BENCH_PKGS="wrk nginx-light haproxy"

want="$BUILD_PKGS $TEST_PKGS"
case "${1:-}" in
  --bench) want="$want $BENCH_PKGS" ;;
esac

missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Python test harness packages (dataplane/t/requirements.txt), from PyPI
if ! python3 -c 'import pytest, prometheus_client, h2, grpc, opentelemetry.proto' 2>/dev/null; then
  python3 -m pip install -q pytest -r "$(dirname "$0")/../dataplane/t/requirements.txt" >/dev/null 2>&1 ||
    missing="$missing python3-pytest python3-prometheus-client python3-h2 python3-grpcio"
fi
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
echo "limen: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# nginx and haproxy must not start as system services: the benchmark starts its own.
printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
$SUDO chmod +x /usr/sbin/policy-rc.d
trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null

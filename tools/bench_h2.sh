#!/usr/bin/env bash
# Part of `make bench`: HTTP/2 over TLS, Limen against nginx in the same run,
# one worker each, the same certificate (ECDSA P-256) and the same upstream
# (an nginx answering 200, keep-alive). h2load drives both; CPU per request is
# the proxy's user+system time over the requests it served.
set -euo pipefail
cd "$(dirname "$0")/.."
B=build/bench-h2; rm -rf "$B"; mkdir -p "$B"
N=${BENCH_H2_REQUESTS:-200000}
UP=19280 NG=19281 LM=19282
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
command -v h2load >/dev/null || { echo "h2load not installed (nghttp2-client): HTTP/2 figures skipped"; exit 0; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$B/k.pem" -out "$B/c.pem" \
  -days 2 -subj /CN=localhost 2>/dev/null
cat >"$B/up.conf" <<NG
worker_processes 1; daemon off; pid $PWD/$B/up.pid; error_log $PWD/$B/up-error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { return 200 "hello from the upstream\n"; } } }
NG
cat >"$B/ng.conf" <<NG
worker_processes 1; daemon off; pid $PWD/$B/ng.pid; error_log $PWD/$B/ng-error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream up { server 127.0.0.1:$UP; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$NG ssl http2; ssl_certificate $PWD/$B/c.pem; ssl_certificate_key $PWD/$B/k.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NG
printf '_format_version: "3.0"\nservices:\n- name: up\n  url: http://127.0.0.1:%s\n  routes:\n  - name: all\n    paths: ["/"]\n' \
  "$UP" >"$B/limen.yaml"

nginx -c "$PWD/$B/up.conf" -p "$PWD/$B" & PIDS+=($!)
nginx -c "$PWD/$B/ng.conf" -p "$PWD/$B" & PIDS+=($!)
bin/limen-dataplane --config "$B/limen.yaml" --workers 1 --proxy-listen "127.0.0.1:$LM ssl http2" \
  --ssl-cert "$B/c.pem" --ssl-cert-key "$B/k.pem" --admin-listen off --status-listen off \
  --state-dir "$PWD/$B/state" --no-latency-headers >"$B/limen.log" 2>&1 & PIDS+=($!); LM_PID=$!
sleep 1
NG_PID=$(pgrep -P "$(cat "$B/ng.pid")")  # ng.conf's one worker
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

run() { # name port pid
  h2load -n 20000 -c 10 -m 10 -t 1 "https://127.0.0.1:$2/" >/dev/null 2>&1  # warm-up
  local c0; c0=$(cpu "$3")
  h2load -n "$N" -c 10 -m 10 -t 1 "https://127.0.0.1:$2/" >"$B/$1.txt" 2>&1
  local c1; c1=$(cpu "$3")
  local rps; rps=$(awk '/^finished in/ {gsub(",",""); print $4}' "$B/$1.txt")
  local ok; ok=$(awk '/^requests:/ {print $8}' "$B/$1.txt")
  local us; us=$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v n="$N" 'BEGIN {printf "%.2f", d / hz / n * 1e6}')
  echo "$1 $rps $us $ok"
}
echo "== HTTP/2 over TLS (h2load -c 10 -m 10, $N requests, 1 worker each) =="
L=$(run limen "$LM" "$LM_PID"); G=$(run nginx "$NG" "$NG_PID")
read -r _ lr lu lok <<<"$L"; read -r _ gr gu gok <<<"$G"
printf "limen %10.0f req/s %7s us CPU/request (%s succeeded)\n" "$lr" "$lu" "$lok"
printf "nginx %10.0f req/s %7s us CPU/request (%s succeeded)\n" "$gr" "$gu" "$gok"
awk -v a="$lu" -v b="$gu" -v ra="$lr" -v rb="$gr" \
  'BEGIN {printf "limen/nginx: %.2fx throughput, %.2fx CPU per request (target: at least nginx)\n", ra / rb, a / b}'

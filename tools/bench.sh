#!/usr/bin/env bash
# `make bench`: Limen against nginx and HAProxy on this machine, in one run.
# Not a test: it prints figures. Each proxy runs one worker; all three proxy
# to the same nginx upstream (keep-alive on both sides); wrk drives the load.
set -euo pipefail
cd "$(dirname "$0")/.."
B=build/bench; rm -rf "$B"; mkdir -p "$B"
DUR=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNECTIONS:-50}
UP_PORT=19080 NG_PORT=19081 HA_PORT=19082 LM_PORT=19083 LM_STATUS=19183
NG_TLS=19281 HA_TLS=19282 LM_TLS=19283 # the same three proxies' HTTPS listeners
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# one certificate for all three: ECDSA P-256 (TLS 1.3 only, no resumption: see the TLS section)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$B/tls.key" -out "$B/tls.crt" \
  -days 7 -subj /CN=bench.limen -addext subjectAltName=DNS:bench.limen 2>/dev/null
cat "$B/tls.crt" "$B/tls.key" >"$B/tls.pem"

cat >"$B/upstream.conf" <<NG
worker_processes 1; daemon off; pid $PWD/$B/up.pid; error_log $PWD/$B/up-error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP_PORT; $(for i in $(seq 1 100); do printf 'listen 127.0.1.%d:%s; ' "$i" "$UP_PORT"; done)
           location / { return 200 "hello from the upstream\n"; } } }
NG
cat >"$B/nginx.conf" <<NG
worker_processes 1; daemon off; pid $PWD/$B/ng.pid; error_log $PWD/$B/ng-error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream up { server 127.0.0.1:$UP_PORT; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$NG_PORT;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; } }
  server { listen 127.0.0.1:$NG_TLS ssl; ssl_certificate $PWD/$B/tls.crt; ssl_certificate_key $PWD/$B/tls.key;
    ssl_protocols TLSv1.3;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; } } }
NG
cat >"$B/haproxy.cfg" <<HA
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
  option forwardfor
frontend fe
  bind 127.0.0.1:$HA_PORT
  bind 127.0.0.1:$HA_TLS ssl crt $PWD/$B/tls.pem ssl-min-ver TLSv1.3
  default_backend be
backend be
  server up 127.0.0.1:$UP_PORT
HA
cat >"$B/limen.yaml" <<LM
_format_version: "3.0"
services:
- name: up
  url: http://127.0.0.1:$UP_PORT
  routes:
  - name: all
    paths: ["/"]
LM

nginx -c "$PWD/$B/upstream.conf" -p "$PWD/$B" & PIDS+=($!)
nginx -c "$PWD/$B/nginx.conf" -p "$PWD/$B" & PIDS+=($!)
haproxy -f "$B/haproxy.cfg" -db >"$B/haproxy.log" 2>&1 & PIDS+=($!); HA_PID=$!
bin/limen-dataplane --config "$B/limen.yaml" --workers 1 --proxy-listen 127.0.0.1:$LM_PORT \
  --proxy-listen "127.0.0.1:$LM_TLS ssl" --ssl-cert "$B/tls.crt" --ssl-cert-key "$B/tls.key" --ssl-protocols TLSv1.3 \
  --admin-listen "unix:$PWD/$B/admin.sock" --status-listen 127.0.0.1:$LM_STATUS --state-dir "$B/state" \
  --log-level warn >"$B/limen.log" 2>&1 & PIDS+=($!); LM_PID=$!
sleep 1
NG_PID=$(pgrep -f "nginx: worker process" -n || true)
# the nginx proxy's worker is the newest worker whose master uses nginx.conf
NG_MASTER=$(pgrep -f "nginx -c $PWD/$B/nginx.conf" | head -1)
NG_PID=$(pgrep -P "$NG_MASTER" | head -1)

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
CLK=$(getconf CLK_TCK)

run() { # name port pid round [wrk options...] -> one line in $B/results.txt
  local name=$1 port=$2 pid=$3 round=$4
  shift 4
  local t0; t0=$(cpu_ticks "$pid")
  wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "$@" "${SCHEME:-http}://127.0.0.1:$port/" >"$B/wrk-$name.txt"
  local t1; t1=$(cpu_ticks "$pid")
  local reqs rps p99 errs
  reqs=$(awk '/requests in/ {print $1}' "$B/wrk-$name.txt")
  rps=$(awk '/Requests\/sec/ {print $2}' "$B/wrk-$name.txt")
  p99=$(awk '$1=="99%" {print $2}' "$B/wrk-$name.txt")
  errs=$(awk '/Non-2xx|Socket errors/ {print}' "$B/wrk-$name.txt" | tr '\n' ' ')
  local us; us=$(awk -v a="$t0" -v b="$t1" -v hz="$CLK" -v n="$reqs" 'BEGIN { printf "%.2f", (b-a)/hz*1e6/n }')
  printf "  round %s %-12s %10s req/s  p99 %8s  %6s us CPU/request  %s\n" "$round" "$name" "$rps" "$p99" "$us" "$errs"
  echo "$name $rps $p99 $us" >>"$B/results.txt"
}

ROUNDS=${BENCH_ROUNDS:-3}
echo "== proxy throughput: one worker each, $CONNS keep-alive connections, ${DUR}s x $ROUNDS rounds (wrk), same upstream =="
for name in nginx haproxy limen; do # warm-up
  port_var=$(echo "$name" | sed 's/nginx/NG_PORT/; s/haproxy/HA_PORT/; s/limen/LM_PORT/')
  curl -sf "http://127.0.0.1:${!port_var}/" >/dev/null || { echo "$name does not answer"; exit 1; }
  wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:${!port_var}/" >/dev/null
done
: >"$B/results.txt"
for round in $(seq "$ROUNDS"); do # interleaved, so drift hits all three alike
  run nginx $NG_PORT "$NG_PID" "$round"
  run haproxy $HA_PORT "$HA_PID" "$round"
  run limen $LM_PORT "$LM_PID" "$round"
done
python3 - "$B/results.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {}
for name in ("nginx", "haproxy", "limen"):
    r = [x for x in rows if x[0] == name]
    med[name] = (statistics.median(float(x[1]) for x in r), statistics.median(float(x[3]) for x in r),
                 sorted(x[2] for x in r)[len(r) // 2])
    print(f"{name:8s} median {med[name][0]:10.0f} req/s  p99 {med[name][2]:>8s}  {med[name][1]:6.2f} us CPU/request")
l, n, h = med["limen"], med["nginx"], med["haproxy"]
print(f"limen CPU/request: {l[1]/n[1]:.2f}x nginx (target <= 0.85), {l[1]/h[1]:.2f}x haproxy; "
      f"req/s: {l[0]/n[0]:.2f}x nginx, {l[0]/h[0]:.2f}x haproxy")
PY

echo
echo "== TLS: the same three proxies on HTTPS listeners: one ECDSA P-256 certificate, TLS 1.3 only, wrk never resumes =="
for v in nginx:$NG_TLS haproxy:$HA_TLS limen:$LM_TLS; do # what each one negotiates with a default client
  printf '  %-8s %s\n' "${v%%:*}" "$(openssl s_client -connect "127.0.0.1:${v##*:}" -servername bench.limen </dev/null 2>/dev/null |
    awk '/^New,/ {sub(/^New, /, ""); c=$0} /Server Temp Key/ {sub(/^Server Temp Key: /, ""); k=$0} END {print c ", " k}')"
  curl -skf "https://127.0.0.1:${v##*:}/" >/dev/null || { echo "${v%%:*} does not answer over TLS"; exit 1; }
  SCHEME=https wrk -t1 -c"$CONNS" -d2s "https://127.0.0.1:${v##*:}/" >/dev/null
done
: >"$B/results.txt"
echo "handshakes: a new TLS connection per request (Connection: close); keep-alive: HTTPS requests on $CONNS connections"
for round in $(seq "$ROUNDS"); do
  SCHEME=https run nginx.hs $NG_TLS "$NG_PID" "$round" -H "Connection: close"
  SCHEME=https run haproxy.hs $HA_TLS "$HA_PID" "$round" -H "Connection: close"
  SCHEME=https run limen.hs $LM_TLS "$LM_PID" "$round" -H "Connection: close"
  SCHEME=https run nginx.ka $NG_TLS "$NG_PID" "$round"
  SCHEME=https run haproxy.ka $HA_TLS "$HA_PID" "$round"
  SCHEME=https run limen.ka $LM_TLS "$LM_PID" "$round"
done
python3 - "$B/results.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for kind, unit, what in (("hs", "handshakes/s", "handshake"), ("ka", "req/s", "request")):
    med = {}
    for name in ("nginx", "haproxy", "limen"):
        r = [x for x in rows if x[0] == f"{name}.{kind}"]
        med[name] = (statistics.median(float(x[1]) for x in r), statistics.median(float(x[3]) for x in r))
        print(f"{name:8s} {kind}  median {med[name][0]:10.0f} {unit:12s} {med[name][1]:7.2f} us CPU/{what}")
    l, n, h = med["limen"], med["nginx"], med["haproxy"]
    print(f"limen TLS {'handshakes' if kind == 'hs' else 'keep-alive'}: {unit} {l[0]/n[0]:.2f}x nginx, {l[0]/h[0]:.2f}x haproxy; "
          f"CPU/{what} {l[1]/n[1]:.2f}x nginx, {l[1]/h[1]:.2f}x haproxy (target: nginx's figures or better)")
PY

echo
echo "== plugins: Limen alone, with key-auth, key-auth + jwt (HS256), prometheus (every metric), file-log =="
TOKEN=$(python3 - <<'PY'
import base64, hashlib, hmac, json
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=")
head = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b(json.dumps({"iss": "bench-iss"}).encode())
sig = b(hmac.new(b"bench-secret", head + b"." + body, hashlib.sha256).digest())
print((head + b"." + body + b"." + sig).decode())
PY
)
plugin_config() { # plugins...
  printf '_format_version: "3.0"\nservices:\n- name: up\n  url: http://127.0.0.1:%s\n  routes: [{name: all, paths: ["/"]}]\n  plugins:\n' "$UP_PORT"
  for p in "$@"; do # "name" or "name|{config}"
    printf '  - name: %s\n' "${p%%|*}"
    if [ "$p" != "${p#*|}" ]; then printf '    config: %s\n' "${p#*|}"; fi
  done
  printf 'consumers:\n- username: bench\n  keyauth_credentials: [{key: bench-key}]\n'
  printf '  jwt_secrets: [{key: bench-iss, secret: bench-secret, algorithm: HS256}]\n'
}
plugin_config key-auth >"$B/limen-ka.yaml"
plugin_config key-auth jwt >"$B/limen-kajwt.yaml"
plugin_config 'prometheus|{per_consumer: true, status_code_metrics: true, latency_metrics: true, bandwidth_metrics: true}' \
  >"$B/limen-prom.yaml"
plugin_config "file-log|{path: $B/file-log.json}" >"$B/limen-flog.yaml"
for v in ka:19084 kajwt:19085 prom:19086 flog:19087; do
  bin/limen-dataplane --config "$B/limen-${v%%:*}.yaml" --workers 1 --proxy-listen "127.0.0.1:${v##*:}" \
    --admin-listen off --status-listen off --state-dir "$B/state-${v%%:*}" --log-level warn \
    >"$B/limen-${v%%:*}.log" 2>&1 & PIDS+=($!)
  eval "PID_${v%%:*}=$!"
done
sleep 1
curl -sf -H 'apikey: bench-key' http://127.0.0.1:19084/ >/dev/null || { echo "key-auth instance does not answer"; cat "$B/limen-ka.log"; exit 1; }
curl -sf -H 'apikey: bench-key' -H "Authorization: Bearer $TOKEN" http://127.0.0.1:19085/ >/dev/null ||
  { echo "key-auth+jwt instance does not answer"; cat "$B/limen-kajwt.log"; exit 1; }
: >"$B/results.txt"
for round in $(seq "$ROUNDS"); do
  run limen $LM_PORT "$LM_PID" "$round"
  run limen+keyauth 19084 "$PID_ka" "$round" -H 'apikey: bench-key'
  run limen+ka+jwt 19085 "$PID_kajwt" "$round" -H 'apikey: bench-key' -H "Authorization: Bearer $TOKEN"
  run limen+prom 19086 "$PID_prom" "$round"
  run limen+filelog 19087 "$PID_flog" "$round"
done
python3 - "$B/results.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {n: statistics.median(float(x[3]) for x in rows if x[0] == n) for n in ("limen", "limen+keyauth", "limen+ka+jwt", "limen+prom", "limen+filelog")}
base = med["limen"]
for n, v in med.items():
    print(f"{n:14s} {v:6.2f} us CPU/request  ({(v / base - 1) * 100:+.1f}% vs no plugin)")
print("target: key-auth under +5%")
PY

echo
echo "== balancing: CPU per request of each algorithm with 2 and 100 targets, against round-robin =="
balancer_config() { # algorithm ntargets
  printf '_format_version: "3.0"\nupstreams:\n- name: pool\n  algorithm: %s\n' "$1"
  [ "$1" = consistent-hashing ] && printf '  hash_on: header\n  hash_on_header: x-user\n'
  printf '  targets:\n'
  for i in $(seq 1 "$2"); do printf '  - target: 127.0.1.%d:%s\n' "$i" "$UP_PORT"; done
  printf 'services:\n- name: up\n  host: pool\n  routes: [{name: all, paths: ["/"]}]\n'
}
: >"$B/results.txt"
port=19090
for n in 2 100; do
  for alg in round-robin least-connections consistent-hashing latency; do
    balancer_config "$alg" "$n" >"$B/bal-$alg-$n.yaml"
    bin/limen-dataplane --config "$B/bal-$alg-$n.yaml" --workers 1 --proxy-listen "127.0.0.1:$port" \
      --admin-listen off --status-listen off --state-dir "$B/state-bal" --log-level warn \
      >"$B/bal-$alg-$n.log" 2>&1 &
    bpid=$!
    sleep 0.5
    curl -sf -H 'x-user: u1' "http://127.0.0.1:$port/" >/dev/null || { echo "$alg/$n does not answer"; cat "$B/bal-$alg-$n.log"; }
    wrk -t1 -c"$CONNS" -d1s -H 'x-user: u1' "http://127.0.0.1:$port/" >/dev/null
    run "$alg.$n" "$port" "$bpid" 1 -H 'x-user: u1'
    kill "$bpid"; wait "$bpid" 2>/dev/null || true
    port=$((port + 1))
  done
done
python3 - "$B/results.txt" <<'PY'
import sys
rows = {l.split()[0]: float(l.split()[3]) for l in open(sys.argv[1])}
for n in ("2", "100"):
    base = rows.get(f"round-robin.{n}")
    for alg in ("round-robin", "least-connections", "consistent-hashing", "latency"):
        v = rows.get(f"{alg}.{n}")
        if v and base:
            print(f"{alg:20s} {n:>3s} targets {v:6.2f} us CPU/request ({(v / base - 1) * 100:+.1f}% vs round-robin)")
print("target: every algorithm within +3% of round-robin")
PY

echo
echo "== memory and config apply =="
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
echo "limen RSS idle (small config): $(rss "$LM_PID") KiB"
python3 - "$B/big.json" "$UP_PORT" <<'PY'
import json, sys
n = 10000
doc = {"_format_version": "3.0", "services": [
    {"name": f"svc-{i}", "url": f"http://127.0.0.1:{sys.argv[2]}/s{i}",
     "routes": [{"name": f"route-{i}", "hosts": [f"host-{i}.example.com"], "paths": [f"/api/v1/resource-{i}"]}]}
    for i in range(n)]}
doc["services"].append({"name": "up", "url": f"http://127.0.0.1:{sys.argv[2]}", "routes": [{"name": "all", "paths": ["/"]}]})
json.dump(doc, open(sys.argv[1], "w"))
PY
# apply the 10k config while wrk keeps sending traffic; no request may fail
wrk -t1 -c20 -d4s "http://127.0.0.1:$LM_PORT/" >"$B/wrk-apply.txt" &
WRK=$!
sleep 1
curl -s -o "$B/apply.json" -w "%{time_total}" --unix-socket "$PWD/$B/admin.sock" -H 'Content-Type: application/json' \
  --data-binary @"$B/big.json" http://localhost/config >"$B/apply-time.txt"
wait $WRK
echo "10,000 services + 10,000 routes via POST /config: $(awk '{printf "%.1f ms", $1*1000}' "$B/apply-time.txt") end to end ($(cat "$B/apply.json"))"
fails=$(grep -E 'Non-2xx|Socket errors' "$B/wrk-apply.txt" | tr '\n' ' ' || true)
echo "traffic during the apply: $(awk '/requests in/ {print $1" requests"}' "$B/wrk-apply.txt"), failures: ${fails:-none}"
sleep 0.5
curl -sf -H 'Host: host-9999.example.com' "http://127.0.0.1:$LM_PORT/api/v1/resource-9999" >/dev/null && echo "a route of the new config answers"
echo "limen RSS with the 10k config: $(rss "$LM_PID") KiB"
echo
echo "== POST /config at Kubernetes scale (tools/bench_apply.py: 5,000 Ingresses, 1,000 certificates, idle, 1 worker) =="
python3 tools/bench_apply.py --repeat "${BENCH_APPLY_REPEAT:-10}" | tail -3

echo
echo "== route matching (in-process, build/bench/router_bench) =="
"$B/../rel/router_bench" 2>/dev/null || true

#!/usr/bin/env python3
"""make bench-controller: the controller at scale against a real kube-apiserver.

Creates N Ingresses with N Services and N EndpointSlices and N/5 TLS Secrets (default N=5000), starts
the release limen-controller pushing to a release limen-dataplane, then measures
  - time to first full sync (controller start -> /readyz 200, i.e. caches synced and pushed),
  - time from an Ingress write to traffic routed by it (p50, p99 over --samples writes),
  - the controller's RSS.
Prints one JSON object and a table. Usage: tools/bench_controller.py [--objects N] [--samples K]
"""
import argparse
import concurrent.futures
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "e2e" / "t"))
os.environ.setdefault("LIMEN_CTL_BIN", str(ROOT / "bin" / "limen-controller"))
os.environ.setdefault("LIMEN_BIN", str(ROOT / "bin" / "limen-dataplane"))
from conftest import ApiServer  # noqa: E402
from stack import Stack, wait_until  # noqa: E402

NS = "bench"


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


class Creator:
    """POSTs objects in parallel over a few HTTPS connections (kubectl would take minutes)."""

    def __init__(self, api, threads=16):
        self.api, self.local = api, threading.local()
        self.pool = concurrent.futures.ThreadPoolExecutor(threads)

    def post(self, path, obj):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = self.api.connect()
        last = None
        for attempt in range(8):
            try:
                conn.request("POST", path, body=json.dumps(obj), headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                body = r.read()
                if r.status in (200, 201, 409):
                    return
                if r.status == 429 or r.status >= 500:
                    last = f"{r.status} {body[:200]!r}"
                    time.sleep(0.2 * (attempt + 1))
                    continue
                raise RuntimeError(f"POST {path}: {r.status} {body[:300]!r}")
            except (ConnectionError, OSError) as e:
                last = repr(e)
                conn = self.local.conn = self.api.connect()
        raise RuntimeError(f"POST {path}: gave up: {last}")

    def all(self, items):
        list(self.pool.map(lambda pa: self.post(*pa), items))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=int(os.environ.get("LIMEN_BENCH_OBJECTS", "5000")))
    ap.add_argument("--samples", type=int, default=100)
    args = ap.parse_args()
    n = args.objects

    env = ROOT / "tools" / "e2e-env.sh"
    subprocess.run([str(env), "build"], check=True)
    d = tempfile.mkdtemp(prefix="limen-bench-api-")
    subprocess.run([str(env), "start", d], check=True)
    api = ApiServer(d)
    stack = None
    try:
        stack = Stack(api)
        if not stack.ip:
            sys.exit("bench-controller: no non-loopback IPv4 address for the upstream")
        up = stack.upstream("bench")
        api.apply(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n")
        api.apply("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: limen}\n"
                  "spec: {controller: limen.dev/ingress-controller}\n")
        # a certificate shared by the TLS secrets (content does not matter for the controller's work)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                        "/CN=bench.example.com", "-keyout", f"{d}/k.pem", "-out", f"{d}/c.pem"],
                       check=True, capture_output=True)
        import base64
        crt = base64.b64encode(open(f"{d}/c.pem", "rb").read()).decode()
        key = base64.b64encode(open(f"{d}/k.pem", "rb").read()).decode()
        cr = Creator(api)
        t0 = time.monotonic()
        objs = []
        for i in range(n):
            objs.append((f"/api/v1/namespaces/{NS}/services", {
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}", "namespace": NS},
                # headless: the e2e API server's service range (a /24) has no room for 5,000
                # cluster IPs, and the controller routes to EndpointSlice addresses anyway
                "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80, "targetPort": up.port}]}}))
            objs.append((f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices", {
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"s{i}-1", "namespace": NS, "labels": {"kubernetes.io/service-name": f"s{i}"}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": up.port, "protocol": "TCP"}],
                "endpoints": [{"addresses": [stack.ip], "conditions": {"ready": True}}]}))
        for i in range(n // 5):
            objs.append((f"/api/v1/namespaces/{NS}/secrets", {
                "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": f"tls{i}", "namespace": NS}, "data": {"tls.crt": crt, "tls.key": key}}))

        def ing(i, host):
            spec = {"ingressClassName": "limen", "rules": [{"host": host, "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": f"s{i % n}", "port": {"number": 80}}}}]}}]}
            if i < n // 5:
                spec["tls"] = [{"hosts": [host], "secretName": f"tls{i}"}]
            return (f"/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses", {
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": f"i{i}", "namespace": NS}, "spec": spec})
        for i in range(n):
            objs.append(ing(i, f"h{i}.bench.example.com"))
        cr.all(objs)
        print(f"created {len(objs)} objects in {time.monotonic() - t0:.1f}s", flush=True)

        dp = stack.dataplane(workers=1)
        t0 = time.monotonic()
        ctl = stack.controller("--election", "false", "--update-status", "false", dataplanes=[dp], wait=False)
        ctl.wait_ready(timeout=300)
        first_sync = time.monotonic() - t0
        wait_until(lambda: dp.request("GET", "/", headers={"Host": f"h{n - 1}.bench.example.com"})[0] == 200,
                   timeout=60, what="last Ingress routed")
        rss_sync = rss_kb(ctl.proc.pid)

        def write_to_traffic(k):
            host = f"new{k}.bench.example.com"
            path, obj = ing(n + k, host)
            obj["spec"].pop("tls", None)
            t1 = time.monotonic()
            cr.post(path, obj)
            while dp.request("GET", "/", headers={"Host": host})[0] != 200:
                if time.monotonic() - t1 > 30:
                    raise RuntimeError(f"Ingress {host} not routed after 30 s")
                time.sleep(0.001)
            return (time.monotonic() - t1) * 1000

        # isolated writes (the cluster was quiet for longer than the 100 ms sync interval), then
        # back-to-back writes (each right after the previous one is routed: the interval shows)
        lat = []
        for k in range(args.samples):
            time.sleep(0.25)
            lat.append(write_to_traffic(k))
        b2b = [write_to_traffic(args.samples + k) for k in range(args.samples)]
        time.sleep(2)  # steady state: the controller gives memory back once quiet
        rss_end = rss_kb(ctl.proc.pid)
        rss_peak = 0
        for line in open(f"/proc/{ctl.proc.pid}/status"):
            if line.startswith("VmHWM:"):
                rss_peak = int(line.split()[1])
        m = ctl.metrics()
        syncs = [line for line in m.splitlines()
                 if line.startswith(("limen_controller_sync_duration_seconds_sum",
                                     "limen_controller_sync_duration_seconds_count",
                                     "limen_controller_push_duration_seconds_sum",
                                     "limen_controller_push_duration_seconds_count"))]
        import re
        applies = [(float(a), float(b)) for a, b in
                   re.findall(r"applied \(parse ([0-9.]+) ms, compile ([0-9.]+) ms\)", dp.read_log())]
        applies = applies[-2 * args.samples:] or [(0.0, 0.0)]
        res = {
            "objects": {"ingresses": n, "services": n, "endpointslices": n, "secrets": n // 5},
            "first_full_sync_s": round(first_sync, 2),
            "ingress_to_traffic_ms": {"p50": round(pct(lat, 50), 1), "p99": round(pct(lat, 99), 1),
                                      "max": round(max(lat), 1), "samples": len(lat)},
            "back_to_back_ingress_to_traffic_ms": {"p50": round(pct(b2b, 50), 1), "p99": round(pct(b2b, 99), 1),
                                                   "samples": len(b2b)},
            "controller_rss_mb": {"after_sync": round(rss_sync / 1024, 1), "end": round(rss_end / 1024, 1),
                                  "peak": round(rss_peak / 1024, 1)},
            "sync_metrics": syncs,
            "dataplane_apply_ms": {"parse_p50": pct([a for a, _ in applies], 50),
                                   "compile_p50": pct([b for _, b in applies], 50)},
        }
        print(json.dumps(res, indent=2))
        print(f"\n| metric | value | target |\n|---|---|---|\n"
              f"| Ingress write -> routed, p50 | {res['ingress_to_traffic_ms']['p50']} ms | |\n"
              f"| Ingress write -> routed, p99 | {res['ingress_to_traffic_ms']['p99']} ms | < 100 ms |\n"
              f"| back-to-back writes -> routed, p50 / p99 | {res['back_to_back_ingress_to_traffic_ms']['p50']} / "
              f"{res['back_to_back_ingress_to_traffic_ms']['p99']} ms | (>= the 100 ms sync interval) |\n"
              f"| first full sync ({n} Ingresses) | {res['first_full_sync_s']} s | |\n"
              f"| controller RSS (steady, after the writes) | {res['controller_rss_mb']['end']} MB | < 64 MB |\n"
              f"| controller peak RSS (during syncs) | {res['controller_rss_mb']['peak']} MB | |")
    finally:
        if stack:
            try:
                stack.close()
            except AssertionError as e:
                print("bench-controller: shutdown:", str(e)[-2000:], file=sys.stderr)
        subprocess.run([str(env), "stop", d])


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()

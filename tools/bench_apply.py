#!/usr/bin/env python3
"""POST /config at Kubernetes scale: one idle release data plane (1 worker), documents from
tools/gen_k8s_doc.py (5,000 Ingresses, 1,000 certificates: ~8 MB), posted with curl over the admin unix
socket as the controller does (Content-Type: application/json, ?check_hash=1, no Expect).

Measures the first apply and --repeat applies of documents that each add one route, and prints for each
curl's time_total and the data plane's logged parse/compile split, then the medians.
Usage: tools/bench_apply.py [--n 5000] [--repeat 10] [--bin bin/limen-dataplane] [--perf perf.data]
--perf records the data plane with `perf record --call-graph dwarf` during the repeated applies.
"""
import argparse
import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--bin", default=str(ROOT / "bin" / "limen-dataplane"))
    ap.add_argument("--perf")
    ap.add_argument("--state-dir", help="default: in the temporary directory")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    d = pathlib.Path(tempfile.mkdtemp(prefix="limen-bench-apply-"))
    gen = ROOT / "tools" / "gen_k8s_doc.py"
    docs = []
    for k in range(args.repeat + 1):
        p = d / f"doc{k}.json"
        subprocess.run([sys.executable, str(gen), str(p), "--n", str(args.n), "--extra", str(k)], check=True,
                       capture_output=True)
        docs.append(p)
    sock = d / "admin.sock"
    log = open(d / "dp.log", "w")
    dp = subprocess.Popen([args.bin, "--workers", "1", "--proxy-listen", "127.0.0.1:0",
                           "--admin-listen", f"unix:{sock}", "--status-listen", "off",
                           "--state-dir", args.state_dir or str(d / "state"), "--log-level", "info"], stdout=log, stderr=log)
    perf = None
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)

        def post(p):
            r = subprocess.run(["curl", "-s", "-o", str(d / "resp.json"), "-w", "%{http_code} %{time_total}",
                                "--unix-socket", str(sock), "-H", "Content-Type: application/json", "-H", "Expect:",
                                "--data-binary", f"@{p}", "http://localhost/config?check_hash=1"],
                               check=True, capture_output=True, text=True)
            code, t = r.stdout.split()
            body = json.loads((d / "resp.json").read_text() or "{}")
            if code != "201":
                raise SystemExit(f"POST /config: {code} {body}")
            # the controller's hash: md5 of the text it sends (cJSON_PrintUnformatted's, as this one)
            want = hashlib.md5(p.read_bytes()).hexdigest()
            if body.get("configuration_hash") != want:
                raise SystemExit(f"configuration_hash {body.get('configuration_hash')}, want {want}")
            return float(t) * 1000, body.get("parse_ms", 0.0), body.get("compile_ms", 0.0)

        size = docs[0].stat().st_size
        first = post(docs[0])
        time.sleep(0.5)
        if args.perf:
            perf = subprocess.Popen(["perf", "record", "--call-graph", "dwarf,16384", "-F", "2000", "-o", args.perf, "-p", str(dp.pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        rows = []
        for p in docs[1:]:
            rows.append(post(p))
            time.sleep(0.2)
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait()
        # the state file ends up with the last document's hash
        time.sleep(0.3)
        print(f"document: {args.n} Ingresses, {args.n // 5} certificates, {size / 1e6:.1f} MB")
        print(f"first apply:    total {first[0]:7.1f} ms  parse {first[1]:6.1f} ms  compile {first[2]:6.1f} ms")
        for i, r in enumerate(rows):
            print(f"apply {i + 1:2d} (+1 route): total {r[0]:7.1f} ms  parse {r[1]:6.1f} ms  compile {r[2]:6.1f} ms")
        if rows:
            med = [statistics.median(r[i] for r in rows) for i in range(3)]
            print(f"median of {len(rows)}: total {med[0]:7.1f} ms  parse {med[1]:6.1f} ms  compile {med[2]:6.1f} ms  "
                  f"other {med[0] - med[1] - med[2]:6.1f} ms")
    finally:
        dp.send_signal(signal.SIGTERM)
        try:
            dp.wait(timeout=30)
        except subprocess.TimeoutExpired:
            dp.kill()
        log.close()
        if args.keep:
            print(f"kept {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A declarative document shaped like limen-controller's output for N Ingresses (tools/bench_controller.py's
cluster): per Ingress i in namespace "bench" a Service s{i} (port 80) with one ready endpoint, an Ingress
i{i} routing host h{i}.bench.example.com path "/" to it, and for the first N/5 Ingresses a TLS Secret
tls{i} naming that host. Keys, order and tags as controller/translate*.c writes them; printed compact
(cJSON_PrintUnformatted's bytes for this ASCII content).

Usage: tools/gen_k8s_doc.py OUT.json [--n 5000] [--extra K] [--upstream IP:PORT] [--cert C.pem --key K.pem]
--extra K adds K more Ingresses (each a new route on its own service), so successive documents differ by
one route each. Without --cert/--key a self-signed RSA 2048 pair is made with openssl (cached in
build/bench-apply/).
"""
import argparse
import hashlib
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
NS = "bench"


def uid(kind, i):
    h = hashlib.md5(f"{kind}/{i}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


def tags(kind, name, i, group=None):
    t = [f"k8s-kind:{kind}", f"k8s-namespace:{NS}", f"k8s-name:{name}", f"k8s-uid:{uid(kind, i)}"]
    if group:
        t.append(f"k8s-group:{group}")
    t.append("k8s-version:v1")
    return t


def cert_pair(args):
    if args.cert and args.key:
        return open(args.cert).read(), open(args.key).read()
    d = ROOT / "build" / "bench-apply"
    d.mkdir(parents=True, exist_ok=True)
    c, k = d / "c.pem", d / "k.pem"
    if not c.exists() or not k.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj",
                        "/CN=bench.example.com", "-keyout", str(k), "-out", str(c)], check=True, capture_output=True)
    return c.read_text(), k.read_text()


def document(n, extra, upstream, cert, key):
    total = n + extra
    services, upstreams, certs = [], [], []
    ip, port = upstream.rsplit(":", 1)
    for i in range(total):
        svc_tags = tags("Service", f"s{i}", i)
        ing_tags = tags("Ingress", f"i{i}", i, "networking.k8s.io")
        services.append({
            "name": f"{NS}.s{i}.80", "host": f"s{i}.{NS}.80.svc", "port": 80, "protocol": "http", "tags": svc_tags,
            "routes": [{
                "name": f"{NS}.i{i}.0.0", "paths": ["/"], "hosts": [f"h{i}.bench.example.com"],
                "protocols": ["http", "https"], "strip_path": False, "preserve_host": True,
                "https_redirect_status_code": 426, "regex_priority": 0, "path_handling": "v0", "tags": ing_tags}]})
        upstreams.append({"name": f"s{i}.{NS}.80.svc", "tags": svc_tags,
                          "targets": [{"target": f"{ip}:{port}", "weight": 100, "tags": svc_tags}]})
    for i in range(n // 5):
        certs.append({"id": uid("cert", i), "cert": cert, "key": key, "tags": tags("Secret", f"tls{i}", i),
                      "snis": [{"name": f"h{i}.bench.example.com",
                                "tags": tags("Ingress", f"i{i}", i, "networking.k8s.io")}]})
    services.sort(key=lambda s: s["name"])
    upstreams.sort(key=lambda u: u["name"])
    return {"_format_version": "3.0", "services": services, "upstreams": upstreams, "certificates": certs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--extra", type=int, default=0)
    ap.add_argument("--upstream", default="10.1.2.3:8080")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    args = ap.parse_args()
    cert, key = cert_pair(args)
    doc = document(args.n, args.extra, args.upstream, cert, key)
    text = json.dumps(doc, separators=(",", ":"))
    pathlib.Path(args.out).write_text(text)
    print(f"{args.out}: {len(text)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()

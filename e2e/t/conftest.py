"""A real kube-apiserver (embedded etcd, built from Go modules by tools/e2e-env.sh) for the session.

The `apiserver` fixture builds build/e2e/{limen-apiserver,kubectl} when they are missing or stale,
starts the API server in a temp dir and stops it when the session ends. It offers kubectl and plain
HTTPS (client certificate or bearer token), the two ways our C controller will talk to it.
"""
import http.client
import json
import os
import pathlib
import ssl
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENV = ROOT / "tools" / "e2e-env.sh"
OUT = ROOT / "build" / "e2e"


class ApiServer:
    def __init__(self, dir):
        self.dir = pathlib.Path(dir)
        self.kubeconfig = self.dir / "kubeconfig"
        self.url = (self.dir / "url").read_text().strip()
        self.host, self.port = self.url.removeprefix("https://").rsplit(":", 1)
        self.pki = self.dir / "pki"

    # --- kubectl ---
    def kubectl(self, *args, input=None, kubeconfig=None, check=True):
        cmd = [str(OUT / "kubectl"), "--kubeconfig", str(kubeconfig or self.kubeconfig), *args]
        r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(args)}: rc={r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def apply(self, manifest):
        return self.kubectl("apply", "-f", "-", input=manifest).stdout

    def get_json(self, *args, **kw):
        return json.loads(self.kubectl("get", "-o", "json", *args, **kw).stdout)

    # --- plain HTTPS, the way the controller talks to the API server ---
    def ssl_context(self, user="admin"):
        """Verifies the server against our CA; presents DIR/pki/USER.crt unless user is None."""
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        if user:
            ctx.load_cert_chain(str(self.pki / f"{user}.crt"), str(self.pki / f"{user}.key"))
        return ctx

    def connect(self, user="admin", timeout=10):
        return http.client.HTTPSConnection(self.host, int(self.port),
                                           context=self.ssl_context(user), timeout=timeout)

    def request(self, method, path, body=None, user="admin", token=None, content_type="application/json"):
        """One request; returns (status, decoded JSON body or text). token: bearer auth, no cert."""
        conn = self.connect(user=None if token else user)
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = "Bearer " + token
        if body is not None:
            headers["Content-Type"] = content_type
            body = body if isinstance(body, (bytes, str)) else json.dumps(body)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read().decode()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(data)
        except ValueError:
            return resp.status, data


def _run(*args, timeout):
    r = subprocess.run([str(ENV), *args], capture_output=True, text=True, timeout=timeout)
    out = (r.stdout + r.stderr).strip()
    if out:
        print(out)
    if r.returncode != 0:
        pytest.fail(f"e2e-env.sh {' '.join(args)} failed (rc={r.returncode}):\n{out}", pytrace=False)
    return out


@pytest.fixture(scope="session")
def apiserver(tmp_path_factory):
    # the first build on a machine downloads modules and compiles Kubernetes: allow it time
    _run("build", timeout=int(os.environ.get("LIMEN_E2E_BUILD_TIMEOUT", "5400")))
    dir = tmp_path_factory.mktemp("apiserver")
    t0 = time.monotonic()
    _run("start", str(dir), timeout=120)
    print(f"apiserver started in {time.monotonic() - t0:.1f}s")
    try:
        yield ApiServer(dir)
    finally:
        _run("stop", str(dir), timeout=120)

"""The whole product against a real API server: CRDs from the repository, limen-controller running as
the limen-controller ServiceAccount with a token and exactly the RBAC the Helm chart renders (chart.py:
a permission missing from charts/limen/templates/rbac.yaml fails these tests),
a real limen-dataplane it pushes to over a unix socket, and upstreams on a non-loopback address
(the API server refuses loopback addresses in EndpointSlices)."""
import importlib.util
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from chart import controller_rbac

ROOT = pathlib.Path(__file__).resolve().parents[2]
# the data plane's black-box harness (dataplane/t/conftest.py), loaded under its own name
_spec = importlib.util.spec_from_file_location("dataplane_harness", ROOT / "dataplane" / "t" / "conftest.py")
_dp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_dp)
Limen, Upstream, free_port, wait_until = _dp.Limen, _dp.Upstream, _dp.free_port, _dp.wait_until

CTL_BIN = os.environ.get("LIMEN_CTL_BIN", str(ROOT / "bin" / "asan" / "limen-controller"))
DP_BIN = os.environ.get("LIMEN_BIN", str(ROOT / "bin" / "asan" / "limen-dataplane"))


def host_ip():
    """A local IPv4 address the API server accepts in an EndpointSlice (not loopback, not link-local),
    or None. Upstreams bind to it; the data plane reaches it without leaving the machine."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            addr = parts[parts.index("inet") + 1].split("/")[0]
            try:
                s = socket.socket()
                s.bind((addr, 0))
                s.close()
                return addr
            except OSError:
                continue
    # no global address: add one on a dummy interface (needs root)
    addr = "10.254.254.1"
    r = subprocess.run(["sh", "-c", f"ip link add limen-e2e type dummy 2>/dev/null; ip addr add {addr}/32 dev limen-e2e"
                        f" 2>/dev/null; ip link set limen-e2e up"], capture_output=True)
    try:
        s = socket.socket()
        s.bind((addr, 0))
        s.close()
        return addr
    except OSError:
        return None


class Controller:
    def __init__(self, kubeconfig, args=(), name="ctl", env=None):
        self.tmp = tempfile.mkdtemp(prefix=f"limen-{name}-")
        self.port = free_port()
        self.log_path = os.path.join(self.tmp, "controller.log")
        self.args = [CTL_BIN, "--kubeconfig", str(kubeconfig), "--listen", f"127.0.0.1:{self.port}", *args]
        self.env = dict(os.environ)
        self.env.setdefault("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1")
        if env:
            self.env.update(env)
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        return self

    def read_log(self):
        try:
            return pathlib.Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def get(self, path, timeout=5):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("controller exited:\n" + self.read_log()[-4000:])
        try:
            return self.get("/readyz")[0] == 200
        except OSError:
            return False

    def wait_ready(self, timeout=30):
        wait_until(self.ready, timeout=timeout, what="controller /readyz")
        return self

    def config(self):
        return json.loads(self.get("/debug/config")[1])

    def metrics(self):
        return self.get("/metrics")[1]

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Stops it; asserts a clean exit (status 0 on SIGTERM, no sanitizer report)."""
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("controller did not stop:\n" + self.read_log()[-4000:])
        self.log.close()
        if sig == signal.SIGTERM:
            log = self.read_log()
            assert rc == 0, f"controller exited {rc}:\n{log[-6000:]}"
            assert "ERROR: AddressSanitizer" not in log and "runtime error:" not in log, log[-6000:]
            assert "LeakSanitizer" not in log, log[-6000:]


class Stack:
    """CRDs, RBAC, a token kubeconfig, one data plane; controllers started on demand."""

    def __init__(self, api):
        self.api = api
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="limen-stack-"))
        self.ip = host_ip()
        self.controllers = []
        self.dataplanes = []
        self.upstreams = []
        for crd in sorted((ROOT / "crds").glob("*.yaml")):
            api.kubectl("apply", "-f", str(crd))
        for crd in sorted((ROOT / "crds").glob("*.yaml")):
            name = next(line.split(":", 1)[1].strip() for line in crd.read_text().splitlines()
                        if line.strip().startswith("name:"))
            api.kubectl("wait", "--for=condition=Established", "--timeout=30s", f"crd/{name}")
        api.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: limen-system}\n")
        api.apply(controller_rbac())
        token = api.kubectl("create", "token", "limen-controller", "-n", "limen-system",
                            "--duration=24h").stdout.strip()
        self.kubeconfig = self.tmp / "controller.kubeconfig"
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "limen",
            "clusters": [{"name": "e2e", "cluster": {"server": api.url,
                                                     "certificate-authority": str(api.pki / "ca.crt")}}],
            "users": [{"name": "limen", "user": {"token": token}}],
            "contexts": [{"name": "limen", "context": {"cluster": "e2e", "user": "limen",
                                                       "namespace": "limen-system"}}],
        }))

    def dataplane(self, workers=1):
        dp = Limen(None, extra_args=("--managed",), workers=workers)
        dp.args[0] = DP_BIN
        dp.tls_port = free_port()  # TLS (and HTTP/2 by ALPN) with the certificates Ingresses name
        dp.args += ["--proxy-listen", f"127.0.0.1:{dp.tls_port} ssl http2"]
        dp.start()
        self.dataplanes.append(dp)
        return dp

    def controller(self, *args, dataplanes=(), name="ctl", wait=True):
        a = ["--election-namespace", "limen-system", "--lease-seconds", "4", *args]
        for dp in dataplanes:
            a += ["--dataplane", f"unix:{dp.admin_sock}"]
        c = Controller(self.kubeconfig, a, name=name).start()
        self.controllers.append(c)
        if wait:
            c.wait_ready()
        return c

    def upstream(self, name):
        up = Upstream(host=self.ip, name=name).start()
        self.upstreams.append(up)
        return up

    def close(self):
        errors = []
        for c in self.controllers:
            try:
                c.stop()
            except AssertionError as e:
                errors.append(str(e))
        for dp in self.dataplanes:
            try:
                dp.stop()
            except Exception as e:  # noqa: BLE001
                errors.append(str(e))
        for up in self.upstreams:
            up.stop()
        if errors:
            raise AssertionError("\n".join(errors))


def service(ns, name, port=80, target=8080, port_name="http"):
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  ports: [{{name: {port_name}, port: {port}, targetPort: {target}, protocol: TCP}}]
"""


def slice_(ns, svc, addrs, port, name=None, port_name="http", ready=True, terminating=False):
    cond = f"ready: {str(ready).lower()}" + (", terminating: true" if terminating else "")
    eps = "".join(f"\n- addresses: [\"{a}\"]\n  conditions: {{{cond}}}" for a in addrs)
    return f"""
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name or svc + '-1'}
  namespace: {ns}
  labels: {{kubernetes.io/service-name: {svc}}}
addressType: IPv4
ports: [{{name: {port_name}, port: {port}, protocol: TCP}}]
endpoints:{eps if addrs else ' []'}
"""

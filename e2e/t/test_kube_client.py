"""The C Kubernetes client (controller/kube_*.c) against a real kube-apiserver, through
build/rel/controller/kube_probe: kubeconfig auth (client certificate, bearer token, tokenFile
rotation), LIST pagination, WATCH order and bookmarks, namespaces and label selectors, 403 retried
until RBAC allows it, a reconnect after the API server restarts, and 410 Gone -> relist with the
right diff. The probe prints one JSON line per event (see the top of controller/kube_probe.c)."""
import http.client
import json
import os
import pathlib
import queue
import signal
import socket
import subprocess
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# LIMEN_KUBE_PROBE: another build of the probe (an ASan one: a leak at exit fails Probe.close)
PROBE = pathlib.Path(os.environ.get("LIMEN_KUBE_PROBE", ROOT / "build" / "rel" / "controller" / "kube_probe"))
ENV = ROOT / "tools" / "e2e-env.sh"
KUBECTL = ROOT / "build" / "e2e" / "kubectl"

pytestmark = pytest.mark.skipif(
    not PROBE.exists(), reason=f"{PROBE} is not built: make build/rel/controller/kube_probe")

WATCHED = ("ADDED", "MODIFIED", "DELETED")


class Probe:
    """kube_probe as a subprocess: its stdout lines parsed as they come, stdin for commands."""

    def __init__(self, args, tmp_path, name="probe"):
        self.stderr_path = tmp_path / f"{name}.stderr"
        self.lines, self.eof = [], False
        self.cond = threading.Condition()
        self._err = open(self.stderr_path, "w")
        self.p = subprocess.Popen([str(PROBE), *map(str, args)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self._err, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"event": "RAW", "line": line}
            with self.cond:
                self.lines.append(ev)
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def mark(self):
        with self.cond:
            return len(self.lines)

    def wait(self, pred, what, timeout=20, start=0):
        deadline = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.lines):
                    if pred(self.lines[i]):
                        return self.lines[i]
                    i += 1
                left = deadline - time.monotonic()
                if self.eof or left <= 0:
                    raise AssertionError(f"{'probe exited' if self.eof else 'timed out'} waiting for {what}\n"
                                         f"last lines: {self.lines[-8:]}\nstderr: {self.stderr()[-2000:]}")
                self.cond.wait(left)

    def wait_event(self, ev, name, timeout=20, start=0, inf=0):
        return self.wait(lambda e: e["event"] == ev and e.get("name") == name and e.get("inf") == inf,
                         f"{ev} {name}", timeout, start)

    def synced(self, inf=0, timeout=20):
        return self.wait(lambda e: e["event"] == "SYNCED" and e["inf"] == inf, f"SYNCED of informer {inf}", timeout)

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def stats(self, inf=0):
        m = self.mark()
        self.cmd("stats")
        return self.wait(lambda e: e["event"] == "STATS" and e["inf"] == inf, "STATS", 10, m)

    def keys(self, inf=0):
        m = self.mark()
        self.cmd("list")
        return self.wait(lambda e: e["event"] == "KEYS" and e["inf"] == inf, "KEYS", 10, m)["keys"]

    def events(self, start=0, inf=0):
        with self.cond:
            return [e for e in self.lines[start:] if e["event"] in WATCHED and e["inf"] == inf]

    def stderr(self):
        return self.stderr_path.read_text()

    def close(self, how="stdin"):
        """Ends the probe (EOF on stdin, or SIGTERM) and checks it exits cleanly."""
        if how == "sigterm":
            self.p.send_signal(signal.SIGTERM)
        else:
            self.p.stdin.close()
        rc = self.p.wait(timeout=15)
        self._err.close()
        with self.cond:
            while not self.eof:
                self.cond.wait(1)
        assert rc == 0, f"kube_probe exited with {rc}\n{self.stderr()[-3000:]}"
        assert self.lines and self.lines[-1]["event"] == "EXIT", self.lines[-3:]

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self._err.close()


@pytest.fixture
def probes(tmp_path):
    started = []

    def start(*args, name="probe"):
        p = Probe(args, tmp_path, f"{name}{len(started)}")
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()


def request(probe_args, tmp_path, method, path, body=None):
    """One --request: returns the probe's {"status","error","body"}."""
    args = [str(PROBE), *map(str, probe_args), "--request", method, path]
    if body is not None:
        args.append(json.dumps(body))
    r = subprocess.run(args, capture_output=True, text=True, timeout=30)
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    assert lines and lines[-1] == {"event": "EXIT"}, (r.stdout, r.stderr)
    assert r.returncode == (0 if 200 <= lines[0]["status"] < 300 else 1), (r.returncode, r.stderr)
    return lines[0], r


def bulk_create(api, ns, names, labels=None, workers=8):
    """POSTs ConfigMaps over a few keep-alive connections (kubectl would take ~20 s for 1,000)."""
    todo = queue.Queue()
    for n in names:
        todo.put(n)
    errors = []

    def work():
        conn = api.connect(timeout=30)
        try:
            while True:
                try:
                    name = todo.get_nowait()
                except queue.Empty:
                    return
                body = {"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "labels": labels or {}}, "data": {"k": name}}
                conn.request("POST", f"/api/v1/namespaces/{ns}/configmaps", body=json.dumps(body),
                             headers={"Content-Type": "application/json", "Accept": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 201:
                    errors.append((name, resp.status, data[:200]))
        finally:
            conn.close()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]


def ensure_ns(api, *names):
    api.apply("".join(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {n}}}\n---\n" for n in names))


def api_connections(pid, port):
    """ESTABLISHED TCP connections of process pid to 127.0.0.1:port."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = pathlib.Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if f[3] == "01" and f[9] in inodes and int(f[2].rsplit(":", 1)[1], 16) == port:
                n += 1
    return n


# ---- auth ----------------------------------------------------------------------------------------

def test_client_certificate_kubeconfig_requests(apiserver, tmp_path):
    kc = ["--kubeconfig", apiserver.kubeconfig]
    r, _ = request(kc, tmp_path, "GET", "/version")
    assert r["status"] == 200 and r["body"]["gitVersion"] == "v1.36.3", r
    r, _ = request(kc, tmp_path, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                   {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert r["status"] == 201, r
    info = r["body"]["status"]["userInfo"]
    assert info["username"] == "limen-admin" and "system:masters" in info["groups"], info
    # errors come back with the API server's Status object
    r, _ = request(kc, tmp_path, "GET", "/api/v1/namespaces/default/configmaps/no-such-thing")
    assert r["status"] == 404 and r["body"]["reason"] == "NotFound" and r["error"].startswith("HTTP 404"), r
    ensure_ns(apiserver, "kc-req")
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "made-by-c"}, "data": {"a": "1"}}
    r, _ = request(kc, tmp_path, "POST", "/api/v1/namespaces/kc-req/configmaps", cm)
    assert r["status"] in (201, 409), r
    r, _ = request(kc, tmp_path, "PATCH", "/api/v1/namespaces/kc-req/configmaps/made-by-c", {"data": {"a": "2"}})
    assert r["status"] == 200 and r["body"]["data"] == {"a": "2"}, r
    r, _ = request(kc, tmp_path, "DELETE", "/api/v1/namespaces/kc-req/configmaps/made-by-c")
    assert r["status"] == 200, r
    # a certificate without RBAC bindings: 403 with its Status
    r, _ = request(["--kubeconfig", apiserver.dir / "limited.kubeconfig"], tmp_path, "GET", "/api/v1/secrets")
    assert r["status"] == 403 and r["body"]["reason"] == "Forbidden", r


def test_bearer_token_and_token_file_rotation(apiserver, probes, tmp_path):
    ns = "kc-token"
    ensure_ns(apiserver, ns)
    apiserver.kubectl("create", "serviceaccount", "kc-probe", "-n", ns, check=False)
    # (not ClusterRole "view": it is aggregated by the controller-manager, which does not run here)
    apiserver.apply(f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: kc-probe, namespace: {ns}}}
rules: [{{apiGroups: [""], resources: [configmaps], verbs: [get, list, watch]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: kc-probe, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: kc-probe}}
subjects: [{{kind: ServiceAccount, name: kc-probe, namespace: {ns}}}]
""")
    token = apiserver.kubectl("create", "token", "kc-probe", "-n", ns, "--duration=1h").stdout.strip()
    ca = apiserver.pki / "ca.crt"
    # inline token
    inline = tmp_path / "inline.kubeconfig"
    inline.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: e2e, cluster: {{server: "{apiserver.url}", certificate-authority: "{ca}"}}}}]
users: [{{name: sa, user: {{token: "{token}"}}}}]
contexts: [{{name: sa, context: {{cluster: e2e, user: sa, namespace: {ns}}}}}]
current-context: sa
""")
    r, proc = request(["--kubeconfig", inline], tmp_path, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                      {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert r["status"] == 201, r
    assert r["body"]["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:kc-probe"
    # tokenFile (relative to the kubeconfig): a bad token first, then the real one written over it:
    # the client re-reads the file and the retries succeed without a restart
    d = tmp_path / "rot"
    d.mkdir()
    (d / "token").write_text("not-a-valid-token\n")
    kc = d / "kubeconfig"
    kc.write_text(inline.read_text().replace(f'token: "{token}"', "tokenFile: token"))
    apiserver.kubectl("create", "configmap", "before", "-n", ns, "--from-literal=a=1", check=False)
    p = probes("--kubeconfig", kc, "v1/configmaps", "--ns", ns)
    err = p.wait(lambda e: e["event"] == "ERROR", "a 401 error")
    assert "401" in err["message"], err
    tmp = d / "token.new"
    tmp.write_text(token + "\n")
    os.rename(tmp, d / "token")  # the kubelet swaps projected tokens the same way
    p.synced(timeout=20)
    p.wait_event("ADDED", "before")
    m = p.mark()
    apiserver.kubectl("create", "configmap", "after", "-n", ns, "--from-literal=a=1")
    p.wait_event("ADDED", "after", start=m)
    p.close()
    for out in (p.stderr(), json.dumps(p.lines), proc.stderr):
        assert token not in out and "not-a-valid-token" not in out  # never logged
    assert p.stderr().count("HTTP 401") == 1, p.stderr()  # once per cause, not once per retry


# ---- LIST, WATCH ----------------------------------------------------------------------------------

def test_list_pagination(apiserver, probes):
    ns = "kc-page"
    ensure_ns(apiserver, ns)
    names = [f"cm-{i:04d}" for i in range(1100)]
    t0 = time.monotonic()
    bulk_create(apiserver, ns, names)
    print(f"created {len(names)} ConfigMaps in {time.monotonic() - t0:.1f}s")
    p = probes("--kubeconfig", apiserver.kubeconfig, "v1/configmaps", "--ns", ns, "--kind", "ConfigMap")
    s = p.synced(timeout=30)
    assert s["count"] == 1100
    added = {e["name"] for e in p.events() if e["event"] == "ADDED"}
    assert added == set(names)
    st = p.stats()
    assert st["pages"] == 3 and st["lists"] == 1 and st["relists"] == 0 and st["errors"] == 0, st
    # parsed one object at a time: the largest buffer is one ConfigMap, not a 500-item page
    assert 0 < st["max_buffer"] < 4096, st
    keys = p.keys()
    assert keys == sorted(f"{ns}/{n}" for n in names)
    p.close(how="sigterm")


def test_watch_order_bookmarks_and_stripping(apiserver, probes):
    ns = "kc-watch"
    ensure_ns(apiserver, ns)
    # short watches: the server sends a bookmark before each ends and the client re-watches
    p = probes("--kubeconfig", apiserver.kubeconfig, "--objects", "--watch-timeout", "4",
               "v1/configmaps", "--ns", ns, "--kind", "ConfigMap")
    p.synced()
    m = p.mark()
    apiserver.apply(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: w1, namespace: {ns}}}\ndata: {{v: '1'}}\n")
    apiserver.kubectl("patch", "configmap", "w1", "-n", ns, "--type=merge", "-p", '{"data":{"v":"2"}}')
    apiserver.kubectl("delete", "configmap", "w1", "-n", ns)
    p.wait_event("DELETED", "w1", start=m)
    evs = [e for e in p.events(m) if e["name"] == "w1"]
    assert [e["event"] for e in evs] == ["ADDED", "MODIFIED", "DELETED"], evs
    rvs = [int(e["rv"]) for e in evs]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3
    assert evs[1]["old_rv"] == evs[0]["rv"]
    added = evs[0]["object"]
    assert added["kind"] == "ConfigMap" and added["apiVersion"] == "v1"
    assert "managedFields" not in added["metadata"]
    # kubectl apply wrote a last-applied annotation; the cache does not keep it
    assert "kubectl.kubernetes.io/last-applied-configuration" not in added["metadata"].get("annotations", {})
    assert evs[1]["object"]["data"] == {"v": "2"}
    # live past a watch renewal; the bookmark before it arrives and changes nothing
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        st = p.stats()
        if st["watches"] >= 2 and st["bookmarks"] >= 1:
            break
        time.sleep(0.5)
    assert st["watches"] >= 2 and st["bookmarks"] >= 1, st
    m = p.mark()
    apiserver.kubectl("create", "configmap", "w2", "-n", ns, "--from-literal=v=1")
    p.wait_event("ADDED", "w2", start=m)
    st = p.stats()
    assert st["errors"] == 0 and st["relists"] == 0 and st["lists"] == 1, st
    assert [e["event"] for e in p.events(m)] == ["ADDED"]
    p.close()


def test_namespaces_and_label_selector(apiserver, probes):
    ensure_ns(apiserver, "kc-a", "kc-b", "kc-c")
    for ns in ("kc-a", "kc-b", "kc-c"):
        apiserver.apply(f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: web, namespace: {ns}, labels: {{app: web}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: db, namespace: {ns}, labels: {{app: db}}}}
""")
    p = probes("--kubeconfig", apiserver.kubeconfig,
               "v1/configmaps", "--ns", "kc-a",
               "v1/configmaps", "--ns", "kc-b", "--ns", "kc-a", "--labels", "app in (web),app!=other")
    p.synced(0)
    p.synced(1)
    assert p.keys(0) == ["kc-a/db", "kc-a/web"]
    assert p.keys(1) == ["kc-a/web", "kc-b/web"]  # sorted by namespace, then name
    # one HTTP/2 connection carries all three watches
    assert api_connections(p.p.pid, int(apiserver.port)) == 1
    m = p.mark()
    apiserver.kubectl("label", "configmap", "db", "-n", "kc-b", "app=web", "--overwrite")  # now matches
    apiserver.kubectl("label", "configmap", "web", "-n", "kc-a", "app=other", "--overwrite")  # no longer
    apiserver.kubectl("create", "configmap", "x", "-n", "kc-c")  # not watched at all
    apiserver.kubectl("create", "configmap", "y", "-n", "kc-a")
    p.wait_event("ADDED", "y", start=m, inf=0)
    p.wait(lambda e: e["event"] == "DELETED" and e["inf"] == 1 and e["ns"] == "kc-a", "DELETED kc-a/web", start=m)
    p.wait(lambda e: e["event"] == "ADDED" and e["inf"] == 1 and e["ns"] == "kc-b", "ADDED kc-b/db", start=m)
    assert p.keys(1) == ["kc-b/db", "kc-b/web"]
    assert p.keys(0) == ["kc-a/db", "kc-a/web", "kc-a/y"]
    assert all(e["ns"] in ("kc-a", "kc-b") for e in p.events(0, 1))
    assert all(e["ns"] == "kc-a" for e in p.events(0, 0))
    p.close()


def test_forbidden_is_reported_and_retried_until_granted(apiserver, probes):
    ns = "kc-rbac"
    ensure_ns(apiserver, ns)
    apiserver.kubectl("create", "secret", "generic", "s1", "-n", ns, "--from-literal=k=v", check=False)
    p = probes("--kubeconfig", apiserver.dir / "limited.kubeconfig", "v1/secrets", "--ns", ns, "--kind", "Secret")
    err = p.wait(lambda e: e["event"] == "ERROR", "a 403 error")
    assert "LIST secrets in namespace \"kc-rbac\" failed: HTTP 403" in err["message"], err
    p.wait(lambda e: e["event"] == "ERROR" and e["errors"] >= 3, "retries")
    apiserver.apply(f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: kc-secrets, namespace: {ns}}}
rules: [{{apiGroups: [""], resources: [secrets], verbs: [get, list, watch]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: kc-secrets, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: kc-secrets}}
subjects: [{{kind: User, apiGroup: rbac.authorization.k8s.io, name: limen-limited}}]
""")
    p.synced(timeout=25)
    p.wait_event("ADDED", "s1")
    m = p.mark()
    apiserver.kubectl("create", "secret", "generic", "s2", "-n", ns, "--from-literal=k=v")
    p.wait_event("ADDED", "s2", start=m)
    p.close()
    log = [json.loads(x) for x in p.stderr().splitlines() if x.startswith("{")]
    forbidden = [x for x in log if "HTTP 403" in x["msg"]]
    assert len(forbidden) == 1 and forbidden[0]["level"] == "warn", log  # logged once, retried many times
    assert any("works again" in x["msg"] for x in log), log


# ---- restart, reconnect, 410 Gone ---------------------------------------------------------------

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(*args, port, timeout=120, **extra):
    env = dict(os.environ, LIMEN_E2E_PORT=str(port), **extra)
    r = subprocess.run([str(ENV), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def restartable(apiserver, tmp_path_factory):
    """A second API server of our own, on a fixed port so a restart keeps the URL (and the
    kubeconfig). `apiserver` comes first: it builds the binaries if needed."""
    d = tmp_path_factory.mktemp("restartable")
    port = _free_port()
    _env("start", d, port=port)
    srv = {"dir": d, "port": port, "kubeconfig": d / "kubeconfig"}
    try:
        yield srv
    finally:
        _env("stop", d, port=port)


def _kubectl(srv, *args, check=True):
    r = subprocess.run([str(KUBECTL), "--kubeconfig", str(srv["kubeconfig"]), *args], capture_output=True,
                       text=True, timeout=60)
    assert not check or r.returncode == 0, r.stdout + r.stderr
    return r


def test_reconnect_after_restart_and_410_relist(restartable, probes):
    srv, ns = restartable, "kc-relist"
    _kubectl(srv, "create", "namespace", ns)
    for n in ("a", "b", "c"):
        _kubectl(srv, "create", "configmap", n, "-n", ns, f"--from-literal=v={n}")
    p = probes("--kubeconfig", srv["kubeconfig"], "v1/configmaps", "--ns", ns, "--kind", "ConfigMap")
    assert p.synced()["count"] == 3

    # the API server goes away and comes back on the same port: the watch fails, is retried with
    # backoff, and resumes; the restarted server's watch cache no longer has our resourceVersion,
    # so the client relists (410 Gone) - and finds nothing changed: no events.
    # (kube-apiserver does not end open watches on SIGTERM - HTTP/1.1 or 2 alike - and would sit
    # out e2e-env.sh's 30 s before its SIGKILL: give it 2 s, which is a crash as the client sees it)
    _env("stop", srv["dir"], port=srv["port"], LIMEN_E2E_STOP_TIMEOUT="2")
    err = p.wait(lambda e: e["event"] == "ERROR", "the watch failing while the server is down")
    assert "WATCH configmaps in namespace \"kc-relist\"" in err["message"] or "LIST" in err["message"], err
    m = p.mark()
    _env("start", srv["dir"], port=srv["port"])
    _kubectl(srv, "create", "configmap", "d", "-n", ns)
    p.wait_event("ADDED", "d", start=m, timeout=30)
    assert [(e["event"], e["name"]) for e in p.events(m)] == [("ADDED", "d")]
    st = p.stats()
    assert st["errors"] >= 1 and st["count"] == 4, st
    logged = [x for x in p.stderr().splitlines() if '"warn"' in x]
    assert len(logged) <= 3, logged  # once per cause (the drop, then refused connections), not per retry

    # 410 Gone with a diff: changes made while the watch is paused, then the watch resumes from a
    # resourceVersion the server no longer has; the relist reports exactly what changed
    p.cmd("pause")
    p.wait(lambda e: e["event"] == "OK" and e["cmd"] == "pause", "pause")
    relists = p.stats()["relists"]
    m = p.mark()
    _kubectl(srv, "create", "configmap", "e", "-n", ns)
    _kubectl(srv, "patch", "configmap", "a", "-n", ns, "--type=merge", "-p", '{"data":{"v":"changed"}}')
    _kubectl(srv, "delete", "configmap", "b", "-n", ns)
    time.sleep(0.5)
    assert p.events(m) == []  # paused: nothing seen yet
    p.cmd("stale")
    p.cmd("resume")
    p.wait_event("DELETED", "b", start=m, timeout=20)
    p.wait(lambda e: e["event"] == "ADDED" and e.get("name") == "e", "ADDED e", start=m)
    time.sleep(0.3)
    got = sorted((e["event"], e["name"]) for e in p.events(m))
    assert got == [("ADDED", "e"), ("DELETED", "b"), ("MODIFIED", "a")], got
    st = p.stats()
    assert st["relists"] == relists + 1 and st["count"] == 4, st
    assert p.keys() == [f"{ns}/{n}" for n in ("a", "c", "d", "e")]
    assert "410 Gone" in p.stderr()
    # and the watch after the relist is live
    m = p.mark()
    _kubectl(srv, "create", "configmap", "f", "-n", ns)
    p.wait_event("ADDED", "f", start=m)
    p.close(how="sigterm")

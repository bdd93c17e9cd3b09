"""The controller's writes to the API server: leader election with a Lease (lm_leader.h), Events
(lm_events.h), Ingress status and CRD conditions (lm_status.h), driven through
controller/k8s_ops_probe against the real kube-apiserver.

Build the probe first: make build/rel/controller/k8s_ops_probe (K8S_OPS_PROBE=path picks another
build, e.g. one with -fsanitize=address: then every probe must also exit without a report)."""
import json
import os
import pathlib
import queue
import re
import signal
import subprocess
import tempfile
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROBE = pathlib.Path(os.environ.get("K8S_OPS_PROBE", ROOT / "build" / "rel" / "controller" / "k8s_ops_probe"))
NS = "k8s-ops"
MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

SETUP = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
# test-only kinds in our group (the real CRDs in crds/ are other tests' business): what
# lm_status_set_condition needs is a status subresource, namespaced or cluster-scoped
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: opsprobes.limen.dev}}
spec:
  group: limen.dev
  scope: Namespaced
  names: {{plural: opsprobes, singular: opsprobe, kind: OpsProbe, listKind: OpsProbeList}}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {{status: {{}}}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
          status: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: clusteropsprobes.limen.dev}}
spec:
  group: limen.dev
  scope: Cluster
  names: {{plural: clusteropsprobes, singular: clusteropsprobe, kind: ClusterOpsProbe,
          listKind: ClusterOpsProbeList}}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {{status: {{}}}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
          status: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
"""

INGRESS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}, namespace: {ns}}}
spec:
  defaultBackend: {{service: {{name: echo, port: {{number: 80}}}}}}
"""


@pytest.fixture(scope="module")
def api(apiserver):
    if not PROBE.exists():
        pytest.fail(f"{PROBE} is missing: make build/rel/controller/k8s_ops_probe", pytrace=False)
    apiserver.apply(SETUP)
    for crd in ("opsprobes.limen.dev", "clusteropsprobes.limen.dev"):
        apiserver.kubectl("wait", "--for=condition=Established", "--timeout=30s", f"crd/{crd}")
    for kind in ("opsprobes.limen.dev", "clusteropsprobes.limen.dev"):  # discovery lags a moment
        for _ in range(50):
            if apiserver.kubectl("get", kind, "-A", check=False).returncode == 0:
                break
            time.sleep(0.1)
    return apiserver


def assert_clean(stderr):
    assert "AddressSanitizer" not in stderr and "LeakSanitizer" not in stderr, stderr[-4000:]
    assert "runtime error:" not in stderr, stderr[-4000:]


def run(api, *args, kubeconfig=None, stderr=None):
    """A probe that finishes by itself: returns its last JSON line (stderr: a list gets its log)."""
    r = subprocess.run([str(PROBE), "--kubeconfig", str(kubeconfig or api.kubeconfig), *args],
                       capture_output=True, text=True, timeout=40)
    assert_clean(r.stderr)
    assert r.returncode == 0, f"{args}: rc={r.returncode}\n{r.stdout}\n{r.stderr[-3000:]}"
    if stderr is not None:
        stderr.append(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


class Candidate:
    """A `k8s_ops_probe leader` process; its JSON lines arrive in a queue."""

    def __init__(self, api, lease, identity, *flags):
        self.identity = identity
        self.err = tempfile.TemporaryFile(mode="w+")
        self.p = subprocess.Popen([str(PROBE), "--kubeconfig", str(api.kubeconfig), *flags,
                                   "leader", NS, lease, identity],
                                  stdout=subprocess.PIPE, stderr=self.err, text=True)
        self.lines = queue.Queue()
        self.leading = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(json.loads(line))

    def next(self, timeout):
        """The next line within timeout seconds, else None."""
        try:
            msg = self.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if "leading" in msg:
            assert msg["identity"] == self.identity
            self.leading = msg["leading"]
        return msg

    def log(self):
        self.err.seek(0)
        return self.err.read()

    def stop(self, sig=signal.SIGTERM):
        """Signals it; for SIGTERM expects a clean exit and returns its "stopped" line."""
        self.p.send_signal(sig)
        if sig != signal.SIGTERM:
            self.p.wait(timeout=10)
            return None
        msg = None
        deadline = time.monotonic() + 10
        while msg is None or "stopped" not in msg:
            msg = self.next(max(deadline - time.monotonic(), 0.01))
            assert msg is not None or time.monotonic() < deadline, "no 'stopped' line:\n" + self.log()[-3000:]
        assert self.p.wait(timeout=10) == 0, self.log()[-3000:]
        assert_clean(self.log())
        return msg

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


@pytest.fixture
def candidates(api):
    started = []

    def start(lease, identity, *flags):
        c = Candidate(api, lease, identity, *flags)
        started.append(c)
        return c
    yield start
    for c in started:
        if c.p.poll() is None:
            os.kill(c.p.pid, signal.SIGCONT)
        c.kill()


def first_leader(cands, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in cands:
            if c.next(0.05) and c.leading:
                return c
    raise AssertionError("nobody leads:\n" + "\n".join(c.log()[-2000:] for c in cands))


def wait_leading(c, want, timeout):
    deadline = time.monotonic() + timeout
    while c.leading != want:
        left = deadline - time.monotonic()
        assert left > 0, f"{c.identity} leading={c.leading}, expected {want}:\n{c.log()[-3000:]}"
        c.next(left)
    return time.monotonic()


def lease_spec(api, name):
    return api.get_json("lease", name, "-n", NS)["spec"]


# ---- leader election -------------------------------------------------------------------------

def test_leader_exactly_one_then_release_hands_over(api, candidates):
    flags = ("--lease", "10", "--retry", "1")
    a, b = candidates("release", "cand-a", *flags), candidates("release", "cand-b", *flags)
    leader = first_leader([a, b], 10)
    other = b if leader is a else a
    assert other.next(2.0) is None and not other.leading  # still exactly one
    spec = lease_spec(api, "release")
    assert spec["holderIdentity"] == leader.identity and spec["leaseDurationSeconds"] == 10
    assert MICRO.match(spec["renewTime"]) and MICRO.match(spec["acquireTime"]), spec
    transitions = spec["leaseTransitions"]
    # renewals move renewTime, not acquireTime
    time.sleep(1.2)
    spec2 = lease_spec(api, "release")
    assert spec2["renewTime"] > spec["renewTime"] and spec2["acquireTime"] == spec["acquireTime"]

    t0 = time.monotonic()
    assert leader.stop() == {"stopped": True, "released": True}
    # released: the other takes over at its next retry, long before the 10 s lease would expire
    took = wait_leading(other, True, 6) - t0
    assert took < 5, took
    spec = lease_spec(api, "release")
    assert spec["holderIdentity"] == other.identity and spec["leaseTransitions"] == transitions + 1

    assert other.stop() == {"stopped": True, "released": True}
    spec = lease_spec(api, "release")
    assert spec.get("holderIdentity", "") == "" and spec["leaseDurationSeconds"] == 1, spec


def test_leader_killed_is_replaced_after_expiry(api, candidates):
    flags = ("--lease", "3", "--retry", "1")
    a = candidates("crash", "crash-a", *flags)
    wait_leading(a, True, 10)
    b = candidates("crash", "crash-b", *flags)
    assert b.next(1.5) is None  # a valid lease: b waits
    t0 = time.monotonic()
    a.stop(signal.SIGKILL)  # no release: b must wait for the lease to expire
    took = wait_leading(b, True, 10) - t0
    # a renewed at most ~1 s before it died, and b counts 3 s from when it saw that renewal
    assert 1.8 <= took <= 8, took
    assert lease_spec(api, "crash")["holderIdentity"] == "crash-b"
    assert b.stop()["released"] is True


def test_leader_paused_past_deadline_steps_down(api, candidates):
    """A leader that could not renew within the renew deadline stops leading (callback false) and
    does not win back a lease someone else now holds."""
    flags = ("--lease", "3", "--retry", "1")
    a = candidates("pause", "pause-a", *flags)
    wait_leading(a, True, 10)
    b = candidates("pause", "pause-b", *flags)
    assert b.next(1.0) is None
    a.p.send_signal(signal.SIGSTOP)
    wait_leading(b, True, 10)
    a.p.send_signal(signal.SIGCONT)
    wait_leading(a, False, 3)
    assert a.next(1.5) is None and not a.leading and b.leading
    assert lease_spec(api, "pause")["holderIdentity"] == "pause-b"
    assert a.stop() == {"stopped": True, "released": False}  # not the holder: leaves the Lease alone
    assert b.stop() == {"stopped": True, "released": True}


# ---- Events ----------------------------------------------------------------------------------

def events_for(api, ns, name):
    return api.get_json("events", "-n", ns, "--field-selector", f"involvedObject.name={name}")["items"]


def test_event_posted_with_involved_object(api):
    msg = 'annotation limen.dev/plugins: Plugin "rl" not found'
    out = run(api, "event", "networking.k8s.io/v1", "Ingress", NS, "shop", "uid-shop-1", "Warning",
              "TranslationFailed", msg)
    assert out["created"] == 1 and out["failures"] == 0, out
    [ev] = events_for(api, NS, "shop")
    assert ev["involvedObject"] == {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "namespace": NS,
                                    "name": "shop", "uid": "uid-shop-1"}
    assert (ev["type"], ev["reason"], ev["message"], ev["count"]) == ("Warning", "TranslationFailed", msg, 1)
    assert ev["source"]["component"] == "limen-controller" and ev["source"]["host"] == "k8s-ops-probe"
    assert ev["reportingComponent"] == "limen.dev/ingress-controller"
    assert ev["reportingInstance"] == "k8s-ops-probe"
    assert ev["firstTimestamp"] == ev["lastTimestamp"] and ev["metadata"]["name"].startswith("shop.")
    r = api.kubectl("get", "events", "-n", NS, "--field-selector", "reason=TranslationFailed")
    assert "ingress/shop" in r.stdout and msg in r.stdout, r.stdout


def test_event_repeated_counts_up_in_one_object(api):
    # all at once: the first POST is in flight, the repeats fold into one PATCH
    out = run(api, "event", "networking.k8s.io/v1", "Ingress", NS, "burst", "uid-burst", "Warning",
              "TranslationFailed", "same thing", "5")
    assert (out["created"], out["patched"], out["folded"]) == (1, 1, 4), out
    [ev] = events_for(api, NS, "burst")
    assert ev["count"] == 5
    # spaced out: each repeat is its own PATCH of count and lastTimestamp
    out = run(api, "--interval", "600", "event", "networking.k8s.io/v1", "Ingress", NS, "slow", "uid-slow",
              "Warning", "TranslationFailed", "again and again", "3")
    assert (out["created"], out["patched"], out["folded"]) == (1, 2, 0), out
    [ev] = events_for(api, NS, "slow")
    assert ev["count"] == 3 and ev["lastTimestamp"] > ev["firstTimestamp"], ev
    # a different message is a different Event
    run(api, "event", "networking.k8s.io/v1", "Ingress", NS, "slow", "uid-slow", "Warning", "TranslationFailed",
        "something else")
    assert sorted(e["count"] for e in events_for(api, NS, "slow")) == [1, 3]


def test_event_cluster_scoped_object_and_long_message(api):
    long = "é" * 1500  # 3000 bytes: cut to 1024 on a character boundary
    out = run(api, "event", "limen.dev/v1", "ClusterPlugin", "-", "global-auth", "-", "Warning", "InvalidConfig",
              long)
    assert out["created"] == 1, out
    [ev] = events_for(api, "default", "global-auth")
    assert ev["involvedObject"] == {"apiVersion": "limen.dev/v1", "kind": "ClusterPlugin", "name": "global-auth"}
    assert ev["message"] == "é" * 512


def test_events_rate_limited(api):
    out = run(api, "--distinct", "event", "v1", "Service", NS, "flappy", "-", "Warning", "Flapping", "state", "40")
    assert (out["created"], out["dropped_rate"]) == (25, 15), out
    assert len(events_for(api, NS, "flappy")) == 25
    out = run(api, "--distinct", "--burst", "3", "--rate", "0", "event", "v1", "Service", NS, "flappy2", "-",
              "Warning", "Flapping", "state", "5")
    assert (out["created"], out["dropped_rate"]) == (3, 2), out


def test_forbidden_writes_are_logged_once_and_dropped(api):
    """limited.kubeconfig: a user without any RBAC binding gets 403s."""
    limited = api.dir / "limited.kubeconfig"
    log = []
    out = run(api, "--distinct", "event", "v1", "Service", NS, "denied", "-", "Warning", "Nope", "m", "3",
              kubeconfig=limited, stderr=log)
    assert (out["created"], out["failures"]) == (0, 3), out
    warns = [line for line in log[0].splitlines() if '"level":"warn"' in line]
    assert len(warns) == 1 and "HTTP 403" in warns[0], log[0]


# ---- Ingress status ----------------------------------------------------------------------------

def lb(api, name):
    ing = api.get_json("ingress", name, "-n", NS)
    return ing.get("status", {}).get("loadBalancer", {}).get("ingress", []), ing["metadata"]["resourceVersion"]


def test_ingress_status_addresses_written_once(api):
    api.apply("---".join(INGRESS.format(name=n, ns=NS) for n in ("web", "api")))
    out = run(api, "ingress-status", "10.1.2.3,lb.example.com,2001:db8::1", f"{NS}/web", f"{NS}/api",
              f"{NS}/deleted-meanwhile")
    assert (out["writes"], out["not_found"], out["failures"]) == (2, 1, 0), out
    want = [{"ip": "10.1.2.3"}, {"ip": "2001:db8::1"}, {"hostname": "lb.example.com"}]
    (web, rv_web), (api_lb, rv_api) = lb(api, "web"), lb(api, "api")
    assert web == want and api_lb == want
    # the same set in another order: nothing written, resourceVersions unchanged
    out = run(api, "ingress-status", "lb.example.com,2001:db8::1,10.1.2.3,10.1.2.3", f"{NS}/web", f"{NS}/api")
    assert (out["writes"], out["unchanged"]) == (0, 2), out
    assert lb(api, "web") == (want, rv_web) and lb(api, "api") == (want, rv_api)
    # a change is written; no address clears it
    out = run(api, "ingress-status", "203.0.113.9", f"{NS}/web")
    assert out["writes"] == 1 and lb(api, "web")[0] == [{"ip": "203.0.113.9"}]
    out = run(api, "ingress-status", "-", f"{NS}/web")
    assert out["writes"] == 1 and lb(api, "web")[0] == []
    assert lb(api, "api") == (want, rv_api)


def test_ingress_status_many_at_most_20_in_flight(api):
    names = [f"many-{i}" for i in range(45)]
    api.apply("---".join(INGRESS.format(name=n, ns=NS) for n in names))
    out = run(api, "ingress-status", "198.51.100.1", *(f"{NS}/{n}" for n in names))
    assert out["writes"] == 45 and out["failures"] == 0, out
    assert 1 < out["max_in_flight"] <= 20, out
    ings = api.get_json("ingress", "-n", NS)["items"]
    got = {i["metadata"]["name"]: i.get("status", {}).get("loadBalancer", {}).get("ingress") for i in ings}
    assert all(got[n] == [{"ip": "198.51.100.1"}] for n in names)


def test_ingress_status_later_sync_supersedes_queued_writes(api):
    """45 writes queue behind 20 in flight; a second sync at once replaces the 25 queued ones and
    queues one more behind each in flight: every Ingress ends with the second set (an object's
    writes never overtake each other)."""
    names = [f"many-{i}" for i in range(45)]
    out = run(api, "--then", "192.0.2.7,edge.example.com", "ingress-status", "198.51.100.2",
              *(f"{NS}/{n}" for n in names))
    assert (out["writes"], out["superseded"], out["max_in_flight"], out["failures"]) == (20 + 45, 25, 20, 0), out
    ings = api.get_json("ingress", "-n", NS)["items"]
    got = {i["metadata"]["name"]: i.get("status", {}).get("loadBalancer", {}).get("ingress") for i in ings}
    assert all(got[n] == [{"ip": "192.0.2.7"}, {"hostname": "edge.example.com"}] for n in names), got


# ---- conditions ----------------------------------------------------------------------------------

def programmed(obj):
    conds = obj.get("status", {}).get("conditions", [])
    mine = [c for c in conds if c["type"] == "Programmed"]
    assert len(mine) <= 1, conds
    return (mine or [None])[0], conds


def test_condition_on_namespaced_resource(api):
    api.apply(f"apiVersion: limen.dev/v1\nkind: OpsProbe\nmetadata: {{name: rl, namespace: {NS}}}\n"
              "spec: {minute: 0}\n")
    # someone else's condition is kept
    status, body = api.request("PATCH", f"/apis/limen.dev/v1/namespaces/{NS}/opsprobes/rl/status",
                               {"status": {"conditions": [{"type": "Accepted", "status": "True", "reason": "Ok",
                                                           "message": "", "lastTransitionTime":
                                                           "2026-01-01T00:00:00Z"}]}},
                               content_type="application/merge-patch+json")
    assert status == 200, body
    out = run(api, "condition", "opsprobes", f"{NS}/rl", "False", "Invalid", "config.minute: must be > 0")
    assert out["writes"] == 1, out
    obj = api.get_json("opsprobe", "rl", "-n", NS)
    cond, conds = programmed(obj)
    assert {k: cond[k] for k in ("status", "reason", "message", "observedGeneration")} == \
        {"status": "False", "reason": "Invalid", "message": "config.minute: must be > 0",
         "observedGeneration": obj["metadata"]["generation"]}
    assert [c["type"] for c in conds] == ["Accepted", "Programmed"]
    rv, ltt = obj["metadata"]["resourceVersion"], cond["lastTransitionTime"]

    # the same again: no write
    out = run(api, "condition", "opsprobes", f"{NS}/rl", "False", "Invalid", "config.minute: must be > 0")
    assert (out["writes"], out["unchanged"]) == (0, 1), out
    assert api.get_json("opsprobe", "rl", "-n", NS)["metadata"]["resourceVersion"] == rv

    time.sleep(1.1)  # lastTransitionTime has seconds: let one pass
    # another message, same status: lastTransitionTime stays
    run(api, "condition", "opsprobes", f"{NS}/rl", "False", "Invalid", "config.minute: must be >= 1")
    cond, _ = programmed(api.get_json("opsprobe", "rl", "-n", NS))
    assert cond["message"] == "config.minute: must be >= 1" and cond["lastTransitionTime"] == ltt
    # fixed: a new generation, status True, a new lastTransitionTime
    api.apply(f"apiVersion: limen.dev/v1\nkind: OpsProbe\nmetadata: {{name: rl, namespace: {NS}}}\n"
              "spec: {minute: 5}\n")
    run(api, "condition", "opsprobes", f"{NS}/rl", "True", "Programmed", "applied to the data planes")
    obj = api.get_json("opsprobe", "rl", "-n", NS)
    cond, conds = programmed(obj)
    assert (cond["status"], cond["reason"], cond["observedGeneration"]) == \
        ("True", "Programmed", obj["metadata"]["generation"]) and obj["metadata"]["generation"] == 2
    assert cond["lastTransitionTime"] > ltt and [c["type"] for c in conds] == ["Accepted", "Programmed"]


def test_condition_on_cluster_scoped_resource(api):
    api.apply("apiVersion: limen.dev/v1\nkind: ClusterOpsProbe\nmetadata: {name: global}\nspec: {a: 1}\n")
    out = run(api, "condition", "clusteropsprobes", "global", "True", "Programmed", "ok")
    assert out["writes"] == 1, out
    cond, _ = programmed(api.get_json("clusteropsprobe", "global"))
    assert (cond["status"], cond["reason"], cond["message"], cond["observedGeneration"]) == \
        ("True", "Programmed", "ok", 1)

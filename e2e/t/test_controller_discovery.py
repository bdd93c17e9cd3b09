"""limen-controller finding its data planes through a Service's EndpointSlices (--dataplane-service).

Each data plane serves its admin API over TCP on the host's non-loopback address (the API server
refuses loopback addresses in EndpointSlices), with a token. They all share that address, so each
one is published in an EndpointSlice of its own, with its own port under the port name "admin".

Every test starts its own controller(s) and data planes and stops them at the end, asserting a
clean exit (no sanitizer report); the module shares the API server with test_controller.py, so it
keeps to the namespace "disco" (--watch-namespace) and hostnames of its own."""
import json
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.request

import pytest

from stack import DP_BIN, Controller, Limen, Stack, service, slice_, wait_until

NS = "disco"
SVC = "limen-admin"
TOKEN = "disco-admin-token-0123456789"
HOST = "disco.example.com"


# ---- harness -------------------------------------------------------------------------------------

def free_port_on(ip):
    s = socket.socket()
    s.bind((ip, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ingress(name, host, svc, port=80):
    return json.dumps({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"ingressClassName": "limen", "rules": [{"host": host, "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": svc, "port": {"number": port}}}}]}}]}})


def metric(ctl, name):
    """The value of one sample (name with its labels, exactly as exposed), or None."""
    m = re.search(r"^" + re.escape(name) + r" (\S+)$", ctl.metrics(), re.M)
    return float(m.group(1)) if m else None


def chash(dp):
    return dp.status()["configuration_hash"]


def routes(dp, host, upstream="disco-web"):
    st, _, body = dp.request("GET", "/", headers={"Host": host})
    if st != 200:
        return False
    try:
        return json.loads(body).get("upstream") == upstream
    except ValueError:
        return False


class Disco:
    """The data planes and controllers of one test; close() stops them all and checks their exits."""

    def __init__(self, stack):
        self.stack = stack
        self.api = stack.api
        self.dps = []
        self.ctls = []

    # data planes with a TCP admin API on stack.ip
    def dataplane(self, port=None, start=True):
        port = port or free_port_on(self.stack.ip)
        dp = Limen(None, extra_args=("--managed", "--admin-listen", f"{self.stack.ip}:{port}",
                                     "--admin-token", TOKEN), workers=1)
        dp.args[0] = DP_BIN
        dp.admin_port = port
        dp.admin_url = f"http://{self.stack.ip}:{port}"
        dp.slice_name = f"{SVC}-{port}"
        if start:
            dp.start()
        self.dps.append(dp)
        self.stack.dataplanes.append(dp)
        return dp

    def publish(self, dp, ready=True, name=None, port_name="admin", terminating=False):
        """dp's admin address in an EndpointSlice of its own; ready=None leaves out the conditions
        (unknown, which the API says to treat as ready)."""
        m = slice_(NS, SVC, [self.stack.ip], dp.admin_port, name=name or dp.slice_name, port_name=port_name,
                   ready=bool(ready), terminating=terminating)
        if ready is None:
            m = re.sub(r"\n  conditions: \{ready: \w+\}", "", m)
            assert "conditions" not in m
        self.api.apply(m)

    def unpublish(self, dp):
        self.api.kubectl("delete", "endpointslice", dp.slice_name, "-n", NS, "--wait=false")

    def stop_dataplane(self, dp):
        rc = dp.stop()
        assert rc == 0, f"data plane exited {rc}:\n{dp.read_log()[-4000:]}"

    def controller(self, *args, token=TOKEN, token_env=None, wait=True):
        """A controller discovering the data planes of disco/limen-admin; token via the flag, or via
        LIMEN_DATAPLANE_TOKEN when token_env is given."""
        a = ["--election-namespace", "limen-system", "--lease-seconds", "4", "--watch-namespace", NS,
             "--publish-status-address", "203.0.113.8", "--dataplane-service", f"{NS}/{SVC}", *args]
        if token is not None:
            a += ["--dataplane-token", token]
        env = {"LIMEN_DATAPLANE_TOKEN": token_env} if token_env is not None else None
        c = Controller(self.stack.kubeconfig, a, name="disco", env=env).start()
        self.ctls.append(c)
        self.stack.controllers.append(c)
        if wait:
            c.wait_ready()
        return c

    def stop_controller(self, c):
        c.stop()  # asserts status 0 and no sanitizer report
        for tok in (TOKEN, "wrong-token"):
            assert tok not in c.read_log(), "the admin token is in the controller's log"

    def in_sync(self, ctl, dp):
        return metric(ctl, f'limen_controller_push_target_in_sync{{group="service",target="{dp.admin_url}"}}')

    def close(self):
        errors = []
        for c in self.ctls:
            try:
                self.stop_controller(c)
            except AssertionError as e:
                errors.append(str(e))
            self.stack.controllers.remove(c)
        for dp in self.dps:
            try:
                if dp.proc:
                    self.stop_dataplane(dp)
            except Exception as e:  # noqa: BLE001
                errors.append(str(e))
            self.stack.dataplanes.remove(dp)
        self.api.kubectl("delete", "endpointslices", "-n", NS, "-l", f"kubernetes.io/service-name={SVC}",
                         "--wait=false")
        if errors:
            raise AssertionError("\n".join(errors))


@pytest.fixture(scope="module")
def stack(apiserver):
    s = Stack(apiserver)
    if not s.ip:
        pytest.skip("no non-loopback IPv4 address (the API server refuses loopback endpoints)")
    apiserver.apply(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n")
    apiserver.apply("""
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: limen}
spec: {controller: limen.dev/ingress-controller}
""")
    # the data planes' own Service (its slices come and go per test) and one backend with an Ingress
    apiserver.apply(service(NS, SVC, port=8001, target=8001, port_name="admin"))
    up = s.upstream("disco-web")
    apiserver.apply(service(NS, "disco-web", target=up.port) + "---" + slice_(NS, "disco-web", [s.ip], up.port))
    apiserver.apply(ingress("disco", HOST, "disco-web"))
    yield s
    try:
        s.close()
    finally:
        # leave nothing routable behind for other modules' controllers (the namespace stays: without
        # a namespace controller its deletion would never finish)
        for kind in ("ingress", "endpointslice", "service"):
            apiserver.kubectl("delete", kind, "--all", "-n", NS, "--wait=false", check=False)


@pytest.fixture
def disco(stack):
    d = Disco(stack)
    try:
        yield d
    finally:
        d.close()


# ---- tests -----------------------------------------------------------------------------------------

def test_every_discovered_dataplane_gets_the_document(disco):
    a, b = disco.dataplane(), disco.dataplane()
    empty = chash(a)
    disco.publish(a)
    disco.publish(b)
    ctl = disco.controller()
    wait_until(lambda: chash(a) == chash(b) != empty and chash(a), timeout=15, what="both data planes configured")
    for dp in (a, b):
        wait_until(lambda: routes(dp, HOST), timeout=5, what=f"route on {dp.admin_url}")
        assert disco.in_sync(ctl, dp) == 1
    # the backend's slice in the same namespace is not a data plane
    assert metric(ctl, "limen_controller_push_targets") == 2
    assert metric(ctl, "limen_controller_push_targets_in_sync") == 2
    assert metric(ctl, 'limen_controller_pushes_total{result="error"}') == 0
    wait_until(ctl.ready, timeout=5, what="/readyz once every data plane has the document")
    # a change reaches both
    disco.api.apply(ingress("disco-1", "one.disco.example.com", "disco-web"))
    for dp in (a, b):
        wait_until(lambda: routes(dp, "one.disco.example.com"), timeout=10, what=f"change on {dp.admin_url}")
    assert chash(a) == chash(b)
    # the same address in two slices (as while slices are reshuffled) is one target, which stays
    # while either slice has it; b's removal, seen last, shows the earlier events were processed
    disco.publish(a, name=f"{SVC}-dup")
    disco.unpublish(a)
    disco.unpublish(b)
    wait_until(lambda: metric(ctl, "limen_controller_push_targets") == 1, timeout=10, what="b removed")
    assert disco.in_sync(ctl, a) == 1
    log = ctl.read_log()
    assert log.count(f"data plane {a.admin_url} added") == 1 and f"data plane {a.admin_url} removed" not in log


def test_a_joining_dataplane_gets_the_current_document_at_once(disco):
    a = disco.dataplane()
    disco.publish(a)
    ctl = disco.controller()
    wait_until(lambda: routes(a, HOST), timeout=15, what="first data plane configured")
    want = chash(a)
    syncs = metric(ctl, "limen_controller_config_changes_total")
    c = disco.dataplane()
    t0 = time.monotonic()
    disco.publish(c, ready=None)  # readiness unknown counts as ready
    wait_until(lambda: chash(c) == want, timeout=5, what="the joining data plane configured")
    took = time.monotonic() - t0
    assert routes(c, HOST)
    assert metric(ctl, "limen_controller_push_targets") == 2
    # nothing changed in the cluster but the data plane Service: no new document was needed
    assert metric(ctl, "limen_controller_config_changes_total") == syncs
    print(f"joined in {took:.2f}s")


def test_terminating_or_removed_endpoints_are_no_longer_pushed_to(disco):
    a, b = disco.dataplane(), disco.dataplane()
    disco.publish(a)
    disco.publish(b)
    ctl = disco.controller()
    wait_until(lambda: routes(a, HOST) and routes(b, HOST), timeout=15, what="both data planes configured")
    assert metric(ctl, "limen_controller_push_targets") == 2

    # b not ready (its readiness may well wait for a configuration): still pushed to, as KIC does
    disco.publish(b, ready=False)
    disco.api.apply(ingress("disco-2b", "twob.disco.example.com", "disco-web"))
    wait_until(lambda: routes(b, "twob.disco.example.com"), timeout=10, what="change on the not-ready b")
    assert metric(ctl, "limen_controller_push_targets") == 2

    # b terminating: it leaves the targets; a change reaches a only
    disco.publish(b, ready=False, terminating=True)
    wait_until(lambda: metric(ctl, "limen_controller_push_targets") == 1, timeout=10, what="b no longer a target")
    assert disco.in_sync(ctl, b) is None
    before_b = chash(b)
    disco.api.apply(ingress("disco-3", "three.disco.example.com", "disco-web"))
    wait_until(lambda: routes(a, "three.disco.example.com"), timeout=10, what="change on a")
    time.sleep(2.5)  # longer than a status check interval: nothing goes to b
    assert chash(b) == before_b and not routes(b, "three.disco.example.com")

    # ready again: it is a target again and catches up at once
    disco.publish(b)
    wait_until(lambda: routes(b, "three.disco.example.com"), timeout=5, what="b caught up when ready again")
    assert chash(a) == chash(b)

    # its slice removed: gone again
    disco.unpublish(b)
    wait_until(lambda: metric(ctl, "limen_controller_push_targets") == 1, timeout=10, what="b removed")
    before_b = chash(b)
    disco.api.kubectl("delete", "ingress", "disco-3", "-n", NS)
    wait_until(lambda: not routes(a, "three.disco.example.com"), timeout=10, what="deletion on a")
    time.sleep(2.5)
    assert chash(b) == before_b and routes(b, "three.disco.example.com")

    # every slice gone: no targets at all
    disco.unpublish(a)
    wait_until(lambda: metric(ctl, "limen_controller_push_targets") == 0, timeout=10, what="no targets")
    assert ctl.ready()


def admin_status(dp, token):
    req = urllib.request.Request(dp.admin_url + "/status", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_wrong_token_is_refused_then_fixing_it_converges(disco):
    a = disco.dataplane()
    empty = chash(a)
    disco.publish(a)
    assert admin_status(a, "wrong-token") == 401 and admin_status(a, TOKEN) == 200
    bad = disco.controller(token="wrong-token", wait=False)
    wait_until(lambda: (metric(bad, 'limen_controller_pushes_total{result="error"}') or 0) >= 2, timeout=15,
               what="refused pushes counted (and retried)")
    assert metric(bad, 'limen_controller_pushes_total{result="ok"}') == 0
    assert metric(bad, "limen_controller_push_targets") == 1
    assert metric(bad, "limen_controller_push_targets_in_sync") == 0
    assert disco.in_sync(bad, a) == 0
    assert chash(a) == empty and not routes(a, HOST)
    st, why = bad.get("/readyz")
    assert st == 503 and "data plane" in why
    assert "401" in bad.read_log()
    disco.stop_controller(bad)

    # the right token, from the environment this time
    good = disco.controller(token=None, token_env=TOKEN)
    wait_until(lambda: routes(a, HOST), timeout=10, what="converged with the right token")
    assert metric(good, 'limen_controller_pushes_total{result="error"}') == 0
    assert disco.in_sync(good, a) == 1


def test_dataplane_restarted_without_state_gets_the_document_back(disco):
    a, b = disco.dataplane(), disco.dataplane()
    disco.publish(a)
    disco.publish(b)
    ctl = disco.controller()
    wait_until(lambda: routes(a, HOST) and routes(b, HOST), timeout=15, what="both data planes configured")
    want = chash(a)
    disco.stop_dataplane(b)
    shutil.rmtree(b.state_dir, ignore_errors=True)
    wait_until(lambda: disco.in_sync(ctl, b) == 0, timeout=10, what="the controller notices b is gone")
    b.start()  # same admin port, same EndpointSlice, empty state
    t0 = time.monotonic()
    wait_until(lambda: chash(b) == want, timeout=6, what="restarted data plane configured again")
    print(f"restored in {time.monotonic() - t0:.2f}s")
    assert routes(b, HOST)
    # it did come back empty, and the controller's status check is what noticed
    assert re.search(re.escape(b.admin_url) + r" serves 0+ instead of " + want, ctl.read_log())
    wait_until(lambda: disco.in_sync(ctl, b) == 1, timeout=5, what="in sync again")
    assert metric(ctl, "limen_controller_push_targets") == 2
    assert os.path.isdir(b.state_dir)  # it keeps what it was given again


def test_admin_port_by_number(disco):
    """--dataplane-port N: that port on every endpoint, whatever the slice's ports are named."""
    a = disco.dataplane()
    disco.publish(a, port_name="http")
    ctl = disco.controller("--dataplane-port", str(a.admin_port))
    wait_until(lambda: routes(a, HOST), timeout=15, what="data plane found by port number")
    assert disco.in_sync(ctl, a) == 1

"""limen-controller against a real kube-apiserver, pushing to a real limen-dataplane.

The controller runs as the limen-controller ServiceAccount bound to manifests/rbac.yaml's
ClusterRole (its token, no client certificate), so every test also checks that role is enough."""
import json
import threading
import time

import pytest

from stack import Stack, service, slice_, wait_until

NS = "shop"


@pytest.fixture(scope="module")
def stack(apiserver):
    s = Stack(apiserver)
    if not s.ip:
        pytest.skip("no non-loopback IPv4 address for upstreams (the API server refuses loopback endpoints)")
    apiserver.apply(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n")
    apiserver.apply("""
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: limen}
spec: {controller: limen.dev/ingress-controller}
""")
    s.dp = s.dataplane()
    s.ctl = s.controller("--publish-status-address", "203.0.113.7", dataplanes=[s.dp])
    yield s
    s.close()


def backend(stack, name, port=80):
    """A Service `name` whose one EndpointSlice points at a fresh upstream; returns the upstream."""
    up = stack.upstream(name)
    stack.api.apply(service(NS, name, port=port, target=up.port) + "---" + slice_(NS, name, [stack.ip], up.port))
    return up


def ingress(name, rules, annotations=None, tls=None, cls="limen"):
    """An Ingress as JSON (which is YAML too)."""
    spec = {"rules": rules}
    if cls:
        spec["ingressClassName"] = cls
    if tls:
        spec["tls"] = tls
    meta = {"name": name, "namespace": NS}
    if annotations:
        meta["annotations"] = annotations
    return json.dumps({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec})


def rule(host, paths):
    """paths: [(path, pathType, service, port)]"""
    return {"host": host, "http": {"paths": [
        {"path": p, "pathType": t, "backend": {"service": {"name": s, "port": {"number": n}}}}
        for p, t, s, n in paths]}}


def get(stack, host, path, method="GET", headers=None):
    h = {"Host": host, **(headers or {})}
    st, hd, body = stack.dp.request(method, path, headers=h)
    try:
        return st, json.loads(body)
    except ValueError:
        return st, body


def routed(stack, host, path, upstream_name, **kw):
    def ok():
        st, b = get(stack, host, path, **kw)
        return st == 200 and isinstance(b, dict) and b.get("upstream") == upstream_name
    return ok


def test_host_and_path_routing_for_every_path_type(stack):
    backend(stack, "web")
    stack.api.apply(ingress("paths", [rule("shop.example.com", [
        ("/api", "Prefix", "web", 80), ("/exact", "Exact", "web", 80),
        ("/impl", "ImplementationSpecific", "web", 80), ("/~/re/[0-9]+$", "ImplementationSpecific", "web", 80)])]))
    wait_until(routed(stack, "shop.example.com", "/api", "web"), timeout=15, what="Prefix route")
    assert get(stack, "shop.example.com", "/api/x")[0] == 200
    assert get(stack, "shop.example.com", "/apix")[0] == 404          # Prefix is per path element
    assert get(stack, "shop.example.com", "/exact")[0] == 200
    assert get(stack, "shop.example.com", "/exact/more")[0] == 404    # Exact is exact
    assert get(stack, "shop.example.com", "/impl-and-more")[0] == 200  # ImplementationSpecific: Kong prefix
    assert get(stack, "shop.example.com", "/re/42")[0] == 200
    assert get(stack, "shop.example.com", "/re/4x")[0] == 404
    assert get(stack, "other.example.com", "/api")[0] == 404          # host routing
    # the upstream sees the whole path (KIC's default: strip-path false) and the Host (preserve-host)
    st, b = get(stack, "shop.example.com", "/api/items?x=1")
    assert b["path"] == "/api/items" and b["query"] == "x=1"
    assert ["Host", "shop.example.com"] in b["headers"] or ["host", "shop.example.com"] in b["headers"]


def test_annotations_change_behaviour(stack):
    backend(stack, "ann")
    stack.api.apply(ingress("ann", [rule("ann.example.com", [("/svc", "Prefix", "ann", 80)])],
                            annotations={"konghq.com/strip-path": "true", "limen.dev/methods": "GET"}))
    wait_until(routed(stack, "ann.example.com", "/svc/x", "ann"), timeout=15, what="annotated route")
    assert get(stack, "ann.example.com", "/svc/x")[1]["path"] == "/x"   # strip-path (KIC alias)
    assert get(stack, "ann.example.com", "/svc/x", method="POST")[0] == 404  # methods
    stack.api.apply(ingress("ann", [rule("ann.example.com", [("/svc", "Prefix", "ann", 80)])]))
    wait_until(lambda: get(stack, "ann.example.com", "/svc/x")[1].get("path") == "/svc/x", timeout=15,
               what="annotations removed")


def test_tls_secret_becomes_certificate(stack):
    import subprocess
    import tempfile
    d = tempfile.mkdtemp()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=secure.example.com", "-keyout", f"{d}/k.pem", "-out", f"{d}/c.pem"],
                   check=True, capture_output=True)
    stack.api.kubectl("create", "secret", "tls", "secure-tls", "-n", NS, "--cert", f"{d}/c.pem",
                      "--key", f"{d}/k.pem")
    backend(stack, "secure")
    stack.api.apply(ingress("secure", [rule("secure.example.com", [("/", "Prefix", "secure", 80)])],
                            tls=[{"hosts": ["secure.example.com"], "secretName": "secure-tls"}]))

    def has_cert():
        certs = stack.ctl.config().get("certificates", [])
        return [c for c in certs if "secure.example.com" in [s if isinstance(s, str) else s.get("name")
                                                              for s in c.get("snis", [])]]
    cert = wait_until(has_cert, timeout=15, what="certificate in the document")[0]
    assert cert["key"] == "<redacted>"  # /debug/config never shows a private key
    assert "BEGIN CERTIFICATE" in cert["cert"]
    # the data plane serves it: HTTPS by SNI, over HTTP/2 as well, verified against the certificate itself
    port = stack.dp.tls_port

    def https(*extra):
        out = subprocess.run(["curl", "-s", "--cacert", f"{d}/c.pem", "--resolve",
                              f"secure.example.com:{port}:127.0.0.1", "-w", "\n%{http_code} %{http_version}",
                              *extra, f"https://secure.example.com:{port}/hello"], capture_output=True, text=True)
        body, _, tail = out.stdout.rpartition("\n")
        return tail, body
    tail, body = wait_until(lambda: https("--http1.1")[0] == "200 1.1" and https("--http1.1"), timeout=15,
                            what="HTTPS with the Secret's certificate")
    assert json.loads(body)["upstream"] == "secure"
    assert https("--http2")[0] == "200 2"


def test_plugin_by_annotation_applies_and_goes_away(stack):
    backend(stack, "plug")
    stack.api.apply(f"""
apiVersion: limen.dev/v1
kind: Plugin
metadata: {{name: teapot, namespace: {NS}}}
spec:
  plugin: request-termination
  config: {{status_code: 418, message: "short and stout"}}
""")
    rules = [rule("plug.example.com", [("/", "Prefix", "plug", 80)])]
    stack.api.apply(ingress("plug", rules, annotations={"limen.dev/plugins": "teapot"}))
    wait_until(lambda: get(stack, "plug.example.com", "/")[0] == 418, timeout=15, what="plugin applied")
    stack.api.apply(ingress("plug", rules))
    wait_until(routed(stack, "plug.example.com", "/", "plug"), timeout=15, what="plugin removed")


def test_consumer_with_credential_secret_authenticates(stack):
    backend(stack, "auth")
    stack.api.apply(f"""
apiVersion: v1
kind: Secret
metadata:
  name: alice-key
  namespace: {NS}
  labels: {{limen.dev/credential: key-auth}}
stringData: {{key: alice-secret-key}}
---
apiVersion: limen.dev/v1
kind: Consumer
metadata: {{name: alice, namespace: {NS}}}
spec: {{username: alice, credentials: [alice-key]}}
---
apiVersion: limen.dev/v1
kind: Plugin
metadata: {{name: keys, namespace: {NS}}}
spec: {{plugin: key-auth}}
""")
    stack.api.apply(ingress("auth", [rule("auth.example.com", [("/", "Prefix", "auth", 80)])],
                            annotations={"limen.dev/plugins": "keys"}))
    wait_until(lambda: get(stack, "auth.example.com", "/")[0] == 401, timeout=15, what="key-auth applied")
    st, b = get(stack, "auth.example.com", "/", headers={"apikey": "alice-secret-key"})
    assert st == 200 and b["upstream"] == "auth"
    assert ["X-Consumer-Username", "alice"] in b["headers"]
    assert get(stack, "auth.example.com", "/", headers={"apikey": "wrong"})[0] == 401


def test_endpoint_changes_move_traffic_without_a_failed_request(stack):
    a = backend(stack, "move")
    b = stack.upstream("move-b")
    b.name = "move"  # same service, second endpoint: tell them apart by port below
    stack.api.apply(ingress("move", [rule("move.example.com", [("/", "Prefix", "move", 80)])]))
    wait_until(routed(stack, "move.example.com", "/", "move"), timeout=15, what="route")
    # b listens on another port: the EndpointSlice names one port, so give b a slice of its own
    # under the same Service port name and move traffic slice by slice
    statuses, stop = [], threading.Event()

    def load():
        while not stop.is_set():
            statuses.append(get(stack, "move.example.com", "/")[0])
            time.sleep(0.005)
    t = threading.Thread(target=load)
    t.start()
    try:
        stack.api.apply(slice_(NS, "move", [stack.ip], b.port, name="move-2"))   # add b
        wait_until(lambda: len(b.requests) > 0, timeout=15, what="traffic on the new endpoint")
        stack.api.apply(slice_(NS, "move", [stack.ip], a.port, ready=False))     # a not ready: drained
        time.sleep(1.0)
        n_a = len(a.requests)
        time.sleep(0.5)
        assert len(a.requests) == n_a, "the not-ready endpoint still gets traffic"
    finally:
        stop.set()
        t.join()
    assert statuses and all(s == 200 for s in statuses), f"failed requests during the move: {set(statuses)}"


def test_invalid_plugin_is_isolated_with_an_event(stack):
    backend(stack, "iso")
    stack.api.apply(f"""
apiVersion: limen.dev/v1
kind: Plugin
metadata: {{name: broken, namespace: {NS}}}
spec:
  plugin: request-termination
  config: {{status_code: "not a number"}}
""")
    stack.api.apply(ingress("iso-bad", [rule("iso-bad.example.com", [("/", "Prefix", "iso", 80)])],
                            annotations={"limen.dev/plugins": "broken"}))

    def event():
        ev = stack.api.get_json("events", "-n", NS, "--field-selector", "involvedObject.name=broken")
        return [e for e in ev["items"] if e["involvedObject"]["kind"] == "Plugin"]
    evs = wait_until(event, timeout=15, what="Event on the broken Plugin")
    assert evs[0]["type"] == "Warning" and "status_code" in evs[0]["message"]
    # fail closed: the Ingress that uses it is not served ...
    assert get(stack, "iso-bad.example.com", "/")[0] == 404
    # ... while other Ingresses keep updating
    stack.api.apply(ingress("iso-good", [rule("iso-good.example.com", [("/", "Prefix", "iso", 80)])]))
    wait_until(routed(stack, "iso-good.example.com", "/", "iso"), timeout=15, what="other Ingress applied")
    plugin = stack.api.get_json("plugins.limen.dev", "broken", "-n", NS)
    conds = {c["type"]: c for c in plugin.get("status", {}).get("conditions", [])}
    assert conds.get("Programmed", {}).get("status") == "False"
    # fixing the Plugin brings the Ingress back
    stack.api.apply(f"""
apiVersion: limen.dev/v1
kind: Plugin
metadata: {{name: broken, namespace: {NS}}}
spec:
  plugin: request-termination
  config: {{status_code: 451}}
""")
    wait_until(lambda: get(stack, "iso-bad.example.com", "/")[0] == 451, timeout=15, what="fixed Plugin applied")


def test_ingress_status_gets_the_address(stack):
    backend(stack, "st")
    stack.api.apply(ingress("st", [rule("st.example.com", [("/", "Prefix", "st", 80)])]))

    def addr():
        ing = stack.api.get_json("ingress", "st", "-n", NS)
        return ing.get("status", {}).get("loadBalancer", {}).get("ingress")
    assert wait_until(addr, timeout=15, what="Ingress status") == [{"ip": "203.0.113.7"}]


def test_other_ingress_classes_are_ignored(stack):
    backend(stack, "other")
    stack.api.apply(ingress("other", [rule("other-class.example.com", [("/", "Prefix", "other", 80)])],
                            cls="nginx"))
    stack.api.apply(ingress("mine", [rule("mine.example.com", [("/", "Prefix", "other", 80)])]))
    wait_until(routed(stack, "mine.example.com", "/", "other"), timeout=15, what="our Ingress")
    assert get(stack, "other-class.example.com", "/")[0] == 404
    ing = stack.api.get_json("ingress", "other", "-n", NS)
    assert not ing.get("status", {}).get("loadBalancer", {}).get("ingress")


def test_dataplane_restart_converges(stack):
    backend(stack, "dp")
    stack.api.apply(ingress("dp", [rule("dp.example.com", [("/", "Prefix", "dp", 80)])]))
    wait_until(routed(stack, "dp.example.com", "/", "dp"), timeout=15, what="route")
    dp2 = stack.dataplane()  # a second data plane joins: it gets the config from a second controller
    ctl2 = stack.controller(dataplanes=[dp2], name="ctl2")
    wait_until(lambda: dp2.status()["configuration_hash"] == stack.dp.status()["configuration_hash"], timeout=15,
               what="second data plane in sync")
    # restart the first data plane with an empty state: the controller pushes again
    import shutil
    stack.dp.stop()
    shutil.rmtree(stack.dp.state_dir, ignore_errors=True)
    stack.dp.start()
    wait_until(routed(stack, "dp.example.com", "/", "dp"), timeout=15, what="restarted data plane served")
    ctl2.stop()
    stack.controllers.remove(ctl2)


def test_controller_restart_converges(stack):
    before = stack.dp.status()["configuration_hash"]
    stack.ctl.stop()
    stack.controllers.remove(stack.ctl)
    backend(stack, "later")
    stack.api.apply(ingress("later", [rule("later.example.com", [("/", "Prefix", "later", 80)])]))
    stack.ctl = stack.controller("--publish-status-address", "203.0.113.7", dataplanes=[stack.dp])
    wait_until(routed(stack, "later.example.com", "/", "later"), timeout=20, what="change made while down")
    assert stack.dp.status()["configuration_hash"] != before


def test_two_controllers_elect_one_leader(stack, apiserver):
    # every replica pushes (here both to the same data plane); only the leader writes status and Events
    other = stack.controller("--publish-status-address", "203.0.113.7", dataplanes=[stack.dp], name="standby")

    def holder():
        lease = apiserver.get_json("lease", "limen-controller-leader", "-n", "limen-system")
        return lease["spec"].get("holderIdentity")
    first = wait_until(holder, timeout=15, what="a leader")
    leaders = [c for c in (stack.ctl, other) if "limen_controller_leader 1" in c.metrics()]
    assert len(leaders) == 1, "\n\n".join(c.read_log()[-3000:] for c in (stack.ctl, other))
    # the leader goes away: the other one takes over (the lease is released on SIGTERM)
    leader = leaders[0]
    leader.stop()
    stack.controllers.remove(leader)
    survivor = other if leader is stack.ctl else stack.ctl
    wait_until(lambda: holder() not in (None, "", first), timeout=15, what="a new leader")
    wait_until(lambda: "limen_controller_leader 1" in survivor.metrics(), timeout=15, what="survivor leads")
    if leader is stack.ctl:
        stack.ctl = survivor


def test_own_endpoints_and_metrics(stack):
    assert stack.ctl.get("/healthz") == (200, "ok\n")
    assert stack.ctl.get("/readyz")[0] == 200
    m = stack.ctl.metrics()
    for name in ("limen_controller_syncs_total", "limen_controller_objects_cached{kind=\"Ingress\"",
                 "limen_controller_broken_objects", "limen_controller_sync_duration_seconds_bucket"):
        assert name in m, name
    assert stack.ctl.get("/nope")[0] == 404
    # no 403 anywhere: the ClusterRole in manifests/rbac.yaml is enough
    assert "403" not in stack.ctl.read_log()


def test_broken_global_plugin_keeps_the_last_good_configuration(stack):
    """Leaving out a broken global plugin (it could be authentication for everything) would open all
    routes: the controller keeps the data planes on the last good document until it is fixed."""
    backend(stack, "glob")
    stack.api.apply(ingress("glob", [rule("glob.example.com", [("/", "Prefix", "glob", 80)])]))
    wait_until(routed(stack, "glob.example.com", "/", "glob"), timeout=15, what="route")
    gp = """
apiVersion: limen.dev/v1
kind: ClusterPlugin
metadata: {{name: everyone-out, labels: {{global: "true"}}}}
spec: {{plugin: request-termination, config: {{status_code: {code}}}}}
"""
    stack.api.apply(gp.format(code=403))
    wait_until(lambda: get(stack, "glob.example.com", "/")[0] == 403, timeout=15, what="global plugin applied")
    stack.api.apply(gp.format(code='"not a number"'))
    stack.api.apply(ingress("glob2", [rule("glob2.example.com", [("/", "Prefix", "glob", 80)])]))
    wait_until(lambda: "limen_controller_held_back_total 0" not in stack.ctl.metrics(), timeout=15,
               what="sync held back")
    assert get(stack, "glob.example.com", "/")[0] == 403    # still the last good document
    routes = stack.dp.admin_json("GET", "/routes")[1]["data"]  # the new Ingress waits too
    assert not [r for r in routes if "glob2.example.com" in (r.get("hosts") or [])]
    stack.api.kubectl("delete", "clusterplugin", "everyone-out")
    wait_until(routed(stack, "glob2.example.com", "/", "glob"), timeout=15, what="released after the fix")


def test_publish_service_addresses_follow_its_load_balancer(stack, apiserver):
    """--publish-service: Ingress status carries that Service's load-balancer addresses and follows them.
    A controller for another class (its own controller name) so the main one leaves these alone."""
    apiserver.apply("""
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: other}
spec: {controller: limen.dev/other}
""")
    apiserver.apply(f"""
apiVersion: v1
kind: Service
metadata: {{name: limen-proxy, namespace: {NS}}}
spec:
  type: LoadBalancer
  ports: [{{name: http, port: 80, targetPort: 8000}}]
""")
    lb = '{{"status":{{"loadBalancer":{{"ingress":[{{"{k}":"{v}"}}]}}}}}}'
    apiserver.kubectl("patch", "service", "limen-proxy", "-n", NS, "--subresource=status", "--type=merge",
                      "-p", lb.format(k="ip", v="198.51.100.9"))
    backend(stack, "pub")
    stack.api.apply(ingress("pub", [rule("pub.example.com", [("/", "Prefix", "pub", 80)])], cls="other"))
    ctl = stack.controller("--ingress-class", "other", "--controller-name", "limen.dev/other",
                           "--publish-service", f"{NS}/limen-proxy", "--election", "false", name="pub")

    def addr():
        ing = apiserver.get_json("ingress", "pub", "-n", NS)
        return ing.get("status", {}).get("loadBalancer", {}).get("ingress")
    wait_until(lambda: addr() == [{"ip": "198.51.100.9"}], timeout=15, what="status from the Service")
    apiserver.kubectl("patch", "service", "limen-proxy", "-n", NS, "--subresource=status", "--type=merge",
                      "-p", lb.format(k="hostname", v="lb.example.com"))
    wait_until(lambda: addr() == [{"hostname": "lb.example.com"}], timeout=15, what="status follows the Service")
    ctl.stop()
    stack.controllers.remove(ctl)

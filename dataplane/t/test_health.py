"""Black-box tests of upstream health: passive checks from real traffic,
active probes, a target killed under load and brought back, the upstream
threshold, GET /upstreams/{name}/health and /targets, per-target metrics and
config errors for bad healthcheck fields."""
import asyncio
import json
import threading
import time
from collections import Counter

import pytest

from conftest import Upstream, wait_until


class StatusUpstream(Upstream):
    """Answers every request with `status` (a JSON body naming itself)."""

    def __init__(self, status=200, **kw):
        super().__init__(**kw)
        self.status = status

    async def _respond(self, writer, method, path, query, headers, hmap, blen, sha):
        if self.status == 200:
            return await super()._respond(writer, method, path, query, headers, hmap, blen, sha)
        body = json.dumps({"upstream": self.name}).encode()
        writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n" % (self.status, len(body)) + body)
        return True


@pytest.fixture
def ups():
    started = []

    def make(*specs):
        out = []
        for spec in specs:
            cls, kw = spec if isinstance(spec, tuple) else (Upstream, {})
            u = cls(host=f"127.0.0.{len(started) + 2}", name=f"t{len(started)}", **kw).start()
            started.append(u)
            out.append(u)
        return out

    yield make
    for u in started:
        if not getattr(u, "stopped", False):
            u.stop()


def config(targets, healthchecks="", service_extra="", upstream_extra=""):
    ts = "".join(f"  - {{target: \"{u.host}:{u.port}\"}}\n" for u in targets)
    return f"""_format_version: "3.0"
services:
- name: s
  host: up
{service_extra}  routes: [{{name: r, paths: ["/"]}}]
upstreams:
- name: up
{upstream_extra}{healthchecks}  targets:
{ts}"""


def health(l):
    st, body = l.admin_json("GET", "/upstreams/up/health")
    assert st == 200
    return {d["target"]: d["health"] for d in body["data"]}


def test_passive_checks_eject_a_target_answering_500(limen_factory, ups):
    good, bad = ups(Upstream, (StatusUpstream, {"status": 500}))
    hc = "  healthchecks:\n    passive:\n      unhealthy: {http_failures: 3}\n"
    l = limen_factory(config([good, bad], hc)).start()
    c = l.conn()
    statuses = []
    for _ in range(30):
        c.request("GET", "/echo")
        r = c.getresponse()
        r.read()
        statuses.append(r.status)
    assert statuses.count(500) == 3, statuses  # Kong passes the 500s on; the third ejects it
    assert all(s == 200 for s in statuses[10:])
    h = health(l)
    assert h[f"{bad.host}:{bad.port}"] == "UNHEALTHY" and h[f"{good.host}:{good.port}"] == "HEALTHY"
    m = l.metrics()
    assert (f'limen_upstream_target_health{{upstream="up",target="{bad.host}:{bad.port}",'
            f'address="{bad.host}:{bad.port}",state="unhealthy"}} 1') in m
    assert f'address="{bad.host}:{bad.port}",kind="http_5xx"}} 3' in m
    # the balancer as a whole is still healthy (50% > threshold 0)
    st, body = l.admin_json("GET", "/upstreams/up/health?balancer_health=1")
    assert body["data"]["health"] == "HEALTHY"
    assert body["data"]["details"]["weight"] == {"total": 200, "unavailable": 100, "available": 100}


def test_threshold_makes_the_upstream_unhealthy(limen_factory, ups):
    good, bad = ups(Upstream, (StatusUpstream, {"status": 503}))
    hc = "  healthchecks:\n    threshold: 60\n    passive:\n      unhealthy: {http_failures: 1}\n"
    l = limen_factory(config([good, bad], hc)).start()
    c = l.conn()
    seen = []
    for _ in range(4):
        c.request("GET", "/echo")
        r = c.getresponse()
        seen.append((r.status, r.read()))
    assert seen[-1][0] == 503
    assert json.loads(seen[-1][1])["message"] == "failure to get a peer from the ring-balancer"
    st, body = l.admin_json("GET", "/upstreams/up/health?balancer_health=1")
    assert body["data"]["health"] == "UNHEALTHY"


def test_kill_a_target_under_load_then_bring_it_back(limen_factory, ups):
    a, b = ups(Upstream, Upstream)
    hc = """  healthchecks:
    active:
      type: http
      http_path: /status/200
      timeout: 0.5
      healthy: {interval: 0.2, successes: 1}
      unhealthy: {interval: 0.2, tcp_failures: 1, http_failures: 1, timeouts: 1}
    passive:
      unhealthy: {tcp_failures: 1}
"""
    l = limen_factory(config([a, b], hc)).start()
    bkey = f"{b.host}:{b.port}"
    wait_until(lambda: health(l)[bkey] == "HEALTHY", what="targets healthy")
    stop = threading.Event()
    results = Counter()
    lock = threading.Lock()

    def load():
        c = l.conn()
        while not stop.is_set():
            try:
                c.request("GET", "/sleep/20")
                r = c.getresponse()
                r.read()
                st = r.status
            except Exception as e:  # noqa: BLE001 - any client-side failure counts
                st = repr(e)
                c = l.conn()
            with lock:
                results[st] += 1

    ts = [threading.Thread(target=load) for _ in range(4)]
    for t in ts:
        t.start()
    time.sleep(0.5)
    b.stop()  # in-flight requests to it are cut; idempotent GETs go to the other target
    b.stopped = True
    wait_until(lambda: health(l)[bkey] == "UNHEALTHY", what="killed target unhealthy")
    time.sleep(0.3)
    before = len(b.requests)
    b2 = Upstream(host=b.host, port=b.port, name="back").start()
    try:
        wait_until(lambda: health(l)[bkey] == "HEALTHY", timeout=5, what="target back")
        wait_until(lambda: any(r["path"] == "/sleep/20" for r in b2.requests), timeout=3, what="traffic to it")
    finally:
        stop.set()
        for t in ts:
            t.join()
        b2.stop()
    assert set(results) == {200}, results
    assert results[200] > 50
    assert before > 0  # it had taken traffic before it died
    assert any(r["path"] == "/status/200" for r in b2.requests)  # the active probe
    log = l.read_log()
    assert f"{bkey} ({bkey}) is UNHEALTHY" in log and f"{bkey} ({bkey}) is HEALTHY" in log


def test_health_endpoint_states(limen_factory, ups):
    (a,) = ups(Upstream)
    l = limen_factory(f"""_format_version: "3.0"
services:
- name: s
  host: up
  routes: [{{paths: ["/"]}}]
upstreams:
- name: up
  targets:
  - {{target: "{a.host}:{a.port}", weight: 30, tags: [blue]}}
  - {{target: "no-such-host.invalid:80"}}
  - {{target: "127.0.0.1:1", weight: 0}}
- name: checked
  id: 5b6b4b2c-7c2b-4e55-8d3e-2f2d0a9a1e11
  healthchecks:
    active:
      healthy: {{interval: 5}}
  targets:
  - {{target: "{a.host}:{a.port}"}}
""").start()
    st, body = l.admin_json("GET", "/upstreams/up/health")
    assert st == 200 and body["next"] is None
    by = {d["target"]: d for d in body["data"]}
    t = by[f"{a.host}:{a.port}"]
    assert t["health"] == "HEALTHCHECKS_OFF" and t["weight"] == 30 and t["tags"] == ["blue"]
    assert t["data"]["addresses"] == [{"ip": a.host, "port": a.port, "weight": 30, "health": "HEALTHCHECKS_OFF"}]
    assert by["no-such-host.invalid:80"]["health"] == "DNS_ERROR"
    st, body = l.admin_json("GET", "/upstreams/5b6b4b2c-7c2b-4e55-8d3e-2f2d0a9a1e11/health")
    assert st == 200 and body["data"][0]["health"] == "HEALTHY"
    st, body = l.admin_json("GET", "/upstreams/up/targets")
    assert st == 200 and [d["target"] for d in body["data"]] == [f"{a.host}:{a.port}", "no-such-host.invalid:80",
                                                                 "127.0.0.1:1"]
    assert "health" not in body["data"][0]
    st, body = l.admin_json("GET", "/upstreams/nope/health")
    assert st == 404 and body == {"message": "Not found"}
    m = l.metrics()
    assert 'limen_upstream_target_health{upstream="up",target="no-such-host.invalid:80",address="",state="dns_error"} 1' in m
    assert f'target="{a.host}:{a.port}",address="{a.host}:{a.port}",state="healthchecks_off"}} 1' in m


def test_health_survives_config_swaps(limen_factory, ups):
    good, bad = ups(Upstream, (StatusUpstream, {"status": 500}))
    hc = "  healthchecks:\n    passive:\n      unhealthy: {http_failures: 1}\n"
    l = limen_factory(config([good, bad], hc)).start()
    for _ in range(4):
        l.request("GET", "/echo")
    bkey = f"{bad.host}:{bad.port}"
    assert health(l)[bkey] == "UNHEALTHY"
    # another config (the same upstream, another route): the state is kept
    st, _ = l.admin_json("POST", "/config", config([good, bad], hc).replace('paths: ["/"]', 'paths: ["/", "/x"]'))
    assert st == 201
    assert health(l)[bkey] == "UNHEALTHY"
    assert all(l.request("GET", "/echo")[0] == 200 for _ in range(6))
    # health checks off: HEALTHCHECKS_OFF, and it takes traffic again
    st, _ = l.admin_json("POST", "/config", config([good, bad]))
    assert st == 201
    assert health(l)[bkey] == "HEALTHCHECKS_OFF"
    assert 500 in {l.request("GET", "/echo")[0] for _ in range(4)}


def test_bad_healthcheck_fields_are_refused_with_their_path(limen_factory, ups):
    (a,) = ups(Upstream)
    l = limen_factory(config([a])).start()

    def errors(hc):
        st, body = l.admin_json("POST", "/config", config([a], "  healthchecks:\n" + hc))
        assert st == 400
        return {e.get("path"): e["message"] for fe in body["flattened_errors"] for e in fe["errors"]}

    paths = errors("    active:\n      healthy: {interval: 5, successes: 300}\n      timeout: soon\n")
    assert paths["upstreams[0].healthchecks.active.healthy.successes"] == "value should be between 0 and 255"
    assert paths["upstreams[0].healthchecks.active.timeout"] == "expected a number"
    # checked when the configuration is compiled (after the document is valid)
    paths = errors("""    active:
      type: grpc
      http_path: health
      headers: {x-token: secret}
      healthy: {interval: 5}
""")
    assert "'grpc' are not supported yet" in paths["upstreams[0].healthchecks.active.type"]
    assert paths["upstreams[0].healthchecks.active.http_path"] == "should start with: /"
    assert paths["upstreams[0].healthchecks.active.headers.x-token"] == "expected an array"
    assert l.request("GET", "/echo")[0] == 200  # the old config keeps serving


def test_set_target_health_through_the_admin_api(limen_factory, ups):
    """Kong's POST /upstreams/{u}/targets/{t}/healthy|unhealthy (and per address)."""
    a, b = ups(Upstream, Upstream)
    hc = "  healthchecks:\n    passive:\n      unhealthy: {http_failures: 3}\n"
    l = limen_factory(config([a, b], hc)).start()
    ta, tb = f"{a.host}:{a.port}", f"{b.host}:{b.port}"
    st, _ = l.admin_json("POST", f"/upstreams/up/targets/{ta}/unhealthy")
    assert st == 204
    assert health(l) == {ta: "UNHEALTHY", tb: "HEALTHY"}
    names = {json.loads(l.request("GET", "/x")[2])["upstream"] for _ in range(10)}
    assert names == {b.name}  # traffic avoids it at once
    st, _ = l.admin_json("PUT", f"/upstreams/up/targets/{ta}/{ta}/healthy")  # one address, PUT as Kong Manager
    assert st == 204
    assert health(l) == {ta: "HEALTHY", tb: "HEALTHY"}
    st, body = l.admin_json("POST", "/upstreams/up/targets/10.9.9.9:1/healthy")
    assert st == 404 and body["message"] == "Not found"
    st, body = l.admin_json("POST", "/upstreams/nope/targets/x:1/healthy")
    assert st == 404


def test_set_target_health_without_health_checks_is_refused(limen_factory, ups):
    (a,) = ups(Upstream)
    l = limen_factory(config([a])).start()
    st, body = l.admin_json("POST", f"/upstreams/up/targets/{a.host}:{a.port}/unhealthy")
    assert st == 400 and body["message"] == "no healthchecker found for up"


def test_active_https_checks(limen_factory, ups, tmp_path):
    """type https: a TLS probe; with https_verify_certificate a self-signed target fails (counted as a TCP
    failure), without it the same target is healthy; a plain-HTTP target fails the handshake."""
    from tlsutil import Certs, TLSUpstream
    certs = Certs()
    tls_up = TLSUpstream(*certs.leaf("localhost", ["localhost"], self_signed=True)).start()
    (plain,) = ups(Upstream)
    try:
        targets = f'  - {{target: "127.0.0.1:{tls_up.port}"}}\n  - {{target: "{plain.host}:{plain.port}"}}\n'

        def doc(verify):
            return f"""_format_version: "3.0"
services:
- name: s
  host: up
  protocol: https
  routes: [{{name: r, paths: ["/"]}}]
upstreams:
- name: up
  healthchecks:
    active:
      type: https
      https_verify_certificate: {str(verify).lower()}
      https_sni: localhost
      http_path: /ping
      timeout: 1
      healthy: {{interval: 0.2, successes: 1}}
      unhealthy: {{interval: 0.2, tcp_failures: 1, http_failures: 1, timeouts: 1}}
  targets:
{targets}"""
        l = limen_factory(doc(False)).start()
        tk, pk = f"127.0.0.1:{tls_up.port}", f"{plain.host}:{plain.port}"
        wait_until(lambda: health(l) == {tk: "HEALTHY", pk: "UNHEALTHY"}, timeout=5, what="https probe results")
        assert tls_up.snis and tls_up.snis[-1] == "localhost"  # https_sni
        st, body = l.admin_json("POST", "/config", doc(True))
        assert st == 201, body
        wait_until(lambda: health(l)[tk] == "UNHEALTHY", timeout=5, what="self-signed refused when verifying")
    finally:
        tls_up.stop()

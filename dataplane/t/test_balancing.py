"""Black-box tests of load balancing over Kong upstreams: round-robin weights,
consistent hashing (stickiness, remapping when a target goes, cookies),
least-connections, latency, retries on another target."""
import asyncio
import http.client
import json
import re
import threading
import time
from collections import Counter

import pytest

from conftest import Upstream


class DelayUpstream(Upstream):
    """Answers every request like /echo after `delay` seconds."""

    def __init__(self, delay=0.0, **kw):
        super().__init__(**kw)
        self.delay = delay

    async def _respond(self, writer, method, path, query, headers, hmap, blen, sha):
        if self.delay:
            await asyncio.sleep(self.delay)
        return await super()._respond(writer, method, path, query, headers, hmap, blen, sha)


@pytest.fixture
def ups():
    started = []

    def make(n, cls=Upstream, **kw):
        for i in range(n):
            started.append(cls(host=f"127.0.0.{len(started) + 2}", name=f"t{len(started)}", **kw).start())
        return started[-n:]

    yield make
    for u in started:
        u.stop()


def upstream_config(targets, algorithm="round-robin", extra="", service_extra=""):
    ts = "".join(f"  - {{target: \"{u.host}:{u.port}\", weight: {w}}}\n" for u, w in targets)
    return f"""_format_version: "3.0"
services:
- name: s
  host: up
{service_extra}  routes: [{{name: r, paths: ["/"]}}]
upstreams:
- name: up
  algorithm: {algorithm}
{extra}  targets:
{ts}"""


def hit(conn, path="/echo", headers=None):
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    return r.status, r, (json.loads(body) if r.status == 200 and body[:1] == b"{" else body)


def test_round_robin_follows_weights(limen_factory, ups):
    a, b = ups(2)
    l = limen_factory(upstream_config([(a, 25), (b, 75)])).start()
    c = l.conn()
    seen = Counter(hit(c)[2]["upstream"] for _ in range(400))
    assert abs(seen[a.name] / 400 - 0.25) <= 0.05, seen
    # smooth: the light target never gets two in a row
    order = [hit(c)[2]["upstream"] for _ in range(12)]
    assert all(not (x == y == a.name) for x, y in zip(order, order[1:])), order
    m = l.metrics()
    assert f'limen_upstream_target_requests_total{{upstream="up",target="{b.host}:{b.port}"' in m


def test_plain_host_still_round_robin(limen_factory, upstream):
    l = limen_factory(f"""_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{upstream.port}
  routes: [{{paths: ["/"]}}]
""").start()
    assert l.request("GET", "/echo")[0] == 200


def test_consistent_hashing_sticky_and_remap_bound(limen_factory, ups):
    us = ups(4)
    extra = "  hash_on: header\n  hash_on_header: X-User\n"
    l = limen_factory(upstream_config([(u, 100) for u in us], "consistent-hashing", extra)).start()
    c = l.conn()
    keys = [f"user-{i}" for i in range(200)]
    owner = {k: hit(c, headers={"X-User": k})[2]["upstream"] for k in keys}
    assert len(set(owner.values())) == 4
    assert all(owner[k] == hit(c, headers={"X-User": k})[2]["upstream"] for k in keys[:50])  # sticky
    # the last target leaves: only its keys move
    st, _ = l.admin_json("POST", "/config", upstream_config([(u, 100) for u in us[:3]], "consistent-hashing", extra))
    assert st == 201
    c = l.conn()
    after = {k: hit(c, headers={"X-User": k})[2]["upstream"] for k in keys}
    moved = [k for k in keys if after[k] != owner[k]]
    assert all(owner[k] == us[3].name for k in moved), "a key of a remaining target moved"
    assert len(moved) <= len(keys) / 4 + 20, len(moved)
    assert us[3].name not in after.values()


def test_consistent_hashing_cookie_is_set_and_sticks(limen_factory, ups):
    us = ups(3)
    extra = "  hash_on: cookie\n  hash_on_cookie: lb\n  hash_on_cookie_path: /app\n"
    l = limen_factory(upstream_config([(u, 100) for u in us], "consistent-hashing", extra)).start()
    c = l.conn()
    st, r, body = hit(c)
    cookie = r.getheader("Set-Cookie")
    assert cookie and cookie.startswith("lb=") and "; Path=/app; Same-Site=Lax; HttpOnly" in cookie, cookie
    value = cookie.split(";")[0]
    first = body["upstream"]
    for _ in range(10):
        st, r, body = hit(c, headers={"Cookie": "other=1; " + value})
        assert body["upstream"] == first and r.getheader("Set-Cookie") is None


def test_consistent_hashing_fallback_and_query(limen_factory, ups):
    us = ups(3)
    extra = "  hash_on: header\n  hash_on_header: X-Missing\n  hash_fallback: query_arg\n  hash_fallback_query_arg: id\n"
    l = limen_factory(upstream_config([(u, 100) for u in us], "consistent-hashing", extra)).start()
    c = l.conn()
    owners = {i: hit(c, f"/echo?id={i}")[2]["upstream"] for i in range(30)}
    assert len(set(owners.values())) > 1
    assert all(hit(c, f"/echo?x=1&id={i}")[2]["upstream"] == owners[i] for i in range(30))


def test_least_connections_prefers_the_idle_target(limen_factory, ups):
    slow = ups(1, DelayUpstream, delay=0.4)[0]
    fast = ups(1, DelayUpstream, delay=0.0)[0]
    l = limen_factory(upstream_config([(slow, 100), (fast, 100)], "least-connections")).start()
    got = Counter()
    lock = threading.Lock()

    def worker():
        c = l.conn()
        for _ in range(8):
            name = hit(c)[2]["upstream"]
            with lock:
                got[name] += 1

    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    # round-robin would give 16/16; the slow one holds its connections longer
    assert got[fast.name] >= 20, got


def test_latency_prefers_the_fast_target(limen_factory, ups):
    slow = ups(1, DelayUpstream, delay=0.05)[0]
    fast = ups(1, DelayUpstream, delay=0.0)[0]
    l = limen_factory(upstream_config([(slow, 100), (fast, 100)], "latency"), workers=1).start()
    c = l.conn()
    got = Counter(hit(c)[2]["upstream"] for _ in range(60))
    assert got[fast.name] >= 45, got


def test_retry_goes_to_another_target(limen_factory, ups):
    (a,) = ups(1)
    dead = Upstream(host="127.0.0.9")  # a port nobody listens on
    l = limen_factory(upstream_config([(a, 100), (dead, 100)])).start()
    c = l.conn()
    assert all(hit(c)[0] == 200 for _ in range(20))
    m = l.metrics()
    labels = f'upstream="up",target="127.0.0.9:{dead.port}",address="127.0.0.9:{dead.port}"'
    retries = int(re.search(r"limen_upstream_target_retries_total\{%s\} (\d+)" % re.escape(labels), m).group(1))
    tcp = int(re.search(r'limen_upstream_target_failures_total\{%s,kind="tcp"\} (\d+)' % re.escape(labels), m).group(1))
    assert retries >= 5 and tcp == retries, (retries, tcp)
    assert "retry 1 of 5 on" in l.read_log()


def test_retries_zero_means_no_retry(limen_factory, ups):
    (a,) = ups(1)
    dead = Upstream(host="127.0.0.9")
    l = limen_factory(upstream_config([(a, 100), (dead, 100)], service_extra="  retries: 0\n")).start()
    c = l.conn()
    sts = Counter(hit(c)[0] for _ in range(10))
    assert sts == {200: 5, 502: 5}, sts


def test_no_usable_target_is_503(limen_factory, ups):
    dead = Upstream(host="127.0.0.9")
    extra = "  healthchecks:\n    passive:\n      unhealthy: {tcp_failures: 1}\n"
    l = limen_factory(upstream_config([(dead, 100)], extra=extra)).start()
    st, h, body = l.request("GET", "/echo")
    assert st == 502
    st, h, body = l.request("GET", "/echo")
    assert st == 503
    assert json.loads(body)["message"] == "failure to get a peer from the ring-balancer"

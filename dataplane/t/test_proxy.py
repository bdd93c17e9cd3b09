"""Black-box tests of the proxy's request path: routing, path rewriting,
headers to and from the upstream, keep-alive, pipelining, failures and
limits. Bodies and streaming are in test_streaming.py, request smuggling in
test_smuggling.py.

One Limen (1 worker) and one upstream serve the whole module; the fixture
stops Limen at the end, which asserts that ASan/UBSan/LSan reported nothing."""
import json
import re
import socket
import subprocess
import time
import types
import http.client

import pytest

from conftest import Limen, Upstream, free_port, simple_config
from httpraw import RawConn, request_bytes

PH_ROUTES = """  - {{name: {p}fv0,  paths: ["/fv0"],  strip_path: false, path_handling: v0{h}}}
  - {{name: {p}fv1,  paths: ["/fv1"],  strip_path: false, path_handling: v1{h}}}
  - {{name: {p}tv0,  paths: ["/tv0"],  strip_path: true,  path_handling: v0{h}}}
  - {{name: {p}tv1,  paths: ["/tv1"],  strip_path: true,  path_handling: v1{h}}}
  - {{name: {p}fv0s, paths: ["/fv0/"], strip_path: false, path_handling: v0{h}}}
  - {{name: {p}fv1s, paths: ["/fv1/"], strip_path: false, path_handling: v1{h}}}
  - {{name: {p}tv0s, paths: ["/tv0/"], strip_path: true,  path_handling: v0{h}}}
  - {{name: {p}tv1s, paths: ["/tv1/"], strip_path: true,  path_handling: v1{h}}}
"""

CONFIG = """_format_version: "3.0"
services:
- name: root
  url: http://127.0.0.1:{P}
  routes:
  - name: behaviours
    paths: ["/echo", "/bytes", "/sleep", "/status", "/die-mid", "/garbage", "/bighead", "/interim",
            "/trailers", "/die-chunked", "/extra", "/early"]
    strip_path: false
  - name: preserve
    paths: ["/preserve"]
    strip_path: false
    preserve_host: true
  - name: strip
    paths: ["/strip"]
- name: host-exact
  url: http://127.0.0.1:{P}/host-exact
  routes:
  - name: host-exact
    hosts: ["api.example.com"]
- name: host-lead
  url: http://127.0.0.1:{P}/host-lead
  routes:
  - name: host-lead
    hosts: ["*.example.com"]
- name: host-trail
  url: http://127.0.0.1:{P}/host-trail
  routes:
  - name: host-trail
    hosts: ["www.example.*"]
- name: pfx-short
  url: http://127.0.0.1:{P}/pfx-short
  routes:
  - name: pfx-short
    paths: ["/api"]
- name: pfx-long
  url: http://127.0.0.1:{P}/pfx-long
  routes:
  - name: pfx-long
    paths: ["/api/v2"]
- name: regex
  url: http://127.0.0.1:{P}/regex
  routes:
  - name: regex
    paths: ['~/users/\\d+$']
- name: users-prefix
  url: http://127.0.0.1:{P}/users-prefix
  routes:
  - name: users-prefix
    paths: ["/users"]
- name: m-post
  url: http://127.0.0.1:{P}/m-post
  routes:
  - name: m-post
    paths: ["/m"]
    methods: ["POST"]
- name: m-any
  url: http://127.0.0.1:{P}/m-any
  routes:
  - name: m-any
    paths: ["/m"]
- name: h-v2
  url: http://127.0.0.1:{P}/h-v2
  routes:
  - name: h-v2
    paths: ["/h"]
    headers:
      x-version: ["2"]
- name: h-any
  url: http://127.0.0.1:{P}/h-any
  routes:
  - name: h-any
    paths: ["/h"]
- name: ph
  url: http://127.0.0.1:{P}/s
  routes:
{PH}- name: ph-slash
  url: http://127.0.0.1:{P}/s/
  routes:
{PHS}- name: refused
  url: http://127.0.0.1:{CLOSED}
  retries: 1
  routes:
  - name: refused
    paths: ["/refused"]
- name: slow
  url: http://127.0.0.1:{P}
  read_timeout: 300
  write_timeout: 300
  routes:
  - name: slow
    paths: ["/slow"]
- name: blackhole
  url: http://127.0.0.1:{BLACKHOLE}
  connect_timeout: 300
  retries: 0
  routes:
  - name: blackhole
    paths: ["/blackhole"]
- name: unresolvable
  host: does-not-exist.invalid
  routes:
  - name: unresolvable
    paths: ["/unresolvable"]
"""


def _blackhole():
    """A local listener whose accept queue is full: SYNs to it are dropped,
    so a connect hangs until the proxy's connect timeout."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    port = ls.getsockname()[1]
    fill = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fill.append(s)
    time.sleep(0.1)
    return port, [ls] + fill


@pytest.fixture(scope="module")
def env():
    up = Upstream(name="up").start()
    bh_port, bh_socks = _blackhole()
    cfg = CONFIG.format(P=up.port, CLOSED=free_port(), BLACKHOLE=bh_port,
                        PH=PH_ROUTES.format(p="", h=""),
                        PHS=PH_ROUTES.format(p="slash-", h=', hosts: ["slash.test"]'))
    lm = Limen(cfg, workers=1).start()
    yield types.SimpleNamespace(up=up, lm=lm)
    try:
        lm.stop()
    finally:
        up.stop()
        for s in bh_socks:
            s.close()


def get_json(lm, path, headers=None, method="GET", body=None):
    st, h, data = lm.request(method, path, headers=headers, body=body)
    assert st == 200, (st, data[:300])
    return json.loads(data), h


def up_headers(j):
    """Headers the upstream received: name lower-cased -> list of values."""
    out = {}
    for k, v in j["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


def assert_kong_error(status, headers, data, want_status, message):
    assert status == want_status, (status, data)
    assert headers["content-type"].startswith("application/json"), headers
    j = json.loads(data)
    assert set(j) == {"message", "request_id"}, j
    assert j["message"] == message, j
    assert re.fullmatch(r"[0-9a-f]{32}", j["request_id"]), j


# --------------------------------------------------------------------------
# 1. routing

@pytest.mark.parametrize("host,path,want", [
    ("api.example.com", "/x", "/host-exact/x"),          # plain host beats *.example.com
    ("API.Example.COM:8000", "/x", "/host-exact/x"),     # case-insensitive, port ignored
    ("foo.example.com", "/x", "/host-lead/x"),
    ("a.b.example.com", "/x", "/host-lead/x"),
    ("www.example.org", "/x", "/host-trail/x"),
    ("www.example.co.uk", "/x", "/host-trail/x"),
    (None, "/api/x", "/pfx-short/x"),
    (None, "/api/v2/x", "/pfx-long/x"),                  # longer prefix wins
    (None, "/api/v2", "/pfx-long"),
    (None, "/apiary", "/pfx-short/ary"),                 # prefixes are not segment-bound
    (None, "/users/42", "/regex"),                       # regex beats a prefix route
    (None, "/users/42/x", "/users-prefix/42/x"),         # regex anchored with $
    (None, "/users/abc", "/users-prefix/abc"),
])
def test_routing_host_and_path(env, host, path, want):
    headers = {"Host": host} if host else {}
    j, _ = get_json(env.lm, path, headers)
    assert j["path"] == want


def test_routing_methods(env):
    j, _ = get_json(env.lm, "/m", method="POST", body=b"x")
    assert j["path"] == "/m-post"
    j, _ = get_json(env.lm, "/m")
    assert j["path"] == "/m-any"


def test_routing_headers(env):
    j, _ = get_json(env.lm, "/h", {"X-Version": "2"})
    assert j["path"] == "/h-v2"
    j, _ = get_json(env.lm, "/h", {"X-Version": "3"})
    assert j["path"] == "/h-any"
    j, _ = get_json(env.lm, "/h")
    assert j["path"] == "/h-any"


def test_no_route_404_like_kong(env):
    st, h, data = env.lm.request("GET", "/nothing/here", headers={"Host": "nomatch.test"})
    assert_kong_error(st, h, data, 404, "no Route matched with those values")
    # the same with curl
    out = subprocess.run(["curl", "-s", "-i", "-H", "Host: nomatch.test",
                          f"http://127.0.0.1:{env.lm.port}/nothing"],
                         capture_output=True, timeout=20, check=True).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 ")
    assert re.search(rb"(?im)^content-type: application/json", head)
    assert json.loads(body)["message"] == "no Route matched with those values"


def test_request_id_in_404_matches_given_one(env):
    st, h, data = env.lm.request("GET", "/nothing", headers={"Host": "nomatch.test", "X-Request-Id": "abc-123"})
    assert st == 404
    assert json.loads(data)["request_id"] == "abc-123"


# --------------------------------------------------------------------------
# 2. strip_path, path_handling, query, preserve_host

# Kong's documented table (Route object, path_handling)
PATH_TABLE = [
    # service.path /s
    (None, "/fv0req", "/s/fv0req"),
    (None, "/fv1req", "/sfv1req"),
    (None, "/tv0req", "/s/req"),
    (None, "/tv1req", "/sreq"),
    (None, "/fv0/req", "/s/fv0/req"),
    (None, "/fv1/req", "/sfv1/req"),
    (None, "/tv0/req", "/s/req"),
    (None, "/tv1/req", "/sreq"),
    # service.path /s/
    ("slash.test", "/fv0req", "/s/fv0req"),
    ("slash.test", "/fv1req", "/s/fv1req"),
    ("slash.test", "/tv0req", "/s/req"),
    ("slash.test", "/tv1req", "/s/req"),
    ("slash.test", "/fv0/req", "/s/fv0/req"),
    ("slash.test", "/fv1/req", "/s/fv1/req"),
    ("slash.test", "/tv0/req", "/s/req"),
    ("slash.test", "/tv1/req", "/s/req"),
    # nothing left after the stripped prefix (Kong's router get_upstream_uri)
    (None, "/tv0", "/s"),
    (None, "/tv0/", "/s/"),
    ("slash.test", "/tv0", "/s"),
    ("slash.test", "/tv0/", "/s/"),
]


@pytest.mark.parametrize("host,path,want", PATH_TABLE, ids=[f"{h or 's'}{p}" for h, p, _ in PATH_TABLE])
def test_path_handling_table(env, host, path, want):
    j, _ = get_json(env.lm, path, {"Host": host} if host else {})
    assert j["path"] == want


def test_strip_path_and_query_kept(env):
    j, _ = get_json(env.lm, "/strip/echo/a?x=1&y=%20z&x=2")
    assert j["path"] == "/echo/a"
    assert j["query"] == "x=1&y=%20z&x=2"
    j, _ = get_json(env.lm, "/echo/b?q")
    assert j["path"] == "/echo/b" and j["query"] == "q"   # strip_path false keeps the prefix
    j, _ = get_json(env.lm, "/tv0req?k=v")
    assert j["path"] == "/s/req" and j["query"] == "k=v"


def test_preserve_host(env):
    j, _ = get_json(env.lm, "/preserve", {"Host": "client.example.net:8443"})
    assert up_headers(j)["host"] == ["client.example.net:8443"]
    j, _ = get_json(env.lm, "/echo", {"Host": "client.example.net"})
    assert up_headers(j)["host"] == [f"127.0.0.1:{env.up.port}"]  # non-default port kept


# --------------------------------------------------------------------------
# 3. headers

def test_forwarded_headers(env):
    j, _ = get_json(env.lm, "/echo", {"Host": "front.example:9999", "X-Forwarded-For": "10.1.2.3",
                                      "X-Forwarded-Proto": "https", "X-Real-IP": "6.6.6.6",
                                      "X-Forwarded-Host": "evil", "X-Forwarded-Port": "1"})
    h = up_headers(j)
    assert h["x-forwarded-for"] == ["10.1.2.3, 127.0.0.1"]
    assert h["x-forwarded-proto"] == ["http"]
    assert h["x-forwarded-host"] == ["front.example"]
    assert h["x-forwarded-port"] == [str(env.lm.port)]
    assert h["x-real-ip"] == ["127.0.0.1"]
    assert "x-forwarded-prefix" not in h
    assert len(h["via"]) == 1 and "limen" in h["via"][0]


def test_forwarded_for_without_incoming_and_prefix(env):
    j, _ = get_json(env.lm, "/strip/echo")
    h = up_headers(j)
    assert h["x-forwarded-for"] == ["127.0.0.1"]
    assert h["x-forwarded-prefix"] == ["/strip"]


def test_request_id(env):
    j, _ = get_json(env.lm, "/echo", {"X-Request-Id": "my-id-1"})
    assert up_headers(j)["x-request-id"] == ["my-id-1"]
    j, _ = get_json(env.lm, "/echo")
    rid = up_headers(j)["x-request-id"]
    assert len(rid) == 1 and re.fullmatch(r"[0-9a-f]{32}", rid[0]), rid
    j2, _ = get_json(env.lm, "/echo")
    assert up_headers(j2)["x-request-id"] != rid


def test_hop_by_hop_request_headers_removed(env):
    with RawConn(env.lm.port) as c:
        c.send(request_bytes("GET", "/echo", headers=[
            ("Connection", "keep-alive, X-Private"), ("X-Private", "secret"), ("Keep-Alive", "timeout=9"),
            ("Proxy-Connection", "keep-alive"), ("TE", "trailers"), ("X-End-To-End", "yes")]))
        r = c.read_response()
    assert r.status == 200
    h = up_headers(json.loads(r.body))
    for name in ("x-private", "keep-alive", "proxy-connection", "te"):
        assert name not in h, (name, h)
    assert h.get("connection", ["keep-alive"]) != ["keep-alive, X-Private"]
    assert h["x-end-to-end"] == ["yes"]


def test_hop_by_hop_response_headers_removed(env):
    st, h, data = env.lm.request("GET", "/echo?hop=1")
    assert st == 200
    assert "x-secret" not in h and "keep-alive" not in h, h
    assert "x-secret" not in h.get("connection", "").lower()
    assert h["x-up"] == "up"   # end-to-end headers kept


def test_response_via_and_latency_headers(env):
    st, h, _ = env.lm.request("GET", "/echo")
    assert st == 200
    assert "limen" in h["via"]
    assert re.fullmatch(r"\d+", h["x-limen-upstream-latency"])
    assert re.fullmatch(r"\d+", h["x-limen-proxy-latency"])


def test_no_latency_headers_flag(limen_factory, upstream):
    lm = limen_factory(simple_config(upstream.port), extra_args=["--no-latency-headers"], workers=1).start()
    st, h, _ = lm.request("GET", "/echo")
    assert st == 200
    assert "x-limen-upstream-latency" not in h and "x-limen-proxy-latency" not in h
    assert "limen" in h["via"]


# --------------------------------------------------------------------------
# 5. keep-alive and pipelining

def test_keepalive_many_requests_one_connection(env):
    c = env.lm.conn()
    try:
        c.connect()
        sock = c.sock
        for i in range(5):
            c.request("GET", f"/echo/{i}")
            r = c.getresponse()
            assert r.status == 200
            assert json.loads(r.read())["path"] == f"/echo/{i}"
            assert c.sock is sock   # never reconnected
    finally:
        c.close()


def test_pipelined_requests_answered_in_order(env):
    with RawConn(env.lm.port) as c:
        c.send(b"".join(request_bytes("GET", f"/echo/p{i}") for i in range(3)))
        paths = [json.loads(c.read_response().body)["path"] for _ in range(3)]
        assert paths == ["/echo/p0", "/echo/p1", "/echo/p2"]
        # still usable afterwards
        c.send(request_bytes("POST", "/echo/after", body=b"hello"))
        j = json.loads(c.read_response().body)
        assert j["path"] == "/echo/after" and j["body_len"] == 5


def test_pipelined_with_bodies(env):
    with RawConn(env.lm.port) as c:
        c.send(request_bytes("POST", "/echo/a", body=b"a" * 1000)
               + request_bytes("POST", "/echo/b", headers=[("Transfer-Encoding", "chunked")],
                               body=b"3\r\nabc\r\n0\r\n\r\n")
               + request_bytes("GET", "/echo/c"))
        got = [json.loads(c.read_response().body) for _ in range(3)]
    assert [(j["path"], j["body_len"]) for j in got] == [("/echo/a", 1000), ("/echo/b", 3), ("/echo/c", 0)]


def test_upstream_connections_reused(env):
    n0 = env.up.connections
    for i in range(10):
        st, _, _ = env.lm.request("GET", f"/echo/reuse{i}")
        assert st == 200
    assert env.up.connections - n0 < 10
    assert env.up.connections - n0 <= 2


def test_http10_without_keepalive_gets_close(env):
    with RawConn(env.lm.port) as c:
        c.send(b"GET /echo HTTP/1.0\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.headers.get("connection", "").lower() == "close"
        assert c.closed_by_peer()


def test_http10_keepalive(env):
    with RawConn(env.lm.port) as c:
        for _ in range(2):
            c.send(b"GET /echo HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
            r = c.read_response()
            assert r.status == 200 and r.headers.get("connection", "").lower() == "keep-alive"


def test_connection_close_from_client(env):
    with RawConn(env.lm.port) as c:
        c.send(request_bytes("GET", "/echo", headers=[("Connection", "close")]))
        r = c.read_response()
        assert r.status == 200 and r.headers.get("connection") == "close"
        assert c.closed_by_peer()


# --------------------------------------------------------------------------
# 6. failures

def test_upstream_refused_502(env):
    st, h, data = env.lm.request("GET", "/refused")
    assert_kong_error(st, h, data, 502, "An invalid response was received from the upstream server")
    assert env.lm.request("GET", "/echo")[0] == 200


def test_upstream_read_timeout_504(env):
    t = time.time()
    st, h, data = env.lm.request("GET", "/slow/sleep/2000")
    assert_kong_error(st, h, data, 504, "The upstream server is timing out")
    assert time.time() - t < 1.8
    assert env.lm.request("GET", "/echo")[0] == 200


def test_upstream_connect_timeout_504(env):
    t = time.time()
    st, h, data = env.lm.request("GET", "/blackhole")
    assert_kong_error(st, h, data, 504, "The upstream server is timing out")
    assert time.time() - t < 1.8
    assert env.lm.request("GET", "/echo")[0] == 200


def test_upstream_dies_mid_response(env):
    with RawConn(env.lm.port) as c:
        c.send(request_bytes("GET", "/die-mid/100000"))
        r = c.read_response(keep_body=False)
        assert r.status == 200 and r.headers["content-length"] == "100000"
        assert r.truncated and r.body_len < 100000
    c = env.lm.conn()
    c.request("GET", "/die-mid/100000")
    r = c.getresponse()
    with pytest.raises(http.client.IncompleteRead):
        r.read()
    c.close()
    assert env.lm.request("GET", "/echo")[0] == 200


def test_upstream_garbage_502(env):
    st, h, data = env.lm.request("GET", "/garbage")
    assert_kong_error(st, h, data, 502, "An invalid response was received from the upstream server")
    assert env.lm.request("GET", "/echo")[0] == 200


def test_unresolvable_service_503(env):
    st, h, data = env.lm.request("GET", "/unresolvable")
    assert_kong_error(st, h, data, 503, "name resolution failed")
    assert env.lm.request("GET", "/echo")[0] == 200


def test_upstream_status_passed_through(env):
    st, h, data = env.lm.request("GET", "/status/418")
    assert st == 418 and data == b"status"


# --------------------------------------------------------------------------
# 7. limits

def _assert_limit(lm, raw, status):
    with RawConn(lm.port) as c:
        c.send(raw)
        r = c.read_response()
        assert r.status == status, r.head
        assert r.headers["connection"] == "close"
        assert r.headers["content-type"].startswith("application/json")
        assert "message" in json.loads(r.body)
        assert c.closed_by_peer()


def test_header_block_too_large_431(env):
    n0 = len(env.up.requests)
    _assert_limit(env.lm, request_bytes("GET", "/echo", headers=[("X-Big", "a" * 40000)]), 431)
    _assert_limit(env.lm, request_bytes("GET", "/echo", headers=[(f"X-H{i}", "b" * 4000) for i in range(9)]), 431)
    assert len(env.up.requests) == n0


def test_request_target_too_long_414(env):
    n0 = len(env.up.requests)
    _assert_limit(env.lm, request_bytes("GET", "/echo?" + "a" * 9000), 414)
    assert len(env.up.requests) == n0
    # just under the limits is fine
    st, _, _ = env.lm.request("GET", "/echo?" + "a" * 8000, headers={"X-Big": "b" * 20000})
    assert st == 200


# --------------------------------------------------------------------------
# more of the request path

@pytest.mark.parametrize("framing", ["", "?chunked=1", "?close=1"])
def test_slow_client_download_not_cut_by_upstream_read_timeout(env, framing):
    """read_timeout is about the upstream: a client that does not read for a
    while (longer than read_timeout) still gets the whole body."""
    n = 8 << 20
    with RawConn(env.lm.port, timeout=30) as c:
        c.send(request_bytes("GET", f"/slow/bytes/{n}{framing}"))
        time.sleep(1.0)
        r = c.read_response(keep_body=False)
        assert r.status == 200 and r.body_len == n and not r.truncated


def test_slow_client_upload_not_cut_by_upstream_write_timeout(env):
    with RawConn(env.lm.port, timeout=30) as c:
        c.send(request_bytes("POST", "/slow/echo", headers=[("Content-Length", "10")]) + b"hello")
        time.sleep(1.0)
        c.send(b"world")
        r = c.read_response()
        assert r.status == 200, r.body
        assert json.loads(r.body)["body_len"] == 10


def test_long_request_id_kept(env):
    rid = "req-" + "0123456789abcdef" * 4
    j, _ = get_json(env.lm, "/echo", {"X-Request-Id": rid})
    assert up_headers(j)["x-request-id"] == [rid]
    st, _, data = env.lm.request("GET", "/refused", headers={"X-Request-Id": rid})
    assert st == 502 and json.loads(data)["request_id"] == rid


def test_invalid_request_id_replaced(env):
    j, _ = get_json(env.lm, "/echo", {"X-Request-Id": 'a "quoted" id'})
    rid = up_headers(j)["x-request-id"]
    assert len(rid) == 1 and re.fullmatch(r"[0-9a-f]{32}", rid[0])


def test_via_lists_combined(env):
    with RawConn(env.lm.port) as c:
        c.send(request_bytes("GET", "/echo?via=1", headers=[("Via", "1.0 a"), ("Via", "1.1 b")]))
        r = c.read_response()
    h = up_headers(json.loads(r.body))
    assert h["via"] == ["1.0 a, 1.1 b, 1.1 limen"]
    assert r.all("via") == ["1.0 first, 1.1 second, 1.1 third, 1.1 limen"]


def test_multiple_x_forwarded_for_headers(env):
    with RawConn(env.lm.port) as c:
        c.send(request_bytes("GET", "/echo", headers=[("X-Forwarded-For", "1.1.1.1"),
                                                      ("X-Forwarded-For", "2.2.2.2, 3.3.3.3")]))
        r = c.read_response()
    assert up_headers(json.loads(r.body))["x-forwarded-for"] == ["1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1"]


def test_upstream_response_head_too_large_502(env):
    st, h, data = env.lm.request("GET", "/bighead/20000")
    assert_kong_error(st, h, data, 502, "An invalid response was received from the upstream server")
    st, h, data = env.lm.request("GET", "/bighead/8000")
    assert st == 200 and len(h["x-big"]) == 8000 and data == b"ok"


def test_upstream_interim_responses_skipped(env):
    with RawConn(env.lm.port) as c:
        c.send(request_bytes("GET", "/interim") + request_bytes("GET", "/echo/next"))
        r = c.read_response()
        assert r.status == 200 and r.body == b"final"
        assert json.loads(c.read_response().body)["path"] == "/echo/next"


def test_upstream_chunked_with_extension_and_trailer(env):
    with RawConn(env.lm.port) as c:
        c.send(request_bytes("GET", "/trailers") + request_bytes("GET", "/echo/next"))
        r = c.read_response()
        assert r.status == 200 and r.framing == "chunked" and r.body == b"abcde"
        assert json.loads(c.read_response().body)["path"] == "/echo/next"


def test_upstream_dies_mid_chunked_body(env):
    with RawConn(env.lm.port) as c:
        c.send(request_bytes("GET", "/die-chunked/1000"))
        r = c.read_response(keep_body=False)
        assert r.status == 200 and r.framing == "chunked"
        assert r.truncated and r.body_len == 1000   # no last chunk: the client can tell
    assert env.lm.request("GET", "/echo")[0] == 200


def test_upstream_connection_close_honoured(env):
    with RawConn(env.lm.port) as c:
        for i in range(5):
            n0 = env.up.connections
            c.send(request_bytes("GET", "/echo?close=1"))
            r = c.read_response()
            assert r.status == 200 and "connection" not in r.headers   # the client connection stays
            c.send(request_bytes("GET", f"/echo/after{i}"))
            assert json.loads(c.read_response().body)["path"] == f"/echo/after{i}"
            assert env.up.connections == n0 + 1   # a new upstream connection after the close


def test_upstream_silent_close_then_next_request(env):
    with RawConn(env.lm.port) as c:
        for i in range(20):
            c.send(request_bytes("GET", "/echo?drop=1"))
            assert c.read_response().status == 200
            c.send(request_bytes("GET", f"/echo/n{i}"))
            r = c.read_response()
            assert r.status == 200, r.body


def test_pipelined_after_upstream_error(env):
    with RawConn(env.lm.port) as c:
        c.send(request_bytes("GET", "/refused") + request_bytes("GET", "/garbage") + request_bytes("GET", "/echo/ok"))
        assert c.read_response().status == 502
        assert c.read_response().status == 502
        r = c.read_response()
        assert r.status == 200 and json.loads(r.body)["path"] == "/echo/ok"


def test_absolute_form_uses_its_authority(env):
    with RawConn(env.lm.port) as c:
        c.send(b"GET http://api.example.com/x?y=1 HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        r = c.read_response()
    assert r.status == 200
    j = json.loads(r.body)
    assert j["path"] == "/host-exact/x" and j["query"] == "y=1"


def test_header_count_limit(env):
    st, _, _ = env.lm.request("GET", "/echo", headers={f"X-N{i}": "v" for i in range(90)})
    assert st == 200
    _assert_limit(env.lm, request_bytes("GET", "/echo", headers=[(f"X-N{i}", "v") for i in range(150)]), 431)


def test_concurrent_requests(env):
    import concurrent.futures
    def one(i):
        return env.lm.request("GET", f"/sleep/200?i={i}")[0]
    t = time.time()
    with concurrent.futures.ThreadPoolExecutor(40) as ex:
        assert list(ex.map(one, range(40))) == [200] * 40
    assert time.time() - t < 5


def test_client_aborts_mid_download(limen_factory, upstream):
    lm = limen_factory(simple_config(upstream.port), workers=1).start()
    for _ in range(10):
        s = socket.create_connection(("127.0.0.1", lm.port))
        s.sendall(request_bytes("GET", f"/bytes/{64 << 20}"))
        got = 0
        while got < (1 << 20):
            got += len(s.recv(65536))
        s.close()
    time.sleep(0.2)
    assert lm.proc.poll() is None, f"limen died: {lm.proc.returncode}"
    assert lm.request("GET", "/echo")[0] == 200


def test_client_aborts_mid_upload_and_while_waiting(limen_factory, upstream):
    lm = limen_factory(simple_config(upstream.port), workers=1).start()
    s = socket.create_connection(("127.0.0.1", lm.port))
    s.sendall(request_bytes("POST", "/echo", headers=[("Content-Length", str(10 << 20))]) + b"x" * 100000)
    s.close()
    s = socket.create_connection(("127.0.0.1", lm.port))
    s.sendall(request_bytes("GET", "/sleep/300"))
    time.sleep(0.05)
    s.close()
    time.sleep(0.4)
    assert lm.proc.poll() is None, f"limen died: {lm.proc.returncode}"
    assert lm.request("GET", "/echo")[0] == 200


def test_expect_100_continue_on_404_gets_no_100(env):
    with RawConn(env.lm.port) as c:
        c.send(request_bytes("POST", "/nothing", host="nomatch.test",
                             headers=[("Content-Length", "5"), ("Expect", "100-continue")]))
        r = c.read_response()
        assert r.status == 404


def test_body_of_rejected_request_is_skipped_or_closed(env):
    """A 404 for a request whose (small) body is already here: the next
    pipelined request is answered, or the connection says close."""
    with RawConn(env.lm.port) as c:
        c.send(request_bytes("POST", "/nothing", host="nomatch.test", body=b"GET /echo/evil HTTP/1.1\r\n\r\n")
               + request_bytes("GET", "/echo/next"))
        r = c.read_response()
        assert r.status == 404
        if r.headers.get("connection") == "close":
            assert c.closed_by_peer()
        else:
            assert json.loads(c.read_response().body)["path"] == "/echo/next"
    assert not any(q["path"] == "/echo/evil" for q in env.up.requests)


def test_upstream_sends_more_than_content_length(env):
    with RawConn(env.lm.port) as c:
        for i in range(3):
            c.send(request_bytes("GET", "/extra"))
            r = c.read_response()
            assert r.status == 200 and r.body == b"hello"
            c.send(request_bytes("GET", f"/echo/x{i}"))
            r = c.read_response()
            assert r.status == 200 and json.loads(r.body)["path"] == f"/echo/x{i}", r.body


def test_upstream_answers_before_reading_the_body(limen_factory, upstream):
    """An early answer (a 413 say) while the client is still uploading: the
    client gets it, and the proxy survives the upstream going away."""
    lm = limen_factory(simple_config(upstream.port), workers=1).start()
    with RawConn(lm.port, timeout=10) as c:
        c.send(request_bytes("POST", "/early/413", headers=[("Content-Length", str(32 << 20))]))
        try:
            for _ in range(32):
                c.send(b"x" * (1 << 20))
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            r = c.read_response()
            assert r.status == 413 and r.body == b"early"
        except (EOFError, ConnectionResetError):
            pass   # a reset may destroy the answer in flight; the proxy must survive it though
    time.sleep(0.2)
    assert lm.proc.poll() is None, f"limen died: {lm.proc.returncode}"
    assert lm.request("GET", "/echo")[0] == 200


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "OPTIONS", "PURGE"])
def test_methods_forwarded(env, method):
    j, _ = get_json(env.lm, "/echo/m", method=method, body=b"body!")
    assert j["method"] == method and j["body_len"] == 5


def test_many_pipelined_requests(env):
    import threading
    n = 1000
    data = b"".join(request_bytes("GET", f"/echo/{i}") for i in range(n))
    with RawConn(env.lm.port, timeout=30) as c:
        t = threading.Thread(target=c.send, args=(data,))
        t.start()
        for i in range(n):
            r = c.read_response()
            assert r.status == 200 and json.loads(r.body)["path"] == f"/echo/{i}"
        t.join()


def test_request_sent_byte_by_byte(env):
    data = request_bytes("POST", "/echo/slowly", headers=[("Transfer-Encoding", "chunked")],
                         body=b"3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n")
    with RawConn(env.lm.port) as c:
        c.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            c.send(data[i:i + 1])
            time.sleep(0.001)
        r = c.read_response()
    j = json.loads(r.body)
    assert j["path"] == "/echo/slowly" and j["body_len"] == 19


def test_absolute_form_authority_beats_host_header(env):
    with RawConn(env.lm.port) as c:
        c.send(b"GET http://api.example.com/x HTTP/1.1\r\nHost: nomatch.test\r\n\r\n")
        r = c.read_response()
    assert r.status == 200 and json.loads(r.body)["path"] == "/host-exact/x"


@pytest.mark.parametrize("path,want", [
    ("/api/../../echo", "/echo"),            # not /pfx-short/../../echo: the route is picked on the clean path
    ("/echo/a/../b", "/echo/b"),
    ("/echo/./a/.", "/echo/a/"),
    ("/echo/a/..", "/echo/"),
    ("/echo//a///b", "/echo/a/b"),
    ("/echo/x/%2e%2E/y", "/echo/y"),         # escaped dots are dots
    ("/echo/%7euser/%41", "/echo/~user/A"),  # unreserved characters decoded
    ("/echo/a%2fb%3f%20c", "/echo/a%2Fb%3F%20c"),  # the others stay escaped (upper-case hex)
    ("/echo/100%", "/echo/100%"),
    ("/%65cho/e", "/echo/e"),
    ("/echo/../nothing", None),              # /nothing: no route
    ("/echo/..", None),
])
def test_path_normalised_like_kong(env, path, want):
    st, _, data = env.lm.request("GET", path)
    if want is None:
        assert st == 404, data
    else:
        assert st == 200, data
        assert json.loads(data)["path"] == want

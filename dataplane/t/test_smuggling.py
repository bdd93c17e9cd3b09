"""Request smuggling and malformed framing: every case of smuggling_cases.txt
must be answered with exactly its status, the connection closed, and nothing
at all sent to the upstream.

smuggling_cases.txt: "=== NAME STATUS" starts a case; the lines after it,
joined without their line breaks, are the raw request, with the escapes
\\r \\n \\t \\xHH and \\\\."""
import json
import os
import re
import time
import types

import pytest

from conftest import Limen, Upstream, simple_config
from httpraw import RawConn, request_bytes

CASES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "smuggling_cases.txt")


def unescape(s):
    out = bytearray()
    i = 0
    while i < len(s):
        ch = s[i]
        if ch != "\\":
            out += ch.encode("latin-1")
            i += 1
            continue
        nxt = s[i + 1]
        if nxt == "r":
            out += b"\r"
        elif nxt == "n":
            out += b"\n"
        elif nxt == "t":
            out += b"\t"
        elif nxt == "\\":
            out += b"\\"
        elif nxt == "x":
            out.append(int(s[i + 2:i + 4], 16))
            i += 2
        else:
            raise ValueError(f"unknown escape \\{nxt} in {s!r}")
        i += 2
    return bytes(out)


def load_cases():
    cases = []
    with open(CASES_FILE, encoding="latin-1") as f:
        for line in f.read().split("\n"):
            m = re.fullmatch(r"=== (\S+) (\d{3})", line)
            if m:
                cases.append([m.group(1), int(m.group(2)), ""])
            elif line.startswith("==="):
                raise ValueError(f"bad case header {line!r}")
            elif cases:
                cases[-1][2] += line
            elif line.strip():
                raise ValueError(f"text before the first case: {line!r}")
    return [pytest.param(unescape(raw), status, id=name) for name, status, raw in cases]


CASES = load_cases()


@pytest.fixture(scope="module")
def env():
    up = Upstream(name="up").start()
    lm = Limen(simple_config(up.port), workers=2).start()
    yield types.SimpleNamespace(up=up, lm=lm)
    try:
        lm.stop()
    finally:
        up.stop()


def upstream_seen(up):
    return up.connections, len(up.requests), sum(len(r) for r in up.raw)


def test_case_count():
    assert len(CASES) >= 40


@pytest.mark.parametrize("raw,status", CASES)
def test_smuggling_case(env, raw, status):
    before = upstream_seen(env.up)
    with RawConn(env.lm.port, timeout=5) as c:
        c.send(raw)
        r = c.read_response()
        assert r.status == status, (r.head, r.body)
        assert r.headers.get("connection") == "close", r.head
        assert r.headers["content-type"].startswith("application/json")
        json.loads(r.body)
        assert c.closed_by_peer(), "the proxy kept the connection open"
    time.sleep(0.05)
    assert upstream_seen(env.up) == before, "the upstream received something"


def test_control_valid_requests_are_forwarded(env):
    """The same setup forwards well-formed requests (so the cases above fail
    for the reason they claim)."""
    with RawConn(env.lm.port) as c:
        c.send(request_bytes("POST", "/", headers=[("Transfer-Encoding", "chunked")],
                             body=b"5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"))
        j = json.loads(c.read_response().body)
        assert j["body_len"] == 5
        c.send(request_bytes("POST", "/", headers=[("Content-Length", "5")], body=b"hello"))
        assert json.loads(c.read_response().body)["body_len"] == 5
        c.send(b"GET http://example.com/abs?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
        j = json.loads(c.read_response().body)
        assert j["path"] == "/abs" and j["query"] == "q=1"
    assert len(env.up.requests) >= 3


def test_split_malformed_chunked_never_forwarded_as_request(env):
    """A bad chunk that arrives after the head was already streamed upstream:
    the client connection and the upstream connection are both closed, and
    the upstream never sees the smuggled request as a request."""
    n_req = len(env.up.requests)
    with RawConn(env.lm.port, timeout=5) as c:
        c.send(b"POST /split HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n")
        time.sleep(0.2)
        c.send(b"5\r\nhelloGET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n0\r\n\r\n")
        try:
            r = c.read_response()
            assert r.status == 400
        except (EOFError, ConnectionResetError):
            pass   # closed without an answer is fine too
        assert c.closed_by_peer()
    time.sleep(0.1)
    assert not any(q["path"] == "/smuggled" for q in env.up.requests[n_req:])
    # the upstream connection that carried the partial request is not reused
    st, _, data = env.lm.request("GET", "/after")
    assert st == 200 and json.loads(data)["path"] == "/after"

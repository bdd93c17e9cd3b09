"""Black-box tests of request and response bodies through the proxy: large
uploads and downloads in every framing, bounded memory while streaming,
bodiless responses and Expect: 100-continue."""
import hashlib
import json
import socket
import subprocess
import tempfile
import threading
import time
import types

import pytest

from conftest import Limen, Upstream, simple_config
from httpraw import RawConn, request_bytes

MiB = 1 << 20


@pytest.fixture(scope="module")
def env():
    up = Upstream(name="up").start()
    lm = Limen(simple_config(up.port), workers=1).start()
    yield types.SimpleNamespace(up=up, lm=lm)
    try:
        lm.stop()
    finally:
        up.stop()


def pattern(n):
    block = hashlib.sha256(b"limen").digest() * 2048  # 64 KiB, not all one byte
    return (block * (n // len(block) + 1))[:n]


# --------------------------------------------------------------------------
# uploads

def test_upload_content_length_64mib(env):
    body = pattern(64 * MiB)
    st, _, data = env.lm.request("POST", "/echo/up", body=body, timeout=60)
    assert st == 200
    j = json.loads(data)
    assert j["body_len"] == len(body)
    assert j["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert env.up.requests[-1]["body_len"] == len(body)


def test_upload_chunked_64mib(env):
    h = hashlib.sha256()
    sizes = [1, 7, 4096, 65536, MiB, 3 * MiB + 17]

    def gen():
        sent = 0
        i = 0
        while sent < 64 * MiB:
            n = min(sizes[i % len(sizes)], 64 * MiB - sent)
            piece = pattern(n)
            h.update(piece)
            sent += n
            i += 1
            yield piece

    c = env.lm.conn(timeout=60)
    try:
        c.request("POST", "/echo/chunked", body=gen(), encode_chunked=True)
        r = c.getresponse()
        assert r.status == 200
        j = json.loads(r.read())
    finally:
        c.close()
    assert j["body_len"] == 64 * MiB
    assert j["body_sha256"] == h.hexdigest()
    assert ["Transfer-Encoding", "chunked"] in j["headers"]


def test_upload_chunked_with_curl(env):
    with tempfile.NamedTemporaryFile() as f:
        body = pattern(3 * MiB + 5)
        f.write(body)
        f.flush()
        out = subprocess.run(["curl", "-s", "-H", "Transfer-Encoding: chunked", "--data-binary", "@" + f.name,
                              f"http://127.0.0.1:{env.lm.port}/echo/curl"],
                             capture_output=True, timeout=60, check=True).stdout
    j = json.loads(out)
    assert j["body_len"] == len(body) and j["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_expect_100_continue(env):
    with RawConn(env.lm.port) as c:
        c.send(b"POST /echo/expect HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        interim = c.read_response()
        assert interim.status == 100
        c.send(b"hello")
        r = c.read_response()
        assert r.status == 200
        j = json.loads(r.body)
        assert j["body_len"] == 5
        assert "expect" not in [k.lower() for k, _ in j["headers"]]


def test_expect_100_continue_curl(env):
    # curl sends Expect: 100-continue for a body over 1 MiB and shows the interim response with -v
    with tempfile.NamedTemporaryFile() as f:
        f.write(pattern(2 * MiB))
        f.flush()
        p = subprocess.run(["curl", "-sv", "-H", "Expect: 100-continue", "--data-binary", "@" + f.name,
                            f"http://127.0.0.1:{env.lm.port}/echo/expect"],
                           capture_output=True, timeout=60, check=True)
    assert b"HTTP/1.1 100 Continue" in p.stderr
    assert json.loads(p.stdout)["body_len"] == 2 * MiB


# --------------------------------------------------------------------------
# downloads

N64 = 64 * MiB


def test_download_content_length_64mib(env):
    with RawConn(env.lm.port, timeout=60) as c:
        c.send(request_bytes("GET", f"/bytes/{N64}"))
        r = c.read_response(keep_body=False)
        assert r.status == 200 and r.framing == "length" and r.body_len == N64 and not r.truncated
        # the connection is still usable
        c.send(request_bytes("GET", "/echo"))
        assert c.read_response().status == 200


def test_download_chunked_64mib(env):
    with RawConn(env.lm.port, timeout=60) as c:
        c.send(request_bytes("GET", f"/bytes/{N64}?chunked=1"))
        r = c.read_response(keep_body=False)
        assert r.status == 200 and r.framing == "chunked" and r.body_len == N64 and not r.truncated
        c.send(request_bytes("GET", "/echo"))
        assert c.read_response().status == 200


def test_download_close_delimited_http11_gets_chunked(env):
    with RawConn(env.lm.port, timeout=60) as c:
        c.send(request_bytes("GET", f"/bytes/{N64}?close=1"))
        r = c.read_response(keep_body=False)
        assert r.status == 200 and r.framing == "chunked" and r.body_len == N64 and not r.truncated
        assert "content-length" not in r.headers
        c.send(request_bytes("GET", "/echo"))   # the client connection survives the upstream's close
        assert c.read_response().status == 200


def test_download_close_delimited_http10(env):
    with RawConn(env.lm.port, timeout=60) as c:
        c.send(b"GET /bytes/%d?close=1 HTTP/1.0\r\nHost: a\r\n\r\n" % N64)
        r = c.read_response(keep_body=False)
        assert r.status == 200 and r.framing == "close" and r.body_len == N64
        assert "transfer-encoding" not in r.headers and "content-length" not in r.headers


def test_download_with_curl(env):
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                          f"http://127.0.0.1:{env.lm.port}/bytes/{16 * MiB}?chunked=1"],
                         capture_output=True, timeout=60, check=True).stdout
    assert out == b"200 %d" % (16 * MiB)


def _rss_sampler(lm):
    samples = []
    stop = threading.Event()

    def run():
        while not stop.is_set():
            samples.append(lm.rss_kb())
            time.sleep(0.02)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return samples, stop, t


def test_rss_bounded_download_256mib_slow_reader(env):
    n = 256 * MiB
    env.lm.request("GET", "/bytes/1000")
    base = env.lm.rss_kb()
    samples, stop, t = _rss_sampler(env.lm)
    try:
        with RawConn(env.lm.port, timeout=60) as c:
            c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            c.send(request_bytes("GET", f"/bytes/{n}"))
            time.sleep(1.0)   # the upstream keeps sending while the client does not read
            r = c.read_response(keep_body=False)
            assert r.status == 200 and r.body_len == n
    finally:
        stop.set()
        t.join()
    growth = (max(samples) - base) / 1024
    assert growth < 64, f"RSS grew by {growth:.0f} MiB"


def test_rss_bounded_upload_256mib(env):
    n = 256 * MiB
    base = env.lm.rss_kb()
    samples, stop, t = _rss_sampler(env.lm)
    block = pattern(MiB)
    try:
        with RawConn(env.lm.port, timeout=60) as c:
            c.send(request_bytes("POST", "/echo/big", headers=[("Content-Length", str(n))]))
            for _ in range(n // MiB):
                c.send(block)
            r = c.read_response()
            assert r.status == 200 and json.loads(r.body)["body_len"] == n
    finally:
        stop.set()
        t.join()
    growth = (max(samples) - base) / 1024
    assert growth < 64, f"RSS grew by {growth:.0f} MiB"


# --------------------------------------------------------------------------
# bodiless responses

@pytest.mark.parametrize("method,path", [("HEAD", "/echo/head"), ("HEAD", "/bytes/5000"),
                                         ("HEAD", "/bytes/5000?chunked=1"),
                                         ("GET", "/status/204"), ("GET", "/status/304")])
def test_no_body(env, method, path):
    # followed by a pipelined GET: any stray body byte would break the next response
    with RawConn(env.lm.port) as c:
        c.send(request_bytes(method, path) + request_bytes("GET", "/echo/next"))
        r = c.read_response(head_request=True)
        assert r.status == (int(path.split("/")[2]) if path.startswith("/status") else 200)
        if method == "HEAD" and "chunked" not in path:
            assert int(r.headers["content-length"]) > 0   # the representation's length is kept
        else:
            assert "content-length" not in r.headers and "transfer-encoding" not in r.headers
        nxt = c.read_response()
        assert nxt.status == 200 and json.loads(nxt.body)["path"] == "/echo/next"


def test_head_with_curl(env):
    out = subprocess.run(["curl", "-s", "-I", f"http://127.0.0.1:{env.lm.port}/bytes/12345"],
                         capture_output=True, timeout=20, check=True).stdout
    assert out.startswith(b"HTTP/1.1 200")
    assert b"\r\nContent-Length: 12345\r\n" in out
    assert out.endswith(b"\r\n\r\n")


def test_http10_keepalive_client_chunked_upstream(env):
    """An HTTP/1.0 client cannot take chunked: the body is close-delimited
    and the connection closes, even though it asked for keep-alive."""
    with RawConn(env.lm.port) as c:
        c.send(b"GET /bytes/100000?chunked=1 HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response(keep_body=False)
        assert r.status == 200 and r.framing == "close" and r.body_len == 100000
        assert r.headers.get("connection", "").lower() == "close"


# The upstream's last chunk read on its own, after the data before it was
# written to the client, carries nothing for a client that is not sent chunked;
# it must still end the request (and close the HTTP/1.0 connection) at once.
H10_KEEPALIVE = b"GET %s HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"
H11_CLOSE = b"GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


def _chunked_ends_and_closes(port, req, n, path):
    with RawConn(port, timeout=5) as c:
        t0 = time.time()
        c.send(req % path.encode())
        r = c.read_response(keep_body=False)
        assert r.status == 200 and r.body_len == n and not r.truncated
        assert r.headers.get("connection", "").lower() == "close"
        assert r.framing == ("close" if b"HTTP/1.0" in req else "chunked")
        assert c.closed_by_peer(timeout=3)
        assert time.time() - t0 < 3


@pytest.mark.parametrize("req", [H10_KEEPALIVE, H11_CLOSE], ids=["http10-keepalive", "http11-close"])
@pytest.mark.parametrize("n", [1, 100000])
def test_chunked_upstream_last_chunk_alone(env, req, n):
    _chunked_ends_and_closes(env.lm.port, req, n, f"/bytes/{n}?chunked=1&lastdelay=100")


def test_http11_keepalive_chunked_upstream_last_chunk_alone(env):
    with RawConn(env.lm.port, timeout=5) as c:
        c.send(b"GET /bytes/100000?chunked=1&lastdelay=100 HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response(keep_body=False)
        assert r.status == 200 and r.framing == "chunked" and r.body_len == 100000 and not r.truncated
        c.send(b"GET /echo/next HTTP/1.1\r\nHost: a\r\n\r\n")
        nxt = c.read_response()
        assert nxt.status == 200 and json.loads(nxt.body)["path"] == "/echo/next"


@pytest.mark.parametrize("req", [H10_KEEPALIVE, H11_CLOSE], ids=["http10-keepalive", "http11-close"])
def test_chunked_upstream_first_request_after_start(req):
    """A fresh proxy and upstream, the request sent as soon as the proxy answers."""
    up = Upstream(name="up").start()
    try:
        lm = Limen(simple_config(up.port), workers=1).start()
        try:
            _chunked_ends_and_closes(lm.port, req, 100000, "/bytes/100000?chunked=1")
        finally:
            lm.stop()
    finally:
        up.stop()

"""Downstream HTTP/2: ALPN h2 on TLS listeners and the cleartext preface on
listeners flagged http2, proxied to HTTP/1.1 upstreams; bodies both ways with
flow control, resets, bodiless responses, and the abuse patterns (rapid
reset, CONTINUATION flood, oversized header lists). Real clients: curl,
nghttp, h2load (nghttp2-client) and Python's h2 for hand-made frames."""
import json
import signal
import socket
import ssl
import subprocess
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from hyperframe.frame import ContinuationFrame, HeadersFrame

from conftest import Limen, free_port, wait_until
from tlsutil import Certs, read


@pytest.fixture(scope="module")
def certs():
    c = Certs()
    c.a = c.leaf("a.test")
    return c


def h2_config(up_port, certs, plugins=None):
    route = {"name": "r", "paths": ["/"]}
    if plugins:
        route["plugins"] = plugins
    return json.dumps({"_format_version": "3.0",
                       "services": [{"name": "s", "url": f"http://127.0.0.1:{up_port}", "routes": [route]}],
                       "certificates": [{"cert": read(certs.a[0]), "key": read(certs.a[1]),
                                         "snis": [{"name": "a.test"}]}]})


@pytest.fixture
def h2_limen(certs, upstream):
    started = []

    def make(plugins=None, **kw):
        l = Limen(h2_config(upstream.port, certs, plugins), **kw)
        l.tls_port, l.h2c_port = free_port(), free_port()
        l.args += ["--proxy-listen", f"127.0.0.1:{l.tls_port} ssl http2",
                   "--proxy-listen", f"127.0.0.1:{l.h2c_port} http2"]
        started.append(l)
        return l.start()
    yield make
    for l in started:
        l.stop()


def curl(*args, timeout=30):
    return subprocess.run(["curl", "-s", *args], capture_output=True, timeout=timeout)


def tls_url(l, path):
    return ["--resolve", f"a.test:{l.tls_port}:127.0.0.1", f"https://a.test:{l.tls_port}{path}"]


# --------------------------------------------------------------------------
# negotiation
# --------------------------------------------------------------------------

def test_alpn_h2_over_tls(h2_limen, certs, upstream):
    l = h2_limen()
    out = curl("--http2", "--cacert", certs.ca, "-w", "\n%{http_version} %{http_code}", *tls_url(l, "/echo/x?y=1"))
    body, _, tail = out.stdout.decode().rpartition("\n")
    assert tail == "2 200"
    seen = json.loads(body)
    hdrs = {k.lower(): v for k, v in seen["headers"]}
    assert hdrs["x-forwarded-host"] == "a.test"       # from :authority
    assert hdrs["x-forwarded-proto"] == "https"
    assert seen["path"] == "/echo/x" and seen["query"] == "y=1"
    assert upstream.requests[-1]["method"] == "GET"


def test_cleartext_prior_knowledge_and_http11_on_one_listener(h2_limen):
    l = h2_limen()
    out = curl("--http2-prior-knowledge", "-w", "%{http_version} %{http_code}", "-o", "/dev/null",
               f"http://127.0.0.1:{l.h2c_port}/echo")
    assert out.stdout == b"2 200"
    out = curl("-w", "%{http_version} %{http_code}", "-o", "/dev/null", f"http://127.0.0.1:{l.h2c_port}/echo")
    assert out.stdout == b"1.1 200"


def test_h2c_upgrade_refused(h2_limen):
    l = h2_limen()
    out = curl("--http2", "-w", "%{http_version} %{http_code}", "-o", "/dev/null", f"http://127.0.0.1:{l.h2c_port}/echo")
    assert out.stdout == b"1.1 200"  # answered over HTTP/1.1, no 101


def test_listener_without_http2_flag_stays_http11(h2_limen, certs):
    l = h2_limen()
    out = curl("--http2", "-w", "%{http_version} %{http_code}", "-o", "/dev/null", f"http://127.0.0.1:{l.port}/echo")
    assert out.stdout == b"1.1 200"
    out = curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{l.port}/echo")
    assert out.stdout != b"200"


# --------------------------------------------------------------------------
# requests and responses
# --------------------------------------------------------------------------

def test_many_concurrent_streams_with_h2load(h2_limen):
    l = h2_limen()
    out = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "32", f"https://127.0.0.1:{l.tls_port}/echo"],
                         capture_output=True, text=True, timeout=120)
    assert "2000 succeeded, 0 failed" in out.stdout, out.stdout
    assert "status codes: 2000 2xx" in out.stdout


def test_nghttp_multiplexed(h2_limen):
    l = h2_limen()
    urls = [f"http://127.0.0.1:{l.h2c_port}/sleep/{200 - i * 20}" for i in range(8)]
    t0 = time.time()
    out = subprocess.run(["nghttp", "-n", "-s", *urls], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert time.time() - t0 < 1.2  # all in parallel on one connection, not 1.1 s in a row
    assert out.stdout.count("\n") >= 8


def test_large_bodies_both_ways(h2_limen, certs, tmp_path):
    l = h2_limen()
    f = tmp_path / "up.bin"
    f.write_bytes(bytes(range(256)) * (24 << 12))  # 24 MiB
    for extra in ([], ["-H", "Transfer-Encoding: chunked"]):
        out = curl("--http2", "--cacert", certs.ca, "--data-binary", f"@{f}", *extra, *tls_url(l, "/echo"))
        seen = json.loads(out.stdout)
        assert seen["body_len"] == 24 << 20
        import hashlib
        assert seen["body_sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    out = curl("--http2", "--cacert", certs.ca, "-o", "/dev/null", "-w", "%{size_download} %{http_version}",
               *tls_url(l, f"/bytes/{32 << 20}"))
    assert out.stdout.decode() == f"{32 << 20} 2"


def test_bodiless_and_proxy_made_responses(h2_limen, certs):
    l = h2_limen()
    for path, code in (("/status/204", "204"), ("/status/304", "304")):
        out = curl("--http2", "--cacert", certs.ca, "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                   *tls_url(l, path))
        assert out.stdout.decode() == f"{code} 0"
    out = curl("--http2", "--cacert", certs.ca, "-I", *tls_url(l, "/bytes/10"))
    assert out.stdout.startswith(b"HTTP/2 200") and b"content-length: 10" in out.stdout
    out = curl("--http2", "--cacert", certs.ca, "-w", "\n%{http_code}", *tls_url(l, "/bytes/5?close=1"))
    assert out.stdout == b"xxxxx\n200"  # an upstream body ended by its close ends the stream


def test_truncated_upstream_response_resets_the_stream(h2_limen, certs):
    l = h2_limen()
    out = curl("--http2", "--cacert", certs.ca, "-o", "/dev/null", *tls_url(l, "/die-mid/100000"))
    assert out.returncode == 92  # curl: HTTP/2 stream error, not a complete body


def test_plugins_apply_and_errors_are_json(h2_limen, certs):
    l = h2_limen(plugins=[{"name": "key-auth"}])
    out = curl("--http2", "--cacert", certs.ca, "-w", "\n%{http_code}", *tls_url(l, "/echo"))
    body, _, code = out.stdout.decode().rpartition("\n")
    assert code == "401" and json.loads(body)["message"] == "No API key found in request"


def _h2_conn(port, settings=None):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.initiate_connection()
    if settings:
        c.update_settings(settings)
    s.sendall(c.data_to_send())
    return s, c


def _events_until(s, c, done, timeout=5):
    deadline = time.time() + timeout
    evs = []
    while time.time() < deadline:
        try:
            data = s.recv(65536)
        except socket.timeout:
            break
        if not data:
            evs.append("closed")
            break
        evs += c.receive_data(data)
        out = c.data_to_send()
        if out:
            s.sendall(out)
        if done(evs):
            break
    return evs


def test_cookie_crumbs_are_joined_and_settings_limits(h2_limen, upstream):
    l = h2_limen()
    s, c = _h2_conn(l.h2c_port)
    c.send_headers(1, [(":method", "GET"), (":path", "/echo"), (":scheme", "http"),
                       (":authority", "crumbs.test"), ("cookie", "a=1"), ("cookie", "b=2")], end_stream=True)
    s.sendall(c.data_to_send())
    evs = _events_until(s, c, lambda e: any(isinstance(x, h2.events.StreamEnded) for x in e))
    body = b"".join(x.data for x in evs if isinstance(x, h2.events.DataReceived))
    hdrs = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert hdrs["cookie"] == "a=1; b=2"
    assert hdrs["x-forwarded-host"] == "crumbs.test"
    assert c.remote_settings.max_concurrent_streams == 128
    s.close()


def test_rapid_reset_gets_goaway(h2_limen):
    l = h2_limen()
    s, c = _h2_conn(l.h2c_port)
    for i in range(1, 2 * 2000, 2):
        c.send_headers(i, [(":method", "GET"), (":path", "/sleep/1000"), (":scheme", "http"),
                           (":authority", "x")], end_stream=True)
        c.reset_stream(i)
        if i % 200 == 1:
            try:
                s.sendall(c.data_to_send())
            except OSError:
                break
    try:
        s.sendall(c.data_to_send())
    except OSError:
        pass
    evs = _events_until(s, c, lambda e: any(isinstance(x, h2.events.ConnectionTerminated) or x == "closed" for x in e))
    assert any(isinstance(x, h2.events.ConnectionTerminated) or x == "closed" for x in evs)
    s.close()
    # the proxy is fine
    assert subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                           f"http://127.0.0.1:{l.h2c_port}/echo"], capture_output=True).stdout == b"200"


def test_continuation_flood_closes_the_connection(h2_limen):
    l = h2_limen()
    s, c = _h2_conn(l.h2c_port)
    block = c.encoder.encode([(":method", "GET"), (":path", "/echo"), (":scheme", "http"), (":authority", "x")])
    hf = HeadersFrame(1)
    hf.data = block
    hf.flags.add("END_STREAM")  # no END_HEADERS: CONTINUATION frames follow
    s.sendall(hf.serialize())
    closed = False
    try:
        for _ in range(5000):
            cf = ContinuationFrame(1)
            cf.data = c.encoder.encode([("x-filler", "y" * 100)])
            s.sendall(cf.serialize())
    except OSError:
        closed = True
    if not closed:  # the server must end the connection (GOAWAY, then close), not wait for more
        s.settimeout(5)
        try:
            while s.recv(65536):
                pass
            closed = True
        except ConnectionResetError:
            closed = True
        except OSError:
            pass
    s.close()
    assert closed, "a CONTINUATION flood must close the connection"
    assert subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                           f"http://127.0.0.1:{l.h2c_port}/echo"], capture_output=True).stdout == b"200"


def test_oversized_header_list_refused(h2_limen):
    l = h2_limen()
    s, c = _h2_conn(l.h2c_port)
    hdrs = [(":method", "GET"), (":path", "/echo"), (":scheme", "http"), (":authority", "x")]
    hdrs += [(f"x-big-{i}", "v" * 1000) for i in range(80)]  # 80 KB of headers
    c.send_headers(1, hdrs, end_stream=True)
    s.sendall(c.data_to_send())
    evs = _events_until(s, c, lambda e: any(isinstance(x, (h2.events.StreamReset, h2.events.StreamEnded,
                                                            h2.events.ConnectionTerminated)) for x in e))
    ok = [x for x in evs if isinstance(x, h2.events.StreamReset)] or \
         [x for x in evs if isinstance(x, h2.events.ResponseReceived) and dict(x.headers)[":status"] == "431"]
    assert ok, evs
    s.close()


def test_slow_reader_holds_the_upstream_back(h2_limen):
    """A client that never opens its window: the proxy must not buffer the whole response."""
    l = h2_limen(workers=1)
    rss0 = l.rss_kb()
    s, c = _h2_conn(l.h2c_port)
    c.send_headers(1, [(":method", "GET"), (":path", f"/bytes/{200 << 20}"), (":scheme", "http"),
                       (":authority", "x")], end_stream=True)
    s.sendall(c.data_to_send())
    time.sleep(1.5)  # read nothing: the stream window (64 KiB) fills, then everything waits
    assert l.rss_kb() - rss0 < 40 * 1024
    s.close()


def test_drain_finishes_streams_with_goaway(h2_limen):
    l = h2_limen()
    p = subprocess.Popen(["nghttp", "-v", f"http://127.0.0.1:{l.h2c_port}/sleep/800"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    time.sleep(0.3)
    l.proc.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=10)
    assert p.returncode == 0, out
    assert "recv GOAWAY frame" in out
    assert ":status: 200" in out and "END_STREAM" in out
    l.proc.wait(10)

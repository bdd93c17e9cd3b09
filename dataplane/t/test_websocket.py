"""WebSocket proxying: HTTP/1.1 Upgrade tunnels (plain and over TLS) and
RFC 8441 extended CONNECT over HTTP/2, with plugins on the handshake and the
service's read_timeout as the idle timeout. A real client and server built on
libwebsockets (tools/ws/), plus hand-made frames for HTTP/2."""
import json
import os
import socket
import subprocess
import time

import h2.config
import h2.connection
import h2.events
import pytest

from conftest import ROOT, Limen, free_port
from tlsutil import Certs, read

WS_SERVER = os.path.join(ROOT, "build", "rel", "tools", "ws_server")
WS_CLIENT = os.path.join(ROOT, "build", "rel", "tools", "ws_client")


@pytest.fixture
def ws_upstream():
    procs = []

    def make(*extra):
        port = free_port()
        p = subprocess.Popen([WS_SERVER, "--port", str(port), "--show-header", "X-Forwarded-For", *extra],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = p.stdout.readline()
        assert line.startswith("listening"), line
        procs.append(p)
        p.port = port
        return p
    yield make
    for p in procs:
        p.terminate()
        p.wait(5)


def ws_client(url, *args, timeout=30):
    return subprocess.run([WS_CLIENT, "--url", url, *args], capture_output=True, text=True, timeout=timeout)


def ws_config(up_port, plugins=None, certs=None, read_timeout=60000):
    route = {"name": "ws", "paths": ["/"]}
    if plugins:
        route["plugins"] = plugins
    doc = {"_format_version": "3.0",
           "services": [{"name": "ws", "url": f"http://127.0.0.1:{up_port}", "read_timeout": read_timeout,
                         "routes": [route]}]}
    if plugins and any(p["name"] == "key-auth" for p in plugins):
        doc["consumers"] = [{"username": "alice", "keyauth_credentials": [{"key": "sesame"}]}]
    if certs:
        doc["certificates"] = [{"cert": read(certs.a[0]), "key": read(certs.a[1]), "snis": [{"name": "a.test"}]}]
    return json.dumps(doc)


@pytest.fixture(scope="module")
def certs():
    c = Certs()
    c.a = c.leaf("a.test")
    return c


def test_echo_through_the_tunnel(ws_upstream):
    up = ws_upstream()
    l = Limen(ws_config(up.port)).start()
    try:
        out = ws_client(f"ws://127.0.0.1:{l.port}/chat", "--count", "20", "--size", "100000")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "handshake 101" in out.stdout and "echoed 20" in out.stdout
        assert "open /chat 127.0.0.1" in up.stdout.readline()  # the upstream got X-Forwarded-For
    finally:
        l.stop()


def test_large_messages_and_text(ws_upstream):
    up = ws_upstream()
    l = Limen(ws_config(up.port)).start()
    try:
        out = ws_client(f"ws://127.0.0.1:{l.port}/big", "--count", "3", "--size", str(1 << 20))
        assert out.returncode == 0, out.stdout + out.stderr
        out = ws_client(f"ws://127.0.0.1:{l.port}/text", "--count", "50", "--size", "10", "--text")
        assert out.returncode == 0, out.stdout + out.stderr
    finally:
        l.stop()


def test_wss_through_tls_listener(ws_upstream, certs):
    up = ws_upstream()
    l = Limen(ws_config(up.port, certs=certs))
    tls_port = free_port()
    l.args += ["--proxy-listen", f"127.0.0.1:{tls_port} ssl"]
    l.start()
    try:
        out = ws_client(f"wss://127.0.0.1:{tls_port}/secure", "--ca", certs.ca, "--host", "a.test",
                        "--count", "5", "--size", "5000")
        assert out.returncode == 0, out.stdout + out.stderr
    finally:
        l.stop()


def test_auth_plugin_on_the_handshake(ws_upstream):
    up = ws_upstream()
    l = Limen(ws_config(up.port, plugins=[{"name": "key-auth"}])).start()
    try:
        out = ws_client(f"ws://127.0.0.1:{l.port}/x", "--count", "1", "--size", "10")
        assert out.returncode == 2 and "handshake 401" in out.stdout, out.stdout + out.stderr
        out = ws_client(f"ws://127.0.0.1:{l.port}/x", "--header", "apikey: sesame", "--count", "2", "--size", "10")
        assert out.returncode == 0, out.stdout + out.stderr
    finally:
        l.stop()


def test_rate_limiting_on_the_handshake(ws_upstream):
    up = ws_upstream()
    l = Limen(ws_config(up.port, plugins=[{"name": "rate-limiting", "config": {"minute": 2, "limit_by": "ip"}}])).start()
    try:
        for _ in range(2):
            assert ws_client(f"ws://127.0.0.1:{l.port}/x", "--count", "1", "--size", "10").returncode == 0
        out = ws_client(f"ws://127.0.0.1:{l.port}/x", "--count", "1", "--size", "10")
        assert out.returncode == 2 and "handshake 429" in out.stdout, out.stdout
    finally:
        l.stop()


def test_upstream_close_reaches_the_client(ws_upstream):
    up = ws_upstream("--close-after", "2")
    l = Limen(ws_config(up.port)).start()
    try:
        out = ws_client(f"ws://127.0.0.1:{l.port}/x", "--count", "2", "--size", "10", "--idle", "2000")
        assert "echoed 2" in out.stdout
        assert "closed" in out.stdout  # the server's close frame came through
    finally:
        l.stop()


def test_idle_timeout_is_the_read_timeout(ws_upstream):
    up = ws_upstream()
    l = Limen(ws_config(up.port, read_timeout=800)).start()
    try:
        t0 = time.time()
        out = ws_client(f"ws://127.0.0.1:{l.port}/x", "--count", "1", "--size", "10", "--idle", "5000")
        assert "closed-by-peer" in out.stdout or "closed" in out.stdout, out.stdout
        assert time.time() - t0 < 4
        log = [json.loads(x) for x in open(l.log_path) if '"status":101' in x]
        del log  # the access log is off here; the tunnel end is checked by the close
    finally:
        l.stop()


def test_websocket_over_http2_extended_connect(ws_upstream):
    """RFC 8441: CONNECT with :protocol websocket on an HTTP/2 stream reaches the
    upstream as an HTTP/1.1 upgrade; frames flow in DATA frames."""
    up = ws_upstream()
    l = Limen(ws_config(up.port))
    h2c = free_port()
    l.args += ["--proxy-listen", f"127.0.0.1:{h2c} http2"]
    l.start()
    try:
        s = socket.create_connection(("127.0.0.1", h2c), timeout=5)
        c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        c.initiate_connection()
        s.sendall(c.data_to_send())
        settings = None
        while settings is None:
            for e in c.receive_data(s.recv(65536)):
                if isinstance(e, h2.events.RemoteSettingsChanged):
                    settings = e
            s.sendall(c.data_to_send())
        assert c.remote_settings.enable_connect_protocol == 1
        c.send_headers(1, [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                           (":path", "/h2ws"), (":authority", "x"), ("sec-websocket-version", "13")])
        s.sendall(c.data_to_send())
        status = None
        while status is None:
            for e in c.receive_data(s.recv(65536)):
                if isinstance(e, h2.events.ResponseReceived):
                    status = dict(e.headers)[":status"]
            s.sendall(c.data_to_send())
        assert status == "200"
        # one unmasked... no: a client frame must be masked: FIN+binary, mask bit, 5 bytes
        payload = b"hello"
        mask = b"\x01\x02\x03\x04"
        frame = bytes([0x82, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        c.send_data(1, frame)
        s.sendall(c.data_to_send())
        got = b""
        deadline = time.time() + 5
        while len(got) < 2 + len(payload) and time.time() < deadline:
            for e in c.receive_data(s.recv(65536)):
                if isinstance(e, h2.events.DataReceived):
                    got += e.data
                    c.acknowledge_received_data(e.flow_controlled_length, 1)
            s.sendall(c.data_to_send())
        assert got[:2] == bytes([0x82, len(payload)]) and got[2:2 + len(payload)] == payload  # the echo, unmasked
        s.close()
    finally:
        l.stop()

"""L4 stream routes (--stream-listen): tcp proxied both ways with backpressure
and half-close, routing by destination port, source CIDR and SNI with Kong's
priorities, TLS terminated (the certificate by SNI, the upstream sees
plaintext; re-encrypted to a tls service), tls_passthrough (the client
verifies the upstream's own certificate), upstream entities with balancing
and a dead target, config swaps under open tunnels, invalid stream routes.
Real sockets, Python's ssl and openssl s_client; certificates from openssl."""
import hashlib
import json
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import Limen, free_port, wait_until
from tlsutil import Certs, client_context, read, tls_connect


# --------------------------------------------------------------------------
# upstreams
# --------------------------------------------------------------------------

class StreamUpstream:
    """A threaded TCP (or TLS, given cert) server. Modes:
      echo     sends back what it reads
      greet    sends "<name>\\n" at once, then echoes with "<name>:" before each piece
      drain    reads until EOF, then answers "<name> got N bytes sha256 H" and closes
    Records the peer address and the bytes received per connection."""

    def __init__(self, name, mode="greet", cert=None, rcvbuf=None):
        self.name, self.mode = name, mode
        self.port = free_port()
        self.conns = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
        self.ctx = None
        if cert:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(*cert)
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopped = True
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept(self):
        while not self.stopped:
            try:
                c, addr = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c, addr), daemon=True).start()

    def _serve(self, c, addr):
        rec = {"peer": addr, "bytes": bytearray(), "sni": None}
        self.conns.append(rec)
        try:
            if self.ctx:
                c = self.ctx.wrap_socket(c, server_side=True)
            name = self.name.encode()
            if self.mode == "greet":
                c.sendall(name + b"\n")
            h = hashlib.sha256()
            n = 0
            while True:
                d = c.recv(65536)
                if not d:
                    break
                rec["bytes"] += d if len(rec["bytes"]) < 1 << 16 else b""
                if self.mode == "echo":
                    c.sendall(d)
                elif self.mode == "greet":
                    c.sendall(name + b":" + d)
                else:
                    h.update(d)
                    n += len(d)
            if self.mode == "drain":
                c.sendall(b"%s got %d bytes sha256 %s" % (name, n, h.hexdigest().encode()))
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass


@pytest.fixture
def ups():
    started = []

    def make(*args, **kw):
        u = StreamUpstream(*args, **kw).start()
        started.append(u)
        return u
    yield make
    for u in started:
        u.stop()


@pytest.fixture(scope="module")
def certs():
    c = Certs()
    c.a = c.leaf("a.test")
    c.b = c.leaf("b.test", key="ec")
    c.t = c.leaf("t.test")
    c.limen_p1 = c.leaf("limen-not-upstream", ["p1.test"])  # what Limen would present if it terminated
    c.p1 = c.leaf("p1-upstream", ["p1.test"])
    c.p2 = c.leaf("p2-upstream", ["p2.test"])
    c.up = c.leaf("tls-upstream", ["localhost"])
    return c


class StreamLimen(Limen):
    """config: a document, or a function of the stream ports returning one."""

    def __init__(self, config, streams=("plain",), **kw):
        ports = [free_port() for _ in streams]
        if callable(config):
            config = config(ports)
        super().__init__(config if isinstance(config, str) else json.dumps(config), **kw)
        self.stream_ports = ports
        for p, kind in zip(ports, streams):
            self.args += ["--stream-listen", f"127.0.0.1:{p}" + (" ssl" if kind == "ssl" else "")]


@pytest.fixture
def stream_limen():
    started = []

    def make(config, **kw):
        l = StreamLimen(config, **kw)
        started.append(l)
        return l.start()
    yield make
    for l in started:
        if l.proc and l.proc.poll() is None:
            l.stop()


def svc(name, port, routes, host="127.0.0.1", **extra):
    s = {"name": name, "protocol": extra.pop("protocol", "tcp"), "host": host, "port": port, "routes": routes}
    s.update(extra)
    return s


def doc(services, **extra):
    d = {"_format_version": "3.0", "services": services}
    d.update(extra)
    return d


def connect(port, src=None, timeout=5):
    s = socket.socket()
    s.settimeout(timeout)
    if src:
        s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def recv_line(s):
    out = b""
    while not out.endswith(b"\n"):
        d = s.recv(1)
        if not d:
            break
        out += d
    return out


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        d = s.recv(n - len(out))
        if not d:
            break
        out += d
    return out


def recv_all(s):
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            return out
        out += d


def greeting(port, src=None):
    s = connect(port, src)
    try:
        return recv_line(s).strip().decode()
    finally:
        s.close()


def closed_without_data(s, timeout=5):
    s.settimeout(timeout)
    try:
        return s.recv(100) == b""
    except ConnectionResetError:
        return True


# --------------------------------------------------------------------------
# tcp
# --------------------------------------------------------------------------

def test_tcp_bytes_both_ways(stream_limen, ups):
    up = ups("echo", mode="echo")
    l = stream_limen(doc([svc("s", up.port, [{"name": "r", "protocols": ["tcp"],
                                               "destinations": [{"port": 0}]}])]))
    # port 0 never matches a listener: no route
    s = connect(l.stream_ports[0])
    assert closed_without_data(s)
    s.close()
    assert "no Route matched" in l.read_log()

    l2 = stream_limen(doc([svc("s", up.port, [{"name": "r", "protocols": ["tcp"],
                                                "destinations": [{"ip": "127.0.0.1"}]}])]))
    s = connect(l2.stream_ports[0])
    for msg in (b"hello", b"x" * 100000, bytes(range(256)) * 10):
        s.sendall(msg)
        assert recv_exact(s, len(msg)) == msg
    s.close()


def test_tcp_large_transfer_with_slow_reader_is_bounded(stream_limen, ups):
    up = ups("echo", mode="echo")
    l = stream_limen(doc([svc("s", up.port, [{"name": "r", "protocols": ["tcp"],
                                               "destinations": [{"port": 1}, {"ip": "127.0.0.0/8"}]}])]),
                     workers=1)
    total = 20 * 1024 * 1024
    payload = os.urandom(1024 * 1024)
    s = connect(l.stream_ports[0], timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    rss0 = l.rss_kb()
    sent = {"n": 0, "done": False}

    def sender():
        for _ in range(total // len(payload)):
            s.sendall(payload)
            sent["n"] += len(payload)
        sent["done"] = True
    th = threading.Thread(target=sender, daemon=True)
    th.start()
    time.sleep(1.0)  # the reader has not read anything: the sender must be held back
    assert not sent["done"] and sent["n"] < total, sent
    peak = l.rss_kb()
    h_in, h_out, got = hashlib.sha256(), hashlib.sha256(), 0
    for _ in range(total // len(payload)):
        h_in.update(payload)
    while got < total:
        d = s.recv(65536)
        assert d, f"closed after {got} bytes"
        h_out.update(d)
        got += len(d)
        if got % (1 << 20) < 65536:
            time.sleep(0.01)  # slow
            peak = max(peak, l.rss_kb())
    th.join(10)
    assert h_in.hexdigest() == h_out.hexdigest()
    # memory does not follow the transfer: 20 MB went through a bounded buffer
    assert peak - rss0 < 12 * 1024, (rss0, peak)
    s.close()


def test_tcp_half_close(stream_limen, ups):
    up = ups("drain", mode="drain")
    l = stream_limen(doc([svc("s", up.port, [{"name": "r", "protocols": ["tcp"],
                                               "destinations": [{"ip": "127.0.0.1"}]}])]))
    s = connect(l.stream_ports[0])
    data = os.urandom(300000)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)  # our EOF reaches the upstream, its answer still comes back
    out = recv_all(s)
    assert out == b"drain got %d bytes sha256 %s" % (len(data), hashlib.sha256(data).hexdigest().encode())
    s.close()


def test_routing_by_destination_port_and_source(stream_limen, ups):
    a, b, c = ups("A"), ups("B"), ups("C")
    l = stream_limen(lambda ports: doc([
        svc("a", a.port, [{"name": "by-port-1", "protocols": ["tcp"], "destinations": [{"port": ports[0]}]}]),
        svc("b", b.port, [{"name": "by-port-2", "protocols": ["tcp"],
                           "destinations": [{"ip": "127.0.0.1", "port": ports[1]}]}]),
        # more categories win over document order
        svc("c", c.port, [{"name": "src-and-port", "protocols": ["tcp"], "sources": [{"ip": "127.0.0.2/32"}],
                           "destinations": [{"port": ports[0]}]}]),
    ]), streams=("plain", "plain"))
    p1, p2 = l.stream_ports
    assert greeting(p1) == "A"
    assert greeting(p2) == "B"
    assert greeting(p1, src="127.0.0.2") == "C"
    assert greeting(p2, src="127.0.0.2") == "B"
    # a source CIDR decides between two routes on the same destinations
    st, body = l.admin("POST", "/config", json.dumps(doc([
        svc("a", a.port, [{"name": "any", "protocols": ["tcp"], "destinations": [{"ip": "127.0.0.0/8"}]}]),
        svc("b", b.port, [{"name": "cidr", "protocols": ["tcp"], "sources": [{"ip": "127.0.0.0/30"}],
                           "destinations": [{"ip": "127.0.0.0/8"}]}]),
    ])))
    assert st == 201, body
    assert greeting(p1) == "B"                    # 127.0.0.1 is in 127.0.0.0/30
    assert greeting(p2, src="127.0.0.9") == "A"   # not in it


# --------------------------------------------------------------------------
# TLS: terminated and passed through
# --------------------------------------------------------------------------

def cert_entity(pair, snis):
    return {"cert": read(pair[0]), "key": read(pair[1]), "snis": [{"name": s} for s in snis]}


def test_tls_terminated_by_sni(stream_limen, ups, certs):
    a, b = ups("A", mode="greet"), ups("B", mode="echo")
    tls_up = ups("T", mode="greet", cert=certs.up)
    l = stream_limen(doc([
        svc("a", a.port, [{"name": "ra", "protocols": ["tls"], "snis": ["a.test"]}]),
        svc("b", b.port, [{"name": "rb", "protocols": ["tls"], "snis": ["b.test"]}]),
        # re-encrypted to a TLS upstream, verified against our CA
        svc("t", tls_up.port, [{"name": "rt", "protocols": ["tls"], "snis": ["t.test"]}], host="localhost",
            protocol="tls", tls_verify=True, ca_certificates=["8e1d2f0a-0000-4000-8000-000000000001"]),
    ], certificates=[cert_entity(certs.a, ["a.test"]), cert_entity(certs.b, ["b.test"]),
                  cert_entity(certs.t, ["t.test"])],
        ca_certificates=[{"id": "8e1d2f0a-0000-4000-8000-000000000001", "cert": read(certs.ca)}]),
        streams=("ssl",))
    port = l.stream_ports[0]
    s = tls_connect(port, "a.test", ca=certs.ca)  # verifies a.test's certificate
    assert "a.test" in str(s.getpeercert()["subject"])
    assert recv_line(s) == b"A\n"
    s.sendall(b"plain please")
    assert recv_exact(s, 14) == b"A:plain please"
    s.close()
    assert bytes(a.conns[-1]["bytes"]) == b"plain please"  # the upstream saw plaintext

    s = tls_connect(port, "b.test", ca=certs.ca)
    s.sendall(b"x" * 50000)
    assert recv_exact(s, 50000) == b"x" * 50000
    s.close()

    s = tls_connect(port, "t.test", ca=certs.ca)
    assert recv_line(s) == b"T\n"
    s.sendall(b"again")
    assert recv_exact(s, 7) == b"T:again"
    s.close()
    assert bytes(tls_up.conns[-1]["bytes"]) == b"again"

    # an SNI no route has: the connection is closed, no certificate is presented
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        tls_connect(port, "nothing.test", ca=certs.ca).recv(1)
    # not TLS at all
    s = connect(port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
    assert closed_without_data(s)
    s.close()


def test_tls_passthrough_two_snis(stream_limen, ups, certs):
    u1 = ups("P1", mode="greet", cert=certs.p1)
    u2 = ups("P2", mode="greet", cert=certs.p2)
    l = stream_limen(doc([
        svc("p1", u1.port, [{"name": "r1", "protocols": ["tls_passthrough"], "snis": ["p1.test"]}]),
        svc("p2", u2.port, [{"name": "r2", "protocols": ["tls_passthrough"], "snis": ["p2.test"]}]),
    ], certificates=[cert_entity(certs.limen_p1, ["p1.test"])]), streams=("ssl",))
    port = l.stream_ports[0]
    s = tls_connect(port, "p1.test", ca=certs.ca)
    # the certificate is the upstream's: Limen did not terminate (it holds another one for p1.test)
    assert "p1-upstream" in str(s.getpeercert()["subject"])
    assert recv_line(s) == b"P1\n"
    s.sendall(b"through")
    assert recv_exact(s, 10) == b"P1:through"
    s.close()
    # openssl s_client verifies p2's upstream certificate end to end
    p = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "p2.test",
                          "-CAfile", certs.ca, "-verify_return_error", "-verify_hostname", "p2.test", "-quiet"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.stdin.write(b"ping\n")
        p.stdin.flush()
        assert p.stdout.readline() == b"P2\n"
        assert p.stdout.readline() == b"P2:ping\n"
    finally:
        p.kill()
        _, err = p.communicate(timeout=10)
    assert b"CN = p2-upstream" in err and b"verify return:1" in err, err


# --------------------------------------------------------------------------
# balancing, config swaps, validation
# --------------------------------------------------------------------------

def test_upstream_entity_balanced_dead_target_skipped(stream_limen, ups):
    a, b = ups("A"), ups("B")
    dead = free_port()
    l = stream_limen(doc(
        [svc("s", 9999, [{"name": "r", "protocols": ["tcp"], "destinations": [{"ip": "127.0.0.1"}]}],
             host="pool", connect_timeout=2000)],
        upstreams=[{"name": "pool", "healthchecks": {"passive": {"unhealthy": {"tcp_failures": 1}}},
                    "targets": [{"target": f"127.0.0.1:{a.port}"}, {"target": f"127.0.0.1:{b.port}"},
                                {"target": f"127.0.0.1:{dead}"}]}]))
    seen = [greeting(l.stream_ports[0]) for _ in range(12)]
    assert set(seen) == {"A", "B"}, seen  # every connection worked: the dead one was retried elsewhere
    st, body = l.admin_json("GET", "/upstreams/pool/health")
    assert st == 200
    health = {d["target"]: d["health"] for d in body["data"]}
    assert health[f"127.0.0.1:{dead}"] == "UNHEALTHY", health
    assert health[f"127.0.0.1:{a.port}"] == "HEALTHY"


def test_config_swap_keeps_open_tunnels(stream_limen, ups):
    a, b = ups("A"), ups("B")

    def cfg(port):
        return doc([svc("s", port, [{"name": "r", "protocols": ["tcp"], "destinations": [{"ip": "127.0.0.1"}]}])])
    l = stream_limen(cfg(a.port))
    s = connect(l.stream_ports[0])
    assert recv_line(s) == b"A\n"
    st, body = l.admin("POST", "/config", json.dumps(cfg(b.port)))
    assert st == 201, body
    wait_until(lambda: greeting(l.stream_ports[0]) == "B", what="new connections on the new route")
    s.sendall(b"still")  # the open tunnel kept its snapshot and its upstream
    assert recv_exact(s, 7) == b"A:still"
    s.close()


def test_drain_lets_tunnels_finish(stream_limen, ups):
    a = ups("A")
    l = stream_limen(doc([svc("s", a.port, [{"name": "r", "protocols": ["tcp"], "destinations": [{"port": 1},
                                                                                             {"ip": "127.0.0.1"}]}])]),
                     extra_args=["--drain-timeout", "1500"])
    s = connect(l.stream_ports[0])
    assert recv_line(s) == b"A\n"
    t0 = time.time()
    l.proc.send_signal(15)
    time.sleep(0.3)
    s.sendall(b"during drain")
    assert recv_exact(s, 14) == b"A:during drain"
    assert l.stop() == 0  # closed at the drain timeout, no leak
    assert time.time() - t0 < 10
    s.close()


def test_invalid_stream_routes_refused_with_paths(stream_limen, ups):
    a = ups("A")
    l = stream_limen(doc([svc("s", a.port, [{"name": "r", "protocols": ["tcp"], "destinations": [{"port": 1}]}])]))
    bad = doc([svc("s", a.port, [
        {"name": "bad-ip", "protocols": ["tcp"], "sources": [{"ip": "300.1.1.1"}]},
        {"name": "bad-cidr", "protocols": ["tcp"], "destinations": [{"ip": "10.0.0.0/33", "port": 70000}]},
        {"name": "no-sni", "protocols": ["tls_passthrough"]},
        {"name": "paths", "protocols": ["tcp"], "paths": ["/x"], "destinations": [{"port": 5}]},
        {"name": "nothing", "protocols": ["tcp"]},
        {"name": "empty-endpoint", "protocols": ["tcp"], "sources": [{}]},
        {"name": "mixed", "protocols": ["tcp", "tls_passthrough"], "snis": ["x.test"]},
    ])])
    st, body = l.admin_json("POST", "/config", json.dumps(bad))
    assert st == 400
    errs = {(fe.get("entity_name"), e.get("path")): e["message"] for fe in body["flattened_errors"] for e in fe["errors"]}
    r = "services[0].routes"
    assert errs[("bad-ip", f"{r}[0].sources[0].ip")] == "invalid ip or cidr range: '300.1.1.1'"
    assert errs[("bad-cidr", f"{r}[1].destinations[0].ip")] == "invalid ip or cidr range: '10.0.0.0/33'"
    assert errs[("bad-cidr", f"{r}[1].destinations[0].port")] == "value should be between 0 and 65535"
    assert errs[("no-sni", f"{r}[2]")] == "must set snis when 'protocols' is 'tls_passthrough'"
    assert errs[("paths", f"{r}[3].paths")].startswith("cannot set 'paths' when 'protocols' is 'tcp'")
    assert errs[("nothing", f"{r}[4]")].startswith("must set one of 'sources', 'destinations', 'snis'")
    assert errs[("empty-endpoint", f"{r}[5].sources[0]")].startswith("at least one of these fields")
    assert errs[("mixed", f"{r}[6].protocols")].startswith("these sets are mutually exclusive")


def test_idle_timeout_and_abrupt_clients(stream_limen, ups, certs):
    a = ups("A")
    l = stream_limen(lambda ports: doc([
        svc("s", a.port, [{"name": "r", "protocols": ["tcp"], "destinations": [{"port": ports[0]}]}],
            read_timeout=600, write_timeout=600),
        svc("t", a.port, [{"name": "rt", "protocols": ["tls"], "snis": ["a.test"]}]),
    ], certificates=[cert_entity(certs.a, ["a.test"])]), streams=("plain", "ssl"))
    plain, tls = l.stream_ports
    s = connect(plain)
    assert recv_line(s) == b"A\n"
    t0 = time.time()
    assert closed_without_data(s, timeout=5)  # read_timeout without traffic ends the tunnel
    assert 0.4 < time.time() - t0 < 3
    s.close()
    # resets, half-sent hellos, clients gone mid-handshake: nothing leaks (checked at stop)
    for i in range(30):
        s = connect(plain if i % 2 else tls)
        if i % 3 == 0:
            s.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello
        elif i % 3 == 1:
            s.sendall(b"x" * 1000)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # RST
    socks = [tls_connect(tls, "a.test", ca=certs.ca) for _ in range(5)]
    for s in socks:
        assert recv_line(s) == b"A\n"
        s.close()
    assert greeting(plain) == "A"

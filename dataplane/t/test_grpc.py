"""gRPC through the proxy: a real grpcio client and server (generic handlers,
raw bytes), routes with protocols grpc/grpcs, services with protocol grpc
(HTTP/2 prior knowledge) and grpcs (TLS, ALPN h2). Trailers (grpc-status,
custom trailing metadata) arrive intact; errors the proxy makes itself come
as grpc-status / grpc-message."""
import json
import time
from concurrent import futures

import grpc
import pytest

from conftest import Limen, free_port
from tlsutil import Certs, read


@pytest.fixture(scope="module")
def certs():
    c = Certs()
    c.proxy = c.leaf("a.test")
    c.upstream = c.leaf("localhost", ["localhost"])
    return c


def _handlers():
    def unary(req, ctx):
        ctx.set_trailing_metadata((("x-trailer", "t1"),))
        return req[::-1]

    def fail(req, ctx):
        ctx.abort(grpc.StatusCode.NOT_FOUND, "nope: no such thing")

    def stream(req, ctx):
        for i in range(int(req or b"3")):
            yield b"m%d" % i

    def collect(it, ctx):
        return b"".join(it)

    return grpc.method_handlers_generic_handler("test.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
        "Collect": grpc.stream_unary_rpc_method_handler(collect),
    })


@pytest.fixture
def grpc_upstream(certs):
    servers = []

    def make(tls=False):
        s = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                        options=[("grpc.max_receive_message_length", 8 << 20),
                                 ("grpc.max_send_message_length", 8 << 20)])
        s.add_generic_rpc_handlers((_handlers(),))
        port = free_port()
        if tls:
            creds = grpc.ssl_server_credentials([(open(certs.upstream[1], "rb").read(),
                                                  open(certs.upstream[0], "rb").read())])
            s.add_secure_port(f"127.0.0.1:{port}", creds)
        else:
            s.add_insecure_port(f"127.0.0.1:{port}")
        s.start()
        s.port = port
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.stop(0)


def grpc_limen(up_port, certs, protocol="grpc", plugins=None, tls_verify=False):
    route = {"name": "g", "protocols": ["grpc", "grpcs"], "paths": ["/test.Echo/"]}
    if plugins:
        route["plugins"] = plugins
    svc = {"name": "g", "protocol": protocol, "host": "localhost" if protocol == "grpcs" else "127.0.0.1",
           "port": up_port, "routes": [route]}
    doc = {"_format_version": "3.0", "services": [svc],
           "certificates": [{"cert": read(certs.proxy[0]), "key": read(certs.proxy[1]), "snis": [{"name": "a.test"}]}]}
    if tls_verify:
        svc["tls_verify"] = True
        svc["ca_certificates"] = ["5a5b0c5e-0000-4000-8000-00000000ca01"]
        doc["ca_certificates"] = [{"id": "5a5b0c5e-0000-4000-8000-00000000ca01", "cert": read(certs.ca)}]
    if plugins and any(p["name"] == "key-auth" for p in plugins):
        doc["consumers"] = [{"username": "alice", "keyauth_credentials": [{"key": "sesame"}]}]
    l = Limen(json.dumps(doc))
    l.h2c_port, l.tls_port = free_port(), free_port()
    l.args += ["--proxy-listen", f"127.0.0.1:{l.h2c_port} http2", "--proxy-listen", f"127.0.0.1:{l.tls_port} ssl http2"]
    return l.start()


def _call(ch, method, req, timeout=10, metadata=None, kind="unary"):
    if kind == "unary":
        fn = ch.unary_unary(f"/test.Echo/{method}")
        return fn.with_call(req, timeout=timeout, metadata=metadata)
    if kind == "stream":
        return list(ch.unary_stream(f"/test.Echo/{method}")(req, timeout=timeout))
    return ch.stream_unary(f"/test.Echo/{method}")(iter(req), timeout=timeout)


def test_unary_with_trailers_over_h2c(grpc_upstream, certs):
    up = grpc_upstream()
    l = grpc_limen(up.port, certs)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{l.h2c_port}") as ch:
            resp, call = _call(ch, "Unary", b"hello")
            assert resp == b"olleh"
            assert ("x-trailer", "t1") in call.trailing_metadata()
            assert call.code() == grpc.StatusCode.OK
    finally:
        l.stop()


def test_streaming_both_ways_and_big_messages(grpc_upstream, certs):
    up = grpc_upstream()
    l = grpc_limen(up.port, certs)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{l.h2c_port}", options=[("grpc.max_receive_message_length", 8 << 20),
                                                                         ("grpc.max_send_message_length", 8 << 20)]) as ch:
            assert _call(ch, "Stream", b"50", kind="stream") == [b"m%d" % i for i in range(50)]
            assert _call(ch, "Collect", [b"a" * 1000, b"b" * 1000, b"c"], kind="client") == b"a" * 1000 + b"b" * 1000 + b"c"
            big = bytes(range(256)) * 8192  # 2 MiB
            resp, _ = _call(ch, "Unary", big)
            assert resp == big[::-1]
    finally:
        l.stop()


def test_upstream_status_passes_through(grpc_upstream, certs):
    up = grpc_upstream()
    l = grpc_limen(up.port, certs)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{l.h2c_port}") as ch:
            with pytest.raises(grpc.RpcError) as e:
                _call(ch, "Fail", b"x")
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
            assert e.value.details() == "nope: no such thing"
    finally:
        l.stop()


def test_grpcs_end_to_end_with_verification(grpc_upstream, certs):
    up = grpc_upstream(tls=True)
    l = grpc_limen(up.port, certs, protocol="grpcs", tls_verify=True)
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=open(certs.ca, "rb").read())
        with grpc.secure_channel(f"127.0.0.1:{l.tls_port}", creds,
                                 options=[("grpc.ssl_target_name_override", "a.test")]) as ch:
            resp, call = _call(ch, "Unary", b"secure")
            assert resp == b"eruces"
            assert ("x-trailer", "t1") in call.trailing_metadata()
    finally:
        l.stop()


def test_proxy_errors_are_grpc_statuses(grpc_upstream, certs):
    up = grpc_upstream()
    l = grpc_limen(up.port, certs, plugins=[{"name": "key-auth"}])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{l.h2c_port}") as ch:
            with pytest.raises(grpc.RpcError) as e:
                _call(ch, "Unary", b"x")
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert e.value.details() == "No API key found in request"
            resp, _ = _call(ch, "Unary", b"ok", metadata=(("apikey", "sesame"),))
            assert resp == b"ko"
            with pytest.raises(grpc.RpcError) as e:  # no route
                ch.unary_unary("/other.Svc/Nope")(b"x", timeout=10)
            assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert "no Route matched" in e.value.details()
    finally:
        l.stop()


def test_upstream_down_is_unavailable(certs):
    l = grpc_limen(free_port(), certs)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{l.h2c_port}") as ch:
            with pytest.raises(grpc.RpcError) as e:
                _call(ch, "Unary", b"x")
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        l.stop()

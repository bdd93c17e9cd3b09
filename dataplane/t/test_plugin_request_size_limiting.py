"""Black-box tests of the request-size-limiting plugin: a Content-Length over
the limit is refused at once with 413 (417 with Expect: 100-continue) without
reading the body; chunked bodies are capped while they stream and the
upstream never receives a complete oversized body; size units;
require_content_length (411); config validation through --check.

One Limen (1 worker) and one upstream serve the module; stopping Limen at the
end asserts that ASan/UBSan/LSan reported nothing."""
import json
import socket
import time

import pytest

from conftest import check_config, running

CONFIG = """_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{P}
  routes:
  - {{name: mb, paths: ["/mb"], plugins: [{{name: request-size-limiting, config: {{allowed_payload_size: 1}}}}]}}
  - {{name: kb, paths: ["/kb"], plugins: [{{name: request-size-limiting, config: {{allowed_payload_size: 2, size_unit: kilobytes}}}}]}}
  - {{name: bytes, paths: ["/bytes"], plugins: [{{name: request-size-limiting, config: {{allowed_payload_size: 10, size_unit: bytes}}}}]}}
  - name: req
    paths: ["/req"]
    plugins:
    - {{name: request-size-limiting, config: {{allowed_payload_size: 100, size_unit: bytes, require_content_length: true}}}}
  - {{name: default, paths: ["/default"], plugins: [{{name: request-size-limiting}}]}}
"""

MSG = "Request size limit exceeded"
MB = 1 << 20


@pytest.fixture(scope="module")
def env():
    with running(lambda port: CONFIG.format(P=port)) as e:
        yield e


def parse(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, body


def test_content_length_within_limit(env):
    st, _, data = env.lm.request("POST", "/mb", body=b"a" * MB)
    assert st == 200
    assert json.loads(data)["body_len"] == MB
    st, _, data = env.lm.request("POST", "/kb", body=b"a" * 2048)
    assert st == 200
    st, _, data = env.lm.request("POST", "/bytes", body=b"a" * 10)
    assert st == 200


def post_over(port, path, size):
    """POST with Content-Length; the proxy may answer (and close) before the body is all sent."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n".encode())
        try:
            s.sendall(b"a" * size)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                out += d
        except ConnectionResetError:
            pass
        return out
    finally:
        s.close()


def test_content_length_over_limit(env):
    n = len(env.up.requests)
    for path, size in (("/mb", MB + 1), ("/kb", 2049), ("/bytes", 11)):
        raw = post_over(env.lm.port, path, size)
        st, body = parse(raw)
        assert st == 413, (path, raw[:200])
        assert b"application/json" in raw.split(b"\r\n\r\n")[0]
        assert json.loads(body)["message"] == MSG
    assert len(env.up.requests) == n


def test_refused_without_reading_the_body(env):
    # only the head is sent: the answer comes at once
    t = time.time()
    raw = env.lm.raw(b"POST /mb HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n", timeout=5, read_all=False)
    assert time.time() - t < 3
    st, body = parse(raw)
    assert st == 413


def test_expect_100_continue_gets_417(env):
    raw = env.lm.raw(b"POST /bytes HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\nExpect: 100-continue\r\n"
                     b"Connection: close\r\n\r\n", timeout=5)
    st, body = parse(raw)
    assert st == 417
    assert json.loads(body)["message"] == MSG
    # within the limit the Expect header changes nothing
    st, _, _ = env.lm.request("POST", "/bytes", body=b"12345", headers={"Expect": "100-continue"})
    assert st in (200, 100)


def chunked_upload(port, path, total, chunk=64 * 1024):
    """Sends a chunked body of `total` bytes; returns the status (or None when the proxy closed first)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode())
        sent = 0
        try:
            while sent < total:
                n = min(chunk, total - sent)
                s.sendall(b"%x\r\n" % n + b"b" * n + b"\r\n")
                sent += n
            s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                out += d
        except (ConnectionResetError, socket.timeout):
            pass
        if not out:
            return None, b""
        return parse(out)
    finally:
        s.close()


def test_chunked_within_limit(env):
    st, body = chunked_upload(env.lm.port, "/mb", MB)
    assert st == 200
    assert json.loads(body)["body_len"] == MB


def test_chunked_over_limit_never_reaches_upstream_complete(env):
    st, body = chunked_upload(env.lm.port, "/mb", 3 * MB)
    assert st in (413, None), st
    if st == 413:
        assert json.loads(body)["message"] == MSG
    st, body = chunked_upload(env.lm.port, "/bytes", 11, chunk=4)
    assert st in (413, None), st
    time.sleep(0.3)
    for r in env.up.requests:
        if r["path"] == "/" and r["method"] == "POST":
            assert r["body_len"] <= MB
    # the proxy is still fine afterwards
    assert env.lm.request("POST", "/mb", body=b"x")[0] == 200



def test_require_content_length(env):
    st, h, data = env.lm.request("GET", "/req")
    assert st == 411
    assert json.loads(data)["message"] == "A valid Content-Length header is required"
    st, _, _ = env.lm.request("POST", "/req", body=b"a" * 100)
    assert st == 200
    assert parse(post_over(env.lm.port, "/req", 101))[0] == 413
    st, body = chunked_upload(env.lm.port, "/req", 50)
    assert st == 200  # chunked bodies are let through (and capped)
    st, body = chunked_upload(env.lm.port, "/req", 500, chunk=100)
    assert st in (413, None)


def test_default_limit_is_128_megabytes(env):
    raw = env.lm.raw(b"POST /default HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (128 * MB + 1),
                     timeout=5, read_all=False)
    assert parse(raw)[0] == 413
    st, _, _ = env.lm.request("POST", "/default", body=b"a" * 1000)
    assert st == 200


def check(config_text):
    return check_config(config_text)


def test_config_errors():
    rc, out = check("""_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:1
  routes:
  - {name: a, paths: ["/a"], plugins: [{name: request-size-limiting, config: {size_unit: gigabytes}}]}
  - {name: b, paths: ["/b"], plugins: [{name: request-size-limiting, config: {allowed_payload_size: 1.5}}]}
  - {name: c, paths: ["/c"], plugins: [{name: request-size-limiting, config: {require_content_length: 1}}]}
""")
    assert rc == 1, out
    assert "services[0].routes[0].plugins[0].config.size_unit: expected one of: megabytes, kilobytes, bytes" in out
    assert "services[0].routes[1].plugins[0].config.allowed_payload_size: expected an integer" in out
    assert "services[0].routes[2].plugins[0].config.require_content_length: expected a boolean" in out

"""Black-box tests of the request-termination plugin: Kong's default
message per status, custom message, raw body with content_type, no body for a
status without a default message, trigger by header or query argument, echo
(the request as JSON), and config validation through --check.

One Limen (1 worker) and one upstream serve the module; stopping Limen at the
end asserts that ASan/UBSan/LSan reported nothing."""
import json

import pytest

from conftest import check_config, running

CONFIG = """_format_version: "3.0"
services:
- name: svc
  url: http://127.0.0.1:{P}
  routes:
  - {{name: default, paths: ["/default"], plugins: [{{name: request-termination}}]}}
  - {{name: msg, paths: ["/msg"], plugins: [{{name: request-termination, config: {{status_code: 403, message: "So long and thanks for all the fish!"}}}}]}}
  - {{name: s404, paths: ["/s404"], plugins: [{{name: request-termination, config: {{status_code: 404}}}}]}}
  - {{name: s418, paths: ["/s418"], plugins: [{{name: request-termination, config: {{status_code: 418}}}}]}}
  - {{name: html, paths: ["/html"], plugins: [{{name: request-termination, config: {{status_code: 200, body: "<h1>bye</h1>", content_type: "text/html"}}}}]}}
  - {{name: rawjson, paths: ["/rawjson"], plugins: [{{name: request-termination, config: {{status_code: 451, body: '{{"a":1}}'}}}}]}}
  - {{name: trigger, paths: ["/trigger"], plugins: [{{name: request-termination, config: {{trigger: "X-Stop"}}}}]}}
  - name: echo
    paths: ["/echo"]
    methods: ["GET", "POST"]
    plugins:
    - {{name: request-termination, config: {{status_code: 200, echo: true, trigger: "echo"}}}}
  - name: echo-all
    paths: ["/all-echo"]
    plugins:
    - {{name: request-termination, config: {{echo: true, message: "hello"}}}}
"""


@pytest.fixture(scope="module")
def env():
    with running(lambda port: CONFIG.format(P=port)) as e:
        yield e


def test_default_503(env):
    n = len(env.up.requests)
    st, h, data = env.lm.request("GET", "/default")
    assert st == 503
    assert h["content-type"].startswith("application/json")
    assert json.loads(data)["message"] == "Service unavailable"
    assert len(env.up.requests) == n


def test_custom_message(env):
    st, _, data = env.lm.request("GET", "/msg")
    assert st == 403
    assert json.loads(data)["message"] == "So long and thanks for all the fish!"


def test_default_messages_per_status(env):
    st, _, data = env.lm.request("GET", "/s404")
    assert st == 404
    assert json.loads(data)["message"] == "Not found"
    st, h, data = env.lm.request("GET", "/s418")
    assert st == 418
    assert data == b""


def test_raw_body(env):
    st, h, data = env.lm.request("GET", "/html")
    assert st == 200
    assert data == b"<h1>bye</h1>"
    assert h["content-type"] == "text/html"
    st, h, data = env.lm.request("GET", "/rawjson")
    assert st == 451
    assert data == b'{"a":1}'
    assert h["content-type"].startswith("application/json")


def test_trigger(env):
    st, _, data = env.lm.request("GET", "/trigger")
    assert st == 200
    assert json.loads(data)["upstream"] == "up"
    st, _, data = env.lm.request("GET", "/trigger", headers={"x-stop": "1"})
    assert st == 503
    st, _, _ = env.lm.request("GET", "/trigger?X-Stop")
    assert st == 503
    st, _, _ = env.lm.request("GET", "/trigger?X-Stop=")
    assert st == 503
    st, _, _ = env.lm.request("GET", "/trigger?other=X-Stop")
    assert st == 200


def test_echo(env):
    st, _, data = env.lm.request("GET", "/echo?a=1")
    assert st == 200
    assert json.loads(data)["upstream"] == "up"  # no trigger: proxied
    st, h, data = env.lm.request("GET", "/echo?echo&a=1&a=2&b=x%20y+z&c=",
                                 headers={"Host": "Example.COM:8080", "X-Multi": "1"})
    assert st == 200
    assert h["content-type"].startswith("application/json")
    j = json.loads(data)
    assert "message" not in j  # no message configured, and 200 has no default one
    req = j["request"]
    assert req["method"] == "GET"
    assert req["path"] == "/echo"
    assert req["scheme"] == "http"
    assert req["host"] == "example.com"
    assert req["port"] == 8080
    assert req["query"] == {"echo": True, "a": ["1", "2"], "b": "x y z", "c": ""}
    assert req["headers"]["x-multi"] == "1"
    assert req["headers"]["host"] == "Example.COM:8080"
    assert req["raw_body"] == ""
    assert j["matched_route"]["name"] == "echo"
    assert j["matched_route"]["paths"] == ["/echo"]
    assert j["matched_route"]["methods"] == ["GET", "POST"]
    assert j["matched_service"]["name"] == "svc"
    assert j["matched_service"]["port"] == env.up.port
    assert isinstance(j["kong"]["worker_pid"], int)


def test_echo_repeated_headers_and_message(env):
    raw = env.lm.raw(b"GET /all-echo HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503")
    j = json.loads(body)
    assert j["message"] == "hello"
    assert j["request"]["headers"]["x-a"] == ["1", "2"]
    assert j["request"]["query"] == {}


def check(config_text):
    return check_config(config_text)


def test_config_errors():
    rc, out = check("""_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:1
  routes:
  - {name: a, paths: ["/a"], plugins: [{name: request-termination, config: {message: "m", body: "b"}}]}
  - {name: b, paths: ["/b"], plugins: [{name: request-termination, config: {content_type: "text/plain"}}]}
  - {name: c, paths: ["/c"], plugins: [{name: request-termination, config: {echo: true, body: "b"}}]}
  - {name: d, paths: ["/d"], plugins: [{name: request-termination, config: {status_code: 600}}]}
  - {name: e, paths: ["/e"], plugins: [{name: request-termination, config: {status_code: 99}}]}
  - {name: f, paths: ["/f"], plugins: [{name: request-termination, config: {trigger: "bad header"}}]}
""")
    assert rc == 1, out
    assert "services[0].routes[0].plugins[0].config: message cannot be used with content_type or body" in out
    assert "services[0].routes[1].plugins[0].config: content_type requires a body" in out
    assert "services[0].routes[2].plugins[0].config: echo cannot be used with content_type and body" in out
    assert "services[0].routes[3].plugins[0].config.status_code: value should be between 100 and 599" in out
    assert "services[0].routes[4].plugins[0].config.status_code: value should be between 100 and 599" in out
    assert "services[0].routes[5].plugins[0].config.trigger: bad header name" in out

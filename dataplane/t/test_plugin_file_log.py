"""Black-box tests of the file-log plugin: Kong's log record (request,
response, route, service, consumer, latencies, client_ip, started_at, tries,
upstream_uri, workspace fields) written as one JSON line per request, reopen
after the file was moved away (and the kept descriptor without reopen), and
config validation (path, custom_fields_by_lua refused). Limen runs under
ASan and must stop leak-free."""
import json
import os
import tempfile
import time

import pytest

from conftest import check_config, running
from logrecv import wait_for

CONFIG = r"""_format_version: "3.0"
consumers:
- username: alice
  custom_id: a-1
  keyauth_credentials: [{{key: alice-key}}]
services:
- name: s
  url: http://127.0.0.1:{P}/base
  routes:
  - name: logged
    paths: ["/logged"]
    plugins:
    - {{name: key-auth}}
    - {{name: file-log, config: {{path: "{D}/a.log"}}}}
  - name: reopened
    paths: ["/reopened"]
    plugins:
    - {{name: file-log, config: {{path: "{D}/b.log", reopen: true}}}}
  - name: kept
    paths: ["/kept"]
    plugins:
    - {{name: file-log, config: {{path: "{D}/c.log"}}}}
"""


@pytest.fixture(scope="module")
def env():
    d = tempfile.mkdtemp(prefix="limen-filelog-")
    with running(lambda port: CONFIG.format(P=port, D=d), workers=2) as e:
        e.dir = d
        yield e


def lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(x) for x in f.read().splitlines() if x]


def test_record_shape(env):
    st, _, _ = env.lm.request("GET", "/logged/x?a=1&b=%20two&flag&a=3",
                              headers={"apikey": "alice-key", "Authorization": "Bearer secret", "X-Test": "yes"})
    assert st == 200
    rec = wait_for(lambda: lines(os.path.join(env.dir, "a.log")))[-1]
    req = rec["request"]
    assert req["method"] == "GET"
    assert req["uri"] == "/logged/x?a=1&b=%20two&flag&a=3"
    assert req["url"] == f"http://127.0.0.1:{env.lm.port}/logged/x?a=1&b=%20two&flag&a=3"
    assert req["querystring"] == {"a": ["1", "3"], "b": " two", "flag": True}
    assert req["headers"]["x-test"] == "yes"
    assert req["headers"]["authorization"] == "REDACTED"
    assert req["size"] > 50 and req["id"]
    resp = rec["response"]
    assert resp["status"] == 200 and resp["size"] > 0
    assert resp["headers"]["content-type"].startswith("application/json")
    assert rec["route"]["name"] == "logged" and rec["route"]["paths"] == ["/logged"]
    assert rec["route"]["service"]["id"] == rec["service"]["id"]
    assert rec["service"]["name"] == "s" and rec["service"]["host"] == "127.0.0.1"
    assert rec["service"]["port"] == env.up.port and rec["service"]["path"] == "/base"
    assert rec["consumer"]["username"] == "alice" and rec["consumer"]["custom_id"] == "a-1"
    assert rec["authenticated_entity"]["id"]
    assert rec["upstream_uri"] == "/base/x?a=1&b=%20two&flag&a=3"
    assert rec["upstream_status"] == "200"
    assert rec["source"] == "service"
    lat = rec["latencies"]
    assert lat["request"] >= lat["proxy"] >= 0 and lat["kong"] >= 0 and lat["receive"] >= 0
    assert rec["client_ip"] == "127.0.0.1"
    assert abs(rec["started_at"] - time.time() * 1000) < 10000
    assert rec["tries"][0]["ip"] == "127.0.0.1" and rec["tries"][0]["port"] == env.up.port
    assert rec["workspace_name"] == "default" and len(rec["workspace"]) == 36


def test_exit_by_a_plugin_is_logged(env):
    st, _, _ = env.lm.request("GET", "/logged/denied")
    assert st == 401
    rec = wait_for(lambda: [r for r in lines(os.path.join(env.dir, "a.log")) if r["response"]["status"] == 401])[-1]
    assert rec["source"] == "exit" and rec["latencies"]["proxy"] == -1
    assert "consumer" not in rec and rec["tries"] == []


def test_one_line_per_request(env):
    path = os.path.join(env.dir, "c.log")
    before = len(lines(path))
    for i in range(20):
        assert env.lm.request("GET", f"/kept/{i}")[0] == 200
    got = wait_for(lambda: len(lines(path)) - before == 20 and lines(path))
    assert sorted(r["request"]["uri"] for r in got[before:]) == sorted(f"/kept/{i}" for i in range(20))


def test_reopen_recreates_a_moved_file(env):
    path = os.path.join(env.dir, "b.log")
    assert env.lm.request("GET", "/reopened/1")[0] == 200
    wait_for(lambda: lines(path))
    os.rename(path, path + ".1")
    assert env.lm.request("GET", "/reopened/2")[0] == 200
    rec = wait_for(lambda: lines(path))
    assert rec[0]["request"]["uri"] == "/reopened/2"
    assert [r["request"]["uri"] for r in lines(path + ".1")] == ["/reopened/1"]


def test_without_reopen_the_descriptor_is_kept(env):
    path = os.path.join(env.dir, "c.log")
    assert env.lm.request("GET", "/kept/before")[0] == 200
    wait_for(lambda: any(r["request"]["uri"] == "/kept/before" for r in lines(path)))
    os.rename(path, path + ".old")
    assert env.lm.request("GET", "/kept/after")[0] == 200
    wait_for(lambda: any(r["request"]["uri"] == "/kept/after" for r in lines(path + ".old")))
    assert not os.path.exists(path)


def test_config_validation():
    base = '_format_version: "3.0"\nplugins:\n- name: file-log\n  config: {}\n'
    rc, out = check_config(base.replace("{}", "{path: /tmp/x.log}"))
    assert rc == 0, out
    rc, out = check_config(base)
    assert rc != 0 and "path" in out and "required field missing" in out
    rc, out = check_config(base.replace("{}", '{path: "/tmp/a*b"}'))
    assert rc != 0 and "not a valid filename" in out
    rc, out = check_config(base.replace("{}", '{path: /tmp/x.log, custom_fields_by_lua: {a: "return 1"}}'))
    assert rc != 0 and "custom_fields_by_lua" in out


def test_repeated_and_escaped_values(env):
    raw = (b"GET /kept/esc?q=%22x%22&q=2 HTTP/1.1\r\nHost: Example.COM:8000\r\nX-Multi: one\r\nx-multi: two\r\n"
           b"X-Quote: a\"b\\c\r\nConnection: close\r\n\r\n")
    assert b" 200 " in env.lm.raw(raw)[:20]
    path = os.path.join(env.dir, "c.log")  # (or where its kept descriptor writes, after the rename test)
    rec = wait_for(lambda: [r for r in lines(path) + lines(path + ".old")
                            if r["request"]["uri"].startswith("/kept/esc")])[-1]
    h = rec["request"]["headers"]
    assert h["x-multi"] == ["one", "two"] and h["x-quote"] == 'a"b\\c' and h["host"] == "Example.COM:8000"
    assert rec["request"]["querystring"] == {"q": ['"x"', "2"]}
    assert rec["request"]["url"] == f"http://example.com:{env.lm.port}/kept/esc?q=%22x%22&q=2"

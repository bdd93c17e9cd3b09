"""Black-box tests of the http-log plugin against real HTTP receivers: one
record per request (method, content_type, custom headers, Basic auth from
the URL), batching (max_batch_size, max_coalescing_delay: JSON arrays),
retries with exponential backoff when the receiver answers 500 and then
recovers, a receiver that never answers does not slow requests and the
queue stays bounded (max_entries, drops counted on /metrics), a queue (and
its waiting entries) surviving a configuration swap that keeps the plugin's
config, and config validation. Limen runs under ASan and stops leak-free."""
import json
import statistics
import time

import pytest

from conftest import Upstream, Limen, check_config
from logrecv import HttpReceiver, wait_for


def config(up, plugins, extra_route=""):
    return f"""_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{up}
  routes:
  - name: r
    paths: ["/"]
    plugins:
{plugins}
{extra_route}"""


@pytest.fixture
def up():
    u = Upstream().start()
    yield u
    u.stop()


def test_one_record_per_request_with_headers_and_auth(up, limen_factory):
    rx = HttpReceiver()
    plug = (f'    - {{name: http-log, config: {{http_endpoint: "http://user:p%40ss@127.0.0.1:{rx.port}/logs?x=1", '
            f'method: PUT, content_type: "application/json; charset=utf-8", headers: {{X-Tenant: t1}}}}}}')
    lm = limen_factory(config(up.port, plug)).start()
    for i in range(3):
        assert lm.request("GET", f"/item/{i}")[0] == 200
    wait_for(lambda: len(rx.requests) >= 3)
    r = rx.requests[0]
    assert r["method"] == "PUT" and r["path"] == "/logs?x=1"
    assert r["headers"]["content-type"] == "application/json; charset=utf-8"
    assert r["headers"]["x-tenant"] == "t1"
    assert r["headers"]["authorization"] == "Basic dXNlcjpwQHNz"  # user:p@ss
    assert r["headers"]["host"] == f"127.0.0.1:{rx.port}"
    bodies = rx.bodies()
    assert all(isinstance(b, dict) for b in bodies)
    assert sorted(b["request"]["uri"] for b in bodies) == ["/item/0", "/item/1", "/item/2"]
    assert bodies[0]["response"]["status"] == 200 and bodies[0]["route"]["name"] == "r"
    assert rx.connections == 1  # keepalive: one connection for the three
    # the default queue (10000 entries) takes a burst whole
    c = lm.conn()
    for i in range(40):
        c.request("GET", f"/burst/{i}")
        c.getresponse().read()
    c.close()
    wait_for(lambda: len(rx.requests) >= 43, timeout=10)
    assert 'reason="full"} 0' in lm.metrics()
    lm.stop()
    rx.close()


def test_batching(up, limen_factory):
    rx = HttpReceiver()
    plug = (f'    - {{name: http-log, config: {{http_endpoint: "http://127.0.0.1:{rx.port}/", '
            f'queue: {{max_batch_size: 5, max_coalescing_delay: 0.5}}}}}}')
    lm = limen_factory(config(up.port, plug)).start()
    for i in range(12):
        assert lm.request("GET", f"/b/{i}")[0] == 200
    wait_for(lambda: sum(len(b) for b in rx.bodies()) >= 12, timeout=5)
    batches = rx.bodies()
    assert all(isinstance(b, list) and 1 <= len(b) <= 5 for b in batches)
    assert [len(b) for b in batches][:2] == [5, 5]  # full batches go at once
    assert sorted(x["request"]["uri"] for b in batches for x in b) == sorted(f"/b/{i}" for i in range(12))
    lm.stop()
    rx.close()


def test_retries_with_backoff_then_recovery(up, limen_factory):
    rx = HttpReceiver(statuses=[500, 500, 500])
    plug = (f'    - {{name: http-log, config: {{http_endpoint: "http://127.0.0.1:{rx.port}/", '
            f'queue: {{initial_retry_delay: 0.1, max_retry_delay: 10, max_retry_time: 30}}}}}}')
    lm = limen_factory(config(up.port, plug)).start()
    assert lm.request("GET", "/once")[0] == 200
    wait_for(lambda: len(rx.requests) >= 4, timeout=10)
    time.sleep(0.3)
    assert len(rx.requests) == 4  # three failures, then delivered once
    assert all(json.loads(r["body"])["request"]["uri"] == "/once" for r in rx.requests)
    gaps = [b["t"] - a["t"] for a, b in zip(rx.requests, rx.requests[1:])]
    assert 0.08 <= gaps[0] < 0.6 and gaps[1] >= 0.18 and gaps[2] >= 0.36  # 0.1, 0.2, 0.4
    assert gaps[2] > gaps[0] * 2
    m = lm.metrics()
    assert 'limen_log_queue_entries_sent_total{plugin="http-log"' in m
    assert 'limen_log_queue_send_failures_total{plugin="http-log",queue=' in m
    lm.stop()
    rx.close()


def test_gives_up_after_max_retry_time(up, limen_factory):
    rx = HttpReceiver(statuses=[500] * 100)
    plug = (f'    - {{name: http-log, config: {{http_endpoint: "http://127.0.0.1:{rx.port}/", '
            f'queue: {{initial_retry_delay: 0.05, max_retry_delay: 0.1, max_retry_time: 0.5}}}}}}')
    lm = limen_factory(config(up.port, plug)).start()
    assert lm.request("GET", "/lost")[0] == 200
    wait_for(lambda: 'reason="failed"} 1' in lm.metrics(), timeout=5, what="the batch given up")
    n = len(rx.requests)
    assert 3 <= n <= 12
    time.sleep(0.5)
    assert len(rx.requests) == n
    lm.stop()
    rx.close()


def test_dead_receiver_never_slows_requests(up, limen_factory):
    rx = HttpReceiver(hang=True)  # accepts, reads, never answers
    plug = (f'    - {{name: http-log, config: {{http_endpoint: "http://127.0.0.1:{rx.port}/", timeout: 1500, '
            f'queue: {{max_entries: 20, max_retry_time: 1}}}}}}')
    lm = limen_factory(config(up.port, plug)).start()
    c = lm.conn()
    lat = []
    for i in range(300):
        t = time.monotonic()
        c.request("GET", f"/fast/{i}")
        r = c.getresponse()
        r.read()
        lat.append(time.monotonic() - t)
        assert r.status == 200
    c.close()
    assert statistics.median(lat) < 0.02 and max(lat) < 0.25, (statistics.median(lat), max(lat))
    m = lm.metrics()
    waiting = [l for l in m.splitlines() if l.startswith('limen_log_queue_entries{plugin="http-log"')]
    assert waiting and int(waiting[0].split()[-1]) <= 20
    dropped = [l for l in m.splitlines() if l.startswith("limen_log_queue_entries_dropped_total") and 'reason="full"' in l]
    assert int(dropped[0].split()[-1]) >= 250
    t = time.monotonic()
    lm.stop()  # flushing at exit is bounded
    assert time.monotonic() - t < 10
    rx.close()


def test_queue_survives_a_config_swap(up, limen_factory):
    rx = HttpReceiver(statuses=[500, 500])
    plug = (f'    - {{name: http-log, config: {{http_endpoint: "http://127.0.0.1:{rx.port}/", '
            f'queue: {{initial_retry_delay: 0.4, max_retry_time: 30}}}}}}')
    lm = limen_factory(config(up.port, plug)).start()
    assert lm.request("GET", "/before-swap")[0] == 200
    wait_for(lambda: len(rx.requests) >= 1)
    qid = [l for l in lm.metrics().splitlines() if l.startswith("limen_log_queue_entries{")][0]
    new = config(up.port, plug, extra_route="  - name: other\n    paths: [\"/other\"]\n")
    st, body = lm.admin("POST", "/config", new, {"Content-Type": "text/yaml"})
    assert st in (200, 201), body
    assert lm.request("GET", "/other")[0] == 200  # the new route, without the plugin
    assert lm.request("GET", "/after-swap")[0] == 200
    wait_for(lambda: any(json.loads(r["body"])["request"]["uri"] == "/after-swap" for r in rx.requests),
             timeout=10)
    uris = [json.loads(r["body"])["request"]["uri"] for r in rx.requests]
    assert uris.count("/before-swap") == 3  # 500, 500, then delivered: kept across the swap
    assert "/other" not in uris
    assert [l for l in lm.metrics().splitlines() if l.startswith("limen_log_queue_entries{")][0].split()[0] == \
        qid.split()[0]
    lm.stop()
    rx.close()


def test_config_validation():
    base = '_format_version: "3.0"\nplugins:\n- name: http-log\n  config: CFG\n'
    rc, out = check_config(base.replace("CFG", "{http_endpoint: 'http://example.com:9000/x'}"))
    assert rc == 0, out
    rc, out = check_config(base.replace("CFG", "{}"))
    assert rc != 0 and "http_endpoint" in out
    rc, out = check_config(base.replace("CFG", "{http_endpoint: 'ftp://x/'}"))
    assert rc != 0 and "http_endpoint" in out
    rc, out = check_config(base.replace("CFG", "{http_endpoint: 'http://x/', method: GET}"))
    assert rc != 0 and "method" in out
    rc, out = check_config(base.replace("CFG", "{http_endpoint: 'http://x/', queue: {max_batch_size: 0}}"))
    assert rc != 0 and "max_batch_size" in out
    rc, out = check_config(base.replace("CFG", "{http_endpoint: 'http://x/', custom_fields_by_lua: {a: 'return 1'}}"))
    assert rc != 0 and "custom_fields_by_lua" in out

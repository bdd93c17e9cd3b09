"""Black-box tests of the opentelemetry plugin with a real OTLP/HTTP receiver
decoding the protobuf export with opentelemetry-proto: span fields (ids,
names, kinds, times, attributes, status), the resource and scope, W3C trace
context extracted from the client and propagated to the upstream (the
upstream's parent is the balancer span), sampling_rate, batching,
http_response_header_for_traceid, propagation.clear, and config validation.
Limen runs under ASan and stops leak-free."""
import json
import time

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from conftest import Upstream, Limen, check_config
from logrecv import HttpReceiver, wait_for

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def config(up, rx, route_plugins):
    return f"""_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{up}
  routes:
  - name: traced
    paths: ["/traced"]
    plugins:
    - name: opentelemetry
      config:
        traces_endpoint: http://127.0.0.1:{rx}/v1/traces
        headers: {{X-Auth: abc}}
        resource_attributes: {{service.name: edge, deployment.environment: test}}
        http_response_header_for_traceid: X-Trace-Id
        propagation: {{clear: [X-Drop-Me]}}
        queue: {{max_coalescing_delay: 0.2}}
{route_plugins}
"""


def spans(rx):
    out = []
    for r in rx.requests:
        req = ExportTraceServiceRequest()
        req.ParseFromString(r["body"])
        for rs in req.resource_spans:
            res = {a.key: a.value.string_value for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    out.append((res, ss.scope, sp))
    return out


def attrs(sp):
    d = {}
    for a in sp.attributes:
        v = a.value
        d[a.key] = v.string_value if v.HasField("string_value") else v.int_value
    return d


@pytest.fixture(scope="module")
def env():
    up = Upstream().start()
    rx = HttpReceiver()
    sampled = """  - name: never
    paths: ["/never"]
    plugins:
    - {name: opentelemetry, config: {traces_endpoint: "http://127.0.0.1:%d/v1/traces", sampling_rate: 0}}
""" % rx.port
    lm = Limen(config(up.port, rx.port, sampled), workers=2).start()
    yield up, rx, lm
    lm.stop()
    rx.close()
    up.stop()


def test_spans_and_propagation(env):
    up, rx, lm = env
    n0 = len(spans(rx))
    st, h, body = lm.request("GET", "/traced/echo?x=1", headers={"traceparent": f"00-{TRACE}-{PARENT}-01",
                                                              "tracestate": "vendor=1", "X-Drop-Me": "y"})
    assert st == 200
    assert h["x-trace-id"] == TRACE
    sent = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert "x-drop-me" not in sent
    tp = sent["traceparent"].split("-")
    assert tp[0] == "00" and tp[1] == TRACE and tp[3] == "01" and tp[2] != PARENT
    assert sent["tracestate"] == "vendor=1"
    got = wait_for(lambda: len(spans(rx)) >= n0 + 2 and spans(rx)[n0:])
    byname = {sp.name: (res, scope, sp) for res, scope, sp in got}
    res, scope, root = byname["kong"]
    _, _, bal = byname["kong.balancer"]
    assert root.trace_id.hex() == TRACE and bal.trace_id.hex() == TRACE
    assert root.parent_span_id.hex() == PARENT and root.trace_state == "vendor=1"
    assert bal.parent_span_id == root.span_id
    assert bal.span_id.hex() == tp[2]  # the upstream saw the balancer span as its parent
    assert root.kind == 2 and bal.kind == 3
    assert root.start_time_unix_nano <= bal.start_time_unix_nano <= bal.end_time_unix_nano <= root.end_time_unix_nano
    assert abs(root.start_time_unix_nano / 1e9 - time.time()) < 30
    a = attrs(root)
    assert a["http.method"] == "GET" and a["http.status_code"] == 200 and a["http.scheme"] == "http"
    assert a["http.url"] == f"http://127.0.0.1:{lm.port}/traced/echo?x=1"
    assert a["kong.route.name"] == "traced" and a["kong.service.name"] == "s" and a["kong.request.id"]
    b = attrs(bal)
    assert b["net.peer.ip"] == "127.0.0.1" and b["net.peer.port"] == up.port and b["try_count"] == 1
    assert res["service.name"] == "edge" and res["deployment.environment"] == "test"
    assert res["service.version"] and res["service.instance.id"]
    assert scope.name == "kong-internal"
    req = rx.requests[-1]
    assert req["path"] == "/v1/traces" and req["headers"]["content-type"] == "application/x-protobuf"
    assert req["headers"]["x-auth"] == "abc"


def test_new_trace_without_context_and_error_status(env):
    up, rx, lm = env
    n0 = len(spans(rx))
    st, h, _ = lm.request("GET", "/traced/status/503")
    assert st == 503
    got = wait_for(lambda: len(spans(rx)) >= n0 + 2 and spans(rx)[n0:])
    root = [sp for _, _, sp in got if sp.name == "kong"][0]
    assert root.trace_id.hex() == h["x-trace-id"] and not root.parent_span_id
    assert root.status.code == 2  # ERROR


def test_batches(env):
    up, rx, lm = env
    r0, n0 = len(rx.requests), len(spans(rx))
    for i in range(10):
        assert lm.request("GET", f"/traced/b{i}")[0] == 200
    wait_for(lambda: len(spans(rx)) >= n0 + 20)
    assert len(rx.requests) - r0 <= 4  # coalesced, not one export per request


def test_sampling_rate_zero_still_propagates(env):
    up, rx, lm = env
    n0 = len(spans(rx))
    st, _, body = lm.request("GET", "/never/echo")
    assert st == 200
    tp = {k.lower(): v for k, v in json.loads(body)["headers"]}["traceparent"]
    assert tp.endswith("-00")
    time.sleep(0.5)
    assert len(spans(rx)) == n0


def test_config_validation():
    base = '_format_version: "3.0"\nplugins:\n- name: opentelemetry\n  config: CFG\n'
    rc, out = check_config(base.replace("CFG", "{traces_endpoint: 'http://collector:4318/v1/traces', sampling_rate: 0.5}"))
    assert rc == 0, out
    rc, out = check_config(base.replace("CFG", "{endpoint: 'http://collector:4318/v1/traces'}"))
    assert rc == 0, out
    rc, out = check_config(base.replace("CFG", "{}"))
    assert rc != 0 and "traces_endpoint" in out
    rc, out = check_config(base.replace("CFG", "{traces_endpoint: 'http://c/', sampling_rate: 2}"))
    assert rc != 0 and "sampling_rate" in out
    rc, out = check_config(base.replace("CFG", "{traces_endpoint: 'http://c/', propagation: {inject: [b3]}}"))
    assert rc != 0 and "w3c only" in out
    rc, out = check_config(base.replace("CFG", "{traces_endpoint: 'http://c/', header_type: zipkin}"))
    assert rc != 0 and "header_type" in out

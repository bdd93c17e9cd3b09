"""Black-box tests of the correlation-id plugin: the three generators
(uuid, uuid#counter per worker, tracker), the header the upstream gets, a
client's own value passed on untouched, echo_downstream (also on a response
another plugin made), a custom header name, and config validation."""
import json
import re

import pytest

from conftest import check_config, running

CONFIG = r"""_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{P}
  routes:
  - {{name: default, paths: ["/default"], plugins: [{{name: correlation-id}}]}}
  - {{name: uuid, paths: ["/uuid"], plugins: [{{name: correlation-id, config: {{generator: uuid, echo_downstream: true}}}}]}}
  - {{name: tracker, paths: ["/tracker"], plugins: [{{name: correlation-id, config: {{generator: tracker, header_name: X-Trace}}}}]}}
  - name: term
    paths: ["/term"]
    plugins:
    - {{name: correlation-id, config: {{echo_downstream: true}}}}
    - {{name: request-termination, config: {{status_code: 418}}}}
"""

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


@pytest.fixture(scope="module")
def env():
    with running(lambda port: CONFIG.format(P=port), workers=1) as e:
        yield e


def upstream_header(body, name):
    vals = [v for k, v in json.loads(body)["headers"] if k.lower() == name.lower()]
    return vals


def test_uuid_counter_default(env):
    seen = []
    for _ in range(3):
        st, h, body = env.lm.request("GET", "/default")
        assert st == 200
        assert "kong-request-id" not in h  # echo_downstream is off by default
        vals = upstream_header(body, "Kong-Request-ID")
        assert len(vals) == 1 and re.fullmatch(UUID + r"#\d+", vals[0]), vals
        seen.append(vals[0])
    prefixes = {v.split("#")[0] for v in seen}
    counters = [int(v.split("#")[1]) for v in seen]
    assert len(prefixes) == 1  # one worker: one UUID
    assert counters == sorted(counters) and len(set(counters)) == 3


def test_uuid_and_echo(env):
    st, h, body = env.lm.request("GET", "/uuid")
    sent = upstream_header(body, "Kong-Request-ID")
    assert re.fullmatch(UUID, sent[0])
    assert h["kong-request-id"] == sent[0]
    st, h2, body2 = env.lm.request("GET", "/uuid")
    assert h2["kong-request-id"] != h["kong-request-id"]


def test_client_value_kept(env):
    st, h, body = env.lm.request("GET", "/uuid", headers={"Kong-Request-ID": "mine-123"})
    assert upstream_header(body, "Kong-Request-ID") == ["mine-123"]
    assert h["kong-request-id"] == "mine-123"


def test_tracker(env):
    st, h, body = env.lm.request("GET", "/tracker")
    v = upstream_header(body, "X-Trace")
    assert len(v) == 1
    assert re.fullmatch(r"127\.0\.0\.1-%d-\d+-\d+-1-\d+\.\d{3}" % env.lm.port, v[0]), v


def test_echo_on_a_plugin_response(env):
    st, h, _ = env.lm.request("GET", "/term")
    assert st == 418
    assert re.fullmatch(UUID + r"#\d+", h["kong-request-id"])


def test_config_errors():
    rc, out = check_config("""_format_version: "3.0"
plugins:
- {name: correlation-id, config: {generator: random}}
""")
    assert rc != 0 and "expected one of: uuid, uuid#counter, tracker" in out
    rc, out = check_config("""_format_version: "3.0"
plugins:
- {name: correlation-id, config: {header_name: "bad header"}}
""")
    assert rc != 0 and "bad header name" in out

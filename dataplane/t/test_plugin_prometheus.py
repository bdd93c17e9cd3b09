"""Black-box tests of the prometheus plugin: the status listener's /metrics
parsed with a real parser (prometheus_client's, and promtool when installed)
after requests with different status codes, sources and consumers:
kong_http_requests_total, the three latency histograms with Kong's buckets,
kong_bandwidth_bytes, kong_upstream_target_health, the nginx-style
connection metrics; the toggles (a plugin without them adds no per-request
series) and counters kept across a configuration swap. Limen runs under ASan
and stops leak-free."""
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import Upstream, Limen, check_config

KONG_BUCKETS = [1, 2, 5, 7, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 100, 200, 300, 400, 500, 1000, 2000, 5000,
                10000, 30000, 60000]

CONFIG = r"""_format_version: "3.0"
plugins:
- name: prometheus
  config: {{per_consumer: true, status_code_metrics: true, latency_metrics: true, bandwidth_metrics: true,
            upstream_health_metrics: true}}
consumers:
- username: alice
  keyauth_credentials: [{{key: alice-key}}]
- username: bob
  keyauth_credentials: [{{key: bob-key}}]
upstreams:
- name: pool
  targets: [{{target: "127.0.0.1:{P}"}}]
services:
- name: s
  url: http://pool
  routes:
  - name: open
    paths: ["/open"]
  - name: keyed
    paths: ["/keyed"]
    plugins:
    - {{name: key-auth}}
  - name: stopped
    paths: ["/stopped"]
    plugins:
    - {{name: request-termination, config: {{status_code: 418, message: no}}}}
"""


def families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams, family, name, **labels):
    total = 0
    found = False
    for s in fams[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            total += s.value
            found = True
    return total if found else None


@pytest.fixture(scope="module")
def env():
    up = Upstream().start()
    lm = Limen(CONFIG.format(P=up.port), workers=2).start()
    for _ in range(3):
        assert lm.request("GET", "/open/x")[0] == 200
    assert lm.request("GET", "/open/status/404")[0] == 404
    assert lm.request("GET", "/open/status/500")[0] == 500
    for _ in range(2):
        assert lm.request("GET", "/keyed/a", headers={"apikey": "alice-key"})[0] == 200
    assert lm.request("GET", "/keyed/b", headers={"apikey": "bob-key"})[0] == 200
    assert lm.request("GET", "/keyed/c")[0] == 401
    assert lm.request("GET", "/stopped")[0] == 418
    text = lm.metrics()
    yield lm, up, text
    lm.stop()
    up.stop()


def test_exposition_parses(env):
    _, _, text = env
    fams = families(text)
    for name in ("kong_http_requests", "kong_request_latency_ms", "kong_kong_latency_ms", "kong_upstream_latency_ms",
                 "kong_bandwidth_bytes", "kong_upstream_target_health", "kong_nginx_connections_total",
                 "kong_nginx_requests_total", "kong_datastore_reachable", "limen_http_requests"):
        assert name in fams, name
    if shutil.which("promtool"):
        # parse errors fail (exit 1); exit 3 is lint only, and the only lints allowed are about
        # Kong's own metric names (kong_bandwidth_bytes, *_latency_ms, kong_nginx_*_total gauges)
        r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        out = r.stdout + r.stderr
        assert r.returncode in (0, 3) and "parsing error" not in out, out
        naming = ('should have "_total" suffix', "should not contain abbreviated units",
                  'should not have "_total" suffix')
        assert all(any(n in line for n in naming) for line in out.splitlines() if line.strip()), out
        bad = "# TYPE x counter\nx{a=\"1\" 1\n"
        r = subprocess.run(["promtool", "check", "metrics"], input=bad, capture_output=True, text=True)
        assert r.returncode != 0  # the check does catch broken text


def test_requests_by_status_source_and_consumer(env):
    _, _, text = env
    f = families(text)
    n = "kong_http_requests_total"
    assert value(f, "kong_http_requests", n, service="s", route="open", code="200", source="service",
                 consumer="", workspace="default") == 3
    assert value(f, "kong_http_requests", n, route="open", code="404", source="service") == 1
    assert value(f, "kong_http_requests", n, route="open", code="500") == 1
    assert value(f, "kong_http_requests", n, route="keyed", code="200", consumer="alice") == 2
    assert value(f, "kong_http_requests", n, route="keyed", code="200", consumer="bob") == 1
    assert value(f, "kong_http_requests", n, route="keyed", code="401", source="exit", consumer="") == 1
    assert value(f, "kong_http_requests", n, route="stopped", code="418", source="exit") == 1


def test_latency_histograms(env):
    _, _, text = env
    f = families(text)
    for fam in ("kong_request_latency_ms", "kong_kong_latency_ms"):
        assert value(f, fam, fam + "_count", route="open", service="s", workspace="default") == 5
        les = sorted({float(s.labels["le"]) for s in f[fam].samples if s.name == fam + "_bucket"})
        assert les == [float(b) for b in KONG_BUCKETS] + [float("inf")]
        assert value(f, fam, fam + "_bucket", route="open", le="+Inf") == 5
    # upstream latency only for proxied requests
    assert value(f, "kong_upstream_latency_ms", "kong_upstream_latency_ms_count", route="open") == 5
    assert value(f, "kong_upstream_latency_ms", "kong_upstream_latency_ms_count", route="stopped") is None
    assert value(f, "kong_request_latency_ms", "kong_request_latency_ms_count", route="stopped") == 1
    assert 'le="00001.0"' in text  # Kong's zero-padded bucket labels


def test_bandwidth(env):
    _, _, text = env
    f = families(text)
    ing = value(f, "kong_bandwidth_bytes", "kong_bandwidth_bytes_total", route="keyed", consumer="alice", direction="ingress")
    eg = value(f, "kong_bandwidth_bytes", "kong_bandwidth_bytes_total", route="keyed", consumer="alice", direction="egress")
    assert ing > 2 * 40 and eg > 2 * 100


def test_upstream_target_health(env):
    lm, up, text = env
    f = families(text)
    assert value(f, "kong_upstream_target_health", "kong_upstream_target_health", upstream="pool",
                 target=f"127.0.0.1:{up.port}", state="healthchecks_off", subsystem="http") == 1
    assert value(f, "kong_upstream_target_health", "kong_upstream_target_health", upstream="pool",
                 state="healthy") == 0


def test_connections(env):
    _, _, text = env
    f = families(text)
    assert value(f, "kong_nginx_connections_total", "kong_nginx_connections_total", state="accepted") >= 10
    assert value(f, "kong_nginx_requests_total", "kong_nginx_requests_total", subsystem="http") >= 10


def test_toggles_off_and_counters_survive_a_swap(env):
    lm, up, _ = env
    plain = CONFIG.format(P=up.port).replace(
        "per_consumer: true, status_code_metrics: true, latency_metrics: true, bandwidth_metrics: true,\n"
        "            upstream_health_metrics: true", "")
    st, body = lm.admin("POST", "/config", plain, {"Content-Type": "text/yaml"})
    assert st in (200, 201), body
    for _ in range(4):
        assert lm.request("GET", "/open/x")[0] == 200
    f = families(lm.metrics())
    # the old series are kept (like Kong's shared dictionary); nothing new counted without the toggles
    assert value(f, "kong_http_requests", "kong_http_requests_total", route="open", code="200") == 3
    assert "kong_upstream_target_health" not in f
    assert value(f, "kong_nginx_connections_total", "kong_nginx_connections_total", state="accepted") >= 14


def test_config_validation():
    base = '_format_version: "3.0"\nplugins:\n- name: prometheus\n  config: CFG\n'
    rc, out = check_config(base.replace("CFG", "{per_consumer: true, ai_metrics: true}"))
    assert rc == 0, out
    rc, out = check_config(base.replace("CFG", "{per_consumer: 3}"))
    assert rc != 0 and "per_consumer" in out
    rc, out = check_config(base.replace("CFG", "{bogus: true}"))
    assert rc != 0 and "bogus" in out

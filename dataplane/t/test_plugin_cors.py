"""Black-box tests of the cors plugin: preflights answered by the plugin (or
left to the upstream with preflight_continue), Access-Control-Allow-* headers
with Kong's values, origins as "*", plain strings and regexes (matched on the
host or on the whole origin), credentials, exposed headers, private network
access, allow_origin_absent, headers on error responses of other plugins,
and config validation through --check.

One Limen (1 worker) and one upstream serve the module; stopping Limen at the
end asserts that ASan/UBSan/LSan reported nothing."""
import json

import pytest

from conftest import check_config, running

CONFIG = r"""_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{P}
  routes:
  - {{name: star, paths: ["/star"], plugins: [{{name: cors}}]}}
  - {{name: single, paths: ["/single"], plugins: [{{name: cors, config: {{origins: ["http://a.test"]}}}}]}}
  - name: multi
    paths: ["/multi"]
    plugins:
    - name: cors
      config:
        origins: ["http://a.test", "https://b.test:8443", "^https?://.*\\.c\\.test$", "(.*)\\.d\\.test"]
        methods: ["GET", "POST"]
        headers: ["X-H1", "X-H2"]
        exposed_headers: ["X-E1", "X-E2"]
        max_age: 600
        credentials: true
  - {{name: star-cred, paths: ["/star-cred"], plugins: [{{name: cors, config: {{credentials: true}}}}]}}
  - {{name: star-in-list, paths: ["/star-in-list"], plugins: [{{name: cors, config: {{origins: ["http://a.test", "*"]}}}}]}}
  - {{name: continue, paths: ["/continue"], plugins: [{{name: cors, config: {{preflight_continue: true}}}}]}}
  - {{name: pn, paths: ["/pn"], plugins: [{{name: cors, config: {{private_network: true, max_age: 1.5}}}}]}}
  - {{name: noabsent, paths: ["/noabsent"], plugins: [{{name: cors, config: {{origins: ["http://a.test"], allow_origin_absent: false}}}}]}}
  - name: auth
    paths: ["/auth"]
    plugins:
    - {{name: cors, config: {{origins: ["http://a.test", "http://z.test"]}}}}
    - {{name: key-auth}}
  - name: bot
    paths: ["/bot"]
    plugins:
    - {{name: cors}}
    - {{name: bot-detection}}
  - name: term
    paths: ["/term"]
    plugins:
    - {{name: cors}}
    - {{name: request-termination, config: {{status_code: 418}}}}
"""


@pytest.fixture(scope="module")
def env():
    with running(lambda port: CONFIG.format(P=port)) as e:
        yield e


def get(env, path, origin=None, method="GET", headers=None):
    hs = dict(headers or {})
    if origin is not None:
        hs["Origin"] = origin
    return env.lm.request(method, path, headers=hs)


def preflight(env, path, origin, method="POST", headers=None):
    hs = {"Origin": origin, "Access-Control-Request-Method": method}
    hs.update(headers or {})
    return env.lm.request("OPTIONS", path, headers=hs)


def vary(env, path, origin=None, method="GET", headers=None):
    """every Vary header line of the response"""
    c = env.lm.conn()
    hs = dict(headers or {})
    if origin is not None:
        hs["Origin"] = origin
    c.request(method, path, headers=hs)
    r = c.getresponse()
    r.read()
    v = [val for k, val in r.getheaders() if k.lower() == "vary"]
    c.close()
    return v


# ---- simple requests ---------------------------------------------------------------

def test_star(env):
    st, h, _ = get(env, "/star", "http://x.test")
    assert st == 200
    assert h["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in h
    assert "vary" not in h
    # no Origin at all: allow_origin_absent (default true) still sends it
    st, h, _ = get(env, "/star")
    assert h["access-control-allow-origin"] == "*"


def test_single_plain_origin_sent_as_is(env):
    st, h, _ = get(env, "/single", "http://other.test")
    assert st == 200
    assert h["access-control-allow-origin"] == "http://a.test"
    assert vary(env, "/single", "http://other.test") == ["Origin"]


def test_multi_origins(env):
    cases = [
        ("http://a.test", "http://a.test"),
        ("http://a.test:80", "http://a.test"),          # default port dropped
        ("https://b.test:8443", "https://b.test:8443"),
        ("https://x.c.test", "https://x.c.test"),         # regex with ':' matches the whole origin
        ("http://deep.x.c.test:8080", None),              # ... so a port breaks the match
        ("http://x.d.test:9999", "http://x.d.test:9999"), # regex without ':' matches the host
        ("http://evil.test", None),
        ("http://x.c.test.evil", None),                   # anchored at the end
    ]
    for origin, want in cases:
        st, h, _ = get(env, "/multi", origin)
        assert st == 200
        assert h.get("access-control-allow-origin") == want, origin
        assert h["access-control-expose-headers"] == "X-E1,X-E2"
        assert h["access-control-allow-credentials"] == "true"
        assert "access-control-allow-methods" not in h  # preflight only
    assert vary(env, "/multi", "http://evil.test") == ["Origin"]


def test_star_with_credentials_echoes_origin(env):
    st, h, _ = get(env, "/star-cred", "http://o.test:1234")
    assert h["access-control-allow-origin"] == "http://o.test:1234"
    assert h["access-control-allow-credentials"] == "true"
    assert vary(env, "/star-cred", "http://o.test") == ["Origin"]
    st, h, _ = get(env, "/star-cred")  # no Origin: "*" and no credentials
    assert h["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in h


def test_star_among_other_origins(env):
    st, h, _ = get(env, "/star-in-list", "http://q.test")
    assert h["access-control-allow-origin"] == "*"
    st, h, _ = get(env, "/star-in-list")
    assert "access-control-allow-origin" not in h


def test_allow_origin_absent_false(env):
    st, h, _ = get(env, "/noabsent")
    assert st == 200
    assert "access-control-allow-origin" not in h
    assert "vary" not in h
    st, h, _ = get(env, "/noabsent", "http://b.test")
    assert h["access-control-allow-origin"] == "http://a.test"


def test_options_without_request_method_is_not_a_preflight(env):
    n = len(env.up.requests)
    st, h, data = get(env, "/multi", "http://a.test", method="OPTIONS")
    assert st == 200
    assert json.loads(data)["method"] == "OPTIONS"  # went to the upstream
    assert len(env.up.requests) == n + 1
    assert h["access-control-allow-origin"] == "http://a.test"


# ---- preflight -----------------------------------------------------------------------

def test_preflight_answered_by_plugin(env):
    n = len(env.up.requests)
    st, h, data = preflight(env, "/multi", "http://a.test", headers={"Access-Control-Request-Headers": "X-Other"})
    assert st == 200
    assert data == b""
    assert len(env.up.requests) == n
    assert h["access-control-allow-origin"] == "http://a.test"
    assert h["access-control-allow-credentials"] == "true"
    assert h["access-control-allow-methods"] == "GET,POST"
    assert h["access-control-allow-headers"] == "X-H1,X-H2"  # configured headers win over the request's
    assert h["access-control-max-age"] == "600"
    assert h["vary"] == "Origin"
    assert "access-control-expose-headers" not in h
    assert "access-control-allow-private-network" not in h
    st, h, _ = preflight(env, "/multi", "http://evil.test")
    assert st == 200
    assert "access-control-allow-origin" not in h


def test_preflight_defaults(env):
    st, h, data = preflight(env, "/star", "http://x.test", headers={"Access-Control-Request-Headers": "X-A, X-B"})
    assert st == 200
    assert h["access-control-allow-origin"] == "*"
    assert h["access-control-allow-methods"] == "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT"
    assert h["access-control-allow-headers"] == "X-A, X-B"  # echoed when headers is unset
    assert "access-control-max-age" not in h
    assert "vary" not in h
    st, h, _ = preflight(env, "/star", "http://x.test")
    assert "access-control-allow-headers" not in h


def test_preflight_continue(env):
    n = len(env.up.requests)
    st, h, data = preflight(env, "/continue", "http://x.test")
    assert st == 200
    assert json.loads(data)["method"] == "OPTIONS"
    assert len(env.up.requests) == n + 1
    assert "access-control-allow-origin" not in h
    assert "access-control-allow-methods" not in h


def test_private_network(env):
    st, h, _ = preflight(env, "/pn", "http://x.test", headers={"Access-Control-Request-Private-Network": "true"})
    assert h["access-control-allow-private-network"] == "true"
    assert h["access-control-max-age"] == "1.5"
    st, h, _ = preflight(env, "/pn", "http://x.test")
    assert "access-control-allow-private-network" not in h
    st, h, _ = preflight(env, "/star", "http://x.test", headers={"Access-Control-Request-Private-Network": "true"})
    assert "access-control-allow-private-network" not in h


# ---- responses made by other plugins --------------------------------------------------

def test_headers_on_other_plugins_errors(env):
    st, h, data = get(env, "/auth", "http://z.test")
    assert st == 401
    assert h["access-control-allow-origin"] == "http://z.test"
    assert vary(env, "/auth", "http://z.test") == ["Origin"]
    st, h, _ = get(env, "/term", "http://x.test")
    assert st == 418
    assert h["access-control-allow-origin"] == "*"


def test_headers_on_errors_of_higher_priority_plugins(env):
    st, h, _ = get(env, "/bot", "http://x.test", headers={"User-Agent": "Googlebot/2.1"})
    assert st == 403
    assert h.get("access-control-allow-origin") == "*"


def test_preflight_before_auth(env):
    # cors (2000) runs before key-auth (1250): the preflight needs no key
    st, h, _ = preflight(env, "/auth", "http://a.test")
    assert st == 200
    assert h["access-control-allow-origin"] == "http://a.test"


def check(config_text):
    return check_config(config_text)


def test_config_errors():
    rc, out = check("""_format_version: "3.0"
plugins:
- name: cors
  config:
    origins: ["http://ok.test", "(bad"]
    methods: ["GET", "FETCH"]
    credentials: "yes"
    max_age: "10"
""")
    assert rc == 1, out
    assert "plugins[0].config.origins[1]: '(bad' is not a valid regex" in out
    assert ("plugins[0].config.methods[1]: expected one of: GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS, "
            "TRACE, CONNECT") in out
    assert "plugins[0].config.credentials: expected a boolean" in out
    assert "plugins[0].config.max_age: expected a number" in out

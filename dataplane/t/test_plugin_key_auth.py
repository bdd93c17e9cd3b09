"""Black-box tests of the key-auth plugin: keys in headers and query
arguments, Kong's 401 messages and WWW-Authenticate, consumer headers sent
upstream, hide_credentials, anonymous, run_on_preflight, realm, and config
validation through --check.

One Limen (1 worker) and one upstream serve the module; stopping Limen at the
end asserts that ASan/UBSan/LSan reported nothing."""
import json
import os
import subprocess
import tempfile

import pytest

from conftest import check_config, running, LIMEN_BIN

MOBILE_KEY = "s3cr3t-mobile-key"
BOB_ID = "8a1c9a54-0f5e-4c4b-9a7f-2f4b0c7d1e11"
BOB_CRED_ID = "2d1f7a36-5b8e-4a0c-8d51-6f0e2a9b3c44"
ANON_ID = "c4d1e5f2-7a8b-4c9d-8e0f-1a2b3c4d5e6f"

CONFIG = """_format_version: "3.0"
services:
- name: products
  url: http://127.0.0.1:{P}
  routes:
  - name: products
    paths: ["/api/products"]
    strip_path: true
  plugins:
  - name: key-auth
- name: other
  url: http://127.0.0.1:{P}
  routes:
  - name: plain
    paths: ["/plain"]
    plugins:
    - name: key-auth
  - name: hide
    paths: ["/hide"]
    plugins:
    - name: key-auth
      config: {{hide_credentials: true}}
  - name: names
    paths: ["/names"]
    plugins:
    - name: key-auth
      config: {{key_names: ["api_key", "x-token"]}}
  - name: noquery
    paths: ["/noquery"]
    plugins:
    - name: key-auth
      config: {{key_in_query: false}}
  - name: noheader
    paths: ["/noheader"]
    plugins:
    - name: key-auth
      config: {{key_in_header: false}}
  - name: anon
    paths: ["/anon"]
    plugins:
    - name: key-auth
      config: {{anonymous: "{ANON}"}}
  - name: anon-user
    paths: ["/anon-user"]
    plugins:
    - name: key-auth
      config: {{anonymous: "guest"}}
  - name: anon-missing
    paths: ["/anon-missing"]
    plugins:
    - name: key-auth
      config: {{anonymous: "nobody-here"}}
  - name: preflight
    paths: ["/preflight"]
    plugins:
    - name: key-auth
      config: {{run_on_preflight: false}}
  - name: realm
    paths: ["/realm"]
    plugins:
    - name: key-auth
      config: {{realm: "shop"}}
  - name: open
    paths: ["/open"]
consumers:
- username: mobile_app
  keyauth_credentials:
  - key: ${{MOBILE_APP_API_KEY}}
- username: bob
  id: {BOB}
  custom_id: bob-42
  keyauth_credentials:
  - id: {BOBCRED}
    key: bob-key
    ttl: 3600
- username: guest
  id: {ANON}
- custom_id: only-custom
  keyauth_credentials:
  - key: custom-key
"""


@pytest.fixture(scope="module")
def env():
    with running(lambda port: CONFIG.format(P=port, BOB=BOB_ID, BOBCRED=BOB_CRED_ID, ANON=ANON_ID),
                 env={"MOBILE_APP_API_KEY": MOBILE_KEY}) as e:
        yield e


def call(env, path, headers=None, method="GET"):
    st, h, data = env.lm.request(method, path, headers=headers)
    return st, h, data


def upstream_view(data):
    """(path, query, headers lower-cased -> list of values) as the upstream saw them."""
    j = json.loads(data)
    hs = {}
    for k, v in j["headers"]:
        hs.setdefault(k.lower(), []).append(v)
    return j["path"], j["query"], hs


def assert_401(st, h, data, message, www="Key"):
    assert st == 401, (st, data[:300])
    assert json.loads(data)["message"] == message
    assert h.get("www-authenticate") == www
    assert h["content-type"].startswith("application/json")


# ---- the seed scenario -------------------------------------------------------

def test_seed_scenario(env):
    st, h, data = call(env, "/api/products/123")
    assert_401(st, h, data, "No API key found in request")
    assert json.loads(data) == {"message": "No API key found in request"}

    st, h, data = call(env, "/api/products/123", {"apikey": "wrong"})
    assert_401(st, h, data, "Unauthorized")

    st, h, data = call(env, "/api/products/123", {"apikey": MOBILE_KEY})
    assert st == 200, data[:300]
    path, _, hs = upstream_view(data)
    assert path == "/123"
    assert hs["x-consumer-username"] == ["mobile_app"]
    # no ids in the file: the generated, stable ones (as Kong DB-less has ids for every entity)
    _, consumer = env.lm.admin_json("GET", "/consumers/mobile_app")
    _, creds = env.lm.admin_json("GET", "/consumers/mobile_app/key-auth")
    assert hs["x-consumer-id"] == [consumer["id"]]
    assert "x-anonymous-consumer" not in hs
    assert hs.get("x-credential-identifier", [creds["data"][0]["id"]]) == [creds["data"][0]["id"]]
    assert hs["apikey"] == [MOBILE_KEY]  # hide_credentials is false


def test_unauthenticated_requests_never_reach_upstream(env):
    before = len(env.up.requests)
    for hdrs in ({}, {"apikey": "nope"}, {"apikey": ""}):
        st, _, _ = call(env, "/plain/x", hdrs)
        assert st == 401
    assert len(env.up.requests) == before


# ---- where the key is found ----------------------------------------------------

def test_key_in_query(env):
    st, _, data = call(env, f"/plain/q?apikey={MOBILE_KEY}&x=1")
    assert st == 200
    _, query, hs = upstream_view(data)
    assert hs["x-consumer-username"] == ["mobile_app"]
    assert f"apikey={MOBILE_KEY}" in query  # kept: hide_credentials is false


def test_key_in_query_percent_encoded(env):
    st, _, data = call(env, "/plain/q?api%6bey=bob%2Dkey")
    assert st == 200
    assert upstream_view(data)[2]["x-consumer-username"] == ["bob"]


def test_wrong_key_in_query(env):
    assert_401(*call(env, "/plain/q?apikey=123"), "Unauthorized")


def test_empty_key_header_and_bare_query_arg(env):
    assert_401(*call(env, "/plain/x", {"apikey": ""}), "No API key found in request")
    assert_401(*call(env, "/plain/x?apikey"), "No API key found in request")
    assert_401(*call(env, "/plain/x?apikey="), "No API key found in request")


def test_header_name_is_case_insensitive(env):
    st, _, data = call(env, "/plain/x", {"ApiKey": "bob-key"})
    assert st == 200
    assert upstream_view(data)[2]["x-consumer-username"] == ["bob"]


def test_header_wins_over_query(env):
    # the header is looked at first; the query is not consulted then (Kong)
    st, _, data = call(env, "/plain/x?apikey=bob-key", {"apikey": MOBILE_KEY})
    assert st == 200
    assert upstream_view(data)[2]["x-consumer-username"] == ["mobile_app"]
    assert_401(*call(env, f"/plain/x?apikey={MOBILE_KEY}", {"apikey": "wrong"}), "Unauthorized")


def test_duplicate_key_in_query(env):
    assert_401(*call(env, "/plain/x?apikey=bob-key&apikey=bob-key"), "Duplicate API key found")
    assert_401(*call(env, "/plain/x?apikey&apikey=bob-key"), "Duplicate API key found")


def test_duplicate_key_header(env):
    raw = env.lm.raw(b"GET /plain/x HTTP/1.1\r\nHost: t\r\napikey: bob-key\r\napikey: bob-key\r\n"
                     b"Connection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401")
    assert b"\r\nwww-authenticate: key\r\n" in head.lower() + b"\r\n"
    assert json.loads(body)["message"] == "Duplicate API key found"


def test_key_names_underscore_matches_hyphen_header(env):
    for hname in ("api_key", "api-key", "X-Token"):
        st, _, data = call(env, "/names/x", {hname: "bob-key"})
        assert st == 200, (hname, data[:200])
        assert upstream_view(data)[2]["x-consumer-username"] == ["bob"]
    st, _, data = call(env, "/names/x?x-token=bob-key")
    assert st == 200
    # the default name is not looked at when key_names is set
    assert_401(*call(env, "/names/x", {"apikey": "bob-key"}), "No API key found in request")


def test_key_in_query_disabled(env):
    assert_401(*call(env, "/noquery/x?apikey=bob-key"), "No API key found in request")
    assert call(env, "/noquery/x", {"apikey": "bob-key"})[0] == 200


def test_key_in_header_disabled(env):
    assert_401(*call(env, "/noheader/x", {"apikey": "bob-key"}), "No API key found in request")
    assert call(env, "/noheader/x?apikey=bob-key")[0] == 200


# ---- what the upstream sees ------------------------------------------------------

def test_consumer_headers(env):
    st, _, data = call(env, "/plain/x", {"apikey": "bob-key"})
    assert st == 200
    _, _, hs = upstream_view(data)
    assert hs["x-consumer-id"] == [BOB_ID]
    assert hs["x-consumer-username"] == ["bob"]
    assert hs["x-consumer-custom-id"] == ["bob-42"]
    assert hs["x-credential-identifier"] == [BOB_CRED_ID]
    assert "x-anonymous-consumer" not in hs


def test_consumer_with_custom_id_only(env):
    st, _, data = call(env, "/plain/x", {"apikey": "custom-key"})
    assert st == 200
    _, _, hs = upstream_view(data)
    assert hs["x-consumer-custom-id"] == ["only-custom"]
    _, consumer = env.lm.admin_json("GET", "/consumers?size=1000")
    (c,) = [c for c in consumer["data"] if c["custom_id"] == "only-custom"]
    assert "x-consumer-username" not in hs and hs["x-consumer-id"] == [c["id"]]


def test_client_cannot_spoof_consumer_headers(env):
    spoof = {"X-Consumer-Username": "admin", "X-Consumer-ID": "evil", "X-Consumer-Custom-ID": "evil",
             "X-Credential-Identifier": "evil", "X-Anonymous-Consumer": "true", "apikey": MOBILE_KEY}
    st, _, data = call(env, "/plain/x", spoof)
    assert st == 200
    _, _, hs = upstream_view(data)
    assert hs["x-consumer-username"] == ["mobile_app"]
    assert hs["x-consumer-id"] != ["evil"] and len(hs["x-consumer-id"]) == 1
    assert hs.get("x-credential-identifier") != ["evil"]
    for name in ("x-consumer-custom-id", "x-anonymous-consumer"):
        assert name not in hs, name


def test_hide_credentials(env):
    st, _, data = call(env, "/hide/x?a=1&apikey=bob-key&b=2")
    assert st == 200
    _, query, hs = upstream_view(data)
    assert "apikey" not in query and "a=1" in query and "b=2" in query
    assert hs["x-consumer-username"] == ["bob"]

    st, _, data = call(env, "/hide/x", {"apikey": "bob-key", "X-Other": "kept"})
    assert st == 200
    _, _, hs = upstream_view(data)
    assert "apikey" not in hs
    assert hs["x-other"] == ["kept"]


def test_no_plugin_no_auth(env):
    st, _, data = call(env, "/open/x", {"X-Consumer-Username": "whoever"})
    assert st == 200
    assert upstream_view(data)[2]["x-consumer-username"] == ["whoever"]  # nothing authenticates here


# ---- anonymous, preflight, realm ---------------------------------------------------

def test_anonymous_by_id(env):
    st, _, data = call(env, "/anon/x")
    assert st == 200
    _, _, hs = upstream_view(data)
    assert hs["x-anonymous-consumer"] == ["true"]
    assert hs["x-consumer-username"] == ["guest"]
    assert hs["x-consumer-id"] == [ANON_ID]
    assert "x-credential-identifier" not in hs

    # a wrong or duplicate key also falls back to the anonymous consumer
    for path, hdrs in (("/anon/x", {"apikey": "wrong"}), ("/anon/x?apikey=a&apikey=b", {})):
        st, _, data = call(env, path, hdrs)
        assert st == 200
        assert upstream_view(data)[2]["x-anonymous-consumer"] == ["true"]

    # a right key authenticates normally
    st, _, data = call(env, "/anon/x", {"apikey": "bob-key", "X-Anonymous-Consumer": "true"})
    assert st == 200
    _, _, hs = upstream_view(data)
    assert hs["x-consumer-username"] == ["bob"]
    assert "x-anonymous-consumer" not in hs


def test_anonymous_by_username(env):
    st, _, data = call(env, "/anon-user/x", {"apikey": "nope"})
    assert st == 200
    _, _, hs = upstream_view(data)
    assert hs["x-anonymous-consumer"] == ["true"]
    assert hs["x-consumer-id"] == [ANON_ID]


def test_anonymous_consumer_missing_is_500(env):
    st, _, data = call(env, "/anon-missing/x")
    assert st == 500
    assert json.loads(data)["message"] == "An unexpected error occurred"
    assert call(env, "/anon-missing/x", {"apikey": "bob-key"})[0] == 200


def test_run_on_preflight(env):
    st, _, _ = call(env, "/preflight/x", method="OPTIONS")
    assert st == 200
    assert_401(*call(env, "/preflight/x"), "No API key found in request")
    # run_on_preflight defaults to true
    assert_401(*call(env, "/plain/x", method="OPTIONS"), "No API key found in request")


def test_realm(env):
    assert_401(*call(env, "/realm/x"), "No API key found in request", www='Key realm="shop"')
    assert_401(*call(env, "/realm/x", {"apikey": "bad"}), "Unauthorized", www='Key realm="shop"')


# ---- configuration validation ---------------------------------------------------------

def check(doc, env_vars=None):
    return check_config(doc, env=env_vars)


def plugin_doc(config):
    return f"""_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:9
  plugins:
  - name: key-auth
    config: {config}
"""


def test_check_accepts_defaults_and_full_config():
    rc, out = check(plugin_doc("{}"))
    assert rc == 0, out
    rc, out = check(plugin_doc('{key_names: ["apikey", "x_api-key"], hide_credentials: true, anonymous: "x", '
                               'key_in_header: false, key_in_query: true, key_in_body: false, '
                               'run_on_preflight: false, realm: "r"}'))
    assert rc == 0, out


@pytest.mark.parametrize("config,where,message", [
    ('{key_names: ["hello\\\\world"]}', "services[0].plugins[0].config.key_names[0]",
     "bad header name 'hello\\world', allowed characters are A-Z, a-z, 0-9, '_', and '-'"),
    ('{key_names: ["ok", "a b"]}', "services[0].plugins[0].config.key_names[1]", "bad header name 'a b'"),
    ('{key_names: [""]}', "services[0].plugins[0].config.key_names[0]", "length must be at least 1"),
    ("{key_names: apikey}", "services[0].plugins[0].config.key_names", "expected an array"),
    ("{hide_credentials: 1}", "services[0].plugins[0].config.hide_credentials", "expected a boolean"),
    ("{key_in_body: true}", "services[0].plugins[0].config.key_in_body", "not supported"),
    ("{anonymous: 5}", "services[0].plugins[0].config.anonymous", "expected a string"),
    ('{anonymous: ""}', "services[0].plugins[0].config.anonymous", "length must be at least 1"),
    ("{nope: true}", "services[0].plugins[0].config.nope", "unknown field"),
])
def test_check_rejects(config, where, message):
    rc, out = check(plugin_doc(config))
    assert rc == 1, out
    line = [l for l in out.splitlines() if where + ":" in l]
    assert line, out
    assert message in line[0], out


def test_check_env_substitution_of_keys():
    doc = """_format_version: "3.0"
consumers:
- username: mobile_app
  keyauth_credentials:
  - key: ${MOBILE_APP_API_KEY}
"""
    rc, out = check(doc, {"MOBILE_APP_API_KEY": "k"})
    assert rc == 0, out
    e = {k: v for k, v in os.environ.items() if k != "MOBILE_APP_API_KEY"}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        f.write(doc)
    try:
        p = subprocess.run([LIMEN_BIN, "--check", f.name], capture_output=True, text=True, timeout=60, env=e)
    finally:
        os.unlink(f.name)
    assert p.returncode == 1 and "MOBILE_APP_API_KEY" in p.stdout + p.stderr

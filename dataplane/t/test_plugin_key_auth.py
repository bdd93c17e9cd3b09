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
                               'key_in_header: false, key_in_query: true, key_in_body: true, '
                               'run_on_preflight: false, realm: "r"}'))
    assert rc == 0, out


@pytest.mark.parametrize("config,where,message", [
    ('{key_names: ["hello\\\\world"]}', "services[0].plugins[0].config.key_names[0]",
     "bad header name 'hello\\world', allowed characters are A-Z, a-z, 0-9, '_', and '-'"),
    ('{key_names: ["ok", "a b"]}', "services[0].plugins[0].config.key_names[1]", "bad header name 'a b'"),
    ('{key_names: [""]}', "services[0].plugins[0].config.key_names[0]", "length must be at least 1"),
    ("{key_names: apikey}", "services[0].plugins[0].config.key_names", "expected an array"),
    ("{hide_credentials: 1}", "services[0].plugins[0].config.hide_credentials", "expected a boolean"),
    ("{key_in_body: 1}", "services[0].plugins[0].config.key_in_body", "expected a boolean"),
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


# ---- key_in_body (the request body read whole for the plugin) -------------------

import hashlib as _hashlib
import time

from httpraw import RawConn

BODY_CONFIG = """_format_version: "3.0"
services:
- name: body
  url: http://127.0.0.1:{P}
  routes:
  - name: inbody
    paths: ["/inbody"]
    plugins:
    - name: key-auth
      config: {{key_in_body: true}}
  - name: inbody-hide
    paths: ["/inbody-hide"]
    plugins:
    - name: key-auth
      config: {{key_in_body: true, hide_credentials: true}}
  - name: inbody-names
    paths: ["/inbody-names"]
    plugins:
    - name: key-auth
      config: {{key_in_body: true, key_names: ["token", "apikey"]}}
  - name: inbody-limit
    paths: ["/inbody-limit"]
    plugins:
    - name: key-auth
      config: {{key_in_body: true}}
    - name: request-size-limiting
      config: {{allowed_payload_size: 1, size_unit: kilobytes}}
  - name: nobody
    paths: ["/nobody"]
    plugins:
    - name: key-auth
consumers:
- username: bob
  keyauth_credentials:
  - key: bob-key
- username: ann
  keyauth_credentials:
  - key: ann-key
"""

MiB = 1 << 20


@pytest.fixture(scope="module")
def benv():
    with running(lambda port: BODY_CONFIG.format(P=port)) as e:
        yield e


def post(benv, path, body, ctype=None, headers=None):
    hdrs = dict(headers or {})
    if ctype:
        hdrs["Content-Type"] = ctype
    return benv.lm.request("POST", path, headers=hdrs, body=body)


def sha(b):
    return _hashlib.sha256(b).hexdigest()


def seen(data):
    """(consumer username, body length, body sha256, content-length, transfer-encoding) upstream."""
    j = json.loads(data)
    hs = {k.lower(): v for k, v in j["headers"]}
    return hs.get("x-consumer-username"), j["body_len"], j["body_sha256"], hs.get("content-length"), \
        hs.get("transfer-encoding")


FORM = "application/x-www-form-urlencoded"
BOUNDARY = "----limenBoundary7MA4YWxk"
MULTI = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(fields):
    out = b""
    for k, v in fields:
        out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n").encode() + v + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def test_key_in_urlencoded_body(benv):
    body = b"a=1&apikey=bob-key&b=2"
    st, _, data = post(benv, "/inbody/x", body, FORM)
    assert st == 200, data
    user, blen, bsha, cl, te = seen(data)
    assert user == "bob" and blen == len(body) and bsha == sha(body) and cl == str(len(body)) and te is None


def test_key_in_urlencoded_body_decoded(benv):
    st, _, data = post(benv, "/inbody/x", b"api%6Bey=bob%2Dkey", "application/x-www-form-urlencoded; charset=utf-8")
    assert st == 200, data
    assert seen(data)[0] == "bob"


def test_key_in_multipart_body(benv):
    body = multipart([("name", b"x"), ("apikey", b"ann-key"), ("file", b"\x00\x01binary\r\n")])
    st, _, data = post(benv, "/inbody/m", body, MULTI)
    assert st == 200, data
    user, blen, bsha, _, _ = seen(data)
    assert user == "ann" and blen == len(body) and bsha == sha(body)


def test_key_in_json_body(benv):
    body = json.dumps({"x": [1, 2], "apikey": "bob-key"}).encode()
    st, _, data = post(benv, "/inbody/j", body, "application/json")
    assert st == 200, data
    assert seen(data)[0] == "bob"
    # escapes are decoded as cjson does
    st, _, data = post(benv, "/inbody/j", b'{"apikey":"bob\\u002dkey"}', "application/json; charset=utf-8")
    assert st == 200 and seen(data)[0] == "bob"


def test_key_in_body_kong_types(benv):
    # a number, a boolean or null is not a key; an object or an array is a "table": Kong's duplicate answer
    for body in (b'{"apikey": 12}', b'{"apikey": true}', b'{"apikey": null}', b"[1,2]", b"{not json"):
        assert_401(*post(benv, "/inbody/j", body, "application/json"), "No API key found in request")
    for body in (b'{"apikey": {"k": "bob-key"}}', b'{"apikey": ["bob-key"]}'):
        assert_401(*post(benv, "/inbody/j", body, "application/json"), "Duplicate API key found")
    assert_401(*post(benv, "/inbody/f", b"apikey=bob-key&apikey=ann-key", FORM), "Duplicate API key found")
    assert_401(*post(benv, "/inbody/f", b"apikey", FORM), "No API key found in request")
    assert_401(*post(benv, "/inbody/f", b"apikey=", FORM), "No API key found in request")
    assert_401(*post(benv, "/inbody/f", b"apikey=nope", FORM), "Unauthorized")
    # other content types are not parsed (kong.request.get_body: unsupported content type)
    assert_401(*post(benv, "/inbody/t", b"apikey=bob-key", "text/plain"), "No API key found in request")
    assert_401(*post(benv, "/inbody/t", b"apikey=bob-key"), "No API key found in request")


def test_key_in_body_order_of_names(benv):
    # per name: header, query, body; the first name wins even when its key is in the body
    st, _, data = post(benv, "/inbody-names/x", b"token=ann-key", FORM, {"apikey": "bob-key"})
    assert st == 200 and seen(data)[0] == "ann"
    # a bare query argument stops the search for that name (Kong's v = true)
    assert_401(*post(benv, "/inbody/x?apikey", b"apikey=bob-key", FORM), "No API key found in request")


def test_header_preferred_over_body(benv):
    st, _, data = post(benv, "/inbody/x", b"apikey=nope", FORM, {"apikey": "ann-key"})
    assert st == 200 and seen(data)[0] == "ann"
    st, _, data = post(benv, "/inbody/x?apikey=bob-key", b"apikey=nope", FORM)
    assert st == 200 and seen(data)[0] == "bob"


def test_no_key_in_body(benv):
    assert_401(*post(benv, "/inbody/x", b"a=1&b=2", FORM), "No API key found in request")
    assert_401(*post(benv, "/inbody/x", b"", FORM), "No API key found in request")
    assert_401(*call(benv, "/inbody/x"), "No API key found in request")


def test_hide_credentials_removes_body_field(benv):
    cases = [
        (b"a=1&apikey=bob-key&b=2", FORM, b"a=1&b=2"),
        (b"apikey=bob-key&a=1", FORM, b"a=1"),
        (b"a=1&apikey=bob-key", FORM, b"a=1"),
        (b'{"a": 1, "apikey": "bob-key", "b": "x"}', "application/json", b'{"a":1,"b":"x"}'),
        (multipart([("a", b"1"), ("apikey", b"bob-key"), ("b", b"2")]), MULTI,
         multipart([("a", b"1"), ("b", b"2")])),
    ]
    for body, ctype, want in cases:
        st, _, data = post(benv, "/inbody-hide/x", body, ctype)
        assert st == 200, (body, data)
        user, blen, bsha, cl, te = seen(data)
        assert user == "bob" and blen == len(want) and bsha == sha(want) and cl == str(len(want)), (body, want)
    # found in a header: the body field of that name goes too (Kong re-serialises the body)
    st, _, data = post(benv, "/inbody-hide/x", b"apikey=other&z=9", FORM, {"apikey": "bob-key"})
    user, blen, bsha, _, _ = seen(data)
    assert st == 200 and user == "bob" and bsha == sha(b"z=9")
    assert "apikey" not in {k.lower() for k, _ in json.loads(data)["headers"]}


def test_large_body_over_cap(benv):
    big = b"apikey=bob-key&" + b"x" * (MiB + 10)
    # too large to be read for the plugin: no key found in it (Kong: the body went to a file);
    # the answer comes at once, without waiting for the body, and the connection closes
    with RawConn(benv.lm.port) as c:
        c.send(raw_post("/inbody/x", big[:65536], {"Content-Type": FORM, "Content-Length": len(big)}))
        r = c.read_response()
        assert r.status == 401 and json.loads(r.body)["message"] == "No API key found in request"
        assert r.headers.get("connection") == "close"
    # a key elsewhere: the body streams to the upstream unchanged
    st, _, data = post(benv, "/inbody/x", big, FORM, {"apikey": "ann-key"})
    assert st == 200
    user, blen, bsha, cl, _ = seen(data)
    assert user == "ann" and blen == len(big) and bsha == sha(big) and cl == str(len(big))
    # just under the cap is read
    body = b"apikey=bob-key&p=" + b"y" * (MiB - 17)
    assert len(body) == MiB
    st, _, data = post(benv, "/inbody/x", body, FORM)
    assert st == 200 and seen(data)[:3] == ("bob", MiB, sha(body))


def chunked(body, size=1000):
    out = b""
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def raw_post(path, body_bytes, headers):
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode() + body_bytes


def test_chunked_body(benv):
    body = b"z=" + b"q" * 5000 + b"&apikey=bob-key"
    with RawConn(benv.lm.port) as c:
        c.send(raw_post("/inbody/c", chunked(body, 777), {"Content-Type": FORM, "Transfer-Encoding": "chunked"}))
        r = c.read_response()
    assert r.status == 200, r.body
    user, blen, bsha, cl, te = seen(r.body)
    # forwarded from the buffer, de-chunked, with a Content-Length
    assert user == "bob" and blen == len(body) and bsha == sha(body) and cl == str(len(body)) and te is None
    # malformed framing: 400, nothing forwarded
    before = len(benv.up.requests)
    with RawConn(benv.lm.port) as c:
        c.send(raw_post("/inbody/c", b"5\r\napikey\r\nzz\r\n", {"Content-Type": FORM, "Transfer-Encoding": "chunked"}))
        assert c.read_response().status == 400
    assert len(benv.up.requests) == before


def test_chunked_body_over_cap_streams(benv):
    body = b"p=" + b"w" * (MiB + 50000)
    with RawConn(benv.lm.port, timeout=20) as c:
        c.send(raw_post("/inbody/c", chunked(body, 60000),
                        {"Content-Type": FORM, "Transfer-Encoding": "chunked", "apikey": "ann-key"}))
        r = c.read_response()
        assert r.status == 200, r.body
        user, blen, bsha, cl, te = seen(r.body)
        assert user == "ann" and blen == len(body) and bsha == sha(body) and te == "chunked"
        # the connection is still in step
        c.send(b"GET /inbody/again HTTP/1.1\r\nHost: x\r\napikey: bob-key\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and seen(r.body)[0] == "bob"
    with RawConn(benv.lm.port, timeout=20) as c:
        c.send(raw_post("/inbody/c", chunked(b"apikey=bob-key&" + body, 60000),
                        {"Content-Type": FORM, "Transfer-Encoding": "chunked"}))
        r = c.read_response()
        assert r.status == 401 and json.loads(r.body)["message"] == "No API key found in request"


def test_pipelined_after_buffered_body(benv):
    b1 = b"apikey=bob-key&n=1"
    b2 = b'{"apikey": "ann-key"}'
    data = (raw_post("/inbody/1", b1, {"Content-Type": FORM, "Content-Length": len(b1)}) +
            raw_post("/inbody/2", chunked(b2, 5), {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}) +
            raw_post("/inbody/3", b"nokey=1", {"Content-Type": FORM, "Content-Length": 7}) +
            b"GET /nobody/4 HTTP/1.1\r\nHost: x\r\napikey: bob-key\r\n\r\n")
    with RawConn(benv.lm.port) as c:
        c.send(data)
        r1, r2, r3, r4 = (c.read_response() for _ in range(4))
    assert r1.status == 200 and seen(r1.body)[:3] == ("bob", len(b1), sha(b1))
    assert r2.status == 200 and seen(r2.body)[:3] == ("ann", len(b2), sha(b2))
    assert r3.status == 401
    assert r4.status == 200 and json.loads(r4.body)["path"] == "/4"


def test_expect_100_continue(benv):
    body = b"apikey=bob-key"
    with RawConn(benv.lm.port) as c:
        c.send(raw_post("/inbody/e", b"", {"Content-Type": FORM, "Content-Length": len(body),
                                           "Expect": "100-continue"}))
        r = c.read_response()
        assert r.status == 100
        c.send(body)
        r = c.read_response()
        assert r.status == 200 and seen(r.body)[:3] == ("bob", len(body), sha(body))
        # the upstream never sees the Expect header
        assert "expect" not in {k.lower() for k, _ in json.loads(r.body)["headers"]}


def test_body_slowly(benv):
    body = b"apikey=ann-key&x=" + b"s" * 3000
    with RawConn(benv.lm.port) as c:
        c.send(raw_post("/inbody/s", b"", {"Content-Type": FORM, "Content-Length": len(body)}))
        for i in range(0, len(body), 1000):
            c.send(body[i:i + 1000])
            time.sleep(0.02)
        r = c.read_response()
    assert r.status == 200 and seen(r.body)[:3] == ("ann", len(body), sha(body))


def test_request_size_limiting_after_buffering(benv):
    body = b"apikey=bob-key&x=" + b"l" * 2000
    with RawConn(benv.lm.port) as c:
        c.send(raw_post("/inbody-limit/x", chunked(body, 300), {"Content-Type": FORM, "Transfer-Encoding": "chunked"}))
        r = c.read_response()
    assert r.status == 413
    st, _, data = post(benv, "/inbody-limit/x", b"apikey=bob-key", FORM)
    assert st == 200


def test_route_without_body_need_streams(benv):
    # key-auth without key_in_body: the body streams (chunked stays chunked upstream)
    body = b"b" * 40000
    with RawConn(benv.lm.port) as c:
        c.send(raw_post("/nobody/x", chunked(body, 9000), {"Transfer-Encoding": "chunked", "apikey": "bob-key"}))
        r = c.read_response()
    assert r.status == 200
    user, blen, bsha, cl, te = seen(r.body)
    assert user == "bob" and blen == len(body) and te == "chunked" and cl is None

"""Black-box tests of the basic-auth plugin (Authorization and
Proxy-Authorization, Kong's 401s with WWW-Authenticate, hide_credentials,
anonymous, realm) and of several auth plugins together (Kong's logical AND
without anonymous, logical OR with it), plus config validation via --check.

One Limen (1 worker) and one upstream serve the module; stopping Limen at the
end asserts that ASan/UBSan/LSan reported nothing."""
import base64
import json

import pytest

from conftest import check_config, running

ALADDIN_ID = "0b7a3c1e-5d2f-4e6a-9b8c-7d6e5f4a3b21"
ALADDIN_CRED = "9f8e7d6c-5b4a-4392-8170-6e5d4c3b2a19"
MICKEY_ID = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
ANON_ID = "6f5e4d3c-2b1a-4098-8765-43210fedcba9"

CONFIG = """_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{P}
  routes:
  - name: basic
    paths: ["/basic"]
    plugins:
    - name: basic-auth
  - name: hide
    paths: ["/hide"]
    plugins:
    - name: basic-auth
      config: {{hide_credentials: true}}
  - name: realm
    paths: ["/realm"]
    plugins:
    - name: basic-auth
      config: {{realm: "shop"}}
  - name: anon
    paths: ["/anon"]
    plugins:
    - name: basic-auth
      config: {{anonymous: "{ANON}"}}
  - name: anon-missing
    paths: ["/anon-missing"]
    plugins:
    - name: basic-auth
      config: {{anonymous: "ghost"}}
  - name: and
    paths: ["/and"]
    plugins:
    - name: basic-auth
    - name: key-auth
  - name: or
    paths: ["/or"]
    plugins:
    - name: basic-auth
      config: {{anonymous: "{ANON}"}}
    - name: key-auth
      config: {{anonymous: "{ANON}"}}
consumers:
- username: Aladdin
  id: {ALADDIN}
  basicauth_credentials:
  - id: {ALADDIN_CRED}
    username: Aladdin
    password: OpenSesame
- username: Mickey
  id: {MICKEY}
  keyauth_credentials:
  - key: Mouse
  basicauth_credentials:
  - username: mickey
    password: "p:a ss:wörd"
- username: Anonymous
  id: {ANON}
basicauth_credentials:
- consumer: Anonymous
  username: top-level
  password: top-secret
"""


@pytest.fixture(scope="module")
def env():
    with running(lambda port: CONFIG.format(P=port, ALADDIN=ALADDIN_ID, ALADDIN_CRED=ALADDIN_CRED, MICKEY=MICKEY_ID, ANON=ANON_ID)) as e:
        yield e


def basic(user, pw, scheme="Basic"):
    return f"{scheme} " + base64.b64encode(f"{user}:{pw}".encode()).decode()


def call(env, path, headers=None, method="GET"):
    return env.lm.request(method, path, headers=headers)


def upstream_headers(data):
    hs = {}
    for k, v in json.loads(data)["headers"]:
        hs.setdefault(k.lower(), []).append(v)
    return hs


def assert_401(resp, www='Basic realm="service"'):
    st, h, data = resp
    assert st == 401, (st, data[:300])
    assert json.loads(data)["message"] == "Unauthorized"
    assert h.get("www-authenticate") == www


def ok_as(resp, username):
    st, _, data = resp
    assert st == 200, (st, data[:300])
    hs = upstream_headers(data)
    assert hs["x-consumer-username"] == [username]
    return hs


# ---- basic-auth alone ------------------------------------------------------------

def test_missing_credentials(env):
    assert_401(call(env, "/basic/x"))


def test_valid_credentials(env):
    hs = ok_as(call(env, "/basic/x", {"Authorization": basic("Aladdin", "OpenSesame")}), "Aladdin")
    assert hs["x-consumer-id"] == [ALADDIN_ID]
    assert hs["x-credential-identifier"] == [ALADDIN_CRED]
    assert "x-anonymous-consumer" not in hs
    assert hs["authorization"] == [basic("Aladdin", "OpenSesame")]  # not hidden by default


def test_wrong_password_and_unknown_user(env):
    assert_401(call(env, "/basic/x", {"Authorization": basic("Aladdin", "opensesame")}))
    assert_401(call(env, "/basic/x", {"Authorization": basic("Aladdin", "OpenSesame ")}))
    assert_401(call(env, "/basic/x", {"Authorization": basic("Jafar", "OpenSesame")}))
    # the password is checked against the user's own credential only
    assert_401(call(env, "/basic/x", {"Authorization": basic("mickey", "OpenSesame")}))


def test_malformed_headers(env):
    for value in ("Basic", "Basic ", "Basic !!!!", "Bearer abc", "Basic " + base64.b64encode(b"nocolon").decode(),
                  "Basic " + base64.b64encode(b":OpenSesame").decode()):
        assert_401(call(env, "/basic/x", {"Authorization": value}))


def test_scheme_and_encoding_variants(env):
    # "[Bb]asic", whitespace, padding left out (nginx's decoder accepts it)
    ok_as(call(env, "/basic/x", {"Authorization": basic("Aladdin", "OpenSesame", "basic")}), "Aladdin")
    token = base64.b64encode(b"Aladdin:OpenSesame").decode()
    ok_as(call(env, "/basic/x", {"Authorization": "Basic    " + token}), "Aladdin")
    # nginx's decoder stops at the first '=' (what follows is ignored)
    ok_as(call(env, "/basic/x", {"Authorization": "Basic QWxhZGRpbjpPcGVuU2VzYW1l=x"}), "Aladdin")
    padded = base64.b64encode("mickey:p:a ss:wörd".encode()).decode()
    assert padded.endswith("=")
    ok_as(call(env, "/basic/x", {"Authorization": "Basic " + padded.rstrip("=")}), "Mickey")
    # a password with colons, spaces and UTF-8
    ok_as(call(env, "/basic/x", {"Authorization": basic("mickey", "p:a ss:wörd")}), "Mickey")


def test_top_level_credential(env):
    ok_as(call(env, "/basic/x", {"Authorization": basic("top-level", "top-secret")}), "Anonymous")
    assert_401(call(env, "/basic/x", {"Authorization": basic("top-level", "")}))


def test_proxy_authorization(env):
    ok_as(call(env, "/basic/x", {"Proxy-Authorization": basic("Aladdin", "OpenSesame")}), "Aladdin")
    # Proxy-Authorization is tried first; Authorization when it names no known user
    ok_as(call(env, "/basic/x", {"Proxy-Authorization": basic("Jafar", "x"),
                                 "Authorization": basic("Aladdin", "OpenSesame")}), "Aladdin")
    ok_as(call(env, "/basic/x", {"Proxy-Authorization": basic("mickey", "p:a ss:wörd"),
                                 "Authorization": basic("Aladdin", "OpenSesame")}), "Mickey")
    # a known user with a wrong password in Proxy-Authorization fails
    assert_401(call(env, "/basic/x", {"Proxy-Authorization": basic("Aladdin", "bad"),
                                      "Authorization": basic("Aladdin", "OpenSesame")}))


def test_unauthenticated_never_reach_upstream(env):
    before = len(env.up.requests)
    for h in ({}, {"Authorization": basic("Aladdin", "x")}, {"Authorization": "garbage"}):
        assert call(env, "/basic/x", h)[0] == 401
    assert len(env.up.requests) == before


def test_hide_credentials(env):
    hs = ok_as(call(env, "/hide/x", {"Authorization": basic("Aladdin", "OpenSesame"), "X-Other": "1"}), "Aladdin")
    assert "authorization" not in hs and hs["x-other"] == ["1"]
    hs = ok_as(call(env, "/hide/x", {"Proxy-Authorization": basic("Aladdin", "OpenSesame")}), "Aladdin")
    assert "proxy-authorization" not in hs


def test_realm(env):
    assert_401(call(env, "/realm/x"), www='Basic realm="shop"')
    assert_401(call(env, "/realm/x", {"Authorization": basic("Aladdin", "no")}), www='Basic realm="shop"')


def test_anonymous(env):
    st, _, data = call(env, "/anon/x", {"Authorization": basic("Aladdin", "wrong")})
    assert st == 200
    hs = upstream_headers(data)
    assert hs["x-anonymous-consumer"] == ["true"]
    assert hs["x-consumer-id"] == [ANON_ID]
    assert hs["x-consumer-username"] == ["Anonymous"]
    hs = ok_as(call(env, "/anon/x", {"Authorization": basic("Aladdin", "OpenSesame")}), "Aladdin")
    assert "x-anonymous-consumer" not in hs


def test_anonymous_missing_consumer_is_500(env):
    st, _, data = call(env, "/anon-missing/x")
    assert st == 500
    assert json.loads(data)["message"] == "An unexpected error occurred"


# ---- several auth plugins: Kong's logical AND / OR ---------------------------------------

def test_logical_and(env):
    both = {"apikey": "Mouse", "Authorization": basic("Aladdin", "OpenSesame")}
    st, _, data = call(env, "/and/x", both)
    assert st == 200
    hs = upstream_headers(data)
    assert "x-anonymous-consumer" not in hs
    # key-auth (priority 1250) runs before basic-auth (1100): the last one sets the consumer
    assert hs["x-consumer-id"] == [ALADDIN_ID]
    assert call(env, "/and/x", {"apikey": "Mouse"})[0] == 401
    assert call(env, "/and/x", {"Authorization": basic("Aladdin", "OpenSesame")})[0] == 401
    assert call(env, "/and/x")[0] == 401


def test_logical_or(env):
    st, _, data = call(env, "/or/x", {"apikey": "Mouse", "Authorization": basic("Aladdin", "OpenSesame")})
    assert st == 200
    hs = upstream_headers(data)
    assert "x-anonymous-consumer" not in hs
    assert hs["x-consumer-id"] == [MICKEY_ID]  # key-auth authenticated first; basic-auth skipped

    hs = ok_as(call(env, "/or/x", {"apikey": "Mouse"}), "Mickey")
    assert "x-anonymous-consumer" not in hs
    hs = ok_as(call(env, "/or/x", {"Authorization": basic("Aladdin", "OpenSesame")}), "Aladdin")
    assert "x-anonymous-consumer" not in hs

    st, _, data = call(env, "/or/x")
    assert st == 200
    hs = upstream_headers(data)
    assert hs["x-anonymous-consumer"] == ["true"]
    assert hs["x-consumer-id"] == [ANON_ID]


# ---- configuration validation -----------------------------------------------------------

def check(doc):
    return check_config(doc)


def plugin_doc(config):
    return f"""_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:9
  plugins:
  - name: basic-auth
    config: {config}
"""


def test_check_accepts():
    assert check(plugin_doc("{}"))[0] == 0
    rc, out = check(plugin_doc('{anonymous: "a", hide_credentials: true, realm: "x y"}'))
    assert rc == 0, out


@pytest.mark.parametrize("config,where,message", [
    ("{hide_credentials: yes please}", "services[0].plugins[0].config.hide_credentials", "expected a boolean"),
    ("{realm: 3}", "services[0].plugins[0].config.realm", "expected a string"),
    ('{realm: "a\\r\\nX-Evil: 1"}', "services[0].plugins[0].config.realm", "control characters"),
    ('{anonymous: ""}', "services[0].plugins[0].config.anonymous", "length must be at least 1"),
    ("{key_names: [a]}", "services[0].plugins[0].config.key_names", "unknown field"),
])
def test_check_rejects(config, where, message):
    rc, out = check(plugin_doc(config))
    assert rc == 1, out
    line = [l for l in out.splitlines() if where + ":" in l]
    assert line and message in line[0], out


def test_check_credential_fields():
    rc, out = check("""_format_version: "3.0"
consumers:
- username: u
  basicauth_credentials:
  - username: u
""")
    assert rc == 1 and "password" in out and "required field missing" in out, out
    rc, out = check("""_format_version: "3.0"
consumers:
- username: u
  basicauth_credentials:
  - username: u
    password: ""
""")
    assert rc == 1 and "consumers[0].basicauth_credentials[0].password" in out, out


# ---- a new configuration replaces the credentials -------------------------------------------

RELOAD = """_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{P}
  routes:
  - name: r
    paths: ["/r"]
  plugins:
  - name: basic-auth
consumers:
- username: u
  basicauth_credentials:
  - username: u
    password: {PW}
"""


def test_posted_config_replaces_passwords(limen_factory, upstream):
    lm = limen_factory(RELOAD.format(P=upstream.port, PW="first"), workers=1).start()
    ok_as(lm.request("GET", "/r", headers={"Authorization": basic("u", "first")}), "u")
    st, body = lm.admin_json("POST", "/config", RELOAD.format(P=upstream.port, PW="second"))
    assert st in (200, 201), body
    assert lm.request("GET", "/r", headers={"Authorization": basic("u", "first")})[0] == 401
    ok_as(lm.request("GET", "/r", headers={"Authorization": basic("u", "second")}), "u")
    # an invalid plugin config is refused with its path, and the old config stays
    st, body = lm.admin_json("POST", "/config", RELOAD.format(P=upstream.port, PW="third").replace(
        "- name: basic-auth", "- name: basic-auth\n    config: {realm: 1}"))
    assert st == 400, body
    assert "realm" in json.dumps(body)
    ok_as(lm.request("GET", "/r", headers={"Authorization": basic("u", "second")}), "u")
    assert lm.stop() == 0

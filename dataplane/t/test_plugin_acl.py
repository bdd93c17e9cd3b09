"""Black-box tests of the acl plugin: allow and deny lists over the
authenticated consumer's groups, Kong's 401/403 messages, X-Consumer-Groups
on the upstream request, the anonymous consumer's groups, and config
validation via --check (Kong's only_one_of / at_least_one_of wording).

One Limen (1 worker) and one upstream serve the module; stopping Limen at the
end asserts that ASan/UBSan/LSan reported nothing."""
import json

import pytest

from conftest import check_config, running

CONFIG = """_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{P}
  routes:
  - name: allow
    paths: ["/allow"]
    plugins:
    - name: key-auth
    - name: acl
      config: {{allow: ["gold", "silver"]}}
  - name: deny
    paths: ["/deny"]
    plugins:
    - name: key-auth
    - name: acl
      config: {{deny: ["banned"]}}
  - name: hide
    paths: ["/hide"]
    plugins:
    - name: key-auth
    - name: acl
      config: {{allow: ["gold"], hide_groups_header: true}}
  - name: noauth
    paths: ["/noauth"]
    plugins:
    - name: acl
      config: {{allow: ["gold"]}}
  - name: anon
    paths: ["/anon"]
    plugins:
    - name: key-auth
      config: {{anonymous: guest}}
    - name: acl
      config: {{allow: ["gold", "public"]}}
  - name: anon-nogroups
    paths: ["/anon-nogroups"]
    plugins:
    - name: key-auth
      config: {{anonymous: nobody}}
    - name: acl
      config: {{allow: ["gold"]}}
  - name: authgroups
    paths: ["/authgroups"]
    plugins:
    - name: key-auth
    - name: acl
      config: {{allow: ["gold"], always_use_authenticated_groups: true}}
consumers:
- username: alice
  keyauth_credentials: [{{key: alice-key}}]
  acls: [{{group: gold}}, {{group: beta}}]
- username: sam
  keyauth_credentials: [{{key: sam-key}}]
  acls: [{{group: silver}}]
- username: mallory
  keyauth_credentials: [{{key: mallory-key}}]
- username: eve
  keyauth_credentials: [{{key: eve-key}}]
- username: guest
- username: nobody
acls:
- consumer: eve
  group: banned
- consumer: eve
  group: gold
- consumer: guest
  group: public
"""


@pytest.fixture(scope="module")
def env():
    with running(lambda port: CONFIG.format(P=port)) as e:
        yield e


def call(env, path, key=None, extra=None):
    h = dict(extra or {})
    if key:
        h["apikey"] = key
    return env.lm.request("GET", path, headers=h)


def upstream_headers(data):
    hs = {}
    for k, v in json.loads(data)["headers"]:
        hs.setdefault(k.lower(), []).append(v)
    return hs


def allowed(resp):
    st, _, data = resp
    assert st == 200, (st, data[:300])
    return upstream_headers(data)


def refused(resp, status, message):
    st, h, data = resp
    assert st == status, (st, data[:300])
    assert json.loads(data)["message"] == message
    assert "www-authenticate" not in h


FORBIDDEN = "You cannot consume this service"


def test_allow_list(env):
    hs = allowed(call(env, "/allow/x", "alice-key"))
    assert hs["x-consumer-groups"] == ["gold, beta"]  # the consumer's groups, document order
    assert hs["x-consumer-username"] == ["alice"]
    assert allowed(call(env, "/allow/x", "sam-key"))["x-consumer-groups"] == ["silver"]
    refused(call(env, "/allow/x", "mallory-key"), 403, FORBIDDEN)  # no groups


def test_deny_list(env):
    refused(call(env, "/deny/x", "eve-key"), 403, FORBIDDEN)  # in "banned" (also in "gold": deny wins)
    assert allowed(call(env, "/deny/x", "alice-key"))["x-consumer-groups"] == ["gold, beta"]
    # a consumer without groups passes a deny list; no X-Consumer-Groups (not even the client's)
    hs = allowed(call(env, "/deny/x", "mallory-key", {"X-Consumer-Groups": "admin"}))
    assert "x-consumer-groups" not in hs


def test_client_cannot_spoof_groups_header(env):
    hs = allowed(call(env, "/allow/x", "sam-key", {"X-Consumer-Groups": "gold"}))
    assert hs["x-consumer-groups"] == ["silver"]


def test_hide_groups_header(env):
    hs = allowed(call(env, "/hide/x", "alice-key"))
    assert "x-consumer-groups" not in hs
    refused(call(env, "/hide/x", "sam-key"), 403, FORBIDDEN)


def test_no_consumer_is_401(env):
    refused(call(env, "/noauth/x"), 401, "Unauthorized")
    # the auth plugin answers first when there is one
    st, h, data = call(env, "/allow/x")
    assert st == 401 and json.loads(data)["message"] == "No API key found in request"


def test_refused_requests_never_reach_upstream(env):
    before = len(env.up.requests)
    for path, key in (("/allow/x", "mallory-key"), ("/deny/x", "eve-key"), ("/noauth/x", None)):
        assert call(env, path, key)[0] in (401, 403)
    assert len(env.up.requests) == before


def test_anonymous_consumer_groups(env):
    hs = allowed(call(env, "/anon/x"))
    assert hs["x-anonymous-consumer"] == ["true"]
    assert hs["x-consumer-groups"] == ["public"]
    assert allowed(call(env, "/anon/x", "alice-key"))["x-consumer-groups"] == ["gold, beta"]
    refused(call(env, "/anon-nogroups/x"), 403, FORBIDDEN)


def test_always_use_authenticated_groups_without_authenticated_groups(env):
    # no Limen plugin sets "authenticated groups": the consumer's groups are used
    assert allowed(call(env, "/authgroups/x", "alice-key"))["x-consumer-groups"] == ["gold, beta"]
    refused(call(env, "/authgroups/x", "sam-key"), 403, FORBIDDEN)


# ---- configuration validation ------------------------------------------------------------

def check(doc):
    return check_config(doc)


def plugin_doc(config):
    return f"""_format_version: "3.0"
plugins:
- name: acl
  config: {config}
"""


ONLY_ONE = "only one of these fields must be non-empty: 'config.allow', 'config.deny'"
AT_LEAST_ONE = "at least one of these fields must be non-empty: 'config.allow', 'config.deny'"


def test_check_accepts():
    for config in ('{allow: ["a"]}', '{deny: ["a", "b"], hide_groups_header: true}',
                   '{allow: ["a"], deny: []}', '{allow: ["a"], always_use_authenticated_groups: true, '
                                               'include_consumer_groups: false}'):
        rc, out = check(plugin_doc(config))
        assert rc == 0, (config, out)


def test_check_both_lists():
    rc, out = check(plugin_doc('{allow: ["a"], deny: ["b"]}'))
    assert rc == 1
    assert f"plugins[0].config: {ONLY_ONE}" in out, out
    assert AT_LEAST_ONE not in out


@pytest.mark.parametrize("config", ["{}", "{allow: [], deny: []}", "{allow: []}", "{hide_groups_header: true}"])
def test_check_no_list(config):
    rc, out = check(plugin_doc(config))
    assert rc == 1
    assert f"plugins[0].config: {ONLY_ONE}" in out, out
    assert f"plugins[0].config: {AT_LEAST_ONE}" in out, out


@pytest.mark.parametrize("config,where,message", [
    ('{allow: ["ok", ""]}', "plugins[0].config.allow[1]", "length must be at least 1"),
    ("{allow: gold}", "plugins[0].config.allow", "expected an array"),
    ("{allow: [1]}", "plugins[0].config.allow[0]", "expected a string"),
    ('{allow: ["a"], include_consumer_groups: true}', "plugins[0].config.include_consumer_groups",
     "not supported"),
    ('{allow: ["a"], whitelist: ["b"]}', "plugins[0].config.whitelist", "unknown field"),
])
def test_check_rejects(config, where, message):
    rc, out = check(plugin_doc(config))
    assert rc == 1, out
    line = [l for l in out.splitlines() if where + ":" in l]
    assert line and message in line[0], out


def test_check_duplicate_group():
    rc, out = check("""_format_version: "3.0"
consumers:
- username: u
  acls: [{group: g}, {group: g}]
""")
    assert rc == 1 and "uniqueness violation" in out, out

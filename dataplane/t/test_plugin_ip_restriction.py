"""Black-box tests of the ip-restriction plugin: allow and deny lists of
IPv4/IPv6 addresses and CIDRs, deny before allow, Kong's default message
("IP address not allowed: <ip>") and custom status/message, the client
address taken from X-Forwarded-For only behind --trusted-ips, and config
validation through --check.

Limen instances run with 1 worker; stopping each asserts that
ASan/UBSan/LSan reported nothing."""
import json

import pytest

from conftest import check_config, running

CONFIG = """_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{P}
  routes:
  - {{name: deny-local, paths: ["/deny-local"], plugins: [{{name: ip-restriction, config: {{deny: ["127.0.0.1", "127.0.0.2"]}}}}]}}
  - {{name: deny-other, paths: ["/deny-other"], plugins: [{{name: ip-restriction, config: {{deny: ["127.0.0.2"]}}}}]}}
  - {{name: allow-other, paths: ["/allow-other"], plugins: [{{name: ip-restriction, config: {{allow: ["127.0.0.2"]}}}}]}}
  - {{name: allow-local, paths: ["/allow-local"], plugins: [{{name: ip-restriction, config: {{allow: ["127.0.0.1"]}}}}]}}
  - {{name: deny-cidr, paths: ["/deny-cidr"], plugins: [{{name: ip-restriction, config: {{deny: ["127.0.0.0/24"]}}}}]}}
  - {{name: allow-all, paths: ["/allow-all"], plugins: [{{name: ip-restriction, config: {{allow: ["0.0.0.0/0"]}}}}]}}
  - {{name: both-same, paths: ["/both-same"], plugins: [{{name: ip-restriction, config: {{allow: ["127.0.0.1"], deny: ["127.0.0.1"]}}}}]}}
  - {{name: ip-in-range, paths: ["/ip-in-range"], plugins: [{{name: ip-restriction, config: {{allow: ["127.0.0.0/24"], deny: ["127.0.0.1"]}}}}]}}
  - {{name: custom, paths: ["/custom"], plugins: [{{name: ip-restriction, config: {{deny: ["127.0.0.0/8"], status: 401, message: "Forbidden"}}}}]}}
  - {{name: v6-only, paths: ["/v6-only"], plugins: [{{name: ip-restriction, config: {{allow: ["::1", "2001:db8::/32"]}}}}]}}
  - {{name: v6-deny, paths: ["/v6-deny"], plugins: [{{name: ip-restriction, config: {{deny: ["::/0", "10.0.0.0/8"]}}}}]}}
  - {{name: open, paths: ["/open"]}}
"""

TRUSTED_CONFIG = """_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{P}
  routes:
  - name: r
    paths: ["/"]
plugins:
- name: ip-restriction
  config: {{deny: ["10.0.0.5", "2001:db8::/32"]}}
"""


@pytest.fixture(scope="module")
def env():
    with running(lambda port: CONFIG.format(P=port)) as e:
        yield e


def denied(st, h, data, message, status=403):
    assert st == status, (st, data[:300])
    assert h["content-type"].startswith("application/json")
    assert json.loads(data)["message"] == message
    return True


def test_deny_blocks_with_kongs_default_message(env):
    n = len(env.up.requests)
    st, h, data = env.lm.request("GET", "/deny-local")
    assert denied(st, h, data, "IP address not allowed: 127.0.0.1")
    assert len(env.up.requests) == n  # never proxied


def test_deny_lets_others_through(env):
    st, _, data = env.lm.request("GET", "/deny-other")
    assert st == 200
    assert json.loads(data)["upstream"] == "up"


def test_allow(env):
    assert denied(*env.lm.request("GET", "/allow-other"), "IP address not allowed: 127.0.0.1")
    assert env.lm.request("GET", "/allow-local")[0] == 200
    assert env.lm.request("GET", "/allow-all")[0] == 200


def test_cidr_and_precedence(env):
    assert denied(*env.lm.request("GET", "/deny-cidr"), "IP address not allowed: 127.0.0.1")
    # deny wins over allow, for the same address and for an address inside an allowed range
    assert denied(*env.lm.request("GET", "/both-same"), "IP address not allowed: 127.0.0.1")
    assert denied(*env.lm.request("GET", "/ip-in-range"), "IP address not allowed: 127.0.0.1")


def test_custom_status_and_message(env):
    assert denied(*env.lm.request("GET", "/custom"), "Forbidden", status=401)


def test_ipv6_lists_and_ipv4_client(env):
    assert denied(*env.lm.request("GET", "/v6-only"), "IP address not allowed: 127.0.0.1")
    assert env.lm.request("GET", "/v6-deny")[0] == 200


def test_forwarded_headers_ignored_without_trusted_ips(env):
    # a client cannot claim another address: X-Forwarded-For / X-Real-IP count only from trusted proxies
    assert denied(*env.lm.request("GET", "/deny-local", headers={"X-Forwarded-For": "8.8.8.8",
                                                                  "X-Real-IP": "8.8.8.8"}),
                  "IP address not allowed: 127.0.0.1")
    assert env.lm.request("GET", "/deny-other", headers={"X-Forwarded-For": "127.0.0.2"})[0] == 200


def test_other_routes_unaffected(env):
    assert env.lm.request("GET", "/open")[0] == 200


def test_trusted_proxy_forwarded_for(upstream, limen_factory):
    lm = limen_factory(TRUSTED_CONFIG.format(P=upstream.port), workers=1,
                       extra_args=["--trusted-ips", "127.0.0.1/32", "--real-ip-header", "X-Forwarded-For"]).start()
    st, h, data = lm.request("GET", "/x", headers={"X-Forwarded-For": "10.0.0.5"})
    assert denied(st, h, data, "IP address not allowed: 10.0.0.5")
    # the last address of the list is the one the trusted proxy saw
    st, h, data = lm.request("GET", "/x", headers={"X-Forwarded-For": "1.2.3.4, 10.0.0.5"})
    assert denied(st, h, data, "IP address not allowed: 10.0.0.5")
    assert lm.request("GET", "/x", headers={"X-Forwarded-For": "10.0.0.5, 10.0.0.6"})[0] == 200
    assert lm.request("GET", "/x", headers={"X-Forwarded-For": "10.0.0.6"})[0] == 200
    st, h, data = lm.request("GET", "/x", headers={"X-Forwarded-For": "2001:db8::7"})
    assert denied(st, h, data, "IP address not allowed: 2001:db8::7")
    assert lm.request("GET", "/x")[0] == 200  # no header: the peer (127.0.0.1) itself


def check(config_text):
    return check_config(config_text)


def test_config_errors():
    rc, out = check("""_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:1
  routes:
  - name: r
    paths: ["/"]
    plugins:
    - name: ip-restriction
      config: {allow: ["127.0.0.1", "hello", "0.0.0.0/33", "::1/129", "1.2.3.4/-1"]}
  - name: r2
    paths: ["/2"]
    plugins:
    - name: ip-restriction
      config: {deny: 12}
  - name: r3
    paths: ["/3"]
    plugins:
    - name: ip-restriction
      config: {allow: [], deny: [], status: "x"}
plugins:
- name: ip-restriction
""")
    assert rc == 1, out
    assert "services[0].routes[0].plugins[0].config.allow[1]: invalid ip or cidr range: 'hello'" in out
    assert "services[0].routes[0].plugins[0].config.allow[2]: invalid ip or cidr range: '0.0.0.0/33'" in out
    assert "services[0].routes[0].plugins[0].config.allow[3]: invalid ip or cidr range: '::1/129'" in out
    assert "services[0].routes[0].plugins[0].config.allow[4]: invalid ip or cidr range: '1.2.3.4/-1'" in out
    assert "plugins[0].config: at least one of these fields must be non-empty: 'config.allow', 'config.deny'" in out
    assert "services[0].routes[1].plugins[0].config.deny: expected an array" in out
    assert "services[0].routes[2].plugins[0].config.status: expected a number" in out


def test_config_valid():
    rc, out = check("""_format_version: "3.0"
plugins:
- name: ip-restriction
  config: {allow: ["10.0.0.0/8", "::/0", "::1/128", "192.168.0.1"], deny: ["10.1.2.3"], status: 404, message: "no"}
""")
    assert rc == 0, out

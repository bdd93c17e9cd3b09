"""Black-box tests of the response-transformer plugin (response headers):
Kong's order remove, rename, replace, add, append on the upstream's head and
on a response another plugin made, JSON lists accepted (the body passes
unchanged), and config validation."""
import json

import pytest

from conftest import check_config, running

CONFIG = r"""_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{P}
  routes:
  - name: r
    paths: ["/"]
    plugins:
    - name: response-transformer
      config:
        remove: {{headers: ["X-Up"]}}
        rename: {{headers: ["Content-Type:X-Was-Type"]}}
        replace: {{headers: ["X-Was-Type:text/replaced", "X-Absent:never"]}}
        add: {{headers: ["X-Added:one", "X-Was-Type:not-added"], json: ["a:b"]}}
        append: {{headers: ["X-Added:two", "X-New: three"]}}
  - name: term
    paths: ["/term"]
    plugins:
    - {{name: request-termination, config: {{status_code: 403, message: no}}}}
    - {{name: response-transformer, config: {{add: {{headers: ["X-On-Exit:yes"]}}}}}}
"""


@pytest.fixture(scope="module")
def env():
    with running(lambda port: CONFIG.format(P=port)) as e:
        yield e


def all_headers(env, path):
    c = env.lm.conn()
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    hs = r.getheaders()
    c.close()
    return r.status, hs, body


def test_order_of_operations(env):
    st, hs, body = all_headers(env, "/x")
    assert st == 200
    names = [k.lower() for k, _ in hs]
    assert "x-up" not in names
    assert "content-type" not in names
    assert [v for k, v in hs if k.lower() == "x-was-type"] == ["text/replaced"]
    assert "x-absent" not in names
    assert [v for k, v in hs if k.lower() == "x-added"] == ["one", "two"]
    assert [v for k, v in hs if k.lower() == "x-new"] == ["three"]
    assert json.loads(body)["path"] == "/x"  # body untouched


def test_on_plugin_response(env):
    st, hs, _ = all_headers(env, "/term")
    assert st == 403
    assert ("X-On-Exit", "yes") in hs


def test_config_errors():
    rc, out = check_config("""_format_version: "3.0"
plugins:
- {name: response-transformer, config: {add: {headers: ["novalue"]}}}
""")
    assert rc != 0 and "invalid value: novalue" in out
    rc, out = check_config("""_format_version: "3.0"
plugins:
- {name: response-transformer, config: {add: {json_types: ["date"]}}}
""")
    assert rc != 0 and "expected one of" in out

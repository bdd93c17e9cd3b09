"""Black-box tests of the redirect plugin (Kong 3.9): status_code (301 by
default), Location as configured, keep_incoming_path (the request's path and
query replace the location's, its fragment stays), the upstream never
reached, and config validation."""
import pytest

from conftest import check_config, running

CONFIG = r"""_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{P}
  routes:
  - {{name: plain, paths: ["/plain"], plugins: [{{name: redirect, config: {{location: "https://example.test/new?x=1"}}}}]}}
  - name: keep
    paths: ["/keep"]
    plugins:
    - {{name: redirect, config: {{location: "https://example.test:8443/ignored?y=2#frag", keep_incoming_path: true, status_code: 308}}}}
"""


@pytest.fixture(scope="module")
def env():
    with running(lambda port: CONFIG.format(P=port)) as e:
        yield e


def test_default_301(env):
    st, h, body = env.lm.request("GET", "/plain/a?b=c")
    assert st == 301
    assert h["location"] == "https://example.test/new?x=1"
    assert body == b"redirecting"
    assert env.up.requests == []


def test_keep_incoming_path(env):
    st, h, _ = env.lm.request("POST", "/keep/a/./b?q=1&r", body=b"x")
    assert st == 308
    assert h["location"] == "https://example.test:8443/keep/a/b?q=1&r#frag"
    st, h, _ = env.lm.request("GET", "/keep")
    assert h["location"] == "https://example.test:8443/keep#frag"


def test_config_errors():
    rc, out = check_config("""_format_version: "3.0"
plugins:
- {name: redirect, config: {}}
""")
    assert rc != 0 and "location" in out and "required field missing" in out
    rc, out = check_config("""_format_version: "3.0"
plugins:
- {name: redirect, config: {location: "https://a.test", status_code: 600}}
""")
    assert rc != 0 and "between 100 and 599" in out
    rc, out = check_config("""_format_version: "3.0"
plugins:
- {name: redirect, config: {location: "not a url"}}
""")
    assert rc != 0 and "missing host in url" in out

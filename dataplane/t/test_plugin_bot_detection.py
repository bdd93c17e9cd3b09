"""Black-box tests of the bot-detection plugin: the built-in list of
well-known bots (curl, Wget and python-requests are not on it), allow and
deny regexes (allow wins), Kong's 403 {"message":"Forbidden"} and 400 for
several User-Agent headers, and config validation through --check.

One Limen (1 worker) and one upstream serve the module; stopping Limen at the
end asserts that ASan/UBSan/LSan reported nothing."""
import json
import subprocess

import pytest

from conftest import check_config, running

CONFIG = """_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{P}
  routes:
  - {{name: bots, paths: ["/bots"], plugins: [{{name: bot-detection}}]}}
  - {{name: allow, paths: ["/allow"], plugins: [{{name: bot-detection, config: {{allow: ["bingbot", "^Googlebot/2"]}}}}]}}
  - {{name: deny, paths: ["/deny"], plugins: [{{name: bot-detection, config: {{deny: ["^curl/", "(?i)firefox"]}}}}]}}
  - {{name: both, paths: ["/both"], plugins: [{{name: bot-detection, config: {{allow: ["curl/8"], deny: ["curl"]}}}}]}}
  - {{name: open, paths: ["/open"]}}
"""

BOTS = [
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Twitterbot/1.0",
    "Python-urllib/3.11",
    "Apache-HttpClient/4.5.13 (Java/17.0.2)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Scrapy/2.11.0 (+https://scrapy.org)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "WordPress/6.4.2; https://example.com",
    "some-crawler",
]

HUMANS = [
    "curl/8.5.0",
    "Wget/1.21.4",
    "python-requests/2.31.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 Mobile Safari/537.36",
    "",
]


@pytest.fixture(scope="module")
def env():
    with running(lambda port: CONFIG.format(P=port)) as e:
        yield e


def ua(env, path, agent):
    return env.lm.request("GET", path, headers={"User-Agent": agent})


def forbidden(st, h, data):
    assert st == 403, (st, data[:200])
    assert h["content-type"].startswith("application/json")
    assert json.loads(data)["message"] == "Forbidden"
    return True


@pytest.mark.parametrize("agent", BOTS)
def test_builtin_bots_refused(env, agent):
    n = len(env.up.requests)
    assert forbidden(*ua(env, "/bots", agent))
    assert len(env.up.requests) == n
    assert ua(env, "/open", agent)[0] == 200


@pytest.mark.parametrize("agent", HUMANS)
def test_browsers_and_cli_tools_pass(env, agent):
    assert ua(env, "/bots", agent)[0] == 200


def test_no_user_agent_passes(env):
    st, _, _ = env.lm.request("GET", "/bots")  # http.client sends no User-Agent
    assert st == 200


def test_real_curl_passes(env):
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                          f"http://127.0.0.1:{env.lm.port}/deny"], capture_output=True, text=True, timeout=30)
    assert out.stdout == "403"
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                          f"http://127.0.0.1:{env.lm.port}/bots"], capture_output=True, text=True, timeout=30)
    assert out.stdout == "200"


def test_allow_wins_over_builtin(env):
    assert ua(env, "/allow", BOTS[1])[0] == 200  # bingbot allowed
    assert ua(env, "/allow", "Googlebot/2.1")[0] == 200
    assert forbidden(*ua(env, "/allow", "Mozilla/5.0 (compatible; Googlebot/2.1)"))  # anchored allow does not match
    assert forbidden(*ua(env, "/allow", "Twitterbot/1.0"))


def test_deny(env):
    assert forbidden(*ua(env, "/deny", "curl/7.88.1"))
    assert forbidden(*ua(env, "/deny", "Mozilla/5.0 (X11; rv:121.0) Gecko/20100101 FIREFOX/121.0"))
    assert ua(env, "/deny", "Wget/1.21")[0] == 200
    assert ua(env, "/deny", "my curl/7")[0] == 200  # ^ anchors; matching is case-sensitive otherwise


def test_allow_wins_over_deny(env):
    assert ua(env, "/both", "curl/8.5.0")[0] == 200
    assert forbidden(*ua(env, "/both", "curl/7.88.1"))


def test_user_agent_trimmed(env):
    # leading blanks are dropped before matching: "^curl/" still matches
    raw = env.lm.raw(b"GET /deny HTTP/1.1\r\nHost: x\r\nUser-Agent:   curl/7.1  \r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 403"), raw[:200]


def test_two_user_agents(env):
    raw = env.lm.raw(b"GET /bots HTTP/1.1\r\nHost: x\r\nUser-Agent: a\r\nUser-Agent: b\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400"), raw[:200]
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert json.loads(body)["message"] == "Only one User-Agent header allowed"


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
    - name: bot-detection
      config: {allow: ["ok", "(unclosed"], deny: "x"}
plugins:
- name: bot-detection
  config: {whitelist: ["a"]}
""")
    assert rc == 1, out
    assert "services[0].routes[0].plugins[0].config.allow[1]: not a valid regex: (unclosed" in out
    assert "services[0].routes[0].plugins[0].config.deny: expected an array" in out
    assert "plugins[0].config.whitelist: unknown field" in out

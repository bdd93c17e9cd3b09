"""Black-box tests of the rate-limiting plugin (policy local): Kong's seed
scenario (3 per minute on a consumer: three 200s, then 429 with the message
and headers), the X-RateLimit-*/RateLimit-*/Retry-After headers, several
periods at once, limit_by ip/header/path/service/consumer, hide_client_headers,
error_code/error_message, second windows rolling over, exact counting across
4 worker threads under concurrent load, counters surviving POST /config, and
config validation through --check.

Every Limen started here stops at the end of its test, which asserts that
ASan/UBSan/LSan reported nothing."""
import concurrent.futures
import json
import time

import pytest

from conftest import check_config, running

CONFIG = r"""_format_version: "3.0"
consumers:
- username: alice
  keyauth_credentials: [{{key: alice-key}}]
- username: bob
  keyauth_credentials: [{{key: bob-key}}]
services:
- name: s
  url: http://127.0.0.1:{P}
  routes:
  - name: seed
    paths: ["/seed"]
    plugins:
    - {{name: key-auth}}
    - {{name: rate-limiting, config: {{minute: 3}}}}
  - name: multi
    paths: ["/multi"]
    plugins:
    - {{name: rate-limiting, config: {{second: 4, minute: 4, hour: 10, limit_by: ip}}}}
  - name: hidden
    paths: ["/hidden"]
    plugins:
    - {{name: rate-limiting, config: {{minute: 1, hide_client_headers: true, error_code: 403, error_message: "slow down"}}}}
  - name: byheader
    paths: ["/byheader"]
    plugins:
    - {{name: rate-limiting, config: {{minute: 1, limit_by: header, header_name: X-Tenant}}}}
  - name: bypath
    paths: ["/bypath"]
    plugins:
    - {{name: rate-limiting, config: {{minute: 1, limit_by: path, path: /bypath/a}}}}
  - name: second
    paths: ["/second"]
    plugins:
    - {{name: rate-limiting, config: {{second: 2}}}}
- name: svc2
  url: http://127.0.0.1:{P}
  plugins:
  - {{name: rate-limiting, config: {{minute: 2, limit_by: service}}}}
  routes:
  - {{name: svc2-a, paths: ["/svc2a"]}}
  - {{name: svc2-b, paths: ["/svc2b"]}}
"""


@pytest.fixture(scope="module")
def env():
    with running(lambda port: CONFIG.format(P=port), workers=2) as e:
        yield e


def get(env, path, headers=None):
    return env.lm.request("GET", path, headers=headers or {})


def test_seed_three_per_minute_on_a_consumer(env):
    for i in range(3):
        st, h, _ = get(env, "/seed", {"apikey": "alice-key"})
        assert st == 200
        assert h["x-ratelimit-limit-minute"] == "3"
        assert h["x-ratelimit-remaining-minute"] == str(2 - i)
        assert h["ratelimit-limit"] == "3"
        assert h["ratelimit-remaining"] == str(2 - i)
        assert 1 <= int(h["ratelimit-reset"]) <= 60
    st, h, body = get(env, "/seed", {"apikey": "alice-key"})
    assert st == 429
    assert json.loads(body) == {"message": "API rate limit exceeded"}
    assert h["x-ratelimit-remaining-minute"] == "0"
    assert h["ratelimit-remaining"] == "0"
    assert 1 <= int(h["retry-after"]) <= 60
    assert h["retry-after"] == h["ratelimit-reset"]
    # another consumer has its own counter
    st, h, _ = get(env, "/seed", {"apikey": "bob-key"})
    assert st == 200 and h["x-ratelimit-remaining-minute"] == "2"
    # a refused request is not counted, and refusals go on
    assert get(env, "/seed", {"apikey": "alice-key"})[0] == 429


def test_several_periods_most_constrained(env):
    st, h, _ = get(env, "/multi")
    assert st == 200
    assert h["x-ratelimit-limit-second"] == "4" and h["x-ratelimit-remaining-second"] == "3"
    assert h["x-ratelimit-limit-minute"] == "4" and h["x-ratelimit-remaining-minute"] == "3"
    assert h["x-ratelimit-limit-hour"] == "10" and h["x-ratelimit-remaining-hour"] == "9"
    # second and minute have the least left: the longer window is reported
    assert h["ratelimit-limit"] == "4" and h["ratelimit-remaining"] == "3"
    for _ in range(3):
        assert get(env, "/multi")[0] == 200
    st, h, _ = get(env, "/multi")
    assert st == 429
    assert h["x-ratelimit-remaining-minute"] == "0"
    assert h["x-ratelimit-remaining-hour"] == "6"  # the refused request counted nowhere
    assert "retry-after" in h


def test_hide_client_headers_and_custom_error(env):
    st, h, _ = get(env, "/hidden")
    assert st == 200
    assert not any(k.startswith("x-ratelimit") or k.startswith("ratelimit") for k in h)
    st, h, body = get(env, "/hidden")
    assert st == 403
    assert json.loads(body) == {"message": "slow down"}
    assert not any(k.startswith("x-ratelimit") or k.startswith("ratelimit") for k in h)
    assert "retry-after" not in h


def test_limit_by_header_falls_back_to_ip(env):
    assert get(env, "/byheader", {"X-Tenant": "t1"})[0] == 200
    assert get(env, "/byheader", {"X-Tenant": "t1"})[0] == 429
    assert get(env, "/byheader", {"X-Tenant": "t2"})[0] == 200
    assert get(env, "/byheader")[0] == 200  # no header: the client IP
    assert get(env, "/byheader")[0] == 429


def test_limit_by_path(env):
    assert get(env, "/bypath/a")[0] == 200
    assert get(env, "/bypath/a")[0] == 429
    assert get(env, "/bypath/b")[0] == 200  # another path: the client IP's counter
    assert get(env, "/bypath/c")[0] == 429


def test_limit_by_service_spans_routes(env):
    assert get(env, "/svc2a")[0] == 200
    assert get(env, "/svc2b")[0] == 200
    # Kong keys counters by route and service: each route keeps its own count
    assert get(env, "/svc2a")[0] == 200
    assert get(env, "/svc2a")[0] == 429


def test_second_window_rolls_over(env):
    # start right after a second begins so that three requests fit in it
    time.sleep(1 - (time.time() % 1) + 0.02)
    assert get(env, "/second")[0] == 200
    assert get(env, "/second")[0] == 200
    st, h, _ = get(env, "/second")
    assert st == 429 and h["retry-after"] == "1"
    time.sleep(1 - (time.time() % 1) + 0.05)
    st, h, _ = get(env, "/second")
    assert st == 200 and h["x-ratelimit-remaining-second"] == "1"


EXACT = r"""_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{P}
  routes:
  - name: r
    paths: ["/"]
    plugins:
    - {{name: rate-limiting, config: {{day: {LIMIT}, limit_by: ip}}}}
"""


def fire(lm, n, path="/x"):
    def one(_):
        return lm.request("GET", path)[0]
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        return list(ex.map(one, range(n)))


def test_exact_across_workers_and_config_swap():
    with running(lambda port: EXACT.format(P=port, LIMIT=37), workers=4) as e:
        codes = fire(e.lm, 100)
        assert codes.count(200) == 37 and codes.count(429) == 63
        # a new configuration (same route) keeps the counters: still refused
        body = EXACT.format(P=e.up.port, LIMIT=40).replace("paths: [\"/\"]", "paths: [\"/\"]\n    strip_path: false")
        st, _ = e.lm.admin("POST", "/config", body, {"Content-Type": "application/yaml"})
        assert st == 201, _
        codes = fire(e.lm, 20)
        assert codes.count(200) == 3 and codes.count(429) == 17


def check(text):
    return check_config(text)


def test_config_errors():
    base = """_format_version: "3.0"
plugins:
- name: rate-limiting
  config: %s
"""
    rc, out = check(base % "{}")
    assert rc != 0 and "at least one of these fields must be non-empty" in out
    rc, out = check(base % "{minute: 10, second: 20}")
    assert rc != 0 and "the limit for minute(10.0) cannot be lower than the limit for second(20.0)" in out
    rc, out = check(base % "{minute: 0}")
    assert rc != 0 and "greater than 0" in out
    rc, out = check(base % "{minute: 5, limit_by: header}")
    assert rc != 0 and "header_name" in out and "required field missing" in out
    rc, out = check(base % "{minute: 5, policy: redis, redis: {host: 127.0.0.1}}")
    assert rc != 0 and "policy 'redis' is not supported yet" in out
    rc, out = check(base % "{minute: 5, limit_by: nobody}")
    assert rc != 0 and "expected one of" in out
    rc, out = check(base % "{minute: 5, policy: local, fault_tolerant: false, redis: {host: r, port: 6380}, "
                           "redis_timeout: 100, sync_rate: -1}")
    assert rc == 0, out

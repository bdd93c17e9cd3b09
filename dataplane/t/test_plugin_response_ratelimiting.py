"""Black-box tests of the response-ratelimiting plugin (policy local): the
upstream's X-Kong-Limit (or X-Limen-Limit) spends named limits and is removed
from the response, X-RateLimit-Limit/Remaining-<name>-<period> headers, the
upstream told X-RateLimit-Remaining-<name>, a response spending a used-up
limit turned into 429, block_on_first_violation answering 429 before the
upstream, and config validation."""
import json

import pytest

from conftest import check_config, running, Upstream, Limen


CONFIG = r"""_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{P}
  routes:
  - name: plain
    paths: ["/plain"]
    plugins:
    - {{name: response-ratelimiting, config: {{limits: {{videos: {{minute: 3}}, images: {{minute: 10, hour: 20}}}}}}}}
  - name: block
    paths: ["/block"]
    plugins:
    - {{name: response-ratelimiting, config: {{block_on_first_violation: true, header_name: X-Cost, limits: {{videos: {{minute: 2}}}}}}}}
"""


class CostUpstream(Upstream):
    """Answers 200 with the cost header taken from the request's ?cost=... """

    async def _respond(self, writer, method, path, query, headers, hmap, blen, sha):
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        extra = b""
        if "cost" in params:
            extra += b"X-Kong-Limit: " + params["cost"].replace("%20", " ").encode() + b"\r\n"
        if "xcost" in params:
            extra += b"X-Cost: " + params["xcost"].encode() + b"\r\n"
        if "limen" in params:
            extra += b"X-Limen-Limit: " + params["limen"].encode() + b"\r\n"
        body = json.dumps({"headers": headers}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (len(body), extra) + body)
        return True


@pytest.fixture(scope="module")
def env():
    up = CostUpstream().start()
    lm = Limen(CONFIG.format(P=up.port), workers=2).start()

    class E:
        pass
    e = E()
    e.up, e.lm = up, lm
    try:
        yield e
    finally:
        try:
            lm.stop()
        finally:
            up.stop()


def test_limits_spent_by_the_upstream(env):
    st, h, body = env.lm.request("GET", "/plain?cost=videos=2,%20images=1")
    assert st == 200
    assert "x-kong-limit" not in h
    assert h["x-ratelimit-limit-videos-minute"] == "3"
    assert h["x-ratelimit-remaining-videos-minute"] == "1"
    assert h["x-ratelimit-remaining-images-minute"] == "9"
    assert h["x-ratelimit-remaining-images-hour"] == "19"
    sent = dict((k.lower(), v) for k, v in json.loads(body)["headers"])
    assert sent["x-ratelimit-remaining-videos"] == "3" and sent["x-ratelimit-remaining-images"] == "10"

    st, h, body = env.lm.request("GET", "/plain?limen=videos=1")  # X-Limen-Limit works too
    assert st == 200 and "x-limen-limit" not in h
    assert h["x-ratelimit-remaining-videos-minute"] == "0"
    sent = dict((k.lower(), v) for k, v in json.loads(body)["headers"])
    assert sent["x-ratelimit-remaining-videos"] == "1"

    # videos is used up: a response that spends it becomes a 429 and is not counted
    st, h, _ = env.lm.request("GET", "/plain?cost=videos=1")
    assert st == 429
    assert h["x-ratelimit-remaining-videos-minute"] == "0"
    # one that spends only images still goes through
    st, h, _ = env.lm.request("GET", "/plain?cost=images=1")
    assert st == 200 and h["x-ratelimit-remaining-images-minute"] == "8"
    # unknown names and malformed values are ignored
    st, h, _ = env.lm.request("GET", "/plain?cost=music=5,images=x")
    assert st == 200 and h["x-ratelimit-remaining-images-minute"] == "8"


def test_block_on_first_violation(env):
    st, h, _ = env.lm.request("GET", "/block?xcost=videos=2")
    assert st == 200 and h["x-ratelimit-remaining-videos-minute"] == "0"
    n = len(env.up.requests)
    st, h, body = env.lm.request("GET", "/block?xcost=videos=1")
    assert st == 429
    assert json.loads(body) == {"message": "API rate limit exceeded for 'videos'"}
    assert len(env.up.requests) == n  # never reached the upstream


def test_config_errors():
    base = """_format_version: "3.0"
plugins:
- {name: response-ratelimiting, config: %s}
"""
    rc, out = check_config(base % "{}")
    assert rc != 0 and "limits" in out and "required field missing" in out
    rc, out = check_config(base % "{limits: {v: {}}}")
    assert rc != 0 and "at least one of these fields must be non-empty" in out
    rc, out = check_config(base % "{limits: {v: {minute: 10, hour: 5}}}")
    assert rc != 0 and "the limit for hour(5.0) cannot be lower than the limit for minute(10.0)" in out
    rc, out = check_config(base % "{policy: redis, redis: {host: r}, limits: {v: {minute: 1}}}")
    assert rc != 0 and "policy 'redis' is not supported yet" in out

"""Black-box tests of the request-transformer plugin: headers and query
string through remove, rename, replace, add, append in Kong's order,
http_method, replace.uri with templates from route captures, headers and
query arguments, form-urlencoded and JSON bodies (the upstream gets the new
body with its Content-Length), and config validation."""
import hashlib
import itertools
import json

import pytest

from conftest import check_config, running

CONFIG = r"""_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{P}
  routes:
  - name: rt
    paths: ["~/rt/(?<id>\\d+)/(\\w+)$"]
    plugins:
    - name: request-transformer
      config:
        http_method: PUT
        remove: {{headers: [X-Remove], querystring: [drop]}}
        rename: {{headers: ["X-Old:X-New"], querystring: ["old:new"]}}
        replace: {{headers: ["X-Rep:replaced", "X-Missing:no"], querystring: ["rep:r2"], uri: "/items/$(uri_captures.id)/$(uri_captures[2])"}}
        add: {{headers: ["X-Add:$(headers.x_src)-$(query_params.keep)", "X-Rep:not-added"], querystring: ["add:a v", "keep:no"]}}
        append: {{headers: ["X-App:1", "X-App:2"], querystring: ["app:z"]}}
  - name: body
    paths: ["/body"]
    plugins:
    - name: request-transformer
      config:
        remove: {{body: [gone]}}
        rename: {{body: ["old:new"]}}
        replace: {{body: ["rep:r2"]}}
        add: {{body: ["add:$(headers.x_v)"]}}
        append: {{body: ["lst:b"]}}
"""


@pytest.fixture(scope="module")
def env():
    with running(lambda port: CONFIG.format(P=port)) as e:
        yield e


def hdrs(echo, name):
    return [v for k, v in echo["headers"] if k.lower() == name.lower()]


def test_headers_query_method_uri(env):
    st, _, body = env.lm.request(
        "GET", "/rt/42/abc?drop=1&old=o&rep=r1&keep=k&z=%2F",
        headers={"X-Remove": "x", "X-Old": "ov", "X-Rep": "r", "X-Src": "src", "X-App": "0"})
    assert st == 200, body
    e = json.loads(body)
    assert e["method"] == "PUT"
    assert e["path"] == "/items/42/abc"
    # sorted by name, re-encoded; rename kept the value, add only when absent
    assert e["query"] == "add=a%20v&app=z&keep=k&new=o&rep=r2&z=%2F"
    assert hdrs(e, "X-Remove") == []
    assert hdrs(e, "X-Old") == [] and hdrs(e, "X-New") == ["ov"]
    assert hdrs(e, "X-Rep") == ["replaced"]
    assert hdrs(e, "X-Missing") == []
    assert hdrs(e, "X-Add") == ["src-k"]
    assert hdrs(e, "X-App") == ["0", "1", "2"]


def test_templates_missing_values_are_empty(env):
    st, _, body = env.lm.request("GET", "/rt/7/x")
    e = json.loads(body)
    assert hdrs(e, "X-Add") == ["-"]
    assert e["query"] == "add=a%20v&app=z&keep=no"


def sha(b):
    return hashlib.sha256(b).hexdigest()


def test_form_body(env):
    st, _, body = env.lm.request("POST", "/body?q=1", body=b"gone=1&old=o&rep=r1&lst=a&keep=k%21",
                                 headers={"Content-Type": "application/x-www-form-urlencoded", "X-V": "v"})
    e = json.loads(body)
    want = b"add=v&keep=k%21&lst=a&lst=b&new=o&rep=r2"
    assert e["body_len"] == len(want) and e["body_sha256"] == sha(want)
    assert e["query"] == "q=1"
    assert hdrs(e, "Content-Length") == [str(len(want))]


def test_json_body(env):
    st, _, body = env.lm.request("POST", "/body", body=json.dumps({"gone": 1, "old": "o", "rep": 5, "lst": "a"}),
                                 headers={"Content-Type": "application/json", "X-V": "v"})
    e = json.loads(body)
    # the members' order is not Kong's to promise (a Lua table): any order will do
    members = {"new": "o", "rep": "r2", "lst": ["a", "b"], "add": "v"}
    wants = {sha(json.dumps(dict(p), separators=(",", ":")).encode())
             for p in itertools.permutations(members.items())}
    assert e["body_sha256"] in wants


def test_other_body_untouched(env):
    st, _, body = env.lm.request("POST", "/body", body=b"gone=1", headers={"Content-Type": "text/plain"})
    e = json.loads(body)
    assert e["body_sha256"] == sha(b"gone=1")


def test_config_errors():
    rc, out = check_config("""_format_version: "3.0"
plugins:
- {name: request-transformer, config: {add: {headers: ["X-A"]}}}
""")
    assert rc != 0 and "invalid value: X-A" in out
    rc, out = check_config("""_format_version: "3.0"
plugins:
- {name: request-transformer, config: {http_method: get}}
""")
    assert rc != 0 and "HTTP method" in out

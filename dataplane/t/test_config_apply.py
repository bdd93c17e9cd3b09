"""POST /config of large JSON documents as the controller sends them: the raw-document / {"config": ...}
decision without a full parse on the control loop, the hash (md5 of cJSON's compact text), the state file
holding the document when the answer comes, and a restart serving it."""
import hashlib
import json
import os

from conftest import wait_until


def k8s_doc(port, n, extra_comment=None):
    """n services/upstreams/routes shaped like limen-controller's output (tools/gen_k8s_doc.py)."""
    def tags(kind, name, group=None):
        t = [f"k8s-kind:{kind}", "k8s-namespace:t", f"k8s-name:{name}"]
        return t + ([f"k8s-group:{group}"] if group else []) + ["k8s-version:v1"]
    doc = {"_format_version": "3.0", "services": [], "upstreams": []}
    if extra_comment is not None:
        doc["_comment"] = extra_comment
    for i in range(n):
        doc["services"].append({
            "name": f"t.s{i}.80", "host": f"s{i}.t.80.svc", "port": 80, "protocol": "http", "tags": tags("Service", f"s{i}"),
            "routes": [{"name": f"t.i{i}.0.0", "paths": ["/"], "hosts": [f"h{i}.example.com"],
                        "protocols": ["http", "https"], "strip_path": False, "preserve_host": True,
                        "https_redirect_status_code": 426, "regex_priority": 0, "path_handling": "v0",
                        "tags": tags("Ingress", f"i{i}", "networking.k8s.io")}]})
        doc["upstreams"].append({"name": f"s{i}.t.80.svc", "tags": tags("Service", f"s{i}"),
                                 "targets": [{"target": f"127.0.0.1:{port}", "weight": 100,
                                              "tags": tags("Service", f"s{i}")}]})
    return doc


def compact(doc):
    # cJSON_PrintUnformatted's bytes for these values: what the controller sends and hashes
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def post(l, body):
    return l.admin_json("POST", "/config", body, {"Content-Type": "application/json"})


def test_large_json_hash_state_file_and_restart(limen_factory, upstream, tmp_path):
    state = str(tmp_path / "state")
    l = limen_factory(None, state_dir=state, workers=1).start()
    # escapes, control characters, quotes, backslashes, UTF-8: the hash is still md5 of the text sent
    body = compact(k8s_doc(upstream.port, 400, "\u0001\u001f\t\n\r\b\f \"q\" \\ / caf\u00e9 \u2603 \x7f"))
    st, res = post(l, body)
    assert st == 201, res
    assert res["configuration_hash"] == hashlib.md5(body).hexdigest()
    assert l.status()["configuration_hash"] == res["configuration_hash"]
    assert l.request("GET", "/", headers={"Host": "h399.example.com"})[0] == 200
    # the state file holds it once the answer came
    state_file = os.path.join(state, "config.json")
    with open(state_file, "rb") as f:
        assert f.read() == body
    assert not os.path.exists(state_file + ".tmp")

    # one more route: applied, persisted; unchanged with check_hash: 304, nothing rewritten
    body2 = compact(k8s_doc(upstream.port, 401))
    st, res2 = post(l, body2)
    assert st == 201 and res2["configuration_hash"] == hashlib.md5(body2).hexdigest()
    with open(state_file, "rb") as f:
        assert f.read() == body2
    mtime = os.stat(state_file).st_mtime_ns
    st, _ = l.admin("POST", "/config?check_hash=1", body2, {"Content-Type": "application/json"})
    assert st == 304
    assert os.stat(state_file).st_mtime_ns == mtime
    assert l.stop() == 0

    # a restart serves it, with the same hash
    l2 = limen_factory(None, state_dir=state, workers=1).start()
    assert l2.status()["configuration_hash"] == res2["configuration_hash"]
    assert l2.request("GET", "/", headers={"Host": "h400.example.com"})[0] == 200
    assert l2.stop() == 0


def test_applies_back_to_back_end_with_the_last_one_on_disk(limen_factory, upstream, tmp_path):
    l = limen_factory(None, state_dir=str(tmp_path / "s"), workers=1).start()
    hashes = []
    for n in range(50, 55):
        st, res = post(l, compact(k8s_doc(upstream.port, n)))
        assert st == 201, res
        hashes.append(res["configuration_hash"])
    assert l.status()["configuration_hash"] == hashes[-1]
    wait_until(lambda: hashlib.md5(open(os.path.join(l.state_dir, "config.json"), "rb").read()).hexdigest()
               == hashes[-1], what="state file")
    assert l.stop() == 0


def test_json_body_config_key_only_at_the_top_level_is_the_wrapper(limen_factory, upstream):
    l = limen_factory(None, workers=1).start()
    # "config" keys and values deeper down (plugin configs, strings): a raw document
    doc = k8s_doc(upstream.port, 2)
    doc["services"][0]["routes"][0]["plugins"] = [{"name": "request-termination",
                                                   "config": {"status_code": 418, "message": "config"}}]
    doc["services"][1]["tags"].append("config")
    doc["_comment"] = "{\"config\": \"x\"} , \"config\":"
    body = compact(doc)
    st, res = post(l, body)
    assert st == 201, res
    assert res["configuration_hash"] == hashlib.md5(body).hexdigest()
    assert l.request("GET", "/", headers={"Host": "h0.example.com"})[0] == 418
    assert l.request("GET", "/", headers={"Host": "h1.example.com"})[0] == 200

    # Kong's wrapper, also with an escaped key (cJSON decodes it to "config") and after other keys
    inner = json.dumps(k8s_doc(upstream.port, 3))
    for wrapped in ('{"config": %s}' % json.dumps(inner),
                    '{"con\\u0066ig": %s}' % json.dumps(inner),
                    '{"other": {"config": 1}, "config": %s}' % json.dumps(inner)):
        st, res = post(l, wrapped)
        assert st == 201, (wrapped[:40], res)
        assert l.request("GET", "/", headers={"Host": "h2.example.com"})[0] == 200
        post(l, body)
        assert l.request("GET", "/", headers={"Host": "h2.example.com"})[0] == 404

    # a document with both _format_version and a top-level "config": a document, refused as before
    st, res = post(l, json.dumps({"_format_version": "3.0", "config": "x"}))
    assert st == 400 and "config" in json.dumps(res["fields"])
    # not JSON after all: the parse error, as before
    st, res = post(l, '{"config": ')
    assert st == 400
    assert l.stop() == 0

"""Black-box tests of live configuration: POST /config in every encoding,
swaps under load, refused configs, the admin read-only API, the status
listener and /metrics."""
import hashlib
import http.client
import json
import os
import re
import socket
import threading
import time
import urllib.parse

from conftest import Upstream, curl_admin, simple_config, wait_until

from prometheus_client.parser import text_string_to_metric_families


def routes_config(port, *paths, name="echo"):
    routes = "".join(f"  - name: r{i}\n    paths: [\"{p}\"]\n" for i, p in enumerate(paths))
    return f"""_format_version: "3.0"
services:
- name: {name}
  url: http://127.0.0.1:{port}
  routes:
{routes}"""


def as_json(port, *paths, name="echo"):
    return json.dumps({"_format_version": "3.0", "services": [{
        "name": name, "url": f"http://127.0.0.1:{port}",
        "routes": [{"name": f"r{i}", "paths": [p]} for i, p in enumerate(paths)]}]})


def get(limen, path, headers=None):
    st, h, body = limen.request("GET", path, headers=headers)
    return st, h, body


# --------------------------------------------------------------------------
# 1. POST /config swaps live, in every encoding
# --------------------------------------------------------------------------

def test_post_config_swaps_routes_live(limen_factory, upstream):
    l = limen_factory(routes_config(upstream.port, "/one")).start()
    h1 = l.status()["configuration_hash"]
    assert re.fullmatch(r"[0-9a-f]{32}", h1)
    assert get(l, "/one/x")[0] == 200
    assert get(l, "/two/x")[0] == 404

    # YAML body: /one disappears, /two appears
    st, body = l.admin_json("POST", "/config", routes_config(upstream.port, "/two"),
                            {"Content-Type": "application/yaml"})
    assert st == 201, body
    h2 = body["configuration_hash"]
    assert re.fullmatch(r"[0-9a-f]{32}", h2) and h2 != h1
    assert l.status()["configuration_hash"] == h2
    assert l.admin_json("GET", "/status")[1]["configuration_hash"] == h2
    st, hd, data = get(l, "/two/x")
    assert st == 200 and json.loads(data)["path"] == "/x"
    assert get(l, "/one/x")[0] == 404

    # JSON body of the first document: same hash as the YAML file it came from
    st, body = l.admin_json("POST", "/config", as_json(upstream.port, "/one"), {"Content-Type": "application/json"})
    assert st == 201, body
    assert body["configuration_hash"] == h1
    assert get(l, "/one/x")[0] == 200
    assert get(l, "/two/x")[0] == 404

    # ?check_hash=1 with the same document: 304, nothing applied
    st, data = l.admin("POST", "/config?check_hash=1", as_json(upstream.port, "/one"),
                       {"Content-Type": "application/json"})
    assert st == 304 and data == b""
    assert l.status()["configuration_hash"] == h1
    # ?check_hash=1 with a different document applies it
    st, body = l.admin_json("POST", "/config?check_hash=1", routes_config(upstream.port, "/two"))
    assert st == 201 and body["configuration_hash"] == h2
    assert get(l, "/two/x")[0] == 200
    assert get(l, "/one/x")[0] == 404


def test_post_config_check_hash_does_not_reapply(limen_factory, upstream):
    cfg = routes_config(upstream.port, "/one")
    l = limen_factory(cfg).start()

    def applies():
        m = re.search(r"^limen_config_applies_total (\d+)", l.metrics(), re.M)
        return int(m.group(1))

    before = applies()
    for _ in range(3):
        st, _ = l.admin("POST", "/config?check_hash=1", cfg)
        assert st == 304
    assert applies() == before
    # without check_hash the same document is applied again (201, same hash)
    st, body = l.admin_json("POST", "/config", cfg)
    assert st == 201 and body["configuration_hash"] == l.status()["configuration_hash"]
    assert applies() == before + 1


def test_post_config_kong_wrapper_form_and_multipart(limen_factory, upstream):
    l = limen_factory(routes_config(upstream.port, "/zero")).start()
    path = os.path.join(l.tmp, "post.yml")

    def check(route, st, body):
        assert st == 201, body
        h = json.loads(body)["configuration_hash"]
        assert l.status()["configuration_hash"] == h
        assert get(l, f"{route}/x")[0] == 200, route
        return h

    # Kong's {"config": "<yaml text>"} wrapper
    st, body = l.admin("POST", "/config", json.dumps({"config": routes_config(upstream.port, "/wrap")}),
                       {"Content-Type": "application/json"})
    check("/wrap", st, body)
    # ... and {"config": "<json text>"}
    st, body = l.admin("POST", "/config", json.dumps({"config": as_json(upstream.port, "/wrapj")}),
                       {"Content-Type": "application/json"})
    check("/wrapj", st, body)

    # form-urlencoded field config=
    form = urllib.parse.urlencode({"config": routes_config(upstream.port, "/form")})
    st, body = l.admin("POST", "/config", form, {"Content-Type": "application/x-www-form-urlencoded"})
    check("/form", st, body)

    # curl --data-urlencode config@file
    with open(path, "w") as f:
        f.write(routes_config(upstream.port, "/curlform"))
    st, body = curl_admin(l, "--data-urlencode", f"config@{path}", "http://localhost/config")
    check("/curlform", st, body)

    # multipart: curl -F config=@kong.yml
    with open(path, "w") as f:
        f.write(routes_config(upstream.port, "/multi"))
    st, body = curl_admin(l, "-F", f"config=@{path}", "http://localhost/config")
    h = check("/multi", st, body)
    assert get(l, "/curlform/x")[0] == 404
    # another part whose file happens to be called "config" is not the config
    with open(path + ".note", "w") as f:
        f.write("not a config\n")
    with open(path, "w") as f:
        f.write(routes_config(upstream.port, "/multi"))
    st, body = curl_admin(l, "-F", f"note=@{path}.note;filename=config", "-F", f"config=@{path}",
                          "http://localhost/config")
    assert st == 201 and json.loads(body)["configuration_hash"] == h, body
    # multipart with check_hash and the same document: 304
    st, body = curl_admin(l, "-F", f"config=@{path}", "http://localhost/config?check_hash=1")
    assert st == 304
    assert l.status()["configuration_hash"] == h

    # the plain `curl --data-binary @kong.yml` (curl labels it form-urlencoded)
    with open(path, "w") as f:
        f.write(routes_config(upstream.port, "/binary"))
    st, body = curl_admin(l, "--data-binary", f"@{path}", "http://localhost/config")
    check("/binary", st, body)
    # and with an explicit YAML content type
    with open(path, "w") as f:
        f.write(routes_config(upstream.port, "/yamlct"))
    st, body = curl_admin(l, "-H", "Content-Type: application/x-yaml", "--data-binary", f"@{path}",
                          "http://localhost/config")
    check("/yamlct", st, body)


def big_config(port, n):
    svcs = "".join(f"""- name: svc{i}
  url: http://127.0.0.1:{port}/s{i}
  routes:
  - name: route{i}
    paths: ["/p{i}"]
    methods: [GET, POST]
""" for i in range(n))
    return '_format_version: "3.0"\nservices:\n' + svcs


def test_post_large_config_with_curl(limen_factory, upstream):
    l = limen_factory(simple_config(upstream.port)).start()
    path = os.path.join(l.tmp, "big.yml")
    write_text = big_config(upstream.port, 2000)
    with open(path, "w") as f:
        f.write(write_text)
    assert os.path.getsize(path) > 100000
    for args in (["-F", f"config=@{path}"], ["-H", "Content-Type: text/yaml", "--data-binary", f"@{path}"]):
        st, body = curl_admin(l, *args, "http://localhost/config")
        assert st == 201, body
    st, h, data = l.request("GET", "/p1999/x")
    assert st == 200 and json.loads(data)["path"] == "/s1999/x"
    st, body = l.admin_json("GET", "/routes")  # Kong's pages: 100 by default, at most 1000
    assert len(body["data"]) == 100 and body["next"] == "/routes?offset=" + body["offset"]
    st, body = l.admin_json("GET", "/routes?size=1000")
    assert len(body["data"]) == 1000 and body["next"]
    st, body2 = l.admin_json("GET", body["next"])
    assert len(body2["data"]) == 1000 and body2["next"] is None


def test_post_config_expect_100_continue(limen_factory, upstream):
    """curl sends 'Expect: 100-continue' with large bodies and waits a second
    for the interim response unless the server sends it."""
    l = limen_factory(simple_config(upstream.port)).start()
    body = routes_config(upstream.port, "/continued").encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(l.admin_sock)
    s.sendall(b"POST /config HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/yaml\r\n"
              b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
    s.settimeout(0.8)
    interim = s.recv(100)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    s.settimeout(5)
    s.sendall(body)
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    s.close()
    assert out.startswith(b"HTTP/1.1 201 "), out
    assert get(l, "/continued/x")[0] == 200


# --------------------------------------------------------------------------
# 2. swaps under load
# --------------------------------------------------------------------------

def test_swap_under_load_zero_failures(limen_factory):
    up_a = Upstream(name="A").start()
    up_b = Upstream(name="B").start()
    try:
        cfg_a = simple_config(up_a.port)
        cfg_b = simple_config(up_b.port)
        l = limen_factory(cfg_a, workers=2).start()
        stop = threading.Event()
        seen = {"A": 0, "B": 0}
        errors = []
        lock = threading.Lock()

        def client(n):
            c = l.conn(timeout=10)
            i = 0
            while not stop.is_set():
                try:
                    c.request("GET", f"/load/{n}/{i}")
                    r = c.getresponse()
                    body = r.read()
                    who = r.getheader("X-Up")
                    if r.status != 200 or who not in ("A", "B") or json.loads(body)["path"] != f"/load/{n}/{i}":
                        with lock:
                            errors.append((r.status, who, body[:200]))
                    else:
                        with lock:
                            seen[who] += 1
                except Exception as e:  # any reset or close is a failed request
                    with lock:
                        errors.append(repr(e))
                    c.close()
                    c = l.conn(timeout=10)
                i += 1
            c.close()

        threads = [threading.Thread(target=client, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.2)
            hashes = set()
            for k in range(30):
                st, body = l.admin_json("POST", "/config", cfg_b if k % 2 == 0 else cfg_a)
                assert st == 201, body
                hashes.add(body["configuration_hash"])
                time.sleep(0.03)
            time.sleep(0.2)
        finally:
            stop.set()
            for t in threads:
                t.join(15)
        assert errors == [], errors[:5]
        assert seen["A"] > 0 and seen["B"] > 0, seen
        assert len(hashes) == 2
        assert l.admin("POST", "/config?check_hash=1", cfg_a)[0] == 304
        # the last posted config (A) serves
        for _ in range(5):
            st, h, _ = l.request("GET", "/final")
            assert st == 200 and h["x-up"] == "A"
    finally:
        up_a.stop()
        up_b.stop()


def test_inflight_request_finishes_on_old_config(limen_factory):
    up_a = Upstream(name="A").start()
    up_b = Upstream(name="B").start()
    try:
        l = limen_factory(simple_config(up_a.port)).start()
        results = {}

        def slow():
            c = l.conn(timeout=10)
            t0 = time.time()
            c.request("GET", "/sleep/1500")
            r = c.getresponse()
            r.read()
            results["slow"] = (r.status, r.getheader("X-Up"), time.time() - t0)
            # the next request on the same keep-alive connection uses the new config
            c.request("GET", "/after")
            r = c.getresponse()
            r.read()
            results["after"] = (r.status, r.getheader("X-Up"))
            c.close()

        t = threading.Thread(target=slow)
        t.start()
        wait_until(lambda: any(r["path"] == "/sleep/1500" for r in up_a.requests), what="slow request upstream")
        st, body = l.admin_json("POST", "/config", simple_config(up_b.port))
        assert st == 201, body
        st, h, _ = l.request("GET", "/new")
        assert st == 200 and h["x-up"] == "B"
        t.join(10)
        assert results["slow"][0] == 200 and results["slow"][1] == "A", results
        assert results["slow"][2] >= 1.4
        assert results["after"] == (200, "B"), results
    finally:
        up_a.stop()
        up_b.stop()


def test_concurrent_posts_are_serialised(limen_factory, upstream):
    l = limen_factory(simple_config(upstream.port)).start()
    results = []

    def post(i):
        results.append((i,) + l.admin_json("POST", "/config", routes_config(upstream.port, f"/c{i}")))

    ts = [threading.Thread(target=post, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert sorted(r[1] for r in results) == [201] * 8, results
    hashes = {r[2]["configuration_hash"]: r[0] for r in results}
    assert len(hashes) == 8
    cur = l.status()["configuration_hash"]
    assert cur in hashes
    # the state file holds exactly the document being served
    with open(os.path.join(l.state_dir, "config.json"), "rb") as f:
        assert hashlib.md5(f.read()).hexdigest() == cur
    st, body = l.admin_json("GET", "/config")
    assert hashlib.md5(body["config"].encode()).hexdigest() == cur
    assert get(l, f"/c{hashes[cur]}/x")[0] == 200


# --------------------------------------------------------------------------
# 3. invalid configs are refused and change nothing
# --------------------------------------------------------------------------

BAD_CONFIG = """_format_version: "3.0"
services:
- name: good
  url: http://127.0.0.1:{port}
  routes:
  - name: ok
    paths: ["/new"]
- name: badsvc
  host: example.com
  port: 99999
  colour: blue
  routes:
  - name: noslash
    paths: ["relative"]
routes:
- name: orphan
  service: missing
  paths: ["/orphan"]
"""


def _flat(body):
    """{(entity_type, entity_name): {field: message}} and the set of our paths."""
    out, paths = {}, set()
    for fe in body["flattened_errors"]:
        d = out.setdefault((fe["entity_type"], fe["entity_name"]), {})
        for e in fe["errors"]:
            d[e["field"]] = e["message"]
            paths.add(e.get("path"))
    return out, paths


def test_invalid_config_refused_and_old_keeps_serving(limen_factory, upstream):
    l = limen_factory(simple_config(upstream.port)).start()
    h0 = l.status()["configuration_hash"]
    state = os.path.join(l.state_dir, "config.json")
    with open(state, "rb") as f:
        state_before = f.read()
    mtime = os.stat(state).st_mtime_ns
    assert get(l, "/x")[0] == 200

    st, body = l.admin_json("POST", "/config", BAD_CONFIG.format(port=upstream.port))
    assert st == 400, body
    assert body["code"] == 14
    assert body["name"] == "invalid declarative configuration"
    assert body["message"].startswith("declarative config is invalid")
    fields = body["fields"]
    svc = fields["services"][1]
    assert "port" in svc and "colour" in svc
    assert "paths" in svc["routes"][0]
    assert fields["routes"][0]["service"]
    flat, paths = _flat(body)
    assert set(flat[("service", "badsvc")]) == {"port", "colour"}
    assert "between 0 and 65535" in flat[("service", "badsvc")]["port"]
    assert "unknown field" in flat[("service", "badsvc")]["colour"]
    assert list(flat[("route", "noslash")]) == ["paths.1"]
    assert "should start with" in flat[("route", "noslash")]["paths.1"]
    assert "missing" in flat[("route", "orphan")]["service"]
    assert ("service", "good") not in flat
    assert paths == {"services[1].port", "services[1].colour", "services[1].routes[0].paths[0]",
                     "routes[0].service"}

    # nothing changed
    assert l.status()["configuration_hash"] == h0
    for _ in range(3):
        assert get(l, "/x")[0] == 200
    assert get(l, "/orphan")[1]["x-up"] == "up"  # still the catch-all route of the old config
    with open(state, "rb") as f:
        assert f.read() == state_before
    assert os.stat(state).st_mtime_ns == mtime
    assert re.search(r"^limen_config_failures_total 1$", l.metrics(), re.M)
    assert "configuration refused" in l.read_log()


def test_unparseable_and_empty_bodies_refused(limen_factory, upstream):
    l = limen_factory(simple_config(upstream.port)).start()
    h0 = l.status()["configuration_hash"]
    for bad in ("{not json", "services: [\n  - a: b\n   c", "", "[]", "_format_version: \"9.9\"\n",
                json.dumps({"config": 42})):
        st, body = l.admin_json("POST", "/config", bad, {"Content-Type": "application/json"})
        assert st == 400, (bad, body)
        assert body.get("message"), (bad, body)
    st, body = l.admin_json("POST", "/config", "x=1", {"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 400
    assert l.status()["configuration_hash"] == h0
    assert get(l, "/x")[0] == 200


# --------------------------------------------------------------------------
# 9. the admin read-only API
# --------------------------------------------------------------------------

FULL_CONFIG = """_format_version: "3.0"
services:
- name: svc1
  url: http://127.0.0.1:{port}/base
  tags: [team-a]
  routes:
  - name: r1
    paths: ["/r1"]
    methods: [GET]
- name: svc2
  host: pool.internal
  retries: 2
  read_timeout: 1500
  routes:
  - name: r2
    hosts: [example.com]
    strip_path: false
upstreams:
- name: pool.internal
  targets:
  - target: 127.0.0.1:{port}
    weight: 50
consumers:
- username: alice
  custom_id: a-1
plugins:
- name: cors
  service: svc1
"""


def test_admin_entity_lists(limen_factory, upstream):
    l = limen_factory(FULL_CONFIG.format(port=upstream.port)).start()

    st, body = l.admin_json("GET", "/services")
    assert st == 200 and body["next"] is None
    svcs = {s["name"]: s for s in body["data"]}
    assert set(svcs) == {"svc1", "svc2"}
    s1 = svcs["svc1"]
    assert (s1["protocol"], s1["host"], s1["port"], s1["path"]) == ("http", "127.0.0.1", upstream.port, "/base")
    assert (s1["retries"], s1["connect_timeout"], s1["write_timeout"], s1["read_timeout"]) == (5, 60000, 60000, 60000)
    assert s1["enabled"] is True and s1["tags"] == ["team-a"]
    s2 = svcs["svc2"]
    assert (s2["host"], s2["port"], s2["retries"], s2["read_timeout"]) == ("pool.internal", 80, 2, 1500)

    st, body = l.admin_json("GET", "/routes")
    assert st == 200
    routes = {r["name"]: r for r in body["data"]}
    r1, r2 = routes["r1"], routes["r2"]
    assert r1["service"] == {"id": s1["id"]} and r1["paths"] == ["/r1"] and r1["methods"] == ["GET"]
    assert r1["strip_path"] is True and r1["preserve_host"] is False
    assert r1["protocols"] == ["http", "https"] and r1["regex_priority"] == 0
    assert r1["https_redirect_status_code"] == 426 and r1["path_handling"] == "v0"
    assert r2["hosts"] == ["example.com"] and r2["strip_path"] is False and r2["service"] == {"id": s2["id"]}

    st, body = l.admin_json("GET", "/consumers")
    assert st == 200 and [(c["username"], c["custom_id"]) for c in body["data"]] == [("alice", "a-1")]

    st, body = l.admin_json("GET", "/plugins")
    assert st == 200 and len(body["data"]) == 1
    p = body["data"][0]
    assert p["name"] == "cors" and p["enabled"] is True and p["service"] == {"id": s1["id"]}
    assert p["route"] is None and p["consumer"] is None

    st, body = l.admin_json("GET", "/upstreams")
    assert st == 200
    (u,) = body["data"]
    assert u["name"] == "pool.internal"
    st, body = l.admin_json("GET", "/upstreams/pool.internal/targets")
    assert st == 200 and [(t["target"], t["weight"]) for t in body["data"]] == [(f"127.0.0.1:{upstream.port}", 50)]

    # the trailing-slash spelling works too
    assert l.admin_json("GET", "/services/")[0] == 200

    # the upstream-backed service really routes
    st, h, data = l.request("GET", "/whatever", headers={"Host": "example.com"})
    assert st == 200 and json.loads(data)["path"] == "/whatever"
    st, h, data = l.request("GET", "/r1/x")
    assert st == 200 and json.loads(data)["path"] == "/base/x"

    # lists follow a swap
    st, _ = l.admin_json("POST", "/config", simple_config(upstream.port))
    assert st == 201
    assert [s["name"] for s in l.admin_json("GET", "/services")[1]["data"]] == ["echo"]
    assert l.admin_json("GET", "/consumers")[1]["data"] == []
    assert l.admin_json("GET", "/upstreams")[1]["data"] == []


def test_get_config_round_trip(limen_factory, upstream):
    l = limen_factory(FULL_CONFIG.format(port=upstream.port)).start()
    h0 = l.status()["configuration_hash"]
    st, body = l.admin_json("GET", "/config")
    assert st == 200
    doc = json.loads(body["config"])
    assert doc["_format_version"] == "3.0"
    assert [s["name"] for s in doc["services"]] == ["svc1", "svc2"]
    # posting it back is a no-op with the same hash
    st, _ = l.admin("POST", "/config?check_hash=1", body["config"], {"Content-Type": "application/json"})
    assert st == 304
    st, b2 = l.admin_json("POST", "/config", json.dumps(body), {"Content-Type": "application/json"})
    assert st == 201 and b2["configuration_hash"] == h0
    assert l.admin_json("GET", "/config")[1] == body


def test_admin_unknown_path_and_wrong_method(limen_factory, upstream):
    l = limen_factory(simple_config(upstream.port)).start()
    for path in ("/nope", "/services/x/y", "/config/extra", "/" + "a" * 100, "/routesx"):
        st, body = l.admin_json("GET", path)
        assert st == 404, path
        assert body["message"]
    for method, path in (("DELETE", "/config"), ("PUT", "/config"), ("POST", "/services/x"), ("DELETE", "/routes"),
                         ("PATCH", "/status"), ("POST", "/status")):
        st, body = l.admin_json(method, path, "")
        assert st == 405, (method, path)
        assert body["message"]
    st, body = l.admin_json("GET", "/")
    assert st == 200 and body["configuration"]["workers"] == 2
    st, data = l.admin("HEAD", "/services")
    assert st == 200 and data == b""
    # the status listener does not serve the admin API
    c = http.client.HTTPConnection("127.0.0.1", l.status_port, timeout=5)
    c.request("GET", "/config")
    r = c.getresponse()
    r.read()
    assert r.status == 404
    c.request("POST", "/config", body=simple_config(upstream.port))
    r = c.getresponse()
    r.read()
    assert r.status in (404, 405)
    c.close()


# --------------------------------------------------------------------------
# 8. status listener and /metrics; 11. workers
# --------------------------------------------------------------------------

def test_status_json(limen_factory, upstream):
    l = limen_factory(simple_config(upstream.port), workers=2).start()
    for _ in range(5):
        assert get(l, "/x")[0] == 200
    s = l.status()
    assert re.fullmatch(r"[0-9a-f]{32}", s["configuration_hash"])
    assert s["workers"] == 2
    assert s["server"]["total_requests"] >= 5
    assert s["server"]["connections_accepted"] >= 5
    assert s["server"]["connections_handled"] >= 5
    assert s["server"]["connections_active"] >= 0
    assert s["memory"]["rss_bytes"] > 1 << 20
    assert abs(s["config_applied_at"] - time.time()) < 60
    st, a = l.admin_json("GET", "/status")
    assert st == 200 and a["configuration_hash"] == s["configuration_hash"] and a["workers"] == 2


def test_workers_option(limen_factory, upstream):
    l = limen_factory(simple_config(upstream.port), workers=2).start()
    assert l.status()["workers"] == 2
    # parallel slow requests are served concurrently (more than one at a time)
    res = []

    def slow():
        res.append(l.request("GET", "/sleep/500")[0])

    ts = [threading.Thread(target=slow) for _ in range(4)]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    assert res == [200] * 4
    assert time.time() - t0 < 1.8
    l1 = limen_factory(simple_config(upstream.port), workers=1).start()
    assert l1.status()["workers"] == 1
    assert get(l1, "/x")[0] == 200


def _families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_prometheus_exposition(limen_factory, upstream):
    cfg = simple_config(upstream.port, extra_routes='  - name: other\n    paths: ["/other"]\n')
    l = limen_factory(cfg).start()
    for _ in range(3):
        assert get(l, "/x")[0] == 200
    assert get(l, "/status/503")[0] == 503
    assert get(l, "/other/y")[0] == 200

    def counts_of(fams):
        return {(s.labels["service"], s.labels["route"], s.labels["code"]): s.value
                for s in fams["limen_http_requests"].samples if s.name == "limen_http_requests_total"}

    # a request is counted when its log phase ran, just after the client got the response
    wait_until(lambda: counts_of(_families(l.metrics())).get(("echo", "other", "200")), what="metrics")
    text = l.metrics()
    fams = _families(text)  # raises on anything that is not valid exposition text
    assert fams["limen_http_requests"].type == "counter"
    counts = counts_of(fams)
    assert counts[("echo", "root", "200")] == 3
    assert counts[("echo", "root", "503")] == 1
    assert counts[("echo", "other", "200")] == 1

    lat = fams["limen_request_latency_ms"]
    assert lat.type == "histogram"
    buckets = [s for s in lat.samples if s.name.endswith("_bucket") and s.labels["route"] == "root"]
    assert len(buckets) >= 10
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 4
    vals = [b.value for b in buckets]
    assert vals == sorted(vals)
    count = [s for s in lat.samples if s.name.endswith("_count") and s.labels["route"] == "root"]
    assert count[0].value == 4

    info = fams["limen_config_info"]
    (sample,) = info.samples
    assert sample.labels["hash"] == l.status()["configuration_hash"] and sample.value == 1

    # after a swap: the new hash, and counters survive (by service/route name)
    st, body = l.admin_json("POST", "/config", cfg + "    tags: [changed]\n")
    assert st == 201, body
    assert get(l, "/x")[0] == 200
    wait_until(lambda: counts_of(_families(l.metrics()))[("echo", "root", "200")] == 4, what="metrics")
    fams = _families(l.metrics())
    (sample,) = fams["limen_config_info"].samples
    assert sample.labels["hash"] == body["configuration_hash"]
    applies = fams["limen_config_applies"].samples[0].value
    assert applies >= 2


def test_metrics_on_admin_socket_and_status_404(limen_factory, upstream):
    l = limen_factory(simple_config(upstream.port)).start()
    st, data = l.admin("GET", "/metrics")
    assert st == 200 and b"limen_config_info" in data
    _families(data.decode())
    c = http.client.HTTPConnection("127.0.0.1", l.status_port, timeout=5)
    c.request("GET", "/nothing")
    r = c.getresponse()
    r.read()
    assert r.status == 404
    c.close()

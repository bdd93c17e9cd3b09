"""Black-box tests of Kong's imperative Admin API (admin_api.c): Kong's
getting-started sequences replayed with curl as Kong's docs write them, the
answers (status, JSON shape, defaults) and what the proxy then does; restarts,
refused writes, concurrent writers, pagination and tags, --managed."""
import json
import shlex
import subprocess
import threading
import time

from conftest import Upstream, Limen, wait_until

UUID_LEN = 36


def kong(lm, cmdline):
    """Runs a curl command line as Kong's docs write it (against localhost:8001),
    over the admin unix socket; returns (status, parsed JSON or None)."""
    args = shlex.split(cmdline.replace("\\\n", " "))
    assert args[0] == "curl"
    args = [a.replace("localhost:8001", "localhost") for a in args[1:] if a not in ("-i", "-s")]
    out = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket", lm.admin_sock, *args],
                         capture_output=True, timeout=60, check=True).stdout
    body, _, code = out.rpartition(b"\n")
    return int(code), (json.loads(body) if body.strip() else None)


def proxy(lm, path, headers=None):
    st, _, body = lm.request("GET", path, headers=headers)
    return st, body


def config_hash(lm):
    return lm.status()["configuration_hash"]


def start(tmp_limen=None, **kw):
    return Limen(workers=1, **kw).start()


def test_getting_started_services_routes_keyauth_upstreams():
    up = Upstream(name="up").start()
    up2 = Upstream(name="up2").start()
    lm = start()
    try:
        # services
        st, svc = kong(lm, f"""curl -i -s -X POST http://localhost:8001/services \\
  --data name=example_service \\
  --data url='http://127.0.0.1:{up.port}'""")
        assert st == 201, svc
        assert len(svc["id"]) == UUID_LEN and svc["name"] == "example_service"
        assert (svc["protocol"], svc["host"], svc["port"], svc["path"]) == ("http", "127.0.0.1", up.port, None)
        assert (svc["retries"], svc["connect_timeout"], svc["read_timeout"], svc["write_timeout"]) == (5, 60000, 60000, 60000)
        assert svc["enabled"] is True and svc["tags"] is None and "url" not in svc
        assert isinstance(svc["created_at"], int) and svc["updated_at"] >= svc["created_at"]
        st, got = kong(lm, "curl -X GET http://localhost:8001/services/example_service")
        assert st == 200 and got == svc
        st, got = kong(lm, f"curl -X GET http://localhost:8001/services/{svc['id']}")
        assert st == 200 and got["name"] == "example_service"
        st, got = kong(lm, "curl --request PATCH --url localhost:8001/services/example_service --data retries=6")
        assert st == 200 and got["retries"] == 6 and got["id"] == svc["id"] and got["host"] == "127.0.0.1"

        # routes
        st, route = kong(lm, """curl -i -X POST http://localhost:8001/services/example_service/routes \\
  --data 'paths[]=/mock' \\
  --data name=example_route""")
        assert st == 201, route
        assert route["paths"] == ["/mock"] and route["service"] == {"id": svc["id"]}
        assert route["protocols"] == ["http", "https"] and route["strip_path"] is True
        assert (route["preserve_host"], route["regex_priority"], route["path_handling"]) == (False, 0, "v0")
        assert route["https_redirect_status_code"] == 426 and route["methods"] is None and route["hosts"] is None
        st, got = kong(lm, "curl -X GET http://localhost:8001/services/example_service/routes/example_route")
        assert st == 200 and got["id"] == route["id"]
        st, got = kong(lm, """curl --request PATCH \\
  --url localhost:8001/services/example_service/routes/example_route \\
  --data tags="tutorial" """)
        assert st == 200 and got["tags"] == ["tutorial"]
        st, lst = kong(lm, "curl http://localhost:8001/routes")
        assert st == 200 and [r["name"] for r in lst["data"]] == ["example_route"] and lst["next"] is None
        st, body = proxy(lm, "/mock/anything")
        assert st == 200 and json.loads(body)["path"] == "/anything"

        # PATCH strip_path: the proxy follows
        st, got = kong(lm, "curl -X PATCH http://localhost:8001/routes/example_route --data strip_path=false")
        assert st == 200 and got["strip_path"] is False
        st, body = proxy(lm, "/mock/anything")
        assert st == 200 and json.loads(body)["path"] == "/mock/anything"

        # key-auth: consumers, plugin, keys
        st, consumer = kong(lm, "curl -i -X POST http://localhost:8001/consumers/ --data username=luka")
        assert st == 201 and consumer["username"] == "luka" and consumer["custom_id"] is None
        st, plugin = kong(lm, """curl -i -X POST http://localhost:8001/plugins/ \\
  --data "name=key-auth" \\
  --data "config.key_names=apikey" """)
        assert st == 201, plugin
        assert plugin["config"]["key_names"] == ["apikey"] and plugin["config"]["hide_credentials"] is False
        assert plugin["service"] is None and plugin["route"] is None and plugin["enabled"] is True
        assert plugin["protocols"] == ["grpc", "grpcs", "http", "https"]
        st, _ = proxy(lm, "/mock/anything")
        assert st == 401
        st, key = kong(lm, "curl -i -X POST http://localhost:8001/consumers/luka/key-auth --data key=top-secret-key")
        assert st == 201 and key["key"] == "top-secret-key" and key["consumer"] == {"id": consumer["id"]}
        st, body = proxy(lm, "/mock/anything", {"apikey": "top-secret-key"})
        assert st == 200
        hdrs = {k.lower(): v for k, v in json.loads(body)["headers"]}
        assert hdrs["x-consumer-username"] == "luka" and hdrs["x-consumer-id"] == consumer["id"]
        # a generated key
        st, gen = kong(lm, "curl -X POST http://localhost:8001/consumers/luka/key-auth")
        assert st == 201 and len(gen["key"]) == 32
        st, body = proxy(lm, "/mock/anything", {"apikey": gen["key"]})
        assert st == 200
        st, keys = kong(lm, "curl http://localhost:8001/consumers/luka/key-auth")
        assert st == 200 and sorted(k["key"] for k in keys["data"]) == sorted(["top-secret-key", gen["key"]])
        st, got = kong(lm, f"curl -X PATCH http://localhost:8001/plugins/{plugin['id']} --data enabled=false")
        assert st == 200 and got["enabled"] is False
        st, _ = proxy(lm, "/mock/anything")
        assert st == 200

        # load balancing: upstream + targets, the service points at it
        st, ups = kong(lm, "curl -X POST http://localhost:8001/upstreams --data name=example_upstream")
        assert st == 201 and ups["algorithm"] == "round-robin" and ups["slots"] == 10000
        assert ups["healthchecks"]["active"]["http_path"] == "/" and ups["hash_on"] == "none"
        for u in (up, up2):
            st, t = kong(lm, f"curl -X POST http://localhost:8001/upstreams/example_upstream/targets "
                             f"--data target='127.0.0.1:{u.port}'")
            assert st == 201, t
            assert t["weight"] == 100 and t["upstream"] == {"id": ups["id"]} and t["target"] == f"127.0.0.1:{u.port}"
        st, dup = kong(lm, f"curl -X POST http://localhost:8001/upstreams/example_upstream/targets "
                           f"--data target='127.0.0.1:{up.port}'")
        assert st == 409 and dup["code"] == 5
        st, got = kong(lm, "curl -X PATCH http://localhost:8001/services/example_service --data host='example_upstream'")
        assert st == 200 and got["host"] == "example_upstream"
        seen = set()
        for _ in range(8):
            st, body = proxy(lm, "/mock/x")
            assert st == 200
            seen.add(json.loads(body)["upstream"])
        assert seen == {"up", "up2"}
        # a target removed by its address
        st, _ = kong(lm, f"curl -X DELETE http://localhost:8001/upstreams/example_upstream/targets/127.0.0.1:{up2.port}")
        assert st == 204
        for _ in range(4):
            st, body = proxy(lm, "/mock/x")
            assert st == 200 and json.loads(body)["upstream"] == "up"

        # deleting: a service with routes is refused (Kong's foreign key violation)
        st, err = kong(lm, "curl -X DELETE http://localhost:8001/services/example_service")
        assert st == 400 and err["code"] == 4 and err["fields"] == {"@referenced_by": "routes"}
        st, _ = kong(lm, "curl -X DELETE http://localhost:8001/routes/example_route")
        assert st == 204
        st, _ = proxy(lm, "/mock/x")
        assert st == 404
        st, _ = kong(lm, "curl -X DELETE http://localhost:8001/services/example_service")
        assert st == 204
        st, _ = kong(lm, "curl -X DELETE http://localhost:8001/services/example_service")
        assert st == 204  # Kong: deleting what is not there is fine
        st, got = kong(lm, "curl http://localhost:8001/services/example_service")
        assert st == 404 and got == {"message": "Not found"}
        # a consumer takes its credentials with it
        st, _ = kong(lm, "curl -X DELETE http://localhost:8001/consumers/luka")
        assert st == 204
        st, lst = kong(lm, "curl http://localhost:8001/key-auths")
        assert st == 200 and lst["data"] == []
    finally:
        lm.stop()
        up.stop()
        up2.stop()


def test_restart_keeps_everything_and_file_ids_are_stable():
    up = Upstream(name="up").start()
    cfg = f"""_format_version: "2.1"
services:
- name: file-svc
  url: http://127.0.0.1:{up.port}/base
  tags: [from-file]
  routes:
  - paths: ["/file"]
    plugins:
    - name: request-termination
      config: {{status_code: 418, message: teapot}}
consumers:
- username: ann
  keyauth_credentials:
  - key: ann-key
  acls:
  - group: admins
"""
    lm = Limen(cfg, workers=1).start()
    state = lm.state_dir
    try:
        st, svcs = kong(lm, "curl http://localhost:8001/services")
        assert st == 200 and len(svcs["data"]) == 1
        file_svc = svcs["data"][0]
        assert len(file_svc["id"]) == UUID_LEN and file_svc["path"] == "/base" and file_svc["tags"] == ["from-file"]
        st, routes = kong(lm, "curl http://localhost:8001/routes")
        file_route = routes["data"][0]
        assert file_route["service"] == {"id": file_svc["id"]} and len(file_route["id"]) == UUID_LEN
        st, plugins = kong(lm, f"curl http://localhost:8001/routes/{file_route['id']}/plugins")
        assert st == 200 and plugins["data"][0]["config"]["status_code"] == 418
        st, acls = kong(lm, "curl http://localhost:8001/consumers/ann/acls")
        assert st == 200 and [a["group"] for a in acls["data"]] == ["admins"]
        # a write on a nested 2.1 document keeps everything it had
        st, _ = kong(lm, "curl -X POST http://localhost:8001/services --data name=api-svc --data host=127.0.0.1 "
                         f"--data port={up.port}")
        assert st == 201
        st, _ = kong(lm, "curl -X POST http://localhost:8001/services/api-svc/routes --data 'paths[]=/api' "
                         "--data 'methods[]=GET' --data 'hosts[]=example.com' --data name=api-route")
        assert st == 201
        assert proxy(lm, "/file")[0] == 418
        st, body = proxy(lm, "/api/x", {"Host": "example.com"})
        assert st == 200 and json.loads(body)["path"] == "/x"
        before = {k: kong(lm, f"curl http://localhost:8001/{k}")[1]["data"]
                  for k in ("services", "routes", "plugins", "consumers", "key-auths", "acls")}
    finally:
        lm.stop()
    # the same state dir, no --config: nothing lost, same ids
    lm = Limen(workers=1, state_dir=state).start()
    try:
        after = {k: kong(lm, f"curl http://localhost:8001/{k}")[1]["data"]
                 for k in ("services", "routes", "plugins", "consumers", "key-auths", "acls")}
        assert after == before
        assert proxy(lm, "/file")[0] == 418
        assert proxy(lm, "/api/x", {"Host": "example.com"})[0] == 200
    finally:
        lm.stop()
    # the file alone, on another instance: the same generated ids
    lm = Limen(cfg, workers=1).start()
    try:
        st, svcs = kong(lm, "curl http://localhost:8001/services")
        assert svcs["data"][0]["id"] == file_svc["id"]
        st, routes = kong(lm, "curl http://localhost:8001/routes")
        assert routes["data"][0]["id"] == file_route["id"]
    finally:
        lm.stop()
        up.stop()


def test_refused_writes_change_nothing():
    up = Upstream(name="up").start()
    lm = start()
    try:
        st, svc = kong(lm, f"curl -X POST http://localhost:8001/services --data name=s1 --data url=http://127.0.0.1:{up.port}")
        assert st == 201
        st, _ = kong(lm, "curl -X POST http://localhost:8001/services/s1/routes --data 'paths[]=/s1' --data name=r1")
        assert st == 201
        h = config_hash(lm)
        # schema violations, with Kong's shape
        st, err = kong(lm, "curl -X POST http://localhost:8001/services --data name=s2")
        assert st == 400 and err["code"] == 2 and err["name"] == "schema violation"
        assert err["fields"]["host"] == "required field missing"
        assert err["message"] == "schema violation (host: required field missing)"
        st, err = kong(lm, "curl -X POST http://localhost:8001/services --data name=s2 --data host=127.0.0.9 --data port=abc")
        assert st == 400 and err["fields"] == {"port": "expected an integer"}
        st, err = kong(lm, "curl -X POST http://localhost:8001/routes --data 'paths[]=nope' --data service.name=s1")
        assert st == 400 and err["fields"]["paths"][0].startswith("should start with: /")
        st, err = kong(lm, "curl -X PATCH http://localhost:8001/routes/r1 --data 'methods[]=get'")
        assert st == 400 and "methods" in err["fields"]
        st, err = kong(lm, "curl -X POST http://localhost:8001/plugins --data name=key-auth --data config.nope=1")
        assert st == 400 and err["fields"] == {"config": {"nope": "unknown field"}}
        st, err = kong(lm, "curl -X POST http://localhost:8001/routes/r1/plugins --data name=proxy-cache "
                           "--data config.cache_ttl=5")
        assert st == 400 and "name" in err["fields"]
        # unique violations: 409
        st, err = kong(lm, "curl -X POST http://localhost:8001/services --data name=s1 --data host=127.0.0.9")
        assert st == 409 and err == {"code": 5, "name": "unique constraint violation",
                                     "message": "UNIQUE violation detected on '{name=\"s1\"}'",
                                     "fields": {"name": "s1"}}
        # a reference to nothing
        st, err = kong(lm, "curl -X POST http://localhost:8001/routes --data 'paths[]=/x' "
                           "--data service.id=6f2b5d1c-0000-4000-8000-000000000000")
        assert st == 400 and err["code"] == 4 and err["name"] == "foreign key violation"
        # unknown entities and parents
        assert kong(lm, "curl -X PATCH http://localhost:8001/services/nope --data retries=1")[0] == 404
        assert kong(lm, "curl -X POST http://localhost:8001/services/nope/routes --data 'paths[]=/x'")[0] == 404
        assert kong(lm, "curl -X GET http://localhost:8001/consumers/nope/key-auth")[0] == 404
        st, err = kong(lm, "curl -X POST http://localhost:8001/services -H 'Content-Type: application/json' -d '{bad'")
        assert st == 400
        assert config_hash(lm) == h
        st, body = proxy(lm, "/s1/x")
        assert st == 200
        st, lst = kong(lm, "curl http://localhost:8001/services")
        assert [s["name"] for s in lst["data"]] == ["s1"]
    finally:
        lm.stop()
        up.stop()


def test_bodies_json_multipart_put_and_pagination_tags():
    lm = start()
    try:
        st, s = kong(lm, """curl -X POST http://localhost:8001/services -H 'Content-Type: application/json' \\
            -d '{"name": "js", "host": "127.0.0.2", "protocol": "https", "tags": ["red", "blue"]}'""")
        assert st == 201 and s["port"] == 443 and s["tags"] == ["red", "blue"]
        st, s2 = kong(lm, "curl -X POST http://localhost:8001/services -F name=mp -F host=127.0.0.3 -F port=8080 "
                          "-F 'tags[]=red'")
        assert st == 201 and s2["port"] == 8080 and s2["tags"] == ["red"]
        st, r = kong(lm, "curl -X POST http://localhost:8001/routes --data service.id=" + s["id"] +
                         " --data 'paths[]=/a' --data-urlencode 'paths[]=~/b/(?<n>\\d+)$' --data methods=GET --data methods=POST"
                         " --data headers.x-version=1 --data regex_priority=5")
        assert st == 201, r
        assert r["paths"] == ["/a", "~/b/(?<n>\\d+)$"] and r["methods"] == ["GET", "POST"]
        assert r["headers"] == {"x-version": ["1"]} and r["regex_priority"] == 5
        # PUT: create by name, then replace (defaults come back)
        st, p = kong(lm, "curl -X PUT http://localhost:8001/services/put-svc --data host=127.0.0.4 --data retries=1")
        assert st == 200 and p["name"] == "put-svc" and p["retries"] == 1
        st, p2 = kong(lm, "curl -X PUT http://localhost:8001/services/put-svc --data host=127.0.0.5")
        assert st == 200 and p2["id"] == p["id"] and p2["retries"] == 5 and p2["host"] == "127.0.0.5"
        assert p2["created_at"] == p["created_at"]
        # PATCH with null resets to the default; url replaces protocol/host/port/path
        st, p3 = kong(lm, """curl -X PATCH http://localhost:8001/services/put-svc -H 'Content-Type: application/json' \\
            -d '{"retries": null, "url": "https://127.0.0.6:8443/v1"}'""")
        assert st == 200 and p3["retries"] == 5
        assert (p3["protocol"], p3["host"], p3["port"], p3["path"]) == ("https", "127.0.0.6", 8443, "/v1")
        for i in range(7):
            assert kong(lm, f"curl -X POST http://localhost:8001/consumers --data username=u{i} "
                            f"--data 'tags[]={'even' if i % 2 == 0 else 'odd'}'")[0] == 201
        names, url, pages = [], "http://localhost:8001/consumers?size=3", 0
        while url:
            st, page = kong(lm, f"curl '{url}'")
            assert st == 200 and len(page["data"]) <= 3
            names += [c["username"] for c in page["data"]]
            pages += 1
            if page["next"]:
                assert page["offset"] and page["next"].startswith("/consumers?offset=")
                url = "http://localhost:8001" + page["next"]
            else:
                url = None
        assert names == [f"u{i}" for i in range(7)] and pages == 3
        st, page = kong(lm, "curl 'http://localhost:8001/consumers?tags=even'")
        assert [c["username"] for c in page["data"]] == ["u0", "u2", "u4", "u6"]
        st, page = kong(lm, "curl 'http://localhost:8001/services?tags=red,blue'")
        assert [c["name"] for c in page["data"]] == ["js"]
        st, page = kong(lm, "curl 'http://localhost:8001/services?tags=blue/red'")
        assert [c["name"] for c in page["data"]] == ["js", "mp"]
        st, err = kong(lm, "curl 'http://localhost:8001/services?size=abc'")
        assert st == 400 and err["code"] == 9
        st, err = kong(lm, "curl 'http://localhost:8001/services?offset=%21%21'")
        assert st == 400 and err["code"] == 7 and err["name"] == "invalid offset"
        # info endpoints
        st, root = kong(lm, "curl http://localhost:8001/")
        assert st == 200 and "key-auth" in root["plugins"]["available_on_server"]
        st, en = kong(lm, "curl http://localhost:8001/plugins/enabled")
        assert st == 200 and "key-auth" in en["enabled_plugins"]
        st, sch = kong(lm, "curl http://localhost:8001/schemas/plugins/key-auth")
        cfg = [f["config"] for f in sch["fields"] if "config" in f][0]
        assert st == 200 and {"key_names": {"type": "array", "default": ["apikey"], "elements": {"type": "string"}}}.items() \
            <= {list(f)[0]: {k: v for k, v in list(f.values())[0].items() if k in ("type", "default", "elements")}
                for f in cfg["fields"]}.items()
        st, sch = kong(lm, "curl http://localhost:8001/schemas/services")
        assert st == 200 and {"retries": {"type": "integer", "default": 5}} in sch["fields"]
        st, v = kong(lm, "curl -X POST http://localhost:8001/schemas/plugins/validate --data name=key-auth "
                         "--data config.hide_credentials=true")
        assert st == 200 and v == {"message": "schema validation successful"}
        st, v = kong(lm, "curl -X POST http://localhost:8001/schemas/routes/validate --data 'paths[]=x'")
        assert st == 400 and v["code"] == 2
        assert kong(lm, "curl http://localhost:8001/schemas/plugins/nope")[0] == 404
    finally:
        lm.stop()


def test_concurrent_writers_lose_nothing():
    lm = start()
    try:
        errors = []

        def writer(w):
            for i in range(10):
                st, body = kong(lm, f"curl -X POST http://localhost:8001/services --data name=w{w}-s{i} "
                                    f"--data host=127.0.0.{w + 1}")
                if st != 201:
                    errors.append((st, body))

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        st, lst = kong(lm, "curl 'http://localhost:8001/services?size=1000'")
        assert sorted(s["name"] for s in lst["data"]) == sorted(f"w{w}-s{i}" for w in range(4) for i in range(10))
    finally:
        lm.stop()


def test_entity_write_after_a_queued_post_config_keeps_both():
    """An entity write is built when its turn in the apply queue comes, so it edits the
    configuration a POST /config queued before it produced, never the older one."""
    lm = start()
    try:
        big = {"_format_version": "3.0",
               "services": [{"name": f"bulk-{i}", "host": "127.0.0.9", "routes": [{"paths": [f"/bulk/{i}"]}]}
                            for i in range(3000)]}
        result = {}

        def post_config():
            result["config"] = lm.admin("POST", "/config", json.dumps(big), {"Content-Type": "application/json"})[0]

        t = threading.Thread(target=post_config)
        t.start()
        time.sleep(0.15)  # the big document is being received, parsed or compiled
        st, _ = kong(lm, "curl -X POST http://localhost:8001/services --data name=late --data host=127.0.0.10")
        t.join()
        assert result["config"] == 201 and st == 201
        st, lst = kong(lm, "curl 'http://localhost:8001/services?size=1000'")
        names = {s["name"] for s in lst["data"]}
        while lst.get("offset"):
            st, lst = kong(lm, f"curl 'http://localhost:8001/services?size=1000&offset={lst['offset']}'")
            names |= {s["name"] for s in lst["data"]}
        # the late write either landed after the bulk config (both present) or before it (replaced by it)
        assert "bulk-2999" in names
        assert len(names) in (3000, 3001)
        if "late" not in names:  # applied first, then the POST /config replaced everything: that is the order
            st, _ = kong(lm, "curl http://localhost:8001/services/late")
            assert st == 404
    finally:
        lm.stop()


def test_managed_refuses_entity_writes_as_kong_dbless():
    up = Upstream(name="up").start()
    cfg = f"""_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{up.port}
  routes: [{{name: r, paths: [/]}}]
"""
    lm = Limen(cfg, workers=1, extra_args=["--managed"]).start()
    try:
        h = config_hash(lm)
        st, err = kong(lm, "curl -X POST http://localhost:8001/services --data name=x --data host=127.0.0.9")
        assert st == 405 and err == {"code": 12, "name": "operation unsupported",
                                     "message": "cannot create 'services' entities when not using a database"}
        st, err = kong(lm, "curl -X PUT http://localhost:8001/routes/r --data 'paths[]=/x'")
        assert st == 405 and err["message"] == "cannot create or update 'routes' entities when not using a database"
        st, err = kong(lm, "curl -X PATCH http://localhost:8001/services/s --data retries=1")
        assert st == 405 and err["message"] == "cannot update 'services' entities when not using a database"
        st, err = kong(lm, "curl -X DELETE http://localhost:8001/routes/r")
        assert st == 405 and err["message"] == "cannot delete 'routes' entities when not using a database"
        st, err = kong(lm, "curl -X POST http://localhost:8001/consumers/c/key-auth --data key=k")
        assert st == 405 and "'keyauth_credentials'" in err["message"]
        assert config_hash(lm) == h
        # reads and POST /config still work
        st, got = kong(lm, "curl http://localhost:8001/services/s")
        assert st == 200 and got["name"] == "s"
        st, _ = kong(lm, f"curl -X POST http://localhost:8001/config -H 'Content-Type: application/json' "
                         f"-d '{{\"_format_version\": \"3.0\", \"services\": [{{\"name\": \"t\", \"url\": \"http://127.0.0.1:{up.port}\"}}]}}'")
        assert st == 201
        wait_until(lambda: kong(lm, "curl http://localhost:8001/services/t")[0] == 200, what="new config")
    finally:
        lm.stop()
        up.stop()

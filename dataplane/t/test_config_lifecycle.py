"""Black-box tests of the process lifecycle: restart from the state dir,
SIGHUP reloads, SIGTERM drain, --check, ${VAR} substitution, admin listener
security defaults."""
import json
import os
import signal
import socket
import stat
import subprocess
import threading
import time

from conftest import LIMEN_BIN, Limen, free_port, simple_config, wait_until


def routes_config(port, *paths):
    routes = "".join(f"  - name: r{i}\n    paths: [\"{p}\"]\n" for i, p in enumerate(paths))
    return f"""_format_version: "3.0"
services:
- name: echo
  url: http://127.0.0.1:{port}
  routes:
{routes}"""


def run_check(path, env=None):
    e = dict(os.environ)
    e.setdefault("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1")
    if env:
        e.update(env)
    p = subprocess.run([LIMEN_BIN, "--check", path], capture_output=True, text=True, timeout=30, env=e)
    out = p.stdout + p.stderr
    for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert bad not in out, out
    return p.returncode, p.stdout


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def refused(port, host="127.0.0.1"):
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect((host, port))
        # accepted by a socket still in the backlog? a request must not be served
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        return s.recv(100) == b""
    except OSError:
        return True
    finally:
        s.close()


# --------------------------------------------------------------------------
# 4. restart from the state dir
# --------------------------------------------------------------------------

def test_restart_serves_posted_config_from_state_dir(limen_factory, upstream, tmp_path):
    state = str(tmp_path / "state")
    l1 = limen_factory(routes_config(upstream.port, "/file"), state_dir=state).start()
    assert l1.request("GET", "/file/x")[0] == 200
    st, body = l1.admin_json("POST", "/config", routes_config(upstream.port, "/posted"))
    assert st == 201
    posted_hash = body["configuration_hash"]

    state_file = os.path.join(state, "config.json")
    assert stat.S_IMODE(os.stat(state_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    sock_mode = os.stat(l1.admin_sock).st_mode
    assert stat.S_ISSOCK(sock_mode) and stat.S_IMODE(sock_mode) == 0o600
    assert json.loads(open(state_file).read())["services"][0]["routes"][0]["paths"] == ["/posted"]
    assert l1.stop() == 0
    assert not os.path.exists(l1.admin_sock)  # removed on exit

    # again, without --config: the posted config, with the same hash
    l2 = limen_factory(None, state_dir=state).start()
    assert "--config" not in l2.args
    assert l2.status()["configuration_hash"] == posted_hash
    assert l2.request("GET", "/posted/x")[0] == 200
    assert l2.request("GET", "/file/x")[0] == 404
    assert "restored" in l2.read_log()
    # the restored config, posted again with check_hash, is unchanged
    st, _ = l2.admin("POST", "/config?check_hash=1", routes_config(upstream.port, "/posted"))
    assert st == 304
    assert l2.stop() == 0


def test_start_without_any_config_then_post(limen_factory, upstream, tmp_path):
    # an empty state dir and no --config: up, every request 404, Kong's
    # "no configuration yet" hash
    l = limen_factory(None, state_dir=str(tmp_path / "empty")).start()
    assert l.status()["configuration_hash"] == "0" * 32
    assert l.request("GET", "/posted/x")[0] == 404
    st, _ = l.admin_json("POST", "/config", routes_config(upstream.port, "/late"))
    assert st == 201
    assert l.request("GET", "/late/x")[0] == 200
    # and a config without routes can be posted
    st, _ = l.admin_json("POST", "/config", '_format_version: "3.0"\n')
    assert st == 201
    assert l.request("GET", "/late/x")[0] == 404


def test_corrupt_state_file_is_reported(limen_factory, tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    write(str(state / "config.json"), '{"_format_version": "3.0", "services": [{"name": "x"')
    l = limen_factory(None, state_dir=str(state))
    try:
        l.start()
    except RuntimeError as e:  # refusing to start is fine, as long as it says why
        assert "config.json" in str(e)
        l.proc.wait(5)
        assert l.proc.returncode != 0
        l.log.close()
        return
    assert "config.json" in l.read_log()  # serving nothing is fine too, with the reason logged


# --------------------------------------------------------------------------
# 5. SIGHUP
# --------------------------------------------------------------------------

def test_sighup_reloads_config_file(limen_factory, upstream):
    l = limen_factory(routes_config(upstream.port, "/v1")).start()
    h1 = l.status()["configuration_hash"]
    assert l.request("GET", "/v1/x")[0] == 200
    write(l.config_path, routes_config(upstream.port, "/v2"))
    l.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: l.status()["configuration_hash"] != h1, what="reload")
    assert l.request("GET", "/v2/x")[0] == 200
    assert l.request("GET", "/v1/x")[0] == 404
    # the reload is persisted like any apply
    assert json.loads(open(os.path.join(l.state_dir, "config.json")).read())["services"][0]["routes"][0]["paths"] \
        == ["/v2"]

    # an invalid edit: the old config keeps serving, the errors are logged with their paths
    h2 = l.status()["configuration_hash"]
    write(l.config_path, routes_config(upstream.port, "v3-no-slash").replace("url: ", "colour: blue\n  url: "))
    l.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "services[0].routes[0].paths[0]" in l.read_log(), what="reload error in the log")
    log = l.read_log()
    assert "services[0].colour: unknown field" in log
    assert l.status()["configuration_hash"] == h2
    assert l.request("GET", "/v2/x")[0] == 200

    # a missing file: logged, still serving
    os.rename(l.config_path, l.config_path + ".gone")
    l.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "cannot read" in l.read_log(), what="missing file error")
    assert l.request("GET", "/v2/x")[0] == 200
    assert l.proc.poll() is None


def test_sighup_without_config_file_is_harmless(limen_factory, upstream, tmp_path):
    state = str(tmp_path / "s")
    assert limen_factory(simple_config(upstream.port), state_dir=state).start().stop() == 0
    l = limen_factory(None, state_dir=state).start()
    h = l.status()["configuration_hash"]
    l.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "SIGHUP" in l.read_log(), what="SIGHUP log line")
    assert l.status()["configuration_hash"] == h
    assert l.request("GET", "/x")[0] == 200


# --------------------------------------------------------------------------
# 6. SIGTERM drain
# --------------------------------------------------------------------------

def test_sigterm_drains_inflight_request(limen_factory, upstream):
    l = limen_factory(simple_config(upstream.port), extra_args=["--drain-timeout", "10000"]).start()
    # an idle keep-alive connection is closed by the drain, not left hanging
    idle = l.conn()
    idle.request("GET", "/idle")
    r = idle.getresponse()
    r.read()
    assert r.status == 200

    res = {}

    def slow():
        res["r"] = l.request("GET", "/sleep/1500", timeout=10)
        res["t"] = time.time()

    t = threading.Thread(target=slow)
    t.start()
    wait_until(lambda: any(r["path"] == "/sleep/1500" for r in upstream.requests), what="slow request upstream")
    t0 = time.time()
    l.proc.send_signal(signal.SIGTERM)
    # new connections are refused shortly after
    wait_until(lambda: refused(l.port), timeout=2, what="listener closed")
    assert time.time() - t0 < 1.4  # while the slow request is still in flight
    assert t.is_alive()
    t.join(10)
    st, h, body = res["r"]
    assert st == 200 and json.loads(body)["path"] == "/sleep/1500"
    l.proc.wait(10)
    assert time.time() - t0 < 4
    assert l.stop() == 0
    idle.close()


def test_sigterm_drain_timeout_cuts_long_request(limen_factory, upstream):
    l = limen_factory(simple_config(upstream.port), extra_args=["--drain-timeout", "500"]).start()
    res = {}

    def slow():
        try:
            res["r"] = l.request("GET", "/sleep/5000", timeout=10)
        except Exception as e:
            res["r"] = e

    t = threading.Thread(target=slow)
    t.start()
    wait_until(lambda: any(r["path"] == "/sleep/5000" for r in upstream.requests), what="slow request upstream")
    t0 = time.time()
    l.proc.send_signal(signal.SIGTERM)
    l.proc.wait(5)
    elapsed = time.time() - t0
    assert elapsed < 2.5, elapsed
    t.join(5)
    assert not t.is_alive()
    assert isinstance(res["r"], Exception) or res["r"][0] != 200, res
    assert l.stop() == 0


def test_signals_during_drain(limen_factory, upstream):
    """While draining, SIGHUP is ignored (it must not kill the process) and a
    second SIGTERM closes the in-flight requests at once."""
    l = limen_factory(simple_config(upstream.port), extra_args=["--drain-timeout", "20000"]).start()
    res = {}

    def slow(key, ms):
        try:
            res[key] = l.request("GET", f"/sleep/{ms}", timeout=15)[0]
        except Exception as e:
            res[key] = e

    t1 = threading.Thread(target=slow, args=("short", 1000))
    t2 = threading.Thread(target=slow, args=("long", 8000))
    t1.start()
    t2.start()
    wait_until(lambda: len([r for r in upstream.requests if r["path"].startswith("/sleep/")]) == 2, what="upstream")
    l.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    l.proc.send_signal(signal.SIGHUP)
    t1.join(10)
    assert res["short"] == 200, res
    assert l.proc.poll() is None  # still draining the long one
    t0 = time.time()
    l.proc.send_signal(signal.SIGTERM)
    l.proc.wait(5)
    assert time.time() - t0 < 2
    t2.join(5)
    assert res["long"] != 200
    assert l.stop() == 0
    log = l.read_log()
    assert "SIGHUP: ignored while stopping" in log and "SIGTERM again" in log


def test_sigterm_idle_exits_promptly_and_sigint_too(limen_factory, upstream):
    for sig in (signal.SIGTERM, signal.SIGINT):
        l = limen_factory(simple_config(upstream.port)).start()
        assert l.request("GET", "/x")[0] == 200
        t0 = time.time()
        l.proc.send_signal(sig)
        l.proc.wait(5)
        assert time.time() - t0 < 2
        assert l.stop() == 0
        assert "stopped" in l.read_log()


def test_sigterm_while_config_apply_in_flight(limen_factory, upstream):
    l = limen_factory(simple_config(upstream.port)).start()
    svcs = "".join(f"- name: s{i}\n  url: http://127.0.0.1:{upstream.port}\n  routes:\n  - paths: [\"/p{i}\"]\n"
                   for i in range(3000))
    big = '_format_version: "3.0"\nservices:\n' + svcs
    res = {}

    def post():
        try:
            res["r"] = l.admin("POST", "/config", big)
        except Exception as e:
            res["r"] = e

    t = threading.Thread(target=post)
    t.start()
    time.sleep(0.05)
    l.proc.send_signal(signal.SIGTERM)
    t.join(30)
    l.proc.wait(15)
    assert l.stop() == 0  # and no leak report
    if isinstance(res["r"], tuple):  # answered before the admin API went away
        assert res["r"][0] in (201, 503), res["r"]


# --------------------------------------------------------------------------
# 7. --check and ${VAR}
# --------------------------------------------------------------------------

def test_check_valid_and_invalid(tmp_path):
    good = str(tmp_path / "good.yml")
    write(good, simple_config(8080))
    rc, out = run_check(good)
    assert rc == 0 and "OK" in out, out

    bad = str(tmp_path / "bad.yml")
    write(bad, """_format_version: "3.0"
services:
- name: s
  host: example.com
  port: -1
  routes:
  - name: r
    paths: ["nope"]
    methods: [GET]
    bogus: true
routes:
- name: orphan
  service: ghost
  paths: ["/o"]
""")
    rc, out = run_check(bad)
    assert rc == 1, out
    lines = out.strip().splitlines()
    for want in ("services[0].port: ", "services[0].routes[0].paths[0]: should start with",
                 "services[0].routes[0].bogus: unknown field", "routes[0].service: "):
        assert any(line.startswith(f"{bad}: {want}") for line in lines), (want, out)
    assert lines[-1] == f"{bad}: 4 errors"

    rc, out = run_check(str(tmp_path / "missing.yml"))
    assert rc == 1 and "missing.yml" in out

    syntax = str(tmp_path / "syntax.yml")
    write(syntax, "_format_version: \"3.0\"\nservices:\n  - name: [unclosed\n")
    rc, out = run_check(syntax)
    assert rc == 1 and "syntax.yml" in out


def test_env_substitution(limen_factory, upstream, tmp_path):
    cfg = f"""_format_version: "3.0"
services:
- name: echo
  host: "${{MY_HOST}}"
  port: {upstream.port}
  routes:
  - name: r
    paths: ["/${{MY_KEY}}"]
"""
    path = str(tmp_path / "kong.yml")
    write(path, cfg)
    env = {"MY_KEY": "sekrit", "MY_HOST": "127.0.0.1"}
    rc, out = run_check(path, env)
    assert rc == 0, out

    # unset: refused, naming the variable
    assert "MY_KEY" not in os.environ
    rc, out = run_check(path, {"MY_HOST": "127.0.0.1"})
    assert rc == 1 and "MY_KEY" in out, out

    l = limen_factory(config_path=path, env=env).start()
    assert l.request("GET", "/sekrit/x")[0] == 200
    assert l.request("GET", "/x")[0] == 404

    # SIGHUP re-reads the file with the variables of the process
    write(path, cfg.replace('["/${MY_KEY}"]', '["/${MY_KEY}-2"]'))
    h = l.status()["configuration_hash"]
    l.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: l.status()["configuration_hash"] != h, what="reload")
    assert l.request("GET", "/sekrit-2/x")[0] == 200

    # ${VAR} is not substituted in documents posted to the admin API: the
    # literal "${MY_KEY}" is not a valid path
    h = l.status()["configuration_hash"]
    st, body = l.admin_json("POST", "/config", cfg.replace("${MY_HOST}", "127.0.0.1"))
    assert st == 400, body
    assert body["fields"]["services"][0]["routes"][0]["paths"]
    assert l.status()["configuration_hash"] == h

    # start-up with the variable unset fails and names it
    bad = Limen(config_path=path, env={"MY_HOST": "127.0.0.1"})
    bad.env.pop("MY_KEY", None)
    try:
        bad.start()
        raise AssertionError("started without MY_KEY")
    except RuntimeError as e:
        assert "MY_KEY" in str(e)
    bad.proc.wait(5)
    assert bad.proc.returncode != 0
    bad.log.close()
    for s in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert s not in bad.read_log()


# --------------------------------------------------------------------------
# 10. admin listener security defaults
# --------------------------------------------------------------------------

def _start_fail(l):
    try:
        l.start()
    except RuntimeError as e:
        l.proc.wait(5)
        l.log.close()
        return l.proc.returncode, str(e)
    raise AssertionError("started: " + l.read_log())


def test_admin_tcp_non_loopback_needs_token(limen_factory, upstream):
    port = free_port()
    l = Limen(simple_config(upstream.port), extra_args=["--admin-listen", f"0.0.0.0:{port}"])
    rc, msg = _start_fail(l)
    assert rc != 0
    assert "admin-token" in msg and "loopback" in msg, msg
    for s in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert s not in msg

    # with a token it starts
    limen_factory(simple_config(upstream.port),
                  extra_args=["--admin-listen", f"0.0.0.0:{port}", "--admin-token", "s3cret"]).start()
    st, _ = _tcp_admin(port, "GET", "/status")
    assert st == 401
    st, body = _tcp_admin(port, "GET", "/status", headers={"Authorization": "Bearer s3cret"})
    assert st == 200 and json.loads(body)["configuration_hash"]


def _tcp_admin(port, method, path, body=None, headers=None):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def test_admin_token_on_loopback(limen_factory, upstream):
    port = free_port()
    l = limen_factory(simple_config(upstream.port),
                      extra_args=["--admin-listen", f"127.0.0.1:{port}", "--admin-token", "tok-123"]).start()
    h = l.status()["configuration_hash"]
    for hdrs in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer tok-1234"},
                 {"Authorization": "Bearer tok-12"}, {"Authorization": "Basic tok-123"}, {"Kong-Admin-Token": "x"}):
        st, body = _tcp_admin(port, "GET", "/services", headers=hdrs)
        assert st == 401, hdrs
        assert json.loads(body)["message"]
    # a POST without the token changes nothing
    st, _ = _tcp_admin(port, "POST", "/config", body=routes_config(upstream.port, "/evil"))
    assert st == 401
    assert l.status()["configuration_hash"] == h
    assert l.request("GET", "/evil/x")[1].get("x-up") == "up"  # the old catch-all

    st, body = _tcp_admin(port, "GET", "/services", headers={"Authorization": "Bearer tok-123"})
    assert st == 200 and json.loads(body)["data"][0]["name"] == "echo"
    st, body = _tcp_admin(port, "GET", "/services", headers={"Kong-Admin-Token": "tok-123"})
    assert st == 200
    st, body = _tcp_admin(port, "POST", "/config", body=routes_config(upstream.port, "/ok"),
                          headers={"Authorization": "Bearer tok-123"})
    assert st == 201
    assert l.request("GET", "/ok/x")[0] == 200


def test_admin_tcp_loopback_without_token_is_open(limen_factory, upstream):
    port = free_port()
    limen_factory(simple_config(upstream.port), extra_args=["--admin-listen", f"127.0.0.1:{port}"]).start()
    st, _ = _tcp_admin(port, "GET", "/status")
    assert st == 200


def test_bad_listen_addresses_fail_cleanly(upstream):
    for args in (["--proxy-listen", "nonsense"], ["--status-listen", "127.0.0.1:notaport"],
                 ["--admin-listen", "999.1.1.1:80"]):
        l = Limen(simple_config(upstream.port), extra_args=args)
        rc, msg = _start_fail(l)
        assert rc != 0, args
        for s in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            assert s not in msg, args


# --------------------------------------------------------------------------
# command line and start-up checks
# --------------------------------------------------------------------------

def test_bad_numbers_on_the_command_line():
    for args in (["--workers", "x"], ["--workers", "-1"], ["--workers", "2x"], ["--drain-timeout", "5s"],
                 ["--drain-timeout", "-5"], ["--nonsense"], ["--config"]):
        p = subprocess.run([LIMEN_BIN, *args], capture_output=True, text=True, timeout=20)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert args[0] in p.stderr, (args, p.stderr)
    p = subprocess.run([LIMEN_BIN, "--help"], capture_output=True, text=True, timeout=20)
    assert p.returncode == 0 and "--config" in p.stdout and "--drain-timeout" in p.stdout


def test_nested_state_dir_is_created(limen_factory, upstream, tmp_path):
    state = tmp_path / "a" / "b" / "state"
    l = limen_factory(simple_config(upstream.port), state_dir=str(state)).start()
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert os.path.exists(state / "config.json")
    assert l.request("GET", "/x")[0] == 200


def test_second_instance_does_not_steal_the_admin_socket(limen_factory, upstream):
    l1 = limen_factory(simple_config(upstream.port)).start()
    l2 = Limen(simple_config(upstream.port), extra_args=["--admin-listen", f"unix:{l1.admin_sock}"])
    rc, msg = _start_fail(l2)
    assert rc != 0 and "in use" in msg, msg
    # the first instance still answers on its socket
    st, body = l1.admin_json("GET", "/status")
    assert st == 200 and body["configuration_hash"]
    assert l1.stop() == 0
    # a stale socket left by a dead process is taken over
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(l1.admin_sock)
    s.close()
    l3 = limen_factory(simple_config(upstream.port), extra_args=["--admin-listen", f"unix:{l1.admin_sock}"]).start()
    l3.admin_sock = l1.admin_sock
    assert l3.admin_json("GET", "/status")[0] == 200


def test_proxy_accepts_as_soon_as_status_answers(limen_factory, upstream):
    """/status answering means ready: the proxy port must not refuse connections
    then (a start-up race once let the status listener beat the workers)."""
    for _ in range(3):
        l = limen_factory(simple_config(upstream.port), workers=2).start()
        assert l.request("GET", "/ready")[0] == 200
        assert l.stop() == 0


def test_get_config_redacts_secrets_except_on_the_unix_socket(limen_factory, upstream):
    port = free_port()
    doc = simple_config(upstream.port) + """consumers:
- username: alice
  keyauth_credentials: [{key: alice-api-key}]
  basicauth_credentials: [{username: alice, password: alice-password}]
  jwt_secrets: [{key: alice-iss, secret: alice-jwt-secret}]
  hmacauth_credentials: [{username: alice-h, secret: alice-hmac-secret}]
"""
    l = limen_factory(doc, extra_args=["--admin-listen", f"127.0.0.1:{port}", "--admin-token", "tok"]).start()
    st, body = _tcp_admin(port, "GET", "/config", headers={"Authorization": "Bearer tok"})
    assert st == 200
    text = json.loads(body)["config"]
    for secret in ("alice-api-key", "alice-password", "alice-jwt-secret", "alice-hmac-secret"):
        assert secret not in text, secret
    assert text.count("<redacted>") == 4
    assert "alice-iss" in text and '"alice-h"' in text  # identifiers are not secrets


def test_get_config_on_the_unix_socket_is_complete(limen_factory, upstream):
    doc = simple_config(upstream.port) + """consumers:
- username: bob
  keyauth_credentials: [{key: bob-api-key}]
"""
    l = limen_factory(doc).start()
    st, body = l.admin_json("GET", "/config")
    assert st == 200 and "bob-api-key" in body["config"]

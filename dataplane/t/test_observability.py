"""Access log, flags given as LIMEN_* environment variables, --help and --version."""
import json
import os
import subprocess

from conftest import LIMEN_BIN, simple_config


def _without_flag(args, flag):
    i = args.index(flag)
    return args[:i] + args[i + 2:]


def test_access_log_json_lines(limen_factory, upstream):
    log_path = None
    lm = limen_factory(simple_config(upstream.port, extra_routes="""  - name: api
    paths: ["/api"]
"""))
    log_path = os.path.join(lm.tmp, "access.log")
    lm.args += ["--access-log", log_path]
    lm.start()
    st, _, _ = lm.request("GET", "/api/x?y=1", headers={"X-Request-Id": "trace-123"})
    assert st == 200
    lm.stop()  # flushes nothing: every line is written when its request ends
    lines = [json.loads(l) for l in open(log_path)]
    assert len(lines) == 1
    rec = lines[0]
    assert rec["status"] == 200
    assert rec["method"] == "GET"
    assert rec["path"] == "/api/x"
    assert rec["service"] == "echo" and rec["route"] == "api"
    assert rec["request_id"] == "trace-123"
    assert rec["client_ip"] == "127.0.0.1"
    assert rec["bytes_out"] > 0 and rec["upstream_latency_ms"] >= 0
    # the record never carries header values (no secrets in logs)
    assert "headers" not in rec


def test_access_log_off_by_default(limen_factory, upstream):
    lm = limen_factory(simple_config(upstream.port)).start()
    assert lm.request("GET", "/")[0] == 200
    lm.stop()
    assert not [f for f in os.listdir(lm.tmp) if "access" in f]


def test_flags_from_environment(limen_factory, upstream):
    lm = limen_factory(simple_config(upstream.port), env={"LIMEN_WORKERS": "3", "LIMEN_LATENCY_HEADERS": "off"})
    lm.args = _without_flag(lm.args, "--workers")
    lm.start()
    assert lm.status()["workers"] == 3
    st, headers, _ = lm.request("GET", "/")
    assert st == 200
    assert "x-limen-upstream-latency" not in headers and "x-limen-proxy-latency" not in headers


def test_config_from_environment(limen_factory, upstream):
    lm = limen_factory(simple_config(upstream.port))
    path = lm.config_path
    lm.args = _without_flag(lm.args, "--config")
    lm.env["LIMEN_CONFIG"] = path
    lm.start()
    assert lm.request("GET", "/anything")[0] == 200


def test_help_and_version():
    out = subprocess.run([LIMEN_BIN, "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--config", "--proxy-listen", "--admin-listen", "--admin-token", "--status-listen", "--workers",
                 "--state-dir", "--access-log", "--no-latency-headers", "--drain-timeout", "--log-level", "--check",
                 "LIMEN_CONFIG", "LIMEN_WORKERS"):
        assert flag in out.stdout, flag
    out = subprocess.run([LIMEN_BIN, "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("limen-dataplane ")
    out = subprocess.run([LIMEN_BIN, "--bogus"], capture_output=True, text=True)
    assert out.returncode == 2 and "--bogus" in out.stderr

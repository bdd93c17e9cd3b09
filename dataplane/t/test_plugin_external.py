"""External plugins: a shared object built against lm_plugin.h, loaded with --plugin-dir."""
import os
import shutil
import subprocess

from conftest import LIMEN_BIN, ROOT, simple_config

HELLO_SO = os.path.join(ROOT, "build", "plugins", "hello.so")


def _plugin_dir(tmp_path, *sos):
    d = tmp_path / "plugins"
    d.mkdir()
    for so in sos:
        shutil.copy(so, d)
    return str(d)


def _config_with_hello(port, config="{greeting: hi there, deny_header: X-No-Entry}"):
    return simple_config(port) + f"""plugins:
- name: hello
  config: {config}
"""


def test_example_plugin_runs(limen_factory, upstream, tmp_path):
    lm = limen_factory(_config_with_hello(upstream.port),
                       extra_args=["--plugin-dir", _plugin_dir(tmp_path, HELLO_SO)]).start()
    st, headers, _ = lm.request("GET", "/x")
    assert st == 200
    assert headers["x-hello"] == "hi there"
    assert dict(upstream.requests[-1]["headers"])["X-Hello-Upstream"] == "hi there"
    st, headers, body = lm.request("GET", "/x", headers={"X-No-Entry": "1"})
    assert st == 418
    assert b"the hello plugin says no" in body
    assert headers["x-hello"] == "hi there"  # header_filter runs on plugin answers too
    assert "plugin hello (priority 700) loaded" in lm.read_log()


def test_example_plugin_config_errors(tmp_path):
    bad = tmp_path / "kong.yml"
    bad.write_text(_config_with_hello(1, "{greeting: '', deny_header: host, nope: 1}"))
    out = subprocess.run([LIMEN_BIN, "--plugin-dir", _plugin_dir(tmp_path, HELLO_SO), "--check", str(bad)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert "plugins[0].config.nope: unknown field" in out.stdout
    assert "plugins[0].config.greeting: length must be at least 1" in out.stdout


def test_unknown_without_plugin_dir(tmp_path):
    cfg = tmp_path / "kong.yml"
    cfg.write_text(_config_with_hello(1))
    out = subprocess.run([LIMEN_BIN, "--check", str(cfg)], capture_output=True, text=True)
    assert out.returncode == 1
    assert "plugin 'hello' not enabled" in out.stdout


def _build_so(tmp_path, name, source):
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    so = tmp_path / f"{name}.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-I", os.path.join(ROOT, "common"), "-I", os.path.join(ROOT, "dataplane"),
                    "-I/usr/include/cjson", "-o", str(so), str(src)], check=True)
    return str(so)


def test_bad_plugins_reported_and_skipped(limen_factory, upstream, tmp_path):
    wrong_abi = _build_so(tmp_path, "wrong_abi", '#include "lm_plugin.h"\n'
                          'const lm_plugin_ops_t limen_plugin = { .abi_version = 99, .name = "future", .priority = 1 };\n')
    no_symbol = _build_so(tmp_path, "no_symbol", "int something_else = 1;\n")
    clash = _build_so(tmp_path, "clash", '#include "lm_plugin.h"\n'
                      'const lm_plugin_ops_t limen_plugin = { .abi_version = LM_PLUGIN_ABI_VERSION, .name = "key-auth", .priority = 1 };\n')
    garbage = tmp_path / "garbage.so"
    garbage.write_bytes(b"not an ELF file")
    d = _plugin_dir(tmp_path, wrong_abi, no_symbol, clash, str(garbage), HELLO_SO)
    lm = limen_factory(_config_with_hello(upstream.port), extra_args=["--plugin-dir", d]).start()
    assert lm.request("GET", "/x")[1]["x-hello"] == "hi there"  # the good one still works
    log = lm.read_log()
    assert "wrong_abi.so not loaded: ABI version 99, this data plane speaks 1" in log
    assert "no_symbol.so not loaded: it exports no 'limen_plugin' symbol" in log
    assert "clash.so not loaded: a plugin named 'key-auth' already exists" in log
    assert "garbage.so not loaded" in log


def test_shared_state_survives_config_swaps(limen_factory, upstream, tmp_path):
    lm = limen_factory(_config_with_hello(upstream.port, "{greeting: counted}"),
                       extra_args=["--plugin-dir", _plugin_dir(tmp_path, HELLO_SO)], workers=2).start()
    counts = [int(lm.request("GET", "/x")[1]["x-hello-count"]) for _ in range(3)]
    assert counts == [1, 2, 3]
    # a new snapshot with the same greeting finds the same counter again
    st, _ = lm.admin("POST", "/config", _config_with_hello(upstream.port, "{greeting: counted, deny_header: X-Stop}"),
                     {"Content-Type": "application/yaml"})
    assert st == 201
    assert int(lm.request("GET", "/x")[1]["x-hello-count"]) == 4
    # another greeting is another key
    st, _ = lm.admin("POST", "/config", _config_with_hello(upstream.port, "{greeting: fresh}"),
                     {"Content-Type": "application/yaml"})
    assert st == 201
    assert int(lm.request("GET", "/x")[1]["x-hello-count"]) == 1

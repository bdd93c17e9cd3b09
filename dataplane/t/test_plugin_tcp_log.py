"""Black-box tests of the tcp-log plugin against real TCP receivers: one JSON
line per request with Kong's record, one kept connection for many requests
(keepalive), TLS with tls_sni, a receiver that is down (requests unaffected,
later records delivered once it is back), and config validation. Limen runs
under ASan and stops leak-free."""
import time

from conftest import Upstream, check_config, free_port
from logrecv import TcpReceiver, wait_for
from tlsutil import Certs


def config(up, plugin):
    return f"""_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{up}
  routes:
  - name: r
    paths: ["/"]
    plugins:
    - {plugin}
"""


def test_json_lines_on_one_connection(limen_factory):
    up = Upstream().start()
    rx = TcpReceiver()
    lm = limen_factory(config(up.port, f"{{name: tcp-log, config: {{host: 127.0.0.1, port: {rx.port}}}}}")).start()
    for i in range(5):
        assert lm.request("GET", f"/t/{i}", headers={"X-A": "b"})[0] == 200
    recs = wait_for(lambda: len(rx.lines) >= 5 and rx.records())
    assert sorted(r["request"]["uri"] for r in recs) == [f"/t/{i}" for i in range(5)]
    assert recs[0]["request"]["headers"]["x-a"] == "b" and recs[0]["response"]["status"] == 200
    assert recs[0]["service"]["name"] == "s" and recs[0]["route"]["name"] == "r"
    assert rx.connections == 1
    lm.stop()
    rx.close()
    up.stop()


def test_tls_with_sni(limen_factory):
    certs = Certs()
    cert, key = certs.leaf("logs.example", ["logs.example"])
    up = Upstream().start()
    rx = TcpReceiver(tls=(cert, key))
    lm = limen_factory(config(up.port, f"{{name: tcp-log, config: {{host: 127.0.0.1, port: {rx.port}, tls: true, "
                                      f"tls_sni: logs.example}}}}")).start()
    assert lm.request("GET", "/secure")[0] == 200
    recs = wait_for(lambda: rx.records())
    assert recs[0]["request"]["uri"] == "/secure"
    assert rx.sni == ["logs.example"]
    lm.stop()
    rx.close()
    up.stop()


def test_receiver_down_then_back(limen_factory):
    up = Upstream().start()
    port = free_port()  # nobody listens
    lm = limen_factory(config(up.port, f"{{name: tcp-log, config: {{host: 127.0.0.1, port: {port}, timeout: 500}}}}")).start()
    t = time.monotonic()
    for i in range(20):
        assert lm.request("GET", f"/lost/{i}")[0] == 200
    assert time.monotonic() - t < 3

    def failed():
        for line in lm.metrics().splitlines():
            if line.startswith('limen_log_queue_entries_dropped_total{plugin="tcp-log"') and 'reason="failed"' in line:
                return int(line.split()[-1]) == 20
    wait_for(failed, what="failed batches counted")
    rx = TcpReceiver(port=port)
    assert lm.request("GET", "/back")[0] == 200
    recs = wait_for(lambda: rx.records())
    assert [r["request"]["uri"] for r in recs] == ["/back"]
    lm.stop()
    rx.close()
    up.stop()


def test_config_validation():
    base = '_format_version: "3.0"\nplugins:\n- name: tcp-log\n  config: CFG\n'
    rc, out = check_config(base.replace("CFG", "{host: logs, port: 5000, tls: true, tls_sni: x}"))
    assert rc == 0, out
    rc, out = check_config(base.replace("CFG", "{host: logs}"))
    assert rc != 0 and "port" in out
    rc, out = check_config(base.replace("CFG", "{host: logs, port: 70000}"))
    assert rc != 0 and "port" in out

"""Black-box tests of the udp-log plugin against a real UDP receiver: one
datagram of JSON per request with Kong's record, requests unaffected when
nobody listens, and config validation. Limen runs under ASan and stops
leak-free."""
import json
import time

from conftest import Upstream, check_config
from logrecv import UdpReceiver, wait_for


def config(up, port):
    return f"""_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{up}
  routes:
  - name: r
    paths: ["/"]
    plugins:
    - {{name: udp-log, config: {{host: 127.0.0.1, port: {port}}}}}
"""


def test_one_datagram_per_request(limen_factory):
    up = Upstream().start()
    rx = UdpReceiver()
    lm = limen_factory(config(up.port, rx.port)).start()
    for i in range(5):
        assert lm.request("POST", f"/u/{i}", body=b"hello")[0] == 200
    assert lm.request("GET", "/status/503")[0] == 503
    wait_for(lambda: len(rx.msgs) >= 6)
    recs = [json.loads(m) for m in rx.msgs]
    assert sorted(r["request"]["uri"] for r in recs) == sorted([f"/u/{i}" for i in range(5)] + ["/status/503"])
    post = [r for r in recs if r["request"]["method"] == "POST"][0]
    assert post["request"]["headers"]["content-length"] == "5"
    assert post["request"]["size"] > 5
    assert [r for r in recs if r["request"]["uri"] == "/status/503"][0]["response"]["status"] == 503
    lm.stop()
    rx.close()
    up.stop()


def test_nobody_listening(limen_factory):
    up = Upstream().start()
    rx = UdpReceiver()
    port = rx.port
    rx.close()
    lm = limen_factory(config(up.port, port)).start()
    t = time.monotonic()
    for i in range(50):
        assert lm.request("GET", f"/x/{i}")[0] == 200
    assert time.monotonic() - t < 5
    lm.stop()
    up.stop()


def test_config_validation():
    base = '_format_version: "3.0"\nplugins:\n- name: udp-log\n  config: CFG\n'
    rc, out = check_config(base.replace("CFG", "{host: logs, port: 514, timeout: 100}"))
    assert rc == 0, out
    rc, out = check_config(base.replace("CFG", "{port: 514}"))
    assert rc != 0 and "host" in out

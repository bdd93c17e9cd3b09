"""Black-box tests of the syslog plugin against a real unix datagram syslog
socket (LIMEN_SYSLOG_SOCKET): "<PRI>timestamp kong[pid]: <JSON record>",
the priority from facility and the severity chosen by status class,
log_level filtering, and config validation. Limen runs under ASan and stops
leak-free."""
import json
import re
import time

from conftest import Upstream, check_config
from logrecv import UnixDgramReceiver, wait_for

CONFIG = r"""_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{P}
  routes:
  - name: plain
    paths: ["/plain"]
    plugins:
    - {{name: syslog}}
  - name: graded
    paths: ["/graded"]
    plugins:
    - {{name: syslog, config: {{log_level: warning, successful_severity: info, client_errors_severity: warning,
        server_errors_severity: crit, facility: local3}}}}
"""

LINE = re.compile(r"^<(\d+)>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d kong\[(\d+)\]: (\{.*\})$")


def test_syslog_messages(limen_factory):
    up = Upstream().start()
    rx = UnixDgramReceiver()
    lm = limen_factory(CONFIG.format(P=up.port), env={"LIMEN_SYSLOG_SOCKET": rx.path}).start()
    assert lm.request("GET", "/plain/a")[0] == 200
    m = wait_for(lambda: rx.msgs)[0]
    g = LINE.match(m)
    assert g, m
    assert int(g.group(1)) == 1 * 8 + 6  # user.info
    assert int(g.group(2)) == lm.proc.pid
    assert json.loads(g.group(3))["request"]["uri"] == "/plain/a"

    rx.msgs.clear()
    assert lm.request("GET", "/graded/status/200")[0] == 200  # info: below warning, not logged
    assert lm.request("GET", "/graded/status/404")[0] == 404
    assert lm.request("GET", "/graded/status/502")[0] == 502
    wait_for(lambda: len(rx.msgs) >= 2)
    time.sleep(0.3)
    assert len(rx.msgs) == 2
    pris = sorted(int(LINE.match(x).group(1)) for x in rx.msgs)
    assert pris == sorted([19 * 8 + 4, 19 * 8 + 2])  # local3.warning, local3.crit
    lm.stop()
    rx.close()
    up.stop()


def test_config_validation():
    base = '_format_version: "3.0"\nplugins:\n- name: syslog\n  config: CFG\n'
    rc, out = check_config(base.replace("CFG", "{log_level: err, facility: local7}"))
    assert rc == 0, out
    rc, out = check_config(base.replace("CFG", "{log_level: loud}"))
    assert rc != 0 and "log_level" in out
    rc, out = check_config(base.replace("CFG", "{facility: local9}"))
    assert rc != 0 and "facility" in out

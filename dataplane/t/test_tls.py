"""TLS termination: certificates picked by SNI (exact, wildcards, the default),
RSA and ECDSA on one name, protocol versions, ALPN, session resumption with
shared rotating ticket keys, certificates swapped with the config, https-only
routes and SNI routes; and TLS to upstreams (verification, CA certificates,
client certificates, SNI, session reuse). Real clients: Python's ssl module,
curl and openssl s_client; certificates made by openssl in the test."""
import json
import socket
import ssl
import subprocess
import time

import pytest

from conftest import Limen, Upstream, free_port, wait_until
from tlsutil import Certs, TLSUpstream, client_context, https_get, presented, read, read_response, tls_connect


@pytest.fixture(scope="module")
def certs():
    c = Certs()
    c.a = c.leaf("a.test")                                   # exact name
    c.wild = c.leaf("x.wild.test", ["*.wild.test"], key="ec")  # leftmost wildcard
    c.suffix = c.leaf("suffix", ["suffix.example"])           # rightmost wildcard "suffix.*"
    c.b_rsa = c.leaf("b.test")
    c.b_ec = c.leaf("b.test", key="ec")
    c.catchall = c.leaf("catch-all", ["catch.all"])
    c.a2 = c.leaf("a.test")                                   # a replacement for a.test
    return c


def cert_entity(pair, snis, alt=None, cid=None):
    e = {"cert": read(pair[0]), "key": read(pair[1]), "snis": [{"name": s} for s in snis]}
    if alt:
        e["cert_alt"], e["key_alt"] = read(alt[0]), read(alt[1])
    if cid:
        e["id"] = cid
    return e


def tls_config(up_port, certificates, routes=None):
    return json.dumps({"_format_version": "3.0",
                       "services": [{"name": "s", "url": f"http://127.0.0.1:{up_port}",
                                     "routes": routes or [{"name": "r", "paths": ["/"]}]}],
                       "certificates": certificates})


@pytest.fixture
def tls_limen(certs, upstream):
    started = []

    def make(certificates=None, routes=None, extra=(), **kw):
        l = Limen(tls_config(upstream.port, certificates if certificates is not None else [
            cert_entity(certs.a, ["a.test"]),
            cert_entity(certs.wild, ["*.wild.test"]),
            cert_entity(certs.suffix, ["suffix.*"]),
            cert_entity(certs.b_rsa, ["b.test"], alt=certs.b_ec),
        ], routes), **kw)
        l.tls_port = free_port()
        l.args += ["--proxy-listen", f"127.0.0.1:{l.tls_port} ssl"]  # after the plain one
        l.args += list(extra)
        started.append(l)
        return l.start()
    yield make
    for l in started:
        l.stop()


def subject_cn(port, sni, **kw):
    return presented(port, sni, **kw)[0].split("CN = ")[-1]


# --------------------------------------------------------------------------
# certificates by SNI
# --------------------------------------------------------------------------

def test_https_request_with_verified_certificate(tls_limen, certs, upstream):
    l = tls_limen()
    out = subprocess.run(["curl", "-s", "--cacert", certs.ca, "--resolve", f"a.test:{l.tls_port}:127.0.0.1",
                          "-w", "\n%{http_code} %{ssl_verify_result}", f"https://a.test:{l.tls_port}/echo/x?q=1"],
                         capture_output=True, text=True, timeout=20)
    body, _, tail = out.stdout.rpartition("\n")
    assert tail == "200 0", out.stderr
    seen = json.loads(body)
    hdrs = {k.lower(): v for k, v in seen["headers"]}
    assert hdrs["x-forwarded-proto"] == "https"
    assert hdrs["x-forwarded-port"] == str(l.tls_port)
    assert seen["path"] == "/echo/x"


def test_certificate_picked_by_sni(tls_limen, certs):
    l = tls_limen()
    p = l.tls_port
    assert subject_cn(p, "a.test") == "a.test"
    assert subject_cn(p, "A.TEST") == "a.test"              # names are case-insensitive
    assert subject_cn(p, "x.wild.test") == "x.wild.test"    # *.wild.test
    assert subject_cn(p, "y.wild.test") == "x.wild.test"
    assert subject_cn(p, "deep.y.wild.test") == "localhost"  # a wildcard replaces one label, as Kong
    assert subject_cn(p, "suffix.anything") == "suffix"     # suffix.*
    assert subject_cn(p, "other.test") == "localhost"       # nothing matches: the default certificate
    assert subject_cn(p, None) == "localhost"               # no SNI at all


def test_catch_all_sni_is_the_default(tls_limen, certs):
    l = tls_limen([cert_entity(certs.a, ["a.test"]), cert_entity(certs.catchall, ["*"])])
    assert subject_cn(l.tls_port, "a.test") == "a.test"
    assert subject_cn(l.tls_port, "nothing.test") == "catch-all"
    assert subject_cn(l.tls_port, None) == "catch-all"


def test_rsa_and_ecdsa_on_one_name(tls_limen, certs):
    l = tls_limen()
    v12 = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)
    assert presented(l.tls_port, "b.test", versions=v12, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")[1] == "ec"
    assert presented(l.tls_port, "b.test", versions=v12, ciphers="ECDHE-RSA-AES128-GCM-SHA256")[1] == "rsa"
    # TLS 1.3 clients choose by signature algorithms: both work
    s = tls_connect(l.tls_port, "b.test", ca=certs.ca)
    assert s.version() == "TLSv1.3"
    s.close()


def test_default_certificate_from_flags(tls_limen, certs):
    l = tls_limen(extra=["--ssl-cert", certs.catchall[0], "--ssl-cert-key", certs.catchall[1]])
    assert subject_cn(l.tls_port, "unknown.test") == "catch-all"
    assert subject_cn(l.tls_port, "a.test") == "a.test"


def test_bad_default_certificate_fails_start(certs, upstream):
    l = Limen(tls_config(upstream.port, []), extra_args=["--ssl-cert", certs.a[0], "--ssl-cert-key", certs.b_rsa[1]])
    with pytest.raises(RuntimeError) as e:
        l.start()
    assert "default certificate" in str(e.value)


# --------------------------------------------------------------------------
# protocol versions, ciphers, ALPN
# --------------------------------------------------------------------------

def test_tls12_and_tls13_by_default(tls_limen, certs):
    l = tls_limen()
    for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        s = tls_connect(l.tls_port, "a.test", ca=certs.ca, versions=(v, v))
        st, _, _ = https_get(s, "a.test", "/echo")
        assert st == 200
        s.close()
    with pytest.raises(ssl.SSLError):  # TLS 1.1 and older are refused
        tls_connect(l.tls_port, "a.test", ca=certs.ca, versions=(ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1))


def test_protocols_and_ciphers_configurable(tls_limen, certs):
    l = tls_limen(extra=["--ssl-protocols", "TLSv1.3"])
    with pytest.raises(ssl.SSLError):
        tls_connect(l.tls_port, "a.test", ca=certs.ca, versions=(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2))
    assert tls_connect(l.tls_port, "a.test", ca=certs.ca).version() == "TLSv1.3"
    l2 = tls_limen(extra=["--ssl-protocols", "TLSv1.2", "--ssl-ciphers", "ECDHE-RSA-AES256-GCM-SHA384"])
    s = tls_connect(l2.tls_port, "a.test", ca=certs.ca)
    assert s.version() == "TLSv1.2" and s.cipher()[0] == "ECDHE-RSA-AES256-GCM-SHA384"


def test_bad_protocol_flag_refused(upstream):
    l = Limen(tls_config(upstream.port, []), extra_args=["--ssl-protocols", "SSLv3"])
    with pytest.raises(RuntimeError) as e:
        l.start()
    assert "unknown protocol 'SSLv3'" in str(e.value)


def test_alpn_http11(tls_limen, certs):
    l = tls_limen()
    s = tls_connect(l.tls_port, "a.test", ca=certs.ca, alpn=["http/1.1"])
    assert s.selected_alpn_protocol() == "http/1.1"
    assert https_get(s, "a.test", "/echo")[0] == 200


def test_plain_http_on_tls_port_is_closed(tls_limen):
    l = tls_limen()
    s = socket.create_connection(("127.0.0.1", l.tls_port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = s.recv(4096)
    assert data.startswith(b"HTTP/1.1 400") or data == b""
    if data:
        assert b"The plain HTTP request was sent to HTTPS port" in data
    s.close()


# --------------------------------------------------------------------------
# sessions
# --------------------------------------------------------------------------

def _resumed(port, ctx, session):
    s = tls_connect(port, "a.test", session=session, context=ctx)
    st, _, _ = https_get(s, "a.test", "/echo")
    assert st == 200
    reused, sess = s.session_reused, s.session
    s.close()
    return reused, sess


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_session_resumption_across_workers(tls_limen, certs, version):
    l = tls_limen(workers=2)
    ctx = client_context(certs.ca, versions=(version, version))
    _, sess = _resumed(l.tls_port, ctx, None)
    assert sess is not None
    # several new connections: SO_REUSEPORT spreads them over both workers, all resume
    results = [_resumed(l.tls_port, ctx, sess)[0] for _ in range(8)]
    assert all(results), results


def test_ticket_keys_rotate(tls_limen, certs):
    l = tls_limen(extra=["--ssl-ticket-rotate", "1"])
    v = ssl.TLSVersion.TLSv1_2
    ctx = client_context(certs.ca, versions=(v, v))
    _, sess = _resumed(l.tls_port, ctx, None)
    time.sleep(0.3)
    assert _resumed(l.tls_port, ctx, sess)[0]    # current (or previous) key
    time.sleep(2.6)                              # two rotations later the key is gone
    assert not _resumed(l.tls_port, ctx, sess)[0]


# --------------------------------------------------------------------------
# live certificate swap
# --------------------------------------------------------------------------

def test_certificate_swaps_with_config_without_dropping(tls_limen, certs, upstream):
    l = tls_limen([cert_entity(certs.a, ["a.test"])])
    old = tls_connect(l.tls_port, "a.test", ca=certs.ca)
    old_serial = old.getpeercert()["serialNumber"]
    assert https_get(old, "a.test", "/echo")[0] == 200
    st, body = l.admin_json("POST", "/config", tls_config(upstream.port, [cert_entity(certs.a2, ["a.test"])]))
    assert st == 201, body
    new = tls_connect(l.tls_port, "a.test", ca=certs.ca)
    assert new.getpeercert()["serialNumber"] != old_serial
    assert https_get(new, "a.test", "/echo")[0] == 200
    assert https_get(old, "a.test", "/echo")[0] == 200  # the old connection keeps working
    old.close()
    new.close()


def test_invalid_certificate_refused_and_old_kept(tls_limen, certs, upstream):
    l = tls_limen([cert_entity(certs.a, ["a.test"])])
    bad = cert_entity(certs.a, ["a.test"])
    bad["key"] = read(certs.b_rsa[1])  # a key that does not match
    st, body = l.admin_json("POST", "/config", tls_config(upstream.port, [bad]))
    assert st == 400
    assert "certificates" in json.dumps(body)
    assert subject_cn(l.tls_port, "a.test") == "a.test"


# --------------------------------------------------------------------------
# routes: protocols and snis
# --------------------------------------------------------------------------

def test_https_only_route(tls_limen, certs):
    routes = [{"name": "secure", "paths": ["/secure"], "protocols": ["https"]},
              {"name": "moved", "paths": ["/moved"], "protocols": ["https"], "https_redirect_status_code": 308}]
    l = tls_limen(routes=routes)
    st, h, body = l.request("GET", "/secure/x", headers={"Host": "a.test"})
    assert st == 426
    assert json.loads(body)["message"] == "Please use HTTPS protocol"
    st, h, body = l.request("GET", "/moved/x?y=1", headers={"Host": "a.test"})
    assert st == 308 and h["location"].startswith("https://a.test")
    s = tls_connect(l.tls_port, "a.test", ca=certs.ca)
    assert https_get(s, "a.test", "/secure/x")[0] == 200


def test_route_matched_by_sni(tls_limen, certs):
    routes = [{"name": "by-sni", "snis": ["a.test"], "paths": ["/"], "protocols": ["https"]},
              {"name": "other", "paths": ["/other"]}]
    l = tls_limen(routes=routes)
    s = tls_connect(l.tls_port, "a.test", ca=certs.ca)
    assert https_get(s, "whatever", "/echo")[0] == 200
    s = tls_connect(l.tls_port, "x.wild.test", ca=certs.ca)
    assert https_get(s, "whatever", "/echo")[0] == 404
    assert https_get(s, "whatever", "/other")[0] == 200


# --------------------------------------------------------------------------
# bodies and keep-alive over TLS
# --------------------------------------------------------------------------

def test_large_bodies_both_ways_over_tls(tls_limen, certs, upstream, tmp_path):
    l = tls_limen()
    up = tmp_path / "up.bin"
    up.write_bytes(b"z" * (8 << 20))
    out = subprocess.run(["curl", "-s", "--cacert", certs.ca, "--resolve", f"a.test:{l.tls_port}:127.0.0.1",
                          "--data-binary", f"@{up}", "-H", "Content-Type: application/octet-stream",
                          f"https://a.test:{l.tls_port}/echo"], capture_output=True, timeout=60)
    seen = json.loads(out.stdout)
    assert seen["body_len"] == 8 << 20
    out = subprocess.run(["curl", "-s", "--cacert", certs.ca, "--resolve", f"a.test:{l.tls_port}:127.0.0.1",
                          "-o", "/dev/null", "-w", "%{size_download}", f"https://a.test:{l.tls_port}/bytes/{24 << 20}"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout == str(24 << 20)


def test_keepalive_and_pipelining_over_tls(tls_limen, certs):
    l = tls_limen()
    s = tls_connect(l.tls_port, "a.test", ca=certs.ca)
    for i in range(5):
        assert https_get(s, "a.test", f"/echo/{i}")[0] == 200
    s.sendall(b"GET /echo/p1 HTTP/1.1\r\nHost: a.test\r\n\r\nGET /echo/p2 HTTP/1.1\r\nHost: a.test\r\n\r\n")
    f = s.makefile("rb")
    r1, r2 = read_response(f), read_response(f)
    assert r1[0] == r2[0] == 200
    assert json.loads(r1[2])["path"] == "/echo/p1" and json.loads(r2[2])["path"] == "/echo/p2"
    f.close()
    s.close()


def test_openssl_s_client_sni_and_alpn(tls_limen, certs):
    l = tls_limen()
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{l.tls_port}", "-servername", "a.test",
                          "-alpn", "h2,http/1.1", "-CAfile", certs.ca, "-verify_return_error", "-ign_eof"],
                         input=b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
                         capture_output=True, timeout=20)
    text = out.stdout.decode()
    assert "Verification: OK" in text or "Verify return code: 0 (ok)" in text
    assert "ALPN protocol: http/1.1" in text
    assert b"HTTP/1.1 200" in out.stdout


# --------------------------------------------------------------------------
# upstream TLS
# --------------------------------------------------------------------------

@pytest.fixture
def up_tls(certs):
    made = []

    def make(pair, client_ca=None):
        u = TLSUpstream(pair[0], pair[1], client_ca).start()
        made.append(u)
        return u
    yield make
    for u in made:
        u.stop()


def svc_config(up, host="localhost", **svc):
    s = {"name": "tls-up", "protocol": "https", "host": host, "port": up.port,
         "routes": [{"name": "r", "paths": ["/"]}]}
    s.update(svc)
    return s


def upstream_limen(certs, services, extra_doc=None):
    doc = {"_format_version": "3.0", "services": services}
    doc.update(extra_doc or {})
    return Limen(json.dumps(doc)).start()


def test_upstream_https_with_sni(certs, up_tls):
    good = certs.leaf("localhost", ["localhost"])
    u = up_tls(good)
    l = upstream_limen(certs, [svc_config(u)])
    try:
        st, _, body = l.request("GET", "/hello")
        assert st == 200, body
        seen = json.loads(body)
        assert seen["path"] == "/hello"
        assert u.snis[-1] == "localhost"
        for _ in range(5):  # keep-alive: the TLS connection is reused
            assert l.request("GET", "/again")[0] == 200
        assert u.connections <= 3
    finally:
        l.stop()


def test_upstream_verification(certs, up_tls):
    good = up_tls(certs.leaf("localhost", ["localhost"]))
    wrong_host = up_tls(certs.leaf("elsewhere", ["elsewhere.test"]))
    expired = up_tls(certs.leaf("localhost", ["localhost"], expired=True))
    self_signed = up_tls(certs.leaf("localhost", ["localhost"], self_signed=True))
    ca = {"id": "5a5b0c5e-0000-4000-8000-000000000001", "cert": read(certs.ca)}
    verify = {"tls_verify": True, "ca_certificates": [ca["id"]]}
    services = [svc_config(good, name="good", routes=[{"name": "g", "paths": ["/good"]}], **verify),
                svc_config(wrong_host, name="wrong", routes=[{"name": "w", "paths": ["/wrong"]}], **verify),
                svc_config(expired, name="expired", routes=[{"name": "e", "paths": ["/expired"]}], **verify),
                svc_config(self_signed, name="selfsigned", routes=[{"name": "s", "paths": ["/selfsigned"]}],
                           **verify),
                svc_config(self_signed, name="noverify", routes=[{"name": "n", "paths": ["/noverify"]}],
                           tls_verify=False)]
    l = upstream_limen(certs, services, {"ca_certificates": [ca]})
    try:
        assert l.request("GET", "/good")[0] == 200
        for bad in ("/wrong", "/expired", "/selfsigned"):
            st, _, body = l.request("GET", bad)
            assert st == 502, (bad, body)
        assert l.request("GET", "/noverify")[0] == 200
        log = l.read_log()
        assert "certificate verify failed" in log
        assert "certificate has expired" in log
        assert "self-signed certificate" in log or "self signed certificate" in log
    finally:
        l.stop()


def test_upstream_client_certificate(certs, up_tls):
    u = up_tls(certs.leaf("localhost", ["localhost"]), client_ca=certs.ca)
    client = certs.leaf("limen-client", [], client=True)
    cid = "5a5b0c5e-0000-4000-8000-0000000000c1"
    services = [svc_config(u, name="mtls", client_certificate={"id": cid},
                           routes=[{"name": "m", "paths": ["/mtls"]}]),
                svc_config(u, name="plain", routes=[{"name": "p", "paths": ["/plain"]}])]
    l = upstream_limen(certs, services, {"certificates": [{"id": cid, "cert": read(client[0]),
                                                            "key": read(client[1])}]})
    try:
        st, _, body = l.request("GET", "/mtls")
        assert st == 200, body
        assert "limen-client" in json.loads(body)["client_subject"]
        assert l.request("GET", "/plain")[0] == 502  # the upstream wants a client certificate
    finally:
        l.stop()


def test_upstream_session_reuse(certs, up_tls):
    u = up_tls(certs.leaf("localhost", ["localhost"]))
    l = Limen(json.dumps({"_format_version": "3.0", "services": [svc_config(u)]}), workers=1).start()
    try:
        for _ in range(4):  # the upstream closes after each answer: four TLS connections
            assert l.request("GET", "/close")[0] == 200
        wait_until(lambda: len(u.resumed) >= 4)
        assert u.resumed[0] is False
        assert all(u.resumed[1:4]), u.resumed  # later ones resume the first session
    finally:
        l.stop()


def test_private_keys_never_returned_by_admin_api(tls_limen, certs):
    l = tls_limen()
    pem_key = read(certs.a[1])
    st, body = l.admin_json("GET", "/certificates")
    assert st == 200 and body["data"]
    for c in body["data"]:
        assert c["key"] == "<redacted>"
        assert c["cert"].startswith("-----BEGIN CERTIFICATE-----")
    st, body = l.admin_json("GET", "/config")
    assert st == 200
    assert "PRIVATE KEY" not in body["config"] and "<redacted>" in body["config"]
    assert "PRIVATE KEY" not in l.read_log()
    assert pem_key.splitlines()[1] not in l.read_log()

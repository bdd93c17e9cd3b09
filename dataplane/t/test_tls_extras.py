"""TLS extras: OCSP stapling (a real `openssl ocsp` responder on loopback,
checked with `openssl s_client -status`), client certificates on the proxy
listener (--ssl-client-ca / --ssl-client-verify, X-Client-Cert-* to the
upstream, lm_ctx_client_cert_*), and upstreams addressed by IP verified
against the IP in their certificate."""
import json
import os
import ssl
import subprocess
import time

import pytest

from conftest import LIMEN_BIN, ROOT, Limen, free_port, wait_until
from tlsutil import Certs, TLSUpstream, _run, client_context, https_get, read, tls_connect


# --------------------------------------------------------------------------
# OCSP stapling
# --------------------------------------------------------------------------

class OCSPPki(Certs):
    """A CA, a delegated OCSP signer, and leaves issued with serials the
    responder's index knows; ocsp_port is in their AIA."""

    def __init__(self):
        super().__init__()
        self.ocsp_port = free_port()
        self.index = os.path.join(self.dir, "index.txt")
        open(self.index, "w").close()
        self.serial = 0x1000
        self.signer = self._issue("Limen OCSP signer", "extendedKeyUsage=OCSPSigning\n", record=False)

    def _issue(self, cn, ext_text, record=True, revoked=False):
        self.serial += 1
        base = os.path.join(self.dir, f"o{self.serial}")
        keyf, csr, crt, ext = base + ".key", base + ".csr", base + ".pem", base + ".ext"
        _run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", keyf,
             cwd=self.dir)
        _run("openssl", "req", "-new", "-key", keyf, "-out", csr, "-subj", f"/CN={cn}", cwd=self.dir)
        with open(ext, "w") as f:
            f.write(ext_text)
        _run("openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key, "-set_serial",
             str(self.serial), "-days", "30", "-out", crt, "-extfile", ext, cwd=self.dir)
        if record:
            exp = time.strftime("%y%m%d%H%M%SZ", time.gmtime(time.time() + 30 * 86400))
            rev = time.strftime("%y%m%d%H%M%SZ", time.gmtime(time.time() - 3600)) if revoked else ""
            with open(self.index, "a") as f:
                f.write(f"{'R' if revoked else 'V'}\t{exp}\t{rev}\t{self.serial:X}\tunknown\t/CN={cn}\n")
        return crt, keyf

    def leaf_with_responder(self, cn, revoked=False, responder=True):
        ext = f"subjectAltName=DNS:{cn}\nextendedKeyUsage=serverAuth\n"
        if responder:
            ext += f"authorityInfoAccess=OCSP;URI:http://127.0.0.1:{self.ocsp_port}\n"
        crt, key = self._issue(cn, ext, revoked=revoked)
        chain = crt + ".chain"
        with open(chain, "w") as f:  # leaf then issuer: the issuer must be in the chain
            f.write(read(crt) + read(self.ca))
        return chain, key


class Responder:
    def __init__(self, pki, *extra):
        self.out = os.path.join(pki.dir, f"responder-{time.time_ns()}.log")
        self.proc = subprocess.Popen(
            ["openssl", "ocsp", "-index", pki.index, "-port", str(pki.ocsp_port), "-rsigner",
             pki.signer[0], "-rkey", pki.signer[1], "-CA", pki.ca, "-ignore_err", *extra],
            stdout=open(self.out, "wb"), stderr=subprocess.STDOUT)
        # (a probe connection would wedge it: it serves one client at a time and waits on a closed one)
        wait_until(lambda: b"waiting for OCSP client connections" in open(self.out, "rb").read(), timeout=10,
                   what="the OCSP responder")

    def requests(self):
        with open(self.out, "rb") as f:
            return f.read().count(b"Received request")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def s_client_status(port, sni=None):
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-status", "-tls1_3"]
    if sni:
        args += ["-servername", sni]
    p = subprocess.run(args, input=b"", capture_output=True, timeout=20)
    return p.stdout.decode(errors="replace")


def stapled(port, sni=None):
    out = s_client_status(port, sni)
    return "OCSP Response Status: successful" in out and "Cert Status:" in out


def cert_entity(pair, snis):
    return {"cert": read(pair[0]), "key": read(pair[1]), "snis": [{"name": s} for s in snis]}


def tls_limen(upstream_port, certificates=(), extra=(), workers=2):
    cfg = {"_format_version": "3.0",
           "services": [{"name": "s", "url": f"http://127.0.0.1:{upstream_port}",
                         "routes": [{"name": "r", "paths": ["/"]}]}],
           "certificates": list(certificates)}
    l = Limen(json.dumps(cfg), workers=workers)
    l.tls_port = free_port()
    l.args += ["--proxy-listen", f"127.0.0.1:{l.tls_port} ssl", *extra]
    return l


@pytest.fixture(scope="module")
def pki():
    p = OCSPPki()
    p.good = p.leaf_with_responder("good.test")
    p.revoked = p.leaf_with_responder("revoked.test", revoked=True)
    p.plain = p.leaf_with_responder("plain.test", responder=False)
    p.default = p.leaf_with_responder("default.test")
    return p


def test_ocsp_staple_good_revoked_and_none(pki, upstream):
    r = Responder(pki, "-ndays", "1")
    l = tls_limen(upstream.port, [cert_entity(pki.good, ["good.test"]), cert_entity(pki.revoked, ["revoked.test"]),
                                  cert_entity(pki.plain, ["plain.test"])])
    try:
        l.start()
        wait_until(lambda: stapled(l.tls_port, "good.test") and stapled(l.tls_port, "revoked.test"), timeout=20,
                   what="staples")
        out = s_client_status(l.tls_port, "good.test")
        assert "OCSP Response Status: successful" in out and "Cert Status: good" in out, out
        assert "Next Update:" in out
        out = s_client_status(l.tls_port, "revoked.test")
        assert "Cert Status: revoked" in out, out
        out = s_client_status(l.tls_port, "plain.test")  # no responder in the certificate
        assert "OCSP response: no response sent" in out, out
        # a client that does not ask gets no staple, and HTTPS works as before
        s = tls_connect(l.tls_port, "good.test", ca=pki.ca)
        st, _, _ = https_get(s, "good.test", "/x")
        s.close()
        assert st == 200
        fetched = r.requests()
        assert fetched == 2, fetched  # one per certificate with a responder, not one per handshake
        # the responder goes away: the response already fetched is still stapled
        r.stop()
        assert "Cert Status: good" in s_client_status(l.tls_port, "good.test")
        # the certificates leave the config: their staples go with them (leak-free at stop)
        st, _ = l.admin("POST", "/config", json.dumps({"_format_version": "3.0", "certificates": []}),
                        {"Content-Type": "application/json"})
        assert st == 201
        assert "OCSP response: no response sent" in s_client_status(l.tls_port, "good.test")
        assert "the responder says revoked" in l.read_log()
    finally:
        r.stop()
        l.stop()


def test_ocsp_default_certificate(pki, upstream):
    r = Responder(pki, "-ndays", "1")
    l = tls_limen(upstream.port, extra=["--ssl-cert", pki.default[0], "--ssl-cert-key", pki.default[1]])
    try:
        l.start()
        wait_until(lambda: stapled(l.tls_port), timeout=20, what="a staple on the default certificate")
        assert "Cert Status: good" in s_client_status(l.tls_port)
        assert "Cert Status: good" in s_client_status(l.tls_port, "unknown.test")
        assert r.requests() == 1  # loaded into two contexts, fetched once
    finally:
        r.stop()
        l.stop()


def test_ocsp_responder_down_then_up(pki, upstream):
    l = tls_limen(upstream.port, [cert_entity(pki.good, ["good.test"])])
    r = None
    try:
        l.start()
        wait_until(lambda: "OCSP: /CN=good.test" in l.read_log(), timeout=15, what="the failed fetch")
        assert "cannot connect to the responder" in l.read_log()
        # handshakes go on without a staple
        out = s_client_status(l.tls_port, "good.test")
        assert "OCSP response: no response sent" in out and "Verification" in out
        s = tls_connect(l.tls_port, "good.test", ca=pki.ca)
        assert https_get(s, "good.test", "/x")[0] == 200
        s.close()
        r = Responder(pki, "-ndays", "1")
        wait_until(lambda: stapled(l.tls_port, "good.test"), timeout=25, interval=0.5,
                   what="the staple after the retry")
    finally:
        if r:
            r.stop()
        l.stop()


def test_ocsp_refreshed_before_next_update(pki, upstream):
    # nextUpdate one minute ahead: refreshed halfway, about 30 s later
    r = Responder(pki, "-nmin", "1")
    l = tls_limen(upstream.port, [cert_entity(pki.good, ["good.test"])], workers=1)
    try:
        l.start()
        wait_until(lambda: stapled(l.tls_port, "good.test"), timeout=20, what="the first staple")
        assert r.requests() == 1
        wait_until(lambda: r.requests() >= 2, timeout=45, interval=1, what="the refresh")
        assert "Cert Status: good" in s_client_status(l.tls_port, "good.test")
    finally:
        r.stop()
        l.stop()


# --------------------------------------------------------------------------
# client certificates on the proxy listener
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mtls():
    c = Certs()
    c.server = c.leaf("mtls.test")
    c.client = c.leaf("client one", [], client=True)
    other = Certs()  # another CA: its client certificates are not trusted
    c.stranger = other.leaf("stranger", [], client=True)
    return c


def _headers(body):
    return {k.lower(): v for k, v in json.loads(body)["headers"]}


def mtls_get(port, cert=None, headers=None, ca=None, session=None, context=None):
    s = tls_connect(port, "mtls.test", ca=ca, cert=cert, session=session, context=context)
    try:
        st, _, body = https_get(s, "mtls.test", "/echo", headers)
        return st, _headers(body) if st == 200 else {}, s.session
    finally:
        s.close()


FORGED = {"X-Client-Cert-Subject": "CN=admin", "X-Client-Cert-Verify": "SUCCESS"}


def test_client_verify_on(mtls, upstream):
    l = tls_limen(upstream.port, [cert_entity(mtls.server, ["mtls.test"])],
                  extra=["--ssl-client-ca", mtls.ca, "--ssl-client-verify", "on"])
    try:
        l.start()
        st, h, _ = mtls_get(l.tls_port, cert=mtls.client, headers=FORGED, ca=mtls.ca)
        assert st == 200
        assert h["x-client-cert-verify"] == "SUCCESS"
        assert h["x-client-cert-subject"] == "CN=client one"
        # the client's own copies never reach the upstream
        assert list(h.keys()).count("x-client-cert-subject") == 1
        raw = upstream.requests[-1]["headers"]
        assert [v for k, v in raw if k.lower() == "x-client-cert-subject"] == ["CN=client one"]
        assert [v for k, v in raw if k.lower() == "x-client-cert-verify"] == ["SUCCESS"]
        for cert in (None, mtls.stranger):  # no certificate, or one from another CA: no handshake
            with pytest.raises((ssl.SSLError, ConnectionError, OSError, ValueError)):
                mtls_get(l.tls_port, cert=cert, ca=mtls.ca)
        # the plain listener drops the headers too
        st, _, body = l.request("GET", "/echo", headers=FORGED)
        assert st == 200
        assert "x-client-cert-subject" not in _headers(body) and "x-client-cert-verify" not in _headers(body)
    finally:
        l.stop()


def test_client_verify_optional(mtls, upstream):
    l = tls_limen(upstream.port, [cert_entity(mtls.server, ["mtls.test"])],
                  extra=["--ssl-client-ca", mtls.ca], workers=1)
    l.env["LIMEN_SSL_CLIENT_VERIFY"] = "optional"  # the environment works as the flag
    try:
        l.start()
        st, h, _ = mtls_get(l.tls_port, headers=FORGED)
        assert st == 200
        assert h["x-client-cert-verify"] == "NONE" and "x-client-cert-subject" not in h
        st, h, _ = mtls_get(l.tls_port, cert=mtls.stranger, headers=FORGED)
        assert st == 200
        assert h["x-client-cert-verify"] == "FAILED:unable to verify the first certificate", h
        assert "x-client-cert-subject" not in h
        # a verified certificate, then the session resumed: the result holds
        ctx = client_context(mtls.ca, cert=mtls.client, versions=(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2))
        st, h, sess = mtls_get(l.tls_port, context=ctx)
        assert h["x-client-cert-verify"] == "SUCCESS" and h["x-client-cert-subject"] == "CN=client one"
        s = tls_connect(l.tls_port, "mtls.test", context=ctx, session=sess)
        assert s.session_reused
        st, _, body = https_get(s, "mtls.test", "/echo")
        s.close()
        assert _headers(body)["x-client-cert-subject"] == "CN=client one"
    finally:
        l.stop()


def test_client_verify_bad_options(mtls):
    def run(*args):
        return subprocess.run([LIMEN_BIN, "--admin-listen", "off", "--status-listen", "off", "--state-dir",
                               os.path.join(mtls.dir, "st"), "--proxy-listen", f"127.0.0.1:{free_port()} ssl",
                               *args], capture_output=True, text=True, timeout=20)
    p = run("--ssl-client-verify", "maybe")
    assert p.returncode == 2 and "--ssl-client-verify: 'maybe' is not off, optional or on" in p.stderr + p.stdout
    p = run("--ssl-client-verify", "on")
    assert p.returncode == 2 and "--ssl-client-verify on needs --ssl-client-ca" in p.stderr + p.stdout
    p = run("--ssl-client-verify", "on", "--ssl-client-ca", mtls.client[1])  # a key, not certificates
    assert p.returncode == 2 and "--ssl-client-ca" in p.stderr + p.stdout


PLUGIN_SRC = r'''
#include "lm_plugin.h"
static int cc_access(lm_ctx_t *ctx, const void *conf)
{
    const char *s = lm_ctx_client_cert_subject(ctx), *v = lm_ctx_client_cert_verify(ctx);
    lm_ctx_set_header(ctx, lm_str("X-Plugin-Subject"), lm_str(s ? s : "-"));
    lm_ctx_set_header(ctx, lm_str("X-Plugin-Verify"), lm_str(v ? v : "-"));
    return LM_OK;
}
const lm_plugin_ops_t limen_plugin = { .abi_version = LM_PLUGIN_ABI_VERSION, .name = "client-cert-echo",
                                       .priority = 900, .access = cc_access };
'''


def test_client_cert_for_plugins(mtls, upstream, tmp_path):
    src = tmp_path / "cc.c"
    src.write_text(PLUGIN_SRC)
    pdir = tmp_path / "plugins"
    pdir.mkdir()
    subprocess.run(["cc", "-shared", "-fPIC", "-I", os.path.join(ROOT, "common"), "-I", os.path.join(ROOT, "dataplane"),
                    "-I/usr/include/cjson", "-o", str(pdir / "cc.so"), str(src)], check=True)
    cfg = {"_format_version": "3.0",
           "services": [{"name": "s", "url": f"http://127.0.0.1:{upstream.port}",
                         "routes": [{"name": "r", "paths": ["/"]}]}],
           "certificates": [cert_entity(mtls.server, ["mtls.test"])],
           "plugins": [{"name": "client-cert-echo"}]}
    l = Limen(json.dumps(cfg), extra_args=["--plugin-dir", str(pdir), "--ssl-client-ca", mtls.ca,
                                           "--ssl-client-verify", "optional"])
    l.tls_port = free_port()
    l.args += ["--proxy-listen", f"127.0.0.1:{l.tls_port} ssl"]
    try:
        l.start()
        st, h, _ = mtls_get(l.tls_port, cert=mtls.client)
        assert (h["x-plugin-subject"], h["x-plugin-verify"]) == ("CN=client one", "SUCCESS")
        st, h, _ = mtls_get(l.tls_port)
        assert (h["x-plugin-subject"], h["x-plugin-verify"]) == ("-", "NONE")
        st, _, body = l.request("GET", "/echo")  # plain listener
        assert (_headers(body)["x-plugin-subject"], _headers(body)["x-plugin-verify"]) == ("-", "-")
    finally:
        l.stop()


# --------------------------------------------------------------------------
# upstreams addressed by IP
# --------------------------------------------------------------------------

def test_upstream_ip_checked_against_certificate(mtls):
    dns_only = TLSUpstream(*mtls.leaf("localhost", ["localhost"])).start()
    with_ip = TLSUpstream(*mtls.leaf("by-ip", ["127.0.0.1"])).start()
    ca = {"id": "5a5b0c5e-0000-4000-8000-0000000000a1", "cert": read(mtls.ca)}

    def svc(name, up):
        return {"name": name, "protocol": "https", "host": "127.0.0.1", "port": up.port, "tls_verify": True,
                "ca_certificates": [ca["id"]], "routes": [{"name": name, "paths": [f"/{name}"]}]}
    l = Limen(json.dumps({"_format_version": "3.0", "ca_certificates": [ca],
                          "services": [svc("dnsonly", dns_only), svc("withip", with_ip)]}))
    try:
        l.start()
        st, _, body = l.request("GET", "/withip")
        assert st == 200, body
        assert with_ip.snis[-1] is None  # no SNI for an address
        st, _, body = l.request("GET", "/dnsonly")  # a valid certificate from the CA, but not for 127.0.0.1
        assert st == 502, body
        assert "IP address mismatch" in l.read_log()
    finally:
        l.stop()
        dns_only.stop()
        with_ip.stop()


# --------------------------------------------------------------------------
# a failed TLS read must not leave OpenSSL errors behind for other connections
# --------------------------------------------------------------------------

def _handshake_memory(port, sni):
    """A TLS 1.3 connection driven through memory BIOs, so the test controls every byte sent."""
    ctx = client_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    import socket as _s
    sock = _s.create_connection(("127.0.0.1", port), timeout=5)
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(out.read())
            inc.write(sock.recv(65536))
    sock.sendall(out.read())
    return sock, obj, out


def test_corrupt_record_does_not_poison_other_connections(upstream):
    c = Certs()
    l = tls_limen(upstream.port, [cert_entity(c.leaf("a.test"), ["a.test"])], workers=1)
    try:
        l.start()
        s = tls_connect(l.tls_port, "a.test", ca=c.ca)  # an established keep-alive connection on the worker
        assert https_get(s, "a.test", "/x")[0] == 200
        for _ in range(3):
            sock, obj, out = _handshake_memory(l.tls_port, "a.test")
            # a valid request, then a record that cannot decrypt, in one segment
            obj.write(b"GET /sleep/300 HTTP/1.1\r\nHost: a.test\r\n\r\n")
            sock.sendall(out.read() + b"\x17\x03\x03\x00\x20" + os.urandom(32))
            time.sleep(0.05)
            # meanwhile the other connection on the same worker goes on working
            for _ in range(3):
                assert https_get(s, "a.test", "/x")[0] == 200
            sock.close()
        s.close()
    finally:
        l.stop()

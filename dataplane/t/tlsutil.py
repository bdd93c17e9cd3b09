"""Certificates made by the openssl command line for the TLS tests, a TLS
client that reports what the server presented, and a small HTTPS upstream."""
import http.server
import json
import os
import socket
import ssl
import subprocess
import tempfile
import threading

from conftest import free_port


def _run(*args, cwd):
    subprocess.run(args, cwd=cwd, check=True, capture_output=True)


class Certs:
    """A CA and leaf certificates signed by it, in a temporary directory.
    leaf(name, sans, key="rsa"|"ec", days=..., expired=False, self_signed=False,
    client=False) -> (cert_path, key_path)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="limen-certs-")
        self.ca = os.path.join(self.dir, "ca.pem")
        self.ca_key = os.path.join(self.dir, "ca.key")
        _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", self.ca_key, "-out", self.ca, "-days", "30", "-subj", "/CN=Limen Test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=self.dir)
        self.n = 0

    def leaf(self, cn, sans=None, key="rsa", expired=False, self_signed=False, client=False):
        self.n += 1
        base = os.path.join(self.dir, f"leaf{self.n}")
        keyf, csr, crt, ext = base + ".key", base + ".csr", base + ".pem", base + ".ext"
        if key == "rsa":
            _run("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", keyf,
                 cwd=self.dir)
        else:
            _run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", keyf,
                 cwd=self.dir)
        sans = sans if sans is not None else [cn]
        with open(ext, "w") as f:
            if sans:
                f.write("subjectAltName=" + ",".join(("IP:" if s[0].isdigit() else "DNS:") + s for s in sans) + "\n")
            f.write("extendedKeyUsage=" + ("clientAuth" if client else "serverAuth") + "\n")
        if self_signed:
            _run("openssl", "req", "-x509", "-key", keyf, "-out", crt, "-days", "30", "-subj", f"/CN={cn}",
                 "-addext", "subjectAltName=" + ",".join("DNS:" + s for s in sans), cwd=self.dir)
            return crt, keyf
        _run("openssl", "req", "-new", "-key", keyf, "-out", csr, "-subj", f"/CN={cn}", cwd=self.dir)
        args = ["openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key, "-CAcreateserial",
                "-out", crt, "-extfile", ext]
        if expired:
            self._expired(csr, crt, ext)
        else:
            _run(*(args + ["-days", "30"]), cwd=self.dir)
        return crt, keyf

    def _expired(self, csr, crt, ext):
        # openssl x509 has no start date option in 3.0: a tiny CA database makes one in the past
        db = os.path.join(self.dir, "db")
        os.makedirs(db, exist_ok=True)
        idx = os.path.join(db, "index.txt")
        open(idx, "a").close()
        serial = os.path.join(db, "serial")
        if not os.path.exists(serial):
            with open(serial, "w") as f:
                f.write("1000\n")
        conf = os.path.join(db, "ca.cnf")
        with open(conf, "w") as f:
            f.write(f"""[ca]
default_ca = t
[t]
database = {idx}
new_certs_dir = {db}
serial = {serial}
default_md = sha256
policy = p
unique_subject = no
[p]
commonName = supplied
""")
        _run("openssl", "ca", "-batch", "-config", conf, "-cert", self.ca, "-keyfile", self.ca_key, "-in", csr,
             "-out", crt, "-startdate", "20200101000000Z", "-enddate", "20200201000000Z", "-extfile", ext,
             "-notext", cwd=self.dir)


def read(path):
    with open(path) as f:
        return f.read()


def client_context(ca=None, versions=None, ciphers=None, alpn=None, cert=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca:
        ctx.load_verify_locations(ca)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if versions:
        ctx.minimum_version, ctx.maximum_version = versions
    if ciphers:
        ctx.set_ciphers(ciphers)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if cert:
        ctx.load_cert_chain(*cert)
    return ctx


def tls_connect(port, sni=None, *, ca=None, versions=None, ciphers=None, alpn=None, session=None,
                cert=None, timeout=5, context=None):
    """Opens a TLS connection to 127.0.0.1:port; returns the SSLSocket."""
    ctx = context or client_context(ca, versions, ciphers, alpn, cert)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname=sni, session=session)


def describe_der(der):
    """subject line and key type of a DER certificate, by the openssl command."""
    p = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject", "-text"], input=der,
                       capture_output=True, check=True)
    text = p.stdout.decode()
    subject = text.splitlines()[0]
    kind = "ec" if "id-ecPublicKey" in text else "rsa" if "rsaEncryption" in text else "?"
    return subject, kind


def presented(port, sni, **kw):
    s = tls_connect(port, sni, **kw)
    try:
        return describe_der(s.getpeercert(binary_form=True))
    finally:
        s.close()


def https_get(sock, host, path, headers=None):
    """One HTTP/1.1 request on an open (TLS) socket; returns (status, headers, body)."""
    req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    sock.sendall((req + "\r\n").encode())
    f = sock.makefile("rb")
    try:
        return read_response(f)
    finally:
        f.close()


def read_response(f):
    """One response with a Content-Length body from a binary file object."""
    line = f.readline().decode()
    status = int(line.split()[1])
    hdrs = {}
    while True:
        l = f.readline().decode()
        if l in ("\r\n", ""):
            break
        k, v = l.split(":", 1)
        hdrs[k.strip().lower()] = v.strip()
    body = f.read(int(hdrs.get("content-length", "0")))
    return status, hdrs, body


class TLSUpstream:
    """An HTTPS upstream (Python's http.server over ssl): answers JSON with
    what it saw (path, headers, the SNI, the client certificate subject,
    whether the TLS session was resumed)."""

    def __init__(self, cert, key, client_ca=None):
        self.port = free_port()
        self.snis = []
        self.resumed = []
        self.connections = 0
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        if client_ca:
            ctx.load_verify_locations(client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        up = self

        def sni_cb(sock, name, _ctx):
            up.snis.append(name)
        ctx.sni_callback = sni_cb

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                peer = self.connection.getpeercert() if client_ca else None
                subj = ""
                if peer:
                    subj = ",".join("=".join(x) for rdn in peer.get("subject", ()) for x in rdn)
                body = json.dumps({"path": self.path, "headers": dict(self.headers.items()),
                                   "client_subject": subj,
                                   "resumed": self.connection.session_reused}).encode()
                self.send_response(200)
                if self.path.startswith("/close"):
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class S(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = self.socket.accept()
                up.connections += 1
                return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

            def finish_request(self, request, client_address):
                try:
                    request.do_handshake()
                    up.resumed.append(request.session_reused)
                except (ssl.SSLError, OSError):
                    return
                super().finish_request(request, client_address)

        self.server = S(("127.0.0.1", self.port), H)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

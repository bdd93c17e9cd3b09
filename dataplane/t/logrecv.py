"""Real log receivers for the logging plugin suites: TCP (optionally TLS) and
UDP sockets, a unix datagram socket (syslog) and an HTTP/1.1 server whose
answers can be scripted (status sequence, or never answering)."""
import json
import os
import socket
import ssl
import tempfile
import threading
import time

from conftest import free_port


def wait_for(pred, timeout=5.0, what="records"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class TcpReceiver:
    """Accepts connections, splits what arrives into lines. tls: (cert, key) paths."""

    def __init__(self, tls=None, port=None):
        self.port = port or free_port()
        self.lines = []
        self.connections = 0
        self.sni = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        self.ctx = None
        if tls:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(*tls)
            self.ctx.sni_callback = lambda s, name, c: self.sni.append(name)
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._read, args=(c,), daemon=True).start()

    def _read(self, c):
        try:
            if self.ctx:
                c = self.ctx.wrap_socket(c, server_side=True)
            buf = b""
            while True:
                d = c.recv(65536)
                if not d:
                    break
                buf += d
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self.lines.append(line.decode())
        except (OSError, ssl.SSLError):
            pass
        finally:
            c.close()

    def records(self):
        return [json.loads(x) for x in self.lines]

    def close(self):
        self.stopped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        except OSError:
            pass
        self.sock.close()


class UdpReceiver:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.msgs = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                d, _ = self.sock.recvfrom(65536)
            except OSError:
                return
            self.msgs.append(d.decode())

    def close(self):
        self.sock.close()


class UnixDgramReceiver:
    """A syslog socket: every datagram as text."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="limen-syslog-")
        self.path = os.path.join(self.dir, "log.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.msgs = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                d = self.sock.recv(65536)
            except OSError:
                return
            self.msgs.append(d.decode())

    def close(self):
        self.sock.close()


class HttpReceiver:
    """HTTP/1.1 with keep-alive. statuses: answers for the first requests (then
    200); hang=True never answers. Each request: dict(method, path, headers,
    body, t, conn)."""

    def __init__(self, statuses=(), hang=False):
        self.port = free_port()
        self.statuses = list(statuses)
        self.hang = hang
        self.requests = []
        self.connections = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
        self.stopped = False
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(c, self.connections), daemon=True).start()

    def _serve(self, c, conn_no):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for ln in lines[1:]:
                    k, v = ln.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length", "0"))
                while len(buf) < n:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                body, buf = buf[:n], buf[n:]
                with self.lock:
                    self.requests.append(dict(method=method, path=path, headers=headers, body=body,
                                              t=time.monotonic(), conn=conn_no))
                    status = self.statuses.pop(0) if self.statuses else 200
                if self.hang:
                    time.sleep(3600)
                msg = b'{"ok":true}'
                c.sendall(f"HTTP/1.1 {status} X\r\nContent-Length: {len(msg)}\r\n\r\n".encode() + msg)
        except OSError:
            pass
        finally:
            c.close()

    def bodies(self):
        return [json.loads(r["body"]) for r in self.requests]

    def close(self):
        self.stopped = True
        self.sock.close()

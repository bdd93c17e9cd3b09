"""A tiny HTTP/1.x client on a raw socket for the black-box tests: exact
bytes out, responses parsed by hand (Content-Length, chunked, close), so
framing, pipelining and connection closes are visible to the tests."""
import hashlib
import socket
import time


class Response:
    def __init__(self, status, reason, headers, body, head):
        self.status = status
        self.reason = reason
        self.header_list = headers            # [(name lower-cased, value)]
        self.headers = {k: v for k, v in headers}
        self.body = body                      # bytes, or None when only counted
        self.head = head                      # raw head bytes
        self.body_len = 0
        self.body_sha256 = None
        self.framing = None                   # "length", "chunked", "close", "none"
        self.truncated = False                # the connection closed before the end

    def all(self, name):
        return [v for k, v in self.header_list if k == name]


class RawConn:
    def __init__(self, port, timeout=10):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = bytearray()
        self.eof = False

    def close(self):
        self.s.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        self.s.sendall(data)

    def _fill(self, n=1 << 20):
        if self.eof:
            raise EOFError("connection closed")
        d = self.s.recv(n)
        if not d:
            self.eof = True
            raise EOFError("connection closed")
        self.buf += d

    def read_until(self, sep):
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                i += len(sep)
                out = bytes(self.buf[:i])
                del self.buf[:i]
                return out
            start = max(0, len(self.buf) - len(sep) + 1)
            self._fill()

    def _read_body(self, n, keep, h, resp):
        """Reads exactly n bytes (or until EOF when n is None)."""
        out = bytearray() if keep else None
        left = n
        while left is None or left > 0:
            if not self.buf:
                try:
                    self._fill()
                except EOFError:
                    if left is not None:
                        resp.truncated = True
                    return out
            take = len(self.buf) if left is None else min(left, len(self.buf))
            piece = self.buf[:take]
            if keep:
                out += piece
            if h:
                h.update(piece)
            resp.body_len += take
            del self.buf[:take]
            if left is not None:
                left -= take
        return out

    def read_response(self, head_request=False, keep_body=True, hash_body=False):
        head = self.read_until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status, *reason = lines[0].split(" ", 2)
        assert version.startswith("HTTP/1."), lines[0]
        headers = []
        for l in lines[1:]:
            if l:
                k, v = l.split(":", 1)
                headers.append((k.strip().lower(), v.strip()))
        resp = Response(int(status), reason[0] if reason else "", headers, None, head)
        h = hashlib.sha256() if hash_body else None
        te = resp.headers.get("transfer-encoding", "").lower()
        if resp.status < 200 or resp.status in (204, 304) or head_request:
            resp.framing = "none"
            resp.body = b""
        elif te:
            resp.framing = "chunked"
            assert te == "chunked", te
            out = bytearray() if keep_body else None
            while True:
                try:
                    line = self.read_until(b"\r\n")
                except EOFError:
                    resp.truncated = True
                    break
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    while self.read_until(b"\r\n") != b"\r\n":
                        pass
                    break
                piece = self._read_body(size, keep_body, h, resp)
                if resp.truncated:
                    break
                if keep_body:
                    out += piece
                assert self.read_until(b"\r\n") == b"\r\n"
            resp.body = bytes(out) if keep_body else None
        elif "content-length" in resp.headers:
            resp.framing = "length"
            b = self._read_body(int(resp.headers["content-length"]), keep_body, h, resp)
            resp.body = bytes(b) if keep_body else None
        else:
            resp.framing = "close"
            b = self._read_body(None, keep_body, h, resp)
            resp.body = bytes(b) if keep_body else None
        if h:
            resp.body_sha256 = h.hexdigest()
        return resp

    def closed_by_peer(self, timeout=3):
        """True when the peer closes the connection (EOF or reset) within timeout
        with no further bytes; False on timeout. Extra bytes raise."""
        if self.eof:
            return True
        self.s.settimeout(timeout)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True
            if not d:
                self.eof = True
                return True
            self.buf += d
            raise AssertionError("unexpected bytes after the response: %r" % bytes(self.buf[:200]))
        return False


def request_bytes(method, target, host="example.com", headers=(), body=b"", version="1.1"):
    h = "%s %s HTTP/%s\r\nHost: %s\r\n" % (method, target, version, host)
    for k, v in headers:
        h += "%s: %s\r\n" % (k, v)
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
        h += "Content-Length: %d\r\n" % len(body)
    return h.encode("latin-1") + b"\r\n" + body

"""Black-box test harness: starts the real limen-dataplane binary (the ASan
build by default, LIMEN_BIN overrides) against real upstream servers on
loopback, and talks to it with real sockets, http.client and curl."""
import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import types
import http.client

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIMEN_BIN = os.environ.get("LIMEN_BIN", os.path.join(ROOT, "bin", "asan", "limen-dataplane"))


_EPHEMERAL = (32768, 60999)
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as _f:
        _EPHEMERAL = tuple(int(x) for x in _f.read().split())
except (OSError, ValueError):
    pass


_HANDED_OUT = __import__("collections").deque(maxlen=2000)


def free_port():
    """A port nothing listens on, below the kernel's ephemeral range: a port
    from that range (what bind(0) hands out) may be taken a moment later as
    the local port of an outgoing connection, and a server then cannot bind it."""
    import random
    lo, hi = 10000, min(_EPHEMERAL[0], 32768) - 1
    for _ in range(200):
        port = random.randint(lo, hi)
        if port in _HANDED_OUT:  # handed out but perhaps not bound yet
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            _HANDED_OUT.append(port)
            return port
        except OSError:
            continue
        finally:
            s.close()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --------------------------------------------------------------------------
# upstream: a small asyncio HTTP/1.1 server with behaviours chosen by path
# --------------------------------------------------------------------------

class Upstream:
    """Paths:
      /echo/...         200 JSON: method, path, headers (list), body length and sha256
      /bytes/N          200 with N bytes (Content-Length); ?chunked=1 for chunked; ?close=1 close-delimited
                        ?chunked=1&lastdelay=MS: the last chunk MS ms after the data
      /sleep/MS         sleeps MS ms then answers 200
      /status/N         answers status N (no body for 204/304)
      /die-mid/N        promises N bytes, sends half, closes
      /garbage          answers something that is not HTTP
      /bighead/N        200 with one response header of N bytes
      /extra            Content-Length: 5 followed by more bytes than that (a second response)
      /early/N          status N at once, without reading the request body, then closes
      /interim          103 and 100 interim responses, then 200 "final"
      /trailers         chunked 200 "abcde" with a chunk extension and a trailer
      /die-chunked/N    chunked 200 with one N-byte chunk, then closes
      echo params: ?hop=1 hop-by-hop response headers, ?via=1 two Via headers,
                   ?close=1 "Connection: close" then close, ?drop=1 close without saying so
      anything else     like /echo
    Records every request it fully received in .requests (method, path, headers, body_len)."""

    def __init__(self, host="127.0.0.1", port=None, name="up"):
        self.host = host
        self.port = port or free_port()
        self.name = name
        self.requests = []
        self.connections = 0
        self.raw = []  # raw bytes received per connection
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.ready = threading.Event()
        self.server = None

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, self.host, self.port, limit=1 << 20))
        self.ready.set()
        self.loop.run_forever()

    def start(self):
        self.thread.start()
        self.ready.wait(5)
        return self

    def stop(self):
        async def _close():
            self.server.close()
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(_close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _handle(self, reader, writer):
        self.connections += 1
        raw = bytearray()
        self.raw.append(raw)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                raw += head
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = []
                for l in lines[1:]:
                    if l:
                        k, v = l.split(":", 1)
                        headers.append((k, v.strip()))
                hmap = {k.lower(): v for k, v in headers}
                if target.startswith("/early/"):  # answers at once without reading the body, then closes
                    self.requests.append({"method": method, "path": target, "query": "", "target": target,
                                          "headers": headers, "body_len": -1, "body_sha256": ""})
                    writer.write(b"HTTP/1.1 %s X\r\nContent-Length: 5\r\nConnection: close\r\n\r\nearly"
                                 % target.split("/")[2].encode())
                    await writer.drain()
                    await asyncio.sleep(0.2)
                    break
                h = hashlib.sha256()
                blen = 0
                if hmap.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        line = await reader.readuntil(b"\r\n")
                        raw += line
                        size = int(line.split(b";")[0], 16)
                        if size == 0:
                            t = await reader.readuntil(b"\r\n")
                            raw += t
                            while t != b"\r\n":
                                t = await reader.readuntil(b"\r\n")
                                raw += t
                            break
                        left = size
                        while left:
                            d = await reader.read(min(left, 1 << 20))
                            if not d:
                                raise ConnectionError
                            h.update(d)
                            blen += len(d)
                            left -= len(d)
                        crlf = await reader.readexactly(2)
                        assert crlf == b"\r\n"
                elif "content-length" in hmap:
                    left = int(hmap["content-length"])
                    while left:
                        d = await reader.read(min(left, 1 << 20))
                        if not d:
                            raise ConnectionError
                        h.update(d)
                        blen += len(d)
                        left -= len(d)
                path, _, query = target.partition("?")
                self.requests.append({"method": method, "path": path, "query": query, "target": target,
                                      "headers": headers, "body_len": blen, "body_sha256": h.hexdigest()})
                keep = await self._respond(writer, method, path, query, headers, hmap, blen, h.hexdigest())
                await writer.drain()
                if not keep or hmap.get("connection", "").lower() == "close":
                    break
        except asyncio.IncompleteReadError as e:
            raw += e.partial  # bytes of an unfinished head or body still count as received
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def _respond(self, writer, method, path, query, headers, hmap, blen, sha):
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        parts = path.split("/")
        if path.startswith("/bytes/"):
            n = int(parts[2])
            chunk = b"x" * 65536
            if params.get("chunked"):
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n")
            elif params.get("close"):
                writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: application/octet-stream\r\n\r\n" % n)
            if method != "HEAD":
                left = n
                while left:
                    c = chunk[:min(left, len(chunk))]
                    if params.get("chunked"):
                        writer.write(b"%x\r\n" % len(c) + c + b"\r\n")
                    else:
                        writer.write(c)
                    left -= len(c)
                    await writer.drain()
                if params.get("chunked"):
                    if params.get("lastdelay"):  # the last chunk on its own, after the data
                        await asyncio.sleep(int(params["lastdelay"]) / 1000.0)
                    writer.write(b"0\r\n\r\n")
            return not params.get("close")
        if path.startswith("/sleep/"):
            await asyncio.sleep(int(parts[2]) / 1000.0)
        if path.startswith("/status/"):
            code = int(parts[2])
            if code in (204, 304):
                writer.write(b"HTTP/1.1 %d X\r\nX-Up: %s\r\n\r\n" % (code, self.name.encode()))
            else:
                body = b"status"
                writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n" % (code, len(body)) + body)
            return True
        if path.startswith("/die-mid/"):
            n = int(parts[2])
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n + b"y" * (n // 2))
            await writer.drain()
            return False
        if path.startswith("/garbage"):
            writer.write(b"this is not http\r\n\r\n")
            return False
        if path.startswith("/extra"):  # 5 bytes more than Content-Length
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
            return True
        if path.startswith("/bighead/"):
            n = int(parts[2])
            writer.write(b"HTTP/1.1 200 OK\r\nX-Big: %s\r\nContent-Length: 2\r\n\r\nok" % (b"b" * n))
            return True
        if path.startswith("/interim"):
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
            return True
        if path.startswith("/trailers"):
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
                         b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n")
            return True
        if path.startswith("/die-chunked/"):  # a chunked body cut after N bytes
            n = int(parts[2])
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (n, b"z" * n))
            await writer.drain()
            return False
        body = json.dumps({"upstream": self.name, "method": method, "path": path, "query": query,
                           "headers": headers, "body_len": blen, "body_sha256": sha}).encode()
        extra = b""
        if params.get("hop"):
            extra = b"Connection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n"
        if params.get("via"):
            extra += b"Via: 1.0 first\r\nVia: 1.1 second, 1.1 third\r\n"
        if params.get("close"):  # "Connection: close" and close after the response
            extra += b"Connection: close\r\n"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nX-Up: %s\r\n%s\r\n"
                     % (len(body), self.name.encode(), extra))
        if method != "HEAD":
            writer.write(body)
        return not (params.get("close") or params.get("drop"))


@pytest.fixture
def upstream():
    u = Upstream().start()
    yield u
    u.stop()


# --------------------------------------------------------------------------
# the data plane
# --------------------------------------------------------------------------

class Limen:
    def __init__(self, config=None, extra_args=(), env=None, workers=2, state_dir=None, config_path=None):
        self.tmp = tempfile.mkdtemp(prefix="limen-t-")
        self.port = free_port()
        self.status_port = free_port()
        self.admin_sock = os.path.join(self.tmp, "admin.sock")
        self.state_dir = state_dir or os.path.join(self.tmp, "state")
        self.config_path = config_path
        if config is not None:
            self.config_path = os.path.join(self.tmp, "kong.yml")
            with open(self.config_path, "w") as f:
                f.write(config)
        self.log_path = os.path.join(self.tmp, "limen.log")
        self.args = [LIMEN_BIN, "--proxy-listen", f"127.0.0.1:{self.port}",
                     "--admin-listen", f"unix:{self.admin_sock}",
                     "--status-listen", f"127.0.0.1:{self.status_port}",
                     "--state-dir", self.state_dir, "--workers", str(workers)]
        if self.config_path:
            self.args += ["--config", self.config_path]
        self.args += list(extra_args)
        self.env = dict(os.environ)
        self.env.setdefault("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1")
        if env:
            self.env.update(env)
        self.proc = None

    def start(self, wait=True, _tries=3):
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        if wait:
            deadline = time.time() + 15
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    log = self.read_log()
                    busy = re.search(r"127\.0\.0\.1:(\d+):? [^\n]*?address already in use", log, re.I)
                    if busy and _tries > 1:  # free_port() raced with another process: new ports, again
                        self._replace_port(int(busy.group(1)))
                        self.log.close()
                        return self.start(wait, _tries - 1)
                    raise RuntimeError("limen exited: " + log)
                try:
                    if self.status()["configuration_hash"] is not None:
                        return self
                except Exception:
                    time.sleep(0.05)
            raise RuntimeError("limen did not start: " + self.read_log())
        return self

    def _replace_port(self, old):
        new = free_port()
        self.args = [x.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}") for x in self.args]
        for k, v in list(vars(self).items()):  # port, status_port, tls_port, ...
            if v == old and k.endswith("port"):
                setattr(self, k, new)

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("limen did not stop in time: " + self.read_log()[-3000:])
        self.log.close()
        log = self.read_log()
        for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer"):
            assert bad not in log, log[-6000:]
        return self.proc.returncode

    # ---- clients
    def conn(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method="GET", path="/", headers=None, body=None, timeout=10):
        c = self.conn(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def raw(self, data, timeout=5, read_all=True):
        """Sends raw bytes, returns everything the proxy answers until it closes (or times out)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s.sendall(data)
            out = b""
            while True:
                try:
                    d = s.recv(65536)
                except socket.timeout:
                    break
                if not d:
                    break
                out += d
                if not read_all:
                    break
            return out
        finally:
            s.close()

    def admin(self, method, path, body=None, headers=None):
        """HTTP over the admin unix socket."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(self.admin_sock)
        if isinstance(body, str):
            body = body.encode()
        hdrs = {"Host": "localhost", "Connection": "close"}
        hdrs.update(headers or {})
        if body is not None:
            hdrs["Content-Length"] = str(len(body))
        req = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        s.sendall(req.encode() + (body or b""))
        out = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
        s.close()
        head, _, data = out.partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1])
        return status, data

    def admin_json(self, method, path, body=None, headers=None):
        st, data = self.admin(method, path, body, headers)
        return st, (json.loads(data) if data else None)

    def status(self):
        c = http.client.HTTPConnection("127.0.0.1", self.status_port, timeout=2)
        c.request("GET", "/status")
        r = c.getresponse()
        d = json.loads(r.read())
        c.close()
        return d

    def metrics(self):
        c = http.client.HTTPConnection("127.0.0.1", self.status_port, timeout=5)
        c.request("GET", "/metrics")
        r = c.getresponse()
        d = r.read().decode()
        c.close()
        return d

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


@pytest.fixture
def limen_factory():
    started = []

    def make(config=None, **kw):
        l = Limen(config, **kw)
        started.append(l)
        return l

    yield make
    for l in started:
        if l.proc and l.proc.poll() is None:
            l.stop()


def simple_config(upstream_port, extra_routes="", service_extra=""):
    return f"""_format_version: "3.0"
services:
- name: echo
  url: http://127.0.0.1:{upstream_port}
{service_extra}  routes:
  - name: root
    paths: ["/"]
{extra_routes}"""


# --------------------------------------------------------------------------
# helpers for the configuration and lifecycle tests
# --------------------------------------------------------------------------

def wait_until(pred, timeout=5.0, interval=0.05, what="condition"):
    """Polls pred() until it returns something truthy; returns it, or fails the test."""
    deadline = time.time() + timeout
    last_exc = None
    while time.time() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # the server may be restarting
            last_exc = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))


def curl_admin(limen, *args, timeout=30):
    """Runs curl against the admin unix socket; returns (status, body bytes)."""
    out = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket", limen.admin_sock,
                          *args], capture_output=True, timeout=timeout, check=True).stdout
    body, _, code = out.rpartition(b"\n")
    return int(code), body


# --------------------------------------------------------------------------
# helpers shared by the plugin suites
# --------------------------------------------------------------------------

@contextlib.contextmanager
def running(make_config, workers=1, **kw):
    """One upstream and one Limen serving make_config(upstream_port); both stopped
    at the end (which asserts the sanitizers reported nothing)."""
    up = Upstream(name="up").start()
    lm = Limen(make_config(up.port), workers=workers, **kw).start()
    try:
        yield types.SimpleNamespace(up=up, lm=lm)
    finally:
        try:
            lm.stop()
        finally:
            up.stop()


def check_config(text, env=None, extra_args=()):
    """Runs `limen-dataplane --check` on a config text: (exit code, output)."""
    fd, path = tempfile.mkstemp(suffix=".yml")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    try:
        e = dict(os.environ)
        e.update(env or {})
        r = subprocess.run([LIMEN_BIN, *extra_args, "--check", path], capture_output=True, text=True, timeout=60,
                           env=e)
    finally:
        os.unlink(path)
    return r.returncode, r.stdout + r.stderr

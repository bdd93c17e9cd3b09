"""Black-box tests of the hmac-auth plugin: signatures computed here with
Python's hmac module, sent through the real binary; Kong 3.x's status codes,
messages and headers.

One Limen (1 worker) and one upstream serve the module; the fixture stops
Limen at the end, which asserts that ASan/UBSan/LSan reported nothing."""
import base64
import email.utils
import hashlib
import hmac
import json
import time

import pytest

from conftest import check_config, running

NO_DATE = ("HMAC signature cannot be verified, a valid date or x-date header is required for "
           "HMAC Authentication")
NOT_VALID = "HMAC signature cannot be verified"
NOT_SAME = "HMAC signature does not match"

CONFIG = """_format_version: "3.0"
services:
- name: echo
  url: http://127.0.0.1:{P}
  routes:
  - {{name: default, paths: ["/default"], plugins: [{{name: hmac-auth}}]}}
  - {{name: enforce, paths: ["/enforce"], plugins: [{{name: hmac-auth, config: {{enforce_headers: [date, request-line], algorithms: [hmac-sha256]}}}}]}}
  - {{name: hide, paths: ["/hide"], plugins: [{{name: hmac-auth, config: {{hide_credentials: true}}}}]}}
  - {{name: anon, paths: ["/anon"], plugins: [{{name: hmac-auth, config: {{anonymous: no-body}}}}]}}
  - {{name: anonmissing, paths: ["/anonmissing"], plugins: [{{name: hmac-auth, config: {{anonymous: ghost}}}}]}}
  - {{name: skew, paths: ["/skew"], plugins: [{{name: hmac-auth, config: {{clock_skew: 10}}}}]}}
  - {{name: realm, paths: ["/realm"], plugins: [{{name: hmac-auth, config: {{realm: api}}}}]}}
consumers:
- username: bob-consumer
  custom_id: c-bob
  hmacauth_credentials:
  - {{username: bob, secret: bob-secret}}
- username: no-body
"""

DIGESTS = {"hmac-sha1": hashlib.sha1, "hmac-sha256": hashlib.sha256,
           "hmac-sha384": hashlib.sha384, "hmac-sha512": hashlib.sha512, "hmac-md5": hashlib.md5}


@pytest.fixture(scope="module")
def env():
    with running(lambda port: CONFIG.format(P=port)) as e:
        yield e


def http_date(offset=0):
    return email.utils.formatdate(time.time() + offset, usegmt=True)


def sign(secret, algorithm, lines):
    return base64.b64encode(hmac.new(secret.encode(), "\n".join(lines).encode(), DIGESTS[algorithm]).digest()).decode()


def authz(user, algorithm, names, signature):
    return f'hmac username="{user}", algorithm="{algorithm}", headers="{names}", signature="{signature}"'


def signed(method, target, algorithm="hmac-sha256", names=("date", "request-line"), extra=None,
           user="bob", secret="bob-secret", header="Authorization", date=None):
    """Headers for a request signed over `names` (values from extra/date)."""
    hdrs = {"Date": date or http_date()}
    hdrs.update(extra or {})
    low = {k.lower(): v for k, v in hdrs.items()}
    lines = []
    for n in names:
        if n.lower() in low:
            lines.append(f"{n}: {low[n.lower()]}")
        elif n == "request-line":
            lines.append(f"{method} {target} HTTP/1.1")
        else:
            lines.append(f"{n}:")
    hdrs[header] = authz(user, algorithm, " ".join(names), sign(secret, algorithm, lines))
    return hdrs


def get(env, path, headers=None, method="GET"):
    st, h, body = env.lm.request(method, path, headers=headers)
    try:
        j = json.loads(body) if body else None
    except ValueError:
        j = None
    return st, h, j


def uh(j):
    return {k.lower(): v for k, v in j["headers"]}


def test_no_credentials(env):
    st, h, j = get(env, "/default")
    assert (st, j["message"]) == (401, "Unauthorized")
    assert h["www-authenticate"] == "hmac"
    st, h, j = get(env, "/realm")
    assert h["www-authenticate"] == 'hmac realm="api"'


def test_date_required(env):
    hdrs = signed("GET", "/default")
    del hdrs["Date"]
    st, _, j = get(env, "/default", hdrs)
    assert (st, j["message"]) == (401, NO_DATE)
    st, _, j = get(env, "/default", signed("GET", "/default", date=http_date(-400)))
    assert (st, j["message"]) == (401, NO_DATE)
    st, _, j = get(env, "/default", signed("GET", "/default", date="yesterday"))
    assert (st, j["message"]) == (401, NO_DATE)


@pytest.mark.parametrize("algorithm", ["hmac-sha1", "hmac-sha256", "hmac-sha384", "hmac-sha512"])
def test_algorithms(env, algorithm):
    st, _, j = get(env, "/default", signed("GET", "/default", algorithm))
    assert st == 200, j
    h = uh(j)
    assert h["x-consumer-username"] == "bob-consumer"
    assert h["x-consumer-custom-id"] == "c-bob"
    assert h["x-credential-identifier"] == "bob"
    assert h["authorization"].startswith("hmac ")  # kept: hide_credentials is false


def test_signature_mismatch_and_unknown_user(env):
    st, _, j = get(env, "/default", signed("GET", "/default", secret="wrong"))
    assert (st, j["message"]) == (401, NOT_SAME)
    st, h, j = get(env, "/default", signed("GET", "/default", user="alice"))
    assert (st, j["message"]) == (401, NOT_VALID)
    assert h["www-authenticate"] == "hmac"
    st, _, j = get(env, "/default", {"Date": http_date(), "Authorization": "hmac nonsense"})
    assert (st, j["message"]) == (401, NOT_VALID)
    st, _, j = get(env, "/default", signed("GET", "/default", "hmac-md5"))
    assert (st, j["message"]) == (401, NOT_VALID)
    # a signature that is not base64
    hdrs = {"Date": http_date(), "Authorization": authz("bob", "hmac-sha256", "date", "!!!")}
    st, _, j = get(env, "/default", hdrs)
    assert (st, j["message"]) == (401, NOT_SAME)


def test_request_line_covers_path_and_query(env):
    target = "/default/x?a=1&b=two"
    assert get(env, target, signed("GET", target))[0] == 200
    st, _, j = get(env, "/default/x?a=1&b=three", signed("GET", target))
    assert (st, j["message"]) == (401, NOT_SAME)
    st, _, j = get(env, target, signed("POST", target))
    assert (st, j["message"]) == (401, NOT_SAME)


def test_other_headers_in_signature(env):
    names = ("date", "x-custom", "x-absent", "request-line")
    hdrs = signed("GET", "/default", names=names, extra={"X-Custom": "v1"})
    assert get(env, "/default", hdrs)[0] == 200
    hdrs["X-Custom"] = "v2"
    st, _, j = get(env, "/default", hdrs)
    assert (st, j["message"]) == (401, NOT_SAME)
    # only the date: valid (Kong does not require request-line by default)
    assert get(env, "/default", signed("GET", "/default", names=("date",)))[0] == 200
    # the header names keep the case they are listed with
    assert get(env, "/default", signed("GET", "/default", names=("Date",)))[0] == 200


def test_x_date_and_formats(env):
    t = time.time()
    rfc850 = time.strftime("%A, %d-%b-%y %H:%M:%S GMT", time.gmtime(t))
    asctime = time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(t))
    for xd in (http_date(), rfc850, asctime):
        hdrs = signed("GET", "/default", names=("x-date", "request-line"), extra={"X-Date": xd},
                      date=http_date(-1000))  # a bad Date does not matter when X-Date is good
        assert get(env, "/default", hdrs)[0] == 200, xd


def test_clock_skew(env):
    assert get(env, "/skew", signed("GET", "/skew", date=http_date(-5)))[0] == 200
    st, _, j = get(env, "/skew", signed("GET", "/skew", date=http_date(-30)))
    assert (st, j["message"]) == (401, NO_DATE)
    st, _, j = get(env, "/skew", signed("GET", "/skew", date=http_date(+30)))
    assert (st, j["message"]) == (401, NO_DATE)


def test_enforce_headers(env):
    st, _, j = get(env, "/enforce", signed("GET", "/enforce", names=("date",)))
    assert (st, j["message"]) == (401, NOT_VALID)
    assert get(env, "/enforce", signed("GET", "/enforce"))[0] == 200
    # algorithms: only hmac-sha256 here
    st, _, j = get(env, "/enforce", signed("GET", "/enforce", "hmac-sha512"))
    assert (st, j["message"]) == (401, NOT_VALID)


def test_proxy_authorization_and_hide_credentials(env):
    hdrs = signed("GET", "/default", header="Proxy-Authorization")
    assert get(env, "/default", hdrs)[0] == 200
    hdrs = signed("GET", "/hide", header="Proxy-Authorization")
    hdrs["Authorization"] = "Basic keep-me"
    st, _, j = get(env, "/hide", hdrs)
    assert st == 200
    h = uh(j)
    assert "proxy-authorization" not in h and h["authorization"] == "Basic keep-me"
    st, _, j = get(env, "/hide", signed("GET", "/hide"))
    assert st == 200 and "authorization" not in uh(j)


def test_anonymous(env):
    st, _, j = get(env, "/anon")
    assert st == 200
    h = uh(j)
    assert h["x-anonymous-consumer"] == "true" and h["x-consumer-username"] == "no-body"
    assert "x-credential-identifier" not in h
    st, _, j = get(env, "/anon", signed("GET", "/anon"))
    h = uh(j)
    assert st == 200 and h["x-consumer-username"] == "bob-consumer" and "x-anonymous-consumer" not in h
    st, _, j = get(env, "/anonmissing")
    assert st == 500 and j["message"] == "anonymous consumer ghost is configured but doesn't exist"


def check(cfg):
    return check_config(cfg)


def test_config_errors():
    base = '_format_version: "3.0"\nplugins:\n- name: hmac-auth\n  config: %s\n'
    rc, out = check(base % "{validate_request_body: true}")
    assert rc == 0, out
    rc, out = check(base % "{validate_request_body: 1}")
    assert rc == 1 and "plugins[0].config.validate_request_body" in out, out
    rc, out = check(base % "{clock_skew: 0}")
    assert rc == 1 and "plugins[0].config.clock_skew" in out, out
    rc, out = check(base % "{algorithms: [hmac-md5]}")
    assert rc == 1 and "plugins[0].config.algorithms" in out, out
    rc, out = check(base % "{enforce_headers: date}")
    assert rc == 1 and "plugins[0].config.enforce_headers" in out, out
    rc, out = check('_format_version: "3.0"\nconsumers:\n- username: a\n  plugins:\n  - name: hmac-auth\n')
    assert rc == 1 and "consumer" in out and "value must be null" in out, out
    rc, out = check(base % "{clock_skew: 1.5, enforce_headers: [date], hide_credentials: true}")
    assert rc == 0, out


def test_request_line_is_the_target_as_sent(env):
    # the signature covers the path exactly as the client sent it (Kong signs the raw
    # request target), not the normalised form the router uses
    for target in ("/default/%61b?q=%20", "/default//x", "/default/./y"):
        assert get(env, target, signed("GET", target))[0] == 200, target


def test_request_line_has_the_http_version(env):
    target = "/default/v"
    date = http_date()
    sig = sign("bob-secret", "hmac-sha256", [f"date: {date}", f"GET {target} HTTP/1.0"])
    req = (f"GET {target} HTTP/1.0\r\nHost: localhost\r\nDate: {date}\r\n"
           f"Authorization: {authz('bob', 'hmac-sha256', 'date request-line', sig)}\r\n\r\n").encode()
    out = env.lm.raw(req)
    assert out.startswith(b"HTTP/1.1 200"), out[:200]


# ---- validate_request_body (the body read whole for the plugin) -----------------

from httpraw import RawConn

BODY_CONFIG = """_format_version: "3.0"
services:
- name: echo
  url: http://127.0.0.1:{P}
  routes:
  - {{name: body, paths: ["/body"], plugins: [{{name: hmac-auth, config: {{validate_request_body: true}}}}]}}
  - {{name: nobody, paths: ["/nobody"], plugins: [{{name: hmac-auth}}]}}
consumers:
- username: bob-consumer
  hmacauth_credentials:
  - {{username: bob, secret: bob-secret}}
"""


@pytest.fixture(scope="module")
def benv():
    with running(lambda port: BODY_CONFIG.format(P=port)) as e:
        yield e


def digest(body):
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()


def bpost(benv, target, body, dig=None, names=("date", "request-line", "digest")):
    extra = {"Digest": dig} if dig is not None else {}
    hdrs = signed("POST", target, names=names, extra=extra)
    st, h, data = benv.lm.request("POST", target, headers=hdrs, body=body)
    return st, json.loads(data)


def test_body_digest_ok(benv):
    body = b'{"amount": 10}'
    st, j = bpost(benv, "/body/pay", body, digest(body))
    assert st == 200, j
    assert j["body_len"] == len(body) and j["body_sha256"] == hashlib.sha256(body).hexdigest()
    hs = {k.lower(): v for k, v in j["headers"]}
    assert hs["x-consumer-username"] == "bob-consumer" and hs["digest"] == digest(body)


def test_body_digest_mismatch(benv):
    body = b"amount=10"
    st, j = bpost(benv, "/body/pay", body, digest(b"amount=1000"))  # body modified after signing
    assert st == 401 and j["message"] == NOT_SAME
    st, j = bpost(benv, "/body/pay", body, "SHA-256=bogus")
    assert st == 401 and j["message"] == NOT_SAME
    st, j = bpost(benv, "/body/pay", body, digest(body).replace("SHA-256", "sha-256"))  # compared exactly
    assert st == 401 and j["message"] == NOT_SAME


def test_body_digest_missing(benv):
    st, j = bpost(benv, "/body/pay", b"amount=10", None, names=("date", "request-line"))
    assert st == 401 and j["message"] == NOT_SAME
    # no Digest and no body is fine (Kong: body == "")
    hdrs = signed("GET", "/body/get")
    st, _, data = benv.lm.request("GET", "/body/get", headers=hdrs)
    assert st == 200
    st, j = bpost(benv, "/body/empty", b"", None, names=("date", "request-line"))
    assert st == 200, j


def test_body_digest_need_not_be_signed(benv):
    # Kong does not require Digest among the signed headers (enforce_headers can)
    body = b"x=1"
    st, j = bpost(benv, "/body/pay", body, digest(body), names=("date", "request-line"))
    assert st == 200, j


def test_signature_checked_before_digest(benv):
    body = b"x=1"
    hdrs = signed("POST", "/body/pay", names=("date", "request-line", "digest"), extra={"Digest": digest(body)})
    hdrs["Digest"] = digest(b"x=2")  # signed one value, sent another
    st, _, data = benv.lm.request("POST", "/body/pay", headers=hdrs, body=b"x=2")
    assert st == 401 and json.loads(data)["message"] == NOT_SAME


def test_body_digest_chunked(benv):
    body = b"c" * 70000
    hdrs = signed("POST", "/body/chunk", extra={"Digest": digest(body)}, names=("date", "request-line", "digest"))
    head = "POST /body/chunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" + \
        "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    data = b"".join(b"%x\r\n" % len(body[i:i + 10000]) + body[i:i + 10000] + b"\r\n"
                    for i in range(0, len(body), 10000)) + b"0\r\n\r\n"
    with RawConn(benv.lm.port) as c:
        c.send(head.encode() + data)
        r = c.read_response()
        assert r.status == 200, r.body
        j = json.loads(r.body)
        assert j["body_len"] == len(body) and j["body_sha256"] == hashlib.sha256(body).hexdigest()
        hs = {k.lower(): v for k, v in j["headers"]}
        assert hs["content-length"] == str(len(body)) and "transfer-encoding" not in hs


def test_body_over_cap_fails(benv):
    body = b"o" * ((1 << 20) + 1)
    hdrs = signed("POST", "/body/big", extra={"Digest": digest(body)}, names=("date", "request-line", "digest"))
    head = "POST /body/big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % len(body) + \
        "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    with RawConn(benv.lm.port) as c:
        c.send(head.encode() + body[:4096])
        r = c.read_response()
        assert r.status == 401 and json.loads(r.body)["message"] == NOT_SAME


def test_expect_continue_with_digest(benv):
    body = b"e=1"
    hdrs = signed("POST", "/body/exp", extra={"Digest": digest(body)}, names=("date", "request-line", "digest"))
    head = "POST /body/exp HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n" + \
        "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    with RawConn(benv.lm.port) as c:
        c.send(head.encode())
        assert c.read_response().status == 100
        c.send(body)
        r = c.read_response()
        assert r.status == 200 and json.loads(r.body)["body_len"] == 3


def test_without_validation_body_streams(benv):
    body = b"s" * 30000
    st, _, data = benv.lm.request("POST", "/nobody/x", headers=signed("POST", "/nobody/x"), body=body)
    assert st == 200 and json.loads(data)["body_len"] == len(body)

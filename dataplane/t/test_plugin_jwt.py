"""Black-box tests of the jwt plugin: tokens signed by the openssl command-line
tool (an independent signer) with keys made by `openssl genpkey`, sent through
the real binary; Kong 3.x's status codes, messages and headers.

One Limen (1 worker) and one upstream serve the module; the fixture stops
Limen at the end, which asserts that ASan/UBSan/LSan reported nothing."""
import base64
import json
import os
import subprocess
import tempfile
import time
import types

import pytest

from conftest import check_config, Limen, Upstream


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def openssl(*args, data=b""):
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


def der_to_raw(der, size):
    """ECDSA-Sig-Value (DER) -> JOSE r||s."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 3
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        v = der[i + 2:i + 2 + n].lstrip(b"\x00")
        out += v.rjust(size, b"\x00")
        i += 2 + n
    return out


class Keys:
    def __init__(self, d):
        self.d = d
        self.path = {}
        self.pub = {}
        for name, args in (("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
                           ("rsa2", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
                           ("ec256", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                           ("ec384", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]),
                           ("ed", ["-algorithm", "ED25519"])):
            p = os.path.join(d, name + ".pem")
            openssl("genpkey", *args, "-out", p)
            self.path[name] = p
            self.pub[name] = openssl("pkey", "-in", p, "-pubout").decode()

    def sign(self, alg, signing_input, key):
        """key: a secret (HS*) or a key name."""
        data = signing_input.encode()
        bits = alg[2:]
        if alg.startswith("HS"):
            return openssl("dgst", "-sha" + bits, "-hmac", key, "-binary", data=data)
        if alg.startswith("RS"):
            return openssl("dgst", "-sha" + bits, "-sign", self.path[key], "-binary", data=data)
        if alg.startswith("PS"):
            return openssl("dgst", "-sha" + bits, "-sigopt", "rsa_padding_mode:pss", "-sigopt",
                           "rsa_pss_saltlen:digest", "-sign", self.path[key], "-binary", data=data)
        if alg.startswith("ES"):
            der = openssl("dgst", "-sha" + bits, "-sign", self.path[key], "-binary", data=data)
            return der_to_raw(der, {"256": 32, "384": 48, "512": 66}[bits])
        if alg == "EdDSA":
            f = os.path.join(self.d, "msg")
            with open(f, "wb") as fh:
                fh.write(data)
            return openssl("pkeyutl", "-sign", "-rawin", "-inkey", self.path[key], "-in", f)
        raise ValueError(alg)

    def token(self, claims, key, alg="HS256", header=None, sig=None):
        h = header if header is not None else {"typ": "JWT", "alg": alg}
        si = b64url(json.dumps(h).encode()) + "." + b64url(json.dumps(claims).encode())
        if sig is None:
            sig = self.sign(alg, si, key)
        return si + "." + b64url(sig)


B64_SECRET = b"blob\x00data\xff"


def config(up_port, k):
    def route(name, cfg=None):
        p = {"name": "jwt"}
        if cfg is not None:
            p["config"] = cfg
        return {"name": name, "paths": ["/" + name], "plugins": [p]}

    return json.dumps({
        "_format_version": "3.0",
        "services": [{"name": "echo", "url": f"http://127.0.0.1:{up_port}", "routes": [
            route("default"),
            route("claims", {"claims_to_verify": ["exp", "nbf"]}),
            route("maxexp", {"claims_to_verify": ["exp"], "maximum_expiration": 300}),
            route("sources", {"cookie_names": ["silly", "crumble"], "uri_param_names": ["token", "jwt"]}),
            route("custom", {"header_names": ["CustomAuthorization"], "key_claim_name": "kid",
                             "realm": "kong-test", "uri_param_names": []}),
            route("anon", {"anonymous": "no-body"}),
            route("anonmissing", {"anonymous": "ghost"}),
            route("preflight", {"run_on_preflight": False}),
            route("b64", {"secret_is_base64": True}),
        ]}],
        "consumers": [
            {"username": "hs-user", "custom_id": "c-hs", "jwt_secrets": [
                {"key": "hs-key", "secret": "hs-secret"},
                {"key": "hs384-key", "algorithm": "HS384", "secret": "s384"},
                {"key": "hs512-key", "algorithm": "HS512", "secret": "s512"},
            ]},
            {"username": "rsa-user", "jwt_secrets": [
                {"key": "rs-key", "algorithm": "RS256", "rsa_public_key": k.pub["rsa"]},
                {"key": "rs512-key", "algorithm": "RS512", "rsa_public_key": k.pub["rsa"]},
                {"key": "ps-key", "algorithm": "PS256", "rsa_public_key": k.pub["rsa"]},
            ]},
            {"username": "ec-user", "jwt_secrets": [
                {"key": "es-key", "algorithm": "ES256", "rsa_public_key": k.pub["ec256"]},
                {"key": "es384-key", "algorithm": "ES384", "rsa_public_key": k.pub["ec384"]},
                {"key": "ed-key", "algorithm": "EdDSA", "rsa_public_key": k.pub["ed"]},
            ]},
            {"username": "b64-user", "jwt_secrets": [
                {"key": "b64-key", "secret": base64.b64encode(B64_SECRET).decode()},
            ]},
            {"username": "no-body", "id": "7d1d0e9c-6c1e-4e8e-8a62-7b7f5a3a0c11"},
        ],
    })


@pytest.fixture(scope="module")
def env():
    d = tempfile.mkdtemp(prefix="limen-jwt-")
    k = Keys(d)
    up = Upstream(name="up").start()
    lm = Limen(config(up.port, k), workers=1).start()
    yield types.SimpleNamespace(up=up, lm=lm, k=k)
    try:
        lm.stop()
    finally:
        up.stop()


def get(env, path, headers=None, method="GET"):
    st, h, body = env.lm.request(method, path, headers=headers)
    try:
        j = json.loads(body) if body else None
    except ValueError:
        j = None
    return st, h, j


def upstream_headers(j):
    return {k.lower(): v for k, v in j["headers"]}


def now():
    return int(time.time())


def claims(key, **kw):
    c = {"iss": key}
    c.update(kw)
    return c


def bearer(t):
    return {"Authorization": "Bearer " + t}


# ---- refusals ---------------------------------------------------------------

def test_no_token(env):
    st, h, j = get(env, "/default")
    assert st == 401 and j["message"] == "Unauthorized"
    assert h["www-authenticate"] == "Bearer"
    assert not env.up.requests or all(r["path"] != "/default" for r in env.up.requests)


def test_hs256_in_header_identifies_consumer(env):
    t = env.k.token(claims("hs-key"), "hs-secret")
    st, _, j = get(env, "/default", bearer(t))
    assert st == 200
    uh = upstream_headers(j)
    assert uh["x-consumer-username"] == "hs-user"
    assert uh["x-consumer-custom-id"] == "c-hs"
    assert uh["x-credential-identifier"] == "hs-key"
    assert uh["authorization"] == "Bearer " + t
    assert "x-anonymous-consumer" not in uh


@pytest.mark.parametrize("alg,key,secret,user", [
    ("HS384", "hs384-key", "s384", "hs-user"),
    ("HS512", "hs512-key", "s512", "hs-user"),
    ("RS256", "rs-key", "rsa", "rsa-user"),
    ("RS512", "rs512-key", "rsa", "rsa-user"),
    ("PS256", "ps-key", "rsa", "rsa-user"),
    ("ES256", "es-key", "ec256", "ec-user"),
    ("ES384", "es384-key", "ec384", "ec-user"),
    ("EdDSA", "ed-key", "ed", "ec-user"),
])
def test_algorithms(env, alg, key, secret, user):
    t = env.k.token(claims(key, exp=now() + 60), secret, alg)
    st, _, j = get(env, "/default", bearer(t))
    assert st == 200, j
    uh = upstream_headers(j)
    assert uh["x-consumer-username"] == user
    assert uh["x-credential-identifier"] == key


def test_bad_signatures(env):
    k = env.k
    cases = [
        k.token(claims("hs-key"), "wrong-secret"),
        k.token(claims("rs-key"), "rsa2", "RS256"),        # another key
        k.token(claims("ps-key"), "rsa2", "PS256"),
        k.token(claims("es-key"), "ec256", "ES256", sig=b"\x01" * 64),
        k.token(claims("es-key"), "ec256", "ES256", sig=b"\x01" * 63),  # wrong size
        k.token(claims("ed-key"), "ed", "EdDSA", sig=b"\x00" * 64),
    ]
    # a valid token whose claims were changed after signing
    good = k.token(claims("hs-key", admin=False), "hs-secret")
    h, _, s = good.split(".")
    cases.append(h + "." + b64url(json.dumps(claims("hs-key", admin=True)).encode()) + "." + s)
    for t in cases:
        st, hd, j = get(env, "/default", bearer(t))
        assert (st, j["message"]) == (401, "Invalid signature"), t
        assert hd["www-authenticate"] == 'Bearer error="invalid_token"'


def test_wrong_algorithm(env):
    # HS256 token for an RS256 credential (the classic key-confusion attack)
    t = env.k.token(claims("rs-key"), env.k.pub["rsa"], "HS256")
    st, _, j = get(env, "/default", bearer(t))
    assert (st, j["message"]) == (401, "Invalid algorithm")
    t = env.k.token(claims("hs-key"), "hs-secret", "HS256", header={"alg": "HS512"}, sig=b"x")
    st, _, j = get(env, "/default", bearer(t))
    assert (st, j["message"]) == (401, "Invalid algorithm")


def test_bad_tokens(env):
    hs = b64url(b'{"alg":"HS256"}')
    cl = b64url(b'{"iss":"hs-key"}')
    cases = {
        "garbage": "Bad token; invalid JSON",
        hs + "." + cl: "Bad token; invalid JSON",                         # two parts
        hs + ".!!!." + "c2ln": "Bad token; invalid JSON",
        b64url(b'{"alg":"none"}') + "." + cl + ".": "Bad token; invalid alg",
        b64url(b'{"typ":"JWT"}') + "." + cl + ".c2ln": "Bad token; invalid alg",
        b64url(b'{"alg":"HS256"}') + "." + b64url(b"false") + ".c2ln": "Bad token; invalid claims",
        hs + "." + cl + ".c2ln.more": "Bad token; invalid signature",
        hs + "." + cl + ".a": "Bad token; invalid signature",             # 4n+1 characters
        hs + "." + b64url(b'{"sub":"x"}') + ".c2ln": "No mandatory 'iss' in claims",
        hs + "." + b64url(b'{"iss":""}') + ".c2ln": "Invalid 'iss' in claims",
        hs + "." + b64url(b'{"iss":"nobody"}') + ".c2ln": "No credentials found for given 'iss'",
    }
    for t, msg in cases.items():
        st, hd, j = get(env, "/default", bearer(t))
        assert (st, j["message"]) == (401, msg), t
        assert hd["www-authenticate"] == 'Bearer error="invalid_token"'


def test_token_in_standard_base64_with_padding(env):
    # Kong's decoder accepts '+' '/' and '=' as well
    k = env.k
    h = base64.b64encode(json.dumps({"alg": "HS256", "x": "\u00fb\u00ff?"}).encode()).decode()
    c = base64.b64encode(json.dumps(claims("hs-key")).encode()).decode()
    sig = k.sign("HS256", h + "." + c, "hs-secret")
    st, _, j = get(env, "/default", bearer(h + "." + c + "." + base64.b64encode(sig).decode()))
    assert st == 200, j


# ---- where the token comes from ---------------------------------------------

def test_sources(env):
    t = env.k.token(claims("hs-key"), "hs-secret")
    assert get(env, "/default?jwt=" + t)[0] == 200
    assert get(env, "/sources?token=" + t)[0] == 200
    assert get(env, "/sources", {"Cookie": "a=b; crumble=" + t + "; path=/"})[0] == 200
    assert get(env, "/sources", {"Cookie": "silly=" + t})[0] == 200
    assert get(env, "/default", {"Authorization": "bearer " + t})[0] == 200
    # cookies are not read unless configured
    st, _, j = get(env, "/default", {"Cookie": "jwt=" + t})
    assert (st, j["message"]) == (401, "Unauthorized")
    # the header needs the Bearer scheme
    st, _, j = get(env, "/default", {"Authorization": "Basic " + t})
    assert (st, j["message"]) == (401, "Unauthorized")


def test_multiple_tokens(env):
    t1 = env.k.token(claims("hs-key"), "hs-secret")
    t2 = env.k.token(claims("hs-key", x=1), "hs-secret")
    st, _, j = get(env, "/default?jwt=" + t1, bearer(t2))
    assert (st, j["message"]) == (401, "Multiple tokens provided")
    st, _, j = get(env, "/sources?jwt=" + t1 + "&token=" + t2)
    assert (st, j["message"]) == (401, "Multiple tokens provided")
    st, _, j = get(env, "/sources?jwt=" + t1 + "&jwt=" + t2)
    assert (st, j["message"]) == (401, "Multiple tokens provided")
    st, _, j = get(env, "/sources", {"Cookie": "silly=" + t1 + "; crumble=" + t2})
    assert (st, j["message"]) == (401, "Multiple tokens provided")
    # the same token twice is one token
    assert get(env, "/default?jwt=" + t1, bearer(t1))[0] == 200
    # a bare "?jwt" is not a token Kong can use
    st, _, j = get(env, "/default?jwt")
    assert (st, j["message"]) == (401, "Unrecognizable token")
    # an empty value is no token
    st, _, j = get(env, "/default?jwt=")
    assert (st, j["message"]) == (401, "Unauthorized")


def test_custom_header_key_claim_in_header_and_realm(env):
    t = env.k.token({"sub": "x"}, "hs-secret", header={"alg": "HS256", "kid": "hs-key"})
    st, _, j = get(env, "/custom", {"CustomAuthorization": "Bearer " + t})
    assert st == 200 and upstream_headers(j)["x-credential-identifier"] == "hs-key"
    st, h, j = get(env, "/custom", bearer(t))
    assert (st, j["message"]) == (401, "Unauthorized")
    assert h["www-authenticate"] == 'Bearer realm="kong-test"'
    st, h, j = get(env, "/custom", {"CustomAuthorization": "Bearer " + t + "x"})
    assert (st, j["message"]) == (401, "Invalid signature")
    assert h["www-authenticate"] == 'Bearer realm="kong-test", error="invalid_token"'


# ---- claims -----------------------------------------------------------------

def test_claims_to_verify(env):
    k = env.k
    st, _, j = get(env, "/claims", bearer(k.token(claims("hs-key"), "hs-secret")))
    assert st == 401 and j == {"exp": "must be a number", "nbf": "must be a number"}
    st, _, j = get(env, "/claims", bearer(k.token(claims("hs-key", exp=now() - 10, nbf=now() - 10), "hs-secret")))
    assert st == 401 and j == {"exp": "token expired"}
    st, _, j = get(env, "/claims", bearer(k.token(claims("hs-key", exp=now() + 60, nbf=now() + 30), "hs-secret")))
    assert st == 401 and j == {"nbf": "token not valid yet"}
    st, _, j = get(env, "/claims", bearer(k.token(claims("hs-key", exp=str(now() + 60), nbf=now()), "hs-secret")))
    assert st == 401 and j == {"exp": "must be a number"}
    st, h, _ = get(env, "/claims", bearer(k.token(claims("hs-key", exp=now() + 60, nbf=now() - 5), "hs-secret")))
    assert st == 200
    # without claims_to_verify an expired token passes, as in Kong
    assert get(env, "/default", bearer(k.token(claims("hs-key", exp=now() - 10), "hs-secret")))[0] == 200


def test_maximum_expiration(env):
    k = env.k
    st, _, j = get(env, "/maxexp?jwt=" + k.token(claims("hs-key", exp=now() + 3600), "hs-secret"))
    assert st == 401 and j == {"exp": "exceeds maximum allowed expiration"}
    assert get(env, "/maxexp?jwt=" + k.token(claims("hs-key", exp=now() + 270), "hs-secret"))[0] == 200


def test_secret_is_base64(env):
    si = b64url(b'{"alg":"HS256"}') + "." + b64url(json.dumps(claims("b64-key")).encode())
    import hmac as _h
    import hashlib
    sig = _h.new(B64_SECRET, si.encode(), hashlib.sha256).digest()
    assert get(env, "/b64", bearer(si + "." + b64url(sig)))[0] == 200
    # the same token where the secret is not base64-decoded fails
    st, _, j = get(env, "/default", bearer(si + "." + b64url(sig)))
    assert (st, j["message"]) == (401, "Invalid signature")


# ---- anonymous, preflight -----------------------------------------------------

def test_anonymous(env):
    st, _, j = get(env, "/anon")
    assert st == 200
    uh = upstream_headers(j)
    assert uh["x-anonymous-consumer"] == "true"
    assert uh["x-consumer-username"] == "no-body"
    assert "x-credential-identifier" not in uh
    t = env.k.token(claims("hs-key"), "hs-secret")
    st, _, j = get(env, "/anon", dict(bearer(t), **{"X-Anonymous-Consumer": "spoofed"}))
    uh = upstream_headers(j)
    assert st == 200 and uh["x-consumer-username"] == "hs-user" and "x-anonymous-consumer" not in uh
    st, _, j = get(env, "/anonmissing")
    assert st == 500 and j["message"] == "anonymous consumer ghost is configured but doesn't exist"


def test_preflight(env):
    assert get(env, "/preflight", method="OPTIONS")[0] == 200
    st, _, j = get(env, "/default", method="OPTIONS")
    assert (st, j["message"]) == (401, "Unauthorized")
    assert get(env, "/preflight")[0] == 401


# ---- configuration errors -----------------------------------------------------

def check(cfg):
    return check_config(cfg)


def test_config_errors():
    base = '_format_version: "3.0"\nplugins:\n- name: jwt\n  config: %s\n'
    rc, out = check(base % "{maximum_expiration: 300}")
    assert rc == 1 and "plugins[0].config.claims_to_verify" in out and "exp" in out, out
    rc, out = check(base % "{maximum_expiration: 31536001, claims_to_verify: [exp]}")
    assert rc == 1 and "plugins[0].config.maximum_expiration" in out, out
    rc, out = check(base % "{claims_to_verify: [iat]}")
    assert rc == 1 and "plugins[0].config.claims_to_verify" in out, out
    rc, out = check(base % "{uri_params: [x]}")
    assert rc == 1 and "plugins[0].config.uri_params" in out and "unknown field" in out, out
    rc, out = check(base % "{run_on_preflight: 3}")
    assert rc == 1 and "plugins[0].config.run_on_preflight" in out, out
    rc, out = check('_format_version: "3.0"\nconsumers:\n- username: a\n  jwt_secrets:\n'
                    '  - {key: k, algorithm: RS256, rsa_public_key: "not a key"}\n'
                    'plugins:\n- name: jwt\n')
    assert rc == 1 and "invalid key" in out, out
    rc, out = check(base % "{maximum_expiration: 300, claims_to_verify: [exp, nbf]}")
    assert rc == 0, out

/* jwt_token.c - JWT parsing and verification; see lm_jwt.h. */
#include "lm_jwt.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>

/* ---- algorithms ------------------------------------------------------- */

static const char *const lm__alg_names[LM_JWT_NUM_ALGS] = {
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256",
    "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA",
};

lm_jwt_alg_t lm_jwt_alg_from_name(lm_str_t name)
{
    for (int i = 0; i < LM_JWT_NUM_ALGS; i++)
        if (lm_str_eq(name, lm_str(lm__alg_names[i])))
            return (lm_jwt_alg_t)i;
    return LM_JWT_ALG_UNKNOWN;
}

const char *lm_jwt_alg_name(lm_jwt_alg_t alg)
{
    return alg >= 0 && alg < LM_JWT_NUM_ALGS ? lm__alg_names[alg] : "?";
}

/* Digests fetched once: OpenSSL 3's implicit fetch (EVP_sha256() in an
 * init call) takes the method store's lock on every request. */
static EVP_MD *lm__md[3];
static pthread_once_t lm__md_once = PTHREAD_ONCE_INIT;

static void lm__md_init(void)
{
    lm__md[0] = EVP_MD_fetch(NULL, "SHA256", NULL);
    lm__md[1] = EVP_MD_fetch(NULL, "SHA384", NULL);
    lm__md[2] = EVP_MD_fetch(NULL, "SHA512", NULL);
}

static const EVP_MD *lm__alg_md(lm_jwt_alg_t alg)
{
    int i;
    switch (alg) {
    case LM_JWT_HS256: case LM_JWT_RS256: case LM_JWT_ES256: case LM_JWT_PS256: i = 0; break;
    case LM_JWT_HS384: case LM_JWT_RS384: case LM_JWT_ES384: case LM_JWT_PS384: i = 1; break;
    case LM_JWT_HS512: case LM_JWT_RS512: case LM_JWT_ES512: case LM_JWT_PS512: i = 2; break;
    default: return NULL;
    }
    pthread_once(&lm__md_once, lm__md_init);
    if (lm__md[i])
        return lm__md[i];
    return i == 0 ? EVP_sha256() : i == 1 ? EVP_sha384() : EVP_sha512();
}

/* ---- base64 ----------------------------------------------------------- */

/* 0..63, 64 = not in the alphabet, 65 = url-only character */
static int lm__b64_val(unsigned char c, bool url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    if (url && c == '-')
        return 62;
    if (url && c == '_')
        return 63;
    return 64;
}

bool lm_jwt_b64_decode(lm_str_t in, bool url, unsigned char *out, size_t *out_len)
{
    const unsigned char *s = (const unsigned char *)in.ptr;
    size_t n = 0;
    while (n < in.len && s[n] != '=')
        n++;
    for (size_t i = n; i < in.len; i++) /* only padding after the first '=' */
        if (s[i] != '=')
            return false;
    if (n % 4 == 1)
        return false;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = lm__b64_val(s[i], url);
        if (v > 63)
            return false;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    *out_len = o;
    return true;
}

size_t lm_jwt_b64_encode(const unsigned char *in, size_t len, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63];
        out[o++] = tbl[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

static bool lm__b64_arena(lm_str_t in, lm_arena_t *a, lm_str_t *out)
{
    unsigned char *buf = lm_arena_alloc(a, lm_jwt_b64_max(in.len) + 1);
    size_t n;
    if (!lm_jwt_b64_decode(in, true, buf, &n))
        return false;
    buf[n] = '\0';
    *out = (lm_str_t){ (const char *)buf, n };
    return true;
}

/* ---- a validating JSON scanner that never allocates ------------------ */
/*
 * RFC 8259 values; the top-level object's members of interest are reported
 * (last one wins). Strings are validated in place and unescaped into the
 * arena only when they are wanted.
 */

#define LM__JSON_MAX_DEPTH 1000 /* Lua cjson's default decode_max_depth */

typedef struct {
    const char *p, *end;
    int depth;
} lm__js_t;

static void lm__js_ws(lm__js_t *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int lm__hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* Scans a string at s->p ('"'): *raw = its body, *escaped when it holds '\'. */
static bool lm__js_string(lm__js_t *s, lm_str_t *raw, bool *escaped)
{
    const char *start = ++s->p;
    *escaped = false;
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            *raw = (lm_str_t){ start, (size_t)(s->p - start) };
            s->p++;
            return true;
        }
        if (c == '\\') {
            *escaped = true;
            if (s->end - s->p < 2)
                return false;
            char e = s->p[1];
            if (e == 'u') {
                if (s->end - s->p < 6)
                    return false;
                int u = lm__hex4(s->p + 2);
                if (u < 0)
                    return false;
                s->p += 6;
                if (u >= 0xD800 && u <= 0xDBFF) { /* needs its low surrogate */
                    if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u')
                        return false;
                    int lo = lm__hex4(s->p + 2);
                    if (lo < 0xDC00 || lo > 0xDFFF)
                        return false;
                    s->p += 6;
                } else if (u >= 0xDC00 && u <= 0xDFFF) {
                    return false;
                }
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == '\0')
                return false;
            s->p += 2;
            continue;
        }
        s->p++;
    }
    return false;
}

static void lm__utf8(char **o, uint32_t cp)
{
    char *d = *o;
    if (cp < 0x80) {
        *d++ = (char)cp;
    } else if (cp < 0x800) {
        *d++ = (char)(0xC0 | (cp >> 6));
        *d++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *d++ = (char)(0xE0 | (cp >> 12));
        *d++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *d++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *d++ = (char)(0xF0 | (cp >> 18));
        *d++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *d++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *d++ = (char)(0x80 | (cp & 0x3F));
    }
    *o = d;
}

/* Unescapes a string body already validated by lm__js_string into dst
 * (room for raw.len + 1 bytes: an escape never grows). */
static size_t lm__js_unescape(lm_str_t raw, char *dst)
{
    const char *p = raw.ptr, *end = raw.ptr + raw.len;
    char *o = dst;
    while (p < end) {
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        char e = p[1];
        p += 2;
        switch (e) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            uint32_t cp = (uint32_t)lm__hex4(p);
            p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo = (uint32_t)lm__hex4(p + 2);
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            lm__utf8(&o, cp);
            break;
        }
        default: *o++ = e; break; /* " \ / */
        }
    }
    *o = '\0';
    return (size_t)(o - dst);
}

static bool lm__js_number(lm__js_t *s, double *num)
{
    const char *start = s->p;
    if (s->p < s->end && *s->p == '-')
        s->p++;
    if (s->p >= s->end)
        return false;
    if (*s->p == '0') {
        s->p++;
    } else if (*s->p >= '1' && *s->p <= '9') {
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
            s->p++;
    } else {
        return false;
    }
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (s->p >= s->end || *s->p < '0' || *s->p > '9')
            return false;
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
            s->p++;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (s->p >= s->end || *s->p < '0' || *s->p > '9')
            return false;
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
            s->p++;
    }
    if (num) /* the text is NUL-terminated (lm__b64_arena) and the number was
              * validated: strtod reads exactly these bytes */
        *num = strtod(start, NULL);
    return true;
}

static bool lm__js_lit(lm__js_t *s, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return false;
    s->p += n;
    return true;
}

/* one value; when out != NULL its type (and number) and string body */
typedef struct {
    lm_jv_type_t type;
    double num;
    lm_str_t raw;
    bool escaped;
} lm__jv_raw_t;

static bool lm__js_value(lm__js_t *s, lm__jv_raw_t *out);

static bool lm__js_container(lm__js_t *s, bool object)
{
    if (++s->depth > LM__JSON_MAX_DEPTH)
        return false;
    s->p++; /* '{' or '[' */
    lm__js_ws(s);
    char close = object ? '}' : ']';
    if (s->p < s->end && *s->p == close) {
        s->p++;
        s->depth--;
        return true;
    }
    for (;;) {
        if (object) {
            lm_str_t k;
            bool esc;
            if (s->p >= s->end || *s->p != '"' || !lm__js_string(s, &k, &esc))
                return false;
            lm__js_ws(s);
            if (s->p >= s->end || *s->p != ':')
                return false;
            s->p++;
            lm__js_ws(s);
        }
        if (!lm__js_value(s, NULL))
            return false;
        lm__js_ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            lm__js_ws(s);
            continue;
        }
        if (s->p < s->end && *s->p == close) {
            s->p++;
            s->depth--;
            return true;
        }
        return false;
    }
}

static bool lm__js_value(lm__js_t *s, lm__jv_raw_t *out)
{
    lm__jv_raw_t tmp;
    if (!out)
        out = &tmp;
    if (s->p >= s->end)
        return false;
    switch (*s->p) {
    case '{': out->type = LM_JV_OBJECT; return lm__js_container(s, true);
    case '[': out->type = LM_JV_ARRAY; return lm__js_container(s, false);
    case '"': out->type = LM_JV_STRING; return lm__js_string(s, &out->raw, &out->escaped);
    case 't': out->type = LM_JV_TRUE; return lm__js_lit(s, "true");
    case 'f': out->type = LM_JV_FALSE; return lm__js_lit(s, "false");
    case 'n': out->type = LM_JV_NULL; return lm__js_lit(s, "null");
    default: out->type = LM_JV_NUMBER; return lm__js_number(s, out == &tmp ? NULL : &out->num);
    }
}

typedef struct {
    lm_str_t name;
    lm_jwt_value_t *dst;
} lm__want_t;

static void lm__set_value(const lm__jv_raw_t *v, lm_jwt_value_t *dst, lm_arena_t *a)
{
    dst->type = v->type;
    dst->num = v->num;
    dst->str = LM_STR_NULL;
    if (v->type == LM_JV_STRING) {
        char *buf = lm_arena_alloc(a, v->raw.len + 1);
        size_t n;
        if (v->escaped) {
            n = lm__js_unescape(v->raw, buf);
        } else {
            memcpy(buf, v->raw.ptr, v->raw.len);
            buf[v->raw.len] = '\0';
            n = v->raw.len;
        }
        dst->str = (lm_str_t){ buf, n };
    }
}

/*
 * Parses a whole JSON text; *type gets the top-level type. For an object,
 * the wanted members are filled (last occurrence wins).
 */
static bool lm__json_scan(lm_str_t text, lm__want_t *want, size_t nwant, lm_arena_t *a, lm_jv_type_t *type)
{
    lm__js_t s = { text.ptr, text.ptr + text.len, 0 };
    lm__js_ws(&s);
    if (s.p >= s.end)
        return false;
    if (*s.p != '{') {
        lm__jv_raw_t v;
        if (!lm__js_value(&s, &v))
            return false;
        *type = v.type;
    } else {
        *type = LM_JV_OBJECT;
        s.p++;
        s.depth = 1;
        lm__js_ws(&s);
        if (s.p < s.end && *s.p == '}') {
            s.p++;
        } else {
            for (;;) {
                lm_str_t k;
                bool esc;
                if (s.p >= s.end || *s.p != '"' || !lm__js_string(&s, &k, &esc))
                    return false;
                lm_str_t key = k;
                if (esc) {
                    char *kb = lm_arena_alloc(a, k.len + 1);
                    key = (lm_str_t){ kb, lm__js_unescape(k, kb) };
                }
                lm__js_ws(&s);
                if (s.p >= s.end || *s.p != ':')
                    return false;
                s.p++;
                lm__js_ws(&s);
                lm__jv_raw_t v = { 0 };
                if (!lm__js_value(&s, &v))
                    return false;
                for (size_t i = 0; i < nwant; i++)
                    if (lm_str_eq(key, want[i].name))
                        lm__set_value(&v, want[i].dst, a);
                lm__js_ws(&s);
                if (s.p < s.end && *s.p == ',') {
                    s.p++;
                    lm__js_ws(&s);
                    continue;
                }
                if (s.p < s.end && *s.p == '}') {
                    s.p++;
                    break;
                }
                return false;
            }
        }
    }
    lm__js_ws(&s);
    return s.p == s.end; /* nothing after the value */
}

/* ---- decoding --------------------------------------------------------- */

const char *lm_jwt_decode(lm_str_t token, lm_str_t key_claim_name, lm_arena_t *a, lm_jwt_t *out)
{
    memset(out, 0, sizeof(*out));
    out->alg = LM_JWT_ALG_UNKNOWN;
    /* three parts: the third one keeps any further dot (and then fails base64) */
    const char *d1 = memchr(token.ptr, '.', token.len);
    if (!d1)
        return "invalid JSON";
    const char *d2 = memchr(d1 + 1, '.', (size_t)(token.ptr + token.len - d1 - 1));
    if (!d2)
        return "invalid JSON";
    lm_str_t h64 = { token.ptr, (size_t)(d1 - token.ptr) };
    lm_str_t c64 = { d1 + 1, (size_t)(d2 - d1 - 1) };
    lm_str_t s64 = { d2 + 1, (size_t)(token.ptr + token.len - d2 - 1) };
    out->signing_input = (lm_str_t){ token.ptr, (size_t)(d2 - token.ptr) };

    lm_str_t hjson, cjson;
    if (!lm__b64_arena(h64, a, &hjson) || !lm__b64_arena(c64, a, &cjson))
        return "invalid JSON";
    lm_jwt_value_t alg = { 0 };
    lm__want_t hw[] = { { LM_STR("alg"), &alg }, { key_claim_name, &out->header_key } };
    lm__want_t cw[] = { { key_claim_name, &out->claims_key }, { LM_STR("exp"), &out->exp },
                        { LM_STR("nbf"), &out->nbf } };
    lm_jv_type_t htype, ctype;
    if (!lm__json_scan(hjson, hw, LM_ARRAY_SIZE(hw), a, &htype) ||
        !lm__json_scan(cjson, cw, LM_ARRAY_SIZE(cw), a, &ctype))
        return "invalid JSON";
    bool sig_ok = lm__b64_arena(s64, a, &out->signature);

    if (htype != LM_JV_OBJECT || alg.type != LM_JV_STRING)
        return "invalid alg";
    out->alg = lm_jwt_alg_from_name(alg.str);
    if (out->alg == LM_JWT_ALG_UNKNOWN)
        return "invalid alg";
    if (ctype == LM_JV_FALSE || ctype == LM_JV_NULL)
        return "invalid claims";
    out->claims_is_object = ctype == LM_JV_OBJECT;
    if (!sig_ok)
        return "invalid signature";
    return NULL;
}

const lm_jwt_value_t *lm_jwt_key_claim(const lm_jwt_t *t)
{
    if (t->claims_key.type != LM_JV_MISSING && t->claims_key.type != LM_JV_FALSE)
        return &t->claims_key;
    return &t->header_key;
}

/* ---- keys and signatures ---------------------------------------------- */

EVP_PKEY *lm_jwt_key_load(const void *data, size_t len)
{
    EVP_PKEY *pkey = NULL;
    OSSL_DECODER_CTX *dctx = OSSL_DECODER_CTX_new_for_pkey(&pkey, NULL, NULL, NULL, 0, NULL, NULL);
    if (!dctx)
        return NULL;
    const unsigned char *p = data;
    size_t left = len;
    if (!OSSL_DECODER_from_data(dctx, &p, &left)) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
        ERR_clear_error();
    }
    OSSL_DECODER_CTX_free(dctx);
    return pkey;
}

/* JOSE r||s (n bytes each) -> DER ECDSA-Sig-Value into der (room: 2n + 9) */
static size_t lm__der_int(const unsigned char *v, size_t n, unsigned char *o)
{
    while (n > 1 && v[0] == 0) {
        v++;
        n--;
    }
    size_t pad = (v[0] & 0x80) ? 1 : 0;
    size_t k = 0;
    o[k++] = 0x02;
    size_t l = n + pad;
    if (l >= 0x80)
        o[k++] = 0x81;
    o[k++] = (unsigned char)l;
    if (pad)
        o[k++] = 0;
    memcpy(o + k, v, n);
    return k + n;
}

static size_t lm__ecdsa_der(const unsigned char *sig, size_t half, unsigned char *der)
{
    unsigned char body[2 * 70];
    size_t b = lm__der_int(sig, half, body);
    b += lm__der_int(sig + half, half, body + b);
    size_t k = 0;
    der[k++] = 0x30;
    if (b >= 0x80)
        der[k++] = 0x81;
    der[k++] = (unsigned char)b;
    memcpy(der + k, body, b);
    return k + b;
}

static bool lm__verify_pkey(const lm_jwt_t *t, const lm_jwt_key_t *key, const unsigned char *sig,
                            size_t sig_len)
{
    int id = EVP_PKEY_get_base_id(key->pkey);
    const EVP_MD *md = lm__alg_md(key->alg);
    bool rsa = id == EVP_PKEY_RSA || id == EVP_PKEY_RSA_PSS;
    switch (key->alg) {
    case LM_JWT_RS256: case LM_JWT_RS384: case LM_JWT_RS512:
    case LM_JWT_PS256: case LM_JWT_PS384: case LM_JWT_PS512:
        if (!rsa)
            return false;
        break;
    case LM_JWT_ES256: case LM_JWT_ES384: case LM_JWT_ES512:
        if (id != EVP_PKEY_EC)
            return false;
        break;
    case LM_JWT_EDDSA:
        if (id != EVP_PKEY_ED25519 && id != EVP_PKEY_ED448)
            return false;
        md = NULL;
        break;
    default:
        return false;
    }
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    if (!mctx)
        return false;
    EVP_PKEY_CTX *pctx = NULL;
    bool ok = false;
    if (EVP_DigestVerifyInit(mctx, &pctx, md, NULL, key->pkey) == 1) {
        bool setup = true;
        if (key->alg >= LM_JWT_PS256 && key->alg <= LM_JWT_PS512)
            setup = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
                    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_AUTO) > 0 &&
                    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) > 0;
        ok = setup && EVP_DigestVerify(mctx, sig, sig_len, (const unsigned char *)t->signing_input.ptr,
                                       t->signing_input.len) == 1;
    }
    EVP_MD_CTX_free(mctx);
    if (!ok) /* leave no stale error for the worker's TLS code (SSL_get_error reads the queue) */
        ERR_clear_error();
    return ok;
}

bool lm_jwt_verify(const lm_jwt_t *t, const lm_jwt_key_t *key)
{
    if (t->alg != key->alg)
        return false;
    const unsigned char *sig = (const unsigned char *)t->signature.ptr;
    size_t sig_len = t->signature.len;
    if (lm_jwt_alg_is_hmac(key->alg)) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int mac_len = 0;
        static const unsigned char empty[1];
        if (!HMAC(lm__alg_md(key->alg), key->secret ? key->secret : empty, (int)key->secret_len,
                  (const unsigned char *)t->signing_input.ptr, t->signing_input.len, mac, &mac_len))
            return false;
        return sig_len == mac_len && CRYPTO_memcmp(sig, mac, mac_len) == 0;
    }
    if (!key->pkey)
        return false;
    if (key->alg >= LM_JWT_ES256 && key->alg <= LM_JWT_ES512) {
        size_t half = key->alg == LM_JWT_ES256 ? 32 : key->alg == LM_JWT_ES384 ? 48 : 66;
        if (sig_len != 2 * half) /* Kong: "Signature must be 64 bytes." (96, 132) */
            return false;
        unsigned char der[2 * 66 + 16];
        size_t der_len = lm__ecdsa_der(sig, half, der);
        return lm__verify_pkey(t, key, der, der_len);
    }
    return lm__verify_pkey(t, key, sig, sig_len);
}

/* ---- claims ----------------------------------------------------------- */

const char *lm_jwt_check_claim(const lm_jwt_value_t *v, lm_jwt_claim_t which, double now)
{
    if (v->type != LM_JV_NUMBER)
        return "must be a number";
    if (which == LM_JWT_CLAIM_EXP)
        return v->num <= now ? "token expired" : NULL;
    return v->num > now ? "token not valid yet" : NULL;
}

bool lm_jwt_check_max_exp(const lm_jwt_t *t, double max, double now)
{
    if (max <= 0)
        return true;
    if (t->exp.type != LM_JV_NUMBER)
        return false;
    return !(t->exp.num - now > max);
}

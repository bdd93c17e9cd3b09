/*
 * hmac-auth.c - the hmac-auth plugin (Kong 3.x): HTTP signatures in the
 * Authorization or Proxy-Authorization header,
 *   hmac username="u", algorithm="hmac-sha256", headers="date request-line", signature="<base64>"
 * over "name: value" lines of the listed headers joined by "\n", where
 * "request-line" stands for "METHOD /path?query HTTP/1.1" (path and query as sent,
 * the request's own HTTP version). Date or X-Date
 * must be within clock_skew seconds of now.
 * validate_request_body (Kong's validate_body, after the signature): the
 * Digest header must equal "SHA-256=" base64(sha256(body)) exactly; no
 * Digest is fine only for an empty body; a body over LM_BODY_BUFFER_MAX
 * fails (Kong: get_raw_body errors on a body spooled to a file). Failures
 * are 401 "HMAC signature does not match". As in Kong, Digest need not be
 * among the signed headers (enforce_headers can require it).
 */
#include "lm_plugins.h"
#include "lm_jwt.h" /* base64 */

#include <stdio.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

static const char *const lm__hmac_algs[] = { "hmac-sha1", "hmac-sha256", "hmac-sha384", "hmac-sha512", NULL };

static const lm_schema_field_t lm__hmac_schema[] = {
    { .name = "hide_credentials", .type = LM_SF_BOOLEAN, .def = "false" },
    { .name = "clock_skew", .type = LM_SF_NUMBER, .def = "300" },
    { .name = "anonymous", .type = LM_SF_STRING },
    { .name = "validate_request_body", .type = LM_SF_BOOLEAN, .def = "false" },
    { .name = "enforce_headers", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .def = "[]" },
    { .name = "algorithms", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .unique = true, .one_of = lm__hmac_algs,
      .def = "[\"hmac-sha1\",\"hmac-sha256\",\"hmac-sha384\",\"hmac-sha512\"]" },
    { .name = "realm", .type = LM_SF_STRING },
    { 0 }
};

typedef struct {
    bool hide_credentials, validate_body;
    double clock_skew;
    const char *anonymous;
    lm_str_t *enforce;
    size_t n_enforce;
    bool algs[4]; /* allowed, by index in lm__hmac_algs */
    const char *www;     /* "WWW-Authenticate: ...\r\n" */
    const char *msg_no_anon;
} lm__hmac_conf_t;

#define LM__NOT_VALID "HMAC signature cannot be verified"
#define LM__NOT_SAME "HMAC signature does not match"
#define LM__NO_DATE \
    "HMAC signature cannot be verified, a valid date or x-date header is required for HMAC Authentication"

static bool lm__bad_realm(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == '"' || *s == '\\')
            return true;
    return false;
}

static int lm__hmac_configure(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out)
{
    lm__hmac_conf_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    int rc = LM_OK;
    if (cc->entity && cc->entity->consumer) { /* Kong's typedefs.no_consumer */
        size_t n = strlen(cc->sc.path), suf = sizeof(".config") - 1;
        if (n >= suf && strcmp(cc->sc.path + n - suf, ".config") == 0)
            n -= suf;
        char path[600];
        snprintf(path, sizeof(path), "%.*s.consumer", (int)n, cc->sc.path);
        lm_config_errors_add(cc->sc.errs, path, cc->sc.entity_type, cc->sc.entity_name, "consumer",
                             "value must be null");
        rc = LM_ERROR;
    }
    c->hide_credentials = lm_schema_bool(config, "hide_credentials");
    c->clock_skew = lm_schema_num(config, "clock_skew");
    if (!(c->clock_skew > 0)) {
        lm_plugin_error(cc, "clock_skew", "value must be greater than 0");
        rc = LM_ERROR;
    }
    c->validate_body = lm_schema_bool(config, "validate_request_body");
    if (c->validate_body)
        lm_plugin_need_body(cc);
    const char *anon = lm_schema_str(config, "anonymous");
    if (anon) {
        c->anonymous = lm_arena_strdup(cc->arena, anon);
        c->msg_no_anon =
            lm_arena_sprintf(cc->arena, "anonymous consumer %s is configured but doesn't exist", anon);
    }
    const cJSON *enf = lm_schema_get(config, "enforce_headers"), *e;
    c->n_enforce = (size_t)cJSON_GetArraySize(enf);
    c->enforce = lm_arena_calloc(cc->arena, (c->n_enforce + 1) * sizeof(*c->enforce));
    size_t i = 0;
    cJSON_ArrayForEach(e, enf)
        c->enforce[i++] = lm_str(lm_arena_strdup(cc->arena, e->valuestring));
    cJSON_ArrayForEach(e, lm_schema_get(config, "algorithms"))
        for (size_t k = 0; lm__hmac_algs[k]; k++)
            if (strcmp(e->valuestring, lm__hmac_algs[k]) == 0)
                c->algs[k] = true;
    const char *realm = lm_schema_str(config, "realm");
    if (realm && lm__bad_realm(realm)) {
        lm_plugin_error(cc, "realm", "invalid value: must not contain control characters, '\"' or '\\'");
        rc = LM_ERROR;
    }
    c->www = realm ? lm_arena_sprintf(cc->arena, "WWW-Authenticate: hmac realm=\"%s\"\r\n", realm)
                   : "WWW-Authenticate: hmac\r\n";
    *out = c;
    return rc;
}

/* ---- the Authorization value ------------------------------------------- */

typedef struct {
    lm_str_t username, algorithm, headers, signature;
} lm__hmac_params_t;

/* `"` `,` \s* name `="` at p: the position after it, or 0 */
static size_t lm__sep(lm_str_t v, size_t p, const char *name)
{
    size_t nl = strlen(name);
    if (p + 2 > v.len || v.ptr[p] != '"' || v.ptr[p + 1] != ',')
        return 0;
    p += 2;
    while (p < v.len && (v.ptr[p] == ' ' || v.ptr[p] == '\t' || v.ptr[p] == '\r' || v.ptr[p] == '\n' ||
                         v.ptr[p] == '\f' || v.ptr[p] == '\v'))
        p++;
    if (p + nl + 2 > v.len || memcmp(v.ptr + p, name, nl) != 0 || v.ptr[p + nl] != '=' || v.ptr[p + nl + 1] != '"')
        return 0;
    return p + nl + 2;
}

/*
 * Kong's pattern, unanchored and with greedy groups:
 *   \s*[Hh]mac\s*username="(.+)",\s*algorithm="(.+)",\s*headers="(.+)",\s*signature="(.+)"
 * A group's greedy end does not depend on where it starts, so each is the
 * last separator whose remainder still matches, found from the right.
 */
static bool lm__parse_hmac(lm_str_t v, lm__hmac_params_t *out)
{
    if (!v.ptr)
        return false;
    const char *nl = memchr(v.ptr, '\n', v.len); /* '.' stops at a newline (never in a parsed header) */
    if (nl)
        v.len = (size_t)(nl - v.ptr);
    size_t last_quote = 0;
    bool found = false;
    for (size_t i = v.len; i-- > 0;)
        if (v.ptr[i] == '"') {
            last_quote = i;
            found = true;
            break;
        }
    if (!found)
        return false;
    /* group 4: from after signature=" to last_quote, no newline inside */
    static const char *const names[3] = { "algorithm", "headers", "signature" };
    size_t M[4];
    M[3] = last_quote;
    for (int g = 2; g >= 0; g--) {
        size_t best = 0;
        bool ok = false;
        for (size_t e = M[g + 1]; e-- > 0;) {
            size_t nxt = lm__sep(v, e, names[g]);
            if (!nxt || nxt >= M[g + 1])
                continue;
            best = e;
            ok = true;
            break;
        }
        if (!ok)
            return false;
        M[g] = best;
    }
    /* the leftmost [Hh]mac\s*username=" whose group 1 is non-empty and newline-free */
    for (size_t i = 0; i + 4 <= v.len; i++) {
        if ((v.ptr[i] != 'h' && v.ptr[i] != 'H') || memcmp(v.ptr + i + 1, "mac", 3) != 0)
            continue;
        size_t p = i + 4;
        while (p < v.len && (v.ptr[p] == ' ' || v.ptr[p] == '\t' || v.ptr[p] == '\r' || v.ptr[p] == '\n' ||
                             v.ptr[p] == '\f' || v.ptr[p] == '\v'))
            p++;
        if (p + 10 > v.len || memcmp(v.ptr + p, "username=\"", 10) != 0)
            continue;
        p += 10;
        if (p >= M[0])
            continue;
        size_t a = lm__sep(v, M[0], names[0]), h = lm__sep(v, M[1], names[1]), s = lm__sep(v, M[2], names[2]);
        out->username = (lm_str_t){ v.ptr + p, M[0] - p };
        out->algorithm = (lm_str_t){ v.ptr + a, M[1] - a };
        out->headers = (lm_str_t){ v.ptr + h, M[2] - h };
        out->signature = (lm_str_t){ v.ptr + s, M[3] - s };
        return true;
    }
    return false;
}

/* ---- dates (ngx.parse_http_time: RFC 1123, RFC 850, asctime) ------------ */

static int lm__month(const char *p)
{
    static const char *const m = "JanFebMarAprMayJunJulAugSepOctNovDec";
    for (int i = 0; i < 12; i++)
        if (memcmp(p, m + 3 * i, 3) == 0)
            return i;
    return -1;
}

static bool lm__digits(const char *p, const char *end, int n, int *v)
{
    if (end - p < n)
        return false;
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        *v = *v * 10 + (p[i] - '0');
    }
    return true;
}

static bool lm__hms(const char **pp, const char *end, int *h, int *mi, int *s)
{
    const char *p = *pp;
    if (!lm__digits(p, end, 2, h) || end - p < 8 || p[2] != ':' || !lm__digits(p + 3, end, 2, mi) || p[5] != ':' ||
        !lm__digits(p + 6, end, 2, s))
        return false;
    *pp = p + 8;
    return true;
}

static bool lm__parse_http_time(lm_str_t v, time_t *out)
{
    const char *p = v.ptr, *end = v.ptr + v.len;
    int day, mon, year, h, mi, s;
    while (p < end && *p != ',' && *p != ' ')
        p++; /* the weekday */
    if (p >= end)
        return false;
    if (*p == ',') { /* "Sun, 06 Nov 1994 08:49:37 GMT" or "Sunday, 06-Nov-94 08:49:37 GMT" */
        p++;
        while (p < end && *p == ' ')
            p++;
        if (!lm__digits(p, end, 2, &day) || end - p < 7)
            return false;
        char sep = p[2];
        if (sep != ' ' && sep != '-')
            return false;
        if ((mon = lm__month(p + 3)) < 0 || p[6] != sep)
            return false;
        p += 7;
        if (sep == ' ') {
            if (!lm__digits(p, end, 4, &year))
                return false;
            p += 4;
        } else {
            if (!lm__digits(p, end, 2, &year))
                return false;
            year += year < 70 ? 2000 : 1900;
            p += 2;
        }
        if (p >= end || *p++ != ' ' || !lm__hms(&p, end, &h, &mi, &s))
            return false;
    } else { /* asctime: "Sun Nov  6 08:49:37 1994" */
        p++;
        if (end - p < 4 || (mon = lm__month(p)) < 0 || p[3] != ' ')
            return false;
        p += 4;
        if (p < end && *p == ' ')
            p++;
        if (lm__digits(p, end, 2, &day))
            p += 2;
        else if (lm__digits(p, end, 1, &day))
            p += 1;
        else
            return false;
        if (p >= end || *p++ != ' ' || !lm__hms(&p, end, &h, &mi, &s))
            return false;
        if (p >= end || *p++ != ' ' || !lm__digits(p, end, 4, &year))
            return false;
        p += 4;
    }
    if (day < 1 || day > 31 || h > 23 || mi > 59 || s > 59 || year < 1970)
        return false;
    static const int mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    if (day > mdays[mon])
        return false;
    struct tm tm = { .tm_year = year - 1900, .tm_mon = mon, .tm_mday = day, .tm_hour = h, .tm_min = mi, .tm_sec = s };
    *out = timegm(&tm);
    return *out != (time_t)-1;
}

static bool lm__clock_ok(lm_ctx_t *ctx, const char *name, double skew)
{
    lm_str_t v;
    time_t t;
    if (!lm_ctx_header(ctx, lm_str(name), &v) || !lm__parse_http_time(v, &t))
        return false;
    double d = (double)time(NULL) - (double)t;
    return !((d < 0 ? -d : d) > skew);
}

/* ---- signature ---------------------------------------------------------- */

static const EVP_MD *lm__alg_md(int idx)
{
    switch (idx) {
    case 0: return EVP_sha1();
    case 1: return EVP_sha256();
    case 2: return EVP_sha384();
    default: return EVP_sha512();
    }
}

/* One line of the signing string for a listed header name, into buf when
 * not NULL; returns its length. */
static size_t lm__line(lm_ctx_t *ctx, lm_str_t name, char *buf)
{
    lm_str_t val, method, path, q;
    if (name.len && lm_ctx_header(ctx, name, &val)) {
        if (buf) {
            memcpy(buf, name.ptr, name.len);
            memcpy(buf + name.len, ": ", 2);
            memcpy(buf + name.len + 2, val.ptr, val.len);
        }
        return name.len + 2 + val.len;
    }
    if (!lm_str_eq(name, LM_STR("request-line"))) {
        if (buf) {
            memcpy(buf, name.ptr, name.len);
            buf[name.len] = ':';
        }
        return name.len + 1;
    }
    /* Kong: "%s %s HTTP/%.01f": the method, the path with its query as the
     * client sent them, and the request's HTTP version */
    method = lm_ctx_method(ctx);
    path = lm_ctx_raw_path(ctx);
    q = lm_ctx_raw_query(ctx);
    const char *ver = lm_ctx_http_version(ctx);
    size_t n = method.len + 1 + path.len + (q.ptr ? 1 + q.len : 0) + sizeof(" HTTP/") - 1 + strlen(ver);
    if (buf) {
        char *o = buf;
        memcpy(o, method.ptr, method.len);
        o += method.len;
        *o++ = ' ';
        memcpy(o, path.ptr, path.len);
        o += path.len;
        if (q.ptr) {
            *o++ = '?';
            memcpy(o, q.ptr, q.len);
            o += q.len;
        }
        memcpy(o, " HTTP/", sizeof(" HTTP/") - 1);
        o += sizeof(" HTTP/") - 1;
        memcpy(o, ver, strlen(ver));
    }
    return n;
}

/* the signing string: one line per listed header (the list split on single spaces) */
static lm_str_t lm__signing_string(lm_ctx_t *ctx, lm_str_t list)
{
    size_t total = 0;
    for (int pass = 0; pass < 2; pass++) {
        char *buf = pass ? lm_ctx_alloc(ctx, total + 1) : NULL;
        size_t o = 0;
        const char *p = list.ptr, *end = list.ptr + list.len;
        for (;;) {
            const char *sp = memchr(p, ' ', (size_t)(end - p));
            o += lm__line(ctx, (lm_str_t){ p, (size_t)((sp ? sp : end) - p) }, buf ? buf + o : NULL);
            if (!sp)
                break;
            if (buf)
                buf[o] = '\n';
            o++;
            p = sp + 1;
        }
        if (pass)
            return (lm_str_t){ buf, o };
        total = o;
    }
    return LM_STR_NULL;
}

static bool lm__signature_ok(lm_ctx_t *ctx, const lm__hmac_params_t *hp, int alg, const char *secret)
{
    lm_str_t ss = lm__signing_string(ctx, hp->headers);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (!HMAC(lm__alg_md(alg), secret, (int)strlen(secret), (const unsigned char *)ss.ptr, ss.len, mac, &mac_len))
        return false;
    unsigned char *sig = lm_ctx_alloc(ctx, lm_jwt_b64_max(hp->signature.len) + 1);
    size_t sig_len;
    if (!lm_jwt_b64_decode(hp->signature, false, sig, &sig_len))
        return false;
    return sig_len == mac_len && CRYPTO_memcmp(sig, mac, mac_len) == 0;
}

/* Kong's validate_body: Digest is "SHA-256=" base64(sha256(body)), exactly. */
static bool lm__body_ok(lm_ctx_t *ctx)
{
    lm_str_t body = lm_ctx_request_body(ctx), digest;
    if (!body.ptr)
        return false; /* over the cap: not readable */
    if (!lm_ctx_header(ctx, LM_STR("Digest"), &digest))
        return body.len == 0;
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)body.ptr, body.len, md);
    char want[8 + 4 * ((SHA256_DIGEST_LENGTH + 2) / 3) + 1];
    memcpy(want, "SHA-256=", 8);
    size_t n = 8 + lm_jwt_b64_encode(md, sizeof(md), want + 8);
    return digest.len == n && memcmp(digest.ptr, want, n) == 0;
}

/* ---- access ------------------------------------------------------------- */

static const char *lm__authenticate(lm_ctx_t *ctx, const lm__hmac_conf_t *c)
{
    lm_str_t authz = LM_STR_NULL, pauthz = LM_STR_NULL;
    bool has_a = lm_ctx_header(ctx, LM_STR("Authorization"), &authz);
    bool has_p = lm_ctx_header(ctx, LM_STR("Proxy-Authorization"), &pauthz);
    if (!has_a && !has_p)
        return "Unauthorized";
    if (!lm__clock_ok(ctx, "X-Date", c->clock_skew) && !lm__clock_ok(ctx, "Date", c->clock_skew))
        return LM__NO_DATE;
    lm__hmac_params_t hp = { 0 };
    if (has_p && lm__parse_hmac(pauthz, &hp) && hp.username.len) {
        if (c->hide_credentials)
            lm_ctx_remove_header(ctx, LM_STR("Proxy-Authorization"));
    } else {
        memset(&hp, 0, sizeof(hp));
        if (has_a)
            lm__parse_hmac(authz, &hp);
        if (c->hide_credentials)
            lm_ctx_remove_header(ctx, LM_STR("Authorization"));
    }
    if (!hp.username.ptr || !hp.signature.ptr)
        return LM__NOT_VALID;
    for (size_t i = 0; i < c->n_enforce; i++) { /* every enforced header was signed */
        bool seen = false;
        const char *p = hp.headers.ptr, *end = hp.headers.ptr + hp.headers.len;
        while (!seen) {
            const char *sp = memchr(p, ' ', (size_t)(end - p));
            seen = lm_str_eq((lm_str_t){ p, (size_t)((sp ? sp : end) - p) }, c->enforce[i]);
            if (!sp)
                break;
            p = sp + 1;
        }
        if (!seen)
            return LM__NOT_VALID;
    }
    int alg = -1;
    for (int k = 0; lm__hmac_algs[k]; k++)
        if (c->algs[k] && lm_str_eq(hp.algorithm, lm_str(lm__hmac_algs[k])))
            alg = k;
    if (alg < 0)
        return LM__NOT_VALID;
    const lm_credential_t *cr = lm_ctx_find_credential(ctx, "hmacauth_credentials", hp.username);
    if (!cr)
        return LM__NOT_VALID;
    const char *secret = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cr->fields, "secret"));
    if (!secret || !lm__signature_ok(ctx, &hp, alg, secret))
        return LM__NOT_SAME;
    if (c->validate_body && !lm__body_ok(ctx))
        return LM__NOT_SAME;
    const char *user = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cr->fields, "username"));
    lm_ctx_set_consumer(ctx, cr->consumer, user, false);
    return NULL;
}

static int lm__hmac_access(lm_ctx_t *ctx, const void *conf)
{
    const lm__hmac_conf_t *c = conf;
    if (c->anonymous && lm_ctx_credential_id(ctx))
        return LM_OK; /* logical OR: another auth plugin already succeeded */
    const char *err = lm__authenticate(ctx, c);
    if (!err)
        return LM_OK;
    if (c->anonymous) {
        const lm_consumer_t *anon = lm_ctx_find_consumer(ctx, c->anonymous);
        if (!anon)
            return lm_ctx_exit(ctx, 500, c->msg_no_anon, NULL);
        lm_ctx_set_consumer(ctx, anon, NULL, true);
        return LM_OK;
    }
    return lm_ctx_exit(ctx, 401, err, c->www);
}

const lm_plugin_ops_t lm_plugin_hmac_auth = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "hmac-auth",
    .priority = 1030,
    .schema = lm__hmac_schema,
    .configure = lm__hmac_configure,
    .access = lm__hmac_access,
};

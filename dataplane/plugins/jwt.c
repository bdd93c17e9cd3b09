/*
 * jwt.c - the jwt plugin (Kong 3.x): verifies a JWS-signed token from the
 * query string, a cookie or a header against the jwt_secrets of consumers.
 *
 * configure compiles each jwt_secret once (secret bytes, parsed public key)
 * into an array indexed by the credential's position; the request path only
 * decodes the token (lm_jwt.h) and verifies it.
 */
#include "lm_plugins.h"
#include "lm_jwt.h"

#include <stdio.h>
#include <time.h>

static const char *const lm__claims[] = { "exp", "nbf", NULL };

static const lm_schema_field_t lm__jwt_schema[] = {
    { .name = "uri_param_names", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .unique = true, .def = "[\"jwt\"]" },
    { .name = "cookie_names", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .unique = true, .def = "[]" },
    { .name = "key_claim_name", .type = LM_SF_STRING, .def = "\"iss\"" },
    { .name = "secret_is_base64", .type = LM_SF_BOOLEAN, .def = "false" },
    { .name = "claims_to_verify", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .unique = true, .one_of = lm__claims },
    { .name = "anonymous", .type = LM_SF_STRING },
    { .name = "run_on_preflight", .type = LM_SF_BOOLEAN, .def = "true" },
    { .name = "maximum_expiration", .type = LM_SF_NUMBER, .def = "0", .has_min = true, .min = 0,
      .has_max = true, .max = 31536000 },
    { .name = "header_names", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .unique = true,
      .def = "[\"authorization\"]" },
    { .name = "realm", .type = LM_SF_STRING },
    { 0 }
};

typedef struct {
    lm_jwt_key_t key;
    bool usable; /* false: Kong's "Invalid key/secret" */
} lm__jwt_cred_t;

typedef struct {
    lm_str_t *uri_params, *cookies, *headers;
    size_t n_uri, n_cookies, n_headers;
    lm_str_t key_claim;
    lm_jwt_claim_t claims[2];
    size_t n_claims;
    const char *anonymous;
    bool run_on_preflight;
    double max_exp;
    const char *www_base, *www_err;                      /* "WWW-Authenticate: ...\r\n" */
    const char *msg_no_key, *msg_bad_key, *msg_no_cred, *msg_no_anon;
    lm__jwt_cred_t **creds; /* by lm_credential_t.index; NULL for other kinds */
    size_t num_creds;
} lm__jwt_conf_t;

static lm_str_t *lm__str_array(lm_arena_t *a, const cJSON *arr, size_t *n, bool header)
{
    *n = (size_t)cJSON_GetArraySize(arr);
    lm_str_t *out = lm_arena_calloc(a, (*n + 1) * sizeof(*out));
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        char *s = lm_arena_strdup(a, e->valuestring);
        if (header) /* header lookups as ngx.req.get_headers(): '_' matches '-' */
            for (char *p = s; *p; p++)
                if (*p == '_')
                    *p = '-';
        out[i++] = lm_str(s);
    }
    return out;
}

static void lm__pkey_free(void *p)
{
    EVP_PKEY_free(p);
}

static bool lm__has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == '"' || *s == '\\')
            return true;
    return false;
}

/* Kong's `consumer = typedefs.no_consumer`: reported on the entity's field */
static void lm__no_consumer(lm_plugin_cfg_ctx_t *cc)
{
    size_t n = strlen(cc->sc.path);
    size_t suf = sizeof(".config") - 1;
    char path[600];
    if (n >= suf && strcmp(cc->sc.path + n - suf, ".config") == 0)
        n -= suf;
    snprintf(path, sizeof(path), "%.*s.consumer", (int)n, cc->sc.path);
    lm_config_errors_add(cc->sc.errs, path, cc->sc.entity_type, cc->sc.entity_name, "consumer",
                         "value must be null");
}

/* the secret or key of one jwt_secret, as this plugin instance uses it */
static int lm__compile_cred(lm_plugin_cfg_ctx_t *cc, const lm_credential_t *cr, bool b64, lm__jwt_cred_t *out)
{
    const char *alg_name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cr->fields, "algorithm"));
    lm_jwt_alg_t alg = lm_jwt_alg_from_name(lm_str(alg_name ? alg_name : "HS256"));
    const char *key = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cr->fields, "key"));
    out->key.alg = alg;
    if (alg == LM_JWT_ALG_UNKNOWN)
        return LM_OK; /* the config build reports it */
    const char *value = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(cr->fields, lm_jwt_alg_is_hmac(alg) ? "secret" : "rsa_public_key"));
    if (!value)
        return LM_OK; /* "Invalid key/secret" */
    const unsigned char *bytes = (const unsigned char *)value;
    size_t len = strlen(value);
    if (b64) {
        unsigned char *dec = lm_arena_alloc(cc->arena, lm_jwt_b64_max(len) + 1);
        if (!lm_jwt_b64_decode(lm_str(value), true, dec, &len))
            return LM_OK; /* Kong's base64_decode gives nil: "Invalid key/secret" */
        bytes = dec;
    }
    if (lm_jwt_alg_is_hmac(alg)) {
        out->key.secret = bytes;
        out->key.secret_len = len;
        out->usable = true;
        return LM_OK;
    }
    EVP_PKEY *pkey = lm_jwt_key_load(bytes, len);
    if (!pkey) {
        if (b64)
            return LM_OK;
        lm_plugin_error(cc, NULL, "jwt_secret '%s': rsa_public_key: invalid key", key ? key : cr->id ? cr->id : "?");
        return LM_ERROR;
    }
    lm_arena_on_free(cc->arena, lm__pkey_free, pkey);
    out->key.pkey = pkey;
    out->usable = true;
    return LM_OK;
}

static int lm__jwt_configure(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out)
{
    lm__jwt_conf_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    int rc = LM_OK;
    if (cc->entity && cc->entity->consumer) {
        lm__no_consumer(cc);
        rc = LM_ERROR;
    }
    c->uri_params = lm__str_array(cc->arena, lm_schema_get(config, "uri_param_names"), &c->n_uri, false);
    c->cookies = lm__str_array(cc->arena, lm_schema_get(config, "cookie_names"), &c->n_cookies, false);
    c->headers = lm__str_array(cc->arena, lm_schema_get(config, "header_names"), &c->n_headers, true);
    const char *kcn = lm_schema_str(config, "key_claim_name");
    c->key_claim = lm_str(lm_arena_strdup(cc->arena, kcn ? kcn : "iss"));
    bool has_exp = false;
    const cJSON *ctv = lm_schema_get(config, "claims_to_verify"), *e;
    cJSON_ArrayForEach(e, ctv) {
        if (c->n_claims >= 2)
            break;
        bool exp = strcmp(e->valuestring, "exp") == 0;
        has_exp |= exp;
        c->claims[c->n_claims++] = exp ? LM_JWT_CLAIM_EXP : LM_JWT_CLAIM_NBF;
    }
    c->max_exp = lm_schema_num(config, "maximum_expiration");
    if (c->max_exp > 0 && !has_exp) { /* Kong's conditional entity check */
        lm_plugin_error(cc, "claims_to_verify", "expected to contain: exp");
        lm_plugin_error(cc, NULL, "failed conditional validation given value of field 'config.maximum_expiration'");
        rc = LM_ERROR;
    }
    const char *anon = lm_schema_str(config, "anonymous");
    c->anonymous = anon ? lm_arena_strdup(cc->arena, anon) : NULL;
    c->run_on_preflight = lm_schema_bool(config, "run_on_preflight");
    const char *realm = lm_schema_str(config, "realm");
    if (realm && lm__has_ctl(realm)) {
        lm_plugin_error(cc, "realm", "invalid value: must not contain control characters, '\"' or '\\'");
        rc = LM_ERROR;
    }
    if (realm) {
        c->www_base = lm_arena_sprintf(cc->arena, "WWW-Authenticate: Bearer realm=\"%s\"\r\n", realm);
        c->www_err = lm_arena_sprintf(cc->arena, "WWW-Authenticate: Bearer realm=\"%s\", error=\"invalid_token\"\r\n",
                                      realm);
    } else {
        c->www_base = "WWW-Authenticate: Bearer\r\n";
        c->www_err = "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n";
    }
    c->msg_no_key = lm_arena_sprintf(cc->arena, "No mandatory '%s' in claims", c->key_claim.ptr);
    c->msg_bad_key = lm_arena_sprintf(cc->arena, "Invalid '%s' in claims", c->key_claim.ptr);
    c->msg_no_cred = lm_arena_sprintf(cc->arena, "No credentials found for given '%s'", c->key_claim.ptr);
    if (c->anonymous)
        c->msg_no_anon = lm_arena_sprintf(cc->arena, "anonymous consumer %s is configured but doesn't exist",
                                          c->anonymous);

    const lm_config_t *cfg = cc->cfg;
    c->num_creds = cfg ? cfg->num_credentials : 0;
    c->creds = lm_arena_calloc(cc->arena, (c->num_creds + 1) * sizeof(*c->creds));
    bool b64 = lm_schema_bool(config, "secret_is_base64");
    for (size_t i = 0; i < c->num_creds; i++) {
        const lm_credential_t *cr = cfg->credentials[i];
        if (strcmp(cr->kind, "jwt_secrets") != 0 || cr->index >= c->num_creds)
            continue;
        lm__jwt_cred_t *jc = lm_arena_calloc(cc->arena, sizeof(*jc));
        if (lm__compile_cred(cc, cr, b64, jc) != LM_OK)
            rc = LM_ERROR;
        c->creds[cr->index] = jc;
    }
    *out = c;
    return rc;
}

/* ---- token retrieval -------------------------------------------------- */

typedef struct {
    bool have, multiple, boolean;
    lm_str_t tok;
} lm__tokset_t;

static void lm__tok_add(lm__tokset_t *ts, lm_str_t tok, bool boolean)
{
    if (!boolean && tok.len == 0)
        return;
    if (!ts->have) {
        ts->have = true;
        ts->boolean = boolean;
        ts->tok = tok;
    } else if (ts->boolean != boolean || (!boolean && !lm_str_eq(ts->tok, tok))) {
        ts->multiple = true;
    }
}

/* ngx.unescape_uri with '+' as a space (query arguments) */
static lm_str_t lm__unescape(lm_ctx_t *ctx, lm_str_t s)
{
    if (!memchr(s.ptr, '%', s.len) && !memchr(s.ptr, '+', s.len))
        return s;
    char *o = lm_ctx_alloc(ctx, s.len + 1);
    return (lm_str_t){ o, lm_url_decode(o, s.ptr, s.len, true) };
}

static void lm__tokens_from_query(lm_ctx_t *ctx, const lm__jwt_conf_t *c, lm__tokset_t *ts)
{
    lm_str_t q = lm_ctx_raw_query(ctx);
    if (!q.ptr || c->n_uri == 0)
        return;
    const char *p = q.ptr, *end = q.ptr + q.len;
    while (p <= end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        lm_str_t name = { p, (size_t)((eq ? eq : stop) - p) };
        if (name.len > 0) {
            name = lm__unescape(ctx, name);
            for (size_t i = 0; i < c->n_uri; i++) {
                if (!lm_str_eq(name, c->uri_params[i]))
                    continue;
                if (eq)
                    lm__tok_add(ts, lm__unescape(ctx, (lm_str_t){ eq + 1, (size_t)(stop - eq - 1) }), false);
                else
                    lm__tok_add(ts, LM_STR_NULL, true); /* a bare "?jwt" is Lua's true */
                break;
            }
        }
        if (!amp)
            break;
        p = amp + 1;
    }
}

/* nginx's $cookie_NAME: the first NAME=value in any Cookie header
 * (segments split on ';' and ','; names case-insensitive) */
static bool lm__cookie(lm_ctx_t *ctx, lm_str_t want, lm_str_t *value)
{
    lm_str_t name, v;
    for (size_t i = 0; lm_ctx_header_at(ctx, i, &name, &v); i++) {
        if (!lm_str_ieq_cstr(name, "cookie"))
            continue;
        const char *p = v.ptr, *end = v.ptr + v.len;
        while (p < end) {
            while (p < end && *p == ' ')
                p++;
            if ((size_t)(end - p) >= want.len && strncasecmp(p, want.ptr, want.len) == 0) {
                const char *q = p + want.len;
                while (q < end && *q == ' ')
                    q++;
                if (q < end && *q == '=') {
                    q++;
                    while (q < end && *q == ' ')
                        q++;
                    const char *s = q;
                    while (q < end && *q != ';' && *q != ',')
                        q++;
                    *value = (lm_str_t){ s, (size_t)(q - s) };
                    return true;
                }
            }
            while (p < end && *p != ';' && *p != ',')
                p++;
            if (p < end)
                p++;
        }
    }
    return false;
}

static bool lm__is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

/* Kong's `\s*[Bb]earer\s+(.+)`, unanchored: the leftmost match's group */
static bool lm__bearer(lm_str_t v, lm_str_t *tok)
{
    for (size_t i = 0; i + 6 <= v.len; i++) {
        if ((v.ptr[i] != 'B' && v.ptr[i] != 'b') || memcmp(v.ptr + i + 1, "earer", 5) != 0)
            continue;
        size_t j = i + 6, k = j;
        while (k < v.len && lm__is_space(v.ptr[k]))
            k++;
        if (k == j)
            continue; /* needs a space */
        if (k == v.len) {
            if (k - j < 2)
                continue;
            k--; /* \s+ gives one back to (.+) */
        }
        size_t e = k;
        while (e < v.len && v.ptr[e] != '\n') /* '.' stops at a newline */
            e++;
        if (e == k)
            continue;
        *tok = (lm_str_t){ v.ptr + k, e - k };
        return true;
    }
    return false;
}

static void lm__tokens(lm_ctx_t *ctx, const lm__jwt_conf_t *c, lm__tokset_t *ts)
{
    memset(ts, 0, sizeof(*ts));
    lm__tokens_from_query(ctx, c, ts);
    for (size_t i = 0; i < c->n_cookies; i++) {
        lm_str_t v;
        if (lm__cookie(ctx, c->cookies[i], &v))
            lm__tok_add(ts, v, false);
    }
    for (size_t i = 0; i < c->n_headers; i++) {
        lm_str_t v, tok;
        if (lm_ctx_header(ctx, c->headers[i], &v) && lm__bearer(v, &tok))
            lm__tok_add(ts, tok, false);
    }
}

/* ---- access ----------------------------------------------------------- */

typedef struct {
    const char *message;   /* {"message": ...} */
    const char *body;      /* or this JSON body (claim errors) */
    bool base_challenge;   /* WWW-Authenticate without error= */
} lm__jwt_fail_t;

static bool lm__authenticate(lm_ctx_t *ctx, const lm__jwt_conf_t *c, lm__jwt_fail_t *f)
{
    lm__tokset_t ts;
    lm__tokens(ctx, c, &ts);
    if (!ts.have) {
        f->message = "Unauthorized";
        f->base_challenge = true;
        return false;
    }
    if (ts.multiple) {
        f->message = "Multiple tokens provided";
        return false;
    }
    if (ts.boolean) {
        f->message = "Unrecognizable token";
        return false;
    }
    lm_jwt_t t;
    const char *why = lm_jwt_decode(ts.tok, c->key_claim, lm_ctx_arena(ctx), &t);
    if (why) {
        f->message = lm_arena_sprintf(lm_ctx_arena(ctx), "Bad token; %s", why);
        return false;
    }
    const lm_jwt_value_t *kv = lm_jwt_key_claim(&t);
    if (kv->type == LM_JV_MISSING || kv->type == LM_JV_FALSE) {
        f->message = c->msg_no_key;
        return false;
    }
    if (kv->type == LM_JV_STRING && kv->str.len == 0) {
        f->message = c->msg_bad_key;
        return false;
    }
    const lm_credential_t *cr =
        kv->type == LM_JV_STRING ? lm_ctx_find_credential(ctx, "jwt_secrets", kv->str) : NULL;
    const lm__jwt_cred_t *jc = cr && cr->index < c->num_creds ? c->creds[cr->index] : NULL;
    if (!cr || !jc) {
        f->message = c->msg_no_cred;
        return false;
    }
    if (t.alg != jc->key.alg) {
        f->message = "Invalid algorithm";
        return false;
    }
    if (!jc->usable) {
        f->message = "Invalid key/secret";
        return false;
    }
    if (!lm_jwt_verify(&t, &jc->key)) {
        f->message = "Invalid signature";
        return false;
    }
    double now = (double)time(NULL);
    const char *errs[2] = { NULL, NULL };
    bool bad = false;
    for (size_t i = 0; i < c->n_claims; i++) {
        errs[i] = lm_jwt_check_claim(c->claims[i] == LM_JWT_CLAIM_EXP ? &t.exp : &t.nbf, c->claims[i], now);
        bad |= errs[i] != NULL;
    }
    if (bad) {
        char *body = lm_ctx_alloc(ctx, 128);
        size_t n = 0;
        body[n++] = '{';
        for (size_t i = 0; i < c->n_claims; i++)
            if (errs[i])
                n += (size_t)snprintf(body + n, 128 - n, "%s\"%s\":\"%s\"", n > 1 ? "," : "",
                                      c->claims[i] == LM_JWT_CLAIM_EXP ? "exp" : "nbf", errs[i]);
        snprintf(body + n, 128 - n, "}");
        f->body = body;
        return false;
    }
    if (c->max_exp > 0 && !lm_jwt_check_max_exp(&t, c->max_exp, now)) {
        f->body = "{\"exp\":\"exceeds maximum allowed expiration\"}";
        return false;
    }
    const char *key = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cr->fields, "key"));
    lm_ctx_set_consumer(ctx, cr->consumer, key, false);
    return true;
}

static int lm__jwt_access(lm_ctx_t *ctx, const void *conf)
{
    const lm__jwt_conf_t *c = conf;
    if (!c->run_on_preflight && lm_str_eq(lm_ctx_method(ctx), LM_STR("OPTIONS")))
        return LM_OK;
    if (c->anonymous && lm_ctx_credential_id(ctx))
        return LM_OK; /* logical OR with another auth plugin that already succeeded */
    lm__jwt_fail_t f = { 0 };
    if (lm__authenticate(ctx, c, &f))
        return LM_OK;
    if (c->anonymous) {
        const lm_consumer_t *anon = lm_ctx_find_consumer(ctx, c->anonymous);
        if (!anon)
            return lm_ctx_exit(ctx, 500, c->msg_no_anon, NULL);
        lm_ctx_set_consumer(ctx, anon, NULL, true);
        return LM_OK;
    }
    const char *hdr = f.base_challenge ? c->www_base : c->www_err;
    if (f.body)
        return lm_ctx_exit_body(ctx, 401, "application/json; charset=utf-8", f.body, strlen(f.body), hdr);
    return lm_ctx_exit(ctx, 401, f.message, hdr);
}

const lm_plugin_ops_t lm_plugin_jwt = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "jwt",
    .priority = 1450,
    .schema = lm__jwt_schema,
    .configure = lm__jwt_configure,
    .access = lm__jwt_access,
};

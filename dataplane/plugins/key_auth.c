/*
 * key_auth.c - the key-auth plugin (Kong 3.x): authenticates a request by an
 * API key found in a header, a query argument or a body field named by
 * config.key_names, looked up in the snapshot's keyauth_credentials index.
 *
 * Behaviour (Kong's handler, facts only):
 *   - per key name, in order: the header (key_in_header), else the query
 *     argument (key_in_query), else the body field (key_in_body: urlencoded,
 *     multipart or JSON body, kong.request.get_body); the first name that
 *     yields a string wins;
 *   - a header sent twice, an argument given twice, a repeated urlencoded
 *     field or a JSON object/array: 401 "Duplicate API key found";
 *     a bare "?apikey" is not a key (the body is not looked at for that name,
 *     the next name is tried), nor is a JSON number/boolean/null;
 *   - no key, or an empty one: 401 "No API key found in request";
 *   - unknown key: 401 "Unauthorized";
 *   - every 401 carries WWW-Authenticate: Key realm="<realm>" (just "Key"
 *     when no realm is configured);
 *   - a key name with '_' also matches a header spelled with '-' (OpenResty's
 *     header table lookup), the exact spelling first;
 *   - hide_credentials removes the header and the query argument of that name
 *     and, with key_in_body, the body field of that name (wherever the key
 *     was found; the upstream gets the body with a new Content-Length);
 *   - anonymous: a failure becomes the anonymous consumer; a request already
 *     authenticated by a credential skips the plugin (logical OR);
 *   - run_on_preflight = false lets OPTIONS through untouched.
 * key_in_body asks for the request body (lm_plugin_need_body): read whole up
 * to LM_BODY_BUFFER_MAX; a larger one has no key in it (Kong: a body nginx
 * spooled to a file gives get_body an error, which key-auth treats as empty).
 */
#include "auth_common.h"

#define LM__ERR_DUPLICATE "Duplicate API key found"
#define LM__ERR_NO_KEY "No API key found in request"
#define LM__ERR_INVALID "Unauthorized"

typedef struct {
    lm_str_t name; /* as configured */
    lm_str_t alt;  /* '_' spelled '-' (ptr NULL when the name has no '_') */
} lm__key_name_t;

typedef struct {
    lm__key_name_t *names;
    size_t num_names;
    bool hide_credentials, in_header, in_query, in_body, run_on_preflight;
    const char *anonymous; /* consumer id or username, or NULL */
    const char *www;       /* "WWW-Authenticate: ...\r\n" */
} lm__key_auth_conf_t;

static const lm_schema_field_t lm__key_auth_schema[] = {
    { .name = "key_names", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .required = true, .def = "[\"apikey\"]" },
    { .name = "hide_credentials", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { .name = "anonymous", .type = LM_SF_STRING },
    { .name = "key_in_header", .type = LM_SF_BOOLEAN, .required = true, .def = "true" },
    { .name = "key_in_query", .type = LM_SF_BOOLEAN, .required = true, .def = "true" },
    { .name = "key_in_body", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { .name = "run_on_preflight", .type = LM_SF_BOOLEAN, .required = true, .def = "true" },
    { .name = "realm", .type = LM_SF_STRING },
    { 0 },
};

/* ---- configure ----------------------------------------------------------- */

static bool lm__header_name_ok(const char *s)
{
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static int lm__key_auth_configure(lm_plugin_cfg_ctx_t *cc, const cJSON *conf, void **out)
{
    bool ok = true;
    const cJSON *names = lm_schema_get(conf, "key_names");
    size_t n = (size_t)cJSON_GetArraySize(names);
    lm__key_auth_conf_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    c->names = lm_arena_calloc(cc->arena, (n ? n : 1) * sizeof(*c->names));
    const cJSON *it;
    size_t i = 0;
    cJSON_ArrayForEach(it, names) {
        char field[64];
        snprintf(field, sizeof(field), "key_names[%zu]", i++);
        const char *s = it->valuestring;
        if (!*s) {
            lm_plugin_error(cc, field, "length must be at least 1");
            ok = false;
            continue;
        }
        if (!lm__header_name_ok(s)) {
            lm_plugin_error(cc, field, "bad header name '%s', allowed characters are A-Z, a-z, 0-9, '_', and '-'", s);
            ok = false;
            continue;
        }
        lm__key_name_t *kn = &c->names[c->num_names++];
        kn->name = lm_str(s);
        if (strchr(s, '_')) {
            char *alt = lm_arena_strdup(cc->arena, s);
            for (char *p = alt; *p; p++)
                if (*p == '_')
                    *p = '-';
            kn->alt = lm_str(alt);
        }
    }
    ok = lm_auth_check_str(cc, conf, "anonymous", false) && ok;
    ok = lm_auth_check_str(cc, conf, "realm", true) && ok;
    if (!ok)
        return LM_ERROR;
    c->hide_credentials = lm_schema_bool(conf, "hide_credentials");
    c->in_header = lm_schema_bool(conf, "key_in_header");
    c->in_query = lm_schema_bool(conf, "key_in_query");
    c->in_body = lm_schema_bool(conf, "key_in_body");
    if (c->in_body)
        lm_plugin_need_body(cc);
    c->run_on_preflight = lm_schema_bool(conf, "run_on_preflight");
    c->anonymous = lm_schema_str(conf, "anonymous");
    c->www = lm_auth_www_authenticate(cc->arena, "Key", lm_schema_str(conf, "realm"));
    *out = c;
    return LM_OK;
}

/* ---- request ------------------------------------------------------------- */

/* How often header `name` was sent (0, 1 or 2 for "more than once"); *value is the first. */
static int lm__header_count(lm_ctx_t *ctx, lm_str_t name, lm_str_t *value)
{
    if (!lm_ctx_header(ctx, name, value))
        return 0; /* the common miss: one pass */
    int n = 0;
    lm_str_t hn, hv;
    for (size_t i = 0; n < 2 && lm_ctx_header_at(ctx, i, &hn, &hv); i++) {
        if (lm_str_ieq(hn, name)) {
            if (n == 0)
                *value = hv;
            n++;
        }
    }
    return n;
}

/* Next byte of a form-encoded query component at *i ('+' is a space, %XX a byte). */
static int lm__qbyte(lm_str_t s, size_t *i)
{
    char c = s.ptr[*i];
    (*i)++;
    if (c == '+')
        return ' ';
    if (c == '%' && *i + 1 < s.len) {
        int h = lm_hexval(s.ptr[*i]), l = lm_hexval(s.ptr[*i + 1]);
        if (h >= 0 && l >= 0) {
            *i += 2;
            return h * 16 + l;
        }
    }
    return (unsigned char)c;
}

/* true when the encoded argument name decodes to `name` */
static bool lm__qname_eq(lm_str_t enc, lm_str_t name)
{
    size_t i = 0, j = 0;
    while (i < enc.len) {
        int c = lm__qbyte(enc, &i);
        if (j >= name.len || (unsigned char)name.ptr[j] != c)
            return false;
        j++;
    }
    return j == name.len;
}

enum { LM__Q_NONE, LM__Q_BARE, LM__Q_VALUE, LM__Q_DUP };

/* Looks `name` up in the raw query: absent, bare ("?name"), one value, or given twice. */
static int lm__query_find(lm_str_t q, lm_str_t name, lm_str_t *enc_value)
{
    int found = LM__Q_NONE;
    size_t i = 0;
    while (q.ptr && i < q.len) {
        size_t start = i;
        while (i < q.len && q.ptr[i] != '&')
            i++;
        lm_str_t seg = { q.ptr + start, i - start };
        i++; /* the '&' */
        if (seg.len == 0)
            continue;
        const char *eq = memchr(seg.ptr, '=', seg.len);
        lm_str_t key = { seg.ptr, eq ? (size_t)(eq - seg.ptr) : seg.len };
        if (key.len == 0 || !lm__qname_eq(key, name))
            continue;
        if (found != LM__Q_NONE)
            return LM__Q_DUP;
        if (eq) {
            *enc_value = (lm_str_t){ eq + 1, seg.len - key.len - 1 };
            found = LM__Q_VALUE;
        } else {
            found = LM__Q_BARE;
        }
    }
    return found;
}

static lm_str_t lm__qdecode(lm_ctx_t *ctx, lm_str_t enc)
{
    char *out = lm_ctx_alloc(ctx, enc.len + 1);
    size_t i = 0, n = 0;
    while (i < enc.len)
        out[n++] = (char)lm__qbyte(enc, &i);
    out[n] = '\0';
    return (lm_str_t){ out, n };
}

/* LM_OK with the consumer set, or LM_ERROR with *msg the 401 message. */
static int lm__key_auth_authenticate(lm_ctx_t *ctx, const lm__key_auth_conf_t *c, const char **msg)
{
    lm_str_t key = LM_STR_NULL;
    bool found = false;
    for (size_t i = 0; i < c->num_names && !found; i++) {
        const lm__key_name_t *kn = &c->names[i];
        lm_str_t hname = kn->name;
        int n = 0;
        if (c->in_header) {
            n = lm__header_count(ctx, kn->name, &key);
            if (n == 0 && kn->alt.ptr) {
                hname = kn->alt;
                n = lm__header_count(ctx, kn->alt, &key);
            }
        }
        if (n > 1) {
            *msg = LM__ERR_DUPLICATE;
            return LM_ERROR;
        }
        found = n == 1;
        bool seen = found; /* Kong's `v` is set (even to a non-string): later places are not looked at */
        if (!found && c->in_query) {
            lm_str_t enc = LM_STR_NULL;
            int q = lm__query_find(lm_ctx_raw_query(ctx), kn->name, &enc);
            if (q == LM__Q_DUP) {
                *msg = LM__ERR_DUPLICATE;
                return LM_ERROR;
            }
            if (q == LM__Q_VALUE) {
                key = lm__qdecode(ctx, enc);
                found = true;
            }
            seen = q != LM__Q_NONE;
        }
        if (!seen && c->in_body) {
            int b = lm_ctx_body_field(ctx, kn->name, &key);
            if (b == LM_BODY_FIELD_MULTI) {
                *msg = LM__ERR_DUPLICATE;
                return LM_ERROR;
            }
            found = b == LM_BODY_FIELD_STRING;
        }
        if (found && c->hide_credentials) {
            lm_ctx_remove_query_arg(ctx, kn->name);
            lm_ctx_remove_header(ctx, kn->name);
            if (hname.ptr != kn->name.ptr)
                lm_ctx_remove_header(ctx, hname);
            if (c->in_body)
                lm_ctx_remove_body_field(ctx, kn->name);
        }
    }
    if (!found || key.len == 0) {
        *msg = LM__ERR_NO_KEY;
        return LM_ERROR;
    }
    const lm_credential_t *cred = lm_ctx_find_credential(ctx, "keyauth_credentials", key);
    if (!cred || !cred->consumer) {
        *msg = LM__ERR_INVALID;
        return LM_ERROR;
    }
    lm_ctx_set_consumer(ctx, cred->consumer, cred->id, false);
    return LM_OK;
}

static int lm__key_auth_access(lm_ctx_t *ctx, const void *conf)
{
    const lm__key_auth_conf_t *c = conf;
    if (!c->run_on_preflight && lm_str_eq(lm_ctx_method(ctx), LM_STR("OPTIONS")))
        return LM_OK;
    if (c->anonymous && lm_auth_has_credential(ctx))
        return LM_OK; /* logical OR: an earlier plugin already authenticated */
    const char *msg = NULL;
    if (lm__key_auth_authenticate(ctx, c, &msg) == LM_OK)
        return LM_OK;
    if (c->anonymous)
        return lm_auth_set_anonymous(ctx, c->anonymous);
    return lm_ctx_exit(ctx, 401, msg, c->www);
}

const lm_plugin_ops_t lm_plugin_key_auth = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "key-auth",
    .priority = 1250,
    .schema = lm__key_auth_schema,
    .configure = lm__key_auth_configure,
    .access = lm__key_auth_access,
};

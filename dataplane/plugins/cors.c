/*
 * cors.c - the cors plugin (Kong 3.x semantics).
 *
 * config: origins, headers, exposed_headers, methods (default every method
 * Kong knows), max_age, credentials (false), preflight_continue (false),
 * private_network (false), allow_origin_absent (true).
 *
 * Preflight (OPTIONS with Origin and Access-Control-Request-Method): answered
 * 200 by the plugin with the Access-Control-Allow-* headers, unless
 * preflight_continue (then the upstream answers and the plugin adds nothing).
 * Any other response (from the upstream or from another plugin) gets
 * Access-Control-Allow-Origin / -Credentials / -Expose-Headers and
 * `Vary: Origin` in header_filter.
 *
 * Origins: none or only "*" allows all ("*"); a single plain origin is sent
 * as is; otherwise the request's Origin (normalised: scheme://host[:port],
 * default ports dropped) is compared with each entry: an entry holding a
 * byte outside [A-Za-z0-9.:/-] is a regex, anchored at both ends, matched
 * against the request's host when the entry has no ':' and against the
 * normalised origin otherwise; other entries are compared normalised.
 */
#include "lm_plugins.h"

#include <stdio.h>
#include <stdlib.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

typedef struct {
    pcre2_code *re; /* NULL: a plain origin */
    bool by_host;
    lm_str_t domain; /* plain: the normalised origin */
} lm__origin_t;

typedef struct {
    size_t n_origins;
    bool allow_all;      /* no origins, or only "*" */
    const char *single;  /* exactly one plain origin: sent as is */
    bool has_star;       /* "*" among several */
    lm__origin_t *origins;
    size_t n;
    const char *methods;  /* joined with "," */
    const char *headers;  /* joined, or NULL when unset or empty */
    const char *exposed;  /* joined, or NULL */
    const char *max_age;  /* or NULL */
    bool credentials, preflight_continue, private_network, allow_origin_absent;
} lm__cors_conf_t;

/* ---- config ------------------------------------------------------------------- */

static const char *lm__check_origin(const cJSON *v)
{
    static __thread char msg[320];
    if (strcmp(v->valuestring, "*") == 0 || lm_schema_check_regex(v) == NULL)
        return NULL;
    snprintf(msg, sizeof(msg), "'%.256s' is not a valid regex", v->valuestring);
    return msg;
}

static const char *const lm__methods[] = { "GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE",
                                           "CONNECT", NULL };

static const lm_schema_field_t lm__fields[] = {
    { .name = "origins", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .check = lm__check_origin },
    { .name = "headers", .type = LM_SF_ARRAY, .elem = LM_SF_STRING },
    { .name = "exposed_headers", .type = LM_SF_ARRAY, .elem = LM_SF_STRING },
    { .name = "methods", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .one_of = lm__methods,
      .def = "[\"GET\",\"HEAD\",\"PUT\",\"PATCH\",\"POST\",\"DELETE\",\"OPTIONS\",\"TRACE\",\"CONNECT\"]" },
    { .name = "max_age", .type = LM_SF_NUMBER },
    { .name = "credentials", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { .name = "private_network", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { .name = "preflight_continue", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { .name = "allow_origin_absent", .type = LM_SF_BOOLEAN, .required = true, .def = "true" },
    { 0 },
};

/* ---- origin normalisation ------------------------------------------------------- */

typedef struct {
    lm_str_t domain; /* scheme://host[:port], or the input when it has no host */
    lm_str_t host;
} lm__norm_t;

static bool lm__alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/*
 * URL parsing as LuaSocket's url.parse (what Kong uses): fragment, scheme
 * ("x:"), authority ("//..." up to '/'), then userinfo and port are taken off
 * the authority; brackets around an IPv6 host are dropped.
 */
static lm__norm_t lm__normalize(lm_arena_t *a, lm_str_t in)
{
    lm__norm_t out = { in, in };
    const char *s = in.ptr ? in.ptr : "";
    size_t len = in.len;
    const char *hash = memchr(s, '#', len);
    if (hash)
        len = (size_t)(hash - s);
    size_t i = 0;
    lm_str_t scheme = LM_STR_NULL;
    if (len && lm__alnum(s[0])) {
        size_t j = 1;
        while (j < len && (lm__alnum(s[j]) || s[j] == '+' || s[j] == '-' || s[j] == '.'))
            j++;
        if (j < len && s[j] == ':') {
            scheme = (lm_str_t){ s, j };
            i = j + 1;
        }
    }
    if (!(len - i >= 2 && s[i] == '/' && s[i + 1] == '/'))
        return out;
    i += 2;
    size_t end = i;
    while (end < len && s[end] != '/')
        end++;
    lm_str_t auth = { s + i, end - i };
    const char *at = memchr(auth.ptr, '@', auth.len);
    if (at) {
        auth.len -= (size_t)(at + 1 - auth.ptr);
        auth.ptr = at + 1;
    }
    lm_str_t port = LM_STR_NULL;
    for (size_t k = auth.len; k > 0; k--) {
        char c = auth.ptr[k - 1];
        if (c == ']')
            break;
        if (c == ':') {
            port = (lm_str_t){ auth.ptr + k, auth.len - k };
            auth.len = k - 1;
            break;
        }
    }
    if (auth.len == 0)
        return out;
    lm_str_t host = auth;
    if (host.len > 2 && host.ptr[0] == '[' && host.ptr[host.len - 1] == ']') {
        host.ptr++;
        host.len -= 2;
    }
    if (port.ptr && ((lm_str_eq(scheme, LM_STR("http")) && lm_str_eq(port, LM_STR("80"))) ||
                     (lm_str_eq(scheme, LM_STR("https")) && lm_str_eq(port, LM_STR("443")))))
        port = LM_STR_NULL;
    size_t n = scheme.len + 3 + host.len + 1 + port.len + 1;
    char *d = lm_arena_alloc(a, n);
    size_t o = 0;
    if (scheme.ptr) {
        memcpy(d, scheme.ptr, scheme.len);
        memcpy(d + scheme.len, "://", 3);
        o = scheme.len + 3;
    }
    memcpy(d + o, host.ptr, host.len);
    o += host.len;
    if (port.ptr) {
        d[o++] = ':';
        memcpy(d + o, port.ptr, port.len);
        o += port.len;
    }
    d[o] = '\0';
    out.domain = (lm_str_t){ d, o };
    out.host = host;
    return out;
}

/* ---- configure ------------------------------------------------------------------- */

static void lm__code_free(void *p)
{
    pcre2_code_free(p);
}

static const char *lm__join(lm_arena_t *a, const cJSON *arr)
{
    size_t n = 1;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) n += strlen(it->valuestring) + 1;
    char *out = lm_arena_alloc(a, n);
    size_t o = 0;
    cJSON_ArrayForEach(it, arr) {
        if (o)
            out[o++] = ',';
        size_t l = strlen(it->valuestring);
        memcpy(out + o, it->valuestring, l);
        o += l;
    }
    out[o] = '\0';
    return out;
}

static bool lm__plain_origin(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!lm__alnum(*s) && *s != '.' && *s != ':' && *s != '/' && *s != '-')
            return false;
    return true;
}

static int lm__configure(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out)
{
    lm__cors_conf_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    const cJSON *origins = lm_schema_get(config, "origins");
    c->n_origins = origins ? (size_t)cJSON_GetArraySize(origins) : 0;
    const cJSON *first = c->n_origins ? cJSON_GetArrayItem(origins, 0) : NULL;
    c->allow_all = c->n_origins == 0 || (c->n_origins == 1 && strcmp(first->valuestring, "*") == 0);
    if (c->n_origins == 1 && lm__plain_origin(first->valuestring))
        c->single = first->valuestring;
    if (c->n_origins && !c->allow_all && !c->single) {
        c->origins = lm_arena_calloc(cc->arena, c->n_origins * sizeof(*c->origins));
        const cJSON *it;
        size_t idx = 0;
        cJSON_ArrayForEach(it, origins) {
            const char *e = it->valuestring;
            idx++;
            if (strcmp(e, "*") == 0) {
                c->has_star = true;
                continue;
            }
            lm__origin_t *o = &c->origins[c->n++];
            o->by_host = strchr(e, ':') == NULL;
            if (lm__plain_origin(e)) {
                lm__norm_t nm = lm__normalize(cc->arena, lm_str(e));
                o->domain = nm.domain;
                continue;
            }
            /* anchored at both ends, as Kong does for origins that look like regexes */
            size_t l = strlen(e);
            const char *p = e[0] == '^' ? e + 1 : e;
            size_t pl = l - (size_t)(p - e);
            bool has_end = l > 0 && e[l - 1] == '$' && pl > 0;
            char *pat = lm_arena_sprintf(cc->arena, "%.*s%s", (int)pl, p, has_end ? "" : "$");
            int err;
            PCRE2_SIZE off;
            o->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED, &err, &off, NULL);
            if (!o->re) {
                char f[64];
                snprintf(f, sizeof(f), "origins[%zu]", idx - 1);
                lm_plugin_error(cc, f, "'%s' is not a valid regex", e);
                return LM_ERROR;
            }
            lm_arena_on_free(cc->arena, lm__code_free, o->re);
            pcre2_jit_compile(o->re, PCRE2_JIT_COMPLETE);
        }
    }
    const cJSON *methods = lm_schema_get(config, "methods");
    c->methods = methods ? lm__join(cc->arena, methods) : "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT";
    const cJSON *headers = lm_schema_get(config, "headers");
    if (headers && cJSON_GetArraySize(headers) > 0)
        c->headers = lm__join(cc->arena, headers);
    const cJSON *exposed = lm_schema_get(config, "exposed_headers");
    if (exposed && cJSON_GetArraySize(exposed) > 0)
        c->exposed = lm__join(cc->arena, exposed);
    const cJSON *max_age = lm_schema_get(config, "max_age");
    if (max_age)
        c->max_age = lm_arena_sprintf(cc->arena, "%.14g", max_age->valuedouble);
    c->credentials = lm_schema_bool(config, "credentials");
    c->preflight_continue = lm_schema_bool(config, "preflight_continue");
    c->private_network = lm_schema_bool(config, "private_network");
    c->allow_origin_absent = lm_schema_bool(config, "allow_origin_absent");
    *out = c;
    return LM_OK;
}

/* ---- response headers -------------------------------------------------------------- */

/*
 * Where headers go: in access (the preflight answer) into a small list that
 * becomes lm_ctx_exit_body's extra headers; in header_filter straight onto
 * the response.
 */
#define LM__MAX_HDRS 12

typedef struct {
    lm_ctx_t *ctx;
    bool hf;
    struct {
        const char *name;
        lm_str_t value;
    } h[LM__MAX_HDRS];
    size_t n;
} lm__sink_t;

static void lm__set(lm__sink_t *s, const char *name, lm_str_t value)
{
    if (s->hf) {
        lm_ctx_resp_set_header(s->ctx, lm_str(name), value);
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        if (strcasecmp(s->h[i].name, name) == 0) {
            s->h[i].value = value;
            return;
        }
    }
    if (s->n < LM__MAX_HDRS)
        s->h[s->n++] = (typeof(s->h[0])){ name, value };
}

static void lm__clear(lm__sink_t *s, const char *name)
{
    if (s->hf) {
        lm_ctx_resp_remove_header(s->ctx, lm_str(name));
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        if (strcasecmp(s->h[i].name, name) == 0) {
            memmove(&s->h[i], &s->h[i + 1], (s->n - i - 1) * sizeof(s->h[0]));
            s->n--;
            return;
        }
    }
}

/* Vary: Origin - added to what the upstream sent in header_filter, set on a preflight */
static void lm__vary(lm__sink_t *s)
{
    if (s->hf)
        lm_ctx_resp_add_header(s->ctx, LM_STR("Vary"), LM_STR("Origin"));
    else
        lm__set(s, "Vary", LM_STR("Origin"));
}

static void *lm__arena_malloc(PCRE2_SIZE size, void *data)
{
    return lm_arena_alloc(data, size);
}

static void lm__arena_nofree(void *p, void *data)
{
    LM_UNUSED(p);
    LM_UNUSED(data);
}

/* Sets Access-Control-Allow-Origin; true when it is "*". */
static bool lm__origin(lm__sink_t *s, const lm__cors_conf_t *c, bool has_origin, lm_str_t req_origin)
{
    if (c->allow_all) {
        lm__set(s, "Access-Control-Allow-Origin", LM_STR("*"));
        return true;
    }
    lm__vary(s);
    if (c->single) {
        lm__set(s, "Access-Control-Allow-Origin", lm_str(c->single));
        return false;
    }
    if (has_origin) {
        if (c->has_star) {
            lm__set(s, "Access-Control-Allow-Origin", LM_STR("*"));
            return true;
        }
        lm_arena_t *a = lm_ctx_arena(s->ctx);
        lm__norm_t nm = lm__normalize(a, req_origin);
        pcre2_match_data *md = NULL;
        for (size_t i = 0; i < c->n; i++) {
            const lm__origin_t *o = &c->origins[i];
            bool found;
            if (o->re) {
                if (!md)
                    md = pcre2_match_data_create(
                        1, pcre2_general_context_create(lm__arena_malloc, lm__arena_nofree, a));
                lm_str_t subj = o->by_host ? nm.host : nm.domain;
                found = pcre2_match(o->re, (PCRE2_SPTR)(subj.ptr ? subj.ptr : ""), subj.len, 0, 0, md, NULL) >= 0;
            } else {
                found = lm_str_eq(nm.domain, o->domain);
            }
            if (found) {
                lm__set(s, "Access-Control-Allow-Origin", nm.domain);
                return false;
            }
        }
    }
    lm__clear(s, "Access-Control-Allow-Origin");
    return false;
}

static void lm__credentials(lm__sink_t *s, const lm__cors_conf_t *c, bool allow_all, bool has_origin,
                            lm_str_t req_origin)
{
    if (!c->credentials)
        return;
    if (!allow_all) {
        lm__set(s, "Access-Control-Allow-Credentials", LM_STR("true"));
        return;
    }
    /* "*" cannot go with credentials: echo the request's origin instead */
    if (has_origin) {
        lm__vary(s);
        lm__set(s, "Access-Control-Allow-Origin", req_origin);
        lm__set(s, "Access-Control-Allow-Credentials", LM_STR("true"));
    }
}

/* *has_origin and *origin: the request's Origin header */
static bool lm__is_preflight(lm_ctx_t *ctx, bool *has_origin, lm_str_t *origin)
{
    lm_str_t acrm;
    *origin = LM_STR_NULL;
    *has_origin = lm_ctx_header(ctx, LM_STR("Origin"), origin);
    return *has_origin && lm_str_eq(lm_ctx_method(ctx), LM_STR("OPTIONS")) &&
           lm_ctx_header(ctx, LM_STR("Access-Control-Request-Method"), &acrm);
}

static int lm__access(lm_ctx_t *ctx, const void *conf)
{
    const lm__cors_conf_t *c = conf;
    lm_str_t origin;
    bool has_origin;
    if (!lm__is_preflight(ctx, &has_origin, &origin) || c->preflight_continue)
        return LM_OK;

    lm__sink_t s = { .ctx = ctx, .hf = false };
    bool all = lm__origin(&s, c, true, origin);
    lm__credentials(&s, c, all, true, origin);
    lm_str_t acrh;
    if (c->headers)
        lm__set(&s, "Access-Control-Allow-Headers", lm_str(c->headers));
    else if (lm_ctx_header(ctx, LM_STR("Access-Control-Request-Headers"), &acrh))
        lm__set(&s, "Access-Control-Allow-Headers", acrh);
    lm__set(&s, "Access-Control-Allow-Methods", lm_str(c->methods));
    if (c->max_age)
        lm__set(&s, "Access-Control-Max-Age", lm_str(c->max_age));
    lm_str_t pn;
    if (c->private_network && lm_ctx_header(ctx, LM_STR("Access-Control-Request-Private-Network"), &pn) &&
        lm_str_eq(pn, LM_STR("true")))
        lm__set(&s, "Access-Control-Allow-Private-Network", LM_STR("true"));

    size_t len = 1;
    for (size_t i = 0; i < s.n; i++)
        len += strlen(s.h[i].name) + 2 + s.h[i].value.len + 2;
    char *extra = lm_ctx_alloc(ctx, len);
    size_t o = 0;
    for (size_t i = 0; i < s.n; i++) {
        /* a header value never carries CR or LF here: the parser refused those */
        o += (size_t)snprintf(extra + o, len - o, "%s: %.*s\r\n", s.h[i].name, LM_STR_FMT(s.h[i].value));
    }
    extra[o] = '\0';
    return lm_ctx_exit_body(ctx, 200, NULL, "", 0, extra);
}

static int lm__header_filter(lm_ctx_t *ctx, const void *conf)
{
    const lm__cors_conf_t *c = conf;
    lm_str_t origin;
    bool has_origin;
    /* the access phase answered this preflight itself, or left it to the upstream */
    if (lm__is_preflight(ctx, &has_origin, &origin))
        return LM_OK;
    if (!has_origin && !c->allow_origin_absent)
        return LM_OK;
    lm__sink_t s = { .ctx = ctx, .hf = true };
    bool all = lm__origin(&s, c, has_origin, origin);
    lm__credentials(&s, c, all, has_origin, origin);
    if (c->exposed)
        lm_ctx_resp_set_header(ctx, LM_STR("Access-Control-Expose-Headers"), lm_str(c->exposed));
    return LM_OK;
}

const lm_plugin_ops_t lm_plugin_cors = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "cors",
    .priority = 2000,
    .schema = lm__fields,
    .configure = lm__configure,
    .access = lm__access,
    .header_filter = lm__header_filter,
};

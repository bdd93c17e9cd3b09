/*
 * request_termination.c - the request-termination plugin (Kong 3.x
 * semantics).
 *
 * config: status_code (503, 100..599), message, body, content_type, echo
 * (false), trigger (a header or query argument name). With a trigger the
 * plugin acts only on requests that carry that header or query argument.
 *
 * Answers: body -> the raw body with content_type (default
 * "application/json; charset=utf-8"); echo -> {"message", "kong",
 * "request", "matched_route", "matched_service"} as JSON; otherwise
 * {"message": message}, message defaulting to Kong's text for the status
 * (503 "Service unavailable", ...) and no body for a status without one.
 *
 * Config rules (Kong's wording): "message cannot be used with content_type
 * or body", "content_type requires a body", "echo cannot be used with
 * content_type and body".
 */
#include "lm_plugins.h"

#include <stdio.h>
#include <unistd.h>

typedef struct {
    int status;
    const char *message;      /* configured, or Kong's default for the status, or NULL */
    const char *body;         /* NULL: none */
    size_t body_len;
    const char *content_type;
    bool echo;
    lm_str_t trigger;         /* ptr NULL: none */
} lm__rt_conf_t;

static const lm_schema_field_t lm__fields[] = {
    { .name = "status_code", .type = LM_SF_INTEGER, .required = true, .def = "503", .has_min = true, .min = 100,
      .has_max = true, .max = 599 },
    { .name = "message", .type = LM_SF_STRING },
    { .name = "content_type", .type = LM_SF_STRING },
    { .name = "body", .type = LM_SF_STRING },
    { .name = "echo", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { .name = "trigger", .type = LM_SF_STRING, .check = lm_schema_check_header_name },
    { 0 },
};

static const char *lm__default_message(int status)
{
    switch (status) {
    case 401: return "Unauthorized";
    case 404: return "Not found";
    case 405: return "Method not allowed";
    case 500: return "An unexpected error occurred";
    case 502: return "Bad Gateway";
    case 503: return "Service unavailable";
    default: return NULL;
    }
}

static bool lm__present(const char *s)
{
    return s && *s;
}

static int lm__configure(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out)
{
    lm__rt_conf_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    const char *message = lm_schema_str(config, "message");
    const char *body = lm_schema_str(config, "body");
    const char *ctype = lm_schema_str(config, "content_type");
    c->echo = lm_schema_bool(config, "echo");
    if (lm__present(message) && (lm__present(ctype) || lm__present(body))) {
        lm_plugin_error(cc, NULL, "message cannot be used with content_type or body");
        return LM_ERROR;
    }
    if (lm__present(ctype) && !lm__present(body)) {
        lm_plugin_error(cc, NULL, "content_type requires a body");
        return LM_ERROR;
    }
    if (c->echo && (lm__present(ctype) || lm__present(body))) {
        lm_plugin_error(cc, NULL, "echo cannot be used with content_type and body");
        return LM_ERROR;
    }
    c->status = (int)lm_schema_num(config, "status_code");
    c->message = message ? message : lm__default_message(c->status);
    if (body) {
        c->body = body;
        c->body_len = strlen(body);
        c->content_type = ctype ? ctype : "application/json; charset=utf-8";
    }
    const char *trigger = lm_schema_str(config, "trigger");
    if (trigger)
        c->trigger = lm_str(trigger);
    *out = c;
    return LM_OK;
}

/* ---- a JSON writer on the request arena ----------------------------------------------- */

typedef struct {
    lm_arena_t *a;
    char *p;
    size_t len, cap;
} lm__jb_t;

static void lm__jb_put(lm__jb_t *j, const char *s, size_t n)
{
    if (j->len + n > j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 1024;
        while (cap < j->len + n)
            cap *= 2;
        char *np = lm_arena_alloc(j->a, cap);
        if (j->len)
            memcpy(np, j->p, j->len);
        j->p = np;
        j->cap = cap;
    }
    memcpy(j->p + j->len, s, n);
    j->len += n;
}

#define LM__JB_LIT(j, lit) lm__jb_put((j), (lit), sizeof(lit) - 1)

static void lm__jb_str(lm__jb_t *j, lm_str_t s)
{
    static const char hex[] = "0123456789abcdef";
    LM__JB_LIT(j, "\"");
    size_t start = 0;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        lm__jb_put(j, s.ptr + start, i - start);
        start = i + 1;
        char esc[6] = { '\\', 0 };
        size_t n = 2;
        switch (ch) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            n = 6;
        }
        lm__jb_put(j, esc, n);
    }
    if (s.len > start)
        lm__jb_put(j, s.ptr + start, s.len - start);
    LM__JB_LIT(j, "\"");
}

static void lm__jb_cstr(lm__jb_t *j, const char *s)
{
    if (s)
        lm__jb_str(j, lm_str(s));
    else
        LM__JB_LIT(j, "null");
}

static void lm__jb_key(lm__jb_t *j, bool *first, const char *k)
{
    if (!*first)
        LM__JB_LIT(j, ",");
    *first = false;
    lm__jb_str(j, lm_str(k));
    LM__JB_LIT(j, ":");
}

static void lm__jb_int(lm__jb_t *j, long long v)
{
    char b[32];
    int n = snprintf(b, sizeof(b), "%lld", v);
    lm__jb_put(j, b, (size_t)n);
}

static void lm__jb_bool(lm__jb_t *j, bool v)
{
    if (v)
        LM__JB_LIT(j, "true");
    else
        LM__JB_LIT(j, "false");
}

/* an array of strings, or null when empty */
static void lm__jb_strs(lm__jb_t *j, char *const *v, size_t n)
{
    if (n == 0) {
        LM__JB_LIT(j, "null");
        return;
    }
    LM__JB_LIT(j, "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            LM__JB_LIT(j, ",");
        lm__jb_cstr(j, v[i]);
    }
    LM__JB_LIT(j, "]");
}

/* ---- echo ---------------------------------------------------------------------------- */

/* one name with its values (headers, query arguments), in first-seen order */
typedef struct {
    lm_str_t name;
    lm_str_t *values; /* ptr NULL: a bare query argument (true) */
    size_t n, cap;
} lm__multi_t;

#define LM__MAX_ARGS 100 /* Kong's default for get_headers and get_query */

static void lm__multi_add(lm_arena_t *a, lm__multi_t *m, size_t *n, lm_str_t name, lm_str_t value)
{
    lm__multi_t *e = NULL;
    for (size_t i = 0; i < *n; i++)
        if (lm_str_eq(m[i].name, name))
            e = &m[i];
    if (!e) {
        if (*n >= LM__MAX_ARGS)
            return;
        e = &m[(*n)++];
        *e = (lm__multi_t){ .name = name };
    }
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 2;
        lm_str_t *nv = lm_arena_alloc(a, cap * sizeof(*nv));
        if (e->n)
            memcpy(nv, e->values, e->n * sizeof(*nv));
        e->values = nv;
        e->cap = cap;
    }
    e->values[e->n++] = value;
}

static void lm__jb_multi(lm__jb_t *j, const lm__multi_t *m, size_t n)
{
    LM__JB_LIT(j, "{");
    for (size_t i = 0; i < n; i++) {
        if (i)
            LM__JB_LIT(j, ",");
        lm__jb_str(j, m[i].name);
        LM__JB_LIT(j, ":");
        if (m[i].n > 1)
            LM__JB_LIT(j, "[");
        for (size_t k = 0; k < m[i].n; k++) {
            if (k)
                LM__JB_LIT(j, ",");
            if (m[i].values[k].ptr)
                lm__jb_str(j, m[i].values[k]);
            else
                LM__JB_LIT(j, "true");
        }
        if (m[i].n > 1)
            LM__JB_LIT(j, "]");
    }
    LM__JB_LIT(j, "}");
}

/* percent-decoding with '+' as a space, as query arguments are decoded */
static lm_str_t lm__unescape(lm_arena_t *a, const char *s, size_t n)
{
    char *o = lm_arena_alloc(a, n + 1);
    return (lm_str_t){ o, lm_url_decode(o, s, n, true) };
}

static void lm__jb_route(lm__jb_t *j, const lm_route_t *r)
{
    if (!r) {
        LM__JB_LIT(j, "null");
        return;
    }
    bool f = true;
    LM__JB_LIT(j, "{");
    lm__jb_key(j, &f, "id");
    lm__jb_cstr(j, r->id);
    lm__jb_key(j, &f, "name");
    lm__jb_cstr(j, r->name);
    lm__jb_key(j, &f, "protocols");
    lm__jb_strs(j, r->protocols, r->num_protocols);
    lm__jb_key(j, &f, "methods");
    lm__jb_strs(j, r->methods, r->num_methods);
    lm__jb_key(j, &f, "hosts");
    lm__jb_strs(j, r->hosts, r->num_hosts);
    lm__jb_key(j, &f, "paths");
    if (r->num_paths == 0) {
        LM__JB_LIT(j, "null");
    } else {
        LM__JB_LIT(j, "[");
        for (size_t i = 0; i < r->num_paths; i++) {
            if (i)
                LM__JB_LIT(j, ",");
            if (r->path_is_regex && r->path_is_regex[i])
                lm__jb_str(j, lm_str(lm_arena_sprintf(j->a, "~%s", r->paths[i])));
            else
                lm__jb_cstr(j, r->paths[i]);
        }
        LM__JB_LIT(j, "]");
    }
    lm__jb_key(j, &f, "headers");
    if (r->num_headers == 0) {
        LM__JB_LIT(j, "null");
    } else {
        LM__JB_LIT(j, "{");
        for (size_t i = 0; i < r->num_headers; i++) {
            if (i)
                LM__JB_LIT(j, ",");
            lm__jb_cstr(j, r->headers[i].name);
            LM__JB_LIT(j, ":");
            lm__jb_strs(j, r->headers[i].values, r->headers[i].num_values);
        }
        LM__JB_LIT(j, "}");
    }
    lm__jb_key(j, &f, "snis");
    lm__jb_strs(j, r->snis, r->num_snis);
    lm__jb_key(j, &f, "https_redirect_status_code");
    lm__jb_int(j, r->https_redirect_status_code);
    lm__jb_key(j, &f, "regex_priority");
    lm__jb_int(j, r->regex_priority);
    lm__jb_key(j, &f, "strip_path");
    lm__jb_bool(j, r->strip_path);
    lm__jb_key(j, &f, "preserve_host");
    lm__jb_bool(j, r->preserve_host);
    lm__jb_key(j, &f, "request_buffering");
    lm__jb_bool(j, r->request_buffering);
    lm__jb_key(j, &f, "response_buffering");
    lm__jb_bool(j, r->response_buffering);
    lm__jb_key(j, &f, "path_handling");
    lm__jb_cstr(j, r->path_handling);
    lm__jb_key(j, &f, "tags");
    lm__jb_strs(j, r->tags, r->num_tags);
    lm__jb_key(j, &f, "service");
    if (r->service && r->service->id) {
        LM__JB_LIT(j, "{\"id\":");
        lm__jb_cstr(j, r->service->id);
        LM__JB_LIT(j, "}");
    } else {
        LM__JB_LIT(j, "null");
    }
    LM__JB_LIT(j, "}");
}

static void lm__jb_service(lm__jb_t *j, const lm_service_t *s)
{
    if (!s) {
        LM__JB_LIT(j, "null");
        return;
    }
    bool f = true;
    LM__JB_LIT(j, "{");
    lm__jb_key(j, &f, "id");
    lm__jb_cstr(j, s->id);
    lm__jb_key(j, &f, "name");
    lm__jb_cstr(j, s->name);
    lm__jb_key(j, &f, "protocol");
    lm__jb_cstr(j, s->protocol);
    lm__jb_key(j, &f, "host");
    lm__jb_cstr(j, s->host);
    lm__jb_key(j, &f, "port");
    lm__jb_int(j, s->port);
    lm__jb_key(j, &f, "path");
    lm__jb_cstr(j, s->path);
    lm__jb_key(j, &f, "retries");
    lm__jb_int(j, s->retries);
    lm__jb_key(j, &f, "connect_timeout");
    lm__jb_int(j, s->connect_timeout);
    lm__jb_key(j, &f, "write_timeout");
    lm__jb_int(j, s->write_timeout);
    lm__jb_key(j, &f, "read_timeout");
    lm__jb_int(j, s->read_timeout);
    lm__jb_key(j, &f, "enabled");
    lm__jb_bool(j, s->enabled);
    lm__jb_key(j, &f, "tls_verify");
    if (s->tls_verify_set)
        lm__jb_bool(j, s->tls_verify);
    else
        LM__JB_LIT(j, "null");
    lm__jb_key(j, &f, "tls_verify_depth");
    if (s->tls_verify_depth >= 0)
        lm__jb_int(j, s->tls_verify_depth);
    else
        LM__JB_LIT(j, "null");
    lm__jb_key(j, &f, "ca_certificates");
    lm__jb_strs(j, s->ca_certificates, s->num_ca_certificates);
    lm__jb_key(j, &f, "client_certificate");
    if (s->client_certificate) {
        LM__JB_LIT(j, "{\"id\":");
        lm__jb_cstr(j, s->client_certificate);
        LM__JB_LIT(j, "}");
    } else {
        LM__JB_LIT(j, "null");
    }
    lm__jb_key(j, &f, "tags");
    lm__jb_strs(j, s->tags, s->num_tags);
    LM__JB_LIT(j, "}");
}

static int lm__echo(lm_ctx_t *ctx, const lm__rt_conf_t *c)
{
    lm_arena_t *a = lm_ctx_arena(ctx);
    lm__jb_t j = { .a = a };
    bool f = true;
    LM__JB_LIT(&j, "{");
    if (c->message) {
        lm__jb_key(&j, &f, "message");
        lm__jb_cstr(&j, c->message);
    }

    lm__jb_key(&j, &f, "kong");
    {
        bool kf = true;
        char host[256];
        if (gethostname(host, sizeof(host)) != 0)
            host[0] = '\0';
        host[sizeof(host) - 1] = '\0';
        LM__JB_LIT(&j, "{");
        lm__jb_key(&j, &kf, "worker_pid");
        lm__jb_int(&j, (long long)getpid());
        lm__jb_key(&j, &kf, "hostname");
        lm__jb_cstr(&j, host);
        LM__JB_LIT(&j, "}");
    }

    lm__jb_key(&j, &f, "request");
    bool rf = true;
    LM__JB_LIT(&j, "{");
    const char *scheme = lm_ctx_scheme(ctx);
    lm__jb_key(&j, &rf, "scheme");
    lm__jb_cstr(&j, scheme);
    /* host without the port, lower-cased; the port from the Host header, else the scheme's */
    lm_str_t hosthdr = lm_ctx_host(ctx);
    size_t hl = hosthdr.len;
    long long port = strcmp(scheme, "https") == 0 ? 443 : 80;
    if (hl && hosthdr.ptr[0] != '[') {
        const char *colon = memchr(hosthdr.ptr, ':', hosthdr.len);
        if (colon)
            hl = (size_t)(colon - hosthdr.ptr);
    } else if (hl) {
        const char *rb = memchr(hosthdr.ptr, ']', hosthdr.len);
        if (rb)
            hl = (size_t)(rb - hosthdr.ptr) + 1;
    }
    if (hl < hosthdr.len && hosthdr.ptr[hl] == ':') {
        long long p = 0;
        for (size_t i = hl + 1; i < hosthdr.len && hosthdr.ptr[i] >= '0' && hosthdr.ptr[i] <= '9' && p < 65536; i++)
            p = p * 10 + (hosthdr.ptr[i] - '0');
        if (p > 0)
            port = p;
    }
    char *lh = lm_arena_alloc(a, hl + 1);
    for (size_t i = 0; i < hl; i++)
        lh[i] = lm_tolower(hosthdr.ptr[i]);
    lh[hl] = '\0';
    lm__jb_key(&j, &rf, "host");
    lm__jb_str(&j, (lm_str_t){ lh, hl });
    lm__jb_key(&j, &rf, "port");
    lm__jb_int(&j, port);

    /* headers: lower-cased names, repeated ones as arrays */
    lm__multi_t *hs = lm_arena_alloc(a, LM__MAX_ARGS * sizeof(*hs));
    size_t nh = 0;
    lm_str_t name, value;
    for (size_t i = 0; lm_ctx_header_at(ctx, i, &name, &value); i++) {
        char *ln = lm_arena_alloc(a, name.len + 1);
        for (size_t k = 0; k < name.len; k++)
            ln[k] = lm_tolower(name.ptr[k]);
        ln[name.len] = '\0';
        lm__multi_add(a, hs, &nh, (lm_str_t){ ln, name.len }, value);
    }
    lm__jb_key(&j, &rf, "headers");
    lm__jb_multi(&j, hs, nh);

    /* query: decoded; a bare name is true, repeated names are arrays */
    lm__multi_t *qs = lm_arena_alloc(a, LM__MAX_ARGS * sizeof(*qs));
    size_t nq = 0;
    lm_str_t q = lm_ctx_raw_query(ctx);
    for (size_t i = 0; q.ptr && i < q.len;) {
        size_t e = i;
        while (e < q.len && q.ptr[e] != '&')
            e++;
        const char *eq = memchr(q.ptr + i, '=', e - i);
        size_t kl = eq ? (size_t)(eq - (q.ptr + i)) : e - i;
        if (kl > 0) {
            lm_str_t k = lm__unescape(a, q.ptr + i, kl);
            lm_str_t v = eq ? lm__unescape(a, eq + 1, (size_t)(q.ptr + e - (eq + 1))) : LM_STR_NULL;
            lm__multi_add(a, qs, &nq, k, v);
        }
        i = e + 1;
    }
    lm__jb_key(&j, &rf, "query");
    lm__jb_multi(&j, qs, nq);

    /* the body itself is not available to plugins: only the empty one is echoed */
    if (!lm_ctx_has_body(ctx) || lm_ctx_content_length(ctx) == 0) {
        lm__jb_key(&j, &rf, "raw_body");
        LM__JB_LIT(&j, "\"\"");
    }
    lm__jb_key(&j, &rf, "method");
    lm__jb_str(&j, lm_ctx_method(ctx));
    lm__jb_key(&j, &rf, "path");
    lm__jb_str(&j, lm_ctx_path(ctx));
    LM__JB_LIT(&j, "}");

    lm__jb_key(&j, &f, "matched_route");
    lm__jb_route(&j, lm_ctx_route(ctx));
    lm__jb_key(&j, &f, "matched_service");
    lm__jb_service(&j, lm_ctx_service(ctx));
    LM__JB_LIT(&j, "}");
    return lm_ctx_exit_body(ctx, c->status, "application/json; charset=utf-8", j.p, j.len, NULL);
}

static int lm__access(lm_ctx_t *ctx, const void *conf)
{
    const lm__rt_conf_t *c = conf;
    if (c->trigger.ptr) {
        lm_str_t v;
        if (!lm_ctx_header(ctx, c->trigger, &v) && !lm_ctx_query_arg(ctx, c->trigger, &v))
            return LM_OK; /* the trigger is absent: nothing to do */
    }
    if (c->echo)
        return lm__echo(ctx, c);
    if (c->body)
        return lm_ctx_exit_body(ctx, c->status, c->content_type, c->body, c->body_len, NULL);
    if (c->message)
        return lm_ctx_exit(ctx, c->status, c->message, NULL);
    return lm_ctx_exit_body(ctx, c->status, NULL, "", 0, NULL);
}

const lm_plugin_ops_t lm_plugin_request_termination = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "request-termination",
    .priority = 2,
    .schema = lm__fields,
    .configure = lm__configure,
    .access = lm__access,
};

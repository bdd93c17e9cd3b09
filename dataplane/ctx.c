/*
 * ctx.c - the request context plugins see (lm_ctx_* in lm_plugin.h), over
 * the proxy's lm_req_t, and the phase runners the proxy calls.
 */
#include "lm_log.h"
#include "lm_proxy.h"
#include "proxy_int.h"
#include "lm_tls.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define R(ctx) ((lm_req_t *)(ctx))
#define CTX(r) ((lm_ctx_t *)(r))

/* ---- headers ------------------------------------------------------------ */

void lm_ctx_init_headers(lm_req_t *r, const lm_http_header_t *h, size_t n, bool client_cert_hdr)
{
    r->hdrs_cap = n + 8;
    r->hdrs = lm_arena_alloc(r->arena, r->hdrs_cap * sizeof(*r->hdrs));
    memcpy(r->hdrs, h, n * sizeof(*h));
    r->num_hdrs = n;
    /* what the proxy says about the client certificate is never taken from
     * the client (plugins do not see these either); the parser tells whether any came */
    for (size_t i = 0; client_cert_hdr && i < n; i++)
        if (h[i].id == LM_HDR_X_CLIENT_CERT)
            r->hdrs[i].flags |= LM_HDR_F_DELETED;
}

static void lm__hdr_append_as(lm_arena_t *a, lm_http_header_t **arr, size_t *n, size_t *cap, lm_str_t name,
                              lm_str_t value, bool copy)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        lm_http_header_t *na = lm_arena_alloc(a, ncap * sizeof(*na));
        if (*n)
            memcpy(na, *arr, *n * sizeof(*na));
        *arr = na;
        *cap = ncap;
    }
    lm_http_header_t *h = &(*arr)[(*n)++];
    h->name = copy ? lm_arena_strdup_str(a, name) : name;
    h->value = copy ? lm_arena_strdup_str(a, value) : value;
    h->id = LM_HDR_OTHER;
    h->flags = 0;
}

static void lm__hdr_append(lm_arena_t *a, lm_http_header_t **arr, size_t *n, size_t *cap, lm_str_t name,
                           lm_str_t value)
{
    lm__hdr_append_as(a, arr, n, cap, name, value, true);
}

static void lm__hdr_remove(lm_http_header_t *arr, size_t n, lm_str_t name)
{
    for (size_t i = 0; i < n; i++)
        if (!(arr[i].flags & LM_HDR_F_DELETED) && lm_str_ieq(arr[i].name, name))
            arr[i].flags |= LM_HDR_F_DELETED;
}

static bool lm__hdr_find(const lm_http_header_t *arr, size_t n, lm_str_t name, lm_str_t *value)
{
    for (size_t i = 0; i < n; i++) {
        if (!(arr[i].flags & LM_HDR_F_DELETED) && lm_str_ieq(arr[i].name, name)) {
            if (value)
                *value = arr[i].value;
            return true;
        }
    }
    return false;
}

bool lm_ctx_header(lm_ctx_t *ctx, lm_str_t name, lm_str_t *value)
{
    return lm__hdr_find(R(ctx)->hdrs, R(ctx)->num_hdrs, name, value);
}

bool lm_ctx_header_at(lm_ctx_t *ctx, size_t i, lm_str_t *name, lm_str_t *value)
{
    lm_req_t *r = R(ctx);
    size_t k = 0;
    for (size_t j = 0; j < r->num_hdrs; j++) {
        if (r->hdrs[j].flags & LM_HDR_F_DELETED)
            continue;
        if (k++ == i) {
            *name = r->hdrs[j].name;
            *value = r->hdrs[j].value;
            return true;
        }
    }
    return false;
}

size_t lm_ctx_header_all(lm_ctx_t *ctx, lm_str_t name, lm_str_t *values, size_t max)
{
    lm_req_t *r = R(ctx);
    size_t n = 0;
    for (size_t i = 0; i < r->num_hdrs; i++) {
        if (!(r->hdrs[i].flags & LM_HDR_F_DELETED) && lm_str_ieq(r->hdrs[i].name, name)) {
            if (n < max)
                values[n] = r->hdrs[i].value;
            n++;
        }
    }
    return n;
}

void lm_ctx_set_header(lm_ctx_t *ctx, lm_str_t name, lm_str_t value)
{
    lm_req_t *r = R(ctx);
    lm__hdr_remove(r->hdrs, r->num_hdrs, name);
    lm__hdr_append(r->arena, &r->hdrs, &r->num_hdrs, &r->hdrs_cap, name, value);
}

void lm_ctx_add_header(lm_ctx_t *ctx, lm_str_t name, lm_str_t value)
{
    lm_req_t *r = R(ctx);
    lm__hdr_append(r->arena, &r->hdrs, &r->num_hdrs, &r->hdrs_cap, name, value);
}

void lm_ctx_remove_header(lm_ctx_t *ctx, lm_str_t name)
{
    lm__hdr_remove(R(ctx)->hdrs, R(ctx)->num_hdrs, name);
}

/* ---- request line ---------------------------------------------------------- */

lm_str_t lm_ctx_method(lm_ctx_t *ctx) { return R(ctx)->method; }
lm_str_t lm_ctx_path(lm_ctx_t *ctx) { return R(ctx)->npath; }
lm_str_t lm_ctx_raw_query(lm_ctx_t *ctx) { return R(ctx)->raw_query; }
lm_str_t lm_ctx_raw_path(lm_ctx_t *ctx) { return R(ctx)->path; }
const char *lm_ctx_http_version(lm_ctx_t *ctx) { return R(ctx)->c->parent ? "2.0" : R(ctx)->minor == 0 ? "1.0" : "1.1"; }
lm_str_t lm_ctx_host(lm_ctx_t *ctx) { return R(ctx)->host; }
const char *lm_ctx_scheme(lm_ctx_t *ctx) { return lm_conn_tls(R(ctx)->c) ? "https" : "http"; }
int lm_ctx_client_port(lm_ctx_t *ctx) { return R(ctx)->c->port; }
const char *lm_ctx_client_cert_subject(lm_ctx_t *ctx) { return lm_conn_tls(R(ctx)->c) ? lm_conn_tls(R(ctx)->c)->client_subject : NULL; }
const char *lm_ctx_client_cert_verify(lm_ctx_t *ctx) { return lm_conn_tls(R(ctx)->c) ? lm_conn_tls(R(ctx)->c)->client_verify : NULL; }
int64_t lm_ctx_content_length(lm_ctx_t *ctx) { return R(ctx)->content_length; }
bool lm_ctx_has_body(lm_ctx_t *ctx) { return R(ctx)->req_body != LM_BODY_NONE && !(R(ctx)->req_body == LM_BODY_LENGTH && R(ctx)->content_length == 0); }
const lm_route_t *lm_ctx_route(lm_ctx_t *ctx) { return R(ctx)->rrt ? R(ctx)->rrt->route : NULL; }
const lm_service_t *lm_ctx_service(lm_ctx_t *ctx) { return R(ctx)->srt ? R(ctx)->srt->svc : NULL; }
const lm_config_t *lm_ctx_config(lm_ctx_t *ctx) { return R(ctx)->ws->snap->cfg; }
void *lm_ctx_alloc(lm_ctx_t *ctx, size_t size) { return lm_arena_alloc(R(ctx)->arena, size); }
lm_arena_t *lm_ctx_arena(lm_ctx_t *ctx) { return R(ctx)->arena; }
int lm_ctx_status(lm_ctx_t *ctx) { return R(ctx)->status; }

static lm_str_t lm__decode(lm_arena_t *a, const char *s, size_t n)
{
    char *out = lm_arena_alloc(a, n + 1);
    return (lm_str_t){ out, lm_url_decode(out, s, n, true) };
}

bool lm_ctx_query_arg(lm_ctx_t *ctx, lm_str_t name, lm_str_t *value)
{
    lm_req_t *r = R(ctx);
    lm_str_t q = r->raw_query;
    size_t i = 0;
    while (q.ptr && i < q.len) {
        size_t end = i;
        while (end < q.len && q.ptr[end] != '&')
            end++;
        size_t eq = i;
        while (eq < end && q.ptr[eq] != '=')
            eq++;
        lm_str_t k = lm__decode(r->arena, q.ptr + i, eq - i);
        if (lm_str_eq(k, name)) {
            if (value)
                *value = eq < end ? lm__decode(r->arena, q.ptr + eq + 1, end - eq - 1) : LM_STR("");
            return true;
        }
        i = end + 1;
    }
    return false;
}

void lm_ctx_remove_query_arg(lm_ctx_t *ctx, lm_str_t name)
{
    lm_req_t *r = R(ctx);
    lm_str_t *n = lm_arena_alloc(r->arena, (r->num_drop_args + 1) * sizeof(*n));
    if (r->num_drop_args)
        memcpy(n, r->drop_args, r->num_drop_args * sizeof(*n));
    n[r->num_drop_args++] = lm_arena_strdup_str(r->arena, name);
    r->drop_args = n;
}

void lm_ctx_set_method(lm_ctx_t *ctx, lm_str_t method)
{
    lm_req_t *r = R(ctx);
    r->up_method = lm_arena_strdup_str(r->arena, method);
    r->head_method = lm_str_eq(method, LM_STR("HEAD"));
}

void lm_ctx_set_path(lm_ctx_t *ctx, lm_str_t path)
{
    R(ctx)->up_path = lm_arena_strdup_str(R(ctx)->arena, path);
}

void lm_ctx_set_raw_query(lm_ctx_t *ctx, lm_str_t query)
{
    R(ctx)->up_query = lm_arena_strdup_str(R(ctx)->arena, query);
    R(ctx)->up_query_set = true;
}

bool lm_ctx_uri_capture(lm_ctx_t *ctx, lm_str_t name, lm_str_t *value)
{
    const lm_route_match_t *m = R(ctx)->match;
    if (!m || !name.len)
        return false;
    bool digits = true;
    size_t idx = 0;
    for (size_t i = 0; i < name.len && digits; i++) {
        digits = name.ptr[i] >= '0' && name.ptr[i] <= '9';
        idx = idx * 10 + (size_t)(name.ptr[i] - '0');
    }
    for (size_t i = 0; i < m->num_captures && i < LM_ROUTER_MAX_CAPTURES; i++) {
        bool hit = digits ? i == idx : lm_str_eq(m->capture_names[i], name);
        if (hit && m->captures[i].ptr) {
            *value = m->captures[i];
            return true;
        }
    }
    return false;
}

void lm_ctx_server_addr(lm_ctx_t *ctx, char *ip, size_t iplen, int *port)
{
    lm_conn_t *c = R(ctx)->c;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    *port = c->local_port;
    snprintf(ip, iplen, "0.0.0.0");
    if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&ss, ip, iplen);
    else if (ss.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&ss, ip, iplen);
}

uint64_t lm_ctx_connection_id(lm_ctx_t *ctx) { return (uint64_t)(uintptr_t)R(ctx)->c / sizeof(lm_conn_t); }
uint64_t lm_ctx_connection_requests(lm_ctx_t *ctx) { return R(ctx)->c->requests; }

void lm_ctx_limit_body(lm_ctx_t *ctx, uint64_t max_bytes, const char *message)
{
    R(ctx)->body_limit = max_bytes ? max_bytes : 1;
    R(ctx)->body_limit_msg = message;
}

/* ---- client address and trusted proxies ---------------------------------------- */

struct lm_cidr {
    int family;
    unsigned char addr[16];
    int bits;
};

int lm_trusted_parse(lm_server_t *srv, const char *list, char *err, size_t errlen)
{
    if (!list || !*list)
        return LM_OK;
    char *copy = strdup(list), *save = NULL;
    size_t cap = 8;
    srv->trusted = calloc(cap, sizeof(*srv->trusted));
    for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        struct lm_cidr c = { 0 };
        char *slash = strchr(t, '/');
        if (slash)
            *slash = '\0';
        if (inet_pton(AF_INET, t, c.addr) == 1) {
            c.family = AF_INET;
            c.bits = 32;
        } else if (inet_pton(AF_INET6, t, c.addr) == 1) {
            c.family = AF_INET6;
            c.bits = 128;
        } else {
            snprintf(err, errlen, "--trusted-ips: '%s' is not an IP address or CIDR", t);
            free(copy);
            return LM_ERROR;
        }
        if (slash) {
            char *end;
            long b = strtol(slash + 1, &end, 10);
            if (*end || b < 0 || b > c.bits) {
                snprintf(err, errlen, "--trusted-ips: bad prefix length in '%s/%s'", t, slash + 1);
                free(copy);
                return LM_ERROR;
            }
            c.bits = (int)b;
        }
        if (srv->num_trusted == cap) {
            cap *= 2;
            srv->trusted = realloc(srv->trusted, cap * sizeof(*srv->trusted));
        }
        srv->trusted[srv->num_trusted++] = c;
    }
    free(copy);
    return LM_OK;
}

void lm_trusted_free(lm_server_t *srv)
{
    free(srv->trusted);
    srv->trusted = NULL;
    srv->num_trusted = 0;
}

static bool lm__trusted(const lm_server_t *srv, const char *ip)
{
    unsigned char a[16];
    int fam;
    if (inet_pton(AF_INET, ip, a) == 1)
        fam = AF_INET;
    else if (inet_pton(AF_INET6, ip, a) == 1)
        fam = AF_INET6;
    else
        return false;
    for (size_t i = 0; i < srv->num_trusted; i++) {
        const struct lm_cidr *c = &srv->trusted[i];
        if (c->family != fam)
            continue;
        int full = c->bits / 8, rest = c->bits % 8;
        if (memcmp(a, c->addr, (size_t)full) != 0)
            continue;
        if (rest && ((a[full] ^ c->addr[full]) & (0xff << (8 - rest))))
            continue;
        return true;
    }
    return false;
}

const char *lm_ctx_client_ip(lm_ctx_t *ctx)
{
    lm_req_t *r = R(ctx);
    if (r->real_ip_done)
        return r->real_ip;
    r->real_ip_done = true;
    snprintf(r->real_ip, sizeof(r->real_ip), "%s", r->c->ip);
    lm_server_t *srv = r->w->srv;
    if (srv->num_trusted == 0 || !lm__trusted(srv, r->c->ip))
        return r->real_ip;
    const char *hname = srv->opts.real_ip_header ? srv->opts.real_ip_header : "X-Real-IP";
    lm_str_t v;
    if (!lm_ctx_header(ctx, lm_str(hname), &v))
        return r->real_ip;
    /* a list (X-Forwarded-For): the last address is the one our trusted peer saw */
    const char *end = v.ptr + v.len, *start = v.ptr;
    for (const char *p = end; p > v.ptr; p--) {
        if (p[-1] == ',') {
            start = p;
            break;
        }
    }
    while (start < end && (*start == ' ' || *start == '\t'))
        start++;
    while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    char ip[48];
    size_t n = (size_t)(end - start);
    unsigned char tmp[16];
    if (n > 0 && n < sizeof(ip)) {
        memcpy(ip, start, n);
        ip[n] = '\0';
        if (inet_pton(AF_INET, ip, tmp) == 1 || inet_pton(AF_INET6, ip, tmp) == 1)
            memcpy(r->real_ip, ip, n + 1);
    }
    return r->real_ip;
}

/* ---- consumers ------------------------------------------------------------------ */

static const lm_plugin_rt_t *lm__rt(lm_req_t *r)
{
    return &r->ws->snap->plugins;
}

const lm_consumer_t *lm_ctx_consumer(lm_ctx_t *ctx) { return R(ctx)->consumer; }
bool lm_ctx_is_anonymous(lm_ctx_t *ctx) { return R(ctx)->anonymous; }
const char *lm_ctx_credential_id(lm_ctx_t *ctx) { return R(ctx)->credential_id; }

const lm_credential_t *lm_ctx_find_credential(lm_ctx_t *ctx, const char *kind, lm_str_t value)
{
    const lm_plugin_rt_t *rt = lm__rt(R(ctx));
    int k = strcmp(kind, "keyauth_credentials") == 0     ? LM_CRED_KEYAUTH
            : strcmp(kind, "basicauth_credentials") == 0 ? LM_CRED_BASICAUTH
            : strcmp(kind, "jwt_secrets") == 0           ? LM_CRED_JWT
            : strcmp(kind, "hmacauth_credentials") == 0  ? LM_CRED_HMAC
                                                         : -1;
    if (k < 0 || value.len == 0)
        return NULL;
    return lm_map_get(&rt->creds[k], value);
}

const char *const *lm_ctx_consumer_groups(lm_ctx_t *ctx, const lm_consumer_t *c, size_t *n)
{
    const lm_plugin_rt_t *rt = lm__rt(R(ctx));
    if (!c) {
        *n = 0;
        return NULL;
    }
    *n = rt->num_groups[c->index];
    return rt->groups[c->index];
}

const lm_consumer_t *lm_ctx_find_consumer(lm_ctx_t *ctx, const char *id_or_username)
{
    if (!id_or_username)
        return NULL;
    return lm_map_get(&lm__rt(R(ctx))->consumers, lm_str(id_or_username));
}

/* the headers Kong's set_consumer manages, removed in one pass over the list */
static const lm_str_t lm__consumer_hdrs[] = {
    LM_STR("X-Consumer-ID"), LM_STR("X-Consumer-Custom-ID"), LM_STR("X-Consumer-Username"),
    LM_STR("X-Credential-Identifier"), LM_STR("X-Anonymous-Consumer"),
};

void lm_ctx_set_consumer(lm_ctx_t *ctx, const lm_consumer_t *c, const char *credential_id, bool anonymous)
{
    lm_req_t *r = R(ctx);
    r->consumer = c;
    r->credential_id = anonymous ? NULL : credential_id;
    r->anonymous = anonymous;
    for (size_t i = 0; i < r->num_hdrs; i++) {
        lm_http_header_t *h = &r->hdrs[i];
        if (h->flags & LM_HDR_F_DELETED || h->name.len < 13 || (h->name.ptr[0] | 0x20) != 'x')
            continue;
        for (size_t k = 0; k < LM_ARRAY_SIZE(lm__consumer_hdrs); k++)
            if (lm_str_ieq(h->name, lm__consumer_hdrs[k]))
                h->flags |= LM_HDR_F_DELETED;
    }
    /* names are literals and values live in the snapshot (or the request): no copies */
    const char *vals[] = { c ? c->id : NULL, c ? c->custom_id : NULL, c ? c->username : NULL, r->credential_id,
                           anonymous ? "true" : NULL };
    for (size_t k = 0; k < LM_ARRAY_SIZE(lm__consumer_hdrs); k++)
        if (vals[k])
            lm__hdr_append_as(r->arena, &r->hdrs, &r->num_hdrs, &r->hdrs_cap, lm__consumer_hdrs[k], lm_str(vals[k]),
                              false);
}

/* ---- responses ---------------------------------------------------------------------- */

int lm_ctx_exit_body(lm_ctx_t *ctx, int status, const char *content_type, const char *body, size_t body_len,
                     const char *extra_headers)
{
    lm_req_t *r = R(ctx);
    r->exited = true;
    r->exit_status = status;
    r->exit_ctype = content_type ? lm_arena_strdup(r->arena, content_type) : NULL;
    r->exit_body = body ? lm_arena_strndup(r->arena, body, body_len) : NULL;
    r->exit_body_len = body ? body_len : 0;
    r->exit_headers = extra_headers ? lm_arena_strdup(r->arena, extra_headers) : NULL;
    return LM_PLUGIN_DONE;
}

int lm_ctx_exit(lm_ctx_t *ctx, int status, const char *message, const char *extra_headers)
{
    lm_req_t *r = R(ctx);
    if (!message)
        return lm_ctx_exit_body(ctx, status, NULL, NULL, 0, extra_headers);
    size_t ml = strlen(message);
    char *esc = lm_arena_alloc(r->arena, ml * 6 + 1); /* \u00XX at most */
    lm_json_escape(esc, ml * 6 + 1, message, ml);
    char *body = lm_arena_sprintf(r->arena, "{\n  \"message\":\"%s\"\n}", esc);
    return lm_ctx_exit_body(ctx, status, "application/json; charset=utf-8", body, strlen(body), extra_headers);
}

/* ---- response head ---------------------------------------------------------------------- */

void lm_ctx_resp_init(lm_req_t *r, size_t cap)
{
    r->resp_hdrs_cap = cap + 8;
    r->resp_hdrs = lm_arena_alloc(r->arena, r->resp_hdrs_cap * sizeof(*r->resp_hdrs));
    r->num_resp_hdrs = 0;
}

void lm_ctx_resp_append(lm_req_t *r, lm_str_t name, lm_str_t value)
{
    if (r->num_resp_hdrs == r->resp_hdrs_cap) {
        lm__hdr_append(r->arena, &r->resp_hdrs, &r->num_resp_hdrs, &r->resp_hdrs_cap, name, value);
        return;
    }
    lm_http_header_t *h = &r->resp_hdrs[r->num_resp_hdrs++]; /* slices stay valid while the head is built */
    h->name = name;
    h->value = value;
    h->id = LM_HDR_OTHER;
    h->flags = 0;
}

bool lm_ctx_resp_header(lm_ctx_t *ctx, lm_str_t name, lm_str_t *value)
{
    return lm__hdr_find(R(ctx)->resp_hdrs, R(ctx)->num_resp_hdrs, name, value);
}

void lm_ctx_resp_set_header(lm_ctx_t *ctx, lm_str_t name, lm_str_t value)
{
    lm_req_t *r = R(ctx);
    lm__hdr_remove(r->resp_hdrs, r->num_resp_hdrs, name);
    lm__hdr_append(r->arena, &r->resp_hdrs, &r->num_resp_hdrs, &r->resp_hdrs_cap, name, value);
}

void lm_ctx_resp_add_header(lm_ctx_t *ctx, lm_str_t name, lm_str_t value)
{
    lm_req_t *r = R(ctx);
    lm__hdr_append(r->arena, &r->resp_hdrs, &r->num_resp_hdrs, &r->resp_hdrs_cap, name, value);
}

void lm_ctx_resp_remove_header(lm_ctx_t *ctx, lm_str_t name)
{
    lm__hdr_remove(R(ctx)->resp_hdrs, R(ctx)->num_resp_hdrs, name);
}

bool lm_ctx_resp_header_at(lm_ctx_t *ctx, size_t i, lm_str_t *name, lm_str_t *value)
{
    lm_req_t *r = R(ctx);
    size_t k = 0;
    for (size_t j = 0; j < r->num_resp_hdrs; j++) {
        if (r->resp_hdrs[j].flags & LM_HDR_F_DELETED)
            continue;
        if (k++ == i) {
            *name = r->resp_hdrs[j].name;
            *value = r->resp_hdrs[j].value;
            return true;
        }
    }
    return false;
}

void lm_ctx_resp_set_status(lm_ctx_t *ctx, int status)
{
    if (status >= 100 && status <= 999)
        R(ctx)->status = status;
}

/* ---- phases ---------------------------------------------------------------------------- */

static bool lm__proto_ok(const lm_plugin_inst_t *p)
{
    return (p->protocols & LM_PROTO_HTTP) != 0; /* TLS listeners come with the protocols work */
}

static void lm__ran_add(lm_req_t *r, const lm_plugin_inst_t *p, size_t cap)
{
    if (!r->ran)
        r->ran = lm_arena_alloc(r->arena, (cap + 1) * sizeof(*r->ran));
    r->ran[r->num_ran++] = p;
    if (p->ops->header_filter)
        r->filters = true;
}

int lm_ctx_run_rewrite(lm_req_t *r, const lm_plugin_chain_t *global)
{
    for (size_t i = 0; i < global->n; i++) {
        const lm_plugin_inst_t *p = global->list[i];
        if (!p->ops->rewrite || !lm__proto_ok(p))
            continue;
        int rc = p->ops->rewrite(CTX(r), p->conf);
        if (rc != LM_OK)
            return rc;
    }
    return LM_OK;
}

static int lm__access_one(lm_req_t *r, const lm_plugin_inst_t *p, size_t cap)
{
    if (!p || !lm__proto_ok(p))
        return LM_OK;
    lm__ran_add(r, p, cap);
    if (!p->ops->access)
        return LM_OK;
    return p->ops->access(CTX(r), p->conf);
}

/* After a plugin answered, the rest still take part in header_filter and
 * log (Kong goes on collecting them): cors adds its headers to a 403 from
 * bot-detection. */
static void lm__collect_rest(lm_req_t *r, const lm_plugin_inst_t *p, size_t cap)
{
    if (p && lm__proto_ok(p))
        lm__ran_add(r, p, cap);
}

int lm_ctx_run_access(lm_req_t *r)
{
    const lm_plugin_rt_t *rt = lm__rt(r);
    const lm_plugin_chain_t *ch = r->chain;
    int rc = LM_OK;
    if (!rt->has_consumer_scoped) {
        for (size_t i = 0; i < ch->n; i++) {
            if (rc == LM_OK)
                rc = lm__access_one(r, ch->list[i], ch->n);
            else
                lm__collect_rest(r, ch->list[i], ch->n);
        }
        return rc;
    }
    /* a consumer found by an auth plugin may select other instances of the
     * plugins that run after it (Kong's precedence) */
    const lm_route_t *route = r->rrt ? r->rrt->route : NULL;
    const lm_service_t *svc = r->srt ? r->srt->svc : NULL;
    for (uint32_t t = 0; t < rt->num_types; t++) {
        const lm_plugin_inst_t *p = r->consumer ? lm_plugin_rt_resolve(rt, t, route, svc, r->consumer)
                                                : ch->by_type[t];
        if (rc == LM_OK)
            rc = lm__access_one(r, p, rt->num_types);
        else
            lm__collect_rest(r, p, rt->num_types);
    }
    return rc;
}

void lm_ctx_run_header_filter(lm_req_t *r)
{
    for (size_t i = 0; i < r->num_ran; i++) {
        const lm_plugin_inst_t *p = r->ran[i];
        if (p->ops->header_filter)
            p->ops->header_filter(CTX(r), p->conf);
    }
}

void lm_ctx_run_log(lm_req_t *r)
{
    for (size_t i = 0; i < r->num_ran; i++) {
        const lm_plugin_inst_t *p = r->ran[i];
        if (p->ops->log)
            p->ops->log(CTX(r), p->conf);
    }
}

/* ---- per-request plugin data (Kong's kong.ctx.plugin) ------------------------------------- */

typedef struct lm__kv {
    struct lm__kv *next;
    const void *key;
    void *value;
} lm__kv_t;

void lm_ctx_set(lm_ctx_t *ctx, const void *key, void *value)
{
    lm_req_t *r = R(ctx);
    for (lm__kv_t *kv = r->kv; kv; kv = kv->next) {
        if (kv->key == key) {
            kv->value = value;
            return;
        }
    }
    lm__kv_t *kv = lm_arena_alloc(r->arena, sizeof(*kv));
    kv->key = key;
    kv->value = value;
    kv->next = r->kv;
    r->kv = kv;
}

void *lm_ctx_get(lm_ctx_t *ctx, const void *key)
{
    for (lm__kv_t *kv = R(ctx)->kv; kv; kv = kv->next)
        if (kv->key == key)
            return kv->value;
    return NULL;
}

/* ---- log phase ---------------------------------------------------------------------------- */

void lm_ctx_latencies(lm_ctx_t *ctx, lm_ctx_latencies_t *out)
{
    lm_req_t *r = R(ctx);
    uint64_t now = uv_now(&r->w->loop);
    out->request = (int64_t)(now - r->t_start);
    if (r->t_upstream_head && r->t_upstream_sent && !r->exited) {
        out->proxy = (int64_t)(r->t_upstream_head - r->t_upstream_sent);
        out->receive = (int64_t)(now - r->t_upstream_head);
        out->kong = (int64_t)(r->t_upstream_sent - r->t_start) + out->receive;
    } else {
        out->proxy = -1;
        out->receive = 0;
        out->kong = out->request;
    }
}

int64_t lm_ctx_started_at(lm_ctx_t *ctx)
{
    lm_req_t *r = R(ctx);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t wall = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    return wall - (int64_t)(uv_now(&r->w->loop) - r->t_start);
}

uint64_t lm_ctx_request_size(lm_ctx_t *ctx) { return R(ctx)->bytes_in; }
uint64_t lm_ctx_response_size(lm_ctx_t *ctx) { return R(ctx)->bytes_out; }
int lm_ctx_tries(lm_ctx_t *ctx) { return R(ctx)->peer ? R(ctx)->tries + 1 : 0; }
const char *lm_ctx_request_id(lm_ctx_t *ctx) { return lm__rid(R(ctx)); }

bool lm_ctx_upstream_addr(lm_ctx_t *ctx, char *ip, size_t iplen, int *port)
{
    const lm_peer_t *p = R(ctx)->peer;
    if (!p)
        return false;
    *port = 0;
    if (p->addr.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&p->addr;
        uv_ip4_name(a, ip, iplen);
        *port = ntohs(a->sin_port);
    } else if (p->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&p->addr;
        uv_ip6_name(a, ip, iplen);
        *port = ntohs(a->sin6_port);
    } else {
        return false;
    }
    return true;
}

lm_str_t lm_ctx_upstream_uri(lm_ctx_t *ctx)
{
    lm_req_t *r = R(ctx);
    if (!r->up_head || !r->up_head_len)
        return (lm_str_t){ NULL, 0 };
    /* "METHOD SP URI SP HTTP/1.1": the head is built once, in the request arena */
    const char *p = memchr(r->up_head, ' ', r->up_head_len);
    if (!p)
        return (lm_str_t){ NULL, 0 };
    p++;
    const char *end = memchr(p, ' ', r->up_head_len - (size_t)(p - r->up_head));
    return end ? (lm_str_t){ p, (size_t)(end - p) } : (lm_str_t){ NULL, 0 };
}

const char *lm_ctx_response_source(lm_ctx_t *ctx)
{
    lm_req_t *r = R(ctx);
    if (r->exited)
        return "exit";
    return r->t_upstream_head ? "service" : "error";
}

/* log_serialize.c - Kong's log record (kong.log.serialize, 3.x shape) for
 * the logging plugins; see lm_logq.h.
 *
 *   request   method, uri (path and query as received), url, querystring
 *             (decoded; a bare argument is true, a repeated one an array),
 *             headers (lower-case names; repeated: an array; authorization
 *             and proxy-authorization "REDACTED"), size, id
 *   response  status, headers (as sent after header_filter), size
 *   upstream_uri, upstream_status, tries [{ip, port, balancer_start, balancer_latency}]
 *   route, service, consumer   the entities' fields (null ones left out)
 *   authenticated_entity {id}  the credential, when an auth plugin set one
 *   latencies {request, kong, proxy, receive}, client_ip, started_at (ms),
 *   workspace, workspace_name ("default"), source (service / exit / error)
 */
#include "lm_logq.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static char lm__resp_key; /* lm_ctx_set key: the kept response headers */

typedef struct {
    size_t n;
    lm_str_t *names, *values;
} lm__kept_t;

int lm_log_keep_response_headers(lm_ctx_t *ctx, const void *conf)
{
    (void)conf;
    if (lm_ctx_get(ctx, &lm__resp_key))
        return LM_OK; /* another logging plugin kept them already */
    lm_str_t name, value;
    size_t n = 0;
    while (lm_ctx_resp_header_at(ctx, n, &name, &value))
        n++;
    lm_arena_t *a = lm_ctx_arena(ctx);
    lm__kept_t *k = lm_arena_calloc(a, sizeof(*k));
    k->names = lm_arena_alloc(a, (n + 1) * sizeof(lm_str_t));
    k->values = lm_arena_alloc(a, (n + 1) * sizeof(lm_str_t));
    for (size_t i = 0; i < n && lm_ctx_resp_header_at(ctx, i, &name, &value); i++) {
        k->names[i] = lm_arena_strdup_str(a, name);
        k->values[i] = lm_arena_strdup_str(a, value);
        k->n++;
    }
    lm_ctx_set(ctx, &lm__resp_key, k);
    return LM_OK;
}

/* ---- a JSON writer into an lm_buf_t (cJSON's number printing costs a
 * sprintf and an sscanf per number: this runs for every request) ---- */

static void lm__w(lm_buf_t *b, const char *s, size_t n)
{
    lm_buf_append(b, s, n);
}

#define LM__W(b, lit) lm__w(b, lit, sizeof(lit) - 1)

static void lm__wstr(lm_buf_t *b, const char *s, size_t n, bool lower)
{
    static const char hex[] = "0123456789abcdef";
    lm__w(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool up = lower && c >= 'A' && c <= 'Z';
        if (c >= 0x20 && c != '"' && c != '\\' && !up) {
            run++;
            continue;
        }
        if (run)
            lm__w(b, s + i - run, run);
        run = 0;
        if (up) {
            char l = (char)(c + 32);
            lm__w(b, &l, 1);
        } else if (c == '"' || c == '\\') {
            char e[2] = { '\\', (char)c };
            lm__w(b, e, 2);
        } else {
            char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            lm__w(b, e, 6);
        }
    }
    if (run)
        lm__w(b, s + n - run, run);
    lm__w(b, "\"", 1);
}

static void lm__wcstr(lm_buf_t *b, const char *s)
{
    lm__wstr(b, s, strlen(s), false);
}

static void lm__wint(lm_buf_t *b, int64_t v)
{
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
    do {
        tmp[sizeof(tmp) - 1 - n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        tmp[sizeof(tmp) - 1 - n++] = '-';
    lm__w(b, tmp + sizeof(tmp) - n, n);
}

/* ,"key": (comma unless first) */
static void lm__wkey(lm_buf_t *b, bool *first, const char *key)
{
    if (!*first)
        lm__w(b, ",", 1);
    *first = false;
    lm__wcstr(b, key);
    lm__w(b, ":", 1);
}

static void lm__wkstr(lm_buf_t *b, bool *first, const char *key, const char *v)
{
    if (!v)
        return;
    lm__wkey(b, first, key);
    lm__wcstr(b, v);
}

static void lm__wkint(lm_buf_t *b, bool *first, const char *key, int64_t v)
{
    lm__wkey(b, first, key);
    lm__wint(b, v);
}

static void lm__wkbool(lm_buf_t *b, bool *first, const char *key, bool v)
{
    lm__wkey(b, first, key);
    if (v)
        LM__W(b, "true");
    else
        LM__W(b, "false");
}

static void lm__wkstrs(lm_buf_t *b, bool *first, const char *key, char *const *v, size_t n, bool always)
{
    if (!n && !always)
        return;
    lm__wkey(b, first, key);
    lm__w(b, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            lm__w(b, ",", 1);
        lm__wcstr(b, v[i]);
    }
    lm__w(b, "]", 1);
}

/* name/value pairs as an object: lower-case names (when asked), a repeated
 * name becomes an array of its values in order; values NULL: true */
static void lm__wpairs(lm_buf_t *b, lm_arena_t *a, const lm_str_t *names, const lm_str_t *values, size_t n,
                       bool lower, bool redact)
{
    bool *done = n ? lm_arena_calloc(a, n) : NULL;
    lm__w(b, "{", 1);
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        if (done[i])
            continue;
        size_t count = 1;
        for (size_t j = i + 1; j < n; j++)
            if (lower ? lm_str_ieq(names[i], names[j]) : lm_str_eq(names[i], names[j]))
                count++;
        if (!first)
            lm__w(b, ",", 1);
        first = false;
        lm__wstr(b, names[i].ptr, names[i].len, lower);
        lm__w(b, ":", 1);
        bool secret = redact && (lm_str_ieq(names[i], LM_STR("authorization")) ||
                                 lm_str_ieq(names[i], LM_STR("proxy-authorization")));
        if (count > 1)
            lm__w(b, "[", 1);
        size_t k = 0;
        for (size_t j = i; j < n; j++) {
            if (j != i && !(lower ? lm_str_ieq(names[i], names[j]) : lm_str_eq(names[i], names[j])))
                continue;
            done[j] = true;
            if (k++)
                lm__w(b, ",", 1);
            if (secret)
                LM__W(b, "\"REDACTED\"");
            else if (values[j].ptr)
                lm__wstr(b, values[j].ptr, values[j].len, false);
            else
                LM__W(b, "true");
        }
        if (count > 1)
            lm__w(b, "]", 1);
    }
    lm__w(b, "}", 1);
}

static void lm__wquery(lm_buf_t *b, lm_arena_t *a, lm_str_t q)
{
    size_t cap = 1;
    for (size_t i = 0; q.ptr && i < q.len; i++)
        cap += q.ptr[i] == '&';
    lm_str_t *names = lm_arena_alloc(a, cap * sizeof(lm_str_t)), *values = lm_arena_alloc(a, cap * sizeof(lm_str_t));
    size_t n = 0, i = 0;
    while (q.ptr && i < q.len) {
        size_t end = i;
        while (end < q.len && q.ptr[end] != '&')
            end++;
        size_t eq = i;
        while (eq < end && q.ptr[eq] != '=')
            eq++;
        if (eq > i && n < cap) {
            char *k = lm_arena_alloc(a, eq - i + 1);
            names[n] = (lm_str_t){ k, lm_url_decode(k, q.ptr + i, eq - i, true) };
            if (eq < end) {
                char *v = lm_arena_alloc(a, end - eq);
                values[n] = (lm_str_t){ v, lm_url_decode(v, q.ptr + eq + 1, end - eq - 1, true) };
            } else {
                values[n] = (lm_str_t){ NULL, 0 };
            }
            n++;
        }
        i = end + 1;
    }
    lm__wpairs(b, a, names, values, n, false, false);
}

static char lm__ws[37];
static pthread_once_t lm__ws_once = PTHREAD_ONCE_INIT;
static void lm__ws_init(void) { lm_config_uuid("workspace:name:default", lm__ws); }

/* the one workspace's id: stable, like a Kong node's default workspace */
static const char *lm__ws_id(void)
{
    pthread_once(&lm__ws_once, lm__ws_init);
    return lm__ws;
}

static void lm__wservice(lm_buf_t *b, const lm_service_t *s, const char *ws)
{
    bool f = true;
    lm__w(b, "{", 1);
    lm__wkstr(b, &f, "id", s->id);
    lm__wkstr(b, &f, "name", s->name);
    lm__wkstr(b, &f, "host", s->host);
    lm__wkint(b, &f, "port", s->port);
    lm__wkstr(b, &f, "protocol", s->protocol);
    lm__wkstr(b, &f, "path", s->path);
    lm__wkint(b, &f, "retries", s->retries);
    lm__wkint(b, &f, "connect_timeout", s->connect_timeout);
    lm__wkint(b, &f, "write_timeout", s->write_timeout);
    lm__wkint(b, &f, "read_timeout", s->read_timeout);
    lm__wkbool(b, &f, "enabled", s->enabled);
    lm__wkstrs(b, &f, "tags", s->tags, s->num_tags, true);
    lm__wkstr(b, &f, "ws_id", ws);
    lm__w(b, "}", 1);
}

static void lm__wroute(lm_buf_t *b, const lm_route_t *r, const char *ws)
{
    bool f = true;
    lm__w(b, "{", 1);
    lm__wkstr(b, &f, "id", r->id);
    lm__wkstr(b, &f, "name", r->name);
    lm__wkstrs(b, &f, "protocols", r->protocols, r->num_protocols, true);
    lm__wkstrs(b, &f, "methods", r->methods, r->num_methods, false);
    lm__wkstrs(b, &f, "hosts", r->hosts, r->num_hosts, false);
    if (r->num_paths) {
        lm__wkey(b, &f, "paths");
        lm__w(b, "[", 1);
        for (size_t i = 0; i < r->num_paths; i++) {
            if (i)
                lm__w(b, ",", 1);
            if (r->path_is_regex && r->path_is_regex[i]) { /* as Kong 3.x shows them: with the "~" */
                lm__w(b, "\"~", 2);
                lm_buf_t tmp = { 0 };
                lm__wcstr(&tmp, r->paths[i]);
                lm__w(b, tmp.buf + 1, tmp.len - 1);
                lm_buf_free(&tmp);
            } else {
                lm__wcstr(b, r->paths[i]);
            }
        }
        lm__w(b, "]", 1);
    }
    lm__wkstrs(b, &f, "snis", r->snis, r->num_snis, false);
    lm__wkint(b, &f, "https_redirect_status_code", r->https_redirect_status_code);
    lm__wkint(b, &f, "regex_priority", r->regex_priority);
    lm__wkbool(b, &f, "strip_path", r->strip_path);
    lm__wkbool(b, &f, "preserve_host", r->preserve_host);
    lm__wkbool(b, &f, "request_buffering", r->request_buffering);
    lm__wkbool(b, &f, "response_buffering", r->response_buffering);
    lm__wkstr(b, &f, "path_handling", r->path_handling);
    lm__wkstrs(b, &f, "tags", r->tags, r->num_tags, true);
    if (r->service) {
        lm__wkey(b, &f, "service");
        LM__W(b, "{\"id\":");
        lm__wcstr(b, r->service->id);
        lm__w(b, "}", 1);
    }
    lm__wkstr(b, &f, "ws_id", ws);
    lm__w(b, "}", 1);
}

char *lm_log_serialize(lm_ctx_t *ctx, size_t *len)
{
    const char *ws = lm__ws_id();
    lm_arena_t *a = lm_ctx_arena(ctx);
    lm_buf_t b = { 0 };
    bool top = true, f;
    lm__w(&b, "{", 1);

    /* request */
    lm__wkey(&b, &top, "request");
    f = true;
    lm__w(&b, "{", 1);
    lm_str_t m = lm_ctx_method(ctx), path = lm_ctx_raw_path(ctx), q = lm_ctx_raw_query(ctx);
    lm__wkey(&b, &f, "method");
    lm__wstr(&b, m.ptr, m.len, false);
    size_t ulen = path.len + (q.ptr ? q.len + 1 : 0);
    char *uri = lm_arena_alloc(a, ulen + 1);
    memcpy(uri, path.ptr, path.len);
    if (q.ptr) {
        uri[path.len] = '?';
        memcpy(uri + path.len + 1, q.ptr, q.len);
    }
    uri[ulen] = '\0';
    lm__wkey(&b, &f, "uri");
    lm__wstr(&b, uri, ulen, false);
    lm_str_t host = lm_ctx_host(ctx);
    size_t hl = host.len;
    if (hl && host.ptr[hl - 1] != ']') { /* the Host header without its port (nginx's $host) */
        for (size_t i = hl; i > 0; i--) {
            if (host.ptr[i - 1] == ':') {
                hl = i - 1;
                break;
            }
            if (host.ptr[i - 1] == ']')
                break;
        }
    }
    char sip[64];
    int sport = 0;
    lm_ctx_server_addr(ctx, sip, sizeof(sip), &sport);
    lm_buf_t url = { 0 };
    lm_buf_printf(&url, "%s://", lm_ctx_scheme(ctx));
    if (hl) {
        size_t at = url.len;
        lm_buf_append(&url, host.ptr, hl);
        for (size_t i = at; i < url.len; i++)
            if (url.buf[i] >= 'A' && url.buf[i] <= 'Z')
                url.buf[i] = (char)(url.buf[i] + 32);
    } else {
        lm_buf_append(&url, sip, strlen(sip));
    }
    lm_buf_printf(&url, ":%d", sport);
    lm_buf_append(&url, uri, ulen);
    lm__wkey(&b, &f, "url");
    lm__wstr(&b, url.buf, url.len, false);
    lm_buf_free(&url);
    lm__wkey(&b, &f, "querystring");
    lm__wquery(&b, a, q);
    size_t nh = 0;
    lm_str_t name, value;
    while (lm_ctx_header_at(ctx, nh, &name, &value))
        nh++;
    lm_str_t *hn = lm_arena_alloc(a, (nh + 1) * sizeof(lm_str_t)), *hv = lm_arena_alloc(a, (nh + 1) * sizeof(lm_str_t));
    for (size_t i = 0; i < nh; i++)
        lm_ctx_header_at(ctx, i, &hn[i], &hv[i]);
    lm__wkey(&b, &f, "headers");
    lm__wpairs(&b, a, hn, hv, nh, true, true);
    lm__wkint(&b, &f, "size", (int64_t)lm_ctx_request_size(ctx));
    lm__wkstr(&b, &f, "id", lm_ctx_request_id(ctx));
    lm__w(&b, "}", 1);

    /* upstream */
    lm_str_t up = lm_ctx_upstream_uri(ctx);
    lm__wkey(&b, &top, "upstream_uri");
    lm__wstr(&b, up.ptr ? up.ptr : "", up.len, false);
    const char *source = lm_ctx_response_source(ctx);
    int status = lm_ctx_status(ctx);
    if (strcmp(source, "service") == 0) {
        lm__wkey(&b, &top, "upstream_status");
        lm__w(&b, "\"", 1);
        lm__wint(&b, status);
        lm__w(&b, "\"", 1);
    }

    /* response */
    lm__wkey(&b, &top, "response");
    f = true;
    lm__w(&b, "{", 1);
    lm__wkint(&b, &f, "status", status);
    lm__wkey(&b, &f, "headers");
    const lm__kept_t *k = lm_ctx_get(ctx, &lm__resp_key);
    if (k)
        lm__wpairs(&b, a, k->names, k->values, k->n, true, false);
    else
        LM__W(&b, "{}");
    lm__wkint(&b, &f, "size", (int64_t)lm_ctx_response_size(ctx));
    lm__w(&b, "}", 1);

    /* tries */
    lm__wkey(&b, &top, "tries");
    char ip[64];
    int port;
    if (lm_ctx_upstream_addr(ctx, ip, sizeof(ip), &port)) {
        f = true;
        lm__w(&b, "[{", 2);
        lm__wkstr(&b, &f, "ip", ip);
        lm__wkint(&b, &f, "port", port);
        lm__wkint(&b, &f, "balancer_start", lm_ctx_started_at(ctx));
        lm__wkint(&b, &f, "balancer_latency", 0);
        lm__w(&b, "}]", 2);
    } else {
        LM__W(&b, "[]");
    }

    /* entities */
    const lm_route_t *route = lm_ctx_route(ctx);
    const lm_service_t *svc = lm_ctx_service(ctx);
    const lm_consumer_t *c = lm_ctx_consumer(ctx);
    if (route) {
        lm__wkey(&b, &top, "route");
        lm__wroute(&b, route, ws);
    }
    if (svc) {
        lm__wkey(&b, &top, "service");
        lm__wservice(&b, svc, ws);
    }
    if (c) {
        lm__wkey(&b, &top, "consumer");
        f = true;
        lm__w(&b, "{", 1);
        lm__wkstr(&b, &f, "id", c->id);
        lm__wkstr(&b, &f, "username", c->username);
        lm__wkstr(&b, &f, "custom_id", c->custom_id);
        lm__wkstrs(&b, &f, "tags", c->tags, c->num_tags, true);
        lm__w(&b, "}", 1);
    }
    const char *cred = lm_ctx_credential_id(ctx);
    if (cred) {
        lm__wkey(&b, &top, "authenticated_entity");
        LM__W(&b, "{\"id\":");
        lm__wcstr(&b, cred);
        lm__w(&b, "}", 1);
    }

    lm_ctx_latencies_t lat;
    lm_ctx_latencies(ctx, &lat);
    lm__wkey(&b, &top, "latencies");
    f = true;
    lm__w(&b, "{", 1);
    lm__wkint(&b, &f, "request", lat.request);
    lm__wkint(&b, &f, "kong", lat.kong);
    lm__wkint(&b, &f, "proxy", lat.proxy);
    lm__wkint(&b, &f, "receive", lat.receive);
    lm__w(&b, "}", 1);

    lm__wkstr(&b, &top, "client_ip", lm_ctx_client_ip(ctx));
    lm__wkint(&b, &top, "started_at", lm_ctx_started_at(ctx));
    lm__wkstr(&b, &top, "workspace", ws);
    lm__wkstr(&b, &top, "workspace_name", "default");
    lm__wkstr(&b, &top, "source", source);

    lm__w(&b, "}", 1);
    *len = b.len;
    return b.buf;
}

int lm_log_check_unsupported(lm_plugin_cfg_ctx_t *cc, const cJSON *config)
{
    const cJSON *f = lm_schema_get(config, "custom_fields_by_lua");
    if (f && cJSON_IsObject(f) && f->child) {
        lm_plugin_error(cc, "custom_fields_by_lua", "Lua is not supported by this data plane: remove custom_fields_by_lua");
        return LM_ERROR;
    }
    return LM_OK;
}

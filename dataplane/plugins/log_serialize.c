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

/* adds name: value to obj; a second value makes an array */
static void lm__add_multi(cJSON *obj, const char *name, cJSON *v)
{
    cJSON *cur = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cur) {
        cJSON_AddItemToObject(obj, name, v);
        return;
    }
    if (!cJSON_IsArray(cur)) {
        cJSON *arr = cJSON_CreateArray();
        cJSON_DetachItemViaPointer(obj, cur);
        cJSON_AddItemToArray(arr, cur);
        cJSON_AddItemToObject(obj, name, arr);
        cur = arr;
    }
    cJSON_AddItemToArray(cur, v);
}

static char *lm__lower(lm_str_t s)
{
    char *o = malloc(s.len + 1);
    if (!o)
        abort();
    for (size_t i = 0; i < s.len; i++)
        o[i] = (char)((s.ptr[i] >= 'A' && s.ptr[i] <= 'Z') ? s.ptr[i] + 32 : s.ptr[i]);
    o[s.len] = '\0';
    return o;
}

static char *lm__dup(lm_str_t s)
{
    char *o = malloc(s.len + 1);
    if (!o)
        abort();
    memcpy(o, s.ptr, s.len);
    o[s.len] = '\0';
    return o;
}

static void lm__header(cJSON *obj, lm_str_t name, lm_str_t value, bool redact)
{
    char *n = lm__lower(name);
    bool secret = redact && (strcmp(n, "authorization") == 0 || strcmp(n, "proxy-authorization") == 0);
    char *v = lm__dup(value);
    lm__add_multi(obj, n, cJSON_CreateString(secret ? "REDACTED" : v));
    free(v);
    free(n);
}

static cJSON *lm__query(lm_str_t q)
{
    cJSON *o = cJSON_CreateObject();
    size_t i = 0;
    while (q.ptr && i < q.len) {
        size_t end = i;
        while (end < q.len && q.ptr[end] != '&')
            end++;
        size_t eq = i;
        while (eq < end && q.ptr[eq] != '=')
            eq++;
        if (eq > i) {
            char *k = malloc(eq - i + 1);
            if (!k)
                abort();
            k[lm_url_decode(k, q.ptr + i, eq - i, true)] = '\0';
            if (eq < end) {
                char *v = malloc(end - eq);
                if (!v)
                    abort();
                v[lm_url_decode(v, q.ptr + eq + 1, end - eq - 1, true)] = '\0';
                lm__add_multi(o, k, cJSON_CreateString(v));
                free(v);
            } else {
                lm__add_multi(o, k, cJSON_CreateTrue());
            }
            free(k);
        }
        i = end + 1;
    }
    return o;
}

static void lm__strs(cJSON *o, const char *name, char *const *v, size_t n, bool always)
{
    if (!n && !always)
        return;
    cJSON *a = cJSON_AddArrayToObject(o, name);
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
}

static void lm__str(cJSON *o, const char *name, const char *v)
{
    if (v)
        cJSON_AddStringToObject(o, name, v);
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

static cJSON *lm__service(const lm_service_t *s, const char *ws)
{
    cJSON *o = cJSON_CreateObject();
    lm__str(o, "id", s->id);
    lm__str(o, "name", s->name);
    lm__str(o, "host", s->host);
    cJSON_AddNumberToObject(o, "port", s->port);
    lm__str(o, "protocol", s->protocol);
    lm__str(o, "path", s->path);
    cJSON_AddNumberToObject(o, "retries", s->retries);
    cJSON_AddNumberToObject(o, "connect_timeout", s->connect_timeout);
    cJSON_AddNumberToObject(o, "write_timeout", s->write_timeout);
    cJSON_AddNumberToObject(o, "read_timeout", s->read_timeout);
    cJSON_AddBoolToObject(o, "enabled", s->enabled);
    lm__strs(o, "tags", s->tags, s->num_tags, true);
    cJSON_AddStringToObject(o, "ws_id", ws);
    return o;
}

static cJSON *lm__route(const lm_route_t *r, const char *ws)
{
    cJSON *o = cJSON_CreateObject();
    lm__str(o, "id", r->id);
    lm__str(o, "name", r->name);
    lm__strs(o, "protocols", r->protocols, r->num_protocols, true);
    lm__strs(o, "methods", r->methods, r->num_methods, false);
    lm__strs(o, "hosts", r->hosts, r->num_hosts, false);
    if (r->num_paths) {
        cJSON *a = cJSON_AddArrayToObject(o, "paths");
        for (size_t i = 0; i < r->num_paths; i++) {
            if (r->path_is_regex && r->path_is_regex[i]) {
                size_t n = strlen(r->paths[i]);
                char *p = malloc(n + 2);
                if (!p)
                    abort();
                p[0] = '~';
                memcpy(p + 1, r->paths[i], n + 1);
                cJSON_AddItemToArray(a, cJSON_CreateString(p));
                free(p);
            } else {
                cJSON_AddItemToArray(a, cJSON_CreateString(r->paths[i]));
            }
        }
    }
    lm__strs(o, "snis", r->snis, r->num_snis, false);
    cJSON_AddNumberToObject(o, "https_redirect_status_code", r->https_redirect_status_code);
    cJSON_AddNumberToObject(o, "regex_priority", r->regex_priority);
    cJSON_AddBoolToObject(o, "strip_path", r->strip_path);
    cJSON_AddBoolToObject(o, "preserve_host", r->preserve_host);
    cJSON_AddBoolToObject(o, "request_buffering", r->request_buffering);
    cJSON_AddBoolToObject(o, "response_buffering", r->response_buffering);
    lm__str(o, "path_handling", r->path_handling);
    lm__strs(o, "tags", r->tags, r->num_tags, true);
    if (r->service)
        cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "service"), "id", r->service->id);
    cJSON_AddStringToObject(o, "ws_id", ws);
    return o;
}

char *lm_log_serialize(lm_ctx_t *ctx, size_t *len)
{
    const char *ws = lm__ws_id();
    cJSON *rec = cJSON_CreateObject();

    /* request */
    cJSON *req = cJSON_AddObjectToObject(rec, "request");
    lm_str_t m = lm_ctx_method(ctx), path = lm_ctx_raw_path(ctx), q = lm_ctx_raw_query(ctx);
    char *ms = lm__dup(m);
    cJSON_AddStringToObject(req, "method", ms);
    free(ms);
    size_t ulen = path.len + (q.ptr ? q.len + 1 : 0);
    char *uri = malloc(ulen + 1);
    if (!uri)
        abort();
    memcpy(uri, path.ptr, path.len);
    if (q.ptr) {
        uri[path.len] = '?';
        memcpy(uri + path.len + 1, q.ptr, q.len);
    }
    uri[ulen] = '\0';
    cJSON_AddStringToObject(req, "uri", uri);
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
    char *h = lm__lower((lm_str_t){ host.ptr, hl });
    size_t urlcap = strlen(h) + ulen + 64;
    char *url = malloc(urlcap);
    if (!url)
        abort();
    snprintf(url, urlcap, "%s://%s:%d%s", lm_ctx_scheme(ctx), hl ? h : sip, sport, uri);
    cJSON_AddStringToObject(req, "url", url);
    free(url);
    free(h);
    free(uri);
    cJSON_AddItemToObject(req, "querystring", lm__query(q));
    cJSON *rh = cJSON_AddObjectToObject(req, "headers");
    lm_str_t name, value;
    for (size_t i = 0; lm_ctx_header_at(ctx, i, &name, &value); i++)
        lm__header(rh, name, value, true);
    cJSON_AddNumberToObject(req, "size", (double)lm_ctx_request_size(ctx));
    cJSON_AddStringToObject(req, "id", lm_ctx_request_id(ctx));

    /* upstream */
    lm_str_t up = lm_ctx_upstream_uri(ctx);
    char *ups = lm__dup(up.ptr ? up : LM_STR(""));
    cJSON_AddStringToObject(rec, "upstream_uri", ups);
    free(ups);
    const char *source = lm_ctx_response_source(ctx);
    if (strcmp(source, "service") == 0) {
        char st[16];
        snprintf(st, sizeof(st), "%d", lm_ctx_status(ctx));
        cJSON_AddStringToObject(rec, "upstream_status", st);
    }

    /* response */
    cJSON *resp = cJSON_AddObjectToObject(rec, "response");
    cJSON_AddNumberToObject(resp, "status", lm_ctx_status(ctx));
    cJSON *hh = cJSON_AddObjectToObject(resp, "headers");
    const lm__kept_t *k = lm_ctx_get(ctx, &lm__resp_key);
    for (size_t i = 0; k && i < k->n; i++)
        lm__header(hh, k->names[i], k->values[i], false);
    cJSON_AddNumberToObject(resp, "size", (double)lm_ctx_response_size(ctx));

    /* tries */
    cJSON *tries = cJSON_AddArrayToObject(rec, "tries");
    char ip[64];
    int port;
    if (lm_ctx_upstream_addr(ctx, ip, sizeof(ip), &port)) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "ip", ip);
        cJSON_AddNumberToObject(t, "port", port);
        cJSON_AddNumberToObject(t, "balancer_start", (double)lm_ctx_started_at(ctx));
        cJSON_AddNumberToObject(t, "balancer_latency", 0);
        cJSON_AddItemToArray(tries, t);
    }

    /* entities */
    const lm_route_t *route = lm_ctx_route(ctx);
    const lm_service_t *svc = lm_ctx_service(ctx);
    const lm_consumer_t *c = lm_ctx_consumer(ctx);
    if (route)
        cJSON_AddItemToObject(rec, "route", lm__route(route, ws));
    if (svc)
        cJSON_AddItemToObject(rec, "service", lm__service(svc, ws));
    if (c) {
        cJSON *co = cJSON_AddObjectToObject(rec, "consumer");
        lm__str(co, "id", c->id);
        lm__str(co, "username", c->username);
        lm__str(co, "custom_id", c->custom_id);
        lm__strs(co, "tags", c->tags, c->num_tags, true);
    }
    const char *cred = lm_ctx_credential_id(ctx);
    if (cred) {
        cJSON *ae = cJSON_AddObjectToObject(rec, "authenticated_entity");
        cJSON_AddStringToObject(ae, "id", cred);
    }

    lm_ctx_latencies_t lat;
    lm_ctx_latencies(ctx, &lat);
    cJSON *l = cJSON_AddObjectToObject(rec, "latencies");
    cJSON_AddNumberToObject(l, "request", (double)lat.request);
    cJSON_AddNumberToObject(l, "kong", (double)lat.kong);
    cJSON_AddNumberToObject(l, "proxy", (double)lat.proxy);
    cJSON_AddNumberToObject(l, "receive", (double)lat.receive);

    cJSON_AddStringToObject(rec, "client_ip", lm_ctx_client_ip(ctx));
    cJSON_AddNumberToObject(rec, "started_at", (double)lm_ctx_started_at(ctx));
    cJSON_AddStringToObject(rec, "workspace", ws);
    cJSON_AddStringToObject(rec, "workspace_name", "default");
    cJSON_AddStringToObject(rec, "source", source);

    char *out = cJSON_PrintUnformatted(rec);
    cJSON_Delete(rec);
    if (!out)
        abort();
    *len = strlen(out);
    return out;
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

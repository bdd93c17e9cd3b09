/*
 * admin.c - the admin API and the status listener: a small HTTP/1.1 server
 * on the control loop (one request per connection, answered with
 * "Connection: close"), reusing the proxy's strict parser.
 */
#include "lm_admin.h"
#include "lm_admin_api.h"
#include "lm_apply.h"
#include "lm_http1.h"
#include "lm_health.h"
#include "lm_log.h"
#include "lm_proxy.h"
#include "lm_plugins.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LM_ADMIN_MAX_BODY (256u << 20)
#define LM_ADMIN_TIMEOUT_MS 60000

enum { LM_L_ADMIN, LM_L_STATUS };

typedef struct lm_admin_listener {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
        uv_handle_t handle;
    } h;
    lm_server_t *srv;
    int kind;
    bool is_pipe, need_token, open;
} lm_admin_listener_t;

typedef struct lm_admin_conn {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
        uv_handle_t handle;
    } h;
    uv_timer_t timer;
    lm_admin_listener_t *l;
    struct lm_admin_conn *next, *prev;
    char *buf;
    size_t len, cap;
    size_t head_len;
    bool closing, busy, responded, head_only, sent_continue;
    int handles;
    uv_write_t wr;
    char *out;
} lm_admin_conn_t;

typedef struct {
    lm_admin_listener_t admin, status;
    lm_admin_conn_t *conns;
    const char *unix_path;
} lm_admin_t;

static lm_admin_t lm__admin;

/* ---------------------------------------------------------------- */

static void lm__aconn_free(uv_handle_t *h)
{
    lm_admin_conn_t *c = h->data;
    if (--c->handles > 0 || c->busy)
        return;
    free(c->buf);
    free(c->out);
    free(c);
}

static void lm__aconn_close(lm_admin_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->prev)
        c->prev->next = c->next;
    else
        lm__admin.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->timer, lm__aconn_free);
    uv_close(&c->h.handle, lm__aconn_free);
}

static void lm__aconn_written(uv_write_t *wr, int status)
{
    lm_admin_conn_t *c = wr->data;
    lm__aconn_close(c);
}

static const char *lm__status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

static void lm__respond(lm_admin_conn_t *c, int status, const char *ctype, const char *body, size_t len)
{
    if (c->closing || c->responded)
        return;
    c->responded = true;
    lm_buf_t b = { 0 };
    lm_buf_printf(&b, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n"
                      "Server: limen/" LM_VERSION "\r\n\r\n",
                  status, lm__status_text(status), ctype, status == 304 || status == 204 ? 0 : len);
    if (status != 304 && status != 204 && len && !c->head_only)
        lm_buf_append(&b, body, len);
    c->out = b.buf;
    uv_buf_t ub = uv_buf_init(b.buf, (unsigned)b.len);
    c->wr.data = c;
    if (uv_write(&c->wr, &c->h.stream, &ub, 1, lm__aconn_written) < 0)
        lm__aconn_close(c);
}

static void lm__respond_json(lm_admin_conn_t *c, int status, cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    lm__respond(c, status, "application/json; charset=utf-8", s ? s : "{}", s ? strlen(s) : 2);
    free(s);
    cJSON_Delete(j);
}

static void lm__respond_message(lm_admin_conn_t *c, int status, const char *msg)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "message", msg);
    lm__respond_json(c, status, j);
}

/* ---------------------------------------------------------------- */
/* handlers                                                          */

static long lm__rss_bytes(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

static void lm__handle_status(lm_admin_conn_t *c)
{
    lm_server_t *srv = c->l->srv;
    lm_server_counters_t *k = &lm_counters;
    cJSON *j = cJSON_CreateObject();
    cJSON *s = cJSON_AddObjectToObject(j, "server");
    long long active = (long long)atomic_load(&k->connections_active);
    cJSON_AddNumberToObject(s, "connections_active", (double)active);
    cJSON_AddNumberToObject(s, "connections_accepted", (double)atomic_load(&k->connections_accepted));
    cJSON_AddNumberToObject(s, "connections_handled", (double)atomic_load(&k->connections_accepted));
    cJSON_AddNumberToObject(s, "total_requests", (double)atomic_load(&k->requests_total));
    cJSON_AddStringToObject(j, "configuration_hash", srv->current ? srv->current->hash : "");
    cJSON_AddNumberToObject(j, "config_applied_at", srv->current ? (double)srv->current->applied_at_ms / 1000.0 : 0);
    cJSON_AddNumberToObject(j, "workers", srv->num_workers);
    cJSON *m = cJSON_AddObjectToObject(j, "memory");
    cJSON_AddNumberToObject(m, "rss_bytes", (double)lm__rss_bytes());
    cJSON_AddStringToObject(j, "version", LM_VERSION);
    lm__respond_json(c, 200, j);
}

static void lm__handle_metrics(lm_admin_conn_t *c)
{
    lm_server_t *srv = c->l->srv;
    lm_buf_t b = { 0 };
    lm_metrics_render(&b);
    lm_health_metrics_render(srv, &b); /* per upstream target (admin_upstreams.c) */
    if (lm_prometheus_render(&b) == LM_PROMETHEUS_UPSTREAM_HEALTH) /* the prometheus plugin's kong_* series */
        lm_health_target_health_render(srv, &b, "kong_upstream_target_health", ",subsystem=\"http\"");
    lm_logq_metrics_render(&b); /* the logging plugins' queues */
    if (srv->current) {
        lm_buf_printf(&b,
                      "# HELP limen_config_info The configuration being served.\n# TYPE limen_config_info gauge\n"
                      "limen_config_info{hash=\"%s\"} 1\n"
                      "# HELP limen_config_last_applied_timestamp_seconds When it was applied.\n"
                      "# TYPE limen_config_last_applied_timestamp_seconds gauge\n"
                      "limen_config_last_applied_timestamp_seconds %.3f\n",
                      srv->current->hash, (double)srv->current->applied_at_ms / 1000.0);
    }
    lm_buf_printf(&b, "# HELP limen_memory_rss_bytes Resident memory of the process.\n"
                      "# TYPE limen_memory_rss_bytes gauge\nlimen_memory_rss_bytes %ld\n",
                  lm__rss_bytes());
    lm__respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.buf ? b.buf : "", b.len);
    lm_buf_free(&b);
}

static void lm__apply_done(lm_apply_t *a, void *ctx)
{
    lm_admin_conn_t *c = ctx;
    c->busy = false;
    if (c->closing) {
        if (c->handles == 0) {
            free(c->buf);
            free(c->out);
            free(c);
        }
        return;
    }
    if (a->result != LM_OK) {
        lm__respond_json(c, 400, lm_config_errors_to_json(&a->errs));
        return;
    }
    if (a->unchanged) {
        lm__respond(c, 304, "application/json", "", 0);
        return;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "configuration_hash", a->hash);
    cJSON_AddNumberToObject(j, "parse_ms", a->parse_ms);
    cJSON_AddNumberToObject(j, "compile_ms", a->compile_ms);
    lm__respond_json(c, 201, j);
}

/* Decodes application/x-www-form-urlencoded field `name` into a new buffer. */
static char *lm__form_field(const char *body, size_t len, const char *name, size_t *out_len)
{
    size_t nl = strlen(name);
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && body[end] != '&')
            end++;
        if (end - i > nl && memcmp(body + i, name, nl) == 0 && body[i + nl] == '=') {
            char *out = malloc(end - i + 1);
            *out_len = lm_url_decode(out, body + i + nl + 1, end - i - nl - 1, true);
            return out;
        }
        i = end + 1;
    }
    return NULL;
}

/* True when [p, end) holds want (name="x") as a parameter of its own, not
 * inside another one such as filename="x". */
static bool lm__has_param(const char *p, const char *end, const char *want)
{
    size_t wl = strlen(want);
    for (const char *q = p; (q = memmem(q, (size_t)(end - q), want, wl)) != NULL; q++)
        if (q > p && (q[-1] == ' ' || q[-1] == ';' || q[-1] == '\t'))
            return true;
    return false;
}

/* Extracts the part named `name` of a multipart/form-data body. */
static char *lm__multipart_field(const char *body, size_t len, lm_str_t ctype, const char *name, size_t *out_len)
{
    const char *b = memmem(ctype.ptr, ctype.len, "boundary=", 9);
    if (!b)
        return NULL;
    b += 9;
    size_t bl = (size_t)(ctype.ptr + ctype.len - b);
    if (bl && b[0] == '"') {
        b++;
        const char *q = memchr(b, '"', (size_t)(ctype.ptr + ctype.len - b));
        bl = q ? (size_t)(q - b) : 0;
    } else {
        for (size_t i = 0; i < bl; i++)
            if (b[i] == ';' || b[i] == ' ') {
                bl = i;
                break;
            }
    }
    if (bl == 0 || bl > 200)
        return NULL;
    char delim[210];
    int dl = snprintf(delim, sizeof(delim), "--%.*s", (int)bl, b);
    char want[300];
    snprintf(want, sizeof(want), "name=\"%s\"", name);
    const char *p = body, *end = body + len;
    while ((p = memmem(p, (size_t)(end - p), delim, (size_t)dl)) != NULL) {
        p += dl;
        const char *hdr_end = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!hdr_end)
            return NULL;
        bool match = lm__has_param(p, hdr_end, want);
        const char *data = hdr_end + 4;
        char ndelim[214];
        int nl = snprintf(ndelim, sizeof(ndelim), "\r\n%s", delim);
        const char *next = memmem(data, (size_t)(end - data), ndelim, (size_t)nl);
        if (!next)
            return NULL;
        if (match) {
            size_t n = (size_t)(next - data);
            char *out = malloc(n + 1);
            memcpy(out, data, n);
            out[n] = '\0';
            *out_len = n;
            return out;
        }
        p = next;
    }
    return NULL;
}

/*
 * False only when the JSON text at p (which starts with '{') certainly has
 * no top-level key `key`: cJSON_ParseWithLength would then either fail or
 * give an object without it. A scan of the text instead of that parse (a
 * document of several MB costs tens of ms to parse on the control loop);
 * unsure (escapes or NUL in a key, unterminated text): true.
 */
static bool lm__maybe_top_key(const char *p, const char *end, const char *key)
{
    size_t klen = strlen(key);
    int depth = 0;
    bool expect_key = false;
    while (p < end) {
        char ch = *p;
        if (ch == '"') {
            const char *s = p + 1, *q = s;
            for (;;) { /* the closing quote: one not escaped by an odd run of backslashes */
                q = memchr(q, '"', (size_t)(end - q));
                if (!q)
                    return true;
                size_t bs = 0;
                while (q - bs > s && q[-1 - (ptrdiff_t)bs] == '\\')
                    bs++;
                if (!(bs & 1))
                    break;
                q++;
            }
            if (depth == 1 && expect_key) {
                size_t n = (size_t)(q - s);
                if (memchr(s, '\\', n) || memchr(s, '\0', n) || (n == klen && memcmp(s, key, klen) == 0))
                    return true;
            }
            expect_key = false;
            p = q + 1;
            continue;
        }
        if (ch == '{' || ch == '[') {
            depth++;
            expect_key = ch == '{' && depth == 1;
        } else if (ch == '}' || ch == ']') {
            if (--depth <= 0)
                return false; /* the end of the top-level value: cJSON ignores what follows */
            expect_key = false;
        } else if (ch == ',' && depth == 1) {
            expect_key = true;
        }
        p++;
    }
    return true;
}

static void lm__handle_post_config(lm_admin_conn_t *c, const lm_http1_request_t *h, char *body, size_t len)
{
    lm_server_t *srv = c->l->srv;
    if (srv->stopping) {
        lm__respond_message(c, 503, "shutting down");
        return;
    }
    bool check_hash = false;
    if (h->query.ptr) {
        const char *q = memmem(h->query.ptr, h->query.len, "check_hash=", 11);
        check_hash = q && q + 11 < h->query.ptr + h->query.len && (q[11] == '1' || q[11] == 't');
    }
    const lm_http_header_t *ct = lm_http1_find(h->headers, h->num_headers, LM_HDR_CONTENT_TYPE);
    lm_str_t ctype = ct ? ct->value : LM_STR_NULL;
    char *data = NULL;
    size_t dlen = 0;
    bool multipart = ctype.len >= 19 && strncasecmp(ctype.ptr, "multipart/form-data", 19) == 0;
    if (ctype.len >= 33 && strncasecmp(ctype.ptr, "application/x-www-form-urlencoded", 33) == 0)
        data = lm__form_field(body, len, "config", &dlen);
    else if (multipart)
        data = lm__multipart_field(body, len, ctype, "config", &dlen);
    if (!data && !multipart) {
        /* a raw document, or Kong's {"config": "<yaml or json text>"}; also a
         * "form" without a config= field: curl --data-binary @kong.yml labels
         * a raw document application/x-www-form-urlencoded */
        size_t i = 0;
        while (i < len && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t'))
            i++;
        if (i < len && body[i] == '{' && lm__maybe_top_key(body + i, body + len, "config")) {
            cJSON *j = cJSON_ParseWithLength(body, len);
            cJSON *cfg = j ? cJSON_GetObjectItemCaseSensitive(j, "config") : NULL;
            if (cfg && cJSON_IsString(cfg) && !cJSON_GetObjectItemCaseSensitive(j, "_format_version")) {
                dlen = strlen(cfg->valuestring);
                data = malloc(dlen + 1);
                memcpy(data, cfg->valuestring, dlen + 1);
            }
            cJSON_Delete(j);
        }
        if (!data) {
            data = malloc(len + 1);
            memcpy(data, body, len);
            data[len] = '\0';
            dlen = len;
        }
    }
    if (!data) {
        lm__respond_message(c, 400, "expected a declarative configuration in the 'config' field");
        return;
    }
    c->busy = true;
    lm_apply_start(srv, data, dlen, false, check_hash, lm__apply_done, c);
}

/* Compares without leaking where the first difference is. */
static bool lm__secret_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    unsigned char d = alen != blen;
    for (size_t i = 0; i < alen; i++)
        d |= (unsigned char)(a[i] ^ b[i % (blen ? blen : 1)]);
    return blen && d == 0;
}

static bool lm__token_ok(lm_admin_conn_t *c, const lm_http1_request_t *h)
{
    lm_server_t *srv = c->l->srv;
    if (!c->l->need_token)
        return true;
    const char *tok = srv->opts.admin_token;
    lm_str_t want = lm_str(tok);
    for (size_t i = 0; i < h->num_headers; i++) {
        const lm_http_header_t *hd = &h->headers[i];
        if (lm_str_ieq_cstr(hd->name, "Kong-Admin-Token") && lm__secret_eq(hd->value.ptr, hd->value.len, tok, want.len))
            return true;
        if (lm_str_ieq_cstr(hd->name, "Authorization") && hd->value.len > 7 &&
            strncasecmp(hd->value.ptr, "Bearer ", 7) == 0 &&
            lm__secret_eq(hd->value.ptr + 7, hd->value.len - 7, tok, want.len))
            return true;
    }
    return false;
}

/* The entity API answers now or after an apply; the connection may be gone. */
static void lm__api_reply(lm_admin_call_t *call, int status, cJSON *json)
{
    lm_admin_conn_t *c = call->conn;
    free(call);
    c->busy = false;
    if (c->closing) {
        cJSON_Delete(json);
        if (c->handles == 0) {
            free(c->buf);
            free(c->out);
            free(c);
        }
        return;
    }
    if (json)
        lm__respond_json(c, status, json);
    else
        lm__respond(c, status, "application/json; charset=utf-8", "", 0);
}

static void lm__dispatch(lm_admin_conn_t *c, const lm_http1_request_t *h, char *body, size_t len)
{
    lm_server_t *srv = c->l->srv;
    lm_str_t m = h->method, p = h->path;
    bool get = lm_str_eq(m, LM_STR("GET")) || lm_str_eq(m, LM_STR("HEAD"));
    c->head_only = lm_str_eq(m, LM_STR("HEAD"));
    if (c->l->kind == LM_L_STATUS) {
        if (get && lm_str_eq(p, LM_STR("/status")))
            lm__handle_status(c);
        else if (get && lm_str_eq(p, LM_STR("/metrics")))
            lm__handle_metrics(c);
        else
            lm__respond_message(c, 404, "Not found");
        return;
    }
    if (!lm__token_ok(c, h)) {
        lm__respond_message(c, 401, "Unauthorized");
        return;
    }
    if (lm_str_eq(p, LM_STR("/config"))) {
        if (lm_str_eq(m, LM_STR("POST"))) {
            lm__handle_post_config(c, h, body, len);
        } else if (get) {
            cJSON *j = cJSON_CreateObject();
            const char *doc = srv->current && srv->current->doc_json ? srv->current->doc_json : "";
            if (c->l->is_pipe && !strstr(doc, "\"certificates\"")) {
                cJSON_AddStringToObject(j, "config", doc); /* byte for byte: its hash is the config's */
            } else { /* the local socket (mode 0600) may see secrets, never private keys */
                cJSON *tree = cJSON_Parse(doc);
                char *red = NULL;
                if (tree) {
                    if (c->l->is_pipe)
                        lm_config_redact_private_keys(tree);
                    else
                        lm_config_redact(tree);
                    red = cJSON_PrintUnformatted(tree);
                    cJSON_Delete(tree);
                }
                cJSON_AddStringToObject(j, "config", red ? red : "");
                cJSON_free(red);
            }
            lm__respond_json(c, 200, j);
        } else {
            lm__respond_message(c, 405, "Method not allowed");
        }
        return;
    }
    if (get && lm_str_eq(p, LM_STR("/status"))) {
        lm__handle_status(c);
        return;
    }
    if (get && lm_str_eq(p, LM_STR("/metrics"))) {
        lm__handle_metrics(c);
        return;
    }
    if (get && lm_str_eq(p, LM_STR("/"))) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "tagline", "Welcome to limen");
        cJSON_AddStringToObject(j, "version", LM_VERSION);
        cJSON *conf = cJSON_AddObjectToObject(j, "configuration");
        cJSON_AddStringToObject(conf, "database", "off");
        cJSON_AddNumberToObject(conf, "workers", srv->num_workers);
        cJSON *pl = cJSON_AddArrayToObject(conf, "proxy_listeners");
        for (size_t i = 0; i < srv->opts.num_proxy_listen; i++)
            cJSON_AddItemToArray(pl, cJSON_CreateString(srv->opts.proxy_listen[i]));
        cJSON_AddStringToObject(j, "configuration_hash", srv->current ? srv->current->hash : "");
        lm_admin_api_root_info(srv, j);
        lm__respond_json(c, 200, j);
        return;
    }
    int ust;
    cJSON *ubody;
    if (get && lm_admin_upstreams(srv, p, h->query, &ust, &ubody) == LM_OK) { /* admin_upstreams.c */
        lm__respond_json(c, ust, ubody);
        return;
    }
    if ((lm_str_eq(m, LM_STR("POST")) || lm_str_eq(m, LM_STR("PUT"))) &&
        lm_admin_upstream_set_health(srv, p, &ust, &ubody) == LM_OK) { /* not a config change: also --managed */
        if (ubody)
            lm__respond_json(c, ust, ubody);
        else
            lm__respond(c, 204, "application/json; charset=utf-8", "", 0);
        return;
    }
    /* Kong's entity endpoints (admin_api.c) */
    lm_admin_call_t *call = calloc(1, sizeof(*call));
    if (!call)
        abort();
    const lm_http_header_t *ct = lm_http1_find(h->headers, h->num_headers, LM_HDR_CONTENT_TYPE);
    call->srv = srv;
    call->method = m;
    call->path = p;
    call->query = h->query;
    call->content_type = ct ? ct->value : LM_STR_NULL;
    call->body = body;
    call->body_len = len;
    call->trusted = c->l->is_pipe;
    call->reply = lm__api_reply;
    call->conn = c;
    c->busy = true;
    if (lm_admin_api_handle(call) == LM_OK)
        return;
    c->busy = false;
    free(call);
    if (!get) {
        lm__respond_message(c, 405, "Method not allowed");
        return;
    }
    lm__respond_message(c, 404, "Not found");
}

/* ---------------------------------------------------------------- */
/* connection I/O                                                    */

static void lm__continue_written(uv_write_t *wr, int status)
{
    free(wr);
}

static void lm__send_continue(lm_admin_conn_t *c, const lm_http1_request_t *h)
{
    static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (!h->expect_continue || c->sent_continue || c->closing || c->responded)
        return;
    c->sent_continue = true;
    uv_write_t *wr = malloc(sizeof(*wr));
    if (!wr)
        abort();
    uv_buf_t b = uv_buf_init((char *)msg, sizeof(msg) - 1);
    if (uv_write(wr, &c->h.stream, &b, 1, lm__continue_written) < 0)
        free(wr);
}

static void lm__aconn_try(lm_admin_conn_t *c)
{
    lm_http_header_t headers[100];
    lm_http1_request_t h;
    memset(&h, 0, sizeof(h));
    h.headers = headers;
    h.headers_cap = 100;
    lm_http1_limits_t lim = LM_HTTP1_DEFAULT_LIMITS;
    int rc = lm_http1_parse_request(c->buf, c->len, &lim, &h);
    if (rc == LM_AGAIN) {
        if (c->len >= lim.max_head)
            lm__respond_message(c, 431, "Request header too large");
        return;
    }
    if (rc < 0) {
        lm__respond_message(c, h.error_status ? h.error_status : 400, h.error_reason ? h.error_reason : "Bad request");
        return;
    }
    size_t head = (size_t)rc;
    char *body = c->buf + head;
    size_t blen = c->len - head;
    if (h.body_kind == LM_BODY_LENGTH) {
        if (h.content_length > LM_ADMIN_MAX_BODY) {
            lm__respond_message(c, 413, "Request body too large");
            return;
        }
        if (blen < h.content_length) {
            lm__send_continue(c, &h); /* curl waits a second for it otherwise */
            return;                   /* wait for the rest */
        }
        blen = (size_t)h.content_length;
    } else if (h.body_kind == LM_BODY_CHUNKED) {
        /* decode a copy each time: simple, and admin bodies are rare */
        char *tmp = malloc(blen + 1);
        memcpy(tmp, body, blen);
        lm_chunked_t d;
        memset(&d, 0, sizeof(d));
        size_t dl = blen, rest = 0;
        int crc = lm_chunked_decode(&d, tmp, &dl, &rest);
        if (crc == LM_AGAIN) {
            free(tmp);
            lm__send_continue(c, &h);
            if (blen > LM_ADMIN_MAX_BODY)
                lm__respond_message(c, 413, "Request body too large");
            return;
        }
        if (crc != LM_OK) {
            free(tmp);
            lm__respond_message(c, 400, "invalid chunked body");
            return;
        }
        memcpy(body, tmp, dl);
        free(tmp);
        blen = dl;
    } else {
        blen = 0;
    }
    uv_read_stop(&c->h.stream);
    uv_timer_stop(&c->timer);
    lm__dispatch(c, &h, body, blen);
}

static void lm__aconn_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *b)
{
    lm_admin_conn_t *c = hd->data;
    if (c->cap - c->len < 65536 && c->cap < LM_ADMIN_MAX_BODY + 65536) {
        size_t ncap = c->cap * 2;
        char *nb = realloc(c->buf, ncap);
        if (nb) {
            c->buf = nb;
            c->cap = ncap;
        }
    }
    b->base = c->buf + c->len;
    b->len = c->cap - c->len - 1;
}

static void lm__aconn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    lm_admin_conn_t *c = s->data;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        lm__aconn_close(c);
        return;
    }
    c->len += (size_t)nread;
    lm__aconn_try(c);
}

static void lm__aconn_timeout(uv_timer_t *t)
{
    lm__aconn_close(t->data);
}

static void lm__on_admin_conn(uv_stream_t *ls, int status)
{
    lm_admin_listener_t *l = ls->data;
    if (status < 0)
        return;
    lm_admin_conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    uv_loop_t *loop = l->srv->loop;
    if (l->is_pipe)
        uv_pipe_init(loop, &c->h.pipe, 0);
    else
        uv_tcp_init(loop, &c->h.tcp);
    c->h.handle.data = c;
    c->handles = 1;
    if (uv_accept(ls, &c->h.stream) != 0) {
        uv_close(&c->h.handle, lm__aconn_free);
        return;
    }
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->handles = 2;
    c->l = l;
    c->cap = 65536;
    c->buf = malloc(c->cap);
    if (!c->buf)
        abort();
    c->next = lm__admin.conns;
    if (lm__admin.conns)
        lm__admin.conns->prev = c;
    lm__admin.conns = c;
    uv_timer_start(&c->timer, lm__aconn_timeout, LM_ADMIN_TIMEOUT_MS, 0);
    uv_read_start(&c->h.stream, lm__aconn_alloc, lm__aconn_read);
}

static bool lm__is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)ss)->sin6_addr, &in6addr_loopback, sizeof(struct in6_addr)) == 0;
    return false;
}

/* True when something accepts connections on the unix socket at path. */
static bool lm__unix_in_use(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sa.sun_path))
        return false;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    bool live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return live;
}

static int lm__listen(lm_server_t *srv, lm_admin_listener_t *l, const char *addr, int kind, char *err, size_t errlen)
{
    l->srv = srv;
    l->kind = kind;
    l->h.handle.data = l;
    const char *what = kind == LM_L_ADMIN ? "admin" : "status";
    int rc;
    if (strncmp(addr, "unix:", 5) == 0) {
        const char *path = addr + 5;
        l->is_pipe = true;
        uv_pipe_init(srv->loop, &l->h.pipe, 0);
        l->open = true;
        if (lm__unix_in_use(path)) {
            snprintf(err, errlen, "%s listener %s: in use by another running process", what, addr);
            return LM_ERROR;
        }
        unlink(path); /* a stale socket from an earlier run */
        mode_t old = umask(0177); /* the socket is created 0600 */
        rc = uv_pipe_bind(&l->h.pipe, path);
        umask(old);
        if (rc == 0)
            chmod(path, 0600);
        if (kind == LM_L_ADMIN)
            lm__admin.unix_path = path;
    } else {
        struct sockaddr_storage ss;
        if (lm_parse_hostport(addr, &ss) != LM_OK) {
            snprintf(err, errlen, "%s listener: invalid address '%s'", what, addr);
            return LM_ERROR;
        }
        if (kind == LM_L_ADMIN) {
            if (!lm__is_loopback(&ss) && !srv->opts.admin_token) {
                snprintf(err, errlen,
                         "admin listener %s is not on loopback: set --admin-token (LIMEN_ADMIN_TOKEN) or use a unix socket",
                         addr);
                return LM_ERROR;
            }
            l->need_token = srv->opts.admin_token != NULL;
        }
        uv_tcp_init(srv->loop, &l->h.tcp);
        l->open = true;
        rc = uv_tcp_bind(&l->h.tcp, (struct sockaddr *)&ss, 0);
    }
    if (rc == 0)
        rc = uv_listen(&l->h.stream, 128, lm__on_admin_conn);
    if (rc != 0) {
        snprintf(err, errlen, "%s listener %s: %s", what, addr, uv_strerror(rc));
        return LM_ERROR;
    }
    lm_log_info("%s API listening on %s", what, addr);
    return LM_OK;
}

int lm_admin_start(lm_server_t *srv, char *err, size_t errlen)
{
    memset(&lm__admin, 0, sizeof(lm__admin));
    srv->admin = &lm__admin;
    if (srv->opts.admin_listen && strcmp(srv->opts.admin_listen, "off") != 0 &&
        lm__listen(srv, &lm__admin.admin, srv->opts.admin_listen, LM_L_ADMIN, err, errlen) != LM_OK) {
        lm_admin_stop(srv);
        return LM_ERROR;
    }
    if (srv->opts.status_listen && strcmp(srv->opts.status_listen, "off") != 0 &&
        lm__listen(srv, &lm__admin.status, srv->opts.status_listen, LM_L_STATUS, err, errlen) != LM_OK) {
        lm_admin_stop(srv);
        return LM_ERROR;
    }
    return LM_OK;
}

static void lm__listener_closed(uv_handle_t *h)
{
    (void)h;
}

void lm_admin_stop(lm_server_t *srv)
{
    (void)srv;
    lm_admin_listener_t *ls[2] = { &lm__admin.admin, &lm__admin.status };
    for (int i = 0; i < 2; i++) {
        if (ls[i]->open) {
            ls[i]->open = false;
            uv_close(&ls[i]->h.handle, lm__listener_closed);
        }
    }
    if (lm__admin.unix_path) {
        unlink(lm__admin.unix_path);
        lm__admin.unix_path = NULL;
    }
    for (lm_admin_conn_t *c = lm__admin.conns, *next; c; c = next) {
        next = c->next;
        if (!c->busy && !c->responded)
            lm__aconn_close(c);
    }
}

/*
 * http_log.c - the http-log plugin (Kong 3.x).
 *
 * config: http_endpoint (required; http or https URL, user:password@ becomes
 * Basic auth), method (POST; PUT, PATCH), content_type ("application/json";
 * "application/json; charset=utf-8"), timeout (10000 ms), keepalive (60000
 * ms), headers (map of extra request headers), queue (Kong 3.x queue:
 * max_batch_size 1, max_coalescing_delay 1 s, max_entries 10000, max_bytes,
 * max_retry_time 60 s, initial_retry_delay 0.01 s, max_retry_delay 60 s,
 * concurrency_limit 1), the deprecated retry_count / queue_size /
 * flush_timeout (queue_size and flush_timeout still set max_batch_size and
 * max_coalescing_delay, as in Kong 3.x), custom_fields_by_lua (refused).
 *
 * The log phase queues the record (lm_logq.h); the queue's thread sends a
 * batch as one request: the record itself when max_batch_size is 1, else a
 * JSON array of records. An answer below 400 is success; anything else
 * (status >= 400, connect or I/O error, timeout) retries the batch with
 * exponential backoff until max_retry_time, then drops it. The connection
 * is kept for `keepalive` ms; https is not verified (as in Kong).
 */
#include "lm_plugins.h"
#include "lm_logq.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

static const char *const lm__methods[] = { "POST", "PUT", "PATCH", NULL };
static const char *const lm__ctypes[] = { "application/json", "application/json; charset=utf-8", NULL };

typedef struct {
    lm_logq_t *q;
} lm__conf_t;

typedef struct {
    char *host, *path, *head_extra; /* head_extra: Host, Content-Type, auth and custom header lines */
    const char *method;
    int port, timeout;
    uint64_t keepalive;
    bool tls, array;
    lm_logq_conn_t conn;
} lm__sink_t;

typedef struct {
    bool tls;
    char host[256], path[2048], userinfo[512];
    int port;
} lm__url_t;

static const char *lm__parse_url(const char *u, lm__url_t *out)
{
    memset(out, 0, sizeof(*out));
    const char *p;
    if (strncasecmp(u, "http://", 7) == 0) {
        p = u + 7;
    } else if (strncasecmp(u, "https://", 8) == 0) {
        p = u + 8;
        out->tls = true;
    } else {
        return "unsupported scheme: the URL must start with http:// or https://";
    }
    out->port = out->tls ? 443 : 80;
    const char *end = p + strcspn(p, "/?#");
    const char *at = memchr(p, '@', (size_t)(end - p));
    if (at) {
        if ((size_t)(at - p) >= sizeof(out->userinfo))
            return "invalid URL";
        memcpy(out->userinfo, p, (size_t)(at - p));
        p = at + 1;
    }
    const char *hs = p, *he = end;
    if (*hs == '[') {
        const char *rb = memchr(hs, ']', (size_t)(end - hs));
        if (!rb)
            return "invalid URL";
        he = rb + 1;
    } else {
        const char *colon = memchr(hs, ':', (size_t)(end - hs));
        if (colon)
            he = colon;
    }
    if (he == hs || (size_t)(he - hs) >= sizeof(out->host))
        return "missing host in url";
    if (*hs == '[')
        memcpy(out->host, hs + 1, (size_t)(he - hs - 2));
    else
        memcpy(out->host, hs, (size_t)(he - hs));
    if (he < end && *he == ':') {
        char *e2;
        long port = strtol(he + 1, &e2, 10);
        if (e2 != end || port < 1 || port > 65535)
            return "invalid port in url";
        out->port = (int)port;
    }
    const char *rest = *end == '#' ? "" : end;
    size_t rl = strcspn(rest, "#");
    if (rl + 2 >= sizeof(out->path))
        return "URL too long";
    if (*rest != '/')
        out->path[0] = '/';
    strncat(out->path, rest, rl);
    return NULL;
}

static const char *lm__check_url(const cJSON *v)
{
    lm__url_t u;
    return lm__parse_url(v->valuestring, &u);
}

static const lm_schema_field_t lm__fields[] = {
    { .name = "http_endpoint", .type = LM_SF_STRING, .required = true, .check = lm__check_url },
    { .name = "method", .type = LM_SF_STRING, .required = true, .def = "\"POST\"", .one_of = lm__methods },
    { .name = "content_type", .type = LM_SF_STRING, .required = true, .def = "\"application/json\"", .one_of = lm__ctypes },
    { .name = "timeout", .type = LM_SF_NUMBER, .def = "10000" },
    { .name = "keepalive", .type = LM_SF_NUMBER, .def = "60000" },
    { .name = "retry_count", .type = LM_SF_INTEGER },
    { .name = "queue_size", .type = LM_SF_INTEGER },
    { .name = "flush_timeout", .type = LM_SF_NUMBER },
    { .name = "headers", .type = LM_SF_MAP, .elem = LM_SF_STRING },
    { .name = "queue", .type = LM_SF_RECORD, .required = true, .fields = lm_logq_queue_fields, .def = "{}" },
    { .name = "custom_fields_by_lua", .type = LM_SF_MAP, .elem = LM_SF_STRING },
    { 0 },
};

static void lm__queue_conf(const cJSON *config, lm_logq_conf_t *qc)
{
    lm_logq_conf_from(qc, lm_schema_get(config, "queue"));
    if (lm_schema_get(config, "queue_size") && lm_schema_num(config, "queue_size") >= 1)
        qc->max_batch_size = (size_t)lm_schema_num(config, "queue_size");
    if (lm_schema_get(config, "flush_timeout"))
        qc->max_coalescing_delay = lm_schema_num(config, "flush_timeout");
}

static void *lm__sink_new(const cJSON *config)
{
    lm__sink_t *s = calloc(1, sizeof(*s));
    lm__url_t u;
    if (!s || lm__parse_url(lm_schema_str(config, "http_endpoint"), &u))
        abort(); /* validated by the schema */
    s->host = strdup(u.host);
    s->path = strdup(u.path);
    s->port = u.port;
    s->tls = u.tls;
    const char *m = lm_schema_str(config, "method");
    s->method = strcmp(m, "PUT") == 0 ? "PUT" : strcmp(m, "PATCH") == 0 ? "PATCH" : "POST";
    s->timeout = (int)lm_schema_num(config, "timeout");
    s->keepalive = (uint64_t)lm_schema_num(config, "keepalive");
    lm_logq_conf_t qc;
    lm__queue_conf(config, &qc);
    s->array = qc.max_batch_size > 1;
    s->conn.fd = -1;
    lm_buf_t b = { 0 };
    bool v6 = strchr(u.host, ':') != NULL;
    if (u.port == (u.tls ? 443 : 80))
        lm_buf_printf(&b, "Host: %s%s%s\r\n", v6 ? "[" : "", u.host, v6 ? "]" : "");
    else
        lm_buf_printf(&b, "Host: %s%s%s:%d\r\n", v6 ? "[" : "", u.host, v6 ? "]" : "", u.port);
    lm_buf_printf(&b, "Content-Type: %s\r\nUser-Agent: limen-http-log\r\n", lm_schema_str(config, "content_type"));
    if (u.userinfo[0]) {
        char dec[512];
        size_t dl = lm_url_decode(dec, u.userinfo, strlen(u.userinfo), false);
        unsigned char enc[800];
        EVP_EncodeBlock(enc, (const unsigned char *)dec, (int)dl);
        lm_buf_printf(&b, "Authorization: Basic %s\r\n", enc);
    }
    const cJSON *h = lm_schema_get(config, "headers");
    for (const cJSON *it = h ? h->child : NULL; it; it = it->next)
        if (cJSON_IsString(it))
            lm_buf_printf(&b, "%s: %s\r\n", it->string, it->valuestring);
    s->head_extra = b.buf ? b.buf : strdup("");
    if (!s->host || !s->path || !s->head_extra)
        abort();
    return s;
}

static void lm__sink_free(void *p)
{
    lm__sink_t *s = p;
    lm_logq_conn_close(&s->conn);
    free(s->host);
    free(s->path);
    free(s->head_extra);
    free(s);
}

/* Reads the answer: its status, and whether the connection can be kept. */
static int lm__read_response(lm__sink_t *s, int *status, bool *keep)
{
    char buf[16384];
    size_t len = 0;
    char *hend = NULL;
    while (!hend) {
        if (len == sizeof(buf) - 1)
            return -1;
        long n = lm_logq_conn_read(&s->conn, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            return -1;
        len += (size_t)n;
        buf[len] = '\0';
        hend = strstr(buf, "\r\n\r\n");
    }
    if (sscanf(buf, "HTTP/1.%*d %d", status) != 1)
        return -1;
    *keep = strncmp(buf, "HTTP/1.1", 8) == 0;
    long long clen = -1;
    bool chunked = false;
    for (char *line = strstr(buf, "\r\n") + 2; line < hend; line = strstr(line, "\r\n") + 2) {
        if (strncasecmp(line, "content-length:", 15) == 0)
            clen = atoll(line + 15);
        else if (strncasecmp(line, "transfer-encoding:", 18) == 0 && strstr(line, "chunked") && strstr(line, "chunked") < strstr(line, "\r\n"))
            chunked = true;
        else if (strncasecmp(line, "connection:", 11) == 0 && strcasestr(line, "close") && strcasestr(line, "close") < strstr(line, "\r\n"))
            *keep = false;
    }
    size_t have = len - (size_t)(hend + 4 - buf);
    if (*status == 204 || *status == 304 || (*status >= 100 && *status < 200))
        return 0;
    if (clen >= 0) {
        long long left = clen - (long long)have;
        while (left > 0) {
            long n = lm_logq_conn_read(&s->conn, buf, sizeof(buf) < (size_t)left ? sizeof(buf) : (size_t)left);
            if (n <= 0)
                return -1;
            left -= n;
        }
        return 0;
    }
    if (chunked) { /* drain to the last chunk: the body is not used */
        char tail[8] = { 0 };
        size_t tl = have < 7 ? have : 7;
        memcpy(tail, hend + 4 + have - tl, tl);
        for (;;) {
            if (tl >= 5 && memcmp(tail + tl - 5, "0\r\n\r\n", 5) == 0)
                return 0;
            long n = lm_logq_conn_read(&s->conn, buf, sizeof(buf));
            if (n <= 0)
                return -1;
            size_t k = (size_t)n < 7 ? (size_t)n : 7;
            if (tl + k > 7) {
                size_t drop = tl + k - 7;
                memmove(tail, tail + drop, tl - drop);
                tl -= drop;
            }
            memcpy(tail + tl, buf + n - k, k);
            tl += k;
        }
    }
    *keep = false; /* until close */
    for (;;) {
        long n = lm_logq_conn_read(&s->conn, buf, sizeof(buf));
        if (n <= 0)
            return 0;
    }
}

static int lm__send(void *p, char *const *e, const size_t *lens, size_t n, char *err, size_t errlen)
{
    lm__sink_t *s = p;
    lm_buf_t body = { 0 };
    if (!s->array) {
        lm_buf_append(&body, e[0], lens[0]);
    } else {
        lm_buf_append(&body, "[", 1);
        for (size_t i = 0; i < n; i++) {
            if (i)
                lm_buf_append(&body, ",", 1);
            lm_buf_append(&body, e[i], lens[i]);
        }
        lm_buf_append(&body, "]", 1);
    }
    lm_buf_t head = { 0 };
    lm_buf_printf(&head, "%s %s HTTP/1.1\r\n", s->method, s->path);
    lm_buf_append(&head, s->head_extra, strlen(s->head_extra));
    lm_buf_printf(&head, "Content-Length: %zu\r\n\r\n", body.len);
    int rc = -1;
    for (int attempt = 0; attempt < 2 && rc != 0; attempt++) {
        bool reused = lm_logq_conn_alive(&s->conn, s->keepalive);
        if (!reused && lm_logq_conn_open(&s->conn, s->host, s->port, s->tls, s->host, s->timeout, err, errlen) != 0)
            break;
        int status = 0;
        bool keep = false;
        if (lm_logq_conn_write(&s->conn, head.buf, head.len) != 0 || lm_logq_conn_write(&s->conn, body.buf, body.len) != 0 ||
            lm__read_response(s, &status, &keep) != 0) {
            lm_logq_conn_close(&s->conn);
            snprintf(err, errlen, "request to %s:%d failed (connection error or timeout)", s->host, s->port);
            if (reused)
                continue; /* a kept connection the server had closed: once more on a new one */
            break;
        }
        if (!keep)
            lm_logq_conn_close(&s->conn);
        if (status >= 400) {
            snprintf(err, errlen, "request to %s:%d returned status code %d", s->host, s->port, status);
            break;
        }
        rc = 0;
    }
    lm_buf_free(&head);
    lm_buf_free(&body);
    return rc;
}

static const lm_logq_kind_t lm__kind = { "http-log", lm__send, lm__sink_new, lm__sink_free };

static int lm__configure(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out)
{
    if (lm_log_check_unsupported(cc, config) != LM_OK)
        return LM_ERROR;
    lm__conf_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    lm_logq_conf_t qc;
    lm__queue_conf(config, &qc);
    c->q = lm_logq_get(&lm__kind, config, &qc);
    *out = c;
    return LM_OK;
}

static void lm__log(lm_ctx_t *ctx, const void *conf)
{
    const lm__conf_t *c = conf;
    size_t n;
    char *rec = lm_log_serialize(ctx, &n);
    lm_logq_push(c->q, rec, n);
    cJSON_free(rec);
}

const lm_plugin_ops_t lm_plugin_http_log = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "http-log",
    .priority = 12,
    .schema = lm__fields,
    .configure = lm__configure,
    .header_filter = lm_log_keep_response_headers,
    .log = lm__log,
};

/* log_http.c - the blocking HTTP/1.1 client the http-log and opentelemetry
 * queues send with (see lm_logq.h): one kept connection, Basic auth from the
 * URL, extra headers, answers read whole (Content-Length, chunked or close). */
#include "lm_logq.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>

struct lm_logq_http {
    char *host, *path, *head_extra; /* head_extra: Host, Content-Type, auth and custom header lines */
    char method[8];
    int port, connect_timeout, send_timeout, read_timeout;
    uint64_t keepalive;
    bool tls;
    lm_logq_conn_t conn;
};

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

const char *lm_logq_http_check_url(const char *url)
{
    lm__url_t u;
    return lm__parse_url(url, &u);
}

lm_logq_http_t *lm_logq_http_new(const char *url, const char *method, const char *content_type, const cJSON *headers,
                                 int connect_timeout, int send_timeout, int read_timeout, uint64_t keepalive_ms)
{
    lm_logq_http_t *s = calloc(1, sizeof(*s));
    lm__url_t u;
    if (!s || lm__parse_url(url, &u))
        abort(); /* validated by the schema */
    s->host = strdup(u.host);
    s->path = strdup(u.path);
    s->port = u.port;
    s->tls = u.tls;
    snprintf(s->method, sizeof(s->method), "%s", method);
    s->connect_timeout = connect_timeout;
    s->send_timeout = send_timeout;
    s->read_timeout = read_timeout;
    s->keepalive = keepalive_ms;
    s->conn.fd = -1;
    lm_buf_t b = { 0 };
    bool v6 = strchr(u.host, ':') != NULL;
    if (u.port == (u.tls ? 443 : 80))
        lm_buf_printf(&b, "Host: %s%s%s\r\n", v6 ? "[" : "", u.host, v6 ? "]" : "");
    else
        lm_buf_printf(&b, "Host: %s%s%s:%d\r\n", v6 ? "[" : "", u.host, v6 ? "]" : "", u.port);
    lm_buf_printf(&b, "Content-Type: %s\r\nUser-Agent: limen/%s\r\n", content_type, LM_VERSION);
    if (u.userinfo[0]) {
        char dec[512];
        size_t dl = lm_url_decode(dec, u.userinfo, strlen(u.userinfo), false);
        unsigned char enc[800];
        EVP_EncodeBlock(enc, (const unsigned char *)dec, (int)dl);
        lm_buf_printf(&b, "Authorization: Basic %s\r\n", enc);
    }
    for (const cJSON *it = headers ? headers->child : NULL; it; it = it->next)
        if (cJSON_IsString(it))
            lm_buf_printf(&b, "%s: %s\r\n", it->string, it->valuestring);
    s->head_extra = b.buf ? b.buf : strdup("");
    if (!s->host || !s->path || !s->head_extra)
        abort();
    return s;
}

void lm_logq_http_free(lm_logq_http_t *s)
{
    if (!s)
        return;
    lm_logq_conn_close(&s->conn);
    free(s->host);
    free(s->path);
    free(s->head_extra);
    free(s);
}

/* Reads the answer: its status, and whether the connection can be kept. */
static int lm__read_response(lm_logq_http_t *s, int *status, bool *keep)
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

int lm_logq_http_send(lm_logq_http_t *s, const char *body, size_t len, char *err, size_t errlen)
{
    lm_buf_t head = { 0 };
    lm_buf_printf(&head, "%s %s HTTP/1.1\r\n", s->method, s->path);
    lm_buf_append(&head, s->head_extra, strlen(s->head_extra));
    lm_buf_printf(&head, "Content-Length: %zu\r\n\r\n", len);
    int rc = -1;
    for (int attempt = 0; attempt < 2 && rc != 0; attempt++) {
        bool reused = lm_logq_conn_alive(&s->conn, s->keepalive);
        if (!reused) {
            if (lm_logq_conn_open(&s->conn, s->host, s->port, s->tls, s->host, s->connect_timeout, err, errlen) != 0)
                break;
            lm_logq_conn_timeouts(&s->conn, s->send_timeout, s->read_timeout);
        }
        int status = 0;
        bool keep = false;
        if (lm_logq_conn_write(&s->conn, head.buf, head.len) != 0 || lm_logq_conn_write(&s->conn, body, len) != 0 ||
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
    return rc;
}

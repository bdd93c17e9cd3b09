/*
 * ctl_http.c - the controller's small HTTP/1.1 server (see lm_ctl_http.h).
 *
 * A connection owns one fixed buffer (a head, a tiny body and a little
 * room), parses the requests in it one at a time with lm_http1, and has at
 * most one response being written; reading stops while the buffer is full.
 * Every way out of a connection after a response goes through a lingering
 * close: shutdown(SHUT_WR), then read and drop what the client still sends
 * until it closes or LM__LINGER_MS pass. Closing with unread bytes in the
 * socket makes the kernel send a reset, and the client may lose the
 * response (a 431 answering a head it is still sending, for one).
 */
#include "lm_ctl_http.h"

#include "lm_http1.h"
#include "lm_log.h"
#include "lm_server.h" /* lm_parse_hostport */

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define LM__HEAD_MAX (16u << 10)
#define LM__BODY_MAX 1024u
#define LM__MAX_HEADERS 64
#define LM__BUF_CAP (LM__HEAD_MAX + LM__BODY_MAX + 512u)
#define LM__MAX_CONNS 256
#define LM__IDLE_MS 30000u
#define LM__LINGER_MS 2000u

typedef struct lm__conn lm__conn_t;

struct lm_ctl_http {
    uv_loop_t *loop;
    uv_tcp_t listener;
    lm_ctl_http_handler_fn handler;
    void *data;
    lm__conn_t *conns;
    size_t num_conns; /* open or closing */
    unsigned idle_ms;
    int port;
    bool listener_open, stopping;
};

struct lm__conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wr;
    uv_shutdown_t sd;
    lm_ctl_http_t *h;
    lm__conn_t *prev, *next;
    char *buf;
    size_t len;
    char *out_head, *out_body; /* the response being written */
    int handles;
    bool closing, reading, writing, eof;
    bool close_after; /* after the response being written: lingering close */
    bool lingering;   /* shut down: dropping input until EOF or the timer */
};

static void lm__process(lm__conn_t *c);

/* ---- connection lifetime ----------------------------------------------------- */

static void lm__maybe_free_server(lm_ctl_http_t *h)
{
    if (h->stopping && !h->listener_open && h->num_conns == 0)
        free(h);
}

static void lm__conn_closed(uv_handle_t *hd)
{
    lm__conn_t *c = hd->data;
    if (--c->handles > 0)
        return;
    lm_ctl_http_t *h = c->h;
    free(c->buf);
    free(c->out_head); /* set only if a write never called back */
    free(c->out_body);
    free(c);
    h->num_conns--;
    lm__maybe_free_server(h);
}

static void lm__conn_close(lm__conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    lm_ctl_http_t *h = c->h;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, lm__conn_closed);
    uv_close((uv_handle_t *)&c->tcp, lm__conn_closed);
}

static void lm__on_timer(uv_timer_t *t)
{
    lm__conn_close(t->data);
}

static void lm__alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *b)
{
    lm__conn_t *c = hd->data;
    if (c->lingering) { /* dropped: reuse the start of the buffer */
        *b = uv_buf_init(c->buf, LM__BUF_CAP);
        return;
    }
    *b = uv_buf_init(c->buf + c->len, (unsigned)(LM__BUF_CAP - c->len));
}

static void lm__on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    lm__conn_t *c = s->data;
    if (c->closing)
        return;
    if (nread < 0) {
        if (c->lingering || nread != UV_EOF) {
            lm__conn_close(c);
            return;
        }
        c->eof = true; /* answer what is complete, then close */
        c->reading = false;
        uv_read_stop(s);
        lm__process(c);
        return;
    }
    if (c->lingering || nread == 0)
        return;
    c->len += (size_t)nread;
    lm__process(c);
}

static void lm__read_start(lm__conn_t *c)
{
    if (c->reading || c->eof || c->closing)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, lm__alloc, lm__on_read) == 0)
        c->reading = true;
    else
        lm__conn_close(c);
}

static void lm__read_stop(lm__conn_t *c)
{
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

static void lm__on_shutdown(uv_shutdown_t *req, int status)
{
    lm__conn_t *c = req->data;
    if (c->closing)
        return;
    if (status < 0 || c->eof) {
        lm__conn_close(c);
        return;
    }
    c->lingering = true;
    uv_timer_start(&c->timer, lm__on_timer, LM__LINGER_MS, 0);
    lm__read_start(c);
}

/* The response is out (or none will come): shut down the write side and drop
 * input for a while before closing, so the client reads the response. */
static void lm__linger(lm__conn_t *c)
{
    lm__read_stop(c);
    c->sd.data = c;
    if (uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, lm__on_shutdown) != 0)
        lm__conn_close(c);
}

/* ---- responses -------------------------------------------------------------------- */

static const char *lm__reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return status < 400 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

static void lm__on_written(uv_write_t *wr, int status)
{
    lm__conn_t *c = wr->data;
    free(c->out_head);
    free(c->out_body);
    c->out_head = c->out_body = NULL;
    c->writing = false;
    if (c->closing)
        return;
    if (status < 0) {
        lm__conn_close(c);
        return;
    }
    if (c->close_after) {
        lm__linger(c);
        return;
    }
    uv_timer_start(&c->timer, lm__on_timer, c->h->idle_ms, 0); /* idle from now */
    lm__process(c); /* a pipelined request, or EOF */
}

/* Sends a response; takes body (malloc'd or NULL). keep: the connection
 * stays open after it. */
static void lm__respond(lm__conn_t *c, int status, const char *ctype, char *body, size_t len, bool head_only,
                        bool keep, bool http10)
{
    bool no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
    char *head = malloc(512);
    if (!head) {
        free(body);
        lm__conn_close(c);
        return;
    }
    int n;
    if (no_body)
        n = snprintf(head, 512, "HTTP/1.1 %d %s\r\n%s\r\n", status, lm__reason(status),
                     keep ? (http10 ? "Connection: keep-alive\r\n" : "") : "Connection: close\r\n");
    else
        n = snprintf(head, 512,
                     "HTTP/1.1 %d %s\r\nContent-Type: %.200s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n%s\r\n",
                     status, lm__reason(status), ctype, len,
                     keep ? (http10 ? "Connection: keep-alive\r\n" : "") : "Connection: close\r\n");
    if (no_body || head_only || len == 0) {
        free(body);
        body = NULL;
        len = 0;
    }
    uv_buf_t bufs[2] = { uv_buf_init(head, (unsigned)n), uv_buf_init(body, (unsigned)len) };
    c->out_head = head;
    c->out_body = body;
    c->writing = true;
    c->close_after = !keep;
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, bufs, body ? 2 : 1, lm__on_written) != 0) {
        free(c->out_head);
        free(c->out_body);
        c->out_head = c->out_body = NULL;
        c->writing = false;
        lm__conn_close(c);
    }
}

static void lm__respond_error(lm__conn_t *c, int status, const char *text)
{
    lm__read_stop(c);
    size_t n = strlen(text);
    char *body = malloc(n + 1);
    if (body)
        memcpy(body, text, n + 1);
    lm__respond(c, status, "text/plain; charset=utf-8", body, body ? n : 0, false, false, false);
}

/* ---- requests ---------------------------------------------------------------------- */

static char *lm__cstr(lm_str_t s)
{
    char *d = malloc(s.len + 1);
    if (d) {
        if (s.len)
            memcpy(d, s.ptr, s.len);
        d[s.len] = '\0';
    }
    return d;
}

static void lm__handle(lm__conn_t *c, const lm_http1_request_t *req)
{
    lm_ctl_http_t *h = c->h;
    char *method = lm__cstr(req->method), *path = lm__cstr(req->path.len ? req->path : LM_STR("/"));
    char *query = lm__cstr(req->query.ptr ? req->query : LM_STR(""));
    if (!method || !path || !query) {
        free(method);
        free(path);
        free(query);
        lm__conn_close(c);
        return;
    }
    char *body = NULL;
    size_t len = 0;
    const char *ctype = NULL;
    int status = h->handler(method, path, query, &body, &len, &ctype, h->data);
    if (c->closing) { /* the handler stopped the server */
        free(body);
        free(method);
        free(path);
        free(query);
        return;
    }
    if (status < 100 || status > 599) {
        lm_log_error("http: handler answered %d to %s %s", status, method, path);
        free(body);
        body = NULL;
        len = 0;
        status = 500;
    }
    if (!body)
        len = 0;
    bool head_only = strcmp(method, "HEAD") == 0;
    free(method);
    free(path);
    free(query);
    /* after the last request of the connection the client may still send:
     * a lingering close handles it */
    bool keep = req->keep_alive && !c->eof;
    lm__respond(c, status, ctype ? ctype : "text/plain; charset=utf-8", body, len, head_only, keep,
                req->minor_version == 0);
}

static void lm__process(lm__conn_t *c)
{
    while (!c->closing && !c->writing && !c->lingering && c->len > 0) {
        lm_http_header_t headers[LM__MAX_HEADERS];
        lm_http1_request_t req;
        memset(&req, 0, sizeof(req));
        req.headers = headers;
        req.headers_cap = LM__MAX_HEADERS;
        lm_http1_limits_t lim = { LM__HEAD_MAX, LM__HEAD_MAX, LM__MAX_HEADERS };
        int rc = lm_http1_parse_request(c->buf, c->len, &lim, &req);
        if (rc == LM_AGAIN) {
            if (c->len >= LM__HEAD_MAX) {
                lm__respond_error(c, 431, "request header fields too large\n");
                return;
            }
            break;
        }
        if (rc < 0) {
            int st = req.error_status ? req.error_status : 400;
            char text[160];
            snprintf(text, sizeof(text), "%s\n", req.error_reason ? req.error_reason : "bad request");
            lm__respond_error(c, st, text);
            return;
        }
        size_t total = (size_t)rc;
        if (req.body_kind == LM_BODY_CHUNKED ||
            (req.body_kind == LM_BODY_LENGTH && req.content_length > LM__BODY_MAX)) {
            lm__respond_error(c, 413, "request body too large\n");
            return;
        }
        if (req.body_kind == LM_BODY_LENGTH) {
            if (c->len - total < req.content_length)
                break; /* the rest of a tiny body */
            total += (size_t)req.content_length;
        }
        lm__handle(c, &req); /* req points into buf: consume after */
        memmove(c->buf, c->buf + total, c->len - total);
        c->len -= total;
    }
    if (c->closing || c->lingering)
        return;
    if (c->eof && !c->writing) {
        /* the client is done sending; what is left is an incomplete request */
        lm__conn_close(c);
        return;
    }
    if (c->len >= LM__BUF_CAP) /* full while a response is written: wait for it */
        lm__read_stop(c);
    else if (!c->writing || !c->close_after)
        lm__read_start(c);
}

/* ---- listener --------------------------------------------------------------------- */

static void lm__free_handle(uv_handle_t *hd)
{
    free(hd);
}

static void lm__on_conn(uv_stream_t *ls, int status)
{
    lm_ctl_http_t *h = ls->data;
    if (status < 0 || h->stopping)
        return;
    lm__conn_t *c = calloc(1, sizeof(*c));
    char *buf = c ? malloc(LM__BUF_CAP) : NULL;
    if (!c || !buf) {
        /* take the connection off the queue and drop it */
        free(c);
        free(buf);
        uv_tcp_t *tmp = malloc(sizeof(*tmp));
        if (tmp && uv_tcp_init(h->loop, tmp) == 0) {
            tmp->data = tmp;
            uv_accept(ls, (uv_stream_t *)tmp);
            uv_close((uv_handle_t *)tmp, lm__free_handle);
        } else {
            free(tmp);
        }
        return;
    }
    c->h = h;
    c->buf = buf;
    uv_tcp_init(h->loop, &c->tcp);
    uv_timer_init(h->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    h->num_conns++;
    c->next = h->conns;
    if (h->conns)
        h->conns->prev = c;
    h->conns = c;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
        lm__conn_close(c);
        return;
    }
    if (h->num_conns > LM__MAX_CONNS) {
        lm__conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_timer_start(&c->timer, lm__on_timer, h->idle_ms, 0);
    lm__read_start(c);
}

static void lm__listener_closed(uv_handle_t *hd)
{
    lm_ctl_http_t *h = hd->data;
    h->listener_open = false;
    lm__maybe_free_server(h);
}

/* A listening socket for addr; -errno or the fd. */
static int lm__bind(const char *addr, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    const char *colon = strrchr(addr, ':');
    bool all = colon && (colon == addr || (colon == addr + 1 && addr[0] == '*'));
    char buf[300];
    if (all) {
        /* every address: IPv6 with IPv4 mapped when the host has IPv6 */
        int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0)
            close(probe);
        snprintf(buf, sizeof(buf), "%s%s", probe >= 0 ? "[::]" : "0.0.0.0", colon);
        addr = buf;
    }
    if (!colon || colon[1] == '\0' || lm_parse_hostport(addr, &ss) != LM_OK) {
        snprintf(err, errlen, "invalid listen address '%s' (want HOST:PORT, :PORT or [V6]:PORT)", addr);
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "%s: socket: %s", addr, strerror(e));
        return -e;
    }
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, all ? &zero : &one, sizeof(int));
    socklen_t sl = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 128) != 0) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", addr, strerror(e));
        close(fd);
        return -e;
    }
    return fd;
}

lm_ctl_http_t *lm_ctl_http_start(uv_loop_t *loop, const char *listen_addr, lm_ctl_http_handler_fn handler,
                                 void *data, char *err, size_t errlen)
{
    char dummy[8];
    if (!err || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    if (!listen_addr || !handler) {
        snprintf(err, errlen, "no listen address or handler");
        return NULL;
    }
    int fd = lm__bind(listen_addr, err, errlen);
    if (fd < 0)
        return NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                : ((struct sockaddr_in *)&ss)->sin_port);
    lm_ctl_http_t *h = calloc(1, sizeof(*h));
    if (!h) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->loop = loop;
    h->handler = handler;
    h->data = data;
    h->idle_ms = LM__IDLE_MS;
    h->port = port;
    uv_tcp_init(loop, &h->listener);
    h->listener.data = h;
    h->listener_open = true;
    int rc = uv_tcp_open(&h->listener, fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&h->listener, 128, lm__on_conn);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", listen_addr, uv_strerror(rc));
        h->stopping = true;
        uv_close((uv_handle_t *)&h->listener, lm__listener_closed); /* frees h when the loop runs */
        return NULL;
    }
    lm_log_info("http: listening on %s (port %d)", listen_addr, port);
    return h;
}

void lm_ctl_http_stop(lm_ctl_http_t *h)
{
    if (!h || h->stopping)
        return;
    h->stopping = true;
    while (h->conns)
        lm__conn_close(h->conns);
    uv_close((uv_handle_t *)&h->listener, lm__listener_closed);
}

int lm_ctl_http_port(const lm_ctl_http_t *h)
{
    return h ? h->port : 0;
}

void lm_ctl_http_set_idle_timeout(lm_ctl_http_t *h, unsigned ms)
{
    h->idle_ms = ms ? ms : LM__IDLE_MS;
}

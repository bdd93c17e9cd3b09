/*
 * proxy_conn.c - client connections: accept, reading (plain TCP, or TLS
 * through lm_tls_t), HTTP/2 preface detection hand-off, lingering close,
 * timeouts, draining, and the stream connections HTTP/2 runs requests on
 * (lm_proxy_stream_*). What arrives goes to proxy.c's request path
 * (lm__conn_process, the body pumps, tunnels).
 */
#include "lm_proxy.h"
#include "proxy_int.h"
#include "lm_tls.h"
#include "lm_h2.h"
#include "lm_log.h"

#include <stdlib.h>
#include <string.h>

#define LM_MAX_CONN_BUF 65536
#define LM_LINGER_MS 2000

/* ------------------------------------------------------------------ */
/* connection lifecycle                                                */

static void lm__conn_handle_closed(uv_handle_t *h)
{
    lm_conn_t *c = h->data;
    if (--c->handles > 0)
        return;
    lm_worker_t *w = c->w;
    if (!c->parent) { /* stream connections are not on the worker's list */
        if (c->prev)
            c->prev->next = c->next;
        else
            w->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        w->num_conns--;
        atomic_fetch_sub_explicit(&lm_counters.connections_active, 1, memory_order_relaxed);
    }
    if (c->h2)
        lm_h2_free(c);
    lm_arena_destroy(c->arena);
    if (c->tls) {
        lm_tls_free(c->tls);
        free(c->tls);
    }
    free(c->buf);
    free(c);
    if (w->draining && w->num_conns == 0)
        uv_async_send(&w->async); /* let the worker finish */
}

void lm__req_detach(lm_req_t *r)
{
    if (r->finished)
        return;
    r->finished = true;
    if (r->up) {
        lm_upstream_abort(r->up);
        r->up = NULL;
    }
    lm__peer_release(r);
    if (r->ws) {
        lm_worker_snap_release(r->w, r->ws);
        r->ws = NULL;
    }
}

void lm__conn_close(lm_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->req)
        lm__req_detach(c->req); /* the arena (and the request) go with the connection */
    if (c->h2s)
        lm_h2_stream_detach(c, c->h2_complete);
    if (c->h2)
        lm_h2_close(c); /* its streams first */
    uv_close((uv_handle_t *)&c->timer, lm__conn_handle_closed);
    if (!c->parent)
        uv_close((uv_handle_t *)&c->tcp, lm__conn_handle_closed);
}

void lm__conn_timeout(uv_timer_t *t)
{
    lm_conn_t *c = t->data;
    if (c->req && !c->req->req_body_done && c->req->resp_head_sent == false && c->req->up == NULL) {
        lm__respond_error(c->req, 408, NULL);
        return;
    }
    lm__conn_close(c);
}

/* A full buffer grows (to LM_MAX_CONN_BUF) only while a head is being read. */
static void lm__conn_grow(lm_conn_t *c)
{
    if (c->len == c->cap && c->req == NULL && c->cap < LM_MAX_CONN_BUF) {
        size_t ncap = c->cap * 2;
        char *nb = realloc(c->buf, ncap);
        if (nb) {
            c->buf = nb;
            c->cap = ncap;
        }
    }
}

static void lm__conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    lm_conn_t *c = h->data;
    lm__conn_grow(c);
    b->base = c->buf + c->len;
    b->len = c->cap - c->len;
    if (b->len == 0)
        b->base = NULL;
}

/* TLS: ciphertext lands in the worker's scratch buffer and is fed to the
 * session at once; plaintext goes to c->buf (lm__conn_tls_drain). */
static void lm__tls_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    lm_conn_t *c = h->data;
    b->base = c->w->tls_in;
    b->len = sizeof(c->w->tls_in);
}

static void lm__linger_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    lm_conn_t *c = s->data;
    if (nread < 0 || nread == UV_ENOBUFS)
        lm__conn_close(c);
    else
        c->len = 0; /* discard */
}

static void lm__shutdown_done(uv_shutdown_t *req, int status)
{
    free(req);
}

/* Half-close, then discard what the client still sends for a while, so the
 * response is not destroyed by a reset (unread data at close sends RST). */
void lm__conn_linger(lm_conn_t *c)
{
    if (c->closing)
        return;
    if (c->parent) { /* a stream: its end (or reset) is all there is */
        lm__conn_close(c);
        return;
    }
    if (c->tls) { /* close_notify first */
        lm_tls_shutdown(c->tls);
        lm_tls_flush(c->tls, c->w, (uv_stream_t *)&c->tcp);
    }
    uv_shutdown_t *sd = malloc(sizeof(*sd));
    if (!sd || uv_shutdown(sd, (uv_stream_t *)&c->tcp, lm__shutdown_done) < 0) {
        free(sd);
        lm__conn_close(c);
        return;
    }
    c->len = 0;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = true;
    uv_read_start((uv_stream_t *)&c->tcp, c->tls ? lm__tls_alloc : lm__conn_alloc, lm__linger_read);
    uv_timer_start(&c->timer, lm__conn_timeout, LM_LINGER_MS, 0);
    c->want_close = true;
}

static void lm__conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);
static void lm__conn_read_tls(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);
static void lm__tls_drain_task(lm_defer_t *d);

static void lm__conn_tls_queue(lm_conn_t *c)
{
    if (!c->tls_queued && !c->closing) {
        c->tls_queued = true;
        c->tls_drain.fn = lm__tls_drain_task;
        lm_worker_defer_task(c->w, &c->tls_drain);
    }
}

void lm__conn_read_start(lm_conn_t *c)
{
    if (!c->reading && !c->closing) {
        c->reading = true;
        if (c->h2s) {
            lm_h2_stream_read_start(c);
        } else if (c->tls) {
            uv_read_start((uv_stream_t *)&c->tcp, lm__tls_alloc, lm__conn_read_tls);
            if (lm_tls_pending(c->tls)) /* decrypted or buffered bytes no socket event will announce */
                lm__conn_tls_queue(c);
        } else {
            uv_read_start((uv_stream_t *)&c->tcp, lm__conn_alloc, lm__conn_read);
        }
    }
}

void lm__conn_read_stop(lm_conn_t *c)
{
    if (c->reading) {
        c->reading = false;
        if (!c->parent)
            uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

static void lm__conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    lm_conn_t *c = s->data;
    if (nread == 0 || c->closing)
        return;
    if (nread == UV_ENOBUFS) {
        lm__conn_read_stop(c);
        return;
    }
    lm__conn_input(c, nread);
}

/* Decrypts what fits into c->buf and hands it on. */
static void lm__conn_tls_drain(lm_conn_t *c)
{
    if (c->closing)
        return;
    lm__conn_grow(c);
    if (c->len == c->cap) { /* full: lm__conn_read_start resumes */
        lm__conn_read_stop(c);
        return;
    }
    ssize_t n = lm_tls_read(c->tls, c->buf + c->len, c->cap - c->len);
    if (lm_tls_flush(c->tls, c->w, (uv_stream_t *)&c->tcp) != LM_OK) {
        lm__conn_close(c);
        return;
    }
    if (n == LM_AGAIN)
        return;
    if (n == LM_ERROR) {
        char why[160];
        lm_log_debug("client %s: TLS: %s", c->ip, lm_tls_error(c->tls, why, sizeof(why)));
        lm__conn_close(c);
        return;
    }
    lm__conn_input(c, n == 0 ? UV_EOF : n);
    if (c->reading && lm_tls_pending(c->tls))
        lm__conn_tls_queue(c);
}

static void lm__tls_drain_task(lm_defer_t *d)
{
    lm_conn_t *c = lm_container_of(d, lm_conn_t, tls_drain);
    c->tls_queued = false;
    if (c->reading)
        lm__conn_tls_drain(c);
}

static void lm__conn_read_tls(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    lm_conn_t *c = s->data;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        lm__conn_input(c, nread);
        return;
    }
    if (!c->tls_started && b->base[0] != 0x16) {
        /* not a TLS handshake record: nginx's answer to plain HTTP on an HTTPS port */
        c->tls_started = true;
        static const char resp[] = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                   "Content-Length: 46\r\nConnection: close\r\n\r\n"
                                   "The plain HTTP request was sent to HTTPS port\n";
        uv_buf_t out = uv_buf_init((char *)resp, sizeof(resp) - 1);
        uv_try_write((uv_stream_t *)&c->tcp, &out, 1);
        lm__conn_linger(c);
        return;
    }
    c->tls_started = true;
    lm_tls_feed(c->tls, b->base, (size_t)nread);
    lm__conn_tls_drain(c);
}

/* nread plaintext bytes were appended to c->buf (or nread < 0: the end). */
void lm__conn_input(lm_conn_t *c, ssize_t nread)
{
    if (c->h2) {
        if (nread < 0) {
            lm__conn_close(c);
            return;
        }
        c->len += (size_t)nread;
        lm_h2_input(c);
        return;
    }
    lm_req_t *r = c->req;
    if (nread < 0 && r && LM__EXT(r)->tunnel) {
        lm__tunnel_end(r);
        return;
    }
    if (nread < 0) {
        if (r && r->req_body_done && !r->finished) {
            /* half-close after a complete request: answer it, then close */
            c->want_close = true;
            lm__conn_read_stop(c);
            return;
        }
        lm__conn_close(c);
        return;
    }
    c->len += (size_t)nread;
    if (r && LM__EXT(r)->tunnel) {
        r->bytes_in += (size_t)nread;
        lm__tunnel_up(r);
        return;
    }
    if (r) {
        r->bytes_in += (size_t)nread;
        if (!r->req_body_done) {
            if (LM__EXT(r)->body_state == LM__BODY_READING)
                lm__body_feed(r);
            else
                lm__req_body_pump(r);
        }
        return;
    }
    lm__conn_process(c);
}

void lm_proxy_on_connection(uv_stream_t *listener, int status)
{
    lm_worker_t *w = listener->data;
    if (status < 0 || w->draining)
        return;
    lm_conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    uv_tcp_init(&w->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
        return;
    }
    uv_timer_init(&w->loop, &c->timer);
    c->timer.data = c;
    c->handles = 2;
    c->w = w;
    c->buf = malloc(LM_CONN_BUF);
    c->cap = LM_CONN_BUF;
    c->arena = lm_arena_create(8192);
    if (!c->buf)
        abort();
    size_t li = (size_t)((uv_tcp_t *)listener - w->listeners);
    c->http2_ok = li < LM_MAX_LISTEN && w->srv->listen_http2[li];
    if (li < LM_MAX_LISTEN && w->srv->listen_ssl[li]) {
        c->tls = malloc(sizeof(*c->tls));
        if (!c->tls || lm_tls_accept(c->tls, w) != LM_OK)
            abort();
        c->tls->h2_ok = c->http2_ok;
    }
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->num_conns++;
    atomic_fetch_add_explicit(&lm_counters.connections_accepted, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&lm_counters.connections_active, 1, memory_order_relaxed);

    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&ss;
            uv_ip4_name(in, c->ip, sizeof(c->ip));
            c->port = ntohs(in->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(in6, c->ip, sizeof(c->ip));
            c->port = ntohs(in6->sin6_port);
        }
    }
    len = sizeof(ss);
    if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
        c->local_port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                      : ((struct sockaddr_in6 *)&ss)->sin6_port);
    uv_tcp_nodelay(&c->tcp, 1);
    uv_timer_start(&c->timer, lm__conn_timeout, LM_CLIENT_HEADER_TIMEOUT_MS, 0);
    lm__conn_read_start(c);
}

/* ------------------------------------------------------------------ */
/* draining                                                            */

void lm_proxy_close_idle(lm_worker_t *w)
{
    for (lm_conn_t *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->h2)
            lm_h2_shutdown(c); /* GOAWAY; closes when its streams are done */
        else if (c->req == NULL)
            lm__conn_close(c);
        else
            c->want_close = true;
    }
}

void lm_proxy_close_all(lm_worker_t *w)
{
    for (lm_conn_t *c = w->conns, *next; c; c = next) {
        next = c->next;
        lm__conn_close(c);
    }
}

/* ------------------------------------------------------------------ */
/* for h2.c                                                            */

int lm_proxy_conn_write(lm_conn_t *c, uv_write_t *req, lm_defer_t *d, uv_buf_t *bufs, unsigned n, uv_write_cb cb)
{
    int rc = c->tls ? lm_tls_write(c->tls, c->w, (uv_stream_t *)&c->tcp, req, bufs, n, cb)
                    : lm_stream_write(c->w, (uv_stream_t *)&c->tcp, req, d, bufs, n, cb);
    return rc < 0 ? LM_ERROR : LM_OK;
}

void lm_proxy_conn_close(lm_conn_t *c)
{
    lm__conn_close(c);
}

void lm_proxy_conn_idle(lm_conn_t *c)
{
    if (!c->closing)
        uv_timer_start(&c->timer, lm__conn_timeout, LM_CLIENT_KEEPALIVE_TIMEOUT_MS, 0);
}

lm_conn_t *lm_proxy_stream_open(lm_conn_t *parent, struct lm_h2_stream *st, size_t head_len)
{
    lm_worker_t *w = parent->w;
    lm_conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->w = w;
    c->parent = parent;
    c->h2s = st;
    c->cap = LM_MAX(head_len, (size_t)LM_CONN_BUF);
    c->buf = malloc(c->cap);
    c->arena = lm_arena_create(8192);
    if (!c->buf)
        abort();
    uv_timer_init(&w->loop, &c->timer);
    c->timer.data = c;
    c->handles = 1;
    memcpy(c->ip, parent->ip, sizeof(c->ip));
    c->port = parent->port;
    c->local_port = parent->local_port;
    c->want_close = true; /* one request per stream */
    c->reading = true;
    return c;
}

void lm_proxy_stream_input(lm_conn_t *sc, size_t n)
{
    if (!sc->closing)
        lm__conn_input(sc, (ssize_t)n);
}

void lm_proxy_stream_abort(lm_conn_t *sc)
{
    lm__conn_close(sc);
}

void lm_proxy_stream_eof(lm_conn_t *sc)
{
    if (!sc->closing)
        lm__conn_input(sc, UV_EOF);
}

void lm_proxy_stream_read_stop(lm_conn_t *sc)
{
    lm__conn_read_stop(sc);
}

/*
 * upstream.c - connections to upstream peers and the per-worker keep-alive
 * pool. A connection is owned by one request while busy and by the pool
 * while idle; idle connections keep reading so that a peer's close (or any
 * unexpected byte) retires them at once.
 */
#include "lm_proxy.h"
#include "lm_log.h"
#include "lm_tls.h"
#include "lm_uh2.h"

#include <stdlib.h>
#include <string.h>

static void lm__up_close(lm_upconn_t *u);
static void lm__tls_name(lm_req_t *r, char *out, size_t cap);

static void lm__up_handle_closed(uv_handle_t *h)
{
    lm_upconn_t *u = h->data;
    if (--u->handles == 0) {
        if (u->tls) {
            lm_tls_free(u->tls);
            free(u->tls);
        }
        lm_uh2_free(u);
        free(u->buf);
        free(u);
    }
}

static void lm__pool_unlink(lm_upconn_t *u)
{
    lm_pool_t *p = u->pool;
    if (!u->idle)
        return;
    if (u->prev_idle)
        u->prev_idle->next_idle = u->next_idle;
    else
        p->head = u->next_idle;
    if (u->next_idle)
        u->next_idle->prev_idle = u->prev_idle;
    u->next_idle = u->prev_idle = NULL;
    u->idle = false;
    p->count--;
}

static void lm__up_close(lm_upconn_t *u)
{
    if (u->closing)
        return;
    u->closing = true;
    lm__pool_unlink(u);
    u->req = NULL;
    uv_close((uv_handle_t *)&u->timer, lm__up_handle_closed);
    uv_close((uv_handle_t *)&u->tcp, lm__up_handle_closed);
}

static lm_pool_t *lm__pool(lm_worker_t *w, const char *key)
{
    lm_pool_t *p = lm_map_get(&w->pools, lm_str(key));
    if (!p) {
        p = calloc(1, sizeof(*p));
        if (!p)
            abort();
        snprintf(p->key, sizeof(p->key), "%s", key);
        lm_map_put(&w->pools, lm_str(p->key), p);
    }
    return p;
}

static void lm__up_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    lm_upconn_t *u = h->data;
    if (u->len >= u->cap) {
        b->base = NULL;
        b->len = 0;
        return;
    }
    b->base = u->buf + u->len;
    b->len = u->cap - u->len;
}

static void lm__up_input(lm_upconn_t *u, ssize_t nread);
static void lm__up_read_tls(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

static void lm__up_tls_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    lm_upconn_t *u = h->data;
    b->base = u->w->tls_in;
    b->len = sizeof(u->w->tls_in);
}

static void lm__up_h2_in(lm_upconn_t *u, const char *p, ssize_t nread);

static void lm__up_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    lm_upconn_t *u = s->data;
    if (nread == 0 || u->closing)
        return;
    if (u->h2) {
        lm__up_h2_in(u, b->base, nread);
        return;
    }
    lm__up_input(u, nread);
}

/* nread plaintext bytes were appended to u->buf (or nread < 0: the end). */
static void lm__up_input(lm_upconn_t *u, ssize_t nread)
{
    if (u->req == NULL) {
        /* idle: the peer closed or sent something unsolicited */
        lm__up_close(u);
        return;
    }
    lm_req_t *r = u->req;
    if (nread == UV_ENOBUFS) {
        lm_upstream_read_stop(u);
        return;
    }
    if (nread < 0) {
        lm_proxy_upstream_eof(r);
        return;
    }
    u->len += (size_t)nread;
    lm_proxy_upstream_data(r);
}

static void lm__up_tls_drain_task(lm_defer_t *d);

static void lm__up_tls_queue(lm_upconn_t *u)
{
    if (!u->tls_queued && !u->closing) {
        u->tls_queued = true;
        u->tls_drain.fn = lm__up_tls_drain_task;
        lm_worker_defer_task(u->w, &u->tls_drain);
    }
}

static void lm__up_h2_deliver(lm_upconn_t *u);

void lm_upstream_read_start(lm_upconn_t *u)
{
    if (u->h2 && u->reading && lm_uh2_pending(u)) /* proxy.c made room: what waits in the session moves on */
        lm__up_tls_queue(u);
    if (!u->reading && !u->closing) {
        u->reading = true;
        if (u->h2 && lm_uh2_pending(u))
            lm__up_tls_queue(u);
        if (u->tls) {
            uv_read_start((uv_stream_t *)&u->tcp, lm__up_tls_alloc, lm__up_read_tls);
            if (lm_tls_pending(u->tls))
                lm__up_tls_queue(u);
        } else {
            uv_read_start((uv_stream_t *)&u->tcp, u->h2 ? lm__up_tls_alloc : lm__up_alloc, lm__up_read);
        }
    }
}

/* HTTP/2: what the session made of the socket's bytes moves into u->buf as
 * far as it fits, then on to proxy.c. */
static void lm__up_h2_deliver(lm_upconn_t *u)
{
    if (u->closing)
        return;
    if (!u->req) { /* idle: pings and settings are fine, anything else retires it */
        if (!lm_uh2_alive(u) || lm_uh2_pending(u))
            lm__up_close(u);
        return;
    }
    if (!u->reading)
        return;
    ssize_t k = lm_uh2_drain(u);
    if (k > 0)
        lm__up_input(u, k);
    else if (k < 0)
        lm__up_input(u, UV_EOF);
}

static void lm__up_h2_in(lm_upconn_t *u, const char *p, ssize_t nread)
{
    if (nread < 0) {
        if (u->req && !lm_uh2_pending(u))
            lm__up_input(u, nread);
        else if (!u->req)
            lm__up_close(u);
        return;
    }
    if (lm_uh2_recv(u, p, (size_t)nread) != LM_OK && !u->req) {
        lm__up_close(u);
        return;
    }
    lm__up_h2_deliver(u);
}

/* Runs the handshake, then decrypts what fits into u->buf and hands it on. */
static void lm__up_tls_drain(lm_upconn_t *u)
{
    if (u->closing)
        return;
    if (u->h2 && u->tls_ready) { /* decrypted bytes feed the session, not u->buf */
        static _Thread_local char plain[16384];
        ssize_t n = lm_tls_read(u->tls, plain, sizeof(plain));
        lm_tls_flush(u->tls, u->w, (uv_stream_t *)&u->tcp);
        if (n > 0)
            lm__up_h2_in(u, plain, n);
        else if (n == 0 || n == LM_ERROR)
            lm__up_h2_in(u, NULL, UV_EOF);
        else
            lm__up_h2_deliver(u);
        if (!u->closing && lm_tls_pending(u->tls))
            lm__up_tls_queue(u);
        return;
    }
    if (u->len == u->cap) { /* full: lm_upstream_read_start resumes */
        lm_upstream_read_stop(u);
        return;
    }
    ssize_t n = lm_tls_read(u->tls, u->buf + u->len, u->cap - u->len);
    if (lm_tls_flush(u->tls, u->w, (uv_stream_t *)&u->tcp) != LM_OK) {
        n = LM_ERROR;
    }
    if (!u->tls_ready && u->tls->established) {
        u->tls_ready = true;
        if (!u->req) {
            lm__up_close(u);
            return;
        }
        if (u->want_h2) {
            if (strcmp(u->tls->alpn, "h2") != 0 || lm_uh2_start(u) != LM_OK) {
                lm_proxy_upstream_error(u->req, 502, "upstream did not agree to HTTP/2 (ALPN)", false);
                return;
            }
        }
        lm_proxy_upstream_ready(u->req);
        if (u->closing)
            return;
    }
    if (n == LM_AGAIN)
        return;
    if (n == LM_ERROR) {
        char why[200];
        lm_tls_error(u->tls, why, sizeof(why));
        lm_log_warn("upstream %s: TLS: %s", u->pool->key, why);
        atomic_fetch_add_explicit(&lm_counters.upstream_errors, 1, memory_order_relaxed);
        if (u->req && !u->tls_ready)
            lm_proxy_upstream_error(u->req, 502, why, true);
        else if (u->req)
            lm_proxy_upstream_eof(u->req);
        else
            lm__up_close(u);
        return;
    }
    lm__up_input(u, n == 0 ? UV_EOF : n);
    if (!u->closing && u->reading && lm_tls_pending(u->tls))
        lm__up_tls_queue(u);
}

static void lm__up_tls_drain_task(lm_defer_t *d)
{
    lm_upconn_t *u = lm_container_of(d, lm_upconn_t, tls_drain);
    u->tls_queued = false;
    if (u->h2 && !(u->tls && lm_tls_pending(u->tls))) {
        lm__up_h2_deliver(u);
        if (!u->closing && u->reading && u->h2 && lm_uh2_pending(u) && u->len < u->cap)
            lm__up_tls_queue(u);
        return;
    }
    if (u->reading)
        lm__up_tls_drain(u);
}

static void lm__up_read_tls(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    lm_upconn_t *u = s->data;
    if (nread == 0 || u->closing)
        return;
    if (nread < 0) {
        if (!u->tls_ready && u->req) {
            atomic_fetch_add_explicit(&lm_counters.upstream_errors, 1, memory_order_relaxed);
            lm_proxy_upstream_error(u->req, 502, "upstream closed during the TLS handshake", true);
            return;
        }
        lm__up_input(u, nread);
        return;
    }
    lm_tls_feed(u->tls, b->base, (size_t)nread);
    lm__up_tls_drain(u);
}

/* A new resumable session for a TLS connection: kept in its pool. */
static bool lm__up_session(void *app, SSL_SESSION *sess)
{
    lm_upconn_t *u = app;
    if (u->closing || !u->pool)
        return false;
    if (u->pool->tls_sess)
        SSL_SESSION_free(u->pool->tls_sess);
    u->pool->tls_sess = sess;
    return true;
}

void lm_upstream_tls_init(void)
{
    lm_tls_set_session_cb(lm__up_session);
}

void lm_upstream_read_stop(lm_upconn_t *u)
{
    if (u->reading) {
        u->reading = false;
        uv_read_stop((uv_stream_t *)&u->tcp);
    }
}

static void lm__up_timeout(uv_timer_t *t)
{
    lm_upconn_t *u = t->data;
    if (u->req == NULL) { /* idle timeout */
        lm__up_close(u);
        return;
    }
    lm_req_t *r = u->req;
    atomic_fetch_add_explicit(&lm_counters.upstream_errors, 1, memory_order_relaxed);
    if (!u->connected)
        lm_proxy_upstream_error(r, 504, "upstream connect timed out", true);
    else if (u->tls && !u->tls_ready)
        lm_proxy_upstream_error(r, 504, "upstream TLS handshake timed out", true);
    else
        lm_proxy_upstream_error(r, 504, u->writing ? "upstream write timed out" : "upstream read timed out",
                                lm_method_idempotent(r->method)); /* nginx: not POST, LOCK, PATCH once sent */
}

void lm_upstream_set_timer(lm_upconn_t *u, uint64_t ms)
{
    if (u->closing)
        return;
    if (ms == 0)
        uv_timer_stop(&u->timer);
    else
        uv_timer_start(&u->timer, lm__up_timeout, ms, 0);
}

static void lm__up_connected(uv_connect_t *creq, int status)
{
    lm_upconn_t *u = creq->data;
    if (u->closing)
        return;
    lm_req_t *r = u->req;
    if (status < 0) {
        atomic_fetch_add_explicit(&lm_counters.upstream_errors, 1, memory_order_relaxed);
        if (r) {
            lm_log_debug("connect to %s failed: %s", u->pool->key, uv_strerror(status));
            lm_proxy_upstream_error(r, 502, uv_strerror(status), true);
        } else {
            lm__up_close(u);
        }
        return;
    }
    u->connected = true;
    uv_tcp_nodelay(&u->tcp, 1);
    if (!r) {
        lm__up_close(u);
        return;
    }
    if (u->tls_ctx) { /* the handshake first (the connect timeout covers it, as nginx's) */
        u->tls = malloc(sizeof(*u->tls));
        char sni[256];
        lm__tls_name(r, sni, sizeof(sni));
        if (!u->tls || lm_tls_connect(u->tls, u->tls_ctx, sni, u->tls_verify, u->pool->tls_sess) != LM_OK) {
            free(u->tls);
            u->tls = NULL;
            lm_proxy_upstream_error(r, 502, "upstream TLS: out of memory", false);
            return;
        }
        lm_tls_set_app(u->tls, u);
        lm_upstream_read_start(u);
        lm__up_tls_drain(u); /* sends the ClientHello */
        return;
    }
    if (u->want_h2 && lm_uh2_start(u) != LM_OK) {
        lm_proxy_upstream_error(r, 502, "upstream HTTP/2 session failed", false);
        return;
    }
    lm_upstream_read_start(u);
    lm_proxy_upstream_ready(r);
}

/* The name sent as SNI (and verified): the Host the upstream gets, without
 * its port; "" for an address literal (RFC 6066 forbids those). */
static void lm__tls_name(lm_req_t *r, char *out, size_t cap)
{
    lm_str_t h = r->rrt && r->rrt->route->preserve_host && r->host.len ? r->host : r->peer->host_header;
    size_t n = h.len;
    if (n && h.ptr[0] == '[') { /* "[v6]:port": the address (lm_tls_connect sends no SNI for one) */
        const char *end = memchr(h.ptr, ']', h.len);
        n = end ? (size_t)(end - h.ptr) - 1 : 0;
        h.ptr++;
    } else {
        for (size_t i = 0; i < h.len; i++)
            if (h.ptr[i] == ':') {
                n = i;
                break;
            }
    }
    if (n >= cap)
        n = 0;
    memcpy(out, h.ptr, n);
    out[n] = 0;
}

void lm_upstream_acquire(lm_req_t *r, const lm_peer_t *peer)
{
    lm_worker_t *w = r->w;
    SSL_CTX *tctx = r->srt->tls;
    char key[LM_POOL_KEY_MAX];
    if (tctx) { /* TLS connections are reused only for the same settings and name */
        char sni[256];
        lm__tls_name(r, sni, sizeof(sni));
        snprintf(key, sizeof(key), "%s|%s|%s%s", peer->key, r->srt->tls_id, sni, r->srt->h2 ? "|h2" : "");
    } else {
        snprintf(key, sizeof(key), "%s%s", peer->key, r->srt->h2 ? "|h2" : "");
    }
    lm_pool_t *p = lm__pool(w, key);
    while (p->head) {
        lm_upconn_t *u = p->head;
        lm__pool_unlink(u);
        if (u->closing)
            continue;
        u->req = r;
        u->len = 0;
        r->up = u;
        uv_timer_stop(&u->timer);
        lm_proxy_upstream_ready(r);
        return;
    }
    lm_upconn_t *u = calloc(1, sizeof(*u));
    u->buf = malloc(LM_UP_BUF);
    if (!u || !u->buf)
        abort();
    u->cap = LM_UP_BUF;
    u->w = w;
    u->pool = p;
    u->tls_ctx = tctx;
    u->tls_verify = tctx && r->srt->svc->tls_verify;
    u->want_h2 = r->srt->h2;
    u->req = r;
    r->up = u;
    uv_tcp_init(&w->loop, &u->tcp);
    uv_timer_init(&w->loop, &u->timer);
    u->handles = 2;
    u->tcp.data = u->timer.data = u->connect_req.data = u->write_req.data = u;
    int rc = uv_tcp_connect(&u->connect_req, &u->tcp, (const struct sockaddr *)&peer->addr, lm__up_connected);
    if (rc < 0) {
        lm_proxy_upstream_error(r, 502, uv_strerror(rc), true);
        return;
    }
    lm_upstream_set_timer(u, (uint64_t)r->srt->svc->connect_timeout);
}

void lm_upstream_release(lm_upconn_t *u, bool reusable)
{
    if (u->closing)
        return;
    u->req = NULL;
    u->requests++;
    lm_worker_t *w = u->w;
    lm_pool_t *p = u->pool;
    if (u->h2) {
        reusable = reusable && lm_uh2_reusable(u);
        if (reusable)
            lm_uh2_next(u);
    }
    if (!reusable || u->writing || u->len != 0 || w->draining || p->count >= LM_POOL_MAX_IDLE ||
        u->requests >= LM_POOL_MAX_REQUESTS) {
        lm__up_close(u);
        return;
    }
    u->idle = true;
    u->next_idle = p->head;
    u->prev_idle = NULL;
    if (p->head)
        p->head->prev_idle = u;
    p->head = u;
    p->count++;
    lm_upstream_read_start(u);
    uv_timer_start(&u->timer, lm__up_timeout, LM_POOL_IDLE_TIMEOUT_MS, 0);
}

static void lm__up_written(uv_write_t *wr, int status)
{
    lm_upconn_t *u = wr->data;
    u->writing = false;
    if (u->closing || u->req == NULL)
        return;
    lm_req_t *r = u->req;
    if (status < 0) {
        atomic_fetch_add_explicit(&lm_counters.upstream_errors, 1, memory_order_relaxed);
        lm_proxy_upstream_error(r, 502, uv_strerror(status), lm_method_idempotent(r->method));
        return;
    }
    lm_proxy_upstream_write_done(r);
}

static void lm__up_h2_written(lm_upconn_t *u, int status)
{
    lm__up_written(&u->write_req, status);
}

int lm_upstream_write(lm_upconn_t *u, uv_buf_t *bufs, unsigned n)
{
    u->writing = true;
    if (u->h2) {
        if (lm_uh2_write(u, bufs, n, lm__up_h2_written) != LM_OK) {
            u->writing = false;
            return LM_ERROR;
        }
        return LM_OK;
    }
    int rc = u->tls ? lm_tls_write(u->tls, u->w, (uv_stream_t *)&u->tcp, &u->write_req, bufs, n, lm__up_written)
                    : lm_stream_write(u->w, (uv_stream_t *)&u->tcp, &u->write_req, &u->write_defer, bufs, n,
                                      lm__up_written);
    if (rc < 0)
        u->writing = false;
    return rc < 0 ? LM_ERROR : LM_OK;
}

void lm_upstream_close_pools(lm_worker_t *w)
{
    for (size_t i = 0; i < w->pools.cap; i++) {
        lm_pool_t *p = w->pools.slots[i].value;
        if (!w->pools.slots[i].key.ptr || !p)
            continue;
        while (p->head)
            lm__up_close(p->head);
        if (p->tls_sess)
            SSL_SESSION_free(p->tls_sess);
        free(p);
    }
    lm_map_free(&w->pools);
}

void lm_upstream_abort(lm_upconn_t *u)
{
    lm__up_close(u);
}

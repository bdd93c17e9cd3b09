/*
 * stream.c - L4 tunnels for stream routes (lm_stream.h): accept, read the
 * ClientHello on ssl listeners, route, connect with the service's balancer
 * (retries, passive health), TLS termination or re-encryption over the
 * memory-BIO sessions of tls.c, and the byte pump with backpressure,
 * half-close and idle timeouts.
 *
 * Ownership: a tunnel owns its client handle, its timer and its current
 * upstream handle (each allocated; a failed upstream connection is closed and
 * replaced on retry). The tunnel is freed when the last of them is closed.
 */
#include "lm_stream.h"
#include "lm_log.h"
#include "lm_proxy.h"
#include "lm_tls.h"
#include "lm_tls_hello.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LM_STREAM_BUF 16384         /* per direction (nginx's proxy_buffer_size) */
#define LM_STREAM_PREREAD_MS 30000  /* ClientHello wait (nginx's preread_timeout) */

typedef struct lm_tunnel lm_tunnel_t;

enum { ST_PREREAD, ST_CONNECTING, ST_OPEN };

/* One end of the tunnel; buf holds what was read from it for the other end. */
typedef struct {
    lm_tunnel_t *t;
    uv_tcp_t *tcp;          /* NULL: the upstream before its connect */
    lm_tls_t *tls;          /* terminated (client) or re-encrypted (upstream) TLS */
    lm_defer_t tls_drain;
    bool tls_queued;
    char buf[LM_STREAM_BUF];
    size_t len, wlen;       /* bytes held; bytes of the write in flight to the other end (0: none) */
    uv_write_t wr;
    lm_defer_t wdefer;
    uv_shutdown_t sd;
    bool reading, eof, ready, shut_started, shut_done;
    uint64_t bytes;         /* read from this end */
} lm_side_t;

struct lm_tunnel {
    lm_worker_t *w;
    lm_tunnel_t *prev, *next;
    lm_side_t c, u;
    uv_timer_t timer;
    uv_connect_t *creq;     /* the connect in progress */
    lm_wsnap_t *ws;
    const lm_stream_route_t *sr;
    lm_pick_t pick;
    int tries, state, handles, status;
    bool ssl_listener, closing;
    uint64_t t_start, last_ms;
    struct sockaddr_storage src, dst;
    char ip[48], sni[256];
    int port, lport;
};

static void lm__close(lm_tunnel_t *t, int status);
static void lm__pump(lm_side_t *x);
static void lm__read_start(lm_side_t *s);
static void lm__tls_drain(lm_side_t *s);
static void lm__connect_next(lm_tunnel_t *t);

static lm_side_t *lm__other(lm_side_t *s)
{
    return s == &s->t->c ? &s->t->u : &s->t->c;
}

static const char *lm__side_name(const lm_side_t *s)
{
    return s == &s->t->c ? "client" : "upstream";
}

/* ------------------------------------------------------------------ */
/* lifecycle                                                           */

static void lm__access_log(lm_tunnel_t *t)
{
    int fd = t->w->srv->access_log_fd;
    if (fd < 0)
        return;
    const lm_stream_route_t *sr = t->sr;
    char line[1024];
    int n = snprintf(line, sizeof(line),
                     "{\"time\":\"%s\",\"client_ip\":\"%s\",\"protocol\":\"%s\",\"sni\":\"%s\",\"status\":%d,"
                     "\"service\":\"%s\",\"route\":\"%s\",\"upstream\":\"%s\",\"session_ms\":%llu,"
                     "\"bytes_in\":%llu,\"bytes_out\":%llu}\n",
                     lm_worker_date(t->w), t->ip,
                     !t->ssl_listener ? "tcp" : sr && (sr->protocols & LM_STREAM_PASSTHROUGH) ? "tls_passthrough"
                                                                                               : "tls",
                     t->sni, t->status, sr && sr->svc ? sr->svc->label : "", sr && sr->label ? sr->label : "",
                     t->pick.peer ? t->pick.peer->key : "", (unsigned long long)(uv_now(&t->w->loop) - t->t_start),
                     (unsigned long long)t->c.bytes, (unsigned long long)t->u.bytes);
    if (n > 0) {
        ssize_t wn = write(fd, line, (size_t)LM_MIN((size_t)n, sizeof(line) - 1));
        (void)wn;
    }
}

static void lm__free(lm_tunnel_t *t)
{
    lm_worker_t *w = t->w;
    if (t->prev)
        t->prev->next = t->next;
    else
        w->tunnels = t->next;
    if (t->next)
        t->next->prev = t->prev;
    w->num_tunnels--;
    atomic_fetch_sub_explicit(&lm_counters.connections_active, 1, memory_order_relaxed);
    lm_side_t *sides[2] = { &t->c, &t->u };
    for (int i = 0; i < 2; i++)
        if (sides[i]->tls) {
            lm_tls_free(sides[i]->tls);
            free(sides[i]->tls);
        }
    if (t->ws)
        lm_worker_snap_release(w, t->ws);
    free(t);
    if (w->draining && w->num_conns == 0 && w->num_tunnels == 0)
        uv_async_send(&w->async); /* let the worker finish */
}

static void lm__unref(lm_tunnel_t *t)
{
    if (--t->handles == 0)
        lm__free(t);
}

static void lm__tcp_closed(uv_handle_t *h)
{
    lm_side_t *s = h->data;
    lm_tunnel_t *t = s->t;
    free(h);
    lm__unref(t);
}

static void lm__timer_closed(uv_handle_t *h)
{
    lm__unref(h->data);
}

static void lm__close(lm_tunnel_t *t, int status)
{
    if (t->closing)
        return;
    t->closing = true;
    if (!t->status)
        t->status = status;
    if (t->sr && t->sr->svc)
        lm_balancer_release(t->sr->svc->bal, &t->pick, uv_now(&t->w->loop), false);
    lm__access_log(t);
    lm_log_debug("stream %s:%d -> %s: closed (%d), %llu bytes in, %llu out", t->ip, t->port,
                 t->pick.peer ? t->pick.peer->key : "-", t->status, (unsigned long long)t->c.bytes,
                 (unsigned long long)t->u.bytes);
    uv_close((uv_handle_t *)&t->timer, lm__timer_closed);
    uv_close((uv_handle_t *)t->c.tcp, lm__tcp_closed);
    if (t->u.tcp)
        uv_close((uv_handle_t *)t->u.tcp, lm__tcp_closed);
}

/* Both directions ended: EOF read from each end and passed on to the other. */
static void lm__check_done(lm_tunnel_t *t)
{
    if (t->c.eof && t->u.eof && t->c.shut_done && t->u.shut_done)
        lm__close(t, 200);
}

/* ------------------------------------------------------------------ */
/* timers                                                              */

static uint64_t lm__idle_ms(lm_tunnel_t *t)
{
    const lm_service_t *svc = t->sr->svc->svc;
    return (uint64_t)(t->c.wlen || t->u.wlen ? svc->write_timeout : svc->read_timeout);
}

static void lm__connect_failed(lm_tunnel_t *t, lm_hr_kind_t kind, const char *why);

static void lm__on_timer(uv_timer_t *h)
{
    lm_tunnel_t *t = h->data;
    if (t->closing)
        return;
    if (t->state == ST_PREREAD) {
        lm_log_debug("stream %s:%d: no ClientHello in time", t->ip, t->port);
        lm__close(t, 408);
        return;
    }
    if (t->state == ST_CONNECTING) {
        lm__connect_failed(t, LM_HR_TIMEOUT, "upstream connect timed out");
        return;
    }
    /* idle: activity only moves last_ms; the timer catches up lazily */
    uint64_t now = uv_now(&t->w->loop), idle = lm__idle_ms(t);
    if (now - t->last_ms < idle) {
        uv_timer_start(&t->timer, lm__on_timer, idle - (now - t->last_ms), 0);
        return;
    }
    lm_log_info("stream %s:%d -> %s: closed after %llu ms without traffic", t->ip, t->port,
                t->pick.peer ? t->pick.peer->key : "-", (unsigned long long)idle);
    lm__close(t, 200);
}

static void lm__activity(lm_tunnel_t *t)
{
    t->last_ms = uv_now(&t->w->loop);
}

/* ------------------------------------------------------------------ */
/* the pump                                                            */

static void lm__shut_done(uv_shutdown_t *req, int status)
{
    lm_side_t *s = req->data;
    if (s->t->closing)
        return;
    s->shut_done = true;
    if (status < 0) {
        lm__close(s->t, 200);
        return;
    }
    lm__check_done(s->t);
}

/* x has nothing more to send: end writing to the other end. */
static void lm__shutdown_other(lm_side_t *x)
{
    lm_side_t *y = lm__other(x);
    if (y->shut_started || !y->tcp)
        return;
    y->shut_started = true;
    if (y->tls && y->tls->established) { /* close_notify first */
        lm_tls_shutdown(y->tls);
        lm_tls_flush(y->tls, x->t->w, (uv_stream_t *)y->tcp);
    }
    y->sd.data = y;
    if (uv_shutdown(&y->sd, (uv_stream_t *)y->tcp, lm__shut_done) < 0)
        lm__close(x->t, 200);
}

static void lm__written(uv_write_t *wr, int status)
{
    lm_side_t *x = wr->data;
    lm_tunnel_t *t = x->t;
    if (t->closing)
        return;
    if (status < 0) {
        lm_log_debug("stream %s:%d: writing to the %s: %s", t->ip, t->port, lm__side_name(lm__other(x)),
                     uv_strerror(status));
        lm__close(t, 200);
        return;
    }
    memmove(x->buf, x->buf + x->wlen, x->len - x->wlen);
    x->len -= x->wlen;
    x->wlen = 0;
    lm__activity(t);
    if (!x->eof)
        lm__read_start(x); /* there is room again */
    lm__pump(x);
}

/* Sends what x holds to the other end, one write at a time. */
static void lm__pump(lm_side_t *x)
{
    lm_tunnel_t *t = x->t;
    lm_side_t *y = lm__other(x);
    if (t->closing || x->wlen || !y->ready)
        return;
    if (x->len == 0) {
        if (x->eof)
            lm__shutdown_other(x);
        return;
    }
    if (y->shut_started)
        return; /* cannot happen: shut only after x's last byte */
    x->wlen = x->len;
    x->wr.data = x;
    uv_buf_t b = uv_buf_init(x->buf, (unsigned)x->len);
    int rc = y->tls ? lm_tls_write(y->tls, t->w, (uv_stream_t *)y->tcp, &x->wr, &b, 1, lm__written)
                    : lm_stream_write(t->w, (uv_stream_t *)y->tcp, &x->wr, &x->wdefer, &b, 1, lm__written);
    if (rc < 0) {
        x->wlen = 0;
        lm__close(t, 200);
    }
}

/* ------------------------------------------------------------------ */
/* reading                                                             */

static void lm__alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    lm_side_t *s = h->data;
    b->base = s->len < LM_STREAM_BUF ? s->buf + s->len : NULL;
    b->len = LM_STREAM_BUF - s->len;
}

static void lm__tls_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    lm_side_t *s = h->data;
    b->base = s->t->w->tls_in;
    b->len = sizeof(s->t->w->tls_in);
}

static void lm__read_stop(lm_side_t *s)
{
    if (s->reading) {
        s->reading = false;
        uv_read_stop((uv_stream_t *)s->tcp);
    }
}

static void lm__on_eof(lm_side_t *s)
{
    lm__read_stop(s);
    s->eof = true;
    lm__pump(s);
    lm__check_done(s->t);
}

static void lm__preread(lm_tunnel_t *t);

static void lm__on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    lm_side_t *s = st->data;
    lm_tunnel_t *t = s->t;
    if (nread == 0 || t->closing)
        return;
    if (nread == UV_ENOBUFS) { /* full: lm__written starts reading again */
        lm__read_stop(s);
        return;
    }
    if (nread < 0) {
        if (nread != UV_EOF || t->state == ST_PREREAD) {
            lm_log_debug("stream %s:%d: %s: %s", t->ip, t->port, lm__side_name(s), uv_strerror((int)nread));
            lm__close(t, t->state == ST_PREREAD ? 400 : 200);
            return;
        }
        s->reading = false; /* libuv stopped at EOF */
        lm__on_eof(s);
        return;
    }
    s->len += (size_t)nread;
    s->bytes += (uint64_t)nread;
    if (t->state == ST_PREREAD) {
        lm__preread(t);
        return;
    }
    lm__activity(t);
    lm__pump(s);
}

static void lm__tls_task(lm_defer_t *d)
{
    lm_side_t *s = lm_container_of(d, lm_side_t, tls_drain);
    s->tls_queued = false;
    if (s->reading && !s->t->closing)
        lm__tls_drain(s);
}

static void lm__tls_queue(lm_side_t *s)
{
    if (!s->tls_queued && !s->t->closing) {
        s->tls_queued = true;
        s->tls_drain.fn = lm__tls_task;
        lm_worker_defer_task(s->t->w, &s->tls_drain);
    }
}

static void lm__on_read_tls(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    lm_side_t *s = st->data;
    lm_tunnel_t *t = s->t;
    if (nread == 0 || t->closing)
        return;
    if (nread < 0) {
        s->reading = false;
        if (!s->tls->established) {
            if (s == &t->u && t->state == ST_CONNECTING)
                lm__connect_failed(t, LM_HR_TCP, "upstream closed during the TLS handshake");
            else
                lm__close(t, 400);
            return;
        }
        if (nread != UV_EOF) {
            lm__close(t, 200);
            return;
        }
        lm__on_eof(s);
        return;
    }
    lm_tls_feed(s->tls, b->base, (size_t)nread);
    lm__tls_drain(s);
}

static void lm__upstream_ready(lm_tunnel_t *t);

/* Runs the handshake, then decrypts what fits into s->buf. */
static void lm__tls_drain(lm_side_t *s)
{
    lm_tunnel_t *t = s->t;
    if (s->len == LM_STREAM_BUF) { /* full: lm__written resumes */
        lm__read_stop(s);
        return;
    }
    ssize_t n = lm_tls_read(s->tls, s->buf + s->len, LM_STREAM_BUF - s->len);
    if (lm_tls_flush(s->tls, t->w, (uv_stream_t *)s->tcp) != LM_OK)
        n = LM_ERROR;
    if (!s->ready && s->tls->established) {
        if (s == &t->u) {
            lm__upstream_ready(t);
        } else {
            s->ready = true; /* the client's handshake is done: it can be written to */
            lm__pump(&t->u);
        }
        if (t->closing)
            return;
    }
    if (n == LM_AGAIN)
        return;
    if (n == LM_ERROR) {
        char why[200];
        lm_tls_error(s->tls, why, sizeof(why));
        if (s == &t->u && t->state == ST_CONNECTING) {
            lm__connect_failed(t, LM_HR_TCP, why);
        } else {
            lm_log_debug("stream %s:%d: %s TLS: %s", t->ip, t->port, lm__side_name(s), why);
            lm__close(t, s == &t->c && !s->ready ? 400 : 200);
        }
        return;
    }
    if (n == 0) {
        lm__on_eof(s);
        return;
    }
    s->len += (size_t)n;
    s->bytes += (uint64_t)n;
    lm__activity(t);
    lm__pump(s);
    if (!t->closing && s->reading && lm_tls_pending(s->tls))
        lm__tls_queue(s);
}

static void lm__read_start(lm_side_t *s)
{
    if (s->reading || s->t->closing || !s->tcp)
        return;
    s->reading = true;
    if (s->tls) {
        uv_read_start((uv_stream_t *)s->tcp, lm__tls_alloc, lm__on_read_tls);
        if (lm_tls_pending(s->tls)) /* plaintext no socket event will announce */
            lm__tls_queue(s);
    } else {
        uv_read_start((uv_stream_t *)s->tcp, lm__alloc, lm__on_read);
    }
}

/* ------------------------------------------------------------------ */
/* upstream                                                            */

/* The name sent as SNI to a tls service: the upstream host, "" for an address. */
static void lm__up_sni(const lm_peer_t *peer, char *out, size_t cap)
{
    lm_str_t h = peer->host_header;
    size_t n = 0;
    bool numeric = true;
    while (n < h.len && h.ptr[n] != ':' && h.ptr[n] != '[') {
        if (!(h.ptr[n] == '.' || (h.ptr[n] >= '0' && h.ptr[n] <= '9')))
            numeric = false;
        n++;
    }
    if (numeric || n >= cap || (h.len && h.ptr[0] == '['))
        n = 0;
    memcpy(out, h.ptr, n);
    out[n] = '\0';
}

static void lm__upstream_ready(lm_tunnel_t *t)
{
    t->u.ready = true;
    t->state = ST_OPEN;
    lm_svc_rt_t *srt = t->sr->svc;
    lm_balancer_report(srt->bal, &t->pick, LM_HR_SUCCESS, 0, uv_now(&t->w->loop));
    lm__activity(t);
    uv_timer_start(&t->timer, lm__on_timer, lm__idle_ms(t), 0);
    lm__read_start(&t->u);
    lm__pump(&t->c); /* what the client sent meanwhile */
}

static void lm__connected(uv_connect_t *req, int status)
{
    lm_tunnel_t *t = req->data;
    bool current = req == t->creq;
    free(req);
    if (!current || t->closing || status == UV_ECANCELED)
        return;
    t->creq = NULL;
    if (status < 0) {
        lm__connect_failed(t, LM_HR_TCP, uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(t->u.tcp, 1);
    lm_svc_rt_t *srt = t->sr->svc;
    if (srt->tls) { /* re-encrypt: the handshake first, under the connect timeout */
        char sni[256];
        lm__up_sni(t->pick.peer, sni, sizeof(sni));
        t->u.tls = malloc(sizeof(*t->u.tls));
        if (!t->u.tls || lm_tls_connect(t->u.tls, srt->tls, sni, srt->svc->tls_verify, NULL) != LM_OK) {
            free(t->u.tls);
            t->u.tls = NULL;
            lm__close(t, 500);
            return;
        }
        lm__read_start(&t->u);
        lm__tls_drain(&t->u); /* sends the ClientHello */
        return;
    }
    lm__upstream_ready(t);
}

/* Connects to the balancer's next pick. */
static void lm__connect_next(lm_tunnel_t *t)
{
    lm_svc_rt_t *srt = t->sr->svc;
    const lm_peer_t *peer = lm_balancer_pick(srt->bal, &t->pick, uv_now(&t->w->loop), lm_worker_random(t->w));
    if (!peer) {
        lm_log_warn("stream %s:%d: route %s: failure to get a peer from the ring-balancer", t->ip, t->port,
                    t->sr->label ? t->sr->label : "");
        lm__close(t, 503);
        return;
    }
    uv_tcp_t *tcp = malloc(sizeof(*tcp));
    uv_connect_t *req = malloc(sizeof(*req));
    if (!tcp || !req)
        abort();
    uv_tcp_init(&t->w->loop, tcp);
    tcp->data = &t->u;
    t->handles++;
    t->u.tcp = tcp;
    req->data = t;
    t->creq = req;
    t->state = ST_CONNECTING;
    int rc = uv_tcp_connect(req, tcp, (const struct sockaddr *)&peer->addr, lm__connected);
    if (rc < 0) {
        free(req);
        t->creq = NULL;
        lm__connect_failed(t, LM_HR_TCP, uv_strerror(rc));
        return;
    }
    uv_timer_start(&t->timer, lm__on_timer, (uint64_t)srt->svc->connect_timeout, 0);
}

/* A connect error, timeout or failed handshake: passive health, then the
 * next address (Kong's retries), else the end. */
static void lm__connect_failed(lm_tunnel_t *t, lm_hr_kind_t kind, const char *why)
{
    lm_svc_rt_t *srt = t->sr->svc;
    const lm_peer_t *failed = t->pick.peer;
    atomic_fetch_add_explicit(&lm_counters.upstream_errors, 1, memory_order_relaxed);
    lm_balancer_report(srt->bal, &t->pick, kind, 0, uv_now(&t->w->loop));
    t->creq = NULL; /* a connect still pending is cancelled by the close */
    if (t->u.tcp) {
        uv_close((uv_handle_t *)t->u.tcp, lm__tcp_closed);
        t->u.tcp = NULL;
    }
    if (t->u.tls) {
        lm_tls_free(t->u.tls);
        free(t->u.tls);
        t->u.tls = NULL;
    }
    t->u.reading = false; /* a drain task still queued finds nothing to read and clears tls_queued */
    if (t->tries < srt->svc->retries) {
        t->tries++;
        if (failed && failed->state)
            atomic_fetch_add_explicit(&failed->state->retries, 1, memory_order_relaxed);
        lm_log_info("stream %s:%d to %s failed: %s; retry %d of %d", t->ip, t->port, failed ? failed->key : "?",
                    why, t->tries, srt->svc->retries);
        lm__connect_next(t);
        return;
    }
    lm_log_warn("stream %s:%d to %s failed: %s", t->ip, t->port, failed ? failed->key : "?", why);
    lm__close(t, kind == LM_HR_TIMEOUT ? 504 : 502);
}

/* ------------------------------------------------------------------ */
/* routing                                                             */

static void lm__hash(lm_tunnel_t *t, lm_balancer_t *b)
{
    /* consistent hashing: a stream has a client address and nothing else to hash */
    const lm_upstream_t *up = b->up;
    bool ip = up && b->algo == LM_LB_CONSISTENT_HASHING &&
              ((up->hash_on && strcmp(up->hash_on, "ip") == 0) ||
               (up->hash_fallback && strcmp(up->hash_fallback, "ip") == 0));
    t->pick.hash = ip ? lm_xxh32(t->ip, strlen(t->ip), 0) : lm_xxh32("", 0, 0);
}

/* Routes the connection (sni "" when none) and starts connecting. */
static void lm__route(lm_tunnel_t *t, const char *sni)
{
    snprintf(t->sni, sizeof(t->sni), "%s", sni);
    lm_stream_req_t req = { .protocol = t->ssl_listener ? LM_STREAM_TLS : LM_STREAM_TCP,
                            .src = (struct sockaddr *)&t->src, .dst = (struct sockaddr *)&t->dst, .sni = sni };
    t->sr = lm_stream_router_match(t->ws->snap->stream, &req);
    if (!t->sr) {
        lm_log_info("stream %s:%d -> :%d%s%s: no Route matched with those values", t->ip, t->port, t->lport,
                    sni[0] ? " sni " : "", sni);
        lm__close(t, 404);
        return;
    }
    lm_svc_rt_t *srt = t->sr->svc;
    if (!srt || srt->resolve_error || srt->num_peers == 0) {
        lm_log_warn("stream %s:%d: route %s: %s", t->ip, t->port, t->sr->label ? t->sr->label : "",
                    !srt ? "no service" : srt->resolve_error ? srt->resolve_error : "no upstream address");
        lm__close(t, 503);
        return;
    }
    lm__hash(t, srt->bal);
    if (t->ssl_listener && !(t->sr->protocols & LM_STREAM_PASSTHROUGH)) {
        /* terminate: the ClientHello read so far goes to our own TLS session */
        lm_side_t *c = &t->c;
        c->tls = malloc(sizeof(*c->tls));
        if (!c->tls || lm_tls_accept(c->tls, t->w) != LM_OK) {
            free(c->tls);
            c->tls = NULL;
            lm__close(t, 500);
            return;
        }
        c->ready = false;
        lm_tls_feed(c->tls, c->buf, c->len);
        c->len = 0;
        lm__read_stop(c);
        lm__read_start(c);
    }
    t->state = ST_CONNECTING;
    lm__connect_next(t);
    if (!t->closing && t->c.tls)
        lm__tls_drain(&t->c); /* answers the ClientHello */
}

/* ssl listener: waits for the whole ClientHello, routes by its SNI. */
static void lm__preread(lm_tunnel_t *t)
{
    lm_tls_hello_t h;
    int rc = lm_tls_hello_parse((const uint8_t *)t->c.buf, t->c.len, &h);
    if (rc == LM_AGAIN)
        return; /* the hello is at most LM_TLS_HELLO_MAX = LM_STREAM_BUF bytes: room is left */
    if (rc != LM_OK) {
        lm_log_info("stream %s:%d -> :%d: not a valid TLS ClientHello", t->ip, t->port, t->lport);
        lm__close(t, 400);
        return;
    }
    lm__route(t, h.sni);
}

/* ------------------------------------------------------------------ */
/* accepting and draining                                              */

static void lm__addr_name(const struct sockaddr_storage *ss, char *ip, size_t cap, int *port)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        uv_ip4_name(in, ip, cap);
        *port = ntohs(in->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(in6, ip, cap);
        *port = ntohs(in6->sin6_port);
    }
}

void lm_stream_on_connection(uv_stream_t *listener, int status)
{
    lm_worker_t *w = listener->data;
    if (status < 0 || w->draining)
        return;
    lm_tunnel_t *t = calloc(1, sizeof(*t));
    uv_tcp_t *tcp = malloc(sizeof(*tcp));
    if (!t || !tcp)
        abort();
    uv_tcp_init(&w->loop, tcp);
    if (uv_accept(listener, (uv_stream_t *)tcp) != 0) {
        uv_close((uv_handle_t *)tcp, (uv_close_cb)free);
        free(t);
        return;
    }
    t->w = w;
    t->c.t = t->u.t = t;
    t->c.tcp = tcp;
    tcp->data = &t->c;
    uv_timer_init(&w->loop, &t->timer);
    t->timer.data = t;
    t->handles = 2;
    size_t li = (size_t)((uv_tcp_t *)listener - w->stream_listeners);
    t->ssl_listener = li < LM_MAX_LISTEN && w->srv->stream_ssl[li];
    t->c.ready = true; /* plain client: writable at once (a TLS one after its handshake) */
    t->ws = lm_worker_snap_acquire(w);
    t->t_start = t->last_ms = uv_now(&w->loop);
    t->next = w->tunnels;
    if (w->tunnels)
        w->tunnels->prev = t;
    w->tunnels = t;
    w->num_tunnels++;
    atomic_fetch_add_explicit(&lm_counters.connections_accepted, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&lm_counters.connections_active, 1, memory_order_relaxed);
    int len = sizeof(t->src);
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&t->src, &len) == 0)
        lm__addr_name(&t->src, t->ip, sizeof(t->ip), &t->port);
    char lip[48];
    len = sizeof(t->dst);
    if (uv_tcp_getsockname(tcp, (struct sockaddr *)&t->dst, &len) == 0)
        lm__addr_name(&t->dst, lip, sizeof(lip), &t->lport);
    uv_tcp_nodelay(tcp, 1);
    lm__read_start(&t->c); /* bytes the client sends before the upstream answers wait in its buffer */
    if (t->ssl_listener) {
        t->state = ST_PREREAD;
        uv_timer_start(&t->timer, lm__on_timer, LM_STREAM_PREREAD_MS, 0);
        return;
    }
    lm__route(t, "");
}

void lm_stream_close_idle(lm_worker_t *w)
{
    for (lm_tunnel_t *t = w->tunnels, *next; t; t = next) {
        next = t->next;
        if (t->state == ST_PREREAD)
            lm__close(t, 499);
    }
}

void lm_stream_close_all(lm_worker_t *w)
{
    for (lm_tunnel_t *t = w->tunnels, *next; t; t = next) {
        next = t->next;
        lm__close(t, 499);
    }
}

/*
 * h2.c - downstream HTTP/2 over nghttp2: sessions on client connections,
 * each stream run by proxy.c as a stream connection. See lm_h2.h.
 */
#include "lm_h2.h"
#include "lm_http1.h"
#include "lm_log.h"

#include <nghttp2/nghttp2.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LM_H2_MAX_STREAMS 128
#define LM_H2_STREAM_WINDOW 65535         /* per stream, acknowledged as proxy.c takes the data */
#define LM_H2_CONN_WINDOW (1 << 20)
#define LM_H2_MAX_HEADER_LIST (64 * 1024)
#define LM_H2_WBUF (64 * 1024)
#define LM_H2_MAX_WRITES 8

static const char lm__preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

typedef struct lm_h2_stream lm_h2_stream_t;

typedef struct {
    size_t end;       /* the write completes once `sent` reaches this offset */
    uv_write_t *req;
    uv_write_cb cb;
} lm__h2_wait_t;

/* a write completion handed to the worker's defer list */
typedef struct {
    lm_defer_t d;
    lm_h2_stream_t *st;
    uv_write_t *req;
    uv_write_cb cb;
} lm__h2_done_t;

struct lm_h2_stream {
    lm_h2_session_t *sess;
    lm_h2_stream_t *next, *prev; /* the session's streams */
    int32_t id;
    lm_conn_t *sc;               /* NULL once proxy.c is done with it */
    bool closed;                 /* nghttp2 closed the stream */
    bool zombie;                 /* freed once its queued tasks ran */
    int queued;                  /* tasks on the worker's defer list that point here */
    /* request */
    char *method, *path, *authority, *protocol; /* protocol: RFC 8441 extended CONNECT */
    char *hdrs;                  /* regular headers as HTTP/1.1 lines */
    size_t hdrs_len, hdrs_cap;
    size_t header_bytes;
    char *cookie;                /* cookie crumbs, joined with "; " */
    size_t cookie_len, cookie_cap;
    bool has_cl, chunked_in, is_head, started;
    bool ws;                     /* extended CONNECT for a WebSocket: a tunnel once the upstream says 101 */
    char *in;                    /* DATA not yet given to proxy.c */
    size_t in_len, in_cap;
    bool in_ended, eof_given;
    lm_defer_t pump;             /* runs lm__h2_pump at the end of the loop turn */
    bool pump_queued;
    /* response */
    char *rhead;                 /* what proxy.c wrote until the head was complete */
    size_t rhead_len, rhead_cap;
    bool head_done, submitted, ended, reset;
    char *out;                   /* body bytes waiting for DATA frames */
    size_t out_off, out_len, out_cap;
    size_t written, sent;        /* totals: taken from proxy.c, framed */
    lm__h2_wait_t waits[LM_H2_MAX_WRITES];
    size_t num_waits;
    char *trailers;              /* "Name: value\r\n" lines to send after the body */
    size_t trailers_len;
};

struct lm_h2_session {
    nghttp2_session *ng;
    lm_conn_t *c;
    lm_h2_stream_t *streams;
    size_t active; /* streams with a stream connection */
    uv_write_t wr;
    lm_defer_t wd;
    char *wbuf;
    size_t wcap;
    bool writing, closing, goaway;
};

static nghttp2_session_callbacks *lm__cbs;
static nghttp2_option *lm__opt;

/* ------------------------------------------------------------------ */
/* small buffers                                                       */

static void lm__grow(char **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    size_t n = *cap ? *cap : 1024;
    while (n < need)
        n *= 2;
    char *np = realloc(*p, n);
    if (!np)
        abort();
    *p = np;
    *cap = n;
}

static void lm__append(char **p, size_t *len, size_t *cap, const void *data, size_t n)
{
    lm__grow(p, cap, *len + n);
    memcpy(*p + *len, data, n);
    *len += n;
}

static char *lm__dup(const uint8_t *p, size_t n)
{
    char *d = malloc(n + 1);
    if (!d)
        abort();
    memcpy(d, p, n);
    d[n] = 0;
    return d;
}

bool lm_h2_is_preface(const char *p, size_t n, bool *more)
{
    size_t pl = sizeof(lm__preface) - 1;
    size_t k = n < pl ? n : pl;
    if (memcmp(p, lm__preface, k) != 0) {
        *more = false;
        return false;
    }
    *more = n < pl;
    return true;
}

/* ------------------------------------------------------------------ */
/* writing the session's output                                        */

static void lm__h2_flush(lm_h2_session_t *s);

static void lm__h2_maybe_close(lm_h2_session_t *s)
{
    if (s->closing || s->writing)
        return;
    bool done = !nghttp2_session_want_read(s->ng) && !nghttp2_session_want_write(s->ng);
    if (done || (s->goaway && s->active == 0 && !nghttp2_session_want_write(s->ng)))
        lm_proxy_conn_close(s->c);
}

static void lm__h2_written(uv_write_t *wr, int status)
{
    lm_h2_session_t *s = lm_container_of(wr, lm_h2_session_t, wr);
    s->writing = false;
    if (s->closing)
        return;
    if (status < 0) {
        lm_proxy_conn_close(s->c);
        return;
    }
    lm__h2_flush(s);
}

/* Gathers nghttp2's output into one buffer and writes it; one write at a
 * time, so a client that does not read stops the session from producing. */
static void lm__h2_flush(lm_h2_session_t *s)
{
    if (s->writing || s->closing)
        return;
    size_t n = 0;
    while (n < LM_H2_WBUF) {
        const uint8_t *data;
        ssize_t k = nghttp2_session_mem_send(s->ng, &data);
        if (k < 0) {
            lm_proxy_conn_close(s->c);
            return;
        }
        if (k == 0)
            break;
        lm__append(&s->wbuf, &n, &s->wcap, data, (size_t)k); /* nghttp2 keeps no copy: take it now */
    }
    if (n == 0) {
        lm__h2_maybe_close(s);
        return;
    }
    uv_buf_t b = uv_buf_init(s->wbuf, (unsigned)n);
    s->writing = true;
    if (lm_proxy_conn_write(s->c, &s->wr, &s->wd, &b, 1, lm__h2_written) != LM_OK) {
        s->writing = false;
        lm_proxy_conn_close(s->c);
    }
}

/* ------------------------------------------------------------------ */
/* streams: lifetime                                                   */

static void lm__h2_stream_free(lm_h2_stream_t *st)
{
    if (st->queued > 0) { /* a task on the defer list points here: the last one frees */
        st->zombie = true;
        return;
    }
    lm_h2_session_t *s = st->sess;
    if (st->prev)
        st->prev->next = st->next;
    else
        s->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    free(st->method);
    free(st->path);
    free(st->authority);
    free(st->protocol);
    free(st->hdrs);
    free(st->cookie);
    free(st->in);
    free(st->rhead);
    free(st->out);
    free(st->trailers);
    free(st);
}

static void lm__h2_task_done(lm_h2_stream_t *st)
{
    if (--st->queued == 0 && st->zombie)
        lm__h2_stream_free(st);
}

static void lm__h2_done_task(lm_defer_t *d)
{
    lm__h2_done_t *dn = lm_container_of(d, lm__h2_done_t, d);
    lm_h2_stream_t *st = dn->st;
    uv_write_t *req = dn->req;
    uv_write_cb cb = dn->cb;
    free(dn);
    if (st->sc) /* proxy.c still runs the stream */
        cb(req, 0);
    lm__h2_task_done(st);
}

/* proxy.c's write completes at the end of this loop turn */
static void lm__h2_complete(lm_h2_stream_t *st, uv_write_t *req, uv_write_cb cb)
{
    lm__h2_done_t *dn = malloc(sizeof(*dn));
    if (!dn)
        abort();
    dn->st = st;
    dn->req = req;
    dn->cb = cb;
    dn->d.fn = lm__h2_done_task;
    st->queued++;
    lm_worker_defer_task(st->sess->c->w, &dn->d);
}

/* ------------------------------------------------------------------ */
/* streams: request side                                               */

static void lm__h2_pump(lm_h2_stream_t *st);

static void lm__h2_pump_task(lm_defer_t *d)
{
    lm_h2_stream_t *st = lm_container_of(d, lm_h2_stream_t, pump);
    st->pump_queued = false;
    lm_h2_session_t *s = st->sess;
    lm__h2_pump(st);
    lm__h2_task_done(st); /* may free st */
    lm__h2_flush(s);
}

static void lm__h2_queue_pump(lm_h2_stream_t *st)
{
    if (!st->pump_queued && st->sc) {
        st->pump_queued = true;
        st->queued++;
        st->pump.fn = lm__h2_pump_task;
        lm_worker_defer_task(st->sess->c->w, &st->pump);
    }
}

/* The request head is complete: hand it, as HTTP/1.1, to a new stream connection. */
static int lm__h2_start_request(lm_h2_stream_t *st, bool end_stream)
{
    lm_h2_session_t *s = st->sess;
    char *head = NULL;
    size_t len = 0, cap = 0;
    const char *path = st->path ? st->path : st->authority ? st->authority : "/"; /* CONNECT: the authority */
    if (!st->method)
        return LM_ERROR;
    /* RFC 8441: a WebSocket over an HTTP/2 stream reaches the upstream as an HTTP/1.1 upgrade */
    st->ws = strcmp(st->method, "CONNECT") == 0 && st->protocol && strcasecmp(st->protocol, "websocket") == 0;
    if (st->ws) {
        unsigned char key[16];
        char key64[32];
        RAND_bytes(key, sizeof(key));
        EVP_EncodeBlock((unsigned char *)key64, key, sizeof(key));
        lm__append(&head, &len, &cap, "GET ", 4);
        lm__append(&head, &len, &cap, path, strlen(path));
        lm__append(&head, &len, &cap, " HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: ", 71);
        lm__append(&head, &len, &cap, key64, strlen(key64));
        lm__append(&head, &len, &cap, "\r\n", 2);
        end_stream = true; /* no body: what follows is the tunnel */
    } else {
        lm__append(&head, &len, &cap, st->method, strlen(st->method));
        lm__append(&head, &len, &cap, " ", 1);
        lm__append(&head, &len, &cap, path, strlen(path));
        lm__append(&head, &len, &cap, " HTTP/1.1\r\n", 11);
    }
    if (st->authority) {
        lm__append(&head, &len, &cap, "Host: ", 6);
        lm__append(&head, &len, &cap, st->authority, strlen(st->authority));
        lm__append(&head, &len, &cap, "\r\n", 2);
    }
    if (st->hdrs_len)
        lm__append(&head, &len, &cap, st->hdrs, st->hdrs_len);
    if (st->cookie_len) {
        lm__append(&head, &len, &cap, "Cookie: ", 8);
        lm__append(&head, &len, &cap, st->cookie, st->cookie_len);
        lm__append(&head, &len, &cap, "\r\n", 2);
    }
    if (!end_stream && !st->has_cl) {
        st->chunked_in = true;
        lm__append(&head, &len, &cap, "Transfer-Encoding: chunked\r\n", 28);
    }
    lm__append(&head, &len, &cap, "\r\n", 2);
    free(st->hdrs);
    st->hdrs = NULL;
    st->hdrs_len = st->hdrs_cap = 0;
    st->in_ended = end_stream && !st->ws;
    st->started = true;
    lm_conn_t *sc = lm_proxy_stream_open(s->c, st, len);
    if (!sc) {
        free(head);
        return LM_ERROR;
    }
    st->sc = sc;
    s->active++;
    uv_timer_stop(&s->c->timer);
    memcpy(sc->buf, head, len);
    free(head);
    lm_proxy_stream_input(sc, len);
    return LM_OK;
}

/* Moves request body bytes into the stream connection's buffer as far as
 * proxy.c reads and has room (chunk-framed when the client gave no
 * content-length), and acknowledges them to the client. */
static void lm__h2_pump(lm_h2_stream_t *st)
{
    lm_conn_t *sc = st->sc;
    if (!sc || sc->closing || !sc->reading)
        return;
    bool pending = st->in_len > 0 || (st->in_ended && st->chunked_in && !st->eof_given);
    if (pending && sc->cap - sc->len <= 12) { /* full: lm_h2_stream_read_start resumes */
        lm_proxy_stream_read_stop(sc);
        return;
    }
    size_t before = sc->len, consumed = 0;
    const size_t frame = st->chunked_in ? 12 : 0; /* "%zx\r\n" ... "\r\n" */
    while (st->in_len > 0 && sc->cap - sc->len > frame) {
        size_t k = LM_MIN(st->in_len, sc->cap - sc->len - frame);
        if (st->chunked_in)
            sc->len += (size_t)snprintf(sc->buf + sc->len, 11, "%zx\r\n", k);
        memcpy(sc->buf + sc->len, st->in, k);
        sc->len += k;
        if (st->chunked_in) {
            memcpy(sc->buf + sc->len, "\r\n", 2);
            sc->len += 2;
        }
        memmove(st->in, st->in + k, st->in_len - k);
        st->in_len -= k;
        consumed += k;
    }
    if (st->in_len == 0 && st->in_ended && st->chunked_in && !st->eof_given && sc->cap - sc->len >= 5) {
        memcpy(sc->buf + sc->len, "0\r\n\r\n", 5);
        sc->len += 5;
        st->eof_given = true;
    }
    if (consumed)
        nghttp2_session_consume(st->sess->ng, st->id, consumed);
    size_t added = sc->len - before;
    if (added) {
        sc->len = before; /* proxy.c appends it itself */
        lm_proxy_stream_input(sc, added);
    }
    if (st->ws && st->in_ended && st->in_len == 0 && !st->eof_given && st->sc == sc && !sc->closing) {
        st->eof_given = true; /* the client ended its side of the tunnel */
        lm_proxy_stream_eof(sc);
        return;
    }
    /* more waits: again at the end of this loop turn (stops there if proxy.c left no room) */
    if (st->sc == sc && !sc->closing && sc->reading &&
        (st->in_len > 0 || (st->in_ended && st->chunked_in && !st->eof_given)))
        lm__h2_queue_pump(st);
}

void lm_h2_stream_read_start(lm_conn_t *sc)
{
    lm_h2_stream_t *st = sc->h2s;
    if (st && (st->in_len || (st->in_ended && st->chunked_in && !st->eof_given)))
        lm__h2_queue_pump(st);
}

/* ------------------------------------------------------------------ */
/* streams: response side                                              */

static bool lm__h2_hop(lm_str_t n);

/* At the end of the body: trailers (gRPC's status) instead of END_STREAM on DATA. */
static void lm__h2_end_body(lm_h2_stream_t *st, uint32_t *flags)
{
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (!st->trailers_len)
        return;
    nghttp2_nv nva[64];
    size_t nv = 0;
    char *p = st->trailers, *end = st->trailers + st->trailers_len;
    while (p < end && nv < LM_ARRAY_SIZE(nva)) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        char *colon = memchr(p, ':', (size_t)(end - p));
        if (!eol || !colon || colon > eol)
            break;
        char *v = colon + 1;
        while (v < eol && (*v == ' ' || *v == '\t'))
            v++;
        char *ve = eol;
        while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        for (char *q = p; q < colon; q++)
            *q = lm_tolower(*q);
        lm_str_t name = { p, (size_t)(colon - p) };
        if (!lm__h2_hop(name))
            nva[nv++] = (nghttp2_nv){ (uint8_t *)p, (uint8_t *)v, (size_t)(colon - p), (size_t)(ve - v),
                                      NGHTTP2_NV_FLAG_NONE };
        p = eol + 1;
    }
    if (nv && nghttp2_submit_trailer(st->sess->ng, st->id, nva, nv) == 0)
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
}

static ssize_t lm__h2_read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                                nghttp2_data_source *src, void *ud)
{
    (void)ng, (void)id, (void)ud;
    lm_h2_stream_t *st = src->ptr;
    size_t avail = st->out_len - st->out_off;
    if (avail == 0) {
        if (st->ended) {
            lm__h2_end_body(st, flags);
            return 0;
        }
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t k = LM_MIN(avail, len);
    memcpy(buf, st->out + st->out_off, k);
    st->out_off += k;
    st->sent += k;
    if (st->out_off == st->out_len)
        st->out_off = st->out_len = 0;
    if (st->ended && st->out_len == 0)
        lm__h2_end_body(st, flags);
    /* proxy.c's writes whose bytes are all framed complete now */
    size_t i = 0;
    while (i < st->num_waits && st->waits[i].end <= st->sent) {
        lm__h2_complete(st, st->waits[i].req, st->waits[i].cb);
        i++;
    }
    if (i) {
        memmove(st->waits, st->waits + i, (st->num_waits - i) * sizeof(st->waits[0]));
        st->num_waits -= i;
    }
    return (ssize_t)k;
}

static bool lm__h2_hop(lm_str_t n)
{
    static const char *const hop[] = { "connection", "keep-alive", "proxy-connection", "transfer-encoding",
                                       "upgrade", NULL };
    for (size_t i = 0; hop[i]; i++)
        if (lm_str_ieq_cstr(n, hop[i]))
            return true;
    return false;
}

/* Parses the HTTP/1.1 head proxy.c wrote and submits it as HEADERS. Returns
 * the bytes it used, 0 when incomplete, -1 on garbage. Interim (1xx) heads
 * are used up and not passed on. */
static ssize_t lm__h2_submit_head(lm_h2_stream_t *st, const char *p, size_t n)
{
    lm_http_header_t headers[LM_MAX_REQ_HEADERS];
    lm_http1_response_t resp;
    memset(&resp, 0, sizeof(resp));
    resp.headers = headers;
    resp.headers_cap = LM_MAX_REQ_HEADERS;
    int rc = lm_http1_parse_response(p, n, n, true, &resp);
    if (rc == LM_AGAIN)
        return 0;
    if (rc < 0)
        return -1;
    bool tunnel = st->ws && resp.status == 101;
    if (resp.status < 200 && !tunnel)
        return rc;
    nghttp2_nv nva[LM_MAX_REQ_HEADERS + 1];
    char status[12];
    snprintf(status, sizeof(status), "%03d", tunnel ? 200 : resp.status % 1000); /* RFC 8441: 200 opens it */
    size_t nv = 0;
    nva[nv++] = (nghttp2_nv){ (uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE };
    char lower[8192];
    size_t lo = 0;
    for (size_t i = 0; i < resp.num_headers; i++) {
        lm_str_t name = headers[i].name;
        /* hop-by-hop (the parser flags them, with those Connection names) stay on this side */
        if ((headers[i].flags & LM_HDR_F_HOP) || name.len > sizeof(lower) - lo ||
            (tunnel && lm_str_ieq_cstr(name, "sec-websocket-accept")))
            continue;
        for (size_t j = 0; j < name.len; j++) /* names are lower-case in HTTP/2 */
            lower[lo + j] = lm_tolower(name.ptr[j]);
        nva[nv++] = (nghttp2_nv){ (uint8_t *)lower + lo, (uint8_t *)headers[i].value.ptr, name.len,
                                  headers[i].value.len, NGHTTP2_NV_FLAG_NONE };
        lo += name.len;
    }
    bool bodiless = st->is_head || resp.status == 204 || resp.status == 304;
    const lm_http_header_t *cl = lm_http1_find(headers, resp.num_headers, LM_HDR_CONTENT_LENGTH);
    if (cl && lm_str_eq(cl->value, LM_STR("0")) && !tunnel)
        bodiless = true; /* END_STREAM on HEADERS */
    if (lm_http1_find_name(headers, resp.num_headers, LM_STR("grpc-status")))
        bodiless = true; /* a gRPC trailers-only answer is exactly one HEADERS frame */
    nghttp2_data_provider prd = { .source.ptr = st, .read_callback = lm__h2_read_body };
    if (nghttp2_submit_response(st->sess->ng, st->id, nva, nv, bodiless ? NULL : &prd) != 0)
        return -1;
    st->submitted = true;
    st->head_done = true;
    if (bodiless)
        st->ended = true;
    return rc;
}

int lm_h2_stream_write(lm_conn_t *sc, uv_write_t *req, uv_buf_t *bufs, unsigned n, uv_write_cb cb)
{
    lm_h2_stream_t *st = sc->h2s;
    if (!st || st->closed || st->reset || st->sess->closing)
        return LM_ERROR;
    for (unsigned i = 0; i < n; i++) {
        if (st->head_done) {
            if (!(st->is_head || st->ended)) /* a bodiless response drops what follows */
                lm__append(&st->out, &st->out_len, &st->out_cap, bufs[i].base, bufs[i].len);
            st->written += st->ended ? 0 : bufs[i].len;
            continue;
        }
        lm__append(&st->rhead, &st->rhead_len, &st->rhead_cap, bufs[i].base, bufs[i].len);
        ssize_t used;
        while (!st->head_done && (used = lm__h2_submit_head(st, st->rhead, st->rhead_len)) != 0) {
            if (used < 0)
                return LM_ERROR;
            memmove(st->rhead, st->rhead + used, st->rhead_len - (size_t)used);
            st->rhead_len -= (size_t)used;
        }
        if (st->head_done && st->rhead_len) { /* what follows the head is body */
            if (!st->ended) {
                lm__append(&st->out, &st->out_len, &st->out_cap, st->rhead, st->rhead_len);
                st->written += st->rhead_len;
            }
            st->rhead_len = 0;
        }
    }
    if (st->submitted && st->written > st->sent && st->num_waits < LM_H2_MAX_WRITES)
        st->waits[st->num_waits++] = (lm__h2_wait_t){ st->written, req, cb };
    else
        lm__h2_complete(st, req, cb); /* everything already framed or copied */
    if (st->submitted)
        nghttp2_session_resume_data(st->sess->ng, st->id);
    lm__h2_flush(st->sess);
    return LM_OK;
}

void lm_h2_stream_detach(lm_conn_t *sc, bool complete)
{
    lm_h2_stream_t *st = sc->h2s;
    if (!st)
        return;
    sc->h2s = NULL;
    st->sc = NULL;
    st->queued++; /* nghttp2 may close the stream below: st stays until the end */
    lm_h2_session_t *s = st->sess;
    s->active--;
    st->num_waits = 0; /* nobody left to tell */
    if (!st->closed && !s->closing) {
        if (complete && st->submitted) {
            st->ended = true;
            nghttp2_session_resume_data(s->ng, st->id);
            if (!st->in_ended) /* the answer is complete: the client need not send the rest */
                nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
        } else {
            st->reset = true;
            nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        }
        if (st->in_len) /* body bytes nobody will take still count against the connection window */
            nghttp2_session_consume_connection(s->ng, st->in_len);
        st->in_len = 0;
        lm__h2_flush(s);
    }
    if (s->active == 0 && !s->closing) {
        if (s->goaway)
            lm__h2_maybe_close(s);
        else
            lm_proxy_conn_idle(s->c);
    }
    if (st->closed)
        lm__h2_stream_free(st); /* a zombie until the guard above is dropped */
    lm__h2_task_done(st);
}

/* ------------------------------------------------------------------ */
/* nghttp2 callbacks                                                   */

static int lm__on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    lm_h2_session_t *s = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    lm_h2_stream_t *st = calloc(1, sizeof(*st));
    if (!st)
        abort();
    st->sess = s;
    st->id = f->hd.stream_id;
    st->next = s->streams;
    if (s->streams)
        s->streams->prev = st;
    s->streams = st;
    nghttp2_session_set_stream_user_data(ng, st->id, st);
    return 0;
}

static int lm__on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                         const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    (void)flags, (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    lm_h2_stream_t *st = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!st || st->started)
        return 0; /* request trailers are not passed on */
    st->header_bytes += nlen + vlen + 32;
    if (st->header_bytes > LM_H2_MAX_HEADER_LIST)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
    lm_str_t n = { (const char *)name, nlen };
    if (nlen && name[0] == ':') { /* nghttp2 checks pseudo-headers (presence, order, duplicates) */
        char **slot = lm_str_eq(n, LM_STR(":method"))      ? &st->method
                      : lm_str_eq(n, LM_STR(":path"))      ? &st->path
                      : lm_str_eq(n, LM_STR(":authority")) ? &st->authority
                      : lm_str_eq(n, LM_STR(":protocol"))  ? &st->protocol
                                                           : NULL; /* :scheme: the connection tells */
        if (slot && !*slot)
            *slot = lm__dup(value, vlen);
        if (slot == &st->method)
            st->is_head = vlen == 4 && memcmp(value, "HEAD", 4) == 0;
        return 0;
    }
    if (lm_str_eq(n, LM_STR("host"))) {
        if (!st->authority)
            st->authority = lm__dup(value, vlen);
        return 0; /* :authority wins */
    }
    if (lm_str_eq(n, LM_STR("cookie"))) { /* crumbs joined again (RFC 9113 8.2.3) */
        if (st->cookie_len)
            lm__append(&st->cookie, &st->cookie_len, &st->cookie_cap, "; ", 2);
        lm__append(&st->cookie, &st->cookie_len, &st->cookie_cap, value, vlen);
        return 0;
    }
    if (lm_str_eq(n, LM_STR("content-length")))
        st->has_cl = true;
    lm__append(&st->hdrs, &st->hdrs_len, &st->hdrs_cap, name, nlen);
    lm__append(&st->hdrs, &st->hdrs_len, &st->hdrs_cap, ": ", 2);
    lm__append(&st->hdrs, &st->hdrs_len, &st->hdrs_cap, value, vlen);
    lm__append(&st->hdrs, &st->hdrs_len, &st->hdrs_cap, "\r\n", 2);
    return 0;
}

static int lm__on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
        return 0;
    lm_h2_stream_t *st = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!st)
        return 0;
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (f->hd.type == NGHTTP2_HEADERS && !st->started) {
        if (lm__h2_start_request(st, end) != LM_OK)
            nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        return 0;
    }
    if (end && !st->in_ended) { /* DATA or trailers with END_STREAM */
        st->in_ended = true;
        lm__h2_pump(st);
    }
    return 0;
}

static int lm__on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    (void)flags, (void)ud;
    lm_h2_stream_t *st = nghttp2_session_get_stream_user_data(ng, id);
    if (!st || !st->sc) {
        nghttp2_session_consume(ng, id, len); /* nobody reads it: acknowledge and drop */
        return 0;
    }
    lm__append(&st->in, &st->in_len, &st->in_cap, data, len);
    lm__h2_pump(st);
    return 0;
}

static int lm__on_stream_close(nghttp2_session *ng, int32_t id, uint32_t err, void *ud)
{
    (void)ud, (void)err;
    lm_h2_stream_t *st = nghttp2_session_get_stream_user_data(ng, id);
    if (!st)
        return 0;
    st->closed = true;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    if (st->sc) /* the client reset it: proxy.c stops (lm_h2_stream_detach frees st) */
        lm_proxy_stream_abort(st->sc);
    else
        lm__h2_stream_free(st);
    return 0;
}

/* ------------------------------------------------------------------ */
/* sessions                                                            */

void lm_h2_global_init(void)
{
    nghttp2_session_callbacks_new(&lm__cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(lm__cbs, lm__on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(lm__cbs, lm__on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(lm__cbs, lm__on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(lm__cbs, lm__on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(lm__cbs, lm__on_stream_close);
    nghttp2_option_new(&lm__opt);
    nghttp2_option_set_no_auto_window_update(lm__opt, 1);
    nghttp2_option_set_max_continuations(lm__opt, 8);             /* CVE-2024-27316 */
    nghttp2_option_set_stream_reset_rate_limit(lm__opt, 200, 50); /* CVE-2023-44487: 200 burst, 50 per second */
}

void lm_h2_global_cleanup(void)
{
    nghttp2_session_callbacks_del(lm__cbs);
    nghttp2_option_del(lm__opt);
    lm__cbs = NULL;
    lm__opt = NULL;
}

int lm_h2_start(lm_conn_t *c)
{
    lm_h2_session_t *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->c = c;
    if (nghttp2_session_server_new2(&s->ng, lm__cbs, s, lm__opt) != 0) {
        free(s);
        return LM_ERROR;
    }
    nghttp2_settings_entry iv[] = {
        { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, LM_H2_MAX_STREAMS },
        { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, LM_H2_STREAM_WINDOW },
        { NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, LM_H2_MAX_HEADER_LIST },
        { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
        { NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1 }, /* RFC 8441 WebSockets */
    };
    nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, LM_ARRAY_SIZE(iv));
    nghttp2_session_set_local_window_size(s->ng, NGHTTP2_FLAG_NONE, 0, LM_H2_CONN_WINDOW);
    c->h2 = s;
    return LM_OK;
}

void lm_h2_input(lm_conn_t *c)
{
    lm_h2_session_t *s = c->h2;
    if (!s || s->closing)
        return;
    ssize_t rc = nghttp2_session_mem_recv(s->ng, (const uint8_t *)c->buf, c->len);
    c->len = 0;
    if (rc < 0) {
        lm_log_debug("client %s: http2: %s", c->ip, nghttp2_strerror((int)rc));
        if (rc == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
            lm_proxy_conn_close(c);
            return;
        }
        nghttp2_session_terminate_session(s->ng, NGHTTP2_PROTOCOL_ERROR); /* GOAWAY, then close */
    }
    if (!s->closing)
        lm__h2_flush(s);
}

void lm_h2_shutdown(lm_conn_t *c)
{
    lm_h2_session_t *s = c->h2;
    if (!s || s->goaway || s->closing)
        return;
    s->goaway = true;
    nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(s->ng),
                          NGHTTP2_NO_ERROR, NULL, 0);
    lm__h2_flush(s);
    if (s->active == 0)
        lm__h2_maybe_close(s);
}

void lm_h2_close(lm_conn_t *c)
{
    lm_h2_session_t *s = c->h2;
    if (!s || s->closing)
        return;
    s->closing = true;
    for (lm_h2_stream_t *st = s->streams; st; st = st->next)
        if (st->sc)
            lm_proxy_stream_abort(st->sc);
}

void lm_h2_free(lm_conn_t *c)
{
    lm_h2_session_t *s = c->h2;
    if (!s)
        return;
    while (s->streams) {
        s->streams->queued = 0; /* the loop turn that queued them is over */
        lm__h2_stream_free(s->streams);
    }
    nghttp2_session_del(s->ng);
    free(s->wbuf);
    free(s);
    c->h2 = NULL;
}

void lm_h2_stream_trailers(lm_conn_t *sc, const char *lines, size_t len)
{
    lm_h2_stream_t *st = sc->h2s;
    if (!st || st->trailers_len)
        return;
    st->trailers = malloc(len);
    if (!st->trailers)
        abort();
    memcpy(st->trailers, lines, len);
    st->trailers_len = len;
}

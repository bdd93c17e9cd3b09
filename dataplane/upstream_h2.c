/*
 * upstream_h2.c - HTTP/2 to upstreams (services with protocol grpc or grpcs),
 * over nghttp2, one stream at a time per connection (the connection is kept
 * alive and pooled like an HTTP/1.1 one).
 *
 * proxy.c keeps speaking HTTP/1.1: what it writes for the upstream (a head,
 * then a body, chunked or with a length) becomes HEADERS and DATA; what the
 * upstream answers becomes an HTTP/1.1 response in u->buf: the head with
 * "Transfer-Encoding: chunked", DATA as chunks, trailers (grpc-status) in the
 * last chunk. Flow control is manual: DATA is acknowledged as it moves into
 * u->buf, so a slow client holds the upstream back.
 */
#include "lm_uh2.h"
#include "lm_log.h"
#include "lm_tls.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lm_uh2 {
    nghttp2_session *ng;
    lm_upconn_t *u;
    int32_t sid;            /* the current stream, 0 when none */
    /* request: proxy.c's HTTP/1.1 bytes */
    bool head_sent, body_chunked, body_done;
    uint64_t body_left;     /* content-length bodies */
    lm_chunked_t dec;
    char *hbuf;             /* the head until complete */
    size_t hlen, hcap;
    char *q;                /* body bytes waiting for DATA frames */
    size_t qoff, qlen, qcap;
    void (*done)(lm_upconn_t *u, int status); /* proxy.c's write completes when its bytes are framed */
    /* response: HTTP/1.1 bytes for u->buf */
    char *out;
    size_t ooff, olen, ocap;
    size_t unacked;         /* DATA bytes in out not yet acknowledged */
    char *rh;               /* response head being collected */
    size_t rhlen, rhcap;
    int status;
    bool in_trailers, ended, failed, goaway;
    /* writing */
    uv_write_t wr;
    lm_defer_t wd;
    char *wbuf;
    size_t wcap;
    bool writing;
};

static nghttp2_session_callbacks *lm__cbs;

static void lm__add(char **p, size_t *len, size_t *cap, const void *d, size_t n)
{
    if (*len + n > *cap) {
        size_t nc = *cap ? *cap : 1024;
        while (nc < *len + n)
            nc *= 2;
        char *np = realloc(*p, nc);
        if (!np)
            abort();
        *p = np;
        *cap = nc;
    }
    memcpy(*p + *len, d, n);
    *len += n;
}

#define LM__ADD_LIT(h, f, lit) lm__add(&(h)->f, &(h)->f##len, &(h)->f##cap, (lit), sizeof(lit) - 1)

/* ------------------------------------------------------------------ */
/* output to the socket                                                */

static void lm__uh2_flush(lm_uh2_t *h);

static void lm__uh2_written(uv_write_t *wr, int status)
{
    lm_uh2_t *h = lm_container_of(wr, lm_uh2_t, wr);
    h->writing = false;
    lm_upconn_t *u = h->u;
    if (u->closing)
        return;
    if (status < 0) {
        h->failed = true;
        if (h->done) {
            void (*done)(lm_upconn_t *, int) = h->done;
            h->done = NULL;
            done(u, status);
        }
        return;
    }
    lm__uh2_flush(h);
}

static void lm__uh2_flush(lm_uh2_t *h)
{
    lm_upconn_t *u = h->u;
    if (h->writing || u->closing)
        return;
    size_t n = 0;
    while (n < 65536) {
        const uint8_t *data;
        ssize_t k = nghttp2_session_mem_send(h->ng, &data);
        if (k <= 0) {
            if (k < 0)
                h->failed = true;
            break;
        }
        lm__add(&h->wbuf, &n, &h->wcap, data, (size_t)k);
    }
    if (n) {
        uv_buf_t b = uv_buf_init(h->wbuf, (unsigned)n);
        h->writing = true;
        int rc = u->tls ? lm_tls_write(u->tls, u->w, (uv_stream_t *)&u->tcp, &h->wr, &b, 1, lm__uh2_written)
                        : lm_stream_write(u->w, (uv_stream_t *)&u->tcp, &h->wr, &h->wd, &b, 1, lm__uh2_written);
        if (rc < 0) {
            h->writing = false;
            h->failed = true;
        }
        return;
    }
    /* all framed: proxy.c's pending write completes */
    if (h->done && h->qlen == h->qoff) {
        void (*done)(lm_upconn_t *, int) = h->done;
        h->done = NULL;
        done(u, h->failed ? UV_EPIPE : 0);
    }
}

/* ------------------------------------------------------------------ */
/* request: HTTP/1.1 from proxy.c -> HEADERS + DATA                    */

static ssize_t lm__uh2_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                            nghttp2_data_source *src, void *ud)
{
    (void)ng, (void)id, (void)ud;
    lm_uh2_t *h = src->ptr;
    size_t avail = h->qlen - h->qoff;
    if (avail == 0) {
        if (h->body_done) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            return 0;
        }
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t k = LM_MIN(avail, len);
    memcpy(buf, h->q + h->qoff, k);
    h->qoff += k;
    if (h->qoff == h->qlen)
        h->qoff = h->qlen = 0;
    if (h->body_done && h->qlen == 0)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)k;
}

static bool lm__hop(lm_str_t n)
{
    static const char *const hop[] = { "connection", "keep-alive", "proxy-connection", "transfer-encoding",
                                       "upgrade", "host", "te", "content-length", NULL };
    for (size_t i = 0; hop[i]; i++)
        if (lm_str_ieq_cstr(n, hop[i]))
            return true;
    return false;
}

/* The head is complete: HEADERS (END_STREAM when there is no body). Returns
 * the head's length, 0 when incomplete, -1 on garbage. */
static ssize_t lm__uh2_submit(lm_uh2_t *h)
{
    lm_http_header_t hd[LM_MAX_REQ_HEADERS];
    lm_http1_request_t req;
    memset(&req, 0, sizeof(req));
    req.headers = hd;
    req.headers_cap = LM_MAX_REQ_HEADERS;
    lm_http1_limits_t lim = LM_HTTP1_DEFAULT_LIMITS;
    lim.max_head = 1 << 20;
    int rc = lm_http1_parse_request(h->hbuf, h->hlen, &lim, &req);
    if (rc == LM_AGAIN)
        return 0;
    if (rc < 0)
        return -1;
    nghttp2_nv nv[LM_MAX_REQ_HEADERS + 8];
    size_t n = 0;
#define LM__NV(name, v, vl) \
    (nv[n++] = (nghttp2_nv){ (uint8_t *)(name), (uint8_t *)(v), sizeof(name) - 1, (vl), NGHTTP2_NV_FLAG_NONE })
    LM__NV(":method", req.method.ptr, req.method.len);
    LM__NV(":scheme", h->u->tls ? "https" : "http", h->u->tls ? 5 : 4);
    LM__NV(":authority", req.host.ptr, req.host.len);
    LM__NV(":path", req.target.ptr, req.target.len);
    LM__NV("te", "trailers", 8); /* gRPC servers want it */
    char lower[8192];
    size_t lo = 0;
    for (size_t i = 0; i < req.num_headers; i++) {
        lm_str_t name = hd[i].name;
        if (lm__hop(name) || name.len > sizeof(lower) - lo)
            continue;
        for (size_t j = 0; j < name.len; j++)
            lower[lo + j] = lm_tolower(name.ptr[j]);
        nv[n++] = (nghttp2_nv){ (uint8_t *)lower + lo, (uint8_t *)hd[i].value.ptr, name.len, hd[i].value.len,
                                NGHTTP2_NV_FLAG_NONE };
        lo += name.len;
    }
#undef LM__NV
    h->body_chunked = req.body_kind == LM_BODY_CHUNKED;
    h->body_left = req.body_kind == LM_BODY_LENGTH ? req.content_length : 0;
    h->body_done = req.body_kind == LM_BODY_NONE || (req.body_kind == LM_BODY_LENGTH && req.content_length == 0);
    memset(&h->dec, 0, sizeof(h->dec));
    nghttp2_data_provider prd = { .source.ptr = h, .read_callback = lm__uh2_body };
    int32_t sid = nghttp2_submit_request(h->ng, NULL, nv, n, h->body_done ? NULL : &prd, h);
    if (sid < 0)
        return -1;
    h->sid = sid;
    h->head_sent = true;
    return rc;
}

/* Body bytes: de-chunked or counted into the DATA queue. */
static int lm__uh2_body_in(lm_uh2_t *h, const char *p, size_t len)
{
    if (h->body_done || len == 0)
        return LM_OK;
    if (!h->body_chunked) {
        size_t k = (size_t)LM_MIN((uint64_t)len, h->body_left);
        lm__add(&h->q, &h->qlen, &h->qcap, p, k);
        h->body_left -= k;
        h->body_done = h->body_left == 0;
        return LM_OK;
    }
    size_t at = h->qlen;
    lm__add(&h->q, &h->qlen, &h->qcap, p, len); /* decoded in place */
    size_t dl = len, rest = 0;
    int rc = lm_chunked_decode(&h->dec, h->q + at, &dl, &rest);
    if (rc == LM_ERROR)
        return LM_ERROR;
    h->qlen = at + dl;
    if (rc == LM_OK)
        h->body_done = true;
    return LM_OK;
}

int lm_uh2_write(lm_upconn_t *u, uv_buf_t *bufs, unsigned n, void (*done)(lm_upconn_t *u, int status))
{
    lm_uh2_t *h = u->h2;
    if (h->failed || h->goaway)
        return LM_ERROR;
    for (unsigned i = 0; i < n; i++) {
        const char *p = bufs[i].base;
        size_t len = bufs[i].len;
        if (!h->head_sent) {
            lm__add(&h->hbuf, &h->hlen, &h->hcap, p, len);
            ssize_t used = lm__uh2_submit(h);
            if (used < 0)
                return LM_ERROR;
            if (used == 0)
                continue;
            if (lm__uh2_body_in(h, h->hbuf + used, h->hlen - (size_t)used) != LM_OK)
                return LM_ERROR;
            h->hlen = 0;
            continue;
        }
        if (lm__uh2_body_in(h, p, len) != LM_OK)
            return LM_ERROR;
    }
    if (h->sid)
        nghttp2_session_resume_data(h->ng, h->sid);
    h->done = done;
    lm__uh2_flush(h);
    return LM_OK;
}

/* ------------------------------------------------------------------ */
/* response: HEADERS + DATA -> HTTP/1.1 for u->buf                     */

static int lm__on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                         const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    (void)ng, (void)flags;
    lm_uh2_t *h = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->hd.stream_id != h->sid)
        return 0;
    lm_str_t n = { (const char *)name, nlen };
    if (lm_str_eq(n, LM_STR(":status"))) {
        h->status = 0;
        for (size_t i = 0; i < vlen && value[i] >= '0' && value[i] <= '9'; i++)
            h->status = h->status * 10 + (value[i] - '0');
        return 0;
    }
    if (nlen && name[0] == ':')
        return 0;
    if (!h->in_trailers && (lm_str_eq(n, LM_STR("content-length")) || lm__hop(n)))
        return 0; /* the body goes out chunked */
    lm__add(&h->rh, &h->rhlen, &h->rhcap, name, nlen);
    lm__add(&h->rh, &h->rhlen, &h->rhcap, ": ", 2);
    lm__add(&h->rh, &h->rhlen, &h->rhcap, value, vlen);
    lm__add(&h->rh, &h->rhlen, &h->rhcap, "\r\n", 2);
    return 0;
}

static int lm__on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    (void)ng;
    lm_uh2_t *h = ud;
    if (f->hd.type == NGHTTP2_HEADERS && f->hd.stream_id == h->sid)
        h->rhlen = 0;
    return 0;
}

static int lm__on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    (void)ng;
    lm_uh2_t *h = ud;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        h->goaway = true;
        return 0;
    }
    if (f->hd.stream_id != h->sid || h->sid == 0)
        return 0;
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (f->hd.type == NGHTTP2_HEADERS) {
        if (!h->in_trailers && h->status >= 100 && h->status < 200) {
            h->rhlen = 0; /* interim: not passed on */
            return 0;
        }
        if (!h->in_trailers) {
            char line[64];
            int ll = snprintf(line, sizeof(line), "HTTP/1.1 %d OK\r\n", h->status);
            lm__add(&h->out, &h->olen, &h->ocap, line, (size_t)ll);
            lm__add(&h->out, &h->olen, &h->ocap, h->rh, h->rhlen);
            lm__add(&h->out, &h->olen, &h->ocap, "Transfer-Encoding: chunked\r\n\r\n", 30);
            h->rhlen = 0;
            h->in_trailers = true; /* a HEADERS frame after this one carries trailers */
            if (end) {
                lm__add(&h->out, &h->olen, &h->ocap, "0\r\n\r\n", 5);
                h->ended = true;
            }
        } else if (end) { /* trailers */
            lm__add(&h->out, &h->olen, &h->ocap, "0\r\n", 3);
            lm__add(&h->out, &h->olen, &h->ocap, h->rh, h->rhlen);
            lm__add(&h->out, &h->olen, &h->ocap, "\r\n", 2);
            h->rhlen = 0;
            h->ended = true;
        }
    } else if (f->hd.type == NGHTTP2_DATA && end && !h->ended) {
        lm__add(&h->out, &h->olen, &h->ocap, "0\r\n\r\n", 5);
        h->ended = true;
    }
    return 0;
}

static int lm__on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    (void)flags;
    lm_uh2_t *h = ud;
    if (id != h->sid || len == 0) {
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    char sz[24];
    int sl = snprintf(sz, sizeof(sz), "%zx\r\n", len);
    lm__add(&h->out, &h->olen, &h->ocap, sz, (size_t)sl);
    lm__add(&h->out, &h->olen, &h->ocap, data, len);
    lm__add(&h->out, &h->olen, &h->ocap, "\r\n", 2);
    h->unacked += len;
    return 0;
}

static int lm__on_stream_close(nghttp2_session *ng, int32_t id, uint32_t err, void *ud)
{
    (void)ng;
    lm_uh2_t *h = ud;
    if (id == h->sid && !h->ended) {
        lm_log_info("upstream %s: http2 stream reset: %s", h->u->pool->key, nghttp2_http2_strerror(err));
        h->failed = true; /* the response is cut: proxy.c sees the end of a chunked body that never came */
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* the connection                                                      */

void lm_uh2_global_init(void)
{
    nghttp2_session_callbacks_new(&lm__cbs);
    nghttp2_session_callbacks_set_on_header_callback(lm__cbs, lm__on_header);
    nghttp2_session_callbacks_set_on_begin_headers_callback(lm__cbs, lm__on_begin_headers);
    nghttp2_session_callbacks_set_on_frame_recv_callback(lm__cbs, lm__on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(lm__cbs, lm__on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(lm__cbs, lm__on_stream_close);
}

void lm_uh2_global_cleanup(void)
{
    nghttp2_session_callbacks_del(lm__cbs);
    lm__cbs = NULL;
}

int lm_uh2_start(lm_upconn_t *u)
{
    lm_uh2_t *h = calloc(1, sizeof(*h));
    if (!h)
        abort();
    h->u = u;
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    int rc = nghttp2_session_client_new2(&h->ng, lm__cbs, h, opt);
    nghttp2_option_del(opt);
    if (rc != 0) {
        free(h);
        return LM_ERROR;
    }
    nghttp2_settings_entry iv[] = { { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
                                    { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 65535 } };
    nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, iv, LM_ARRAY_SIZE(iv));
    u->h2 = h;
    lm__uh2_flush(h);
    return LM_OK;
}

void lm_uh2_free(lm_upconn_t *u)
{
    lm_uh2_t *h = u->h2;
    if (!h)
        return;
    nghttp2_session_del(h->ng);
    free(h->hbuf);
    free(h->q);
    free(h->out);
    free(h->rh);
    free(h->wbuf);
    free(h);
    u->h2 = NULL;
}

int lm_uh2_recv(lm_upconn_t *u, const char *p, size_t n)
{
    lm_uh2_t *h = u->h2;
    ssize_t rc = nghttp2_session_mem_recv(h->ng, (const uint8_t *)p, n);
    if (rc < 0) {
        lm_log_info("upstream %s: http2: %s", u->pool->key, nghttp2_strerror((int)rc));
        h->failed = true;
        return LM_ERROR;
    }
    lm__uh2_flush(h); /* acknowledgements, window updates */
    return LM_OK;
}

ssize_t lm_uh2_drain(lm_upconn_t *u)
{
    lm_uh2_t *h = u->h2;
    size_t avail = h->olen - h->ooff;
    size_t room = u->cap - u->len;
    size_t k = LM_MIN(avail, room);
    if (k) {
        memcpy(u->buf + u->len, h->out + h->ooff, k);
        h->ooff += k;
        if (h->ooff == h->olen)
            h->ooff = h->olen = 0;
        /* acknowledge DATA as it leaves (framing bytes included: close enough, never more than sent) */
        size_t ack = LM_MIN(k, h->unacked);
        if (ack && h->sid) {
            nghttp2_session_consume(h->ng, h->sid, ack);
            h->unacked -= ack;
            lm__uh2_flush(h);
        }
        return (ssize_t)k;
    }
    if (avail == 0 && h->failed && !h->ended)
        return -1;
    return 0;
}

bool lm_uh2_pending(const lm_upconn_t *u)
{
    const lm_uh2_t *h = u->h2;
    return h && (h->olen > h->ooff || (h->failed && !h->ended));
}

bool lm_uh2_reusable(const lm_upconn_t *u)
{
    const lm_uh2_t *h = u->h2;
    return h && h->ended && !h->failed && !h->goaway && h->olen == h->ooff && h->qlen == h->qoff;
}

void lm_uh2_next(lm_upconn_t *u)
{
    lm_uh2_t *h = u->h2;
    if (h->sid && h->unacked)
        nghttp2_session_consume_connection(h->ng, h->unacked);
    h->sid = 0;
    h->head_sent = h->body_chunked = h->body_done = false;
    h->hlen = h->qoff = h->qlen = h->ooff = h->olen = h->rhlen = h->unacked = 0;
    h->status = 0;
    h->in_trailers = h->ended = false;
    h->done = NULL;
}

bool lm_uh2_alive(const lm_upconn_t *u)
{
    const lm_uh2_t *h = u->h2;
    return h && !h->failed && !h->goaway && nghttp2_session_want_read(h->ng);
}

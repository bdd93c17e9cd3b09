/*
 * proxy_int.h - shared by proxy.c (connections, request and response flow),
 * proxy_head.c (the upstream request head, path normalisation) and
 * proxy_body.c (request bodies read whole for plugins). Nothing else
 * includes it.
 */
#ifndef LM_PROXY_INT_H
#define LM_PROXY_INT_H

#include "lm_balancer.h"
#include "lm_proxy.h"

/* per-request bookkeeping kept beside lm_req_t (needs no header change) */
typedef struct {
    lm_req_t r;
    size_t req_inflight;  /* client-buffer bytes being written upstream */
    size_t resp_inflight; /* upstream-buffer bytes being written to the client */
    char req_chunk_hdr[24], resp_chunk_hdr[24];
    bool upstream_head_pending; /* head not yet written on the current connection */
    bool resp_writing;          /* a response write is in flight */
    bool up_eof;                /* the upstream closed (body delimited by close) */
    char *resp_head;            /* response head waiting for the first write */
    size_t resp_head_len;
    lm_http1_limits_t limits;
    const char *request_id;     /* the client's X-Request-Id when it does not fit r->request_id */
    lm_pick_t pick;             /* balancer: the address picked, those tried (lm_balancer.h) */
    size_t host_off, host_len;  /* the peer's Host value inside up_head (0 length: preserve_host) */
    /* request body read whole for plugins (proxy_body.c); LM__BODY_NONE: it streams */
    uint8_t body_state;
    char *body;                 /* de-chunked body (request arena) */
    size_t body_len, body_cap;
    bool ws;                    /* a WebSocket handshake (Upgrade: websocket) to pass on */
    bool grpc;                  /* a gRPC request (HTTP/2, application/grpc): errors as grpc-status */
    bool tunnel;                /* the upstream said 101: bytes flow both ways unparsed */
    lm_http1_request_t *held_h; /* the parsed head and route match kept while the body is read */
    lm_route_match_t *held_m;
} lm__req_ext_t;
#define LM__EXT(r) ((lm__req_ext_t *)(r))

enum {
    LM__BODY_NONE,    /* not read for plugins: streams (the hot path) */
    LM__BODY_READING, /* being read into x->body; the access phase waits */
    LM__BODY_READY,   /* whole in x->body: sent after the head with Content-Length */
    LM__BODY_PARTIAL, /* chunked, grew past LM_BODY_BUFFER_MAX: x->body goes out as the
                         first chunk, the rest streams; plugins see no body */
    LM__BODY_OVER,    /* Content-Length over LM_BODY_BUFFER_MAX: nothing read, it streams;
                         plugins see no body */
};

/* Appends s to the buffer being built (arena-grown). */
typedef struct {
    lm_arena_t *a;
    char *p;
    size_t len, cap;
} lm__sb_t;

static inline void lm__sb_put(lm__sb_t *b, const char *s, size_t n)
{
    if (b->len + n > b->cap) {
        size_t ncap = LM_MAX(b->cap * 2, b->len + n + 256);
        char *np = lm_arena_alloc(b->a, ncap);
        memcpy(np, b->p, b->len);
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}
#define LM__SB_LIT(b, lit) lm__sb_put((b), (lit), sizeof(lit) - 1)
static inline void lm__sb_str(lm__sb_t *b, lm_str_t s) { lm__sb_put(b, s.ptr, s.len); }
static inline void lm__sb_cstr(lm__sb_t *b, const char *s) { lm__sb_put(b, s, strlen(s)); }

/* Decimal without printf (the request path formats a few numbers per request). */
static inline void lm__sb_u64(lm__sb_t *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    lm__sb_put(b, tmp + i, sizeof(tmp) - i);
}




/* proxy.c: the request path */
const char *lm__rid(lm_req_t *r); /* the request id (the client's X-Request-Id or ours) */
void lm__conn_process(lm_conn_t *c);   /* parse and start what waits in c->buf */
void lm__respond_error(lm_req_t *r, int status, const char *message);
void lm__body_feed(lm_req_t *r);       /* body bytes arrived for a body read whole */
void lm__req_body_pump(lm_req_t *r);   /* body bytes arrived for a streamed body */
void lm__tunnel_up(lm_req_t *r);       /* bytes arrived for a WebSocket tunnel */
void lm__tunnel_end(lm_req_t *r);
void lm__peer_release(lm_req_t *r);

/* proxy_conn.c: client connections */
void lm__conn_close(lm_conn_t *c);
void lm__conn_timeout(uv_timer_t *t);  /* the connection timer's callback */
void lm__conn_linger(lm_conn_t *c);    /* half-close, drain what the client still sends, close */
void lm__conn_read_start(lm_conn_t *c);
void lm__conn_read_stop(lm_conn_t *c);
void lm__conn_input(lm_conn_t *c, ssize_t nread); /* plaintext appended to c->buf (nread < 0: the end) */
void lm__req_detach(lm_req_t *r);      /* the connection goes: the request lets go of everything */

/* proxy_head.c */
bool lm__valid_request_id(lm_str_t v);
void lm__sb_via_list(lm__sb_t *b, const lm_http_header_t *h, size_t n);
void lm__build_upstream_head(lm_req_t *r, const lm_http1_request_t *h, const lm_route_match_t *m);
lm_str_t lm__normalize_path(lm_arena_t *a, lm_str_t p);
void lm__retarget_head(lm_req_t *r);
void lm__relocate_head(lm_req_t *r, const char *buf, size_t len, lm_http1_request_t *h);

/* proxy_body.c */
/* Moves body bytes from the client buffer into x->body: LM_AGAIN (more to
 * come), LM_OK (READY, or PARTIAL when a chunked body outgrew the cap) or
 * LM_ERROR (malformed chunked body). */
int lm__body_take(lm_req_t *r);
/* Ends the upstream head (framing, blank line) with the buffered body. */
void lm__body_head_end(lm__sb_t *b, lm_req_t *r);

#endif

/*
 * proxy_int.h - shared by proxy.c (connections, request and response flow)
 * and proxy_head.c (the upstream request head, path normalisation). Nothing
 * else includes it.
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
} lm__req_ext_t;
#define LM__EXT(r) ((lm__req_ext_t *)(r))

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




/* proxy.c */
const char *lm__rid(lm_req_t *r); /* the request id (the client's X-Request-Id or ours) */

/* proxy_head.c */
bool lm__valid_request_id(lm_str_t v);
void lm__sb_via_list(lm__sb_t *b, const lm_http_header_t *h, size_t n);
void lm__build_upstream_head(lm_req_t *r, const lm_http1_request_t *h, const lm_route_match_t *m);
lm_str_t lm__normalize_path(lm_arena_t *a, lm_str_t p);
void lm__retarget_head(lm_req_t *r);
void lm__relocate_head(lm_req_t *r, const char *buf, size_t len, lm_http1_request_t *h);

#endif

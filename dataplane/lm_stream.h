/*
 * lm_stream.h - L4 stream routing as Kong's stream subsystem does it,
 * internal to the data plane (server.c, snapshot.c, stream*.c).
 *
 * Listeners (--stream-listen): a plain one carries tcp routes; one flagged
 * ssl reads the ClientHello first (tls_hello.c) and routes by its SNI to a
 * tls route (Limen terminates TLS, the certificate picked by SNI as on the
 * HTTP listener) or a tls_passthrough route (every byte, the ClientHello
 * included, forwarded unchanged: the client talks TLS with the upstream).
 *
 * Router (stream_router.c), compiled with the snapshot: Kong's
 * traditional_compatible stream rules. A route matches when each category it
 * sets matches: snis (exact, "*.suffix" or "prefix.*"; case-insensitive),
 * sources (the client's ip/CIDR and/or port; any entry), destinations (the
 * local ip/CIDR and/or port the client connected to; any entry); and its
 * protocols include the connection's (tcp on a plain listener, tls or
 * tls_passthrough on an ssl one). Priority: more categories set first, then
 * document order. No match: the connection is closed (Kong logs and closes).
 *
 * Tunnel (stream.c): one per client connection, holding the worker-local
 * snapshot it started with; the route's service balancer picks the upstream
 * address (health honoured, connect failures and timeouts reported to the
 * passive checks, retries on another address); service protocol tls
 * re-encrypts with the service's client context. Bytes flow both ways through
 * one 16 KiB buffer per direction: a side stops being read while the other
 * side's write of its bytes is pending. EOF from one side shuts down writing
 * to the other; the tunnel ends when both directions are done, on an error,
 * or after the service's read_timeout without traffic (write_timeout while a
 * write is stuck).
 */
#ifndef LM_STREAM_H
#define LM_STREAM_H

#include "lm_core.h"
#include "lm_arena.h"
#include "lm_config.h"

#include <sys/socket.h>
#include <uv.h>

typedef struct lm_worker lm_worker_t;
typedef struct lm_svc_rt lm_svc_rt_t;
typedef struct lm_stream_router lm_stream_router_t;

enum { LM_STREAM_TCP = 1, LM_STREAM_TLS = 2, LM_STREAM_PASSTHROUGH = 4 };

typedef struct {
    const lm_route_t *route;
    lm_svc_rt_t *svc;     /* NULL: a route without a service (closed) */
    const char *label;    /* name, else id */
    unsigned protocols;   /* LM_STREAM_* */
    int priority;         /* categories set (snis, sources, destinations) */
    void *conds;          /* compiled conditions (stream_router.c) */
} lm_stream_route_t;

typedef struct {
    unsigned protocol;    /* LM_STREAM_TCP, or LM_STREAM_TLS for an ssl listener (tls and passthrough) */
    const struct sockaddr *src, *dst;
    const char *sni;      /* lower-case, "" when none */
} lm_stream_req_t;

/* Builds the stream router for cfg's tcp/tls/tls_passthrough routes
 * (services: the snapshot's, by lm_service_t.index). Arena memory. */
lm_stream_router_t *lm_stream_router_build(const lm_config_t *cfg, lm_svc_rt_t *services, lm_arena_t *a,
                                           lm_config_errors_t *errs);
/* The best route, or NULL. Thread-safe, allocates nothing. */
const lm_stream_route_t *lm_stream_router_match(const lm_stream_router_t *r, const lm_stream_req_t *req);
size_t lm_stream_router_count(const lm_stream_router_t *r);

/* ---- stream.c ---- */
void lm_stream_on_connection(uv_stream_t *listener, int status);
/* Drain: tunnels still reading a ClientHello close now; close_all ends every tunnel. */
void lm_stream_close_idle(lm_worker_t *w);
void lm_stream_close_all(lm_worker_t *w);

#endif

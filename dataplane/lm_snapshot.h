/*
 * lm_snapshot.h - an immutable, compiled configuration.
 *
 * Everything a request needs, read-only: the router, per-service upstream
 * addresses and header values, per-route runtime data. Built on the control
 * thread (or a thread-pool thread) from a validated lm_config_t, then shared
 * by every worker. Reference counted: the server holds one reference for the
 * current snapshot and each worker one for the snapshot it serves new requests
 * from; the last unref frees it.
 */
#ifndef LM_SNAPSHOT_H
#define LM_SNAPSHOT_H

#include "lm_core.h"
#include "lm_arena.h"
#include "lm_balancer.h"
#include "lm_config.h"
#include "lm_metrics.h"
#include "lm_plugin_rt.h"
#include "lm_router.h"

#include <netinet/in.h>
#include <stdatomic.h>
#include <sys/socket.h>

#define LM_SVC_MAX_ADDRS 64

typedef struct lm_svc_rt {
    const lm_service_t *svc;
    const char *label;     /* name, else id, else "service-<index>": for logs and metrics */
    lm_str_t path;         /* service path, "/" when unset */
    lm_balancer_t *bal;    /* its upstream's balancer, or one over the host's addresses */
    lm_peer_t *peers;      /* = bal->peers: resolved addresses (upstream targets or the host's addresses) */
    size_t num_peers;
    const char *resolve_error; /* non-NULL when nothing could be resolved: 503 */
    bool unsupported_protocol; /* a protocol HTTP routes cannot proxy to (tcp, tls, ...): 502 */
    struct ssl_ctx_st *tls;    /* protocol https, grpcs (and tls, for streams): the client context
                                  (lm_tls_client_ctx), else NULL */
    char tls_id[17];           /* its content id (upstream pools are keyed by it) */
    bool h2;                   /* protocol grpc/grpcs: HTTP/2 to the upstream */
} lm_svc_rt_t;

typedef struct {
    const lm_route_t *route;
    lm_svc_rt_t *svc;       /* NULL: route without a service */
    const char *label;
    _Atomic(lm_metrics_block_t *) metrics; /* created on first use */
    lm_plugin_chain_t chain;                /* plugins that apply before a consumer is known */
} lm_route_rt_t;

typedef struct lm_snapshot {
    _Atomic long refs;
    lm_arena_t *arena;
    lm_config_t *cfg;
    lm_router_t *router;
    struct lm_tls_store *tls;  /* certificates by SNI (lm_tls.h) */
    struct lm_stream_router *stream; /* tcp/tls/tls_passthrough routes (lm_stream.h) */
    lm_svc_rt_t *services; size_t num_services;
    lm_route_rt_t *routes; size_t num_routes;  /* indexed by lm_route_t.index */
    lm_balancer_t **balancers; size_t num_balancers; /* upstreams first (lm_upstream_t.index), then services' own */
    char hash[33];
    uint64_t applied_at_ms; /* wall clock */
    char *doc_json;         /* canonical JSON of the document (for GET /config and the state dir) */
    size_t doc_json_len;
    lm_metrics_block_t *no_route_metrics;
    lm_plugin_rt_t plugins;
    bool plugins_built;
    struct lm_snapshot *reap_next; /* in the reaper's queue (lm_snapshot_reaper_start) */
} lm_snapshot_t;

/*
 * Compiles cfg (taking ownership, also on failure) into a snapshot with one
 * reference. Name resolution happens here (blocking getaddrinfo, so never
 * call this on a worker loop); a name that does not resolve is not an error:
 * its service answers 503 until a later config resolves it.
 * Returns NULL with errs filled on failure.
 */
lm_snapshot_t *lm_snapshot_compile(lm_config_t *cfg, lm_config_errors_t *errs);

/* An empty snapshot (no routes: every request gets 404). */
lm_snapshot_t *lm_snapshot_empty(void);

static inline void lm_snapshot_ref(lm_snapshot_t *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}
void lm_snapshot_unref(lm_snapshot_t *s);

/*
 * Between start and stop, the last lm_snapshot_unref hands the snapshot to a
 * reaper thread that frees it: freeing a large configuration (tens of ms)
 * then never stalls a worker's loop or the control loop. stop frees what is
 * still queued and joins the thread; later unrefs free inline again.
 */
void lm_snapshot_reaper_start(void);
void lm_snapshot_reaper_stop(void);

/* The metrics block of a route (created on first use; lock-free afterwards). */
lm_metrics_block_t *lm_snapshot_route_metrics(lm_route_rt_t *rt);

#endif

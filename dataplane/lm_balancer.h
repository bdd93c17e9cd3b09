/*
 * lm_balancer.h - choosing an upstream address for a request.
 *
 * One balancer per upstream (shared by every service whose host names it) and
 * one per service with a plain host (round-robin over its resolved
 * addresses), compiled with the snapshot and read-only afterwards except for
 * atomics. Algorithms, as Kong names them:
 *   round-robin         smooth weighted round-robin (nginx's interleaving),
 *                       precomputed at compile into a schedule that a shared
 *                       atomic cursor walks: deterministic, proportional to weight
 *   least-connections   lowest (in_flight + 1) / weight, counts shared by all
 *                       workers in the target states (lm_health.h)
 *   consistent-hashing  Kong's ring: `slots` points (at least 1000), each address
 *                       placed floor(weight/total * targets * 160) times by
 *                       xxhash32("ip::port i"); a key hashes to a point and walks
 *                       down to the first usable address. Same mapping as Kong.
 *   latency             EWMA of response times (Kong's 10 s decay) divided by
 *                       weight, power of two random choices, plus 2% random
 *                       picks so a recovered target is noticed again.
 * Unhealthy targets are skipped when health checks are on; a retry never picks
 * an address this request already tried while an untried usable one exists.
 * No lock on the decision path: only atomics.
 */
#ifndef LM_BALANCER_H
#define LM_BALANCER_H

#include "lm_core.h"
#include "lm_arena.h"
#include "lm_config.h"
#include "lm_health.h"
#include "lm_router.h"

#include <netinet/in.h>
#include <stdatomic.h>
#include <sys/socket.h>

typedef struct lm_ctx lm_ctx_t;

typedef struct {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char key[64];           /* "ip:port" ("[v6]:port"), the connection-pool key */
    int weight;
    lm_str_t host_header;   /* upstream Host: "host" or "host:port" when the port is not the default */
    lm_target_state_t *state; /* upstream targets only (NULL for a service's own host) */
    uint32_t index;         /* position in the balancer's peers */
    uint32_t target;        /* index into the balancer's targets */
} lm_peer_t;

enum { LM_LB_ROUND_ROBIN, LM_LB_CONSISTENT_HASHING, LM_LB_LEAST_CONNECTIONS, LM_LB_LATENCY };

typedef struct {
    const lm_target_t *t;   /* NULL for a service's own host */
    uint32_t first, count;  /* its addresses: peers[first .. first + count) */
    const char *dns_error;  /* the name did not resolve */
} lm_bal_target_t;

typedef struct lm_balancer {
    const lm_upstream_t *up; /* NULL: a service's own host */
    const char *name;        /* upstream name, or NULL */
    int algo;
    lm_peer_t *peers; size_t num_peers;
    lm_bal_target_t *targets; size_t num_targets; /* every configured target (weight 0 too) */
    lm_hc_conf_t hc;
    uint64_t total_weight;
    uint32_t *rr_seq; size_t rr_len; /* smooth weighted schedule */
    _Atomic uint64_t rr;
    int32_t *ring;          /* consistent hashing: peer index per point, -1 when empty */
    int32_t *ring_down;     /* nearest filled point at or below each point (wrapping), -1: empty ring */
    uint32_t ring_size;
    bool built;
} lm_balancer_t;

#define LM_PICK_MAX_TRIED 8

/* Per request: what was picked and tried. Zero-initialise. */
typedef struct {
    const lm_peer_t *peer;
    uint32_t tried[LM_PICK_MAX_TRIED];
    unsigned ntried;
    uint32_t hash;          /* consistent hashing: xxhash32 of the value to hash */
    bool held;              /* peer->state->in_flight counts this request */
    bool repeat;            /* the last pick is an address this request had already tried */
    uint64_t t_pick_ms;
    char *set_cookie;       /* hash_on cookie without the cookie: the Set-Cookie value to send */
} lm_pick_t;

/*
 * Called by the snapshot after it filled up, name, peers, targets and hc:
 * takes the target states and builds the algorithm's tables (arena memory).
 */
void lm_balancer_build(lm_balancer_t *b, lm_arena_t *a);
/* Drops the state references (snapshot free). */
void lm_balancer_free(lm_balancer_t *b);

/* Consistent hashing, before the first pick: the value to hash from the
 * request (hash_on, then hash_fallback; Kong hashes "" when both give nothing).
 * rnd1, rnd2 make the cookie value when hash_on cookie finds none. */
void lm_balancer_prepare(const lm_balancer_t *b, lm_pick_t *p, lm_ctx_t *ctx, const lm_route_match_t *m,
                         uint64_t rnd1, uint64_t rnd2);

/* Picks an address (NULL: none usable: Kong's 503 "failure to get a peer from
 * the ring-balancer"); counts it in flight. Releases a previous pick first. */
const lm_peer_t *lm_balancer_pick(lm_balancer_t *b, lm_pick_t *p, uint64_t now_ms, uint64_t rnd);

/* Outcome of the try on p->peer, for passive checks and per-target metrics. */
void lm_balancer_report(lm_balancer_t *b, const lm_pick_t *p, lm_hr_kind_t kind, int status, uint64_t now_ms);

/* The request is done with p->peer (idempotent). latency: a response was
 * received, feed its time to the latency EWMA. */
void lm_balancer_release(lm_balancer_t *b, lm_pick_t *p, uint64_t now_ms, bool latency);

/* Healthy weight over total is above hc.threshold (Kong's balancer health). */
bool lm_balancer_healthy(lm_balancer_t *b, uint64_t now_ms, uint64_t *total, uint64_t *unavailable);

/* Whether a retry may resend this method after the request reached the
 * upstream (nginx: not for POST, LOCK, PATCH). */
bool lm_method_idempotent(lm_str_t method);

uint32_t lm_xxh32(const void *data, size_t len, uint32_t seed);

#endif

/*
 * lm_leader.h - leader election with a coordination.k8s.io/v1 Lease, the way
 * client-go's leaderelection does it (LeaseLock, ReleaseOnCancel).
 *
 * A candidate tries every retry period (jittered up to 2.2x while not
 * leading): GET the Lease; 404 -> create it holding it (409 AlreadyExists ->
 * read it again); held by someone else and not expired -> wait; else (no
 * holder, or expired) -> PUT it with our identity, acquireTime/renewTime =
 * now and leaseTransitions + 1, guarded by its resourceVersion (409 Conflict
 * -> read it again). The leader renews every retry period with a PUT of the
 * Lease it last wrote (renewTime = now); when no renewal has succeeded for
 * renew_seconds (the renew deadline), or the Lease turns out to be held by
 * someone else, it stops leading (callback false) and goes back to being a
 * candidate. Choose renew_seconds < lease_seconds so a leader always stops
 * before anyone else may start.
 *
 * Expiry is judged like client-go: not from the Lease's renewTime against our
 * clock (the clocks of two nodes may differ) but from when this process last
 * saw the Lease record change: expired = unchanged for leaseDurationSeconds
 * (the holder's value) by our monotonic clock. So a fresh candidate waits one
 * lease duration before it takes over from a holder that died.
 *
 * Times are written as RFC 3339 with microseconds ("2026-01-02T03:04:05.123456Z").
 * Callbacks come on changes only, from the loop of the lm_kube_t; never from
 * lm_leader_start or lm_leader_stop.
 */
#ifndef LM_LEADER_H
#define LM_LEADER_H

#include "lm_core.h"
#include "lm_kube.h"

typedef struct lm_leader lm_leader_t;

typedef void (*lm_leader_cb)(bool leading, void *data);

/*
 * Starts campaigning at once. ns/name: the Lease; identity: our
 * holderIdentity (unique per process, e.g. hostname_pid). Seconds: 0 picks
 * the default (lease 15, renew deadline 10, retry 2); renew is capped below
 * lease and retry below renew. The strings are copied. Returns NULL on
 * allocation failure or bad arguments (logged).
 */
lm_leader_t *lm_leader_start(lm_kube_t *k, const char *ns, const char *name, const char *identity,
                             unsigned lease_seconds, unsigned renew_seconds, unsigned retry_seconds,
                             lm_leader_cb cb, void *data);

/* True while leading: the last successful renewal is younger than the renew
 * deadline (checked now, not only when the timer fires). */
bool lm_leader_is_leader(const lm_leader_t *l);

/*
 * Stops campaigning; no callback after this. When leading, releases the Lease
 * (best effort, one PUT: holderIdentity "", leaseDurationSeconds 1) so another
 * candidate takes over at its next retry instead of after the lease expires.
 * The memory is freed once the release (and any request in flight) has
 * finished: keep the loop running for a moment (a request takes at most 30 s;
 * if the lm_kube_t is freed first, the few bytes of l are never freed).
 */
void lm_leader_stop(lm_leader_t *l);

/* Like lm_leader_stop; then calls done(data) from the loop once l is freed,
 * the release done (released = the PUT succeeded) or not needed. */
typedef void (*lm_leader_done_cb)(bool released, void *data);
void lm_leader_stop_then(lm_leader_t *l, lm_leader_done_cb done, void *data);

/* Counters, for metrics and logs. */
typedef struct {
    uint64_t acquired;      /* times we became leader */
    uint64_t lost;          /* times we stopped leading (deadline or another holder) */
    uint64_t renewals;      /* successful writes while leading (acquire included) */
    uint64_t failures;      /* failed requests (transport, 5xx, 403, ...) */
    uint64_t conflicts;     /* 409s */
    char holder[256];       /* holderIdentity as last seen ("" when none) */
} lm_leader_stats_t;
void lm_leader_stats(const lm_leader_t *l, lm_leader_stats_t *out);

#endif

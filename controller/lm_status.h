/*
 * lm_status.h - status the controller writes back: Ingress
 * status.loadBalancer.ingress (the addresses clients reach us at) and a
 * "Programmed" condition on our custom resources (limen.dev/v1 Plugin,
 * ClusterPlugin, Consumer, UpstreamPolicy).
 *
 * Every write is a JSON merge patch (application/merge-patch+json) to the
 * object's status subresource, and only when the object as cached differs
 * from what it should be, so an unchanged cluster costs no writes. At most 20
 * writes are in flight; the rest wait in a queue, one entry per object: a
 * later call for the same object replaces its queued write (or drops it when
 * the object is right by then), and an object never has two writes in flight
 * (so they cannot land out of order). A 404 (deleted meanwhile) is ignored;
 * other failures are logged (once until a write succeeds) and dropped: the
 * next sync, which the informer's update of the object brings, tries again.
 *
 * Only the leader writes: a new lm_status_t is disabled, and turning it off
 * drops the queue. Runs on the loop of the lm_kube_t; nothing blocks.
 */
#ifndef LM_STATUS_H
#define LM_STATUS_H

#include "lm_core.h"
#include "lm_kube.h"

typedef struct lm_status lm_status_t;

lm_status_t *lm_status_new(lm_kube_t *k);
/* Frees now; writes in flight finish on their own (nothing is called back). */
void lm_status_free(lm_status_t *s);

/* Only the leader writes: while off, the calls below only remember the
 * addresses; queued writes are dropped. After turning it on, sync again. */
void lm_status_enable(lm_status_t *s, bool on);

/*
 * The addresses Ingress status should carry: IPs (v4 or v6, written as "ip")
 * or hostnames (written as "hostname"), deduplicated; the order does not
 * matter (written sorted). Copied. Until this is called once,
 * lm_status_sync_ingresses writes nothing; n = 0 then clears the status.
 */
void lm_status_set_addresses(lm_status_t *s, const char *const *addrs, size_t n);

/*
 * ingresses: our Ingress objects as cached (each with metadata.namespace and
 * .name, maybe status). Each whose status.loadBalancer.ingress is not the
 * address set (compared as sets of ip/hostname; ports ignored) gets a PATCH
 * of /apis/networking.k8s.io/v1/namespaces/NS/ingresses/NAME/status. The
 * objects are read during the call only.
 */
void lm_status_sync_ingresses(lm_status_t *s, const cJSON *const *ingresses, size_t n);

/*
 * obj: a cached custom resource (apiVersion, kind, metadata with namespace
 * unless cluster-scoped, name, generation; maybe status). resource: its
 * plural ("plugins"). Sets the condition type "Programmed" in
 * status.conditions (the other conditions are kept): status "True" when ok
 * else "False", reason (NULL: "Programmed" / "Invalid"), message (cut to
 * 32768 bytes), observedGeneration = metadata.generation,
 * lastTransitionTime now when the status changes (else kept). PATCHes
 * .../RESOURCE/NAME/status only when that differs from the object's current
 * condition.
 */
void lm_status_set_condition(lm_status_t *s, const cJSON *obj, const char *resource, bool ok, const char *reason,
                             const char *message);

#define LM_STATUS_MAX_IN_FLIGHT 20

typedef struct {
    uint64_t writes;    /* PATCHes that succeeded */
    uint64_t unchanged; /* objects found right: no write */
    uint64_t superseded;/* queued writes replaced or dropped by a later call */
    uint64_t not_found; /* 404s: deleted meanwhile */
    uint64_t failures;  /* other failures */
    size_t queued;      /* waiting for a slot */
    size_t in_flight;
    size_t max_in_flight; /* the most ever at once */
} lm_status_stats_t;
void lm_status_stats(const lm_status_t *s, lm_status_stats_t *out);

#endif

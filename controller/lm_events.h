/*
 * lm_events.h - Kubernetes Events (core/v1) about the objects the controller
 * reads, e.g. a Warning "TranslationFailed" on an Ingress it had to leave out.
 * What `kubectl describe` shows under Events.
 *
 * Like client-go's EventRecorder: an Event is POSTed to the object's
 * namespace ("default" for cluster-scoped objects) with involvedObject,
 * reason, message (cut to 1024 bytes), type, source {component, host},
 * reportingComponent "limen.dev/ingress-controller", reportingInstance host,
 * firstTimestamp, lastTimestamp and count. The same Event again (same object
 * uid/kind/namespace/name, type, reason and message) within 10 minutes
 * PATCHes the existing one's count and lastTimestamp instead of adding an
 * object (an LRU of the last 4096 Events remembers them; repeats that come
 * while a request is out are folded into the next write). A token bucket
 * (burst 25, then 1 a second) drops what a flapping cluster would otherwise
 * flood the API server with. A failed write is logged (once until a write
 * succeeds) and dropped, never retried.
 *
 * Only the leader posts: a new lm_events_t is disabled. Runs on the loop of
 * the lm_kube_t; nothing blocks.
 */
#ifndef LM_EVENTS_H
#define LM_EVENTS_H

#include "lm_core.h"
#include "lm_kube.h"

typedef struct lm_events lm_events_t;

/* component: source.component ("limen-controller"); host: source.host and
 * reportingInstance (e.g. the pod name or the leader identity; cut to 128
 * bytes). Copied. NULL on allocation failure. */
lm_events_t *lm_events_new(lm_kube_t *k, const char *component, const char *host);
/* Frees now; writes in flight finish on their own (nothing is called back). */
void lm_events_free(lm_events_t *e);

/* Only the leader posts: while off, lm_event_post drops its calls. Turning
 * it off forgets the remembered Events (the next leader keeps its own). */
void lm_events_enable(lm_events_t *e, bool on);

/*
 * Records one occurrence. api_version/kind/ns/name/uid: the involved object
 * (ns "" or NULL when cluster-scoped; uid may be "" or NULL); type "Warning"
 * or "Normal"; reason a CamelCase word; message free text. Copies what it
 * needs; returns at once (the write happens on the loop).
 */
void lm_event_post(lm_events_t *e, const char *api_version, const char *kind, const char *ns, const char *name,
                   const char *uid, const char *type, const char *reason, const char *message);

/* The token bucket: burst Events at once, then per_second (defaults 25, 1). */
void lm_events_set_rate(lm_events_t *e, unsigned burst, double per_second);

typedef struct {
    uint64_t created;          /* Events POSTed */
    uint64_t patched;          /* repeats written as count + lastTimestamp */
    uint64_t folded;           /* repeats folded into a write already on its way */
    uint64_t dropped_disabled; /* calls while not the leader */
    uint64_t dropped_rate;     /* calls over the rate limit */
    uint64_t failures;         /* writes the API server refused or never answered */
    size_t remembered;         /* Events in the LRU */
    size_t in_flight;          /* writes on their way */
} lm_events_stats_t;
void lm_events_stats(const lm_events_t *e, lm_events_stats_t *out);

#endif

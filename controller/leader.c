/*
 * leader.c - leader election with a Lease (see lm_leader.h).
 *
 * One timer drives it. Each tick checks the renew deadline, then (unless a
 * request is still out) starts one attempt: a GET, or while leading a PUT of
 * the Lease we last wrote. Every response re-arms the timer: the retry period
 * while leading (never past the renew deadline), a jittered one while not.
 * At most one request is in flight, so writes never race each other.
 *
 * Lifetime: refs counts the timer and the request in flight; lm_leader_stop
 * closes the timer, releases the Lease once nothing else is in flight, and
 * the last callback frees.
 */
#include "lm_leader.h"
#include "kube_internal.h" /* k->loop: lm_kube.h has no lm_kube_loop() yet */
#include "lm_log.h"
#include "lm_map.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define LM__LEASES "/apis/coordination.k8s.io/v1/namespaces/"
#define LM__MAX_REREADS 3 /* 409s answered by an immediate re-read, per attempt */

struct lm_leader {
    lm_kube_t *kube;
    uv_timer_t timer;
    char *ns, *name, *identity;
    char *path;           /* the Lease */
    char *collection;     /* where it is created */
    uint64_t lease_ms, renew_ms, retry_ms;
    lm_leader_cb cb;
    void *data;
    lm_leader_done_cb done;
    void *done_data;
    cJSON *lease;         /* the Lease as last read or written; NULL: not seen */
    char *observed;       /* its spec, serialized: a change restarts the expiry clock */
    uint64_t observed_ms; /* when it last changed (monotonic) */
    uint64_t renewed_ms;  /* when the last successful write was sent (monotonic) */
    uint64_t sent_ms;     /* when the request in flight was sent */
    uint64_t rng;
    unsigned rereads;
    int refs;             /* the timer + the request in flight */
    bool leading, busy, stopping, release_tried, released;
    char last_err[256];
    lm_leader_stats_t st;
};

static uint64_t lm__now_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* RFC 3339 with microseconds, as metav1.MicroTime. */
static void lm__micro_time(char *out, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%06ldZ", ts.tv_nsec / 1000);
}

static const char *lm__str(const cJSON *obj, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, field);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static const char *lm__holder(const cJSON *lease)
{
    return lm__str(cJSON_GetObjectItemCaseSensitive(lease, "spec"), "holderIdentity");
}

static void lm__set(cJSON *obj, const char *field, cJSON *v)
{
    if (cJSON_HasObjectItem(obj, field))
        cJSON_ReplaceItemInObjectCaseSensitive(obj, field, v);
    else
        cJSON_AddItemToObject(obj, field, v);
}

/* ---- lifetime ---------------------------------------------------------------- */

static void lm__maybe_free(lm_leader_t *l)
{
    if (l->refs > 0)
        return;
    if (l->done)
        l->done(l->released, l->done_data);
    cJSON_Delete(l->lease);
    free(l->observed);
    free(l->ns);
    free(l->name);
    free(l->identity);
    free(l->path);
    free(l->collection);
    free(l);
}

static void lm__timer_closed(uv_handle_t *h)
{
    lm_leader_t *l = h->data;
    l->refs--;
    lm__maybe_free(l);
}

/* ---- state ------------------------------------------------------------------- */

static void lm__fail(lm_leader_t *l, const char *what, int status, const cJSON *body, const char *err)
{
    char msg[256];
    const char *m = lm__str(body, "message");
    if (status)
        snprintf(msg, sizeof(msg), "%s Lease %s/%s: HTTP %d%s%s", what, l->ns, l->name, status, m[0] ? ": " : "", m);
    else
        snprintf(msg, sizeof(msg), "%s Lease %s/%s: %s", what, l->ns, l->name, err && err[0] ? err : "no response");
    l->st.failures++;
    /* the same failure again is not news: log it once until something works */
    if (strcmp(msg, l->last_err) != 0) {
        lm_log_warn("leader election: %s", msg);
        snprintf(l->last_err, sizeof(l->last_err), "%s", msg);
    } else {
        lm_log_debug("leader election: %s", msg);
    }
}

/* Remembers the Lease; restarts the expiry clock when its record changed. */
static void lm__observe(lm_leader_t *l, const cJSON *body)
{
    cJSON *copy = cJSON_Duplicate(body, true);
    if (!copy)
        return;
    cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(copy, "metadata"), "managedFields");
    cJSON_Delete(l->lease);
    l->lease = copy;
    char *spec = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(copy, "spec"));
    if (!spec || !l->observed || strcmp(spec, l->observed) != 0) {
        free(l->observed);
        l->observed = spec;
        l->observed_ms = lm__now_ms();
    } else {
        free(spec);
    }
    snprintf(l->st.holder, sizeof(l->st.holder), "%s", lm__holder(copy));
}

static bool lm__expired(const lm_leader_t *l)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(l->lease, "spec"),
                                                      "leaseDurationSeconds");
    uint64_t ms = cJSON_IsNumber(d) ? (d->valuedouble > 0 ? (uint64_t)(d->valuedouble * 1000) : 0) : l->lease_ms;
    return lm__now_ms() - l->observed_ms >= ms;
}

static void lm__lose(lm_leader_t *l, const char *why)
{
    if (!l->leading)
        return;
    l->leading = false;
    l->st.lost++;
    lm_log_warn("leader election: %s stopped leading (Lease %s/%s): %s", l->identity, l->ns, l->name, why);
    if (!l->stopping && l->cb)
        l->cb(false, l->data);
}

static void lm__won(lm_leader_t *l)
{
    /* from when it was sent: an answer that took long must not stretch the deadline,
     * and one that came after the deadline does not make us lead (the next tick renews) */
    if (lm__now_ms() - l->sent_ms >= l->renew_ms) {
        lm_log_debug("leader election: a write of Lease %s/%s succeeded too late to count", l->ns, l->name);
        return;
    }
    l->renewed_ms = l->sent_ms;
    l->st.renewals++;
    l->last_err[0] = '\0';
    if (l->leading)
        return;
    l->leading = true;
    l->st.acquired++;
    lm_log_info("leader election: %s is the leader (Lease %s/%s)", l->identity, l->ns, l->name);
    if (!l->stopping && l->cb)
        l->cb(true, l->data);
}

/* ---- timer --------------------------------------------------------------------- */

static void lm__tick(uv_timer_t *t);

static void lm__arm(lm_leader_t *l)
{
    if (l->stopping)
        return;
    uint64_t delay;
    if (l->leading) {
        uint64_t now = lm__now_ms(), deadline = l->renewed_ms + l->renew_ms;
        delay = LM_MIN(l->retry_ms, deadline > now ? deadline - now : 0);
    } else {
        /* like client-go's JitterUntil(retry, 1.2): candidates do not knock in step */
        l->rng ^= l->rng << 13;
        l->rng ^= l->rng >> 7;
        l->rng ^= l->rng << 17;
        delay = l->retry_ms + (l->rng % (l->retry_ms * 12 / 10 + 1));
    }
    uv_timer_start(&l->timer, lm__tick, delay, 0);
}

/* ---- requests ------------------------------------------------------------------- */

static void lm__on_get(int status, const cJSON *body, const char *err, void *data);
static void lm__on_write(int status, const cJSON *body, const char *err, void *data);
static void lm__on_release(int status, const cJSON *body, const char *err, void *data);

static void lm__send(lm_leader_t *l, const char *method, const char *path, const cJSON *body, lm_kube_cb cb)
{
    if (lm_kube_request(l->kube, method, path, body, NULL, cb, l) != LM_OK) {
        lm__fail(l, method, 0, NULL, "request not started");
        return;
    }
    l->refs++;
    l->busy = true;
    l->sent_ms = lm__now_ms();
}

static void lm__get(lm_leader_t *l)
{
    lm__send(l, "GET", l->path, NULL, lm__on_get);
}

static void lm__create(lm_leader_t *l)
{
    char now[40];
    lm__micro_time(now, sizeof(now));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "apiVersion", "coordination.k8s.io/v1");
    cJSON_AddStringToObject(o, "kind", "Lease");
    cJSON *meta = cJSON_AddObjectToObject(o, "metadata");
    cJSON_AddStringToObject(meta, "name", l->name);
    cJSON_AddStringToObject(meta, "namespace", l->ns);
    cJSON *spec = cJSON_AddObjectToObject(o, "spec");
    cJSON_AddStringToObject(spec, "holderIdentity", l->identity);
    cJSON_AddNumberToObject(spec, "leaseDurationSeconds", (double)(l->lease_ms / 1000));
    cJSON_AddStringToObject(spec, "acquireTime", now);
    cJSON_AddStringToObject(spec, "renewTime", now);
    cJSON_AddNumberToObject(spec, "leaseTransitions", 0);
    if (spec && meta)
        lm__send(l, "POST", l->collection, o, lm__on_write);
    cJSON_Delete(o);
}

/* PUT base (the Lease as read, with its resourceVersion) held by us. */
static void lm__acquire(lm_leader_t *l, const cJSON *base)
{
    char now[40];
    lm__micro_time(now, sizeof(now));
    cJSON *o = cJSON_Duplicate(base, true);
    cJSON *spec = o ? cJSON_GetObjectItemCaseSensitive(o, "spec") : NULL;
    if (o && !cJSON_IsObject(spec))
        spec = cJSON_AddObjectToObject(o, "spec");
    if (!spec) {
        cJSON_Delete(o);
        return;
    }
    bool ours = strcmp(lm__holder(o), l->identity) == 0;
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(spec, "leaseTransitions");
    double transitions = cJSON_IsNumber(tr) ? tr->valuedouble : 0;
    if (!ours || !cJSON_HasObjectItem(spec, "acquireTime"))
        lm__set(spec, "acquireTime", cJSON_CreateString(now));
    if (!ours)
        lm__set(spec, "leaseTransitions", cJSON_CreateNumber(transitions + 1));
    lm__set(spec, "holderIdentity", cJSON_CreateString(l->identity));
    lm__set(spec, "leaseDurationSeconds", cJSON_CreateNumber((double)(l->lease_ms / 1000)));
    lm__set(spec, "renewTime", cJSON_CreateString(now));
    lm__send(l, "PUT", l->path, o, lm__on_write);
    cJSON_Delete(o);
}

/* One attempt: the leader renews what it wrote last; anyone else reads first. */
static void lm__attempt(lm_leader_t *l)
{
    l->rereads = 0;
    if (l->leading && l->lease)
        lm__acquire(l, l->lease);
    else
        lm__get(l);
}

static void lm__release(lm_leader_t *l)
{
    if (l->release_tried || !l->lease || strcmp(lm__holder(l->lease), l->identity) != 0)
        return;
    l->release_tried = true;
    char now[40];
    lm__micro_time(now, sizeof(now));
    cJSON *o = cJSON_Duplicate(l->lease, true);
    cJSON *spec = o ? cJSON_GetObjectItemCaseSensitive(o, "spec") : NULL;
    if (spec) {
        /* client-go's ReleaseOnCancel: no holder, a 1 s lease, times now */
        lm__set(spec, "holderIdentity", cJSON_CreateString(""));
        lm__set(spec, "leaseDurationSeconds", cJSON_CreateNumber(1));
        lm__set(spec, "acquireTime", cJSON_CreateString(now));
        lm__set(spec, "renewTime", cJSON_CreateString(now));
        lm__send(l, "PUT", l->path, o, lm__on_release);
    }
    cJSON_Delete(o);
}

/* After a response: the next step, or the end when stopping. */
static void lm__next(lm_leader_t *l)
{
    if (l->stopping) {
        if (!l->busy)
            lm__release(l);
        lm__maybe_free(l);
        return;
    }
    lm__arm(l);
}

static void lm__reread(lm_leader_t *l)
{
    l->st.conflicts++;
    if (!l->stopping && l->rereads < LM__MAX_REREADS) {
        l->rereads++;
        lm__get(l);
    }
}

static void lm__on_get(int status, const cJSON *body, const char *err, void *data)
{
    lm_leader_t *l = data;
    l->refs--;
    l->busy = false;
    if (status == 200 && body) {
        lm__observe(l, body);
        const char *holder = lm__holder(l->lease);
        if (holder[0] && strcmp(holder, l->identity) != 0 && !lm__expired(l)) {
            char why[320];
            snprintf(why, sizeof(why), "the Lease is held by %s", holder);
            lm__lose(l, why);
        } else if (!l->stopping) {
            lm__acquire(l, l->lease);
        }
    } else if (status == 404) {
        cJSON_Delete(l->lease);
        l->lease = NULL;
        if (!l->stopping)
            lm__create(l);
    } else {
        lm__fail(l, "reading", status, body, err);
    }
    lm__next(l);
}

/* The answer to a create (POST) or an acquire/renew (PUT). */
static void lm__on_write(int status, const cJSON *body, const char *err, void *data)
{
    lm_leader_t *l = data;
    l->refs--;
    l->busy = false;
    if ((status == 200 || status == 201) && body) {
        lm__observe(l, body);
        lm__won(l);
    } else if (status == 409) {
        /* AlreadyExists (create) or Conflict (a stale resourceVersion): read it again */
        lm__reread(l);
    } else if (status == 404) {
        cJSON_Delete(l->lease);
        l->lease = NULL;
        if (!l->stopping)
            lm__create(l);
    } else {
        lm__fail(l, "writing", status, body, err);
    }
    lm__next(l);
}

static void lm__on_release(int status, const cJSON *body, const char *err, void *data)
{
    lm_leader_t *l = data;
    l->refs--;
    l->busy = false;
    if (status == 200) {
        l->released = true;
        lm_log_info("leader election: %s released Lease %s/%s", l->identity, l->ns, l->name);
    } else if (status == 409) {
        lm_log_info("leader election: Lease %s/%s changed meanwhile: not released", l->ns, l->name);
    } else {
        lm__fail(l, "releasing", status, body, err);
    }
    lm__maybe_free(l);
}

static void lm__tick(uv_timer_t *t)
{
    lm_leader_t *l = t->data;
    if (l->leading && lm__now_ms() - l->renewed_ms >= l->renew_ms) {
        char why[96];
        snprintf(why, sizeof(why), "no successful renewal for %llu ms", (unsigned long long)l->renew_ms);
        lm__lose(l, why);
        if (l->stopping) /* the callback stopped us */
            return;
    }
    if (!l->busy)
        lm__attempt(l);
    lm__arm(l); /* also while a request hangs: the deadline is checked again */
}

/* ---- API ------------------------------------------------------------------------ */

lm_leader_t *lm_leader_start(lm_kube_t *k, const char *ns, const char *name, const char *identity,
                             unsigned lease_seconds, unsigned renew_seconds, unsigned retry_seconds,
                             lm_leader_cb cb, void *data)
{
    if (!k || !ns || !ns[0] || !name || !name[0] || !identity || !identity[0]) {
        lm_log_error("leader election: a namespace, a name and an identity are needed");
        return NULL;
    }
    lm_leader_t *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->kube = k;
    l->cb = cb;
    l->data = data;
    l->ns = strdup(ns);
    l->name = strdup(name);
    l->identity = strdup(identity);
    size_t plen = strlen(LM__LEASES) + strlen(ns) + strlen(name) + 16;
    l->path = malloc(plen);
    l->collection = malloc(plen);
    if (!l->ns || !l->name || !l->identity || !l->path || !l->collection) {
        lm__maybe_free(l);
        return NULL;
    }
    snprintf(l->collection, plen, LM__LEASES "%s/leases", ns);
    snprintf(l->path, plen, LM__LEASES "%s/leases/%s", ns, name);

    l->lease_ms = (uint64_t)(lease_seconds ? lease_seconds : 15) * 1000;
    l->renew_ms = (uint64_t)(renew_seconds ? renew_seconds : 10) * 1000;
    l->retry_ms = (uint64_t)(retry_seconds ? retry_seconds : 2) * 1000;
    /* client-go insists on lease > renew deadline > 1.2 x retry */
    if (l->renew_ms >= l->lease_ms)
        l->renew_ms = LM_MAX(l->lease_ms * 2 / 3, 1);
    if (l->retry_ms * 12 / 10 >= l->renew_ms)
        l->retry_ms = LM_MAX(l->renew_ms / 2, 1);
    l->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ lm_hash(identity, strlen(identity));
    if (!l->rng)
        l->rng = 88172645463325252ULL;

    uv_timer_init(k->loop, &l->timer);
    l->timer.data = l;
    l->refs = 1;
    lm_log_info("leader election: %s campaigning for Lease %s/%s (lease %llu ms, renew deadline %llu ms, "
                "retry %llu ms)", identity, ns, name, (unsigned long long)l->lease_ms,
                (unsigned long long)l->renew_ms, (unsigned long long)l->retry_ms);
    uv_timer_start(&l->timer, lm__tick, 0, 0);
    return l;
}

bool lm_leader_is_leader(const lm_leader_t *l)
{
    return l && l->leading && !l->stopping && lm__now_ms() - l->renewed_ms < l->renew_ms;
}

void lm_leader_stop_then(lm_leader_t *l, lm_leader_done_cb done, void *data)
{
    if (!l || l->stopping)
        return;
    l->stopping = true;
    l->done = done;
    l->done_data = data;
    uv_timer_stop(&l->timer);
    uv_close((uv_handle_t *)&l->timer, lm__timer_closed);
    if (!l->busy)
        lm__release(l); /* else once the answer in flight is in (it may move the resourceVersion) */
}

void lm_leader_stop(lm_leader_t *l)
{
    lm_leader_stop_then(l, NULL, NULL);
}

void lm_leader_stats(const lm_leader_t *l, lm_leader_stats_t *out)
{
    *out = l->st;
}

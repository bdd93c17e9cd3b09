/*
 * events.c - core/v1 Events with client-go's aggregation (see lm_events.h).
 *
 * Each distinct Event (its key: the involved object, type, reason and
 * message, joined by NULs in one allocation the entry owns) has an entry in
 * a map and an LRU list. An entry has at most one write in flight; repeats
 * meanwhile only bump its count and set `dirty`, and the answer sends one
 * more write carrying the total. An entry dropped from the LRU (or from a
 * freed lm_events_t) while its write is out is orphaned (owner NULL) and
 * freed by that write's callback.
 */
#include "lm_events.h"
#include "lm_log.h"
#include "lm_map.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define LM__EV_CACHE 4096
#define LM__EV_WINDOW_MS (10 * 60 * 1000) /* a repeat after this is a new Event */
#define LM__EV_MSG_MAX 1024
#define LM__EV_INSTANCE_MAX 128           /* the API server's limit on reportingInstance */
#define LM__EV_REPORTER "limen.dev/ingress-controller"

typedef struct lm__ev lm__ev_t;

struct lm__ev {
    lm_events_t *owner;    /* NULL: forgotten while a write was out */
    lm__ev_t *prev, *next; /* LRU, most recent first */
    char *key;             /* the fields below, each NUL-terminated, back to back */
    size_t key_len;
    const char *api_version, *kind, *ns, *name, *uid, *type, *reason, *message;
    char *ev_name;         /* the Event object, once created */
    char first[32], last[32];
    uint64_t last_ms;
    unsigned count;
    bool in_flight, dirty;
};

struct lm_events {
    lm_kube_t *kube;
    char *component, *host, *instance;
    bool enabled;
    lm_map_t map;
    lm__ev_t *head, *tail;
    size_t num;
    unsigned burst;
    double rate, tokens;
    uint64_t refilled_ms;
    bool failing, limited; /* a failure / a drop was logged: say it once */
    lm_events_stats_t st;
};

static uint64_t lm__now_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* RFC 3339 in seconds, as metav1.Time. */
static void lm__time(char *out, size_t cap)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* How many bytes of s (at most max) end on a UTF-8 character boundary. */
static size_t lm__utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

/* ---- the LRU --------------------------------------------------------------- */

static void lm__unlink(lm_events_t *e, lm__ev_t *v)
{
    if (v->prev)
        v->prev->next = v->next;
    else
        e->head = v->next;
    if (v->next)
        v->next->prev = v->prev;
    else
        e->tail = v->prev;
    v->prev = v->next = NULL;
}

static void lm__push_front(lm_events_t *e, lm__ev_t *v)
{
    v->prev = NULL;
    v->next = e->head;
    if (e->head)
        e->head->prev = v;
    e->head = v;
    if (!e->tail)
        e->tail = v;
}

static void lm__ev_free(lm__ev_t *v)
{
    free(v->key);
    free(v->ev_name);
    free(v);
}

/* Takes v out of the map and the LRU; frees it unless a write is out. */
static void lm__forget(lm_events_t *e, lm__ev_t *v)
{
    lm_map_del(&e->map, (lm_str_t){ v->key, v->key_len });
    lm__unlink(e, v);
    e->num--;
    if (v->in_flight) {
        v->owner = NULL;
        e->st.in_flight--;
    } else
        lm__ev_free(v);
}

static void lm__forget_all(lm_events_t *e)
{
    while (e->head)
        lm__forget(e, e->head);
}

/* ---- writes ------------------------------------------------------------------- */

static void lm__failed(lm_events_t *e, const lm__ev_t *v, const char *what, int status, const cJSON *body,
                       const char *err)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(body, "message");
    char why[512];
    if (status)
        snprintf(why, sizeof(why), "HTTP %d%s%s", status, cJSON_IsString(m) ? ": " : "",
                 cJSON_IsString(m) ? m->valuestring : "");
    else
        snprintf(why, sizeof(why), "%s", err && err[0] ? err : "no response");
    e->st.failures++;
    if (!e->failing)
        lm_log_warn("events: %s Event %s on %s %s%s%s: %s (dropped; further failures are logged at debug level)",
                    what, v->reason, v->kind, v->ns, v->ns[0] ? "/" : "", v->name, why);
    else
        lm_log_debug("events: %s Event %s on %s %s%s%s: %s", what, v->reason, v->kind, v->ns, v->ns[0] ? "/" : "",
                     v->name, why);
    e->failing = true;
}

static void lm__succeeded(lm_events_t *e)
{
    if (e->failing)
        lm_log_info("events: writing Events works again");
    e->failing = false;
}

static void lm__on_post(int status, const cJSON *body, const char *err, void *data);
static void lm__on_patch(int status, const cJSON *body, const char *err, void *data);

static cJSON *lm__event_body(const lm_events_t *e, const lm__ev_t *v, const char *ev_ns)
{
    char name[320];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* client-go's name: the object's name, a dot, the time in ns in hex; cut to fit 253 */
    size_t n = LM_MIN(strlen(v->name), (size_t)(253 - 1 - 16));
    while (n > 0 && (v->name[n - 1] == '.' || v->name[n - 1] == '-'))
        n--;
    snprintf(name, sizeof(name), "%.*s.%llx", (int)n, v->name,
             (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec);

    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "apiVersion", "v1");
    cJSON_AddStringToObject(o, "kind", "Event");
    cJSON *meta = cJSON_AddObjectToObject(o, "metadata");
    cJSON_AddStringToObject(meta, "name", name);
    cJSON_AddStringToObject(meta, "namespace", ev_ns);
    cJSON *io = cJSON_AddObjectToObject(o, "involvedObject");
    if (v->api_version[0])
        cJSON_AddStringToObject(io, "apiVersion", v->api_version);
    cJSON_AddStringToObject(io, "kind", v->kind);
    if (v->ns[0])
        cJSON_AddStringToObject(io, "namespace", v->ns);
    cJSON_AddStringToObject(io, "name", v->name);
    if (v->uid[0])
        cJSON_AddStringToObject(io, "uid", v->uid);
    cJSON_AddStringToObject(o, "reason", v->reason);
    cJSON_AddStringToObject(o, "message", v->message);
    cJSON_AddStringToObject(o, "type", v->type);
    cJSON *src = cJSON_AddObjectToObject(o, "source");
    cJSON_AddStringToObject(src, "component", e->component);
    cJSON_AddStringToObject(src, "host", e->host);
    cJSON_AddStringToObject(o, "firstTimestamp", v->first);
    cJSON_AddStringToObject(o, "lastTimestamp", v->last);
    cJSON_AddNumberToObject(o, "count", v->count);
    cJSON_AddStringToObject(o, "reportingComponent", LM__EV_REPORTER);
    cJSON_AddStringToObject(o, "reportingInstance", e->instance);
    if (!meta || !io || !src) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Sends what v holds now: a new Event, or count and lastTimestamp of the one it made. */
static void lm__write(lm_events_t *e, lm__ev_t *v)
{
    const char *ev_ns = v->ns[0] ? v->ns : "default";
    char path[640];
    cJSON *body;
    int rc = LM_ERROR;
    v->dirty = false;
    if (v->ev_name) {
        body = cJSON_CreateObject();
        cJSON_AddNumberToObject(body, "count", v->count);
        cJSON_AddStringToObject(body, "lastTimestamp", v->last);
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/events/%s", ev_ns, v->ev_name);
        if (body)
            rc = lm_kube_request(e->kube, "PATCH", path, body, "application/merge-patch+json", lm__on_patch, v);
    } else {
        body = lm__event_body(e, v, ev_ns);
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/events", ev_ns);
        if (body)
            rc = lm_kube_request(e->kube, "POST", path, body, NULL, lm__on_post, v);
    }
    cJSON_Delete(body);
    if (rc != LM_OK) {
        lm__failed(e, v, "writing", 0, NULL, "request not started");
        return;
    }
    v->in_flight = true;
    e->st.in_flight++;
}

/* The common start of both answers; returns the owner or NULL (v was freed). */
static lm_events_t *lm__arrived(lm__ev_t *v)
{
    v->in_flight = false;
    lm_events_t *e = v->owner;
    if (!e) {
        lm__ev_free(v);
        return NULL;
    }
    e->st.in_flight--;
    return e;
}

/* Repeats that came while the write was out: one more write with the total. */
static void lm__after(lm_events_t *e, lm__ev_t *v)
{
    if (v->dirty && e->enabled)
        lm__write(e, v);
    v->dirty = false;
}

static void lm__on_post(int status, const cJSON *body, const char *err, void *data)
{
    lm__ev_t *v = data;
    lm_events_t *e = lm__arrived(v);
    if (!e)
        return;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(body, "metadata"), "name");
    if ((status == 200 || status == 201) && cJSON_IsString(name)) {
        free(v->ev_name);
        v->ev_name = strdup(name->valuestring);
        e->st.created++;
        lm__succeeded(e);
        lm__after(e, v);
    } else {
        lm__failed(e, v, "creating", status, body, err);
        v->dirty = false; /* no retry: the next occurrence tries again */
    }
}

static void lm__on_patch(int status, const cJSON *body, const char *err, void *data)
{
    lm__ev_t *v = data;
    lm_events_t *e = lm__arrived(v);
    if (!e)
        return;
    if (status == 200) {
        e->st.patched++;
        lm__succeeded(e);
        lm__after(e, v);
    } else if (status == 404) {
        /* the Event expired (the API server keeps them for an hour): make it again */
        free(v->ev_name);
        v->ev_name = NULL;
        if (e->enabled)
            lm__write(e, v);
    } else {
        lm__failed(e, v, "updating", status, body, err);
        v->dirty = false;
    }
}

/* ---- API ---------------------------------------------------------------------- */

lm_events_t *lm_events_new(lm_kube_t *k, const char *component, const char *host)
{
    lm_events_t *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->kube = k;
    e->component = strdup(component && component[0] ? component : "limen-controller");
    e->host = strdup(host ? host : "");
    e->instance = e->host ? strndup(e->host, lm__utf8_cut(e->host, strlen(e->host), LM__EV_INSTANCE_MAX)) : NULL;
    if (!e->component || !e->host || !e->instance) {
        free(e->component);
        free(e->host);
        free(e->instance);
        free(e);
        return NULL;
    }
    lm_map_init(&e->map);
    lm_events_set_rate(e, 25, 1);
    return e;
}

void lm_events_free(lm_events_t *e)
{
    if (!e)
        return;
    lm__forget_all(e);
    lm_map_free(&e->map);
    free(e->component);
    free(e->host);
    free(e->instance);
    free(e);
}

void lm_events_enable(lm_events_t *e, bool on)
{
    if (!e || e->enabled == on)
        return;
    e->enabled = on;
    if (!on)
        lm__forget_all(e);
}

void lm_events_set_rate(lm_events_t *e, unsigned burst, double per_second)
{
    e->burst = burst ? burst : 1;
    e->rate = per_second > 0 ? per_second : 0;
    e->tokens = e->burst;
    e->refilled_ms = lm__now_ms();
}

static bool lm__take_token(lm_events_t *e)
{
    uint64_t now = lm__now_ms();
    e->tokens = LM_MIN((double)e->burst, e->tokens + (double)(now - e->refilled_ms) * e->rate / 1000.0);
    e->refilled_ms = now;
    if (e->tokens < 1)
        return false;
    e->tokens -= 1;
    return true;
}

static const char *lm__or(const char *s)
{
    return s ? s : "";
}

void lm_event_post(lm_events_t *e, const char *api_version, const char *kind, const char *ns, const char *name,
                   const char *uid, const char *type, const char *reason, const char *message)
{
    if (!e)
        return;
    if (!e->enabled) {
        e->st.dropped_disabled++;
        return;
    }
    if (!kind || !kind[0] || !name || !name[0] || !reason || !reason[0]) {
        lm_log_debug("events: an Event needs a kind, a name and a reason");
        return;
    }
    if (!lm__take_token(e)) {
        e->st.dropped_rate++;
        if (!e->limited)
            lm_log_warn("events: more than %u Events at once: dropping some (%s on %s %s)", e->burst, reason, kind,
                        name);
        e->limited = true;
        return;
    }
    e->limited = false;

    /* the key: every field, message cut, back to back with their NULs */
    const char *f[8] = { lm__or(api_version), kind, lm__or(ns), name, lm__or(uid),
                         type && type[0] ? type : "Normal", reason, lm__or(message) };
    size_t len[8], total = 0;
    for (int i = 0; i < 8; i++) {
        len[i] = strlen(f[i]);
        if (i == 7)
            len[i] = lm__utf8_cut(f[i], len[i], LM__EV_MSG_MAX);
        total += len[i] + 1;
    }
    char *key = malloc(total);
    if (!key)
        return;
    const char *at[8];
    char *p = key;
    for (int i = 0; i < 8; i++) {
        memcpy(p, f[i], len[i]);
        p[len[i]] = '\0';
        at[i] = p;
        p += len[i] + 1;
    }

    uint64_t now = lm__now_ms();
    lm__ev_t *v = lm_map_get(&e->map, (lm_str_t){ key, total });
    if (v) {
        free(key);
        lm__unlink(e, v);
        lm__push_front(e, v);
        if (!v->in_flight && now - v->last_ms > LM__EV_WINDOW_MS) {
            free(v->ev_name); /* too old to add to: a new Event */
            v->ev_name = NULL;
            v->count = 0;
        }
    } else {
        v = calloc(1, sizeof(*v));
        if (!v) {
            free(key);
            return;
        }
        v->owner = e;
        v->key = key;
        v->key_len = total;
        v->api_version = at[0];
        v->kind = at[1];
        v->ns = at[2];
        v->name = at[3];
        v->uid = at[4];
        v->type = at[5];
        v->reason = at[6];
        v->message = at[7];
        lm_map_put(&e->map, (lm_str_t){ v->key, v->key_len }, v);
        lm__push_front(e, v);
        if (++e->num > LM__EV_CACHE)
            lm__forget(e, e->tail);
    }
    lm__time(v->last, sizeof(v->last));
    if (v->count == 0)
        memcpy(v->first, v->last, sizeof(v->first));
    v->count++;
    v->last_ms = now;
    if (v->in_flight) {
        v->dirty = true;
        e->st.folded++;
    } else {
        lm__write(e, v);
    }
}

void lm_events_stats(const lm_events_t *e, lm_events_stats_t *out)
{
    *out = e->st;
    out->remembered = e->num;
}

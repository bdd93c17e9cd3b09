/*
 * kube_informer.c - LIST + WATCH kept in a local cache (see lm_kube.h).
 *
 * One watcher per namespace (or one for all namespaces) runs this cycle:
 *
 *   LIST (pages of 500, "continue") --all pages in--> diff against the cache
 *        --> WATCH from the list's resourceVersion --ends normally--> WATCH again
 *   410 Gone (status or ERROR event) --> LIST; a failure --> backoff --> WATCH
 *   again from the last resourceVersion (LIST when there is none).
 *
 * Responses are parsed as they stream in: a LIST's "items" array is cut into
 * its elements by a small scanner and each element is parsed with cJSON on
 * its own; a WATCH is split on '\n' and each line is one event. So no page
 * and no stream is ever held whole: the buffers hold one object at most.
 *
 * Teardown follows libuv's rules: the memory goes in the timers' close
 * callbacks. User callbacks may stop the informer (or free the client); the
 * code re-checks `stopping` after every callback and a transfer whose write
 * callback is on the stack is ended by failing that callback, never removed
 * from under curl.
 */
#include "kube_internal.h"
#include "lm_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define LM__PAGE_LIMIT 500
#define LM__MAX_OBJECT LM__KSCAN_MAX_ITEM /* one object or one watch line */
#define LM__MAX_ERRBODY ((size_t)64 << 10)
#define LM__BACKOFF_MIN_MS 500
#define LM__BACKOFF_MAX_MS 30000
#define LM__HEALTHY_MS 60000

typedef enum { LM__IDLE, LM__LISTING, LM__WATCHING, LM__BACKOFF } lm__state_t;
/* what the end of the running transfer means, when decided while it ran */
typedef enum { LM__END_RESULT, LM__END_RELIST, LM__END_FAILED, LM__END_ABANDON } lm__end_t;

typedef struct {
    lm_informer_t *inf;
    uint32_t idx;
    char *ns;        /* NULL: all namespaces / cluster-scoped */
    char what[200];  /* "configmaps in namespace \"a\"", for logs */
    lm__state_t state;
    uv_timer_t timer; /* backoff */
    CURL *easy;       /* the running LIST or WATCH */
    struct curl_slist *headers;
    bool watch;       /* easy is a WATCH */
    bool in_write;    /* its write callback is on the stack */
    lm__end_t end;
    bool listed;      /* a LIST completed once */
    bool paused;      /* lm_informer_debug "pause" */
    bool next_list;   /* after the backoff: LIST (else WATCH) */
    long status;
    uint64_t started; /* ms (loop time) */
    uint64_t healthy_since;
    uint32_t backoff_ms;
    uint32_t gen;
    char *rv;   /* resourceVersion to watch from */
    char *cont; /* LIST continue token */
    lm__kbuf_t line; /* WATCH: the partial line; any non-200: the body */
    lm__kscan_t scan; /* LIST */
    char cause[96]; /* the failure last logged ("" when fine) */
} lm__nsw_t;

struct lm_informer {
    lm_kube_t *k;
    lm_curl_t *curl;
    lm_informer_t *prev, *next; /* in k->informers */
    lm_informer_spec_t spec;    /* a copy: every string below is ours */
    char **ns_copy;
    char *sel_query; /* "&labelSelector=...&fieldSelector=..." or "" */
    lm_informer_cb cb;
    void (*on_synced)(lm_informer_t *inf, void *data);
    void *data;
    lm__kcache_t cache;
    lm__nsw_t *ws;
    size_t nws;
    size_t open_timers;
    uint32_t gen_seq;
    bool synced, stopping, freed;
    lm_informer_stats_t stats;
};

static void lm__w_list(lm__nsw_t *w);
static void lm__w_watch(lm__nsw_t *w);
static size_t lm__w_write(char *p, size_t size, size_t n, void *data);
static void lm__w_done(CURL *easy, CURLcode rc, const char *errbuf, void *data);

/* ---- small things ------------------------------------------------------------- */

static void lm__set_str(char **dst, const char *s)
{
    char *n = s ? strdup(s) : NULL;
    free(*dst);
    *dst = n;
}

static const char *lm__meta_str(const cJSON *obj, const char *field)
{
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, field);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static uint64_t lm__now(lm__nsw_t *w)
{
    return uv_now(w->timer.loop);
}

static void lm__note_buffer(lm_informer_t *inf, size_t n)
{
    if (n > inf->stats.max_buffer)
        inf->stats.max_buffer = n;
}

/* ---- the cache ------------------------------------------------------------------ */

static void lm__emit(lm_informer_t *inf, lm_inf_event_t ev, const cJSON *old, const cJSON *obj)
{
    if (inf->stopping)
        return;
    inf->stats.events++;
    inf->cb(inf, ev, old, obj, inf->data);
}

/* Trims obj for the cache: our stripping, then the spec's transform. */
static void lm__prepare(lm_informer_t *inf, cJSON *obj)
{
    lm__kcache_prepare(obj, inf->spec.kind, inf->spec.api_version);
    if (inf->spec.transform)
        inf->spec.transform(obj, inf->data);
}

/* Adds or replaces obj (owned) in the cache; ADDED, or MODIFIED when its
 * resourceVersion changed. LM_ERROR: not an object with a name, or no memory. */
static int lm__upsert(lm__nsw_t *w, cJSON *obj)
{
    lm_informer_t *inf = w->inf;
    const char *name = lm__meta_str(obj, "name");
    char key[512];
    size_t kl;
    if (!cJSON_IsObject(obj) || !name ||
        !lm__kcache_key(key, sizeof(key), lm__meta_str(obj, "namespace"), name, &kl)) {
        cJSON_Delete(obj);
        return LM_ERROR;
    }
    lm__kentry_t *cur = lm__kcache_get(&inf->cache, key, kl);
    if (cur) {
        cur->gen = w->gen;
        const char *orv = lm__meta_str(cur->obj, "resourceVersion"), *nrv = lm__meta_str(obj, "resourceVersion");
        if (orv && nrv && strcmp(orv, nrv) == 0) { /* nothing new (a relist, a repeated event) */
            cJSON_Delete(obj);
            return LM_OK;
        }
    }
    lm__prepare(inf, obj);
    lm__kentry_t *e = lm__kcache_freeze(&inf->cache, key, kl, obj);
    cJSON_Delete(obj);
    if (!e)
        return LM_ERROR;
    e->gen = w->gen;
    e->w = w->idx;
    lm__kentry_t *old = lm__kcache_put(&inf->cache, e);
    lm__emit(inf, old ? LM_INF_MODIFIED : LM_INF_ADDED, old ? old->obj : NULL, e->obj);
    free(old);
    return LM_OK;
}

/* A DELETED watch event: obj (owned) is the object's last state. */
static void lm__remove(lm__nsw_t *w, cJSON *obj)
{
    lm_informer_t *inf = w->inf;
    const char *name = lm__meta_str(obj, "name");
    char key[512];
    size_t kl;
    if (name && lm__kcache_key(key, sizeof(key), lm__meta_str(obj, "namespace"), name, &kl)) {
        lm__kentry_t *e = lm__kcache_del(&inf->cache, key, kl);
        if (e) {
            lm__prepare(inf, obj);
            lm__emit(inf, LM_INF_DELETED, e->obj, obj);
            free(e);
        }
    }
    cJSON_Delete(obj);
}

/* After a complete LIST: what this watcher holds and the LIST did not see is gone. */
static void lm__sweep(lm__nsw_t *w)
{
    lm_informer_t *inf = w->inf;
    lm_map_t *m = &inf->cache.map;
    size_t n = 0, cap = 0;
    lm__kentry_t **gone = NULL;
    for (size_t i = 0; i < m->cap; i++) {
        lm__kentry_t *e = m->slots[i].value;
        if (!m->slots[i].key.ptr || e->w != w->idx || e->gen == w->gen)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            lm__kentry_t **g = realloc(gone, nc * sizeof(*g));
            if (!g)
                break; /* the rest goes at the next LIST */
            gone = g;
            cap = nc;
        }
        gone[n++] = e;
    }
    for (size_t i = 0; i < n; i++) {
        lm__kentry_t *e = gone[i];
        lm__kcache_del(&inf->cache, e->key, e->key_len);
        lm__emit(inf, LM_INF_DELETED, e->obj, e->obj);
        free(e);
    }
    free(gone);
}

/* ---- failures, logs, backoff ------------------------------------------------------- */

static void lm__on_timer(uv_timer_t *t);

static void lm__record_error(lm__nsw_t *w, const char *cause, lm_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void lm__record_error(lm__nsw_t *w, const char *cause, lm_log_level_t level, const char *fmt, ...)
{
    lm_informer_t *inf = w->inf;
    char msg[sizeof(inf->stats.last_error)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    inf->stats.errors++;
    memcpy(inf->stats.last_error, msg, sizeof(msg));
    if (strcmp(w->cause, cause) != 0) { /* once per cause, not once per retry */
        lm_log(level, "kube: %s (retrying with backoff; not logged again until the cause changes)", msg);
        snprintf(w->cause, sizeof(w->cause), "%s", cause);
    }
}

static void lm__healthy(lm__nsw_t *w, const char *verb)
{
    if (!w->healthy_since)
        w->healthy_since = lm__now(w) ? lm__now(w) : 1;
    if (w->cause[0]) {
        lm_log_info("kube: %s %s works again", verb, w->what);
        w->cause[0] = '\0';
    }
}

static void lm__backoff(lm__nsw_t *w, bool list_next)
{
    uint64_t now = lm__now(w);
    if (w->healthy_since && now - w->healthy_since >= LM__HEALTHY_MS)
        w->backoff_ms = 0; /* a healthy minute forgives the past */
    w->healthy_since = 0;
    w->backoff_ms = w->backoff_ms ? LM_MIN(w->backoff_ms * 2, LM__BACKOFF_MAX_MS) : LM__BACKOFF_MIN_MS;
    uint64_t delay = w->backoff_ms / 2 + lm__kube_rand(w->inf->k, w->backoff_ms / 2 + 1);
    w->state = LM__BACKOFF;
    w->next_list = list_next;
    uv_timer_start(&w->timer, lm__on_timer, delay, 0);
}

static void lm__on_timer(uv_timer_t *t)
{
    lm__nsw_t *w = t->data;
    if (w->inf->stopping || w->state != LM__BACKOFF)
        return;
    w->state = LM__IDLE;
    if (w->next_list || !w->rv)
        lm__w_list(w);
    else if (!w->paused)
        lm__w_watch(w);
}

/* The Status object's message, or the start of the body. */
static void lm__status_message(const lm__kbuf_t *body, char *out, size_t cap)
{
    cJSON *st = body->len ? cJSON_ParseWithLength(body->buf, body->len) : NULL;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(st, "message");
    if (cJSON_IsString(m))
        snprintf(out, cap, "%s", m->valuestring);
    else
        snprintf(out, cap, "%.*s", (int)LM_MIN(body->len, 120), body->buf ? body->buf : "");
    cJSON_Delete(st);
}

/* ---- transfers --------------------------------------------------------------------- */

static void lm__release(lm__nsw_t *w)
{
    if (w->easy)
        curl_easy_cleanup(w->easy);
    curl_slist_free_all(w->headers);
    w->easy = NULL;
    w->headers = NULL;
}

/* Ends the running transfer now, or (inside its write callback) as soon as
 * that callback returns: then the done callback sees `end`. */
static void lm__abandon(lm__nsw_t *w, lm__end_t end)
{
    if (!w->easy)
        return;
    if (w->in_write) {
        w->end = end;
        return;
    }
    lm_curl_remove(w->inf->curl, w->easy);
    lm__release(w);
    w->state = LM__IDLE;
}

static void lm__maybe_free(lm_informer_t *inf)
{
    if (!inf->stopping || inf->open_timers || inf->freed)
        return;
    for (size_t i = 0; i < inf->nws; i++)
        if (inf->ws[i].easy)
            return;
    inf->freed = true;
    lm__kcache_free(&inf->cache);
    for (size_t i = 0; i < inf->nws; i++) {
        lm__nsw_t *w = &inf->ws[i];
        free(w->ns);
        free(w->rv);
        free(w->cont);
        lm__kbuf_free(&w->line);
        lm__kscan_free(&w->scan);
    }
    free(inf->ws);
    for (size_t i = 0; i < inf->spec.num_namespaces; i++)
        free(inf->ns_copy[i]);
    free(inf->ns_copy);
    free((char *)inf->spec.api_path);
    free((char *)inf->spec.resource);
    free((char *)inf->spec.kind);
    free((char *)inf->spec.api_version);
    free((char *)inf->spec.label_selector);
    free((char *)inf->spec.field_selector);
    free(inf->sel_query);
    free(inf);
}

static void lm__timer_closed(uv_handle_t *h)
{
    lm__nsw_t *w = h->data;
    lm_informer_t *inf = w->inf;
    inf->open_timers--;
    lm__maybe_free(inf);
}

static size_t lm__header_cb(char *p, size_t size, size_t n, void *data)
{
    lm__nsw_t *w = data;
    size_t len = size * n;
    if (len <= 2 && (p[0] == '\r' || p[0] == '\n')) { /* end of the headers */
        long st = 0;
        curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &st);
        if (st >= 200) { /* not an interim 1xx */
            w->status = st;
            if (st == 200 && w->watch)
                lm__healthy(w, "WATCH");
        }
    }
    return len;
}

/* Starts a request on w's resource: LIST (query "limit=...") or WATCH. */
static bool lm__start(lm__nsw_t *w, const char *query, bool watch, long timeout_ms)
{
    lm_informer_t *inf = w->inf;
    const lm_informer_spec_t *s = &inf->spec;
    size_t cap = strlen(s->api_path) + strlen(s->resource) + (w->ns ? strlen(w->ns) : 0) + strlen(query) +
                 strlen(inf->sel_query) + 32;
    char *path = malloc(cap);
    if (!path)
        return false;
    if (w->ns)
        snprintf(path, cap, "%s/namespaces/%s/%s?%s%s", s->api_path, w->ns, s->resource, query, inf->sel_query);
    else
        snprintf(path, cap, "%s/%s?%s%s", s->api_path, s->resource, query, inf->sel_query);
    w->easy = lm__kube_easy(inf->k, path, NULL, &w->headers);
    free(path);
    if (!w->easy)
        return false;
    curl_easy_setopt(w->easy, CURLOPT_WRITEFUNCTION, lm__w_write);
    curl_easy_setopt(w->easy, CURLOPT_WRITEDATA, w);
    curl_easy_setopt(w->easy, CURLOPT_HEADERFUNCTION, lm__header_cb);
    curl_easy_setopt(w->easy, CURLOPT_HEADERDATA, w);
    if (timeout_ms)
        curl_easy_setopt(w->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    if (!watch) { /* a LIST that stalls for a minute is dead */
        curl_easy_setopt(w->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(w->easy, CURLOPT_LOW_SPEED_TIME, 60L);
    }
    w->watch = watch;
    w->status = 0;
    w->end = LM__END_RESULT;
    w->started = lm__now(w);
    lm__kbuf_reset(&w->line);
    if (lm_curl_add(inf->curl, w->easy, lm__w_done, w) != LM_OK) {
        lm__release(w);
        return false;
    }
    return true;
}

static void lm__w_list(lm__nsw_t *w)
{
    lm_informer_t *inf = w->inf;
    if (inf->stopping)
        return;
    char *cont = NULL;
    if (w->cont) {
        cont = lm__kube_query_escape(w->cont);
        if (!cont) {
            lm__backoff(w, true);
            return;
        }
    } else {
        w->gen = ++inf->gen_seq; /* a LIST from the start */
        if (w->listed)
            inf->stats.relists++;
    }
    lm__kscan_reset(&w->scan);
    char query[64];
    snprintf(query, sizeof(query), "limit=%d", LM__PAGE_LIMIT);
    char *q = query;
    if (cont) {
        size_t ql = strlen(query) + strlen(cont) + 16;
        q = malloc(ql);
        if (q)
            snprintf(q, ql, "%s&continue=%s", query, cont);
        free(cont);
        if (!q) {
            lm__backoff(w, true);
            return;
        }
    }
    bool ok = lm__start(w, q, false, 0);
    if (q != query)
        free(q);
    if (!ok) {
        lm__record_error(w, "LIST start", LM_LOG_ERROR, "LIST %s: cannot start the request", w->what);
        lm__backoff(w, true);
        return;
    }
    w->state = LM__LISTING;
}

static void lm__w_watch(lm__nsw_t *w)
{
    lm_informer_t *inf = w->inf;
    if (inf->stopping || w->paused)
        return;
    if (!w->rv) {
        lm__w_list(w);
        return;
    }
    unsigned t = inf->spec.watch_timeout ? inf->spec.watch_timeout : 240 + (unsigned)lm__kube_rand(inf->k, 121);
    char *rv = lm__kube_query_escape(w->rv);
    char query[256];
    if (rv)
        snprintf(query, sizeof(query), "watch=1&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%u",
                 rv, t);
    free(rv);
    /* a hard stop well after the server's own: a half-dead connection ends too */
    if (!rv || !lm__start(w, query, true, (long)(t + 30) * 1000)) {
        lm__record_error(w, "WATCH start", LM_LOG_ERROR, "WATCH %s: cannot start the request", w->what);
        lm__backoff(w, false);
        return;
    }
    inf->stats.watches++;
    w->state = LM__WATCHING;
}

/* ---- parsing ------------------------------------------------------------------------ */

static int lm__list_item(void *ctx, const char *p, size_t n)
{
    lm__nsw_t *w = ctx;
    lm__note_buffer(w->inf, n);
    cJSON *obj = cJSON_ParseWithLength(p, n);
    if (!obj) {
        lm__record_error(w, "LIST parse", LM_LOG_ERROR, "LIST %s: an item is not valid JSON", w->what);
        w->end = LM__END_FAILED;
        return LM_ERROR;
    }
    if (lm__upsert(w, obj) != LM_OK)
        lm_log_warn("kube: LIST %s: an item without metadata.name (skipped)", w->what);
    return w->inf->stopping || w->end != LM__END_RESULT ? LM_ERROR : LM_OK;
}

/* Feeds LIST bytes to the scanner. LM_ERROR: the LIST must end (w->end says how). */
static int lm__scan(lm__nsw_t *w, const char *p, size_t n)
{
    int rc = lm__kscan_feed(&w->scan, p, n, lm__list_item, w);
    if (rc == LM__KSCAN_OK)
        return LM_OK;
    if (rc == LM__KSCAN_TOO_LARGE)
        lm__record_error(w, "LIST too large", LM_LOG_ERROR, "LIST %s: an item is larger than %zu bytes", w->what,
                         LM__MAX_OBJECT);
    else if (rc == LM__KSCAN_MALFORMED)
        lm__record_error(w, "LIST parse", LM_LOG_ERROR, "LIST %s: the response is not a list", w->what);
    if (w->end == LM__END_RESULT && rc != LM__KSCAN_STOPPED)
        w->end = LM__END_FAILED;
    return LM_ERROR;
}

/* One watch event. LM_OK, or LM_ERROR when the watch must end (w->end says how). */
static int lm__watch_line(lm__nsw_t *w, const char *p, size_t n)
{
    lm_informer_t *inf = w->inf;
    while (n && (p[0] == ' ' || p[0] == '\r' || p[0] == '\t')) {
        p++;
        n--;
    }
    if (!n)
        return LM_OK;
    lm__note_buffer(inf, n);
    cJSON *ev = cJSON_ParseWithLength(p, n);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "type");
    cJSON *obj = cJSON_DetachItemFromObjectCaseSensitive(ev, "object");
    /* 1 ADDED/MODIFIED, 2 DELETED, 3 BOOKMARK, 4 ERROR, 0 unknown (ignored) */
    int kind = -1;
    if (cJSON_IsString(type)) {
        const char *t = type->valuestring;
        kind = !strcmp(t, "ADDED") || !strcmp(t, "MODIFIED") ? 1
             : !strcmp(t, "DELETED")                         ? 2
             : !strcmp(t, "BOOKMARK")                        ? 3
             : !strcmp(t, "ERROR")                           ? 4
                                                             : 0;
    }
    cJSON_Delete(ev);
    if (kind < 0 || !cJSON_IsObject(obj)) {
        cJSON_Delete(obj);
        lm__record_error(w, "WATCH parse", LM_LOG_ERROR, "WATCH %s: an event is not valid JSON", w->what);
        w->end = LM__END_FAILED;
        return LM_ERROR;
    }
    if (kind == 4) {
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(obj, "code");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(obj, "message");
        const char *m = cJSON_IsString(msg) ? msg->valuestring : "";
        if (cJSON_IsNumber(code) && code->valueint == 410) {
            lm_log_info("kube: WATCH %s: 410 Gone (%s): listing again", w->what, m);
            w->end = LM__END_RELIST;
        } else {
            char cause[32];
            snprintf(cause, sizeof(cause), "WATCH ERROR %d", cJSON_IsNumber(code) ? code->valueint : 0);
            lm__record_error(w, cause, LM_LOG_WARN, "WATCH %s: error event %d: %s", w->what,
                             cJSON_IsNumber(code) ? code->valueint : 0, m);
            w->end = LM__END_FAILED;
        }
        cJSON_Delete(obj);
        return LM_ERROR;
    }
    const char *rv = lm__meta_str(obj, "resourceVersion");
    if (rv && kind)
        lm__set_str(&w->rv, rv);
    switch (kind) {
    case 1:
        if (lm__upsert(w, obj) != LM_OK)
            lm_log_warn("kube: WATCH %s: an object without metadata.name (skipped)", w->what);
        break;
    case 2:
        lm__remove(w, obj);
        break;
    case 3:
        inf->stats.bookmarks++;
        cJSON_Delete(obj);
        break;
    default:
        cJSON_Delete(obj);
        break;
    }
    return inf->stopping ? LM_ERROR : LM_OK;
}

/* curl's write callback for LISTs and WATCHes. Returning less than asked
 * ends the transfer (CURLE_WRITE_ERROR); w->end says why. */
static size_t lm__w_write(char *p, size_t size, size_t n, void *data)
{
    lm__nsw_t *w = data;
    lm_informer_t *inf = w->inf;
    size_t len = size * n;
    if (inf->stopping || w->end != LM__END_RESULT)
        return 0;
    if (!w->status)
        curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &w->status);
    if (w->status != 200) { /* a Status object: keep its start for the message */
        size_t room = LM__MAX_ERRBODY - 1 - LM_MIN(w->line.len, LM__MAX_ERRBODY - 1);
        lm__kbuf_add(&w->line, p, LM_MIN(len, room), LM__MAX_ERRBODY);
        return len;
    }
    w->in_write = true;
    int rc = LM_OK;
    if (!w->watch) {
        if (lm__scan(w, p, len) != LM_OK) {
            rc = LM_ERROR;
            if (w->end == LM__END_RESULT)
                w->end = LM__END_FAILED;
        }
    } else {
        size_t from = w->line.len;
        if (lm__kbuf_add(&w->line, p, len, LM__MAX_OBJECT + 2) != LM_OK) {
            lm__record_error(w, "WATCH too large", LM_LOG_ERROR, "WATCH %s: an event is larger than %zu bytes",
                             w->what, LM__MAX_OBJECT);
            w->end = LM__END_FAILED;
            rc = LM_ERROR;
        } else {
            size_t start = 0;
            for (size_t i = from; i < w->line.len && rc == LM_OK; i++) {
                if (w->line.buf[i] != '\n')
                    continue;
                rc = lm__watch_line(w, w->line.buf + start, i - start);
                start = i + 1;
            }
            if (rc == LM_OK) {
                if (start == w->line.len)
                    lm__kbuf_reset(&w->line);
                else if (start) {
                    memmove(w->line.buf, w->line.buf + start, w->line.len - start);
                    w->line.len -= start;
                }
            }
        }
    }
    w->in_write = false;
    if (inf->stopping || w->end != LM__END_RESULT)
        return 0;
    return rc == LM_OK ? len : 0;
}

/* ---- the end of a transfer -------------------------------------------------------------- */

static void lm__check_synced(lm_informer_t *inf)
{
    if (inf->synced)
        return;
    for (size_t i = 0; i < inf->nws; i++)
        if (!inf->ws[i].listed)
            return;
    inf->synced = true;
    if (inf->on_synced && !inf->stopping)
        inf->on_synced(inf, inf->data);
}

/* A failed LIST starts again from the first page after the backoff. */
static void lm__list_failed(lm__nsw_t *w)
{
    free(w->cont);
    w->cont = NULL;
    lm__backoff(w, true);
}

static void lm__list_done(lm__nsw_t *w, CURLcode rc, const char *errbuf, long status)
{
    lm_informer_t *inf = w->inf;
    if (w->end == LM__END_FAILED) {
        lm__list_failed(w);
        return;
    }
    if (rc != CURLE_OK) {
        char cause[48];
        snprintf(cause, sizeof(cause), "LIST curl %d", (int)rc);
        lm__record_error(w, cause, LM_LOG_WARN, "LIST %s failed: %s", w->what,
                         errbuf[0] ? errbuf : curl_easy_strerror(rc));
        lm__list_failed(w);
        return;
    }
    if (status == 410 && w->cont) { /* the continue token expired: from the start */
        lm_log_info("kube: LIST %s: continue token expired (410 Gone): listing again from the start", w->what);
        free(w->cont);
        w->cont = NULL;
        lm__w_list(w);
        return;
    }
    if (status != 200) {
        char msg[200], cause[48];
        lm__status_message(&w->line, msg, sizeof(msg));
        snprintf(cause, sizeof(cause), "LIST %ld", status);
        lm__record_error(w, cause, LM_LOG_WARN, "LIST %s failed: HTTP %ld: %s", w->what, status, msg);
        lm__kbuf_reset(&w->line);
        lm__list_failed(w);
        return;
    }
    inf->stats.pages++;
    cJSON *rest = lm__kscan_finish(&w->scan);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(rest, "metadata");
    const cJSON *cont = cJSON_GetObjectItemCaseSensitive(meta, "continue");
    const cJSON *rv = cJSON_GetObjectItemCaseSensitive(meta, "resourceVersion");
    if (!cJSON_IsString(rv) || !rv->valuestring[0]) {
        cJSON_Delete(rest);
        lm__record_error(w, "LIST parse", LM_LOG_ERROR, "LIST %s: the response is not a list", w->what);
        lm__list_failed(w);
        return;
    }
    if (cJSON_IsString(cont) && cont->valuestring[0]) {
        lm__set_str(&w->cont, cont->valuestring);
        cJSON_Delete(rest);
        lm__w_list(w);
        return;
    }
    free(w->cont);
    w->cont = NULL;
    lm__set_str(&w->rv, rv->valuestring);
    cJSON_Delete(rest);
    inf->stats.lists++;
    lm__healthy(w, "LIST");
    lm__sweep(w);
    if (inf->stopping)
        return;
    w->listed = true;
    w->state = LM__IDLE;
    lm__check_synced(inf);
    if (inf->stopping)
        return;
    lm__w_watch(w);
}

static void lm__watch_done(lm__nsw_t *w, CURLcode rc, const char *errbuf, long status)
{
    if (w->end == LM__END_RELIST || status == 410) {
        if (status == 410)
            lm_log_info("kube: WATCH %s: 410 Gone: listing again", w->what);
        lm__w_list(w);
        return;
    }
    if (w->end == LM__END_FAILED) {
        lm__backoff(w, false);
        return;
    }
    if (rc == CURLE_OK && status == 200) {
        /* the server ended the watch (timeoutSeconds): again, at once,
         * unless it ends them as soon as they start */
        if (lm__now(w) - w->started < 1000)
            lm__backoff(w, false);
        else
            lm__w_watch(w);
        return;
    }
    if (rc != CURLE_OK) {
        char cause[48];
        snprintf(cause, sizeof(cause), "WATCH curl %d", (int)rc);
        lm__record_error(w, cause, LM_LOG_WARN, "WATCH %s ended: %s", w->what,
                         errbuf[0] ? errbuf : curl_easy_strerror(rc));
    } else {
        char msg[200], cause[48];
        lm__status_message(&w->line, msg, sizeof(msg));
        snprintf(cause, sizeof(cause), "WATCH %ld", status);
        lm__record_error(w, cause, LM_LOG_WARN, "WATCH %s failed: HTTP %ld: %s", w->what, status, msg);
    }
    lm__kbuf_reset(&w->line);
    lm__backoff(w, false);
}

static void lm__w_done(CURL *easy, CURLcode rc, const char *errbuf, void *data)
{
    lm__nsw_t *w = data;
    lm_informer_t *inf = w->inf;
    long status = w->status;
    if (!status && rc == CURLE_OK)
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    lm__release(w);
    w->state = LM__IDLE;
    if (inf->stopping) {
        lm__maybe_free(inf);
        return;
    }
    lm__end_t end = w->end;
    if (end == LM__END_ABANDON) { /* pause / stale from inside a callback */
        w->end = LM__END_RESULT;
        if (!w->paused)
            lm__w_watch(w);
        return;
    }
    if (w->watch)
        lm__watch_done(w, rc, errbuf, status);
    else
        lm__list_done(w, rc, errbuf, status);
    lm__kbuf_reset(&w->line);
}

/* ---- API ------------------------------------------------------------------------------------ */

static char *lm__dup(const char *s, bool *ok)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *ok = false;
    return d;
}

lm_informer_t *lm_informer_start(lm_kube_t *k, const lm_informer_spec_t *spec, lm_informer_cb cb,
                                 void (*on_synced)(lm_informer_t *inf, void *data), void *data)
{
    if (!spec || !spec->api_path || !spec->resource || !cb)
        return NULL;
    lm_informer_t *inf = calloc(1, sizeof(*inf));
    if (!inf)
        return NULL;
    bool ok = true;
    inf->k = k;
    inf->curl = k->curl;
    inf->cb = cb;
    inf->on_synced = on_synced;
    inf->data = data;
    lm__kcache_init(&inf->cache);
    inf->spec = *spec;
    inf->spec.api_path = lm__dup(spec->api_path, &ok);
    inf->spec.resource = lm__dup(spec->resource, &ok);
    inf->spec.kind = lm__dup(spec->kind, &ok);
    inf->spec.api_version = lm__dup(spec->api_version, &ok);
    inf->spec.label_selector = lm__dup(spec->label_selector, &ok);
    inf->spec.field_selector = lm__dup(spec->field_selector, &ok);
    size_t nns = spec->cluster_scoped || !spec->namespaces ? 0 : spec->num_namespaces;
    inf->spec.num_namespaces = 0;
    inf->spec.namespaces = NULL;
    if (nns) {
        inf->ns_copy = calloc(nns, sizeof(char *));
        if (!inf->ns_copy)
            ok = false;
        for (size_t i = 0; ok && i < nns; i++) {
            inf->ns_copy[i] = lm__dup(spec->namespaces[i] ? spec->namespaces[i] : "", &ok);
            inf->spec.num_namespaces = i + 1;
        }
        inf->spec.namespaces = (const char *const *)inf->ns_copy;
    }
    /* the selectors, escaped once */
    char *ls = spec->label_selector && spec->label_selector[0] ? lm__kube_query_escape(spec->label_selector) : NULL;
    char *fs = spec->field_selector && spec->field_selector[0] ? lm__kube_query_escape(spec->field_selector) : NULL;
    size_t ql = (ls ? strlen(ls) + 16 : 0) + (fs ? strlen(fs) + 16 : 0) + 1;
    inf->sel_query = malloc(ql);
    if (inf->sel_query)
        snprintf(inf->sel_query, ql, "%s%s%s%s", ls ? "&labelSelector=" : "", ls ? ls : "",
                 fs ? "&fieldSelector=" : "", fs ? fs : "");
    else
        ok = false;
    if ((spec->label_selector && spec->label_selector[0] && !ls) ||
        (spec->field_selector && spec->field_selector[0] && !fs))
        ok = false;
    free(ls);
    free(fs);
    inf->nws = nns ? nns : 1;
    inf->ws = ok ? calloc(inf->nws, sizeof(lm__nsw_t)) : NULL;
    if (!inf->ws) {
        inf->nws = 0;
        inf->stopping = true;
        lm__maybe_free(inf);
        return NULL;
    }
    for (size_t i = 0; i < inf->nws; i++) {
        lm__nsw_t *w = &inf->ws[i];
        w->inf = inf;
        w->idx = (uint32_t)i;
        if (nns) {
            w->ns = strdup(inf->ns_copy[i]);
            if (!w->ns)
                ok = false;
            snprintf(w->what, sizeof(w->what), "%s in namespace \"%s\"", spec->resource, inf->ns_copy[i]);
        } else {
            snprintf(w->what, sizeof(w->what), "%s %s", spec->resource,
                     spec->cluster_scoped ? "(cluster-scoped)" : "in all namespaces");
        }
        uv_timer_init(k->loop, &w->timer);
        w->timer.data = w;
        inf->open_timers++;
    }
    if (!ok) { /* freed once the timers are closed */
        inf->stopping = true;
        for (size_t i = 0; i < inf->nws; i++)
            uv_close((uv_handle_t *)&inf->ws[i].timer, lm__timer_closed);
        return NULL;
    }
    inf->next = k->informers;
    if (k->informers)
        k->informers->prev = inf;
    k->informers = inf;
    for (size_t i = 0; i < inf->nws && !inf->stopping; i++)
        lm__w_list(&inf->ws[i]);
    return inf;
}

void lm_informer_stop(lm_informer_t *inf)
{
    if (!inf || inf->stopping)
        return;
    inf->stopping = true;
    lm_kube_t *k = inf->k;
    if (inf->prev)
        inf->prev->next = inf->next;
    else if (k->informers == inf)
        k->informers = inf->next;
    if (inf->next)
        inf->next->prev = inf->prev;
    inf->prev = inf->next = NULL;
    inf->k = NULL;
    for (size_t i = 0; i < inf->nws; i++) {
        lm__nsw_t *w = &inf->ws[i];
        lm__abandon(w, LM__END_ABANDON); /* inside its write callback: its done callback frees */
        uv_timer_stop(&w->timer);
        uv_close((uv_handle_t *)&w->timer, lm__timer_closed);
    }
}

void lm__kube_stop_informers(lm_kube_t *k)
{
    while (k->informers)
        lm_informer_stop(k->informers);
}

bool lm_informer_synced(const lm_informer_t *inf)
{
    return inf->synced;
}

size_t lm_informer_count(const lm_informer_t *inf)
{
    return inf->cache.map.count;
}

const cJSON *lm_informer_get(const lm_informer_t *inf, const char *ns, const char *name)
{
    char key[512];
    size_t kl;
    if (!name || !lm__kcache_key(key, sizeof(key), ns, name, &kl))
        return NULL;
    lm__kentry_t *e = lm__kcache_get(&inf->cache, key, kl);
    return e ? e->obj : NULL;
}

size_t lm_informer_list(const lm_informer_t *inf, const cJSON ***items)
{
    return lm__kcache_sorted(&inf->cache, items);
}

void lm_informer_stats(const lm_informer_t *inf, lm_informer_stats_t *out)
{
    *out = inf->stats;
}

const lm_informer_spec_t *lm_informer_spec(const lm_informer_t *inf)
{
    return &inf->spec;
}

int lm_informer_debug(lm_informer_t *inf, const char *verb)
{
    bool pause = !strcmp(verb, "pause"), resume = !strcmp(verb, "resume"), stale = !strcmp(verb, "stale");
    if (!pause && !resume && !stale)
        return LM_ERROR;
    if (inf->stopping)
        return LM_OK;
    for (size_t i = 0; i < inf->nws; i++) {
        lm__nsw_t *w = &inf->ws[i];
        if (pause)
            w->paused = true;
        if (resume)
            w->paused = false;
        if (stale && w->rv)
            lm__set_str(&w->rv, "1");
        if ((pause || stale) && w->easy && w->watch) {
            lm__abandon(w, LM__END_ABANDON);
            if (!w->easy && !w->paused)
                lm__w_watch(w);
        } else if (resume && w->state == LM__IDLE && !w->easy && w->listed) {
            lm__w_watch(w);
        }
    }
    return LM_OK;
}

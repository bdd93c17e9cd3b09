/*
 * status.c - Ingress load-balancer status and CRD conditions (see lm_status.h).
 *
 * One write entry per object, found by its status path in a map. An entry
 * holds the patch waiting for a slot (`body`, then it is in the FIFO queue)
 * and the serialized patch in flight (`sent`); it lives while it has either.
 * A new patch for an object whose write is in flight waits in `body` and
 * joins the queue when that write is answered, so one object's writes never
 * overtake each other. An entry freed (lm_status_free) while its write is out
 * is orphaned (owner NULL) and freed by the answer.
 */
#include "lm_status.h"
#include "lm_log.h"
#include "lm_map.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define LM__COND_TYPE "Programmed"
#define LM__COND_MSG_MAX 32768

typedef struct lm__sw lm__sw_t;

struct lm__sw {
    lm_status_t *owner;    /* NULL: orphaned while in flight */
    lm__sw_t *prev, *next; /* the queue */
    char *path;            /* the status subresource; also the map key */
    char *what;            /* "Ingress default/shop", for logs */
    cJSON *body;           /* the patch waiting, or NULL */
    char *sent;            /* the patch in flight, or NULL */
    bool queued;
};

struct lm_status {
    lm_kube_t *kube;
    bool enabled;
    bool have_addrs;
    char *addrs_key;  /* the address set, canonical: sorted "0ip" / "1hostname" lines */
    cJSON *lb;        /* the same as status.loadBalancer.ingress */
    lm_map_t writes;
    lm__sw_t *head, *tail;
    bool failing;
    lm_status_stats_t st;
};

/* ---- entries and the queue ------------------------------------------------------- */

static void lm__sw_free(lm__sw_t *w)
{
    cJSON_Delete(w->body);
    free(w->sent);
    free(w->path);
    free(w->what);
    free(w);
}

static void lm__dequeue(lm_status_t *s, lm__sw_t *w)
{
    if (!w->queued)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        s->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        s->tail = w->prev;
    w->prev = w->next = NULL;
    w->queued = false;
    s->st.queued--;
}

static void lm__enqueue(lm_status_t *s, lm__sw_t *w)
{
    if (w->queued)
        return;
    w->next = NULL;
    w->prev = s->tail;
    if (s->tail)
        s->tail->next = w;
    else
        s->head = w;
    s->tail = w;
    w->queued = true;
    s->st.queued++;
}

/* Frees w when it holds nothing any more. */
static void lm__maybe_drop(lm_status_t *s, lm__sw_t *w)
{
    if (w->body || w->sent)
        return;
    lm_map_del(&s->writes, lm_str(w->path));
    lm__sw_free(w);
}

static void lm__on_patched(int status, const cJSON *body, const char *err, void *data);

/* Starts queued writes while there are free slots. */
static void lm__dispatch(lm_status_t *s)
{
    while (s->head && s->st.in_flight < LM_STATUS_MAX_IN_FLIGHT) {
        lm__sw_t *w = s->head;
        lm__dequeue(s, w);
        char *text = cJSON_PrintUnformatted(w->body);
        if (text && lm_kube_request(s->kube, "PATCH", w->path, w->body, "application/merge-patch+json",
                                    lm__on_patched, w) == LM_OK) {
            w->sent = text;
            if (++s->st.in_flight > s->st.max_in_flight)
                s->st.max_in_flight = s->st.in_flight;
        } else {
            free(text);
            s->st.failures++;
            lm_log_warn("status: %s: request not started", w->what);
        }
        cJSON_Delete(w->body);
        w->body = NULL;
        lm__maybe_drop(s, w);
    }
}

/* Wants patch (owned) written to path, unless that exact patch is already on its way. */
static void lm__want(lm_status_t *s, const char *path, const char *what, cJSON *patch)
{
    if (!patch)
        return;
    lm__sw_t *w = lm_map_get(&s->writes, lm_str(path));
    if (w) {
        if (w->body) {
            cJSON_Delete(w->body);
            w->body = NULL;
            s->st.superseded++;
        }
        char *text = w->sent ? cJSON_PrintUnformatted(patch) : NULL;
        bool same = text && strcmp(text, w->sent) == 0;
        free(text);
        if (same) {
            cJSON_Delete(patch);
            lm__dequeue(s, w);
            return;
        }
        w->body = patch;
        if (!w->sent)
            lm__enqueue(s, w); /* a queued entry keeps its place */
    } else {
        w = calloc(1, sizeof(*w));
        if (!w || !(w->path = strdup(path)) || !(w->what = strdup(what))) {
            if (w)
                lm__sw_free(w);
            cJSON_Delete(patch);
            return;
        }
        w->owner = s;
        w->body = patch;
        lm_map_put(&s->writes, lm_str(w->path), w);
        lm__enqueue(s, w);
    }
    lm__dispatch(s);
}

/* The object is right: a write still waiting for it is not needed any more. */
static void lm__not_needed(lm_status_t *s, const char *path)
{
    s->st.unchanged++;
    lm__sw_t *w = lm_map_get(&s->writes, lm_str(path));
    if (!w || !w->body)
        return;
    lm__dequeue(s, w);
    cJSON_Delete(w->body);
    w->body = NULL;
    s->st.superseded++;
    lm__maybe_drop(s, w);
}

static void lm__on_patched(int status, const cJSON *body, const char *err, void *data)
{
    lm__sw_t *w = data;
    lm_status_t *s = w->owner;
    if (!s) {
        lm__sw_free(w);
        return;
    }
    s->st.in_flight--;
    free(w->sent);
    w->sent = NULL;
    if (status >= 200 && status < 300) {
        s->st.writes++;
        if (s->failing)
            lm_log_info("status: writing status works again");
        s->failing = false;
        lm_log_debug("status: %s written", w->what);
    } else if (status == 404) {
        s->st.not_found++;
        lm_log_debug("status: %s: not found (deleted meanwhile)", w->what);
    } else {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(body, "message");
        char why[512];
        if (status)
            snprintf(why, sizeof(why), "HTTP %d%s%s", status, cJSON_IsString(m) ? ": " : "",
                     cJSON_IsString(m) ? m->valuestring : "");
        else
            snprintf(why, sizeof(why), "%s", err && err[0] ? err : "no response");
        s->st.failures++;
        if (!s->failing)
            lm_log_warn("status: %s: %s (dropped; further failures are logged at debug level)", w->what, why);
        else
            lm_log_debug("status: %s: %s", w->what, why);
        s->failing = true;
    }
    if (w->body)
        lm__enqueue(s, w);
    lm__maybe_drop(s, w);
    lm__dispatch(s);
}

/* ---- Ingress addresses ------------------------------------------------------------- */

static int lm__cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Canonical text of a set of lines "0ip" / "1hostname": sorted, unique, '\n'-joined. */
static char *lm__canon(char **lines, size_t n)
{
    qsort(lines, n, sizeof(*lines), lm__cmp_str);
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(lines[i]) + 1;
    char *out = malloc(len), *p = out;
    if (!out)
        return NULL;
    *p = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(lines[i], lines[i - 1]) == 0)
            continue;
        p += sprintf(p, "%s\n", lines[i]);
    }
    return out;
}

static char *lm__line(bool ip, const char *v)
{
    size_t n = strlen(v);
    char *l = malloc(n + 2);
    if (l) {
        l[0] = ip ? '0' : '1';
        memcpy(l + 1, v, n + 1);
    }
    return l;
}

static void lm__free_lines(char **lines, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
}

static bool lm__is_ip(const char *a)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, a, buf) == 1 || inet_pton(AF_INET6, a, buf) == 1;
}

void lm_status_set_addresses(lm_status_t *s, const char *const *addrs, size_t n)
{
    if (!s)
        return;
    char **lines = calloc(n ? n : 1, sizeof(*lines));
    size_t m = 0;
    if (!lines)
        return;
    for (size_t i = 0; i < n; i++) {
        if (!addrs[i] || !addrs[i][0])
            continue;
        if (!(lines[m] = lm__line(lm__is_ip(addrs[i]), addrs[i]))) {
            lm__free_lines(lines, m);
            return;
        }
        m++;
    }
    char *key = lm__canon(lines, m);
    cJSON *lb = key ? cJSON_CreateArray() : NULL;
    for (size_t i = 0; lb && i < m; i++) {
        if (i > 0 && strcmp(lines[i], lines[i - 1]) == 0)
            continue;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, lines[i][0] == '0' ? "ip" : "hostname", lines[i] + 1);
        cJSON_AddItemToArray(lb, e);
    }
    lm__free_lines(lines, m);
    if (!lb) {
        free(key);
        return;
    }
    if (s->have_addrs && strcmp(key, s->addrs_key) == 0) {
        free(key);
        cJSON_Delete(lb);
        return;
    }
    free(s->addrs_key);
    cJSON_Delete(s->lb);
    s->addrs_key = key;
    s->lb = lb;
    s->have_addrs = true;
    char list[1024] = "";
    size_t at = 0;
    for (const char *p = key; *p && at < sizeof(list); p = strchr(p, '\n') + 1)
        at += (size_t)snprintf(list + at, sizeof(list) - at, "%s%.*s", at ? " " : "",
                               (int)(strchr(p, '\n') - p - 1), p + 1);
    lm_log_info("status: Ingress addresses: %s", list[0] ? list : "(none)");
}

/* The canonical text of an Ingress's status.loadBalancer.ingress. */
static char *lm__current(const cJSON *ing)
{
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(ing, "status");
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(st, "loadBalancer"),
                                                        "ingress");
    int n = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : 0;
    char **lines = calloc(n > 0 ? (size_t)n : 1, sizeof(*lines));
    size_t m = 0;
    if (!lines)
        return NULL;
    const cJSON *it, *items = n > 0 ? arr : NULL;
    cJSON_ArrayForEach(it, items) {
        const cJSON *ip = cJSON_GetObjectItemCaseSensitive(it, "ip");
        const cJSON *host = cJSON_GetObjectItemCaseSensitive(it, "hostname");
        char *l = NULL;
        if (cJSON_IsString(ip) && ip->valuestring[0])
            l = lm__line(true, ip->valuestring);
        else if (cJSON_IsString(host) && host->valuestring[0])
            l = lm__line(false, host->valuestring);
        else
            l = lm__line(false, ""); /* an empty entry: never what we want */
        if (!l) {
            lm__free_lines(lines, m);
            return NULL;
        }
        lines[m++] = l;
    }
    char *c = lm__canon(lines, m);
    lm__free_lines(lines, m);
    return c;
}

static const char *lm__meta(const cJSON *obj, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(obj, "metadata"), field);
    return cJSON_IsString(v) ? v->valuestring : "";
}

void lm_status_sync_ingresses(lm_status_t *s, const cJSON *const *ingresses, size_t n)
{
    if (!s || !s->enabled || !s->have_addrs)
        return;
    for (size_t i = 0; i < n; i++) {
        const char *ns = lm__meta(ingresses[i], "namespace"), *name = lm__meta(ingresses[i], "name");
        if (!ns[0] || !name[0])
            continue;
        char path[640], what[600];
        snprintf(path, sizeof(path), "/apis/networking.k8s.io/v1/namespaces/%s/ingresses/%s/status", ns, name);
        char *cur = lm__current(ingresses[i]);
        if (!cur)
            continue;
        bool same = strcmp(cur, s->addrs_key) == 0;
        free(cur);
        if (same) {
            lm__not_needed(s, path);
            continue;
        }
        snprintf(what, sizeof(what), "Ingress %s/%s", ns, name);
        cJSON *patch = cJSON_CreateObject();
        cJSON *lb = cJSON_AddObjectToObject(cJSON_AddObjectToObject(patch, "status"), "loadBalancer");
        if (lb && s->lb->child)
            cJSON_AddItemToObject(lb, "ingress", cJSON_Duplicate(s->lb, true));
        else if (lb)
            cJSON_AddNullToObject(lb, "ingress"); /* merge patch: null removes */
        lm__want(s, path, what, patch);
    }
}

/* ---- conditions ---------------------------------------------------------------------- */

static const char *lm__str(const cJSON *obj, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, field);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool lm__str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

void lm_status_set_condition(lm_status_t *s, const cJSON *obj, const char *resource, bool ok, const char *reason,
                             const char *message)
{
    if (!s || !s->enabled || !obj || !resource || !resource[0])
        return;
    const char *api_version = lm__str(obj, "apiVersion");
    const char *kind = lm__str(obj, "kind");
    const char *ns = lm__meta(obj, "namespace"), *name = lm__meta(obj, "name");
    if (!api_version || !api_version[0])
        api_version = "limen.dev/v1";
    if (!name[0])
        return;
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    const cJSON *gen = cJSON_GetObjectItemCaseSensitive(meta, "generation");
    const char *want_status = ok ? "True" : "False";
    if (!reason || !reason[0])
        reason = ok ? "Programmed" : "Invalid";
    if (!message)
        message = "";
    size_t ml = strlen(message);
    if (ml > LM__COND_MSG_MAX) /* cut on a UTF-8 character boundary */
        for (ml = LM__COND_MSG_MAX; ml > 0 && ((unsigned char)message[ml] & 0xC0) == 0x80; ml--)
            ;
    char *msg = strndup(message, ml);
    if (!msg)
        return;

    char path[768], what[600];
    const char *root = strchr(api_version, '/') ? "/apis/" : "/api/";
    if (ns[0])
        snprintf(path, sizeof(path), "%s%s/namespaces/%s/%s/%s/status", root, api_version, ns, resource, name);
    else
        snprintf(path, sizeof(path), "%s%s/%s/%s/status", root, api_version, resource, name);
    snprintf(what, sizeof(what), "%s %s%s%s", kind ? kind : resource, ns, ns[0] ? "/" : "", name);

    const cJSON *conds = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(obj, "status"),
                                                          "conditions");
    if (!cJSON_IsArray(conds))
        conds = NULL;
    const cJSON *cur = NULL, *c;
    cJSON_ArrayForEach(c, conds) {
        if (lm__str_eq(lm__str(c, "type"), LM__COND_TYPE)) {
            cur = c;
            break;
        }
    }
    if (cur) {
        const cJSON *og = cJSON_GetObjectItemCaseSensitive(cur, "observedGeneration");
        bool gen_same = cJSON_IsNumber(gen) ? (cJSON_IsNumber(og) && og->valuedouble == gen->valuedouble)
                                            : !og;
        if (gen_same && lm__str_eq(lm__str(cur, "status"), want_status) && lm__str_eq(lm__str(cur, "reason"), reason)
            && lm__str_eq(lm__str(cur, "message"), msg) && lm__str(cur, "lastTransitionTime")) {
            free(msg);
            lm__not_needed(s, path);
            return;
        }
    }

    char now[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
    const char *ltt = now;
    if (cur && lm__str_eq(lm__str(cur, "status"), want_status) && lm__str(cur, "lastTransitionTime"))
        ltt = lm__str(cur, "lastTransitionTime");

    cJSON *mine = cJSON_CreateObject();
    cJSON_AddStringToObject(mine, "type", LM__COND_TYPE);
    cJSON_AddStringToObject(mine, "status", want_status);
    if (cJSON_IsNumber(gen))
        cJSON_AddNumberToObject(mine, "observedGeneration", gen->valuedouble);
    cJSON_AddStringToObject(mine, "lastTransitionTime", ltt);
    cJSON_AddStringToObject(mine, "reason", reason);
    cJSON_AddStringToObject(mine, "message", msg);
    free(msg);

    /* a merge patch replaces a list whole: write the others back as they are */
    cJSON *patch = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(cJSON_AddObjectToObject(patch, "status"), "conditions");
    bool placed = false;
    cJSON_ArrayForEach(c, conds) {
        if (lm__str_eq(lm__str(c, "type"), LM__COND_TYPE)) {
            if (!placed)
                cJSON_AddItemToArray(list, mine);
            placed = true;
        } else {
            cJSON_AddItemToArray(list, cJSON_Duplicate(c, true));
        }
    }
    if (!placed)
        cJSON_AddItemToArray(list, mine);
    if (!list) {
        cJSON_Delete(patch);
        return;
    }
    lm__want(s, path, what, patch);
}

/* ---- lifetime ---------------------------------------------------------------------- */

lm_status_t *lm_status_new(lm_kube_t *k)
{
    lm_status_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->kube = k;
    lm_map_init(&s->writes);
    return s;
}

/* Drops every queued write; with all, orphans the ones in flight too. */
static void lm__drop_all(lm_status_t *s, bool all)
{
    lm__sw_t **ws = calloc(s->writes.count ? s->writes.count : 1, sizeof(*ws));
    size_t n = 0;
    if (!ws)
        return;
    for (size_t i = 0; i < s->writes.cap; i++)
        if (s->writes.slots[i].key.ptr)
            ws[n++] = s->writes.slots[i].value;
    for (size_t i = 0; i < n; i++) {
        lm__sw_t *w = ws[i];
        lm__dequeue(s, w);
        cJSON_Delete(w->body);
        w->body = NULL;
        if (all && w->sent) {
            lm_map_del(&s->writes, lm_str(w->path));
            w->owner = NULL;
            s->st.in_flight--;
        } else {
            lm__maybe_drop(s, w);
        }
    }
    free(ws);
}

void lm_status_free(lm_status_t *s)
{
    if (!s)
        return;
    lm__drop_all(s, true);
    lm_map_free(&s->writes);
    free(s->addrs_key);
    cJSON_Delete(s->lb);
    free(s);
}

void lm_status_enable(lm_status_t *s, bool on)
{
    if (!s || s->enabled == on)
        return;
    s->enabled = on;
    if (!on)
        lm__drop_all(s, false);
}

void lm_status_stats(const lm_status_t *s, lm_status_stats_t *out)
{
    *out = s->st;
}

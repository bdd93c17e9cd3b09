/*
 * push.c - the declarative document to every data plane (see lm_push.h).
 *
 * Each target has two timers (the backoff retry and the repeating status
 * check) and at most one request in flight (t->op). What a target is known
 * to serve is kept as a pair: acked_doc, the hash of our document it
 * accepted (201 or 304), and acked_dp, the configuration_hash it reported
 * for it. The two are the same string unless the data plane hashes
 * differently (another version); keeping both means such a data plane is
 * not sent the document again on every status check. A status check that
 * reports anything but acked_dp forgets the acknowledgement, and the
 * document goes out again.
 *
 * Documents are refcounted: a push in flight keeps the one it sends (curl
 * sends it from our memory, CURLOPT_POSTFIELDS does not copy) while a newer
 * one becomes current.
 */
#include "lm_push.h"

#include "lm_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define LM__BACKOFF_MIN_MS 500u
#define LM__BACKOFF_MAX_MS 30000u
#define LM__PUSH_RESP_MAX ((size_t)1 << 20)
#define LM__CHECK_RESP_MAX ((size_t)64 << 10)
#define LM__MSG_MAX 512 /* how much of a data plane's error message is kept and logged */
#define LM__UNIX_PATH_MAX 107

static const double lm__buckets[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30 };
#define LM__NBUCKETS LM_ARRAY_SIZE(lm__buckets)

typedef struct {
    int refs;
    size_t len;
    char hash[33];
    char json[]; /* len bytes + NUL */
} lm__doc_t;

typedef enum { LM__IDLE = 0, LM__PUSHING, LM__CHECKING } lm__op_t;

typedef struct lm__target lm__target_t;
struct lm__target {
    lm_push_t *p;
    lm__target_t *prev, *next;
    char *group, *url;
    char *unix_path;              /* NULL for http(s) */
    char *config_url, *status_url;
    bool https;
    bool mark;                    /* lm_push_set_targets: not in the new set */
    uv_timer_t retry_timer, check_timer;
    int handles;                  /* timers not closed yet */
    lm__op_t op;
    CURL *easy;                   /* the request in flight */
    lm__doc_t *sending;           /* the document it sends (a reference) */
    char acked_doc[33], acked_dp[33], seen_dp[33];
    bool reachable;               /* the last request got an answer (200 for checks) */
    unsigned failures;            /* consecutive failed pushes */
    bool retry_pending, fail_http;/* backoff running; the failure had an HTTP status */
    uint64_t retry_at;            /* uv_now() of the retry */
    int last_status;
    char last_error[LM__MSG_MAX + 32];
    uint64_t pushes_ok, pushes_failed;
};

struct lm_push {
    uv_loop_t *loop;
    lm_curl_t *curl;
    char *token, *ca_file, *cert_file, *key_file;
    unsigned check_ms, timeout_ms;
    lm__doc_t *doc;
    lm__target_t *targets;
    size_t num_targets;
    size_t dying; /* removed targets whose timers are still closing */
    bool closing;
    lm_push_result_cb cb;
    void *cb_data;
    uint64_t n_ok, n_rejected, n_error, n_unreachable, n_checks_failed;
    double last_seconds;
    uint64_t hist[LM__NBUCKETS + 1]; /* per bucket (not cumulative), last = +Inf */
    double hist_sum;
    bool synced_once;
    uint64_t rng;
};

/* ---- small helpers ---------------------------------------------------------- */

static char *lm__strdup(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static char *lm__concat(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    char *s = malloc(alen + blen + 1);
    if (!s)
        return NULL;
    memcpy(s, a, alen);
    memcpy(s + alen, b, blen + 1);
    return s;
}

static void lm__doc_unref(lm__doc_t *d)
{
    if (d && --d->refs == 0)
        free(d);
}

static double lm__rand01(lm_push_t *p)
{
    /* xorshift64*: jitter only */
    uint64_t x = p->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    p->rng = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

static bool lm__add_header(struct curl_slist **list, const char *h)
{
    struct curl_slist *n = curl_slist_append(*list, h);
    if (!n)
        return false;
    *list = n;
    return true;
}

static bool lm__in_sync(const lm__target_t *t)
{
    const lm__doc_t *d = t->p->doc;
    return d && t->reachable && strcmp(t->acked_doc, d->hash) == 0;
}

static bool lm__needs_push(const lm__target_t *t)
{
    const lm__doc_t *d = t->p->doc;
    return d && strcmp(t->acked_doc, d->hash) != 0;
}

static void lm__update_synced(lm_push_t *p)
{
    if (p->synced_once || !p->doc || p->num_targets == 0)
        return;
    for (lm__target_t *t = p->targets; t; t = t->next)
        if (!lm__in_sync(t))
            return;
    p->synced_once = true;
    lm_log_info("push: every data plane (%zu) serves configuration %s", p->num_targets, p->doc->hash);
}

/* The configuration_hash of a data plane's JSON answer, into out (33). */
static bool lm__json_hash(const char *body, size_t len, char *out)
{
    cJSON *j = cJSON_ParseWithLength(body, len);
    const char *h = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "configuration_hash"));
    bool ok = h && strlen(h) < 33;
    if (ok)
        strcpy(out, h);
    cJSON_Delete(j);
    return ok;
}

/* The data plane's error for a log line: its "message" when the body is
 * JSON with one (Kong's errors have it), else the body; printable ASCII
 * only, at most LM__MSG_MAX bytes. */
static void lm__error_text(const char *body, size_t len, char *out, size_t cap)
{
    cJSON *j = cJSON_ParseWithLength(body, len);
    const char *m = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "message"));
    if (m) {
        body = m;
        len = strlen(m);
    }
    size_t o = 0, max = LM_MIN(cap - 1, (size_t)LM__MSG_MAX);
    for (size_t i = 0; i < len && o < max; i++) {
        unsigned char c = (unsigned char)body[i];
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : ' ';
    }
    if (len > max && o >= 3)
        memcpy(out + o - 3, "...", 3);
    out[o] = '\0';
    cJSON_Delete(j);
}

/* curl's message, but for unix sockets without its "localhost port 80" */
static void lm__transport_error(const lm__target_t *t, const lm_curl_resp_t *r, char *out, size_t cap)
{
    if (t->unix_path || !r->error[0])
        snprintf(out, cap, "%s", curl_easy_strerror(r->rc));
    else
        snprintf(out, cap, "%s", r->error);
}

/* ---- URLs ----------------------------------------------------------------- */

static bool lm__url_ok(const char *url)
{
    size_t n = strlen(url);
    if (n == 0 || n > 2048)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#')
            return false;
    }
    if (strncmp(url, "unix:", 5) == 0)
        return n > 5 && n - 5 <= LM__UNIX_PATH_MAX;
    size_t skip = strncmp(url, "http://", 7) == 0 ? 7 : strncmp(url, "https://", 8) == 0 ? 8 : 0;
    return skip && url[skip] != '\0' && url[skip] != '/' && strchr(url + skip, '@') == NULL;
}

static int lm__target_urls(lm__target_t *t)
{
    const char *url = t->url;
    if (strncmp(url, "unix:", 5) == 0) {
        t->unix_path = lm__strdup(url + 5);
        t->config_url = lm__strdup("http://localhost/config?check_hash=1");
        t->status_url = lm__strdup("http://localhost/status");
    } else {
        size_t n = strlen(url);
        while (n > 0 && url[n - 1] == '/')
            n--;
        t->https = strncmp(url, "https://", 8) == 0;
        t->config_url = lm__concat(url, n, "/config?check_hash=1");
        t->status_url = lm__concat(url, n, "/status");
    }
    if (!t->config_url || !t->status_url || (strncmp(url, "unix:", 5) == 0 && !t->unix_path))
        return LM_ERROR;
    return LM_OK;
}

/* ---- requests ----------------------------------------------------------- */

static CURL *lm__easy(lm__target_t *t, const char *url, struct curl_slist **hdrs)
{
    lm_push_t *p = t->p;
    CURL *e = curl_easy_init();
    if (!e)
        return NULL;
    curl_easy_setopt(e, CURLOPT_URL, url);
    if (t->unix_path)
        curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, t->unix_path);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* never through http_proxy from the environment */
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)p->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)LM_MIN(p->timeout_ms, 5000u));
    if (t->https) {
        if (p->ca_file)
            curl_easy_setopt(e, CURLOPT_CAINFO, p->ca_file);
        if (p->cert_file)
            curl_easy_setopt(e, CURLOPT_SSLCERT, p->cert_file);
        if (p->key_file)
            curl_easy_setopt(e, CURLOPT_SSLKEY, p->key_file);
    }
    *hdrs = NULL;
    if (!t->unix_path && p->token) {
        size_t n = strlen(p->token) + 32;
        char *h = malloc(n);
        bool ok = h != NULL;
        if (ok) {
            snprintf(h, n, "Authorization: Bearer %s", p->token);
            ok = lm__add_header(hdrs, h);
            explicit_bzero(h, n);
            free(h);
        }
        if (!ok) {
            curl_easy_cleanup(e);
            return NULL;
        }
    }
    return e;
}

/* Drops the request in flight, if any (no callback comes for it). */
static void lm__abort(lm__target_t *t)
{
    if (t->easy) {
        lm_curl_remove(t->p->curl, t->easy);
        t->easy = NULL;
    }
    lm__doc_unref(t->sending);
    t->sending = NULL;
    t->op = LM__IDLE;
}

static void lm__retry_cancel(lm__target_t *t)
{
    t->retry_pending = false;
    uv_timer_stop(&t->retry_timer);
}

static void lm__on_retry(uv_timer_t *tm);

static uint64_t lm__retry_schedule(lm__target_t *t)
{
    lm_push_t *p = t->p;
    unsigned n = t->failures ? t->failures - 1 : 0;
    uint64_t ms = (uint64_t)LM__BACKOFF_MIN_MS << LM_MIN(n, 16u);
    if (ms > LM__BACKOFF_MAX_MS)
        ms = LM__BACKOFF_MAX_MS;
    ms = (uint64_t)((double)ms * (0.8 + 0.4 * lm__rand01(p)));
    t->retry_pending = true;
    t->retry_at = uv_now(p->loop) + ms;
    uv_timer_start(&t->retry_timer, lm__on_retry, ms, 0);
    return ms;
}

static void lm__push_done(const lm_curl_resp_t *r, void *data);

static void lm__push_start(lm__target_t *t)
{
    lm_push_t *p = t->p;
    lm__doc_t *d = p->doc;
    if (t->op == LM__CHECKING)
        lm__abort(t);
    lm__retry_cancel(t);
    struct curl_slist *h = NULL;
    CURL *e = lm__easy(t, t->config_url, &h);
    if (!e || !lm__add_header(&h, "Content-Type: application/json") || !lm__add_header(&h, "Expect:")) {
        if (e)
            curl_easy_cleanup(e);
        curl_slist_free_all(h);
        goto fail;
    }
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)d->len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, (const char *)d->json);
    if (lm_curl_fetch(p->curl, e, h, LM__PUSH_RESP_MAX, lm__push_done, t) != LM_OK)
        goto fail; /* e and h are freed */
    d->refs++;
    t->sending = d;
    t->easy = e;
    t->op = LM__PUSHING;
    return;
fail:
    /* out of memory (or the curl driver is closing): try again later */
    lm_log_error("push: cannot start a request to %s", t->url);
    t->failures++;
    lm__retry_schedule(t);
}

static void lm__observe(lm_push_t *p, double secs)
{
    size_t i = 0;
    while (i < LM__NBUCKETS && secs > lm__buckets[i])
        i++;
    p->hist[i]++;
    p->hist_sum += secs;
    p->last_seconds = secs;
}

static void lm__push_done(const lm_curl_resp_t *r, void *data)
{
    lm__target_t *t = data;
    lm_push_t *p = t->p;
    lm__doc_t *d = t->sending;
    t->sending = NULL;
    t->easy = NULL;
    t->op = LM__IDLE;
    int status = (int)r->status;
    bool ok = r->rc == CURLE_OK && (status == 200 || status == 201 || status == 304);
    char err[sizeof(t->last_error)];
    err[0] = '\0';
    lm__observe(p, r->seconds);
    t->last_status = status;
    if (ok) {
        char dp[33];
        if (status == 304) /* unchanged: it serves what the last status check saw */
            strcpy(dp, t->seen_dp[0] ? t->seen_dp : d->hash);
        else if (!lm__json_hash(r->body, r->len, dp))
            strcpy(dp, d->hash);
        if (strcmp(dp, d->hash) != 0)
            lm_log_warn("push: %s reports configuration_hash %s for configuration %s (another version?)",
                        t->url, dp, d->hash);
        strcpy(t->acked_doc, d->hash);
        strcpy(t->acked_dp, dp);
        strcpy(t->seen_dp, dp);
        t->reachable = true;
        t->failures = 0;
        t->fail_http = false;
        t->pushes_ok++;
        p->n_ok++;
        lm_log_info("push: %s %s configuration %s (%.3f s)", t->url,
                    status == 304 ? "already serves" : "now serves", d->hash, r->seconds);
        lm__update_synced(p);
    } else {
        if (r->rc != CURLE_OK) {
            lm__transport_error(t, r, err, sizeof(err));
            t->reachable = false;
            t->fail_http = false;
            p->n_unreachable++;
        } else {
            char msg[LM__MSG_MAX + 1];
            lm__error_text(r->body, r->len, msg, sizeof(msg));
            snprintf(err, sizeof(err), "HTTP %d%s%s", status, msg[0] ? ": " : "", msg);
            t->reachable = true;
            t->fail_http = true;
            if (status == 400)
                p->n_rejected++;
            else
                p->n_error++;
        }
        t->failures++;
        t->pushes_failed++;
    }
    snprintf(t->last_error, sizeof(t->last_error), "%s", err);

    /* what next: the newest document at once, or the same one after a backoff */
    if (lm__needs_push(t)) {
        if (ok || p->doc != d) {
            lm__push_start(t);
            if (!ok)
                lm_log_warn("push: configuration %s to %s failed (%s); sending the newer %s", d->hash, t->url,
                            err, p->doc->hash);
        } else {
            uint64_t ms = lm__retry_schedule(t);
            lm_log_warn("push: configuration %s to %s failed (%s); retry %u in %.1f s", d->hash, t->url, err,
                        t->failures, (double)ms / 1000.0);
        }
    }
    lm_push_result_cb cb = p->cb;
    void *cb_data = p->cb_data;
    double secs = r->seconds;
    lm__doc_unref(d);
    if (cb)
        cb(t->url, ok, status, err, secs, cb_data); /* last: it may free p */
}

static void lm__on_retry(uv_timer_t *tm)
{
    lm__target_t *t = tm->data;
    t->retry_pending = false;
    if (t->op != LM__PUSHING && lm__needs_push(t))
        lm__push_start(t);
}

static void lm__check_done(const lm_curl_resp_t *r, void *data)
{
    lm__target_t *t = data;
    lm_push_t *p = t->p;
    t->easy = NULL;
    t->op = LM__IDLE;
    char dp[33];
    if (r->rc != CURLE_OK || r->status != 200 || !lm__json_hash(r->body, r->len, dp)) {
        p->n_checks_failed++;
        if (t->reachable || t->seen_dp[0]) {
            char msg[LM__MSG_MAX + 1], why[LM__MSG_MAX + 32];
            if (r->rc != CURLE_OK) {
                lm__transport_error(t, r, why, sizeof(why));
            } else {
                lm__error_text(r->body, r->len, msg, sizeof(msg));
                snprintf(why, sizeof(why), "HTTP %ld%s%s", r->status, msg[0] ? ": " : "",
                         msg[0] ? msg : r->status == 200 ? "no configuration_hash" : "");
            }
            lm_log_warn("push: status check of %s failed: %s", t->url, why);
        }
        t->reachable = false;
        t->seen_dp[0] = '\0';
        /* it answered, though not as expected (401, 404...): a push reports why */
        if (r->rc == CURLE_OK && lm__needs_push(t) && !(t->retry_pending && t->fail_http))
            lm__push_start(t);
        return;
    }
    if (!t->reachable)
        lm_log_info("push: %s answers (configuration_hash %s)", t->url, dp[0] ? dp : "none");
    t->reachable = true;
    strcpy(t->seen_dp, dp);
    if (t->acked_doc[0] && strcmp(dp, t->acked_dp) != 0) {
        lm_log_info("push: %s serves %s instead of %s (restarted or changed by someone else)", t->url,
                    dp[0] ? dp : "nothing", t->acked_dp);
        t->acked_doc[0] = t->acked_dp[0] = '\0';
    }
    if (p->doc && t->acked_doc[0] == '\0' && strcmp(dp, p->doc->hash) == 0) {
        strcpy(t->acked_doc, dp); /* it has it already */
        strcpy(t->acked_dp, dp);
    }
    if (lm__needs_push(t)) {
        if (!(t->retry_pending && t->fail_http))
            lm__push_start(t);
    } else if (t->retry_pending) {
        lm__retry_cancel(t);
        t->failures = 0;
    }
    lm__update_synced(p);
}

static void lm__check_start(lm__target_t *t)
{
    struct curl_slist *h = NULL;
    CURL *e = lm__easy(t, t->status_url, &h);
    if (!e)
        return; /* out of memory: the next tick tries again */
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    if (lm_curl_fetch(t->p->curl, e, h, LM__CHECK_RESP_MAX, lm__check_done, t) != LM_OK)
        return;
    t->easy = e;
    t->op = LM__CHECKING;
}

static void lm__on_check(uv_timer_t *tm)
{
    lm__target_t *t = tm->data;
    if (t->op == LM__IDLE)
        lm__check_start(t);
}

/* ---- targets -------------------------------------------------------------- */

static void lm__push_destroy(lm_push_t *p)
{
    free(p->token);
    free(p->ca_file);
    free(p->cert_file);
    free(p->key_file);
    free(p);
}

static void lm__target_free(lm__target_t *t)
{
    free(t->group);
    free(t->url);
    free(t->unix_path);
    free(t->config_url);
    free(t->status_url);
    free(t);
}

static void lm__timer_closed(uv_handle_t *h)
{
    lm__target_t *t = h->data;
    if (--t->handles > 0)
        return;
    lm_push_t *p = t->p;
    lm__target_free(t);
    p->dying--;
    if (p->closing && p->dying == 0)
        lm__push_destroy(p);
}

static void lm__target_close(lm__target_t *t)
{
    lm_push_t *p = t->p;
    lm__abort(t);
    if (t->prev)
        t->prev->next = t->next;
    else
        p->targets = t->next;
    if (t->next)
        t->next->prev = t->prev;
    p->num_targets--;
    p->dying++;
    uv_timer_stop(&t->retry_timer);
    uv_timer_stop(&t->check_timer);
    uv_close((uv_handle_t *)&t->retry_timer, lm__timer_closed);
    uv_close((uv_handle_t *)&t->check_timer, lm__timer_closed);
}

static lm__target_t *lm__target_new(lm_push_t *p, const char *group, const char *url)
{
    lm__target_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->p = p;
    t->group = lm__strdup(group);
    t->url = lm__strdup(url);
    if (!t->group || !t->url || lm__target_urls(t) != LM_OK) {
        lm__target_free(t);
        return NULL;
    }
    t->reachable = true; /* until shown otherwise */
    uv_timer_init(p->loop, &t->retry_timer);
    uv_timer_init(p->loop, &t->check_timer);
    t->retry_timer.data = t->check_timer.data = t;
    t->handles = 2;
    t->next = p->targets;
    if (p->targets)
        p->targets->prev = t;
    p->targets = t;
    p->num_targets++;
    /* first a status check (cheap), which sends the document when needed */
    uv_timer_start(&t->check_timer, lm__on_check, 0, p->check_ms);
    return t;
}

/* ---- API ------------------------------------------------------------------------ */

lm_push_t *lm_push_new(uv_loop_t *loop, lm_curl_t *curl, const lm_push_opts_t *opts)
{
    lm_push_opts_t none = { 0 };
    if (!opts)
        opts = &none;
    if (opts->token)
        for (const char *s = opts->token; *s; s++)
            if ((unsigned char)*s < 0x20 || *s == 0x7f) {
                lm_log_error("push: the admin token has control characters");
                return NULL;
            }
    lm_push_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->loop = loop;
    p->curl = curl;
    p->check_ms = opts->check_interval_ms ? opts->check_interval_ms : 2000;
    p->timeout_ms = opts->timeout_ms ? opts->timeout_ms : 10000;
    p->token = lm__strdup(opts->token);
    p->ca_file = lm__strdup(opts->ca_file);
    p->cert_file = lm__strdup(opts->cert_file);
    p->key_file = lm__strdup(opts->key_file);
    if ((opts->token && !p->token) || (opts->ca_file && !p->ca_file) || (opts->cert_file && !p->cert_file) ||
        (opts->key_file && !p->key_file)) {
        lm__push_destroy(p);
        return NULL;
    }
    p->rng = (uv_hrtime() ^ (uint64_t)(uintptr_t)p) | 1;
    return p;
}

void lm_push_free(lm_push_t *p)
{
    if (!p || p->closing)
        return;
    p->closing = true;
    p->cb = NULL;
    while (p->targets)
        lm__target_close(p->targets);
    lm__doc_unref(p->doc);
    p->doc = NULL;
    if (p->dying == 0)
        lm__push_destroy(p);
}

int lm_push_set_targets(lm_push_t *p, const char *group, const char *const *urls, size_t n)
{
    if (p->closing)
        return LM_ERROR;
    if (!group)
        group = "";
    for (size_t i = 0; i < n; i++) {
        if (!urls[i] || !lm__url_ok(urls[i])) {
            lm_log_error("push: group '%s': invalid data plane admin URL '%.200s' (want unix:PATH, "
                         "http://HOST:PORT or https://HOST:PORT)", group, urls[i] ? urls[i] : "(null)");
            return LM_ERROR;
        }
    }
    for (lm__target_t *t = p->targets; t; t = t->next)
        t->mark = strcmp(t->group, group) == 0;
    int rc = LM_OK;
    for (size_t i = 0; i < n; i++) {
        lm__target_t *t = p->targets;
        while (t && !(strcmp(t->group, group) == 0 && strcmp(t->url, urls[i]) == 0))
            t = t->next;
        if (t) {
            t->mark = false;
            continue;
        }
        if (!lm__target_new(p, group, urls[i])) {
            lm_log_error("push: out of memory adding %s", urls[i]);
            rc = LM_ERROR;
            continue;
        }
        lm_log_info("push: data plane %s added (group '%s')", urls[i], group);
    }
    for (lm__target_t *t = p->targets, *next; t; t = next) {
        next = t->next;
        if (t->mark) {
            lm_log_info("push: data plane %s removed (group '%s')", t->url, group);
            lm__target_close(t);
        }
    }
    lm__update_synced(p);
    return rc;
}

void lm_push_set_config(lm_push_t *p, const char *json, size_t len, const char *hash)
{
    if (p->closing || !json || !hash || strlen(hash) >= 33)
        return;
    if (p->doc && strcmp(p->doc->hash, hash) == 0)
        return;
    lm__doc_t *d = malloc(sizeof(*d) + len + 1);
    if (!d) {
        lm_log_error("push: out of memory for a %zu-byte configuration", len);
        return;
    }
    d->refs = 1;
    d->len = len;
    strcpy(d->hash, hash);
    memcpy(d->json, json, len);
    d->json[len] = '\0';
    lm__doc_unref(p->doc);
    p->doc = d;
    lm_log_info("push: configuration %s (%zu bytes) for %zu data plane(s)", hash, len, p->num_targets);
    for (lm__target_t *t = p->targets; t; t = t->next)
        if (t->op != LM__PUSHING && lm__needs_push(t))
            lm__push_start(t);
}

void lm_push_on_result(lm_push_t *p, lm_push_result_cb cb, void *data)
{
    p->cb = cb;
    p->cb_data = data;
}

void lm_push_stats(const lm_push_t *p, lm_push_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->pushes_ok = p->n_ok;
    out->pushes_failed = p->n_rejected + p->n_error + p->n_unreachable;
    out->checks_failed = p->n_checks_failed;
    out->last_push_seconds = p->last_seconds;
    out->targets = p->num_targets;
    for (const lm__target_t *t = p->targets; t; t = t->next)
        if (lm__in_sync(t))
            out->targets_in_sync++;
    out->synced_once = p->synced_once;
}

/* ---- metrics and debug ---------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
    bool oom;
} lm__text_t;

static void lm__put(lm__text_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 2048;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb) {
            b->oom = true;
            return;
        }
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

static void __attribute__((format(printf, 2, 3))) lm__putf(lm__text_t *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n >= 0)
        lm__put(b, tmp, LM_MIN((size_t)n, sizeof(tmp) - 1));
}

/* a Prometheus label value: \, " and newline escaped */
static void lm__put_label(lm__text_t *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            lm__put(b, "\\\\", 2);
        else if (*s == '"')
            lm__put(b, "\\\"", 2);
        else if (*s == '\n')
            lm__put(b, "\\n", 2);
        else
            lm__put(b, s, 1);
    }
}

char *lm_push_metrics(const lm_push_t *p)
{
    lm__text_t b = { 0 };
    lm_push_stats_t st;
    lm_push_stats(p, &st);
    lm__putf(&b, "# HELP limen_controller_push_targets Data plane admin APIs the configuration is pushed to.\n"
                 "# TYPE limen_controller_push_targets gauge\nlimen_controller_push_targets %zu\n",
             st.targets);
    lm__putf(&b, "# HELP limen_controller_push_targets_in_sync Data planes serving the current configuration.\n"
                 "# TYPE limen_controller_push_targets_in_sync gauge\nlimen_controller_push_targets_in_sync %zu\n",
             st.targets_in_sync);
    lm__putf(&b, "# HELP limen_controller_push_target_in_sync 1 when the data plane serves the current "
                 "configuration.\n# TYPE limen_controller_push_target_in_sync gauge\n");
    for (const lm__target_t *t = p->targets; t; t = t->next) {
        lm__put(&b, "limen_controller_push_target_in_sync{group=\"", 44);
        lm__put_label(&b, t->group);
        lm__put(&b, "\",target=\"", 10);
        lm__put_label(&b, t->url);
        lm__putf(&b, "\"} %d\n", lm__in_sync(t) ? 1 : 0);
    }
    lm__putf(&b,
             "# HELP limen_controller_pushes_total Configuration pushes by result (rejected: 400, error: other "
             "HTTP status, unreachable: no response).\n# TYPE limen_controller_pushes_total counter\n"
             "limen_controller_pushes_total{result=\"ok\"} %llu\n"
             "limen_controller_pushes_total{result=\"rejected\"} %llu\n"
             "limen_controller_pushes_total{result=\"error\"} %llu\n"
             "limen_controller_pushes_total{result=\"unreachable\"} %llu\n",
             (unsigned long long)p->n_ok, (unsigned long long)p->n_rejected, (unsigned long long)p->n_error,
             (unsigned long long)p->n_unreachable);
    lm__putf(&b, "# HELP limen_controller_push_status_checks_failed_total Status checks without a usable answer.\n"
                 "# TYPE limen_controller_push_status_checks_failed_total counter\n"
                 "limen_controller_push_status_checks_failed_total %llu\n",
             (unsigned long long)p->n_checks_failed);
    lm__putf(&b, "# HELP limen_controller_push_duration_seconds Duration of configuration pushes.\n"
                 "# TYPE limen_controller_push_duration_seconds histogram\n");
    uint64_t cum = 0;
    for (size_t i = 0; i < LM__NBUCKETS; i++) {
        cum += p->hist[i];
        lm__putf(&b, "limen_controller_push_duration_seconds_bucket{le=\"%g\"} %llu\n", lm__buckets[i],
                 (unsigned long long)cum);
    }
    cum += p->hist[LM__NBUCKETS];
    lm__putf(&b, "limen_controller_push_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
                 "limen_controller_push_duration_seconds_sum %.6f\n"
                 "limen_controller_push_duration_seconds_count %llu\n",
             (unsigned long long)cum, p->hist_sum, (unsigned long long)cum);
    if (b.oom) {
        free(b.buf);
        return NULL;
    }
    return b.buf;
}

cJSON *lm_push_targets_json(const lm_push_t *p)
{
    cJSON *arr = cJSON_CreateArray();
    if (!arr)
        return NULL;
    uint64_t now = uv_now(p->loop);
    for (const lm__target_t *t = p->targets; t; t = t->next) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            cJSON_Delete(arr);
            return NULL;
        }
        cJSON_AddStringToObject(o, "group", t->group);
        cJSON_AddStringToObject(o, "url", t->url);
        cJSON_AddBoolToObject(o, "in_sync", lm__in_sync(t));
        cJSON_AddBoolToObject(o, "reachable", t->reachable);
        cJSON_AddStringToObject(o, "acknowledged_hash", t->acked_doc);
        cJSON_AddStringToObject(o, "data_plane_hash", t->seen_dp);
        cJSON_AddNumberToObject(o, "pushes_ok", (double)t->pushes_ok);
        cJSON_AddNumberToObject(o, "pushes_failed", (double)t->pushes_failed);
        cJSON_AddNumberToObject(o, "consecutive_failures", t->failures);
        cJSON_AddNumberToObject(o, "last_status", t->last_status);
        cJSON_AddStringToObject(o, "last_error", t->last_error);
        cJSON_AddNumberToObject(o, "retry_in_ms",
                                t->retry_pending && t->retry_at > now ? (double)(t->retry_at - now) : 0);
    }
    return arr;
}

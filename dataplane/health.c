/* health.c - see lm_health.h */
#include "lm_health.h"
#include "lm_tls.h"
#include "lm_balancer.h"
#include "lm_log.h"
#include "lm_map.h"
#include "lm_snapshot.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------------------ */
/* the registry of target states                                      */

static pthread_mutex_t lm__reg_lock = PTHREAD_MUTEX_INITIALIZER;
static lm_map_t lm__reg;            /* "upstream\ntarget\naddress" -> state */
static lm_target_state_t *lm__reg_list;

static char *lm__xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        abort();
    return d;
}

lm_target_state_t *lm_health_state_get(const char *upstream, const char *target, const char *address)
{
    char key[512];
    int n = snprintf(key, sizeof(key), "%s\n%s\n%s", upstream, target, address);
    lm_str_t k = { key, (size_t)LM_MIN(n, (int)sizeof(key) - 1) };
    pthread_mutex_lock(&lm__reg_lock);
    lm_target_state_t *s = lm_map_get(&lm__reg, k);
    if (!s) {
        s = calloc(1, sizeof(*s) + k.len + 1);
        if (!s)
            abort();
        char *kcopy = (char *)(s + 1);
        memcpy(kcopy, key, k.len);
        kcopy[k.len] = '\0';
        atomic_init(&s->healthy, 1);
        s->upstream = lm__xstrdup(upstream);
        s->target = lm__xstrdup(target);
        s->address = lm__xstrdup(address);
        s->next = lm__reg_list;
        if (lm__reg_list)
            lm__reg_list->prev = s;
        lm__reg_list = s;
        lm_map_put(&lm__reg, (lm_str_t){ kcopy, k.len }, s);
    }
    s->refs++;
    pthread_mutex_unlock(&lm__reg_lock);
    return s;
}

static void lm__state_free(lm_target_state_t *s)
{
    free(s->upstream);
    free(s->target);
    free(s->address);
    free(s);
}

void lm_health_state_unref(lm_target_state_t *s)
{
    pthread_mutex_lock(&lm__reg_lock);
    if (--s->refs > 0) {
        pthread_mutex_unlock(&lm__reg_lock);
        return;
    }
    lm_map_del(&lm__reg, (lm_str_t){ (const char *)(s + 1), strlen((const char *)(s + 1)) });
    if (s->prev)
        s->prev->next = s->next;
    else
        lm__reg_list = s->next;
    if (s->next)
        s->next->prev = s->prev;
    pthread_mutex_unlock(&lm__reg_lock);
    lm__state_free(s);
}

uint64_t lm_health_now_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* ------------------------------------------------------------------ */
/* configuration                                                      */

static const int lm__act_healthy[] = { 200, 302, 0 };
static const int lm__act_unhealthy[] = { 429, 404, 500, 501, 502, 503, 504, 505, 0 };
static const int lm__pas_healthy[] = { 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300,
                                       301, 302, 303, 304, 305, 306, 307, 308, 0 };
static const int lm__pas_unhealthy[] = { 429, 500, 503, 0 };

static const cJSON *lm__get(const cJSON *o, const char *a, const char *b)
{
    const cJSON *v = o && cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, a) : NULL;
    if (b)
        v = v && cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, b) : NULL;
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static double lm__num(const cJSON *o, const char *a, const char *b, double def)
{
    const cJSON *v = lm__get(o, a, b);
    return v && cJSON_IsNumber(v) ? v->valuedouble : def;
}

static void lm__statuses(uint64_t set[16], const cJSON *o, const char *a, const int *def)
{
    memset(set, 0, 16 * sizeof(uint64_t));
    const cJSON *v = lm__get(o, a, "http_statuses");
    if (v && cJSON_IsArray(v)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, v) {
            int s = (int)it->valuedouble;
            if (s >= 0 && s < 1024)
                set[s / 64] |= 1ull << (s % 64);
        }
        return;
    }
    for (; *def; def++)
        set[*def / 64] |= 1ull << (*def % 64);
}

static bool lm__has_status(const uint64_t set[16], int s)
{
    return s >= 0 && s < 1024 && (set[s / 64] >> (s % 64)) & 1;
}

static void lm__side(lm_hc_side_t *s, const cJSON *o, bool active)
{
    s->successes = (int)lm__num(o, "healthy", "successes", 0);
    s->http_failures = (int)lm__num(o, "unhealthy", "http_failures", 0);
    s->tcp_failures = (int)lm__num(o, "unhealthy", "tcp_failures", 0);
    s->timeouts = (int)lm__num(o, "unhealthy", "timeouts", 0);
    lm__statuses(s->healthy_statuses, o, "healthy", active ? lm__act_healthy : lm__pas_healthy);
    lm__statuses(s->unhealthy_statuses, o, "unhealthy", active ? lm__act_unhealthy : lm__pas_unhealthy);
    const cJSON *t = lm__get(o, "type", NULL);
    s->type = t && cJSON_IsString(t) && strcmp(t->valuestring, "tcp") == 0 ? LM_HC_TCP : LM_HC_HTTP;
    if (active && t && cJSON_IsString(t) && strcmp(t->valuestring, "https") == 0)
        s->type = LM_HC_HTTPS;
    const cJSON *v = lm__get(o, "https_verify_certificate", NULL);
    s->https_verify = !v || !cJSON_IsFalse(v);
    const cJSON *sni = lm__get(o, "https_sni", NULL);
    s->https_sni = sni && cJSON_IsString(sni) ? sni->valuestring : NULL; /* lives with the document */
}

int lm_hc_conf_compile(lm_hc_conf_t *c, const lm_upstream_t *up, lm_arena_t *a, lm_config_errors_t *errs)
{
    memset(c, 0, sizeof(*c));
    const cJSON *hc = up->healthchecks && cJSON_IsObject(up->healthchecks) ? up->healthchecks : NULL;
    const cJSON *act = lm__get(hc, "active", NULL), *pas = lm__get(hc, "passive", NULL);
    size_t before = errs ? errs->count : 0;
    const char *base = lm_arena_sprintf(a, "upstreams[%zu].healthchecks", up->index);
#define LM__ERR(field, ...)                                                                              \
    do {                                                                                                 \
        if (errs)                                                                                        \
            lm_config_errors_add(errs, lm_arena_sprintf(a, "%s.%s", base, field), "upstream", up->name,  \
                                 lm_arena_sprintf(a, "healthchecks.%s", field), __VA_ARGS__);            \
    } while (0)

    c->threshold = lm__num(hc, "threshold", NULL, 0);
    lm__side(&c->act, act, true);
    lm__side(&c->pas, pas, false);
    c->act.timeout_ms = (uint32_t)LM_MAX(1.0, lm__num(act, "timeout", NULL, 1) * 1000.0);
    c->act.concurrency = (int)lm__num(act, "concurrency", NULL, 10);
    if (c->act.concurrency < 1)
        c->act.concurrency = 1;
    c->act.healthy_interval_ms = (uint32_t)(lm__num(act, "healthy", "interval", 0) * 1000.0);
    c->act.unhealthy_interval_ms = (uint32_t)(lm__num(act, "unhealthy", "interval", 0) * 1000.0);
    c->active = c->act.healthy_interval_ms || c->act.unhealthy_interval_ms;
    c->enabled = c->active || c->pas.tcp_failures || c->pas.timeouts || c->pas.http_failures;
    c->cooldown = c->act.unhealthy_interval_ms == 0;

    const cJSON *t = lm__get(act, "type", NULL);
    if (c->active && t && cJSON_IsString(t) && strcmp(t->valuestring, "http") != 0 &&
        strcmp(t->valuestring, "tcp") != 0 && strcmp(t->valuestring, "https") != 0)
        LM__ERR("active.type", "active health checks of type '%s' are not supported yet: use 'http', 'https' or 'tcp'",
                t->valuestring);
    const cJSON *path = lm__get(act, "http_path", NULL);
    c->act.http_path = "/";
    if (path && cJSON_IsString(path)) {
        if (path->valuestring[0] != '/')
            LM__ERR("active.http_path", "should start with: /");
        else if (strpbrk(path->valuestring, " \r\n\t"))
            LM__ERR("active.http_path", "invalid path: must not contain whitespace");
        else
            c->act.http_path = lm_arena_strdup(a, path->valuestring);
    }
    /* headers: a map of name -> array of values, as Kong's schema has it */
    const cJSON *hd = lm__get(act, "headers", NULL);
    char *lines = lm_arena_strdup(a, "");
    if (hd && cJSON_IsObject(hd)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, hd) {
            const char *name = it->string;
            bool bad_name = name[0] == '\0';
            for (const char *p = name; *p; p++)
                if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_'))
                    bad_name = true;
            if (bad_name) {
                LM__ERR(lm_arena_sprintf(a, "active.headers.%s", name), "invalid header name");
                continue;
            }
            if (!cJSON_IsArray(it)) {
                LM__ERR(lm_arena_sprintf(a, "active.headers.%s", name), "expected an array");
                continue;
            }
            const cJSON *v;
            size_t i = 0;
            cJSON_ArrayForEach(v, it) {
                if (!cJSON_IsString(v) || strpbrk(v->valuestring, "\r\n"))
                    LM__ERR(lm_arena_sprintf(a, "active.headers.%s[%zu]", name, i), "expected a string");
                else
                    lines = lm_arena_sprintf(a, "%s%s: %s\r\n", lines, name, v->valuestring);
                i++;
            }
        }
    }
    c->act.headers = lines;
#undef LM__ERR
    return errs && errs->count > before ? LM_ERROR : LM_OK;
}

/* ------------------------------------------------------------------ */
/* counting                                                           */

static void lm__transition(lm_target_state_t *s, const lm_hc_conf_t *c, bool healthy, uint64_t now, const char *why)
{
    int expect = healthy ? 0 : 1;
    if (!atomic_compare_exchange_strong(&s->healthy, &expect, healthy ? 1 : 0))
        return;
    atomic_store(&s->counters, 0);
    atomic_store(&s->revive_at_ms, !healthy && c->cooldown ? now + LM_HEALTH_COOLDOWN_MS : 0);
    lm_log_warn("[healthchecks] upstream %s target %s (%s) is %s (%s)", s->upstream, s->target, s->address,
                healthy ? "HEALTHY" : "UNHEALTHY", why);
}

void lm_health_report(lm_target_state_t *s, const lm_hc_conf_t *c, const lm_hc_side_t *side, lm_hr_kind_t kind,
                      int status, uint64_t now_ms)
{
    bool good;
    int limit, ctr;
    const char *why;
    switch (kind) {
    case LM_HR_STATUS:
        if (lm__has_status(side->healthy_statuses, status)) {
            good = true, limit = side->successes, ctr = 0, why = "HTTP successes";
        } else if (status == 0 || lm__has_status(side->unhealthy_statuses, status)) {
            good = false, limit = side->http_failures, ctr = 1, why = "HTTP failures";
        } else {
            return;
        }
        break;
    case LM_HR_TCP: good = false, limit = side->tcp_failures, ctr = 2, why = "TCP failures"; break;
    case LM_HR_TIMEOUT: good = false, limit = side->timeouts, ctr = 3, why = "timeouts"; break;
    default: good = true, limit = side->successes, ctr = 0, why = "successes"; break;
    }
    if (limit <= 0)
        return;
    int cur = atomic_load_explicit(&s->healthy, memory_order_relaxed);
    uint32_t old = atomic_load_explicit(&s->counters, memory_order_relaxed), nw, v;
    /* fully healthy (no failure counted) needs no successes, fully unhealthy no failures */
    if (cur == (good ? 1 : 0) && (good ? (old & 0xffffff00u) == 0 : (old & 0xffu) == 0))
        return;
    do {
        v = (old >> (ctr * 8)) & 0xff;
        if (v < 255)
            v++;
        nw = good ? (old & 0xffu) : (old & 0xffffff00u); /* a success clears failures, a failure successes */
        nw = (nw & ~(0xffu << (ctr * 8))) | (v << (ctr * 8));
    } while (!atomic_compare_exchange_weak(&s->counters, &old, nw));
    if ((int)v >= limit)
        lm__transition(s, c, good, now_ms, why);
}

bool lm_health_up(lm_target_state_t *s, const lm_hc_conf_t *c, uint64_t now_ms)
{
    if (LM_LIKELY(atomic_load_explicit(&s->healthy, memory_order_relaxed)))
        return true;
    if (!c->cooldown)
        return false;
    uint64_t at = atomic_load_explicit(&s->revive_at_ms, memory_order_relaxed);
    if (at == 0) { /* ejected while something probed it: start the cool-down now */
        atomic_compare_exchange_strong(&s->revive_at_ms, &at, now_ms + LM_HEALTH_COOLDOWN_MS);
        return false;
    }
    if (now_ms < at)
        return false;
    lm__transition(s, c, true, now_ms, "cool-down over");
    return true;
}

void lm_health_set(lm_target_state_t *s, const lm_hc_conf_t *c, bool healthy)
{
    lm__transition(s, c, healthy, lm_health_now_ms(), "set through the admin API");
    atomic_store(&s->counters, 0);
}

void lm_health_reset(lm_target_state_t *s)
{
    atomic_store(&s->counters, 0);
    atomic_store(&s->revive_at_ms, 0);
    atomic_store(&s->healthy, 1);
}

/* ------------------------------------------------------------------ */
/* active checks: one checker per upstream, on the control loop        */

typedef struct lm__checker lm__checker_t;

typedef struct lm__probe {
    struct lm__probe *next, *prev;
    lm__checker_t *ck;
    lm_snapshot_t *snap;     /* reference: keeps bal and peer alive */
    lm_balancer_t *bal;
    const lm_peer_t *peer;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t creq;
    uv_write_t wreq;
    char *req;
    size_t req_len;
    lm_tls_t tls;            /* https probes */
    bool tls_on, sent;
    char cbuf[4096];         /* ciphertext just read */
    char buf[256];
    size_t len;
    int handles;
    bool started, done;
} lm__probe_t;

struct lm__checker {
    lm__checker_t *next;
    char *name;
    lm_snapshot_t *snap;     /* reference */
    lm_balancer_t *bal;
    uv_timer_t t_healthy, t_unhealthy;
    uint32_t iv_h, iv_u;
    lm__probe_t *queue_head, *queue_tail; /* waiting for a concurrency slot */
    lm__probe_t *live;       /* started */
    int running;
    int open;                /* timers open + live probes: freed at 0 once stopping */
    bool stopping, seen;
};

static lm__checker_t *lm__checkers;
static uv_loop_t *lm__loop;
static bool lm__stopped;

static void lm__checker_maybe_free(lm__checker_t *ck)
{
    if (!ck->stopping || ck->open > 0)
        return;
    free(ck->name);
    free(ck);
}

static void lm__probe_free(lm__probe_t *pr)
{
    lm__checker_t *ck = pr->ck;
    pr->peer->state->probing = false;
    lm_snapshot_unref(pr->snap);
    if (pr->tls_on)
        lm_tls_free(&pr->tls); /* and the probe's own context with it */
    free(pr->req);
    free(pr);
    (void)ck;
}

static void lm__pump(lm__checker_t *ck);

static void lm__probe_closed(uv_handle_t *h)
{
    lm__probe_t *pr = h->data;
    if (--pr->handles > 0)
        return;
    lm__checker_t *ck = pr->ck;
    if (pr->prev)
        pr->prev->next = pr->next;
    else
        ck->live = pr->next;
    if (pr->next)
        pr->next->prev = pr->prev;
    ck->running--;
    ck->open--;
    lm__probe_free(pr);
    if (ck->stopping)
        lm__checker_maybe_free(ck);
    else
        lm__pump(ck);
}

static void lm__probe_end(lm__probe_t *pr, int kind, int status)
{
    if (pr->done)
        return;
    pr->done = true;
    if (kind >= 0 && !pr->ck->stopping) {
        lm_balancer_t *b = pr->bal;
        lm_health_report(pr->peer->state, &b->hc, &b->hc.act, (lm_hr_kind_t)kind, status, lm_health_now_ms());
    }
    uv_close((uv_handle_t *)&pr->timer, lm__probe_closed);
    uv_close((uv_handle_t *)&pr->tcp, lm__probe_closed);
}

static void lm__probe_timeout(uv_timer_t *t)
{
    lm__probe_end(t->data, LM_HR_TIMEOUT, 0);
}

/* "HTTP/1.1 200 ..." -> 200; 0 when it is not a status line */
static int lm__status_line(const char *s, size_t n)
{
    if (n < 12 || memcmp(s, "HTTP/", 5) != 0)
        return 0;
    size_t i = 5;
    while (i < n && (isdigit((unsigned char)s[i]) || s[i] == '.'))
        i++;
    if (i >= n || s[i] != ' ')
        return 0;
    while (i < n && s[i] == ' ')
        i++;
    if (i + 3 > n || !isdigit((unsigned char)s[i]) || !isdigit((unsigned char)s[i + 1]) ||
        !isdigit((unsigned char)s[i + 2]))
        return 0;
    return (s[i] - '0') * 100 + (s[i + 1] - '0') * 10 + (s[i + 2] - '0');
}

static void lm__probe_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    lm__probe_t *pr = h->data;
    b->base = pr->buf + pr->len;
    b->len = sizeof(pr->buf) - 1 - pr->len;
}

static void lm__probe_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    lm__probe_t *pr = s->data;
    if (pr->done || nread == 0)
        return;
    if (nread > 0)
        pr->len += (size_t)nread;
    pr->buf[pr->len] = '\0';
    char *eol = memchr(pr->buf, '\n', pr->len);
    if (eol || pr->len >= sizeof(pr->buf) - 1 || nread < 0) {
        if (nread < 0 && pr->len == 0) {
            lm__probe_end(pr, LM_HR_TCP, 0);
            return;
        }
        lm__probe_end(pr, LM_HR_STATUS, lm__status_line(pr->buf, eol ? (size_t)(eol - pr->buf) + 1 : pr->len));
    }
}

/* https: ciphertext in, status line out */
static void lm__probe_alloc_tls(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    lm__probe_t *pr = h->data;
    b->base = pr->cbuf;
    b->len = sizeof(pr->cbuf);
}

static void lm__probe_written(uv_write_t *w, int status);

static void lm__probe_read_tls(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    lm__probe_t *pr = s->data;
    if (pr->done || nread == 0)
        return;
    if (nread < 0) {
        lm__probe_end(pr, pr->sent ? LM_HR_STATUS : LM_HR_TCP, pr->sent ? lm__status_line(pr->buf, pr->len) : 0);
        return;
    }
    lm_tls_feed(&pr->tls, b->base, (size_t)nread);
    ssize_t n = lm_tls_read(&pr->tls, pr->buf + pr->len, sizeof(pr->buf) - 1 - pr->len);
    lm_tls_flush(&pr->tls, NULL, (uv_stream_t *)&pr->tcp);
    if (n == LM_ERROR || (n == 0 && !pr->sent)) { /* a failed handshake (certificate, protocol) counts as TCP */
        char why[160];
        lm_log_debug("[healthchecks] %s: TLS: %s", pr->peer->key, lm_tls_error(&pr->tls, why, sizeof(why)));
        lm__probe_end(pr, LM_HR_TCP, 0);
        return;
    }
    if (pr->tls.established && !pr->sent) {
        pr->sent = true;
        uv_buf_t rb = uv_buf_init(pr->req, (unsigned)pr->req_len);
        pr->wreq.data = pr;
        if (lm_tls_write(&pr->tls, NULL, (uv_stream_t *)&pr->tcp, &pr->wreq, &rb, 1, lm__probe_written) != LM_OK) {
            lm__probe_end(pr, LM_HR_TCP, 0);
            return;
        }
    }
    if (n > 0) {
        pr->len += (size_t)n;
        pr->buf[pr->len] = '\0';
        char *eol = memchr(pr->buf, '\n', pr->len);
        if (eol || pr->len >= sizeof(pr->buf) - 1)
            lm__probe_end(pr, LM_HR_STATUS, lm__status_line(pr->buf, eol ? (size_t)(eol - pr->buf) + 1 : pr->len));
    } else if (n == 0) {
        lm__probe_end(pr, LM_HR_STATUS, lm__status_line(pr->buf, pr->len));
    }
}

static void lm__probe_written(uv_write_t *w, int status)
{
    lm__probe_t *pr = w->data;
    if (pr->done)
        return;
    if (status < 0)
        lm__probe_end(pr, LM_HR_TCP, 0);
}

static void lm__probe_connected(uv_connect_t *c, int status)
{
    lm__probe_t *pr = c->data;
    if (pr->done)
        return;
    if (status < 0) {
        lm__probe_end(pr, status == UV_ETIMEDOUT ? LM_HR_TIMEOUT : LM_HR_TCP, 0);
        return;
    }
    if (pr->bal->hc.act.type == LM_HC_TCP) {
        lm__probe_end(pr, LM_HR_SUCCESS, 0);
        return;
    }
    if (pr->bal->hc.act.type == LM_HC_HTTPS) {
        const lm_hc_side_t *a = &pr->bal->hc.act;
        const lm_bal_target_t *t = &pr->bal->targets[pr->peer->target];
        const char *sni = a->https_sni ? a->https_sni : t->t->host;
        bool numeric = strspn(sni, "0123456789.") == strlen(sni) || strchr(sni, ':');
        SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx) {
            lm__probe_end(pr, LM_HR_TCP, 0);
            return;
        }
        SSL_CTX_set_verify(ctx, a->https_verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
        if (a->https_verify)
            SSL_CTX_set_default_verify_paths(ctx);
        int rc = lm_tls_connect(&pr->tls, ctx, numeric ? NULL : sni, a->https_verify && !numeric, NULL);
        SSL_CTX_free(ctx); /* the SSL holds its own reference */
        if (rc != LM_OK) {
            lm__probe_end(pr, LM_HR_TCP, 0);
            return;
        }
        pr->tls_on = true;
        lm_tls_read(&pr->tls, pr->buf, 0); /* the ClientHello */
        if (lm_tls_flush(&pr->tls, NULL, (uv_stream_t *)&pr->tcp) != LM_OK ||
            uv_read_start((uv_stream_t *)&pr->tcp, lm__probe_alloc_tls, lm__probe_read_tls) < 0)
            lm__probe_end(pr, LM_HR_TCP, 0);
        return;
    }
    uv_buf_t b = uv_buf_init(pr->req, (unsigned)pr->req_len);
    pr->wreq.data = pr;
    if (uv_write(&pr->wreq, (uv_stream_t *)&pr->tcp, &b, 1, lm__probe_written) < 0 ||
        uv_read_start((uv_stream_t *)&pr->tcp, lm__probe_alloc, lm__probe_read) < 0)
        lm__probe_end(pr, LM_HR_TCP, 0);
}

static void lm__probe_start(lm__checker_t *ck, lm__probe_t *pr)
{
    pr->started = true;
    pr->next = ck->live;
    pr->prev = NULL;
    if (ck->live)
        ck->live->prev = pr;
    ck->live = pr;
    ck->running++;
    lm_balancer_t *b = pr->bal;
    const lm_bal_target_t *t = &b->targets[pr->peer->target];
    /* Kong's probe: GET path HTTP/1.0, the configured headers, then Host
     * (the upstream's host_header, else the target's name) */
    const char *host = b->up && b->up->host_header ? b->up->host_header : t->t->host;
    size_t cap = strlen(b->hc.act.http_path) + strlen(b->hc.act.headers) + strlen(host) + 64;
    pr->req = malloc(cap);
    if (!pr->req)
        abort();
    pr->req_len = (size_t)snprintf(pr->req, cap, "GET %s HTTP/1.0\r\n%sHost: %s\r\n\r\n", b->hc.act.http_path,
                                   b->hc.act.headers, host);
    uv_tcp_init(lm__loop, &pr->tcp);
    uv_timer_init(lm__loop, &pr->timer);
    pr->handles = 2;
    pr->tcp.data = pr->timer.data = pr->creq.data = pr;
    uv_timer_start(&pr->timer, lm__probe_timeout, b->hc.act.timeout_ms, 0);
    if (uv_tcp_connect(&pr->creq, &pr->tcp, (const struct sockaddr *)&pr->peer->addr, lm__probe_connected) < 0)
        lm__probe_end(pr, LM_HR_TCP, 0);
}

static void lm__pump(lm__checker_t *ck)
{
    while (!ck->stopping && ck->queue_head && ck->running < ck->bal->hc.act.concurrency) {
        lm__probe_t *pr = ck->queue_head;
        ck->queue_head = pr->next;
        if (!ck->queue_head)
            ck->queue_tail = NULL;
        lm__probe_start(ck, pr);
    }
}

/* Queues a probe of every address currently in the given health. */
static void lm__round(lm__checker_t *ck, int healthy)
{
    lm_balancer_t *b = ck->bal;
    for (size_t i = 0; i < b->num_peers; i++) {
        const lm_peer_t *p = &b->peers[i];
        lm_target_state_t *s = p->state;
        if (!s || s->probing || atomic_load(&s->healthy) != healthy)
            continue;
        lm__probe_t *pr = calloc(1, sizeof(*pr));
        if (!pr)
            abort();
        s->probing = true;
        pr->ck = ck;
        pr->snap = ck->snap;
        lm_snapshot_ref(pr->snap);
        pr->bal = b;
        pr->peer = p;
        ck->open++;
        if (ck->queue_tail)
            ck->queue_tail->next = pr;
        else
            ck->queue_head = pr;
        ck->queue_tail = pr;
    }
    lm__pump(ck);
}

static void lm__tick_healthy(uv_timer_t *t)
{
    lm__round(t->data, 1);
}

static void lm__tick_unhealthy(uv_timer_t *t)
{
    lm__round(t->data, 0);
}

static void lm__timer_closed(uv_handle_t *h)
{
    lm__checker_t *ck = h->data;
    ck->open--;
    lm__checker_maybe_free(ck);
}

static void lm__checker_stop(lm__checker_t *ck)
{
    ck->stopping = true;
    while (ck->queue_head) {
        lm__probe_t *pr = ck->queue_head;
        ck->queue_head = pr->next;
        ck->open--;
        pr->peer->state->probing = false;
        lm_snapshot_unref(pr->snap);
        free(pr->req);
        free(pr);
    }
    ck->queue_tail = NULL;
    for (lm__probe_t *pr = ck->live; pr; pr = pr->next)
        lm__probe_end(pr, -1, 0);
    if (ck->snap)
        lm_snapshot_unref(ck->snap);
    ck->snap = NULL;
    ck->bal = NULL;
    uv_close((uv_handle_t *)&ck->t_healthy, lm__timer_closed);
    uv_close((uv_handle_t *)&ck->t_unhealthy, lm__timer_closed);
}

static void lm__arm(uv_timer_t *t, uv_timer_cb cb, uint32_t iv)
{
    if (iv)
        uv_timer_start(t, cb, 0, iv); /* a first round now, then every interval */
    else
        uv_timer_stop(t);
}

void lm_health_checks_update(uv_loop_t *loop, lm_snapshot_t *snap)
{
    if (lm__stopped)
        return;
    lm__loop = loop;
    for (lm__checker_t *ck = lm__checkers; ck; ck = ck->next)
        ck->seen = false;
    for (size_t i = 0; i < snap->num_balancers; i++) {
        lm_balancer_t *b = snap->balancers[i];
        if (!b->name)
            continue;
        if (!b->hc.enabled) /* HEALTHCHECKS_OFF: forget what older configs decided */
            for (size_t k = 0; k < b->num_peers; k++)
                lm_health_reset(b->peers[k].state);
        if (!b->hc.active)
            continue;
        lm__checker_t *ck = lm__checkers;
        while (ck && strcmp(ck->name, b->name) != 0)
            ck = ck->next;
        if (!ck) {
            ck = calloc(1, sizeof(*ck));
            if (!ck)
                abort();
            ck->name = lm__xstrdup(b->name);
            uv_timer_init(loop, &ck->t_healthy);
            uv_timer_init(loop, &ck->t_unhealthy);
            ck->t_healthy.data = ck->t_unhealthy.data = ck;
            ck->open = 2;
            ck->next = lm__checkers;
            lm__checkers = ck;
            lm_log_info("[healthchecks] active checks for upstream %s", b->name);
        }
        ck->seen = true;
        lm_snapshot_ref(snap);
        if (ck->snap)
            lm_snapshot_unref(ck->snap);
        ck->snap = snap;
        ck->bal = b;
        /* restarting a timer on every publish would starve the checks when
         * configs change more often than the interval */
        if (ck->iv_h != b->hc.act.healthy_interval_ms) {
            ck->iv_h = b->hc.act.healthy_interval_ms;
            lm__arm(&ck->t_healthy, lm__tick_healthy, ck->iv_h);
        }
        if (ck->iv_u != b->hc.act.unhealthy_interval_ms) {
            ck->iv_u = b->hc.act.unhealthy_interval_ms;
            lm__arm(&ck->t_unhealthy, lm__tick_unhealthy, ck->iv_u);
        }
    }
    for (lm__checker_t **pp = &lm__checkers; *pp;) {
        lm__checker_t *ck = *pp;
        if (ck->seen) {
            pp = &ck->next;
            continue;
        }
        *pp = ck->next;
        lm_log_info("[healthchecks] no more active checks for upstream %s", ck->name);
        lm__checker_stop(ck);
    }
}

void lm_health_checks_stop(void)
{
    lm__stopped = true;
    while (lm__checkers) {
        lm__checker_t *ck = lm__checkers;
        lm__checkers = ck->next;
        lm__checker_stop(ck);
    }
}

void lm_health_shutdown(void)
{
    pthread_mutex_lock(&lm__reg_lock);
    while (lm__reg_list) {
        lm_target_state_t *s = lm__reg_list;
        lm__reg_list = s->next;
        lm__state_free(s);
    }
    lm_map_free(&lm__reg);
    lm_map_init(&lm__reg);
    pthread_mutex_unlock(&lm__reg_lock);
}

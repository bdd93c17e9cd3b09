/* metrics.c - see lm_metrics.h */
#include "lm_metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

const double lm_metrics_bucket_ms[LM_METRICS_BUCKETS] = {
    1, 2, 5, 7, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 100, 200, 300, 500, 1000, 5000, 60000,
};

lm_server_counters_t lm_counters;

static pthread_mutex_t lm__reg_lock = PTHREAD_MUTEX_INITIALIZER;
static lm_metrics_block_t *lm__blocks;

static char *lm__xstrdup(const char *s)
{
    char *p = strdup(s ? s : "");
    if (!p)
        abort();
    return p;
}

lm_metrics_block_t *lm_metrics_block(const char *service, const char *route)
{
    service = service ? service : "";
    route = route ? route : "";
    pthread_mutex_lock(&lm__reg_lock);
    lm_metrics_block_t *b;
    for (b = lm__blocks; b; b = b->next)
        if (strcmp(b->service, service) == 0 && strcmp(b->route, route) == 0)
            break;
    if (!b) {
        b = calloc(1, sizeof(*b));
        if (!b)
            abort();
        b->service = lm__xstrdup(service);
        b->route = lm__xstrdup(route);
        b->next = lm__blocks;
        lm__blocks = b;
    }
    pthread_mutex_unlock(&lm__reg_lock);
    return b;
}

static size_t lm__bucket(uint64_t ms)
{
    size_t i = 0;
    while (i < LM_METRICS_BUCKETS && (double)ms > lm_metrics_bucket_ms[i])
        i++;
    return i;
}

void lm_metrics_record(lm_metrics_block_t *b, int status, uint64_t total_ms, int64_t upstream_ms,
                       uint64_t bytes_in, uint64_t bytes_out)
{
    const memory_order rlx = memory_order_relaxed;
    uint32_t code = (uint32_t)status;
    size_t i;
    for (i = 0; i < LM_METRICS_STATUS_SLOTS; i++) {
        uint32_t cur = atomic_load_explicit(&b->status[i].code, rlx);
        if (cur == code)
            break;
        if (cur == 0) {
            uint32_t expect = 0;
            if (atomic_compare_exchange_strong(&b->status[i].code, &expect, code) || expect == code)
                break;
        }
    }
    if (i < LM_METRICS_STATUS_SLOTS)
        atomic_fetch_add_explicit(&b->status[i].count, 1, rlx);
    else
        atomic_fetch_add_explicit(&b->status_other, 1, rlx);
    atomic_fetch_add_explicit(&b->latency[lm__bucket(total_ms)], 1, rlx);
    atomic_fetch_add_explicit(&b->latency_sum_ms, total_ms, rlx);
    if (upstream_ms >= 0) {
        atomic_fetch_add_explicit(&b->upstream[lm__bucket((uint64_t)upstream_ms)], 1, rlx);
        atomic_fetch_add_explicit(&b->upstream_sum_ms, (uint64_t)upstream_ms, rlx);
        atomic_fetch_add_explicit(&b->upstream_count, 1, rlx);
    }
    atomic_fetch_add_explicit(&b->bytes_in, bytes_in, rlx);
    atomic_fetch_add_explicit(&b->bytes_out, bytes_out, rlx);
}

void lm_buf_append(lm_buf_t *b, const char *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 4096;
        while (ncap < b->len + len + 1)
            ncap *= 2;
        char *n = realloc(b->buf, ncap);
        if (!n)
            abort();
        b->buf = n;
        b->cap = ncap;
    }
    memcpy(b->buf + b->len, data, len);
    b->len += len;
    b->buf[b->len] = '\0';
}

void lm_buf_printf(lm_buf_t *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(tmp)) {
        lm_buf_append(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big)
        abort();
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    lm_buf_append(b, big, (size_t)n);
    free(big);
}

void lm_buf_free(lm_buf_t *b)
{
    free(b->buf);
    b->buf = NULL;
    b->len = b->cap = 0;
}

/* Prometheus label values escape \, " and newline. */
static void lm__label(lm_buf_t *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            lm_buf_printf(out, "\\%c", *s);
        else if (*s == '\n')
            lm_buf_append(out, "\\n", 2);
        else
            lm_buf_append(out, s, 1);
    }
}

static void lm__labels(lm_buf_t *out, const lm_metrics_block_t *b)
{
    lm_buf_append(out, "service=\"", 9);
    lm__label(out, b->service);
    lm_buf_append(out, "\",route=\"", 9);
    lm__label(out, b->route);
    lm_buf_append(out, "\"", 1);
}

static void lm__histogram(lm_buf_t *out, const char *name, const lm_metrics_block_t *b,
                          const _Atomic uint64_t *buckets, uint64_t sum)
{
    uint64_t cum = 0;
    for (size_t i = 0; i <= LM_METRICS_BUCKETS; i++) {
        cum += atomic_load_explicit(&buckets[i], memory_order_relaxed);
        lm_buf_printf(out, "%s_bucket{", name);
        lm__labels(out, b);
        if (i < LM_METRICS_BUCKETS)
            lm_buf_printf(out, ",le=\"%g\"} %llu\n", lm_metrics_bucket_ms[i], (unsigned long long)cum);
        else
            lm_buf_printf(out, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    lm_buf_printf(out, "%s_sum{", name);
    lm__labels(out, b);
    lm_buf_printf(out, "} %llu\n%s_count{", (unsigned long long)sum, name);
    lm__labels(out, b);
    lm_buf_printf(out, "} %llu\n", (unsigned long long)cum);
}

void lm_metrics_render(lm_buf_t *out)
{
    const memory_order rlx = memory_order_relaxed;
    pthread_mutex_lock(&lm__reg_lock);
    lm_buf_printf(out, "# HELP limen_http_requests_total HTTP requests by service, route and status.\n"
                       "# TYPE limen_http_requests_total counter\n");
    for (lm_metrics_block_t *b = lm__blocks; b; b = b->next) {
        for (size_t i = 0; i < LM_METRICS_STATUS_SLOTS; i++) {
            uint32_t code = atomic_load_explicit(&b->status[i].code, rlx);
            if (code == 0)
                continue;
            lm_buf_append(out, "limen_http_requests_total{", 26);
            lm__labels(out, b);
            lm_buf_printf(out, ",code=\"%u\"} %llu\n", code,
                          (unsigned long long)atomic_load_explicit(&b->status[i].count, rlx));
        }
        uint64_t other = atomic_load_explicit(&b->status_other, rlx);
        if (other) {
            lm_buf_append(out, "limen_http_requests_total{", 26);
            lm__labels(out, b);
            lm_buf_printf(out, ",code=\"other\"} %llu\n", (unsigned long long)other);
        }
    }
    lm_buf_printf(out, "# HELP limen_request_latency_ms Total request latency in milliseconds.\n"
                       "# TYPE limen_request_latency_ms histogram\n");
    for (lm_metrics_block_t *b = lm__blocks; b; b = b->next)
        lm__histogram(out, "limen_request_latency_ms", b, b->latency, atomic_load_explicit(&b->latency_sum_ms, rlx));
    lm_buf_printf(out, "# HELP limen_upstream_latency_ms Time to the upstream's response head in milliseconds.\n"
                       "# TYPE limen_upstream_latency_ms histogram\n");
    for (lm_metrics_block_t *b = lm__blocks; b; b = b->next)
        if (atomic_load_explicit(&b->upstream_count, rlx))
            lm__histogram(out, "limen_upstream_latency_ms", b, b->upstream,
                          atomic_load_explicit(&b->upstream_sum_ms, rlx));
    lm_buf_printf(out, "# HELP limen_bandwidth_bytes Bytes received from clients (ingress) and sent to them (egress).\n"
                       "# TYPE limen_bandwidth_bytes counter\n");
    for (lm_metrics_block_t *b = lm__blocks; b; b = b->next) {
        lm_buf_append(out, "limen_bandwidth_bytes{", 22);
        lm__labels(out, b);
        lm_buf_printf(out, ",direction=\"ingress\"} %llu\n", (unsigned long long)atomic_load_explicit(&b->bytes_in, rlx));
        lm_buf_append(out, "limen_bandwidth_bytes{", 22);
        lm__labels(out, b);
        lm_buf_printf(out, ",direction=\"egress\"} %llu\n", (unsigned long long)atomic_load_explicit(&b->bytes_out, rlx));
    }
    pthread_mutex_unlock(&lm__reg_lock);

    lm_server_counters_t *c = &lm_counters;
    lm_buf_printf(out,
                  "# HELP limen_connections Client connections by state.\n# TYPE limen_connections gauge\n"
                  "limen_connections{state=\"active\"} %lld\n"
                  "limen_connections{state=\"reading\"} %lld\n"
                  "limen_connections{state=\"writing\"} %lld\n"
                  "# HELP limen_connections_accepted_total Client connections accepted.\n"
                  "# TYPE limen_connections_accepted_total counter\n"
                  "limen_connections_accepted_total %llu\n"
                  "# HELP limen_requests_total Requests received on the proxy listeners.\n"
                  "# TYPE limen_requests_total counter\n"
                  "limen_requests_total %llu\n"
                  "# HELP limen_upstream_errors_total Upstream connect, read and write failures and timeouts.\n"
                  "# TYPE limen_upstream_errors_total counter\n"
                  "limen_upstream_errors_total %llu\n"
                  "# HELP limen_config_applies_total Configurations applied.\n"
                  "# TYPE limen_config_applies_total counter\n"
                  "limen_config_applies_total %llu\n"
                  "# HELP limen_config_failures_total Configurations refused.\n"
                  "# TYPE limen_config_failures_total counter\n"
                  "limen_config_failures_total %llu\n",
                  (long long)atomic_load(&c->connections_active), (long long)atomic_load(&c->connections_reading),
                  (long long)atomic_load(&c->connections_writing),
                  (unsigned long long)atomic_load(&c->connections_accepted),
                  (unsigned long long)atomic_load(&c->requests_total),
                  (unsigned long long)atomic_load(&c->upstream_errors),
                  (unsigned long long)atomic_load(&c->config_applies),
                  (unsigned long long)atomic_load(&c->config_failures));
}

void lm_metrics_shutdown(void)
{
    pthread_mutex_lock(&lm__reg_lock);
    while (lm__blocks) {
        lm_metrics_block_t *b = lm__blocks;
        lm__blocks = b->next;
        free(b->service);
        free(b->route);
        free(b);
    }
    pthread_mutex_unlock(&lm__reg_lock);
}

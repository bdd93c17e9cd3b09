/*
 * prometheus.c - the prometheus plugin (Kong 3.x metric names, so Kong's
 * Grafana dashboards work), served on the status listener's /metrics.
 *
 * config: per_consumer, status_code_metrics, latency_metrics,
 * bandwidth_metrics, upstream_health_metrics, ai_metrics (all false, as in
 * Kong 3.x; ai_metrics is accepted and has nothing to count here).
 *
 * Series (each only with its toggle, as Kong 3.x):
 *   kong_http_requests_total{service,route,code,source,workspace,consumer}   status_code_metrics
 *   kong_request_latency_ms, kong_kong_latency_ms, kong_upstream_latency_ms
 *     histograms {service,route,workspace}, Kong's buckets                  latency_metrics
 *   kong_bandwidth_bytes{service,route,direction,workspace,consumer}          bandwidth_metrics
 *   kong_upstream_target_health{upstream,target,address,state,subsystem}      upstream_health_metrics
 * and always: kong_nginx_connections_total{node_id,subsystem,state},
 * kong_nginx_requests_total, kong_datastore_reachable, kong_node_info,
 * kong_nginx_metric_errors_total (series that found no room).
 * consumer is the username (custom_id when there is none) with per_consumer,
 * else ""; service is the service's name (its host when unnamed), route the
 * route's name (its id when unnamed); source is service, exit or error.
 *
 * Counting is lock-free: one process-wide open-addressing table of series
 * (LM__SLOTS), found by a hash of the labels; a new series is published with
 * one compare-and-swap, counters are relaxed atomic adds. The table is an
 * lm_plugin_shared block: series survive config swaps, as Kong's shared
 * dictionary does across reloads.
 */
#include "lm_plugins.h"
#include "lm_metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define LM__SLOTS 16384
#define LM__BUCKETS 26

static const double lm__bounds[LM__BUCKETS] = { 1,   2,   5,   7,   10,   15,   20,   25,    30,    40,    50,    60,    70,
                                                80,  90,  100, 200, 300,  400,  500,  1000,  2000,  5000,  10000, 30000, 60000 };

enum { LM__K_REQ = 1, LM__K_LAT, LM__K_BW };

typedef struct {
    _Atomic uint64_t b[LM__BUCKETS + 1];
    _Atomic uint64_t sum, count;
} lm__hist_t;

typedef struct {
    uint64_t hash;
    int kind, code;
    char *service, *route, *consumer, *source;
    _Atomic uint64_t count;          /* requests */
    _Atomic uint64_t in, out;        /* bandwidth */
    lm__hist_t h[3];                 /* latency: request, kong, upstream */
} lm__series_t;

typedef struct {
    _Atomic(lm__series_t *) slots[LM__SLOTS];
    _Atomic uint64_t errors;
    _Atomic int upstream_health;     /* the last configured instance's upstream_health_metrics */
    _Atomic int used;
    char node_id[37];
} lm__table_t;

static _Atomic(lm__table_t *) lm__tab;

typedef struct {
    lm__table_t *t;
    bool per_consumer, status, latency, bandwidth;
} lm__conf_t;

static const lm_schema_field_t lm__fields[] = {
    { .name = "per_consumer", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { .name = "status_code_metrics", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { .name = "ai_metrics", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { .name = "latency_metrics", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { .name = "bandwidth_metrics", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { .name = "upstream_health_metrics", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { 0 },
};

static void lm__fini(void *block)
{
    lm__table_t *t = block;
    atomic_store(&lm__tab, NULL);
    for (size_t i = 0; i < LM__SLOTS; i++) {
        lm__series_t *s = atomic_load(&t->slots[i]);
        if (!s)
            continue;
        free(s->service);
        free(s->route);
        free(s->consumer);
        free(s);
    }
}

static int lm__configure(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out)
{
    lm__conf_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    c->t = lm_plugin_shared_ex("prometheus", LM_STR("series"), sizeof(lm__table_t), lm__fini);
    static pthread_mutex_t once = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&once);
    if (!c->t->node_id[0]) {
        char seed[64];
        snprintf(seed, sizeof(seed), "node:%d:%p", (int)getpid(), (void *)c->t);
        lm_config_uuid(seed, c->t->node_id);
    }
    pthread_mutex_unlock(&once);
    atomic_store(&lm__tab, c->t);
    c->per_consumer = lm_schema_bool(config, "per_consumer");
    c->status = lm_schema_bool(config, "status_code_metrics");
    c->latency = lm_schema_bool(config, "latency_metrics");
    c->bandwidth = lm_schema_bool(config, "bandwidth_metrics");
    atomic_store(&c->t->upstream_health, lm_schema_bool(config, "upstream_health_metrics") ? 1 : 0);
    *out = c;
    return LM_OK;
}

static uint64_t lm__mix(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (h ^ 0xff) * 1099511628211ull; /* field separator */
}

static bool lm__same(const lm__series_t *s, int kind, const char *svc, const char *route, const char *cons,
                     int code, const char *source)
{
    return s->kind == kind && s->code == code && strcmp(s->service, svc) == 0 && strcmp(s->route, route) == 0 &&
           strcmp(s->consumer, cons) == 0 && strcmp(s->source, source) == 0;
}

static char *lm__xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        abort();
    return p;
}

/* Finds or adds a series; NULL when the table is full (counted). */
static lm__series_t *lm__series(lm__table_t *t, int kind, const char *svc, const char *route, const char *cons,
                                int code, const char *source)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)kind ^ ((uint64_t)code << 8);
    h = lm__mix(lm__mix(lm__mix(lm__mix(h, svc), route), cons), source);
    lm__series_t *mine = NULL;
    for (size_t i = 0, at = (size_t)(h % LM__SLOTS); i < 64; i++, at = (at + 1) % LM__SLOTS) {
        lm__series_t *s = atomic_load_explicit(&t->slots[at], memory_order_acquire);
        if (!s) {
            if (!mine) {
                mine = calloc(1, sizeof(*mine));
                if (!mine)
                    abort();
                mine->hash = h;
                mine->kind = kind;
                mine->code = code;
                mine->service = lm__xstrdup(svc);
                mine->route = lm__xstrdup(route);
                mine->consumer = lm__xstrdup(cons);
                mine->source = (char *)source; /* a literal */
            }
            lm__series_t *expect = NULL;
            if (atomic_compare_exchange_strong_explicit(&t->slots[at], &expect, mine, memory_order_acq_rel,
                                                        memory_order_acquire)) {
                atomic_fetch_add_explicit(&t->used, 1, memory_order_relaxed);
                return mine;
            }
            s = expect;
        }
        if (s->hash == h && lm__same(s, kind, svc, route, cons, code, source)) {
            if (mine) {
                free(mine->service);
                free(mine->route);
                free(mine->consumer);
                free(mine);
            }
            return s;
        }
    }
    if (mine) {
        free(mine->service);
        free(mine->route);
        free(mine->consumer);
        free(mine);
    }
    atomic_fetch_add_explicit(&t->errors, 1, memory_order_relaxed);
    return NULL;
}

static void lm__observe(lm__hist_t *hst, int64_t v)
{
    if (v < 0)
        return;
    size_t i = 0;
    while (i < LM__BUCKETS && (double)v > lm__bounds[i])
        i++;
    atomic_fetch_add_explicit(&hst->b[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&hst->sum, (uint64_t)v, memory_order_relaxed);
    atomic_fetch_add_explicit(&hst->count, 1, memory_order_relaxed);
}

static void lm__log(lm_ctx_t *ctx, const void *conf)
{
    const lm__conf_t *c = conf;
    if (!c->status && !c->latency && !c->bandwidth)
        return;
    const lm_service_t *svc = lm_ctx_service(ctx);
    const lm_route_t *route = lm_ctx_route(ctx);
    const char *sname = svc ? (svc->name ? svc->name : svc->host) : "";
    const char *rname = route ? (route->name ? route->name : route->id) : "";
    const char *cname = "";
    const lm_consumer_t *cons = c->per_consumer ? lm_ctx_consumer(ctx) : NULL;
    if (cons)
        cname = cons->username ? cons->username : cons->custom_id ? cons->custom_id : "";
    const char *source = lm_ctx_response_source(ctx);
    const char *src = strcmp(source, "service") == 0 ? "service" : strcmp(source, "exit") == 0 ? "exit" : "error";
    if (c->status) {
        lm__series_t *s = lm__series(c->t, LM__K_REQ, sname, rname, cname, lm_ctx_status(ctx), src);
        if (s)
            atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    }
    if (c->latency) {
        lm__series_t *s = lm__series(c->t, LM__K_LAT, sname, rname, "", 0, "");
        if (s) {
            lm_ctx_latencies_t l;
            lm_ctx_latencies(ctx, &l);
            lm__observe(&s->h[0], l.request);
            lm__observe(&s->h[1], l.kong);
            lm__observe(&s->h[2], l.proxy);
        }
    }
    if (c->bandwidth) {
        lm__series_t *s = lm__series(c->t, LM__K_BW, sname, rname, cname, 0, "");
        if (s) {
            atomic_fetch_add_explicit(&s->in, lm_ctx_request_size(ctx), memory_order_relaxed);
            atomic_fetch_add_explicit(&s->out, lm_ctx_response_size(ctx), memory_order_relaxed);
        }
    }
}

/* ---- exposition ------------------------------------------------------------ */

static void lm__label(lm_buf_t *out, const char *name, const char *v, bool comma)
{
    lm_buf_printf(out, "%s%s=\"", comma ? "," : "", name);
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            lm_buf_printf(out, "\\%c", *v);
        else if (*v == '\n')
            lm_buf_append(out, "\\n", 2);
        else
            lm_buf_append(out, v, 1);
    }
    lm_buf_append(out, "\"", 1);
}

static void lm__hist(lm_buf_t *out, const char *name, const lm__series_t *s, const lm__hist_t *h)
{
    uint64_t count = atomic_load_explicit(&h->count, memory_order_relaxed);
    if (!count)
        return;
    uint64_t cum = 0;
    for (size_t i = 0; i <= LM__BUCKETS; i++) {
        cum += atomic_load_explicit(&h->b[i], memory_order_relaxed);
        lm_buf_printf(out, "%s_bucket{", name);
        lm__label(out, "service", s->service, false);
        lm__label(out, "route", s->route, true);
        lm__label(out, "workspace", "default", true);
        if (i < LM__BUCKETS) /* zero-padded like Kong's, so bucket labels sort as numbers */
            lm_buf_printf(out, ",le=\"%07.1f\"} %llu\n", lm__bounds[i], (unsigned long long)cum);
        else
            lm_buf_printf(out, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    lm_buf_printf(out, "%s_count{", name);
    lm__label(out, "service", s->service, false);
    lm__label(out, "route", s->route, true);
    lm__label(out, "workspace", "default", true);
    lm_buf_printf(out, "} %llu\n%s_sum{", (unsigned long long)cum, name);
    lm__label(out, "service", s->service, false);
    lm__label(out, "route", s->route, true);
    lm__label(out, "workspace", "default", true);
    lm_buf_printf(out, "} %llu\n", (unsigned long long)atomic_load_explicit(&h->sum, memory_order_relaxed));
}

int lm_prometheus_render(lm_buf_t *out)
{
    lm__table_t *t = atomic_load(&lm__tab);
    if (!t)
        return 0;
    lm_buf_printf(out, "# HELP kong_http_requests_total HTTP status codes per consumer/service/route in Kong\n"
                       "# TYPE kong_http_requests_total counter\n");
    for (size_t i = 0; i < LM__SLOTS; i++) {
        lm__series_t *s = atomic_load_explicit(&t->slots[i], memory_order_acquire);
        if (!s || s->kind != LM__K_REQ)
            continue;
        lm_buf_append(out, "kong_http_requests_total{", 25);
        lm__label(out, "service", s->service, false);
        lm__label(out, "route", s->route, true);
        lm_buf_printf(out, ",code=\"%d\"", s->code);
        lm__label(out, "source", s->source, true);
        lm__label(out, "workspace", "default", true);
        lm__label(out, "consumer", s->consumer, true);
        lm_buf_printf(out, "} %llu\n", (unsigned long long)atomic_load_explicit(&s->count, memory_order_relaxed));
    }
    static const struct {
        const char *name, *help;
    } hists[3] = {
        { "kong_request_latency_ms", "Total latency incurred during requests for each service/route in Kong" },
        { "kong_kong_latency_ms", "Latency added by Kong and enabled plugins for each service/route in Kong" },
        { "kong_upstream_latency_ms", "Latency added by upstream response for each service/route in Kong" },
    };
    for (size_t k = 0; k < 3; k++) {
        lm_buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", hists[k].name, hists[k].help, hists[k].name);
        for (size_t i = 0; i < LM__SLOTS; i++) {
            lm__series_t *s = atomic_load_explicit(&t->slots[i], memory_order_acquire);
            if (s && s->kind == LM__K_LAT)
                lm__hist(out, hists[k].name, s, &s->h[k]);
        }
    }
    lm_buf_printf(out, "# HELP kong_bandwidth_bytes Total bandwidth (ingress/egress) throughput in bytes\n"
                       "# TYPE kong_bandwidth_bytes counter\n");
    for (size_t i = 0; i < LM__SLOTS; i++) {
        lm__series_t *s = atomic_load_explicit(&t->slots[i], memory_order_acquire);
        if (!s || s->kind != LM__K_BW)
            continue;
        for (int d = 0; d < 2; d++) {
            lm_buf_append(out, "kong_bandwidth_bytes{", 21);
            lm__label(out, "service", s->service, false);
            lm__label(out, "route", s->route, true);
            lm__label(out, "direction", d ? "egress" : "ingress", true);
            lm__label(out, "workspace", "default", true);
            lm__label(out, "consumer", s->consumer, true);
            lm_buf_printf(out, "} %llu\n",
                          (unsigned long long)atomic_load_explicit(d ? &s->out : &s->in, memory_order_relaxed));
        }
    }
    lm_server_counters_t *c = &lm_counters;
    long long active = (long long)atomic_load(&c->connections_active);
    long long reading = (long long)atomic_load(&c->connections_reading);
    long long writing = (long long)atomic_load(&c->connections_writing);
    long long waiting = active - reading - writing;
    unsigned long long accepted = (unsigned long long)atomic_load(&c->connections_accepted);
    unsigned long long requests = (unsigned long long)atomic_load(&c->requests_total);
    const char *n = t->node_id;
    lm_buf_printf(out,
                  "# HELP kong_nginx_connections_total Number of connections by subsystem\n"
                  "# TYPE kong_nginx_connections_total gauge\n"
                  "kong_nginx_connections_total{node_id=\"%s\",subsystem=\"http\",state=\"active\"} %lld\n"
                  "kong_nginx_connections_total{node_id=\"%s\",subsystem=\"http\",state=\"accepted\"} %llu\n"
                  "kong_nginx_connections_total{node_id=\"%s\",subsystem=\"http\",state=\"handled\"} %llu\n"
                  "kong_nginx_connections_total{node_id=\"%s\",subsystem=\"http\",state=\"reading\"} %lld\n"
                  "kong_nginx_connections_total{node_id=\"%s\",subsystem=\"http\",state=\"total\"} %llu\n"
                  "kong_nginx_connections_total{node_id=\"%s\",subsystem=\"http\",state=\"waiting\"} %lld\n"
                  "kong_nginx_connections_total{node_id=\"%s\",subsystem=\"http\",state=\"writing\"} %lld\n"
                  "# HELP kong_nginx_requests_total Number of requests total\n"
                  "# TYPE kong_nginx_requests_total gauge\n"
                  "kong_nginx_requests_total{node_id=\"%s\",subsystem=\"http\"} %llu\n"
                  "# HELP kong_datastore_reachable Datastore reachable from Kong, 0 is unreachable\n"
                  "# TYPE kong_datastore_reachable gauge\n"
                  "kong_datastore_reachable 1\n"
                  "# HELP kong_node_info Kong Node metadata information\n"
                  "# TYPE kong_node_info gauge\n"
                  "kong_node_info{node_id=\"%s\",version=\"%s\"} 1\n"
                  "# HELP kong_nginx_metric_errors_total Number of nginx-lua-prometheus errors\n"
                  "# TYPE kong_nginx_metric_errors_total counter\n"
                  "kong_nginx_metric_errors_total %llu\n",
                  n, active, n, accepted, n, accepted, n, reading, n, requests, n, waiting < 0 ? 0 : waiting, n,
                  writing, n, requests, n, LM_VERSION, (unsigned long long)atomic_load(&t->errors));
    return atomic_load(&t->upstream_health) ? LM_PROMETHEUS_UPSTREAM_HEALTH : LM_PROMETHEUS_ON;
}

const lm_plugin_ops_t lm_plugin_prometheus = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "prometheus",
    .priority = 13,
    .schema = lm__fields,
    .configure = lm__configure,
    .log = lm__log,
};

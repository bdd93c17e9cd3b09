/*
 * router_bench.c - microbenchmark for lm_router_match (standalone; `make bench`).
 *
 * Cases: 10 and 100,000 host + prefix routes, 1,000 regex routes without
 * hosts (every request may try many regexes, as in Kong) and 1,000 regex
 * routes each on its own host. Requests cycle over a table of 4096 distinct
 * hosts/paths so the numbers include cache misses of a big router; the
 * "hot16" case sends them to 16 routes only (the algorithmic cost alone).
 *
 * Output, one line per case:
 *   router_match routes=10 ns_per_match=42.0
 */
#include "lm_router.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NREQ 4096

typedef struct {
    lm_arena_t *arena;
    lm_config_t cfg;
    lm_router_t *router;
    lm_route_req_t reqs[NREQ];
} bench_t;

static char *const default_protocols[] = { "http", "https" };
static char *const get_method[] = { "GET" };

static lm_route_t *new_route(lm_arena_t *a, size_t i, const char *host, const char *path, bool regex)
{
    lm_route_t *r = lm_arena_calloc(a, sizeof(*r));
    r->index = i;
    r->name = lm_arena_sprintf(a, "r%zu", i);
    r->protocols = (char **)default_protocols;
    r->num_protocols = 2;
    if (host) {
        r->hosts = lm_arena_alloc(a, sizeof(char *));
        r->hosts[0] = lm_arena_strdup(a, host);
        r->num_hosts = 1;
    }
    r->paths = lm_arena_alloc(a, sizeof(char *));
    r->paths[0] = lm_arena_strdup(a, path);
    r->path_is_regex = lm_arena_calloc(a, 1);
    r->path_is_regex[0] = regex;
    r->num_paths = 1;
    r->strip_path = true;
    return r;
}

enum { CASE_PREFIX, CASE_PREFIX_HOT, CASE_REGEX_HOSTLESS, CASE_REGEX_HOSTS };

static void bench_build(bench_t *b, size_t n, int kind)
{
    b->arena = lm_arena_create(1 << 20);
    memset(&b->cfg, 0, sizeof(b->cfg));
    b->cfg.arena = b->arena;
    b->cfg.num_routes = n;
    b->cfg.routes = lm_arena_alloc(b->arena, n * sizeof(lm_route_t *));
    char host[64], path[64];
    for (size_t i = 0; i < n; i++) {
        snprintf(host, sizeof(host), "svc%zu.example.com", i);
        if (kind == CASE_PREFIX || kind == CASE_PREFIX_HOT)
            snprintf(path, sizeof(path), "/api/v%zu", i % 7);
        else
            snprintf(path, sizeof(path), "/r%zu/(?<id>\\d+)$", i);
        b->cfg.routes[i] = new_route(b->arena, i, kind == CASE_REGEX_HOSTLESS ? NULL : host, path,
                                     kind == CASE_REGEX_HOSTLESS || kind == CASE_REGEX_HOSTS);
        if (i % 3 == 0) {
            b->cfg.routes[i]->methods = (char **)get_method;
            b->cfg.routes[i]->num_methods = 1;
        }
    }
    b->router = lm_router_build(&b->cfg, b->arena, NULL);
    if (b->router == NULL) {
        fprintf(stderr, "router_bench: build failed\n");
        exit(1);
    }
    for (size_t k = 0; k < NREQ; k++) {
        size_t i = (k * 7919) % (kind == CASE_PREFIX_HOT ? 16 : n);
        snprintf(host, sizeof(host), "svc%zu.example.com", i);
        if (kind == CASE_PREFIX || kind == CASE_PREFIX_HOT)
            snprintf(path, sizeof(path), "/api/v%zu/items/%zu", i % 7, k);
        else
            snprintf(path, sizeof(path), "/r%zu/%zu", i, k);
        b->reqs[k] = (lm_route_req_t){
            .method = LM_STR("GET"),
            .host = lm_str(lm_arena_strdup(b->arena, host)),
            .path = lm_str(lm_arena_strdup(b->arena, path)),
            .protocol = "http",
            .port = 8000,
        };
    }
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void bench_run(size_t n, int kind, const char *label)
{
    bench_t *b = calloc(1, sizeof(*b));
    bench_build(b, n, kind);
    lm_route_match_t m;
    size_t hits = 0;
    for (size_t k = 0; k < NREQ; k++) /* warm-up and sanity check */
        hits += lm_router_match(b->router, &b->reqs[k], &m) == LM_OK;
    if (hits != NREQ) {
        fprintf(stderr, "router_bench: %s: only %zu of %d requests matched\n", label, hits, NREQ);
        exit(1);
    }
    size_t iters = kind == CASE_REGEX_HOSTLESS ? 20000 : 2000000;
    double t0 = now_ns();
    for (size_t k = 0; k < iters; k++)
        hits += lm_router_match(b->router, &b->reqs[k & (NREQ - 1)], &m) == LM_OK;
    double t1 = now_ns();
    printf("router_match routes=%zu%s ns_per_match=%.1f\n", n, label, (t1 - t0) / (double)iters);
    fflush(stdout);
    lm_router_free(b->router);
    lm_arena_destroy(b->arena);
    free(b);
}

int main(void)
{
    bench_run(10, CASE_PREFIX, "");
    bench_run(100000, CASE_PREFIX, "");
    bench_run(100000, CASE_PREFIX_HOT, " kind=hot16");
    bench_run(1000, CASE_REGEX_HOSTS, " kind=regex_per_host");
    bench_run(1000, CASE_REGEX_HOSTLESS, " kind=regex_hostless");
    lm_router_thread_cleanup();
    return 0;
}

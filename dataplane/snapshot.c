/* snapshot.c - see lm_snapshot.h */
#include "lm_snapshot.h"
#include "lm_log.h"
#include "lm_map.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>

typedef struct {
    struct sockaddr_storage addrs[LM_SVC_MAX_ADDRS];
    socklen_t lens[LM_SVC_MAX_ADDRS];
    size_t n;
    const char *error;
} lm__resolved_t;

/* Resolves host (numeric fast path, else getaddrinfo), cached per compile. */
static const lm__resolved_t *lm__resolve(lm_map_t *cache, lm_arena_t *a, const char *host)
{
    lm_str_t key = lm_str(host);
    lm__resolved_t *r = lm_map_get(cache, key);
    if (r)
        return r;
    r = lm_arena_calloc(a, sizeof(*r));
    struct sockaddr_in *in4 = (struct sockaddr_in *)&r->addrs[0];
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&r->addrs[0];
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        r->lens[0] = sizeof(*in4);
        r->n = 1;
    } else if (host[0] == '[' || strchr(host, ':')) {
        char buf[64];
        size_t l = strlen(host);
        if (host[0] == '[' && l >= 2 && l - 2 < sizeof(buf)) {
            memcpy(buf, host + 1, l - 2);
            buf[l - 2] = '\0';
        } else {
            snprintf(buf, sizeof(buf), "%s", host);
        }
        if (inet_pton(AF_INET6, buf, &in6->sin6_addr) == 1) {
            in6->sin6_family = AF_INET6;
            r->lens[0] = sizeof(*in6);
            r->n = 1;
        } else {
            r->error = "name resolution failed";
        }
    } else {
        struct addrinfo hints = { 0 }, *res = NULL;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_family = AF_UNSPEC;
        int rc = getaddrinfo(host, NULL, &hints, &res);
        if (rc != 0 || res == NULL) {
            r->error = "name resolution failed";
            lm_log_warn("resolving %s: %s", host, gai_strerror(rc));
        } else {
            for (struct addrinfo *ai = res; ai && r->n < LM_SVC_MAX_ADDRS; ai = ai->ai_next) {
                if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
                    continue;
                /* skip duplicates (getaddrinfo repeats per socktype) */
                bool dup = false;
                for (size_t i = 0; i < r->n; i++)
                    if (r->lens[i] == ai->ai_addrlen && memcmp(&r->addrs[i], ai->ai_addr, ai->ai_addrlen) == 0)
                        dup = true;
                if (dup)
                    continue;
                memcpy(&r->addrs[r->n], ai->ai_addr, ai->ai_addrlen);
                r->lens[r->n] = ai->ai_addrlen;
                r->n++;
            }
            freeaddrinfo(res);
            if (r->n == 0)
                r->error = "name resolution failed";
        }
    }
    lm_map_put(cache, lm_arena_strdup_str(a, key), r);
    return r;
}

static lm_str_t lm__host_header(lm_arena_t *a, const char *host, int port, int default_port)
{
    char *s = (port == default_port) ? lm_arena_strdup(a, host) : lm_arena_sprintf(a, "%s:%d", host, port);
    return lm_str(s);
}

static void lm__add_peers(lm_arena_t *a, lm_svc_rt_t *rt, size_t *cap, const lm__resolved_t *r, int port,
                          int weight, lm_str_t host_header)
{
    for (size_t i = 0; i < r->n; i++) {
        if (rt->num_peers == *cap) {
            size_t ncap = *cap ? *cap * 2 : 4;
            lm_peer_t *np = lm_arena_calloc(a, ncap * sizeof(*np));
            if (rt->num_peers)
                memcpy(np, rt->peers, rt->num_peers * sizeof(*np));
            rt->peers = np;
            *cap = ncap;
        }
        lm_peer_t *p = &rt->peers[rt->num_peers++];
        memcpy(&p->addr, &r->addrs[i], r->lens[i]);
        p->addrlen = r->lens[i];
        char ip[INET6_ADDRSTRLEN] = "";
        if (p->addr.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&p->addr;
            in->sin_port = htons((uint16_t)port);
            inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
            snprintf(p->key, sizeof(p->key), "%s:%d", ip, port);
        } else {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&p->addr;
            in6->sin6_port = htons((uint16_t)port);
            inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
            snprintf(p->key, sizeof(p->key), "[%s]:%d", ip, port);
        }
        p->weight = weight;
        p->host_header = host_header;
    }
}

static void lm__compile_service(lm_snapshot_t *s, lm_map_t *cache, const lm_service_t *svc, lm_svc_rt_t *rt)
{
    lm_arena_t *a = s->arena;
    rt->svc = svc;
    rt->label = svc->name ? svc->name : svc->id ? svc->id : lm_arena_sprintf(a, "service-%zu", svc->index);
    rt->path = lm_str(svc->path ? svc->path : "/");
    int default_port = 80;
    if (strcmp(svc->protocol, "http") != 0) {
        rt->unsupported_protocol = true; /* TLS and gRPC upstreams come with the protocols work */
        default_port = 443;
    }
    size_t cap = 0;
    const lm_upstream_t *up = lm_config_find_upstream(s->cfg, svc->host);
    if (up) {
        for (size_t i = 0; i < up->num_targets; i++) {
            const lm_target_t *t = &up->targets[i];
            if (t->weight == 0)
                continue;
            const lm__resolved_t *r = lm__resolve(cache, a, t->host);
            lm_str_t hh = up->host_header ? lm_str(up->host_header) : lm__host_header(a, t->host, t->port, default_port);
            lm__add_peers(a, rt, &cap, r, t->port, t->weight, hh);
        }
        if (rt->num_peers == 0)
            rt->resolve_error = "failure to get a peer from the ring-balancer";
    } else {
        const lm__resolved_t *r = lm__resolve(cache, a, svc->host);
        if (r->error)
            rt->resolve_error = r->error;
        lm__add_peers(a, rt, &cap, r, svc->port, 100, lm__host_header(a, svc->host, svc->port, default_port));
    }
}

static uint64_t lm__wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

lm_snapshot_t *lm_snapshot_compile(lm_config_t *cfg, lm_config_errors_t *errs)
{
    lm_snapshot_t *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    atomic_init(&s->refs, 1);
    s->arena = lm_arena_create(64 * 1024);
    s->cfg = cfg;
    memcpy(s->hash, cfg->hash, sizeof(s->hash));
    s->applied_at_ms = lm__wall_ms();

    s->router = lm_router_build(cfg, s->arena, errs);
    if (!s->router) {
        lm_snapshot_unref(s);
        return NULL;
    }

    s->plugins_built = true;
    if (lm_plugin_rt_build(&s->plugins, cfg, s->arena, errs) != LM_OK) {
        lm_snapshot_unref(s);
        return NULL;
    }

    lm_map_t cache;
    lm_map_init(&cache);
    s->num_services = cfg->num_services;
    s->services = lm_arena_calloc(s->arena, (cfg->num_services + 1) * sizeof(*s->services));
    for (size_t i = 0; i < cfg->num_services; i++)
        lm__compile_service(s, &cache, cfg->services[i], &s->services[i]);
    lm_map_free(&cache);

    s->num_routes = cfg->num_routes;
    s->routes = lm_arena_calloc(s->arena, (cfg->num_routes + 1) * sizeof(*s->routes));
    for (size_t i = 0; i < cfg->num_routes; i++) {
        const lm_route_t *r = cfg->routes[i];
        lm_route_rt_t *rt = &s->routes[r->index];
        rt->route = r;
        rt->svc = r->service ? &s->services[r->service->index] : NULL;
        rt->label = r->name ? r->name : r->id ? r->id : lm_arena_sprintf(s->arena, "route-%zu", r->index);
        lm_plugin_rt_chain(&s->plugins, s->arena, r, &rt->chain);
    }
    /* the document as given (what the hash covers): GET /config and the
     * state file serve it, so posting it back gives the same hash */
    s->doc_json = cfg->canonical_json;
    cfg->canonical_json = NULL;
    s->doc_json_len = s->doc_json ? strlen(s->doc_json) : 0;
    s->no_route_metrics = lm_metrics_block("", "");
    return s;
}

lm_snapshot_t *lm_snapshot_empty(void)
{
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "_format_version", "3.0");
    lm_config_t *cfg = lm_config_build(doc, &errs);
    lm_snapshot_t *s = cfg ? lm_snapshot_compile(cfg, &errs) : NULL;
    if (!s) {
        for (size_t i = 0; i < errs.count; i++)
            lm_log_error("empty config: %s: %s", errs.items[i].path, errs.items[i].message);
        abort();
    }
    lm_config_errors_free(&errs);
    /* Kong's hash for "no configuration yet": controllers look for it */
    memset(s->hash, '0', 32);
    s->hash[32] = '\0';
    return s;
}

void lm_snapshot_unref(lm_snapshot_t *s)
{
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (s->router)
        lm_router_free(s->router);
    if (s->plugins_built)
        lm_plugin_rt_free(&s->plugins);
    cJSON_free(s->doc_json);
    lm_arena_destroy(s->arena);
    lm_config_free(s->cfg);
    free(s);
}

lm_metrics_block_t *lm_snapshot_route_metrics(lm_route_rt_t *rt)
{
    lm_metrics_block_t *b = atomic_load_explicit(&rt->metrics, memory_order_acquire);
    if (LM_LIKELY(b != NULL))
        return b;
    b = lm_metrics_block(rt->svc ? rt->svc->label : "", rt->label);
    atomic_store_explicit(&rt->metrics, b, memory_order_release);
    return b;
}

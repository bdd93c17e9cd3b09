/* snapshot.c - see lm_snapshot.h */
#include "lm_snapshot.h"
#include "lm_stream.h"
#include "lm_tls.h"
#include "lm_log.h"
#include "lm_map.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
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

static void lm__add_peers(lm_arena_t *a, lm_balancer_t *b, size_t *cap, const lm__resolved_t *r, int port,
                          int weight, lm_str_t host_header, uint32_t target)
{
    for (size_t i = 0; i < r->n; i++) {
        if (b->num_peers == *cap) {
            size_t ncap = *cap ? *cap * 2 : 4;
            lm_peer_t *np = lm_arena_calloc(a, ncap * sizeof(*np));
            if (b->num_peers)
                memcpy(np, b->peers, b->num_peers * sizeof(*np));
            b->peers = np;
            *cap = ncap;
        }
        lm_peer_t *p = &b->peers[b->num_peers++];
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
        p->target = target;
    }
}

static int lm__algo(const char *name)
{
    if (name && strcmp(name, "consistent-hashing") == 0)
        return LM_LB_CONSISTENT_HASHING;
    if (name && strcmp(name, "least-connections") == 0)
        return LM_LB_LEAST_CONNECTIONS;
    if (name && strcmp(name, "latency") == 0)
        return LM_LB_LATENCY;
    return LM_LB_ROUND_ROBIN;
}

/* An upstream's balancer: its targets resolved (weight 0 ones listed, not
 * balanced), health check settings compiled. */
static lm_balancer_t *lm__compile_upstream(lm_snapshot_t *s, lm_map_t *cache, const lm_upstream_t *up,
                                           lm_config_errors_t *errs, bool *failed)
{
    lm_arena_t *a = s->arena;
    lm_balancer_t *b = lm_arena_calloc(a, sizeof(*b));
    b->up = up;
    b->name = up->name;
    b->algo = lm__algo(up->algorithm);
    if (lm_hc_conf_compile(&b->hc, up, a, errs) != LM_OK)
        *failed = true;
    b->num_targets = up->num_targets;
    b->targets = lm_arena_calloc(a, (up->num_targets + 1) * sizeof(*b->targets));
    size_t cap = 0;
    for (size_t i = 0; i < up->num_targets; i++) {
        const lm_target_t *t = &up->targets[i];
        lm_bal_target_t *bt = &b->targets[i];
        bt->t = t;
        bt->first = (uint32_t)b->num_peers;
        if (t->weight == 0)
            continue;
        const lm__resolved_t *r = lm__resolve(cache, a, t->host);
        bt->dns_error = r->error;
        lm_str_t hh = up->host_header ? lm_str(up->host_header) : lm__host_header(a, t->host, t->port, 80);
        lm__add_peers(a, b, &cap, r, t->port, t->weight, hh, (uint32_t)i);
        bt->count = (uint32_t)(b->num_peers - bt->first);
    }
    lm_balancer_build(b, a);
    return b;
}

static void lm__compile_service(lm_snapshot_t *s, lm_map_t *cache, const lm_map_t *ups, const lm_service_t *svc,
                                lm_svc_rt_t *rt, lm_config_errors_t *errs)
{
    lm_arena_t *a = s->arena;
    rt->svc = svc;
    rt->label = svc->name ? svc->name : svc->id ? svc->id : lm_arena_sprintf(a, "service-%zu", svc->index);
    rt->path = lm_str(svc->path ? svc->path : "/");
    int default_port = 80;
    rt->h2 = strcmp(svc->protocol, "grpc") == 0 || strcmp(svc->protocol, "grpcs") == 0;
    bool stream_tls = strcmp(svc->protocol, "tls") == 0; /* a stream service that re-encrypts */
    if (strcmp(svc->protocol, "https") == 0 || strcmp(svc->protocol, "grpcs") == 0 || stream_tls) {
        default_port = 443;
        rt->unsupported_protocol = stream_tls;
        char err[256] = "";
        rt->tls = lm_tls_client_ctx(s->cfg, svc, rt->tls_id, err, sizeof(err));
        if (!rt->tls)
            lm_config_errors_add(errs, lm_arena_sprintf(a, "services[%zu]", svc->index), "service", rt->label,
                                 NULL, "%s", err);
    } else if (strcmp(svc->protocol, "http") != 0 && strcmp(svc->protocol, "grpc") != 0) {
        rt->unsupported_protocol = true;
        default_port = 443;
    }
    /* lm_config_find_upstream's answer (the first upstream by name or id), from the map */
    const lm_upstream_t *up = svc->host ? lm_map_get(ups, lm_str(svc->host)) : NULL;
    if (up) {
        rt->bal = s->balancers[up->index];
        if (rt->bal->num_peers == 0)
            rt->resolve_error = "failure to get a peer from the ring-balancer";
    } else {
        /* a plain host: round-robin over its addresses, no health checks */
        lm_balancer_t *b = lm_arena_calloc(a, sizeof(*b));
        b->algo = LM_LB_ROUND_ROBIN;
        b->num_targets = 1;
        b->targets = lm_arena_calloc(a, sizeof(*b->targets));
        const lm__resolved_t *r = lm__resolve(cache, a, svc->host);
        if (r->error)
            rt->resolve_error = r->error;
        size_t cap = 0;
        lm__add_peers(a, b, &cap, r, svc->port, 100, lm__host_header(a, svc->host, svc->port, default_port), 0);
        b->targets[0].count = (uint32_t)b->num_peers;
        b->targets[0].dns_error = r->error;
        lm_balancer_build(b, a);
        s->balancers[s->num_balancers++] = b;
        rt->bal = b;
    }
    rt->peers = rt->bal->peers;
    rt->num_peers = rt->bal->num_peers;
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
    s->balancers = lm_arena_calloc(s->arena, (cfg->num_upstreams + cfg->num_services + 1) * sizeof(*s->balancers));
    bool failed = false;
    for (size_t i = 0; i < cfg->num_upstreams; i++)
        s->balancers[s->num_balancers++] = lm__compile_upstream(s, &cache, cfg->upstreams[i], errs, &failed);
    if (failed) {
        lm_map_free(&cache);
        lm_snapshot_unref(s);
        return NULL;
    }
    s->num_services = cfg->num_services;
    s->services = lm_arena_calloc(s->arena, (cfg->num_services + 1) * sizeof(*s->services));
    lm_map_t ups; /* upstreams by name and by id, the first one wins as in lm_config_find_upstream */
    lm_map_init(&ups);
    for (size_t i = 0; i < cfg->num_upstreams; i++) {
        lm_upstream_t *u = cfg->upstreams[i];
        if (u->name && !lm_map_get(&ups, lm_str(u->name)))
            lm_map_put(&ups, lm_str(u->name), u);
        if (u->id && !lm_map_get(&ups, lm_str(u->id)))
            lm_map_put(&ups, lm_str(u->id), u);
    }
    for (size_t i = 0; i < cfg->num_services; i++)
        lm__compile_service(s, &cache, &ups, cfg->services[i], &s->services[i], errs);
    lm_map_free(&ups);
    lm_map_free(&cache);
    char terr[256] = "";
    s->tls = errs->count ? NULL : lm_tls_store_build(cfg, terr, sizeof(terr));
    if (!s->tls) {
        if (!errs->count)
            lm_config_errors_add(errs, "certificates", "certificate", NULL, NULL, "%s", terr);
        lm_snapshot_unref(s);
        return NULL;
    }

    s->stream = lm_stream_router_build(cfg, s->services, s->arena, errs);
    if (!s->stream) {
        lm_snapshot_unref(s);
        return NULL;
    }

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
    lm_tls_cache_sweep(); /* contexts this snapshot did not reuse are dropped from the cache */
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

static void lm__snapshot_free(lm_snapshot_t *s);

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool on;
    lm_snapshot_t *head;
} lm__reaper = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static void *lm__reaper_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lm__reaper.mu);
    for (;;) {
        lm_snapshot_t *s = lm__reaper.head;
        if (s) {
            lm__reaper.head = s->reap_next;
            pthread_mutex_unlock(&lm__reaper.mu);
            lm__snapshot_free(s);
            pthread_mutex_lock(&lm__reaper.mu);
        } else if (lm__reaper.on) {
            pthread_cond_wait(&lm__reaper.cv, &lm__reaper.mu);
        } else {
            break;
        }
    }
    pthread_mutex_unlock(&lm__reaper.mu);
    return NULL;
}

void lm_snapshot_reaper_start(void)
{
    pthread_mutex_lock(&lm__reaper.mu);
    if (!lm__reaper.on && pthread_create(&lm__reaper.thread, NULL, lm__reaper_main, NULL) == 0)
        lm__reaper.on = true;
    pthread_mutex_unlock(&lm__reaper.mu);
}

void lm_snapshot_reaper_stop(void)
{
    pthread_mutex_lock(&lm__reaper.mu);
    bool was_on = lm__reaper.on;
    lm__reaper.on = false;
    pthread_cond_signal(&lm__reaper.cv);
    pthread_mutex_unlock(&lm__reaper.mu);
    if (was_on)
        pthread_join(lm__reaper.thread, NULL); /* it empties the queue before leaving */
}

void lm_snapshot_unref(lm_snapshot_t *s)
{
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    pthread_mutex_lock(&lm__reaper.mu);
    if (lm__reaper.on) {
        s->reap_next = lm__reaper.head; /* order does not matter */
        lm__reaper.head = s;
        pthread_cond_signal(&lm__reaper.cv);
        pthread_mutex_unlock(&lm__reaper.mu);
        return;
    }
    pthread_mutex_unlock(&lm__reaper.mu);
    lm__snapshot_free(s);
}

static void lm__snapshot_free(lm_snapshot_t *s)
{
    if (s->router)
        lm_router_free(s->router);
    if (s->plugins_built)
        lm_plugin_rt_free(&s->plugins);
    for (size_t i = 0; i < s->num_balancers; i++)
        lm_balancer_free(s->balancers[i]);
    for (size_t i = 0; i < s->num_services; i++)
        if (s->services[i].tls)
            SSL_CTX_free(s->services[i].tls);
    lm_tls_store_free(s->tls);
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

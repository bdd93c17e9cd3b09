/* stream_router.c - stream routes by SNI, source and destination (lm_stream.h). */
#include "lm_stream.h"
#include "lm_snapshot.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int family;          /* AF_INET, AF_INET6; 0: any address */
    uint8_t addr[16];
    int bits;            /* prefix length */
    int port;            /* -1: any port */
} net_t;

enum { SNI_EXACT, SNI_LEFT_WILD, SNI_RIGHT_WILD };

typedef struct {
    int kind;
    const char *name;    /* exact: the name; "*.rest": ".rest"; "first.*": "first." */
    size_t len;
} sni_t;

typedef struct {
    sni_t *snis; size_t num_snis;
    net_t *srcs; size_t num_srcs;
    net_t *dsts; size_t num_dsts;
} conds_t;

struct lm_stream_router {
    lm_stream_route_t *routes; /* by priority, then document order */
    size_t num_routes;
};

static int parse_net(const lm_route_endpoint_t *ep, net_t *n)
{
    memset(n, 0, sizeof(*n));
    n->port = ep->port;
    if (!ep->ip)
        return LM_OK;
    char ip[64];
    snprintf(ip, sizeof(ip), "%s", ep->ip);
    char *slash = strchr(ip, '/');
    if (slash)
        *slash = '\0';
    if (inet_pton(AF_INET, ip, n->addr) == 1) {
        n->family = AF_INET;
        n->bits = 32;
    } else if (inet_pton(AF_INET6, ip, n->addr) == 1) {
        n->family = AF_INET6;
        n->bits = 128;
    } else {
        return LM_ERROR;
    }
    if (slash) {
        int bits = atoi(slash + 1);
        if (bits < 0 || bits > n->bits)
            return LM_ERROR;
        n->bits = bits;
    }
    return LM_OK;
}

/* The address of sa as (family, bytes, port); IPv4-mapped IPv6 as IPv4. */
static int sa_addr(const struct sockaddr *sa, uint8_t out[16], int *port)
{
    if (!sa)
        return 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memcpy(out, &in->sin_addr, 4);
        *port = ntohs(in->sin_port);
        return AF_INET;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        *port = ntohs(in6->sin6_port);
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            memcpy(out, in6->sin6_addr.s6_addr + 12, 4);
            return AF_INET;
        }
        memcpy(out, &in6->sin6_addr, 16);
        return AF_INET6;
    }
    return 0;
}

static bool net_match(const net_t *n, size_t count, const struct sockaddr *sa)
{
    uint8_t a[16];
    int port = 0;
    int fam = sa_addr(sa, a, &port);
    for (size_t i = 0; i < count; i++) {
        const net_t *e = &n[i];
        if (e->port >= 0 && e->port != port)
            continue;
        if (e->family) {
            if (e->family != fam)
                continue;
            int full = e->bits / 8, rest = e->bits % 8;
            if (memcmp(e->addr, a, (size_t)full) != 0)
                continue;
            if (rest) {
                uint8_t mask = (uint8_t)(0xff << (8 - rest));
                if ((e->addr[full] & mask) != (a[full] & mask))
                    continue;
            }
        }
        return true;
    }
    return false;
}

static bool sni_match(const conds_t *c, const char *sni)
{
    size_t n = strlen(sni);
    if (n == 0)
        return false;
    for (size_t i = 0; i < c->num_snis; i++) {
        const sni_t *s = &c->snis[i];
        switch (s->kind) {
        case SNI_EXACT:
            if (s->len == n && memcmp(s->name, sni, n) == 0)
                return true;
            break;
        case SNI_LEFT_WILD: /* ".rest": one label or more before it */
            if (n > s->len && memcmp(sni + n - s->len, s->name, s->len) == 0)
                return true;
            break;
        default: /* "first.": one label or more after it */
            if (n > s->len && memcmp(sni, s->name, s->len) == 0)
                return true;
        }
    }
    return false;
}

static unsigned route_protocols(const lm_route_t *r)
{
    unsigned p = 0;
    for (size_t i = 0; i < r->num_protocols; i++) {
        const char *s = r->protocols[i];
        if (strcmp(s, "tcp") == 0)
            p |= LM_STREAM_TCP;
        else if (strcmp(s, "tls") == 0)
            p |= LM_STREAM_TLS;
        else if (strcmp(s, "tls_passthrough") == 0)
            p |= LM_STREAM_PASSTHROUGH;
    }
    return p;
}

static int cmp_routes(const void *x, const void *y)
{
    const lm_stream_route_t *a = x, *b = y;
    if (a->priority != b->priority)
        return a->priority > b->priority ? -1 : 1;
    return a->route->index < b->route->index ? -1 : a->route->index > b->route->index;
}

lm_stream_router_t *lm_stream_router_build(const lm_config_t *cfg, lm_svc_rt_t *services, lm_arena_t *a,
                                           lm_config_errors_t *errs)
{
    lm_stream_router_t *r = lm_arena_calloc(a, sizeof(*r));
    r->routes = lm_arena_calloc(a, (cfg->num_routes + 1) * sizeof(*r->routes));
    for (size_t i = 0; i < cfg->num_routes; i++) {
        const lm_route_t *route = cfg->routes[i];
        unsigned protos = route_protocols(route);
        if (!protos)
            continue; /* HTTP family (and udp: not proxied) */
        lm_stream_route_t *sr = &r->routes[r->num_routes];
        conds_t *c = lm_arena_calloc(a, sizeof(*c));
        sr->route = route;
        sr->svc = route->service ? &services[route->service->index] : NULL;
        sr->label = route->name ? route->name : route->id;
        sr->protocols = protos;
        sr->priority = (route->num_snis > 0) + (route->num_sources > 0) + (route->num_destinations > 0);
        sr->conds = c;
        c->snis = lm_arena_calloc(a, (route->num_snis + 1) * sizeof(*c->snis));
        for (size_t k = 0; k < route->num_snis; k++) {
            char *s = lm_arena_strdup(a, route->snis[k]); /* lower-cased by the builder */
            size_t n = strlen(s);
            if (n > 1 && s[n - 1] == '.')
                s[--n] = '\0'; /* the last dot of an FQDN is not used for routing (Kong) */
            sni_t *e = &c->snis[c->num_snis++];
            if (s[0] == '*' && s[1] == '.')
                *e = (sni_t){ SNI_LEFT_WILD, s + 1, n - 1 };
            else if (n >= 2 && s[n - 1] == '*' && s[n - 2] == '.')
                *e = (sni_t){ SNI_RIGHT_WILD, s, n - 1 };
            else
                *e = (sni_t){ SNI_EXACT, s, n };
        }
        const lm_route_endpoint_t *eps[2] = { route->sources, route->destinations };
        size_t counts[2] = { route->num_sources, route->num_destinations };
        net_t **nets[2] = { &c->srcs, &c->dsts };
        size_t *nnets[2] = { &c->num_srcs, &c->num_dsts };
        for (int side = 0; side < 2; side++) {
            *nets[side] = lm_arena_calloc(a, (counts[side] + 1) * sizeof(net_t));
            for (size_t k = 0; k < counts[side]; k++) {
                if (parse_net(&eps[side][k], &(*nets[side])[k]) != LM_OK) {
                    lm_config_errors_add(errs, lm_arena_sprintf(a, "routes[%zu].%s[%zu].ip", route->index,
                                                                side ? "destinations" : "sources", k),
                                         "route", sr->label, NULL, "invalid ip or cidr range: '%s'",
                                         eps[side][k].ip);
                    return NULL;
                }
            }
            *nnets[side] = counts[side];
        }
        r->num_routes++;
    }
    qsort(r->routes, r->num_routes, sizeof(*r->routes), cmp_routes);
    return r;
}

const lm_stream_route_t *lm_stream_router_match(const lm_stream_router_t *r, const lm_stream_req_t *req)
{
    if (!r)
        return NULL;
    /* a TLS listener serves tls and tls_passthrough routes, a plain one tcp routes */
    unsigned want = req->protocol == LM_STREAM_TCP ? LM_STREAM_TCP : (LM_STREAM_TLS | LM_STREAM_PASSTHROUGH);
    const char *sni = req->sni ? req->sni : "";
    for (size_t i = 0; i < r->num_routes; i++) {
        const lm_stream_route_t *sr = &r->routes[i];
        const conds_t *c = sr->conds;
        if (!(sr->protocols & want))
            continue;
        if (c->num_snis && !sni_match(c, sni))
            continue;
        if (c->num_srcs && !net_match(c->srcs, c->num_srcs, req->src))
            continue;
        if (c->num_dsts && !net_match(c->dsts, c->num_dsts, req->dst))
            continue;
        return sr;
    }
    return NULL;
}

size_t lm_stream_router_count(const lm_stream_router_t *r)
{
    return r ? r->num_routes : 0;
}

/* balancer.c - see lm_balancer.h */
#include "lm_balancer.h"
#include "lm_log.h"
#include "lm_plugin.h"

#include <arpa/inet.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define LM__CH_POINTS_PER_TARGET 160 /* Kong's SERVER_POINTS */
#define LM__CH_MIN_POINTS 1000       /* Kong's MIN_CONTINUUM_SIZE (and default) */
#define LM__EWMA_DECAY_MS 10000.0    /* Kong's DECAY_TIME: 10 s */
#define LM__EXPLORE_ONE_IN 50        /* latency: a random usable pick 2% of the time */
#define LM__RR_MAX_LEN 65536

/* ------------------------------------------------------------------ */
/* xxHash32 (the public algorithm; Kong's ring uses it)                */

#define LM__P1 0x9E3779B1u
#define LM__P2 0x85EBCA77u
#define LM__P3 0xC2B2AE3Du
#define LM__P4 0x27D4EB2Fu
#define LM__P5 0x165667B1u

static inline uint32_t lm__rotl(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

static inline uint32_t lm__rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint32_t lm_xxh32(const void *data, size_t len, uint32_t seed)
{
    const unsigned char *p = data, *end = p + len;
    uint32_t h;
    if (len >= 16) {
        uint32_t v[4] = { seed + LM__P1 + LM__P2, seed + LM__P2, seed, seed - LM__P1 };
        for (; p + 16 <= end; p += 16)
            for (int i = 0; i < 4; i++)
                v[i] = lm__rotl(v[i] + lm__rd32(p + 4 * i) * LM__P2, 13) * LM__P1;
        h = lm__rotl(v[0], 1) + lm__rotl(v[1], 7) + lm__rotl(v[2], 12) + lm__rotl(v[3], 18);
    } else {
        h = seed + LM__P5;
    }
    h += (uint32_t)len;
    for (; p + 4 <= end; p += 4)
        h = lm__rotl(h + lm__rd32(p) * LM__P3, 17) * LM__P4;
    for (; p < end; p++)
        h = lm__rotl(h + *p * LM__P5, 11) * LM__P1;
    h ^= h >> 15;
    h *= LM__P2;
    h ^= h >> 13;
    h *= LM__P3;
    h ^= h >> 16;
    return h;
}

/* ------------------------------------------------------------------ */
/* build                                                               */

static uint64_t lm__gcd(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* nginx's smooth weighted round-robin, run once over a whole cycle. */
static void lm__rr_build(lm_balancer_t *b, lm_arena_t *a)
{
    size_t n = b->num_peers;
    if (n == 0)
        return;
    uint64_t *w = calloc(n, sizeof(*w));
    int64_t *cur = calloc(n, sizeof(*cur));
    if (!w || !cur)
        abort();
    uint64_t g = 0, sum = 0;
    for (size_t i = 0; i < n; i++)
        g = lm__gcd(g, (uint64_t)b->peers[i].weight);
    for (size_t i = 0; i < n; i++) {
        w[i] = (uint64_t)b->peers[i].weight / (g ? g : 1);
        sum += w[i];
    }
    /* bound the cycle (and the n * len build cost): scale weights down */
    uint64_t cap = LM__RR_MAX_LEN;
    if (n * cap > (1u << 24))
        cap = LM_MAX((uint64_t)n, (uint64_t)(1u << 24) / n);
    if (sum > cap) {
        uint64_t s2 = 0;
        for (size_t i = 0; i < n; i++) {
            w[i] = LM_MAX(1, w[i] * cap / sum);
            s2 += w[i];
        }
        sum = s2;
    }
    b->rr_seq = lm_arena_alloc(a, sum * sizeof(uint32_t));
    b->rr_len = sum;
    for (uint64_t k = 0; k < sum; k++) {
        size_t best = 0;
        for (size_t i = 0; i < n; i++) {
            cur[i] += (int64_t)w[i];
            if (cur[i] > cur[best])
                best = i;
        }
        cur[best] -= (int64_t)sum;
        b->rr_seq[k] = (uint32_t)best;
    }
    free(w);
    free(cur);
}

/* Kong's address name on the ring: ip .. ":" .. ":port" .. " " .. i */
static size_t lm__ip_str(const lm_peer_t *p, char *out, size_t cap)
{
    const void *src = p->addr.ss_family == AF_INET ? (const void *)&((const struct sockaddr_in *)&p->addr)->sin_addr
                                                   : (const void *)&((const struct sockaddr_in6 *)&p->addr)->sin6_addr;
    if (!inet_ntop(p->addr.ss_family, src, out, (socklen_t)cap))
        out[0] = '\0';
    return strlen(out);
}

static int lm__peer_port(const lm_peer_t *p)
{
    return p->addr.ss_family == AF_INET ? ntohs(((const struct sockaddr_in *)&p->addr)->sin_port)
                                        : ntohs(((const struct sockaddr_in6 *)&p->addr)->sin6_port);
}

static const lm_balancer_t *lm__sort_b;

static int lm__cmp_target(const void *x, const void *y)
{
    const lm_bal_target_t *a = &lm__sort_b->targets[*(const uint32_t *)x];
    const lm_bal_target_t *b = &lm__sort_b->targets[*(const uint32_t *)y];
    int c = strcmp(a->t->host, b->t->host);
    return c ? c : (a->t->port > b->t->port) - (a->t->port < b->t->port);
}

static int lm__cmp_addr(const void *x, const void *y)
{
    const lm_peer_t *a = &lm__sort_b->peers[*(const uint32_t *)x], *b = &lm__sort_b->peers[*(const uint32_t *)y];
    char sa[80], sb[80], ia[64], ib[64];
    lm__ip_str(a, ia, sizeof(ia));
    lm__ip_str(b, ib, sizeof(ib));
    snprintf(sa, sizeof(sa), "%s:%d", ia, lm__peer_port(a));
    snprintf(sb, sizeof(sb), "%s:%d", ib, lm__peer_port(b));
    return strcmp(sa, sb);
}

static void lm__ring_build(lm_balancer_t *b, lm_arena_t *a)
{
    uint32_t points = b->up && b->up->slots >= LM__CH_MIN_POINTS ? (uint32_t)b->up->slots : LM__CH_MIN_POINTS;
    b->ring_size = points;
    b->ring = lm_arena_alloc(a, points * sizeof(int32_t));
    b->ring_down = lm_arena_alloc(a, points * sizeof(int32_t));
    for (uint32_t i = 0; i < points; i++)
        b->ring[i] = -1;
    /* same order as Kong whatever the document order: targets by name then
     * port, addresses by "ip:port" */
    uint32_t *order = calloc(b->num_targets + 1, sizeof(uint32_t));
    uint32_t *aorder = calloc(b->num_peers + 1, sizeof(uint32_t));
    if (!order || !aorder)
        abort();
    size_t nt = 0, counted = 0;
    for (size_t i = 0; i < b->num_targets; i++) {
        if (b->targets[i].t && b->targets[i].t->weight > 0) {
            order[nt++] = (uint32_t)i;
            counted++;
        }
    }
    static pthread_mutex_t sort_lock = PTHREAD_MUTEX_INITIALIZER; /* qsort has no context argument */
    pthread_mutex_lock(&sort_lock);
    lm__sort_b = b;
    qsort(order, nt, sizeof(uint32_t), lm__cmp_target);
    size_t na = 0;
    for (size_t k = 0; k < nt; k++) {
        const lm_bal_target_t *t = &b->targets[order[k]];
        size_t from = na;
        for (uint32_t j = 0; j < t->count; j++)
            aorder[na++] = t->first + j;
        qsort(aorder + from, na - from, sizeof(uint32_t), lm__cmp_addr);
    }
    lm__sort_b = NULL;
    pthread_mutex_unlock(&sort_lock);

    uint64_t collisions = 0;
    for (size_t k = 0; k < na; k++) {
        const lm_peer_t *p = &b->peers[aorder[k]];
        double prop = (double)p->weight / (double)b->total_weight;
        uint64_t entries = (uint64_t)floor(prop * (double)counted * LM__CH_POINTS_PER_TARGET);
        if (p->weight > 0 && entries == 0)
            entries = 1;
        char ip[64], name[128];
        lm__ip_str(p, ip, sizeof(ip));
        int port = lm__peer_port(p);
        for (uint64_t i = 1; i <= entries; i++) {
            int len = snprintf(name, sizeof(name), "%s::%d %llu", ip, port, (unsigned long long)i);
            uint32_t idx = lm_xxh32(name, (size_t)len, 0) % points;
            if (b->ring[idx] < 0) {
                b->ring[idx] = (int32_t)p->index;
            } else {
                entries++; /* move the problem forward, as Kong does */
                collisions++;
            }
            if (i > points) {
                lm_log_error("upstream %s: consistent-hashing ring too small for its targets; raise slots",
                             b->name ? b->name : "?");
                break;
            }
        }
    }
    free(order);
    free(aorder);
    /* nearest filled point at or below each point, wrapping */
    int32_t last = -1;
    for (uint32_t i = 0; i < points; i++)
        if (b->ring[i] >= 0)
            last = (int32_t)i;
    for (uint32_t i = 0; i < points; i++) {
        if (b->ring[i] >= 0)
            last = (int32_t)i;
        b->ring_down[i] = last;
    }
    (void)collisions;
}

void lm_balancer_build(lm_balancer_t *b, lm_arena_t *a)
{
    b->total_weight = 0;
    for (size_t i = 0; i < b->num_peers; i++) {
        lm_peer_t *p = &b->peers[i];
        p->index = (uint32_t)i;
        b->total_weight += (uint64_t)p->weight;
    }
    if (b->name) {
        double sum = 0;
        size_t with = 0;
        for (size_t i = 0; i < b->num_peers; i++) {
            lm_peer_t *p = &b->peers[i];
            const lm_bal_target_t *t = &b->targets[p->target];
            p->state = lm_health_state_get(b->name, t->t->target, p->key);
            if (atomic_load(&p->state->ewma_at_ms)) {
                uint64_t bits = atomic_load(&p->state->ewma_bits);
                double v;
                memcpy(&v, &bits, sizeof(v));
                sum += v;
                with++;
            }
        }
        /* latency: a new target starts at the others' average (Kong's slow start) */
        if (b->algo == LM_LB_LATENCY && with) {
            double avg = sum / (double)with;
            uint64_t bits;
            memcpy(&bits, &avg, sizeof(bits));
            for (size_t i = 0; i < b->num_peers; i++) {
                lm_target_state_t *s = b->peers[i].state;
                uint64_t zero = 0;
                if (atomic_load(&s->ewma_at_ms) == 0 && atomic_compare_exchange_strong(&s->ewma_at_ms, &zero, 1))
                    atomic_store(&s->ewma_bits, bits);
            }
        }
    }
    if (b->algo == LM_LB_CONSISTENT_HASHING)
        lm__ring_build(b, a);
    else
        lm__rr_build(b, a);
    b->built = true;
}

void lm_balancer_free(lm_balancer_t *b)
{
    for (size_t i = 0; b->built && i < b->num_peers; i++) {
        if (b->peers[i].state)
            lm_health_state_unref(b->peers[i].state);
        b->peers[i].state = NULL;
    }
}

/* ------------------------------------------------------------------ */
/* hash value (Kong's get_value_to_hash)                               */

static bool lm__cookie(lm_ctx_t *ctx, const char *name, lm_str_t *out)
{
    lm_str_t vals[8];
    size_t n = lm_ctx_header_all(ctx, LM_STR("Cookie"), vals, 8);
    size_t nl = strlen(name);
    for (size_t k = 0; k < n && k < 8; k++) {
        const char *s = vals[k].ptr, *e = s + vals[k].len;
        while (s < e) {
            while (s < e && (*s == ' ' || *s == ';'))
                s++;
            const char *eq = memchr(s, '=', (size_t)(e - s));
            const char *semi = memchr(s, ';', (size_t)(e - s));
            if (!semi)
                semi = e;
            if (eq && eq < semi && (size_t)(eq - s) == nl && memcmp(s, name, nl) == 0) {
                *out = (lm_str_t){ eq + 1, (size_t)(semi - eq - 1) };
                return true;
            }
            s = semi;
        }
    }
    return false;
}

static bool lm__value(lm_ctx_t *ctx, const lm_route_match_t *m, const char *on, const char *arg, lm_str_t *out)
{
    if (strcmp(on, "consumer") == 0) {
        const lm_consumer_t *c = lm_ctx_consumer(ctx);
        const char *id = c ? (c->id ? c->id : c->username ? c->username : c->custom_id) : lm_ctx_credential_id(ctx);
        if (!id)
            return false;
        *out = lm_str(id);
        return true;
    }
    if (strcmp(on, "ip") == 0) {
        *out = lm_str(lm_ctx_client_ip(ctx));
        return true;
    }
    if (strcmp(on, "header") == 0 && arg) {
        lm_str_t vals[16];
        size_t n = lm_ctx_header_all(ctx, lm_str(arg), vals, 16);
        if (n == 0)
            return false;
        if (n == 1) {
            *out = vals[0];
            return true;
        }
        /* repeated header: the values joined, as nginx's $http_ variable does */
        size_t len = 0;
        n = LM_MIN(n, 16);
        for (size_t i = 0; i < n; i++)
            len += vals[i].len + 2;
        char *s = lm_arena_alloc(lm_ctx_arena(ctx), len + 1), *p = s;
        for (size_t i = 0; i < n; i++) {
            if (i) {
                *p++ = ',';
                *p++ = ' ';
            }
            memcpy(p, vals[i].ptr, vals[i].len);
            p += vals[i].len;
        }
        *out = (lm_str_t){ s, (size_t)(p - s) };
        return true;
    }
    if (strcmp(on, "cookie") == 0 && arg)
        return lm__cookie(ctx, arg, out);
    if (strcmp(on, "path") == 0) {
        *out = lm_ctx_path(ctx);
        return true;
    }
    if (strcmp(on, "query_arg") == 0 && arg) {
        if (!lm_ctx_query_arg(ctx, lm_str(arg), out))
            return false;
        if (out->len == 0)
            *out = LM_STR("true"); /* a bare argument is Lua's true */
        return true;
    }
    if (strcmp(on, "uri_capture") == 0 && arg && m) {
        lm_str_t name = lm_str(arg);
        for (size_t i = 0; i < m->num_captures; i++) {
            if (m->captures[i].ptr && lm_str_eq(m->capture_names[i], name)) {
                *out = m->captures[i];
                return true;
            }
        }
        char *end;
        long k = strtol(arg, &end, 10);
        if (*end == '\0' && k >= 0 && (size_t)k < m->num_captures && m->captures[k].ptr) {
            *out = m->captures[k];
            return true;
        }
        return false;
    }
    return false;
}

void lm_balancer_prepare(const lm_balancer_t *b, lm_pick_t *p, lm_ctx_t *ctx, const lm_route_match_t *m,
                         uint64_t rnd1, uint64_t rnd2)
{
    const lm_upstream_t *up = b->up;
    lm_str_t v = LM_STR("");
    if (up && b->algo == LM_LB_CONSISTENT_HASHING) {
        const char *on = up->hash_on;
        const char *args_on[] = { up->hash_on_header, up->hash_on_cookie, up->hash_on_query_arg,
                                  up->hash_on_uri_capture };
        const char *args_fb[] = { up->hash_fallback_header, up->hash_on_cookie, up->hash_fallback_query_arg,
                                  up->hash_fallback_uri_capture };
        for (int pass = 0; pass < 2 && on && strcmp(on, "none") != 0; pass++) {
            const char *const *args = pass ? args_fb : args_on;
            const char *arg = strcmp(on, "header") == 0 ? args[0] : strcmp(on, "cookie") == 0 ? args[1]
                            : strcmp(on, "query_arg") == 0 ? args[2] : strcmp(on, "uri_capture") == 0 ? args[3]
                            : NULL;
            if (lm__value(ctx, m, on, arg, &v))
                break;
            if (strcmp(on, "cookie") == 0 && up->hash_on_cookie) {
                /* no cookie yet: make one (a v4 UUID) and send it with the response */
                char *id = lm_arena_sprintf(lm_ctx_arena(ctx), "%08x-%04x-4%03x-%04x-%012llx",
                                            (unsigned)(rnd1 >> 32), (unsigned)(rnd1 >> 16) & 0xffff,
                                            (unsigned)rnd1 & 0xfff, (unsigned)(0x8000 | ((rnd2 >> 48) & 0x3fff)),
                                            (unsigned long long)(rnd2 & 0xffffffffffffULL));
                v = lm_str(id);
                p->set_cookie = lm_arena_sprintf(lm_ctx_arena(ctx), "%s=%s; Path=%s; Same-Site=Lax; HttpOnly",
                                                 up->hash_on_cookie, id,
                                                 up->hash_on_cookie_path ? up->hash_on_cookie_path : "/");
                break;
            }
            v = LM_STR("");
            on = up->hash_fallback;
        }
    }
    p->hash = lm_xxh32(v.ptr, v.len, 0);
}

/* ------------------------------------------------------------------ */
/* picking                                                             */

static bool lm__tried(const lm_pick_t *p, uint32_t idx)
{
    for (unsigned i = 0; i < p->ntried; i++)
        if (p->tried[i] == idx)
            return true;
    return false;
}

static inline bool lm__usable(lm_balancer_t *b, const lm_peer_t *peer, uint64_t now)
{
    return !b->hc.enabled || !peer->state || lm_health_up(peer->state, &b->hc, now);
}

/* pass 0: usable and not tried; pass 1: usable */
static inline bool lm__ok(lm_balancer_t *b, const lm_pick_t *p, uint32_t idx, int pass, uint64_t now)
{
    return (pass || !lm__tried(p, idx)) && lm__usable(b, &b->peers[idx], now);
}

static int64_t lm__pick_rr(lm_balancer_t *b, const lm_pick_t *p, uint64_t now, uint64_t rnd)
{
    uint64_t start = atomic_fetch_add_explicit(&b->rr, 1, memory_order_relaxed);
    size_t steps = LM_MIN(b->rr_len, 2 * b->num_peers + 8);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t k = 0; k < steps; k++) {
            uint32_t idx = b->rr_seq[(start + k) % b->rr_len];
            if (lm__ok(b, p, idx, pass, now))
                return idx;
        }
        size_t n = b->num_peers, off = (size_t)(rnd % n);
        for (size_t k = 0; k < n; k++) {
            uint32_t idx = (uint32_t)((off + k) % n);
            if (lm__ok(b, p, idx, pass, now))
                return idx;
        }
    }
    return -1;
}

static int64_t lm__pick_lc(lm_balancer_t *b, const lm_pick_t *p, uint64_t now, uint64_t rnd)
{
    size_t n = b->num_peers, off = (size_t)(rnd % n);
    for (int pass = 0; pass < 2; pass++) {
        int64_t best = -1, best_c = 0, best_w = 1;
        for (size_t k = 0; k < n; k++) {
            uint32_t idx = (uint32_t)((off + k) % n);
            if (!lm__ok(b, p, idx, pass, now))
                continue;
            const lm_peer_t *peer = &b->peers[idx];
            int64_t c = peer->state ? atomic_load_explicit(&peer->state->in_flight, memory_order_relaxed) : 0;
            if (c < 0)
                c = 0;
            /* (c + 1) / w < (best_c + 1) / best_w */
            if (best < 0 || (c + 1) * best_w < (best_c + 1) * (int64_t)peer->weight) {
                best = idx;
                best_c = c;
                best_w = peer->weight;
            }
        }
        if (best >= 0)
            return best;
    }
    return -1;
}

static int64_t lm__pick_ch(lm_balancer_t *b, const lm_pick_t *p, uint64_t now)
{
    uint32_t points = b->ring_size;
    int32_t pos = b->ring_down[p->hash % points];
    if (pos < 0)
        return -1;
    for (int pass = 0; pass < 2; pass++) {
        int32_t at = pos;
        for (size_t hops = 0; hops < b->num_peers * LM__CH_POINTS_PER_TARGET + points; hops++) {
            uint32_t idx = (uint32_t)b->ring[at];
            if (lm__ok(b, p, idx, pass, now))
                return idx;
            at = b->ring_down[at == 0 ? points - 1 : (uint32_t)at - 1];
            if (at == pos)
                break;
        }
    }
    return -1;
}

static double lm__ewma_now(const lm_target_state_t *s, uint64_t now)
{
    uint64_t bits = atomic_load_explicit(&s->ewma_bits, memory_order_relaxed);
    uint64_t at = atomic_load_explicit(&s->ewma_at_ms, memory_order_relaxed);
    double v;
    memcpy(&v, &bits, sizeof(v));
    double td = now > at ? (double)(now - at) : 0;
    return v * exp(-td / LM__EWMA_DECAY_MS);
}

static int64_t lm__pick_latency(lm_balancer_t *b, const lm_pick_t *p, uint64_t now, uint64_t rnd)
{
    size_t n = b->num_peers;
    for (int pass = 0; pass < 2; pass++) {
        size_t c = 0;
        for (size_t i = 0; i < n; i++)
            c += lm__ok(b, p, (uint32_t)i, pass, now);
        if (c == 0)
            continue;
        size_t r1 = (size_t)(rnd % c), r2 = r1;
        bool explore = ((rnd >> 40) % LM__EXPLORE_ONE_IN) == 0;
        if (c > 1 && !explore)
            r2 = (r1 + 1 + (size_t)((rnd >> 20) % (c - 1))) % c;
        int64_t a = -1, bb = -1;
        for (size_t i = 0, k = 0; i < n; i++) {
            if (!lm__ok(b, p, (uint32_t)i, pass, now))
                continue;
            if (k == r1)
                a = (int64_t)i;
            if (k == r2)
                bb = (int64_t)i;
            k++;
        }
        if (a == bb || !b->peers[a].state || !b->peers[bb].state)
            return a;
        double sa = lm__ewma_now(b->peers[a].state, now) / b->peers[a].weight;
        double sb = lm__ewma_now(b->peers[bb].state, now) / b->peers[bb].weight;
        return sb < sa ? bb : a;
    }
    return -1;
}

const lm_peer_t *lm_balancer_pick(lm_balancer_t *b, lm_pick_t *p, uint64_t now_ms, uint64_t rnd)
{
    lm_balancer_release(b, p, now_ms, false);
    p->peer = NULL;
    if (b->num_peers == 0)
        return NULL;
    if (b->hc.enabled && b->hc.threshold > 0 && !lm_balancer_healthy(b, now_ms, NULL, NULL))
        return NULL;
    int64_t idx;
    switch (b->algo) {
    case LM_LB_LEAST_CONNECTIONS: idx = lm__pick_lc(b, p, now_ms, rnd); break;
    case LM_LB_CONSISTENT_HASHING: idx = lm__pick_ch(b, p, now_ms); break;
    case LM_LB_LATENCY: idx = lm__pick_latency(b, p, now_ms, rnd); break;
    default: idx = lm__pick_rr(b, p, now_ms, rnd); break;
    }
    if (idx < 0)
        return NULL;
    const lm_peer_t *peer = &b->peers[idx];
    p->peer = peer;
    p->t_pick_ms = now_ms;
    p->repeat = lm__tried(p, (uint32_t)idx);
    if (!p->repeat) {
        if (p->ntried < LM_PICK_MAX_TRIED)
            p->tried[p->ntried++] = (uint32_t)idx;
        else
            p->tried[(p->ntried++) % LM_PICK_MAX_TRIED] = (uint32_t)idx;
    }
    if (peer->state) {
        atomic_fetch_add_explicit(&peer->state->in_flight, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&peer->state->requests, 1, memory_order_relaxed);
        p->held = true;
    }
    return peer;
}

void lm_balancer_report(lm_balancer_t *b, const lm_pick_t *p, lm_hr_kind_t kind, int status, uint64_t now_ms)
{
    lm_target_state_t *s = p->peer ? p->peer->state : NULL;
    if (!s)
        return;
    if (kind == LM_HR_TCP)
        atomic_fetch_add_explicit(&s->fail_tcp, 1, memory_order_relaxed);
    else if (kind == LM_HR_TIMEOUT)
        atomic_fetch_add_explicit(&s->fail_timeout, 1, memory_order_relaxed);
    else if (kind == LM_HR_STATUS && status >= 500)
        atomic_fetch_add_explicit(&s->resp_5xx, 1, memory_order_relaxed);
    if (b->hc.enabled)
        lm_health_report(s, &b->hc, &b->hc.pas, kind, status, now_ms);
}

void lm_balancer_release(lm_balancer_t *b, lm_pick_t *p, uint64_t now_ms, bool latency)
{
    if (!p->held || !p->peer)
        return;
    lm_target_state_t *s = p->peer->state;
    p->held = false;
    atomic_fetch_sub_explicit(&s->in_flight, 1, memory_order_relaxed);
    if (!latency || b->algo != LM_LB_LATENCY)
        return;
    /* Kong's decay: ewma = ewma * w + rtt * (1 - w), w = exp(-dt / 10 s); racy
     * between workers (a lost update is harmless), never locked */
    double rtt = (double)(now_ms - p->t_pick_ms);
    uint64_t at = atomic_load_explicit(&s->ewma_at_ms, memory_order_relaxed);
    uint64_t bits = atomic_load_explicit(&s->ewma_bits, memory_order_relaxed);
    double v;
    memcpy(&v, &bits, sizeof(v));
    double td = now_ms > at ? (double)(now_ms - at) : 0;
    double w = at ? exp(-td / LM__EWMA_DECAY_MS) : 0;
    v = v * w + rtt * (1.0 - w);
    memcpy(&bits, &v, sizeof(bits));
    atomic_store_explicit(&s->ewma_bits, bits, memory_order_relaxed);
    atomic_store_explicit(&s->ewma_at_ms, now_ms ? now_ms : 1, memory_order_relaxed);
}

bool lm_balancer_healthy(lm_balancer_t *b, uint64_t now_ms, uint64_t *total, uint64_t *unavailable)
{
    uint64_t tot = 0, un = 0;
    for (size_t i = 0; i < b->num_peers; i++) {
        tot += (uint64_t)b->peers[i].weight;
        if (!lm__usable(b, &b->peers[i], now_ms))
            un += (uint64_t)b->peers[i].weight;
    }
    if (total)
        *total = tot;
    if (unavailable)
        *unavailable = un;
    if (tot == 0)
        return false;
    return (double)(tot - un) / (double)tot * 100.0 > b->hc.threshold;
}

bool lm_method_idempotent(lm_str_t m)
{
    return !(lm_str_eq(m, LM_STR("POST")) || lm_str_eq(m, LM_STR("LOCK")) || lm_str_eq(m, LM_STR("PATCH")));
}

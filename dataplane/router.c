/*
 * router.c - route matching (see lm_router.h).
 *
 * Model (Kong "traditional_compatible"): every route path becomes an entry
 * with a 64-bit priority key computed once at build time; the winner is the
 * matching entry with the highest key, ties going to document order.
 *
 *   key bits  63..61  match weight: how many of methods, hosts, paths,
 *                     headers, snis the route sets
 *             60      every host of the route is plain (no '*')
 *             59..52  number of header names (capped at 255)
 *             51      the path is a regex
 *             50..19  regex_priority (regex paths only; biased so that
 *                     negative values sort below zero)
 *             18..0   prefix length (prefix paths only)
 *
 * Kong splits a route into one sub-route per prefix length plus one for all
 * its regexes, so the key is per path, not per route; we do the same with
 * one entry per path.
 *
 * Layout: entries are filed into host buckets (bucket 0 = routes without
 * hosts; one bucket per exact host, per "*.suffix" and per "prefix.*").
 * Buckets are found through one hash table keyed by (kind, name). Inside a
 * bucket, prefix entries are grouped by prefix string in one global hash
 * table keyed by (bucket, prefix); the bucket keeps the sorted list of its
 * distinct prefix lengths, so a lookup hashes the request path once
 * (FNV-1a is incremental) and probes only at those lengths. Regex entries
 * of a bucket are kept sorted by key and are only run while they can still
 * beat the best match found so far (and only when the path starts with the
 * regex's literal prefix).
 *
 * Kong facts this follows (kong/router/transform.lua, compat.lua, atc.lua):
 * regexes are anchored at the start; header values compare lower-cased and
 * "~*" values are (unanchored) regexes on the lower-cased value - we use
 * PCRE2_CASELESS instead of lower-casing the pattern; SNIs only count for
 * TLS requests; "host:port" also requires the port (from Host, else the
 * local port); protocols are not a routing condition for HTTP routes (the
 * proxy answers 426 / redirects / 415 afterwards, see protocol_mismatch).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "lm_router.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdio.h>
#include <stdlib.h>

/* The config library may not be linked (unit tests): report through it only
 * when it is there. */
#pragma weak lm_config_errors_add

/* ---- types ----------------------------------------------------------- */

enum { HOST_EXACT = 0, HOST_SUFFIX = 1, HOST_PREFIX = 2 };

enum {
    PROTO_HTTP = 1 << 0,
    PROTO_HTTPS = 1 << 1,
    PROTO_GRPC = 1 << 2,
    PROTO_GRPCS = 1 << 3,
    PROTO_WS = 1 << 4,
    PROTO_WSS = 1 << 5,
};
#define PROTO_HTTP_FAMILY 0x3f

typedef struct {
    lm_str_t name;
    lm_str_t *plain;    /* compared case-insensitively */
    size_t num_plain;
    pcre2_code **rx;    /* "~*" values: unanchored, caseless */
    size_t num_rx;
} hdr_cond_t;

typedef struct {
    lm_str_t name;      /* without the '*' (and without a trailing '.') */
    uint8_t kind;       /* HOST_* */
} sni_cond_t;

typedef struct {
    lm_str_t *methods;
    size_t num_methods;
    hdr_cond_t *headers;
    size_t num_headers;
    sni_cond_t *snis;
    size_t num_snis;
} rinfo_t;

typedef struct {
    pcre2_code *code;
    bool jit;
    uint32_t lit_len;   /* the pattern starts with this many literal bytes */
    uint32_t ngroups;   /* capture count + 1 */
    lm_str_t *names;    /* group number -> name ("" when unnamed) */
} rxinfo_t;

/* One route path. Laid out so that the prefix hot path touches one object. */
typedef struct {
    uint64_t key;       /* priority, see top of file */
    uint64_t seq;       /* route position << 24 | path index: lower wins ties */
    const lm_route_t *route;
    const rinfo_t *ri;
    const rxinfo_t *rx; /* regex paths only */
    uint32_t path_len;
    uint16_t path_index; /* NO_PATH: the route has no paths */
    uint8_t protocols;  /* PROTO_* */
    uint8_t has_conds;  /* methods, headers or snis to check */
    char path[];        /* prefix bytes or regex source, NUL-terminated */
} entry_t;

#define NO_PATH 0xffff

typedef struct {
    const entry_t *e;
    int port;           /* required port from "host:port", 0 = any */
} item_t;

typedef struct {
    const item_t *regex;    /* sorted by key desc, seq asc */
    uint32_t num_regex;
    uint32_t num_lens;
    const uint32_t *lens;   /* distinct prefix lengths, ascending */
    uint32_t name_len;
    char name[];            /* the host (pattern) of the bucket */
} bucket_t;

#define INLINE_LENS 4

/* Host table slot; also describes bucket 0 (no host). The prefix lengths
 * are copied here when few, so probing does not wait for the bucket. */
typedef struct {
    uint64_t hash;
    const bucket_t *b;
    uint32_t id;            /* bucket number; 0 = empty slot */
    uint16_t len;
    uint8_t kind;
    uint8_t nlens;          /* > INLINE_LENS: use b->lens */
    uint16_t lens[INLINE_LENS];
} hslot_t;

typedef struct {
    uint64_t hash;
    const void *p;          /* num == 1: the entry; else an item_t array */
    uint32_t bucket;
    uint32_t num;           /* 0 = empty slot */
    int32_t port;           /* num == 1: item port */
    uint32_t len;
} pslot_t;

struct lm_router {
    hslot_t nohost;         /* bucket 0 */
    hslot_t *hosts;
    size_t host_mask;
    pslot_t *prefixes;
    size_t prefix_mask;
    size_t num_buckets;
    size_t num_suffix_hosts, num_prefix_hosts;
    pcre2_code **codes;     /* everything to free */
    size_t num_codes;
    uint32_t max_pairs;     /* ovector pairs the match data needs */
};

/* ---- hashing --------------------------------------------------------- */

#define FNV_OFFSET 14695981039346656037ULL
#define FNV_PRIME 1099511628211ULL

static inline uint64_t fnv_step(uint64_t h, unsigned char c)
{
    return (h ^ c) * FNV_PRIME;
}

static uint64_t fnv(uint64_t h, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        h = fnv_step(h, (unsigned char)s[i]);
    return h;
}

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static inline uint64_t bucket_seed(uint32_t bucket)
{
    return FNV_OFFSET ^ mix64((uint64_t)bucket + 1);
}

static inline uint64_t host_hash(uint32_t kind, const char *s, size_t len)
{
    return fnv(FNV_OFFSET ^ (uint64_t)(kind + 1) * 0x9E3779B97F4A7C15ULL, s, len);
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n)
        c <<= 1;
    return c;
}

/* ---- per-thread PCRE2 match data ------------------------------------- */

static __thread pcre2_match_data *tls_md;
static __thread uint32_t tls_md_pairs;

static pcre2_match_data *md_get(uint32_t pairs)
{
    if (LM_UNLIKELY(tls_md_pairs < pairs)) {
        if (tls_md)
            pcre2_match_data_free(tls_md);
        tls_md = pcre2_match_data_create(pairs, NULL);
        tls_md_pairs = tls_md ? pairs : 0;
    }
    return tls_md;
}

void lm_router_thread_cleanup(void)
{
    if (tls_md)
        pcre2_match_data_free(tls_md);
    tls_md = NULL;
    tls_md_pairs = 0;
}

static int rx_exec(pcre2_code *code, bool jit, lm_str_t subject, pcre2_match_data *md)
{
    const char *p = subject.ptr ? subject.ptr : "";
    if (jit)
        return pcre2_jit_match(code, (PCRE2_SPTR)p, subject.len, 0, 0, md, NULL);
    return pcre2_match(code, (PCRE2_SPTR)p, subject.len, 0, 0, md, NULL);
}

/* ---- build ----------------------------------------------------------- */

typedef struct {
    lm_router_t *r;
    lm_arena_t *arena;
    lm_config_errors_t *errs;
    bool failed;
    /* temporaries (malloc) */
    pcre2_code **codes;
    size_t num_codes, cap_codes;
    struct titem { uint32_t bucket; item_t it; } *items;
    size_t num_items, cap_items;
    lm_str_t *names;       /* host pattern by bucket number */
    uint32_t num_buckets, cap_buckets;
} build_t;

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q == NULL) {
        fprintf(stderr, "limen: out of memory allocating %zu bytes\n", n);
        abort();
    }
    return q;
}

static void build_error(build_t *b, const lm_route_t *route, size_t route_pos, const char *field,
                        const char *msg, const char *detail)
{
    char path[96];
    snprintf(path, sizeof(path), "routes[%zu].%s", route_pos, field);
    const char *ename = route->name ? route->name : route->id;
    if (b->errs && lm_config_errors_add)
        lm_config_errors_add(b->errs, path, "route", ename, field, "%s: %s", msg, detail);
    else
        fprintf(stderr, "limen: router: %s: %s: %s\n", path, msg, detail);
    b->failed = true;
}

static pcre2_code *compile_rx(build_t *b, const char *src, size_t len, uint32_t opts, bool *jit,
                              const lm_route_t *route, size_t route_pos, const char *field)
{
    int errcode;
    PCRE2_SIZE erroff;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)src, len, opts, &errcode, &erroff, NULL);
    if (code == NULL) {
        PCRE2_UCHAR buf[160];
        pcre2_get_error_message(errcode, buf, sizeof(buf));
        char detail[256];
        snprintf(detail, sizeof(detail), "%s at offset %zu", (const char *)buf, (size_t)erroff);
        build_error(b, route, route_pos, field, "invalid regex", detail);
        return NULL;
    }
    if (b->num_codes == b->cap_codes) {
        b->cap_codes = b->cap_codes ? b->cap_codes * 2 : 16;
        b->codes = xrealloc(b->codes, b->cap_codes * sizeof(*b->codes));
    }
    b->codes[b->num_codes++] = code;
    bool j = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    if (jit)
        *jit = j;
    uint32_t groups = 0;
    pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &groups);
    if (groups + 1 > b->r->max_pairs)
        b->r->max_pairs = groups + 1;
    return code;
}

static unsigned proto_bit(const char *p, size_t len)
{
    lm_str_t s = { p, len };
    if (lm_str_ieq_cstr(s, "http")) return PROTO_HTTP;
    if (lm_str_ieq_cstr(s, "https")) return PROTO_HTTPS;
    if (lm_str_ieq_cstr(s, "grpc")) return PROTO_GRPC;
    if (lm_str_ieq_cstr(s, "grpcs")) return PROTO_GRPCS;
    if (lm_str_ieq_cstr(s, "ws")) return PROTO_WS;
    if (lm_str_ieq_cstr(s, "wss")) return PROTO_WSS;
    return 0;
}

/* Lower-cased copy of a route host split into pattern kind, name and port. */
static void parse_route_host(lm_arena_t *a, const char *h, lm_str_t *name, uint8_t *kind, int *port)
{
    size_t len = strlen(h);
    *port = 0;
    const char *colon = memrchr(h, ':', len);
    /* "name:port" or "[v6]:port"; a bare IPv6 literal has no port */
    bool sep = colon && (h[0] == '[' ? colon > h && colon[-1] == ']'
                                     : memchr(h, ':', (size_t)(colon - h)) == NULL);
    if (sep && colon + 1 < h + len && h + len - colon <= 6) {
        int p = 0;
        const char *d = colon + 1;
        while (d < h + len && *d >= '0' && *d <= '9')
            p = p * 10 + (*d++ - '0');
        if (d == h + len && p <= 65535) {
            *port = p;
            len = (size_t)(colon - h);
        }
    }
    char *s = lm_arena_strndup(a, h, len);
    for (size_t i = 0; i < len; i++)
        s[i] = lm_tolower(s[i]);
    *kind = HOST_EXACT;
    if (len > 0 && s[0] == '*') {
        *kind = HOST_SUFFIX; /* "*.example.com" -> ".example.com" */
        s++;
        len--;
    } else if (len > 0 && s[len - 1] == '*') {
        *kind = HOST_PREFIX; /* "example.*" -> "example." */
        len--;
    }
    *name = (lm_str_t){ s, len };
}

static uint32_t bucket_for(build_t *b, uint8_t kind, lm_str_t name)
{
    lm_router_t *r = b->r;
    uint64_t h = host_hash(kind, name.ptr, name.len);
    size_t i = mix64(h) & r->host_mask;
    for (;; i = (i + 1) & r->host_mask) {
        hslot_t *s = &r->hosts[i];
        if (s->id == 0)
            break;
        if (s->hash == h && s->kind == kind && s->len == name.len &&
            memcmp(b->names[s->id].ptr, name.ptr, name.len) == 0)
            return s->id;
    }
    if (b->num_buckets == b->cap_buckets) {
        b->cap_buckets *= 2;
        b->names = xrealloc(b->names, b->cap_buckets * sizeof(*b->names));
    }
    hslot_t *s = &r->hosts[i];
    s->hash = h;
    s->len = (uint16_t)name.len;
    s->kind = kind;
    s->id = b->num_buckets++;
    b->names[s->id] = name;
    if (kind == HOST_SUFFIX)
        r->num_suffix_hosts++;
    else if (kind == HOST_PREFIX)
        r->num_prefix_hosts++;
    return s->id;
}

static void add_item(build_t *b, uint32_t bucket, const entry_t *e, int port)
{
    if (b->num_items == b->cap_items) {
        b->cap_items = b->cap_items ? b->cap_items * 2 : 256;
        b->items = xrealloc(b->items, b->cap_items * sizeof(*b->items));
    }
    b->items[b->num_items++] = (struct titem){ bucket, { e, port } };
}

static void build_headers(build_t *b, rinfo_t *ri, const lm_route_t *route, size_t pos)
{
    ri->num_headers = route->num_headers;
    ri->headers = lm_arena_calloc(b->arena, route->num_headers * sizeof(hdr_cond_t) + 1);
    for (size_t i = 0; i < route->num_headers; i++) {
        const lm_route_header_t *src = &route->headers[i];
        hdr_cond_t *hc = &ri->headers[i];
        hc->name = lm_str(src->name);
        hc->plain = lm_arena_alloc(b->arena, src->num_values * sizeof(lm_str_t) + 1);
        hc->rx = lm_arena_alloc(b->arena, src->num_values * sizeof(pcre2_code *) + 1);
        for (size_t j = 0; j < src->num_values; j++) {
            const char *v = src->values[j];
            if (v[0] == '~' && v[1] == '*') {
                char field[64];
                snprintf(field, sizeof(field), "headers[%zu].values[%zu]", i, j);
                pcre2_code *c = compile_rx(b, v + 2, strlen(v + 2), PCRE2_CASELESS, NULL, route, pos, field);
                if (c)
                    hc->rx[hc->num_rx++] = c;
            } else {
                hc->plain[hc->num_plain++] = lm_str(v);
            }
        }
    }
}

static void build_snis(build_t *b, rinfo_t *ri, const lm_route_t *route)
{
    ri->num_snis = route->num_snis;
    ri->snis = lm_arena_alloc(b->arena, route->num_snis * sizeof(sni_cond_t) + 1);
    for (size_t i = 0; i < route->num_snis; i++) {
        const char *s = route->snis[i];
        size_t len = strlen(s);
        sni_cond_t *sc = &ri->snis[i];
        sc->kind = HOST_EXACT;
        if (len > 0 && s[0] == '*') {
            sc->kind = HOST_SUFFIX;
            s++;
            len--;
        } else if (len > 0 && s[len - 1] == '*') {
            sc->kind = HOST_PREFIX;
            len--;
        }
        /* the last dot of an FQDN is not used for routing */
        if (sc->kind != HOST_PREFIX && len > 1 && s[len - 1] == '.')
            len--;
        sc->name = (lm_str_t){ s, len };
    }
}

/* Names of capture groups by number. */
/*
 * Length of the literal text every match of an anchored regex starts with:
 * bytes up to the first metacharacter, minus one if a quantifier follows;
 * zero when the pattern has a top-level alternative.
 */
static uint32_t literal_prefix(const char *p, size_t len)
{
    int depth = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = p[i];
        if (ch == '\\') {
            i++;
        } else if (ch == '[') {
            for (i++; i < len && p[i] != ']'; i++)
                if (p[i] == '\\')
                    i++;
        } else if (ch == '(') {
            depth++;
        } else if (ch == ')') {
            depth--;
        } else if (ch == '|' && depth <= 0) {
            return 0;
        }
    }
    size_t n = strcspn(p, "\\^$.|?*+()[]{}");
    if (n > 0 && n < len && strchr("?*{", p[n]))
        n--;
    return (uint32_t)n;
}

static void build_names(build_t *b, rxinfo_t *e)
{
    uint32_t groups = 0, count = 0, size = 0;
    PCRE2_SPTR table = NULL;
    pcre2_pattern_info(e->code, PCRE2_INFO_CAPTURECOUNT, &groups);
    e->ngroups = groups + 1;
    e->names = lm_arena_calloc(b->arena, e->ngroups * sizeof(lm_str_t));
    pcre2_pattern_info(e->code, PCRE2_INFO_NAMECOUNT, &count);
    pcre2_pattern_info(e->code, PCRE2_INFO_NAMEENTRYSIZE, &size);
    pcre2_pattern_info(e->code, PCRE2_INFO_NAMETABLE, &table);
    for (uint32_t i = 0; i < count; i++) {
        PCRE2_SPTR ent = table + (size_t)i * size;
        uint32_t n = ((uint32_t)ent[0] << 8) | ent[1];
        if (n < e->ngroups)
            e->names[n] = lm_str((const char *)ent + 2);
    }
}

static void build_route(build_t *b, const lm_route_t *route, size_t pos)
{
    lm_arena_t *a = b->arena;
    unsigned protos = 0;
    for (size_t i = 0; i < route->num_protocols; i++)
        protos |= proto_bit(route->protocols[i], strlen(route->protocols[i]));
    if (route->num_protocols == 0)
        protos = PROTO_HTTP | PROTO_HTTPS;
    if ((protos & PROTO_HTTP_FAMILY) == 0)
        return; /* a stream route: not for the HTTP router */

    rinfo_t *ri = lm_arena_calloc(a, sizeof(*ri));
    ri->num_methods = route->num_methods;
    ri->methods = lm_arena_alloc(a, route->num_methods * sizeof(lm_str_t) + 1);
    for (size_t i = 0; i < route->num_methods; i++)
        ri->methods[i] = lm_str(route->methods[i]);
    build_headers(b, ri, route, pos);
    build_snis(b, ri, route);

    bool plain_hosts = route->num_hosts > 0;
    for (size_t i = 0; i < route->num_hosts; i++)
        if (strchr(route->hosts[i], '*'))
            plain_hosts = false;
    uint64_t weight = (route->num_methods > 0) + (route->num_hosts > 0) + (route->num_paths > 0) +
                      (route->num_headers > 0) + (route->num_snis > 0);
    uint64_t nhdr = LM_MIN(route->num_headers, (size_t)255);
    uint64_t base = weight << 61 | (uint64_t)plain_hosts << 60 | nhdr << 52;

    size_t npaths = route->num_paths ? route->num_paths : 1;
    entry_t **ents = lm_arena_alloc(a, npaths * sizeof(entry_t *));
    for (size_t i = 0; i < npaths; i++) {
        const char *p = "";
        bool is_rx = false;
        if (route->num_paths) {
            p = route->paths[i];
            is_rx = route->path_is_regex && route->path_is_regex[i]; /* no "~" in the model */
        }
        size_t len = strlen(p);
        entry_t *e = ents[i] = lm_arena_calloc(a, sizeof(entry_t) + len + 1);
        memcpy(e->path, p, len);
        e->path_len = (uint32_t)len;
        e->path_index = route->num_paths ? (uint16_t)i : NO_PATH;
        e->route = route;
        e->ri = ri;
        e->protocols = (uint8_t)protos;
        e->has_conds = route->num_methods || route->num_headers || route->num_snis;
        e->seq = (uint64_t)pos << 24 | (i & 0xffffff);
        if (is_rx) {
            char field[32];
            snprintf(field, sizeof(field), "paths[%zu]", i);
            rxinfo_t *rx = lm_arena_calloc(a, sizeof(*rx));
            rx->code = compile_rx(b, p, len, PCRE2_ANCHORED, &rx->jit, route, pos, field);
            if (rx->code == NULL)
                continue;
            build_names(b, rx);
            rx->lit_len = literal_prefix(p, len);
            e->rx = rx;
            uint32_t rp = (uint32_t)route->regex_priority ^ 0x80000000u;
            e->key = base | (uint64_t)1 << 51 | (uint64_t)rp << 19;
        } else {
            e->key = base | (uint64_t)0x80000000u << 19 | LM_MIN(len, (size_t)0x7ffff);
        }
    }
    if (b->failed)
        return;

    for (size_t h = 0; h < (route->num_hosts ? route->num_hosts : 1); h++) {
        uint32_t bucket = 0;
        int port = 0;
        if (route->num_hosts) {
            lm_str_t name;
            uint8_t kind;
            parse_route_host(a, route->hosts[h], &name, &kind, &port);
            bucket = bucket_for(b, kind, name);
        }
        for (size_t i = 0; i < npaths; i++)
            add_item(b, bucket, ents[i], port);
    }
}

static inline bool entry_beats(const entry_t *a, const entry_t *b)
{
    return b == NULL || a->key > b->key || (a->key == b->key && a->seq < b->seq);
}

static int titem_cmp(const void *pa, const void *pb)
{
    const struct titem *a = pa, *b = pb;
    if (a->bucket != b->bucket)
        return a->bucket < b->bucket ? -1 : 1;
    const entry_t *x = a->it.e, *y = b->it.e;
    bool rx = x->rx != NULL, ry = y->rx != NULL;
    if (rx != ry)
        return rx ? 1 : -1;
    if (!rx) {
        if (x->path_len != y->path_len)
            return x->path_len < y->path_len ? -1 : 1;
        int c = memcmp(x->path, y->path, x->path_len);
        if (c)
            return c;
    }
    if (x == y)
        return a->it.port - b->it.port;
    return entry_beats(x, y) ? -1 : 1;
}

static void pslot_insert(lm_router_t *r, uint32_t bucket, const item_t *items, size_t n)
{
    const entry_t *e = items[0].e;
    uint64_t h = fnv(bucket_seed(bucket), e->path, e->path_len);
    size_t i = mix64(h) & r->prefix_mask;
    while (r->prefixes[i].num)
        i = (i + 1) & r->prefix_mask;
    pslot_t *s = &r->prefixes[i];
    *s = (pslot_t){ .hash = h, .p = items, .bucket = bucket, .num = (uint32_t)n, .len = e->path_len };
    if (n == 1) {
        s->p = e;
        s->port = items[0].port;
    }
}

static void hslot_set(hslot_t *s, const bucket_t *bk)
{
    s->b = bk;
    s->nlens = 0xff;
    if (bk->num_lens <= INLINE_LENS && (bk->num_lens == 0 || bk->lens[bk->num_lens - 1] <= 0xffff)) {
        s->nlens = (uint8_t)bk->num_lens;
        for (uint32_t i = 0; i < bk->num_lens; i++)
            s->lens[i] = (uint16_t)bk->lens[i];
    }
}

/* Sorts the collected items and lays out buckets, prefix table and regex lists. */
static void build_tables(build_t *b)
{
    lm_router_t *r = b->r;
    lm_arena_t *a = b->arena;
    if (b->num_items)
        qsort(b->items, b->num_items, sizeof(*b->items), titem_cmp);

    r->num_buckets = b->num_buckets;
    const bucket_t **buckets = calloc(b->num_buckets, sizeof(*buckets));
    item_t *all = lm_arena_alloc(a, b->num_items * sizeof(item_t) + 1);
    for (size_t i = 0; i < b->num_items; i++)
        all[i] = b->items[i].it;

    r->prefix_mask = pow2_at_least(b->num_items * 2) - 1;
    r->prefixes = lm_arena_calloc(a, (r->prefix_mask + 1) * sizeof(pslot_t));

    size_t i = 0;
    for (uint32_t bk = 0; bk < b->num_buckets; bk++) {
        lm_str_t name = b->names[bk];
        bucket_t *bucket = lm_arena_calloc(a, sizeof(bucket_t) + name.len + 1);
        memcpy(bucket->name, name.ptr, name.len);
        bucket->name_len = (uint32_t)name.len;
        buckets[bk] = bucket;
        size_t end = i;
        while (end < b->num_items && b->items[end].bucket == bk)
            end++;
        uint32_t *lens = lm_arena_alloc(a, (end - i) * sizeof(uint32_t) + 1);
        uint32_t nlens = 0;
        while (i < end && all[i].e->rx == NULL) {
            const entry_t *e = all[i].e;
            size_t g = i + 1;
            while (g < end && all[g].e->rx == NULL && all[g].e->path_len == e->path_len &&
                   memcmp(all[g].e->path, e->path, e->path_len) == 0)
                g++;
            pslot_insert(r, bk, &all[i], g - i);
            if (nlens == 0 || lens[nlens - 1] != e->path_len)
                lens[nlens++] = e->path_len;
            i = g;
        }
        bucket->lens = lens;
        bucket->num_lens = nlens;
        bucket->regex = &all[i];
        bucket->num_regex = (uint32_t)(end - i);
        i = end;
    }
    hslot_set(&r->nohost, buckets[0]);
    for (size_t k = 0; k <= r->host_mask; k++)
        if (r->hosts[k].id)
            hslot_set(&r->hosts[k], buckets[r->hosts[k].id]);
    free(buckets);
}

lm_router_t *lm_router_build(const lm_config_t *cfg, lm_arena_t *arena, lm_config_errors_t *errs)
{
    lm_router_t *r = lm_arena_calloc(arena, sizeof(*r));
    build_t b = { .r = r, .arena = arena, .errs = errs, .num_buckets = 1, .cap_buckets = 64 };
    b.names = xrealloc(NULL, b.cap_buckets * sizeof(*b.names));
    b.names[0] = (lm_str_t){ "", 0 };
    r->max_pairs = LM_ROUTER_MAX_CAPTURES;

    size_t total_hosts = 0;
    for (size_t i = 0; i < cfg->num_routes; i++)
        total_hosts += cfg->routes[i]->num_hosts;
    r->host_mask = pow2_at_least(total_hosts * 2) - 1;
    r->hosts = lm_arena_calloc(arena, (r->host_mask + 1) * sizeof(hslot_t));

    for (size_t i = 0; i < cfg->num_routes; i++)
        build_route(&b, cfg->routes[i], i);

    /* hand the compiled regexes to the router, failed or not */
    r->num_codes = b.num_codes;
    r->codes = lm_arena_alloc(arena, b.num_codes * sizeof(pcre2_code *) + 1);
    if (b.num_codes)
        memcpy(r->codes, b.codes, b.num_codes * sizeof(pcre2_code *));
    free(b.codes);

    if (!b.failed)
        build_tables(&b);
    free(b.items);
    free(b.names);
    if (b.failed) {
        lm_router_free(r);
        return NULL;
    }
    return r;
}

void lm_router_free(lm_router_t *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->num_codes; i++)
        pcre2_code_free(r->codes[i]);
    r->num_codes = 0;
}

/* ---- match ----------------------------------------------------------- */

typedef struct {
    const lm_router_t *r;
    const lm_route_req_t *req;
    lm_route_match_t *m;
    const entry_t *best;
    int port;           /* the request's port for "host:port" routes */
    bool tls;
    pcre2_match_data *md;
} mctx_t;

static bool wild_eq(uint8_t kind, lm_str_t pat, lm_str_t s)
{
    switch (kind) {
    case HOST_SUFFIX:
        return s.len > pat.len && strncasecmp(s.ptr + s.len - pat.len, pat.ptr, pat.len) == 0;
    case HOST_PREFIX:
        return s.len > pat.len && strncasecmp(s.ptr, pat.ptr, pat.len) == 0;
    default:
        return lm_str_ieq(s, pat);
    }
}

static bool methods_ok(const rinfo_t *ri, lm_str_t method)
{
    if (ri->num_methods == 0)
        return true;
    for (size_t i = 0; i < ri->num_methods; i++)
        if (lm_str_eq(ri->methods[i], method))
            return true;
    return false;
}

static bool snis_ok(const rinfo_t *ri, const mctx_t *c)
{
    /* Kong: SNIs are only considered for TLS requests */
    if (ri->num_snis == 0 || !c->tls)
        return true;
    lm_str_t sni = c->req->sni;
    if (sni.len > 1 && sni.ptr[sni.len - 1] == '.')
        sni.len--;
    for (size_t i = 0; i < ri->num_snis; i++)
        if (wild_eq(ri->snis[i].kind, ri->snis[i].name, sni))
            return true;
    return false;
}

static bool header_value_ok(const hdr_cond_t *hc, lm_str_t v, mctx_t *c)
{
    for (size_t i = 0; i < hc->num_plain; i++)
        if (lm_str_ieq(hc->plain[i], v))
            return true;
    for (size_t i = 0; i < hc->num_rx; i++) {
        if (c->md == NULL)
            c->md = md_get(c->r->max_pairs);
        if (c->md && rx_exec(hc->rx[i], false, v, c->md) >= 0)
            return true;
    }
    return false;
}

static bool headers_ok(const rinfo_t *ri, mctx_t *c)
{
    for (size_t i = 0; i < ri->num_headers; i++) {
        const hdr_cond_t *hc = &ri->headers[i];
        bool ok = false;
        for (size_t j = 0; j < c->req->num_headers && !ok; j++) {
            const lm_http_header_t *h = &c->req->headers[j];
            ok = lm_str_ieq(h->name, hc->name) && header_value_ok(hc, h->value, c);
        }
        if (!ok)
            return false;
    }
    return true;
}

/* Everything but host and path. */
static inline bool conds_ok(const entry_t *e, int port, mctx_t *c)
{
    if (port != 0 && port != c->port)
        return false;
    if (!e->has_conds)
        return true;
    const rinfo_t *ri = e->ri;
    return methods_ok(ri, c->req->method) && snis_ok(ri, c) && headers_ok(ri, c);
}

static void set_best(mctx_t *c, const entry_t *e, size_t prefix_len)
{
    c->best = e;
    c->m->route = e->route;
    c->m->path_index = e->path_index == NO_PATH ? SIZE_MAX : e->path_index;
    c->m->prefix_len = prefix_len;
    c->m->num_captures = 0;
}

static void probe_prefix(mctx_t *c, uint32_t bucket, uint64_t h, uint32_t len)
{
    const lm_router_t *r = c->r;
    const char *path = c->req->path.ptr;
    const pslot_t *s;
    for (size_t i = mix64(h) & r->prefix_mask;; i = (i + 1) & r->prefix_mask) {
        s = &r->prefixes[i];
        if (s->num == 0)
            return;
        if (s->hash == h && s->bucket == bucket && s->len == len) {
            const entry_t *e = s->num == 1 ? s->p : ((const item_t *)s->p)[0].e;
            if (memcmp(e->path, path, len) == 0)
                break;
        }
    }
    if (s->num == 1) {
        const entry_t *e = s->p;
        if (entry_beats(e, c->best) && conds_ok(e, s->port, c))
            set_best(c, e, len);
        return;
    }
    const item_t *items = s->p;
    for (uint32_t k = 0; k < s->num; k++) {
        if (!entry_beats(items[k].e, c->best))
            return; /* sorted: the rest cannot win either */
        if (conds_ok(items[k].e, items[k].port, c)) {
            set_best(c, items[k].e, len);
            return;
        }
    }
}

static void scan_prefixes(mctx_t *c, const hslot_t *hs)
{
    const uint16_t *ilens = hs->lens;
    const uint32_t *blens = hs->b->lens;
    uint32_t nlens = hs->nlens == 0xff ? hs->b->num_lens : hs->nlens;
    bool inl = hs->nlens != 0xff;
    if (nlens == 0)
        return;
    const unsigned char *p = (const unsigned char *)c->req->path.ptr;
    size_t plen = c->req->path.len;
    uint64_t h = bucket_seed(hs->id);
    uint32_t li = 0;
    uint32_t next = inl ? ilens[0] : blens[0];
    for (uint32_t len = 0;; len++) {
        if (len == next) {
            probe_prefix(c, hs->id, h, len);
            if (++li == nlens)
                return;
            next = inl ? ilens[li] : blens[li];
        }
        if (len == plen)
            return;
        h = fnv_step(h, p[len]);
    }
}

static void scan_regexes(mctx_t *c, const bucket_t *b)
{
    for (size_t k = 0; k < b->num_regex; k++) {
        const item_t *it = &b->regex[k];
        const entry_t *e = it->e;
        if (!entry_beats(e, c->best))
            return;
        if (!conds_ok(e, it->port, c))
            continue;
        if (c->md == NULL)
            c->md = md_get(c->r->max_pairs);
        const rxinfo_t *rx = e->rx;
        if (rx->lit_len && (c->req->path.len < rx->lit_len || memcmp(c->req->path.ptr, e->path, rx->lit_len) != 0))
            continue;
        if (c->md == NULL || rx_exec(rx->code, rx->jit, c->req->path, c->md) < 0)
            continue;
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        set_best(c, e, ov[1]);
        lm_route_match_t *m = c->m;
        m->num_captures = LM_MIN(rx->ngroups, (uint32_t)LM_ROUTER_MAX_CAPTURES);
        for (size_t g = 0; g < m->num_captures; g++) {
            if (ov[2 * g] == PCRE2_UNSET)
                m->captures[g] = LM_STR_NULL;
            else
                m->captures[g] = (lm_str_t){ c->req->path.ptr + ov[2 * g], ov[2 * g + 1] - ov[2 * g] };
            m->capture_names[g] = rx->names[g];
        }
        return; /* later regexes of this bucket rank lower */
    }
}

static const hslot_t *host_lookup(const lm_router_t *r, uint32_t kind, const char *s, size_t len)
{
    uint64_t h = host_hash(kind, s, len);
    for (size_t i = mix64(h) & r->host_mask;; i = (i + 1) & r->host_mask) {
        const hslot_t *sl = &r->hosts[i];
        if (sl->id == 0)
            return NULL;
        if (sl->hash == h && sl->kind == kind && sl->len == len && memcmp(sl->b->name, s, len) == 0)
            return sl;
    }
}

/* Splits "name[:port]" (or "[v6]:port"); *port = -1 when there is no numeric port. */
static void split_req_host(lm_str_t host, lm_str_t *name, int *port)
{
    *name = host;
    *port = -1;
    const char *end = host.ptr + host.len;
    const char *colon = NULL;
    if (host.len && host.ptr[0] == '[') {
        const char *rb = memchr(host.ptr, ']', host.len);
        if (rb && rb + 1 < end && rb[1] == ':')
            colon = rb + 1;
    } else if (host.len) {
        colon = memchr(host.ptr, ':', host.len);
        if (colon && memchr(colon + 1, ':', (size_t)(end - colon - 1)))
            colon = NULL;
    }
    if (colon == NULL)
        return;
    int p = 0;
    const char *d = colon + 1;
    if (d == end)
        return;
    while (d < end && *d >= '0' && *d <= '9' && p <= 65535)
        p = p * 10 + (*d++ - '0');
    if (d != end || p > 65535)
        return;
    *port = p;
    name->len = (size_t)(colon - host.ptr);
}

int lm_router_match(const lm_router_t *r, const lm_route_req_t *req, lm_route_match_t *m)
{
    /* captures[] and capture_names[] are only valid below num_captures */
    m->route = NULL;
    m->path_index = SIZE_MAX;
    m->prefix_len = 0;
    m->num_captures = 0;
    m->protocol_mismatch = false;
    mctx_t c = { .r = r, .req = req, .m = m };

    const char *proto = req->protocol ? req->protocol : "http";
    unsigned pbit = proto_bit(proto, strlen(proto));
    c.tls = (pbit & (PROTO_HTTPS | PROTO_GRPCS | PROTO_WSS)) != 0 || strcasecmp(proto, "tls") == 0;

    /* buckets to visit: host-less, exact host, wildcard hosts */
    const hslot_t *visit[1 + 1 + 2 * 256];
    size_t nvisit = 0;
    visit[nvisit++] = &r->nohost;

    lm_str_t name;
    int hport;
    split_req_host(req->host, &name, &hport);
    c.port = hport >= 0 ? hport : req->port;
    char host[256];
    if (name.len > 0 && name.len < sizeof(host) && r->num_buckets > 1) {
        for (size_t i = 0; i < name.len; i++)
            host[i] = lm_tolower(name.ptr[i]);
        size_t hl = name.len;
        const hslot_t *hs = host_lookup(r, HOST_EXACT, host, hl);
        if (hs)
            visit[nvisit++] = hs;
        if (r->num_suffix_hosts || r->num_prefix_hosts) {
            for (size_t i = 0; i < hl; i++) {
                if (host[i] != '.')
                    continue;
                if (r->num_suffix_hosts && i > 0 && (hs = host_lookup(r, HOST_SUFFIX, host + i, hl - i)))
                    visit[nvisit++] = hs;
                if (r->num_prefix_hosts && i + 1 < hl && (hs = host_lookup(r, HOST_PREFIX, host, i + 1)))
                    visit[nvisit++] = hs;
            }
        }
    }

    for (size_t i = 0; i < nvisit; i++)
        scan_prefixes(&c, visit[i]);
    for (size_t i = 0; i < nvisit; i++)
        if (visit[i]->b->num_regex)
            scan_regexes(&c, visit[i]->b);

    if (c.best == NULL) {
        m->path_index = SIZE_MAX;
        return LM_DECLINED;
    }
    m->protocol_mismatch = (c.best->protocols & pbit) == 0;
    return LM_OK;
}

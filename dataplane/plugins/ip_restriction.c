/*
 * ip_restriction.c - the ip-restriction plugin (Kong 3.x semantics).
 *
 * config: allow, deny (IPv4/IPv6 addresses or CIDRs; at least one of them
 * non-empty), status (default 403), message (default
 * "IP address not allowed: <client ip>").
 * deny is checked first; then, when allow is non-empty, an address outside it
 * is refused too. The answer is Kong's JSON error {"message": ...}.
 *
 * Both lists are compiled once per snapshot into sorted, merged, disjoint
 * address intervals (IPv4 as 32-bit, IPv6 as 128-bit integers); a request
 * costs one inet_pton and a binary search per list.
 */
#include "lm_plugins.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>

typedef unsigned __int128 lm__u128;

typedef struct {
    uint32_t lo, hi;
} lm__v4_range_t;

typedef struct {
    lm__u128 lo, hi;
} lm__v6_range_t;

typedef struct {
    lm__v4_range_t *v4;
    size_t n4;
    lm__v6_range_t *v6;
    size_t n6;
    bool empty; /* the list was absent or [] */
} lm__iplist_t;

typedef struct {
    lm__iplist_t allow, deny;
    int status;
    const char *message; /* NULL: the default, with the client address */
} lm__iprestr_conf_t;

/* ---- config checks ---------------------------------------------------------- */

static const char *lm__check_ip_or_cidr(const cJSON *v)
{
    static __thread char msg[320];
    if (lm_schema_check_cidr(v) == NULL)
        return NULL;
    snprintf(msg, sizeof(msg), "invalid ip or cidr range: '%.256s'", v->valuestring);
    return msg;
}

static const lm_schema_field_t lm__fields[] = {
    { .name = "allow", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .check = lm__check_ip_or_cidr },
    { .name = "deny", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .check = lm__check_ip_or_cidr },
    { .name = "status", .type = LM_SF_NUMBER },
    { .name = "message", .type = LM_SF_STRING },
    { 0 },
};

/* ---- compile ---------------------------------------------------------------- */

/* "a.b.c.d[/n]" or "v6[/n]" (already validated) into an interval. */
static int lm__parse_cidr(const char *s, bool *is_v6, lm__u128 *lo, lm__u128 *hi)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= sizeof(buf))
        return LM_ERROR;
    memcpy(buf, s, n);
    buf[n] = '\0';
    unsigned char b[16];
    int bits;
    if (inet_pton(AF_INET, buf, b) == 1) {
        *is_v6 = false;
        bits = 32;
    } else if (inet_pton(AF_INET6, buf, b) == 1) {
        *is_v6 = true;
        bits = 128;
    } else {
        return LM_ERROR;
    }
    int prefix = slash ? atoi(slash + 1) : bits;
    if (prefix < 0 || prefix > bits)
        return LM_ERROR;
    lm__u128 v = 0;
    for (int i = 0; i < bits / 8; i++)
        v = (v << 8) | b[i];
    lm__u128 host;
    if (prefix == bits)
        host = 0;
    else if (bits - prefix == 128)
        host = ~(lm__u128)0;
    else
        host = ((lm__u128)1 << (bits - prefix)) - 1;
    *lo = v & ~host;
    *hi = *lo | host;
    if (bits == 32) {
        *lo &= 0xffffffffu;
        *hi &= 0xffffffffu;
    }
    return LM_OK;
}

static int lm__cmp_v4(const void *a, const void *b)
{
    const lm__v4_range_t *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static int lm__cmp_v6(const void *a, const void *b)
{
    const lm__v6_range_t *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* sorts and merges overlapping or adjacent intervals in place; returns the new count */
static size_t lm__merge_v4(lm__v4_range_t *r, size_t n)
{
    if (n == 0)
        return 0;
    qsort(r, n, sizeof(*r), lm__cmp_v4);
    size_t o = 0;
    for (size_t i = 1; i < n; i++) {
        if (r[o].hi == UINT32_MAX || r[i].lo <= r[o].hi + 1) {
            if (r[i].hi > r[o].hi)
                r[o].hi = r[i].hi;
        } else {
            r[++o] = r[i];
        }
    }
    return o + 1;
}

static size_t lm__merge_v6(lm__v6_range_t *r, size_t n)
{
    if (n == 0)
        return 0;
    qsort(r, n, sizeof(*r), lm__cmp_v6);
    size_t o = 0;
    const lm__u128 max = ~(lm__u128)0;
    for (size_t i = 1; i < n; i++) {
        if (r[o].hi == max || r[i].lo <= r[o].hi + 1) {
            if (r[i].hi > r[o].hi)
                r[o].hi = r[i].hi;
        } else {
            r[++o] = r[i];
        }
    }
    return o + 1;
}

static int lm__compile_list(lm_plugin_cfg_ctx_t *cc, const cJSON *arr, const char *field, lm__iplist_t *out)
{
    memset(out, 0, sizeof(*out));
    size_t n = arr ? (size_t)cJSON_GetArraySize(arr) : 0;
    out->empty = n == 0;
    if (n == 0)
        return LM_OK;
    out->v4 = lm_arena_alloc(cc->arena, n * sizeof(*out->v4));
    out->v6 = lm_arena_alloc(cc->arena, n * sizeof(*out->v6));
    const cJSON *it;
    size_t i = 0;
    cJSON_ArrayForEach(it, arr) {
        bool v6;
        lm__u128 lo, hi;
        if (lm__parse_cidr(it->valuestring, &v6, &lo, &hi) != LM_OK) {
            char f[64];
            snprintf(f, sizeof(f), "%s[%zu]", field, i);
            lm_plugin_error(cc, f, "invalid ip or cidr range: '%s'", it->valuestring);
            return LM_ERROR;
        }
        if (v6)
            out->v6[out->n6++] = (lm__v6_range_t){ lo, hi };
        else
            out->v4[out->n4++] = (lm__v4_range_t){ (uint32_t)lo, (uint32_t)hi };
        i++;
    }
    out->n4 = lm__merge_v4(out->v4, out->n4);
    out->n6 = lm__merge_v6(out->v6, out->n6);
    return LM_OK;
}

static int lm__configure(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out)
{
    lm__iprestr_conf_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    const cJSON *allow = lm_schema_get(config, "allow");
    const cJSON *deny = lm_schema_get(config, "deny");
    bool has_allow = allow && cJSON_GetArraySize(allow) > 0;
    bool has_deny = deny && cJSON_GetArraySize(deny) > 0;
    if (!has_allow && !has_deny) {
        lm_plugin_error(cc, NULL, "at least one of these fields must be non-empty: 'config.allow', 'config.deny'");
        return LM_ERROR;
    }
    if (lm__compile_list(cc, allow, "allow", &c->allow) != LM_OK ||
        lm__compile_list(cc, deny, "deny", &c->deny) != LM_OK)
        return LM_ERROR;
    const cJSON *st = lm_schema_get(config, "status");
    c->status = st ? (int)st->valuedouble : 403;
    c->message = lm_schema_str(config, "message"); /* points into the snapshot's normalised config */
    *out = c;
    return LM_OK;
}

/* ---- match ------------------------------------------------------------------- */

static bool lm__in_v4(const lm__iplist_t *l, uint32_t a)
{
    size_t lo = 0, hi = l->n4;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a < l->v4[mid].lo)
            hi = mid;
        else if (a > l->v4[mid].hi)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

static bool lm__in_v6(const lm__iplist_t *l, lm__u128 a)
{
    size_t lo = 0, hi = l->n6;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a < l->v6[mid].lo)
            hi = mid;
        else if (a > l->v6[mid].hi)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

typedef struct {
    bool v6, mapped; /* mapped: an IPv4-mapped IPv6 address (::ffff:a.b.c.d) */
    uint32_t a4;
    lm__u128 a6;
} lm__addr_t;

static bool lm__matches(const lm__iplist_t *l, const lm__addr_t *a)
{
    if (!a->v6)
        return lm__in_v4(l, a->a4);
    /* a dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d: they
     * match the IPv4 entries as well as the IPv6 ones */
    return lm__in_v6(l, a->a6) || (a->mapped && lm__in_v4(l, a->a4));
}

static int lm__access(lm_ctx_t *ctx, const void *conf)
{
    const lm__iprestr_conf_t *c = conf;
    const char *ip = lm_ctx_client_ip(ctx);
    lm__addr_t a = { 0 };
    unsigned char b[16];
    if (ip && inet_pton(AF_INET, ip, b) == 1) {
        a.a4 = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    } else if (ip && inet_pton(AF_INET6, ip, b) == 1) {
        a.v6 = true;
        for (int i = 0; i < 16; i++)
            a.a6 = (a.a6 << 8) | b[i];
        static const unsigned char pre[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        if (memcmp(b, pre, 12) == 0) {
            a.mapped = true;
            a.a4 = (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15];
        }
    } else {
        return lm_ctx_exit(ctx, 403, "Cannot identify the client IP address, unix domain sockets are not supported.",
                           NULL);
    }

    bool blocked = !c->deny.empty && lm__matches(&c->deny, &a);
    if (!blocked && !c->allow.empty)
        blocked = !lm__matches(&c->allow, &a);
    if (!blocked)
        return LM_OK;
    if (c->status < 100 || c->status > 599)
        return LM_ERROR; /* Kong fails such a response with a 500 too */
    const char *msg = c->message;
    if (!msg) {
        size_t n = sizeof("IP address not allowed: ") + strlen(ip);
        char *m = lm_ctx_alloc(ctx, n);
        snprintf(m, n, "IP address not allowed: %s", ip);
        msg = m;
    }
    return lm_ctx_exit(ctx, c->status, msg, NULL);
}

const lm_plugin_ops_t lm_plugin_ip_restriction = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "ip-restriction",
    .priority = 990,
    .schema = lm__fields,
    .configure = lm__configure,
    .access = lm__access,
};

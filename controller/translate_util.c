/*
 * translate_util.c - the translation's helpers: JSON access, annotations and
 * their values, base64, objects (identity, tags) and the broken-object reports.
 */
#include "translate_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void lm__vpush(lm_arena_t *a, lm__vec_t *v, void *p)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        void **nv = lm_arena_alloc(a, cap * sizeof(void *));
        if (v->n)
            memcpy(nv, v->v, v->n * sizeof(void *));
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = p;
}

/* ---- JSON -------------------------------------------------------------- */

/* (the type tests inline: cJSON_IsObject is a call into the library, and
 * this runs a few hundred thousand times per translation) */
const cJSON *lm__jget(const cJSON *o, const char *key)
{
    if (o == NULL || (o->type & 0xFF) != cJSON_Object)
        return NULL;
    for (const cJSON *it = o->child; it; it = it->next)
        if (it->string && it->string[0] == key[0] && strcmp(it->string, key) == 0)
            return (it->type & 0xFF) == cJSON_NULL ? NULL : it;
    return NULL;
}

const char *lm__jstr(const cJSON *o, const char *key)
{
    return cJSON_GetStringValue(lm__jget(o, key));
}

const cJSON *lm__jpath(const cJSON *o, const char *a, const char *b)
{
    const cJSON *v = lm__jget(o, a);
    return b ? lm__jget(v, b) : v;
}

const char *lm__label(const cJSON *obj, const char *name)
{
    return lm__jstr(lm__jpath(obj, "metadata", "labels"), name);
}

const char *lm__annotation(const cJSON *obj, const char *full_key)
{
    return lm__jstr(lm__jpath(obj, "metadata", "annotations"), full_key);
}

const char *lm__ann(const cJSON *obj, const char *name, const char **key)
{
    const cJSON *anns = lm__jpath(obj, "metadata", "annotations");
    if (anns == NULL || anns->child == NULL)
        return NULL;
    char k[256];
    LM__JOIN_BUF(k, LM__ANN_LIMEN, name);
    const cJSON *v = lm__jget(anns, k);
    if (!cJSON_IsString(v)) {
        LM__JOIN_BUF(k, LM__ANN_KONG, name);
        v = lm__jget(anns, k);
    }
    if (!cJSON_IsString(v))
        return NULL;
    if (key)
        *key = v->string;
    return v->valuestring;
}

/* ---- values ------------------------------------------------------------ */

bool lm__parse_bool(const char *v, bool *out)
{
    if (strcasecmp(v, "true") == 0)
        *out = true;
    else if (strcasecmp(v, "false") == 0)
        *out = false;
    else
        return false;
    return true;
}

bool lm__parse_int(const char *v, long long min, long long max, int *out)
{
    const char *p = v;
    while (*p == ' ')
        p++;
    bool neg = *p == '-';
    if (neg || *p == '+')
        p++;
    if (*p < '0' || *p > '9')
        return false;
    long long n = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (*p - '0');
        if (n > 1LL << 40)
            return false;
    }
    while (*p == ' ')
        p++;
    if (*p != '\0')
        return false;
    if (neg)
        n = -n;
    if (n < min || n > max)
        return false;
    *out = (int)n;
    return true;
}

size_t lm__split(lm_arena_t *a, const char *v, char ***out)
{
    size_t cap = 1;
    for (const char *p = v; *p; p++)
        cap += *p == ',';
    char **items = lm_arena_alloc(a, cap * sizeof(char *));
    size_t n = 0;
    const char *p = v;
    for (;;) {
        const char *end = strchr(p, ',');
        const char *e = end ? end : p + strlen(p);
        const char *s = p;
        while (s < e && (*s == ' ' || *s == '\t' || *s == '\n'))
            s++;
        const char *t = e;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t' || t[-1] == '\n'))
            t--;
        if (t > s)
            items[n++] = lm_arena_strndup(a, s, (size_t)(t - s));
        if (!end)
            break;
        p = end + 1;
    }
    *out = items;
    return n;
}

static int lm__b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* lm__b64val as a table: 0..63, or 0xff for anything else */
static const unsigned char *lm__b64tab(void)
{
    static unsigned char tab[256];
    static bool made;
    if (!made) {
        for (int c = 0; c < 256; c++) {
            int v = lm__b64val((unsigned char)c);
            tab[c] = v < 0 ? 0xff : (unsigned char)v;
        }
        made = true;
    }
    return tab;
}

char *lm__b64(lm_arena_t *a, const char *in, size_t *len)
{
    size_t n = strlen(in);
    char *out = lm_arena_alloc(a, n / 4 * 3 + 4);
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    bool pad = false;
    /* the common case first: whole groups of 4 alphabet characters (what the
     * API server sends); the rest (whitespace, padding, errors) below */
    const unsigned char *tab = lm__b64tab(), *u = (const unsigned char *)in;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        unsigned v0 = tab[u[i]], v1 = tab[u[i + 1]], v2 = tab[u[i + 2]], v3 = tab[u[i + 3]];
        if ((v0 | v1 | v2 | v3) & 0x80)
            break;
        unsigned v = (v0 << 18) | (v1 << 12) | (v2 << 6) | v3;
        out[o++] = (char)(v >> 16);
        out[o++] = (char)((v >> 8) & 0xff);
        out[o++] = (char)(v & 0xff);
    }
    for (; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '\n' || c == '\r' || c == ' ')
            continue;
        if (c == '=') {
            pad = true;
            continue;
        }
        int v = lm__b64val(c);
        if (v < 0 || pad)
            return NULL;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    if (bits >= 6)
        return NULL; /* a lone trailing character */
    out[o] = '\0';
    if (len)
        *len = o;
    return out;
}

char *lm__secret_value(lm_arena_t *a, const cJSON *secret, const char *key)
{
    const char *v = lm__jstr(lm__jget(secret, "data"), key);
    if (v == NULL)
        return NULL;
    size_t n;
    char *d = lm__b64(a, v, &n);
    if (d && strlen(d) != n)
        return NULL; /* a NUL inside: not text */
    return d;
}

char *lm__lower(lm_arena_t *a, const char *s)
{
    char *r = lm_arena_strdup(a, s);
    for (char *p = r; *p; p++)
        *p = lm_tolower(*p);
    return r;
}

int lm__strcmp_p(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t lm__sort_unique(char **v, size_t n)
{
    if (n < 2)
        return n;
    qsort(v, n, sizeof(char *), lm__strcmp_p);
    size_t k = 1;
    for (size_t i = 1; i < n; i++)
        if (strcmp(v[i], v[k - 1]) != 0)
            v[k++] = v[i];
    return k;
}

/* a + b in the arena (no printf) */
char *lm__cat(lm_arena_t *a, const char *x, const char *y)
{
    size_t nx = strlen(x), ny = strlen(y);
    char *r = lm_arena_alloc(a, nx + ny + 1);
    memcpy(r, x, nx);
    memcpy(r + nx, y, ny + 1);
    return r;
}

bool lm__join_buf(char *buf, size_t cap, const char *const *parts, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(parts[i]);
        if (o + l >= cap) {
            buf[0] = '\0';
            return false;
        }
        memcpy(buf + o, parts[i], l);
        o += l;
    }
    buf[o] = '\0';
    return true;
}

char *lm__join_arena(lm_arena_t *a, const char *const *parts, size_t n)
{
    size_t len[16], total = 0;
    if (n > 16)
        abort();
    for (size_t i = 0; i < n; i++)
        total += len[i] = strlen(parts[i]);
    char *r = lm_arena_alloc(a, total + 1), *p = r;
    for (size_t i = 0; i < n; i++) {
        memcpy(p, parts[i], len[i]);
        p += len[i];
    }
    *p = '\0';
    return r;
}

char *lm__utoa(char *buf, unsigned long long v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return buf;
}

/* ---- objects ----------------------------------------------------------- */

static const struct {
    const char *kind, *api_version, *group;
    bool cluster;
    const char *kind_tag, *group_tag; /* "k8s-kind:KIND", "k8s-group:GROUP" (NULL: core) */
} lm__otypes[] = {
    [LM__O_INGRESS] = { "Ingress", "networking.k8s.io/v1", "networking.k8s.io", false, "k8s-kind:Ingress",
                        "k8s-group:networking.k8s.io" },
    [LM__O_SERVICE] = { "Service", "v1", "", false, "k8s-kind:Service", NULL },
    [LM__O_SECRET] = { "Secret", "v1", "", false, "k8s-kind:Secret", NULL },
    [LM__O_PLUGIN] = { "Plugin", "limen.dev/v1", "limen.dev", false, "k8s-kind:Plugin", "k8s-group:limen.dev" },
    [LM__O_CPLUGIN] = { "ClusterPlugin", "limen.dev/v1", "limen.dev", true, "k8s-kind:ClusterPlugin",
                        "k8s-group:limen.dev" },
    [LM__O_CONSUMER] = { "Consumer", "limen.dev/v1", "limen.dev", false, "k8s-kind:Consumer", "k8s-group:limen.dev" },
    [LM__O_POLICY] = { "UpstreamPolicy", "limen.dev/v1", "limen.dev", false, "k8s-kind:UpstreamPolicy",
                       "k8s-group:limen.dev" },
};

lm__obj_t *lm__obj_new(lm__tctx_t *ctx, int type, const cJSON *j)
{
    const cJSON *md = lm__jget(j, "metadata");
    const char *name = lm__jstr(md, "name");
    if (name == NULL || name[0] == '\0')
        return NULL;
    lm__obj_t *o = lm_arena_calloc(ctx->a, sizeof(*o));
    o->type = type;
    o->j = j;
    o->kind = lm__otypes[type].kind;
    o->api_version = lm__otypes[type].api_version;
    o->group = lm__otypes[type].group;
    o->name = name;
    if (lm__otypes[type].cluster) {
        o->ns = "";
        o->key = name;
    } else {
        const char *ns = lm__jstr(md, "namespace");
        o->ns = (ns && ns[0]) ? ns : "default";
        o->key = LM__JOIN(ctx->a, o->ns, "/", name);
    }
    const char *uid = lm__jstr(md, "uid");
    o->uid = uid ? uid : "";
    char *full = LM__JOIN(ctx->a, o->kind, "/", o->ns, "/", name);
    if (lm_map_get(&ctx->objs, lm_str(full)))
        return NULL; /* the same object twice: the first one counts */
    lm_map_put(&ctx->objs, lm_str(full), o);
    return o;
}

lm__obj_t *lm__obj_find(lm__tctx_t *ctx, const char *kind, const char *ns, const char *name)
{
    char buf[1024];
    int n = snprintf(buf, sizeof(buf), "%s/%s/%s", kind, ns ? ns : "", name);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return NULL;
    return lm_map_get(&ctx->objs, lm_str(buf));
}

void lm__obj_tags(lm__tctx_t *ctx, lm__obj_t *o)
{
    if (o->tags)
        return;
    o->tags = lm_arena_alloc(ctx->a, 6 * sizeof(char *));
    size_t n = 0;
    unsigned st = 0;
    st |= 1u << n;
    o->tags[n++] = (char *)lm__otypes[o->type].kind_tag;
    if (o->ns[0])
        o->tags[n++] = lm__cat(ctx->a, "k8s-namespace:", o->ns);
    o->tags[n++] = lm__cat(ctx->a, "k8s-name:", o->name);
    if (o->uid[0] && !strchr(o->uid, ',') && !strchr(o->uid, '/'))
        o->tags[n++] = lm__cat(ctx->a, "k8s-uid:", o->uid);
    if (lm__otypes[o->type].group_tag) {
        st |= 1u << n;
        o->tags[n++] = (char *)lm__otypes[o->type].group_tag;
    }
    st |= 1u << n;
    o->tags[n++] = (char *)"k8s-version:v1";
    o->num_tags = n;
    o->tags_static = st;
}

/* the literal tags are references (never copied, never freed); the rest copies */
cJSON *lm__tags_json(lm__tctx_t *ctx, lm__obj_t *o)
{
    lm__obj_tags(ctx, o);
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < o->num_tags; i++)
        cJSON_AddItemToArray(a, (o->tags_static >> i) & 1 ? cJSON_CreateStringReference(o->tags[i])
                                                           : cJSON_CreateString(o->tags[i]));
    return a;
}

const char *lm__reason(const lm__obj_t *o)
{
    if (o && (o->type == LM__O_PLUGIN || o->type == LM__O_CPLUGIN || o->type == LM__O_POLICY ||
              o->type == LM__O_SECRET))
        return "InvalidConfig";
    return "TranslationFailed";
}

static void lm__vreport(lm__tctx_t *ctx, lm__obj_t *o, const char *fmt, va_list ap)
{
    char msg[2048];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    char *key = lm_arena_sprintf(ctx->a, "%s/%s/%s\n%s", o ? o->kind : "", o ? o->ns : "",
                                 o ? o->name : "", msg);
    if (lm_map_get(&ctx->report_keys, lm_str(key)))
        return;
    lm__report_t *r = lm_arena_calloc(ctx->a, sizeof(*r));
    r->obj = o;
    r->message = lm_arena_strdup(ctx->a, msg);
    lm_map_put(&ctx->report_keys, lm_str(key), r);
    lm__vpush(ctx->a, &ctx->reports, r);
}

void lm__report(lm__tctx_t *ctx, lm__obj_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lm__vreport(ctx, o, fmt, ap);
    va_end(ap);
}

void lm__exclude(lm__tctx_t *ctx, lm__obj_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lm__vreport(ctx, o, fmt, ap);
    va_end(ap);
    if (o && !o->excluded) {
        o->excluded = true;
        ctx->changed = true;
    }
}

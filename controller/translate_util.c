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

const cJSON *lm__jget(const cJSON *o, const char *key)
{
    if (!cJSON_IsObject(o))
        return NULL;
    for (const cJSON *it = o->child; it; it = it->next)
        if (it->string && it->string[0] == key[0] && strcmp(it->string, key) == 0)
            return cJSON_IsNull(it) ? NULL : it;
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
    char k[256];
    snprintf(k, sizeof(k), LM__ANN_LIMEN "%s", name);
    const cJSON *v = lm__jget(anns, k);
    if (!cJSON_IsString(v)) {
        snprintf(k, sizeof(k), LM__ANN_KONG "%s", name);
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

char *lm__b64(lm_arena_t *a, const char *in, size_t *len)
{
    size_t n = strlen(in);
    char *out = lm_arena_alloc(a, n / 4 * 3 + 4);
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    bool pad = false;
    for (size_t i = 0; i < n; i++) {
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

/* ---- objects ----------------------------------------------------------- */

static const struct {
    const char *kind, *api_version, *group;
    bool cluster;
} lm__otypes[] = {
    [LM__O_INGRESS] = { "Ingress", "networking.k8s.io/v1", "networking.k8s.io", false },
    [LM__O_SERVICE] = { "Service", "v1", "", false },
    [LM__O_SECRET] = { "Secret", "v1", "", false },
    [LM__O_PLUGIN] = { "Plugin", "limen.dev/v1", "limen.dev", false },
    [LM__O_CPLUGIN] = { "ClusterPlugin", "limen.dev/v1", "limen.dev", true },
    [LM__O_CONSUMER] = { "Consumer", "limen.dev/v1", "limen.dev", false },
    [LM__O_POLICY] = { "UpstreamPolicy", "limen.dev/v1", "limen.dev", false },
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
        o->key = lm_arena_sprintf(ctx->a, "%s/%s", o->ns, name);
    }
    const char *uid = lm__jstr(md, "uid");
    o->uid = uid ? uid : "";
    char *full = lm_arena_sprintf(ctx->a, "%s/%s/%s", o->kind, o->ns, name);
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
    o->tags[n++] = lm_arena_sprintf(ctx->a, "k8s-kind:%s", o->kind);
    if (o->ns[0])
        o->tags[n++] = lm_arena_sprintf(ctx->a, "k8s-namespace:%s", o->ns);
    o->tags[n++] = lm_arena_sprintf(ctx->a, "k8s-name:%s", o->name);
    if (o->uid[0] && !strchr(o->uid, ',') && !strchr(o->uid, '/'))
        o->tags[n++] = lm_arena_sprintf(ctx->a, "k8s-uid:%s", o->uid);
    if (o->group[0])
        o->tags[n++] = lm_arena_sprintf(ctx->a, "k8s-group:%s", o->group);
    o->tags[n++] = lm_arena_strdup(ctx->a, "k8s-version:v1");
    o->num_tags = n;
}

cJSON *lm__tags_json(lm__tctx_t *ctx, lm__obj_t *o)
{
    lm__obj_tags(ctx, o);
    return cJSON_CreateStringArray((const char *const *)o->tags, (int)o->num_tags);
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

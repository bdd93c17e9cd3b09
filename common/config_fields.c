/*
 * config_fields.c - the declarative-config builder's helpers: small maps and
 * vectors, error reporting with paths, typed field access with Kong's
 * messages, references, and value checks shared by every entity builder.
 */
#include "config_internal.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- maps and vectors ------------------------------------------------ */

static uint64_t lm__hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    /* mix the high bits down: the table uses the low ones, and ids and
     * generated names differ mostly at their ends */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static void *lm__map_find(const lm__map_t *m, const char *key, uint64_t h)
{
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->slots[i].key == NULL)
            return NULL;
        if (m->slots[i].hash == h && strcmp(m->slots[i].key, key) == 0)
            return m->slots[i].val;
    }
}

void *lm__map_get(const lm__map_t *m, const char *key)
{
    if (m->cap == 0 || key == NULL)
        return NULL;
    return lm__map_find(m, key, lm__hash(key));
}

static void lm__map_insert(lm__slot_t *slots, size_t cap, const char *key, void *val, uint64_t h)
{
    size_t i = h & (cap - 1);
    while (slots[i].key != NULL)
        i = (i + 1) & (cap - 1);
    slots[i].key = key;
    slots[i].val = val;
    slots[i].hash = h;
}

void *lm__map_put(lm__b_t *b, lm__map_t *m, const char *key, void *val)
{
    uint64_t h = lm__hash(key);
    void *old = m->cap ? lm__map_find(m, key, h) : NULL;
    if (old != NULL)
        return old;
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        lm__slot_t *slots = lm_arena_calloc(b->tmp, cap * sizeof(*slots));
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].key)
                lm__map_insert(slots, cap, m->slots[i].key, m->slots[i].val, m->slots[i].hash);
        m->slots = slots;
        m->cap = cap;
    }
    lm__map_insert(m->slots, m->cap, lm_arena_strdup(b->tmp, key), val, h);
    m->n++;
    return NULL;
}

void lm__vec_push(lm__b_t *b, lm__vec_t *v, void *item)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        void **nv = lm_arena_alloc(b->tmp, cap * sizeof(void *));
        if (v->n)
            memcpy(nv, v->v, v->n * sizeof(void *));
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = item;
}

/* ---- errors and field access ----------------------------------------- */

static char *lm__join(lm__b_t *b, const char *path, const char *field)
{
    if (field == NULL)
        return lm_arena_strdup(b->tmp, path);
    if (path[0] == '\0')
        return lm_arena_strdup(b->tmp, field);
    return lm_arena_sprintf(b->tmp, "%s%s%s", path, field[0] == '[' ? "" : ".", field);
}

void lm__ferr(lm__b_t *b, const lm__ent_t *e, const char *field, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (e == NULL) {
        lm_config_errors_add(b->errs, field ? field : "", NULL, NULL, NULL, "%s", msg);
        return;
    }
    lm_config_errors_add(b->errs, lm__join(b, e->path, field), e->type, e->name, field, "%s", msg);
    if (e->id || e->num_tags)
        lm_config_errors_set_entity(b->errs, e->id, e->tags, e->num_tags);
}

const cJSON *lm__fget(const cJSON *obj, const char *key)
{
    /* like cJSON_GetObjectItemCaseSensitive, with a first-byte test before
     * strcmp: every entity asks for each of its fields by name */
    const cJSON *v = NULL;
    for (const cJSON *it = obj ? obj->child : NULL; it; it = it->next) {
        if (it->string && it->string[0] == key[0] && strcmp(it->string, key) == 0) {
            v = it;
            break;
        }
    }
    return (v == NULL || cJSON_IsNull(v)) ? NULL : v;
}

void lm__ent_init(lm__b_t *b, lm__ent_t *e, const char *type, const char *plural,
                  const char *path, const cJSON *obj, const char *name_key)
{
    memset(e, 0, sizeof(*e));
    e->type = type;
    e->plural = plural;
    e->path = lm_arena_strdup(b->tmp, path);
    e->obj = obj;
    const char *name = cJSON_GetStringValue(lm__fget(obj, name_key));
    e->name = (name && name[0]) ? name : NULL;
    const char *id = cJSON_GetStringValue(lm__fget(obj, "id"));
    e->id = (id && id[0]) ? id : NULL;
    const cJSON *tags = lm__fget(obj, "tags");
    if (cJSON_IsArray(tags)) {
        size_t n = (size_t)cJSON_GetArraySize(tags), k = 0;
        const char **t = lm_arena_alloc(b->tmp, (n ? n : 1) * sizeof(char *));
        const cJSON *it;
        cJSON_ArrayForEach(it, tags) {
            if (cJSON_IsString(it))
                t[k++] = it->valuestring;
        }
        e->tags = t;
        e->num_tags = k;
    }
}

void lm__check_fields(lm__b_t *b, const lm__ent_t *e, const char *const *allowed)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, e->obj) {
        const char *k = it->string;
        bool ok = (k[0] == '_' && (strcmp(k, "_comment") == 0 || strcmp(k, "_ignore") == 0)) ||
                  (k[0] == 'c' && strcmp(k, "created_at") == 0) || (k[0] == 'u' && strcmp(k, "updated_at") == 0);
        for (size_t i = 0; !ok && allowed[i]; i++)
            ok = allowed[i][0] == k[0] && strcmp(k, allowed[i]) == 0;
        if (!ok)
            lm__ferr(b, e, k, "unknown field");
    }
}

char *lm__get_str(lm__b_t *b, const lm__ent_t *e, const char *key, bool required)
{
    const cJSON *v = lm__fget(e->obj, key);
    if (v == NULL) {
        if (required)
            lm__ferr(b, e, key, "required field missing");
        return NULL;
    }
    if (!cJSON_IsString(v)) {
        lm__ferr(b, e, key, "expected a string");
        return NULL;
    }
    if (v->valuestring[0] == '\0') {
        lm__ferr(b, e, key, "length must be at least 1");
        return NULL;
    }
    return lm_arena_strdup(b->a, v->valuestring);
}

bool lm__is_integer(const cJSON *v)
{
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble == floor(v->valuedouble) &&
           fabs(v->valuedouble) < 9007199254740992.0;
}

bool lm__get_int(lm__b_t *b, const lm__ent_t *e, const char *key, long long def, long long min,
                 long long max, long long *out)
{
    *out = def;
    const cJSON *v = lm__fget(e->obj, key);
    if (v == NULL)
        return true;
    if (!lm__is_integer(v)) {
        lm__ferr(b, e, key, "expected an integer");
        return false;
    }
    long long x = (long long)v->valuedouble;
    if (x < min || x > max) {
        lm__ferr(b, e, key, "value should be between %lld and %lld", min, max);
        return false;
    }
    *out = x;
    return true;
}

bool lm__get_bool(lm__b_t *b, const lm__ent_t *e, const char *key, bool def, bool *out)
{
    *out = def;
    const cJSON *v = lm__fget(e->obj, key);
    if (v == NULL)
        return true;
    if (!cJSON_IsBool(v)) {
        lm__ferr(b, e, key, "expected a boolean");
        return false;
    }
    *out = cJSON_IsTrue(v);
    return true;
}

char *lm__one_of_list(lm__b_t *b, const char *const *vals)
{
    size_t len = 1;
    for (size_t i = 0; vals[i]; i++)
        len += strlen(vals[i]) + 2;
    char *s = lm_arena_alloc(b->tmp, len);
    s[0] = '\0';
    for (size_t i = 0; vals[i]; i++) {
        if (i)
            strcat(s, ", ");
        strcat(s, vals[i]);
    }
    return s;
}

bool lm__in(const char *s, const char *const *vals)
{
    for (size_t i = 0; vals[i]; i++)
        if (strcmp(s, vals[i]) == 0)
            return true;
    return false;
}

char *lm__get_enum(lm__b_t *b, const lm__ent_t *e, const char *key, const char *const *vals,
                   const char *def)
{
    const cJSON *v = lm__fget(e->obj, key);
    if (v == NULL)
        return def ? lm_arena_strdup(b->a, def) : NULL;
    if (!cJSON_IsString(v)) {
        lm__ferr(b, e, key, "expected a string");
        return def ? lm_arena_strdup(b->a, def) : NULL;
    }
    if (!lm__in(v->valuestring, vals)) {
        lm__ferr(b, e, key, "expected one of: %s", lm__one_of_list(b, vals));
        return def ? lm_arena_strdup(b->a, def) : NULL;
    }
    return lm_arena_strdup(b->a, v->valuestring);
}

char **lm__get_str_array(lm__b_t *b, const lm__ent_t *e, const char *key, size_t *n)
{
    *n = 0;
    const cJSON *v = lm__fget(e->obj, key);
    if (v == NULL)
        return NULL;
    if (!cJSON_IsArray(v)) {
        lm__ferr(b, e, key, "expected an array");
        return NULL;
    }
    size_t cnt = (size_t)cJSON_GetArraySize(v), i = 0;
    char **out = lm_arena_calloc(b->a, (cnt ? cnt : 1) * sizeof(char *));
    const cJSON *it;
    cJSON_ArrayForEach(it, v) {
        char field[128];
        if (!cJSON_IsString(it) || it->valuestring[0] == '\0')
            snprintf(field, sizeof(field), "%s[%zu]", key, i);
        if (!cJSON_IsString(it)) {
            lm__ferr(b, e, field, "expected a string");
        } else if (it->valuestring[0] == '\0') {
            lm__ferr(b, e, field, "length must be at least 1");
        } else {
            out[*n] = lm_arena_strdup(b->a, it->valuestring);
            (*n)++;
        }
        i++;
    }
    return out;
}

void lm__get_tags(lm__b_t *b, const lm__ent_t *e, char ***tags, size_t *n)
{
    *tags = lm__get_str_array(b, e, "tags", n);
    for (size_t i = 0; i < *n; i++) {
        for (const unsigned char *p = (const unsigned char *)(*tags)[i]; *p; p++) {
            if (*p < 0x20 || *p == 0x7f || *p == ',' || *p == '/') {
                char field[64];
                snprintf(field, sizeof(field), "tags[%zu]", i);
                lm__ferr(b, e, field,
                         "invalid tag '%s': expected printable ascii (except `,` and `/`) or "
                         "valid utf-8 sequences",
                         (*tags)[i]);
                break;
            }
        }
    }
}

/* MD5 (RFC 1321) of a short seed: an EVP digest costs several times more than
 * the one or two blocks a seed takes, and every entity without an id asks */
static const uint32_t lm__md5_k[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391
};
static const unsigned char lm__md5_r[64] = {
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9,
    14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15, 21,
    6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21
};

static void lm__md5_block(uint32_t h[4], const unsigned char *p)
{
    uint32_t w[16];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
               (uint32_t)p[4 * i + 3] << 24;
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
    for (int i = 0; i < 64; i++) {
        uint32_t f;
        int g;
        if (i < 16) {
            f = (b & c) | (~b & d);
            g = i;
        } else if (i < 32) {
            f = (d & b) | (~d & c);
            g = (5 * i + 1) & 15;
        } else if (i < 48) {
            f = b ^ c ^ d;
            g = (3 * i + 5) & 15;
        } else {
            f = c ^ (b | ~d);
            g = (7 * i) & 15;
        }
        uint32_t x = a + f + lm__md5_k[i] + w[g];
        a = d;
        d = c;
        c = b;
        b = b + ((x << lm__md5_r[i]) | (x >> (32 - lm__md5_r[i])));
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
}

static void lm__md5(const char *data, size_t len, unsigned char out[16])
{
    uint32_t h[4] = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476 };
    const unsigned char *p = (const unsigned char *)data;
    size_t n = len;
    for (; n >= 64; p += 64, n -= 64)
        lm__md5_block(h, p);
    unsigned char tail[128];
    memset(tail, 0, sizeof(tail));
    memcpy(tail, p, n);
    tail[n] = 0x80;
    size_t tl = n + 1 + 8 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        tail[tl - 8 + (size_t)i] = (unsigned char)(bits >> (8 * i));
    lm__md5_block(h, tail);
    if (tl == 128)
        lm__md5_block(h, tail + 64);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            out[4 * i + j] = (unsigned char)(h[i] >> (8 * j));
}

static void lm__uuid_len(const char *seed, size_t len, char out[37])
{
    unsigned char md[16];
    lm__md5(seed, len, md);
    md[6] = (unsigned char)((md[6] & 0x0f) | 0x30); /* version 3: name-based (MD5) */
    md[8] = (unsigned char)((md[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[md[i] >> 4];
        out[o++] = hex[md[i] & 15];
    }
    out[o] = '\0';
}

void lm_config_uuid(const char *seed, char out[37])
{
    lm__uuid_len(seed, strlen(seed), out);
}

/* the uuid of a+b+c (a seed made of three pieces, without formatting it in the arena) */
static void lm__uuid3(const char *a, const char *b, const char *c, char out[37])
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char buf[256];
    char *seed = la + lb + lc < sizeof(buf) ? buf : malloc(la + lb + lc + 1);
    if (seed == NULL)
        abort();
    memcpy(seed, a, la);
    memcpy(seed + la, b, lb);
    memcpy(seed + la + lb, c, lc);
    lm__uuid_len(seed, la + lb + lc, out);
    if (seed != buf)
        free(seed);
}

char *lm__get_id(lm__b_t *b, const lm__ent_t *e)
{
    if (lm__fget(e->obj, "id") == NULL && cJSON_IsObject(e->obj)) {
        /* none given: a stable one, the same on every instance and restart
         * (Kong DB-less generates ids too): from the name for the entities
         * whose name is unique, else from the position in the document; the
         * tree gets it as well, so whoever reads cfg->doc sees the model's id */
        static const char *const named[] = { "service", "route", "consumer", "upstream", NULL };
        char id[37];
        bool named_seed = e->name && lm__in(e->type, named);
        if (named_seed) { /* "TYPE:name:NAME" */
            char type[32];
            snprintf(type, sizeof(type), "%s:name:", e->type);
            lm__uuid3(type, e->name, "", id);
            if (lm__map_get(&b->gen_ids, id))
                named_seed = false; /* a duplicate name (reported elsewhere): keep ids apart */
        }
        if (!named_seed) /* "TYPE@PATH" */
            lm__uuid3(e->type, "@", e->path, id);
        char *kept = lm_arena_strdup(b->a, id);
        lm__map_put(b, &b->gen_ids, kept, kept);
        cJSON_AddStringToObject((cJSON *)e->obj, "id", id);
        return kept;
    }
    char *id = lm__get_str(b, e, "id", false);
    if (id && !lm__is_uuid(id)) {
        lm__ferr(b, e, "id", "expected a valid UUID");
        return NULL;
    }
    return id;
}

void lm__check_unique(lm__b_t *b, const lm__ent_t *e, lm__map_t *m, const char *field,
                      const char *value, void *obj)
{
    if (value == NULL)
        return;
    if (lm__map_put(b, m, value, obj) != NULL) {
        if (strcmp(field, "id") == 0)
            lm__ferr(b, e, NULL,
                     "uniqueness violation: '%s' entity with primary key set to '%s' already "
                     "declared",
                     e->plural, value);
        else
            lm__ferr(b, e, NULL,
                     "uniqueness violation: '%s' entity with %s set to '%s' already declared",
                     e->plural, field, value);
    }
}

void lm__add_pending(lm__b_t *b, lm__vec_t *v, const lm__ent_t *e, const cJSON *ref, void *owner,
                     void *extra)
{
    lm__pending_t *p = lm_arena_alloc(b->tmp, sizeof(*p));
    p->ent = *e;
    p->ref = ref;
    p->owner = owner;
    p->extra = extra;
    lm__vec_push(b, v, p);
}

void *lm__resolve(lm__b_t *b, const lm__ent_t *e, const char *field, const cJSON *ref,
                  const lm__map_t *by_name, const lm__map_t *by_id, const char *plural)
{
    const char *key = NULL;
    void *found = NULL;
    if (cJSON_IsString(ref)) {
        key = ref->valuestring;
        found = by_name ? lm__map_get(by_name, key) : NULL;
        if (found == NULL)
            found = lm__map_get(by_id, key);
    } else if (cJSON_IsObject(ref)) {
        const cJSON *id = lm__fget(ref, "id"), *name = lm__fget(ref, "name");
        if (cJSON_IsString(id)) {
            key = id->valuestring;
            found = lm__map_get(by_id, key);
        } else if (cJSON_IsString(name) && by_name) {
            key = name->valuestring;
            found = lm__map_get(by_name, key);
        }
    }
    if (key == NULL) {
        lm__ferr(b, e, field, "expected a string or a record with a string 'id'%s",
                 by_name ? " or 'name'" : "");
        return NULL;
    }
    if (found == NULL) {
        char *shown = NULL;
        if (cJSON_IsObject(ref))
            shown = cJSON_PrintUnformatted(ref);
        lm__ferr(b, e, field, "invalid reference '%s: %s' (no such entry in '%s')", field,
                 shown ? shown : key, plural);
        cJSON_free(shown);
    }
    return found;
}

void lm__each(lm__b_t *b, const lm__ent_t *parent, const cJSON *obj, const char *key,
              void (*fn)(lm__b_t *b, const cJSON *item, const char *path, void *parent),
              void *parent_obj)
{
    const cJSON *arr = lm__fget(obj, key);
    if (arr == NULL)
        return;
    const char *base = parent ? parent->path : "";
    if (!cJSON_IsArray(arr)) {
        if (parent)
            lm__ferr(b, parent, key, "expected an array");
        else
            lm_config_errors_add(b->errs, key, NULL, NULL, NULL, "expected an array");
        return;
    }
    size_t i = 0, bl = strlen(base), kl = strlen(key);
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        /* "BASE.KEY[i]" or "KEY[i]" */
        char num[24], *q = num + sizeof(num);
        size_t x = i;
        do {
            *--q = (char)('0' + x % 10);
            x /= 10;
        } while (x);
        size_t nl = (size_t)(num + sizeof(num) - q);
        char *path = lm_arena_alloc(b->tmp, bl + 1 + kl + nl + 3), *o = path;
        if (bl) {
            memcpy(o, base, bl);
            o += bl;
            *o++ = '.';
        }
        memcpy(o, key, kl);
        o += kl;
        *o++ = '[';
        memcpy(o, q, nl);
        o += nl;
        *o++ = ']';
        *o = '\0';
        if (!cJSON_IsObject(it))
            lm_config_errors_add(b->errs, path, NULL, NULL, NULL, "expected a record");
        else
            fn(b, it, path, parent_obj);
        i++;
    }
}

/* ---- shared value checks --------------------------------------------- */

const char *const lm__protocols[] = { "grpc", "grpcs", "http", "https", "tcp", "tls",
                                             "tls_passthrough", "udp", "ws", "wss", NULL };

/* Kong's utf8_name: ASCII limited to alphanumerics and ".-_~", UTF-8 allowed */
static bool lm__check_name(lm__b_t *b, const lm__ent_t *e, const char *field, const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p >= 0x80 || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
            (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_' || *p == '~')
            continue;
        lm__ferr(b, e, field,
                 "invalid value '%s': the only accepted ascii characters are alphanumerics or "
                 "., -, _, and ~",
                 v);
        return false;
    }
    return true;
}

char *lm__get_name(lm__b_t *b, const lm__ent_t *e, const char *key, bool required)
{
    char *v = lm__get_str(b, e, key, required);
    if (v && !lm__check_name(b, e, key, v))
        return NULL;
    return v;
}

/* a set of protocols: non-empty, each known */
char **lm__get_protocols(lm__b_t *b, const lm__ent_t *e, size_t *n,
                                const char *const *def, size_t ndef)
{
    const cJSON *v = lm__fget(e->obj, "protocols");
    if (v == NULL) {
        char **out = lm_arena_alloc(b->a, ndef * sizeof(char *));
        for (size_t i = 0; i < ndef; i++)
            out[i] = lm_arena_strdup(b->a, def[i]);
        *n = ndef;
        return out;
    }
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0) {
        lm__ferr(b, e, "protocols", "length must be at least 1");
        *n = 0;
        return NULL;
    }
    char **out = lm__get_str_array(b, e, "protocols", n);
    size_t k = 0;
    for (size_t i = 0; i < *n; i++) {
        if (!lm__in(out[i], lm__protocols)) {
            char field[64];
            snprintf(field, sizeof(field), "protocols[%zu]", i);
            lm__ferr(b, e, field, "expected one of: %s", lm__one_of_list(b, lm__protocols));
            continue;
        }
        bool dup = false;
        for (size_t j = 0; j < k; j++)
            dup = dup || strcmp(out[j], out[i]) == 0;
        if (!dup)
            out[k++] = out[i];
    }
    *n = k;
    return out;
}

bool lm__has(char **list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}


/* ---- the canonical form --------------------------------------------------- */

/*
 * cJSON_PrintUnformatted's bytes, faster: strings are copied in runs instead of
 * byte by byte with a strlen after every value, and the size is counted first
 * so the text is allocated once (cJSON_malloc: cJSON_free releases it). The
 * escapes are print_string_ptr's (\" \\ \b \f \n \r \t, \u00xx below 0x20,
 * every other byte as is); numbers are printed by cJSON itself (its format
 * differs between versions), remembered per value. Anything else (raw or
 * invalid items): NULL, and the caller uses cJSON_PrintUnformatted.
 */
static const unsigned char lm__esc_extra[256] = {
    5, 5, 5, 5, 5, 5, 5, 5, 1, 1, 1, 5, 1, 1, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
};

typedef struct {
    char *out;  /* NULL while counting */
    size_t len;
    struct {
        uint64_t bits;
        int valueint;
        unsigned char n; /* 0 = empty */
        char text[31];
    } nums[64];
} lm__canon_t;

static void lm__canon_put(lm__canon_t *c, const char *s, size_t n)
{
    if (c->out)
        memcpy(c->out + c->len, s, n);
    c->len += n;
}

static void lm__canon_str(lm__canon_t *c, const char *str)
{
    const unsigned char *s = (const unsigned char *)(str ? str : "");
    size_t extra = 0;
    const unsigned char *p = s;
    if (!c->out) {
        for (; *p; p++)
            extra += lm__esc_extra[*p];
        c->len += (size_t)(p - s) + extra + 2;
        return;
    }
    char *o = c->out + c->len;
    *o++ = '"';
    for (;;) {
        const unsigned char *run = p;
        while (*p && !lm__esc_extra[*p])
            p++;
        memcpy(o, run, (size_t)(p - run));
        o += p - run;
        if (!*p)
            break;
        static const char hex[] = "0123456789abcdef";
        *o++ = '\\';
        switch (*p) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
        p++;
    }
    *o++ = '"';
    c->len = (size_t)(o - c->out);
}

static bool lm__canon_num(lm__canon_t *c, const cJSON *item)
{
    uint64_t bits;
    memcpy(&bits, &item->valuedouble, sizeof(bits));
    size_t slot = (size_t)((bits ^ (bits >> 29) ^ (uint64_t)(unsigned)item->valueint) * 0x9E3779B97F4A7C15ull >> 58);
    if (!(c->nums[slot].n && c->nums[slot].bits == bits && c->nums[slot].valueint == item->valueint)) {
        char buf[64];
        cJSON tmp = *item; /* alone: cJSON prints only the item, never its siblings */
        tmp.next = tmp.prev = NULL;
        if (!cJSON_PrintPreallocated(&tmp, buf, (int)sizeof(buf), 0))
            return false;
        size_t n = strlen(buf);
        if (n == 0 || n >= sizeof(c->nums[slot].text))
            return false;
        c->nums[slot].bits = bits;
        c->nums[slot].valueint = item->valueint;
        c->nums[slot].n = (unsigned char)n;
        memcpy(c->nums[slot].text, buf, n);
    }
    lm__canon_put(c, c->nums[slot].text, c->nums[slot].n);
    return true;
}

static bool lm__canon_value(lm__canon_t *c, const cJSON *item, int depth)
{
    if (depth > 1000) /* cJSON's nesting limit for its own trees; deeper ones: let it decide */
        return false;
    switch (item->type & 0xFF) {
    case cJSON_NULL:
        lm__canon_put(c, "null", 4);
        return true;
    case cJSON_False:
        lm__canon_put(c, "false", 5);
        return true;
    case cJSON_True:
        lm__canon_put(c, "true", 4);
        return true;
    case cJSON_Number:
        return lm__canon_num(c, item);
    case cJSON_String:
        lm__canon_str(c, item->valuestring);
        return true;
    case cJSON_Array:
    case cJSON_Object: {
        bool obj = (item->type & 0xFF) == cJSON_Object;
        lm__canon_put(c, obj ? "{" : "[", 1);
        for (const cJSON *it = item->child; it; it = it->next) {
            if (obj) {
                lm__canon_str(c, it->string);
                lm__canon_put(c, ":", 1);
            }
            if (!lm__canon_value(c, it, depth + 1))
                return false;
            if (it->next)
                lm__canon_put(c, ",", 1);
        }
        lm__canon_put(c, obj ? "}" : "]", 1);
        return true;
    }
    default:
        return false;
    }
}

char *lm__print_canonical(const cJSON *doc)
{
    lm__canon_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    char *out = NULL;
    if (lm__canon_value(c, doc, 0)) {
        size_t len = c->len;
        out = cJSON_malloc(len + 1);
        if (out) {
            c->out = out;
            c->len = 0;
            lm__canon_value(c, doc, 0);
            out[len] = '\0';
        }
    }
    free(c);
    return out ? out : cJSON_PrintUnformatted(doc);
}

/* ---- redaction -------------------------------------------------------------- */

static bool lm__secret_field(const char *container, const char *key)
{
    size_t n = strlen(key);
    if (strcmp(key, "password") == 0 || strcmp(key, "secret") == 0 || strcmp(key, "client_secret") == 0 ||
        (n > 9 && strcmp(key + n - 9, "_password") == 0) || (n > 7 && strcmp(key + n - 7, "_secret") == 0))
        return true;
    if (!container)
        return false;
    if (strcmp(container, "keyauth_credentials") == 0 && strcmp(key, "key") == 0)
        return true;
    if (strcmp(container, "certificates") == 0 && (strcmp(key, "key") == 0 || strcmp(key, "key_alt") == 0))
        return true;
    return false;
}

/* container: the name of the array the current object is an element of */
static void lm__redact(cJSON *node, const char *container)
{
    cJSON *it;
    if (cJSON_IsArray(node)) {
        cJSON_ArrayForEach(it, node) lm__redact(it, container);
        return;
    }
    if (!cJSON_IsObject(node))
        return;
    cJSON_ArrayForEach(it, node) {
        if (cJSON_IsString(it) && lm__secret_field(container, it->string))
            cJSON_SetValuestring(it, "<redacted>");
        else if (cJSON_IsArray(it))
            lm__redact(it, it->string);
        else if (cJSON_IsObject(it))
            lm__redact(it, container);
    }
}

void lm_config_redact(cJSON *doc)
{
    lm__redact(doc, NULL);
}

void lm_config_redact_private_keys(cJSON *doc)
{
    cJSON *c, *certs = cJSON_GetObjectItemCaseSensitive(doc, "certificates");
    cJSON_ArrayForEach(c, certs) {
        static const char *const keys[] = { "key", "key_alt" };
        for (size_t i = 0; i < 2; i++)
            if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(c, keys[i])))
                cJSON_ReplaceItemInObjectCaseSensitive(c, keys[i], cJSON_CreateString("<redacted>"));
    }
}

/*
 * config_fields.c - the declarative-config builder's helpers: small maps and
 * vectors, error reporting with paths, typed field access with Kong's
 * messages, references, and value checks shared by every entity builder.
 */
#include "config_internal.h"

#include <openssl/evp.h>

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

void *lm__map_get(const lm__map_t *m, const char *key)
{
    if (m->cap == 0 || key == NULL)
        return NULL;
    for (size_t i = lm__hash(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->slots[i].key == NULL)
            return NULL;
        if (strcmp(m->slots[i].key, key) == 0)
            return m->slots[i].val;
    }
}

static void lm__map_insert(lm__slot_t *slots, size_t cap, const char *key, void *val)
{
    size_t i = lm__hash(key) & (cap - 1);
    while (slots[i].key != NULL)
        i = (i + 1) & (cap - 1);
    slots[i].key = key;
    slots[i].val = val;
}

void *lm__map_put(lm__b_t *b, lm__map_t *m, const char *key, void *val)
{
    void *old = lm__map_get(m, key);
    if (old != NULL)
        return old;
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        lm__slot_t *slots = lm_arena_calloc(b->tmp, cap * sizeof(*slots));
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].key)
                lm__map_insert(slots, cap, m->slots[i].key, m->slots[i].val);
        m->slots = slots;
        m->cap = cap;
    }
    lm__map_insert(m->slots, m->cap, lm_arena_strdup(b->tmp, key), val);
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

static EVP_MD *lm__md5;
static pthread_once_t lm__md5_once = PTHREAD_ONCE_INIT;

static void lm__md5_fetch(void)
{
    lm__md5 = EVP_MD_fetch(NULL, "MD5", NULL); /* once: an implicit fetch per digest costs more than the digest */
}

void lm_config_uuid(const char *seed, char out[37])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    memset(md, 0, sizeof(md));
    pthread_once(&lm__md5_once, lm__md5_fetch);
    EVP_Digest(seed, strlen(seed), md, &n, lm__md5 ? lm__md5 : EVP_md5(), NULL);
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

char *lm__get_id(lm__b_t *b, const lm__ent_t *e)
{
    if (lm__fget(e->obj, "id") == NULL && cJSON_IsObject(e->obj)) {
        /* none given: a stable one, the same on every instance and restart
         * (Kong DB-less generates ids too): from the name for the entities
         * whose name is unique, else from the position in the document; the
         * tree gets it as well, so whoever reads cfg->doc sees the model's id */
        static const char *const named[] = { "service", "route", "consumer", "upstream", NULL };
        char id[37];
        const char *seed = e->name && lm__in(e->type, named)
                               ? lm_arena_sprintf(b->tmp, "%s:name:%s", e->type, e->name)
                               : NULL;
        if (seed) {
            lm_config_uuid(seed, id);
            if (lm__map_get(&b->gen_ids, id))
                seed = NULL; /* a duplicate name (reported elsewhere): keep ids apart */
        }
        if (!seed)
            lm_config_uuid(lm_arena_sprintf(b->tmp, "%s@%s", e->type, e->path), id);
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
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        char *path = base[0] ? lm_arena_sprintf(b->tmp, "%s.%s[%zu]", base, key, i)
                             : lm_arena_sprintf(b->tmp, "%s[%zu]", key, i);
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

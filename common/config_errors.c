/*
 * config_errors.c - the error list of the declarative configuration and its
 * Kong-shaped JSON form (POST /config answers 400 with it). See lm_config.h.
 */
#include "lm_config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static void *lm__err_xalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "limen: out of memory allocating %zu bytes\n", n);
        abort();
    }
    return p;
}

static char *lm__err_strdup(const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s);
    char *p = lm__err_xalloc(n + 1);
    memcpy(p, s, n + 1);
    return p;
}

void lm_config_errors_init(lm_config_errors_t *e)
{
    e->items = NULL;
    e->count = 0;
    e->cap = 0;
}

static void lm__err_item_free(lm_config_error_t *it)
{
    free(it->path);
    free(it->message);
    free(it->entity_type);
    free(it->entity_name);
    free(it->field);
    free(it->entity_id);
    for (size_t i = 0; i < it->num_entity_tags; i++)
        free(it->entity_tags[i]);
    free(it->entity_tags);
}

void lm_config_errors_free(lm_config_errors_t *e)
{
    for (size_t i = 0; i < e->count; i++)
        lm__err_item_free(&e->items[i]);
    free(e->items);
    lm_config_errors_init(e);
}

void lm_config_errors_add(lm_config_errors_t *e, const char *path, const char *entity_type,
                          const char *entity_name, const char *field, const char *fmt, ...)
{
    if (e->count > LM_CONFIG_MAX_ERRORS)
        return;
    if (e->count == LM_CONFIG_MAX_ERRORS) {
        /* one closing line, then nothing: keeps pathological documents cheap */
        lm_config_error_t *items = realloc(e->items, (e->count + 1) * sizeof(*items));
        if (items == NULL)
            abort();
        e->items = items;
        e->cap = e->count + 1;
        lm_config_error_t *it = &e->items[e->count++];
        memset(it, 0, sizeof(*it));
        it->path = lm__err_strdup("");
        char msg[96];
        snprintf(msg, sizeof(msg), "too many errors: only the first %d are reported",
                 LM_CONFIG_MAX_ERRORS);
        it->message = lm__err_strdup(msg);
        return;
    }
    if (e->count == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 8;
        lm_config_error_t *items = realloc(e->items, cap * sizeof(*items));
        if (items == NULL) {
            fprintf(stderr, "limen: out of memory growing the error list\n");
            abort();
        }
        e->items = items;
        e->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    char *msg = lm__err_xalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(msg, (size_t)n + 1, fmt, ap);
    va_end(ap);

    lm_config_error_t *it = &e->items[e->count++];
    memset(it, 0, sizeof(*it));
    it->path = lm__err_strdup(path ? path : "");
    it->message = msg;
    it->entity_type = lm__err_strdup(entity_type);
    it->entity_name = lm__err_strdup(entity_name);
    it->field = lm__err_strdup(field);
}

void lm_config_errors_set_entity(lm_config_errors_t *e, const char *entity_id,
                                 const char *const *tags, size_t num_tags)
{
    if (e->count == 0)
        return;
    lm_config_error_t *it = &e->items[e->count - 1];
    free(it->entity_id);
    it->entity_id = lm__err_strdup(entity_id);
    for (size_t i = 0; i < it->num_entity_tags; i++)
        free(it->entity_tags[i]);
    free(it->entity_tags);
    it->entity_tags = NULL;
    it->num_entity_tags = 0;
    if (tags && num_tags) {
        it->entity_tags = lm__err_xalloc(num_tags * sizeof(char *));
        for (size_t i = 0; i < num_tags; i++)
            it->entity_tags[i] = lm__err_strdup(tags[i] ? tags[i] : "");
        it->num_entity_tags = num_tags;
    }
}

char *lm_config_errors_format(const lm_config_errors_t *e)
{
    size_t len = 1;
    for (size_t i = 0; i < e->count; i++)
        len += strlen(e->items[i].path) + strlen(e->items[i].message) + 4;
    char *out = lm__err_xalloc(len);
    size_t off = 0;
    out[0] = '\0';
    for (size_t i = 0; i < e->count; i++) {
        const lm_config_error_t *it = &e->items[i];
        int n = snprintf(out + off, len - off, "%s%s%s\n", it->path,
                         it->path[0] ? ": " : "", it->message);
        if (n > 0)
            off += (size_t)n;
    }
    return out;
}

/* ---- JSON ------------------------------------------------------------ */

/*
 * Walks one of our paths ("services[2].routes[0].paths[1]") a segment at a
 * time: a key ("services") or an index ("[2]").
 */
typedef struct {
    const char *p;
    bool is_index;
    size_t index;
    char key[256];
} lm__seg_t;

static bool lm__seg_next(lm__seg_t *s)
{
    const char *p = s->p;
    if (*p == '.')
        p++;
    if (*p == '\0')
        return false;
    if (*p == '[') {
        p++;
        size_t v = 0;
        while (*p >= '0' && *p <= '9') {
            if (v < (size_t)1 << 30)
                v = v * 10 + (size_t)(*p - '0');
            p++;
        }
        if (*p == ']')
            p++;
        s->is_index = true;
        s->index = v;
        s->p = p;
        return true;
    }
    size_t n = 0;
    while (*p && *p != '.' && *p != '[') {
        if (n + 1 < sizeof(s->key))
            s->key[n++] = *p;
        p++;
    }
    s->key[n] = '\0';
    s->is_index = false;
    s->p = p;
    return true;
}

/* "paths[1].x" -> "paths.2.x" (Kong: dots and 1-based array positions) */
static char *lm__kong_field(const char *field)
{
    size_t cap = strlen(field) * 2 + 16;
    char *out = lm__err_xalloc(cap);
    size_t off = 0;
    lm__seg_t s = { .p = field };
    bool first = true;
    while (lm__seg_next(&s)) {
        int n = s.is_index ? snprintf(out + off, cap - off, "%s%zu", first ? "" : ".", s.index + 1)
                           : snprintf(out + off, cap - off, "%s%s", first ? "" : ".", s.key);
        if (n > 0 && (size_t)n < cap - off)
            off += (size_t)n;
        first = false;
    }
    out[off] = '\0';
    return out;
}

/*
 * The item at `index` of a "fields" array, padding with nulls. Arrays built
 * here keep their size in valueint (cJSON does not use it for arrays) and
 * errors come mostly in document order, so the common case is the last
 * item (child->prev) or a new one: no quadratic walks.
 */
static cJSON *lm__array_slot(cJSON *arr, size_t index)
{
    if (!cJSON_IsArray(arr) || index > 1000000)
        return NULL;
    size_t size = (size_t)arr->valueint;
    while (size <= index) {
        cJSON_AddItemToArray(arr, cJSON_CreateNull());
        size++;
    }
    arr->valueint = (int)size;
    if (index + 1 == size)
        return arr->child->prev;
    cJSON *c = arr->child;
    for (size_t i = 0; i < index && c; i++)
        c = c->next;
    return c;
}

/* returns the child container of `node` for segment s, creating it as the
 * kind the next segment needs (array when next is an index) */
static cJSON *lm__fields_child(cJSON *node, const lm__seg_t *s, bool next_is_index)
{
    cJSON *child;
    if (s->is_index) {
        child = lm__array_slot(node, s->index);
        if (child == NULL)
            return NULL;
        if (cJSON_IsNull(child)) {
            /* turn the null placeholder into the container, in place */
            child->type = next_is_index ? cJSON_Array : cJSON_Object;
            child->valueint = 0;
        }
    } else {
        if (!cJSON_IsObject(node))
            return NULL;
        child = cJSON_GetObjectItemCaseSensitive(node, s->key);
        if (child == NULL) {
            child = next_is_index ? cJSON_CreateArray() : cJSON_CreateObject();
            cJSON_AddItemToObject(node, s->key, child);
        }
    }
    if (next_is_index ? !cJSON_IsArray(child) : !cJSON_IsObject(child))
        return NULL;
    return child;
}

static void lm__fields_add(cJSON *fields, const lm_config_error_t *it)
{
    lm__seg_t segs[64];
    size_t n = 0;
    lm__seg_t s = { .p = it->path };
    while (n < LM_ARRAY_SIZE(segs) && lm__seg_next(&s))
        segs[n++] = s;
    bool entity_level = it->entity_type != NULL && it->field == NULL;
    if (n == 0) {
        cJSON *ent = cJSON_GetObjectItemCaseSensitive(fields, "@entity");
        if (ent == NULL)
            ent = cJSON_AddArrayToObject(fields, "@entity");
        if (cJSON_IsArray(ent))
            cJSON_AddItemToArray(ent, cJSON_CreateString(it->message));
        return;
    }
    cJSON *node = fields;
    size_t last = entity_level ? n : n - 1;
    for (size_t i = 0; i < last && node; i++) {
        bool next_is_index = (i + 1 < n) ? segs[i + 1].is_index : false;
        if (entity_level && i + 1 == n)
            next_is_index = false;
        node = lm__fields_child(node, &segs[i], next_is_index);
    }
    if (node == NULL)
        return;
    if (entity_level) {
        cJSON *ent = cJSON_GetObjectItemCaseSensitive(node, "@entity");
        if (ent == NULL)
            ent = cJSON_AddArrayToObject(node, "@entity");
        if (cJSON_IsArray(ent))
            cJSON_AddItemToArray(ent, cJSON_CreateString(it->message));
        return;
    }
    const lm__seg_t *leaf = &segs[n - 1];
    if (leaf->is_index) {
        cJSON *slot = lm__array_slot(node, leaf->index);
        if (slot && cJSON_IsNull(slot)) {
            size_t mlen = strlen(it->message) + 1;
            slot->valuestring = cJSON_malloc(mlen);
            memcpy(slot->valuestring, it->message, mlen);
            slot->type = cJSON_String;
        }
    } else if (cJSON_IsObject(node) && !cJSON_GetObjectItemCaseSensitive(node, leaf->key)) {
        cJSON_AddStringToObject(node, leaf->key, it->message);
    }
}

/* the path of the entity an error belongs to: path minus ".field" */
static size_t lm__entity_path_len(const lm_config_error_t *it)
{
    size_t plen = strlen(it->path);
    if (it->field == NULL)
        return plen;
    size_t flen = strlen(it->field);
    if (flen > plen)
        return plen;
    size_t n = plen - flen;
    if (n > 0 && it->path[n - 1] == '.')
        n--;
    return n;
}

cJSON *lm_config_errors_to_json(const lm_config_errors_t *e)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "code", 14);
    cJSON_AddStringToObject(root, "name", "invalid declarative configuration");
    cJSON *fields = cJSON_CreateObject();
    cJSON *flat = cJSON_CreateArray();

    for (size_t i = 0; i < e->count; i++) {
        const lm_config_error_t *it = &e->items[i];
        lm__fields_add(fields, it);
        if (it->entity_type == NULL)
            continue;
        /* group with the previous errors of the same entity */
        size_t elen = lm__entity_path_len(it);
        cJSON *group = NULL, *g;
        cJSON *lastg = flat->child ? flat->child->prev : NULL;
        const char *lp = lastg ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(lastg, "entity_path")) : NULL;
        if (lp && strlen(lp) == elen && strncmp(lp, it->path, elen) == 0)
            group = lastg;
        cJSON *scan = group ? NULL : flat;
        cJSON_ArrayForEach(g, scan) {
            const char *gp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "entity_path"));
            if (gp && strlen(gp) == elen && strncmp(gp, it->path, elen) == 0) {
                group = g;
                break;
            }
        }
        if (group == NULL) {
            group = cJSON_CreateObject();
            char *ep = lm__err_xalloc(elen + 1);
            memcpy(ep, it->path, elen);
            ep[elen] = '\0';
            cJSON_AddStringToObject(group, "entity_path", ep);
            free(ep);
            cJSON_AddStringToObject(group, "entity_type", it->entity_type);
            if (it->entity_name)
                cJSON_AddStringToObject(group, "entity_name", it->entity_name);
            if (it->entity_id)
                cJSON_AddStringToObject(group, "entity_id", it->entity_id);
            if (it->num_entity_tags) {
                cJSON *tags = cJSON_AddArrayToObject(group, "entity_tags");
                for (size_t t = 0; t < it->num_entity_tags; t++)
                    cJSON_AddItemToArray(tags, cJSON_CreateString(it->entity_tags[t]));
            }
            cJSON_AddArrayToObject(group, "errors");
            cJSON_AddItemToArray(flat, group);
        }
        cJSON *one = cJSON_CreateObject();
        if (it->field) {
            char *kf = lm__kong_field(it->field);
            cJSON_AddStringToObject(one, "field", kf);
            free(kf);
            cJSON_AddStringToObject(one, "type", "field");
        } else {
            cJSON_AddStringToObject(one, "type", "entity");
        }
        cJSON_AddStringToObject(one, "message", it->message);
        cJSON_AddStringToObject(one, "path", it->path);
        cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(group, "errors"), one);
    }

    char *summary = cJSON_PrintUnformatted(fields);
    size_t mlen = strlen(summary ? summary : "{}") + 64;
    char *msg = lm__err_xalloc(mlen);
    snprintf(msg, mlen, "declarative config is invalid: %s", summary ? summary : "{}");
    cJSON_AddStringToObject(root, "message", msg);
    free(msg);
    cJSON_free(summary);
    cJSON_AddItemToObject(root, "fields", fields);
    cJSON_AddItemToObject(root, "flattened_errors", flat);
    return root;
}

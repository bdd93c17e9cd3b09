/*
 * kube_cache.c - the informers' object store.
 *
 * Each cached object is "frozen": once parsed and trimmed, its cJSON tree is
 * copied into one malloc'd block (entry header, "ns/name" key, every node,
 * every value string), and its member names point into a small table of
 * interned names shared by the informer ("metadata", "name", "addresses"...).
 * Against a tree of separately malloc'd nodes and strings this saves about
 * 40% (no per-allocation overhead, no duplicate names): cJSON nodes are 64
 * bytes and an EndpointSlice has ~60 of them, which is what decides whether
 * 16,000 objects fit the controller's memory budget.
 *
 * A frozen tree is read with the normal cJSON API (cJSON_Duplicate copies
 * names and strings, so duplicates do not point back here); it must never be
 * given to cJSON_Delete or modified: the cache frees the block.
 */
#include "kube_internal.h"

#include <stdio.h>
#include <stdlib.h>

#define LM__INTERN_MAX_LEN 64    /* longer member names are copied per object */
#define LM__INTERN_MAX_COUNT 4096 /* user-defined keys (labels, data) must not grow it forever */

void lm__kcache_init(lm__kcache_t *c)
{
    memset(c, 0, sizeof(*c));
    lm_map_init(&c->map);
    lm_map_init(&c->names);
}

void lm__kcache_free(lm__kcache_t *c)
{
    for (size_t i = 0; i < c->map.cap; i++)
        if (c->map.slots[i].key.ptr)
            free(c->map.slots[i].value);
    lm_map_free(&c->map);
    for (size_t i = 0; i < c->names.cap; i++)
        if (c->names.slots[i].key.ptr)
            free(c->names.slots[i].value);
    lm_map_free(&c->names);
}

bool lm__kcache_key(char *buf, size_t cap, const char *ns, const char *name, size_t *len)
{
    int n = ns && ns[0] ? snprintf(buf, cap, "%s/%s", ns, name) : snprintf(buf, cap, "%s", name);
    if (n < 0 || (size_t)n >= cap)
        return false;
    *len = (size_t)n;
    return true;
}

void lm__kcache_prepare(cJSON *obj, const char *kind, const char *api_version)
{
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    if (cJSON_IsObject(meta)) {
        cJSON_DeleteItemFromObjectCaseSensitive(meta, "managedFields");
        cJSON *ann = cJSON_GetObjectItemCaseSensitive(meta, "annotations");
        if (cJSON_IsObject(ann)) {
            cJSON *la = cJSON_DetachItemFromObjectCaseSensitive(ann, "kubectl.kubernetes.io/last-applied-configuration");
            if (la) {
                cJSON_Delete(la);
                if (!ann->child)
                    cJSON_DeleteItemFromObjectCaseSensitive(meta, "annotations");
            }
        }
    }
    const char *set[2][2] = { { "kind", kind }, { "apiVersion", api_version } };
    for (size_t i = 0; i < 2; i++) {
        if (!set[i][1])
            continue;
        cJSON *cur = cJSON_GetObjectItemCaseSensitive(obj, set[i][0]);
        if (cJSON_IsString(cur) && strcmp(cur->valuestring, set[i][1]) == 0)
            continue;
        cJSON *v = cJSON_CreateString(set[i][1]);
        if (!v)
            continue;
        if (cur)
            cJSON_ReplaceItemViaPointer(obj, cur, v);
        else
            cJSON_AddItemToObject(obj, set[i][0], v);
    }
}

/* The interned copy of a member name (added when there is room), or NULL. */
static const char *lm__intern(lm__kcache_t *c, const char *s)
{
    size_t len = strlen(s);
    if (len > LM__INTERN_MAX_LEN)
        return NULL;
    const char *got = lm_map_get(&c->names, (lm_str_t){ s, len });
    if (got || c->names.count >= LM__INTERN_MAX_COUNT)
        return got;
    char *d = malloc(len + 1);
    if (!d)
        return NULL;
    memcpy(d, s, len + 1);
    lm_map_put(&c->names, (lm_str_t){ d, len }, d);
    return d;
}

/* Nodes and string bytes the frozen copy of the list starting at n needs. */
static void lm__measure(lm__kcache_t *c, const cJSON *n, bool siblings, size_t *nodes, size_t *bytes)
{
    for (; n; n = siblings ? n->next : NULL) {
        (*nodes)++;
        if (n->string && !lm__intern(c, n->string))
            *bytes += strlen(n->string) + 1;
        if (n->valuestring)
            *bytes += strlen(n->valuestring) + 1;
        if (n->child)
            lm__measure(c, n->child, true, nodes, bytes);
    }
}

static char *lm__put_str(char **strs, const char *s)
{
    size_t len = strlen(s) + 1;
    char *d = *strs;
    memcpy(d, s, len);
    *strs += len;
    return d;
}

/* Copies the list starting at n (only n when !siblings); returns its first node. */
static cJSON *lm__copy(lm__kcache_t *c, const cJSON *n, bool siblings, cJSON **nodes, char **strs)
{
    cJSON *first = NULL, *prev = NULL;
    for (; n; n = siblings ? n->next : NULL) {
        cJSON *d = (*nodes)++;
        memset(d, 0, sizeof(*d));
        d->type = n->type & ~(cJSON_IsReference | cJSON_StringIsConst);
        d->valueint = n->valueint;
        d->valuedouble = n->valuedouble;
        if (n->valuestring)
            d->valuestring = lm__put_str(strs, n->valuestring);
        if (n->string) {
            const char *in = lm__intern(c, n->string);
            d->string = in ? (char *)in : lm__put_str(strs, n->string);
        }
        if (n->child)
            d->child = lm__copy(c, n->child, true, nodes, strs);
        if (prev) {
            prev->next = d;
            d->prev = prev;
        } else {
            first = d;
        }
        prev = d;
    }
    if (first && siblings)
        first->prev = prev; /* as cJSON keeps lists: the first's prev is the last */
    return first;
}

lm__kentry_t *lm__kcache_freeze(lm__kcache_t *c, const char *key, size_t kl, const cJSON *tree)
{
    size_t nodes = 0, bytes = 0;
    lm__measure(c, tree, false, &nodes, &bytes);
    size_t head = (sizeof(lm__kentry_t) + kl + 1 + 7) & ~(size_t)7;
    lm__kentry_t *e = malloc(head + nodes * sizeof(cJSON) + bytes);
    if (!e)
        return NULL;
    e->gen = e->w = 0;
    e->key_len = kl;
    memcpy(e->key, key, kl);
    e->key[kl] = '\0';
    cJSON *np = (cJSON *)(void *)((char *)e + head);
    char *sp = (char *)(np + nodes);
    e->obj = lm__copy(c, tree, false, &np, &sp);
    return e;
}

lm__kentry_t *lm__kcache_get(const lm__kcache_t *c, const char *key, size_t kl)
{
    return lm_map_get(&c->map, (lm_str_t){ key, kl });
}

lm__kentry_t *lm__kcache_put(lm__kcache_t *c, lm__kentry_t *e)
{
    /* the map keeps the first key pointer it got: take the old entry out first */
    lm__kentry_t *old = lm_map_del(&c->map, (lm_str_t){ e->key, e->key_len });
    lm_map_put(&c->map, (lm_str_t){ e->key, e->key_len }, e);
    return old;
}

lm__kentry_t *lm__kcache_del(lm__kcache_t *c, const char *key, size_t kl)
{
    return lm_map_del(&c->map, (lm_str_t){ key, kl });
}

/* namespace first, then name: "a/x" < "a-b/y" although '-' < '/' */
static int lm__key_cmp(const void *a, const void *b)
{
    const char *ka = (*(lm__kentry_t *const *)a)->key, *kb = (*(lm__kentry_t *const *)b)->key;
    const char *sa = strchr(ka, '/'), *sb = strchr(kb, '/');
    size_t na = sa ? (size_t)(sa - ka) : 0, nb = sb ? (size_t)(sb - kb) : 0;
    int r = memcmp(ka, kb, LM_MIN(na, nb));
    if (r == 0 && na != nb)
        r = na < nb ? -1 : 1;
    if (r == 0)
        r = strcmp(sa ? sa + 1 : ka, sb ? sb + 1 : kb);
    return r;
}

size_t lm__kcache_sorted(const lm__kcache_t *c, const cJSON ***items)
{
    *items = NULL;
    size_t n = c->map.count;
    if (!n)
        return 0;
    lm__kentry_t **es = malloc(n * sizeof(*es));
    const cJSON **out = malloc(n * sizeof(*out));
    if (!es || !out) {
        free(es);
        free(out);
        return 0;
    }
    size_t j = 0;
    for (size_t i = 0; i < c->map.cap && j < n; i++)
        if (c->map.slots[i].key.ptr)
            es[j++] = c->map.slots[i].value;
    qsort(es, j, sizeof(*es), lm__key_cmp);
    for (size_t i = 0; i < j; i++)
        out[i] = es[i]->obj;
    free(es);
    *items = out;
    return j;
}

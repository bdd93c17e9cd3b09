/* map.c - see lm_map.h. Linear probing with backward-shift deletion. */
#include "lm_map.h"

#include <stdlib.h>
#include <stdio.h>

void lm_map_init(lm_map_t *m)
{
    m->slots = NULL;
    m->cap = 0;
    m->count = 0;
}

void lm_map_free(lm_map_t *m)
{
    free(m->slots);
    lm_map_init(m);
}

uint64_t lm_hash(const void *data, size_t len)
{
    /* FNV-1a 64 with a final avalanche (keys are short: hosts, names) */
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static lm_map_slot_t *lm__find(const lm_map_t *m, lm_str_t key, uint64_t h)
{
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        lm_map_slot_t *s = &m->slots[i];
        if (s->key.ptr == NULL || (s->hash == h && lm_str_eq(s->key, key)))
            return s;
    }
}

static void lm__grow(lm_map_t *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 16;
    lm_map_slot_t *old = m->slots;
    size_t ocap = m->cap;
    m->slots = calloc(ncap, sizeof(*m->slots));
    if (m->slots == NULL) {
        fprintf(stderr, "limen: out of memory\n");
        abort();
    }
    m->cap = ncap;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].key.ptr)
            *lm__find(m, old[i].key, old[i].hash) = old[i];
    free(old);
}

void *lm_map_get(const lm_map_t *m, lm_str_t key)
{
    if (m->count == 0)
        return NULL;
    lm_map_slot_t *s = lm__find(m, key, lm_hash(key.ptr, key.len));
    return s->key.ptr ? s->value : NULL;
}

void *lm_map_put(lm_map_t *m, lm_str_t key, void *value)
{
    if ((m->count + 1) * 4 > m->cap * 3)
        lm__grow(m);
    uint64_t h = lm_hash(key.ptr, key.len);
    lm_map_slot_t *s = lm__find(m, key, h);
    if (s->key.ptr) {
        void *prev = s->value;
        s->value = value;
        return prev;
    }
    if (key.ptr == NULL)
        key.ptr = ""; /* an empty key still needs a non-NULL marker */
    s->key = key;
    s->hash = h;
    s->value = value;
    m->count++;
    return NULL;
}

void *lm_map_del(lm_map_t *m, lm_str_t key)
{
    if (m->count == 0)
        return NULL;
    size_t mask = m->cap - 1;
    lm_map_slot_t *s = lm__find(m, key, lm_hash(key.ptr, key.len));
    if (s->key.ptr == NULL)
        return NULL;
    void *value = s->value;
    size_t i = (size_t)(s - m->slots);
    /* backward-shift: move later entries of the cluster into the hole */
    for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
        lm_map_slot_t *t = &m->slots[j];
        if (t->key.ptr == NULL)
            break;
        size_t home = t->hash & mask;
        /* can t move to i? only if home is not in (i, j] cyclically */
        bool between = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!between) {
            m->slots[i] = *t;
            i = j;
        }
    }
    m->slots[i].key = LM_STR_NULL;
    m->slots[i].value = NULL;
    m->count--;
    return value;
}

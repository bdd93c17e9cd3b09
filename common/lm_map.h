/*
 * lm_map.h - a small open-addressing hash map from byte strings to pointers.
 * Keys are not copied: they must outlive the map (arena or entity memory).
 * Not thread-safe. Grows by doubling; memory from malloc (lm_map_free).
 */
#ifndef LM_MAP_H
#define LM_MAP_H

#include "lm_core.h"

typedef struct {
    lm_str_t key;
    uint64_t hash;
    void *value;
} lm_map_slot_t;

typedef struct {
    lm_map_slot_t *slots;
    size_t cap;   /* power of two, 0 when empty */
    size_t count;
} lm_map_t;

void lm_map_init(lm_map_t *m);
void lm_map_free(lm_map_t *m);
uint64_t lm_hash(const void *data, size_t len);
/* Returns the value or NULL. */
void *lm_map_get(const lm_map_t *m, lm_str_t key);
/* Inserts or replaces; returns the previous value or NULL. */
void *lm_map_put(lm_map_t *m, lm_str_t key, void *value);
/* Removes; returns the value or NULL. */
void *lm_map_del(lm_map_t *m, lm_str_t key);

/* iteration: for (size_t i = 0; i < m->cap; i++) if (m->slots[i].key.ptr) ... */

#endif

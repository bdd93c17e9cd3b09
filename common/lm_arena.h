/*
 * lm_arena.h - region allocator for per-request, per-connection and
 * per-snapshot memory. Everything allocated from an arena is freed at once
 * by lm_arena_reset() or lm_arena_destroy(); cleanups registered with
 * lm_arena_on_free() run first, newest first.
 *
 * Not thread-safe: one arena belongs to one thread at a time.
 * Allocation failure aborts the process (out of memory is not recoverable
 * for a proxy in a meaningful way, and it keeps every caller simple).
 */
#ifndef LM_ARENA_H
#define LM_ARENA_H

#include "lm_core.h"

typedef struct lm_arena lm_arena_t;

/* chunk_size: size of each block requested from malloc (0 = 4 KiB). */
lm_arena_t *lm_arena_create(size_t chunk_size);
void lm_arena_destroy(lm_arena_t *a);
/* Frees everything but the first block, which is kept for reuse. */
void lm_arena_reset(lm_arena_t *a);

void *lm_arena_alloc(lm_arena_t *a, size_t size);  /* 16-byte aligned */
void *lm_arena_calloc(lm_arena_t *a, size_t size); /* zeroed */
char *lm_arena_strndup(lm_arena_t *a, const char *s, size_t len); /* NUL-terminated */
char *lm_arena_strdup(lm_arena_t *a, const char *s);
lm_str_t lm_arena_strdup_str(lm_arena_t *a, lm_str_t s); /* copy, NUL-terminated */
char *lm_arena_sprintf(lm_arena_t *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Runs fn(data) when the arena is reset or destroyed. */
void lm_arena_on_free(lm_arena_t *a, void (*fn)(void *data), void *data);

/* Bytes handed out since creation or the last reset (for metrics). */
size_t lm_arena_used(const lm_arena_t *a);

#endif /* LM_ARENA_H */

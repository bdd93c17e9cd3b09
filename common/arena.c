/* arena.c - see lm_arena.h */
#include "lm_arena.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct lm_arena_block {
    struct lm_arena_block *next;
    size_t size; /* usable bytes in data[] */
    size_t used;
    _Alignas(16) char data[];
} lm_arena_block_t;

typedef struct lm_arena_cleanup {
    struct lm_arena_cleanup *next;
    void (*fn)(void *);
    void *data;
} lm_arena_cleanup_t;

struct lm_arena {
    lm_arena_block_t *head; /* current block; older blocks follow */
    lm_arena_cleanup_t *cleanups;
    size_t chunk_size;
    size_t used;
};

static void *lm__xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) {
        fprintf(stderr, "limen: out of memory allocating %zu bytes\n", n);
        abort();
    }
    return p;
}

static lm_arena_block_t *lm__block_new(size_t size)
{
    lm_arena_block_t *b = lm__xmalloc(sizeof(*b) + size);
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

lm_arena_t *lm_arena_create(size_t chunk_size)
{
    lm_arena_t *a = lm__xmalloc(sizeof(*a));
    a->chunk_size = chunk_size ? chunk_size : 4096;
    a->head = lm__block_new(a->chunk_size);
    a->cleanups = NULL;
    a->used = 0;
    return a;
}

static void lm__run_cleanups(lm_arena_t *a)
{
    while (a->cleanups) {
        lm_arena_cleanup_t *c = a->cleanups;
        a->cleanups = c->next;
        c->fn(c->data);
    }
}

void lm_arena_reset(lm_arena_t *a)
{
    lm__run_cleanups(a);
    lm_arena_block_t *b = a->head;
    /* keep the oldest block (the last in the list): it has the chunk size */
    while (b->next) {
        lm_arena_block_t *next = b->next;
        free(b);
        b = next;
    }
    b->used = 0;
    a->head = b;
    a->used = 0;
}

void lm_arena_destroy(lm_arena_t *a)
{
    if (a == NULL)
        return;
    lm__run_cleanups(a);
    lm_arena_block_t *b = a->head;
    while (b) {
        lm_arena_block_t *next = b->next;
        free(b);
        b = next;
    }
    free(a);
}

void *lm_arena_alloc(lm_arena_t *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    if (size == 0)
        size = 16;
    lm_arena_block_t *b = a->head;
    if (b->size - b->used < size) {
        if (size > a->chunk_size / 4) {
            /* large: its own block, linked behind the current one */
            lm_arena_block_t *big = lm__block_new(size);
            big->used = size;
            big->next = b->next;
            b->next = big;
            a->used += size;
            return big->data;
        }
        b = lm__block_new(a->chunk_size);
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    a->used += size;
    return p;
}

void *lm_arena_calloc(lm_arena_t *a, size_t size)
{
    void *p = lm_arena_alloc(a, size);
    memset(p, 0, size);
    return p;
}

char *lm_arena_strndup(lm_arena_t *a, const char *s, size_t len)
{
    char *p = lm_arena_alloc(a, len + 1);
    if (len)
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *lm_arena_strdup(lm_arena_t *a, const char *s)
{
    return lm_arena_strndup(a, s, strlen(s));
}

lm_str_t lm_arena_strdup_str(lm_arena_t *a, lm_str_t s)
{
    return (lm_str_t){ lm_arena_strndup(a, s.ptr, s.len), s.len };
}

char *lm_arena_sprintf(lm_arena_t *a, const char *fmt, ...)
{
    va_list ap;
    char tmp[128];
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    char *p = lm_arena_alloc(a, (size_t)n + 1);
    if ((size_t)n < sizeof(tmp)) {
        memcpy(p, tmp, (size_t)n + 1);
        return p;
    }
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void lm_arena_on_free(lm_arena_t *a, void (*fn)(void *data), void *data)
{
    lm_arena_cleanup_t *c = lm_arena_alloc(a, sizeof(*c));
    c->fn = fn;
    c->data = data;
    c->next = a->cleanups;
    a->cleanups = c;
}

size_t lm_arena_used(const lm_arena_t *a)
{
    return a->used;
}

/* map_test.c - unit tests for lm_map and lm_arena */
#include "lm_arena.h"
#include "lm_map.h"
#include "lm_test.h"

#include <stdio.h>

LM_TEST(test_map_put_get_del)
{
    lm_map_t m;
    lm_map_init(&m);
    static char keys[2000][16];
    for (int i = 0; i < 2000; i++) {
        snprintf(keys[i], sizeof(keys[i]), "key-%d", i);
        LM_CHECK(lm_map_put(&m, lm_str(keys[i]), (void *)(intptr_t)(i + 1)) == NULL);
    }
    LM_CHECK_EQ_INT(m.count, 2000);
    for (int i = 0; i < 2000; i++)
        LM_CHECK_EQ_INT((intptr_t)lm_map_get(&m, lm_str(keys[i])), i + 1);
    for (int i = 0; i < 2000; i += 2)
        LM_CHECK_EQ_INT((intptr_t)lm_map_del(&m, lm_str(keys[i])), i + 1);
    for (int i = 0; i < 2000; i++)
        LM_CHECK_EQ_INT((intptr_t)lm_map_get(&m, lm_str(keys[i])), (i % 2) ? i + 1 : 0);
    LM_CHECK(lm_map_get(&m, LM_STR("nope")) == NULL);
    LM_CHECK((intptr_t)lm_map_put(&m, lm_str(keys[1]), (void *)7) == 2);
    LM_CHECK_EQ_INT(m.count, 1000);
    lm_map_free(&m);
}

static int lm__cleanups;
static void lm__count_cleanup(void *p) { lm__cleanups += (int)(intptr_t)p; }

LM_TEST(test_arena)
{
    lm_arena_t *a = lm_arena_create(256);
    char *s = lm_arena_strdup(a, "hello");
    LM_CHECK_STR(s, "hello");
    void *big = lm_arena_alloc(a, 10000); /* larger than a chunk */
    memset(big, 1, 10000);
    for (int i = 0; i < 100; i++) {
        char *p = lm_arena_alloc(a, 24);
        LM_CHECK(((uintptr_t)p & 15) == 0);
    }
    LM_CHECK_STR(lm_arena_sprintf(a, "%d-%s", 42, "x"), "42-x");
    lm_arena_on_free(a, lm__count_cleanup, (void *)1);
    lm_arena_on_free(a, lm__count_cleanup, (void *)2);
    lm_arena_reset(a);
    LM_CHECK_EQ_INT(lm__cleanups, 3);
    LM_CHECK_EQ_INT(lm_arena_used(a), 0);
    LM_CHECK_STR(lm_arena_strdup(a, "again"), "again");
    lm_arena_destroy(a);
}

int main(void)
{
    LM_RUN(test_map_put_get_del);
    LM_RUN(test_arena);
    return lm_test_summary("map+arena");
}

/* ratelimit_store_test.c - unit tests of the shared fixed-window counters:
 * Kong's windows, limits held exactly by concurrent threads, a new window
 * starting afresh, take-backs, eviction, the period-order check. */
#include "ratelimit_store.c"

#include "lm_test.h"

#include <pthread.h>
#include <stdlib.h>

LM_TEST(test_windows)
{
    int64_t w[LM_RL_PERIODS];
    lm_rl_windows(1700000123, w); /* 2023-11-14T22:15:23Z */
    LM_CHECK(w[LM_RL_SECOND] == 1700000123);
    LM_CHECK(w[LM_RL_MINUTE] == 1700000100);
    LM_CHECK(w[LM_RL_HOUR] == 1699999200);
    LM_CHECK(w[LM_RL_DAY] == 1699920000);
    LM_CHECK(w[LM_RL_MONTH] == 1698796800); /* 2023-11-01 */
    LM_CHECK(w[LM_RL_YEAR] == 1672531200);  /* 2023-01-01 */
    lm_rl_windows(1704067199, w);           /* the last second of 2023 */
    LM_CHECK(w[LM_RL_YEAR] == 1672531200 && w[LM_RL_MONTH] == 1701388800);
    lm_rl_windows(1704067200, w);
    LM_CHECK(w[LM_RL_YEAR] == 1704067200 && w[LM_RL_MONTH] == 1704067200);
}

static lm_rl_table_t *lm__t;
static _Atomic int lm__granted;

static void *lm__worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        lm_rl_slot_t *s = lm_rl_slot(lm__t, 42, 100);
        uint64_t after;
        if (lm_rl_add(s, LM_RL_MINUTE, 60, 1, 777, &after))
            atomic_fetch_add(&lm__granted, 1);
    }
    return NULL;
}

LM_TEST(test_exact_under_threads)
{
    lm__t = calloc(1, sizeof(*lm__t));
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, lm__worker, NULL);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    LM_CHECK_EQ_INT(atomic_load(&lm__granted), 777);
    lm_rl_slot_t *s = lm_rl_slot(lm__t, 42, 100);
    LM_CHECK(lm_rl_count(s, LM_RL_MINUTE, 60) == 777);
    LM_CHECK(lm_rl_count(s, LM_RL_MINUTE, 120) == 0); /* the next window starts afresh */
    uint64_t after;
    LM_CHECK(lm_rl_add(s, LM_RL_MINUTE, 120, 1, 777, &after) && after == 1);
    lm_rl_sub(s, LM_RL_MINUTE, 120, 1);
    LM_CHECK(lm_rl_count(s, LM_RL_MINUTE, 120) == 0);
    lm_rl_sub(s, LM_RL_MINUTE, 60, 5); /* an old window: nothing to take back */
    LM_CHECK(lm_rl_count(s, LM_RL_MINUTE, 120) == 0);
    LM_CHECK(!lm_rl_add(s, LM_RL_MINUTE, 120, 3, 2.5, &after) && after == 0);
    LM_CHECK(lm_rl_add(s, LM_RL_MINUTE, 120, 5, -1, &after) && after == 5); /* no limit */
    free(lm__t);
}

LM_TEST(test_eviction)
{
    lm_rl_table_t *t = calloc(1, sizeof(*t));
    /* more keys than one probe run holds, all landing on the same start slot */
    lm_rl_slot_t *first = lm_rl_slot(t, 1ull << 20, 10);
    uint64_t after;
    lm_rl_add(first, LM_RL_SECOND, 10, 1, -1, &after);
    for (uint64_t k = 2; k <= LM__PROBE; k++)
        lm_rl_slot(t, k << 20, 20);
    lm_rl_slot_t *s = lm_rl_slot(t, 99ull << 20, 30); /* evicts the oldest: the first */
    LM_CHECK(s == first);
    LM_CHECK(lm_rl_count(s, LM_RL_SECOND, 10) == 0);
    LM_CHECK(lm_rl_slot(t, 99ull << 20, 31) == s);
    free(t);
}

LM_TEST(test_order_and_keys)
{
    double l[LM_RL_PERIODS] = { 5, 10, -1, -1, -1, 100 };
    LM_CHECK(lm_rl_check_order(l) == NULL);
    l[LM_RL_MINUTE] = 3;
    LM_CHECK_STR(lm_rl_check_order(l), "the limit for minute(3.0) cannot be lower than the limit for second(5.0)");
    lm_str_t a[2] = { LM_STR("ab"), LM_STR("c") }, b[2] = { LM_STR("a"), LM_STR("bc") };
    LM_CHECK(lm_rl_key(a, 2) != lm_rl_key(b, 2));
    LM_CHECK(lm_rl_key(a, 2) == lm_rl_key(a, 2) && lm_rl_key(a, 2) != 0);
}

int main(void)
{
    LM_RUN(test_windows);
    LM_RUN(test_exact_under_threads);
    LM_RUN(test_eviction);
    LM_RUN(test_order_and_keys);
    return lm_test_summary("ratelimit_store");
}

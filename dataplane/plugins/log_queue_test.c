/* log_queue_test.c - unit tests of the logging plugins' queues: batching by
 * size and by coalescing delay, the oldest entries dropped when full, retries
 * with exponential backoff, giving up after max_retry_time, the flush at
 * exit and one queue per configuration. */
#include "log_queue.c"

#include "lm_test.h"

#include <stdlib.h>

static pthread_mutex_t lm__mu = PTHREAD_MUTEX_INITIALIZER;
static size_t lm__batches[64], lm__nbatches;
static char lm__got[64][16];
static size_t lm__ngot;
static uint64_t lm__times[64];
static size_t lm__ntimes;
static int lm__fail_first; /* fail this many sends, then succeed; -1: always fail */
static _Atomic int lm__gate;  /* 1: sends wait until it is 0 */

static int lm__send_fn(void *sink, char *const *e, const size_t *lens, size_t n, char *err, size_t errlen)
{
    (void)sink;
    while (atomic_load(&lm__gate))
        usleep(1000);
    pthread_mutex_lock(&lm__mu);
    if (lm__ntimes < 64)
        lm__times[lm__ntimes++] = lm_logq_now_ms();
    if (lm__fail_first != 0) {
        if (lm__fail_first > 0)
            lm__fail_first--;
        pthread_mutex_unlock(&lm__mu);
        snprintf(err, errlen, "refused");
        return -1;
    }
    if (lm__nbatches < 64)
        lm__batches[lm__nbatches++] = n;
    for (size_t i = 0; i < n && lm__ngot < 64; i++)
        snprintf(lm__got[lm__ngot++], sizeof(lm__got[0]), "%.*s", (int)lens[i], e[i]);
    pthread_mutex_unlock(&lm__mu);
    return 0;
}

static void *lm__sink_new_fn(const cJSON *c)
{
    (void)c;
    return malloc(1);
}

static const lm_logq_kind_t lm__k = { "test-log", lm__send_fn, lm__sink_new_fn, free };

static void lm__reset(void)
{
    pthread_mutex_lock(&lm__mu);
    lm__nbatches = lm__ngot = lm__ntimes = 0;
    lm__fail_first = 0;
    pthread_mutex_unlock(&lm__mu);
}

static size_t lm__count(void)
{
    pthread_mutex_lock(&lm__mu);
    size_t n = lm__ngot;
    pthread_mutex_unlock(&lm__mu);
    return n;
}

static bool lm__wait_count(size_t n, int ms)
{
    for (int i = 0; i < ms; i++) {
        if (lm__count() >= n)
            return true;
        usleep(1000);
    }
    return lm__count() >= n;
}

static lm_logq_t *lm__queue(const char *name, lm_logq_conf_t *c)
{
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(cfg, "name", name);
    lm_logq_t *q = lm_logq_get(&lm__k, cfg, c);
    cJSON_Delete(cfg);
    return q;
}

LM_TEST(test_batches_by_size_then_by_delay)
{
    lm__reset();
    lm_logq_conf_t c;
    lm_logq_conf_default(&c);
    c.max_batch_size = 4;
    c.max_coalescing_delay = 0.2;
    lm_logq_t *q = lm__queue("batches", &c);
    atomic_store(&lm__gate, 1); /* all ten are queued before the first send */
    uint64_t t0 = lm_logq_now_ms();
    for (int i = 0; i < 10; i++) {
        char b[8];
        snprintf(b, sizeof(b), "e%d", i);
        lm_logq_push(q, b, strlen(b));
    }
    atomic_store(&lm__gate, 0);
    LM_CHECK(lm__wait_count(10, 3000));
    LM_CHECK_EQ_INT(lm__nbatches, 3);
    LM_CHECK_EQ_INT(lm__batches[0], 4);
    LM_CHECK_EQ_INT(lm__batches[1], 4);
    LM_CHECK_EQ_INT(lm__batches[2], 2);
    LM_CHECK(lm__times[2] - t0 >= 150); /* the short batch waited for the delay */
    LM_CHECK_STR(lm__got[0], "e0");
    LM_CHECK_STR(lm__got[9], "e9");
    LM_CHECK_EQ_INT(atomic_load(&q->sent), 10);
}

LM_TEST(test_full_queue_drops_the_oldest)
{
    lm__reset();
    lm_logq_conf_t c;
    lm_logq_conf_default(&c);
    c.max_entries = 3;
    lm_logq_t *q = lm__queue("full", &c);
    atomic_store(&lm__gate, 1);
    lm_logq_push(q, "first", 5);
    for (int i = 0; i < 100 && q->count; i++) /* the sender took it and waits at the gate */
        usleep(1000);
    const char *more[] = { "a", "b", "c", "d", "e" };
    for (int i = 0; i < 5; i++)
        lm_logq_push(q, more[i], 1);
    LM_CHECK_EQ_INT(q->count, 3);
    LM_CHECK_EQ_INT(atomic_load(&q->dropped_full), 2);
    atomic_store(&lm__gate, 0);
    LM_CHECK(lm__wait_count(4, 3000));
    LM_CHECK_STR(lm__got[0], "first");
    LM_CHECK_STR(lm__got[1], "c");
    LM_CHECK_STR(lm__got[3], "e");
}

LM_TEST(test_max_bytes)
{
    lm__reset();
    lm_logq_conf_t c;
    lm_logq_conf_default(&c);
    c.max_bytes = 10;
    lm_logq_t *q = lm__queue("bytes", &c);
    atomic_store(&lm__gate, 1);
    lm_logq_push(q, "0123456789abc", 13); /* larger than max_bytes: never queued */
    LM_CHECK_EQ_INT(atomic_load(&q->dropped_full), 1);
    lm_logq_push(q, "x", 1);
    for (int i = 0; i < 100 && q->count; i++)
        usleep(1000);
    lm_logq_push(q, "123456", 6);
    lm_logq_push(q, "789012", 6); /* 12 > 10: the older one goes */
    LM_CHECK_EQ_INT(q->count, 1);
    LM_CHECK(q->bytes <= 10);
    atomic_store(&lm__gate, 0);
    LM_CHECK(lm__wait_count(2, 3000));
    LM_CHECK_STR(lm__got[1], "789012");
}

LM_TEST(test_retries_with_backoff)
{
    lm__reset();
    lm__fail_first = 3;
    lm_logq_conf_t c;
    lm_logq_conf_default(&c);
    c.initial_retry_delay = 0.02;
    lm_logq_t *q = lm__queue("retries", &c);
    lm_logq_push(q, "r", 1);
    LM_CHECK(lm__wait_count(1, 3000));
    LM_CHECK_EQ_INT(lm__ntimes, 4);
    uint64_t g1 = lm__times[1] - lm__times[0], g2 = lm__times[2] - lm__times[1], g3 = lm__times[3] - lm__times[2];
    LM_CHECK(g1 >= 18 && g2 >= 38 && g3 >= 78); /* 20, 40, 80 ms */
    LM_CHECK_EQ_INT(atomic_load(&q->batches_failed), 3);
    LM_CHECK_EQ_INT(atomic_load(&q->sent), 1);
}

LM_TEST(test_gives_up_after_max_retry_time)
{
    lm__reset();
    lm__fail_first = -1;
    lm_logq_conf_t c;
    lm_logq_conf_default(&c);
    c.initial_retry_delay = 0.01;
    c.max_retry_delay = 0.02;
    c.max_retry_time = 0.1;
    lm_logq_t *q = lm__queue("giveup", &c);
    lm_logq_push(q, "lost", 4);
    for (int i = 0; i < 2000 && !atomic_load(&q->dropped_failed); i++)
        usleep(1000);
    LM_CHECK_EQ_INT(atomic_load(&q->dropped_failed), 1);
    LM_CHECK(lm__ntimes >= 4 && lm__ntimes <= 12);
    pthread_mutex_lock(&lm__mu);
    lm__fail_first = 0;
    pthread_mutex_unlock(&lm__mu);
}

LM_TEST(test_one_queue_per_config)
{
    lm_logq_conf_t c;
    lm_logq_conf_default(&c);
    LM_CHECK(lm__queue("same", &c) == lm__queue("same", &c));
    LM_CHECK(lm__queue("same", &c) != lm__queue("other", &c));
}

LM_TEST(test_flush_at_exit)
{
    lm__reset();
    lm_logq_conf_t c;
    lm_logq_conf_default(&c);
    c.max_batch_size = 100;
    c.max_coalescing_delay = 30; /* would wait: the exit flushes it */
    lm_logq_t *q = lm__queue("exit", &c);
    for (int i = 0; i < 7; i++)
        lm_logq_push(q, "z", 1);
    uint64_t t = lm_logq_now_ms();
    lm_plugin_shared_free_all(); /* every queue: flushed, joined, freed */
    LM_CHECK(lm_logq_now_ms() - t < 2000);
    LM_CHECK_EQ_INT(lm__ngot, 7);
    LM_CHECK(lm__all == NULL);
}

int main(void)
{
    LM_RUN(test_batches_by_size_then_by_delay);
    LM_RUN(test_full_queue_drops_the_oldest);
    LM_RUN(test_max_bytes);
    LM_RUN(test_retries_with_backoff);
    LM_RUN(test_gives_up_after_max_retry_time);
    LM_RUN(test_one_queue_per_config);
    LM_RUN(test_flush_at_exit);
    return lm_test_summary("log_queue");
}

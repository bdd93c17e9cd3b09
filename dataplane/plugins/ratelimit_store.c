/* ratelimit_store.c - the fixed-window counters of lm_ratelimit.h. */
#include "lm_ratelimit.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

const char *const lm_rl_period_names[LM_RL_PERIODS] = { "second", "minute", "hour", "day", "month", "year" };
const char *const lm_rl_period_titles[LM_RL_PERIODS] = { "Second", "Minute", "Hour", "Day", "Month", "Year" };
const int64_t lm_rl_period_expiration[LM_RL_PERIODS] = { 1, 60, 3600, 86400, 2592000, 31536000 };

#define LM__PROBE 32

void lm_rl_windows(int64_t now, int64_t start[LM_RL_PERIODS])
{
    /* month and year need the calendar: computed once per second per thread */
    static __thread int64_t cached_day = -1, month_start, year_start;
    start[LM_RL_SECOND] = now;
    start[LM_RL_MINUTE] = now - now % 60;
    start[LM_RL_HOUR] = now - now % 3600;
    start[LM_RL_DAY] = now - now % 86400;
    if (start[LM_RL_DAY] != cached_day) {
        time_t t = (time_t)now;
        struct tm tm;
        gmtime_r(&t, &tm);
        tm.tm_mday = 1;
        tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
        month_start = (int64_t)timegm(&tm);
        tm.tm_mon = 0;
        year_start = (int64_t)timegm(&tm);
        cached_day = start[LM_RL_DAY];
    }
    start[LM_RL_MONTH] = month_start;
    start[LM_RL_YEAR] = year_start;
}

uint64_t lm_rl_key(const lm_str_t *parts, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a, then a final mix */
    for (size_t i = 0; i < n; i++) {
        if (i) {
            h ^= ':';
            h *= 1099511628211ull;
        }
        for (size_t k = 0; k < parts[i].len; k++) {
            h ^= (unsigned char)parts[i].ptr[k];
            h *= 1099511628211ull;
        }
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h ? h : 1;
}

lm_rl_slot_t *lm_rl_slot(lm_rl_table_t *t, uint64_t key, int64_t now)
{
    uint32_t mask = LM_RL_SLOTS - 1;
    uint32_t at = (uint32_t)key & mask;
    lm_rl_slot_t *oldest = NULL;
    uint64_t oldest_t = UINT64_MAX;
    for (uint32_t i = 0; i < LM__PROBE; i++) {
        lm_rl_slot_t *s = &t->slots[(at + i) & mask];
        uint64_t k = atomic_load_explicit(&s->key, memory_order_acquire);
        if (k == 0) {
            uint64_t zero = 0;
            if (atomic_compare_exchange_strong(&s->key, &zero, key) || zero == key) {
                atomic_store_explicit(&s->touched, (uint64_t)now, memory_order_relaxed);
                return s;
            }
            k = zero;
        }
        if (k == key) {
            if (atomic_load_explicit(&s->touched, memory_order_relaxed) != (uint64_t)now)
                atomic_store_explicit(&s->touched, (uint64_t)now, memory_order_relaxed);
            return s;
        }
        uint64_t tt = atomic_load_explicit(&s->touched, memory_order_relaxed);
        if (tt < oldest_t) {
            oldest_t = tt;
            oldest = s;
        }
    }
    /* every slot of the run is taken: the least recently used one is reused */
    uint64_t k = atomic_load_explicit(&oldest->key, memory_order_acquire);
    if (k != key && atomic_compare_exchange_strong(&oldest->key, &k, key)) {
        for (int p = 0; p < LM_RL_PERIODS; p++)
            atomic_store_explicit(&oldest->cell[p], 0, memory_order_relaxed);
    }
    atomic_store_explicit(&oldest->touched, (uint64_t)now, memory_order_relaxed);
    return oldest;
}

static inline uint64_t lm__count_in(uint64_t v, uint32_t win)
{
    return (uint32_t)(v >> 32) == win ? (v & 0xffffffffu) : 0;
}

uint64_t lm_rl_count(lm_rl_slot_t *s, int period, int64_t win)
{
    return lm__count_in(atomic_load_explicit(&s->cell[period], memory_order_acquire), (uint32_t)win);
}

bool lm_rl_add(lm_rl_slot_t *s, int period, int64_t win, uint64_t n, double limit, uint64_t *after)
{
    uint32_t w = (uint32_t)win;
    uint64_t v = atomic_load_explicit(&s->cell[period], memory_order_acquire);
    for (;;) {
        uint64_t cur = lm__count_in(v, w);
        if (limit >= 0 && (double)(cur + n) > limit) {
            *after = cur;
            return false;
        }
        uint64_t nc = cur + n > 0xffffffffu ? 0xffffffffu : cur + n;
        uint64_t nv = ((uint64_t)w << 32) | nc;
        if (atomic_compare_exchange_weak_explicit(&s->cell[period], &v, nv, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            *after = nc;
            return true;
        }
    }
}

void lm_rl_sub(lm_rl_slot_t *s, int period, int64_t win, uint64_t n)
{
    uint32_t w = (uint32_t)win;
    uint64_t v = atomic_load_explicit(&s->cell[period], memory_order_acquire);
    for (;;) {
        if ((uint32_t)(v >> 32) != w)
            return; /* a new window began meanwhile: nothing of ours is left in it */
        uint64_t cur = v & 0xffffffffu;
        uint64_t nv = ((uint64_t)w << 32) | (cur > n ? cur - n : 0);
        if (atomic_compare_exchange_weak_explicit(&s->cell[period], &v, nv, memory_order_acq_rel,
                                                  memory_order_acquire))
            return;
    }
}

/* ---- configuration pieces ------------------------------------------------------ */

static const lm_schema_field_t lm__cloud_auth[] = {
    { .name = "auth_provider", .type = LM_SF_STRING, .one_of = (const char *const[]){ "aws", "azure", "gcp", NULL } },
    { .name = "aws_access_key_id", .type = LM_SF_STRING },
    { .name = "aws_assume_role_arn", .type = LM_SF_STRING },
    { .name = "aws_cache_name", .type = LM_SF_STRING },
    { .name = "aws_is_serverless", .type = LM_SF_BOOLEAN, .def = "true" },
    { .name = "aws_region", .type = LM_SF_STRING },
    { .name = "aws_role_session_name", .type = LM_SF_STRING },
    { .name = "aws_secret_access_key", .type = LM_SF_STRING },
    { .name = "azure_client_id", .type = LM_SF_STRING },
    { .name = "azure_client_secret", .type = LM_SF_STRING },
    { .name = "azure_tenant_id", .type = LM_SF_STRING },
    { .name = "gcp_service_account_json", .type = LM_SF_STRING },
    { 0 },
};

const lm_schema_field_t lm_rl_redis_fields[] = {
    { .name = "host", .type = LM_SF_STRING },
    { .name = "port", .type = LM_SF_INTEGER, .def = "6379", .has_min = true, .min = 0, .has_max = true, .max = 65535 },
    { .name = "timeout", .type = LM_SF_INTEGER, .def = "2000", .has_min = true, .min = 0, .has_max = true,
      .max = 2147483646 },
    { .name = "username", .type = LM_SF_STRING },
    { .name = "password", .type = LM_SF_STRING, .allow_empty = true },
    { .name = "database", .type = LM_SF_INTEGER, .def = "0" },
    { .name = "ssl", .type = LM_SF_BOOLEAN, .def = "false" },
    { .name = "ssl_verify", .type = LM_SF_BOOLEAN, .def = "false" },
    { .name = "server_name", .type = LM_SF_STRING },
    { .name = "cloud_authentication", .type = LM_SF_RECORD, .fields = lm__cloud_auth },
    { 0 },
};

const char *lm_rl_check_order(const double limits[LM_RL_PERIODS])
{
    static __thread char msg[200];
    for (int i = 0; i < LM_RL_PERIODS; i++) {
        if (limits[i] < 0)
            continue;
        for (int j = i + 1; j < LM_RL_PERIODS; j++) {
            if (limits[j] >= 0 && limits[j] < limits[i]) {
                snprintf(msg, sizeof(msg), "the limit for %s(%.1f) cannot be lower than the limit for %s(%.1f)",
                         lm_rl_period_names[j], limits[j], lm_rl_period_names[i], limits[i]);
                return msg;
            }
        }
    }
    return NULL;
}

int lm_rl_check_policy(lm_plugin_cfg_ctx_t *cc, const cJSON *config)
{
    const char *policy = lm_schema_str(config, "policy");
    if (policy && strcmp(policy, "cluster") == 0) {
        /* Kong refuses it without a database too */
        lm_plugin_error(cc, "policy", "strategy 'cluster' is not supported with DB-less mode");
        return LM_ERROR;
    }
    if (policy && strcmp(policy, "redis") == 0) {
        const cJSON *redis = lm_schema_get(config, "redis");
        if (!lm_schema_str(config, "redis_host") && !(redis && lm_schema_str(redis, "host"))) {
            lm_plugin_error(cc, "redis.host", "required field missing");
            return LM_ERROR;
        }
        lm_plugin_error(cc, "policy", "policy 'redis' is not supported yet");
        return LM_ERROR;
    }
    return LM_OK;
}

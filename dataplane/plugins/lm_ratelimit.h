/*
 * lm_ratelimit.h - fixed-window counters shared by every worker thread of the
 * process (rate-limiting and response-ratelimiting, policy "local").
 *
 * A table is one lm_plugin_shared block (so a config swap finds the same
 * counters again): open addressing over LM_RL_SLOTS slots, each slot one
 * identity (a 64-bit hash of "route:service:identifier[:limit name]") with a
 * cell per period. A cell packs the window start (seconds since the epoch,
 * 32 bits) and the count (32 bits) into one atomic word, so "reset on a new
 * window, then add if under the limit" is one compare-and-swap: exact across
 * threads. Windows are Kong's fixed windows: UTC second, minute, hour, day,
 * calendar month and year. A full probe run evicts the slot touched least
 * recently (Kong's shared dictionary evicts by LRU too).
 */
#ifndef LM_RATELIMIT_H
#define LM_RATELIMIT_H

#include "lm_plugin.h"

#include <stdatomic.h>
#include <stdint.h>

enum { LM_RL_SECOND, LM_RL_MINUTE, LM_RL_HOUR, LM_RL_DAY, LM_RL_MONTH, LM_RL_YEAR, LM_RL_PERIODS };

#define LM_RL_SLOTS (1u << 16) /* per table; 64 bytes each, pages touched on use */

typedef struct {
    _Atomic uint64_t key;     /* 0: free */
    _Atomic uint64_t touched; /* seconds, for eviction */
    _Atomic uint64_t cell[LM_RL_PERIODS];
} lm_rl_slot_t;

typedef struct {
    lm_rl_slot_t slots[LM_RL_SLOTS];
} lm_rl_table_t;

extern const char *const lm_rl_period_names[LM_RL_PERIODS];     /* "second", ... */
extern const char *const lm_rl_period_titles[LM_RL_PERIODS];    /* "Second", ... */
extern const int64_t lm_rl_period_expiration[LM_RL_PERIODS];    /* Kong's EXPIRATION: 1, 60, ..., 2592000, 31536000 */

/* The start of the current window of each period for the time `now` (UTC). */
void lm_rl_windows(int64_t now, int64_t start[LM_RL_PERIODS]);

/* 64-bit hash of the pieces joined with ':' (never 0). */
uint64_t lm_rl_key(const lm_str_t *parts, size_t n);

/* The slot of key (created, or an old one evicted). */
lm_rl_slot_t *lm_rl_slot(lm_rl_table_t *t, uint64_t key, int64_t now);

/* The count in the window starting at `win` (0 when the cell holds an older window). */
uint64_t lm_rl_count(lm_rl_slot_t *s, int period, int64_t win);

/*
 * Adds n in the window starting at `win` when the count stays within limit
 * (limit < 0: no check). Returns true and *after = the new count, or false
 * and *after = the count as it is.
 */
bool lm_rl_add(lm_rl_slot_t *s, int period, int64_t win, uint64_t n, double limit, uint64_t *after);

/* Takes back n added by lm_rl_add (same window only). */
void lm_rl_sub(lm_rl_slot_t *s, int period, int64_t win, uint64_t n);

/* Schema pieces both plugins use: Kong's redis record and legacy redis_* fields. */
extern const lm_schema_field_t lm_rl_redis_fields[];
#define LM_RL_LEGACY_REDIS_FIELDS                                                                    \
    { .name = "redis_host", .type = LM_SF_STRING },                                                  \
    { .name = "redis_port", .type = LM_SF_INTEGER, .has_min = true, .min = 0, .has_max = true, .max = 65535 }, \
    { .name = "redis_password", .type = LM_SF_STRING, .allow_empty = true },                         \
    { .name = "redis_username", .type = LM_SF_STRING },                                              \
    { .name = "redis_ssl", .type = LM_SF_BOOLEAN },                                                  \
    { .name = "redis_ssl_verify", .type = LM_SF_BOOLEAN },                                           \
    { .name = "redis_server_name", .type = LM_SF_STRING },                                           \
    { .name = "redis_timeout", .type = LM_SF_INTEGER, .has_min = true, .min = 0 },                   \
    { .name = "redis_database", .type = LM_SF_INTEGER, .has_min = true, .min = 0 }

/* Kong's check: a longer period may not have a lower limit. NULL or the
 * message (thread-local buffer). limits[p] < 0: unset. */
const char *lm_rl_check_order(const double limits[LM_RL_PERIODS]);

/* Refuses the policies this data plane cannot run yet (cluster, redis):
 * LM_OK or LM_ERROR with the error reported. */
int lm_rl_check_policy(lm_plugin_cfg_ctx_t *cc, const cJSON *config);

#endif

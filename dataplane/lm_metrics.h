/*
 * lm_metrics.h - process-wide request metrics that survive config swaps.
 *
 * A block of counters per (service, route) name pair, created lazily on the
 * first request and found again by the same names after a snapshot swap.
 * Workers update blocks with relaxed atomic adds (no locks on the request
 * path); the control thread reads them when /metrics is scraped.
 */
#ifndef LM_METRICS_H
#define LM_METRICS_H

#include "lm_core.h"

#include <stdatomic.h>

#define LM_METRICS_STATUS_SLOTS 12
#define LM_METRICS_BUCKETS 22 /* latency histogram buckets in ms, +Inf implied */

extern const double lm_metrics_bucket_ms[LM_METRICS_BUCKETS];

typedef struct lm_metrics_block {
    struct lm_metrics_block *next; /* registry list */
    char *service;
    char *route;
    struct {
        _Atomic uint32_t code; /* 0 = free slot */
        _Atomic uint64_t count;
    } status[LM_METRICS_STATUS_SLOTS];
    _Atomic uint64_t status_other; /* codes that found no free slot */
    _Atomic uint64_t latency[LM_METRICS_BUCKETS + 1]; /* total request latency */
    _Atomic uint64_t latency_sum_ms;
    _Atomic uint64_t upstream[LM_METRICS_BUCKETS + 1]; /* upstream latency */
    _Atomic uint64_t upstream_sum_ms;
    _Atomic uint64_t upstream_count;
    _Atomic uint64_t bytes_in, bytes_out;
} lm_metrics_block_t;

/* Finds or creates the block for these names (takes a mutex; call once per
 * route per snapshot, not per request). NULL names become "". */
lm_metrics_block_t *lm_metrics_block(const char *service, const char *route);

/* Records one finished request (lock-free). upstream_ms < 0: no upstream. */
void lm_metrics_record(lm_metrics_block_t *b, int status, uint64_t total_ms, int64_t upstream_ms,
                       uint64_t bytes_in, uint64_t bytes_out);

/* Process-wide gauges and counters kept by the server. */
typedef struct {
    _Atomic uint64_t connections_accepted;
    _Atomic uint64_t connections_handled;
    _Atomic int64_t connections_active;
    _Atomic int64_t connections_reading;
    _Atomic int64_t connections_writing;
    _Atomic uint64_t requests_total;
    _Atomic uint64_t config_applies;
    _Atomic uint64_t config_failures;
    _Atomic uint64_t upstream_errors; /* connect/read/write failures and timeouts */
} lm_server_counters_t;

extern lm_server_counters_t lm_counters;

/* Appends the Prometheus text exposition of every block and the counters. */
typedef struct {
    char *buf;
    size_t len, cap;
} lm_buf_t;
void lm_buf_append(lm_buf_t *b, const char *data, size_t len);
void lm_buf_printf(lm_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void lm_buf_free(lm_buf_t *b);

void lm_metrics_render(lm_buf_t *out);
/* Frees every block (at exit, after all workers stopped). */
void lm_metrics_shutdown(void);

#endif

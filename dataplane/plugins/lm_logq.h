/*
 * lm_logq.h - what the logging plugins share (file-log, http-log, tcp-log,
 * udp-log, syslog): Kong's log record and a bounded queue per plugin
 * configuration drained by a sender thread of its own.
 *
 * The log phase never blocks a worker: it serializes the record, appends it
 * to the queue (a short mutex, no I/O) and returns. The queue's thread
 * batches entries (max_batch_size, or what arrived within
 * max_coalescing_delay seconds), hands each batch to the plugin's send
 * function (blocking I/O with the plugin's timeouts is fine there) and
 * retries a failed batch with exponential backoff (initial_retry_delay
 * doubling up to max_retry_delay) until max_retry_time has passed, then
 * drops it. A full queue (max_entries, or max_bytes when set) drops its
 * oldest entry, as Kong's queues do. Drops are counted and exposed on
 * /metrics (lm_logq_metrics_render).
 *
 * A queue is an lm_plugin_shared block keyed by the plugin name and the
 * configuration's JSON text: a configuration swap that keeps the instance's
 * config keeps its queue, entries and connection. At exit the queue is
 * flushed (each remaining batch tried once, for at most
 * LM_LOGQ_SHUTDOWN_MS in all), its thread joined and everything freed.
 */
#ifndef LM_LOGQ_H
#define LM_LOGQ_H

#include "lm_plugin.h"
#include "lm_metrics.h"

#include <stdbool.h>
#include <stddef.h>

#define LM_LOGQ_SHUTDOWN_MS 2000

typedef struct lm_logq lm_logq_t;

/* Kong 3.x queue parameters (seconds for times; max_bytes 0: no limit). */
typedef struct {
    size_t max_batch_size;
    double max_coalescing_delay;
    size_t max_entries;
    size_t max_bytes;
    double max_retry_time;
    double initial_retry_delay;
    double max_retry_delay;
} lm_logq_conf_t;

/* One batch: entries[i] of lens[i] bytes. Returns 0 when delivered, else -1
 * with a reason in err (the batch is retried). Runs on the queue's thread;
 * sink is the queue's own state (connections, file descriptors). */
typedef int (*lm_logq_send_fn)(void *sink, char *const *entries, const size_t *lens, size_t n, char *err,
                               size_t errlen);

typedef struct {
    const char *plugin;                                   /* e.g. "http-log" */
    lm_logq_send_fn send;
    void *(*sink_new)(const cJSON *config);               /* compiled from the config (heap memory) */
    void (*sink_free)(void *sink);
} lm_logq_kind_t;

/* The queue for this configuration, made on first use (from configure). */
lm_logq_t *lm_logq_get(const lm_logq_kind_t *kind, const cJSON *config, const lm_logq_conf_t *conf);
/* Kong's defaults for plugins whose queue is not configurable. */
void lm_logq_conf_default(lm_logq_conf_t *conf);
/* Reads Kong's `queue` record (http-log). */
void lm_logq_conf_from(lm_logq_conf_t *conf, const cJSON *queue);
/* The schema of Kong's `queue` record. */
extern const lm_schema_field_t lm_logq_queue_fields[];

/* Appends one entry (copied). Never blocks on I/O; starts the queue's thread
 * on first use. */
void lm_logq_push(lm_logq_t *q, const char *data, size_t len);

/* limen_log_queue_* series of every queue (control thread). */
void lm_logq_metrics_render(lm_buf_t *out);

/* ---- Kong's log record (kong.log.serialize) ---- */
/* Keeps the response headers for the log phase (the upstream's buffer they
 * point into is reused by then): call from the logging plugins' header_filter. */
int lm_log_keep_response_headers(lm_ctx_t *ctx, const void *conf);
/* The record as JSON text (malloc'd: the caller frees it). */
char *lm_log_serialize(lm_ctx_t *ctx, size_t *len);
/* A compiled config that is only its queue; lm_log_to_queue is the log
 * phase of the plugins that send every record to it (file, tcp, udp, http). */
typedef struct {
    lm_logq_t *q;
} lm_logq_ref_t;
void lm_log_to_queue(lm_ctx_t *ctx, const void *conf);
/* The configure of file-, tcp- and udp-log: an lm_logq_ref_t on the queue of
 * this config, up to 100 records per send, 10 ms coalescing, no retries. */
int lm_log_configure_batched(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out, const lm_logq_kind_t *kind);
/* custom_fields_by_lua set: the configure error Kong's plugins cannot give here */
int lm_log_check_unsupported(lm_plugin_cfg_ctx_t *cc, const cJSON *config);

/* ---- blocking connections for the send functions ---- */
/* A TCP (SOCK_STREAM) or UDP (SOCK_DGRAM) socket connected to host:port
 * within timeout_ms, with send/receive timeouts of timeout_ms; -1 with err. */
int lm_logq_connect(const char *host, int port, int socktype, int timeout_ms, char *err, size_t errlen);
/* The stream connection helpers below also do TLS (verification off, as
 * Kong's tcp-log and http-log do). */
typedef struct lm_logq_conn {
    int fd;
    struct ssl_st *ssl;
    uint64_t last_used_ms;
} lm_logq_conn_t;
int lm_logq_conn_open(lm_logq_conn_t *c, const char *host, int port, bool tls, const char *sni, int timeout_ms,
                      char *err, size_t errlen);
/* Still usable: open, not closed by the peer, used within keepalive_ms. */
bool lm_logq_conn_alive(lm_logq_conn_t *c, uint64_t keepalive_ms);
int lm_logq_conn_write(lm_logq_conn_t *c, const char *data, size_t len);
long lm_logq_conn_read(lm_logq_conn_t *c, char *buf, size_t len); /* 0: closed, <0: error */
void lm_logq_conn_close(lm_logq_conn_t *c);
void lm_logq_conn_timeouts(lm_logq_conn_t *c, int send_ms, int read_ms);

/* ---- HTTP (log_http.c): http-log and opentelemetry ---- */
typedef struct lm_logq_http lm_logq_http_t;
/* NULL when url is a usable http:// or https:// URL, else why not. */
const char *lm_logq_http_check_url(const char *url);
/* A client for url (checked); headers: a JSON object of extra header lines or NULL. */
lm_logq_http_t *lm_logq_http_new(const char *url, const char *method, const char *content_type, const cJSON *headers,
                                 int connect_timeout, int send_timeout, int read_timeout, uint64_t keepalive_ms);
/* Sends body; 0 when the answer is below 400, else -1 with err. */
int lm_logq_http_send(lm_logq_http_t *h, const char *body, size_t len, char *err, size_t errlen);
void lm_logq_http_free(lm_logq_http_t *h);
uint64_t lm_logq_now_ms(void);

#endif

/*
 * http_log.c - the http-log plugin (Kong 3.x).
 *
 * config: http_endpoint (required; http or https URL, user:password@ becomes
 * Basic auth), method (POST; PUT, PATCH), content_type ("application/json";
 * "application/json; charset=utf-8"), timeout (10000 ms), keepalive (60000
 * ms), headers (map of extra request headers), queue (Kong 3.x queue:
 * max_batch_size 1, max_coalescing_delay 1 s, max_entries 10000, max_bytes,
 * max_retry_time 60 s, initial_retry_delay 0.01 s, max_retry_delay 60 s,
 * concurrency_limit 1), the deprecated retry_count / queue_size /
 * flush_timeout (queue_size and flush_timeout still set max_batch_size and
 * max_coalescing_delay, as in Kong 3.x), custom_fields_by_lua (refused).
 *
 * The log phase queues the record (lm_logq.h); the queue's thread sends a
 * batch as one request: the record itself when max_batch_size is 1, else a
 * JSON array of records. An answer below 400 is success; anything else
 * (status >= 400, connect or I/O error, timeout) retries the batch with
 * exponential backoff until max_retry_time, then drops it. The connection
 * is kept for `keepalive` ms; https is not verified (as in Kong).
 */
#include "lm_plugins.h"
#include "lm_logq.h"

#include <stdio.h>
#include <stdlib.h>

static const char *const lm__methods[] = { "POST", "PUT", "PATCH", NULL };
static const char *const lm__ctypes[] = { "application/json", "application/json; charset=utf-8", NULL };

typedef lm_logq_ref_t lm__conf_t;

typedef struct {
    lm_logq_http_t *http;
    bool array;
} lm__sink_t;

static const char *lm__check_url(const cJSON *v)
{
    return lm_logq_http_check_url(v->valuestring);
}

static const lm_schema_field_t lm__fields[] = {
    { .name = "http_endpoint", .type = LM_SF_STRING, .required = true, .check = lm__check_url },
    { .name = "method", .type = LM_SF_STRING, .required = true, .def = "\"POST\"", .one_of = lm__methods },
    { .name = "content_type", .type = LM_SF_STRING, .required = true, .def = "\"application/json\"", .one_of = lm__ctypes },
    { .name = "timeout", .type = LM_SF_NUMBER, .def = "10000" },
    { .name = "keepalive", .type = LM_SF_NUMBER, .def = "60000" },
    { .name = "retry_count", .type = LM_SF_INTEGER },
    { .name = "queue_size", .type = LM_SF_INTEGER },
    { .name = "flush_timeout", .type = LM_SF_NUMBER },
    { .name = "headers", .type = LM_SF_MAP, .elem = LM_SF_STRING },
    { .name = "queue", .type = LM_SF_RECORD, .fields = lm_logq_queue_fields },
    { .name = "custom_fields_by_lua", .type = LM_SF_MAP, .elem = LM_SF_STRING },
    { 0 },
};

static void lm__queue_conf(const cJSON *config, lm_logq_conf_t *qc)
{
    lm_logq_conf_from(qc, lm_schema_get(config, "queue"));
    if (lm_schema_get(config, "queue_size") && lm_schema_num(config, "queue_size") >= 1)
        qc->max_batch_size = (size_t)lm_schema_num(config, "queue_size");
    if (lm_schema_get(config, "flush_timeout"))
        qc->max_coalescing_delay = lm_schema_num(config, "flush_timeout");
}

static void *lm__sink_new(const cJSON *config)
{
    lm__sink_t *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    int timeout = (int)lm_schema_num(config, "timeout");
    s->http = lm_logq_http_new(lm_schema_str(config, "http_endpoint"), lm_schema_str(config, "method"),
                               lm_schema_str(config, "content_type"), lm_schema_get(config, "headers"), timeout,
                               timeout, timeout, (uint64_t)lm_schema_num(config, "keepalive"));
    lm_logq_conf_t qc;
    lm__queue_conf(config, &qc);
    s->array = qc.max_batch_size > 1;
    return s;
}

static void lm__sink_free(void *p)
{
    lm__sink_t *s = p;
    lm_logq_http_free(s->http);
    free(s);
}

static int lm__send(void *p, char *const *e, const size_t *lens, size_t n, char *err, size_t errlen)
{
    lm__sink_t *s = p;
    if (!s->array)
        return lm_logq_http_send(s->http, e[0], lens[0], err, errlen);
    lm_buf_t body = { 0 };
    lm_buf_append(&body, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            lm_buf_append(&body, ",", 1);
        lm_buf_append(&body, e[i], lens[i]);
    }
    lm_buf_append(&body, "]", 1);
    int rc = lm_logq_http_send(s->http, body.buf, body.len, err, errlen);
    lm_buf_free(&body);
    return rc;
}

static const lm_logq_kind_t lm__kind = { "http-log", lm__send, lm__sink_new, lm__sink_free };

static int lm__configure(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out)
{
    if (lm_log_check_unsupported(cc, config) != LM_OK)
        return LM_ERROR;
    lm__conf_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    lm_logq_conf_t qc;
    lm__queue_conf(config, &qc);
    c->q = lm_logq_get(&lm__kind, config, &qc);
    *out = c;
    return LM_OK;
}

const lm_plugin_ops_t lm_plugin_http_log = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "http-log",
    .priority = 12,
    .schema = lm__fields,
    .configure = lm__configure,
    .header_filter = lm_log_keep_response_headers,
    .log = lm_log_to_queue,
};

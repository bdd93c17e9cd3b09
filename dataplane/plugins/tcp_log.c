/*
 * tcp_log.c - the tcp-log plugin (Kong 3.x).
 *
 * config: host, port (required), timeout (10000 ms), keepalive (60000 ms),
 * tls (false), tls_sni, custom_fields_by_lua (refused when set).
 *
 * Each request's log record (lm_log_serialize) goes out as a JSON line on a
 * connection the queue's thread keeps open for `keepalive` ms of idleness
 * (over TLS with tls, without certificate verification as in Kong, with
 * tls_sni as the server name). A failed send is logged and the batch
 * dropped, as Kong does; the log phase only queues the record.
 */
#include "lm_plugins.h"
#include "lm_logq.h"

#include <stdio.h>
#include <stdlib.h>

typedef lm_logq_ref_t lm__conf_t;

typedef struct {
    char *host, *sni;
    int port, timeout;
    uint64_t keepalive;
    bool tls;
    lm_logq_conn_t conn;
} lm__sink_t;

static const lm_schema_field_t lm__fields[] = {
    { .name = "host", .type = LM_SF_STRING, .required = true },
    { .name = "port", .type = LM_SF_INTEGER, .required = true, .has_min = true, .min = 0, .has_max = true, .max = 65535 },
    { .name = "timeout", .type = LM_SF_NUMBER, .def = "10000" },
    { .name = "keepalive", .type = LM_SF_NUMBER, .def = "60000" },
    { .name = "tls", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { .name = "tls_sni", .type = LM_SF_STRING },
    { .name = "custom_fields_by_lua", .type = LM_SF_MAP, .elem = LM_SF_STRING },
    { 0 },
};

static void *lm__sink_new(const cJSON *config)
{
    lm__sink_t *s = calloc(1, sizeof(*s));
    if (!s || !(s->host = strdup(lm_schema_str(config, "host"))))
        abort();
    const char *sni = lm_schema_str(config, "tls_sni");
    s->sni = sni ? strdup(sni) : NULL;
    s->port = (int)lm_schema_num(config, "port");
    s->timeout = (int)lm_schema_num(config, "timeout");
    s->keepalive = (uint64_t)lm_schema_num(config, "keepalive");
    s->tls = lm_schema_bool(config, "tls");
    s->conn.fd = -1;
    return s;
}

static void lm__sink_free(void *p)
{
    lm__sink_t *s = p;
    lm_logq_conn_close(&s->conn);
    free(s->host);
    free(s->sni);
    free(s);
}

static int lm__send(void *p, char *const *e, const size_t *lens, size_t n, char *err, size_t errlen)
{
    lm__sink_t *s = p;
    if (!lm_logq_conn_alive(&s->conn, s->keepalive) &&
        lm_logq_conn_open(&s->conn, s->host, s->port, s->tls, s->sni, s->timeout, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (lm_logq_conn_write(&s->conn, e[i], lens[i]) != 0 || lm_logq_conn_write(&s->conn, "\n", 1) != 0) {
            snprintf(err, errlen, "send to %s:%d failed", s->host, s->port);
            lm_logq_conn_close(&s->conn);
            return -1;
        }
    }
    return 0;
}

static const lm_logq_kind_t lm__kind = { "tcp-log", lm__send, lm__sink_new, lm__sink_free };

static int lm__configure(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out)
{
    return lm_log_configure_batched(cc, config, out, &lm__kind);
}

const lm_plugin_ops_t lm_plugin_tcp_log = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "tcp-log",
    .priority = 7,
    .schema = lm__fields,
    .configure = lm__configure,
    .header_filter = lm_log_keep_response_headers,
    .log = lm_log_to_queue,
};

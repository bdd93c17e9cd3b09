/*
 * udp_log.c - the udp-log plugin (Kong 3.x).
 *
 * config: host, port (required), timeout (10000 ms), custom_fields_by_lua
 * (refused when set). Each request's log record (lm_log_serialize) is sent as
 * one datagram of JSON, from the queue's thread (the log phase only queues it).
 */
#include "lm_plugins.h"
#include "lm_logq.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

typedef lm_logq_ref_t lm__conf_t;

typedef struct {
    char *host;
    int port, timeout, fd;
} lm__sink_t;

static const lm_schema_field_t lm__fields[] = {
    { .name = "host", .type = LM_SF_STRING, .required = true },
    { .name = "port", .type = LM_SF_INTEGER, .required = true, .has_min = true, .min = 0, .has_max = true, .max = 65535 },
    { .name = "timeout", .type = LM_SF_NUMBER, .def = "10000" },
    { .name = "custom_fields_by_lua", .type = LM_SF_MAP, .elem = LM_SF_STRING },
    { 0 },
};

static void *lm__sink_new(const cJSON *config)
{
    lm__sink_t *s = calloc(1, sizeof(*s));
    if (!s || !(s->host = strdup(lm_schema_str(config, "host"))))
        abort();
    s->port = (int)lm_schema_num(config, "port");
    s->timeout = (int)lm_schema_num(config, "timeout");
    s->fd = -1;
    return s;
}

static void lm__sink_free(void *p)
{
    lm__sink_t *s = p;
    if (s->fd >= 0)
        close(s->fd);
    free(s->host);
    free(s);
}

static int lm__send(void *p, char *const *e, const size_t *lens, size_t n, char *err, size_t errlen)
{
    lm__sink_t *s = p;
    if (s->fd < 0 && (s->fd = lm_logq_connect(s->host, s->port, SOCK_DGRAM, s->timeout, err, errlen)) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (send(s->fd, e[i], lens[i], MSG_NOSIGNAL) < 0) {
            snprintf(err, errlen, "send to %s:%d: %s", s->host, s->port, strerror(errno));
            close(s->fd);
            s->fd = -1;
            return -1;
        }
    }
    return 0;
}

static const lm_logq_kind_t lm__kind = { "udp-log", lm__send, lm__sink_new, lm__sink_free };

static int lm__configure(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out)
{
    return lm_log_configure_batched(cc, config, out, &lm__kind);
}

const lm_plugin_ops_t lm_plugin_udp_log = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "udp-log",
    .priority = 8,
    .schema = lm__fields,
    .configure = lm__configure,
    .header_filter = lm_log_keep_response_headers,
    .log = lm_log_to_queue,
};

/*
 * file_log.c - the file-log plugin (Kong 3.x).
 *
 * config: path (required; a file name without * & % `), reopen (false),
 * custom_fields_by_lua (refused when set: no Lua here).
 *
 * Each request's log record (lm_log_serialize) is appended to the file as one
 * JSON line. Kong writes from the worker with blocking I/O; here the log
 * phase only queues the line and the queue's thread writes it (lines from a
 * burst go out in one writev). The file is opened once (O_APPEND|O_CREAT,
 * 0644) and kept; with reopen it is closed and opened again for each batch,
 * so a rotated file is recreated.
 */
#include "lm_plugins.h"
#include "lm_logq.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

typedef lm_logq_ref_t lm__conf_t;

typedef struct {
    char *path;
    bool reopen;
    int fd;
} lm__sink_t;

static const char *lm__check_path(const cJSON *v)
{
    for (const char *p = v->valuestring; *p; p++)
        if (*p == '*' || *p == '&' || *p == '%' || *p == '`')
            return "not a valid filename";
    return NULL;
}

static const lm_schema_field_t lm__fields[] = {
    { .name = "path", .type = LM_SF_STRING, .required = true, .check = lm__check_path },
    { .name = "reopen", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { .name = "custom_fields_by_lua", .type = LM_SF_MAP, .elem = LM_SF_STRING },
    { 0 },
};

static void *lm__sink_new(const cJSON *config)
{
    lm__sink_t *s = calloc(1, sizeof(*s));
    if (!s || !(s->path = strdup(lm_schema_str(config, "path"))))
        abort();
    s->reopen = lm_schema_bool(config, "reopen");
    s->fd = -1;
    return s;
}

static void lm__sink_free(void *p)
{
    lm__sink_t *s = p;
    if (s->fd >= 0)
        close(s->fd);
    free(s->path);
    free(s);
}

static int lm__send(void *p, char *const *e, const size_t *lens, size_t n, char *err, size_t errlen)
{
    lm__sink_t *s = p;
    if (s->fd >= 0 && s->reopen) {
        close(s->fd);
        s->fd = -1;
    }
    if (s->fd < 0) {
        s->fd = open(s->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (s->fd < 0) {
            snprintf(err, errlen, "cannot open %s: %s", s->path, strerror(errno));
            return -1;
        }
    }
    for (size_t i = 0; i < n;) {
        struct iovec iov[64];
        size_t k = 0;
        for (; k + 1 < LM_ARRAY_SIZE(iov) && i < n; i++) {
            iov[k++] = (struct iovec){ e[i], lens[i] };
            iov[k++] = (struct iovec){ "\n", 1 };
        }
        if (writev(s->fd, iov, (int)k) < 0) {
            snprintf(err, errlen, "cannot write to %s: %s", s->path, strerror(errno));
            close(s->fd);
            s->fd = -1;
            return -1;
        }
    }
    return 0;
}

static const lm_logq_kind_t lm__kind = { "file-log", lm__send, lm__sink_new, lm__sink_free };

static int lm__configure(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out)
{
    return lm_log_configure_batched(cc, config, out, &lm__kind);
}

const lm_plugin_ops_t lm_plugin_file_log = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "file-log",
    .priority = 9,
    .schema = lm__fields,
    .configure = lm__configure,
    .header_filter = lm_log_keep_response_headers,
    .log = lm_log_to_queue,
};

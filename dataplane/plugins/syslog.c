/*
 * syslog.c - the syslog plugin (Kong 3.x).
 *
 * config: log_level, successful_severity, client_errors_severity,
 * server_errors_severity (each "info" by default; debug, info, notice,
 * warning, err, crit, alert, emerg), facility ("user"; auth, authpriv, cron,
 * daemon, ftp, kern, lpr, mail, news, syslog, user, uucp, local0-7),
 * custom_fields_by_lua (refused when set).
 *
 * The severity follows the response status (>= 500 server_errors_severity,
 * >= 400 client_errors_severity, else successful_severity); a record whose
 * severity is less severe than log_level is not logged, as in Kong. The
 * message is the log record's JSON, sent as "<PRI>Mmm dd hh:mm:ss
 * kong[pid]: ..." (what syslog(3) writes) to the local syslog socket,
 * /dev/log, or the unix datagram socket named by LIMEN_SYSLOG_SOCKET (tests).
 * The queue's thread sends it; the log phase only queues it.
 */
#include "lm_plugins.h"
#include "lm_logq.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char *const lm__levels[] = { "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug", NULL };
static const char *const lm__facilities[] = { "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
                                              "uucp", "cron", "authpriv", "ftp", "local0", "local1", "local2",
                                              "local3", "local4", "local5", "local6", "local7", NULL };
/* syslog facility codes in the order above (ftp is 11; local0 is 16) */
static const int lm__facility_codes[] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23 };

typedef struct {
    lm_logq_t *q;
    int log_level, ok_sev, client_sev, server_sev, facility;
} lm__conf_t;

typedef struct {
    char *path;
    int fd;
} lm__sink_t;

static const lm_schema_field_t lm__fields[] = {
    { .name = "log_level", .type = LM_SF_STRING, .required = true, .def = "\"info\"", .one_of = lm__levels },
    { .name = "successful_severity", .type = LM_SF_STRING, .required = true, .def = "\"info\"", .one_of = lm__levels },
    { .name = "client_errors_severity", .type = LM_SF_STRING, .required = true, .def = "\"info\"", .one_of = lm__levels },
    { .name = "server_errors_severity", .type = LM_SF_STRING, .required = true, .def = "\"info\"", .one_of = lm__levels },
    { .name = "facility", .type = LM_SF_STRING, .required = true, .def = "\"user\"", .one_of = lm__facilities },
    { .name = "custom_fields_by_lua", .type = LM_SF_MAP, .elem = LM_SF_STRING },
    { 0 },
};

static int lm__index(const char *const *list, const char *v)
{
    for (int i = 0; list[i]; i++)
        if (v && strcmp(list[i], v) == 0)
            return i;
    return 0;
}

static void *lm__sink_new(const cJSON *config)
{
    (void)config;
    lm__sink_t *s = calloc(1, sizeof(*s));
    const char *p = getenv("LIMEN_SYSLOG_SOCKET");
    if (!s || !(s->path = strdup(p && *p ? p : "/dev/log")))
        abort();
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
    if (s->fd < 0) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->path);
        s->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s->fd < 0 || connect(s->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
            snprintf(err, errlen, "syslog socket %s: %s", s->path, strerror(errno));
            if (s->fd >= 0)
                close(s->fd);
            s->fd = -1;
            return -1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (send(s->fd, e[i], lens[i], MSG_NOSIGNAL) < 0) {
            snprintf(err, errlen, "syslog socket %s: %s", s->path, strerror(errno));
            close(s->fd);
            s->fd = -1;
            return -1;
        }
    }
    return 0;
}

static const lm_logq_kind_t lm__kind = { "syslog", lm__send, lm__sink_new, lm__sink_free };

static int lm__configure(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out)
{
    if (lm_log_check_unsupported(cc, config) != LM_OK)
        return LM_ERROR;
    lm__conf_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    c->log_level = lm__index(lm__levels, lm_schema_str(config, "log_level"));
    c->ok_sev = lm__index(lm__levels, lm_schema_str(config, "successful_severity"));
    c->client_sev = lm__index(lm__levels, lm_schema_str(config, "client_errors_severity"));
    c->server_sev = lm__index(lm__levels, lm_schema_str(config, "server_errors_severity"));
    c->facility = lm__facility_codes[lm__index(lm__facilities, lm_schema_str(config, "facility"))];
    lm_logq_conf_t qc;
    lm_logq_conf_default(&qc);
    qc.max_batch_size = 100;
    qc.max_coalescing_delay = 0.01; /* up to 100 records per write under load */
    qc.max_retry_time = 0;
    c->q = lm_logq_get(&lm__kind, config, &qc);
    *out = c;
    return LM_OK;
}

static void lm__log(lm_ctx_t *ctx, const void *conf)
{
    const lm__conf_t *c = conf;
    int status = lm_ctx_status(ctx);
    int sev = status >= 500 ? c->server_sev : status >= 400 ? c->client_sev : c->ok_sev;
    if (sev > c->log_level) /* the level index is the syslog priority: lower is more severe */
        return;
    size_t n;
    char *rec = lm_log_serialize(ctx, &n);
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char head[64], ts[32];
    strftime(ts, sizeof(ts), "%b %e %H:%M:%S", &tm);
    int hl = snprintf(head, sizeof(head), "<%d>%s kong[%d]: ", c->facility * 8 + sev, ts, (int)getpid());
    char *msg = malloc((size_t)hl + n);
    if (msg) {
        memcpy(msg, head, (size_t)hl);
        memcpy(msg + hl, rec, n);
        lm_logq_push(c->q, msg, (size_t)hl + n);
        free(msg);
    }
    free(rec);
}

const lm_plugin_ops_t lm_plugin_syslog = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "syslog",
    .priority = 4,
    .schema = lm__fields,
    .configure = lm__configure,
    .header_filter = lm_log_keep_response_headers,
    .log = lm__log,
};

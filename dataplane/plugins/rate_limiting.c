/*
 * rate_limiting.c - the rate-limiting plugin (Kong 3.x), policy "local".
 *
 * config: second, minute, hour, day, month, year (at least one; a longer
 * period may not have a lower limit), limit_by (consumer: the consumer, else
 * the credential; credential; ip; service; header: header_name; path: path;
 * consumer-group - each falls back to the client IP), policy (local; cluster
 * and redis are refused at configure), fault_tolerant, hide_client_headers,
 * error_code (429), error_message ("API rate limit exceeded"), sync_rate and
 * the redis settings (accepted, unused).
 *
 * Counters are Kong's fixed windows keyed by "route id:service id:identifier",
 * kept in one process-wide table (lm_ratelimit.h) that every worker updates
 * with compare-and-swap and that config swaps keep. A request is counted in
 * every period only when all of them have room; the one that has none is
 * answered error_code with {"message": error_message}, Retry-After and the
 * headers below, and counts nowhere.
 *
 * Headers (unless hide_client_headers): X-RateLimit-Limit-<Period> and
 * X-RateLimit-Remaining-<Period> per period, and RateLimit-Limit,
 * RateLimit-Remaining, RateLimit-Reset for the most constrained period
 * (lowest remaining; on a tie the longer one), Reset being the seconds left in
 * Kong's window length for it (a "month" is 30 days there).
 */
#include "lm_plugins.h"
#include "lm_ratelimit.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { LM__BY_CONSUMER, LM__BY_CREDENTIAL, LM__BY_IP, LM__BY_SERVICE, LM__BY_HEADER, LM__BY_PATH, LM__BY_GROUP };

static const char *const lm__limit_by[] = { "consumer", "credential", "ip", "service", "header", "path",
                                            "consumer-group", NULL };

typedef struct {
    double limit[LM_RL_PERIODS]; /* < 0: unset */
    int periods[LM_RL_PERIODS];  /* the configured ones, shortest first */
    size_t np;
    int limit_by;
    lm_str_t header_name, path;
    int error_code;
    const char *error_message;
    bool hide;
    lm_rl_table_t *table;
} lm__rl_conf_t;

/* what access decided, for header_filter */
typedef struct {
    double limit[LM_RL_PERIODS];
    uint64_t remaining[LM_RL_PERIODS];
    int periods[LM_RL_PERIODS];
    size_t np;
    int most; /* the most constrained period */
    int64_t reset;
} lm__rl_state_t;

static const char *lm__gt0(const cJSON *v)
{
    return v->valuedouble > 0 ? NULL : "value must be greater than 0";
}

static const char *lm__check_path(const cJSON *v)
{
    const char *s = v->valuestring;
    if (s[0] != '/')
        return "should start with: /";
    if (strstr(s, "//"))
        return "must not have empty segments";
    return NULL;
}

static const char *const lm__policies[] = { "local", "cluster", "redis", NULL };

static const lm_schema_field_t lm__fields[] = {
    { .name = "second", .type = LM_SF_NUMBER, .check = lm__gt0 },
    { .name = "minute", .type = LM_SF_NUMBER, .check = lm__gt0 },
    { .name = "hour", .type = LM_SF_NUMBER, .check = lm__gt0 },
    { .name = "day", .type = LM_SF_NUMBER, .check = lm__gt0 },
    { .name = "month", .type = LM_SF_NUMBER, .check = lm__gt0 },
    { .name = "year", .type = LM_SF_NUMBER, .check = lm__gt0 },
    { .name = "limit_by", .type = LM_SF_STRING, .def = "\"consumer\"", .one_of = lm__limit_by },
    { .name = "header_name", .type = LM_SF_STRING, .check = lm_schema_check_header_name },
    { .name = "path", .type = LM_SF_STRING, .check = lm__check_path },
    { .name = "policy", .type = LM_SF_STRING, .def = "\"local\"", .one_of = lm__policies },
    { .name = "fault_tolerant", .type = LM_SF_BOOLEAN, .required = true, .def = "true" },
    { .name = "hide_client_headers", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { .name = "error_code", .type = LM_SF_NUMBER, .def = "429", .check = lm__gt0 },
    { .name = "error_message", .type = LM_SF_STRING, .def = "\"API rate limit exceeded\"" },
    { .name = "sync_rate", .type = LM_SF_NUMBER, .def = "-1" },
    { .name = "disable_penalty", .type = LM_SF_BOOLEAN, .def = "false" },
    { .name = "redis", .type = LM_SF_RECORD, .fields = lm_rl_redis_fields },
    LM_RL_LEGACY_REDIS_FIELDS,
    { 0 },
};

static int lm__configure(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out)
{
    lm__rl_conf_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    for (int p = 0; p < LM_RL_PERIODS; p++) {
        const cJSON *v = lm_schema_get(config, lm_rl_period_names[p]);
        c->limit[p] = v ? v->valuedouble : -1;
        if (v)
            c->periods[c->np++] = p;
    }
    if (c->np == 0) {
        lm_plugin_error(cc, NULL, "at least one of these fields must be non-empty: 'config.second', 'config.minute', "
                                  "'config.hour', 'config.day', 'config.month', 'config.year'");
        return LM_ERROR;
    }
    const char *order = lm_rl_check_order(c->limit);
    if (order) {
        lm_plugin_error(cc, NULL, "%s", order);
        return LM_ERROR;
    }
    const char *by = lm_schema_str(config, "limit_by");
    for (int i = 0; lm__limit_by[i]; i++)
        if (strcmp(by, lm__limit_by[i]) == 0)
            c->limit_by = i;
    const char *hn = lm_schema_str(config, "header_name");
    const char *path = lm_schema_str(config, "path");
    if (c->limit_by == LM__BY_HEADER && !hn) {
        lm_plugin_error(cc, "header_name", "required field missing");
        return LM_ERROR;
    }
    if (c->limit_by == LM__BY_PATH && !path) {
        lm_plugin_error(cc, "path", "required field missing");
        return LM_ERROR;
    }
    if (lm_rl_check_policy(cc, config) != LM_OK)
        return LM_ERROR;
    c->header_name = hn ? lm_str(hn) : LM_STR_NULL;
    c->path = path ? lm_str(path) : LM_STR_NULL;
    c->error_code = (int)lm_schema_num(config, "error_code");
    c->error_message = lm_schema_str(config, "error_message");
    if (!c->error_message)
        c->error_message = "API rate limit exceeded";
    c->hide = lm_schema_bool(config, "hide_client_headers");
    /* one table for the process, found again by every later snapshot */
    c->table = lm_plugin_shared("rate-limiting", LM_STR("local-counters"), sizeof(lm_rl_table_t));
    *out = c;
    return LM_OK;
}

/* Kong's get_identifier: what the counters are kept for */
static lm_str_t lm__identifier(lm_ctx_t *ctx, const lm__rl_conf_t *c)
{
    lm_str_t v = LM_STR_NULL;
    const lm_consumer_t *cons = lm_ctx_consumer(ctx);
    const char *cred = lm_ctx_credential_id(ctx);
    const lm_service_t *svc = lm_ctx_service(ctx);
    switch (c->limit_by) {
    case LM__BY_CONSUMER:
        if (cons && cons->id)
            v = lm_str(cons->id);
        else if (cred)
            v = lm_str(cred);
        break;
    case LM__BY_CREDENTIAL:
        if (cred)
            v = lm_str(cred);
        break;
    case LM__BY_SERVICE:
        if (svc && svc->id)
            v = lm_str(svc->id);
        break;
    case LM__BY_HEADER:
        if (!lm_ctx_header(ctx, c->header_name, &v))
            v = LM_STR_NULL;
        break;
    case LM__BY_PATH:
        if (lm_str_eq(lm_ctx_path(ctx), c->path))
            v = c->path;
        break;
    default: break;
    }
    return v.ptr ? v : lm_str(lm_ctx_client_ip(ctx));
}

static char *lm__num(lm_arena_t *a, double v)
{
    return lm_arena_sprintf(a, "%.14g", v);
}

static int lm__access(lm_ctx_t *ctx, const void *conf)
{
    const lm__rl_conf_t *c = conf;
    int64_t now = (int64_t)time(NULL);
    int64_t win[LM_RL_PERIODS];
    lm_rl_windows(now, win);
    const lm_route_t *route = lm_ctx_route(ctx);
    const lm_service_t *svc = lm_ctx_service(ctx);
    lm_str_t parts[3] = { lm_str(route && route->id ? route->id : ""), lm_str(svc && svc->id ? svc->id : ""),
                          lm__identifier(ctx, c) };
    lm_rl_slot_t *slot = lm_rl_slot(c->table, lm_rl_key(parts, 3), now);

    uint64_t count[LM_RL_PERIODS] = { 0 };
    int stop = -1;
    size_t added = 0;
    for (; added < c->np; added++) {
        int p = c->periods[added];
        if (!lm_rl_add(slot, p, win[p], 1, c->limit[p], &count[p])) {
            stop = p;
            break;
        }
    }
    if (stop >= 0) { /* counted nowhere: take back what was added, read the rest */
        for (size_t i = 0; i < c->np; i++) {
            int p = c->periods[i];
            if (i < added)
                lm_rl_sub(slot, p, win[p], 1);
            if (p != stop)
                count[p] = lm_rl_count(slot, p, win[p]);
        }
    }

    lm__rl_state_t *st = lm_ctx_alloc(ctx, sizeof(*st));
    st->np = c->np;
    st->most = -1;
    uint64_t best = 0;
    for (size_t i = 0; i < c->np; i++) {
        int p = c->periods[i];
        double left = p == stop ? 0 : c->limit[p] - (double)count[p];
        uint64_t rem = left > 0 ? (uint64_t)left : 0;
        st->periods[i] = p;
        st->limit[p] = c->limit[p];
        st->remaining[p] = rem;
        /* lowest remaining; on a tie the longer window (periods come shortest first) */
        if (st->most < 0 || rem <= best) {
            st->most = p;
            best = rem;
        }
    }
    int64_t elapsed = now - win[st->most];
    st->reset = lm_rl_period_expiration[st->most] - elapsed;
    if (st->reset < 1)
        st->reset = 1;

    if (stop < 0) {
        if (!c->hide)
            lm_ctx_set(ctx, &lm_plugin_rate_limiting, st);
        return LM_OK;
    }
    lm_arena_t *a = lm_ctx_arena(ctx);
    char *hdrs = "";
    if (!c->hide) {
        for (size_t i = 0; i < st->np; i++) {
            int p = st->periods[i];
            hdrs = lm_arena_sprintf(a, "%sX-RateLimit-Limit-%s: %s\r\nX-RateLimit-Remaining-%s: %llu\r\n", hdrs,
                                    lm_rl_period_titles[p], lm__num(a, st->limit[p]), lm_rl_period_titles[p],
                                    (unsigned long long)st->remaining[p]);
        }
        hdrs = lm_arena_sprintf(a, "%sRateLimit-Limit: %s\r\nRateLimit-Remaining: %llu\r\nRateLimit-Reset: %lld\r\n"
                                "Retry-After: %lld\r\n",
                                hdrs, lm__num(a, st->limit[st->most]), (unsigned long long)st->remaining[st->most],
                                (long long)st->reset, (long long)st->reset);
    }
    return lm_ctx_exit(ctx, c->error_code, c->error_message, hdrs[0] ? hdrs : NULL);
}

static int lm__header_filter(lm_ctx_t *ctx, const void *conf)
{
    LM_UNUSED(conf);
    const lm__rl_state_t *st = lm_ctx_get(ctx, &lm_plugin_rate_limiting);
    if (!st)
        return LM_OK; /* headers hidden, or the plugin answered itself */
    lm_arena_t *a = lm_ctx_arena(ctx);
    for (size_t i = 0; i < st->np; i++) {
        int p = st->periods[i];
        lm_ctx_resp_set_header(ctx, lm_str(lm_arena_sprintf(a, "X-RateLimit-Limit-%s", lm_rl_period_titles[p])),
                               lm_str(lm__num(a, st->limit[p])));
        lm_ctx_resp_set_header(ctx, lm_str(lm_arena_sprintf(a, "X-RateLimit-Remaining-%s", lm_rl_period_titles[p])),
                               lm_str(lm_arena_sprintf(a, "%llu", (unsigned long long)st->remaining[p])));
    }
    lm_ctx_resp_set_header(ctx, LM_STR("RateLimit-Limit"), lm_str(lm__num(a, st->limit[st->most])));
    lm_ctx_resp_set_header(ctx, LM_STR("RateLimit-Remaining"),
                           lm_str(lm_arena_sprintf(a, "%llu", (unsigned long long)st->remaining[st->most])));
    lm_ctx_resp_set_header(ctx, LM_STR("RateLimit-Reset"),
                           lm_str(lm_arena_sprintf(a, "%lld", (long long)st->reset)));
    return LM_OK;
}

const lm_plugin_ops_t lm_plugin_rate_limiting = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "rate-limiting",
    .priority = 910,
    .schema = lm__fields,
    .configure = lm__configure,
    .access = lm__access,
    .header_filter = lm__header_filter,
};

/*
 * response_ratelimiting.c - the response-ratelimiting plugin (Kong 3.x),
 * policy "local".
 *
 * config: limits (a map: name -> second..year, at least one each, a longer
 * period may not have a lower limit), header_name ("x-kong-limit"; the
 * upstream's "X-Limen-Limit" is read too), limit_by (consumer, credential,
 * ip - each falls back to the client IP), block_on_first_violation (false),
 * hide_client_headers (false), policy (local; cluster and redis are refused
 * at configure), fault_tolerant and the redis settings (accepted, unused).
 *
 * access: for each limit the usage of each period is read; with
 * block_on_first_violation a limit with nothing left answers 429 "API rate
 * limit exceeded for '<name>'"; the upstream gets X-RateLimit-Remaining-<name>
 * (the lowest remaining of the limit's periods).
 * header_filter: the upstream's header ("videos=2, images=1"; unknown names
 * ignored) says how much this response costs; it is removed from the
 * response, which gets X-RateLimit-Limit-<name>-<period> and
 * X-RateLimit-Remaining-<name>-<period>. A response that spends a limit that
 * was already used up becomes a 429 (Kong turns the status, the upstream's
 * body still follows) and is not counted; otherwise the costs are added to
 * the counters (Kong adds them in its log phase; here before the client sees
 * the response, so the next request always sees them).
 *
 * Counters: lm_ratelimit.h, keyed by "route id:service id:identifier:name",
 * in one process-wide table that config swaps keep.
 */
#include "lm_plugins.h"
#include "lm_ratelimit.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { LM__BY_CONSUMER, LM__BY_CREDENTIAL, LM__BY_IP };

static const char *const lm__limit_by[] = { "consumer", "credential", "ip", NULL };
static const char *const lm__policies[] = { "local", "cluster", "redis", NULL };

typedef struct {
    lm_str_t name;
    double limit[LM_RL_PERIODS]; /* < 0: unset */
} lm__limit_t;

typedef struct {
    lm__limit_t *limits;
    size_t n;
    lm_str_t header;
    int limit_by;
    bool block, hide;
    lm_rl_table_t *table;
} lm__rrl_conf_t;

/* what access read, for header_filter */
typedef struct {
    int64_t win[LM_RL_PERIODS];
    lm_rl_slot_t **slots;                  /* per limit */
    double (*remaining)[LM_RL_PERIODS];    /* per limit, per period: limit - usage */
} lm__rrl_state_t;

static const char *lm__gt0(const cJSON *v)
{
    return v->valuedouble > 0 ? NULL : "value must be greater than 0";
}

static const lm_schema_field_t lm__periods[] = {
    { .name = "second", .type = LM_SF_NUMBER, .check = lm__gt0 },
    { .name = "minute", .type = LM_SF_NUMBER, .check = lm__gt0 },
    { .name = "hour", .type = LM_SF_NUMBER, .check = lm__gt0 },
    { .name = "day", .type = LM_SF_NUMBER, .check = lm__gt0 },
    { .name = "month", .type = LM_SF_NUMBER, .check = lm__gt0 },
    { .name = "year", .type = LM_SF_NUMBER, .check = lm__gt0 },
    { 0 },
};

static const lm_schema_field_t lm__fields[] = {
    { .name = "header_name", .type = LM_SF_STRING, .def = "\"x-kong-limit\"", .check = lm_schema_check_header_name },
    { .name = "limit_by", .type = LM_SF_STRING, .def = "\"consumer\"", .one_of = lm__limit_by },
    { .name = "policy", .type = LM_SF_STRING, .def = "\"local\"", .one_of = lm__policies },
    { .name = "fault_tolerant", .type = LM_SF_BOOLEAN, .required = true, .def = "true" },
    { .name = "block_on_first_violation", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { .name = "hide_client_headers", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { .name = "limits", .type = LM_SF_MAP, .elem = LM_SF_RECORD, .fields = lm__periods, .required = true },
    { .name = "redis", .type = LM_SF_RECORD, .fields = lm_rl_redis_fields },
    LM_RL_LEGACY_REDIS_FIELDS,
    { 0 },
};

static int lm__configure(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out)
{
    lm__rrl_conf_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    const cJSON *limits = lm_schema_get(config, "limits");
    size_t n = limits ? (size_t)cJSON_GetArraySize(limits) : 0;
    if (n == 0) {
        lm_plugin_error(cc, "limits", "length must be at least 1");
        return LM_ERROR;
    }
    c->limits = lm_arena_calloc(cc->arena, n * sizeof(*c->limits));
    const cJSON *it;
    cJSON_ArrayForEach(it, limits) {
        lm__limit_t *l = &c->limits[c->n++];
        l->name = lm_str(it->string);
        bool any = false;
        for (int p = 0; p < LM_RL_PERIODS; p++) {
            const cJSON *v = lm_schema_get(it, lm_rl_period_names[p]);
            l->limit[p] = v ? v->valuedouble : -1;
            any = any || v;
        }
        char field[300];
        snprintf(field, sizeof(field), "limits.%.250s", it->string);
        if (!any) {
            lm_plugin_error(cc, field, "at least one of these fields must be non-empty: 'second', 'minute', "
                                       "'hour', 'day', 'month', 'year'");
            return LM_ERROR;
        }
        const char *order = lm_rl_check_order(l->limit);
        if (order) {
            lm_plugin_error(cc, field, "%s", order);
            return LM_ERROR;
        }
    }
    if (lm_rl_check_policy(cc, config) != LM_OK)
        return LM_ERROR;
    c->header = lm_str(lm_schema_str(config, "header_name"));
    const char *by = lm_schema_str(config, "limit_by");
    for (int i = 0; lm__limit_by[i]; i++)
        if (strcmp(by, lm__limit_by[i]) == 0)
            c->limit_by = i;
    c->block = lm_schema_bool(config, "block_on_first_violation");
    c->hide = lm_schema_bool(config, "hide_client_headers");
    c->table = lm_plugin_shared("response-ratelimiting", LM_STR("local-counters"), sizeof(lm_rl_table_t));
    *out = c;
    return LM_OK;
}

static lm_str_t lm__identifier(lm_ctx_t *ctx, const lm__rrl_conf_t *c)
{
    const lm_consumer_t *cons = lm_ctx_consumer(ctx);
    const char *cred = lm_ctx_credential_id(ctx);
    if (c->limit_by == LM__BY_CONSUMER && cons && cons->id)
        return lm_str(cons->id);
    if ((c->limit_by == LM__BY_CONSUMER || c->limit_by == LM__BY_CREDENTIAL) && cred)
        return lm_str(cred);
    return lm_str(lm_ctx_client_ip(ctx));
}

static char *lm__num(lm_arena_t *a, double v)
{
    return lm_arena_sprintf(a, "%.14g", v);
}

static int lm__access(lm_ctx_t *ctx, const void *conf)
{
    const lm__rrl_conf_t *c = conf;
    lm_arena_t *a = lm_ctx_arena(ctx);
    int64_t now = (int64_t)time(NULL);
    lm__rrl_state_t *st = lm_ctx_alloc(ctx, sizeof(*st));
    lm_rl_windows(now, st->win);
    st->slots = lm_ctx_alloc(ctx, c->n * sizeof(*st->slots));
    st->remaining = lm_ctx_alloc(ctx, c->n * sizeof(*st->remaining));
    const lm_route_t *route = lm_ctx_route(ctx);
    const lm_service_t *svc = lm_ctx_service(ctx);
    lm_str_t parts[4] = { lm_str(route && route->id ? route->id : ""), lm_str(svc && svc->id ? svc->id : ""),
                          lm__identifier(ctx, c), LM_STR_NULL };
    for (size_t i = 0; i < c->n; i++) {
        const lm__limit_t *l = &c->limits[i];
        parts[3] = l->name;
        st->slots[i] = lm_rl_slot(c->table, lm_rl_key(parts, 4), now);
        double lowest = 0;
        bool first = true;
        for (int p = 0; p < LM_RL_PERIODS; p++) {
            if (l->limit[p] < 0)
                continue;
            double rem = l->limit[p] - (double)lm_rl_count(st->slots[i], p, st->win[p]);
            st->remaining[i][p] = rem;
            if (c->block && rem <= 0)
                return lm_ctx_exit(ctx, 429,
                                   lm_arena_sprintf(a, "API rate limit exceeded for '%.*s'", LM_STR_FMT(l->name)),
                                   NULL);
            if (first || rem < lowest)
                lowest = rem;
            first = false;
        }
        lm_ctx_set_header(ctx, lm_str(lm_arena_sprintf(a, "X-RateLimit-Remaining-%.*s", LM_STR_FMT(l->name))),
                          lm_str(lm__num(a, lowest)));
    }
    lm_ctx_set(ctx, &lm_plugin_response_ratelimiting, st);
    return LM_OK;
}

static void lm__trim(lm_str_t *s)
{
    while (s->len && (s->ptr[0] == ' ' || s->ptr[0] == '\t')) {
        s->ptr++;
        s->len--;
    }
    while (s->len && (s->ptr[s->len - 1] == ' ' || s->ptr[s->len - 1] == '\t'))
        s->len--;
}

/* "name=value, name=value": adds each known name's value to incr[] */
static void lm__parse(const lm__rrl_conf_t *c, lm_str_t v, double *incr)
{
    size_t i = 0;
    while (i < v.len) {
        size_t e = i;
        while (e < v.len && v.ptr[e] != ',')
            e++;
        lm_str_t item = { v.ptr + i, e - i };
        const char *eq = memchr(item.ptr, '=', item.len);
        if (eq && !memchr(eq + 1, '=', (size_t)(item.ptr + item.len - eq - 1))) {
            lm_str_t name = { item.ptr, (size_t)(eq - item.ptr) }, num = { eq + 1, item.len - name.len - 1 };
            lm__trim(&name);
            lm__trim(&num);
            char buf[32];
            if (num.len && num.len < sizeof(buf)) {
                memcpy(buf, num.ptr, num.len);
                buf[num.len] = '\0';
                char *end;
                double d = strtod(buf, &end);
                for (size_t k = 0; *end == '\0' && k < c->n; k++)
                    if (lm_str_eq(c->limits[k].name, name))
                        incr[k] = d; /* the last one wins, as a Lua table would have it */
            }
        }
        i = e + 1;
    }
}

static int lm__header_filter(lm_ctx_t *ctx, const void *conf)
{
    const lm__rrl_conf_t *c = conf;
    lm__rrl_state_t *st = lm_ctx_get(ctx, &lm_plugin_response_ratelimiting);
    double *incr = lm_ctx_alloc(ctx, c->n * sizeof(*incr));
    memset(incr, 0, c->n * sizeof(*incr));
    const lm_str_t ours = LM_STR("X-Limen-Limit");
    lm_str_t name, val;
    for (size_t k = 0; lm_ctx_resp_header_at(ctx, k, &name, &val); k++)
        if (lm_str_ieq(name, c->header) || lm_str_ieq(name, ours))
            lm__parse(c, val, incr);
    lm_ctx_resp_remove_header(ctx, c->header);
    lm_ctx_resp_remove_header(ctx, ours);
    if (!st)
        return LM_OK; /* access did not run to its end (another plugin answered) */

    lm_arena_t *a = lm_ctx_arena(ctx);
    bool stop = false;
    for (size_t i = 0; i < c->n; i++) {
        const lm__limit_t *l = &c->limits[i];
        for (int p = 0; p < LM_RL_PERIODS; p++) {
            if (l->limit[p] < 0)
                continue;
            double rem = st->remaining[i][p];
            if (!c->hide) {
                double shown = rem - (incr[i] > 0 ? incr[i] : 0);
                lm_ctx_resp_set_header(ctx,
                                       lm_str(lm_arena_sprintf(a, "X-RateLimit-Limit-%.*s-%s", LM_STR_FMT(l->name),
                                                               lm_rl_period_names[p])),
                                       lm_str(lm__num(a, l->limit[p])));
                lm_ctx_resp_set_header(ctx,
                                       lm_str(lm_arena_sprintf(a, "X-RateLimit-Remaining-%.*s-%s",
                                                               LM_STR_FMT(l->name), lm_rl_period_names[p])),
                                       lm_str(lm__num(a, shown > 0 ? shown : 0)));
            }
            if (incr[i] > 0 && rem <= 0)
                stop = true;
        }
    }
    if (stop) {
        lm_ctx_resp_set_status(ctx, 429); /* and it is not counted */
        return LM_OK;
    }
    for (size_t i = 0; i < c->n; i++) {
        if (incr[i] < 1)
            continue;
        uint64_t after;
        for (int p = 0; p < LM_RL_PERIODS; p++)
            if (c->limits[i].limit[p] >= 0)
                lm_rl_add(st->slots[i], p, st->win[p], (uint64_t)incr[i], -1, &after);
    }
    return LM_OK;
}

const lm_plugin_ops_t lm_plugin_response_ratelimiting = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "response-ratelimiting",
    .priority = 900,
    .schema = lm__fields,
    .configure = lm__configure,
    .access = lm__access,
    .header_filter = lm__header_filter,
};

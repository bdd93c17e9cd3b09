/*
 * redirect.c - the redirect plugin (Kong 3.9).
 *
 * config: status_code (301; 100-599), location (required, a URL),
 * keep_incoming_path (false).
 *
 * Every request is answered status_code with `Location: location` and the
 * body "redirecting". With keep_incoming_path the location's path is replaced
 * by the request's (normalised) path and its query by the request's query
 * (none when the request has none); its scheme, host, port and fragment stay.
 */
#include "lm_plugins.h"

#include <stdio.h>

typedef struct {
    int status;
    const char *location;
    lm_str_t origin;   /* scheme://authority */
    lm_str_t fragment; /* "#..." or empty */
    bool keep_path;
} lm__redirect_conf_t;

/* scheme "://" authority: the length of that prefix, or 0 */
static size_t lm__origin_len(const char *s)
{
    const char *p = strstr(s, "://");
    if (!p || p == s)
        return 0;
    for (const char *q = s; q < p; q++)
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') || *q == '+' ||
              *q == '-' || *q == '.'))
            return 0;
    size_t n = (size_t)(p - s) + 3;
    size_t start = n;
    while (s[n] && s[n] != '/' && s[n] != '?' && s[n] != '#')
        n++;
    return n > start ? n : 0;
}

static const char *lm__check_url(const cJSON *v)
{
    return lm__origin_len(v->valuestring) ? NULL : "missing host in url";
}

static const lm_schema_field_t lm__fields[] = {
    { .name = "status_code", .type = LM_SF_INTEGER, .required = true, .def = "301", .has_min = true, .min = 100,
      .has_max = true, .max = 599 },
    { .name = "location", .type = LM_SF_STRING, .required = true, .check = lm__check_url },
    { .name = "keep_incoming_path", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { 0 },
};

static int lm__configure(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out)
{
    lm__redirect_conf_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    c->status = (int)lm_schema_num(config, "status_code");
    c->location = lm_schema_str(config, "location");
    c->keep_path = lm_schema_bool(config, "keep_incoming_path");
    c->origin = (lm_str_t){ c->location, lm__origin_len(c->location) };
    const char *hash = strchr(c->location + c->origin.len, '#');
    c->fragment = hash ? lm_str(hash) : LM_STR("");
    *out = c;
    return LM_OK;
}

static int lm__access(lm_ctx_t *ctx, const void *conf)
{
    const lm__redirect_conf_t *c = conf;
    lm_arena_t *a = lm_ctx_arena(ctx);
    const char *loc = c->location;
    if (c->keep_path) {
        lm_str_t path = lm_ctx_path(ctx), q = lm_ctx_raw_query(ctx);
        loc = lm_arena_sprintf(a, "%.*s%.*s%s%.*s%.*s", LM_STR_FMT(c->origin), LM_STR_FMT(path),
                               q.ptr && q.len ? "?" : "", (int)(q.ptr ? q.len : 0), q.ptr ? q.ptr : "",
                               LM_STR_FMT(c->fragment));
    }
    for (const char *p = loc; *p; p++)
        if (*p == '\r' || *p == '\n')
            return lm_ctx_exit(ctx, 500, "An unexpected error occurred", NULL); /* never split the head */
    char *hdr = lm_arena_sprintf(a, "Location: %s\r\n", loc);
    return lm_ctx_exit_body(ctx, c->status, NULL, "redirecting", 11, hdr);
}

const lm_plugin_ops_t lm_plugin_redirect = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "redirect",
    .priority = 779,
    .schema = lm__fields,
    .configure = lm__configure,
    .access = lm__access,
};

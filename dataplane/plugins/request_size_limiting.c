/*
 * request_size_limiting.c - the request-size-limiting plugin (Kong 3.x
 * semantics).
 *
 * config: allowed_payload_size (128), size_unit (megabytes | kilobytes |
 * bytes; a megabyte is 2^20 bytes, a kilobyte 2^10), require_content_length
 * (false).
 *
 * A Content-Length over the limit is refused at once, without reading the
 * body: 413 {"message":"Request size limit exceeded"}, or 417 with the same
 * message when the client sent "Expect: 100-continue". Without a
 * Content-Length: 411 {"message":"A valid Content-Length header is required"}
 * when require_content_length is set and the body is not chunked; a chunked
 * body is capped while it streams (lm_ctx_limit_body), so the upstream never
 * gets a complete oversized request.
 */
#include "lm_plugins.h"

typedef struct {
    double limit; /* bytes; may be negative, as Kong allows */
    bool require_content_length;
} lm__rsl_conf_t;

static const char *const lm__units[] = { "megabytes", "kilobytes", "bytes", NULL };

static const lm_schema_field_t lm__fields[] = {
    { .name = "allowed_payload_size", .type = LM_SF_INTEGER, .def = "128" },
    { .name = "size_unit", .type = LM_SF_STRING, .required = true, .def = "\"megabytes\"", .one_of = lm__units },
    { .name = "require_content_length", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { 0 },
};

#define LM__MSG "Request size limit exceeded"

static int lm__configure(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out)
{
    lm__rsl_conf_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    const char *unit = lm_schema_str(config, "size_unit");
    double factor = 1048576;
    if (unit && strcmp(unit, "kilobytes") == 0)
        factor = 1024;
    else if (unit && strcmp(unit, "bytes") == 0)
        factor = 1;
    const cJSON *size = lm_schema_get(config, "allowed_payload_size");
    c->limit = (size ? size->valuedouble : 128) * factor;
    c->require_content_length = lm_schema_bool(config, "require_content_length");
    *out = c;
    return LM_OK;
}

static bool lm__expects_continue(lm_ctx_t *ctx)
{
    lm_str_t v;
    if (!lm_ctx_header(ctx, LM_STR("Expect"), &v))
        return false;
    while (v.len && (v.ptr[0] == ' ' || v.ptr[0] == '\t'))
        v.ptr++, v.len--;
    while (v.len && (v.ptr[v.len - 1] == ' ' || v.ptr[v.len - 1] == '\t'))
        v.len--;
    return lm_str_ieq_cstr(v, "100-continue");
}

static int lm__access(lm_ctx_t *ctx, const void *conf)
{
    const lm__rsl_conf_t *c = conf;
    int64_t cl = lm_ctx_content_length(ctx);
    if (cl >= 0) {
        if ((double)cl > c->limit)
            return lm_ctx_exit(ctx, lm__expects_continue(ctx) ? 417 : 413, LM__MSG, NULL);
        return LM_OK;
    }
    lm_str_t te;
    bool chunked = lm_ctx_header(ctx, LM_STR("Transfer-Encoding"), &te) && lm_str_eq(te, LM_STR("chunked"));
    if (c->require_content_length && !chunked)
        return lm_ctx_exit(ctx, 411, "A valid Content-Length header is required", NULL);
    if (lm_ctx_has_body(ctx))
        lm_ctx_limit_body(ctx, c->limit > 0 ? (uint64_t)c->limit : 0, LM__MSG);
    return LM_OK;
}

const lm_plugin_ops_t lm_plugin_request_size_limiting = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "request-size-limiting",
    .priority = 951,
    .schema = lm__fields,
    .configure = lm__configure,
    .access = lm__access,
};

/*
 * response_transformer.c - the response-transformer plugin (Kong 3.x), for
 * response headers.
 *
 * config: remove.headers (names), rename.headers ("old:new"),
 * replace.headers, add.headers, append.headers ("name:value"); the json and
 * json_types lists of each record are accepted and validated, but the body
 * is not changed (it streams through untouched).
 *
 * In header_filter, in Kong's order: remove every header named; rename an
 * existing header (each of its values) to the new name; replace the value of
 * a header that exists; add a header that does not exist; append a value
 * (another header line) whether or not it exists.
 */
#include "lm_plugins.h"
#include "lm_transform.h"

typedef struct {
    lm_tf_list_t remove, rename, replace, add, append;
} lm__rt_conf_t;

static const char *lm__check_json_name(const cJSON *v)
{
    return lm_tf_check_colon(v);
}

static const char *const lm__json_types[] = { "boolean", "number", "string", NULL };

static const lm_schema_field_t lm__remove[] = {
    { .name = "headers", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .def = "[]", .check = lm_schema_check_header_name },
    { .name = "json", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .def = "[]" },
    { 0 },
};
static const lm_schema_field_t lm__rename[] = {
    { .name = "headers", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .def = "[]", .check = lm_tf_check_colon_header },
    { .name = "json", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .def = "[]", .check = lm__check_json_name },
    { 0 },
};
static const lm_schema_field_t lm__values[] = {
    { .name = "headers", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .def = "[]", .check = lm_tf_check_colon_header },
    { .name = "json", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .def = "[]", .check = lm__check_json_name },
    { .name = "json_types", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .def = "[]", .one_of = lm__json_types },
    { 0 },
};

static const lm_schema_field_t lm__fields[] = {
    { .name = "remove", .type = LM_SF_RECORD, .fields = lm__remove },
    { .name = "rename", .type = LM_SF_RECORD, .fields = lm__rename },
    { .name = "replace", .type = LM_SF_RECORD, .fields = lm__values },
    { .name = "add", .type = LM_SF_RECORD, .fields = lm__values },
    { .name = "append", .type = LM_SF_RECORD, .fields = lm__values },
    { 0 },
};

static int lm__configure(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out)
{
    lm__rt_conf_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    c->remove = lm_tf_list(cc->arena, config, "remove", "headers");
    c->rename = lm_tf_list(cc->arena, config, "rename", "headers");
    c->replace = lm_tf_list(cc->arena, config, "replace", "headers");
    c->add = lm_tf_list(cc->arena, config, "add", "headers");
    c->append = lm_tf_list(cc->arena, config, "append", "headers");
    *out = c;
    return LM_OK;
}

static int lm__header_filter(lm_ctx_t *ctx, const void *conf)
{
    const lm__rt_conf_t *c = conf;
    lm_str_t v;
    for (size_t i = 0; i < c->remove.n; i++)
        lm_ctx_resp_remove_header(ctx, c->remove.v[i].name);
    for (size_t i = 0; i < c->rename.n; i++) {
        lm_str_t from = c->rename.v[i].name, to = c->rename.v[i].value;
        if (!lm_ctx_resp_header(ctx, from, NULL) || lm_str_ieq(from, to))
            continue;
        /* every value of the old name, in order, under the new one */
        lm_str_t name, val;
        size_t n = 0;
        for (size_t k = 0; lm_ctx_resp_header_at(ctx, k, &name, &val); k++)
            n += lm_str_ieq(name, from);
        lm_str_t *vals = lm_ctx_alloc(ctx, n * sizeof(*vals));
        n = 0;
        for (size_t k = 0; lm_ctx_resp_header_at(ctx, k, &name, &val); k++)
            if (lm_str_ieq(name, from))
                vals[n++] = val;
        lm_ctx_resp_remove_header(ctx, from);
        lm_ctx_resp_remove_header(ctx, to);
        for (size_t k = 0; k < n; k++)
            lm_ctx_resp_add_header(ctx, to, vals[k]);
    }
    for (size_t i = 0; i < c->replace.n; i++)
        if (lm_ctx_resp_header(ctx, c->replace.v[i].name, &v))
            lm_ctx_resp_set_header(ctx, c->replace.v[i].name, c->replace.v[i].value);
    for (size_t i = 0; i < c->add.n; i++)
        if (!lm_ctx_resp_header(ctx, c->add.v[i].name, &v))
            lm_ctx_resp_set_header(ctx, c->add.v[i].name, c->add.v[i].value);
    for (size_t i = 0; i < c->append.n; i++)
        lm_ctx_resp_add_header(ctx, c->append.v[i].name, c->append.v[i].value);
    return LM_OK;
}

const lm_plugin_ops_t lm_plugin_response_transformer = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "response-transformer",
    .priority = 800,
    .schema = lm__fields,
    .configure = lm__configure,
    .header_filter = lm__header_filter,
};

/*
 * hello.c - an example external plugin, built as a shared object and loaded
 * with `limen-dataplane --plugin-dir DIR`. It greets on every response and
 * turns away requests that carry a configured header. It also counts the
 * responses per greeting in process-wide state (lm_plugin_shared), which a
 * config swap keeps: X-Hello-Count goes on counting.
 *
 *   plugins:
 *   - name: hello
 *     config: {greeting: "hi there", deny_header: X-No-Entry}
 *
 * Build: cc -shared -fPIC -I common -I dataplane -I/usr/include/cjson -o hello.so examples/plugins/hello.c
 */
#include "lm_plugin.h"

#include <stdatomic.h>
#include <stdio.h>

typedef struct {
    const char *greeting;
    const char *deny_header; /* NULL: never deny */
    _Atomic uint64_t *count; /* shared by every worker and snapshot with this greeting */
} hello_conf_t;

static const lm_schema_field_t hello_fields[] = {
    { .name = "greeting", .type = LM_SF_STRING, .def = "\"hello\"", .has_min = true, .min = 1 },
    { .name = "deny_header", .type = LM_SF_STRING, .check = lm_schema_check_header_name },
    { 0 },
};

static int hello_configure(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out)
{
    hello_conf_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    c->greeting = lm_arena_strdup(cc->arena, lm_schema_str(config, "greeting"));
    const char *deny = lm_schema_str(config, "deny_header");
    c->deny_header = deny ? lm_arena_strdup(cc->arena, deny) : NULL;
    c->count = lm_plugin_shared("hello", lm_str(c->greeting), sizeof(*c->count));
    if (c->deny_header && strcasecmp(c->deny_header, "host") == 0) {
        lm_plugin_error(cc, "deny_header", "cannot be the Host header");
        return LM_ERROR;
    }
    *out = c;
    return LM_OK;
}

static int hello_access(lm_ctx_t *ctx, const void *conf)
{
    const hello_conf_t *c = conf;
    if (c->deny_header && lm_ctx_header(ctx, lm_str(c->deny_header), NULL))
        return lm_ctx_exit(ctx, 418, "the hello plugin says no", NULL);
    lm_ctx_set_header(ctx, LM_STR("X-Hello-Upstream"), lm_str(c->greeting));
    return LM_OK;
}

static int hello_header_filter(lm_ctx_t *ctx, const void *conf)
{
    const hello_conf_t *c = conf;
    lm_ctx_resp_set_header(ctx, LM_STR("X-Hello"), lm_str(c->greeting));
    char n[24];
    snprintf(n, sizeof(n), "%llu", (unsigned long long)(atomic_fetch_add(c->count, 1) + 1));
    lm_ctx_resp_set_header(ctx, LM_STR("X-Hello-Count"), lm_str(n));
    return LM_OK;
}

const lm_plugin_ops_t limen_plugin = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "hello",
    .priority = 700,
    .schema = hello_fields,
    .configure = hello_configure,
    .access = hello_access,
    .header_filter = hello_header_filter,
};

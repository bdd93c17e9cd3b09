/*
 * acl.c - the acl plugin (Kong 3.x): allows or denies the authenticated
 * consumer by its acl groups (the `acls` entities of the configuration).
 *
 * Behaviour (Kong's handler, facts only):
 *   - exactly one of config.allow / config.deny must be non-empty (Kong's
 *     only_one_of and at_least_one_of entity checks, same messages);
 *   - the list is a deny list when deny has an element, else an allow list;
 *   - no consumer: 401 "Unauthorized" (Kong's kong.response.error(401));
 *   - a consumer (also the anonymous one) in a denied group, or in none of
 *     the allowed groups: 403 "You cannot consume this service";
 *   - allowed: X-Consumer-Groups: "g1, g2" (the consumer's groups in document
 *     order) on the upstream request unless hide_groups_header; a consumer
 *     without groups gets the header removed (Kong sets it to "", which nginx
 *     treats as a removal).
 * always_use_authenticated_groups only matters with plugins that set
 * "authenticated groups" (ldap-auth, openid-connect), which Limen does not
 * have: accepted, no effect. include_consumer_groups (Kong Enterprise) is
 * accepted when false and refused when true.
 */
#include "auth_common.h"

#define LM__ERR_FORBIDDEN "You cannot consume this service"
#define LM__ERR_UNAUTHORIZED "Unauthorized"

typedef struct {
    const char **groups; /* the configured allow or deny list */
    size_t num_groups;
    bool deny;
    bool hide_groups_header;
} lm__acl_conf_t;

static const lm_schema_field_t lm__acl_schema[] = {
    { .name = "allow", .type = LM_SF_ARRAY, .elem = LM_SF_STRING },
    { .name = "deny", .type = LM_SF_ARRAY, .elem = LM_SF_STRING },
    { .name = "hide_groups_header", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { .name = "always_use_authenticated_groups", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { .name = "include_consumer_groups", .type = LM_SF_BOOLEAN, .def = "false" },
    { 0 },
};

static int lm__acl_configure(lm_plugin_cfg_ctx_t *cc, const cJSON *conf, void **out)
{
    const cJSON *allow = lm_schema_get(conf, "allow"), *deny = lm_schema_get(conf, "deny");
    int na = cJSON_GetArraySize(allow), nd = cJSON_GetArraySize(deny);
    bool ok = true;
    /* Kong's only_one_of fails unless exactly one is non-empty; at_least_one_of when none is */
    if ((na > 0) == (nd > 0)) {
        lm_plugin_error(cc, NULL, "only one of these fields must be non-empty: 'config.allow', 'config.deny'");
        ok = false;
    }
    if (na == 0 && nd == 0)
        lm_plugin_error(cc, NULL, "at least one of these fields must be non-empty: 'config.allow', 'config.deny'");
    const char *lists[2] = { "allow", "deny" };
    for (size_t l = 0; l < 2; l++) {
        const cJSON *it;
        size_t i = 0;
        const cJSON *arr = l ? deny : allow;
        cJSON_ArrayForEach(it, arr) {
            if (!*it->valuestring) {
                char field[64];
                snprintf(field, sizeof(field), "%s[%zu]", lists[l], i);
                lm_plugin_error(cc, field, "length must be at least 1");
                ok = false;
            }
            i++;
        }
    }
    if (lm_schema_bool(conf, "include_consumer_groups")) {
        lm_plugin_error(cc, "include_consumer_groups",
                        "include_consumer_groups = true (Kong Enterprise consumer groups) is not supported by Limen");
        ok = false;
    }
    if (!ok || (na == 0 && nd == 0))
        return LM_ERROR;
    lm__acl_conf_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    c->deny = nd > 0;
    const cJSON *list = c->deny ? deny : allow;
    c->groups = lm_arena_calloc(cc->arena, (size_t)cJSON_GetArraySize(list) * sizeof(char *));
    const cJSON *it;
    cJSON_ArrayForEach(it, list) c->groups[c->num_groups++] = lm_arena_strdup(cc->arena, it->valuestring);
    c->hide_groups_header = lm_schema_bool(conf, "hide_groups_header");
    *out = c;
    return LM_OK;
}

static bool lm__in_groups(const lm__acl_conf_t *c, const char *const *groups, size_t n)
{
    for (size_t i = 0; i < c->num_groups; i++)
        for (size_t j = 0; j < n; j++)
            if (strcmp(c->groups[i], groups[j]) == 0)
                return true;
    return false;
}

static int lm__acl_access(lm_ctx_t *ctx, const void *conf)
{
    const lm__acl_conf_t *c = conf;
    const lm_consumer_t *consumer = lm_ctx_consumer(ctx);
    if (!consumer)
        return lm_ctx_exit(ctx, 401, LM__ERR_UNAUTHORIZED, NULL);
    size_t n = 0;
    const char *const *groups = lm_ctx_consumer_groups(ctx, consumer, &n);
    bool in = lm__in_groups(c, groups, n);
    if (c->deny ? in : !in)
        return lm_ctx_exit(ctx, 403, LM__ERR_FORBIDDEN, NULL);
    if (c->hide_groups_header)
        return LM_OK;
    lm_str_t hdr = LM_STR("X-Consumer-Groups");
    if (n == 0) {
        lm_ctx_remove_header(ctx, hdr);
        return LM_OK;
    }
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += strlen(groups[i]) + 2;
    char *v = lm_ctx_alloc(ctx, len + 1), *p = v;
    for (size_t i = 0; i < n; i++) {
        size_t gl = strlen(groups[i]);
        if (i) {
            memcpy(p, ", ", 2);
            p += 2;
        }
        memcpy(p, groups[i], gl);
        p += gl;
    }
    *p = '\0';
    lm_ctx_set_header(ctx, hdr, (lm_str_t){ v, (size_t)(p - v) });
    return LM_OK;
}

const lm_plugin_ops_t lm_plugin_acl = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "acl",
    .priority = 950,
    .schema = lm__acl_schema,
    .configure = lm__acl_configure,
    .access = lm__acl_access,
};

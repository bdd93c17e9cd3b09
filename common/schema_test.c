/* schema_test.c - lm_schema_apply: defaults, types, ranges, one-of, nested
 * records, arrays, maps and the error paths. */
#include "lm_schema.h"
#include "lm_test.h"

static const char *const lm__units[] = { "megabytes", "kilobytes", "bytes", NULL };

static const lm_schema_field_t lm__redis[] = {
    { .name = "host", .type = LM_SF_STRING },
    { .name = "port", .type = LM_SF_INTEGER, .def = "6379", .has_min = true, .min = 0, .has_max = true, .max = 65535 },
    { 0 },
};

static const lm_schema_field_t lm__fields[] = {
    { .name = "names", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .def = "[\"apikey\"]", .unique = true,
      .check = lm_schema_check_header_name },
    { .name = "hide", .type = LM_SF_BOOLEAN, .def = "false" },
    { .name = "size", .type = LM_SF_NUMBER, .def = "128", .has_min = true, .min = 0 },
    { .name = "unit", .type = LM_SF_STRING, .def = "\"megabytes\"", .one_of = lm__units },
    { .name = "anonymous", .type = LM_SF_STRING },
    { .name = "redis", .type = LM_SF_RECORD, .fields = lm__redis },
    { .name = "allow", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .check = lm_schema_check_cidr },
    { .name = "headers", .type = LM_SF_MAP, .elem = LM_SF_STRING },
    { .name = "realm", .type = LM_SF_STRING, .has_min = true, .min = 1 },
    { 0 },
};

static lm_schema_ctx_t lm__ctx(lm_config_errors_t *e)
{
    lm_schema_ctx_t sc = { e, "plugins[3].config", "plugin", "demo", "config" };
    return sc;
}

static cJSON *lm__apply(const char *json, lm_config_errors_t *e)
{
    cJSON *in = json ? cJSON_Parse(json) : NULL;
    lm_schema_ctx_t sc = lm__ctx(e);
    cJSON *out = lm_schema_apply(&sc, lm__fields, in);
    cJSON_Delete(in);
    return out;
}

LM_TEST(test_defaults)
{
    lm_config_errors_t e;
    lm_config_errors_init(&e);
    cJSON *o = lm__apply(NULL, &e);
    LM_CHECK(o != NULL);
    LM_CHECK_EQ_INT(e.count, 0);
    LM_CHECK_STR(cJSON_GetArrayItem(lm_schema_get(o, "names"), 0)->valuestring, "apikey");
    LM_CHECK(!lm_schema_bool(o, "hide"));
    LM_CHECK_EQ_INT((int)lm_schema_num(o, "size"), 128);
    LM_CHECK_STR(lm_schema_str(o, "unit"), "megabytes");
    LM_CHECK(lm_schema_str(o, "anonymous") == NULL);
    LM_CHECK(cJSON_IsNull(cJSON_GetObjectItem(o, "anonymous"))); /* present, as null */
    const cJSON *redis = lm_schema_get(o, "redis");               /* a record gets its own defaults */
    LM_CHECK(redis && (int)lm_schema_num(redis, "port") == 6379);
    cJSON_Delete(o);
    lm_config_errors_free(&e);
}

LM_TEST(test_given_values_and_sets)
{
    lm_config_errors_t e;
    lm_config_errors_init(&e);
    cJSON *o = lm__apply("{\"names\":[\"a\",\"b\",\"a\"],\"hide\":true,\"unit\":\"bytes\","
                         "\"redis\":{\"host\":\"r\"},\"allow\":[\"10.0.0.0/8\",\"::1\"],\"headers\":{\"x\":\"y\"}}",
                         &e);
    LM_CHECK(o != NULL);
    LM_CHECK_EQ_INT(cJSON_GetArraySize(lm_schema_get(o, "names")), 2); /* a set: duplicates dropped */
    LM_CHECK(lm_schema_bool(o, "hide"));
    LM_CHECK_STR(lm_schema_str(lm_schema_get(o, "redis"), "host"), "r");
    LM_CHECK_EQ_INT((int)lm_schema_num(lm_schema_get(o, "redis"), "port"), 6379);
    cJSON_Delete(o);
    lm_config_errors_free(&e);
}

static void lm__expect(const char *json, const char *path, const char *field, const char *msg)
{
    lm_config_errors_t e;
    lm_config_errors_init(&e);
    cJSON *o = lm__apply(json, &e);
    LM_CHECK(o == NULL);
    bool found = false;
    for (size_t i = 0; i < e.count; i++) {
        if (strcmp(e.items[i].path, path) == 0 && strcmp(e.items[i].message, msg) == 0 &&
            strcmp(e.items[i].field, field) == 0 && strcmp(e.items[i].entity_type, "plugin") == 0)
            found = true;
    }
    if (!found) {
        LM_FAILF("%s: want %s: %s", json, path, msg);
        for (size_t i = 0; i < e.count; i++)
            fprintf(stderr, "  got %s (%s): %s\n", e.items[i].path, e.items[i].field, e.items[i].message);
    }
    cJSON_Delete(o);
    lm_config_errors_free(&e);
}

LM_TEST(test_errors)
{
    lm__expect("{\"nope\":1}", "plugins[3].config.nope", "config.nope", "unknown field");
    lm__expect("{\"hide\":\"yes\"}", "plugins[3].config.hide", "config.hide", "expected a boolean");
    lm__expect("{\"size\":\"x\"}", "plugins[3].config.size", "config.size", "expected a number");
    lm__expect("{\"size\":-1}", "plugins[3].config.size", "config.size", "value must be greater than or equal to 0");
    lm__expect("{\"unit\":\"gigabytes\"}", "plugins[3].config.unit", "config.unit",
               "expected one of: megabytes, kilobytes, bytes");
    lm__expect("{\"names\":\"apikey\"}", "plugins[3].config.names", "config.names", "expected an array");
    lm__expect("{\"names\":[\"ok\",\"bad name\"]}", "plugins[3].config.names[1]", "config.names[1]",
               "bad header name 'bad name', allowed characters are A-Z, a-z, 0-9, '_', and '-'");
    lm__expect("{\"anonymous\":\"\"}", "plugins[3].config.anonymous", "config.anonymous", "length must be at least 1");
    lm__expect("{\"names\":[1]}", "plugins[3].config.names[0]", "config.names[0]", "expected a string");
    lm__expect("{\"redis\":{\"port\":70000}}", "plugins[3].config.redis.port", "config.redis.port",
               "value should be between 0 and 65535");
    lm__expect("{\"redis\":{\"other\":1}}", "plugins[3].config.redis.other", "config.redis.other", "unknown field");
    lm__expect("{\"redis\":5}", "plugins[3].config.redis", "config.redis", "expected a record");
    lm__expect("{\"allow\":[\"10.0.0.0/33\"]}", "plugins[3].config.allow[0]", "config.allow[0]",
               "invalid ip or cidr range: '10.0.0.0/33'");
    lm__expect("{\"headers\":{\"x\":1}}", "plugins[3].config.headers.x", "config.headers.x", "expected a string");
    lm__expect("{\"realm\":\"\"}", "plugins[3].config.realm", "config.realm", "length must be at least 1");
    lm__expect("{\"names\":[null]}", "plugins[3].config.names[0]", "config.names[0]", "required field missing");
}

LM_TEST(test_required)
{
    static const lm_schema_field_t req[] = { { .name = "key", .type = LM_SF_STRING, .required = true }, { 0 } };
    lm_config_errors_t e;
    lm_config_errors_init(&e);
    lm_schema_ctx_t sc = lm__ctx(&e);
    cJSON *o = lm_schema_apply(&sc, req, NULL);
    LM_CHECK(o == NULL);
    LM_CHECK(e.count == 1 && strcmp(e.items[0].message, "required field missing") == 0 &&
             strcmp(e.items[0].path, "plugins[3].config.key") == 0);
    lm_config_errors_free(&e);
}

int main(void)
{
    LM_RUN(test_defaults);
    LM_RUN(test_given_values_and_sets);
    LM_RUN(test_errors);
    LM_RUN(test_required);
    return lm_test_summary("schema");
}

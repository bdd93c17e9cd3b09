/*
 * admin_schemas.c - GET /schemas/{entity}, GET /schemas/plugins/{name},
 * POST /schemas/{entity}/validate, POST /schemas/plugins/validate and
 * GET /plugins/enabled and GET /'s plugin summary, in Kong's shapes: {"fields": [{"name": {"type": ...,
 * "default": ..., "required": ...}}, ...]}.
 */
#include "admin_internal.h"
#include "lm_admin_api.h"
#include "lm_plugin.h"
#include "lm_proxy.h"

#include <stdio.h>
#include <stdlib.h>

static const char *const lm__required[] = {
    "services.host", "plugins.name", "upstreams.name", "targets.target", "targets.upstream",
    "certificates.cert", "certificates.key", "snis.name", "snis.certificate", "ca_certificates.cert",
    "basicauth_credentials.username", "basicauth_credentials.password", "hmacauth_credentials.username",
    "acls.group", "keyauth_credentials.consumer", "basicauth_credentials.consumer",
    "jwt_secrets.consumer", "hmacauth_credentials.consumer", "acls.consumer", NULL
};

static bool lm__is_required(const lm_akind_t *k, const char *field)
{
    char key[128];
    snprintf(key, sizeof(key), "%s.%s", k->name, field);
    for (size_t i = 0; lm__required[i]; i++)
        if (strcmp(lm__required[i], key) == 0)
            return true;
    return false;
}

static cJSON *lm__entity_schema(const lm_akind_t *k)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *fields = cJSON_AddArrayToObject(j, "fields");
    for (const lm_afield_t *f = k->fields; f->name; f++) {
        if (strcmp(f->name, "url") == 0)
            continue;
        cJSON *wrap = cJSON_CreateObject(), *d = cJSON_AddObjectToObject(wrap, f->name);
        const char *type = "string";
        switch (f->type) {
        case LM_AF_NUM: type = "integer"; break;
        case LM_AF_BOOL: type = "boolean"; break;
        case LM_AF_STRS: type = strcmp(f->name, "tags") == 0 ? "set" : "array"; break;
        case LM_AF_REF: type = "foreign"; break;
        case LM_AF_HEADERS: type = "map"; break;
        case LM_AF_JSON: type = "set"; break;
        case LM_AF_CONFIG:
        case LM_AF_HEALTH: type = "record"; break;
        default: break;
        }
        cJSON_AddStringToObject(d, "type", type);
        if (strcmp(f->name, "id") == 0) {
            cJSON_AddTrueToObject(d, "uuid");
            cJSON_AddTrueToObject(d, "auto");
        } else if (strcmp(f->name, "created_at") == 0 || strcmp(f->name, "updated_at") == 0) {
            cJSON_AddTrueToObject(d, "timestamp");
            cJSON_AddTrueToObject(d, "auto");
        }
        if (f->type == LM_AF_STRS)
            cJSON_AddStringToObject(cJSON_AddObjectToObject(d, "elements"), "type", "string");
        if (f->type == LM_AF_REF) {
            char ref[64];
            snprintf(ref, sizeof(ref), "%ss", strcmp(f->name, "client_certificate") == 0 ? "certificate" : f->name);
            cJSON_AddStringToObject(d, "reference", ref);
        }
        if (f->def && strcmp(f->def, "-") != 0) {
            cJSON *def = cJSON_Parse(f->def);
            if (def)
                cJSON_AddItemToObject(d, "default", def);
        }
        for (size_t u = 0; u < LM_ARRAY_SIZE(k->unique) && k->unique[u]; u++)
            if (strcmp(k->unique[u], f->name) == 0)
                cJSON_AddTrueToObject(d, "unique");
        if (lm__is_required(k, f->name))
            cJSON_AddTrueToObject(d, "required");
        cJSON_AddItemToArray(fields, wrap);
    }
    return j;
}

static const char *lm__sf_type(lm_sf_type_t t)
{
    switch (t) {
    case LM_SF_STRING: return "string";
    case LM_SF_INTEGER: return "integer";
    case LM_SF_NUMBER: return "number";
    case LM_SF_BOOLEAN: return "boolean";
    case LM_SF_ARRAY: return "array";
    case LM_SF_MAP: return "map";
    case LM_SF_RECORD: return "record";
    default: return "any";
    }
}

static cJSON *lm__schema_fields(const lm_schema_field_t *fields);

static cJSON *lm__schema_field(const lm_schema_field_t *f)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "type", f->type == LM_SF_ARRAY && f->unique ? "set" : lm__sf_type(f->type));
    if (f->required)
        cJSON_AddTrueToObject(d, "required");
    if (f->def) {
        cJSON *def = cJSON_Parse(f->def);
        if (def)
            cJSON_AddItemToObject(d, "default", def);
    }
    if (f->has_min || f->has_max) {
        cJSON *b = cJSON_AddArrayToObject(d, f->type == LM_SF_STRING ? "len_between" : "between");
        cJSON_AddItemToArray(b, f->has_min ? cJSON_CreateNumber(f->min) : cJSON_CreateNull());
        cJSON_AddItemToArray(b, f->has_max ? cJSON_CreateNumber(f->max) : cJSON_CreateNull());
    }
    if (f->one_of) {
        cJSON *o = cJSON_AddArrayToObject(d, "one_of");
        for (size_t i = 0; f->one_of[i]; i++)
            cJSON_AddItemToArray(o, cJSON_CreateString(f->one_of[i]));
    }
    if (f->type == LM_SF_ARRAY || f->type == LM_SF_MAP) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "type", lm__sf_type(f->elem));
        if (f->elem == LM_SF_RECORD && f->fields)
            cJSON_AddItemToObject(e, "fields", lm__schema_fields(f->fields));
        cJSON_AddItemToObject(d, f->type == LM_SF_MAP ? "values" : "elements", e);
        if (f->type == LM_SF_MAP)
            cJSON_AddItemToObject(d, "keys", cJSON_Parse("{\"type\":\"string\"}"));
    } else if (f->type == LM_SF_RECORD && f->fields) {
        cJSON_AddItemToObject(d, "fields", lm__schema_fields(f->fields));
    }
    return d;
}

static cJSON *lm__schema_fields(const lm_schema_field_t *fields)
{
    cJSON *arr = cJSON_CreateArray();
    for (const lm_schema_field_t *f = fields; f && f->name; f++) {
        cJSON *wrap = cJSON_CreateObject();
        cJSON_AddItemToObject(wrap, f->name, lm__schema_field(f));
        cJSON_AddItemToArray(arr, wrap);
    }
    return arr;
}

static cJSON *lm__plugin_schema(const lm_plugin_ops_t *ops)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *fields = cJSON_AddArrayToObject(j, "fields");
    static const char *const refs[] = { "consumer", "service", "route" };
    for (int i = 0; i < 3; i++) {
        cJSON *w = cJSON_CreateObject(), *d = cJSON_AddObjectToObject(w, refs[i]);
        cJSON_AddStringToObject(d, "type", "foreign");
        char ref[32];
        snprintf(ref, sizeof(ref), "%ss", refs[i]);
        cJSON_AddStringToObject(d, "reference", ref);
        cJSON_AddNullToObject(d, "default");
        cJSON_AddItemToArray(fields, w);
    }
    cJSON *w = cJSON_CreateObject(), *d = cJSON_AddObjectToObject(w, "protocols");
    cJSON_AddStringToObject(d, "type", "set");
    cJSON_AddItemToObject(d, "default", cJSON_Parse("[\"grpc\",\"grpcs\",\"http\",\"https\"]"));
    cJSON_AddTrueToObject(d, "required");
    cJSON_AddItemToArray(fields, w);
    w = cJSON_CreateObject();
    d = cJSON_AddObjectToObject(w, "config");
    cJSON_AddStringToObject(d, "type", "record");
    cJSON_AddTrueToObject(d, "required");
    cJSON_AddItemToObject(d, "fields", lm__schema_fields(ops->schema));
    cJSON_AddItemToArray(fields, w);
    return j;
}

/* Validates one entity on its own: the config builder on a document holding
 * it (references set aside; a required parent stands in), plus the plugin's
 * config schema. */
static cJSON *lm__validate(const lm_akind_t *k, cJSON *ent)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "_format_version", "3.0");
    char pid[37];
    lm_config_uuid("validate:parent", pid);
    for (const lm_afield_t *f = k->fields; f->name; f++)
        if (f->type == LM_AF_REF)
            cJSON_DeleteItemFromObjectCaseSensitive(ent, f->name);
    if (k->parent && (strcmp(k->parent, "consumer") == 0 || strcmp(k->parent, "upstream") == 0)) {
        bool consumer = strcmp(k->parent, "consumer") == 0;
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "id", pid);
        cJSON_AddStringToObject(p, consumer ? "username" : "name", "validate-parent");
        cJSON_AddItemToArray(cJSON_AddArrayToObject(doc, consumer ? "consumers" : "upstreams"), p);
        cJSON_AddStringToObject(cJSON_AddObjectToObject(ent, k->parent), "id", pid);
    }
    cJSON_AddItemToArray(cJSON_AddArrayToObject(doc, k->name), ent);
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    lm_config_t *cfg = lm_config_build(doc, &errs); /* takes doc */
    if (cfg && strcmp(k->name, "plugins") == 0) {
        const lm_plugin_t *p = cfg->plugins[0];
        const lm_plugin_ops_t *ops = lm_plugin_find(p->name);
        if (!ops) {
            lm_config_errors_add(&errs, "plugins[0].name", "plugin", p->name, "name",
                                 "plugin '%s' is not available in this version of Limen", p->name);
        } else {
            lm_schema_ctx_t sc = { .errs = &errs, .path = "plugins[0].config", .entity_type = "plugin",
                                   .entity_name = p->name, .field = "config" };
            cJSON *full = lm_schema_apply(&sc, ops->schema, p->config);
            cJSON_Delete(full);
        }
    }
    lm_config_free(cfg);
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "%s[0]", k->name);
    cJSON *j = errs.count ? lm_admin_schema_violation(&errs, prefix) : NULL;
    lm_config_errors_free(&errs);
    if (!j) {
        j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "message", "schema validation successful");
    }
    return j;
}

static cJSON *lm__msg(const char *fmt, const char *arg)
{
    char m[256];
    snprintf(m, sizeof(m), fmt, arg);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "message", m);
    return j;
}

int lm_admin_schemas(lm_admin_call_t *call, char **seg, size_t n)
{
    bool get = lm_str_eq(call->method, LM_STR("GET")) || lm_str_eq(call->method, LM_STR("HEAD"));
    bool post = lm_str_eq(call->method, LM_STR("POST"));
    if (strcmp(seg[0], "plugins") == 0) { /* /plugins/enabled */
        if (!get) {
            call->reply(call, 405, lm__msg("Method not allowed", NULL));
            return LM_OK;
        }
        cJSON *j = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(j, "enabled_plugins");
        for (const lm_plugin_ops_t *const *o = lm_plugin_all(); *o; o++)
            cJSON_AddItemToArray(arr, cJSON_CreateString((*o)->name));
        call->reply(call, 200, j);
        return LM_OK;
    }
    /* /schemas/plugins/{name}, /schemas/plugins/validate, /schemas/{entity}[/validate] */
    bool plugins = n >= 2 && strcmp(seg[1], "plugins") == 0;
    bool validate = n >= 2 && strcmp(seg[n - 1], "validate") == 0;
    if (validate && post && (n == 3 || (n == 3 && plugins))) {
        const lm_akind_t *k = plugins ? lm_akind_by_name("plugins") : lm_akind_by_seg(seg[1], strlen(seg[1]), false);
        if (!k)
            k = lm_akind_by_name(seg[1]);
        if (!k) {
            call->reply(call, 404, lm__msg("No entity named '%s'", seg[1]));
            return LM_OK;
        }
        bool form;
        const char *err;
        cJSON *args = lm_admin_decode_body(call->content_type.ptr ? call->content_type.ptr : "",
                                           call->content_type.len, call->body ? call->body : "",
                                           call->body_len, &form, &err);
        if (!args) {
            call->reply(call, 400, lm__msg("%s", err));
            return LM_OK;
        }
        if (form)
            lm_admin_coerce(k, args);
        cJSON *j = lm__validate(k, args);
        call->reply(call, cJSON_GetObjectItem(j, "code") ? 400 : 200, j);
        return LM_OK;
    }
    if (!get) {
        call->reply(call, 405, lm__msg("Method not allowed", NULL));
        return LM_OK;
    }
    if (plugins && n == 3) {
        const lm_plugin_ops_t *ops = lm_plugin_find(seg[2]);
        if (!ops)
            call->reply(call, 404, lm__msg("No plugin named '%s'", seg[2]));
        else
            call->reply(call, 200, lm__plugin_schema(ops));
        return LM_OK;
    }
    if (n == 2) {
        const lm_akind_t *k = lm_akind_by_name(seg[1]);
        if (!k)
            k = lm_akind_by_seg(seg[1], strlen(seg[1]), false);
        if (!k)
            call->reply(call, 404, lm__msg("No entity named '%s'", seg[1]));
        else
            call->reply(call, 200, lm__entity_schema(k));
        return LM_OK;
    }
    call->reply(call, 404, lm__msg("Not found", NULL));
    return LM_OK;
}

/* ---- GET / ------------------------------------------------------------------ */

void lm_admin_api_root_info(lm_server_t *srv, cJSON *root)
{
    cJSON *pl = cJSON_AddObjectToObject(root, "plugins");
    cJSON *avail = cJSON_AddObjectToObject(pl, "available_on_server");
    for (const lm_plugin_ops_t *const *o = lm_plugin_all(); *o; o++) {
        cJSON *e = cJSON_AddObjectToObject(avail, (*o)->name);
        cJSON_AddStringToObject(e, "version", LM_VERSION);
        cJSON_AddNumberToObject(e, "priority", (*o)->priority);
    }
    cJSON *enabled = cJSON_AddArrayToObject(pl, "enabled_in_cluster");
    const lm_config_t *cfg = srv->current ? srv->current->cfg : NULL;
    for (size_t i = 0; cfg && i < cfg->num_plugins; i++) {
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++)
            seen = strcmp(cfg->plugins[k]->name, cfg->plugins[i]->name) == 0;
        if (!seen)
            cJSON_AddItemToArray(enabled, cJSON_CreateString(cfg->plugins[i]->name));
    }
}

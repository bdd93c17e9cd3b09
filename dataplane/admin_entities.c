/*
 * admin_entities.c - the entity kinds of Kong's Admin API (fields, defaults,
 * URL segments, unique fields), the flat document derived from a built
 * configuration, and entities rendered as Kong shows them. See
 * admin_internal.h.
 */
#include "admin_internal.h"
#include "lm_map.h"
#include "lm_plugin.h"

#include <openssl/rand.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- kinds ---------------------------------------------------------------- */

#define LM__TIMES { "created_at", LM_AF_NUM, "-" }, { "updated_at", LM_AF_NUM, "-" }

static const lm_afield_t lm__service_f[] = {
    { "id", LM_AF_STR, NULL }, LM__TIMES, { "name", LM_AF_STR, NULL },
    { "retries", LM_AF_NUM, "5" }, { "protocol", LM_AF_STR, "\"http\"" },
    { "host", LM_AF_STR, NULL }, { "port", LM_AF_NUM, "80" }, { "path", LM_AF_STR, NULL },
    { "connect_timeout", LM_AF_NUM, "60000" }, { "write_timeout", LM_AF_NUM, "60000" },
    { "read_timeout", LM_AF_NUM, "60000" }, { "tags", LM_AF_STRS, NULL },
    { "client_certificate", LM_AF_REF, NULL }, { "tls_verify", LM_AF_BOOL, NULL },
    { "tls_verify_depth", LM_AF_NUM, NULL }, { "ca_certificates", LM_AF_STRS, NULL },
    { "enabled", LM_AF_BOOL, "true" }, { "url", LM_AF_STR, "-" }, { NULL, 0, NULL }
};

static const lm_afield_t lm__route_f[] = {
    { "id", LM_AF_STR, NULL }, LM__TIMES, { "name", LM_AF_STR, NULL },
    { "protocols", LM_AF_STRS, "[\"http\",\"https\"]" }, { "methods", LM_AF_STRS, NULL },
    { "hosts", LM_AF_STRS, NULL }, { "paths", LM_AF_STRS, NULL }, { "headers", LM_AF_HEADERS, NULL },
    { "https_redirect_status_code", LM_AF_NUM, "426" }, { "regex_priority", LM_AF_NUM, "0" },
    { "strip_path", LM_AF_BOOL, "true" }, { "path_handling", LM_AF_STR, "\"v0\"" },
    { "preserve_host", LM_AF_BOOL, "false" }, { "request_buffering", LM_AF_BOOL, "true" },
    { "response_buffering", LM_AF_BOOL, "true" }, { "snis", LM_AF_STRS, NULL },
    { "sources", LM_AF_JSON, NULL }, { "destinations", LM_AF_JSON, NULL },
    { "tags", LM_AF_STRS, NULL }, { "service", LM_AF_REF, NULL }, { NULL, 0, NULL }
};

static const lm_afield_t lm__consumer_f[] = {
    { "id", LM_AF_STR, NULL }, LM__TIMES, { "username", LM_AF_STR, NULL },
    { "custom_id", LM_AF_STR, NULL }, { "tags", LM_AF_STRS, NULL }, { NULL, 0, NULL }
};

static const lm_afield_t lm__plugin_f[] = {
    { "id", LM_AF_STR, NULL }, LM__TIMES, { "name", LM_AF_STR, NULL },
    { "instance_name", LM_AF_STR, NULL }, { "route", LM_AF_REF, NULL },
    { "service", LM_AF_REF, NULL }, { "consumer", LM_AF_REF, NULL }, { "config", LM_AF_CONFIG, "{}" },
    { "protocols", LM_AF_STRS, "[\"grpc\",\"grpcs\",\"http\",\"https\"]" },
    { "enabled", LM_AF_BOOL, "true" }, { "tags", LM_AF_STRS, NULL }, { NULL, 0, NULL }
};

static const lm_afield_t lm__upstream_f[] = {
    { "id", LM_AF_STR, NULL }, LM__TIMES, { "name", LM_AF_STR, NULL },
    { "algorithm", LM_AF_STR, "\"round-robin\"" }, { "hash_on", LM_AF_STR, "\"none\"" },
    { "hash_fallback", LM_AF_STR, "\"none\"" }, { "hash_on_header", LM_AF_STR, NULL },
    { "hash_fallback_header", LM_AF_STR, NULL }, { "hash_on_cookie", LM_AF_STR, NULL },
    { "hash_on_cookie_path", LM_AF_STR, "\"/\"" }, { "hash_on_query_arg", LM_AF_STR, NULL },
    { "hash_fallback_query_arg", LM_AF_STR, NULL }, { "hash_on_uri_capture", LM_AF_STR, NULL },
    { "hash_fallback_uri_capture", LM_AF_STR, NULL }, { "slots", LM_AF_NUM, "10000" },
    { "healthchecks", LM_AF_HEALTH, NULL }, { "tags", LM_AF_STRS, NULL },
    { "host_header", LM_AF_STR, NULL }, { "client_certificate", LM_AF_REF, NULL },
    { "use_srv_name", LM_AF_BOOL, "false" }, { NULL, 0, NULL }
};

static const lm_afield_t lm__target_f[] = {
    { "id", LM_AF_STR, NULL }, LM__TIMES, { "upstream", LM_AF_REF, NULL },
    { "target", LM_AF_STR, NULL }, { "weight", LM_AF_NUM, "100" }, { "tags", LM_AF_STRS, NULL },
    { NULL, 0, NULL }
};

static const lm_afield_t lm__cert_f[] = {
    { "id", LM_AF_STR, NULL }, LM__TIMES, { "cert", LM_AF_STR, NULL }, { "key", LM_AF_STR, NULL },
    { "cert_alt", LM_AF_STR, NULL }, { "key_alt", LM_AF_STR, NULL }, { "tags", LM_AF_STRS, NULL },
    { "snis", LM_AF_STRS, "-" }, { NULL, 0, NULL }
};

static const lm_afield_t lm__sni_f[] = {
    { "id", LM_AF_STR, NULL }, LM__TIMES, { "name", LM_AF_STR, NULL }, { "tags", LM_AF_STRS, NULL },
    { "certificate", LM_AF_REF, NULL }, { NULL, 0, NULL }
};

static const lm_afield_t lm__ca_f[] = {
    { "id", LM_AF_STR, NULL }, LM__TIMES, { "cert", LM_AF_STR, NULL },
    { "cert_digest", LM_AF_STR, NULL }, { "tags", LM_AF_STRS, NULL }, { NULL, 0, NULL }
};

static const lm_afield_t lm__keyauth_f[] = {
    { "id", LM_AF_STR, NULL }, LM__TIMES, { "consumer", LM_AF_REF, NULL }, { "key", LM_AF_STR, NULL },
    { "ttl", LM_AF_NUM, "-" }, { "tags", LM_AF_STRS, NULL }, { NULL, 0, NULL }
};

static const lm_afield_t lm__basicauth_f[] = {
    { "id", LM_AF_STR, NULL }, LM__TIMES, { "consumer", LM_AF_REF, NULL },
    { "username", LM_AF_STR, NULL }, { "password", LM_AF_STR, NULL }, { "tags", LM_AF_STRS, NULL },
    { NULL, 0, NULL }
};

static const lm_afield_t lm__jwt_f[] = {
    { "id", LM_AF_STR, NULL }, LM__TIMES, { "consumer", LM_AF_REF, NULL }, { "key", LM_AF_STR, NULL },
    { "secret", LM_AF_STR, NULL }, { "rsa_public_key", LM_AF_STR, NULL },
    { "algorithm", LM_AF_STR, "\"HS256\"" }, { "tags", LM_AF_STRS, NULL }, { NULL, 0, NULL }
};

static const lm_afield_t lm__hmac_f[] = {
    { "id", LM_AF_STR, NULL }, LM__TIMES, { "consumer", LM_AF_REF, NULL },
    { "username", LM_AF_STR, NULL }, { "secret", LM_AF_STR, NULL }, { "tags", LM_AF_STRS, NULL },
    { NULL, 0, NULL }
};

static const lm_afield_t lm__acl_f[] = {
    { "id", LM_AF_STR, NULL }, LM__TIMES, { "consumer", LM_AF_REF, NULL }, { "group", LM_AF_STR, NULL },
    { "tags", LM_AF_STRS, NULL }, { NULL, 0, NULL }
};

static const lm_akind_t lm__kinds[] = {
    { "services", "service", "services", "services", "name", { "name" }, NULL, lm__service_f },
    { "routes", "route", "routes", "routes", "name", { "name" }, "service", lm__route_f },
    { "consumers", "consumer", "consumers", "consumers", "username", { "username", "custom_id" },
      NULL, lm__consumer_f },
    { "plugins", "plugin", "plugins", "plugins", "instance_name", { "instance_name" }, NULL,
      lm__plugin_f },
    { "upstreams", "upstream", "upstreams", "upstreams", "name", { "name" }, NULL, lm__upstream_f },
    { "targets", "target", NULL, "targets", "target", { NULL }, "upstream", lm__target_f },
    { "certificates", "certificate", "certificates", "certificates", NULL, { NULL }, NULL, lm__cert_f },
    { "snis", "sni", "snis", "snis", "name", { "name" }, "certificate", lm__sni_f },
    { "ca_certificates", "ca_certificate", "ca_certificates", "ca_certificates", NULL, { NULL },
      NULL, lm__ca_f },
    { "keyauth_credentials", "keyauth_credential", "key-auths", "key-auth", "key", { "key" },
      "consumer", lm__keyauth_f },
    { "basicauth_credentials", "basicauth_credential", "basic-auths", "basic-auth", "username",
      { "username" }, "consumer", lm__basicauth_f },
    { "jwt_secrets", "jwt_secret", "jwts", "jwt", "key", { "key" }, "consumer", lm__jwt_f },
    { "hmacauth_credentials", "hmacauth_credential", "hmac-auths", "hmac-auth", "username",
      { "username" }, "consumer", lm__hmac_f },
    { "acls", "acl", "acls", "acls", "group", { NULL }, "consumer", lm__acl_f },
};

static const lm_akind_t *const lm__kind_list[] = {
    &lm__kinds[0], &lm__kinds[1], &lm__kinds[2], &lm__kinds[3], &lm__kinds[4],
    &lm__kinds[5], &lm__kinds[6], &lm__kinds[7], &lm__kinds[8], &lm__kinds[9],
    &lm__kinds[10], &lm__kinds[11], &lm__kinds[12], &lm__kinds[13], NULL,
};

const lm_akind_t *const *lm_akinds(void)
{
    return lm__kind_list;
}

const lm_akind_t *lm_akind_by_name(const char *name)
{
    for (size_t i = 0; i < LM_ARRAY_SIZE(lm__kinds); i++)
        if (strcmp(lm__kinds[i].name, name) == 0)
            return &lm__kinds[i];
    return NULL;
}

const lm_akind_t *lm_akind_by_seg(const char *seg, size_t len, bool nested)
{
    for (size_t i = 0; i < LM_ARRAY_SIZE(lm__kinds); i++) {
        const char *s = nested ? lm__kinds[i].nested_seg : lm__kinds[i].seg;
        if (s && strlen(s) == len && memcmp(s, seg, len) == 0)
            return &lm__kinds[i];
    }
    return NULL;
}

const lm_afield_t *lm_akind_field(const lm_akind_t *k, const char *name)
{
    for (const lm_afield_t *f = k->fields; name && f->name; f++)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

/* ---- ids ------------------------------------------------------------------- */

void lm_admin_uuid4(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        abort();
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

bool lm_admin_is_uuid(const char *s)
{
    static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    for (size_t i = 0; i < sizeof(shape) - 1; i++) {
        char c = s[i];
        if (shape[i] == '-' ? c != '-'
                            : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return false;
    }
    return s[sizeof(shape) - 1] == '\0';
}

/* ---- the flat document ----------------------------------------------------- */

typedef struct {
    const lm_config_t *cfg;
    cJSON *flat;
    lm_map_t routes, plugins, creds; /* model entities by id */
} lm__flat_t;

cJSON *lm_admin_flat_list(cJSON *flat, const lm_akind_t *k)
{
    cJSON *a = cJSON_GetObjectItemCaseSensitive(flat, k->name);
    if (!cJSON_IsArray(a)) {
        cJSON_DeleteItemFromObjectCaseSensitive(flat, k->name);
        a = cJSON_AddArrayToObject(flat, k->name);
    }
    return a;
}

static void lm__set_ref(cJSON *o, const char *field, const char *id)
{
    cJSON_DeleteItemFromObjectCaseSensitive(o, field);
    if (id) {
        cJSON *r = cJSON_AddObjectToObject(o, field);
        cJSON_AddStringToObject(r, "id", id);
    }
}

/* a copy of an entity object without the nested collections */
static cJSON *lm__copy(const cJSON *item, const char *const *drop)
{
    cJSON *c = cJSON_Duplicate(item, 1);
    for (size_t i = 0; drop && drop[i]; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(c, drop[i]);
    return c;
}

static const char *lm__id(const cJSON *o)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "id"));
}

static void lm__flat_plugin(lm__flat_t *f, const cJSON *item)
{
    const char *id = lm__id(item);
    const lm_plugin_t *p = id ? lm_map_get(&f->plugins, lm_str(id)) : NULL;
    cJSON *c = lm__copy(item, NULL);
    if (p) { /* references as the model resolved them */
        lm__set_ref(c, "service", p->service ? p->service->id : NULL);
        lm__set_ref(c, "route", p->route ? p->route->id : NULL);
        lm__set_ref(c, "consumer", p->consumer ? p->consumer->id : NULL);
    }
    cJSON_AddItemToArray(lm_admin_flat_list(f->flat, lm_akind_by_name("plugins")), c);
}

static void lm__flat_each(lm__flat_t *f, const cJSON *parent, const char *key,
                          void (*fn)(lm__flat_t *, const cJSON *, const cJSON *), const cJSON *owner)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(parent, key), *it;
    if (!cJSON_IsArray(arr))
        return;
    cJSON_ArrayForEach(it, arr) {
        if (cJSON_IsObject(it) || cJSON_IsString(it))
            fn(f, it, owner);
    }
}

static void lm__flat_plugin_cb(lm__flat_t *f, const cJSON *item, const cJSON *owner)
{
    if (cJSON_IsObject(item))
        lm__flat_plugin(f, item);
}

static void lm__flat_route(lm__flat_t *f, const cJSON *item, const cJSON *owner)
{
    if (!cJSON_IsObject(item))
        return;
    static const char *const drop[] = { "plugins", NULL };
    cJSON *c = lm__copy(item, drop);
    const char *id = lm__id(item);
    const lm_route_t *r = id ? lm_map_get(&f->routes, lm_str(id)) : NULL;
    if (r) {
        lm__set_ref(c, "service", r->service ? r->service->id : NULL);
        if (r->num_paths) { /* 3.0 form: regex paths carry "~" */
            cJSON *paths = cJSON_CreateArray();
            for (size_t i = 0; i < r->num_paths; i++) {
                size_t n = strlen(r->paths[i]) + 2;
                char *s = malloc(n);
                snprintf(s, n, "%s%s", r->path_is_regex[i] ? "~" : "", r->paths[i]);
                cJSON_AddItemToArray(paths, cJSON_CreateString(s));
                free(s);
            }
            cJSON_DeleteItemFromObjectCaseSensitive(c, "paths");
            cJSON_AddItemToObject(c, "paths", paths);
        }
    }
    cJSON_AddItemToArray(lm_admin_flat_list(f->flat, lm_akind_by_name("routes")), c);
    lm__flat_each(f, item, "plugins", lm__flat_plugin_cb, NULL);
}

static void lm__flat_service(lm__flat_t *f, const cJSON *item, const cJSON *owner)
{
    if (!cJSON_IsObject(item))
        return;
    static const char *const drop[] = { "routes", "plugins", NULL };
    cJSON *c = lm__copy(item, drop);
    const char *id = lm__id(item);
    const lm_service_t *s = id ? lm_config_find_service(f->cfg, id) : NULL;
    if (s && cJSON_GetObjectItemCaseSensitive(c, "url")) { /* the shorthand, expanded */
        static const char *const parts[] = { "url", "protocol", "host", "port", "path", NULL };
        for (size_t i = 0; parts[i]; i++)
            cJSON_DeleteItemFromObjectCaseSensitive(c, parts[i]);
        cJSON_AddStringToObject(c, "protocol", s->protocol);
        cJSON_AddStringToObject(c, "host", s->host);
        cJSON_AddNumberToObject(c, "port", s->port);
        if (s->path)
            cJSON_AddStringToObject(c, "path", s->path);
    }
    cJSON_AddItemToArray(lm_admin_flat_list(f->flat, lm_akind_by_name("services")), c);
    lm__flat_each(f, item, "routes", lm__flat_route, NULL);
    lm__flat_each(f, item, "plugins", lm__flat_plugin_cb, NULL);
}

static void lm__flat_cred(lm__flat_t *f, const lm_akind_t *k, const cJSON *item)
{
    cJSON *c = lm__copy(item, NULL);
    const char *id = lm__id(item);
    const lm_credential_t *cr = id ? lm_map_get(&f->creds, lm_str(id)) : NULL;
    if (cr && strcmp(cr->kind, k->name) == 0)
        lm__set_ref(c, "consumer", cr->consumer ? cr->consumer->id : NULL);
    cJSON_AddItemToArray(lm_admin_flat_list(f->flat, k), c);
}

static void lm__flat_consumer(lm__flat_t *f, const cJSON *item, const cJSON *owner)
{
    if (!cJSON_IsObject(item))
        return;
    cJSON *c = lm__copy(item, NULL);
    const lm_akind_t *const *kinds = lm_akinds();
    cJSON_DeleteItemFromObjectCaseSensitive(c, "plugins");
    for (size_t i = 0; kinds[i]; i++)
        if (kinds[i]->parent && strcmp(kinds[i]->parent, "consumer") == 0)
            cJSON_DeleteItemFromObjectCaseSensitive(c, kinds[i]->name);
    /* credential kinds Limen keeps but the Admin API does not serve stay nested */
    cJSON_AddItemToArray(lm_admin_flat_list(f->flat, lm_akind_by_name("consumers")), c);
    lm__flat_each(f, item, "plugins", lm__flat_plugin_cb, NULL);
    for (size_t i = 0; kinds[i]; i++) {
        if (!kinds[i]->parent || strcmp(kinds[i]->parent, "consumer") != 0)
            continue;
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(item, kinds[i]->name), *it;
        if (cJSON_IsArray(arr))
            cJSON_ArrayForEach(it, arr) if (cJSON_IsObject(it)) lm__flat_cred(f, kinds[i], it);
    }
}

static void lm__flat_target(lm__flat_t *f, const cJSON *item, const cJSON *owner)
{
    if (!cJSON_IsObject(item))
        return;
    cJSON *c = lm__copy(item, NULL);
    if (owner) {
        lm__set_ref(c, "upstream", lm__id(owner));
    } else {
        const cJSON *ref = cJSON_GetObjectItemCaseSensitive(item, "upstream");
        const char *key = cJSON_IsString(ref) ? ref->valuestring
                          : lm__id(ref) ? lm__id(ref)
                                        : cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ref, "name"));
        const lm_upstream_t *u = lm_config_find_upstream(f->cfg, key);
        if (u)
            lm__set_ref(c, "upstream", u->id);
    }
    cJSON_AddItemToArray(lm_admin_flat_list(f->flat, lm_akind_by_name("targets")), c);
}

static void lm__flat_upstream(lm__flat_t *f, const cJSON *item, const cJSON *owner)
{
    if (!cJSON_IsObject(item))
        return;
    static const char *const drop[] = { "targets", NULL };
    cJSON_AddItemToArray(lm_admin_flat_list(f->flat, lm_akind_by_name("upstreams")), lm__copy(item, drop));
    lm__flat_each(f, item, "targets", lm__flat_target, item);
}

static void lm__flat_sni(lm__flat_t *f, const cJSON *item, const cJSON *owner)
{
    cJSON *c;
    if (cJSON_IsString(item)) { /* the shorthand: a bare name */
        char id[37], seed[512];
        snprintf(seed, sizeof(seed), "sni:name:%s", item->valuestring);
        lm_config_uuid(seed, id);
        c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "id", id);
        cJSON_AddStringToObject(c, "name", item->valuestring);
    } else {
        c = lm__copy(item, NULL);
    }
    const cJSON *ref = owner ? NULL : cJSON_GetObjectItemCaseSensitive(item, "certificate");
    const char *cid = owner ? lm__id(owner) : cJSON_IsString(ref) ? ref->valuestring : lm__id(ref);
    if (cid)
        lm__set_ref(c, "certificate", cid);
    cJSON_AddItemToArray(lm_admin_flat_list(f->flat, lm_akind_by_name("snis")), c);
}

static void lm__flat_cert(lm__flat_t *f, const cJSON *item, const cJSON *owner)
{
    if (!cJSON_IsObject(item))
        return;
    static const char *const drop[] = { "snis", NULL };
    cJSON_AddItemToArray(lm_admin_flat_list(f->flat, lm_akind_by_name("certificates")), lm__copy(item, drop));
    lm__flat_each(f, item, "snis", lm__flat_sni, item);
}

static void lm__flat_plain(lm__flat_t *f, const cJSON *item, const cJSON *owner)
{
    if (cJSON_IsObject(item))
        cJSON_AddItemToArray(lm_admin_flat_list(f->flat, lm_akind_by_name("ca_certificates")),
                             lm__copy(item, NULL));
}

cJSON *lm_admin_flatten(const lm_config_t *cfg)
{
    lm__flat_t f;
    memset(&f, 0, sizeof(f));
    f.cfg = cfg;
    f.flat = cJSON_CreateObject();
    cJSON_AddStringToObject(f.flat, "_format_version", "3.0");
    lm_map_init(&f.routes);
    lm_map_init(&f.plugins);
    lm_map_init(&f.creds);
    for (size_t i = 0; i < cfg->num_routes; i++)
        if (cfg->routes[i]->id)
            lm_map_put(&f.routes, lm_str(cfg->routes[i]->id), cfg->routes[i]);
    for (size_t i = 0; i < cfg->num_plugins; i++)
        if (cfg->plugins[i]->id)
            lm_map_put(&f.plugins, lm_str(cfg->plugins[i]->id), cfg->plugins[i]);
    for (size_t i = 0; i < cfg->num_credentials; i++)
        if (cfg->credentials[i]->id)
            lm_map_put(&f.creds, lm_str(cfg->credentials[i]->id), cfg->credentials[i]);
    /* every kind present, in a fixed order */
    for (const lm_akind_t *const *k = lm_akinds(); *k; k++)
        lm_admin_flat_list(f.flat, *k);
    const cJSON *it;
    cJSON_ArrayForEach(it, cfg->doc) {
        const char *k = it->string;
        if (!cJSON_IsArray(it))
            continue;
        if (strcmp(k, "services") == 0) {
            lm__flat_each(&f, cfg->doc, k, lm__flat_service, NULL);
        } else if (strcmp(k, "routes") == 0) {
            lm__flat_each(&f, cfg->doc, k, lm__flat_route, NULL);
        } else if (strcmp(k, "consumers") == 0) {
            lm__flat_each(&f, cfg->doc, k, lm__flat_consumer, NULL);
        } else if (strcmp(k, "plugins") == 0) {
            lm__flat_each(&f, cfg->doc, k, lm__flat_plugin_cb, NULL);
        } else if (strcmp(k, "upstreams") == 0) {
            lm__flat_each(&f, cfg->doc, k, lm__flat_upstream, NULL);
        } else if (strcmp(k, "targets") == 0) {
            lm__flat_each(&f, cfg->doc, k, lm__flat_target, NULL);
        } else if (strcmp(k, "certificates") == 0) {
            lm__flat_each(&f, cfg->doc, k, lm__flat_cert, NULL);
        } else if (strcmp(k, "snis") == 0) {
            lm__flat_each(&f, cfg->doc, k, lm__flat_sni, NULL);
        } else if (strcmp(k, "ca_certificates") == 0) {
            lm__flat_each(&f, cfg->doc, k, lm__flat_plain, NULL);
        } else {
            const lm_akind_t *ck = lm_akind_by_name(k);
            if (ck && ck->parent && strcmp(ck->parent, "consumer") == 0) {
                const cJSON *c;
                cJSON_ArrayForEach(c, it) if (cJSON_IsObject(c)) lm__flat_cred(&f, ck, c);
            } else {
                /* a top-level kind the API does not serve (oauth2_credentials, ...): kept */
                cJSON_AddItemToObject(f.flat, k, cJSON_Duplicate(it, 1));
            }
        }
    }
    lm_map_free(&f.routes);
    lm_map_free(&f.plugins);
    lm_map_free(&f.creds);
    return f.flat;
}

cJSON *lm_admin_flat_find(cJSON *flat, const lm_akind_t *k, const char *key, int *index)
{
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(flat, k->name), *it;
    int i = 0;
    if (!key || !cJSON_IsArray(arr))
        return NULL;
    bool uuid = lm_admin_is_uuid(key);
    cJSON_ArrayForEach(it, arr) {
        const char *v = NULL;
        if (uuid)
            v = lm__id(it);
        else if (k->endpoint_key)
            v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, k->endpoint_key));
        if (v && (uuid ? strcasecmp(v, key) : strcmp(v, key)) == 0) {
            if (index)
                *index = i;
            return it;
        }
        i++;
    }
    return NULL;
}

const char *lm_admin_ref_id(const cJSON *ent, const char *field)
{
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(ent, field);
    return cJSON_IsString(r) ? r->valuestring : lm__id(r);
}

/* ---- rendering ------------------------------------------------------------ */

/* Kong's upstream healthchecks defaults */
static const char lm__health_defaults[] =
    "{\"active\":{\"type\":\"http\",\"timeout\":1,\"concurrency\":10,\"http_path\":\"/\","
    "\"https_verify_certificate\":true,\"https_sni\":null,\"headers\":null,"
    "\"healthy\":{\"interval\":0,\"http_statuses\":[200,302],\"successes\":0},"
    "\"unhealthy\":{\"interval\":0,\"http_statuses\":[429,404,500,501,502,503,504,505],"
    "\"tcp_failures\":0,\"timeouts\":0,\"http_failures\":0}},"
    "\"passive\":{\"type\":\"http\",\"healthy\":{\"http_statuses\":[200,201,202,203,204,205,206,"
    "207,208,226,300,301,302,303,304,305,306,307,308],\"successes\":0},"
    "\"unhealthy\":{\"http_statuses\":[429,500,503],\"tcp_failures\":0,\"timeouts\":0,"
    "\"http_failures\":0}},\"threshold\":0}";

/* given values over defaults, records merged key by key */
static void lm__merge(cJSON *dst, const cJSON *src)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, src) {
        cJSON *d = cJSON_GetObjectItemCaseSensitive(dst, it->string);
        if (cJSON_IsObject(d) && cJSON_IsObject(it)) {
            lm__merge(d, it);
        } else if (!cJSON_IsNull(it) || !d) {
            if (d)
                cJSON_ReplaceItemInObjectCaseSensitive(dst, it->string, cJSON_Duplicate(it, 1));
            else
                cJSON_AddItemToObject(dst, it->string, cJSON_Duplicate(it, 1));
        }
    }
}

static cJSON *lm__plugin_config(const cJSON *ent)
{
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ent, "name"));
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(ent, "config");
    const lm_plugin_ops_t *ops = name ? lm_plugin_find(name) : NULL;
    if (ops && ops->schema) {
        lm_config_errors_t errs;
        lm_config_errors_init(&errs);
        lm_schema_ctx_t sc = { .errs = &errs, .path = "config", .entity_type = "plugin",
                               .entity_name = name, .field = "config" };
        cJSON *full = lm_schema_apply(&sc, ops->schema, cJSON_IsObject(cfg) ? cfg : NULL);
        lm_config_errors_free(&errs);
        if (full)
            return full;
    }
    return cJSON_IsObject(cfg) ? cJSON_Duplicate(cfg, 1) : cJSON_CreateObject();
}

cJSON *lm_admin_render(const lm_akind_t *k, const cJSON *ent, const cJSON *flat, bool trusted)
{
    cJSON *o = cJSON_CreateObject();
    const char *protocol = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ent, "protocol"));
    const cJSON *protocols = cJSON_GetObjectItemCaseSensitive(ent, "protocols");
    for (const lm_afield_t *f = k->fields; f->name; f++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(ent, f->name);
        if (strcmp(f->name, "url") == 0)
            continue; /* input only */
        if (f->type == LM_AF_CONFIG) {
            cJSON_AddItemToObject(o, f->name, lm__plugin_config(ent));
            continue;
        }
        if (f->type == LM_AF_HEALTH) {
            cJSON *h = cJSON_Parse(lm__health_defaults);
            if (cJSON_IsObject(v))
                lm__merge(h, v);
            cJSON_AddItemToObject(o, f->name, h);
            continue;
        }
        if (strcmp(k->name, "certificates") == 0 && strcmp(f->name, "snis") == 0) {
            cJSON *names = cJSON_AddArrayToObject(o, "snis");
            const cJSON *s, *snis = cJSON_GetObjectItemCaseSensitive(flat, "snis");
            const char *id = lm__id(ent);
            cJSON_ArrayForEach(s, snis) {
                const char *cid = lm_admin_ref_id(s, "certificate");
                const char *n = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "name"));
                if (id && cid && n && strcmp(cid, id) == 0)
                    cJSON_AddItemToArray(names, cJSON_CreateString(n));
            }
            continue;
        }
        if (v && !cJSON_IsNull(v) && strcmp(k->name, "certificates") == 0 &&
            (strcmp(f->name, "key") == 0 || strcmp(f->name, "key_alt") == 0)) {
            cJSON_AddStringToObject(o, f->name, "<redacted>"); /* private keys never leave the process */
            continue;
        }
        if (v && !cJSON_IsNull(v)) {
            if (f->type == LM_AF_REF && cJSON_IsString(v)) {
                cJSON *r = cJSON_AddObjectToObject(o, f->name);
                cJSON_AddStringToObject(r, "id", v->valuestring);
            } else {
                cJSON_AddItemToObject(o, f->name, cJSON_Duplicate(v, 1));
            }
            continue;
        }
        if (f->def && strcmp(f->def, "-") == 0)
            continue;
        /* defaults that depend on other fields */
        if (strcmp(k->name, "services") == 0 && strcmp(f->name, "port") == 0 && protocol &&
            (strcmp(protocol, "https") == 0 || strcmp(protocol, "grpcs") == 0 ||
             strcmp(protocol, "wss") == 0 || strcmp(protocol, "tls") == 0)) {
            cJSON_AddNumberToObject(o, "port", 443);
            continue;
        }
        if (strcmp(k->name, "routes") == 0 && strcmp(f->name, "strip_path") == 0 && cJSON_IsArray(protocols)) {
            bool grpc = false;
            const cJSON *p;
            cJSON_ArrayForEach(p, protocols) grpc = grpc || (cJSON_IsString(p) && strncmp(p->valuestring, "grpc", 4) == 0);
            if (grpc) {
                cJSON_AddFalseToObject(o, "strip_path");
                continue;
            }
        }
        cJSON *d = f->def ? cJSON_Parse(f->def) : NULL;
        cJSON_AddItemToObject(o, f->name, d ? d : cJSON_CreateNull());
    }
    (void)trusted;
    return o;
}

bool lm_admin_tags_match(const cJSON *ent, const char *filter)
{
    if (!filter || !filter[0])
        return true;
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(ent, "tags");
    bool any = strchr(filter, '/') != NULL;
    const char *p = filter;
    bool all_ok = true, any_ok = false;
    while (*p) {
        size_t n = strcspn(p, any ? "/" : ",");
        bool has = false;
        const cJSON *t;
        cJSON_ArrayForEach(t, tags) has = has || (cJSON_IsString(t) && strlen(t->valuestring) == n &&
                                                  memcmp(t->valuestring, p, n) == 0);
        all_ok = all_ok && has;
        any_ok = any_ok || has;
        p += n;
        if (*p)
            p++;
    }
    return any ? any_ok : all_ok;
}

/* plugin.c - compiling a snapshot's plugins; see lm_plugin_rt.h and lm_plugin.h. */
#include "lm_plugin_rt.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void lm_plugin_error(lm_plugin_cfg_ctx_t *cc, const char *field, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    lm_schema_error(&cc->sc, field, "%s", msg);
}

void lm_plugin_need_body(lm_plugin_cfg_ctx_t *cc)
{
    cc->needs_body = true;
}

/* ---- shared state ---------------------------------------------------------- */

typedef struct lm__shared {
    struct lm__shared *next;
    size_t size;
    char *key; /* "plugin\0key" */
    size_t key_len;
    void (*fini)(void *block);
    _Alignas(16) unsigned char data[];
} lm__shared_t;

static pthread_mutex_t lm__shared_lock = PTHREAD_MUTEX_INITIALIZER;
static lm__shared_t *lm__shared_list;
static lm_map_t lm__shared_map;

void *lm_plugin_shared(const char *plugin, lm_str_t key, size_t size)
{
    return lm_plugin_shared_ex(plugin, key, size, NULL);
}

void *lm_plugin_shared_ex(const char *plugin, lm_str_t key, size_t size, void (*fini)(void *block))
{
    size_t pl = strlen(plugin);
    size_t kl = pl + 1 + key.len;
    char *k = malloc(kl);
    if (!k)
        abort();
    memcpy(k, plugin, pl + 1);
    memcpy(k + pl + 1, key.ptr, key.len);
    pthread_mutex_lock(&lm__shared_lock);
    lm__shared_t *e = lm_map_get(&lm__shared_map, (lm_str_t){ k, kl });
    if (e && e->size < size)
        e = NULL; /* a different layout under the same key: start afresh (the old block stays valid) */
    if (!e) {
        e = calloc(1, sizeof(*e) + size);
        if (!e)
            abort();
        e->size = size;
        e->fini = fini;
        e->key = k;
        e->key_len = kl;
        e->next = lm__shared_list;
        lm__shared_list = e;
        lm_map_put(&lm__shared_map, (lm_str_t){ e->key, e->key_len }, e);
        k = NULL;
    }
    pthread_mutex_unlock(&lm__shared_lock);
    free(k);
    return e->data;
}

void lm_plugin_shared_free_all(void)
{
    /* finalisers first (they may join threads that read other blocks), without the lock */
    for (lm__shared_t *e = lm__shared_list; e; e = e->next)
        if (e->fini)
            e->fini(e->data);
    pthread_mutex_lock(&lm__shared_lock);
    lm_map_free(&lm__shared_map);
    while (lm__shared_list) {
        lm__shared_t *e = lm__shared_list;
        lm__shared_list = e->next;
        free(e->key);
        free(e);
    }
    pthread_mutex_unlock(&lm__shared_lock);
}

static size_t lm__num_types(void)
{
    const lm_plugin_ops_t *const *all = lm_plugin_all();
    size_t n = 0;
    while (all[n])
        n++;
    return n;
}

/* key of the scope map: type and 1-based entity indexes (0 = any) */
typedef struct {
    uint32_t type, route, service, consumer;
} lm__scope_key_t;

static lm_str_t lm__key(lm_arena_t *a, uint32_t type, const lm_route_t *r, const lm_service_t *s,
                        const lm_consumer_t *c)
{
    lm__scope_key_t k = { type, r ? (uint32_t)r->index + 1 : 0, s ? (uint32_t)s->index + 1 : 0,
                          c ? (uint32_t)c->index + 1 : 0 };
    if (a) {
        lm__scope_key_t *p = lm_arena_alloc(a, sizeof(k));
        *p = k;
        return (lm_str_t){ (const char *)p, sizeof(k) };
    }
    return (lm_str_t){ NULL, 0 };
}

static const lm_plugin_inst_t *lm__get(const lm_plugin_rt_t *rt, uint32_t type, const lm_route_t *r,
                                       const lm_service_t *s, const lm_consumer_t *c)
{
    lm__scope_key_t k = { type, r ? (uint32_t)r->index + 1 : 0, s ? (uint32_t)s->index + 1 : 0,
                          c ? (uint32_t)c->index + 1 : 0 };
    return lm_map_get(&rt->scoped, (lm_str_t){ (const char *)&k, sizeof(k) });
}

const lm_plugin_inst_t *lm_plugin_rt_resolve(const lm_plugin_rt_t *rt, uint32_t type, const lm_route_t *route,
                                             const lm_service_t *service, const lm_consumer_t *consumer)
{
    const lm_plugin_inst_t *p;
    /* Kong's precedence, most specific first */
    if (consumer) {
        if (route && service && (p = lm__get(rt, type, route, service, consumer)))
            return p;
        if (route && (p = lm__get(rt, type, route, NULL, consumer)))
            return p;
        if (service && (p = lm__get(rt, type, NULL, service, consumer)))
            return p;
    }
    if (route && service && (p = lm__get(rt, type, route, service, NULL)))
        return p;
    if (consumer && (p = lm__get(rt, type, NULL, NULL, consumer)))
        return p;
    if (route && (p = lm__get(rt, type, route, NULL, NULL)))
        return p;
    if (service && (p = lm__get(rt, type, NULL, service, NULL)))
        return p;
    return lm__get(rt, type, NULL, NULL, NULL);
}

static void lm__chain_alloc(lm_plugin_rt_t *rt, lm_arena_t *a, lm_plugin_chain_t *ch)
{
    ch->by_type = lm_arena_calloc(a, (rt->num_types + 1) * sizeof(*ch->by_type));
    ch->list = lm_arena_calloc(a, (rt->num_types + 1) * sizeof(*ch->list));
    ch->n = 0;
    ch->needs_body = false;
}

void lm_plugin_rt_chain(lm_plugin_rt_t *rt, lm_arena_t *arena, const lm_route_t *route, lm_plugin_chain_t *out)
{
    if (rt->num_insts == 0) {
        *out = rt->empty;
        return;
    }
    const lm_service_t *svc = route ? route->service : NULL;
    /* a route with nothing of its own or of its service shares the global chain */
    bool own = false;
    for (size_t t = 0; t < rt->num_types && !own; t++) {
        const lm_plugin_inst_t *p = lm_plugin_rt_resolve(rt, (uint32_t)t, route, svc, NULL);
        own = p != rt->global.by_type[t];
    }
    if (!own) {
        *out = rt->global;
        return;
    }
    lm__chain_alloc(rt, arena, out);
    for (size_t t = 0; t < rt->num_types; t++) {
        const lm_plugin_inst_t *p = lm_plugin_rt_resolve(rt, (uint32_t)t, route, svc, NULL);
        out->by_type[t] = p;
        if (p) {
            out->list[out->n++] = p;
            out->needs_body = out->needs_body || p->needs_body;
        }
    }
}

static uint8_t lm__protocols(const lm_plugin_t *p)
{
    uint8_t m = 0;
    for (size_t i = 0; i < p->num_protocols; i++) {
        const char *s = p->protocols[i];
        if (strcmp(s, "http") == 0)
            m |= LM_PROTO_HTTP;
        else if (strcmp(s, "https") == 0)
            m |= LM_PROTO_HTTPS;
        else if (strcmp(s, "grpc") == 0)
            m |= LM_PROTO_GRPC;
        else if (strcmp(s, "grpcs") == 0)
            m |= LM_PROTO_GRPCS;
    }
    return m;
}

static void lm__cjson_free(void *p)
{
    cJSON_Delete(p);
}

/* schema + configure of one plugin entity */
static int lm__compile_one(const lm_config_t *cfg, lm_arena_t *arena, const lm_plugin_t *p,
                           const lm_plugin_ops_t *ops, void **conf, bool *needs_body, lm_config_errors_t *errs)
{
    char path[512];
    snprintf(path, sizeof(path), "%s.config", p->path ? p->path : "plugins");
    lm_plugin_cfg_ctx_t cc = { .arena = arena, .cfg = cfg, .entity = p };
    cc.sc.errs = errs;
    cc.sc.path = path;
    cc.sc.entity_type = "plugin";
    cc.sc.entity_name = p->name;
    cc.sc.field = "config";
    static const lm_schema_field_t none[] = { { 0 } };
    cJSON *norm = lm_schema_apply(&cc.sc, ops->schema ? ops->schema : none, p->config);
    if (!norm)
        return LM_ERROR;
    lm_arena_on_free(arena, lm__cjson_free, norm); /* compiled configs may point into it */
    *conf = NULL;
    if (ops->configure && ops->configure(&cc, norm, conf) != LM_OK)
        return LM_ERROR;
    *needs_body = cc.needs_body;
    return LM_OK;
}

static int lm__cred_kind(const char *kind)
{
    if (strcmp(kind, "keyauth_credentials") == 0)
        return LM_CRED_KEYAUTH;
    if (strcmp(kind, "basicauth_credentials") == 0)
        return LM_CRED_BASICAUTH;
    if (strcmp(kind, "jwt_secrets") == 0)
        return LM_CRED_JWT;
    if (strcmp(kind, "hmacauth_credentials") == 0)
        return LM_CRED_HMAC;
    return -1;
}

static const char *const lm__cred_field[LM_CRED_KINDS] = { "key", "username", "key", "username" };

static void lm__build_indexes(lm_plugin_rt_t *rt, const lm_config_t *cfg, lm_arena_t *arena)
{
    for (size_t i = 0; i < LM_CRED_KINDS; i++)
        lm_map_init(&rt->creds[i]);
    lm_map_init(&rt->consumers);
    rt->groups = lm_arena_calloc(arena, (cfg->num_consumers + 1) * sizeof(*rt->groups));
    rt->num_groups = lm_arena_calloc(arena, (cfg->num_consumers + 1) * sizeof(*rt->num_groups));
    for (size_t i = 0; i < cfg->num_consumers; i++) {
        lm_consumer_t *c = cfg->consumers[i];
        if (c->id)
            lm_map_put(&rt->consumers, lm_str(c->id), c);
        if (c->username && !lm_map_get(&rt->consumers, lm_str(c->username)))
            lm_map_put(&rt->consumers, lm_str(c->username), c);
    }
    /* acl groups: count, then fill */
    for (size_t i = 0; i < cfg->num_credentials; i++) {
        lm_credential_t *cr = cfg->credentials[i];
        if (strcmp(cr->kind, "acls") == 0 && cr->consumer)
            rt->num_groups[cr->consumer->index]++;
    }
    for (size_t i = 0; i < cfg->num_consumers; i++) {
        rt->groups[i] = lm_arena_calloc(arena, (rt->num_groups[i] + 1) * sizeof(char *));
        rt->num_groups[i] = 0;
    }
    for (size_t i = 0; i < cfg->num_credentials; i++) {
        lm_credential_t *cr = cfg->credentials[i];
        if (!cr->consumer)
            continue;
        if (strcmp(cr->kind, "acls") == 0) {
            const cJSON *g = cJSON_GetObjectItemCaseSensitive(cr->fields, "group");
            if (cJSON_IsString(g))
                rt->groups[cr->consumer->index][rt->num_groups[cr->consumer->index]++] = g->valuestring;
            continue;
        }
        int k = lm__cred_kind(cr->kind);
        if (k < 0)
            continue;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cr->fields, lm__cred_field[k]);
        if (cJSON_IsString(v) && !lm_map_get(&rt->creds[k], lm_str(v->valuestring)))
            lm_map_put(&rt->creds[k], lm_str(v->valuestring), cr);
    }
}

int lm_plugin_rt_build(lm_plugin_rt_t *rt, const lm_config_t *cfg, lm_arena_t *arena, lm_config_errors_t *errs)
{
    memset(rt, 0, sizeof(*rt));
    rt->num_types = lm__num_types();
    lm_map_init(&rt->scoped);
    lm__build_indexes(rt, cfg, arena);
    rt->insts = lm_arena_calloc(arena, (cfg->num_plugins + 1) * sizeof(*rt->insts));
    int rc = LM_OK;
    for (size_t i = 0; i < cfg->num_plugins; i++) {
        const lm_plugin_t *p = cfg->plugins[i];
        const lm_plugin_ops_t *ops = lm_plugin_find(p->name);
        if (!ops) {
            char path[512];
            snprintf(path, sizeof(path), "%s.name", p->path ? p->path : "plugins");
            lm_config_errors_add(errs, path, "plugin", p->name, "name",
                                 "plugin '%s' is not available in this version of Limen", p->name);
            rc = LM_ERROR;
            continue;
        }
        void *conf = NULL;
        bool needs_body = false;
        if (lm__compile_one(cfg, arena, p, ops, &conf, &needs_body, errs) != LM_OK) {
            rc = LM_ERROR;
            continue;
        }
        if (!p->enabled)
            continue; /* validated, never run */
        lm_plugin_inst_t *inst = &rt->insts[rt->num_insts++];
        inst->ops = ops;
        inst->ent = p;
        inst->conf = conf;
        inst->protocols = lm__protocols(p);
        inst->needs_body = needs_body;
        rt->needs_body = rt->needs_body || needs_body;
        const lm_plugin_ops_t *const *all = lm_plugin_all();
        for (uint32_t t = 0; t < rt->num_types; t++)
            if (all[t] == ops)
                inst->type = t;
        if (p->consumer)
            rt->has_consumer_scoped = true;
        lm_map_put(&rt->scoped, lm__key(arena, inst->type, p->route, p->service, p->consumer), inst);
    }
    lm__chain_alloc(rt, arena, &rt->empty);
    lm__chain_alloc(rt, arena, &rt->global);
    for (size_t t = 0; t < rt->num_types; t++) {
        const lm_plugin_inst_t *p = lm__get(rt, (uint32_t)t, NULL, NULL, NULL);
        rt->global.by_type[t] = p;
        if (p) {
            rt->global.list[rt->global.n++] = p;
            rt->global.needs_body = rt->global.needs_body || p->needs_body;
        }
    }
    return rc;
}

void lm_plugin_rt_free(lm_plugin_rt_t *rt)
{
    lm_map_free(&rt->scoped);
    for (size_t i = 0; i < LM_CRED_KINDS; i++)
        lm_map_free(&rt->creds[i]);
    lm_map_free(&rt->consumers);
}

int lm_plugins_validate(const lm_config_t *cfg, lm_config_errors_t *errs)
{
    lm_arena_t *a = lm_arena_create(64 * 1024);
    lm_plugin_rt_t rt;
    int rc = lm_plugin_rt_build(&rt, cfg, a, errs);
    lm_plugin_rt_free(&rt);
    lm_arena_destroy(a);
    return rc;
}

void *lm_plugin_configure_json(const lm_plugin_ops_t *ops, lm_arena_t *arena, const char *json, char **errs_out)
{
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    lm_plugin_cfg_ctx_t cc = { .arena = arena };
    cc.sc = (lm_schema_ctx_t){ .errs = &errs, .path = "plugins[0].config", .entity_type = "plugin",
                               .entity_name = ops->name, .field = "config" };
    static const lm_schema_field_t none[] = { { 0 } };
    cJSON *in = cJSON_Parse(json);
    cJSON *norm = lm_schema_apply(&cc.sc, ops->schema ? ops->schema : none, in);
    cJSON_Delete(in);
    void *out = NULL;
    if (norm) {
        lm_arena_on_free(arena, lm__cjson_free, norm);
        if (ops->configure && ops->configure(&cc, norm, &out) != LM_OK)
            out = NULL;
    }
    if (errs_out)
        *errs_out = lm_config_errors_format(&errs);
    lm_config_errors_free(&errs);
    return out;
}

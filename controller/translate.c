/*
 * translate.c - lm_translate: indexes the input, builds the model
 * (translate_ingress.c, translate_crd.c), then emits the document and
 * validates it in rounds, leaving out every object an error is traced back
 * to (see translate_internal.h). Also the sorted outputs.
 */
#include "translate_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define LM__MAX_ROUNDS 8
#define LM__PRUNE_ROUNDS 3

lm__tstats_t lm__tstats;

uint64_t lm__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- index ------------------------------------------------------------- */

static void lm__index(lm__tctx_t *ctx, const lm_kobjs_t *objs, int type, lm_map_t *by_key)
{
    for (size_t i = 0; i < objs->count; i++) {
        lm__obj_t *o = lm__obj_new(ctx, type, objs->items[i]);
        if (o && by_key)
            lm_map_put(by_key, lm_str(o->key), o);
        if (o && type == LM__O_CONSUMER)
            lm__vpush(ctx->a, &ctx->consumers, o);
    }
}

static void lm__index_slices(lm__tctx_t *ctx)
{
    const lm_kobjs_t *s = &ctx->in->endpoint_slices;
    for (size_t i = 0; i < s->count; i++) {
        const cJSON *sl = s->items[i];
        const char *svc = lm__label(sl, "kubernetes.io/service-name");
        if (svc == NULL || svc[0] == '\0')
            continue;
        const char *ns = lm__jstr(lm__jget(sl, "metadata"), "namespace");
        char *key = LM__JOIN(ctx->a, (ns && ns[0]) ? ns : "default", "/", svc);
        lm__vec_t *v = lm_map_get(&ctx->slices, lm_str(key));
        if (v == NULL) {
            v = lm_arena_calloc(ctx->a, sizeof(*v));
            lm_map_put(&ctx->slices, lm_str(key), v);
        }
        lm__vpush(ctx->a, v, (void *)sl);
    }
}

/* ---- sorting ------------------------------------------------------------ */

static int lm__cmp_obj(const void *a, const void *b)
{
    const lm__obj_t *x = *(lm__obj_t *const *)a, *y = *(lm__obj_t *const *)b;
    return strcmp(x->key, y->key);
}

static int lm__cmp_ksvc(const void *a, const void *b)
{
    return strcmp((*(lm__ksvc_t *const *)a)->name, (*(lm__ksvc_t *const *)b)->name);
}

static int lm__cmp_route(const void *a, const void *b)
{
    return strcmp((*(lm__route_t *const *)a)->name, (*(lm__route_t *const *)b)->name);
}

static int lm__cmp_cert(const void *a, const void *b)
{
    return strcmp((*(lm__cert_t *const *)a)->secret->key, (*(lm__cert_t *const *)b)->secret->key);
}

static int lm__cmp_consumer(const void *a, const void *b)
{
    const lm__obj_t *x = *(lm__obj_t *const *)a, *y = *(lm__obj_t *const *)b;
    const lm__cons_t *cx = x->data, *cy = y->data;
    /* by username; the same username twice: the first by namespace/name wins */
    int c = strcmp(cx->username ? cx->username : "", cy->username ? cy->username : "");
    return c ? c : strcmp(x->key, y->key);
}

static int lm__cmp_pent(const void *a, const void *b)
{
    const lm__pent_t *x = *(lm__pent_t *const *)a, *y = *(lm__pent_t *const *)b;
    if (x->scope != y->scope)
        return x->scope < y->scope ? -1 : 1;
    int c = strcmp(x->target_name, y->target_name);
    if (c == 0) {
        const lm__plug_t *px = x->plugin->data, *py = y->plugin->data;
        c = strcmp(px->plugin ? px->plugin : "", py->plugin ? py->plugin : "");
    }
    if (c == 0)
        c = strcmp(x->plugin->kind, y->plugin->kind);
    return c ? c : strcmp(x->plugin->key, y->plugin->key);
}

static void lm__sort(lm__vec_t *v, int (*cmp)(const void *, const void *))
{
    if (v->n > 1)
        qsort(v->v, v->n, sizeof(void *), cmp);
}

/* ---- emit --------------------------------------------------------------- */

/*
 * Member names are static strings: added as constants (cJSON_AddItemToObjectCS),
 * not copied; cJSON_Duplicate and cJSON_Delete leave them alone. Values that
 * are string literals ("v0", "http", "k8s-version:v1"...) are references the
 * same way. Only names that are data (header names, UpstreamPolicy fields)
 * are copied. At 5,000 Ingresses that is a few hundred thousand mallocs and
 * frees less per emit, per copy and per cJSON_Delete.
 */
static cJSON *lm__jadd(cJSON *obj, const char *static_key, cJSON *item)
{
    cJSON_AddItemToObjectCS(obj, static_key, item);
    return item;
}

static void lm__jadd_str(cJSON *obj, const char *static_key, const char *value)
{
    cJSON_AddItemToObjectCS(obj, static_key, cJSON_CreateString(value));
}

static cJSON *lm__ref_array(const char *const *v, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateStringReference(v[i]));
    return a;
}

static cJSON *lm__str_array(char **v, size_t n)
{
    return cJSON_CreateStringArray((const char *const *)v, (int)n);
}

static cJSON *lm__route_json(lm__tctx_t *ctx, const lm__route_t *r)
{
    const lm__ing_t *ing = r->ing->data;
    cJSON *j = cJSON_CreateObject();
    lm__jadd_str(j, "name", r->name);
    cJSON_AddItemToObjectCS(j, "paths", lm__str_array(r->paths, r->num_paths));
    if (r->host) {
        cJSON *h = lm__jadd(j, "hosts", cJSON_CreateArray());
        cJSON_AddItemToArray(h, cJSON_CreateString(r->host));
        for (size_t i = 0; i < ing->num_aliases; i++)
            if (strcmp(ing->aliases[i], r->host) != 0)
                cJSON_AddItemToArray(h, cJSON_CreateString(ing->aliases[i]));
    }
    if (ing->num_methods)
        cJSON_AddItemToObjectCS(j, "methods", lm__str_array(ing->methods, ing->num_methods));
    if (ing->num_headers) {
        cJSON *h = lm__jadd(j, "headers", cJSON_CreateObject());
        for (size_t i = 0; i < ing->num_headers; i++)
            cJSON_AddItemToObject(h, ing->hnames[i], lm__str_array(ing->hvalues[i], ing->hnum[i]));
    }
    if (ing->num_protocols) {
        cJSON_AddItemToObjectCS(j, "protocols", lm__str_array(ing->protocols, ing->num_protocols));
    } else {
        static const char *const def[] = { "http", "https" };
        cJSON_AddItemToObjectCS(j, "protocols", lm__ref_array(def, 2));
    }
    cJSON_AddItemToObjectCS(j, "strip_path", cJSON_CreateBool(ing->strip_path));
    cJSON_AddItemToObjectCS(j, "preserve_host", cJSON_CreateBool(ing->preserve_host));
    cJSON_AddItemToObjectCS(j, "https_redirect_status_code", cJSON_CreateNumber(ing->redirect_code));
    cJSON_AddItemToObjectCS(j, "regex_priority", cJSON_CreateNumber(ing->regex_priority));
    lm__jadd(j, "path_handling", cJSON_CreateStringReference("v0"));
    cJSON_AddItemToObjectCS(j, "tags", lm__tags_json(ctx, r->ing));
    return j;
}

static cJSON *lm__service_json(lm__tctx_t *ctx, const lm__ksvc_t *k, cJSON *routes)
{
    const lm__svc_t *s = k->svc->data;
    cJSON *j = cJSON_CreateObject();
    lm__jadd_str(j, "name", k->name);
    lm__jadd_str(j, "host", k->host);
    cJSON_AddItemToObjectCS(j, "port", cJSON_CreateNumber(k->port));
    if (s->protocol)
        lm__jadd_str(j, "protocol", s->protocol);
    else
        lm__jadd(j, "protocol", cJSON_CreateStringReference("http"));
    if (s->path)
        lm__jadd_str(j, "path", s->path);
    if (s->connect_timeout >= 0)
        cJSON_AddItemToObjectCS(j, "connect_timeout", cJSON_CreateNumber(s->connect_timeout));
    if (s->read_timeout >= 0)
        cJSON_AddItemToObjectCS(j, "read_timeout", cJSON_CreateNumber(s->read_timeout));
    if (s->write_timeout >= 0)
        cJSON_AddItemToObjectCS(j, "write_timeout", cJSON_CreateNumber(s->write_timeout));
    if (s->retries >= 0)
        cJSON_AddItemToObjectCS(j, "retries", cJSON_CreateNumber(s->retries));
    cJSON_AddItemToObjectCS(j, "tags", lm__tags_json(ctx, k->svc));
    cJSON_AddItemToObjectCS(j, "routes", routes);
    return j;
}

static cJSON *lm__upstream_json(lm__tctx_t *ctx, const lm__ksvc_t *k)
{
    const lm__svc_t *s = k->svc->data;
    cJSON *j = cJSON_CreateObject();
    lm__jadd_str(j, "name", k->upstream);
    if (s->policy && !s->policy->excluded) {
        const lm__policy_t *p = s->policy->data;
        const cJSON *f, *fields = p ? p->fields : NULL;
        cJSON_ArrayForEach(f, fields)
            cJSON_AddItemToObject(j, f->string, cJSON_Duplicate(f, 1));
    }
    if (s->host_header)
        lm__jadd_str(j, "host_header", s->host_header);
    cJSON_AddItemToObjectCS(j, "tags", lm__tags_json(ctx, k->svc));
    if (k->num_targets) {
        cJSON *ts = lm__jadd(j, "targets", cJSON_CreateArray());
        for (size_t i = 0; i < k->num_targets; i++) {
            cJSON *t = cJSON_CreateObject();
            lm__jadd_str(t, "target", k->targets[i]);
            cJSON_AddItemToObjectCS(t, "weight", cJSON_CreateNumber(100));
            cJSON_AddItemToObjectCS(t, "tags", lm__tags_json(ctx, k->svc));
            cJSON_AddItemToArray(ts, t);
        }
    }
    return j;
}

static void lm__emit_services(lm__tctx_t *ctx, cJSON *doc)
{
    cJSON *svcs = cJSON_CreateArray(), *ups = cJSON_CreateArray();
    for (size_t i = 0; i < ctx->ksvc_v.n; i++) {
        lm__ksvc_t *k = ctx->ksvc_v.v[i];
        k->emit = false;
        size_t n = 0;
        for (size_t r = 0; r < k->routes.n; r++) {
            lm__route_t *rt = k->routes.v[r];
            rt->emit = !rt->ing->excluded && !k->svc->excluded;
            if (!rt->ing->excluded && k->svc->excluded)
                lm__report(ctx, rt->ing, "backend Service \"%s\" is invalid", k->svc->name);
            n += rt->emit;
        }
        if (n == 0)
            continue;
        k->emit = true;
        cJSON *routes = cJSON_CreateArray();
        for (size_t r = 0; r < k->routes.n; r++) {
            lm__route_t *rt = k->routes.v[r];
            if (!rt->emit)
                continue;
            ((lm__ing_t *)rt->ing->data)->emitted = true;
            cJSON_AddItemToArray(routes, lm__route_json(ctx, rt));
        }
        cJSON_AddItemToArray(svcs, lm__service_json(ctx, k, routes));
        if (k->upstream)
            cJSON_AddItemToArray(ups, lm__upstream_json(ctx, k));
    }
    if (cJSON_GetArraySize(svcs))
        cJSON_AddItemToObjectCS(doc, "services", svcs);
    else
        cJSON_Delete(svcs);
    if (cJSON_GetArraySize(ups))
        cJSON_AddItemToObjectCS(doc, "upstreams", ups);
    else
        cJSON_Delete(ups);
}

static void lm__emit_certificates(lm__tctx_t *ctx, cJSON *doc)
{
    cJSON *certs = cJSON_CreateArray();
    for (size_t i = 0; i < ctx->cert_v.n; i++) {
        lm__cert_t *c = ctx->cert_v.v[i];
        c->emit = false;
        if (c->secret->excluded) {
            for (size_t u = 0; u < c->uses.n; u++) {
                lm__claim_t *use = c->uses.v[u];
                if (!use->ing->excluded)
                    lm__report(ctx, use->ing, "spec.tls[%zu].secretName: Secret \"%s\" is invalid",
                               use->tls, c->secret->name);
            }
            continue;
        }
        cJSON *snis = cJSON_CreateArray();
        for (size_t s = 0; s < c->snis.n; s++) {
            lm__sni_t *sni = c->snis.v[s];
            sni->emitted_by = NULL;
            if (sni->dropped)
                continue;
            for (size_t k = 0; k < sni->claims.n && !sni->emitted_by; k++) {
                lm__claim_t *cl = sni->claims.v[k];
                if (!cl->ing->excluded)
                    sni->emitted_by = cl->ing;
            }
            if (sni->emitted_by == NULL)
                continue;
            ((lm__ing_t *)sni->emitted_by->data)->emitted = true;
            cJSON *sj = cJSON_CreateObject();
            lm__jadd_str(sj, "name", sni->name);
            cJSON_AddItemToObjectCS(sj, "tags", lm__tags_json(ctx, sni->emitted_by));
            cJSON_AddItemToArray(snis, sj);
        }
        if (cJSON_GetArraySize(snis) == 0) {
            cJSON_Delete(snis);
            continue;
        }
        c->emit = true;
        cJSON *j = cJSON_CreateObject();
        lm__jadd_str(j, "id", c->id);
        lm__jadd_str(j, "cert", c->cert);
        lm__jadd_str(j, "key", c->key);
        cJSON_AddItemToObjectCS(j, "tags", lm__tags_json(ctx, c->secret));
        cJSON_AddItemToObjectCS(j, "snis", snis);
        cJSON_AddItemToArray(certs, j);
    }
    if (cJSON_GetArraySize(certs))
        cJSON_AddItemToObjectCS(doc, "certificates", certs);
    else
        cJSON_Delete(certs);
}

static void lm__emit_consumers(lm__tctx_t *ctx, cJSON *doc)
{
    static const char *const kinds[] = { "keyauth_credentials", "basicauth_credentials",
                                         "jwt_secrets", "hmacauth_credentials", "acls" };
    cJSON *cons = cJSON_CreateArray();
    for (size_t i = 0; i < ctx->consumers.n; i++) {
        lm__obj_t *o = ctx->consumers.v[i];
        if (o->excluded)
            continue;
        lm__cons_t *c = o->data;
        cJSON *j = cJSON_CreateObject();
        if (c->username)
            lm__jadd_str(j, "username", c->username);
        else
            lm__jadd_str(j, "id", c->id);
        if (c->custom_id)
            lm__jadd_str(j, "custom_id", c->custom_id);
        cJSON_AddItemToObjectCS(j, "tags", lm__tags_json(ctx, o));
        for (size_t k = 0; k < LM_ARRAY_SIZE(kinds); k++) {
            cJSON *arr = NULL;
            for (size_t n = 0; n < c->creds.n; n++) {
                lm__cred_t *cr = c->creds.v[n];
                if (strcmp(cr->doc_key, kinds[k]) != 0)
                    continue;
                if (cr->secret && cr->secret->excluded) {
                    lm__report(ctx, o, "spec.credentials[%zu]: Secret \"%s\" is invalid", cr->idx,
                               cr->secret->name);
                    continue;
                }
                cJSON *e = cJSON_Duplicate(cr->fields, 1);
                cJSON_AddItemToObjectCS(e, "tags", lm__tags_json(ctx, cr->secret ? cr->secret : o));
                if (arr == NULL)
                    arr = lm__jadd(j, kinds[k], cJSON_CreateArray());
                cJSON_AddItemToArray(arr, e);
            }
        }
        cJSON_AddItemToArray(cons, j);
    }
    if (cJSON_GetArraySize(cons))
        cJSON_AddItemToObjectCS(doc, "consumers", cons);
    else
        cJSON_Delete(cons);
}

static bool lm__pent_live(const lm__pent_t *e)
{
    switch (e->scope) {
    case LM__SCOPE_SERVICE: return ((const lm__ksvc_t *)e->target)->emit;
    case LM__SCOPE_ROUTE: return ((const lm__route_t *)e->target)->emit;
    case LM__SCOPE_CONSUMER: return !((const lm__obj_t *)e->target)->excluded;
    default: return true;
    }
}

static void lm__emit_plugins(lm__tctx_t *ctx, cJSON *doc)
{
    static const char *const refs[] = { NULL, "service", "route", "consumer" };
    cJSON *plugins = cJSON_CreateArray();
    for (size_t i = 0; i < ctx->pents.n; i++) {
        lm__pent_t *e = ctx->pents.v[i];
        if (e->plugin->excluded || !lm__pent_live(e))
            continue;
        const lm__plug_t *p = e->plugin->data;
        cJSON *j = cJSON_CreateObject();
        lm__jadd_str(j, "name", p->plugin);
        if (p->instance_name && p->uses == 1) {
            lm__jadd_str(j, "instance_name", p->instance_name);
        } else if (p->instance_name) {
            char *n = lm_arena_sprintf(ctx->a, "%s-%s", p->instance_name,
                                       e->target_name[0] ? e->target_name : "global");
            for (char *c = n; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                      *c == '.' || *c == '-' || *c == '_' || *c == '~'))
                    *c = '_';
            lm__jadd_str(j, "instance_name", n);
        }
        if (!p->enabled)
            cJSON_AddItemToObjectCS(j, "enabled", cJSON_CreateBool(false));
        if (p->protocols)
            cJSON_AddItemToObjectCS(j, "protocols", cJSON_Duplicate(p->protocols, 1));
        if (p->config)
            cJSON_AddItemToObjectCS(j, "config", cJSON_Duplicate(p->config, 1));
        if (refs[e->scope])
            lm__jadd_str(j, refs[e->scope], e->target_name);
        cJSON_AddItemToObjectCS(j, "tags", lm__tags_json(ctx, e->plugin));
        cJSON_AddItemToArray(plugins, j);
    }
    if (cJSON_GetArraySize(plugins))
        cJSON_AddItemToObjectCS(doc, "plugins", plugins);
    else
        cJSON_Delete(plugins);
}

/* a broken Plugin takes down whatever names it (fail closed) */
static void lm__propagate(lm__tctx_t *ctx)
{
    for (size_t i = 0; i < ctx->plugin_objs.n; i++) {
        lm__obj_t *p = ctx->plugin_objs.v[i];
        if (!p->excluded)
            continue;
        for (size_t r = 0; r < p->refs.n; r++) {
            lm__obj_t *o = p->refs.v[r];
            if (!o->excluded)
                lm__exclude(ctx, o, "annotation %s: %s \"%s\" is invalid", o->plugins_ann, p->kind,
                            p->name);
        }
    }
}

static cJSON *lm__emit(lm__tctx_t *ctx)
{
    lm__propagate(ctx);
    for (size_t i = 0; i < ctx->ingresses.n; i++) {
        lm__obj_t *o = ctx->ingresses.v[i];
        if (o->data)
            ((lm__ing_t *)o->data)->emitted = false;
    }
    cJSON *doc = cJSON_CreateObject();
    lm__jadd(doc, "_format_version", cJSON_CreateStringReference("3.0"));
    lm__emit_services(ctx, doc);
    lm__emit_certificates(ctx, doc);
    lm__emit_consumers(ctx, doc);
    lm__emit_plugins(ctx, doc);
    return doc;
}

/* ---- errors back to objects ------------------------------------------- */

static lm__obj_t *lm__obj_by_tags(lm__tctx_t *ctx, char *const *tags, size_t n)
{
    const char *kind = NULL, *ns = "", *name = NULL;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(tags[i], "k8s-kind:", 9) == 0)
            kind = tags[i] + 9;
        else if (strncmp(tags[i], "k8s-namespace:", 14) == 0)
            ns = tags[i] + 14;
        else if (strncmp(tags[i], "k8s-name:", 9) == 0)
            name = tags[i] + 9;
    }
    return (kind && name) ? lm__obj_find(ctx, kind, ns, name) : NULL;
}

/*
 * The entities on an error's path ("services[0].routes[1].paths[0]"): the
 * deepest array element (outside any plugin config) and the deepest one
 * carrying tags. Either may be NULL.
 */
static void lm__path_entities(cJSON *doc, const char *path, cJSON **deepest, cJSON **tagged)
{
    *deepest = *tagged = NULL;
    cJSON *node = doc;
    const char *p = path;
    while (*p && node) {
        const char *end = p;
        while (*end && *end != '.' && *end != '[')
            end++;
        if (end > p) {
            if ((size_t)(end - p) == 6 && strncmp(p, "config", 6) == 0)
                return;
            cJSON *next = NULL;
            for (cJSON *it = cJSON_IsObject(node) ? node->child : NULL; it; it = it->next)
                if (it->string && strlen(it->string) == (size_t)(end - p) &&
                    strncmp(it->string, p, (size_t)(end - p)) == 0)
                    next = it;
            node = next;
        }
        p = end;
        while (*p == '[' && node) {
            char *e;
            long idx = strtol(p + 1, &e, 10);
            if (*e != ']' || !cJSON_IsArray(node))
                return;
            node = cJSON_GetArrayItem(node, (int)idx);
            p = e + 1;
            if (node) {
                *deepest = node;
                if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(node, "tags")))
                    *tagged = node;
            }
        }
        if (*p == '.')
            p++;
    }
}

static lm__obj_t *lm__obj_of_entity(lm__tctx_t *ctx, const cJSON *ent)
{
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(ent, "tags");
    char *t[16];
    size_t n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, tags)
        if (cJSON_IsString(it) && n < LM_ARRAY_SIZE(t))
            t[n++] = it->valuestring;
    return lm__obj_by_tags(ctx, t, n);
}

/* a Kong upstream field back to the UpstreamPolicy's: "slots" -> "spec.slots",
 * "hash_fallback_header" -> "spec.hashOnFallback", "healthchecks.active.http_path"
 * -> "spec.healthchecks.active.httpPath" */
static void lm__policy_field(const char *kf, char *out, size_t n)
{
    if (strncmp(kf, "hash_fallback", 13) == 0) {
        snprintf(out, n, "spec.hashOnFallback");
        return;
    }
    if (strncmp(kf, "hash_on", 7) == 0) {
        snprintf(out, n, "spec.hashOn");
        return;
    }
    size_t o = (size_t)snprintf(out, n, "spec.");
    for (const char *p = kf; *p && o + 1 < n; p++) {
        if (*p == '_' && p[1] >= 'a' && p[1] <= 'z' && p > kf && p[-1] != '.') {
            out[o++] = (char)(p[1] - 32);
            p++;
        } else {
            out[o++] = *p;
        }
    }
    out[o < n ? o : n - 1] = '\0';
}

static void lm__on_error(lm__tctx_t *ctx, cJSON *doc, const lm_config_error_t *e)
{
    lm__obj_t *o = NULL;
    if (e->num_entity_tags)
        o = lm__obj_by_tags(ctx, e->entity_tags, e->num_entity_tags);
    if (o == NULL && e->path) {
        cJSON *deepest, *tagged;
        lm__path_entities(doc, e->path, &deepest, &tagged);
        if (tagged)
            o = lm__obj_of_entity(ctx, tagged);
    }
    const char *msg = e->message ? e->message : "invalid";
    char full[2048];
    if (e->field && e->field[0])
        snprintf(full, sizeof(full), "%s: %s", e->field, msg);
    else
        snprintf(full, sizeof(full), "%s", msg);
    if (o == NULL) {
        if (e->path && e->path[0])
            lm__report(ctx, NULL, "%s: %s", e->path, msg);
        else
            lm__report(ctx, NULL, "%s", msg);
        return;
    }
    const char *et = e->entity_type ? e->entity_type : "";
    switch (o->type) {
    case LM__O_PLUGIN:
    case LM__O_CPLUGIN:
        lm__exclude(ctx, o, "%s", full);
        return;
    case LM__O_SECRET:
        lm__exclude(ctx, o, "%s%s%s", et, et[0] ? ": " : "", full);
        return;
    case LM__O_INGRESS:
        if (strcmp(et, "sni") == 0 && e->entity_name) {
            lm__sni_t *sni = lm_map_get(&ctx->snis, lm_str(e->entity_name));
            if (sni) {
                if (!sni->dropped) {
                    sni->dropped = true;
                    ctx->changed = true;
                }
                lm__claim_t *cl = NULL;
                for (size_t i = 0; i < sni->claims.n && !cl; i++)
                    if (((lm__claim_t *)sni->claims.v[i])->ing == o)
                        cl = sni->claims.v[i];
                if (cl)
                    lm__report(ctx, o, "spec.tls[%zu].hosts[%zu]: %s", cl->tls, cl->idx, msg);
                else
                    lm__report(ctx, o, "spec.tls: host \"%s\": %s", sni->name, msg);
                return;
            }
        }
        break;
    case LM__O_SERVICE: {
        lm__svc_t *s = o->data;
        /* an upstream field the Service's annotations do not set: the policy's */
        if (strcmp(et, "upstream") == 0 && s && s->policy && e->field &&
            strncmp(e->field, "host_header", 11) != 0 && strncmp(e->field, "targets", 7) != 0 &&
            strncmp(e->field, "name", 4) != 0 && strncmp(e->field, "tags", 4) != 0) {
            char f[256];
            lm__policy_field(e->field, f, sizeof(f));
            lm__exclude(ctx, s->policy, "%s: %s", f, msg);
            lm__report(ctx, o, "annotation %s: UpstreamPolicy \"%s\" is invalid", s->policy_ann,
                       s->policy_name);
            return;
        }
        break;
    }
    default:
        break;
    }
    if (e->entity_name && et[0])
        lm__exclude(ctx, o, "%s \"%s\": %s", et, e->entity_name, full);
    else if (et[0])
        lm__exclude(ctx, o, "%s: %s", et, full);
    else
        lm__exclude(ctx, o, "%s", full);
}

/*
 * The validator's copy of the document (it takes ownership and adds ids and
 * defaults to what it is given): new nodes, but every string borrowed from doc
 * (member names as constants, values as references), so nothing is copied and
 * cJSON_Delete frees only the nodes. doc outlives the copy: the validator
 * frees it before returning (the controller's and the tests' do; one keeping
 * it would have to cJSON_Duplicate it). A string node is only ever read or
 * replaced whole by the validator, never written in place.
 */
static cJSON *lm__dup_borrowed(const cJSON *item)
{
    cJSON *n = cJSON_CreateNull();
    if (n == NULL)
        return NULL;
    int type = item->type & 0xFF;
    n->type = type;
    n->valueint = item->valueint;
    n->valuedouble = item->valuedouble;
    if (item->valuestring) {
        n->valuestring = item->valuestring;
        n->type |= cJSON_IsReference;
    }
    if (item->string) {
        n->string = item->string;
        n->type |= cJSON_StringIsConst;
    }
    cJSON *prev = NULL;
    for (const cJSON *c = item->child; c; c = c->next) {
        cJSON *d = lm__dup_borrowed(c);
        if (d == NULL) {
            cJSON_Delete(n);
            return NULL;
        }
        if (prev) {
            prev->next = d;
            d->prev = prev;
        } else {
            n->child = d;
        }
        prev = d;
    }
    if (n->child)
        n->child->prev = prev; /* as cJSON keeps lists: the first's prev is the last */
    return n;
}

static int lm__validate(lm__tctx_t *ctx, const cJSON *doc, lm_config_errors_t *errs)
{
    uint64_t t0 = lm__now_ns();
    cJSON *copy = lm__dup_borrowed(doc);
    uint64_t t1 = lm__now_ns();
    lm__tstats.dup += t1 - t0;
    if (copy == NULL)
        return LM_ERROR;
    int rc;
    if (ctx->in->validate) {
        rc = ctx->in->validate(copy, errs) == LM_OK && errs->count == 0 ? LM_OK : LM_ERROR;
    } else {
        lm_config_t *cfg = lm_config_build(copy, errs);
        rc = cfg && errs->count == 0 ? LM_OK : LM_ERROR;
        lm_config_free(cfg);
    }
    lm__tstats.validate += lm__now_ns() - t1;
    return rc;
}

/* drop marked array elements everywhere below node */
static void lm__sweep(cJSON *node)
{
    cJSON *it = node ? node->child : NULL;
    while (it) {
        cJSON *next = it->next;
        if (cJSON_IsArray(node) && cJSON_GetObjectItemCaseSensitive(it, "\x01drop")) {
            cJSON_DetachItemViaPointer(node, it);
            cJSON_Delete(it);
        } else if (cJSON_IsArray(it) || cJSON_IsObject(it)) {
            lm__sweep(it);
        }
        it = next;
    }
}

/* the last resort: remove the entities the errors point at, by path; else nothing */
static cJSON *lm__prune(lm__tctx_t *ctx, cJSON *doc, lm_config_errors_t *errs, unsigned *rounds)
{
    for (int attempt = 0; attempt < LM__PRUNE_ROUNDS; attempt++) {
        bool whole = errs->count == 0;
        for (size_t i = 0; i < errs->count && !whole; i++) {
            cJSON *deepest, *tagged;
            lm__path_entities(doc, errs->items[i].path ? errs->items[i].path : "", &deepest, &tagged);
            if (deepest == NULL || !cJSON_IsObject(deepest)) {
                whole = true;
                break;
            }
            if (!cJSON_GetObjectItemCaseSensitive(deepest, "\x01drop"))
                cJSON_AddTrueToObject(deepest, "\x01drop");
        }
        if (whole)
            break;
        lm__sweep(doc);
        static const char *const tops[] = { "services", "upstreams", "certificates", "consumers", "plugins" };
        for (size_t t = 0; t < LM_ARRAY_SIZE(tops); t++) {
            cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc, tops[t]);
            if (arr && cJSON_GetArraySize(arr) == 0)
                cJSON_DeleteItemFromObjectCaseSensitive(doc, tops[t]);
        }
        lm_config_errors_free(errs);
        lm_config_errors_init(errs);
        (*rounds)++;
        if (lm__validate(ctx, doc, errs) == LM_OK)
            return doc;
        for (size_t i = 0; i < errs->count; i++)
            lm__on_error(ctx, doc, &errs->items[i]);
    }
    cJSON_Delete(doc);
    doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "_format_version", "3.0");
    lm__report(ctx, NULL, "the document could not be repaired: nothing is configured");
    return doc;
}

/* ---- outputs ------------------------------------------------------------- */

static int lm__cmp_broken(const void *a, const void *b)
{
    const lm_broken_t *x = a, *y = b;
    int c = strcmp(x->kind, y->kind);
    if (c == 0)
        c = strcmp(x->namespace, y->namespace);
    if (c == 0)
        c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->message, y->message);
}

static char *lm__xstrdup(const char *s)
{
    char *r = strdup(s ? s : "");
    if (r == NULL)
        abort();
    return r;
}

static void lm__outputs(lm__tctx_t *ctx, lm_translate_out_t *out)
{
    out->num_broken = ctx->reports.n;
    out->broken = calloc(ctx->reports.n ? ctx->reports.n : 1, sizeof(lm_broken_t));
    if (out->broken == NULL)
        abort();
    for (size_t i = 0; i < ctx->reports.n; i++) {
        const lm__report_t *r = ctx->reports.v[i];
        lm_broken_t *b = &out->broken[i];
        b->kind = lm__xstrdup(r->obj ? r->obj->kind : "");
        b->api_version = lm__xstrdup(r->obj ? r->obj->api_version : "");
        b->namespace = lm__xstrdup(r->obj ? r->obj->ns : "");
        b->name = lm__xstrdup(r->obj ? r->obj->name : "");
        b->uid = lm__xstrdup(r->obj ? r->obj->uid : "");
        b->reason = lm__xstrdup(lm__reason(r->obj));
        b->message = lm__xstrdup(r->message);
    }
    if (out->num_broken > 1)
        qsort(out->broken, out->num_broken, sizeof(lm_broken_t), lm__cmp_broken);
    out->ingresses = calloc(ctx->ingresses.n ? ctx->ingresses.n : 1, sizeof(char *));
    if (out->ingresses == NULL)
        abort();
    for (size_t i = 0; i < ctx->ingresses.n; i++) {
        const lm__obj_t *o = ctx->ingresses.v[i];
        const lm__ing_t *ing = o->data;
        if (!o->excluded && ing && ing->emitted)
            out->ingresses[out->num_ingresses++] = lm__xstrdup(o->key);
    }
}

/* ---- the translation ------------------------------------------------------- */

static void lm__model(lm__tctx_t *ctx)
{
    const lm_translate_in_t *in = ctx->in;
    lm__index(ctx, &in->services, LM__O_SERVICE, &ctx->services);
    lm__index(ctx, &in->secrets, LM__O_SECRET, &ctx->secrets);
    lm__index(ctx, &in->plugins, LM__O_PLUGIN, &ctx->plugins);
    lm__index(ctx, &in->cluster_plugins, LM__O_CPLUGIN, &ctx->cplugins);
    lm__index(ctx, &in->upstream_policies, LM__O_POLICY, &ctx->policies);
    lm__index(ctx, &in->consumers, LM__O_CONSUMER, NULL);
    lm__index_slices(ctx);
    for (size_t i = 0; i < in->ingresses.count; i++) {
        if (!lm_translate_ingress_is_ours(in, in->ingresses.items[i]))
            continue;
        lm__obj_t *o = lm__obj_new(ctx, LM__O_INGRESS, in->ingresses.items[i]);
        if (o)
            lm__vpush(ctx->a, &ctx->ingresses, o);
    }
    /* in sorted order, so reports and first-come choices never depend on the input's */
    lm__sort(&ctx->ingresses, lm__cmp_obj);
    for (size_t i = 0; i < ctx->ingresses.n; i++)
        lm__ingress_build(ctx, ctx->ingresses.v[i]);
    lm__tls_resolve(ctx);
    lm__sort(&ctx->consumers, lm__cmp_obj);
    for (size_t i = 0; i < ctx->consumers.n; i++)
        lm__consumer_build(ctx, ctx->consumers.v[i]);
    lm__globals_build(ctx);

    lm__sort(&ctx->ksvc_v, lm__cmp_ksvc);
    for (size_t i = 0; i < ctx->ksvc_v.n; i++)
        lm__sort(&((lm__ksvc_t *)ctx->ksvc_v.v[i])->routes, lm__cmp_route);
    lm__sort(&ctx->cert_v, lm__cmp_cert);
    lm__sort(&ctx->consumers, lm__cmp_consumer);
    lm__sort(&ctx->pents, lm__cmp_pent);
}

int lm_translate(const lm_translate_in_t *in, lm_translate_out_t *out)
{
    memset(out, 0, sizeof(*out));
    memset(&lm__tstats, 0, sizeof(lm__tstats));
    uint64_t t0 = lm__now_ns();
    lm__tctx_t ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.in = in;
    ctx.a = lm_arena_create(256 * 1024);
    if (ctx.a == NULL)
        return LM_ERROR;
    lm__model(&ctx);
    lm__tstats.model = lm__now_ns() - t0;

    cJSON *doc = NULL;
    for (unsigned round = 1;; round++) {
        uint64_t te = lm__now_ns();
        cJSON_Delete(doc);
        doc = lm__emit(&ctx);
        lm__tstats.emit += lm__now_ns() - te;
        if (doc == NULL)
            break;
        lm_config_errors_t errs;
        lm_config_errors_init(&errs);
        out->rounds = round;
        if (lm__validate(&ctx, doc, &errs) == LM_OK) {
            lm_config_errors_free(&errs);
            break;
        }
        ctx.changed = false;
        for (size_t i = 0; i < errs.count; i++)
            lm__on_error(&ctx, doc, &errs.items[i]);
        if (errs.count == 0)
            lm__report(&ctx, NULL, "the validator failed without saying why");
        if (!ctx.changed || round >= LM__MAX_ROUNDS) {
            doc = lm__prune(&ctx, doc, &errs, &out->rounds);
            lm_config_errors_free(&errs);
            break;
        }
        lm_config_errors_free(&errs);
    }
    out->doc = doc;
    uint64_t to = lm__now_ns();
    lm__outputs(&ctx, out);
    uint64_t tc = lm__now_ns();
    lm__tstats.outputs = tc - to;

    for (size_t i = 0; i < ctx.owned.n; i++)
        cJSON_Delete(ctx.owned.v[i]);
    lm_map_free(&ctx.objs);
    lm_map_free(&ctx.services);
    lm_map_free(&ctx.secrets);
    lm_map_free(&ctx.plugins);
    lm_map_free(&ctx.cplugins);
    lm_map_free(&ctx.policies);
    lm_map_free(&ctx.slices);
    lm_map_free(&ctx.ksvcs);
    lm_map_free(&ctx.certs);
    lm_map_free(&ctx.snis);
    lm_map_free(&ctx.report_keys);
    lm_arena_destroy(ctx.a);
    lm__tstats.cleanup = lm__now_ns() - tc;
    lm__tstats.rounds = out->rounds;
    return out->doc ? LM_OK : LM_ERROR;
}

void lm_translate_out_free(lm_translate_out_t *out)
{
    if (out == NULL)
        return;
    cJSON_Delete(out->doc);
    for (size_t i = 0; i < out->num_broken; i++) {
        lm_broken_t *b = &out->broken[i];
        free(b->kind);
        free(b->api_version);
        free(b->namespace);
        free(b->name);
        free(b->uid);
        free(b->reason);
        free(b->message);
    }
    free(out->broken);
    for (size_t i = 0; i < out->num_ingresses; i++)
        free(out->ingresses[i]);
    free(out->ingresses);
    memset(out, 0, sizeof(*out));
}

/*
 * translate_crd.c - the limen.dev/v1 objects into the model: Plugins and
 * ClusterPlugins (config inline or from a Secret, attached by annotation or
 * global), Consumers with their credential Secrets, UpstreamPolicies into
 * Kong upstream fields.
 */
#include "translate_internal.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- Plugin, ClusterPlugin ------------------------------------------------ */

static cJSON *lm__own(lm__tctx_t *ctx, cJSON *j)
{
    if (j)
        lm__vpush(ctx->a, &ctx->owned, j);
    return j;
}

/* spec.configFrom.secretKeyRef: the config object, or NULL (o excluded) */
static cJSON *lm__plugin_config_from(lm__tctx_t *ctx, lm__obj_t *o, const cJSON *from)
{
    const cJSON *ref = lm__jget(from, "secretKeyRef");
    const char *name = lm__jstr(ref, "name"), *key = lm__jstr(ref, "key");
    const char *ns = o->type == LM__O_CPLUGIN ? lm__jstr(ref, "namespace") : o->ns;
    if (name == NULL || name[0] == '\0' || key == NULL || key[0] == '\0') {
        lm__exclude(ctx, o, "spec.configFrom.secretKeyRef: name and key are required");
        return NULL;
    }
    if (ns == NULL || ns[0] == '\0') {
        lm__exclude(ctx, o, "spec.configFrom.secretKeyRef.namespace: required for a ClusterPlugin");
        return NULL;
    }
    char *skey = lm_arena_sprintf(ctx->a, "%s/%s", ns, name);
    lm__obj_t *sec = lm_map_get(&ctx->secrets, lm_str(skey));
    if (sec == NULL) {
        lm__exclude(ctx, o, "spec.configFrom.secretKeyRef: Secret \"%s\" not found", skey);
        return NULL;
    }
    char *v = lm__secret_value(ctx->a, sec->j, key);
    if (v == NULL) {
        lm__exclude(ctx, o, "spec.configFrom.secretKeyRef: Secret \"%s\" has no key \"%s\"", skey, key);
        return NULL;
    }
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    cJSON *cfg = v[0] ? lm_config_parse(v, strlen(v), NULL, &errs) : NULL;
    lm_config_errors_free(&errs);
    if (!cJSON_IsObject(cfg)) {
        cJSON_Delete(cfg);
        lm__exclude(ctx, o, "spec.configFrom.secretKeyRef: key \"%s\" of Secret \"%s\" is not a JSON "
                    "or YAML object", key, skey);
        return NULL;
    }
    return lm__own(ctx, cfg);
}

static void lm__plugin_parse(lm__tctx_t *ctx, lm__obj_t *o)
{
    o->parsed = true;
    lm__plug_t *p = lm_arena_calloc(ctx->a, sizeof(*p));
    o->data = p;
    p->enabled = true;
    lm__vpush(ctx->a, &ctx->plugin_objs, o);
    const cJSON *spec = lm__jget(o->j, "spec");
    p->plugin = lm__jstr(spec, "plugin");
    if (p->plugin == NULL || p->plugin[0] == '\0') {
        p->plugin = NULL;
        lm__exclude(ctx, o, "spec.plugin: required");
    }
    const cJSON *config = lm__jget(spec, "config"), *from = lm__jget(spec, "configFrom");
    if (config && from) {
        lm__exclude(ctx, o, "spec.config and spec.configFrom are mutually exclusive");
    } else if (config) {
        if (!cJSON_IsObject(config))
            lm__exclude(ctx, o, "spec.config: expected an object");
        else
            p->config = lm__own(ctx, cJSON_Duplicate(config, 1));
    } else if (from) {
        p->config = lm__plugin_config_from(ctx, o, from);
    }
    const cJSON *en = lm__jget(spec, "enabled");
    if (en && !cJSON_IsBool(en))
        lm__exclude(ctx, o, "spec.enabled: expected a boolean");
    else if (en)
        p->enabled = cJSON_IsTrue(en);
    const cJSON *pr = lm__jget(spec, "protocols");
    if (pr) {
        bool ok = cJSON_IsArray(pr);
        const cJSON *it;
        cJSON_ArrayForEach(it, pr)
            ok = ok && cJSON_IsString(it);
        if (!ok)
            lm__exclude(ctx, o, "spec.protocols: expected an array of strings");
        else if (cJSON_GetArraySize(pr) > 0)
            p->protocols = pr;
    }
    const cJSON *in = lm__jget(spec, "instanceName");
    if (in && !cJSON_IsString(in))
        lm__exclude(ctx, o, "spec.instanceName: expected a string");
    else if (in && in->valuestring[0])
        p->instance_name = in->valuestring;
    const char *g = lm__label(o->j, "global");
    p->global = o->type == LM__O_CPLUGIN && g && strcmp(g, "true") == 0;
}

lm__obj_t *lm__plugin_find(lm__tctx_t *ctx, const char *ns, const char *name)
{
    char key[600];
    snprintf(key, sizeof(key), "%s/%s", ns, name);
    lm__obj_t *o = lm_map_get(&ctx->plugins, lm_str(key));
    if (o == NULL)
        o = lm_map_get(&ctx->cplugins, lm_str(name));
    if (o && !o->parsed)
        lm__plugin_parse(ctx, o);
    return o;
}

bool lm__plugins_annotation(lm__tctx_t *ctx, lm__obj_t *obj)
{
    const char *key, *v = lm__ann(obj->j, "plugins", &key);
    if (v == NULL)
        return !obj->excluded;
    obj->plugins_ann = key;
    char **names;
    size_t n = lm__split(ctx->a, v, &names);
    for (size_t i = 0; i < n; i++) {
        lm__obj_t *p = lm__plugin_find(ctx, obj->ns, names[i]);
        if (p == NULL) {
            lm__exclude(ctx, obj, "annotation %s: Plugin \"%s\" not found", key, names[i]);
            continue;
        }
        bool dup = false;
        for (size_t j = 0; j < obj->plugins.n && !dup; j++)
            dup = obj->plugins.v[j] == p;
        if (dup)
            continue;
        lm__plug_t *pd = p->data;
        for (size_t j = 0; j < obj->plugins.n; j++) {
            lm__obj_t *q = obj->plugins.v[j];
            lm__plug_t *qd = q->data;
            if (pd->plugin && qd->plugin && strcmp(pd->plugin, qd->plugin) == 0)
                lm__exclude(ctx, obj, "annotation %s: %s \"%s\" and %s \"%s\" both configure plugin "
                            "\"%s\"", key, q->kind, q->name, p->kind, p->name, pd->plugin);
        }
        lm__vpush(ctx->a, &obj->plugins, p);
        lm__vpush(ctx->a, &p->refs, obj);
        if (p->excluded)
            lm__exclude(ctx, obj, "annotation %s: %s \"%s\" is invalid", key, p->kind, p->name);
    }
    return !obj->excluded;
}

void lm__pent_add(lm__tctx_t *ctx, lm__obj_t *plugin, int scope, void *target, const char *target_name)
{
    lm__pent_t *e = lm_arena_calloc(ctx->a, sizeof(*e));
    e->plugin = plugin;
    e->scope = scope;
    e->target = target;
    e->target_name = target_name;
    lm__vpush(ctx->a, &ctx->pents, e);
    ((lm__plug_t *)plugin->data)->uses++;
}

void lm__globals_build(lm__tctx_t *ctx)
{
    for (size_t i = 0; i < ctx->in->cluster_plugins.count; i++) {
        const cJSON *j = ctx->in->cluster_plugins.items[i];
        const char *g = lm__label(j, "global");
        const char *name = lm__jstr(lm__jget(j, "metadata"), "name");
        if (!g || strcmp(g, "true") != 0 || !name)
            continue;
        lm__obj_t *o = lm_map_get(&ctx->cplugins, lm_str(name));
        if (o == NULL || o->j != j)
            continue; /* a duplicate */
        if (!o->parsed)
            lm__plugin_parse(ctx, o);
        lm__pent_add(ctx, o, LM__SCOPE_GLOBAL, NULL, "");
    }
}

/* ---- Consumer -------------------------------------------------------------- */

static const struct {
    const char *type, *doc_key;
    const char *fields[4];
    bool required[4];
} lm__credtypes[] = {
    { "key-auth", "keyauth_credentials", { "key" }, { true } },
    { "basic-auth", "basicauth_credentials", { "username", "password" }, { true, true } },
    { "jwt", "jwt_secrets", { "key", "algorithm", "secret", "rsa_public_key" },
      { true, false, false, false } },
    { "hmac-auth", "hmacauth_credentials", { "username", "secret" }, { true, true } },
    { "acl", "acls", { "group" }, { true } },
};

static void lm__cred_from_secret(lm__tctx_t *ctx, lm__obj_t *o, lm__cons_t *c, size_t idx,
                                 lm__obj_t *sec)
{
    const char *type = lm__label(sec->j, LM__ANN_LIMEN "credential");
    if (type == NULL)
        type = lm__label(sec->j, LM__ANN_KONG "credential");
    if (type == NULL) {
        lm__report(ctx, o, "spec.credentials[%zu]: Secret \"%s\" has no " LM__ANN_LIMEN
                   "credential label", idx, sec->name);
        return;
    }
    size_t t = 0;
    while (t < LM_ARRAY_SIZE(lm__credtypes) && strcmp(lm__credtypes[t].type, type) != 0)
        t++;
    if (t == LM_ARRAY_SIZE(lm__credtypes)) {
        lm__report(ctx, o, "spec.credentials[%zu]: Secret \"%s\": unknown credential type \"%s\" "
                   "(expected key-auth, basic-auth, jwt, hmac-auth or acl)", idx, sec->name, type);
        return;
    }
    cJSON *fields = cJSON_CreateObject();
    for (size_t f = 0; f < 4 && lm__credtypes[t].fields[f]; f++) {
        const char *fname = lm__credtypes[t].fields[f];
        char *v = lm__secret_value(ctx->a, sec->j, fname);
        if ((v == NULL || v[0] == '\0') && lm__credtypes[t].required[f]) {
            lm__report(ctx, o, "spec.credentials[%zu]: Secret \"%s\": %s credential needs \"%s\"",
                       idx, sec->name, type, fname);
            cJSON_Delete(fields);
            return;
        }
        if (v == NULL || v[0] == '\0') {
            if (strcmp(fname, "algorithm") == 0)
                cJSON_AddStringToObject(fields, fname, "HS256");
            continue;
        }
        cJSON_AddStringToObject(fields, fname, v);
    }
    lm__cred_t *cr = lm_arena_calloc(ctx->a, sizeof(*cr));
    cr->doc_key = lm__credtypes[t].doc_key;
    cr->secret = sec;
    cr->idx = idx;
    cr->fields = lm__own(ctx, fields);
    lm__vpush(ctx->a, &c->creds, cr);
}

static bool lm__has_group(const lm__cons_t *c, const char *group)
{
    for (size_t i = 0; i < c->creds.n; i++) {
        const lm__cred_t *cr = c->creds.v[i];
        if (strcmp(cr->doc_key, "acls") == 0 &&
            strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cr->fields, "group")), group) == 0)
            return true;
    }
    return false;
}

void lm__consumer_build(lm__tctx_t *ctx, lm__obj_t *o)
{
    lm__cons_t *c = lm_arena_calloc(ctx->a, sizeof(*c));
    o->data = c;
    o->parsed = true;
    const cJSON *spec = lm__jget(o->j, "spec");
    const cJSON *u = lm__jget(spec, "username"), *cid = lm__jget(spec, "customId");
    if (u && !cJSON_IsString(u))
        lm__exclude(ctx, o, "spec.username: expected a string");
    if (cid && !cJSON_IsString(cid))
        lm__exclude(ctx, o, "spec.customId: expected a string");
    c->username = (cJSON_IsString(u) && u->valuestring[0]) ? u->valuestring : NULL;
    c->custom_id = (cJSON_IsString(cid) && cid->valuestring[0]) ? cid->valuestring : NULL;
    if (c->username == NULL && c->custom_id == NULL)
        lm__exclude(ctx, o, "spec: username or customId is required");
    if (c->username == NULL) {
        char seed[700];
        snprintf(seed, sizeof(seed), "consumer:%s", o->key);
        lm_config_uuid(seed, c->id);
    }
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, lm__jget(spec, "credentials")) {
        if (!cJSON_IsString(it) || it->valuestring[0] == '\0') {
            lm__report(ctx, o, "spec.credentials[%zu]: expected a Secret name", i++);
            continue;
        }
        char *key = lm_arena_sprintf(ctx->a, "%s/%s", o->ns, it->valuestring);
        lm__obj_t *sec = lm_map_get(&ctx->secrets, lm_str(key));
        if (sec == NULL)
            lm__report(ctx, o, "spec.credentials[%zu]: Secret \"%s\" not found", i, it->valuestring);
        else
            lm__cred_from_secret(ctx, o, c, i, sec);
        i++;
    }
    i = 0;
    cJSON_ArrayForEach(it, lm__jget(spec, "aclGroups")) {
        if (!cJSON_IsString(it) || it->valuestring[0] == '\0') {
            lm__exclude(ctx, o, "spec.aclGroups[%zu]: expected a group name", i++);
            continue;
        }
        i++;
        if (lm__has_group(c, it->valuestring))
            continue;
        lm__cred_t *cr = lm_arena_calloc(ctx->a, sizeof(*cr));
        cr->doc_key = "acls";
        cr->fields = lm__own(ctx, cJSON_CreateObject());
        cJSON_AddStringToObject(cr->fields, "group", it->valuestring);
        lm__vpush(ctx->a, &c->creds, cr);
    }
    lm__plugins_annotation(ctx, o);
    for (size_t k = 0; k < o->plugins.n; k++)
        lm__pent_add(ctx, o->plugins.v[k], LM__SCOPE_CONSUMER, o, c->username ? c->username : c->id);
}

/* ---- UpstreamPolicy ---------------------------------------------------------- */

typedef struct lm__pspec {
    const char *camel, *snake;
    char type; /* 's' string, 'i' integer, 'n' number, 'b' boolean, 'I' integer array,
                  'm' map of string arrays, 'o' record */
    const struct lm__pspec *sub;
} lm__pspec_t;

static const lm__pspec_t lm__p_ahealthy[] = {
    { "interval", "interval", 'n', NULL },
    { "successes", "successes", 'i', NULL },
    { "httpStatuses", "http_statuses", 'I', NULL },
    { NULL, NULL, 0, NULL },
};
static const lm__pspec_t lm__p_aunhealthy[] = {
    { "interval", "interval", 'n', NULL },
    { "httpFailures", "http_failures", 'i', NULL },
    { "tcpFailures", "tcp_failures", 'i', NULL },
    { "timeouts", "timeouts", 'i', NULL },
    { "httpStatuses", "http_statuses", 'I', NULL },
    { NULL, NULL, 0, NULL },
};
static const lm__pspec_t lm__p_phealthy[] = {
    { "successes", "successes", 'i', NULL },
    { "httpStatuses", "http_statuses", 'I', NULL },
    { NULL, NULL, 0, NULL },
};
static const lm__pspec_t lm__p_punhealthy[] = {
    { "httpFailures", "http_failures", 'i', NULL },
    { "tcpFailures", "tcp_failures", 'i', NULL },
    { "timeouts", "timeouts", 'i', NULL },
    { "httpStatuses", "http_statuses", 'I', NULL },
    { NULL, NULL, 0, NULL },
};
static const lm__pspec_t lm__p_active[] = {
    { "type", "type", 's', NULL },
    { "concurrency", "concurrency", 'i', NULL },
    { "httpPath", "http_path", 's', NULL },
    { "httpsSni", "https_sni", 's', NULL },
    { "httpsVerifyCertificate", "https_verify_certificate", 'b', NULL },
    { "headers", "headers", 'm', NULL },
    { "timeout", "timeout", 'n', NULL },
    { "healthy", "healthy", 'o', lm__p_ahealthy },
    { "unhealthy", "unhealthy", 'o', lm__p_aunhealthy },
    { NULL, NULL, 0, NULL },
};
static const lm__pspec_t lm__p_passive[] = {
    { "type", "type", 's', NULL },
    { "healthy", "healthy", 'o', lm__p_phealthy },
    { "unhealthy", "unhealthy", 'o', lm__p_punhealthy },
    { NULL, NULL, 0, NULL },
};
static const lm__pspec_t lm__p_healthchecks[] = {
    { "active", "active", 'o', lm__p_active },
    { "passive", "passive", 'o', lm__p_passive },
    { "threshold", "threshold", 'n', NULL },
    { NULL, NULL, 0, NULL },
};

static bool lm__is_int(const cJSON *v)
{
    return cJSON_IsNumber(v) && v->valuedouble == (double)(long long)v->valuedouble;
}

/* a camelCase record into a snake_case one, types checked; false (o excluded) on error */
static bool lm__pconv(lm__tctx_t *ctx, lm__obj_t *o, const char *path, const cJSON *in,
                      const lm__pspec_t *spec, cJSON *out)
{
    if (!cJSON_IsObject(in)) {
        lm__exclude(ctx, o, "%s: expected an object", path);
        return false;
    }
    bool ok = true;
    const cJSON *it;
    cJSON_ArrayForEach(it, in) {
        const lm__pspec_t *s = spec;
        while (s->camel && strcmp(s->camel, it->string) != 0)
            s++;
        if (s->camel == NULL) {
            lm__exclude(ctx, o, "%s.%s: unknown field", path, it->string);
            ok = false;
            continue;
        }
        if (cJSON_IsNull(it))
            continue;
        const char *want = NULL;
        bool good = true;
        switch (s->type) {
        case 's': good = cJSON_IsString(it); want = "a string"; break;
        case 'i': good = lm__is_int(it); want = "an integer"; break;
        case 'n': good = cJSON_IsNumber(it); want = "a number"; break;
        case 'b': good = cJSON_IsBool(it); want = "a boolean"; break;
        case 'I': {
            const cJSON *v;
            good = cJSON_IsArray(it);
            cJSON_ArrayForEach(v, it)
                good = good && lm__is_int(v);
            want = "an array of integers";
            break;
        }
        case 'm': {
            const cJSON *v, *x;
            good = cJSON_IsObject(it);
            cJSON_ArrayForEach(v, it) {
                good = good && cJSON_IsArray(v);
                cJSON_ArrayForEach(x, v)
                    good = good && cJSON_IsString(x);
            }
            want = "a map of string arrays";
            break;
        }
        case 'o': {
            char sub[512];
            snprintf(sub, sizeof(sub), "%s.%s", path, s->camel);
            cJSON *rec = cJSON_AddObjectToObject(out, s->snake);
            if (!lm__pconv(ctx, o, sub, it, s->sub, rec))
                ok = false;
            continue;
        }
        }
        if (!good) {
            lm__exclude(ctx, o, "%s.%s: expected %s", path, s->camel, want);
            ok = false;
            continue;
        }
        cJSON_AddItemToObject(out, s->snake, cJSON_Duplicate(it, 1));
    }
    return ok;
}

/* spec.hashOn / spec.hashOnFallback into hash_on... / hash_fallback... */
static bool lm__phash(lm__tctx_t *ctx, lm__obj_t *o, const char *path, const cJSON *h,
                      bool fallback, cJSON *out)
{
    static const char *const names[] = { "input", "header", "cookie", "queryArg", "uriCapture" };
    static const char *const values[] = { NULL, "header", "cookie", "query_arg", "uri_capture" };
    if (!cJSON_IsObject(h)) {
        lm__exclude(ctx, o, "%s: expected an object", path);
        return false;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, h) {
        bool known = strcmp(it->string, "cookiePath") == 0;
        for (size_t i = 0; i < 5; i++)
            known = known || strcmp(it->string, names[i]) == 0;
        if (!known) {
            lm__exclude(ctx, o, "%s.%s: unknown field", path, it->string);
            return false;
        }
        if (!cJSON_IsString(it) || it->valuestring[0] == '\0') {
            lm__exclude(ctx, o, "%s.%s: expected a non-empty string", path, it->string);
            return false;
        }
    }
    size_t set = 0, which = 0;
    for (size_t i = 0; i < 5; i++)
        if (lm__jget(h, names[i])) {
            set++;
            which = i;
        }
    if (set != 1) {
        lm__exclude(ctx, o, "%s: exactly one of input, header, cookie, queryArg, uriCapture is "
                    "required", path);
        return false;
    }
    const char *cookie_path = lm__jstr(h, "cookiePath");
    if (cookie_path && which != 2) {
        lm__exclude(ctx, o, "%s.cookiePath: only with cookie", path);
        return false;
    }
    const char *v = lm__jstr(h, names[which]);
    const char *kind = values[which];
    if (which == 0) {
        static const char *const inputs[] = { "ip", "consumer", "path", "none" };
        bool ok = false;
        for (size_t i = 0; i < 4; i++)
            ok = ok || strcmp(v, inputs[i]) == 0;
        if (!ok) {
            lm__exclude(ctx, o, "%s.input: expected one of ip, consumer, path, none", path);
            return false;
        }
        kind = v;
    }
    const char *pre = fallback ? "hash_fallback" : "hash_on";
    cJSON_AddStringToObject(out, fallback ? "hash_fallback" : "hash_on", kind);
    char f[64];
    if (which == 2) {
        /* Kong has one cookie for both (hash_on_cookie) */
        if (!lm__jget(out, "hash_on_cookie"))
            cJSON_AddStringToObject(out, "hash_on_cookie", v);
        if (cookie_path && !lm__jget(out, "hash_on_cookie_path"))
            cJSON_AddStringToObject(out, "hash_on_cookie_path", cookie_path);
    } else if (which > 0) {
        snprintf(f, sizeof(f), "%s_%s", pre, kind);
        cJSON_AddStringToObject(out, f, v);
    }
    return true;
}

static void lm__policy_parse(lm__tctx_t *ctx, lm__obj_t *o)
{
    o->parsed = true;
    lm__policy_t *p = lm_arena_calloc(ctx->a, sizeof(*p));
    o->data = p;
    cJSON *out = lm__own(ctx, cJSON_CreateObject());
    const cJSON *spec = lm__jget(o->j, "spec");
    const cJSON *it;
    bool ok = true;
    cJSON_ArrayForEach(it, spec) {
        const char *k = it->string;
        if (cJSON_IsNull(it))
            continue;
        if (strcmp(k, "algorithm") == 0) {
            static const char *const algs[] = { "round-robin", "consistent-hashing",
                                                "least-connections", "latency" };
            bool good = false;
            for (size_t i = 0; i < 4 && cJSON_IsString(it); i++)
                good = good || strcmp(algs[i], it->valuestring) == 0;
            if (!good) {
                lm__exclude(ctx, o, "spec.algorithm: expected one of round-robin, "
                            "consistent-hashing, least-connections, latency");
                ok = false;
            } else {
                cJSON_AddStringToObject(out, "algorithm", it->valuestring);
            }
        } else if (strcmp(k, "slots") == 0) {
            if (!lm__is_int(it)) {
                lm__exclude(ctx, o, "spec.slots: expected an integer");
                ok = false;
            } else {
                cJSON_AddNumberToObject(out, "slots", it->valuedouble);
            }
        } else if (strcmp(k, "hashOn") == 0 || strcmp(k, "hashOnFallback") == 0) {
            bool fb = k[6] == 'F';
            ok = lm__phash(ctx, o, fb ? "spec.hashOnFallback" : "spec.hashOn", it, fb, out) && ok;
        } else if (strcmp(k, "healthchecks") == 0) {
            cJSON *hc = cJSON_AddObjectToObject(out, "healthchecks");
            ok = lm__pconv(ctx, o, "spec.healthchecks", it, lm__p_healthchecks, hc) && ok;
        } else {
            lm__exclude(ctx, o, "spec.%s: unknown field", k);
            ok = false;
        }
    }
    p->fields = ok ? out : NULL;
}

lm__obj_t *lm__policy_find(lm__tctx_t *ctx, const char *ns, const char *name)
{
    char key[600];
    snprintf(key, sizeof(key), "%s/%s", ns, name);
    lm__obj_t *o = lm_map_get(&ctx->policies, lm_str(key));
    if (o && !o->parsed)
        lm__policy_parse(ctx, o);
    return o;
}

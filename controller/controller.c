/*
 * controller.c - the controller's wiring (see lm_ctl.h): informers feed a
 * debounced sync; a sync translates the caches into one document, pushes it
 * when its hash changed, and (as leader) reports broken objects and writes
 * status. Everything runs on one libuv loop.
 */
#include "lm_ctl.h"
#include "lm_ctl_int.h"

#include "lm_config.h"
#include "lm_log.h"
#include "lm_plugin_rt.h"

#include <malloc.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* The informers: what we watch and how. Secrets are watched only by type
 * (TLS) or by label (credentials, plugin configuration), never all of them. */
static const lm__kind_t lm__kinds[LM_K_NUM] = {
    [LM_K_INGRESS_CLASS] = { "/apis/networking.k8s.io/v1", "ingressclasses", "IngressClass", "networking.k8s.io/v1", true, NULL, NULL },
    [LM_K_INGRESS] = { "/apis/networking.k8s.io/v1", "ingresses", "Ingress", "networking.k8s.io/v1", false, NULL, NULL },
    [LM_K_SERVICE] = { "/api/v1", "services", "Service", "v1", false, NULL, NULL },
    [LM_K_ENDPOINT_SLICE] = { "/apis/discovery.k8s.io/v1", "endpointslices", "EndpointSlice", "discovery.k8s.io/v1", false, NULL, NULL },
    [LM_K_SECRET_TLS] = { "/api/v1", "secrets", "Secret", "v1", false, NULL, "type=kubernetes.io/tls" },
    [LM_K_SECRET_CREDENTIAL] = { "/api/v1", "secrets", "Secret", "v1", false, "limen.dev/credential", NULL },
    [LM_K_SECRET_KONG_CREDENTIAL] = { "/api/v1", "secrets", "Secret", "v1", false, "konghq.com/credential", NULL },
    [LM_K_SECRET_PLUGIN_CONFIG] = { "/api/v1", "secrets", "Secret", "v1", false, "limen.dev/plugin-config", NULL },
    [LM_K_PLUGIN] = { "/apis/limen.dev/v1", "plugins", "Plugin", "limen.dev/v1", false, NULL, NULL },
    [LM_K_CLUSTER_PLUGIN] = { "/apis/limen.dev/v1", "clusterplugins", "ClusterPlugin", "limen.dev/v1", true, NULL, NULL },
    [LM_K_CONSUMER] = { "/apis/limen.dev/v1", "consumers", "Consumer", "limen.dev/v1", false, NULL, NULL },
    [LM_K_UPSTREAM_POLICY] = { "/apis/limen.dev/v1", "upstreampolicies", "UpstreamPolicy", "limen.dev/v1", false, NULL, NULL },
};

const lm__kind_t *lm_ctl_kind(int k)
{
    return &lm__kinds[k];
}

void lm_ctl_opts_defaults(lm_ctl_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->ingress_class = "limen";
    o->controller_name = "limen.dev/ingress-controller";
    o->dataplane_port = "admin";
    o->update_status = true;
    o->election = true;
    o->election_id = "limen-controller-leader";
    o->lease_seconds = 15;
    o->listen = ":10254";
    o->debounce_ms = 100;
}

static uint64_t lm__now_ms(lm_ctl_t *c)
{
    return uv_now(c->loop);
}

/* ---- validation: the data plane's own validator ----------------------------- */

/* The text and hash of the last document the validator accepted: lm_config_build
 * prints and hashes its input anyway (cfg->canonical_json, cfg->hash), and the
 * document lm_translate returns is the one its last validation accepted (a copy
 * of it, printed before any default is added: the same bytes), so lm__sync
 * takes them instead of printing and hashing 8 MB again. Cleared by every
 * validation; single-threaded like the rest of the controller. */
static struct {
    char *json;
    char hash[33];
} lm__accepted;

static void lm__accepted_clear(void)
{
    cJSON_free(lm__accepted.json);
    lm__accepted.json = NULL;
}

static int lm__validate(cJSON *doc, void *errs)
{
    lm_config_errors_t *e = errs;
    lm__accepted_clear();
    size_t before = e->count;
    lm_config_t *cfg = lm_config_build(doc, e);
    if (!cfg)
        return LM_ERROR;
    int rc = lm_plugins_validate(cfg, e);
    if (rc == LM_OK && e->count == before && cfg->canonical_json) {
        lm__accepted.json = cfg->canonical_json;
        cfg->canonical_json = NULL;
        memcpy(lm__accepted.hash, cfg->hash, sizeof(lm__accepted.hash));
    }
    lm_config_free(cfg);
    return rc == LM_OK ? LM_OK : LM_ERROR;
}

/* md5 of the JSON text: the data plane hashes the same bytes (lm_config_build) */
static void lm__md5_hex(const char *s, size_t len, char out[33])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    out[0] = '\0';
    if (EVP_Digest(s, len, md, &n, EVP_md5(), NULL) == 1)
        for (unsigned int i = 0; i < n && i < 16; i++)
            snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* ---- sync -------------------------------------------------------------------- */

static size_t lm__list(lm_ctl_t *c, int k, const cJSON ***items)
{
    *items = NULL;
    return c->inf[k] ? lm_informer_list(c->inf[k], items) : 0;
}

/* The addresses Ingress status should carry. */
static size_t lm__publish_addresses(lm_ctl_t *c, const char **out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < c->o.num_publish_addresses && n < cap; i++)
        out[n++] = c->o.publish_addresses[i];
    if (n || !c->o.publish_service)
        return n;
    char ns[256];
    const char *slash = strchr(c->o.publish_service, '/');
    if (!slash || (size_t)(slash - c->o.publish_service) >= sizeof(ns))
        return 0;
    memcpy(ns, c->o.publish_service, (size_t)(slash - c->o.publish_service));
    ns[slash - c->o.publish_service] = '\0';
    const cJSON *svc = c->inf[LM_K_SERVICE] ? lm_informer_get(c->inf[LM_K_SERVICE], ns, slash + 1) : NULL;
    if (!svc)
        return 0;
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(svc, "status"), "loadBalancer"), "ingress");
    const cJSON *it;
    cJSON_ArrayForEach(it, lb) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "ip");
        if (!cJSON_IsString(v))
            v = cJSON_GetObjectItemCaseSensitive(it, "hostname");
        if (cJSON_IsString(v) && n < cap)
            out[n++] = v->valuestring;
    }
    if (n)
        return n;
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(svc, "spec");
    const cJSON *ext = cJSON_GetObjectItemCaseSensitive(spec, "externalIPs");
    cJSON_ArrayForEach(it, ext) {
        if (cJSON_IsString(it) && n < cap)
            out[n++] = it->valuestring;
    }
    const cJSON *ip = cJSON_GetObjectItemCaseSensitive(spec, "clusterIP");
    if (!n && cJSON_IsString(ip) && strcmp(ip->valuestring, "None") != 0 && ip->valuestring[0])
        out[n++] = ip->valuestring;
    return n;
}

static bool lm__broken_has(const lm_translate_out_t *out, const char *kind, const char *ns, const char *name,
                           const char **msg)
{
    for (size_t i = 0; i < out->num_broken; i++) {
        const lm_broken_t *b = &out->broken[i];
        if (strcmp(b->kind, kind) == 0 && strcmp(b->namespace, ns) == 0 && strcmp(b->name, name) == 0) {
            *msg = b->message;
            return true;
        }
    }
    return false;
}

static const char *lm__meta(const cJSON *obj, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(obj, "metadata"), field);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* Leader only: Events on broken objects, conditions on our CRDs, Ingress status. */
static void lm__report(lm_ctl_t *c, const lm_translate_out_t *out)
{
    if (!c->leading)
        return;
    for (size_t i = 0; i < out->num_broken; i++) {
        const lm_broken_t *b = &out->broken[i];
        if (!b->kind[0])
            continue;
        lm_event_post(c->events, b->api_version, b->kind, b->namespace, b->name, b->uid, "Warning", b->reason,
                      b->message);
    }
    static const int crds[] = { LM_K_PLUGIN, LM_K_CLUSTER_PLUGIN, LM_K_CONSUMER, LM_K_UPSTREAM_POLICY };
    for (size_t k = 0; k < LM_ARRAY_SIZE(crds); k++) {
        const cJSON **items;
        size_t n = lm__list(c, crds[k], &items);
        for (size_t i = 0; i < n; i++) {
            const char *msg = NULL;
            bool bad = lm__broken_has(out, lm__kinds[crds[k]].kind, lm__meta(items[i], "namespace"),
                                      lm__meta(items[i], "name"), &msg);
            lm_status_set_condition(c->status, items[i], lm__kinds[crds[k]].resource, !bad,
                                    bad ? "Invalid" : "Programmed", bad ? msg : "applied to the data planes");
        }
        free(items);
    }
    if (c->o.update_status) {
        const char *addrs[LM_CTL_MAX_LIST];
        size_t na = lm__publish_addresses(c, addrs, LM_ARRAY_SIZE(addrs));
        lm_status_set_addresses(c->status, addrs, na);
        const cJSON **ings = calloc(out->num_ingresses ? out->num_ingresses : 1, sizeof(*ings));
        size_t ni = 0;
        for (size_t i = 0; ings && i < out->num_ingresses; i++) {
            char ns[256];
            const char *key = out->ingresses[i], *slash = strchr(key, '/');
            if (!slash || (size_t)(slash - key) >= sizeof(ns))
                continue;
            memcpy(ns, key, (size_t)(slash - key));
            ns[slash - key] = '\0';
            const cJSON *obj = lm_informer_get(c->inf[LM_K_INGRESS], ns, slash + 1);
            if (obj)
                ings[ni++] = obj;
        }
        if (ings)
            lm_status_sync_ingresses(c->status, ings, ni);
        free(ings);
    }
}

/* The name of a broken ClusterPlugin labelled global: "true", or NULL. */
static const char *lm__broken_global_plugin(lm_ctl_t *c, const lm_translate_out_t *out)
{
    for (size_t i = 0; i < out->num_broken; i++) {
        const lm_broken_t *b = &out->broken[i];
        if (strcmp(b->kind, "ClusterPlugin") != 0 || !c->inf[LM_K_CLUSTER_PLUGIN])
            continue;
        const cJSON *obj = lm_informer_get(c->inf[LM_K_CLUSTER_PLUGIN], NULL, b->name);
        const cJSON *labels = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "labels");
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(labels, "global");
        if (cJSON_IsString(g) && strcmp(g->valuestring, "true") == 0)
            return b->name;
    }
    return NULL;
}

static void lm__on_trim(uv_timer_t *t)
{
    malloc_trim(0);
}

static void lm__sync(lm_ctl_t *c)
{
    uint64_t t0 = uv_hrtime();
    c->dirty = false;
    c->last_sync_ms = lm__now_ms(c);

    lm_translate_in_t in;
    memset(&in, 0, sizeof(in));
    in.ingress_class = c->o.ingress_class;
    in.controller_name = c->o.controller_name;
    in.validate = lm__validate;
    const cJSON **lists[LM_K_NUM];
    size_t counts[LM_K_NUM];
    for (int k = 0; k < LM_K_NUM; k++)
        counts[k] = lm__list(c, k, &lists[k]);
#define LM__IN(field, k) in.field = (lm_kobjs_t){ lists[k], counts[k] }
    LM__IN(ingress_classes, LM_K_INGRESS_CLASS);
    LM__IN(ingresses, LM_K_INGRESS);
    LM__IN(services, LM_K_SERVICE);
    LM__IN(endpoint_slices, LM_K_ENDPOINT_SLICE);
    LM__IN(plugins, LM_K_PLUGIN);
    LM__IN(cluster_plugins, LM_K_CLUSTER_PLUGIN);
    LM__IN(consumers, LM_K_CONSUMER);
    LM__IN(upstream_policies, LM_K_UPSTREAM_POLICY);
#undef LM__IN
    /* the secret informers overlap (a TLS secret may carry a label): one each */
    size_t nsec = counts[LM_K_SECRET_TLS] + counts[LM_K_SECRET_CREDENTIAL] + counts[LM_K_SECRET_KONG_CREDENTIAL] +
                  counts[LM_K_SECRET_PLUGIN_CONFIG];
    const cJSON **secrets = calloc(nsec ? nsec : 1, sizeof(*secrets));
    size_t ns = 0;
    static const int sk[] = { LM_K_SECRET_TLS, LM_K_SECRET_CREDENTIAL, LM_K_SECRET_KONG_CREDENTIAL,
                              LM_K_SECRET_PLUGIN_CONFIG };
    for (size_t s = 0; secrets && s < LM_ARRAY_SIZE(sk); s++) {
        for (size_t i = 0; i < counts[sk[s]]; i++) {
            const cJSON *o = lists[sk[s]][i];
            bool dup = false;
            for (size_t p = 0; p < s && !dup; p++)
                dup = c->inf[sk[p]] && lm_informer_get(c->inf[sk[p]], lm__meta(o, "namespace"), lm__meta(o, "name"));
            if (!dup)
                secrets[ns++] = o;
        }
    }
    in.secrets = (lm_kobjs_t){ secrets, ns };

    lm_translate_out_t out;
    memset(&out, 0, sizeof(out));
    lm__accepted_clear();
    int rc = lm_translate(&in, &out);
    /* out.doc's text and hash when the last validation accepted it (see lm__accepted) */
    char *accepted = lm__accepted.json, accepted_hash[33];
    memcpy(accepted_hash, lm__accepted.hash, sizeof(accepted_hash));
    lm__accepted.json = NULL;
    for (int k = 0; k < LM_K_NUM; k++)
        free(lists[k]);
    free(secrets);
    c->m.syncs++;
    if (rc != LM_OK || !out.doc) {
        c->m.sync_failures++;
        lm_log_error("translation failed (out of memory?)");
        lm_translate_out_free(&out);
        cJSON_free(accepted);
        return;
    }
    c->m.broken_objects = out.num_broken;
    if (out.num_broken)
        c->m.translation_failures++;
    /* fail closed: leaving out a broken global plugin (say, authentication for all
     * traffic) would open everything; keep serving the last good document instead */
    const char *held = lm__broken_global_plugin(c, &out);
    if (held) {
        c->m.held_back++;
        if (strcmp(c->held_by, held) != 0)
            lm_log_error("ClusterPlugin %s is global and invalid: the data planes keep the last good configuration "
                         "until it is fixed", held);
        snprintf(c->held_by, sizeof(c->held_by), "%s", held);
        c->translated = true;
        lm__report(c, &out);
        lm_translate_out_free(&out);
        cJSON_free(accepted);
        return;
    }
    c->held_by[0] = '\0';

    char *json = accepted ? accepted : cJSON_PrintUnformatted(out.doc);
    if (json) {
        char hash[33];
        size_t len = strlen(json);
        if (accepted)
            memcpy(hash, accepted_hash, sizeof(hash));
        else
            lm__md5_hex(json, len, hash);
        if (strcmp(hash, c->hash) != 0) {
            memcpy(c->hash, hash, sizeof(hash));
            lm_log_info("configuration changed: hash %s, %zu bytes, %zu Ingresses, %zu objects left out, %u rounds", hash,
                        len, out.num_ingresses, out.num_broken, out.rounds);
            for (size_t i = 0; i < out.num_broken; i++) {
                const lm_broken_t *b = &out.broken[i];
                lm_log_warn("%s %s%s%s: %s", b->kind, b->namespace, b->namespace[0] ? "/" : "", b->name, b->message);
            }
            if (c->push)
                lm_push_set_config(c->push, json, len, hash);
            c->m.config_changes++;
        }
        /* keep the text, not the tree: a tenth of the memory (/debug/config parses it) */
        cJSON_free(c->doc_json);
        c->doc_json = json;
    }
    c->translated = true;
    lm__report(c, &out);
    lm_translate_out_free(&out);
    /* a sync at scale peaks at a few times the steady state: give it back once
     * things are quiet (trimming after every sync costs more than the sync's own
     * allocations, which fault the pages back in) */
    uv_timer_start(&c->trim_timer, lm__on_trim, 1000, 0);
    double secs = (double)(uv_hrtime() - t0) / 1e9;
    c->m.last_sync_seconds = secs;
    c->m.sync_seconds_sum += secs;
    lm_ctl_metrics_observe_sync(c, secs);
}

static void lm__on_sync_timer(uv_timer_t *t)
{
    lm_ctl_t *c = t->data;
    if (c->dirty && c->synced)
        lm__sync(c);
}

/* A change: sync at once if the last one was long enough ago, else when it is. */
void lm_ctl_schedule(lm_ctl_t *c)
{
    c->dirty = true;
    if (!c->synced || uv_is_active((uv_handle_t *)&c->sync_timer))
        return;
    uint64_t now = lm__now_ms(c), next = c->last_sync_ms + c->o.debounce_ms;
    uv_timer_start(&c->sync_timer, lm__on_sync_timer, next > now ? next - now : 0, 0);
}

/* ---- informers ------------------------------------------------------------- */

static bool lm__same(const cJSON *a, const cJSON *b, const char *field)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(a, field), *y = cJSON_GetObjectItemCaseSensitive(b, field);
    return (!x && !y) || (x && y && cJSON_Compare(x, y, true));
}

/* A change the translation cannot see: only status or bookkeeping moved (our own
 * status writes come back as such events). Services keep their status: it
 * carries the --publish-service addresses. */
static bool lm__irrelevant(const cJSON *old, const cJSON *obj)
{
    if (!old || !obj)
        return false;
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(obj, "kind");
    if (cJSON_IsString(kind) && strcmp(kind->valuestring, "Service") == 0)
        return false;
    const cJSON *mo = cJSON_GetObjectItemCaseSensitive(old, "metadata"),
                *mn = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    static const char *const top[] = { "spec", "data", "type", "endpoints", "ports", "addressType", NULL };
    for (const char *const *f = top; *f; f++)
        if (!lm__same(old, obj, *f))
            return false;
    return lm__same(mo, mn, "annotations") && lm__same(mo, mn, "labels") && lm__same(mo, mn, "uid") &&
           lm__same(mo, mn, "generation");
}

static void lm__on_change(lm_informer_t *inf, lm_inf_event_t ev, const cJSON *old, const cJSON *obj, void *data)
{
    lm_ctl_t *c = data;
    c->m.events++;
    if (ev == LM_INF_MODIFIED && lm__irrelevant(old, obj)) {
        c->m.events_ignored++;
        return;
    }
    lm_ctl_schedule(c);
}

/* Now and then a sync without a change: rewrites status someone else changed,
 * re-posts Events that expired. */
static void lm__on_resync(uv_timer_t *t)
{
    lm_ctl_t *c = t->data;
    if (c->synced)
        lm_ctl_schedule(c);
}

static void lm__on_synced(lm_informer_t *inf, void *data)
{
    lm_ctl_t *c = data;
    for (int k = 0; k < LM_K_NUM; k++)
        if (c->inf[k] && !lm_informer_synced(c->inf[k]))
            return;
    if (c->synced)
        return;
    c->synced = true;
    lm_log_info("caches synced in %.3f s", (double)(uv_hrtime() - c->started_ns) / 1e9);
    c->dirty = true;
    lm__sync(c);
}

/* The data-plane Service's EndpointSlices: every ready address gets pushed to. */
static void lm__on_dp_change(lm_informer_t *inf, lm_inf_event_t ev, const cJSON *old, const cJSON *obj, void *data)
{
    lm_ctl_t *c = data;
    const cJSON **items;
    size_t n = lm_informer_list(inf, &items);
    char **urls = NULL;
    size_t nu = 0, cap = 0;
    bool https = c->o.dataplane_cert || c->o.dataplane_ca;
    for (size_t i = 0; i < n; i++) {
        const cJSON *ports = cJSON_GetObjectItemCaseSensitive(items[i], "ports"), *p;
        int port = atoi(c->o.dataplane_port);
        cJSON_ArrayForEach(p, ports) {
            const cJSON *pn = cJSON_GetObjectItemCaseSensitive(p, "name");
            const cJSON *pp = cJSON_GetObjectItemCaseSensitive(p, "port");
            if (cJSON_IsString(pn) && strcmp(pn->valuestring, c->o.dataplane_port) == 0 && cJSON_IsNumber(pp))
                port = pp->valueint;
        }
        if (port <= 0)
            continue;
        const cJSON *eps = cJSON_GetObjectItemCaseSensitive(items[i], "endpoints"), *e;
        cJSON_ArrayForEach(e, eps) {
            /* every endpoint but terminating ones: a data plane's readiness may wait for
             * its first configuration, so not-ready ones must get it too (push.c checks
             * each one's /status anyway) */
            const cJSON *cond = cJSON_GetObjectItemCaseSensitive(e, "conditions");
            if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cond, "terminating")))
                continue;
            const cJSON *addrs = cJSON_GetObjectItemCaseSensitive(e, "addresses"), *a;
            cJSON_ArrayForEach(a, addrs) {
                if (!cJSON_IsString(a))
                    continue;
                if (nu == cap) {
                    cap = cap ? cap * 2 : 8;
                    char **u = realloc(urls, cap * sizeof(*u));
                    if (!u)
                        break;
                    urls = u;
                }
                char buf[300];
                bool v6 = strchr(a->valuestring, ':') != NULL;
                snprintf(buf, sizeof(buf), "%s://%s%s%s:%d", https ? "https" : "http", v6 ? "[" : "", a->valuestring,
                         v6 ? "]" : "", port);
                urls[nu++] = strdup(buf);
            }
        }
    }
    free(items);
    lm_push_set_targets(c->push, "service", (const char *const *)urls, nu);
    for (size_t i = 0; i < nu; i++)
        free(urls[i]);
    free(urls);
}

/* Informer transforms: drop what neither the translation nor status writing reads
 * (a third of an EndpointSlice is its endpoints' targetRefs). Objects stay valid
 * Kubernetes objects, only thinner. */
static void lm__del(cJSON *obj, const char *const *fields)
{
    for (; *fields; fields++)
        cJSON_DeleteItemFromObjectCaseSensitive(obj, *fields);
}

static void lm__thin(cJSON *obj, void *data)
{
    static const char *const meta[] = { "creationTimestamp", "ownerReferences", "generateName", "selfLink", NULL };
    static const char *const svc_spec[] = { "clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy",
                                            "sessionAffinity", "sessionAffinityConfig", "selector", NULL };
    static const char *const ep[] = { "targetRef", "nodeName", "zone", "hints", "deprecatedTopology", NULL };
    lm__del(cJSON_GetObjectItemCaseSensitive(obj, "metadata"), meta);
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(obj, "kind");
    if (!cJSON_IsString(kind))
        return;
    if (strcmp(kind->valuestring, "Service") == 0) {
        lm__del(cJSON_GetObjectItemCaseSensitive(obj, "spec"), svc_spec);
        /* status only matters with load-balancer addresses (--publish-service) */
        const cJSON *lb = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(obj, "status"), "loadBalancer"), "ingress");
        if (cJSON_GetArraySize(lb) == 0)
            cJSON_DeleteItemFromObjectCaseSensitive(obj, "status");
    } else if (strcmp(kind->valuestring, "EndpointSlice") == 0) {
        cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(obj, "endpoints"))
            lm__del(e, ep);
        cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
        cJSON_DeleteItemFromObjectCaseSensitive(m, "annotations");
    }
}

static int lm__start_informers(lm_ctl_t *c)
{
    for (int k = 0; k < LM_K_NUM; k++) {
        const lm__kind_t *kd = &lm__kinds[k];
        lm_informer_spec_t spec = {
            .api_path = kd->api_path, .resource = kd->resource, .kind = kd->kind, .api_version = kd->api_version,
            .cluster_scoped = kd->cluster, .label_selector = kd->label, .field_selector = kd->field,
            .namespaces = kd->cluster ? NULL : c->o.watch_namespaces,
            .num_namespaces = kd->cluster ? 0 : c->o.num_watch_namespaces, .transform = lm__thin,
        };
        c->inf[k] = lm_informer_start(c->kube, &spec, lm__on_change, lm__on_synced, c);
        if (!c->inf[k])
            return LM_ERROR;
    }
    if (c->o.dataplane_service) {
        const char *slash = strchr(c->o.dataplane_service, '/');
        if (!slash) {
            lm_log_error("--dataplane-service %s: expected NAMESPACE/NAME", c->o.dataplane_service);
            return LM_ERROR;
        }
        snprintf(c->dp_ns, sizeof(c->dp_ns), "%.*s", (int)(slash - c->o.dataplane_service), c->o.dataplane_service);
        snprintf(c->dp_label, sizeof(c->dp_label), "kubernetes.io/service-name=%s", slash + 1);
        const char *nss[1] = { c->dp_ns };
        lm_informer_spec_t spec = {
            .api_path = "/apis/discovery.k8s.io/v1", .resource = "endpointslices", .kind = "EndpointSlice",
            .api_version = "discovery.k8s.io/v1", .label_selector = c->dp_label, .namespaces = nss, .num_namespaces = 1,
            .transform = lm__thin,
        };
        c->dp_inf = lm_informer_start(c->kube, &spec, lm__on_dp_change, NULL, c);
        if (!c->dp_inf)
            return LM_ERROR;
    }
    return LM_OK;
}

/* ---- leadership -------------------------------------------------------------- */

static void lm__on_leader(bool leading, void *data)
{
    lm_ctl_t *c = data;
    c->leading = leading;
    lm_log_info("%s leader (%s)", leading ? "became" : "is no longer", c->identity);
    lm_events_enable(c->events, leading);
    lm_status_enable(c->status, leading);
    if (leading && c->synced) {
        c->dirty = true;
        lm__sync(c); /* report what is broken and write status now */
    }
}

/* ---- run ----------------------------------------------------------------- */

static void lm__on_signal(uv_signal_t *s, int signum)
{
    lm_ctl_t *c = s->data;
    lm_log_info("signal %d: shutting down", signum);
    c->stopping = true;
    uv_stop(c->loop);
}

static void lm__leader_released(bool released, void *data)
{
    *(bool *)data = true;
}

static void lm__close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int lm_ctl_run(const lm_ctl_opts_t *o)
{
    lm_ctl_t *c = calloc(1, sizeof(*c));
    if (!c)
        return 1;
    c->o = *o;
    c->loop = uv_default_loop();
    c->started_ns = uv_hrtime();
    if (o->identity)
        snprintf(c->identity, sizeof(c->identity), "%s", o->identity);
    else {
        char host[128] = "limen";
        gethostname(host, sizeof(host) - 1);
        snprintf(c->identity, sizeof(c->identity), "%s_%d", host, (int)getpid());
    }
    int rc = 1;
    char err[512];
    lm_kube_config_t kc;
    memset(&kc, 0, sizeof(kc));
    if (lm_kube_config_load(o->kubeconfig, o->context, &kc, err, sizeof(err)) != LM_OK) {
        lm_log_error("kubernetes config: %s", err);
        free(c);
        return 1;
    }
    lm_log_info("limen-controller %s starting: API server %s (%s), class %s, identity %s", LM_VERSION, kc.server,
                kc.source ? kc.source : "", o->ingress_class, c->identity);
    char election_ns[256];
    snprintf(election_ns, sizeof(election_ns), "%s",
             o->election_namespace ? o->election_namespace : (kc.namespace ? kc.namespace : "default"));
    c->curl = lm_curl_new(c->loop);
    c->kube = lm_kube_new(c->loop, c->curl, &kc);
    if (!c->curl || !c->kube)
        goto out;
    c->events = lm_events_new(c->kube, "limen-controller", c->identity);
    c->status = lm_status_new(c->kube);
    lm_push_opts_t po = { .token = o->dataplane_token, .ca_file = o->dataplane_ca, .cert_file = o->dataplane_cert,
                          .key_file = o->dataplane_key };
    c->push = lm_push_new(c->loop, c->curl, &po);
    if (!c->events || !c->status || !c->push)
        goto out;
    if (o->num_dataplanes)
        lm_push_set_targets(c->push, "static", o->dataplanes, o->num_dataplanes);
    uv_timer_init(c->loop, &c->sync_timer);
    c->sync_timer.data = c;
    uv_timer_init(c->loop, &c->trim_timer);
    uv_timer_init(c->loop, &c->resync_timer);
    c->resync_timer.data = c;
    uv_timer_start(&c->resync_timer, lm__on_resync, 60000, 60000);
    if (o->listen && strcmp(o->listen, "off") != 0) {
        c->http = lm_ctl_http_start(c->loop, o->listen, lm_ctl_handle_http, c, err, sizeof(err));
        if (!c->http) {
            lm_log_error("--listen %s: %s", o->listen, err);
            goto out;
        }
    }
    if (lm__start_informers(c) != LM_OK)
        goto out;
    if (o->election) {
        c->leader = lm_leader_start(c->kube, election_ns, o->election_id, c->identity, o->lease_seconds, 0, 0,
                                    lm__on_leader, c);
        if (!c->leader)
            goto out;
    } else {
        lm__on_leader(true, c);
    }
    uv_signal_init(c->loop, &c->sigterm);
    uv_signal_init(c->loop, &c->sigint);
    c->sigterm.data = c->sigint.data = c;
    uv_signal_start(&c->sigterm, lm__on_signal, SIGTERM);
    uv_signal_start(&c->sigint, lm__on_signal, SIGINT);

    uv_run(c->loop, UV_RUN_DEFAULT);
    rc = c->stopping ? 0 : 1;

out:
    /* stop everything that may call back, then let the loop close the handles */
    if (c->leader) {
        /* releasing the Lease is one request: wait for it (bounded), then stop the rest */
        bool done = false;
        lm_leader_stop_then(c->leader, lm__leader_released, &done);
        uint64_t deadline = uv_hrtime() + 5000000000ULL;
        while (!done && uv_hrtime() < deadline)
            uv_run(c->loop, UV_RUN_ONCE);
        c->leader = NULL;
    }
    for (int k = 0; k < LM_K_NUM; k++)
        if (c->inf[k])
            lm_informer_stop(c->inf[k]);
    if (c->dp_inf)
        lm_informer_stop(c->dp_inf);
    if (c->http)
        lm_ctl_http_stop(c->http);
    if (c->push)
        lm_push_free(c->push);
    if (c->status)
        lm_status_free(c->status);
    if (c->events)
        lm_events_free(c->events);
    if (c->kube)
        lm_kube_free(c->kube);
    else
        lm_kube_config_free(&kc);
    if (c->curl)
        lm_curl_free(c->curl);
    uv_walk(c->loop, lm__close_walk, NULL);
    uv_run(c->loop, UV_RUN_DEFAULT);
    uv_loop_close(c->loop);
    cJSON_free(c->doc_json);
    free(c);
    return rc;
}

/*
 * translate_ingress.c - Ingresses into the model: which ones are ours, their
 * annotations, rules and paths into Kong routes, backends into Kong services
 * (one per Service port) with upstreams whose targets are the ready
 * endpoints, and TLS entries into certificates and SNIs.
 */
#include "translate_internal.h"

#include <stdio.h>
#include <stdlib.h>

#define LM__DEFAULT_CLASS "limen"
#define LM__DEFAULT_CONTROLLER "limen.dev/ingress-controller"

/* ---- ingress class ------------------------------------------------------ */

bool lm_translate_ingress_is_ours(const lm_translate_in_t *in, const cJSON *ingress)
{
    const char *cls = in->ingress_class ? in->ingress_class : LM__DEFAULT_CLASS;
    const char *ctl = in->controller_name ? in->controller_name : LM__DEFAULT_CONTROLLER;
    const char *cn = lm__jstr(lm__jget(ingress, "spec"), "ingressClassName");
    if (cn && cn[0]) {
        for (size_t i = 0; i < in->ingress_classes.count; i++) {
            const cJSON *ic = in->ingress_classes.items[i];
            const char *name = lm__jstr(lm__jget(ic, "metadata"), "name");
            if (name && strcmp(name, cn) == 0) {
                const char *c = lm__jstr(lm__jget(ic, "spec"), "controller");
                return c && strcmp(c, ctl) == 0;
            }
        }
        return strcmp(cn, cls) == 0;
    }
    const char *ann = lm__annotation(ingress, "kubernetes.io/ingress.class");
    if (ann)
        return strcmp(ann, cls) == 0;
    for (size_t i = 0; i < in->ingress_classes.count; i++) {
        const cJSON *ic = in->ingress_classes.items[i];
        const char *c = lm__jstr(lm__jget(ic, "spec"), "controller");
        const char *def = lm__annotation(ic, "ingressclass.kubernetes.io/is-default-class");
        if (c && strcmp(c, ctl) == 0 && def && strcmp(def, "true") == 0)
            return true;
    }
    return false;
}

/* ---- annotations ---------------------------------------------------------- */

static const char *const lm__protocols[] = { "http", "https", "grpc", "grpcs", "tcp", "tls",
                                             "tls_passthrough", "udp", "ws", "wss", NULL };
#define LM__PROTOCOLS_MSG "http, https, grpc, grpcs, tcp, tls, tls_passthrough, udp, ws, wss"

static bool lm__known_protocol(const char *p)
{
    for (size_t i = 0; lm__protocols[i]; i++)
        if (strcmp(lm__protocols[i], p) == 0)
            return true;
    return false;
}

static bool lm__ann_bool(lm__tctx_t *ctx, lm__obj_t *o, const char *name, bool *out)
{
    const char *key, *v = lm__ann(o->j, name, &key);
    if (v && !lm__parse_bool(v, out)) {
        lm__exclude(ctx, o, "annotation %s: expected \"true\" or \"false\"", key);
        return false;
    }
    return true;
}

static bool lm__ann_int(lm__tctx_t *ctx, lm__obj_t *o, const char *name, long long min,
                        long long max, int *out)
{
    const char *key, *v = lm__ann(o->j, name, &key);
    if (v && !lm__parse_int(v, min, max, out)) {
        lm__exclude(ctx, o, "annotation %s: expected an integer between %lld and %lld", key, min,
                    max);
        return false;
    }
    return true;
}

/* headers.NAME annotations (both prefixes; limen.dev wins) */
static void lm__ing_headers(lm__tctx_t *ctx, lm__obj_t *o, lm__ing_t *ing)
{
    const cJSON *anns = lm__jpath(o->j, "metadata", "annotations");
    size_t cap = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, anns)
        cap++;
    if (cap == 0)
        return;
    ing->hnames = lm_arena_alloc(ctx->a, cap * sizeof(char *));
    ing->hvalues = lm_arena_alloc(ctx->a, cap * sizeof(char **));
    ing->hnum = lm_arena_alloc(ctx->a, cap * sizeof(size_t));
    static const char *const prefixes[] = { LM__ANN_KONG "headers.", LM__ANN_LIMEN "headers." };
    for (size_t pass = 0; pass < 2; pass++) {
        size_t plen = strlen(prefixes[pass]);
        cJSON_ArrayForEach(it, anns) {
            if (!it->string || strncmp(it->string, prefixes[pass], plen) != 0 || !cJSON_IsString(it))
                continue;
            char *name = lm__lower(ctx->a, it->string + plen);
            char **vals;
            size_t nv = lm__split(ctx->a, it->valuestring, &vals);
            if (name[0] == '\0' || nv == 0) {
                lm__exclude(ctx, o, "annotation %s: expected a header name and a comma-separated "
                            "list of values", it->string);
                continue;
            }
            size_t k = 0;
            while (k < ing->num_headers && strcmp(ing->hnames[k], name) != 0)
                k++;
            if (k == ing->num_headers)
                ing->num_headers++;
            ing->hnames[k] = name;
            ing->hvalues[k] = vals;
            ing->hnum[k] = nv;
        }
    }
    /* sort by name (few) */
    for (size_t i = 1; i < ing->num_headers; i++)
        for (size_t j = i; j > 0 && strcmp(ing->hnames[j - 1], ing->hnames[j]) > 0; j--) {
            char *n = ing->hnames[j];
            char **v = ing->hvalues[j];
            size_t c = ing->hnum[j];
            ing->hnames[j] = ing->hnames[j - 1];
            ing->hvalues[j] = ing->hvalues[j - 1];
            ing->hnum[j] = ing->hnum[j - 1];
            ing->hnames[j - 1] = n;
            ing->hvalues[j - 1] = v;
            ing->hnum[j - 1] = c;
        }
}

static void lm__ing_parse(lm__tctx_t *ctx, lm__obj_t *o)
{
    lm__ing_t *ing = lm_arena_calloc(ctx->a, sizeof(*ing));
    o->data = ing;
    o->parsed = true;
    ing->strip_path = false;
    ing->preserve_host = true;
    ing->redirect_code = 426;
    ing->regex_priority = 0;
    lm__ann_bool(ctx, o, "strip-path", &ing->strip_path);
    lm__ann_bool(ctx, o, "preserve-host", &ing->preserve_host);
    lm__ann_int(ctx, o, "https-redirect-status-code", 100, 999, &ing->redirect_code);
    lm__ann_int(ctx, o, "regex-priority", -2147483647LL, 2147483647LL, &ing->regex_priority);
    const char *key, *v;
    if ((v = lm__ann(o->j, "methods", &key)) != NULL) {
        ing->num_methods = lm__split(ctx->a, v, &ing->methods);
        for (size_t i = 0; i < ing->num_methods; i++) {
            for (char *p = ing->methods[i]; *p; p++) {
                if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))) {
                    lm__exclude(ctx, o, "annotation %s: invalid method \"%s\"", key, ing->methods[i]);
                    break;
                }
                if (*p >= 'a')
                    *p = (char)(*p - 32);
            }
        }
        if (ing->num_methods == 0)
            lm__exclude(ctx, o, "annotation %s: expected a comma-separated list of methods", key);
        ing->num_methods = lm__sort_unique(ing->methods, ing->num_methods);
    }
    if ((v = lm__ann(o->j, "protocols", &key)) != NULL) {
        ing->num_protocols = lm__split(ctx->a, v, &ing->protocols);
        for (size_t i = 0; i < ing->num_protocols; i++) {
            ing->protocols[i] = lm__lower(ctx->a, ing->protocols[i]);
            if (!lm__known_protocol(ing->protocols[i]))
                lm__exclude(ctx, o, "annotation %s: unknown protocol \"%s\" (expected one of "
                            LM__PROTOCOLS_MSG ")", key, ing->protocols[i]);
        }
        if (ing->num_protocols == 0)
            lm__exclude(ctx, o, "annotation %s: expected a comma-separated list of protocols", key);
        ing->num_protocols = lm__sort_unique(ing->protocols, ing->num_protocols);
    }
    if ((v = lm__ann(o->j, "host-aliases", &key)) != NULL) {
        ing->num_aliases = lm__split(ctx->a, v, &ing->aliases);
        for (size_t i = 0; i < ing->num_aliases; i++)
            ing->aliases[i] = lm__lower(ctx->a, ing->aliases[i]);
    }
    lm__ing_headers(ctx, o, ing);
}

/* ---- Services ------------------------------------------------------------- */

void lm__svc_parse(lm__tctx_t *ctx, lm__obj_t *o)
{
    if (o->parsed)
        return;
    o->parsed = true;
    lm__svc_t *s = lm_arena_calloc(ctx->a, sizeof(*s));
    o->data = s;
    s->connect_timeout = s->read_timeout = s->write_timeout = s->retries = -1;
    const cJSON *spec = lm__jget(o->j, "spec");
    const char *type = lm__jstr(spec, "type");
    if (type && strcmp(type, "ExternalName") == 0) {
        s->external = true;
        s->external_name = lm__jstr(spec, "externalName");
        if (s->external_name == NULL || s->external_name[0] == '\0')
            lm__exclude(ctx, o, "spec.externalName: required for type ExternalName");
    }
    const char *key, *v;
    if ((v = lm__ann(o->j, "protocol", &key)) != NULL) {
        s->protocol = lm__lower(ctx->a, v);
        if (!lm__known_protocol(s->protocol))
            lm__exclude(ctx, o, "annotation %s: expected one of " LM__PROTOCOLS_MSG, key);
    }
    if ((v = lm__ann(o->j, "path", &key)) != NULL) {
        s->path = v;
        if (v[0] != '/')
            lm__exclude(ctx, o, "annotation %s: must start with \"/\"", key);
    }
    lm__ann_int(ctx, o, "connect-timeout", 1, 2147483646, &s->connect_timeout);
    lm__ann_int(ctx, o, "read-timeout", 1, 2147483646, &s->read_timeout);
    lm__ann_int(ctx, o, "write-timeout", 1, 2147483646, &s->write_timeout);
    lm__ann_int(ctx, o, "retries", 0, 32767, &s->retries);
    if ((v = lm__ann(o->j, "host-header", &key)) != NULL) {
        if (v[0] == '\0')
            lm__exclude(ctx, o, "annotation %s: must not be empty", key);
        else
            s->host_header = v;
    }
    if ((v = lm__ann(o->j, "upstream-policy", &key)) != NULL && !s->external) {
        s->policy_ann = key;
        s->policy_name = v;
        s->policy = lm__policy_find(ctx, o->ns, v);
        if (s->policy == NULL)
            lm__report(ctx, o, "annotation %s: UpstreamPolicy \"%s\" not found", key, v);
        else if (s->policy->excluded)
            lm__report(ctx, o, "annotation %s: UpstreamPolicy \"%s\" is invalid", key, v);
    }
    lm__plugins_annotation(ctx, o);
}

/* the endpoints of Service ns/svc for its port named pname: "ip:port" targets */
static void lm__targets(lm__tctx_t *ctx, lm__ksvc_t *k, const char *ns, const char *svc,
                        const char *pname)
{
    char key[600];
    LM__JOIN_BUF(key, ns, "/", svc);
    lm__vec_t *slices = lm_map_get(&ctx->slices, lm_str(key));
    if (slices == NULL)
        return;
    lm__vec_t out = { 0 };
    for (size_t i = 0; i < slices->n; i++) {
        const cJSON *sl = slices->v[i];
        const cJSON *p;
        int port = -1;
        cJSON_ArrayForEach(p, lm__jget(sl, "ports")) {
            const char *n = lm__jstr(p, "name");
            const cJSON *num = lm__jget(p, "port");
            if (strcmp(n ? n : "", pname) == 0 && cJSON_IsNumber(num)) {
                port = num->valueint;
                break;
            }
        }
        if (port < 1 || port > 65535)
            continue;
        const char *at = lm__jstr(sl, "addressType");
        bool v6 = at && strcmp(at, "IPv6") == 0;
        const cJSON *ep;
        cJSON_ArrayForEach(ep, lm__jget(sl, "endpoints")) {
            const cJSON *cond = lm__jget(ep, "conditions");
            if (cJSON_IsFalse(lm__jget(cond, "ready")) || cJSON_IsTrue(lm__jget(cond, "terminating")))
                continue;
            const cJSON *addr;
            cJSON_ArrayForEach(addr, lm__jget(ep, "addresses")) {
                if (!cJSON_IsString(addr) || addr->valuestring[0] == '\0')
                    continue;
                bool br = v6 || strchr(addr->valuestring, ':') != NULL;
                char pn[24];
                lm__utoa(pn, (unsigned)port);
                lm__vpush(ctx->a, &out, br ? LM__JOIN(ctx->a, "[", addr->valuestring, "]:", pn)
                                           : LM__JOIN(ctx->a, addr->valuestring, ":", pn));
            }
        }
    }
    k->targets = (char **)out.v;
    k->num_targets = lm__sort_unique(k->targets, out.n);
}

/* the Kong service of a backend, made on first use; NULL (reported) if none */
static lm__ksvc_t *lm__backend(lm__tctx_t *ctx, lm__obj_t *ing, const char *where,
                               const cJSON *backend)
{
    const cJSON *bs = lm__jget(backend, "service");
    if (bs == NULL) {
        if (lm__jget(backend, "resource"))
            lm__report(ctx, ing, "%s.resource: only Service backends are supported", where);
        else
            lm__report(ctx, ing, "%s.service: required", where);
        return NULL;
    }
    const char *name = lm__jstr(bs, "name");
    if (name == NULL || name[0] == '\0') {
        lm__report(ctx, ing, "%s.service.name: required", where);
        return NULL;
    }
    char key[600];
    LM__JOIN_BUF(key, ing->ns, "/", name);
    lm__obj_t *so = lm_map_get(&ctx->services, lm_str(key));
    if (so == NULL) {
        lm__report(ctx, ing, "%s.service.name: Service \"%s\" not found", where, name);
        return NULL;
    }
    lm__svc_parse(ctx, so);
    lm__svc_t *s = so->data;
    const cJSON *bp = lm__jget(bs, "port");
    const cJSON *num = lm__jget(bp, "number");
    const char *pname = lm__jstr(bp, "name");
    if (!cJSON_IsNumber(num) && (pname == NULL || pname[0] == '\0')) {
        lm__report(ctx, ing, "%s.service.port: a number or a name is required", where);
        return NULL;
    }
    int port = -1;
    const char *port_name = "";
    const cJSON *p;
    cJSON_ArrayForEach(p, lm__jget(lm__jget(so->j, "spec"), "ports")) {
        const cJSON *pn = lm__jget(p, "port");
        const char *n = lm__jstr(p, "name");
        if (!cJSON_IsNumber(pn))
            continue;
        if (cJSON_IsNumber(num) ? pn->valueint == num->valueint : (n && strcmp(n, pname) == 0)) {
            port = pn->valueint;
            port_name = n ? n : "";
            break;
        }
    }
    if (port < 0 && s->external && cJSON_IsNumber(num))
        port = num->valueint; /* ExternalName Services often list no ports */
    if (port < 1 || port > 65535) {
        if (cJSON_IsNumber(num))
            lm__report(ctx, ing, "%s.service.port.number: Service \"%s\" has no port %d", where,
                       name, num->valueint);
        else
            lm__report(ctx, ing, "%s.service.port.name: Service \"%s\" has no port named \"%s\"",
                       where, name, pname);
        return NULL;
    }
    char pn[24];
    lm__utoa(pn, (unsigned)port);
    char *kname = LM__JOIN(ctx->a, so->ns, ".", so->name, ".", pn);
    lm__ksvc_t *k = lm_map_get(&ctx->ksvcs, lm_str(kname));
    if (k)
        return k;
    k = lm_arena_calloc(ctx->a, sizeof(*k));
    k->svc = so;
    k->name = kname;
    k->port = port;
    if (s->external) {
        k->host = lm_arena_strdup(ctx->a, s->external_name ? s->external_name : "");
    } else {
        k->upstream = LM__JOIN(ctx->a, so->name, ".", so->ns, ".", pn, ".svc");
        k->host = k->upstream;
        lm__targets(ctx, k, so->ns, so->name, port_name);
    }
    lm_map_put(&ctx->ksvcs, lm_str(kname), k);
    lm__vpush(ctx->a, &ctx->ksvc_v, k);
    for (size_t i = 0; i < so->plugins.n; i++)
        lm__pent_add(ctx, so->plugins.v[i], LM__SCOPE_SERVICE, k, k->name);
    return k;
}

/* ---- paths ------------------------------------------------------------------ */

/* "~" + the path with regex metacharacters escaped + "$" */
static char *lm__regex_exact(lm_arena_t *a, const char *path, size_t len)
{
    char *out = lm_arena_alloc(a, 2 * len + 3);
    size_t o = 0;
    out[o++] = '~';
    for (size_t i = 0; i < len; i++) {
        if (strchr("\\.+*?()|[]{}^$", path[i]))
            out[o++] = '\\';
        out[o++] = path[i];
    }
    out[o++] = '$';
    out[o] = '\0';
    return out;
}

static void lm__route_path(lm__tctx_t *ctx, lm__route_t *r, char *p)
{
    for (size_t i = 0; i < r->num_paths; i++)
        if (strcmp(r->paths[i], p) == 0)
            return;
    if (r->num_paths == r->cap_paths) {
        size_t cap = r->cap_paths ? r->cap_paths * 2 : 4;
        char **np = lm_arena_alloc(ctx->a, cap * sizeof(char *));
        if (r->num_paths)
            memcpy(np, r->paths, r->num_paths * sizeof(char *));
        r->paths = np;
        r->cap_paths = cap;
    }
    r->paths[r->num_paths++] = p;
}

/* Kong paths of an Ingress path (KIC 3.x's traditional_compatible mapping);
 * false (reported) for an unknown pathType */
static bool lm__kong_paths(lm__tctx_t *ctx, lm__obj_t *ing, const char *where, const char *path,
                           const char *type, char *out[2], size_t *n)
{
    *n = 0;
    if (path == NULL || path[0] == '\0')
        path = "/";
    if (type == NULL || strcmp(type, "ImplementationSpecific") == 0) {
        if (strncmp(path, "/~", 2) == 0)
            out[(*n)++] = lm_arena_sprintf(ctx->a, "~%s", path + 2);
        else
            out[(*n)++] = lm_arena_strdup(ctx->a, path);
        return true;
    }
    if (strcmp(type, "Exact") == 0) {
        out[(*n)++] = lm__regex_exact(ctx->a, path, strlen(path));
        return true;
    }
    if (strcmp(type, "Prefix") == 0) {
        size_t len = strlen(path);
        while (len > 1 && path[len - 1] == '/')
            len--;
        if (len == 1 && path[0] == '/') {
            out[(*n)++] = lm_arena_strdup(ctx->a, "/");
            return true;
        }
        out[(*n)++] = lm_arena_sprintf(ctx->a, "%.*s/", (int)len, path);
        out[(*n)++] = lm__regex_exact(ctx->a, path, len);
        return true;
    }
    lm__report(ctx, ing, "%s.pathType: unknown path type \"%s\"", where, type);
    return false;
}

/* ---- Ingress ---------------------------------------------------------------- */

static lm__route_t *lm__route_for(lm__tctx_t *ctx, lm__obj_t *ing, lm__vec_t *routes, size_t rule,
                                  size_t path, lm__ksvc_t *k, const char *host, bool def)
{
    /* one route per (rule, backend); named after the rule and its first path */
    for (size_t i = 0; i < routes->n; i++) {
        lm__route_t *r = routes->v[i];
        if (r->svc == k && r->is_default == def && r->rule == rule)
            return r;
    }
    lm__route_t *r = lm_arena_calloc(ctx->a, sizeof(*r));
    r->ing = ing;
    r->svc = k;
    r->host = host;
    r->rule = rule;
    r->is_default = def;
    char rn[24], pn[24];
    r->name = def ? LM__JOIN(ctx->a, ing->ns, ".", ing->name, ".default")
                  : LM__JOIN(ctx->a, ing->ns, ".", ing->name, ".", lm__utoa(rn, rule), ".", lm__utoa(pn, path));
    lm__vpush(ctx->a, routes, r);
    return r;
}

static void lm__ingress_tls(lm__tctx_t *ctx, lm__obj_t *o);

void lm__ingress_build(lm__tctx_t *ctx, lm__obj_t *o)
{
    lm__ing_parse(ctx, o);
    lm__plugins_annotation(ctx, o);
    if (o->excluded)
        return;
    const cJSON *spec = lm__jget(o->j, "spec");
    lm__vec_t routes = { 0 };
    size_t ri = 0;
    const cJSON *rule;
    cJSON_ArrayForEach(rule, lm__jget(spec, "rules")) {
        const char *h = lm__jstr(rule, "host");
        const char *host = (h && h[0]) ? lm__lower(ctx->a, h) : NULL;
        size_t pi = 0;
        const cJSON *hp;
        cJSON_ArrayForEach(hp, lm__jpath(rule, "http", "paths")) {
            char where[96], rn[24], pn[24];
            LM__JOIN_BUF(where, "spec.rules[", lm__utoa(rn, ri), "].http.paths[", lm__utoa(pn, pi), "]");
            char *kp[2];
            size_t nk;
            if (lm__kong_paths(ctx, o, where, lm__jstr(hp, "path"), lm__jstr(hp, "pathType"), kp,
                               &nk)) {
                char bwhere[128];
                LM__JOIN_BUF(bwhere, where, ".backend");
                lm__ksvc_t *k = lm__backend(ctx, o, bwhere, lm__jget(hp, "backend"));
                if (k) {
                    lm__route_t *r = lm__route_for(ctx, o, &routes, ri, pi, k, host, false);
                    for (size_t i = 0; i < nk; i++)
                        lm__route_path(ctx, r, kp[i]);
                }
            }
            pi++;
        }
        ri++;
    }
    const cJSON *def = lm__jget(spec, "defaultBackend");
    if (def) {
        lm__ksvc_t *k = lm__backend(ctx, o, "spec.defaultBackend", def);
        if (k) {
            lm__route_t *r = lm__route_for(ctx, o, &routes, 0, 0, k, NULL, true);
            lm__route_path(ctx, r, lm_arena_strdup(ctx->a, "/"));
        }
    }
    for (size_t i = 0; i < routes.n; i++) {
        lm__route_t *r = routes.v[i];
        lm__vpush(ctx->a, &r->svc->routes, r);
        for (size_t j = 0; j < o->plugins.n; j++)
            lm__pent_add(ctx, o->plugins.v[j], LM__SCOPE_ROUTE, r, r->name);
    }
    lm__ingress_tls(ctx, o);
}

/* ---- TLS ---------------------------------------------------------------- */

static lm__cert_t *lm__cert_get(lm__tctx_t *ctx, lm__obj_t *ing, size_t ti, const char *sname)
{
    char key[600];
    snprintf(key, sizeof(key), "%s/%s", ing->ns, sname);
    lm__obj_t *sec = lm_map_get(&ctx->secrets, lm_str(key));
    if (sec == NULL) {
        lm__report(ctx, ing, "spec.tls[%zu].secretName: Secret \"%s\" not found", ti, sname);
        return NULL;
    }
    lm__cert_t *c = lm_map_get(&ctx->certs, lm_str(sec->key));
    if (c == NULL) {
        c = lm_arena_calloc(ctx->a, sizeof(*c));
        c->secret = sec;
        c->cert = lm__secret_value(ctx->a, sec->j, "tls.crt");
        c->key = lm__secret_value(ctx->a, sec->j, "tls.key");
        char seed[700];
        snprintf(seed, sizeof(seed), "certificate:%s", sec->key);
        lm_config_uuid(seed, c->id);
        lm_map_put(&ctx->certs, lm_str(sec->key), c);
        if (c->cert && c->key && c->cert[0] && c->key[0])
            lm__vpush(ctx->a, &ctx->cert_v, c);
    }
    if (c->cert == NULL || c->cert[0] == '\0' || c->key == NULL || c->key[0] == '\0') {
        lm__report(ctx, ing, "spec.tls[%zu].secretName: Secret \"%s\" has no %s", ti, sname,
                   (c->cert && c->cert[0]) ? "\"tls.key\"" : "\"tls.crt\"");
        return NULL;
    }
    return c;
}

static void lm__ingress_tls(lm__tctx_t *ctx, lm__obj_t *o)
{
    size_t ti = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, lm__jget(lm__jget(o->j, "spec"), "tls")) {
        const char *sname = lm__jstr(t, "secretName");
        if (sname && sname[0]) {
            lm__cert_t *c = lm__cert_get(ctx, o, ti, sname);
            if (c) {
                lm__claim_t *use = lm_arena_calloc(ctx->a, sizeof(*use));
                use->cert = c;
                use->ing = o;
                use->tls = ti;
                lm__vpush(ctx->a, &c->uses, use);
                size_t hi = 0;
                const cJSON *h;
                cJSON_ArrayForEach(h, lm__jget(t, "hosts")) {
                    if (cJSON_IsString(h) && h->valuestring[0]) {
                        lm__claim_t *cl = lm_arena_calloc(ctx->a, sizeof(*cl));
                        cl->host = lm__lower(ctx->a, h->valuestring);
                        cl->cert = c;
                        cl->ing = o;
                        cl->tls = ti;
                        cl->idx = hi;
                        lm__vpush(ctx->a, &ctx->claims, cl);
                    }
                    hi++;
                }
            }
        }
        ti++;
    }
}

static int lm__cmp_claim(const void *a, const void *b)
{
    const lm__claim_t *x = *(lm__claim_t *const *)a, *y = *(lm__claim_t *const *)b;
    int c = strcmp(x->host, y->host);
    if (c == 0)
        c = strcmp(x->cert->secret->key, y->cert->secret->key);
    if (c == 0)
        c = strcmp(x->ing->key, y->ing->key);
    if (c == 0)
        c = x->tls < y->tls ? -1 : x->tls > y->tls;
    if (c == 0)
        c = x->idx < y->idx ? -1 : x->idx > y->idx;
    return c;
}

void lm__tls_resolve(lm__tctx_t *ctx)
{
    if (ctx->claims.n > 1)
        qsort(ctx->claims.v, ctx->claims.n, sizeof(void *), lm__cmp_claim);
    lm__sni_t *cur = NULL;
    for (size_t i = 0; i < ctx->claims.n; i++) {
        lm__claim_t *cl = ctx->claims.v[i];
        if (cur == NULL || strcmp(cur->name, cl->host) != 0) {
            cur = lm_arena_calloc(ctx->a, sizeof(*cur));
            cur->name = (char *)cl->host;
            cur->cert = cl->cert;
            lm_map_put(&ctx->snis, lm_str(cur->name), cur);
            lm__vpush(ctx->a, &cl->cert->snis, cur);
        }
        if (cur->cert == cl->cert)
            lm__vpush(ctx->a, &cur->claims, cl);
        else
            lm__report(ctx, cl->ing, "spec.tls[%zu].hosts[%zu]: host \"%s\" is already served by "
                       "Secret \"%s\"", cl->tls, cl->idx, cl->host, cur->cert->secret->key);
    }
}

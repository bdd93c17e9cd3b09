/*
 * kube_config.c - where the API server is and how to authenticate to it:
 * a kubeconfig file (YAML, read with lm_config_parse) or the in-cluster
 * service account. See lm_kube.h.
 */
#include "lm_kube.h"
#include "lm_config.h"
#include "lm_jwt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#define LM__KUBE_FILE_MAX ((size_t)4 << 20) /* certificates, keys, tokens, kubeconfigs */

static int lm__fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int lm__fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return LM_ERROR;
}

/* The whole file, NUL-terminated; NULL with errno set. */
static char *lm__read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 >= cap) {
            if (cap >= LM__KUBE_FILE_MAX) {
                free(buf);
                buf = NULL;
                errno = EFBIG;
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) {
            if (ferror(f)) {
                free(buf);
                buf = NULL;
                errno = EIO;
            }
            break;
        }
    }
    fclose(f);
    if (buf) {
        buf[len] = '\0';
        if (len_out)
            *len_out = len;
    }
    return buf;
}

/* path as is when absolute (or no dir), else dir/path. */
static char *lm__resolve(const char *dir, const char *path)
{
    if (path[0] == '/' || !dir || !dir[0])
        return strdup(path);
    size_t dl = strlen(dir), pl = strlen(path);
    char *s = malloc(dl + pl + 2);
    if (s) {
        memcpy(s, dir, dl);
        s[dl] = '/';
        memcpy(s + dl + 1, path, pl + 1);
    }
    return s;
}

/* Strips leading and trailing white space in place. */
static char *lm__trim(char *s)
{
    size_t len = strlen(s), i = 0;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == '\t'))
        s[--len] = '\0';
    while (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')
        i++;
    if (i)
        memmove(s, s + i, len - i + 1);
    return s;
}

/* Standard base64 (white space ignored) into a NUL-terminated string; NULL
 * when malformed or out of memory. */
static char *lm__b64_decode(const char *in)
{
    size_t n = strlen(in);
    char *clean = malloc(n + 1);
    if (!clean)
        return NULL;
    size_t cl = 0;
    for (size_t i = 0; i < n; i++)
        if (in[i] != ' ' && in[i] != '\n' && in[i] != '\r' && in[i] != '\t')
            clean[cl++] = in[i];
    unsigned char *out = malloc(lm_jwt_b64_max(cl) + 1);
    size_t ol = 0;
    if (out && !lm_jwt_b64_decode((lm_str_t){ clean, cl }, false, out, &ol)) {
        free(out);
        out = NULL;
    }
    free(clean);
    if (out)
        out[ol] = '\0';
    return (char *)out;
}

/* ---- kubeconfig -------------------------------------------------------------- */

typedef struct {
    const char *path; /* the kubeconfig, for messages */
    char *dir;        /* its directory: relative paths start there */
    char *err;
    size_t errlen;
} lm__kc_t;

/* A string field: *out = the value, NULL when absent. LM_ERROR when present
 * but not a string. */
static int lm__str_field(lm__kc_t *kc, const cJSON *obj, const char *field, const char *what,
                         const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, field);
    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return LM_OK;
    if (!cJSON_IsString(v))
        return lm__fail(kc->err, kc->errlen, "kubeconfig %s: %s: %s: expected a string", kc->path, what, field);
    *out = v->valuestring;
    return LM_OK;
}

/* The `inner` object of the entry named `name` in the list `list`
 * (clusters[].cluster, users[].user, contexts[].context); NULL if none. */
static const cJSON *lm__named(const cJSON *root, const char *list, const char *inner, const char *name)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, list), *it;
    if (!cJSON_IsArray(arr))
        return NULL;
    cJSON_ArrayForEach(it, arr)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(it, "name");
        if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0) {
            const cJSON *o = cJSON_GetObjectItemCaseSensitive(it, inner);
            return cJSON_IsObject(o) ? o : NULL;
        }
    }
    return NULL;
}

static bool lm__named_exists(const cJSON *root, const char *list, const char *name)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, list), *it;
    cJSON_ArrayForEach(it, arr)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(it, "name");
        if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0)
            return true;
    }
    return false;
}

/*
 * PEM material given inline (FIELD-data, base64) or as a file (FIELD, relative
 * to the kubeconfig). Inline wins, as in client-go. *out stays NULL when
 * neither is set.
 */
static int lm__pem(lm__kc_t *kc, const cJSON *obj, const char *field, const char *what, char **out)
{
    char data_field[64];
    snprintf(data_field, sizeof(data_field), "%s-data", field);
    const char *data, *file;
    if (lm__str_field(kc, obj, data_field, what, &data) != LM_OK ||
        lm__str_field(kc, obj, field, what, &file) != LM_OK)
        return LM_ERROR;
    if (data && data[0]) {
        *out = lm__b64_decode(data);
        if (!*out)
            return lm__fail(kc->err, kc->errlen, "kubeconfig %s: %s: %s: not valid base64", kc->path, what,
                            data_field);
        return LM_OK;
    }
    if (file && file[0]) {
        char *p = lm__resolve(kc->dir, file);
        if (!p)
            return lm__fail(kc->err, kc->errlen, "out of memory");
        *out = lm__read_file(p, NULL);
        int e = errno;
        if (!*out) {
            lm__fail(kc->err, kc->errlen, "kubeconfig %s: %s: %s %s: %s", kc->path, what, field, p, strerror(e));
            free(p);
            return LM_ERROR;
        }
        free(p);
    }
    return LM_OK;
}

static int lm__load_kubeconfig(const char *path, const char *context, lm_kube_config_t *out, char *err,
                               size_t errlen)
{
    lm__kc_t kc = { .path = path, .err = err, .errlen = errlen };
    size_t len = 0;
    char *data = lm__read_file(path, &len);
    if (!data)
        return lm__fail(err, errlen, "kubeconfig %s: %s", path, strerror(errno));
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    cJSON *root = len ? lm_config_parse(data, len, NULL, &errs) : NULL;
    free(data);
    if (!root) {
        char *msg = lm_config_errors_format(&errs);
        if (msg) {
            size_t ml = strlen(msg);
            while (ml && msg[ml - 1] == '\n')
                msg[--ml] = '\0';
        }
        lm__fail(err, errlen, "kubeconfig %s: %s", path, msg && msg[0] ? msg : "empty file");
        free(msg);
        lm_config_errors_free(&errs);
        return LM_ERROR;
    }
    lm_config_errors_free(&errs);

    int rc = LM_ERROR;
    const char *slash = strrchr(path, '/');
    kc.dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
    if (slash == path) {
        free(kc.dir);
        kc.dir = strdup("/");
    }
    if (!kc.dir) {
        lm__fail(err, errlen, "out of memory");
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        lm__fail(err, errlen, "kubeconfig %s: not a mapping", path);
        goto out;
    }

    char what[300];
    const char *ctx_name = context;
    if (!ctx_name || !ctx_name[0]) {
        if (lm__str_field(&kc, root, "current-context", "top level", &ctx_name) != LM_OK)
            goto out;
        if (!ctx_name || !ctx_name[0]) {
            lm__fail(err, errlen, "kubeconfig %s: no current-context set and no context given", path);
            goto out;
        }
    }
    const cJSON *ctx = lm__named(root, "contexts", "context", ctx_name);
    if (!ctx) {
        lm__fail(err, errlen, "kubeconfig %s: context \"%s\" not found", path, ctx_name);
        goto out;
    }
    snprintf(what, sizeof(what), "context \"%s\"", ctx_name);
    const char *cluster_name, *user_name, *ns;
    if (lm__str_field(&kc, ctx, "cluster", what, &cluster_name) != LM_OK ||
        lm__str_field(&kc, ctx, "user", what, &user_name) != LM_OK ||
        lm__str_field(&kc, ctx, "namespace", what, &ns) != LM_OK)
        goto out;
    if (!cluster_name || !cluster_name[0]) {
        lm__fail(err, errlen, "kubeconfig %s: context \"%s\" names no cluster", path, ctx_name);
        goto out;
    }

    /* cluster */
    const cJSON *cluster = lm__named(root, "clusters", "cluster", cluster_name);
    if (!cluster) {
        lm__fail(err, errlen, "kubeconfig %s: context \"%s\": cluster \"%s\" not found", path, ctx_name,
                 cluster_name);
        goto out;
    }
    snprintf(what, sizeof(what), "cluster \"%s\"", cluster_name);
    const char *server;
    if (lm__str_field(&kc, cluster, "server", what, &server) != LM_OK)
        goto out;
    if (!server || !server[0]) {
        lm__fail(err, errlen, "kubeconfig %s: cluster \"%s\" has no server", path, cluster_name);
        goto out;
    }
    if (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0) {
        lm__fail(err, errlen, "kubeconfig %s: cluster \"%s\": server \"%s\" is not an http(s) URL", path,
                 cluster_name, server);
        goto out;
    }
    out->server = strdup(server);
    if (!out->server) {
        lm__fail(err, errlen, "out of memory");
        goto out;
    }
    for (size_t sl = strlen(out->server); sl > 8 && out->server[sl - 1] == '/';)
        out->server[--sl] = '\0';
    if (lm__pem(&kc, cluster, "certificate-authority", what, &out->ca_pem) != LM_OK)
        goto out;
    const cJSON *insecure = cJSON_GetObjectItemCaseSensitive(cluster, "insecure-skip-tls-verify");
    out->insecure = cJSON_IsTrue(insecure) ||
                    (cJSON_IsString(insecure) && strcmp(insecure->valuestring, "true") == 0);

    /* user (none: no credentials, e.g. a local proxy) */
    if (user_name && user_name[0]) {
        const cJSON *user = lm__named(root, "users", "user", user_name);
        if (!user && !lm__named_exists(root, "users", user_name)) {
            lm__fail(err, errlen, "kubeconfig %s: context \"%s\": user \"%s\" not found", path, ctx_name,
                     user_name);
            goto out;
        }
        if (user) {
            snprintf(what, sizeof(what), "user \"%s\"", user_name);
            static const char *const unsupported[][2] = {
                { "exec", "exec credential plugins are not supported" },
                { "auth-provider", "auth-provider plugins are not supported" },
                { "username", "basic auth (username/password) is not supported" },
            };
            for (size_t i = 0; i < LM_ARRAY_SIZE(unsupported); i++)
                if (cJSON_GetObjectItemCaseSensitive(user, unsupported[i][0])) {
                    lm__fail(err, errlen, "kubeconfig %s: %s: %s", path, what, unsupported[i][1]);
                    goto out;
                }
            if (lm__pem(&kc, user, "client-certificate", what, &out->cert_pem) != LM_OK ||
                lm__pem(&kc, user, "client-key", what, &out->key_pem) != LM_OK)
                goto out;
            if (!out->cert_pem != !out->key_pem) {
                lm__fail(err, errlen, "kubeconfig %s: %s: %s without %s", path, what,
                         out->cert_pem ? "client-certificate" : "client-key",
                         out->cert_pem ? "client-key" : "client-certificate");
                goto out;
            }
            const char *token, *token_file;
            if (lm__str_field(&kc, user, "token", what, &token) != LM_OK ||
                lm__str_field(&kc, user, "tokenFile", what, &token_file) != LM_OK)
                goto out;
            if (token_file && token_file[0]) {
                /* the file wins over an inline token, as in client-go; read now
                 * so a missing file is a start-up error, re-read when it changes */
                out->token_file = lm__resolve(kc.dir, token_file);
                if (!out->token_file) {
                    lm__fail(err, errlen, "out of memory");
                    goto out;
                }
                out->token = lm__read_file(out->token_file, NULL);
                if (!out->token) {
                    lm__fail(err, errlen, "kubeconfig %s: %s: tokenFile %s: %s", path, what, out->token_file,
                             strerror(errno));
                    goto out;
                }
                lm__trim(out->token);
            } else if (token && token[0]) {
                out->token = strdup(token);
                if (!out->token) {
                    lm__fail(err, errlen, "out of memory");
                    goto out;
                }
            }
        }
    }
    out->namespace = strdup(ns && ns[0] ? ns : "default");
    out->source = strdup(path);
    if (!out->namespace || !out->source) {
        lm__fail(err, errlen, "out of memory");
        goto out;
    }
    rc = LM_OK;
out:
    free(kc.dir);
    cJSON_Delete(root);
    return rc;
}

/* ---- in-cluster ---------------------------------------------------------------- */

int lm_kube_config_in_cluster(lm_kube_config_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    const char *dir = getenv("LIMEN_KUBE_SA_DIR");
    if (!dir || !dir[0])
        dir = LM_KUBE_SA_DIR;
    if (!host || !host[0])
        return lm__fail(err, errlen, "in-cluster: KUBERNETES_SERVICE_HOST is not set");
    if (!port || !port[0])
        port = "443";
    size_t sl = strlen(host) + strlen(port) + 16;
    out->server = malloc(sl);
    char *ca = lm__resolve(dir, "ca.crt"), *nsf = lm__resolve(dir, "namespace");
    out->token_file = lm__resolve(dir, "token");
    out->source = strdup("in-cluster");
    int rc = LM_ERROR;
    if (!out->server || !ca || !nsf || !out->token_file || !out->source) {
        lm__fail(err, errlen, "out of memory");
        goto out;
    }
    /* an IPv6 address needs brackets in a URL */
    snprintf(out->server, sl, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host, port);
    out->token = lm__read_file(out->token_file, NULL);
    if (!out->token) {
        lm__fail(err, errlen, "in-cluster: service-account token %s: %s", out->token_file, strerror(errno));
        goto out;
    }
    lm__trim(out->token);
    out->ca_pem = lm__read_file(ca, NULL);
    if (!out->ca_pem) {
        lm__fail(err, errlen, "in-cluster: CA %s: %s", ca, strerror(errno));
        goto out;
    }
    out->namespace = lm__read_file(nsf, NULL);
    if (out->namespace)
        lm__trim(out->namespace);
    if (!out->namespace || !out->namespace[0]) {
        free(out->namespace);
        out->namespace = strdup("default");
        if (!out->namespace) {
            lm__fail(err, errlen, "out of memory");
            goto out;
        }
    }
    rc = LM_OK;
out:
    free(ca);
    free(nsf);
    if (rc != LM_OK)
        lm_kube_config_free(out);
    return rc;
}

/* ---- entry point ------------------------------------------------------------------ */

int lm_kube_config_load(const char *path, const char *context, lm_kube_config_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (err && errlen)
        err[0] = '\0';
    if (path && path[0]) {
        int rc = lm__load_kubeconfig(path, context, out, err, errlen);
        if (rc != LM_OK)
            lm_kube_config_free(out);
        return rc;
    }
    /* $KUBECONFIG: a colon-separated list; the first file that exists is used
     * (kubectl merges them; we do not) */
    const char *env = getenv("KUBECONFIG");
    if (env && env[0]) {
        char *list = strdup(env), *save = NULL, *first = NULL;
        if (!list)
            return lm__fail(err, errlen, "out of memory");
        for (char *p = strtok_r(list, ":", &save); p; p = strtok_r(NULL, ":", &save)) {
            struct stat st;
            if (!first)
                first = p;
            if (stat(p, &st) == 0) {
                first = p;
                break;
            }
        }
        int rc = first ? lm__load_kubeconfig(first, context, out, err, errlen)
                       : lm__fail(err, errlen, "KUBECONFIG names no file");
        free(list);
        if (rc != LM_OK)
            lm_kube_config_free(out);
        return rc;
    }
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    if (host && host[0])
        return lm_kube_config_in_cluster(out, err, errlen);
    const char *home = getenv("HOME");
    if (home && home[0]) {
        char *p = lm__resolve(home, ".kube/config");
        struct stat st;
        if (p && stat(p, &st) == 0) {
            int rc = lm__load_kubeconfig(p, context, out, err, errlen);
            free(p);
            if (rc != LM_OK)
                lm_kube_config_free(out);
            return rc;
        }
        free(p);
    }
    return lm__fail(err, errlen,
                    "no Kubernetes config: no --kubeconfig, no $KUBECONFIG, not in a cluster "
                    "(KUBERNETES_SERVICE_HOST unset) and no ~/.kube/config");
}

void lm_kube_config_free(lm_kube_config_t *cfg)
{
    if (!cfg)
        return;
    free(cfg->server);
    free(cfg->ca_pem);
    free(cfg->cert_pem);
    /* do not leave a private key or a bearer token lying around in freed memory */
    if (cfg->key_pem)
        explicit_bzero(cfg->key_pem, strlen(cfg->key_pem));
    free(cfg->key_pem);
    if (cfg->token)
        explicit_bzero(cfg->token, strlen(cfg->token));
    free(cfg->token);
    free(cfg->token_file);
    free(cfg->namespace);
    free(cfg->source);
    memset(cfg, 0, sizeof(*cfg));
}

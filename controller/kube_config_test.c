/*
 * kube_config_test.c - lm_kube_config_load / lm_kube_config_in_cluster with
 * the fixtures in controller/testdata/kube/ (run from the repository root, as
 * tools/run-suite.sh does).
 */
#include "lm_kube.h"
#include "lm_test.h"

#include <stdlib.h>

#define TD "controller/testdata/kube/"

static const char *const CA = "-----BEGIN CERTIFICATE-----\nTEST-CA\n-----END CERTIFICATE-----\n";
static const char *const CERT = "-----BEGIN CERTIFICATE-----\nTEST-CLIENT\n-----END CERTIFICATE-----\n";
static const char *const KEY = "-----BEGIN EC PRIVATE KEY-----\nTEST-KEY\n-----END EC PRIVATE KEY-----\n";

/* Loads path/context expecting success. */
static bool load_ok(const char *path, const char *context, lm_kube_config_t *cfg)
{
    char err[512];
    if (lm_kube_config_load(path, context, cfg, err, sizeof(err)) != LM_OK) {
        LM_FAILF("%s [%s]: %s", path, context ? context : "current", err);
        return false;
    }
    return true;
}

/* Loads path/context expecting an error that contains `want`. */
static void load_err(const char *path, const char *context, const char *want)
{
    lm_kube_config_t cfg;
    char err[512] = "";
    int rc = lm_kube_config_load(path, context, &cfg, err, sizeof(err));
    if (rc == LM_OK) {
        LM_FAILF("%s [%s]: loaded, wanted an error with \"%s\"", path, context ? context : "current", want);
        lm_kube_config_free(&cfg);
        return;
    }
    if (!strstr(err, want))
        LM_FAILF("%s [%s]: error \"%s\" lacks \"%s\"", path, context ? context : "current", err, want);
    /* a failed load leaves nothing to free */
    LM_CHECK(cfg.server == NULL && cfg.token == NULL && cfg.ca_pem == NULL && cfg.source == NULL);
}

LM_TEST(inline_data_and_current_context)
{
    lm_kube_config_t c;
    if (!load_ok(TD "inline.kubeconfig", NULL, &c))
        return;
    LM_CHECK_STR(c.server, "https://10.1.2.3:6443"); /* trailing slash gone */
    LM_CHECK_STR(c.ca_pem, CA);
    LM_CHECK_STR(c.cert_pem, CERT);
    LM_CHECK_STR(c.key_pem, KEY);
    LM_CHECK(c.token == NULL && c.token_file == NULL);
    LM_CHECK_STR(c.namespace, "shop");
    LM_CHECK(!c.insecure);
    LM_CHECK_STR(c.source, TD "inline.kubeconfig");
    lm_kube_config_free(&c);
    LM_CHECK(c.server == NULL && c.key_pem == NULL);
}

LM_TEST(explicit_context_token_and_default_namespace)
{
    lm_kube_config_t c;
    if (!load_ok(TD "inline.kubeconfig", "prod-robot", &c))
        return;
    LM_CHECK_STR(c.server, "https://10.1.2.3:6443");
    LM_CHECK_STR(c.ca_pem, CA);
    LM_CHECK(c.cert_pem == NULL && c.key_pem == NULL);
    LM_CHECK_STR(c.token, "inline-token");
    LM_CHECK(c.token_file == NULL);
    LM_CHECK_STR(c.namespace, "default");
    lm_kube_config_free(&c);
}

LM_TEST(files_relative_to_the_kubeconfig)
{
    lm_kube_config_t c;
    if (!load_ok(TD "files.kubeconfig", NULL, &c))
        return;
    LM_CHECK_STR(c.server, "https://dev.example:8443");
    LM_CHECK_STR(c.ca_pem, CA);
    LM_CHECK_STR(c.cert_pem, CERT);
    LM_CHECK_STR(c.key_pem, KEY);
    LM_CHECK(c.token == NULL);
    LM_CHECK_STR(c.namespace, "default");
    lm_kube_config_free(&c);

    /* an absolute path works too, and so does a kubeconfig in "/" style paths */
    char *abs = realpath(TD "files.kubeconfig", NULL);
    LM_CHECK(abs != NULL);
    if (abs && load_ok(abs, "dev", &c)) {
        LM_CHECK_STR(c.cert_pem, CERT);
        lm_kube_config_free(&c);
    }
    free(abs);
}

LM_TEST(token_file_insecure_and_namespace)
{
    lm_kube_config_t c;
    if (!load_ok(TD "files.kubeconfig", "lab", &c))
        return;
    LM_CHECK_STR(c.server, "https://lab.example");
    LM_CHECK(c.insecure);
    LM_CHECK(c.ca_pem == NULL);
    LM_CHECK_STR(c.token_file, TD "token"); /* relative to the kubeconfig's directory */
    LM_CHECK_STR(c.token, "token-from-file"); /* the file wins over token:, trimmed */
    LM_CHECK_STR(c.namespace, "lab-ns");
    lm_kube_config_free(&c);
}

LM_TEST(no_user_means_no_credentials)
{
    lm_kube_config_t c;
    if (load_ok(TD "files.kubeconfig", "anonymous", &c)) {
        LM_CHECK(c.token == NULL && c.cert_pem == NULL && c.key_pem == NULL);
        lm_kube_config_free(&c);
    }
    if (load_ok(TD "files.kubeconfig", "nobody", &c)) {
        LM_CHECK(c.token == NULL && c.cert_pem == NULL);
        lm_kube_config_free(&c);
    }
}

LM_TEST(errors_name_what_is_wrong)
{
    load_err(TD "bad.kubeconfig", "nope", "kubeconfig " TD "bad.kubeconfig: context \"nope\" not found");
    load_err(TD "bad.kubeconfig", NULL, "no current-context set and no context given");
    load_err(TD "nocurrent.kubeconfig", NULL, "no current-context set and no context given");
    load_err(TD "bad.kubeconfig", "nocluster-entry", "context \"nocluster-entry\": cluster \"ghost\" not found");
    load_err(TD "bad.kubeconfig", "nouser-entry", "context \"nouser-entry\": user \"ghost\" not found");
    load_err(TD "bad.kubeconfig", "noserver", "cluster \"noserver\" has no server");
    load_err(TD "bad.kubeconfig", "badca", "cluster \"badca\": certificate-authority-data: not valid base64");
    load_err(TD "bad.kubeconfig", "missingca",
             "cluster \"missingca\": certificate-authority " TD "certs/missing.crt: No such file or directory");
    load_err(TD "bad.kubeconfig", "certonly", "user \"certonly\": client-certificate without client-key");
    load_err(TD "bad.kubeconfig", "exec", "user \"exec\": exec credential plugins are not supported");
    load_err(TD "bad.kubeconfig", "missingtoken", "user \"missingtoken\": tokenFile " TD "no-such-token");
    load_err(TD "bad.kubeconfig", "ftp", "server \"ftp://ok.example\" is not an http(s) URL");
    load_err(TD "bad.kubeconfig", "empty", "context \"empty\" names no cluster");
    load_err(TD "does-not-exist", NULL, "kubeconfig " TD "does-not-exist: No such file or directory");
    load_err(TD "broken.kubeconfig", NULL, "kubeconfig " TD "broken.kubeconfig: ");
}

LM_TEST(kubeconfig_env_and_in_cluster)
{
    char err[512];
    lm_kube_config_t c;
    /* $KUBECONFIG: the first file of the list that exists */
    setenv("KUBECONFIG", TD "nothing-here:" TD "inline.kubeconfig", 1);
    if (load_ok(NULL, "prod-robot", &c)) {
        LM_CHECK_STR(c.token, "inline-token");
        lm_kube_config_free(&c);
    }
    unsetenv("KUBECONFIG");

    /* in-cluster: the service-account directory from LIMEN_KUBE_SA_DIR */
    setenv("HOME", "/nonexistent", 1);
    unsetenv("KUBERNETES_SERVICE_HOST");
    LM_CHECK(lm_kube_config_load(NULL, NULL, &c, err, sizeof(err)) == LM_ERROR);
    LM_CHECK(strstr(err, "no Kubernetes config") != NULL);
    LM_CHECK(lm_kube_config_in_cluster(&c, err, sizeof(err)) == LM_ERROR);
    LM_CHECK(strstr(err, "KUBERNETES_SERVICE_HOST is not set") != NULL);

    setenv("LIMEN_KUBE_SA_DIR", TD "sa", 1);
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    if (load_ok(NULL, NULL, &c)) {
        LM_CHECK_STR(c.server, "https://10.96.0.1:443");
        LM_CHECK_STR(c.token, "sa-token");
        LM_CHECK_STR(c.token_file, TD "sa/token");
        LM_CHECK_STR(c.ca_pem, "-----BEGIN CERTIFICATE-----\nSA-CA\n-----END CERTIFICATE-----\n");
        LM_CHECK_STR(c.namespace, "limen-system");
        LM_CHECK_STR(c.source, "in-cluster");
        LM_CHECK(c.cert_pem == NULL && !c.insecure);
        lm_kube_config_free(&c);
    }
    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    unsetenv("KUBERNETES_SERVICE_PORT");
    if (lm_kube_config_in_cluster(&c, err, sizeof(err)) == LM_OK) {
        LM_CHECK_STR(c.server, "https://[fd00::1]:443");
        lm_kube_config_free(&c);
    } else {
        LM_FAILF("in-cluster with IPv6: %s", err);
    }
    setenv("LIMEN_KUBE_SA_DIR", TD "certs", 1); /* no token there */
    LM_CHECK(lm_kube_config_in_cluster(&c, err, sizeof(err)) == LM_ERROR);
    LM_CHECK(strstr(err, "in-cluster: service-account token " TD "certs/token: No such file") != NULL);
    LM_CHECK(c.server == NULL);
    unsetenv("LIMEN_KUBE_SA_DIR");
    unsetenv("KUBERNETES_SERVICE_HOST");
}

int main(void)
{
    LM_RUN(inline_data_and_current_context);
    LM_RUN(explicit_context_token_and_default_namespace);
    LM_RUN(files_relative_to_the_kubeconfig);
    LM_RUN(token_file_insecure_and_namespace);
    LM_RUN(no_user_means_no_credentials);
    LM_RUN(errors_name_what_is_wrong);
    LM_RUN(kubeconfig_env_and_in_cluster);
    return lm_test_summary("kube_config");
}

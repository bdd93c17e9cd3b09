/* cors_test.c - unit tests of the cors plugin's origin normalisation and
 * config compilation (includes the plugin's source). */
#include "cors.c"

#include "lm_plugin_rt.h"
#include "lm_test.h"

#include <stdlib.h>

static void lm__norm_is(lm_arena_t *a, const char *in, const char *domain, const char *host)
{
    lm__norm_t n = lm__normalize(a, lm_str(in));
    if (n.domain.len != strlen(domain) || memcmp(n.domain.ptr, domain, n.domain.len) != 0)
        LM_FAILF("normalize(%s).domain = %.*s, want %s", in, LM_STR_FMT(n.domain), domain);
    if (n.host.len != strlen(host) || memcmp(n.host.ptr, host, n.host.len) != 0)
        LM_FAILF("normalize(%s).host = %.*s, want %s", in, LM_STR_FMT(n.host), host);
}

LM_TEST(test_normalize)
{
    lm_arena_t *a = lm_arena_create(0);
    lm__norm_is(a, "http://example.com", "http://example.com", "example.com");
    lm__norm_is(a, "http://example.com:80", "http://example.com", "example.com");
    lm__norm_is(a, "https://example.com:443", "https://example.com", "example.com");
    lm__norm_is(a, "http://example.com:443", "http://example.com:443", "example.com");
    lm__norm_is(a, "https://example.com:8443/path?q#f", "https://example.com:8443", "example.com");
    lm__norm_is(a, "http://user:pw@example.com:81", "http://example.com:81", "example.com");
    lm__norm_is(a, "http://[::1]:8080", "http://::1:8080", "::1");
    lm__norm_is(a, "example.com", "example.com", "example.com");
    lm__norm_is(a, "null", "null", "null");
    lm__norm_is(a, "", "", "");
    lm__norm_is(a, "http://", "http://", "http://");
    lm_arena_destroy(a);
}

static lm__cors_conf_t *lm__conf(lm_arena_t *a, const char *json, char **errs_out)
{
    return lm_plugin_configure_json(&lm_plugin_cors, a, json, errs_out);
}

LM_TEST(test_config)
{
    lm_arena_t *a = lm_arena_create(0);
    lm__cors_conf_t *c = lm__conf(a, "{}", NULL);
    LM_CHECK(c && c->allow_all && !c->credentials && c->allow_origin_absent && !c->preflight_continue);
    if (c) {
        LM_CHECK_STR(c->methods, "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT");
        LM_CHECK(c->headers == NULL && c->exposed == NULL && c->max_age == NULL);
    }
    c = lm__conf(a, "{\"origins\":[\"http://a.test\"],\"methods\":[\"GET\",\"POST\"],\"headers\":[\"X-A\",\"X-B\"],"
                    "\"exposed_headers\":[\"X-E\"],\"max_age\":3600}", NULL);
    LM_CHECK(c && !c->allow_all && c->single && strcmp(c->single, "http://a.test") == 0);
    if (c) {
        LM_CHECK_STR(c->methods, "GET,POST");
        LM_CHECK_STR(c->headers, "X-A,X-B");
        LM_CHECK_STR(c->exposed, "X-E");
        LM_CHECK_STR(c->max_age, "3600");
    }
    c = lm__conf(a, "{\"origins\":[\"http://a.test:80\",\"^https?://.*\\\\.b\\\\.test$\",\"(.*)\\\\.c\\\\.test\",\"*\"]}",
                 NULL);
    LM_CHECK(c && c->has_star && c->n == 3);
    if (c && c->n == 3) {
        LM_CHECK(c->origins[0].re == NULL);
        LM_CHECK_SLICE(c->origins[0].domain, "http://a.test");
        LM_CHECK(c->origins[1].re != NULL && !c->origins[1].by_host);
        LM_CHECK(c->origins[2].re != NULL && c->origins[2].by_host);
    }
    char *e = NULL;
    LM_CHECK(lm__conf(a, "{\"origins\":[\"(bad\"]}", &e) == NULL);
    LM_CHECK(e && strstr(e, "plugins[0].config.origins[0]: '(bad' is not a valid regex"));
    free(e);
    LM_CHECK(lm__conf(a, "{\"methods\":[\"GET\",\"FETCH\"]}", &e) == NULL);
    LM_CHECK(e && strstr(e, "plugins[0].config.methods[1]: expected one of: GET, HEAD, PUT, PATCH, POST, DELETE, "
                            "OPTIONS, TRACE, CONNECT"));
    free(e);
    LM_CHECK(lm__conf(a, "{\"credentials\":\"yes\"}", &e) == NULL);
    LM_CHECK(e && strstr(e, "plugins[0].config.credentials: expected a boolean"));
    free(e);
    lm_arena_destroy(a);
}

int main(void)
{
    LM_RUN(test_normalize);
    LM_RUN(test_config);
    return lm_test_summary("cors");
}

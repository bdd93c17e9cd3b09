/* ip_restriction_test.c - unit tests of the ip-restriction plugin's compiled
 * address lists (includes the plugin's source to reach its internals). */
#include "ip_restriction.c"

#include "lm_plugin_rt.h"
#include "lm_test.h"

#include <stdlib.h>

/* runs the schema and configure on a JSON config; NULL with *errs_out (caller frees) on error */
static lm__iprestr_conf_t *lm__conf(lm_arena_t *a, const char *json, char **errs_out)
{
    return lm_plugin_configure_json(&lm_plugin_ip_restriction, a, json, errs_out);
}

static lm__addr_t lm__addr(const char *ip)
{
    lm__addr_t a = { 0 };
    unsigned char b[16];
    if (inet_pton(AF_INET, ip, b) == 1) {
        a.a4 = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    } else if (inet_pton(AF_INET6, ip, b) == 1) {
        a.v6 = true;
        for (int i = 0; i < 16; i++)
            a.a6 = (a.a6 << 8) | b[i];
        static const unsigned char pre[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        if (memcmp(b, pre, 12) == 0) {
            a.mapped = true;
            a.a4 = (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15];
        }
    }
    return a;
}

static bool lm__in(const lm__iplist_t *l, const char *ip)
{
    lm__addr_t a = lm__addr(ip);
    return lm__matches(l, &a);
}

LM_TEST(test_ranges_v4)
{
    lm_arena_t *a = lm_arena_create(0);
    lm__iprestr_conf_t *c = lm__conf(a, "{\"deny\":[\"10.0.0.0/8\",\"10.1.0.0/16\",\"192.168.1.7\","
                                        "\"192.168.1.8/31\",\"0.0.0.0/32\",\"255.255.255.255\"]}", NULL);
    LM_CHECK(c != NULL);
    if (c) {
        LM_CHECK_EQ_INT(c->deny.n4, 4); /* 10/8 swallowed 10.1/16; .7 and .8/31 merged */
        LM_CHECK(c->allow.empty);
        LM_CHECK(lm__in(&c->deny, "10.0.0.0"));
        LM_CHECK(lm__in(&c->deny, "10.255.255.255"));
        LM_CHECK(!lm__in(&c->deny, "11.0.0.0"));
        LM_CHECK(!lm__in(&c->deny, "9.255.255.255"));
        LM_CHECK(!lm__in(&c->deny, "192.168.1.6"));
        LM_CHECK(lm__in(&c->deny, "192.168.1.7"));
        LM_CHECK(lm__in(&c->deny, "192.168.1.9"));
        LM_CHECK(!lm__in(&c->deny, "192.168.1.10"));
        LM_CHECK(lm__in(&c->deny, "0.0.0.0"));
        LM_CHECK(lm__in(&c->deny, "255.255.255.255"));
        LM_CHECK(lm__in(&c->deny, "::ffff:10.2.3.4")); /* IPv4-mapped */
        LM_CHECK(!lm__in(&c->deny, "::1"));
        LM_CHECK_EQ_INT(c->status, 403);
        LM_CHECK(c->message == NULL);
    }
    lm_arena_destroy(a);
}

LM_TEST(test_ranges_v6_and_all)
{
    lm_arena_t *a = lm_arena_create(0);
    lm__iprestr_conf_t *c = lm__conf(a, "{\"allow\":[\"2001:db8::/32\",\"::1\",\"0.0.0.0/0\"],"
                                        "\"status\":401,\"message\":\"go away\"}", NULL);
    LM_CHECK(c != NULL);
    if (c) {
        LM_CHECK(lm__in(&c->allow, "2001:db8::1"));
        LM_CHECK(lm__in(&c->allow, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
        LM_CHECK(!lm__in(&c->allow, "2001:db9::"));
        LM_CHECK(lm__in(&c->allow, "::1"));
        LM_CHECK(!lm__in(&c->allow, "::2"));
        LM_CHECK(lm__in(&c->allow, "1.2.3.4"));
        LM_CHECK(lm__in(&c->allow, "255.255.255.255"));
        LM_CHECK_EQ_INT(c->status, 401);
        LM_CHECK_STR(c->message, "go away");
    }
    c = lm__conf(a, "{\"deny\":[\"::/0\"]}", NULL);
    LM_CHECK(c != NULL);
    if (c) {
        LM_CHECK(lm__in(&c->deny, "::"));
        LM_CHECK(lm__in(&c->deny, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        LM_CHECK(!lm__in(&c->deny, "1.2.3.4"));
    }
    lm_arena_destroy(a);
}

LM_TEST(test_config_errors)
{
    lm_arena_t *a = lm_arena_create(0);
    char *e = NULL;
    LM_CHECK(lm__conf(a, "{}", &e) == NULL);
    LM_CHECK(e && strstr(e, "plugins[0].config: at least one of these fields must be non-empty: "
                            "'config.allow', 'config.deny'"));
    free(e);
    LM_CHECK(lm__conf(a, "{\"allow\":[],\"deny\":[]}", &e) == NULL);
    LM_CHECK(e && strstr(e, "at least one of these fields must be non-empty"));
    free(e);
    LM_CHECK(lm__conf(a, "{\"allow\":[\"127.0.0.1\",\"hello\",\"0.0.0.0/33\",\"::1/129\"]}", &e) == NULL);
    LM_CHECK(e && strstr(e, "plugins[0].config.allow[1]: invalid ip or cidr range: 'hello'"));
    LM_CHECK(e && strstr(e, "plugins[0].config.allow[2]: invalid ip or cidr range: '0.0.0.0/33'"));
    LM_CHECK(e && strstr(e, "plugins[0].config.allow[3]: invalid ip or cidr range: '::1/129'"));
    free(e);
    LM_CHECK(lm__conf(a, "{\"deny\":12}", &e) == NULL);
    LM_CHECK(e && strstr(e, "plugins[0].config.deny: expected an array"));
    free(e);
    lm_arena_destroy(a);
}

int main(void)
{
    LM_RUN(test_ranges_v4);
    LM_RUN(test_ranges_v6_and_all);
    LM_RUN(test_config_errors);
    return lm_test_summary("ip_restriction");
}

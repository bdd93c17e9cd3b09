/* plugin_test.c - the plugin runtime: Kong's precedence between instances of
 * one plugin on different scopes, enabled/disabled, chains per route, and
 * config errors with their paths. */
#include "lm_plugin_rt.h"
#include "lm_test.h"

static lm_config_t *lm__load(const char *yaml, lm_config_errors_t *errs)
{
    lm_config_opts_t o = { 0 };
    return lm_config_load(yaml, strlen(yaml), &o, errs);
}

/* request-termination on every scope, told apart by status_code */
static const char lm__doc[] =
    "_format_version: \"3.0\"\n"
    "services:\n"
    "- name: s1\n"
    "  url: http://127.0.0.1:1\n"
    "  routes: [{name: r1, paths: [/r1]}, {name: r2, paths: [/r2]}]\n"
    "- name: s2\n"
    "  url: http://127.0.0.1:2\n"
    "  routes: [{name: r3, paths: [/r3]}]\n"
    "consumers: [{username: alice}, {username: bob}, {username: carol}]\n"
    "plugins:\n"
    "- {name: request-termination, config: {status_code: 200}}\n"                                 /* global */
    "- {name: request-termination, service: s1, config: {status_code: 201}}\n"                     /* service */
    "- {name: request-termination, route: r2, config: {status_code: 202}}\n"                       /* route */
    "- {name: request-termination, route: r1, service: s1, config: {status_code: 203}}\n"          /* route+service */
    "- {name: request-termination, consumer: alice, config: {status_code: 204}}\n"                 /* consumer */
    "- {name: request-termination, consumer: alice, service: s1, config: {status_code: 205}}\n"    /* consumer+service */
    "- {name: request-termination, consumer: alice, route: r2, config: {status_code: 206}}\n"      /* consumer+route */
    "- {name: request-termination, consumer: bob, route: r1, service: s1, config: {status_code: 207}}\n"
    "- {name: request-termination, consumer: carol, enabled: false, config: {status_code: 208}}\n";

static int lm__status_of(const lm_plugin_inst_t *p)
{
    if (!p)
        return 0;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(p->ent->config, "status_code");
    return v ? v->valueint : -1;
}

LM_TEST(test_precedence)
{
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    lm_config_t *cfg = lm__load(lm__doc, &errs);
    LM_CHECK(cfg != NULL);
    if (!cfg) {
        for (size_t i = 0; i < errs.count; i++)
            fprintf(stderr, "%s: %s\n", errs.items[i].path, errs.items[i].message);
        lm_config_errors_free(&errs);
        return;
    }
    lm_arena_t *a = lm_arena_create(0);
    lm_plugin_rt_t rt;
    LM_CHECK_EQ_INT(lm_plugin_rt_build(&rt, cfg, a, &errs), LM_OK);
    for (size_t i = 0; i < errs.count; i++)
        fprintf(stderr, "%s: %s\n", errs.items[i].path, errs.items[i].message);
    uint32_t t = 0;
    const lm_plugin_ops_t *const *all = lm_plugin_all();
    while (all[t] && strcmp(all[t]->name, "request-termination") != 0)
        t++;
    const lm_service_t *s1 = lm_config_find_service(cfg, "s1"), *s2 = lm_config_find_service(cfg, "s2");
    const lm_route_t *r1 = cfg->routes[0], *r2 = cfg->routes[1], *r3 = cfg->routes[2];
    const lm_consumer_t *alice = lm_config_find_consumer(cfg, "alice"), *bob = lm_config_find_consumer(cfg, "bob"),
                        *carol = lm_config_find_consumer(cfg, "carol");
    LM_CHECK(rt.has_consumer_scoped);
    /* no consumer: route+service > route > service > global */
    LM_CHECK_EQ_INT(lm__status_of(lm_plugin_rt_resolve(&rt, t, r1, s1, NULL)), 203);
    LM_CHECK_EQ_INT(lm__status_of(lm_plugin_rt_resolve(&rt, t, r2, s1, NULL)), 202);
    LM_CHECK_EQ_INT(lm__status_of(lm_plugin_rt_resolve(&rt, t, r3, s2, NULL)), 200);
    LM_CHECK_EQ_INT(lm__status_of(lm_plugin_rt_resolve(&rt, t, NULL, NULL, NULL)), 200);
    /* consumer+route+service first */
    LM_CHECK_EQ_INT(lm__status_of(lm_plugin_rt_resolve(&rt, t, r1, s1, bob)), 207);
    /* consumer+route beats consumer+service */
    LM_CHECK_EQ_INT(lm__status_of(lm_plugin_rt_resolve(&rt, t, r2, s1, alice)), 206);
    /* consumer+service beats route+service */
    LM_CHECK_EQ_INT(lm__status_of(lm_plugin_rt_resolve(&rt, t, r1, s1, alice)), 205);
    /* route+service beats consumer alone */
    LM_CHECK_EQ_INT(lm__status_of(lm_plugin_rt_resolve(&rt, t, r1, s1, carol)), 203);
    /* consumer alone beats route, service and global */
    LM_CHECK_EQ_INT(lm__status_of(lm_plugin_rt_resolve(&rt, t, r3, s2, alice)), 204);
    /* a disabled instance never applies */
    LM_CHECK_EQ_INT(lm__status_of(lm_plugin_rt_resolve(&rt, t, r3, s2, carol)), 200);

    /* chains: one instance per plugin, the consumer-less choice */
    lm_plugin_chain_t ch;
    lm_plugin_rt_chain(&rt, a, r1, &ch);
    LM_CHECK_EQ_INT(ch.n, 1);
    LM_CHECK_EQ_INT(lm__status_of(ch.by_type[t]), 203);
    lm_plugin_rt_chain(&rt, a, r3, &ch);
    LM_CHECK(ch.list == rt.global.list); /* nothing of its own: shares the global chain */
    lm_plugin_rt_free(&rt);
    lm_arena_destroy(a);
    lm_config_free(cfg);
    lm_config_errors_free(&errs);
}

LM_TEST(test_no_plugins)
{
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    lm_config_t *cfg = lm__load("_format_version: \"3.0\"\nservices: [{name: s, url: http://x:1, routes: [{paths: [/]}]}]\n", &errs);
    LM_CHECK(cfg != NULL);
    lm_arena_t *a = lm_arena_create(0);
    lm_plugin_rt_t rt;
    LM_CHECK_EQ_INT(lm_plugin_rt_build(&rt, cfg, a, &errs), LM_OK);
    lm_plugin_chain_t ch;
    lm_plugin_rt_chain(&rt, a, cfg->routes[0], &ch);
    LM_CHECK_EQ_INT(ch.n, 0);
    LM_CHECK(!rt.has_consumer_scoped);
    lm_plugin_rt_free(&rt);
    lm_arena_destroy(a);
    lm_config_free(cfg);
    lm_config_errors_free(&errs);
}

LM_TEST(test_config_errors_have_paths)
{
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    lm_config_t *cfg = lm__load("_format_version: \"3.0\"\n"
                                "services:\n"
                                "- name: s\n"
                                "  url: http://x:1\n"
                                "  plugins:\n"
                                "  - name: request-termination\n"
                                "    config: {no_such_field: 1}\n",
                                &errs);
    LM_CHECK(cfg != NULL);
    if (!cfg)
        return;
    LM_CHECK_EQ_INT(lm_plugins_validate(cfg, &errs), LM_ERROR);
    LM_CHECK(errs.count >= 1);
    if (errs.count) {
        LM_CHECK_STR(errs.items[0].path, "services[0].plugins[0].config.no_such_field");
        LM_CHECK_STR(errs.items[0].message, "unknown field");
        LM_CHECK_STR(errs.items[0].entity_type, "plugin");
        LM_CHECK_STR(errs.items[0].field, "config.no_such_field");
    }
    lm_config_free(cfg);
    lm_config_errors_free(&errs);
}

/* instances that read the body (lm_plugin_need_body) mark their chains; others stream */
LM_TEST(test_needs_body)
{
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    lm_config_t *cfg = lm__load("_format_version: \"3.0\"\n"
                                "services:\n"
                                "- name: s\n"
                                "  url: http://x:1\n"
                                "  routes:\n"
                                "  - {name: a, paths: [/a], plugins: [{name: key-auth, config: {key_in_body: true}}]}\n"
                                "  - {name: b, paths: [/b], plugins: [{name: key-auth}]}\n"
                                "  - {name: c, paths: [/c], plugins: [{name: hmac-auth, config: {validate_request_body: true}}]}\n"
                                "  - {name: d, paths: [/d], plugins: [{name: hmac-auth}]}\n",
                                &errs);
    LM_CHECK(cfg != NULL);
    if (!cfg)
        return;
    lm_arena_t *a = lm_arena_create(0);
    lm_plugin_rt_t rt;
    LM_CHECK_EQ_INT(lm_plugin_rt_build(&rt, cfg, a, &errs), LM_OK);
    LM_CHECK(rt.needs_body);
    LM_CHECK(!rt.global.needs_body);
    bool want[] = { true, false, true, false };
    for (size_t i = 0; i < 4; i++) {
        lm_plugin_chain_t ch;
        lm_plugin_rt_chain(&rt, a, cfg->routes[i], &ch);
        LM_CHECK_EQ_INT(ch.n, 1);
        LM_CHECK(ch.needs_body == want[i]);
        LM_CHECK(ch.list[0]->needs_body == want[i]);
    }
    lm_plugin_rt_free(&rt);
    lm_arena_destroy(a);
    lm_config_free(cfg);
    lm_config_errors_free(&errs);
}

int main(void)
{
    LM_RUN(test_precedence);
    LM_RUN(test_no_plugins);
    LM_RUN(test_config_errors_have_paths);
    LM_RUN(test_needs_body);
    return lm_test_summary("plugin-runtime");
}

/* snapshot_test.c - compiling a config into a snapshot, and its refcounting */
#include "lm_snapshot.h"
#include "lm_test.h"

#include <arpa/inet.h>

static lm_snapshot_t *lm__compile(const char *yaml)
{
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    lm_config_opts_t o = { 0 };
    lm_config_t *cfg = lm_config_load(yaml, strlen(yaml), &o, &errs);
    lm_snapshot_t *s = cfg ? lm_snapshot_compile(cfg, &errs) : NULL;
    for (size_t i = 0; i < errs.count; i++)
        fprintf(stderr, "config error: %s: %s\n", errs.items[i].path, errs.items[i].message);
    lm_config_errors_free(&errs);
    return s;
}

static const char lm__doc[] =
    "_format_version: \"3.0\"\n"
    "services:\n"
    "- name: plain\n"
    "  url: http://127.0.0.1:8080/base\n"
    "  routes: [{name: r-plain, paths: [/p]}]\n"
    "- name: default-port\n"
    "  host: 127.0.0.2\n"
    "  routes: [{name: r-default, paths: [/d]}]\n"
    "- name: balanced\n"
    "  host: my-upstream\n"
    "  routes: [{name: r-bal, paths: [/b]}]\n"
    "- name: unresolvable\n"
    "  host: does-not-exist.invalid\n"
    "  routes: [{name: r-bad, paths: [/x]}]\n"
    "upstreams:\n"
    "- name: my-upstream\n"
    "  targets:\n"
    "  - {target: \"127.0.0.10:9000\", weight: 100}\n"
    "  - {target: \"127.0.0.11:9001\", weight: 0}\n"
    "  - {target: \"127.0.0.12\"}\n";

LM_TEST(test_services_compiled)
{
    lm_snapshot_t *s = lm__compile(lm__doc);
    LM_CHECK(s != NULL);
    if (!s)
        return;
    LM_CHECK_EQ_INT(s->num_services, 4);
    LM_CHECK_EQ_INT(s->num_routes, 4);
    LM_CHECK_EQ_INT(strlen(s->hash), 32);

    lm_svc_rt_t *plain = &s->services[0];
    LM_CHECK_STR(plain->label, "plain");
    LM_CHECK_SLICE(plain->path, "/base");
    LM_CHECK_EQ_INT(plain->num_peers, 1);
    LM_CHECK_STR(plain->peers[0].key, "127.0.0.1:8080");
    LM_CHECK_SLICE(plain->peers[0].host_header, "127.0.0.1:8080"); /* not the default port: host:port */
    LM_CHECK(plain->resolve_error == NULL);

    lm_svc_rt_t *def = &s->services[1];
    LM_CHECK_SLICE(def->path, "/");
    LM_CHECK_SLICE(def->peers[0].host_header, "127.0.0.2"); /* port 80: no port */
    LM_CHECK_STR(def->peers[0].key, "127.0.0.2:80");

    lm_svc_rt_t *bal = &s->services[2];
    LM_CHECK_EQ_INT(bal->num_peers, 2); /* the weight-0 target takes no traffic */
    LM_CHECK_STR(bal->peers[0].key, "127.0.0.10:9000");
    LM_CHECK_STR(bal->peers[1].key, "127.0.0.12:8000"); /* Kong's default target port */

    lm_svc_rt_t *bad = &s->services[3];
    LM_CHECK(bad->resolve_error != NULL);
    LM_CHECK_EQ_INT(bad->num_peers, 0);

    for (size_t i = 0; i < s->num_routes; i++) {
        LM_CHECK(s->routes[i].route != NULL);
        LM_CHECK(s->routes[i].svc == &s->services[i]);
    }
    LM_CHECK(s->doc_json != NULL && strstr(s->doc_json, "\"my-upstream\"") != NULL);
    lm_snapshot_unref(s);
}

LM_TEST(test_refcount)
{
    lm_snapshot_t *s = lm__compile(lm__doc);
    LM_CHECK(s != NULL);
    if (!s)
        return;
    LM_CHECK_EQ_INT(atomic_load(&s->refs), 1);
    lm_snapshot_ref(s);
    lm_snapshot_ref(s);
    LM_CHECK_EQ_INT(atomic_load(&s->refs), 3);
    lm_snapshot_unref(s);
    lm_snapshot_unref(s);
    LM_CHECK_EQ_INT(atomic_load(&s->refs), 1);
    lm_snapshot_unref(s); /* frees: ASan reports a leak or a double free otherwise */
}

LM_TEST(test_metrics_survive_snapshots)
{
    lm_snapshot_t *a = lm__compile(lm__doc);
    lm_snapshot_t *b = lm__compile(lm__doc);
    LM_CHECK(a && b);
    if (!a || !b)
        return;
    lm_metrics_block_t *ma = lm_snapshot_route_metrics(&a->routes[0]);
    lm_metrics_record(ma, 200, 3, 1, 10, 20);
    lm_metrics_block_t *mb = lm_snapshot_route_metrics(&b->routes[0]);
    LM_CHECK(ma == mb); /* same service and route names: same counters */
    LM_CHECK(lm_snapshot_route_metrics(&b->routes[1]) != mb);
    lm_snapshot_unref(a);
    lm_snapshot_unref(b);
}

LM_TEST(test_empty)
{
    lm_snapshot_t *s = lm_snapshot_empty();
    LM_CHECK(s != NULL && s->num_routes == 0 && s->router != NULL);
    lm_snapshot_unref(s);
}

int main(void)
{
    LM_RUN(test_services_compiled);
    LM_RUN(test_refcount);
    LM_RUN(test_metrics_survive_snapshots);
    LM_RUN(test_empty);
    lm_metrics_shutdown();
    return lm_test_summary("snapshot");
}

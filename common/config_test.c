/*
 * config_test.c - unit tests of the declarative configuration: parsing
 * (YAML core schema, aliases, duplicate keys, JSON), ${VAR} substitution,
 * the model built from valid 3.0 / 2.1 documents, and the exact path and
 * message of every validation error. Fixtures: common/testdata/config/
 * (run from the repository root).
 */
#include "config_internal.h"
#include "lm_config.h"
#include "lm_test.h"

#include <math.h>
#include <stdlib.h>

#define TD "common/testdata/config/"
#define V3 "_format_version: '3.0'\n"
#define V21 "_format_version: '2.1'\n"

static lm_config_t *t_load(const char *doc, lm_config_errors_t *errs)
{
    lm_config_opts_t opts = { .substitute_env = false };
    return lm_config_load(doc, strlen(doc), &opts, errs);
}

static const lm_config_error_t *t_find(const lm_config_errors_t *e, const char *path,
                                       const char *msg, bool prefix)
{
    for (size_t i = 0; i < e->count; i++) {
        if (strcmp(e->items[i].path, path) != 0)
            continue;
        if (prefix ? strncmp(e->items[i].message, msg, strlen(msg)) == 0
                   : strcmp(e->items[i].message, msg) == 0)
            return &e->items[i];
    }
    return NULL;
}

static void t_dump(const lm_config_errors_t *e)
{
    char *s = lm_config_errors_format(e);
    fprintf(stderr, "    errors (%zu):\n%s", e->count, s);
    free(s);
}

static lm_route_t *t_route(const lm_config_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->num_routes; i++)
        if (cfg->routes[i]->name && strcmp(cfg->routes[i]->name, name) == 0)
            return cfg->routes[i];
    return NULL;
}

/* ---- valid documents ------------------------------------------------- */

LM_TEST(test_valid_v3)
{
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    lm_config_t *cfg = lm_config_load_file(TD "valid_v3.yaml", &errs);
    LM_CHECK(cfg != NULL);
    if (cfg == NULL) {
        t_dump(&errs);
        lm_config_errors_free(&errs);
        return;
    }
    LM_CHECK_STR(cfg->format_version, "3.0");
    LM_CHECK_EQ_INT(strlen(cfg->hash), 32);
    LM_CHECK_EQ_INT(cfg->num_services, 2);
    LM_CHECK_EQ_INT(cfg->num_routes, 4);
    LM_CHECK_EQ_INT(cfg->num_consumers, 2);
    LM_CHECK_EQ_INT(cfg->num_plugins, 5);
    LM_CHECK_EQ_INT(cfg->num_credentials, 4);
    LM_CHECK_EQ_INT(cfg->num_upstreams, 1);
    LM_CHECK_EQ_INT(cfg->num_certificates, 1);
    LM_CHECK_EQ_INT(cfg->num_ca_certificates, 1);

    /* service from the url shorthand */
    lm_service_t *users = lm_config_find_service(cfg, "users");
    LM_CHECK(users != NULL && users->index == 0);
    LM_CHECK_STR(users->protocol, "https");
    LM_CHECK_STR(users->host, "users.internal");
    LM_CHECK_EQ_INT(users->port, 8443);
    LM_CHECK_STR(users->path, "/api");
    LM_CHECK_EQ_INT(users->retries, 3);
    LM_CHECK_EQ_INT(users->connect_timeout, 60000);
    LM_CHECK_EQ_INT(users->read_timeout, 60000);
    LM_CHECK_EQ_INT(users->write_timeout, 60000);
    LM_CHECK(users->enabled);
    LM_CHECK_EQ_INT(users->tls_verify_depth, -1);
    LM_CHECK(!users->tls_verify_set);
    LM_CHECK_EQ_INT(users->num_tags, 2);
    LM_CHECK_STR(users->tags[1], "k8s-namespace:default");
    lm_service_t *orders = lm_config_find_service(cfg, "5f2b8e6a-3c1d-4e7f-9a0b-1c2d3e4f5a6b");
    LM_CHECK(orders != NULL && orders == lm_config_find_service(cfg, "orders"));
    LM_CHECK_STR(orders->protocol, "http");
    LM_CHECK_EQ_INT(orders->port, 80);
    LM_CHECK_STR(orders->path, "/v2");

    /* nested route: paths stored without "~", regex flagged */
    lm_route_t *r = t_route(cfg, "users-route");
    LM_CHECK(r != NULL && r->index == 0 && r->service == users);
    LM_CHECK_EQ_INT(r->num_paths, 2);
    LM_CHECK_STR(r->paths[0], "/users");
    LM_CHECK(!r->path_is_regex[0]);
    LM_CHECK_STR(r->paths[1], "/users/(?<id>\\d+)$");
    LM_CHECK(r->path_is_regex[1]);
    LM_CHECK_EQ_INT(r->num_hosts, 3);
    LM_CHECK_STR(r->hosts[0], "example.com");
    LM_CHECK_STR(r->hosts[1], "*.example.org");
    LM_CHECK_STR(r->hosts[2], "api.example.net:8080");
    LM_CHECK_EQ_INT(r->num_methods, 2);
    LM_CHECK_STR(r->methods[1], "POST");
    LM_CHECK_EQ_INT(r->num_headers, 1);
    LM_CHECK_STR(r->headers[0].name, "x-version");
    LM_CHECK_EQ_INT(r->headers[0].num_values, 2);
    LM_CHECK_STR(r->headers[0].values[1], "~*^v[0-9]+$");
    LM_CHECK(!r->strip_path);
    /* defaults */
    LM_CHECK_EQ_INT(r->num_protocols, 2);
    LM_CHECK_STR(r->protocols[0], "http");
    LM_CHECK_STR(r->protocols[1], "https");
    LM_CHECK_EQ_INT(r->https_redirect_status_code, 426);
    LM_CHECK_EQ_INT(r->regex_priority, 0);
    LM_CHECK(!r->preserve_host);
    LM_CHECK(r->request_buffering && r->response_buffering);
    LM_CHECK_STR(r->path_handling, "v0");

    /* top-level routes: by name, by {id}, none */
    r = t_route(cfg, "orders-route");
    LM_CHECK(r != NULL && r->index == 1 && r->service == orders && r->strip_path);
    r = t_route(cfg, "orders-by-id");
    LM_CHECK(r != NULL && r->service == orders);
    LM_CHECK(r && r->num_paths == 1 && !r->path_is_regex[0]); /* 3.0: no "~", a prefix */
    LM_CHECK(r && r->https_redirect_status_code == 301 && r->num_snis == 1);
    r = t_route(cfg, "no-service");
    LM_CHECK(r != NULL && r->service == NULL);

    /* plugins: nested scopes, then top level with references */
    lm_plugin_t **p = cfg->plugins;
    LM_CHECK_STR(p[0]->name, "key-auth");
    LM_CHECK(p[0]->route == t_route(cfg, "users-route") && p[0]->service == NULL);
    LM_CHECK(cJSON_IsArray(cJSON_GetObjectItem(p[0]->config, "key_names")));
    LM_CHECK_STR(p[1]->name, "rate-limiting");
    LM_CHECK(p[1]->service == users && p[1]->route == NULL);
    LM_CHECK(p[2]->consumer == lm_config_find_consumer(cfg, "alice"));
    LM_CHECK_STR(p[3]->name, "cors");
    LM_CHECK(cJSON_IsObject(p[3]->config) && cJSON_GetArraySize(p[3]->config) == 0);
    LM_CHECK(p[3]->enabled && p[3]->num_protocols == 4);
    LM_CHECK(!p[4]->enabled && p[4]->num_protocols == 1);
    LM_CHECK(p[4]->service == users && p[4]->route == t_route(cfg, "orders-route") &&
             p[4]->consumer == cfg->consumers[0]);

    /* consumers and credentials */
    LM_CHECK(lm_config_find_consumer(cfg, "bob-id") == cfg->consumers[1]);
    LM_CHECK_STR(cfg->credentials[0]->kind, "keyauth_credentials");
    LM_CHECK(cfg->credentials[0]->consumer == cfg->consumers[0]);
    LM_CHECK_STR(cfg->credentials[2]->kind, "acls");
    LM_CHECK_STR(cfg->credentials[3]->kind, "keyauth_credentials");
    LM_CHECK(cfg->credentials[3]->consumer == cfg->consumers[1]);
    LM_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cfg->credentials[3]->fields, "key")),
                 "bob-key");

    /* upstream with nested and top-level targets */
    lm_upstream_t *u = lm_config_find_upstream(cfg, "orders-upstream");
    LM_CHECK(u != NULL);
    LM_CHECK_STR(u->algorithm, "least-connections");
    LM_CHECK_STR(u->hash_on, "none");
    LM_CHECK_STR(u->hash_fallback, "none");
    LM_CHECK_STR(u->hash_on_cookie_path, "/");
    LM_CHECK_EQ_INT(u->slots, 100);
    LM_CHECK(cJSON_IsObject(u->healthchecks));
    LM_CHECK_EQ_INT(u->num_targets, 3);
    LM_CHECK_STR(u->targets[0].target, "10.0.0.1:8080");
    LM_CHECK_EQ_INT(u->targets[0].weight, 50);
    LM_CHECK_STR(u->targets[1].target, "orders-1.internal:8000");
    LM_CHECK_STR(u->targets[1].host, "orders-1.internal");
    LM_CHECK_EQ_INT(u->targets[1].port, 8000);
    LM_CHECK_EQ_INT(u->targets[1].weight, 100);
    LM_CHECK_STR(u->targets[2].target, "[::1]:9000");
    LM_CHECK_STR(u->targets[2].host, "::1");

    /* certificates: nested snis (record and bare name) and a top-level sni */
    lm_certificate_t *c = cfg->certificates[0];
    LM_CHECK(c->cert_alt != NULL && c->key_alt != NULL);
    LM_CHECK_EQ_INT(c->num_snis, 3);
    LM_CHECK_STR(c->snis[0], "shop.example.com");
    LM_CHECK_STR(c->snis[1], "*.shop.example.com");
    LM_CHECK_STR(c->snis[2], "other.example.com");
    LM_CHECK(cfg->ca_certificates[0]->cert_digest != NULL &&
             strlen(cfg->ca_certificates[0]->cert_digest) == 64);
    lm_config_free(cfg);
    LM_CHECK_EQ_INT(errs.count, 0);
    lm_config_errors_free(&errs);
}

LM_TEST(test_valid_v21_regex_detection)
{
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    lm_config_t *cfg = lm_config_load_file(TD "valid_v21.yaml", &errs);
    LM_CHECK(cfg != NULL);
    if (cfg == NULL) {
        t_dump(&errs);
        lm_config_errors_free(&errs);
        return;
    }
    LM_CHECK_STR(cfg->format_version, "2.1");
    lm_route_t *r = cfg->routes[0];
    LM_CHECK_EQ_INT(r->num_paths, 4);
    LM_CHECK_STR(r->paths[0], "/plain/path-1.0_~%20");
    LM_CHECK(!r->path_is_regex[0]);
    LM_CHECK_STR(r->paths[1], "/users/\\d+/profile");
    LM_CHECK(r->path_is_regex[1]);
    LM_CHECK_STR(r->paths[2], "/files/(?<name>[a-z]+)$");
    LM_CHECK(r->path_is_regex[2]);
    LM_CHECK(!r->path_is_regex[3]); /* '.' is in the plain set */
    LM_CHECK_EQ_INT(cfg->services[0]->port, 80);
    lm_config_free(cfg);

    /* 1.1 behaves like 2.1 */
    cfg = t_load("_format_version: '1.1'\nroutes: [{paths: ['/x/[0-9]+']}]", &errs);
    LM_CHECK(cfg != NULL && cfg->routes[0]->path_is_regex[0]);
    lm_config_free(cfg);
    /* 3.0: a path without "~" is a plain prefix, whatever it looks like */
    cfg = t_load(V3 "routes: [{paths: ['/x/(a)+']}]", &errs);
    LM_CHECK(cfg != NULL && !cfg->routes[0]->path_is_regex[0]);
    lm_config_free(cfg);
    LM_CHECK_EQ_INT(errs.count, 0);
    lm_config_errors_free(&errs);
}

LM_TEST(test_valid_json)
{
    const char *doc =
        "{\"_format_version\":\"3.0\",\n"
        " \"services\":[{\"name\":\"s1\",\"host\":\"a.internal\",\"port\":8080,\"protocol\":\"https\","
        "   \"routes\":[{\"name\":\"r1\",\"paths\":[\"~/v[0-9]/\"]}]}],\n"
        " \"routes\":[{\"name\":\"r2\",\"service\":\"s1\",\"hosts\":[\"x.com\"]}],\n"
        " \"plugins\":[{\"name\":\"cors\",\"route\":\"r2\",\"config\":{\"origins\":[\"*\"]}}]}\n";
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    lm_config_t *cfg = t_load(doc, &errs);
    LM_CHECK(cfg != NULL);
    if (cfg) {
        LM_CHECK_EQ_INT(cfg->num_routes, 2);
        LM_CHECK_STR(cfg->routes[0]->paths[0], "/v[0-9]/");
        LM_CHECK(cfg->routes[0]->path_is_regex[0]);
        LM_CHECK(cfg->routes[1]->service == cfg->services[0]);
        LM_CHECK(cfg->plugins[0]->route == cfg->routes[1]);
        LM_CHECK_EQ_INT(cfg->services[0]->port, 8080);
        /* the same document twice hashes the same; another one differently */
        lm_config_t *again = t_load(doc, &errs);
        LM_CHECK(again && strcmp(again->hash, cfg->hash) == 0);
        lm_config_free(again);
        lm_config_t *other = t_load(V3, &errs);
        LM_CHECK(other && strcmp(other->hash, cfg->hash) != 0);
        lm_config_free(other);
    } else {
        t_dump(&errs);
    }
    lm_config_free(cfg);
    lm_config_errors_free(&errs);
}

LM_TEST(test_defaults)
{
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    lm_config_t *cfg = t_load(V3 "services:\n- host: backend\n  protocol: https\n"
                                 "  routes: [{paths: [/], protocols: [grpc]}]\n"
                                 "upstreams: [{name: backend, hash_on: header, hash_on_header: X-User}]\n",
                              &errs);
    LM_CHECK(cfg != NULL);
    if (cfg) {
        lm_service_t *s = cfg->services[0];
        LM_CHECK(s->name == NULL && s->id != NULL);
        char want[37];
        lm_config_uuid("service@services[0]", want); /* stable: from the position */
        LM_CHECK_STR(s->id, want);
        lm_config_uuid("upstream:name:backend", want); /* from the name */
        LM_CHECK_STR(cfg->upstreams[0]->id, want);
        LM_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(cfg->doc, "services"), 0), "id")), s->id);
        LM_CHECK_EQ_INT(s->port, 443); /* Limen: 443 for https without a port */
        LM_CHECK_EQ_INT(s->retries, 5);
        LM_CHECK(s->path == NULL);
        LM_CHECK(!cfg->routes[0]->strip_path); /* grpc routes default to false */
        LM_CHECK_EQ_INT(cfg->upstreams[0]->slots, 10000);
        LM_CHECK_STR(cfg->upstreams[0]->algorithm, "round-robin");
        LM_CHECK(cfg->upstreams[0]->healthchecks == NULL);
    } else {
        t_dump(&errs);
    }
    lm_config_free(cfg);
    lm_config_errors_free(&errs);
}

/* ---- parsing --------------------------------------------------------- */

LM_TEST(test_yaml_core_schema)
{
    const char *doc = "a: 0x1F\nb: 0o17\nc: ~\nd: 'true'\ne: True\nf: 1.5e3\ng: -.inf\nh: yes\n"
                      "i: !!str 12\nj: \"12\"\nk:\nl: 007\nm: -12\nn: 1_000\n"
                      "o: &x [1, {p: q}]\nr: *x\n";
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    cJSON *t = lm_config_parse(doc, strlen(doc), NULL, &errs);
    LM_CHECK(t != NULL);
    if (t) {
        LM_CHECK_EQ_INT(cJSON_GetObjectItem(t, "a")->valuedouble, 31);
        LM_CHECK_EQ_INT(cJSON_GetObjectItem(t, "b")->valuedouble, 15);
        LM_CHECK(cJSON_IsNull(cJSON_GetObjectItem(t, "c")));
        LM_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(t, "d")), "true");
        LM_CHECK(cJSON_IsTrue(cJSON_GetObjectItem(t, "e")));
        LM_CHECK_EQ_INT(cJSON_GetObjectItem(t, "f")->valuedouble, 1500);
        LM_CHECK(isinf(cJSON_GetObjectItem(t, "g")->valuedouble));
        LM_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(t, "h")), "yes"); /* 1.2, not 1.1 */
        LM_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(t, "i")), "12");
        LM_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(t, "j")), "12");
        LM_CHECK(cJSON_IsNull(cJSON_GetObjectItem(t, "k")));
        LM_CHECK_EQ_INT(cJSON_GetObjectItem(t, "l")->valuedouble, 7);
        LM_CHECK_EQ_INT(cJSON_GetObjectItem(t, "m")->valuedouble, -12);
        LM_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(t, "n")), "1_000");
        char *r = cJSON_PrintUnformatted(cJSON_GetObjectItem(t, "r"));
        LM_CHECK_STR(r, "[1,{\"p\":\"q\"}]");
        cJSON_free(r);
    }
    cJSON_Delete(t);
    LM_CHECK_EQ_INT(errs.count, 0);
    lm_config_errors_free(&errs);
}

/* parse errors: exactly one error, at path, with message */
static void t_parse_error(const char *doc, const char *path, const char *msg, bool prefix)
{
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    cJSON *t = lm_config_parse(doc, strlen(doc), NULL, &errs);
    if (t != NULL || errs.count != 1 || !t_find(&errs, path, msg, prefix)) {
        LM_FAILF("parse of [%s]: expected \"%s: %s\"", doc, path, msg);
        t_dump(&errs);
    }
    cJSON_Delete(t);
    lm_config_errors_free(&errs);
}

LM_TEST(test_parse_errors)
{
    t_parse_error("a: 1\nb: 2\na: 3\n", "", "line 3:1: duplicate key 'a'", false);
    t_parse_error("services:\n- name: x\n  name: y\n", "services[0]",
                  "line 3:3: duplicate key 'name'", false);
    t_parse_error("a: [1, 2\n", "", "line 2:1: did not find expected ',' or ']'", true);
    t_parse_error("a: *nope\n", "a", "line 1:4: unknown anchor 'nope'", false);
    t_parse_error("a: !custom 1\n", "a", "line 1:4: unsupported tag '!custom'", false);
    t_parse_error("a: !!int abc\n", "a", "line 1:4: invalid !!int value 'abc'", false);
    t_parse_error("? [a]\n: 1\n", "", "line 1:3: mapping keys must be scalars", false);
    t_parse_error("a: 1\n---\nb: 2\n", "", "line 2:1: multiple YAML documents are not supported",
                  false);
    t_parse_error("", "", "expected a declarative configuration", false);
    t_parse_error("  \n\n", "", "expected a declarative configuration", false);
    t_parse_error("{\"a\": 1,\n \"b\": }", "", "line 2:7: invalid JSON", false);
    t_parse_error("{\"a\": {\"b\": 1, \"b\": 2}}", "a", "duplicate key 'b'", false);
    t_parse_error("{\"a\": 1} x", "", "line 1:10: unexpected data after the JSON document", false);
    /* billion laughs: refused, not expanded */
    t_parse_error("a: &a [x,x,x,x,x,x,x,x,x,x]\n"
                  "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                  "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
                  "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                  "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
                  "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
                  "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n",
                  "f[7]", "line 6:29: aliases expand to too many nodes", true);
    /* the same, the message says why */
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    const char *bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                       "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                       "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
                       "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n";
    cJSON *t = lm_config_parse(bomb, strlen(bomb), NULL, &errs);
    LM_CHECK(t == NULL && errs.count == 1 && strstr(errs.items[0].message, "too many nodes"));
    lm_config_errors_free(&errs);
    /* deep nesting is refused before it reaches recursive code */
    char deep[2000];
    size_t n = 0;
    for (int i = 0; i < 300; i++)
        deep[n++] = '[';
    deep[n] = '\0';
    lm_config_errors_init(&errs);
    t = lm_config_parse(deep, n, NULL, &errs);
    LM_CHECK(t == NULL && errs.count == 1 && strstr(errs.items[0].message, "nesting deeper"));
    lm_config_errors_free(&errs);
}

/* ---- ${VAR} ---------------------------------------------------------- */

LM_TEST(test_env_substitution)
{
    setenv("LM_TEST_HOST", "env-host.internal", 1);
    setenv("LM_TEST_PORT", "9090", 1);
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    lm_config_t *cfg = lm_config_load_file(TD "env.yaml", &errs);
    LM_CHECK(cfg != NULL);
    if (cfg) {
        lm_service_t *s = cfg->services[0];
        LM_CHECK_STR(s->host, "env-host.internal");
        LM_CHECK_EQ_INT(s->port, 9090);
        LM_CHECK_STR(s->path, "/x");
        LM_CHECK_STR(s->tags[0], "literal-${NOT_A_VAR}");
        LM_CHECK_STR(s->tags[1], "cost-$5");
    } else {
        t_dump(&errs);
    }
    lm_config_free(cfg);

    /* unset variable: named, with the path */
    unsetenv("LM_TEST_PORT");
    cfg = lm_config_load_file(TD "env.yaml", &errs);
    LM_CHECK(cfg == NULL && errs.count == 1);
    LM_CHECK(t_find(&errs, "services[0].url", "environment variable 'LM_TEST_PORT' is not set",
                    false));
    lm_config_errors_free(&errs);

    /* without substitution the text stays */
    const char *doc = V3 "services: [{name: s, host: h, tags: ['${LM_TEST_PORT}']}]";
    cfg = t_load(doc, &errs);
    LM_CHECK(cfg != NULL && strcmp(cfg->services[0]->tags[0], "${LM_TEST_PORT}") == 0);
    lm_config_free(cfg);

    /* a malformed reference */
    lm_config_opts_t opts = { .substitute_env = true };
    const char *bad = V3 "services: [{name: s, host: h, tags: ['${1X}']}]";
    cJSON *t = lm_config_parse(bad, strlen(bad), &opts, &errs);
    LM_CHECK(t == NULL);
    LM_CHECK(t_find(&errs, "services[0].tags[0]", "invalid environment variable reference '${1X}'",
                    true));
    lm_config_errors_free(&errs);
    cfg = lm_config_load_file(TD "does-not-exist.yaml", &errs);
    LM_CHECK(cfg == NULL && t_find(&errs, "", "cannot open 'common/testdata/config/does-not-exist.yaml'", true));
    lm_config_errors_free(&errs);
    unsetenv("LM_TEST_HOST");
}

/* ---- validation errors ----------------------------------------------- */

typedef struct {
    const char *doc;
    const char *path;
    const char *msg;
    int count; /* expected number of errors (0: only check presence) */
} t_case_t;

#define UUID1 "3c1e2f4a-1b2c-4d3e-8f9a-0b1c2d3e4f5a"

static const t_case_t t_cases[] = {
    /* document */
    { "services: []", "_format_version", "required field missing", 1 },
    { "_format_version: '4.0'", "_format_version", "expected one of: 1.1, 2.1, 3.0", 1 },
    { "_format_version: 3.0", "_format_version", "expected a string", 1 },
    { V3 "foo: 1", "foo", "unknown field", 1 },
    { "- a\n- b", "", "expected an object", 1 },
    { V3 "services: {}", "services", "expected an array", 1 },
    { V3 "services: [1]", "services[0]", "expected a record", 1 },
    /* services */
    { V3 "services: [{name: s}]", "services[0].host", "required field missing", 1 },
    { V3 "services: [{name: s, host: h, port: 70000}]", "services[0].port",
      "value should be between 0 and 65535", 1 },
    { V3 "services: [{name: s, host: h, retries: -1}]", "services[0].retries",
      "value should be between 0 and 32767", 1 },
    { V3 "services: [{name: s, host: h, connect_timeout: 0}]", "services[0].connect_timeout",
      "value should be between 1 and 2147483646", 1 },
    { V3 "services: [{name: s, host: h, retries: 1.5}]", "services[0].retries",
      "expected an integer", 1 },
    { V3 "services: [{name: 'bad name', host: h}]", "services[0].name",
      "invalid value 'bad name': the only accepted ascii characters are alphanumerics or ., -, _, and ~",
      1 },
    { V3 "services: [{name: s, url: 'http://'}]", "services[0].url", "missing host in url", 1 },
    { V3 "services: [{name: s, url: 'example.com/x'}]", "services[0].url",
      "missing scheme in url", 1 },
    { V3 "services: [{name: s, url: 'http://h:99999'}]", "services[0].url",
      "invalid port in url", 1 },
    { V3 "services: [{name: s, host: 'h:80'}]", "services[0].host", "must not have a port", 1 },
    { V3 "services: [{name: s, host: 'bad!host'}]", "services[0].host",
      "invalid value: bad!host", 1 },
    { V3 "services: [{name: s, host: h, protocol: ftp}]", "services[0].protocol",
      "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp, ws, wss", 1 },
    { V3 "services: [{name: s, host: h, path: x}]", "services[0].path", "should start with: /", 1 },
    { V3 "services: [{name: s, host: h, path: /a//b}]", "services[0].path",
      "must not have empty segments", 1 },
    { V3 "services: [{name: s, host: h, protocol: tcp, path: /x}]", "services[0].path",
      "value must be null", 1 },
    { V3 "services: [{name: s, host: h, foo: 1}]", "services[0].foo", "unknown field", 1 },
    { V3 "services: [{name: s, host: h, id: not-a-uuid}]", "services[0].id",
      "expected a valid UUID", 1 },
    { V3 "services: [{name: s, host: h}, {name: s, host: h}]", "services[1]",
      "uniqueness violation: 'services' entity with name set to 's' already declared", 1 },
    { V3 "services: [{id: " UUID1 ", host: h}, {id: " UUID1 ", host: h}]", "services[1]",
      "uniqueness violation: 'services' entity with primary key set to '" UUID1 "' already declared",
      1 },
    { V3 "services: [{name: s, host: h, enabled: 'yes'}]", "services[0].enabled",
      "expected a boolean", 1 },
    { V3 "services: [{name: s, host: h, tags: ['a,b']}]", "services[0].tags[0]",
      "invalid tag 'a,b': expected printable ascii (except `,` and `/`) or valid utf-8 sequences",
      1 },
    { V3 "services: [{name: s, host: h, client_certificate: {id: " UUID1 "}}]",
      "services[0].client_certificate",
      "invalid reference 'client_certificate: {\"id\":\"" UUID1 "\"}' (no such entry in 'certificates')",
      1 },
    { V3 "services: [{name: s, host: h, ca_certificates: [nope]}]",
      "services[0].ca_certificates[0]", "expected a valid UUID", 1 },
    { V3 "services: [{name: s, host: h, ca_certificates: [" UUID1 "]}]",
      "services[0].ca_certificates[0]",
      "invalid reference 'ca_certificates: " UUID1 "' (no such entry in 'ca_certificates')", 1 },
    /* routes */
    { V3 "routes: [{name: r, paths: [x]}]", "routes[0].paths[0]",
      "should start with: / (fixed path) or ~/ (regex path)", 0 },
    { V3 "routes: [{name: r, paths: ['~/a(b']}]", "routes[0].paths[0]",
      "invalid regex: '/a(b' (PCRE returned: pcre2_compile() failed: missing closing parenthesis "
      "at offset 4 in \"/a(b\")",
      1 },
    { V3 "routes: [{name: r}]", "routes[0]",
      "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'",
      1 },
    { V3 "routes: [{name: r, protocols: [http]}]", "routes[0]",
      "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'", 1 },
    { V3 "routes: [{name: r, protocols: [http], paths: [/], snis: [a.com]}]", "routes[0].snis",
      "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls', 'tls_passthrough', or 'wss'",
      1 },
    { V3 "routes: [{hosts: ['a.*.com']}]", "routes[0].hosts[0]",
      "invalid wildcard: must be placed at leftmost or rightmost label", 0 },
    { V3 "routes: [{hosts: ['*.a.*']}]", "routes[0].hosts[0]",
      "invalid wildcard: must have at most one wildcard", 0 },
    { V3 "routes: [{hosts: ['a..b']}]", "routes[0].hosts[0]", "invalid value: a..b", 0 },
    { V3 "routes: [{methods: [get]}]", "routes[0].methods[0]", "invalid value: get", 1 },
    { V3 "routes: [{paths: [/], headers: {Host: [a]}}]", "routes[0].headers.Host",
      "cannot contain 'host' header, which must be specified in the 'hosts' attribute", 1 },
    { V3 "routes: [{paths: [/], headers: {'X A': [a]}}]", "routes[0].headers.X A",
      "bad header name 'X A', allowed characters are A-Z, a-z, 0-9, '_', and '-'", 1 },
    { V3 "routes: [{paths: [/], headers: {X-A: v}}]", "routes[0].headers.X-A",
      "expected an array", 1 },
    { V3 "routes: [{paths: [/], headers: {X-A: ['~*(']}}]", "routes[0].headers.X-A[0]",
      "invalid regex: '(' (PCRE returned: missing closing parenthesis at offset 1)", 1 },
    { V3 "routes: [{paths: [/], https_redirect_status_code: 303}]",
      "routes[0].https_redirect_status_code", "expected one of: 426, 301, 302, 307, 308", 1 },
    { V3 "routes: [{paths: [/], path_handling: v2}]", "routes[0].path_handling",
      "expected one of: v0, v1", 1 },
    { V3 "routes: [{paths: [/], regex_priority: x}]", "routes[0].regex_priority",
      "expected an integer", 1 },
    { V3 "routes: [{paths: [/], service: nope}]", "routes[0].service",
      "invalid reference 'service: nope' (no such entry in 'services')", 1 },
    { V3 "routes: [{paths: [/], service: {name: nope}}]", "routes[0].service",
      "invalid reference 'service: {\"name\":\"nope\"}' (no such entry in 'services')", 1 },
    { V3 "services: [{name: s, host: h, routes: [{paths: [/], service: s}]}]",
      "services[0].routes[0].service", "value must be null", 1 },
    { V3 "routes: [{paths: [/], protocols: [http, tcp]}]", "routes[0].protocols",
      "these sets are mutually exclusive: ('http', 'https'), ('tcp', 'tls', 'udp'), "
      "('tls_passthrough'), ('grpc', 'grpcs'), ('ws', 'wss')",
      1 },
    { V3 "routes: [{paths: [/], protocols: []}]", "routes[0].protocols",
      "length must be at least 1", 1 },
    { V3 "routes: [{paths: [/], protocols: [ftp]}]", "routes[0].protocols[0]",
      "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp, ws, wss", 1 },
    { V3 "routes: [{protocols: [tcp]}]", "routes[0]",
      "must set one of 'sources', 'destinations', 'snis' when 'protocols' is 'tcp', 'tls' or 'udp'",
      1 },
    { V3 "routes: [{protocols: [tcp], paths: [/], sources: [{ip: 1.2.3.4}]}]", "routes[0].paths",
      "cannot set 'paths' when 'protocols' is 'tcp', 'tls', 'tls_passthrough' or 'udp'", 1 },
    { V3 "routes: [{protocols: [tcp], sources: [{ip: 1.2.3.999}]}]", "routes[0].sources[0].ip",
      "invalid ip or cidr range: '1.2.3.999'", 1 },
    { V3 "routes: [{protocols: [tcp], destinations: [{}]}]", "routes[0].destinations[0]",
      "at least one of these fields must be non-empty: 'ip', 'port'", 1 },
    { V3 "routes: [{protocols: [tls_passthrough], sources: [{port: 1}]}]", "routes[0]",
      "must set snis when 'protocols' is 'tls_passthrough'", 1 },
    { V3 "routes: [{protocols: [grpc], paths: [/], strip_path: true}]", "routes[0].strip_path",
      "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'", 1 },
    { V3 "routes: [{protocols: [grpc], methods: [GET], paths: [/]}]", "routes[0].methods",
      "cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'", 1 },
    { V3 "routes: [{paths: [/], sources: [{ip: 10.0.0.0/8}]}]", "routes[0].sources",
      "cannot set 'sources' when 'protocols' is 'http' or 'https'", 1 },
    { V3 "routes: [{paths: [/a//b]}]", "routes[0].paths[0]", "must not have empty segments", 0 },
    { V3 "routes: [{paths: ['/a b']}]", "routes[0].paths[0]",
      "invalid path: '/a b' (characters outside of the reserved list of RFC 3986 found)", 0 },
    { V3 "routes: [{paths: ['/a%zz']}]", "routes[0].paths[0]", "invalid url-encoded value: '%zz'",
      0 },
    { V3 "routes: [{paths: /x}]", "routes[0].paths", "expected an array", 0 },
    { V3 "routes: [{paths: [1]}]", "routes[0].paths[0]", "expected a string", 0 },
    { V3 "routes: [{paths: ['']}]", "routes[0].paths[0]", "length must be at least 1", 0 },
    { V21 "routes: [{paths: [x]}]", "routes[0].paths[0]", "should start with: /", 0 },
    { V21 "routes: [{paths: ['/a(b']}]", "routes[0].paths[0]",
      "invalid regex: '/a(b' (PCRE returned: pcre2_compile() failed: missing closing parenthesis "
      "at offset 4 in \"/a(b\")",
      1 },
    { V3 "routes: [{name: r, paths: [/]}, {name: r, paths: [/]}]", "routes[1]",
      "uniqueness violation: 'routes' entity with name set to 'r' already declared", 1 },
    { V3 "routes: [{protocols: [https], snis: ['1.2.3.4']}]", "routes[0].snis[0]",
      "must not be an IP", 1 },
    { V3 "routes: [{protocols: [https], snis: ['a.com:443']}]", "routes[0].snis[0]",
      "must not have a port", 1 },
    /* plugins */
    { V3 "plugins: [{name: nope}]", "plugins[0].name",
      "plugin 'nope' not enabled; add it to the 'plugins' configuration property", 1 },
    { V3 "plugins: [{config: {}}]", "plugins[0].name", "required field missing", 1 },
    { V3 "plugins: [{name: cors, config: 1}]", "plugins[0].config", "expected a record", 1 },
    { V3 "plugins: [{name: cors}, {name: cors}]", "plugins[1]",
      "uniqueness violation: 'plugins' entity with name set to 'cors' already declared for the "
      "same scope (global)",
      1 },
    { V3 "services: [{name: s, host: h, plugins: [{name: cors}]}]\nplugins: [{name: cors, service: s}]",
      "plugins[0]",
      "uniqueness violation: 'plugins' entity with name set to 'cors' already declared for the "
      "same scope (service 's')",
      1 },
    { V3 "plugins: [{name: cors, service: nope}]", "plugins[0].service",
      "invalid reference 'service: nope' (no such entry in 'services')", 1 },
    { V3 "plugins: [{name: cors, route: nope}]", "plugins[0].route",
      "invalid reference 'route: nope' (no such entry in 'routes')", 1 },
    { V3 "plugins: [{name: cors, consumer: nope}]", "plugins[0].consumer",
      "invalid reference 'consumer: nope' (no such entry in 'consumers')", 1 },
    { V3 "services: [{name: s, host: h, plugins: [{name: cors, service: s}]}]",
      "services[0].plugins[0].service", "value must be null", 1 },
    { V3 "plugins: [{name: cors, protocols: [ftp]}]", "plugins[0].protocols[0]",
      "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp, ws, wss", 1 },
    { V3 "plugins: [{name: cors, instance_name: 'a b'}]", "plugins[0].instance_name",
      "invalid value 'a b': the only accepted ascii characters are alphanumerics or ., -, _, and ~",
      1 },
    { V3 "plugins: [{name: cors, ordering: {}}]", "plugins[0].ordering", "unknown field", 1 },
    /* consumers and credentials */
    { V3 "consumers: [{tags: [a]}]", "consumers[0]",
      "at least one of these fields must be non-empty: 'custom_id', 'username'", 1 },
    { V3 "consumers: [{username: a}, {username: a}]", "consumers[1]",
      "uniqueness violation: 'consumers' entity with username set to 'a' already declared", 1 },
    { V3 "consumers: [{custom_id: c}, {custom_id: c}]", "consumers[1]",
      "uniqueness violation: 'consumers' entity with custom_id set to 'c' already declared", 1 },
    { V3 "consumers: [{username: a, basicauth_credentials: [{username: a}]}]",
      "consumers[0].basicauth_credentials[0].password", "required field missing", 1 },
    { V3 "keyauth_credentials: [{key: k}]", "keyauth_credentials[0].consumer",
      "required field missing", 1 },
    { V3 "keyauth_credentials: [{key: k, consumer: nope}]", "keyauth_credentials[0].consumer",
      "invalid reference 'consumer: nope' (no such entry in 'consumers')", 1 },
    { V3 "consumers: [{username: a, keyauth_credentials: [{key: k}, {key: k}]}]",
      "consumers[0].keyauth_credentials[1]",
      "uniqueness violation: 'keyauth_credentials' entity with key set to 'k' already declared", 1 },
    { V3 "consumers: [{username: a, keyauth_credentials: [{key: k, consumer: a}]}]",
      "consumers[0].keyauth_credentials[0].consumer", "value must be null", 1 },
    { V3 "consumers: [{username: a, jwt_secrets: [{key: k, algorithm: RS256}]}]",
      "consumers[0].jwt_secrets[0].rsa_public_key", "required field missing", 1 },
    { V3 "consumers: [{username: a, jwt_secrets: [{algorithm: XX}]}]",
      "consumers[0].jwt_secrets[0].algorithm",
      "expected one of: HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512, PS256, "
      "PS384, PS512, EdDSA",
      1 },
    { V3 "consumers: [{username: a, acls: [{}]}]", "consumers[0].acls[0].group",
      "required field missing", 1 },
    { V3 "consumers: [{username: a, acls: [{group: g}, {group: g}]}]", "consumers[0].acls[1]",
      "uniqueness violation: 'acls' entity with consumer and group set to 'g' already declared", 1 },
    { V3 "consumers: [{username: a, hmacauth_credentials: [{username: u, extra: 1}]}]",
      "consumers[0].hmacauth_credentials[0].extra", "unknown field", 1 },
    { V3 "consumers: [{username: a, oauth2_credentials: [{name: n, client_type: x}]}]",
      "consumers[0].oauth2_credentials[0].client_type", "expected one of: confidential, public", 1 },
    { V3 "consumers: [{username: a, mtls_auth_credentials: [{subject_name: s, ca_certificate: " UUID1 "}]}]",
      "consumers[0].mtls_auth_credentials[0].ca_certificate",
      "invalid reference 'ca_certificate: " UUID1 "' (no such entry in 'ca_certificates')", 1 },
    /* upstreams and targets */
    { V3 "upstreams: [{}]", "upstreams[0].name", "required field missing", 1 },
    { V3 "upstreams: [{name: 1.2.3.4}]", "upstreams[0].name",
      "Invalid name ('1.2.3.4'); no ip addresses allowed", 1 },
    { V3 "upstreams: [{name: 'a:80'}]", "upstreams[0].name",
      "Invalid name ('a:80'); must be a valid hostname", 1 },
    { V3 "upstreams: [{name: u, slots: 5}]", "upstreams[0].slots",
      "value should be between 10 and 65536", 1 },
    { V3 "upstreams: [{name: u, algorithm: random}]", "upstreams[0].algorithm",
      "expected one of: consistent-hashing, least-connections, round-robin, latency", 1 },
    { V3 "upstreams: [{name: u, hash_on: header}]", "upstreams[0].hash_on_header",
      "required field missing", 1 },
    { V3 "upstreams: [{name: u, hash_on: ip, hash_fallback: cookie}]", "upstreams[0].hash_on_cookie",
      "required field missing", 1 },
    { V3 "upstreams: [{name: u, hash_fallback: ip}]", "upstreams[0].hash_fallback",
      "expected one of: none", 1 },
    { V3 "upstreams: [{name: u, healthchecks: {active: {concurrency: 0}}}]",
      "upstreams[0].healthchecks.active.concurrency", "value should be between 1 and 2147483648", 1 },
    { V3 "upstreams: [{name: u, healthchecks: {passive: {foo: 1}}}]",
      "upstreams[0].healthchecks.passive.foo", "unknown field", 1 },
    { V3 "upstreams: [{name: u, healthchecks: {active: {healthy: {http_statuses: [99]}}}}]",
      "upstreams[0].healthchecks.active.healthy.http_statuses[0]",
      "value should be between 100 and 999", 1 },
    { V3 "upstreams: [{name: u, targets: [{target: 'bad host!'}]}]",
      "upstreams[0].targets[0].target",
      "Invalid target ('bad host!'); not a valid hostname or ip address", 1 },
    { V3 "upstreams: [{name: u, targets: [{target: 'a:99999'}]}]", "upstreams[0].targets[0].target",
      "Invalid target ('a:99999'); not a valid hostname or ip address", 1 },
    { V3 "upstreams: [{name: u, targets: [{target: a, weight: 70000}]}]",
      "upstreams[0].targets[0].weight", "value should be between 0 and 65535", 1 },
    { V3 "targets: [{target: a, upstream: nope}]", "targets[0].upstream",
      "invalid reference 'upstream: nope' (no such entry in 'upstreams')", 1 },
    { V3 "targets: [{target: a}]", "targets[0].upstream", "required field missing", 1 },
    { V3 "upstreams: [{name: u, targets: [{target: a}]}]\ntargets: [{target: 'a:8000', upstream: u}]",
      "targets[0]",
      "uniqueness violation: 'targets' entity with target set to 'a:8000' already declared for "
      "upstream 'u'",
      1 },
    /* certificates, snis, CA certificates */
    { V3 "certificates: [{key: x}]", "certificates[0].cert", "required field missing", 0 },
    { V3 "snis: [{name: a.com}]", "snis[0].certificate", "required field missing", 1 },
    { V3 "snis: [{name: a.com, certificate: {id: " UUID1 "}}]", "snis[0].certificate",
      "invalid reference 'certificate: {\"id\":\"" UUID1 "\"}' (no such entry in 'certificates')", 1 },
    { V3 "snis: [{name: '1.2.3.4', certificate: " UUID1 "}]", "snis[0].name", "must not be an IP",
      0 },
    { V3 "ca_certificates: [{}]", "ca_certificates[0].cert", "required field missing", 1 },
    { V3 "ca_certificates: [{cert: x}]", "ca_certificates[0].cert", "invalid certificate: ", 1 },
};

LM_TEST(test_error_cases)
{
    for (size_t i = 0; i < LM_ARRAY_SIZE(t_cases); i++) {
        const t_case_t *c = &t_cases[i];
        lm_config_errors_t errs;
        lm_config_errors_init(&errs);
        lm_config_t *cfg = t_load(c->doc, &errs);
        bool prefix = c->msg[strlen(c->msg) - 1] == ' ';
        bool ok = cfg == NULL && t_find(&errs, c->path, c->msg, prefix) != NULL &&
                  (c->count == 0 || errs.count == (size_t)c->count);
        if (!ok) {
            LM_FAILF("case %zu [%s]: expected \"%s: %s\" (%d errors)", i, c->doc, c->path, c->msg,
                     c->count);
            t_dump(&errs);
        }
        lm_config_free(cfg);
        lm_config_errors_free(&errs);
    }
}

LM_TEST(test_entity_info_in_errors)
{
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    lm_config_t *cfg = t_load(V3 "services:\n- name: svc\n  host: h\n  id: " UUID1 "\n"
                                 "  tags: [k8s-name:web, k8s-namespace:shop]\n"
                                 "  routes:\n  - name: r0\n    paths: [/ok, bad]\n",
                              &errs);
    LM_CHECK(cfg == NULL && errs.count == 1);
    const lm_config_error_t *e = t_find(&errs, "services[0].routes[0].paths[1]",
                                        "should start with: / (fixed path) or ~/ (regex path)", false);
    LM_CHECK(e != NULL);
    if (e) {
        LM_CHECK_STR(e->entity_type, "route");
        LM_CHECK_STR(e->entity_name, "r0");
        LM_CHECK_STR(e->field, "paths[1]");
    }
    lm_config_errors_free(&errs);
    cfg = t_load(V3 "services:\n- name: svc\n  id: " UUID1 "\n  tags: [k8s-name:web]\n", &errs);
    e = errs.count == 1 ? &errs.items[0] : NULL;
    LM_CHECK(cfg == NULL && e != NULL);
    if (e) {
        LM_CHECK_STR(e->path, "services[0].host");
        LM_CHECK_STR(e->entity_type, "service");
        LM_CHECK_STR(e->entity_name, "svc");
        LM_CHECK_STR(e->entity_id, UUID1);
        LM_CHECK(e->num_entity_tags == 1 && strcmp(e->entity_tags[0], "k8s-name:web") == 0);
    }
    lm_config_errors_free(&errs);
}

LM_TEST(test_every_error_reported)
{
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    const char *doc = V3 "services:\n"
                         "- name: a\n  host: 'x:1'\n  retries: -1\n"
                         "  routes:\n  - paths: [nope, /ok]\n    methods: [get]\n"
                         "- name: a\n  url: 'http://'\n"
                         "routes:\n- service: missing\n  hosts: [ok.com]\n"
                         "plugins:\n- name: unknown-plugin\n"
                         "bogus: true\n";
    lm_config_t *cfg = t_load(doc, &errs);
    LM_CHECK(cfg == NULL);
    LM_CHECK(t_find(&errs, "services[0].host", "must not have a port", false));
    LM_CHECK(t_find(&errs, "services[0].retries", "value should be between 0 and 32767", false));
    LM_CHECK(t_find(&errs, "services[0].routes[0].paths[0]",
                    "should start with: / (fixed path) or ~/ (regex path)", false));
    LM_CHECK(t_find(&errs, "services[0].routes[0].methods[0]", "invalid value: get", false));
    LM_CHECK(t_find(&errs, "services[1]",
                    "uniqueness violation: 'services' entity with name set to 'a' already declared",
                    false));
    LM_CHECK(t_find(&errs, "services[1].url", "missing host in url", false));
    LM_CHECK(t_find(&errs, "routes[0].service",
                    "invalid reference 'service: missing' (no such entry in 'services')", false));
    LM_CHECK(t_find(&errs, "plugins[0].name",
                    "plugin 'unknown-plugin' not enabled; add it to the 'plugins' configuration "
                    "property",
                    false));
    LM_CHECK(t_find(&errs, "bogus", "unknown field", false));
    LM_CHECK_EQ_INT(errs.count, 9);
    if (errs.count != 9)
        t_dump(&errs);

    /* the Kong-shaped JSON body */
    cJSON *j = lm_config_errors_to_json(&errs);
    LM_CHECK_EQ_INT(cJSON_GetObjectItem(j, "code")->valuedouble, 14);
    LM_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "name")),
                 "invalid declarative configuration");
    const char *msg = cJSON_GetStringValue(cJSON_GetObjectItem(j, "message"));
    LM_CHECK(msg && strncmp(msg, "declarative config is invalid: {", 32) == 0);
    cJSON *fields = cJSON_GetObjectItem(j, "fields");
    LM_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(fields, "bogus")), "unknown field");
    cJSON *svc0 = cJSON_GetArrayItem(cJSON_GetObjectItem(fields, "services"), 0);
    LM_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(svc0, "host")), "must not have a port");
    cJSON *paths = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(svc0, "routes"), 0),
                                       "paths");
    LM_CHECK(cJSON_GetArraySize(paths) == 1);
    cJSON *svc1 = cJSON_GetArrayItem(cJSON_GetObjectItem(fields, "services"), 1);
    LM_CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItem(svc1, "@entity"), 0)),
                 "uniqueness violation: 'services' entity with name set to 'a' already declared");
    cJSON *flat = cJSON_GetObjectItem(j, "flattened_errors");
    LM_CHECK_EQ_INT(cJSON_GetArraySize(flat), 5); /* services[0], its route, services[1], routes[0], plugins[0] */
    cJSON *g0 = cJSON_GetArrayItem(flat, 0);
    LM_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(g0, "entity_type")), "service");
    LM_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(g0, "entity_name")), "a");
    LM_CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(g0, "errors")), 2);
    cJSON *g1 = cJSON_GetArrayItem(flat, 1);
    LM_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(g1, "entity_type")), "route");
    cJSON *e0 = cJSON_GetArrayItem(cJSON_GetObjectItem(g1, "errors"), 0);
    LM_CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(g1, "errors")), 2);
    LM_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(e0, "field")), "methods.1");
    LM_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(e0, "type")), "field");
    LM_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(e0, "path")),
                 "services[0].routes[0].methods[0]");
    cJSON *e1 = cJSON_GetArrayItem(cJSON_GetObjectItem(g1, "errors"), 1);
    LM_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(e1, "field")), "paths.1");
    cJSON *g2 = cJSON_GetArrayItem(flat, 2);
    cJSON *e2 = cJSON_GetArrayItem(cJSON_GetObjectItem(g2, "errors"), 0);
    LM_CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(e2, "type")), "entity");
    LM_CHECK(cJSON_GetObjectItem(e2, "field") == NULL);
    cJSON_Delete(j);
    lm_config_errors_free(&errs);
}

LM_TEST(test_certificate_errors)
{
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    lm_config_t *cfg = lm_config_load_file(TD "certs_invalid.yaml", &errs);
    LM_CHECK(cfg == NULL);
    LM_CHECK(t_find(&errs, "certificates[0].cert", "invalid certificate: ", true));
    LM_CHECK(t_find(&errs, "certificates[0].key", "invalid key: ", true));
    LM_CHECK(t_find(&errs, "certificates[1]", "certificate does not match key", false));
    LM_CHECK(t_find(&errs, "certificates[2]",
                    "certificate and alternative certificate need to have different type (e.g. "
                    "RSA and ECDSA), the provided certificates were both of the same type",
                    false));
    LM_CHECK(t_find(&errs, "certificates[3]",
                    "all or none of these fields must be set: 'cert_alt', 'key_alt'", false));
    LM_CHECK(t_find(&errs, "ca_certificates[0].cert",
                    "certificate does not appear to be a CA because it is missing the \"CA\" "
                    "basic constraint",
                    false));
    LM_CHECK(t_find(&errs, "ca_certificates[1].cert", "invalid certificate: ", true));
    LM_CHECK_EQ_INT(errs.count, 7);
    if (errs.count != 7)
        t_dump(&errs);
    lm_config_errors_free(&errs);
}

/* lm__print_canonical gives cJSON_PrintUnformatted's bytes (the hash the controller computes) */
static uint64_t t_rng = 88172645463325252ull;
static uint64_t t_rand(void)
{
    t_rng ^= t_rng << 13;
    t_rng ^= t_rng >> 7;
    t_rng ^= t_rng << 17;
    return t_rng;
}

static cJSON *t_random_value(int depth)
{
    static const double nums[] = { 0, -0.0, 1, -1, 80, 100, 426, 65535, 2147483647, 2147483648.0, -2147483649.0,
                                   0.1, 1.5, -3.25, 1e300, -1e-300, 123456789012345678.0, 3.141592653589793,
                                   9007199254740993.0, 1e21, 5e-324 };
    switch (depth > 4 ? t_rand() % 5 : t_rand() % 7) {
    case 0: return cJSON_CreateNull();
    case 1: return cJSON_CreateBool(t_rand() & 1);
    case 2: return cJSON_CreateNumber(t_rand() & 1 ? nums[t_rand() % LM_ARRAY_SIZE(nums)]
                                                    : (double)(int64_t)t_rand() / (double)(1 + t_rand() % 1000));
    case 3:
    case 4: {
        char buf[64];
        size_t n = t_rand() % sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = (char)(1 + t_rand() % 255); /* every byte but NUL: escapes, UTF-8 and invalid UTF-8 */
        buf[n] = '\0';
        return cJSON_CreateString(buf);
    }
    case 5: {
        cJSON *a = cJSON_CreateArray();
        for (size_t n = t_rand() % 5; n > 0; n--)
            cJSON_AddItemToArray(a, t_random_value(depth + 1));
        return a;
    }
    default: {
        cJSON *o = cJSON_CreateObject();
        for (size_t n = t_rand() % 5; n > 0; n--) {
            char key[16];
            snprintf(key, sizeof(key), "k%u\n\"%c", (unsigned)(t_rand() % 100), (char)(32 + t_rand() % 95));
            cJSON_AddItemToObject(o, key, t_random_value(depth + 1));
        }
        return o;
    }
    }
}

LM_TEST(test_canonical_print)
{
    for (int round = 0; round < 3000; round++) {
        cJSON *doc = t_random_value(0);
        char *want = cJSON_PrintUnformatted(doc), *got = lm__print_canonical(doc);
        LM_CHECK(want != NULL && got != NULL);
        if (want && got && strcmp(want, got) != 0) {
            fprintf(stderr, "    round %d:\n    want %s\n    got  %s\n", round, want, got);
            LM_CHECK(false);
            round = 1 << 30;
        }
        cJSON_free(want);
        cJSON_free(got);
        cJSON_Delete(doc);
    }
    /* the hash of a built document is md5 of that text */
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    const char *doc = "{\"_format_version\":\"3.0\",\"_comment\":\"\\u0001\\n\\\"x\\\\\u00e9\","
                      "\"services\":[{\"name\":\"s\",\"url\":\"http://a:1/p\",\"retries\":3,\"write_timeout\":1.5e3}]}";
    /* cJSON's print: escapes as given, UTF-8 as is, 1.5e3 as 1500 */
    const char *canon = "{\"_format_version\":\"3.0\",\"_comment\":\"\\u0001\\n\\\"x\\\\\u00e9\","
                        "\"services\":[{\"name\":\"s\",\"url\":\"http://a:1/p\",\"retries\":3,\"write_timeout\":1500}]}";
    lm_config_t *cfg = lm_config_load(doc, strlen(doc), NULL, &errs);
    LM_CHECK(cfg != NULL);
    if (cfg) {
        LM_CHECK_STR(cfg->canonical_json, canon);
        LM_CHECK_STR(cfg->hash, "894ab99d96f36e5a0cd80e81bf7e7c2f");
        lm_config_free(cfg);
    }
    lm_config_errors_free(&errs);
}

int main(void)
{
    LM_RUN(test_valid_v3);
    LM_RUN(test_valid_v21_regex_detection);
    LM_RUN(test_valid_json);
    LM_RUN(test_defaults);
    LM_RUN(test_yaml_core_schema);
    LM_RUN(test_parse_errors);
    LM_RUN(test_env_substitution);
    LM_RUN(test_error_cases);
    LM_RUN(test_entity_info_in_errors);
    LM_RUN(test_every_error_reported);
    LM_RUN(test_certificate_errors);
    LM_RUN(test_canonical_print);
    return lm_test_summary("config");
}

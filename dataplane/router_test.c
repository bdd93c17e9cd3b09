/*
 * router_test.c - unit tests for the router (Kong traditional_compatible
 * priorities). Routes are built by hand; the config parser is not used.
 */
#include "lm_router.h"
#include "lm_test.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- fixtures -------------------------------------------------------- */

#define MAXV 8

typedef struct {
    const char *name;
    const char *hosts[MAXV];
    const char *paths[MAXV];   /* "~..." = regex (stored without "~", as the model does) */
    const char *methods[MAXV];
    const char *snis[MAXV];
    const char *protocols[MAXV];
    struct { const char *name; const char *values[MAXV]; } headers[4];
    int regex_priority;
} rspec_t;

typedef struct {
    const char *method, *host, *path, *sni, *protocol;
    int port;
    const char *headers[16]; /* name, value, name, value, ..., NULL */
} qspec_t;

typedef struct {
    lm_arena_t *arena;
    lm_config_t cfg;
    lm_router_t *r;
} fx_t;

static size_t count(const char *const *v)
{
    size_t n = 0;
    while (n < MAXV && v[n])
        n++;
    return n;
}

static char **dup_list(lm_arena_t *a, const char *const *v, size_t n)
{
    char **out = lm_arena_alloc(a, (n + 1) * sizeof(char *));
    for (size_t i = 0; i < n; i++)
        out[i] = lm_arena_strdup(a, v[i]);
    out[n] = NULL;
    return out;
}

static lm_route_t *make_route(lm_arena_t *a, const rspec_t *s, size_t index)
{
    lm_route_t *r = lm_arena_calloc(a, sizeof(*r));
    r->index = index;
    r->name = lm_arena_strdup(a, s->name);
    r->num_hosts = count(s->hosts);
    r->hosts = dup_list(a, s->hosts, r->num_hosts);
    r->num_methods = count(s->methods);
    r->methods = dup_list(a, s->methods, r->num_methods);
    r->num_snis = count(s->snis);
    r->snis = dup_list(a, s->snis, r->num_snis);
    r->num_protocols = count(s->protocols);
    r->protocols = dup_list(a, s->protocols, r->num_protocols);
    if (r->num_protocols == 0) {
        static const char *const def[] = { "http", "https", NULL };
        r->num_protocols = 2;
        r->protocols = dup_list(a, def, 2);
    }
    r->num_paths = count(s->paths);
    r->paths = lm_arena_alloc(a, (r->num_paths + 1) * sizeof(char *));
    r->path_is_regex = lm_arena_calloc(a, r->num_paths + 1);
    for (size_t i = 0; i < r->num_paths; i++) {
        bool rx = s->paths[i][0] == '~';
        r->paths[i] = lm_arena_strdup(a, s->paths[i] + rx);
        r->path_is_regex[i] = rx;
    }
    size_t nh = 0;
    while (nh < 4 && s->headers[nh].name)
        nh++;
    r->num_headers = nh;
    r->headers = lm_arena_calloc(a, (nh + 1) * sizeof(lm_route_header_t));
    for (size_t i = 0; i < nh; i++) {
        r->headers[i].name = lm_arena_strdup(a, s->headers[i].name);
        r->headers[i].num_values = count(s->headers[i].values);
        r->headers[i].values = dup_list(a, s->headers[i].values, r->headers[i].num_values);
    }
    r->regex_priority = s->regex_priority;
    r->strip_path = true;
    r->https_redirect_status_code = 426;
    return r;
}

static lm_router_t *fx_build(fx_t *f, const rspec_t *specs, size_t n)
{
    f->arena = lm_arena_create(64 * 1024);
    memset(&f->cfg, 0, sizeof(f->cfg));
    f->cfg.arena = f->arena;
    f->cfg.num_routes = n;
    f->cfg.routes = lm_arena_alloc(f->arena, (n + 1) * sizeof(lm_route_t *));
    for (size_t i = 0; i < n; i++)
        f->cfg.routes[i] = make_route(f->arena, &specs[i], i);
    f->r = lm_router_build(&f->cfg, f->arena, NULL);
    return f->r;
}

static void fx_free(fx_t *f)
{
    lm_router_free(f->r);
    lm_arena_destroy(f->arena);
    f->r = NULL;
}

static int fx_match(fx_t *f, const qspec_t *q, lm_route_match_t *m)
{
    lm_http_header_t hdrs[8];
    size_t nh = 0;
    for (size_t i = 0; i + 1 < 16 && q->headers[i] && nh < 8; i += 2) {
        hdrs[nh].name = lm_str(q->headers[i]);
        hdrs[nh].value = lm_str(q->headers[i + 1]);
        nh++;
    }
    lm_route_req_t req = {
        .method = lm_str(q->method ? q->method : "GET"),
        .host = lm_str(q->host ? q->host : ""),
        .path = lm_str(q->path ? q->path : "/"),
        .sni = lm_str(q->sni ? q->sni : ""),
        .protocol = q->protocol ? q->protocol : "http",
        .port = q->port ? q->port : 8000,
        .headers = hdrs,
        .num_headers = nh,
    };
    return lm_router_match(f->r, &req, m);
}

/* name of the matched route, or "(none)" */
static const char *fx_name(fx_t *f, const qspec_t *q)
{
    lm_route_match_t m;
    if (fx_match(f, q, &m) != LM_OK)
        return "(none)";
    return m.route->name;
}

#define Q(...) (&(qspec_t){ __VA_ARGS__ })
#define BUILD(f, specs) fx_build((f), (specs), LM_ARRAY_SIZE(specs))

/* ---- hosts ----------------------------------------------------------- */

LM_TEST(test_host_exact)
{
    fx_t f;
    rspec_t s[] = {
        { .name = "ex", .hosts = { "example.com" } },
        { .name = "port", .hosts = { "example.com:8443" }, .paths = { "/p" } },
        { .name = "other", .hosts = { "other.com", "third.com" } },
    };
    LM_CHECK(BUILD(&f, s) != NULL);
    LM_CHECK_STR(fx_name(&f, Q(.host = "example.com")), "ex");
    LM_CHECK_STR(fx_name(&f, Q(.host = "EXAMPLE.Com")), "ex");
    LM_CHECK_STR(fx_name(&f, Q(.host = "example.com:1234")), "ex");
    LM_CHECK_STR(fx_name(&f, Q(.host = "example.org")), "(none)");
    LM_CHECK_STR(fx_name(&f, Q(.host = "third.com")), "other");
    LM_CHECK_STR(fx_name(&f, Q(.host = "www.example.com")), "(none)");
    /* a route host with a port needs the same port */
    LM_CHECK_STR(fx_name(&f, Q(.host = "example.com:8443", .path = "/p")), "port");
    LM_CHECK_STR(fx_name(&f, Q(.host = "example.com:9999", .path = "/p")), "ex");
    /* no port in Host: the local port counts */
    LM_CHECK_STR(fx_name(&f, Q(.host = "example.com", .path = "/p", .port = 8443)), "port");
    LM_CHECK_STR(fx_name(&f, Q(.host = "", .path = "/p")), "(none)");
    fx_free(&f);
}

LM_TEST(test_host_wildcards)
{
    fx_t f;
    rspec_t s[] = {
        { .name = "suffix", .hosts = { "*.example.com" } },
        { .name = "prefix", .hosts = { "example.*" } },
        { .name = "plain", .hosts = { "api.example.com" } },
        { .name = "wport", .hosts = { "*.port.com:81" } },
    };
    LM_CHECK(BUILD(&f, s) != NULL);
    LM_CHECK_STR(fx_name(&f, Q(.host = "a.example.com")), "suffix");
    LM_CHECK_STR(fx_name(&f, Q(.host = "a.b.Example.com")), "suffix");
    LM_CHECK_STR(fx_name(&f, Q(.host = "example.com")), "prefix");
    LM_CHECK_STR(fx_name(&f, Q(.host = "example.co.uk:80")), "prefix");
    LM_CHECK_STR(fx_name(&f, Q(.host = "www.example.org")), "(none)");
    LM_CHECK_STR(fx_name(&f, Q(.host = "notexample.com")), "(none)");
    /* plain host beats wildcard */
    LM_CHECK_STR(fx_name(&f, Q(.host = "api.example.com")), "plain");
    LM_CHECK_STR(fx_name(&f, Q(.host = "x.port.com:81")), "wport");
    LM_CHECK_STR(fx_name(&f, Q(.host = "x.port.com:82")), "(none)");
    fx_free(&f);
}

LM_TEST(test_plain_host_beats_wildcard_longer_path)
{
    fx_t f;
    rspec_t s[] = {
        { .name = "wild-long", .hosts = { "*.example.com" }, .paths = { "/a/very/long/path" } },
        { .name = "plain-short", .hosts = { "api.example.com" }, .paths = { "/" } },
        /* a route with one wildcard host among plain ones is not plain */
        { .name = "mixed", .hosts = { "api.example.com", "*.mixed.com" }, .paths = { "/a/very/long/path/x" } },
    };
    LM_CHECK(BUILD(&f, s) != NULL);
    LM_CHECK_STR(fx_name(&f, Q(.host = "api.example.com", .path = "/a/very/long/path/x")), "plain-short");
    LM_CHECK_STR(fx_name(&f, Q(.host = "b.example.com", .path = "/a/very/long/path")), "wild-long");
    fx_free(&f);
}

LM_TEST(test_long_and_v6_hosts)
{
    fx_t f;
    rspec_t s[] = {
        { .name = "any", .paths = { "/" } },
        { .name = "v6", .hosts = { "[::1]:8080" }, .paths = { "/" } },
    };
    LM_CHECK(BUILD(&f, s) != NULL);
    char big[400];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    LM_CHECK_STR(fx_name(&f, Q(.host = big)), "any");
    LM_CHECK_STR(fx_name(&f, Q(.host = "[::1]:8080")), "v6");
    LM_CHECK_STR(fx_name(&f, Q(.host = "[::1]:8081")), "any");
    fx_free(&f);
}

/* ---- paths ----------------------------------------------------------- */

LM_TEST(test_prefix_paths)
{
    fx_t f;
    rspec_t s[] = {
        { .name = "foo", .paths = { "/foo" } },
        { .name = "foobar", .paths = { "/foo/bar" } },
        { .name = "root", .paths = { "/" } },
    };
    LM_CHECK(BUILD(&f, s) != NULL);
    lm_route_match_t m;
    LM_CHECK_STR(fx_name(&f, Q(.path = "/foobar")), "foo"); /* no '/' boundary */
    LM_CHECK_STR(fx_name(&f, Q(.path = "/foo/bar/baz")), "foobar");
    LM_CHECK_STR(fx_name(&f, Q(.path = "/fo")), "root");
    LM_CHECK_EQ_INT(fx_match(&f, Q(.path = "/foo/ba"), &m), LM_OK);
    LM_CHECK_STR(m.route->name, "foo");
    LM_CHECK_EQ_INT(m.prefix_len, 4);
    LM_CHECK_EQ_INT(m.path_index, 0);
    LM_CHECK_EQ_INT(m.num_captures, 0);
    fx_free(&f);

    rspec_t s2[] = { { .name = "x", .paths = { "/x" } } };
    LM_CHECK(BUILD(&f, s2) != NULL);
    LM_CHECK_EQ_INT(fx_match(&f, Q(.path = "/y"), &m), LM_DECLINED);
    LM_CHECK_EQ_INT(fx_match(&f, Q(.path = ""), &m), LM_DECLINED);
    fx_free(&f);
}

LM_TEST(test_per_path_priority)
{
    /* Kong splits a route by prefix length: each path ranks on its own */
    fx_t f;
    rspec_t s[] = {
        { .name = "A", .paths = { "/a", "/abcdef" } },
        { .name = "B", .paths = { "/abc" } },
    };
    LM_CHECK(BUILD(&f, s) != NULL);
    lm_route_match_t m;
    LM_CHECK_EQ_INT(fx_match(&f, Q(.path = "/abcdefg"), &m), LM_OK);
    LM_CHECK_STR(m.route->name, "A");
    LM_CHECK_EQ_INT(m.path_index, 1);
    LM_CHECK_EQ_INT(m.prefix_len, 7);
    LM_CHECK_STR(fx_name(&f, Q(.path = "/abcx")), "B");
    LM_CHECK_STR(fx_name(&f, Q(.path = "/ax")), "A");
    fx_free(&f);
}

LM_TEST(test_regex_paths)
{
    fx_t f;
    rspec_t s[] = {
        { .name = "long-prefix", .paths = { "/users/123456789" } },
        { .name = "rx", .paths = { "~/users/(?<id>\\d+)/(\\w+)?" } },
        { .name = "rx-anchored", .paths = { "~/abc" } },
    };
    LM_CHECK(BUILD(&f, s) != NULL);
    lm_route_match_t m;
    /* a regex beats any prefix of the same weight */
    LM_CHECK_EQ_INT(fx_match(&f, Q(.path = "/users/123456789/posts/1"), &m), LM_OK);
    LM_CHECK_STR(m.route->name, "rx");
    LM_CHECK_EQ_INT(m.num_captures, 3);
    LM_CHECK_SLICE(m.captures[0], "/users/123456789/posts");
    LM_CHECK_SLICE(m.captures[1], "123456789");
    LM_CHECK_SLICE(m.capture_names[1], "id");
    LM_CHECK_SLICE(m.captures[2], "posts");
    LM_CHECK_EQ_INT(m.capture_names[2].len, 0);
    LM_CHECK_EQ_INT(m.prefix_len, strlen("/users/123456789/posts"));
    LM_CHECK(m.protocol_mismatch == false);
    /* unset group */
    LM_CHECK_EQ_INT(fx_match(&f, Q(.path = "/users/7/"), &m), LM_OK);
    LM_CHECK_STR(m.route->name, "rx");
    LM_CHECK(m.captures[2].ptr == NULL);
    /* anchored at the start */
    LM_CHECK_STR(fx_name(&f, Q(.path = "/abcd")), "rx-anchored");
    LM_CHECK_STR(fx_name(&f, Q(.path = "/x/abc")), "(none)");
    LM_CHECK_STR(fx_name(&f, Q(.path = "/users/123456789x")), "long-prefix");
    fx_free(&f);
}

LM_TEST(test_regex_literal_prefix)
{
    /* the literal-prefix shortcut must not hide optional or alternative text */
    fx_t f;
    rspec_t s[] = {
        { .name = "opt", .paths = { "~/ab?c" } },
        { .name = "alt", .paths = { "~/left|/right" } },
        { .name = "rep", .paths = { "~/x{0,1}y" } },
        { .name = "star", .paths = { "~/qq*z" } },
        { .name = "grp", .paths = { "~/api/(v1|v2)/x" } },
        { .name = "esc", .paths = { "~/a\\.b" } },
    };
    LM_CHECK(BUILD(&f, s) != NULL);
    LM_CHECK_STR(fx_name(&f, Q(.path = "/ac")), "opt");
    LM_CHECK_STR(fx_name(&f, Q(.path = "/right")), "alt");
    LM_CHECK_STR(fx_name(&f, Q(.path = "/y")), "rep");
    LM_CHECK_STR(fx_name(&f, Q(.path = "/qz")), "star");
    LM_CHECK_STR(fx_name(&f, Q(.path = "/api/v2/x")), "grp");
    LM_CHECK_STR(fx_name(&f, Q(.path = "/api/v3/x")), "(none)");
    LM_CHECK_STR(fx_name(&f, Q(.path = "/a.b")), "esc");
    LM_CHECK_STR(fx_name(&f, Q(.path = "/axb")), "(none)");
    fx_free(&f);
}

LM_TEST(test_regex_priority)
{
    fx_t f;
    rspec_t s[] = {
        { .name = "low", .paths = { "~/api/.*" }, .regex_priority = -5 },
        { .name = "zero-a", .paths = { "~/api/v1" } },
        { .name = "zero-b", .paths = { "~/api/v1/x" } },
        { .name = "high", .paths = { "~/api/v2" }, .regex_priority = 10 },
        { .name = "prefix", .paths = { "/api/v3/long/prefix" } },
    };
    LM_CHECK(BUILD(&f, s) != NULL);
    LM_CHECK_STR(fx_name(&f, Q(.path = "/api/v2/x")), "high");
    /* same regex_priority: document order (no length rule for regexes) */
    LM_CHECK_STR(fx_name(&f, Q(.path = "/api/v1/x")), "zero-a");
    /* negative priority still ranks above prefixes */
    LM_CHECK_STR(fx_name(&f, Q(.path = "/api/v3/long/prefix")), "low");
    fx_free(&f);
}

LM_TEST(test_regex_error)
{
    fx_t f;
    rspec_t s[] = { { .name = "bad", .paths = { "~/(unclosed" } } };
    LM_CHECK(BUILD(&f, s) == NULL);
    fx_free(&f);
}

/* ---- methods, headers, snis, protocols -------------------------------- */

LM_TEST(test_methods)
{
    fx_t f;
    rspec_t s[] = {
        { .name = "long", .paths = { "/very/long/path" } },
        { .name = "get", .paths = { "/" }, .methods = { "GET", "HEAD" } },
    };
    LM_CHECK(BUILD(&f, s) != NULL);
    /* more categories beat a longer path */
    LM_CHECK_STR(fx_name(&f, Q(.method = "GET", .path = "/very/long/path")), "get");
    LM_CHECK_STR(fx_name(&f, Q(.method = "HEAD", .path = "/x")), "get");
    LM_CHECK_STR(fx_name(&f, Q(.method = "POST", .path = "/very/long/path")), "long");
    LM_CHECK_STR(fx_name(&f, Q(.method = "get", .path = "/x")), "(none)");
    fx_free(&f);
}

LM_TEST(test_headers)
{
    fx_t f;
    rspec_t s[] = {
        { .name = "one", .hosts = { "h.com" }, .headers = { { "X-Version", { "v1", "v2" } } } },
        { .name = "two", .hosts = { "h.com" },
          .headers = { { "x-version", { "v1" } }, { "x-tier", { "~*^gold" } } } },
        { .name = "host-only", .hosts = { "h.com" } },
        { .name = "wild-two", .hosts = { "*.w.com" },
          .headers = { { "a", { "1" } }, { "b", { "2" } } } },
        { .name = "plain-one", .hosts = { "x.w.com" }, .headers = { { "a", { "1" } } } },
    };
    LM_CHECK(BUILD(&f, s) != NULL);
    LM_CHECK_STR(fx_name(&f, Q(.host = "h.com", .headers = { "x-version", "V2" })), "one");
    LM_CHECK_STR(fx_name(&f, Q(.host = "h.com", .headers = { "x-version", "v3" })), "host-only");
    LM_CHECK_STR(fx_name(&f, Q(.host = "h.com")), "host-only");
    /* more headers win */
    LM_CHECK_STR(fx_name(&f, Q(.host = "h.com", .headers = { "X-Tier", "GOLDEN", "x-version", "v1" })), "two");
    LM_CHECK_STR(fx_name(&f, Q(.host = "h.com", .headers = { "X-Tier", "silver", "x-version", "v1" })), "one");
    /* repeated header: any line may match */
    LM_CHECK_STR(fx_name(&f, Q(.host = "h.com", .headers = { "x-version", "nope", "x-version", "v2" })), "one");
    /* the plain host bit ranks above the header count */
    LM_CHECK_STR(fx_name(&f, Q(.host = "x.w.com", .headers = { "a", "1", "b", "2" })), "plain-one");
    LM_CHECK_STR(fx_name(&f, Q(.host = "y.w.com", .headers = { "a", "1", "b", "2" })), "wild-two");
    fx_free(&f);
}

LM_TEST(test_snis)
{
    fx_t f;
    rspec_t s[] = {
        { .name = "sni", .paths = { "/" }, .snis = { "a.com", "*.b.com" } },
        { .name = "fallback", .paths = { "/" } },
    };
    LM_CHECK(BUILD(&f, s) != NULL);
    LM_CHECK_STR(fx_name(&f, Q(.protocol = "https", .sni = "a.com")), "sni");
    LM_CHECK_STR(fx_name(&f, Q(.protocol = "https", .sni = "x.b.com")), "sni");
    LM_CHECK_STR(fx_name(&f, Q(.protocol = "grpcs", .sni = "a.com.")), "sni");
    LM_CHECK_STR(fx_name(&f, Q(.protocol = "https", .sni = "c.com")), "fallback");
    /* SNIs are not considered for plain-text requests */
    LM_CHECK_STR(fx_name(&f, Q(.protocol = "http", .sni = "")), "sni");
    fx_free(&f);
}

LM_TEST(test_protocols)
{
    fx_t f;
    rspec_t s[] = {
        { .name = "tls-only", .paths = { "/secure" }, .protocols = { "https" } },
        { .name = "grpc", .paths = { "/grpc" }, .protocols = { "grpc", "grpcs" } },
        { .name = "stream", .paths = { "/" }, .protocols = { "tcp", "tls" } },
    };
    LM_CHECK(BUILD(&f, s) != NULL);
    lm_route_match_t m;
    LM_CHECK_EQ_INT(fx_match(&f, Q(.path = "/secure", .protocol = "http"), &m), LM_OK);
    LM_CHECK_STR(m.route->name, "tls-only");
    LM_CHECK(m.protocol_mismatch); /* the proxy answers 426 or redirects */
    LM_CHECK_EQ_INT(fx_match(&f, Q(.path = "/secure", .protocol = "https"), &m), LM_OK);
    LM_CHECK(!m.protocol_mismatch);
    LM_CHECK_EQ_INT(fx_match(&f, Q(.path = "/grpc", .protocol = "http"), &m), LM_OK);
    LM_CHECK(m.protocol_mismatch);
    LM_CHECK_EQ_INT(fx_match(&f, Q(.path = "/grpc", .protocol = "grpc"), &m), LM_OK);
    LM_CHECK(!m.protocol_mismatch);
    /* stream routes are not in the HTTP router */
    LM_CHECK_STR(fx_name(&f, Q(.path = "/other")), "(none)");
    fx_free(&f);
}

/* ---- weights and ties ------------------------------------------------ */

LM_TEST(test_weight_and_ties)
{
    fx_t f;
    rspec_t s[] = {
        { .name = "first", .hosts = { "t.com" }, .paths = { "/same" } },
        { .name = "second", .hosts = { "t.com" }, .paths = { "/same" } },
        { .name = "hostless", .paths = { "/same/longer/path" } },
        { .name = "nopath", .hosts = { "t.com" }, .methods = { "PUT" } },
    };
    LM_CHECK(BUILD(&f, s) != NULL);
    lm_route_match_t m;
    LM_CHECK_STR(fx_name(&f, Q(.host = "t.com", .path = "/same")), "first");
    /* host + path (2) beats path only (1) */
    LM_CHECK_STR(fx_name(&f, Q(.host = "t.com", .path = "/same/longer/path")), "first");
    LM_CHECK_STR(fx_name(&f, Q(.host = "u.com", .path = "/same/longer/path")), "hostless");
    /* host + methods (2) ties with host + path (2) on weight; prefix length decides */
    LM_CHECK_STR(fx_name(&f, Q(.method = "PUT", .host = "t.com", .path = "/same")), "first");
    LM_CHECK_EQ_INT(fx_match(&f, Q(.method = "PUT", .host = "t.com", .path = "/other"), &m), LM_OK);
    LM_CHECK_STR(m.route->name, "nopath");
    LM_CHECK(m.path_index == SIZE_MAX);
    LM_CHECK_EQ_INT(m.prefix_len, 0);
    fx_free(&f);

    rspec_t s2[] = {
        { .name = "second", .hosts = { "t.com" }, .paths = { "/same" } },
        { .name = "first", .hosts = { "t.com" }, .paths = { "/same" } },
    };
    LM_CHECK(BUILD(&f, s2) != NULL);
    LM_CHECK_STR(fx_name(&f, Q(.host = "t.com", .path = "/same")), "second");
    fx_free(&f);
}

/* ---- scale ----------------------------------------------------------- */

LM_TEST(test_100k_routes)
{
    enum { N = 100000 };
    lm_arena_t *a = lm_arena_create(1 << 20);
    lm_config_t cfg = { .arena = a, .num_routes = N };
    cfg.routes = lm_arena_alloc(a, N * sizeof(lm_route_t *));
    for (size_t i = 0; i < N; i++) {
        char host[64], path[64];
        snprintf(host, sizeof(host), "svc%zu.example.com", i % 50000);
        snprintf(path, sizeof(path), "/api/v%zu/items", i);
        rspec_t s = { .name = "", .hosts = { host }, .paths = { path } };
        cfg.routes[i] = make_route(a, &s, i);
        cfg.routes[i]->name = lm_arena_sprintf(a, "r%zu", i);
    }
    lm_router_t *r = lm_router_build(&cfg, a, NULL);
    LM_CHECK(r != NULL);
    int ok = 0;
    for (size_t i = 0; i < N; i += 997) {
        char host[64], path[80], want[32];
        snprintf(host, sizeof(host), "SVC%zu.example.com:8000", i % 50000);
        snprintf(path, sizeof(path), "/api/v%zu/items/42", i);
        snprintf(want, sizeof(want), "r%zu", i);
        lm_route_req_t req = { .method = LM_STR("GET"), .host = lm_str(host), .path = lm_str(path),
                               .protocol = "http", .port = 8000 };
        lm_route_match_t m;
        if (lm_router_match(r, &req, &m) == LM_OK && strcmp(m.route->name, want) == 0)
            ok++;
    }
    LM_CHECK_EQ_INT(ok, (N + 996) / 997);
    lm_route_req_t miss = { .method = LM_STR("GET"), .host = LM_STR("svc1.example.com"),
                            .path = LM_STR("/api/v2/items"), .protocol = "http" };
    lm_route_match_t m;
    LM_CHECK_EQ_INT(lm_router_match(r, &miss, &m), LM_DECLINED);
    lm_router_free(r);
    lm_arena_destroy(a);
}

int main(void)
{
    LM_RUN(test_host_exact);
    LM_RUN(test_host_wildcards);
    LM_RUN(test_plain_host_beats_wildcard_longer_path);
    LM_RUN(test_long_and_v6_hosts);
    LM_RUN(test_prefix_paths);
    LM_RUN(test_per_path_priority);
    LM_RUN(test_regex_paths);
    LM_RUN(test_regex_literal_prefix);
    LM_RUN(test_regex_priority);
    LM_RUN(test_regex_error);
    LM_RUN(test_methods);
    LM_RUN(test_headers);
    LM_RUN(test_snis);
    LM_RUN(test_protocols);
    LM_RUN(test_weight_and_ties);
    LM_RUN(test_100k_routes);
    lm_router_thread_cleanup();
    return lm_test_summary("router");
}

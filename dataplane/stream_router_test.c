/* stream_router_test.c - stream routes by SNI, source and destination, with
 * Kong's priorities (more categories first, then document order). */
#include "lm_snapshot.h"
#include "lm_stream.h"
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

static struct sockaddr_storage lm__sa(const char *ip, int port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':'))
        uv_ip6_addr(ip, port, (struct sockaddr_in6 *)&ss);
    else
        uv_ip4_addr(ip, port, (struct sockaddr_in *)&ss);
    return ss;
}

static const char *lm__match(lm_snapshot_t *s, unsigned proto, const char *src, int sport, const char *dst, int dport,
                             const char *sni)
{
    struct sockaddr_storage a = lm__sa(src, sport), b = lm__sa(dst, dport);
    lm_stream_req_t req = { proto, (struct sockaddr *)&a, (struct sockaddr *)&b, sni };
    const lm_stream_route_t *r = lm_stream_router_match(s->stream, &req);
    return r ? r->route->name : "-";
}

static const char lm__doc[] =
    "_format_version: \"3.0\"\n"
    "services:\n"
    "- name: s\n"
    "  protocol: tcp\n"
    "  host: 127.0.0.1\n"
    "  port: 9000\n"
    "  routes:\n"
    "  - {name: port-9000, protocols: [tcp], destinations: [{port: 9000}]}\n"
    "  - {name: lan-9000, protocols: [tcp], sources: [{ip: 10.0.0.0/8}], destinations: [{port: 9000}]}\n"
    "  - {name: src-port, protocols: [tcp], sources: [{ip: 10.1.2.3, port: 5555}, {ip: '2001:db8::/32'}]}\n"
    "  - {name: dst-ip, protocols: [tcp], destinations: [{ip: 192.168.1.1}]}\n"
    "  - {name: tls-a, protocols: [tls], snis: [a.test]}\n"
    "  - {name: tls-wild, protocols: [tls], snis: ['*.wild.test', 'pre.*']}\n"
    "  - {name: pass-b, protocols: [tls_passthrough], snis: [b.test]}\n"
    "  - {name: pass-b-9443, protocols: [tls_passthrough], snis: [b.test], destinations: [{port: 9443}]}\n"
    "  - {name: http, paths: [/]}\n";

LM_TEST(priorities_and_conditions)
{
    lm_snapshot_t *s = lm__compile(lm__doc);
    LM_CHECK(s != NULL);
    if (!s)
        return;
    LM_CHECK_EQ_INT(lm_stream_router_count(s->stream), 8); /* not the HTTP route */
    LM_CHECK_STR(lm__match(s, LM_STREAM_TCP, "127.0.0.1", 4000, "127.0.0.1", 9000, ""), "port-9000");
    LM_CHECK_STR(lm__match(s, LM_STREAM_TCP, "10.9.9.9", 4000, "127.0.0.1", 9000, ""), "lan-9000");
    LM_CHECK_STR(lm__match(s, LM_STREAM_TCP, "10.1.2.3", 5555, "127.0.0.1", 9001, ""), "src-port");
    LM_CHECK_STR(lm__match(s, LM_STREAM_TCP, "10.1.2.3", 5556, "127.0.0.1", 9001, ""), "-");
    LM_CHECK_STR(lm__match(s, LM_STREAM_TCP, "2001:db8::7", 1, "::1", 9001, ""), "src-port");
    LM_CHECK_STR(lm__match(s, LM_STREAM_TCP, "::ffff:10.1.2.3", 5555, "::1", 9001, ""), "src-port");
    LM_CHECK_STR(lm__match(s, LM_STREAM_TCP, "127.0.0.1", 1, "192.168.1.1", 80, ""), "dst-ip");
    /* tls listener: tls and tls_passthrough routes only, by SNI */
    LM_CHECK_STR(lm__match(s, LM_STREAM_TLS, "127.0.0.1", 1, "127.0.0.1", 9000, "a.test"), "tls-a");
    LM_CHECK_STR(lm__match(s, LM_STREAM_TLS, "127.0.0.1", 1, "127.0.0.1", 9000, ""), "-");
    LM_CHECK_STR(lm__match(s, LM_STREAM_TLS, "127.0.0.1", 1, "127.0.0.1", 1, "x.wild.test"), "tls-wild");
    LM_CHECK_STR(lm__match(s, LM_STREAM_TLS, "127.0.0.1", 1, "127.0.0.1", 1, "wild.test"), "-");
    LM_CHECK_STR(lm__match(s, LM_STREAM_TLS, "127.0.0.1", 1, "127.0.0.1", 1, "pre.example"), "tls-wild");
    LM_CHECK_STR(lm__match(s, LM_STREAM_TLS, "127.0.0.1", 1, "127.0.0.1", 1, "b.test"), "pass-b");
    LM_CHECK_STR(lm__match(s, LM_STREAM_TLS, "127.0.0.1", 1, "127.0.0.1", 9443, "b.test"), "pass-b-9443");
    LM_CHECK_STR(lm__match(s, LM_STREAM_TCP, "127.0.0.1", 1, "127.0.0.1", 1, "a.test"), "-");
    lm_snapshot_unref(s);
}

LM_TEST(endpoints_in_the_model)
{
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    lm_config_opts_t o = { 0 };
    lm_config_t *cfg = lm_config_load(lm__doc, strlen(lm__doc), &o, &errs);
    LM_CHECK(cfg != NULL);
    if (cfg) {
        const lm_route_t *r = cfg->routes[2];
        LM_CHECK_EQ_INT(r->num_sources, 2);
        LM_CHECK_STR(r->sources[0].ip, "10.1.2.3");
        LM_CHECK_EQ_INT(r->sources[0].port, 5555);
        LM_CHECK_EQ_INT(r->sources[1].port, -1);
        LM_CHECK(cfg->routes[0]->num_destinations == 1 && cfg->routes[0]->destinations[0].ip == NULL);
        lm_config_free(cfg);
    }
    lm_config_errors_free(&errs);
}

int main(void)
{
    LM_RUN(priorities_and_conditions);
    LM_RUN(endpoints_in_the_model);
    return lm_test_summary("stream_router");
}

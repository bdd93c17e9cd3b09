/* balancer_test.c - algorithms in process: distribution, remapping, health */
#include "lm_snapshot.h"
#include "lm_test.h"

#include <stdio.h>
#include <stdlib.h>

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

/* n targets 127.0.0.1:9001.. with the given weights */
static char *lm__doc(const char *algo, const int *weights, size_t n, const char *extra)
{
    static char buf[8192];
    int o = snprintf(buf, sizeof(buf),
                     "_format_version: \"3.0\"\nservices:\n- name: s\n  host: up\n  routes: [{paths: [/]}]\n"
                     "upstreams:\n- name: up\n  algorithm: %s\n%s  targets:\n",
                     algo, extra ? extra : "");
    for (size_t i = 0; i < n; i++)
        o += snprintf(buf + o, sizeof(buf) - (size_t)o, "  - {target: \"127.0.0.%zu:%zu\", weight: %d}\n", i + 1,
                      9001 + i, weights[i]);
    return buf;
}

static uint64_t lm__rng = 88172645463325252ull;
static uint64_t lm__rand(void)
{
    lm__rng ^= lm__rng << 13;
    lm__rng ^= lm__rng >> 7;
    lm__rng ^= lm__rng << 17;
    return lm__rng;
}

LM_TEST(test_xxh32_vectors)
{
    /* the reference implementation's published values */
    LM_CHECK_EQ_INT(lm_xxh32("", 0, 0), 0x02CC5D05u);
    LM_CHECK_EQ_INT(lm_xxh32("a", 1, 0), 0x550D7456u);
    LM_CHECK_EQ_INT(lm_xxh32("abc", 3, 0), 0x32D153FFu);
    LM_CHECK_EQ_INT(lm_xxh32("Nobody inspects the spammish repetition", 39, 0), 0xE2293B2Fu);
}

LM_TEST(test_round_robin_weights)
{
    int w[] = { 1, 3 };
    lm_snapshot_t *s = lm__compile(lm__doc("round-robin", w, 2, NULL));
    LM_CHECK(s != NULL);
    if (!s)
        return;
    lm_balancer_t *b = s->services[0].bal;
    LM_CHECK_EQ_INT(b->rr_len, 4);
    int hits[2] = { 0 };
    char seq[16] = "";
    for (int i = 0; i < 1000; i++) {
        lm_pick_t p = { 0 };
        const lm_peer_t *peer = lm_balancer_pick(b, &p, 1, lm__rand());
        hits[peer->index]++;
        if (i < 8)
            seq[i] = (char)('a' + peer->index);
        lm_balancer_release(b, &p, 1, false);
    }
    LM_CHECK_EQ_INT(hits[0], 250); /* deterministic: exactly proportional */
    LM_CHECK_EQ_INT(hits[1], 750);
    LM_CHECK_STR(seq, "babbbabb"); /* smooth (nginx order): the light target is spread out */
    lm_snapshot_unref(s);
}

LM_TEST(test_least_connections)
{
    int w[] = { 100, 100, 100 };
    lm_snapshot_t *s = lm__compile(lm__doc("least-connections", w, 3, NULL));
    if (!s)
        return;
    lm_balancer_t *b = s->services[0].bal;
    lm_pick_t held[4] = { { 0 } };
    /* four requests in flight spread over the three, then the one with fewest gets the next */
    int count[3] = { 0 };
    for (int i = 0; i < 4; i++)
        count[lm_balancer_pick(b, &held[i], 1, lm__rand())->index]++;
    LM_CHECK(count[0] >= 1 && count[1] >= 1 && count[2] >= 1);
    lm_pick_t p = { 0 };
    const lm_peer_t *peer = lm_balancer_pick(b, &p, 1, lm__rand());
    LM_CHECK(count[peer->index] == 1);
    LM_CHECK_EQ_INT(atomic_load(&peer->state->in_flight), 2);
    lm_balancer_release(b, &p, 1, false);
    for (int i = 0; i < 4; i++)
        lm_balancer_release(b, &held[i], 1, false);
    for (int i = 0; i < 3; i++)
        LM_CHECK_EQ_INT(atomic_load(&b->peers[i].state->in_flight), 0);
    lm_snapshot_unref(s);
}

static int lm__owner(lm_balancer_t *b, const char *key)
{
    lm_pick_t p = { 0 };
    p.hash = lm_xxh32(key, strlen(key), 0);
    const lm_peer_t *peer = lm_balancer_pick(b, &p, 1, 0);
    lm_balancer_release(b, &p, 1, false);
    return peer ? (int)(peer->addr.ss_family == AF_INET
                            ? ntohs(((const struct sockaddr_in *)&peer->addr)->sin_port)
                            : 0)
                : -1;
}

LM_TEST(test_consistent_hashing_remap)
{
    int w[] = { 100, 100, 100, 100, 100 };
    lm_snapshot_t *a = lm__compile(lm__doc("consistent-hashing", w, 5, NULL));
    lm_snapshot_t *b4 = lm__compile(lm__doc("consistent-hashing", w, 4, NULL)); /* the last one removed */
    if (!a || !b4)
        return;
    lm_balancer_t *ba = a->services[0].bal, *bb = b4->services[0].bal;
    LM_CHECK_EQ_INT(ba->ring_size, 10000);
    int per[5] = { 0 }, moved = 0, n = 5000, wrong = 0;
    for (int i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof(key), "user-%d", i);
        int x = lm__owner(ba, key), y = lm__owner(bb, key);
        per[x - 9001]++;
        if (x != y) {
            moved++;
            if (x != 9005) /* only the removed target's keys may move */
                wrong++;
        }
        LM_CHECK(lm__owner(ba, key) == x); /* sticky */
    }
    for (int i = 0; i < 5; i++)
        LM_CHECK(per[i] > n / 5 / 2 && per[i] < n / 5 * 2);
    LM_CHECK(moved <= n / 5 + n / 20);
    LM_CHECK(wrong <= n / 100); /* collisions can shift a few */
    lm_snapshot_unref(a);
    lm_snapshot_unref(b4);
}

LM_TEST(test_passive_ejection_and_retry_exclusion)
{
    int w[] = { 100, 100 };
    lm_snapshot_t *s = lm__compile(lm__doc(
        "round-robin", w, 2,
        "  healthchecks:\n    passive:\n      healthy: {successes: 1}\n      unhealthy: {http_failures: 2, tcp_failures: 1}\n"));
    if (!s)
        return;
    lm_balancer_t *b = s->services[0].bal;
    LM_CHECK(b->hc.enabled && !b->hc.active && b->hc.cooldown);
    /* a retry never goes back to the address that failed */
    for (int i = 0; i < 10; i++) {
        lm_pick_t p = { 0 };
        const lm_peer_t *first = lm_balancer_pick(b, &p, 1, lm__rand());
        const lm_peer_t *second = lm_balancer_pick(b, &p, 1, lm__rand());
        LM_CHECK(first != second && !p.repeat);
        lm_balancer_release(b, &p, 1, false);
    }
    /* two 500s eject target 0 (a 200 in between resets the count) */
    lm_pick_t p = { 0 };
    p.peer = &b->peers[0];
    lm_balancer_report(b, &p, LM_HR_STATUS, 500, 1);
    lm_balancer_report(b, &p, LM_HR_STATUS, 200, 1);
    lm_balancer_report(b, &p, LM_HR_STATUS, 500, 1);
    LM_CHECK_EQ_INT(atomic_load(&b->peers[0].state->healthy), 1);
    lm_balancer_report(b, &p, LM_HR_STATUS, 503, 1);
    LM_CHECK_EQ_INT(atomic_load(&b->peers[0].state->healthy), 0);
    for (int i = 0; i < 20; i++) {
        lm_pick_t q = { 0 };
        LM_CHECK(lm_balancer_pick(b, &q, 2, lm__rand()) == &b->peers[1]);
        lm_balancer_release(b, &q, 2, false);
    }
    /* one TCP failure ejects the other: no peer at all */
    p.peer = &b->peers[1];
    lm_balancer_report(b, &p, LM_HR_TCP, 0, 1);
    lm_pick_t q = { 0 };
    LM_CHECK(lm_balancer_pick(b, &q, 2, lm__rand()) == NULL);
    LM_CHECK(!lm_balancer_healthy(b, 2, NULL, NULL));
    /* the cool-down brings them back */
    LM_CHECK(lm_balancer_pick(b, &q, 2 + LM_HEALTH_COOLDOWN_MS, lm__rand()) != NULL);
    lm_balancer_release(b, &q, 2, false);
    lm_snapshot_unref(s);
}

LM_TEST(test_state_survives_snapshots)
{
    int w[] = { 100, 100 };
    const char *extra = "  healthchecks:\n    passive:\n      unhealthy: {tcp_failures: 1}\n";
    lm_snapshot_t *a = lm__compile(lm__doc("round-robin", w, 2, extra));
    lm_snapshot_t *b = lm__compile(lm__doc("least-connections", w, 2, extra));
    if (!a || !b)
        return;
    LM_CHECK(a->services[0].bal->peers[1].state == b->services[0].bal->peers[1].state);
    lm_snapshot_unref(a);
    lm_snapshot_unref(b);
}

LM_TEST(test_healthcheck_config_errors)
{
    const char *doc = "_format_version: \"3.0\"\nupstreams:\n- name: up\n  healthchecks:\n    active:\n"
                      "      type: grpc\n      http_path: status\n      headers: {x-a: one}\n"
                      "      healthy: {interval: 5}\n";
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    lm_config_opts_t o = { 0 };
    lm_config_t *cfg = lm_config_load(doc, strlen(doc), &o, &errs);
    lm_snapshot_t *s = cfg ? lm_snapshot_compile(cfg, &errs) : NULL;
    LM_CHECK(s == NULL);
    LM_CHECK_EQ_INT(errs.count, 3);
    bool type = false, path = false, hdr = false;
    for (size_t i = 0; i < errs.count; i++) {
        type = type || strcmp(errs.items[i].path, "upstreams[0].healthchecks.active.type") == 0;
        path = path || (strcmp(errs.items[i].path, "upstreams[0].healthchecks.active.http_path") == 0 &&
                        strcmp(errs.items[i].message, "should start with: /") == 0);
        hdr = hdr || strcmp(errs.items[i].path, "upstreams[0].healthchecks.active.headers.x-a") == 0;
    }
    LM_CHECK(type && path && hdr);
    lm_config_errors_free(&errs);
}

int main(void)
{
    LM_RUN(test_xxh32_vectors);
    LM_RUN(test_round_robin_weights);
    LM_RUN(test_least_connections);
    LM_RUN(test_consistent_hashing_remap);
    LM_RUN(test_passive_ejection_and_retry_exclusion);
    LM_RUN(test_state_survives_snapshots);
    LM_RUN(test_healthcheck_config_errors);
    lm_metrics_shutdown();
    lm_health_shutdown();
    return lm_test_summary("balancer");
}

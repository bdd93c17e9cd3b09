/*
 * admin_upstreams.c - GET /upstreams/{name or id}/health on the admin API
 * (Kong's shape; the target lists are the entity API's, admin_api.c), and the
 * per-target series of /metrics. Runs on the control thread over the current
 * snapshot.
 */
#include "lm_health.h"
#include "lm_balancer.h"
#include "lm_proxy.h"

#include <arpa/inet.h>
#include <stdio.h>

static lm_balancer_t *lm__find(lm_snapshot_t *s, lm_str_t name)
{
    for (size_t i = 0; s && i < s->num_balancers; i++) {
        lm_balancer_t *b = s->balancers[i];
        if (!b->name)
            continue;
        if (lm_str_eq(name, lm_str(b->name)) || (b->up->id && lm_str_eq(name, lm_str(b->up->id))))
            return b;
    }
    return NULL;
}

static const char *lm__addr_health(lm_balancer_t *b, const lm_peer_t *p, uint64_t now)
{
    if (!b->hc.enabled)
        return "HEALTHCHECKS_OFF";
    return lm_health_up(p->state, &b->hc, now) ? "HEALTHY" : "UNHEALTHY";
}

/* Kong's target health: DNS_ERROR without addresses, else HEALTHY when one
 * address is, else UNHEALTHY / HEALTHCHECKS_OFF. */
static const char *lm__target_health(lm_balancer_t *b, const lm_bal_target_t *t, uint64_t now)
{
    if (t->count == 0)
        return "DNS_ERROR";
    const char *h = "HEALTHCHECKS_OFF";
    for (uint32_t i = 0; i < t->count; i++) {
        const char *a = lm__addr_health(b, &b->peers[t->first + i], now);
        if (strcmp(a, "HEALTHY") == 0)
            return a;
        h = a;
    }
    return h;
}

static void lm__ip_port(const lm_peer_t *p, char *ip, size_t cap, int *port)
{
    if (p->addr.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&p->addr;
        inet_ntop(AF_INET, &in->sin_addr, ip, (socklen_t)cap);
        *port = ntohs(in->sin_port);
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&p->addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, (socklen_t)cap);
        *port = ntohs(in6->sin6_port);
    }
}

static cJSON *lm__target_base(lm_balancer_t *b, const lm_bal_target_t *t)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "target", t->t->target);
    cJSON_AddNumberToObject(o, "weight", t->t->weight);
    cJSON *u = cJSON_AddObjectToObject(o, "upstream");
    if (b->up->id)
        cJSON_AddStringToObject(u, "id", b->up->id);
    else
        cJSON_AddStringToObject(u, "name", b->up->name);
    if (t->t->num_tags) {
        cJSON *tags = cJSON_AddArrayToObject(o, "tags");
        for (size_t i = 0; i < t->t->num_tags; i++)
            cJSON_AddItemToArray(tags, cJSON_CreateString(t->t->tags[i]));
    } else {
        cJSON_AddNullToObject(o, "tags");
    }
    return o;
}

/* Kong's balancer:getTargetStatus() */
static cJSON *lm__target_status(lm_balancer_t *b, const lm_bal_target_t *t, uint64_t now)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "host", t->t->host);
    cJSON_AddNumberToObject(d, "port", t->t->port);
    const char *dns = t->dns_error ? t->dns_error
                    : t->count == 0 ? "unknown"
                    : b->peers[t->first].addr.ss_family == AF_INET6 ? "AAAA" : "A";
    cJSON_AddStringToObject(d, "dns", dns);
    cJSON_AddNumberToObject(d, "nodeWeight", t->t->weight);
    uint64_t total = 0, un = 0;
    cJSON *addrs = cJSON_CreateArray();
    for (uint32_t i = 0; i < t->count; i++) {
        const lm_peer_t *p = &b->peers[t->first + i];
        char ip[64] = "";
        int port = 0;
        lm__ip_port(p, ip, sizeof(ip), &port);
        const char *h = lm__addr_health(b, p, now);
        total += (uint64_t)p->weight;
        if (strcmp(h, "UNHEALTHY") == 0)
            un += (uint64_t)p->weight;
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "ip", ip);
        cJSON_AddNumberToObject(a, "port", port);
        cJSON_AddNumberToObject(a, "weight", p->weight);
        cJSON_AddStringToObject(a, "health", h);
        cJSON_AddItemToArray(addrs, a);
    }
    cJSON *w = cJSON_AddObjectToObject(d, "weight");
    cJSON_AddNumberToObject(w, "total", (double)total);
    cJSON_AddNumberToObject(w, "unavailable", (double)un);
    cJSON_AddNumberToObject(w, "available", (double)(total - un));
    cJSON_AddItemToObject(d, "addresses", addrs);
    return d;
}

int lm_admin_upstreams(lm_server_t *srv, lm_str_t path, lm_str_t query, int *status, cJSON **body)
{
    static const char pre[] = "/upstreams/";
    if (path.len <= sizeof(pre) - 1 || memcmp(path.ptr, pre, sizeof(pre) - 1) != 0)
        return LM_DECLINED;
    lm_str_t rest = { path.ptr + sizeof(pre) - 1, path.len - (sizeof(pre) - 1) };
    if (rest.len && rest.ptr[rest.len - 1] == '/')
        rest.len--;
    const char *slash = memchr(rest.ptr, '/', rest.len);
    if (!slash)
        return LM_DECLINED;
    lm_str_t name = { rest.ptr, (size_t)(slash - rest.ptr) };
    lm_str_t what = { slash + 1, rest.len - name.len - 1 };
    if (!lm_str_eq(what, LM_STR("health")))
        return LM_DECLINED;
    lm_balancer_t *b = lm__find(srv->current, name);
    cJSON *j = cJSON_CreateObject();
    *body = j;
    if (!b) {
        *status = 404;
        cJSON_AddStringToObject(j, "message", "Not found");
        return LM_OK;
    }
    *status = 200;
    uint64_t now = lm_health_now_ms();
    bool balancer_health = false;
    for (const char *q = query.ptr, *e = query.ptr + query.len; q && q < e;) {
        const char *amp = memchr(q, '&', (size_t)(e - q));
        lm_str_t kv = { q, (size_t)((amp ? amp : e) - q) };
        if (lm_str_eq(kv, LM_STR("balancer_health=1")))
            balancer_health = true;
        q = amp ? amp + 1 : e;
    }
    if (balancer_health) { /* Kong's ?balancer_health=1 */
        cJSON *d = cJSON_AddObjectToObject(j, "data");
        uint64_t total = 0, un = 0;
        bool ok = lm_balancer_healthy(b, now, &total, &un);
        cJSON_AddStringToObject(d, "health", !b->hc.enabled ? "HEALTHCHECKS_OFF" : ok ? "HEALTHY" : "UNHEALTHY");
        if (b->up->id)
            cJSON_AddStringToObject(d, "id", b->up->id);
        if (b->hc.enabled) {
            cJSON *det = cJSON_AddObjectToObject(d, "details");
            cJSON_AddBoolToObject(det, "healthy", ok);
            cJSON *w = cJSON_AddObjectToObject(det, "weight");
            cJSON_AddNumberToObject(w, "total", (double)total);
            cJSON_AddNumberToObject(w, "unavailable", (double)un);
            cJSON_AddNumberToObject(w, "available", (double)(total - un));
            cJSON *hosts = cJSON_AddArrayToObject(det, "hosts");
            for (size_t i = 0; i < b->num_targets; i++)
                if (b->targets[i].t->weight > 0)
                    cJSON_AddItemToArray(hosts, lm__target_status(b, &b->targets[i], now));
        }
        cJSON_AddNullToObject(j, "next");
        return LM_OK;
    }
    cJSON *data = cJSON_AddArrayToObject(j, "data");
    for (size_t i = 0; i < b->num_targets; i++) {
        const lm_bal_target_t *t = &b->targets[i];
        cJSON *o = lm__target_base(b, t);
        cJSON_AddStringToObject(o, "health", lm__target_health(b, t, now));
        cJSON_AddItemToObject(o, "data", lm__target_status(b, t, now));
        cJSON_AddItemToArray(data, o);
    }
    cJSON_AddNullToObject(j, "next");
    return LM_OK;
}

void lm_health_target_health_render(lm_server_t *srv, lm_buf_t *out, const char *metric, const char *extra)
{
    lm_snapshot_t *s = srv->current;
    if (!s)
        return;
    uint64_t now = lm_health_now_ms();
    static const char *const states[] = { "healthchecks_off", "healthy", "unhealthy", "dns_error" };
    lm_buf_printf(out, "# HELP %s Health of each upstream target address: 1 for its "
                       "current state.\n# TYPE %s gauge\n", metric, metric);
    for (size_t i = 0; i < s->num_balancers; i++) {
        lm_balancer_t *b = s->balancers[i];
        for (size_t k = 0; b->name && k < b->num_targets; k++) {
            const lm_bal_target_t *t = &b->targets[k];
            if (t->t->weight == 0)
                continue;
            if (t->count == 0) {
                for (size_t st = 0; st < 4; st++)
                    lm_buf_printf(out,
                                  "%s{upstream=\"%s\",target=\"%s\",address=\"\","
                                  "state=\"%s\"%s} %d\n",
                                  metric, b->name, t->t->target, states[st], extra, st == 3);
                continue;
            }
            for (uint32_t a = 0; a < t->count; a++) {
                const lm_peer_t *p = &b->peers[t->first + a];
                const char *h = lm__addr_health(b, p, now);
                size_t cur = strcmp(h, "HEALTHY") == 0 ? 1 : strcmp(h, "UNHEALTHY") == 0 ? 2 : 0;
                for (size_t st = 0; st < 4; st++)
                    lm_buf_printf(out,
                                  "%s{upstream=\"%s\",target=\"%s\",address=\"%s\","
                                  "state=\"%s\"%s} %d\n",
                                  metric, b->name, t->t->target, p->key, states[st], extra, st == cur);
            }
        }
    }
}

void lm_health_metrics_render(lm_server_t *srv, lm_buf_t *out)
{
    lm_snapshot_t *s = srv->current;
    if (!s)
        return;
    lm_health_target_health_render(srv, out, "limen_upstream_target_health", "");
    static const struct {
        const char *name, *type, *help;
    } series[] = {
        { "limen_upstream_target_requests_total", "counter", "Tries sent to each upstream target address." },
        { "limen_upstream_target_failures_total", "counter",
          "Failed tries per upstream target address: kind tcp (connect or connection errors), timeout, http_5xx." },
        { "limen_upstream_target_retries_total", "counter",
          "Requests retried on another address after a failed try on this one." },
        { "limen_upstream_target_in_flight", "gauge", "Requests using each address now (every worker)." },
    };
    for (size_t m = 0; m < LM_ARRAY_SIZE(series); m++) {
        lm_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", series[m].name, series[m].help, series[m].name,
                      series[m].type);
        for (size_t i = 0; i < s->num_balancers; i++) {
            lm_balancer_t *b = s->balancers[i];
            for (size_t k = 0; b->name && k < b->num_peers; k++) {
                const lm_peer_t *p = &b->peers[k];
                lm_target_state_t *st = p->state;
                char labels[512];
                snprintf(labels, sizeof(labels), "upstream=\"%s\",target=\"%s\",address=\"%s\"", b->name,
                         b->targets[p->target].t->target, p->key);
                switch (m) {
                case 0: lm_buf_printf(out, "%s{%s} %llu\n", series[m].name, labels,
                                      (unsigned long long)atomic_load(&st->requests)); break;
                case 1:
                    lm_buf_printf(out, "%s{%s,kind=\"tcp\"} %llu\n", series[m].name, labels,
                                  (unsigned long long)atomic_load(&st->fail_tcp));
                    lm_buf_printf(out, "%s{%s,kind=\"timeout\"} %llu\n", series[m].name, labels,
                                  (unsigned long long)atomic_load(&st->fail_timeout));
                    lm_buf_printf(out, "%s{%s,kind=\"http_5xx\"} %llu\n", series[m].name, labels,
                                  (unsigned long long)atomic_load(&st->resp_5xx));
                    break;
                case 2: lm_buf_printf(out, "%s{%s} %llu\n", series[m].name, labels,
                                      (unsigned long long)atomic_load(&st->retries)); break;
                default: lm_buf_printf(out, "%s{%s} %lld\n", series[m].name, labels,
                                       (long long)LM_MAX(0, atomic_load(&st->in_flight))); break;
                }
            }
        }
    }
}

/* Splits "/upstreams/U/targets/T[/ADDRESS]/healthy|unhealthy"; false for other paths. */
static bool lm__health_path(lm_str_t path, lm_str_t *up, lm_str_t *target, lm_str_t *addr, bool *healthy)
{
    lm_str_t seg[6];
    size_t n = 0;
    const char *p = path.ptr, *e = path.ptr + path.len;
    if (p < e && *p == '/')
        p++;
    while (p < e && n < 6) {
        const char *slash = memchr(p, '/', (size_t)(e - p));
        const char *end = slash ? slash : e;
        seg[n++] = (lm_str_t){ p, (size_t)(end - p) };
        p = slash ? slash + 1 : e;
    }
    if (p < e || n < 5 || !lm_str_eq(seg[0], LM_STR("upstreams")) || !lm_str_eq(seg[2], LM_STR("targets")))
        return false;
    lm_str_t verb = seg[n - 1];
    if (!lm_str_eq(verb, LM_STR("healthy")) && !lm_str_eq(verb, LM_STR("unhealthy")))
        return false;
    *healthy = lm_str_eq(verb, LM_STR("healthy"));
    *up = seg[1];
    *target = seg[3];
    *addr = n == 6 ? seg[4] : LM_STR_NULL;
    return true;
}

int lm_admin_upstream_set_health(lm_server_t *srv, lm_str_t path, int *status, cJSON **body)
{
    lm_str_t upn, tn, addr;
    bool healthy;
    if (!lm__health_path(path, &upn, &tn, &addr, &healthy))
        return LM_DECLINED;
    *body = NULL;
    lm_balancer_t *b = lm__find(srv->current, upn);
    const lm_bal_target_t *t = NULL;
    for (size_t i = 0; b && i < b->num_targets; i++) {
        const lm_target_t *ct = b->targets[i].t;
        if (ct && lm_str_eq(tn, lm_str(ct->target)))
            t = &b->targets[i];
    }
    if (!t) {
        *status = 404;
        *body = cJSON_CreateObject();
        cJSON_AddStringToObject(*body, "message", "Not found");
        return LM_OK;
    }
    if (!b->hc.enabled) { /* Kong's answer when the upstream has no health checker */
        *status = 400;
        *body = cJSON_CreateObject();
        char msg[300];
        snprintf(msg, sizeof(msg), "no healthchecker found for %s", b->name);
        cJSON_AddStringToObject(*body, "message", msg);
        return LM_OK;
    }
    size_t done = 0;
    for (uint32_t i = 0; i < t->count; i++) {
        const lm_peer_t *p = &b->peers[t->first + i];
        if (addr.ptr && !lm_str_eq(addr, lm_str(p->key)))
            continue;
        if (p->state) {
            lm_health_set(p->state, &b->hc, healthy);
            done++;
        }
    }
    if (addr.ptr && done == 0) {
        *status = 404;
        *body = cJSON_CreateObject();
        cJSON_AddStringToObject(*body, "message", "Not found");
        return LM_OK;
    }
    *status = 204;
    return LM_OK;
}

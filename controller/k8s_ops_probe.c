/*
 * k8s_ops_probe.c - drives lm_leader, lm_events and lm_status against a real
 * API server for e2e/t/test_k8s_ops.py. Prints one JSON object per line on
 * stdout; logs (lm_log) go to stderr.
 *
 *   k8s_ops_probe --kubeconfig F [options] leader NS NAME IDENTITY
 *       {"leading":true|false,"identity":ID} on every change; on SIGTERM/SIGINT
 *       stops (releasing the Lease if held): {"stopped":true,"released":B}, exit 0
 *   k8s_ops_probe --kubeconfig F [options] event API_VERSION KIND NS|- NAME UID|- TYPE REASON MESSAGE [TIMES]
 *       posts TIMES (1) times, --interval MS apart (0: all at once),
 *       --distinct: " #i" appended to each message; then the stats
 *   k8s_ops_probe --kubeconfig F [options] ingress-status ADDR,ADDR|- NS/NAME...
 *       reads the Ingresses (one missing is synced as a bare object: a 404),
 *       syncs them to the addresses (--then ADDR,ADDR: and at once again to
 *       these, from the same objects), then the stats
 *   k8s_ops_probe --kubeconfig F [options] condition RESOURCE NS/NAME|NAME True|False REASON MESSAGE
 *       reads the limen.dev/v1 object, sets its Programmed condition, then the stats
 *
 * options: --lease S --renew S --retry S (leader), --burst N --rate R (events),
 *          --interval MS --distinct (event), --then ADDRS (ingress-status), --log-level L
 * Exit status: 0 done, 1 failed, 2 usage.
 */
#include "lm_events.h"
#include "lm_kube.h"
#include "lm_leader.h"
#include "lm_log.h"
#include "lm_status.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    uv_loop_t *loop;
    lm_curl_t *curl;
    lm_kube_t *kube;
    uv_signal_t sigterm, sigint;
    uv_timer_t timer;  /* event pacing and waiting for writes to finish */
    uint64_t deadline; /* give up waiting (ms, loop time) */
    int rc;
    const char *identity;
    lm_leader_t *leader;
    lm_events_t *events;
    lm_status_t *status;
    /* event */
    const char *ev[8];
    unsigned times, posted, interval_ms, burst;
    double rate;
    bool distinct;
    /* ingress-status / condition */
    char **names;
    size_t num_names, got;
    cJSON **objs;
    const char *addrs, *then_addrs;
    const char *resource, *cond_status, *reason, *message;
} lm__probe_t;

static void lm__print(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void lm__print(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static void lm__close_cb(uv_handle_t *h)
{
    LM_UNUSED(h);
}

/* Frees what is left; the loop then runs out of handles and uv_run returns. */
static void lm__finish(lm__probe_t *p, int rc)
{
    p->rc = rc;
    uv_close((uv_handle_t *)&p->sigterm, lm__close_cb);
    uv_close((uv_handle_t *)&p->sigint, lm__close_cb);
    uv_close((uv_handle_t *)&p->timer, lm__close_cb);
    if (p->events)
        lm_events_free(p->events);
    if (p->status)
        lm_status_free(p->status);
    p->events = NULL;
    p->status = NULL;
    lm_kube_free(p->kube);
    lm_curl_free(p->curl);
    p->kube = NULL;
    p->curl = NULL;
}

static void lm__on_finish(uv_timer_t *t)
{
    lm__probe_t *p = t->data;
    lm__finish(p, p->rc);
}

/* From a callback of lm_kube or lm_leader: finish from the loop, not inside them. */
static void lm__finish_later(lm__probe_t *p, int rc)
{
    p->rc = rc;
    uv_timer_start(&p->timer, lm__on_finish, 0, 0);
}

/* ---- leader --------------------------------------------------------------------- */

static void lm__on_leader(bool leading, void *data)
{
    lm__probe_t *p = data;
    if (leading != lm_leader_is_leader(p->leader))
        lm_log_error("probe: callback says %d, lm_leader_is_leader %d", leading, !leading);
    lm__print("{\"leading\":%s,\"identity\":\"%s\"}", leading ? "true" : "false", p->identity);
}

static void lm__on_stopped(bool released, void *data)
{
    lm__probe_t *p = data;
    lm__print("{\"stopped\":true,\"released\":%s}", released ? "true" : "false");
    lm__finish_later(p, 0);
}

static void lm__on_signal(uv_signal_t *s, int signum)
{
    lm__probe_t *p = s->data;
    LM_UNUSED(signum);
    uv_signal_stop(&p->sigterm);
    uv_signal_stop(&p->sigint);
    if (p->leader) {
        lm_leader_t *l = p->leader;
        p->leader = NULL;
        lm_leader_stop_then(l, lm__on_stopped, p);
    } else {
        lm__finish(p, 1);
    }
}

/* ---- waiting for writes ------------------------------------------------------------ */

static size_t lm__in_flight(const lm__probe_t *p, size_t *queued)
{
    *queued = 0;
    if (p->events) {
        lm_events_stats_t st;
        lm_events_stats(p->events, &st);
        return st.in_flight;
    }
    if (p->status) {
        lm_status_stats_t st;
        lm_status_stats(p->status, &st);
        *queued = st.queued;
        return st.in_flight;
    }
    return 0;
}

static void lm__report(lm__probe_t *p, bool timed_out)
{
    if (p->events) {
        lm_events_stats_t st;
        lm_events_stats(p->events, &st);
        lm__print("{\"created\":%llu,\"patched\":%llu,\"folded\":%llu,\"dropped_rate\":%llu,"
                  "\"dropped_disabled\":%llu,\"failures\":%llu,\"remembered\":%zu,\"timed_out\":%s}",
                  (unsigned long long)st.created, (unsigned long long)st.patched, (unsigned long long)st.folded,
                  (unsigned long long)st.dropped_rate, (unsigned long long)st.dropped_disabled,
                  (unsigned long long)st.failures, st.remembered, timed_out ? "true" : "false");
    } else if (p->status) {
        lm_status_stats_t st;
        lm_status_stats(p->status, &st);
        lm__print("{\"writes\":%llu,\"unchanged\":%llu,\"superseded\":%llu,\"not_found\":%llu,\"failures\":%llu,"
                  "\"max_in_flight\":%zu,\"timed_out\":%s}",
                  (unsigned long long)st.writes, (unsigned long long)st.unchanged,
                  (unsigned long long)st.superseded, (unsigned long long)st.not_found,
                  (unsigned long long)st.failures, st.max_in_flight, timed_out ? "true" : "false");
    }
}

static void lm__on_wait(uv_timer_t *t)
{
    lm__probe_t *p = t->data;
    size_t q, n = lm__in_flight(p, &q);
    bool timed_out = uv_now(p->loop) > p->deadline;
    if ((n || q) && !timed_out)
        return;
    uv_timer_stop(t);
    lm__report(p, timed_out);
    lm__finish(p, timed_out ? 1 : 0);
}

static void lm__wait(lm__probe_t *p)
{
    p->deadline = uv_now(p->loop) + 30000;
    uv_timer_start(&p->timer, lm__on_wait, 0, 10);
}

/* ---- event -------------------------------------------------------------------------- */

static void lm__post_one(lm__probe_t *p)
{
    char msg[2048];
    if (p->distinct)
        snprintf(msg, sizeof(msg), "%s #%u", p->ev[7], p->posted);
    else
        snprintf(msg, sizeof(msg), "%s", p->ev[7]);
    lm_event_post(p->events, p->ev[0], p->ev[1], p->ev[2], p->ev[3], p->ev[4], p->ev[5], p->ev[6], msg);
    p->posted++;
}

static void lm__on_pace(uv_timer_t *t)
{
    lm__probe_t *p = t->data;
    lm__post_one(p);
    if (p->posted >= p->times) {
        uv_timer_stop(t);
        lm__wait(p);
    }
}

static int lm__start_event(lm__probe_t *p)
{
    p->events = lm_events_new(p->kube, "limen-controller", p->identity);
    if (!p->events)
        return LM_ERROR;
    lm_events_enable(p->events, true);
    if (p->burst || p->rate >= 0)
        lm_events_set_rate(p->events, p->burst ? p->burst : 25, p->rate >= 0 ? p->rate : 1);
    if (p->interval_ms) {
        uv_timer_start(&p->timer, lm__on_pace, 0, p->interval_ms);
        return LM_OK;
    }
    while (p->posted < p->times)
        lm__post_one(p);
    lm__wait(p);
    return LM_OK;
}

/* ---- ingress-status / condition --------------------------------------------------------- */

static void lm__all_read(lm__probe_t *p)
{
    p->status = lm_status_new(p->kube);
    if (!p->status) {
        lm__finish_later(p, 1);
        return;
    }
    lm_status_enable(p->status, true);
    if (p->resource) {
        lm_status_set_condition(p->status, p->objs[0], p->resource, strcmp(p->cond_status, "True") == 0, p->reason,
                                p->message);
    } else {
        const char *addrs[64];
        size_t n = 0;
        char *copy = strdup(strcmp(p->addrs, "-") == 0 ? "" : p->addrs);
        for (char *save = NULL, *a = strtok_r(copy, ",", &save); a && n < 64; a = strtok_r(NULL, ",", &save))
            addrs[n++] = a;
        lm_status_set_addresses(p->status, addrs, n);
        lm_status_sync_ingresses(p->status, (const cJSON *const *)p->objs, p->num_names);
        free(copy);
        if (p->then_addrs) { /* a second sync at once, from the same (now stale) objects */
            n = 0;
            copy = strdup(p->then_addrs);
            for (char *save = NULL, *a = strtok_r(copy, ",", &save); a && n < 64; a = strtok_r(NULL, ",", &save))
                addrs[n++] = a;
            lm_status_set_addresses(p->status, addrs, n);
            lm_status_sync_ingresses(p->status, (const cJSON *const *)p->objs, p->num_names);
            free(copy);
        }
    }
    lm__wait(p);
}

typedef struct {
    lm__probe_t *p;
    size_t i;
} lm__read_t;

static void lm__on_read(int status, const cJSON *body, const char *err, void *data)
{
    lm__read_t *r = data;
    lm__probe_t *p = r->p;
    size_t i = r->i;
    free(r);
    if (status == 200 && body) {
        p->objs[i] = cJSON_Duplicate(body, true);
    } else if (status == 404 && !p->resource) {
        /* a bare Ingress that does not exist: its status write gets a 404 */
        char *slash = strchr(p->names[i], '/');
        cJSON *o = cJSON_CreateObject(), *m = cJSON_AddObjectToObject(o, "metadata");
        cJSON_AddItemToObject(m, "namespace", cJSON_CreateString(""));
        cJSON_AddStringToObject(m, "name", slash + 1);
        *slash = '\0';
        cJSON_ReplaceItemInObject(m, "namespace", cJSON_CreateString(p->names[i]));
        *slash = '/';
        p->objs[i] = o;
    } else {
        lm_log_error("probe: reading %s: %d %s", p->names[i], status, err ? err : "");
        lm__print("{\"error\":\"reading %s: HTTP %d\"}", p->names[i], status);
    }
    if (++p->got < p->num_names)
        return;
    for (size_t j = 0; j < p->num_names; j++)
        if (!p->objs[j]) {
            lm__finish_later(p, 1);
            return;
        }
    lm__all_read(p);
}

static int lm__read_all(lm__probe_t *p)
{
    p->objs = calloc(p->num_names, sizeof(*p->objs));
    if (!p->objs)
        return LM_ERROR;
    for (size_t i = 0; i < p->num_names; i++) {
        char path[768];
        char *slash = strchr(p->names[i], '/');
        if (p->resource && !slash)
            snprintf(path, sizeof(path), "/apis/limen.dev/v1/%s/%s", p->resource, p->names[i]);
        else if (slash) {
            *slash = '\0';
            snprintf(path, sizeof(path), "%s/namespaces/%s/%s/%s",
                     p->resource ? "/apis/limen.dev/v1" : "/apis/networking.k8s.io/v1", p->names[i],
                     p->resource ? p->resource : "ingresses", slash + 1);
            *slash = '/';
        } else {
            fprintf(stderr, "k8s_ops_probe: %s: NS/NAME expected\n", p->names[i]);
            return LM_ERROR;
        }
        lm__read_t *r = malloc(sizeof(*r));
        if (!r)
            return LM_ERROR;
        r->p = p;
        r->i = i;
        if (lm_kube_request(p->kube, "GET", path, NULL, NULL, lm__on_read, r) != LM_OK) {
            free(r);
            return LM_ERROR;
        }
    }
    return LM_OK;
}

/* ---- main ---------------------------------------------------------------------------------- */

static int lm__usage(void)
{
    fprintf(stderr,
            "usage: k8s_ops_probe --kubeconfig F [--lease S --renew S --retry S --burst N --rate R\n"
            "                     --interval MS --distinct --then ADDRS --log-level L] COMMAND ...\n"
            "  leader NS NAME IDENTITY\n"
            "  event API_VERSION KIND NS|- NAME UID|- TYPE REASON MESSAGE [TIMES]\n"
            "  ingress-status ADDR,ADDR|- NS/NAME...\n"
            "  condition RESOURCE NS/NAME|NAME True|False REASON MESSAGE\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *kubeconfig = NULL;
    unsigned lease = 0, renew = 0, retry = 0, burst = 0;
    double rate = -1;
    lm__probe_t p;
    memset(&p, 0, sizeof(p));
    p.times = 1;
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--distinct") == 0) {
            p.distinct = true;
            continue;
        }
        if (i + 1 >= argc)
            return lm__usage();
        const char *v = argv[++i];
        if (strcmp(a, "--kubeconfig") == 0)
            kubeconfig = v;
        else if (strcmp(a, "--lease") == 0)
            lease = (unsigned)atoi(v);
        else if (strcmp(a, "--renew") == 0)
            renew = (unsigned)atoi(v);
        else if (strcmp(a, "--retry") == 0)
            retry = (unsigned)atoi(v);
        else if (strcmp(a, "--burst") == 0)
            burst = (unsigned)atoi(v);
        else if (strcmp(a, "--rate") == 0)
            rate = atof(v);
        else if (strcmp(a, "--then") == 0)
            p.then_addrs = v;
        else if (strcmp(a, "--interval") == 0)
            p.interval_ms = (unsigned)atoi(v);
        else if (strcmp(a, "--log-level") == 0 && lm_log_parse_level(v) >= 0)
            lm_log_set_level((lm_log_level_t)lm_log_parse_level(v));
        else
            return lm__usage();
    }
    if (i >= argc)
        return lm__usage();
    const char *cmd = argv[i++];
    char **args = argv + i;
    int nargs = argc - i;

    char err[512];
    lm_kube_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    if (lm_kube_config_load(kubeconfig, NULL, &cfg, err, sizeof(err)) != LM_OK) {
        fprintf(stderr, "k8s_ops_probe: %s\n", err);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    p.loop = uv_default_loop();
    p.curl = lm_curl_new(p.loop);
    p.kube = p.curl ? lm_kube_new(p.loop, p.curl, &cfg) : NULL;
    if (!p.kube) {
        fprintf(stderr, "k8s_ops_probe: out of memory\n");
        return 1;
    }
    uv_signal_init(p.loop, &p.sigterm);
    uv_signal_init(p.loop, &p.sigint);
    uv_timer_init(p.loop, &p.timer);
    p.sigterm.data = p.sigint.data = p.timer.data = &p;
    uv_signal_start(&p.sigterm, lm__on_signal, SIGTERM);
    uv_signal_start(&p.sigint, lm__on_signal, SIGINT);
    p.identity = "k8s-ops-probe";

    int rc = LM_ERROR;
    if (strcmp(cmd, "leader") == 0 && nargs == 3) {
        p.identity = args[2];
        p.leader = lm_leader_start(p.kube, args[0], args[1], args[2], lease, renew, retry, lm__on_leader, &p);
        rc = p.leader ? LM_OK : LM_ERROR;
    } else if (strcmp(cmd, "event") == 0 && (nargs == 8 || nargs == 9)) {
        for (int j = 0; j < 8; j++)
            p.ev[j] = strcmp(args[j], "-") == 0 ? "" : args[j];
        if (nargs == 9)
            p.times = (unsigned)atoi(args[8]);
        p.burst = burst;
        p.rate = rate;
        rc = lm__start_event(&p);
    } else if (strcmp(cmd, "ingress-status") == 0 && nargs >= 2) {
        p.addrs = args[0];
        p.names = args + 1;
        p.num_names = (size_t)nargs - 1;
        rc = lm__read_all(&p);
    } else if (strcmp(cmd, "condition") == 0 && nargs == 5) {
        p.resource = args[0];
        p.names = args + 1;
        p.num_names = 1;
        p.cond_status = args[2];
        p.reason = args[3];
        p.message = args[4];
        rc = lm__read_all(&p);
    } else {
        lm__finish(&p, 2);
        uv_run(p.loop, UV_RUN_DEFAULT);
        uv_loop_close(p.loop);
        return lm__usage();
    }
    if (rc != LM_OK)
        lm__finish(&p, 1);
    uv_run(p.loop, UV_RUN_DEFAULT);
    int close_rc = uv_loop_close(p.loop);
    if (close_rc != 0)
        lm_log_error("probe: the loop did not close cleanly: %s", uv_strerror(close_rc));
    for (size_t j = 0; p.objs && j < p.num_names; j++)
        cJSON_Delete(p.objs[j]);
    free(p.objs);
    return p.rc ? p.rc : (close_rc ? 1 : 0);
}

/*
 * kube_probe.c - drives the Kubernetes client (lm_kube.h) for the e2e tests
 * (e2e/t/test_kube_client.py) and for poking at a cluster by hand.
 *
 *   kube_probe [--kubeconfig F] [--context C] [--objects] [--watch-timeout S]
 *              SPEC [--ns NS]... [--labels SEL] [--fields SEL] [--kind K] [--cluster]
 *                   [--drop PATH]... [SPEC ...]
 *   kube_probe [--kubeconfig F] [--context C] --request METHOD PATH [BODY-JSON]
 *
 * SPEC is APIVERSION/RESOURCE: "v1/configmaps", "networking.k8s.io/v1/ingresses";
 * the options after a SPEC belong to it. --drop PATH deletes a field from
 * every object before it is cached (the spec's transform): "status",
 * "endpoints[].targetRef". Without --kubeconfig the usual order applies
 * ($KUBECONFIG, in-cluster, ~/.kube/config).
 *
 * stdout, one JSON object per line (flushed):
 *   {"event":"ADDED|MODIFIED|DELETED","inf":I,"ns":..,"name":..,"rv":..,"old_rv":..[,"object":{..}]}
 *   {"event":"SYNCED","inf":I,"count":N}
 *   {"event":"ERROR","inf":I,"errors":N,"message":".."}   (when an informer's error count grows)
 *   {"event":"STATS","inf":I,...lm_informer_stats_t...}    (command "stats")
 *   {"event":"KEYS","inf":I,"keys":["ns/name",..]}         (command "list": lm_informer_list's order)
 *   {"event":"OK","cmd":".."}                              (pause, resume, stale)
 *   {"event":"EXIT"}
 * --request prints {"status":N,"error":..,"body":..} and exits.
 * stdin commands, one a line: stats, list, pause, resume, stale, quit.
 * EOF on stdin, "quit", SIGTERM and SIGINT end it cleanly (exit 0).
 */
#include "lm_kube.h"
#include "lm_log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_INF 16
#define MAX_NS 16

typedef struct {
    lm_informer_spec_t spec;
    const char *ns[MAX_NS];
    const char *drop[MAX_NS]; /* --drop paths */
    int ndrop;
    char api_path[256];
    char resource[128];
    char api_version[128];
    lm_informer_t *inf;
    uint64_t errors_seen;
    int idx;
} probe_inf_t;

static uv_loop_t *loop;
static lm_curl_t *curl;
static lm_kube_t *kube;
static probe_inf_t infs[MAX_INF];
static int ninf;
static bool print_objects;
static bool quitting;
static uv_signal_t sig_term, sig_int;
static uv_timer_t poll_timer;
static uv_stream_t *in_stream;
static union {
    uv_pipe_t pipe;
    uv_tty_t tty;
} in_handle;
static char in_buf[4096];
static size_t in_len;
static int exit_code;

static void emit(cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        free(s);
    }
    cJSON_Delete(o);
}

static const char *meta(const cJSON *obj, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(obj, "metadata"), field);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void add_str(cJSON *o, const char *k, const char *v)
{
    if (v)
        cJSON_AddStringToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

static void on_event(lm_informer_t *inf, lm_inf_event_t ev, const cJSON *old, const cJSON *obj, void *data)
{
    probe_inf_t *p = data;
    static const char *const names[] = { "", "ADDED", "MODIFIED", "DELETED" };
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "event", names[ev]);
    cJSON_AddNumberToObject(o, "inf", p->idx);
    add_str(o, "ns", meta(obj, "namespace"));
    add_str(o, "name", meta(obj, "name"));
    add_str(o, "rv", meta(obj, "resourceVersion"));
    add_str(o, "old_rv", old ? meta(old, "resourceVersion") : NULL);
    if (print_objects)
        cJSON_AddItemToObject(o, "object", cJSON_Duplicate(obj, true));
    emit(o);
}

/* Deletes PATH ("status", "endpoints[].targetRef", "metadata.uid") from obj. */
static void drop_path(cJSON *obj, const char *path)
{
    const char *dot = strchr(path, '.');
    size_t len = dot ? (size_t)(dot - path) : strlen(path);
    bool each = len > 2 && path[len - 2] == '[' && path[len - 1] == ']';
    char name[128];
    snprintf(name, sizeof(name), "%.*s", (int)(each ? len - 2 : len), path);
    if (!dot) {
        if (each) {
            cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, name);
            while (cJSON_IsArray(arr) && arr->child)
                cJSON_DeleteItemFromArray(arr, 0);
        } else {
            cJSON_DeleteItemFromObjectCaseSensitive(obj, name);
        }
        return;
    }
    cJSON *next = cJSON_GetObjectItemCaseSensitive(obj, name), *it;
    if (each) {
        cJSON_ArrayForEach(it, next)
            drop_path(it, dot + 1);
    } else if (cJSON_IsObject(next)) {
        drop_path(next, dot + 1);
    }
}

static void transform(cJSON *obj, void *data)
{
    probe_inf_t *p = data;
    for (int i = 0; i < p->ndrop; i++)
        drop_path(obj, p->drop[i]);
}

static void on_synced(lm_informer_t *inf, void *data)
{
    probe_inf_t *p = data;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "event", "SYNCED");
    cJSON_AddNumberToObject(o, "inf", p->idx);
    cJSON_AddNumberToObject(o, "count", (double)lm_informer_count(inf));
    emit(o);
}

static void print_stats(probe_inf_t *p)
{
    lm_informer_stats_t st;
    lm_informer_stats(p->inf, &st);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "event", "STATS");
    cJSON_AddNumberToObject(o, "inf", p->idx);
    cJSON_AddNumberToObject(o, "count", (double)lm_informer_count(p->inf));
    cJSON_AddBoolToObject(o, "synced", lm_informer_synced(p->inf));
    cJSON_AddNumberToObject(o, "lists", (double)st.lists);
    cJSON_AddNumberToObject(o, "pages", (double)st.pages);
    cJSON_AddNumberToObject(o, "watches", (double)st.watches);
    cJSON_AddNumberToObject(o, "events", (double)st.events);
    cJSON_AddNumberToObject(o, "relists", (double)st.relists);
    cJSON_AddNumberToObject(o, "errors", (double)st.errors);
    cJSON_AddNumberToObject(o, "bookmarks", (double)st.bookmarks);
    cJSON_AddNumberToObject(o, "max_buffer", (double)st.max_buffer);
    cJSON_AddStringToObject(o, "last_error", st.last_error);
    emit(o);
}

static void print_keys(probe_inf_t *p)
{
    const cJSON **items;
    size_t n = lm_informer_list(p->inf, &items);
    cJSON *o = cJSON_CreateObject(), *keys = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "event", "KEYS");
    cJSON_AddNumberToObject(o, "inf", p->idx);
    for (size_t i = 0; i < n; i++) {
        const char *ns = meta(items[i], "namespace"), *name = meta(items[i], "name");
        char key[600];
        snprintf(key, sizeof(key), "%s%s%s", ns ? ns : "", ns ? "/" : "", name ? name : "");
        cJSON_AddItemToArray(keys, cJSON_CreateString(key));
    }
    free(items);
    cJSON_AddItemToObject(o, "keys", keys);
    emit(o);
}

static void on_closed(uv_handle_t *h)
{
    LM_UNUSED(h);
}

static void shutdown_all(void)
{
    if (quitting)
        return;
    quitting = true;
    lm_kube_free(kube); /* stops the informers and requests */
    kube = NULL;
    lm_curl_free(curl);
    curl = NULL;
    uv_close((uv_handle_t *)&sig_term, on_closed);
    uv_close((uv_handle_t *)&sig_int, on_closed);
    if (!uv_is_closing((uv_handle_t *)&poll_timer))
        uv_close((uv_handle_t *)&poll_timer, on_closed);
    if (in_stream && !uv_is_closing((uv_handle_t *)in_stream))
        uv_close((uv_handle_t *)in_stream, on_closed);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "event", "EXIT");
    emit(o);
}

static void on_signal(uv_signal_t *s, int signum)
{
    LM_UNUSED(s);
    LM_UNUSED(signum);
    shutdown_all();
}

static void on_poll(uv_timer_t *t)
{
    LM_UNUSED(t);
    for (int i = 0; i < ninf; i++) {
        lm_informer_stats_t st;
        lm_informer_stats(infs[i].inf, &st);
        if (st.errors != infs[i].errors_seen) {
            infs[i].errors_seen = st.errors;
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "event", "ERROR");
            cJSON_AddNumberToObject(o, "inf", i);
            cJSON_AddNumberToObject(o, "errors", (double)st.errors);
            cJSON_AddStringToObject(o, "message", st.last_error);
            emit(o);
        }
    }
}

static void command(const char *line)
{
    if (!strcmp(line, "quit")) {
        shutdown_all();
    } else if (!strcmp(line, "stats")) {
        for (int i = 0; i < ninf; i++)
            print_stats(&infs[i]);
    } else if (!strcmp(line, "list")) {
        for (int i = 0; i < ninf; i++)
            print_keys(&infs[i]);
    } else if (line[0]) {
        int rc = LM_OK;
        for (int i = 0; i < ninf && rc == LM_OK; i++)
            rc = lm_informer_debug(infs[i].inf, line);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "event", rc == LM_OK ? "OK" : "BADCMD");
        cJSON_AddStringToObject(o, "cmd", line);
        emit(o);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    LM_UNUSED(h);
    LM_UNUSED(suggested);
    buf->base = in_buf + in_len;
    buf->len = sizeof(in_buf) - in_len - 1;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    LM_UNUSED(buf);
    if (n < 0) { /* EOF or error: done */
        shutdown_all();
        return;
    }
    in_len += (size_t)n;
    char *start = in_buf, *nl;
    while (!quitting && (nl = memchr(start, '\n', (size_t)(in_buf + in_len - start)))) {
        *nl = '\0';
        if (nl > start && nl[-1] == '\r')
            nl[-1] = '\0';
        command(start);
        start = nl + 1;
    }
    size_t rest = (size_t)(in_buf + in_len - start);
    memmove(in_buf, start, rest);
    in_len = rest >= sizeof(in_buf) - 1 ? 0 : rest;
    LM_UNUSED(s);
}

/* ---- one request --------------------------------------------------------- */

static void on_response(int status, const cJSON *body, const char *err, void *data)
{
    LM_UNUSED(data);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "status", status);
    add_str(o, "error", err);
    if (body)
        cJSON_AddItemToObject(o, "body", cJSON_Duplicate(body, true));
    else
        cJSON_AddNullToObject(o, "body");
    emit(o);
    exit_code = status >= 200 && status < 300 ? 0 : 1;
    shutdown_all();
}

/* ---- main ------------------------------------------------------------------ */

static int usage(void)
{
    fprintf(stderr, "usage: kube_probe [--kubeconfig F] [--context C] [--objects] [--watch-timeout S]\n"
                    "                  SPEC [--ns NS]... [--labels SEL] [--fields SEL] [--kind K] [--cluster]\n"
                    "                       [--drop PATH]... ...\n"
                    "       kube_probe [--kubeconfig F] [--context C] --request METHOD PATH [BODY]\n");
    return 2;
}

static void fatal_json(const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "event", "FATAL");
    cJSON_AddStringToObject(o, "message", msg);
    emit(o);
}

int main(int argc, char **argv)
{
    const char *kubeconfig = NULL, *context = NULL, *method = NULL, *path = NULL, *body = NULL;
    unsigned watch_timeout = 0;
    probe_inf_t *cur = NULL;
    signal(SIGPIPE, SIG_IGN);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--kubeconfig") && has)
            kubeconfig = argv[++i];
        else if (!strcmp(a, "--context") && has)
            context = argv[++i];
        else if (!strcmp(a, "--objects"))
            print_objects = true;
        else if (!strcmp(a, "--watch-timeout") && has)
            watch_timeout = (unsigned)atoi(argv[++i]);
        else if (!strcmp(a, "--log-level") && has)
            lm_log_set_level((lm_log_level_t)LM_MAX(lm_log_parse_level(argv[++i]), 0));
        else if (!strcmp(a, "--request") && i + 2 < argc) {
            method = argv[++i];
            path = argv[++i];
            if (i + 1 < argc && argv[i + 1][0] != '-')
                body = argv[++i];
        } else if (!strcmp(a, "--ns") && has && cur && cur->spec.num_namespaces < MAX_NS)
            cur->ns[cur->spec.num_namespaces++] = argv[++i];
        else if (!strcmp(a, "--labels") && has && cur)
            cur->spec.label_selector = argv[++i];
        else if (!strcmp(a, "--fields") && has && cur)
            cur->spec.field_selector = argv[++i];
        else if (!strcmp(a, "--kind") && has && cur)
            cur->spec.kind = argv[++i];
        else if (!strcmp(a, "--cluster") && cur)
            cur->spec.cluster_scoped = true;
        else if (!strcmp(a, "--drop") && has && cur && cur->ndrop < MAX_NS) {
            cur->drop[cur->ndrop++] = argv[++i];
            cur->spec.transform = transform;
        }
        else if (a[0] != '-' && ninf < MAX_INF) {
            const char *slash = strrchr(a, '/');
            if (!slash || slash == a)
                return usage();
            cur = &infs[ninf];
            cur->idx = ninf++;
            int gvl = (int)(slash - a);
            snprintf(cur->api_version, sizeof(cur->api_version), "%.*s", gvl, a);
            snprintf(cur->resource, sizeof(cur->resource), "%s", slash + 1);
            snprintf(cur->api_path, sizeof(cur->api_path), "%s%.*s",
                     memchr(a, '/', (size_t)gvl) ? "/apis/" : "/api/", gvl, a);
            cur->spec.api_path = cur->api_path;
            cur->spec.resource = cur->resource;
            cur->spec.api_version = cur->api_version;
            cur->spec.namespaces = cur->ns;
        } else
            return usage();
    }
    if (!method && ninf == 0)
        return usage();

    lm_kube_config_t cfg;
    char err[512];
    if (lm_kube_config_load(kubeconfig, context, &cfg, err, sizeof(err)) != LM_OK) {
        fprintf(stderr, "kube_probe: %s\n", err);
        fatal_json(err);
        return 1;
    }
    loop = uv_default_loop();
    curl = lm_curl_new(loop);
    kube = curl ? lm_kube_new(loop, curl, &cfg) : NULL;
    if (!kube) {
        fatal_json("out of memory");
        return 1;
    }
    uv_signal_init(loop, &sig_term);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_init(loop, &sig_int);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_timer_init(loop, &poll_timer);

    if (method) {
        cJSON *b = NULL;
        if (body && !(b = cJSON_Parse(body))) {
            fatal_json("BODY is not JSON");
            shutdown_all();
        } else if (lm_kube_request(kube, method, path, b, NULL, on_response, NULL) != LM_OK) {
            fatal_json("lm_kube_request failed");
            exit_code = 1;
            shutdown_all();
        }
        cJSON_Delete(b);
    } else {
        uv_handle_type t = uv_guess_handle(0);
        if (t == UV_NAMED_PIPE && uv_pipe_init(loop, &in_handle.pipe, 0) == 0) {
            if (uv_pipe_open(&in_handle.pipe, 0) == 0)
                in_stream = (uv_stream_t *)&in_handle.pipe;
            else
                uv_close((uv_handle_t *)&in_handle.pipe, on_closed);
        } else if (t == UV_TTY && uv_tty_init(loop, &in_handle.tty, 0, 1) == 0) {
            in_stream = (uv_stream_t *)&in_handle.tty;
        }
        if (in_stream)
            uv_read_start(in_stream, on_alloc, on_read);
        for (int i = 0; i < ninf; i++) {
            infs[i].spec.watch_timeout = watch_timeout;
            infs[i].inf = lm_informer_start(kube, &infs[i].spec, on_event, on_synced, &infs[i]);
            if (!infs[i].inf) {
                fatal_json("lm_informer_start failed");
                exit_code = 1;
                shutdown_all();
                break;
            }
        }
        if (!quitting)
            uv_timer_start(&poll_timer, on_poll, 50, 50);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(loop);
    if (rc != 0) {
        fprintf(stderr, "kube_probe: the loop still has handles: %s\n", uv_strerror(rc));
        return 3;
    }
    return exit_code;
}

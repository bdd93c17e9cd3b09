/*
 * push_test.c - lm_push against the real data plane (bin/limen-dataplane):
 * one on a unix socket, one on TCP loopback with an admin token. The data
 * planes are child processes; the test drives a libuv loop with lm_push and
 * checks what the data planes serve with blocking GET /status requests.
 * Skips (and says so) when bin/limen-dataplane has not been built.
 */
#include "lm_config.h"
#include "lm_curl.h"
#include "lm_log.h"
#include "lm_push.h"
#include "lm_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOKEN "s3cret-token"

static char dp_bin[PATH_MAX + 32];
static char tmpdir[256];
static uv_loop_t loop;
static lm_curl_t *curl;

/* ---- data plane processes ------------------------------------------------------ */

typedef struct {
    pid_t pid;
    char admin[PATH_MAX + 8]; /* the --admin-listen value */
    char url[PATH_MAX + 8];   /* the lm_push target URL */
    char state[PATH_MAX];
    bool tcp;
    int port;
} dp_t;

static dp_t dp_unix, dp_tcp;

static bool find_dataplane(void)
{
    const char *env = getenv("LIMEN_DATAPLANE");
    if (env && access(env, X_OK) == 0) {
        snprintf(dp_bin, sizeof(dp_bin), "%s", env);
        return true;
    }
    /* the repository root: the working directory, or above this binary (build/rel/controller/) */
    if (access("bin/limen-dataplane", X_OK) == 0 && realpath("bin/limen-dataplane", dp_bin))
        return true;
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return false;
    self[n] = '\0';
    for (int up = 0; up < 5; up++) {
        char *slash = strrchr(self, '/');
        if (!slash)
            break;
        *slash = '\0';
        snprintf(dp_bin, sizeof(dp_bin), "%s/bin/limen-dataplane", self);
        if (access(dp_bin, X_OK) == 0)
            return true;
    }
    return false;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof(a);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && getsockname(fd, (struct sockaddr *)&a, &sl) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static bool dp_reachable(const dp_t *d)
{
    int fd;
    bool ok;
    if (d->tcp) {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)d->port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    } else {
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        snprintf(a.sun_path, sizeof(a.sun_path), "%s", d->admin + 5);
        ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    }
    close(fd);
    return ok;
}

static bool dp_start(dp_t *d)
{
    char log[PATH_MAX + 16];
    snprintf(log, sizeof(log), "%s/%s.log", tmpdir, d->tcp ? "dp-tcp" : "dp-unix");
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        const char *argv[16];
        int n = 0;
        argv[n++] = dp_bin;
        argv[n++] = "--admin-listen";
        argv[n++] = d->admin;
        argv[n++] = "--proxy-listen";
        argv[n++] = "127.0.0.1:0";
        argv[n++] = "--status-listen";
        argv[n++] = "off";
        argv[n++] = "--workers";
        argv[n++] = "1";
        argv[n++] = "--state-dir";
        argv[n++] = d->state;
        if (d->tcp) {
            argv[n++] = "--admin-token";
            argv[n++] = TOKEN;
        }
        argv[n] = NULL;
        execv(dp_bin, (char *const *)argv);
        _exit(127);
    }
    d->pid = pid;
    for (int i = 0; i < 500; i++) {
        if (dp_reachable(d))
            return true;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "data plane exited at start-up; see %s\n", log);
            d->pid = 0;
            return false;
        }
        usleep(10000);
    }
    fprintf(stderr, "data plane did not listen on %s within 5 s; see %s\n", d->admin, log);
    return false;
}

static void dp_kill(dp_t *d, int sig)
{
    if (d->pid <= 0)
        return;
    kill(d->pid, sig);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
}

/* ---- blocking requests to a data plane (outside the loop) ---------------------- */

static size_t collect(char *ptr, size_t size, size_t n, void *userdata)
{
    char *buf = userdata;
    size_t have = strlen(buf), len = size * n;
    if (have + len >= 8192)
        return 0;
    memcpy(buf + have, ptr, len);
    buf[have + len] = '\0';
    return len;
}

/* The configuration_hash a data plane serves, into out; "" when it does not answer. */
static void dp_hash(const dp_t *d, char out[33])
{
    out[0] = '\0';
    char body[8192] = "", url[PATH_MAX + 32];
    CURL *e = curl_easy_init();
    struct curl_slist *h = NULL;
    if (d->tcp) {
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/status", d->port);
        h = curl_slist_append(h, "Authorization: Bearer " TOKEN);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    } else {
        snprintf(url, sizeof(url), "http://localhost/status");
        curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, d->admin + 5);
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 5L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, body);
    if (curl_easy_perform(e) == CURLE_OK) {
        cJSON *j = cJSON_Parse(body);
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "configuration_hash"));
        if (s)
            snprintf(out, 33, "%s", s);
        cJSON_Delete(j);
    }
    curl_easy_cleanup(e);
    curl_slist_free_all(h);
}

/* ---- documents --------------------------------------------------------------------- */

typedef struct {
    char *json;
    size_t len;
    char hash[33];
} doc_t;

/* A valid document with n services named after tag; hash from the shared validator. */
static doc_t doc_make(const char *tag, int n)
{
    doc_t d = { 0 };
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "_format_version", "3.0");
    cJSON *svcs = cJSON_AddArrayToObject(root, "services");
    for (int i = 0; i < n; i++) {
        char name[128];
        snprintf(name, sizeof(name), "%s-%d", tag, i);
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "name", name);
        cJSON_AddStringToObject(s, "url", "http://127.0.0.1:9/");
        cJSON_AddItemToArray(svcs, s);
    }
    d.json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    d.len = strlen(d.json);
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    lm_config_opts_t o = { 0 };
    lm_config_t *cfg = lm_config_load(d.json, d.len, &o, &errs);
    if (cfg)
        memcpy(d.hash, cfg->hash, 33);
    lm_config_free(cfg);
    lm_config_errors_free(&errs);
    return d;
}

/* About mb MiB of consumers. */
static doc_t doc_big(int mb)
{
    doc_t d = { 0 };
    size_t cap = ((size_t)mb << 20) + (1 << 16);
    d.json = malloc(cap);
    size_t n = (size_t)sprintf(d.json, "{\"_format_version\":\"3.0\",\"consumers\":[");
    char pad[201];
    memset(pad, 'x', 200);
    pad[200] = '\0';
    for (int i = 0; n < ((size_t)mb << 20); i++)
        n += (size_t)snprintf(d.json + n, cap - n, "%s{\"username\":\"user-%07d-%s\",\"custom_id\":\"c%07d\"}",
                              i ? "," : "", i, pad, i);
    n += (size_t)snprintf(d.json + n, cap - n, "]}");
    d.len = n;
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    lm_config_opts_t o = { 0 };
    lm_config_t *cfg = lm_config_load(d.json, d.len, &o, &errs);
    if (cfg)
        memcpy(d.hash, cfg->hash, 33);
    lm_config_free(cfg);
    lm_config_errors_free(&errs);
    return d;
}

static void doc_free(doc_t *d)
{
    free(d->json);
    d->json = NULL;
}

/* ---- the loop ------------------------------------------------------------------------ */

typedef struct {
    int ok, failed, last_status;
    char last_error[1024];
    char last_url[PATH_MAX + 8];
    lm_push_t *free_me; /* free the push from its callback */
    bool freed;
} rec_t;

static void on_result(const char *url, bool ok, int status, const char *error, double seconds, void *data)
{
    rec_t *r = data;
    if (ok)
        r->ok++;
    else
        r->failed++;
    r->last_status = status;
    snprintf(r->last_error, sizeof(r->last_error), "%s", error);
    snprintf(r->last_url, sizeof(r->last_url), "%s", url);
    if (r->free_me) {
        lm_push_free(r->free_me);
        r->free_me = NULL;
        r->freed = true;
    }
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

static double now_s(void)
{
    return (double)uv_hrtime() / 1e9;
}

/* Runs the loop until cond(arg) or ms pass; true when cond became true. */
static bool run_until(bool (*cond)(void *), void *arg, unsigned ms)
{
    uv_timer_t tick;
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, on_tick, 10, 10);
    double end = now_s() + ms / 1000.0;
    bool ok = false;
    while (!(ok = cond && cond(arg)) && now_s() < end)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return ok;
}

static void run_for(unsigned ms)
{
    run_until(NULL, NULL, ms);
}

static lm_push_t *P; /* on both data planes, with the token */
static rec_t R;

typedef struct {
    lm_push_t *p;
    size_t n;
} insync_t;

static bool all_in_sync(void *arg)
{
    insync_t *w = arg;
    lm_push_stats_t st;
    lm_push_stats(w->p, &st);
    return st.targets == w->n && st.targets_in_sync == w->n;
}

static bool wait_in_sync(lm_push_t *p, size_t n, unsigned ms)
{
    insync_t w = { p, n };
    return run_until(all_in_sync, &w, ms);
}

static bool failed_at_least(void *arg)
{
    int *want = arg;
    return R.failed >= *want;
}

static bool ok_at_least(void *arg)
{
    int *want = arg;
    return R.ok >= *want;
}

/* ---- tests ---------------------------------------------------------------------- */

static doc_t D1, D2;

LM_TEST(first_push_lands)
{
    lm_push_opts_t o = { .token = TOKEN, .check_interval_ms = 300, .timeout_ms = 5000 };
    P = lm_push_new(&loop, curl, &o);
    LM_CHECK(P != NULL);
    lm_push_on_result(P, on_result, &R);
    const char *urls[] = { dp_unix.url };
    LM_CHECK_EQ_INT(lm_push_set_targets(P, "static", urls, 1), LM_OK);
    lm_push_set_config(P, D1.json, D1.len, D1.hash);
    LM_CHECK(wait_in_sync(P, 1, 5000));
    char h[33];
    dp_hash(&dp_unix, h);
    LM_CHECK_STR(h, D1.hash);
    LM_CHECK_EQ_INT(R.ok, 1);
    LM_CHECK_EQ_INT(R.failed, 0);
    LM_CHECK_EQ_INT(R.last_status, 201);
    LM_CHECK_STR(R.last_url, dp_unix.url);
    LM_CHECK_STR(R.last_error, "");
    lm_push_stats_t st;
    lm_push_stats(P, &st);
    LM_CHECK(st.synced_once);
    LM_CHECK_EQ_INT(st.pushes_ok, 1);
    LM_CHECK(st.last_push_seconds > 0);
}

LM_TEST(second_document_replaces)
{
    lm_push_set_config(P, D2.json, D2.len, D2.hash);
    int want = 2;
    LM_CHECK(run_until(ok_at_least, &want, 5000));
    LM_CHECK(wait_in_sync(P, 1, 2000));
    char h[33];
    dp_hash(&dp_unix, h);
    LM_CHECK_STR(h, D2.hash);
}

LM_TEST(same_hash_not_resent)
{
    lm_push_stats_t a, b;
    lm_push_stats(P, &a);
    int ok = R.ok, failed = R.failed;
    lm_push_set_config(P, D2.json, D2.len, D2.hash);
    run_for(1000); /* three status checks */
    lm_push_stats(P, &b);
    LM_CHECK_EQ_INT(R.ok, ok);
    LM_CHECK_EQ_INT(R.failed, failed);
    LM_CHECK_EQ_INT(b.pushes_ok, a.pushes_ok);
    LM_CHECK_EQ_INT(b.checks_failed, a.checks_failed);
    LM_CHECK_EQ_INT(b.targets_in_sync, 1);
}

LM_TEST(invalid_document_400_and_backoff)
{
    const char *bad = "{\"_format_version\":\"3.0\",\"services\":[{\"name\":\"bad\",\"url\":\"nope://\"}],"
                      "\"consumers\":[{\"username\":\"u\",\"keyauth_credentials\":[{\"key\":\"SECRET-DO-NOT-LOG\"}]}]}";
    int failed = R.failed;
    lm_push_set_config(P, bad, strlen(bad), "0123456789abcdef0123456789abcdef");
    int want = failed + 1;
    LM_CHECK(run_until(failed_at_least, &want, 5000));
    LM_CHECK_EQ_INT(R.last_status, 400);
    LM_CHECK(strncmp(R.last_error, "HTTP 400: ", 10) == 0);
    LM_CHECK(strstr(R.last_error, "declarative config is invalid") != NULL);
    LM_CHECK(strstr(R.last_error, "SECRET-DO-NOT-LOG") == NULL);
    lm_push_stats_t st;
    lm_push_stats(P, &st);
    LM_CHECK_EQ_INT(st.targets_in_sync, 0);
    /* the data plane keeps serving the last good document */
    char h[33];
    dp_hash(&dp_unix, h);
    LM_CHECK_STR(h, D2.hash);
    /* retries back off: 0.5 s, 1 s, 2 s (+-20%): two or three more in 2 s, not one per status check */
    run_for(2000);
    int retries = R.failed - want;
    LM_CHECK(retries >= 1 && retries <= 3);
    cJSON *tj = lm_push_targets_json(P);
    cJSON *t0 = cJSON_GetArrayItem(tj, 0);
    LM_CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(t0, "consecutive_failures")) >= 2);
    LM_CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(t0, "retry_in_ms")) > 0);
    LM_CHECK_EQ_INT((int)cJSON_GetNumberValue(cJSON_GetObjectItem(t0, "last_status")), 400);
    cJSON_Delete(tj);
    /* a good document goes out at once, whatever the backoff */
    double t = now_s();
    lm_push_set_config(P, D1.json, D1.len, D1.hash);
    LM_CHECK(wait_in_sync(P, 1, 3000));
    LM_CHECK(now_s() - t < 1.0);
    dp_hash(&dp_unix, h);
    LM_CHECK_STR(h, D1.hash);
}

LM_TEST(data_plane_down_then_back)
{
    dp_kill(&dp_unix, SIGKILL);
    doc_t d3 = doc_make("down", 3);
    int failed = R.failed;
    lm_push_set_config(P, d3.json, d3.len, d3.hash);
    int want = failed + 1;
    LM_CHECK(run_until(failed_at_least, &want, 3000));
    LM_CHECK_EQ_INT(R.last_status, 0); /* no response */
    LM_CHECK(R.last_error[0] != '\0');
    run_for(1500); /* a few retries and failed status checks */
    lm_push_stats_t st;
    lm_push_stats(P, &st);
    LM_CHECK(st.checks_failed >= 1);
    LM_CHECK_EQ_INT(st.targets_in_sync, 0);
    /* back on the same socket, with the state dir holding the older document */
    LM_CHECK(dp_start(&dp_unix));
    double t = now_s();
    LM_CHECK(wait_in_sync(P, 1, 5000));
    double took = now_s() - t;
    LM_CHECK(took < 2.0); /* the next status check (300 ms), not the backoff */
    char h[33];
    dp_hash(&dp_unix, h);
    LM_CHECK_STR(h, d3.hash);

    /* restarted without its state: the status check notices and sends it again */
    dp_kill(&dp_unix, SIGTERM);
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dp_unix.state);
    LM_CHECK(system(cmd) == 0);
    int ok = R.ok;
    LM_CHECK(dp_start(&dp_unix));
    want = ok + 1;
    LM_CHECK(run_until(ok_at_least, &want, 3000));
    LM_CHECK(wait_in_sync(P, 1, 2000));
    dp_hash(&dp_unix, h);
    LM_CHECK_STR(h, d3.hash);

    /* someone else changes it: put back */
    lm_push_set_config(P, D1.json, D1.len, D1.hash);
    LM_CHECK(wait_in_sync(P, 1, 3000));
    lm_push_t *other = lm_push_new(&loop, curl, &(lm_push_opts_t){ .check_interval_ms = 60000 });
    const char *urls[] = { dp_unix.url };
    lm_push_set_targets(other, "x", urls, 1);
    lm_push_set_config(other, D2.json, D2.len, D2.hash);
    LM_CHECK(wait_in_sync(other, 1, 3000));
    lm_push_free(other);
    want = R.ok + 1;
    LM_CHECK(run_until(ok_at_least, &want, 3000)); /* P's next status check sends D1 again */
    LM_CHECK(wait_in_sync(P, 1, 3000));
    dp_hash(&dp_unix, h);
    LM_CHECK_STR(h, D1.hash);
    doc_free(&d3);
}

LM_TEST(tcp_target_needs_the_token)
{
    /* without a token: 401, reported as a failed push */
    rec_t r = { 0 };
    lm_push_t *p = lm_push_new(&loop, curl, &(lm_push_opts_t){ .check_interval_ms = 300 });
    lm_push_on_result(p, on_result, &r);
    const char *urls[] = { dp_tcp.url };
    LM_CHECK_EQ_INT(lm_push_set_targets(p, "tcp", urls, 1), LM_OK);
    lm_push_set_config(p, D2.json, D2.len, D2.hash);
    for (int i = 0; i < 300 && r.failed == 0; i++)
        run_for(10);
    LM_CHECK(r.failed >= 1);
    LM_CHECK_EQ_INT(r.last_status, 401);
    LM_CHECK(strstr(r.last_error, "401") != NULL);
    lm_push_free(p);
    /* a wrong one: 401 too */
    memset(&r, 0, sizeof(r));
    p = lm_push_new(&loop, curl, &(lm_push_opts_t){ .token = "wrong", .check_interval_ms = 300 });
    lm_push_on_result(p, on_result, &r);
    lm_push_set_targets(p, "tcp", urls, 1);
    lm_push_set_config(p, D2.json, D2.len, D2.hash);
    for (int i = 0; i < 300 && r.failed == 0; i++)
        run_for(10);
    LM_CHECK_EQ_INT(r.last_status, 401);
    LM_CHECK_EQ_INT(r.ok, 0);
    lm_push_free(p);
    run_for(20);
    /* https (the admin listener has no TLS yet): accepted, and the handshake
     * failure is reported as no response */
    memset(&r, 0, sizeof(r));
    p = lm_push_new(&loop, curl, &(lm_push_opts_t){ .token = TOKEN, .ca_file = "/nonexistent/ca.pem",
                                                   .cert_file = "/nonexistent/c.pem", .key_file = "/nonexistent/k.pem" });
    lm_push_on_result(p, on_result, &r);
    char https[64];
    snprintf(https, sizeof(https), "https://127.0.0.1:%d/", dp_tcp.port);
    const char *hurls[] = { https };
    LM_CHECK_EQ_INT(lm_push_set_targets(p, "tls", hurls, 1), LM_OK);
    lm_push_set_config(p, D2.json, D2.len, D2.hash);
    for (int i = 0; i < 300 && r.failed == 0; i++)
        run_for(10);
    LM_CHECK(r.failed >= 1);
    LM_CHECK_EQ_INT(r.last_status, 0);
    LM_CHECK(r.last_error[0] != '\0');
    lm_push_free(p);
    run_for(20);
    /* a token with a line break is refused */
    LM_CHECK(lm_push_new(&loop, curl, &(lm_push_opts_t){ .token = "a\r\nX-Evil: 1" }) == NULL);
    /* the right one (P's): add the TCP data plane as a second group */
    LM_CHECK_EQ_INT(lm_push_set_targets(P, "tcp", urls, 1), LM_OK);
    LM_CHECK(wait_in_sync(P, 2, 5000));
    char h[33];
    dp_hash(&dp_tcp, h);
    LM_CHECK_STR(h, D1.hash);
}

LM_TEST(set_targets_add_remove)
{
    lm_push_stats_t st;
    /* a malformed URL: refused, nothing changes */
    const char *bad[] = { dp_tcp.url, "ftp://x" };
    LM_CHECK_EQ_INT(lm_push_set_targets(P, "tcp", bad, 2), LM_ERROR);
    const char *bad2[] = { "http://x/a b" };
    LM_CHECK_EQ_INT(lm_push_set_targets(P, "tcp", bad2, 1), LM_ERROR);
    const char *bad3[] = { "unix:" };
    LM_CHECK_EQ_INT(lm_push_set_targets(P, "tcp", bad3, 1), LM_ERROR);
    lm_push_stats(P, &st);
    LM_CHECK_EQ_INT(st.targets, 2);
    /* duplicates count once; the same URL again keeps its state (no push) */
    int ok = R.ok;
    const char *dup[] = { dp_tcp.url, dp_tcp.url };
    LM_CHECK_EQ_INT(lm_push_set_targets(P, "tcp", dup, 2), LM_OK);
    run_for(400);
    lm_push_stats(P, &st);
    LM_CHECK_EQ_INT(st.targets, 2);
    LM_CHECK_EQ_INT(st.targets_in_sync, 2);
    LM_CHECK_EQ_INT(R.ok, ok);
    /* remove while a push to it is in flight: no callback for it, the other goes on */
    doc_t d = doc_make("remove", 200);
    lm_push_set_config(P, d.json, d.len, d.hash);
    LM_CHECK_EQ_INT(lm_push_set_targets(P, "tcp", NULL, 0), LM_OK);
    lm_push_stats(P, &st);
    LM_CHECK_EQ_INT(st.targets, 1);
    int want = ok + 1;
    LM_CHECK(run_until(ok_at_least, &want, 5000));
    run_for(300);
    LM_CHECK_EQ_INT(R.ok, ok + 1);
    LM_CHECK_STR(R.last_url, dp_unix.url);
    char h[33];
    dp_hash(&dp_tcp, h);
    LM_CHECK_STR(h, D1.hash); /* the aborted push did not land (or landed whole: never half) */
    /* added back: it gets the current document at once */
    const char *urls[] = { dp_tcp.url };
    LM_CHECK_EQ_INT(lm_push_set_targets(P, "tcp", urls, 1), LM_OK);
    LM_CHECK(wait_in_sync(P, 2, 3000));
    dp_hash(&dp_tcp, h);
    LM_CHECK_STR(h, d.hash);
    doc_free(&d);
}

LM_TEST(ten_megabytes)
{
    doc_t big = doc_big(11);
    LM_CHECK(big.len > (10u << 20));
    LM_CHECK(big.hash[0] != '\0');
    int ok = R.ok;
    lm_push_set_config(P, big.json, big.len, big.hash);
    doc_free(&big); /* lm_push keeps its own copy */
    int want = ok + 2;
    LM_CHECK(run_until(ok_at_least, &want, 20000));
    LM_CHECK(wait_in_sync(P, 2, 2000));
    char h[33];
    dp_hash(&dp_unix, h);
    LM_CHECK_STR(h, big.hash);
    dp_hash(&dp_tcp, h);
    LM_CHECK_STR(h, big.hash);
    /* back to a small one for what follows */
    lm_push_set_config(P, D2.json, D2.len, D2.hash);
    LM_CHECK(wait_in_sync(P, 2, 5000));
}

LM_TEST(stats_and_metrics)
{
    lm_push_stats_t st;
    lm_push_stats(P, &st);
    LM_CHECK_EQ_INT(st.targets, 2);
    LM_CHECK_EQ_INT(st.targets_in_sync, 2);
    LM_CHECK(st.synced_once);
    LM_CHECK(st.pushes_ok >= 8);
    LM_CHECK(st.pushes_failed >= 3);
    LM_CHECK(st.checks_failed >= 1);
    char *m = lm_push_metrics(P);
    LM_CHECK(m != NULL);
    if (!m)
        return;
    char line[PATH_MAX + 128];
    snprintf(line, sizeof(line), "limen_controller_push_target_in_sync{group=\"static\",target=\"%s\"} 1\n",
             dp_unix.url);
    LM_CHECK(strstr(m, line) != NULL);
    snprintf(line, sizeof(line), "limen_controller_push_target_in_sync{group=\"tcp\",target=\"%s\"} 1\n", dp_tcp.url);
    LM_CHECK(strstr(m, line) != NULL);
    LM_CHECK(strstr(m, "limen_controller_push_targets 2\n") != NULL);
    LM_CHECK(strstr(m, "limen_controller_push_targets_in_sync 2\n") != NULL);
    snprintf(line, sizeof(line), "limen_controller_pushes_total{result=\"ok\"} %llu\n",
             (unsigned long long)st.pushes_ok);
    LM_CHECK(strstr(m, line) != NULL);
    LM_CHECK(strstr(m, "limen_controller_pushes_total{result=\"rejected\"} ") != NULL);
    LM_CHECK(strstr(m, "limen_controller_pushes_total{result=\"rejected\"} 0\n") == NULL);
    LM_CHECK(strstr(m, "limen_controller_pushes_total{result=\"unreachable\"} 0\n") == NULL);
    LM_CHECK(strstr(m, "# TYPE limen_controller_push_duration_seconds histogram\n") != NULL);
    unsigned long long total = st.pushes_ok + st.pushes_failed;
    snprintf(line, sizeof(line), "limen_controller_push_duration_seconds_bucket{le=\"+Inf\"} %llu\n", total);
    LM_CHECK(strstr(m, line) != NULL);
    snprintf(line, sizeof(line), "limen_controller_push_duration_seconds_count %llu\n", total);
    LM_CHECK(strstr(m, line) != NULL);
    LM_CHECK(strstr(m, TOKEN) == NULL);
    free(m);
    cJSON *tj = lm_push_targets_json(P);
    LM_CHECK_EQ_INT(cJSON_GetArraySize(tj), 2);
    char *s = cJSON_PrintUnformatted(tj);
    LM_CHECK(strstr(s, "\"in_sync\":true") != NULL);
    LM_CHECK(strstr(s, D2.hash) != NULL);
    LM_CHECK(strstr(s, TOKEN) == NULL);
    free(s);
    cJSON_Delete(tj);
}

LM_TEST(free_with_push_in_flight_and_from_callback)
{
    /* freed while a push is in flight: no callback afterwards */
    rec_t r = { 0 };
    lm_push_t *p = lm_push_new(&loop, curl, NULL);
    lm_push_on_result(p, on_result, &r);
    const char *urls[] = { dp_unix.url };
    lm_push_set_targets(p, NULL, urls, 1);
    doc_t d = doc_make("inflight", 500);
    lm_push_set_config(p, d.json, d.len, d.hash); /* starts the push (the first check is abandoned) */
    lm_push_free(p);
    run_for(300);
    LM_CHECK_EQ_INT(r.ok + r.failed, 0);
    /* freed from its own result callback */
    memset(&r, 0, sizeof(r));
    p = lm_push_new(&loop, curl, NULL);
    r.free_me = p;
    lm_push_on_result(p, on_result, &r);
    lm_push_set_targets(p, NULL, urls, 1);
    lm_push_set_config(p, D1.json, D1.len, D1.hash);
    for (int i = 0; i < 300 && !r.freed; i++)
        run_for(10);
    LM_CHECK(r.freed);
    run_for(50);
    doc_free(&d);
    /* the shared one still works: put its document back */
    LM_CHECK(wait_in_sync(P, 2, 3000));
}

int main(void)
{
    const char *lvl = getenv("LIMEN_LOG_LEVEL");
    lm_log_set_level(lvl && lm_log_parse_level(lvl) >= 0 ? (lm_log_level_t)lm_log_parse_level(lvl) : LM_LOG_WARN);
    if (!find_dataplane()) {
        printf("push: SKIPPED: bin/limen-dataplane not found (run `make bin/limen-dataplane` first, or set "
               "LIMEN_DATAPLANE)\npush: 0 passed, 0 failed\n");
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/limen-push-test-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(dp_unix.admin, sizeof(dp_unix.admin), "unix:%s/admin.sock", tmpdir);
    snprintf(dp_unix.url, sizeof(dp_unix.url), "%s", dp_unix.admin);
    snprintf(dp_unix.state, sizeof(dp_unix.state), "%s/state-unix", tmpdir);
    dp_tcp.tcp = true;
    dp_tcp.port = free_port();
    snprintf(dp_tcp.admin, sizeof(dp_tcp.admin), "127.0.0.1:%d", dp_tcp.port);
    snprintf(dp_tcp.url, sizeof(dp_tcp.url), "http://127.0.0.1:%d", dp_tcp.port);
    snprintf(dp_tcp.state, sizeof(dp_tcp.state), "%s/state-tcp", tmpdir);
    if (!dp_start(&dp_unix) || !dp_start(&dp_tcp)) {
        dp_kill(&dp_unix, SIGTERM);
        dp_kill(&dp_tcp, SIGTERM);
        printf("push: 0 passed, 1 failed (the data planes did not start; logs in %s)\n", tmpdir);
        return 1;
    }
    uv_loop_init(&loop);
    curl = lm_curl_new(&loop);
    D1 = doc_make("one", 1);
    D2 = doc_make("two", 2);

    LM_RUN(first_push_lands);
    LM_RUN(second_document_replaces);
    LM_RUN(same_hash_not_resent);
    LM_RUN(invalid_document_400_and_backoff);
    LM_RUN(data_plane_down_then_back);
    LM_RUN(tcp_target_needs_the_token);
    LM_RUN(set_targets_add_remove);
    LM_RUN(ten_megabytes);
    LM_RUN(stats_and_metrics);
    LM_RUN(free_with_push_in_flight_and_from_callback);

    lm_push_free(P);
    lm_curl_free(curl);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "FAIL: handles left on the loop\n");
        lm__t_failed++;
    }
    doc_free(&D1);
    doc_free(&D2);
    dp_kill(&dp_unix, SIGTERM);
    dp_kill(&dp_tcp, SIGTERM);
    if (lm__t_failed == 0) {
        char cmd[PATH_MAX + 32];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmpdir);
    } else {
        fprintf(stderr, "data plane logs kept in %s\n", tmpdir);
    }
    return lm_test_summary("push");
}

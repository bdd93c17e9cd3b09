/*
 * server.c - process structure: worker threads (one libuv loop and one
 * SO_REUSEPORT listener per proxy address each), the control loop on the
 * calling thread, snapshot publication, configuration applies, signals and
 * graceful drain.
 */
#include "lm_apply.h"
#include "lm_admin.h"
#include "lm_health.h"
#include "lm_log.h"
#include "lm_proxy.h"
#include "lm_stream.h"
#include "lm_tls.h"
#include "lm_h2.h"
#include "lm_uh2.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

void lm_server_opts_init(lm_server_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->status_listen = "127.0.0.1:8100";
    o->state_dir = "/var/lib/limen";
    o->latency_headers = true;
    o->drain_timeout_ms = 10000;
}

/* ---------------------------------------------------------------- */
/* worker-side snapshot references                                   */

lm_wsnap_t *lm_worker_snap_acquire(lm_worker_t *w)
{
    w->cur->refs++;
    return w->cur;
}

void lm_worker_snap_release(lm_worker_t *w, lm_wsnap_t *ws)
{
    (void)w;
    if (--ws->refs == 0) {
        lm_snapshot_unref(ws->snap);
        free(ws);
    }
}

static void lm__worker_take_snapshot(lm_worker_t *w, lm_snapshot_t *snap)
{
    lm_wsnap_t *ws = malloc(sizeof(*ws));
    if (!ws)
        abort();
    ws->snap = snap; /* the reference the control thread took for us */
    ws->refs = 1;
    lm_wsnap_t *old = w->cur;
    w->cur = ws;
    if (old)
        lm_worker_snap_release(w, old);
}

uint64_t lm_worker_random(lm_worker_t *w)
{
    uint64_t x = w->rng; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

const char *lm_worker_date(lm_worker_t *w)
{
    uint64_t now = uv_now(&w->loop);
    if (w->date[0] == '\0' || now / 1000 != w->date_ms / 1000) {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(w->date, sizeof(w->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        w->date_ms = now;
    }
    return w->date;
}

/* ---------------------------------------------------------------- */
/* deferred write completions                                        */

static void lm__defer_idle(uv_idle_t *h);

static void lm__defer_run(uv_check_t *h)
{
    lm_worker_t *w = h->data;
    while (w->defer_head) {
        lm_defer_t *d = w->defer_head;
        w->defer_head = d->next;
        if (!w->defer_head)
            w->defer_tail = NULL;
        if (d->fn)
            d->fn(d); /* may queue more: the loop takes them too */
        else
            d->cb(d->req, d->status);
    }
    uv_idle_stop(&w->defer_idle);
}

void lm_worker_defer_task(lm_worker_t *w, lm_defer_t *d)
{
    d->next = NULL;
    if (w->defer_tail)
        w->defer_tail->next = d;
    else
        w->defer_head = d;
    w->defer_tail = d;
    uv_idle_start(&w->defer_idle, lm__defer_idle);
}

static void lm__defer_idle(uv_idle_t *h)
{
    (void)h; /* only keeps the poll from blocking; the check handle does the work */
}

void lm_worker_defer_init(lm_worker_t *w)
{
    uv_check_init(&w->loop, &w->defer_check);
    uv_idle_init(&w->loop, &w->defer_idle);
    w->defer_check.data = w->defer_idle.data = w;
    uv_check_start(&w->defer_check, lm__defer_run);
    uv_unref((uv_handle_t *)&w->defer_check);
}

static void lm__handle_noop_close(uv_handle_t *h);

void lm_worker_defer_close(lm_worker_t *w)
{
    uv_close((uv_handle_t *)&w->defer_check, lm__handle_noop_close);
    uv_close((uv_handle_t *)&w->defer_idle, lm__handle_noop_close);
}

int lm_stream_write(lm_worker_t *w, uv_stream_t *s, uv_write_t *req, lm_defer_t *d, uv_buf_t *bufs, unsigned n,
                    uv_write_cb cb)
{
    if (!w) /* not on a worker (health probes on the control loop): a plain write */
        return uv_write(req, s, bufs, n, cb);
    if (s->write_queue_size == 0) {
        int rc = uv_try_write(s, bufs, n);
        if (rc >= 0) {
            size_t done = (size_t)rc;
            while (n > 0 && done >= bufs[0].len) {
                done -= bufs[0].len;
                bufs++;
                n--;
            }
            if (n == 0) {
                d->status = 0;
            } else {
                bufs[0].base += done;
                bufs[0].len -= done;
                return uv_write(req, s, bufs, n, cb);
            }
        } else if (rc == UV_EAGAIN) {
            return uv_write(req, s, bufs, n, cb);
        } else {
            d->status = rc;
        }
        d->req = req;
        d->cb = cb;
        d->fn = NULL;
        lm_worker_defer_task(w, d);
        return 0;
    }
    return uv_write(req, s, bufs, n, cb);
}

/* ---------------------------------------------------------------- */
/* workers                                                           */

static void lm__handle_noop_close(uv_handle_t *h)
{
    (void)h;
}

static void lm__worker_finish(lm_worker_t *w)
{
    lm_upstream_close_pools(w);
    lm_worker_defer_close(w);
    uv_close((uv_handle_t *)&w->async, lm__handle_noop_close);
}

static void lm__worker_async(uv_async_t *a)
{
    lm_worker_t *w = a->data;
    lm_snapshot_t *snap = atomic_exchange(&w->mailbox, NULL);
    if (snap)
        lm__worker_take_snapshot(w, snap);
    int stop = atomic_load(&w->stop);
    if (stop >= 1 && !w->draining) {
        w->draining = true;
        for (size_t i = 0; i < w->num_listeners; i++)
            uv_close((uv_handle_t *)&w->listeners[i], lm__handle_noop_close);
        for (size_t i = 0; i < w->num_stream_listeners; i++)
            uv_close((uv_handle_t *)&w->stream_listeners[i], lm__handle_noop_close);
        lm_proxy_close_idle(w);
        lm_stream_close_idle(w); /* open tunnels run on until they end or the drain timeout */
    }
    if (stop >= 2) {
        lm_proxy_close_all(w);
        lm_stream_close_all(w);
    }
    if (w->draining && w->num_conns == 0 && w->num_tunnels == 0 && !uv_is_closing((uv_handle_t *)&w->async))
        lm__worker_finish(w);
}

/* Worker threads whose loop has not returned yet (read by the drain timer). */
static _Atomic int lm__workers_running;

static void lm__worker_main(void *arg)
{
    lm_worker_t *w = arg;
    lm_server_t *srv = w->srv;
    for (size_t i = 0; i < srv->opts.num_proxy_listen; i++) {
        uv_tcp_t *l = &w->listeners[i];
        uv_tcp_init(&w->loop, l);
        l->data = w;
        int fd = w->listen_ports[i]; /* holds the fd until opened */
        int rc = uv_tcp_open(l, fd);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)l, 4096, lm_proxy_on_connection);
        if (rc != 0)
            lm_log_error("worker %d: listen on %s: %s", w->id, srv->opts.proxy_listen[i], uv_strerror(rc));
        w->num_listeners++;
    }
    for (size_t i = 0; i < srv->opts.num_stream_listen; i++) {
        uv_tcp_t *l = &w->stream_listeners[i];
        uv_tcp_init(&w->loop, l);
        l->data = w;
        int rc = uv_tcp_open(l, w->stream_fds[i]);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)l, 4096, lm_stream_on_connection);
        if (rc != 0)
            lm_log_error("worker %d: listen on %s: %s", w->id, srv->opts.stream_listen[i], uv_strerror(rc));
        w->num_stream_listeners++;
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (w->cur) {
        lm_worker_snap_release(w, w->cur);
        w->cur = NULL;
    }
    lm_snapshot_t *pending = atomic_exchange(&w->mailbox, NULL);
    if (pending)
        lm_snapshot_unref(pending);
    lm_router_thread_cleanup();
    atomic_fetch_sub(&lm__workers_running, 1);
}

void lm_server_publish(lm_server_t *srv, lm_snapshot_t *snap)
{
    /* Once stopping, workers may have left their loop and emptied their
     * mailbox for the last time: a snapshot handed over then would leak. */
    for (int i = 0; srv->workers_ready && !srv->stopping && i < srv->num_workers; i++) {
        lm_worker_t *w = &srv->workers[i];
        lm_snapshot_ref(snap);
        lm_snapshot_t *old = atomic_exchange(&w->mailbox, snap);
        if (old)
            lm_snapshot_unref(old);
        uv_async_send(&w->async);
    }
    lm_snapshot_t *old = srv->current;
    srv->current = snap;
    if (!srv->stopping)
        lm_health_checks_update(srv->loop, snap); /* active health checks follow the config */
    if (old)
        lm_snapshot_unref(old);
}

/* ---------------------------------------------------------------- */
/* addresses                                                         */

int lm_parse_hostport(const char *s, struct sockaddr_storage *ss)
{
    char host[256];
    const char *colon;
    memset(ss, 0, sizeof(*ss));
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof(host))
            return LM_ERROR;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof(host))
            return LM_ERROR;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535 || colon[1] == '\0')
        return LM_ERROR;
    if (host[0] == '\0' || strcmp(host, "*") == 0)
        strcpy(host, "0.0.0.0");
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0)
        return LM_OK;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
        return LM_OK;
    struct addrinfo hints = { 0 }, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
        return LM_ERROR;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port); /* same offset for v6 */
    freeaddrinfo(res);
    return LM_OK;
}

/* "ADDR:PORT [ssl] [reuseport] [backlog=N]" -> addr[] / ssl[]. */
static int lm__parse_listen_list(const char *const *specs, size_t n, char **addr, bool *ssl, bool *http2,
                                 const char *what)
{
    for (size_t l = 0; l < n; l++) {
        char *copy = strdup(specs[l]);
        if (!copy)
            abort();
        char *save = NULL, *a = strtok_r(copy, " \t", &save);
        addr[l] = strdup(a ? a : "");
        for (char *f = strtok_r(NULL, " \t", &save); f; f = strtok_r(NULL, " \t", &save)) {
            if (strcmp(f, "ssl") == 0) {
                ssl[l] = true;
            } else if (strcmp(f, "http2") == 0 && http2) {
                http2[l] = true;
            } else if (strcmp(f, "reuseport") == 0 || strncmp(f, "backlog=", 8) == 0) {
                /* Kong's flags that are always on here */
            } else {
                lm_log_error("%s listener '%s': unknown flag '%s' (ssl,%s reuseport, backlog=N)", what, specs[l], f,
                             http2 ? " http2," : "");
                free(copy);
                return LM_ERROR;
            }
        }
        free(copy);
    }
    return LM_OK;
}

static int lm__parse_listeners(lm_server_t *srv)
{
    if (lm__parse_listen_list(srv->opts.proxy_listen, srv->opts.num_proxy_listen, srv->listen_addr, srv->listen_ssl,
                              srv->listen_http2, "proxy") != LM_OK)
        return LM_ERROR;
    return lm__parse_listen_list(srv->opts.stream_listen, srv->opts.num_stream_listen, srv->stream_addr,
                                 srv->stream_ssl, NULL, "stream");
}

static void lm__free_listeners(lm_server_t *srv)
{
    for (size_t l = 0; l < LM_MAX_LISTEN; l++) {
        free(srv->listen_addr[l]);
        free(srv->stream_addr[l]);
        srv->listen_addr[l] = srv->stream_addr[l] = NULL;
    }
}

static void lm__rotate_tickets(uv_timer_t *t)
{
    (void)t;
    lm_tls_rotate_tickets();
}

/* A bound, listening TCP socket with SO_REUSEPORT. */
static int lm__bind_reuseport(const char *addr, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    if (lm_parse_hostport(addr, &ss) != LM_OK) {
        snprintf(err, errlen, "invalid listen address '%s' (want HOST:PORT)", addr);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    socklen_t len = ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
        snprintf(err, errlen, "bind %s: %s", addr, strerror(errno));
        close(fd);
        return -1;
    }
    /* Listening now, before /status answers: connections that arrive before
     * the worker's loop runs wait in the backlog instead of being refused. */
    if (listen(fd, 4096) != 0) {
        snprintf(err, errlen, "listen %s: %s", addr, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* ---------------------------------------------------------------- */
/* applying configuration                                            */

typedef struct lm__apply_job {
    lm_apply_t a;
    uv_work_t work;
    lm_server_t *srv;
    lm_apply_cb cb;
    void *ctx;
    lm_snapshot_t *snap;
    lm_apply_build_fn build;
    struct lm__apply_job *next;
} lm__apply_job_t;

static lm__apply_job_t *lm__apply_queue, *lm__apply_tail;
static bool lm__apply_running;

char *lm_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf)
            abort();
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
        if (n + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static double lm__ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Writes the document to STATE_DIR/config.json atomically (tmp + fsync + rename). */
static void lm__persist(lm_server_t *srv, const lm_snapshot_t *snap)
{
    const char *dir = srv->opts.state_dir;
    if (!dir || !snap->doc_json)
        return;
    char tmp[4096], final[4096];
    snprintf(tmp, sizeof(tmp), "%s/config.json.tmp", dir);
    snprintf(final, sizeof(final), "%s/config.json", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        lm_log_warn("state dir: cannot write %s: %s", tmp, strerror(errno));
        return;
    }
    size_t off = 0;
    while (off < snap->doc_json_len) {
        ssize_t w = write(fd, snap->doc_json + off, snap->doc_json_len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    bool ok = off == snap->doc_json_len && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, final) != 0) {
        lm_log_warn("state dir: cannot save %s", final);
        unlink(tmp);
        return;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { /* the rename itself must survive a crash */
        fsync(dfd);
        close(dfd);
    }
}

/* Parse, validate, compile; runs on a thread-pool thread. */
static void lm__apply_compile(lm_server_t *srv, lm__apply_job_t *j, const char *current_hash)
{
    lm_apply_t *a = &j->a;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lm_config_opts_t opts = { .substitute_env = a->substitute_env };
    cJSON *doc = lm_config_parse(a->data, a->len, &opts, &a->errs);
    lm_config_t *cfg = doc ? lm_config_build(doc, &a->errs) : NULL;
    a->parse_ms = lm__ms_since(&t0);
    if (!cfg) {
        a->result = LM_ERROR;
        return;
    }
    memcpy(a->hash, cfg->hash, sizeof(a->hash));
    if (a->check_hash && current_hash && strcmp(current_hash, cfg->hash) == 0) {
        a->unchanged = true;
        a->result = LM_OK;
        lm_config_free(cfg);
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    j->snap = lm_snapshot_compile(cfg, &a->errs);
    a->compile_ms = lm__ms_since(&t0);
    if (!j->snap) {
        a->result = LM_ERROR;
        return;
    }
    lm__persist(srv, j->snap);
    a->result = LM_OK;
}

static void lm__apply_work(uv_work_t *req)
{
    lm__apply_job_t *j = req->data;
    lm__apply_compile(j->srv, j, j->srv->current ? j->srv->current->hash : NULL);
}

static void lm__apply_next(lm_server_t *srv);

static void lm__apply_after(uv_work_t *req, int status)
{
    lm__apply_job_t *j = req->data;
    lm_server_t *srv = j->srv;
    if (j->snap) {
        lm_server_publish(srv, j->snap);
        j->snap = NULL;
        atomic_fetch_add(&lm_counters.config_applies, 1);
        lm_log_info("configuration %s applied (parse %.1f ms, compile %.1f ms)", j->a.hash, j->a.parse_ms,
                    j->a.compile_ms);
    } else if (j->a.result != LM_OK) {
        atomic_fetch_add(&lm_counters.config_failures, 1);
        const lm_config_error_t *e = j->a.errs.count ? &j->a.errs.items[0] : NULL;
        lm_log_warn("configuration refused: %zu error(s)%s%s%s%s", j->a.errs.count, e ? "; first: " : "",
                    e ? e->path : "", e && e->path[0] ? ": " : "", e ? e->message : "");
    }
    if (j->cb)
        j->cb(&j->a, j->ctx);
    lm_config_errors_free(&j->a.errs);
    free(j->a.data);
    free(j);
    lm__apply_running = false;
    lm__apply_next(srv);
}

static void lm__apply_next(lm_server_t *srv)
{
    lm__apply_job_t *j;
    for (;;) {
        if (lm__apply_running || !lm__apply_queue)
            return;
        j = lm__apply_queue;
        lm__apply_queue = j->next;
        if (!lm__apply_queue)
            lm__apply_tail = NULL;
        if (!j->build)
            break;
        /* built now, over everything applied before it */
        if (j->build(srv, j->ctx, &j->a.data, &j->a.len) == LM_OK)
            break;
        lm_config_errors_free(&j->a.errs);
        free(j);
    }
    lm__apply_running = true;
    j->work.data = j;
    uv_queue_work(srv->loop, &j->work, lm__apply_work, lm__apply_after);
}

void lm_apply_start(lm_server_t *srv, char *data, size_t len, bool substitute_env, bool check_hash,
                    lm_apply_cb cb, void *ctx)
{
    lm__apply_job_t *j = calloc(1, sizeof(*j));
    if (!j)
        abort();
    j->a.data = data;
    j->a.len = len;
    j->a.substitute_env = substitute_env;
    j->a.check_hash = check_hash;
    lm_config_errors_init(&j->a.errs);
    j->srv = srv;
    j->cb = cb;
    j->ctx = ctx;
    if (lm__apply_tail)
        lm__apply_tail->next = j;
    else
        lm__apply_queue = j;
    lm__apply_tail = j;
    lm__apply_next(srv);
}

void lm_apply_start_built(lm_server_t *srv, lm_apply_build_fn build, lm_apply_cb cb, void *ctx)
{
    lm__apply_job_t *j = calloc(1, sizeof(*j));
    if (!j)
        abort();
    j->build = build;
    lm_config_errors_init(&j->a.errs);
    j->srv = srv;
    j->cb = cb;
    j->ctx = ctx;
    if (lm__apply_tail)
        lm__apply_tail->next = j;
    else
        lm__apply_queue = j;
    lm__apply_tail = j;
    lm__apply_next(srv);
}

int lm_apply_now(lm_server_t *srv, char *data, size_t len, bool substitute_env, lm_config_errors_t *errs)
{
    lm__apply_job_t j;
    memset(&j, 0, sizeof(j));
    j.a.data = data;
    j.a.len = len;
    j.a.substitute_env = substitute_env;
    j.a.errs = *errs;
    lm__apply_compile(srv, &j, NULL);
    *errs = j.a.errs;
    if (!j.snap)
        return LM_ERROR;
    lm_server_publish(srv, j.snap);
    atomic_fetch_add(&lm_counters.config_applies, 1);
    lm_log_info("configuration %s loaded (parse %.1f ms, compile %.1f ms)", j.a.hash, j.a.parse_ms, j.a.compile_ms);
    return LM_OK;
}

/* ---------------------------------------------------------------- */
/* signals and drain                                                 */

static void lm__close_cb_noop(uv_handle_t *h)
{
    (void)h;
}

static bool lm__workers_done(lm_server_t *srv)
{
    (void)srv;
    return atomic_load(&lm__workers_running) == 0;
}

static uint64_t lm__drain_start;

static void lm__drain_tick(uv_timer_t *t)
{
    lm_server_t *srv = t->data;
    uint64_t elapsed = uv_now(srv->loop) - lm__drain_start;
    if (elapsed >= (uint64_t)srv->opts.drain_timeout_ms) {
        for (int i = 0; i < srv->num_workers; i++) {
            atomic_store(&srv->workers[i].stop, 2);
            uv_async_send(&srv->workers[i].async);
        }
    }
    if (!lm__workers_done(srv) && elapsed < (uint64_t)srv->opts.drain_timeout_ms + 5000)
        return;
    uv_close((uv_handle_t *)&srv->drain_timer, lm__close_cb_noop);
}

static void lm__begin_stop(lm_server_t *srv)
{
    if (srv->stopping)
        return;
    srv->stopping = true;
    lm_log_info("stopping: draining in-flight requests (up to %d ms)", srv->opts.drain_timeout_ms);
    /* Signal handles stay open (closing them would restore the default
     * action: a second SIGTERM or a SIGHUP would kill the process) but no
     * longer keep the loop alive; lm_server_run closes them at the end. */
    uv_unref((uv_handle_t *)&srv->sigterm);
    uv_unref((uv_handle_t *)&srv->sigint);
    uv_unref((uv_handle_t *)&srv->sighup);
    lm_admin_stop(srv);
    lm_health_checks_stop();
    for (int i = 0; i < srv->num_workers; i++) {
        atomic_store(&srv->workers[i].stop, 1);
        uv_async_send(&srv->workers[i].async);
    }
    uv_timer_init(srv->loop, &srv->drain_timer);
    srv->drain_timer.data = srv;
    uv_update_time(srv->loop);
    lm__drain_start = uv_now(srv->loop);
    uv_timer_start(&srv->drain_timer, lm__drain_tick, 50, 50);
}

static void lm__on_reload_done(lm_apply_t *a, void *ctx)
{
    (void)ctx;
    for (size_t i = 0; i < a->errs.count; i++)
        lm_log_error("reload: %s: %s", a->errs.items[i].path, a->errs.items[i].message);
}

static void lm__on_signal(uv_signal_t *s, int signum)
{
    lm_server_t *srv = s->data;
    if (srv->stopping) {
        if (signum == SIGHUP) {
            lm_log_warn("SIGHUP: ignored while stopping");
            return;
        }
        lm_log_warn("%s again: closing in-flight requests now", signum == SIGINT ? "SIGINT" : "SIGTERM");
        for (int i = 0; i < srv->num_workers; i++) {
            atomic_store(&srv->workers[i].stop, 2);
            uv_async_send(&srv->workers[i].async);
        }
        return;
    }
    if (signum == SIGHUP) {
        if (!srv->opts.config_path) {
            lm_log_warn("SIGHUP: no --config file to reload");
            return;
        }
        size_t len;
        char *data = lm_read_file(srv->opts.config_path, &len);
        if (!data) {
            lm_log_error("SIGHUP: cannot read %s: %s", srv->opts.config_path, strerror(errno));
            return;
        }
        lm_log_info("SIGHUP: reloading %s", srv->opts.config_path);
        lm_apply_start(srv, data, len, true, false, lm__on_reload_done, NULL);
        return;
    }
    lm__begin_stop(srv);
}

/* ---------------------------------------------------------------- */
/* start-up                                                          */

static int lm__initial_config(lm_server_t *srv)
{
    const char *path = srv->opts.config_path;
    char state_file[4096];
    bool from_state = false;
    if (!path && srv->opts.state_dir) {
        snprintf(state_file, sizeof(state_file), "%s/config.json", srv->opts.state_dir);
        if (access(state_file, R_OK) == 0) {
            path = state_file;
            from_state = true;
        }
    }
    if (!path) {
        lm_server_publish(srv, lm_snapshot_empty());
        lm_log_info("no configuration yet: every request gets 404 until one is posted to the admin API");
        return LM_OK;
    }
    size_t len;
    char *data = lm_read_file(path, &len);
    if (!data) {
        lm_log_error("cannot read %s: %s", path, strerror(errno));
        return LM_ERROR;
    }
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    int rc = lm_apply_now(srv, data, len, !from_state, &errs);
    free(data);
    for (size_t i = 0; i < errs.count; i++)
        lm_log_error("%s: %s%s%s", path, errs.items[i].path, errs.items[i].path[0] ? ": " : "", errs.items[i].message);
    lm_config_errors_free(&errs);
    if (rc == LM_OK && from_state)
        lm_log_info("restored the last applied configuration from %s", path);
    return rc;
}

/* mkdir -p, the last component 0700. */
static int lm__prepare_state_dir(const char *dir)
{
    if (!dir)
        return LM_OK;
    char path[4096];
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path)) {
        lm_log_error("state dir %s: path too long", dir);
        return LM_ERROR;
    }
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            lm_log_error("cannot create state dir %s: %s: %s", dir, path, strerror(errno));
            return LM_ERROR;
        }
        *p = '/';
    }
    struct stat st;
    if (mkdir(path, 0700) != 0 && (errno != EEXIST || stat(path, &st) != 0 || !S_ISDIR(st.st_mode))) {
        lm_log_error("cannot create state dir %s: %s", dir, errno == EEXIST ? "not a directory" : strerror(errno));
        return LM_ERROR;
    }
    return LM_OK;
}

int lm_server_run(const lm_server_opts_t *opts)
{
    static lm_server_t srv_storage;
    lm_server_t *srv = &srv_storage;
    memset(srv, 0, sizeof(*srv));
    srv->opts = *opts;
    srv->access_log_fd = -1;
    if (srv->opts.num_proxy_listen == 0) {
        srv->opts.proxy_listen[0] = "0.0.0.0:8000";
        srv->opts.num_proxy_listen = 1;
    }
    if (srv->opts.workers <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        srv->opts.workers = n > 0 ? (int)n : 1;
    }
    if (lm__prepare_state_dir(srv->opts.state_dir) != LM_OK)
        return 1;
    if (srv->opts.plugin_dir)
        lm_plugin_load_dir(srv->opts.plugin_dir);
    char terr[256], err[512];
    if (lm_trusted_parse(srv, srv->opts.trusted_ips, terr, sizeof(terr)) != LM_OK) {
        lm_log_error("%s", terr);
        return 2;
    }
    if (srv->opts.access_log) {
        srv->access_log_fd = open(srv->opts.access_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (srv->access_log_fd < 0) {
            lm_log_error("cannot open access log %s: %s", srv->opts.access_log, strerror(errno));
            return 1;
        }
    }
    if (lm__parse_listeners(srv) != LM_OK)
        return 2;
    lm_tls_opts_t topts = { .cert_file = srv->opts.ssl_cert, .key_file = srv->opts.ssl_cert_key,
                            .protocols = srv->opts.ssl_protocols, .ciphers = srv->opts.ssl_ciphers,
                            .ticket_rotate_s = srv->opts.ssl_ticket_rotate_s,
                            .client_ca_file = srv->opts.ssl_client_ca, .client_verify = srv->opts.ssl_client_verify };
    if (lm_tls_init(&topts, err, sizeof(err)) != LM_OK) {
        lm_log_error("%s", err);
        lm_tls_cleanup();
        lm__free_listeners(srv);
        return 2;
    }
    lm_upstream_tls_init();
    lm_h2_global_init();
    lm_uh2_global_init();
    lm_snapshot_reaper_start();
    srv->loop = uv_default_loop();
    srv->num_workers = srv->opts.workers;
    srv->workers = calloc((size_t)srv->num_workers, sizeof(lm_worker_t));
    if (!srv->workers)
        abort();

    /* bind everything first, so a port in use fails the start-up cleanly */
    int rc = 1;
    for (int i = 0; i < srv->num_workers; i++) {
        lm_worker_t *w = &srv->workers[i];
        w->srv = srv;
        w->id = i;
        for (size_t l = 0; l < srv->opts.num_proxy_listen; l++) {
            int fd = lm__bind_reuseport(srv->listen_addr[l], err, sizeof(err));
            if (fd < 0) {
                lm_log_error("proxy listener: %s", err);
                goto out_fds;
            }
            w->listen_ports[l] = fd;
        }
        for (size_t l = 0; l < srv->opts.num_stream_listen; l++) {
            int fd = lm__bind_reuseport(srv->stream_addr[l], err, sizeof(err));
            if (fd < 0) {
                lm_log_error("stream listener: %s", err);
                goto out_fds;
            }
            w->stream_fds[l] = fd;
        }
    }
    if (lm_admin_start(srv, err, sizeof(err)) != LM_OK) {
        lm_log_error("%s", err);
        goto out_fds;
    }
    if (lm__initial_config(srv) != LM_OK) {
        lm_admin_stop(srv);
        uv_run(srv->loop, UV_RUN_NOWAIT);
        goto out_fds;
    }

    for (int i = 0; i < srv->num_workers; i++) {
        lm_worker_t *w = &srv->workers[i];
        uint64_t seed = 0;
        if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed) || seed == 0)
            seed = (uint64_t)time(NULL) * 2654435761u + (uint64_t)i + 1;
        w->rng = seed | 1;
        uv_loop_init(&w->loop);
        uv_async_init(&w->loop, &w->async, lm__worker_async);
        w->async.data = w;
        lm_worker_defer_init(w);
        lm_map_init(&w->pools);
        lm_snapshot_ref(srv->current);
        lm__worker_take_snapshot(w, srv->current);
    }
    srv->workers_ready = true;
    atomic_store(&lm__workers_running, srv->num_workers);
    for (int i = 0; i < srv->num_workers; i++)
        uv_thread_create(&srv->workers[i].thread, lm__worker_main, &srv->workers[i]);

    uv_signal_init(srv->loop, &srv->sigterm);
    uv_signal_init(srv->loop, &srv->sigint);
    uv_signal_init(srv->loop, &srv->sighup);
    srv->sigterm.data = srv->sigint.data = srv->sighup.data = srv;
    uv_signal_start(&srv->sigterm, lm__on_signal, SIGTERM);
    uv_signal_start(&srv->sigint, lm__on_signal, SIGINT);
    uv_signal_start(&srv->sighup, lm__on_signal, SIGHUP);
    uv_timer_init(srv->loop, &srv->ticket_timer);
    uv_timer_start(&srv->ticket_timer, lm__rotate_tickets, (uint64_t)lm_tls_ticket_rotate_ms(),
                   (uint64_t)lm_tls_ticket_rotate_ms());
    uv_unref((uv_handle_t *)&srv->ticket_timer);
    for (size_t l = 0; l < srv->opts.num_proxy_listen; l++)
        lm_log_info("proxy listening on %s (%d workers)", srv->opts.proxy_listen[l], srv->num_workers);
    for (size_t l = 0; l < srv->opts.num_stream_listen; l++)
        lm_log_info("stream listening on %s", srv->opts.stream_listen[l]);

    uv_run(srv->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&srv->sigterm, lm__close_cb_noop);
    uv_close((uv_handle_t *)&srv->sigint, lm__close_cb_noop);
    uv_close((uv_handle_t *)&srv->sighup, lm__close_cb_noop);
    uv_close((uv_handle_t *)&srv->ticket_timer, lm__close_cb_noop);
    uv_run(srv->loop, UV_RUN_DEFAULT);

    for (int i = 0; i < srv->num_workers; i++) {
        lm_worker_t *w = &srv->workers[i];
        uv_thread_join(&w->thread);
        lm_snapshot_t *pending = atomic_exchange(&w->mailbox, NULL);
        if (pending) /* published after the worker's last look */
            lm_snapshot_unref(pending);
        uv_loop_close(&w->loop);
    }
    rc = 0;
    goto out;

out_fds:
    for (int i = 0; i < srv->num_workers; i++)
        for (size_t l = 0; l < srv->opts.num_proxy_listen; l++)
            if (srv->workers[i].listen_ports[l] > 0)
                close(srv->workers[i].listen_ports[l]);
    for (int i = 0; i < srv->num_workers; i++)
        for (size_t l = 0; l < srv->opts.num_stream_listen; l++)
            if (srv->workers[i].stream_fds[l] > 0)
                close(srv->workers[i].stream_fds[l]);
out:
    if (srv->current)
        lm_snapshot_unref(srv->current);
    srv->current = NULL;
    lm_snapshot_reaper_stop(); /* every snapshot freed before plugins, metrics and health state go */
    free(srv->workers);
    lm_trusted_free(srv);
    lm_plugin_shared_free_all();
    lm_plugin_unload_all(); /* every snapshot is gone: no compiled config points into them */
    if (srv->access_log_fd >= 0)
        close(srv->access_log_fd);
    uv_loop_close(srv->loop);
    lm_metrics_shutdown();
    lm_health_shutdown();
    lm_tls_cleanup();
    lm_h2_global_cleanup();
    lm_uh2_global_cleanup();
    lm__free_listeners(srv);
    lm_log_info("stopped");
    return rc;
}

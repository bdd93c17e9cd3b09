/* log_queue.c - the logging plugins' bounded queues and their sender
 * threads, and blocking connections for the send functions (see lm_logq.h). */
#include "lm_logq.h"
#include "lm_log.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct lm__entry {
    struct lm__entry *next;
    size_t len;
    char data[];
} lm__entry_t;

struct lm_logq {
    bool inited, started, stop;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    lm__entry_t *head, *tail;
    size_t count, bytes;
    uint64_t head_ms; /* when the oldest entry arrived */
    lm_logq_conf_t conf;
    const lm_logq_kind_t *kind;
    void *sink;
    char id[9]; /* label: a short hash of the configuration */
    struct lm_logq *next_all;
    _Atomic uint64_t sent, dropped_full, dropped_failed, batches_failed;
};

static pthread_mutex_t lm__all_lock = PTHREAD_MUTEX_INITIALIZER;
static lm_logq_t *lm__all;

uint64_t lm_logq_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void lm__deadline(struct timespec *ts, uint64_t ms_from_now)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms_from_now / 1000);
    ts->tv_nsec += (long)(ms_from_now % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* ---- configuration ---------------------------------------------------------- */

const lm_schema_field_t lm_logq_queue_fields[] = {
    { .name = "max_batch_size", .type = LM_SF_INTEGER, .required = true, .def = "1", .has_min = true, .min = 1,
      .has_max = true, .max = 1000000 },
    { .name = "max_coalescing_delay", .type = LM_SF_NUMBER, .required = true, .def = "1", .has_min = true,
      .min = 0, .has_max = true, .max = 3600 },
    { .name = "max_entries", .type = LM_SF_INTEGER, .required = true, .def = "10000", .has_min = true, .min = 1,
      .has_max = true, .max = 1000000 },
    { .name = "max_bytes", .type = LM_SF_INTEGER },
    { .name = "max_retry_time", .type = LM_SF_NUMBER, .def = "60" },
    { .name = "initial_retry_delay", .type = LM_SF_NUMBER, .def = "0.01", .has_min = true, .min = 0.001,
      .has_max = true, .max = 1000000 },
    { .name = "max_retry_delay", .type = LM_SF_NUMBER, .def = "60", .has_min = true, .min = 0.001,
      .has_max = true, .max = 1000000 },
    { .name = "concurrency_limit", .type = LM_SF_INTEGER, .def = "1" },
    { 0 },
};

void lm_logq_conf_default(lm_logq_conf_t *c)
{
    c->max_batch_size = 1;
    c->max_coalescing_delay = 1;
    c->max_entries = 10000;
    c->max_bytes = 0;
    c->max_retry_time = 60;
    c->initial_retry_delay = 0.01;
    c->max_retry_delay = 60;
}

void lm_logq_conf_from(lm_logq_conf_t *c, const cJSON *q)
{
    lm_logq_conf_default(c);
    if (!q)
        return;
    c->max_batch_size = (size_t)lm_schema_num(q, "max_batch_size");
    c->max_coalescing_delay = lm_schema_num(q, "max_coalescing_delay");
    c->max_entries = (size_t)lm_schema_num(q, "max_entries");
    c->max_bytes = lm_schema_get(q, "max_bytes") ? (size_t)lm_schema_num(q, "max_bytes") : 0;
    if (lm_schema_get(q, "max_retry_time"))
        c->max_retry_time = lm_schema_num(q, "max_retry_time");
    c->initial_retry_delay = lm_schema_num(q, "initial_retry_delay");
    c->max_retry_delay = lm_schema_num(q, "max_retry_delay");
    if (c->max_batch_size < 1)
        c->max_batch_size = 1;
    if (c->max_entries < 1)
        c->max_entries = 1;
}

/* ---- the queue ------------------------------------------------------------------ */

static void lm__fini(void *block);
static pthread_mutex_t lm__ssl_lock;
static SSL_CTX *lm__ssl;

lm_logq_t *lm_logq_get(const lm_logq_kind_t *kind, const cJSON *config, const lm_logq_conf_t *conf)
{
    char *key = cJSON_PrintUnformatted(config);
    if (!key)
        abort();
    lm_logq_t *q = lm_plugin_shared_ex(kind->plugin, lm_str(key), sizeof(*q), lm__fini);
    pthread_mutex_lock(&lm__all_lock);
    if (!q->inited) {
        pthread_mutex_init(&q->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&q->cond, &ca);
        pthread_condattr_destroy(&ca);
        q->conf = *conf;
        q->kind = kind;
        q->sink = kind->sink_new(config);
        uint32_t h = 2166136261u; /* FNV-1a of the config text */
        for (const char *p = key; *p; p++)
            h = (h ^ (unsigned char)*p) * 16777619u;
        snprintf(q->id, sizeof(q->id), "%08x", h);
        q->next_all = lm__all;
        lm__all = q;
        q->inited = true;
    }
    pthread_mutex_unlock(&lm__all_lock);
    cJSON_free(key);
    return q;
}

static void lm__drop_head(lm_logq_t *q)
{
    lm__entry_t *e = q->head;
    q->head = e->next;
    if (!q->head)
        q->tail = NULL;
    q->count--;
    q->bytes -= e->len;
    free(e);
    q->head_ms = lm_logq_now_ms(); /* the next one's age is not known: start its delay afresh */
}

static void *lm__run(void *arg);

void lm_logq_push(lm_logq_t *q, const char *data, size_t len)
{
    if (!q)
        return;
    if (q->conf.max_bytes && len > q->conf.max_bytes) { /* could never fit */
        atomic_fetch_add_explicit(&q->dropped_full, 1, memory_order_relaxed);
        return;
    }
    lm__entry_t *e = malloc(sizeof(*e) + len);
    if (!e) {
        atomic_fetch_add_explicit(&q->dropped_full, 1, memory_order_relaxed);
        return;
    }
    e->next = NULL;
    e->len = len;
    memcpy(e->data, data, len);
    pthread_mutex_lock(&q->lock);
    if (q->stop) {
        pthread_mutex_unlock(&q->lock);
        free(e);
        return;
    }
    size_t dropped = 0;
    while (q->head && (q->count >= q->conf.max_entries || (q->conf.max_bytes && q->bytes + len > q->conf.max_bytes))) {
        lm__drop_head(q);
        dropped++;
    }
    if (!q->head)
        q->head_ms = lm_logq_now_ms();
    if (q->tail)
        q->tail->next = e;
    else
        q->head = e;
    q->tail = e;
    q->count++;
    q->bytes += len;
    if (!q->started) {
        q->started = true;
        if (pthread_create(&q->thread, NULL, lm__run, q) != 0) {
            q->started = false;
            lm_log_error("%s: cannot start the log queue's thread", q->kind->plugin);
        }
    }
    if (q->count >= q->conf.max_batch_size || q->count == 1)
        pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
    if (dropped) {
        atomic_fetch_add_explicit(&q->dropped_full, dropped, memory_order_relaxed);
        lm_log_debug("%s: log queue %s full, %zu oldest entries dropped", q->kind->plugin, q->id, dropped);
    }
}

/* Waits on the queue's condition until `ms` from now (lock held). */
static void lm__wait(lm_logq_t *q, uint64_t ms)
{
    struct timespec ts;
    lm__deadline(&ts, ms);
    pthread_cond_timedwait(&q->cond, &q->lock, &ts);
}

static void *lm__run(void *arg)
{
    lm_logq_t *q = arg;
    size_t cap = q->conf.max_batch_size;
    lm__entry_t **batch = calloc(cap, sizeof(*batch));
    char **ptrs = calloc(cap, sizeof(*ptrs));
    size_t *lens = calloc(cap, sizeof(*lens));
    if (!batch || !ptrs || !lens)
        abort();
    uint64_t stop_at = 0;
    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (!q->head && !q->stop)
            lm__wait(q, 1000);
        if (!q->head)
            break; /* stopping and empty */
        /* coalesce: a full batch, or the oldest entry waited max_coalescing_delay */
        uint64_t delay_ms = (uint64_t)(q->conf.max_coalescing_delay * 1000.0);
        while (!q->stop && q->count < cap) {
            uint64_t now = lm_logq_now_ms();
            if (now >= q->head_ms + delay_ms)
                break;
            lm__wait(q, q->head_ms + delay_ms - now);
        }
        if (q->stop && !stop_at)
            stop_at = lm_logq_now_ms() + LM_LOGQ_SHUTDOWN_MS;
        size_t n = 0;
        while (q->head && n < cap) {
            lm__entry_t *e = q->head;
            q->head = e->next;
            if (!q->head)
                q->tail = NULL;
            q->count--;
            q->bytes -= e->len;
            batch[n] = e;
            ptrs[n] = e->data;
            lens[n] = e->len;
            n++;
        }
        q->head_ms = lm_logq_now_ms();
        bool shutting = q->stop;
        pthread_mutex_unlock(&q->lock);

        bool ok = false;
        if (!shutting || lm_logq_now_ms() < stop_at) {
            uint64_t first = lm_logq_now_ms();
            double delay = q->conf.initial_retry_delay;
            for (;;) {
                char err[256] = "";
                if (q->kind->send(q->sink, ptrs, lens, n, err, sizeof(err)) == 0) {
                    ok = true;
                    break;
                }
                atomic_fetch_add_explicit(&q->batches_failed, 1, memory_order_relaxed);
                uint64_t wait_ms = (uint64_t)(delay * 1000.0);
                pthread_mutex_lock(&q->lock);
                bool stopping = q->stop;
                pthread_mutex_unlock(&q->lock);
                if (stopping || lm_logq_now_ms() + wait_ms - first > (uint64_t)(q->conf.max_retry_time * 1000.0)) {
                    lm_log_error("%s: could not send a batch of %zu log entries: %s", q->kind->plugin, n, err);
                    break;
                }
                lm_log_debug("%s: log batch failed (%s), retrying in %llu ms", q->kind->plugin, err,
                             (unsigned long long)wait_ms);
                pthread_mutex_lock(&q->lock);
                uint64_t until = lm_logq_now_ms() + wait_ms;
                while (!q->stop && lm_logq_now_ms() < until)
                    lm__wait(q, until - lm_logq_now_ms());
                pthread_mutex_unlock(&q->lock);
                delay *= 2;
                if (delay > q->conf.max_retry_delay)
                    delay = q->conf.max_retry_delay;
            }
        }
        atomic_fetch_add_explicit(ok ? &q->sent : &q->dropped_failed, n, memory_order_relaxed);
        for (size_t i = 0; i < n; i++)
            free(batch[i]);
        pthread_mutex_lock(&q->lock);
    }
    pthread_mutex_unlock(&q->lock);
    free(batch);
    free(ptrs);
    free(lens);
    return NULL;
}

static void lm__fini(void *block)
{
    lm_logq_t *q = block;
    if (!q->inited)
        return;
    pthread_mutex_lock(&q->lock);
    q->stop = true;
    bool started = q->started;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
    if (started)
        pthread_join(q->thread, NULL);
    while (q->head)
        lm__drop_head(q);
    if (q->sink)
        q->kind->sink_free(q->sink);
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->lock);
    pthread_mutex_lock(&lm__all_lock);
    for (lm_logq_t **p = &lm__all; *p; p = &(*p)->next_all) {
        if (*p == q) {
            *p = q->next_all;
            break;
        }
    }
    bool last = lm__all == NULL;
    pthread_mutex_unlock(&lm__all_lock);
    q->inited = false;
    if (last) {
        pthread_mutex_lock(&lm__ssl_lock);
        if (lm__ssl)
            SSL_CTX_free(lm__ssl);
        lm__ssl = NULL;
        pthread_mutex_unlock(&lm__ssl_lock);
    }
}

void lm_logq_metrics_render(lm_buf_t *out)
{
    pthread_mutex_lock(&lm__all_lock);
    if (lm__all) {
        static const struct {
            const char *name, *type, *help;
        } m[] = {
            { "limen_log_queue_entries_sent_total", "counter", "Log entries delivered by each logging plugin's queue." },
            { "limen_log_queue_entries_dropped_total", "counter",
              "Log entries dropped: reason full (the queue was at max_entries or max_bytes), failed (retries gave up)." },
            { "limen_log_queue_send_failures_total", "counter", "Failed attempts to send a batch (each is retried)." },
            { "limen_log_queue_entries", "gauge", "Log entries waiting in each queue." },
        };
        for (size_t k = 0; k < LM_ARRAY_SIZE(m); k++) {
            lm_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m[k].name, m[k].help, m[k].name, m[k].type);
            for (lm_logq_t *q = lm__all; q; q = q->next_all) {
                const char *pl = q->kind->plugin;
                switch (k) {
                case 0: lm_buf_printf(out, "%s{plugin=\"%s\",queue=\"%s\"} %llu\n", m[k].name, pl, q->id,
                                      (unsigned long long)atomic_load(&q->sent)); break;
                case 1:
                    lm_buf_printf(out, "%s{plugin=\"%s\",queue=\"%s\",reason=\"full\"} %llu\n", m[k].name, pl, q->id,
                                  (unsigned long long)atomic_load(&q->dropped_full));
                    lm_buf_printf(out, "%s{plugin=\"%s\",queue=\"%s\",reason=\"failed\"} %llu\n", m[k].name, pl,
                                  q->id, (unsigned long long)atomic_load(&q->dropped_failed));
                    break;
                case 2: lm_buf_printf(out, "%s{plugin=\"%s\",queue=\"%s\"} %llu\n", m[k].name, pl, q->id,
                                      (unsigned long long)atomic_load(&q->batches_failed)); break;
                default: {
                    pthread_mutex_lock(&q->lock);
                    size_t cnt = q->count;
                    pthread_mutex_unlock(&q->lock);
                    lm_buf_printf(out, "%s{plugin=\"%s\",queue=\"%s\"} %zu\n", m[k].name, pl, q->id, cnt);
                }
                }
            }
        }
    }
    pthread_mutex_unlock(&lm__all_lock);
}

/* ---- blocking connections ---------------------------------------------------------- */

int lm_logq_connect(const char *host, int port, int socktype, int timeout_ms, char *err, size_t errlen)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = socktype }, *res = NULL;
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
            struct pollfd pfd = { .fd = fd, .events = POLLOUT };
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (poll(&pfd, 1, timeout_ms) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 &&
                soerr == 0)
                break;
            snprintf(err, errlen, "connect to %s:%d: %s", host, port, soerr ? strerror(soerr) : "timeout");
        } else {
            snprintf(err, errlen, "connect to %s:%d: %s", host, port, strerror(errno));
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return -1;
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (socktype == SOCK_STREAM) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return fd;
}

/* one TLS client context for every queue (no verification, as Kong's log
 * plugins); freed with the last queue */
static SSL_CTX *lm__ssl;
static pthread_mutex_t lm__ssl_lock = PTHREAD_MUTEX_INITIALIZER;

static SSL_CTX *lm__ssl_ctx(void)
{
    pthread_mutex_lock(&lm__ssl_lock);
    if (!lm__ssl) {
        lm__ssl = SSL_CTX_new(TLS_client_method());
        if (lm__ssl)
            SSL_CTX_set_verify(lm__ssl, SSL_VERIFY_NONE, NULL);
    }
    SSL_CTX *c = lm__ssl;
    pthread_mutex_unlock(&lm__ssl_lock);
    return c;
}

int lm_logq_conn_open(lm_logq_conn_t *c, const char *host, int port, bool tls, const char *sni, int timeout_ms,
                      char *err, size_t errlen)
{
    c->fd = lm_logq_connect(host, port, SOCK_STREAM, timeout_ms, err, errlen);
    c->ssl = NULL;
    if (c->fd < 0)
        return -1;
    if (tls) {
        SSL_CTX *ctx = lm__ssl_ctx();
        c->ssl = ctx ? SSL_new(ctx) : NULL;
        if (!c->ssl) {
            snprintf(err, errlen, "TLS: no context");
            lm_logq_conn_close(c);
            return -1;
        }
        SSL_set_fd(c->ssl, c->fd);
        if (sni && *sni)
            SSL_set_tlsext_host_name(c->ssl, sni);
        if (SSL_connect(c->ssl) != 1) {
            snprintf(err, errlen, "TLS handshake with %s:%d failed", host, port);
            ERR_clear_error();
            lm_logq_conn_close(c);
            return -1;
        }
    }
    c->last_used_ms = lm_logq_now_ms();
    return 0;
}

bool lm_logq_conn_alive(lm_logq_conn_t *c, uint64_t keepalive_ms)
{
    if (c->fd < 0)
        return false;
    if (lm_logq_now_ms() - c->last_used_ms > keepalive_ms) {
        lm_logq_conn_close(c);
        return false;
    }
    struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
    if (poll(&pfd, 1, 0) != 0) { /* readable while idle: closed by the peer (or junk) */
        lm_logq_conn_close(c);
        return false;
    }
    return true;
}

int lm_logq_conn_write(lm_logq_conn_t *c, const char *data, size_t len)
{
    while (len) {
        long n;
        if (c->ssl)
            n = SSL_write(c->ssl, data, (int)(len > (1u << 30) ? (1u << 30) : len));
        else
            n = send(c->fd, data, len, MSG_NOSIGNAL);
        if (n <= 0) {
            if (!c->ssl && n < 0 && errno == EINTR)
                continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    c->last_used_ms = lm_logq_now_ms();
    return 0;
}

long lm_logq_conn_read(lm_logq_conn_t *c, char *buf, size_t len)
{
    for (;;) {
        long n = c->ssl ? SSL_read(c->ssl, buf, (int)len) : recv(c->fd, buf, len, 0);
        if (n < 0 && !c->ssl && errno == EINTR)
            continue;
        return n;
    }
}

void lm_logq_conn_timeouts(lm_logq_conn_t *c, int send_ms, int read_ms)
{
    struct timeval s = { .tv_sec = send_ms / 1000, .tv_usec = (send_ms % 1000) * 1000 };
    struct timeval r = { .tv_sec = read_ms / 1000, .tv_usec = (read_ms % 1000) * 1000 };
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &s, sizeof(s));
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &r, sizeof(r));
}

void lm_logq_conn_close(lm_logq_conn_t *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}


void lm_log_to_queue(lm_ctx_t *ctx, const void *conf)
{
    const lm_logq_ref_t *c = conf;
    size_t n;
    char *rec = lm_log_serialize(ctx, &n);
    lm_logq_push(c->q, rec, n);
    free(rec);
}

int lm_log_configure_batched(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out, const lm_logq_kind_t *kind)
{
    if (lm_log_check_unsupported(cc, config) != LM_OK)
        return LM_ERROR;
    lm_logq_ref_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    lm_logq_conf_t qc;
    lm_logq_conf_default(&qc);
    qc.max_batch_size = 100;
    qc.max_coalescing_delay = 0.01; /* up to 100 records per write under load */
    qc.max_retry_time = 0;
    c->q = lm_logq_get(kind, config, &qc);
    *out = c;
    return LM_OK;
}

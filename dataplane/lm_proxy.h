/*
 * lm_proxy.h - internal to the data plane: workers, client connections,
 * requests and upstream connections. Included by server.c, proxy.c,
 * upstream.c and admin.c only.
 *
 * Ownership (libuv rules): whoever inits a handle closes it; memory is freed
 * in the close callback. A request belongs to its client connection; an
 * upstream connection belongs to the worker's pool while idle and to one
 * request while busy. Every request holds a reference on the worker-local
 * snapshot wrapper it started with, so a config swap never changes a request
 * in flight.
 */
#ifndef LM_PROXY_H
#define LM_PROXY_H

#include "lm_core.h"
#include "lm_arena.h"
#include "lm_http1.h"
#include "lm_map.h"
#include "lm_server.h"
#include "lm_snapshot.h"
#include "lm_plugin_rt.h"

#include <stdatomic.h>
#include <uv.h>

#define LM_CONN_BUF 16384
#define LM_MAX_REQ_HEADERS 100
#define LM_UP_BUF 16384
#define LM_POOL_MAX_IDLE 512          /* per worker per peer (Kong's upstream_keepalive_pool_size) */
#define LM_POOL_IDLE_TIMEOUT_MS 60000 /* Kong's upstream_keepalive_idle_timeout */
#define LM_POOL_MAX_REQUESTS 10000    /* Kong's upstream_keepalive_max_requests */
#define LM_CLIENT_HEADER_TIMEOUT_MS 60000
#define LM_CLIENT_KEEPALIVE_TIMEOUT_MS 60000
#define LM_CLIENT_BODY_TIMEOUT_MS 60000

typedef struct lm_server lm_server_t;
typedef struct lm_worker lm_worker_t;
typedef struct lm_conn lm_conn_t;
typedef struct lm_req lm_req_t;
typedef struct lm_upconn lm_upconn_t;

/* A write completion that runs at the end of the current loop iteration
 * (see lm_stream_write). */
typedef struct lm_defer {
    struct lm_defer *next;
    uv_write_t *req;
    uv_write_cb cb;
    int status;
    void (*fn)(struct lm_defer *d); /* a task (lm_worker_defer_task) instead of a write completion */
} lm_defer_t;

/* A worker's reference to a snapshot, counted without atomics. */
typedef struct {
    lm_snapshot_t *snap;
    long refs; /* requests using it + 1 while it is the worker's current one */
} lm_wsnap_t;

#define LM_POOL_KEY_MAX 352
typedef struct {
    lm_upconn_t *head; /* idle connections, most recently used first */
    size_t count;
    struct ssl_session_st *tls_sess; /* TLS pools: the last resumable session */
    char key[LM_POOL_KEY_MAX]; /* "ip:port", or "ip:port|<tls id>|<sni>" for TLS */
} lm_pool_t;

struct lm_worker {
    lm_server_t *srv;
    int id;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_tcp_t listeners[LM_MAX_LISTEN];
    int listen_ports[LM_MAX_LISTEN];
    size_t num_listeners;
    uv_async_t async;
    _Atomic(lm_snapshot_t *) mailbox; /* next snapshot, handed over by the control thread */
    _Atomic int stop;                 /* 1: drain; 2: close everything now */
    bool draining;
    lm_wsnap_t *cur;
    lm_map_t pools;                   /* peer key -> lm_pool_t */
    lm_conn_t *conns;                 /* every client connection (doubly linked) */
    size_t num_conns;
    uint64_t rng;
    uv_check_t defer_check;           /* runs deferred write completions after each poll */
    uv_idle_t defer_idle;             /* active while completions wait: the poll must not block */
    lm_defer_t *defer_head, *defer_tail;
    char date[40];                    /* cached Date header value, refreshed each second */
    char tls_in[16384];               /* ciphertext read from a TLS socket, fed at once to its session */
    uint64_t date_ms;
    /* streams (stream.c, lm_stream.h) */
    uv_tcp_t stream_listeners[LM_MAX_LISTEN];
    int stream_fds[LM_MAX_LISTEN];    /* bound sockets until the worker opens them */
    size_t num_stream_listeners;
    struct lm_tunnel *tunnels;        /* every stream connection (doubly linked) */
    size_t num_tunnels;
};

struct lm_server {
    lm_server_opts_t opts;
    uv_loop_t *loop; /* control loop */
    lm_worker_t *workers;
    int num_workers;
    lm_snapshot_t *current; /* one reference; replaced only on the control thread */
    int access_log_fd;
    int listen_fds[LM_MAX_LISTEN]; /* the control thread's bound sockets (kept to check binds) */
    char *listen_addr[LM_MAX_LISTEN]; /* proxy_listen[i] without its flags */
    bool listen_ssl[LM_MAX_LISTEN];   /* "ssl": TLS on that listener */
    bool listen_http2[LM_MAX_LISTEN]; /* "http2": ALPN h2 (TLS) or the cleartext preface */
    char *stream_addr[LM_MAX_LISTEN]; /* stream_listen[i] without its flags */
    bool stream_ssl[LM_MAX_LISTEN];   /* "ssl": tls and tls_passthrough routes there */
    uv_timer_t ticket_timer;          /* rotates the session-ticket keys */
    void *admin;  /* admin/status servers (admin.c) */
    bool stopping;
    bool workers_ready; /* loops and async handles initialised */
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t drain_timer;
    int exit_code;
    struct lm_cidr *trusted; /* --trusted-ips */
    size_t num_trusted;
};

struct lm_conn {
    uv_tcp_t tcp;            /* unused by stream connections */
    lm_worker_t *w;
    struct lm_tls_conn *tls; /* TLS listener: the session (lm_tls.h), else NULL */
    struct lm_h2_session *h2; /* speaking HTTP/2: the session (lm_h2.h) */
    struct lm_h2_stream *h2s; /* a stream connection: its HTTP/2 stream (no socket of its own) */
    lm_conn_t *parent;        /* a stream connection: the client connection */
    bool http2_ok;            /* the listener is flagged http2 */
    bool h2_complete;         /* a stream connection's response ended normally */
    lm_defer_t tls_drain;    /* decrypted bytes wait: read them at the end of this loop turn */
    bool tls_queued, tls_started; /* started: the first bytes were seen (a handshake record) */
    lm_conn_t *prev, *next;
    uv_timer_t timer;
    char *buf;
    size_t cap, len;  /* buf[0..len) holds received bytes not yet consumed */
    lm_req_t *req;
    lm_arena_t *arena; /* per-request memory, reset between requests */
    char ip[48];
    int port, local_port;
    uint64_t requests;
    bool reading, closing, want_close, body_write_pending;
    int handles; /* open handles (tcp, timer); memory freed when it drops to 0 */
};

struct lm_upconn {
    uv_tcp_t tcp;
    struct lm_tls_conn *tls;  /* service protocol https, else NULL */
    struct ssl_ctx_st *tls_ctx;
    struct lm_uh2 *h2;        /* service protocol grpc/grpcs: HTTP/2 (lm_uh2.h) */
    bool want_h2;
    lm_defer_t tls_drain;
    bool tls_queued, tls_ready, tls_verify;
    uv_connect_t connect_req;
    uv_write_t write_req;
    lm_defer_t write_defer;
    uv_timer_t timer;
    lm_worker_t *w;
    lm_pool_t *pool;
    lm_upconn_t *next_idle, *prev_idle;
    lm_req_t *req;      /* NULL while idle */
    char *buf;
    size_t cap, len;
    uint64_t requests;
    bool connected, writing, closing, idle, reading;
    int handles;
};

struct lm_req {
    lm_conn_t *c;
    lm_worker_t *w;
    lm_arena_t *arena;
    lm_wsnap_t *ws;
    uint64_t t_start, t_upstream_sent, t_upstream_head; /* uv_now() ms */

    /* request line and a few headers, copied out of the connection buffer */
    lm_str_t method, path, query, host, user_agent;
    int minor;
    bool head_method, client_keepalive, expect_continue;

    lm_route_rt_t *rrt;
    lm_svc_rt_t *srt;
    const lm_peer_t *peer;
    char request_id[40];

    /* upstream request head, built once */
    char *up_head;
    size_t up_head_len;

    /* request body */
    lm_body_kind_t req_body;
    uint64_t req_left;
    lm_chunked_t req_chunked;
    bool req_body_done, req_body_started;
    uint64_t bytes_in;

    /* upstream */
    lm_upconn_t *up;
    int tries;
    bool up_head_sent;

    /* response */
    int status;
    lm_body_kind_t resp_body;
    uint64_t resp_left;
    lm_chunked_t resp_chunked;
    bool resp_head_sent, resp_done, resp_chunked_out, resp_upstream_reusable;
    int writes_pending;
    uint64_t bytes_out;
    bool finished;

    /* plugins (ctx.c): the request as the upstream will get it, and what plugins decided */
    lm_http_header_t *hdrs;   /* request headers (LM_HDR_F_DELETED marks removed ones) */
    size_t num_hdrs, hdrs_cap;
    lm_str_t npath;           /* normalised path */
    lm_str_t raw_query;       /* ptr NULL when none */
    int64_t content_length;   /* -1 when none */
    lm_str_t *drop_args;      /* query arguments removed for the upstream */
    size_t num_drop_args;
    const lm_plugin_chain_t *chain;
    const lm_plugin_inst_t **ran; /* instances that take part (header_filter, log) */
    size_t num_ran;
    bool filters;             /* some instance in ran has a header_filter */
    const lm_consumer_t *consumer;
    const char *credential_id;
    bool anonymous;
    bool exited;              /* a plugin answered: lm_ctx_exit */
    int exit_status;
    const char *exit_ctype, *exit_body, *exit_headers;
    size_t exit_body_len;
    lm_http_header_t *resp_hdrs; /* response head while header_filter runs */
    size_t num_resp_hdrs, resp_hdrs_cap;
    uint64_t body_limit;      /* 0: none */
    const char *body_limit_msg;
    uint64_t body_seen;
    char real_ip[48];
    bool real_ip_done;
    struct lm__kv *kv;        /* lm_ctx_set / lm_ctx_get */
    /* plugin overrides of the upstream request line (ptr NULL: none; proxy_head.c) */
    lm_str_t up_method, up_path, up_query;
    bool up_query_set;        /* up_query replaces the query (empty: none) */
    const lm_route_match_t *match; /* the route match, for lm_ctx_uri_capture (NULL: none) */
};

#define LM_HDR_F_DELETED 0x80 /* removed by a plugin */

/* ---- server.c ---- */
/* Current snapshot wrapper of the worker with one more request reference. */
lm_wsnap_t *lm_worker_snap_acquire(lm_worker_t *w);
void lm_worker_snap_release(lm_worker_t *w, lm_wsnap_t *ws);
uint64_t lm_worker_random(lm_worker_t *w);
/*
 * Writes bufs to s like uv_write, but tries the socket at once first: when it
 * takes everything, cb runs later in this loop iteration (from d) and libuv
 * never touches epoll for it - a plain uv_write re-arms epoll after every
 * completed write. Otherwise the rest is queued with uv_write(req). cb gets
 * the same status uv_write would give. Returns uv_write's result. w NULL
 * (not on a worker loop): a plain uv_write.
 */
int lm_stream_write(lm_worker_t *w, uv_stream_t *s, uv_write_t *req, lm_defer_t *d, uv_buf_t *bufs, unsigned n,
                    uv_write_cb cb);
void lm_worker_defer_init(lm_worker_t *w);
/* Runs d->fn(d) at the end of this loop iteration (d must not be queued yet). */
void lm_worker_defer_task(lm_worker_t *w, lm_defer_t *d);
void lm_worker_defer_close(lm_worker_t *w);
const char *lm_worker_date(lm_worker_t *w);
/* Hands a new snapshot to every worker (control thread; takes one reference). */
void lm_server_publish(lm_server_t *srv, lm_snapshot_t *snap);

/* ---- proxy.c ---- */
void lm_proxy_on_connection(uv_stream_t *listener, int status);
/* Called by the upstream side. */
void lm_proxy_upstream_ready(lm_req_t *r);                     /* connected: send head */
void lm_proxy_upstream_error(lm_req_t *r, int status, const char *why, bool retryable);
void lm_proxy_upstream_data(lm_req_t *r);                      /* new bytes in r->up->buf */
void lm_proxy_upstream_eof(lm_req_t *r);
void lm_proxy_upstream_write_done(lm_req_t *r);
void lm_proxy_close_idle(lm_worker_t *w);                      /* drain: close idle client conns */
void lm_proxy_close_all(lm_worker_t *w);

/* The TLS session a connection's bytes travel in (a stream connection's is its parent's). */
static inline struct lm_tls_conn *lm_conn_tls(const lm_conn_t *c)
{
    return c->parent ? c->parent->tls : c->tls;
}

/* for h2.c: stream connections and the client connection under them */
lm_conn_t *lm_proxy_stream_open(lm_conn_t *parent, struct lm_h2_stream *st, size_t head_len);
void lm_proxy_stream_input(lm_conn_t *sc, size_t n); /* n bytes were appended to sc->buf */
void lm_proxy_stream_abort(lm_conn_t *sc);
void lm_proxy_stream_eof(lm_conn_t *sc); /* the client ended its side (a tunnel ends) */
void lm_proxy_stream_read_stop(lm_conn_t *sc); /* sc->buf is full: proxy.c's next read start resumes */
int lm_proxy_conn_write(lm_conn_t *c, uv_write_t *req, lm_defer_t *d, uv_buf_t *bufs, unsigned n, uv_write_cb cb);
void lm_proxy_conn_close(lm_conn_t *c);
void lm_proxy_conn_idle(lm_conn_t *c); /* no stream left: the keep-alive timeout runs */

/* ---- ctx.c (the lm_ctx_* API of lm_plugin.h, over lm_req_t) ---- */
/* Copies the parsed headers into the request's mutable list. */
void lm_ctx_init_headers(lm_req_t *r, const lm_http_header_t *h, size_t n, bool client_cert_hdr);
/* Runs one phase over r->ran (header_filter) or the chain (rewrite/access);
 * LM_OK, LM_PLUGIN_DONE or LM_ERROR. */
int lm_ctx_run_rewrite(lm_req_t *r, const lm_plugin_chain_t *global);
int lm_ctx_run_access(lm_req_t *r);
void lm_ctx_run_header_filter(lm_req_t *r);
void lm_ctx_run_log(lm_req_t *r);
void lm_ctx_resp_init(lm_req_t *r, size_t cap);
void lm_ctx_resp_append(lm_req_t *r, lm_str_t name, lm_str_t value);
/* trusted proxies (--trusted-ips): parsed once at start-up */
int lm_trusted_parse(lm_server_t *srv, const char *list, char *err, size_t errlen);
void lm_trusted_free(lm_server_t *srv);

/* ---- upstream.c ---- */
/* Gets a pooled connection to peer or starts connecting; calls back
 * lm_proxy_upstream_ready or lm_proxy_upstream_error. */
void lm_upstream_acquire(lm_req_t *r, const lm_peer_t *peer);
/* Done with the connection: back to the pool when reusable, else closed. */
void lm_upstream_release(lm_upconn_t *u, bool reusable);
int lm_upstream_write(lm_upconn_t *u, uv_buf_t *bufs, unsigned n);
void lm_upstream_read_start(lm_upconn_t *u);
void lm_upstream_read_stop(lm_upconn_t *u);
void lm_upstream_set_timer(lm_upconn_t *u, uint64_t ms); /* (re)arms the timeout; 0 disarms */
void lm_upstream_close_pools(lm_worker_t *w);
void lm_upstream_abort(lm_upconn_t *u); /* close a busy connection */
void lm_upstream_tls_init(void);        /* start-up: keeps upstream TLS sessions per pool */

#endif

/*
 * lm_server.h - the data plane process: worker threads with their own libuv
 * loops and SO_REUSEPORT listeners, plus the control thread (the caller of
 * lm_server_run) that runs the admin API, the status listener, signals and
 * configuration applies.
 */
#ifndef LM_SERVER_H
#define LM_SERVER_H

#include "lm_core.h"

#define LM_MAX_LISTEN 16

typedef struct {
    const char *proxy_listen[LM_MAX_LISTEN]; /* "ADDR:PORT [ssl]" (IPv6 as "[::]:8000") */
    size_t num_proxy_listen;
    const char *stream_listen[LM_MAX_LISTEN]; /* "ADDR:PORT [ssl]": L4 stream routes; none by default */
    size_t num_stream_listen;
    const char *admin_listen;  /* "unix:/path/admin.sock" (default) or "127.0.0.1:8001" */
    const char *admin_token;   /* required for a TCP admin listener not on loopback */
    const char *status_listen; /* "127.0.0.1:8100" (default) or "off" */
    const char *config_path;   /* declarative file, or NULL */
    const char *state_dir;     /* where the last applied config is kept */
    const char *access_log;    /* file for JSON access logs, or NULL (off) */
    int workers;               /* 0 = number of cores */
    bool latency_headers;      /* X-Limen-Upstream-Latency / X-Limen-Proxy-Latency */
    int drain_timeout_ms;      /* SIGTERM: how long in-flight requests may take */
    const char *plugin_dir;    /* external plugins (*.so) to load at start-up, or NULL */
    const char *trusted_ips;   /* comma-separated addresses/CIDRs whose real-IP header is believed */
    const char *real_ip_header; /* default "X-Real-IP" (Kong's real_ip_header); X-Forwarded-For works too */
    const char *ssl_cert, *ssl_cert_key; /* default certificate (PEM files); NULL: self-signed */
    const char *ssl_protocols;  /* "TLSv1.2 TLSv1.3" */
    const char *ssl_ciphers;    /* TLS 1.2 suites; NULL: Mozilla intermediate */
    int ssl_ticket_rotate_s;    /* session-ticket key lifetime, default 3600 */
    const char *ssl_client_ca;     /* client certificates: CA bundle (PEM) */
    const char *ssl_client_verify; /* "off" (default), "optional", "on" */
    bool managed;              /* the config belongs to a controller: entity writes are refused
                                  as Kong refuses them in DB-less mode (POST /config still works) */
} lm_server_opts_t;

/* Fills defaults. */
void lm_server_opts_init(lm_server_opts_t *o);

/* Parses "HOST:PORT" or "[V6]:PORT" (HOST may be a name); LM_OK or LM_ERROR. */
struct sockaddr_storage;
int lm_parse_hostport(const char *s, struct sockaddr_storage *ss);

/* Runs until SIGTERM/SIGINT; returns the process exit code. */
int lm_server_run(const lm_server_opts_t *opts);

#endif

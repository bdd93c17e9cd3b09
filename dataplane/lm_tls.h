/*
 * lm_tls.h - TLS for the data plane (OpenSSL 3), internal to dataplane/.
 *
 * Three parts:
 *   process   lm_tls_init once before the workers start: the listener
 *             settings (protocols, ciphers, default certificate) and the
 *             session-ticket keys every worker shares (rotated by
 *             lm_tls_rotate_tickets on the control loop).
 *   snapshot  lm_tls_store_build compiles the certificates/snis of a config
 *             into SNI -> SSL_CTX tables, and lm_tls_client_ctx the context a
 *             service with protocol https connects with. Contexts are cached
 *             by content across snapshots, so an unchanged certificate is not
 *             parsed again and an upstream connection pool keyed by context
 *             survives a config swap.
 *   connection  lm_tls_t: an SSL object over memory BIOs. The owner reads
 *             ciphertext from its libuv stream, lm_tls_feed()s it, and gets
 *             plaintext from lm_tls_read(); lm_tls_write() encrypts and writes
 *             with lm_stream_write, calling the caller's callback when the
 *             ciphertext is written. Handshake messages, tickets and alerts go
 *             out through lm_tls_flush().
 *
 * Return convention as everywhere: LM_OK / LM_ERROR / LM_AGAIN; reads return
 * a byte count (> 0), 0 at the peer's close_notify, LM_AGAIN or LM_ERROR.
 */
#ifndef LM_TLS_H
#define LM_TLS_H

#include "lm_core.h"
#include "lm_config.h"

#include <openssl/ssl.h>
#include <uv.h>

typedef struct lm_worker lm_worker_t;
typedef struct lm_defer lm_defer_t;

typedef struct {
    const char *cert_file, *key_file; /* default certificate (PEM); NULL: a self-signed one is made */
    const char *protocols;            /* "TLSv1.2 TLSv1.3" (Kong's ssl_protocols) */
    const char *ciphers;              /* TLS 1.2 cipher list; NULL: Mozilla intermediate (Kong's default) */
    int ticket_rotate_s;              /* session-ticket key lifetime; default 3600 */
    const char *client_ca_file;       /* client certificates: the CAs (PEM bundle) they must chain to */
    const char *client_verify;        /* "off" (default), "optional" or "on" */
} lm_tls_opts_t;

/* ---- process ----------------------------------------------------------- */
int lm_tls_init(const lm_tls_opts_t *o, char *err, size_t errlen);
void lm_tls_cleanup(void);
/* Makes a new ticket key current; the previous one still decrypts (tickets
 * live for up to two rotation periods). Any thread. */
void lm_tls_rotate_tickets(void);
int lm_tls_ticket_rotate_ms(void);

/* ---- snapshot ---------------------------------------------------------- */
typedef struct lm_tls_store lm_tls_store_t;
/* Certificates by SNI for this config. NULL with err on a certificate that
 * does not load (the validator normally caught it). */
lm_tls_store_t *lm_tls_store_build(const lm_config_t *cfg, char *err, size_t errlen);
void lm_tls_store_free(lm_tls_store_t *st);
/* The server context for a name: exact, "*.rest", "first.*", the "*" SNI,
 * then the default certificate. Never NULL. */
SSL_CTX *lm_tls_store_pick(const lm_tls_store_t *st, const char *sni);
/* The client context for a service with protocol https/grpcs (tls_verify,
 * tls_verify_depth, ca_certificates, client_certificate); one reference for
 * the caller (SSL_CTX_free). id gets 16 hex digits naming its content (two
 * contexts with the same id behave the same: connection pools and sessions
 * are keyed by it). NULL with err on failure. */
SSL_CTX *lm_tls_client_ctx(const lm_config_t *cfg, const lm_service_t *svc, char id[17], char *err, size_t errlen);
/* Drops cached contexts no snapshot built since the last call used. Called
 * after each successful compile (applies are serialised). */
void lm_tls_cache_sweep(void);

/* ---- connection -------------------------------------------------------- */
typedef struct lm_tls_conn {
    SSL *ssl;
    BIO *rbio, *wbio;
    bool established, eof, failed;
    char sni[256]; /* server side: the name the client sent ("" when none) */
    bool h2_ok;    /* server side: ALPN may choose h2 (an http2 listener) */
    const char *alpn; /* negotiated protocol, "" when none */
    /* server side with client verification on or optional, after the
     * handshake: "SUCCESS", "NONE" or "FAILED:<reason>" (NULL: verification
     * off), and the verified certificate's subject (RFC 2253; NULL unless
     * SUCCESS) */
    char *client_verify, *client_subject;
} lm_tls_t;

/* Server side: the worker's snapshot picks the certificate by SNI. */
int lm_tls_accept(lm_tls_t *t, lm_worker_t *w);
/* Client side: sni is the upstream's name, or an IP address (no SNI is sent
 * then, and verify checks the certificate names that address), or NULL;
 * verify checks the name too;
 * sess (may be NULL) is tried for resumption. app is what
 * lm_tls_session_cb receives. */
int lm_tls_connect(lm_tls_t *t, SSL_CTX *ctx, const char *sni, bool verify, SSL_SESSION *sess);
void lm_tls_free(lm_tls_t *t);

void lm_tls_feed(lm_tls_t *t, const char *p, size_t n);
/* Runs the handshake, then decrypts into out. */
ssize_t lm_tls_read(lm_tls_t *t, char *out, size_t cap);
/* Bytes received and not yet returned by lm_tls_read. */
bool lm_tls_pending(const lm_tls_t *t);
/* Writes whatever the TLS engine has produced (handshake, alerts, tickets). */
int lm_tls_flush(lm_tls_t *t, lm_worker_t *w, uv_stream_t *s);
/* Encrypts bufs and writes the records; cb(req, status) when written, like
 * lm_stream_write. */
int lm_tls_write(lm_tls_t *t, lm_worker_t *w, uv_stream_t *s, uv_write_t *req, uv_buf_t *bufs, unsigned n,
                 uv_write_cb cb);
/* Queues close_notify (then lm_tls_flush). */
void lm_tls_shutdown(lm_tls_t *t);
/* The OpenSSL reason of the last failure (verification result first). */
const char *lm_tls_error(lm_tls_t *t, char *buf, size_t len);

/* Client sessions: called with a new resumable session for the connection
 * whose SSL has ex-data app (lm_tls_set_app); return true to keep it. */
typedef bool (*lm_tls_session_cb)(void *app, SSL_SESSION *sess);
void lm_tls_set_session_cb(lm_tls_session_cb cb);
void lm_tls_set_app(lm_tls_t *t, void *app);

/* ---- OCSP stapling (ocsp.c) --------------------------------------------- */
/* Stapling for the certificates of a server context that name a responder
 * and have their issuer in their chain: the responses are fetched and
 * refreshed by a background thread. Cheap for the others. */
void lm_ocsp_attach(SSL_CTX *ctx);
/* The status callback of every server context (SSL_CTX_set_tlsext_status_cb). */
int lm_ocsp_status_cb(SSL *s, void *arg);
/* Stops the fetching thread (lm_tls_cleanup). */
void lm_ocsp_stop(void);

#endif

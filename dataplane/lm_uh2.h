/*
 * lm_uh2.h - HTTP/2 to upstreams (services with protocol grpc / grpcs),
 * internal to dataplane/ (upstream.c only). See upstream_h2.c.
 */
#ifndef LM_UH2_H
#define LM_UH2_H

#include "lm_proxy.h"

typedef struct lm_uh2 lm_uh2_t;

void lm_uh2_global_init(void);
void lm_uh2_global_cleanup(void);

/* The connection is up (and TLS done): preface and SETTINGS go out. */
int lm_uh2_start(lm_upconn_t *u);
void lm_uh2_free(lm_upconn_t *u);
/* proxy.c's HTTP/1.1 bytes for the upstream; done(u, status) once they are framed and written. */
int lm_uh2_write(lm_upconn_t *u, uv_buf_t *bufs, unsigned n, void (*done)(lm_upconn_t *u, int status));
/* Plaintext from the socket; LM_ERROR: the session failed. */
int lm_uh2_recv(lm_upconn_t *u, const char *p, size_t n);
/* Moves the HTTP/1.1 response bytes made so far into u->buf: bytes moved,
 * 0 when nothing (more) fits or waits, -1 when the stream was cut. */
ssize_t lm_uh2_drain(lm_upconn_t *u);
bool lm_uh2_pending(const lm_upconn_t *u);
/* The exchange is complete and the session healthy: the connection may serve the next request. */
bool lm_uh2_reusable(const lm_upconn_t *u);
void lm_uh2_next(lm_upconn_t *u);
bool lm_uh2_alive(const lm_upconn_t *u);

#endif

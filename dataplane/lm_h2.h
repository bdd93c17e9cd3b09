/*
 * lm_h2.h - downstream HTTP/2 (nghttp2), internal to dataplane/.
 *
 * A client connection that speaks HTTP/2 (ALPN "h2" on a listener flagged
 * http2, or the cleartext preface on such a listener) owns an
 * lm_h2_session_t. Each stream becomes a stream connection: an lm_conn_t
 * with no socket of its own (lm_conn_t.h2s) that proxy.c drives exactly like
 * an HTTP/1.1 connection carrying one request. The session writes the
 * stream's request into the stream connection's buffer as an HTTP/1.1 head
 * (":authority" as Host, cookie crumbs joined) followed by the DATA frames
 * (chunk-framed when no content-length was given), and turns what proxy.c
 * writes back (an HTTP/1.1 head, then the body, unframed) into HEADERS and
 * DATA frames; the stream ends when proxy.c finishes the request normally,
 * and is reset when it gives up.
 *
 * Flow control is manual: DATA is acknowledged (WINDOW_UPDATE) only as proxy.c
 * takes it, so a client cannot push more than a window per stream ahead of a
 * slow upstream; the response side completes proxy.c's write only when the
 * bytes were framed, so a slow client holds the upstream back.
 * Limits: 128 concurrent streams, 64 KiB of header list per request, nghttp2's
 * rapid-reset (RST_STREAM rate) and CONTINUATION-flood limits.
 */
#ifndef LM_H2_H
#define LM_H2_H

#include "lm_proxy.h"

typedef struct lm_h2_session lm_h2_session_t;

/* The client's first bytes are the HTTP/2 preface (or a prefix of it: *more). */
bool lm_h2_is_preface(const char *p, size_t n, bool *more);

/* Process start-up and exit (nghttp2 callbacks and options). */
void lm_h2_global_init(void);
void lm_h2_global_cleanup(void);

/* Turns connection c into an HTTP/2 session (c->h2); LM_OK or LM_ERROR. */
int lm_h2_start(lm_conn_t *c);
/* Feeds c->buf[0..c->len) to the session (c->len becomes 0) and sends what
 * is due. The session may close c. */
void lm_h2_input(lm_conn_t *c);
/* c is closing: every stream connection is closed (lm_h2_free, from the
 * close callback, frees the session once no write points into it). */
void lm_h2_close(lm_conn_t *c);
void lm_h2_free(lm_conn_t *c);
/* Draining: GOAWAY; c closes once its streams are done. */
void lm_h2_shutdown(lm_conn_t *c);

/* Stream connections (c->h2s), called by proxy.c. */
int lm_h2_stream_write(lm_conn_t *sc, uv_write_t *req, uv_buf_t *bufs, unsigned n, uv_write_cb cb);
void lm_h2_stream_read_start(lm_conn_t *sc);
/* The upstream's trailers ("Name: value\r\n" lines), sent after the body. */
void lm_h2_stream_trailers(lm_conn_t *sc, const char *lines, size_t len);
/* sc is closing: complete means its response ended normally (END_STREAM),
 * else the stream is reset. */
void lm_h2_stream_detach(lm_conn_t *sc, bool complete);

#endif

/*
 * lm_ctl_http.h - the controller's own small HTTP/1.1 server (/healthz,
 * /readyz, /metrics, /debug/config) on a libuv loop.
 *
 * Requests are parsed with the data plane's strict parser (lm_http1.h) and
 * answered by one synchronous handler. The server handles the protocol:
 *  - keep-alive (HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with
 *    "Connection: keep-alive"), pipelined requests answered in order;
 *  - HEAD: the handler's headers (Content-Length included), no body;
 *  - a request head over 16 KiB or more than 64 header fields: 431; a
 *    malformed request: 400 (or the parser's 414/501/505); a request body
 *    over 1 KiB or a chunked one: 413 (smaller bodies are read and ignored);
 *    each of these closes the connection;
 *  - a connection idle (or sending a request) for 30 s is closed; at most 256
 *    connections at once (more are closed at once).
 * 404, 405 and the like are the handler's answers.
 */
#ifndef LM_CTL_HTTP_H
#define LM_CTL_HTTP_H

#include "lm_core.h"
#include <uv.h>

typedef struct lm_ctl_http lm_ctl_http_t;

/*
 * Answers one request. method: "GET", "HEAD", ... (the handler sees HEAD as
 * itself and may answer it like GET; the body is not sent); path without
 * the query, as sent (not percent-decoded); query after '?' or "". Sets
 * *body to malloc'd bytes (the server frees them; NULL = empty) and *len,
 * *content_type (static or living as long as the server; NULL =
 * "text/plain; charset=utf-8"). Returns the status code (100..599; anything
 * else is answered 500).
 */
typedef int (*lm_ctl_http_handler_fn)(const char *method, const char *path, const char *query, char **body,
                                      size_t *len, const char **content_type, void *data);

/*
 * Listens on "HOST:PORT": "127.0.0.1:10254", "[::1]:10254", "localhost:10254",
 * ":10254" or "*:10254" (all addresses: IPv6 and IPv4 when the host has IPv6,
 * else IPv4), port 0 = any (see lm_ctl_http_port). Returns NULL with a
 * message in err when the address is malformed or cannot be bound.
 */
lm_ctl_http_t *lm_ctl_http_start(uv_loop_t *loop, const char *listen, lm_ctl_http_handler_fn handler, void *data,
                                 char *err, size_t errlen);

/* Closes the listener and every connection (responses being written are
 * dropped), calls the handler no more, and frees h once the loop has closed
 * the handles. NULL is fine. */
void lm_ctl_http_stop(lm_ctl_http_t *h);

/* The bound port. */
int lm_ctl_http_port(const lm_ctl_http_t *h);

/* How long a connection may stay idle or take to send a request (default
 * 30000 ms); applies to connections accepted afterwards. For tests. */
void lm_ctl_http_set_idle_timeout(lm_ctl_http_t *h, unsigned ms);

#endif

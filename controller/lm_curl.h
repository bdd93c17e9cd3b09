/*
 * lm_curl.h - libcurl's multi interface driven by a libuv loop, and a small
 * buffered-request helper on top of it. Everything the controller says over
 * HTTP (the API server, the data planes) goes through one lm_curl_t per loop.
 *
 * Ownership: the caller creates and configures each easy handle, hands it to
 * lm_curl_add and gets exactly one done callback (unless it calls
 * lm_curl_remove first); after the callback the easy handle is the caller's
 * again (curl_easy_cleanup it or reuse it). Streaming responses set their own
 * CURLOPT_WRITEFUNCTION before lm_curl_add.
 */
#ifndef LM_CURL_H
#define LM_CURL_H

#include "lm_core.h"
#include <curl/curl.h>
#include <uv.h>

typedef struct lm_curl lm_curl_t;

/* rc: CURLE_OK or the transfer error; errbuf: curl's message ("" if none). */
typedef void (*lm_curl_done_cb)(CURL *easy, CURLcode rc, const char *errbuf, void *data);

lm_curl_t *lm_curl_new(uv_loop_t *loop);
/* Aborts every transfer still running (no callbacks), closes the loop
 * handles and frees c once they are closed (run the loop to finish). */
void lm_curl_free(lm_curl_t *c);

/* Starts a transfer. Returns LM_OK or LM_ERROR (no callback then). Sets
 * CURLOPT_PRIVATE and CURLOPT_ERRORBUFFER on easy: do not use them. */
int lm_curl_add(lm_curl_t *c, CURL *easy, lm_curl_done_cb done, void *data);
/* Aborts a transfer started with lm_curl_add; no callback follows. */
void lm_curl_remove(lm_curl_t *c, CURL *easy);

/* ---- buffered requests --------------------------------------------------- */

typedef struct {
    CURLcode rc;       /* CURLE_OK when an HTTP response arrived */
    const char *error; /* transport error text, "" when rc == CURLE_OK */
    long status;       /* HTTP status, 0 without a response */
    const char *body;  /* NUL-terminated (also when empty); valid during the callback */
    size_t len;
    double seconds;    /* total time */
} lm_curl_resp_t;

typedef void (*lm_curl_resp_cb)(const lm_curl_resp_t *r, void *data);

/* Runs easy (configured by the caller: URL, method, headers, body, TLS...)
 * collecting the response body (capped at max_body bytes, 0 = 64 MiB: over
 * the cap the transfer fails with CURLE_WRITE_ERROR); then calls cb and
 * curl_easy_cleanup's easy (and frees the curl_slist `headers`, may be NULL,
 * which must stay alive until then). Returns LM_OK or LM_ERROR (then easy
 * and headers are freed, no callback). */
int lm_curl_fetch(lm_curl_t *c, CURL *easy, struct curl_slist *headers, size_t max_body,
                  lm_curl_resp_cb cb, void *data);

#endif

/*
 * lm_push.h - keeps every data plane serving the controller's current
 * declarative document: POST /config?check_hash=1 to each target's admin API,
 * GET /status every check interval to notice a data plane that restarted,
 * joined or was changed by someone else, retries with backoff.
 *
 * Targets are admin API addresses, in named groups ("static" from flags,
 * "service" from discovery, ...); each group's set is replaced as a whole.
 *   "unix:/run/limen/admin.sock"   the local socket (no token is sent)
 *   "http://10.1.2.3:8001"         TCP; the token goes as Authorization: Bearer
 *   "https://10.1.2.3:8444"        TLS with ca_file, client cert_file/key_file
 * A target is identified by (group, url): the same URL in two groups is two
 * targets.
 *
 * Per target, one request at a time. What happens:
 *  - a new target gets GET /status at once; if its configuration_hash is not
 *    the document's, the document follows at once;
 *  - lm_push_set_config: every target not known to serve that hash gets it
 *    at once (a status check in flight is abandoned for it); a target in the
 *    middle of a push gets the newest document when that push ends (only the
 *    newest: documents in between are skipped);
 *  - a failed push (no response, 4xx, 5xx) is retried with exponential
 *    backoff per target (0.5 s doubling to 30 s, +-20% jitter) with the newest
 *    document; a 400 is logged with the data plane's message (truncated),
 *    never with the document (it holds secrets);
 *  - every check_interval_ms: GET /status; a hash other than the one the
 *    target acknowledged means it lost the document (restart without its
 *    state dir, someone else's POST) and it gets it again at once. A target
 *    whose last push failed with no response gets it as soon as a status
 *    check answers again; one whose push got an HTTP error waits for its
 *    backoff (a status check would only repeat the error sooner).
 * 201 and 304 (unchanged, from check_hash=1) both count as success.
 *
 * libuv rules: everything runs on the loop given to lm_push_new, callbacks
 * come from that loop, and lm_push_free must come before lm_curl_free of the
 * lm_curl_t it was given.
 */
#ifndef LM_PUSH_H
#define LM_PUSH_H

#include "lm_core.h"
#include "lm_curl.h"
#include <cjson/cJSON.h>
#include <uv.h>

typedef struct lm_push lm_push_t;

typedef struct {
    const char *token;     /* admin token for http(s) targets, or NULL */
    const char *ca_file;   /* https: CA bundle to verify data planes (NULL: the system's) */
    const char *cert_file; /* https: client certificate (PEM), or NULL */
    const char *key_file;  /* https: its key (PEM), or NULL */
    unsigned check_interval_ms; /* GET /status period; 0 = 2000 */
    unsigned timeout_ms;        /* whole-request limit; 0 = 10000 */
} lm_push_opts_t;

/* Copies every string of opts. Returns NULL on a token with control
 * characters (it goes into a header) or out of memory. */
lm_push_t *lm_push_new(uv_loop_t *loop, lm_curl_t *curl, const lm_push_opts_t *opts);

/* Aborts every request (no callbacks afterwards), stops the timers and frees
 * p once the loop has closed them. NULL is fine. */
void lm_push_free(lm_push_t *p);

/*
 * Replaces the set of targets of one group (group NULL = ""). URLs are
 * "unix:PATH", "http://HOST[:PORT][/PREFIX]" or "https://..."; duplicates
 * count once. Targets new to the set start with a status check at once;
 * those no longer in it stop (a request in flight is aborted, no callback).
 * Returns LM_OK, or LM_ERROR when some URL is malformed: then nothing
 * changes and the first bad URL is logged.
 */
int lm_push_set_targets(lm_push_t *p, const char *group, const char *const *urls, size_t n);

/*
 * The document to serve (JSON or YAML bytes, copied) and its hash (the
 * lm_config_build cfg->hash of it, 32 hex digits: what the data plane's
 * GET /status reports once it serves it). The same hash again is a no-op.
 */
void lm_push_set_config(lm_push_t *p, const char *json, size_t len, const char *hash);

/*
 * Called after each push attempt (not after status checks): ok, the HTTP
 * status (0 when no response came), error ("" when ok: else curl's message
 * or "HTTP 400: <the data plane's message>"), the attempt's duration.
 * Strings are valid during the call only. The callback may call any lm_push
 * function, lm_push_free included.
 */
typedef void (*lm_push_result_cb)(const char *url, bool ok, int status, const char *error, double seconds,
                                  void *data);
void lm_push_on_result(lm_push_t *p, lm_push_result_cb cb, void *data);

typedef struct {
    uint64_t pushes_ok, pushes_failed, checks_failed;
    double last_push_seconds; /* duration of the last push attempt */
    size_t targets, targets_in_sync;
    /* sticky: a document was set and, at some moment, every target (at least
     * one) served the document current then */
    bool synced_once;
} lm_push_stats_t;
void lm_push_stats(const lm_push_t *p, lm_push_stats_t *out);

/*
 * Prometheus text (malloc'd, NUL-terminated; NULL when out of memory):
 *   limen_controller_push_targets                       gauge
 *   limen_controller_push_targets_in_sync               gauge
 *   limen_controller_push_target_in_sync{group,target}  gauge 0/1
 *   limen_controller_pushes_total{result="ok|rejected|error|unreachable"}
 *       rejected: 400 (invalid document); error: any other HTTP status;
 *       unreachable: no response (connect, timeout, TLS)
 *   limen_controller_push_status_checks_failed_total    counter
 *   limen_controller_push_duration_seconds              histogram (all attempts)
 */
char *lm_push_metrics(const lm_push_t *p);

/*
 * For /debug endpoints: an array with one object per target:
 * {"group","url","in_sync","reachable","acknowledged_hash","data_plane_hash",
 *  "pushes_ok","pushes_failed","consecutive_failures","last_status",
 *  "last_error","retry_in_ms"}. The caller cJSON_Delete's it; NULL when out
 * of memory.
 */
cJSON *lm_push_targets_json(const lm_push_t *p);

#endif

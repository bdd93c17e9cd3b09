/*
 * kube_internal.h - what kube_client.c and kube_informer.c share (not an API
 * for other modules: use lm_kube.h).
 */
#ifndef LM_KUBE_INTERNAL_H
#define LM_KUBE_INTERNAL_H

#include "lm_kube.h"
#include "lm_map.h"

#include <sys/stat.h>

typedef struct lm__kube_req lm__kube_req_t;

struct lm_kube {
    uv_loop_t *loop;
    lm_curl_t *curl;
    lm_kube_config_t cfg;
    /* cfg.token is re-read from cfg.token_file when the file changes (stat
     * before each request: cheap next to a TLS request) */
    struct stat token_st;
    bool token_st_known;
    bool token_err_logged;
    lm__kube_req_t *reqs;     /* running lm_kube_request's, doubly linked */
    lm_informer_t *informers; /* running informers, doubly linked */
    uint64_t rng;
};

/* A new easy handle for `path` (with query) on the API server: TLS (CA,
 * client certificate, insecure), auth, HTTP/2, keep-alive and the usual
 * headers set. *headers is the list to free once the transfer is over
 * (extra: one more header line or NULL). NULL on allocation failure. */
CURL *lm__kube_easy(lm_kube_t *k, const char *path, const char *extra_header, struct curl_slist **headers);

/* A uniformly random number in [0, n) (n > 0); not for secrets. */
uint64_t lm__kube_rand(lm_kube_t *k, uint64_t n);

/* Stops every informer of k (kube_informer.c; lm_kube_free calls it). */
void lm__kube_stop_informers(lm_kube_t *k);

/* Percent-encodes s for a query value into a malloc'd string (NULL: no memory). */
char *lm__kube_query_escape(const char *s);

/* ---- buffers and the LIST scanner (kube_scan.c) ----------------------------- */

typedef struct {
    char *buf; /* NUL-terminated when not NULL */
    size_t len, cap;
} lm__kbuf_t;

#define LM__KBUF_KEEP ((size_t)64 << 10) /* larger buffers are released when emptied */

/* Appends (LM_ERROR past max bytes or without memory). */
int lm__kbuf_add(lm__kbuf_t *b, const char *p, size_t n, size_t max);
void lm__kbuf_reset(lm__kbuf_t *b); /* empties; frees when larger than LM__KBUF_KEEP */
void lm__kbuf_free(lm__kbuf_t *b);

#define LM__KSCAN_MAX_ITEM ((size_t)16 << 20) /* one object */
#define LM__KSCAN_MAX_REST ((size_t)1 << 20)  /* a LIST response without its items */

enum { LM__KSCAN_OK = 0, LM__KSCAN_TOO_LARGE, LM__KSCAN_MALFORMED, LM__KSCAN_STOPPED };

/* One element of "items", not NUL-terminated. Not LM_OK: stop scanning. */
typedef int (*lm__kscan_item_cb)(void *ctx, const char *p, size_t n);

typedef struct {
    int depth;
    bool in_str, esc;
    bool expect_key, in_key, items_key; /* at depth 1 */
    bool in_items, in_item;
    char key[8];
    size_t key_len;
    size_t max_item;  /* the largest item seen */
    lm__kbuf_t item;  /* the element being read */
    lm__kbuf_t rest;  /* the document without the elements */
} lm__kscan_t;

void lm__kscan_reset(lm__kscan_t *s); /* for a new response (max_item too) */
void lm__kscan_free(lm__kscan_t *s);
/* Feeds the next bytes; each complete element goes to on_item. Returns
 * LM__KSCAN_OK or why it stopped (then the response is abandoned). */
int lm__kscan_feed(lm__kscan_t *s, const char *p, size_t n, lm__kscan_item_cb on_item, void *ctx);
/* After the last byte: the document without its items ({"kind":..,
 * "metadata":{..},"items":[]}) parsed, or NULL when the response was not a
 * complete JSON object. Caller deletes it. */
cJSON *lm__kscan_finish(lm__kscan_t *s);

/* ---- the informers' object store (kube_cache.c) ---------------------------- */

/* One cached object: this header, its key, then its frozen cJSON tree, in
 * one malloc'd block (free() it). */
typedef struct {
    const cJSON *obj; /* read-only: never cJSON_Delete'd, never modified */
    uint32_t gen;     /* the LIST that last saw it */
    uint32_t w;       /* the informer's watcher (namespace) it came from */
    size_t key_len;
    char key[];       /* "ns/name", or "name" when cluster-scoped */
} lm__kentry_t;

typedef struct {
    lm_map_t map;   /* key -> lm__kentry_t */
    lm_map_t names; /* interned member names (key and value: the same string) */
} lm__kcache_t;

void lm__kcache_init(lm__kcache_t *c);
void lm__kcache_free(lm__kcache_t *c); /* and every entry */
/* "ns/name" (or "name" without ns) into buf; false when it does not fit. */
bool lm__kcache_key(char *buf, size_t cap, const char *ns, const char *name, size_t *len);
/* Drops metadata.managedFields and the last-applied annotation, sets kind and
 * apiVersion (when not NULL). */
void lm__kcache_prepare(cJSON *obj, const char *kind, const char *api_version);
/* A new entry holding a frozen copy of tree (tree is left alone). NULL: no memory. */
lm__kentry_t *lm__kcache_freeze(lm__kcache_t *c, const char *key, size_t kl, const cJSON *tree);
lm__kentry_t *lm__kcache_get(const lm__kcache_t *c, const char *key, size_t kl);
/* Inserts e; returns the entry it replaced (the caller frees it) or NULL. */
lm__kentry_t *lm__kcache_put(lm__kcache_t *c, lm__kentry_t *e);
/* Takes the entry out (the caller frees it); NULL if none. */
lm__kentry_t *lm__kcache_del(lm__kcache_t *c, const char *key, size_t kl);
/* Every object, sorted by namespace then name (malloc'd array). */
size_t lm__kcache_sorted(const lm__kcache_t *c, const cJSON ***items);

#endif

/*
 * lm_kube.h - a Kubernetes API client in C: connection config (kubeconfig or
 * in-cluster), single requests, and informers (LIST + WATCH kept in a local
 * cache). Runs on one libuv loop through lm_curl; nothing here blocks except
 * lm_kube_config_load (files).
 */
#ifndef LM_KUBE_H
#define LM_KUBE_H

#include "lm_core.h"
#include "lm_curl.h"
#include <cjson/cJSON.h>

/* ---- connection config ---------------------------------------------------- */

typedef struct {
    char *server;       /* "https://host:port" (no trailing slash) */
    char *ca_pem;       /* CA bundle (PEM) or NULL: the system's */
    char *cert_pem;     /* client certificate (PEM) or NULL */
    char *key_pem;      /* its key (PEM) or NULL */
    char *token;        /* bearer token or NULL */
    char *token_file;   /* re-read when it changes (projected SA tokens rotate) or NULL */
    char *namespace;    /* the context's (or the pod's) namespace, "default" if none */
    bool insecure;      /* insecure-skip-tls-verify */
    char *source;       /* where it came from, for logs: a path or "in-cluster" */
} lm_kube_config_t;

/* The service account's files in a pod; $LIMEN_KUBE_SA_DIR replaces it (tests). */
#define LM_KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/*
 * Loads the connection config. path: a kubeconfig file; NULL: $KUBECONFIG
 * (a colon-separated list: the first file that exists; files are not
 * merged), else in-cluster (lm_kube_config_in_cluster) when
 * KUBERNETES_SERVICE_HOST is set, else ~/.kube/config. context: NULL =
 * current-context. kubeconfig fields understood:
 * clusters[].cluster.{server, certificate-authority(-data),
 * insecure-skip-tls-verify}, users[].user.{client-certificate(-data),
 * client-key(-data), token, tokenFile}, contexts[].context.{cluster, user,
 * namespace}; relative file paths are relative to the kubeconfig's directory;
 * *-data (base64) wins over the file, tokenFile over token (the file is read
 * here, so a missing one is an error, and re-read by the client when it
 * changes). A context without a user means no credentials. exec and
 * auth-provider plugins and username/password are errors. The message names
 * the file and the context, cluster or user at fault.
 * Returns LM_OK or LM_ERROR with a message in err (out is then empty).
 */
int lm_kube_config_load(const char *path, const char *context, lm_kube_config_t *out, char *err, size_t errlen);
/*
 * In-cluster config: server https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT
 * (port 443 when unset, brackets for IPv6), token_file DIR/token (read now,
 * re-read by the client when it rotates), CA DIR/ca.crt, namespace from
 * DIR/namespace ("default" if missing); DIR is LM_KUBE_SA_DIR or
 * $LIMEN_KUBE_SA_DIR. source is "in-cluster".
 */
int lm_kube_config_in_cluster(lm_kube_config_t *out, char *err, size_t errlen);
/* Frees the strings (the key and the token are wiped first) and zeroes cfg. */
void lm_kube_config_free(lm_kube_config_t *cfg);

/* ---- client --------------------------------------------------------------- */

typedef struct lm_kube lm_kube_t;

/*
 * Takes ownership of cfg's contents (cfg itself may be on the stack; it is
 * zeroed). Every request carries the CA / client certificate from memory,
 * "Authorization: Bearer" when there is a token (re-read from token_file
 * whenever the file's inode, size or mtime changed: a stat before each
 * request), and asks for HTTP/2 (ALPN; one connection multiplexes every
 * watch), HTTP/1.1 when the server does not offer it. NULL on allocation
 * failure (cfg's contents are freed then).
 */
lm_kube_t *lm_kube_new(uv_loop_t *loop, lm_curl_t *curl, lm_kube_config_t *cfg);
/* Stops every informer and request (no more callbacks) and frees. May be
 * called from a callback of k. Call it before lm_curl_free(curl) (and not
 * both from the same callback: a transfer whose callback is on the stack is
 * finished by curl after it returns), then run the loop: informers release
 * their timers in close callbacks. */
void lm_kube_free(lm_kube_t *k);
const lm_kube_config_t *lm_kube_config(const lm_kube_t *k);

/*
 * status: the HTTP status, or 0 when no response came (err says why).
 * body: the response parsed as JSON (NULL if it was not JSON); borrowed,
 * valid during the callback. For errors the API server's Status object
 * carries "message" and "reason" ("NotFound", "AlreadyExists", "Conflict").
 */
typedef void (*lm_kube_cb)(int status, const cJSON *body, const char *err, void *data);

/*
 * One request: method "GET", "POST", "PUT", "PATCH", "DELETE"; path with
 * query, e.g. "/apis/coordination.k8s.io/v1/namespaces/ns/leases/name".
 * body: NULL or JSON (serialized here). content_type: NULL =
 * "application/json", or "application/merge-patch+json" for PATCH (pass
 * strategic-merge / json-patch types explicitly). Time limit: 30 s. err is
 * NULL on a 2xx/3xx, else the transport error or "HTTP 404: <message>".
 * Returns LM_OK (one callback follows) or LM_ERROR (none). The callback may
 * free the client.
 */
int lm_kube_request(lm_kube_t *k, const char *method, const char *path, const cJSON *body,
                    const char *content_type, lm_kube_cb cb, void *data);

/* ---- informers -------------------------------------------------------------- */

typedef struct lm_informer lm_informer_t;

typedef struct {
    const char *api_path;       /* "/api/v1", "/apis/networking.k8s.io/v1", "/apis/limen.dev/v1" */
    const char *resource;       /* plural: "ingresses", "services", "endpointslices", ... */
    const char *kind;           /* "Ingress": set on items (a LIST's items lack kind/apiVersion) */
    const char *api_version;    /* "networking.k8s.io/v1": set on items too */
    bool cluster_scoped;        /* IngressClass, ClusterPlugin */
    const char *label_selector; /* or NULL */
    const char *field_selector; /* or NULL */
    /* namespaces to watch (one LIST+WATCH each); NULL or empty: all namespaces */
    const char *const *namespaces;
    size_t num_namespaces;
    /* WATCH timeoutSeconds; 0: randomized in 240-360 s (tests use a few
     * seconds to see bookmarks and watch renewals) */
    unsigned watch_timeout;
    /* NULL, or called on every object before it is cached (after the
     * stripping below) with the informer's data: delete what the consumer
     * never reads to save memory, as client-go's SetTransform (e.g. an
     * EndpointSlice's endpoints[].targetRef and nodeName). Events carry the
     * transformed objects. */
    void (*transform)(cJSON *obj, void *data);
} lm_informer_spec_t;

typedef enum { LM_INF_ADDED = 1, LM_INF_MODIFIED, LM_INF_DELETED } lm_inf_event_t;

/*
 * Called after the cache changed: old is the previous object (NULL when
 * added), obj the new one (for DELETED: the last known state). Both are
 * borrowed for the callback only. A relist (after 410 Gone or a reconnect
 * without a usable resourceVersion) reports the difference as events
 * (MODIFIED only when the resourceVersion changed).
 *
 * Cached objects (these, lm_informer_get, lm_informer_list) are read-only:
 * each is packed into one block with shared member names to keep 16,000 of
 * them small, so never cJSON_Delete, detach or modify them; read them with
 * the cJSON API and cJSON_Duplicate what must outlive them.
 */
typedef void (*lm_informer_cb)(lm_informer_t *inf, lm_inf_event_t ev, const cJSON *old, const cJSON *obj,
                               void *data);

/*
 * Starts LIST (paginated, limit 500, "continue" tokens; a 410 on a continue
 * token restarts the LIST) then WATCH from the list's resourceVersion with
 * allowWatchBookmarks=true. Responses are parsed as they stream: a page is
 * cut into its items and each item parsed alone, a watch one line at a time,
 * so memory beyond the cache is bounded by the largest single object (see
 * stats.max_buffer), never by a page. BOOKMARK advances the resourceVersion;
 * 410 Gone (as a status or as an ERROR event) relists, and the LIST is
 * diffed against the cache (ADDED / MODIFIED / DELETED). A watch the server
 * ends (timeoutSeconds) is renewed at once; a dropped connection or an error
 * re-watches from the last resourceVersion after a jittered backoff (0.5 s
 * doubling to 30 s, each delay 50-100% of the step, reset after a healthy
 * minute). Cached objects lose metadata.managedFields and the
 * kubectl.kubernetes.io/last-applied-configuration annotation (an annotations
 * map left empty goes too), then spec->transform runs. Copies spec.
 * on_synced (may be NULL) fires once, when every namespace's first LIST is in.
 * Failures (403/404 on LIST: no RBAC, CRD missing; transport errors; ERROR
 * events) are retried with backoff, counted in stats and logged once per
 * cause with the resource and namespace ("works again" when they stop).
 * Returns NULL only on allocation failure.
 */
lm_informer_t *lm_informer_start(lm_kube_t *k, const lm_informer_spec_t *spec, lm_informer_cb cb,
                                 void (*on_synced)(lm_informer_t *inf, void *data), void *data);
/* No callbacks after this; frees it (its timers close on the next loop
 * turn). May be called from any callback, this informer's included. */
void lm_informer_stop(lm_informer_t *inf);

bool lm_informer_synced(const lm_informer_t *inf);
size_t lm_informer_count(const lm_informer_t *inf);
/* ns: NULL or "" for cluster-scoped objects. Borrowed until the next event. */
const cJSON *lm_informer_get(const lm_informer_t *inf, const char *ns, const char *name);
/* Every cached object into *items (malloc'd array the caller frees; the
 * objects are borrowed until the next event), sorted by namespace/name.
 * Returns the count. */
size_t lm_informer_list(const lm_informer_t *inf, const cJSON ***items);

typedef struct {
    uint64_t lists;      /* complete LISTs (every page in) */
    uint64_t watches;    /* WATCH requests started */
    uint64_t events;     /* callbacks made */
    uint64_t relists;    /* LISTs from the first page after a namespace's first complete one (410 Gone, ...) */
    uint64_t errors;     /* failed LIST/WATCH requests (status, transport, ERROR event) */
    uint64_t pages;      /* LIST responses (one per page) */
    uint64_t bookmarks;  /* BOOKMARK events */
    size_t max_buffer;   /* the largest single object or line held while parsing (bytes) */
    char last_error[256];
} lm_informer_stats_t;
void lm_informer_stats(const lm_informer_t *inf, lm_informer_stats_t *out);
const lm_informer_spec_t *lm_informer_spec(const lm_informer_t *inf);

/*
 * Test hooks (controller/kube_probe.c drives them from e2e tests):
 *   "pause"  ends the watches and does not reconnect until "resume";
 *   "resume" re-watches from the resourceVersion held;
 *   "stale"  sets every namespace's resourceVersion to "1" and re-watches
 *            (unless paused): an API server whose watch cache starts after
 *            revision 1 (any restarted one) answers 410 Gone -> relist.
 * Returns LM_OK, or LM_ERROR for an unknown verb.
 */
int lm_informer_debug(lm_informer_t *inf, const char *verb);

#endif

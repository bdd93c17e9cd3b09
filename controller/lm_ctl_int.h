/*
 * lm_ctl_int.h - the controller's state, shared by controller.c (wiring and
 * sync) and ctl_endpoints.c (its HTTP endpoints and metrics). Internal.
 */
#ifndef LM_CTL_INT_H
#define LM_CTL_INT_H

#include "lm_ctl.h"
#include "lm_ctl_http.h"
#include "lm_curl.h"
#include "lm_events.h"
#include "lm_kube.h"
#include "lm_leader.h"
#include "lm_push.h"
#include "lm_status.h"
#include "lm_translate.h"

enum {
    LM_K_INGRESS_CLASS,
    LM_K_INGRESS,
    LM_K_SERVICE,
    LM_K_ENDPOINT_SLICE,
    LM_K_SECRET_TLS,
    LM_K_SECRET_CREDENTIAL,
    LM_K_SECRET_KONG_CREDENTIAL,
    LM_K_SECRET_PLUGIN_CONFIG,
    LM_K_PLUGIN,
    LM_K_CLUSTER_PLUGIN,
    LM_K_CONSUMER,
    LM_K_UPSTREAM_POLICY,
    LM_K_NUM
};

typedef struct {
    const char *api_path, *resource, *kind, *api_version;
    bool cluster;
    const char *label, *field;
} lm__kind_t;

/* sync duration histogram buckets (seconds) */
#define LM_CTL_SYNC_BUCKETS 10

typedef struct {
    uint64_t syncs, sync_failures, translation_failures, config_changes, events;
    uint64_t events_ignored; /* changes of status or bookkeeping only */
    uint64_t held_back; /* syncs not pushed: a global ClusterPlugin is broken */
    size_t broken_objects;
    double last_sync_seconds, sync_seconds_sum;
    uint64_t sync_buckets[LM_CTL_SYNC_BUCKETS]; /* cumulative counts per bucket */
} lm_ctl_metrics_t;

typedef struct lm_ctl {
    lm_ctl_opts_t o;
    uv_loop_t *loop;
    lm_curl_t *curl;
    lm_kube_t *kube;
    lm_informer_t *inf[LM_K_NUM];
    lm_informer_t *dp_inf; /* the data-plane Service's EndpointSlices */
    char dp_ns[256], dp_label[320];
    lm_push_t *push;
    lm_leader_t *leader;
    lm_events_t *events;
    lm_status_t *status;
    lm_ctl_http_t *http;
    uv_timer_t sync_timer, resync_timer, trim_timer;
    uv_signal_t sigterm, sigint;
    char identity[256];
    uint64_t started_ns, last_sync_ms;
    bool synced, dirty, translated, leading, stopping;
    char hash[33];      /* of the last document handed to push */
    char held_by[256];  /* the broken global ClusterPlugin holding pushes back, or "" */
    char *doc_json;     /* that document (cJSON_free) */
    lm_ctl_metrics_t m;
} lm_ctl_t;

const lm__kind_t *lm_ctl_kind(int k);
void lm_ctl_schedule(lm_ctl_t *c);
/* ctl_endpoints.c */
int lm_ctl_handle_http(const char *method, const char *path, const char *query, char **body, size_t *len,
                       const char **content_type, void *data);
void lm_ctl_metrics_observe_sync(lm_ctl_t *c, double seconds);

#endif

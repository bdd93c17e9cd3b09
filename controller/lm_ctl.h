/*
 * lm_ctl.h - the controller: informers -> translation -> validation -> push,
 * plus status, leadership, events and its own HTTP endpoints. One libuv loop,
 * one thread. main.c only turns flags into lm_ctl_opts_t and calls lm_ctl_run.
 *
 *   informers (lm_kube.h) --change--> debounce (<= every 100 ms)
 *     --> lm_translate (lm_translate.h, validated with the data plane's validator)
 *     --> lm_push (every data plane; re-push on restart)      [every replica]
 *     --> Events for broken objects, CRD conditions, Ingress status   [leader only]
 */
#ifndef LM_CTL_H
#define LM_CTL_H

#include "lm_core.h"

#define LM_CTL_MAX_LIST 64

typedef struct {
    const char *kubeconfig;   /* NULL: $KUBECONFIG, in-cluster, ~/.kube/config */
    const char *context;
    const char *watch_namespaces[LM_CTL_MAX_LIST]; size_t num_watch_namespaces; /* none: all */
    const char *ingress_class;   /* "limen" */
    const char *controller_name; /* "limen.dev/ingress-controller" */

    const char *dataplanes[LM_CTL_MAX_LIST]; size_t num_dataplanes; /* unix:PATH, http(s)://host:port */
    const char *dataplane_service; /* "ns/name": push to every ready endpoint of it */
    const char *dataplane_port;    /* port name or number on that service's endpoints ("admin") */
    const char *dataplane_token;   /* Authorization: Bearer for TCP data planes */
    const char *dataplane_ca, *dataplane_cert, *dataplane_key;

    const char *publish_service;   /* "ns/name" */
    const char *publish_addresses[LM_CTL_MAX_LIST]; size_t num_publish_addresses;
    bool update_status;            /* default true */

    bool election;                 /* default true */
    const char *election_namespace;/* NULL: the kubeconfig/pod namespace */
    const char *election_id;       /* Lease name, "limen-controller-leader" */
    const char *identity;          /* NULL: hostname + "_" + pid */
    unsigned lease_seconds;        /* 15 */

    const char *listen;            /* own endpoints, ":10254"; "off" = none */
    unsigned debounce_ms;          /* 100: translate at most this often */
} lm_ctl_opts_t;

void lm_ctl_opts_defaults(lm_ctl_opts_t *o);
/* Runs until SIGTERM/SIGINT; returns the process exit status. */
int lm_ctl_run(const lm_ctl_opts_t *o);

#endif

/*
 * main.c - limen-controller: flags (each also a LIMEN_* environment variable)
 * into lm_ctl_opts_t, then lm_ctl_run. The flag table below is the --help.
 */
#include "lm_ctl.h"
#include "lm_log.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

typedef enum { LM_F_STR, LM_F_LIST, LM_F_BOOL, LM_F_UINT, LM_F_LOG } lm__ftype_t;

typedef struct {
    const char *flag, *env, *arg;
    lm__ftype_t type;
    size_t off, count_off; /* offsetof in lm_ctl_opts_t (lists: the array and its count) */
    const char *help;
} lm__flag_t;

#define LM_O(f) offsetof(lm_ctl_opts_t, f)

static const lm__flag_t lm__flags[] = {
    { "--kubeconfig", "LIMEN_KUBECONFIG", "FILE", LM_F_STR, LM_O(kubeconfig), 0,
      "kubeconfig to use (default: $KUBECONFIG, else in-cluster, else ~/.kube/config)" },
    { "--context", "LIMEN_CONTEXT", "NAME", LM_F_STR, LM_O(context), 0, "kubeconfig context (default: current)" },
    { "--watch-namespace", "LIMEN_WATCH_NAMESPACE", "NS", LM_F_LIST, LM_O(watch_namespaces),
      LM_O(num_watch_namespaces), "watch only this namespace (repeatable; env: comma-separated; default: all)" },
    { "--ingress-class", "LIMEN_INGRESS_CLASS", "NAME", LM_F_STR, LM_O(ingress_class), 0,
      "IngressClass name that is ours (default limen)" },
    { "--controller-name", "LIMEN_CONTROLLER_NAME", "NAME", LM_F_STR, LM_O(controller_name), 0,
      "spec.controller of our IngressClasses (default limen.dev/ingress-controller)" },
    { "--dataplane", "LIMEN_DATAPLANE", "URL", LM_F_LIST, LM_O(dataplanes), LM_O(num_dataplanes),
      "a data plane admin API to push to: unix:/path/admin.sock (sidecar) or http(s)://host:port (repeatable)" },
    { "--dataplane-service", "LIMEN_DATAPLANE_SERVICE", "NS/NAME", LM_F_STR, LM_O(dataplane_service), 0,
      "push to every ready endpoint of this Service (discovered from its EndpointSlices)" },
    { "--dataplane-port", "LIMEN_DATAPLANE_PORT", "NAME|N", LM_F_STR, LM_O(dataplane_port), 0,
      "admin port on those endpoints, by name or number (default admin)" },
    { "--dataplane-token", "LIMEN_DATAPLANE_TOKEN", "TOKEN", LM_F_STR, LM_O(dataplane_token), 0,
      "token for TCP data planes (their --admin-token); prefer the environment variable" },
    { "--dataplane-ca", "LIMEN_DATAPLANE_CA", "FILE", LM_F_STR, LM_O(dataplane_ca), 0, "CA for https data planes" },
    { "--dataplane-cert", "LIMEN_DATAPLANE_CERT", "FILE", LM_F_STR, LM_O(dataplane_cert), 0,
      "client certificate for https data planes (mTLS)" },
    { "--dataplane-key", "LIMEN_DATAPLANE_KEY", "FILE", LM_F_STR, LM_O(dataplane_key), 0, "its key" },
    { "--publish-service", "LIMEN_PUBLISH_SERVICE", "NS/NAME", LM_F_STR, LM_O(publish_service), 0,
      "Ingress status gets this Service's load-balancer addresses (else its cluster IP)" },
    { "--publish-status-address", "LIMEN_PUBLISH_STATUS_ADDRESS", "ADDR", LM_F_LIST, LM_O(publish_addresses),
      LM_O(num_publish_addresses), "Ingress status gets this IP or hostname (repeatable; wins over --publish-service)" },
    { "--update-status", "LIMEN_UPDATE_STATUS", "BOOL", LM_F_BOOL, LM_O(update_status), 0,
      "write Ingress status (default true)" },
    { "--election", "LIMEN_ELECTION", "BOOL", LM_F_BOOL, LM_O(election), 0,
      "elect a leader with a Lease; only the leader writes status and Events (default true)" },
    { "--election-namespace", "LIMEN_ELECTION_NAMESPACE", "NS", LM_F_STR, LM_O(election_namespace), 0,
      "namespace of the Lease (default: the pod's or the context's)" },
    { "--election-id", "LIMEN_ELECTION_ID", "NAME", LM_F_STR, LM_O(election_id), 0,
      "name of the Lease (default limen-controller-leader)" },
    { "--identity", "LIMEN_IDENTITY", "ID", LM_F_STR, LM_O(identity), 0, "holder identity (default HOSTNAME_PID)" },
    { "--lease-seconds", "LIMEN_LEASE_SECONDS", "N", LM_F_UINT, LM_O(lease_seconds), 0,
      "Lease duration (default 15; renewals every 2 s)" },
    { "--listen", "LIMEN_LISTEN", "ADDR", LM_F_STR, LM_O(listen), 0,
      "/healthz /readyz /metrics /debug/config (default :10254; off = none)" },
    { "--debounce", "LIMEN_DEBOUNCE", "MS", LM_F_UINT, LM_O(debounce_ms), 0,
      "translate at most every MS milliseconds (default 100)" },
    { "--log-level", "LIMEN_LOG_LEVEL", "LEVEL", LM_F_LOG, 0, 0, "debug, info (default), warn, error" },
};

static void lm__usage(FILE *f)
{
    fprintf(f, "limen-controller %s - the Limen ingress controller\n\n"
               "Watches Ingress, IngressClass, Service, EndpointSlice, Secret and limen.dev resources,\n"
               "translates them into one declarative document, validates it with the data plane's own\n"
               "validator and pushes it to the data planes.\n\nUsage: limen-controller [options]\n\n",
            LM_VERSION);
    for (size_t i = 0; i < LM_ARRAY_SIZE(lm__flags); i++) {
        const lm__flag_t *fl = &lm__flags[i];
        char left[64];
        snprintf(left, sizeof(left), "%s %s", fl->flag, fl->arg);
        fprintf(f, "  %-34s %s\n  %-34s   env %s\n", left, fl->help, "", fl->env);
    }
    fprintf(f, "  %-34s %s\n  %-34s %s\n", "--help", "this text", "--version", "print the version");
}

static int lm__set(lm_ctl_opts_t *o, const lm__flag_t *fl, const char *val, bool from_env)
{
    char *base = (char *)o;
    switch (fl->type) {
    case LM_F_STR:
        *(const char **)(base + fl->off) = val;
        return 0;
    case LM_F_LIST: {
        const char **arr = (const char **)(base + fl->off);
        size_t *n = (size_t *)(base + fl->count_off);
        if (!from_env) {
            if (*n == LM_CTL_MAX_LIST)
                goto too_many;
            arr[(*n)++] = val;
            return 0;
        }
        char *copy = strdup(val); /* lives as long as the process */
        for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (*n == LM_CTL_MAX_LIST)
                goto too_many;
            arr[(*n)++] = t;
        }
        return 0;
    too_many:
        fprintf(stderr, "limen-controller: %s: at most %d values\n", fl->flag, LM_CTL_MAX_LIST);
        return -1;
    }
    case LM_F_BOOL:
        if (!strcmp(val, "true") || !strcmp(val, "1") || !strcmp(val, "yes") || !strcmp(val, "on"))
            *(bool *)(base + fl->off) = true;
        else if (!strcmp(val, "false") || !strcmp(val, "0") || !strcmp(val, "no") || !strcmp(val, "off"))
            *(bool *)(base + fl->off) = false;
        else {
            fprintf(stderr, "limen-controller: %s: '%s' is not true or false\n", from_env ? fl->env : fl->flag, val);
            return -1;
        }
        return 0;
    case LM_F_UINT: {
        char *end;
        errno = 0;
        unsigned long v = strtoul(val, &end, 10);
        if (errno || end == val || *end || v > 86400000UL || val[0] == '-') {
            fprintf(stderr, "limen-controller: %s: '%s' is not a number\n", from_env ? fl->env : fl->flag, val);
            return -1;
        }
        *(unsigned *)(base + fl->off) = (unsigned)v;
        return 0;
    }
    case LM_F_LOG: {
        int l = lm_log_parse_level(val);
        if (l < 0) {
            fprintf(stderr, "limen-controller: unknown log level '%s'\n", val);
            return -1;
        }
        lm_log_set_level((lm_log_level_t)l);
        return 0;
    }
    }
    return -1;
}

int main(int argc, char **argv)
{
    lm_ctl_opts_t o;
    lm_ctl_opts_defaults(&o);
    for (size_t i = 0; i < LM_ARRAY_SIZE(lm__flags); i++) {
        const char *v = getenv(lm__flags[i].env);
        if (v && *v && lm__set(&o, &lm__flags[i], v, true) != 0)
            return 2;
    }
    /* a list given on the command line replaces the one from the environment */
    bool cli_list[LM_ARRAY_SIZE(lm__flags)] = { false };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            lm__usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--version")) {
            printf("limen-controller %s\n", LM_VERSION);
            return 0;
        }
        const lm__flag_t *fl = NULL;
        size_t fi = 0;
        const char *val = NULL, *eq = strchr(a, '=');
        size_t alen = eq ? (size_t)(eq - a) : strlen(a);
        for (fi = 0; fi < LM_ARRAY_SIZE(lm__flags); fi++)
            if (strlen(lm__flags[fi].flag) == alen && !strncmp(lm__flags[fi].flag, a, alen)) {
                fl = &lm__flags[fi];
                break;
            }
        if (!fl) {
            fprintf(stderr, "limen-controller: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (eq)
            val = eq + 1;
        else if (i + 1 < argc)
            val = argv[++i];
        else {
            fprintf(stderr, "limen-controller: %s needs a value\n", a);
            return 2;
        }
        if (fl->type == LM_F_LIST && !cli_list[fi]) {
            *(size_t *)((char *)&o + fl->count_off) = 0;
            cli_list[fi] = true;
        }
        if (lm__set(&o, fl, val, false) != 0)
            return 2;
    }
    if (!o.num_dataplanes && !o.dataplane_service)
        lm_log_warn("no --dataplane and no --dataplane-service: translating and validating only");
    signal(SIGPIPE, SIG_IGN);
    return lm_ctl_run(&o);
}

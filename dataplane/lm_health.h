/*
 * lm_health.h - target health that outlives snapshots: passive checks from
 * real traffic, active probes from the control loop, Kong's healthchecks
 * fields.
 *
 * State: one lm_target_state_t per (upstream name, target, address), found
 * again by key when a new snapshot is compiled, so health, least-connections
 * counts and latency averages survive config swaps. Snapshots hold references;
 * a state is freed when the last snapshot naming it goes away. Workers read
 * and update states with atomics only (no lock on the request path); the
 * registry mutex is taken at compile and when a snapshot is freed.
 *
 * Health follows lua-resty-healthcheck as Kong uses it: four counters (successes,
 * HTTP failures, TCP failures, timeouts); a success clears the failure
 * counters and a failure clears the success counter; reaching a non-zero
 * limit flips the target; a limit of 0 disables that counter. Targets start
 * healthy. Active and passive checks share the state, each with its limits.
 *
 * Added (Kong has none): when nothing probes unhealthy targets
 * (active.unhealthy.interval 0), a target ejected by passive checks comes
 * back after LM_HEALTH_COOLDOWN_MS; Kong keeps it out until an operator marks
 * it healthy.
 */
#ifndef LM_HEALTH_H
#define LM_HEALTH_H

#include "lm_core.h"
#include "lm_arena.h"
#include "lm_config.h"
#include "lm_metrics.h"

#include <stdatomic.h>
#include <uv.h>

#define LM_HEALTH_COOLDOWN_MS 10000 /* passive ejection without active probes (nginx's fail_timeout) */

enum { LM_HC_HTTP, LM_HC_TCP, LM_HC_HTTPS };

/* One side (active or passive) of Kong's upstream.healthchecks, with defaults. */
typedef struct {
    int type;                  /* LM_HC_HTTP, _TCP or _HTTPS (passive "https"/"grpc"/"grpcs" count as http) */
    const char *https_sni;     /* active https: the SNI (default: the target's host name) */
    bool https_verify;         /* active https: verify the certificate (default true) */
    uint32_t timeout_ms;       /* active: default 1 s */
    int concurrency;           /* active: default 10 */
    const char *http_path;     /* active: default "/" */
    const char *headers;       /* active: "Name: value\r\n" lines, or "" */
    uint32_t healthy_interval_ms, unhealthy_interval_ms; /* active: 0 = no probes */
    int successes, http_failures, tcp_failures, timeouts; /* 0 = that counter is off */
    uint64_t healthy_statuses[16], unhealthy_statuses[16]; /* bit sets over 0..1023 */
} lm_hc_side_t;

typedef struct {
    bool enabled;      /* Kong's "using healthchecks": an active interval or a passive unhealthy limit != 0 */
    bool active;       /* an active interval != 0 */
    bool cooldown;     /* nothing probes unhealthy targets: passive ejections expire */
    double threshold;  /* % of healthy weight below which the upstream is unhealthy; default 0 */
    lm_hc_side_t act, pas;
} lm_hc_conf_t;

/*
 * Compiles up->healthchecks (already type-checked by the config builder)
 * with Kong's defaults into c. Semantic errors go to errs with their path
 * ("upstreams[0].healthchecks.active.http_path"); returns LM_ERROR then.
 */
int lm_hc_conf_compile(lm_hc_conf_t *c, const lm_upstream_t *up, lm_arena_t *a, lm_config_errors_t *errs);

typedef struct lm_target_state {
    _Atomic int healthy;            /* 1 healthy, 0 unhealthy */
    _Atomic uint32_t counters;      /* successes | http << 8 | tcp << 16 | timeouts << 24 */
    _Atomic uint64_t revive_at_ms;  /* passive ejection with cooldown: when it comes back */
    _Atomic int64_t in_flight;      /* requests using it now, every worker (least-connections) */
    _Atomic uint64_t ewma_bits;     /* latency EWMA in ms (a double's bits) */
    _Atomic uint64_t ewma_at_ms;    /* when it was last updated; 0 = never */
    _Atomic uint64_t requests, retries, fail_tcp, fail_timeout, resp_5xx;
    bool probing;                   /* an active probe is queued or running (control thread only) */
    /* registry */
    long refs;                      /* under the registry mutex */
    struct lm_target_state *next, *prev;
    char *upstream, *target, *address; /* "up", "host:port" as configured, "ip:port" */
} lm_target_state_t;

/* Finds or creates the state for this key, with one more reference. */
lm_target_state_t *lm_health_state_get(const char *upstream, const char *target, const char *address);
void lm_health_state_unref(lm_target_state_t *s);

/* What happened on one try. */
typedef enum { LM_HR_STATUS, LM_HR_TCP, LM_HR_TIMEOUT, LM_HR_SUCCESS } lm_hr_kind_t;

/* Feeds one observation to the state with side's limits (lock-free).
 * status is used for LM_HR_STATUS (0: an unparsable response). */
void lm_health_report(lm_target_state_t *s, const lm_hc_conf_t *c, const lm_hc_side_t *side, lm_hr_kind_t kind,
                      int status, uint64_t now_ms);

/* Usable for traffic: healthy, or an expired passive ejection (which it
 * revives). Callers ignore health when checks are off. */
bool lm_health_up(lm_target_state_t *s, const lm_hc_conf_t *c, uint64_t now_ms);

/* Kong's POST /upstreams/{u}/targets/{t}/healthy|unhealthy: the state as
 * told, counters cleared; later checks may change it again. */
void lm_health_set(lm_target_state_t *s, const lm_hc_conf_t *c, bool healthy);
/* Forces a state healthy with clear counters (checks turned off). */
void lm_health_reset(lm_target_state_t *s);

/* Monotonic ms on the same clock as uv_now(). */
uint64_t lm_health_now_ms(void);

/* ---- active checks (control thread only) ---- */
struct lm_snapshot;
/* Starts, updates or stops the active checkers to match snap (on publish). */
void lm_health_checks_update(uv_loop_t *loop, struct lm_snapshot *snap);
/* Stops every checker and closes every probe (drain); idempotent. */
void lm_health_checks_stop(void);
/* At exit, after every snapshot is gone: frees what is left. */
void lm_health_shutdown(void);

/* ---- admin and metrics (admin_upstreams.c) ---- */
typedef struct lm_server lm_server_t;
/*
 * GET /upstreams/{name}/health and /upstreams/{name}/targets: LM_DECLINED when
 * path is neither; else the status and a JSON body to send (caller deletes).
 */
int lm_admin_upstreams(lm_server_t *srv, lm_str_t path, lm_str_t query, int *status, cJSON **body);
/* POST (or PUT) /upstreams/{u}/targets/{t}[/{address}]/healthy|unhealthy: LM_OK
 * with *status and *body (NULL for 204), or LM_DECLINED for other paths. */
int lm_admin_upstream_set_health(lm_server_t *srv, lm_str_t path, int *status, cJSON **body);
/* Appends per-target Prometheus series for the current snapshot. */
void lm_health_metrics_render(lm_server_t *srv, lm_buf_t *out);
/* Only the target health gauge, as `metric` with `extra` appended to each
 * series' labels (the prometheus plugin's kong_upstream_target_health with
 * ",subsystem=\"http\""). */
void lm_health_target_health_render(lm_server_t *srv, lm_buf_t *out, const char *metric, const char *extra);

#endif

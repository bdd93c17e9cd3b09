/* lm_plugins.h - the built-in plugins' ops tables (one .c file each). */
#ifndef LM_PLUGINS_H
#define LM_PLUGINS_H

#include "lm_plugin.h"
#include "lm_metrics.h"

extern const lm_plugin_ops_t lm_plugin_correlation_id;       /* 100001 */
extern const lm_plugin_ops_t lm_plugin_bot_detection;        /* 2500 */
extern const lm_plugin_ops_t lm_plugin_cors;                 /* 2000 */
extern const lm_plugin_ops_t lm_plugin_jwt;                  /* 1450 */
extern const lm_plugin_ops_t lm_plugin_key_auth;             /* 1250 */
extern const lm_plugin_ops_t lm_plugin_basic_auth;           /* 1100 */
extern const lm_plugin_ops_t lm_plugin_hmac_auth;            /* 1030 */
extern const lm_plugin_ops_t lm_plugin_ip_restriction;       /* 990 */
extern const lm_plugin_ops_t lm_plugin_request_size_limiting; /* 951 */
extern const lm_plugin_ops_t lm_plugin_acl;                  /* 950 */
extern const lm_plugin_ops_t lm_plugin_rate_limiting;        /* 910 */
extern const lm_plugin_ops_t lm_plugin_response_ratelimiting; /* 900 */
extern const lm_plugin_ops_t lm_plugin_request_transformer;  /* 801 */
extern const lm_plugin_ops_t lm_plugin_response_transformer; /* 800 */
extern const lm_plugin_ops_t lm_plugin_redirect;             /* 779 */
extern const lm_plugin_ops_t lm_plugin_opentelemetry;        /* 14 */
extern const lm_plugin_ops_t lm_plugin_prometheus;           /* 13 */
extern const lm_plugin_ops_t lm_plugin_http_log;             /* 12 */
extern const lm_plugin_ops_t lm_plugin_file_log;             /* 9 */
extern const lm_plugin_ops_t lm_plugin_udp_log;              /* 8 */
extern const lm_plugin_ops_t lm_plugin_tcp_log;              /* 7 */
extern const lm_plugin_ops_t lm_plugin_syslog;               /* 4 */
extern const lm_plugin_ops_t lm_plugin_request_termination;  /* 2 */

/* /metrics (admin.c): the prometheus plugin's kong_* series, once some
 * configuration had the plugin (else nothing, returning 0). Returns
 * LM_PROMETHEUS_ON, or LM_PROMETHEUS_UPSTREAM_HEALTH when the caller should
 * add kong_upstream_target_health (upstream_health_metrics). */
#define LM_PROMETHEUS_ON 1
#define LM_PROMETHEUS_UPSTREAM_HEALTH 3
int lm_prometheus_render(lm_buf_t *out);
/* /metrics: the logging plugins' queues (limen_log_queue_*). */
void lm_logq_metrics_render(lm_buf_t *out);

#endif

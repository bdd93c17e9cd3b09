/* lm_plugins.h - the built-in plugins' ops tables (one .c file each). */
#ifndef LM_PLUGINS_H
#define LM_PLUGINS_H

#include "lm_plugin.h"

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
extern const lm_plugin_ops_t lm_plugin_request_termination;  /* 2 */

#endif

/*
 * lm_admin_api.h - Kong's entity endpoints on the admin API (/services,
 * /routes, /consumers, /plugins, /upstreams, ...), behind the admin
 * server's transport (admin.c).
 */
#ifndef LM_ADMIN_API_H
#define LM_ADMIN_API_H

#include "lm_core.h"

#include <cjson/cJSON.h>

typedef struct lm_server lm_server_t;

typedef struct lm_admin_call {
    lm_server_t *srv;
    lm_str_t method, path, query, content_type;
    const char *body;   /* valid until reply is called */
    size_t body_len;
    bool trusted;       /* over the unix socket: secrets may be shown */
    /* Called exactly once, at once or later (after an apply); takes json
     * (NULL: empty body). The call is freed by it. */
    void (*reply)(struct lm_admin_call *call, int status, cJSON *json);
    void *conn;
} lm_admin_call_t;

/* LM_OK: handled (reply called or pending); LM_DECLINED: not an entity endpoint. */
int lm_admin_api_handle(lm_admin_call_t *call);

/* Adds Kong's "plugins" summary (available_on_server, enabled_in_cluster) to GET /'s answer. */
void lm_admin_api_root_info(lm_server_t *srv, cJSON *root);

#endif

/*
 * lm_admin.h - the admin API (unix socket by default) and the status
 * listener, both served by a small HTTP/1.1 server on the control loop.
 *
 * Admin: POST /config, GET /config, GET /status, GET / and the read-only
 * entity lists /services, /routes, /consumers, /plugins, /upstreams.
 * Status: GET /status, GET /metrics (Prometheus text).
 */
#ifndef LM_ADMIN_H
#define LM_ADMIN_H

#include "lm_core.h"

typedef struct lm_server lm_server_t;

/* Starts the listeners; LM_ERROR with a message in err. */
int lm_admin_start(lm_server_t *srv, char *err, size_t errlen);
/* Closes the listeners and every admin connection (idempotent). */
void lm_admin_stop(lm_server_t *srv);

#endif

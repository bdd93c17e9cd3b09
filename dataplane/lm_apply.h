/*
 * lm_apply.h - the one path by which configuration reaches the workers:
 * parse -> validate -> compile (on a thread-pool thread, off every event
 * loop) -> persist to the state dir -> publish atomically. Used by the
 * admin API (POST /config), SIGHUP reloads and start-up. Applies are
 * serialised: one runs at a time, later ones wait in order.
 */
#ifndef LM_APPLY_H
#define LM_APPLY_H

#include "lm_config.h"

typedef struct lm_server lm_server_t;
typedef struct lm_apply lm_apply_t;

typedef void (*lm_apply_cb)(lm_apply_t *a, void *ctx);

struct lm_apply {
    /* inputs */
    char *data;          /* owned (malloc) */
    size_t len;
    bool substitute_env; /* ${VAR} substitution (files from disk) */
    bool check_hash;     /* unchanged hash -> nothing applied, unchanged = true */
    /* results, valid in the callback */
    int result;          /* LM_OK or LM_ERROR */
    bool unchanged;
    char hash[33];
    lm_config_errors_t errs;
    double parse_ms, compile_ms;
};

/* Starts an apply on the control thread; cb runs on the control thread when
 * it has been published (or refused). The lm_apply_t is freed after cb. */
void lm_apply_start(lm_server_t *srv, char *data, size_t len, bool substitute_env, bool check_hash,
                    lm_apply_cb cb, void *ctx);

/*
 * Like lm_apply_start, but the document is built when this apply's turn
 * comes (on the control thread, from srv->current, which then holds every
 * earlier apply): an edit of the running document (the admin API's entity
 * writes) can never overwrite a POST /config queued before it. build returns
 * LM_OK with *data (malloc'd) and *len, or LM_DECLINED when there is nothing
 * to apply (it has answered its caller itself; cb is not called).
 */
typedef int (*lm_apply_build_fn)(lm_server_t *srv, void *ctx, char **data, size_t *len);
void lm_apply_start_built(lm_server_t *srv, lm_apply_build_fn build, lm_apply_cb cb, void *ctx);

/* Synchronous variant for start-up (before the workers run). */
int lm_apply_now(lm_server_t *srv, char *data, size_t len, bool substitute_env, lm_config_errors_t *errs);

/* Reads a whole file (malloc'd, NUL-terminated). NULL on error (errno set). */
char *lm_read_file(const char *path, size_t *len);

#endif

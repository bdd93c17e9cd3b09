/* registry.c - every plugin: the built-in ones, highest priority first
 * (Kong's numbers), then those loaded from --plugin-dir, merged in by
 * priority at start-up. */
#include "lm_plugins.h"
#include "lm_log.h"

#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

static const lm_plugin_ops_t *const lm__builtin[] = {
    &lm_plugin_correlation_id,
    &lm_plugin_bot_detection,
    &lm_plugin_cors,
    &lm_plugin_jwt,
    &lm_plugin_key_auth,
    &lm_plugin_basic_auth,
    &lm_plugin_hmac_auth,
    &lm_plugin_ip_restriction,
    &lm_plugin_request_size_limiting,
    &lm_plugin_acl,
    &lm_plugin_rate_limiting,
    &lm_plugin_response_ratelimiting,
    &lm_plugin_request_transformer,
    &lm_plugin_response_transformer,
    &lm_plugin_redirect,
    &lm_plugin_opentelemetry,
    &lm_plugin_prometheus,
    &lm_plugin_http_log,
    &lm_plugin_file_log,
    &lm_plugin_udp_log,
    &lm_plugin_tcp_log,
    &lm_plugin_syslog,
    &lm_plugin_request_termination,
    NULL,
};

#define LM__MAX_PLUGINS 128
static const lm_plugin_ops_t *lm__table[LM__MAX_PLUGINS + 1];
static size_t lm__count;
static void *lm__handles[LM__MAX_PLUGINS];
static size_t lm__num_handles;

static void lm__init(void)
{
    if (lm__count)
        return;
    for (size_t i = 0; lm__builtin[i]; i++)
        lm__table[lm__count++] = lm__builtin[i];
}

const lm_plugin_ops_t *const *lm_plugin_all(void)
{
    lm__init();
    return lm__table;
}

const lm_plugin_ops_t *lm_plugin_find(const char *name)
{
    lm__init();
    for (size_t i = 0; i < lm__count; i++)
        if (strcmp(lm__table[i]->name, name) == 0)
            return lm__table[i];
    return NULL;
}

int lm_plugin_register(const lm_plugin_ops_t *ops, char *err, size_t errlen)
{
    lm__init();
    if (ops->abi_version != LM_PLUGIN_ABI_VERSION) {
        snprintf(err, errlen, "ABI version %u, this data plane speaks %u: rebuild it against this lm_plugin.h",
                 ops->abi_version, LM_PLUGIN_ABI_VERSION);
        return LM_ERROR;
    }
    if (!ops->name || !ops->name[0]) {
        snprintf(err, errlen, "no name");
        return LM_ERROR;
    }
    if (lm_plugin_find(ops->name)) {
        snprintf(err, errlen, "a plugin named '%s' already exists", ops->name);
        return LM_ERROR;
    }
    if (lm__count == LM__MAX_PLUGINS) {
        snprintf(err, errlen, "too many plugins");
        return LM_ERROR;
    }
    size_t at = lm__count; /* keep the order: highest priority first, earlier first on ties */
    while (at > 0 && lm__table[at - 1]->priority < ops->priority)
        at--;
    memmove(&lm__table[at + 1], &lm__table[at], (lm__count - at) * sizeof(*lm__table));
    lm__table[at] = ops;
    lm__count++;
    lm_config_add_plugin_name(ops->name);
    return LM_OK;
}

int lm_plugin_load_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        lm_log_error("--plugin-dir %s: cannot open it", dir);
        return 0;
    }
    int loaded = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n < 4 || strcmp(de->d_name + n - 3, ".so") != 0)
            continue;
        char path[4096], err[256];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            lm_log_error("plugin %s not loaded: %s", path, dlerror());
            continue;
        }
        const lm_plugin_ops_t *ops = dlsym(h, "limen_plugin");
        if (!ops) {
            lm_log_error("plugin %s not loaded: it exports no 'limen_plugin' symbol", path);
            dlclose(h);
            continue;
        }
        if (lm_plugin_register(ops, err, sizeof(err)) != LM_OK || lm__num_handles == LM__MAX_PLUGINS) {
            lm_log_error("plugin %s not loaded: %s", path, err);
            dlclose(h);
            continue;
        }
        lm__handles[lm__num_handles++] = h;
        lm_log_info("plugin %s (priority %d) loaded from %s", ops->name, ops->priority, path);
        loaded++;
    }
    closedir(d);
    return loaded;
}

void lm_plugin_unload_all(void)
{
    while (lm__num_handles)
        dlclose(lm__handles[--lm__num_handles]);
    lm__count = 0;
}

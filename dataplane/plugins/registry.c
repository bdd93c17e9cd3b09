/* registry.c - every built-in plugin, highest priority first (Kong's numbers). */
#include "lm_plugins.h"

const lm_plugin_ops_t *const lm_plugins[] = {
    &lm_plugin_bot_detection,
    &lm_plugin_cors,
    &lm_plugin_jwt,
    &lm_plugin_key_auth,
    &lm_plugin_basic_auth,
    &lm_plugin_hmac_auth,
    &lm_plugin_ip_restriction,
    &lm_plugin_request_size_limiting,
    &lm_plugin_acl,
    &lm_plugin_request_termination,
    NULL,
};

const lm_plugin_ops_t *lm_plugin_find(const char *name)
{
    for (size_t i = 0; lm_plugins[i]; i++)
        if (strcmp(lm_plugins[i]->name, name) == 0)
            return lm_plugins[i];
    return NULL;
}

/* hmac_auth.c - the hmac-auth plugin (being written: only its name and priority so far). */
#include "lm_plugins.h"

const lm_plugin_ops_t lm_plugin_hmac_auth = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "hmac-auth",
    .priority = 1030,
};

/*
 * auth_common.h - small helpers shared by the authentication plugins
 * (key-auth, basic-auth, acl): config checks with Kong's wording and the
 * "anonymous" fallback. Header-only (static inline) so that each plugin
 * stays one .c file.
 */
#ifndef LM_AUTH_COMMON_H
#define LM_AUTH_COMMON_H

#include "lm_plugins.h"

#include <stdio.h>

/* Kong's message when a request cannot be completed (kong.response.error(500)). */
#define LM_AUTH_ERR_UNEXPECTED "An unexpected error occurred"

/*
 * Checks an optional non-empty string field of a compiled config ("anonymous",
 * "realm"): NULL (absent) is fine, "" is Kong's "length must be at least 1".
 * no_ctl: also refuses control characters (the value goes into a response
 * header). Returns false after reporting.
 */
static inline bool lm_auth_check_str(lm_plugin_cfg_ctx_t *cc, const cJSON *conf, const char *field, bool no_ctl)
{
    const char *s = lm_schema_str(conf, field);
    if (!s)
        return true;
    if (!*s) {
        lm_plugin_error(cc, field, "length must be at least 1");
        return false;
    }
    for (const unsigned char *p = (const unsigned char *)s; no_ctl && *p; p++)
        if (*p < 0x20 || *p == 0x7f) {
            lm_plugin_error(cc, field, "must not contain control characters");
            return false;
        }
    return true;
}

/*
 * Builds the extra response header line "WWW-Authenticate: <scheme> realm="<realm>"\r\n"
 * (or "WWW-Authenticate: <scheme>\r\n" when realm is NULL) in the snapshot arena.
 */
static inline const char *lm_auth_www_authenticate(lm_arena_t *a, const char *scheme, const char *realm)
{
    if (realm)
        return lm_arena_sprintf(a, "WWW-Authenticate: %s realm=\"%s\"\r\n", scheme, realm);
    return lm_arena_sprintf(a, "WWW-Authenticate: %s\r\n", scheme);
}

/* Kong's kong.client.get_credential(): a consumer authenticated by a
 * credential (not the anonymous fallback) earlier in this request. */
static inline bool lm_auth_has_credential(lm_ctx_t *ctx)
{
    return lm_ctx_consumer(ctx) != NULL && !lm_ctx_is_anonymous(ctx);
}

/*
 * The `anonymous` fallback after a failed authentication: marks the request
 * as the anonymous consumer (by id or username), or ends it with 500 as Kong
 * does when that consumer does not exist.
 */
static inline int lm_auth_set_anonymous(lm_ctx_t *ctx, const char *anonymous)
{
    const lm_consumer_t *anon = lm_ctx_find_consumer(ctx, anonymous);
    if (!anon)
        return lm_ctx_exit(ctx, 500, LM_AUTH_ERR_UNEXPECTED, NULL);
    lm_ctx_set_consumer(ctx, anon, NULL, true);
    return LM_OK;
}

#endif

/*
 * basic_auth.c - the basic-auth plugin (Kong 3.x): authenticates a request by
 * `Authorization: Basic base64(username:password)` (or Proxy-Authorization)
 * against the basicauth_credentials of the configuration.
 *
 * Passwords: the declarative file gives them in clear (Kong hashes them on
 * import). configure builds, per plugin instance, an index username ->
 * {consumer, credential id, SHA-256(salt || password)} with a random salt
 * drawn for that snapshot; the clear password is never copied. A request's
 * password is hashed the same way and compared in constant time.
 *
 * Behaviour (Kong's access.lua, facts only):
 *   - neither Authorization nor Proxy-Authorization: 401 "Unauthorized";
 *   - Proxy-Authorization is tried first; when it names no known user,
 *     Authorization is tried;
 *   - the credentials are the first "[Bb]asic" in the header value, optional
 *     whitespace, then base64 (nginx's decoder: padding optional); the decoded
 *     text is split as the regex ([^:]+):(.*) does (leading ':' skipped, the
 *     password ends at a newline);
 *   - unknown user or wrong password: 401 "Unauthorized";
 *   - every 401 carries WWW-Authenticate: Basic realm="<realm>" (default "service");
 *   - hide_credentials removes each header the plugin read;
 *   - anonymous: as key-auth (logical OR, 500 when the consumer is unknown).
 */
#define OPENSSL_API_COMPAT 10101 /* SHA256_Init & co: hashing on the stack, no allocation per request */
#include "auth_common.h"
#include "lm_jwt.h"
#include "lm_map.h"

#include <stdlib.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#define LM__SALT_LEN 16
#define LM__ERR_UNAUTHORIZED "Unauthorized"

typedef struct {
    const lm_consumer_t *consumer;
    const char *cred_id; /* may be NULL */
    unsigned char digest[SHA256_DIGEST_LENGTH];
} lm__basic_user_t;

typedef struct {
    bool hide_credentials;
    const char *anonymous;
    const char *www;
    unsigned char salt[LM__SALT_LEN];
    lm_map_t users; /* username -> lm__basic_user_t */
} lm__basic_conf_t;

static const lm_schema_field_t lm__basic_schema[] = {
    { .name = "anonymous", .type = LM_SF_STRING },
    { .name = "hide_credentials", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { .name = "realm", .type = LM_SF_STRING, .required = true, .def = "\"service\"" },
    { 0 },
};

static void lm__hash(const unsigned char *salt, const char *pw, size_t len, unsigned char out[SHA256_DIGEST_LENGTH])
{
    SHA256_CTX h;
    SHA256_Init(&h);
    SHA256_Update(&h, salt, LM__SALT_LEN);
    SHA256_Update(&h, pw, len);
    SHA256_Final(out, &h);
    OPENSSL_cleanse(&h, sizeof(h));
}

/* ---- configure ----------------------------------------------------------- */

static void lm__users_free(void *p)
{
    lm_map_free(p);
}

static int lm__basic_configure(lm_plugin_cfg_ctx_t *cc, const cJSON *conf, void **out)
{
    bool ok = lm_auth_check_str(cc, conf, "anonymous", false);
    ok = lm_auth_check_str(cc, conf, "realm", true) && ok;
    if (!ok)
        return LM_ERROR;
    lm__basic_conf_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    if (RAND_bytes(c->salt, sizeof(c->salt)) != 1) {
        lm_plugin_error(cc, NULL, "cannot draw a random salt for the password hashes");
        return LM_ERROR;
    }
    c->hide_credentials = lm_schema_bool(conf, "hide_credentials");
    c->anonymous = lm_schema_str(conf, "anonymous");
    c->www = lm_auth_www_authenticate(cc->arena, "Basic", lm_schema_str(conf, "realm"));
    lm_map_init(&c->users);
    lm_arena_on_free(cc->arena, lm__users_free, &c->users);
    const lm_config_t *cfg = cc->cfg;
    for (size_t i = 0; cfg && i < cfg->num_credentials; i++) {
        const lm_credential_t *cr = cfg->credentials[i];
        if (!cr->consumer || strcmp(cr->kind, "basicauth_credentials") != 0)
            continue;
        const char *user = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cr->fields, "username"));
        const char *pw = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cr->fields, "password"));
        if (!user || !pw)
            continue;
        lm_str_t key = lm_str(user);
        if (lm_map_get(&c->users, key))
            continue; /* usernames are unique (checked by the config build) */
        lm__basic_user_t *u = lm_arena_calloc(cc->arena, sizeof(*u));
        u->consumer = cr->consumer;
        u->cred_id = cr->id;
        lm__hash(c->salt, pw, strlen(pw), u->digest);
        lm_map_put(&c->users, lm_arena_strdup_str(cc->arena, key), u);
    }
    *out = c;
    return LM_OK;
}

/* ---- request ------------------------------------------------------------- */

static bool lm__is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

/* Username and password from one header value, or false. */
static bool lm__parse_basic(lm_ctx_t *ctx, lm_str_t v, lm_str_t *user, lm_str_t *pass)
{
    /* the first "[Bb]asic" anywhere, then \s*, then at least one byte */
    size_t i = 0;
    for (;; i++) {
        if (i + 5 > v.len)
            return false;
        if ((v.ptr[i] == 'B' || v.ptr[i] == 'b') && memcmp(v.ptr + i + 1, "asic", 4) == 0)
            break;
    }
    i += 5;
    while (i < v.len && lm__is_space(v.ptr[i]))
        i++;
    if (i >= v.len)
        return false;
    lm_str_t b64 = { v.ptr + i, v.len - i };
    /* nginx's decoding: what follows the first '=' is ignored */
    const char *eq = memchr(b64.ptr, '=', b64.len);
    if (eq)
        b64.len = (size_t)(eq - b64.ptr);
    char *dec = lm_ctx_alloc(ctx, lm_jwt_b64_max(b64.len));
    size_t n;
    if (!lm_jwt_b64_decode(b64, false, (unsigned char *)dec, &n))
        return false;
    /* ([^:]+):(.*) unanchored: skip leading ':', the user runs to the next ':' */
    size_t s = 0;
    while (s < n && dec[s] == ':')
        s++;
    const char *colon = s < n ? memchr(dec + s, ':', n - s) : NULL;
    if (!colon)
        return false;
    *user = (lm_str_t){ dec + s, (size_t)(colon - dec) - s };
    const char *p = colon + 1;
    const char *nl = memchr(p, '\n', (size_t)(dec + n - p));
    *pass = (lm_str_t){ p, (size_t)((nl ? nl : dec + n) - p) };
    return true;
}

/* Kong's retrieve_credentials: reads one header (hiding it if asked). */
static bool lm__retrieve(lm_ctx_t *ctx, const lm__basic_conf_t *c, lm_str_t header, lm_str_t *user, lm_str_t *pass)
{
    lm_str_t v;
    bool ok = lm_ctx_header(ctx, header, &v) && lm__parse_basic(ctx, v, user, pass);
    if (c->hide_credentials)
        lm_ctx_remove_header(ctx, header);
    return ok;
}

static int lm__basic_authenticate(lm_ctx_t *ctx, const lm__basic_conf_t *c)
{
    lm_str_t v;
    if (!lm_ctx_header(ctx, LM_STR("Authorization"), &v) && !lm_ctx_header(ctx, LM_STR("Proxy-Authorization"), &v))
        return LM_ERROR;
    lm_str_t user = LM_STR_NULL, pass = LM_STR_NULL;
    const lm__basic_user_t *u = NULL;
    if (lm__retrieve(ctx, c, LM_STR("Proxy-Authorization"), &user, &pass))
        u = lm_map_get(&c->users, user);
    if (!u && lm__retrieve(ctx, c, LM_STR("Authorization"), &user, &pass))
        u = lm_map_get(&c->users, user);
    if (!u)
        return LM_ERROR;
    unsigned char d[SHA256_DIGEST_LENGTH];
    lm__hash(c->salt, pass.ptr, pass.len, d);
    if (CRYPTO_memcmp(d, u->digest, sizeof(d)) != 0)
        return LM_ERROR;
    lm_ctx_set_consumer(ctx, u->consumer, u->cred_id, false);
    return LM_OK;
}

static int lm__basic_access(lm_ctx_t *ctx, const void *conf)
{
    const lm__basic_conf_t *c = conf;
    if (c->anonymous && lm_auth_has_credential(ctx))
        return LM_OK; /* logical OR: an earlier plugin already authenticated */
    if (lm__basic_authenticate(ctx, c) == LM_OK)
        return LM_OK;
    if (c->anonymous)
        return lm_auth_set_anonymous(ctx, c->anonymous);
    return lm_ctx_exit(ctx, 401, LM__ERR_UNAUTHORIZED, c->www);
}

const lm_plugin_ops_t lm_plugin_basic_auth = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "basic-auth",
    .priority = 1100,
    .schema = lm__basic_schema,
    .configure = lm__basic_configure,
    .access = lm__basic_access,
};

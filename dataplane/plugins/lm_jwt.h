/*
 * lm_jwt.h - JSON Web Token parsing and verification (JWS compact form) as
 * Kong's jwt plugin does it, as pure functions: no request, no globals.
 *
 *   lm_jwt_t t;
 *   const char *why = lm_jwt_decode(token, LM_STR("iss"), arena, &t);
 *   if (why) -> 401 "Bad token; <why>"
 *   lm_jwt_verify(&t, key) -> signature ok?
 *   lm_jwt_check_claim(&t.exp, LM_JWT_CLAIM_EXP, now) -> NULL or "token expired" ...
 *
 * Decoding never calls malloc: decoded parts and unescaped strings come from
 * the given arena (the request's). Verification uses OpenSSL 3 (EVP); keys
 * are loaded once (lm_jwt_key_load, at configure time) and shared read-only.
 *
 * Base64url is Kong's: '-' '_' and '+' '/' are all accepted, padding is
 * optional; a length of 4n+1 and any byte outside the alphabet are errors,
 * and so is anything but '=' after the first '='.
 */
#ifndef LM_JWT_H
#define LM_JWT_H

#include "lm_core.h"
#include "lm_arena.h"

#include <openssl/evp.h>

typedef enum {
    LM_JWT_ALG_UNKNOWN = -1,
    LM_JWT_HS256 = 0,
    LM_JWT_HS384,
    LM_JWT_HS512,
    LM_JWT_RS256,
    LM_JWT_RS384,
    LM_JWT_RS512,
    LM_JWT_ES256,
    LM_JWT_ES384,
    LM_JWT_ES512,
    LM_JWT_PS256,
    LM_JWT_PS384,
    LM_JWT_PS512,
    LM_JWT_EDDSA,
    LM_JWT_NUM_ALGS
} lm_jwt_alg_t;

/* "HS256" ... "EdDSA" (case-sensitive, as Kong) or LM_JWT_ALG_UNKNOWN. */
lm_jwt_alg_t lm_jwt_alg_from_name(lm_str_t name);
const char *lm_jwt_alg_name(lm_jwt_alg_t alg);
/* HS*: a shared secret; every other algorithm: a public key. */
static inline bool lm_jwt_alg_is_hmac(lm_jwt_alg_t alg)
{
    return alg >= LM_JWT_HS256 && alg <= LM_JWT_HS512;
}

/* One top-level member of the header or the claims, as JSON gives it. */
typedef enum {
    LM_JV_MISSING = 0,
    LM_JV_NULL,
    LM_JV_FALSE,
    LM_JV_TRUE,
    LM_JV_NUMBER,
    LM_JV_STRING,
    LM_JV_OBJECT,
    LM_JV_ARRAY,
} lm_jv_type_t;

typedef struct {
    lm_jv_type_t type;
    lm_str_t str; /* LM_JV_STRING: unescaped, NUL-terminated (arena) */
    double num;   /* LM_JV_NUMBER */
} lm_jwt_value_t;

typedef struct {
    lm_str_t signing_input;   /* "<header>.<claims>" as sent (points into the token) */
    lm_str_t signature;       /* decoded bytes (arena) */
    lm_jwt_alg_t alg;         /* header "alg" */
    lm_jwt_value_t header_key; /* header[key_claim_name] */
    lm_jwt_value_t claims_key; /* claims[key_claim_name] */
    lm_jwt_value_t exp, nbf;   /* claims.exp, claims.nbf */
    bool claims_is_object;
} lm_jwt_t;

/*
 * Splits and decodes a token (Kong's checks, in Kong's order). NULL when
 * well formed, else the reason Kong gives after "Bad token; ": "invalid JSON"
 * (fewer than three parts, bad base64 or bad JSON in header or claims),
 * "invalid alg" (no supported string "alg" in an object header), "invalid
 * claims" (claims false or null), "invalid signature" (bad base64 in the
 * third part). Duplicate members: the last one counts (as Lua cjson).
 */
const char *lm_jwt_decode(lm_str_t token, lm_str_t key_claim_name, lm_arena_t *a, lm_jwt_t *out);

/* The credential's key claim value: claims[k], else header[k] when the
 * claims member is missing or false (Lua's `a or b`). */
const lm_jwt_value_t *lm_jwt_key_claim(const lm_jwt_t *t);

/* A verification key: a secret (HS*) or a public key (everything else). */
typedef struct {
    lm_jwt_alg_t alg;
    const unsigned char *secret; /* HS* */
    size_t secret_len;
    EVP_PKEY *pkey;              /* others */
} lm_jwt_key_t;

/* Loads a PEM or DER key, public or private (only its public half is used),
 * as Kong's resty.openssl pkey.new does. NULL when it is none of those. */
EVP_PKEY *lm_jwt_key_load(const void *data, size_t len);

/* Checks the signature of t with key (t->alg must equal key->alg). ES*
 * signatures are JOSE r||s of the curve's exact size. Constant-time for HS*. */
bool lm_jwt_verify(const lm_jwt_t *t, const lm_jwt_key_t *key);

/* Registered claims, as Kong: NULL when valid, else "must be a number",
 * "token expired" (exp <= now), "token not valid yet" (nbf > now). */
typedef enum { LM_JWT_CLAIM_EXP, LM_JWT_CLAIM_NBF } lm_jwt_claim_t;
const char *lm_jwt_check_claim(const lm_jwt_value_t *v, lm_jwt_claim_t which, double now);
/* maximum_expiration > 0: false when exp is missing or exp - now > max. */
bool lm_jwt_check_max_exp(const lm_jwt_t *t, double max, double now);

/*
 * Base64 decoding, shared by jwt, hmac-auth and basic-auth: url = true accepts
 * both alphabets (Kong's JWT decoding),
 * false only the standard one (ngx.decode_base64). out must hold
 * lm_jwt_b64_max(in.len) bytes. false on a malformed input.
 */
static inline size_t lm_jwt_b64_max(size_t len)
{
    return len / 4 * 3 + 3;
}
bool lm_jwt_b64_decode(lm_str_t in, bool url, unsigned char *out, size_t *out_len);

/* Standard base64 with padding; out must hold 4 * ((len + 2) / 3) + 1 bytes
 * (NUL-terminated). Returns the length. */
size_t lm_jwt_b64_encode(const unsigned char *in, size_t len, char *out);

#endif /* LM_JWT_H */

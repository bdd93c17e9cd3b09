/*
 * fuzz_jwt.c - libFuzzer target for the JWT decoder and verifier (lm_jwt.h).
 *
 * data[0] picks the key claim name ("iss", "kid", "sub", or a name with an
 * escape-worthy byte); the rest is the token, copied to a buffer of its exact
 * size so ASan sees any over-read. Each decoded token is verified against a
 * key of its own algorithm (HMAC secret, RSA, P-256, Ed25519) to drive the
 * signature paths, including the JOSE-to-DER conversion. Checked invariants:
 * the signing input is the token's prefix before the second dot, strings are
 * NUL-terminated inside their length, and base64 decoding of the parts agrees
 * with a re-encode round trip.
 */
#include "lm_jwt.h"

#include <stdio.h>
#include <stdlib.h>

#include <openssl/evp.h>

#define FUZZ_ASSERT(x)                                                            \
    do {                                                                          \
        if (!(x)) {                                                               \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #x, __FILE__, __LINE__); \
            abort();                                                              \
        }                                                                         \
    } while (0)

static EVP_PKEY *rsa_key, *ec_key, *ed_key;
static lm_arena_t *arena;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    rsa_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    ec_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ed_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    arena = lm_arena_create(0);
    return 0;
}

static void check_value(const lm_jwt_value_t *v)
{
    if (v->type == LM_JV_STRING)
        FUZZ_ASSERT(v->str.ptr && v->str.ptr[v->str.len] == '\0');
}

static void check_b64_roundtrip(const uint8_t *data, size_t size)
{
    unsigned char *dec = malloc(lm_jwt_b64_max(size) + 1);
    size_t n;
    for (int url = 0; url < 2; url++) {
        if (!lm_jwt_b64_decode((lm_str_t){ (const char *)data, size }, url, dec, &n))
            continue;
        FUZZ_ASSERT(n <= lm_jwt_b64_max(size));
        char *enc = malloc(4 * ((n + 2) / 3) + 1);
        size_t el = lm_jwt_b64_encode(dec, n, enc);
        unsigned char *dec2 = malloc(lm_jwt_b64_max(el) + 1);
        size_t n2;
        FUZZ_ASSERT(lm_jwt_b64_decode((lm_str_t){ enc, el }, false, dec2, &n2));
        FUZZ_ASSERT(n2 == n && memcmp(dec, dec2, n) == 0);
        free(dec2);
        free(enc);
    }
    free(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const char *const names[] = { "iss", "kid", "sub", "k\xc3\xa9y" };
    lm_str_t kcn = lm_str(names[data[0] & 3]);
    size_t len = size - 1;
    char *tok = malloc(len ? len : 1);
    memcpy(tok, data + 1, len);

    check_b64_roundtrip(data + 1, len);

    lm_jwt_t t;
    const char *why = lm_jwt_decode((lm_str_t){ tok, len }, kcn, arena, &t);
    if (!why) {
        FUZZ_ASSERT(t.alg >= 0 && t.alg < LM_JWT_NUM_ALGS);
        FUZZ_ASSERT(t.signing_input.ptr == tok && t.signing_input.len < len);
        FUZZ_ASSERT(tok[t.signing_input.len] == '.');
        FUZZ_ASSERT(memchr(tok, '.', t.signing_input.len) != NULL);
        check_value(&t.header_key);
        check_value(&t.claims_key);
        check_value(lm_jwt_key_claim(&t));
        FUZZ_ASSERT(lm_jwt_check_claim(&t.exp, LM_JWT_CLAIM_EXP, 1e9) == NULL || t.exp.type != LM_JV_NUMBER ||
                    t.exp.num <= 1e9 || t.exp.num != t.exp.num);
        (void)lm_jwt_check_claim(&t.nbf, LM_JWT_CLAIM_NBF, 1e9);
        (void)lm_jwt_check_max_exp(&t, 300, 1e9);

        lm_jwt_key_t key = { .alg = t.alg };
        if (lm_jwt_alg_is_hmac(t.alg)) {
            key.secret = (const unsigned char *)"secret";
            key.secret_len = 6;
        } else if (t.alg >= LM_JWT_ES256 && t.alg <= LM_JWT_ES512) {
            key.pkey = ec_key;
        } else if (t.alg == LM_JWT_EDDSA) {
            key.pkey = ed_key;
        } else {
            key.pkey = rsa_key;
        }
        (void)lm_jwt_verify(&t, &key);
        key.alg = (lm_jwt_alg_t)((t.alg + 1) % LM_JWT_NUM_ALGS); /* a mismatch never verifies */
        FUZZ_ASSERT(!lm_jwt_verify(&t, &key));
    } else {
        FUZZ_ASSERT(strcmp(why, "invalid JSON") == 0 || strcmp(why, "invalid alg") == 0 ||
                    strcmp(why, "invalid claims") == 0 || strcmp(why, "invalid signature") == 0);
    }
    lm_arena_reset(arena);
    free(tok);
    return 0;
}

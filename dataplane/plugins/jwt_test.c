/*
 * jwt_test.c - unit tests of the JWT decoder and verifier (lm_jwt.h).
 * Tokens signed by the openssl command-line tool are in the black-box tests
 * (dataplane/t/test_plugin_jwt.py); here: base64 and JSON edge cases, claim
 * checks, and signatures made with EVP in process (ES* r||s conversion with
 * high-bit and short integers, PS*, key loading in every format).
 */
#include "lm_jwt.h"
#include "lm_test.h"

#include <openssl/core_names.h>
#include <openssl/encoder.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>

#include <stdlib.h>

static lm_arena_t *A;

static lm_str_t b64url(const char *s, size_t n)
{
    char *o = lm_arena_alloc(A, 4 * ((n + 2) / 3) + 1);
    size_t len = lm_jwt_b64_encode((const unsigned char *)s, n, o);
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (o[i] == '=')
            break;
        o[k++] = o[i] == '+' ? '-' : o[i] == '/' ? '_' : o[i];
    }
    o[k] = '\0';
    return (lm_str_t){ o, k };
}

/* header.claims.signature from JSON texts and raw signature bytes */
static lm_str_t make(const char *h, const char *c, const unsigned char *sig, size_t sig_len)
{
    lm_str_t hh = b64url(h, strlen(h)), cc = b64url(c, strlen(c)), ss = b64url((const char *)sig, sig_len);
    return lm_str(lm_arena_sprintf(A, "%s.%s.%s", hh.ptr, cc.ptr, ss.ptr));
}

static const char *decode(lm_str_t tok, lm_jwt_t *t)
{
    return lm_jwt_decode(tok, LM_STR("iss"), A, t);
}

LM_TEST(test_b64)
{
    unsigned char out[64];
    size_t n;
    LM_CHECK(lm_jwt_b64_decode(LM_STR("aGVsbG8"), true, out, &n) && n == 5 && memcmp(out, "hello", 5) == 0);
    LM_CHECK(lm_jwt_b64_decode(LM_STR("aGVsbG8="), true, out, &n) && n == 5);
    LM_CHECK(lm_jwt_b64_decode(LM_STR("aGVsbG8=="), true, out, &n) && n == 5);
    LM_CHECK(lm_jwt_b64_decode(LM_STR(""), true, out, &n) && n == 0);
    LM_CHECK(lm_jwt_b64_decode(LM_STR("-_-_"), true, out, &n) && n == 3 && out[0] == 0xfb && out[1] == 0xff && out[2] == 0xbf);
    LM_CHECK(lm_jwt_b64_decode(LM_STR("+/+/"), true, out, &n) && n == 3 && out[0] == 0xfb);
    LM_CHECK(!lm_jwt_b64_decode(LM_STR("-_-_"), false, out, &n)); /* standard alphabet only */
    LM_CHECK(!lm_jwt_b64_decode(LM_STR("aGVsb"), true, out, &n));  /* 4n+1 */
    LM_CHECK(!lm_jwt_b64_decode(LM_STR("aG.s"), true, out, &n));
    LM_CHECK(!lm_jwt_b64_decode(LM_STR("aG Vs"), true, out, &n));
    LM_CHECK(!lm_jwt_b64_decode(LM_STR("aG=x"), true, out, &n)); /* nothing but '=' after '=' */
    char enc[16];
    LM_CHECK_EQ_INT(lm_jwt_b64_encode((const unsigned char *)"hi", 2, enc), 4);
    LM_CHECK_STR(enc, "aGk=");
}

LM_TEST(test_decode_shapes)
{
    lm_jwt_t t;
    static const unsigned char sig[] = "sig";
    LM_CHECK(decode(make("{\"alg\":\"HS256\"}", "{\"iss\":\"k\"}", sig, 3), &t) == NULL);
    LM_CHECK_EQ_INT(t.alg, LM_JWT_HS256);
    LM_CHECK_SLICE(t.claims_key.str, "k");
    LM_CHECK_EQ_INT(t.signature.len, 3);
    LM_CHECK_STR(decode(LM_STR("abc"), &t), "invalid JSON");
    LM_CHECK_STR(decode(LM_STR("eyJhbGciOiJIUzI1NiJ9.e30"), &t), "invalid JSON");
    LM_CHECK(decode(LM_STR("eyJhbGciOiJIUzI1NiJ9.e30."), &t) == NULL); /* empty signature */
    LM_CHECK_STR(decode(LM_STR("eyJhbGciOiJIUzI1NiJ9.e30.a.b"), &t), "invalid signature");
    LM_CHECK_STR(decode(make("{\"alg\":\"none\"}", "{}", sig, 3), &t), "invalid alg");
    LM_CHECK_STR(decode(make("{\"alg\":\"hs256\"}", "{}", sig, 3), &t), "invalid alg");
    LM_CHECK_STR(decode(make("{\"alg\":256}", "{}", sig, 3), &t), "invalid alg");
    LM_CHECK_STR(decode(make("[\"alg\"]", "{}", sig, 3), &t), "invalid alg");
    LM_CHECK_STR(decode(make("{\"alg\":\"RS256\"}", "false", sig, 3), &t), "invalid claims");
    LM_CHECK_STR(decode(make("{\"alg\":\"RS256\"}", "null", sig, 3), &t), "invalid claims");
    LM_CHECK(decode(make("{\"alg\":\"RS256\"}", "[1]", sig, 3), &t) == NULL);
    LM_CHECK(!t.claims_is_object);
    LM_CHECK_EQ_INT(lm_jwt_key_claim(&t)->type, LM_JV_MISSING);
}

LM_TEST(test_decode_json)
{
    lm_jwt_t t;
    static const unsigned char sig[] = "s";
    /* escapes in keys and values, surrogate pairs, whitespace */
    LM_CHECK(decode(make(" { \"al\\u0067\" : \"PS512\" } ", "{\"i\\u0073s\":\"a\\u00e9\\ud83d\\ude00\\n\\\"\"}", sig, 1),
                    &t) == NULL);
    LM_CHECK_EQ_INT(t.alg, LM_JWT_PS512);
    LM_CHECK_SLICE(t.claims_key.str, "a\xc3\xa9\xf0\x9f\x98\x80\n\"");
    /* the last duplicate wins, as in Lua cjson */
    LM_CHECK(decode(make("{\"alg\":\"none\",\"alg\":\"ES256\"}", "{\"iss\":1,\"iss\":\"two\"}", sig, 1), &t) == NULL);
    LM_CHECK_EQ_INT(t.alg, LM_JWT_ES256);
    LM_CHECK_SLICE(t.claims_key.str, "two");
    /* numbers */
    LM_CHECK(decode(make("{\"alg\":\"HS256\"}", "{\"exp\":1.5e3,\"nbf\":-0.25}", sig, 1), &t) == NULL);
    LM_CHECK(t.exp.type == LM_JV_NUMBER && t.exp.num == 1500);
    LM_CHECK(t.nbf.type == LM_JV_NUMBER && t.nbf.num == -0.25);
    /* the key claim from the header when the claims have none (or false) */
    LM_CHECK(decode(make("{\"alg\":\"HS256\",\"iss\":\"h\"}", "{\"iss\":false}", sig, 1), &t) == NULL);
    LM_CHECK_SLICE(lm_jwt_key_claim(&t)->str, "h");
    LM_CHECK(decode(make("{\"alg\":\"HS256\",\"iss\":\"h\"}", "{\"iss\":null}", sig, 1), &t) == NULL);
    LM_CHECK_EQ_INT(lm_jwt_key_claim(&t)->type, LM_JV_NULL);
    /* invalid JSON */
    static const char *const bad[] = {
        "{\"alg\":\"HS256\",}", "{\"alg\":\"HS256\"} x", "{\"alg\":01}", "{\"alg\":1.}", "{\"alg\":-}",
        "{\"alg\":\"\\x\"}", "{\"alg\":\"\\ud800\"}", "{\"alg\":\"\\udc00\"}", "{\"alg\":tru}", "{alg:1}",
        "{\"alg\":\"HS256\"", "{\"alg\" \"HS256\"}", "", "   ", "{\"a\":[1,]}", "{\"a\":\"unterminated}",
    };
    for (size_t i = 0; i < LM_ARRAY_SIZE(bad); i++) {
        const char *why = decode(make(bad[i], "{}", sig, 1), &t);
        if (!why || strcmp(why, "invalid JSON") != 0)
            LM_FAILF("header %s: %s", bad[i], why ? why : "(accepted)");
    }
    /* nesting: 1000 levels are fine, 1001 are not (Lua cjson's limit) */
    for (int depth = 999; depth <= 1000; depth++) {
        size_t n = 32 + 2 * (size_t)depth;
        char *h = lm_arena_alloc(A, n);
        size_t o = (size_t)sprintf(h, "{\"alg\":\"HS256\",\"x\":");
        for (int i = 0; i < depth; i++)
            h[o++] = '[';
        for (int i = 0; i < depth; i++)
            h[o++] = ']';
        h[o++] = '}';
        h[o] = '\0';
        const char *why = decode(make(h, "{}", sig, 1), &t);
        if (depth == 999)
            LM_CHECK(why == NULL);
        else
            LM_CHECK(why && strcmp(why, "invalid JSON") == 0);
    }
}

LM_TEST(test_claims)
{
    lm_jwt_value_t v = { .type = LM_JV_NUMBER, .num = 100 };
    LM_CHECK(lm_jwt_check_claim(&v, LM_JWT_CLAIM_EXP, 99) == NULL);
    LM_CHECK_STR(lm_jwt_check_claim(&v, LM_JWT_CLAIM_EXP, 100), "token expired");
    LM_CHECK(lm_jwt_check_claim(&v, LM_JWT_CLAIM_NBF, 100) == NULL);
    LM_CHECK_STR(lm_jwt_check_claim(&v, LM_JWT_CLAIM_NBF, 99), "token not valid yet");
    lm_jwt_value_t s = { .type = LM_JV_STRING, .str = LM_STR("100") };
    LM_CHECK_STR(lm_jwt_check_claim(&s, LM_JWT_CLAIM_EXP, 0), "must be a number");
    lm_jwt_value_t m = { 0 };
    LM_CHECK_STR(lm_jwt_check_claim(&m, LM_JWT_CLAIM_NBF, 0), "must be a number");
    lm_jwt_t t = { .exp = v };
    LM_CHECK(lm_jwt_check_max_exp(&t, 300, 0) == true && lm_jwt_check_max_exp(&t, 50, 0) == false);
    LM_CHECK(lm_jwt_check_max_exp(&t, 0, 0));
    t.exp = m;
    LM_CHECK(!lm_jwt_check_max_exp(&t, 300, 0));
}

LM_TEST(test_hs)
{
    const char *h = "{\"alg\":\"HS384\"}", *c = "{\"iss\":\"k\"}";
    lm_str_t hh = b64url(h, strlen(h)), cc = b64url(c, strlen(c));
    char *si = lm_arena_sprintf(A, "%s.%s", hh.ptr, cc.ptr);
    unsigned char mac[64];
    unsigned int ml;
    HMAC(EVP_sha384(), "sekret", 6, (const unsigned char *)si, strlen(si), mac, &ml);
    lm_jwt_t t;
    LM_CHECK(decode(make(h, c, mac, ml), &t) == NULL);
    lm_jwt_key_t key = { .alg = LM_JWT_HS384, .secret = (const unsigned char *)"sekret", .secret_len = 6 };
    LM_CHECK(lm_jwt_verify(&t, &key));
    key.secret_len = 5;
    LM_CHECK(!lm_jwt_verify(&t, &key));
    key.secret_len = 6;
    key.alg = LM_JWT_HS256;
    LM_CHECK(!lm_jwt_verify(&t, &key));
    LM_CHECK(decode(make(h, c, mac, ml - 1), &t) == NULL); /* truncated MAC */
    key.alg = LM_JWT_HS384;
    LM_CHECK(!lm_jwt_verify(&t, &key));
}

/* DER ECDSA-Sig-Value -> r||s */
static void der_to_raw(const unsigned char *der, size_t half, unsigned char *raw)
{
    size_t i = der[1] & 0x80 ? 3 : 2;
    memset(raw, 0, 2 * half);
    for (int k = 0; k < 2; k++) {
        size_t n = der[i + 1];
        const unsigned char *v = der + i + 2;
        while (n > half) {
            v++;
            n--;
        }
        memcpy(raw + k * half + (half - n), v, n);
        i += 2 + der[i + 1];
    }
}

static bool sign_evp(EVP_PKEY *pk, const EVP_MD *md, int pad, const char *msg, unsigned char *sig, size_t *sl)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *p = NULL;
    bool ok = EVP_DigestSignInit(m, &p, md, NULL, pk) == 1;
    if (ok && pad)
        ok = EVP_PKEY_CTX_set_rsa_padding(p, pad) > 0 && EVP_PKEY_CTX_set_rsa_pss_saltlen(p, RSA_PSS_SALTLEN_DIGEST) > 0;
    ok = ok && EVP_DigestSign(m, sig, sl, (const unsigned char *)msg, strlen(msg)) == 1;
    EVP_MD_CTX_free(m);
    return ok;
}

static lm_str_t signed_token(lm_jwt_alg_t alg, EVP_PKEY *pk, const EVP_MD *md, int pad, size_t es_half)
{
    char *h = lm_arena_sprintf(A, "{\"alg\":\"%s\"}", lm_jwt_alg_name(alg));
    const char *c = "{\"iss\":\"k\",\"exp\":2000000000}";
    lm_str_t hh = b64url(h, strlen(h)), cc = b64url(c, strlen(c));
    char *si = lm_arena_sprintf(A, "%s.%s", hh.ptr, cc.ptr);
    unsigned char sig[1024], raw[200];
    size_t sl = sizeof(sig);
    if (!sign_evp(pk, md, pad, si, sig, &sl))
        return LM_STR_NULL;
    if (es_half) {
        der_to_raw(sig, es_half, raw);
        return make(h, c, raw, 2 * es_half);
    }
    return make(h, c, sig, sl);
}

/* PEM of the public half (or of the private key) */
static char *to_pem(EVP_PKEY *pk, int selection, const char *structure)
{
    OSSL_ENCODER_CTX *e = OSSL_ENCODER_CTX_new_for_pkey(pk, selection, "PEM", structure, NULL);
    unsigned char *out = NULL;
    size_t len = 0;
    OSSL_ENCODER_to_data(e, &out, &len);
    OSSL_ENCODER_CTX_free(e);
    char *s = lm_arena_strndup(A, (const char *)out, len);
    OPENSSL_free(out);
    return s;
}

LM_TEST(test_pkey_algorithms)
{
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ec256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *ec384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    EVP_PKEY *ec521 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    LM_CHECK(rsa && ec256 && ec384 && ec521 && ed);
    /* the keys the plugin loads: public PEM, PKCS#1 PEM, a private key */
    EVP_PKEY *rsa_pub = lm_jwt_key_load(to_pem(rsa, EVP_PKEY_PUBLIC_KEY, "SubjectPublicKeyInfo"), 0);
    LM_CHECK(rsa_pub == NULL); /* zero length */
    char *pem = to_pem(rsa, EVP_PKEY_PUBLIC_KEY, "SubjectPublicKeyInfo");
    rsa_pub = lm_jwt_key_load(pem, strlen(pem));
    char *pkcs1 = to_pem(rsa, EVP_PKEY_PUBLIC_KEY, "type-specific");
    EVP_PKEY *rsa_pkcs1 = lm_jwt_key_load(pkcs1, strlen(pkcs1));
    char *priv = to_pem(ec256, EVP_PKEY_KEYPAIR, "PrivateKeyInfo");
    EVP_PKEY *ec_priv = lm_jwt_key_load(priv, strlen(priv));
    char *ecpem = to_pem(ec256, EVP_PKEY_PUBLIC_KEY, "SubjectPublicKeyInfo");
    EVP_PKEY *ec_pub = lm_jwt_key_load(ecpem, strlen(ecpem));
    LM_CHECK(rsa_pub && rsa_pkcs1 && ec_priv && ec_pub);
    LM_CHECK(lm_jwt_key_load("not a key", 9) == NULL);
    LM_CHECK(lm_jwt_key_load(pem, strlen(pem) / 2) == NULL);

    struct {
        lm_jwt_alg_t alg;
        EVP_PKEY *sign, *verify;
        const EVP_MD *md;
        int pad;
        size_t half;
    } cases[] = {
        { LM_JWT_RS256, rsa, rsa_pub, EVP_sha256(), 0, 0 },
        { LM_JWT_RS384, rsa, rsa_pkcs1, EVP_sha384(), 0, 0 },
        { LM_JWT_RS512, rsa, rsa_pub, EVP_sha512(), 0, 0 },
        { LM_JWT_PS256, rsa, rsa_pub, EVP_sha256(), RSA_PKCS1_PSS_PADDING, 0 },
        { LM_JWT_PS384, rsa, rsa_pub, EVP_sha384(), RSA_PKCS1_PSS_PADDING, 0 },
        { LM_JWT_PS512, rsa, rsa_pkcs1, EVP_sha512(), RSA_PKCS1_PSS_PADDING, 0 },
        { LM_JWT_ES256, ec256, ec_pub, EVP_sha256(), 0, 32 },
        { LM_JWT_ES256, ec256, ec_priv, EVP_sha256(), 0, 32 },
        { LM_JWT_ES384, ec384, ec384, EVP_sha384(), 0, 48 },
        { LM_JWT_ES512, ec521, ec521, EVP_sha512(), 0, 66 },
        { LM_JWT_EDDSA, ed, ed, NULL, 0, 0 },
    };
    for (size_t i = 0; i < LM_ARRAY_SIZE(cases); i++) {
        /* several signatures: ECDSA integers with the high bit set or shorter than the curve */
        for (int round = 0; round < (cases[i].half ? 24 : 2); round++) {
            lm_str_t tok = signed_token(cases[i].alg, cases[i].sign, cases[i].md, cases[i].pad, cases[i].half);
            lm_jwt_t t;
            LM_CHECK(tok.ptr && decode(tok, &t) == NULL);
            lm_jwt_key_t key = { .alg = cases[i].alg, .pkey = cases[i].verify };
            if (!lm_jwt_verify(&t, &key))
                LM_FAILF("%s round %d: valid signature refused", lm_jwt_alg_name(cases[i].alg), round);
            /* one flipped bit of the signature */
            ((unsigned char *)t.signature.ptr)[t.signature.len / 2] ^= 0x10;
            if (lm_jwt_verify(&t, &key))
                LM_FAILF("%s: tampered signature accepted", lm_jwt_alg_name(cases[i].alg));
            ((unsigned char *)t.signature.ptr)[t.signature.len / 2] ^= 0x10;
            /* the wrong kind of key */
            key.pkey = cases[i].half ? rsa_pub : ec_pub;
            LM_CHECK(!lm_jwt_verify(&t, &key));
            /* a signature of the wrong size */
            t.signature.len--;
            key.pkey = cases[i].verify;
            LM_CHECK(!lm_jwt_verify(&t, &key));
        }
    }
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec256);
    EVP_PKEY_free(ec384);
    EVP_PKEY_free(ec521);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(rsa_pub);
    EVP_PKEY_free(rsa_pkcs1);
    EVP_PKEY_free(ec_priv);
    EVP_PKEY_free(ec_pub);
}

LM_TEST(test_alg_names)
{
    for (int i = 0; i < LM_JWT_NUM_ALGS; i++)
        LM_CHECK_EQ_INT(lm_jwt_alg_from_name(lm_str(lm_jwt_alg_name((lm_jwt_alg_t)i))), i);
    LM_CHECK_EQ_INT(lm_jwt_alg_from_name(LM_STR("none")), LM_JWT_ALG_UNKNOWN);
    LM_CHECK_EQ_INT(lm_jwt_alg_from_name(LM_STR("eddsa")), LM_JWT_ALG_UNKNOWN);
    LM_CHECK(lm_jwt_alg_is_hmac(LM_JWT_HS512) && !lm_jwt_alg_is_hmac(LM_JWT_RS256));
}

int main(void)
{
    A = lm_arena_create(0);
    LM_RUN(test_b64);
    LM_RUN(test_decode_shapes);
    LM_RUN(test_decode_json);
    LM_RUN(test_claims);
    LM_RUN(test_hs);
    LM_RUN(test_pkey_algorithms);
    LM_RUN(test_alg_names);
    lm_arena_destroy(A);
    return lm_test_summary("jwt");
}

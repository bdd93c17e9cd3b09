/*
 * tls.c - TLS contexts (listener, certificates by SNI, upstream clients),
 * shared session-ticket keys, and TLS over memory BIOs for libuv streams.
 * See lm_tls.h.
 */
#include "lm_tls.h"
#include "lm_log.h"
#include "lm_map.h"
#include "lm_proxy.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Mozilla's "intermediate" TLS 1.2 suites, Kong's ssl_cipher_suite default */
static const char lm__intermediate[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384";
static const unsigned char lm__sid_ctx[] = "limen";

static struct {
    SSL_CTX *base;      /* every accepted connection starts here (settings, SNI callback) */
    SSL_CTX *fallback;  /* the default certificate */
    int min_version, max_version;
    char *ciphers;
    int rotate_ms;
    lm_tls_session_cb session_cb;
    int app_idx;
    int client_verify;                   /* LM__CV_* */
    X509_STORE *client_store;            /* the CAs client certificates must chain to */
    STACK_OF(X509_NAME) *client_names;   /* their names, sent in the CertificateRequest */
} lm__tls;

enum { LM__CV_OFF, LM__CV_OPTIONAL, LM__CV_ON };

/* ------------------------------------------------------------------ */
/* session-ticket keys: one current, one previous, shared by every worker */

typedef struct {
    unsigned char name[16], aes[32], hmac[32];
    bool set;
} lm__tkey_t;

static pthread_rwlock_t lm__tk_lock = PTHREAD_RWLOCK_INITIALIZER;
static lm__tkey_t lm__tk[2]; /* [0] current */

void lm_tls_rotate_tickets(void)
{
    lm__tkey_t k = { .set = true };
    if (RAND_bytes(k.name, sizeof(k.name)) != 1 || RAND_bytes(k.aes, sizeof(k.aes)) != 1 ||
        RAND_bytes(k.hmac, sizeof(k.hmac)) != 1)
        return; /* keep the current key */
    pthread_rwlock_wrlock(&lm__tk_lock);
    lm__tk[1] = lm__tk[0];
    lm__tk[0] = k;
    pthread_rwlock_unlock(&lm__tk_lock);
    OPENSSL_cleanse(&k, sizeof(k));
}

int lm_tls_ticket_rotate_ms(void) { return lm__tls.rotate_ms; }

static int lm__ticket_cb(SSL *s, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                         EVP_MAC_CTX *hctx, int enc)
{
    (void)s;
    lm__tkey_t k;
    int rc = 0;
    pthread_rwlock_rdlock(&lm__tk_lock);
    if (enc) {
        k = lm__tk[0];
        rc = k.set ? 1 : -1;
    } else {
        for (int i = 0; i < 2; i++)
            if (lm__tk[i].set && memcmp(lm__tk[i].name, name, 16) == 0) {
                k = lm__tk[i];
                rc = i == 0 ? 1 : 2; /* 2: decrypts, and a fresh ticket is issued */
                break;
            }
    }
    pthread_rwlock_unlock(&lm__tk_lock);
    if (rc <= 0)
        return rc; /* unknown key: a full handshake */
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (enc) {
        memcpy(name, k.name, 16);
        if (RAND_bytes(iv, 16) != 1 || EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1)
            rc = -1;
    } else if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1) {
        rc = -1;
    }
    if (rc > 0 && EVP_MAC_CTX_set_params(hctx, params) != 1)
        rc = -1;
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

/* ------------------------------------------------------------------ */
/* server contexts                                                     */

static int lm__alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned inlen, void *arg)
{
    (void)arg;
    lm_tls_t *t = SSL_get_ex_data(s, lm__tls.app_idx);
    for (unsigned i = 0; t && t->h2_ok && i < inlen;) { /* h2 first when the client offers it */
        unsigned n = in[i];
        if (i + 1 + n > inlen)
            break;
        if (n == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
            *out = in + i + 1;
            *outlen = 2;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    for (unsigned i = 0; i < inlen;) {
        unsigned n = in[i];
        if (i + 1 + n > inlen)
            break;
        if (n == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_NOACK; /* no common protocol: go on without ALPN (HTTP/1.1) */
}

static int lm__servername_cb(SSL *s, int *ad, void *arg);

/* --ssl-client-verify optional: any certificate (or none) passes the
 * handshake; the result goes to the upstream (X-Client-Cert-Verify). */
static int lm__verify_optional_cb(int ok, X509_STORE_CTX *x)
{
    (void)ok, (void)x;
    return 1;
}

/* Settings every server context shares (the SNI switch keeps the SSL's own
 * protocol settings, but ALPN and tickets are read from the new context). */
static SSL_CTX *lm__server_ctx_new(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, lm__tls.min_version);
    SSL_CTX_set_max_proto_version(ctx, lm__tls.max_version);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (lm__tls.ciphers)
        SSL_CTX_set_cipher_list(ctx, lm__tls.ciphers);
    SSL_CTX_set_session_id_context(ctx, lm__sid_ctx, sizeof(lm__sid_ctx) - 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF); /* tickets only: every worker can resume */
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, lm__ticket_cb);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_alpn_select_cb(ctx, lm__alpn_cb, NULL);
    SSL_CTX_set_tlsext_status_cb(ctx, lm_ocsp_status_cb);
    if (lm__tls.client_verify != LM__CV_OFF) {
        /* on every context: the verify store and CA names are read from the
         * one the SNI picked */
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (lm__tls.client_verify == LM__CV_ON ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                           lm__tls.client_verify == LM__CV_ON ? NULL : lm__verify_optional_cb);
        SSL_CTX_set1_verify_cert_store(ctx, lm__tls.client_store);
        SSL_CTX_set_client_CA_list(ctx, SSL_dup_CA_list(lm__tls.client_names));
    }
    return ctx;
}

/* Leaf then chain from one PEM text; LM_OK or LM_ERROR. */
static int lm__use_pem_pair(SSL_CTX *ctx, const char *cert, const char *key)
{
    BIO *b = BIO_new_mem_buf(cert, -1);
    X509 *leaf = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    int rc = LM_ERROR;
    if (!leaf || SSL_CTX_use_certificate(ctx, leaf) != 1)
        goto out;
    X509 *ca;
    while ((ca = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            goto out;
        }
    ERR_clear_error(); /* the end of the PEM */
    BIO_free(b);
    b = BIO_new_mem_buf(key, -1);
    EVP_PKEY *pk = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    if (pk && SSL_CTX_use_PrivateKey(ctx, pk) == 1 && SSL_CTX_check_private_key(ctx) == 1)
        rc = LM_OK;
    EVP_PKEY_free(pk);
out:
    X509_free(leaf);
    BIO_free(b);
    return rc;
}

/* A self-signed P-256 certificate for "localhost" (Kong makes one too when
 * no ssl_cert is configured). */
static int lm__self_signed(SSL_CTX *ctx)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    int rc = LM_ERROR;
    if (!pk || !x)
        goto out;
    X509_set_version(x, 2);
    unsigned char serial[16];
    RAND_bytes(serial, sizeof(serial));
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 86400);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"Limen", -1, -1, 0);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509_set_pubkey(x, pk);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:localhost");
    if (ext) {
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    if (X509_sign(x, pk, EVP_sha256()) > 0 && SSL_CTX_use_certificate(ctx, x) == 1 &&
        SSL_CTX_use_PrivateKey(ctx, pk) == 1)
        rc = LM_OK;
out:
    X509_free(x);
    EVP_PKEY_free(pk);
    return rc;
}

static int lm__proto_version(const char *name)
{
    static const struct { const char *n; int v; } t[] = {
        { "TLSv1", TLS1_VERSION }, { "TLSv1.1", TLS1_1_VERSION }, { "TLSv1.2", TLS1_2_VERSION },
        { "TLSv1.3", TLS1_3_VERSION },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (strcmp(t[i].n, name) == 0)
            return t[i].v;
    return 0;
}

static int lm__session_new_cb(SSL *s, SSL_SESSION *sess);

static int lm__client_verify_init(const lm_tls_opts_t *o, char *err, size_t errlen)
{
    const char *v = o->client_verify && *o->client_verify ? o->client_verify : "off";
    if (strcmp(v, "off") == 0)
        lm__tls.client_verify = LM__CV_OFF;
    else if (strcmp(v, "optional") == 0)
        lm__tls.client_verify = LM__CV_OPTIONAL;
    else if (strcmp(v, "on") == 0)
        lm__tls.client_verify = LM__CV_ON;
    else {
        snprintf(err, errlen, "--ssl-client-verify: '%s' is not off, optional or on", v);
        return LM_ERROR;
    }
    if (lm__tls.client_verify == LM__CV_OFF)
        return LM_OK;
    if (!o->client_ca_file || !*o->client_ca_file) {
        snprintf(err, errlen, "--ssl-client-verify %s needs --ssl-client-ca", v);
        return LM_ERROR;
    }
    lm__tls.client_store = X509_STORE_new();
    lm__tls.client_names = SSL_load_client_CA_file(o->client_ca_file);
    if (!lm__tls.client_store || X509_STORE_load_file(lm__tls.client_store, o->client_ca_file) != 1 ||
        !lm__tls.client_names || sk_X509_NAME_num(lm__tls.client_names) == 0) {
        unsigned long e = ERR_get_error();
        snprintf(err, errlen, "--ssl-client-ca %s: %s", o->client_ca_file,
                 e ? ERR_reason_error_string(e) : "no certificate in it");
        ERR_clear_error();
        return LM_ERROR;
    }
    return LM_OK;
}

int lm_tls_init(const lm_tls_opts_t *o, char *err, size_t errlen)
{
    lm__tls.app_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    lm__tls.rotate_ms = (o->ticket_rotate_s > 0 ? o->ticket_rotate_s : 3600) * 1000;
    /* protocols: the range spanned by the names given ("TLSv1.2 TLSv1.3") */
    const char *protos = o->protocols && *o->protocols ? o->protocols : "TLSv1.2 TLSv1.3";
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", protos);
    lm__tls.min_version = lm__tls.max_version = 0;
    for (char *save = NULL, *t = strtok_r(buf, " ,", &save); t; t = strtok_r(NULL, " ,", &save)) {
        int v = lm__proto_version(t);
        if (!v) {
            snprintf(err, errlen, "--ssl-protocols: unknown protocol '%s' (TLSv1.2, TLSv1.3)", t);
            return LM_ERROR;
        }
        if (!lm__tls.min_version || v < lm__tls.min_version)
            lm__tls.min_version = v;
        if (v > lm__tls.max_version)
            lm__tls.max_version = v;
    }
    lm__tls.ciphers = strdup(o->ciphers && *o->ciphers ? o->ciphers : lm__intermediate);
    lm_tls_rotate_tickets();
    if (lm__client_verify_init(o, err, errlen) != LM_OK)
        return LM_ERROR;

    lm__tls.base = lm__server_ctx_new();
    lm__tls.fallback = lm__server_ctx_new();
    if (!lm__tls.base || !lm__tls.fallback) {
        snprintf(err, errlen, "TLS: cannot create a context");
        return LM_ERROR;
    }
    if (SSL_CTX_set_cipher_list(lm__tls.base, lm__tls.ciphers) != 1) {
        snprintf(err, errlen, "--ssl-ciphers: no usable cipher in '%s'", lm__tls.ciphers);
        return LM_ERROR;
    }
    SSL_CTX_set_tlsext_servername_callback(lm__tls.base, lm__servername_cb);
    SSL_CTX *targets[] = { lm__tls.base, lm__tls.fallback };
    for (int i = 0; i < 2; i++) {
        int rc;
        if (o->cert_file) {
            rc = SSL_CTX_use_certificate_chain_file(targets[i], o->cert_file) == 1 &&
                         SSL_CTX_use_PrivateKey_file(targets[i], o->key_file ? o->key_file : o->cert_file,
                                                     SSL_FILETYPE_PEM) == 1 &&
                         SSL_CTX_check_private_key(targets[i]) == 1
                     ? LM_OK
                     : LM_ERROR;
        } else {
            rc = i == 0 ? lm__self_signed(targets[i]) : LM_OK;
            if (i == 1 && rc == LM_OK) { /* the same generated certificate in both */
                rc = SSL_CTX_use_certificate(targets[1], SSL_CTX_get0_certificate(lm__tls.base)) == 1 &&
                             SSL_CTX_use_PrivateKey(targets[1], SSL_CTX_get0_privatekey(lm__tls.base)) == 1
                         ? LM_OK
                         : LM_ERROR;
            }
        }
        if (rc != LM_OK) {
            unsigned long e = ERR_get_error();
            snprintf(err, errlen, "default certificate%s%s: %s", o->cert_file ? " " : "",
                     o->cert_file ? o->cert_file : "", e ? ERR_reason_error_string(e) : "cannot be made");
            ERR_clear_error();
            return LM_ERROR;
        }
        lm_ocsp_attach(targets[i]);
    }
    return LM_OK;
}

/* ------------------------------------------------------------------ */
/* contexts cached by content across snapshots                         */

static struct {
    pthread_mutex_t mu;
    lm_map_t cur, prev; /* key -> SSL_CTX* (one reference each) */
} lm__cache = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void lm__cache_drop(lm_map_t *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key.ptr) {
            SSL_CTX_free(m->slots[i].value);
            free((char *)m->slots[i].key.ptr);
        }
    lm_map_free(m);
    lm_map_init(m);
}

/* Key: SHA-256 over the parts, hex. */
static void lm__cache_key(char out[65], const char *kind, const char *const *parts, size_t n)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char d[32];
    unsigned dl = 0;
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    EVP_DigestUpdate(md, kind, strlen(kind) + 1);
    for (size_t i = 0; i < n; i++) {
        const char *p = parts[i] ? parts[i] : "";
        EVP_DigestUpdate(md, p, strlen(p) + 1);
    }
    EVP_DigestFinal_ex(md, d, &dl);
    EVP_MD_CTX_free(md);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* The cached context (one more reference) or NULL. Takes lm__cache.mu. */
static SSL_CTX *lm__cache_get(const char *key)
{
    SSL_CTX *ctx = lm_map_get(&lm__cache.cur, lm_str(key));
    if (!ctx) {
        ctx = lm_map_get(&lm__cache.prev, lm_str(key));
        if (ctx) {
            SSL_CTX_up_ref(ctx);
            lm_map_put(&lm__cache.cur, lm_str(strdup(key)), ctx);
        }
    }
    if (ctx)
        SSL_CTX_up_ref(ctx);
    return ctx;
}

static void lm__cache_put(const char *key, SSL_CTX *ctx)
{
    SSL_CTX_up_ref(ctx);
    lm_map_put(&lm__cache.cur, lm_str(strdup(key)), ctx);
}

void lm_tls_cache_sweep(void)
{
    pthread_mutex_lock(&lm__cache.mu);
    lm__cache_drop(&lm__cache.prev);
    lm__cache.prev = lm__cache.cur;
    lm_map_init(&lm__cache.cur);
    pthread_mutex_unlock(&lm__cache.mu);
}

/* ------------------------------------------------------------------ */
/* the certificate store of a snapshot                                 */

struct lm_tls_store {
    lm_map_t names;     /* lower-cased SNI (exact or wildcard form) -> SSL_CTX* */
    SSL_CTX **ctxs;     /* every context, one reference each */
    size_t num_ctxs;
};

static SSL_CTX *lm__cert_ctx(const lm_certificate_t *c, char *err, size_t errlen)
{
    const char *parts[] = { c->cert, c->key, c->cert_alt, c->key_alt };
    char key[65];
    lm__cache_key(key, "server", parts, 4);
    pthread_mutex_lock(&lm__cache.mu);
    SSL_CTX *ctx = lm__cache_get(key);
    if (!ctx) {
        ctx = lm__server_ctx_new();
        if (ctx && (lm__use_pem_pair(ctx, c->cert, c->key) != LM_OK ||
                    (c->cert_alt && c->key_alt && lm__use_pem_pair(ctx, c->cert_alt, c->key_alt) != LM_OK))) {
            unsigned long e = ERR_get_error();
            snprintf(err, errlen, "certificate %s: %s", c->id ? c->id : "", e ? ERR_reason_error_string(e) : "invalid");
            ERR_clear_error();
            SSL_CTX_free(ctx);
            ctx = NULL;
        } else if (ctx) {
            lm_ocsp_attach(ctx);
            lm__cache_put(key, ctx);
        }
    }
    pthread_mutex_unlock(&lm__cache.mu);
    return ctx;
}

lm_tls_store_t *lm_tls_store_build(const lm_config_t *cfg, char *err, size_t errlen)
{
    lm_tls_store_t *st = calloc(1, sizeof(*st));
    if (!st)
        abort();
    lm_map_init(&st->names);
    st->ctxs = calloc(cfg->num_certificates + 1, sizeof(*st->ctxs));
    for (size_t i = 0; i < cfg->num_certificates; i++) {
        const lm_certificate_t *c = cfg->certificates[i];
        if (c->num_snis == 0)
            continue; /* only reachable by name */
        SSL_CTX *ctx = lm__cert_ctx(c, err, errlen);
        if (!ctx) {
            lm_tls_store_free(st);
            return NULL;
        }
        st->ctxs[st->num_ctxs++] = ctx;
        for (size_t j = 0; j < c->num_snis; j++) {
            char name[256];
            size_t k = 0;
            for (const char *p = c->snis[j]; *p && k < sizeof(name) - 1; p++)
                name[k++] = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
            name[k] = 0;
            if (!lm_map_get(&st->names, lm_str(name))) { /* the first certificate naming it wins */
                char *owned = strdup(name);
                if (!owned)
                    abort();
                lm_map_put(&st->names, lm_str(owned), ctx);
            }
        }
    }
    return st;
}

void lm_tls_store_free(lm_tls_store_t *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->num_ctxs; i++)
        SSL_CTX_free(st->ctxs[i]);
    free(st->ctxs);
    for (size_t i = 0; i < st->names.cap; i++)
        free((char *)st->names.slots[i].key.ptr);
    lm_map_free(&st->names);
    free(st);
}

SSL_CTX *lm_tls_store_pick(const lm_tls_store_t *st, const char *sni)
{
    if (st && st->names.count) {
        char name[260];
        size_t n = 0;
        for (const char *p = sni; p && *p && n < 255; p++)
            name[n++] = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
        if (n && name[n - 1] == '.')
            n--; /* "example.com." */
        name[n] = 0;
        SSL_CTX *ctx;
        if (n && (ctx = lm_map_get(&st->names, (lm_str_t){ name, n })))
            return ctx;
        char *dot = n ? memchr(name, '.', n) : NULL;
        if (dot) { /* "*.rest": one label replaced, as Kong */
            char w[260];
            int wl = snprintf(w, sizeof(w), "*%s", dot);
            if ((ctx = lm_map_get(&st->names, (lm_str_t){ w, (size_t)wl })))
                return ctx;
            char *last = strrchr(name, '.');
            wl = snprintf(w, sizeof(w), "%.*s.*", (int)(last - name), name);
            if ((ctx = lm_map_get(&st->names, (lm_str_t){ w, (size_t)wl })))
                return ctx;
        }
        if ((ctx = lm_map_get(&st->names, LM_STR("*"))))
            return ctx;
    }
    return lm__tls.fallback;
}

static int lm__servername_cb(SSL *s, int *ad, void *arg)
{
    (void)ad, (void)arg;
    lm_tls_t *t = SSL_get_ex_data(s, lm__tls.app_idx);
    lm_worker_t *w = t ? (lm_worker_t *)SSL_get_app_data(s) : NULL;
    const char *name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
    if (t && name)
        snprintf(t->sni, sizeof(t->sni), "%s", name);
    const lm_tls_store_t *st = w && w->cur ? w->cur->snap->tls : NULL;
    SSL_CTX *ctx = lm_tls_store_pick(st, name);
    /* the base context already holds the default certificate: no switch for it */
    if (ctx != SSL_get_SSL_CTX(s) && !(ctx == lm__tls.fallback && SSL_get_SSL_CTX(s) == lm__tls.base))
        SSL_set_SSL_CTX(s, ctx);
    return SSL_TLSEXT_ERR_OK;
}

/* ------------------------------------------------------------------ */
/* upstream (client) contexts                                          */

static int lm__session_new_cb(SSL *s, SSL_SESSION *sess)
{
    void *app = SSL_get_app_data(s);
    if (!app || !lm__tls.session_cb || !SSL_SESSION_is_resumable(sess))
        return 0;
    return lm__tls.session_cb(app, sess) ? 1 : 0;
}

void lm_tls_set_session_cb(lm_tls_session_cb cb) { lm__tls.session_cb = cb; }

static const lm_certificate_t *lm__find_cert(const lm_config_t *cfg, const char *ref)
{
    for (size_t i = 0; ref && i < cfg->num_certificates; i++)
        if (cfg->certificates[i]->id && strcmp(cfg->certificates[i]->id, ref) == 0)
            return cfg->certificates[i];
    return NULL;
}

static const lm_ca_certificate_t *lm__find_ca(const lm_config_t *cfg, const char *ref)
{
    for (size_t i = 0; ref && i < cfg->num_ca_certificates; i++)
        if (cfg->ca_certificates[i]->id && strcmp(cfg->ca_certificates[i]->id, ref) == 0)
            return cfg->ca_certificates[i];
    return NULL;
}

SSL_CTX *lm_tls_client_ctx(const lm_config_t *cfg, const lm_service_t *svc, char id[17], char *err, size_t errlen)
{
    const lm_certificate_t *cc = lm__find_cert(cfg, svc->client_certificate);
    /* the cache key: everything that shapes the context */
    const char *parts[8 + 64];
    size_t np = 0;
    char depth[32];
    bool h2 = strcmp(svc->protocol, "grpcs") == 0;
    snprintf(depth, sizeof(depth), "%d/%d/%s", svc->tls_verify ? 1 : 0, svc->tls_verify_depth, h2 ? "h2" : "h1");
    parts[np++] = depth;
    parts[np++] = cc ? cc->cert : NULL;
    parts[np++] = cc ? cc->key : NULL;
    for (size_t i = 0; i < svc->num_ca_certificates && np < sizeof(parts) / sizeof(parts[0]); i++) {
        const lm_ca_certificate_t *ca = lm__find_ca(cfg, svc->ca_certificates[i]);
        parts[np++] = ca ? ca->cert : svc->ca_certificates[i];
    }
    char key[65];
    lm__cache_key(key, "client", parts, np);
    memcpy(id, key, 16);
    id[16] = 0;
    pthread_mutex_lock(&lm__cache.mu);
    SSL_CTX *ctx = lm__cache_get(key);
    if (ctx) {
        pthread_mutex_unlock(&lm__cache.mu);
        return ctx;
    }
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        goto fail;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, lm__session_new_cb);
    if (h2)
        SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x02h2", 3);
    if (svc->tls_verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (svc->tls_verify_depth >= 0)
            SSL_CTX_set_verify_depth(ctx, svc->tls_verify_depth);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (svc->num_ca_certificates) {
        X509_STORE *store = SSL_CTX_get_cert_store(ctx);
        for (size_t i = 0; i < svc->num_ca_certificates; i++) {
            const lm_ca_certificate_t *ca = lm__find_ca(cfg, svc->ca_certificates[i]);
            if (!ca) {
                snprintf(err, errlen, "service %s: ca_certificates[%zu] not found", svc->name ? svc->name : "", i);
                goto fail;
            }
            BIO *b = BIO_new_mem_buf(ca->cert, -1);
            X509 *x;
            while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
                X509_STORE_add_cert(store, x);
                X509_free(x);
            }
            ERR_clear_error();
            BIO_free(b);
        }
    } else if (svc->tls_verify) {
        SSL_CTX_set_default_verify_paths(ctx); /* the system's trust store */
    }
    if (svc->client_certificate) {
        if (!cc) {
            snprintf(err, errlen, "service %s: client_certificate not found", svc->name ? svc->name : "");
            goto fail;
        }
        if (lm__use_pem_pair(ctx, cc->cert, cc->key) != LM_OK) {
            snprintf(err, errlen, "service %s: client_certificate does not load", svc->name ? svc->name : "");
            goto fail;
        }
    }
    lm__cache_put(key, ctx);
    pthread_mutex_unlock(&lm__cache.mu);
    return ctx;
fail:
    pthread_mutex_unlock(&lm__cache.mu);
    if (err[0] == 0)
        snprintf(err, errlen, "service %s: TLS context: %s", svc->name ? svc->name : "",
                 ERR_reason_error_string(ERR_get_error()));
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

void lm_tls_cleanup(void)
{
    lm_ocsp_stop();
    pthread_mutex_lock(&lm__cache.mu);
    lm__cache_drop(&lm__cache.cur);
    lm__cache_drop(&lm__cache.prev);
    pthread_mutex_unlock(&lm__cache.mu);
    SSL_CTX_free(lm__tls.base);
    SSL_CTX_free(lm__tls.fallback);
    lm__tls.base = lm__tls.fallback = NULL;
    free(lm__tls.ciphers);
    lm__tls.ciphers = NULL;
    X509_STORE_free(lm__tls.client_store);
    lm__tls.client_store = NULL;
    sk_X509_NAME_pop_free(lm__tls.client_names, X509_NAME_free);
    lm__tls.client_names = NULL;
    lm__tls.client_verify = LM__CV_OFF;
    OPENSSL_cleanse(lm__tk, sizeof(lm__tk));
}

/* ------------------------------------------------------------------ */
/* connections                                                         */

static int lm__conn_init(lm_tls_t *t, SSL_CTX *ctx)
{
    memset(t, 0, sizeof(*t));
    t->alpn = "";
    t->ssl = SSL_new(ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        SSL_free(t->ssl);
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        t->ssl = NULL;
        return LM_ERROR;
    }
    BIO_set_mem_eof_return(t->rbio, -1); /* empty means "more to come", not EOF */
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_ex_data(t->ssl, lm__tls.app_idx, t);
    return LM_OK;
}

int lm_tls_accept(lm_tls_t *t, lm_worker_t *w)
{
    if (!lm__tls.base || lm__conn_init(t, lm__tls.base) != LM_OK)
        return LM_ERROR;
    SSL_set_app_data(t->ssl, w);
    SSL_set_accept_state(t->ssl);
    return LM_OK;
}

int lm_tls_connect(lm_tls_t *t, SSL_CTX *ctx, const char *sni, bool verify, SSL_SESSION *sess)
{
    if (lm__conn_init(t, ctx) != LM_OK)
        return LM_ERROR;
    SSL_set_connect_state(t->ssl);
    unsigned char ip[16];
    if (sni && *sni && (inet_pton(AF_INET, sni, ip) == 1 || inet_pton(AF_INET6, sni, ip) == 1)) {
        /* an address: no SNI (RFC 6066), and the certificate must name it
         * (an IP SAN) - without this check any certificate from the CA passed */
        if (verify && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), sni) != 1) {
            lm_tls_free(t);
            return LM_ERROR;
        }
    } else if (sni && *sni) {
        SSL_set_tlsext_host_name(t->ssl, sni);
        if (verify)
            SSL_set1_host(t->ssl, sni);
    }
    if (sess)
        SSL_set_session(t->ssl, sess);
    return LM_OK;
}

void lm_tls_set_app(lm_tls_t *t, void *app) { SSL_set_app_data(t->ssl, app); }

void lm_tls_free(lm_tls_t *t)
{
    /* a connection closed without close_notify would make OpenSSL mark its
     * session not resumable: an orderly end is not an error here */
    if (t->ssl && t->established && !t->failed)
        SSL_set_shutdown(t->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    if (t->ssl)
        SSL_free(t->ssl); /* frees both BIOs */
    t->ssl = NULL;
    free(t->client_verify);
    free(t->client_subject);
    t->client_verify = t->client_subject = NULL;
}

void lm_tls_feed(lm_tls_t *t, const char *p, size_t n)
{
    if (n)
        BIO_write(t->rbio, p, (int)n);
}

bool lm_tls_pending(const lm_tls_t *t)
{
    return t->ssl && !t->failed && (SSL_pending(t->ssl) > 0 || BIO_ctrl_pending(t->rbio) > 0);
}

/* The client certificate's verification result and subject, kept for the
 * upstream headers and plugins (a resumed session has them too). */
static void lm__client_cert_result(lm_tls_t *t)
{
    X509 *peer = SSL_get0_peer_certificate(t->ssl);
    long v = SSL_get_verify_result(t->ssl);
    char buf[160];
    if (!peer) {
        t->client_verify = strdup("NONE");
    } else if (v != X509_V_OK) {
        snprintf(buf, sizeof(buf), "FAILED:%s", X509_verify_cert_error_string(v));
        t->client_verify = strdup(buf);
    } else {
        t->client_verify = strdup("SUCCESS");
        BIO *b = BIO_new(BIO_s_mem());
        if (b && X509_NAME_print_ex(b, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253) >= 0) {
            char *p;
            long n = BIO_get_mem_data(b, &p);
            if ((t->client_subject = malloc((size_t)n + 1)) != NULL) {
                for (long i = 0; i < n; i++) /* a header value: no control characters */
                    t->client_subject[i] = (unsigned char)p[i] < 0x20 || p[i] == 0x7f ? '?' : p[i];
                t->client_subject[n] = 0;
            }
        }
        BIO_free(b);
    }
    if (!t->client_verify)
        abort();
}

ssize_t lm_tls_read(lm_tls_t *t, char *out, size_t cap)
{
    if (t->failed)
        return LM_ERROR;
    if (t->eof)
        return 0;
    /* the error queue is per thread: what another connection's failure left
     * there would turn this one's WANT_READ into SSL_ERROR_SSL */
    ERR_clear_error();
    if (!t->established) {
        int rc = SSL_do_handshake(t->ssl);
        if (rc != 1) {
            int e = SSL_get_error(t->ssl, rc);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return LM_AGAIN;
            t->failed = true;
            return LM_ERROR;
        }
        t->established = true;
        const unsigned char *p = NULL;
        unsigned len = 0;
        SSL_get0_alpn_selected(t->ssl, &p, &len);
        if (len == 8 && memcmp(p, "http/1.1", 8) == 0)
            t->alpn = "http/1.1";
        else if (len == 2 && memcmp(p, "h2", 2) == 0)
            t->alpn = "h2";
        if (lm__tls.client_verify != LM__CV_OFF && SSL_is_server(t->ssl))
            lm__client_cert_result(t);
    }
    size_t got = 0;
    while (got < cap) {
        size_t n = 0;
        int rc = SSL_read_ex(t->ssl, out + got, cap - got, &n);
        if (rc == 1) {
            got += n;
            continue;
        }
        int e = SSL_get_error(t->ssl, rc);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN)
            t->eof = true;
        else
            t->failed = true;
        break;
    }
    if (got)
        return (ssize_t)got;
    if (t->eof)
        return 0;
    return t->failed ? LM_ERROR : LM_AGAIN;
}

/* ciphertext on its way to the socket */
typedef struct {
    uv_write_t wr;
    lm_defer_t defer;
    uv_write_t *orig;
    uv_write_cb cb;
    uv_buf_t buf;
} lm__tlsw_t;

static void lm__tlsw_done(uv_write_t *wr, int status)
{
    lm__tlsw_t *tw = (lm__tlsw_t *)wr;
    uv_write_t *orig = tw->orig;
    uv_write_cb cb = tw->cb;
    free(tw);
    if (cb)
        cb(orig, status);
}

static int lm__send_out(lm_tls_t *t, lm_worker_t *w, uv_stream_t *s, uv_write_t *req, uv_write_cb cb)
{
    size_t n = BIO_ctrl_pending(t->wbio);
    if (n == 0 && !cb)
        return LM_OK;
    lm__tlsw_t *tw = malloc(sizeof(*tw) + n);
    if (!tw)
        abort();
    tw->orig = req;
    tw->cb = cb;
    tw->buf = uv_buf_init((char *)(tw + 1), (unsigned)n);
    if (n)
        BIO_read(t->wbio, tw->buf.base, (int)n);
    int rc = lm_stream_write(w, s, &tw->wr, &tw->defer, &tw->buf, 1, lm__tlsw_done);
    if (rc < 0)
        free(tw);
    return rc < 0 ? LM_ERROR : LM_OK;
}

int lm_tls_flush(lm_tls_t *t, lm_worker_t *w, uv_stream_t *s)
{
    return lm__send_out(t, w, s, NULL, NULL);
}

int lm_tls_write(lm_tls_t *t, lm_worker_t *w, uv_stream_t *s, uv_write_t *req, uv_buf_t *bufs, unsigned n,
                 uv_write_cb cb)
{
    /* small pieces (a head, a chunk header) are gathered into full records */
    static _Thread_local char gather[16384];
    ERR_clear_error(); /* as in lm_tls_read */
    size_t g = 0;
    for (unsigned i = 0; i <= n; i++) {
        const char *p = i < n ? bufs[i].base : NULL;
        size_t len = i < n ? bufs[i].len : 0;
        if (i == n || g + len > sizeof(gather)) {
            size_t done;
            if (g && SSL_write_ex(t->ssl, gather, g, &done) != 1)
                return LM_ERROR;
            g = 0;
        }
        if (i == n)
            break;
        if (len > sizeof(gather)) {
            size_t done;
            if (SSL_write_ex(t->ssl, p, len, &done) != 1)
                return LM_ERROR;
        } else {
            memcpy(gather + g, p, len);
            g += len;
        }
    }
    return lm__send_out(t, w, s, req, cb);
}

void lm_tls_shutdown(lm_tls_t *t)
{
    if (t->ssl && t->established && !t->failed) {
        ERR_clear_error();
        SSL_shutdown(t->ssl);
        ERR_clear_error(); /* a peer already gone is no concern of the next connection */
    }
}

const char *lm_tls_error(lm_tls_t *t, char *buf, size_t len)
{
    long v = t->ssl ? SSL_get_verify_result(t->ssl) : X509_V_OK;
    unsigned long e = ERR_peek_last_error();
    if (v != X509_V_OK)
        snprintf(buf, len, "certificate verify failed: %s", X509_verify_cert_error_string(v));
    else if (e)
        snprintf(buf, len, "%s", ERR_reason_error_string(e));
    else
        snprintf(buf, len, "TLS handshake failed");
    ERR_clear_error();
    return buf;
}

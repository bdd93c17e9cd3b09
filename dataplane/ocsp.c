/*
 * ocsp.c - OCSP stapling for the server certificates (see lm_tls.h).
 *
 * A leaf that names an OCSP responder (authorityInfoAccess) and whose issuer
 * is in its chain gets one entry, shared by every X509 object with the same
 * DER (one certificate loaded by several contexts) and found from the X509
 * through ex-data; the entry goes when the last such X509 is freed.
 *
 * One background thread, started with the first entry, fetches responses
 * over HTTP (POST), checks them (signed by the issuer or a responder it
 * delegated to, a status for this certificate, within thisUpdate/nextUpdate)
 * and refreshes each one halfway to its nextUpdate (hourly without one);
 * a failure is retried after 5 s, doubling up to 5 min, and the previous
 * response is kept while it is valid. Workers only read: the status callback
 * copies the current response under the lock, or sends none. A fetch never
 * blocks or fails a handshake.
 */
#include "lm_tls.h"
#include "lm_log.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/http.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LM__OCSP_TIMEOUT_MS 10000
#define LM__OCSP_RETRY_MIN 5
#define LM__OCSP_RETRY_MAX 300
#define LM__OCSP_NO_NEXT_UPDATE 3600 /* refresh period of a response without nextUpdate */
#define LM__OCSP_MAX_RESPONSE 102400

typedef struct lm__ocsp {
    struct lm__ocsp *next;
    unsigned char fp[32];  /* SHA-256 of the leaf's DER */
    char *url, *name;      /* responder; the leaf's subject, for logs */
    OCSP_CERTID *id;
    X509 *issuer;
    /* under lm__ocsp.mu */
    unsigned char *der;    /* the response to staple, NULL: none */
    int der_len;
    time_t expires;        /* its nextUpdate, 0: none */
    time_t refresh_at;
    int fails;
    int refs;              /* X509 objects pointing here */
    bool busy;             /* the thread is fetching it (not freed meanwhile) */
    bool logged_ok;
} lm__ocsp_t;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool started, stop;
    lm__ocsp_t *head;
    int xidx;
} lm__ocsp = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .xidx = -1 };

static pthread_once_t lm__ocsp_once = PTHREAD_ONCE_INIT;

static void lm__entry_free(lm__ocsp_t *e)
{
    free(e->url);
    free(e->name);
    OCSP_CERTID_free(e->id);
    X509_free(e->issuer);
    OPENSSL_free(e->der);
    free(e);
}

static void lm__unlink(lm__ocsp_t *e)
{
    for (lm__ocsp_t **pp = &lm__ocsp.head; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            return;
        }
}

/* An X509 with an entry is freed: the entry goes with its last one. */
static void lm__x509_freed(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    lm__ocsp_t *e = ptr;
    if (!e)
        return;
    pthread_mutex_lock(&lm__ocsp.mu);
    bool dead = --e->refs == 0 && !e->busy;
    if (dead)
        lm__unlink(e);
    pthread_mutex_unlock(&lm__ocsp.mu);
    if (dead) /* outside the lock: freeing its issuer may come back here */
        lm__entry_free(e);
}

static void lm__ocsp_index(void)
{
    lm__ocsp.xidx = X509_get_ex_new_index(0, NULL, NULL, NULL, lm__x509_freed);
}

/* ------------------------------------------------------------------ */
/* fetching                                                            */

static long lm__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

static bool lm__stopping(void)
{
    pthread_mutex_lock(&lm__ocsp.mu);
    bool s = lm__ocsp.stop;
    pthread_mutex_unlock(&lm__ocsp.mu);
    return s;
}

/* Waits for fd in short slices, so a stop is seen at once; false on
 * timeout, error or stop. */
static bool lm__wait_fd(int fd, short events, long deadline)
{
    for (;;) {
        if (lm__stopping())
            return false;
        long left = deadline - lm__now_ms();
        if (left <= 0)
            return false;
        struct pollfd p = { .fd = fd, .events = events };
        int rc = poll(&p, 1, left < 100 ? (int)left : 100);
        if (rc > 0)
            return true;
        if (rc < 0 && errno != EINTR)
            return false;
    }
}

/* A non-blocking socket connected to host:port, or -1 (why says why). */
static int lm__connect(const char *host, const char *port, long deadline, const char **why)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res = NULL;
    if (getaddrinfo(host, port, &hints, &res) != 0 || !res) {
        *why = "cannot resolve the responder";
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc < 0 && errno == EINPROGRESS && lm__wait_fd(fd, POLLOUT, deadline)) {
            int err = 0;
            socklen_t len = sizeof(err);
            rc = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0 ? 0 : -1;
        }
        if (rc != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        *why = "cannot connect to the responder";
    return fd;
}

/* One request to the responder; the response or NULL (why says why). */
static OCSP_RESPONSE *lm__fetch(const lm__ocsp_t *e, const char **why)
{
    char *host = NULL, *port = NULL, *path = NULL;
    int use_ssl = 0;
    OCSP_RESPONSE *resp = NULL;
    OCSP_REQUEST *req = NULL;
    OSSL_HTTP_REQ_CTX *rctx = NULL;
    BIO *bio = NULL;
    if (OSSL_HTTP_parse_url(e->url, &use_ssl, NULL, &host, &port, NULL, &path, NULL, NULL) != 1) {
        *why = "responder URL does not parse";
        goto out;
    }
    if (use_ssl) {
        *why = "https responders are not supported";
        goto out;
    }
    long deadline = lm__now_ms() + LM__OCSP_TIMEOUT_MS;
    int fd = lm__connect(host, port, deadline, why);
    if (fd < 0)
        goto out;
    bio = BIO_new_socket(fd, BIO_CLOSE);
    req = OCSP_REQUEST_new();
    OCSP_CERTID *id = OCSP_CERTID_dup(e->id);
    if (!bio || !req || !id || !OCSP_request_add0_id(req, id)) {
        OCSP_CERTID_free(id);
        if (!bio)
            close(fd);
        *why = "out of memory";
        goto out;
    }
    rctx = OSSL_HTTP_REQ_CTX_new(bio, bio, 8192);
    if (!rctx || OSSL_HTTP_REQ_CTX_set_request_line(rctx, 1, NULL, NULL, path) != 1 ||
        OSSL_HTTP_REQ_CTX_add1_header(rctx, "Host", host) != 1 ||
        OSSL_HTTP_REQ_CTX_set_expected(rctx, NULL, 1, 0, 0) != 1 ||
        OSSL_HTTP_REQ_CTX_set1_req(rctx, "application/ocsp-request", ASN1_ITEM_rptr(OCSP_REQUEST),
                                   (const ASN1_VALUE *)req) != 1) {
        *why = "cannot make the request";
        goto out;
    }
    OSSL_HTTP_REQ_CTX_set_max_response_length(rctx, LM__OCSP_MAX_RESPONSE);
    for (;;) {
        ASN1_VALUE *val = NULL;
        int rc = OSSL_HTTP_REQ_CTX_nbio_d2i(rctx, &val, ASN1_ITEM_rptr(OCSP_RESPONSE));
        if (rc == 1) {
            resp = (OCSP_RESPONSE *)val;
            break;
        }
        if (rc == 0 || !BIO_should_retry(bio)) {
            *why = "bad HTTP exchange with the responder";
            break;
        }
        if (!lm__wait_fd(fd, BIO_should_read(bio) ? POLLIN : POLLOUT, deadline)) {
            *why = "responder timed out";
            break;
        }
    }
out:
    OSSL_HTTP_REQ_CTX_free(rctx);
    BIO_free(bio);
    OCSP_REQUEST_free(req);
    OPENSSL_free(host);
    OPENSSL_free(port);
    OPENSSL_free(path);
    ERR_clear_error();
    return resp;
}

static time_t lm__asn1_time(const ASN1_GENERALIZEDTIME *t)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return timegm(&tm);
}

/* Checks resp for e: LM_OK with *status (V_OCSP_CERTSTATUS_*) and *next
 * (nextUpdate, 0: none), else why says why. */
static int lm__check(const lm__ocsp_t *e, OCSP_RESPONSE *resp, int *status, time_t *next, const char **why)
{
    int rs = OCSP_response_status(resp);
    if (rs != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        *why = OCSP_response_status_str(rs);
        return LM_ERROR;
    }
    OCSP_BASICRESP *bs = OCSP_response_get1_basic(resp);
    X509_STORE *store = X509_STORE_new();
    STACK_OF(X509) *certs = sk_X509_new_null();
    int rc = LM_ERROR, reason = 0;
    ASN1_GENERALIZEDTIME *rev = NULL, *thisupd = NULL, *nextupd = NULL;
    if (!bs || !store || !certs) {
        *why = "no basic response";
        goto out;
    }
    /* the issuer is the trust anchor even when it is an intermediate */
    X509_STORE_add_cert(store, e->issuer);
    X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
    sk_X509_push(certs, e->issuer);
    if (OCSP_basic_verify(bs, certs, store, 0) <= 0) {
        *why = "signature does not verify against the issuer";
        goto out;
    }
    if (!OCSP_resp_find_status(bs, e->id, status, &reason, &rev, &thisupd, &nextupd)) {
        *why = "no status for this certificate";
        goto out;
    }
    if (!OCSP_check_validity(thisupd, nextupd, 300, -1)) {
        *why = "outside its validity period";
        goto out;
    }
    *next = lm__asn1_time(nextupd);
    rc = LM_OK;
out:
    sk_X509_free(certs);
    X509_STORE_free(store);
    OCSP_BASICRESP_free(bs);
    ERR_clear_error();
    return rc;
}

/* Fetches e's response and files it (called without the lock, e busy). */
static void lm__refresh(lm__ocsp_t *e)
{
    const char *why = NULL;
    int status = V_OCSP_CERTSTATUS_UNKNOWN;
    time_t next = 0;
    unsigned char *der = NULL;
    int der_len = 0;
    OCSP_RESPONSE *resp = lm__fetch(e, &why);
    if (resp && lm__check(e, resp, &status, &next, &why) == LM_OK && (der_len = i2d_OCSP_RESPONSE(resp, &der)) <= 0)
        why = "cannot encode the response";
    OCSP_RESPONSE_free(resp);
    if (!resp && !why)
        why = "no response";

    time_t now = time(NULL);
    pthread_mutex_lock(&lm__ocsp.mu);
    if (der && der_len > 0) {
        OPENSSL_free(e->der);
        e->der = der;
        e->der_len = der_len;
        e->expires = next;
        e->fails = 0;
        time_t half = next ? (next - now) / 2 : LM__OCSP_NO_NEXT_UPDATE;
        e->refresh_at = now + (half < 10 ? 10 : half);
        bool first = !e->logged_ok;
        e->logged_ok = true;
        pthread_mutex_unlock(&lm__ocsp.mu);
        if (status != V_OCSP_CERTSTATUS_GOOD)
            lm_log_warn("OCSP: %s: the responder says %s (stapled)", e->name, OCSP_cert_status_str(status));
        else if (first)
            lm_log_info("OCSP: %s: response from %s stapled", e->name, e->url);
        return;
    }
    OPENSSL_free(der);
    int delay = LM__OCSP_RETRY_MIN;
    for (int i = 0; i < e->fails && delay < LM__OCSP_RETRY_MAX; i++)
        delay *= 2;
    if (delay > LM__OCSP_RETRY_MAX)
        delay = LM__OCSP_RETRY_MAX;
    e->fails++;
    e->refresh_at = now + delay;
    bool keep = e->der && (!e->expires || now < e->expires);
    pthread_mutex_unlock(&lm__ocsp.mu);
    lm_log_warn("OCSP: %s: %s: %s; %s, retry in %d s", e->name, e->url, why ? why : "failed",
                keep ? "the previous response is still stapled" : "no staple", delay);
}

static void *lm__ocsp_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lm__ocsp.mu);
    while (!lm__ocsp.stop) {
        time_t now = time(NULL);
        lm__ocsp_t *due = NULL;
        time_t earliest = 0;
        for (lm__ocsp_t **pp = &lm__ocsp.head; *pp;) {
            lm__ocsp_t *e = *pp;
            if (e->refs == 0) { /* its certificate went while it was being fetched */
                *pp = e->next;
                pthread_mutex_unlock(&lm__ocsp.mu);
                lm__entry_free(e);
                pthread_mutex_lock(&lm__ocsp.mu);
                pp = &lm__ocsp.head; /* the list may have changed meanwhile */
                due = NULL;
                earliest = 0;
                continue;
            }
            if (e->refresh_at <= now && !due)
                due = e;
            if (!earliest || e->refresh_at < earliest)
                earliest = e->refresh_at;
            pp = &e->next;
        }
        if (due) {
            due->busy = true;
            pthread_mutex_unlock(&lm__ocsp.mu);
            lm__refresh(due);
            pthread_mutex_lock(&lm__ocsp.mu);
            due->busy = false;
            continue;
        }
        if (earliest) {
            struct timespec ts = { .tv_sec = earliest };
            pthread_cond_timedwait(&lm__ocsp.cv, &lm__ocsp.mu, &ts); /* CLOCK_REALTIME, as time() */
        } else {
            pthread_cond_wait(&lm__ocsp.cv, &lm__ocsp.mu);
        }
    }
    pthread_mutex_unlock(&lm__ocsp.mu);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* certificates and handshakes                                         */

static void lm__attach_one(X509 *leaf, STACK_OF(X509) *chain)
{
    if (!leaf || X509_get_ex_data(leaf, lm__ocsp.xidx))
        return;
    STACK_OF(OPENSSL_STRING) *urls = X509_get1_ocsp(leaf);
    if (!urls)
        return; /* no responder: nothing to staple, nothing to fetch */
    char name[256];
    X509_NAME_oneline(X509_get_subject_name(leaf), name, sizeof(name));
    const char *url = sk_OPENSSL_STRING_value(urls, 0);
    X509 *issuer = NULL;
    for (int i = 0; chain && i < sk_X509_num(chain) && !issuer; i++)
        if (X509_check_issued(sk_X509_value(chain, i), leaf) == X509_V_OK)
            issuer = sk_X509_value(chain, i);
    unsigned char fp[32];
    unsigned fpl = 0;
    if (!issuer) {
        lm_log_warn("OCSP: %s: its issuer is not in the chain: no stapling", name);
        goto out;
    }
    if (X509_digest(leaf, EVP_sha256(), fp, &fpl) != 1 || fpl != sizeof(fp))
        goto out;
    pthread_mutex_lock(&lm__ocsp.mu);
    lm__ocsp_t *e = lm__ocsp.head;
    while (e && memcmp(e->fp, fp, sizeof(fp)) != 0)
        e = e->next;
    if (e) {
        e->refs++;
        X509_set_ex_data(leaf, lm__ocsp.xidx, e);
        pthread_mutex_unlock(&lm__ocsp.mu);
        goto out;
    }
    e = calloc(1, sizeof(*e));
    if (!e)
        abort();
    memcpy(e->fp, fp, sizeof(fp));
    e->url = strdup(url);
    e->name = strdup(name);
    e->id = OCSP_cert_to_id(NULL, leaf, issuer);
    if (!e->url || !e->name || !e->id) {
        pthread_mutex_unlock(&lm__ocsp.mu);
        lm__entry_free(e);
        goto out;
    }
    X509_up_ref(issuer);
    e->issuer = issuer;
    e->refs = 1;
    e->next = lm__ocsp.head;
    lm__ocsp.head = e;
    X509_set_ex_data(leaf, lm__ocsp.xidx, e);
    if (!lm__ocsp.started && !lm__ocsp.stop) {
        if (pthread_create(&lm__ocsp.thread, NULL, lm__ocsp_main, NULL) == 0)
            lm__ocsp.started = true;
        else
            lm_log_warn("OCSP: cannot start the fetching thread: no stapling");
    }
    pthread_cond_signal(&lm__ocsp.cv);
    pthread_mutex_unlock(&lm__ocsp.mu);
out:
    X509_email_free(urls);
    ERR_clear_error();
}

void lm_ocsp_attach(SSL_CTX *ctx)
{
    pthread_once(&lm__ocsp_once, lm__ocsp_index);
    if (lm__ocsp.xidx < 0)
        return;
    /* every certificate of the context (RSA and ECDSA), each with its chain */
    for (long rc = SSL_CTX_set_current_cert(ctx, SSL_CERT_SET_FIRST); rc == 1;
         rc = SSL_CTX_set_current_cert(ctx, SSL_CERT_SET_NEXT)) {
        STACK_OF(X509) *chain = NULL;
        SSL_CTX_get0_chain_certs(ctx, &chain);
        lm__attach_one(SSL_CTX_get0_certificate(ctx), chain);
    }
    ERR_clear_error();
}

int lm_ocsp_status_cb(SSL *s, void *arg)
{
    (void)arg;
    X509 *x = SSL_get_certificate(s); /* the one this handshake uses */
    lm__ocsp_t *e = x && lm__ocsp.xidx >= 0 ? X509_get_ex_data(x, lm__ocsp.xidx) : NULL;
    if (!e)
        return SSL_TLSEXT_ERR_NOACK;
    unsigned char *copy = NULL;
    int len = 0;
    pthread_mutex_lock(&lm__ocsp.mu);
    if (e->der && (!e->expires || time(NULL) < e->expires)) {
        copy = OPENSSL_memdup(e->der, (size_t)e->der_len);
        len = e->der_len;
    }
    pthread_mutex_unlock(&lm__ocsp.mu);
    if (!copy)
        return SSL_TLSEXT_ERR_NOACK;
    SSL_set_tlsext_status_ocsp_resp(s, copy, len); /* OpenSSL frees it */
    return SSL_TLSEXT_ERR_OK;
}

void lm_ocsp_stop(void)
{
    pthread_mutex_lock(&lm__ocsp.mu);
    lm__ocsp.stop = true;
    bool started = lm__ocsp.started;
    lm__ocsp.started = false;
    pthread_cond_signal(&lm__ocsp.cv);
    pthread_mutex_unlock(&lm__ocsp.mu);
    if (started)
        pthread_join(lm__ocsp.thread, NULL);
    /* entries whose certificates were freed while they were fetched */
    lm__ocsp_t *dead = NULL;
    pthread_mutex_lock(&lm__ocsp.mu);
    for (lm__ocsp_t **pp = &lm__ocsp.head; *pp;) {
        lm__ocsp_t *e = *pp;
        e->busy = false;
        if (e->refs == 0) {
            *pp = e->next;
            e->next = dead;
            dead = e;
        } else {
            pp = &e->next;
        }
    }
    pthread_mutex_unlock(&lm__ocsp.mu);
    while (dead) {
        lm__ocsp_t *n = dead->next;
        lm__entry_free(dead);
        dead = n;
    }
}

/*
 * kube_client.c - requests to the API server over lm_curl: TLS material from
 * memory, bearer tokens re-read when their file rotates, HTTP/2, and the
 * one-shot lm_kube_request. Informers live in kube_informer.c.
 */
#include "kube_internal.h"
#include "lm_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct lm__kube_req {
    lm_kube_t *k;
    CURL *easy;
    lm_kube_cb cb;
    void *data;
    lm__kube_req_t *prev, *next;
};

/* ---- helpers ----------------------------------------------------------------- */

uint64_t lm__kube_rand(lm_kube_t *k, uint64_t n)
{
    /* xorshift64*: jitter, not secrets */
    uint64_t x = k->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    k->rng = x;
    return n ? (x * 0x2545F4914F6CDD1DULL) % n : 0;
}

char *lm__kube_query_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(n * 3 + 1), *o = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
            c == '.' || c == '_' || c == '~') {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}

static char *lm__slurp_token(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char buf[16384];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    size_t s = 0;
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        buf[--n] = '\0';
    while (buf[s] == ' ' || buf[s] == '\n' || buf[s] == '\r' || buf[s] == '\t')
        s++;
    char *t = buf[s] ? strdup(buf + s) : NULL;
    explicit_bzero(buf, sizeof(buf));
    return t;
}

/* Re-reads the token file when it changed (projected service-account tokens
 * are replaced by the kubelet about every hour). A file that cannot be read
 * keeps the token we have (logged once). */
static void lm__refresh_token(lm_kube_t *k)
{
    const char *path = k->cfg.token_file;
    if (!path)
        return;
    struct stat st;
    if (stat(path, &st) != 0) {
        if (!k->token_err_logged)
            lm_log_warn("kube: token file %s: %s; keeping the token read before", path, strerror(errno));
        k->token_err_logged = true;
        return;
    }
    if (k->token_st_known && st.st_ino == k->token_st.st_ino && st.st_dev == k->token_st.st_dev &&
        st.st_size == k->token_st.st_size && st.st_mtim.tv_sec == k->token_st.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == k->token_st.st_mtim.tv_nsec)
        return;
    char *t = lm__slurp_token(path);
    if (!t) {
        if (!k->token_err_logged)
            lm_log_warn("kube: token file %s is empty or unreadable; keeping the token read before", path);
        k->token_err_logged = true;
        return;
    }
    bool changed = !k->cfg.token || strcmp(k->cfg.token, t) != 0;
    if (k->cfg.token)
        explicit_bzero(k->cfg.token, strlen(k->cfg.token));
    free(k->cfg.token);
    k->cfg.token = t;
    k->token_st = st;
    if (changed && k->token_st_known)
        lm_log_info("kube: token re-read from %s", path);
    k->token_st_known = true;
    k->token_err_logged = false;
}

static void lm__blob(CURL *easy, CURLoption opt, const char *pem)
{
    struct curl_blob b = { .data = (void *)pem, .len = strlen(pem), .flags = CURL_BLOB_COPY };
    curl_easy_setopt(easy, opt, &b);
}

CURL *lm__kube_easy(lm_kube_t *k, const char *path, const char *extra_header, struct curl_slist **headers)
{
    *headers = NULL;
    lm__refresh_token(k);
    CURL *easy = curl_easy_init();
    if (!easy)
        return NULL;
    size_t sl = strlen(k->cfg.server), pl = strlen(path);
    char *url = malloc(sl + pl + 1);
    if (!url) {
        curl_easy_cleanup(easy);
        return NULL;
    }
    memcpy(url, k->cfg.server, sl);
    memcpy(url + sl, path, pl + 1);
    curl_easy_setopt(easy, CURLOPT_URL, url); /* copied by curl */
    free(url);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L); /* wait for the connection to multiplex on */
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPINTVL, 10L);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "limen-controller/" LM_VERSION);
    curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, ""); /* gzip for large lists */
    if (k->cfg.ca_pem)
        lm__blob(easy, CURLOPT_CAINFO_BLOB, k->cfg.ca_pem);
    if (k->cfg.insecure) {
        curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (k->cfg.cert_pem && k->cfg.key_pem) {
        lm__blob(easy, CURLOPT_SSLCERT_BLOB, k->cfg.cert_pem);
        curl_easy_setopt(easy, CURLOPT_SSLCERTTYPE, "PEM");
        lm__blob(easy, CURLOPT_SSLKEY_BLOB, k->cfg.key_pem);
        curl_easy_setopt(easy, CURLOPT_SSLKEYTYPE, "PEM");
    }
    struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
    if (h && k->cfg.token) {
        size_t tl = strlen(k->cfg.token);
        char *auth = malloc(tl + 32);
        struct curl_slist *nh = NULL;
        if (auth) {
            memcpy(auth, "Authorization: Bearer ", 22);
            memcpy(auth + 22, k->cfg.token, tl + 1);
            nh = curl_slist_append(h, auth);
            explicit_bzero(auth, tl + 22);
            free(auth);
        }
        if (!nh) {
            curl_slist_free_all(h);
            h = NULL;
        }
    }
    if (h && extra_header) {
        struct curl_slist *nh = curl_slist_append(h, extra_header);
        if (!nh) {
            curl_slist_free_all(h);
            h = NULL;
        }
    }
    if (!h) {
        curl_easy_cleanup(easy);
        return NULL;
    }
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h);
    *headers = h;
    return easy;
}

/* ---- client ------------------------------------------------------------------- */

lm_kube_t *lm_kube_new(uv_loop_t *loop, lm_curl_t *curl, lm_kube_config_t *cfg)
{
    lm_kube_t *k = calloc(1, sizeof(*k));
    if (!k) {
        lm_kube_config_free(cfg);
        return NULL;
    }
    k->loop = loop;
    k->curl = curl;
    k->cfg = *cfg;
    memset(cfg, 0, sizeof(*cfg));
    k->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)k;
    if (!k->rng)
        k->rng = 0x9E3779B97F4A7C15ULL;
    return k;
}

const lm_kube_config_t *lm_kube_config(const lm_kube_t *k)
{
    return &k->cfg;
}

static void lm__req_unlink(lm__kube_req_t *r)
{
    lm_kube_t *k = r->k;
    if (r->prev)
        r->prev->next = r->next;
    else
        k->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

void lm_kube_free(lm_kube_t *k)
{
    if (!k)
        return;
    lm__kube_stop_informers(k);
    while (k->reqs) {
        lm__kube_req_t *r = k->reqs;
        lm__req_unlink(r);
        lm_curl_remove(k->curl, r->easy); /* a fetch: frees the handle and its headers */
        free(r);
    }
    lm_kube_config_free(&k->cfg);
    free(k);
}

static void lm__req_done(const lm_curl_resp_t *resp, void *data)
{
    lm__kube_req_t *r = data;
    lm__req_unlink(r);
    cJSON *body = resp->len ? cJSON_ParseWithLength(resp->body, resp->len) : NULL;
    char err[CURL_ERROR_SIZE + 32];
    err[0] = '\0';
    if (resp->rc != CURLE_OK)
        snprintf(err, sizeof(err), "%s", resp->error[0] ? resp->error : curl_easy_strerror(resp->rc));
    else if (resp->status >= 400) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(body, "message");
        snprintf(err, sizeof(err), "HTTP %ld%s%s", resp->status, cJSON_IsString(m) ? ": " : "",
                 cJSON_IsString(m) ? m->valuestring : "");
    }
    r->cb(resp->rc == CURLE_OK ? (int)resp->status : 0, body, err[0] ? err : NULL, r->data);
    cJSON_Delete(body);
    free(r);
}

int lm_kube_request(lm_kube_t *k, const char *method, const char *path, const cJSON *body,
                    const char *content_type, lm_kube_cb cb, void *data)
{
    if (!method || !path || path[0] != '/' || !cb)
        return LM_ERROR;
    char ct[160];
    if (!content_type)
        content_type = strcmp(method, "PATCH") == 0 ? "application/merge-patch+json" : "application/json";
    snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
    struct curl_slist *headers;
    CURL *easy = lm__kube_easy(k, path, body ? ct : NULL, &headers);
    if (!easy)
        return LM_ERROR;
    if (body) {
        char *json = cJSON_PrintUnformatted(body);
        if (!json) {
            curl_easy_cleanup(easy);
            curl_slist_free_all(headers);
            return LM_ERROR;
        }
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long)strlen(json));
        curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, json);
        free(json);
    } else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0) {
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, 0L);
        curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, "");
    }
    if (strcmp(method, "GET") != 0 && !(body && strcmp(method, "POST") == 0))
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 30000L);
    lm__kube_req_t *r = calloc(1, sizeof(*r));
    if (!r) {
        curl_easy_cleanup(easy);
        curl_slist_free_all(headers);
        return LM_ERROR;
    }
    r->k = k;
    r->easy = easy;
    r->cb = cb;
    r->data = data;
    r->next = k->reqs;
    if (k->reqs)
        k->reqs->prev = r;
    k->reqs = r;
    if (lm_curl_fetch(k->curl, easy, headers, 0, lm__req_done, r) != LM_OK) {
        lm__req_unlink(r); /* easy and headers are freed by lm_curl_fetch */
        free(r);
        return LM_ERROR;
    }
    return LM_OK;
}

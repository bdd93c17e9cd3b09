/*
 * config_entities.c - the build of upstreams, targets, certificates, snis
 * and CA certificates, and the value validators (hostnames, paths, header
 * names, UUIDs) shared with config_build.c. See lm_config.h.
 */
#include "config_internal.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- validators ------------------------------------------------------ */

bool lm__is_uuid(const char *s)
{
    static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    for (size_t i = 0; i < sizeof(shape) - 1; i++) {
        char c = s[i];
        if (shape[i] == '-') {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return s[sizeof(shape) - 1] == '\0';
}

bool lm__is_ip(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static bool lm__port_ok(const char *p, size_t n)
{
    if (n == 0 || n > 5)
        return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    return v <= 65535;
}

const char *lm__check_hostname(lm__b_t *b, const char *host, bool allow_port, bool allow_wildcard,
                               bool allow_ip)
{
    size_t len = strlen(host);
    const char *invalid = lm_arena_sprintf(b->tmp, "invalid value: %s", host);
    if (len == 0 || len > 260)
        return invalid;
    char name[264];
    const char *port = NULL;
    size_t plen = 0, nlen = len;
    if (host[0] == '[') {
        const char *close = strchr(host, ']');
        if (close == NULL)
            return invalid;
        nlen = (size_t)(close - host - 1);
        memcpy(name, host + 1, nlen);
        name[nlen] = '\0';
        if (close[1] == ':') {
            port = close + 2;
            plen = strlen(port);
        } else if (close[1] != '\0') {
            return invalid;
        }
        unsigned char buf[16];
        if (inet_pton(AF_INET6, name, buf) != 1)
            return invalid;
        if (!allow_ip)
            return "must not be an IP";
        if (port && !lm__port_ok(port, plen))
            return "invalid port number";
        if (port && !allow_port)
            return "must not have a port";
        return NULL;
    }
    const char *colon = strchr(host, ':');
    if (colon && strchr(colon + 1, ':')) {
        /* bare IPv6 */
        unsigned char buf[16];
        if (inet_pton(AF_INET6, host, buf) != 1)
            return invalid;
        return allow_ip ? NULL : "must not be an IP";
    }
    if (colon) {
        nlen = (size_t)(colon - host);
        port = colon + 1;
        plen = strlen(port);
    }
    memcpy(name, host, nlen);
    name[nlen] = '\0';
    if (port) {
        if (!lm__port_ok(port, plen))
            return "invalid port number";
        if (!allow_port)
            return "must not have a port";
    }
    if (nlen == 0)
        return invalid;
    /* dotted digits: an IPv4 address */
    bool digits = true;
    for (size_t i = 0; i < nlen; i++)
        digits = digits && ((name[i] >= '0' && name[i] <= '9') || name[i] == '.');
    if (digits) {
        unsigned char buf[4];
        if (inet_pton(AF_INET, name, buf) != 1)
            return invalid;
        return allow_ip ? NULL : "must not be an IP";
    }
    size_t stars = 0;
    for (size_t i = 0; i < nlen; i++)
        stars += name[i] == '*';
    if (stars) {
        if (!allow_wildcard)
            return invalid;
        if (stars > 1)
            return "invalid wildcard: must have at most one wildcard";
        bool left = nlen > 2 && name[0] == '*' && name[1] == '.';
        bool right = nlen > 2 && name[nlen - 1] == '*' && name[nlen - 2] == '.';
        if (!left && !right)
            return "invalid wildcard: must be placed at leftmost or rightmost label";
    }
    /* labels of [A-Za-z0-9_-], 1..63 bytes */
    size_t label = 0;
    for (size_t i = 0; i <= nlen; i++) {
        char c = name[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63)
                return invalid;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '*'))
            return invalid;
        label++;
    }
    return NULL;
}

const char *lm__check_path(lm__b_t *b, const char *path)
{
    static const char extra[] = "-._~!$&'()*+,;=:@/%";
    for (const char *p = path; *p; p++) {
        char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr(extra, c) != NULL)
            continue;
        return lm_arena_sprintf(b->tmp,
                                "invalid path: '%s' (characters outside of the reserved list of "
                                "RFC 3986 found)",
                                path);
    }
    for (const char *p = path; (p = strchr(p, '%')) != NULL; p++) {
        bool ok = true;
        for (int i = 1; ok && i <= 2; i++) {
            char c = p[i]; /* p[1] is NUL at worst: p[2] is read only after a hex digit */
            ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        }
        if (!ok) {
            size_t n = strnlen(p, 3);
            return lm_arena_sprintf(b->tmp, "invalid url-encoded value: '%.*s'", (int)n, p);
        }
    }
    return NULL;
}

const char *lm__check_header_name(lm__b_t *b, const char *name)
{
    bool ok = name[0] != '\0';
    for (const char *p = name; ok && *p; p++) {
        char c = *p;
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '-';
    }
    if (ok)
        return NULL;
    return lm_arena_sprintf(b->tmp,
                            "bad header name '%s', allowed characters are A-Z, a-z, 0-9, '_', "
                            "and '-'",
                            name);
}

/* ---- upstreams ------------------------------------------------------- */

/* healthchecks: a shallow, table-driven type check */
typedef struct lm__hspec {
    const char *name;
    char kind; /* 'n' number, 'i' integer, 'b' boolean, 's' string, 'e' enum, 'I' list of
                  integers, 'm' map, 'o' record */
    double min, max;
    const struct lm__hspec *sub;
    const char *const *one_of;
} lm__hspec_t;

static const char *const lm__hc_types[] = { "tcp", "http", "https", "grpc", "grpcs", NULL };

static const lm__hspec_t lm__hc_active_healthy[] = {
    { "interval", 'n', 0, 65535, NULL, NULL },
    { "http_statuses", 'I', 100, 999, NULL, NULL },
    { "successes", 'i', 0, 255, NULL, NULL },
    { NULL, 0, 0, 0, NULL, NULL },
};
static const lm__hspec_t lm__hc_active_unhealthy[] = {
    { "interval", 'n', 0, 65535, NULL, NULL },
    { "http_statuses", 'I', 100, 999, NULL, NULL },
    { "tcp_failures", 'i', 0, 255, NULL, NULL },
    { "timeouts", 'i', 0, 255, NULL, NULL },
    { "http_failures", 'i', 0, 255, NULL, NULL },
    { NULL, 0, 0, 0, NULL, NULL },
};
static const lm__hspec_t lm__hc_passive_healthy[] = {
    { "http_statuses", 'I', 100, 999, NULL, NULL },
    { "successes", 'i', 0, 255, NULL, NULL },
    { NULL, 0, 0, 0, NULL, NULL },
};
static const lm__hspec_t lm__hc_passive_unhealthy[] = {
    { "http_statuses", 'I', 100, 999, NULL, NULL },
    { "tcp_failures", 'i', 0, 255, NULL, NULL },
    { "timeouts", 'i', 0, 255, NULL, NULL },
    { "http_failures", 'i', 0, 255, NULL, NULL },
    { NULL, 0, 0, 0, NULL, NULL },
};
static const lm__hspec_t lm__hc_active[] = {
    { "type", 'e', 0, 0, NULL, lm__hc_types },
    { "timeout", 'n', 0, 65535, NULL, NULL },
    { "concurrency", 'i', 1, 2147483648.0, NULL, NULL },
    { "http_path", 's', 0, 0, NULL, NULL },
    { "https_sni", 's', 0, 0, NULL, NULL },
    { "https_verify_certificate", 'b', 0, 0, NULL, NULL },
    { "headers", 'm', 0, 0, NULL, NULL },
    { "healthy", 'o', 0, 0, lm__hc_active_healthy, NULL },
    { "unhealthy", 'o', 0, 0, lm__hc_active_unhealthy, NULL },
    { NULL, 0, 0, 0, NULL, NULL },
};
static const lm__hspec_t lm__hc_passive[] = {
    { "type", 'e', 0, 0, NULL, lm__hc_types },
    { "healthy", 'o', 0, 0, lm__hc_passive_healthy, NULL },
    { "unhealthy", 'o', 0, 0, lm__hc_passive_unhealthy, NULL },
    { NULL, 0, 0, 0, NULL, NULL },
};
static const lm__hspec_t lm__hc_root[] = {
    { "active", 'o', 0, 0, lm__hc_active, NULL },
    { "passive", 'o', 0, 0, lm__hc_passive, NULL },
    { "threshold", 'n', 0, 100, NULL, NULL },
    { NULL, 0, 0, 0, NULL, NULL },
};

static void lm__check_record(lm__b_t *b, const lm__ent_t *e, const char *field, const cJSON *obj,
                             const lm__hspec_t *spec)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        char *f = lm_arena_sprintf(b->tmp, "%s.%s", field, it->string);
        const lm__hspec_t *s = spec;
        while (s->name && strcmp(s->name, it->string) != 0)
            s++;
        if (s->name == NULL) {
            lm__ferr(b, e, f, "unknown field");
            continue;
        }
        if (cJSON_IsNull(it))
            continue;
        switch (s->kind) {
        case 'n':
        case 'i':
            if (!cJSON_IsNumber(it)) {
                lm__ferr(b, e, f, s->kind == 'i' ? "expected an integer" : "expected a number");
            } else if (s->kind == 'i' && it->valuedouble != floor(it->valuedouble)) {
                lm__ferr(b, e, f, "expected an integer");
            } else if (!(it->valuedouble >= s->min && it->valuedouble <= s->max)) {
                lm__ferr(b, e, f, "value should be between %.0f and %.0f", s->min, s->max);
            }
            break;
        case 'b':
            if (!cJSON_IsBool(it))
                lm__ferr(b, e, f, "expected a boolean");
            break;
        case 's':
            if (!cJSON_IsString(it))
                lm__ferr(b, e, f, "expected a string");
            break;
        case 'e': {
            bool ok = false;
            for (size_t i = 0; cJSON_IsString(it) && s->one_of[i]; i++)
                ok = ok || strcmp(s->one_of[i], it->valuestring) == 0;
            if (!ok)
                lm__ferr(b, e, f, "expected one of: tcp, http, https, grpc, grpcs");
            break;
        }
        case 'I': {
            if (!cJSON_IsArray(it)) {
                lm__ferr(b, e, f, "expected an array");
                break;
            }
            size_t i = 0;
            const cJSON *v;
            cJSON_ArrayForEach(v, it) {
                char *vf = lm_arena_sprintf(b->tmp, "%s[%zu]", f, i++);
                if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
                    lm__ferr(b, e, vf, "expected an integer");
                else if (v->valuedouble < s->min || v->valuedouble > s->max)
                    lm__ferr(b, e, vf, "value should be between %.0f and %.0f", s->min, s->max);
            }
            break;
        }
        case 'm':
            if (!cJSON_IsObject(it))
                lm__ferr(b, e, f, "expected a map");
            break;
        case 'o':
            if (!cJSON_IsObject(it))
                lm__ferr(b, e, f, "expected a record");
            else
                lm__check_record(b, e, f, it, s->sub);
            break;
        }
    }
}

static const char *const lm__upstream_fields[] = {
    "id", "name", "algorithm", "hash_on", "hash_fallback", "hash_on_header",
    "hash_fallback_header", "hash_on_cookie", "hash_on_cookie_path", "hash_on_query_arg",
    "hash_fallback_query_arg", "hash_on_uri_capture", "hash_fallback_uri_capture", "slots",
    "healthchecks", "tags", "host_header", "client_certificate", "use_srv_name", "targets", NULL
};

static const char *const lm__hash_on[] = { "none", "consumer", "ip", "header", "cookie",
                                           "path", "query_arg", "uri_capture", NULL };

void lm__build_upstream(lm__b_t *b, const cJSON *item, const char *path, void *parent)
{
    lm__ent_t e;
    lm__ent_init(b, &e, "upstream", "upstreams", path, item, "name");
    lm__check_fields(b, &e, lm__upstream_fields);
    lm_upstream_t *u = lm_arena_calloc(b->a, sizeof(*u));
    u->index = b->upstreams.n;
    lm__vec_push(b, &b->upstreams, u);
    u->id = lm__get_id(b, &e);
    u->name = lm__get_str(b, &e, "name", true);
    if (u->name) {
        const char *err = lm__check_hostname(b, u->name, true, false, true);
        if (err || strchr(u->name, ':') != NULL || strchr(u->name, '*') != NULL)
            lm__ferr(b, &e, "name", "Invalid name ('%s'); must be a valid hostname", u->name);
        else if (lm__is_ip(u->name))
            lm__ferr(b, &e, "name", "Invalid name ('%s'); no ip addresses allowed", u->name);
    }
    lm__check_unique(b, &e, &b->upstream_by_id, "id", u->id, u);
    lm__check_unique(b, &e, &b->upstream_by_name, "name", u->name, u);
    static const char *const algorithms[] = { "consistent-hashing", "least-connections",
                                              "round-robin", "latency", NULL };
    u->algorithm = lm__get_enum(b, &e, "algorithm", algorithms, "round-robin");
    u->hash_on = lm__get_enum(b, &e, "hash_on", lm__hash_on, "none");
    u->hash_fallback = lm__get_enum(b, &e, "hash_fallback", lm__hash_on, "none");
    u->hash_on_header = lm__get_str(b, &e, "hash_on_header", false);
    u->hash_fallback_header = lm__get_str(b, &e, "hash_fallback_header", false);
    u->hash_on_cookie = lm__get_str(b, &e, "hash_on_cookie", false);
    u->hash_on_cookie_path = lm__get_str(b, &e, "hash_on_cookie_path", false);
    u->hash_on_query_arg = lm__get_str(b, &e, "hash_on_query_arg", false);
    u->hash_fallback_query_arg = lm__get_str(b, &e, "hash_fallback_query_arg", false);
    u->hash_on_uri_capture = lm__get_str(b, &e, "hash_on_uri_capture", false);
    u->hash_fallback_uri_capture = lm__get_str(b, &e, "hash_fallback_uri_capture", false);
    u->host_header = lm__get_str(b, &e, "host_header", false);
    lm__get_bool(b, &e, "use_srv_name", false, &u->use_srv_name);
    long long slots;
    lm__get_int(b, &e, "slots", 10000, 10, 65536, &slots);
    u->slots = (int)slots;
    lm__get_tags(b, &e, &u->tags, &u->num_tags);

    if (u->hash_on_header && lm__check_header_name(b, u->hash_on_header))
        lm__ferr(b, &e, "hash_on_header", "%s", lm__check_header_name(b, u->hash_on_header));
    if (u->hash_fallback_header && lm__check_header_name(b, u->hash_fallback_header))
        lm__ferr(b, &e, "hash_fallback_header", "%s",
                 lm__check_header_name(b, u->hash_fallback_header));
    if (u->hash_on_cookie && lm__check_header_name(b, u->hash_on_cookie))
        lm__ferr(b, &e, "hash_on_cookie",
                 "bad cookie name '%s', allowed characters are A-Z, a-z, 0-9, '_', and '-'",
                 u->hash_on_cookie);
    if (u->hash_on_cookie_path == NULL)
        u->hash_on_cookie_path = lm_arena_strdup(b->a, "/");
    else if (u->hash_on_cookie_path[0] != '/')
        lm__ferr(b, &e, "hash_on_cookie_path", "should start with: /");
    if (u->host_header) {
        const char *err = lm__check_hostname(b, u->host_header, false, false, true);
        if (err)
            lm__ferr(b, &e, "host_header", "%s", err);
    }
    /* Kong's conditionals between hash_on / hash_fallback and their arguments */
    static const struct {
        const char *value, *field_on, *field_fallback;
    } args[] = { { "header", "hash_on_header", "hash_fallback_header" },
                 { "cookie", "hash_on_cookie", "hash_on_cookie" },
                 { "query_arg", "hash_on_query_arg", "hash_fallback_query_arg" },
                 { "uri_capture", "hash_on_uri_capture", "hash_fallback_uri_capture" } };
    for (size_t i = 0; i < LM_ARRAY_SIZE(args); i++) {
        bool on = strcmp(u->hash_on, args[i].value) == 0;
        bool fb = strcmp(u->hash_fallback, args[i].value) == 0;
        if (on && !lm__fget(item, args[i].field_on))
            lm__ferr(b, &e, args[i].field_on, "required field missing");
        if (fb && !lm__fget(item, args[i].field_fallback) &&
            !(on && strcmp(args[i].field_on, args[i].field_fallback) == 0))
            lm__ferr(b, &e, args[i].field_fallback, "required field missing");
    }
    if ((strcmp(u->hash_on, "none") == 0 || strcmp(u->hash_on, "cookie") == 0) &&
        strcmp(u->hash_fallback, "none") != 0)
        lm__ferr(b, &e, "hash_fallback", "expected one of: none");

    const cJSON *hc = lm__fget(item, "healthchecks");
    if (hc) {
        if (!cJSON_IsObject(hc))
            lm__ferr(b, &e, "healthchecks", "expected a record");
        else
            lm__check_record(b, &e, "healthchecks", hc, lm__hc_root);
        u->healthchecks = (cJSON *)hc;
    }
    const cJSON *cc = lm__fget(item, "client_certificate");
    if (cc)
        lm__add_pending(b, &b->upstream_refs, &e, cc, u, NULL);
    lm__each(b, &e, item, "targets", lm__build_target, u);
}

/* ---- targets --------------------------------------------------------- */

static const char *const lm__target_fields[] = { "id", "target", "weight", "tags", "upstream",
                                                 NULL };

/* "host[:port]", "[v6][:port]" or a bare IPv6 address */
static bool lm__parse_target(lm__b_t *b, const char *s, lm_target_t *t)
{
    const char *host = s, *port = NULL;
    size_t hlen = strlen(s);
    bool v6 = false;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL)
            return false;
        host = s + 1;
        hlen = (size_t)(close - host);
        if (close[1] == ':')
            port = close + 2;
        else if (close[1] != '\0')
            return false;
        v6 = true;
    } else {
        const char *colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':')) {
            v6 = true;
        } else if (colon) {
            hlen = (size_t)(colon - s);
            port = colon + 1;
        }
    }
    char *h = lm_arena_strndup(b->a, host, hlen);
    if (v6) {
        unsigned char buf[16];
        if (inet_pton(AF_INET6, h, buf) != 1)
            return false;
    } else if (hlen == 0 || lm__check_hostname(b, h, false, false, true) != NULL) {
        return false;
    }
    t->port = 8000;
    if (port) {
        if (!lm__port_ok(port, strlen(port)))
            return false;
        t->port = atoi(port);
    }
    t->host = h;
    t->target = lm_arena_sprintf(b->a, v6 ? "[%s]:%d" : "%s:%d", h, t->port);
    return true;
}

void lm__build_target(lm__b_t *b, const cJSON *item, const char *path, void *parent)
{
    lm_upstream_t *up = parent;
    lm__ent_t e;
    lm__ent_init(b, &e, "target", "targets", path, item, "target");
    lm__check_fields(b, &e, lm__target_fields);
    lm_target_t *t = lm_arena_calloc(b->tmp, sizeof(*t));
    char *id = lm__get_id(b, &e);
    lm__check_unique(b, &e, &b->target_by_id, "id", id, t);
    char *target = lm__get_str(b, &e, "target", true);
    if (target && !lm__parse_target(b, target, t)) {
        lm__ferr(b, &e, "target", "Invalid target ('%s'); not a valid hostname or ip address",
                 target);
        t->target = NULL;
    }
    long long w;
    lm__get_int(b, &e, "weight", 100, 0, 65535, &w);
    t->weight = (int)w;
    lm__get_tags(b, &e, &t->tags, &t->num_tags);
    const cJSON *ref = lm__fget(item, "upstream");
    if (up) {
        if (ref)
            lm__ferr(b, &e, "upstream", "value must be null");
        ref = NULL;
    } else if (ref == NULL) {
        lm__ferr(b, &e, "upstream", "required field missing");
    }
    lm__add_pending(b, &b->target_refs, &e, ref, t, up);
}

/* ---- certificates ---------------------------------------------------- */

static int lm__no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return 0; /* encrypted keys are refused rather than prompted for */
}

static const char *lm__ssl_error(lm__b_t *b, const char *fallback)
{
    unsigned long code = ERR_peek_last_error();
    ERR_clear_error();
    if (code == 0)
        return fallback;
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    return lm_arena_strdup(b->tmp, buf);
}

static X509 *lm__pem_cert(lm__b_t *b, const char *pem, const char **err)
{
    ERR_clear_error();
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = bio ? PEM_read_bio_X509(bio, NULL, lm__no_passphrase, NULL) : NULL;
    BIO_free(bio);
    if (x == NULL)
        *err = lm__ssl_error(b, "no PEM certificate found");
    ERR_clear_error();
    return x;
}

static EVP_PKEY *lm__pem_key(lm__b_t *b, const char *pem, const char **err)
{
    ERR_clear_error();
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = bio ? PEM_read_bio_PrivateKey(bio, NULL, lm__no_passphrase, NULL) : NULL;
    BIO_free(bio);
    if (k == NULL)
        *err = lm__ssl_error(b, "no PEM private key found");
    ERR_clear_error();
    return k;
}

/*
 * Pairs already found valid, by SHA-256 of cert and key: parsing a private key
 * costs about a millisecond with OpenSSL 3, and a controller revalidates the
 * same certificates on every change. A direct-mapped table (a collision
 * replaces the older entry); only successes are kept, errors are re-derived
 * with their messages. Shared by every thread that builds a configuration.
 */
#define LM__PAIR_CACHE 4096
static struct {
    unsigned char digest[32];
    int type; /* 0: empty */
} lm__pair_cache[LM__PAIR_CACHE];
static pthread_mutex_t lm__pair_lock = PTHREAD_MUTEX_INITIALIZER;

static void lm__pair_digest(const char *cert, const char *key, unsigned char out[32])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n = 0;
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, cert, strlen(cert) + 1) != 1 || EVP_DigestUpdate(ctx, key, strlen(key)) != 1 ||
        EVP_DigestFinal_ex(ctx, out, &n) != 1)
        memset(out, 0, 32);
    EVP_MD_CTX_free(ctx);
}

static int lm__pair_cached(const unsigned char d[32])
{
    uint32_t i;
    memcpy(&i, d, sizeof(i));
    pthread_mutex_lock(&lm__pair_lock);
    int type = memcmp(lm__pair_cache[i % LM__PAIR_CACHE].digest, d, 32) == 0 ? lm__pair_cache[i % LM__PAIR_CACHE].type : 0;
    pthread_mutex_unlock(&lm__pair_lock);
    return type;
}

static void lm__pair_remember(const unsigned char d[32], int type)
{
    uint32_t i;
    memcpy(&i, d, sizeof(i));
    pthread_mutex_lock(&lm__pair_lock);
    memcpy(lm__pair_cache[i % LM__PAIR_CACHE].digest, d, 32);
    lm__pair_cache[i % LM__PAIR_CACHE].type = type;
    pthread_mutex_unlock(&lm__pair_lock);
}

/* cert + key pair: parse both, check they match; returns the certificate's key type */
static int lm__cert_pair(lm__b_t *b, const lm__ent_t *e, const char *cert_f, const char *cert,
                         const char *key_f, const char *key, const char *mismatch)
{
    const char *err = NULL;
    int type = 0;
    unsigned char digest[32];
    if (cert && key) {
        lm__pair_digest(cert, key, digest);
        if ((type = lm__pair_cached(digest)) != 0)
            return type;
    }
    size_t errs_before = b->errs->count;
    X509 *x = cert ? lm__pem_cert(b, cert, &err) : NULL;
    if (cert && x == NULL)
        lm__ferr(b, e, cert_f, "invalid certificate: %s", err);
    EVP_PKEY *k = key ? lm__pem_key(b, key, &err) : NULL;
    if (key && k == NULL)
        lm__ferr(b, e, key_f, "invalid key: %s", err);
    if (x && k) {
        if (X509_check_private_key(x, k) != 1)
            lm__ferr(b, e, NULL, "%s", mismatch);
        ERR_clear_error();
    }
    if (x) {
        EVP_PKEY *pub = X509_get0_pubkey(x);
        type = pub ? EVP_PKEY_base_id(pub) : 0;
    }
    X509_free(x);
    EVP_PKEY_free(k);
    if (cert && key && type != 0 && b->errs->count == errs_before)
        lm__pair_remember(digest, type);
    return type;
}

static void lm__build_nested_sni(lm__b_t *b, const cJSON *item, const char *path, void *parent);

static const char *const lm__certificate_fields[] = { "id", "cert", "key", "cert_alt", "key_alt",
                                                      "tags", "snis", NULL };

void lm__build_certificate(lm__b_t *b, const cJSON *item, const char *path, void *parent)
{
    lm__ent_t e;
    lm__ent_init(b, &e, "certificate", "certificates", path, item, "id");
    lm__check_fields(b, &e, lm__certificate_fields);
    lm_certificate_t *c = lm_arena_calloc(b->a, sizeof(*c));
    c->index = b->certificates.n;
    lm__vec_push(b, &b->certificates, c);
    c->id = lm__get_id(b, &e);
    lm__check_unique(b, &e, &b->cert_by_id, "id", c->id, c);
    c->cert = lm__get_str(b, &e, "cert", true);
    c->key = lm__get_str(b, &e, "key", true);
    c->cert_alt = lm__get_str(b, &e, "cert_alt", false);
    c->key_alt = lm__get_str(b, &e, "key_alt", false);
    lm__get_tags(b, &e, &c->tags, &c->num_tags);
    int t1 = lm__cert_pair(b, &e, "cert", c->cert, "key", c->key, "certificate does not match key");
    if ((lm__fget(item, "cert_alt") == NULL) != (lm__fget(item, "key_alt") == NULL)) {
        lm__ferr(b, &e, NULL, "all or none of these fields must be set: 'cert_alt', 'key_alt'");
    } else if (c->cert_alt && c->key_alt) {
        int t2 = lm__cert_pair(b, &e, "cert_alt", c->cert_alt, "key_alt", c->key_alt,
                               "alternative certificate does not match key");
        if (t1 && t2 && t1 == t2)
            lm__ferr(b, &e, NULL,
                     "certificate and alternative certificate need to have different type (e.g. "
                     "RSA and ECDSA), the provided certificates were both of the same type");
    }
    const cJSON *snis = lm__fget(item, "snis");
    if (snis == NULL)
        return;
    if (!cJSON_IsArray(snis)) {
        lm__ferr(b, &e, "snis", "expected an array");
        return;
    }
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, snis) {
        char *p = lm_arena_sprintf(b->tmp, "%s.snis[%zu]", path, i++);
        if (cJSON_IsString(it) || cJSON_IsObject(it))
            lm__build_nested_sni(b, it, p, c);
        else
            lm__ferr(b, &e, lm_arena_sprintf(b->tmp, "snis[%zu]", i - 1),
                     "expected a string or a record");
    }
}

static const char *const lm__sni_fields[] = { "id", "name", "certificate", "tags", NULL };

static void lm__sni(lm__b_t *b, const cJSON *item, const char *path, lm_certificate_t *cert)
{
    lm__ent_t e;
    char *name = NULL;
    if (cJSON_IsString(item)) {
        /* shorthand: a bare name */
        memset(&e, 0, sizeof(e));
        e.type = "sni";
        e.plural = "snis";
        e.path = lm_arena_strdup(b->tmp, path);
        e.name = item->valuestring;
        e.obj = item;
        if (item->valuestring[0] == '\0')
            lm__ferr(b, &e, NULL, "length must be at least 1");
        else
            name = lm_arena_strdup(b->a, item->valuestring);
    } else {
        lm__ent_init(b, &e, "sni", "snis", path, item, "name");
        lm__check_fields(b, &e, lm__sni_fields);
        char *id = lm__get_id(b, &e);
        lm__check_unique(b, &e, &b->sni_by_id, "id", id, (void *)item);
        name = lm__get_str(b, &e, "name", true);
        char **tags;
        size_t nt;
        lm__get_tags(b, &e, &tags, &nt);
    }
    const cJSON *ref = cJSON_IsObject(item) ? lm__fget(item, "certificate") : NULL;
    if (cert) {
        if (ref)
            lm__ferr(b, &e, "certificate", "value must be null");
        ref = NULL;
    } else if (ref == NULL) {
        lm__ferr(b, &e, "certificate", "required field missing");
    }
    if (name) {
        for (char *c = name; *c; c++)
            *c = lm_tolower(*c);
        /* "*" alone: the certificate for any name no other SNI matches (Kong) */
        const char *err = strcmp(name, "*") == 0 ? NULL : lm__check_hostname(b, name, false, true, false);
        if (err) {
            lm__ferr(b, &e, cJSON_IsString(item) ? NULL : "name", "%s", err);
            name = NULL;
        }
    }
    lm__check_unique(b, &e, &b->sni_by_name, "name", name, (void *)item);
    lm__add_pending(b, &b->sni_refs, &e, ref, name, cert);
}

static void lm__build_nested_sni(lm__b_t *b, const cJSON *item, const char *path, void *parent)
{
    lm__sni(b, item, path, parent);
}

void lm__build_sni(lm__b_t *b, const cJSON *item, const char *path, void *parent)
{
    lm__sni(b, item, path, NULL);
}

static const char *const lm__ca_fields[] = { "id", "cert", "cert_digest", "tags", NULL };

void lm__build_ca_certificate(lm__b_t *b, const cJSON *item, const char *path, void *parent)
{
    lm__ent_t e;
    lm__ent_init(b, &e, "ca_certificate", "ca_certificates", path, item, "id");
    lm__check_fields(b, &e, lm__ca_fields);
    lm_ca_certificate_t *c = lm_arena_calloc(b->a, sizeof(*c));
    c->index = b->ca_certificates.n;
    lm__vec_push(b, &b->ca_certificates, c);
    c->id = lm__get_id(b, &e);
    lm__check_unique(b, &e, &b->ca_by_id, "id", c->id, c);
    c->cert = lm__get_str(b, &e, "cert", true);
    c->cert_digest = lm__get_str(b, &e, "cert_digest", false);
    lm__get_tags(b, &e, &c->tags, &c->num_tags);
    if (c->cert == NULL)
        return;
    const char *err = NULL;
    X509 *x = lm__pem_cert(b, c->cert, &err);
    if (x == NULL) {
        lm__ferr(b, &e, "cert", "invalid certificate: %s", err);
        return;
    }
    if (X509_check_ca(x) == 0)
        lm__ferr(b, &e, "cert",
                 "certificate does not appear to be a CA because it is missing the \"CA\" basic "
                 "constraint");
    else if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
        lm__ferr(b, &e, "cert", "certificate expired, \"Not After\" time is in the past");
    if (c->cert_digest == NULL) {
        unsigned char *der = NULL;
        int n = i2d_X509(x, &der);
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (n > 0 && EVP_Digest(der, (size_t)n, md, &mdlen, EVP_sha256(), NULL) == 1) {
            c->cert_digest = lm_arena_alloc(b->a, mdlen * 2 + 1);
            for (unsigned int i = 0; i < mdlen; i++)
                snprintf(c->cert_digest + 2 * i, 3, "%02x", md[i]);
        }
        OPENSSL_free(der);
    }
    X509_free(x);
    ERR_clear_error();
}

/* ---- references ------------------------------------------------------ */

void lm__resolve_entities(lm__b_t *b)
{
    /* targets: find the upstream, refuse duplicates, then fill the arrays */
    lm__map_t seen = { 0 };
    for (size_t i = 0; i < b->target_refs.n; i++) {
        lm__pending_t *p = b->target_refs.v[i];
        lm_target_t *t = p->owner;
        lm_upstream_t *up = p->extra;
        if (up == NULL && p->ref)
            up = lm__resolve(b, &p->ent, "upstream", p->ref, &b->upstream_by_name,
                             &b->upstream_by_id, "upstreams");
        p->extra = up;
        if (up == NULL || t->target == NULL)
            continue;
        up->num_targets++;
        char *key = lm_arena_sprintf(b->tmp, "%zu|%s", up->index, t->target);
        if (lm__map_put(b, &seen, key, t))
            lm__ferr(b, &p->ent, NULL,
                     "uniqueness violation: 'targets' entity with target set to '%s' already "
                     "declared for upstream '%s'",
                     t->target, up->name ? up->name : "?");
    }
    for (size_t i = 0; i < b->upstreams.n; i++) {
        lm_upstream_t *u = b->upstreams.v[i];
        u->targets = lm_arena_calloc(b->a, (u->num_targets ? u->num_targets : 1) * sizeof(lm_target_t));
        u->num_targets = 0;
    }
    for (size_t i = 0; i < b->target_refs.n; i++) {
        lm__pending_t *p = b->target_refs.v[i];
        lm_target_t *t = p->owner;
        lm_upstream_t *up = p->extra;
        if (up && t->target)
            up->targets[up->num_targets++] = *t;
    }

    /* snis: attach names to their certificate */
    for (size_t i = 0; i < b->sni_refs.n; i++) {
        lm__pending_t *p = b->sni_refs.v[i];
        lm_certificate_t *c = p->extra;
        if (c == NULL && p->ref)
            c = lm__resolve(b, &p->ent, "certificate", p->ref, NULL, &b->cert_by_id,
                            "certificates");
        p->extra = c;
        if (c && p->owner)
            c->num_snis++;
    }
    for (size_t i = 0; i < b->certificates.n; i++) {
        lm_certificate_t *c = b->certificates.v[i];
        c->snis = lm_arena_calloc(b->a, (c->num_snis ? c->num_snis : 1) * sizeof(char *));
        c->num_snis = 0;
    }
    for (size_t i = 0; i < b->sni_refs.n; i++) {
        lm__pending_t *p = b->sni_refs.v[i];
        lm_certificate_t *c = p->extra;
        if (c && p->owner)
            c->snis[c->num_snis++] = p->owner;
    }

    /* services: client certificate and CA certificates */
    for (size_t i = 0; i < b->service_refs.n; i++) {
        lm__pending_t *p = b->service_refs.v[i];
        lm_service_t *s = p->owner;
        if (p->ref) {
            lm_certificate_t *c = lm__resolve(b, &p->ent, "client_certificate", p->ref, NULL,
                                              &b->cert_by_id, "certificates");
            if (c && c->id)
                s->client_certificate = c->id;
            continue;
        }
        for (size_t j = 0; j < s->num_ca_certificates; j++) {
            if (lm__is_uuid(s->ca_certificates[j]) &&
                lm__map_get(&b->ca_by_id, s->ca_certificates[j]) == NULL) {
                char field[64];
                snprintf(field, sizeof(field), "ca_certificates[%zu]", j);
                lm__ferr(b, &p->ent, field,
                         "invalid reference 'ca_certificates: %s' (no such entry in "
                         "'ca_certificates')",
                         s->ca_certificates[j]);
            }
        }
    }
    for (size_t i = 0; i < b->upstream_refs.n; i++) {
        lm__pending_t *p = b->upstream_refs.v[i];
        lm_upstream_t *u = p->owner;
        lm_certificate_t *c = lm__resolve(b, &p->ent, "client_certificate", p->ref, NULL,
                                          &b->cert_by_id, "certificates");
        if (c && c->id)
            u->client_certificate = c->id;
    }
}

/*
 * config_build.c - validates a declarative document and builds lm_config_t:
 * the document's top level, services, routes, plugins, consumers and their
 * credentials (helpers in config_fields.c). Upstreams, targets and
 * certificates live in config_entities.c. See lm_config.h.
 *
 * Every error is reported (validation goes on after one), with its path,
 * entity type and name, and Kong's wording where Kong has one:
 * "required field missing", "expected a string", "unknown field",
 * "invalid reference 'service: x' (no such entry in 'services')",
 * "uniqueness violation: 'services' entity with name set to 'x' already declared".
 */
#include "config_internal.h"

#include <openssl/evp.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- services -------------------------------------------------------- */

static void lm__build_route(lm__b_t *b, const cJSON *item, const char *path, void *parent);
static void lm__build_plugin_service(lm__b_t *b, const cJSON *item, const char *path, void *p);
static void lm__build_plugin_route(lm__b_t *b, const cJSON *item, const char *path, void *p);
static void lm__build_plugin_consumer(lm__b_t *b, const cJSON *item, const char *path, void *p);

static int lm__default_port(const char *protocol)
{
    return (strcmp(protocol, "https") == 0 || strcmp(protocol, "grpcs") == 0 ||
            strcmp(protocol, "wss") == 0 || strcmp(protocol, "tls") == 0)
               ? 443
               : 80;
}

/* the `url` shorthand: scheme://[userinfo@]host[:port][/path][?query][#fragment] */
static bool lm__service_url(lm__b_t *b, const lm__ent_t *e, const char *url, lm_service_t *s)
{
    const char *sep = strstr(url, "://");
    if (sep == NULL || sep == url) {
        lm__ferr(b, e, "url", "missing scheme in url");
        return false;
    }
    char *scheme = lm_arena_strndup(b->a, url, (size_t)(sep - url));
    for (char *c = scheme; *c; c++)
        *c = lm_tolower(*c);
    if (!lm__in(scheme, lm__protocols)) {
        lm__ferr(b, e, "url", "invalid scheme '%s' in url; expected one of: %s", scheme,
                 lm__one_of_list(b, lm__protocols));
        return false;
    }
    const char *auth = sep + 3;
    size_t alen = strcspn(auth, "/?#");
    const char *at = memchr(auth, '@', alen);
    if (at) {
        alen -= (size_t)(at + 1 - auth);
        auth = at + 1;
    }
    const char *host = auth, *port = NULL;
    size_t hlen = alen;
    if (alen && auth[0] == '[') {
        const char *close = memchr(auth, ']', alen);
        if (close == NULL) {
            lm__ferr(b, e, "url", "could not parse url");
            return false;
        }
        host = auth + 1;
        hlen = (size_t)(close - host);
        if (close + 1 < auth + alen) {
            if (close[1] != ':') {
                lm__ferr(b, e, "url", "could not parse url");
                return false;
            }
            port = close + 2;
        }
    } else {
        const char *colon = memchr(auth, ':', alen);
        if (colon) {
            hlen = (size_t)(colon - auth);
            port = colon + 1;
        }
    }
    if (hlen == 0) {
        lm__ferr(b, e, "url", "missing host in url");
        return false;
    }
    s->protocol = scheme;
    s->host = lm_arena_strndup(b->a, host, hlen);
    s->port = lm__default_port(scheme);
    if (port) {
        size_t plen = (size_t)(auth + alen - port);
        long v = 0;
        bool ok = plen > 0 && plen <= 5;
        for (size_t i = 0; ok && i < plen; i++) {
            ok = port[i] >= '0' && port[i] <= '9';
            v = v * 10 + (port[i] - '0');
        }
        if (!ok || v > 65535) {
            lm__ferr(b, e, "url", "invalid port in url");
            return false;
        }
        s->port = (int)v;
    }
    const char *p = auth + alen;
    if (*p == '/') {
        size_t plen = strcspn(p, "?#");
        s->path = lm_arena_strndup(b->a, p, plen);
    }
    return true;
}

static const char *const lm__service_fields[] = {
    "id", "name", "retries", "protocol", "host", "port", "path", "connect_timeout",
    "write_timeout", "read_timeout", "tags", "client_certificate", "tls_verify",
    "tls_verify_depth", "ca_certificates", "enabled", "url", "routes", "plugins", NULL
};

static void lm__build_service(lm__b_t *b, const cJSON *item, const char *path, void *parent)
{
    lm__ent_t e;
    lm__ent_init(b, &e, "service", "services", path, item, "name");
    lm__check_fields(b, &e, lm__service_fields);
    lm_service_t *s = lm_arena_calloc(b->a, sizeof(*s));
    s->index = b->services.n;
    lm__vec_push(b, &b->services, s);
    s->id = lm__get_id(b, &e);
    s->name = lm__get_name(b, &e, "name", false);
    lm__check_unique(b, &e, &b->service_by_id, "id", s->id, s);
    lm__check_unique(b, &e, &b->service_by_name, "name", s->name, s);

    const cJSON *url = lm__fget(item, "url");
    bool from_url = false;
    if (url != NULL) {
        if (!cJSON_IsString(url))
            lm__ferr(b, &e, "url", "expected a string");
        else
            from_url = lm__service_url(b, &e, url->valuestring, s);
    }
    if (!from_url) {
        s->protocol = lm__get_enum(b, &e, "protocol", lm__protocols, "http");
        s->host = lm__get_str(b, &e, "host", url == NULL);
        long long port;
        lm__get_int(b, &e, "port", lm__default_port(s->protocol), 0, 65535, &port);
        s->port = (int)port;
        s->path = lm__get_str(b, &e, "path", false);
    }
    if (s->host) {
        const char *err = lm__check_hostname(b, s->host, false, false, true);
        if (err)
            lm__ferr(b, &e, from_url ? "url" : "host", "%s", err);
    }
    if (s->path) {
        const char *field = from_url ? "url" : "path";
        static const char *const no_path[] = { "grpc", "grpcs", "tcp", "tls", "tls_passthrough",
                                               "udp", NULL };
        if (s->path[0] != '/') {
            lm__ferr(b, &e, field, "should start with: /");
        } else if (strstr(s->path, "//")) {
            lm__ferr(b, &e, field, "must not have empty segments");
        } else {
            const char *err = lm__check_path(b, s->path);
            if (err)
                lm__ferr(b, &e, field, "%s", err);
        }
        if (lm__in(s->protocol, no_path))
            lm__ferr(b, &e, field, "value must be null");
    }
    long long v;
    lm__get_int(b, &e, "retries", 5, 0, 32767, &v);
    s->retries = (int)v;
    lm__get_int(b, &e, "connect_timeout", 60000, 1, 2147483646, &v);
    s->connect_timeout = (int)v;
    lm__get_int(b, &e, "write_timeout", 60000, 1, 2147483646, &v);
    s->write_timeout = (int)v;
    lm__get_int(b, &e, "read_timeout", 60000, 1, 2147483646, &v);
    s->read_timeout = (int)v;
    lm__get_bool(b, &e, "enabled", true, &s->enabled);
    s->tls_verify_set = lm__fget(item, "tls_verify") != NULL;
    lm__get_bool(b, &e, "tls_verify", false, &s->tls_verify);
    lm__get_int(b, &e, "tls_verify_depth", -1, 0, 64, &v);
    s->tls_verify_depth = (int)v;
    const cJSON *cc = lm__fget(item, "client_certificate");
    if (cc)
        lm__add_pending(b, &b->service_refs, &e, cc, s, NULL);
    s->ca_certificates = lm__get_str_array(b, &e, "ca_certificates", &s->num_ca_certificates);
    for (size_t i = 0; i < s->num_ca_certificates; i++) {
        if (!lm__is_uuid(s->ca_certificates[i])) {
            char field[64];
            snprintf(field, sizeof(field), "ca_certificates[%zu]", i);
            lm__ferr(b, &e, field, "expected a valid UUID");
        }
    }
    if (s->num_ca_certificates)
        lm__add_pending(b, &b->service_refs, &e, NULL, s, NULL);
    lm__get_tags(b, &e, &s->tags, &s->num_tags);

    lm__each(b, &e, item, "routes", lm__build_route, s);
    lm__each(b, &e, item, "plugins", lm__build_plugin_service, s);
}

/* ---- routes ---------------------------------------------------------- */

static const char *const lm__route_fields[] = {
    "id", "name", "protocols", "methods", "hosts", "paths", "headers",
    "https_redirect_status_code", "regex_priority", "strip_path", "path_handling",
    "preserve_host", "request_buffering", "response_buffering", "snis", "sources",
    "destinations", "tags", "service", "plugins", NULL
};

/* compiles a regex like the router will; NULL or a message */
static char *lm__regex_error(lm__b_t *b, const char *re)
{
    int code;
    PCRE2_SIZE off;
    pcre2_code *c = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, 0, &code, &off, NULL);
    if (c != NULL) {
        pcre2_code_free(c);
        return NULL;
    }
    PCRE2_UCHAR buf[256];
    if (pcre2_get_error_message(code, buf, sizeof(buf)) < 0)
        snprintf((char *)buf, sizeof(buf), "error %d", code);
    return lm_arena_sprintf(b->tmp, "%s at offset %zu", (const char *)buf, (size_t)off);
}

/* Kong 2.x / the 3.0 migration: a path is a regex when it holds a byte
 * outside [A-Za-z0-9._~/%-] */
static bool lm__looks_like_regex(const char *p)
{
    for (; *p; p++) {
        char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '.' || c == '-' || c == '_' || c == '~' || c == '/' || c == '%')
            continue;
        return true;
    }
    return false;
}

static void lm__route_paths(lm__b_t *b, const lm__ent_t *e, lm_route_t *r)
{
    size_t n;
    char **paths = lm__get_str_array(b, e, "paths", &n);
    if (paths == NULL)
        return;
    r->paths = lm_arena_calloc(b->a, (n ? n : 1) * sizeof(char *));
    r->path_is_regex = lm_arena_calloc(b->a, (n ? n : 1) * sizeof(bool));
    /* report indexes as in the document: find each kept string's position */
    const cJSON *arr = lm__fget(e->obj, "paths");
    size_t i = 0, k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        char field[64];
        snprintf(field, sizeof(field), "paths[%zu]", i++);
        if (!cJSON_IsString(it) || it->valuestring[0] == '\0')
            continue; /* already reported */
        const char *p = it->valuestring;
        bool regex;
        if (b->v3) {
            if (!(p[0] == '/' || (p[0] == '~' && p[1] == '/'))) {
                lm__ferr(b, e, field, "should start with: / (fixed path) or ~/ (regex path)");
                continue;
            }
            regex = p[0] == '~';
            if (regex)
                p++;
        } else {
            if (p[0] != '/') {
                lm__ferr(b, e, field, "should start with: /");
                continue;
            }
            regex = lm__looks_like_regex(p);
        }
        if (strstr(p, "//")) {
            lm__ferr(b, e, field, "must not have empty segments");
            continue;
        }
        if (regex) {
            char *err = lm__regex_error(b, p);
            if (err) {
                lm__ferr(b, e, field,
                         "invalid regex: '%s' (PCRE returned: pcre2_compile() failed: %s in "
                         "\"%s\")",
                         p, err, p);
                continue;
            }
        } else {
            const char *err = lm__check_path(b, p);
            if (err) {
                lm__ferr(b, e, field, "%s", err);
                continue;
            }
        }
        r->paths[k] = lm_arena_strdup(b->a, p);
        r->path_is_regex[k] = regex;
        k++;
    }
    r->num_paths = k;
}

static void lm__route_hosts(lm__b_t *b, const lm__ent_t *e, lm_route_t *r)
{
    r->hosts = lm__get_str_array(b, e, "hosts", &r->num_hosts);
    size_t k = 0;
    for (size_t i = 0; i < r->num_hosts; i++) {
        char *h = r->hosts[i];
        for (char *c = h; *c; c++)
            *c = lm_tolower(*c);
        const char *err = lm__check_hostname(b, h, true, true, true);
        if (err) {
            char field[64];
            snprintf(field, sizeof(field), "hosts[%zu]", i);
            lm__ferr(b, e, field, "%s", err);
            continue;
        }
        r->hosts[k++] = h;
    }
    r->num_hosts = k;
}

static void lm__route_methods(lm__b_t *b, const lm__ent_t *e, lm_route_t *r)
{
    r->methods = lm__get_str_array(b, e, "methods", &r->num_methods);
    for (size_t i = 0; i < r->num_methods; i++) {
        for (const char *c = r->methods[i]; *c; c++) {
            if (*c < 'A' || *c > 'Z') {
                char field[64];
                snprintf(field, sizeof(field), "methods[%zu]", i);
                lm__ferr(b, e, field, "invalid value: %s", r->methods[i]);
                break;
            }
        }
    }
}

static void lm__route_headers(lm__b_t *b, const lm__ent_t *e, lm_route_t *r)
{
    const cJSON *h = lm__fget(e->obj, "headers");
    if (h == NULL)
        return;
    if (!cJSON_IsObject(h)) {
        lm__ferr(b, e, "headers", "expected a map");
        return;
    }
    size_t n = (size_t)cJSON_GetArraySize(h);
    r->headers = lm_arena_calloc(b->a, (n ? n : 1) * sizeof(*r->headers));
    const cJSON *it;
    cJSON_ArrayForEach(it, h) {
        char *field = lm_arena_sprintf(b->tmp, "headers.%s", it->string);
        const char *err = lm__check_header_name(b, it->string);
        if (err) {
            lm__ferr(b, e, field, "%s", err);
            continue;
        }
        if (strcasecmp(it->string, "host") == 0) {
            lm__ferr(b, e, field,
                     "cannot contain 'host' header, which must be specified in the 'hosts' "
                     "attribute");
            continue;
        }
        if (!cJSON_IsArray(it)) {
            lm__ferr(b, e, field, "expected an array");
            continue;
        }
        size_t nv = (size_t)cJSON_GetArraySize(it);
        if (nv == 0) {
            lm__ferr(b, e, field, "length must be at least 1");
            continue;
        }
        lm_route_header_t *rh = &r->headers[r->num_headers];
        rh->name = lm_arena_strdup(b->a, it->string);
        for (char *c = rh->name; *c; c++)
            *c = lm_tolower(*c);
        rh->values = lm_arena_calloc(b->a, nv * sizeof(char *));
        bool ok = true;
        size_t j = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, it) {
            char *vf = lm_arena_sprintf(b->tmp, "%s[%zu]", field, j++);
            if (!cJSON_IsString(v)) {
                lm__ferr(b, e, vf, "expected a string");
                ok = false;
                continue;
            }
            if (strncmp(v->valuestring, "~*", 2) == 0) {
                char *rerr = lm__regex_error(b, v->valuestring + 2);
                if (rerr) {
                    lm__ferr(b, e, vf, "invalid regex: '%s' (PCRE returned: %s)",
                             v->valuestring + 2, rerr);
                    ok = false;
                    continue;
                }
            }
            rh->values[rh->num_values++] = lm_arena_strdup(b->a, v->valuestring);
        }
        if (ok)
            r->num_headers++;
    }
}

static lm_route_endpoint_t *lm__route_endpoints(lm__b_t *b, const lm__ent_t *e, const char *key, size_t *count)
{
    *count = 0;
    const cJSON *arr = lm__fget(e->obj, key);
    if (arr == NULL)
        return NULL;
    if (!cJSON_IsArray(arr)) {
        lm__ferr(b, e, key, "expected a set");
        return NULL;
    }
    size_t n = (size_t)cJSON_GetArraySize(arr);
    lm_route_endpoint_t *out = lm_arena_calloc(b->a, (n ? n : 1) * sizeof(*out));
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        char *field = lm_arena_sprintf(b->tmp, "%s[%zu]", key, i++);
        if (!cJSON_IsObject(it)) {
            lm__ferr(b, e, field, "expected a record");
            continue;
        }
        const cJSON *ip = lm__fget(it, "ip"), *port = lm__fget(it, "port"), *k;
        bool ok = true;
        cJSON_ArrayForEach(k, it) {
            if (strcmp(k->string, "ip") != 0 && strcmp(k->string, "port") != 0) {
                lm__ferr(b, e, lm_arena_sprintf(b->tmp, "%s.%s", field, k->string),
                         "unknown field");
                ok = false;
            }
        }
        if (ip == NULL && port == NULL) {
            lm__ferr(b, e, field, "at least one of these fields must be non-empty: 'ip', 'port'");
            ok = false;
        }
        if (ip) {
            char *ipf = lm_arena_sprintf(b->tmp, "%s.ip", field);
            if (!cJSON_IsString(ip)) {
                lm__ferr(b, e, ipf, "expected a string");
                ok = false;
            } else {
                char tmp[64];
                snprintf(tmp, sizeof(tmp), "%s", ip->valuestring);
                char *slash = strchr(tmp, '/');
                bool good = strlen(ip->valuestring) < sizeof(tmp);
                if (slash) {
                    *slash = '\0';
                    char *end;
                    long bits = strtol(slash + 1, &end, 10);
                    good = good && slash[1] && *end == '\0' && bits >= 0 &&
                           bits <= (strchr(tmp, ':') ? 128 : 32);
                }
                if (!good || !lm__is_ip(tmp)) {
                    lm__ferr(b, e, ipf, "invalid ip or cidr range: '%s'", ip->valuestring);
                    ok = false;
                }
            }
        }
        if (port && (!lm__is_integer(port) || port->valuedouble < 0 || port->valuedouble > 65535)) {
            lm__ferr(b, e, lm_arena_sprintf(b->tmp, "%s.port", field),
                     "value should be between 0 and 65535");
            ok = false;
        }
        if (ok) {
            lm_route_endpoint_t *ep = &out[(*count)++];
            ep->ip = ip ? lm_arena_strdup(b->a, ip->valuestring) : NULL;
            ep->port = port ? (int)port->valuedouble : -1;
        }
    }
    return out;
}

/* Kong's per-protocol route subschemas */
static void lm__route_protocol_checks(lm__b_t *b, const lm__ent_t *e, lm_route_t *r,
                                      bool has_sources, bool has_dests, bool strip_set)
{
    char **pr = r->protocols;
    size_t np = r->num_protocols;
    bool http = lm__has(pr, np, "http"), https = lm__has(pr, np, "https");
    bool ws = lm__has(pr, np, "ws"), wss = lm__has(pr, np, "wss");
    bool grpc = lm__has(pr, np, "grpc"), grpcs = lm__has(pr, np, "grpcs");
    bool tcp = lm__has(pr, np, "tcp"), tls = lm__has(pr, np, "tls"), udp = lm__has(pr, np, "udp");
    bool tlsp = lm__has(pr, np, "tls_passthrough");
    bool stream = tcp || tls || udp;
    int groups = (http || https) + (ws || wss) + (grpc || grpcs) + stream + tlsp;
    if (groups > 1) {
        lm__ferr(b, e, "protocols",
                 "these sets are mutually exclusive: ('http', 'https'), ('tcp', 'tls', 'udp'), "
                 "('tls_passthrough'), ('grpc', 'grpcs'), ('ws', 'wss')");
        return;
    }
    bool m = r->num_methods > 0, h = r->num_hosts > 0, hd = r->num_headers > 0,
         p = r->num_paths > 0, s = r->num_snis > 0;
    /* the counts above only hold valid entries: use "was the field given" */
    m = m || lm__fget(e->obj, "methods");
    h = h || lm__fget(e->obj, "hosts");
    hd = hd || lm__fget(e->obj, "headers");
    p = p || lm__fget(e->obj, "paths");
    s = s || lm__fget(e->obj, "snis");
    if (http || https || ws || wss) {
        const char *pn = (http || https) ? "'http' or 'https'" : "'ws' or 'wss'";
        if (has_sources)
            lm__ferr(b, e, "sources", "cannot set 'sources' when 'protocols' is %s", pn);
        if (has_dests)
            lm__ferr(b, e, "destinations", "cannot set 'destinations' when 'protocols' is %s", pn);
        if ((https || wss) && !(m || h || hd || p || s))
            lm__ferr(b, e, NULL,
                     "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when "
                     "'protocols' is '%s'",
                     https ? "https" : "wss");
        else if (!(https || wss) && !(m || h || hd || p))
            lm__ferr(b, e, NULL,
                     "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' "
                     "is '%s'",
                     http ? "http" : "ws");
    } else if (grpc || grpcs) {
        if (has_sources)
            lm__ferr(b, e, "sources", "cannot set 'sources' when 'protocols' is 'grpc' or 'grpcs'");
        if (has_dests)
            lm__ferr(b, e, "destinations",
                     "cannot set 'destinations' when 'protocols' is 'grpc' or 'grpcs'");
        if (m)
            lm__ferr(b, e, "methods", "cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'");
        if (strip_set && r->strip_path)
            lm__ferr(b, e, "strip_path",
                     "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'");
        if (grpcs && !(h || hd || p || s))
            lm__ferr(b, e, NULL,
                     "must set one of 'hosts', 'headers', 'paths', 'snis' when 'protocols' is "
                     "'grpcs'");
        else if (!grpcs && !(h || hd || p))
            lm__ferr(b, e, NULL,
                     "must set one of 'hosts', 'headers', 'paths' when 'protocols' is 'grpc'");
    } else if (stream || tlsp) {
        static const char *const fields[] = { "methods", "hosts", "paths", "headers" };
        bool given[] = { m, h, p, hd };
        for (size_t i = 0; i < 4; i++)
            if (given[i])
                lm__ferr(b, e, fields[i],
                         "cannot set '%s' when 'protocols' is 'tcp', 'tls', 'tls_passthrough' or "
                         "'udp'",
                         fields[i]);
        if (tlsp && !s)
            lm__ferr(b, e, NULL, "must set snis when 'protocols' is 'tls_passthrough'");
        else if (!tlsp && !(has_sources || has_dests || s))
            lm__ferr(b, e, NULL,
                     "must set one of 'sources', 'destinations', 'snis' when 'protocols' is "
                     "'tcp', 'tls' or 'udp'");
    }
    static const char *const sni_ok[] = { "grpcs", "https", "tls", "tls_passthrough", "wss", NULL };
    bool any = false;
    for (size_t i = 0; i < np; i++)
        any = any || lm__in(pr[i], sni_ok);
    if (s && !any)
        lm__ferr(b, e, "snis",
                 "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls', "
                 "'tls_passthrough', or 'wss'");
}

static void lm__build_route(lm__b_t *b, const cJSON *item, const char *path, void *parent)
{
    lm_service_t *svc = parent;
    lm__ent_t e;
    lm__ent_init(b, &e, "route", "routes", path, item, "name");
    lm__check_fields(b, &e, lm__route_fields);
    lm_route_t *r = lm_arena_calloc(b->a, sizeof(*r));
    r->index = b->routes.n;
    lm__vec_push(b, &b->routes, r);
    r->id = lm__get_id(b, &e);
    r->name = lm__get_name(b, &e, "name", false);
    lm__check_unique(b, &e, &b->route_by_id, "id", r->id, r);
    lm__check_unique(b, &e, &b->route_by_name, "name", r->name, r);

    static const char *const def_protocols[] = { "http", "https" };
    r->protocols = lm__get_protocols(b, &e, &r->num_protocols, def_protocols, 2);
    lm__route_methods(b, &e, r);
    lm__route_hosts(b, &e, r);
    lm__route_paths(b, &e, r);
    lm__route_headers(b, &e, r);
    r->snis = lm__get_str_array(b, &e, "snis", &r->num_snis);
    for (size_t i = 0; i < r->num_snis; i++) {
        for (char *c = r->snis[i]; *c; c++)
            *c = lm_tolower(*c);
        const char *err = lm__check_hostname(b, r->snis[i], false, true, false);
        if (err) {
            char field[64];
            snprintf(field, sizeof(field), "snis[%zu]", i);
            lm__ferr(b, &e, field, "%s", err);
        }
    }
    r->sources = lm__route_endpoints(b, &e, "sources", &r->num_sources);
    r->destinations = lm__route_endpoints(b, &e, "destinations", &r->num_destinations);

    long long v;
    lm__get_int(b, &e, "https_redirect_status_code", 426, LLONG_MIN, LLONG_MAX, &v);
    if (v != 426 && v != 301 && v != 302 && v != 307 && v != 308) {
        lm__ferr(b, &e, "https_redirect_status_code", "expected one of: 426, 301, 302, 307, 308");
        v = 426;
    }
    r->https_redirect_status_code = (int)v;
    lm__get_int(b, &e, "regex_priority", 0, INT32_MIN, INT32_MAX, &v);
    r->regex_priority = (int)v;
    bool grpc = lm__has(r->protocols, r->num_protocols, "grpc") ||
                lm__has(r->protocols, r->num_protocols, "grpcs");
    lm__get_bool(b, &e, "strip_path", !grpc, &r->strip_path);
    lm__get_bool(b, &e, "preserve_host", false, &r->preserve_host);
    lm__get_bool(b, &e, "request_buffering", true, &r->request_buffering);
    lm__get_bool(b, &e, "response_buffering", true, &r->response_buffering);
    static const char *const handling[] = { "v0", "v1", NULL };
    r->path_handling = lm__get_enum(b, &e, "path_handling", handling, "v0");
    lm__get_tags(b, &e, &r->tags, &r->num_tags);
    if (r->num_protocols)
        lm__route_protocol_checks(b, &e, r, lm__fget(item, "sources") != NULL,
                                  lm__fget(item, "destinations") != NULL,
                                  lm__fget(item, "strip_path") != NULL);

    const cJSON *ref = lm__fget(item, "service");
    if (svc) {
        r->service = svc;
        if (ref)
            lm__ferr(b, &e, "service", "value must be null");
    } else if (ref) {
        lm__add_pending(b, &b->route_refs, &e, ref, r, NULL);
    }
    lm__each(b, &e, item, "plugins", lm__build_plugin_route, r);
}

/* ---- plugins --------------------------------------------------------- */

static const char *const lm__known_plugins[] = {
    "acl", "acme", "ai-prompt-decorator", "ai-prompt-guard", "ai-prompt-template", "ai-proxy",
    "ai-request-transformer", "ai-response-transformer", "aws-lambda", "azure-functions",
    "basic-auth", "bot-detection", "correlation-id", "cors", "datadog", "file-log",
    "grpc-gateway", "grpc-web", "hmac-auth", "http-log", "ip-restriction", "jwt", "key-auth",
    "ldap-auth", "loggly", "oauth2", "opentelemetry", "post-function", "pre-function",
    "prometheus", "proxy-cache", "rate-limiting", "redirect", "request-size-limiting",
    "request-termination", "request-transformer", "response-ratelimiting",
    "response-transformer", "session", "standard-webhooks", "statsd", "syslog", "tcp-log",
    "udp-log", "zipkin", NULL
};

/* names of plugins loaded at start-up from --plugin-dir; set before any
 * configuration is built, read-only afterwards */
#define LM__MAX_EXTRA_PLUGINS 64
static const char *lm__extra_plugins[LM__MAX_EXTRA_PLUGINS + 1];
static size_t lm__num_extra_plugins;

int lm_config_add_plugin_name(const char *name)
{
    if (lm__num_extra_plugins == LM__MAX_EXTRA_PLUGINS)
        return LM_ERROR;
    lm__extra_plugins[lm__num_extra_plugins++] = name;
    return LM_OK;
}

bool lm_config_plugin_known(const char *name)
{
    return name != NULL && (lm__in(name, lm__known_plugins) || lm__in(name, lm__extra_plugins));
}

static const char *const lm__plugin_fields[] = { "id", "name", "instance_name", "config",
                                                 "enabled", "protocols", "tags", "service",
                                                 "route", "consumer", NULL };

enum { LM__SCOPE_NONE, LM__SCOPE_SERVICE, LM__SCOPE_ROUTE, LM__SCOPE_CONSUMER };

static void lm__build_plugin(lm__b_t *b, const cJSON *item, const char *path, int scope,
                             void *parent)
{
    lm__ent_t e;
    lm__ent_init(b, &e, "plugin", "plugins", path, item, "name");
    lm__check_fields(b, &e, lm__plugin_fields);
    lm_plugin_t *p = lm_arena_calloc(b->a, sizeof(*p));
    p->index = b->plugins.n;
    p->path = lm_arena_strdup(b->a, path);
    lm__vec_push(b, &b->plugins, p);
    p->id = lm__get_id(b, &e);
    lm__check_unique(b, &e, &b->plugin_by_id, "id", p->id, p);
    p->name = lm__get_str(b, &e, "name", true);
    if (p->name && !lm_config_plugin_known(p->name))
        lm__ferr(b, &e, "name",
                 "plugin '%s' not enabled; add it to the 'plugins' configuration property",
                 p->name);
    p->instance_name = lm__get_name(b, &e, "instance_name", false);
    lm__get_bool(b, &e, "enabled", true, &p->enabled);
    static const char *const def_protocols[] = { "grpc", "grpcs", "http", "https" };
    p->protocols = lm__get_protocols(b, &e, &p->num_protocols, def_protocols, 4);
    lm__get_tags(b, &e, &p->tags, &p->num_tags);
    cJSON *config = cJSON_GetObjectItemCaseSensitive(item, "config");
    if (config == NULL || cJSON_IsNull(config)) {
        /* the model promises {} when absent; the tree owns it */
        if (config)
            cJSON_DeleteItemFromObjectCaseSensitive((cJSON *)item, "config");
        config = cJSON_AddObjectToObject((cJSON *)item, "config");
    } else if (!cJSON_IsObject(config)) {
        lm__ferr(b, &e, "config", "expected a record");
    }
    p->config = config;

    static const char *const refs[] = { "service", "route", "consumer" };
    for (int i = 0; i < 3; i++) {
        const cJSON *ref = lm__fget(item, refs[i]);
        if (ref == NULL)
            continue;
        if (scope == i + 1)
            lm__ferr(b, &e, refs[i], "value must be null");
        else
            lm__add_pending(b, &b->plugin_refs, &e, ref, p, (void *)refs[i]);
    }
    if (scope == LM__SCOPE_SERVICE)
        p->service = parent;
    else if (scope == LM__SCOPE_ROUTE)
        p->route = parent;
    else if (scope == LM__SCOPE_CONSUMER)
        p->consumer = parent;
    /* the scope check needs every reference: remember the entity */
    lm__add_pending(b, &b->plugin_refs, &e, NULL, p, NULL);
}

static void lm__build_plugin_top(lm__b_t *b, const cJSON *item, const char *path, void *p)
{
    lm__build_plugin(b, item, path, LM__SCOPE_NONE, p);
}

static void lm__build_plugin_service(lm__b_t *b, const cJSON *item, const char *path, void *p)
{
    lm__build_plugin(b, item, path, LM__SCOPE_SERVICE, p);
}

static void lm__build_plugin_route(lm__b_t *b, const cJSON *item, const char *path, void *p)
{
    lm__build_plugin(b, item, path, LM__SCOPE_ROUTE, p);
}

static void lm__build_plugin_consumer(lm__b_t *b, const cJSON *item, const char *path, void *p)
{
    lm__build_plugin(b, item, path, LM__SCOPE_CONSUMER, p);
}

/* ---- consumers and credentials --------------------------------------- */

typedef struct {
    const char *name;
    char type; /* 's' string, 'i' integer >= 0, 'b' boolean, 'a' string array, 'e' enum, 'r' ref */
    bool required;
    const char *const *one_of;
} lm__fspec_t;

typedef struct {
    const char *key;    /* document key */
    const char *type;   /* entity type in errors */
    const char *name_field;
    const char *unique; /* field unique across the kind, or NULL */
    lm__fspec_t fields[8];
} lm__credkind_t;

static const char *const lm__jwt_algs[] = { "HS256", "HS384", "HS512", "RS256", "RS384",
                                            "RS512", "ES256", "ES384", "ES512", "PS256",
                                            "PS384", "PS512", "EdDSA", NULL };
static const char *const lm__client_types[] = { "confidential", "public", NULL };

static const lm__credkind_t lm__credkinds[] = {
    { "keyauth_credentials", "keyauth_credential", "key", "key",
      { { "key", 's', false, NULL }, { "ttl", 'i', false, NULL } } },
    { "basicauth_credentials", "basicauth_credential", "username", "username",
      { { "username", 's', true, NULL }, { "password", 's', true, NULL } } },
    { "jwt_secrets", "jwt_secret", "key", "key",
      { { "key", 's', false, NULL }, { "secret", 's', false, NULL },
        { "rsa_public_key", 's', false, NULL }, { "algorithm", 'e', false, lm__jwt_algs } } },
    { "hmacauth_credentials", "hmacauth_credential", "username", "username",
      { { "username", 's', true, NULL }, { "secret", 's', false, NULL } } },
    { "acls", "acl", "group", NULL, { { "group", 's', true, NULL } } },
    { "oauth2_credentials", "oauth2_credential", "name", "client_id",
      { { "name", 's', true, NULL }, { "client_id", 's', false, NULL },
        { "client_secret", 's', false, NULL }, { "hash_secret", 'b', false, NULL },
        { "redirect_uris", 'a', false, NULL }, { "client_type", 'e', false, lm__client_types } } },
    { "mtls_auth_credentials", "mtls_auth_credential", "subject_name", NULL,
      { { "subject_name", 's', true, NULL }, { "ca_certificate", 'r', false, NULL } } },
};

static const lm__credkind_t *lm__credkind(const char *key)
{
    for (size_t i = 0; i < LM_ARRAY_SIZE(lm__credkinds); i++)
        if (strcmp(lm__credkinds[i].key, key) == 0)
            return &lm__credkinds[i];
    return NULL;
}

static void lm__build_credential(lm__b_t *b, const lm__credkind_t *k, const cJSON *item,
                                 const char *path, lm_consumer_t *parent)
{
    lm__ent_t e;
    lm__ent_init(b, &e, k->type, k->key, path, item, k->name_field);
    const char *allowed[16] = { "id", "tags", "consumer" };
    size_t na = 3;
    for (size_t i = 0; i < LM_ARRAY_SIZE(k->fields) && k->fields[i].name; i++)
        allowed[na++] = k->fields[i].name;
    allowed[na] = NULL;
    lm__check_fields(b, &e, allowed);
    lm_credential_t *c = lm_arena_calloc(b->a, sizeof(*c));
    c->index = b->credentials.n;
    lm__vec_push(b, &b->credentials, c);
    c->kind = lm_arena_strdup(b->a, k->key);
    c->id = lm__get_id(b, &e);
    c->fields = (cJSON *)item;
    if (c->id)
        lm__check_unique(b, &e, &b->cred_by_id, "id", lm_arena_sprintf(b->tmp, "%s:%s", k->key, c->id), c);
    const cJSON *ca_ref = NULL;
    for (size_t i = 0; i < LM_ARRAY_SIZE(k->fields) && k->fields[i].name; i++) {
        const lm__fspec_t *f = &k->fields[i];
        long long iv;
        bool bv;
        size_t n;
        switch (f->type) {
        case 's': lm__get_str(b, &e, f->name, f->required); break;
        case 'i': lm__get_int(b, &e, f->name, 0, 0, INT32_MAX, &iv); break;
        case 'b': lm__get_bool(b, &e, f->name, false, &bv); break;
        case 'a': lm__get_str_array(b, &e, f->name, &n); break;
        case 'e': lm__get_enum(b, &e, f->name, f->one_of, NULL); break;
        case 'r': ca_ref = lm__fget(item, f->name); break;
        }
    }
    size_t nt;
    char **tags;
    lm__get_tags(b, &e, &tags, &nt);
    if (strcmp(k->key, "jwt_secrets") == 0) {
        const char *alg = cJSON_GetStringValue(lm__fget(item, "algorithm"));
        if (alg && alg[0] != 'H' && lm__in(alg, lm__jwt_algs) && !lm__fget(item, "rsa_public_key"))
            lm__ferr(b, &e, "rsa_public_key", "required field missing");
    }
    if (k->unique) {
        const char *v = cJSON_GetStringValue(lm__fget(item, k->unique));
        if (v && v[0] &&
            lm__map_put(b, &b->cred_unique, lm_arena_sprintf(b->tmp, "%s:%s", k->key, v), c))
            lm__ferr(b, &e, NULL,
                     "uniqueness violation: '%s' entity with %s set to '%s' already declared",
                     k->key, k->unique, v);
    }
    const cJSON *ref = lm__fget(item, "consumer");
    if (parent) {
        c->consumer = parent;
        if (ref)
            lm__ferr(b, &e, "consumer", "value must be null");
    } else if (ref == NULL) {
        lm__ferr(b, &e, "consumer", "required field missing");
    }
    if (ref || ca_ref || strcmp(k->key, "acls") == 0)
        lm__add_pending(b, &b->cred_refs, &e, parent ? NULL : ref, c, (void *)ca_ref);
}

/* what lm__each hands to the credential builder */
typedef struct {
    const lm__credkind_t *kind;
    lm_consumer_t *consumer; /* NULL at the top level */
} lm__credctx_t;

static void lm__build_credential_each(lm__b_t *b, const cJSON *item, const char *path, void *p)
{
    const lm__credctx_t *ctx = p;
    lm__build_credential(b, ctx->kind, item, path, ctx->consumer);
}

static const char *const lm__consumer_fields[] = {
    "id", "username", "custom_id", "tags", "plugins", "keyauth_credentials",
    "basicauth_credentials", "jwt_secrets", "hmacauth_credentials", "acls",
    "oauth2_credentials", "mtls_auth_credentials", NULL
};

static void lm__build_consumer(lm__b_t *b, const cJSON *item, const char *path, void *parent)
{
    lm__ent_t e;
    lm__ent_init(b, &e, "consumer", "consumers", path, item, "username");
    lm__check_fields(b, &e, lm__consumer_fields);
    lm_consumer_t *c = lm_arena_calloc(b->a, sizeof(*c));
    c->index = b->consumers.n;
    lm__vec_push(b, &b->consumers, c);
    c->id = lm__get_id(b, &e);
    c->username = lm__get_str(b, &e, "username", false);
    c->custom_id = lm__get_str(b, &e, "custom_id", false);
    if (lm__fget(item, "username") == NULL && lm__fget(item, "custom_id") == NULL)
        lm__ferr(b, &e, NULL,
                 "at least one of these fields must be non-empty: 'custom_id', 'username'");
    lm__get_tags(b, &e, &c->tags, &c->num_tags);
    lm__check_unique(b, &e, &b->consumer_by_id, "id", c->id, c);
    lm__check_unique(b, &e, &b->consumer_by_username, "username", c->username, c);
    lm__check_unique(b, &e, &b->consumer_by_custom_id, "custom_id", c->custom_id, c);
    lm__each(b, &e, item, "plugins", lm__build_plugin_consumer, c);
    for (size_t i = 0; i < LM_ARRAY_SIZE(lm__credkinds); i++) {
        lm__credctx_t ctx = { &lm__credkinds[i], c };
        lm__each(b, &e, item, lm__credkinds[i].key, lm__build_credential_each, &ctx);
    }
}

/* ---- references ------------------------------------------------------ */

static void lm__resolve_all(lm__b_t *b)
{
    for (size_t i = 0; i < b->route_refs.n; i++) {
        lm__pending_t *p = b->route_refs.v[i];
        lm_route_t *r = p->owner;
        r->service = lm__resolve(b, &p->ent, "service", p->ref, &b->service_by_name,
                                 &b->service_by_id, "services");
    }
    /* plugins: first the references, then the one-per-scope check */
    for (size_t i = 0; i < b->plugin_refs.n; i++) {
        lm__pending_t *p = b->plugin_refs.v[i];
        lm_plugin_t *pl = p->owner;
        const char *field = p->extra;
        if (p->ref == NULL)
            continue;
        if (strcmp(field, "service") == 0)
            pl->service = lm__resolve(b, &p->ent, field, p->ref, &b->service_by_name,
                                      &b->service_by_id, "services");
        else if (strcmp(field, "route") == 0)
            pl->route = lm__resolve(b, &p->ent, field, p->ref, &b->route_by_name,
                                    &b->route_by_id, "routes");
        else
            pl->consumer = lm__resolve(b, &p->ent, field, p->ref, &b->consumer_by_username,
                                       &b->consumer_by_id, "consumers");
    }
    lm__map_t scopes = { 0 };
    for (size_t i = 0; i < b->plugin_refs.n; i++) {
        lm__pending_t *p = b->plugin_refs.v[i];
        lm_plugin_t *pl = p->owner;
        if (p->ref != NULL || pl->name == NULL)
            continue;
        char *key = lm_arena_sprintf(b->tmp, "%s|%zu|%zu|%zu", pl->name,
                                     pl->service ? pl->service->index + 1 : 0,
                                     pl->route ? pl->route->index + 1 : 0,
                                     pl->consumer ? pl->consumer->index + 1 : 0);
        if (lm__map_put(b, &scopes, key, pl) == NULL)
            continue;
        char scope[512];
        int n = 0;
        scope[0] = '\0';
        if (pl->service)
            n += snprintf(scope + n, sizeof(scope) - (size_t)n, " service '%s'",
                          pl->service->name ? pl->service->name : pl->service->id ? pl->service->id : "?");
        if (pl->route && n < (int)sizeof(scope))
            n += snprintf(scope + n, sizeof(scope) - (size_t)n, " route '%s'",
                          pl->route->name ? pl->route->name : pl->route->id ? pl->route->id : "?");
        if (pl->consumer && n < (int)sizeof(scope))
            snprintf(scope + n, sizeof(scope) - (size_t)n, " consumer '%s'",
                     pl->consumer->username ? pl->consumer->username
                     : pl->consumer->custom_id ? pl->consumer->custom_id : "?");
        lm__ferr(b, &p->ent, NULL,
                 "uniqueness violation: 'plugins' entity with name set to '%s' already declared "
                 "for the same scope (%s)",
                 pl->name, scope[0] ? scope + 1 : "global");
    }
    lm__map_t acl_pairs = { 0 };
    for (size_t i = 0; i < b->cred_refs.n; i++) {
        lm__pending_t *p = b->cred_refs.v[i];
        lm_credential_t *c = p->owner;
        if (p->ref)
            c->consumer = lm__resolve(b, &p->ent, "consumer", p->ref, &b->consumer_by_username,
                                      &b->consumer_by_id, "consumers");
        if (p->extra)
            lm__resolve(b, &p->ent, "ca_certificate", p->extra, NULL, &b->ca_by_id,
                        "ca_certificates");
        const char *group = cJSON_GetStringValue(lm__fget(c->fields, "group"));
        if (strcmp(c->kind, "acls") == 0 && c->consumer && group) {
            char *key = lm_arena_sprintf(b->tmp, "%zu|%s", c->consumer->index, group);
            if (lm__map_put(b, &acl_pairs, key, c))
                lm__ferr(b, &p->ent, NULL,
                         "uniqueness violation: 'acls' entity with consumer and group set to "
                         "'%s' already declared",
                         group);
        }
    }
    lm__resolve_entities(b);
}

/* ---- the document ---------------------------------------------------- */

static void lm__build_top_route(lm__b_t *b, const cJSON *item, const char *path, void *p)
{
    lm__build_route(b, item, path, NULL);
}

#define LM__FINISH(field, vec, T)                                                    \
    do {                                                                             \
        cfg->num_##field = b.vec.n;                                                  \
        cfg->field = lm_arena_alloc(cfg->arena, (b.vec.n ? b.vec.n : 1) * sizeof(T *)); \
        if (b.vec.n)                                                                 \
            memcpy(cfg->field, b.vec.v, b.vec.n * sizeof(T *));                      \
    } while (0)

/* md5 hex of the canonical text */
typedef struct {
    char *canon;
    size_t len;
    char *hash; /* 33 bytes */
    pthread_t thread;
} lm__digest_t;

#define LM__DIGEST_THREAD_MIN (1u << 20)

static void *lm__digest_main(void *arg)
{
    lm__digest_t *dg = arg;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(dg->canon, dg->len, md, &mdlen, EVP_md5(), NULL) == 1) {
        static const char hex[] = "0123456789abcdef";
        for (unsigned int i = 0; i < mdlen && i < 16; i++) {
            dg->hash[2 * i] = hex[md[i] >> 4];
            dg->hash[2 * i + 1] = hex[md[i] & 15];
        }
        dg->hash[2 * (mdlen < 16 ? mdlen : 16)] = '\0';
    }
    return NULL;
}

lm_config_t *lm_config_build(cJSON *doc, lm_config_errors_t *errs)
{
    lm_arena_t *arena = lm_arena_create(64 * 1024);
    lm_config_t *cfg = lm_arena_calloc(arena, sizeof(*cfg));
    cfg->arena = arena;
    cfg->doc = doc;
    size_t errs_before = errs->count;

    /* the hash covers the document as given (after ${VAR}), before any
     * default is added to the tree: md5 of cJSON_PrintUnformatted's text;
     * a large one is hashed on another thread while the build goes on */
    lm__digest_t dg = { .canon = doc ? lm__print_canonical(doc) : NULL, .hash = cfg->hash };
    bool dg_thread = false;
    if (dg.canon) {
        dg.len = strlen(dg.canon);
        dg_thread = dg.len >= LM__DIGEST_THREAD_MIN && pthread_create(&dg.thread, NULL, lm__digest_main, &dg) == 0;
        if (!dg_thread)
            lm__digest_main(&dg);
    }
    cfg->canonical_json = dg.canon;

    lm__b_t b;
    memset(&b, 0, sizeof(b));
    b.cfg = cfg;
    b.a = arena;
    b.tmp = lm_arena_create(64 * 1024);
    b.errs = errs;
    b.v3 = true;

    if (!cJSON_IsObject(doc)) {
        lm_config_errors_add(errs, "", NULL, NULL, NULL, "expected an object");
        goto out;
    }
    const cJSON *fv = cJSON_GetObjectItemCaseSensitive(doc, "_format_version");
    static const char *const versions[] = { "1.1", "2.1", "3.0", NULL };
    if (fv == NULL || cJSON_IsNull(fv)) {
        lm_config_errors_add(errs, "_format_version", NULL, NULL, NULL, "required field missing");
    } else if (!cJSON_IsString(fv)) {
        lm_config_errors_add(errs, "_format_version", NULL, NULL, NULL, "expected a string");
    } else if (!lm__in(fv->valuestring, versions)) {
        lm_config_errors_add(errs, "_format_version", NULL, NULL, NULL,
                             "expected one of: 1.1, 2.1, 3.0");
    } else {
        cfg->format_version = lm_arena_strdup(arena, fv->valuestring);
        b.v3 = strcmp(fv->valuestring, "3.0") == 0;
    }
    if (cfg->format_version == NULL)
        cfg->format_version = lm_arena_strdup(arena, "3.0");

    const cJSON *it;
    cJSON_ArrayForEach(it, doc) {
        const char *k = it->string;
        if (strcmp(k, "_format_version") == 0)
            continue;
        if (strcmp(k, "_transform") == 0) {
            if (!cJSON_IsBool(it) && !cJSON_IsNull(it))
                lm_config_errors_add(errs, k, NULL, NULL, NULL, "expected a boolean");
        } else if (strcmp(k, "_comment") == 0) {
            if (!cJSON_IsString(it) && !cJSON_IsNull(it))
                lm_config_errors_add(errs, k, NULL, NULL, NULL, "expected a string");
        } else if (strcmp(k, "_ignore") == 0) {
            if (!cJSON_IsArray(it) && !cJSON_IsNull(it))
                lm_config_errors_add(errs, k, NULL, NULL, NULL, "expected an array");
        } else if (strcmp(k, "services") == 0) {
            lm__each(&b, NULL, doc, k, lm__build_service, NULL);
        } else if (strcmp(k, "routes") == 0) {
            lm__each(&b, NULL, doc, k, lm__build_top_route, NULL);
        } else if (strcmp(k, "consumers") == 0) {
            lm__each(&b, NULL, doc, k, lm__build_consumer, NULL);
        } else if (strcmp(k, "plugins") == 0) {
            lm__each(&b, NULL, doc, k, lm__build_plugin_top, NULL);
        } else if (strcmp(k, "upstreams") == 0) {
            lm__each(&b, NULL, doc, k, lm__build_upstream, NULL);
        } else if (strcmp(k, "targets") == 0) {
            lm__each(&b, NULL, doc, k, lm__build_target, NULL);
        } else if (strcmp(k, "certificates") == 0) {
            lm__each(&b, NULL, doc, k, lm__build_certificate, NULL);
        } else if (strcmp(k, "snis") == 0) {
            lm__each(&b, NULL, doc, k, lm__build_sni, NULL);
        } else if (strcmp(k, "ca_certificates") == 0) {
            lm__each(&b, NULL, doc, k, lm__build_ca_certificate, NULL);
        } else if (lm__credkind(k) != NULL) {
            lm__credctx_t ctx = { lm__credkind(k), NULL };
            lm__each(&b, NULL, doc, k, lm__build_credential_each, &ctx);
        } else {
            lm_config_errors_add(errs, k, NULL, NULL, NULL, "unknown field");
        }
    }
    lm__resolve_all(&b);

    LM__FINISH(services, services, lm_service_t);
    LM__FINISH(routes, routes, lm_route_t);
    LM__FINISH(consumers, consumers, lm_consumer_t);
    LM__FINISH(plugins, plugins, lm_plugin_t);
    LM__FINISH(credentials, credentials, lm_credential_t);
    LM__FINISH(upstreams, upstreams, lm_upstream_t);
    LM__FINISH(certificates, certificates, lm_certificate_t);
    LM__FINISH(ca_certificates, ca_certificates, lm_ca_certificate_t);
out:
    if (dg_thread)
        pthread_join(dg.thread, NULL);
    lm_arena_destroy(b.tmp);
    if (errs->count > errs_before) {
        lm_config_free(cfg);
        return NULL;
    }
    return cfg;
}

void lm_config_free(lm_config_t *cfg)
{
    if (cfg == NULL)
        return;
    cJSON_Delete(cfg->doc);
    cJSON_free(cfg->canonical_json);
    lm_arena_destroy(cfg->arena); /* cfg itself lives in the arena */
}

lm_service_t *lm_config_find_service(const lm_config_t *cfg, const char *id_or_name)
{
    for (size_t i = 0; id_or_name && i < cfg->num_services; i++) {
        lm_service_t *s = cfg->services[i];
        if ((s->name && strcmp(s->name, id_or_name) == 0) || (s->id && strcmp(s->id, id_or_name) == 0))
            return s;
    }
    return NULL;
}

lm_upstream_t *lm_config_find_upstream(const lm_config_t *cfg, const char *name)
{
    for (size_t i = 0; name && i < cfg->num_upstreams; i++) {
        lm_upstream_t *u = cfg->upstreams[i];
        if ((u->name && strcmp(u->name, name) == 0) || (u->id && strcmp(u->id, name) == 0))
            return u;
    }
    return NULL;
}

lm_consumer_t *lm_config_find_consumer(const lm_config_t *cfg, const char *key)
{
    for (size_t i = 0; key && i < cfg->num_consumers; i++) {
        lm_consumer_t *c = cfg->consumers[i];
        if ((c->id && strcmp(c->id, key) == 0) || (c->username && strcmp(c->username, key) == 0) ||
            (c->custom_id && strcmp(c->custom_id, key) == 0))
            return c;
    }
    return NULL;
}

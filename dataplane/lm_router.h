/*
 * lm_router.h - route matching with Kong's "traditional_compatible" semantics.
 *
 * Built once per snapshot from the validated config (read-only afterwards,
 * safe to use from every worker at once). Matching cost is independent of the
 * number of plain host + prefix routes: exact hosts are hashed, prefixes live
 * in a byte trie per host bucket; regex paths (PCRE2, JIT) are tried in
 * priority order only where they can still beat the best plain match.
 *
 * Priority between routes that all match (highest wins), as Kong computes it:
 *   1. number of matched categories (hosts, paths, methods, headers, snis, ...)
 *   2. plain (non-wildcard) host
 *   3. number of headers
 *   4. regex path before prefix path; among regexes, higher regex_priority
 *   5. longer path
 *   6. earlier in the document (created_at order)
 */
#ifndef LM_ROUTER_H
#define LM_ROUTER_H

#include "lm_core.h"
#include "lm_arena.h"
#include "lm_config.h"
#include "lm_http1.h"

typedef struct lm_router lm_router_t;

#define LM_ROUTER_MAX_CAPTURES 16

typedef struct {
    lm_str_t method;   /* "GET" */
    lm_str_t host;     /* Host header or :authority, may include ":port"; any case */
    lm_str_t path;     /* raw path without query, as received (not normalised) */
    lm_str_t sni;      /* TLS SNI or empty */
    const char *protocol; /* "http", "https", "grpc", "grpcs" */
    int port;          /* local port the request arrived on */
    const lm_http_header_t *headers;
    size_t num_headers;
} lm_route_req_t;

typedef struct {
    const lm_route_t *route;
    size_t path_index;   /* which of route->paths matched (SIZE_MAX when none) */
    size_t prefix_len;   /* bytes of req path matched by the prefix or the regex match (for strip_path) */
    /* regex captures: [0] is the whole match; unset groups have ptr == NULL */
    lm_str_t captures[LM_ROUTER_MAX_CAPTURES];
    lm_str_t capture_names[LM_ROUTER_MAX_CAPTURES]; /* names of named groups, else empty */
    size_t num_captures;
    /*
     * The request's protocol is not in route->protocols. Kong's router ignores
     * protocols for HTTP-family routes and leaves it to the proxy: an "http"
     * request on an https-only route gets https_redirect_status_code (426 or
     * a redirect), a non-gRPC request on a grpc(s) route gets 415, etc.
     */
    bool protocol_mismatch;
} lm_route_match_t;

/*
 * Builds the router for cfg->routes. All memory comes from arena (the
 * snapshot's). Regexes that fail to compile are reported in errs with the
 * route's path (the validator has normally caught them already).
 * Returns NULL on error.
 */
lm_router_t *lm_router_build(const lm_config_t *cfg, lm_arena_t *arena, lm_config_errors_t *errs);

/*
 * Finds the best route. Returns LM_OK with *m filled, or LM_DECLINED when no
 * route matches (answer 404 "no Route matched with those values").
 * Thread-safe; allocates nothing (PCRE2 match data is per thread).
 */
int lm_router_match(const lm_router_t *r, const lm_route_req_t *req, lm_route_match_t *m);

/* Frees PCRE2 resources held outside the arena (call before destroying the arena). */
void lm_router_free(lm_router_t *r);

/* Frees the calling thread's cached PCRE2 match data (call at worker exit). */
void lm_router_thread_cleanup(void);

#endif /* LM_ROUTER_H */

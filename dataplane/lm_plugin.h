/*
 * lm_plugin.h - the plugin interface: an ops table per plugin, listed in one
 * registry array (dataplane/plugins/registry.c), plus the request context
 * API plugins use (lm_ctx_*).
 *
 * Lifecycle
 *   configure  once per snapshot, off the event loops: the config object has
 *              already been validated against ops->schema and has every
 *              default filled in; compile it into *out (memory from cc->arena,
 *              which lives as long as the snapshot). Extra checks report with
 *              lm_plugin_error and return LM_ERROR.
 *   rewrite    global plugins only, before the consumer is known (Kong's rewrite)
 *   access     after routing; auth plugins (highest priorities) set the consumer
 *   header_filter  on the response head (from the upstream or from lm_ctx_exit)
 *   log        after the response was sent
 * Phases run plugins from the highest priority to the lowest (Kong's numbers).
 *
 * Which instance runs (one per plugin name per request), most specific first,
 * as Kong: consumer+route+service, consumer+route, consumer+service,
 * route+service, consumer, route, service, global. Disabled instances and
 * instances whose `protocols` do not include the request's never run.
 *
 * Phase return values: LM_OK (go on), LM_PLUGIN_DONE (lm_ctx_exit was called:
 * the rest of the phase and the proxying are skipped; header_filter and log
 * still run), LM_ERROR (the request fails with 500).
 */
#ifndef LM_PLUGIN_H
#define LM_PLUGIN_H

#include "lm_core.h"
#include "lm_arena.h"
#include "lm_config.h"
#include "lm_schema.h"

#define LM_PLUGIN_ABI_VERSION 1
#define LM_PLUGIN_DONE 1

typedef struct lm_ctx lm_ctx_t; /* a request, as plugins see it */

typedef struct {
    lm_arena_t *arena;           /* the snapshot's: compiled configs live here */
    const lm_config_t *cfg;      /* the whole configuration (consumers, credentials, ...) */
    const lm_plugin_t *entity;   /* the plugin entity being configured */
    lm_schema_ctx_t sc;          /* where errors go (path "...plugins[1].config") */
    bool needs_body;             /* set by lm_plugin_need_body (appended in ABI 1: the host allocates it) */
} lm_plugin_cfg_ctx_t;

typedef struct lm_plugin_ops {
    uint32_t abi_version; /* LM_PLUGIN_ABI_VERSION */
    const char *name;
    int priority;
    const lm_schema_field_t *schema; /* NULL: the config must be empty */
    int (*configure)(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out); /* NULL: *out = NULL */
    int (*rewrite)(lm_ctx_t *ctx, const void *conf);
    int (*access)(lm_ctx_t *ctx, const void *conf);
    int (*header_filter)(lm_ctx_t *ctx, const void *conf);
    void (*log)(lm_ctx_t *ctx, const void *conf);
} lm_plugin_ops_t;

/*
 * Process-wide state that outlives snapshots (counters, caches): a zeroed
 * block of `size` bytes per (plugin, key), created on first use and found
 * again under the same key by the configure of a later snapshot, so a config
 * swap keeps it. Call it from configure and keep the pointer in the compiled
 * config; workers share the block (use atomics). Lives until the process ends.
 */
void *lm_plugin_shared(const char *plugin, lm_str_t key, size_t size);
/* The same with a finaliser: fini(block) runs once, in lm_plugin_shared_free_all
 * at exit (after every snapshot is gone), before the block is freed - for
 * blocks that own threads, sockets or heap memory (the log queues). When
 * several calls name a key, the first one's fini is kept. */
void *lm_plugin_shared_ex(const char *plugin, lm_str_t key, size_t size, void (*fini)(void *block));
void lm_plugin_shared_free_all(void); /* at exit */

/*
 * From configure: this instance's access phase reads the request body
 * (lm_ctx_request_body, lm_ctx_body_field). A request whose chain holds such
 * an instance has its whole body read before the access phase (after
 * "100 Continue" when the client asked for it), up to LM_BODY_BUFFER_MAX
 * bytes; the upstream then gets it from that buffer, with Content-Length.
 * Chains without it stream bodies as before.
 */
void lm_plugin_need_body(lm_plugin_cfg_ctx_t *cc);

/* Reports a configuration error on a field of the plugin's config ("minute",
 * or NULL for the config as a whole). */
void lm_plugin_error(lm_plugin_cfg_ctx_t *cc, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The registry (registry.c): every plugin, built-in and loaded, highest
 * priority first, NULL-terminated. Fixed once the process has started. */
const lm_plugin_ops_t *const *lm_plugin_all(void);
const lm_plugin_ops_t *lm_plugin_find(const char *name);
/* Adds a plugin before any configuration is compiled (start-up only). */
int lm_plugin_register(const lm_plugin_ops_t *ops, char *err, size_t errlen);
/* Loads every *.so in dir: each exports `const lm_plugin_ops_t limen_plugin`
 * built against this header (abi_version must equal LM_PLUGIN_ABI_VERSION).
 * A plugin that fails is reported in the log and skipped; returns how many
 * were loaded. lm_plugin_unload_all closes them at exit. */
int lm_plugin_load_dir(const char *dir);
void lm_plugin_unload_all(void);

/*
 * Writing an external plugin (see examples/plugins/hello.c):
 *
 *   #include "lm_plugin.h"
 *   static int my_access(lm_ctx_t *ctx, const void *conf) { ...; return LM_OK; }
 *   const lm_plugin_ops_t limen_plugin = {
 *       .abi_version = LM_PLUGIN_ABI_VERSION, .name = "my-plugin", .priority = 800,
 *       .schema = my_fields, .configure = my_configure, .access = my_access,
 *   };
 *
 *   cc -shared -fPIC -I<limen>/common -I<limen>/dataplane -I/usr/include/cjson -o my-plugin.so my.c
 *   limen-dataplane --plugin-dir DIR ...
 *
 * ABI version 1 is this header as it is: a change to lm_plugin_ops_t, to the
 * lm_ctx_* signatures or to lm_schema_field_t bumps LM_PLUGIN_ABI_VERSION.
 * Added within version 1 (new functions, a field appended to the host-made
 * lm_plugin_cfg_ctx_t): lm_plugin_need_body and the request body calls;
 * lm_ctx_set_method, _set_path, _set_raw_query, _uri_capture, _server_addr,
 * _connection_id, _connection_requests, _resp_header_at, _resp_set_status,
 * _client_cert_subject, _client_cert_verify;
 * lm_plugin_shared_ex and the log-phase calls (lm_ctx_latencies, _started_at,
 * _request_size, _response_size, _tries, _upstream_addr, _upstream_uri,
 * _request_id, _response_source).
 */

/* ---- request: read ------------------------------------------------------ */
lm_str_t lm_ctx_method(lm_ctx_t *ctx);
lm_str_t lm_ctx_path(lm_ctx_t *ctx);       /* normalised, without the query */
lm_str_t lm_ctx_raw_query(lm_ctx_t *ctx);  /* after '?', as sent; ptr NULL when none */
lm_str_t lm_ctx_raw_path(lm_ctx_t *ctx);   /* the path exactly as sent (not normalised), without the query */
const char *lm_ctx_http_version(lm_ctx_t *ctx); /* "1.1" or "1.0" */
lm_str_t lm_ctx_host(lm_ctx_t *ctx);       /* Host header (port included) */
const char *lm_ctx_scheme(lm_ctx_t *ctx);  /* "http" or "https" */
const char *lm_ctx_client_ip(lm_ctx_t *ctx);
int lm_ctx_client_port(lm_ctx_t *ctx);
/* The client certificate on a TLS listener with --ssl-client-verify optional
 * or on: the verified certificate's subject in RFC 2253 form (NULL unless it
 * verified), and the result: "SUCCESS", "NONE" or "FAILED:<reason>" (NULL
 * when client verification is off or the connection is not TLS). */
const char *lm_ctx_client_cert_subject(lm_ctx_t *ctx);
const char *lm_ctx_client_cert_verify(lm_ctx_t *ctx);
/* First header with this name (case-insensitive): true and *value, or false. */
bool lm_ctx_header(lm_ctx_t *ctx, lm_str_t name, lm_str_t *value);
/* Every header with this name: returns how many there are, stores the first
 * `max` values (a repeated credential header is an error for auth plugins). */
size_t lm_ctx_header_all(lm_ctx_t *ctx, lm_str_t name, lm_str_t *values, size_t max);
/* Every request header in order: false when i is past the end. */
bool lm_ctx_header_at(lm_ctx_t *ctx, size_t i, lm_str_t *name, lm_str_t *value);
/* First query argument with this name, percent-decoded (request arena); a
 * bare "name" gives an empty value. */
bool lm_ctx_query_arg(lm_ctx_t *ctx, lm_str_t name, lm_str_t *value);
/* Content-Length of the request body, or -1 (chunked or none: see lm_ctx_has_body). */
int64_t lm_ctx_content_length(lm_ctx_t *ctx);
bool lm_ctx_has_body(lm_ctx_t *ctx);
/*
 * Caps the request body (request-size-limiting): when more than max_bytes
 * arrive, the request ends with 413 and `message` (Kong's JSON) if nothing was
 * forwarded yet, else both connections are closed (the upstream never gets a
 * complete oversized request). A Content-Length over the cap is the plugin's
 * to refuse at once with lm_ctx_exit.
 */
void lm_ctx_limit_body(lm_ctx_t *ctx, uint64_t max_bytes, const char *message);

/*
 * The request body, for instances that called lm_plugin_need_body (access
 * phase and later): the whole body, de-chunked (request arena). {"", 0} when
 * the request has no body. ptr NULL when it is not available: not asked for,
 * or larger than LM_BODY_BUFFER_MAX (Kong's kong.request.get_raw_body fails
 * the same way for a body nginx spooled to a file).
 */
#define LM_BODY_BUFFER_MAX ((size_t)1 << 20)
lm_str_t lm_ctx_request_body(lm_ctx_t *ctx);
/*
 * A field of the body as Kong's kong.request.get_body() sees it, by
 * Content-Type (prefix, case-insensitive):
 *   application/x-www-form-urlencoded  name=value pairs split on '&', '+' and %XX decoded;
 *                                      a bare "name" is LM_BODY_FIELD_OTHER (Lua true)
 *   multipart/form-data                the part whose Content-Disposition has name="name"
 *                                      (the last one when repeated, as lua-multipart)
 *   application/json                   a member of the top-level object (strings
 *                                      unescaped; the last one when repeated, as cjson)
 * Returns LM_BODY_FIELD_NONE (absent, no usable body, other content type),
 * LM_BODY_FIELD_STRING (*value set, request arena), LM_BODY_FIELD_MULTI (a
 * repeated form argument, or a JSON object/array: Lua's table) or
 * LM_BODY_FIELD_OTHER (a JSON number/boolean/null, a bare form argument).
 */
enum { LM_BODY_FIELD_NONE, LM_BODY_FIELD_STRING, LM_BODY_FIELD_MULTI, LM_BODY_FIELD_OTHER };
int lm_ctx_body_field(lm_ctx_t *ctx, lm_str_t name, lm_str_t *value);
/* Content-Type is one lm_ctx_body_field understands and the body is available. */
bool lm_ctx_body_parsable(lm_ctx_t *ctx);

const lm_route_t *lm_ctx_route(lm_ctx_t *ctx);     /* NULL before routing / no route */
const lm_service_t *lm_ctx_service(lm_ctx_t *ctx); /* NULL when the route has none */
const lm_config_t *lm_ctx_config(lm_ctx_t *ctx);

/* ---- request: change what the upstream gets ----------------------------- */
void lm_ctx_set_header(lm_ctx_t *ctx, lm_str_t name, lm_str_t value); /* replaces every one */
void lm_ctx_add_header(lm_ctx_t *ctx, lm_str_t name, lm_str_t value);
void lm_ctx_remove_header(lm_ctx_t *ctx, lm_str_t name);
/* Removes every query argument with this name from the upstream request. */
void lm_ctx_remove_query_arg(lm_ctx_t *ctx, lm_str_t name);
/* Replaces the body the upstream gets (sent with Content-Length); only when
 * the body is available (lm_ctx_request_body ptr != NULL): false otherwise. */
bool lm_ctx_set_request_body(lm_ctx_t *ctx, lm_str_t body);
/* Removes every field `name` from a form or JSON body (the content types of
 * lm_ctx_body_field), keeping the rest of it byte for byte. */
void lm_ctx_remove_body_field(lm_ctx_t *ctx, lm_str_t name);
/* The method the upstream gets (Kong's kong.service.request.set_method);
 * "HEAD" also means the upstream's answer has no body. */
void lm_ctx_set_method(lm_ctx_t *ctx, lm_str_t method);
/* The path the upstream gets, as sent (Kong's set_path / upstream_uri):
 * replaces the one strip_path, path_handling and the service path make. */
void lm_ctx_set_path(lm_ctx_t *ctx, lm_str_t path);
/* The whole query string the upstream gets, without '?' (Kong's
 * set_raw_query); "" sends none. lm_ctx_remove_query_arg still applies. */
void lm_ctx_set_raw_query(lm_ctx_t *ctx, lm_str_t query);
/* A capture of the matched route's regex path, by group name or number
 * ("0" is the whole match); false when there is no such capture. */
bool lm_ctx_uri_capture(lm_ctx_t *ctx, lm_str_t name, lm_str_t *value);
/* The address and port the request arrived on (ip: at least 48 bytes). */
void lm_ctx_server_addr(lm_ctx_t *ctx, char *ip, size_t iplen, int *port);
/* A number identifying the client connection among open ones, and how many
 * requests it has carried including this one (nginx's $connection,
 * $connection_requests). */
uint64_t lm_ctx_connection_id(lm_ctx_t *ctx);
uint64_t lm_ctx_connection_requests(lm_ctx_t *ctx);

/* ---- consumers and credentials ------------------------------------------ */
const lm_consumer_t *lm_ctx_consumer(lm_ctx_t *ctx);
/* Finds a credential of `kind` ("keyauth_credentials", "basicauth_credentials",
 * "jwt_secrets", "hmacauth_credentials") by its lookup field (key, username,
 * key, username respectively) in the snapshot's index. */
const lm_credential_t *lm_ctx_find_credential(lm_ctx_t *ctx, const char *kind, lm_str_t value);
/* Every acl group of a consumer: *n groups (snapshot memory). */
const char *const *lm_ctx_consumer_groups(lm_ctx_t *ctx, const lm_consumer_t *c, size_t *n);
/* Consumer by id or username (for `anonymous`), or NULL. */
const lm_consumer_t *lm_ctx_find_consumer(lm_ctx_t *ctx, const char *id_or_username);
/*
 * Marks the request authenticated (Kong's set_consumer): sets X-Consumer-ID,
 * X-Consumer-Username, X-Consumer-Custom-ID (each removed when the consumer
 * has no such field), X-Credential-Identifier (credential_id, or removed; it must
 * live until the request ends: snapshot or request memory) and
 * removes X-Anonymous-Consumer; with anonymous = true sets
 * X-Anonymous-Consumer: true and no credential.
 */
void lm_ctx_set_consumer(lm_ctx_t *ctx, const lm_consumer_t *c, const char *credential_id, bool anonymous);
bool lm_ctx_is_anonymous(lm_ctx_t *ctx);
/* The identifier of the authenticating credential, or NULL. */
const char *lm_ctx_credential_id(lm_ctx_t *ctx);

/* ---- responses ---------------------------------------------------------- */
/*
 * Ends the request with a response from the proxy (Kong's kong.response.exit):
 * message != NULL gives Kong's JSON body {"message": message},
 * else body/body_len with content_type. extra_headers: "Name: value\r\n" lines
 * or NULL. Returns LM_PLUGIN_DONE for the phase callback to return.
 */
int lm_ctx_exit(lm_ctx_t *ctx, int status, const char *message, const char *extra_headers);
int lm_ctx_exit_body(lm_ctx_t *ctx, int status, const char *content_type, const char *body, size_t body_len,
                     const char *extra_headers);

/* ---- response head (header_filter) ---------------------------------------- */
int lm_ctx_status(lm_ctx_t *ctx);
bool lm_ctx_resp_header(lm_ctx_t *ctx, lm_str_t name, lm_str_t *value);
void lm_ctx_resp_set_header(lm_ctx_t *ctx, lm_str_t name, lm_str_t value);
void lm_ctx_resp_add_header(lm_ctx_t *ctx, lm_str_t name, lm_str_t value);
void lm_ctx_resp_remove_header(lm_ctx_t *ctx, lm_str_t name);
/* Every response header in order: false when i is past the end. */
bool lm_ctx_resp_header_at(lm_ctx_t *ctx, size_t i, lm_str_t *name, lm_str_t *value);
/* Changes the response status from header_filter (Kong's kong.response.exit
 * with no body there): the body, if any, is still the one being answered. */
void lm_ctx_resp_set_status(lm_ctx_t *ctx, int status);

/* ---- log phase (what Kong's log serializer and prometheus read) ---------- */
/* Latencies in ms, as Kong's log record has them: request (the whole
 * request, first byte in to last byte out), proxy (waiting for the
 * upstream: request sent to response head; -1 when nothing was proxied),
 * receive (upstream response head to the end of its body), kong (the time
 * spent in the proxy itself: before the upstream got the request, plus
 * receive; for an answer the proxy or a plugin made, the whole request). */
typedef struct {
    int64_t request, kong, proxy, receive;
} lm_ctx_latencies_t;
void lm_ctx_latencies(lm_ctx_t *ctx, lm_ctx_latencies_t *out);
/* When the request started, in ms since the epoch (Kong's started_at). */
int64_t lm_ctx_started_at(lm_ctx_t *ctx);
/* Bytes received from the client for this request (head and body) and sent
 * to it (head and body) so far: the whole response in the log phase. */
uint64_t lm_ctx_request_size(lm_ctx_t *ctx);
uint64_t lm_ctx_response_size(lm_ctx_t *ctx);
/* How many upstream tries the request made (0: never proxied), and the
 * address of the last one (false when there was none; ip: 48 bytes). */
int lm_ctx_tries(lm_ctx_t *ctx);
bool lm_ctx_upstream_addr(lm_ctx_t *ctx, char *ip, size_t iplen, int *port);
/* The path and query the upstream got ({NULL, 0} when nothing was sent). */
lm_str_t lm_ctx_upstream_uri(lm_ctx_t *ctx);
/* The request id (the client's X-Request-Id or ours). */
const char *lm_ctx_request_id(lm_ctx_t *ctx);
/* Who answered (Kong's kong.response.get_source): "service" (the upstream),
 * "exit" (a plugin, lm_ctx_exit) or "error" (the proxy: no route, 502, ...). */
const char *lm_ctx_response_source(lm_ctx_t *ctx);

/* ---- per-request plugin data ------------------------------------------------ */
/* Keeps a value for the rest of the request (e.g. from access to
 * header_filter), keyed by any address the plugin owns (e.g. &my_ops). */
void lm_ctx_set(lm_ctx_t *ctx, const void *key, void *value);
void *lm_ctx_get(lm_ctx_t *ctx, const void *key); /* NULL when unset */

/* ---- memory --------------------------------------------------------------- */
void *lm_ctx_alloc(lm_ctx_t *ctx, size_t size); /* request arena, freed when the request ends */
lm_arena_t *lm_ctx_arena(lm_ctx_t *ctx);

#endif /* LM_PLUGIN_H */

/*
 * lm_config.h - Kong's declarative configuration (DB-less kong.yml), the one
 * document shared by the controller and the data plane.
 *
 * Pipeline: bytes (YAML or JSON) --lm_config_parse--> document tree (cJSON)
 *           --lm_config_build--> validated model (lm_config_t) with every
 *           error reported with its path.
 * The model is read-only once built and lives in its own arena; the data
 * plane compiles it into a snapshot, the controller only validates it.
 *
 * Accepted: _format_version "3.0" and "2.1" ("1.1" too, as Kong does);
 * entities nested (services[].routes[], services[].plugins[], routes[].plugins[],
 * consumers[].plugins[], consumers[].keyauth_credentials[], upstreams[].targets[],
 * certificates[].snis[]) or top level with references by name or id.
 * Unknown top-level keys and unknown entity fields are errors, as in Kong.
 */
#ifndef LM_CONFIG_H
#define LM_CONFIG_H

#include "lm_core.h"
#include "lm_arena.h"

#include <cjson/cJSON.h>

/* ---- errors ---------------------------------------------------------- */

typedef struct lm_config_error {
    char *path;        /* e.g. "services[2].routes[0].paths[1]" ("" = document) */
    char *message;     /* Kong's wording where Kong has one */
    char *entity_type; /* "service", "route", ... or NULL */
    char *entity_name; /* name/username/id of the entity, or NULL */
    char *field;       /* field path inside the entity ("paths[1]"), or NULL */
    /* added: what Kong's flattened_errors also carries (the controller maps
     * errors back to Kubernetes objects by tags); NULL / 0 when unknown */
    char *entity_id;
    char **entity_tags; size_t num_entity_tags;
} lm_config_error_t;

typedef struct {
    lm_config_error_t *items;
    size_t count, cap;
} lm_config_errors_t;

/* An error list keeps at most this many errors, then one closing
 * "too many errors: only the first N are reported" (path ""). */
#define LM_CONFIG_MAX_ERRORS 1000

void lm_config_errors_init(lm_config_errors_t *e);
void lm_config_errors_free(lm_config_errors_t *e);
void lm_config_errors_add(lm_config_errors_t *e, const char *path, const char *entity_type,
                          const char *entity_name, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* Sets id and tags of the most recently added error (copies them). */
void lm_config_errors_set_entity(lm_config_errors_t *e, const char *entity_id,
                                 const char *const *tags, size_t num_tags);
/* One line per error, "path: message\n", for logs and CLIs (caller frees). */
char *lm_config_errors_format(const lm_config_errors_t *e);
/*
 * Kong-shaped error body for POST /config:
 *   {"code":14,"name":"invalid declarative configuration",
 *    "message":"declarative config is invalid: ...",
 *    "fields":{...nested like the document...},
 *    "flattened_errors":[{"entity_type":..,"entity_name":..,"errors":[{"field":..,"message":..,"type":"field"}]}]}
 * Each flattened error also carries our "path". Caller frees with cJSON_Delete.
 * In "fields" arrays are JSON arrays padded with null, entity-level errors
 * sit under "@entity"; a flattened "field" uses Kong's notation ("paths.2",
 * dots, 1-based) while "path" keeps ours ("services[0].routes[0].paths[1]").
 * Errors outside any entity (e.g. _format_version) appear in "fields" only,
 * as in Kong; entity_id / entity_tags are present when known.
 */
cJSON *lm_config_errors_to_json(const lm_config_errors_t *e);

/* ---- model ----------------------------------------------------------- */

typedef struct lm_service lm_service_t;
typedef struct lm_route lm_route_t;
typedef struct lm_consumer lm_consumer_t;

/* A stream route's source or destination: Kong's {ip, port}, at least one set. */
typedef struct {
    char *ip;      /* address or CIDR ("10.0.0.0/8", "::1"), as given; NULL: any address */
    int port;      /* 0..65535; -1: any port */
} lm_route_endpoint_t;

typedef struct {
    char *name;    /* lower-cased */
    char **values; /* values[0..num_values) ; a value starting with "~*" is a regex */
    size_t num_values;
} lm_route_header_t;

struct lm_service {
    size_t index;     /* position in lm_config_t.services */
    char *id;         /* given, or generated (see lm_config_uuid) */
    char *name;       /* may be NULL */
    char *protocol;   /* "http" (default), "https", "grpc", "grpcs", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss" */
    char *host;       /* required */
    int port;         /* default 80 (443 for https/grpcs/wss) */
    char *path;       /* NULL or starts with '/' */
    int retries;          /* default 5 */
    int connect_timeout;  /* ms, default 60000 */
    int write_timeout;    /* ms, default 60000 */
    int read_timeout;     /* ms, default 60000 */
    bool enabled;         /* default true */
    bool tls_verify_set, tls_verify;
    int tls_verify_depth; /* -1 when unset */
    char *client_certificate; /* id/name reference or NULL */
    char **ca_certificates; size_t num_ca_certificates;
    char **tags; size_t num_tags;
};

struct lm_route {
    size_t index;     /* position in lm_config_t.routes (document order) */
    char *id;
    char *name;
    lm_service_t *service; /* may be NULL (Kong allows service-less routes; they answer 503) */
    char **protocols; size_t num_protocols; /* default {"http","https"} */
    char **methods; size_t num_methods;     /* upper-case */
    char **hosts; size_t num_hosts;         /* lower-cased; may hold one leading or trailing '*', may carry ":port" */
    char **paths; size_t num_paths;         /* NEVER carry the "~": a 3.0 "~/x" is stored as "/x"
                                               with path_is_regex = true */
    bool *path_is_regex;                    /* per path. 3.0: the path had the "~" prefix (a
                                               "/a(b)" without "~" is a plain prefix). 2.1/1.1:
                                               detected like Kong's 3.0 migration: a regex iff
                                               it holds a byte outside [A-Za-z0-9._~/%-] */
    lm_route_header_t *headers; size_t num_headers;
    char **snis; size_t num_snis;
    lm_route_endpoint_t *sources; size_t num_sources;           /* stream routes: the client's address */
    lm_route_endpoint_t *destinations; size_t num_destinations; /* the local address it connected to */
    int https_redirect_status_code; /* default 426 */
    int regex_priority;             /* default 0 */
    bool strip_path;                /* default true */
    bool preserve_host;             /* default false */
    bool request_buffering, response_buffering; /* default true */
    char *path_handling;            /* "v0" (default) or "v1" */
    char **tags; size_t num_tags;
};

struct lm_consumer {
    size_t index;
    char *id;
    char *username;  /* at least one of username / custom_id */
    char *custom_id;
    char **tags; size_t num_tags;
};

typedef struct {
    size_t index;
    char *id;
    char *name;          /* plugin name, e.g. "key-auth" */
    char *instance_name; /* or NULL */
    bool enabled;        /* default true */
    lm_service_t *service;   /* scope; NULL = any */
    lm_route_t *route;
    lm_consumer_t *consumer;
    cJSON *config;       /* the config object as given (owned by the document tree); {} if absent */
    char **protocols; size_t num_protocols;
    char **tags; size_t num_tags;
    char *path;          /* where it is in the document, e.g. "services[0].plugins[1]" (for errors) */
} lm_plugin_t;

/* A plugin-owned credential (keyauth_credentials, basicauth_credentials,
 * jwt_secrets, hmacauth_credentials, acls, ...) kept structurally. */
typedef struct {
    size_t index;
    char *kind;              /* the document key, e.g. "keyauth_credentials" */
    char *id;
    lm_consumer_t *consumer; /* required */
    cJSON *fields;           /* the entity object (owned by the document tree) */
} lm_credential_t;

typedef struct {
    char *target;  /* "host:port" (port defaults to 8000 as in Kong) */
    char *host;
    int port;
    int weight;    /* 0..65535, default 100 */
    char **tags; size_t num_tags;
} lm_target_t;

typedef struct {
    size_t index;
    char *id;
    char *name;            /* required; a service whose host equals this name balances over it */
    char *algorithm;       /* "round-robin" (default), "consistent-hashing", "least-connections", "latency" */
    char *hash_on, *hash_fallback; /* default "none" */
    char *hash_on_header, *hash_fallback_header, *hash_on_cookie, *hash_on_cookie_path,
         *hash_on_query_arg, *hash_fallback_query_arg, *hash_on_uri_capture, *hash_fallback_uri_capture;
    int slots;             /* default 10000, 10..65536 */
    char *host_header;
    char *client_certificate; /* added: id reference or NULL */
    bool use_srv_name;     /* added: default false */
    cJSON *healthchecks;   /* as given, or NULL (types checked shallowly) */
    lm_target_t *targets; size_t num_targets;
    char **tags; size_t num_tags;
} lm_upstream_t;

typedef struct {
    size_t index;
    char *id;
    char *cert, *key;         /* PEM; required */
    char *cert_alt, *key_alt; /* optional second (e.g. ECDSA) pair */
    char **snis; size_t num_snis; /* names attached (nested or via top-level snis) */
    char **tags; size_t num_tags;
} lm_certificate_t;

typedef struct {
    size_t index;
    char *id;
    char *cert; /* PEM; required */
    char *cert_digest;
    char **tags; size_t num_tags;
} lm_ca_certificate_t;

typedef struct {
    lm_arena_t *arena;     /* owns every string and array below */
    cJSON *doc;            /* the parsed document (owned; freed by lm_config_free) */
    char *format_version;  /* "3.0", "2.1", ... */
    char hash[33];         /* md5 hex of the canonical JSON form of doc */
    char *canonical_json;  /* that form (the document as given, before defaults); cJSON_free'd by
                            * lm_config_free unless a caller takes it (set it to NULL then) */

    lm_service_t **services; size_t num_services;
    lm_route_t **routes; size_t num_routes;          /* nested and top-level, document order */
    lm_consumer_t **consumers; size_t num_consumers;
    lm_plugin_t **plugins; size_t num_plugins;
    lm_credential_t **credentials; size_t num_credentials;
    lm_upstream_t **upstreams; size_t num_upstreams;
    lm_certificate_t **certificates; size_t num_certificates;
    lm_ca_certificate_t **ca_certificates; size_t num_ca_certificates;
} lm_config_t;

/* ---- API ------------------------------------------------------------- */

typedef struct {
    bool substitute_env; /* replace ${VAR} in string values (files loaded from disk); unset var = error */
} lm_config_opts_t;
/*
 * ${VAR} is our extension (Kong has none in kong.yml; its "{vault://...}"
 * references are left untouched): only in string values, never in keys;
 * VAR is [A-Za-z_][A-Za-z0-9_]*; "$${" writes a literal "${"; any other "$"
 * is kept. An unset variable or a malformed "${...}" is an error naming the
 * variable and the value's path. The hash is taken after substitution.
 */

/*
 * Parses YAML or JSON (JSON when the first non-blank byte is '{') into a
 * cJSON tree. YAML plain scalars follow the YAML 1.2 core schema (true/false,
 * null/~, integers, floats); quoted scalars are strings. Anchors and aliases
 * are resolved; duplicate keys are errors. Returns NULL with errors added.
 */
cJSON *lm_config_parse(const char *data, size_t len, const lm_config_opts_t *opts,
                       lm_config_errors_t *errs);

/*
 * Validates a document tree and builds the model. Takes ownership of doc
 * (also on failure). Returns NULL when there is at least one error; every
 * error found is reported, not only the first.
 */
lm_config_t *lm_config_build(cJSON *doc, lm_config_errors_t *errs);

/* parse + build */
lm_config_t *lm_config_load(const char *data, size_t len, const lm_config_opts_t *opts,
                            lm_config_errors_t *errs);
/* reads a file, then lm_config_load with substitute_env = true */
lm_config_t *lm_config_load_file(const char *path, lm_config_errors_t *errs);

void lm_config_free(lm_config_t *cfg);

/*
 * Replaces every secret in a document tree with "<redacted>": credential
 * keys, passwords and secrets (keyauth_credentials.key, basicauth_credentials.password,
 * jwt_secrets.secret, hmacauth_credentials.secret, oauth2 client_secret),
 * certificate private keys (key, key_alt) and any plugin config field named
 * password, secret or ending in _password / _secret. Used where a document
 * leaves the process over anything but the local admin socket.
 */
void lm_config_redact(cJSON *doc);
/* Only certificates[].key and key_alt (what even the local admin socket never shows). */
void lm_config_redact_private_keys(cJSON *doc);

/* lookups by id or name (NULL if none) */
lm_service_t *lm_config_find_service(const lm_config_t *cfg, const char *id_or_name);
lm_upstream_t *lm_config_find_upstream(const lm_config_t *cfg, const char *name);
/* added: by id, username or custom_id */
lm_consumer_t *lm_config_find_consumer(const lm_config_t *cfg, const char *key);

/* added: a name-based (MD5, version 3) UUID from seed, lower-case. The
 * builder gives every entity the document leaves without an id one made
 * from "TYPE:name:NAME" (services, routes, consumers, upstreams with a name)
 * or "TYPE@PATH" (e.g. "plugin@services[0].plugins[1]"), and writes it into
 * the document tree too (cfg->doc; not into the hash or canonical_json). */
void lm_config_uuid(const char *seed, char out[37]);

/* added: true for the plugin names the build accepts (Kong's bundled list);
 * others are reported "plugin 'x' not enabled; add it to the 'plugins'
 * configuration property", as Kong does. */
bool lm_config_plugin_known(const char *name);
/* Makes a plugin name known (an external plugin loaded at start-up, before
 * any configuration is built; the string must live as long as the process). */
int lm_config_add_plugin_name(const char *name);

#endif /* LM_CONFIG_H */

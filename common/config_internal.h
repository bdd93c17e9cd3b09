/*
 * config_internal.h - private to config_build.c and config_entities.c: the
 * builder that turns a document tree into an lm_config_t. Not a public API.
 */
#ifndef LM_CONFIG_INTERNAL_H
#define LM_CONFIG_INTERNAL_H

#include "lm_config.h"

/* string -> pointer hash map, storage in the scratch arena */
typedef struct {
    const char *key;
    void *val;
    uint64_t hash;
} lm__slot_t;

typedef struct {
    lm__slot_t *slots;
    size_t cap, n;
} lm__map_t;

/* vector of pointers, storage in the scratch arena */
typedef struct {
    void **v;
    size_t n, cap;
} lm__vec_t;

/* the entity being validated: what every error about it carries */
typedef struct {
    const char *type;   /* "service" */
    const char *plural; /* "services" */
    const char *path;   /* "services[2]" */
    const char *name;   /* for messages; may be NULL */
    const char *id;
    const char *const *tags;
    size_t num_tags;
    const cJSON *obj;
} lm__ent_t;

/* a reference waiting for every entity to be known */
typedef struct {
    lm__ent_t ent;
    const cJSON *ref; /* string or {id|name}; NULL = none */
    void *owner;      /* the model object that holds the reference */
    void *extra;
} lm__pending_t;

typedef struct {
    lm_config_t *cfg;
    lm_arena_t *a;   /* the model's arena */
    lm_arena_t *tmp; /* scratch, destroyed when the build ends */
    lm_config_errors_t *errs;
    bool v3;         /* _format_version "3.0" (paths carry "~") */

    lm__vec_t services, routes, consumers, plugins, credentials, upstreams, certificates,
        ca_certificates;
    /* pending references */
    lm__vec_t route_refs, plugin_refs, cred_refs, target_refs, sni_refs, service_refs,
        upstream_refs;

    lm__map_t service_by_id, service_by_name, route_by_id, route_by_name, consumer_by_id,
        consumer_by_username, consumer_by_custom_id, plugin_by_id, upstream_by_id,
        upstream_by_name, cert_by_id, ca_by_id, sni_by_name, sni_by_id, target_by_id,
        cred_by_id, cred_unique, gen_ids;
} lm__b_t;

/* helpers (config_build.c) */
void *lm__map_get(const lm__map_t *m, const char *key);
/* inserts unless present; returns the value already there, or NULL */
void *lm__map_put(lm__b_t *b, lm__map_t *m, const char *key, void *val);
void lm__vec_push(lm__b_t *b, lm__vec_t *v, void *item);

void lm__ferr(lm__b_t *b, const lm__ent_t *e, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void lm__ent_init(lm__b_t *b, lm__ent_t *e, const char *type, const char *plural,
                  const char *path, const cJSON *obj, const char *name_key);
/* reports every key of the entity not in `allowed` (NULL-terminated) */
void lm__check_fields(lm__b_t *b, const lm__ent_t *e, const char *const *allowed);
const cJSON *lm__fget(const cJSON *obj, const char *key); /* NULL when absent or null */
char *lm__get_str(lm__b_t *b, const lm__ent_t *e, const char *key, bool required);
bool lm__get_int(lm__b_t *b, const lm__ent_t *e, const char *key, long long def, long long min,
                 long long max, long long *out);
bool lm__get_bool(lm__b_t *b, const lm__ent_t *e, const char *key, bool def, bool *out);
char *lm__get_enum(lm__b_t *b, const lm__ent_t *e, const char *key, const char *const *vals,
                   const char *def);
char **lm__get_str_array(lm__b_t *b, const lm__ent_t *e, const char *key, size_t *n);
void lm__get_tags(lm__b_t *b, const lm__ent_t *e, char ***tags, size_t *n);
char *lm__get_id(lm__b_t *b, const lm__ent_t *e);
void lm__check_unique(lm__b_t *b, const lm__ent_t *e, lm__map_t *m, const char *field,
                      const char *value, void *obj);
void lm__add_pending(lm__b_t *b, lm__vec_t *v, const lm__ent_t *e, const cJSON *ref, void *owner,
                     void *extra);
/* resolves a reference (string or {id|name}) against the maps; reports
 * "invalid reference" on e's `field` when not found */
void *lm__resolve(lm__b_t *b, const lm__ent_t *e, const char *field, const cJSON *ref,
                  const lm__map_t *by_name, const lm__map_t *by_id, const char *plural);
/* checks an array field of nested entities; calls fn for each record */
void lm__each(lm__b_t *b, const lm__ent_t *parent, const cJSON *obj, const char *key,
              void (*fn)(lm__b_t *b, const cJSON *item, const char *path, void *parent),
              void *parent_obj);

/* shared helpers (config_fields.c) */
extern const char *const lm__protocols[]; /* every protocol a service or route may name */
bool lm__is_integer(const cJSON *v);
char *lm__one_of_list(lm__b_t *b, const char *const *vals);
bool lm__in(const char *s, const char *const *vals);
char *lm__get_name(lm__b_t *b, const lm__ent_t *e, const char *key, bool required);
char **lm__get_protocols(lm__b_t *b, const lm__ent_t *e, size_t *n,
                                const char *const *def, size_t ndef);
bool lm__has(char **list, size_t n, const char *s);

/* cJSON_PrintUnformatted(doc)'s text, faster (cJSON_free it); NULL on failure */
char *lm__print_canonical(const cJSON *doc);

/* validators (config_entities.c): NULL when valid, else Kong's message */
const char *lm__check_hostname(lm__b_t *b, const char *host, bool allow_port, bool allow_wildcard,
                               bool allow_ip);
const char *lm__check_path(lm__b_t *b, const char *path); /* plain path (RFC 3986 + %xx) */
const char *lm__check_header_name(lm__b_t *b, const char *name);
bool lm__is_ip(const char *s);
bool lm__is_uuid(const char *s);

/* entity builders (config_entities.c) */
void lm__build_upstream(lm__b_t *b, const cJSON *item, const char *path, void *parent);
void lm__build_target(lm__b_t *b, const cJSON *item, const char *path, void *parent);
void lm__build_certificate(lm__b_t *b, const cJSON *item, const char *path, void *parent);
void lm__build_sni(lm__b_t *b, const cJSON *item, const char *path, void *parent);
void lm__build_ca_certificate(lm__b_t *b, const cJSON *item, const char *path, void *parent);
void lm__resolve_entities(lm__b_t *b); /* targets, snis, client certificates */

#endif /* LM_CONFIG_INTERNAL_H */

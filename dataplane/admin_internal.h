/*
 * admin_internal.h - private to the entity endpoints (admin_api.c: routing,
 * writes, answers; admin_entities.c: the entity kinds, the flat document,
 * rendering; admin_form.c: request bodies in Kong's flattened notation).
 * Not a public API.
 *
 * The flat document: every entity of the running configuration at the top
 * level of one declarative document ("_format_version": "3.0"), each with its
 * id, references as {"id": ...}, services' `url` expanded, route paths in
 * 3.0 form, every field the document gave kept (created_at and updated_at
 * included). Writes change a copy of it and apply the whole document through
 * lm_apply_start, so an entity write and POST /config take the same path.
 */
#ifndef LM_ADMIN_INTERNAL_H
#define LM_ADMIN_INTERNAL_H

#include "lm_config.h"

#include <cjson/cJSON.h>

/* field types (rendering defaults and form coercion) */
enum {
    LM_AF_STR = 's',
    LM_AF_NUM = 'i',
    LM_AF_BOOL = 'b',
    LM_AF_STRS = 'a',    /* array of strings */
    LM_AF_REF = 'r',     /* foreign key: {"id": ...} */
    LM_AF_HEADERS = 'm', /* map of string arrays */
    LM_AF_JSON = 'j',    /* any JSON (sources, destinations) */
    LM_AF_CONFIG = 'P',  /* plugin config: the plugin's schema */
    LM_AF_HEALTH = 'H',  /* upstream healthchecks */
};

typedef struct {
    const char *name;
    char type;
    const char *def; /* default as JSON text; NULL: null; "-": left out when absent */
} lm_afield_t;

typedef struct lm_akind {
    const char *name;         /* document key and Kong's schema name: "services", "keyauth_credentials" */
    const char *type;         /* entity type in errors: "service" */
    const char *seg;          /* top-level URL segment ("services", "key-auths"); NULL: none (targets) */
    const char *nested_seg;   /* URL segment under a parent ("routes", "key-auth") */
    const char *endpoint_key; /* addressable by this field as well as by id, or NULL */
    const char *unique[3];    /* fields unique across the kind (409) */
    const char *parent;       /* foreign field set by nested endpoints for non-plugins ("service", ...) */
    const lm_afield_t *fields;
} lm_akind_t;

/* ---- admin_entities.c ---- */
const lm_akind_t *lm_akind_by_name(const char *name);
const lm_akind_t *lm_akind_by_seg(const char *seg, size_t len, bool nested);
const lm_akind_t *const *lm_akinds(void); /* NULL-terminated */
const lm_afield_t *lm_akind_field(const lm_akind_t *k, const char *name);

/* The flat document of a built configuration (new tree, caller deletes). */
cJSON *lm_admin_flatten(const lm_config_t *cfg);
/* The array of kind k in flat (created when absent). */
cJSON *lm_admin_flat_list(cJSON *flat, const lm_akind_t *k);
/* An entity of kind k by id, or by its endpoint key (NULL when none). */
cJSON *lm_admin_flat_find(cJSON *flat, const lm_akind_t *k, const char *key, int *index);
/* The id of the entity a reference ({"id": x}) names, or NULL. */
const char *lm_admin_ref_id(const cJSON *ent, const char *field);
/* The entity as Kong shows it: every field, defaults filled (new object). */
cJSON *lm_admin_render(const lm_akind_t *k, const cJSON *ent, const cJSON *flat, bool trusted);
/* true when the tag filter ("a,b": all of them, "a/b": any) matches */
bool lm_admin_tags_match(const cJSON *ent, const char *filter);
/* A random (version 4) UUID. */
void lm_admin_uuid4(char out[37]);
bool lm_admin_is_uuid(const char *s);

/* ---- admin_form.c ---- */
/*
 * A request body as an object: JSON as is; application/x-www-form-urlencoded
 * and multipart/form-data in Kong's flattened notation (a.b=1, a[]=x, a[2]=y,
 * a repeated name makes an array). NULL with *err (static text) on a body
 * that cannot be read; an empty body is {}. *form tells whether values are
 * strings still to be coerced.
 */
cJSON *lm_admin_decode_body(const char *ctype, size_t ctype_len, const char *body, size_t len,
                            bool *form, const char **err);
/* The query string as an object (same notation). */
cJSON *lm_admin_decode_query(const char *q, size_t len);
/* Coerces form strings by the kind's field types (numbers, booleans, arrays,
 * "" = null) and, for plugins, the plugin's config schema. */
void lm_admin_coerce(const lm_akind_t *k, cJSON *args);

/* ---- admin_api.c ---- */
/* Kong's error body {"code", "name", "message"} */
cJSON *lm_admin_err(int code, const char *name, const char *message);
/* Kong's schema violation (code 2) from the errors of the entity at prefix
 * ("services[3]"); other errors go under "@entity" with their path. */
cJSON *lm_admin_schema_violation(const lm_config_errors_t *errs, const char *prefix);

/* ---- admin_schemas.c ---- */
struct lm_admin_call;
/* GET /schemas/{entity}, GET /schemas/plugins/{name}, POST /schemas/.../validate,
 * GET /plugins/enabled (seg[0..n) are the decoded path segments) */
int lm_admin_schemas(struct lm_admin_call *call, char **seg, size_t n);

#endif

/*
 * lm_schema.h - declarative schemas for plugin configurations (and any other
 * free-form record): types, defaults, required fields, ranges, allowed
 * values, nested records, arrays and maps, with Kong's error wording.
 *
 * A schema is a NULL-terminated array of lm_schema_field_t. lm_schema_apply
 * validates an object against it and returns a copy with every default
 * filled in; every error is reported with its full path
 * ("plugins[2].config.minute") and the entity it belongs to.
 *
 *   static const lm_schema_field_t fields[] = {
 *       { .name = "key_names", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .def = "[\"apikey\"]",
 *         .check = lm_schema_check_header_name },
 *       { .name = "hide_credentials", .type = LM_SF_BOOLEAN, .def = "false" },
 *       { .name = "minute", .type = LM_SF_NUMBER, .min = 0, .has_min = true },
 *       { 0 }
 *   };
 */
#ifndef LM_SCHEMA_H
#define LM_SCHEMA_H

#include "lm_config.h"

typedef enum {
    LM_SF_STRING = 1,
    LM_SF_INTEGER,
    LM_SF_NUMBER,
    LM_SF_BOOLEAN,
    LM_SF_ARRAY,  /* of .elem (records use .fields); also Kong's "set" (.unique = true) */
    LM_SF_MAP,    /* string keys to .elem values */
    LM_SF_RECORD, /* nested object with .fields */
    LM_SF_ANY,    /* any JSON value, kept as is */
} lm_sf_type_t;

typedef struct lm_schema_field lm_schema_field_t;

/* Custom check of one value (after its type was checked): NULL when valid,
 * else the message (static, or in a thread-local buffer of the check). */
typedef const char *(*lm_schema_check_fn)(const cJSON *value);

struct lm_schema_field {
    const char *name;
    lm_sf_type_t type;
    lm_sf_type_t elem;               /* arrays and maps: element type */
    const lm_schema_field_t *fields; /* records, and arrays/maps of records */
    bool required;                   /* missing or null: "required field missing" */
    const char *def;                 /* default as JSON text; NULL: none (the field stays null) */
    bool has_min, has_max;
    double min, max;                 /* numbers: value; strings: length; arrays: element count */
    const char *const *one_of;       /* strings (and string elements): allowed values, NULL-terminated */
    bool unique;                     /* arrays: a set (duplicates are dropped, as Kong does) */
    bool allow_empty;                /* strings: "" is valid (by default, as in Kong, it is not) */
    lm_schema_check_fn check;        /* on the value (for arrays and maps: on each element) */
};

typedef struct {
    lm_config_errors_t *errs;
    const char *path;        /* document path of the record, e.g. "plugins[2].config" */
    const char *entity_type; /* e.g. "plugin" */
    const char *entity_name; /* e.g. "key-auth" */
    const char *field;       /* entity-relative field path of the record, e.g. "config" */
} lm_schema_ctx_t;

/*
 * Validates obj (NULL or JSON null = empty object) against fields.
 * Returns a new object (caller cJSON_Delete's it) holding every declared field:
 * the given value, else its default, else JSON null. NULL when there was an
 * error (each one reported). Unknown fields: "unknown field".
 */
cJSON *lm_schema_apply(const lm_schema_ctx_t *sc, const lm_schema_field_t *fields, const cJSON *obj);

/* Reports an error on a field of the record (field may be "minute" or "key_names[1]"). */
void lm_schema_error(const lm_schema_ctx_t *sc, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ready-made checks */
const char *lm_schema_check_header_name(const cJSON *v); /* an HTTP token */
const char *lm_schema_check_regex(const cJSON *v);       /* compiles with PCRE2 */
const char *lm_schema_check_cidr(const cJSON *v);        /* IPv4/IPv6 address or CIDR */

/* accessors for compiled configs (fields exist after lm_schema_apply) */
const char *lm_schema_str(const cJSON *obj, const char *name);   /* NULL when null */
double lm_schema_num(const cJSON *obj, const char *name);        /* 0 when null */
bool lm_schema_bool(const cJSON *obj, const char *name);
const cJSON *lm_schema_get(const cJSON *obj, const char *name);  /* NULL when null */

#endif /* LM_SCHEMA_H */

/*
 * lm_transform.h - pieces the request- and response-transformer plugins
 * share: Kong's "name:value" list entries, split and checked the way Kong's
 * iterators do it (name up to the first ':', then any further ':' and
 * blanks skipped, the rest is the value).
 */
#ifndef LM_TRANSFORM_H
#define LM_TRANSFORM_H

#include "lm_plugin.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    lm_str_t name, value;
} lm_tf_pair_t;

/* a compiled list: every entry of a config array, split */
typedef struct {
    lm_tf_pair_t *v;
    size_t n;
} lm_tf_list_t;

static inline lm_tf_pair_t lm_tf_split(const char *s)
{
    const char *colon = strchr(s, ':');
    if (!colon)
        return (lm_tf_pair_t){ lm_str(s), LM_STR("") };
    const char *v = colon;
    while (*v == ':' || *v == ' ' || *v == '\t')
        v++;
    return (lm_tf_pair_t){ { s, (size_t)(colon - s) }, lm_str(v) };
}

/* The array `field` of the record `rec` of config, split (arena memory). */
static inline lm_tf_list_t lm_tf_list(lm_arena_t *a, const cJSON *config, const char *rec, const char *field)
{
    lm_tf_list_t l = { NULL, 0 };
    const cJSON *r = lm_schema_get(config, rec);
    const cJSON *arr = r ? lm_schema_get(r, field) : NULL;
    if (!arr || !cJSON_GetArraySize(arr))
        return l;
    l.v = lm_arena_calloc(a, (size_t)cJSON_GetArraySize(arr) * sizeof(*l.v));
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) l.v[l.n++] = lm_tf_split(it->valuestring);
    return l;
}

/* "name:value" entries (Kong: a name, a colon, a value that may be empty) */
static inline const char *lm_tf_check_colon(const cJSON *v)
{
    static __thread char msg[320];
    const char *s = v->valuestring;
    const char *colon = strchr(s, ':');
    if (!colon || colon == s) {
        snprintf(msg, sizeof(msg), "invalid value: %.256s", s);
        return msg;
    }
    return NULL;
}

/* header names in "name:value" entries must be HTTP tokens */
static inline const char *lm_tf_check_colon_header(const cJSON *v)
{
    const char *m = lm_tf_check_colon(v);
    if (m)
        return m;
    static __thread char msg[320];
    const char *s = v->valuestring;
    for (const char *p = s; *p != ':'; p++) {
        unsigned char c = (unsigned char)*p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
            snprintf(msg, sizeof(msg), "'%.*s' is not a valid header", (int)(strchr(s, ':') - s), s);
            return msg;
        }
    }
    return NULL;
}

#endif

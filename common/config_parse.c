/*
 * config_parse.c - bytes (YAML or JSON) to a cJSON tree, ${VAR} substitution,
 * lm_config_load / lm_config_load_file. See lm_config.h.
 *
 * YAML goes through libyaml's event API; each node becomes a cJSON node:
 *   - plain scalars follow the YAML 1.2 core schema (null, bool, int in
 *     decimal / 0o / 0x, float incl. .inf/.nan); quoted and block scalars are
 *     strings; the standard tags !!str !!int !!float !!bool !!null are
 *     honoured, any other tag is an error;
 *   - anchors and aliases are resolved by copying the anchored subtree; the
 *     copies count against LM__YAML_MAX_ALIAS_NODES (alias bombs) and the
 *     resulting depth against LM__YAML_MAX_DEPTH;
 *   - duplicate mapping keys and non-scalar keys are errors; only the first
 *     document of a stream is accepted ("multiple documents" otherwise).
 * Parsing stops at the first error; messages carry "line L:C:".
 *
 * Environment substitution (our extension: Kong has no such feature in
 * kong.yml, it has vault references "{vault://env/x}" on some fields, which
 * are left untouched here): in every string value (never in keys),
 * "${NAME}" (NAME = [A-Za-z_][A-Za-z0-9_]*) is replaced by the variable's
 * value; an unset variable is an error naming it and the path; "$${" is a
 * literal "${"; a "$" not followed by "{" is kept as is.
 */
#include "lm_config.h"

#include <yaml.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define LM__YAML_MAX_DEPTH 128
#define LM__YAML_MAX_ALIAS_NODES 1000000
#define LM__CONFIG_MAX_FILE (64u << 20)

/* ---- a growable path: "services[2].routes[0]" ------------------------ */

typedef struct {
    char *buf;
    size_t len, cap;
} lm__pbuf_t;

static void lm__pbuf_reserve(lm__pbuf_t *p, size_t extra)
{
    if (p->len + extra + 1 <= p->cap)
        return;
    size_t cap = p->cap ? p->cap : 64;
    while (cap < p->len + extra + 1)
        cap *= 2;
    char *b = realloc(p->buf, cap);
    if (b == NULL) {
        fprintf(stderr, "limen: out of memory\n");
        abort();
    }
    p->buf = b;
    p->cap = cap;
}

static size_t lm__pbuf_key(lm__pbuf_t *p, const char *key)
{
    size_t old = p->len, kl = strlen(key);
    lm__pbuf_reserve(p, kl + 1);
    if (p->len)
        p->buf[p->len++] = '.';
    memcpy(p->buf + p->len, key, kl);
    p->len += kl;
    p->buf[p->len] = '\0';
    return old;
}

static size_t lm__pbuf_index(lm__pbuf_t *p, size_t i)
{
    size_t old = p->len;
    lm__pbuf_reserve(p, 24);
    p->len += (size_t)snprintf(p->buf + p->len, 24, "[%zu]", i);
    return old;
}

static void lm__pbuf_trunc(lm__pbuf_t *p, size_t len)
{
    p->len = len;
    if (p->buf)
        p->buf[len] = '\0';
}

static const char *lm__pbuf_str(const lm__pbuf_t *p)
{
    return p->buf ? p->buf : "";
}

/* ---- YAML ------------------------------------------------------------ */

typedef struct {
    char *name;
    cJSON *node;
    size_t nodes;  /* nodes in the subtree (for the alias bound) */
    int height;
} lm__anchor_t;

typedef struct {
    yaml_parser_t parser;
    lm_config_errors_t *errs;
    lm__anchor_t *anchors;
    size_t num_anchors, cap_anchors;
    size_t nodes;       /* nodes created so far */
    size_t alias_nodes; /* of which copies made for aliases */
    lm__pbuf_t path;
    bool failed;
} lm__yaml_t;

static void lm__yaml_err(lm__yaml_t *y, const yaml_mark_t *m, const char *fmt, const char *arg)
{
    if (y->failed)
        return;
    y->failed = true;
    char msg[512];
    snprintf(msg, sizeof(msg), fmt, arg ? arg : "");
    lm_config_errors_add(y->errs, lm__pbuf_str(&y->path), NULL, NULL, NULL, "line %zu:%zu: %s",
                         m->line + 1, m->column + 1, msg);
}

static void lm__yaml_parser_err(lm__yaml_t *y)
{
    if (y->failed)
        return;
    y->failed = true;
    const yaml_parser_t *p = &y->parser;
    const yaml_mark_t *m = &p->problem_mark;
    if (p->error == YAML_MEMORY_ERROR) {
        lm_config_errors_add(y->errs, "", NULL, NULL, NULL, "out of memory parsing YAML");
    } else if (p->context) {
        lm_config_errors_add(y->errs, "", NULL, NULL, NULL, "line %zu:%zu: %s %s", m->line + 1,
                             m->column + 1, p->problem ? p->problem : "syntax error", p->context);
    } else {
        lm_config_errors_add(y->errs, "", NULL, NULL, NULL, "line %zu:%zu: %s", m->line + 1,
                             m->column + 1, p->problem ? p->problem : "syntax error");
    }
}

static bool lm__yaml_next(lm__yaml_t *y, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&y->parser, ev)) {
        lm__yaml_parser_err(y);
        return false;
    }
    return true;
}

static bool lm__streq(const char *s, const char *a, const char *b, const char *c)
{
    return strcmp(s, a) == 0 || strcmp(s, b) == 0 || strcmp(s, c) == 0;
}

static bool lm__all_digits(const char *s, const char *set)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (strchr(set, *s) == NULL)
            return false;
    return true;
}

/* YAML 1.2 core schema: int */
static bool lm__core_int(const char *s, double *out)
{
    const char *p = s;
    if (p[0] == '0' && p[1] == 'o' && lm__all_digits(p + 2, "01234567")) {
        *out = (double)strtoull(p + 2, NULL, 8);
        return true;
    }
    if (p[0] == '0' && p[1] == 'x' && lm__all_digits(p + 2, "0123456789abcdefABCDEF")) {
        *out = (double)strtoull(p + 2, NULL, 16);
        return true;
    }
    if (*p == '-' || *p == '+')
        p++;
    if (!lm__all_digits(p, "0123456789"))
        return false;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    *out = errno == ERANGE ? strtod(s, NULL) : (double)v;
    return true;
}

/* YAML 1.2 core schema: float */
static bool lm__core_float(const char *s, double *out)
{
    const char *p = s;
    bool neg = false;
    if (*p == '-' || *p == '+')
        neg = *p++ == '-';
    if (lm__streq(p, ".inf", ".Inf", ".INF")) {
        *out = neg ? -INFINITY : INFINITY;
        return true;
    }
    if (p == s && lm__streq(p, ".nan", ".NaN", ".NAN")) {
        *out = NAN;
        return true;
    }
    /* [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )? */
    const char *q = p;
    size_t digits = 0;
    while (*q >= '0' && *q <= '9')
        q++, digits++;
    if (*q == '.') {
        q++;
        while (*q >= '0' && *q <= '9')
            q++, digits++;
    }
    if (digits == 0)
        return false;
    if (*q == 'e' || *q == 'E') {
        q++;
        if (*q == '-' || *q == '+')
            q++;
        if (!(*q >= '0' && *q <= '9'))
            return false;
        while (*q >= '0' && *q <= '9')
            q++;
    }
    if (*q != '\0')
        return false;
    *out = strtod(s, NULL);
    return true;
}

static cJSON *lm__yaml_scalar(lm__yaml_t *y, const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    if (strlen(v) != len) {
        lm__yaml_err(y, &ev->start_mark, "NUL character in a string%s", NULL);
        return NULL;
    }
    bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    if (tag != NULL && strcmp(tag, "!") == 0)
        return cJSON_CreateString(v); /* non-specific tag on a non-plain scalar */
    if (tag != NULL) {
        double d;
        if (strcmp(tag, YAML_STR_TAG) == 0)
            return cJSON_CreateString(v);
        if (strcmp(tag, YAML_NULL_TAG) == 0)
            return cJSON_CreateNull();
        if (strcmp(tag, YAML_BOOL_TAG) == 0) {
            if (lm__streq(v, "true", "True", "TRUE"))
                return cJSON_CreateTrue();
            if (lm__streq(v, "false", "False", "FALSE"))
                return cJSON_CreateFalse();
            lm__yaml_err(y, &ev->start_mark, "invalid !!bool value '%s'", v);
            return NULL;
        }
        if (strcmp(tag, YAML_INT_TAG) == 0) {
            if (lm__core_int(v, &d))
                return cJSON_CreateNumber(d);
            lm__yaml_err(y, &ev->start_mark, "invalid !!int value '%s'", v);
            return NULL;
        }
        if (strcmp(tag, YAML_FLOAT_TAG) == 0) {
            if (lm__core_int(v, &d) || lm__core_float(v, &d))
                return cJSON_CreateNumber(d);
            lm__yaml_err(y, &ev->start_mark, "invalid !!float value '%s'", v);
            return NULL;
        }
        lm__yaml_err(y, &ev->start_mark, "unsupported tag '%s'", tag);
        return NULL;
    }
    if (!plain)
        return cJSON_CreateString(v);
    double d;
    if (len == 0 || strcmp(v, "~") == 0 || lm__streq(v, "null", "Null", "NULL"))
        return cJSON_CreateNull();
    if (lm__streq(v, "true", "True", "TRUE"))
        return cJSON_CreateTrue();
    if (lm__streq(v, "false", "False", "FALSE"))
        return cJSON_CreateFalse();
    if (lm__core_int(v, &d) || lm__core_float(v, &d))
        return cJSON_CreateNumber(d);
    return cJSON_CreateString(v);
}

static const yaml_char_t *lm__event_anchor(const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_SCALAR_EVENT: return ev->data.scalar.anchor;
    case YAML_SEQUENCE_START_EVENT: return ev->data.sequence_start.anchor;
    case YAML_MAPPING_START_EVENT: return ev->data.mapping_start.anchor;
    default: return NULL;
    }
}

static void lm__yaml_anchor_add(lm__yaml_t *y, const char *name, cJSON *node, size_t nodes,
                                int height)
{
    if (y->num_anchors == y->cap_anchors) {
        size_t cap = y->cap_anchors ? y->cap_anchors * 2 : 8;
        lm__anchor_t *a = realloc(y->anchors, cap * sizeof(*a));
        if (a == NULL) {
            fprintf(stderr, "limen: out of memory\n");
            abort();
        }
        y->anchors = a;
        y->cap_anchors = cap;
    }
    size_t n = strlen(name);
    char *copy = malloc(n + 1);
    if (copy == NULL) {
        fprintf(stderr, "limen: out of memory\n");
        abort();
    }
    memcpy(copy, name, n + 1);
    y->anchors[y->num_anchors++] = (lm__anchor_t){ copy, node, nodes, height };
}

/*
 * Builds the node whose first event is `ev` (consumed by the caller).
 * depth: nesting of this node; *height: levels below and including it.
 */
static cJSON *lm__yaml_node(lm__yaml_t *y, const yaml_event_t *ev, int depth, int *height)
{
    *height = 1;
    if (depth > LM__YAML_MAX_DEPTH) {
        lm__yaml_err(y, &ev->start_mark, "nesting deeper than %s levels", "128");
        return NULL;
    }
    size_t nodes_before = y->nodes;
    cJSON *node = NULL;

    switch (ev->type) {
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        const lm__anchor_t *a = NULL;
        for (size_t i = y->num_anchors; i-- > 0;) {
            if (strcmp(y->anchors[i].name, name) == 0) {
                a = &y->anchors[i];
                break;
            }
        }
        if (a == NULL) {
            lm__yaml_err(y, &ev->start_mark, "unknown anchor '%s'", name);
            return NULL;
        }
        if (depth + a->height - 1 > LM__YAML_MAX_DEPTH) {
            lm__yaml_err(y, &ev->start_mark, "alias '%s' nests deeper than 128 levels", name);
            return NULL;
        }
        y->alias_nodes += a->nodes;
        if (y->alias_nodes > LM__YAML_MAX_ALIAS_NODES) {
            lm__yaml_err(y, &ev->start_mark,
                         "aliases expand to too many nodes (more than 1000000) at '%s'", name);
            return NULL;
        }
        y->nodes += a->nodes;
        *height = a->height;
        return cJSON_Duplicate(a->node, true);
    }
    case YAML_SCALAR_EVENT:
        y->nodes++;
        node = lm__yaml_scalar(y, ev);
        break;
    case YAML_SEQUENCE_START_EVENT: {
        y->nodes++;
        node = cJSON_CreateArray();
        size_t i = 0;
        for (;;) {
            yaml_event_t cev;
            if (!lm__yaml_next(y, &cev))
                goto fail;
            if (cev.type == YAML_SEQUENCE_END_EVENT) {
                yaml_event_delete(&cev);
                break;
            }
            size_t mark = lm__pbuf_index(&y->path, i++);
            int h;
            cJSON *child = lm__yaml_node(y, &cev, depth + 1, &h);
            yaml_event_delete(&cev);
            lm__pbuf_trunc(&y->path, mark);
            if (child == NULL)
                goto fail;
            if (h + 1 > *height)
                *height = h + 1;
            cJSON_AddItemToArray(node, child);
        }
        break;
    }
    case YAML_MAPPING_START_EVENT: {
        y->nodes++;
        node = cJSON_CreateObject();
        for (;;) {
            yaml_event_t kev;
            if (!lm__yaml_next(y, &kev))
                goto fail;
            if (kev.type == YAML_MAPPING_END_EVENT) {
                yaml_event_delete(&kev);
                break;
            }
            if (kev.type != YAML_SCALAR_EVENT) {
                lm__yaml_err(y, &kev.start_mark, "mapping keys must be scalars%s", NULL);
                yaml_event_delete(&kev);
                goto fail;
            }
            const char *key = (const char *)kev.data.scalar.value;
            if (strlen(key) != kev.data.scalar.length) {
                lm__yaml_err(y, &kev.start_mark, "NUL character in a key%s", NULL);
                yaml_event_delete(&kev);
                goto fail;
            }
            if (kev.data.scalar.anchor != NULL) {
                lm__yaml_err(y, &kev.start_mark, "anchors on mapping keys are not supported%s",
                             NULL);
                yaml_event_delete(&kev);
                goto fail;
            }
            if (cJSON_GetObjectItemCaseSensitive(node, key) != NULL) {
                lm__yaml_err(y, &kev.start_mark, "duplicate key '%s'", key);
                yaml_event_delete(&kev);
                goto fail;
            }
            size_t mark = lm__pbuf_key(&y->path, key);
            yaml_event_t vev;
            if (!lm__yaml_next(y, &vev)) {
                yaml_event_delete(&kev);
                goto fail;
            }
            int h;
            cJSON *child = lm__yaml_node(y, &vev, depth + 1, &h);
            yaml_event_delete(&vev);
            lm__pbuf_trunc(&y->path, mark);
            if (child == NULL) {
                yaml_event_delete(&kev);
                goto fail;
            }
            if (h + 1 > *height)
                *height = h + 1;
            cJSON_AddItemToObject(node, key, child);
            yaml_event_delete(&kev);
        }
        break;
    }
    default:
        lm__yaml_err(y, &ev->start_mark, "unexpected YAML event%s", NULL);
        return NULL;
    }
    if (node == NULL)
        return NULL;
    const yaml_char_t *anchor = lm__event_anchor(ev);
    if (anchor != NULL)
        lm__yaml_anchor_add(y, (const char *)anchor, node, y->nodes - nodes_before, *height);
    return node;
fail:
    cJSON_Delete(node);
    return NULL;
}

static cJSON *lm__parse_yaml(const char *data, size_t len, lm_config_errors_t *errs)
{
    lm__yaml_t y;
    memset(&y, 0, sizeof(y));
    y.errs = errs;
    if (!yaml_parser_initialize(&y.parser)) {
        lm_config_errors_add(errs, "", NULL, NULL, NULL, "cannot initialise the YAML parser");
        return NULL;
    }
    yaml_parser_set_input_string(&y.parser, (const unsigned char *)data, len);
    cJSON *root = NULL;
    yaml_event_t ev;
    int stage = 0; /* 0 before the document, 1 root done, 2 document end seen */
    for (;;) {
        if (!lm__yaml_next(&y, &ev))
            goto fail;
        yaml_event_type_t t = ev.type;
        if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (t == YAML_STREAM_START_EVENT || t == YAML_DOCUMENT_START_EVENT) {
            if (t == YAML_DOCUMENT_START_EVENT && stage == 2) {
                lm__yaml_err(&y, &ev.start_mark, "multiple YAML documents are not supported%s",
                             NULL);
                yaml_event_delete(&ev);
                goto fail;
            }
            yaml_event_delete(&ev);
            continue;
        }
        if (t == YAML_DOCUMENT_END_EVENT) {
            stage = 2;
            yaml_event_delete(&ev);
            continue;
        }
        int h;
        root = lm__yaml_node(&y, &ev, 1, &h);
        yaml_event_delete(&ev);
        if (root == NULL)
            goto fail;
        stage = 1;
    }
    if (root == NULL) {
        lm_config_errors_add(errs, "", NULL, NULL, NULL, "expected a declarative configuration");
        goto fail;
    }
    goto done;
fail:
    if (!y.failed && (errs->count == 0))
        lm_config_errors_add(errs, "", NULL, NULL, NULL, "invalid YAML");
    cJSON_Delete(root);
    root = NULL;
done:
    for (size_t i = 0; i < y.num_anchors; i++)
        free(y.anchors[i].name);
    free(y.anchors);
    free(y.path.buf);
    yaml_parser_delete(&y.parser);
    return root;
}

/* ---- JSON ------------------------------------------------------------ */

static void lm__line_col(const char *data, size_t off, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (data[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

/* cJSON keeps duplicate keys; Kong's decoder would silently keep one: we
 * refuse them, like in YAML. */
static bool lm__json_dupkeys(const cJSON *node, lm__pbuf_t *path, lm_config_errors_t *errs,
                             int depth)
{
    if (depth > LM__YAML_MAX_DEPTH) {
        lm_config_errors_add(errs, lm__pbuf_str(path), NULL, NULL, NULL,
                             "nesting deeper than 128 levels");
        return false;
    }
    size_t i = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, node) {
        size_t mark;
        if (cJSON_IsObject(node)) {
            for (const cJSON *d = node->child; d != c; d = d->next) {
                if (strcmp(d->string, c->string) == 0) {
                    lm_config_errors_add(errs, lm__pbuf_str(path), NULL, NULL, NULL,
                                         "duplicate key '%s'", c->string);
                    return false;
                }
            }
            mark = lm__pbuf_key(path, c->string);
        } else {
            mark = lm__pbuf_index(path, i);
        }
        i++;
        bool ok = (!cJSON_IsObject(c) && !cJSON_IsArray(c)) || lm__json_dupkeys(c, path, errs, depth + 1);
        lm__pbuf_trunc(path, mark);
        if (!ok)
            return false;
    }
    return true;
}

/* lm__json_dupkeys without the path: true when it would find nothing to report */
static bool lm__json_dupkeys_ok(const cJSON *node, int depth)
{
    if (depth > LM__YAML_MAX_DEPTH)
        return false;
    bool obj = cJSON_IsObject(node);
    for (const cJSON *c = node->child; c; c = c->next) {
        if (obj)
            for (const cJSON *d = node->child; d != c; d = d->next)
                if (d->string[0] == c->string[0] && strcmp(d->string, c->string) == 0)
                    return false;
        if ((cJSON_IsObject(c) || cJSON_IsArray(c)) && !lm__json_dupkeys_ok(c, depth + 1))
            return false;
    }
    return true;
}

static cJSON *lm__parse_json(const char *data, size_t len, lm_config_errors_t *errs)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(data, len, &end, false);
    if (root == NULL) {
        size_t off = end && end >= data && end <= data + len ? (size_t)(end - data) : 0;
        size_t line, col;
        lm__line_col(data, off, &line, &col);
        lm_config_errors_add(errs, "", NULL, NULL, NULL, "line %zu:%zu: invalid JSON", line, col);
        return NULL;
    }
    size_t off = (size_t)(end - data);
    while (off < len && (data[off] == ' ' || data[off] == '\t' || data[off] == '\r' ||
                         data[off] == '\n' || data[off] == '\0'))
        off++;
    if (off < len) {
        size_t line, col;
        lm__line_col(data, off, &line, &col);
        lm_config_errors_add(errs, "", NULL, NULL, NULL,
                             "line %zu:%zu: unexpected data after the JSON document", line, col);
        cJSON_Delete(root);
        return NULL;
    }
    if (lm__json_dupkeys_ok(root, 1)) /* the common case, without building every path */
        return root;
    lm__pbuf_t path = { 0 };
    bool ok = lm__json_dupkeys(root, &path, errs, 1);
    free(path.buf);
    if (!ok) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* ---- ${VAR} ---------------------------------------------------------- */

/* Returns a malloc'ed substituted copy, or NULL after adding an error. */
static char *lm__subst(const char *s, const char *path, lm_config_errors_t *errs)
{
    size_t cap = strlen(s) + 1, len = 0;
    char *out = malloc(cap);
    if (out == NULL)
        abort();
    for (const char *p = s; *p;) {
        const char *piece = p;
        size_t plen = 1;
        if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
            piece = p + 1; /* "$${" -> "${" */
            plen = 2;
            p += 3;
        } else if (p[0] == '$' && p[1] == '{') {
            const char *name = p + 2, *q = name;
            if ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') || *q == '_') {
                while ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') ||
                       (*q >= '0' && *q <= '9') || *q == '_')
                    q++;
            }
            if (q == name || *q != '}') {
                const char *close = strchr(name, '}');
                int n = close ? (int)(close - name) : (int)strlen(name);
                lm_config_errors_add(errs, path, NULL, NULL, NULL,
                                     "invalid environment variable reference '${%.*s%s' (expected "
                                     "${NAME} with NAME made of letters, digits and '_'; write $${ "
                                     "for a literal ${)",
                                     n > 64 ? 64 : n, name, close ? "}" : "");
                free(out);
                return NULL;
            }
            char var[256];
            size_t vl = (size_t)(q - name);
            if (vl >= sizeof(var))
                vl = sizeof(var) - 1;
            memcpy(var, name, vl);
            var[vl] = '\0';
            const char *val = getenv(var);
            if (val == NULL) {
                lm_config_errors_add(errs, path, NULL, NULL, NULL,
                                     "environment variable '%s' is not set", var);
                free(out);
                return NULL;
            }
            piece = val;
            plen = strlen(val);
            p = q + 1;
        } else {
            p++;
        }
        if (len + plen + 1 > cap) {
            while (len + plen + 1 > cap)
                cap *= 2;
            char *o = realloc(out, cap);
            if (o == NULL)
                abort();
            out = o;
        }
        memcpy(out + len, piece, plen);
        len += plen;
    }
    out[len] = '\0';
    return out;
}

static bool lm__subst_tree(cJSON *node, lm__pbuf_t *path, lm_config_errors_t *errs)
{
    bool ok = true;
    size_t i = 0;
    cJSON *c;
    cJSON_ArrayForEach(c, node) {
        size_t mark = cJSON_IsObject(node) ? lm__pbuf_key(path, c->string) : lm__pbuf_index(path, i);
        i++;
        if (cJSON_IsString(c) && strchr(c->valuestring, '$') != NULL) {
            char *v = lm__subst(c->valuestring, lm__pbuf_str(path), errs);
            if (v == NULL) {
                ok = false;
            } else {
                /* replace in place: cJSON_SetValuestring only shrinks */
                cJSON_free(c->valuestring);
                size_t n = strlen(v) + 1;
                c->valuestring = cJSON_malloc(n);
                memcpy(c->valuestring, v, n);
                free(v);
            }
        } else if (cJSON_IsObject(c) || cJSON_IsArray(c)) {
            if (!lm__subst_tree(c, path, errs))
                ok = false;
        }
        lm__pbuf_trunc(path, mark);
    }
    return ok;
}

/* ---- API ------------------------------------------------------------- */

cJSON *lm_config_parse(const char *data, size_t len, const lm_config_opts_t *opts,
                       lm_config_errors_t *errs)
{
    size_t i = 0;
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
        i = 3; /* UTF-8 byte order mark */
    size_t start = i;
    while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
        i++;
    if (i == len) {
        lm_config_errors_add(errs, "", NULL, NULL, NULL, "expected a declarative configuration");
        return NULL;
    }
    cJSON *root = data[i] == '{' ? lm__parse_json(data + start, len - start, errs)
                                 : lm__parse_yaml(data + start, len - start, errs);
    if (root == NULL)
        return NULL;
    if (opts && opts->substitute_env) {
        lm__pbuf_t path = { 0 };
        bool ok = true;
        if (cJSON_IsString(root)) {
            char *v = lm__subst(root->valuestring, "", errs);
            ok = v != NULL;
            free(v);
        } else {
            ok = lm__subst_tree(root, &path, errs);
        }
        free(path.buf);
        if (!ok) {
            cJSON_Delete(root);
            return NULL;
        }
    }
    return root;
}

lm_config_t *lm_config_load(const char *data, size_t len, const lm_config_opts_t *opts,
                            lm_config_errors_t *errs)
{
    cJSON *doc = lm_config_parse(data, len, opts, errs);
    if (doc == NULL)
        return NULL;
    return lm_config_build(doc, errs);
}

lm_config_t *lm_config_load_file(const char *path, lm_config_errors_t *errs)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        lm_config_errors_add(errs, "", NULL, NULL, NULL, "cannot open '%s': %s", path,
                             strerror(errno));
        return NULL;
    }
    size_t cap = 64 * 1024, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        abort();
    for (;;) {
        if (len == cap) {
            if (cap >= LM__CONFIG_MAX_FILE) {
                lm_config_errors_add(errs, "", NULL, NULL, NULL,
                                     "cannot read '%s': larger than %u MiB", path,
                                     LM__CONFIG_MAX_FILE >> 20);
                free(buf);
                fclose(f);
                return NULL;
            }
            cap *= 2;
            char *b = realloc(buf, cap);
            if (b == NULL)
                abort();
            buf = b;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        lm_config_errors_add(errs, "", NULL, NULL, NULL, "cannot read '%s': %s", path,
                             strerror(errno));
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    lm_config_opts_t opts = { .substitute_env = true };
    lm_config_t *cfg = lm_config_load(buf, len, &opts, errs);
    free(buf);
    return cfg;
}

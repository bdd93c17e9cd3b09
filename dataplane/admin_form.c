/*
 * admin_form.c - request bodies of the entity endpoints: JSON, or forms
 * (urlencoded and multipart) in Kong's flattened notation, then coerced by
 * the entity's field types as Kong's Admin API does for form values:
 *   name=x                 {"name": "x"}
 *   paths[]=/a&paths[]=/b  {"paths": ["/a", "/b"]}      (paths[2]=... sets the 2nd)
 *   methods=GET&methods=POST  {"methods": ["GET", "POST"]} (a repeated name)
 *   config.minute=5        {"config": {"minute": 5}}     (numbers, booleans by schema)
 *   service.id=UUID        {"service": {"id": "UUID"}}
 *   tags=                  {"tags": null}                ("" is null)
 */
#include "admin_internal.h"
#include "lm_plugin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* percent-decoding; '+' is a space */
static char *lm__unescape(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    lm_url_decode(out, s, n, true);
    return out;
}

/* Puts value at slot `idx` (1-based; 0 = append) of array arr, padding with null. */
static void lm__array_set(cJSON *arr, long idx, cJSON *value)
{
    if (idx <= 0) {
        cJSON_AddItemToArray(arr, value);
        return;
    }
    while (cJSON_GetArraySize(arr) < idx - 1)
        cJSON_AddItemToArray(arr, cJSON_CreateNull());
    if (cJSON_GetArraySize(arr) >= idx)
        cJSON_ReplaceItemInArray(arr, (int)idx - 1, value);
    else
        cJSON_AddItemToArray(arr, value);
}

/* One segment of a name: "paths[]" -> key "paths", bracket 0 (append);
 * "paths[2]" -> bracket 2; "name" -> bracket -1. */
static void lm__segment(const char *seg, size_t n, char *key, size_t keycap, long *bracket)
{
    *bracket = -1;
    size_t kl = n;
    if (n >= 2 && seg[n - 1] == ']') {
        const char *open = memrchr(seg, '[', n);
        if (open && open > seg) {
            bool digits = true;
            long v = 0;
            for (const char *c = open + 1; c < seg + n - 1; c++) {
                digits = digits && *c >= '0' && *c <= '9';
                v = v * 10 + (*c - '0');
            }
            if (digits) {
                *bracket = open + 1 == seg + n - 1 ? 0 : (v > 0 ? v : 1);
                kl = (size_t)(open - seg);
            }
        }
    }
    if (kl >= keycap)
        kl = keycap - 1;
    memcpy(key, seg, kl);
    key[kl] = '\0';
}

/* Adds name=value (value taken) to root in the flattened notation. */
static void lm__put(cJSON *root, const char *name, cJSON *value)
{
    size_t nl = strlen(name);
    /* a name starting or ending with '.' is taken literally, as Kong does */
    bool dotted = nl && name[0] != '.' && name[nl - 1] != '.' && strchr(name, '.');
    cJSON *container = root;
    const char *p = name;
    for (;;) {
        const char *dot = dotted ? strchr(p, '.') : NULL;
        size_t sl = dot ? (size_t)(dot - p) : strlen(p);
        char key[256];
        long br;
        lm__segment(p, sl, key, sizeof(key), &br);
        cJSON *cur = cJSON_GetObjectItemCaseSensitive(container, key);
        if (dot == NULL) {
            if (br >= 0) {
                if (!cJSON_IsArray(cur)) {
                    cJSON *arr = cJSON_CreateArray();
                    if (cur)
                        cJSON_ReplaceItemInObjectCaseSensitive(container, key, arr);
                    else
                        cJSON_AddItemToObject(container, key, arr);
                    cur = arr;
                }
                lm__array_set(cur, br, value);
            } else if (cur == NULL) {
                cJSON_AddItemToObject(container, key, value);
            } else if (cJSON_IsArray(cur)) {
                cJSON_AddItemToArray(cur, value); /* a repeated name */
            } else {
                cJSON *arr = cJSON_CreateArray();
                cJSON_AddItemToArray(arr, cJSON_Duplicate(cur, 1));
                cJSON_AddItemToArray(arr, value);
                cJSON_ReplaceItemInObjectCaseSensitive(container, key, arr);
            }
            return;
        }
        if (br >= 0) { /* sources[1].ip=...: a record inside an array */
            if (!cJSON_IsArray(cur)) {
                cJSON *arr = cJSON_CreateArray();
                if (cur)
                    cJSON_ReplaceItemInObjectCaseSensitive(container, key, arr);
                else
                    cJSON_AddItemToObject(container, key, arr);
                cur = arr;
            }
            long at = br ? br : cJSON_GetArraySize(cur) + 1;
            cJSON *rec = cJSON_GetArrayItem(cur, (int)at - 1);
            if (!cJSON_IsObject(rec)) {
                rec = cJSON_CreateObject();
                lm__array_set(cur, at, rec);
            }
            container = rec;
        } else {
            if (!cJSON_IsObject(cur)) {
                cJSON *obj = cJSON_CreateObject();
                if (cur)
                    cJSON_ReplaceItemInObjectCaseSensitive(container, key, obj);
                else
                    cJSON_AddItemToObject(container, key, obj);
                cur = obj;
            }
            container = cur;
        }
        p = dot + 1;
    }
}

static cJSON *lm__decode_urlencoded(const char *s, size_t len)
{
    cJSON *root = cJSON_CreateObject();
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && s[end] != '&')
            end++;
        if (end > i) {
            const char *eq = memchr(s + i, '=', end - i);
            size_t nl = eq ? (size_t)(eq - (s + i)) : end - i;
            char *name = lm__unescape(s + i, nl);
            char *val = eq ? lm__unescape(eq + 1, (size_t)(s + end - eq - 1)) : strdup("");
            if (name[0])
                lm__put(root, name, cJSON_CreateString(val));
            free(name);
            free(val);
        }
        i = end + 1;
    }
    return root;
}

/* A header parameter value: name="x" -> x (quoted or not). */
static char *lm__param(const char *h, size_t n, const char *param)
{
    size_t pl = strlen(param);
    for (size_t i = 0; i + pl < n; i++) {
        if ((i == 0 || h[i - 1] == ' ' || h[i - 1] == ';' || h[i - 1] == '\t') &&
            strncasecmp(h + i, param, pl) == 0 && h[i + pl] == '=') {
            const char *v = h + i + pl + 1, *end = h + n;
            if (v < end && *v == '"') {
                v++;
                const char *q = memchr(v, '"', (size_t)(end - v));
                return strndup(v, q ? (size_t)(q - v) : (size_t)(end - v));
            }
            size_t vl = strcspn(v, "; \t\r\n");
            if (v + vl > end)
                vl = (size_t)(end - v);
            return strndup(v, vl);
        }
    }
    return NULL;
}

static cJSON *lm__decode_multipart(const char *ctype, size_t clen, const char *body, size_t len)
{
    char *boundary = lm__param(ctype, clen, "boundary");
    if (!boundary || !boundary[0] || strlen(boundary) > 200) {
        free(boundary);
        return NULL;
    }
    char delim[210];
    int dl = snprintf(delim, sizeof(delim), "--%s", boundary);
    free(boundary);
    cJSON *root = cJSON_CreateObject();
    const char *p = body, *end = body + len;
    while ((p = memmem(p, (size_t)(end - p), delim, (size_t)dl)) != NULL) {
        p += dl;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            break;
        const char *hdr_end = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!hdr_end)
            break;
        const char *data = hdr_end + 4;
        char ndelim[214];
        int nl = snprintf(ndelim, sizeof(ndelim), "\r\n%s", delim);
        const char *next = memmem(data, (size_t)(end - data), ndelim, (size_t)nl);
        if (!next)
            break;
        /* the part's headers: Content-Disposition's name, Content-Type */
        char *name = NULL;
        bool json = false;
        for (const char *h = p; h < hdr_end;) {
            const char *eol = memmem(h, (size_t)(hdr_end + 2 - h), "\r\n", 2);
            size_t hl = eol ? (size_t)(eol - h) : (size_t)(hdr_end - h);
            if (hl > 20 && strncasecmp(h, "Content-Disposition:", 20) == 0 && !name)
                name = lm__param(h + 20, hl - 20, "name");
            if (hl > 13 && strncasecmp(h, "Content-Type:", 13) == 0) {
                const char *v = h + 13;
                while (*v == ' ')
                    v++;
                json = strncasecmp(v, "application/json", 16) == 0;
            }
            h += hl + 2;
        }
        if (name && name[0]) {
            size_t n = (size_t)(next - data);
            cJSON *v = json ? cJSON_ParseWithLength(data, n) : NULL;
            if (!v) {
                char *s = strndup(data, n);
                v = cJSON_CreateString(s);
                free(s);
            }
            lm__put(root, name, v);
        }
        free(name);
        p = next + 2;
    }
    return root;
}

cJSON *lm_admin_decode_body(const char *ctype, size_t clen, const char *body, size_t len, bool *form,
                            const char **err)
{
    *form = false;
    *err = NULL;
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    bool urlencoded = clen >= 33 && strncasecmp(ctype, "application/x-www-form-urlencoded", 33) == 0;
    bool multipart = clen >= 19 && strncasecmp(ctype, "multipart/form-data", 19) == 0;
    if (i == len)
        return cJSON_CreateObject();
    if (multipart) {
        *form = true;
        cJSON *j = lm__decode_multipart(ctype, clen, body, len);
        if (!j)
            *err = "invalid multipart body";
        return j;
    }
    if (urlencoded && body[i] != '{') {
        *form = true;
        return lm__decode_urlencoded(body, len);
    }
    /* JSON (also a JSON body sent with curl's default form type) */
    cJSON *j = cJSON_ParseWithLength(body, len);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        *err = "Cannot parse JSON body";
        return NULL;
    }
    return j;
}

cJSON *lm_admin_decode_query(const char *q, size_t len)
{
    return lm__decode_urlencoded(q ? q : "", q ? len : 0);
}

/* ---- coercion ----------------------------------------------------------- */

static bool lm__to_number(cJSON *v)
{
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return false;
    char *end;
    double d = strtod(v->valuestring, &end);
    if (*end != '\0')
        return false;
    cJSON_SetNumberValue(v, d);
    free(v->valuestring);
    v->valuestring = NULL;
    v->type = cJSON_Number;
    return true;
}

/* Puts nv where old is in parent (object member or array element); frees old. */
static cJSON *lm__replace(cJSON *parent, cJSON *old, cJSON *nv)
{
    if (old->string)
        nv->string = strdup(old->string);
    cJSON_ReplaceItemViaPointer(parent, old, nv);
    return nv;
}

static cJSON *lm__to_bool(cJSON *parent, cJSON *v)
{
    if (cJSON_IsString(v) && strcmp(v->valuestring, "true") == 0)
        return lm__replace(parent, v, cJSON_CreateTrue());
    if (cJSON_IsString(v) && strcmp(v->valuestring, "false") == 0)
        return lm__replace(parent, v, cJSON_CreateFalse());
    return v;
}

static cJSON *lm__to_array(cJSON *parent, cJSON *v)
{
    if (cJSON_IsArray(v) || cJSON_IsNull(v) || cJSON_IsObject(v))
        return v;
    cJSON *copy = cJSON_Duplicate(v, 1);
    cJSON_free(copy->string);
    copy->string = NULL;
    cJSON *arr = cJSON_CreateArray();
    cJSON_AddItemToArray(arr, copy);
    return lm__replace(parent, v, arr);
}

static void lm__coerce_value(cJSON *parent, cJSON *v, lm_sf_type_t type, lm_sf_type_t elem,
                             const lm_schema_field_t *fields);

static void lm__coerce_record(cJSON *obj, const lm_schema_field_t *fields)
{
    if (!cJSON_IsObject(obj) || !fields)
        return;
    cJSON *it = obj->child;
    while (it) {
        cJSON *next = it->next;
        for (const lm_schema_field_t *f = fields; f->name; f++) {
            if (strcmp(f->name, it->string) == 0) {
                lm__coerce_value(obj, it, f->type, f->elem, f->fields); /* may replace it */
                break;
            }
        }
        it = next;
    }
}

static void lm__coerce_value(cJSON *parent, cJSON *v, lm_sf_type_t type, lm_sf_type_t elem,
                             const lm_schema_field_t *fields)
{
    if (cJSON_IsString(v) && v->valuestring[0] == '\0') {
        lm__replace(parent, v, cJSON_CreateNull());
        return;
    }
    switch (type) {
    case LM_SF_INTEGER:
    case LM_SF_NUMBER: lm__to_number(v); break;
    case LM_SF_BOOLEAN: lm__to_bool(parent, v); break;
    case LM_SF_ARRAY: {
        cJSON *arr = lm__to_array(parent, v);
        if (cJSON_IsArray(arr)) {
            cJSON *e = arr->child;
            while (e) {
                cJSON *next = e->next;
                lm__coerce_value(arr, e, elem, 0, fields);
                e = next;
            }
        }
        break;
    }
    case LM_SF_MAP:
        if (cJSON_IsObject(v)) {
            cJSON *e = v->child;
            while (e) {
                cJSON *next = e->next;
                lm__coerce_value(v, e, elem, 0, fields);
                e = next;
            }
        }
        break;
    case LM_SF_RECORD: lm__coerce_record(v, fields); break;
    default: break;
    }
}

/* healthchecks: numbers and booleans where the text says so; status lists are arrays */
static void lm__coerce_guess(cJSON *parent, cJSON *v)
{
    if (cJSON_IsString(v)) {
        if (v->valuestring[0] == '\0')
            lm__replace(parent, v, cJSON_CreateNull());
        else if (!lm__to_number(v))
            lm__to_bool(parent, v);
        return;
    }
    if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
        cJSON *e = v->child;
        while (e) {
            cJSON *next = e->next;
            if (e->string && strcmp(e->string, "http_statuses") == 0)
                e = lm__to_array(v, e);
            if (!(e->string && strcmp(e->string, "headers") == 0))
                lm__coerce_guess(v, e);
            e = next;
        }
    }
}

void lm_admin_coerce(const lm_akind_t *k, cJSON *args)
{
    const char *pname = NULL;
    if (strcmp(k->name, "plugins") == 0)
        pname = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(args, "name"));
    cJSON *it = args->child;
    while (it) {
        cJSON *next = it->next;
        const lm_afield_t *f = lm_akind_field(k, it->string);
        if (f == NULL) {
            it = next;
            continue;
        }
        if (cJSON_IsString(it) && it->valuestring[0] == '\0') {
            lm__replace(args, it, cJSON_CreateNull());
            it = next;
            continue;
        }
        switch (f->type) {
        case LM_AF_NUM: lm__to_number(it); break;
        case LM_AF_BOOL: lm__to_bool(args, it); break;
        case LM_AF_STRS: lm__to_array(args, it); break;
        case LM_AF_HEADERS:
            if (cJSON_IsObject(it)) {
                cJSON *h = it->child;
                while (h) {
                    cJSON *hn = h->next;
                    lm__to_array(it, h);
                    h = hn;
                }
            }
            break;
        case LM_AF_HEALTH: lm__coerce_guess(args, it); break;
        case LM_AF_CONFIG: {
            const lm_plugin_ops_t *ops = pname ? lm_plugin_find(pname) : NULL;
            if (ops && ops->schema)
                lm__coerce_record(it, ops->schema);
            else
                lm__coerce_guess(args, it);
            break;
        }
        default: break;
        }
        it = next;
    }
}

/*
 * request_transformer.c - the request-transformer plugin (Kong 3.x).
 *
 * config: http_method; remove, rename, replace, add, append, each with
 * headers, querystring and body lists (remove: names; rename: "old:new";
 * the others: "name:value"); replace.uri; dots_in_keys (accepted).
 *
 * Kong's order: the method, the headers, the body, the query string, the
 * URI; within each: remove, rename, replace (only what exists), add (only
 * what does not exist), append (another value either way).
 *   headers      on the request the upstream gets (Host, Content-Length and
 *                Transfer-Encoding are left alone: the proxy owns them)
 *   querystring  decoded arguments, re-encoded sorted by name when any
 *                querystring list is set (repeated names keep their order)
 *   body         application/x-www-form-urlencoded and application/json
 *                bodies (read whole: lm_plugin_need_body); other types, or a
 *                body larger than LM_BODY_BUFFER_MAX, pass unchanged
 *   replace.uri  the path the upstream gets (its query stays)
 * Values (and replace.uri) may hold templates: $(headers.name),
 * $(headers["name"]), $(query_params.name), $(uri_captures.name) or
 * $(uri_captures[1]); "_" in a header name matches "-"; what is missing
 * renders as "".
 */
#include "lm_plugins.h"
#include "lm_transform.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct {
    lm_tf_list_t h[5], q[5], b[5]; /* remove, rename, replace, add, append */
    const char *method;
    const char *uri;
    bool any_query, any_body;
} lm__rqt_conf_t;

enum { LM__REMOVE, LM__RENAME, LM__REPLACE, LM__ADD, LM__APPEND };
static const char *const lm__ops[] = { "remove", "rename", "replace", "add", "append" };

static const char *lm__check_method(const cJSON *v)
{
    for (const char *p = v->valuestring; *p; p++)
        if (*p < 'A' || *p > 'Z')
            return "invalid value: must be an HTTP method in upper case";
    return NULL;
}

#define LM__LISTS(HC, VC)                                                                         \
    { .name = "body", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .def = "[]", .check = VC },              \
    { .name = "headers", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .def = "[]", .check = HC },          \
    { .name = "querystring", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .def = "[]", .check = VC }

static const lm_schema_field_t lm__remove[] = { LM__LISTS(lm_schema_check_header_name, NULL), { 0 } };
static const lm_schema_field_t lm__pairs[] = { LM__LISTS(lm_tf_check_colon_header, lm_tf_check_colon), { 0 } };
static const lm_schema_field_t lm__replace[] = {
    LM__LISTS(lm_tf_check_colon_header, lm_tf_check_colon),
    { .name = "uri", .type = LM_SF_STRING },
    { 0 },
};

static const lm_schema_field_t lm__fields[] = {
    { .name = "http_method", .type = LM_SF_STRING, .check = lm__check_method },
    { .name = "remove", .type = LM_SF_RECORD, .fields = lm__remove },
    { .name = "rename", .type = LM_SF_RECORD, .fields = lm__pairs },
    { .name = "replace", .type = LM_SF_RECORD, .fields = lm__replace },
    { .name = "add", .type = LM_SF_RECORD, .fields = lm__pairs },
    { .name = "append", .type = LM_SF_RECORD, .fields = lm__pairs },
    { .name = "dots_in_keys", .type = LM_SF_BOOLEAN, .def = "true" },
    { 0 },
};

static int lm__configure(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out)
{
    lm__rqt_conf_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    for (int op = 0; op < 5; op++) {
        c->h[op] = lm_tf_list(cc->arena, config, lm__ops[op], "headers");
        c->q[op] = lm_tf_list(cc->arena, config, lm__ops[op], "querystring");
        c->b[op] = lm_tf_list(cc->arena, config, lm__ops[op], "body");
        c->any_query = c->any_query || c->q[op].n;
        c->any_body = c->any_body || c->b[op].n;
    }
    c->method = lm_schema_str(config, "http_method");
    const cJSON *rep = lm_schema_get(config, "replace");
    c->uri = rep ? lm_schema_str(rep, "uri") : NULL;
    if (c->any_body)
        lm_plugin_need_body(cc);
    *out = c;
    return LM_OK;
}

/* ---- templates ------------------------------------------------------------------- */

typedef struct {
    lm__rqt_conf_t const *c;
    lm_ctx_t *ctx;
    lm_arena_t *a;
} lm__env_t;

/* one "$(...)" expression: source.name or source["name"] / source[1] */
static lm_str_t lm__eval(lm__env_t *e, lm_str_t x)
{
    while (x.len && x.ptr[0] == ' ')
        x.ptr++, x.len--;
    while (x.len && x.ptr[x.len - 1] == ' ')
        x.len--;
    size_t i = 0;
    while (i < x.len && x.ptr[i] != '.' && x.ptr[i] != '[')
        i++;
    lm_str_t src = { x.ptr, i }, key = LM_STR_NULL;
    if (i < x.len && x.ptr[i] == '.') {
        key = (lm_str_t){ x.ptr + i + 1, x.len - i - 1 };
    } else if (i < x.len && x.ptr[x.len - 1] == ']') {
        key = (lm_str_t){ x.ptr + i + 1, x.len - i - 2 };
        if (key.len >= 2 && (key.ptr[0] == '"' || key.ptr[0] == '\'') && key.ptr[key.len - 1] == key.ptr[0]) {
            key.ptr++;
            key.len -= 2;
        }
    }
    lm_str_t v = LM_STR("");
    if (!key.len)
        return v;
    if (lm_str_eq(src, LM_STR("headers"))) {
        char *k = lm_arena_alloc(e->a, key.len + 1);
        for (size_t j = 0; j < key.len; j++)
            k[j] = key.ptr[j] == '_' ? '-' : key.ptr[j];
        if (!lm_ctx_header(e->ctx, (lm_str_t){ k, key.len }, &v))
            v = LM_STR("");
    } else if (lm_str_eq(src, LM_STR("query_params"))) {
        if (!lm_ctx_query_arg(e->ctx, key, &v))
            v = LM_STR("");
    } else if (lm_str_eq(src, LM_STR("uri_captures"))) {
        if (!lm_ctx_uri_capture(e->ctx, key, &v))
            v = LM_STR("");
    }
    return v;
}

/* the value with every $(...) replaced */
static lm_str_t lm__render(lm__env_t *e, lm_str_t in)
{
    if (!memmem(in.ptr, in.len, "$(", 2))
        return in;
    size_t cap = in.len + 64, n = 0;
    char *out = lm_arena_alloc(e->a, cap);
    for (size_t i = 0; i < in.len;) {
        const char *close;
        lm_str_t piece;
        size_t adv;
        if (i + 1 < in.len && in.ptr[i] == '$' && in.ptr[i + 1] == '(' &&
            (close = memchr(in.ptr + i + 2, ')', in.len - i - 2)) != NULL) {
            piece = lm__eval(e, (lm_str_t){ in.ptr + i + 2, (size_t)(close - in.ptr) - i - 2 });
            adv = (size_t)(close - in.ptr) + 1 - i;
        } else {
            piece = (lm_str_t){ in.ptr + i, 1 };
            adv = 1;
        }
        if (n + piece.len + 1 > cap) {
            size_t ncap = (n + piece.len + 1) * 2;
            char *no = lm_arena_alloc(e->a, ncap);
            memcpy(no, out, n);
            out = no;
            cap = ncap;
        }
        memcpy(out + n, piece.ptr, piece.len);
        n += piece.len;
        i += adv;
    }
    out[n] = '\0';
    return (lm_str_t){ out, n };
}

/* ---- headers ----------------------------------------------------------------------- */

static bool lm__owned(lm_str_t name)
{
    return lm_str_ieq(name, LM_STR("Host")) || lm_str_ieq(name, LM_STR("Content-Length")) ||
           lm_str_ieq(name, LM_STR("Transfer-Encoding"));
}

static void lm__headers(lm__env_t *e)
{
    const lm__rqt_conf_t *c = e->c;
    lm_ctx_t *ctx = e->ctx;
    lm_str_t v;
    for (size_t i = 0; i < c->h[LM__REMOVE].n; i++)
        if (!lm__owned(c->h[LM__REMOVE].v[i].name))
            lm_ctx_remove_header(ctx, c->h[LM__REMOVE].v[i].name);
    for (size_t i = 0; i < c->h[LM__RENAME].n; i++) {
        lm_str_t from = c->h[LM__RENAME].v[i].name, to = c->h[LM__RENAME].v[i].value;
        if (lm__owned(from) || lm__owned(to) || lm_str_ieq(from, to) || !lm_ctx_header(ctx, from, NULL))
            continue;
        lm_str_t vals[16];
        size_t n = lm_ctx_header_all(ctx, from, vals, 16);
        n = n > 16 ? 16 : n;
        lm_ctx_remove_header(ctx, from);
        lm_ctx_remove_header(ctx, to);
        for (size_t k = 0; k < n; k++)
            lm_ctx_add_header(ctx, to, vals[k]);
    }
    for (size_t i = 0; i < c->h[LM__REPLACE].n; i++) {
        const lm_tf_pair_t *p = &c->h[LM__REPLACE].v[i];
        if (!lm__owned(p->name) && lm_ctx_header(ctx, p->name, &v))
            lm_ctx_set_header(ctx, p->name, lm__render(e, p->value));
    }
    for (size_t i = 0; i < c->h[LM__ADD].n; i++) {
        const lm_tf_pair_t *p = &c->h[LM__ADD].v[i];
        if (!lm__owned(p->name) && !lm_ctx_header(ctx, p->name, &v))
            lm_ctx_set_header(ctx, p->name, lm__render(e, p->value));
    }
    for (size_t i = 0; i < c->h[LM__APPEND].n; i++) {
        const lm_tf_pair_t *p = &c->h[LM__APPEND].v[i];
        if (!lm__owned(p->name))
            lm_ctx_add_header(ctx, p->name, lm__render(e, p->value));
    }
}

/* ---- argument lists (query string, form bodies) -------------------------------------- */

typedef struct {
    lm_str_t name, value; /* decoded; value.ptr NULL: a bare name */
    bool gone;
} lm__arg_t;

typedef struct {
    lm__arg_t *v;
    size_t n, cap;
} lm__args_t;

static void lm__args_push(lm_arena_t *a, lm__args_t *l, lm_str_t name, lm_str_t value)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        lm__arg_t *nv = lm_arena_alloc(a, cap * sizeof(*nv));
        if (l->n)
            memcpy(nv, l->v, l->n * sizeof(*nv));
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = (lm__arg_t){ name, value, false };
}

static lm_str_t lm__unescape(lm_arena_t *a, const char *s, size_t n)
{
    char *o = lm_arena_alloc(a, n + 1);
    return (lm_str_t){ o, lm_url_decode(o, s, n, true) };
}

static void lm__args_parse(lm_arena_t *a, lm_str_t s, lm__args_t *l)
{
    for (size_t i = 0; s.ptr && i < s.len;) {
        size_t e = i;
        while (e < s.len && s.ptr[e] != '&')
            e++;
        const char *eq = memchr(s.ptr + i, '=', e - i);
        size_t kl = eq ? (size_t)(eq - (s.ptr + i)) : e - i;
        if (kl)
            lm__args_push(a, l, lm__unescape(a, s.ptr + i, kl),
                          eq ? lm__unescape(a, eq + 1, (size_t)(s.ptr + e - eq - 1)) : LM_STR_NULL);
        i = e + 1;
    }
}

static bool lm__args_has(const lm__args_t *l, lm_str_t name)
{
    for (size_t i = 0; i < l->n; i++)
        if (!l->v[i].gone && lm_str_eq(l->v[i].name, name))
            return true;
    return false;
}

static void lm__args_apply(lm__env_t *e, const lm_tf_list_t *ops, lm__args_t *l)
{
    for (size_t i = 0; i < ops[LM__REMOVE].n; i++)
        for (size_t k = 0; k < l->n; k++)
            if (lm_str_eq(l->v[k].name, ops[LM__REMOVE].v[i].name))
                l->v[k].gone = true;
    for (size_t i = 0; i < ops[LM__RENAME].n; i++) {
        lm_str_t from = ops[LM__RENAME].v[i].name, to = ops[LM__RENAME].v[i].value;
        if (lm_str_eq(from, to) || !lm__args_has(l, from))
            continue;
        for (size_t k = 0; k < l->n; k++)
            if (lm_str_eq(l->v[k].name, to))
                l->v[k].gone = true;
        for (size_t k = 0; k < l->n; k++)
            if (!l->v[k].gone && lm_str_eq(l->v[k].name, from))
                l->v[k].name = to;
    }
    for (size_t i = 0; i < ops[LM__REPLACE].n; i++) {
        const lm_tf_pair_t *p = &ops[LM__REPLACE].v[i];
        if (!lm__args_has(l, p->name))
            continue;
        for (size_t k = 0; k < l->n; k++)
            if (lm_str_eq(l->v[k].name, p->name))
                l->v[k].gone = true;
        lm__args_push(e->a, l, p->name, lm__render(e, p->value));
    }
    for (size_t i = 0; i < ops[LM__ADD].n; i++) {
        const lm_tf_pair_t *p = &ops[LM__ADD].v[i];
        if (!lm__args_has(l, p->name))
            lm__args_push(e->a, l, p->name, lm__render(e, p->value));
    }
    for (size_t i = 0; i < ops[LM__APPEND].n; i++)
        lm__args_push(e->a, l, ops[LM__APPEND].v[i].name, lm__render(e, ops[LM__APPEND].v[i].value));
}

static void lm__put_escaped(char *out, size_t *o, lm_str_t s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
            ch == '_' || ch == '.' || ch == '~') {
            out[(*o)++] = (char)ch;
        } else {
            out[(*o)++] = '%';
            out[(*o)++] = hex[ch >> 4];
            out[(*o)++] = hex[ch & 15];
        }
    }
}

static int lm__arg_cmp(const void *x, const void *y)
{
    const lm__arg_t *a = *(const lm__arg_t *const *)x, *b = *(const lm__arg_t *const *)y;
    size_t n = a->name.len < b->name.len ? a->name.len : b->name.len;
    int r = memcmp(a->name.ptr, b->name.ptr, n);
    if (r)
        return r;
    if (a->name.len != b->name.len)
        return a->name.len < b->name.len ? -1 : 1;
    return a < b ? -1 : (a > b); /* stable: the list order */
}

/* name=value&... sorted by name (as Kong encodes arguments) */
static lm_str_t lm__args_encode(lm_arena_t *a, const lm__args_t *l)
{
    const lm__arg_t **live = lm_arena_alloc(a, (l->n + 1) * sizeof(*live));
    size_t n = 0, size = 1;
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].gone)
            continue;
        live[n++] = &l->v[i];
        size += 3 * (l->v[i].name.len + l->v[i].value.len) + 2;
    }
    qsort(live, n, sizeof(*live), lm__arg_cmp);
    char *out = lm_arena_alloc(a, size);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (i)
            out[o++] = '&';
        lm__put_escaped(out, &o, live[i]->name);
        if (live[i]->value.ptr) {
            out[o++] = '=';
            lm__put_escaped(out, &o, live[i]->value);
        }
    }
    out[o] = '\0';
    return (lm_str_t){ out, o };
}

/* ---- bodies -------------------------------------------------------------------------- */

static bool lm__ct_is(lm_ctx_t *ctx, const char *prefix)
{
    lm_str_t ct;
    size_t n = strlen(prefix);
    return lm_ctx_header(ctx, LM_STR("Content-Type"), &ct) && ct.len >= n &&
           lm_str_ieq((lm_str_t){ ct.ptr, n }, (lm_str_t){ prefix, n });
}

static cJSON *lm__jstr(lm_str_t s)
{
    char buf[256];
    if (s.len < sizeof(buf)) {
        memcpy(buf, s.ptr, s.len);
        buf[s.len] = '\0';
        return cJSON_CreateString(buf);
    }
    char *h = strndup(s.ptr, s.len);
    cJSON *j = cJSON_CreateString(h);
    free(h);
    return j;
}

static void lm__json_key(char *buf, size_t n, lm_str_t s)
{
    snprintf(buf, n, "%.*s", LM_STR_FMT(s));
}

static void lm__json_body(lm__env_t *e, lm_str_t body)
{
    const lm_tf_list_t *ops = e->c->b;
    char *text = strndup(body.ptr, body.len);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!cJSON_IsObject(j)) { /* Kong leaves a body it cannot decode as an object alone */
        cJSON_Delete(j);
        return;
    }
    char k[512], k2[512];
    for (size_t i = 0; i < ops[LM__REMOVE].n; i++) {
        lm__json_key(k, sizeof(k), ops[LM__REMOVE].v[i].name);
        cJSON_DeleteItemFromObjectCaseSensitive(j, k);
    }
    for (size_t i = 0; i < ops[LM__RENAME].n; i++) {
        lm__json_key(k, sizeof(k), ops[LM__RENAME].v[i].name);
        lm__json_key(k2, sizeof(k2), ops[LM__RENAME].v[i].value);
        cJSON *it = cJSON_DetachItemFromObjectCaseSensitive(j, k);
        if (it) {
            cJSON_DeleteItemFromObjectCaseSensitive(j, k2);
            cJSON_AddItemToObject(j, k2, it);
        }
    }
    for (size_t i = 0; i < ops[LM__REPLACE].n; i++) {
        lm__json_key(k, sizeof(k), ops[LM__REPLACE].v[i].name);
        if (cJSON_GetObjectItemCaseSensitive(j, k))
            cJSON_ReplaceItemInObjectCaseSensitive(j, k, lm__jstr(lm__render(e, ops[LM__REPLACE].v[i].value)));
    }
    for (size_t i = 0; i < ops[LM__ADD].n; i++) {
        lm__json_key(k, sizeof(k), ops[LM__ADD].v[i].name);
        if (!cJSON_GetObjectItemCaseSensitive(j, k))
            cJSON_AddItemToObject(j, k, lm__jstr(lm__render(e, ops[LM__ADD].v[i].value)));
    }
    for (size_t i = 0; i < ops[LM__APPEND].n; i++) {
        lm__json_key(k, sizeof(k), ops[LM__APPEND].v[i].name);
        cJSON *nv = lm__jstr(lm__render(e, ops[LM__APPEND].v[i].value));
        cJSON *old = cJSON_GetObjectItemCaseSensitive(j, k);
        if (!old) {
            cJSON_AddItemToObject(j, k, nv);
        } else if (cJSON_IsArray(old)) {
            cJSON_AddItemToArray(old, nv);
        } else {
            cJSON *arr = cJSON_CreateArray();
            cJSON_AddItemToArray(arr, cJSON_DetachItemFromObjectCaseSensitive(j, k));
            cJSON_AddItemToArray(arr, nv);
            cJSON_AddItemToObject(j, k, arr);
        }
    }
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (out) {
        lm_ctx_set_request_body(e->ctx, lm_str(out)); /* copied into the request arena */
        free(out);
    }
}

static void lm__body(lm__env_t *e)
{
    lm_str_t body = lm_ctx_request_body(e->ctx);
    if (!body.ptr)
        return; /* not available: too large */
    if (lm__ct_is(e->ctx, "application/x-www-form-urlencoded")) {
        lm__args_t l = { 0 };
        lm__args_parse(e->a, body, &l);
        lm__args_apply(e, e->c->b, &l);
        lm_ctx_set_request_body(e->ctx, lm__args_encode(e->a, &l));
    } else if (lm__ct_is(e->ctx, "application/json")) {
        lm__json_body(e, body);
    }
}

static int lm__access(lm_ctx_t *ctx, const void *conf)
{
    const lm__rqt_conf_t *c = conf;
    lm__env_t e = { c, ctx, lm_ctx_arena(ctx) };
    if (c->method)
        lm_ctx_set_method(ctx, lm_str(c->method));
    lm__headers(&e);
    if (c->any_body)
        lm__body(&e);
    if (c->any_query) {
        lm__args_t l = { 0 };
        lm__args_parse(e.a, lm_ctx_raw_query(ctx), &l);
        lm__args_apply(&e, c->q, &l);
        lm_ctx_set_raw_query(ctx, lm__args_encode(e.a, &l));
    }
    if (c->uri)
        lm_ctx_set_path(ctx, lm__render(&e, lm_str(c->uri)));
    return LM_OK;
}

const lm_plugin_ops_t lm_plugin_request_transformer = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "request-transformer",
    .priority = 801,
    .schema = lm__fields,
    .configure = lm__configure,
    .access = lm__access,
};

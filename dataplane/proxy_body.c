/*
 * proxy_body.c - request bodies read whole for plugins that asked for them
 * (lm_plugin_need_body): reading into the request arena, the upstream head
 * that carries the buffered body, and the lm_ctx_* body calls of
 * lm_plugin.h (raw body, form/multipart/JSON fields as Kong's
 * kong.request.get_body sees them, removing a field, replacing the body).
 *
 * Requests whose chain does not read the body never come here: their body
 * streams (proxy.c).
 */
#include "proxy_int.h"

#include <stdio.h>

#define R(ctx) ((lm_req_t *)(ctx))

/* ---- reading ---------------------------------------------------------------- */

static void lm__body_append(lm_req_t *r, const char *p, size_t n)
{
    lm__req_ext_t *x = LM__EXT(r);
    if (n == 0)
        return;
    if (x->body_len + n > x->body_cap) {
        size_t ncap = LM_MAX(x->body_cap * 2, x->body_len + n + 4096);
        char *nb = lm_arena_alloc(r->arena, ncap + 1);
        if (x->body_len)
            memcpy(nb, x->body, x->body_len);
        x->body = nb;
        x->body_cap = ncap;
    }
    memcpy(x->body + x->body_len, p, n);
    x->body_len += n;
}

int lm__body_take(lm_req_t *r)
{
    lm__req_ext_t *x = LM__EXT(r);
    lm_conn_t *c = r->c;
    if (r->req_body == LM_BODY_LENGTH) {
        if (!x->body) { /* Content-Length is at most LM_BODY_BUFFER_MAX here: one allocation */
            x->body_cap = (size_t)r->req_left;
            x->body = lm_arena_alloc(r->arena, x->body_cap + 1);
        }
        size_t take = (size_t)LM_MIN((uint64_t)c->len, r->req_left);
        lm__body_append(r, c->buf, take);
        memmove(c->buf, c->buf + take, c->len - take); /* what follows is the next request */
        c->len -= take;
        r->req_left -= take;
        if (r->req_left)
            return LM_AGAIN;
        r->req_body_done = true;
        x->body_state = LM__BODY_READY;
        return LM_OK;
    }
    size_t dl = c->len, rest = 0;
    int rc = lm_chunked_decode(&r->req_chunked, c->buf, &dl, &rest);
    if (rc == LM_ERROR)
        return LM_ERROR;
    lm__body_append(r, c->buf, dl);
    memmove(c->buf, c->buf + dl, rest);
    c->len = rest;
    if (rc == LM_OK) {
        r->req_body_done = true;
        x->body_state = LM__BODY_READY;
        return LM_OK;
    }
    if (x->body_len > LM_BODY_BUFFER_MAX) {
        x->body_state = LM__BODY_PARTIAL; /* the decoder state goes on with the streaming pump */
        return LM_OK;
    }
    return LM_AGAIN;
}

void lm__body_head_end(lm__sb_t *b, lm_req_t *r)
{
    lm__req_ext_t *x = LM__EXT(r);
    if (x->body_state == LM__BODY_READY) {
        LM__SB_LIT(b, "Content-Length: ");
        lm__sb_u64(b, x->body_len);
        LM__SB_LIT(b, "\r\n\r\n");
        if (x->body_len)
            lm__sb_put(b, x->body, x->body_len);
        return;
    }
    /* PARTIAL: what was read is the first chunk, the streaming pump sends the rest */
    char hex[24];
    int hl = snprintf(hex, sizeof(hex), "%zx\r\n", x->body_len);
    LM__SB_LIT(b, "Transfer-Encoding: chunked\r\n\r\n");
    lm__sb_put(b, hex, (size_t)hl);
    lm__sb_put(b, x->body, x->body_len);
    LM__SB_LIT(b, "\r\n");
}

/* ---- the raw body ---------------------------------------------------------------- */

lm_str_t lm_ctx_request_body(lm_ctx_t *ctx)
{
    lm__req_ext_t *x = LM__EXT(R(ctx));
    if (x->body_state == LM__BODY_READY)
        return (lm_str_t){ x->body ? x->body : "", x->body_len };
    if (x->body_state == LM__BODY_NONE && !lm_ctx_has_body(ctx))
        return LM_STR("");
    return LM_STR_NULL;
}

static const char lm__json_cache_key = 0; /* lm_ctx_set key of the parsed JSON body */

bool lm_ctx_set_request_body(lm_ctx_t *ctx, lm_str_t body)
{
    lm_req_t *r = R(ctx);
    lm__req_ext_t *x = LM__EXT(r);
    if (x->body_state != LM__BODY_READY)
        return false;
    char *nb = lm_arena_alloc(r->arena, body.len + 1);
    if (body.len)
        memcpy(nb, body.ptr, body.len);
    x->body = nb;
    x->body_len = x->body_cap = body.len;
    lm_ctx_set(ctx, &lm__json_cache_key, NULL);
    return true;
}

/* ---- content types ------------------------------------------------------------------ */

enum { LM__CT_NONE, LM__CT_FORM, LM__CT_MULTIPART, LM__CT_JSON };

static bool lm__prefix_ci(lm_str_t s, const char *p)
{
    size_t n = strlen(p);
    return s.len >= n && lm_str_ieq((lm_str_t){ s.ptr, n }, (lm_str_t){ p, n });
}

/* Kong's get_body: the Content-Type starts with one of its three types */
static int lm__content_type(lm_ctx_t *ctx, lm_str_t *ct)
{
    if (!lm_ctx_header(ctx, LM_STR("Content-Type"), ct))
        return LM__CT_NONE;
    if (lm__prefix_ci(*ct, "application/x-www-form-urlencoded"))
        return LM__CT_FORM;
    if (lm__prefix_ci(*ct, "application/json"))
        return LM__CT_JSON;
    if (lm__prefix_ci(*ct, "multipart/form-data"))
        return LM__CT_MULTIPART;
    return LM__CT_NONE;
}

bool lm_ctx_body_parsable(lm_ctx_t *ctx)
{
    lm_str_t ct;
    return lm_ctx_request_body(ctx).ptr && lm__content_type(ctx, &ct) != LM__CT_NONE;
}

/* ---- application/x-www-form-urlencoded ---------------------------------------------- */

/* Next decoded byte of a form component at *i ('+' is a space, %XX a byte). */
static int lm__fbyte(const char *s, size_t n, size_t *i)
{
    char c = s[(*i)++];
    if (c == '+')
        return ' ';
    if (c == '%' && *i + 1 < n) {
        int h = lm_hexval(s[*i]), l = lm_hexval(s[*i + 1]);
        if (h >= 0 && l >= 0) {
            *i += 2;
            return h * 16 + l;
        }
    }
    return (unsigned char)c;
}

static bool lm__fname_eq(const char *s, size_t n, lm_str_t name)
{
    size_t i = 0, j = 0;
    while (i < n) {
        int c = lm__fbyte(s, n, &i);
        if (j >= name.len || (unsigned char)name.ptr[j] != c)
            return false;
        j++;
    }
    return j == name.len;
}

static lm_str_t lm__fdecode(lm_arena_t *a, const char *s, size_t n)
{
    char *out = lm_arena_alloc(a, n + 1);
    size_t i = 0, o = 0;
    while (i < n)
        out[o++] = (char)lm__fbyte(s, n, &i);
    out[o] = '\0';
    return (lm_str_t){ out, o };
}

/* Calls fn for every "key[=value]" segment of a form body whose key decodes to name. */
typedef struct {
    size_t start, end; /* the segment */
    size_t eq;         /* position of '=' or end */
} lm__fseg_t;

static bool lm__form_next(lm_str_t body, size_t *pos, lm_str_t name, lm__fseg_t *seg)
{
    while (*pos <= body.len) {
        size_t start = *pos, end = start;
        while (end < body.len && body.ptr[end] != '&')
            end++;
        *pos = end + 1;
        size_t eq = start;
        while (eq < end && body.ptr[eq] != '=')
            eq++;
        if (eq == start) /* empty segment or empty key: ngx skips it */
            continue;
        if (lm__fname_eq(body.ptr + start, eq - start, name)) {
            *seg = (lm__fseg_t){ start, end, eq };
            return true;
        }
    }
    return false;
}

static int lm__form_field(lm_req_t *r, lm_str_t body, lm_str_t name, lm_str_t *value)
{
    size_t pos = 0, n = 0;
    lm__fseg_t seg, first = { 0, 0, 0 };
    while (lm__form_next(body, &pos, name, &seg))
        if (n++ == 0)
            first = seg;
    if (n == 0)
        return LM_BODY_FIELD_NONE;
    if (n > 1)
        return LM_BODY_FIELD_MULTI;
    if (first.eq == first.end)
        return LM_BODY_FIELD_OTHER; /* a bare "name": Lua true */
    *value = lm__fdecode(r->arena, body.ptr + first.eq + 1, first.end - first.eq - 1);
    return LM_BODY_FIELD_STRING;
}

static lm_str_t lm__form_remove(lm_req_t *r, lm_str_t body, lm_str_t name)
{
    lm__sb_t b = { r->arena, lm_arena_alloc(r->arena, body.len + 1), 0, body.len + 1 };
    size_t pos = 0, copied = 0;
    lm__fseg_t seg;
    while (lm__form_next(body, &pos, name, &seg)) {
        /* drop the segment and one '&' next to it */
        size_t from = seg.start, to = seg.end;
        if (to < body.len)
            to++;
        else if (from > copied && from > 0)
            from--;
        lm__sb_put(&b, body.ptr + copied, from - copied);
        copied = to;
    }
    lm__sb_put(&b, body.ptr + copied, body.len - copied);
    return (lm_str_t){ b.p, b.len };
}

/* ---- multipart/form-data --------------------------------------------------------------- */

/* lua-multipart: ";%s*boundary=(%S+)", quotes around it dropped */
static lm_str_t lm__boundary(lm_str_t ct)
{
    for (size_t i = 0; i < ct.len; i++) {
        if (ct.ptr[i] != ';')
            continue;
        size_t p = i + 1;
        while (p < ct.len && (ct.ptr[p] == ' ' || ct.ptr[p] == '\t'))
            p++;
        if (p + 9 > ct.len || memcmp(ct.ptr + p, "boundary=", 9) != 0)
            continue;
        p += 9;
        size_t e = p;
        while (e < ct.len && ct.ptr[e] != ' ' && ct.ptr[e] != '\t')
            e++;
        lm_str_t bd = { ct.ptr + p, e - p };
        if (bd.len >= 2 && (bd.ptr[0] == '"' || bd.ptr[0] == '\'') && bd.ptr[bd.len - 1] == bd.ptr[0]) {
            bd.ptr++;
            bd.len -= 2;
        }
        return bd;
    }
    return LM_STR_NULL;
}

typedef struct {
    size_t start;      /* the delimiter line of the part */
    size_t end;        /* the next delimiter line */
    lm_str_t name;     /* Content-Disposition name */
    lm_str_t value;
} lm__mpart_t;

/* Position of the next "--boundary" at a line start at or after pos, or body.len. */
static size_t lm__delim(lm_str_t body, lm_str_t bd, size_t pos)
{
    for (size_t i = pos; i + 2 + bd.len <= body.len; i++) {
        if ((i == 0 || body.ptr[i - 1] == '\n') && body.ptr[i] == '-' && body.ptr[i + 1] == '-' &&
            memcmp(body.ptr + i + 2, bd.ptr, bd.len) == 0)
            return i;
    }
    return body.len;
}

/* The name parameter of a Content-Disposition line: name="x" (quotes dropped). */
static lm_str_t lm__disp_name(lm_str_t line)
{
    size_t i = 0;
    while (i < line.len) {
        size_t e = i;
        while (e < line.len && line.ptr[e] != ';')
            e++;
        size_t p = i;
        while (p < e && (line.ptr[p] == ' ' || line.ptr[p] == '\t'))
            p++;
        if (e - p > 5 && lm_str_ieq((lm_str_t){ line.ptr + p, 5 }, LM_STR("name="))) {
            lm_str_t v = { line.ptr + p + 5, e - p - 5 };
            while (v.len && (v.ptr[v.len - 1] == ' ' || v.ptr[v.len - 1] == '\t'))
                v.len--;
            if (v.len >= 2 && v.ptr[0] == '"' && v.ptr[v.len - 1] == '"') {
                v.ptr++;
                v.len -= 2;
            }
            return v;
        }
        i = e + 1;
    }
    return LM_STR_NULL;
}

/* Next part after *pos (the start of a delimiter line); false at the end. */
static bool lm__mpart_next(lm_str_t body, lm_str_t bd, size_t *pos, lm__mpart_t *part)
{
    size_t d = lm__delim(body, bd, *pos);
    while (d < body.len) {
        size_t after = d + 2 + bd.len;
        if (after + 2 <= body.len && body.ptr[after] == '-' && body.ptr[after + 1] == '-')
            return false; /* the closing delimiter */
        const char *eol = memchr(body.ptr + after, '\n', body.len - after);
        if (!eol)
            return false;
        size_t hstart = (size_t)(eol - body.ptr) + 1;
        size_t next = lm__delim(body, bd, hstart);
        part->start = d;
        part->end = next;
        part->name = LM_STR_NULL;
        part->value = LM_STR_NULL;
        /* headers up to an empty line */
        size_t p = hstart;
        while (p < next) {
            const char *nl = memchr(body.ptr + p, '\n', next - p);
            size_t le = nl ? (size_t)(nl - body.ptr) : next;
            lm_str_t line = { body.ptr + p, le - p };
            if (line.len && line.ptr[line.len - 1] == '\r')
                line.len--;
            p = nl ? le + 1 : next;
            if (line.len == 0)
                break;
            if (line.len > 20 && lm_str_ieq((lm_str_t){ line.ptr, 20 }, LM_STR("content-disposition:")))
                part->name = lm__disp_name((lm_str_t){ line.ptr + 20, line.len - 20 });
        }
        size_t vend = next; /* the value ends before the line break that precedes the delimiter */
        if (vend > p && body.ptr[vend - 1] == '\n')
            vend--;
        if (vend > p && body.ptr[vend - 1] == '\r')
            vend--;
        part->value = (lm_str_t){ body.ptr + p, vend > p ? vend - p : 0 };
        *pos = next;
        if (part->name.ptr)
            return true;
        d = next;
    }
    return false;
}

static int lm__multipart_field(lm_req_t *r, lm_str_t body, lm_str_t ct, lm_str_t name, lm_str_t *value)
{
    lm_str_t bd = lm__boundary(ct);
    if (!bd.len)
        return LM_BODY_FIELD_NONE;
    size_t pos = 0;
    lm__mpart_t part;
    bool found = false;
    while (lm__mpart_next(body, bd, &pos, &part)) {
        if (lm_str_eq(part.name, name)) { /* the last one wins (lua-multipart's index) */
            *value = part.value;
            found = true;
        }
    }
    if (!found)
        return LM_BODY_FIELD_NONE;
    *value = lm_arena_strdup_str(r->arena, *value);
    return LM_BODY_FIELD_STRING;
}

static lm_str_t lm__multipart_remove(lm_req_t *r, lm_str_t body, lm_str_t ct, lm_str_t name)
{
    lm_str_t bd = lm__boundary(ct);
    if (!bd.len)
        return body;
    lm__sb_t b = { r->arena, lm_arena_alloc(r->arena, body.len + 1), 0, body.len + 1 };
    size_t pos = 0, copied = 0;
    lm__mpart_t part;
    while (lm__mpart_next(body, bd, &pos, &part)) {
        if (!lm_str_eq(part.name, name))
            continue;
        lm__sb_put(&b, body.ptr + copied, part.start - copied);
        copied = part.end;
    }
    lm__sb_put(&b, body.ptr + copied, body.len - copied);
    return (lm_str_t){ b.p, b.len };
}

/* ---- application/json ------------------------------------------------------------------- */

static void lm__cjson_delete(void *p)
{
    cJSON_Delete(p);
}

/* The parsed body (cached for the request), or NULL when it is not a JSON object. */
static cJSON *lm__json(lm_ctx_t *ctx, lm_str_t body)
{
    cJSON *j = lm_ctx_get(ctx, &lm__json_cache_key);
    if (j)
        return j;
    j = cJSON_ParseWithLength(body.ptr, body.len);
    if (!j)
        return NULL;
    lm_arena_on_free(R(ctx)->arena, lm__cjson_delete, j);
    if (!cJSON_IsObject(j))
        return NULL;
    lm_ctx_set(ctx, &lm__json_cache_key, j);
    return j;
}

static int lm__json_field(lm_ctx_t *ctx, lm_str_t body, lm_str_t name, lm_str_t *value)
{
    cJSON *j = lm__json(ctx, body), *it, *last = NULL;
    if (!j)
        return LM_BODY_FIELD_NONE;
    cJSON_ArrayForEach(it, j)
        if (it->string && strlen(it->string) == name.len && memcmp(it->string, name.ptr, name.len) == 0)
            last = it; /* Lua's cjson keeps the last of repeated keys */
    if (!last)
        return LM_BODY_FIELD_NONE;
    if (cJSON_IsString(last)) {
        *value = lm_arena_strdup_str(R(ctx)->arena, lm_str(last->valuestring));
        return LM_BODY_FIELD_STRING;
    }
    return cJSON_IsObject(last) || cJSON_IsArray(last) ? LM_BODY_FIELD_MULTI : LM_BODY_FIELD_OTHER;
}

static lm_str_t lm__json_remove(lm_ctx_t *ctx, lm_str_t body, lm_str_t name)
{
    cJSON *j = lm__json(ctx, body);
    if (!j)
        return body;
    bool removed = false;
    for (cJSON *it = j->child, *next; it; it = next) {
        next = it->next;
        if (it->string && strlen(it->string) == name.len && memcmp(it->string, name.ptr, name.len) == 0) {
            cJSON_Delete(cJSON_DetachItemViaPointer(j, it));
            removed = true;
        }
    }
    if (!removed)
        return body;
    /* Kong re-encodes the table (kong.service.request.set_body) */
    char *s = cJSON_PrintUnformatted(j);
    if (!s)
        return body;
    lm_str_t out = lm_arena_strdup_str(R(ctx)->arena, lm_str(s));
    cJSON_free(s);
    return out;
}

/* ---- fields ---------------------------------------------------------------------------- */

int lm_ctx_body_field(lm_ctx_t *ctx, lm_str_t name, lm_str_t *value)
{
    lm_str_t body = lm_ctx_request_body(ctx), ct;
    if (!body.ptr)
        return LM_BODY_FIELD_NONE;
    switch (lm__content_type(ctx, &ct)) {
    case LM__CT_FORM: return lm__form_field(R(ctx), body, name, value);
    case LM__CT_MULTIPART: return lm__multipart_field(R(ctx), body, ct, name, value);
    case LM__CT_JSON: return lm__json_field(ctx, body, name, value);
    default: return LM_BODY_FIELD_NONE;
    }
}

void lm_ctx_remove_body_field(lm_ctx_t *ctx, lm_str_t name)
{
    lm_str_t body = lm_ctx_request_body(ctx), ct, out;
    if (!body.ptr || LM__EXT(R(ctx))->body_state != LM__BODY_READY)
        return;
    switch (lm__content_type(ctx, &ct)) {
    case LM__CT_FORM: out = lm__form_remove(R(ctx), body, name); break;
    case LM__CT_MULTIPART: out = lm__multipart_remove(R(ctx), body, ct, name); break;
    case LM__CT_JSON: out = lm__json_remove(ctx, body, name); break;
    default: return;
    }
    if (out.ptr != body.ptr || out.len != body.len) {
        lm__req_ext_t *x = LM__EXT(R(ctx));
        x->body = (char *)out.ptr;
        x->body_len = x->body_cap = out.len;
        lm_ctx_set(ctx, &lm__json_cache_key, NULL);
    }
}

/*
 * admin_api.c - Kong's entity endpoints on the admin API: /services,
 * /routes, /consumers, /plugins, /upstreams, /upstreams/{u}/targets,
 * /certificates, /snis, /ca_certificates, the credential endpoints under
 * /consumers/{c}/ (key-auth, basic-auth, jwt, hmac-auth, acls) and the other
 * nested forms, addressed by id or by name (username, key, ...).
 *
 * Reads render from the flat document of the running snapshot (kept until
 * the snapshot changes). A write joins the one apply queue
 * (lm_apply_start_built): when its turn comes it copies the flat document of
 * the configuration then running, changes the copy and applies it whole, the
 * path POST /config takes: validate, compile, persist, publish. It answers
 * from the new snapshot (201/200 with defaults filled) or with Kong's error
 * body (400 schema violation for the errors of the entity written, 404, 409),
 * and the running configuration is unchanged on error.
 */
#include "admin_internal.h"
#include "lm_admin_api.h"
#include "lm_apply.h"
#include "lm_plugin.h"
#include "lm_metrics.h"
#include "lm_proxy.h"

#include <openssl/evp.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* ---- the flat document of the running snapshot ----------------------------- */

static struct {
    cJSON *flat;
    const lm_snapshot_t *snap;
    char hash[33];
} lm__cache;

static cJSON *lm__flat(lm_server_t *srv)
{
    const lm_snapshot_t *s = srv->current;
    if (lm__cache.flat && lm__cache.snap == s && (!s || strcmp(lm__cache.hash, s->hash) == 0))
        return lm__cache.flat;
    cJSON_Delete(lm__cache.flat);
    if (s && s->cfg && s->cfg->doc) {
        lm__cache.flat = lm_admin_flatten(s->cfg);
    } else {
        lm__cache.flat = cJSON_CreateObject();
        cJSON_AddStringToObject(lm__cache.flat, "_format_version", "3.0");
    }
    lm__cache.snap = s;
    snprintf(lm__cache.hash, sizeof(lm__cache.hash), "%s", s ? s->hash : "");
    return lm__cache.flat;
}

/* ---- answers ------------------------------------------------------------- */

static cJSON *lm__msg(const char *msg)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "message", msg);
    return j;
}

cJSON *lm_admin_err(int code, const char *name, const char *message)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "code", code);
    cJSON_AddStringToObject(j, "name", name);
    cJSON_AddStringToObject(j, "message", message);
    return j;
}

static int lm__reply(lm_admin_call_t *call, int status, cJSON *j)
{
    call->reply(call, status, j);
    return LM_OK;
}

static long long lm__now(void)
{
    return (long long)time(NULL);
}

/* Kong's pretty form of a key, e.g. {name="x"} */
static void lm__pretty(char *out, size_t cap, const char *field, const char *value)
{
    snprintf(out, cap, "{%s=\"%s\"}", field, value);
}

/* Puts msg at field path f ("config.minute", "paths[1]") into obj. */
static void lm__put_field(cJSON *obj, const char *f, const char *msg)
{
    char key[256];
    size_t n = strcspn(f, ".[");
    snprintf(key, sizeof(key), "%.*s", (int)n, f);
    const char *rest = f + n;
    if (*rest == '\0') {
        if (!cJSON_GetObjectItemCaseSensitive(obj, key))
            cJSON_AddStringToObject(obj, key, msg);
        return;
    }
    if (*rest == '.') {
        cJSON *sub = cJSON_GetObjectItemCaseSensitive(obj, key);
        if (!cJSON_IsObject(sub)) {
            cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
            sub = cJSON_AddObjectToObject(obj, key);
        }
        lm__put_field(sub, rest + 1, msg);
        return;
    }
    /* key[i]...: an array padded with null */
    long i = strtol(rest + 1, NULL, 10);
    const char *close = strchr(rest, ']');
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsArray(arr)) {
        cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
        arr = cJSON_AddArrayToObject(obj, key);
    }
    while (cJSON_GetArraySize(arr) <= i)
        cJSON_AddItemToArray(arr, cJSON_CreateNull());
    if (close && close[1] == '.') {
        cJSON *el = cJSON_GetArrayItem(arr, (int)i);
        if (!cJSON_IsObject(el)) {
            el = cJSON_CreateObject();
            cJSON_ReplaceItemInArray(arr, (int)i, el);
        }
        lm__put_field(el, close + 2, msg);
    } else {
        cJSON_ReplaceItemInArray(arr, (int)i, cJSON_CreateString(msg));
    }
}

/* Kong's schema violation from the errors of the entity at `prefix`
 * ("services[3]"); errors elsewhere (another entity the write broke) go under
 * "@entity" with their path. */
cJSON *lm_admin_schema_violation(const lm_config_errors_t *errs, const char *prefix)
{
    cJSON *fields = cJSON_CreateObject();
    cJSON *entity = NULL;
    lm_buf_t msg = { 0 };
    size_t pl = strlen(prefix), count = 0;
    char line[2048];
    for (size_t i = 0; i < errs->count; i++) {
        const lm_config_error_t *e = &errs->items[i];
        const char *field = NULL;
        if (strncmp(e->path, prefix, pl) == 0 && e->path[pl] == '.')
            field = e->path + pl + 1;
        else if (strcmp(e->path, prefix) == 0)
            field = "";
        if (field && field[0]) {
            lm__put_field(fields, field, e->message);
            snprintf(line, sizeof(line), "%s: %s", field, e->message);
        } else {
            if (!entity)
                entity = cJSON_AddArrayToObject(fields, "@entity");
            if (field)
                snprintf(line, sizeof(line), "%s", e->message);
            else
                snprintf(line, sizeof(line), "%s%s%s", e->path, e->path[0] ? ": " : "", e->message);
            cJSON_AddItemToArray(entity, cJSON_CreateString(line));
        }
        lm_buf_append(&msg, count ? "; " : "", count ? 2 : 0);
        lm_buf_append(&msg, line, strlen(line));
        count++;
    }
    char *text = malloc(msg.len + 64);
    if (count == 1)
        sprintf(text, "schema violation (%.*s)", (int)msg.len, msg.buf ? msg.buf : "");
    else
        sprintf(text, "%zu schema violations (%.*s)", count, (int)msg.len, msg.buf ? msg.buf : "");
    cJSON *j = lm_admin_err(2, "schema violation", text);
    cJSON_AddItemToObject(j, "fields", fields);
    free(text);
    lm_buf_free(&msg);
    return j;
}

/* ---- paths ----------------------------------------------------------------- */

#define LM__MAX_SEGS 5

typedef struct {
    char *seg[LM__MAX_SEGS];
    size_t n;
} lm__path_t;

static bool lm__split(lm_str_t p, lm__path_t *out)
{
    memset(out, 0, sizeof(*out));
    size_t i = 0;
    while (i < p.len) {
        while (i < p.len && p.ptr[i] == '/')
            i++;
        if (i == p.len)
            break;
        size_t s = i;
        while (i < p.len && p.ptr[i] != '/')
            i++;
        if (out->n == LM__MAX_SEGS)
            return false;
        char *seg = malloc(i - s + 1);
        size_t o = 0;
        for (size_t k = s; k < i; k++) {
            if (p.ptr[k] == '%' && k + 2 < i && lm_hexval(p.ptr[k + 1]) >= 0 && lm_hexval(p.ptr[k + 2]) >= 0) {
                seg[o++] = (char)(lm_hexval(p.ptr[k + 1]) * 16 + lm_hexval(p.ptr[k + 2]));
                k += 2;
            } else {
                seg[o++] = p.ptr[k];
            }
        }
        seg[o] = '\0';
        out->seg[out->n++] = seg;
    }
    return true;
}

static void lm__path_free(lm__path_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->seg[i]);
}

/* what a request addresses */
typedef struct {
    const lm_akind_t *k;  /* the entity kind */
    const char *key;      /* entity key, or NULL: the collection */
    const lm_akind_t *pk; /* parent kind (nested forms), or NULL */
    const char *pkey;
    const char *pfield;   /* the child's field that names the parent */
} lm__target_t;

static const char *lm__parent_field(const lm_akind_t *k, const lm_akind_t *pk)
{
    if (strcmp(k->name, "plugins") == 0) {
        if (strcmp(pk->name, "services") == 0 || strcmp(pk->name, "routes") == 0 ||
            strcmp(pk->name, "consumers") == 0)
            return pk->type;
        return NULL;
    }
    return k->parent && strcmp(k->parent, pk->type) == 0 ? k->parent : NULL;
}

/* LM_OK, or LM_DECLINED when the path is not an entity endpoint */
static int lm__resolve(const lm__path_t *p, lm__target_t *t)
{
    memset(t, 0, sizeof(*t));
    if (p->n == 0 || p->n > 4)
        return LM_DECLINED;
    const lm_akind_t *k = lm_akind_by_seg(p->seg[0], strlen(p->seg[0]), false);
    if (strcmp(p->seg[0], "upstreams") == 0)
        k = lm_akind_by_name("upstreams");
    if (!k)
        return LM_DECLINED;
    if (p->n <= 2) {
        t->k = k;
        t->key = p->n == 2 ? p->seg[1] : NULL;
        return LM_OK;
    }
    const lm_akind_t *ck = lm_akind_by_seg(p->seg[2], strlen(p->seg[2]), true);
    const char *pf = ck ? lm__parent_field(ck, k) : NULL;
    if (!pf)
        return LM_DECLINED;
    t->pk = k;
    t->pkey = p->seg[1];
    t->k = ck;
    t->pfield = pf;
    t->key = p->n == 4 ? p->seg[3] : NULL;
    return LM_OK;
}

/* ---- reads ----------------------------------------------------------------- */

static const char *lm__qget(const cJSON *q, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(q, name);
    if (cJSON_IsArray(v))
        v = cJSON_GetArrayItem(v, 0);
    return cJSON_GetStringValue(v);
}

static bool lm__belongs(const cJSON *ent, const lm__target_t *t, const char *pid)
{
    if (!t->pk)
        return true;
    const char *id = lm_admin_ref_id(ent, t->pfield);
    return id && pid && strcasecmp(id, pid) == 0;
}

static int lm__get_list(lm_admin_call_t *call, const lm__target_t *t, cJSON *flat)
{
    cJSON *q = lm_admin_decode_query(call->query.ptr, call->query.len);
    const char *size_s = lm__qget(q, "size"), *offset_s = lm__qget(q, "offset"), *tags = lm__qget(q, "tags");
    long size = 100, start = 0;
    if (size_s) {
        char *end;
        double d = strtod(size_s, &end);
        if (!size_s[0] || *end) {
            cJSON_Delete(q);
            return lm__reply(call, 400, lm_admin_err(9, "invalid size", "size must be a number"));
        }
        if (d < 1 || d > 1000 || d != (long)d) {
            cJSON_Delete(q);
            return lm__reply(call, 400, lm_admin_err(9, "invalid size", "size must be an integer between 1 and 1000"));
        }
        size = (long)d;
    }
    if (offset_s) {
        unsigned char dec[64];
        size_t ol = strlen(offset_s);
        int n = ol && ol % 4 == 0 && ol < 80 ? EVP_DecodeBlock(dec, (const unsigned char *)offset_s, (int)ol) : -1;
        char *end = NULL;
        if (n > 0) {
            dec[n] = '\0';
            start = strtol((char *)dec, &end, 10);
        }
        if (n <= 0 || !end || (*end && *end != ' ' && *end != '\0') || start < 0) {
            char m[256];
            snprintf(m, sizeof(m), "'%.100s' is not a valid offset: bad base64 encoding", offset_s);
            cJSON_Delete(q);
            return lm__reply(call, 400, lm_admin_err(7, "invalid offset", m));
        }
    }
    const char *pid = NULL;
    if (t->pk) {
        const cJSON *parent = lm_admin_flat_find(flat, t->pk, t->pkey, NULL);
        if (!parent) {
            cJSON_Delete(q);
            return lm__reply(call, 404, lm__msg("Not found"));
        }
        pid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(parent, "id"));
    }
    cJSON *data = cJSON_CreateArray();
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(flat, t->k->name), *it;
    long idx = 0, taken = 0;
    bool more = false;
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsObject(it) || !lm__belongs(it, t, pid) || !lm_admin_tags_match(it, tags))
            continue;
        if (idx++ < start)
            continue;
        if (taken == size) {
            more = true;
            break;
        }
        cJSON_AddItemToArray(data, lm_admin_render(t->k, it, flat, call->trusted));
        taken++;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "data", data);
    if (more) {
        char num[32], tok[64], next[1024];
        int nl = snprintf(num, sizeof(num), "%ld", start + size);
        while (nl % 3) /* no padding in the token */
            num[nl++] = ' ';
        num[nl] = '\0';
        EVP_EncodeBlock((unsigned char *)tok, (const unsigned char *)num, nl);
        int w;
        if (t->pk)
            w = snprintf(next, sizeof(next), "/%s/%s/%s?offset=%s", t->pk->seg, t->pkey, t->k->nested_seg, tok);
        else
            w = snprintf(next, sizeof(next), "/%s?offset=%s", t->k->seg, tok);
        if (size_s && w > 0 && (size_t)w < sizeof(next))
            w += snprintf(next + w, sizeof(next) - (size_t)w, "&size=%ld", size);
        if (tags && w > 0 && (size_t)w < sizeof(next))
            snprintf(next + w, sizeof(next) - (size_t)w, "&tags=%s", tags);
        cJSON_AddStringToObject(j, "offset", tok);
        cJSON_AddStringToObject(j, "next", next);
    } else {
        cJSON_AddNullToObject(j, "next");
    }
    cJSON_Delete(q);
    return lm__reply(call, 200, j);
}

/* the entity a (nested) URL addresses, or NULL */
static cJSON *lm__lookup(cJSON *flat, const lm__target_t *t, int *index, bool *parent_missing)
{
    const char *pid = NULL;
    *parent_missing = false;
    if (t->pk) {
        const cJSON *parent = lm_admin_flat_find(flat, t->pk, t->pkey, NULL);
        if (!parent) {
            *parent_missing = true;
            return NULL;
        }
        pid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(parent, "id"));
    }
    cJSON *e = lm_admin_flat_find(flat, t->k, t->key, index);
    if (!e && t->pk && strcmp(t->k->name, "targets") == 0 && !strchr(t->key, ':')) {
        char withport[512]; /* a target named without its port */
        snprintf(withport, sizeof(withport), "%s:8000", t->key);
        e = lm_admin_flat_find(flat, t->k, withport, index);
    }
    if (e && t->pk) { /* the key may be shared across parents (targets, acls): this parent's */
        if (!lm__belongs(e, t, pid)) {
            e = NULL;
            const cJSON *arr = cJSON_GetObjectItemCaseSensitive(flat, t->k->name);
            cJSON *it;
            int i = 0;
            cJSON_ArrayForEach(it, arr) {
                const char *v = t->k->endpoint_key ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, t->k->endpoint_key)) : NULL;
                if (v && strcmp(v, t->key) == 0 && lm__belongs(it, t, pid)) {
                    e = it;
                    if (index)
                        *index = i;
                    break;
                }
                i++;
            }
        }
    }
    return e;
}

/* ---- writes -------------------------------------------------------------- */

typedef struct lm__write {
    lm_admin_call_t *call;
    char op;              /* 'C' POST, 'U' PUT, 'P' PATCH, 'D' DELETE */
    lm__path_t path;
    lm__target_t t;
    cJSON *args;
    char id[40];          /* the entity written */
    int index;            /* its place in the flat document's array */
    int ok_status;
} lm__write_t;


static void lm__w_free(lm__write_t *w)
{
    cJSON_Delete(w->args);
    lm__path_free(&w->path);
    free(w);
}

static void lm__w_done(lm__write_t *w, int status, cJSON *j)
{
    lm_admin_call_t *call = w->call;
    lm__w_free(w);
    call->reply(call, status, j);
}

static const lm_akind_t *lm__ref_kind(const char *field)
{
    if (strcmp(field, "client_certificate") == 0)
        return lm_akind_by_name("certificates");
    char plural[64];
    snprintf(plural, sizeof(plural), "%ss", field);
    return lm_akind_by_name(plural);
}

/* References ({"id"}, {"name"}, {"username"}, or a bare key) to {"id": ...};
 * NULL when fine, else Kong's foreign key violation. */
static cJSON *lm__fix_refs(const lm_akind_t *k, cJSON *ent, cJSON *flat)
{
    for (const lm_afield_t *f = k->fields; f->name; f++) {
        if (f->type != LM_AF_REF)
            continue;
        cJSON *v = cJSON_GetObjectItemCaseSensitive(ent, f->name);
        if (!v || cJSON_IsNull(v)) {
            cJSON_DeleteItemFromObjectCaseSensitive(ent, f->name);
            continue;
        }
        const lm_akind_t *rk = lm__ref_kind(f->name);
        const char *key = NULL, *kf = "id";
        if (cJSON_IsString(v)) {
            key = v->valuestring;
        } else if (cJSON_IsObject(v)) {
            static const char *const keys[] = { "id", "name", "username", NULL };
            for (size_t i = 0; keys[i] && !key; i++)
                if ((key = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, keys[i]))))
                    kf = keys[i];
        }
        if (!rk || !key)
            continue; /* the build reports it */
        const cJSON *target = lm_admin_flat_find(flat, rk, key, NULL);
        if (!target) {
            char pretty[512], m[700];
            lm__pretty(pretty, sizeof(pretty), kf, key);
            snprintf(m, sizeof(m), "the foreign key '%s' does not reference an existing '%s' entity.",
                     pretty, rk->name);
            cJSON *j = lm_admin_err(4, "foreign key violation", m);
            cJSON *fields = cJSON_AddObjectToObject(j, "fields");
            cJSON *r = cJSON_AddObjectToObject(fields, f->name);
            cJSON_AddStringToObject(r, kf, key);
            return j;
        }
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "id", cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(target, "id")));
        cJSON_ReplaceItemInObjectCaseSensitive(ent, f->name, r);
    }
    return NULL;
}

static bool lm__same_ref(const cJSON *a, const cJSON *b, const char *field)
{
    const char *x = lm_admin_ref_id(a, field), *y = lm_admin_ref_id(b, field);
    return (!x && !y) || (x && y && strcasecmp(x, y) == 0);
}

/* 409 when another entity of the kind has the same unique value; NULL if none */
static cJSON *lm__unique(const lm_akind_t *k, const cJSON *ent, cJSON *flat)
{
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ent, "id"));
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(flat, k->name), *it;
    char pretty[700], m[800];
    for (size_t u = 0; u < LM_ARRAY_SIZE(k->unique) && k->unique[u]; u++) {
        const char *f = k->unique[u];
        const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ent, f));
        if (!v)
            continue;
        cJSON_ArrayForEach(it, arr) {
            const char *o = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, f));
            const char *oid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "id"));
            if (it != ent && o && strcmp(o, v) == 0 && !(oid && id && strcasecmp(oid, id) == 0)) {
                lm__pretty(pretty, sizeof(pretty), f, v);
                snprintf(m, sizeof(m), "UNIQUE violation detected on '%s'", pretty);
                cJSON *j = lm_admin_err(5, "unique constraint violation", m);
                cJSON_AddStringToObject(cJSON_AddObjectToObject(j, "fields"), f, v);
                return j;
            }
        }
    }
    bool plugin = strcmp(k->name, "plugins") == 0, target = strcmp(k->name, "targets") == 0;
    if (!plugin && !target)
        return NULL;
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ent, plugin ? "name" : "target"));
    cJSON_ArrayForEach(it, arr) {
        const char *o = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, plugin ? "name" : "target"));
        const char *oid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "id"));
        if (it == ent || !o || !name || strcmp(o, name) != 0 || (oid && id && strcasecmp(oid, id) == 0))
            continue;
        if (plugin && lm__same_ref(it, ent, "service") && lm__same_ref(it, ent, "route") &&
            lm__same_ref(it, ent, "consumer")) {
            const char *s = lm_admin_ref_id(ent, "service"), *r = lm_admin_ref_id(ent, "route"),
                       *c = lm_admin_ref_id(ent, "consumer");
            char sb[64], rb[64], cb[64];
            snprintf(sb, sizeof(sb), s ? "{id=\"%s\"}" : "null", s);
            snprintf(rb, sizeof(rb), r ? "{id=\"%s\"}" : "null", r);
            snprintf(cb, sizeof(cb), c ? "{id=\"%s\"}" : "null", c);
            snprintf(m, sizeof(m), "UNIQUE violation detected on '{consumer=%s,name=\"%s\",route=%s,service=%s}'",
                     cb, name, rb, sb);
            cJSON *j = lm_admin_err(5, "unique constraint violation", m);
            cJSON *fields = cJSON_AddObjectToObject(j, "fields");
            cJSON_AddStringToObject(fields, "name", name);
            static const char *const refs[] = { "consumer", "route", "service" };
            for (int i = 0; i < 3; i++) {
                const char *rid = lm_admin_ref_id(ent, refs[i]);
                if (rid)
                    cJSON_AddStringToObject(cJSON_AddObjectToObject(fields, refs[i]), "id", rid);
                else
                    cJSON_AddNullToObject(fields, refs[i]);
            }
            return j;
        }
        if (target && lm__same_ref(it, ent, "upstream")) {
            lm__pretty(pretty, sizeof(pretty), "target", name);
            snprintf(m, sizeof(m), "UNIQUE violation detected on '%s'", pretty);
            cJSON *j = lm_admin_err(5, "unique constraint violation", m);
            cJSON_AddStringToObject(cJSON_AddObjectToObject(j, "fields"), "target", name);
            return j;
        }
    }
    return NULL;
}

static void lm__random_hex(char *out, size_t n)
{
    char u[37];
    size_t o = 0;
    while (o < n) {
        lm_admin_uuid4(u);
        for (size_t i = 0; u[i] && o < n; i++)
            if (u[i] != '-')
                out[o++] = u[i];
    }
    out[o] = '\0';
}

/* what a new entity gets: id, times, generated credentials, the target's port */
static void lm__fill_new(const lm_akind_t *k, cJSON *ent, long long now)
{
    char buf[40];
    if (!cJSON_GetObjectItemCaseSensitive(ent, "id")) {
        lm_admin_uuid4(buf);
        cJSON_AddStringToObject(ent, "id", buf);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(ent, "created_at");
    cJSON_AddNumberToObject(ent, "created_at", (double)now);
    bool cred = k->parent && strcmp(k->parent, "consumer") == 0;
    if (!cred) {
        cJSON_DeleteItemFromObjectCaseSensitive(ent, "updated_at");
        cJSON_AddNumberToObject(ent, "updated_at", (double)now);
    }
    const char *auto_fields[2] = { NULL, NULL };
    if (strcmp(k->name, "keyauth_credentials") == 0)
        auto_fields[0] = "key";
    else if (strcmp(k->name, "jwt_secrets") == 0)
        auto_fields[0] = "key", auto_fields[1] = "secret";
    else if (strcmp(k->name, "hmacauth_credentials") == 0)
        auto_fields[0] = "secret";
    for (int i = 0; i < 2 && auto_fields[i]; i++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(ent, auto_fields[i]);
        if (!v || cJSON_IsNull(v)) {
            lm__random_hex(buf, 32);
            cJSON_DeleteItemFromObjectCaseSensitive(ent, auto_fields[i]);
            cJSON_AddStringToObject(ent, auto_fields[i], buf);
        }
    }
    const char *tg = strcmp(k->name, "targets") == 0
                         ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ent, "target"))
                         : NULL;
    if (tg && tg[0] && tg[0] != '[' && !strchr(tg, ':')) { /* Kong stores host:port */
        char t[600];
        snprintf(t, sizeof(t), "%s:8000", tg);
        cJSON_ReplaceItemInObjectCaseSensitive(ent, "target", cJSON_CreateString(t));
    }
}

/* DELETE: 400 when something refers to it and Kong would not cascade; else
 * removes what cascades (plugins, credentials, targets) and the entity. */
static cJSON *lm__delete(cJSON *flat, const lm_akind_t *k, cJSON *ent)
{
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ent, "id"));
    static const struct { const char *parent, *child, *field; bool cascade; } rel[] = {
        { "services", "routes", "service", false },
        { "certificates", "snis", "certificate", false },
        { "certificates", "services", "client_certificate", false },
        { "certificates", "upstreams", "client_certificate", false },
        { "services", "plugins", "service", true },
        { "routes", "plugins", "route", true },
        { "consumers", "plugins", "consumer", true },
        { "consumers", "keyauth_credentials", "consumer", true },
        { "consumers", "basicauth_credentials", "consumer", true },
        { "consumers", "jwt_secrets", "consumer", true },
        { "consumers", "hmacauth_credentials", "consumer", true },
        { "consumers", "acls", "consumer", true },
        { "upstreams", "targets", "upstream", true },
    };
    for (size_t r = 0; r < LM_ARRAY_SIZE(rel); r++) {
        if (strcmp(rel[r].parent, k->name) != 0)
            continue;
        cJSON *arr = cJSON_GetObjectItemCaseSensitive(flat, rel[r].child);
        cJSON *it = arr ? arr->child : NULL;
        while (it) {
            cJSON *next = it->next;
            const char *rid = lm_admin_ref_id(it, rel[r].field);
            if (rid && id && strcasecmp(rid, id) == 0) {
                if (!rel[r].cascade) {
                    char m[256];
                    snprintf(m, sizeof(m), "an existing '%s' entity references this '%s' entity",
                             rel[r].child, k->name);
                    cJSON *j = lm_admin_err(4, "foreign key violation", m);
                    cJSON_AddStringToObject(cJSON_AddObjectToObject(j, "fields"), "@referenced_by", rel[r].child);
                    return j;
                }
                cJSON_Delete(cJSON_DetachItemViaPointer(arr, it));
            }
            it = next;
        }
    }
    /* a consumer's nested credential kinds the API does not serve go with it */
    cJSON_Delete(cJSON_DetachItemViaPointer(cJSON_GetObjectItemCaseSensitive(flat, k->name), ent));
    return NULL;
}

static void lm__w_applied(lm_apply_t *a, void *ctx)
{
    lm__write_t *w = ctx;
    lm_server_t *srv = w->call->srv;
    if (a->result != LM_OK) {
        char prefix[128];
        snprintf(prefix, sizeof(prefix), "%s[%d]", w->t.k->name, w->index);
        lm__w_done(w, 400, lm_admin_schema_violation(&a->errs, prefix));
    } else if (w->op == 'D') {
        lm__w_done(w, 204, NULL);
    } else {
        cJSON *flat = lm__flat(srv);
        const cJSON *e = lm_admin_flat_find(flat, w->t.k, w->id, NULL);
        lm__w_done(w, e ? w->ok_status : 500,
                   e ? lm_admin_render(w->t.k, e, flat, w->call->trusted) : lm__msg("An unexpected error occurred"));
    }
}

/* Builds the document of one write when its turn in the apply queue comes
 * (lm_apply_start_built): LM_OK with the document, or LM_DECLINED after
 * answering at once (an error, or nothing to do). */
static int lm__w_build(lm_server_t *srv, void *ctx, char **data, size_t *len)
{
    lm__write_t *w = ctx;
    if (srv->stopping) {
        lm__w_done(w, 503, lm__msg("shutting down"));
        return LM_DECLINED;
    }
    const lm_akind_t *k = w->t.k;
    cJSON *flat = cJSON_Duplicate(lm__flat(srv), 1);
    int idx = -1;
    bool parent_missing = false;
    cJSON *ent = w->t.key ? lm__lookup(flat, &w->t, &idx, &parent_missing) : NULL;
    const char *pid = NULL;
    if (w->t.pk) {
        const cJSON *parent = lm_admin_flat_find(flat, w->t.pk, w->t.pkey, NULL);
        pid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(parent, "id"));
        parent_missing = parent_missing || !pid;
    }
    cJSON *err = NULL;
    int err_status = 400;
    long long now = lm__now();
    if (parent_missing) {
        err = lm__msg("Not found"), err_status = 404;
        goto fail;
    }
    if (w->op == 'D') {
        if (!ent) {
            cJSON_Delete(flat);
            if (w->t.pk)
                lm__w_done(w, 404, lm__msg("Not found"));
            else
                lm__w_done(w, 204, NULL);
            return LM_DECLINED;
        }
        snprintf(w->id, sizeof(w->id), "%s", cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ent, "id")));
        if ((err = lm__delete(flat, k, ent)) != NULL)
            goto fail;
    } else {
        cJSON *args = w->args;
        w->args = NULL;
        if (w->op == 'P') {
            if (!ent) {
                cJSON_Delete(args);
                err = lm__msg("Not found"), err_status = 404;
                goto fail;
            }
            if (cJSON_GetObjectItemCaseSensitive(args, "url")) {
                static const char *const parts[] = { "protocol", "host", "port", "path", NULL };
                for (size_t i = 0; parts[i]; i++)
                    cJSON_DeleteItemFromObjectCaseSensitive(ent, parts[i]);
            }
            cJSON *it = args->child;
            while (it) { /* records (config, healthchecks) merge; null resets */
                cJSON *next = it->next;
                cJSON *cur = cJSON_GetObjectItemCaseSensitive(ent, it->string);
                const lm_afield_t *f = lm_akind_field(k, it->string);
                if (strcmp(it->string, "id") == 0 || strcmp(it->string, "created_at") == 0) {
                    /* kept */
                } else if (cJSON_IsNull(it)) {
                    cJSON_DeleteItemFromObjectCaseSensitive(ent, it->string);
                } else if (f && (f->type == LM_AF_CONFIG || f->type == LM_AF_HEALTH) && cJSON_IsObject(cur) &&
                           cJSON_IsObject(it)) {
                    cJSON *merged = cJSON_Duplicate(cur, 1);
                    cJSON *sub = it->child;
                    while (sub) {
                        cJSON *sn = sub->next;
                        cJSON_DeleteItemFromObjectCaseSensitive(merged, sub->string);
                        if (!cJSON_IsNull(sub))
                            cJSON_AddItemToObject(merged, sub->string, cJSON_Duplicate(sub, 1));
                        sub = sn;
                    }
                    cJSON_ReplaceItemInObjectCaseSensitive(ent, it->string, merged);
                } else {
                    cJSON_DeleteItemFromObjectCaseSensitive(ent, it->string);
                    cJSON_AddItemToObject(ent, it->string, cJSON_Duplicate(it, 1));
                }
                it = next;
            }
            cJSON_Delete(args);
            cJSON_DeleteItemFromObjectCaseSensitive(ent, "updated_at");
            cJSON_AddNumberToObject(ent, "updated_at", (double)now);
            w->ok_status = 200;
        } else {
            /* POST, or PUT: a whole new version of the entity */
            cJSON_DeleteItemFromObjectCaseSensitive(args, "created_at");
            cJSON_DeleteItemFromObjectCaseSensitive(args, "updated_at");
            if (w->op == 'U') {
                cJSON_DeleteItemFromObjectCaseSensitive(args, "id");
                if (ent) {
                    cJSON *old = ent;
                    cJSON_AddItemToObject(args, "id", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(old, "id"), 1));
                    const cJSON *ca = cJSON_GetObjectItemCaseSensitive(old, "created_at");
                    cJSON_AddNumberToObject(args, "created_at", cJSON_IsNumber(ca) ? ca->valuedouble : (double)now);
                    if (!(k->parent && strcmp(k->parent, "consumer") == 0))
                        cJSON_AddNumberToObject(args, "updated_at", (double)now);
                    if (k->endpoint_key && !lm_admin_is_uuid(w->t.key)) {
                        cJSON_DeleteItemFromObjectCaseSensitive(args, k->endpoint_key);
                        cJSON_AddStringToObject(args, k->endpoint_key, w->t.key);
                    }
                    cJSON_ReplaceItemViaPointer(cJSON_GetObjectItemCaseSensitive(flat, k->name), old, args);
                    ent = args;
                } else {
                    if (lm_admin_is_uuid(w->t.key)) {
                        cJSON_AddStringToObject(args, "id", w->t.key);
                    } else if (k->endpoint_key) {
                        cJSON_DeleteItemFromObjectCaseSensitive(args, k->endpoint_key);
                        cJSON_AddStringToObject(args, k->endpoint_key, w->t.key);
                    } else {
                        cJSON_Delete(args);
                        err = lm__msg("Not found"), err_status = 404;
                        goto fail;
                    }
                    ent = NULL;
                }
            } else {
                const char *gid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(args, "id"));
                if (gid && lm_admin_flat_find(flat, k, gid, NULL) && lm_admin_is_uuid(gid)) {
                    char pretty[128], m[256];
                    lm__pretty(pretty, sizeof(pretty), "id", gid);
                    snprintf(m, sizeof(m), "primary key violation on key '%s'", pretty);
                    err = lm_admin_err(3, "primary key violation", m);
                    cJSON_AddStringToObject(cJSON_AddObjectToObject(err, "fields"), "id", gid);
                    cJSON_Delete(args);
                    goto fail;
                }
                ent = NULL;
            }
            if (!ent) {
                lm__fill_new(k, args, now);
                cJSON *list = lm_admin_flat_list(flat, k);
                cJSON_AddItemToArray(list, args);
                ent = args;
            }
            w->ok_status = w->op == 'C' ? 201 : 200; /* Kong: PUT answers 200 either way */
        }
        if (w->t.pk) { /* the parent in the URL wins */
            cJSON_DeleteItemFromObjectCaseSensitive(ent, w->t.pfield);
            cJSON_AddStringToObject(cJSON_AddObjectToObject(ent, w->t.pfield), "id", pid);
        }
        if ((err = lm__fix_refs(k, ent, flat)) != NULL)
            goto fail;
        if ((err = lm__unique(k, ent, flat)) != NULL) {
            err_status = 409;
            goto fail;
        }
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ent, "id"));
        snprintf(w->id, sizeof(w->id), "%s", id ? id : "");
        /* its place, for the errors of the apply */
        const cJSON *it;
        w->index = 0;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(flat, k->name)) {
            if (it == ent)
                break;
            w->index++;
        }
    }
    /* empty kinds are left out of the document */
    cJSON *it = flat->child;
    while (it) {
        cJSON *next = it->next;
        if (cJSON_IsArray(it) && it->child == NULL)
            cJSON_Delete(cJSON_DetachItemViaPointer(flat, it));
        it = next;
    }
    *data = cJSON_PrintUnformatted(flat);
    *len = strlen(*data);
    cJSON_Delete(flat);
    return LM_OK;
fail:
    cJSON_Delete(flat);
    lm__w_done(w, err_status, err);
    return LM_DECLINED;
}

/* ---- DB-less refusals (--managed) ----------------------------------------- */

static int lm__refuse_managed(lm_admin_call_t *call, const lm_akind_t *k, char op)
{
    const char *verb = op == 'C' ? "create" : op == 'U' ? "create or update" : op == 'P' ? "update" : "delete";
    char m[256];
    snprintf(m, sizeof(m), "cannot %s '%s' entities when not using a database", verb, k->name);
    return lm__reply(call, 405, lm_admin_err(12, "operation unsupported", m));
}

/* ---- entry ------------------------------------------------------------------ */

int lm_admin_api_handle(lm_admin_call_t *call)
{
    lm_server_t *srv = call->srv;
    lm_str_t m = call->method;
    bool get = lm_str_eq(m, LM_STR("GET")) || lm_str_eq(m, LM_STR("HEAD"));
    char op = lm_str_eq(m, LM_STR("POST")) ? 'C' : lm_str_eq(m, LM_STR("PUT")) ? 'U'
              : lm_str_eq(m, LM_STR("PATCH")) ? 'P' : lm_str_eq(m, LM_STR("DELETE")) ? 'D' : 0;
    lm__path_t p;
    if (!lm__split(call->path, &p)) {
        lm__path_free(&p);
        return LM_DECLINED;
    }
    if (p.n >= 1 && (strcmp(p.seg[0], "schemas") == 0 ||
                     (p.n == 2 && strcmp(p.seg[0], "plugins") == 0 && strcmp(p.seg[1], "enabled") == 0))) {
        int rc = lm_admin_schemas(call, p.seg, p.n);
        lm__path_free(&p);
        return rc;
    }
    /* /upstreams/{u}/health and the targets' health endpoints belong to admin_upstreams.c */
    if (p.n >= 3 && strcmp(p.seg[0], "upstreams") == 0 && (strcmp(p.seg[2], "health") == 0 || p.n >= 5)) {
        lm__path_free(&p);
        return LM_DECLINED;
    }
    lm__target_t t;
    if (lm__resolve(&p, &t) != LM_OK) {
        /* /routes/{r}/service and the like: the entity a reference names */
        if (p.n == 3 && get) {
            const lm_akind_t *k = lm_akind_by_seg(p.seg[0], strlen(p.seg[0]), false);
            const lm_afield_t *f = k ? lm_akind_field(k, p.seg[2]) : NULL;
            if (f && f->type == LM_AF_REF) {
                cJSON *flat = lm__flat(srv);
                const cJSON *e = lm_admin_flat_find(flat, k, p.seg[1], NULL);
                const char *rid = e ? lm_admin_ref_id(e, f->name) : NULL;
                const lm_akind_t *rk = lm__ref_kind(f->name);
                const cJSON *r = rid && rk ? lm_admin_flat_find(flat, rk, rid, NULL) : NULL;
                lm__path_free(&p);
                return lm__reply(call, r ? 200 : 404, r ? lm_admin_render(rk, r, flat, call->trusted) : lm__msg("Not found"));
            }
        }
        lm__path_free(&p);
        return LM_DECLINED;
    }
    bool collection = t.key == NULL;
    if (get) {
        cJSON *flat = lm__flat(srv);
        int rc;
        if (collection) {
            rc = lm__get_list(call, &t, flat);
        } else {
            bool pm;
            const cJSON *e = lm__lookup(flat, &t, NULL, &pm);
            rc = lm__reply(call, e ? 200 : 404, e ? lm_admin_render(t.k, e, flat, call->trusted) : lm__msg("Not found"));
        }
        lm__path_free(&p);
        return rc;
    }
    /* writes: POST on collections; PUT, PATCH, DELETE on entities */
    if (!op || (collection != (op == 'C'))) {
        lm__path_free(&p);
        return lm__reply(call, 405, lm__msg("Method not allowed"));
    }
    if (!t.k->seg && !t.pk) { /* targets only under their upstream */
        lm__path_free(&p);
        return lm__reply(call, 404, lm__msg("Not found"));
    }
    if (srv->opts.managed) {
        lm__path_free(&p);
        return lm__refuse_managed(call, t.k, op);
    }
    cJSON *args = NULL;
    if (op != 'D') {
        bool form;
        const char *err;
        args = lm_admin_decode_body(call->content_type.ptr ? call->content_type.ptr : "", call->content_type.len,
                                    call->body ? call->body : "", call->body_len, &form, &err);
        if (!args) {
            lm__path_free(&p);
            return lm__reply(call, 400, lm__msg(err));
        }
        if (form)
            lm_admin_coerce(t.k, args);
    }
    lm__write_t *w = calloc(1, sizeof(*w));
    if (!w)
        abort();
    w->call = call;
    w->op = op;
    w->path = p; /* t's strings point into it */
    w->t = t;
    w->args = args;
    lm_apply_start_built(srv, lm__w_build, lm__w_applied, w);
    return LM_OK;
}

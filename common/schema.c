/* schema.c - see lm_schema.h */
#include "lm_schema.h"

#include <arpa/inet.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

static void lm__verr(const lm_schema_ctx_t *sc, const char *field, const char *fmt, va_list ap)
{
    char msg[512], path[1024], efield[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    const char *sep = field && field[0] != '[' ? "." : "";
    snprintf(path, sizeof(path), "%s%s%s", sc->path ? sc->path : "", field ? sep : "", field ? field : "");
    if (sc->field)
        snprintf(efield, sizeof(efield), "%s%s%s", sc->field, field ? sep : "", field ? field : "");
    else
        snprintf(efield, sizeof(efield), "%s", field ? field : "");
    lm_config_errors_add(sc->errs, path, sc->entity_type, sc->entity_name, efield[0] ? efield : NULL, "%s", msg);
}

void lm_schema_error(const lm_schema_ctx_t *sc, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lm__verr(sc, field, fmt, ap);
    va_end(ap);
}

static const char *lm__type_msg(lm_sf_type_t t)
{
    switch (t) {
    case LM_SF_STRING: return "expected a string";
    case LM_SF_INTEGER: return "expected an integer";
    case LM_SF_NUMBER: return "expected a number";
    case LM_SF_BOOLEAN: return "expected a boolean";
    case LM_SF_ARRAY: return "expected an array";
    case LM_SF_MAP: return "expected a map";
    case LM_SF_RECORD: return "expected a record";
    default: return "invalid value";
    }
}

static bool lm__type_ok(lm_sf_type_t t, const cJSON *v)
{
    switch (t) {
    case LM_SF_STRING: return cJSON_IsString(v);
    case LM_SF_INTEGER: return cJSON_IsNumber(v) && floor(v->valuedouble) == v->valuedouble && fabs(v->valuedouble) < 9e15;
    case LM_SF_NUMBER: return cJSON_IsNumber(v);
    case LM_SF_BOOLEAN: return cJSON_IsBool(v);
    case LM_SF_ARRAY: return cJSON_IsArray(v);
    case LM_SF_MAP:
    case LM_SF_RECORD: return cJSON_IsObject(v);
    default: return true;
    }
}

static void lm__fmt_num(char *out, size_t n, double v)
{
    if (floor(v) == v && fabs(v) < 1e15)
        snprintf(out, n, "%.0f", v);
    else
        snprintf(out, n, "%g", v);
}

static bool lm__range(const lm_schema_ctx_t *sc, const char *field, const lm_schema_field_t *f, double v,
                      const char *what)
{
    char lo[32], hi[32];
    lm__fmt_num(lo, sizeof(lo), f->min);
    lm__fmt_num(hi, sizeof(hi), f->max);
    if (f->has_min && f->has_max && (v < f->min || v > f->max)) {
        if (what)
            lm_schema_error(sc, field, "%s must be between %s and %s", what, lo, hi);
        else
            lm_schema_error(sc, field, "value should be between %s and %s", lo, hi);
        return false;
    }
    if (f->has_min && v < f->min) {
        if (what)
            lm_schema_error(sc, field, "%s must be at least %s", what, lo);
        else
            lm_schema_error(sc, field, "value must be greater than or equal to %s", lo);
        return false;
    }
    if (f->has_max && v > f->max) {
        if (what)
            lm_schema_error(sc, field, "%s must be at most %s", what, hi);
        else
            lm_schema_error(sc, field, "value must be less than or equal to %s", hi);
        return false;
    }
    return true;
}

static cJSON *lm__value(const lm_schema_ctx_t *sc, const char *field, const lm_schema_field_t *f, lm_sf_type_t t,
                        const cJSON *v, bool is_elem);

/* checks one scalar or record value of type t; returns the normalised copy or NULL */
static cJSON *lm__scalar(const lm_schema_ctx_t *sc, const char *field, const lm_schema_field_t *f, lm_sf_type_t t,
                         const cJSON *v, bool is_elem)
{
    if (!lm__type_ok(t, v)) {
        lm_schema_error(sc, field, "%s", lm__type_msg(t));
        return NULL;
    }
    if (t == LM_SF_RECORD) {
        lm_schema_ctx_t sub = *sc;
        char p[1024], ef[512];
        snprintf(p, sizeof(p), "%s%s%s", sc->path ? sc->path : "", field[0] == '[' ? "" : ".", field);
        snprintf(ef, sizeof(ef), "%s%s%s", sc->field ? sc->field : "", sc->field && field[0] != '[' ? "." : "", field);
        sub.path = p;
        sub.field = ef;
        return lm_schema_apply(&sub, f->fields, v);
    }
    bool ok = true;
    if (t == LM_SF_STRING) {
        size_t len = strlen(v->valuestring);
        if (len == 0 && !f->allow_empty && !(f->has_min && f->min <= 0)) {
            lm_schema_error(sc, field, "length must be at least 1");
            return NULL;
        }
        if ((f->has_min || f->has_max) && !is_elem)
            ok = lm__range(sc, field, f, (double)len, "length");
        else if (f->has_min && is_elem && len < f->min)
            ok = (lm_schema_error(sc, field, "length must be at least %.0f", f->min), false);
        if (ok && f->one_of) {
            bool found = false;
            for (size_t i = 0; f->one_of[i]; i++)
                found = found || strcmp(f->one_of[i], v->valuestring) == 0;
            if (!found) {
                char list[512] = "";
                size_t o = 0;
                for (size_t i = 0; f->one_of[i] && o < sizeof(list) - 64; i++)
                    o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "", f->one_of[i]);
                lm_schema_error(sc, field, "expected one of: %s", list);
                ok = false;
            }
        }
    } else if ((t == LM_SF_INTEGER || t == LM_SF_NUMBER) && (f->has_min || f->has_max) && !is_elem) {
        ok = lm__range(sc, field, f, v->valuedouble, NULL);
    }
    if (ok && f->check) {
        const char *msg = f->check(v);
        if (msg) {
            lm_schema_error(sc, field, "%s", msg);
            ok = false;
        }
    }
    return ok ? cJSON_Duplicate(v, 1) : NULL;
}

static cJSON *lm__value(const lm_schema_ctx_t *sc, const char *field, const lm_schema_field_t *f, lm_sf_type_t t,
                        const cJSON *v, bool is_elem)
{
    if (t == LM_SF_ANY)
        return cJSON_Duplicate(v, 1);
    if (t != LM_SF_ARRAY && t != LM_SF_MAP)
        return lm__scalar(sc, field, f, t, v, is_elem);
    if (!lm__type_ok(t, v)) {
        lm_schema_error(sc, field, "%s", lm__type_msg(t));
        return NULL;
    }
    cJSON *out = t == LM_SF_ARRAY ? cJSON_CreateArray() : cJSON_CreateObject();
    bool ok = true;
    size_t i = 0;
    const cJSON *it;
    if (t == LM_SF_ARRAY && (f->has_min || f->has_max)) {
        double n = (double)cJSON_GetArraySize(v);
        if (f->has_min && n < f->min) {
            lm_schema_error(sc, field, "length must be at least %.0f", f->min);
            ok = false;
        } else if (f->has_max && n > f->max) {
            lm_schema_error(sc, field, "length must be at most %.0f", f->max);
            ok = false;
        }
    }
    cJSON_ArrayForEach(it, v) {
        char ef[512];
        if (t == LM_SF_ARRAY)
            snprintf(ef, sizeof(ef), "%s[%zu]", field, i);
        else
            snprintf(ef, sizeof(ef), "%s.%s", field, it->string);
        i++;
        if (cJSON_IsNull(it)) {
            lm_schema_error(sc, ef, "required field missing");
            ok = false;
            continue;
        }
        cJSON *e = lm__value(sc, ef, f, f->elem ? f->elem : LM_SF_STRING, it, true);
        if (!e) {
            ok = false;
            continue;
        }
        if (t == LM_SF_ARRAY) {
            bool dup = false;
            if (f->unique) {
                const cJSON *o;
                cJSON_ArrayForEach(o, out) dup = dup || cJSON_Compare(o, e, 1);
            }
            if (dup)
                cJSON_Delete(e);
            else
                cJSON_AddItemToArray(out, e);
        } else {
            cJSON_AddItemToObject(out, it->string, e);
        }
    }
    if (!ok) {
        cJSON_Delete(out);
        return NULL;
    }
    return out;
}

cJSON *lm_schema_apply(const lm_schema_ctx_t *sc, const lm_schema_field_t *fields, const cJSON *obj)
{
    if (obj && !cJSON_IsNull(obj) && !cJSON_IsObject(obj)) {
        lm_schema_error(sc, NULL, "expected a record");
        return NULL;
    }
    bool ok = true;
    const cJSON *it;
    if (obj && !cJSON_IsNull(obj)) {
        cJSON_ArrayForEach(it, obj) {
            bool known = false;
            for (size_t i = 0; fields && fields[i].name; i++)
                known = known || strcmp(fields[i].name, it->string) == 0;
            if (!known) {
                lm_schema_error(sc, it->string, "unknown field");
                ok = false;
            }
        }
    }
    cJSON *out = cJSON_CreateObject();
    for (size_t i = 0; fields && fields[i].name; i++) {
        const lm_schema_field_t *f = &fields[i];
        const cJSON *v = obj && cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, f->name) : NULL;
        cJSON *nv = NULL;
        if (v && !cJSON_IsNull(v)) {
            nv = lm__value(sc, f->name, f, f->type, v, false);
            if (!nv) {
                ok = false;
                continue;
            }
        } else if (f->def) {
            nv = cJSON_Parse(f->def);
        } else if (f->type == LM_SF_RECORD && !f->required) {
            /* a nested record with defaults of its own exists even when not given */
            lm_schema_ctx_t sub = *sc;
            char p[1024], ef[512];
            snprintf(p, sizeof(p), "%s.%s", sc->path ? sc->path : "", f->name);
            snprintf(ef, sizeof(ef), "%s%s%s", sc->field ? sc->field : "", sc->field ? "." : "", f->name);
            sub.path = p;
            sub.field = ef;
            nv = lm_schema_apply(&sub, f->fields, NULL);
            if (!nv) {
                ok = false;
                continue;
            }
        } else if (f->required) {
            lm_schema_error(sc, f->name, "required field missing");
            ok = false;
            continue;
        }
        cJSON_AddItemToObject(out, f->name, nv ? nv : cJSON_CreateNull());
    }
    if (!ok) {
        cJSON_Delete(out);
        return NULL;
    }
    return out;
}

/* ---- checks ---------------------------------------------------------------- */

const char *lm_schema_check_header_name(const cJSON *v)
{
    static __thread char msg[320];
    const char *s = v->valuestring;
    if (!s || !*s)
        return "length must be at least 1";
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
            snprintf(msg, sizeof(msg), "bad header name '%.200s', allowed characters are A-Z, a-z, 0-9, '_', and '-'", s);
            return msg;
        }
    }
    return NULL;
}

const char *lm_schema_check_regex(const cJSON *v)
{
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)v->valuestring, PCRE2_ZERO_TERMINATED, 0, &err, &off, NULL);
    if (!re) {
        static __thread char msg[320];
        snprintf(msg, sizeof(msg), "'%.200s' is not a valid regex", v->valuestring);
        return msg;
    }
    pcre2_code_free(re);
    return NULL;
}

static const char *lm__cidr_error(const cJSON *v)
{
    char buf[64];
    const char *s = v->valuestring;
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= sizeof(buf))
        return "invalid ip or cidr range";
    memcpy(buf, s, n);
    buf[n] = '\0';
    unsigned char tmp[16];
    int max;
    if (inet_pton(AF_INET, buf, tmp) == 1)
        max = 32;
    else if (inet_pton(AF_INET6, buf, tmp) == 1)
        max = 128;
    else
        return "invalid ip or cidr range";
    if (slash) {
        char *end;
        long bits = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || bits < 0 || bits > max)
            return "invalid ip or cidr range";
    }
    return NULL;
}

const char *lm_schema_check_cidr(const cJSON *v)
{
    static __thread char msg[320];
    if (!lm__cidr_error(v))
        return NULL;
    snprintf(msg, sizeof(msg), "invalid ip or cidr range: '%.200s'", v->valuestring);
    return msg;
}

/* ---- accessors --------------------------------------------------------------- */

const cJSON *lm_schema_get(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

const char *lm_schema_str(const cJSON *obj, const char *name)
{
    const cJSON *v = lm_schema_get(obj, name);
    return v && cJSON_IsString(v) ? v->valuestring : NULL;
}

double lm_schema_num(const cJSON *obj, const char *name)
{
    const cJSON *v = lm_schema_get(obj, name);
    return v && cJSON_IsNumber(v) ? v->valuedouble : 0;
}

bool lm_schema_bool(const cJSON *obj, const char *name)
{
    const cJSON *v = lm_schema_get(obj, name);
    return v && cJSON_IsTrue(v);
}

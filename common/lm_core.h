/*
 * lm_core.h - basic types shared by every Limen module.
 *
 * Return convention (used by every function that can fail, unless its
 * header says otherwise):
 *   LM_OK        (0)   done
 *   LM_ERROR     (-1)  failed; the caller gets no callback afterwards
 *   LM_AGAIN     (-2)  not enough input yet / would block: call again with more
 *   LM_DECLINED  (-3)  not for me: let the next handler try
 * Functions that produce an HTTP status on failure return it as a positive
 * number (400, 413, ...) and document so.
 */
#ifndef LM_CORE_H
#define LM_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <stdbool.h>
#include <strings.h>

#define LM_OK        0
#define LM_ERROR    (-1)
#define LM_AGAIN    (-2)
#define LM_DECLINED (-3)

#define LM_VERSION "0.1.0"

/* A byte slice: never owns memory, never NUL-terminated unless said so. */
typedef struct {
    const char *ptr;
    size_t len;
} lm_str_t;

#define LM_STR(lit) ((lm_str_t){ (lit), sizeof(lit) - 1 })
#define LM_STR_NULL ((lm_str_t){ NULL, 0 })
#define LM_STR_FMT(s) (int)(s).len, (s).ptr /* use with "%.*s" */

#define LM_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define LM_MIN(a, b) ((a) < (b) ? (a) : (b))
#define LM_MAX(a, b) ((a) > (b) ? (a) : (b))
#define LM_UNUSED(x) (void)(x)
/* the struct of type T whose member `field` is at p */
#define lm_container_of(p, T, field) ((T *)(void *)((char *)(p) - offsetof(T, field)))
#define LM_LIKELY(x) __builtin_expect(!!(x), 1)
#define LM_UNLIKELY(x) __builtin_expect(!!(x), 0)

static inline lm_str_t lm_str(const char *cstr)
{
    return (lm_str_t){ cstr, cstr ? strlen(cstr) : 0 };
}

static inline bool lm_str_eq(lm_str_t a, lm_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* ASCII case-insensitive comparison. */
static inline bool lm_str_ieq(lm_str_t a, lm_str_t b)
{
    return a.len == b.len && (a.len == 0 || strncasecmp(a.ptr, b.ptr, a.len) == 0);
}

static inline bool lm_str_ieq_cstr(lm_str_t a, const char *b)
{
    return lm_str_ieq(a, lm_str(b));
}

static inline bool lm_str_has_prefix(lm_str_t s, lm_str_t prefix)
{
    return s.len >= prefix.len && memcmp(s.ptr, prefix.ptr, prefix.len) == 0;
}

/* The value of a hexadecimal digit, or -1. */
static inline int lm_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into out (room for n + 1 bytes; NUL-terminated),
 * '+' as a space when plus_space (forms, query arguments); a malformed escape
 * is kept as it is. Returns the decoded length. */
static inline size_t lm_url_decode(char *out, const char *s, size_t n, bool plus_space)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '+' && plus_space) {
            out[o++] = ' ';
        } else if (s[i] == '%' && i + 2 < n && (hi = lm_hexval(s[i + 1])) >= 0 && (lo = lm_hexval(s[i + 2])) >= 0) {
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return o;
}

static inline char lm_tolower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

#endif /* LM_CORE_H */

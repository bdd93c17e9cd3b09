/*
 * lm_test.h - the tiny unit-test harness every *_test.c uses.
 *
 *   LM_TEST(name) { LM_CHECK(expr); LM_CHECK_EQ_INT(a, b); LM_CHECK_STR(s, "x"); }
 *   int main(void) { LM_RUN(name); ...; return lm_test_summary("http1"); }
 *
 * Prints one line per failed check and a closing "N passed, N failed"
 * line per binary; exit status 1 if anything failed.
 */
#ifndef LM_TEST_H
#define LM_TEST_H

#include <stdio.h>
#include <string.h>

static int lm__t_passed, lm__t_failed, lm__t_cur_failed;
static const char *lm__t_name;

#define LM_TEST(name) static void name(void)

#define LM_RUN(fn)                                                      \
    do {                                                                \
        lm__t_name = #fn;                                               \
        lm__t_cur_failed = 0;                                           \
        fn();                                                           \
        if (lm__t_cur_failed)                                           \
            lm__t_failed++;                                             \
        else                                                            \
            lm__t_passed++;                                             \
    } while (0)

#define LM_FAILF(...)                                                   \
    do {                                                                \
        fprintf(stderr, "FAIL %s (%s:%d): ", lm__t_name, __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__);                                   \
        fputc('\n', stderr);                                            \
        lm__t_cur_failed = 1;                                           \
    } while (0)

#define LM_CHECK(expr)                                                  \
    do {                                                                \
        if (!(expr))                                                    \
            LM_FAILF("%s", #expr);                                      \
    } while (0)

#define LM_CHECK_EQ_INT(a, b)                                           \
    do {                                                                \
        long long lm__a = (long long)(a), lm__b = (long long)(b);       \
        if (lm__a != lm__b)                                             \
            LM_FAILF("%s == %s: %lld != %lld", #a, #b, lm__a, lm__b);   \
    } while (0)

#define LM_CHECK_STR(a, b)                                              \
    do {                                                                \
        const char *lm__a = (a), *lm__b = (b);                          \
        if (lm__a == NULL || lm__b == NULL || strcmp(lm__a, lm__b) != 0) \
            LM_FAILF("%s == %s: \"%s\" != \"%s\"", #a, #b,              \
                     lm__a ? lm__a : "(null)", lm__b ? lm__b : "(null)"); \
    } while (0)

/* compare a slice with a C string */
#define LM_CHECK_SLICE(s, cstr)                                         \
    do {                                                                \
        lm_str_t lm__s = (s);                                           \
        const char *lm__c = (cstr);                                     \
        if (lm__s.len != strlen(lm__c) || memcmp(lm__s.ptr, lm__c, lm__s.len) != 0) \
            LM_FAILF("%s == \"%s\": got \"%.*s\"", #s, lm__c,           \
                     (int)lm__s.len, lm__s.ptr ? lm__s.ptr : "");       \
    } while (0)

static inline int lm_test_summary(const char *suite)
{
    printf("%s: %d passed, %d failed\n", suite, lm__t_passed, lm__t_failed);
    return lm__t_failed ? 1 : 0;
}

#endif /* LM_TEST_H */

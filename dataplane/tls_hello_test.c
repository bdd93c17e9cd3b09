/* tls_hello_test.c - the ClientHello/SNI parser on real hellos (captured from
 * openssl s_client and Python's ssl), fragmented, truncated and malformed. */
#include "lm_tls_hello.h"
#include "lm_test.h"

#include <stdint.h>

/* openssl s_client -servername app.example.com (TLS 1.3 offered) */
static const unsigned char lm__hello[] = {
  0x16, 0x03, 0x01, 0x01, 0x3c, 0x01, 0x00, 0x01, 0x38, 0x03, 0x03, 0x0b,
  0x15, 0xac, 0x4c, 0x61, 0x93, 0xf9, 0x40, 0x41, 0xb7, 0xf9, 0x28, 0xa5,
  0x4e, 0x22, 0x1a, 0x01, 0x9e, 0xee, 0x12, 0x1f, 0x57, 0xb6, 0x7f, 0x1d,
  0xa7, 0x67, 0xcd, 0x4d, 0x94, 0xb8, 0x7d, 0x20, 0x71, 0x10, 0x7c, 0xbc,
  0xce, 0xf5, 0xa7, 0x5f, 0xa1, 0x20, 0x1a, 0xfc, 0xfa, 0xde, 0x7c, 0x6e,
  0x38, 0xb8, 0xa4, 0x54, 0xd4, 0xf5, 0x9d, 0x69, 0x8e, 0x47, 0x6a, 0xb4,
  0x01, 0x19, 0x0e, 0x63, 0x00, 0x3e, 0x13, 0x02, 0x13, 0x03, 0x13, 0x01,
  0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9, 0xcc, 0xa8, 0xcc, 0xaa,
  0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e, 0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b,
  0xc0, 0x23, 0xc0, 0x27, 0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39,
  0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33, 0x00, 0x9d, 0x00, 0x9c, 0x00, 0x3d,
  0x00, 0x3c, 0x00, 0x35, 0x00, 0x2f, 0x00, 0xff, 0x01, 0x00, 0x00, 0xb1,
  0x00, 0x00, 0x00, 0x14, 0x00, 0x12, 0x00, 0x00, 0x0f, 0x61, 0x70, 0x70,
  0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x63, 0x6f, 0x6d,
  0x00, 0x0b, 0x00, 0x04, 0x03, 0x00, 0x01, 0x02, 0x00, 0x0a, 0x00, 0x16,
  0x00, 0x14, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00, 0x18,
  0x01, 0x00, 0x01, 0x01, 0x01, 0x02, 0x01, 0x03, 0x01, 0x04, 0x00, 0x23,
  0x00, 0x00, 0x00, 0x16, 0x00, 0x00, 0x00, 0x17, 0x00, 0x00, 0x00, 0x0d,
  0x00, 0x2a, 0x00, 0x28, 0x04, 0x03, 0x05, 0x03, 0x06, 0x03, 0x08, 0x07,
  0x08, 0x08, 0x08, 0x09, 0x08, 0x0a, 0x08, 0x0b, 0x08, 0x04, 0x08, 0x05,
  0x08, 0x06, 0x04, 0x01, 0x05, 0x01, 0x06, 0x01, 0x03, 0x03, 0x03, 0x01,
  0x03, 0x02, 0x04, 0x02, 0x05, 0x02, 0x06, 0x02, 0x00, 0x2b, 0x00, 0x09,
  0x08, 0x03, 0x04, 0x03, 0x03, 0x03, 0x02, 0x03, 0x01, 0x00, 0x2d, 0x00,
  0x02, 0x01, 0x01, 0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00,
  0x20, 0x0c, 0xd4, 0x99, 0x34, 0x9e, 0xec, 0x32, 0x5f, 0x3c, 0xd1, 0xeb,
  0x9f, 0xfb, 0x64, 0x97, 0xdf, 0xbf, 0xf3, 0x7e, 0xad, 0xee, 0x46, 0x2e,
  0x85, 0x4d, 0xb7, 0xf9, 0x99, 0x9e, 0xfd, 0x31, 0x6f
};
static const unsigned int lm__hello_len = 321;

static size_t lm__recs(uint8_t *out, const uint8_t *body, size_t n, const size_t *cuts, size_t ncuts)
{
    size_t o = 0, from = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        out[o++] = 0x16, out[o++] = 3, out[o++] = 1;
        out[o++] = (uint8_t)((to - from) >> 8), out[o++] = (uint8_t)(to - from);
        memcpy(out + o, body + from, to - from);
        o += to - from;
        from = to;
    }
    return o;
}

LM_TEST(real_hello)
{
    lm_tls_hello_t h;
    LM_CHECK_EQ_INT(lm_tls_hello_parse(lm__hello, lm__hello_len, &h), LM_OK);
    LM_CHECK_STR(h.sni, "app.example.com");
    LM_CHECK_EQ_INT(h.sni_len, 15);
    LM_CHECK(h.tls13);
    LM_CHECK_EQ_INT(h.consumed, lm__hello_len);
    /* bytes after the hello (early data, a pipelined record) are not ours */
    uint8_t more[1024];
    memcpy(more, lm__hello, lm__hello_len);
    memcpy(more + lm__hello_len, "\x17\x03\x03\x00\x01x", 6);
    LM_CHECK_EQ_INT(lm_tls_hello_parse(more, lm__hello_len + 6, &h), LM_OK);
    LM_CHECK_EQ_INT(h.consumed, lm__hello_len);
}

LM_TEST(every_prefix_wants_more)
{
    lm_tls_hello_t h;
    for (size_t k = 0; k < lm__hello_len; k++)
        if (lm_tls_hello_parse(lm__hello, k, &h) != LM_AGAIN)
            LM_FAILF("prefix %zu", k);
}

LM_TEST(fragmented_over_records)
{
    const uint8_t *body = lm__hello + 5;
    size_t n = lm__hello_len - 5;
    uint8_t buf[2048];
    size_t cuts[] = { 1, 3, 50, 51, n - 1 };
    size_t len = lm__recs(buf, body, n, cuts, 5);
    lm_tls_hello_t h;
    LM_CHECK_EQ_INT(lm_tls_hello_parse(buf, len, &h), LM_OK);
    LM_CHECK_STR(h.sni, "app.example.com");
    LM_CHECK_EQ_INT(h.consumed, len);
    for (size_t k = 0; k < len; k++)
        if (lm_tls_hello_parse(buf, k, &h) != LM_AGAIN)
            LM_FAILF("fragmented prefix %zu", k);
}

LM_TEST(malformed)
{
    lm_tls_hello_t h;
    uint8_t buf[2048];
    LM_CHECK_EQ_INT(lm_tls_hello_parse((const uint8_t *)"GET / HTTP/1.1\r\n", 16, &h), LM_ERROR);
    LM_CHECK_EQ_INT(lm_tls_hello_parse((const uint8_t *)"G", 1, &h), LM_ERROR); /* at the first byte */
    LM_CHECK_EQ_INT(lm_tls_hello_parse((const uint8_t *)"\x16\x03\x01\x00\x00", 5, &h), LM_ERROR);
    LM_CHECK_EQ_INT(lm_tls_hello_parse((const uint8_t *)"\x16\x03\x01\x40\x01", 5, &h), LM_ERROR); /* > 2^14 */
    LM_CHECK_EQ_INT(lm_tls_hello_parse((const uint8_t *)"\x16\x02", 2, &h), LM_ERROR);
    /* a ServerHello */
    memcpy(buf, lm__hello, lm__hello_len);
    buf[5] = 2;
    LM_CHECK_EQ_INT(lm_tls_hello_parse(buf, lm__hello_len, &h), LM_ERROR);
    /* bytes after the hello inside its record */
    memcpy(buf, lm__hello, lm__hello_len);
    size_t rl = lm__hello_len - 5 + 2;
    buf[3] = (uint8_t)(rl >> 8), buf[4] = (uint8_t)rl;
    buf[lm__hello_len] = 0, buf[lm__hello_len + 1] = 0;
    LM_CHECK_EQ_INT(lm_tls_hello_parse(buf, lm__hello_len + 2, &h), LM_ERROR);
    /* a space in the name, an empty label */
    const char *names[] = { "app example.com", "app..xample.com", ".pp.example.com" };
    for (size_t i = 0; i < 3; i++) {
        memcpy(buf, lm__hello, lm__hello_len);
        uint8_t *at = memmem(buf, lm__hello_len, "app.example.com", 15);
        LM_CHECK(at != NULL);
        if (!at)
            return;
        memcpy(at, names[i], 15);
        LM_CHECK_EQ_INT(lm_tls_hello_parse(buf, lm__hello_len, &h), LM_ERROR);
    }
    /* upper case is folded, a trailing dot removed */
    memcpy(buf, lm__hello, lm__hello_len);
    memcpy(memmem(buf, lm__hello_len, "app.example.com", 15), "APP.Example.co.", 15);
    LM_CHECK_EQ_INT(lm_tls_hello_parse(buf, lm__hello_len, &h), LM_OK);
    LM_CHECK_STR(h.sni, "app.example.co");
    /* the server_name extension twice: its type rewritten into the next extension's */
    memcpy(buf, lm__hello, lm__hello_len);
    uint8_t *sn = memmem(buf, lm__hello_len, "app.example.com", 15);
    /* server_name ext: type(2) len(2) list(2) type(1) len(2) name: the extension after it */
    uint8_t *next = sn + 15;
    next[0] = 0, next[1] = 0;
    LM_CHECK_EQ_INT(lm_tls_hello_parse(buf, lm__hello_len, &h), LM_ERROR);
}

int main(void)
{
    LM_RUN(real_hello);
    LM_RUN(every_prefix_wants_more);
    LM_RUN(fragmented_over_records);
    LM_RUN(malformed);
    return lm_test_summary("tls_hello");
}

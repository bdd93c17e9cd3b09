/*
 * fuzz_http1.c - libFuzzer target for the HTTP/1 parser and chunked decoder.
 *
 * data[0] picks the mode (low 2 bits: request, response, HEAD response,
 * chunked) and, with bit 2, small limits; the rest is the input, copied to a
 * buffer of its exact size so ASan sees any over-read. Checked invariants:
 * results are in range, every slice lies inside the input, a parsed head is
 * found again in a buffer cut right after it and not in one a byte shorter,
 * and the chunked decoder gives the same output whole and split in two.
 */
#include "lm_http1.h"

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_ASSERT(x)                                                            \
    do {                                                                          \
        if (!(x)) {                                                               \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #x, __FILE__, __LINE__); \
            abort();                                                              \
        }                                                                         \
    } while (0)

static void check_slice(lm_str_t s, const char *buf, size_t len)
{
    FUZZ_ASSERT(s.len == 0 || (s.ptr >= buf && s.ptr + s.len <= buf + len));
}

static void check_headers(const lm_http_header_t *h, size_t n, size_t cap, const char *buf,
                          size_t len)
{
    FUZZ_ASSERT(n <= cap);
    for (size_t i = 0; i < n; i++) {
        check_slice(h[i].name, buf, len);
        check_slice(h[i].value, buf, len);
        FUZZ_ASSERT(lm_http1_is_token(h[i].name));
        FUZZ_ASSERT(h[i].flags <= LM_HDR_F_HOP);
    }
}

static void fuzz_request(const char *buf, size_t len, bool small)
{
    lm_http_header_t h[16];
    lm_http1_request_t req = { .headers = h, .headers_cap = 16 };
    lm_http1_limits_t lim = small ? (lm_http1_limits_t){ 96, 24, 4 } : LM_HTTP1_DEFAULT_LIMITS;
    int rc = lm_http1_parse_request(buf, len, &lim, &req);
    if (rc == LM_ERROR) {
        int st = req.error_status;
        FUZZ_ASSERT(st == 400 || st == 414 || st == 431 || st == 501 || st == 505);
        FUZZ_ASSERT(req.error_reason != NULL);
        return;
    }
    if (rc == LM_AGAIN) {
        FUZZ_ASSERT(len < lim.max_head);
        return;
    }
    FUZZ_ASSERT(rc > 0 && (size_t)rc <= len && (size_t)rc <= lim.max_head);
    lm_str_t all[] = { req.method, req.target, req.path, req.query, req.authority, req.host };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        check_slice(all[i], buf, (size_t)rc);
    check_headers(h, req.num_headers, LM_MIN(16, lim.max_headers), buf, (size_t)rc);
    FUZZ_ASSERT(req.minor_version == 0 || req.minor_version == 1);
    FUZZ_ASSERT(lm_http1_is_token(req.method));
    FUZZ_ASSERT(req.target.len > 0 && req.target.len <= lim.max_uri);
    FUZZ_ASSERT(req.body_kind != LM_BODY_UNTIL_CLOSE);
    FUZZ_ASSERT(req.body_kind == LM_BODY_LENGTH || req.content_length == 0);
    size_t n_host = 0, n_te = 0, n_cl = 0;
    for (size_t i = 0; i < req.num_headers; i++) {
        n_host += h[i].id == LM_HDR_HOST;
        n_te += h[i].id == LM_HDR_TRANSFER_ENCODING;
        n_cl += h[i].id == LM_HDR_CONTENT_LENGTH;
    }
    FUZZ_ASSERT(n_host <= 1 && (n_host == 1 || req.minor_version == 0));
    FUZZ_ASSERT(!(n_te && n_cl));
    FUZZ_ASSERT((req.body_kind == LM_BODY_CHUNKED) == (n_te > 0));

    /* stateless: the head alone parses the same; one byte less is incomplete */
    lm_http1_request_t again = { .headers = h, .headers_cap = 16 };
    char *copy = malloc((size_t)rc);
    memcpy(copy, buf, (size_t)rc);
    FUZZ_ASSERT(lm_http1_parse_request(copy, (size_t)rc, &lim, &again) == rc);
    FUZZ_ASSERT(lm_http1_parse_request(copy, (size_t)rc - 1, &lim, &again) == LM_AGAIN);
    free(copy);
}

static void fuzz_response(const char *buf, size_t len, bool small, bool head)
{
    lm_http_header_t h[16];
    lm_http1_response_t resp = { .headers = h, .headers_cap = 16 };
    size_t max_head = small ? 96 : 32768;
    int rc = lm_http1_parse_response(buf, len, max_head, head, &resp);
    if (rc == LM_ERROR) {
        FUZZ_ASSERT(resp.error_reason != NULL);
        return;
    }
    if (rc == LM_AGAIN)
        return;
    FUZZ_ASSERT(rc > 0 && (size_t)rc <= len && (size_t)rc <= max_head);
    FUZZ_ASSERT(resp.status >= 100 && resp.status <= 999);
    check_slice(resp.reason, buf, (size_t)rc);
    check_headers(h, resp.num_headers, 16, buf, (size_t)rc);
    if (head || resp.status < 200 || resp.status == 204 || resp.status == 304)
        FUZZ_ASSERT(resp.body_kind == LM_BODY_NONE);
    if (resp.body_kind == LM_BODY_UNTIL_CLOSE)
        FUZZ_ASSERT(!resp.keep_alive);
}

/* Decodes in[0..len) fed as [0,cut) [cut,len); output and rest go to out. */
static int decode_split(const char *in, size_t len, size_t cut, char *out, size_t *out_len,
                        size_t *rest_len)
{
    lm_chunked_t d = { .max_trailer = 256 };
    size_t cuts[] = { 0, cut, len };
    *out_len = *rest_len = 0;
    int rc = LM_AGAIN;
    for (int i = 0; i < 2; i++) {
        size_t n = cuts[i + 1] - cuts[i], r = 0;
        char *piece = malloc(n ? n : 1);
        memcpy(piece, in + cuts[i], n);
        rc = lm_chunked_decode(&d, piece, &n, &r);
        FUZZ_ASSERT(n + r <= cuts[i + 1] - cuts[i]);
        if (rc == LM_ERROR) {
            FUZZ_ASSERT(d.error_reason != NULL);
            free(piece);
            return rc;
        }
        FUZZ_ASSERT(rc == LM_OK || (rc == LM_AGAIN && r == 0));
        memcpy(out + *out_len, piece, n + r);
        *out_len += n;
        if (rc == LM_OK) {
            memcpy(out + *out_len + r, in + cuts[i + 1], len - cuts[i + 1]);
            *rest_len = r + len - cuts[i + 1];
            free(piece);
            return rc;
        }
        free(piece);
    }
    return rc;
}

static void fuzz_chunked(const char *buf, size_t len)
{
    if (len == 0)
        return;
    size_t cut = (unsigned char)buf[0] % len;
    buf++;
    len--;
    cut = LM_MIN(cut, len);
    char *a = malloc(len + 1), *b = malloc(len + 1);
    size_t al, ar, bl, br;
    int ra = decode_split(buf, len, len, a, &al, &ar);
    int rb = decode_split(buf, len, cut, b, &bl, &br);
    FUZZ_ASSERT(ra == rb);
    FUZZ_ASSERT(al + ar <= len);
    if (ra != LM_ERROR) {
        FUZZ_ASSERT(al == bl && ar == br);
        FUZZ_ASSERT(memcmp(a, b, al + ar) == 0);
    }
    free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned sel = data[0];
    size_t len = size - 1;
    char *buf = malloc(len ? len : 1);
    memcpy(buf, data + 1, len);
    switch (sel & 3) {
    case 0: fuzz_request(buf, len, sel & 4); break;
    case 1: fuzz_response(buf, len, sel & 4, false); break;
    case 2: fuzz_response(buf, len, sel & 4, true); break;
    case 3: fuzz_chunked(buf, len); break;
    }
    free(buf);
    return 0;
}

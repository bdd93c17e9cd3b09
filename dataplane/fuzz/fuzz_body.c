/*
 * fuzz_body.c - libFuzzer target for the request-body field parsers plugins use
 * (proxy_body.c: urlencoded forms, multipart/form-data, JSON; lm_ctx_body_field
 * and lm_ctx_remove_body_field, as key-auth's key_in_body and hide_credentials
 * call them).
 *
 * Input: the Content-Type value, a newline, then the body (copied to a buffer
 * of its exact size so ASan sees any over-read). Each input looks up and then
 * removes the fields "apikey" and "a"; invariants: a found value is
 * NUL-terminated inside the arena, removing a field never grows a form body
 * and leaves no "apikey=" pair behind in a urlencoded body.
 */
#include "proxy_int.h"

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_ASSERT(x)                                                                   \
    do {                                                                                 \
        if (!(x)) {                                                                      \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #x, __FILE__, __LINE__);   \
            abort();                                                                     \
        }                                                                                \
    } while (0)

static bool form_has(lm_str_t body, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i + n < body.len; i++)
        if ((i == 0 || body.ptr[i - 1] == '&') && memcmp(body.ptr + i, name, n) == 0 && body.ptr[i + n] == '=')
            return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t ct_len = nl ? (size_t)(nl - data) : size;
    size_t body_len = nl ? size - ct_len - 1 : 0;

    lm__req_ext_t *x = calloc(1, sizeof(*x));
    lm_req_t *r = &x->r;
    r->arena = lm_arena_create(0);
    char *ct = malloc(ct_len ? ct_len : 1);
    memcpy(ct, data, ct_len);
    lm_http_header_t h = { .name = LM_STR("Content-Type"), .value = { ct, ct_len }, .id = LM_HDR_CONTENT_TYPE };
    lm_ctx_init_headers(r, &h, 1, false);
    char *body = malloc(body_len ? body_len : 1);
    if (body_len)
        memcpy(body, nl + 1, body_len);
    x->body_state = LM__BODY_READY;
    x->body = body;
    x->body_len = x->body_cap = body_len;

    lm_ctx_t *ctx = (lm_ctx_t *)r;
    static const char *const names[] = { "apikey", "a" };
    for (size_t i = 0; i < LM_ARRAY_SIZE(names); i++) {
        lm_str_t v = LM_STR_NULL;
        int kind = lm_ctx_body_field(ctx, lm_str(names[i]), &v);
        if (kind == LM_BODY_FIELD_STRING)
            FUZZ_ASSERT(v.ptr && v.ptr[v.len] == '\0');
        bool form = ct_len >= 33 && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0;
        size_t before = lm_ctx_request_body(ctx).len;
        lm_ctx_remove_body_field(ctx, lm_str(names[i]));
        lm_str_t after = lm_ctx_request_body(ctx);
        if (form) {
            FUZZ_ASSERT(after.len <= before);
            FUZZ_ASSERT(!form_has(after, names[i]));
        }
    }
    lm_arena_destroy(r->arena);
    free(body);
    free(ct);
    free(x);
    return 0;
}

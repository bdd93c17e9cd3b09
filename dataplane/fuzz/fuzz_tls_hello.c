/*
 * fuzz_tls_hello.c - libFuzzer target for the ClientHello/SNI parser
 * (tls_hello.c), which reads the first bytes of untrusted TLS stream clients.
 *
 * The input is copied to a buffer of its exact size so ASan sees any
 * over-read. Invariants: a result is LM_OK, LM_AGAIN or LM_ERROR; LM_OK
 * consumed no more than the input and gave a NUL-terminated lower-case SNI of
 * sni_len bytes; every prefix of a complete hello is LM_AGAIN or LM_ERROR
 * (never LM_OK with a different length), and feeding the input byte by byte
 * never turns an LM_ERROR into anything else.
 */
#include "lm_tls_hello.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_ASSERT(x)                                                                 \
    do {                                                                               \
        if (!(x)) {                                                                    \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #x, __FILE__, __LINE__); \
            abort();                                                                   \
        }                                                                              \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    lm_tls_hello_t h;
    int rc = lm_tls_hello_parse(buf, size, &h);
    FUZZ_ASSERT(rc == LM_OK || rc == LM_AGAIN || rc == LM_ERROR);
    if (rc == LM_OK) {
        FUZZ_ASSERT(h.consumed > 0 && h.consumed <= size);
        FUZZ_ASSERT(h.sni_len < sizeof(h.sni) && strlen(h.sni) == h.sni_len);
        for (size_t i = 0; i < h.sni_len; i++)
            FUZZ_ASSERT(!(h.sni[i] >= 'A' && h.sni[i] <= 'Z'));
        /* the same hello followed by anything parses the same */
        lm_tls_hello_t h2;
        FUZZ_ASSERT(lm_tls_hello_parse(buf, h.consumed, &h2) == LM_OK);
        FUZZ_ASSERT(h2.consumed == h.consumed && strcmp(h2.sni, h.sni) == 0);
    }
    /* prefixes: once an error, always an error; never OK before the whole hello */
    bool failed = false;
    size_t step = size > 512 ? size / 64 : 1;
    for (size_t k = 0; k < size; k += step) {
        lm_tls_hello_t hp;
        int prc = lm_tls_hello_parse(buf, k, &hp);
        if (failed)
            FUZZ_ASSERT(prc == LM_ERROR);
        if (prc == LM_ERROR)
            failed = true;
        if (prc == LM_OK)
            FUZZ_ASSERT(rc == LM_OK && hp.consumed == h.consumed);
    }
    free(buf);
    return 0;
}

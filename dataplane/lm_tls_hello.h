/*
 * lm_tls_hello.h - a strict, allocation-free parser of a TLS ClientHello, for
 * routing by SNI without terminating TLS (stream routes with protocol
 * tls_passthrough) and for choosing between terminating and passing through
 * on a TLS stream listener.
 *
 * Input: the first bytes a client sent, as they arrived. The ClientHello may
 * span several handshake records (reassembled here, up to
 * LM_TLS_HELLO_MAX bytes of input). Nothing is copied out but the server
 * name, and the input is never modified.
 *
 * Returns LM_OK with *out filled once the whole ClientHello is in,
 * LM_AGAIN while more bytes are needed, LM_ERROR on anything malformed
 * (not a handshake record, a record or message too long, lengths that do not
 * add up, a duplicated extension, an invalid server_name extension).
 */
#ifndef LM_TLS_HELLO_H
#define LM_TLS_HELLO_H

#include "lm_core.h"

#include <stdint.h>

#define LM_TLS_HELLO_MAX 16384 /* bytes of input (records with their headers) we wait for */

typedef struct {
    char sni[256];         /* host_name, lower-cased, trailing dot removed; "" when none */
    size_t sni_len;
    uint16_t version;      /* legacy_version of the ClientHello (0x0303 for TLS 1.2 and 1.3) */
    bool tls13;            /* supported_versions offers TLS 1.3 */
    bool has_alpn;         /* the client sent an ALPN extension */
    size_t consumed;       /* input bytes of the records that carried the ClientHello */
} lm_tls_hello_t;

int lm_tls_hello_parse(const uint8_t *p, size_t n, lm_tls_hello_t *out);

#endif

/* tls_hello.c - see lm_tls_hello.h (RFC 8446 4.1.2, RFC 6066 3, RFC 7301). */
#include "lm_tls_hello.h"

#include <string.h>

#define REC_HEADER 5
#define REC_MAX 16384      /* 2^14: a record's plaintext fragment */
#define MAX_EXTENSIONS 128 /* more than any real client sends */

enum { EXT_SERVER_NAME = 0, EXT_ALPN = 16, EXT_SUPPORTED_VERSIONS = 43 };

/* a bounds-checked reader over the reassembled handshake message */
typedef struct {
    const uint8_t *p;
    size_t n, off;
    bool bad;
} rd_t;

static size_t rd_left(const rd_t *r) { return r->n - r->off; }

static unsigned rd_u8(rd_t *r)
{
    if (r->bad || rd_left(r) < 1) {
        r->bad = true;
        return 0;
    }
    return r->p[r->off++];
}

static unsigned rd_u16(rd_t *r)
{
    unsigned hi = rd_u8(r);
    return (hi << 8) | rd_u8(r);
}

/* A sub-reader over the next len bytes (marks r bad when they are not there). */
static rd_t rd_sub(rd_t *r, size_t len)
{
    rd_t s = { r->p + r->off, len, 0, false };
    if (r->bad || rd_left(r) < len) {
        r->bad = true;
        s.n = 0;
        s.bad = true;
        return s;
    }
    r->off += len;
    return s;
}

static bool host_char(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_';
}

/* server_name: exactly one host_name, a plausible DNS name. */
static int parse_sni(rd_t ext, lm_tls_hello_t *out)
{
    unsigned list = rd_u16(&ext);
    if (ext.bad || list != rd_left(&ext) || list == 0)
        return LM_ERROR;
    bool seen = false;
    while (rd_left(&ext) > 0) {
        unsigned type = rd_u8(&ext);
        unsigned len = rd_u16(&ext);
        rd_t name = rd_sub(&ext, len);
        if (ext.bad || type != 0 || seen || len == 0 || len > 255)
            return LM_ERROR;
        seen = true;
        if (name.p[0] == '.')
            return LM_ERROR;
        size_t k = 0;
        for (size_t i = 0; i < len; i++) {
            uint8_t c = name.p[i];
            if (!host_char(c) || (c == '.' && i > 0 && name.p[i - 1] == '.'))
                return LM_ERROR;
            out->sni[k++] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
        }
        if (k > 0 && out->sni[k - 1] == '.')
            k--; /* "example.com." routes as "example.com" */
        out->sni[k] = '\0';
        out->sni_len = k;
    }
    return LM_OK;
}

static int parse_alpn(rd_t ext)
{
    unsigned list = rd_u16(&ext);
    if (ext.bad || list != rd_left(&ext) || list < 2)
        return LM_ERROR;
    while (rd_left(&ext) > 0) {
        unsigned len = rd_u8(&ext);
        rd_sub(&ext, len);
        if (ext.bad || len == 0)
            return LM_ERROR;
    }
    return LM_OK;
}

static int parse_versions(rd_t ext, lm_tls_hello_t *out)
{
    unsigned len = rd_u8(&ext);
    if (ext.bad || len != rd_left(&ext) || len < 2 || len % 2)
        return LM_ERROR;
    while (rd_left(&ext) > 0)
        if (rd_u16(&ext) == 0x0304)
            out->tls13 = true;
    return LM_OK;
}

/* The ClientHello body (after the 4-byte handshake header). */
static int parse_body(rd_t r, lm_tls_hello_t *out)
{
    out->version = (uint16_t)rd_u16(&r);
    if (r.bad || (out->version >> 8) != 3)
        return LM_ERROR;
    rd_sub(&r, 32); /* random */
    unsigned sid = rd_u8(&r);
    rd_sub(&r, sid);
    unsigned suites = rd_u16(&r);
    rd_sub(&r, suites);
    unsigned comp = rd_u8(&r);
    rd_sub(&r, comp);
    if (r.bad || sid > 32 || suites < 2 || suites % 2 || comp < 1)
        return LM_ERROR;
    if (rd_left(&r) == 0)
        return LM_OK; /* no extensions (TLS 1.0-style hello) */
    unsigned total = rd_u16(&r);
    if (r.bad || total != rd_left(&r))
        return LM_ERROR;
    uint16_t seen[MAX_EXTENSIONS];
    size_t nseen = 0;
    while (rd_left(&r) > 0) {
        unsigned type = rd_u16(&r);
        unsigned len = rd_u16(&r);
        rd_t ext = rd_sub(&r, len);
        if (r.bad || nseen == MAX_EXTENSIONS)
            return LM_ERROR;
        for (size_t i = 0; i < nseen; i++)
            if (seen[i] == type)
                return LM_ERROR; /* RFC 8446 4.2: at most one of each */
        seen[nseen++] = (uint16_t)type;
        int rc = LM_OK;
        if (type == EXT_SERVER_NAME)
            rc = parse_sni(ext, out);
        else if (type == EXT_ALPN)
            rc = parse_alpn(ext), out->has_alpn = true;
        else if (type == EXT_SUPPORTED_VERSIONS)
            rc = parse_versions(ext, out);
        if (rc != LM_OK)
            return rc;
    }
    return LM_OK;
}

int lm_tls_hello_parse(const uint8_t *p, size_t n, lm_tls_hello_t *out)
{
    memset(out, 0, sizeof(*out));
    uint8_t msg[LM_TLS_HELLO_MAX]; /* the handshake message, from the records' fragments */
    size_t mlen = 0, off = 0;
    size_t need = 0; /* the message's full length, once its header is in */
    for (;;) {
        if (off + REC_HEADER >= LM_TLS_HELLO_MAX)
            return LM_ERROR; /* no room for another record with a byte in it */
        size_t avail = n - off;
        /* check what is there of the record header at once: a non-TLS client fails early */
        if (avail >= 1 && p[off] != 0x16)
            return LM_ERROR;
        if (avail >= 2 && p[off + 1] != 3)
            return LM_ERROR;
        if (avail >= 3 && p[off + 2] > 4)
            return LM_ERROR;
        if (avail < REC_HEADER)
            return LM_AGAIN;
        size_t rlen = ((size_t)p[off + 3] << 8) | p[off + 4];
        if (rlen == 0 || rlen > REC_MAX || off + REC_HEADER + rlen > LM_TLS_HELLO_MAX)
            return LM_ERROR;
        /* as much of this record's fragment as has arrived */
        size_t have = LM_MIN(rlen, avail - REC_HEADER);
        if (mlen + have > sizeof(msg))
            return LM_ERROR;
        memcpy(msg + mlen, p + off + REC_HEADER, have);
        mlen += have;
        if (mlen >= 4 && need == 0) {
            if (msg[0] != 1) /* client_hello */
                return LM_ERROR;
            need = 4 + (((size_t)msg[1] << 16) | ((size_t)msg[2] << 8) | msg[3]);
            if (need > sizeof(msg) || need < 4 + 2 + 32 + 1 + 2 + 2 + 1 + 1)
                return LM_ERROR;
        }
        if (need && mlen > need)
            return LM_ERROR; /* something after the ClientHello in its record */
        if (have < rlen)
            return LM_AGAIN;
        off += REC_HEADER + rlen;
        if (need && mlen == need)
            break;
    }
    rd_t body = { msg + 4, need - 4, 0, false };
    int rc = parse_body(body, out);
    if (rc != LM_OK) {
        memset(out, 0, sizeof(*out));
        return rc;
    }
    out->consumed = off;
    return LM_OK;
}

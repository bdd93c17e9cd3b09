/*
 * lm_http1.h - strict, zero-copy HTTP/1.1 message parser (RFC 9110 / 9112).
 *
 * Stateless head parsing in the style of picohttpparser: hand it the whole
 * buffer received so far; it either finds a complete head or says LM_AGAIN.
 * Every slice it returns points into the caller's buffer. It never allocates.
 *
 * Strictness (each of these is an error with status 400 unless noted):
 *  - request line: method is a token; exactly one SP between parts; target
 *    has no CTL/SP/DEL; version is HTTP/1.0 or HTTP/1.1 (other HTTP/x.y: 505);
 *  - line endings are CRLF only (a bare LF or bare CR is an error);
 *  - header names are tokens; no whitespace before ':'; no obs-fold;
 *    NUL, CR or LF inside a value is an error; OWS around values is trimmed;
 *  - Content-Length: 1*DIGIT only (no sign, no 0x, not empty); several
 *    identical values (in one list or several headers) collapse to one,
 *    differing values are an error; overflow is an error;
 *  - Transfer-Encoding with Content-Length is an error; Transfer-Encoding must
 *    end with "chunked" (else 400 for requests; "until close" for responses),
 *    "chunked" more than once is an error; unknown codings in a request: 501;
 *  - Transfer-Encoding in an HTTP/1.0 request is an error;
 *  - HTTP/1.1 requests need exactly one Host header, with a valid value;
 *  - limits: head larger than max_head -> 431, request-target longer than
 *    max_uri -> 414, more than max_headers headers -> 431.
 */
#ifndef LM_HTTP1_H
#define LM_HTTP1_H

#include "lm_core.h"

/* Well-known header ids, set by the parser so callers avoid string compares. */
typedef enum {
    LM_HDR_OTHER = 0,
    LM_HDR_HOST,
    LM_HDR_CONTENT_LENGTH,
    LM_HDR_TRANSFER_ENCODING,
    LM_HDR_CONNECTION,
    LM_HDR_KEEP_ALIVE,
    LM_HDR_PROXY_CONNECTION,
    LM_HDR_TE,
    LM_HDR_TRAILER,
    LM_HDR_UPGRADE,
    LM_HDR_EXPECT,
    LM_HDR_X_FORWARDED_FOR,
    LM_HDR_X_FORWARDED_PROTO,
    LM_HDR_X_FORWARDED_HOST,
    LM_HDR_X_FORWARDED_PORT,
    LM_HDR_X_FORWARDED_PREFIX,
    LM_HDR_X_REAL_IP,
    LM_HDR_X_REQUEST_ID,
    LM_HDR_VIA,
    LM_HDR_CONTENT_TYPE,
    LM_HDR_DATE,
    LM_HDR_SERVER,
    LM_HDR_X_CLIENT_CERT,    /* X-Client-Cert-Subject / X-Client-Cert-Verify: only the proxy sets them */
} lm_hdr_id_t;

/* lm_http_header_t.flags */
#define LM_HDR_F_HOP 0x01 /* hop-by-hop: never forwarded (incl. those named in Connection) */

typedef struct {
    lm_str_t name;  /* as received (case preserved) */
    lm_str_t value; /* OWS trimmed */
    uint8_t id;     /* lm_hdr_id_t */
    uint8_t flags;  /* LM_HDR_F_* */
} lm_http_header_t;

typedef enum {
    LM_BODY_NONE = 0,    /* no body */
    LM_BODY_LENGTH,      /* content_length bytes (may be 0) */
    LM_BODY_CHUNKED,     /* chunked transfer coding */
    LM_BODY_UNTIL_CLOSE, /* responses only: read until the connection closes */
} lm_body_kind_t;

typedef struct {
    size_t max_head;    /* bytes of request line + headers (default 32768) */
    size_t max_uri;     /* bytes of request-target (default 8192) */
    size_t max_headers; /* number of header fields (<= capacity of headers[]) */
} lm_http1_limits_t;

#define LM_HTTP1_DEFAULT_LIMITS ((lm_http1_limits_t){ 32768, 8192, 100 })

typedef struct {
    /* request line */
    lm_str_t method;
    lm_str_t target;  /* request-target exactly as sent */
    lm_str_t path;    /* origin-form path (absolute-form: the path after the authority, "/" if empty) */
    lm_str_t query;   /* after '?', without it; ptr == NULL when there is no '?' */
    lm_str_t authority; /* absolute-form or authority-form (CONNECT) authority; else empty */
    int minor_version;  /* 0 or 1 */

    /* headers: caller sets headers + headers_cap before parsing */
    lm_http_header_t *headers;
    size_t headers_cap;
    size_t num_headers;

    /* derived */
    lm_str_t host;          /* Host header value (or absolute-form authority), port included */
    lm_body_kind_t body_kind;
    uint64_t content_length; /* valid when body_kind == LM_BODY_LENGTH */
    bool keep_alive;         /* HTTP/1.1 unless "close"; HTTP/1.0 only with "keep-alive" */
    bool expect_continue;    /* Expect: 100-continue */
    bool upgrade;            /* Upgrade header present and Connection names "upgrade" */
    bool client_cert_hdr;    /* an LM_HDR_X_CLIENT_CERT header came from the client */

    /* on LM_ERROR */
    int error_status;        /* 400, 414, 431, 501, 505 */
    const char *error_reason; /* short static text for logs and tests */
} lm_http1_request_t;

typedef struct {
    int minor_version;
    int status;       /* 100..999 */
    lm_str_t reason;

    lm_http_header_t *headers;
    size_t headers_cap;
    size_t num_headers;

    lm_body_kind_t body_kind;
    uint64_t content_length;
    bool keep_alive;

    const char *error_reason;
} lm_http1_response_t;

/*
 * Parses a request head from buf[0..len).
 * Returns the number of bytes of the head (> 0, through the empty line),
 * LM_AGAIN when the head is incomplete (if len already exceeds
 * limits->max_head this is an error 431 instead), or LM_ERROR with
 * req->error_status / req->error_reason set.
 * Leading empty lines (CRLF) before the request line are skipped and counted.
 */
int lm_http1_parse_request(const char *buf, size_t len, const lm_http1_limits_t *limits,
                           lm_http1_request_t *req);

/*
 * Parses a response head. head_request: the request was HEAD (no body).
 * Status 1xx, 204 and 304 and HEAD responses have LM_BODY_NONE.
 * Returns bytes consumed (> 0), LM_AGAIN, or LM_ERROR (error_reason set).
 */
int lm_http1_parse_response(const char *buf, size_t len, size_t max_head, bool head_request,
                            lm_http1_response_t *resp);

/* Incremental chunked-body decoder; zero-initialise before the first call. */
typedef struct {
    int state;
    uint64_t remaining;   /* bytes left in the current chunk */
    size_t aux;           /* digits, extension or trailer bytes seen on this line */
    size_t trailer_bytes; /* total trailer bytes (bounded by max_trailer) */
    size_t max_trailer;   /* 0 = 32768 */
    const char *error_reason;
    /* when keep is set (by the caller, with keep_cap bytes), the trailer
     * section's lines ("Name: value\r\n"...) are copied there; lines past
     * keep_cap are dropped */
    char *keep;
    size_t keep_len, keep_cap;
} lm_chunked_t;

/*
 * Decodes chunked data in place. On entry buf[0..*len) holds received bytes.
 * On return buf[0..*len) holds the decoded body bytes from this call.
 * Returns LM_AGAIN (all input consumed, body not finished), LM_ERROR
 * (malformed: bad size, bad extension, missing CRLF, bad trailer), or LM_OK
 * (the last chunk and trailers were read); then *rest bytes that followed the
 * body have been moved to buf[*len .. *len + *rest).
 * Chunk extensions are validated and dropped; trailers are validated and dropped
 * (or kept: lm_chunked_t.keep).
 */
int lm_chunked_decode(lm_chunked_t *d, char *buf, size_t *len, size_t *rest);

/* true when s is a valid RFC 9110 token (method, header name) */
bool lm_http1_is_token(lm_str_t s);

/* Finds the first header with this id (or NULL). */
const lm_http_header_t *lm_http1_find(const lm_http_header_t *h, size_t n, lm_hdr_id_t id);
/* Finds a header by name, case-insensitively (or NULL). */
const lm_http_header_t *lm_http1_find_name(const lm_http_header_t *h, size_t n, lm_str_t name);

#endif /* LM_HTTP1_H */

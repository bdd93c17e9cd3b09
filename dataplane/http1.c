/*
 * http1.c - strict, zero-copy HTTP/1.1 head parser and chunked decoder.
 *
 * The head parser is line oriented: memchr finds each LF, the line in front
 * of it is validated with byte-class tables, and nothing is kept between
 * calls. Framing (Content-Length, Transfer-Encoding, Connection, Host) is
 * checked once the head is complete. See lm_http1.h for the rules.
 *
 * Decisions where the header is silent:
 *  - '#' in a request-target is rejected (fragments are never sent on the
 *    wire; a backend that strips them would see another path than the router);
 *  - Host values: reg-name (without ',') or IP-literal, then an optional
 *    ":port" of 1..5 digits; an empty Host is accepted (RFC 9112 3.2);
 *  - absolute-form: scheme http/https, no userinfo, non-empty authority; the
 *    authority wins over the Host header, which must still be present once
 *    in HTTP/1.1; a missing path is "/" (a slice of the "//" after the scheme);
 *  - CONNECT needs authority-form host:port; host = authority, path empty;
 *  - request Transfer-Encoding: only "chunked" is implemented, so any other
 *    valid coding before it answers 501; empty list elements are rejected;
 *  - expect_continue is only set for HTTP/1.1 (RFC 9110 10.1.1);
 *  - responses: a missing SP after the status code means an empty reason;
 *    CL together with TE, "chunked" twice, or TE in an HTTP/1.0 response is
 *    an error; a TE list not ending in chunked reads until close;
 *  - every header named in a Connection list (including "close") is marked
 *    hop-by-hop; a non-token Connection element is an error;
 *  - Content-Length and chunk sizes above INT64_MAX are errors;
 *  - chunked: no whitespace anywhere on the size line, size line (with
 *    extensions) at most 4096 bytes; trailers are validated like header
 *    fields (no obs-fold) and dropped.
 */
#include "lm_http1.h"

/* byte classes */
#define C_TCHAR  1 /* token character */
#define C_VALUE  2 /* field-vchar, SP, HTAB (also reason-phrase, qdtext superset) */
#define C_TARGET 4 /* request-target byte: no CTL, SP, DEL or '#' */
#define C_HOST   8 /* reg-name byte: unreserved, sub-delims except ',', and '%' */

static const uint8_t cls[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 */
    2, 15, 6, 3, 15, 15, 15, 15, 14, 14, 15, 15, 6, 15, 15, 6, /* 0x20 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 6, 14, 6, 14, 6, 6, /* 0x30 */
    6, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, /* 0x40 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 6, 6, 6, 7, 15, /* 0x50 */
    7, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, /* 0x60 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 6, 7, 6, 15, 0, /* 0x70 */
    /* 0x80..0xff: obs-text, allowed in values and targets */
    [0x80 ... 0xff] = C_VALUE | C_TARGET,
};

#define IS(c, k) (cls[(unsigned char)(c)] & (k))

static inline bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static inline int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Compares a validated token with a lower-case literal of the same length. */
static inline bool tok_ieq(const char *p, const char *lit, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)p[i] | 0x20) != (unsigned char)lit[i])
            return false;
    return true;
}

static inline bool str_ieq_lit(lm_str_t s, const char *lit, size_t n)
{
    return s.len == n && tok_ieq(s.ptr, lit, n);
}

#define IEQ(s, lit) str_ieq_lit((s), (lit), sizeof(lit) - 1)

static lm_str_t trim_ows(const char *p, const char *e)
{
    while (p < e && is_ows(*p))
        p++;
    while (e > p && is_ows(e[-1]))
        e--;
    return (lm_str_t){ p, (size_t)(e - p) };
}

bool lm_http1_is_token(lm_str_t s)
{
    if (s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (!IS(s.ptr[i], C_TCHAR))
            return false;
    return true;
}

const lm_http_header_t *lm_http1_find(const lm_http_header_t *h, size_t n, lm_hdr_id_t id)
{
    for (size_t i = 0; i < n; i++)
        if (h[i].id == id)
            return &h[i];
    return NULL;
}

const lm_http_header_t *lm_http1_find_name(const lm_http_header_t *h, size_t n, lm_str_t name)
{
    for (size_t i = 0; i < n; i++)
        if (lm_str_ieq(h[i].name, name))
            return &h[i];
    return NULL;
}

/* ---- header ids ---------------------------------------------------------- */

static uint8_t header_id(const char *p, size_t n)
{
#define ID(lit, id) if (tok_ieq(p, lit, n)) return id
    switch (n) {
    case 2: ID("te", LM_HDR_TE); break;
    case 3: ID("via", LM_HDR_VIA); break;
    case 4:
        ID("host", LM_HDR_HOST);
        ID("date", LM_HDR_DATE);
        break;
    case 6:
        ID("expect", LM_HDR_EXPECT);
        ID("server", LM_HDR_SERVER);
        break;
    case 7:
        ID("upgrade", LM_HDR_UPGRADE);
        ID("trailer", LM_HDR_TRAILER);
        break;
    case 9: ID("x-real-ip", LM_HDR_X_REAL_IP); break;
    case 10:
        ID("connection", LM_HDR_CONNECTION);
        ID("keep-alive", LM_HDR_KEEP_ALIVE);
        break;
    case 12:
        ID("content-type", LM_HDR_CONTENT_TYPE);
        ID("x-request-id", LM_HDR_X_REQUEST_ID);
        break;
    case 14: ID("content-length", LM_HDR_CONTENT_LENGTH); break;
    case 15: ID("x-forwarded-for", LM_HDR_X_FORWARDED_FOR); break;
    case 16:
        if ((p[0] | 0x20) == 'p') {
            ID("proxy-connection", LM_HDR_PROXY_CONNECTION);
        } else {
            ID("x-forwarded-host", LM_HDR_X_FORWARDED_HOST);
            ID("x-forwarded-port", LM_HDR_X_FORWARDED_PORT);
        }
        break;
    case 17:
        if ((p[0] | 0x20) == 't') {
            ID("transfer-encoding", LM_HDR_TRANSFER_ENCODING);
        } else {
            ID("x-forwarded-proto", LM_HDR_X_FORWARDED_PROTO);
        }
        break;
    case 18: ID("x-forwarded-prefix", LM_HDR_X_FORWARDED_PREFIX); break;
    case 20: ID("x-client-cert-verify", LM_HDR_X_CLIENT_CERT); break;
    case 21: ID("x-client-cert-subject", LM_HDR_X_CLIENT_CERT); break;
    }
#undef ID
    return LM_HDR_OTHER;
}

static inline bool id_is_hop(uint8_t id)
{
    switch (id) {
    case LM_HDR_CONNECTION:
    case LM_HDR_KEEP_ALIVE:
    case LM_HDR_PROXY_CONNECTION:
    case LM_HDR_TE:
    case LM_HDR_TRAILER:
    case LM_HDR_TRANSFER_ENCODING:
    case LM_HDR_UPGRADE:
        return true;
    default:
        return false;
    }
}

/* ---- header block -------------------------------------------------------- */

typedef struct {
    int status;
    const char *reason;
} perr_t;

static inline int perr(perr_t *e, int status, const char *why)
{
    e->status = status;
    e->reason = why;
    return LM_ERROR;
}

/*
 * Parses header lines from p up to and including the empty line.
 * Returns the end of the head, NULL with e->status == 0 when more input is
 * needed, or NULL with e set on error.
 */
static const char *parse_fields(const char *p, const char *end, lm_http_header_t *h, size_t cap,
                                size_t *num, perr_t *e)
{
    size_t n = 0;
    for (;;) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        if (lf == NULL) {
            *num = n;
            e->status = 0;
            return NULL;
        }
        if (lf == p || lf[-1] != '\r') {
            perr(e, 400, "bare LF in header");
            return NULL;
        }
        const char *eol = lf - 1;
        if (eol == p) {
            *num = n;
            return lf + 1;
        }
        if (is_ows(*p)) {
            perr(e, 400, "obsolete line folding");
            return NULL;
        }
        const char *q = p;
        while (IS(*q, C_TCHAR))
            q++; /* stops at the latest on the CR */
        if (*q != ':' || q == p) {
            perr(e, 400, q == p ? "empty header name" : "invalid header name");
            return NULL;
        }
        if (n == cap) {
            perr(e, 431, "too many headers");
            return NULL;
        }
        lm_http_header_t *hd = &h[n++];
        hd->name = (lm_str_t){ p, (size_t)(q - p) };
        hd->id = header_id(p, (size_t)(q - p));
        hd->flags = id_is_hop(hd->id) ? LM_HDR_F_HOP : 0;
        q++;
        while (q < eol && is_ows(*q))
            q++;
        const char *v = q;
        while (q < eol && IS(*q, C_VALUE))
            q++;
        if (q != eol) {
            perr(e, 400, "invalid character in header value");
            return NULL;
        }
        while (q > v && is_ows(q[-1]))
            q--;
        hd->value = (lm_str_t){ v, (size_t)(q - v) };
        p = lf + 1;
    }
}

/* ---- framing analysis ---------------------------------------------------- */

typedef struct {
    int hosts;
    lm_str_t host;
    bool has_cl;
    uint64_t cl;
    bool has_te;
    int te_chunked;       /* number of "chunked" codings */
    bool te_last_chunked; /* the final coding is chunked */
    bool te_other;        /* some coding other than chunked */
    bool close, keep_alive, conn_upgrade;
    bool conn_named; /* a Connection header was seen */
    bool has_upgrade;
    bool expect_continue;
    bool client_cert;
} framing_t;

/* Steps through a comma-separated list; yields OWS-trimmed elements (maybe empty). */
static inline bool next_elem(const char **pos, const char *end, lm_str_t *el)
{
    const char *p = *pos;
    if (p == NULL)
        return false;
    const char *c = memchr(p, ',', (size_t)(end - p));
    *el = trim_ows(p, c ? c : end);
    *pos = c ? c + 1 : NULL;
    return true;
}

#define FOR_EACH_ELEM(val, el) \
    for (const char *fe_pos = (val).ptr; next_elem(&fe_pos, (val).ptr + (val).len, &(el));)

static int parse_content_length(lm_str_t val, framing_t *f, perr_t *e)
{
    lm_str_t el;
    if (val.len == 0)
        return perr(e, 400, "invalid Content-Length");
    FOR_EACH_ELEM(val, el) {
        if (el.len == 0)
            return perr(e, 400, "invalid Content-Length");
        uint64_t v = 0;
        for (size_t i = 0; i < el.len; i++) {
            unsigned d = (unsigned char)el.ptr[i] - '0';
            if (d > 9)
                return perr(e, 400, "invalid Content-Length");
            if (v > ((uint64_t)INT64_MAX - d) / 10)
                return perr(e, 400, "Content-Length overflow");
            v = v * 10 + d;
        }
        if (f->has_cl && f->cl != v)
            return perr(e, 400, "conflicting Content-Length");
        f->has_cl = true;
        f->cl = v;
    }
    return LM_OK;
}

static int parse_transfer_encoding(lm_str_t val, framing_t *f, perr_t *e)
{
    lm_str_t el;
    f->has_te = true;
    if (val.len == 0)
        return perr(e, 400, "invalid Transfer-Encoding");
    FOR_EACH_ELEM(val, el) {
        if (!lm_http1_is_token(el))
            return perr(e, 400, "invalid Transfer-Encoding");
        if (IEQ(el, "chunked")) {
            f->te_chunked++;
            f->te_last_chunked = true;
        } else {
            f->te_other = true;
            f->te_last_chunked = false;
        }
    }
    return LM_OK;
}

static int parse_connection(lm_str_t val, framing_t *f, perr_t *e)
{
    lm_str_t el;
    FOR_EACH_ELEM(val, el) {
        if (!lm_http1_is_token(el))
            return perr(e, 400, "invalid Connection");
        if (IEQ(el, "close"))
            f->close = true;
        else if (IEQ(el, "keep-alive"))
            f->keep_alive = true;
        else if (IEQ(el, "upgrade"))
            f->conn_upgrade = true;
    }
    f->conn_named = true; /* any Connection header: mark the headers it names */
    return LM_OK;
}

/* Marks every header named in a Connection list as hop-by-hop. */
static void mark_connection_named(lm_http_header_t *h, size_t n)
{
    lm_str_t el;
    for (size_t i = 0; i < n; i++) {
        if (h[i].id != LM_HDR_CONNECTION)
            continue;
        FOR_EACH_ELEM(h[i].value, el) {
            for (size_t j = 0; j < n; j++)
                if (lm_str_ieq(h[j].name, el))
                    h[j].flags |= LM_HDR_F_HOP;
        }
    }
}

static int analyze(lm_http_header_t *h, size_t n, framing_t *f, perr_t *e)
{
    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < n; i++) {
        switch (h[i].id) {
        case LM_HDR_HOST:
            f->hosts++;
            f->host = h[i].value;
            break;
        case LM_HDR_CONTENT_LENGTH:
            if (parse_content_length(h[i].value, f, e) != LM_OK)
                return LM_ERROR;
            break;
        case LM_HDR_TRANSFER_ENCODING:
            if (parse_transfer_encoding(h[i].value, f, e) != LM_OK)
                return LM_ERROR;
            break;
        case LM_HDR_CONNECTION:
            if (parse_connection(h[i].value, f, e) != LM_OK)
                return LM_ERROR;
            break;
        case LM_HDR_UPGRADE:
            f->has_upgrade = true;
            break;
        case LM_HDR_X_CLIENT_CERT:
            f->client_cert = true;
            break;
        case LM_HDR_EXPECT:
            if (IEQ(h[i].value, "100-continue"))
                f->expect_continue = true;
            break;
        default:
            break;
        }
    }
    if (f->conn_named)
        mark_connection_named(h, n);
    if (f->has_te) {
        if (f->has_cl)
            return perr(e, 400, "both Transfer-Encoding and Content-Length");
        if (f->te_chunked > 1)
            return perr(e, 400, "chunked applied twice");
    }
    return LM_OK;
}

/* ---- request line -------------------------------------------------------- */

/* host [":" port]; IP-literal in brackets; port 1..5 digits. */
static bool valid_host(lm_str_t s, bool need_port)
{
    const char *p = s.ptr, *e = s.ptr + s.len;
    if (p == e)
        return false;
    if (*p == '[') {
        const char *q = p + 1;
        while (q < e && (hexval((unsigned char)*q) >= 0 || *q == ':' || *q == '.'))
            q++;
        if (q == e || *q != ']' || q - p < 3)
            return false;
        p = q + 1;
    } else {
        const char *q = p;
        while (q < e && IS(*q, C_HOST)) {
            if (*q == '%') {
                if (e - q < 3 || hexval((unsigned char)q[1]) < 0 || hexval((unsigned char)q[2]) < 0)
                    return false;
                q += 2;
            }
            q++;
        }
        if (q == p)
            return false;
        p = q;
    }
    if (p == e)
        return !need_port;
    if (*p != ':' || e - p < 2 || e - p > 6)
        return false;
    for (p++; p < e; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

static void split_query(lm_http1_request_t *req, const char *p, const char *e)
{
    const char *q = memchr(p, '?', (size_t)(e - p));
    if (q) {
        req->path = (lm_str_t){ p, (size_t)(q - p) };
        req->query = (lm_str_t){ q + 1, (size_t)(e - q - 1) };
    } else {
        req->path = (lm_str_t){ p, (size_t)(e - p) };
    }
}

static int parse_target(lm_http1_request_t *req, perr_t *e)
{
    lm_str_t t = req->target;
    const char *p = t.ptr, *end = t.ptr + t.len;

    if (lm_str_eq(req->method, LM_STR("CONNECT"))) {
        if (!valid_host(t, true))
            return perr(e, 400, "invalid CONNECT target");
        req->authority = t;
        req->path = (lm_str_t){ t.ptr, 0 };
        return LM_OK;
    }
    if (*p == '/') {
        split_query(req, p, end);
        return LM_OK;
    }
    if (t.len == 1 && *p == '*') {
        if (!lm_str_eq(req->method, LM_STR("OPTIONS")))
            return perr(e, 400, "asterisk-form only with OPTIONS");
        req->path = t;
        return LM_OK;
    }
    size_t sl;
    if (t.len >= 7 && tok_ieq(p, "http", 4) && memcmp(p + 4, "://", 3) == 0)
        sl = 7;
    else if (t.len >= 8 && tok_ieq(p, "https", 5) && memcmp(p + 5, "://", 3) == 0)
        sl = 8;
    else
        return perr(e, 400, "invalid request-target");
    const char *a = p + sl, *ae = a;
    while (ae < end && *ae != '/' && *ae != '?')
        ae++;
    req->authority = (lm_str_t){ a, (size_t)(ae - a) };
    if (!valid_host(req->authority, false))
        return perr(e, 400, "invalid authority in request-target");
    if (ae < end && *ae == '/') {
        split_query(req, ae, end);
    } else {
        req->path = (lm_str_t){ a - 1, 1 }; /* the second '/' of "://" */
        if (ae < end)
            req->query = (lm_str_t){ ae + 1, (size_t)(end - ae - 1) };
    }
    return LM_OK;
}

/* Returns 1 for HTTP/1.1, 0 for HTTP/1.0, or -status. */
static int parse_version(const char *p, const char *e)
{
    if (e - p != 8 || memcmp(p, "HTTP/", 5) != 0 || p[6] != '.' ||
        p[5] < '0' || p[5] > '9' || p[7] < '0' || p[7] > '9')
        return -400;
    if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
        return -505;
    return p[7] - '0';
}

/*
 * A request line not terminated yet: answers 414 early when the target
 * already runs past max_uri, else LM_AGAIN.
 */
static int partial_request_line(const char *p, const char *end, size_t max_uri)
{
    if ((size_t)(end - p) <= max_uri)
        return LM_AGAIN;
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    if (sp == NULL)
        return LM_AGAIN;
    const char *t = sp + 1;
    const char *sp2 = memchr(t, ' ', (size_t)(end - t));
    if ((size_t)((sp2 ? sp2 : end) - t) > max_uri)
        return 414;
    return LM_AGAIN;
}

#define REQ_FAIL(req, st, why) \
    ((req)->error_status = (st), (req)->error_reason = (why), LM_ERROR)

int lm_http1_parse_request(const char *buf, size_t len, const lm_http1_limits_t *limits,
                           lm_http1_request_t *req)
{
    lm_http1_limits_t lim = limits ? *limits : LM_HTTP1_DEFAULT_LIMITS;
    const char *p = buf, *end = buf + LM_MIN(len, lim.max_head);
    perr_t e = { 0, NULL };

    req->method = req->target = req->path = req->query = req->authority = req->host = LM_STR_NULL;
    req->minor_version = 0;
    req->num_headers = 0;
    req->body_kind = LM_BODY_NONE;
    req->content_length = 0;
    req->keep_alive = req->expect_continue = req->upgrade = false;
    req->error_status = 0;
    req->error_reason = NULL;

    /* leading empty lines */
    while (p < end && *p == '\r') {
        if (end - p < 2)
            goto again;
        if (p[1] != '\n')
            return REQ_FAIL(req, 400, "bare CR");
        p += 2;
    }
    if (p == end)
        goto again;

    /* request line */
    const char *lf = memchr(p, '\n', (size_t)(end - p));
    if (lf == NULL) {
        if (partial_request_line(p, end, lim.max_uri) == 414)
            return REQ_FAIL(req, 414, "request-target too long");
        goto again;
    }
    if (lf == p || lf[-1] != '\r')
        return REQ_FAIL(req, 400, "bare LF in request line");
    const char *eol = lf - 1, *q = p;
    while (IS(*q, C_TCHAR))
        q++;
    if (q == p || *q != ' ')
        return REQ_FAIL(req, 400, "invalid method");
    req->method = (lm_str_t){ p, (size_t)(q - p) };
    const char *t = ++q;
    while (IS(*q, C_TARGET))
        q++;
    if ((size_t)(q - t) > lim.max_uri)
        return REQ_FAIL(req, 414, "request-target too long");
    if (q == t || *q != ' ')
        return REQ_FAIL(req, 400, "invalid request-target");
    req->target = (lm_str_t){ t, (size_t)(q - t) };
    int ver = parse_version(q + 1, eol);
    if (ver < 0)
        return REQ_FAIL(req, -ver, ver == -505 ? "unsupported HTTP version" : "invalid HTTP version");
    req->minor_version = ver;
    if (parse_target(req, &e) != LM_OK)
        return REQ_FAIL(req, e.status, e.reason);

    /* header fields */
    size_t cap = LM_MIN(req->headers_cap, lim.max_headers);
    const char *head_end = parse_fields(lf + 1, end, req->headers, cap, &req->num_headers, &e);
    if (head_end == NULL) {
        if (e.status)
            return REQ_FAIL(req, e.status, e.reason);
        goto again;
    }

    framing_t f;
    if (analyze(req->headers, req->num_headers, &f, &e) != LM_OK)
        return REQ_FAIL(req, e.status, e.reason);
    if (f.hosts > 1)
        return REQ_FAIL(req, 400, "duplicate Host");
    if (f.hosts == 0 && req->minor_version == 1)
        return REQ_FAIL(req, 400, "missing Host");
    if (f.hosts && f.host.len && !valid_host(f.host, false))
        return REQ_FAIL(req, 400, "invalid Host");
    if (f.has_te) {
        if (req->minor_version == 0)
            return REQ_FAIL(req, 400, "Transfer-Encoding in HTTP/1.0");
        if (!f.te_last_chunked)
            return REQ_FAIL(req, 400, f.te_chunked ? "chunked is not the final coding"
                                                   : "Transfer-Encoding does not end in chunked");
        if (f.te_other)
            return REQ_FAIL(req, 501, "unsupported transfer coding");
        req->body_kind = LM_BODY_CHUNKED;
    } else if (f.has_cl) {
        req->body_kind = LM_BODY_LENGTH;
        req->content_length = f.cl;
    }
    req->host = req->authority.len ? req->authority : f.host;
    req->keep_alive = req->minor_version == 1 ? !f.close : (f.keep_alive && !f.close);
    req->expect_continue = f.expect_continue && req->minor_version == 1;
    req->upgrade = f.has_upgrade && f.conn_upgrade;
    req->client_cert_hdr = f.client_cert;
    return (int)(head_end - buf);

again:
    if (len >= lim.max_head)
        return REQ_FAIL(req, 431, "request head too large");
    return LM_AGAIN;
}

/* ---- response ------------------------------------------------------------ */

int lm_http1_parse_response(const char *buf, size_t len, size_t max_head, bool head_request,
                            lm_http1_response_t *resp)
{
    const char *p = buf, *end = buf + LM_MIN(len, max_head);
    perr_t e = { 0, NULL };

    resp->minor_version = 0;
    resp->status = 0;
    resp->reason = LM_STR_NULL;
    resp->num_headers = 0;
    resp->body_kind = LM_BODY_NONE;
    resp->content_length = 0;
    resp->keep_alive = false;
    resp->error_reason = NULL;

    const char *lf = memchr(p, '\n', (size_t)(end - p));
    if (lf == NULL)
        goto again;
    if (lf == p || lf[-1] != '\r')
        goto bad_line;
    const char *eol = lf - 1;
    if (eol - p < 12 || p[8] != ' ')
        goto bad_line;
    int ver = parse_version(p, p + 8);
    if (ver < 0) {
        resp->error_reason = "invalid HTTP version";
        return LM_ERROR;
    }
    resp->minor_version = ver;
    const char *s = p + 9;
    if (s[0] < '1' || s[0] > '9' || s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9')
        goto bad_line;
    resp->status = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    const char *r = s + 3;
    if (r < eol) {
        if (*r != ' ')
            goto bad_line;
        r++;
        for (const char *q = r; q < eol; q++)
            if (!IS(*q, C_VALUE))
                goto bad_line;
    }
    resp->reason = (lm_str_t){ r, (size_t)(eol - r) };

    const char *head_end = parse_fields(lf + 1, end, resp->headers, resp->headers_cap,
                                        &resp->num_headers, &e);
    if (head_end == NULL) {
        if (e.status) {
            resp->error_reason = e.reason;
            return LM_ERROR;
        }
        goto again;
    }
    framing_t f;
    if (analyze(resp->headers, resp->num_headers, &f, &e) != LM_OK) {
        resp->error_reason = e.reason;
        return LM_ERROR;
    }
    if (f.has_te && ver == 0) {
        resp->error_reason = "Transfer-Encoding in HTTP/1.0";
        return LM_ERROR;
    }
    resp->keep_alive = ver == 1 ? !f.close : (f.keep_alive && !f.close);
    int st = resp->status;
    if (head_request || st < 200 || st == 204 || st == 304) {
        resp->body_kind = LM_BODY_NONE;
    } else if (f.has_te) {
        resp->body_kind = f.te_last_chunked ? LM_BODY_CHUNKED : LM_BODY_UNTIL_CLOSE;
    } else if (f.has_cl) {
        resp->body_kind = LM_BODY_LENGTH;
        resp->content_length = f.cl;
    } else {
        resp->body_kind = LM_BODY_UNTIL_CLOSE;
    }
    if (resp->body_kind == LM_BODY_UNTIL_CLOSE)
        resp->keep_alive = false;
    return (int)(head_end - buf);

bad_line:
    resp->error_reason = "invalid status line";
    return LM_ERROR;
again:
    if (len >= max_head) {
        resp->error_reason = "response head too large";
        return LM_ERROR;
    }
    return LM_AGAIN;
}

/* ---- chunked ------------------------------------------------------------- */

enum {
    CH_SIZE = 0, /* zero-initialised decoder starts here */
    CH_EXT_NAME0,
    CH_EXT_NAME,
    CH_EXT_VAL0,
    CH_EXT_TOKEN,
    CH_EXT_QS,
    CH_EXT_QP,
    CH_EXT_QEND,
    CH_SIZE_LF,
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TR_LINE,
    CH_TR_NAME,
    CH_TR_VALUE,
    CH_TR_LF,
    CH_END_LF,
    CH_DONE,
    CH_ERROR,
};

#define CH_MAX_LINE 4096 /* chunk-size line including extensions */

int lm_chunked_decode(lm_chunked_t *d, char *buf, size_t *len, size_t *rest)
{
    char *in = buf, *out = buf, *end = buf + *len;
    size_t max_tr = d->max_trailer ? d->max_trailer : 32768;

    *rest = 0;
    if (d->state == CH_DONE) {
        *rest = *len;
        *len = 0;
        return LM_OK;
    }
    if (d->state == CH_ERROR)
        goto fail;

    while (in < end) {
        if (d->state == CH_DATA) {
            size_t n = (size_t)LM_MIN(d->remaining, (uint64_t)(end - in));
            if (out != in)
                memmove(out, in, n);
            out += n;
            in += n;
            d->remaining -= n;
            if (d->remaining == 0)
                d->state = CH_DATA_CR;
            continue;
        }
        unsigned char c = (unsigned char)*in++;
        if (d->state < CH_SIZE_LF && ++d->aux > CH_MAX_LINE) {
            d->error_reason = "chunk size line too long";
            goto fail;
        }
        if (d->state >= CH_TR_LINE && ++d->trailer_bytes > max_tr) {
            d->error_reason = "trailer section too large";
            goto fail;
        }
        if (d->keep && d->state >= CH_TR_LINE && d->state != CH_END_LF && !(d->state == CH_TR_LINE && c == '\r') &&
            d->keep_len < d->keep_cap)
            d->keep[d->keep_len++] = (char)c;
        switch (d->state) {
        case CH_SIZE: {
            int h = hexval(c);
            if (h >= 0) {
                if (d->aux > 16 || d->remaining > ((uint64_t)INT64_MAX >> 4)) {
                    d->error_reason = "chunk size too large";
                    goto fail;
                }
                d->remaining = d->remaining << 4 | (uint64_t)h;
                break;
            }
            if (d->aux == 1)
                goto bad_size;
            if (c == ';')
                d->state = CH_EXT_NAME0;
            else if (c == '\r')
                d->state = CH_SIZE_LF;
            else
                goto bad_size;
            break;
        }
        case CH_EXT_NAME0:
            if (!IS(c, C_TCHAR))
                goto bad_ext;
            d->state = CH_EXT_NAME;
            break;
        case CH_EXT_NAME:
        case CH_EXT_TOKEN:
            if (IS(c, C_TCHAR))
                break;
            if (c == '=' && d->state == CH_EXT_NAME)
                d->state = CH_EXT_VAL0;
            else if (c == ';')
                d->state = CH_EXT_NAME0;
            else if (c == '\r')
                d->state = CH_SIZE_LF;
            else
                goto bad_ext;
            break;
        case CH_EXT_VAL0:
            if (c == '"')
                d->state = CH_EXT_QS;
            else if (IS(c, C_TCHAR))
                d->state = CH_EXT_TOKEN;
            else
                goto bad_ext;
            break;
        case CH_EXT_QS:
            if (c == '"')
                d->state = CH_EXT_QEND;
            else if (c == '\\')
                d->state = CH_EXT_QP;
            else if (!IS(c, C_VALUE))
                goto bad_ext;
            break;
        case CH_EXT_QP:
            if (!IS(c, C_VALUE))
                goto bad_ext;
            d->state = CH_EXT_QS;
            break;
        case CH_EXT_QEND:
            if (c == ';')
                d->state = CH_EXT_NAME0;
            else if (c == '\r')
                d->state = CH_SIZE_LF;
            else
                goto bad_ext;
            break;
        case CH_SIZE_LF:
            if (c != '\n')
                goto bad_size;
            d->aux = 0;
            d->state = d->remaining ? CH_DATA : CH_TR_LINE;
            break;
        case CH_DATA_CR:
            if (c != '\r')
                goto bad_data;
            d->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (c != '\n')
                goto bad_data;
            d->state = CH_SIZE;
            d->aux = 0;
            d->remaining = 0;
            break;
        case CH_TR_LINE:
            if (c == '\r')
                d->state = CH_END_LF;
            else if (IS(c, C_TCHAR))
                d->state = CH_TR_NAME;
            else
                goto bad_trailer;
            break;
        case CH_TR_NAME:
            if (c == ':')
                d->state = CH_TR_VALUE;
            else if (!IS(c, C_TCHAR))
                goto bad_trailer;
            break;
        case CH_TR_VALUE:
            if (c == '\r')
                d->state = CH_TR_LF;
            else if (!IS(c, C_VALUE))
                goto bad_trailer;
            break;
        case CH_TR_LF:
            if (c != '\n')
                goto bad_trailer;
            d->state = CH_TR_LINE;
            break;
        case CH_END_LF:
            if (c != '\n')
                goto bad_trailer;
            d->state = CH_DONE;
            *rest = (size_t)(end - in);
            memmove(out, in, *rest);
            *len = (size_t)(out - buf);
            return LM_OK;
        default:
            d->error_reason = "invalid decoder state";
            goto fail;
        }
    }
    *len = (size_t)(out - buf);
    return LM_AGAIN;

bad_size:
    d->error_reason = "invalid chunk size";
    goto fail;
bad_ext:
    d->error_reason = "invalid chunk extension";
    goto fail;
bad_data:
    d->error_reason = "missing CRLF after chunk data";
    goto fail;
bad_trailer:
    d->error_reason = "invalid trailer field";
fail:
    d->state = CH_ERROR;
    *len = 0;
    *rest = 0;
    return LM_ERROR;
}

/*
 * proxy_head.c - the request as the upstream gets it: the head (request
 * line per strip_path/path_handling, Host, X-Forwarded-*, X-Real-IP, Via,
 * X-Request-Id, framing), Kong's path normalisation, and moving the parsed
 * head into the request arena.
 */
#include "proxy_int.h"
#include "lm_tls.h"

#include <stdio.h>

bool lm__valid_request_id(lm_str_t v)
{
    if (v.len == 0 || v.len > 200)
        return false;
    for (size_t i = 0; i < v.len; i++)
        if ((unsigned char)v.ptr[i] <= 0x20 || (unsigned char)v.ptr[i] >= 0x7f || v.ptr[i] == '"' || v.ptr[i] == '\\')
            return false;
    return true;
}
void lm__sb_via_list(lm__sb_t *b, const lm_http_header_t *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (h[i].id == LM_HDR_VIA && !(h[i].flags & LM_HDR_F_HOP) && h[i].value.len) {
            lm__sb_str(b, h[i].value);
            LM__SB_LIT(b, ", ");
        }
    }
}
/* Upstream path per Kong's path_handling (Route docs, and Kong's router:
 * get_upstream_uri for v0, the "v1" branch of the traditional router).
 * base is the service path ("/" when unset), req the request path, post
 * what follows the stripped prefix (the request path without its first
 * slash when nothing was stripped, as Kong's uri_postfix). */
static void lm__upstream_path(lm__sb_t *b, lm_str_t base, lm_str_t req, lm_str_t post, bool strip, bool v1)
{
    if (base.len == 0)
        base = LM_STR("/");
    bool base_slash = base.ptr[base.len - 1] == '/';
    lm_str_t base_trim = { base.ptr, base_slash ? base.len - 1 : base.len };
    lm_str_t req_tail = req.len && req.ptr[0] == '/' ? (lm_str_t){ req.ptr + 1, req.len - 1 } : req;
    bool post_slash = post.len && post.ptr[0] == '/';
    bool req_trailing_slash = req.len && req.ptr[req.len - 1] == '/';

    if (v1) {
        if (!strip) { /* the incoming path without its first slash, after the service path */
            lm__sb_str(b, base);
            lm__sb_str(b, req_tail);
        } else {
            lm__sb_str(b, base_slash && post_slash ? base_trim : base);
            lm__sb_str(b, post);
        }
        return;
    }
    if (base_slash) {
        if (!strip) {
            lm__sb_str(b, base);
            lm__sb_str(b, req_tail);
        } else if (post.len == 0) {
            lm__sb_str(b, base.len == 1 || req_trailing_slash ? base : base_trim);
        } else {
            lm__sb_str(b, post_slash ? base_trim : base);
            lm__sb_str(b, post);
        }
        return;
    }
    if (!strip) {
        lm__sb_str(b, base);
        if (!(req.len == 1 && req.ptr[0] == '/'))
            lm__sb_str(b, req);
    } else if (post.len == 0) {
        lm__sb_str(b, base);
        if (req.len > 1 && req_trailing_slash)
            LM__SB_LIT(b, "/");
    } else {
        lm__sb_str(b, base);
        if (!post_slash)
            LM__SB_LIT(b, "/");
        lm__sb_str(b, post);
    }
}
/* The query string without the arguments plugins removed (hide_credentials). */
static void lm__sb_query_without(lm__sb_t *b, const lm_req_t *r, lm_str_t q)
{
    bool first = true;
    size_t i = 0;
    while (i <= q.len) {
        size_t end = i;
        while (end < q.len && q.ptr[end] != '&')
            end++;
        size_t eq = i;
        while (eq < end && q.ptr[eq] != '=')
            eq++;
        bool drop = false;
        for (size_t k = 0; k < r->num_drop_args && !drop; k++)
            drop = lm_str_eq(r->drop_args[k], (lm_str_t){ q.ptr + i, eq - i });
        if (!drop && end > i) {
            lm__sb_put(b, first ? "?" : "&", 1);
            lm__sb_put(b, q.ptr + i, end - i);
            first = false;
        }
        i = end + 1;
    }
}
void lm__build_upstream_head(lm_req_t *r, const lm_http1_request_t *h, const lm_route_match_t *m)
{
    lm_conn_t *c = r->c;
    const lm_route_t *route = r->rrt->route;
    lm__sb_t b = { r->arena, NULL, 0, 0 };
    b.cap = 512 + h->target.len + r->num_hdrs * 64;
    b.p = lm_arena_alloc(r->arena, b.cap);

    lm__sb_str(&b, r->up_method.ptr ? r->up_method : h->method); /* plugins may override method, path, query */
    LM__SB_LIT(&b, " ");
    lm_str_t post = h->path; /* Kong's uri_postfix: after the stripped prefix, else after the first '/' */
    lm_str_t prefix = LM_STR_NULL;
    if (route->strip_path && m->prefix_len > 0 && m->prefix_len <= post.len) {
        prefix = (lm_str_t){ post.ptr, m->prefix_len };
        post.ptr += m->prefix_len;
        post.len -= m->prefix_len;
    } else if (post.len && post.ptr[0] == '/') {
        post.ptr++;
        post.len--;
    }
    bool v1 = route->path_handling && strcmp(route->path_handling, "v1") == 0;
    if (r->up_path.ptr)
        lm__sb_str(&b, r->up_path);
    else
        lm__upstream_path(&b, r->srt->path, h->path, post, route->strip_path, v1);
    lm_str_t query = r->up_query_set ? (r->up_query.len ? r->up_query : LM_STR_NULL) : h->query;
    if (query.ptr && r->num_drop_args == 0) {
        LM__SB_LIT(&b, "?");
        lm__sb_str(&b, query);
    } else if (query.ptr) {
        lm__sb_query_without(&b, r, query);
    }
    LM__SB_LIT(&b, " HTTP/1.1\r\nHost: ");
    if (route->preserve_host && h->host.len) {
        lm__sb_str(&b, h->host);
    } else {
        LM__EXT(r)->host_off = b.len; /* a retry on another address rewrites it */
        lm__sb_str(&b, r->peer->host_header);
        LM__EXT(r)->host_len = b.len - LM__EXT(r)->host_off;
    }
    LM__SB_LIT(&b, "\r\n");

    bool xff_done = false;
    const lm_http_header_t *hs = r->hdrs;
    size_t nh = r->num_hdrs;
    for (size_t i = 0; i < nh; i++) {
        const lm_http_header_t *hd = &hs[i];
        if (hd->flags & (LM_HDR_F_HOP | LM_HDR_F_DELETED))
            continue;
        switch (hd->id) {
        case LM_HDR_HOST:
        case LM_HDR_CONTENT_LENGTH:
        case LM_HDR_TRANSFER_ENCODING:
        case LM_HDR_EXPECT:
        case LM_HDR_X_FORWARDED_PROTO:
        case LM_HDR_X_FORWARDED_HOST:
        case LM_HDR_X_FORWARDED_PORT:
        case LM_HDR_X_FORWARDED_PREFIX:
        case LM_HDR_X_REAL_IP:
        case LM_HDR_X_REQUEST_ID:
            continue;
        case LM_HDR_VIA: /* combined below, ours last */
            continue;
        case LM_HDR_X_FORWARDED_FOR:
            if (xff_done)
                continue;
            /* one header: every X-Forwarded-For value in order, then the client */
            LM__SB_LIT(&b, "X-Forwarded-For: ");
            for (size_t j = i; j < nh; j++) {
                if (hs[j].id == LM_HDR_X_FORWARDED_FOR && !(hs[j].flags & LM_HDR_F_DELETED) && hs[j].value.len) {
                    lm__sb_str(&b, hs[j].value);
                    LM__SB_LIT(&b, ", ");
                }
            }
            lm__sb_cstr(&b, c->ip);
            LM__SB_LIT(&b, "\r\n");
            xff_done = true;
            continue;
        default:
            break;
        }
        lm__sb_str(&b, hd->name);
        LM__SB_LIT(&b, ": ");
        lm__sb_str(&b, hd->value);
        LM__SB_LIT(&b, "\r\n");
    }
    if (LM__EXT(r)->ws) /* hop-by-hop, so dropped above: the handshake needs them */
        LM__SB_LIT(&b, "Connection: Upgrade\r\nUpgrade: websocket\r\n");
    if (!xff_done) {
        LM__SB_LIT(&b, "X-Forwarded-For: ");
        lm__sb_cstr(&b, c->ip);
        LM__SB_LIT(&b, "\r\n");
    }
    if (lm_conn_tls(c))
        LM__SB_LIT(&b, "X-Forwarded-Proto: https\r\nX-Forwarded-Host: ");
    else
        LM__SB_LIT(&b, "X-Forwarded-Proto: http\r\nX-Forwarded-Host: ");
    lm_str_t host = h->host;
    for (size_t i = host.len; i > 0; i--) { /* strip ":port" (not inside an IPv6 literal) */
        if (host.ptr[i - 1] == ':') {
            host.len = i - 1;
            break;
        }
        if (host.ptr[i - 1] == ']' || host.ptr[i - 1] < '0' || host.ptr[i - 1] > '9')
            break;
    }
    lm__sb_str(&b, host);
    LM__SB_LIT(&b, "\r\nX-Forwarded-Port: ");
    lm__sb_u64(&b, (uint64_t)c->local_port);
    LM__SB_LIT(&b, "\r\nX-Real-IP: ");
    lm__sb_cstr(&b, lm_ctx_client_ip((lm_ctx_t *)r));
    LM__SB_LIT(&b, "\r\n");
    if (prefix.len) {
        LM__SB_LIT(&b, "X-Forwarded-Prefix: ");
        lm__sb_str(&b, prefix);
        LM__SB_LIT(&b, "\r\n");
    }
    const lm_tls_t *ct = lm_conn_tls(c);
    if (ct && ct->client_verify) { /* --ssl-client-verify (the client's own were dropped) */
        LM__SB_LIT(&b, "X-Client-Cert-Verify: ");
        lm__sb_cstr(&b, ct->client_verify);
        if (ct->client_subject) {
            LM__SB_LIT(&b, "\r\nX-Client-Cert-Subject: ");
            lm__sb_cstr(&b, ct->client_subject);
        }
        LM__SB_LIT(&b, "\r\n");
    }
    LM__SB_LIT(&b, "X-Request-Id: ");
    lm__sb_cstr(&b, lm__rid(r));
    LM__SB_LIT(&b, "\r\nVia: ");
    lm__sb_via_list(&b, hs, nh);
    if (r->minor == 0)
        LM__SB_LIT(&b, "1.0 limen\r\n");
    else
        LM__SB_LIT(&b, "1.1 limen\r\n");
    if (LM__EXT(r)->body_state == LM__BODY_READY || LM__EXT(r)->body_state == LM__BODY_PARTIAL) {
        lm__body_head_end(&b, r); /* read whole for plugins: it follows the head */
        r->up_head = b.p;
        r->up_head_len = b.len;
        return;
    }
    if (r->req_body == LM_BODY_LENGTH) {
        LM__SB_LIT(&b, "Content-Length: ");
        lm__sb_u64(&b, r->req_left);
        LM__SB_LIT(&b, "\r\n");
    } else if (r->req_body == LM_BODY_CHUNKED) {
        LM__SB_LIT(&b, "Transfer-Encoding: chunked\r\n");
    }
    LM__SB_LIT(&b, "\r\n");
    r->up_head = b.p;
    r->up_head_len = b.len;
}

static bool lm__unreserved(int ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
           ch == '.' || ch == '_' || ch == '~';
}
/*
 * The path routes match and the upstream receives, normalised as Kong does
 * (kong/tools/uri.lua normalize with merge_slashes): percent-encoded
 * unreserved characters decoded (so %2e is a dot), the other escapes
 * upper-cased, dot segments removed (RFC 3986 5.2.4, never above the root)
 * and repeated slashes merged. Without it "/public/../admin" would match the
 * /public route and reach the upstream as a path it resolves to /admin.
 * Returns p itself when there is nothing to do, else a copy in the arena.
 */
lm_str_t lm__normalize_path(lm_arena_t *a, lm_str_t p)
{
    bool need = false;
    for (size_t i = 0; i < p.len && !need; i++)
        need = p.ptr[i] == '%' || p.ptr[i] == '.' || (p.ptr[i] == '/' && i + 1 < p.len && p.ptr[i + 1] == '/');
    if (!need || p.ptr[0] != '/')
        return p;

    char *in = lm_arena_alloc(a, p.len + 1);
    size_t n = 0;
    for (size_t i = 0; i < p.len;) {
        int hi, lo;
        if (p.ptr[i] == '%' && i + 2 < p.len && (hi = lm_hexval(p.ptr[i + 1])) >= 0 &&
            (lo = lm_hexval(p.ptr[i + 2])) >= 0) {
            int v = hi * 16 + lo;
            if (lm__unreserved(v)) {
                in[n++] = (char)v;
            } else {
                in[n++] = '%';
                in[n++] = "0123456789ABCDEF"[hi];
                in[n++] = "0123456789ABCDEF"[lo];
            }
            i += 3;
        } else {
            in[n++] = p.ptr[i++];
        }
    }

    char *out = lm_arena_alloc(a, n + 1);
    size_t *segs = lm_arena_alloc(a, (n + 1) * sizeof(*segs)); /* where each output segment starts */
    size_t o = 0, k = 0, i = 0;
    while (i < n) {
        size_t left = n - i;
        const char *q = in + i;
        if (left >= 3 && q[0] == '.' && q[1] == '.' && q[2] == '/') {
            i += 3;
        } else if (left >= 2 && q[0] == '.' && q[1] == '/') {
            i += 2;
        } else if (left >= 3 && q[0] == '/' && q[1] == '.' && q[2] == '/') {
            i += 2;
        } else if (left == 2 && q[0] == '/' && q[1] == '.') {
            in[i + 1] = '/'; /* "/." at the end -> "/" */
            i += 1;
        } else if ((left >= 4 && q[0] == '/' && q[1] == '.' && q[2] == '.' && q[3] == '/') ||
                   (left == 3 && q[0] == '/' && q[1] == '.' && q[2] == '.')) {
            if (left == 3)
                in[i + 2] = '/'; /* "/.." at the end -> "/" */
            i += left == 3 ? 2 : 3;
            if (k > 0)
                o = segs[--k];
        } else if ((left == 1 && q[0] == '.') || (left == 2 && q[0] == '.' && q[1] == '.')) {
            i = n;
        } else if (left >= 2 && q[0] == '/' && q[1] == '/') {
            i += 1;
        } else {
            size_t j = 1;
            while (j < left && q[j] != '/')
                j++;
            segs[k++] = o;
            memcpy(out + o, q, j);
            o += j;
            i += j;
        }
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    return (lm_str_t){ out, o };
}
/* A retry goes to another address: its Host value replaces the first one's. */
void lm__retarget_head(lm_req_t *r)
{
    lm__req_ext_t *x = LM__EXT(r);
    lm_str_t hv = r->peer->host_header;
    if (x->host_len == 0 || (hv.len == x->host_len && memcmp(r->up_head + x->host_off, hv.ptr, hv.len) == 0))
        return;
    size_t tail = r->up_head_len - x->host_off - x->host_len;
    char *nh = lm_arena_alloc(r->arena, x->host_off + hv.len + tail);
    memcpy(nh, r->up_head, x->host_off);
    memcpy(nh + x->host_off, hv.ptr, hv.len);
    memcpy(nh + x->host_off + hv.len, r->up_head + x->host_off + x->host_len, tail);
    r->up_head = nh;
    r->up_head_len = x->host_off + hv.len + tail;
    x->host_len = hv.len;
}
/* Moves every slice of the parsed head into the request arena: the
 * connection buffer is reused for the body, and plugins may need the head
 * after that. */
void lm__relocate_head(lm_req_t *r, const char *buf, size_t len, lm_http1_request_t *h)
{
    char *copy = lm_arena_alloc(r->arena, len + 1);
    memcpy(copy, buf, len);
#define LM__MOVE(sl)                                                          \
    do {                                                                      \
        if ((sl).ptr >= buf && (sl).ptr <= buf + len)                         \
            (sl).ptr = copy + ((sl).ptr - buf);                               \
    } while (0)
    LM__MOVE(h->method);
    LM__MOVE(h->target);
    LM__MOVE(h->path);
    LM__MOVE(h->query);
    LM__MOVE(h->authority);
    LM__MOVE(h->host);
    for (size_t i = 0; i < h->num_headers; i++) {
        LM__MOVE(h->headers[i].name);
        LM__MOVE(h->headers[i].value);
    }
#undef LM__MOVE
}

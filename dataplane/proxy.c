/*
 * proxy.c - the request path (connections themselves: proxy_conn.c):
 *   read head -> parse -> route -> build upstream head -> stream the request
 *   body -> parse the response head -> stream the response body -> log.
 *
 * One request at a time per connection (pipelined requests wait in the
 * buffer). Bodies stream with bounded memory: a piece is written from the
 * buffer it was read into, and that buffer is only consumed when the write
 * completes; reading stops when the buffer is full (UV_ENOBUFS) and resumes
 * after the write.
 */
#include "lm_proxy.h"
#include "proxy_int.h"
#include "lm_tls.h"
#include "lm_h2.h"
#include "lm_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define LM_CLIENT_SEND_TIMEOUT_MS 60000 /* a response write the client does not take (nginx send_timeout) */

static void lm__req_finish(lm_req_t *r);
static void lm__resp_pump(lm_req_t *r);
static void lm__resp_end_at_close(lm_req_t *r);
static void lm__tunnel_start(lm_req_t *r, const lm_http1_response_t *resp, size_t head_len);
static void lm__tunnel_written(lm_req_t *r);




/* The request's id: the client's X-Request-Id (any valid length) or ours. */
const char *lm__rid(lm_req_t *r)
{
    const char *id = ((lm__req_ext_t *)r)->request_id;
    return id ? id : r->request_id;
}

/* 32 random hex digits */
static void lm__new_request_id(lm_worker_t *w, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = lm_worker_random(w), c = lm_worker_random(w);
    for (int i = 0; i < 16; i++) {
        out[i] = hex[(a >> (i * 4)) & 15];
        out[16 + i] = hex[(c >> (i * 4)) & 15];
    }
    out[32] = '\0';
}

static const char *lm__reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Request Entity Too Large";
    case 414: return "Request-URI Too Large";
    case 417: return "Expectation Failed";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

static const char *lm__default_message(int status)
{
    switch (status) {
    case 400: return "Bad request";
    case 404: return "Not found";
    case 405: return "Method not allowed";
    case 408: return "Request timeout";
    case 413: return "Request size limit exceeded";
    case 414: return "Request-URI Too Large";
    case 426: return "Please use HTTPS protocol";
    case 431: return "Request header or cookie too large";
    case 500: return "An unexpected error occurred";
    case 501: return "Not implemented";
    case 502: return "An invalid response was received from the upstream server";
    case 503: return "The upstream server is currently unavailable";
    case 504: return "The upstream server is timing out";
    case 505: return "HTTP version not supported";
    default: return lm__reason(status);
    }
}


/* Every received Via value in order, each followed by ", " (ours comes last). */
static void lm__sb_resp_hdrs(lm__sb_t *b, const lm_req_t *r)
{
    for (size_t i = 0; i < r->num_resp_hdrs; i++) {
        const lm_http_header_t *hd = &r->resp_hdrs[i];
        if (hd->flags & LM_HDR_F_DELETED)
            continue;
        lm__sb_str(b, hd->name);
        LM__SB_LIT(b, ": ");
        lm__sb_str(b, hd->value);
        LM__SB_LIT(b, "\r\n");
    }
}

/* ------------------------------------------------------------------ */
/* writing to the client                                               */

typedef struct {
    uv_write_t wr;
    lm_defer_t defer;
    lm_req_t *r;
    bool is_body; /* consumes resp_inflight on completion */
} lm__cwrite_t;

static void lm__client_written(uv_write_t *wr, int status)
{
    lm__cwrite_t *cw = (lm__cwrite_t *)wr;
    lm_req_t *r = cw->r;
    lm_conn_t *c = r->c;
    r->writes_pending--;
    if (c->closing)
        return;
    if (status < 0) {
        lm__conn_close(c);
        return;
    }
    if (r->writes_pending == 0) {
        /* the client took everything: it is only waited for if its body is still coming */
        if (r->req_body_done)
            uv_timer_stop(&c->timer);
        else
            uv_timer_start(&c->timer, lm__conn_timeout, LM_CLIENT_BODY_TIMEOUT_MS, 0);
    }
    lm__req_ext_t *x = LM__EXT(r);
    if (cw->is_body) {
        x->resp_writing = false;
        lm_upconn_t *u = r->up;
        size_t n = x->resp_inflight;
        x->resp_inflight = 0;
        if (u && n) {
            memmove(u->buf, u->buf + n, u->len - n);
            u->len -= n;
        }
        if (u && !r->resp_done) {
            if (x->up_eof && u->len == 0) {
                lm__resp_end_at_close(r);
                return;
            }
            /* waiting for the upstream again: its read timeout runs (the pump
             * stops it if it can write at once) */
            lm_upstream_read_start(u);
            lm_upstream_set_timer(u, (uint64_t)r->srt->svc->read_timeout);
            if (u->len)
                lm__resp_pump(r);
            return;
        }
    }
    if (r->resp_done && r->writes_pending == 0)
        lm__req_finish(r);
}

static void lm__client_write(lm_req_t *r, uv_buf_t *bufs, unsigned n, bool is_body)
{
    lm__cwrite_t *cw = lm_arena_alloc(r->arena, sizeof(*cw));
    cw->r = r;
    cw->is_body = is_body;
    r->writes_pending++;
    uv_timer_start(&r->c->timer, lm__conn_timeout, LM_CLIENT_SEND_TIMEOUT_MS, 0);
    lm_conn_t *c = r->c;
    int rc = c->h2s ? lm_h2_stream_write(c, &cw->wr, bufs, n, lm__client_written)
                    : lm_proxy_conn_write(c, &cw->wr, &cw->defer, bufs, n, lm__client_written);
    if (rc < 0) {
        r->writes_pending--;
        lm__conn_close(r->c);
    }
}

/* ------------------------------------------------------------------ */
/* errors generated by the proxy                                        */

/* Serialises the response header list (after header_filter) into b. */
static void lm__sb_resp_hdrs(lm__sb_t *b, const lm_req_t *r);

/* gRPC's code for an HTTP status (the mapping gRPC documents for HTTP errors) */
static int lm__grpc_code(int status)
{
    switch (status) {
    case 400: return 13; /* INTERNAL */
    case 401: return 16; /* UNAUTHENTICATED */
    case 403: return 7;  /* PERMISSION_DENIED */
    case 404: return 12; /* UNIMPLEMENTED */
    case 429: case 502: case 503: case 504: return 14; /* UNAVAILABLE */
    default: return status >= 200 && status < 300 ? 0 : 2; /* UNKNOWN */
    }
}

/* grpc-message: percent-encoded outside printable ASCII (and '%') */
static char *lm__grpc_message(lm_arena_t *a, const char *body, size_t len, const char *fallback)
{
    char msg[512];
    size_t n = 0;
    cJSON *j = len ? cJSON_ParseWithLength(body, len) : NULL;
    const char *m = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "message"));
    if (!m)
        m = fallback;
    for (const unsigned char *p = (const unsigned char *)m; *p && n + 4 < sizeof(msg); p++) {
        if (*p >= 0x20 && *p <= 0x7e && *p != '%')
            msg[n++] = (char)*p;
        else
            n += (size_t)snprintf(msg + n, 4, "%%%02X", *p);
    }
    msg[n] = 0;
    cJSON_Delete(j);
    return lm_arena_strdup(a, msg);
}

static void lm__respond(lm_req_t *r, int status, const char *content_type, const char *body, size_t body_len,
                        const char *extra_headers)
{
    lm_conn_t *c = r->c;
    if (LM__EXT(r)->grpc && status != 200) {
        /* gRPC clients read errors from grpc-status / grpc-message, not from a body (a trailers-only answer) */
        char *hdrs = lm_arena_sprintf(r->arena, "grpc-status: %d\r\ngrpc-message: %s\r\n%s", lm__grpc_code(status),
                                      lm__grpc_message(r->arena, body, body_len, lm__default_message(status)),
                                      extra_headers ? extra_headers : "");
        status = 200;
        content_type = "application/grpc";
        body = "";
        body_len = 0;
        extra_headers = hdrs;
    }
    r->status = status;
    /* a request body we did not read makes the connection unusable */
    if (!r->req_body_done)
        c->want_close = true;
    char *head;
    size_t head_len;
    if (r->filters) {
        /* plugins see (and may change) the head of responses the proxy makes too */
        lm_ctx_resp_init(r, 8);
        if (content_type)
            lm_ctx_resp_append(r, LM_STR("Content-Type"), lm_str(content_type));
        for (const char *p = extra_headers; p && *p;) { /* "Name: value\r\n" lines */
            const char *eol = strstr(p, "\r\n");
            const char *colon = memchr(p, ':', eol ? (size_t)(eol - p) : strlen(p));
            if (!eol || !colon)
                break;
            const char *v = colon + 1;
            while (v < eol && *v == ' ')
                v++;
            lm_ctx_resp_append(r, (lm_str_t){ p, (size_t)(colon - p) }, (lm_str_t){ v, (size_t)(eol - v) });
            p = eol + 2;
        }
        lm_ctx_run_header_filter(r);
        status = r->status; /* header_filter may change it (lm_ctx_resp_set_status) */
        bool keep = r->client_keepalive && !c->want_close && !c->w->draining;
        if (!keep)
            c->want_close = true;
        lm__sb_t b = { r->arena, NULL, 0, 0 };
        b.cap = 512;
        b.p = lm_arena_alloc(r->arena, b.cap);
        LM__SB_LIT(&b, "HTTP/1.1 ");
        lm__sb_u64(&b, (uint64_t)status);
        LM__SB_LIT(&b, " ");
        lm__sb_cstr(&b, lm__reason(status));
        LM__SB_LIT(&b, "\r\nDate: ");
        lm__sb_cstr(&b, lm_worker_date(c->w));
        LM__SB_LIT(&b, "\r\n");
        lm__sb_resp_hdrs(&b, r);
        LM__SB_LIT(&b, "Content-Length: ");
        lm__sb_u64(&b, body_len);
        LM__SB_LIT(&b, "\r\nConnection: ");
        lm__sb_cstr(&b, keep ? "keep-alive" : "close");
        LM__SB_LIT(&b, "\r\nServer: limen/" LM_VERSION "\r\n\r\n");
        head = b.p;
        head_len = b.len;
    } else {
        bool keep = r->client_keepalive && !c->want_close && !c->w->draining;
        head = lm_arena_sprintf(r->arena,
                                "HTTP/1.1 %d %s\r\nDate: %s\r\n%s%s%sContent-Length: %zu\r\n"
                                "Connection: %s\r\nServer: limen/" LM_VERSION "\r\n%s\r\n",
                                status, lm__reason(status), lm_worker_date(c->w), content_type ? "Content-Type: " : "",
                                content_type ? content_type : "", content_type ? "\r\n" : "", body_len,
                                keep ? "keep-alive" : "close", extra_headers ? extra_headers : "");
        head_len = strlen(head);
        if (!keep)
            c->want_close = true;
    }
    uv_buf_t bufs[2] = { uv_buf_init(head, (unsigned)head_len), uv_buf_init((char *)body, (unsigned)body_len) };
    r->resp_head_sent = true;
    r->resp_done = true;
    r->bytes_out += bufs[0].len + (r->head_method ? 0 : body_len);
    lm__client_write(r, bufs, r->head_method || body_len == 0 ? 1 : 2, false);
}

void lm__respond_error(lm_req_t *r, int status, const char *message)
{
    if (!message)
        message = lm__default_message(status);
    char esc[512];
    lm_json_escape(esc, sizeof(esc), message, strlen(message));
    char *body = lm_arena_sprintf(r->arena, "{\n  \"message\":\"%s\",\n  \"request_id\":\"%s\"\n}", esc,
                                  lm__rid(r));
    if (r->up) {
        lm_upstream_abort(r->up);
        r->up = NULL;
    }
    lm__respond(r, status, "application/json; charset=utf-8", body, strlen(body), NULL);
}

/* A malformed request head: answer and close, never forward. */
static void lm__reject_head(lm_conn_t *c, int status, const char *reason)
{
    lm_req_t *r = lm_arena_calloc(c->arena, sizeof(lm__req_ext_t));
    r->c = c;
    r->w = c->w;
    r->arena = c->arena;
    r->t_start = uv_now(&c->w->loop);
    r->minor = 1;
    r->method = LM_STR("-");
    r->path = LM_STR("-");
    lm__new_request_id(c->w, r->request_id);
    c->req = r;
    c->want_close = true;
    lm_log_debug("client %s: bad request: %s", c->ip, reason ? reason : "?");
    lm__respond_error(r, status, NULL);
}

/* ------------------------------------------------------------------ */
/* request start                                                       */









/* ---- balancing: picks, retries and outcomes (lm_balancer.h) ---- */

static const lm_peer_t *lm__pick_peer(lm_req_t *r)
{
    return lm_balancer_pick(r->srt->bal, &LM__EXT(r)->pick, uv_now(&r->w->loop), lm_worker_random(r->w));
}

/* The request is done with its address: in-flight count, latency sample. */
void lm__peer_release(lm_req_t *r)
{
    if (r->srt && LM__EXT(r)->pick.held)
        lm_balancer_release(r->srt->bal, &LM__EXT(r)->pick, uv_now(&r->w->loop), r->t_upstream_head != 0);
}



/* A plugin failed (LM_ERROR without a response): Kong answers 500. */
static void lm__plugin_failed(lm_req_t *r)
{
    lm__respond_error(r, 500, "An unexpected error occurred");
}

static void lm__req_access(lm_req_t *r, lm_http1_request_t *h, lm_route_match_t *m, int status, const char *msg);

/* ---- request bodies read whole for plugins (proxy_body.c) ---- */

/* Some instance that may run for this request reads the body. */
static bool lm__wants_body(lm_req_t *r)
{
    const lm_plugin_rt_t *rt = &r->ws->snap->plugins;
    return r->chain->needs_body || (rt->has_consumer_scoped && rt->needs_body);
}

/* Reads what has arrived; once the body is whole (or a chunked one outgrew
 * the cap) the access phase runs. */
void lm__body_feed(lm_req_t *r)
{
    lm__req_ext_t *x = LM__EXT(r);
    int rc = lm__body_take(r);
    if (rc == LM_AGAIN) {
        uv_timer_start(&r->c->timer, lm__conn_timeout, LM_CLIENT_BODY_TIMEOUT_MS, 0);
        lm__conn_read_start(r->c);
        return;
    }
    uv_timer_stop(&r->c->timer);
    if (rc == LM_ERROR) {
        x->body_state = LM__BODY_NONE;
        lm__respond_error(r, 400, NULL);
        return;
    }
    lm__req_access(r, x->held_h, x->held_m, 0, NULL);
}

/* Starts reading the body before the access phase; h and m are kept in the
 * arena (h lives on the caller's stack) for when it is complete. */
static void lm__body_wait(lm_req_t *r, lm_http1_request_t *h, lm_route_match_t *m)
{
    lm__req_ext_t *x = LM__EXT(r);
    if (r->req_body == LM_BODY_LENGTH && r->req_left > LM_BODY_BUFFER_MAX) {
        x->body_state = LM__BODY_OVER; /* plugins see no body; it streams as usual */
        lm__req_access(r, h, m, 0, NULL);
        return;
    }
    x->held_h = lm_arena_alloc(r->arena, sizeof(*h));
    *x->held_h = *h;
    x->held_h->headers = lm_arena_alloc(r->arena, (h->num_headers + 1) * sizeof(*h->headers));
    memcpy(x->held_h->headers, h->headers, h->num_headers * sizeof(*h->headers));
    x->held_m = lm_arena_alloc(r->arena, sizeof(*m));
    *x->held_m = *m;
    x->body_state = LM__BODY_READING;
    if (r->expect_continue) { /* the client waits for it before it sends the body */
        static char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        uv_buf_t b = uv_buf_init(cont, sizeof(cont) - 1);
        r->expect_continue = false;
        lm__client_write(r, &b, 1, false);
    }
    lm__body_feed(r);
}

/* Returns after the request is either answered or handed to an upstream. */
static void lm__req_start(lm_conn_t *c, lm_http1_request_t *h, size_t head_len)
{
    lm_worker_t *w = c->w;
    lm__req_ext_t *x = lm_arena_calloc(c->arena, sizeof(*x));
    lm_req_t *r = &x->r;
    r->c = c;
    r->w = w;
    r->arena = c->arena;
    r->t_start = uv_now(&w->loop);
    r->minor = h->minor_version;
    r->client_keepalive = h->keep_alive;
    lm__relocate_head(r, c->buf, head_len, h); /* every slice of h now points into the arena */
    memmove(c->buf, c->buf + head_len, c->len - head_len); /* keep only what follows the head */
    c->len -= head_len;
    r->method = h->method;
    r->path = h->path; /* as received, for the log */
    r->host = h->host;
    h->path = lm__normalize_path(r->arena, h->path);  /* routing and the upstream use the normalised one */
    r->npath = h->path;
    r->raw_query = h->query;
    r->content_length = h->body_kind == LM_BODY_LENGTH ? (int64_t)h->content_length : -1;
    lm_ctx_init_headers(r, h->headers, h->num_headers, h->client_cert_hdr);
    r->head_method = lm_str_eq(h->method, LM_STR("HEAD"));
    r->req_body = h->body_kind;
    r->req_left = h->body_kind == LM_BODY_LENGTH ? h->content_length : 0;
    r->req_body_done = h->body_kind == LM_BODY_NONE || (h->body_kind == LM_BODY_LENGTH && h->content_length == 0);
    r->expect_continue = h->expect_continue && !r->req_body_done && h->minor_version == 1;
    if (h->upgrade) { /* only WebSocket upgrades are passed on (h2c and others are answered over HTTP/1.1) */
        const lm_http_header_t *up = lm_http1_find(h->headers, h->num_headers, LM_HDR_UPGRADE);
        x->ws = up && lm_str_ieq(up->value, LM_STR("websocket")) && lm_str_eq(h->method, LM_STR("GET"));
    }
    r->bytes_in = head_len;
    r->ws = lm_worker_snap_acquire(w);
    c->req = r;
    c->requests++;
    atomic_fetch_add_explicit(&lm_counters.requests_total, 1, memory_order_relaxed);
    uv_timer_stop(&c->timer);

    const lm_http_header_t *rid = lm_http1_find(h->headers, h->num_headers, LM_HDR_X_REQUEST_ID);
    if (rid && lm__valid_request_id(rid->value)) {
        snprintf(r->request_id, sizeof(r->request_id), "%.*s", (int)LM_MIN(rid->value.len, 39), rid->value.ptr);
        if (rid->value.len >= sizeof(r->request_id)) /* kept whole, never truncated */
            x->request_id = lm_arena_strdup_str(r->arena, rid->value).ptr;
    } else
        lm__new_request_id(w, r->request_id);

    lm_snapshot_t *snap = r->ws->snap;
    const lm_plugin_chain_t *global = &snap->plugins.global;
    r->chain = global;
    if (global->n && lm_ctx_run_rewrite(r, global) != LM_OK && !r->exited) {
        lm__plugin_failed(r);
        return;
    }
    if (c->parent) { /* gRPC: HTTP/2 with a content type of application/grpc (as Kong tells) */
        const lm_http_header_t *ct = lm_http1_find(h->headers, h->num_headers, LM_HDR_CONTENT_TYPE);
        x->grpc = ct && lm_str_has_prefix(ct->value, LM_STR("application/grpc"));
    }
    const char *proto = x->grpc ? (lm_conn_tls(c) ? "grpcs" : "grpc") : lm_conn_tls(c) ? "https" : "http";
    lm_route_req_t q = { .method = h->method, .host = h->host, .path = h->path,
                         .sni = lm_conn_tls(c) ? lm_str(lm_conn_tls(c)->sni) : LM_STR_NULL,
                         .protocol = proto, .port = c->local_port, .headers = h->headers,
                         .num_headers = h->num_headers };
    lm_route_match_t m;
    int status = 0;
    const char *msg = NULL;
    if (lm_str_eq(h->method, LM_STR("CONNECT"))) {
        status = 405;
        msg = "Method not allowed";
    } else if (lm_router_match(snap->router, &q, &m) != LM_OK) {
        status = 404;
        msg = "no Route matched with those values";
    } else {
        r->rrt = &snap->routes[m.route->index];
        r->srt = r->rrt->svc;
        if (m.protocol_mismatch) {
            status = r->rrt->route->https_redirect_status_code;
            msg = status == 426 ? "Please use HTTPS protocol" : NULL;
        } else if (r->srt == NULL) {
            status = 503;
            msg = "no Service found with those values";
        } else if (r->srt->resolve_error) {
            status = 503;
            msg = r->srt->resolve_error;
        } else if (r->srt->unsupported_protocol || r->srt->num_peers == 0) {
            status = 502;
        } else {
            r->chain = &r->rrt->chain;
            if (!r->req_body_done && !r->exited && lm__wants_body(r)) {
                lm__body_wait(r, h, &m);
                return;
            }
        }
    }
    lm__req_access(r, h, &m, status, msg);
}

/* After routing (status 0) or a refusal (status, msg): the access phase,
 * the balancer and the upstream head, or the answer. */
static void lm__req_access(lm_req_t *r, lm_http1_request_t *h, lm_route_match_t *m, int status, const char *msg)
{
    lm__req_ext_t *x = LM__EXT(r);
    lm_conn_t *c = r->c;
    lm_worker_t *w = r->w;
    lm_snapshot_t *snap = r->ws->snap;
    if (!status) {
        if (m->num_captures && r->chain->n) { /* regex captures for plugins (lm_ctx_uri_capture); m may be on the stack */
            lm_route_match_t *mc = lm_arena_alloc(r->arena, sizeof(*mc));
            *mc = *m;
            r->match = mc;
        }
        if (r->chain->n || snap->plugins.has_consumer_scoped) {
            int prc = r->exited ? LM_PLUGIN_DONE : lm_ctx_run_access(r);
            if (prc == LM_ERROR && !r->exited) {
                lm__plugin_failed(r);
                return;
            }
        }
        if (x->body_state == LM__BODY_READY || x->body_state == LM__BODY_PARTIAL) {
            /* request-size-limiting on a body read here: the pump does not see it */
            r->body_seen = x->body_len;
            if (!r->exited && r->body_limit && x->body_len > r->body_limit) {
                status = 413;
                msg = r->body_limit_msg ? r->body_limit_msg : "Request size limit exceeded";
            }
        }
        if (!r->exited && !status) {
            if (r->srt->bal->algo == LM_LB_CONSISTENT_HASHING)
                lm_balancer_prepare(r->srt->bal, &x->pick, (lm_ctx_t *)r, m, lm_worker_random(w),
                                    lm_worker_random(w));
            r->peer = lm__pick_peer(r);
            if (r->peer) {
                lm__build_upstream_head(r, h, m);
            } else { /* every target unhealthy, or the upstream below its threshold */
                status = 503;
                msg = "failure to get a peer from the ring-balancer";
            }
        }
    }
    if (r->num_ran == 0 && r->chain->n && (status || r->exited)) {
        /* no route (or refused before the access phase): global plugins still filter and log */
        r->ran = r->chain->list;
        r->num_ran = r->chain->n;
        for (size_t i = 0; i < r->num_ran; i++)
            r->filters = r->filters || r->ran[i]->ops->header_filter;
    }

    /* a chunked body that is already here is checked before anything is
     * forwarded, so a malformed one never reaches the upstream */
    if (!status && r->req_body == LM_BODY_CHUNKED && c->len && x->body_state == LM__BODY_NONE) {
        char *scratch = lm_arena_alloc(r->arena, c->len);
        memcpy(scratch, c->buf, c->len);
        lm_chunked_t d;
        memset(&d, 0, sizeof(d));
        size_t dl = c->len, rest = 0;
        if (lm_chunked_decode(&d, scratch, &dl, &rest) == LM_ERROR) {
            status = 400;
            msg = "Bad request";
        }
    }

    if (!status && r->exited) {
        lm__respond(r, r->exit_status, r->exit_ctype, r->exit_body ? r->exit_body : "", r->exit_body_len,
                    r->exit_headers);
        return;
    }
    if (status) {
        if (status >= 301 && status <= 308) {
            char *loc = lm_arena_sprintf(r->arena, "Location: https://%.*s%.*s%s%.*s\r\n", LM_STR_FMT(r->host),
                                         LM_STR_FMT(h->path), h->query.ptr ? "?" : "", (int)h->query.len,
                                         h->query.ptr ? h->query.ptr : "");
            lm__respond(r, status, "text/plain", "", 0, loc);
            return;
        }
        if (status == 426) {
            char esc[64];
            lm_json_escape(esc, sizeof(esc), msg, strlen(msg));
            char *body = lm_arena_sprintf(r->arena, "{\n  \"message\":\"%s\",\n  \"request_id\":\"%s\"\n}", esc,
                                          lm__rid(r));
            lm__respond(r, 426, "application/json; charset=utf-8", body, strlen(body),
                        "Upgrade: TLS/1.2, HTTP/1.1\r\n");
            return;
        }
        lm__respond_error(r, status, msg);
        return;
    }
    if (r->expect_continue) {
        static char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        uv_buf_t b = uv_buf_init(cont, sizeof(cont) - 1);
        lm__client_write(r, &b, 1, false);
    }
    x->upstream_head_pending = true;
    lm_upstream_acquire(r, r->peer);
}

void lm__conn_process(lm_conn_t *c)
{
    lm_worker_t *w = c->w;
    while (!c->closing && c->req == NULL) {
        if (c->len == 0) {
            if (c->want_close || w->draining) {
                lm__conn_close(c);
                return;
            }
            uv_timer_start(&c->timer, lm__conn_timeout,
                           c->requests ? LM_CLIENT_KEEPALIVE_TIMEOUT_MS : LM_CLIENT_HEADER_TIMEOUT_MS, 0);
            lm__conn_read_start(c);
            return;
        }
        bool more = false;
        if (c->http2_ok && c->requests == 0 && !c->parent && lm_h2_is_preface(c->buf, c->len, &more)) {
            if (more) { /* a prefix of the preface: wait for the rest */
                lm__conn_read_start(c);
                return;
            }
            uv_timer_stop(&c->timer);
            if (lm_h2_start(c) != LM_OK) {
                lm__conn_close(c);
                return;
            }
            lm_h2_input(c);
            return;
        }
        lm_http_header_t headers[LM_MAX_REQ_HEADERS];
        lm_http1_request_t h;
        memset(&h, 0, sizeof(h));
        h.headers = headers;
        h.headers_cap = LM_MAX_REQ_HEADERS;
        lm_http1_limits_t lim = LM_HTTP1_DEFAULT_LIMITS;
        int rc = lm_http1_parse_request(c->buf, c->len, &lim, &h);
        if (rc == LM_AGAIN) {
            if (c->len >= lim.max_head) {
                lm__reject_head(c, 431, "request header too large");
                return;
            }
            uv_timer_start(&c->timer, lm__conn_timeout, LM_CLIENT_HEADER_TIMEOUT_MS, 0);
            lm__conn_read_start(c);
            return;
        }
        if (rc < 0) {
            lm__reject_head(c, h.error_status ? h.error_status : 400, h.error_reason);
            return;
        }
        lm__req_start(c, &h, (size_t)rc); /* body bytes wait in the buffer for the upstream */
    }
}

/* ------------------------------------------------------------------ */
/* request body: client -> upstream                                    */

/* Writes the pending head (first time on this connection) and the next body
 * piece available in the client buffer. */
/* request-size-limiting on a body without Content-Length: true when the
 * request was ended (413 if nothing went upstream yet, else a close). */
static bool lm__over_body_limit(lm_req_t *r, size_t more, unsigned head_in_write)
{
    if (!r->body_limit)
        return false;
    r->body_seen += more;
    if (r->body_seen <= r->body_limit)
        return false;
    if (head_in_write && !r->resp_head_sent) { /* the upstream has seen nothing */
        r->up_head_sent = false;
        lm__respond_error(r, 413, r->body_limit_msg ? r->body_limit_msg : "Request size limit exceeded");
    } else {
        lm__conn_close(r->c);
    }
    return true;
}

void lm__req_body_pump(lm_req_t *r)
{
    lm__req_ext_t *x = LM__EXT(r);
    lm_conn_t *c = r->c;
    lm_upconn_t *u = r->up;
    if (!u || !u->connected || u->writing || r->finished)
        return;
    uv_buf_t bufs[5];
    unsigned n = 0;
    if (x->upstream_head_pending) {
        bufs[n++] = uv_buf_init(r->up_head, (unsigned)r->up_head_len);
        x->upstream_head_pending = false;
        r->up_head_sent = true;
    }
    if (!r->req_body_done && c->len > 0) {
        if (r->req_body == LM_BODY_LENGTH) {
            size_t take = (size_t)LM_MIN((uint64_t)c->len, r->req_left);
            if (lm__over_body_limit(r, take, n))
                return;
            bufs[n++] = uv_buf_init(c->buf, (unsigned)take);
            x->req_inflight = take;
            r->req_left -= take;
            if (r->req_left == 0)
                r->req_body_done = true;
        } else { /* chunked: decode in place, re-frame */
            size_t dl = c->len, rest = 0;
            int rc = lm_chunked_decode(&r->req_chunked, c->buf, &dl, &rest);
            if (rc == LM_ERROR) {
                if (!r->req_body_started && n == 1 && !r->resp_head_sent) {
                    lm__respond_error(r, 400, NULL);
                } else {
                    lm__conn_close(c);
                }
                return;
            }
            c->len = dl + rest;
            if (lm__over_body_limit(r, dl, n))
                return;
            x->req_inflight = dl;
            if (dl) {
                int hl = snprintf(x->req_chunk_hdr, sizeof(x->req_chunk_hdr), "%zx\r\n", dl);
                bufs[n++] = uv_buf_init(x->req_chunk_hdr, (unsigned)hl);
                bufs[n++] = uv_buf_init(c->buf, (unsigned)dl);
                bufs[n++] = uv_buf_init("\r\n", 2);
            }
            if (rc == LM_OK) {
                r->req_body_done = true;
                bufs[n++] = uv_buf_init("0\r\n\r\n", 5);
            }
        }
        if (x->req_inflight)
            r->req_body_started = true;
    }
    if (n == 0)
        return;
    if (lm_upstream_write(u, bufs, n) != LM_OK) {
        lm_proxy_upstream_error(r, 502, "write failed", false);
        return;
    }
    lm_upstream_set_timer(u, (uint64_t)r->srt->svc->write_timeout);
    if (r->t_upstream_sent == 0)
        r->t_upstream_sent = uv_now(&r->w->loop);
}

void lm_proxy_upstream_ready(lm_req_t *r)
{
    LM__EXT(r)->upstream_head_pending = true;
    lm__req_body_pump(r);
}

void lm_proxy_upstream_write_done(lm_req_t *r)
{
    lm__req_ext_t *x = LM__EXT(r);
    lm_conn_t *c = r->c;
    if (x->tunnel) {
        lm__tunnel_written(r);
        return;
    }
    if (x->req_inflight) {
        memmove(c->buf, c->buf + x->req_inflight, c->len - x->req_inflight);
        c->len -= x->req_inflight;
        x->req_inflight = 0;
    }
    if (!r->req_body_done) {
        if (c->len)
            lm__req_body_pump(r);
        else if (!r->resp_head_sent) /* waiting for the client, whose body timeout runs */
            lm_upstream_set_timer(r->up, 0);
        lm__conn_read_start(c);
        if (!c->reading)
            return;
        uv_timer_start(&c->timer, lm__conn_timeout, LM_CLIENT_BODY_TIMEOUT_MS, 0);
        return;
    }
    uv_timer_stop(&c->timer);
    if (!r->resp_head_sent)
        lm_upstream_set_timer(r->up, (uint64_t)r->srt->svc->read_timeout);
    lm__conn_read_start(c); /* notice a client that goes away */
}

/* ------------------------------------------------------------------ */
/* response: upstream -> client                                        */

/* Builds the client response head into the arena (every slice of resp is
 * copied) and stashes it for the first write. */
static void lm__resp_head(lm_req_t *r, const lm_http1_response_t *resp)
{
    lm_conn_t *c = r->c;
    lm_server_t *srv = r->w->srv;
    lm__sb_t b = { r->arena, NULL, 0, 0 };
    b.cap = 256 + resp->num_headers * 64;
    b.p = lm_arena_alloc(r->arena, b.cap);
    lm_str_t cl = LM_STR_NULL;
    lm_ctx_resp_init(r, resp->num_headers);
    for (size_t i = 0; i < resp->num_headers; i++) {
        const lm_http_header_t *hd = &resp->headers[i];
        if (hd->flags & LM_HDR_F_HOP)
            continue;
        if (hd->id == LM_HDR_CONTENT_LENGTH) {
            cl = hd->value;
            continue;
        }
        if (hd->id == LM_HDR_TRANSFER_ENCODING || hd->id == LM_HDR_VIA) /* Via: combined below, ours last */
            continue;
        lm_ctx_resp_append(r, hd->name, hd->value);
    }
    if (LM__EXT(r)->pick.set_cookie) /* consistent hashing on a cookie the client did not have */
        lm_ctx_resp_append(r, LM_STR("Set-Cookie"), lm_str(LM__EXT(r)->pick.set_cookie));
    r->status = resp->status;
    if (r->filters)
        lm_ctx_run_header_filter(r); /* may change r->status (lm_ctx_resp_set_status) */
    LM__SB_LIT(&b, "HTTP/1.1 ");
    lm__sb_u64(&b, (uint64_t)r->status);
    LM__SB_LIT(&b, " ");
    if (resp->reason.len && r->status == resp->status)
        lm__sb_str(&b, resp->reason);
    else
        lm__sb_cstr(&b, lm__reason(r->status));
    LM__SB_LIT(&b, "\r\n");
    lm__sb_resp_hdrs(&b, r);
    r->resp_body = resp->body_kind;
    r->resp_left = resp->content_length;
    if (resp->body_kind == LM_BODY_LENGTH) {
        LM__SB_LIT(&b, "Content-Length: ");
        lm__sb_u64(&b, resp->content_length);
        LM__SB_LIT(&b, "\r\n");
    } else if (resp->body_kind == LM_BODY_NONE) {
        if (cl.len) { /* HEAD and 304 keep the representation's length */
            LM__SB_LIT(&b, "Content-Length: ");
            lm__sb_str(&b, cl);
            LM__SB_LIT(&b, "\r\n");
        }
    } else if (c->h2s) {
        /* HTTP/2: the stream's end ends the body */
    } else if (r->minor == 1) {
        LM__SB_LIT(&b, "Transfer-Encoding: chunked\r\n");
        r->resp_chunked_out = true;
    } else {
        c->want_close = true; /* HTTP/1.0 client: the close ends the body */
    }
    LM__SB_LIT(&b, "Via: ");
    lm__sb_via_list(&b, resp->headers, resp->num_headers);
    LM__SB_LIT(&b, "1.1 limen\r\n");
    if (srv->opts.latency_headers) {
        uint64_t sent = r->t_upstream_sent ? r->t_upstream_sent : r->t_upstream_head;
        LM__SB_LIT(&b, "X-Limen-Upstream-Latency: ");
        lm__sb_u64(&b, r->t_upstream_head - sent);
        LM__SB_LIT(&b, "\r\nX-Limen-Proxy-Latency: ");
        lm__sb_u64(&b, sent - r->t_start);
        LM__SB_LIT(&b, "\r\n");
    }
    bool keep = r->client_keepalive && !c->want_close && !r->w->draining;
    if (!keep) {
        c->want_close = true;
        LM__SB_LIT(&b, "Connection: close\r\n");
    } else if (r->minor == 0) {
        LM__SB_LIT(&b, "Connection: keep-alive\r\n");
    }
    LM__SB_LIT(&b, "\r\n");
    r->resp_head_sent = true;
    r->bytes_out += b.len;
    LM__EXT(r)->resp_head = b.p;
    LM__EXT(r)->resp_head_len = b.len;
}

/* Sends the stashed head and/or the next body piece in the upstream buffer. */
static void lm__resp_pump(lm_req_t *r)
{
    lm__req_ext_t *x = LM__EXT(r);
    lm_upconn_t *u = r->up;
    if (!u || x->resp_writing || r->finished)
        return;
    uv_buf_t bufs[5];
    unsigned n = 0;
    if (x->resp_head) {
        bufs[n++] = uv_buf_init(x->resp_head, (unsigned)x->resp_head_len);
        x->resp_head = NULL;
    }
    size_t piece = 0;
    bool framed = r->resp_chunked_out;
    switch (r->resp_body) {
    case LM_BODY_LENGTH:
        piece = (size_t)LM_MIN((uint64_t)u->len, r->resp_left);
        r->resp_left -= piece;
        if (piece)
            bufs[n++] = uv_buf_init(u->buf, (unsigned)piece);
        if (r->resp_left == 0)
            r->resp_done = true;
        break;
    case LM_BODY_CHUNKED: {
        size_t dl = u->len, rest = 0;
        if (r->c->h2s && !r->resp_chunked.keep) { /* trailers (grpc-status) go on to an HTTP/2 client */
            r->resp_chunked.keep_cap = 4096;
            r->resp_chunked.keep = lm_arena_alloc(r->arena, r->resp_chunked.keep_cap);
        }
        int rc = lm_chunked_decode(&r->resp_chunked, u->buf, &dl, &rest);
        if (rc == LM_ERROR) {
            lm_log_warn("invalid chunked body from upstream %s", u->pool->key);
            lm__conn_close(r->c);
            return;
        }
        u->len = dl + rest;
        piece = dl;
        if (dl && framed) {
            int hl = snprintf(x->resp_chunk_hdr, sizeof(x->resp_chunk_hdr), "%zx\r\n", dl);
            bufs[n++] = uv_buf_init(x->resp_chunk_hdr, (unsigned)hl);
            bufs[n++] = uv_buf_init(u->buf, (unsigned)dl);
            bufs[n++] = uv_buf_init("\r\n", 2);
        } else if (dl) {
            bufs[n++] = uv_buf_init(u->buf, (unsigned)dl);
        }
        if (rc == LM_OK) {
            r->resp_done = true;
            if (framed)
                bufs[n++] = uv_buf_init("0\r\n\r\n", 5);
            if (r->c->h2s && r->resp_chunked.keep_len)
                lm_h2_stream_trailers(r->c, r->resp_chunked.keep, r->resp_chunked.keep_len);
        }
        break;
    }
    case LM_BODY_UNTIL_CLOSE:
        piece = u->len;
        if (piece && framed) {
            int hl = snprintf(x->resp_chunk_hdr, sizeof(x->resp_chunk_hdr), "%zx\r\n", piece);
            bufs[n++] = uv_buf_init(x->resp_chunk_hdr, (unsigned)hl);
            bufs[n++] = uv_buf_init(u->buf, (unsigned)piece);
            bufs[n++] = uv_buf_init("\r\n", 2);
        } else if (piece) {
            bufs[n++] = uv_buf_init(u->buf, (unsigned)piece);
        }
        break;
    default:
        r->resp_done = true;
        break;
    }
    x->resp_inflight = piece;
    r->bytes_out += piece;
    if (n == 0) {
        /* nothing to send, e.g. a last chunk read on its own for a client that
         * is not sent chunked: no write completion will end the request */
        if (r->resp_done && r->writes_pending == 0)
            lm__req_finish(r);
        return;
    }
    x->resp_writing = true;
    /* until the client takes this piece we wait for it, not for the upstream
     * (read_timeout is re-armed when the write completes) */
    lm_upstream_set_timer(u, 0);
    lm__client_write(r, bufs, n, true);
}

void lm_proxy_upstream_data(lm_req_t *r)
{
    lm_upconn_t *u = r->up;
    if (r->resp_head_sent) {
        if (!LM__EXT(r)->resp_writing) /* read_timeout is between two reads */
            lm_upstream_set_timer(u, (uint64_t)r->srt->svc->read_timeout);
        lm__resp_pump(r);
        return;
    }
    for (;;) {
        lm_http_header_t headers[LM_MAX_REQ_HEADERS];
        lm_http1_response_t resp;
        memset(&resp, 0, sizeof(resp));
        resp.headers = headers;
        resp.headers_cap = LM_MAX_REQ_HEADERS;
        int rc = lm_http1_parse_response(u->buf, u->len, u->cap, r->head_method, &resp);
        if (rc == LM_AGAIN) {
            if (u->len >= u->cap)
                lm_proxy_upstream_error(r, 502, "upstream response head too large", false);
            return;
        }
        if (rc > 0 && resp.status == 101 && LM__EXT(r)->ws) {
            lm__tunnel_start(r, &resp, (size_t)rc);
            return;
        }
        if (rc < 0 || resp.status == 101) {
            lm_log_warn("invalid response from upstream %s: %s", u->pool->key,
                        resp.error_reason ? resp.error_reason : "unexpected 101");
            lm_proxy_upstream_error(r, 502, "invalid response", false);
            return;
        }
        size_t hl = (size_t)rc;
        if (resp.status >= 200) {
            r->t_upstream_head = uv_now(&r->w->loop);
            lm_balancer_report(r->srt->bal, &LM__EXT(r)->pick, LM_HR_STATUS, resp.status, r->t_upstream_head);
            r->resp_upstream_reusable = resp.keep_alive && resp.body_kind != LM_BODY_UNTIL_CLOSE;
            lm__resp_head(r, &resp); /* copies every slice it needs */
        }
        memmove(u->buf, u->buf + hl, u->len - hl);
        u->len -= hl;
        if (resp.status >= 200)
            break;
        if (u->len == 0) /* interim 1xx response skipped; wait for the final one */
            return;
    }
    lm__resp_pump(r);
}

void lm_proxy_upstream_eof(lm_req_t *r)
{
    lm_upconn_t *u = r->up;
    if (!r->resp_head_sent) {
        /* a kept-alive connection the peer closed before answering: try a new one */
        bool stale = u->requests > 0 && u->len == 0 && !r->req_body_started;
        lm_proxy_upstream_error(r, 502, "upstream closed the connection", stale || lm_method_idempotent(r->method));
        return;
    }
    if (r->resp_body == LM_BODY_UNTIL_CLOSE && !r->resp_done) {
        LM__EXT(r)->up_eof = true;
        r->resp_upstream_reusable = false;
        lm_upstream_read_stop(u);
        lm_upstream_set_timer(u, 0); /* nothing more to wait for from it */
        if (!LM__EXT(r)->resp_writing)
            lm__resp_end_at_close(r);
        return;
    }
    if (r->resp_done)
        return;
    /* the upstream died in the middle of a delimited body: the client must see a truncation */
    atomic_fetch_add_explicit(&lm_counters.upstream_errors, 1, memory_order_relaxed);
    lm_log_warn("upstream %s closed the connection in the middle of the response", u->pool->key);
    lm__conn_close(r->c);
}

/* The upstream closed a close-delimited body: end it for the client. */
static void lm__resp_end_at_close(lm_req_t *r)
{
    lm__req_ext_t *x = LM__EXT(r);
    r->resp_done = true;
    if (r->resp_chunked_out) {
        uv_buf_t b = uv_buf_init("0\r\n\r\n", 5);
        x->resp_writing = true;
        lm__client_write(r, &b, 1, true);
        return;
    }
    if (r->writes_pending == 0)
        lm__req_finish(r);
}

void lm_proxy_upstream_error(lm_req_t *r, int status, const char *why, bool retryable)
{
    lm__req_ext_t *x = LM__EXT(r);
    /* a kept-alive connection the peer had closed says nothing about its health */
    bool stale = r->up && r->up->requests > 0 && status != 504;
    bool sent = r->up && r->up->connected && !stale;
    if (r->up) {
        lm_upstream_abort(r->up);
        r->up = NULL;
    }
    if (x->tunnel) { /* idle too long, or the upstream failed: the tunnel ends (and is logged) */
        lm__tunnel_end(r);
        return;
    }
    if (r->resp_head_sent) {
        lm__conn_close(r->c);
        return;
    }
    /* passive health checks: Kong counts a failed try as a timeout (504) or a TCP failure */
    if (!stale)
        lm_balancer_report(r->srt->bal, &x->pick, status == 504 ? LM_HR_TIMEOUT : LM_HR_TCP, 0,
                           uv_now(&r->w->loop));
    int max_tries = r->srt->svc->retries;
    if (retryable && !r->req_body_started && r->tries < max_tries) {
        const lm_peer_t *failed = r->peer;
        r->tries++;
        r->peer = lm__pick_peer(r); /* another address when there is one */
        /* a request the upstream may have seen (timeout, closed before
         * answering) goes to another address only, never again to the same */
        if (r->peer && (!sent || !x->pick.repeat)) {
            if (failed && failed->state)
                atomic_fetch_add_explicit(&failed->state->retries, 1, memory_order_relaxed);
            lm_log_info("request %s to %s failed: %s; retry %d of %d on %s", lm__rid(r), failed ? failed->key : "?",
                        why, r->tries, max_tries, r->peer->key);
            lm__retarget_head(r);
            x->upstream_head_pending = true;
            lm_upstream_acquire(r, r->peer);
            return;
        }
        r->peer = failed;
    }
    lm_log_info("request %s to %s failed: %s", lm__rid(r), r->peer ? r->peer->key : "?", why);
    lm__respond_error(r, status, NULL);
}

/* ------------------------------------------------------------------ */
/* WebSocket tunnels                                                   */

/* The upstream accepted the upgrade: the 101 goes to the client, then bytes
 * flow both ways unparsed, each direction held back while the other side's
 * write is pending; the service's read_timeout is the idle timeout. */
static void lm__tunnel_start(lm_req_t *r, const lm_http1_response_t *resp, size_t head_len)
{
    lm__req_ext_t *x = LM__EXT(r);
    lm_upconn_t *u = r->up;
    lm_conn_t *c = r->c;
    r->t_upstream_head = uv_now(&r->w->loop);
    lm_balancer_report(r->srt->bal, &x->pick, LM_HR_STATUS, 101, r->t_upstream_head);
    lm__sb_t b = { r->arena, NULL, 0, 0 };
    b.cap = 256 + resp->num_headers * 64;
    b.p = lm_arena_alloc(r->arena, b.cap);
    LM__SB_LIT(&b, "HTTP/1.1 101 Switching Protocols\r\n");
    for (size_t i = 0; i < resp->num_headers; i++) {
        const lm_http_header_t *hd = &resp->headers[i];
        if (hd->flags & LM_HDR_F_HOP)
            continue;
        lm__sb_str(&b, hd->name);
        LM__SB_LIT(&b, ": ");
        lm__sb_str(&b, hd->value);
        LM__SB_LIT(&b, "\r\n");
    }
    LM__SB_LIT(&b, "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    memmove(u->buf, u->buf + head_len, u->len - head_len);
    u->len -= head_len;
    r->status = 101;
    r->resp_head_sent = true;
    r->resp_body = LM_BODY_UNTIL_CLOSE; /* upstream -> client: lm__resp_pump, unframed */
    r->resp_chunked_out = false;
    r->resp_upstream_reusable = false;
    r->bytes_out += b.len;
    x->tunnel = true;
    x->resp_head = b.p;
    x->resp_head_len = b.len;
    c->want_close = true; /* the connection ends with the tunnel */
    uv_timer_stop(&c->timer);
    lm__resp_pump(r);
    lm__conn_read_start(c);
    if (c->len)
        lm__tunnel_up(r); /* frames the client sent right after its handshake */
}

/* client -> upstream */
void lm__tunnel_up(lm_req_t *r)
{
    lm__req_ext_t *x = LM__EXT(r);
    lm_conn_t *c = r->c;
    lm_upconn_t *u = r->up;
    if (!u || r->finished || x->req_inflight || u->writing || c->len == 0)
        return;
    uv_buf_t b = uv_buf_init(c->buf, (unsigned)c->len);
    x->req_inflight = c->len;
    lm__conn_read_stop(c); /* until the upstream took it */
    lm_upstream_set_timer(u, (uint64_t)r->srt->svc->write_timeout);
    if (lm_upstream_write(u, &b, 1) != LM_OK)
        lm__tunnel_end(r);
}

static void lm__tunnel_written(lm_req_t *r)
{
    lm__req_ext_t *x = LM__EXT(r);
    lm_conn_t *c = r->c;
    memmove(c->buf, c->buf + x->req_inflight, c->len - x->req_inflight);
    c->len -= x->req_inflight;
    x->req_inflight = 0;
    if (r->up && !x->resp_writing) /* traffic either way keeps the tunnel alive */
        lm_upstream_set_timer(r->up, (uint64_t)r->srt->svc->read_timeout);
    lm__conn_read_start(c);
    if (c->len)
        lm__tunnel_up(r);
}

void lm__tunnel_end(lm_req_t *r)
{
    if (r->finished)
        return;
    if (r->up) {
        lm_upstream_abort(r->up);
        r->up = NULL;
    }
    r->resp_done = true;
    r->c->want_close = true;
    if (r->writes_pending == 0)
        lm__req_finish(r);
}

/* ------------------------------------------------------------------ */
/* request end                                                         */

static void lm__access_log(lm_req_t *r, uint64_t total_ms, int64_t up_ms)
{
    int fd = r->w->srv->access_log_fd;
    if (fd < 0)
        return;
    char path[512], line[1400];
    lm_json_escape(path, sizeof(path), r->path.ptr, r->path.len);
    int n = snprintf(line, sizeof(line),
                     "{\"time\":\"%s\",\"client_ip\":\"%s\",\"method\":\"%.*s\",\"path\":\"%s\",\"status\":%d,"
                     "\"service\":\"%s\",\"route\":\"%s\",\"latency_ms\":%llu,\"upstream_latency_ms\":%lld,"
                     "\"bytes_in\":%llu,\"bytes_out\":%llu,\"request_id\":\"%s\"}\n",
                     lm_worker_date(r->w), r->c->ip, (int)LM_MIN(r->method.len, 32), r->method.ptr, path, r->status,
                     r->srt ? r->srt->label : "", r->rrt ? r->rrt->label : "", (unsigned long long)total_ms,
                     (long long)up_ms, (unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out,
                     lm__rid(r));
    if (n > 0) {
        ssize_t wn = write(fd, line, (size_t)LM_MIN((size_t)n, sizeof(line) - 1));
        (void)wn;
    }
}

static void lm__req_finish(lm_req_t *r)
{
    lm_conn_t *c = r->c;
    lm_worker_t *w = r->w;
    uint64_t now = uv_now(&w->loop);
    uint64_t total = now - r->t_start;
    int64_t up_ms = r->t_upstream_head ? (int64_t)(r->t_upstream_head - (r->t_upstream_sent ? r->t_upstream_sent : r->t_start)) : -1;
    lm_metrics_block_t *mb = r->rrt ? lm_snapshot_route_metrics(r->rrt)
                                    : (r->ws ? r->ws->snap->no_route_metrics : NULL);
    if (mb)
        lm_metrics_record(mb, r->status, total, up_ms, r->bytes_in, r->bytes_out);
    lm__access_log(r, total, up_ms);
    if (r->num_ran)
        lm_ctx_run_log(r);
    lm__peer_release(r);

    if (r->up) {
        lm_upconn_t *u = r->up;
        r->up = NULL;
        bool reusable = r->resp_upstream_reusable && r->req_body_done && u->len == 0 && !LM__EXT(r)->resp_writing;
        lm_upstream_release(u, reusable);
    }
    if (!r->req_body_done)
        c->want_close = true;
    c->h2_complete = r->resp_done;
    r->finished = true;
    if (r->ws)
        lm_worker_snap_release(w, r->ws);
    c->req = NULL;
    lm_arena_reset(c->arena);
    if (c->want_close) {
        if (c->len > 0)
            lm__conn_linger(c);
        else
            lm__conn_close(c);
        return;
    }
    lm__conn_process(c);
}

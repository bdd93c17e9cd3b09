/*
 * ctl_http_test.c - the controller's HTTP server over real TCP: the server
 * runs its libuv loop on a thread, the tests talk to it with blocking
 * sockets and read the answers with the data plane's response parser.
 */
#include "lm_ctl_http.h"
#include "lm_http1.h"
#include "lm_log.h"
#include "lm_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- the server on its thread ----------------------------------------------------- */

typedef struct {
    uv_loop_t loop;
    uv_async_t stop;
    uv_thread_t thread;
    lm_ctl_http_t *h;
    int port;
    atomic_int requests;
} srv_t;

static int handler(const char *method, const char *path, const char *query, char **body, size_t *len,
                   const char **ctype, void *data)
{
    srv_t *s = data;
    atomic_fetch_add(&s->requests, 1);
    char tmp[512];
    int st = 200;
    if (strcmp(path, "/healthz") == 0) {
        snprintf(tmp, sizeof(tmp), "ok\n");
    } else if (strcmp(path, "/echo") == 0) {
        snprintf(tmp, sizeof(tmp), "%s %s ?%s", method, path, query);
        *ctype = "application/x-echo";
    } else if (strcmp(path, "/big") == 0) {
        size_t n = 3 << 20; /* 3 MiB: more than a socket buffer */
        *body = malloc(n);
        memset(*body, 'b', n);
        *len = n;
        return 200;
    } else if (strcmp(path, "/bad-status") == 0) {
        snprintf(tmp, sizeof(tmp), "nope");
        st = 1000;
    } else if (strcmp(path, "/nobody") == 0) {
        *body = NULL;
        *len = 0;
        return 204;
    } else {
        snprintf(tmp, sizeof(tmp), "not found\n");
        st = 404;
    }
    *len = strlen(tmp);
    *body = malloc(*len + 1);
    memcpy(*body, tmp, *len + 1);
    return st;
}

static void on_stop(uv_async_t *a)
{
    srv_t *s = a->data;
    lm_ctl_http_stop(s->h);
    uv_close((uv_handle_t *)a, NULL);
}

static void srv_run(void *arg)
{
    srv_t *s = arg;
    uv_run(&s->loop, UV_RUN_DEFAULT);
}

static srv_t *srv_start(const char *addr, unsigned idle_ms)
{
    srv_t *s = calloc(1, sizeof(*s));
    uv_loop_init(&s->loop);
    char err[256];
    s->h = lm_ctl_http_start(&s->loop, addr, handler, s, err, sizeof(err));
    if (!s->h) {
        fprintf(stderr, "start %s: %s\n", addr, err);
        uv_loop_close(&s->loop);
        free(s);
        return NULL;
    }
    if (idle_ms)
        lm_ctl_http_set_idle_timeout(s->h, idle_ms);
    s->port = lm_ctl_http_port(s->h);
    uv_async_init(&s->loop, &s->stop, on_stop);
    s->stop.data = s;
    uv_thread_create(&s->thread, srv_run, s);
    return s;
}

/* Stops the server; true when its loop ended with every handle closed. */
static bool srv_stop(srv_t *s)
{
    uv_async_send(&s->stop);
    uv_thread_join(&s->thread);
    bool clean = uv_loop_close(&s->loop) == 0;
    free(s);
    return clean;
}

/* ---- a blocking client ---------------------------------------------------------- */

static int cl_connect_to(int family, int port)
{
    int fd = socket(family, SOCK_STREAM, 0);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t sl;
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        a->sin6_addr = in6addr_loopback;
        sl = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sl = sizeof(*a);
    }
    if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sl) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static int cl_connect(int port)
{
    return cl_connect_to(AF_INET, port);
}

static bool cl_send(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        data += n;
        len -= (size_t)n;
    }
    return true;
}

static bool cl_sends(int fd, const char *s)
{
    return cl_send(fd, s, strlen(s));
}

typedef struct {
    int status;
    char head[4096];
    char *body;
    size_t body_len;
    bool keep_alive;
} resp_t;

static void resp_free(resp_t *r)
{
    free(r->body);
    r->body = NULL;
}

/* Reads one response (head_request: no body follows). Returns false on
 * EOF, error or timeout before a whole response came. Bytes after the
 * response stay in the socket: reads stop at its end. */
static bool cl_read(int fd, resp_t *r, bool head_request)
{
    memset(r, 0, sizeof(*r));
    static char buf[1 << 16];
    size_t len = 0;
    lm_http_header_t hs[32];
    lm_http1_response_t resp;
    int hlen = 0;
    while (1) {
        struct pollfd pfd = { fd, POLLIN, 0 };
        if (poll(&pfd, 1, 3000) != 1)
            return false;
        /* peek, then take exactly the head */
        ssize_t n = recv(fd, buf + len, sizeof(buf) - len, MSG_PEEK);
        if (n <= 0)
            return false;
        memset(&resp, 0, sizeof(resp));
        resp.headers = hs;
        resp.headers_cap = 32;
        hlen = lm_http1_parse_response(buf, len + (size_t)n, sizeof(buf), head_request, &resp);
        if (hlen == LM_ERROR)
            return false;
        size_t take = hlen > 0 ? (size_t)hlen - len : (size_t)n;
        if (recv(fd, buf + len, take, 0) != (ssize_t)take)
            return false;
        len += take;
        if (hlen > 0)
            break;
    }
    r->status = resp.status;
    r->keep_alive = resp.keep_alive;
    snprintf(r->head, sizeof(r->head), "%.*s", hlen, buf);
    size_t want = resp.body_kind == LM_BODY_LENGTH ? (size_t)resp.content_length : 0;
    r->body = malloc(want + 1);
    while (r->body_len < want) {
        struct pollfd pfd = { fd, POLLIN, 0 };
        if (poll(&pfd, 1, 3000) != 1)
            return false;
        ssize_t n = recv(fd, r->body + r->body_len, want - r->body_len, 0);
        if (n <= 0)
            return false;
        r->body_len += (size_t)n;
    }
    r->body[r->body_len] = '\0';
    return true;
}

/* true when the server closes the connection within ms (EOF or reset) */
static bool cl_closed(int fd, int ms)
{
    char b[256];
    struct pollfd pfd = { fd, POLLIN, 0 };
    while (poll(&pfd, 1, ms) == 1) {
        ssize_t n = recv(fd, b, sizeof(b), 0);
        if (n <= 0)
            return true;
    }
    return false;
}

static bool has_header(const resp_t *r, const char *line)
{
    return strcasestr(r->head, line) != NULL;
}

/* ---- tests ------------------------------------------------------------------------ */

static srv_t *S;

LM_TEST(get_200_and_404)
{
    int fd = cl_connect(S->port);
    LM_CHECK(fd >= 0);
    resp_t r;
    LM_CHECK(cl_sends(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    LM_CHECK(cl_read(fd, &r, false));
    LM_CHECK_EQ_INT(r.status, 200);
    LM_CHECK_STR(r.body, "ok\n");
    LM_CHECK(has_header(&r, "Content-Type: text/plain; charset=utf-8\r\n"));
    LM_CHECK(has_header(&r, "Content-Length: 3\r\n"));
    LM_CHECK(r.keep_alive);
    resp_free(&r);
    LM_CHECK(cl_sends(fd, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"));
    LM_CHECK(cl_read(fd, &r, false));
    LM_CHECK_EQ_INT(r.status, 404);
    LM_CHECK_STR(r.body, "not found\n");
    resp_free(&r);
    LM_CHECK(cl_sends(fd, "GET /echo?a=1&b=%20 HTTP/1.1\r\nHost: x\r\n\r\n"));
    LM_CHECK(cl_read(fd, &r, false));
    LM_CHECK_STR(r.body, "GET /echo ?a=1&b=%20");
    LM_CHECK(has_header(&r, "Content-Type: application/x-echo\r\n"));
    resp_free(&r);
    LM_CHECK(cl_sends(fd, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"));
    LM_CHECK(cl_read(fd, &r, false));
    LM_CHECK_STR(r.body, "GET /echo ?");
    resp_free(&r);
    /* absolute-form: the path only */
    LM_CHECK(cl_sends(fd, "GET http://x/echo?q HTTP/1.1\r\nHost: x\r\n\r\n"));
    LM_CHECK(cl_read(fd, &r, false));
    LM_CHECK_STR(r.body, "GET /echo ?q");
    resp_free(&r);
    /* a status out of range is a 500; no body status */
    LM_CHECK(cl_sends(fd, "GET /bad-status HTTP/1.1\r\nHost: x\r\n\r\n"));
    LM_CHECK(cl_read(fd, &r, false));
    LM_CHECK_EQ_INT(r.status, 500);
    resp_free(&r);
    LM_CHECK(cl_sends(fd, "GET /nobody HTTP/1.1\r\nHost: x\r\n\r\n"));
    LM_CHECK(cl_read(fd, &r, false));
    LM_CHECK_EQ_INT(r.status, 204);
    LM_CHECK(!has_header(&r, "Content-Length"));
    resp_free(&r);
    close(fd);
}

LM_TEST(head_has_length_no_body)
{
    int fd = cl_connect(S->port);
    resp_t r;
    LM_CHECK(cl_sends(fd, "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    LM_CHECK(cl_read(fd, &r, true));
    LM_CHECK_EQ_INT(r.status, 200);
    LM_CHECK(has_header(&r, "Content-Length: 3\r\n"));
    LM_CHECK_EQ_INT(r.body_len, 0);
    resp_free(&r);
    /* had a body been sent, this would read "ok\n" as a status line */
    LM_CHECK(cl_sends(fd, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"));
    LM_CHECK(cl_read(fd, &r, false));
    LM_CHECK_EQ_INT(r.status, 200);
    LM_CHECK_STR(r.body, "GET /echo ?");
    resp_free(&r);
    close(fd);
}

LM_TEST(keep_alive_and_pipelining)
{
    int fd = cl_connect(S->port);
    resp_t r;
    for (int i = 0; i < 50; i++) {
        LM_CHECK(cl_sends(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
        LM_CHECK(cl_read(fd, &r, false));
        LM_CHECK_EQ_INT(r.status, 200);
        resp_free(&r);
    }
    /* three requests in one segment, answered in order; a tiny body is read and ignored */
    LM_CHECK(cl_sends(fd, "GET /echo?1 HTTP/1.1\r\nHost: x\r\n\r\n"
                          "POST /echo?2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                          "GET /echo?3 HTTP/1.1\r\nHost: x\r\n\r\n"));
    const char *want[] = { "GET /echo ?1", "POST /echo ?2", "GET /echo ?3" };
    for (int i = 0; i < 3; i++) {
        LM_CHECK(cl_read(fd, &r, false));
        LM_CHECK_STR(r.body, want[i]);
        resp_free(&r);
    }
    /* a request split across segments */
    LM_CHECK(cl_sends(fd, "GET /echo?split HT"));
    usleep(50000);
    LM_CHECK(cl_sends(fd, "TP/1.1\r\nHost: x\r\n"));
    usleep(50000);
    LM_CHECK(cl_sends(fd, "\r\n"));
    LM_CHECK(cl_read(fd, &r, false));
    LM_CHECK_STR(r.body, "GET /echo ?split");
    resp_free(&r);
    /* Connection: close is honoured */
    LM_CHECK(cl_sends(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    LM_CHECK(cl_read(fd, &r, false));
    LM_CHECK(has_header(&r, "Connection: close\r\n"));
    LM_CHECK(!r.keep_alive);
    resp_free(&r);
    LM_CHECK(cl_closed(fd, 3000));
    close(fd);
}

LM_TEST(http10)
{
    int fd = cl_connect(S->port);
    resp_t r;
    LM_CHECK(cl_sends(fd, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    LM_CHECK(cl_read(fd, &r, false));
    LM_CHECK(has_header(&r, "Connection: keep-alive\r\n"));
    resp_free(&r);
    LM_CHECK(cl_sends(fd, "GET /healthz HTTP/1.0\r\n\r\n"));
    LM_CHECK(cl_read(fd, &r, false));
    LM_CHECK_EQ_INT(r.status, 200);
    LM_CHECK(has_header(&r, "Connection: close\r\n"));
    resp_free(&r);
    LM_CHECK(cl_closed(fd, 3000));
    close(fd);
}

LM_TEST(malformed_is_400_and_closes)
{
    const char *bad[] = {
        "GET /healthz HTTP/1.1\r\n\r\n",                      /* no Host */
        "GET /healthz HTTP/1.1\nHost: x\n\n",                 /* bare LF */
        "GET  /healthz HTTP/1.1\r\nHost: x\r\n\r\n",          /* two spaces */
        "GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
        "\x01\x02\x03 garbage\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    };
    for (size_t i = 0; i < LM_ARRAY_SIZE(bad); i++) {
        int fd = cl_connect(S->port);
        resp_t r;
        LM_CHECK(cl_sends(fd, bad[i]));
        if (!cl_read(fd, &r, false)) {
            LM_FAILF("no answer to bad request %zu", i);
            close(fd);
            continue;
        }
        if (r.status != 400)
            LM_FAILF("bad request %zu: status %d", i, r.status);
        LM_CHECK(has_header(&r, "Connection: close\r\n"));
        resp_free(&r);
        LM_CHECK(cl_closed(fd, 3000));
        close(fd);
    }
    /* HTTP/2.0 on the request line: 505 */
    int fd = cl_connect(S->port);
    resp_t r;
    LM_CHECK(cl_sends(fd, "GET / HTTP/2.0\r\nHost: x\r\n\r\n"));
    LM_CHECK(cl_read(fd, &r, false));
    LM_CHECK_EQ_INT(r.status, 505);
    resp_free(&r);
    close(fd);
}

LM_TEST(limits_431_413)
{
    /* 20 KiB of headers: 431, and the client gets it although it sent more than was read */
    char *big = malloc(32 << 10);
    size_t n = (size_t)sprintf(big, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; n < (20u << 10); i++)
        n += (size_t)sprintf(big + n, "X-Filler-%d: %0100d\r\n", i, 0);
    n += (size_t)sprintf(big + n, "\r\n");
    int fd = cl_connect(S->port);
    resp_t r;
    LM_CHECK(cl_send(fd, big, n));
    LM_CHECK(cl_read(fd, &r, false));
    LM_CHECK_EQ_INT(r.status, 431);
    resp_free(&r);
    LM_CHECK(cl_closed(fd, 3000));
    close(fd);
    /* 15 KiB is fine */
    n = (size_t)sprintf(big, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; n < (15u << 10) - 1100; i++)
        n += (size_t)sprintf(big + n, "X-F-%d: %01000d\r\n", i, 0);
    n += (size_t)sprintf(big + n, "\r\n");
    fd = cl_connect(S->port);
    LM_CHECK(cl_send(fd, big, n));
    LM_CHECK(cl_read(fd, &r, false));
    LM_CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    close(fd);
    /* too many header fields */
    n = (size_t)sprintf(big, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 100; i++)
        n += (size_t)sprintf(big + n, "X-%d: 1\r\n", i);
    n += (size_t)sprintf(big + n, "\r\n");
    fd = cl_connect(S->port);
    LM_CHECK(cl_send(fd, big, n));
    LM_CHECK(cl_read(fd, &r, false));
    LM_CHECK_EQ_INT(r.status, 431);
    resp_free(&r);
    close(fd);
    free(big);
    /* bodies: over 1 KiB or chunked -> 413 */
    const char *bodies[] = {
        "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
        "POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    };
    for (size_t i = 0; i < LM_ARRAY_SIZE(bodies); i++) {
        fd = cl_connect(S->port);
        LM_CHECK(cl_sends(fd, bodies[i]));
        LM_CHECK(cl_read(fd, &r, false));
        LM_CHECK_EQ_INT(r.status, 413);
        resp_free(&r);
        LM_CHECK(cl_closed(fd, 3000));
        close(fd);
    }
}

LM_TEST(large_response_and_slow_reader)
{
    int fd = cl_connect(S->port);
    resp_t r;
    /* the response is bigger than the socket buffers: pipelined requests
     * wait for it */
    LM_CHECK(cl_sends(fd, "GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    usleep(100000);
    LM_CHECK(cl_read(fd, &r, false));
    LM_CHECK_EQ_INT(r.status, 200);
    LM_CHECK_EQ_INT(r.body_len, 3 << 20);
    resp_free(&r);
    LM_CHECK(cl_read(fd, &r, false));
    LM_CHECK_STR(r.body, "ok\n");
    resp_free(&r);
    close(fd);
    /* a client that goes away in the middle of a big response */
    fd = cl_connect(S->port);
    LM_CHECK(cl_sends(fd, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"));
    usleep(50000);
    close(fd);
}

LM_TEST(half_close_after_request)
{
    int fd = cl_connect(S->port);
    resp_t r;
    LM_CHECK(cl_sends(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    shutdown(fd, SHUT_WR);
    LM_CHECK(cl_read(fd, &r, false));
    LM_CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    LM_CHECK(cl_closed(fd, 3000));
    close(fd);
    /* an incomplete request then EOF: closed without an answer */
    fd = cl_connect(S->port);
    LM_CHECK(cl_sends(fd, "GET /healthz HTTP/1.1\r\nHo"));
    shutdown(fd, SHUT_WR);
    LM_CHECK(cl_closed(fd, 3000));
    close(fd);
}

LM_TEST(idle_timeout)
{
    srv_t *s = srv_start("127.0.0.1:0", 300);
    LM_CHECK(s != NULL);
    if (!s)
        return;
    int fd = cl_connect(s->port);
    resp_t r;
    LM_CHECK(cl_sends(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    LM_CHECK(cl_read(fd, &r, false));
    resp_free(&r);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    LM_CHECK(cl_closed(fd, 3000));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    LM_CHECK(secs > 0.2 && secs < 2.0);
    close(fd);
    /* a slow head (one byte, then nothing) is cut off too */
    fd = cl_connect(s->port);
    LM_CHECK(cl_sends(fd, "G"));
    LM_CHECK(cl_closed(fd, 3000));
    close(fd);
    LM_CHECK(srv_stop(s));
}

LM_TEST(many_connections_and_churn)
{
    int before = atomic_load(&S->requests);
    /* a scraper: a new connection per request, many times */
    for (int i = 0; i < 500; i++) {
        int fd = cl_connect(S->port);
        resp_t r;
        if (!cl_sends(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") || !cl_read(fd, &r, false) ||
            r.status != 200) {
            LM_FAILF("request %d failed", i);
            close(fd);
            break;
        }
        resp_free(&r);
        close(fd);
    }
    LM_CHECK(atomic_load(&S->requests) - before >= 500);
    /* more connections than the server keeps: the extra ones are closed, the others work */
    int fds[300];
    for (int i = 0; i < 300; i++)
        fds[i] = cl_connect(S->port);
    usleep(200000);
    int closed = 0;
    for (int i = 0; i < 300; i++) {
        struct pollfd pfd = { fds[i], POLLIN, 0 };
        if (poll(&pfd, 1, 0) == 1)
            closed++;
    }
    LM_CHECK(closed >= 300 - 256 - 1 && closed <= 300 - 256 + 8);
    for (int i = 0; i < 300; i++)
        close(fds[i]);
    usleep(100000);
    int fd = cl_connect(S->port);
    resp_t r;
    LM_CHECK(cl_sends(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    LM_CHECK(cl_read(fd, &r, false));
    LM_CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    close(fd);
}

LM_TEST(stop_with_open_connections)
{
    srv_t *s = srv_start("127.0.0.1:0", 0);
    LM_CHECK(s != NULL);
    if (!s)
        return;
    int idle = cl_connect(s->port), partial = cl_connect(s->port), busy = cl_connect(s->port);
    resp_t r;
    LM_CHECK(cl_sends(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    LM_CHECK(cl_read(idle, &r, false));
    resp_free(&r);
    LM_CHECK(cl_sends(partial, "GET /healthz HTTP/1.1\r\nHost"));
    LM_CHECK(cl_sends(busy, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")); /* not read: the write waits */
    usleep(100000);
    LM_CHECK(srv_stop(s));
    LM_CHECK(cl_closed(idle, 3000));
    LM_CHECK(cl_closed(partial, 3000));
    close(idle);
    close(partial);
    close(busy);
}

LM_TEST(listen_addresses)
{
    char err[256];
    uv_loop_t loop;
    uv_loop_init(&loop);
    const char *bad[] = { "nonsense", "127.0.0.1", "127.0.0.1:", "127.0.0.1:99999", ":x", "[::1:80" };
    for (size_t i = 0; i < LM_ARRAY_SIZE(bad); i++) {
        err[0] = '\0';
        lm_ctl_http_t *h = lm_ctl_http_start(&loop, bad[i], handler, NULL, err, sizeof(err));
        if (h) {
            LM_FAILF("'%s' accepted", bad[i]);
            lm_ctl_http_stop(h);
        }
        LM_CHECK(err[0] != '\0');
    }
    /* the port in use */
    lm_ctl_http_t *a = lm_ctl_http_start(&loop, "127.0.0.1:0", handler, NULL, err, sizeof(err));
    LM_CHECK(a != NULL);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", lm_ctl_http_port(a));
    lm_ctl_http_t *b = lm_ctl_http_start(&loop, addr, handler, NULL, err, sizeof(err));
    LM_CHECK(b == NULL);
    LM_CHECK(strstr(err, "in use") != NULL);
    lm_ctl_http_stop(a);
    lm_ctl_http_stop(b); /* NULL is fine */
    uv_run(&loop, UV_RUN_DEFAULT);
    LM_CHECK_EQ_INT(uv_loop_close(&loop), 0);

    /* all addresses, and IPv6 loopback when there is IPv6 */
    srv_t *s = srv_start(":0", 0);
    LM_CHECK(s != NULL);
    if (s) {
        int fd = cl_connect(s->port);
        LM_CHECK(fd >= 0);
        resp_t r;
        LM_CHECK(cl_sends(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
        LM_CHECK(cl_read(fd, &r, false));
        LM_CHECK_EQ_INT(r.status, 200);
        resp_free(&r);
        close(fd);
        LM_CHECK(srv_stop(s));
    }
    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    if (probe >= 0) {
        close(probe);
        s = srv_start("[::1]:0", 0);
        if (s) { /* a host with IPv6 but no ::1 is possible: only check when it binds */
            int fd = cl_connect_to(AF_INET6, s->port);
            LM_CHECK(fd >= 0);
            resp_t r;
            LM_CHECK(cl_sends(fd, "GET /healthz HTTP/1.1\r\nHost: [::1]\r\n\r\n"));
            LM_CHECK(cl_read(fd, &r, false));
            LM_CHECK_EQ_INT(r.status, 200);
            resp_free(&r);
            close(fd);
            LM_CHECK(srv_stop(s));
        }
    }
}

int main(void)
{
    const char *lvl = getenv("LIMEN_LOG_LEVEL");
    lm_log_set_level(lvl && lm_log_parse_level(lvl) >= 0 ? (lm_log_level_t)lm_log_parse_level(lvl) : LM_LOG_WARN);
    S = srv_start("127.0.0.1:0", 0);
    if (!S) {
        printf("ctl_http: 0 passed, 1 failed\n");
        return 1;
    }
    LM_RUN(get_200_and_404);
    LM_RUN(head_has_length_no_body);
    LM_RUN(keep_alive_and_pipelining);
    LM_RUN(http10);
    LM_RUN(malformed_is_400_and_closes);
    LM_RUN(limits_431_413);
    LM_RUN(large_response_and_slow_reader);
    LM_RUN(half_close_after_request);
    LM_RUN(idle_timeout);
    LM_RUN(many_connections_and_churn);
    LM_RUN(stop_with_open_connections);
    LM_RUN(listen_addresses);
    bool clean = srv_stop(S);
    if (!clean) {
        fprintf(stderr, "FAIL: the server's loop had handles left after stop\n");
        lm__t_failed++;
    }
    return lm_test_summary("ctl_http");
}

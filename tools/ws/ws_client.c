/*
 * ws_client - a WebSocket client on libwebsockets, for Limen's tests.
 *   ws_client --url ws[s]://HOST:PORT/PATH [--header "Name: value"]... [--ca FILE | --insecure]
 *             [--host NAME] [--count N] [--size BYTES] [--text] [--idle MS] [--timeout MS]
 * Sends N messages of SIZE random bytes one at a time, checks each echo byte for
 * byte, then stays idle --idle MS. One line per event on stdout: "handshake STATUS"
 * (101, the refusal's status, or 0 when no HTTP response came), "echoed N",
 * "closed CODE" (the peer's close frame), "closed-by-peer" (closed while idle),
 * "mismatch ...", "timeout"; details on stderr.
 * Exit: 0 every echo matched (also when the peer closes during --idle),
 * 1 usage, 2 handshake refused, 3 mismatch, 4 timeout, 5 connection failed or
 * closed before the exchange ended.
 */
#include <libwebsockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *headers[16];
static int num_headers, count = 1, text, done, result = 4, echoed;
static size_t size = 16;
static unsigned char *msg, *got, *wire; /* wire: what lws_write masks in place */
static size_t got_len;
static long idle_ms, timeout_ms = 20000;
static long idle_start;
static int idling, sent;
static struct lws_context *ctx;
static lws_sorted_usec_list_t tick;

static long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000;
}

/* lws_service() blocks until its next scheduled event: this tick bounds that
 * wait so that main() sees the deadlines and the end promptly */
static void on_tick(lws_sorted_usec_list_t *s) { lws_sul_schedule(ctx, 0, s, on_tick, 10 * 1000); }

static void exchanged(void)
{
    printf("echoed %d\n", echoed);
    fflush(stdout);
    result = 0;
    if (idle_ms > 0) {
        idling = 1;
        idle_start = now_ms();
    } else {
        done = 1;
    }
}

static void fill(void)
{
    for (size_t i = 0; i < size; i++)
        msg[LWS_PRE + i] = text ? (unsigned char)('a' + rand() % 26) : (unsigned char)rand();
}

static int cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    (void)user;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        unsigned char **p = in, *end = *p + len;
        for (int i = 0; i < num_headers; i++) {
            char name[128];
            const char *colon = strchr(headers[i], ':');
            if (!colon || (size_t)(colon - headers[i]) + 2 > sizeof(name))
                continue;
            snprintf(name, sizeof(name), "%.*s:", (int)(colon - headers[i]), headers[i]);
            const char *v = colon + 1;
            while (*v == ' ')
                v++;
            if (lws_add_http_header_by_name(wsi, (unsigned char *)name, (unsigned char *)v, (int)strlen(v), p, end))
                return -1;
        }
        break;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        printf("handshake 101\n");
        fflush(stdout);
        if (count <= 0) {
            exchanged();
            break;
        }
        fill();
        lws_callback_on_writable(wsi);
        break;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        unsigned int st = wsi ? lws_http_client_http_response(wsi) : 0;
        printf("handshake %u\n", st);
        fprintf(stderr, "ws_client: %s\n", in ? (const char *)in : "connection error");
        result = st ? 2 : 5;
        if (in && strstr((const char *)in, "not 101") && !st)
            result = 2;
        done = 1;
        break;
    }
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (sent > echoed || echoed >= count)
            break;
        memcpy(wire + LWS_PRE, msg + LWS_PRE, size);
        if (lws_write(wsi, wire + LWS_PRE, size, text ? LWS_WRITE_TEXT : LWS_WRITE_BINARY) < (int)size) {
            result = 5;
            done = 1;
            return -1;
        }
        sent++;
        got_len = 0;
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (got_len + len > size) {
            printf("mismatch: longer than sent\n");
            result = 3;
            done = 1;
            return -1;
        }
        memcpy(got + got_len, in, len);
        got_len += len;
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            if (got_len != size || memcmp(got, msg + LWS_PRE, size) != 0) {
                printf("mismatch on message %d\n", echoed + 1);
                result = 3;
                done = 1;
                return -1;
            }
            echoed++;
            if (echoed == count) {
                exchanged();
            } else {
                fill();
                lws_callback_on_writable(wsi);
            }
        }
        break;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: {
        int code = len >= 2 ? ((unsigned char *)in)[0] << 8 | ((unsigned char *)in)[1] : 1005;
        printf("closed %d\n", code);
        fflush(stdout);
        if (echoed < count)
            result = 5;
        break;
    }
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (done)
            break;
        if (idling)
            printf("closed-by-peer\n");
        else if (echoed < count) {
            printf("closed early after %d\n", echoed);
            result = 5;
        }
        done = 1;
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    { "client", cb, 0, 1 << 16, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 },
};

int main(int argc, char **argv)
{
    const char *url = NULL, *ca = NULL, *host = NULL;
    int insecure = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--url") && v) url = v, i++;
        else if (!strcmp(a, "--header") && v && num_headers < 16) headers[num_headers++] = v, i++;
        else if (!strcmp(a, "--ca") && v) ca = v, i++;
        else if (!strcmp(a, "--insecure")) insecure = 1;
        else if ((!strcmp(a, "--host") || !strcmp(a, "--sni")) && v) host = v, i++;
        else if (!strcmp(a, "--count") && v) count = atoi(v), i++;
        else if (!strcmp(a, "--size") && v) size = (size_t)atol(v), i++;
        else if (!strcmp(a, "--text")) text = 1;
        else if (!strcmp(a, "--idle") && v) idle_ms = atol(v), i++;
        else if (!strcmp(a, "--timeout") && v) timeout_ms = atol(v), i++;
        else {
            fprintf(stderr, "ws_client: unknown argument %s\n", a);
            return 1;
        }
    }
    if (!url) {
        fprintf(stderr, "ws_client: --url is required\n");
        return 1;
    }
    char ubuf[1024];
    snprintf(ubuf, sizeof(ubuf), "%s", url);
    const char *proto, *address, *path;
    int port;
    if (lws_parse_uri(ubuf, &proto, &address, &port, &path)) {
        fprintf(stderr, "ws_client: bad url\n");
        return 1;
    }
    char fullpath[1024];
    snprintf(fullpath, sizeof(fullpath), "/%s", path);
    srand((unsigned)time(NULL));
    msg = malloc(LWS_PRE + size);
    wire = malloc(LWS_PRE + size);
    got = malloc(size + 1);
    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.client_ssl_ca_filepath = ca;
    signal(SIGPIPE, SIG_IGN);
    ctx = lws_create_context(&info);
    if (!ctx)
        return 1;
    on_tick(&tick);
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof(ci));
    ci.context = ctx;
    ci.address = address;
    ci.port = port;
    ci.path = fullpath;
    ci.host = host ? host : address;
    ci.origin = ci.host;
    ci.protocol = NULL;
    if (!strcmp(proto, "wss")) {
        ci.ssl_connection = LCCSCF_USE_SSL;
        if (insecure)
            ci.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                                 LCCSCF_ALLOW_INSECURE;
    }
    if (!lws_client_connect_via_info(&ci)) {
        printf("handshake 0\n");
        fprintf(stderr, "ws_client: connect failed\n");
        lws_context_destroy(ctx);
        return 5;
    }
    long deadline = now_ms() + timeout_ms;
    while (!done && lws_service(ctx, 50) >= 0) {
        if (idling && now_ms() - idle_start >= idle_ms) { /* stayed idle as long as asked */
            idling = 0;
            done = 1;
            break;
        }
        if (now_ms() > deadline) {
            printf("timeout\n");
            result = 4;
            done = 1;
            break;
        }
    }
    fflush(stdout);
    lws_context_destroy(ctx);
    free(msg);
    free(wire);
    free(got);
    return result;
}

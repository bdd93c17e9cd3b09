/*
 * ws_server - a WebSocket echo server on libwebsockets, for Limen's tests.
 *   ws_server --port N [--tls CERT KEY] [--show-header NAME] [--close-after N]
 * Prints "listening PORT" when ready, "open PATH VALUE" per connection (VALUE:
 * the request header named by --show-header, "-" when absent), echoes every
 * message unchanged (text or binary, reassembled), closes with 1000 after
 * --close-after messages. Exits 0 on SIGTERM/SIGINT.
 */
#include <libwebsockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    unsigned char *buf; /* LWS_PRE bytes, then the message */
    size_t len, cap;
    int binary, ready, count;
} pss_t;

static const char *show_header = "X-Forwarded-For";
static int close_after = 0;
static volatile sig_atomic_t stop;

static void on_signal(int s) { (void)s; stop = 1; }

static void header_value(struct lws *wsi, char *out, size_t cap)
{
    snprintf(out, cap, "-");
    if (strcasecmp(show_header, "X-Forwarded-For") == 0) {
        if (lws_hdr_copy(wsi, out, (int)cap, WSI_TOKEN_X_FORWARDED_FOR) <= 0)
            snprintf(out, cap, "-");
        return;
    }
    if (strcasecmp(show_header, "Host") == 0) {
        if (lws_hdr_copy(wsi, out, (int)cap, WSI_TOKEN_HOST) <= 0)
            snprintf(out, cap, "-");
        return;
    }
    char name[128];
    snprintf(name, sizeof(name), "%s:", show_header);
    for (char *p = name; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    if (lws_hdr_custom_copy(wsi, out, (int)cap, name, (int)strlen(name)) <= 0)
        snprintf(out, cap, "-");
}

static int cb_echo(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    pss_t *p = user;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED: {
        char path[512] = "-", val[512];
        lws_hdr_copy(wsi, path, sizeof(path), WSI_TOKEN_GET_URI);
        header_value(wsi, val, sizeof(val));
        printf("open %s %s\n", path, val);
        fflush(stdout);
        memset(p, 0, sizeof(*p));
        break;
    }
    case LWS_CALLBACK_RECEIVE:
        if (p->ready)
            break; /* one message at a time: the test clients wait for each echo */
        if (p->len + len + LWS_PRE > p->cap) {
            size_t nc = (p->len + len + LWS_PRE) * 2;
            unsigned char *nb = realloc(p->buf, nc);
            if (!nb)
                return -1;
            p->buf = nb;
            p->cap = nc;
        }
        memcpy(p->buf + LWS_PRE + p->len, in, len);
        p->len += len;
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            p->binary = lws_frame_is_binary(wsi);
            p->ready = 1;
            lws_callback_on_writable(wsi);
        }
        break;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (!p->ready)
            break;
        if (lws_write(wsi, p->buf + LWS_PRE, p->len, p->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) < (int)p->len)
            return -1;
        p->ready = 0;
        p->len = 0;
        if (close_after && ++p->count >= close_after) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, (unsigned char *)"bye", 3);
            return -1;
        }
        break;
    case LWS_CALLBACK_CLOSED:
        free(p->buf);
        p->buf = NULL;
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    { "echo", cb_echo, sizeof(pss_t), 1 << 16, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 },
};

int main(int argc, char **argv)
{
    int port = 0;
    const char *cert = NULL, *key = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tls") && i + 2 < argc) {
            cert = argv[++i];
            key = argv[++i];
        } else if (!strcmp(argv[i], "--show-header") && i + 1 < argc)
            show_header = argv[++i];
        else if (!strcmp(argv[i], "--close-after") && i + 1 < argc)
            close_after = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: ws_server --port N [--tls CERT KEY] [--show-header NAME] [--close-after N]\n");
            return 2;
        }
    }
    lws_set_log_level(LLL_ERR, NULL);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = port;
    info.iface = "127.0.0.1";
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 * 0;
    if (cert) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = cert;
        info.ssl_private_key_filepath = key;
    }
    struct lws_context *ctx = lws_create_context(&info);
    if (!ctx) {
        fprintf(stderr, "ws_server: cannot listen on %d\n", port);
        return 1;
    }
    printf("listening %d\n", port);
    fflush(stdout);
    while (!stop && lws_service(ctx, 100) >= 0)
        ;
    lws_context_destroy(ctx);
    return 0;
}

/*
 * ws_server - a WebSocket echo server on libwebsockets, for Limen's tests.
 *   ws_server --port N [--tls CERT KEY] [--show-header NAME] [--close-after N]
 * Prints "listening PORT" when ready, "open PATH VALUE" per connection (VALUE:
 * the request header named by --show-header, "-" when absent or not asked for),
 * echoes every message unchanged (text or binary; fragments are reassembled and
 * the whole message echoed in order), closes with 1000 after --close-after
 * messages. Exits 0 on SIGTERM/SIGINT.
 */
#include <libwebsockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct msg {
    struct msg *next;
    size_t len;
    int binary;
    unsigned char data[]; /* LWS_PRE bytes, then the payload */
} msg_t;

typedef struct {
    unsigned char *buf; /* the message being received */
    size_t len, cap;
    msg_t *head, *tail; /* complete messages waiting to be echoed */
    int count;
} pss_t;

static const char *show_header;
static int close_after;
static volatile sig_atomic_t stop;
static lws_sorted_usec_list_t tick;
static struct lws_context *ctx;

static void on_signal(int s) { (void)s; stop = 1; }

/* wakes lws_service often enough that a signal is noticed promptly */
static void on_tick(lws_sorted_usec_list_t *s) { lws_sul_schedule(ctx, 0, s, on_tick, LWS_USEC_PER_SEC / 10); }

static void header_value(struct lws *wsi, char *out, int cap)
{
    char name[128];
    snprintf(out, (size_t)cap, "-");
    if (!show_header)
        return;
    snprintf(name, sizeof(name), "%s:", show_header);
    for (char *p = name; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    for (int t = 0; t < WSI_TOKEN_COUNT; t++) { /* headers lws knows by token */
        const unsigned char *tn = lws_token_to_string((enum lws_token_indexes)t);
        if (tn && !strcmp((const char *)tn, name)) {
            if (lws_hdr_copy(wsi, out, cap, (enum lws_token_indexes)t) <= 0)
                snprintf(out, (size_t)cap, "-");
            return;
        }
    }
    if (lws_hdr_custom_copy(wsi, out, cap, name, (int)strlen(name)) <= 0)
        snprintf(out, (size_t)cap, "-");
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
        if (p->len + len > p->cap) {
            size_t nc = (p->len + len) * 2;
            unsigned char *nb = realloc(p->buf, nc);
            if (!nb)
                return -1;
            p->buf = nb;
            p->cap = nc;
        }
        if (len)
            memcpy(p->buf + p->len, in, len);
        p->len += len;
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            msg_t *m = malloc(sizeof(*m) + LWS_PRE + p->len);
            if (!m)
                return -1;
            m->next = NULL;
            m->len = p->len;
            m->binary = lws_frame_is_binary(wsi);
            if (p->len)
                memcpy(m->data + LWS_PRE, p->buf, p->len);
            if (p->tail)
                p->tail->next = m;
            else
                p->head = m;
            p->tail = m;
            p->len = 0;
            lws_callback_on_writable(wsi);
        }
        break;
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        msg_t *m = p->head;
        if (!m)
            break;
        if (lws_write(wsi, m->data + LWS_PRE, m->len, m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) < (int)m->len)
            return -1;
        p->head = m->next;
        if (!p->head)
            p->tail = NULL;
        free(m);
        if (close_after && ++p->count >= close_after) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, (unsigned char *)"bye", 3);
            return -1;
        }
        if (p->head)
            lws_callback_on_writable(wsi);
        break;
    }
    case LWS_CALLBACK_CLOSED:
        free(p->buf);
        p->buf = NULL;
        while (p->head) {
            msg_t *m = p->head;
            p->head = m->next;
            free(m);
        }
        p->tail = NULL;
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
    signal(SIGPIPE, SIG_IGN);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = port;
    info.iface = "127.0.0.1";
    info.protocols = protocols;
    if (cert) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = cert;
        info.ssl_private_key_filepath = key;
    }
    ctx = lws_create_context(&info);
    if (!ctx) {
        fprintf(stderr, "ws_server: cannot listen on %d\n", port);
        return 1;
    }
    on_tick(&tick);
    printf("listening %d\n", port);
    fflush(stdout);
    while (!stop && lws_service(ctx, 0) >= 0)
        ;
    lws_context_destroy(ctx);
    return 0;
}

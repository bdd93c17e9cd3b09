/*
 * kube_informer_test.c - the informer and lm_kube_request against a scripted
 * HTTP/1.1 server on the same loop (plain http://127.0.0.1): pagination, a
 * LIST page fed a few bytes at a time with tricky JSON, WATCH events and
 * bookmarks, 410 Gone -> relist with its diff, 403 retried, a dropped watch
 * resumed from its resourceVersion, token rotation, and stopping from inside
 * callbacks; and the LIST scanner (kube_scan.c) fed in every chunk size.
 * Each test runs its loop to the end: ASan sees every leak.
 * (The real API server is in e2e/t/test_kube_client.py.)
 */
#include "kube_internal.h"
#include "lm_kube.h"
#include "lm_log.h"
#include "lm_test.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- a scripted HTTP server ------------------------------------------------ */

typedef struct srv srv_t;
typedef struct conn conn_t;

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* paced output */
    srv_t *srv;
    conn_t *next;
    char req[16384];
    size_t len;
    bool handled, done, closing;
    int open;
    char method[16], path[4096], auth[1024], body[4096];
    /* paced output: out[off..len) goes `step` bytes a tick */
    char *out;
    size_t out_len, out_off, step;
    bool end_after, abort_after;
};

struct srv {
    uv_tcp_t tcp;
    int port;
    conn_t *conns;
    void (*handler)(conn_t *c, void *data);
    void *data;
    int requests;
    char paths[64][512]; /* the first requests' paths, in order */
};

typedef struct {
    uv_write_t w;
    char data[];
} wreq_t;

static void on_written(uv_write_t *w, int status)
{
    LM_UNUSED(status);
    free(lm_container_of(w, wreq_t, w));
}

static void conn_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (--c->open)
        return;
    srv_t *s = c->srv;
    for (conn_t **p = &s->conns; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    free(c->out);
    free(c);
}

static void conn_close(conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_closed);
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void on_shutdown(uv_shutdown_t *r, int status)
{
    LM_UNUSED(status);
    conn_close(r->data);
    free(r);
}

/* Closes after what was written went out. */
static void conn_finish(conn_t *c)
{
    if (c->closing || c->done)
        return;
    c->done = true;
    uv_shutdown_t *r = malloc(sizeof(*r));
    r->data = c;
    if (uv_shutdown(r, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(r);
        conn_close(c);
    }
}

static void conn_write(conn_t *c, const char *p, size_t n)
{
    if (c->closing || c->done || n == 0)
        return;
    wreq_t *w = malloc(sizeof(*w) + n);
    memcpy(w->data, p, n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->w, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0)
        free(w);
}

/* One chunk of a chunked body. */
static void conn_chunk(conn_t *c, const char *p, size_t n)
{
    char head[32];
    int hl = snprintf(head, sizeof(head), "%zx\r\n", n);
    conn_write(c, head, (size_t)hl);
    conn_write(c, p, n);
    conn_write(c, "\r\n", 2);
}

static void conn_head(conn_t *c, int status)
{
    char h[256];
    int n = snprintf(h, sizeof(h),
                     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                     "Connection: close\r\n\r\n",
                     status);
    conn_write(c, h, (size_t)n);
}

/* A whole response. */
static void conn_respond(conn_t *c, int status, const char *body)
{
    conn_head(c, status);
    conn_chunk(c, body, strlen(body));
    conn_write(c, "0\r\n\r\n", 5);
    conn_finish(c);
}

/* A watch event line. */
static void conn_event(conn_t *c, const char *type, const char *object)
{
    char line[8192];
    int n = snprintf(line, sizeof(line), "{\"type\":\"%s\",\"object\":%s}\n", type, object);
    conn_chunk(c, line, (size_t)n);
}

static void on_pace(uv_timer_t *t)
{
    conn_t *c = t->data;
    size_t n = LM_MIN(c->step, c->out_len - c->out_off);
    conn_chunk(c, c->out + c->out_off, n);
    c->out_off += n;
    if (c->out_off < c->out_len)
        return;
    uv_timer_stop(t);
    if (c->end_after)
        conn_write(c, "0\r\n\r\n", 5);
    if (c->end_after || c->abort_after)
        conn_finish(c); /* abort: no closing chunk, the body is cut short */
}

/* Sends body `step` bytes a millisecond (each piece its own chunk). */
static void conn_pace(conn_t *c, int status, const char *body, size_t step, bool end)
{
    conn_head(c, status);
    free(c->out);
    c->out = strdup(body);
    c->out_len = strlen(body);
    c->out_off = 0;
    c->step = step;
    c->end_after = end;
    c->abort_after = !end;
    uv_timer_start(&c->timer, on_pace, 1, 1);
}

static void hdr(const char *req, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    const char *p = strcasestr(req, name);
    if (!p)
        return;
    p += strlen(name);
    const char *e = strstr(p, "\r\n");
    snprintf(out, cap, "%.*s", (int)(e ? e - p : 0), p);
}

static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    conn_t *c = h->data;
    LM_UNUSED(sz);
    b->base = c->req + c->len;
    b->len = sizeof(c->req) - c->len - 1;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    conn_t *c = st->data;
    LM_UNUSED(b);
    if (n < 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)n;
    c->req[c->len] = '\0';
    char *end = strstr(c->req, "\r\n\r\n");
    if (c->handled || !end)
        return;
    char clen[32];
    hdr(c->req, "\r\nContent-Length: ", clen, sizeof(clen));
    size_t blen = (size_t)atoi(clen);
    if (c->len < (size_t)(end + 4 - c->req) + blen)
        return;
    snprintf(c->body, sizeof(c->body), "%.*s", (int)blen, end + 4);
    c->handled = true;
    sscanf(c->req, "%15s %4095s", c->method, c->path);
    hdr(c->req, "\r\nAuthorization: ", c->auth, sizeof(c->auth));
    srv_t *s = c->srv;
    if (s->requests < 64)
        snprintf(s->paths[s->requests], sizeof(s->paths[0]), "%.511s", c->path);
    s->requests++;
    s->handler(c, s->data);
}

static void on_conn(uv_stream_t *l, int status)
{
    srv_t *s = l->data;
    if (status < 0)
        return;
    conn_t *c = calloc(1, sizeof(*c));
    c->srv = s;
    uv_tcp_init(l->loop, &c->tcp);
    uv_timer_init(l->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open = 2;
    c->next = s->conns;
    s->conns = c;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) == 0)
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    else
        conn_close(c);
}

static void srv_start(srv_t *s, uv_loop_t *loop, void (*handler)(conn_t *, void *), void *data)
{
    memset(s, 0, sizeof(*s));
    s->handler = handler;
    s->data = data;
    uv_tcp_init(loop, &s->tcp);
    s->tcp.data = s;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_bind(&s->tcp, (const struct sockaddr *)&a, 0);
    uv_listen((uv_stream_t *)&s->tcp, 16, on_conn);
    struct sockaddr_in b;
    int len = sizeof(b);
    uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&b, &len);
    s->port = ntohs(b.sin_port);
}

static void srv_stop(srv_t *s)
{
    for (conn_t *c = s->conns; c; c = c->next)
        conn_close(c);
    uv_close((uv_handle_t *)&s->tcp, NULL);
}

/* ---- the client side ----------------------------------------------------------- */

typedef struct {
    uv_loop_t loop;
    lm_curl_t *curl;
    lm_kube_t *kube;
    srv_t srv;
    char log[64][160]; /* "ADDED ns/a 10" ... */
    int nlog;
    int synced;
    int stop_at;  /* stop the informer at this event number (1-based), 0: never */
    int free_at;  /* lm_kube_free at this event number */
    lm_informer_t *inf;
    int stage;
} fix_t;

static void fix_init(fix_t *f, void (*handler)(conn_t *, void *), const char *token_file)
{
    memset(f, 0, sizeof(*f));
    uv_loop_init(&f->loop);
    srv_start(&f->srv, &f->loop, handler, f);
    f->curl = lm_curl_new(&f->loop);
    lm_kube_config_t cfg = { 0 };
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", f->srv.port);
    cfg.server = strdup(url);
    cfg.namespace = strdup("default");
    cfg.source = strdup("test");
    if (token_file) {
        cfg.token_file = strdup(token_file);
        cfg.token = strdup("initial");
    }
    f->kube = lm_kube_new(&f->loop, f->curl, &cfg);
}

/* Runs the loop until cond or 10 s. */
#define RUN_UNTIL(f, cond)                                                         \
    do {                                                                           \
        uint64_t lm__t0 = uv_now(&(f)->loop);                                      \
        while (!(cond) && uv_now(&(f)->loop) - lm__t0 < 10000) {                   \
            uv_update_time(&(f)->loop);                                            \
            uv_run(&(f)->loop, UV_RUN_ONCE);                                       \
        }                                                                          \
        if (!(cond))                                                               \
            LM_FAILF("timed out waiting for %s", #cond);                           \
    } while (0)

/* Tears everything down and checks the loop ends with no handle left. */
static void fix_done(fix_t *f)
{
    lm_kube_free(f->kube);
    lm_curl_free(f->curl);
    srv_stop(&f->srv);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    LM_CHECK_EQ_INT(uv_loop_close(&f->loop), 0);
}

static const char *meta(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "metadata"), k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static void on_event(lm_informer_t *inf, lm_inf_event_t ev, const cJSON *old, const cJSON *obj, void *data)
{
    fix_t *f = data;
    static const char *const names[] = { "", "ADDED", "MODIFIED", "DELETED" };
    LM_CHECK((ev == LM_INF_ADDED) == (old == NULL));
    if (f->nlog < 64)
        snprintf(f->log[f->nlog], sizeof(f->log[0]), "%s %s/%s %s", names[ev], meta(obj, "namespace"),
                 meta(obj, "name"), meta(obj, "resourceVersion"));
    f->nlog++;
    if (f->stop_at == f->nlog) {
        lm_informer_stop(inf);
        f->inf = NULL;
    }
    if (f->free_at == f->nlog) {
        lm_kube_free(f->kube);
        f->kube = NULL;
        f->inf = NULL;
    }
}

static void on_synced(lm_informer_t *inf, void *data)
{
    fix_t *f = data;
    LM_UNUSED(inf);
    f->synced++;
    if (f->nlog < 64)
        snprintf(f->log[f->nlog++], sizeof(f->log[0]), "SYNCED");
}

static lm_informer_t *start_cm(fix_t *f, const char *ns, const char *labels)
{
    const char *nss[1] = { ns };
    lm_informer_spec_t spec = { .api_path = "/api/v1", .resource = "configmaps", .kind = "ConfigMap",
                                .api_version = "v1", .label_selector = labels,
                                .namespaces = ns ? nss : NULL, .num_namespaces = ns ? 1 : 0, .watch_timeout = 300 };
    f->inf = lm_informer_start(f->kube, &spec, on_event, on_synced, f);
    return f->inf;
}

static bool log_is(fix_t *f, const char *const *want, int n)
{
    bool ok = f->nlog == n;
    for (int i = 0; ok && i < n; i++)
        ok = strcmp(f->log[i], want[i]) == 0;
    if (!ok) {
        LM_FAILF("event log differs (%d events, wanted %d):", f->nlog, n);
        for (int i = 0; i < LM_MAX(f->nlog, n) && i < 64; i++)
            fprintf(stderr, "  got %-34s want %s\n", i < f->nlog ? f->log[i] : "-", i < n ? want[i] : "-");
    }
    return ok;
}

#define CM(name, rv) "{\"metadata\":{\"name\":\"" name "\",\"namespace\":\"ns\",\"resourceVersion\":\"" rv "\"}}"

/* ---- pagination, watch, bookmarks, 410 -> relist ---------------------------------- */

/* page 1: an item whose strings hold brackets, quotes, backslashes and a fake
 * "items" key; managedFields and last-applied to strip */
static const char PAGE1[] =
    "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"20\","
    "\"continue\":\"tok/1=\"},\"items\":[\n"
    " {\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\",\"resourceVersion\":\"10\","
    "\"managedFields\":[{\"manager\":\"kubectl\"}],\"annotations\":{\"kubectl.kubernetes.io/last-applied-configuration\":"
    "\"{\\\"items\\\":[1,2]}\\n\",\"keep\":\"me\"}},"
    "\"data\":{\"tricky\":\"]}{\\\"items\\\":[\\\\\\\"\",\"items\":[\"x\",{\"y\":[]}]}},\n"
    " {\"metadata\":{\"name\":\"b\",\"namespace\":\"ns\",\"resourceVersion\":\"11\","
    "\"annotations\":{\"kubectl.kubernetes.io/last-applied-configuration\":\"{}\"}}}\n"
    "]}";
static const char PAGE2[] = "{\"kind\":\"ConfigMapList\",\"metadata\":{\"resourceVersion\":\"20\"},"
                            "\"items\":[" CM("c", "12") "]}";
static const char RELIST[] = "{\"kind\":\"ConfigMapList\",\"metadata\":{\"resourceVersion\":\"50\"},\"items\":["
                             CM("a", "22") "," CM("c", "40") "," CM("e", "41") "]}";

static void h_main(conn_t *c, void *data)
{
    fix_t *f = data;
    const char *p = c->path;
    if (strstr(p, "/api/v1/namespaces/ns/configmaps?") != p) {
        conn_respond(c, 404, "{\"kind\":\"Status\",\"code\":404}");
        return;
    }
    if (strstr(p, "continue=tok%2F1%3D")) { /* page 2, a few bytes at a time */
        conn_pace(c, 200, PAGE2, 7, true);
    } else if (!strstr(p, "watch=1")) {
        if (f->stage == 0) { /* page 1, cut at every 3 bytes */
            f->stage = 1;
            conn_pace(c, 200, PAGE1, 3, true);
        } else {
            f->stage = 3;
            conn_respond(c, 200, RELIST);
        }
    } else if (f->stage == 1 && strstr(p, "&resourceVersion=20&") && strstr(p, "allowWatchBookmarks=true") &&
               strstr(p, "timeoutSeconds=300")) {
        f->stage = 2;
        conn_head(c, 200);
        conn_event(c, "ADDED", CM("d", "21"));
        conn_event(c, "MODIFIED", "{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"a\","
                                  "\"namespace\":\"ns\",\"resourceVersion\":\"22\"},\"data\":{\"v\":\"2\"}}");
        conn_event(c, "MODIFIED", CM("a", "22")); /* same resourceVersion: no event */
        conn_event(c, "DELETED", CM("b", "23"));
        conn_event(c, "BOOKMARK", "{\"kind\":\"ConfigMap\",\"metadata\":{\"resourceVersion\":\"30\"}}");
        conn_event(c, "ERROR", "{\"kind\":\"Status\",\"status\":\"Failure\",\"message\":\"too old resource "
                               "version: 30 (45)\",\"reason\":\"Expired\",\"code\":410}");
        /* the client ends this watch itself */
    } else if (f->stage == 3 && strstr(p, "&resourceVersion=50&")) {
        f->stage = 4;
        conn_head(c, 200); /* stays open until the test ends */
    } else {
        conn_respond(c, 500, "{\"kind\":\"Status\",\"message\":\"unexpected request\",\"code\":500}");
    }
}

LM_TEST(list_pages_watch_and_410_relist)
{
    fix_t f;
    fix_init(&f, h_main, NULL);
    lm_informer_t *inf = start_cm(&f, "ns", NULL);
    LM_CHECK(inf != NULL);
    RUN_UNTIL(&f, f.stage == 4);
    static const char *const want[] = {
        "ADDED ns/a 10",    "ADDED ns/b 11",   "ADDED ns/c 12",   "SYNCED",         "ADDED ns/d 21",
        "MODIFIED ns/a 22", "DELETED ns/b 23", "MODIFIED ns/c 40", "ADDED ns/e 41", "DELETED ns/d 21",
    };
    log_is(&f, want, (int)LM_ARRAY_SIZE(want));
    LM_CHECK_EQ_INT(f.synced, 1);
    LM_CHECK(lm_informer_synced(inf));
    LM_CHECK_EQ_INT(lm_informer_count(inf), 3);

    const cJSON *a = lm_informer_get(inf, "ns", "a");
    LM_CHECK(a != NULL);
    LM_CHECK_STR(cJSON_GetObjectItem(a, "kind")->valuestring, "ConfigMap");
    LM_CHECK_STR(cJSON_GetObjectItem(a, "apiVersion")->valuestring, "v1");
    LM_CHECK(lm_informer_get(inf, "ns", "b") == NULL && lm_informer_get(inf, "", "a") == NULL);
    const cJSON **items;
    size_t n = lm_informer_list(inf, &items);
    LM_CHECK_EQ_INT(n, 3);
    if (n == 3) {
        LM_CHECK_STR(meta(items[0], "name"), "a");
        LM_CHECK_STR(meta(items[1], "name"), "c");
        LM_CHECK_STR(meta(items[2], "name"), "e");
    }
    free(items);

    lm_informer_stats_t st;
    lm_informer_stats(inf, &st);
    LM_CHECK_EQ_INT(st.lists, 2);
    LM_CHECK_EQ_INT(st.pages, 3);
    LM_CHECK_EQ_INT(st.relists, 1);
    LM_CHECK_EQ_INT(st.watches, 2);
    LM_CHECK_EQ_INT(st.bookmarks, 1);
    LM_CHECK_EQ_INT(st.errors, 0);
    LM_CHECK(st.max_buffer > 0 && st.max_buffer < 400); /* one object at a time, never a page */
    fix_done(&f);
}

/* what the cache keeps of page 1's first item */
static void h_strip(conn_t *c, void *data)
{
    LM_UNUSED(data);
    if (strstr(c->path, "watch=1"))
        conn_head(c, 200);
    else if (strstr(c->path, "continue="))
        conn_respond(c, 200, PAGE2);
    else
        conn_respond(c, 200, PAGE1);
}

LM_TEST(cached_objects_are_stripped)
{
    fix_t f;
    fix_init(&f, h_strip, NULL);
    lm_informer_t *inf = start_cm(&f, "ns", NULL);
    RUN_UNTIL(&f, f.synced == 1);
    const cJSON *a = lm_informer_get(inf, "ns", "a"), *b = lm_informer_get(inf, "ns", "b");
    LM_CHECK(a && b);
    if (a && b) {
        const cJSON *ma = cJSON_GetObjectItem(a, "metadata");
        LM_CHECK(cJSON_GetObjectItem(ma, "managedFields") == NULL);
        const cJSON *ann = cJSON_GetObjectItem(ma, "annotations");
        LM_CHECK(cJSON_GetObjectItem(ann, "kubectl.kubernetes.io/last-applied-configuration") == NULL);
        LM_CHECK_STR(cJSON_GetObjectItem(ann, "keep")->valuestring, "me");
        const cJSON *data = cJSON_GetObjectItem(a, "data");
        LM_CHECK_STR(cJSON_GetObjectItem(data, "tricky")->valuestring, "]}{\"items\":[\\\"");
        LM_CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(data, "items")), 2);
        /* an annotations map left empty goes */
        LM_CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(b, "metadata"), "annotations") == NULL);
    }
    fix_done(&f);
}

/* ---- errors: 403 retried, dropped watch resumed, 410 on continue -------------------- */

static void h_errors(conn_t *c, void *data)
{
    fix_t *f = data;
    const char *p = c->path;
    bool watch = strstr(p, "watch=1") != NULL;
    if (!watch && f->stage < 2) { /* two 403s, then the list */
        f->stage++;
        conn_respond(c, 403, "{\"kind\":\"Status\",\"status\":\"Failure\",\"message\":\"configmaps is "
                             "forbidden: User \\\"x\\\" cannot list\",\"reason\":\"Forbidden\",\"code\":403}");
    } else if (!watch && f->stage == 2) {
        f->stage = 3;
        conn_respond(c, 200, "{\"metadata\":{\"resourceVersion\":\"5\",\"continue\":\"old\"},\"items\":["
                             CM("a", "5") "]}");
    } else if (!watch && f->stage == 3) { /* the continue token expired */
        LM_CHECK(strstr(p, "continue=old") != NULL);
        f->stage = 4;
        conn_respond(c, 410, "{\"kind\":\"Status\",\"reason\":\"Expired\",\"code\":410}");
    } else if (!watch && f->stage == 4) {
        LM_CHECK(strstr(p, "continue=") == NULL);
        f->stage = 5;
        conn_respond(c, 200, "{\"metadata\":{\"resourceVersion\":\"6\"},\"items\":[" CM("a", "5") "]}");
    } else if (watch && f->stage == 5 && strstr(p, "resourceVersion=6&")) {
        f->stage = 6; /* one event, then the connection drops mid-body */
        conn_pace(c, 200, "{\"type\":\"ADDED\",\"object\":" CM("b", "7") "}\n{\"type\":\"ADD", 1000, false);
    } else if (watch && f->stage == 6 && strstr(p, "resourceVersion=7&")) {
        f->stage = 7; /* resumed from the last resourceVersion, no relist */
        conn_head(c, 200);
    } else {
        conn_respond(c, 500, "{\"kind\":\"Status\",\"message\":\"unexpected\",\"code\":500}");
    }
}

LM_TEST(forbidden_retried_continue_expired_and_dropped_watch)
{
    fix_t f;
    fix_init(&f, h_errors, NULL);
    lm_informer_t *inf = start_cm(&f, NULL, "app=web,tier in (a,b)");
    uint64_t t0 = uv_now(&f.loop);
    RUN_UNTIL(&f, f.stage == 7);
    /* two backoffs: 250-500 ms, then 500-1000 ms, then the drop: 1-2 s */
    uint64_t took = uv_now(&f.loop) - t0;
    LM_CHECK(took >= 700 && took < 6000);
    static const char *const want[] = { "ADDED ns/a 5", "SYNCED", "ADDED ns/b 7" };
    log_is(&f, want, 3);
    LM_CHECK(strstr(f.srv.paths[0], "/api/v1/configmaps?limit=500&labelSelector=app%3Dweb%2Ctier%20in%20%28a%2Cb%29") ==
             f.srv.paths[0]);
    lm_informer_stats_t st;
    lm_informer_stats(inf, &st);
    LM_CHECK_EQ_INT(st.errors, 3); /* 403, 403, the dropped watch */
    LM_CHECK(strstr(st.last_error, "WATCH configmaps in all namespaces ended") != NULL);
    LM_CHECK_EQ_INT(st.relists, 0);
    LM_CHECK_EQ_INT(st.lists, 1);
    fix_done(&f);
}

/* ---- stopping from inside callbacks --------------------------------------------- */

static void h_many(conn_t *c, void *data)
{
    LM_UNUSED(data);
    if (strstr(c->path, "watch=1")) {
        conn_head(c, 200);
        conn_event(c, "ADDED", CM("x", "101"));
        conn_event(c, "ADDED", CM("y", "102"));
        conn_event(c, "ADDED", CM("z", "103"));
        return;
    }
    conn_pace(c, 200,
              "{\"metadata\":{\"resourceVersion\":\"100\"},\"items\":[" CM("a", "1") "," CM("b", "2") "," CM("c", "3") "]}",
              40, true);
}

LM_TEST(stop_inside_callbacks)
{
    for (int round = 0; round < 4; round++) {
        fix_t f;
        fix_init(&f, h_many, NULL);
        /* 0: stop in the 2nd LIST event; 1: stop in the 2nd WATCH event;
         * 2: lm_kube_free in a LIST event; 3: lm_kube_free in a WATCH event */
        int at = round % 2 == 0 ? 2 : 5;
        if (round < 2)
            f.stop_at = at;
        else
            f.free_at = at;
        start_cm(&f, NULL, NULL);
        RUN_UNTIL(&f, f.nlog >= at);
        /* nothing more arrives */
        uint64_t t0 = uv_now(&f.loop);
        while (uv_now(&f.loop) - t0 < 100) {
            uv_update_time(&f.loop);
            uv_run(&f.loop, UV_RUN_NOWAIT);
        }
        LM_CHECK_EQ_INT(f.nlog, at);
        fix_done(&f);
    }
}

/* ---- one-shot requests and token rotation ----------------------------------------- */

static void h_echo(conn_t *c, void *data)
{
    LM_UNUSED(data);
    char body[6000];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "method", c->method);
    cJSON_AddStringToObject(o, "path", c->path);
    cJSON_AddStringToObject(o, "auth", c->auth);
    cJSON_AddStringToObject(o, "body", c->body);
    char *s = cJSON_PrintUnformatted(o);
    snprintf(body, sizeof(body), "%s", s);
    free(s);
    cJSON_Delete(o);
    conn_respond(c, strcmp(c->method, "DELETE") == 0 ? 404 : 200, body);
}

typedef struct {
    int status;
    char auth[256], method[16], body[256], err[256];
    bool done;
} reply_t;

static void on_reply(int status, const cJSON *body, const char *err, void *data)
{
    reply_t *r = data;
    r->status = status;
    const cJSON *a = cJSON_GetObjectItem(body, "auth"), *m = cJSON_GetObjectItem(body, "method");
    const cJSON *b = cJSON_GetObjectItem(body, "body");
    snprintf(r->auth, sizeof(r->auth), "%s", cJSON_IsString(a) ? a->valuestring : "");
    snprintf(r->method, sizeof(r->method), "%s", cJSON_IsString(m) ? m->valuestring : "");
    snprintf(r->body, sizeof(r->body), "%s", cJSON_IsString(b) ? b->valuestring : "");
    snprintf(r->err, sizeof(r->err), "%s", err ? err : "");
    r->done = true;
}

static void write_file(const char *path, const char *s)
{
    FILE *fp = fopen(path, "w");
    fputs(s, fp);
    fclose(fp);
}

LM_TEST(requests_and_token_rotation)
{
    char dir[] = "/tmp/kube_test_XXXXXX";
    LM_CHECK(mkdtemp(dir) != NULL);
    char tok[64];
    snprintf(tok, sizeof(tok), "%s/token", dir);
    write_file(tok, "first-token\n");
    fix_t f;
    fix_init(&f, h_echo, tok);
    reply_t r = { 0 };
    LM_CHECK(lm_kube_request(f.kube, "GET", "/version", NULL, NULL, on_reply, &r) == LM_OK);
    RUN_UNTIL(&f, r.done);
    LM_CHECK_EQ_INT(r.status, 200);
    LM_CHECK_STR(r.auth, "Bearer first-token");
    LM_CHECK_STR(r.method, "GET");
    LM_CHECK_STR(r.err, "");

    /* the kubelet swaps the file (a new inode): the next request carries the new token */
    char tmp[80];
    snprintf(tmp, sizeof(tmp), "%s/token.new", dir);
    write_file(tmp, "second-token-longer\n");
    LM_CHECK(rename(tmp, tok) == 0);
    cJSON *body = cJSON_Parse("{\"spec\":{\"x\":1}}");
    memset(&r, 0, sizeof(r));
    LM_CHECK(lm_kube_request(f.kube, "PATCH", "/apis/x/v1/namespaces/a/things/b", body,
                             "application/merge-patch+json", on_reply, &r) == LM_OK);
    cJSON_Delete(body);
    RUN_UNTIL(&f, r.done);
    LM_CHECK_STR(r.auth, "Bearer second-token-longer");
    LM_CHECK_STR(r.method, "PATCH");
    LM_CHECK_STR(r.body, "{\"spec\":{\"x\":1}}");
    LM_CHECK_STR(lm_kube_config(f.kube)->token, "second-token-longer");

    /* the file vanishes: the last token keeps working */
    unlink(tok);
    memset(&r, 0, sizeof(r));
    LM_CHECK(lm_kube_request(f.kube, "DELETE", "/api/v1/namespaces/a/configmaps/b", NULL, NULL, on_reply, &r) ==
             LM_OK);
    RUN_UNTIL(&f, r.done);
    LM_CHECK_EQ_INT(r.status, 404);
    LM_CHECK_STR(r.auth, "Bearer second-token-longer");
    LM_CHECK_STR(r.method, "DELETE");
    LM_CHECK(strncmp(r.err, "HTTP 404", 8) == 0);

    /* a request still running when the client goes: no callback, no leak */
    memset(&r, 0, sizeof(r));
    LM_CHECK(lm_kube_request(f.kube, "POST", "/x", NULL, NULL, on_reply, &r) == LM_OK);
    fix_done(&f);
    LM_CHECK(!r.done);
    rmdir(dir);
}

LM_TEST(transport_error_is_status_0)
{
    fix_t f;
    fix_init(&f, h_echo, NULL);
    srv_stop(&f.srv); /* nobody listens any more */
    uv_run(&f.loop, UV_RUN_NOWAIT);
    reply_t r = { 0 };
    LM_CHECK(lm_kube_request(f.kube, "GET", "/version", NULL, NULL, on_reply, &r) == LM_OK);
    RUN_UNTIL(&f, r.done);
    LM_CHECK_EQ_INT(r.status, 0);
    LM_CHECK(r.err[0] != '\0');
    lm_kube_free(f.kube);
    lm_curl_free(f.curl);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    LM_CHECK_EQ_INT(uv_loop_close(&f.loop), 0);
}

/* ---- the LIST scanner on its own --------------------------------------------------- */

typedef struct {
    char items[8][256];
    int n;
    int stop_after;
} scan_out_t;

static int on_scan_item(void *ctx, const char *p, size_t n)
{
    scan_out_t *o = ctx;
    if (o->n < 8)
        snprintf(o->items[o->n], sizeof(o->items[0]), "%.*s", (int)n, p);
    o->n++;
    return o->stop_after && o->n >= o->stop_after ? LM_ERROR : LM_OK;
}

LM_TEST(list_scanner_in_every_chunk_size)
{
    /* "items" also as a nested key and inside strings; an item holding arrays;
     * "items" not last; white space everywhere */
    static const char doc[] =
        " { \"kind\" : \"XList\", \"metadata\":{\"items\":[1],\"continue\":\"c\\\"]\"} ,\n"
        " \"items\" : [ {\"a\":\"]}\\\\\",\"items\":[{\"b\":[]}]} ,\n{}, {\"c\":[1,[2]]} ] , \"x\":\"items\" }\n";
    static const char *const want[] = { "{\"a\":\"]}\\\\\",\"items\":[{\"b\":[]}]}", "{}", "{\"c\":[1,[2]]}" };
    for (size_t step = 1; step <= sizeof(doc); step++) {
        lm__kscan_t sc = { 0 };
        scan_out_t out = { 0 };
        int rc = LM__KSCAN_OK;
        for (size_t i = 0; i < sizeof(doc) - 1 && rc == LM__KSCAN_OK; i += step)
            rc = lm__kscan_feed(&sc, doc + i, LM_MIN(step, sizeof(doc) - 1 - i), on_scan_item, &out);
        LM_CHECK_EQ_INT(rc, LM__KSCAN_OK);
        LM_CHECK_EQ_INT(out.n, 3);
        for (int i = 0; i < 3 && i < out.n; i++)
            if (strcmp(out.items[i], want[i]) != 0)
                LM_FAILF("step %zu item %d: %s", step, i, out.items[i]);
        cJSON *rest = lm__kscan_finish(&sc);
        char *txt = rest ? cJSON_PrintUnformatted(rest) : NULL;
        if (!txt || strcmp(txt, "{\"kind\":\"XList\",\"metadata\":{\"items\":[1],\"continue\":\"c\\\"]\"},"
                                "\"items\":[],\"x\":\"items\"}") != 0)
            LM_FAILF("step %zu: rest %s", step, txt ? txt : "(none)");
        free(txt);
        cJSON_Delete(rest);
        LM_CHECK_EQ_INT(sc.max_item, strlen(want[0]));
        lm__kscan_free(&sc);
    }
    /* the callback stops it; malformed and truncated documents */
    lm__kscan_t sc = { 0 };
    scan_out_t out = { .stop_after = 1 };
    LM_CHECK_EQ_INT(lm__kscan_feed(&sc, "{\"items\":[{},{}]}", 17, on_scan_item, &out), LM__KSCAN_STOPPED);
    LM_CHECK_EQ_INT(out.n, 1);
    lm__kscan_reset(&sc);
    memset(&out, 0, sizeof(out));
    LM_CHECK_EQ_INT(lm__kscan_feed(&sc, "{\"items\":[1]}", 13, on_scan_item, &out), LM__KSCAN_MALFORMED);
    lm__kscan_reset(&sc);
    LM_CHECK_EQ_INT(lm__kscan_feed(&sc, "{\"items\":[{\"a\":1", 16, on_scan_item, &out), LM__KSCAN_OK);
    LM_CHECK(lm__kscan_finish(&sc) == NULL); /* cut short */
    lm__kscan_reset(&sc);
    LM_CHECK_EQ_INT(lm__kscan_feed(&sc, "[1,2]", 5, on_scan_item, &out), LM__KSCAN_OK);
    LM_CHECK(lm__kscan_finish(&sc) == NULL); /* not an object */
    LM_CHECK_EQ_INT(out.n, 0);
    lm__kscan_free(&sc);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* the server writes to connections the client dropped */
    lm_log_set_level(LM_LOG_ERROR); /* the retries log warnings by design */
    LM_RUN(list_pages_watch_and_410_relist);
    LM_RUN(cached_objects_are_stripped);
    LM_RUN(forbidden_retried_continue_expired_and_dropped_watch);
    LM_RUN(stop_inside_callbacks);
    LM_RUN(requests_and_token_rotation);
    LM_RUN(transport_error_is_status_0);
    LM_RUN(list_scanner_in_every_chunk_size);
    return lm_test_summary("kube_informer");
}

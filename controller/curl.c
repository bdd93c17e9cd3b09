/*
 * curl.c - libcurl multi driven by libuv (see lm_curl.h).
 *
 * curl tells us which sockets to watch (socket callback) and when to wake it
 * (timer callback); uv_poll_t and uv_timer_t do the watching and call
 * curl_multi_socket_action; finished transfers are read with
 * curl_multi_info_read and handed to their done callbacks.
 */
#include "lm_curl.h"

#include <stdlib.h>

typedef struct lm__xfer lm__xfer_t;
typedef struct lm__sock lm__sock_t;

struct lm_curl {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    lm__xfer_t *xfers; /* running transfers, doubly linked */
    lm__sock_t *socks; /* watched sockets */
    int open;          /* uv handles not yet closed (timer + polls) */
    bool closing;
};

struct lm__sock {
    uv_poll_t poll;
    curl_socket_t fd;
    lm_curl_t *c;
    lm__sock_t *prev, *next;
};

struct lm__xfer {
    lm_curl_t *c;
    CURL *easy;
    lm_curl_done_cb done;
    void *data;
    lm__xfer_t *prev, *next;
    char err[CURL_ERROR_SIZE];
    /* lm_curl_fetch */
    bool fetch;
    struct curl_slist *headers;
    char *body;
    size_t len, cap, max;
    lm_curl_resp_cb cb;
    void *cb_data;
};

static void lm__maybe_free(lm_curl_t *c)
{
    if (c->closing && c->open == 0) {
        curl_multi_cleanup(c->multi);
        free(c);
    }
}

static void lm__handle_closed(uv_handle_t *h)
{
    lm_curl_t *c = h->data;
    if (h->type == UV_POLL)
        free(lm_container_of((uv_poll_t *)h, lm__sock_t, poll));
    c->open--;
    lm__maybe_free(c);
}

static void lm__sock_close(lm__sock_t *s)
{
    lm_curl_t *c = s->c;
    if (s->prev)
        s->prev->next = s->next;
    else
        c->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, lm__handle_closed);
}

static void lm__xfer_unlink(lm__xfer_t *x)
{
    lm_curl_t *c = x->c;
    if (x->prev)
        x->prev->next = x->next;
    else
        c->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
}

static void lm__check_done(lm_curl_t *c)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        lm__xfer_t *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(c->multi, easy);
        if (!x)
            continue;
        lm__xfer_unlink(x);
        bool fetch = x->fetch; /* a fetch record is freed by its own callback */
        if (!fetch) {
            /* the handle is the caller's again: no pointers to x left in it
             * (a later lm_curl_remove or a reuse must not find a freed x) */
            curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
            curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
        }
        x->done(easy, rc, x->err, x->data);
        if (!fetch)
            free(x);
    }
}

static void lm__on_poll(uv_poll_t *p, int status, int events)
{
    lm__sock_t *s = lm_container_of(p, lm__sock_t, poll);
    lm_curl_t *c = s->c;
    int flags = 0, running;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(c->multi, s->fd, flags, &running);
    lm__check_done(c);
}

static void lm__on_timer(uv_timer_t *t)
{
    lm_curl_t *c = lm_container_of(t, lm_curl_t, timer);
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    lm__check_done(c);
}

static int lm__socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    lm_curl_t *c = userp;
    lm__sock_t *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            lm__sock_close(s);
            curl_multi_assign(c->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return -1;
        s->fd = fd;
        s->c = c;
        if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = c;
        c->open++;
        s->next = c->socks;
        if (c->socks)
            c->socks->prev = s;
        c->socks = s;
        curl_multi_assign(c->multi, fd, s);
    }
    int ev = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        ev |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        ev |= UV_WRITABLE;
    uv_poll_start(&s->poll, ev, lm__on_poll);
    return 0;
}

static int lm__timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    lm_curl_t *c = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        /* 0 would run again within the same timer phase (libuv 1.44) and starve the
         * rest of the loop under load: the next iteration is soon enough */
        uv_timer_start(&c->timer, lm__on_timer, timeout_ms ? (uint64_t)timeout_ms : 1, 0);
    return 0;
}

static void lm__global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

lm_curl_t *lm_curl_new(uv_loop_t *loop)
{
    static uv_once_t once = UV_ONCE_INIT;
    uv_once(&once, lm__global_init);
    lm_curl_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->loop = loop;
    c->multi = curl_multi_init();
    if (!c->multi) {
        free(c);
        return NULL;
    }
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->open = 1;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, lm__socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, lm__timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    /* one connection (HTTP/2 when offered) carries many watches */
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    return c;
}

static void lm__xfer_free(lm__xfer_t *x)
{
    if (x->fetch) {
        curl_easy_cleanup(x->easy);
        curl_slist_free_all(x->headers);
        free(x->body);
    }
    free(x);
}

void lm_curl_free(lm_curl_t *c)
{
    if (!c)
        return;
    c->closing = true;
    while (c->xfers) {
        lm__xfer_t *x = c->xfers;
        lm__xfer_unlink(x);
        curl_multi_remove_handle(c->multi, x->easy);
        lm__xfer_free(x);
    }
    while (c->socks)
        lm__sock_close(c->socks);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, lm__handle_closed);
}

static int lm__add(lm_curl_t *c, lm__xfer_t *x, CURL *easy, lm_curl_done_cb done, void *data)
{
    if (c->closing)
        return LM_ERROR;
    x->c = c;
    x->easy = easy;
    x->done = done;
    x->data = data;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, x);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, x->err);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    if (curl_multi_add_handle(c->multi, easy) != CURLM_OK)
        return LM_ERROR;
    x->next = c->xfers;
    if (c->xfers)
        c->xfers->prev = x;
    c->xfers = x;
    return LM_OK;
}

int lm_curl_add(lm_curl_t *c, CURL *easy, lm_curl_done_cb done, void *data)
{
    lm__xfer_t *x = calloc(1, sizeof(*x));
    if (!x)
        return LM_ERROR;
    if (lm__add(c, x, easy, done, data) != LM_OK) {
        free(x);
        return LM_ERROR;
    }
    return LM_OK;
}

void lm_curl_remove(lm_curl_t *c, CURL *easy)
{
    lm__xfer_t *x = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
    curl_multi_remove_handle(c->multi, easy);
    if (x) {
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        lm__xfer_unlink(x);
        lm__xfer_free(x);
    }
}

/* ---- buffered requests --------------------------------------------------- */

static size_t lm__fetch_write(char *ptr, size_t size, size_t n, void *userdata)
{
    lm__xfer_t *x = userdata;
    size_t len = size * n;
    if (x->len + len + 1 > x->max)
        return 0; /* CURLE_WRITE_ERROR */
    if (x->len + len + 1 > x->cap) {
        size_t cap = x->cap ? x->cap : 4096;
        while (cap < x->len + len + 1)
            cap *= 2;
        char *b = realloc(x->body, cap);
        if (!b)
            return 0;
        x->body = b;
        x->cap = cap;
    }
    memcpy(x->body + x->len, ptr, len);
    x->len += len;
    return len;
}

static void lm__fetch_done(CURL *easy, CURLcode rc, const char *errbuf, void *data)
{
    lm__xfer_t *x = data;
    lm_curl_resp_t r = { .rc = rc, .error = rc == CURLE_OK ? "" : (errbuf[0] ? errbuf : curl_easy_strerror(rc)) };
    if (rc == CURLE_OK)
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME, &r.seconds);
    if (x->body)
        x->body[x->len] = '\0';
    r.body = x->body ? x->body : "";
    r.len = x->len;
    x->cb(&r, x->cb_data);
    lm__xfer_free(x);
}

int lm_curl_fetch(lm_curl_t *c, CURL *easy, struct curl_slist *headers, size_t max_body,
                  lm_curl_resp_cb cb, void *data)
{
    lm__xfer_t *f = calloc(1, sizeof(*f));
    if (!f) {
        curl_easy_cleanup(easy);
        curl_slist_free_all(headers);
        return LM_ERROR;
    }
    f->fetch = true;
    f->easy = easy;
    f->headers = headers;
    f->max = max_body ? max_body : (size_t)64 << 20;
    f->cb = cb;
    f->cb_data = data;
    if (headers)
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, lm__fetch_write);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, f);
    if (lm__add(c, f, easy, lm__fetch_done, f) != LM_OK) {
        lm__xfer_free(f);
        return LM_ERROR;
    }
    return LM_OK;
}

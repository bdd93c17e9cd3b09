/*
 * http1_test.c - unit tests for the HTTP/1.1 parser and chunked decoder.
 *
 * Most cases are golden files, the .txt files in dataplane/testdata/http1
 * (see the README there for the format); argv[1] overrides that directory and argv[2]
 * the smuggling list dataplane/t/smuggling_cases.txt. Every golden input is
 * parsed while sitting right before a PROT_NONE page, so an over-read
 * crashes; request and response heads are also fed as every prefix, chunked
 * bodies whole, one byte at a time and split in two at every offset.
 */
#include "lm_http1.h"
#include "lm_test.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- guard page ---------------------------------------------------------- */

#define ARENA_SIZE (256 * 1024)

static char *g_arena; /* ARENA_SIZE writable bytes followed by a PROT_NONE page */

static void guard_init(void)
{
    long pg = sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, ARENA_SIZE + (size_t)pg, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED || mprotect(m + ARENA_SIZE, (size_t)pg, PROT_NONE) != 0) {
        perror("mmap");
        exit(2);
    }
    g_arena = m;
}

/* Copies s into the arena so that its last byte is the last readable one. */
static char *guarded(const char *s, size_t len)
{
    char *p = g_arena + ARENA_SIZE - len;
    memcpy(p, s, len);
    return p;
}

/* ---- text helpers -------------------------------------------------------- */

/* Decodes \r \n \t \\ \xHH into out; returns the length. */
static size_t unescape(const char *s, char *out)
{
    size_t n = 0;
    while (*s) {
        if (s[0] != '\\' || s[1] == '\0') {
            out[n++] = *s++;
            continue;
        }
        char c = s[1];
        s += 2;
        switch (c) {
        case 'r': out[n++] = '\r'; break;
        case 'n': out[n++] = '\n'; break;
        case 't': out[n++] = '\t'; break;
        case '\\': out[n++] = '\\'; break;
        case 'x': {
            char hex[3] = { s[0], s[0] ? s[1] : 0, 0 };
            out[n++] = (char)strtol(hex, NULL, 16);
            s += strlen(hex);
            break;
        }
        default: out[n++] = '\\'; out[n++] = c; break;
        }
    }
    return n;
}

static bool slice_is(lm_str_t s, const char *esc)
{
    char tmp[1024];
    size_t n = unescape(esc, tmp);
    return s.len == n && (n == 0 || memcmp(s.ptr, tmp, n) == 0);
}

static const char *body_name(lm_body_kind_t k)
{
    switch (k) {
    case LM_BODY_NONE: return "none";
    case LM_BODY_LENGTH: return "length";
    case LM_BODY_CHUNKED: return "chunked";
    case LM_BODY_UNTIL_CLOSE: return "close";
    }
    return "?";
}

/* ---- golden cases -------------------------------------------------------- */

#define MAX_EXPECT 64
#define IN_MAX (64 * 1024)

typedef struct {
    char where[300];        /* file:line name */
    char mode[32];          /* request | response | response-head | chunked */
    lm_http1_limits_t lim;
    size_t max_trailer;
    char *in;
    size_t in_len;
    char *expect[MAX_EXPECT]; /* "key value" lines */
    int n_expect;
} gcase_t;

static int g_cases, g_malformed;

static void case_reset(gcase_t *c)
{
    for (int i = 0; i < c->n_expect; i++)
        free(c->expect[i]);
    c->n_expect = 0;
    c->in_len = 0;
    c->where[0] = 0;
    strcpy(c->mode, "request");
    c->lim = LM_HTTP1_DEFAULT_LIMITS;
    c->max_trailer = 0;
}

/* Returns the value of "key ..." or NULL. */
static const char *expect_get(const gcase_t *c, const char *key)
{
    size_t kl = strlen(key);
    for (int i = 0; i < c->n_expect; i++)
        if (strncmp(c->expect[i], key, kl) == 0 && (c->expect[i][kl] == ' ' || !c->expect[i][kl]))
            return c->expect[i][kl] ? c->expect[i] + kl + 1 : "";
    return NULL;
}

#define CASE_FAIL(c, ...)                                                  \
    do {                                                                   \
        char msg_[512];                                                    \
        snprintf(msg_, sizeof(msg_), __VA_ARGS__);                         \
        LM_FAILF("%s: %s", (c)->where, msg_);                              \
    } while (0)

#define CHECK_SLICE_KEY(c, key, s)                                         \
    do {                                                                   \
        const char *v_ = expect_get(c, key);                               \
        if (v_ && !(strcmp(v_, "-") == 0 ? (s).ptr == NULL : slice_is(s, v_))) \
            CASE_FAIL(c, key " expected \"%s\", got \"%.*s\"%s", v_, (int)(s).len, \
                      (s).ptr ? (s).ptr : "", (s).ptr ? "" : " (null)");      \
    } while (0)

#define CHECK_INT_KEY(c, key, val)                                         \
    do {                                                                   \
        const char *v_ = expect_get(c, key);                               \
        if (v_ && atoll(v_) != (long long)(val))                           \
            CASE_FAIL(c, key " expected %s, got %lld", v_, (long long)(val)); \
    } while (0)

static void check_framing(const gcase_t *c, lm_body_kind_t kind, uint64_t cl)
{
    const char *v = expect_get(c, "framing");
    if (v == NULL)
        return;
    char want[64];
    if (kind == LM_BODY_LENGTH)
        snprintf(want, sizeof(want), "length %llu", (unsigned long long)cl);
    else
        snprintf(want, sizeof(want), "%s", body_name(kind));
    if (strcmp(v, want) != 0)
        CASE_FAIL(c, "framing expected \"%s\", got \"%s\"", v, want);
}

static void check_headers(const gcase_t *c, const lm_http_header_t *h, size_t n)
{
    size_t k = 0;
    bool any = false;
    for (int i = 0; i < c->n_expect; i++) {
        if (strncmp(c->expect[i], "hdr ", 4) != 0)
            continue;
        any = true;
        const char *e = c->expect[i] + 4;
        bool hop = strncmp(e, "hop ", 4) == 0;
        e += 2 + (hop ? 2 : 0); /* "hop " or "- " */
        const char *colon = strchr(e, ':');
        if (colon == NULL) {
            CASE_FAIL(c, "bad hdr line \"%s\"", c->expect[i]);
            return;
        }
        char name[256];
        snprintf(name, sizeof(name), "%.*s", (int)(colon - e), e);
        const char *val = colon[1] == ' ' ? colon + 2 : colon + 1;
        if (k >= n) {
            CASE_FAIL(c, "missing header %s", name);
            return;
        }
        if (!slice_is(h[k].name, name) || !slice_is(h[k].value, val))
            CASE_FAIL(c, "header %zu: expected %s: %s, got %.*s: %.*s", k, name, val,
                      LM_STR_FMT(h[k].name), LM_STR_FMT(h[k].value));
        if (hop != !!(h[k].flags & LM_HDR_F_HOP))
            CASE_FAIL(c, "header %s: hop flag expected %d", name, hop);
        k++;
    }
    if (any && k != n)
        CASE_FAIL(c, "expected %zu headers, got %zu", k, n);
}

/* Parses the result line: returns 1 ok, 0 again, -status (or -1) error. */
static int expected_result(const gcase_t *c)
{
    const char *r = expect_get(c, "result");
    if (r == NULL || strcmp(r, "ok") == 0)
        return 1;
    if (strcmp(r, "again") == 0)
        return 0;
    if (strncmp(r, "error", 5) == 0)
        return r[5] ? -atoi(r + 6) : -1;
    return 1;
}

static void check_error(const gcase_t *c, int rc, int status, const char *why, int want)
{
    if (rc != LM_ERROR) {
        CASE_FAIL(c, "expected error, got %d", rc);
        return;
    }
    if (why == NULL)
        CASE_FAIL(c, "error without reason");
    if (want < -1 && status != -want)
        CASE_FAIL(c, "expected status %d, got %d (%s)", -want, status, why ? why : "");
    const char *r = expect_get(c, "reason");
    if (r && (why == NULL || strcmp(r, why) != 0))
        CASE_FAIL(c, "expected reason \"%s\", got \"%s\"", r, why ? why : "(null)");
}

static bool in_input(lm_str_t s, const char *buf, size_t len)
{
    return s.len == 0 || (s.ptr >= buf && s.ptr + s.len <= buf + len);
}

static void run_request(const gcase_t *c)
{
    lm_http_header_t hdrs[128];
    lm_http1_request_t req = { .headers = hdrs, .headers_cap = LM_ARRAY_SIZE(hdrs) };
    int want = expected_result(c);
    const char *buf = guarded(c->in, c->in_len);
    int rc = lm_http1_parse_request(buf, c->in_len, &c->lim, &req);

    if (want < 0) {
        check_error(c, rc, req.error_status, req.error_reason, want);
    } else if (want == 0) {
        if (rc != LM_AGAIN)
            CASE_FAIL(c, "expected again, got %d (%s)", rc, req.error_reason ? req.error_reason : "");
    } else if (rc <= 0) {
        CASE_FAIL(c, "expected ok, got %d: %d %s", rc, req.error_status,
                  req.error_reason ? req.error_reason : "");
    } else {
        const char *rest = expect_get(c, "rest");
        lm_str_t got_rest = { buf + rc, c->in_len - (size_t)rc };
        if (!slice_is(got_rest, rest ? rest : ""))
            CASE_FAIL(c, "rest expected \"%s\", got %zu bytes", rest ? rest : "", got_rest.len);
        CHECK_SLICE_KEY(c, "method", req.method);
        CHECK_SLICE_KEY(c, "target", req.target);
        CHECK_SLICE_KEY(c, "path", req.path);
        CHECK_SLICE_KEY(c, "query", req.query);
        CHECK_SLICE_KEY(c, "authority", req.authority);
        CHECK_SLICE_KEY(c, "host", req.host);
        CHECK_INT_KEY(c, "version", req.minor_version);
        CHECK_INT_KEY(c, "keep-alive", req.keep_alive);
        CHECK_INT_KEY(c, "expect-continue", req.expect_continue);
        CHECK_INT_KEY(c, "upgrade", req.upgrade);
        check_framing(c, req.body_kind, req.content_length);
        check_headers(c, hdrs, req.num_headers);
        lm_str_t all[] = { req.method, req.target, req.path, req.query, req.authority, req.host };
        for (size_t i = 0; i < LM_ARRAY_SIZE(all); i++)
            if (!in_input(all[i], buf, c->in_len))
                CASE_FAIL(c, "slice %zu outside the input", i);
    }

    /* every proper prefix: AGAIN for good heads, AGAIN or ERROR otherwise */
    if (want == 1 && rc > 0) {
        for (size_t n = 0; n < (size_t)rc; n++) {
            const char *p = guarded(c->in, n);
            int r = lm_http1_parse_request(p, n, &c->lim, &req);
            if (r != LM_AGAIN) {
                CASE_FAIL(c, "prefix %zu: expected again, got %d (%s)", n, r,
                          req.error_reason ? req.error_reason : "");
                break;
            }
        }
    } else {
        for (size_t n = 0; n < c->in_len; n++) {
            const char *p = guarded(c->in, n);
            int r = lm_http1_parse_request(p, n, &c->lim, &req);
            if (r != LM_AGAIN && r != LM_ERROR) {
                CASE_FAIL(c, "prefix %zu of a bad request parsed (%d)", n, r);
                break;
            }
        }
    }
}

static void run_response(const gcase_t *c, bool head)
{
    lm_http_header_t hdrs[128];
    lm_http1_response_t resp = { .headers = hdrs, .headers_cap = LM_ARRAY_SIZE(hdrs) };
    int want = expected_result(c);
    const char *buf = guarded(c->in, c->in_len);
    int rc = lm_http1_parse_response(buf, c->in_len, c->lim.max_head, head, &resp);

    if (want < 0) {
        check_error(c, rc, 0, resp.error_reason, want);
    } else if (want == 0) {
        if (rc != LM_AGAIN)
            CASE_FAIL(c, "expected again, got %d", rc);
    } else if (rc <= 0) {
        CASE_FAIL(c, "expected ok, got %d: %s", rc, resp.error_reason ? resp.error_reason : "");
    } else {
        const char *rest = expect_get(c, "rest");
        lm_str_t got_rest = { buf + rc, c->in_len - (size_t)rc };
        if (!slice_is(got_rest, rest ? rest : ""))
            CASE_FAIL(c, "rest expected \"%s\", got %zu bytes", rest ? rest : "", got_rest.len);
        CHECK_INT_KEY(c, "status", resp.status);
        CHECK_SLICE_KEY(c, "phrase", resp.reason);
        CHECK_INT_KEY(c, "version", resp.minor_version);
        CHECK_INT_KEY(c, "keep-alive", resp.keep_alive);
        check_framing(c, resp.body_kind, resp.content_length);
        check_headers(c, hdrs, resp.num_headers);
        for (size_t n = 0; n < (size_t)rc; n++) {
            const char *p = guarded(c->in, n);
            int r = lm_http1_parse_response(p, n, c->lim.max_head, head, &resp);
            if (r != LM_AGAIN) {
                CASE_FAIL(c, "prefix %zu: expected again, got %d", n, r);
                break;
            }
        }
    }
}

/* Feeds the body in pieces [0,a) [a,b) [b,len); collects output and rest. */
static int chunked_feed(const gcase_t *c, size_t a, size_t b, char *out, size_t *out_len,
                        char *rest, size_t *rest_len, const char **why)
{
    lm_chunked_t d = { .max_trailer = c->max_trailer };
    size_t cuts[] = { 0, a, b, c->in_len };
    int rc = LM_AGAIN;
    *out_len = *rest_len = 0;
    for (int i = 0; i < 3; i++) {
        size_t n = cuts[i + 1] - cuts[i], r = 0;
        char *p = guarded(c->in + cuts[i], n);
        rc = lm_chunked_decode(&d, p, &n, &r);
        *why = d.error_reason;
        if (rc == LM_ERROR)
            return rc;
        if (n > cuts[i + 1] - cuts[i])
            return -100; /* output grew */
        memcpy(out + *out_len, p, n);
        *out_len += n;
        if (rc == LM_OK) {
            memcpy(rest, p + n, r);
            memcpy(rest + r, c->in + cuts[i + 1], c->in_len - cuts[i + 1]);
            *rest_len = r + c->in_len - cuts[i + 1];
            return rc;
        }
        if (r != 0)
            return -101;
    }
    return rc;
}

static void run_chunked(const gcase_t *c)
{
    static char out[IN_MAX], rest[IN_MAX];
    size_t out_len, rest_len;
    const char *why = NULL;
    int want = expected_result(c);
    int want_rc = want < 0 ? LM_ERROR : want == 0 ? LM_AGAIN : LM_OK;
    const char *data = expect_get(c, "data"), *rv = expect_get(c, "rest");

    /* all splits: whole (a=b=0), and [0,a)[a,len) for every a; one byte at a time below */
    for (size_t a = 0; a <= c->in_len; a++) {
        int rc = chunked_feed(c, a, a, out, &out_len, rest, &rest_len, &why);
        if (rc != want_rc) {
            CASE_FAIL(c, "split at %zu: expected %d, got %d (%s)", a, want_rc, rc, why ? why : "");
            return;
        }
        if (rc == LM_ERROR) {
            const char *r = expect_get(c, "reason");
            if (why == NULL || (r && strcmp(r, why) != 0))
                CASE_FAIL(c, "split at %zu: reason \"%s\"", a, why ? why : "(null)");
            continue;
        }
        if (data && !slice_is((lm_str_t){ out, out_len }, data))
            CASE_FAIL(c, "split at %zu: data \"%.*s\"", a, (int)out_len, out);
        if (!slice_is((lm_str_t){ rest, rest_len }, rv ? rv : ""))
            CASE_FAIL(c, "split at %zu: rest \"%.*s\"", a, (int)rest_len, rest);
    }

    /* one byte per call */
    lm_chunked_t d = { .max_trailer = c->max_trailer };
    int rc = LM_AGAIN;
    out_len = 0;
    size_t i;
    for (i = 0; i < c->in_len; i++) {
        size_t n = 1, r = 0;
        char *p = guarded(c->in + i, 1);
        rc = lm_chunked_decode(&d, p, &n, &r);
        if (rc == LM_ERROR)
            break;
        if (n)
            out[out_len++] = p[0];
        if (rc == LM_OK) {
            if (n != 0 || r != 0) /* the last byte of a body is its final LF */
                CASE_FAIL(c, "byte %zu: n %zu r %zu", i, n, r);
            break;
        }
    }
    if (rc != want_rc)
        CASE_FAIL(c, "bytewise: expected %d, got %d", want_rc, rc);
    else if (rc == LM_OK && data && !slice_is((lm_str_t){ out, out_len }, data))
        CASE_FAIL(c, "bytewise: data \"%.*s\"", (int)out_len, out);
    else if (rc == LM_OK && !slice_is((lm_str_t){ c->in + i + 1, c->in_len - i - 1 }, rv ? rv : ""))
        CASE_FAIL(c, "bytewise: rest differs");
}

static void run_case(const gcase_t *c)
{
    g_cases++;
    if (expected_result(c) < 0)
        g_malformed++;
    if (strcmp(c->mode, "request") == 0)
        run_request(c);
    else if (strcmp(c->mode, "response") == 0)
        run_response(c, false);
    else if (strcmp(c->mode, "response-head") == 0)
        run_response(c, true);
    else if (strcmp(c->mode, "chunked") == 0)
        run_chunked(c);
    else
        CASE_FAIL(c, "unknown mode %s", c->mode);
}

static void run_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        LM_FAILF("cannot open %s", path);
        return;
    }
    gcase_t c = { 0 };
    c.in = malloc(IN_MAX);
    case_reset(&c);
    char line[8192];
    int lineno = 0;
    bool open = false;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        line[strcspn(line, "\n")] = 0;
        if (strncmp(line, "=== ", 4) == 0) {
            if (open)
                run_case(&c);
            case_reset(&c);
            snprintf(c.where, sizeof(c.where), "%.160s:%d %.120s", path, lineno, line + 4);
            open = true;
        } else if (!open || line[0] == '#' || line[0] == 0) {
            continue;
        } else if (line[0] == '>') {
            const char *s = line[1] == ' ' ? line + 2 : line + 1;
            if (c.in_len + strlen(s) < IN_MAX)
                c.in_len += unescape(s, c.in + c.in_len);
        } else if (strncmp(line, "repeat ", 7) == 0) {
            /* repeat N text: appends text N times (long inputs) */
            char tmp[1024];
            char *sp = strchr(line + 7, ' ');
            int times = atoi(line + 7);
            size_t n = sp ? unescape(sp + 1, tmp) : 0;
            for (int i = 0; i < times && c.in_len + n < IN_MAX; i++) {
                memcpy(c.in + c.in_len, tmp, n);
                c.in_len += n;
            }
        } else if (strncmp(line, "mode ", 5) == 0) {
            snprintf(c.mode, sizeof(c.mode), "%.31s", line + 5);
        } else if (strncmp(line, "limits ", 7) == 0) {
            sscanf(line + 7, "%zu %zu %zu", &c.lim.max_head, &c.lim.max_uri, &c.lim.max_headers);
        } else if (strncmp(line, "max-trailer ", 12) == 0) {
            c.max_trailer = (size_t)atol(line + 12);
        } else if (c.n_expect < MAX_EXPECT) {
            c.expect[c.n_expect++] = strdup(line);
        }
    }
    if (open)
        run_case(&c);
    case_reset(&c);
    free(c.in);
    fclose(f);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *g_dir = "dataplane/testdata/http1";
static const char *g_smuggling = "dataplane/t/smuggling_cases.txt";

LM_TEST(test_golden_files)
{
    DIR *d = opendir(g_dir);
    if (d == NULL) {
        LM_FAILF("cannot open %s", g_dir);
        return;
    }
    char *names[64];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 64) {
        size_t l = strlen(de->d_name);
        if (l > 4 && strcmp(de->d_name + l - 4, ".txt") == 0)
            names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof(names[0]), cmp_str);
    for (int i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", g_dir, names[i]);
        run_file(path);
        free(names[i]);
    }
    printf("golden: %d cases (%d malformed) in %d files\n", g_cases, g_malformed, n);
    LM_CHECK(g_cases >= 80);
    LM_CHECK(g_malformed >= 40);
}

/*
 * Every request in the black-box smuggling list must be refused with the
 * status on its "=== name status" line, by the head parser or, for chunked
 * bodies, by the decoder.
 */
LM_TEST(test_smuggling_list)
{
    FILE *f = fopen(g_smuggling, "r");
    if (f == NULL) {
        LM_FAILF("cannot open %s", g_smuggling);
        return;
    }
    static char in[IN_MAX];
    char line[8192], name[256] = "";
    size_t len = 0;
    int status = 0, count = 0;
    bool more = true;
    while (more) {
        more = fgets(line, sizeof(line), f) != NULL;
        if (more)
            line[strcspn(line, "\n")] = 0;
        if (!more || strncmp(line, "=== ", 4) == 0) {
            if (name[0]) {
                lm_http_header_t hdrs[64];
                lm_http1_request_t req = { .headers = hdrs, .headers_cap = 64 };
                const char *buf = guarded(in, len);
                int rc = lm_http1_parse_request(buf, len, NULL, &req), st = req.error_status;
                if (rc > 0 && req.body_kind == LM_BODY_CHUNKED) {
                    lm_chunked_t d = { 0 };
                    size_t n = len - (size_t)rc, r;
                    memcpy(in, buf + rc, n);
                    rc = lm_chunked_decode(&d, in, &n, &r) == LM_ERROR ? LM_ERROR : rc;
                    st = 400;
                }
                if (rc != LM_ERROR || st != status)
                    LM_FAILF("smuggling case %s: rc %d status %d, want %d", name, rc, st, status);
                count++;
            }
            if (more && sscanf(line + 4, "%255s %d", name, &status) != 2)
                LM_FAILF("bad case line %s", line);
            len = 0;
        } else if (len + strlen(line) < IN_MAX) {
            len += unescape(line, in + len);
        }
    }
    fclose(f);
    printf("smuggling list: %d cases\n", count);
    LM_CHECK(count >= 40);
}

/* ---- direct tests -------------------------------------------------------- */

static int parse_req(const char *s, lm_http1_request_t *req, lm_http_header_t *h, size_t cap)
{
    req->headers = h;
    req->headers_cap = cap;
    size_t n = strlen(s);
    return lm_http1_parse_request(guarded(s, n), n, NULL, req);
}

LM_TEST(test_guard_page_overread)
{
    /* heads cut at every byte, right before the guard page: a read past len faults */
    const char *s = "GET http://example.com:8080?x HTTP/1.1\r\nHost: a\r\n"
                    "Transfer-Encoding: chunked\r\nConnection: x-y, close\r\nX-Y: 1\r\n\r\n";
    lm_http_header_t h[8];
    lm_http1_request_t req = { .headers = h, .headers_cap = 8 };
    size_t n = strlen(s);
    for (size_t i = 0; i <= n; i++) {
        int rc = lm_http1_parse_request(guarded(s, i), i, NULL, &req);
        LM_CHECK_EQ_INT(rc, i == n ? (int)n : LM_AGAIN);
    }
    LM_CHECK_SLICE(req.path, "/");
    LM_CHECK_SLICE(req.query, "x");
    LM_CHECK_SLICE(req.host, "example.com:8080");
    LM_CHECK(h[3].flags & LM_HDR_F_HOP);
    LM_CHECK(!req.keep_alive);
    const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    lm_http1_response_t resp = { .headers = h, .headers_cap = 8 };
    n = strlen(r);
    for (size_t i = 0; i <= n; i++)
        LM_CHECK_EQ_INT(lm_http1_parse_response(guarded(r, i), i, 4096, false, &resp),
                        i == n ? (int)n : LM_AGAIN);
}

LM_TEST(test_header_capacity)
{
    lm_http_header_t h[2];
    lm_http1_request_t req;
    LM_CHECK_EQ_INT(parse_req("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", &req, h, 2), LM_ERROR);
    LM_CHECK_EQ_INT(req.error_status, 431);
    LM_CHECK(parse_req("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\n\r\n", &req, h, 2) > 0);
    LM_CHECK_EQ_INT(req.num_headers, 2);
}

LM_TEST(test_head_limit_exact)
{
    const char *s = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    size_t n = strlen(s);
    lm_http_header_t h[4];
    lm_http1_request_t req = { .headers = h, .headers_cap = 4 };
    lm_http1_limits_t lim = { n, 100, 4 };
    LM_CHECK_EQ_INT(lm_http1_parse_request(guarded(s, n), n, &lim, &req), (int)n);
    lim.max_head = n - 1;
    LM_CHECK_EQ_INT(lm_http1_parse_request(guarded(s, n), n, &lim, &req), LM_ERROR);
    LM_CHECK_EQ_INT(req.error_status, 431);
    LM_CHECK_EQ_INT(lm_http1_parse_request(guarded(s, n - 2), n - 2, &lim, &req), LM_AGAIN);
}

LM_TEST(test_pipelined)
{
    const char *s = "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n";
    lm_http_header_t h[4];
    lm_http1_request_t req;
    int rc = parse_req(s, &req, h, 4);
    LM_CHECK_EQ_INT(rc, 28);
    LM_CHECK_SLICE(req.path, "/a");
    rc = lm_http1_parse_request(s + rc, strlen(s) - (size_t)rc, NULL, &req);
    LM_CHECK_EQ_INT(rc, 28);
    LM_CHECK_SLICE(req.path, "/b");
}

LM_TEST(test_find_and_token)
{
    lm_http_header_t h[8];
    lm_http1_request_t req;
    LM_CHECK(parse_req("GET / HTTP/1.1\r\nhOsT: a\r\nX-Request-Id: 7\r\nx-forwarded-PREFIX: /p\r\n"
                       "Proxy-Connection: k\r\nX-Forwarded-Port: 1\r\n\r\n", &req, h, 8) > 0);
    LM_CHECK(lm_http1_find(h, req.num_headers, LM_HDR_HOST) == &h[0]);
    LM_CHECK(lm_http1_find(h, req.num_headers, LM_HDR_X_REQUEST_ID) == &h[1]);
    LM_CHECK(lm_http1_find(h, req.num_headers, LM_HDR_X_FORWARDED_PREFIX) == &h[2]);
    LM_CHECK(lm_http1_find(h, req.num_headers, LM_HDR_PROXY_CONNECTION) == &h[3]);
    LM_CHECK(lm_http1_find(h, req.num_headers, LM_HDR_X_FORWARDED_PORT) == &h[4]);
    LM_CHECK(lm_http1_find(h, req.num_headers, LM_HDR_VIA) == NULL);
    LM_CHECK(lm_http1_find_name(h, req.num_headers, LM_STR("x-request-ID")) == &h[1]);
    LM_CHECK(lm_http1_find_name(h, req.num_headers, LM_STR("x-request")) == NULL);
    LM_CHECK(lm_http1_is_token(LM_STR("GET")));
    LM_CHECK(lm_http1_is_token(LM_STR("x!#$%&'*+-.^_`|~9")));
    LM_CHECK(!lm_http1_is_token(LM_STR("")));
    LM_CHECK(!lm_http1_is_token(LM_STR("a b")));
    LM_CHECK(!lm_http1_is_token(LM_STR("a:")));
    LM_CHECK(!lm_http1_is_token(LM_STR("\"a\"")));

    static const struct { const char *name; lm_hdr_id_t id; } ids[] = {
        { "Host", LM_HDR_HOST }, { "Content-Length", LM_HDR_CONTENT_LENGTH },
        { "Transfer-Encoding", LM_HDR_TRANSFER_ENCODING }, { "Connection", LM_HDR_CONNECTION },
        { "Keep-Alive", LM_HDR_KEEP_ALIVE }, { "Proxy-Connection", LM_HDR_PROXY_CONNECTION },
        { "TE", LM_HDR_TE }, { "Trailer", LM_HDR_TRAILER }, { "Upgrade", LM_HDR_UPGRADE },
        { "Expect", LM_HDR_EXPECT }, { "X-Forwarded-For", LM_HDR_X_FORWARDED_FOR },
        { "X-Forwarded-Proto", LM_HDR_X_FORWARDED_PROTO },
        { "X-Forwarded-Host", LM_HDR_X_FORWARDED_HOST },
        { "X-Forwarded-Port", LM_HDR_X_FORWARDED_PORT },
        { "X-Forwarded-Prefix", LM_HDR_X_FORWARDED_PREFIX }, { "X-Real-IP", LM_HDR_X_REAL_IP },
        { "X-Request-ID", LM_HDR_X_REQUEST_ID }, { "Via", LM_HDR_VIA },
        { "Content-Type", LM_HDR_CONTENT_TYPE }, { "Date", LM_HDR_DATE },
        { "Server", LM_HDR_SERVER }, { "Hosts", LM_HDR_OTHER }, { "Content-Lengtx", LM_HDR_OTHER },
    };
    for (size_t i = 0; i < LM_ARRAY_SIZE(ids); i++) {
        char s[256];
        snprintf(s, sizeof(s), "GET / HTTP/1.0\r\n%s: 1\r\n\r\n", ids[i].name);
        if (ids[i].id == LM_HDR_CONTENT_LENGTH || ids[i].id == LM_HDR_HOST) {
            LM_CHECK(parse_req(s, &req, h, 8) > 0);
        } else if (parse_req(s, &req, h, 8) <= 0) {
            continue; /* TE in 1.0 etc.; checked elsewhere */
        }
        LM_CHECK_EQ_INT(h[0].id, ids[i].id);
    }
}

LM_TEST(test_chunked_after_done)
{
    char b[] = "3\r\nabc\r\n0\r\n\r\nGET";
    lm_chunked_t d = { 0 };
    size_t n = sizeof(b) - 1, r;
    LM_CHECK_EQ_INT(lm_chunked_decode(&d, b, &n, &r), LM_OK);
    LM_CHECK_EQ_INT(n, 3);
    LM_CHECK_EQ_INT(r, 3);
    LM_CHECK(memcmp(b, "abcGET", 6) == 0);
    char more[] = "xy";
    n = 2;
    LM_CHECK_EQ_INT(lm_chunked_decode(&d, more, &n, &r), LM_OK);
    LM_CHECK_EQ_INT(n, 0);
    LM_CHECK_EQ_INT(r, 2);
    char bad[] = "x\r\n";
    lm_chunked_t e = { 0 };
    n = 3;
    LM_CHECK_EQ_INT(lm_chunked_decode(&e, bad, &n, &r), LM_ERROR);
    LM_CHECK(e.error_reason != NULL);
    n = 3;
    LM_CHECK_EQ_INT(lm_chunked_decode(&e, more, &n, &r), LM_ERROR);
}

LM_TEST(test_chunked_large)
{
    /* a 100000-byte chunk fed in odd-sized pieces */
    size_t total = 100000;
    char *src = malloc(total + 64), *buf = malloc(4096), *out = malloc(total);
    int hl = sprintf(src, "%zx;ext=\"q\\\"x\"\r\n", total);
    for (size_t i = 0; i < total; i++)
        src[hl + (int)i] = (char)('a' + i % 26);
    memcpy(src + hl + total, "\r\n0\r\n\r\n", 7);
    size_t src_len = (size_t)hl + total + 7, pos = 0, got = 0, piece = 1;
    lm_chunked_t d = { 0 };
    int rc = LM_AGAIN;
    while (pos < src_len && rc == LM_AGAIN) {
        size_t n = LM_MIN(piece, src_len - pos), r;
        memcpy(buf, src + pos, n);
        pos += n;
        rc = lm_chunked_decode(&d, buf, &n, &r);
        memcpy(out + got, buf, n);
        got += n;
        piece = piece * 3 % 4093 + 1;
    }
    LM_CHECK_EQ_INT(rc, LM_OK);
    LM_CHECK_EQ_INT(got, total);
    LM_CHECK(memcmp(out, src + hl, total) == 0);
    free(src);
    free(buf);
    free(out);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        g_dir = argv[1];
    if (argc > 2)
        g_smuggling = argv[2];
    guard_init();
    LM_RUN(test_golden_files);
    LM_RUN(test_smuggling_list);
    LM_RUN(test_guard_page_overread);
    LM_RUN(test_header_capacity);
    LM_RUN(test_head_limit_exact);
    LM_RUN(test_pipelined);
    LM_RUN(test_find_and_token);
    LM_RUN(test_chunked_after_done);
    LM_RUN(test_chunked_large);
    return lm_test_summary("http1");
}

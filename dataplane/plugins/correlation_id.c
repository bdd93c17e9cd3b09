/*
 * correlation_id.c - the correlation-id plugin (Kong 3.x).
 *
 * config: header_name ("Kong-Request-ID"), generator ("uuid#counter"; "uuid",
 * "tracker"), echo_downstream (false).
 *
 * A request without the header (or with it empty) gets one for the upstream:
 *   uuid          a random version 4 UUID per request
 *   uuid#counter  a UUID made once per worker, "#", a per-worker counter from 1
 *   tracker       server address-port-pid-connection-connection requests-time
 *                 (seconds with milliseconds), as nginx variables give it to Kong
 * A value the client sent is passed on untouched. With echo_downstream the
 * value goes back on the response too.
 */
#include "lm_plugins.h"

#include <stdio.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

enum { LM__GEN_UUID, LM__GEN_COUNTER, LM__GEN_TRACKER };

static const char *const lm__generators[] = { "uuid", "uuid#counter", "tracker", NULL };

typedef struct {
    lm_str_t header;
    int generator;
    bool echo;
} lm__cid_conf_t;

static const lm_schema_field_t lm__fields[] = {
    { .name = "header_name", .type = LM_SF_STRING, .def = "\"Kong-Request-ID\"", .check = lm_schema_check_header_name },
    { .name = "generator", .type = LM_SF_STRING, .required = true, .def = "\"uuid#counter\"", .one_of = lm__generators },
    { .name = "echo_downstream", .type = LM_SF_BOOLEAN, .required = true, .def = "false" },
    { 0 },
};

static int lm__configure(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out)
{
    lm__cid_conf_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    const char *h = lm_schema_str(config, "header_name");
    c->header = lm_str(h ? h : "Kong-Request-ID");
    const char *g = lm_schema_str(config, "generator");
    for (int i = 0; lm__generators[i]; i++)
        if (strcmp(g, lm__generators[i]) == 0)
            c->generator = i;
    c->echo = lm_schema_bool(config, "echo_downstream");
    *out = c;
    return LM_OK;
}

/* per thread (a worker is a thread): a random generator, the worker's UUID and counter */
static __thread uint64_t lm__rng[2];
static __thread char lm__worker_uuid[37];
static __thread uint64_t lm__counter;

static uint64_t lm__next(void)
{
    if (!lm__rng[0] && !lm__rng[1]) {
        if (getrandom(lm__rng, sizeof(lm__rng), 0) != (ssize_t)sizeof(lm__rng) || (!lm__rng[0] && !lm__rng[1])) {
            lm__rng[0] = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&lm__rng;
            lm__rng[1] = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
        }
    }
    /* xorshift128+ */
    uint64_t s1 = lm__rng[0];
    const uint64_t s0 = lm__rng[1];
    lm__rng[0] = s0;
    s1 ^= s1 << 23;
    lm__rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return lm__rng[1] + s0;
}

/* a version 4 UUID, lower-case (37 bytes with the NUL) */
static void lm__uuid(char out[37])
{
    unsigned char b[16];
    uint64_t a = lm__next(), c = lm__next();
    memcpy(b, &a, 8);
    memcpy(b + 8, &c, 8);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

static lm_str_t lm__generate(lm_ctx_t *ctx, const lm__cid_conf_t *c)
{
    lm_arena_t *a = lm_ctx_arena(ctx);
    if (c->generator == LM__GEN_UUID) {
        char *u = lm_arena_alloc(a, 37);
        lm__uuid(u);
        return (lm_str_t){ u, 36 };
    }
    if (c->generator == LM__GEN_COUNTER) {
        if (!lm__worker_uuid[0])
            lm__uuid(lm__worker_uuid);
        return lm_str(lm_arena_sprintf(a, "%s#%llu", lm__worker_uuid, (unsigned long long)++lm__counter));
    }
    char ip[64];
    int port;
    lm_ctx_server_addr(ctx, ip, sizeof(ip), &port);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return lm_str(lm_arena_sprintf(a, "%s-%d-%d-%llu-%llu-%lld.%03ld", ip, port, (int)getpid(),
                                   (unsigned long long)lm_ctx_connection_id(ctx),
                                   (unsigned long long)lm_ctx_connection_requests(ctx), (long long)ts.tv_sec,
                                   ts.tv_nsec / 1000000));
}

static int lm__access(lm_ctx_t *ctx, const void *conf)
{
    const lm__cid_conf_t *c = conf;
    lm_str_t v;
    if (!lm_ctx_header(ctx, c->header, &v) || v.len == 0) {
        v = lm__generate(ctx, c);
        lm_ctx_set_header(ctx, c->header, v);
    }
    if (c->echo) {
        lm_str_t *keep = lm_ctx_alloc(ctx, sizeof(*keep));
        *keep = v;
        lm_ctx_set(ctx, &lm_plugin_correlation_id, keep);
    }
    return LM_OK;
}

static int lm__header_filter(lm_ctx_t *ctx, const void *conf)
{
    const lm__cid_conf_t *c = conf;
    if (!c->echo)
        return LM_OK;
    const lm_str_t *v = lm_ctx_get(ctx, &lm_plugin_correlation_id);
    if (v)
        lm_ctx_resp_set_header(ctx, c->header, *v);
    return LM_OK;
}

const lm_plugin_ops_t lm_plugin_correlation_id = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "correlation-id",
    .priority = 100001,
    .schema = lm__fields,
    .configure = lm__configure,
    .access = lm__access,
    .header_filter = lm__header_filter,
};

/*
 * opentelemetry.c - the opentelemetry plugin (Kong 3.x): a span per request
 * exported over OTLP/HTTP (protobuf, as Kong sends it) in batches, with W3C
 * trace context propagated to the upstream.
 *
 * config: traces_endpoint (or the deprecated endpoint; http/https URL),
 * headers, resource_attributes, queue (Kong 3.x queue, max_batch_size 200),
 * the deprecated batch_span_count / batch_flush_delay (still map to the
 * queue), connect_timeout (1000 ms), send_timeout (5000), read_timeout
 * (5000), http_response_header_for_traceid, header_type ("preserve"; w3c,
 * ignore), sampling_rate (0..1; unset: every request - there is no kong.conf
 * tracing_sampling_rate here), propagation {extract, inject, clear,
 * default_format ("w3c")}, logs_endpoint (accepted, nothing is exported to it).
 * Propagation formats other than w3c (b3, jaeger, ot, aws, gcp, datadog)
 * are refused at configure: only W3C trace context is implemented.
 *
 * access: a valid incoming `traceparent` (unless header_type is "ignore" or
 * propagation.extract leaves w3c out) gives the trace id, the parent span and
 * the sampling decision (parent-based); otherwise a new trace id is drawn
 * and sampled with probability sampling_rate. The upstream gets
 * `traceparent: 00-<trace>-<balancer span>-<flags>` (and the client's
 * tracestate); propagation.clear headers are removed.
 * log: a sampled request becomes two spans - "kong" (SERVER: the whole
 * request; http.method, http.url, http.host, http.scheme, http.flavor,
 * http.client_ip, net.peer.ip, kong.request.id, http.status_code, ERROR
 * status from 500) and "kong.balancer" (CLIENT: the upstream try;
 * net.peer.ip/port/name, try_count, http.status_code) - queued (lm_logq.h)
 * and sent as ExportTraceServiceRequest batches with the resource
 * (service.name "kong", service.instance.id, service.version, then
 * resource_attributes) and the scope "kong-internal".
 */
#include "lm_plugins.h"
#include "lm_logq.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static const char *const lm__formats[] = { "preserve", "ignore", "b3", "b3-single", "w3c", "jaeger", "ot", "aws",
                                           "gcp", "datadog", "instana", NULL };

static const lm_schema_field_t lm__queue_fields[] = {
    { .name = "max_batch_size", .type = LM_SF_INTEGER, .required = true, .def = "200", .has_min = true, .min = 1,
      .has_max = true, .max = 1000000 },
    { .name = "max_coalescing_delay", .type = LM_SF_NUMBER, .required = true, .def = "1", .has_min = true,
      .min = 0, .has_max = true, .max = 3600 },
    { .name = "max_entries", .type = LM_SF_INTEGER, .required = true, .def = "10000", .has_min = true, .min = 1,
      .has_max = true, .max = 1000000 },
    { .name = "max_bytes", .type = LM_SF_INTEGER },
    { .name = "max_retry_time", .type = LM_SF_NUMBER, .def = "60" },
    { .name = "initial_retry_delay", .type = LM_SF_NUMBER, .def = "0.01", .has_min = true, .min = 0.001,
      .has_max = true, .max = 1000000 },
    { .name = "max_retry_delay", .type = LM_SF_NUMBER, .def = "60", .has_min = true, .min = 0.001,
      .has_max = true, .max = 1000000 },
    { .name = "concurrency_limit", .type = LM_SF_INTEGER, .def = "1" },
    { 0 },
};

static const lm_schema_field_t lm__propagation_fields[] = {
    { .name = "extract", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .one_of = lm__formats },
    { .name = "inject", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .one_of = lm__formats },
    { .name = "clear", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .check = lm_schema_check_header_name },
    { .name = "default_format", .type = LM_SF_STRING, .required = true, .def = "\"w3c\"", .one_of = lm__formats },
    { 0 },
};

static const char *lm__check_url(const cJSON *v)
{
    return lm_logq_http_check_url(v->valuestring);
}

static const lm_schema_field_t lm__fields[] = {
    { .name = "traces_endpoint", .type = LM_SF_STRING, .check = lm__check_url },
    { .name = "endpoint", .type = LM_SF_STRING, .check = lm__check_url },
    { .name = "logs_endpoint", .type = LM_SF_STRING, .check = lm__check_url },
    { .name = "headers", .type = LM_SF_MAP, .elem = LM_SF_STRING },
    { .name = "resource_attributes", .type = LM_SF_MAP, .elem = LM_SF_STRING },
    { .name = "queue", .type = LM_SF_RECORD, .fields = lm__queue_fields },
    { .name = "batch_span_count", .type = LM_SF_INTEGER },
    { .name = "batch_flush_delay", .type = LM_SF_INTEGER },
    { .name = "connect_timeout", .type = LM_SF_INTEGER, .def = "1000", .has_min = true, .min = 0 },
    { .name = "send_timeout", .type = LM_SF_INTEGER, .def = "5000", .has_min = true, .min = 0 },
    { .name = "read_timeout", .type = LM_SF_INTEGER, .def = "5000", .has_min = true, .min = 0 },
    { .name = "http_response_header_for_traceid", .type = LM_SF_STRING, .check = lm_schema_check_header_name },
    { .name = "header_type", .type = LM_SF_STRING, .def = "\"preserve\"", .one_of = lm__formats },
    { .name = "sampling_rate", .type = LM_SF_NUMBER, .has_min = true, .min = 0, .has_max = true, .max = 1 },
    { .name = "propagation", .type = LM_SF_RECORD, .fields = lm__propagation_fields },
    { 0 },
};

typedef struct {
    lm_logq_t *q;
    double sampling_rate;
    bool extract; /* read an incoming traceparent */
    bool inject;  /* send traceparent upstream */
    lm_str_t traceid_header; /* ptr NULL: none */
    const char **clear;
    size_t num_clear;
} lm__conf_t;

typedef struct {
    unsigned char trace[16], root[8], balancer[8], parent[8];
    bool has_parent, sampled;
    lm_str_t tracestate;
} lm__trace_t;

/* ---- protobuf (the OTLP messages this plugin writes) ---------------------------- */

static void lm__pb_varint(lm_buf_t *b, uint64_t v)
{
    char tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    lm_buf_append(b, tmp, n);
}

static void lm__pb_len(lm_buf_t *b, int field, const void *p, size_t n)
{
    lm__pb_varint(b, (uint64_t)field << 3 | 2);
    lm__pb_varint(b, n);
    if (n)
        lm_buf_append(b, p, n);
}

static void lm__pb_str(lm_buf_t *b, int field, const char *s)
{
    lm__pb_len(b, field, s, strlen(s));
}

static void lm__pb_fixed64(lm_buf_t *b, int field, uint64_t v)
{
    lm__pb_varint(b, (uint64_t)field << 3 | 1);
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(v >> (8 * i));
    lm_buf_append(b, (const char *)le, 8);
}

static void lm__pb_varint_field(lm_buf_t *b, int field, uint64_t v)
{
    lm__pb_varint(b, (uint64_t)field << 3);
    lm__pb_varint(b, v);
}

/* KeyValue {1: key, 2: AnyValue {1: string_value | 3: int_value}} as field `field` */
static void lm__pb_attr_str(lm_buf_t *b, int field, const char *k, const char *v, size_t vlen)
{
    lm_buf_t any = { 0 }, kv = { 0 };
    lm__pb_len(&any, 1, v, vlen);
    lm__pb_str(&kv, 1, k);
    lm__pb_len(&kv, 2, any.buf, any.len);
    lm__pb_len(b, field, kv.buf, kv.len);
    lm_buf_free(&any);
    lm_buf_free(&kv);
}

static void lm__pb_attr_int(lm_buf_t *b, int field, const char *k, int64_t v)
{
    lm_buf_t any = { 0 }, kv = { 0 };
    lm__pb_varint_field(&any, 3, (uint64_t)v);
    lm__pb_str(&kv, 1, k);
    lm__pb_len(&kv, 2, any.buf, any.len);
    lm__pb_len(b, field, kv.buf, kv.len);
    lm_buf_free(&any);
    lm_buf_free(&kv);
}

/* ---- the queue's sink: resource, scope and the HTTP client ----------------------- */

typedef struct {
    lm_logq_http_t *http;
    lm_buf_t resource, scope; /* encoded Resource and InstrumentationScope */
} lm__sink_t;

static const char *lm__endpoint(const cJSON *config)
{
    const char *e = lm_schema_str(config, "traces_endpoint");
    return e ? e : lm_schema_str(config, "endpoint");
}

static void *lm__sink_new(const cJSON *config)
{
    lm__sink_t *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->http = lm_logq_http_new(lm__endpoint(config), "POST", "application/x-protobuf", lm_schema_get(config, "headers"),
                               (int)lm_schema_num(config, "connect_timeout"), (int)lm_schema_num(config, "send_timeout"),
                               (int)lm_schema_num(config, "read_timeout"), 60000);
    const cJSON *ra = lm_schema_get(config, "resource_attributes");
    char host[256] = "", inst[80];
    gethostname(host, sizeof(host) - 1);
    snprintf(inst, sizeof(inst), "%s:%d", host, (int)getpid());
    const char *base[][2] = { { "service.name", "kong" }, { "service.instance.id", inst },
                              { "service.version", LM_VERSION } };
    for (size_t i = 0; i < LM_ARRAY_SIZE(base); i++)
        if (!ra || !cJSON_GetObjectItemCaseSensitive(ra, base[i][0]))
            lm__pb_attr_str(&s->resource, 1, base[i][0], base[i][1], strlen(base[i][1]));
    for (const cJSON *it = ra ? ra->child : NULL; it; it = it->next)
        if (cJSON_IsString(it))
            lm__pb_attr_str(&s->resource, 1, it->string, it->valuestring, strlen(it->valuestring));
    lm__pb_str(&s->scope, 1, "kong-internal");
    lm__pb_str(&s->scope, 2, LM_VERSION);
    return s;
}

static void lm__sink_free(void *p)
{
    lm__sink_t *s = p;
    lm_logq_http_free(s->http);
    lm_buf_free(&s->resource);
    lm_buf_free(&s->scope);
    free(s);
}

/* each entry is one or more encoded `spans` fields of ScopeSpans */
static int lm__send(void *p, char *const *e, const size_t *lens, size_t n, char *err, size_t errlen)
{
    lm__sink_t *s = p;
    lm_buf_t ss = { 0 }, rs = { 0 }, req = { 0 };
    lm__pb_len(&ss, 1, s->scope.buf, s->scope.len);
    for (size_t i = 0; i < n; i++)
        lm_buf_append(&ss, e[i], lens[i]);
    lm__pb_len(&rs, 1, s->resource.buf ? s->resource.buf : "", s->resource.len);
    lm__pb_len(&rs, 2, ss.buf, ss.len);
    lm__pb_len(&req, 1, rs.buf, rs.len);
    int rc = lm_logq_http_send(s->http, req.buf, req.len, err, errlen);
    lm_buf_free(&ss);
    lm_buf_free(&rs);
    lm_buf_free(&req);
    return rc;
}

static const lm_logq_kind_t lm__kind = { "opentelemetry", lm__send, lm__sink_new, lm__sink_free };

/* ---- configure ---------------------------------------------------------------- */

static bool lm__w3c_only(lm_plugin_cfg_ctx_t *cc, const cJSON *list, const char *field)
{
    int i = 0;
    for (const cJSON *it = list ? list->child : NULL; it; it = it->next, i++) {
        const char *f = it->valuestring;
        if (strcmp(f, "w3c") != 0 && strcmp(f, "preserve") != 0 && strcmp(f, "ignore") != 0) {
            char path[64];
            snprintf(path, sizeof(path), "%s[%d]", field, i + 1);
            lm_plugin_error(cc, path, "propagation format '%s' is not supported by this data plane (w3c only)", f);
            return false;
        }
    }
    return true;
}

static bool lm__has(const cJSON *list, const char *v)
{
    for (const cJSON *it = list ? list->child : NULL; it; it = it->next)
        if (strcmp(it->valuestring, v) == 0)
            return true;
    return false;
}

static int lm__configure(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out)
{
    if (!lm__endpoint(config) && !lm_schema_str(config, "logs_endpoint")) {
        lm_plugin_error(cc, NULL, "at least one of these fields must be non-empty: 'traces_endpoint', 'logs_endpoint'");
        return LM_ERROR;
    }
    const cJSON *prop = lm_schema_get(config, "propagation");
    const cJSON *extract = lm_schema_get(prop, "extract"), *inject = lm_schema_get(prop, "inject");
    const char *ht = lm_schema_str(config, "header_type");
    const char *def = lm_schema_str(prop, "default_format");
    if (!lm__w3c_only(cc, extract, "propagation.extract") || !lm__w3c_only(cc, inject, "propagation.inject"))
        return LM_ERROR;
    if (strcmp(def, "w3c") != 0) {
        lm_plugin_error(cc, "propagation.default_format", "propagation format '%s' is not supported by this data plane (w3c only)", def);
        return LM_ERROR;
    }
    if (ht && strcmp(ht, "preserve") != 0 && strcmp(ht, "ignore") != 0 && strcmp(ht, "w3c") != 0) {
        lm_plugin_error(cc, "header_type", "header type '%s' is not supported by this data plane (w3c only)", ht);
        return LM_ERROR;
    }
    lm__conf_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    const cJSON *rate = lm_schema_get(config, "sampling_rate");
    c->sampling_rate = rate ? rate->valuedouble : 1.0;
    c->extract = !(ht && strcmp(ht, "ignore") == 0) && (!extract || lm__has(extract, "w3c"));
    c->inject = !inject || lm__has(inject, "w3c") || lm__has(inject, "preserve");
    const char *th = lm_schema_str(config, "http_response_header_for_traceid");
    if (th)
        c->traceid_header = lm_str(lm_arena_strdup(cc->arena, th));
    const cJSON *clear = lm_schema_get(prop, "clear");
    c->num_clear = (size_t)cJSON_GetArraySize(clear);
    c->clear = lm_arena_calloc(cc->arena, (c->num_clear + 1) * sizeof(*c->clear));
    size_t i = 0;
    for (const cJSON *it = clear ? clear->child : NULL; it; it = it->next)
        c->clear[i++] = lm_arena_strdup(cc->arena, it->valuestring);
    if (lm__endpoint(config)) {
        lm_logq_conf_t qc;
        lm_logq_conf_from(&qc, lm_schema_get(config, "queue"));
        if (lm_schema_get(config, "batch_span_count") && lm_schema_num(config, "batch_span_count") >= 1)
            qc.max_batch_size = (size_t)lm_schema_num(config, "batch_span_count");
        if (lm_schema_get(config, "batch_flush_delay"))
            qc.max_coalescing_delay = lm_schema_num(config, "batch_flush_delay");
        c->q = lm_logq_get(&lm__kind, config, &qc);
    }
    *out = c;
    return LM_OK;
}

/* ---- ids and trace context -------------------------------------------------------- */

static __thread uint64_t lm__rng[2];

static uint64_t lm__next(void)
{
    if (!lm__rng[0] && !lm__rng[1]) {
        if (getrandom(lm__rng, sizeof(lm__rng), 0) != (ssize_t)sizeof(lm__rng) || (!lm__rng[0] && !lm__rng[1])) {
            lm__rng[0] = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&lm__rng;
            lm__rng[1] = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
        }
    }
    uint64_t s1 = lm__rng[0]; /* xorshift128+ */
    const uint64_t s0 = lm__rng[1];
    lm__rng[0] = s0;
    s1 ^= s1 << 23;
    lm__rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return lm__rng[1] + s0;
}

static void lm__random_id(unsigned char *out, size_t n)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = lm__next();
        memcpy(out + i, &v, n - i < 8 ? n - i : 8);
    }
}

static bool lm__all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static int lm__hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static bool lm__unhex(const char *s, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int h = lm__hexval(s[2 * i]), l = lm__hexval(s[2 * i + 1]);
        if (h < 0 || l < 0)
            return false;
        out[i] = (unsigned char)(h << 4 | l);
    }
    return true;
}

static void lm__hex(const unsigned char *p, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* W3C traceparent: "vv-<32 hex>-<16 hex>-<2 hex>", version ff invalid, ids not all zero */
static bool lm__parse_traceparent(lm_str_t v, lm__trace_t *t)
{
    if (v.len < 55 || v.ptr[2] != '-' || v.ptr[35] != '-' || v.ptr[52] != '-' || (v.len > 55 && v.ptr[55] != '-'))
        return false;
    unsigned char ver, flags;
    if (!lm__unhex(v.ptr, &ver, 1) || ver == 0xff || (ver == 0 && v.len != 55))
        return false;
    if (!lm__unhex(v.ptr + 3, t->trace, 16) || !lm__unhex(v.ptr + 36, t->parent, 8) || !lm__unhex(v.ptr + 53, &flags, 1))
        return false;
    if (lm__all_zero(t->trace, 16) || lm__all_zero(t->parent, 8))
        return false;
    t->has_parent = true;
    t->sampled = flags & 1;
    return true;
}

static lm__trace_t *lm__start(lm_ctx_t *ctx, const lm__conf_t *c)
{
    lm__trace_t *t = lm_ctx_alloc(ctx, sizeof(*t));
    memset(t, 0, sizeof(*t));
    lm_str_t v;
    if (!(c->extract && lm_ctx_header(ctx, LM_STR("traceparent"), &v) && lm__parse_traceparent(v, t))) {
        memset(t, 0, sizeof(*t));
        do
            lm__random_id(t->trace, 16);
        while (lm__all_zero(t->trace, 16));
        t->sampled = c->sampling_rate >= 1.0 || (double)(lm__next() >> 11) / 9007199254740992.0 < c->sampling_rate;
    } else if (lm_ctx_header(ctx, LM_STR("tracestate"), &v)) {
        t->tracestate = lm_arena_strdup_str(lm_ctx_arena(ctx), v);
    }
    do
        lm__random_id(t->root, 8);
    while (lm__all_zero(t->root, 8));
    do
        lm__random_id(t->balancer, 8);
    while (lm__all_zero(t->balancer, 8));
    lm_ctx_set(ctx, &lm_plugin_opentelemetry, t);
    return t;
}

static int lm__access(lm_ctx_t *ctx, const void *conf)
{
    const lm__conf_t *c = conf;
    lm__trace_t *t = lm__start(ctx, c);
    for (size_t i = 0; i < c->num_clear; i++)
        lm_ctx_remove_header(ctx, lm_str(c->clear[i]));
    if (c->inject) {
        char tid[33], sid[17];
        lm__hex(t->trace, 16, tid);
        lm__hex(t->balancer, 8, sid);
        char *tp = lm_arena_sprintf(lm_ctx_arena(ctx), "00-%s-%s-%s", tid, sid, t->sampled ? "01" : "00");
        lm_ctx_set_header(ctx, LM_STR("traceparent"), lm_str(tp));
    }
    return LM_OK;
}

static int lm__header_filter(lm_ctx_t *ctx, const void *conf)
{
    const lm__conf_t *c = conf;
    if (!c->traceid_header.ptr)
        return LM_OK;
    lm__trace_t *t = lm_ctx_get(ctx, &lm_plugin_opentelemetry);
    if (!t)
        t = lm__start(ctx, c);
    char tid[33];
    lm__hex(t->trace, 16, tid);
    lm_ctx_resp_set_header(ctx, c->traceid_header, lm_str(lm_arena_strdup(lm_ctx_arena(ctx), tid)));
    return LM_OK;
}

/* ---- spans ------------------------------------------------------------------------ */

static void lm__span(lm_buf_t *out, const lm__trace_t *t, const unsigned char *id, const unsigned char *parent,
                     const char *name, int kind, uint64_t start_ns, uint64_t end_ns, const lm_buf_t *attrs, int status)
{
    lm_buf_t s = { 0 };
    lm__pb_len(&s, 1, t->trace, 16);
    lm__pb_len(&s, 2, id, 8);
    if (t->tracestate.len && parent == t->parent)
        lm__pb_len(&s, 3, t->tracestate.ptr, t->tracestate.len);
    if (parent)
        lm__pb_len(&s, 4, parent, 8);
    lm__pb_str(&s, 5, name);
    lm__pb_varint_field(&s, 6, (uint64_t)kind);
    lm__pb_fixed64(&s, 7, start_ns);
    lm__pb_fixed64(&s, 8, end_ns);
    if (attrs->len)
        lm_buf_append(&s, attrs->buf, attrs->len);
    if (status) {
        lm_buf_t st = { 0 };
        lm__pb_varint_field(&st, 3, (uint64_t)status);
        lm__pb_len(&s, 15, st.buf, st.len);
        lm_buf_free(&st);
    }
    lm__pb_len(out, 2, s.buf, s.len); /* ScopeSpans.spans */
    lm_buf_free(&s);
}

static void lm__log(lm_ctx_t *ctx, const void *conf)
{
    const lm__conf_t *c = conf;
    if (!c->q)
        return;
    lm__trace_t *t = lm_ctx_get(ctx, &lm_plugin_opentelemetry);
    if (!t)
        t = lm__start(ctx, c);
    if (!t->sampled)
        return;
    lm_ctx_latencies_t lat;
    lm_ctx_latencies(ctx, &lat);
    uint64_t start = (uint64_t)lm_ctx_started_at(ctx) * 1000000ull;
    uint64_t end = start + (uint64_t)lat.request * 1000000ull;
    int status = lm_ctx_status(ctx);

    lm_buf_t a = { 0 }, out = { 0 };
    lm_str_t m = lm_ctx_method(ctx), host = lm_ctx_host(ctx), path = lm_ctx_raw_path(ctx), q = lm_ctx_raw_query(ctx);
    const char *scheme = lm_ctx_scheme(ctx);
    lm__pb_attr_str(&a, 9, "http.method", m.ptr, m.len);
    char *url = lm_arena_sprintf(lm_ctx_arena(ctx), "%s://%.*s%.*s%s%.*s", scheme, (int)host.len, host.ptr ? host.ptr : "",
                                 (int)path.len, path.ptr, q.ptr ? "?" : "", q.ptr ? (int)q.len : 0, q.ptr ? q.ptr : "");
    lm__pb_attr_str(&a, 9, "http.url", url, strlen(url));
    lm__pb_attr_str(&a, 9, "http.host", host.ptr ? host.ptr : "", host.len);
    lm__pb_attr_str(&a, 9, "http.scheme", scheme, strlen(scheme));
    const char *fl = lm_ctx_http_version(ctx);
    lm__pb_attr_str(&a, 9, "http.flavor", fl, strlen(fl));
    const char *ip = lm_ctx_client_ip(ctx);
    lm__pb_attr_str(&a, 9, "http.client_ip", ip, strlen(ip));
    lm__pb_attr_str(&a, 9, "net.peer.ip", ip, strlen(ip));
    const char *rid = lm_ctx_request_id(ctx);
    lm__pb_attr_str(&a, 9, "kong.request.id", rid, strlen(rid));
    const lm_route_t *route = lm_ctx_route(ctx);
    const lm_service_t *svc = lm_ctx_service(ctx);
    if (route && route->name)
        lm__pb_attr_str(&a, 9, "kong.route.name", route->name, strlen(route->name));
    if (svc && svc->name)
        lm__pb_attr_str(&a, 9, "kong.service.name", svc->name, strlen(svc->name));
    lm__pb_attr_int(&a, 9, "http.status_code", status);
    lm__span(&out, t, t->root, t->has_parent ? t->parent : NULL, "kong", 2 /* SERVER */, start, end, &a,
             status >= 500 ? 2 /* ERROR */ : 0);

    char uip[64];
    int uport;
    if (lat.proxy >= 0 && lm_ctx_upstream_addr(ctx, uip, sizeof(uip), &uport)) {
        lm_buf_t b = { 0 };
        lm__pb_attr_int(&b, 9, "try_count", lm_ctx_tries(ctx));
        lm__pb_attr_str(&b, 9, "net.peer.ip", uip, strlen(uip));
        lm__pb_attr_int(&b, 9, "net.peer.port", uport);
        if (svc && svc->host)
            lm__pb_attr_str(&b, 9, "net.peer.name", svc->host, strlen(svc->host));
        lm__pb_attr_int(&b, 9, "http.status_code", status);
        uint64_t bstart = start + (uint64_t)(lat.kong - lat.receive) * 1000000ull;
        uint64_t bend = bstart + (uint64_t)(lat.proxy + lat.receive) * 1000000ull;
        lm__span(&out, t, t->balancer, t->root, "kong.balancer", 3 /* CLIENT */, bstart, bend, &b,
                 status >= 500 ? 2 : 0);
        lm_buf_free(&b);
    }
    lm_logq_push(c->q, out.buf, out.len);
    lm_buf_free(&a);
    lm_buf_free(&out);
}

const lm_plugin_ops_t lm_plugin_opentelemetry = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "opentelemetry",
    .priority = 14,
    .schema = lm__fields,
    .configure = lm__configure,
    .access = lm__access,
    .header_filter = lm__header_filter,
    .log = lm__log,
};

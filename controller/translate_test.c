/*
 * translate_test.c - golden tests of lm_translate.
 *
 * Each controller/testdata/translate/NAME.in.yaml holds
 *   options: {ingressClass: ..., controllerName: ...}   (optional)
 *   items: [ Kubernetes objects with apiVersion and kind ]
 * (a Secret may carry stringData: the test turns it into base64 data as the
 * API server would). NAME.out.json is the expected result: the document, the
 * broken objects ("Kind ns/name: Reason: message") and the Ingresses that
 * made it in. LIMEN_UPDATE_GOLDEN=1 rewrites the goldens (review them!).
 * Every case also checks that the document is valid, that it is the text the
 * validator last accepted (the controller sends that text), and that shuffled
 * input gives the same bytes. Plus the 5k scale run (timed, not asserted).
 *
 * LIMEN_TRANSLATE_BENCH=1 runs the sync benchmark instead (see bench() below):
 *   make build/rel/controller/translate_test &&
 *   LIMEN_TRANSLATE_BENCH=1 build/rel/controller/translate_test
 * (LIMEN_TRANSLATE_BENCH_N=5000 objects, _ITER=20 iterations, _TRIM=0: no
 * malloc_trim between syncs).
 */
#include "lm_test.h"
#include "lm_translate.h"
#include "lm_config.h"
#include "lm_plugin_rt.h"
#include "translate_internal.h"
#include "kube_internal.h"

#include <dirent.h>
#include <malloc.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define DIR_TESTDATA "controller/testdata/translate"

/* the canonical text of the last document validate accepted (the controller
 * sends that text instead of printing lm_translate's document: they must match) */
static char *accepted_json;

static int validate(cJSON *doc, void *errs)
{
    cJSON_free(accepted_json);
    accepted_json = NULL;
    lm_config_t *cfg = lm_config_build(doc, errs);
    if (cfg == NULL)
        return LM_ERROR;
    int rc = lm_plugins_validate(cfg, errs);
    if (rc == LM_OK && ((lm_config_errors_t *)errs)->count == 0) {
        accepted_json = cfg->canonical_json;
        cfg->canonical_json = NULL;
    }
    lm_config_free(cfg);
    return rc;
}

/* after lm_translate: its document is the text validate last accepted, if any */
static bool accepted_matches(const cJSON *doc)
{
    if (accepted_json == NULL)
        return true;
    char *flat = cJSON_PrintUnformatted(doc);
    bool same = flat && strcmp(flat, accepted_json) == 0;
    cJSON_free(flat);
    cJSON_free(accepted_json);
    accepted_json = NULL;
    return same;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    buf[got] = '\0';
    if (len)
        *len = got;
    return buf;
}

static int write_file(const char *path, const char *data)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    fputs(data, f);
    fclose(f);
    return 0;
}

static char *b64_encode(const char *in, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(n / 3 * 4 + 5);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned char)in[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/* ---- input ------------------------------------------------------------- */

typedef struct {
    const cJSON **v;
    size_t n;
} bucket_t;

typedef struct {
    cJSON *root;
    bucket_t b[9];
    char *class_name, *controller_name;
} input_t;

static const char *const kinds[9] = { "IngressClass", "Ingress", "Service", "EndpointSlice", "Secret",
                                      "Plugin", "ClusterPlugin", "Consumer", "UpstreamPolicy" };

static void stringdata_to_data(cJSON *secret)
{
    cJSON *sd = cJSON_GetObjectItemCaseSensitive(secret, "stringData");
    if (sd == NULL)
        return;
    cJSON *data = cJSON_GetObjectItemCaseSensitive(secret, "data");
    if (data == NULL)
        data = cJSON_AddObjectToObject(secret, "data");
    cJSON *it;
    cJSON_ArrayForEach(it, sd) {
        if (!cJSON_IsString(it))
            continue;
        char *e = b64_encode(it->valuestring, strlen(it->valuestring));
        cJSON_AddStringToObject(data, it->string, e);
        free(e);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(secret, "stringData");
}

static void input_index(input_t *in)
{
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(in->root, "items");
    size_t n = (size_t)cJSON_GetArraySize(items);
    for (size_t k = 0; k < 9; k++) {
        in->b[k].v = calloc(n + 1, sizeof(cJSON *));
        in->b[k].n = 0;
    }
    cJSON *it;
    cJSON_ArrayForEach(it, items) {
        const char *kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "kind"));
        for (size_t k = 0; kind && k < 9; k++) {
            if (strcmp(kind, kinds[k]) == 0) {
                if (k == 4)
                    stringdata_to_data(it);
                in->b[k].v[in->b[k].n++] = it;
            }
        }
    }
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(in->root, "options");
    in->class_name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(opts, "ingressClass"));
    in->controller_name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(opts, "controllerName"));
}

static void input_free(input_t *in)
{
    for (size_t k = 0; k < 9; k++)
        free(in->b[k].v);
    cJSON_Delete(in->root);
}

static lm_translate_in_t to_tin(const input_t *in)
{
    lm_translate_in_t t;
    memset(&t, 0, sizeof(t));
    lm_kobjs_t *dst[9] = { &t.ingress_classes, &t.ingresses, &t.services, &t.endpoint_slices,
                           &t.secrets, &t.plugins, &t.cluster_plugins, &t.consumers,
                           &t.upstream_policies };
    for (size_t k = 0; k < 9; k++) {
        dst[k]->items = (const cJSON *const *)in->b[k].v;
        dst[k]->count = in->b[k].n;
    }
    t.ingress_class = in->class_name;
    t.controller_name = in->controller_name;
    t.validate = validate;
    return t;
}

/* the golden form: JSON with one broken object a line */
static void sb_add(char **buf, size_t *len, const char *s)
{
    size_t n = strlen(s);
    *buf = realloc(*buf, *len + n + 1);
    memcpy(*buf + *len, s, n + 1);
    *len += n;
}

static char *result_text(const lm_translate_out_t *out)
{
    char *buf = NULL;
    size_t len = 0;
    sb_add(&buf, &len, "{\n\t\"broken\": [");
    for (size_t i = 0; i < out->num_broken; i++) {
        const lm_broken_t *b = &out->broken[i];
        char line[4096];
        snprintf(line, sizeof(line), "%s %s%s%s: %s: %s", b->kind, b->namespace,
                 b->namespace[0] ? "/" : "", b->name, b->reason, b->message);
        cJSON *str = cJSON_CreateString(line);
        char *q = cJSON_PrintUnformatted(str);
        sb_add(&buf, &len, i ? ",\n\t\t" : "\n\t\t");
        sb_add(&buf, &len, q);
        cJSON_free(q);
        cJSON_Delete(str);
    }
    sb_add(&buf, &len, out->num_broken ? "\n\t],\n" : "],\n");
    cJSON *ing = cJSON_CreateStringArray((const char *const *)out->ingresses, (int)out->num_ingresses);
    char *q = cJSON_PrintUnformatted(ing);
    char tmp[64];
    snprintf(tmp, sizeof(tmp), ",\n\t\"rounds\": %u,\n\t\"document\": ", out->rounds);
    sb_add(&buf, &len, "\t\"ingresses\": ");
    sb_add(&buf, &len, q);
    sb_add(&buf, &len, tmp);
    cJSON_free(q);
    cJSON_Delete(ing);
    char *doc = cJSON_Print(out->doc);
    for (char *p = doc, *nl; *p; p = nl + 1) {
        nl = strchr(p, '\n');
        if (nl == NULL) {
            sb_add(&buf, &len, p);
            break;
        }
        *nl = '\0';
        sb_add(&buf, &len, p);
        sb_add(&buf, &len, "\n\t");
    }
    cJSON_free(doc);
    sb_add(&buf, &len, "\n}\n");
    return buf;
}

/* xorshift: the same shuffles every run */
static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void shuffle(input_t *in)
{
    for (size_t k = 0; k < 9; k++) {
        bucket_t *b = &in->b[k];
        for (size_t i = b->n; i > 1; i--) {
            size_t j = rng() % i;
            const cJSON *t = b->v[i - 1];
            b->v[i - 1] = b->v[j];
            b->v[j] = t;
        }
    }
}

static bool doc_valid(const cJSON *doc)
{
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    int rc = validate(cJSON_Duplicate(doc, 1), &errs);
    cJSON_free(accepted_json);
    accepted_json = NULL;
    if (rc != LM_OK) {
        char *s = lm_config_errors_format(&errs);
        fprintf(stderr, "invalid document:\n%s", s);
        free(s);
    }
    lm_config_errors_free(&errs);
    return rc == LM_OK;
}

static void first_diff(const char *name, const char *want, const char *got)
{
    size_t line = 1;
    const char *w = want, *g = got;
    while (*w && *w == *g) {
        if (*w == '\n')
            line++;
        w++;
        g++;
    }
    const char *we = strchr(w, '\n'), *ge = strchr(g, '\n');
    fprintf(stderr, "  %s: first difference at line %zu:\n    want: %.*s\n    got:  %.*s\n", name, line,
            (int)(we ? (size_t)(we - w) : strlen(w)), w, (int)(ge ? (size_t)(ge - g) : strlen(g)), g);
}

static void run_case(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.in.yaml", DIR_TESTDATA, name);
    size_t len;
    char *text = read_file(path, &len);
    LM_CHECK(text != NULL);
    if (text == NULL)
        return;
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    input_t in;
    memset(&in, 0, sizeof(in));
    in.root = lm_config_parse(text, len, NULL, &errs);
    free(text);
    if (in.root == NULL) {
        char *s = lm_config_errors_format(&errs);
        LM_FAILF("%s: %s", path, s);
        free(s);
        lm_config_errors_free(&errs);
        return;
    }
    lm_config_errors_free(&errs);
    input_index(&in);

    lm_translate_in_t tin = to_tin(&in);
    lm_translate_out_t out;
    LM_CHECK_EQ_INT(lm_translate(&tin, &out), LM_OK);
    if (!accepted_matches(out.doc))
        LM_FAILF("%s: the document is not the text the validator accepted", name);
    if (!doc_valid(out.doc))
        LM_FAILF("%s: the document is not valid", name);
    char *got = result_text(&out);
    char *got_flat = cJSON_PrintUnformatted(out.doc);
    lm_translate_out_free(&out);

    snprintf(path, sizeof(path), "%s/%s.out.json", DIR_TESTDATA, name);
    const char *upd = getenv("LIMEN_UPDATE_GOLDEN");
    if (upd && upd[0] == '1') {
        LM_CHECK(write_file(path, got) == 0);
    } else {
        char *want = read_file(path, NULL);
        if (want == NULL) {
            LM_FAILF("%s: missing (LIMEN_UPDATE_GOLDEN=1 writes it)", path);
        } else if (strcmp(want, got) != 0) {
            LM_FAILF("%s: differs from the golden", name);
            first_diff(name, want, got);
        }
        free(want);
    }

    /* shuffled input, same bytes */
    for (int s = 0; s < 3; s++) {
        shuffle(&in);
        tin = to_tin(&in);
        lm_translate_out_t o2;
        LM_CHECK_EQ_INT(lm_translate(&tin, &o2), LM_OK);
        if (!accepted_matches(o2.doc))
            LM_FAILF("%s: the document is not the text the validator accepted", name);
        char *flat = cJSON_PrintUnformatted(o2.doc);
        char *all = result_text(&o2);
        if (strcmp(flat, got_flat) != 0 || strcmp(all, got) != 0)
            LM_FAILF("%s: shuffled input gave another result", name);
        cJSON_free(flat);
        free(all);
        lm_translate_out_free(&o2);
    }
    free(got);
    cJSON_free(got_flat);
    input_free(&in);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

LM_TEST(test_goldens)
{
    DIR *d = opendir(DIR_TESTDATA);
    LM_CHECK(d != NULL);
    if (d == NULL)
        return;
    char *names[256];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 256) {
        size_t l = strlen(e->d_name);
        if (l > 8 && strcmp(e->d_name + l - 8, ".in.yaml") == 0)
            names[n++] = strndup(e->d_name, l - 8);
    }
    closedir(d);
    qsort(names, n, sizeof(char *), cmp_str);
    LM_CHECK(n > 0);
    for (size_t i = 0; i < n; i++) {
        int before = lm__t_cur_failed;
        lm__t_cur_failed = 0;
        run_case(names[i]);
        if (lm__t_cur_failed)
            fprintf(stderr, "  case %s failed\n", names[i]);
        lm__t_cur_failed |= before;
        free(names[i]);
    }
}

/* ---- the ingress class rules, directly -------------------------------------- */

static cJSON *J(const char *s)
{
    cJSON *j = cJSON_Parse(s);
    if (j == NULL)
        fprintf(stderr, "bad JSON in test: %s\n", s);
    return j;
}

LM_TEST(test_ingress_class)
{
    cJSON *ours = J("{\"metadata\":{\"name\":\"limen-x\"},\"spec\":{\"controller\":\"limen.dev/ingress-controller\"}}");
    cJSON *other = J("{\"metadata\":{\"name\":\"nginx\"},\"spec\":{\"controller\":\"k8s.io/ingress-nginx\"}}");
    cJSON *def = J("{\"metadata\":{\"name\":\"limen-def\",\"annotations\":{\"ingressclass.kubernetes.io/is-default-class\":\"true\"}},"
                   "\"spec\":{\"controller\":\"limen.dev/ingress-controller\"}}");
    cJSON *limen_other = J("{\"metadata\":{\"name\":\"limen\"},\"spec\":{\"controller\":\"someone.else/x\"}}");
    const cJSON *classes[4] = { ours, other, def, limen_other };
    lm_translate_in_t in;
    memset(&in, 0, sizeof(in));
    in.ingress_classes.items = classes;
    in.ingress_classes.count = 2;
    cJSON *by_class = J("{\"spec\":{\"ingressClassName\":\"limen-x\"}}");
    cJSON *by_other = J("{\"spec\":{\"ingressClassName\":\"nginx\"}}");
    cJSON *by_name = J("{\"spec\":{\"ingressClassName\":\"limen\"}}");
    cJSON *by_ann = J("{\"metadata\":{\"annotations\":{\"kubernetes.io/ingress.class\":\"limen\"}}}");
    cJSON *by_ann_other = J("{\"metadata\":{\"annotations\":{\"kubernetes.io/ingress.class\":\"nginx\"}}}");
    cJSON *none = J("{\"metadata\":{\"name\":\"x\"},\"spec\":{}}");
    LM_CHECK(lm_translate_ingress_is_ours(&in, by_class));
    LM_CHECK(!lm_translate_ingress_is_ours(&in, by_other));
    LM_CHECK(lm_translate_ingress_is_ours(&in, by_name)); /* no IngressClass "limen": the name counts */
    LM_CHECK(lm_translate_ingress_is_ours(&in, by_ann));
    LM_CHECK(!lm_translate_ingress_is_ours(&in, by_ann_other));
    LM_CHECK(!lm_translate_ingress_is_ours(&in, none));
    in.ingress_classes.count = 3; /* + a default class of ours */
    LM_CHECK(lm_translate_ingress_is_ours(&in, none));
    LM_CHECK(!lm_translate_ingress_is_ours(&in, by_ann_other));
    in.ingress_classes.count = 4; /* an IngressClass "limen" of someone else's */
    LM_CHECK(!lm_translate_ingress_is_ours(&in, by_name));
    in.ingress_class = "mine";
    in.controller_name = "example.com/ctl";
    in.ingress_classes.count = 2;
    LM_CHECK(!lm_translate_ingress_is_ours(&in, by_class));
    LM_CHECK(!lm_translate_ingress_is_ours(&in, by_ann));
    cJSON *mine = J("{\"metadata\":{\"annotations\":{\"kubernetes.io/ingress.class\":\"mine\"}}}");
    LM_CHECK(lm_translate_ingress_is_ours(&in, mine));
    cJSON *all[] = { ours, other, def, limen_other, by_class, by_other, by_name, by_ann, by_ann_other, none, mine };
    for (size_t i = 0; i < LM_ARRAY_SIZE(all); i++)
        cJSON_Delete(all[i]);
}

/* ---- validators the translation cannot satisfy at once ------------------------ */

/* refuses every service, naming it by path only (no tags): traced by path */
static int validate_by_path(cJSON *doc, void *errs)
{
    cJSON *svcs = cJSON_GetObjectItemCaseSensitive(doc, "services");
    int n = cJSON_GetArraySize(svcs);
    for (int i = 0; i < n; i++) {
        char p[64];
        snprintf(p, sizeof(p), "services[%d]", i);
        lm_config_errors_add(errs, p, "service", NULL, NULL, "refused by the test");
    }
    cJSON_Delete(doc);
    return n ? LM_ERROR : LM_OK;
}

/* refuses any document with services, naming nothing: the last resort */
static int validate_nowhere(cJSON *doc, void *errs)
{
    int n = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "services"));
    if (n)
        lm_config_errors_add(errs, "", NULL, NULL, NULL, "refused by the test");
    cJSON_Delete(doc);
    return n ? LM_ERROR : LM_OK;
}

LM_TEST(test_unattributable)
{
    cJSON *svc = J("{\"metadata\":{\"name\":\"web\",\"namespace\":\"default\"},\"spec\":{\"ports\":[{\"port\":80}]}}");
    cJSON *ing = J("{\"metadata\":{\"name\":\"a\",\"namespace\":\"default\"},\"spec\":{\"ingressClassName\":\"limen\","
                   "\"rules\":[{\"http\":{\"paths\":[{\"path\":\"/\",\"pathType\":\"Prefix\","
                   "\"backend\":{\"service\":{\"name\":\"web\",\"port\":{\"number\":80}}}}]}}]}}");
    const cJSON *svcs[] = { svc }, *ings[] = { ing };
    lm_translate_in_t in;
    memset(&in, 0, sizeof(in));
    in.services.items = svcs;
    in.services.count = 1;
    in.ingresses.items = ings;
    in.ingresses.count = 1;
    lm_translate_out_t out;

    in.validate = validate_by_path;
    LM_CHECK_EQ_INT(lm_translate(&in, &out), LM_OK);
    LM_CHECK(cJSON_GetObjectItemCaseSensitive(out.doc, "services") == NULL);
    LM_CHECK_EQ_INT(out.rounds, 2);
    LM_CHECK_EQ_INT(out.num_broken, 2);
    LM_CHECK_EQ_INT(out.num_ingresses, 0);
    if (out.num_broken == 2) {
        LM_CHECK_STR(out.broken[0].kind, "Ingress");
        LM_CHECK_STR(out.broken[0].message, "backend Service \"web\" is invalid");
        LM_CHECK_STR(out.broken[1].kind, "Service");
        LM_CHECK_STR(out.broken[1].message, "service: refused by the test");
    }
    lm_translate_out_free(&out);

    in.validate = validate_nowhere;
    LM_CHECK_EQ_INT(lm_translate(&in, &out), LM_OK);
    char *flat = cJSON_PrintUnformatted(out.doc);
    LM_CHECK_STR(flat, "{\"_format_version\":\"3.0\"}");
    cJSON_free(flat);
    LM_CHECK_EQ_INT(out.num_broken, 2);
    if (out.num_broken == 2) {
        LM_CHECK_STR(out.broken[0].kind, "");
        LM_CHECK_STR(out.broken[0].message, "refused by the test");
        LM_CHECK_STR(out.broken[1].message, "the document could not be repaired: nothing is configured");
    }
    lm_translate_out_free(&out);
    cJSON_Delete(svc);
    cJSON_Delete(ing);
}

/* ---- scale --------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

LM_TEST(test_scale_5k)
{
    enum { N = 5000 };
    cJSON **ings = malloc(N * sizeof(cJSON *)), **svcs = malloc(N * sizeof(cJSON *)),
          **eps = malloc(N * sizeof(cJSON *));
    char buf[2048];
    for (int i = 0; i < N; i++) {
        snprintf(buf, sizeof(buf),
                 "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"svc-%d\",\"namespace\":\"ns-%d\","
                 "\"uid\":\"00000000-0000-4000-8000-%012d\"},\"spec\":{\"ports\":[{\"name\":\"http\",\"port\":80,"
                 "\"targetPort\":8080}]}}", i, i % 50, i);
        svcs[i] = J(buf);
        snprintf(buf, sizeof(buf),
                 "{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":{\"name\":\"svc-%d-abc\","
                 "\"namespace\":\"ns-%d\",\"labels\":{\"kubernetes.io/service-name\":\"svc-%d\"}},\"addressType\":\"IPv4\","
                 "\"ports\":[{\"name\":\"http\",\"port\":8080}],\"endpoints\":["
                 "{\"addresses\":[\"10.%d.%d.1\"],\"conditions\":{\"ready\":true}},"
                 "{\"addresses\":[\"10.%d.%d.2\"],\"conditions\":{\"ready\":true}},"
                 "{\"addresses\":[\"10.%d.%d.3\"],\"conditions\":{\"ready\":false}}]}",
                 i, i % 50, i, i / 256, i % 256, i / 256, i % 256, i / 256, i % 256);
        eps[i] = J(buf);
        snprintf(buf, sizeof(buf),
                 "{\"apiVersion\":\"networking.k8s.io/v1\",\"kind\":\"Ingress\",\"metadata\":{\"name\":\"ing-%d\","
                 "\"namespace\":\"ns-%d\",\"uid\":\"10000000-0000-4000-8000-%012d\"},\"spec\":{\"ingressClassName\":\"limen\","
                 "\"rules\":[{\"host\":\"h%d.example.com\",\"http\":{\"paths\":["
                 "{\"path\":\"/api\",\"pathType\":\"Prefix\",\"backend\":{\"service\":{\"name\":\"svc-%d\",\"port\":{\"number\":80}}}},"
                 "{\"path\":\"/exact\",\"pathType\":\"Exact\",\"backend\":{\"service\":{\"name\":\"svc-%d\",\"port\":{\"name\":\"http\"}}}}"
                 "]}}]}}", i, i % 50, i, i, i, i);
        ings[i] = J(buf);
    }
    lm_translate_in_t in;
    memset(&in, 0, sizeof(in));
    in.ingresses.items = (const cJSON *const *)ings;
    in.ingresses.count = N;
    in.services.items = (const cJSON *const *)svcs;
    in.services.count = N;
    in.endpoint_slices.items = (const cJSON *const *)eps;
    in.endpoint_slices.count = N;
    in.validate = validate;
    double t0 = now_s();
    lm_translate_out_t out;
    LM_CHECK_EQ_INT(lm_translate(&in, &out), LM_OK);
    double t1 = now_s();
    LM_CHECK(accepted_matches(out.doc));
    LM_CHECK_EQ_INT(out.num_broken, 0);
    LM_CHECK_EQ_INT(out.num_ingresses, N);
    LM_CHECK_EQ_INT(out.rounds, 1);
    LM_CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(out.doc, "services")), N);
    LM_CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(out.doc, "upstreams")), N);
    /* the same with no validator (lm_config_build only) */
    in.validate = NULL;
    lm_translate_out_t out2;
    double t2 = now_s();
    LM_CHECK_EQ_INT(lm_translate(&in, &out2), LM_OK);
    double t3 = now_s();
    printf("translate: 5000 Ingresses + 5000 Services + 5000 EndpointSlices: %.0f ms "
           "(validation with plugin schemas), %.0f ms (lm_config_build only)\n",
           (t1 - t0) * 1e3, (t3 - t2) * 1e3);
    lm_translate_out_free(&out);
    lm_translate_out_free(&out2);
    for (int i = 0; i < N; i++) {
        cJSON_Delete(ings[i]);
        cJSON_Delete(svcs[i]);
        cJSON_Delete(eps[i]);
    }
    free(ings);
    free(svcs);
    free(eps);
}

/* ---- benchmark (LIMEN_TRANSLATE_BENCH=1; LIMEN_TRANSLATE_BENCH_N, _ITER) ---------------
 *
 * A controller sync at scale, phase by phase, as lm__sync runs it: the
 * informers' sorted lists (objects frozen in an lm__kcache like the real
 * caches) and the secrets' dedupe, lm_translate (model, emit, the copy for the
 * validator, lm_config_build, lm_plugins_validate, freeing the validated copy,
 * outputs, cleanup), printing, md5, freeing the result, malloc_trim. The
 * objects are those of tools/bench_controller.py: N Services (headless, one
 * port), N EndpointSlices (one address), N Ingresses (one host, Prefix "/"),
 * N/5 of them with TLS naming their own kubernetes.io/tls Secret (a real RSA
 * 2048 pair made with openssl, base64 as the API server returns it). Prints
 * the document's md5 too: it must not change when the code gets faster. */

static uint64_t bv_build, bv_plugins, bv_free;
static char bv_hash[33];

/* as the controller's: keeps the accepted document's text and hash */
static int bench_validate(cJSON *doc, void *errs)
{
    uint64_t t0 = lm__now_ns();
    cJSON_free(accepted_json);
    accepted_json = NULL;
    lm_config_t *cfg = lm_config_build(doc, errs);
    uint64_t t1 = lm__now_ns();
    bv_build += t1 - t0;
    if (cfg == NULL)
        return LM_ERROR;
    int rc = lm_plugins_validate(cfg, errs);
    uint64_t t2 = lm__now_ns();
    if (rc == LM_OK && ((lm_config_errors_t *)errs)->count == 0) {
        accepted_json = cfg->canonical_json;
        cfg->canonical_json = NULL;
        memcpy(bv_hash, cfg->hash, sizeof(bv_hash));
    }
    lm_config_free(cfg);
    bv_plugins += t2 - t1;
    bv_free += lm__now_ns() - t2;
    return rc;
}

static char *bench_pem_b64(const char *path)
{
    size_t n;
    char *pem = read_file(path, &n);
    if (pem == NULL)
        return NULL;
    char *b = b64_encode(pem, n);
    free(pem);
    return b;
}

static void bench_put(lm__kcache_t *c, const char *json)
{
    cJSON *o = cJSON_Parse(json);
    if (o == NULL) {
        fprintf(stderr, "bench: bad JSON %s\n", json);
        exit(1);
    }
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(o, "metadata");
    const char *ns = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(md, "namespace"));
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(md, "name"));
    char key[512];
    size_t kl;
    lm__kcache_key(key, sizeof(key), ns, name, &kl);
    lm__kentry_t *old = lm__kcache_put(c, lm__kcache_freeze(c, key, kl, o));
    free(old);
    cJSON_Delete(o);
}

enum { BK_CLASS, BK_ING, BK_SVC, BK_EPS, BK_TLS, BK_CRED, BK_KCRED, BK_PCFG, BK_NUM };

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int bench(void)
{
    const char *e = getenv("LIMEN_TRANSLATE_BENCH_N");
    int n = e ? atoi(e) : 5000;
    e = getenv("LIMEN_TRANSLATE_BENCH_ITER");
    int iters = e ? atoi(e) : 20;
    if (n < 5 || iters < 1)
        return 2;
    e = getenv("LIMEN_TRANSLATE_BENCH_TRIM"); /* 0: no malloc_trim after each sync */
    bool trim = !e || strcmp(e, "0") != 0;
    e = getenv("LIMEN_TRANSLATE_BENCH_PRINT"); /* 1: print and hash out.doc, as lm__sync did */
    bool print_anyway = e && strcmp(e, "1") == 0;
    char *kept = NULL; /* the last document's text, kept like lm__sync keeps c->doc_json */
    long rss_kb = 0;
    /* made once, kept in build/ so that every run (and every version of the
     * code) sees the same document, so the md5s compare */
    const char *cpath = "build/translate-bench/c.pem", *kpath = "build/translate-bench/k.pem";
    if (access(cpath, R_OK) != 0 || access(kpath, R_OK) != 0) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "mkdir -p build/translate-bench && openssl req -x509 -newkey rsa:2048 -nodes "
                 "-days 3650 -subj /CN=bench.example.com -keyout %s -out %s >/dev/null 2>&1", kpath, cpath);
        if (system(cmd) != 0) {
            fprintf(stderr, "bench: openssl failed\n");
            return 2;
        }
    }
    char *crt = bench_pem_b64(cpath), *key = bench_pem_b64(kpath);
    if (!crt || !key)
        return 2;

    lm__kcache_t caches[BK_NUM];
    for (int k = 0; k < BK_NUM; k++)
        lm__kcache_init(&caches[k]);
    size_t cap = strlen(crt) + strlen(key) + 4096;
    char *buf = malloc(cap);
    bench_put(&caches[BK_CLASS], "{\"apiVersion\":\"networking.k8s.io/v1\",\"kind\":\"IngressClass\",\"metadata\":"
              "{\"name\":\"limen\",\"uid\":\"c0000000-0000-4000-8000-000000000000\",\"resourceVersion\":\"1\"},"
              "\"spec\":{\"controller\":\"limen.dev/ingress-controller\"}}");
    for (int i = 0; i < n; i++) {
        snprintf(buf, cap,
                 "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"s%d\",\"namespace\":\"bench\","
                 "\"uid\":\"00000000-0000-4000-8000-%012d\",\"resourceVersion\":\"%d\"},\"spec\":{\"clusterIP\":\"None\","
                 "\"type\":\"ClusterIP\",\"ports\":[{\"name\":\"http\",\"protocol\":\"TCP\",\"port\":80,\"targetPort\":8080}]},"
                 "\"status\":{\"loadBalancer\":{}}}", i, i, 1000 + i);
        bench_put(&caches[BK_SVC], buf);
        snprintf(buf, cap,
                 "{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":{\"name\":\"s%d-1\","
                 "\"namespace\":\"bench\",\"uid\":\"20000000-0000-4000-8000-%012d\",\"resourceVersion\":\"%d\","
                 "\"labels\":{\"kubernetes.io/service-name\":\"s%d\"}},\"addressType\":\"IPv4\","
                 "\"ports\":[{\"name\":\"http\",\"port\":8080,\"protocol\":\"TCP\"}],\"endpoints\":["
                 "{\"addresses\":[\"10.1.%d.%d\"],\"conditions\":{\"ready\":true,\"serving\":true,\"terminating\":false}}]}",
                 i, i, 20000 + i, i, (i / 250) % 256, 1 + i % 250);
        bench_put(&caches[BK_EPS], buf);
        char tls[256] = "";
        if (i < n / 5)
            snprintf(tls, sizeof(tls), ",\"tls\":[{\"hosts\":[\"h%d.bench.example.com\"],\"secretName\":\"tls%d\"}]", i, i);
        snprintf(buf, cap,
                 "{\"apiVersion\":\"networking.k8s.io/v1\",\"kind\":\"Ingress\",\"metadata\":{\"name\":\"i%d\","
                 "\"namespace\":\"bench\",\"uid\":\"10000000-0000-4000-8000-%012d\",\"resourceVersion\":\"%d\","
                 "\"generation\":1},\"spec\":{\"ingressClassName\":\"limen\",\"rules\":[{\"host\":\"h%d.bench.example.com\","
                 "\"http\":{\"paths\":[{\"path\":\"/\",\"pathType\":\"Prefix\",\"backend\":{\"service\":{\"name\":\"s%d\","
                 "\"port\":{\"number\":80}}}}]}}]%s},\"status\":{\"loadBalancer\":{}}}",
                 i, i, 40000 + i, i, i, tls);
        bench_put(&caches[BK_ING], buf);
    }
    for (int i = 0; i < n / 5; i++) {
        snprintf(buf, cap,
                 "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"type\":\"kubernetes.io/tls\",\"metadata\":{\"name\":\"tls%d\","
                 "\"namespace\":\"bench\",\"uid\":\"30000000-0000-4000-8000-%012d\",\"resourceVersion\":\"%d\"},"
                 "\"data\":{\"tls.crt\":\"%s\",\"tls.key\":\"%s\"}}", i, i, 60000 + i, crt, key);
        bench_put(&caches[BK_TLS], buf);
    }
    free(buf);
    free(crt);
    free(key);

    enum { P_LISTS, P_MODEL, P_EMIT, P_DUP, P_BUILD, P_PLUGINS, P_VFREE, P_OUTPUTS, P_CLEANUP, P_TRANSLATE,
           P_PRINT, P_MD5, P_FREE, P_TRIM, P_TOTAL, P_NUM };
    static const char *const pname[P_NUM] = {
        "lists + secrets dedupe", "translate: model", "translate: emit", "translate: copy for validator",
        "validate: lm_config_build", "validate: lm_plugins_validate", "validate: free", "translate: outputs",
        "translate: cleanup", "lm_translate (all)", "cJSON_PrintUnformatted", "md5", "lm_translate_out_free",
        "malloc_trim", "sync total" };
    uint64_t *t[P_NUM];
    for (int p = 0; p < P_NUM; p++)
        t[p] = calloc((size_t)iters, sizeof(uint64_t));
    char hash[33] = "", first_hash[33] = "";
    size_t doc_len = 0;
    unsigned rounds = 0;
    int bad = 0;
    for (int it = 0; it < iters; it++) {
        bv_build = bv_plugins = bv_free = 0;
        uint64_t t0 = lm__now_ns();
        const cJSON **lists[BK_NUM];
        size_t counts[BK_NUM];
        for (int k = 0; k < BK_NUM; k++)
            counts[k] = lm__kcache_sorted(&caches[k], &lists[k]);
        /* the secrets' dedupe, as lm__sync does it */
        size_t nsec = counts[BK_TLS] + counts[BK_CRED] + counts[BK_KCRED] + counts[BK_PCFG];
        const cJSON **secrets = calloc(nsec ? nsec : 1, sizeof(*secrets));
        size_t ns = 0;
        for (int s = BK_TLS; s <= BK_PCFG; s++)
            for (size_t i = 0; i < counts[s]; i++) {
                const cJSON *o = lists[s][i];
                const cJSON *md = cJSON_GetObjectItemCaseSensitive(o, "metadata");
                bool dup = false;
                for (int p = BK_TLS; p < s && !dup; p++) {
                    char k[512];
                    size_t kl;
                    dup = lm__kcache_key(k, sizeof(k),
                                         cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(md, "namespace")),
                                         cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(md, "name")), &kl) &&
                          lm__kcache_get(&caches[p], k, kl) != NULL;
                }
                if (!dup)
                    secrets[ns++] = o;
            }
        lm_translate_in_t in;
        memset(&in, 0, sizeof(in));
        in.validate = bench_validate;
        in.ingress_classes = (lm_kobjs_t){ lists[BK_CLASS], counts[BK_CLASS] };
        in.ingresses = (lm_kobjs_t){ lists[BK_ING], counts[BK_ING] };
        in.services = (lm_kobjs_t){ lists[BK_SVC], counts[BK_SVC] };
        in.endpoint_slices = (lm_kobjs_t){ lists[BK_EPS], counts[BK_EPS] };
        in.secrets = (lm_kobjs_t){ secrets, ns };
        uint64_t t1 = lm__now_ns();
        lm_translate_out_t out;
        if (lm_translate(&in, &out) != LM_OK)
            bad = 1;
        uint64_t t2 = lm__now_ns();
        for (int k = 0; k < BK_NUM; k++)
            free(lists[k]);
        free(secrets);
        /* as lm__sync: the accepted text, else print and hash */
        char *json = accepted_json;
        accepted_json = NULL;
        if (json && print_anyway) { /* as the controller did before taking the accepted text */
            cJSON_free(json);
            json = NULL;
        }
        if (json && it == 0) { /* (not timed) */
            char *flat = cJSON_PrintUnformatted(out.doc);
            if (strcmp(flat, json) != 0)
                bad = 1;
            cJSON_free(flat);
        }
        uint64_t t2b = lm__now_ns(), t3, t4;
        if (json == NULL) {
            json = cJSON_PrintUnformatted(out.doc);
            t3 = lm__now_ns();
            unsigned char md[EVP_MAX_MD_SIZE];
            unsigned int mdn = 0;
            EVP_Digest(json, strlen(json), md, &mdn, EVP_md5(), NULL);
            for (unsigned int i = 0; i < mdn && i < 16; i++)
                snprintf(hash + 2 * i, 3, "%02x", md[i]);
            t4 = lm__now_ns();
        } else {
            memcpy(hash, bv_hash, sizeof(hash));
            t3 = t4 = lm__now_ns();
        }
        doc_len = strlen(json);
        if (out.num_broken || out.num_ingresses != (size_t)n)
            bad = 1;
        rounds = out.rounds;
        lm_translate_out_free(&out);
        uint64_t t5 = lm__now_ns();
        if (trim)
            malloc_trim(0);
        uint64_t t6 = lm__now_ns();
        cJSON_free(kept);
        kept = json;
        FILE *statm = fopen("/proc/self/statm", "r");
        long pages_total = 0, pages_rss = 0;
        if (statm && fscanf(statm, "%ld %ld", &pages_total, &pages_rss) == 2)
            rss_kb = pages_rss * (sysconf(_SC_PAGESIZE) / 1024);
        if (statm)
            fclose(statm);
        if (it == 0)
            memcpy(first_hash, hash, sizeof(hash));
        else if (strcmp(hash, first_hash) != 0)
            bad = 1;
        t[P_LISTS][it] = t1 - t0;
        t[P_MODEL][it] = lm__tstats.model;
        t[P_EMIT][it] = lm__tstats.emit;
        t[P_DUP][it] = lm__tstats.dup;
        t[P_BUILD][it] = bv_build;
        t[P_PLUGINS][it] = bv_plugins;
        t[P_VFREE][it] = bv_free;
        t[P_OUTPUTS][it] = lm__tstats.outputs;
        t[P_CLEANUP][it] = lm__tstats.cleanup;
        t[P_TRANSLATE][it] = t2 - t1;
        t[P_PRINT][it] = t3 - t2b;
        t[P_MD5][it] = t4 - t3;
        t[P_FREE][it] = t5 - t4;
        t[P_TRIM][it] = t6 - t5;
        t[P_TOTAL][it] = t6 - t0 - (t2b - t2);
    }
    printf("translate bench: %d Ingresses, %d Services, %d EndpointSlices, %d TLS Secrets; %d iterations; "
           "%u round(s); document %zu bytes, md5 %s%s\n", n, n, n, n / 5, iters, rounds, doc_len, hash,
           bad ? " (ERROR: broken objects, missing Ingresses or unstable output)" : "");
    printf("  %-32s %10s %10s %10s %10s\n", "phase (ms)", "first", "median", "mean", "min");
    for (int p = 0; p < P_NUM; p++) {
        uint64_t first = t[p][0], sum = 0;
        for (int i = 0; i < iters; i++)
            sum += t[p][i];
        qsort(t[p], (size_t)iters, sizeof(uint64_t), cmp_u64);
        printf("  %-32s %10.1f %10.1f %10.1f %10.1f\n", pname[p], first / 1e6, t[p][iters / 2] / 1e6,
               sum / 1e6 / iters, t[p][0] / 1e6);
        free(t[p]);
    }
    printf("  RSS after the last sync (text kept, malloc_trim done): %ld kB\n", rss_kb);
    cJSON_free(kept);
    for (int k = 0; k < BK_NUM; k++)
        lm__kcache_free(&caches[k]);
    return bad;
}

int main(void)
{
    const char *b = getenv("LIMEN_TRANSLATE_BENCH");
    if (b && b[0] == '1')
        return bench();
    LM_RUN(test_ingress_class);
    LM_RUN(test_goldens);
    LM_RUN(test_unattributable);
    LM_RUN(test_scale_5k);
    return lm_test_summary("translate");
}

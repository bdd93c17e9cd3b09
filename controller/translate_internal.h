/*
 * translate_internal.h - the translation's model, shared by translate*.c
 * (not part of the API: see lm_translate.h).
 *
 * lm_translate works in three steps:
 *   1. model (translate_ingress.c, translate_crd.c): every Kubernetes object
 *      taking part becomes an lm__obj_t; Ingresses become Kong routes grouped
 *      under Kong services (lm__ksvc_t, one per Service port) with upstreams
 *      and targets, TLS entries become certificates and SNIs, Consumers become
 *      consumers with credentials, Plugins attached by annotation become plugin
 *      entities (lm__pent_t). Problems found here exclude or report objects.
 *   2. emit (translate.c): the document from the model, skipping whatever
 *      depends on an excluded object; everything sorted.
 *   3. validate, trace every error to its object (entity tags, else the
 *      entity found at the error's path), exclude it, go to 2.
 * Memory: one arena per call (strings, vectors, model); cJSON values the
 * model owns are listed in ctx->owned and deleted at the end.
 */
#ifndef LM_TRANSLATE_INTERNAL_H
#define LM_TRANSLATE_INTERNAL_H

#include "lm_translate.h"
#include "lm_arena.h"
#include "lm_config.h"
#include "lm_map.h"

#define LM__ANN_LIMEN "limen.dev/"
#define LM__ANN_KONG "konghq.com/"

/* a growable pointer array in the arena */
typedef struct {
    void **v;
    size_t n, cap;
} lm__vec_t;

enum lm__otype {
    LM__O_INGRESS,
    LM__O_SERVICE,
    LM__O_SECRET,
    LM__O_PLUGIN,
    LM__O_CPLUGIN,
    LM__O_CONSUMER,
    LM__O_POLICY,
};

/* A Kubernetes object taking part in the translation. */
typedef struct lm__obj {
    int type;                  /* enum lm__otype */
    const cJSON *j;            /* the object (borrowed from the input) */
    const char *kind, *api_version, *group; /* static strings; group "" for core */
    const char *ns, *name, *uid;            /* ns "" when cluster-scoped, uid "" when none */
    const char *key;           /* "ns/name", or "name" when cluster-scoped */
    char **tags;               /* k8s-kind:..., made once */
    size_t num_tags;
    unsigned tags_static;      /* bit i: tags[i] is a string literal (emitted as a reference) */
    bool excluded;             /* left out of the document, for good */
    bool parsed;               /* data below filled (lazily, on first use) */
    void *data;                /* lm__svc_t, lm__ing_t, lm__plug_t, lm__cons_t, lm__policy_t */
    /* Ingress, Service, Consumer: the Plugins named by their plugins
     * annotation (lm__obj_t), and that annotation's key for messages */
    lm__vec_t plugins;
    const char *plugins_ann;
    /* Plugin, ClusterPlugin: the objects naming it (fail closed together) */
    lm__vec_t refs;
} lm__obj_t;

/* an Ingress's annotations */
typedef struct {
    bool strip_path, preserve_host;
    int redirect_code, regex_priority;
    char **methods; size_t num_methods;     /* NULL: not set */
    char **protocols; size_t num_protocols; /* NULL: http, https */
    char **aliases; size_t num_aliases;
    char **hnames; char ***hvalues; size_t *hnum; size_t num_headers; /* sorted by name */
    bool emitted;              /* a route or an SNI of it is in this round's document */
} lm__ing_t;

/* a Service's annotations and type */
typedef struct {
    const char *protocol, *path, *host_header;
    int connect_timeout, read_timeout, write_timeout, retries; /* -1: not set */
    const char *policy_ann;    /* the upstream-policy annotation key, or NULL */
    const char *policy_name;
    lm__obj_t *policy;         /* the UpstreamPolicy, or NULL (missing or none) */
    bool external;             /* type ExternalName */
    const char *external_name;
} lm__svc_t;

typedef struct lm__ksvc lm__ksvc_t;

/* a Kong route: the paths of one (Ingress, rule, backend) */
typedef struct {
    lm__obj_t *ing;
    char *name;
    lm__ksvc_t *svc;
    const char *host;          /* rule host or NULL */
    size_t rule;               /* spec.rules[rule] */
    bool is_default;           /* spec.defaultBackend */
    char **paths; size_t num_paths, cap_paths;
    bool emit;
} lm__route_t;

/* a Kong service: one Service port */
struct lm__ksvc {
    lm__obj_t *svc;
    char *name;                /* "NS.SVC.PORT" */
    char *host;                /* the upstream's name, or the ExternalName */
    int port;
    char *upstream;            /* "SVC.NS.PORT.svc"; NULL for ExternalName */
    char **targets; size_t num_targets; /* "ip:port", sorted, unique */
    lm__vec_t routes;          /* lm__route_t, sorted by name */
    bool emit;
};

/* a TLS Secret: one certificate */
typedef struct {
    lm__obj_t *secret;
    char *cert, *key;
    char id[37];
    lm__vec_t snis;            /* lm__sni_t, sorted by name */
    lm__vec_t uses;            /* lm__claim_t: every TLS entry naming the Secret */
    bool emit;
} lm__cert_t;

/* one Ingress TLS host naming one Secret */
typedef struct {
    const char *host;
    lm__cert_t *cert;
    lm__obj_t *ing;
    size_t tls, idx;           /* spec.tls[tls].hosts[idx] */
} lm__claim_t;

typedef struct {
    char *name;
    lm__cert_t *cert;
    lm__vec_t claims;          /* lm__claim_t of the winning Secret, Ingress order */
    bool dropped;              /* refused by the validator */
    lm__obj_t *emitted_by;     /* this round: the claimant whose tags it carries */
} lm__sni_t;

/* a Plugin or ClusterPlugin */
typedef struct {
    const char *plugin;        /* spec.plugin */
    cJSON *config;             /* owned by ctx->owned */
    bool enabled;
    const cJSON *protocols;    /* borrowed, or NULL */
    const char *instance_name;
    bool global;               /* ClusterPlugin labelled global: "true" */
    size_t uses;               /* plugin entities made from it */
} lm__plug_t;

enum { LM__SCOPE_GLOBAL, LM__SCOPE_SERVICE, LM__SCOPE_ROUTE, LM__SCOPE_CONSUMER };

/* a plugin entity: a Plugin applied to one scope */
typedef struct {
    lm__obj_t *plugin;
    int scope;
    void *target;              /* lm__ksvc_t, lm__route_t, lm__obj_t (Consumer) or NULL */
    const char *target_name;   /* service/route name, consumer username or id; "" global */
} lm__pent_t;

/* a credential of a Consumer */
typedef struct {
    const char *doc_key;       /* "keyauth_credentials", ..., "acls" */
    lm__obj_t *secret;         /* NULL: from spec.aclGroups */
    size_t idx;                /* spec.credentials[idx] */
    cJSON *fields;             /* owned by ctx->owned */
} lm__cred_t;

typedef struct {
    const char *username, *custom_id;
    char id[37];               /* set when there is no username (plugins refer to it) */
    lm__vec_t creds;           /* lm__cred_t */
} lm__cons_t;

typedef struct {
    cJSON *fields;             /* Kong upstream fields; owned by ctx->owned */
} lm__policy_t;

typedef struct {
    lm__obj_t *obj;            /* NULL: not attributable */
    char *message;
} lm__report_t;

typedef struct {
    const lm_translate_in_t *in;
    lm_arena_t *a;
    lm_map_t objs;             /* "Kind/ns/name" -> lm__obj_t */
    lm_map_t services, secrets, plugins, cplugins, policies; /* key -> lm__obj_t */
    lm_map_t slices;           /* "ns/service" -> lm__vec_t of const cJSON * */
    lm_map_t ksvcs;            /* Kong service name -> lm__ksvc_t */
    lm_map_t certs;            /* Secret key -> lm__cert_t */
    lm_map_t snis;             /* name -> lm__sni_t */
    lm__vec_t ingresses;       /* ours, lm__obj_t, sorted by key */
    lm__vec_t ksvc_v;          /* sorted by name */
    lm__vec_t cert_v;          /* sorted by Secret key */
    lm__vec_t claims;          /* lm__claim_t */
    lm__vec_t consumers;       /* lm__obj_t, sorted */
    lm__vec_t pents;           /* lm__pent_t, sorted */
    lm__vec_t plugin_objs;     /* every Plugin/ClusterPlugin parsed */
    lm__vec_t owned;           /* cJSON * to delete at the end */
    lm__vec_t reports;         /* lm__report_t */
    lm_map_t report_keys;
    bool changed;              /* an exclusion happened (the isolation loop's progress) */
} lm__tctx_t;

/* Where the last lm_translate spent its time (ns, summed over rounds), for the
 * benchmark in translate_test.c (LIMEN_TRANSLATE_BENCH=1). */
typedef struct {
    uint64_t model, emit, dup, validate, outputs, cleanup;
    unsigned rounds;
} lm__tstats_t;
extern lm__tstats_t lm__tstats;
uint64_t lm__now_ns(void);

/* ---- translate_util.c ---- */
void lm__vpush(lm_arena_t *a, lm__vec_t *v, void *p);
const cJSON *lm__jget(const cJSON *o, const char *key);
const char *lm__jstr(const cJSON *o, const char *key); /* string value or NULL */
const cJSON *lm__jpath(const cJSON *o, const char *a, const char *b); /* o.a.b */
const char *lm__label(const cJSON *obj, const char *name);
const char *lm__annotation(const cJSON *obj, const char *full_key);
/* "limen.dev/NAME", else "konghq.com/NAME"; *key = the key found */
const char *lm__ann(const cJSON *obj, const char *name, const char **key);
bool lm__parse_bool(const char *v, bool *out);
bool lm__parse_int(const char *v, long long min, long long max, int *out);
/* comma list: items trimmed, empty ones skipped; arena memory */
size_t lm__split(lm_arena_t *a, const char *v, char ***out);
/* base64 (standard alphabet, padding optional): arena, NUL-terminated; NULL if invalid */
char *lm__b64(lm_arena_t *a, const char *in, size_t *len);
/* a Secret's data[key], decoded; NULL if missing or not base64 */
char *lm__secret_value(lm_arena_t *a, const cJSON *secret, const char *key);
char *lm__lower(lm_arena_t *a, const char *s);
char *lm__cat(lm_arena_t *a, const char *x, const char *y); /* x + y, arena */
/* the strings concatenated (no printf: the translation builds a few hundred
 * thousand names and keys): into buf (false and "" if it does not fit), or
 * into the arena */
bool lm__join_buf(char *buf, size_t cap, const char *const *parts, size_t n);
char *lm__join_arena(lm_arena_t *a, const char *const *parts, size_t n);
#define LM__JOIN_BUF(buf, ...)                                                                            \
    lm__join_buf(buf, sizeof(buf), (const char *const[]){ __VA_ARGS__ },                                  \
                 sizeof((const char *const[]){ __VA_ARGS__ }) / sizeof(const char *))
#define LM__JOIN(a, ...)                                                                                  \
    lm__join_arena(a, (const char *const[]){ __VA_ARGS__ }, sizeof((const char *const[]){ __VA_ARGS__ }) / \
                   sizeof(const char *))
/* decimal digits of v into buf (>= 21 bytes); returns buf */
char *lm__utoa(char *buf, unsigned long long v);
int lm__strcmp_p(const void *a, const void *b); /* qsort over char * */
size_t lm__sort_unique(char **v, size_t n);

lm__obj_t *lm__obj_new(lm__tctx_t *ctx, int type, const cJSON *j);
lm__obj_t *lm__obj_find(lm__tctx_t *ctx, const char *kind, const char *ns, const char *name);
void lm__obj_tags(lm__tctx_t *ctx, lm__obj_t *o);
cJSON *lm__tags_json(lm__tctx_t *ctx, lm__obj_t *o);
const char *lm__reason(const lm__obj_t *o);
/* report a problem of o (NULL: of no object); deduplicated */
void lm__report(lm__tctx_t *ctx, lm__obj_t *o, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* report and leave o out (for good) */
void lm__exclude(lm__tctx_t *ctx, lm__obj_t *o, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- translate_ingress.c ---- */
void lm__ingress_build(lm__tctx_t *ctx, lm__obj_t *ing);
void lm__tls_resolve(lm__tctx_t *ctx); /* after every Ingress: SNI owners */
void lm__svc_parse(lm__tctx_t *ctx, lm__obj_t *svc);

/* ---- translate_crd.c ---- */
/* the Plugin (namespace ns) or ClusterPlugin of that name, parsed; NULL if none */
lm__obj_t *lm__plugin_find(lm__tctx_t *ctx, const char *ns, const char *name);
/* reads obj's plugins annotation into obj->plugins; false: obj excluded */
bool lm__plugins_annotation(lm__tctx_t *ctx, lm__obj_t *obj);
void lm__globals_build(lm__tctx_t *ctx);
void lm__consumer_build(lm__tctx_t *ctx, lm__obj_t *c);
lm__obj_t *lm__policy_find(lm__tctx_t *ctx, const char *ns, const char *name);
void lm__pent_add(lm__tctx_t *ctx, lm__obj_t *plugin, int scope, void *target, const char *target_name);

#endif

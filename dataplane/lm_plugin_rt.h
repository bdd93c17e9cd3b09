/*
 * lm_plugin_rt.h - the compiled plugin set of a snapshot (internal to the
 * data plane): every enabled plugin instance with its compiled config, which
 * instance applies to which (route, service, consumer), the per-route chains
 * the request path walks, and the credential and consumer indexes plugins
 * look things up in.
 */
#ifndef LM_PLUGIN_RT_H
#define LM_PLUGIN_RT_H

#include "lm_map.h"
#include "lm_plugin.h"

/* request protocols, for the `protocols` field of plugins */
#define LM_PROTO_HTTP 0x01
#define LM_PROTO_HTTPS 0x02
#define LM_PROTO_GRPC 0x04
#define LM_PROTO_GRPCS 0x08

typedef struct {
    const lm_plugin_ops_t *ops;
    const lm_plugin_t *ent;
    void *conf;
    uint32_t type;      /* index in lm_plugins[] */
    uint8_t protocols;  /* LM_PROTO_* */
    bool needs_body;    /* configure called lm_plugin_need_body */
} lm_plugin_inst_t;

/* The instances that apply when no consumer is known, one per plugin type. */
typedef struct {
    const lm_plugin_inst_t **by_type; /* [num_types], NULL where none applies */
    const lm_plugin_inst_t **list;    /* the non-NULL ones, highest priority first */
    size_t n;
    bool needs_body; /* some instance in list reads the request body */
} lm_plugin_chain_t;

enum { LM_CRED_KEYAUTH, LM_CRED_BASICAUTH, LM_CRED_JWT, LM_CRED_HMAC, LM_CRED_KINDS };

typedef struct {
    size_t num_types;
    lm_plugin_inst_t *insts;
    size_t num_insts;
    bool has_consumer_scoped; /* some instance names a consumer: resolve again once one is known */
    bool needs_body;          /* some instance reads the request body */
    lm_map_t scoped;          /* (type, route, service, consumer) -> instance */
    lm_plugin_chain_t global; /* global instances only: rewrite, and requests no route matched */
    lm_plugin_chain_t empty;
    lm_map_t creds[LM_CRED_KINDS]; /* lookup value -> lm_credential_t */
    lm_map_t consumers;            /* id and username -> lm_consumer_t */
    const char ***groups;          /* per consumer index: acl groups */
    size_t *num_groups;
} lm_plugin_rt_t;

/* Compiles every plugin of cfg (schema, then configure) and the indexes.
 * Memory from arena; LM_ERROR with every error reported. */
int lm_plugin_rt_build(lm_plugin_rt_t *rt, const lm_config_t *cfg, lm_arena_t *arena, lm_config_errors_t *errs);
void lm_plugin_rt_free(lm_plugin_rt_t *rt);

/* The consumer-less chain for a route (service may be NULL). */
void lm_plugin_rt_chain(lm_plugin_rt_t *rt, lm_arena_t *arena, const lm_route_t *route, lm_plugin_chain_t *out);

/* The instance of `type` for this route/service/consumer (each may be NULL),
 * by Kong's precedence. */
const lm_plugin_inst_t *lm_plugin_rt_resolve(const lm_plugin_rt_t *rt, uint32_t type, const lm_route_t *route,
                                             const lm_service_t *service, const lm_consumer_t *consumer);

/* Schema + configure of one plugin from a JSON config text, outside any
 * document (in-process tests): the compiled config (arena memory), or NULL
 * with *errs_out (malloc'd, caller frees) describing every error. */
void *lm_plugin_configure_json(const lm_plugin_ops_t *ops, lm_arena_t *arena, const char *json, char **errs_out);

/* Validates every plugin configuration of cfg (what --check and the
 * controller use): LM_OK or LM_ERROR with errors reported. */
int lm_plugins_validate(const lm_config_t *cfg, lm_config_errors_t *errs);

#endif

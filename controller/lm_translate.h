/*
 * lm_translate.h - Kubernetes objects to the Kong-format declarative document.
 *
 * A pure function of its input: the same objects give the same document
 * byte for byte (entities sorted, names stable), so the document's hash only
 * changes when behaviour does. No I/O, no clock, no Kubernetes client: the
 * controller hands in what its caches hold, the tests hand in JSON fixtures.
 *
 * One bad object never blocks the rest. Each entity carries the tags of the
 * object it came from (KIC's: "k8s-kind:Ingress", "k8s-namespace:NS",
 * "k8s-name:NAME", "k8s-uid:UID", "k8s-group:GROUP", "k8s-version:v1"). The
 * document is validated with the data plane's own validator (lm_config_build
 * + lm_plugins_validate); every error is traced back to its object by those
 * tags, that object's part is left out, and the rest is built again (a few
 * rounds at most). Objects that fail before validation (a missing Service,
 * an unknown Plugin named in an annotation, a bad annotation value) are
 * left out the same way. Every object left out is reported in `broken`
 * with a message naming the field, e.g.
 *   Ingress default/shop: annotation limen.dev/plugins: Plugin "rl" not found
 *
 * Names (stable: the same objects always give the same names):
 *   service   "NS.SVC.PORT"          one per Service port an Ingress backend uses
 *                                    (PORT: the Service port's number)
 *   upstream  "SVC.NS.PORT.svc"      the service's host; targets "IP:PORT" /
 *                                    "[IPv6]:PORT" weight 100 from the EndpointSlices
 *                                    (ready and not terminating), sorted; none for
 *                                    ExternalName Services (host = spec.externalName)
 *   route     "NS.INGRESS.R.P"       the paths of rule R going to one backend; P is
 *                                    the index of the rule's first path to it
 *             "NS.INGRESS.default"   spec.defaultBackend (path "/", no host)
 *   certificate id = lm_config_uuid("certificate:NS/SECRET"), one per TLS Secret
 *   consumer  by username; without one, id = lm_config_uuid("consumer:NS/NAME")
 *   plugin    no name; instance_name = spec.instanceName, suffixed with
 *             "-TARGET" (route/service name, consumer) when the Plugin makes
 *             several plugin entities
 * Tags: services, upstreams and targets carry the Service's; routes and SNIs the
 * Ingress's; certificates and credentials the Secret's; consumers (and their
 * spec.aclGroups acls) the Consumer's; plugins the Plugin's or ClusterPlugin's.
 * Order: services, routes, upstreams by name; certificates by Secret;
 * consumers by username (then namespace/name); plugins by (global, service,
 * route, consumer), target name, plugin name. Only non-empty arrays appear.
 *
 * Paths (KIC 3.x): Exact "/a" -> "~/a$"; Prefix "/a" -> "/a/", "~/a$" (Prefix "/"
 * -> "/"); ImplementationSpecific as given, "/~RE" -> "~RE"; regex
 * metacharacters of Exact and Prefix paths escaped. Route defaults (KIC's):
 * protocols http, https; strip_path false; preserve_host true;
 * https_redirect_status_code 426; regex_priority 0; path_handling "v0".
 * host-aliases apply to rules that have a host.
 *
 * Failing closed: an Ingress, Service or Consumer naming a Plugin that is
 * missing or broken is left out whole; a Service left out takes its routes
 * with it (the Ingress keeps its other routes and is reported). A broken
 * global ClusterPlugin is left out (reported). A broken UpstreamPolicy is left
 * out: its Services keep default balancing (reported). A credential Secret
 * that is missing or broken is left out of its Consumer (reported).
 *
 * Messages (the caller prefixes "Kind ns/name: "):
 *   annotation limen.dev/strip-path: expected "true" or "false"
 *   annotation konghq.com/plugins: Plugin "rl" is invalid
 *   spec.rules[0].http.paths[1].backend.service.name: Service "web" not found
 *   spec.tls[0].hosts[1]: host "a.example.com" is already served by Secret "ns/other"
 *   backend Service "web" is invalid
 *   route "ns.shop.0.0": paths[0]: invalid regex: ...      (the validator's, on an Ingress)
 *   config.minute: expected a number                      (the validator's, on a Plugin)
 *   spec.slots: value should be between 10 and 65536      (on an UpstreamPolicy)
 * An error the validator reports that no object can be blamed for is in
 * `broken` with kind "" and message "PATH: MESSAGE"; the entity at PATH is
 * removed (or, failing that, every entity: the document is always valid).
 */
#ifndef LM_TRANSLATE_H
#define LM_TRANSLATE_H

#include "lm_core.h"
#include <cjson/cJSON.h>

/* Objects of one kind as the API server returns them (each a cJSON object
 * with apiVersion?, kind?, metadata, spec, ...). Borrowed, read-only. The
 * order does not matter: the translation sorts. */
typedef struct {
    const cJSON *const *items;
    size_t count;
} lm_kobjs_t;

typedef struct {
    lm_kobjs_t ingress_classes;  /* networking.k8s.io/v1 IngressClass */
    lm_kobjs_t ingresses;        /* networking.k8s.io/v1 Ingress (all, also not ours) */
    lm_kobjs_t services;         /* v1 Service */
    lm_kobjs_t endpoint_slices;  /* discovery.k8s.io/v1 EndpointSlice */
    lm_kobjs_t secrets;          /* v1 Secret (type kubernetes.io/tls, or labelled limen.dev/credential,
                                  * konghq.com/credential or limen.dev/plugin-config) */
    lm_kobjs_t plugins;          /* limen.dev/v1 Plugin (namespaced) */
    lm_kobjs_t cluster_plugins;  /* limen.dev/v1 ClusterPlugin */
    lm_kobjs_t consumers;        /* limen.dev/v1 Consumer */
    lm_kobjs_t upstream_policies;/* limen.dev/v1 UpstreamPolicy */

    const char *ingress_class;   /* our class name; NULL = "limen" */
    const char *controller_name; /* NULL = "limen.dev/ingress-controller" */
    /* the validator; NULL = lm_config_build only. The controller passes one
     * that also runs lm_plugins_validate (plugin config schemas). Takes
     * ownership of doc, whose strings are borrowed from the output document:
     * free doc before returning, never keep it. Returns LM_OK or LM_ERROR
     * with errs filled. */
    int (*validate)(cJSON *doc, void *errs /* lm_config_errors_t * */);
} lm_translate_in_t;

/* An object left out (or partly left out) of the document. */
typedef struct {
    char *kind;       /* "Ingress", "Service", "Plugin", "ClusterPlugin", "Consumer", "Secret", ... */
    char *api_version;/* "networking.k8s.io/v1", "v1", "limen.dev/v1" */
    char *namespace;  /* "" for cluster-scoped */
    char *name;
    char *uid;        /* "" when the object has none */
    char *reason;     /* Event reason: "InvalidConfig" (Plugin, ClusterPlugin, UpstreamPolicy,
                       * Secret: their content is wrong) or "TranslationFailed" (the rest) */
    char *message;    /* e.g. "annotation limen.dev/plugins: Plugin \"rl\" not found" */
} lm_broken_t;

typedef struct {
    cJSON *doc;            /* the valid document ({"_format_version":"3.0", ...}); owned */
    lm_broken_t *broken;   /* sorted by kind, namespace, name, then message */
    size_t num_broken;
    /* Ingresses that made it into the document (ours and valid), for status
     * updates: "namespace/name" strings, sorted; owned */
    char **ingresses;
    size_t num_ingresses;
    unsigned rounds;       /* validation rounds it took (1 = valid at once) */
} lm_translate_out_t;

/* Returns LM_OK (out filled; doc always set, possibly with no entities) or
 * LM_ERROR only on allocation failure. */
int lm_translate(const lm_translate_in_t *in, lm_translate_out_t *out);
void lm_translate_out_free(lm_translate_out_t *out);

/* Which Ingresses are ours: spec.ingressClassName naming an IngressClass
 * whose spec.controller is ours, else the legacy kubernetes.io/ingress.class
 * annotation equal to our class name, else (no class at all) when an
 * IngressClass of ours is marked default
 * (ingressclass.kubernetes.io/is-default-class: "true"). */
bool lm_translate_ingress_is_ours(const lm_translate_in_t *in, const cJSON *ingress);

#endif

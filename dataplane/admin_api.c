/*
 * admin_api.c - Kong's entity endpoints on the admin API. For now the
 * read-only lists (GET /services, /routes, /consumers, /plugins,
 * /upstreams) rendered from the running snapshot's model.
 */
#include "lm_admin_api.h"
#include "lm_proxy.h"

#include <stdio.h>
#include <stdlib.h>

static void lm__add_strs(cJSON *o, const char *key, char **v, size_t n, bool null_if_empty)
{
    if (n == 0 && null_if_empty) {
        cJSON_AddNullToObject(o, key);
        return;
    }
    cJSON *a = cJSON_AddArrayToObject(o, key);
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
}

static void lm__add_str(cJSON *o, const char *key, const char *v)
{
    if (v)
        cJSON_AddStringToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

static cJSON *lm__ref(const char *id, const char *name)
{
    if (!id && !name)
        return cJSON_CreateNull();
    cJSON *r = cJSON_CreateObject();
    if (id)
        cJSON_AddStringToObject(r, "id", id);
    else
        cJSON_AddStringToObject(r, "name", name);
    return r;
}

static cJSON *lm__list_entities(const lm_config_t *cfg, const char *what)
{
    cJSON *data = cJSON_CreateArray();
    if (strcmp(what, "services") == 0) {
        for (size_t i = 0; i < cfg->num_services; i++) {
            const lm_service_t *s = cfg->services[i];
            cJSON *o = cJSON_CreateObject();
            lm__add_str(o, "id", s->id);
            lm__add_str(o, "name", s->name);
            cJSON_AddStringToObject(o, "protocol", s->protocol);
            cJSON_AddStringToObject(o, "host", s->host);
            cJSON_AddNumberToObject(o, "port", s->port);
            lm__add_str(o, "path", s->path);
            cJSON_AddNumberToObject(o, "retries", s->retries);
            cJSON_AddNumberToObject(o, "connect_timeout", s->connect_timeout);
            cJSON_AddNumberToObject(o, "write_timeout", s->write_timeout);
            cJSON_AddNumberToObject(o, "read_timeout", s->read_timeout);
            cJSON_AddBoolToObject(o, "enabled", s->enabled);
            lm__add_strs(o, "tags", s->tags, s->num_tags, true);
            cJSON_AddItemToArray(data, o);
        }
    } else if (strcmp(what, "routes") == 0) {
        for (size_t i = 0; i < cfg->num_routes; i++) {
            const lm_route_t *r = cfg->routes[i];
            cJSON *o = cJSON_CreateObject();
            lm__add_str(o, "id", r->id);
            lm__add_str(o, "name", r->name);
            cJSON_AddItemToObject(o, "service", r->service ? lm__ref(r->service->id, r->service->name) : cJSON_CreateNull());
            lm__add_strs(o, "protocols", r->protocols, r->num_protocols, false);
            lm__add_strs(o, "methods", r->methods, r->num_methods, true);
            lm__add_strs(o, "hosts", r->hosts, r->num_hosts, true);
            cJSON *paths = cJSON_AddArrayToObject(o, "paths");
            for (size_t p = 0; p < r->num_paths; p++) {
                char buf[2048];
                snprintf(buf, sizeof(buf), "%s%s", r->path_is_regex && r->path_is_regex[p] ? "~" : "", r->paths[p]);
                cJSON_AddItemToArray(paths, cJSON_CreateString(buf));
            }
            if (r->num_headers) {
                cJSON *h = cJSON_AddObjectToObject(o, "headers");
                for (size_t k = 0; k < r->num_headers; k++)
                    lm__add_strs(h, r->headers[k].name, r->headers[k].values, r->headers[k].num_values, false);
            } else {
                cJSON_AddNullToObject(o, "headers");
            }
            lm__add_strs(o, "snis", r->snis, r->num_snis, true);
            cJSON_AddBoolToObject(o, "strip_path", r->strip_path);
            cJSON_AddBoolToObject(o, "preserve_host", r->preserve_host);
            cJSON_AddNumberToObject(o, "regex_priority", r->regex_priority);
            cJSON_AddNumberToObject(o, "https_redirect_status_code", r->https_redirect_status_code);
            lm__add_str(o, "path_handling", r->path_handling);
            lm__add_strs(o, "tags", r->tags, r->num_tags, true);
            cJSON_AddItemToArray(data, o);
        }
    } else if (strcmp(what, "consumers") == 0) {
        for (size_t i = 0; i < cfg->num_consumers; i++) {
            const lm_consumer_t *u = cfg->consumers[i];
            cJSON *o = cJSON_CreateObject();
            lm__add_str(o, "id", u->id);
            lm__add_str(o, "username", u->username);
            lm__add_str(o, "custom_id", u->custom_id);
            lm__add_strs(o, "tags", u->tags, u->num_tags, true);
            cJSON_AddItemToArray(data, o);
        }
    } else if (strcmp(what, "plugins") == 0) {
        for (size_t i = 0; i < cfg->num_plugins; i++) {
            const lm_plugin_t *p = cfg->plugins[i];
            cJSON *o = cJSON_CreateObject();
            lm__add_str(o, "id", p->id);
            cJSON_AddStringToObject(o, "name", p->name);
            lm__add_str(o, "instance_name", p->instance_name);
            cJSON_AddBoolToObject(o, "enabled", p->enabled);
            cJSON_AddItemToObject(o, "config", p->config ? cJSON_Duplicate(p->config, 1) : cJSON_CreateObject());
            cJSON_AddItemToObject(o, "service", p->service ? lm__ref(p->service->id, p->service->name) : cJSON_CreateNull());
            cJSON_AddItemToObject(o, "route", p->route ? lm__ref(p->route->id, p->route->name) : cJSON_CreateNull());
            cJSON_AddItemToObject(o, "consumer", p->consumer ? lm__ref(p->consumer->id, p->consumer->username) : cJSON_CreateNull());
            lm__add_strs(o, "protocols", p->protocols, p->num_protocols, false);
            lm__add_strs(o, "tags", p->tags, p->num_tags, true);
            cJSON_AddItemToArray(data, o);
        }
    } else if (strcmp(what, "upstreams") == 0) {
        for (size_t i = 0; i < cfg->num_upstreams; i++) {
            const lm_upstream_t *u = cfg->upstreams[i];
            cJSON *o = cJSON_CreateObject();
            lm__add_str(o, "id", u->id);
            cJSON_AddStringToObject(o, "name", u->name);
            lm__add_str(o, "algorithm", u->algorithm);
            lm__add_str(o, "hash_on", u->hash_on);
            lm__add_str(o, "hash_fallback", u->hash_fallback);
            cJSON_AddNumberToObject(o, "slots", u->slots);
            lm__add_str(o, "host_header", u->host_header);
            cJSON *t = cJSON_AddArrayToObject(o, "targets");
            for (size_t k = 0; k < u->num_targets; k++) {
                cJSON *to = cJSON_CreateObject();
                cJSON_AddStringToObject(to, "target", u->targets[k].target);
                cJSON_AddNumberToObject(to, "weight", u->targets[k].weight);
                cJSON_AddItemToArray(t, to);
            }
            lm__add_strs(o, "tags", u->tags, u->num_tags, true);
            cJSON_AddItemToArray(data, o);
        }
    } else {
        cJSON_Delete(data);
        return NULL;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "data", data);
    cJSON_AddNullToObject(j, "next");
    return j;
}


int lm_admin_api_handle(lm_admin_call_t *call)
{
    lm_server_t *srv = call->srv;
    lm_str_t p = call->path;
    bool get = lm_str_eq(call->method, LM_STR("GET")) || lm_str_eq(call->method, LM_STR("HEAD"));
    char what[32];
    if (!get || p.len < 2 || p.len >= sizeof(what) || p.ptr[0] != '/')
        return LM_DECLINED;
    size_t n = p.len - 1;
    if (p.ptr[p.len - 1] == '/')
        n--;
    memcpy(what, p.ptr + 1, n);
    what[n] = '\0';
    cJSON *j = srv->current ? lm__list_entities(srv->current->cfg, what) : NULL;
    if (!j)
        return LM_DECLINED;
    call->reply(call, 200, j);
    return LM_OK;
}

/*
 * ctl_endpoints.c - the controller's own endpoints:
 *   /healthz       the process runs (200 "ok")
 *   /readyz        caches synced, a document translated, and (when there are
 *                  data planes) every one has had it once; else 503 with why
 *   /metrics       Prometheus text: syncs, their durations, broken objects,
 *                  objects cached per kind, informer errors, pushes, leadership
 *   /debug/config  the current document, secrets redacted
 */
#include "lm_ctl_int.h"

#include "lm_config.h"
#include "lm_metrics.h"

#include <stdlib.h>

static const double lm__buckets[LM_CTL_SYNC_BUCKETS] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5 };

void lm_ctl_metrics_observe_sync(lm_ctl_t *c, double seconds)
{
    for (int i = 0; i < LM_CTL_SYNC_BUCKETS; i++)
        if (seconds <= lm__buckets[i])
            c->m.sync_buckets[i]++;
}

static bool lm__ready(lm_ctl_t *c, const char **why)
{
    if (!c->synced || (c->dp_inf && !lm_informer_synced(c->dp_inf))) {
        *why = "caches not synced yet";
        return false;
    }
    if (!c->translated) {
        *why = "no configuration translated yet";
        return false;
    }
    lm_push_stats_t ps;
    lm_push_stats(c->push, &ps);
    if (ps.targets && !ps.synced_once) {
        *why = "not every data plane has received the configuration yet";
        return false;
    }
    *why = "ok";
    return true;
}

static void lm__metrics(lm_ctl_t *c, lm_buf_t *b)
{
    lm_ctl_metrics_t *m = &c->m;
    lm_buf_printf(b,
                  "# HELP limen_controller_syncs_total Translations of the caches into a document.\n"
                  "# TYPE limen_controller_syncs_total counter\nlimen_controller_syncs_total %llu\n"
                  "# HELP limen_controller_sync_failures_total Translations that produced no document.\n"
                  "# TYPE limen_controller_sync_failures_total counter\nlimen_controller_sync_failures_total %llu\n"
                  "# HELP limen_controller_translation_failures_total Translations that left at least one object out.\n"
                  "# TYPE limen_controller_translation_failures_total counter\n"
                  "limen_controller_translation_failures_total %llu\n"
                  "# HELP limen_controller_broken_objects Objects left out of the current document.\n"
                  "# TYPE limen_controller_broken_objects gauge\nlimen_controller_broken_objects %zu\n"
                  "# HELP limen_controller_config_changes_total Documents with a new hash handed to the push.\n"
                  "# TYPE limen_controller_config_changes_total counter\nlimen_controller_config_changes_total %llu\n"
                  "# HELP limen_controller_held_back_total Syncs not pushed because a global ClusterPlugin is invalid.\n"
                  "# TYPE limen_controller_held_back_total counter\nlimen_controller_held_back_total %llu\n"
                  "# HELP limen_controller_watch_events_ignored_total Changes of status or bookkeeping only.\n"
                  "# TYPE limen_controller_watch_events_ignored_total counter\n"
                  "limen_controller_watch_events_ignored_total %llu\n"
                  "# HELP limen_controller_watch_events_total Cache changes seen.\n"
                  "# TYPE limen_controller_watch_events_total counter\nlimen_controller_watch_events_total %llu\n",
                  (unsigned long long)m->syncs, (unsigned long long)m->sync_failures,
                  (unsigned long long)m->translation_failures, m->broken_objects,
                  (unsigned long long)m->config_changes, (unsigned long long)m->held_back,
                  (unsigned long long)m->events_ignored, (unsigned long long)m->events);
    lm_buf_printf(b, "# HELP limen_controller_sync_duration_seconds Time to translate, validate and hand over.\n"
                     "# TYPE limen_controller_sync_duration_seconds histogram\n");
    for (int i = 0; i < LM_CTL_SYNC_BUCKETS; i++)
        lm_buf_printf(b, "limen_controller_sync_duration_seconds_bucket{le=\"%g\"} %llu\n", lm__buckets[i],
                      (unsigned long long)m->sync_buckets[i]);
    lm_buf_printf(b,
                  "limen_controller_sync_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
                  "limen_controller_sync_duration_seconds_sum %.6f\n"
                  "limen_controller_sync_duration_seconds_count %llu\n",
                  (unsigned long long)m->syncs, m->sync_seconds_sum, (unsigned long long)m->syncs);
    lm_buf_printf(b, "# HELP limen_controller_objects_cached Objects in the caches, per informer.\n"
                     "# TYPE limen_controller_objects_cached gauge\n");
    lm_buf_printf(b, "# HELP limen_controller_informer_errors_total LIST/WATCH failures, per informer.\n"
                     "# TYPE limen_controller_informer_errors_total counter\n");
    for (int k = 0; k < LM_K_NUM; k++) {
        if (!c->inf[k])
            continue;
        const lm__kind_t *kd = lm_ctl_kind(k);
        lm_informer_stats_t st;
        lm_informer_stats(c->inf[k], &st);
        const char *sel = kd->label ? kd->label : kd->field ? kd->field : "";
        lm_buf_printf(b, "limen_controller_objects_cached{kind=\"%s\",selector=\"%s\"} %zu\n", kd->kind, sel,
                      lm_informer_count(c->inf[k]));
        lm_buf_printf(b, "limen_controller_informer_errors_total{kind=\"%s\",selector=\"%s\"} %llu\n", kd->kind, sel,
                      (unsigned long long)st.errors);
    }
    lm_buf_printf(b,
                  "# HELP limen_controller_leader Whether this replica holds the leader Lease (1 or 0).\n"
                  "# TYPE limen_controller_leader gauge\nlimen_controller_leader %d\n"
                  "# HELP limen_controller_ready Whether /readyz answers 200 (1 or 0).\n"
                  "# TYPE limen_controller_ready gauge\n",
                  c->leading ? 1 : 0);
    const char *why;
    lm_buf_printf(b, "limen_controller_ready %d\n", lm__ready(c, &why) ? 1 : 0);
    char *pm = lm_push_metrics(c->push);
    if (pm) {
        lm_buf_append(b, pm, strlen(pm));
        free(pm);
    }
}

int lm_ctl_handle_http(const char *method, const char *path, const char *query, char **body, size_t *len,
                       const char **content_type, void *data)
{
    lm_ctl_t *c = data;
    lm_buf_t b = { 0 };
    int status = 200;
    *content_type = "text/plain; charset=utf-8";
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        status = 405;
        lm_buf_printf(&b, "method not allowed\n");
    } else if (strcmp(path, "/healthz") == 0) {
        lm_buf_printf(&b, "ok\n");
    } else if (strcmp(path, "/readyz") == 0) {
        const char *why;
        status = lm__ready(c, &why) ? 200 : 503;
        lm_buf_printf(&b, "%s\n", why);
    } else if (strcmp(path, "/metrics") == 0) {
        *content_type = "text/plain; version=0.0.4; charset=utf-8";
        lm__metrics(c, &b);
    } else if (strcmp(path, "/debug/config") == 0) {
        *content_type = "application/json";
        cJSON *doc = c->doc_json ? cJSON_Parse(c->doc_json) : NULL;
        if (!doc)
            doc = cJSON_CreateObject();
        lm_config_redact(doc);
        char *s = cJSON_Print(doc);
        cJSON_Delete(doc);
        if (s) {
            lm_buf_printf(&b, "%s\n", s);
            cJSON_free(s);
        }
    } else {
        status = 404;
        lm_buf_printf(&b, "not found\n");
    }
    *body = b.buf ? b.buf : strdup("");
    *len = b.len;
    return status;
}

/* main.c - limen-dataplane: command line and environment, then lm_server_run. */
#include "lm_config.h"
#include "lm_log.h"
#include "lm_plugin_rt.h"
#include "lm_server.h"

#include <errno.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static const char lm__usage[] =
    "Usage: limen-dataplane [options]\n"
    "\n"
    "Limen's data plane: an HTTP reverse proxy (and a TCP/TLS stream proxy) that serves a\n"
    "Kong-format declarative configuration (kong.yml, _format_version \"3.0\" or \"2.1\") and swaps it live.\n"
    "\n"
    "Options (each also as an environment variable):\n"
    "  --config FILE           declarative config to serve (LIMEN_CONFIG); SIGHUP reloads it.\n"
    "                          ${VAR} in its strings is replaced from the environment.\n"
    "                          Without it, the last applied config in the state dir is served.\n"
    "  --proxy-listen ADDR     proxy listener \"HOST:PORT [ssl] [http2]\", repeatable\n"
    "                          (LIMEN_PROXY_LISTEN, comma-separated); default 0.0.0.0:8000. ssl: TLS,\n"
    "                          the certificate picked by SNI from the config's certificates/snis;\n"
    "                          http2: HTTP/2 by ALPN (with ssl) or by the cleartext preface\n"
    "  --stream-listen ADDR    L4 stream listener \"HOST:PORT [ssl]\", repeatable (LIMEN_STREAM_LISTEN,\n"
    "                          comma-separated); default none. Plain: tcp routes; ssl: the SNI of\n"
    "                          the ClientHello picks a tls route (terminated, certificate by SNI)\n"
    "                          or a tls_passthrough route (forwarded as is). Routes match by snis,\n"
    "                          sources and destinations (ip/CIDR, port), as Kong's stream router\n"
    "  --ssl-cert FILE         default certificate (PEM, chain after the leaf) when no SNI matches\n"
    "                          (LIMEN_SSL_CERT); default: a self-signed one made at start-up\n"
    "  --ssl-cert-key FILE     its private key (LIMEN_SSL_CERT_KEY)\n"
    "  --ssl-protocols LIST    e.g. \"TLSv1.2 TLSv1.3\" (the default) (LIMEN_SSL_PROTOCOLS)\n"
    "  --ssl-ciphers LIST      TLS 1.2 cipher suites, OpenSSL syntax (LIMEN_SSL_CIPHERS); default\n"
    "                          Mozilla's intermediate list\n"
    "  --ssl-ticket-rotate S   session-ticket key lifetime in seconds; tickets stay valid for two\n"
    "                          (LIMEN_SSL_TICKET_ROTATE); default 3600\n"
    "  --ssl-client-ca FILE    CA certificates (PEM bundle) client certificates must chain to\n"
    "                          (LIMEN_SSL_CLIENT_CA)\n"
    "  --ssl-client-verify M   client certificates on ssl listeners (LIMEN_SSL_CLIENT_VERIFY): off\n"
    "                          (default); optional: asked for, and the result is passed on;\n"
    "                          on: the handshake fails without a valid one. The upstream gets\n"
    "                          X-Client-Cert-Verify (SUCCESS, NONE or FAILED:reason) and\n"
    "                          X-Client-Cert-Subject (RFC 2253); clients cannot send either\n"
    "  (OCSP stapling has no option: a certificate that names a responder (AIA) and has its\n"
    "   issuer in its chain gets the response fetched in the background, refreshed before\n"
    "   nextUpdate, and stapled for clients that ask)\n"
    "  --admin-listen ADDR     admin API: unix:PATH (mode 0600) or HOST:PORT (LIMEN_ADMIN_LISTEN);\n"
    "                          default unix:STATE_DIR/admin.sock; \"off\" disables it\n"
    "  --admin-token TOKEN     required on a TCP admin listener that is not on loopback, sent as\n"
    "                          'Authorization: Bearer TOKEN' or 'Kong-Admin-Token' (LIMEN_ADMIN_TOKEN)\n"
    "  --status-listen ADDR    GET /status and /metrics, HOST:PORT or \"off\" (LIMEN_STATUS_LISTEN);\n"
    "                          default 127.0.0.1:8100\n"
    "  --workers N             worker threads, 0 = one per core (LIMEN_WORKERS); default 0\n"
    "  --state-dir DIR         where the last applied config is kept (LIMEN_STATE_DIR);\n"
    "                          default /var/lib/limen\n"
    "  --access-log FILE       JSON-lines access log (LIMEN_ACCESS_LOG); default off\n"
    "  --no-latency-headers    omit X-Limen-Upstream-Latency / X-Limen-Proxy-Latency\n"
    "                          (LIMEN_LATENCY_HEADERS=off)\n"
    "  --drain-timeout MS      on SIGTERM, how long in-flight requests may take (LIMEN_DRAIN_TIMEOUT);\n"
    "                          default 10000\n"
    "  --log-level LEVEL       debug, info, warn or error (LIMEN_LOG_LEVEL); default info\n"
    "  --plugin-dir DIR        load external plugins (*.so exporting limen_plugin, see lm_plugin.h)\n"
    "                          (LIMEN_PLUGIN_DIR)\n"
    "  --trusted-ips LIST      comma-separated addresses/CIDRs of proxies in front of Limen whose\n"
    "                          real-IP header is believed (LIMEN_TRUSTED_IPS); default none\n"
    "  --real-ip-header NAME   where trusted proxies put the client address (LIMEN_REAL_IP_HEADER);\n"
    "                          default X-Real-IP; with X-Forwarded-For the last address is used\n"
    "  --managed               the config belongs to a controller: entity writes on the admin API\n"
    "                          are refused as Kong refuses them in DB-less mode (LIMEN_MANAGED=on)\n"
    "  --check FILE            validate FILE, print every error with its path, exit 1 if invalid\n"
    "  --help, --version\n"
    "\n"
    "Admin API (on --admin-listen): POST /config (YAML or JSON; ?check_hash=1), GET /config,\n"
    "GET /status, and Kong's entity endpoints: /services /routes /consumers /plugins /upstreams\n"
    "/upstreams/{u}/targets /certificates /snis /ca_certificates /consumers/{c}/key-auth ...\n"
    "(GET, POST, PUT, PATCH, DELETE), /schemas/..., /plugins/enabled.\n";

static int lm__check(const char *path)
{
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    lm_config_t *cfg = lm_config_load_file(path, &errs);
    if (cfg && lm_plugins_validate(cfg, &errs) != LM_OK) { /* plugin configs, with their schemas */
        lm_config_free(cfg);
        cfg = NULL;
    }
    int rc = 0;
    if (cfg) {
        printf("%s: OK (%zu services, %zu routes, %zu consumers, %zu plugins, %zu upstreams; hash %s)\n", path,
               cfg->num_services, cfg->num_routes, cfg->num_consumers, cfg->num_plugins, cfg->num_upstreams, cfg->hash);
        lm_config_free(cfg);
    } else {
        for (size_t i = 0; i < errs.count; i++)
            printf("%s: %s%s%s\n", path, errs.items[i].path, errs.items[i].path[0] ? ": " : "", errs.items[i].message);
        printf("%s: %zu error%s\n", path, errs.count, errs.count == 1 ? "" : "s");
        rc = 1;
    }
    lm_config_errors_free(&errs);
    return rc;
}

/* A whole non-negative decimal number no larger than max, else -1. */
static int lm__parse_count(const char *s, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < 0 || v > max)
        return -1;
    return (int)v;
}

/* options that take a string, from the command line or the environment */
static const struct {
    const char *flag, *env;
    size_t off;
} lm__str_opts[] = {
    { "--ssl-cert", "LIMEN_SSL_CERT", offsetof(lm_server_opts_t, ssl_cert) },
    { "--ssl-cert-key", "LIMEN_SSL_CERT_KEY", offsetof(lm_server_opts_t, ssl_cert_key) },
    { "--ssl-protocols", "LIMEN_SSL_PROTOCOLS", offsetof(lm_server_opts_t, ssl_protocols) },
    { "--ssl-ciphers", "LIMEN_SSL_CIPHERS", offsetof(lm_server_opts_t, ssl_ciphers) },
    { "--ssl-client-ca", "LIMEN_SSL_CLIENT_CA", offsetof(lm_server_opts_t, ssl_client_ca) },
    { "--ssl-client-verify", "LIMEN_SSL_CLIENT_VERIFY", offsetof(lm_server_opts_t, ssl_client_verify) },
};
#define LM__STR_OPT(o, i) (*(const char **)((char *)(o) + lm__str_opts[i].off))

static bool lm__env_off(const char *v)
{
    return v && (strcmp(v, "off") == 0 || strcmp(v, "0") == 0 || strcmp(v, "false") == 0);
}

int main(int argc, char **argv)
{
    lm_server_opts_t o;
    lm_server_opts_init(&o);
    const char *v;
    static char listen_env[4096], stream_env[4096];
    if ((v = getenv("LIMEN_CONFIG")) && *v)
        o.config_path = v;
    if ((v = getenv("LIMEN_PROXY_LISTEN")) && *v) {
        snprintf(listen_env, sizeof(listen_env), "%s", v);
        for (char *save = NULL, *t = strtok_r(listen_env, ",", &save); t && o.num_proxy_listen < LM_MAX_LISTEN;
             t = strtok_r(NULL, ",", &save))
            o.proxy_listen[o.num_proxy_listen++] = t;
    }
    if ((v = getenv("LIMEN_STREAM_LISTEN")) && *v) {
        snprintf(stream_env, sizeof(stream_env), "%s", v);
        for (char *save = NULL, *t = strtok_r(stream_env, ",", &save); t && o.num_stream_listen < LM_MAX_LISTEN;
             t = strtok_r(NULL, ",", &save))
            o.stream_listen[o.num_stream_listen++] = t;
    }
    if ((v = getenv("LIMEN_ADMIN_LISTEN")) && *v)
        o.admin_listen = v;
    if ((v = getenv("LIMEN_ADMIN_TOKEN")) && *v)
        o.admin_token = v;
    if ((v = getenv("LIMEN_STATUS_LISTEN")) && *v)
        o.status_listen = v;
    if ((v = getenv("LIMEN_WORKERS")) && *v && (o.workers = lm__parse_count(v, 1024)) < 0) {
        fprintf(stderr, "limen-dataplane: LIMEN_WORKERS: '%s' is not a number of workers (0-1024)\n", v);
        return 2;
    }
    if ((v = getenv("LIMEN_STATE_DIR")) && *v)
        o.state_dir = v;
    if ((v = getenv("LIMEN_ACCESS_LOG")) && *v)
        o.access_log = v;
    if (lm__env_off(getenv("LIMEN_LATENCY_HEADERS")))
        o.latency_headers = false;
    if ((v = getenv("LIMEN_DRAIN_TIMEOUT")) && *v && (o.drain_timeout_ms = lm__parse_count(v, 86400000)) < 0) {
        fprintf(stderr, "limen-dataplane: LIMEN_DRAIN_TIMEOUT: '%s' is not a number of milliseconds\n", v);
        return 2;
    }
    if ((v = getenv("LIMEN_MANAGED")) && *v && !lm__env_off(v))
        o.managed = true;
    if ((v = getenv("LIMEN_PLUGIN_DIR")) && *v)
        o.plugin_dir = v;
    if ((v = getenv("LIMEN_TRUSTED_IPS")) && *v)
        o.trusted_ips = v;
    if ((v = getenv("LIMEN_REAL_IP_HEADER")) && *v)
        o.real_ip_header = v;
    for (size_t k = 0; k < LM_ARRAY_SIZE(lm__str_opts); k++)
        if ((v = getenv(lm__str_opts[k].env)) && *v)
            LM__STR_OPT(&o, k) = v;
    if ((v = getenv("LIMEN_SSL_TICKET_ROTATE")) && *v && (o.ssl_ticket_rotate_s = lm__parse_count(v, 86400 * 7)) <= 0) {
        fprintf(stderr, "limen-dataplane: LIMEN_SSL_TICKET_ROTATE: '%s' is not a number of seconds\n", v);
        return 2;
    }
    if ((v = getenv("LIMEN_LOG_LEVEL")) && *v && lm_log_parse_level(v) >= 0)
        lm_log_set_level((lm_log_level_t)lm_log_parse_level(v));

    bool cli_listen = false, cli_stream = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define LM_TAKE()                                                       \
    do {                                                                \
        if (!val) {                                                     \
            fprintf(stderr, "limen-dataplane: %s needs a value\n", a); \
            return 2;                                                   \
        }                                                               \
        i++;                                                            \
    } while (0)
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(lm__usage, stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf("limen-dataplane %s\n", LM_VERSION);
            return 0;
        } else if (strcmp(a, "--check") == 0) {
            LM_TAKE();
            if (o.plugin_dir)
                lm_plugin_load_dir(o.plugin_dir);
            int crc = lm__check(val);
            lm_plugin_unload_all();
            return crc;
        } else if (strcmp(a, "--config") == 0) {
            LM_TAKE();
            o.config_path = val;
        } else if (strcmp(a, "--proxy-listen") == 0) {
            LM_TAKE();
            if (!cli_listen) {
                o.num_proxy_listen = 0;
                cli_listen = true;
            }
            if (o.num_proxy_listen == LM_MAX_LISTEN) {
                fprintf(stderr, "limen-dataplane: at most %d proxy listeners\n", LM_MAX_LISTEN);
                return 2;
            }
            o.proxy_listen[o.num_proxy_listen++] = val;
        } else if (strcmp(a, "--stream-listen") == 0) {
            LM_TAKE();
            if (!cli_stream) {
                o.num_stream_listen = 0;
                cli_stream = true;
            }
            if (o.num_stream_listen == LM_MAX_LISTEN) {
                fprintf(stderr, "limen-dataplane: at most %d stream listeners\n", LM_MAX_LISTEN);
                return 2;
            }
            o.stream_listen[o.num_stream_listen++] = val;
        } else if (strcmp(a, "--admin-listen") == 0) {
            LM_TAKE();
            o.admin_listen = val;
        } else if (strcmp(a, "--admin-token") == 0) {
            LM_TAKE();
            o.admin_token = val;
        } else if (strcmp(a, "--status-listen") == 0) {
            LM_TAKE();
            o.status_listen = val;
        } else if (strcmp(a, "--workers") == 0) {
            LM_TAKE();
            if ((o.workers = lm__parse_count(val, 1024)) < 0) {
                fprintf(stderr, "limen-dataplane: --workers: '%s' is not a number of workers (0-1024)\n", val);
                return 2;
            }
        } else if (strcmp(a, "--state-dir") == 0) {
            LM_TAKE();
            o.state_dir = val;
        } else if (strcmp(a, "--access-log") == 0) {
            LM_TAKE();
            o.access_log = val;
        } else if (strcmp(a, "--no-latency-headers") == 0) {
            o.latency_headers = false;
        } else if (strcmp(a, "--drain-timeout") == 0) {
            LM_TAKE();
            if ((o.drain_timeout_ms = lm__parse_count(val, 86400000)) < 0) {
                fprintf(stderr, "limen-dataplane: --drain-timeout: '%s' is not a number of milliseconds\n", val);
                return 2;
            }
        } else if (strcmp(a, "--managed") == 0) {
            o.managed = true;
        } else if (strcmp(a, "--plugin-dir") == 0) {
            LM_TAKE();
            o.plugin_dir = val;
        } else if (strcmp(a, "--trusted-ips") == 0) {
            LM_TAKE();
            o.trusted_ips = val;
        } else if (strcmp(a, "--real-ip-header") == 0) {
            LM_TAKE();
            o.real_ip_header = val;
        } else if (strcmp(a, "--ssl-ticket-rotate") == 0) {
            LM_TAKE();
            if ((o.ssl_ticket_rotate_s = lm__parse_count(val, 86400 * 7)) <= 0) {
                fprintf(stderr, "limen-dataplane: --ssl-ticket-rotate: '%s' is not a number of seconds\n", val);
                return 2;
            }
        } else if (strcmp(a, "--log-level") == 0) {
            LM_TAKE();
            int l = lm_log_parse_level(val);
            if (l < 0) {
                fprintf(stderr, "limen-dataplane: unknown log level '%s'\n", val);
                return 2;
            }
            lm_log_set_level((lm_log_level_t)l);
        } else {
            size_t k = 0;
            while (k < LM_ARRAY_SIZE(lm__str_opts) && strcmp(a, lm__str_opts[k].flag) != 0)
                k++;
            if (k < LM_ARRAY_SIZE(lm__str_opts)) {
                LM_TAKE();
                LM__STR_OPT(&o, k) = val;
                continue;
            }
            fprintf(stderr, "limen-dataplane: unknown option '%s' (see --help)\n", a);
            return 2;
        }
#undef LM_TAKE
    }
    /* a peer that closed must be an EPIPE on the write, not the end of the process */
    signal(SIGPIPE, SIG_IGN);
    static char admin_default[4200];
    if (!o.admin_listen) {
        snprintf(admin_default, sizeof(admin_default), "unix:%s/admin.sock", o.state_dir);
        o.admin_listen = admin_default;
    }
    return lm_server_run(&o);
}

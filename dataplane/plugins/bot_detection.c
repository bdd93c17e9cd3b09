/*
 * bot_detection.c - the bot-detection plugin (Kong 3.x semantics).
 *
 * config: allow, deny (lists of PCRE regexes, default []).
 * The User-Agent (trimmed) is checked against allow (a match lets the
 * request through), then deny, then the built-in list of well-known bots,
 * crawlers and HTTP libraries; a deny or bot match is answered 403
 * {"message":"Forbidden"}. No User-Agent: nothing to check. More than one
 * User-Agent header: 400 {"message":"Only one User-Agent header allowed"}.
 * Matching is case-sensitive and unanchored, as Kong's.
 *
 * Regexes are compiled (with JIT) once: the user's per snapshot, freed with
 * the snapshot's arena; the built-in list once per process, as a single
 * alternation. Match data for a request comes from the request arena.
 */
#include "lm_plugins.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

typedef struct {
    pcre2_code **allow, **deny;
    size_t n_allow, n_deny;
} lm__bot_conf_t;

/*
 * The built-in list: the bot, crawler and HTTP-library user agents Kong's
 * bot-detection refuses by default (its list comes from ua-parser's
 * uap-core). Each entry is tested as an unanchored search; version suffixes
 * that are optional in the source list are left out here since they cannot
 * change whether a search finds something. Plain command-line clients
 * (curl, Wget, HTTPie) and python-requests are not on the list.
 */
static const char *const lm__bot_rules[] = {
    /* monitoring and social previews, with a version */
    "Pingdom.com_bot_version_\\d+\\.\\d+",
    "facebookexternalhit/\\d+\\.\\d+",
    "Google.*/\\+/web/snippet",
    "Twitterbot/\\d+\\.\\d+",
    /* "/name-1.2" or "/name 1.2" */
    "/(?:(?:Ant-)?Nutch|[A-z]+[Bb]ot|[A-z]+[Ss]pider|Axtaris|fetchurl|Isara|ShopSalad|Tailsweep)[ \\-]\\d+",
    /* "name/1.2" */
    "(?:008|Altresium|Argus|BaiduMobaider|BoardReader|DNSGroup|DataparkSearch|EDI|Goodzer|Grub|INGRID|Infohelfer"
    "|LinkedInBot|LOOQ|Nutch|PathDefender|Peew|PostPost|Steeler|Twitterbot|VSE|WebCrunch|WebZIP|Y!J-BR[A-Z]"
    "|YahooSeeker|envolk|sproose|wminer)/\\d+",
    "MSIE \\d+\\.\\d+(?:[a-z]\\d?)?;.* MSIECrawler",
    /* HTTP libraries and downloaders */
    "Google-HTTP-Java-Client|Apache-HttpClient|http%20client|Python-urllib|HttpMonitor|TLSProber|WinHTTP|JNLP",
    /* named crawlers and bots */
    "1470\\.net crawler|50\\.nu|8bo Crawler Bot|Aboundex|Accoona-[A-z]+-Agent|AdsBot-Google|altavista"
    "|AppEngine-Google|archive.*?\\.org_bot|archiver|Ask Jeeves|[Bb]ai[Dd]u[Ss]pider|bingbot|BingPreview"
    "|blitzbot|BlogBridge|BoardReader|boitho.com-dc|BotSeer|favicon|\\bYeti|Catchpoint bot|[Cc]harlotte"
    "|Checklinks|clumboot|Comodo HTTP\\(S\\) Crawler|Comodo-Webinspector-Crawler|ConveraCrawler|CRAWL-E"
    "|CrawlConvera|Daumoa|Feed Seeker Bot|findlinks|Flamingo_SearchEngine|FollowSite Bot|furlbot|Genieo"
    "|gigabot|GomezAgent|gonzo1|Googlebot|Google SketchUp|grub-client|gsa-crawler|heritrix|HiddenMarket"
    "|holmes|HooWWWer|htdig|ia_archiver|ICC-Crawler|Icarus6j|ichiro|IconSurf|IlTrovatore|InfuzApp"
    "|Innovazion Crawler|InternetArchive|IP2[a-z]+Bot|jbot\\b|KaloogaBot|Kraken|Kurzor|larbin|LEIA"
    "|LesnikBot|Linguee Bot|LinkAider|LinkedInBot|Lite Bot|Llaut|lycos|Mail\\.RU_Bot|masidani_bot"
    "|Mediapartners-Google|Microsoft .*? Bot|mogimogi|mozDex|MJ12bot|msnbot|msrbot|netresearch|Netvibes"
    "|NewsGator|^NING|Nutch|Nymesis|ObjectsSearch|Orbiter|OOZBOT|PagePeeker|PagesInventory|PaxleFramework"
    "|Peeplo Screenshot Bot|PlantyNet_WebRobot|Pompos|Read%20Later|Reaper|RedCarpet|Retreiver|Riddler"
    "|Rival IQ|scooter|Scrapy|Scrubby|searchsight|seekbot|semanticdiscovery|Simpy|SimplePie|SEOstats"
    "|SimpleRSS|SiteCon|Slurp|snappy|Speedy Spider|Squrl Java|TheUsefulbot|ThumbShotsBot|Thumbshots\\.ru"
    "|TwitterBot|URL2PNG|Vagabondo|VoilaBot|^vortex|Votay bot|^voyager|WASALive.Bot|Web-sniffer|WebThumb"
    "|WeSEE:[A-z]+|WhatWeb|WIRE|WordPress|Wotbox|www\\.almaden\\.ibm\\.com|Xenu(?:.s)? Link Sleuth"
    "|Xerka [A-z]+Bot|yacy|Yahoo[a-z]*Seeker|Yahoo! Slurp|Yandex\\w+|YodaoBot|YottaaMonitor|Yowedo|^Zao"
    "|ZeBot_www\\.ze\\.bz|ZooShot|ZyBorg",
    /* generic "...bot/1.2", "...spider 1.2" */
    "(?:[Aa]rchiver|[Ii]ndexer|[Ss]craper|[Bb]ot|[Ss]pider|[Cc]rawl[a-z]*)[/ ]\\d+",
    /* anything containing spider, scrape, crawl, or "bot" (but not "CUbot"/"Cubot") */
    "[Ss][Pp][Ii][Dd][Ee][Rr]|[Ss]crape|[Cc][Rr][Aa][Ww][Ll]|[^C][^Uu][Bb]ot",
};

static pcre2_code *lm__bots;
static pthread_once_t lm__bots_once = PTHREAD_ONCE_INIT;

static void lm__bots_compile(void)
{
    size_t len = 1;
    for (size_t i = 0; i < LM_ARRAY_SIZE(lm__bot_rules); i++)
        len += strlen(lm__bot_rules[i]) + 5;
    char *re = malloc(len);
    if (!re)
        abort();
    size_t o = 0;
    for (size_t i = 0; i < LM_ARRAY_SIZE(lm__bot_rules); i++)
        o += (size_t)snprintf(re + o, len - o, "%s(?:%s)", i ? "|" : "", lm__bot_rules[i]);
    int err;
    PCRE2_SIZE off;
    lm__bots = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, 0, &err, &off, NULL);
    free(re);
    if (!lm__bots)
        abort(); /* a built-in pattern that does not compile is a programming error */
    pcre2_jit_compile(lm__bots, PCRE2_JIT_COMPLETE);
}

/* ---- config ------------------------------------------------------------------- */

static const char *lm__check_regex(const cJSON *v)
{
    static __thread char msg[320];
    if (lm_schema_check_regex(v) == NULL)
        return NULL;
    snprintf(msg, sizeof(msg), "not a valid regex: %.256s", v->valuestring);
    return msg;
}

static const lm_schema_field_t lm__fields[] = {
    { .name = "allow", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .def = "[]", .check = lm__check_regex },
    { .name = "deny", .type = LM_SF_ARRAY, .elem = LM_SF_STRING, .def = "[]", .check = lm__check_regex },
    { 0 },
};

static void lm__code_free(void *p)
{
    pcre2_code_free(p);
}

static int lm__compile_list(lm_plugin_cfg_ctx_t *cc, const cJSON *arr, const char *field, pcre2_code ***out,
                            size_t *n)
{
    size_t cnt = arr ? (size_t)cJSON_GetArraySize(arr) : 0;
    *n = 0;
    *out = cnt ? lm_arena_calloc(cc->arena, cnt * sizeof(**out)) : NULL;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        int err;
        PCRE2_SIZE off;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)it->valuestring, PCRE2_ZERO_TERMINATED, 0, &err, &off, NULL);
        if (!re) {
            char f[64];
            snprintf(f, sizeof(f), "%s[%zu]", field, *n);
            lm_plugin_error(cc, f, "not a valid regex: %s", it->valuestring);
            return LM_ERROR;
        }
        lm_arena_on_free(cc->arena, lm__code_free, re);
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
        (*out)[(*n)++] = re;
    }
    return LM_OK;
}

static int lm__configure(lm_plugin_cfg_ctx_t *cc, const cJSON *config, void **out)
{
    pthread_once(&lm__bots_once, lm__bots_compile);
    lm__bot_conf_t *c = lm_arena_calloc(cc->arena, sizeof(*c));
    if (lm__compile_list(cc, lm_schema_get(config, "allow"), "allow", &c->allow, &c->n_allow) != LM_OK ||
        lm__compile_list(cc, lm_schema_get(config, "deny"), "deny", &c->deny, &c->n_deny) != LM_OK)
        return LM_ERROR;
    *out = c;
    return LM_OK;
}

/* ---- request ------------------------------------------------------------------ */

static void *lm__arena_malloc(PCRE2_SIZE size, void *data)
{
    return lm_arena_alloc(data, size);
}

static void lm__arena_nofree(void *p, void *data)
{
    LM_UNUSED(p);
    LM_UNUSED(data);
}

static bool lm__search(pcre2_code *re, lm_str_t s, pcre2_match_data *md)
{
    int rc = pcre2_match(re, (PCRE2_SPTR)(s.ptr ? s.ptr : ""), s.len, 0, 0, md, NULL);
    return rc >= 0;
}

static bool lm__is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static int lm__access(lm_ctx_t *ctx, const void *conf)
{
    const lm__bot_conf_t *c = conf;
    lm_str_t ua = LM_STR_NULL;
    size_t count = lm_ctx_header_all(ctx, LM_STR("User-Agent"), &ua, 1);
    if (count == 0)
        return LM_OK;
    if (count > 1)
        return lm_ctx_exit(ctx, 400, "Only one User-Agent header allowed", NULL);
    while (ua.len && lm__is_space(ua.ptr[0]))
        ua.ptr++, ua.len--;
    while (ua.len && lm__is_space(ua.ptr[ua.len - 1]))
        ua.len--;

    pcre2_general_context *gc = pcre2_general_context_create(lm__arena_malloc, lm__arena_nofree, lm_ctx_arena(ctx));
    pcre2_match_data *md = pcre2_match_data_create(1, gc);
    for (size_t i = 0; i < c->n_allow; i++)
        if (lm__search(c->allow[i], ua, md))
            return LM_OK;
    for (size_t i = 0; i < c->n_deny; i++)
        if (lm__search(c->deny[i], ua, md))
            return lm_ctx_exit(ctx, 403, "Forbidden", NULL);
    if (lm__search(lm__bots, ua, md))
        return lm_ctx_exit(ctx, 403, "Forbidden", NULL);
    return LM_OK;
}

const lm_plugin_ops_t lm_plugin_bot_detection = {
    .abi_version = LM_PLUGIN_ABI_VERSION,
    .name = "bot-detection",
    .priority = 2500,
    .schema = lm__fields,
    .configure = lm__configure,
    .access = lm__access,
};

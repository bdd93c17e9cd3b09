/* bot_detection_test.c - unit tests of the bot-detection plugin's built-in
 * list and config checks (includes the plugin's source). */
#include "bot_detection.c"

#include "lm_plugin_rt.h"
#include "lm_test.h"

#include <stdlib.h>

static bool lm__is_bot(const char *ua)
{
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    bool r = lm__search(lm__bots, lm_str(ua), md);
    pcre2_match_data_free(md);
    return r;
}

LM_TEST(test_builtin_list)
{
    pthread_once(&lm__bots_once, lm__bots_compile);
    static const char *const bots[] = {
        "Googlebot/2.1 (+http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "facebookexternalhit/1.1",
        "Twitterbot/1.0",
        "Python-urllib/3.11",
        "Apache-HttpClient/4.5.13 (Java/17)",
        "Mozilla/5.0 (compatible; YandexBot/3.0)",
        "Baiduspider",
        "Scrapy/2.11 (+https://scrapy.org)",
        "WordPress/6.4; https://example.com",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0)",
        "some crawler here",
        "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
        "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; MSIECrawler)",
        "NING/1.0",
        "Slurp",
        "ia_archiver",
        "agent /Ubot-2", /* "/name-1" form only */
    };
    for (size_t i = 0; i < LM_ARRAY_SIZE(bots); i++)
        if (!lm__is_bot(bots[i]))
            LM_FAILF("not detected as a bot: %s", bots[i]);
    static const char *const humans[] = {
        "curl/8.5.0",
        "Wget/1.21.4",
        "python-requests/2.31.0",
        "HTTPie/3.2.2",
        "PostmanRuntime/7.36.0",
        "Go-http-client/1.1",
        "okhttp/4.12.0",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
        "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Version/17.0 Mobile/15E148 Safari/604.1",
        "",
        "xNING/1.0", /* ^NING is anchored */
    };
    for (size_t i = 0; i < LM_ARRAY_SIZE(humans); i++)
        if (lm__is_bot(humans[i]))
            LM_FAILF("detected as a bot: %s", humans[i]);
}

static lm__bot_conf_t *lm__conf(lm_arena_t *a, const char *json, char **errs_out)
{
    return lm_plugin_configure_json(&lm_plugin_bot_detection, a, json, errs_out);
}

LM_TEST(test_config)
{
    lm_arena_t *a = lm_arena_create(0);
    lm__bot_conf_t *c = lm__conf(a, "{}", NULL);
    LM_CHECK(c && c->n_allow == 0 && c->n_deny == 0);
    c = lm__conf(a, "{\"allow\":[\"^curl/\"],\"deny\":[\"Firefox\",\"Chrome\"]}", NULL);
    LM_CHECK(c && c->n_allow == 1 && c->n_deny == 2);
    char *e = NULL;
    LM_CHECK(lm__conf(a, "{\"deny\":[\"ok\",\"(unclosed\"]}", &e) == NULL);
    LM_CHECK(e && strstr(e, "plugins[0].config.deny[1]: not a valid regex: (unclosed"));
    free(e);
    LM_CHECK(lm__conf(a, "{\"blacklist\":[\"x\"]}", &e) == NULL);
    LM_CHECK(e && strstr(e, "plugins[0].config.blacklist: unknown field"));
    free(e);
    lm_arena_destroy(a);
}

int main(void)
{
    LM_RUN(test_builtin_list);
    LM_RUN(test_config);
    pcre2_code_free(lm__bots);
    return lm_test_summary("bot_detection");
}

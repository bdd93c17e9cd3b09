/* log.c - see lm_log.h */
#include "lm_core.h"
#include "lm_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static lm_log_level_t lm__level = LM_LOG_INFO;
static const char *const lm__names[] = { "debug", "info", "warn", "error" };

void lm_log_set_level(lm_log_level_t level)
{
    lm__level = level;
}

int lm_log_parse_level(const char *name)
{
    for (size_t i = 0; i < LM_ARRAY_SIZE(lm__names); i++)
        if (strcasecmp(name, lm__names[i]) == 0)
            return (int)i;
    return -1;
}

size_t lm_json_escape(char *out, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (cap == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7];
        size_t n;
        if (c == '"' || c == '\\') {
            esc[0] = '\\'; esc[1] = (char)c; n = 2;
        } else if (c == '\n') {
            esc[0] = '\\'; esc[1] = 'n'; n = 2;
        } else if (c < 0x20 || c == 0x7f) {
            esc[0] = '\\'; esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
            esc[4] = hex[c >> 4]; esc[5] = hex[c & 15]; n = 6;
        } else {
            esc[0] = (char)c; n = 1;
        }
        if (o + n >= cap)
            break;
        memcpy(out + o, esc, n);
        o += n;
    }
    out[o] = '\0';
    return o;
}

void lm_log(lm_log_level_t level, const char *fmt, ...)
{
    if (level < lm__level)
        return;
    char msg[2048], line[4608];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t mlen = (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[40];
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);

    char esc[4096];
    lm_json_escape(esc, sizeof(esc), msg, mlen);
    int l = snprintf(line, sizeof(line), "{\"time\":\"%s.%03dZ\",\"level\":\"%s\",\"msg\":\"%s\"}\n", ts,
                     (int)(tv.tv_usec / 1000), lm__names[level], esc);
    if (l > 0) {
        ssize_t w = write(STDERR_FILENO, line, (size_t)LM_MIN((size_t)l, sizeof(line) - 1));
        (void)w;
    }
}

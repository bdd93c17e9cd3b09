/*
 * lm_log.h - structured logs: one JSON object per line on stderr.
 *   {"time":"2026-11-22T01:49:22.123Z","level":"info","msg":"..."}
 * Thread-safe (one write(2) per line). Never pass secrets to these functions.
 */
#ifndef LM_LOG_H
#define LM_LOG_H

#include <stddef.h>

typedef enum { LM_LOG_DEBUG = 0, LM_LOG_INFO, LM_LOG_WARN, LM_LOG_ERROR } lm_log_level_t;

void lm_log_set_level(lm_log_level_t level);
/* returns -1 on an unknown name ("debug", "info", "warn", "error") */
int lm_log_parse_level(const char *name);
void lm_log(lm_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define lm_log_debug(...) lm_log(LM_LOG_DEBUG, __VA_ARGS__)
#define lm_log_info(...) lm_log(LM_LOG_INFO, __VA_ARGS__)
#define lm_log_warn(...) lm_log(LM_LOG_WARN, __VA_ARGS__)
#define lm_log_error(...) lm_log(LM_LOG_ERROR, __VA_ARGS__)

/* Writes s as the inside of a JSON string (escaped) into out; returns bytes
 * written (always NUL-terminates, truncates to cap-1). */
size_t lm_json_escape(char *out, size_t cap, const char *s, size_t len);

#endif

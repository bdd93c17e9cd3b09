/*
 * fuzz_config.c - libFuzzer target: lm_config_load (YAML or JSON, no ${VAR}
 * substitution) on arbitrary bytes, then the error JSON; everything freed.
 * Corpus: common/fuzz/corpus/config/.
 */
#include "lm_config.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 256 * 1024)
        return 0;
    lm_config_errors_t errs;
    lm_config_errors_init(&errs);
    lm_config_opts_t opts = { .substitute_env = false };
    lm_config_t *cfg = lm_config_load((const char *)data, size, &opts, &errs);
    if (cfg == NULL && errs.count == 0)
        abort(); /* a failure must say why */
    if (cfg != NULL && errs.count != 0)
        abort(); /* success must be clean */
    cJSON *j = lm_config_errors_to_json(&errs);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_free(s);
    cJSON_Delete(j);
    char *f = lm_config_errors_format(&errs);
    free(f);
    lm_config_free(cfg);
    lm_config_errors_free(&errs);
    return 0;
}

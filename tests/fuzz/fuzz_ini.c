/* libFuzzer driver: the INI config parser (core/config.c), every key type.
 * Build and run (docs/reliability.md, "Fuzzing"):
 *   bash tests/fuzz/build.sh && bash bench/fuzz.sh 60 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    core_config cfg;
    char err[512];
    core_config_defaults(&cfg);
    if (core_config_try_parse(&cfg, (const char *)data, size, "fuzz.ini", err, sizeof err) == 0) {
        /* a parsed config must print and parse back to the same text */
        char *text = core_config_text(&cfg);
        core_config again;
        core_config_defaults(&again);
        if (core_config_try_parse(&again, text, strlen(text), "text", err, sizeof err) != 0) abort();
        char *text2 = core_config_text(&again);
        if (strcmp(text, text2)) abort();
        free(text);
        free(text2);
    } else if (!err[0]) {
        abort(); /* a refusal always says why */
    }
    return 0;
}

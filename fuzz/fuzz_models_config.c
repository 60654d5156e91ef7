/* libFuzzer target: the models config parser (src/models/config.c) on
 * arbitrary bytes, with a base directory for relative paths. */
#include "models/config.h"

#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    models_config c;
    char err[512];
    if (models_config_parse((const char *)data, size, "/base", &c, err, sizeof err) == 0) models_config_free(&c);
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)(size < 63 ? size : 63), (const char *)data);
    models_filename_check(name, err, sizeof err);
    return 0;
}

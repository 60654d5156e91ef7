/* The CUDA tests' backend opening and skip rule (cuda_test.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cuda_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

sd_backend *cuda_test_open(sd_precision p, char *why, size_t whylen)
{
    sd_device_options o = {.kind = SD_DEVICE_CUDA, .precision = p};
    char line[768];
    return sd_backend_open(&o, SD_F16, line, sizeof line, why, whylen);
}

void cuda_test_require(const char *test)
{
    const char *filter = getenv("SDXL_TEST_FILTER");
    if (filter && *filter) cmocka_set_test_filter(filter);
    char why[768];
    sd_backend *be = cuda_test_open(SD_PRECISION_FP32, why, sizeof why);
    if (be) {
        printf("%s on %s\n", test, sd_backend_describe(be));
        sd_backend_free(be);
        return;
    }
    const char *required = getenv("SDXL_CUDA_TESTS_REQUIRE");
    if (required && *required && strcmp(required, "0")) {
        printf("%s: FAILED: the CUDA backend is required here but did not open: %s\n", test, why);
        exit(1);
    }
    printf("%s: SKIPPED: no usable GPU (%s)\n", test, why);
    exit(CUDA_TEST_SKIP);
}

int cuda_test_emulated(void)
{
    char why[768];
    sd_backend *be = cuda_test_open(SD_PRECISION_FP32, why, sizeof why);
    int emulated = be && strstr(sd_backend_describe(be), "emulator") != NULL;
    sd_backend_free(be);
    return emulated;
}

/* What the CUDA backend's tests (tests/test_cuda_*.c) share: opening the
 * backend through the module (SDXL_CUDA_MODULE names the real one or the
 * host emulator's), and the rule for a machine without a GPU: the real
 * module's tests exit 77, which CTest reports as skipped with the reason
 * printed, never as passed; under the emulator (SDXL_CUDA_TESTS_REQUIRE=1)
 * a backend that does not open is a failure. */
#ifndef SDXL_CUDA_TEST_H
#define SDXL_CUDA_TEST_H

#include "sd/device.h"

#define CUDA_TEST_SKIP 77

/* The CUDA backend at precision p; NULL with why. */
sd_backend *cuda_test_open(sd_precision p, char *why, size_t whylen);
/* Called first in main(): returns when a CUDA backend opens, else exits 77
 * (skipped, the reason on stdout) or 1 (required but missing). Applies
 * $SDXL_TEST_FILTER (a cmocka test-name pattern) when set. */
void cuda_test_require(const char *test);
/* True under the host emulator (the module's device name says so). */
int cuda_test_emulated(void);

#endif

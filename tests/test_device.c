/* Backend selection (sd/device.h) on any machine: the SDXL_DEVICE and
 * SDXL_CUDA_PRECISION values, the precision table, `auto` falling back to
 * the CPU with the reason in the start-up line, `cuda` without a usable GPU
 * as a clear error (also through the worker binary), bad environment values,
 * and, with the host emulator's module, a machine whose driver reports no
 * device. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sd/device.h"
#include "testutil.h"

static char line[1024], err[1024];

static sd_backend *open_with(sd_device_kind kind, const char *module)
{
    sd_device_options o = {.kind = kind, .cuda_module = module, .cpu.threads = 1};
    line[0] = err[0] = '\0';
    return sd_backend_open(&o, SD_F16, line, sizeof line, err, sizeof err);
}

static void test_names(void **state)
{
    sd_device_kind k;
    sd_precision p;
    assert_int_equal(sd_device_kind_parse("CUDA", &k), 0);
    assert_int_equal(k, SD_DEVICE_CUDA);
    assert_int_equal(sd_device_kind_parse("auto", &k), 0);
    assert_int_equal(k, SD_DEVICE_AUTO);
    assert_int_equal(sd_device_kind_parse("cpu", &k), 0);
    assert_int_equal(sd_device_kind_parse("gpu", &k), -1);
    assert_int_equal(sd_device_kind_parse("from-env", &k), -1);
    assert_int_equal(sd_precision_parse("bf16", &p), 0);
    assert_int_equal(p, SD_PRECISION_BF16);
    assert_int_equal(sd_precision_parse("FP32", &p), 0);
    assert_int_equal(sd_precision_parse("fp8", &p), -1);
    assert_string_equal(sd_precision_name(SD_PRECISION_FP16), "fp16");
    assert_string_equal(sd_device_kind_name(SD_DEVICE_CUDA), "cuda");
}

/* fp16: the VAE in fp32 (it overflows in fp16) with TF32; bf16 throughout;
 * fp32 without TF32; auto follows the checkpoint's dtype. */
static void test_precision_table(void **state)
{
    sd_cuda_options o;
    sd_cuda_options_for(SD_PRECISION_FP16, SD_F16, &o);
    assert_int_equal(o.stage_dtype[SD_STAGE_TEXT], SD_F16);
    assert_int_equal(o.stage_dtype[SD_STAGE_UNET], SD_F16);
    assert_int_equal(o.stage_dtype[SD_STAGE_VAE], SD_F32);
    assert_true(o.allow_tf32);
    sd_cuda_options_for(SD_PRECISION_BF16, SD_F16, &o);
    for (int s = 0; s < SD_STAGE_COUNT; s++) assert_int_equal(o.stage_dtype[s], SD_BF16);
    sd_cuda_options_for(SD_PRECISION_FP32, SD_F16, &o);
    for (int s = 0; s < SD_STAGE_COUNT; s++) assert_int_equal(o.stage_dtype[s], SD_F32);
    assert_false(o.allow_tf32);
    sd_cuda_options_for(SD_PRECISION_AUTO, SD_BF16, &o);
    assert_int_equal(o.stage_dtype[SD_STAGE_UNET], SD_BF16);
    sd_cuda_options_for(SD_PRECISION_AUTO, SD_F32, &o);
    assert_int_equal(o.stage_dtype[SD_STAGE_UNET], SD_F16);
    assert_int_equal(o.stage_dtype[SD_STAGE_VAE], SD_F32);
}

static void test_cpu_asked_for(void **state)
{
    sd_backend *be = open_with(SD_DEVICE_CPU, "/nonexistent/libsdxl_cuda.so");
    assert_non_null(be);
    assert_string_equal(sd_backend_name(be), "cpu");
    assert_non_null(strstr(line, "cpu: "));
    assert_non_null(strstr(line, "(SDXL_DEVICE=cpu)"));
    sd_backend_free(be);
}

/* A module that does not load: auto runs on the CPU and says why; cuda fails. */
static void test_missing_module(void **state)
{
    sd_backend *be = open_with(SD_DEVICE_AUTO, "/nonexistent/libsdxl_cuda.so");
    assert_non_null(be);
    assert_string_equal(sd_backend_name(be), "cpu");
    assert_non_null(strstr(line, "GPU not used: the CUDA backend did not load"));
    sd_backend_free(be);
    assert_null(open_with(SD_DEVICE_CUDA, "/nonexistent/libsdxl_cuda.so"));
    assert_non_null(strstr(err, "SDXL_DEVICE=cuda but no usable GPU: the CUDA backend did not load"));
}

static void test_environment(void **state)
{
    sd_device_options o = {.cuda_module = "/nonexistent/libsdxl_cuda.so"};
    setenv("SDXL_DEVICE", "gpu", 1);
    assert_null(sd_backend_open(&o, SD_F16, line, sizeof line, err, sizeof err));
    assert_string_equal(err, "SDXL_DEVICE 'gpu' is not auto, cuda or cpu");
    setenv("SDXL_DEVICE", "cuda", 1);
    assert_null(sd_backend_open(&o, SD_F16, line, sizeof line, err, sizeof err));
    assert_non_null(strstr(err, "SDXL_DEVICE=cuda but no usable GPU"));
    setenv("SDXL_DEVICE", "auto", 1);
    setenv("SDXL_CUDA_PRECISION", "half", 1);
    assert_null(sd_backend_open(&o, SD_F16, line, sizeof line, err, sizeof err));
    assert_string_equal(err, "SDXL_CUDA_PRECISION 'half' is not auto, fp16, bf16 or fp32");
    unsetenv("SDXL_CUDA_PRECISION");
    setenv("SDXL_CUDA_MEMORY_LIMIT_MB", "12G", 1);
    assert_null(sd_backend_open(&o, SD_F16, line, sizeof line, err, sizeof err));
    assert_non_null(strstr(err, "SDXL_CUDA_MEMORY_LIMIT_MB '12G'"));
    unsetenv("SDXL_CUDA_MEMORY_LIMIT_MB");
    setenv("SDXL_DEVICE", "cpu", 1);
    sd_backend *be = sd_backend_open(&o, SD_F16, line, sizeof line, err, sizeof err);
    assert_non_null(be);
    sd_backend_free(be);
    unsetenv("SDXL_DEVICE");
}

/* The worker asked for the GPU on a machine without one: the job fails with
 * a message that says so, and the process does not crash. */
static void test_worker_without_gpu(void **state)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "SDXL_DEVICE=cuda SDXL_CUDA_MODULE=/nonexistent/libsdxl_cuda.so MODELS_CONFIG=config/demo.json "
             "%s --test_input '{\"input\": {\"prompt\": \"a cat\", \"width\": 256, \"height\": 256, \"steps\": 1}}' "
             "2>/dev/null", tu_worker_bin());
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[8192] = "";
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    pclose(p);
    assert_non_null(strstr(out, "SDXL_DEVICE=cuda but no usable GPU"));
    assert_non_null(strstr(out, "\"code\":\"MODEL_UNAVAILABLE\""));
}

/* The device line `sdxl-worker generate` prints for an environment. */
static void generate_device_line(const char *env, char *out, size_t len)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s %s generate -m tests/data/small/sdxl_small.safetensors -p cat -W 64 -H 64 --steps 1 "
             "-o /dev/null 2>&1 >/dev/null | grep '^device: ' || true", env, tu_worker_bin());
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    pclose(p);
}

/* With the emulator's module: a driver that reports no device (a process
 * sees one device count, so each case runs in its own worker process). */
static void test_driver_without_device(void **state)
{
    char path[1024], env[1200], got[2048];
    const char *dir = getenv("SDXL_BUILD_DIR");
    snprintf(path, sizeof path, "%s/libsdxl_cuda_emu.so", dir ? dir : "build");
    if (access(path, F_OK)) {
        printf("no emulator module at %s (this build has no CUDA toolkit): nothing to check\n", path);
        return;
    }
    snprintf(env, sizeof env, "SDXL_CUDA_EMU_DEVICES=0 SDXL_DEVICE=auto SDXL_CUDA_MODULE=%s", path);
    generate_device_line(env, got, sizeof got);
    printf("%s", got);
    assert_non_null(strstr(got, "device: cpu: "));
    assert_non_null(strstr(got, "(GPU not used: "));
    snprintf(env, sizeof env, "SDXL_CUDA_EMU_DEVICES=0 SDXL_DEVICE=cuda SDXL_CUDA_MODULE=%s", path);
    generate_device_line(env, got, sizeof got);
    assert_string_equal(got, "");
    snprintf(env, sizeof env, "SDXL_DEVICE=auto SDXL_CUDA_MODULE=%s", path);
    generate_device_line(env, got, sizeof got);
    printf("%s", got);
    assert_non_null(strstr(got, "device: cuda: CUDA emulator"));
}

int main(void)
{
    unsetenv("SDXL_DEVICE");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_precision_table),
        cmocka_unit_test(test_cpu_asked_for),
        cmocka_unit_test(test_missing_module),
        cmocka_unit_test(test_environment),
        cmocka_unit_test(test_worker_without_gpu),
        cmocka_unit_test(test_driver_without_device),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* sd/dtype against torch: fp32->fp16/bf16 rounding, fp16/bf16->fp32, and
 * every byte of float8_e4m3fn / float8_e5m2 (tests/data/dtype_goldens.json,
 * written by tools/reference/make_dtype_goldens.py). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "sd/dtype.h"
#include "testutil.h"

static cJSON *goldens;

static uint32_t at(const char *key, int i)
{
    return (uint32_t)cJSON_GetArrayItem(cJSON_GetObjectItem(goldens, key), i)->valuedouble;
}
static int count(const char *key) { return cJSON_GetArraySize(cJSON_GetObjectItem(goldens, key)); }
static float f32_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t bits_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static void test_f32_to_f16_and_bf16_round_like_torch(void **state)
{
    int n = count("f32_bits");
    assert_true(n > 200);
    for (int i = 0; i < n; i++) {
        float x = f32_of(at("f32_bits", i));
        assert_int_equal(sd_f32_to_f16(x), at("f16_bits", i));
        assert_int_equal(sd_f32_to_bf16(x), at("bf16_bits", i));
    }
}

static void test_f16_round_trips_every_value(void **state)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = sd_f16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        assert_int_equal(sd_f32_to_f16(f), h);
        assert_int_equal(bits_of(sd_bf16_to_f32((uint16_t)h)), h << 16);
    }
}

static void test_f8_decodes_every_byte_like_torch(void **state)
{
    for (int b = 0; b < 256; b++) {
        float e4 = sd_f8e4m3_to_f32((uint8_t)b), e5 = sd_f8e5m2_to_f32((uint8_t)b);
        float t4 = f32_of(at("f8_e4m3_to_f32_bits", b)), t5 = f32_of(at("f8_e5m2_to_f32_bits", b));
        if (isnan(t4)) assert_true(isnan(e4)); else assert_int_equal(bits_of(e4), bits_of(t4));
        if (isnan(t5)) assert_true(isnan(e5)); else assert_int_equal(bits_of(e5), bits_of(t5));
    }
}

static void test_widen_and_narrow_arrays(void **state)
{
    const float src[5] = {1.0f, -2.5f, 0.333333f, 65504.0f, 1e-3f};
    uint16_t half[6] = {0};
    float back[5];
    sd_narrow(SD_F16, src, 5, half, 1);
    assert_int_equal(half[0], 0);
    sd_widen(SD_F16, half, 1, 5, back);
    for (int i = 0; i < 5; i++) assert_float_equal(back[i], src[i], fabsf(src[i]) * 1e-3f);
    sd_dtype t;
    assert_int_equal(sd_dtype_from_name("BF16", &t), 0);
    assert_int_equal(t, SD_BF16);
    assert_int_equal(sd_dtype_from_name("I64", &t), -1);
    assert_int_equal(sd_dtype_size(SD_F8_E5M2), 1);
}

int main(void)
{
    goldens = tu_read_json("tests/data/dtype_goldens.json");
    if (!goldens) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32_to_f16_and_bf16_round_like_torch),
        cmocka_unit_test(test_f16_round_trips_every_value),
        cmocka_unit_test(test_f8_decodes_every_byte_like_torch),
        cmocka_unit_test(test_widen_and_narrow_arrays),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cJSON_Delete(goldens);
    return rc;
}

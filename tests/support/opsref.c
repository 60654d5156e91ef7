/* Implementation of the ops-test helpers (see opsref.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opsref.h"

void or_random(uint32_t *state, float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t s = *state;
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        *state = s;
        x[i] = lo + (hi - lo) * (float)((s >> 8) * (1.0 / 16777216.0));
    }
}

float *or_random_new(uint32_t *state, size_t n, float lo, float hi)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    assert_non_null(x);
    or_random(state, x, n, lo, hi);
    return x;
}

or_weight or_weight_random(uint32_t *state, sd_dtype dtype, int ndim, const int64_t *shape, float lo, float hi)
{
    or_weight r = {.w = {.name = "test.weight", .dtype = dtype, .ndim = ndim}};
    for (int i = 0; i < ndim; i++) r.w.shape[i] = shape[i];
    size_t n = (size_t)sd_weight_numel(&r.w);
    float *values = or_random_new(state, n, lo, hi);
    r.bytes = malloc(n * sd_dtype_size(dtype) + 1);
    r.ref = malloc(n * sizeof(float) + 1);
    assert_non_null(r.bytes);
    assert_non_null(r.ref);
    if (dtype == SD_F8_E4M3 || dtype == SD_F8_E5M2) {
        /* fp8 has no narrowing: take random codes below the NaN/inf patterns
         * (exponent field below all-ones). */
        for (size_t i = 0; i < n; i++) {
            uint8_t code = (uint8_t)((values[i] - lo) / (hi - lo) * 255.0f);
            uint8_t mask = dtype == SD_F8_E4M3 ? 0x78 : 0x7c;
            if ((code & mask) == mask) code &= (uint8_t)~0x40;
            ((uint8_t *)r.bytes)[i] = code;
        }
    } else {
        sd_narrow(dtype, values, n, r.bytes, 0);
    }
    sd_widen(dtype, r.bytes, 0, n, r.ref);
    r.w.data = r.bytes;
    free(values);
    return r;
}

void or_weight_free(or_weight *w)
{
    free(w->bytes);
    free(w->ref);
    w->bytes = w->ref = NULL;
}

sd_tensor *or_tensor(sd_backend *be, int ndim, const int64_t *shape, const float *host)
{
    sd_tensor *t = sd_tensor_new(be, ndim, shape);
    assert_non_null(t);
    assert_int_equal(sd_tensor_upload(be, t, host), 0);
    return t;
}

float *or_download(sd_backend *be, const sd_tensor *t)
{
    float *h = malloc((size_t)sd_numel(t) * sizeof *h);
    assert_non_null(h);
    assert_int_equal(sd_tensor_download(be, t, h), 0);
    return h;
}

double or_rel_err(const float *got, const double *ref, size_t n, double floor)
{
    double max_ref = floor, max_diff = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(ref[i]) > max_ref) max_ref = fabs(ref[i]);
        double d = fabs((double)got[i] - ref[i]);
        if (isnan(d)) return INFINITY;
        if (d > max_diff) max_diff = d;
    }
    return max_diff / max_ref;
}

void or_expect_error(sd_backend *be, int op_result, const char *needle)
{
    assert_int_equal(op_result, -1);
    const char *err = sd_backend_error(be);
    assert_non_null(err);
    if (!strstr(err, needle)) fail_msg("error \"%s\" lacks \"%s\"", err, needle);
    sd_backend_clear_error(be);
}

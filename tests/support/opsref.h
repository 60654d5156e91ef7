/* Helpers for the tests of the tensor ops (tests/test_ops_*.c): seeded random
 * data, weights stored in a chosen dtype together with the exact fp32 values
 * the reference must use, host <-> backend tensor shortcuts, and the error
 * measure (max |got - ref| / max |ref|). */
#ifndef SDXL_OPSREF_H
#define SDXL_OPSREF_H

#include <stddef.h>
#include <stdint.h>

#include "sd/backend.h"

/* Uniform floats in [lo, hi) from a xorshift32 state (never 0). */
void or_random(uint32_t *state, float *x, size_t n, float lo, float hi);
float *or_random_new(uint32_t *state, size_t n, float lo, float hi);   /* malloc'd */

/* A weight held in dtype `dtype`: `w` is the sd_weight view the ops read,
 * `ref` its values widened back to fp32 (what the reference computes with). */
typedef struct {
    sd_weight w;
    void *bytes;
    float *ref;
} or_weight;

/* Random weight of the given shape in [lo, hi), rounded to dtype. */
or_weight or_weight_random(uint32_t *state, sd_dtype dtype, int ndim, const int64_t *shape, float lo, float hi);
void or_weight_free(or_weight *w);

/* New tensor holding host data (asserts success). */
sd_tensor *or_tensor(sd_backend *be, int ndim, const int64_t *shape, const float *host);
/* Tensor contents as a malloc'd host array (asserts success). */
float *or_download(sd_backend *be, const sd_tensor *t);

/* max_i |got_i - ref_i| / max(max_i |ref_i|, floor). */
double or_rel_err(const float *got, const double *ref, size_t n, double floor);

/* Asserts that `op_result` is -1 and the backend's error mentions `needle`,
 * then clears the error. */
void or_expect_error(sd_backend *be, int op_result, const char *needle);

#endif

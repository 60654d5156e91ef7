/* What a backend implements: the dispatch table behind sd/backend.h. The
 * public wrappers in backend.c validate every argument (shapes, dtypes,
 * aliasing, the sticky error) before calling in, so implementations only
 * compute; they return 0, or -1 after sd_backend_fail (e.g. out of memory). */
#ifndef SDXL_SD_BACKEND_IMPL_H
#define SDXL_SD_BACKEND_IMPL_H

#include "sd/backend.h"

typedef struct {
    int stride, pad_left, pad_right, pad_top, pad_bottom;
} sd_conv_geom;

typedef struct sd_backend_ops {
    const char *name;
    void (*destroy)(sd_backend *be);
    const char *(*describe)(sd_backend *be);
    size_t (*scratch_bytes)(const sd_backend *be);
    void (*trim)(sd_backend *be);
    /* Optional (NULL: nothing to do): the stage of the ops that follow; drop
     * derived copies of weight bytes in a range; wait for queued ops (0 or -1
     * with the error set); the bytes of the weight copies held. */
    void (*set_stage)(sd_backend *be, sd_stage stage);
    void (*forget_weights)(sd_backend *be, const void *data, size_t bytes);
    int (*sync)(sd_backend *be);
    size_t (*weight_bytes)(const sd_backend *be);

    /* Memory for a new tensor of t->ndim / t->shape: sets t->dtype and
     * returns the data (NULL when out of memory). */
    float *(*alloc)(sd_backend *be, sd_tensor *t);
    void (*release)(sd_backend *be, float *p);
    /* fp32 host data to and from a tensor of any storage dtype. */
    int (*upload)(sd_backend *be, sd_tensor *dst, const float *src);
    int (*download)(sd_backend *be, float *dst, const sd_tensor *src);
    int (*load_weight)(sd_backend *be, sd_tensor *t, const sd_weight *w);

    /* y = x W^T + b for W [N, K]; with w_is_kn, y = x W + b for W [K, N]. */
    int (*linear)(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const sd_weight *b,
                  int w_is_kn);
    int (*conv2d)(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const sd_weight *b,
                  const sd_conv_geom *g);
    int (*group_norm)(sd_backend *be, sd_tensor *y, const sd_tensor *x, int groups, float eps,
                      const sd_weight *gamma, const sd_weight *beta, sd_act act);
    int (*layer_norm)(sd_backend *be, sd_tensor *y, const sd_tensor *x, float eps,
                      const sd_weight *gamma, const sd_weight *beta);
    int (*softmax)(sd_backend *be, sd_tensor *y, const sd_tensor *x);
    int (*attention)(sd_backend *be, sd_tensor *out, const sd_tensor *q, const sd_tensor *k,
                     const sd_tensor *v, int heads, int causal);
    int (*act)(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_act act);
    int (*geglu)(sd_backend *be, sd_tensor *y, const sd_tensor *x);
    /* y = a (+ or *) b, b broadcast to a's shape: a viewed as dim[0..3]
     * (padded with leading 1s), b's element at (i0..i3) is
     * b[sum i_d * b_stride[d]] (stride 0 along broadcast dims). */
    int (*binary)(sd_backend *be, sd_tensor *y, const sd_tensor *a, const sd_tensor *b, const int64_t dim[4],
                  const int64_t b_stride[4], int multiply);
    int (*scale)(sd_backend *be, sd_tensor *y, const sd_tensor *x, float alpha);
    int (*copy)(sd_backend *be, sd_tensor *y, const sd_tensor *x);
    int (*fill)(sd_backend *be, sd_tensor *y, float value);
    int (*upsample_nearest)(sd_backend *be, sd_tensor *y, const sd_tensor *x);
    /* y viewed as [outer, y_inner] receives x viewed as [outer, x_inner] at
     * column offset: the common core of concat and slice (and the reverse
     * with gather = 1: y[outer, y_inner] = x[outer, offset : offset + y_inner]). */
    int (*copy_block)(sd_backend *be, sd_tensor *y, const sd_tensor *x, int64_t outer,
                      int64_t y_inner, int64_t x_inner, int64_t offset, int gather);
    /* y[b] = x[b]^T for x viewed as [batch, rows, cols]. */
    int (*transpose)(sd_backend *be, sd_tensor *y, const sd_tensor *x, int64_t batch, int64_t rows,
                     int64_t cols);
    int (*embedding)(sd_backend *be, sd_tensor *y, const sd_weight *table, const int32_t *ids, int64_t n);
} sd_backend_ops;

struct sd_backend {
    const sd_backend_ops *ops;
    void *impl;               /* the backend's own state */
    int failed;
    char err[512];
    size_t live_bytes, peak_bytes;
    size_t device_used_peak;  /* raised by a device backend at its synchronisations */
    struct sd_op_profile *profile; /* NULL unless sd_backend_profile is on */
};

/* Records the first failure (printf-style message); returns -1. */
int sd_backend_fail(sd_backend *be, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Raises peak_bytes to cover live tensors plus the backend's scratch and
 * weight copies now. */
void sd_backend_note_peak(sd_backend *be);
/* Bytes of a tensor's data in its storage dtype. */
size_t sd_tensor_bytes(const sd_tensor *t);

#endif

/* Convolutions on cuDNN's legacy C API (specs/cuda-backend.md §3.1):
 * NCHW tensors in the output's dtype, fp32 accumulation (the convolution's
 * compute type is FLOAT: cuDNN's pseudo-half configuration for fp16/bf16),
 * tensor cores for fp16/bf16, TF32 for fp32 only when allowed (else
 * CUDNN_FMA_MATH), the first deterministic algorithm cuDNN's heuristics
 * rank (chosen once per shape and kept with its descriptors), and the bias
 * added by a kernel after. cuDNN pads symmetrically, so
 * an asymmetric padding (the VAE encoder's downsampling pads right and
 * bottom by one) goes through an explicitly padded copy of the input. */
#include "sd/cuda/cuda_backend.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* The most workspace one convolution may take. */
#define CONV_WORKSPACE_MAX ((size_t)1 << 30)

typedef struct {
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
} conv_descs;

/* A convolution shape with its descriptors and cuDNN's algorithm: made once
 * per shape (a UNet step meets a few dozen) and reused, so the heuristics
 * run once, not at every call. */
typedef struct {
    int64_t xs[4], ws[4], ys[4];
    int stride, pad_h, pad_w;
    sd_dtype t;
    conv_descs d;
    cudnnConvolutionFwdAlgo_t algo;
    size_t workspace;
} conv_plan;

struct cuda_conv_plans {
    conv_plan *v;
    size_t n, cap;
};

static void destroy_descs(conv_descs *d)
{
    if (d->x) cudnnDestroyTensorDescriptor(d->x);
    if (d->y) cudnnDestroyTensorDescriptor(d->y);
    if (d->w) cudnnDestroyFilterDescriptor(d->w);
    if (d->conv) cudnnDestroyConvolutionDescriptor(d->conv);
}

void cuda_conv_plans_free(cuda_conv_plans *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) destroy_descs(&p->v[i].d);
    free(p->v);
    free(p);
}

static cudnnStatus_t make_descs(const cuda_state *st, conv_plan *p)
{
    conv_descs *d = &p->d;
    cudnnDataType_t dt = cuda_dnn_type(p->t);
    cudnnMathType_t math = p->t != SD_F32 ? CUDNN_TENSOR_OP_MATH : st->allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
    const int64_t *xs = p->xs, *ws = p->ws, *ys = p->ys;
    cudnnStatus_t s;
    if ((s = cudnnCreateTensorDescriptor(&d->x)) || (s = cudnnCreateTensorDescriptor(&d->y)) ||
        (s = cudnnCreateFilterDescriptor(&d->w)) || (s = cudnnCreateConvolutionDescriptor(&d->conv)))
        return s;
    if ((s = cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, dt, (int)xs[0], (int)xs[1], (int)xs[2], (int)xs[3])) ||
        (s = cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NCHW, dt, (int)ys[0], (int)ys[1], (int)ys[2], (int)ys[3])) ||
        (s = cudnnSetFilter4dDescriptor(d->w, dt, CUDNN_TENSOR_NCHW, (int)ws[0], (int)ws[1], (int)ws[2], (int)ws[3])) ||
        (s = cudnnSetConvolution2dDescriptor(d->conv, p->pad_h, p->pad_w, p->stride, p->stride, 1, 1,
                                             CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT)))
        return s;
    return cudnnSetConvolutionMathType(d->conv, math);
}

/* The first deterministic algorithm of cuDNN's ranking that fits the workspace cap. */
static int pick_algo(sd_backend *be, conv_plan *p)
{
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int found = 0;
    if (cudnn_ok(be, cudnnGetConvolutionForwardAlgorithm_v7(cuda_of(be)->dnn, p->d.x, p->d.w, p->d.conv, p->d.y,
                                                             CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &found, perf),
                 "sd_conv2d"))
        return -1;
    for (int i = 0; i < found; i++)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].determinism == CUDNN_DETERMINISTIC &&
            perf[i].memory <= CONV_WORKSPACE_MAX) {
            p->algo = perf[i].algo;
            p->workspace = perf[i].memory;
            return 0;
        }
    return sd_backend_fail(be, "sd_conv2d: cuDNN offers no deterministic algorithm within %zu MB of workspace",
                           CONV_WORKSPACE_MAX >> 20);
}

static int same_key(const conv_plan *a, const conv_plan *b)
{
    return !memcmp(a->xs, b->xs, sizeof a->xs) && !memcmp(a->ws, b->ws, sizeof a->ws) &&
           !memcmp(a->ys, b->ys, sizeof a->ys) && a->stride == b->stride && a->pad_h == b->pad_h &&
           a->pad_w == b->pad_w && a->t == b->t;
}

/* The plan of key's shape, made on first use; NULL on failure. */
static const conv_plan *plan_for(sd_backend *be, const conv_plan *key)
{
    cuda_state *st = cuda_of(be);
    if (!st->conv_plans && !(st->conv_plans = calloc(1, sizeof *st->conv_plans)))
        return sd_backend_fail(be, "sd_conv2d: out of memory"), NULL;
    cuda_conv_plans *ps = st->conv_plans;
    for (size_t i = 0; i < ps->n; i++)
        if (same_key(&ps->v[i], key)) return &ps->v[i];
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? 2 * ps->cap : 32;
        conv_plan *v = realloc(ps->v, cap * sizeof *v);
        if (!v) return sd_backend_fail(be, "sd_conv2d: out of memory"), NULL;
        ps->v = v, ps->cap = cap;
    }
    conv_plan p = *key;
    p.d = (conv_descs){0};
    if (cudnn_ok(be, make_descs(st, &p), "sd_conv2d") || pick_algo(be, &p)) {
        destroy_descs(&p.d);
        return NULL;
    }
    ps->v[ps->n] = p;
    return &ps->v[ps->n++];
}

static int dims_fit_int(const int64_t *v, int n)
{
    for (int i = 0; i < n; i++)
        if (v[i] > INT_MAX) return 0;
    return 1;
}

int cuda_conv2d(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const sd_weight *b,
                const sd_conv_geom *g)
{
    cuda_state *st = cuda_of(be);
    sd_dtype t = y->dtype;
    int failed = 0;
    const void *xd = cuda_operand(be, x, t, CUDA_SCRATCH_IN0), *wd = cuda_weight(be, w, t);
    const void *bd = cuda_weight_opt(be, b, t, &failed);
    if (!xd || !wd || failed) return -1;
    conv_plan key = {.xs = {x->shape[0], x->shape[1], x->shape[2], x->shape[3]},
                     .ws = {w->shape[0], w->shape[1], w->shape[2], w->shape[3]},
                     .ys = {y->shape[0], y->shape[1], y->shape[2], y->shape[3]},
                     .stride = g->stride, .pad_h = g->pad_top, .pad_w = g->pad_left, .t = t};
    if (g->pad_top != g->pad_bottom || g->pad_left != g->pad_right) {
        int64_t *xs = key.xs, hp = xs[2] + g->pad_top + g->pad_bottom, wp = xs[3] + g->pad_left + g->pad_right;
        void *padded = cuda_scratch(be, CUDA_SCRATCH_PAD, (size_t)(xs[0] * xs[1] * hp * wp) * sd_dtype_size(t));
        if (!padded || cuda_ok(be, sd_cuda_pad(t, padded, xd, xs[0] * xs[1], xs[2], xs[3], g->pad_top, g->pad_bottom,
                                               g->pad_left, g->pad_right, st->stream), "sd_conv2d pad"))
            return -1;
        xd = padded, xs[2] = hp, xs[3] = wp, key.pad_h = key.pad_w = 0;
    }
    if (!dims_fit_int(key.xs, 4) || !dims_fit_int(key.ws, 4) || !dims_fit_int(key.ys, 4))
        return sd_backend_fail(be, "sd_conv2d: a dimension is too large for cuDNN");
    const conv_plan *p = plan_for(be, &key);
    void *workspace = NULL;
    if (!p || (p->workspace && !(workspace = cuda_scratch(be, CUDA_SCRATCH_WORK, p->workspace)))) return -1;
    const float one = 1.0f, zero = 0.0f;
    if (cudnn_ok(be, cudnnConvolutionForward(st->dnn, &one, p->d.x, xd, p->d.w, wd, p->d.conv, p->algo, workspace,
                                             p->workspace, &zero, p->d.y, y->data), "sd_conv2d"))
        return -1;
    if (!bd) return 0;
    return cuda_ok(be, sd_cuda_bias(t, y->data, bd, key.ys[0], key.ys[1], key.ys[2] * key.ys[3], st->stream),
                   "sd_conv2d bias");
}

/* Convolutions on cuDNN's legacy C API (specs/cuda-backend.md §3.1):
 * NCHW tensors in the output's dtype, fp32 accumulation (the convolution's
 * compute type is FLOAT: cuDNN's pseudo-half configuration for fp16/bf16),
 * tensor cores for fp16/bf16, TF32 for fp32 only when allowed (else
 * CUDNN_FMA_MATH), the first deterministic algorithm cuDNN's heuristics
 * rank, and the bias added by a kernel after. cuDNN pads symmetrically, so
 * an asymmetric padding (the VAE encoder's downsampling pads right and
 * bottom by one) goes through an explicitly padded copy of the input. */
#include "sd/cuda/cuda_backend.h"

#include <limits.h>

/* The most workspace one convolution may take. */
#define CONV_WORKSPACE_MAX ((size_t)1 << 30)

typedef struct {
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
} conv_descs;

static void destroy_descs(conv_descs *d)
{
    if (d->x) cudnnDestroyTensorDescriptor(d->x);
    if (d->y) cudnnDestroyTensorDescriptor(d->y);
    if (d->w) cudnnDestroyFilterDescriptor(d->w);
    if (d->conv) cudnnDestroyConvolutionDescriptor(d->conv);
}

static cudnnStatus_t make_descs(const cuda_state *st, conv_descs *d, sd_dtype t, const int64_t xs[4],
                                const int64_t ws[4], const int64_t ys[4], int stride, int pad_h, int pad_w)
{
    cudnnDataType_t dt = cuda_dnn_type(t);
    cudnnMathType_t math = t != SD_F32 ? CUDNN_TENSOR_OP_MATH : st->allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
    cudnnStatus_t s;
    if ((s = cudnnCreateTensorDescriptor(&d->x)) || (s = cudnnCreateTensorDescriptor(&d->y)) ||
        (s = cudnnCreateFilterDescriptor(&d->w)) || (s = cudnnCreateConvolutionDescriptor(&d->conv)))
        return s;
    if ((s = cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, dt, (int)xs[0], (int)xs[1], (int)xs[2], (int)xs[3])) ||
        (s = cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NCHW, dt, (int)ys[0], (int)ys[1], (int)ys[2], (int)ys[3])) ||
        (s = cudnnSetFilter4dDescriptor(d->w, dt, CUDNN_TENSOR_NCHW, (int)ws[0], (int)ws[1], (int)ws[2], (int)ws[3])) ||
        (s = cudnnSetConvolution2dDescriptor(d->conv, pad_h, pad_w, stride, stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                             CUDNN_DATA_FLOAT)))
        return s;
    return cudnnSetConvolutionMathType(d->conv, math);
}

/* The first deterministic algorithm of cuDNN's ranking that fits the workspace cap. */
static int pick_algo(sd_backend *be, const conv_descs *d, cudnnConvolutionFwdAlgo_t *algo, size_t *workspace)
{
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int found = 0;
    if (cudnn_ok(be, cudnnGetConvolutionForwardAlgorithm_v7(cuda_of(be)->dnn, d->x, d->w, d->conv, d->y,
                                                             CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &found, perf),
                 "sd_conv2d"))
        return -1;
    for (int i = 0; i < found; i++)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].determinism == CUDNN_DETERMINISTIC &&
            perf[i].memory <= CONV_WORKSPACE_MAX) {
            *algo = perf[i].algo;
            *workspace = perf[i].memory;
            return 0;
        }
    return sd_backend_fail(be, "sd_conv2d: cuDNN offers no deterministic algorithm within %zu MB of workspace",
                           CONV_WORKSPACE_MAX >> 20);
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
    int64_t xs[4] = {x->shape[0], x->shape[1], x->shape[2], x->shape[3]};
    int pad_h = g->pad_top, pad_w = g->pad_left;
    if (g->pad_top != g->pad_bottom || g->pad_left != g->pad_right) {
        int64_t hp = xs[2] + g->pad_top + g->pad_bottom, wp = xs[3] + g->pad_left + g->pad_right;
        void *padded = cuda_scratch(be, CUDA_SCRATCH_PAD, (size_t)(xs[0] * xs[1] * hp * wp) * sd_dtype_size(t));
        if (!padded || cuda_ok(be, sd_cuda_pad(t, padded, xd, xs[0] * xs[1], xs[2], xs[3], g->pad_top, g->pad_bottom,
                                               g->pad_left, g->pad_right, st->stream), "sd_conv2d pad"))
            return -1;
        xd = padded, xs[2] = hp, xs[3] = wp, pad_h = pad_w = 0;
    }
    const int64_t *ws = w->shape, *ys = y->shape;
    if (!dims_fit_int(xs, 4) || !dims_fit_int(ws, 4) || !dims_fit_int(ys, 4))
        return sd_backend_fail(be, "sd_conv2d: a dimension is too large for cuDNN");
    conv_descs d = {0};
    cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
    size_t ws_bytes = 0;
    void *workspace = NULL;
    const float one = 1.0f, zero = 0.0f;
    int rc = cudnn_ok(be, make_descs(st, &d, t, xs, ws, ys, g->stride, pad_h, pad_w), "sd_conv2d") ||
             pick_algo(be, &d, &algo, &ws_bytes) ||
             (ws_bytes && !(workspace = cuda_scratch(be, CUDA_SCRATCH_WORK, ws_bytes))) ||
             cudnn_ok(be, cudnnConvolutionForward(st->dnn, &one, d.x, xd, d.w, wd, d.conv, algo, workspace, ws_bytes,
                                                  &zero, d.y, y->data), "sd_conv2d") ? -1 : 0;
    destroy_descs(&d);
    if (rc || !bd) return rc;
    return cuda_ok(be, sd_cuda_bias(t, y->data, bd, ys[0], ys[1], ys[2] * ys[3], st->stream), "sd_conv2d bias");
}

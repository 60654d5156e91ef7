/* emu_cudnn.cpp: the cuDNN 9 legacy-API subset of the emulator (C linkage,
 * the real prototypes): handles, 4-D tensor/filter/convolution descriptors,
 * forward 2-D convolution (cross-correlation or true convolution, stride,
 * symmetric padding, NCHW/NHWC or any strides) and the bias-style
 * cudnnAddTensor. Arguments are validated as cuDNN documents; convolutions
 * are computed on the host with fp32 inputs (rounded to TF32 for fp32 data
 * under the math types that let cuDNN use tensor cores), accumulated in
 * double and rounded to y's type once. */
#include "emu_internal.h"

#include <cudnn.h>

#include <vector>

struct cudnnContext {
    cudaStream_t stream;
};

/* A 4-D tensor: element strides, NCHW and NHWC being two stride patterns. */
struct cudnnTensorStruct {
    bool set;
    emu::Elem elem;
    int n, c, h, w;
    int ns, cs, hs, ws;
};

struct cudnnFilterStruct {
    bool set;
    emu::Elem elem;
    cudnnTensorFormat_t format; /* NCHW: k c r s, NHWC: k r s c */
    int k, c, r, s;
};

struct cudnnConvolutionStruct {
    bool set;
    int pad_h, pad_w, stride_h, stride_w, dilation_h, dilation_w;
    cudnnConvolutionMode_t mode;
    cudnnDataType_t compute;
    cudnnMathType_t math = CUDNN_DEFAULT_MATH;
    int groups = 1;
};

namespace emu {

namespace {

/* What the one emulated algorithm asks for, so that callers' workspace
 * paths run. */
const size_t PRECOMP_WORKSPACE_BYTES = 4096;

Registry<cudnnContext> &g_handles = *new Registry<cudnnContext>;

/* cudnnCreate*Descriptor: an unset descriptor (set == false). */
template <typename T> cudnnStatus_t create_descriptor(T **out)
{
    if (!out)
        return CUDNN_STATUS_BAD_PARAM;
    *out = new T{};
    return CUDNN_STATUS_SUCCESS;
}

bool elem_of(cudnnDataType_t t, Elem *e)
{
    switch (t) {
    case CUDNN_DATA_FLOAT: *e = Elem::F32; return true;
    case CUDNN_DATA_HALF: *e = Elem::F16; return true;
    case CUDNN_DATA_BFLOAT16: *e = Elem::BF16; return true;
    default: return false;
    }
}

cudnnStatus_t set_tensor(cudnnTensorDescriptor_t d, cudnnDataType_t type, const int dims[4], const int strides[4])
{
    if (!d)
        return CUDNN_STATUS_BAD_PARAM;
    for (int i = 0; i < 4; i++)
        if (dims[i] <= 0 || strides[i] <= 0)
            return CUDNN_STATUS_BAD_PARAM;
    Elem e;
    if (!elem_of(type, &e))
        return CUDNN_STATUS_NOT_SUPPORTED;
    *d = cudnnTensorStruct{true, e, dims[0], dims[1], dims[2], dims[3], strides[0], strides[1], strides[2], strides[3]};
    return CUDNN_STATUS_SUCCESS;
}

size_t tensor_offset(const cudnnTensorStruct &t, int n, int c, int h, int w)
{
    return (size_t)n * t.ns + (size_t)c * t.cs + (size_t)h * t.hs + (size_t)w * t.ws;
}

size_t tensor_bytes(const cudnnTensorStruct &t)
{
    return (tensor_offset(t, t.n - 1, t.c - 1, t.h - 1, t.w - 1) + 1) * elem_size(t.elem);
}

size_t filter_offset(const cudnnFilterStruct &f, int k, int c, int r, int s)
{
    if (f.format == CUDNN_TENSOR_NHWC)
        return (((size_t)k * f.r + r) * f.s + s) * f.c + c;
    return (((size_t)k * f.c + c) * f.r + r) * f.s + s;
}

size_t filter_bytes(const cudnnFilterStruct &f) { return (size_t)f.k * f.c * f.r * f.s * elem_size(f.elem); }

/* The forward output dims, or BAD_PARAM when x and w disagree or nothing
 * would be left. */
cudnnStatus_t output_dims(const cudnnConvolutionStruct &conv, const cudnnTensorStruct &x, const cudnnFilterStruct &w,
                          int dims[4])
{
    if (!conv.set || !x.set || !w.set || x.c != w.c * conv.groups)
        return CUDNN_STATUS_BAD_PARAM;
    const int span_h = (w.r - 1) * conv.dilation_h + 1, span_w = (w.s - 1) * conv.dilation_w + 1;
    dims[0] = x.n;
    dims[1] = w.k;
    dims[2] = (x.h + 2 * conv.pad_h - span_h) / conv.stride_h + 1;
    dims[3] = (x.w + 2 * conv.pad_w - span_w) / conv.stride_w + 1;
    const bool empty = x.h + 2 * conv.pad_h < span_h || x.w + 2 * conv.pad_w < span_w;
    return empty ? CUDNN_STATUS_BAD_PARAM : CUDNN_STATUS_SUCCESS;
}

bool valid_algo(cudnnConvolutionFwdAlgo_t algo)
{
    return algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM || algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
}

size_t workspace_for(cudnnConvolutionFwdAlgo_t algo)
{
    return algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ? PRECOMP_WORKSPACE_BYTES : 0;
}

/* Data type, compute type, dilation and groups the emulation covers:
 * fp32 data with fp32 compute; fp16/bf16 data with fp32 compute (pseudo-half)
 * or with their own type. */
bool supported(const cudnnConvolutionStruct &conv, const cudnnTensorStruct &x)
{
    if (conv.dilation_h != 1 || conv.dilation_w != 1 || conv.groups != 1)
        return false;
    switch (x.elem) {
    case Elem::F32: return conv.compute == CUDNN_DATA_FLOAT;
    case Elem::F16: return conv.compute == CUDNN_DATA_FLOAT || conv.compute == CUDNN_DATA_HALF;
    case Elem::BF16: return conv.compute == CUDNN_DATA_FLOAT || conv.compute == CUDNN_DATA_BFLOAT16;
    }
    return false;
}

/* The checks cudnnConvolutionForward documents, BAD_PARAM before NOT_SUPPORTED. */
cudnnStatus_t check_forward(cudnnHandle_t handle, const void *alpha, const cudnnTensorStruct *x, const void *xp,
                            const cudnnFilterStruct *w, const void *wp, const cudnnConvolutionStruct *conv,
                            cudnnConvolutionFwdAlgo_t algo, const void *workspace, size_t workspace_bytes,
                            const void *beta, const cudnnTensorStruct *y, const void *yp)
{
    if (!g_handles.live(handle) || !alpha || !beta || !x || !w || !conv || !y || !xp || !wp || !yp)
        return CUDNN_STATUS_BAD_PARAM;
    int dims[4];
    if (output_dims(*conv, *x, *w, dims) != CUDNN_STATUS_SUCCESS || !y->set)
        return CUDNN_STATUS_BAD_PARAM;
    if (x->elem != w->elem || x->elem != y->elem)
        return CUDNN_STATUS_BAD_PARAM;
    if (y->n != dims[0] || y->c != dims[1] || y->h != dims[2] || y->w != dims[3])
        return CUDNN_STATUS_BAD_PARAM;
    if (!valid_algo(algo))
        return CUDNN_STATUS_NOT_SUPPORTED;
    const size_t need = workspace_for(algo);
    if (need > 0 && (!workspace || workspace_bytes < need))
        return CUDNN_STATUS_BAD_PARAM;
    return supported(*conv, *x) ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
}

bool rounds_to_tf32(const cudnnConvolutionStruct &conv, Elem data)
{
    return data == Elem::F32 && conv.math != CUDNN_FMA_MATH;
}

/* x as fp32 NHWC and w as fp32 K R S C (kernel flipped for
 * CUDNN_CONVOLUTION), so that every tap is one contiguous dot over C. */
void pack_conv_inputs(const cudnnTensorStruct &x, const void *xp, const cudnnFilterStruct &w, const void *wp,
                      const cudnnConvolutionStruct &conv, std::vector<float> &xs, std::vector<float> &ws)
{
    const InputRounding r = rounds_to_tf32(conv, x.elem) ? InputRounding::TF32 : InputRounding::NONE;
    xs.resize((size_t)x.n * x.h * x.w * x.c);
    for (int n = 0; n < x.n; n++)
        for (int h = 0; h < x.h; h++)
            for (int wi = 0; wi < x.w; wi++)
                for (int c = 0; c < x.c; c++)
                    xs[(((size_t)n * x.h + h) * x.w + wi) * x.c + c] =
                        round_input(load_elem(xp, tensor_offset(x, n, c, h, wi), x.elem), r);
    const bool flip = conv.mode == CUDNN_CONVOLUTION;
    ws.resize((size_t)w.k * w.r * w.s * w.c);
    for (int k = 0; k < w.k; k++)
        for (int rr = 0; rr < w.r; rr++)
            for (int ss = 0; ss < w.s; ss++)
                for (int c = 0; c < w.c; c++) {
                    const int fr = flip ? w.r - 1 - rr : rr, fs = flip ? w.s - 1 - ss : ss;
                    ws[(((size_t)k * w.r + rr) * w.s + ss) * w.c + c] =
                        round_input(load_elem(wp, filter_offset(w, k, c, fr, fs), w.elem), r);
                }
}

/* sum over taps and channels for output (n, k, oh, ow); the in-bounds taps
 * of one filter row are contiguous (s, c) runs in both packed arrays, so
 * each row is one dot product */
double conv_point(const cudnnTensorStruct &x, const std::vector<float> &xs, const cudnnFilterStruct &w,
                  const std::vector<float> &ws, const cudnnConvolutionStruct &conv, int n, int k, int oh, int ow)
{
    const int iw0 = ow * conv.stride_w - conv.pad_w;
    const int s0 = iw0 < 0 ? -iw0 : 0, s1 = x.w - iw0 < w.s ? x.w - iw0 : w.s;
    if (s0 >= s1)
        return 0.0;
    double acc = 0;
    for (int r = 0; r < w.r; r++) {
        const int ih = oh * conv.stride_h - conv.pad_h + r;
        if (ih < 0 || ih >= x.h)
            continue;
        acc += dot(&xs[(((size_t)n * x.h + ih) * x.w + iw0 + s0) * x.c], &ws[(((size_t)k * w.r + r) * w.s + s0) * w.c],
                   (size_t)(s1 - s0) * x.c);
    }
    return acc;
}

void run_conv(const cudnnTensorStruct &x, const void *xp, const cudnnFilterStruct &w, const void *wp,
              const cudnnConvolutionStruct &conv, float alpha, float beta, const cudnnTensorStruct &y, void *yp)
{
    std::vector<float> xs, ws;
    pack_conv_inputs(x, xp, w, wp, conv, xs, ws);
    for (int n = 0; n < y.n; n++)
        for (int k = 0; k < y.c; k++)
            for (int oh = 0; oh < y.h; oh++)
                for (int ow = 0; ow < y.w; ow++) {
                    const size_t at = tensor_offset(y, n, k, oh, ow);
                    double v = (double)alpha * conv_point(x, xs, w, ws, conv, n, k, oh, ow);
                    if (beta != 0.0f) /* beta == 0: y is not read, it may hold NaN */
                        v += (double)beta * load_elem(yp, at, y.elem);
                    store_elem(yp, at, y.elem, (float)v);
                }
}

} /* namespace */

} /* namespace emu */

extern "C" {

cudnnStatus_t cudnnCreate(cudnnHandle_t *handle)
{
    if (!handle)
        return CUDNN_STATUS_BAD_PARAM;
    if (emu::no_device())
        return CUDNN_STATUS_NOT_INITIALIZED;
    *handle = emu::g_handles.add(new cudnnContext{nullptr});
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroy(cudnnHandle_t handle)
{
    return emu::g_handles.remove(handle) ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_BAD_PARAM;
}

cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t streamId)
{
    if (!emu::g_handles.live(handle))
        return CUDNN_STATUS_BAD_PARAM;
    handle->stream = streamId;
    return CUDNN_STATUS_SUCCESS;
}

size_t cudnnGetVersion(void) { return CUDNN_VERSION; }

const char *cudnnGetErrorString(cudnnStatus_t status)
{
#define EMU_STATUS(s) \
    case s: return #s;
    switch (status) {
        EMU_STATUS(CUDNN_STATUS_SUCCESS)
        EMU_STATUS(CUDNN_STATUS_NOT_INITIALIZED)
        EMU_STATUS(CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH)
        EMU_STATUS(CUDNN_STATUS_SERIALIZATION_VERSION_MISMATCH)
        EMU_STATUS(CUDNN_STATUS_DEPRECATED)
        EMU_STATUS(CUDNN_STATUS_LICENSE_ERROR)
        EMU_STATUS(CUDNN_STATUS_RUNTIME_IN_PROGRESS)
        EMU_STATUS(CUDNN_STATUS_RUNTIME_FP_OVERFLOW)
        EMU_STATUS(CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED)
        EMU_STATUS(CUDNN_STATUS_BAD_PARAM)
        EMU_STATUS(CUDNN_STATUS_BAD_PARAM_NULL_POINTER)
        EMU_STATUS(CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER)
        EMU_STATUS(CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED)
        EMU_STATUS(CUDNN_STATUS_BAD_PARAM_OUT_OF_BOUND)
        EMU_STATUS(CUDNN_STATUS_BAD_PARAM_SIZE_INSUFFICIENT)
        EMU_STATUS(CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH)
        EMU_STATUS(CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH)
        EMU_STATUS(CUDNN_STATUS_BAD_PARAM_DUPLICATED_ENTRIES)
        EMU_STATUS(CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE)
        EMU_STATUS(CUDNN_STATUS_NOT_SUPPORTED)
        EMU_STATUS(CUDNN_STATUS_NOT_SUPPORTED_SHAPE)
        EMU_STATUS(CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE)
        EMU_STATUS(CUDNN_STATUS_NOT_SUPPORTED_LAYOUT)
        EMU_STATUS(CUDNN_STATUS_INTERNAL_ERROR)
        EMU_STATUS(CUDNN_STATUS_EXECUTION_FAILED)
    default: return "CUDNN_UNKNOWN_STATUS_FOUND";
    }
#undef EMU_STATUS
}

/* ---- tensor descriptors ---- */

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *tensorDesc) { return emu::create_descriptor(tensorDesc); }

cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t tensorDesc)
{
    delete tensorDesc;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t tensorDesc, cudnnTensorFormat_t format,
                                         cudnnDataType_t dataType, int n, int c, int h, int w)
{
    const int dims[4] = {n, c, h, w};
    if (format == CUDNN_TENSOR_NCHW) {
        const int strides[4] = {c * h * w, h * w, w, 1};
        return emu::set_tensor(tensorDesc, dataType, dims, strides);
    }
    if (format == CUDNN_TENSOR_NHWC) {
        const int strides[4] = {h * w * c, 1, w * c, c};
        return emu::set_tensor(tensorDesc, dataType, dims, strides);
    }
    return CUDNN_STATUS_BAD_PARAM;
}

cudnnStatus_t cudnnSetTensor4dDescriptorEx(cudnnTensorDescriptor_t tensorDesc, cudnnDataType_t dataType, int n, int c,
                                           int h, int w, int nStride, int cStride, int hStride, int wStride)
{
    const int dims[4] = {n, c, h, w};
    const int strides[4] = {nStride, cStride, hStride, wStride};
    return emu::set_tensor(tensorDesc, dataType, dims, strides);
}

/* Only 4-D tensors are emulated. */
cudnnStatus_t cudnnSetTensorNdDescriptor(cudnnTensorDescriptor_t tensorDesc, cudnnDataType_t dataType, int nbDims,
                                         const int dimA[], const int strideA[])
{
    if (!dimA || !strideA || nbDims < 3)
        return CUDNN_STATUS_BAD_PARAM;
    if (nbDims != 4)
        return CUDNN_STATUS_NOT_SUPPORTED;
    return emu::set_tensor(tensorDesc, dataType, dimA, strideA);
}

/* ---- filter descriptors ---- */

cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *filterDesc) { return emu::create_descriptor(filterDesc); }

cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t filterDesc)
{
    delete filterDesc;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t filterDesc, cudnnDataType_t dataType,
                                         cudnnTensorFormat_t format, int k, int c, int h, int w)
{
    if (!filterDesc || k <= 0 || c <= 0 || h <= 0 || w <= 0 ||
        (format != CUDNN_TENSOR_NCHW && format != CUDNN_TENSOR_NHWC))
        return CUDNN_STATUS_BAD_PARAM;
    emu::Elem e;
    if (!emu::elem_of(dataType, &e))
        return CUDNN_STATUS_NOT_SUPPORTED;
    *filterDesc = cudnnFilterStruct{true, e, format, k, c, h, w};
    return CUDNN_STATUS_SUCCESS;
}

/* ---- convolution descriptors ---- */

cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *convDesc)
{
    return emu::create_descriptor(convDesc);
}

cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t convDesc)
{
    delete convDesc;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t convDesc, int pad_h, int pad_w, int u,
                                              int v, int dilation_h, int dilation_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t computeType)
{
    emu::Elem e;
    if (!convDesc || pad_h < 0 || pad_w < 0 || u <= 0 || v <= 0 || dilation_h <= 0 || dilation_w <= 0 ||
        (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION))
        return CUDNN_STATUS_BAD_PARAM;
    if (!emu::elem_of(computeType, &e))
        return CUDNN_STATUS_NOT_SUPPORTED;
    convDesc->set = true;
    convDesc->pad_h = pad_h;
    convDesc->pad_w = pad_w;
    convDesc->stride_h = u;
    convDesc->stride_w = v;
    convDesc->dilation_h = dilation_h;
    convDesc->dilation_w = dilation_w;
    convDesc->mode = mode;
    convDesc->compute = computeType;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t convDesc, cudnnMathType_t mathType)
{
    if (!convDesc || mathType < CUDNN_DEFAULT_MATH || mathType > CUDNN_FMA_MATH)
        return CUDNN_STATUS_BAD_PARAM;
    convDesc->math = mathType;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t convDesc, int groupCount)
{
    if (!convDesc || groupCount < 1)
        return CUDNN_STATUS_BAD_PARAM;
    convDesc->groups = groupCount;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t convDesc,
                                                    const cudnnTensorDescriptor_t inputTensorDesc,
                                                    const cudnnFilterDescriptor_t filterDesc, int *n, int *c, int *h,
                                                    int *w)
{
    if (!convDesc || !inputTensorDesc || !filterDesc || !n || !c || !h || !w)
        return CUDNN_STATUS_BAD_PARAM;
    int dims[4];
    const cudnnStatus_t st = emu::output_dims(*convDesc, *inputTensorDesc, *filterDesc, dims);
    if (st != CUDNN_STATUS_SUCCESS)
        return st;
    *n = dims[0];
    *c = dims[1];
    *h = dims[2];
    *w = dims[3];
    return CUDNN_STATUS_SUCCESS;
}

/* ---- algorithm choice ---- */

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t handle, const cudnnTensorDescriptor_t srcDesc,
                                                     const cudnnFilterDescriptor_t filterDesc,
                                                     const cudnnConvolutionDescriptor_t convDesc,
                                                     const cudnnTensorDescriptor_t destDesc,
                                                     const int requestedAlgoCount, int *returnedAlgoCount,
                                                     cudnnConvolutionFwdAlgoPerf_t *perfResults)
{
    int dims[4];
    if (!emu::g_handles.live(handle) || !srcDesc || !filterDesc || !convDesc || !destDesc || requestedAlgoCount < 1 ||
        !returnedAlgoCount || !perfResults || emu::output_dims(*convDesc, *srcDesc, *filterDesc, dims) != CUDNN_STATUS_SUCCESS)
        return CUDNN_STATUS_BAD_PARAM;
    cudnnConvolutionFwdAlgoPerf_t perf{};
    perf.algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
    perf.status = emu::supported(*convDesc, *srcDesc) ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
    perf.time = -1.0f; /* a heuristic answer, not a measurement */
    perf.memory = emu::PRECOMP_WORKSPACE_BYTES;
    perf.determinism = CUDNN_DETERMINISTIC;
    perf.mathType = convDesc->math;
    perfResults[0] = perf;
    *returnedAlgoCount = 1;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc,
                                                      const cudnnFilterDescriptor_t wDesc,
                                                      const cudnnConvolutionDescriptor_t convDesc,
                                                      const cudnnTensorDescriptor_t yDesc,
                                                      cudnnConvolutionFwdAlgo_t algo, size_t *sizeInBytes)
{
    if (!emu::g_handles.live(handle) || !xDesc || !wDesc || !convDesc || !yDesc || !sizeInBytes)
        return CUDNN_STATUS_BAD_PARAM;
    if (!emu::valid_algo(algo))
        return CUDNN_STATUS_NOT_SUPPORTED;
    *sizeInBytes = emu::workspace_for(algo);
    return CUDNN_STATUS_SUCCESS;
}

/* ---- compute ---- */

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t handle, const void *alpha, const cudnnTensorDescriptor_t xDesc,
                                      const void *x, const cudnnFilterDescriptor_t wDesc, const void *w,
                                      const cudnnConvolutionDescriptor_t convDesc, cudnnConvolutionFwdAlgo_t algo,
                                      void *workSpace, size_t workSpaceSizeInBytes, const void *beta,
                                      const cudnnTensorDescriptor_t yDesc, void *y)
{
    const cudnnStatus_t st = emu::check_forward(handle, alpha, xDesc, x, wDesc, w, convDesc, algo, workSpace,
                                                workSpaceSizeInBytes, beta, yDesc, y);
    if (st != CUDNN_STATUS_SUCCESS)
        return st;
    const char *api = "cudnnConvolutionForward";
    emu::require_device_accessible(x, emu::tensor_bytes(*xDesc), api, "x");
    emu::require_device_accessible(w, emu::filter_bytes(*wDesc), api, "w");
    emu::require_device_accessible(y, emu::tensor_bytes(*yDesc), api, "y");
    const size_t need = emu::workspace_for(algo);
    emu::require_device_accessible(workSpace, need, api, "the workspace");
    if (need > 0)
        memset(workSpace, 0xFF, need); /* scribble, as a real algorithm would: aliasing shows up */
    emu::run_conv(*xDesc, x, *wDesc, w, *convDesc, *static_cast<const float *>(alpha),
                  *static_cast<const float *>(beta), *yDesc, y);
    return CUDNN_STATUS_SUCCESS;
}

/* C = alpha A + beta C, A broadcast over every dimension where it has extent 1. */
cudnnStatus_t cudnnAddTensor(cudnnHandle_t handle, const void *alpha, const cudnnTensorDescriptor_t aDesc,
                             const void *A, const void *beta, const cudnnTensorDescriptor_t cDesc, void *C)
{
    if (!emu::g_handles.live(handle) || !alpha || !beta || !aDesc || !cDesc || !A || !C || !aDesc->set || !cDesc->set)
        return CUDNN_STATUS_BAD_PARAM;
    const cudnnTensorStruct &a = *aDesc, &c = *cDesc;
    const int ad[4] = {a.n, a.c, a.h, a.w}, cd[4] = {c.n, c.c, c.h, c.w};
    for (int i = 0; i < 4; i++)
        if (ad[i] != cd[i] && ad[i] != 1)
            return CUDNN_STATUS_BAD_PARAM;
    if (a.elem != c.elem)
        return CUDNN_STATUS_NOT_SUPPORTED;
    emu::require_device_accessible(A, emu::tensor_bytes(a), "cudnnAddTensor", "A");
    emu::require_device_accessible(C, emu::tensor_bytes(c), "cudnnAddTensor", "C");
    const float al = *static_cast<const float *>(alpha), be = *static_cast<const float *>(beta);
    for (int n = 0; n < c.n; n++)
        for (int ch = 0; ch < c.c; ch++)
            for (int h = 0; h < c.h; h++)
                for (int w = 0; w < c.w; w++) {
                    const size_t at = emu::tensor_offset(c, n, ch, h, w);
                    const size_t from = emu::tensor_offset(a, a.n == 1 ? 0 : n, a.c == 1 ? 0 : ch,
                                                           a.h == 1 ? 0 : h, a.w == 1 ? 0 : w);
                    double v = (double)al * emu::load_elem(A, from, a.elem);
                    if (be != 0.0f)
                        v += (double)be * emu::load_elem(C, at, c.elem);
                    emu::store_elem(C, at, c.elem, (float)v);
                }
    return CUDNN_STATUS_SUCCESS;
}

} /* extern "C" */

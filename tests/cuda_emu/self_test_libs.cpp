/* self_test_libs.cpp: the emulator self-test's cuBLAS and cuDNN tests, and
 * the element-value helpers every library test shares.
 * Every GEMM op/type combination and convolution case is checked against a
 * naive loop written from the libraries' documented definitions, with
 * inputs on a 1/8 grid so that every sum is exact and results can be
 * compared bit for bit after rounding to the output type; TF32 rounding is
 * checked against an independent nearest-even reference; each documented
 * INVALID_VALUE / BAD_PARAM / NOT_SUPPORTED case returns its status. */
#include "self_test.h"

#include <math.h>

#include <cublas_v2.h>
#include <cudnn.h>

using emu::Elem;

/* ---- element values (self_test.h) -------------------------------------------------------- */

std::vector<float> grid_values(size_t n, unsigned seed)
{
    std::vector<float> v(n);
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        v[i] = (float)((int)(s >> 27) - 16) / 8.0f;
    }
    return v;
}

void *device_elems(const std::vector<float> &values, Elem e)
{
    std::vector<unsigned char> bytes(values.size() * emu::elem_size(e));
    for (size_t i = 0; i < values.size(); i++)
        emu::store_elem(bytes.data(), i, e, values[i]);
    return to_device(bytes);
}

std::vector<float> host_elems(const void *device, size_t n, Elem e)
{
    const std::vector<unsigned char> bytes = to_host(static_cast<const unsigned char *>(device), n * emu::elem_size(e));
    std::vector<float> v(n);
    for (size_t i = 0; i < n; i++)
        v[i] = emu::load_elem(bytes.data(), i, e);
    return v;
}

float as_stored(float v, Elem e)
{
    unsigned char bytes[4];
    emu::store_elem(bytes, 0, e, v);
    return emu::load_elem(bytes, 0, e);
}

/* ---- cuBLAS ---------------------------------------------------------------------------- */

struct GemmCase {
    cublasOperation_t ta, tb;
    cudaDataType ab, c;
    Elem ab_elem, c_elem;
    cublasComputeType_t compute;
};

/* op(A) (m x k) element (i, p) of a column-major A with leading dimension lda. */
static float op_at(const std::vector<float> &a, bool transposed, int lda, int i, int p)
{
    return transposed ? a[(size_t)p + (size_t)i * lda] : a[(size_t)i + (size_t)p * lda];
}

/* C = alpha op(A) op(B) + beta C by the definition, rounded to C's type. */
static std::vector<float> reference_gemm(const GemmCase &gc, int m, int n, int k, float alpha,
                                         const std::vector<float> &a, int lda, const std::vector<float> &b, int ldb,
                                         float beta, std::vector<float> c, int ldc)
{
    const bool ta = gc.ta != CUBLAS_OP_N, tb = gc.tb != CUBLAS_OP_N;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double sum = 0;
            for (int p = 0; p < k; p++)
                sum += (double)op_at(a, ta, lda, i, p) * op_at(b, tb, ldb, p, j);
            float &out = c[(size_t)i + (size_t)j * ldc];
            out = as_stored((float)(alpha * sum + (beta != 0.0f ? beta * out : 0.0)), gc.c_elem);
        }
    return c;
}

static void check_gemm_case(cublasHandle_t h, const GemmCase &gc, float beta, int batches)
{
    const int m = 5, n = 7, k = 9;
    const bool ta = gc.ta != CUBLAS_OP_N, tb = gc.tb != CUBLAS_OP_N;
    const int lda = (ta ? k : m) + 2, ldb = (tb ? n : k) + 1, ldc = m + 3;
    const long long sa = (long long)lda * (ta ? m : k) + 5, sb = (long long)ldb * (tb ? k : n) + 3,
                    sc = (long long)ldc * n + 1;
    const float alpha = 1.5f;
    const std::vector<float> a = grid_values((size_t)sa * batches, 1), b = grid_values((size_t)sb * batches, 2);
    std::vector<float> c = grid_values((size_t)sc * batches, 3);
    for (float &v : c)
        v = as_stored(v, gc.c_elem);
    void *da = device_elems(a, gc.ab_elem), *db = device_elems(b, gc.ab_elem);
    void *dc = beta != 0.0f ? device_elems(c, gc.c_elem)
                            : device_buffer<unsigned char>(c.size() * emu::elem_size(gc.c_elem)); /* NaN */
    if (batches == 1)
        assert_int_equal(cublasGemmEx(h, gc.ta, gc.tb, m, n, k, &alpha, da, gc.ab, lda, db, gc.ab, ldb, &beta, dc,
                                      gc.c, ldc, gc.compute, CUBLAS_GEMM_DEFAULT),
                         CUBLAS_STATUS_SUCCESS);
    else
        assert_int_equal(cublasGemmStridedBatchedEx(h, gc.ta, gc.tb, m, n, k, &alpha, da, gc.ab, lda, sa, db, gc.ab,
                                                    ldb, sb, &beta, dc, gc.c, ldc, sc, batches, gc.compute,
                                                    CUBLAS_GEMM_DEFAULT_TENSOR_OP),
                         CUBLAS_STATUS_SUCCESS);
    const std::vector<float> got = host_elems(dc, c.size(), gc.c_elem);
    for (int bt = 0; bt < batches; bt++) {
        const std::vector<float> ab(a.begin() + bt * sa, a.begin() + (bt + 1) * sa);
        const std::vector<float> bb(b.begin() + bt * sb, b.begin() + (bt + 1) * sb);
        const std::vector<float> cb(c.begin() + bt * sc, c.begin() + (bt + 1) * sc);
        const std::vector<float> want = reference_gemm(gc, m, n, k, alpha, ab, lda, bb, ldb, beta, cb, ldc);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                const size_t at = (size_t)i + (size_t)j * ldc;
                assert_true(got[bt * sc + at] == want[at]);
            }
    }
    cudaFree(da), cudaFree(db), cudaFree(dc);
}

static void test_gemm_every_op_and_type(void **state)
{
    (void)state;
    cublasHandle_t h;
    assert_int_equal(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
    const struct {
        cudaDataType ab, c;
        Elem ab_elem, c_elem;
        cublasComputeType_t compute;
    } types[] = {
        {CUDA_R_32F, CUDA_R_32F, Elem::F32, Elem::F32, CUBLAS_COMPUTE_32F},
        {CUDA_R_32F, CUDA_R_32F, Elem::F32, Elem::F32, CUBLAS_COMPUTE_32F_PEDANTIC},
        {CUDA_R_32F, CUDA_R_32F, Elem::F32, Elem::F32, CUBLAS_COMPUTE_32F_FAST_TF32},
        {CUDA_R_16F, CUDA_R_16F, Elem::F16, Elem::F16, CUBLAS_COMPUTE_32F},
        {CUDA_R_16F, CUDA_R_32F, Elem::F16, Elem::F32, CUBLAS_COMPUTE_32F},
        {CUDA_R_16BF, CUDA_R_16BF, Elem::BF16, Elem::BF16, CUBLAS_COMPUTE_32F},
        {CUDA_R_16BF, CUDA_R_32F, Elem::BF16, Elem::F32, CUBLAS_COMPUTE_32F_PEDANTIC},
    };
    const cublasOperation_t ops[] = {CUBLAS_OP_N, CUBLAS_OP_T, CUBLAS_OP_C};
    for (const auto &t : types)
        for (cublasOperation_t ta : ops)
            for (cublasOperation_t tb : ops) {
                const GemmCase gc{ta, tb, t.ab, t.c, t.ab_elem, t.c_elem, t.compute};
                check_gemm_case(h, gc, 0.5f, 1);
                check_gemm_case(h, gc, 0.0f, 1);
                check_gemm_case(h, gc, 0.25f, 3);
            }
    assert_int_equal(cublasDestroy(h), CUBLAS_STATUS_SUCCESS);
}

static void test_gemm_batched_pointer_arrays(void **state)
{
    (void)state;
    cublasHandle_t h;
    assert_int_equal(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
    const int m = 4, n = 3, k = 6, batches = 2;
    const GemmCase gc{CUBLAS_OP_T, CUBLAS_OP_N, CUDA_R_16F, CUDA_R_16F, Elem::F16, Elem::F16, CUBLAS_COMPUTE_32F};
    std::vector<const void *> as, bs;
    std::vector<void *> cs;
    std::vector<std::vector<float>> ha, hb;
    for (int b = 0; b < batches; b++) {
        ha.push_back(grid_values(k * m, 10 + b));
        hb.push_back(grid_values(k * n, 20 + b));
        as.push_back(device_elems(ha[b], Elem::F16));
        bs.push_back(device_elems(hb[b], Elem::F16));
        cs.push_back(device_buffer<unsigned char>(m * n * 2));
    }
    const void **das = to_device(as), **dbs = to_device(bs);
    void **dcs = to_device(cs);
    const float alpha = 1.0f, beta = 0.0f;
    assert_int_equal(cublasGemmBatchedEx(h, gc.ta, gc.tb, m, n, k, &alpha, das, gc.ab, k, dbs, gc.ab, k, &beta, dcs,
                                         gc.c, m, batches, gc.compute, CUBLAS_GEMM_DEFAULT),
                     CUBLAS_STATUS_SUCCESS);
    for (int b = 0; b < batches; b++) {
        const std::vector<float> want =
            reference_gemm(gc, m, n, k, alpha, ha[b], k, hb[b], k, beta, std::vector<float>(m * n), m);
        assert_true(host_elems(cs[b], m * n, Elem::F16) == want);
    }
    for (int b = 0; b < batches; b++)
        cudaFree(const_cast<void *>(as[b])), cudaFree(const_cast<void *>(bs[b])), cudaFree(cs[b]);
    cudaFree(das), cudaFree(dbs), cudaFree(dcs);
    cublasDestroy(h);
}

/* Nearest-even rounding of v in [1, 2) to `bits` mantissa bits, the
 * independent way: scale, round with the default rounding mode, unscale. */
static float round_mantissa(float v, int bits)
{
    const double scale = ldexp(1.0, bits);
    return (float)(1.0 + nearbyint(((double)v - 1.0) * scale) / scale);
}

/* C (4 x 1) = A (4 x 1) * 1: each output is one input as the GEMM saw it. */
static std::vector<float> gemm_inputs_as_seen(cublasHandle_t h, cublasComputeType_t compute, cublasMath_t math)
{
    const std::vector<float> a = {1.0f + 0x1p-12f, 1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 1.0f + 3 * 0x1p-12f};
    float *da = to_device(a), *db = to_device(std::vector<float>{1.0f}), *dc = device_buffer<float>(4);
    const float alpha = 1.0f, beta = 0.0f;
    assert_int_equal(cublasSetMathMode(h, math), CUBLAS_STATUS_SUCCESS);
    assert_int_equal(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 1, 1, &alpha, da, CUDA_R_32F, 4, db, CUDA_R_32F, 1,
                                  &beta, dc, CUDA_R_32F, 4, compute, CUBLAS_GEMM_DEFAULT),
                     CUBLAS_STATUS_SUCCESS);
    const std::vector<float> c = to_host(dc, 4);
    cudaFree(da), cudaFree(db), cudaFree(dc);
    return c;
}

static void expect_rounded(const std::vector<float> &seen, int bits)
{
    const std::vector<float> a = {1.0f + 0x1p-12f, 1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 1.0f + 3 * 0x1p-12f};
    for (size_t i = 0; i < a.size(); i++)
        assert_true(seen[i] == (bits < 0 ? a[i] : round_mantissa(a[i], bits)));
}

static void test_gemm_tf32_rounding(void **state)
{
    (void)state;
    cublasHandle_t h;
    assert_int_equal(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
    expect_rounded(gemm_inputs_as_seen(h, CUBLAS_COMPUTE_32F, CUBLAS_DEFAULT_MATH), -1);
    expect_rounded(gemm_inputs_as_seen(h, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_DEFAULT_MATH), 10);
    expect_rounded(gemm_inputs_as_seen(h, CUBLAS_COMPUTE_32F, CUBLAS_TF32_TENSOR_OP_MATH), 10);
    expect_rounded(gemm_inputs_as_seen(h, CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_TF32_TENSOR_OP_MATH), -1);
    expect_rounded(gemm_inputs_as_seen(h, CUBLAS_COMPUTE_32F, CUBLAS_PEDANTIC_MATH), -1);
    expect_rounded(gemm_inputs_as_seen(h, CUBLAS_COMPUTE_32F_FAST_16F, CUBLAS_DEFAULT_MATH), 10);
    expect_rounded(gemm_inputs_as_seen(h, CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_DEFAULT_MATH), 7);
    cublasMath_t mode;
    assert_int_equal(cublasGetMathMode(h, &mode), CUBLAS_STATUS_SUCCESS);
    assert_int_equal(mode, CUBLAS_DEFAULT_MATH);
    cublasDestroy(h);
}

static void test_gemm_status_checks(void **state)
{
    (void)state;
    cublasHandle_t h;
    assert_int_equal(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
    float *d = to_device(std::vector<float>(64, 1.0f));
    const float one = 1.0f;
    const cublasOperation_t N = CUBLAS_OP_N, T = CUBLAS_OP_T;
    const cudaDataType F = CUDA_R_32F, H = CUDA_R_16F, B = CUDA_R_16BF;
    const cublasComputeType_t C32 = CUBLAS_COMPUTE_32F;
    const cublasGemmAlgo_t ALG = CUBLAS_GEMM_DEFAULT;
#define GEMM(h_, ta, tb, m, n, k, al, at, lda, bt, ldb, be, ct, ldc, comp) \
    cublasGemmEx(h_, ta, tb, m, n, k, al, d, at, lda, d, bt, ldb, be, d, ct, ldc, comp, ALG)
    const cublasStatus_t INVALID = CUBLAS_STATUS_INVALID_VALUE, UNSUPPORTED = CUBLAS_STATUS_NOT_SUPPORTED;
    assert_int_equal(GEMM(h, N, N, 2, 2, 2, &one, F, 2, F, 2, &one, F, 2, C32), CUBLAS_STATUS_SUCCESS);
    assert_int_equal(GEMM(h, N, N, -1, 2, 2, &one, F, 2, F, 2, &one, F, 2, C32), INVALID);
    assert_int_equal(GEMM(h, N, N, 2, -1, 2, &one, F, 2, F, 2, &one, F, 2, C32), INVALID);
    assert_int_equal(GEMM(h, N, N, 2, 2, -1, &one, F, 2, F, 2, &one, F, 2, C32), INVALID);
    assert_int_equal(GEMM(h, N, N, 3, 2, 2, &one, F, 2, F, 2, &one, F, 3, C32), INVALID); /* lda < m */
    assert_int_equal(GEMM(h, T, N, 2, 2, 3, &one, F, 2, F, 3, &one, F, 2, C32), INVALID); /* lda < k */
    assert_int_equal(GEMM(h, N, N, 2, 2, 3, &one, F, 2, F, 2, &one, F, 2, C32), INVALID); /* ldb < k */
    assert_int_equal(GEMM(h, N, T, 2, 3, 2, &one, F, 2, F, 2, &one, F, 2, C32), INVALID); /* ldb < n */
    assert_int_equal(GEMM(h, N, N, 3, 2, 2, &one, F, 3, F, 2, &one, F, 2, C32), INVALID); /* ldc < m */
    assert_int_equal(GEMM(h, N, N, 0, 2, 2, &one, F, 0, F, 2, &one, F, 0, C32), INVALID); /* ld < 1 */
    assert_int_equal(GEMM(h, N, N, 2, 2, 2, nullptr, F, 2, F, 2, &one, F, 2, C32), INVALID);
    assert_int_equal(GEMM(h, N, N, 2, 2, 2, &one, F, 2, F, 2, nullptr, F, 2, C32), INVALID);
    assert_int_equal(GEMM(h, (cublasOperation_t)7, N, 2, 2, 2, &one, F, 2, F, 2, &one, F, 2, C32), INVALID);
    assert_int_equal(GEMM(h, N, N, 2, 2, 2, &one, H, 2, F, 2, &one, F, 2, C32), UNSUPPORTED);
    assert_int_equal(GEMM(h, N, N, 2, 2, 2, &one, H, 2, H, 2, &one, B, 2, C32), UNSUPPORTED);
    assert_int_equal(GEMM(h, N, N, 2, 2, 2, &one, F, 2, F, 2, &one, H, 2, C32), UNSUPPORTED);
    assert_int_equal(GEMM(h, N, N, 2, 2, 2, &one, H, 2, H, 2, &one, H, 2, CUBLAS_COMPUTE_32F_FAST_TF32), UNSUPPORTED);
    assert_int_equal(GEMM(h, N, N, 2, 2, 2, &one, H, 2, H, 2, &one, H, 2, CUBLAS_COMPUTE_16F), UNSUPPORTED);
    assert_int_equal(GEMM(h, N, N, 2, 2, 2, &one, CUDA_R_64F, 2, CUDA_R_64F, 2, &one, CUDA_R_64F, 2, C32),
                     UNSUPPORTED);
    assert_int_equal(GEMM(nullptr, N, N, 2, 2, 2, &one, F, 2, F, 2, &one, F, 2, C32), CUBLAS_STATUS_NOT_INITIALIZED);
    assert_int_equal(cublasGemmStridedBatchedEx(h, N, N, 2, 2, 2, &one, d, F, 2, 4, d, F, 2, 4, &one, d, F, 2, 4, -1,
                                                C32, ALG),
                     INVALID);
    assert_int_equal(cublasGemmEx(h, N, N, 2, 2, 2, &one, d, F, 2, d, F, 2, &one, d, F, 2, C32, (cublasGemmAlgo_t)500),
                     UNSUPPORTED);
#undef GEMM

    /* k == 0: C = beta C; m == 0: nothing */
    const float half = 0.5f, before = to_host(d, 1)[0];
    assert_int_equal(cublasGemmEx(h, N, N, 2, 2, 0, &one, nullptr, F, 2, nullptr, F, 2, &half, d, F, 2, C32, ALG),
                     CUBLAS_STATUS_SUCCESS);
    assert_true(to_host(d, 1)[0] == 0.5f * before);
    assert_int_equal(cublasGemmEx(h, N, N, 0, 2, 2, &one, nullptr, F, 1, nullptr, F, 2, &one, nullptr, F, 1, C32, ALG),
                     CUBLAS_STATUS_SUCCESS);

    cudaStream_t s = (cudaStream_t)0x1;
    assert_int_equal(cublasSetStream(h, cudaStreamPerThread), CUBLAS_STATUS_SUCCESS);
    assert_int_equal(cublasGetStream(h, &s), CUBLAS_STATUS_SUCCESS);
    assert_true(s == cudaStreamPerThread);
    assert_int_equal(cublasSetWorkspace(h, d + 1, 16), CUBLAS_STATUS_INVALID_VALUE); /* not 256-aligned */
    assert_int_equal(cublasSetWorkspace(h, d, 256), CUBLAS_STATUS_SUCCESS);
    assert_int_equal(cublasSetMathMode(h, (cublasMath_t)9), CUBLAS_STATUS_INVALID_VALUE);
    int version = 0;
    assert_int_equal(cublasGetVersion(h, &version), CUBLAS_STATUS_SUCCESS);
    assert_int_equal(version, CUBLAS_VERSION);
    assert_string_equal(cublasGetStatusName(CUBLAS_STATUS_INVALID_VALUE), "CUBLAS_STATUS_INVALID_VALUE");
    assert_non_null(strstr(cublasGetStatusString(CUBLAS_STATUS_NOT_SUPPORTED), "not supported"));
    assert_int_equal(cublasDestroy(h), CUBLAS_STATUS_SUCCESS);
    assert_int_equal(cublasDestroy(h), CUBLAS_STATUS_NOT_INITIALIZED);
    assert_int_equal(cublasSetStream(h, nullptr), CUBLAS_STATUS_NOT_INITIALIZED);
    cudaFree(d);
}

static void gemm_on_host_memory(void)
{
    cublasHandle_t h;
    cublasCreate(&h);
    float host[4] = {1, 2, 3, 4};
    float *d = device_buffer<float>(4);
    const float one = 1.0f;
    cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &one, host, CUDA_R_32F, 2, d, CUDA_R_32F, 2, &one, d,
                 CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

/* A host pointer given to cuBLAS would fault on a GPU: the emulator aborts. */
static void test_gemm_rejects_host_pointers(void **state)
{
    (void)state;
    const std::string err = expect_child_abort(gemm_on_host_memory, "cublasGemmEx: A");
    assert_true(err.find("is not inside one device allocation") != std::string::npos);
}

/* ---- cuDNN ------------------------------------------------------------------------------ */

struct ConvCase {
    int n, c, h, w, k, r, s, pad, stride;
    cudnnConvolutionMode_t mode;
    cudnnTensorFormat_t format, filter_format;
    cudnnDataType_t data, compute;
    float alpha, beta;
};

static Elem elem_of(cudnnDataType_t t)
{
    return t == CUDNN_DATA_HALF ? Elem::F16 : t == CUDNN_DATA_BFLOAT16 ? Elem::BF16 : Elem::F32;
}

static int conv_out(int in, int filter, int pad, int stride) { return (in + 2 * pad - filter) / stride + 1; }

/* Index of logical (a, b, c, d) = (n, c, h, w) or (k, c, r, s) in `format`. */
static size_t at4(cudnnTensorFormat_t format, int B, int C, int D, int a, int b, int c, int d)
{
    return format == CUDNN_TENSOR_NHWC ? (((size_t)a * C + c) * D + d) * B + b : (((size_t)a * B + b) * C + c) * D + d;
}

/* y[n][k][oh][ow] = alpha sum_{c,r,s} x[n][c][oh*stride - pad + r][ow*stride - pad + s] w'[k][c][r][s] + beta y,
 * w' = w (cross-correlation) or w flipped in r and s (convolution). */
static std::vector<float> reference_conv(const ConvCase &cc, const std::vector<float> &x, const std::vector<float> &w,
                                         std::vector<float> y)
{
    const int oh_n = conv_out(cc.h, cc.r, cc.pad, cc.stride), ow_n = conv_out(cc.w, cc.s, cc.pad, cc.stride);
    const bool flip = cc.mode == CUDNN_CONVOLUTION;
    for (int n = 0; n < cc.n; n++)
        for (int k = 0; k < cc.k; k++)
            for (int oh = 0; oh < oh_n; oh++)
                for (int ow = 0; ow < ow_n; ow++) {
                    double sum = 0;
                    for (int c = 0; c < cc.c; c++)
                        for (int r = 0; r < cc.r; r++)
                            for (int s = 0; s < cc.s; s++) {
                                const int ih = oh * cc.stride - cc.pad + r, iw = ow * cc.stride - cc.pad + s;
                                if (ih < 0 || ih >= cc.h || iw < 0 || iw >= cc.w)
                                    continue;
                                const int fr = flip ? cc.r - 1 - r : r, fs = flip ? cc.s - 1 - s : s;
                                sum += (double)x[at4(cc.format, cc.c, cc.h, cc.w, n, c, ih, iw)] *
                                       w[at4(cc.filter_format, cc.c, cc.r, cc.s, k, c, fr, fs)];
                            }
                    float &out = y[at4(cc.format, cc.k, oh_n, ow_n, n, k, oh, ow)];
                    out = as_stored((float)(cc.alpha * sum + (cc.beta != 0.0f ? cc.beta * out : 0.0)),
                                    elem_of(cc.data));
                }
    return y;
}

/* Descriptors of one case, created and destroyed together. */
struct ConvSetup {
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;

    explicit ConvSetup(const ConvCase &cc)
    {
        assert_int_equal(cudnnCreateTensorDescriptor(&x), CUDNN_STATUS_SUCCESS);
        assert_int_equal(cudnnCreateTensorDescriptor(&y), CUDNN_STATUS_SUCCESS);
        assert_int_equal(cudnnCreateFilterDescriptor(&w), CUDNN_STATUS_SUCCESS);
        assert_int_equal(cudnnCreateConvolutionDescriptor(&conv), CUDNN_STATUS_SUCCESS);
        assert_int_equal(cudnnSetTensor4dDescriptor(x, cc.format, cc.data, cc.n, cc.c, cc.h, cc.w),
                         CUDNN_STATUS_SUCCESS);
        assert_int_equal(cudnnSetFilter4dDescriptor(w, cc.data, cc.filter_format, cc.k, cc.c, cc.r, cc.s),
                         CUDNN_STATUS_SUCCESS);
        assert_int_equal(cudnnSetConvolution2dDescriptor(conv, cc.pad, cc.pad, cc.stride, cc.stride, 1, 1, cc.mode,
                                                         cc.compute),
                         CUDNN_STATUS_SUCCESS);
        int dims[4];
        assert_int_equal(cudnnGetConvolution2dForwardOutputDim(conv, x, w, &dims[0], &dims[1], &dims[2], &dims[3]),
                         CUDNN_STATUS_SUCCESS);
        assert_int_equal(dims[2], conv_out(cc.h, cc.r, cc.pad, cc.stride));
        assert_int_equal(cudnnSetTensor4dDescriptor(y, cc.format, cc.data, dims[0], dims[1], dims[2], dims[3]),
                         CUDNN_STATUS_SUCCESS);
    }
    ~ConvSetup()
    {
        cudnnDestroyTensorDescriptor(x);
        cudnnDestroyTensorDescriptor(y);
        cudnnDestroyFilterDescriptor(w);
        cudnnDestroyConvolutionDescriptor(conv);
    }
};

static void check_conv_case(cudnnHandle_t h, const ConvCase &cc)
{
    ConvSetup d(cc);
    cudnnConvolutionFwdAlgoPerf_t perf;
    int returned = 0;
    assert_int_equal(cudnnGetConvolutionForwardAlgorithm_v7(h, d.x, d.w, d.conv, d.y, 4, &returned, &perf),
                     CUDNN_STATUS_SUCCESS);
    assert_int_equal(returned, 1);
    assert_int_equal(perf.status, CUDNN_STATUS_SUCCESS);
    size_t ws_bytes = 0;
    assert_int_equal(cudnnGetConvolutionForwardWorkspaceSize(h, d.x, d.w, d.conv, d.y, perf.algo, &ws_bytes),
                     CUDNN_STATUS_SUCCESS);
    assert_true(ws_bytes > 0);
    const Elem e = elem_of(cc.data);
    const size_t ny = (size_t)cc.n * cc.k * conv_out(cc.h, cc.r, cc.pad, cc.stride) *
                      conv_out(cc.w, cc.s, cc.pad, cc.stride);
    const std::vector<float> x = grid_values((size_t)cc.n * cc.c * cc.h * cc.w, 4);
    const std::vector<float> w = grid_values((size_t)cc.k * cc.c * cc.r * cc.s, 5);
    std::vector<float> y = grid_values(ny, 6);
    void *dx = device_elems(x, e), *dw = device_elems(w, e);
    void *dy = cc.beta != 0.0f ? device_elems(y, e) : device_buffer<unsigned char>(ny * emu::elem_size(e));
    void *ws = device_buffer<unsigned char>(ws_bytes);
    assert_int_equal(cudnnConvolutionForward(h, &cc.alpha, d.x, dx, d.w, dw, d.conv, perf.algo, ws, ws_bytes, &cc.beta,
                                             d.y, dy),
                     CUDNN_STATUS_SUCCESS);
    assert_true(host_elems(dy, ny, e) == reference_conv(cc, x, w, y));
    cudaFree(dx), cudaFree(dw), cudaFree(dy), cudaFree(ws);
}

static void test_convolution_cases(void **state)
{
    (void)state;
    cudnnHandle_t h;
    assert_int_equal(cudnnCreate(&h), CUDNN_STATUS_SUCCESS);
    assert_int_equal(cudnnSetStream(h, nullptr), CUDNN_STATUS_SUCCESS);
    const cudnnTensorFormat_t NCHW = CUDNN_TENSOR_NCHW, NHWC = CUDNN_TENSOR_NHWC;
    const struct {
        cudnnDataType_t data, compute;
    } types[] = {{CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT},
                 {CUDNN_DATA_HALF, CUDNN_DATA_FLOAT},
                 {CUDNN_DATA_HALF, CUDNN_DATA_HALF},
                 {CUDNN_DATA_BFLOAT16, CUDNN_DATA_FLOAT}};
    const struct {
        int r, pad, stride;
    } shapes[] = {{3, 1, 1}, {3, 0, 2}, {3, 1, 2}, {1, 0, 1}, {4, 2, 3}};
    for (const auto &t : types)
        for (const auto &sh : shapes)
            for (cudnnTensorFormat_t format : {NCHW, NHWC})
                for (cudnnConvolutionMode_t mode : {CUDNN_CROSS_CORRELATION, CUDNN_CONVOLUTION}) {
                    ConvCase cc{2, 3, 7, 6, 4, sh.r, sh.r, sh.pad, sh.stride, mode, format,
                                format == NCHW ? NHWC : NCHW, t.data, t.compute, 1.0f, 0.0f};
                    check_conv_case(h, cc);
                    cc.alpha = 0.5f;
                    cc.beta = 2.0f;
                    cc.filter_format = format;
                    check_conv_case(h, cc);
                }
    cudnnDestroy(h);
}

/* y = conv(x, 1x1 identity) shows x as the convolution saw it. */
static float conv_input_as_seen(cudnnHandle_t h, float value, cudnnMathType_t math)
{
    ConvCase cc{1, 1, 1, 1, 1, 1, 1, 0, 1, CUDNN_CROSS_CORRELATION, CUDNN_TENSOR_NCHW, CUDNN_TENSOR_NCHW,
                CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT, 1.0f, 0.0f};
    ConvSetup d(cc);
    assert_int_equal(cudnnSetConvolutionMathType(d.conv, math), CUDNN_STATUS_SUCCESS);
    float *dx = to_device(std::vector<float>{value}), *dw = to_device(std::vector<float>{1.0f});
    float *dy = device_buffer<float>(1);
    void *ws = device_buffer<unsigned char>(4096);
    assert_int_equal(cudnnConvolutionForward(h, &cc.alpha, d.x, dx, d.w, dw, d.conv,
                                             CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, ws, 4096, &cc.beta, d.y,
                                             dy),
                     CUDNN_STATUS_SUCCESS);
    const float y = to_host(dy, 1)[0];
    cudaFree(dx), cudaFree(dw), cudaFree(dy), cudaFree(ws);
    return y;
}

static void test_convolution_tf32(void **state)
{
    (void)state;
    cudnnHandle_t h;
    assert_int_equal(cudnnCreate(&h), CUDNN_STATUS_SUCCESS);
    const float v = 1.0f + 3 * 0x1p-12f;
    assert_true(conv_input_as_seen(h, v, CUDNN_FMA_MATH) == v);
    assert_true(conv_input_as_seen(h, v, CUDNN_DEFAULT_MATH) == round_mantissa(v, 10));
    assert_true(conv_input_as_seen(h, v, CUDNN_TENSOR_OP_MATH) == round_mantissa(v, 10));
    assert_true(conv_input_as_seen(h, v, CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) == round_mantissa(v, 10));
    cudnnDestroy(h);
}

static void test_convolution_status_checks(void **state)
{
    (void)state;
    cudnnHandle_t h;
    assert_int_equal(cudnnCreate(&h), CUDNN_STATUS_SUCCESS);
    const ConvCase cc{1, 2, 5, 5, 3, 3, 3, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_TENSOR_NCHW, CUDNN_TENSOR_NCHW,
                      CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT, 1.0f, 0.0f};
    ConvSetup d(cc);
    float *x = device_buffer<float>(50), *w = device_buffer<float>(54), *y = device_buffer<float>(75);
    void *ws = device_buffer<unsigned char>(4096);
    const cudnnConvolutionFwdAlgo_t PRECOMP = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
    const float one = 1.0f, zero = 0.0f;
    auto forward = [&](cudnnHandle_t hh, const void *alpha, cudnnTensorDescriptor_t yd, cudnnConvolutionFwdAlgo_t algo,
                       void *work, size_t work_bytes) {
        return cudnnConvolutionForward(hh, alpha, d.x, x, d.w, w, d.conv, algo, work, work_bytes, &zero, yd, y);
    };
    assert_int_equal(forward(h, &one, d.y, PRECOMP, ws, 4096), CUDNN_STATUS_SUCCESS);
    assert_int_equal(forward(h, &one, d.y, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0), CUDNN_STATUS_SUCCESS);
    assert_int_equal(forward(h, &one, d.y, PRECOMP, ws, 4095), CUDNN_STATUS_BAD_PARAM);
    assert_int_equal(forward(h, &one, d.y, PRECOMP, nullptr, 4096), CUDNN_STATUS_BAD_PARAM);
    assert_int_equal(forward(h, nullptr, d.y, PRECOMP, ws, 4096), CUDNN_STATUS_BAD_PARAM);
    assert_int_equal(forward(nullptr, &one, d.y, PRECOMP, ws, 4096), CUDNN_STATUS_BAD_PARAM);
    assert_int_equal(forward(h, &one, d.y, CUDNN_CONVOLUTION_FWD_ALGO_FFT, ws, 4096), CUDNN_STATUS_NOT_SUPPORTED);

    cudnnTensorDescriptor_t other;
    assert_int_equal(cudnnCreateTensorDescriptor(&other), CUDNN_STATUS_SUCCESS);
    assert_int_equal(cudnnSetTensor4dDescriptor(other, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 3, 5, 4),
                     CUDNN_STATUS_SUCCESS);
    assert_int_equal(forward(h, &one, other, PRECOMP, ws, 4096), CUDNN_STATUS_BAD_PARAM); /* y dims */
    assert_int_equal(cudnnSetTensor4dDescriptor(other, CUDNN_TENSOR_NCHW, CUDNN_DATA_HALF, 1, 3, 5, 5),
                     CUDNN_STATUS_SUCCESS);
    assert_int_equal(forward(h, &one, other, PRECOMP, ws, 4096), CUDNN_STATUS_BAD_PARAM); /* y type */
    assert_int_equal(cudnnSetTensor4dDescriptor(other, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 4, 5, 5),
                     CUDNN_STATUS_SUCCESS);
    int n, c, hh, ww;
    assert_int_equal(cudnnGetConvolution2dForwardOutputDim(d.conv, other, d.w, &n, &c, &hh, &ww),
                     CUDNN_STATUS_BAD_PARAM); /* x has 4 channels, w 2 */
    assert_int_equal(cudnnSetTensor4dDescriptor(other, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 2, 0, 5),
                     CUDNN_STATUS_BAD_PARAM);
    assert_int_equal(cudnnSetTensor4dDescriptor(other, CUDNN_TENSOR_NCHW, CUDNN_DATA_DOUBLE, 1, 2, 5, 5),
                     CUDNN_STATUS_NOT_SUPPORTED);
    assert_int_equal(cudnnSetTensor4dDescriptorEx(other, CUDNN_DATA_FLOAT, 1, 2, 5, 5, 50, 25, 5, 0),
                     CUDNN_STATUS_BAD_PARAM);
    const int dims5[5] = {1, 2, 3, 4, 5}, strides5[5] = {120, 60, 20, 5, 1};
    assert_int_equal(cudnnSetTensorNdDescriptor(other, CUDNN_DATA_FLOAT, 5, dims5, strides5),
                     CUDNN_STATUS_NOT_SUPPORTED);
    cudnnDestroyTensorDescriptor(other);

    assert_int_equal(cudnnSetConvolution2dDescriptor(d.conv, 1, 1, 1, 1, 2, 2, CUDNN_CROSS_CORRELATION,
                                                     CUDNN_DATA_FLOAT),
                     CUDNN_STATUS_SUCCESS);
    assert_int_equal(cudnnGetConvolution2dForwardOutputDim(d.conv, d.x, d.w, &n, &c, &hh, &ww), CUDNN_STATUS_SUCCESS);
    assert_int_equal(hh, 3); /* dilation 2: a 5-wide filter span */
    cudnnConvolutionFwdAlgoPerf_t perf;
    int returned = 0;
    assert_int_equal(cudnnGetConvolutionForwardAlgorithm_v7(h, d.x, d.w, d.conv, d.y, 1, &returned, &perf),
                     CUDNN_STATUS_SUCCESS);
    assert_int_equal(perf.status, CUDNN_STATUS_NOT_SUPPORTED);
    assert_int_equal(cudnnSetConvolution2dDescriptor(d.conv, 1, 1, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION,
                                                     CUDNN_DATA_HALF),
                     CUDNN_STATUS_SUCCESS);
    assert_int_equal(forward(h, &one, d.y, PRECOMP, ws, 4096), CUDNN_STATUS_NOT_SUPPORTED); /* fp32 data, fp16 compute */
    assert_int_equal(cudnnSetConvolution2dDescriptor(d.conv, 1, 1, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION,
                                                     CUDNN_DATA_FLOAT),
                     CUDNN_STATUS_SUCCESS);
    assert_int_equal(cudnnSetConvolutionGroupCount(d.conv, 2), CUDNN_STATUS_SUCCESS);
    assert_int_equal(cudnnGetConvolution2dForwardOutputDim(d.conv, d.x, d.w, &n, &c, &hh, &ww),
                     CUDNN_STATUS_BAD_PARAM); /* 2 groups need 4 input channels */
    assert_int_equal(cudnnSetConvolutionGroupCount(d.conv, 0), CUDNN_STATUS_BAD_PARAM);
    assert_int_equal(cudnnSetConvolutionGroupCount(d.conv, 1), CUDNN_STATUS_SUCCESS);
    assert_int_equal(cudnnSetConvolution2dDescriptor(d.conv, -1, 1, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION,
                                                     CUDNN_DATA_FLOAT),
                     CUDNN_STATUS_BAD_PARAM);
    assert_int_equal(cudnnSetConvolution2dDescriptor(d.conv, 1, 1, 0, 1, 1, 1, CUDNN_CROSS_CORRELATION,
                                                     CUDNN_DATA_FLOAT),
                     CUDNN_STATUS_BAD_PARAM);
    assert_int_equal(cudnnSetConvolutionMathType(d.conv, (cudnnMathType_t)9), CUDNN_STATUS_BAD_PARAM);
    assert_int_equal(cudnnSetFilter4dDescriptor(d.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 3, 2, 0, 3),
                     CUDNN_STATUS_BAD_PARAM);
    assert_int_equal(cudnnGetVersion(), (size_t)CUDNN_VERSION);
    assert_string_equal(cudnnGetErrorString(CUDNN_STATUS_BAD_PARAM), "CUDNN_STATUS_BAD_PARAM");
    assert_int_equal(cudnnDestroy(h), CUDNN_STATUS_SUCCESS);
    assert_int_equal(cudnnDestroy(h), CUDNN_STATUS_BAD_PARAM);
    cudaFree(x), cudaFree(w), cudaFree(y), cudaFree(ws);
}

static void test_add_tensor_bias(void **state)
{
    (void)state;
    cudnnHandle_t h;
    assert_int_equal(cudnnCreate(&h), CUDNN_STATUS_SUCCESS);
    const int N = 2, C = 3, H = 4, W = 5;
    for (cudnnTensorFormat_t format : {CUDNN_TENSOR_NCHW, CUDNN_TENSOR_NHWC}) {
        cudnnTensorDescriptor_t bd, cd;
        cudnnCreateTensorDescriptor(&bd);
        cudnnCreateTensorDescriptor(&cd);
        assert_int_equal(cudnnSetTensor4dDescriptor(bd, CUDNN_TENSOR_NCHW, CUDNN_DATA_HALF, 1, C, 1, 1),
                         CUDNN_STATUS_SUCCESS);
        assert_int_equal(cudnnSetTensor4dDescriptor(cd, format, CUDNN_DATA_HALF, N, C, H, W), CUDNN_STATUS_SUCCESS);
        const std::vector<float> bias = grid_values(C, 7), c = grid_values((size_t)N * C * H * W, 8);
        void *db = device_elems(bias, Elem::F16), *dc = device_elems(c, Elem::F16);
        const float alpha = 2.0f, beta = 0.5f;
        assert_int_equal(cudnnAddTensor(h, &alpha, bd, db, &beta, cd, dc), CUDNN_STATUS_SUCCESS);
        const std::vector<float> got = host_elems(dc, c.size(), Elem::F16);
        for (int n = 0; n < N; n++)
            for (int ch = 0; ch < C; ch++)
                for (int y = 0; y < H; y++)
                    for (int x = 0; x < W; x++) {
                        const size_t at = at4(format, C, H, W, n, ch, y, x);
                        assert_true(got[at] == as_stored(alpha * bias[ch] + beta * c[at], Elem::F16));
                    }
        assert_int_equal(cudnnSetTensor4dDescriptor(bd, CUDNN_TENSOR_NCHW, CUDNN_DATA_HALF, 1, 2, 1, 1),
                         CUDNN_STATUS_SUCCESS);
        assert_int_equal(cudnnAddTensor(h, &alpha, bd, db, &beta, cd, dc), CUDNN_STATUS_BAD_PARAM);
        cudaFree(db), cudaFree(dc);
        cudnnDestroyTensorDescriptor(bd);
        cudnnDestroyTensorDescriptor(cd);
    }
    cudnnDestroy(h);
}

int run_library_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_every_op_and_type),
        cmocka_unit_test(test_gemm_batched_pointer_arrays),
        cmocka_unit_test(test_gemm_tf32_rounding),
        cmocka_unit_test(test_gemm_status_checks),
        cmocka_unit_test(test_gemm_rejects_host_pointers),
        cmocka_unit_test(test_convolution_cases),
        cmocka_unit_test(test_convolution_tf32),
        cmocka_unit_test(test_convolution_status_checks),
        cmocka_unit_test(test_add_tensor_bias),
    };
    return cmocka_run_group_tests_name("cuda_emu cuBLAS and cuDNN", tests, nullptr, nullptr);
}

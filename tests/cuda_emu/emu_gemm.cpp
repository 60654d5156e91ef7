/* emu_gemm.cpp: the GEMM that the cuBLAS and cuBLASLt emulations share:
 * their common type table and input rounding, and one column-major
 * D = epilogue(alpha op(A) op(B) + beta C) computed on the host (fp32
 * inputs, accumulation in double, one rounding to D's type), with
 * cuBLASLt's bias and activation epilogues. */
#include "emu_internal.h"

#include <math.h>

#include <vector>

namespace emu {

bool blas_elem(cudaDataType t, Elem *e)
{
    switch (t) {
    case CUDA_R_32F: *e = Elem::F32; return true;
    case CUDA_R_16F: *e = Elem::F16; return true;
    case CUDA_R_16BF: *e = Elem::BF16; return true;
    default: return false;
    }
}

cublasStatus_t gemm_types(cudaDataType a, cudaDataType b, cudaDataType c, cublasComputeType_t compute, Gemm *g)
{
    if (a != b || !blas_elem(a, &g->ab) || !blas_elem(c, &g->c) || (c != a && c != CUDA_R_32F))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    g->d = g->c;
    switch (compute) {
    case CUBLAS_COMPUTE_32F:
    case CUBLAS_COMPUTE_32F_PEDANTIC: return CUBLAS_STATUS_SUCCESS;
    case CUBLAS_COMPUTE_32F_FAST_TF32:
    case CUBLAS_COMPUTE_32F_FAST_16F:
    case CUBLAS_COMPUTE_32F_FAST_16BF:
        return a == CUDA_R_32F && c == CUDA_R_32F ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
    }
}

InputRounding gemm_rounding(cublasComputeType_t compute, cublasMath_t math)
{
    const int mode = (int)math & ~(int)CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION;
    switch (compute) {
    case CUBLAS_COMPUTE_32F_FAST_TF32: return InputRounding::TF32;
    case CUBLAS_COMPUTE_32F_FAST_16F: return InputRounding::F16;
    case CUBLAS_COMPUTE_32F_FAST_16BF: return InputRounding::BF16;
    case CUBLAS_COMPUTE_32F:
        return mode == CUBLAS_TF32_TENSOR_OP_MATH ? InputRounding::TF32
               : mode == CUBLAS_TENSOR_OP_MATH    ? InputRounding::F16
                                                  : InputRounding::NONE;
    default: return InputRounding::NONE;
    }
}

size_t matrix_bytes(int64_t rows, int64_t cols, int64_t ld, Elem e)
{
    if (rows == 0 || cols == 0)
        return 0;
    return ((size_t)(cols - 1) * (size_t)ld + (size_t)rows) * elem_size(e);
}

namespace {

void require_operands(const Gemm &g, const void *A, const void *B, const void *C, const void *D,
                      const Epilogue &ep, const char *api)
{
    if (g.k > 0) {
        require_device_accessible(A, matrix_bytes(g.a_transposed ? g.k : g.m, g.a_transposed ? g.m : g.k, g.lda, g.ab),
                                  api, "A");
        require_device_accessible(B, matrix_bytes(g.b_transposed ? g.n : g.k, g.b_transposed ? g.k : g.n, g.ldb, g.ab),
                                  api, "B");
    }
    if (g.beta != 0.0f)
        require_device_accessible(C, matrix_bytes(g.m, g.n, g.ldc, g.c), api, "C");
    require_device_accessible(D, matrix_bytes(g.m, g.n, g.ldd, g.d), api, "D");
    if (ep.bias)
        require_device_accessible(ep.bias, (size_t)g.m * elem_size(ep.bias_elem), api, "the bias");
}

/* Rows of op(A) (m x k) and columns of op(B) (k x n), each as k contiguous
 * fp32 values, so that every C element is one dot product. */
void pack_operands(const Gemm &g, const void *A, const void *B, std::vector<float> &a_rows,
                   std::vector<float> &b_cols)
{
    const size_t k = (size_t)g.k;
    a_rows.resize((size_t)g.m * k);
    b_cols.resize((size_t)g.n * k);
    for (size_t i = 0; i < (size_t)g.m; i++)
        for (size_t p = 0; p < k; p++) {
            const size_t at = g.a_transposed ? p + i * (size_t)g.lda : i + p * (size_t)g.lda;
            a_rows[i * k + p] = round_input(load_elem(A, at, g.ab), g.rounding);
        }
    for (size_t j = 0; j < (size_t)g.n; j++)
        for (size_t p = 0; p < k; p++) {
            const size_t at = g.b_transposed ? j + p * (size_t)g.ldb : p + j * (size_t)g.ldb;
            b_cols[j * k + p] = round_input(load_elem(B, at, g.ab), g.rounding);
        }
}

/* The tanh approximation of GELU that cuBLASLt's GELU epilogues apply:
 * 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))). */
double gelu_tanh(double x)
{
    const double sqrt_2_over_pi = 0.79788456080286535588;
    return 0.5 * x * (1.0 + tanh(sqrt_2_over_pi * (x + 0.044715 * x * x * x)));
}

double apply_epilogue(double v, size_t row, const Epilogue &ep)
{
    if (ep.bias)
        v += load_elem(ep.bias, row, ep.bias_elem);
    switch (ep.activation) {
    case Activation::RELU: return v > 0.0 ? v : 0.0; /* NaN becomes 0, as cuBLASLt's max(x, 0) does */
    case Activation::GELU_TANH: return gelu_tanh(v);
    default: return v;
    }
}

} /* namespace */

void run_gemm(const Gemm &g, const void *A, const void *B, const void *C, void *D, const Epilogue &ep,
              const char *api)
{
    if (g.m == 0 || g.n == 0)
        return;
    require_operands(g, A, B, C, D, ep, api);
    std::vector<float> a_rows, b_cols;
    pack_operands(g, A, B, a_rows, b_cols);
    const size_t k = (size_t)g.k;
    for (size_t j = 0; j < (size_t)g.n; j++)
        for (size_t i = 0; i < (size_t)g.m; i++) {
            double v = (double)g.alpha * dot(a_rows.data() + i * k, b_cols.data() + j * k, k);
            if (g.beta != 0.0f) /* beta == 0: C is not read, it may hold NaN */
                v += (double)g.beta * load_elem(C, i + j * (size_t)g.ldc, g.c);
            store_elem(D, i + j * (size_t)g.ldd, g.d, (float)apply_epilogue(v, i, ep));
        }
}

} /* namespace emu */

/* emu_cublas.cpp: the cuBLAS subset of the emulator (cublas_v2.h names, C
 * linkage, the real prototypes): handles, stream/math-mode/workspace
 * settings, status strings, and cublasGemmEx with its strided and
 * pointer-array batched forms. GEMMs are column-major as cuBLAS documents,
 * validated as cuBLAS validates them, computed on the host with fp32 inputs
 * (rounded to TF32/fp16/bf16 where the compute type or math mode lets cuBLAS
 * do so), accumulated in double and rounded to C's type once. Matrices must
 * lie in device-accessible memory; anything else aborts, as a GPU would fault. */
#include "emu_internal.h"

#include <cublas_v2.h>

#include <vector>

struct cublasContext {
    cudaStream_t stream;
    cublasMath_t math;
    void *workspace;
    size_t workspace_bytes;
};

namespace emu {

namespace {

Registry<cublasContext> &g_handles = *new Registry<cublasContext>;

bool elem_of(cudaDataType t, Elem *e)
{
    switch (t) {
    case CUDA_R_32F: *e = Elem::F32; return true;
    case CUDA_R_16F: *e = Elem::F16; return true;
    case CUDA_R_16BF: *e = Elem::BF16; return true;
    default: return false;
    }
}

bool valid_op(cublasOperation_t op) { return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C; }

bool valid_algo(cublasGemmAlgo_t algo)
{
    return algo == CUBLAS_GEMM_DEFAULT || (algo >= CUBLAS_GEMM_ALGO0 && algo <= CUBLAS_GEMM_ALGO23) ||
           (algo >= CUBLAS_GEMM_DEFAULT_TENSOR_OP && algo <= CUBLAS_GEMM_ALGO15_TENSOR_OP);
}

int at_least_one(int v) { return v > 1 ? v : 1; }

/* One validated GEMM: C = alpha op(A) op(B) + beta C. CUBLAS_OP_C is
 * CUBLAS_OP_T for the real types emulated here. */
struct Gemm {
    bool a_transposed, b_transposed;
    int m, n, k, lda, ldb, ldc;
    float alpha, beta;
    Elem ab, c;
    InputRounding rounding;
};

/* How cuBLAS may round fp32 inputs: the FAST compute types always,
 * CUBLAS_COMPUTE_32F under the TF32 (or deprecated tensor-op, = FAST_16F)
 * math modes; PEDANTIC never. */
InputRounding rounding_for(cublasComputeType_t compute, cublasMath_t math)
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

/* The type checks of cublasGemmEx's table for the fp32 compute types. */
cublasStatus_t check_types(cudaDataType a, cudaDataType b, cudaDataType c, cublasComputeType_t compute, Gemm *g)
{
    if (a != b || !elem_of(a, &g->ab) || !elem_of(c, &g->c) || (c != a && c != CUDA_R_32F))
        return CUBLAS_STATUS_NOT_SUPPORTED;
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

cublasStatus_t prepare(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
                       const void *alpha, cudaDataType Atype, int lda, cudaDataType Btype, int ldb, const void *beta,
                       cudaDataType Ctype, int ldc, int batch_count, cublasComputeType_t compute,
                       cublasGemmAlgo_t algo, Gemm *g)
{
    if (!g_handles.live(handle))
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!valid_op(transa) || !valid_op(transb) || m < 0 || n < 0 || k < 0 || batch_count < 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    g->a_transposed = transa != CUBLAS_OP_N;
    g->b_transposed = transb != CUBLAS_OP_N;
    if (lda < at_least_one(g->a_transposed ? k : m) || ldb < at_least_one(g->b_transposed ? n : k) ||
        ldc < at_least_one(m) || !alpha || !beta)
        return CUBLAS_STATUS_INVALID_VALUE;
    const cublasStatus_t types = check_types(Atype, Btype, Ctype, compute, g);
    if (types != CUBLAS_STATUS_SUCCESS)
        return types;
    if (!valid_algo(algo))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    g->m = m;
    g->n = n;
    g->k = k;
    g->lda = lda;
    g->ldb = ldb;
    g->ldc = ldc;
    g->alpha = *static_cast<const float *>(alpha);
    g->beta = *static_cast<const float *>(beta);
    g->rounding = g->ab == Elem::F32 ? rounding_for(compute, handle->math) : InputRounding::NONE;
    return CUBLAS_STATUS_SUCCESS;
}

/* Bytes a column-major rows x cols matrix with leading dimension ld spans. */
size_t matrix_bytes(int rows, int cols, int ld, Elem e)
{
    if (rows == 0 || cols == 0)
        return 0;
    return ((size_t)(cols - 1) * (size_t)ld + (size_t)rows) * elem_size(e);
}

void require_operands(const Gemm &g, const void *A, const void *B, const void *C, const char *api)
{
    if (g.k > 0) {
        require_device_accessible(A, matrix_bytes(g.a_transposed ? g.k : g.m, g.a_transposed ? g.m : g.k, g.lda, g.ab),
                                  api, "A");
        require_device_accessible(B, matrix_bytes(g.b_transposed ? g.n : g.k, g.b_transposed ? g.k : g.n, g.ldb, g.ab),
                                  api, "B");
    }
    require_device_accessible(C, matrix_bytes(g.m, g.n, g.ldc, g.c), api, "C");
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

void run_gemm(const Gemm &g, const void *A, const void *B, void *C, const char *api)
{
    if (g.m == 0 || g.n == 0)
        return;
    require_operands(g, A, B, C, api);
    std::vector<float> a_rows, b_cols;
    pack_operands(g, A, B, a_rows, b_cols);
    const size_t k = (size_t)g.k;
    for (size_t j = 0; j < (size_t)g.n; j++)
        for (size_t i = 0; i < (size_t)g.m; i++) {
            const size_t at = i + j * (size_t)g.ldc;
            double v = (double)g.alpha * dot(a_rows.data() + i * k, b_cols.data() + j * k, k);
            if (g.beta != 0.0f) /* beta == 0: C is not read, it may hold NaN */
                v += (double)g.beta * load_elem(C, at, g.c);
            store_elem(C, at, g.c, (float)v);
        }
}

const char *offset(const void *p, long long elems, Elem e)
{
    return static_cast<const char *>(p) + elems * (long long)elem_size(e);
}

} /* namespace */

} /* namespace emu */

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t *handle)
{
    if (!handle)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (emu::no_device())
        return CUBLAS_STATUS_NOT_INITIALIZED;
    *handle = emu::g_handles.add(new cublasContext{nullptr, CUBLAS_DEFAULT_MATH, nullptr, 0});
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle)
{
    return emu::g_handles.remove(handle) ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t cublasGetVersion_v2(cublasHandle_t, int *version)
{
    if (!version)
        return CUBLAS_STATUS_INVALID_VALUE;
    *version = CUBLAS_VERSION;
    return CUBLAS_STATUS_SUCCESS;
}

/* As in cuBLAS, setting a stream also drops a user workspace. */
cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t streamId)
{
    if (!emu::g_handles.live(handle))
        return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->stream = streamId;
    handle->workspace = nullptr;
    handle->workspace_bytes = 0;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream_v2(cublasHandle_t handle, cudaStream_t *streamId)
{
    if (!emu::g_handles.live(handle))
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!streamId)
        return CUBLAS_STATUS_INVALID_VALUE;
    *streamId = handle->stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode)
{
    if (!emu::g_handles.live(handle))
        return CUBLAS_STATUS_NOT_INITIALIZED;
    const int base = (int)mode & ~(int)CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION;
    if (base < CUBLAS_DEFAULT_MATH || base > CUBLAS_FP32_EMULATED_BF16X9_MATH)
        return CUBLAS_STATUS_INVALID_VALUE;
    handle->math = mode;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t *mode)
{
    if (!emu::g_handles.live(handle))
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!mode)
        return CUBLAS_STATUS_INVALID_VALUE;
    *mode = handle->math;
    return CUBLAS_STATUS_SUCCESS;
}

/* cuBLAS wants a 256-byte aligned workspace in device memory. */
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void *workspace, size_t workspaceSizeInBytes)
{
    if (!emu::g_handles.live(handle))
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if (workspaceSizeInBytes > 0 && (!workspace || (uintptr_t)workspace % 256 != 0))
        return CUBLAS_STATUS_INVALID_VALUE;
    emu::require_device_accessible(workspace, workspaceSizeInBytes, "cublasSetWorkspace", "the workspace");
    handle->workspace = workspace;
    handle->workspace_bytes = workspaceSizeInBytes;
    return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusName(cublasStatus_t status)
{
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

const char *cublasGetStatusString(cublasStatus_t status)
{
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    case CUBLAS_STATUS_LICENSE_ERROR: return "error detected trying to check the license";
    }
    return "unknown error";
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void *alpha, const void *A, cudaDataType Atype, int lda, const void *B,
                            cudaDataType Btype, int ldb, const void *beta, void *C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo)
{
    emu::Gemm g;
    const cublasStatus_t st = emu::prepare(handle, transa, transb, m, n, k, alpha, Atype, lda, Btype, ldb, beta, Ctype,
                                           ldc, 1, computeType, algo, &g);
    if (st != CUBLAS_STATUS_SUCCESS)
        return st;
    emu::run_gemm(g, A, B, C, "cublasGemmEx");
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                          int m, int n, int k, const void *alpha, const void *A, cudaDataType Atype,
                                          int lda, long long int strideA, const void *B, cudaDataType Btype, int ldb,
                                          long long int strideB, const void *beta, void *C, cudaDataType Ctype,
                                          int ldc, long long int strideC, int batchCount,
                                          cublasComputeType_t computeType, cublasGemmAlgo_t algo)
{
    emu::Gemm g;
    const cublasStatus_t st = emu::prepare(handle, transa, transb, m, n, k, alpha, Atype, lda, Btype, ldb, beta, Ctype,
                                           ldc, batchCount, computeType, algo, &g);
    if (st != CUBLAS_STATUS_SUCCESS)
        return st;
    for (int b = 0; b < batchCount; b++)
        emu::run_gemm(g, emu::offset(A, b * strideA, g.ab), emu::offset(B, b * strideB, g.ab),
                      const_cast<char *>(emu::offset(C, b * strideC, g.c)), "cublasGemmStridedBatchedEx");
    return CUBLAS_STATUS_SUCCESS;
}

/* The pointer arrays themselves must be in device memory, as in cuBLAS. */
cublasStatus_t cublasGemmBatchedEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
                                   int n, int k, const void *alpha, const void *const Aarray[], cudaDataType Atype,
                                   int lda, const void *const Barray[], cudaDataType Btype, int ldb, const void *beta,
                                   void *const Carray[], cudaDataType Ctype, int ldc, int batchCount,
                                   cublasComputeType_t computeType, cublasGemmAlgo_t algo)
{
    emu::Gemm g;
    const cublasStatus_t st = emu::prepare(handle, transa, transb, m, n, k, alpha, Atype, lda, Btype, ldb, beta, Ctype,
                                           ldc, batchCount, computeType, algo, &g);
    if (st != CUBLAS_STATUS_SUCCESS || m == 0 || n == 0)
        return st;
    const size_t array_bytes = (size_t)batchCount * sizeof(void *);
    emu::require_device_accessible(Aarray, array_bytes, "cublasGemmBatchedEx", "Aarray");
    emu::require_device_accessible(Barray, array_bytes, "cublasGemmBatchedEx", "Barray");
    emu::require_device_accessible(Carray, array_bytes, "cublasGemmBatchedEx", "Carray");
    for (int b = 0; b < batchCount; b++)
        emu::run_gemm(g, Aarray[b], Barray[b], Carray[b], "cublasGemmBatchedEx");
    return CUBLAS_STATUS_SUCCESS;
}

} /* extern "C" */

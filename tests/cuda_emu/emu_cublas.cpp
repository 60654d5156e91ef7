/* emu_cublas.cpp: the cuBLAS subset of the emulator (cublas_v2.h names, C
 * linkage, the real prototypes): handles, stream/math-mode/workspace
 * settings, status strings, and cublasGemmEx with its strided and
 * pointer-array batched forms. GEMMs are column-major as cuBLAS documents,
 * validated as cuBLAS validates them and computed by emu_gemm.cpp on the
 * host with fp32 inputs (rounded to TF32/fp16/bf16 where the compute type
 * or math mode lets cuBLAS do so), accumulated in double and rounded to C's
 * type once. Matrices must lie in device-accessible memory; anything else
 * aborts, as a GPU would fault. */
#include "emu_internal.h"

#include <cublas_v2.h>

struct cublasContext {
    cudaStream_t stream;
    cublasMath_t math;
    void *workspace;
    size_t workspace_bytes;
};

namespace emu {

namespace {

Registry<cublasContext> &g_handles = *new Registry<cublasContext>;

bool valid_op(cublasOperation_t op) { return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C; }

bool valid_algo(cublasGemmAlgo_t algo)
{
    return algo == CUBLAS_GEMM_DEFAULT || (algo >= CUBLAS_GEMM_ALGO0 && algo <= CUBLAS_GEMM_ALGO23) ||
           (algo >= CUBLAS_GEMM_DEFAULT_TENSOR_OP && algo <= CUBLAS_GEMM_ALGO15_TENSOR_OP);
}

int at_least_one(int v) { return v > 1 ? v : 1; }

/* CUBLAS_OP_C is CUBLAS_OP_T for the real types emulated here. */
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
    const cublasStatus_t types = gemm_types(Atype, Btype, Ctype, compute, g);
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
    g->ldd = ldc;
    g->alpha = *static_cast<const float *>(alpha);
    g->beta = *static_cast<const float *>(beta);
    g->rounding = g->ab == Elem::F32 ? gemm_rounding(compute, handle->math) : InputRounding::NONE;
    return CUBLAS_STATUS_SUCCESS;
}

/* cuBLAS's GEMM writes C in place, with no epilogue. */
void run_in_place(const Gemm &g, const void *A, const void *B, void *C, const char *api)
{
    run_gemm(g, A, B, C, C, Epilogue{nullptr, Elem::F32, Activation::NONE}, api);
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
    emu::run_in_place(g, A, B, C, "cublasGemmEx");
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
        emu::run_in_place(g, emu::offset(A, b * strideA, g.ab), emu::offset(B, b * strideB, g.ab),
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
        emu::run_in_place(g, Aarray[b], Barray[b], Carray[b], "cublasGemmBatchedEx");
    return CUBLAS_STATUS_SUCCESS;
}

} /* extern "C" */

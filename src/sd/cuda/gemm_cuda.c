/* Linear layers: y[M, N] = x[M, K] W^T + b (torch nn.Linear, W [N, K]) or
 * x W + b (W [K, N]), in the output's dtype with fp32 accumulation
 * (CUBLAS_COMPUTE_32F, as torch passes to cublasGemmEx; TF32 tensor cores for
 * fp32 activations only when allowed). Row-major operands are the libraries'
 * column-major transposes: y^T [N, M] = op(W) x^T, with op = T for W [N, K]
 * and N for W [K, N].
 *
 * With a bias, cuBLASLt adds it in the GEMM's epilogue
 * (CUBLASLT_EPILOGUE_BIAS: one pass over y instead of two); its plan (the
 * descriptors and the algorithm its heuristic picks) is made once per
 * shape. Without one, or when cuBLASLt has no algorithm for the shape,
 * cublasGemmEx, and the bias by a kernel after. */
#include "sd/cuda/cuda_backend.h"

#include <limits.h>
#include <stdlib.h>

/* The most workspace one GEMM may take. */
#define GEMM_WORKSPACE_MAX ((size_t)32 << 20)

typedef struct {
    int64_t m, n, k; /* cuBLAS's: m = N outputs, n = M rows, k = K */
    int w_is_kn;
    sd_dtype t;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulAlgo_t algo;
    size_t workspace;
    int usable; /* 0: cuBLASLt offered no algorithm; use cublasGemmEx */
} gemm_plan;

struct cuda_gemm_plans {
    gemm_plan *v;
    size_t n, cap;
};

static cublasComputeType_t compute_type(const cuda_state *st, sd_dtype t)
{
    return t == SD_F32 && st->allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

static void destroy_plan(gemm_plan *p)
{
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    if (p->a) cublasLtMatrixLayoutDestroy(p->a);
    if (p->b) cublasLtMatrixLayoutDestroy(p->b);
    if (p->d) cublasLtMatrixLayoutDestroy(p->d);
}

void cuda_gemm_plans_free(cuda_gemm_plans *ps)
{
    if (!ps) return;
    for (size_t i = 0; i < ps->n; i++) destroy_plan(&ps->v[i]);
    free(ps->v);
    free(ps);
}

/* The descriptors of a bias GEMM; a status other than success when cuBLASLt refuses. */
static cublasStatus_t describe(const cuda_state *st, gemm_plan *p)
{
    cudaDataType_t dt = cuda_blas_type(p->t), scale = CUDA_R_32F;
    cublasOperation_t ta = p->w_is_kn ? CUBLAS_OP_N : CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    cublasStatus_t s;
    if ((s = cublasLtMatmulDescCreate(&p->desc, compute_type(st, p->t), scale)) ||
        (s = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta)) ||
        (s = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb)) ||
        (s = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi)) ||
        (s = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &dt, sizeof dt)))
        return s;
    /* A as stored: W [N, K] row-major is K x N column-major (op T), W [K, N] is N x K (op N). */
    uint64_t a_rows = p->w_is_kn ? (uint64_t)p->m : (uint64_t)p->k, a_cols = p->w_is_kn ? (uint64_t)p->k : (uint64_t)p->m;
    if ((s = cublasLtMatrixLayoutCreate(&p->a, dt, a_rows, a_cols, (int64_t)a_rows)) ||
        (s = cublasLtMatrixLayoutCreate(&p->b, dt, (uint64_t)p->k, (uint64_t)p->n, p->k)) ||
        (s = cublasLtMatrixLayoutCreate(&p->d, dt, (uint64_t)p->m, (uint64_t)p->n, p->m)))
        return s;
    return CUBLAS_STATUS_SUCCESS;
}

/* cuBLASLt's first algorithm for the plan within the workspace cap; usable = 0 when none. */
static cublasStatus_t pick_algo(const cuda_state *st, gemm_plan *p)
{
    cublasLtMatmulPreference_t pref;
    size_t cap = GEMM_WORKSPACE_MAX;
    cublasLtMatmulHeuristicResult_t r;
    int found = 0;
    cublasStatus_t s = cublasLtMatmulPreferenceCreate(&pref);
    if (s) return s;
    s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &cap, sizeof cap);
    if (!s) s = cublasLtMatmulAlgoGetHeuristic(st->blas_lt, p->desc, p->a, p->b, p->d, p->d, pref, 1, &r, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    p->usable = !s && found > 0 && r.state == CUBLAS_STATUS_SUCCESS;
    if (p->usable) p->algo = r.algo, p->workspace = r.workspaceSize;
    return s == CUBLAS_STATUS_NOT_SUPPORTED ? CUBLAS_STATUS_SUCCESS : s; /* not supported: the fallback */
}

/* The bias GEMM plan of this shape, made on first use; NULL on failure. */
static const gemm_plan *plan_for(sd_backend *be, const gemm_plan *key)
{
    cuda_state *st = cuda_of(be);
    if (!st->gemm_plans && !(st->gemm_plans = calloc(1, sizeof *st->gemm_plans)))
        return sd_backend_fail(be, "sd_linear: out of memory"), NULL;
    cuda_gemm_plans *ps = st->gemm_plans;
    for (size_t i = 0; i < ps->n; i++) {
        const gemm_plan *p = &ps->v[i];
        if (p->m == key->m && p->n == key->n && p->k == key->k && p->w_is_kn == key->w_is_kn && p->t == key->t)
            return p;
    }
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? 2 * ps->cap : 64;
        gemm_plan *v = realloc(ps->v, cap * sizeof *v);
        if (!v) return sd_backend_fail(be, "sd_linear: out of memory"), NULL;
        ps->v = v, ps->cap = cap;
    }
    gemm_plan p = *key;
    cublasStatus_t s = describe(st, &p);
    if (s == CUBLAS_STATUS_SUCCESS) s = pick_algo(st, &p);
    if (cublas_ok(be, s, "sd_linear (cuBLASLt)")) {
        destroy_plan(&p);
        return NULL;
    }
    ps->v[ps->n] = p;
    return &ps->v[ps->n++];
}

/* y = op(W) x + b through the plan's epilogue; 1 when the plan has no algorithm (use the fallback). */
static int gemm_bias_lt(sd_backend *be, const gemm_plan *key, void *y, const void *x, const void *w, const void *b)
{
    cuda_state *st = cuda_of(be);
    const gemm_plan *p = plan_for(be, key);
    if (!p) return -1;
    if (!p->usable) return 1;
    void *workspace = NULL;
    if (p->workspace && !(workspace = cuda_scratch(be, CUDA_SCRATCH_WORK, p->workspace))) return -1;
    if (cublas_ok(be, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b, sizeof b),
                  "sd_linear (cuBLASLt)"))
        return -1;
    const float one = 1.0f, zero = 0.0f;
    return cublas_ok(be, cublasLtMatmul(st->blas_lt, p->desc, &one, w, p->a, x, p->b, &zero, y, p->d, y, p->d,
                                        &p->algo, workspace, p->workspace, st->stream),
                     "sd_linear (cuBLASLt)");
}

int cuda_linear(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const sd_weight *b,
                int w_is_kn)
{
    cuda_state *st = cuda_of(be);
    sd_dtype t = y->dtype;
    int64_t n = w->shape[w_is_kn ? 1 : 0], k = w->shape[w_is_kn ? 0 : 1], m = sd_numel(x) / k;
    if (n > INT_MAX || k > INT_MAX || m > INT_MAX)
        return sd_backend_fail(be, "sd_linear: [%lld, %lld] x [%lld] is too large for cuBLAS", (long long)m,
                               (long long)k, (long long)n);
    int failed = 0;
    const void *xd = cuda_operand(be, x, t, CUDA_SCRATCH_IN0), *wd = cuda_weight(be, w, t);
    const void *bd = cuda_weight_opt(be, b, t, &failed);
    if (!xd || !wd || failed) return -1;
    if (bd && !st->unfused_bias) {
        gemm_plan key = {.m = n, .n = m, .k = k, .w_is_kn = w_is_kn, .t = t};
        int rc = gemm_bias_lt(be, &key, y->data, xd, wd, bd);
        if (rc <= 0) return rc;
    }
    const float one = 1.0f, zero = 0.0f;
    cudaDataType_t dt = cuda_blas_type(t);
    if (cublas_ok(be, cublasGemmEx(st->blas, w_is_kn ? CUBLAS_OP_N : CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)m, (int)k,
                                   &one, wd, dt, w_is_kn ? (int)n : (int)k, xd, dt, (int)k, &zero, y->data, dt,
                                   (int)n, compute_type(st, t), CUBLAS_GEMM_DEFAULT),
                  "sd_linear"))
        return -1;
    return bd ? cuda_ok(be, sd_cuda_bias(t, y->data, bd, m, n, 1, st->stream), "sd_linear bias") : 0;
}

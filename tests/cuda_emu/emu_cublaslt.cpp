/* emu_cublaslt.cpp: the cuBLASLt subset of the emulator (cublasLt.h names,
 * C linkage, the real prototypes): the handle; matmul, matrix-layout and
 * preference descriptors with the attributes README.md lists; a heuristic
 * that offers one algorithm; and cublasLtMatmul with the DEFAULT, BIAS,
 * RELU, RELU_BIAS, GELU and GELU_BIAS epilogues, strided batches and C
 * aliasing D. Calls are validated as cuBLASLt documents (sizes that do not
 * fit -> INVALID_VALUE, type combinations it lacks -> NOT_SUPPORTED) and
 * computed by emu_gemm.cpp. Attributes and epilogues that cuBLASLt has but
 * the emulator does not implement abort, naming them, rather than being
 * ignored; device pointers that are not inside one allocation abort, as a
 * GPU would fault. */
#include "emu_internal.h"

#include <cublasLt.h>
#include <string.h>

#include <new>

struct cublasLtContext {
    int unused;
};

namespace emu {

namespace {

/* The descriptors' state, kept inside cuBLASLt's semi-opaque structures. */
struct MatmulDesc {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    int32_t transa, transb;
    uint32_t epilogue;
    const void *bias;
    int32_t bias_type; /* -1: D's type */
    int64_t bias_batch_stride;
};

struct Layout {
    uint32_t type;
    uint64_t rows, cols;
    int64_t ld;
    int32_t batch_count;
    int64_t batch_stride; /* elements */
};

struct Preference {
    uint64_t max_workspace;
};

static_assert(sizeof(MatmulDesc) <= sizeof(cublasLtMatmulDescOpaque_t), "MatmulDesc outgrew cuBLASLt's descriptor");
static_assert(sizeof(Layout) <= sizeof(cublasLtMatrixLayoutOpaque_t), "Layout outgrew cuBLASLt's descriptor");
static_assert(sizeof(Preference) <= sizeof(cublasLtMatmulPreferenceOpaque_t), "Preference outgrew cuBLASLt's");

/* The one algorithm: its id in data[0], the workspace it needs in data[1].
 * It asks for a small workspace when the preference allows one, so that
 * callers' workspace paths run. */
const uint64_t ALGO_ID = 0x656d752d6c74ull; /* "emu-lt" */
const size_t ALGO_WORKSPACE_BYTES = 4096;

Registry<cublasLtContext> &g_handles = *new Registry<cublasLtContext>;
Registry<cublasLtMatmulDescOpaque_t> &g_descs = *new Registry<cublasLtMatmulDescOpaque_t>;
Registry<cublasLtMatrixLayoutOpaque_t> &g_layouts = *new Registry<cublasLtMatrixLayoutOpaque_t>;
Registry<cublasLtMatmulPreferenceOpaque_t> &g_prefs = *new Registry<cublasLtMatmulPreferenceOpaque_t>;

template <typename State, typename Opaque> State &state_of(Opaque *o)
{
    return *std::launder(reinterpret_cast<State *>(o->data));
}

template <typename Opaque, typename State>
cublasStatus_t create(Registry<Opaque> &registry, Opaque **out, const State &initial)
{
    if (!out)
        return CUBLAS_STATUS_INVALID_VALUE;
    Opaque *o = new Opaque{};
    new (o->data) State(initial);
    *out = registry.add(o);
    return CUBLAS_STATUS_SUCCESS;
}

template <typename Opaque> cublasStatus_t destroy(Registry<Opaque> &registry, Opaque *o)
{
    return !o || registry.remove(o) ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

/* An attribute value of exactly sizeof(T) bytes, as cuBLASLt checks. */
template <typename T> bool take(T *out, const void *buf, size_t bytes)
{
    if (!buf || bytes != sizeof(T))
        return false;
    memcpy(static_cast<void *>(out), buf, sizeof(T));
    return true;
}

template <typename T> cublasStatus_t set(T *out, const void *buf, size_t bytes)
{
    return take(out, buf, bytes) ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

[[noreturn]] void not_emulated(const char *api, const char *what, long long value)
{
    die("%s: %s %lld (cublasLt.h) is not emulated; tests/cuda_emu/README.md lists what is", api, what, value);
}

bool valid_op(int32_t op) { return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C; }

/* The activation of an epilogue the emulator implements; false for others. */
bool activation_of(uint32_t epilogue, Activation *act, bool *bias)
{
    switch (epilogue) {
    case CUBLASLT_EPILOGUE_DEFAULT: *act = Activation::NONE, *bias = false; return true;
    case CUBLASLT_EPILOGUE_BIAS: *act = Activation::NONE, *bias = true; return true;
    case CUBLASLT_EPILOGUE_RELU: *act = Activation::RELU, *bias = false; return true;
    case CUBLASLT_EPILOGUE_RELU_BIAS: *act = Activation::RELU, *bias = true; return true;
    case CUBLASLT_EPILOGUE_GELU: *act = Activation::GELU_TANH, *bias = false; return true;
    case CUBLASLT_EPILOGUE_GELU_BIAS: *act = Activation::GELU_TANH, *bias = true; return true;
    default: return false;
    }
}

/* cuBLASLt's other epilogues (aux outputs, gradients): not emulated. */
bool known_epilogue(uint32_t e)
{
    switch (e) {
    case CUBLASLT_EPILOGUE_RELU_AUX:
    case CUBLASLT_EPILOGUE_RELU_AUX_BIAS:
    case CUBLASLT_EPILOGUE_DRELU:
    case CUBLASLT_EPILOGUE_DRELU_BGRAD:
    case CUBLASLT_EPILOGUE_GELU_AUX:
    case CUBLASLT_EPILOGUE_GELU_AUX_BIAS:
    case CUBLASLT_EPILOGUE_DGELU:
    case CUBLASLT_EPILOGUE_DGELU_BGRAD:
    case CUBLASLT_EPILOGUE_BGRADA:
    case CUBLASLT_EPILOGUE_BGRADB: return true;
    default: return false;
    }
}

/* A validated matmul, pointers aside. */
struct Plan {
    Gemm g;
    Epilogue ep;
    bool bias_needed;
    int32_t batches;
    int64_t stride_a, stride_b, stride_c, stride_d, stride_bias;
};

cublasStatus_t check_sizes(const MatmulDesc &md, const Layout &a, const Layout &b, const Layout &c, const Layout &d,
                           Gemm *g)
{
    if (!valid_op(md.transa) || !valid_op(md.transb))
        return CUBLAS_STATUS_INVALID_VALUE;
    g->a_transposed = md.transa != CUBLAS_OP_N;
    g->b_transposed = md.transb != CUBLAS_OP_N;
    const uint64_t m = g->a_transposed ? a.cols : a.rows, k = g->a_transposed ? a.rows : a.cols;
    const uint64_t kb = g->b_transposed ? b.cols : b.rows, n = g->b_transposed ? b.rows : b.cols;
    if (kb != k || c.rows != m || d.rows != m || c.cols != n || d.cols != n)
        return CUBLAS_STATUS_INVALID_VALUE;
    for (const Layout *l : {&a, &b, &c, &d})
        if (l->ld < (int64_t)(l->rows > 1 ? l->rows : 1) || l->rows > INT32_MAX || l->cols > INT32_MAX)
            return CUBLAS_STATUS_INVALID_VALUE;
    if (d.batch_count < 1 || a.batch_count != d.batch_count || b.batch_count != d.batch_count ||
        c.batch_count != d.batch_count)
        return CUBLAS_STATUS_INVALID_VALUE;
    g->m = (int64_t)m;
    g->n = (int64_t)n;
    g->k = (int64_t)k;
    g->lda = a.ld;
    g->ldb = b.ld;
    g->ldc = c.ld;
    g->ldd = d.ld;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t check_types(const MatmulDesc &md, const Layout &a, const Layout &b, const Layout &c, const Layout &d,
                           Plan *p)
{
    const cublasStatus_t st =
        gemm_types((cudaDataType)a.type, (cudaDataType)b.type, (cudaDataType)c.type, md.compute, &p->g);
    if (st != CUBLAS_STATUS_SUCCESS)
        return st;
    if (d.type != c.type || md.scale != CUDA_R_32F)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (!activation_of(md.epilogue, &p->ep.activation, &p->bias_needed)) {
        if (known_epilogue(md.epilogue))
            not_emulated("cublasLtMatmul", "epilogue", md.epilogue);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    /* The bias has D's type (cublasLt.h, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE;
     * its exceptions are integer and fp8 kernels). */
    if (p->bias_needed && md.bias_type != -1 && md.bias_type != (int32_t)d.type)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    p->ep.bias_elem = p->g.d;
    p->g.rounding = p->g.ab == Elem::F32 ? gemm_rounding(md.compute, CUBLAS_DEFAULT_MATH) : InputRounding::NONE;
    return CUBLAS_STATUS_SUCCESS;
}

/* What cublasLtMatmul and the heuristic check before touching memory. */
cublasStatus_t plan_matmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t A,
                           cublasLtMatrixLayout_t B, cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D, Plan *p)
{
    if (!g_handles.live(handle))
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!g_descs.live(desc) || !g_layouts.live(A) || !g_layouts.live(B) || !g_layouts.live(C) || !g_layouts.live(D))
        return CUBLAS_STATUS_INVALID_VALUE;
    const MatmulDesc &md = state_of<MatmulDesc>(desc);
    const Layout &a = state_of<Layout>(A), &b = state_of<Layout>(B), &c = state_of<Layout>(C), &d = state_of<Layout>(D);
    *p = Plan{};
    cublasStatus_t st = check_sizes(md, a, b, c, d, &p->g);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = check_types(md, a, b, c, d, p);
    if (st != CUBLAS_STATUS_SUCCESS)
        return st;
    p->ep.bias = md.bias;
    p->batches = d.batch_count;
    p->stride_a = a.batch_stride, p->stride_b = b.batch_stride, p->stride_c = c.batch_stride;
    p->stride_d = d.batch_stride, p->stride_bias = md.bias_batch_stride;
    return CUBLAS_STATUS_SUCCESS;
}

/* In-place products (C == D) need C and D laid out alike. */
bool in_place_ok(const Plan &p, const void *C, const void *D)
{
    return C != D || (p.g.ldc == p.g.ldd && p.stride_c == p.stride_d);
}

const void *batch_entry(const void *base, int b, int64_t stride, Elem e)
{
    return base ? static_cast<const char *>(base) + (int64_t)b * stride * (int64_t)elem_size(e) : nullptr;
}

cublasStatus_t check_workspace(const cublasLtMatmulAlgo_t *algo, void *workspace, size_t bytes)
{
    if (!algo)
        return CUBLAS_STATUS_SUCCESS; /* cuBLASLt picks an algorithm itself */
    if (algo->data[0] != ALGO_ID)
        return CUBLAS_STATUS_INVALID_VALUE;
    const size_t needed = (size_t)algo->data[1];
    if (bytes < needed || (needed > 0 && !workspace))
        return CUBLAS_STATUS_INVALID_VALUE;
    require_device_accessible(workspace, needed, "cublasLtMatmul", "the workspace");
    memset(workspace, 0xFF, needed); /* what the algorithm leaves there */
    return CUBLAS_STATUS_SUCCESS;
}

} /* namespace */

} /* namespace emu */

extern "C" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t *lightHandle)
{
    if (!lightHandle)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (emu::no_device())
        return CUBLAS_STATUS_NOT_INITIALIZED;
    *lightHandle = emu::g_handles.add(new cublasLtContext{0});
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t lightHandle)
{
    return emu::g_handles.remove(lightHandle) ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

size_t cublasLtGetVersion(void) { return CUBLAS_VERSION; }

const char *cublasLtGetStatusName(cublasStatus_t status) { return cublasGetStatusName(status); }

const char *cublasLtGetStatusString(cublasStatus_t status) { return cublasGetStatusString(status); }

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *matmulDesc, cublasComputeType_t computeType,
                                        cudaDataType_t scaleType)
{
    const emu::MatmulDesc initial{computeType, scaleType, CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT,
                                  nullptr,     -1,        0};
    return emu::create(emu::g_descs, matmulDesc, initial);
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t matmulDesc)
{
    return emu::destroy(emu::g_descs, matmulDesc);
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t matmulDesc, cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t sizeInBytes)
{
    if (!emu::g_descs.live(matmulDesc))
        return CUBLAS_STATUS_INVALID_VALUE;
    emu::MatmulDesc &d = emu::state_of<emu::MatmulDesc>(matmulDesc);
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: return emu::set(&d.compute, buf, sizeInBytes);
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE: return emu::set(&d.scale, buf, sizeInBytes);
    case CUBLASLT_MATMUL_DESC_POINTER_MODE: {
        /* Host and device scalars read alike here (device memory is host memory). */
        int32_t mode;
        if (!emu::take(&mode, buf, sizeInBytes))
            return CUBLAS_STATUS_INVALID_VALUE;
        if (mode != CUBLASLT_POINTER_MODE_HOST && mode != CUBLASLT_POINTER_MODE_DEVICE)
            emu::not_emulated("cublasLtMatmulDescSetAttribute", "pointer mode", mode);
        return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_TRANSA: return emu::set(&d.transa, buf, sizeInBytes);
    case CUBLASLT_MATMUL_DESC_TRANSB: return emu::set(&d.transb, buf, sizeInBytes);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return emu::set(&d.epilogue, buf, sizeInBytes);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return emu::set(&d.bias, buf, sizeInBytes);
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: return emu::set(&d.bias_type, buf, sizeInBytes);
    case CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE: return emu::set(&d.bias_batch_stride, buf, sizeInBytes);
    default: emu::not_emulated("cublasLtMatmulDescSetAttribute", "attribute", attr);
    }
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *matLayout, cudaDataType type, uint64_t rows,
                                          uint64_t cols, int64_t ld)
{
    return emu::create(emu::g_layouts, matLayout, emu::Layout{(uint32_t)type, rows, cols, ld, 1, 0});
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t matLayout)
{
    return emu::destroy(emu::g_layouts, matLayout);
}

cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t matLayout, cublasLtMatrixLayoutAttribute_t attr,
                                                const void *buf, size_t sizeInBytes)
{
    if (!emu::g_layouts.live(matLayout))
        return CUBLAS_STATUS_INVALID_VALUE;
    emu::Layout &l = emu::state_of<emu::Layout>(matLayout);
    switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_TYPE: return emu::set(&l.type, buf, sizeInBytes);
    case CUBLASLT_MATRIX_LAYOUT_ROWS: return emu::set(&l.rows, buf, sizeInBytes);
    case CUBLASLT_MATRIX_LAYOUT_COLS: return emu::set(&l.cols, buf, sizeInBytes);
    case CUBLASLT_MATRIX_LAYOUT_LD: return emu::set(&l.ld, buf, sizeInBytes);
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: return emu::set(&l.batch_count, buf, sizeInBytes);
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET: return emu::set(&l.batch_stride, buf, sizeInBytes);
    case CUBLASLT_MATRIX_LAYOUT_ORDER: {
        int32_t order;
        if (!emu::take(&order, buf, sizeInBytes))
            return CUBLAS_STATUS_INVALID_VALUE;
        if (order != CUBLASLT_ORDER_COL)
            emu::not_emulated("cublasLtMatrixLayoutSetAttribute", "order", order);
        return CUBLAS_STATUS_SUCCESS;
    }
    default: emu::not_emulated("cublasLtMatrixLayoutSetAttribute", "attribute", attr);
    }
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pref)
{
    return emu::create(emu::g_prefs, pref, emu::Preference{0});
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref)
{
    return emu::destroy(emu::g_prefs, pref);
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void *buf,
                                                    size_t sizeInBytes)
{
    if (!emu::g_prefs.live(pref))
        return CUBLAS_STATUS_INVALID_VALUE;
    emu::Preference &p = emu::state_of<emu::Preference>(pref);
    uint32_t alignment;
    switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: return emu::set(&p.max_workspace, buf, sizeInBytes);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES:
        /* a filter the one algorithm passes at any alignment */
        return emu::set(&alignment, buf, sizeInBytes);
    default: emu::not_emulated("cublasLtMatmulPreferenceSetAttribute", "attribute", attr);
    }
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t operationDesc,
                                              cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
                                              cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
                                              cublasLtMatmulPreference_t preference, int requestedAlgoCount,
                                              cublasLtMatmulHeuristicResult_t heuristicResultsArray[],
                                              int *returnAlgoCount)
{
    if (requestedAlgoCount <= 0 || !heuristicResultsArray || !returnAlgoCount || !emu::g_prefs.live(preference))
        return CUBLAS_STATUS_INVALID_VALUE;
    *returnAlgoCount = 0;
    emu::Plan p;
    const cublasStatus_t st = emu::plan_matmul(lightHandle, operationDesc, Adesc, Bdesc, Cdesc, Ddesc, &p);
    if (st != CUBLAS_STATUS_SUCCESS)
        return st;
    const bool room = emu::state_of<emu::Preference>(preference).max_workspace >= emu::ALGO_WORKSPACE_BYTES;
    cublasLtMatmulHeuristicResult_t &r = heuristicResultsArray[0];
    r = cublasLtMatmulHeuristicResult_t{};
    r.algo.data[0] = emu::ALGO_ID;
    r.algo.data[1] = room ? emu::ALGO_WORKSPACE_BYTES : 0;
    r.workspaceSize = (size_t)r.algo.data[1];
    r.state = CUBLAS_STATUS_SUCCESS;
    r.wavesCount = 1.0f;
    *returnAlgoCount = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t computeDesc, const void *alpha,
                              const void *A, cublasLtMatrixLayout_t Adesc, const void *B, cublasLtMatrixLayout_t Bdesc,
                              const void *beta, const void *C, cublasLtMatrixLayout_t Cdesc, void *D,
                              cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t *algo, void *workspace,
                              size_t workspaceSizeInBytes, cudaStream_t)
{
    emu::Plan p;
    cublasStatus_t st = emu::plan_matmul(lightHandle, computeDesc, Adesc, Bdesc, Cdesc, Ddesc, &p);
    if (st != CUBLAS_STATUS_SUCCESS)
        return st;
    if (!alpha || !beta || (p.bias_needed && !p.ep.bias) || !emu::in_place_ok(p, C, D))
        return CUBLAS_STATUS_INVALID_VALUE;
    st = emu::check_workspace(algo, workspace, workspaceSizeInBytes);
    if (st != CUBLAS_STATUS_SUCCESS)
        return st;
    p.g.alpha = *static_cast<const float *>(alpha);
    p.g.beta = *static_cast<const float *>(beta);
    emu::Epilogue ep = p.ep;
    for (int b = 0; b < p.batches; b++) {
        ep.bias = p.bias_needed ? emu::batch_entry(p.ep.bias, b, p.stride_bias, p.g.d) : nullptr;
        emu::run_gemm(p.g, emu::batch_entry(A, b, p.stride_a, p.g.ab), emu::batch_entry(B, b, p.stride_b, p.g.ab),
                      emu::batch_entry(C, b, p.stride_c, p.g.c),
                      const_cast<void *>(emu::batch_entry(D, b, p.stride_d, p.g.d)), ep, "cublasLtMatmul");
    }
    return CUBLAS_STATUS_SUCCESS;
}

} /* extern "C" */

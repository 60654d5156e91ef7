/* self_test_cublaslt.cpp: the emulator self-test's cuBLASLt tests. Every
 * emulated epilogue is checked for every type combination, both
 * transposes, beta zero (C all NaN) and not, C aliasing D, and strided
 * batches with a per-batch bias, bit for bit against a naive loop of
 * cuBLASLt's definition D = act(alpha op(A) op(B) + beta C + bias[row])
 * (inputs on the 1/8 grid); GELU against torch's tanh GELU; ReLU of NaN;
 * the heuristic and the workspace path; each INVALID_VALUE /
 * NOT_SUPPORTED case; and the aborts for what is not emulated. */
#include "self_test.h"

#include <math.h>

#include <cublasLt.h>

using emu::Elem;

struct LtTypes {
    cudaDataType ab, c;
    Elem ab_elem, c_elem;
    cublasComputeType_t compute;
};

struct LtCase {
    LtTypes t;
    cublasOperation_t ta, tb;
    cublasLtEpilogue_t epilogue;
    float beta;
    bool in_place; /* C == D */
    int batches;
};

static bool has_bias(cublasLtEpilogue_t e)
{
    return e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_RELU_BIAS || e == CUBLASLT_EPILOGUE_GELU_BIAS;
}

/* cuBLASLt's GELU: the tanh approximation, written from its formula. */
static double gelu_reference(double x) { return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); }

static double activation(cublasLtEpilogue_t e, double v)
{
    switch (e) {
    case CUBLASLT_EPILOGUE_RELU:
    case CUBLASLT_EPILOGUE_RELU_BIAS: return v > 0.0 ? v : 0.0;
    case CUBLASLT_EPILOGUE_GELU:
    case CUBLASLT_EPILOGUE_GELU_BIAS: return gelu_reference(v);
    default: return v;
    }
}

static void set_attr(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const void *v, size_t bytes)
{
    assert_int_equal(cublasLtMatmulDescSetAttribute(d, attr, v, bytes), CUBLAS_STATUS_SUCCESS);
}

static void set_batches(cublasLtMatrixLayout_t l, int32_t count, int64_t stride)
{
    assert_int_equal(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count),
                     CUBLAS_STATUS_SUCCESS);
    assert_int_equal(
        cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride),
        CUBLAS_STATUS_SUCCESS);
}

/* A matmul's descriptors, made and destroyed together. A is rows_a x cols_a
 * as stored (lda), and so on. */
struct LtSetup {
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c, d;

    LtSetup(const LtTypes &t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int64_t lda,
            int64_t ldb, int64_t ldc)
    {
        assert_int_equal(cublasLtMatmulDescCreate(&desc, t.compute, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
        set_attr(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
        set_attr(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
        const bool at = ta != CUBLAS_OP_N, bt = tb != CUBLAS_OP_N;
        assert_int_equal(cublasLtMatrixLayoutCreate(&a, t.ab, at ? k : m, at ? m : k, lda), CUBLAS_STATUS_SUCCESS);
        assert_int_equal(cublasLtMatrixLayoutCreate(&b, t.ab, bt ? n : k, bt ? k : n, ldb), CUBLAS_STATUS_SUCCESS);
        assert_int_equal(cublasLtMatrixLayoutCreate(&c, t.c, m, n, ldc), CUBLAS_STATUS_SUCCESS);
        assert_int_equal(cublasLtMatrixLayoutCreate(&d, t.c, m, n, ldc), CUBLAS_STATUS_SUCCESS);
    }
    LtSetup(const LtSetup &) = delete;
    LtSetup &operator=(const LtSetup &) = delete;
    ~LtSetup()
    {
        cublasLtMatmulDescDestroy(desc);
        for (cublasLtMatrixLayout_t l : {a, b, c, d})
            cublasLtMatrixLayoutDestroy(l);
    }
};

/* The one heuristic result for `s`, with room for any workspace. */
static cublasLtMatmulHeuristicResult_t heuristic(cublasLtHandle_t h, const LtSetup &s)
{
    cublasLtMatmulPreference_t pref;
    assert_int_equal(cublasLtMatmulPreferenceCreate(&pref), CUBLAS_STATUS_SUCCESS);
    const uint64_t max_ws = 1 << 20;
    assert_int_equal(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_ws, sizeof max_ws),
        CUBLAS_STATUS_SUCCESS);
    cublasLtMatmulHeuristicResult_t r[3];
    int returned = 0;
    assert_int_equal(cublasLtMatmulAlgoGetHeuristic(h, s.desc, s.a, s.b, s.c, s.d, pref, 3, r, &returned),
                     CUBLAS_STATUS_SUCCESS);
    assert_int_equal(returned, 1);
    assert_int_equal(r[0].state, CUBLAS_STATUS_SUCCESS);
    assert_int_equal(cublasLtMatmulPreferenceDestroy(pref), CUBLAS_STATUS_SUCCESS);
    return r[0];
}

static float at_op(const std::vector<float> &x, bool transposed, int64_t ld, int64_t base, int i, int p)
{
    return x[(size_t)(base + (transposed ? p + i * ld : i + p * ld))];
}

static void check_lt_case(cublasLtHandle_t h, const LtCase &lc)
{
    const int m = 5, n = 7, k = 9;
    const bool at = lc.ta != CUBLAS_OP_N, bt = lc.tb != CUBLAS_OP_N;
    const int64_t lda = (at ? k : m) + 2, ldb = (bt ? n : k) + 1, ldc = m + 3;
    const int64_t sa = lda * (at ? m : k) + 5, sb = ldb * (bt ? k : n) + 3, sc = ldc * n + 1, sbias = m + 2;
    LtSetup s(lc.t, lc.ta, lc.tb, m, n, k, lda, ldb, ldc);
    if (lc.batches > 1) {
        set_batches(s.a, lc.batches, sa), set_batches(s.b, lc.batches, sb);
        set_batches(s.c, lc.batches, sc), set_batches(s.d, lc.batches, sc);
        set_attr(s.desc, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, &sbias, sizeof sbias);
    }
    const std::vector<float> a = grid_values((size_t)sa * lc.batches, 1), b = grid_values((size_t)sb * lc.batches, 2);
    std::vector<float> c = grid_values((size_t)sc * lc.batches, 3), bias = grid_values((size_t)sbias * lc.batches, 4);
    for (float &v : c)
        v = as_stored(v, lc.t.c_elem);
    for (float &v : bias)
        v = as_stored(v, lc.t.c_elem);
    void *da = device_elems(a, lc.t.ab_elem), *db = device_elems(b, lc.t.ab_elem);
    void *dc = lc.beta != 0.0f ? device_elems(c, lc.t.c_elem)
                               : device_buffer<unsigned char>(c.size() * emu::elem_size(lc.t.c_elem)); /* NaN */
    void *dd = lc.in_place ? dc : device_buffer<unsigned char>(c.size() * emu::elem_size(lc.t.c_elem));
    void *dbias = device_elems(bias, lc.t.c_elem);
    set_attr(s.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &lc.epilogue, sizeof lc.epilogue);
    if (has_bias(lc.epilogue))
        set_attr(s.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &dbias, sizeof dbias);
    const cublasLtMatmulHeuristicResult_t r = heuristic(h, s);
    void *ws = device_buffer<unsigned char>(r.workspaceSize);
    const float alpha = 1.5f;
    assert_int_equal(cublasLtMatmul(h, s.desc, &alpha, da, s.a, db, s.b, &lc.beta, dc, s.c, dd, s.d, &r.algo, ws,
                                    r.workspaceSize, nullptr),
                     CUBLAS_STATUS_SUCCESS);
    const std::vector<float> got = host_elems(dd, c.size(), lc.t.c_elem);
    for (int bt_i = 0; bt_i < lc.batches; bt_i++)
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                double v = 0;
                for (int p = 0; p < k; p++)
                    v += (double)at_op(a, at, lda, bt_i * sa, i, p) * at_op(b, bt, ldb, bt_i * sb, p, j);
                const size_t ci = (size_t)(bt_i * sc + i + j * ldc);
                v = alpha * v + (lc.beta != 0.0f ? lc.beta * c[ci] : 0.0);
                if (has_bias(lc.epilogue))
                    v += bias[(size_t)(bt_i * sbias + i)];
                const float want = as_stored((float)activation(lc.epilogue, v), lc.t.c_elem);
                if (got[ci] != want)
                    fail_msg("types %d/%d compute %d ops %d%d epilogue %d beta %g in place %d batch %d: D(%d,%d) is "
                             "%g, want %g",
                             lc.t.ab, lc.t.c, lc.t.compute, lc.ta, lc.tb, lc.epilogue, lc.beta, lc.in_place, bt_i,
                             i, j, got[ci], want);
            }
    cudaFree(da), cudaFree(db), cudaFree(dc), cudaFree(dbias), cudaFree(ws);
    if (!lc.in_place)
        cudaFree(dd);
}

static void test_lt_every_epilogue_type_and_op(void **state)
{
    (void)state;
    cublasLtHandle_t h;
    assert_int_equal(cublasLtCreate(&h), CUBLAS_STATUS_SUCCESS);
    const LtTypes types[] = {
        {CUDA_R_32F, CUDA_R_32F, Elem::F32, Elem::F32, CUBLAS_COMPUTE_32F},
        {CUDA_R_32F, CUDA_R_32F, Elem::F32, Elem::F32, CUBLAS_COMPUTE_32F_FAST_TF32},
        {CUDA_R_16F, CUDA_R_16F, Elem::F16, Elem::F16, CUBLAS_COMPUTE_32F},
        {CUDA_R_16F, CUDA_R_32F, Elem::F16, Elem::F32, CUBLAS_COMPUTE_32F},
        {CUDA_R_16BF, CUDA_R_16BF, Elem::BF16, Elem::BF16, CUBLAS_COMPUTE_32F},
        {CUDA_R_16BF, CUDA_R_32F, Elem::BF16, Elem::F32, CUBLAS_COMPUTE_32F},
    };
    const cublasLtEpilogue_t epilogues[] = {CUBLASLT_EPILOGUE_DEFAULT, CUBLASLT_EPILOGUE_BIAS,
                                            CUBLASLT_EPILOGUE_RELU,    CUBLASLT_EPILOGUE_RELU_BIAS,
                                            CUBLASLT_EPILOGUE_GELU,    CUBLASLT_EPILOGUE_GELU_BIAS};
    const cublasOperation_t ops[] = {CUBLAS_OP_N, CUBLAS_OP_T};
    for (const LtTypes &t : types)
        for (cublasOperation_t ta : ops)
            for (cublasOperation_t tb : ops)
                for (cublasLtEpilogue_t e : epilogues) {
                    check_lt_case(h, LtCase{t, ta, tb, e, 0.0f, false, 1});
                    check_lt_case(h, LtCase{t, ta, tb, e, 0.5f, false, 1});
                    check_lt_case(h, LtCase{t, ta, tb, e, 0.5f, true, 1});
                    check_lt_case(h, LtCase{t, ta, tb, e, 0.25f, false, 3});
                }
    assert_int_equal(cublasLtDestroy(h), CUBLAS_STATUS_SUCCESS);
}

/* D (m x 1, fp32) = epilogue(x * 1): the epilogue applied to each x. */
static std::vector<float> epilogue_of(cublasLtHandle_t h, cublasLtEpilogue_t e, const std::vector<float> &x,
                                      cublasComputeType_t compute = CUBLAS_COMPUTE_32F)
{
    const int m = (int)x.size();
    const LtTypes t{CUDA_R_32F, CUDA_R_32F, Elem::F32, Elem::F32, compute};
    LtSetup s(t, CUBLAS_OP_N, CUBLAS_OP_N, m, 1, 1, m, 1, m);
    set_attr(s.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof e);
    float *dx = to_device(x), *done = to_device(std::vector<float>{1.0f}), *dd = device_buffer<float>(x.size());
    const float alpha = 1.0f, beta = 0.0f;
    assert_int_equal(cublasLtMatmul(h, s.desc, &alpha, dx, s.a, done, s.b, &beta, dd, s.c, dd, s.d, nullptr, nullptr,
                                    0, nullptr),
                     CUBLAS_STATUS_SUCCESS);
    const std::vector<float> d = to_host(dd, x.size());
    cudaFree(dx), cudaFree(done), cudaFree(dd);
    return d;
}

/* cuBLASLt documents GELU without a formula; PyTorch's fused addmm + GELU
 * on CUDA, which runs this epilogue, is gelu(approximate="tanh")
 * (torch/_decomp/decompositions.py, _addmm_activation). Goldens from torch
 * 2.15 in float64: torch.nn.functional.gelu(x, approximate="tanh"). */
static void test_lt_gelu_is_torch_tanh_gelu(void **state)
{
    (void)state;
    const struct {
        double x, gelu;
    } goldens[] = {
        {-4.0, -7.024594819227126e-05}, {-2.5, -0.015084266089998577}, {-1.0, -0.15880800939172324},
        {-0.375, -0.13269223310848838}, {0.0, 0.0},                    {0.25, 0.149675350701685},
        {0.5, 0.34571400982514394},     {1.0, 0.8411919906082768},     {1.75, 1.6797953823412513},
        {3.0, 2.996362607918227},       {6.0, 5.9999999999156035},
    };
    std::vector<float> x;
    for (const auto &g : goldens)
        x.push_back((float)g.x);
    cublasLtHandle_t h;
    assert_int_equal(cublasLtCreate(&h), CUBLAS_STATUS_SUCCESS);
    const std::vector<float> d = epilogue_of(h, CUBLASLT_EPILOGUE_GELU, x);
    for (size_t i = 0; i < x.size(); i++)
        assert_true(d[i] == (float)goldens[i].gelu);
    cublasLtDestroy(h);
}

/* ReLU is max(x, 0): NaN becomes 0, as cuBLASLt does (reported on NVIDIA's
 * forum, "Incorrect result of cublasLtMatmul with CUBLASLT_EPILOGUE_RELU
 * when input is NaN"); without an epilogue NaN stays NaN. */
static void test_lt_relu_of_nan(void **state)
{
    (void)state;
    cublasLtHandle_t h;
    assert_int_equal(cublasLtCreate(&h), CUBLAS_STATUS_SUCCESS);
    const std::vector<float> x = {NAN, -1.0f, 2.0f};
    std::vector<float> d = epilogue_of(h, CUBLASLT_EPILOGUE_RELU, x);
    assert_true(d[0] == 0.0f && d[1] == 0.0f && d[2] == 2.0f);
    d = epilogue_of(h, CUBLASLT_EPILOGUE_DEFAULT, x);
    assert_true(isnan(d[0]) && d[1] == -1.0f);
    d = epilogue_of(h, CUBLASLT_EPILOGUE_GELU, x);
    assert_true(isnan(d[0]));
    cublasLtDestroy(h);
}

/* FAST_TF32 rounds fp32 inputs to TF32 (nearest even); COMPUTE_32F does not
 * (cuBLASLt has no math mode). */
static void test_lt_tf32_rounding(void **state)
{
    (void)state;
    cublasLtHandle_t h;
    assert_int_equal(cublasLtCreate(&h), CUBLAS_STATUS_SUCCESS);
    const std::vector<float> x = {1.0f + 0x1p-12f, 1.0f + 3 * 0x1p-12f, 1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f};
    const std::vector<float> tf32 = {1.0f, 1.0f + 0x1p-10f, 1.0f, 1.0f + 0x1p-9f};
    assert_true(epilogue_of(h, CUBLASLT_EPILOGUE_DEFAULT, x, CUBLAS_COMPUTE_32F) == x);
    assert_true(epilogue_of(h, CUBLASLT_EPILOGUE_DEFAULT, x, CUBLAS_COMPUTE_32F_FAST_TF32) == tf32);
    cublasLtDestroy(h);
}

/* One small fp16 problem whose descriptors each check below changes. */
struct LtStatusFixture {
    cublasLtHandle_t h;
    cublasLtMatmulPreference_t pref;
    LtSetup s{{CUDA_R_16F, CUDA_R_16F, Elem::F16, Elem::F16, CUBLAS_COMPUTE_32F}, CUBLAS_OP_T, CUBLAS_OP_N, 4, 4, 8,
              8, 8, 4};
    void *x = device_buffer<unsigned char>(4096);
    void *ws = device_buffer<unsigned char>(4096);
    const float one = 1.0f;

    LtStatusFixture()
    {
        assert_int_equal(cublasLtCreate(&h), CUBLAS_STATUS_SUCCESS);
        assert_int_equal(cublasLtMatmulPreferenceCreate(&pref), CUBLAS_STATUS_SUCCESS);
    }
    LtStatusFixture(const LtStatusFixture &) = delete;
    LtStatusFixture &operator=(const LtStatusFixture &) = delete;
    ~LtStatusFixture()
    {
        cublasLtMatmulPreferenceDestroy(pref);
        cublasLtDestroy(h);
        cudaFree(x), cudaFree(ws);
    }
    cublasStatus_t matmul(const cublasLtMatmulAlgo_t *algo = nullptr, size_t ws_bytes = 4096, void *d = nullptr)
    {
        return cublasLtMatmul(h, s.desc, &one, x, s.a, x, s.b, &one, x, s.c, d ? d : x, s.d, algo, ws, ws_bytes,
                              nullptr);
    }
    cublasStatus_t heuristic(int *returned, cublasLtMatmulHeuristicResult_t *r)
    {
        return cublasLtMatmulAlgoGetHeuristic(h, s.desc, s.a, s.b, s.c, s.d, pref, 1, r, returned);
    }
    /* The status of the matmul (and of the heuristic, which must agree)
     * after `change`, then `undo`. */
    template <typename Change, typename Undo> cublasStatus_t status_after(Change change, Undo undo)
    {
        change();
        int returned = -1;
        cublasLtMatmulHeuristicResult_t r;
        const cublasStatus_t st = matmul(), hst = heuristic(&returned, &r);
        assert_int_equal(hst, st);
        assert_int_equal(returned, st == CUBLAS_STATUS_SUCCESS ? 1 : 0);
        undo();
        return st;
    }
};

template <typename T> static void set_layout(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr, T v)
{
    assert_int_equal(cublasLtMatrixLayoutSetAttribute(l, attr, &v, sizeof v), CUBLAS_STATUS_SUCCESS);
}

template <typename T> static void set_desc(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, T v)
{
    set_attr(d, attr, &v, sizeof v);
}

static void test_lt_status_checks(void **state)
{
    (void)state;
    LtStatusFixture f;
    const cublasStatus_t OK = CUBLAS_STATUS_SUCCESS, INVALID = CUBLAS_STATUS_INVALID_VALUE,
                         UNSUPPORTED = CUBLAS_STATUS_NOT_SUPPORTED;
    auto nothing = [] {};
    assert_int_equal(f.status_after(nothing, nothing), OK);
    /* changes of one layout attribute, as (change, undo) halves */
    auto rows = [](cublasLtMatrixLayout_t l, uint64_t v) { return [=] { set_layout(l, CUBLASLT_MATRIX_LAYOUT_ROWS, v); }; };
    auto ld = [](cublasLtMatrixLayout_t l, int64_t v) { return [=] { set_layout(l, CUBLASLT_MATRIX_LAYOUT_LD, v); }; };
    auto type = [](cublasLtMatrixLayout_t l, cudaDataType v) {
        return [=] { set_layout(l, CUBLASLT_MATRIX_LAYOUT_TYPE, (uint32_t)v); };
    };
    auto batch = [](cublasLtMatrixLayout_t l, int32_t v) {
        return [=] { set_layout(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, v); };
    };
    /* sizes: A is k x m (transposed), B k x n, C and D m x n */
    assert_int_equal(f.status_after(rows(f.s.b, 7), rows(f.s.b, 8)), INVALID);       /* B's k */
    assert_int_equal(f.status_after(rows(f.s.c, 5), rows(f.s.c, 4)), INVALID);       /* C's m */
    assert_int_equal(f.status_after(rows(f.s.d, 3), rows(f.s.d, 4)), INVALID);       /* D's m */
    assert_int_equal(f.status_after(ld(f.s.a, 7), ld(f.s.a, 8)), INVALID);           /* lda < rows */
    assert_int_equal(f.status_after(ld(f.s.c, 0), ld(f.s.c, 4)), INVALID);           /* ldc < rows */
    assert_int_equal(f.status_after(batch(f.s.a, 2), batch(f.s.a, 1)), INVALID);     /* batch counts differ */
    assert_int_equal(f.status_after(type(f.s.b, CUDA_R_32F), type(f.s.b, CUDA_R_16F)), UNSUPPORTED);  /* A != B */
    assert_int_equal(f.status_after(type(f.s.d, CUDA_R_32F), type(f.s.d, CUDA_R_16F)), UNSUPPORTED);  /* D != C */
    assert_int_equal(f.status_after(type(f.s.c, CUDA_R_16BF), type(f.s.c, CUDA_R_16F)), UNSUPPORTED); /* C type */
    assert_int_equal(f.status_after(type(f.s.a, CUDA_R_64F), type(f.s.a, CUDA_R_16F)), UNSUPPORTED);
    const cublasLtMatmulDesc_t desc = f.s.desc;
    auto compute = [=](cublasComputeType_t v) { return [=] { set_desc(desc, CUBLASLT_MATMUL_DESC_COMPUTE_TYPE, v); }; };
    assert_int_equal(f.status_after(compute(CUBLAS_COMPUTE_32F_FAST_TF32), compute(CUBLAS_COMPUTE_32F)), UNSUPPORTED);
    assert_int_equal(f.status_after(compute(CUBLAS_COMPUTE_16F), compute(CUBLAS_COMPUTE_32F)), UNSUPPORTED);
    assert_int_equal(f.status_after([=] { set_desc(desc, CUBLASLT_MATMUL_DESC_SCALE_TYPE, CUDA_R_16F); },
                                    [=] { set_desc(desc, CUBLASLT_MATMUL_DESC_SCALE_TYPE, CUDA_R_32F); }),
                     UNSUPPORTED);
    assert_int_equal(f.status_after([=] { set_desc(desc, CUBLASLT_MATMUL_DESC_TRANSA, (int32_t)7); },
                                    [=] { set_desc(desc, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T); }),
                     INVALID);
    auto epilogue = [=](uint32_t e) { return [=] { set_desc(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, e); }; };
    assert_int_equal(f.status_after(epilogue(3), epilogue(CUBLASLT_EPILOGUE_DEFAULT)), INVALID); /* no such epilogue */

    /* the bias: needed by BIAS epilogues, of D's type */
    set_desc(f.s.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_GELU_BIAS);
    assert_int_equal(f.matmul(), INVALID); /* no bias pointer */
    set_desc(f.s.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, (const void *)f.x);
    assert_int_equal(f.matmul(), OK);
    set_desc(f.s.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, CUDA_R_32F);
    assert_int_equal(f.matmul(), UNSUPPORTED);
    set_desc(f.s.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, CUDA_R_16F);
    assert_int_equal(f.matmul(), OK);

    /* in place (C == D) needs equal layouts */
    void *d = device_buffer<unsigned char>(4096);
    set_layout(f.s.d, CUBLASLT_MATRIX_LAYOUT_LD, (int64_t)8);
    assert_int_equal(f.matmul(nullptr, 4096, d), OK);
    assert_int_equal(f.matmul(), INVALID);
    set_layout(f.s.d, CUBLASLT_MATRIX_LAYOUT_LD, (int64_t)4);
    cudaFree(d);

    /* heuristic and workspace */
    int returned = 0;
    cublasLtMatmulHeuristicResult_t r;
    assert_int_equal(f.heuristic(&returned, &r), OK);
    assert_int_equal(r.workspaceSize, 0); /* the preference allows none */
    const uint64_t max_ws = 4096;
    assert_int_equal(
        cublasLtMatmulPreferenceSetAttribute(f.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_ws, sizeof max_ws),
        OK);
    const uint32_t alignment = 16;
    assert_int_equal(cublasLtMatmulPreferenceSetAttribute(f.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                          &alignment, sizeof alignment),
                     OK);
    assert_int_equal(f.heuristic(&returned, &r), OK);
    assert_int_equal(r.workspaceSize, 4096);
    assert_int_equal(f.matmul(&r.algo, 4095), INVALID);
    assert_int_equal(f.matmul(&r.algo, 4096), OK);
    cublasLtMatmulAlgo_t foreign{};
    assert_int_equal(f.matmul(&foreign), INVALID);
    assert_int_equal(cublasLtMatmulAlgoGetHeuristic(f.h, f.s.desc, f.s.a, f.s.b, f.s.c, f.s.d, f.pref, 0, &r, &returned),
                     INVALID);

    /* arguments, sizes of attribute values, handles */
    assert_int_equal(cublasLtMatmul(f.h, f.s.desc, nullptr, f.x, f.s.a, f.x, f.s.b, &f.one, f.x, f.s.c, f.x, f.s.d,
                                    nullptr, nullptr, 0, nullptr),
                     INVALID);
    const int64_t wide = 1;
    assert_int_equal(cublasLtMatmulDescSetAttribute(f.s.desc, CUBLASLT_MATMUL_DESC_TRANSA, &wide, sizeof wide),
                     INVALID);
    assert_int_equal(cublasLtMatmulDescSetAttribute(f.s.desc, CUBLASLT_MATMUL_DESC_TRANSA, nullptr, 4), INVALID);
    assert_int_equal(cublasLtMatrixLayoutSetAttribute(f.s.a, CUBLASLT_MATRIX_LAYOUT_ROWS, &alignment, sizeof alignment),
                     INVALID);
    const int32_t col = CUBLASLT_ORDER_COL;
    assert_int_equal(cublasLtMatrixLayoutSetAttribute(f.s.a, CUBLASLT_MATRIX_LAYOUT_ORDER, &col, sizeof col), OK);
    cublasLtMatrixLayout_t stale;
    assert_int_equal(cublasLtMatrixLayoutCreate(&stale, CUDA_R_16F, 4, 4, 4), OK);
    assert_int_equal(cublasLtMatrixLayoutDestroy(stale), OK);
    assert_int_equal(cublasLtMatrixLayoutDestroy(stale), INVALID);
    assert_int_equal(cublasLtMatmul(f.h, f.s.desc, &f.one, f.x, stale, f.x, f.s.b, &f.one, f.x, f.s.c, f.x, f.s.d,
                                    nullptr, nullptr, 0, nullptr),
                     INVALID);
    assert_int_equal(cublasLtMatmul(nullptr, f.s.desc, &f.one, f.x, f.s.a, f.x, f.s.b, &f.one, f.x, f.s.c, f.x, f.s.d,
                                    nullptr, nullptr, 0, nullptr),
                     CUBLAS_STATUS_NOT_INITIALIZED);
    assert_non_null(strstr(cublasLtGetStatusString(UNSUPPORTED), "not supported"));
    assert_string_equal(cublasLtGetStatusName(INVALID), "CUBLAS_STATUS_INVALID_VALUE");
    assert_int_equal(cublasLtGetVersion(), CUBLAS_VERSION);
}

/* ---- what aborts ---- */

static void lt_matmul_with(cublasLtEpilogue_t e, bool host_a)
{
    cublasLtHandle_t h;
    cublasLtCreate(&h);
    LtSetup s({CUDA_R_32F, CUDA_R_32F, Elem::F32, Elem::F32, CUBLAS_COMPUTE_32F}, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2,
              2, 2, 2);
    cublasLtMatmulDescSetAttribute(s.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof e);
    float host[4] = {1, 2, 3, 4}, *d = device_buffer<float>(4);
    const float one = 1.0f;
    cublasLtMatmul(h, s.desc, &one, host_a ? host : d, s.a, d, s.b, &one, d, s.c, d, s.d, nullptr, nullptr, 0, nullptr);
}

static void lt_on_host_memory(void) { lt_matmul_with(CUBLASLT_EPILOGUE_DEFAULT, true); }
static void lt_aux_epilogue(void) { lt_matmul_with(CUBLASLT_EPILOGUE_GELU_AUX_BIAS, false); }

static void lt_aux_pointer_attribute(void)
{
    cublasLtMatmulDesc_t desc;
    cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    const void *aux = nullptr;
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux);
}

static void test_lt_aborts(void **state)
{
    (void)state;
    expect_child_abort(lt_on_host_memory, "cuda_emu: cublasLtMatmul: A (");
    expect_child_abort(lt_aux_epilogue, "cuda_emu: cublasLtMatmul: epilogue 164 (cublasLt.h) is not emulated");
    expect_child_abort(lt_aux_pointer_attribute,
                       "cuda_emu: cublasLtMatmulDescSetAttribute: attribute 11 (cublasLt.h) is not emulated");
}

int run_cublaslt_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lt_every_epilogue_type_and_op),
        cmocka_unit_test(test_lt_gelu_is_torch_tanh_gelu),
        cmocka_unit_test(test_lt_relu_of_nan),
        cmocka_unit_test(test_lt_tf32_rounding),
        cmocka_unit_test(test_lt_status_checks),
        cmocka_unit_test(test_lt_aborts),
    };
    return cmocka_run_group_tests_name("cuda_emu cuBLASLt", tests, nullptr, nullptr);
}

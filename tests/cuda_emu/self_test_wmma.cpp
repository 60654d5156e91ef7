/* self_test_wmma.cpp: the emulator self-test's WMMA (nvcuda::wmma) tests.
 * A tiled GEMM for every shape, input type, accumulator type and A/B/C
 * layout is checked bit for bit against a naive loop (inputs on the 1/8
 * grid, so fp32 sums are exact; fp16 accumulators rounded after each
 * mma_sync, as the API defines); tf32 inputs as the product sees them
 * against an independent truncation and round-half-away reference; an
 * attention-like warp (store, work lane by lane, reload) against a double
 * reference; a store read back without __syncwarp reads stale memory; and
 * each misuse aborts with its message. */
#include "self_test.h"

#include <math.h>

#include "self_test_kernels.h"

using emu::Elem;

/* Offset of (r, c) in a packed rows x cols matrix. */
static size_t packed_at(bool col_major, int rows, int cols, int r, int c)
{
    return col_major ? (size_t)r + (size_t)c * rows : (size_t)r * cols + c;
}

struct GemmDims {
    int m, n, k, kstep;
};

/* C = A B + C by the definition, C rounded to `acc` after each k step of
 * `kstep` (one mma_sync). */
static std::vector<float> reference_wmma_gemm(const WmmaGemmCase &g, const GemmDims &d, const std::vector<float> &a,
                                              const std::vector<float> &b, std::vector<float> c, Elem acc)
{
    for (int i = 0; i < d.m; i++)
        for (int j = 0; j < d.n; j++) {
            float &out = c[packed_at(g.c_col_major, d.m, d.n, i, j)];
            for (int p0 = 0; p0 < d.k; p0 += d.kstep) {
                double s = out;
                for (int p = p0; p < p0 + d.kstep; p++)
                    s += (double)a[packed_at(g.a_col_major, d.m, d.k, i, p)] *
                         b[packed_at(g.b_col_major, d.k, d.n, p, j)];
                out = as_stored((float)s, acc);
            }
        }
    return c;
}

static GemmDims dims_of(int shape)
{
    /* Several tiles each way where the layouts keep every tile 32-byte
     * aligned; m16n16k16 has an odd number of warps (a spare in the last block). */
    switch (shape) {
    case WMMA_M32N8K16: return {64, 8, 48, 16};
    case WMMA_M8N32K16: return {8, 64, 48, 16};
    case WMMA_M16N16K8: return {32, 32, 24, 8};
    default: return {48, 48, 48, 16};
    }
}

static void check_wmma_gemm(const WmmaGemmCase &g)
{
    const GemmDims d = dims_of(g.shape);
    const Elem in = g.input == WMMA_F16 ? Elem::F16 : g.input == WMMA_BF16 ? Elem::BF16 : Elem::F32;
    const Elem acc = g.half_accumulator ? Elem::F16 : Elem::F32;
    const std::vector<float> a = grid_values((size_t)d.m * d.k, 31), b = grid_values((size_t)d.k * d.n, 32);
    std::vector<float> c = grid_values((size_t)d.m * d.n, 33);
    void *da = device_elems(a, in), *db = device_elems(b, in), *dc = device_elems(c, acc);
    assert_int_equal(launch_wmma_gemm(g, da, db, dc, d.m, d.n, d.k), cudaSuccess);
    const std::vector<float> want = reference_wmma_gemm(g, d, a, b, c, acc);
    const std::vector<float> got = host_elems(dc, c.size(), acc);
    for (size_t i = 0; i < got.size(); i++)
        if (got[i] != want[i])
            fail_msg("shape %d input %d half acc %d layouts %d%d%d: element %zu is %g, want %g", g.shape, g.input,
                     g.half_accumulator, g.a_col_major, g.b_col_major, g.c_col_major, i, got[i], want[i]);
    cudaFree(da), cudaFree(db), cudaFree(dc);
}

static void test_wmma_gemm_every_shape_type_and_layout(void **state)
{
    (void)state;
    const struct {
        int shape, input, half_accumulator;
    } kinds[] = {
        {WMMA_M16N16K16, WMMA_F16, 0}, {WMMA_M16N16K16, WMMA_F16, 1}, {WMMA_M16N16K16, WMMA_BF16, 0},
        {WMMA_M32N8K16, WMMA_F16, 0},  {WMMA_M32N8K16, WMMA_F16, 1},  {WMMA_M32N8K16, WMMA_BF16, 0},
        {WMMA_M8N32K16, WMMA_F16, 0},  {WMMA_M8N32K16, WMMA_F16, 1},  {WMMA_M8N32K16, WMMA_BF16, 0},
        {WMMA_M16N16K8, WMMA_TF32, 0},
    };
    for (const auto &kind : kinds)
        for (int layouts = 0; layouts < 8; layouts++)
            for (int convert = 0; convert <= (kind.input == WMMA_TF32); convert++) {
                const WmmaGemmCase g{kind.shape,        kind.input,   kind.half_accumulator, layouts & 1,
                                     (layouts >> 1) & 1, layouts >> 2, convert};
                check_wmma_gemm(g);
            }
}

/* tf32 by definition: 10 mantissa bits, by truncation or by rounding to
 * nearest with ties away from zero. */
static float tf32_reference(float v, bool round_half_away)
{
    int e;
    const double frac = frexp(fabs((double)v), &e); /* |v| = frac 2^e, frac in [0.5, 1) */
    const double units = ldexp(frac, 11);          /* in units of the last tf32 bit */
    const double kept = round_half_away ? floor(units + 0.5) : floor(units);
    return (float)copysign(ldexp(kept, e - 11), (double)v);
}

static void test_wmma_tf32_inputs(void **state)
{
    (void)state;
    std::vector<float> a = grid_values(16 * 8, 34), identity(8 * 16, 0.0f);
    for (size_t i = 0; i < a.size(); i++) {
        uint32_t bits;
        memcpy(&bits, &a[i], 4);
        const uint32_t below = i % 8 == 1 ? 0x1000u : (uint32_t)(i * 0x2e5) & 0x1fffu; /* ties, and others */
        if (bits != 0)
            bits |= below; /* bits below tf32's precision */
        memcpy(&a[i], &bits, 4);
    }
    for (int p = 0; p < 8; p++)
        identity[p * 16 + p] = 1.0f;
    float *da = to_device(a), *did = to_device(identity), *dout = device_buffer<float>(256);
    for (int convert = 0; convert <= 1; convert++) {
        assert_int_equal(launch_wmma_tf32_seen(da, did, dout, convert), cudaSuccess);
        const std::vector<float> out = to_host(dout, 256);
        for (int i = 0; i < 16; i++)
            for (int j = 0; j < 16; j++)
                assert_true(out[i * 16 + j] == (j < 8 ? tf32_reference(a[i * 8 + j], convert) : 0.0f));
    }
    cudaFree(da), cudaFree(did), cudaFree(dout);
}

static void test_wmma_attention_pattern(void **state)
{
    (void)state;
    const float scale = 0.25f;
    const std::vector<float> q = grid_values(256, 35), k = grid_values(256, 36), v = grid_values(256, 37);
    void *dq = device_elems(q, Elem::F16), *dk = device_elems(k, Elem::F16), *dv = device_elems(v, Elem::F16);
    float *dout = device_buffer<float>(256);
    assert_int_equal(launch_wmma_attention(static_cast<const __half *>(dq), static_cast<const __half *>(dk),
                                           static_cast<const __half *>(dv), dout, scale),
                     cudaSuccess);
    const std::vector<float> out = to_host(dout, 256);
    for (int i = 0; i < 16; i++) {
        double s[16], mx = -INFINITY, sum = 0;
        for (int j = 0; j < 16; j++) {
            s[j] = 0;
            for (int p = 0; p < 16; p++)
                s[j] += (double)q[i * 16 + p] * k[j * 16 + p];
            s[j] *= scale;
            mx = fmax(mx, s[j]);
        }
        for (int j = 0; j < 16; j++)
            sum += s[j] = exp(s[j] - mx);
        for (int c = 0; c < 16; c++) {
            double o = 0;
            for (int j = 0; j < 16; j++)
                o += s[j] * v[j * 16 + c];
            const double want = o / sum, got = out[i + c * 16]; /* stored column-major */
            if (fabs(got - want) > 2e-3 * (1.0 + fabs(want)))
                fail_msg("out[%d][%d] = %g, want %g", i, c, got, want);
        }
    }
    cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(dout);
}

static bool is_nan_fill(float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return bits == 0xFFFFFFFFu;
}

/* Each lane stores its share when it goes on: read too early, another
 * lane's element is still the NaN fill of shared memory (in thread order,
 * lane l reads element l + 1 before lane l + 1 stores it; any order of
 * SDXL_CUDA_EMU_SHUFFLE shows some such read). */
static void test_wmma_store_needs_syncwarp(void **state)
{
    (void)state;
    float *dout = device_buffer<float>(32);
    assert_int_equal(launch_wmma_store_then_read(dout, 1), cudaSuccess);
    for (float v : to_host(dout, 32))
        assert_true(v == 1.0f);
    assert_int_equal(launch_wmma_store_then_read(dout, 0), cudaSuccess);
    int stale = 0;
    for (float v : to_host(dout, 32)) {
        assert_true(v == 1.0f || is_nan_fill(v));
        stale += is_nan_fill(v);
    }
    assert_true(stale > 0);
    cudaFree(dout);
}

static void test_wmma_misuse_aborts(void **state)
{
    (void)state;
    const char *file = "self_test_wmma_kernels.cu";
    expect_kernel_abort(launch_wmma_misaligned, "load_matrix_sync: pointer", file);
    expect_kernel_abort(launch_wmma_misaligned, "is not 256-bit (32-byte) aligned", file);
    expect_kernel_abort(launch_wmma_bad_ldm, "load_matrix_sync: ldm 12 is not a multiple of 8", file);
    expect_kernel_abort(launch_wmma_partial_warp, "load_matrix_sync in a partial warp of 16 lanes", file);
    expect_kernel_abort(launch_wmma_lane_arguments, "lanes 0 and 16 of a warp reached different WMMA calls", file);
    expect_kernel_abort(launch_wmma_lane_elements,
                        "store_matrix_sync: lane 3's accumulator fragment differs from lane 0's", file);
    expect_kernel_abort(launch_wmma_load_race, "mma_sync: lane 1's matrix_a fragment differs from lane 0's", file);
}

int run_wmma_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wmma_gemm_every_shape_type_and_layout),
        cmocka_unit_test(test_wmma_tf32_inputs),
        cmocka_unit_test(test_wmma_attention_pattern),
        cmocka_unit_test(test_wmma_store_needs_syncwarp),
        cmocka_unit_test(test_wmma_misuse_aborts),
    };
    return cmocka_run_group_tests_name("cuda_emu WMMA", tests, nullptr, nullptr);
}

/* Every op of the CUDA backend against the CPU backend on the same random
 * inputs, in each activation precision: fp32 (TF32 off) within 2e-5 of the
 * largest reference value, fp16 within 2.5e-3 and bf16 within 2e-2 (the
 * inputs themselves are rounded to the activation dtype, so these are a
 * few ulps of each format over a dot product); fp16 once more with the
 * plain paths in place of the fast ones (SDXL_CUDA_ATTENTION, SDXL_CUDA_GEMM).
 * Also the device side of the
 * backend: inputs of another stage's dtype, the weight cache and its
 * invalidation, out-of-memory recovery and the memory accounting.
 * CTest runs it on a GPU (label gpu; skipped without one) and under the
 * host emulator (label cuda-emu). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_test.h"
#include "opsref.h"

typedef struct {
    sd_precision precision;
    double tol;
    const char *label;
    int plain; /* SDXL_CUDA_ATTENTION=generic and SDXL_CUDA_GEMM=plain for the backend */
} precision_case;

/* fp16 runs twice: with the fast paths (the tensor-core attention for
 * 64-wide heads, biases in cuBLASLt's epilogue) and with the plain ones. */
static const precision_case CASES[] = {
    {SD_PRECISION_FP32, 2e-5, "fp32", 0},
    {SD_PRECISION_FP16, 2.5e-3, "fp16", 0},
    {SD_PRECISION_FP16, 2.5e-3, "fp16 (plain kernels)", 1},
    {SD_PRECISION_BF16, 2e-2, "bf16", 0},
};

static struct {
    sd_backend *cpu, *gpu;
    const precision_case *c;
} P;

static int group_setup(void **state)
{
    const precision_case *c = *state;
    char why[768];
    P.c = c;
    P.cpu = sd_backend_cpu_new(&(sd_cpu_options){.threads = 1});
    if (c->plain) setenv("SDXL_CUDA_ATTENTION", "generic", 1), setenv("SDXL_CUDA_GEMM", "plain", 1);
    P.gpu = cuda_test_open(c->precision, why, sizeof why);
    unsetenv("SDXL_CUDA_ATTENTION"), unsetenv("SDXL_CUDA_GEMM");
    if (!P.gpu) fprintf(stderr, "CUDA backend (%s): %s\n", c->label, why);
    if (P.gpu) sd_backend_set_stage(P.gpu, SD_STAGE_TEXT); /* fp32, fp16 or bf16 by precision */
    return P.cpu && P.gpu ? 0 : -1;
}

static int group_teardown(void **state)
{
    sd_backend_free(P.cpu);
    sd_backend_free(P.gpu);
    return 0;
}

/* ---- running one op on both backends -------------------------------------------------- */

/* Builds its inputs from host data in ctx, runs the op and returns the output. */
typedef sd_tensor *(*op_fn)(sd_backend *be, const void *ctx);

static sd_tensor *host_tensor(sd_backend *be, int ndim, const int64_t *shape, const float *data)
{
    return or_tensor(be, ndim, shape, data);
}

/* max |gpu - cpu| / max |cpu| over the op's output, against the precision's
 * tolerance times `scale`. */
static void compare(const char *what, op_fn f, const void *ctx, double scale)
{
    sd_tensor *a = f(P.cpu, ctx), *b = f(P.gpu, ctx);
    if (sd_backend_error(P.cpu)) fail_msg("%s: cpu: %s", what, sd_backend_error(P.cpu));
    if (sd_backend_error(P.gpu)) fail_msg("%s: cuda %s: %s", what, P.c->label, sd_backend_error(P.gpu));
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(sd_numel(a), sd_numel(b));
    size_t n = (size_t)sd_numel(a);
    float *ra = or_download(P.cpu, a), *rb = or_download(P.gpu, b);
    double diff = 0.0, peak = 1e-6;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(rb[i])) fail_msg("%s: cuda %s: element %zu is %g", what, P.c->label, i, rb[i]);
        diff = fmax(diff, fabs((double)ra[i] - rb[i]));
        peak = fmax(peak, fabs((double)ra[i]));
    }
    double err = diff / peak;
    printf("  %-40s %s max err %.3g (tolerance %.3g)\n", what, P.c->label, err, P.c->tol * scale);
    if (err > P.c->tol * scale) fail_msg("%s: cuda %s differs from the CPU by %g of the peak", what, P.c->label, err);
    free(ra), free(rb);
    sd_tensor_free(P.cpu, a);
    sd_tensor_free(P.gpu, b);
}

/* Frees a test weight after telling the CUDA backend: its device copy is
 * keyed by the host address, which the next test weight may reuse. */
static void drop_weight(or_weight *w)
{
    sd_backend_forget_weights(P.gpu, w->bytes, (size_t)sd_weight_numel(&w->w) * sd_dtype_size(w->w.dtype));
    or_weight_free(w);
}

static float *random_floats(uint32_t seed, size_t n, float lo, float hi)
{
    return or_random_new(&seed, n, lo, hi);
}

/* ---- linear and matmul ------------------------------------------------------------------------ */

typedef struct {
    int64_t xs[3];
    float *x;
    or_weight w, b;
    int with_bias, kn;
} linear_ctx;

static sd_tensor *run_linear(sd_backend *be, const void *vc)
{
    const linear_ctx *c = vc;
    int64_t n = c->kn ? c->w.w.shape[1] : c->w.w.shape[0];
    sd_tensor *x = host_tensor(be, 3, c->xs, c->x), *y = sd_new3(be, c->xs[0], c->xs[1], n);
    (c->kn ? sd_matmul : sd_linear)(be, y, x, &c->w.w, c->with_bias ? &c->b.w : NULL);
    sd_tensor_free(be, x);
    return y;
}

static void check_linear(const char *what, sd_dtype wt, int64_t n, int64_t k, int ndim_w, int kn, int with_bias)
{
    uint32_t seed = 7;
    linear_ctx c = {.xs = {2, 9, k}, .with_bias = with_bias, .kn = kn};
    c.x = random_floats(3, (size_t)(2 * 9 * k), -1, 1);
    int64_t shape[4] = {kn ? k : n, kn ? n : k, 1, 1};
    c.w = or_weight_random(&seed, wt, ndim_w, shape, -0.2f, 0.2f);
    c.b = or_weight_random(&seed, wt, 1, &n, -0.5f, 0.5f);
    compare(what, run_linear, &c, 1.0);
    free(c.x);
    drop_weight(&c.w), drop_weight(&c.b);
}

static void test_linear(void **state)
{
    check_linear("linear f16 weight + bias", SD_F16, 40, 48, 2, 0, 1);
    check_linear("linear f32 weight, no bias", SD_F32, 33, 70, 2, 0, 0);
    check_linear("linear bf16 weight [N,K,1,1]", SD_BF16, 24, 16, 4, 0, 1);
    check_linear("linear fp8 e4m3 weight", SD_F8_E4M3, 16, 32, 2, 0, 1);
    check_linear("matmul [K,N] f16 + bias", SD_F16, 20, 36, 2, 1, 1);
}

/* ---- convolution ------------------------------------------------------------------------------ */

typedef struct {
    int64_t xs[4], ys[4];
    float *x;
    or_weight w, b;
    int stride, pad[4];
    int with_bias;
} conv_ctx;

static sd_tensor *run_conv(sd_backend *be, const void *vc)
{
    const conv_ctx *c = vc;
    sd_tensor *x = host_tensor(be, 4, c->xs, c->x), *y = sd_tensor_new(be, 4, c->ys);
    sd_conv2d_pad(be, y, x, &c->w.w, c->with_bias ? &c->b.w : NULL, c->stride, c->pad[0], c->pad[1], c->pad[2],
                  c->pad[3]);
    sd_tensor_free(be, x);
    return y;
}

static void check_conv(const char *what, int64_t cin, int64_t cout, int k, int stride, int l, int r, int t, int b,
                       int with_bias)
{
    uint32_t seed = 11;
    conv_ctx c = {.xs = {2, cin, 9, 11}, .stride = stride, .pad = {l, r, t, b}, .with_bias = with_bias};
    c.ys[0] = 2, c.ys[1] = cout, c.ys[2] = (9 + t + b - k) / stride + 1, c.ys[3] = (11 + l + r - k) / stride + 1;
    c.x = random_floats(5, (size_t)(2 * cin * 9 * 11), -1, 1);
    int64_t ws[4] = {cout, cin, k, k};
    c.w = or_weight_random(&seed, SD_F16, 4, ws, -0.3f, 0.3f);
    c.b = or_weight_random(&seed, SD_F16, 1, &cout, -0.5f, 0.5f);
    compare(what, run_conv, &c, 1.0);
    free(c.x);
    drop_weight(&c.w), drop_weight(&c.b);
}

static void test_conv2d(void **state)
{
    check_conv("conv 3x3 stride 1 pad 1 + bias", 6, 8, 3, 1, 1, 1, 1, 1, 1);
    check_conv("conv 3x3 stride 2 pad (0,1,0,1)", 5, 7, 3, 2, 0, 1, 0, 1, 1);
    check_conv("conv 1x1, no bias", 12, 4, 1, 1, 0, 0, 0, 0, 0);
    check_conv("conv 3x3 stride 2 pad 1", 4, 6, 3, 2, 1, 1, 1, 1, 1);
}

/* ---- norms and softmax ------------------------------------------------------------------------ */

typedef struct {
    int ndim;
    int64_t shape[4];
    float *x;
    or_weight g, b;
    int groups, affine;
    sd_act act;
    int which; /* 0 group norm, 1 layer norm, 2 softmax */
} norm_ctx;

static sd_tensor *run_norm(sd_backend *be, const void *vc)
{
    const norm_ctx *c = vc;
    sd_tensor *x = host_tensor(be, c->ndim, c->shape, c->x), *y = sd_tensor_new(be, c->ndim, c->shape);
    const sd_weight *g = c->affine ? &c->g.w : NULL, *b = c->affine ? &c->b.w : NULL;
    if (c->which == 0) sd_group_norm(be, y, x, c->groups, 1e-6f, g, b, c->act);
    if (c->which == 1) sd_layer_norm(be, y, x, 1e-5f, g, b);
    if (c->which == 2) sd_softmax(be, y, x);
    sd_tensor_free(be, x);
    return y;
}

static void check_norm(const char *what, int which, int ndim, const int64_t *shape, int groups, int affine,
                       sd_act act, float lo, float hi)
{
    uint32_t seed = 13;
    norm_ctx c = {.ndim = ndim, .groups = groups, .affine = affine, .act = act, .which = which};
    memcpy(c.shape, shape, sizeof(int64_t) * (size_t)ndim);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    int64_t ch = which == 0 ? shape[1] : shape[ndim - 1];
    c.x = random_floats(17, (size_t)n, lo, hi);
    c.g = or_weight_random(&seed, SD_F16, 1, &ch, 0.5f, 1.5f);
    c.b = or_weight_random(&seed, SD_F16, 1, &ch, -0.5f, 0.5f);
    compare(what, run_norm, &c, 1.0);
    free(c.x);
    drop_weight(&c.g), drop_weight(&c.b);
}

static void test_norms(void **state)
{
    const int64_t img[4] = {2, 8, 5, 7}, seq[3] = {3, 7, 40}, rows[2] = {4, 33};
    check_norm("group norm 4 groups, affine", 0, 4, img, 4, 1, SD_ACT_NONE, -2, 3);
    check_norm("group norm + silu", 0, 4, img, 2, 1, SD_ACT_SILU, -2, 2);
    check_norm("group norm + gelu, no affine", 0, 4, img, 8, 0, SD_ACT_GELU, -2, 2);
    check_norm("group norm + quick_gelu", 0, 4, img, 1, 1, SD_ACT_QUICK_GELU, -2, 2);
    check_norm("layer norm", 1, 3, seq, 0, 1, SD_ACT_NONE, -3, 1);
    check_norm("layer norm, no affine", 1, 3, seq, 0, 0, SD_ACT_NONE, -1, 1);
    check_norm("softmax, large logits", 2, 2, rows, 0, 0, SD_ACT_NONE, -60, 90);
}

/* ---- attention ---------------------------------------------------------------------------------- */

typedef struct {
    int64_t batch, nq, nk;
    int heads, dh, causal;
    float *q, *k, *v;
} attn_ctx;

static sd_tensor *run_attention(sd_backend *be, const void *vc)
{
    const attn_ctx *c = vc;
    int64_t w = (int64_t)c->heads * c->dh;
    sd_tensor *q = host_tensor(be, 3, (int64_t[]){c->batch, c->nq, w}, c->q);
    sd_tensor *k = host_tensor(be, 3, (int64_t[]){c->batch, c->nk, w}, c->k);
    sd_tensor *v = host_tensor(be, 3, (int64_t[]){c->batch, c->nk, w}, c->v);
    sd_tensor *out = sd_new3(be, c->batch, c->nq, w);
    sd_attention(be, out, q, k, v, c->heads, c->causal);
    sd_tensor_free(be, q), sd_tensor_free(be, k), sd_tensor_free(be, v);
    return out;
}

static void check_attention(const char *what, int64_t batch, int64_t nq, int64_t nk, int heads, int dh, int causal)
{
    attn_ctx c = {.batch = batch, .nq = nq, .nk = nk, .heads = heads, .dh = dh, .causal = causal};
    size_t nqe = (size_t)(batch * nq * heads * dh), nke = (size_t)(batch * nk * heads * dh);
    c.q = random_floats(19, nqe, -2, 2), c.k = random_floats(23, nke, -2, 2), c.v = random_floats(29, nke, -1, 1);
    compare(what, run_attention, &c, 1.0);
    free(c.q), free(c.k), free(c.v);
}

static void test_attention(void **state)
{
    check_attention("attention B2 37x29 3 heads of 12", 2, 37, 29, 3, 12, 0);
    check_attention("attention 2 heads of 64, 77 keys", 1, 70, 77, 2, 64, 0);
    check_attention("attention 1 head of 512 (VAE)", 1, 40, 40, 1, 512, 0);
    check_attention("attention causal 4 heads of 8", 2, 17, 17, 4, 8, 1);
    check_attention("attention 130 keys over tiles, 1 head of 96", 1, 9, 130, 1, 96, 0);
    check_attention("attention causal 2 heads of 64, 77 tokens (CLIP)", 2, 77, 77, 2, 64, 1);
    check_attention("attention 3 heads of 64, 150 x 300 (tiles)", 1, 150, 300, 3, 64, 0);
}

/* ---- elementwise -------------------------------------------------------------------------------- */

typedef struct {
    int op; /* 0 act, 1 geglu, 2 add, 3 mul, 4 scale, 5 fill, 6 copy */
    sd_act act;
    int64_t shape[4], bshape[4];
    int ndim, bndim;
    float *a, *b;
} elem_ctx;

static sd_tensor *run_elem(sd_backend *be, const void *vc)
{
    const elem_ctx *c = vc;
    sd_tensor *a = host_tensor(be, c->ndim, c->shape, c->a), *b = NULL, *y;
    if (c->op == 1) {
        int64_t ys[4];
        memcpy(ys, c->shape, sizeof ys);
        ys[c->ndim - 1] /= 2;
        y = sd_tensor_new(be, c->ndim, ys);
        sd_geglu(be, y, a);
    } else {
        y = sd_tensor_new(be, c->ndim, c->shape);
        if (c->op == 2 || c->op == 3) b = host_tensor(be, c->bndim, c->bshape, c->b);
        switch (c->op) {
        case 0: sd_act_apply(be, y, a, c->act); break;
        case 2: sd_add(be, y, a, b); break;
        case 3: sd_mul(be, y, a, b); break;
        case 4: sd_scale(be, y, a, -0.75f); break;
        case 5: sd_fill(be, y, 3.25f); break;
        case 6: sd_copy(be, y, a); break;
        }
    }
    sd_tensor_free(be, a), sd_tensor_free(be, b);
    return y;
}

static void check_elem(const char *what, int op, sd_act act, int ndim, const int64_t *shape, int bndim,
                       const int64_t *bshape)
{
    elem_ctx c = {.op = op, .act = act, .ndim = ndim, .bndim = bndim};
    int64_t n = 1, nb = 1;
    for (int i = 0; i < ndim; i++) n *= c.shape[i] = shape[i];
    for (int i = 0; i < bndim; i++) nb *= c.bshape[i] = bshape[i];
    c.a = random_floats(31, (size_t)n, -4, 4);
    c.b = random_floats(37, (size_t)nb, -2, 2);
    compare(what, run_elem, &c, 1.0);
    free(c.a), free(c.b);
}

static void test_elementwise(void **state)
{
    const int64_t s4[4] = {2, 6, 5, 3}, seq[3] = {2, 5, 24};
    check_elem("silu", 0, SD_ACT_SILU, 4, s4, 0, NULL);
    check_elem("gelu", 0, SD_ACT_GELU, 4, s4, 0, NULL);
    check_elem("quick_gelu", 0, SD_ACT_QUICK_GELU, 3, seq, 0, NULL);
    check_elem("geglu", 1, SD_ACT_NONE, 3, seq, 0, NULL);
    check_elem("add, same shape", 2, SD_ACT_NONE, 4, s4, 4, s4);
    check_elem("add [C,1,1] over [B,C,H,W]", 2, SD_ACT_NONE, 4, s4, 3, (int64_t[]){6, 1, 1});
    check_elem("mul [B,1,1,W]", 3, SD_ACT_NONE, 4, s4, 4, (int64_t[]){2, 1, 1, 3});
    check_elem("add [1] scalar", 2, SD_ACT_NONE, 3, seq, 1, (int64_t[]){1});
    check_elem("mul [C] over rows", 3, SD_ACT_NONE, 3, seq, 1, (int64_t[]){24});
    check_elem("scale", 4, SD_ACT_NONE, 3, seq, 0, NULL);
    check_elem("fill", 5, SD_ACT_NONE, 3, seq, 0, NULL);
    check_elem("copy", 6, SD_ACT_NONE, 4, s4, 0, NULL);
}

/* ---- layout --------------------------------------------------------------------------------------- */

typedef struct {
    int op; /* 0 upsample, 1 concat, 2 slice, 3 to_tokens, 4 to_image, 5 embedding, 6 load_weight */
    int64_t xs[4], ys[4];
    int dim;
    float *x, *x2;
    or_weight table;
    int32_t ids[6];
} layout_ctx;

static sd_tensor *run_layout(sd_backend *be, const void *vc)
{
    const layout_ctx *c = vc;
    sd_tensor *y = sd_tensor_new(be, c->op == 3 ? 3 : c->op >= 5 ? 2 : 4, c->ys), *x = NULL, *x2 = NULL;
    if (c->op <= 4) x = host_tensor(be, c->op == 4 ? 3 : 4, c->xs, c->x);
    switch (c->op) {
    case 0: sd_upsample_nearest(be, y, x); break;
    case 1: {
        int64_t s2[4];
        memcpy(s2, c->xs, sizeof s2);
        s2[c->dim] = c->ys[c->dim] - c->xs[c->dim];
        x2 = host_tensor(be, 4, s2, c->x2);
        sd_concat(be, y, x, x2, c->dim);
        break;
    }
    case 2: sd_slice(be, y, x, c->dim, 1); break;
    case 3: sd_to_tokens(be, y, x); break;
    case 4: sd_to_image(be, y, x); break;
    case 5: sd_embedding(be, y, &c->table.w, c->ids, 6); break;
    case 6: sd_load_weight(be, y, &c->table.w); break;
    }
    sd_tensor_free(be, x), sd_tensor_free(be, x2);
    return y;
}

static void check_layout(const char *what, int op, const int64_t *xs, const int64_t *ys, int dim)
{
    uint32_t seed = 41;
    layout_ctx c = {.op = op, .dim = dim, .ids = {3, 0, 7, 7, 1, 9}};
    memcpy(c.xs, xs, sizeof c.xs);
    memcpy(c.ys, ys, sizeof c.ys);
    c.x = random_floats(43, (size_t)(xs[0] * xs[1] * xs[2] * xs[3]), -3, 3);
    c.x2 = random_floats(47, (size_t)(ys[0] * ys[1] * ys[2] * ys[3]), -3, 3);
    int64_t ts[2] = {10, 12};
    c.table = or_weight_random(&seed, SD_F16, 2, ts, -1, 1);
    compare(what, run_layout, &c, 1.0);
    free(c.x), free(c.x2);
    drop_weight(&c.table);
}

static void test_layout(void **state)
{
    check_layout("upsample 2x", 0, (int64_t[]){2, 3, 4, 5}, (int64_t[]){2, 3, 8, 10}, 0);
    check_layout("upsample 5x7 -> 7x9", 0, (int64_t[]){1, 2, 5, 7}, (int64_t[]){1, 2, 7, 9}, 0);
    check_layout("concat channels", 1, (int64_t[]){2, 3, 4, 5}, (int64_t[]){2, 7, 4, 5}, 1);
    check_layout("concat batch", 1, (int64_t[]){1, 3, 4, 5}, (int64_t[]){3, 3, 4, 5}, 0);
    check_layout("concat last dim", 1, (int64_t[]){2, 3, 4, 5}, (int64_t[]){2, 3, 4, 9}, 3);
    check_layout("slice channels", 2, (int64_t[]){2, 6, 4, 5}, (int64_t[]){2, 3, 4, 5}, 1);
    check_layout("slice rows", 2, (int64_t[]){2, 3, 8, 5}, (int64_t[]){2, 3, 5, 5}, 2);
    check_layout("to_tokens 40x37", 3, (int64_t[]){2, 40, 37, 1}, (int64_t[]){2, 37, 40, 1}, 0);
    check_layout("to_image 70x33", 4, (int64_t[]){2, 70, 33, 1}, (int64_t[]){2, 33, 7, 10}, 0);
    check_layout("embedding rows", 5, (int64_t[]){1, 1, 1, 1}, (int64_t[]){6, 12, 1, 1}, 0);
    check_layout("load_weight", 6, (int64_t[]){1, 1, 1, 1}, (int64_t[]){10, 12, 1, 1}, 0);
}

/* ---- the device side -------------------------------------------------------------------------- */

/* A tensor made in the VAE stage (fp32 on every precision but bf16) fed to
 * an op of the text stage: the op converts it and gives what the stage's
 * own tensors give. */
static void test_inputs_of_another_stage(void **state)
{
    uint32_t seed = 53;
    int64_t xs[3] = {2, 5, 16}, n = 8;
    float *x = random_floats(59, 2 * 5 * 16, -1, 1);
    int64_t ws[2] = {8, 16};
    or_weight w = or_weight_random(&seed, SD_F16, 2, ws, -0.5f, 0.5f);
    float *out[2];
    for (int i = 0; i < 2; i++) {
        sd_backend_set_stage(P.gpu, i ? SD_STAGE_VAE : SD_STAGE_TEXT);
        sd_tensor *tx = host_tensor(P.gpu, 3, xs, x);
        sd_backend_set_stage(P.gpu, SD_STAGE_TEXT);
        sd_tensor *ty = sd_new3(P.gpu, 2, 5, n);
        assert_int_equal(sd_linear(P.gpu, ty, tx, &w.w, NULL), 0);
        out[i] = or_download(P.gpu, ty);
        sd_tensor_free(P.gpu, tx), sd_tensor_free(P.gpu, ty);
    }
    for (int i = 0; i < 2 * 5 * 8; i++) assert_float_equal(out[0][i], out[1][i], P.c->tol * 4);
    free(out[0]), free(out[1]), free(x);
    drop_weight(&w);
}

/* The device copy of a weight is keyed by its host bytes: changed bytes are
 * seen only after sd_backend_forget_weights names them (the LoRA stack's
 * contract), and the copies' bytes are accounted. */
static void test_weight_cache_and_forget(void **state)
{
    int64_t xs[2] = {1, 4};
    float x[4] = {1, 1, 1, 1}, got;
    uint16_t bytes[4];
    float ones[4] = {1, 1, 1, 1};
    sd_narrow(SD_F16, ones, 4, bytes, 0);
    sd_weight w = {.name = "cache.weight", .dtype = SD_F16, .ndim = 2, .shape = {1, 4}, .data = bytes};
    sd_mem_stats m0, m1;
    sd_backend_mem(P.gpu, &m0);
    sd_tensor *tx = host_tensor(P.gpu, 2, xs, x), *ty = sd_new2(P.gpu, 1, 1);
    assert_int_equal(sd_linear(P.gpu, ty, tx, &w, NULL), 0);
    assert_int_equal(sd_tensor_download(P.gpu, ty, &got), 0);
    assert_float_equal(got, 4.0f, 1e-6);
    sd_backend_mem(P.gpu, &m1);
    assert_true(m1.weight_bytes >= m0.weight_bytes + 4 * sizeof(uint16_t));

    float twos[4] = {2, 2, 2, 2};
    sd_narrow(SD_F16, twos, 4, bytes, 0);
    assert_int_equal(sd_linear(P.gpu, ty, tx, &w, NULL), 0);
    assert_int_equal(sd_tensor_download(P.gpu, ty, &got), 0);
    assert_float_equal(got, 4.0f, 1e-6); /* the cached copy */
    sd_backend_forget_weights(P.gpu, bytes, sizeof bytes);
    assert_int_equal(sd_linear(P.gpu, ty, tx, &w, NULL), 0);
    assert_int_equal(sd_tensor_download(P.gpu, ty, &got), 0);
    assert_float_equal(got, 8.0f, 1e-6);
    sd_tensor_free(P.gpu, tx), sd_tensor_free(P.gpu, ty);
    sd_backend_forget_weights(P.gpu, bytes, sizeof bytes);
}

/* An allocation the device cannot hold fails with "out of memory", sticks
 * until cleared, and the backend works afterwards. */
static void test_out_of_memory_recovers(void **state)
{
    sd_tensor *huge = sd_new2(P.gpu, (int64_t)1 << 20, (int64_t)1 << 20); /* 2^40 elements */
    assert_null(huge);
    assert_non_null(sd_backend_error(P.gpu));
    assert_non_null(strstr(sd_backend_error(P.gpu), "out of memory"));
    assert_null(sd_new1(P.gpu, 4)); /* sticky */
    sd_backend_clear_error(P.gpu);
    sd_backend_trim(P.gpu);
    sd_mem_stats m;
    sd_backend_mem(P.gpu, &m);
    assert_int_equal(m.scratch_bytes, 0);
    sd_tensor *t = sd_new1(P.gpu, 4);
    float v[4];
    assert_non_null(t);
    assert_int_equal(sd_fill(P.gpu, t, 1.5f), 0);
    assert_int_equal(sd_tensor_download(P.gpu, t, v), 0);
    assert_float_equal(v[3], 1.5f, 0);
    sd_tensor_free(P.gpu, t);
    sd_backend_mem(P.gpu, &m);
    assert_true(m.device_used_peak > 0);
}

int main(void)
{
    cuda_test_require("test_cuda_ops");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_norms),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_inputs_of_another_stage),
        cmocka_unit_test(test_weight_cache_and_forget),
        cmocka_unit_test(test_out_of_memory_recovers),
    };
    int failed = 0;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        void *state = (void *)&CASES[i];
        char name[96];
        snprintf(name, sizeof name, "cuda ops, %s activations", CASES[i].label);
        P.c = &CASES[i];
        if (group_setup(&state)) return 1;
        failed += _cmocka_run_group_tests(name, tests, sizeof tests / sizeof tests[0], NULL, NULL);
        group_teardown(&state);
    }
    return failed;
}

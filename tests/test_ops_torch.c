/* The ops against torch itself (tests/data/ops_goldens.json, written by
 * tools/reference/make_ops_goldens.py from torch, diffusers' GEGLU and
 * transformers' QuickGELU): nearest upsampling to odd sizes, activations,
 * GEGLU's half order, group/layer norm, linear, conv2d with the VAE
 * encoder's asymmetric pad, and SDPA (cross and causal). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "opsref.h"
#include "sd/backend.h"
#include "testutil.h"

#define TOL 1e-5

static cJSON *gold;
static sd_backend *be;

/* A golden tensor: its shape and data as fp32. */
typedef struct {
    int ndim;
    int64_t shape[4];
    int64_t n;
    float *data;
} gtensor;

static gtensor gt(const cJSON *obj, const char *key)
{
    const cJSON *o = cJSON_GetObjectItem(obj, key), *shape = cJSON_GetObjectItem(o, "shape");
    const cJSON *data = cJSON_GetObjectItem(o, "data");
    assert_non_null(shape);
    gtensor g = {.ndim = cJSON_GetArraySize(shape), .n = 1};
    assert_true(g.ndim >= 1 && g.ndim <= 4);
    for (int i = 0; i < g.ndim; i++) g.n *= g.shape[i] = (int64_t)cJSON_GetArrayItem(shape, i)->valuedouble;
    assert_int_equal(cJSON_GetArraySize(data), g.n);
    g.data = malloc((size_t)g.n * sizeof(float));
    for (int64_t i = 0; i < g.n; i++) g.data[i] = (float)cJSON_GetArrayItem(data, (int)i)->valuedouble;
    return g;
}

static sd_tensor *upload(const gtensor *g) { return or_tensor(be, g->ndim, g->shape, g->data); }
static sd_tensor *like(const gtensor *g) { return sd_tensor_new(be, g->ndim, g->shape); }

/* An F32 sd_weight view of a golden tensor. */
static sd_weight wview(const gtensor *g)
{
    sd_weight w = {.name = "golden", .dtype = SD_F32, .ndim = g->ndim, .data = g->data};
    memcpy(w.shape, g->shape, sizeof w.shape);
    return w;
}

/* Downloads t and compares with the golden, relative to its max |value|. */
static void expect_close(const sd_tensor *t, const gtensor *want, double tol, const char *what)
{
    assert_int_equal(sd_numel(t), want->n);
    float *got = or_download(be, t);
    double *ref = malloc((size_t)want->n * sizeof *ref);
    for (int64_t i = 0; i < want->n; i++) ref[i] = want->data[i];
    double err = or_rel_err(got, ref, (size_t)want->n, 1e-30);
    if (err > tol) fail_msg("%s: rel err %g against torch", what, err);
    free(got), free(ref);
}

static int setup(void **state)
{
    gold = tu_read_json("tests/data/ops_goldens.json");
    be = sd_backend_cpu_new(NULL);
    return gold && be ? 0 : -1;
}

static int teardown(void **state)
{
    cJSON_Delete(gold);
    sd_backend_free(be);
    return 0;
}

static void test_upsample_like_torch(void **state)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(gold, "upsample")) {
        gtensor x = gt(c, "x"), y = gt(c, "y");
        sd_tensor *tx = upload(&x), *ty = like(&y);
        assert_int_equal(sd_upsample_nearest(be, ty, tx), 0);
        expect_close(ty, &y, 0.0, "upsample");   /* a copy: exact */
        sd_tensor_free(be, tx), sd_tensor_free(be, ty);
        free(x.data), free(y.data);
    }
}

static void test_activations_and_geglu_like_torch(void **state)
{
    const cJSON *a = cJSON_GetObjectItem(gold, "act");
    const char *names[] = {"gelu", "silu", "quick_gelu"};
    const sd_act acts[] = {SD_ACT_GELU, SD_ACT_SILU, SD_ACT_QUICK_GELU};
    gtensor x = gt(a, "x");
    sd_tensor *tx = upload(&x), *ty = like(&x);
    for (int i = 0; i < 3; i++) {
        gtensor want = gt(a, names[i]);
        assert_int_equal(sd_act_apply(be, ty, tx, acts[i]), 0);
        expect_close(ty, &want, TOL, names[i]);
        free(want.data);
    }
    sd_tensor_free(be, tx), sd_tensor_free(be, ty);
    free(x.data);

    const cJSON *g = cJSON_GetObjectItem(gold, "geglu");
    gtensor gx = gt(g, "x"), gw = gt(g, "w"), gb = gt(g, "b"), gy = gt(g, "y");
    sd_weight w = wview(&gw), b = wview(&gb);
    sd_tensor *in = upload(&gx), *proj = sd_new3(be, 2, 4, 6), *out = like(&gy);
    assert_int_equal(sd_linear(be, proj, in, &w, &b), 0);
    assert_int_equal(sd_geglu(be, out, proj), 0);
    expect_close(out, &gy, TOL, "diffusers GEGLU");
    sd_tensor_free(be, in), sd_tensor_free(be, proj), sd_tensor_free(be, out);
    free(gx.data), free(gw.data), free(gb.data), free(gy.data);
}

static void test_norms_like_torch(void **state)
{
    const cJSON *g = cJSON_GetObjectItem(gold, "group_norm");
    gtensor x = gt(g, "x"), w = gt(g, "w"), b = gt(g, "b"), y = gt(g, "y"), ys = gt(g, "y_silu");
    sd_weight ww = wview(&w), bw = wview(&b);
    int groups = (int)cJSON_GetObjectItem(g, "groups")->valuedouble;
    float eps = (float)cJSON_GetObjectItem(g, "eps")->valuedouble;
    sd_tensor *tx = upload(&x), *ty = like(&y);
    assert_int_equal(sd_group_norm(be, ty, tx, groups, eps, &ww, &bw, SD_ACT_NONE), 0);
    expect_close(ty, &y, TOL, "GroupNorm");
    assert_int_equal(sd_group_norm(be, ty, tx, groups, eps, &ww, &bw, SD_ACT_SILU), 0);
    expect_close(ty, &ys, TOL, "GroupNorm + SiLU");
    sd_tensor_free(be, tx), sd_tensor_free(be, ty);
    free(x.data), free(w.data), free(b.data), free(y.data), free(ys.data);

    const cJSON *l = cJSON_GetObjectItem(gold, "layer_norm");
    x = gt(l, "x"), w = gt(l, "w"), b = gt(l, "b"), y = gt(l, "y");
    ww = wview(&w), bw = wview(&b);
    tx = upload(&x), ty = like(&y);
    assert_int_equal(sd_layer_norm(be, ty, tx, (float)cJSON_GetObjectItem(l, "eps")->valuedouble, &ww, &bw), 0);
    expect_close(ty, &y, TOL, "LayerNorm");
    sd_tensor_free(be, tx), sd_tensor_free(be, ty);
    free(x.data), free(w.data), free(b.data), free(y.data);
}

static void test_linear_and_conv_like_torch(void **state)
{
    const cJSON *l = cJSON_GetObjectItem(gold, "linear");
    gtensor x = gt(l, "x"), w = gt(l, "w"), b = gt(l, "b"), y = gt(l, "y");
    sd_weight ww = wview(&w), bw = wview(&b);
    sd_tensor *tx = upload(&x), *ty = like(&y);
    assert_int_equal(sd_linear(be, ty, tx, &ww, &bw), 0);
    expect_close(ty, &y, TOL, "nn.Linear");
    sd_tensor_free(be, tx), sd_tensor_free(be, ty);
    free(x.data), free(w.data), free(b.data), free(y.data);

    const cJSON *c = cJSON_GetObjectItem(gold, "conv");
    gtensor cx = gt(c, "x"), cw = gt(c, "w"), cb = gt(c, "b"), same = gt(c, "same"), down = gt(c, "down_asym");
    ww = wview(&cw), bw = wview(&cb);
    sd_tensor *in = upload(&cx), *ys = like(&same), *yd = like(&down);
    assert_int_equal(sd_conv2d(be, ys, in, &ww, &bw, 1, 1), 0);
    expect_close(ys, &same, TOL, "conv2d 3x3 pad 1");
    assert_int_equal(sd_conv2d_pad(be, yd, in, &ww, &bw, 2, 0, 1, 0, 1), 0);
    expect_close(yd, &down, TOL, "conv2d after F.pad(0,1,0,1), stride 2");
    sd_tensor_free(be, in), sd_tensor_free(be, ys), sd_tensor_free(be, yd);
    free(cx.data), free(cw.data), free(cb.data), free(same.data), free(down.data);
}

static void test_attention_like_torch_sdpa(void **state)
{
    const cJSON *a = cJSON_GetObjectItem(gold, "sdpa");
    gtensor q = gt(a, "q"), k = gt(a, "k"), v = gt(a, "v"), y = gt(a, "y"), s = gt(a, "s"), cy = gt(a, "causal_y");
    sd_tensor *tq = upload(&q), *tk = upload(&k), *tv = upload(&v), *ty = like(&y);
    assert_int_equal(sd_attention(be, ty, tq, tk, tv, (int)cJSON_GetObjectItem(a, "heads")->valuedouble, 0), 0);
    expect_close(ty, &y, TOL, "SDPA cross");
    sd_tensor *ts = upload(&s), *tc = like(&cy);
    assert_int_equal(sd_attention(be, tc, ts, ts, ts, (int)cJSON_GetObjectItem(a, "causal_heads")->valuedouble, 1), 0);
    expect_close(tc, &cy, TOL, "SDPA causal");
    sd_tensor *all[] = {tq, tk, tv, ty, ts, tc};
    for (int i = 0; i < 6; i++) sd_tensor_free(be, all[i]);
    free(q.data), free(k.data), free(v.data), free(y.data), free(s.data), free(cy.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upsample_like_torch),
        cmocka_unit_test(test_activations_and_geglu_like_torch),
        cmocka_unit_test(test_norms_like_torch),
        cmocka_unit_test(test_linear_and_conv_like_torch),
        cmocka_unit_test(test_attention_like_torch_sdpa),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

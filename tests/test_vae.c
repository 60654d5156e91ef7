/* VAE against diffusers on the small model (tests/data/small/goldens_vae.*,
 * tools/reference/make_vae_goldens.py): decode within 1e-4 of the output's
 * max |value| and the pipeline's uint8 images within one level; encode
 * (posterior mean and logvar) within 1e-4; VaeImageProcessor's pixel
 * conversions bit-exact, including round-half-to-even edge values; the tiled
 * decode against the untiled one (several tiles, partial tiles, batch 2);
 * bad arguments give errors, not crashes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd/checkpoint.h"
#include "sd/vae.h"
#include "testutil.h"

#define SMALL "tests/data/small/"

static struct {
    st_file *model, *goldens;
    sdxl_hparams hp;
    sd_vae *vae;
    sd_backend *be;
} g;

static int setup(void **state)
{
    char err[512];
    if (sdxl_checkpoint_open(SMALL "sdxl_small.safetensors", &g.model, &g.hp, err, sizeof err) ||
        st_open(SMALL "goldens_vae.safetensors", &g.goldens, err, sizeof err) ||
        sd_vae_bind(&g.vae, g.model, &g.hp.vae, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    g.be = sd_backend_cpu_new(NULL);
    return g.be ? 0 : -1;
}

static int teardown(void **state)
{
    sd_vae_free(g.vae);
    st_close(g.model);
    st_close(g.goldens);
    sd_backend_free(g.be);
    return 0;
}

static const st_tensor *golden(const char *name)
{
    const st_tensor *t = st_find(g.goldens, name);
    if (!t) fprintf(stderr, "golden %s missing\n", name);
    assert_non_null(t);
    return t;
}

/* A backend tensor holding an F32 golden. */
static sd_tensor *upload_golden(const char *name)
{
    const st_tensor *t = golden(name);
    assert_string_equal(t->dtype_name, "F32");
    assert_int_equal(t->ndim, 4);
    sd_tensor *x = sd_new4(g.be, t->shape[0], t->shape[1], t->shape[2], t->shape[3]);
    assert_non_null(x);
    assert_int_equal(sd_tensor_upload(g.be, x, t->data), 0);
    return x;
}

static float *download(const sd_tensor *t)
{
    float *h = malloc((size_t)sd_numel(t) * sizeof *h);
    assert_non_null(h);
    assert_int_equal(sd_tensor_download(g.be, t, h), 0);
    return h;
}

/* max |a - golden| / max |golden|. */
static double rel_error(const float *a, const char *name)
{
    const st_tensor *t = golden(name);
    return tu_rel_error(a, t->data, (size_t)t->numel);
}

/* NCHW float images -> NHWC bytes, one sd_vae_to_rgb8 call per image. */
static uint8_t *to_rgb8(const float *nchw, int64_t batch, int64_t h, int64_t w)
{
    uint8_t *rgb = malloc((size_t)(batch * h * w * 3));
    assert_non_null(rgb);
    for (int64_t b = 0; b < batch; b++) sd_vae_to_rgb8(nchw + b * 3 * h * w, (int)h, (int)w, rgb + b * h * w * 3);
    return rgb;
}

static int max_level_diff(const uint8_t *a, const uint8_t *b, size_t n, size_t *differing)
{
    int d = 0;
    *differing = 0;
    for (size_t i = 0; i < n; i++) {
        int e = abs((int)a[i] - (int)b[i]);
        d = e > d ? e : d;
        *differing += e != 0;
    }
    return d;
}

static sd_tensor *decode(const sd_tensor *z, int tile)
{
    char err[512] = "";
    sd_tensor *img = sd_new4(g.be, z->shape[0], 3, z->shape[2] * 8, z->shape[3] * 8);
    int rc = tile ? sd_vae_decode_tiled(g.be, g.vae, z, img, tile, err, sizeof err)
                  : sd_vae_decode(g.be, g.vae, z, img, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    return img;
}

/* The pipeline divides the sampler's latents by the scaling factor in fp32. */
static void check_scaling(const char *c)
{
    char n1[64], n2[64];
    snprintf(n1, sizeof n1, "%s.latents", c);
    snprintf(n2, sizeof n2, "%s.z", c);
    const st_tensor *lat = golden(n1), *z = golden(n2);
    const float *a = lat->data, *b = z->data;
    for (int64_t i = 0; i < lat->numel; i++) assert_true(a[i] / SD_VAE_SCALING_FACTOR == b[i]);
}

static void decode_case(const char *c)
{
    char name[64];
    check_scaling(c);
    snprintf(name, sizeof name, "%s.z", c);
    sd_tensor *z = upload_golden(name);
    sd_tensor *img = decode(z, 0);
    float *got = download(img);
    snprintf(name, sizeof name, "%s.image", c);
    double e = rel_error(got, name);

    /* uint8: ours vs the pipeline's, and the golden floats through our post-processing. */
    int64_t B = img->shape[0], H = img->shape[2], W = img->shape[3];
    size_t n = (size_t)(B * H * W * 3), differing, exact_differing;
    snprintf(name, sizeof name, "%s.rgb8", c);
    const st_tensor *ref = golden(name);
    assert_int_equal(ref->numel, (int64_t)n);
    uint8_t *ours = to_rgb8(got, B, H, W), *theirs = to_rgb8(golden(strcat(strcpy(name, c), ".image"))->data, B, H, W);
    int levels = max_level_diff(ours, ref->data, n, &differing);
    assert_int_equal(max_level_diff(theirs, ref->data, n, &exact_differing), 0);
    printf("  %-9s decode rel %.2e, uint8 max %d level(s) off in %zu of %zu values\n", c, e, levels, differing, n);
    assert_true(e <= 1e-4);
    assert_true(levels <= 1);
    free(ours);
    free(theirs);
    free(got);
    sd_tensor_free(g.be, img);
    sd_tensor_free(g.be, z);
}

static void test_decode(void **state)
{
    decode_case("dec8");
    decode_case("dec12x16");
}

static void encode_case(const char *c)
{
    char name[64], err[512] = "";
    snprintf(name, sizeof name, "%s.x", c);
    const st_tensor *xg = golden(name);
    snprintf(name, sizeof name, "%s.rgb8", c);
    const st_tensor *rgb = golden(name);
    int64_t B = xg->shape[0], H = xg->shape[2], W = xg->shape[3];

    /* VaeImageProcessor.preprocess, bit for bit. */
    float *x = malloc((size_t)(B * 3 * H * W) * sizeof *x);
    assert_non_null(x);
    for (int64_t b = 0; b < B; b++)
        sd_vae_from_rgb8((const uint8_t *)rgb->data + b * H * W * 3, (int)H, (int)W, x + b * 3 * H * W);
    assert_memory_equal(x, xg->data, (size_t)(B * 3 * H * W) * sizeof *x);

    sd_tensor *img = sd_new4(g.be, B, 3, H, W), *mean = sd_new4(g.be, B, 4, H / 8, W / 8),
              *logvar = sd_new4(g.be, B, 4, H / 8, W / 8);
    assert_int_equal(sd_tensor_upload(g.be, img, x), 0);
    int rc = sd_vae_encode(g.be, g.vae, img, mean, logvar, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    float *m = download(mean), *lv = download(logvar);
    double em = rel_error(m, strcat(strcpy(name, c), ".mean")), el = rel_error(lv, strcat(strcpy(name, c), ".logvar"));
    printf("  %-9s encode rel: mean %.2e, logvar %.2e\n", c, em, el);
    assert_true(em <= 1e-4);
    assert_true(el <= 1e-4);
    free(m);
    free(lv);
    free(x);
    sd_tensor_free(g.be, img);
    sd_tensor_free(g.be, mean);
    sd_tensor_free(g.be, logvar);
}

static void test_encode(void **state)
{
    encode_case("enc64x96");
    encode_case("enc48x40");
}

/* Tiled vs untiled decode of the same latents: max |delta| and uint8 levels. */
static void compare_tiled(const char *what, const sd_tensor *z, int tile, double max_abs, int max_levels)
{
    sd_tensor *a = decode(z, 0), *b = decode(z, tile);
    float *fa = download(a), *fb = download(b);
    int64_t B = a->shape[0], H = a->shape[2], W = a->shape[3];
    size_t n = (size_t)sd_numel(a), differing;
    uint8_t *qa = to_rgb8(fa, B, H, W), *qb = to_rgb8(fb, B, H, W);
    double d = tu_max_abs_diff(fa, fb, n);
    int levels = max_level_diff(qa, qb, n, &differing);
    printf("  %-24s tile %2d: max |delta| %.2e, uint8 max %d level(s) off in %zu of %zu values\n", what, tile, d,
           levels, differing, n);
    assert_true(d <= max_abs);
    assert_true(levels <= max_levels);
    free(qa);
    free(qb);
    free(fa);
    free(fb);
    sd_tensor_free(g.be, a);
    sd_tensor_free(g.be, b);
}

static void test_tiled(void **state)
{
    sd_tensor *z = upload_golden("tile.z");          /* 1 x 4 x 16 x 24 */
    compare_tiled("16x24 latent, 2x3 tiles", z, 8, 2.0 / 255, 1);
    compare_tiled("16x24, partial tiles", z, 10, 2.0 / 255, 1);   /* cells 10+6 by 10+10+4 */
    compare_tiled("16x24, one tile", z, 24, 0.0, 0);  /* fits: the untiled path itself */
    sd_tensor_free(g.be, z);
    sd_tensor *z2 = upload_golden("dec12x16.z");      /* batch 2: statistics per image */
    compare_tiled("12x16 latent, batch 2", z2, 6, 2.0 / 255, 1);
    sd_tensor_free(g.be, z2);
}

/* A flat latent leaves GroupNorm groups with near-zero variance, where any
 * change of summation order is amplified: the iteration must stop, not blow up. */
static void test_tiled_flat_latent(void **state)
{
    sd_tensor *z = sd_new4(g.be, 1, 4, 8, 12);
    assert_int_equal(sd_fill(g.be, z, 0.5f), 0);
    sd_tensor *img = decode(z, 4);
    float *f = download(img);
    for (int64_t i = 0; i < sd_numel(img); i++) assert_true(isfinite(f[i]));
    free(f);
    sd_tensor_free(g.be, img);
    sd_tensor_free(g.be, z);
}

/* sd_vae_to_rgb8 = diffusers' postprocess on values at and around every exact
 * k + 0.5 in fp32 and out-of-range values; NaN gives 0; every byte survives
 * from_rgb8 -> to_rgb8. */
static void test_rgb8(void **state)
{
    const st_tensor *x = golden("rgb8edge.x"), *ref = golden("rgb8edge.rgb8");
    int n = (int)x->numel;
    float *chw = malloc(3 * (size_t)n * sizeof *chw);
    uint8_t *rgb = malloc(3 * (size_t)n);
    assert_non_null(chw);
    assert_non_null(rgb);
    for (int c = 0; c < 3; c++) memcpy(chw + c * n, x->data, (size_t)n * sizeof *chw);
    sd_vae_to_rgb8(chw, 1, n, rgb);
    for (int i = 0; i < n; i++) {
        for (int c = 0; c < 3; c++) assert_int_equal(rgb[3 * i + c], ((const uint8_t *)ref->data)[i]);
    }
    free(chw);
    free(rgb);

    float special[3] = {NAN, -NAN, 0.0f};
    uint8_t out[3];
    sd_vae_to_rgb8(special, 1, 1, out);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 0);
    assert_int_equal(out[2], 128);   /* 127.5 rounds to the even 128 */

    uint8_t all[256 * 3], back[256 * 3];
    float planes[256 * 3];
    for (int i = 0; i < 256 * 3; i++) all[i] = (uint8_t)(i / 3);
    sd_vae_from_rgb8(all, 16, 16, planes);
    sd_vae_to_rgb8(planes, 16, 16, back);
    assert_memory_equal(all, back, sizeof all);
}

static void expect_error(int rc, const char *err, const char *needle)
{
    assert_int_equal(rc, -1);
    if (!strstr(err, needle)) fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err, needle);
    assert_non_null(strstr(err, needle));
}

static void test_bad_arguments(void **state)
{
    char err[512];
    sd_tensor *z = sd_new4(g.be, 1, 4, 2, 3), *z3 = sd_new4(g.be, 1, 3, 2, 3), *img = sd_new4(g.be, 1, 3, 16, 24),
              *wrong = sd_new4(g.be, 1, 3, 16, 16), *mean = sd_new4(g.be, 1, 4, 2, 3), *lv = sd_new4(g.be, 1, 4, 2, 3),
              *odd = sd_new4(g.be, 1, 3, 12, 24);
    assert_int_equal(sd_fill(g.be, z, 0.5f), 0);
    assert_int_equal(sd_fill(g.be, img, 0.1f), 0);
    assert_int_equal(sd_fill(g.be, odd, 0.1f), 0);

    expect_error(sd_vae_decode(NULL, g.vae, z, img, err, sizeof err), err, "NULL argument");
    expect_error(sd_vae_decode(g.be, NULL, z, img, err, sizeof err), err, "NULL argument");
    expect_error(sd_vae_decode(g.be, g.vae, z, NULL, err, sizeof err), err, "NULL argument");
    expect_error(sd_vae_decode(g.be, g.vae, z3, img, err, sizeof err), err, "expected [batch, 4, h, w]");
    expect_error(sd_vae_decode(g.be, g.vae, z, wrong, err, sizeof err), err, "expected [1, 3, 16, 24]");
    expect_error(sd_vae_decode_tiled(g.be, g.vae, z, wrong, 1, err, sizeof err), err, "expected [1, 3, 16, 24]");
    expect_error(sd_vae_decode_tiled(g.be, g.vae, z, img, -1, err, sizeof err), err, "negative");
    expect_error(sd_vae_encode(g.be, g.vae, img, NULL, lv, err, sizeof err), err, "NULL argument");
    expect_error(sd_vae_encode(g.be, g.vae, odd, mean, lv, err, sizeof err), err, "multiples of 8");
    expect_error(sd_vae_encode(g.be, g.vae, img, lv, z3, err, sizeof err), err, "must be [1, 4, 2, 3]");
    assert_int_equal(sd_vae_decode(g.be, g.vae, z, img, NULL, 0), 0);   /* err may be NULL */
    assert_int_equal(sd_vae_decode_tiled(g.be, g.vae, z, img, 1, err, sizeof err), 0);   /* 1x1 tiles work */

    /* A backend failure (here a pending one) is reported, not computed through. */
    sd_tensor *bad = sd_new1(g.be, -1);
    assert_null(bad);
    assert_non_null(sd_backend_error(g.be));
    expect_error(sd_vae_decode(g.be, g.vae, z, img, err, sizeof err), err, "VAE decode: ");
    expect_error(sd_vae_decode_tiled(g.be, g.vae, z, img, 1, err, sizeof err), err, "VAE tiled decode: ");
    expect_error(sd_vae_encode(g.be, g.vae, img, mean, lv, err, sizeof err), err, "VAE encode: ");
    sd_backend_clear_error(g.be);

    /* Binding: arguments, and a file without the VAE. */
    sd_vae *v = (sd_vae *)1;
    expect_error(sd_vae_bind(&v, NULL, &g.hp.vae, err, sizeof err), err, "NULL argument");
    expect_error(sd_vae_bind(&v, g.goldens, &g.hp.vae, err, sizeof err), err,
                 "VAE weight first_stage_model.encoder.conv_in.weight is missing");
    assert_null(v);
    sdxl_vae_hparams hp = g.hp.vae;
    hp.num_res_blocks = 100;
    expect_error(sd_vae_bind(&v, g.model, &hp, err, sizeof err), err, "not supported");

    uint8_t rgb[3] = {7, 7, 7};
    float f[3] = {9, 9, 9};
    sd_vae_to_rgb8(f, 0, 1, rgb);    /* empty or negative sizes: nothing written */
    sd_vae_from_rgb8(rgb, 1, -1, f);
    sd_vae_to_rgb8(NULL, 1, 1, rgb);
    assert_int_equal(rgb[0], 7);
    assert_true(f[0] == 9.0f);

    sd_tensor *all[] = {z, z3, img, wrong, mean, lv, odd};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) sd_tensor_free(g.be, all[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_tiled),
        cmocka_unit_test(test_tiled_flat_latent),
        cmocka_unit_test(test_rgb8),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

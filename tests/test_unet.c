/* The UNet against diffusers on the small model: for every case of
 * tests/data/small/goldens_unet.json (CFG batch of 2 with different rows,
 * latents 8x8 and 12x16, timesteps 999 and 500.5, 77 and 154 context
 * tokens) sd_unet_adm_vector must give the y that add_embedding receives
 * (within 1e-6 of its max) and sd_unet_forward the eps within 1e-4 of the
 * output's max |value|, releasing every intermediate. Also: argument errors
 * are reported without touching the backend, a backend failure mid-pass
 * comes back as -1 without a crash or leak, binding names a missing weight,
 * and sd_unet_flops reproduces the spec's SDXL figures (§7.3). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "sd/checkpoint.h"
#include "sd/unet.h"
#include "testutil.h"

#define SMALL "tests/data/small/"

static struct {
    st_file *model, *goldens;
    sdxl_hparams hp;
    sd_unet *unet;
    sd_backend *be;
    cJSON *cases;
} g;

static int setup(void **state)
{
    char err[512];
    if (sdxl_checkpoint_open(SMALL "sdxl_small.safetensors", &g.model, &g.hp, err, sizeof err) ||
        st_open(SMALL "goldens_unet.safetensors", &g.goldens, err, sizeof err) ||
        sd_unet_bind(&g.unet, g.model, &g.hp.unet, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    cJSON *doc = tu_read_json(SMALL "goldens_unet.json");
    if (!doc) return -1;
    g.cases = cJSON_DetachItemFromObject(doc, "cases");
    cJSON_Delete(doc);
    g.be = sd_backend_cpu_new(NULL);
    return g.be && g.cases ? 0 : -1;
}

static int teardown(void **state)
{
    sd_unet_free(g.unet);
    st_close(g.model);
    st_close(g.goldens);
    sd_backend_free(g.be);
    cJSON_Delete(g.cases);
    return 0;
}

static const st_tensor *golden(const cJSON *c, const char *what)
{
    const cJSON *name = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "tensors"), what);
    assert_true(cJSON_IsString(name));
    const st_tensor *t = st_find(g.goldens, name->valuestring);
    assert_non_null(t);
    return t;
}

/* A backend tensor with a golden's contents. */
static sd_tensor *upload_golden(const st_tensor *t)
{
    int64_t shape[SD_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) shape[i] = t->shape[i];
    sd_tensor *x = sd_tensor_new(g.be, t->ndim, shape);
    assert_non_null(x);
    assert_int_equal(sd_tensor_upload(g.be, x, t->data), 0);
    return x;
}

/* y of every row from the golden text_embeds and time_ids. */
static float *adm_vectors(const cJSON *c, int batch)
{
    const sdxl_unet_hparams *hp = sd_unet_hparams(g.unet);
    const float *pooled = golden(c, "text_embeds")->data, *ids = golden(c, "time_ids")->data;
    float *y = malloc(sizeof(float) * (size_t)(batch * hp->adm_in_channels));
    assert_non_null(y);
    for (int b = 0; b < batch; b++)
        sd_unet_adm_vector(hp, pooled + b * hp->adm_pooled_dim, ids + b * SDXL_ADM_VALUES,
                           y + b * hp->adm_in_channels);
    return y;
}

static void test_adm_vector_matches_get_aug_embed(void **state)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, g.cases) {
        const st_tensor *want = golden(c, "y");
        float *y = adm_vectors(c, (int)want->shape[0]);
        double rel = tu_rel_error(y, want->data, (size_t)want->numel);
        printf("  %-22s y   rel err %.2e\n", cJSON_GetObjectItem(c, "name")->valuestring, rel);
        assert_true(rel <= 1e-6);
        free(y);
    }
}

static void test_forward_matches_diffusers(void **state)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, g.cases) {
        sd_mem_stats before, after;
        sd_backend_mem(g.be, &before);
        const st_tensor *want = golden(c, "eps");
        int batch = (int)want->shape[0];
        sd_tensor *x = upload_golden(golden(c, "x")), *ctx = upload_golden(golden(c, "context"));
        sd_tensor *y = sd_new2(g.be, batch, sd_unet_hparams(g.unet)->adm_in_channels);
        float *yv = adm_vectors(c, batch);
        assert_int_equal(sd_tensor_upload(g.be, y, yv), 0);
        free(yv);
        sd_tensor *eps = sd_new4(g.be, batch, want->shape[1], want->shape[2], want->shape[3]);
        float t = (float)cJSON_GetObjectItem(c, "timestep")->valuedouble;
        char err[512] = "";
        int rc = sd_unet_forward(g.be, g.unet, x, t, ctx, y, eps, err, sizeof err);
        if (rc) fprintf(stderr, "%s\n", err);
        assert_int_equal(rc, 0);
        float *out = malloc(sizeof(float) * (size_t)want->numel);
        assert_int_equal(sd_tensor_download(g.be, eps, out), 0);
        double rel = tu_rel_error(out, want->data, (size_t)want->numel);
        printf("  %-22s eps rel err %.2e\n", cJSON_GetObjectItem(c, "name")->valuestring, rel);
        assert_true(rel <= 1e-4);
        free(out);
        sd_tensor_free(g.be, x), sd_tensor_free(g.be, ctx), sd_tensor_free(g.be, y), sd_tensor_free(g.be, eps);
        sd_backend_mem(g.be, &after);
        assert_int_equal(after.live_bytes, before.live_bytes); /* every intermediate released */
    }
}

/* Tensors of a valid batch-2 call at latent h x w, for the error tests. */
typedef struct {
    sd_tensor *x, *ctx, *y, *eps;
} call_args;

static call_args make_args(int64_t h, int64_t w)
{
    const sdxl_unet_hparams *hp = sd_unet_hparams(g.unet);
    call_args a = {sd_new4(g.be, 2, hp->in_channels, h, w), sd_new3(g.be, 2, 77, hp->context_dim),
                   sd_new2(g.be, 2, hp->adm_in_channels), sd_new4(g.be, 2, hp->out_channels, h, w)};
    assert_true(a.x && a.ctx && a.y && a.eps);
    sd_fill(g.be, a.x, 0.5f), sd_fill(g.be, a.ctx, 0.1f), sd_fill(g.be, a.y, 0.0f);
    return a;
}

static void free_args(call_args *a)
{
    sd_tensor_free(g.be, a->x), sd_tensor_free(g.be, a->ctx), sd_tensor_free(g.be, a->y);
    sd_tensor_free(g.be, a->eps);
}

static void expect_arg_error(const call_args *a, float t, const char *needle)
{
    char err[512] = "";
    assert_int_equal(sd_unet_forward(g.be, g.unet, a->x, t, a->ctx, a->y, a->eps, err, sizeof err), -1);
    if (!strstr(err, needle)) fprintf(stderr, "error was: %s\n", err);
    assert_non_null(strstr(err, needle));
    assert_null(sd_backend_error(g.be)); /* refused before any op ran */
}

static void test_bad_arguments_are_refused(void **state)
{
    call_args a = make_args(8, 8);
    expect_arg_error(&a, NAN, "timestep is not finite");
    call_args swapped = {a.x, a.y, a.ctx, a.eps};
    expect_arg_error(&swapped, 1.0f, "context must be [2, n_tokens, 48]");
    call_args no_y = {a.x, a.ctx, NULL, a.eps};
    expect_arg_error(&no_y, 1.0f, "missing");
    call_args x_as_eps = {a.eps, a.ctx, a.y, a.x};
    sd_tensor_reshape(g.be, a.eps, 4, (const int64_t[]){2, 4, 4, 16});
    expect_arg_error(&x_as_eps, 1.0f, "eps must be [2, 4, 4, 16]");
    free_args(&a);
}

/* A backend failure before the pass: every op is skipped, the call returns
 * -1 with the message, nothing crashes on the NULL intermediates, nothing leaks. */
static void test_backend_failure_is_reported(void **state)
{
    call_args a = make_args(8, 8);
    sd_mem_stats before, after;
    sd_backend_mem(g.be, &before);
    assert_null(sd_tensor_new(g.be, 2, (const int64_t[]){0, 3})); /* sets the sticky error */
    char err[512] = "";
    assert_int_equal(sd_unet_forward(g.be, g.unet, a.x, 1.0f, a.ctx, a.y, a.eps, err, sizeof err), -1);
    assert_string_equal(err, sd_backend_error(g.be));
    sd_backend_mem(g.be, &after);
    assert_int_equal(after.live_bytes, before.live_bytes);
    sd_backend_clear_error(g.be);
    free_args(&a);
}

static void test_bind_names_a_missing_weight(void **state)
{
    sdxl_unet_hparams hp = g.hp.unet;
    hp.depth_mid += 1; /* one more mid-block transformer block than the file has */
    char err[512] = "";
    sd_unet *u = NULL;
    assert_int_equal(sd_unet_bind(&u, g.model, &hp, err, sizeof err), -1);
    assert_null(u);
    char want[128];
    snprintf(want, sizeof want, "model.diffusion_model.middle_block.1.transformer_blocks.%d.", g.hp.unet.depth_mid);
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, "missing"));
}

/* Spec §7.3 (MAC x 2, convs + linears + attention QK^T/AV): SDXL base at
 * latent 128^2 is 3.381 T MACs = 6.76 TFLOP, at 64^2 0.794 T MACs = 1.59 TFLOP. */
static void test_flops_match_the_spec(void **state)
{
    sdxl_unet_hparams sdxl = {.in_channels = 4, .out_channels = 4, .model_channels = 320, .num_levels = 3,
                              .channel_mult = {1, 2, 4}, .num_res_blocks = 2, .depth_down = {0, 2, 10},
                              .depth_up = {0, 2, 10}, .depth_mid = 10, .context_dim = 2048, .head_width = 64,
                              .ff_inner_mult = 4, .norm_groups = 32, .time_sinusoid_dim = 320,
                              .time_embed_dim = 1280, .adm_in_channels = 2816, .adm_pooled_dim = 1280,
                              .adm_embed_dim = 256};
    double f1024 = sd_unet_flops(&sdxl, 128, 128, 77), f512 = sd_unet_flops(&sdxl, 64, 64, 77);
    printf("  SDXL UNet: %.4f TFLOP at 1024^2, %.4f TFLOP at 512^2\n", f1024 / 1e12, f512 / 1e12);
    assert_true(fabs(f1024 / 2 / 3.381e12 - 1) < 5e-4);
    assert_true(fabs(f512 / 2 / 0.794e12 - 1) < 5e-4);
    /* Longer prompts add cross-attention work only. */
    assert_true(sd_unet_flops(&sdxl, 128, 128, 154) > f1024);
    assert_true(sd_unet_flops(sd_unet_hparams(g.unet), 8, 8, 77) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adm_vector_matches_get_aug_embed),
        cmocka_unit_test(test_forward_matches_diffusers),
        cmocka_unit_test(test_bad_arguments_are_refused),
        cmocka_unit_test(test_backend_failure_is_reported),
        cmocka_unit_test(test_bind_names_a_missing_weight),
        cmocka_unit_test(test_flops_match_the_spec),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

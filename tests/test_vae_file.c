/* A VAE of the user's choice (sd/vae_file.h, sd_engine_add_vae) on the
 * small model, against tests/data/small/goldens_vae_file.*
 * (tools/reference/make_vae_file_goldens.py):
 *   - the LDM file, the same under first_stage_model., and the diffusers file
 *     (AutoencoderKL.save_pretrained) give the same hyper-parameters, read from
 *     their shapes (narrower than the checkpoint's VAE), and byte-identical
 *     weights under the same names;
 *   - txt2img and img2img decoding (and encoding) with the chosen VAE equal
 *     diffusers' pipeline with that VAE within 2/255, from either file; the
 *     checkpoint's own VAE stays the default;
 *   - files that are not an SDXL VAE for this checkpoint are refused with a
 *     clear message: a LoRA, a checkpoint, an embedding, a text file, a VAE
 *     with 16 latent channels, one that scales by 4, one with a tensor
 *     missing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "image/decode.h"
#include "sd/vae_file.h"
#include "small_model.h"
#include "st_writer.h"
#include "testutil.h"

#define VAE_LDM SMALL "vae/vae_ldm.safetensors"
#define VAE_DIFFUSERS SMALL "vae/vae_diffusers.safetensors"

static struct {
    small_model m;
    int ldm, diffusers; /* their sd_txt2img_params.vae */
    char *dir;
} g;

static int setup(void **state)
{
    char err[1024];
    if (small_model_open(&g.m, "goldens_vae_file")) return -1;
    g.dir = tu_mkdtemp("vae-file");
    if (sd_engine_add_vae(g.m.engine, VAE_LDM, &g.ldm, err, sizeof err) ||
        sd_engine_add_vae(g.m.engine, VAE_DIFFUSERS, &g.diffusers, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    small_model_close(&g.m);
    tu_rm_rf(g.dir);
    free(g.dir);
    return 0;
}

static void open_ok(const char *path, sd_vae_file *v)
{
    char err[1024];
    int rc = sd_vae_file_open(path, v, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
}

/* The LDM file again with every name under first_stage_model. */
static char *prefixed_copy(const sd_vae_file *ldm)
{
    stw *w = stw_new();
    for (size_t i = 0; i < st_metadata_count(ldm->file); i++) {
        const char *k, *v;
        st_metadata_at(ldm->file, i, &k, &v);
        stw_meta(w, k, v);
    }
    for (size_t i = 0; i < st_count(ldm->file); i++) {
        const st_tensor *t = st_get(ldm->file, i);
        char name[400];
        snprintf(name, sizeof name, "first_stage_model.%s", t->name);
        assert_int_equal(stw_add(w, name, t->dtype_name, t->ndim, t->shape, t->data), 0);
    }
    char *path;
    assert_true(asprintf(&path, "%s/prefixed.safetensors", g.dir) > 0);
    assert_int_equal(stw_write(w, path), 0);
    stw_free(w);
    return path;
}

static void test_layouts_read_alike(void **state)
{
    sd_vae_file ldm, dif, pre;
    open_ok(VAE_LDM, &ldm);
    open_ok(VAE_DIFFUSERS, &dif);
    char *path = prefixed_copy(&ldm);
    open_ok(path, &pre);
    assert_string_equal(ldm.layout, "LDM");
    assert_string_equal(dif.layout, "diffusers");
    assert_string_equal(pre.layout, "LDM (first_stage_model.)");
    const sdxl_vae_hparams *own = &sd_engine_hparams(g.m.engine)->vae;
    assert_int_equal(ldm.hp.base_channels, 8);
    assert_int_equal(ldm.hp.num_res_blocks, 1);
    assert_int_equal(ldm.hp.channel_mult[3], 2);
    assert_int_equal(ldm.hp.norm_groups, 4);
    assert_int_equal(ldm.hp.num_levels, own->num_levels);
    assert_int_not_equal(ldm.hp.num_res_blocks, own->num_res_blocks);
    assert_int_equal(ldm.hp.mid_attn_conv, 1); /* LDM: 1x1 convs */
    assert_int_equal(dif.hp.mid_attn_conv, 0); /* diffusers: [C, C] */
    dif.hp.mid_attn_conv = 1;
    assert_memory_equal(&ldm.hp, &dif.hp, sizeof ldm.hp);
    assert_memory_equal(&ldm.hp, &pre.hp, sizeof ldm.hp);
    /* the same tensors under the same names, the mid attention reshaped only */
    assert_int_equal(st_count(dif.view), st_count(ldm.view));
    assert_int_equal(st_count(pre.view), st_count(ldm.view));
    for (size_t i = 0; i < st_count(ldm.view); i++) {
        const st_tensor *a = st_get(ldm.view, i), *b = st_find(dif.view, a->name), *c = st_find(pre.view, a->name);
        if (!b) fprintf(stderr, "diffusers file lacks %s\n", a->name);
        assert_non_null(b);
        assert_non_null(c);
        assert_int_equal(a->numel, b->numel);
        assert_memory_equal(a->data, b->data, a->nbytes);
        assert_memory_equal(a->data, c->data, a->nbytes);
    }
    printf("  %zu tensors alike in the three files\n", st_count(ldm.view));
    sd_vae_file_close(&ldm);
    sd_vae_file_close(&dif);
    sd_vae_file_close(&pre);
    free(path);
}

/* ---- parity ---------------------------------------------------------------------------------- */

static int run_case(const cJSON *c, int vae)
{
    sd_img2img_params q;
    sd_img2img_params_default(&q);
    sd_txt2img_params *p = &q.gen;
    golden_job_settings(c, p);
    p->vae = vae;
    sd_image_out out;
    char err[1024];
    bool i2i = !strcmp(json_str(c, "kind"), "img2img");
    img_rgb init = {0};
    if (i2i) {
        size_t len;
        char *bytes = tu_read_file(json_str(c, "init_image"), &len);
        assert_non_null(bytes);
        img_limits lim;
        img_limits_default(&lim);
        assert_int_equal(img_decode((const uint8_t *)bytes, len, &lim, &init, err, sizeof err), 0);
        free(bytes);
        p->schedule = json_str(c, "schedule");
        q.init_rgb = init.rgb, q.init_width = init.width, q.init_height = init.height;
        q.strength = json_num(c, "strength");
    }
    sd_status st = i2i ? sd_img2img(g.m.engine, &q, &out, err, sizeof err) : sd_txt2img(g.m.engine, p, &out, err, sizeof err);
    if (st) fprintf(stderr, "%s\n", err);
    assert_int_equal(st, SD_OK);
    size_t n = (size_t)p->width * p->height * 3;
    int worst = u8_max_abs_diff(out.rgb, small_model_golden_u8(&g.m, json_str(c, "image"), n)->data, n, NULL);
    sd_image_out_free(&out);
    img_rgb_free(&init);
    return worst;
}

static void test_chosen_vae_matches_diffusers(void **state)
{
    const cJSON *c;
    int n = 0, worst = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g.m.doc, "cases")) {
        int a = run_case(c, g.ldm), b = run_case(c, g.diffusers);
        printf("  %s %s %dx%d: LDM file %d/255, diffusers file %d/255\n", json_str(c, "kind"), json_str(c, "sampler"),
               json_int(c, "width"), json_int(c, "height"), a, b);
        worst = a > worst ? a : worst;
        worst = b > worst ? b : worst;
        n++;
    }
    assert_int_equal(n, 3);
    assert_true(worst <= 2);
    /* the checkpoint's own VAE is the default, and a long way from the chosen one's picture */
    int own = run_case(cJSON_GetArrayItem(cJSON_GetObjectItem(g.m.doc, "cases"), 0), 0);
    printf("  the checkpoint's own VAE: %d/255 from the chosen VAE's image\n", own);
    assert_true(own > 50);
}

/* The engine has exactly the two good VAEs: index 3 is refused. */
static void expect_two_vaes(void)
{
    sd_txt2img_params p;
    sd_txt2img_params_default(&p);
    p.prompt = "x";
    p.width = p.height = 64;
    p.steps = 1;
    p.vae = 3;
    sd_image_out out;
    char err[256];
    assert_int_equal(sd_txt2img(g.m.engine, &p, &out, err, sizeof err), SD_EINVALID);
    assert_string_equal(err, "vae 3 is not loaded (2 VAEs of choice)");
}

static void test_unknown_index_is_refused(void **state) { expect_two_vaes(); }

/* ---- refusals ----------------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[4];
} reshape_spec;

/* The LDM file with edits: tensors dropped by prefix, others reshaped. */
static char *variant(const char *file, const char *const *drop, size_t n_drop, const reshape_spec *reshape,
                     size_t n_reshape)
{
    sd_vae_file ldm;
    open_ok(VAE_LDM, &ldm);
    stw *w = stw_new();
    stw_meta(w, "sdxl.vae.norm_groups", "4");
    for (size_t i = 0; i < st_count(ldm.file); i++) {
        const st_tensor *t = st_get(ldm.file, i);
        assert_int_equal(stw_add(w, t->name, t->dtype_name, t->ndim, t->shape, t->data), 0);
    }
    for (size_t i = 0; i < n_drop; i++) assert_true(stw_remove_prefix(w, drop[i]) > 0);
    for (size_t i = 0; i < n_reshape; i++)
        assert_int_equal(stw_reshape(w, reshape[i].name, reshape[i].ndim, reshape[i].shape), 0);
    char *path;
    assert_true(asprintf(&path, "%s/%s", g.dir, file) > 0);
    assert_int_equal(stw_write(w, path), 0);
    stw_free(w);
    sd_vae_file_close(&ldm);
    return path;
}

static void expect_refused(const char *path, const char *expect)
{
    int index = -1;
    char err[1024] = "";
    sd_status st = sd_engine_add_vae(g.m.engine, path, &index, err, sizeof err);
    printf("  %s -> %s\n", path, err);
    assert_int_equal(st, SD_EMODEL);
    assert_int_equal(index, -1);
    if (!strstr(err, expect)) fprintf(stderr, "expected \"%s\"\n", expect);
    assert_non_null(strstr(err, expect));
}

static void test_files_that_are_not_sdxl_vaes_are_refused(void **state)
{
    static const char *const no_conv_out[] = {"decoder.conv_out."};
    static const char *const level3[] = {"encoder.down.3.", "decoder.up.3."};
    static const reshape_spec sixteen[] = {
        {"encoder.conv_out.weight", 4, {32, 16, 3, 3}}, {"encoder.conv_out.bias", 1, {32}},
        {"quant_conv.weight", 4, {32, 32, 1, 1}},       {"quant_conv.bias", 1, {32}},
        {"post_quant_conv.weight", 4, {16, 16, 1, 1}},  {"post_quant_conv.bias", 1, {16}},
        {"decoder.conv_in.weight", 4, {16, 16, 3, 3}},
    };
    char *p16 = variant("z16.safetensors", NULL, 0, sixteen, sizeof sixteen / sizeof sixteen[0]);
    char *p4 = variant("scale4.safetensors", level3, 2, NULL, 0);
    char *pmiss = variant("missing.safetensors", no_conv_out, 1, NULL, 0);
    char *text;
    assert_true(asprintf(&text, "%s/vae.safetensors", g.dir) > 0);
    assert_int_equal(tu_write_file(text, "<html>Sign in</html>", 20), 0);
    expect_refused(p16, "is a VAE with 16 latent channels (SD3 or Flux), not an SDXL VAE: this checkpoint's UNet works on 4");
    expect_refused(p4, "is a VAE that scales images by 4, not an SDXL VAE: this checkpoint's scales by 8");
    expect_refused(pmiss, "is not a usable VAE (LDM names): SDXL checkpoint is missing tensor \"decoder.conv_out.weight\"");
    expect_refused(SMALL "loras/peft_saved.safetensors", "is a LoRA, not a VAE: list it under \"loras\"");
    expect_refused(SMALL "sdxl_small.safetensors", "is an SDXL checkpoint, not a VAE");
    expect_refused(SMALL "embeddings/sks_style.safetensors", "is a textual-inversion embedding");
    expect_refused(text, "HTML page");
    expect_two_vaes(); /* nothing was added */
    free(p16), free(p4), free(pmiss), free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layouts_read_alike),
        cmocka_unit_test(test_chosen_vae_matches_diffusers),
        cmocka_unit_test(test_unknown_index_is_refused),
        cmocka_unit_test(test_files_that_are_not_sdxl_vaes_are_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

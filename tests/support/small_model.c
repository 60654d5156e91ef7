/* The small model and its golden sets for the engine tests (see small_model.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "small_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_writer.h"
#include "testutil.h"

int small_model_open(small_model *m, const char *stem)
{
    char err[512], path[256];
    sd_engine_options opts = {.device.cpu.threads = 1};
    memset(m, 0, sizeof *m);
    snprintf(path, sizeof path, SMALL "%s.safetensors", stem);
    if (sd_engine_load(SMALL "sdxl_small.safetensors", &opts, &m->engine, err, sizeof err) ||
        st_open(path, &m->goldens, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    snprintf(path, sizeof path, SMALL "%s.json", stem);
    m->doc = tu_read_json(path);
    return m->doc ? 0 : -1;
}

void small_model_close(small_model *m)
{
    sd_engine_free(m->engine);
    st_close(m->goldens);
    cJSON_Delete(m->doc);
    memset(m, 0, sizeof *m);
}

const st_tensor *small_model_golden_u8(const small_model *m, const char *name, size_t numel)
{
    const st_tensor *t = st_find(m->goldens, name);
    if (!t) fail_msg("golden %s is missing", name);
    assert_string_equal(t->dtype_name, "U8");
    assert_int_equal(t->numel, (int64_t)numel);
    return t;
}

void small_model_txt2img_ok(const small_model *m, const sd_txt2img_params *p, sd_image_out *out)
{
    char err[512] = "";
    sd_status st = sd_txt2img(m->engine, p, out, err, sizeof err);
    if (st) fail_msg("sd_txt2img (%s / %s): %s: %s", p->sampler, p->schedule, sd_status_name(st), err);
    assert_int_equal(out->batch, p->batch);
}

void golden_prompt_settings(const cJSON *o, sd_txt2img_params *p)
{
    p->prompt = json_str(o, "prompt");
    p->negative_prompt = json_str_or_null(o, "negative_prompt"); /* null: no negative (all zeros) */
    p->cfg = (float)json_num(o, "cfg");
    p->seed = strtoull(json_str(o, "seed"), NULL, 10);
    p->rng = SD_RNG_CPU;
}

void golden_job_settings(const cJSON *o, sd_txt2img_params *p)
{
    golden_prompt_settings(o, p);
    p->width = json_int(o, "width");
    p->height = json_int(o, "height");
    p->steps = json_int(o, "steps");
    p->sampler = json_str(o, "sampler");
    p->seeding = SD_BATCH_ONE_GENERATOR;
}

sd_batch_seeding golden_seeding(const cJSON *c)
{
    return strcmp(json_str(c, "seeding"), "per-image") ? SD_BATCH_ONE_GENERATOR : SD_BATCH_SEED_PER_IMAGE;
}

int u8_max_abs_diff(const uint8_t *a, const uint8_t *b, size_t n, size_t *n_diff)
{
    int worst = 0;
    size_t differing = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        differing += d != 0;
        if (d > worst) worst = d;
    }
    if (n_diff) *n_diff = differing;
    return worst;
}

int small_inpaint_model_write(const char *path)
{
    char err[512];
    st_file *base = NULL, *goldens = NULL;
    if (st_open(SMALL "sdxl_small.safetensors", &base, err, sizeof err) ||
        st_open(SMALL "goldens_inpaint.safetensors", &goldens, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        st_close(base);
        return -1;
    }
    const char *conv_in = "model.diffusion_model.input_blocks.0.0.weight";
    const st_tensor *w9 = st_find(goldens, "unet9.conv_in.weight");
    stw *w = stw_new();
    for (size_t i = 0; i < st_metadata_count(base); i++) {
        const char *k, *v;
        st_metadata_at(base, i, &k, &v);
        stw_meta(w, k, v);
    }
    int rc = w9 ? 0 : -1;
    for (size_t i = 0; !rc && i < st_count(base); i++) {
        const st_tensor *t = st_get(base, i);
        const st_tensor *src = strcmp(t->name, conv_in) ? t : w9;
        rc = stw_add(w, t->name, src->dtype_name, src->ndim, src->shape, src->data);
    }
    if (!rc) rc = stw_write(w, path);
    if (rc) fprintf(stderr, "could not write the inpainting model %s\n", path);
    stw_free(w);
    st_close(base);
    st_close(goldens);
    return rc;
}

int small_progress_step(void *ctx, int step, int total)
{
    small_progress *log = ctx;
    assert_int_equal(step, log->last + 1);
    log->calls++, log->last = step, log->total = total;
    return 0;
}

void small_expect_invalid(sd_status st, const char *err, const sd_image_out *out, const char *needle)
{
    assert_int_equal(st, SD_EINVALID);
    if (!strstr(err, needle)) fail_msg("error \"%s\" lacks \"%s\"", err, needle);
    assert_null(out->rgb);
}

int small_model_read_image(const char *path, img_rgb *out)
{
    char err[512];
    size_t len;
    char *data = tu_read_file(path, &len);
    img_limits lim;
    img_limits_default(&lim);
    int rc = !data || img_decode((const uint8_t *)data, len, &lim, out, err, sizeof err);
    if (rc) fprintf(stderr, "%s: %s\n", path, data ? err : "cannot read");
    free(data);
    return rc ? -1 : 0;
}

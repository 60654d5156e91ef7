/* The LoRA stack (sd/lora.h) on the small model:
 *   - diffusers parity of the merged weights: kohya (te1 + te2 into bigG's
 *     fused in_proj + UNet linear and LoCon conv, with alphas), kohya without
 *     alpha (diffusers block names) and PEFT (alphas and alpha_pattern from
 *     metadata) stacked at 1.5, 0.3 and -1.0 equal the weights diffusers'
 *     fuse_lora gives, within 1e-5 (tests/data/small/goldens_lora.*, made
 *     by tools/reference/make_lora_goldens.py), merged onto an fp32 copy of
 *     the checkpoint; nothing else is merged;
 *   - LoHa, LoKr (full and factored, Tucker, conv), full diffs (with bias),
 *     LoCon Tucker (lora_mid), DoRA and a "scale" tensor equal the
 *     harness's own computation of W + sum m dW within 1e-5;
 *   - on the fp16 checkpoint every merged value is the fp32 sum rounded once
 *     (within half an fp16 ulp), stored as F16;
 *   - switching: the same set again rebuilds nothing; a scale change
 *     rebuilds only that LoRA's tensors; A -> B -> A is bit-identical; the
 *     empty set restores the checkpoint's own weights;
 *   - te/unet multipliers apply to their layers only, 0 drops a LoRA, a
 *     path given twice sums its multipliers;
 *   - every spelling of a layer (kohya SGM and diffusers names, lora_te_,
 *     PEFT, old diffusers to_q_lora, text encoders without alpha) lands on
 *     the right rows, against a direct computation here;
 *   - accounting: modules, matches, tensors, unmatched keys listed;
 *   - malformed inputs (truncated, inconsistent shapes, shapes of another
 *     model, an SD 1.5 LoRA, a checkpoint as a LoRA, no tensors, a missing
 *     file, bad metadata, zero-size dimensions next to huge ones) are clear
 *     errors that leave the active set as it was, and the next apply works;
 *   - networks bound after an apply read the merged buffers (bigG's q/k/v
 *     as row blocks of the merged in_proj), and the checkpoint's mapping
 *     again after the empty set;
 *   - LoRAs saved by diffusers' save_lora_weights in both training-script
 *     layouts equal diffusers' fuse_lora; every file diffusers loads is
 *     recognised as a LoRA;
 *   - <lora:NAME> lookup by configured name or file stem. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "sd/lora.h"
#include "sd/text_encoder.h"
#include "st_writer.h"
#include "testutil.h"

#define SMALL "tests/data/small/"
#define LORAS SMALL "loras/"
#define TE1 "conditioner.embedders.0.transformer.text_model."
#define TE2 "conditioner.embedders.1.model."
#define UNET "model.diffusion_model."

static struct {
    char *dir;         /* temp dir */
    char *fp32_path;   /* fp32 copy of the small checkpoint */
    st_file *ckpt16, *ckpt32, *goldens;
    sdxl_hparams hp;
    cJSON *doc;
} g;

/* ---- fixtures ------------------------------------------------------------------------- */

static int write_fp32_copy(const st_file *f, const char *path)
{
    stw *w = stw_new();
    for (size_t i = 0; i < st_metadata_count(f); i++) {
        const char *k, *v;
        st_metadata_at(f, i, &k, &v);
        stw_meta(w, k, v);
    }
    int rc = 0;
    for (size_t i = 0; i < st_count(f) && !rc; i++) {
        const st_tensor *t = st_get(f, i);
        if (!t->is_float) {
            rc = stw_add(w, t->name, t->dtype_name, t->ndim, t->shape, t->data);
            continue;
        }
        float *v = malloc(((size_t)t->numel + 1) * sizeof *v);
        sd_widen(t->dtype, t->data, 0, (size_t)t->numel, v);
        rc = stw_add_f32(w, t->name, "F32", t->ndim, t->shape, v);
        free(v);
    }
    rc = rc ? rc : stw_write(w, path);
    stw_free(w);
    return rc;
}

static st_file *open_ckpt(const char *path)
{
    st_file *f;
    char err[512];
    if (sdxl_checkpoint_open(path, &f, &g.hp, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return NULL;
    }
    return f;
}

static int setup(void **state)
{
    (void)state;
    char err[512];
    g.dir = tu_mkdtemp("lora");
    if (!(g.ckpt16 = open_ckpt(SMALL "sdxl_small.safetensors"))) return -1;
    if (asprintf(&g.fp32_path, "%s/small_fp32.safetensors", g.dir) < 0 || write_fp32_copy(g.ckpt16, g.fp32_path))
        return -1;
    if (!(g.ckpt32 = open_ckpt(g.fp32_path))) return -1;
    if (st_open(SMALL "goldens_lora.safetensors", &g.goldens, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    char *text = tu_read_file(SMALL "goldens_lora.json", NULL);
    g.doc = text ? cJSON_Parse(text) : NULL;
    free(text);
    return g.doc ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    st_close(g.ckpt16);
    st_close(g.ckpt32);
    st_close(g.goldens);
    cJSON_Delete(g.doc);
    tu_rm_rf(g.dir);
    free(g.dir);
    free(g.fp32_path);
    return 0;
}

static sd_lora_stack *new_stack(const st_file *ckpt)
{
    char err[256];
    sd_lora_stack *s = sd_lora_stack_new(ckpt, &g.hp, err, sizeof err);
    if (!s) fprintf(stderr, "%s\n", err);
    assert_non_null(s);
    return s;
}

static void apply_ok(sd_lora_stack *s, const sd_lora_spec *specs, size_t n, sd_lora_report *r)
{
    char err[1024] = "";
    sd_lora_status st = sd_lora_stack_apply(s, specs, n, r, err, sizeof err);
    if (st) fprintf(stderr, "apply: %s: %s\n", sd_lora_status_name(st), err);
    assert_int_equal(st, SD_LORA_OK);
}

static sd_lora_spec spec(const char *path, float mult)
{
    return (sd_lora_spec){.path = path, .te_multiplier = mult, .unet_multiplier = mult};
}

/* The specs of a golden set ("stack" or "lyco"); paths live in the JSON. */
static size_t golden_specs(const char *set, sd_lora_spec *out, size_t max)
{
    const cJSON *arr = cJSON_GetObjectItem(g.doc, set), *e;
    size_t n = 0;
    cJSON_ArrayForEach(e, arr) {
        assert_true(n < max);
        out[n++] = spec(cJSON_GetObjectItem(e, "file")->valuestring,
                        (float)cJSON_GetObjectItem(e, "multiplier")->valuedouble);
    }
    return n;
}

static const sd_weight *merged(const sd_lora_stack *s, const char *name)
{
    return sd_overlay_get(sd_lora_stack_overlay(s), name);
}

static float *widen_weight(const sd_weight *w, size_t *n)
{
    *n = (size_t)sd_weight_numel(w);
    float *v = malloc((*n + 1) * sizeof *v);
    sd_widen(w->dtype, w->data, 0, *n, v);
    return v;
}

static float *widen_tensor(const st_tensor *t, size_t *n)
{
    sd_weight w;
    char err[128];
    assert_int_equal(st_weight(t, &w, err, sizeof err), 0);
    return widen_weight(&w, n);
}

/* ---- parity with the goldens ----------------------------------------------------------- */

/* Every "<prefix>.<name>" golden equals the merged weight within tol, and
 * the merged tensors are exactly the goldens' tensors. */
static void expect_goldens(const sd_lora_stack *s, const char *prefix, const char *list, double tol)
{
    const cJSON *names = cJSON_GetObjectItem(g.doc, list), *e;
    size_t count = 0;
    double worst = 0;
    cJSON_ArrayForEach(e, names) {
        char key[400];
        snprintf(key, sizeof key, "%s.%s", prefix, e->valuestring);
        const st_tensor *gold = st_find(g.goldens, key);
        const sd_weight *w = merged(s, e->valuestring);
        if (!w) fprintf(stderr, "not merged: %s\n", e->valuestring);
        assert_non_null(gold);
        assert_non_null(w);
        size_t n, ng;
        float *a = widen_weight(w, &n), *b = widen_tensor(gold, &ng);
        assert_int_equal(n, ng);
        for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
        free(a);
        free(b);
        count++;
    }
    printf("%s: %zu tensors, max |diff| %.3g\n", prefix, count, worst);
    assert_true(worst <= tol);
    assert_int_equal(sd_overlay_count(sd_lora_stack_overlay(s)), count);
}

static void test_stack_matches_diffusers(void **state)
{
    (void)state;
    sd_lora_spec specs[3];
    size_t n = golden_specs("stack", specs, 3);
    assert_int_equal(n, 3);
    sd_lora_stack *s = new_stack(g.ckpt32);
    sd_lora_report r;
    apply_ok(s, specs, n, &r);
    expect_goldens(s, "stack", "stack_tensors", 1e-5);
    /* accounting: every module of every file landed */
    const cJSON *e;
    size_t i = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(g.doc, "stack")) {
        assert_string_equal(r.loras[i].name, cJSON_GetObjectItem(e, "name")->valuestring);
        assert_int_equal(r.loras[i].modules, cJSON_GetObjectItem(e, "modules")->valueint);
        assert_int_equal(r.loras[i].modules_matched, r.loras[i].modules);
        assert_int_equal(r.loras[i].tensors, cJSON_GetObjectItem(e, "tensors_touched")->valueint);
        assert_int_equal(r.loras[i].n_unmatched, 0);
        i++;
    }
    assert_non_null(strstr(r.loras[0].format, "kohya LoRA + LoCon"));
    assert_string_equal(r.loras[2].format, "diffusers/PEFT LoRA");
    assert_int_equal(r.tensors_rebuilt, r.tensors_merged);
    assert_int_equal(r.tensors_merged, (size_t)cJSON_GetArraySize(cJSON_GetObjectItem(g.doc, "stack_tensors")));
    sd_lora_report_free(&r);
    sd_lora_stack_free(s);
}

static void test_lycoris_matches_harness(void **state)
{
    (void)state;
    sd_lora_spec specs[8];
    size_t n = golden_specs("lyco", specs, 8);
    sd_lora_stack *s = new_stack(g.ckpt32);
    sd_lora_report r;
    apply_ok(s, specs, n, &r);
    expect_goldens(s, "lyco", "lyco_tensors", 1e-5);
    const char *formats[] = {"LyCORIS LoHa (Tucker)", "LyCORIS LoKr (Tucker)", "LyCORIS full diff",
                             "kohya LoRA + LoCon (Tucker)", "kohya LoRA + LoCon + DoRA"};
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(r.loras[i].format, formats[i]);
        assert_int_equal(r.loras[i].n_unmatched, 0);
    }
    sd_lora_report_free(&r);
    sd_lora_stack_free(s);
}

/* fp16 checkpoint: merged = fp32 sum rounded once to fp16. */
static void test_fp16_rounds_once(void **state)
{
    (void)state;
    sd_lora_spec specs[8];
    size_t n = golden_specs("lyco", specs, 8);
    sd_lora_stack *s = new_stack(g.ckpt16);
    apply_ok(s, specs, n, NULL);
    const cJSON *e;
    size_t checked = 0, exact = 0, total = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(g.doc, "lyco_tensors")) {
        char key[400];
        snprintf(key, sizeof key, "lyco.%s", e->valuestring);
        const sd_weight *w = merged(s, e->valuestring);
        assert_non_null(w);
        assert_int_equal(w->dtype, SD_F16);
        size_t nm, ng;
        float *a = widen_weight(w, &nm), *b = widen_tensor(st_find(g.goldens, key), &ng);
        for (size_t i = 0; i < nm; i++) {
            float rounded = sd_f16_to_f32(sd_f32_to_f16(b[i]));
            float ulp = fabsf(sd_f16_to_f32(sd_f32_to_f16(b[i]) + 1) - rounded);
            assert_true(fabsf(a[i] - b[i]) <= 0.5f * ulp + 1e-6f);
            exact += a[i] == rounded;
        }
        total += nm;
        free(a);
        free(b);
        checked++;
    }
    printf("fp16: %zu tensors, %zu of %zu values equal to the rounded golden\n", checked, exact, total);
    assert_true(exact >= total - total / 1000);
    sd_lora_stack_free(s);
}

/* ---- switching ------------------------------------------------------------------------------ */

typedef struct {
    char **names;
    void **bytes;
    size_t *len, n;
} snapshot;

static void take_snapshot(const sd_lora_stack *s, const cJSON *names, snapshot *snap)
{
    size_t n = (size_t)cJSON_GetArraySize(names);
    snap->names = calloc(n, sizeof *snap->names);
    snap->bytes = calloc(n, sizeof *snap->bytes);
    snap->len = calloc(n, sizeof *snap->len);
    snap->n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, names) {
        const sd_weight *w = merged(s, e->valuestring);
        assert_non_null(w);
        size_t len = (size_t)sd_weight_numel(w) * sd_dtype_size(w->dtype);
        snap->names[snap->n] = e->valuestring;
        snap->bytes[snap->n] = malloc(len);
        memcpy(snap->bytes[snap->n], w->data, len);
        snap->len[snap->n++] = len;
    }
}

static void expect_snapshot(const sd_lora_stack *s, const snapshot *snap)
{
    for (size_t i = 0; i < snap->n; i++) {
        const sd_weight *w = merged(s, snap->names[i]);
        assert_non_null(w);
        assert_memory_equal(w->data, snap->bytes[i], snap->len[i]);
    }
}

static void free_snapshot(snapshot *snap)
{
    for (size_t i = 0; i < snap->n; i++) free(snap->bytes[i]);
    free(snap->bytes);
    free(snap->names);
    free(snap->len);
}

static void test_switching_is_bit_identical(void **state)
{
    (void)state;
    sd_lora_spec a[3];
    golden_specs("stack", a, 3);
    sd_lora_stack *s = new_stack(g.ckpt16);
    sd_lora_report r;
    apply_ok(s, a, 3, &r);
    size_t all = r.tensors_merged;
    sd_lora_report_free(&r);
    snapshot snap;
    take_snapshot(s, cJSON_GetObjectItem(g.doc, "stack_tensors"), &snap);
    uint64_t gen = sd_lora_stack_generation(s);

    apply_ok(s, a, 3, &r); /* the same set: nothing to do */
    assert_int_equal(r.tensors_rebuilt, 0);
    assert_int_equal(r.tensors_restored, 0);
    assert_true(sd_lora_stack_generation(s) == gen);
    sd_lora_report_free(&r);

    sd_lora_spec b[3] = {a[0], a[1], a[2]};
    b[1].te_multiplier = b[1].unet_multiplier = 0.7f; /* kohya_noalpha: 6 UNet tensors */
    apply_ok(s, b, 3, &r);
    assert_int_equal(r.tensors_rebuilt, 6);
    assert_int_equal(r.tensors_merged, all);
    assert_true(sd_lora_stack_generation(s) != gen);
    sd_lora_report_free(&r);

    apply_ok(s, a, 3, &r); /* back to A */
    assert_int_equal(r.tensors_rebuilt, 6);
    expect_snapshot(s, &snap);
    sd_lora_report_free(&r);

    sd_lora_spec drop[2] = {a[0], a[2]}; /* without kohya_noalpha, then with it again */
    apply_ok(s, drop, 2, &r);
    assert_true(r.tensors_restored > 0);
    sd_lora_report_free(&r);
    apply_ok(s, a, 3, &r);
    expect_snapshot(s, &snap);
    sd_lora_report_free(&r);

    apply_ok(s, NULL, 0, &r); /* no LoRA: the checkpoint's own weights */
    assert_int_equal(r.tensors_merged, 0);
    assert_int_equal(r.tensors_restored, all);
    assert_int_equal(r.n, 0);
    assert_int_equal(sd_overlay_count(sd_lora_stack_overlay(s)), 0);
    sd_lora_report_free(&r);

    apply_ok(s, a, 3, NULL);
    expect_snapshot(s, &snap);
    free_snapshot(&snap);
    sd_lora_stack_free(s);
}

static void test_multipliers(void **state)
{
    (void)state;
    sd_lora_stack *s = new_stack(g.ckpt16);
    sd_lora_spec only_unet = {.path = LORAS "kohya_full.safetensors", .te_multiplier = 0, .unet_multiplier = 1};
    sd_lora_report r;
    apply_ok(s, &only_unet, 1, &r);
    /* kohya_full changes 28 tensors: CLIP-L 5, bigG 4 (q, k, v share in_proj), UNet 19 */
    assert_int_equal(r.tensors_merged, 19);
    assert_null(merged(s, TE1 "encoder.layers.0.self_attn.q_proj.weight"));
    assert_non_null(merged(s, UNET "input_blocks.0.0.weight"));
    sd_lora_report_free(&r);

    sd_lora_spec only_te = {.path = LORAS "kohya_full.safetensors", .te_multiplier = 1, .unet_multiplier = 0};
    apply_ok(s, &only_te, 1, &r);
    assert_int_equal(r.tensors_merged, 9);
    assert_null(merged(s, UNET "input_blocks.0.0.weight"));
    assert_non_null(merged(s, TE2 "transformer.resblocks.0.attn.in_proj_weight"));
    sd_lora_report_free(&r);

    /* a path given twice is one LoRA with the multipliers summed */
    sd_lora_spec twice[2] = {spec(LORAS "peft.safetensors", 1.0f), spec(LORAS "peft.safetensors", 0.5f)};
    apply_ok(s, twice, 2, &r);
    assert_int_equal(r.n, 1);
    assert_true(r.loras[0].te_multiplier == 1.5f);
    sd_lora_report_free(&r);
    snapshot snap;
    cJSON *names = cJSON_CreateArray();
    cJSON_AddItemToArray(names, cJSON_CreateString(UNET "input_blocks.5.1.transformer_blocks.0.attn1.to_k.weight"));
    cJSON_AddItemToArray(names, cJSON_CreateString(TE2 "transformer.resblocks.1.attn.in_proj_weight"));
    take_snapshot(s, names, &snap);
    sd_lora_spec once = spec(LORAS "peft.safetensors", 1.5f);
    apply_ok(s, NULL, 0, NULL);
    apply_ok(s, &once, 1, NULL);
    expect_snapshot(s, &snap);
    free_snapshot(&snap);
    cJSON_Delete(names);

    /* multiplier 0: in the set, changes nothing */
    sd_lora_spec zero = spec(LORAS "peft.safetensors", 0.0f);
    apply_ok(s, &zero, 1, &r);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.tensors_merged, 0);
    sd_lora_report_free(&r);
    sd_lora_stack_free(s);
}

/* ---- spellings, against a direct computation ---------------------------------------------- */

/* A plain LoRA module in any naming, with its expected effect. */
typedef struct {
    const char *key;    /* module name as written in the file */
    const char *target; /* checkpoint tensor */
    int64_t row0, rows, cols;
    int rank;
    float alpha;        /* <= 0: no alpha tensor */
    const char *down_suffix, *up_suffix;
} plain_case;

static float value_at(int seed, int64_t i)
{
    return (float)(((seed * 7919 + i * 104729) % 2001) - 1000) / 4000.0f;
}

static void add_plain(stw *w, const plain_case *c, int seed)
{
    int64_t r = c->rank, dn = r * c->cols, un = c->rows * r;
    float *down = malloc((size_t)dn * sizeof *down), *up = malloc((size_t)un * sizeof *up);
    for (int64_t i = 0; i < dn; i++) down[i] = value_at(seed, i);
    for (int64_t i = 0; i < un; i++) up[i] = value_at(seed + 1, i);
    char name[400];
    snprintf(name, sizeof name, "%s%s", c->key, c->down_suffix);
    stw_add_f32(w, name, "F16", 2, (int64_t[]){r, c->cols}, down);
    snprintf(name, sizeof name, "%s%s", c->key, c->up_suffix);
    stw_add_f32(w, name, "F16", 2, (int64_t[]){c->rows, r}, up);
    if (c->alpha > 0) {
        snprintf(name, sizeof name, "%s.alpha", c->key);
        stw_add_f32(w, name, "F32", 0, NULL, &c->alpha);
    }
    free(down);
    free(up);
}

/* merged == original + mult * scale * up @ down on the case's rows, and the
 * other rows untouched (fp32 checkpoint). */
static void expect_plain(const sd_lora_stack *s, const plain_case *c, int seed, float mult, float scale)
{
    const sd_weight *w = merged(s, c->target);
    if (!w) fprintf(stderr, "%s not merged\n", c->key);
    assert_non_null(w);
    size_t n, no;
    float *got = widen_weight(w, &n), *orig = widen_tensor(st_find(g.ckpt32, c->target), &no);
    int64_t r = c->rank;
    double worst = 0;
    for (int64_t o = 0; o < (int64_t)(n / (size_t)c->cols); o++)
        for (int64_t i = 0; i < c->cols; i++) {
            double want = orig[o * c->cols + i];
            if (o >= c->row0 && o < c->row0 + c->rows) {
                double acc = 0;
                for (int64_t k = 0; k < r; k++)
                    acc += (double)sd_f16_to_f32(sd_f32_to_f16(value_at(seed + 1, (o - c->row0) * r + k))) *
                           sd_f16_to_f32(sd_f32_to_f16(value_at(seed, k * c->cols + i)));
                want += mult * scale * acc;
            }
            worst = fmax(worst, fabs(got[o * c->cols + i] - want));
        }
    if (worst > 1e-5) fprintf(stderr, "%s: max diff %g\n", c->key, worst);
    assert_true(worst <= 1e-5);
    free(got);
    free(orig);
}

static char *write_lora(const char *file, stw *w)
{
    char *path;
    assert_true(asprintf(&path, "%s/%s", g.dir, file) > 0);
    assert_int_equal(stw_write(w, path), 0);
    stw_free(w);
    return path;
}

static void test_spellings_land_on_the_right_rows(void **state)
{
    (void)state;
    const plain_case cases[] = {
        /* kohya, text encoders without alpha (diffusers cannot load these) */
        {"lora_te1_text_model_encoder_layers_2_self_attn_k_proj", TE1 "encoder.layers.2.self_attn.k_proj.weight",
         0, 16, 16, 2, 0, ".lora_down.weight", ".lora_up.weight"},
        {"lora_te2_text_model_encoder_layers_1_self_attn_v_proj", TE2 "transformer.resblocks.1.attn.in_proj_weight",
         64, 32, 32, 3, 0, ".lora_down.weight", ".lora_up.weight"},
        {"lora_te2_text_model_encoder_layers_1_self_attn_q_proj", TE2 "transformer.resblocks.1.attn.in_proj_weight",
         0, 32, 32, 2, 4, ".lora_down.weight", ".lora_up.weight"},
        {"lora_te2_text_model_encoder_layers_3_mlp_fc2", TE2 "transformer.resblocks.3.mlp.c_proj.weight",
         0, 32, 128, 2, 1, ".lora_down.weight", ".lora_up.weight"},
        /* lora_te_ as CLIP-L */
        {"lora_te_text_model_encoder_layers_1_mlp_fc1", TE1 "encoder.layers.1.mlp.fc1.weight", 0, 64, 16, 2, 1,
         ".lora_down.weight", ".lora_up.weight"},
        /* the SGM and the diffusers spelling of UNet layers in one file */
        {"lora_unet_input_blocks_5_1_transformer_blocks_0_attn2_to_k",
         UNET "input_blocks.5.1.transformer_blocks.0.attn2.to_k.weight", 0, 24, 48, 2, 1, ".lora_down.weight",
         ".lora_up.weight"},
        {"lora_unet_up_blocks_0_attentions_1_transformer_blocks_0_attn1_to_out_0",
         UNET "output_blocks.1.1.transformer_blocks.0.attn1.to_out.0.weight", 0, 48, 48, 3, 6, ".lora_down.weight",
         ".lora_up.weight"},
        {"lora_unet_mid_block_resnets_1_time_emb_proj", UNET "middle_block.2.emb_layers.1.weight", 0, 48, 48, 2, 0,
         ".lora_down.weight", ".lora_up.weight"},
        /* PEFT-style and old diffusers attention-processor names */
        {"unet.down_blocks.2.attentions.1.transformer_blocks.1.attn2.to_out.0",
         UNET "input_blocks.8.1.transformer_blocks.1.attn2.to_out.0.weight", 0, 48, 48, 2, 0, ".lora_A.weight",
         ".lora_B.weight"},
        {"unet.up_blocks.1.attentions.2.transformer_blocks.1.attn2.processor.to_v",
         UNET "output_blocks.5.1.transformer_blocks.1.attn2.to_v.weight", 0, 24, 48, 2, 0, "_lora.down.weight",
         "_lora.up.weight"},
        {"unet.up_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_out",
         UNET "output_blocks.0.1.transformer_blocks.0.attn1.to_out.0.weight", 0, 48, 48, 2, 0, "_lora.down.weight",
         "_lora.up.weight"},
        {"text_encoder_2.text_model.encoder.layers.0.self_attn.to_k",
         TE2 "transformer.resblocks.0.attn.in_proj_weight", 32, 32, 32, 2, 0, "_lora.down.weight",
         "_lora.up.weight"},
        {"text_encoder.text_model.encoder.layers.0.mlp.fc1", TE1 "encoder.layers.0.mlp.fc1.weight", 0, 64, 16, 2, 0,
         ".lora_linear_layer.down.weight", ".lora_linear_layer.up.weight"},
        /* train_dreambooth_lora_sdxl.py's UNet spelling; text encoders as transformers 5 names them */
        {"unet.down_blocks.1.attentions.1.transformer_blocks.2.attn1.to_v",
         UNET "input_blocks.5.1.transformer_blocks.2.attn1.to_v.weight", 0, 24, 24, 2, 0, ".lora.down.weight",
         ".lora.up.weight"},
        {"text_encoder.encoder.layers.2.self_attn.out_proj", TE1 "encoder.layers.2.self_attn.out_proj.weight", 0, 16,
         16, 2, 0, ".lora_A.weight", ".lora_B.weight"},
        {"text_encoder_2.encoder.layers.2.self_attn.v_proj", TE2 "transformer.resblocks.2.attn.in_proj_weight", 64,
         32, 32, 3, 0, ".lora_linear_layer.down.weight", ".lora_linear_layer.up.weight"},
    };
    size_t n = sizeof cases / sizeof cases[0];
    stw *w = stw_new();
    for (size_t i = 0; i < n; i++) add_plain(w, &cases[i], (int)i * 3 + 1);
    char *path = write_lora("spellings.safetensors", w);
    sd_lora_stack *s = new_stack(g.ckpt32);
    sd_lora_spec sp = {.path = path, .te_multiplier = 0.75f, .unet_multiplier = -1.25f};
    sd_lora_report r;
    apply_ok(s, &sp, 1, &r);
    assert_int_equal(r.loras[0].modules, n);
    assert_int_equal(r.loras[0].modules_matched, n);
    assert_int_equal(r.loras[0].n_unmatched, 0);
    assert_string_equal(r.loras[0].format, "kohya + PEFT LoRA");
    assert_string_equal(r.loras[0].name, "spellings");
    sd_lora_report_free(&r);
    /* cases 1 and 2 are row blocks of one tensor: checked one at a time below */
    for (size_t i = 0; i < n; i++) {
        float mult = strstr(cases[i].target, "diffusion_model") ? -1.25f : 0.75f;
        float scale = cases[i].alpha > 0 ? cases[i].alpha / (float)cases[i].rank : 1.0f;
        if (i != 1 && i != 2) expect_plain(s, &cases[i], (int)i * 3 + 1, mult, scale);
    }
    sd_lora_stack_free(s);
    for (size_t i = 1; i <= 2; i++) {
        stw *one = stw_new();
        add_plain(one, &cases[i], (int)i * 3 + 1);
        char *p = write_lora("qkv.safetensors", one);
        s = new_stack(g.ckpt32);
        sd_lora_spec single = spec(p, 0.5f);
        apply_ok(s, &single, 1, NULL);
        expect_plain(s, &cases[i], (int)i * 3 + 1, 0.5f, cases[i].alpha > 0 ? cases[i].alpha / cases[i].rank : 1);
        sd_lora_stack_free(s);
        free(p);
    }
    free(path);
}

/* LoRAs written by diffusers' save_lora_weights from a PEFT adapter, in the
 * two layouts of its training scripts (lora_A/lora_B as PEFT gives them; the
 * .lora.down/.lora_linear_layer.down of train_dreambooth_lora_sdxl.py): each
 * on its own equals diffusers' fuse_lora, with the alphas and patterns of
 * its lora_adapter_metadata. */
static void test_saved_layouts_match_diffusers(void **state)
{
    (void)state;
    const cJSON *e;
    size_t layouts = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(g.doc, "saved")) {
        sd_lora_spec sp = spec(cJSON_GetObjectItem(e, "file")->valuestring,
                               (float)cJSON_GetObjectItem(e, "multiplier")->valuedouble);
        sd_lora_stack *s = new_stack(g.ckpt32);
        sd_lora_report r;
        apply_ok(s, &sp, 1, &r);
        printf("%s: ", cJSON_GetObjectItem(e, "name")->valuestring);
        expect_goldens(s, "saved", "saved_tensors", 1e-5);
        assert_int_equal(r.loras[0].modules, cJSON_GetObjectItem(e, "modules")->valueint);
        assert_int_equal(r.loras[0].modules_matched, r.loras[0].modules);
        assert_int_equal(r.loras[0].tensors, cJSON_GetObjectItem(e, "tensors_touched")->valueint);
        assert_int_equal(r.loras[0].n_unmatched, 0);
        assert_string_equal(r.loras[0].format, "diffusers/PEFT LoRA");
        sd_lora_report_free(&r);
        sd_lora_stack_free(s);
        layouts++;
    }
    assert_int_equal(layouts, 2);
}

/* Every LoRA file diffusers' load_lora_weights reads is recognised as a
 * LoRA (never as a UNet or a text encoder) and lands whole. */
static void test_diffusers_layouts_are_recognised(void **state)
{
    (void)state;
    const cJSON *e;
    size_t files = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(g.doc, "diffusers_loadable")) {
        st_file *f;
        char err[512], what[400];
        assert_int_equal(st_open(e->valuestring, &f, err, sizeof err), 0);
        ckpt_kind kind = ckpt_identify(f, what, sizeof what);
        if (kind != CKPT_LORA) fprintf(stderr, "%s: %s\n", e->valuestring, what);
        assert_int_equal(kind, CKPT_LORA);
        st_close(f);
        sd_lora_stack *s = new_stack(g.ckpt16);
        sd_lora_spec sp = spec(e->valuestring, 1.0f);
        sd_lora_report r;
        apply_ok(s, &sp, 1, &r);
        assert_int_equal(r.loras[0].modules_matched, r.loras[0].modules);
        assert_int_equal(r.loras[0].n_unmatched, 0);
        sd_lora_report_free(&r);
        sd_lora_stack_free(s);
        files++;
    }
    printf("%zu layouts diffusers loads, all recognised\n", files);
    assert_true(files >= 5);
}

/* PEFT metadata: lora_alpha, alpha_pattern (a trailing run of the path),
 * use_rslora; a module's "scale" tensor wins over its alpha. */
static void test_peft_metadata_and_scale_tensor(void **state)
{
    (void)state;
    const plain_case a = {"unet.mid_block.attentions.0.transformer_blocks.1.attn1.to_v",
                          UNET "middle_block.1.transformer_blocks.1.attn1.to_v.weight", 0, 48, 48, 4, 0,
                          ".lora_A.weight", ".lora_B.weight"};
    const plain_case b = {"unet.mid_block.attentions.0.transformer_blocks.1.attn1.to_q",
                          UNET "middle_block.1.transformer_blocks.1.attn1.to_q.weight", 0, 48, 48, 4, 0,
                          ".lora_A.weight", ".lora_B.weight"};
    const plain_case c = {"text_encoder.text_model.encoder.layers.1.self_attn.out_proj",
                          TE1 "encoder.layers.1.self_attn.out_proj.weight", 0, 16, 16, 4, 0, ".lora_A.weight",
                          ".lora_B.weight"};
    const plain_case d = {"lora_unet_input_blocks_7_1_proj_in", UNET "input_blocks.7.1.proj_in.weight", 0, 48, 48, 2,
                          8, ".lora_down.weight", ".lora_up.weight"};
    stw *w = stw_new();
    add_plain(w, &a, 1);
    add_plain(w, &b, 5);
    add_plain(w, &c, 9);
    add_plain(w, &d, 13);
    float fixed = 0.3f;
    stw_add_f32(w, "lora_unet_input_blocks_7_1_proj_in.scale", "F32", 0, NULL, &fixed);
    stw_meta(w, "lora_adapter_metadata",
             "{\"unet.r\": 4, \"unet.lora_alpha\": 2, \"unet.alpha_pattern\": {\"attn1.to_v\": 12, \"to_v.x\": 99},"
             " \"text_encoder.r\": 4, \"text_encoder.lora_alpha\": 4, \"text_encoder.use_rslora\": true}");
    char *path = write_lora("peft_meta.safetensors", w);
    sd_lora_stack *s = new_stack(g.ckpt32);
    sd_lora_spec sp = spec(path, 1.0f);
    apply_ok(s, &sp, 1, NULL);
    expect_plain(s, &a, 1, 1.0f, 12.0f / 4);
    expect_plain(s, &b, 5, 1.0f, 2.0f / 4);
    expect_plain(s, &c, 9, 1.0f, 4.0f / 2); /* rslora: alpha / sqrt(4) */
    expect_plain(s, &d, 13, 1.0f, 0.3f);
    sd_lora_stack_free(s);
    free(path);
}

/* ---- accounting ---------------------------------------------------------------------------- */

static void test_partial_match_is_listed(void **state)
{
    (void)state;
    const plain_case ok = {"lora_unet_input_blocks_4_1_proj_in", UNET "input_blocks.4.1.proj_in.weight", 0, 24, 24,
                           2, 0, ".lora_down.weight", ".lora_up.weight"};
    const plain_case nowhere = {"lora_unet_input_blocks_4_1_transformer_blocks_7_attn1_to_q", "", 0, 24, 24, 2, 0,
                                ".lora_down.weight", ".lora_up.weight"};
    stw *w = stw_new();
    add_plain(w, &ok, 1);
    add_plain(w, &nowhere, 2);
    float x = 1;
    stw_add_f32(w, "lora_unet_input_blocks_4_1_proj_in.something_else", "F32", 0, NULL, &x);
    stw_add_f32(w, "lora_te1_text_model_encoder_layers_0_mlp_fc1.alpha", "F32", 0, NULL, &x);
    char *path = write_lora("partial.safetensors", w);
    sd_lora_stack *s = new_stack(g.ckpt32);
    sd_lora_spec sp = {.path = path, .name = "Partial LoRA", .te_multiplier = 1, .unet_multiplier = 1};
    sd_lora_report r;
    apply_ok(s, &sp, 1, &r);
    assert_string_equal(r.loras[0].name, "Partial LoRA");
    assert_int_equal(r.loras[0].modules, 3);
    assert_int_equal(r.loras[0].modules_matched, 1);
    assert_int_equal(r.loras[0].tensors, 1);
    assert_int_equal(r.loras[0].n_unmatched, 3);
    const char *want[] = {"lora_unet_input_blocks_4_1_proj_in.something_else",
                          "lora_unet_input_blocks_4_1_transformer_blocks_7_attn1_to_q",
                          "lora_te1_text_model_encoder_layers_0_mlp_fc1"};
    for (size_t i = 0; i < 3; i++) {
        bool found = false;
        for (size_t k = 0; k < r.loras[0].n_unmatched; k++) found |= strcmp(r.loras[0].unmatched[k], want[i]) == 0;
        assert_true(found);
    }
    sd_lora_report_free(&r);
    expect_plain(s, &ok, 1, 1.0f, 1.0f);
    sp.name = NULL; /* the same file, now named by its stem: reused, reported under the new name */
    apply_ok(s, &sp, 1, &r);
    assert_string_equal(r.loras[0].name, "partial");
    assert_int_equal(r.tensors_rebuilt, 0);
    sd_lora_report_free(&r);
    sd_lora_stack_free(s);
    free(path);
}

/* ---- malformed inputs ---------------------------------------------------------------------- */

static void expect_refused(sd_lora_stack *s, const char *path, sd_lora_status want, const char *words,
                           const snapshot *active)
{
    char err[1024] = "";
    sd_lora_spec sp = {.path = path, .name = "bad", .te_multiplier = 1, .unet_multiplier = 1};
    uint64_t gen = sd_lora_stack_generation(s);
    sd_lora_report r;
    sd_lora_status st = sd_lora_stack_apply(s, &sp, 1, &r, err, sizeof err);
    printf("%s -> %s: %s\n", path, sd_lora_status_name(st), err);
    assert_int_equal(st, want);
    assert_non_null(strstr(err, "LoRA 'bad'"));
    assert_non_null(strstr(err, words));
    assert_int_equal(r.n, 0);
    assert_true(sd_lora_stack_generation(s) == gen); /* the active set is untouched */
    expect_snapshot(s, active);
}

/* A file of zero-filled tensors: "name", ndim, d0, d1, d2, d3, ... NULL. */
static char *zeros_lora(const char *file, const char *meta, ...)
{
    stw *w = stw_new();
    if (meta) stw_meta(w, "lora_adapter_metadata", meta);
    va_list ap;
    va_start(ap, meta);
    for (const char *name; (name = va_arg(ap, const char *));) {
        int ndim = va_arg(ap, int);
        int64_t shape[4];
        for (int d = 0; d < 4; d++) shape[d] = va_arg(ap, int);
        stw_add(w, name, "F16", ndim, shape, NULL);
    }
    va_end(ap);
    return write_lora(file, w);
}

static void test_malformed_inputs_are_refused(void **state)
{
    (void)state;
    sd_lora_stack *s = new_stack(g.ckpt16);
    sd_lora_spec good = spec(LORAS "peft.safetensors", 1.0f);
    apply_ok(s, &good, 1, NULL);
    snapshot active;
    cJSON *names = cJSON_CreateArray();
    cJSON_AddItemToArray(names, cJSON_CreateString(UNET "input_blocks.5.1.transformer_blocks.0.attn1.to_k.weight"));
    take_snapshot(s, names, &active);

    /* truncated: the first half of a real LoRA */
    size_t len;
    char *bytes = tu_read_file(LORAS "kohya_full.safetensors", &len), *truncated;
    assert_true(asprintf(&truncated, "%s/truncated.safetensors", g.dir) > 0);
    assert_int_equal(tu_write_file(truncated, bytes, len / 2), 0);
    free(bytes);
    expect_refused(s, truncated, SD_LORA_EFILE, "truncated.safetensors", &active);

    /* lora_up's rank differs from lora_down's */
    char *ranks = zeros_lora("ranks.safetensors", NULL, "lora_unet_input_blocks_4_1_proj_in.lora_down.weight", 2, 4,
                             24, 0, 0, "lora_unet_input_blocks_4_1_proj_in.lora_up.weight", 2, 24, 3, 0, 0, NULL);
    expect_refused(s, ranks, SD_LORA_EFILE, "inconsistent shapes", &active);

    /* consistent, but the layer is [24, 24] */
    char *wide = zeros_lora("wide.safetensors", NULL, "lora_unet_input_blocks_4_1_proj_in.lora_down.weight", 2, 4, 32,
                            0, 0, "lora_unet_input_blocks_4_1_proj_in.lora_up.weight", 2, 24, 4, 0, 0, NULL);
    expect_refused(s, wide, SD_LORA_EMISMATCH, "another model", &active);

    /* an SD 1.5 LoRA: kohya names in diffusers spelling with attention at
     * the first level, lora_te_ text encoder of width 768 */
    stw *w = stw_new();
    const plain_case sd15[] = {
        {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", "", 0, 320, 320, 4, 4,
         ".lora_down.weight", ".lora_up.weight"},
        {"lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k", "", 0, 640, 768, 4, 4,
         ".lora_down.weight", ".lora_up.weight"},
        {"lora_te_text_model_encoder_layers_0_self_attn_q_proj", "", 0, 768, 768, 4, 4, ".lora_down.weight",
         ".lora_up.weight"},
    };
    for (size_t i = 0; i < 3; i++) add_plain(w, &sd15[i], (int)i);
    char *sd15_path = write_lora("sd15.safetensors", w);
    expect_refused(s, sd15_path, SD_LORA_EMISMATCH, "SD 1.x", &active);

    /* a checkpoint passed as a LoRA */
    expect_refused(s, SMALL "sdxl_small.safetensors", SD_LORA_EFILE, "an SDXL checkpoint, not a LoRA", &active);

    /* nothing matches */
    w = stw_new();
    const plain_case alien = {"lora_unet_double_blocks_0_img_attn_qkv", "", 0, 8, 8, 2, 1, ".lora_down.weight",
                              ".lora_up.weight"};
    add_plain(w, &alien, 1);
    char *alien_path = write_lora("alien.safetensors", w);
    expect_refused(s, alien_path, SD_LORA_EMISMATCH, "none of its 1 modules", &active);

    /* no LoRA tensors, no tensors, no file, not safetensors, bad metadata */
    char *plain = zeros_lora("plain.safetensors", NULL, "some.weight", 1, 2, 0, 0, 0, NULL);
    expect_refused(s, plain, SD_LORA_EFILE, "holds no LoRA tensors", &active);
    char *empty = zeros_lora("empty.safetensors", NULL, NULL);
    expect_refused(s, empty, SD_LORA_EFILE, "no tensors", &active);
    expect_refused(s, "tests/data/small/loras/missing.safetensors", SD_LORA_EFILE, "missing.safetensors", &active);
    char *html;
    assert_true(asprintf(&html, "%s/login.safetensors", g.dir) > 0);
    assert_int_equal(tu_write_file(html, "<!DOCTYPE html><html>login</html>", 33), 0);
    expect_refused(s, html, SD_LORA_EFILE, "login.safetensors", &active);
    char *meta = zeros_lora("meta.safetensors", "{not json", "unet.conv_in.lora_A.weight", 4, 1, 4, 3, 3,
                            "unet.conv_in.lora_B.weight", 4, 12, 1, 1, 1, NULL);
    expect_refused(s, meta, SD_LORA_EFILE, "lora_adapter_metadata", &active);
    char *mixed = zeros_lora("mixed.safetensors", NULL, "lora_unet_conv_in.lora_down.weight", 4, 1, 4, 3, 3,
                             "lora_unet_conv_in.hada_w1_a", 2, 12, 1, 0, 0, NULL);
    expect_refused(s, mixed, SD_LORA_EFILE, "mixes tensors", &active);

    /* DoRA on a layer without input columns (a norm's 1-D weight) */
    char *dora_norm = zeros_lora("dora_norm.safetensors", NULL, "lora_unet_input_blocks_4_1_norm.lora_down.weight", 2, 1,
                                 1, 0, 0, "lora_unet_input_blocks_4_1_norm.lora_up.weight", 2, 24, 1, 0, 0,
                                 "lora_unet_input_blocks_4_1_norm.dora_scale", 1, 24, 0, 0, 0, NULL);
    expect_refused(s, dora_norm, SD_LORA_EMISMATCH, "dora_scale", &active);

    /* ... and the stack still works */
    sd_lora_spec next[2] = {good, spec(LORAS "loha.safetensors", 0.5f)};
    apply_ok(s, next, 2, NULL);
    apply_ok(s, &good, 1, NULL);
    expect_snapshot(s, &active);

    free_snapshot(&active);
    cJSON_Delete(names);
    sd_lora_stack_free(s);
    free(truncated);
    free(ranks);
    free(wide);
    free(sd15_path);
    free(alien_path);
    free(plain);
    free(empty);
    free(html);
    free(meta);
    free(mixed);
    free(dora_norm);
}

/* Files whose shape arithmetic overflowed or divided by a zero rank (the
 * fuzz corpus' regress_* seeds, made by hand: zero-size dimensions let the
 * others be huge in a file of a few hundred bytes). Each is a clear
 * malformed-file error, with no arithmetic done on the huge dimensions
 * (the sanitizer build aborts on signed overflow), and no merge reached
 * (a rank-0 factor used to divide by zero there). */
static void test_zero_size_dimensions_are_refused(void **state)
{
    (void)state;
    static const char *const seeds[] = {
        "regress_loha_tucker_kernel_overflow", "regress_loha_flat_cols_overflow",
        "regress_diff_flat_cols_overflow", "regress_loha_rank0_factor", "regress_lokr_rank0_factor",
    };
    sd_lora_stack *s = new_stack(g.ckpt16);
    sd_lora_spec good = spec(LORAS "peft.safetensors", 1.0f);
    apply_ok(s, &good, 1, NULL);
    snapshot active;
    cJSON *names = cJSON_CreateArray();
    cJSON_AddItemToArray(names, cJSON_CreateString(UNET "input_blocks.5.1.transformer_blocks.0.attn1.to_k.weight"));
    take_snapshot(s, names, &active);
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "fuzz/corpus/lora/%s.safetensors", seeds[i]);
        expect_refused(s, path, SD_LORA_EFILE, "zero-size dimension", &active);
    }
    free_snapshot(&active);
    cJSON_Delete(names);
    sd_lora_stack_free(s);
}

/* ---- binding ----------------------------------------------------------------------------------- */

static void test_networks_bind_the_merged_weights(void **state)
{
    (void)state;
    char err[512];
    sd_lora_stack *s = new_stack(g.ckpt16);
    sd_lora_spec sp = spec(LORAS "kohya_full.safetensors", 1.0f);
    apply_ok(s, &sp, 1, NULL);
    sd_text_encoders te;
    assert_int_equal(sd_text_encoders_bind(&te, g.ckpt16, &g.hp, err, sizeof err), 0);
    const sd_weight *q1 = merged(s, TE1 "encoder.layers.0.self_attn.q_proj.weight");
    const sd_weight *in_proj = merged(s, TE2 "transformer.resblocks.0.attn.in_proj_weight");
    assert_ptr_equal(te.clip_l.layers[0].q_w.data, q1->data);
    size_t block = 32 * 32 * sd_dtype_size(in_proj->dtype);
    assert_ptr_equal(te.clip_g.layers[0].q_w.data, in_proj->data);
    assert_ptr_equal(te.clip_g.layers[0].k_w.data, (const char *)in_proj->data + block);
    assert_ptr_equal(te.clip_g.layers[0].v_w.data, (const char *)in_proj->data + 2 * block);
    assert_ptr_equal(te.clip_l.layers[1].q_w.data, st_find(g.ckpt16, TE1 "encoder.layers.1.self_attn.q_proj.weight")->data);
    sd_text_encoders_release(&te);

    apply_ok(s, NULL, 0, NULL);
    assert_int_equal(sd_text_encoders_bind(&te, g.ckpt16, &g.hp, err, sizeof err), 0);
    assert_ptr_equal(te.clip_l.layers[0].q_w.data, st_find(g.ckpt16, TE1 "encoder.layers.0.self_attn.q_proj.weight")->data);
    sd_text_encoders_release(&te);
    sd_lora_stack_free(s);

    /* one stack per checkpoint */
    s = new_stack(g.ckpt16);
    assert_null(sd_lora_stack_new(g.ckpt16, &g.hp, err, sizeof err));
    assert_non_null(strstr(err, "already has a LoRA stack"));
    sd_lora_stack_free(s);
    assert_null(sd_overlay_of(g.ckpt16));
}

/* ---- names --------------------------------------------------------------------------------------- */

static void test_find_by_name_or_stem(void **state)
{
    (void)state;
    const sd_lora_known known[] = {
        {"Detail Tweaker XL", "/models/loras/detail_tweaker_xl.safetensors"},
        {"add-detail-xl", "/models/loras/other.safetensors"},
        {NULL, "/models/loras/add-detail-xl.safetensors"},
        {"Real Skin Slider", "real_skin_slider.safetensors"},
    };
    assert_int_equal(sd_lora_find(known, 4, "Detail Tweaker XL"), 0);
    assert_int_equal(sd_lora_find(known, 4, "detail_tweaker_xl"), 0);
    assert_int_equal(sd_lora_find(known, 4, "add-detail-xl"), 1); /* a configured name wins over a stem */
    assert_int_equal(sd_lora_find(known, 4, "real_skin_slider"), 3);
    assert_int_equal(sd_lora_find(known, 4, "detail tweaker xl"), -1);
    assert_int_equal(sd_lora_find(known, 4, "real_skin_slider.safetensors"), -1);
    assert_int_equal(sd_lora_find(known, 0, "x"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stack_matches_diffusers),
        cmocka_unit_test(test_lycoris_matches_harness),
        cmocka_unit_test(test_fp16_rounds_once),
        cmocka_unit_test(test_switching_is_bit_identical),
        cmocka_unit_test(test_multipliers),
        cmocka_unit_test(test_spellings_land_on_the_right_rows),
        cmocka_unit_test(test_saved_layouts_match_diffusers),
        cmocka_unit_test(test_diffusers_layouts_are_recognised),
        cmocka_unit_test(test_peft_metadata_and_scale_tensor),
        cmocka_unit_test(test_partial_match_is_listed),
        cmocka_unit_test(test_malformed_inputs_are_refused),
        cmocka_unit_test(test_zero_size_dimensions_are_refused),
        cmocka_unit_test(test_networks_bind_the_merged_weights),
        cmocka_unit_test(test_find_by_name_or_stem),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

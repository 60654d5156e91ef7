/* Textual-inversion embeddings (sd/embedding.h) on the small model, against
 * tests/data/small/goldens_embedding.* (tools/reference/make_embedding_goldens.py):
 *   - every case's chunks are A1111's: ids of both encoders, weights, the
 *     rows each embedding vector lands on (an embedding that does not fit a
 *     chunk opens the next; the comma backtrack moves the slots and leaves
 *     the fix behind), the token count and the order of first use; unknown
 *     names and near misses are plain text; names match in any case;
 *   - their conditioning equals the reference within 1e-4 of its max |value|
 *     (the plain case is also diffusers' load_textual_inversion, bit for bit
 *     in the reference);
 *   - txt2img with the embeddings equals diffusers' pipeline within 2/255;
 *   - files that are not SDXL embeddings for this model are refused with a
 *     message naming the embedding, and a prompt naming such an embedding
 *     fails as unavailable, naming it, in the prompt module and the engine. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "sd/text_encoder.h"
#include "small_model.h"
#include "st_writer.h"
#include "testutil.h"

static struct {
    small_model m;
    sd_text_encoders te;
    st_file *ckpt;
    sdxl_hparams hp;
    sd_tokenizer *tok;
    sd_backend *be;
    sd_embedding_db *db; /* the golden embeddings, for the prompt-level tests */
    char *dir;
} g;

static void load_goldens_into(sd_embedding_db *db)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(g.m.doc, "embeddings")) {
        char err[512];
        int rc = sd_embeddings_load(db, json_str(e, "name"), json_str(e, "file"), err, sizeof err);
        if (rc) fprintf(stderr, "%s\n", err);
        assert_int_equal(rc, 0);
    }
}

static int setup(void **state)
{
    char err[512];
    if (small_model_open(&g.m, "goldens_embedding")) return -1;
    if (sdxl_checkpoint_open(SMALL "sdxl_small.safetensors", &g.ckpt, &g.hp, err, sizeof err) ||
        sd_text_encoders_bind(&g.te, g.ckpt, &g.hp, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    g.tok = sd_tokenizer_new();
    g.be = sd_backend_cpu_new(NULL);
    g.db = g.tok ? sd_embeddings_new(g.tok, g.hp.te1.width, g.hp.te2.width) : NULL;
    g.dir = tu_mkdtemp("embedding");
    if (!g.be || !g.db) return -1;
    load_goldens_into(g.db);
    load_goldens_into(sd_engine_embeddings(g.m.engine));
    return 0;
}

static int teardown(void **state)
{
    sd_text_encoders_release(&g.te);
    st_close(g.ckpt);
    sd_embeddings_free(g.db);
    sd_tokenizer_free(g.tok);
    sd_backend_free(g.be);
    small_model_close(&g.m);
    tu_rm_rf(g.dir);
    free(g.dir);
    return 0;
}

static int prepare(const sd_embedding_db *db, const char *text, bool negative, sd_prompt *p, char *err, size_t n)
{
    sd_prompt_options opts = SD_PROMPT_OPTIONS_DEFAULT;
    opts.strip_extra_networks = !negative;
    opts.embeddings = db;
    return sd_prompt_prepare(g.tok, text, strlen(text), &opts, p, err, n);
}

static long index_of(const sd_embedding_db *db, const char *name)
{
    for (size_t i = 0; i < sd_embeddings_count(db); i++)
        if (!strcmp(sd_embedding_name(db, i), name)) return (long)i;
    return -1;
}

/* ---- chunks ------------------------------------------------------------------------------ */

static void check_ids(const cJSON *arr, const int32_t *ids)
{
    for (int i = 0; i < SD_TOK_CONTEXT; i++) assert_int_equal(ids[i], cJSON_GetArrayItem(arr, i)->valueint);
}

static void check_chunks(const sd_prompt *p, const cJSON *chunks, const cJSON *used)
{
    assert_int_equal(p->n_chunks, cJSON_GetArraySize(chunks));
    for (size_t c = 0; c < p->n_chunks; c++) {
        const sd_prompt_chunk *ch = &p->chunks[c];
        const cJSON *gc = cJSON_GetArrayItem(chunks, (int)c), *row;
        check_ids(cJSON_GetObjectItem(gc, "ids_l"), ch->ids_l);
        check_ids(cJSON_GetObjectItem(gc, "ids_g"), ch->ids_g);
        const cJSON *w = cJSON_GetObjectItem(gc, "weights");
        for (int i = 0; i < SD_TOK_CONTEXT; i++)
            assert_float_equal(ch->weights[i], cJSON_GetArrayItem(w, i)->valuedouble, 1e-6);
        int16_t want_emb[SD_TOK_CONTEXT] = {0};
        uint8_t want_vec[SD_TOK_CONTEXT] = {0};
        cJSON_ArrayForEach(row, cJSON_GetObjectItem(gc, "vectors")) { /* [row, name, vector] */
            int r = cJSON_GetArrayItem(row, 0)->valueint;
            want_emb[r] = (int16_t)(index_of(g.db, cJSON_GetArrayItem(row, 1)->valuestring) + 1);
            want_vec[r] = (uint8_t)cJSON_GetArrayItem(row, 2)->valueint;
        }
        assert_memory_equal(ch->emb, want_emb, sizeof want_emb);
        assert_memory_equal(ch->emb_vector, want_vec, sizeof want_vec);
    }
    assert_int_equal(p->n_used, cJSON_GetArraySize(used));
    for (size_t i = 0; i < p->n_used; i++)
        assert_string_equal(sd_embedding_name(g.db, p->used[i]), cJSON_GetArrayItem(used, (int)i)->valuestring);
}

static void test_chunks_are_a1111s(void **state)
{
    const cJSON *c;
    int n = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g.m.doc, "cases")) {
        sd_prompt p;
        char err[512];
        assert_int_equal(prepare(g.db, json_str(c, "prompt"), false, &p, err, sizeof err), 0);
        check_chunks(&p, cJSON_GetObjectItem(c, "chunks"), cJSON_GetObjectItem(c, "used"));
        assert_int_equal(p.token_count, json_int(c, "token_count"));
        sd_prompt_free(&p);
        assert_int_equal(prepare(g.db, json_str(c, "negative"), true, &p, err, sizeof err), 0);
        check_chunks(&p, cJSON_GetObjectItem(c, "negative_chunks"), cJSON_GetObjectItem(c, "negative_used"));
        sd_prompt_free(&p);
        n++;
    }
    assert_int_equal(n, 5);
}

/* Without embeddings the same texts give the same ids except where a name
 * matched: an unknown name is text. */
static void test_unknown_names_are_text(void **state)
{
    const char *text = "a photo of sks_styles and sks lighthouse";
    sd_prompt with, without;
    char err[256];
    assert_int_equal(prepare(g.db, text, false, &with, err, sizeof err), 0);
    assert_int_equal(prepare(NULL, text, false, &without, err, sizeof err), 0);
    assert_memory_equal(with.chunks[0].ids_l, without.chunks[0].ids_l, sizeof with.chunks[0].ids_l);
    assert_int_equal(with.n_used, 0);
    sd_prompt_free(&with);
    sd_prompt_free(&without);
}

/* ---- conditioning and images --------------------------------------------------------------- */

static void expect_tensor(const float *got, size_t n, const char *name)
{
    const st_tensor *t = st_find(g.m.goldens, name);
    assert_non_null(t);
    assert_int_equal(t->numel, (int64_t)n);
    double e = tu_rel_error(got, t->data, n);
    printf("  %-26s %.2e\n", name, e);
    assert_true(e <= 1e-4);
}

static void encode_and_compare(const char *text, bool negative, const char *case_name, const char *half)
{
    sd_prompt p;
    sd_conditioning c;
    char err[512], name[128];
    assert_int_equal(prepare(g.db, text, negative, &p, err, sizeof err), 0);
    int rc = sd_encode_prompt(g.be, &g.te, &p, SD_CLIP_SKIP_DEFAULT, negative, &c, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    snprintf(name, sizeof name, "%s.%s.context", case_name, half);
    expect_tensor(c.context, (size_t)c.n_tokens * c.width, name);
    snprintf(name, sizeof name, "%s.%s.pooled", case_name, half);
    expect_tensor(c.pooled, (size_t)c.pooled_dim, name);
    sd_conditioning_free(&c);
    sd_prompt_free(&p);
}

static void test_conditioning_matches_reference(void **state)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g.m.doc, "cases")) {
        encode_and_compare(json_str(c, "prompt"), false, json_str(c, "name"), "cond");
        if (json_str(c, "negative")[0]) encode_and_compare(json_str(c, "negative"), true, json_str(c, "name"), "uncond");
    }
}

static void test_txt2img_matches_diffusers(void **state)
{
    const cJSON *c = cJSON_GetObjectItem(g.m.doc, "image");
    sd_txt2img_params p;
    sd_txt2img_params_default(&p);
    golden_job_settings(c, &p);
    sd_image_out out;
    small_model_txt2img_ok(&g.m, &p, &out);
    size_t n = (size_t)p.width * p.height * 3, n_diff;
    int worst = u8_max_abs_diff(out.rgb, small_model_golden_u8(&g.m, json_str(c, "image"), n)->data, n, &n_diff);
    printf("  txt2img with embeddings: max |diff| %d/255, %zu of %zu values differ\n", worst, n_diff, n);
    assert_true(worst <= 2);
    sd_image_out_free(&out);
}

/* ---- refusals --------------------------------------------------------------------------------- */

static char *write_embedding(const char *file, const char *l_name, const char *l_dtype, int64_t nl, int64_t wl,
                             const char *g_name, int64_t ng, int64_t wg, float value)
{
    stw *w = stw_new();
    int64_t sl[2] = {nl, wl}, sg[2] = {ng, wg};
    float *v = malloc(sizeof(float) * (size_t)((nl * wl > ng * wg ? nl * wl : ng * wg) + 1));
    for (int64_t i = 0; i < nl * wl || i < ng * wg; i++) v[i] = i == 0 ? value : 0.01f * (float)(i % 7);
    if (l_name) assert_int_equal(stw_add_f32(w, l_name, l_dtype, 2, sl, v), 0);
    if (g_name) assert_int_equal(stw_add_f32(w, g_name, "F32", 2, sg, v), 0);
    char *path;
    assert_true(asprintf(&path, "%s/%s", g.dir, file) > 0);
    assert_int_equal(stw_write(w, path), 0);
    stw_free(w);
    free(v);
    return path;
}

typedef struct {
    const char *name;      /* the embedding, also the prompt's word */
    char *path;
    const char *expect;    /* in the load error */
} bad_case;

static void test_bad_files_are_refused_and_named(void **state)
{
    bad_case cases[] = {
        {"sd15emb", write_embedding("sd15emb.safetensors", "emb_params", "F32", 2, 768, NULL, 0, 0, 0.1f),
         "is an SD 1.x/2.x embedding (\"emb_params\", 768 wide), not an SDXL one"},
        {"widexl", write_embedding("widexl.safetensors", "clip_l", "F16", 2, 768, "clip_g", 2, 1280, 0.1f),
         "was made for another model: clip_l is 768 wide, this checkpoint's CLIP-L is 16 wide"},
        {"uneven", write_embedding("uneven.safetensors", "clip_l", "F32", 2, 16, "clip_g", 3, 32, 0.1f),
         "clip_l is F32 [2, 16]; expected [3, 16] floats"},
        {"huge", write_embedding("huge.safetensors", "clip_l", "F32", 76, 16, "clip_g", 76, 32, 0.1f),
         "has 76 vectors; 1 to 75 fit a prompt chunk"},
        {"nanny", write_embedding("nanny.safetensors", "clip_l", "F32", 1, 16, "clip_g", 1, 32, NAN),
         "clip_l holds a non-finite value"},
        {"halfemb", write_embedding("halfemb.safetensors", "clip_l", "F32", 1, 16, NULL, 0, 0, 0.1f),
         "has no clip_g tensor"},
        {"loraemb", strdup(SMALL "loras/kohya_noalpha.safetensors"),
         "is a LoRA, not a textual-inversion embedding: list it under \"loras\""},
        {"goneemb", strdup(SMALL "embeddings/no_such_file.safetensors"), "No such file or directory"},
    };
    size_t n = sizeof cases / sizeof cases[0];
    sd_embedding_db *db = sd_embeddings_new(g.tok, g.hp.te1.width, g.hp.te2.width);
    load_goldens_into(db);
    for (size_t i = 0; i < n; i++) {
        char err[1024] = "";
        int rc = sd_embeddings_load(db, cases[i].name, cases[i].path, err, sizeof err);
        printf("  %s -> %s\n", cases[i].name, err);
        assert_int_equal(rc, -1);
        char named[64];
        snprintf(named, sizeof named, "embedding '%s'", cases[i].name);
        assert_non_null(strstr(err, named));
        if (!strstr(err, cases[i].expect)) fprintf(stderr, "expected \"%s\"\n", cases[i].expect);
        assert_non_null(strstr(err, cases[i].expect));
        long idx = index_of(db, cases[i].name);
        assert_true(idx >= 0);
        assert_string_equal(sd_embedding_unavailable(db, (size_t)idx), err);
        /* a prompt (or a negative) naming it fails, naming it; the good ones still work beside it */
        char text[128];
        snprintf(text, sizeof text, "sks_style, a photo, (%s:1.2)", cases[i].name);
        sd_prompt p;
        char why[2048];
        assert_int_equal(prepare(db, text, i % 2, &p, why, sizeof why), SD_PROMPT_EUNAVAILABLE);
        assert_non_null(strstr(why, "names the embedding"));
        assert_non_null(strstr(why, cases[i].name));
        assert_non_null(strstr(why, cases[i].expect));
        free(cases[i].path);
    }
    sd_prompt p;
    char err[256];
    assert_int_equal(prepare(db, "sks_style lowq_neg", false, &p, err, sizeof err), 0);
    assert_int_equal(p.n_used, 2);
    sd_prompt_free(&p);
    sd_embeddings_free(db);
}

/* The engine: the embeddings a text names, in order; an unavailable one is SD_EMODEL naming the prompt. */
static void test_engine_reports_used_and_unavailable(void **state)
{
    size_t *used, n;
    char err[1024];
    sd_engine *e = g.m.engine;
    assert_int_equal(sd_engine_embeddings_used(e, "lowq_neg, <lora:x:1> SKS_STYLE sks_style", false, &used, &n, err,
                                               sizeof err), SD_OK);
    assert_int_equal(n, 2);
    assert_string_equal(sd_embedding_name(sd_engine_embeddings(e), used[0]), "lowq_neg");
    assert_string_equal(sd_embedding_name(sd_engine_embeddings(e), used[1]), "sks_style");
    free(used);
    assert_int_equal(sd_embeddings_add_unavailable(sd_engine_embeddings(e), "brokenneg", "/models/brokenneg.pt",
                                                   "download failed: HTTP 404"), 0);
    assert_int_equal(sd_engine_embeddings_used(e, "ugly, brokenneg", true, &used, &n, err, sizeof err), SD_EMODEL);
    assert_string_equal(err, "the negative prompt names the embedding 'brokenneg', which is unavailable: download "
                             "failed: HTTP 404");
    sd_txt2img_params p;
    sd_txt2img_params_default(&p);
    p.prompt = "a cat";
    p.negative_prompt = "(brokenneg:1.1)";
    p.width = p.height = 64;
    p.steps = 1;
    p.cfg = 5;
    sd_image_out out;
    assert_int_equal(sd_txt2img(e, &p, &out, err, sizeof err), SD_EMODEL);
    assert_non_null(strstr(err, "the negative prompt names the embedding 'brokenneg'"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunks_are_a1111s),
        cmocka_unit_test(test_unknown_names_are_text),
        cmocka_unit_test(test_conditioning_matches_reference),
        cmocka_unit_test(test_txt2img_matches_diffusers),
        cmocka_unit_test(test_bad_files_are_refused_and_named),
        cmocka_unit_test(test_engine_reports_used_and_unavailable),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

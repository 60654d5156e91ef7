/* Text encoders and A1111 conditioning against diffusers on the small model:
 * every case of tests/data/small/goldens_text.json (plain, negative, empty
 * negative, empty prompt, clip_skip 1/2/3, weighted, nested, long, tag lists
 * with and without comma backtrack, BREAK) must give the same chunk ids and
 * weights, and context/pooled within 1e-4 of the output's max |value|. */
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
#include "sd/text_encoder.h"
#include "sd/tokenizer.h"
#include "testutil.h"

#define SMALL "tests/data/small/"

static struct {
    st_file *model, *goldens;
    sdxl_hparams hp;
    sd_text_encoders te;
    sd_tokenizer *tok;
    sd_backend *be;
    cJSON *cases;
} g;

static int setup(void **state)
{
    char err[512];
    if (sdxl_checkpoint_open(SMALL "sdxl_small.safetensors", &g.model, &g.hp, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    if (st_open(SMALL "goldens_text.safetensors", &g.goldens, err, sizeof err)) return -1;
    if (sd_text_encoders_bind(&g.te, g.model, &g.hp, err, sizeof err)) return -1;
    cJSON *doc = tu_read_json(SMALL "goldens_text.json");
    if (!doc) return -1;
    g.cases = cJSON_DetachItemFromObject(doc, "cases");
    cJSON_Delete(doc);
    g.tok = sd_tokenizer_new();
    g.be = sd_backend_cpu_new(NULL);
    return g.tok && g.be && g.cases ? 0 : -1;
}

static int teardown(void **state)
{
    sd_text_encoders_release(&g.te);
    st_close(g.model);
    st_close(g.goldens);
    sd_tokenizer_free(g.tok);
    sd_backend_free(g.be);
    cJSON_Delete(g.cases);
    return 0;
}

/* Max |a - b| over the golden's max |b|, golden from the goldens file. */
static double rel_error(const float *a, const char *golden_name, size_t n)
{
    const st_tensor *t = st_find(g.goldens, golden_name);
    assert_non_null(t);
    assert_int_equal(t->numel, (int64_t)n);
    return tu_rel_error(a, t->data, n);
}

static void assert_int_array(const cJSON *arr, const int32_t *ids)
{
    for (int i = 0; i < SD_TOK_CONTEXT; i++) assert_int_equal(ids[i], cJSON_GetArrayItem(arr, i)->valueint);
}

/* The parser must produce the golden's chunks before the encoders are judged. */
static void check_chunks(const sd_prompt *p, const cJSON *chunks)
{
    assert_int_equal(p->n_chunks, cJSON_GetArraySize(chunks));
    for (size_t c = 0; c < p->n_chunks; c++) {
        const cJSON *gc = cJSON_GetArrayItem(chunks, (int)c);
        assert_int_array(cJSON_GetObjectItem(gc, "te1_ids"), p->chunks[c].ids_l);
        assert_int_array(cJSON_GetObjectItem(gc, "te2_ids"), p->chunks[c].ids_g);
        const cJSON *w = cJSON_GetObjectItem(gc, "weights");
        for (int i = 0; i < SD_TOK_CONTEXT; i++)
            assert_float_equal(p->chunks[c].weights[i], cJSON_GetArrayItem(w, i)->valuedouble, 1e-6);
    }
}

static void encode_and_compare(const char *text, int backtrack, int clip_skip, bool negative,
                               const cJSON *chunks, const char *ctx_name, const char *pooled_name)
{
    char err[512];
    sd_prompt_options opts = SD_PROMPT_OPTIONS_DEFAULT;
    opts.comma_padding_backtrack = backtrack;
    opts.strip_extra_networks = !negative;
    sd_prompt p;
    assert_int_equal(sd_prompt_prepare(g.tok, text, strlen(text), &opts, &p, err, sizeof err), 0);
    if (chunks) check_chunks(&p, chunks);
    sd_conditioning c;
    int rc = sd_encode_prompt(g.be, &g.te, &p, clip_skip, negative, &c, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    double e_ctx = rel_error(c.context, ctx_name, (size_t)c.n_tokens * c.width);
    double e_pool = rel_error(c.pooled, pooled_name, (size_t)c.pooled_dim);
    printf("  %-28s context %.2e  pooled %.2e\n", ctx_name, e_ctx, e_pool);
    assert_true(e_ctx <= 1e-4);
    assert_true(e_pool <= 1e-4);
    sd_conditioning_free(&c);
    sd_prompt_free(&p);
}

static void test_every_golden_case(void **state)
{
    const cJSON *c;
    int n = 0;
    cJSON_ArrayForEach(c, g.cases) {
        const cJSON *tensors = cJSON_GetObjectItem(c, "tensors");
        const cJSON *neg = cJSON_GetObjectItem(c, "negative");
        int backtrack = cJSON_GetObjectItem(c, "comma_padding_backtrack")->valueint;
        int clip_skip = cJSON_GetObjectItem(c, "clip_skip")->valueint;
        encode_and_compare(cJSON_GetObjectItem(c, "prompt")->valuestring, backtrack, clip_skip, false,
                           cJSON_GetObjectItem(c, "chunks"),
                           cJSON_GetObjectItem(tensors, "cond_context")->valuestring,
                           cJSON_GetObjectItem(tensors, "cond_pooled")->valuestring);
        if (cJSON_IsString(neg))
            encode_and_compare(neg->valuestring, backtrack, clip_skip, true,
                               cJSON_GetObjectItem(c, "negative_chunks"),
                               cJSON_GetObjectItem(tensors, "uncond_context")->valuestring,
                               cJSON_GetObjectItem(tensors, "uncond_pooled")->valuestring);
        n++;
    }
    assert_true(n >= 14);
}

static void prepare(const char *text, int backtrack, bool negative, sd_prompt *p)
{
    char err[512];
    sd_prompt_options opts = SD_PROMPT_OPTIONS_DEFAULT;
    opts.comma_padding_backtrack = backtrack;
    opts.strip_extra_networks = !negative;
    assert_int_equal(sd_prompt_prepare(g.tok, text, strlen(text), &opts, p, err, sizeof err), 0);
}

/* The engine encodes a job's prompt and negative as one batch
 * (sd_encode_prompts): every golden pair, encoded that way, matches both
 * diffusers goldens. */
static void test_golden_pairs_encoded_as_one_batch(void **state)
{
    const cJSON *c;
    int n = 0;
    cJSON_ArrayForEach(c, g.cases) {
        const cJSON *neg = cJSON_GetObjectItem(c, "negative"), *tensors = cJSON_GetObjectItem(c, "tensors");
        if (!cJSON_IsString(neg)) continue;
        int backtrack = cJSON_GetObjectItem(c, "comma_padding_backtrack")->valueint;
        sd_prompt p[2];
        sd_conditioning out[2];
        const bool zero_if_empty[2] = {false, true};
        char err[512];
        prepare(cJSON_GetObjectItem(c, "prompt")->valuestring, backtrack, false, &p[0]);
        prepare(neg->valuestring, backtrack, true, &p[1]);
        assert_int_equal(sd_encode_prompts(g.be, &g.te, p, 2, cJSON_GetObjectItem(c, "clip_skip")->valueint,
                                           zero_if_empty, out, err, sizeof err), 0);
        const char *names[2][2] = {{"cond_context", "cond_pooled"}, {"uncond_context", "uncond_pooled"}};
        for (int i = 0; i < 2; i++) {
            double e_ctx = rel_error(out[i].context, cJSON_GetObjectItem(tensors, names[i][0])->valuestring,
                                     (size_t)out[i].n_tokens * out[i].width);
            double e_pool = rel_error(out[i].pooled, cJSON_GetObjectItem(tensors, names[i][1])->valuestring,
                                      (size_t)out[i].pooled_dim);
            assert_true(e_ctx <= 1e-4 && e_pool <= 1e-4);
            sd_conditioning_free(&out[i]);
            sd_prompt_free(&p[i]);
        }
        n++;
    }
    assert_true(n >= 3);
}

/* A batch of three with a zeroed empty prompt between a two-chunk weighted
 * prompt and a short one: each result is the one encoding it alone gives
 * (the batch offsets, the zeroed slot and the per-prompt pooled vector). */
static void test_batch_equals_prompts_alone(void **state)
{
    const char *texts[3] = {"(a red cat:1.3) on a mat, " "detailed fur, sharp focus, " "soft light, " "BREAK a blue sky",
                            "", "[a dog]"};
    const bool zero_if_empty[3] = {false, true, false};
    sd_prompt p[3];
    sd_conditioning batch[3], alone;
    char err[512];
    for (int i = 0; i < 3; i++) prepare(texts[i], 1, i == 1, &p[i]);
    assert_true(p[0].n_chunks == 2);
    assert_int_equal(sd_encode_prompts(g.be, &g.te, p, 3, 0, zero_if_empty, batch, err, sizeof err), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sd_encode_prompt(g.be, &g.te, &p[i], 0, zero_if_empty[i], &alone, err, sizeof err), 0);
        assert_int_equal(batch[i].n_tokens, alone.n_tokens);
        size_t n = (size_t)alone.n_tokens * alone.width;
        assert_true(tu_rel_error(batch[i].context, alone.context, n) <= 1e-6);
        assert_true(tu_rel_error(batch[i].pooled, alone.pooled, (size_t)alone.pooled_dim) <= 1e-6);
        if (i == 1)
            for (size_t k = 0; k < n; k++) assert_true(batch[i].context[k] == 0.0f);
        sd_conditioning_free(&alone);
        sd_conditioning_free(&batch[i]);
        sd_prompt_free(&p[i]);
    }
}

static void test_empty_negative_is_all_zero(void **state)
{
    char err[256];
    sd_prompt p;
    assert_int_equal(sd_prompt_prepare(g.tok, "", 0, NULL, &p, err, sizeof err), 0);
    sd_conditioning c;
    assert_int_equal(sd_encode_prompt(g.be, &g.te, &p, 0, true, &c, err, sizeof err), 0);
    assert_int_equal(c.n_tokens, 77);
    for (int i = 0; i < c.n_tokens * c.width; i++) assert_true(c.context[i] == 0.0f);
    for (int i = 0; i < c.pooled_dim; i++) assert_true(c.pooled[i] == 0.0f);
    sd_conditioning_free(&c);
    sd_prompt_free(&p);
}

static void test_clip_skip_out_of_range_is_an_error(void **state)
{
    char err[256];
    sd_prompt p;
    assert_int_equal(sd_prompt_prepare(g.tok, "a cat", 5, NULL, &p, err, sizeof err), 0);
    sd_conditioning c;
    assert_int_equal(sd_encode_prompt(g.be, &g.te, &p, sd_clip_skip_max(&g.te) + 1, false, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "clip_skip must be between 1 and"));
    sd_prompt_free(&p);
}

static void test_emphasis_restores_the_mean(void **state)
{
    float z[6] = {1, 2, 3, 4, 5, 6};
    const float w[3] = {1.0f, 2.0f, 0.5f};
    sd_emphasis_original(z, 3, 2, w);
    double mean = 0;
    for (int i = 0; i < 6; i++) mean += z[i] / 6.0;
    assert_float_equal(mean, 3.5, 1e-6);
    assert_float_equal(z[2] / z[0], 6.0, 1e-5); /* 3*2 / 1*1 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_golden_case),
        cmocka_unit_test(test_golden_pairs_encoded_as_one_batch),
        cmocka_unit_test(test_batch_equals_prompts_alone),
        cmocka_unit_test(test_empty_negative_is_all_zero),
        cmocka_unit_test(test_clip_skip_out_of_range_is_an_error),
        cmocka_unit_test(test_emphasis_restores_the_mean),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* sd/prompt against the A1111 reference: every case of
 * tests/data/prompt_goldens.json (tools/reference/a1111_prompt.py through
 * make_tokenizer_goldens.py; it includes A1111's doctests) end to end, plus
 * direct checks of tags, escapes, BREAK, comma backtracking, refusals and a
 * 1 MB prompt. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "sd/prompt.h"
#include "testutil.h"

static cJSON *goldens;
static sd_tokenizer *tok;

static int setup(void **state)
{
    goldens = tu_read_json("tests/data/prompt_goldens.json");
    tok = sd_tokenizer_new();
    return goldens && tok ? 0 : -1;
}

static int teardown(void **state)
{
    cJSON_Delete(goldens);
    sd_tokenizer_free(tok);
    return 0;
}

static double num(const cJSON *o, const char *key) { return cJSON_GetObjectItem(o, key)->valuedouble; }
static const char *str(const cJSON *o, const char *key) { return cJSON_GetObjectItem(o, key)->valuestring; }

static void check_networks(const cJSON *want, const sd_prompt *p, int ci)
{
    assert_int_equal(p->n_networks, cJSON_GetArraySize(want));
    for (size_t k = 0; k < p->n_networks; k++) {
        const cJSON *w = cJSON_GetArrayItem(want, (int)k);
        assert_string_equal(p->networks[k].kind, str(w, "kind"));
        assert_string_equal(p->networks[k].name, str(w, "name"));
        assert_string_equal(p->networks[k].raw, str(w, "raw"));
        if (p->networks[k].te_multiplier != num(w, "te") || p->networks[k].unet_multiplier != num(w, "unet"))
            fail_msg("case %d: tag %zu multipliers %g/%g", ci, k, p->networks[k].te_multiplier,
                     p->networks[k].unet_multiplier);
    }
}

static void check_fragments(const cJSON *want, const sd_prompt *p, int ci)
{
    assert_int_equal(p->n_fragments, cJSON_GetArraySize(want));
    for (size_t k = 0; k < p->n_fragments; k++) {
        const cJSON *w = cJSON_GetArrayItem(want, (int)k);
        const char *text = cJSON_GetArrayItem(w, 0)->valuestring;
        double weight = cJSON_GetArrayItem(w, 1)->valuedouble;
        assert_int_equal(p->fragments[k].len, strlen(text));
        assert_string_equal(p->fragments[k].text, text);
        if (p->fragments[k].weight != weight)
            fail_msg("case %d: fragment %zu weight %.17g, reference %.17g", ci, k, p->fragments[k].weight, weight);
    }
}

static void check_chunks(const cJSON *want, const sd_prompt *p, int ci)
{
    assert_int_equal(p->n_chunks, cJSON_GetArraySize(want));
    for (size_t k = 0; k < p->n_chunks; k++) {
        const cJSON *w = cJSON_GetArrayItem(want, (int)k);
        const cJSON *l = cJSON_GetObjectItem(w, "ids_l"), *g = cJSON_GetObjectItem(w, "ids_g"),
                    *m = cJSON_GetObjectItem(w, "weights");
        for (int i = 0; i < SD_TOK_CONTEXT; i++) {
            if (p->chunks[k].ids_l[i] != cJSON_GetArrayItem(l, i)->valueint ||
                p->chunks[k].ids_g[i] != cJSON_GetArrayItem(g, i)->valueint ||
                p->chunks[k].weights[i] != (float)cJSON_GetArrayItem(m, i)->valuedouble)
                fail_msg("case %d: chunk %zu position %d differs", ci, k, i);
        }
    }
}

static void test_goldens(void **state)
{
    const cJSON *cases = cJSON_GetObjectItem(goldens, "cases");
    int n = cJSON_GetArraySize(cases), errors = 0, multi_chunk = 0;
    assert_true(n >= 50);
    for (int i = 0; i < n; i++) {
        const cJSON *c = cJSON_GetArrayItem(cases, i);
        sd_prompt_options o = {.comma_padding_backtrack = (int)num(c, "backtrack"),
                               .emphasis = cJSON_IsTrue(cJSON_GetObjectItem(c, "emphasis")),
                               .strip_extra_networks = cJSON_IsTrue(cJSON_GetObjectItem(c, "strip"))};
        const char *prompt = str(c, "prompt");
        sd_prompt p;
        char err[256] = "";
        int rc = sd_prompt_prepare(tok, prompt, strlen(prompt), &o, &p, err, sizeof err);
        if (cJSON_GetObjectItem(c, "error")) {
            if (rc == 0) fail_msg("case %d (%.60s): accepted, the reference refuses it", i, prompt);
            assert_true(strlen(err) > 0);
            assert_null(p.chunks);
            errors++;
            continue;
        }
        if (rc != 0) fail_msg("case %d (%.60s): %s", i, prompt, err);
        assert_string_equal(p.text, str(c, "text"));
        assert_int_equal(p.is_empty, cJSON_IsTrue(cJSON_GetObjectItem(c, "is_empty")));
        check_networks(cJSON_GetObjectItem(c, "networks"), &p, i);
        check_fragments(cJSON_GetObjectItem(c, "fragments"), &p, i);
        check_chunks(cJSON_GetObjectItem(c, "chunks"), &p, i);
        assert_int_equal(p.token_count, (size_t)num(c, "token_count"));
        multi_chunk += p.n_chunks > 1;
        sd_prompt_free(&p);
    }
    assert_true(errors >= 6);
    assert_true(multi_chunk >= 15);
}

static sd_prompt prepare(const char *text)
{
    sd_prompt p;
    char err[256];
    if (sd_prompt_prepare(tok, text, strlen(text), NULL, &p, err, sizeof err)) fail_msg("%s: %s", text, err);
    return p;
}

static void test_lora_tags_are_cut_out(void **state)
{
    sd_prompt p = prepare("<lora:detail_tweaker:0.8> a cat, <lyco:style:0.5:0.25> <lora:x:unet=0.3>");
    assert_string_equal(p.text, " a cat,  ");
    assert_int_equal(p.n_networks, 3);
    assert_string_equal(p.networks[0].kind, "lora");
    assert_string_equal(p.networks[0].name, "detail_tweaker");
    assert_string_equal(p.networks[0].raw, "<lora:detail_tweaker:0.8>");
    assert_true(p.networks[0].te_multiplier == 0.8 && p.networks[0].unet_multiplier == 0.8);
    assert_string_equal(p.networks[1].kind, "lyco");
    assert_true(p.networks[1].te_multiplier == 0.5 && p.networks[1].unet_multiplier == 0.25);
    assert_true(p.networks[2].te_multiplier == 1.0 && p.networks[2].unet_multiplier == 0.3);
    sd_prompt_free(&p);

    char err[256], *text;
    size_t text_len, n;
    sd_extra_network *nets;
    const char *two = "a<hypernet:h:2>b<lora:c:0.5:te=0.25>";
    assert_int_equal(sd_prompt_strip_extra_networks(two, strlen(two), &text, &text_len, &nets, &n, err, sizeof err), 0);
    assert_string_equal(text, "ab");
    assert_int_equal(n, 2);
    assert_string_equal(nets[0].kind, "hypernet");
    assert_true(nets[0].te_multiplier == 1.0); /* only lora/lyco read multipliers */
    assert_true(nets[1].te_multiplier == 0.25 && nets[1].unet_multiplier == 0.25); /* te= wins */
    sd_extra_networks_free(nets, n);
    free(text);

    const char *bad = "<lora:x:strong>";
    assert_int_equal(sd_prompt_prepare(tok, bad, strlen(bad), NULL, &p, err, sizeof err), -1);
    assert_non_null(strstr(err, "<lora:x:strong>"));

    /* A1111 leaves tags in the negative prompt: they are text there. */
    sd_prompt_options keep = SD_PROMPT_OPTIONS_DEFAULT;
    keep.strip_extra_networks = false;
    assert_int_equal(sd_prompt_prepare(tok, "<lora:x:1>", 10, &keep, &p, err, sizeof err), 0);
    assert_int_equal(p.n_networks, 0);
    assert_false(p.is_empty);
    sd_prompt_free(&p);
}

static void test_empty_prompt_rule(void **state)
{
    sd_prompt p = prepare(""); /* clang UBSan: no NULL + 0 on the empty text (fuzz seed-511993d3c997) */
    assert_true(p.is_empty);
    assert_int_equal(p.n_chunks, 1); /* still encodable: BOS, EOS x 76 */
    assert_int_equal(p.chunks[0].ids_l[1], SD_TOK_EOS);
    assert_int_equal(p.chunks[0].ids_g[2], 0);
    sd_prompt_free(&p);
    p = prepare("<lora:only_a_lora:1>");
    assert_true(p.is_empty);
    sd_prompt_free(&p);
    p = prepare("   ");
    assert_false(p.is_empty); /* A1111 compares with "" exactly */
    sd_prompt_free(&p);
}

static void test_escapes_and_weights(void **state)
{
    sd_prompt_fragment *f;
    size_t n;
    char err[256];
    const char *text = "\\(a\\) \\[b\\] c\\\\d e\\f (g:1.5) [h]";
    assert_int_equal(sd_prompt_parse_attention(text, strlen(text), &f, &n, err, sizeof err), 0);
    assert_int_equal(n, 4);
    assert_string_equal(f[0].text, "(a) [b] c\\d ef "); /* a lone backslash vanishes */
    assert_true(f[0].weight == 1.0);
    assert_string_equal(f[1].text, "g");
    assert_true(f[1].weight == 1.5);
    assert_string_equal(f[2].text, " ");
    assert_string_equal(f[3].text, "h");
    assert_true(f[3].weight == 1.0 * (1 / 1.1)); /* multiplied by 1/1.1, not divided by 1.1 */
    sd_prompt_fragments_free(f, n);

    text = "(a:1..2)";
    assert_int_equal(sd_prompt_parse_attention(text, strlen(text), &f, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "1..2"));
}

static void test_break(void **state)
{
    sd_prompt p = prepare("a red cat BREAK a blue dog");
    assert_int_equal(p.n_chunks, 2);
    assert_int_equal(p.chunks[0].ids_l[4], SD_TOK_EOS); /* BOS a red cat EOS */
    assert_int_equal(p.chunks[1].ids_l[1], 320);       /* "a" opens chunk 2 */
    sd_prompt_free(&p);
    p = prepare("a red cat break a blue dog"); /* only upper case is BREAK */
    assert_int_equal(p.n_chunks, 1);
    sd_prompt_free(&p);
    p = prepare("BREAK"); /* empty fragments only (their text pool stays NULL: no NULL + 0, issue 16) */
    assert_int_equal(p.n_chunks, 1);
    for (size_t k = 0; k < p.n_fragments; k++) assert_non_null(p.fragments[k].text);
    sd_prompt_free(&p);
    p = prepare("(a BREAK b)"); /* inside brackets the weight is -1.1: plain text */
    assert_int_equal(p.n_chunks, 1);
    assert_int_equal(p.n_fragments, 3);
    assert_true(p.fragments[1].weight == -1 * 1.1);
    sd_prompt_free(&p);
}

static void test_comma_backtrack(void **state)
{
    /* 60 "cat", a comma, 30 "dog": the comma sits at position 60 of the first
     * chunk, 15 from its end, so "dog" tokens after it move to chunk 2. */
    char text[1024] = "";
    for (int i = 0; i < 60; i++) strcat(text, "cat ");
    strcat(text, ",");
    for (int i = 0; i < 30; i++) strcat(text, " dog");
    sd_prompt p = prepare(text);
    assert_int_equal(p.n_chunks, 2);
    assert_int_equal(p.chunks[0].ids_l[61], SD_TOK_COMMA);
    assert_int_equal(p.chunks[0].ids_l[62], SD_TOK_EOS);
    assert_true(p.chunks[0].weights[62] == 1.0f);
    for (int i = 1; i <= 30; i++) assert_int_equal(p.chunks[1].ids_l[i], 1929); /* dog</w> */
    assert_int_equal(p.token_count, 75 + 30);
    sd_prompt_free(&p);

    sd_prompt_options o = SD_PROMPT_OPTIONS_DEFAULT;
    o.comma_padding_backtrack = 0;
    char err[256];
    assert_int_equal(sd_prompt_prepare(tok, text, strlen(text), &o, &p, err, sizeof err), 0);
    assert_int_equal(p.chunks[0].ids_l[62], 1929); /* no backtrack: the chunk is filled */
    assert_int_equal(p.chunks[0].ids_l[75], 1929);
    sd_prompt_free(&p);
}

static void test_nesting_limit(void **state)
{
    char text[SD_PROMPT_MAX_NESTING + 8];
    memset(text, '(', SD_PROMPT_MAX_NESTING);
    strcpy(text + SD_PROMPT_MAX_NESTING, "a");
    sd_prompt p = prepare(text); /* exactly the limit is fine */
    sd_prompt_free(&p);
    memset(text, '[', SD_PROMPT_MAX_NESTING + 1);
    strcpy(text + SD_PROMPT_MAX_NESTING + 1, "a");
    char err[256];
    assert_int_equal(sd_prompt_prepare(tok, text, strlen(text), NULL, &p, err, sizeof err), -1);
    assert_non_null(strstr(err, "nested"));
}

/* Invalid UTF-8 is read as U+FFFD; everything returned is valid UTF-8. */
static void test_invalid_utf8(void **state)
{
    sd_prompt p;
    char err[256];
    const char text[] = "(a\xff:1.2) <lora:\xc3:1>";
    assert_int_equal(sd_prompt_prepare(tok, text, sizeof text - 1, NULL, &p, err, sizeof err), 0);
    assert_string_equal(p.text, "(a\xef\xbf\xbd:1.2) ");
    assert_string_equal(p.fragments[0].text, "a\xef\xbf\xbd");
    assert_int_equal(p.n_networks, 1);
    assert_string_equal(p.networks[0].name, "\xef\xbf\xbd");
    sd_prompt_free(&p);
}

/* A 1 MB prompt of brackets, commas, BREAKs and tags goes through. */
static void test_megabyte_prompt(void **state)
{
    const char *unit = "(masterpiece:1.2), [[blurry]], a \\(cat\\) BREAK <lora:x:0.5> ((dog)), ";
    size_t unit_len = strlen(unit), len = 0, cap = 1 << 20;
    char *text = malloc(cap + unit_len + 1);
    while (len < cap) memcpy(text + len, unit, unit_len), len += unit_len;
    sd_prompt p;
    char err[256];
    assert_int_equal(sd_prompt_prepare(tok, text, len, NULL, &p, err, sizeof err), 0);
    assert_true(p.n_chunks > 10000);
    assert_int_equal(p.n_networks, len / unit_len);
    sd_prompt_free(&p);
    memset(text, '(', len / 2); /* too deep: refused quickly */
    assert_int_equal(sd_prompt_prepare(tok, text, len, NULL, &p, err, sizeof err), -1);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_goldens),
        cmocka_unit_test(test_lora_tags_are_cut_out),
        cmocka_unit_test(test_empty_prompt_rule),
        cmocka_unit_test(test_escapes_and_weights),
        cmocka_unit_test(test_break),
        cmocka_unit_test(test_comma_backtrack),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_megabyte_prompt),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

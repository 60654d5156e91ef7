/* sd/tokenizer and sd/unicode against transformers' CLIPTokenizer: every case
 * of tests/data/tokenizer_goldens.json (tools/reference/make_tokenizer_goldens.py)
 * in all three variants, untruncated and as 77-token inputs; the derived
 * vocabulary; invalid UTF-8 decoding; and 1 MB inputs (which must not take
 * quadratic time). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "sd/tokenizer.h"
#include "sd/unicode.h"
#include "testutil.h"

static cJSON *goldens;
static sd_tokenizer *tok;

static int setup(void **state)
{
    goldens = tu_read_json("tests/data/tokenizer_goldens.json");
    tok = sd_tokenizer_new();
    return goldens && tok ? 0 : -1;
}

static int teardown(void **state)
{
    cJSON_Delete(goldens);
    sd_tokenizer_free(tok);
    return 0;
}

/* The input bytes of a case: "text" (UTF-8) or "hex". Caller frees. */
static char *case_bytes(const cJSON *c, size_t *len)
{
    const cJSON *text = cJSON_GetObjectItem(c, "text");
    if (text) {
        *len = strlen(text->valuestring);
        return strdup(text->valuestring);
    }
    const char *hex = cJSON_GetObjectItem(c, "hex")->valuestring;
    *len = strlen(hex) / 2;
    char *b = malloc(*len + 1);
    for (size_t i = 0; i < *len; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        b[i] = (char)v;
    }
    return b;
}

static const cJSON *cases(void) { return cJSON_GetObjectItem(goldens, "cases"); }

static void assert_ids(const cJSON *want, size_t from, size_t count, const int32_t *got, size_t n,
                       int case_index, const char *what)
{
    if (n != count) fail_msg("case %d %s: %zu ids, reference %zu", case_index, what, n, count);
    for (size_t i = 0; i < count; i++) {
        int w = cJSON_GetArrayItem(want, (int)(from + i))->valueint;
        if (got[i] != w) fail_msg("case %d %s: id %zu is %d, reference %d", case_index, what, i, got[i], w);
    }
}

/* Content ids (the reference's input_ids without its BOS and EOS). */
static void check_content(sd_tok_variant v, const char *key, bool fallback_to_l)
{
    int n = cJSON_GetArraySize(cases()), checked = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *c = cJSON_GetArrayItem(cases(), i);
        const cJSON *want = cJSON_GetObjectItem(c, key);
        if (!want && fallback_to_l) want = cJSON_GetObjectItem(c, "l");
        size_t len;
        char *bytes = case_bytes(c, &len);
        sd_tok_ids ids = {0};
        assert_int_equal(sd_tokenize(tok, v, bytes, len, &ids), 0);
        int total = cJSON_GetArraySize(want);
        assert_int_equal(cJSON_GetArrayItem(want, 0)->valueint, SD_TOK_BOS);
        assert_int_equal(cJSON_GetArrayItem(want, total - 1)->valueint, SD_TOK_EOS);
        assert_ids(want, 1, (size_t)total - 2, ids.ids, ids.n, i, key);
        sd_tok_ids_free(&ids);
        free(bytes);
        checked++;
    }
    assert_true(checked >= 500);
}

static void test_clip_l_ids_match_transformers(void **state) { check_content(SD_TOK_CLIP_L, "l", false); }

static void test_bigg_diffusers_ids_match_transformers(void **state)
{
    check_content(SD_TOK_BIGG_DIFFUSERS, "g", true);
}

/* The A1111/open_clip bigG variant tokenizes exactly like CLIP-L. */
static void test_bigg_a1111_ids_equal_clip_l(void **state) { check_content(SD_TOK_BIGG, "l", false); }

static void test_77_token_inputs_match_transformers(void **state)
{
    int n = cJSON_GetArraySize(cases()), checked = 0, truncated = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *c = cJSON_GetArrayItem(cases(), i);
        const cJSON *l77 = cJSON_GetObjectItem(c, "l77"), *g77 = cJSON_GetObjectItem(c, "g77");
        if (!l77) continue;
        size_t len;
        char *bytes = case_bytes(c, &len);
        int32_t out[SD_TOK_CONTEXT];
        assert_int_equal(sd_tokenize_77(tok, SD_TOK_CLIP_L, bytes, len, out), 0);
        assert_ids(l77, 0, SD_TOK_CONTEXT, out, SD_TOK_CONTEXT, i, "l77");
        assert_int_equal(sd_tokenize_77(tok, SD_TOK_BIGG_DIFFUSERS, bytes, len, out), 0);
        assert_ids(g77, 0, SD_TOK_CONTEXT, out, SD_TOK_CONTEXT, i, "g77");
        truncated += cJSON_GetArraySize(cJSON_GetObjectItem(c, "l")) > SD_TOK_CONTEXT;
        free(bytes);
        checked++;
    }
    assert_true(checked >= 100);
    assert_true(truncated >= 20);
}

static void test_pad_modes_and_truncation(void **state)
{
    int32_t l[SD_TOK_CONTEXT], g[SD_TOK_CONTEXT], a[SD_TOK_CONTEXT];
    const char *cat = "a cat!";
    assert_int_equal(sd_tokenize_77(tok, SD_TOK_CLIP_L, cat, strlen(cat), l), 0);
    assert_int_equal(sd_tokenize_77(tok, SD_TOK_BIGG, cat, strlen(cat), a), 0);
    assert_int_equal(sd_tokenize_77(tok, SD_TOK_BIGG_DIFFUSERS, cat, strlen(cat), g), 0);
    const int32_t head_l[] = {SD_TOK_BOS, 320, 2368, 256, SD_TOK_EOS}; /* "!</w>" = 256 */
    const int32_t head_g[] = {SD_TOK_BOS, 320, 2368, 0, SD_TOK_EOS};  /* "!" is the added token 0 */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(l[i], head_l[i]);
        assert_int_equal(a[i], head_l[i]);
        assert_int_equal(g[i], head_g[i]);
    }
    for (int i = 5; i < SD_TOK_CONTEXT; i++) {
        assert_int_equal(l[i], SD_TOK_EOS);
        assert_int_equal(a[i], 0);
        assert_int_equal(g[i], 0);
    }
    assert_int_equal(sd_tok_pad_id(SD_TOK_CLIP_L), SD_TOK_EOS);
    assert_int_equal(sd_tok_pad_id(SD_TOK_BIGG), 0);

    char text[2000] = "";
    for (int i = 0; i < 100; i++) strcat(text, i % 2 ? "dog " : "cat ");
    assert_int_equal(sd_tokenize_77(tok, SD_TOK_BIGG, text, strlen(text), a), 0);
    assert_int_equal(a[0], SD_TOK_BOS);
    for (int i = 1; i <= 75; i++) assert_int_equal(a[i], i % 2 ? 2368 : 1929); /* cat</w>, dog</w> */
    assert_int_equal(a[76], SD_TOK_EOS);

    const int32_t three[] = {1, 2, 3};
    sd_tok_frame_77(SD_TOK_CLIP_L, three, 3, l);
    assert_int_equal(l[3], 3);
    assert_int_equal(l[4], SD_TOK_EOS);
    assert_int_equal(l[76], SD_TOK_EOS);
}

static void test_empty_text(void **state)
{
    sd_tok_ids ids = {0};
    assert_int_equal(sd_tokenize(tok, SD_TOK_CLIP_L, "", 0, &ids), 0);
    assert_int_equal(ids.n, 0);
    assert_int_equal(sd_tokenize(tok, SD_TOK_CLIP_L, " \t\n", 3, &ids), 0);
    assert_int_equal(ids.n, 0);
    sd_tok_ids_free(&ids);
    int32_t out[SD_TOK_CONTEXT];
    assert_int_equal(sd_tokenize_77(tok, SD_TOK_BIGG, "", 0, out), 0);
    assert_int_equal(out[0], SD_TOK_BOS);
    assert_int_equal(out[1], SD_TOK_EOS);
    assert_int_equal(out[2], 0);
}

static void test_vocabulary_is_derived_from_the_merges(void **state)
{
    const cJSON *vocab = cJSON_GetObjectItem(goldens, "vocab");
    int n = cJSON_GetArraySize(vocab);
    assert_true(n > 800);
    char buf[256];
    for (int i = 0; i < n; i++) {
        const cJSON *row = cJSON_GetArrayItem(vocab, i);
        int id = cJSON_GetArrayItem(row, 0)->valueint;
        const char *want = cJSON_GetArrayItem(row, 1)->valuestring;
        size_t len = sd_tok_token_text(tok, id, buf, sizeof buf);
        assert_int_equal(len, strlen(want));
        assert_string_equal(buf, want);
    }
    assert_int_equal(sd_tok_token_text(tok, SD_TOK_VOCAB_SIZE, buf, sizeof buf), 0);
    assert_int_equal(sd_tok_token_text(tok, -1, buf, sizeof buf), 0);
    /* A short buffer keeps a prefix and still reports the full length. */
    assert_int_equal(sd_tok_token_text(tok, SD_TOK_EOS, buf, 5), strlen("<|endoftext|>"));
    assert_string_equal(buf, "<|en");
}

/* Python's bytes.decode("utf-8", "replace") for every "hex" case. */
static void test_invalid_utf8_decodes_like_python(void **state)
{
    int n = cJSON_GetArraySize(cases()), checked = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *c = cJSON_GetArrayItem(cases(), i);
        const cJSON *want = cJSON_GetObjectItem(c, "decoded");
        if (!want) continue;
        size_t len;
        char *bytes = case_bytes(c, &len);
        uni_str s = {0};
        assert_int_equal(uni_decode_utf8(bytes, len, &s), 0);
        assert_int_equal(s.n, cJSON_GetArraySize(want));
        for (size_t k = 0; k < s.n; k++) assert_int_equal(s.cp[k], cJSON_GetArrayItem(want, (int)k)->valueint);
        uni_str_free(&s);
        free(bytes);
        checked++;
    }
    assert_true(checked >= 30);
}

static void test_utf8_round_trip(void **state)
{
    const char *text = "a\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80";
    uni_str s = {0};
    assert_int_equal(uni_decode_utf8(text, strlen(text), &s), 0);
    const uint32_t want[] = {'a', 0xE9, 0x65E5, 0x1F600};
    assert_int_equal(s.n, 4);
    for (int i = 0; i < 4; i++) assert_int_equal(s.cp[i], want[i]);
    size_t len;
    char *back = uni_to_utf8(s.cp, s.n, &len);
    assert_string_equal(back, text);
    assert_int_equal(len, strlen(text));
    free(back);
    uni_str_free(&s);
}

/* 1 MB inputs of the kinds that stress each stage: one giant word (BPE),
 * a run of combining marks (NFC ordering), mixed text, punctuation. They
 * must simply finish in the normal test time. */
static void tokenize_big(const char *unit, size_t expect_min)
{
    size_t unit_len = strlen(unit), len = 0, cap = (1 << 20) + unit_len;
    char *text = malloc(cap + 1);
    while (len + unit_len <= cap) memcpy(text + len, unit, unit_len), len += unit_len;
    sd_tok_ids ids = {0};
    assert_int_equal(sd_tokenize(tok, SD_TOK_BIGG_DIFFUSERS, text, len, &ids), 0);
    assert_true(ids.n >= expect_min);
    for (size_t i = 0; i < ids.n; i++) assert_true(ids.ids[i] >= 0 && ids.ids[i] < SD_TOK_VOCAB_SIZE);
    sd_tok_ids_free(&ids);
    free(text);
}

/* Lower-casing U+0130 gives two code points: the text after it must still
 * fit (a 16-code-point text overran its 16-slot buffer by one; found by
 * fuzz_prompt). */
static void test_lowercase_that_grows(void **state)
{
    uint32_t in[16] = {0x130};
    for (int i = 1; i < 16; i++) in[i] = 'A' + i;
    uni_str out = {0};
    assert_int_equal(uni_lowercase(in, 16, &out), 0);
    assert_int_equal(out.n, 17);
    assert_true(out.cap >= out.n);
    assert_int_equal(out.cp[0], 'i');
    assert_int_equal(out.cp[1], 0x307);
    for (int i = 1; i < 16; i++) assert_int_equal(out.cp[i + 1], 'a' + i);
    uni_str_free(&out);
    sd_tok_ids ids = {0};
    assert_int_equal(sd_tokenize(tok, SD_TOK_CLIP_L, "\xc4\xb0" "ABCDEFGHIJKLMNO", 17, &ids), 0);
    assert_true(ids.n > 0);
    sd_tok_ids_free(&ids);
}

static void test_megabyte_inputs_finish(void **state)
{
    tokenize_big("a", 1000);
    tokenize_big("ab", 1000);
    tokenize_big("\xcc\x81\xcc\xa3", 1000); /* U+0301 U+0323, reordered by NFC */
    tokenize_big("masterpiece, (best quality:1.2), ", 50000);
    tokenize_big("!?", 100000);
    tokenize_big("\xe6\x97\xa5\xf0\x9f\x98\x80 ", 100000);
    tokenize_big(" ", 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clip_l_ids_match_transformers),
        cmocka_unit_test(test_bigg_diffusers_ids_match_transformers),
        cmocka_unit_test(test_bigg_a1111_ids_equal_clip_l),
        cmocka_unit_test(test_77_token_inputs_match_transformers),
        cmocka_unit_test(test_pad_modes_and_truncation),
        cmocka_unit_test(test_empty_text),
        cmocka_unit_test(test_vocabulary_is_derived_from_the_merges),
        cmocka_unit_test(test_invalid_utf8_decodes_like_python),
        cmocka_unit_test(test_utf8_round_trip),
        cmocka_unit_test(test_lowercase_that_grows),
        cmocka_unit_test(test_megabyte_inputs_finish),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

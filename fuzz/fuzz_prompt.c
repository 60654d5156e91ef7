/* Fuzz target for the prompt path: arbitrary bytes (any UTF-8, valid or not)
 * through sd/prompt (tags, attention, BREAK, chunks) and sd/tokenizer (all
 * three variants). Input: byte 0 = options (bit 0 emphasis off, bit 1 keep
 * tags, bits 2-7 comma backtrack), then the prompt. Aborts when a result
 * breaks an invariant: ids outside the vocabulary, a chunk not framed as
 * BOS ... EOS, bigG ids not zero after the first EOS, pads not at weight 1,
 * texts that are not valid UTF-8, or a refusal without a message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sd/prompt.h"
#include "sd/unicode.h"

static void check(int ok)
{
    if (!ok) abort();
}

/* Valid UTF-8: decoding gives no U+FFFD that the bytes did not spell. */
static void check_utf8(const char *s, size_t len)
{
    uni_str cp = {0};
    check(uni_decode_utf8(s, len, &cp) == 0);
    size_t back_len;
    char *back = uni_to_utf8(cp.cp, cp.n, &back_len);
    check(back && back_len == len && memcmp(back, s, len) == 0);
    free(back);
    uni_str_free(&cp);
}

static void check_chunk(const sd_prompt_chunk *c)
{
    check(c->ids_l[0] == SD_TOK_BOS && c->ids_l[SD_TOK_CONTEXT - 1] == SD_TOK_EOS);
    check(c->weights[0] == 1.0f && c->weights[SD_TOK_CONTEXT - 1] == 1.0f);
    int first_eos = -1;
    for (int i = 0; i < SD_TOK_CONTEXT; i++) {
        check(c->ids_l[i] >= 0 && c->ids_l[i] < SD_TOK_VOCAB_SIZE);
        if (first_eos < 0) check(c->ids_g[i] == c->ids_l[i]);
        else check(c->ids_g[i] == 0);
        if (first_eos < 0 && c->ids_l[i] == SD_TOK_EOS) first_eos = i;
    }
}

static void check_prompt(const sd_prompt *p)
{
    check(p->n_chunks >= 1);
    for (size_t k = 0; k < p->n_chunks; k++) check_chunk(&p->chunks[k]);
    check_utf8(p->text, p->text_len);
    check(p->is_empty == (p->text_len == 0));
    for (size_t k = 0; k < p->n_fragments; k++) check_utf8(p->fragments[k].text, p->fragments[k].len);
    for (size_t k = 0; k < p->n_networks; k++) {
        check_utf8(p->networks[k].raw, strlen(p->networks[k].raw));
        check(p->networks[k].raw[0] == '<');
    }
}

static void check_tokenizer(const sd_tokenizer *tok, const char *text, size_t len)
{
    for (int v = SD_TOK_CLIP_L; v <= SD_TOK_BIGG_DIFFUSERS; v++) {
        sd_tok_ids ids = {0};
        check(sd_tokenize(tok, (sd_tok_variant)v, text, len, &ids) == 0);
        for (size_t i = 0; i < ids.n; i++) check(ids.ids[i] >= 0 && ids.ids[i] < SD_TOK_VOCAB_SIZE);
        sd_tok_ids_free(&ids);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sd_tokenizer *tok;
    if (!tok) tok = sd_tokenizer_new();
    if (size == 0) return 0;
    sd_prompt_options o = {.emphasis = !(data[0] & 1), .strip_extra_networks = !(data[0] & 2),
                           .comma_padding_backtrack = data[0] >> 2};
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    sd_prompt p;
    char err[256] = "";
    if (sd_prompt_prepare(tok, text, len, &o, &p, err, sizeof err) == 0) {
        check_prompt(&p);
        sd_prompt_free(&p);
    } else {
        check(err[0] != '\0' && p.chunks == NULL);
    }
    check_tokenizer(tok, text, len);
    return 0;
}

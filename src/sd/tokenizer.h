/* CLIP byte-level BPE tokenizer of SDXL's two text encoders, identical to
 * transformers' CLIPTokenizer (transformers 5, backed by `tokenizers`) as
 * diffusers loads SDXL's `tokenizer` and `tokenizer_2` folders (the configs
 * of tools/reference/clip_vocab.py). Goldens: tests/data/tokenizer_goldens.json.
 *
 * Text -> ids, in the reference's order:
 *   1. UTF-8 -> codepoints; invalid bytes become U+FFFD as Python's
 *      bytes.decode("utf-8", "replace") does (the reference takes str);
 *   2. the added tokens are cut out of the raw text first, literally and
 *      case-sensitively: "<|startoftext|>" -> 49406, "<|endoftext|>" -> 49407,
 *      and, for SD_TOK_BIGG_DIFFUSERS only, every "!" -> 0;
 *   3. each remaining piece is normalised: NFC, runs of \s -> one space,
 *      per-character lower case (no ftfy, no HTML unescaping, no BERT
 *      clean-up: transformers 5 has none of them);
 *   4. split with CLIP's pattern  <\|startoftext\|>|<\|endoftext\|>|'s|'t|
 *      're|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+  (whitespace
 *      dropped), then the ByteLevel pre-tokenizer's GPT-2 split, which only
 *      ever cuts the two special-name pieces into "<|", name, "|>";
 *   5. each word: its UTF-8 bytes as byte symbols, "</w>" on the last one,
 *      BPE merges applied lowest rank first (ties: leftmost).
 * The vocabulary (49408 tokens) is derived from the embedded merge list:
 * 256 byte symbols, the same with "</w>", one token per merge, BOS, EOS.
 * A tokenizer is immutable after sd_tokenizer_new and may be shared by
 * threads. Every function is linear (BPE: n log n) in the input length. */
#ifndef SDXL_SD_TOKENIZER_H
#define SDXL_SD_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#define SD_TOK_VOCAB_SIZE 49408
#define SD_TOK_BOS 49406      /* <|startoftext|> */
#define SD_TOK_EOS 49407      /* <|endoftext|> */
#define SD_TOK_BANG 0         /* "!" (also the bigG pad id) */
#define SD_TOK_COMMA 267      /* ",</w>", A1111's comma_token */
#define SD_TOK_CONTEXT 77     /* model_max_length: BOS + 75 + EOS */

typedef enum {
    /* SDXL `tokenizer` (CLIP ViT-L): pads with EOS 49407. */
    SD_TOK_CLIP_L = 0,
    /* OpenCLIP bigG as A1111/SGM/open_clip tokenize it: the same ids as
     * CLIP-L, padded with 0 after the EOS. */
    SD_TOK_BIGG,
    /* SDXL `tokenizer_2` exactly as transformers loads it for diffusers:
     * pad_token "!" is an added special token, so every literal "!" in the
     * text is cut out as id 0 before BPE (diffusers issue #4153), then pads
     * with 0. */
    SD_TOK_BIGG_DIFFUSERS,
} sd_tok_variant;

typedef struct sd_tokenizer sd_tokenizer;

/* Content ids of one text (no BOS/EOS). Zero-initialise; free with
 * sd_tok_ids_free. */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} sd_tok_ids;

/* Builds the tokenizer from the embedded merge list (a few ms). NULL when
 * out of memory. */
sd_tokenizer *sd_tokenizer_new(void);
void sd_tokenizer_free(sd_tokenizer *t); /* NULL is fine */

/* Appends the content ids of `len` bytes of text to out: transformers'
 * tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"].
 * Returns 0, or -1 when out of memory. */
int sd_tokenize(const sd_tokenizer *t, sd_tok_variant v, const char *text, size_t len,
                sd_tok_ids *out);
void sd_tok_ids_free(sd_tok_ids *ids);

/* tokenizer(text, padding="max_length", max_length=77, truncation=True):
 * BOS, the first 75 content ids, EOS, then the variant's pad id. */
int sd_tokenize_77(const sd_tokenizer *t, sd_tok_variant v, const char *text, size_t len,
                   int32_t out[SD_TOK_CONTEXT]);

/* Lays out up to 75 content ids as BOS, ids, EOS, pads (the variant's pad
 * id); extra ids are dropped. */
void sd_tok_frame_77(sd_tok_variant v, const int32_t *ids, size_t n, int32_t out[SD_TOK_CONTEXT]);

int32_t sd_tok_pad_id(sd_tok_variant v); /* 49407 for CLIP-L, 0 for bigG */

/* The vocabulary string of a token, as in vocab.json (byte symbols such as
 * "Ġ", "</w>" suffixes), NUL-terminated in buf. Returns its length in bytes
 * (which may exceed buflen - 1: then buf holds a truncated prefix), or 0 for
 * an id outside the vocabulary. */
size_t sd_tok_token_text(const sd_tokenizer *t, int32_t id, char *buf, size_t buflen);

#endif

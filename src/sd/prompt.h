/* Prompts as AUTOMATIC1111's webui reads them, turned into the 77-token
 * chunks SDXL's text encoders take. Owns: extra-network tags (<lora:...>),
 * the attention syntax ((text), [text], (text:1.3), escapes, BREAK), and
 * A1111's chunking (75 tokens per chunk, comma backtrack). The semantics,
 * with every quirk kept, are documented in docs/prompts.md; goldens from an
 * independent Python reference are in tests/data/prompt_goldens.json.
 *
 * Matched by reading modules/prompt_parser.py (parse_prompt_attention),
 * modules/sd_hijack_clip.py (tokenize_line, process_tokens),
 * modules/extra_networks.py (parse_prompt) and extensions-builtin/Lora/
 * extra_networks_lora.py of stable-diffusion-webui 1.10.
 *
 * Input is any bytes: invalid UTF-8 is read as U+FFFD (like Python's
 * decode("utf-8", "replace")); every text this module returns is valid
 * UTF-8. Work is linear in the prompt length times the bracket nesting,
 * which is limited to SD_PROMPT_MAX_NESTING (deeper prompts are refused). */
#ifndef SDXL_SD_PROMPT_H
#define SDXL_SD_PROMPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sd/embedding.h"
#include "sd/tokenizer.h"

#define SD_PROMPT_CHUNK_CONTENT 75   /* A1111 chunk_length */
#define SD_PROMPT_COMMA_BACKTRACK 20 /* A1111 default opts.comma_padding_backtrack */
#define SD_PROMPT_MAX_NESTING 256    /* open ( and [ at once; not an A1111 limit */

/* A run of prompt text with one attention weight (A1111's [text, weight]). */
typedef struct {
    char *text; /* UTF-8, NUL-terminated */
    size_t len;
    double weight; /* a BREAK marker is the text "BREAK" with weight -1 */
} sd_prompt_fragment;

/* One extra-network tag <kind:arg:arg...> cut out of the prompt. */
typedef struct {
    char *kind; /* the word after '<': "lora", "lyco", "hypernet", ... */
    char *name; /* the first positional argument */
    char *raw;  /* the whole tag as written, for the infotext */
    /* For kind "lora" and "lyco" (A1111's Lora extension): te = the second
     * positional argument or te=..., default 1.0; unet = the third positional
     * argument or unet=..., default te. Both 1.0 for other kinds. */
    double te_multiplier;
    double unet_multiplier;
} sd_extra_network;

/* One chunk as the encoders take it: BOS, 75 content tokens or pads, EOS. */
typedef struct {
    int32_t ids_l[SD_TOK_CONTEXT]; /* CLIP-L: BOS, tokens, EOS, EOS... (pad 49407) */
    int32_t ids_g[SD_TOK_CONTEXT]; /* bigG: ids_l with every position after the first EOS set to 0 */
    float weights[SD_TOK_CONTEXT]; /* per token; 1.0 for BOS, EOS and pads (A1111 float32 multipliers) */
    /* Textual-inversion vectors (A1111's PromptChunkFix applied as
     * EmbeddingsWithFixes does): row r takes vector emb_vector[r] of
     * embedding emb[r] - 1 in place of its token's embedding; 0: none. The
     * ids there are 0, A1111's placeholder. */
    int16_t emb[SD_TOK_CONTEXT];
    uint8_t emb_vector[SD_TOK_CONTEXT];
} sd_prompt_chunk;

typedef struct {
    int comma_padding_backtrack; /* A1111's option; 0 turns the backtrack off */
    bool emphasis;               /* false = A1111 emphasis "None": no attention syntax, no BREAK */
    bool strip_extra_networks;   /* A1111 strips tags from the positive prompt only */
    const sd_embedding_db *embeddings; /* names whose vectors replace their tokens; NULL: none */
} sd_prompt_options;

#define SD_PROMPT_OPTIONS_DEFAULT \
    ((sd_prompt_options){.comma_padding_backtrack = SD_PROMPT_COMMA_BACKTRACK, .emphasis = true, \
                         .strip_extra_networks = true})

typedef struct {
    char *text; /* the prompt after tag stripping (UTF-8, NUL-terminated) */
    size_t text_len;
    /* A1111's force_zero_negative_prompt test (and diffusers'
     * force_zeros_for_empty_prompt): the text is exactly empty. For a
     * negative prompt the encoder then uses all-zero context AND pooled
     * vector instead of encoding. Whitespace is not empty (A1111). */
    bool is_empty;
    sd_extra_network *networks;
    size_t n_networks;
    sd_prompt_fragment *fragments;
    size_t n_fragments;
    sd_prompt_chunk *chunks; /* at least one */
    size_t n_chunks;
    size_t token_count; /* A1111's token count (75 per full chunk + the last chunk's tokens) */
    const sd_embedding_db *embeddings; /* the options' set: the encoders read the vectors there */
    size_t *used;       /* embeddings placed, by index, in A1111's order of first use (chunk by chunk) */
    size_t n_used;
} sd_prompt;

/* The whole pipeline: tags, attention, tokens (CLIP-L ids, which A1111 also
 * feeds bigG), embeddings, chunks. opts may be NULL (defaults). On failure
 * returns -1 with one line in err (a malformed <lora:...> multiplier, an
 * attention weight that is not a number, nesting deeper than
 * SD_PROMPT_MAX_NESTING, out of memory), or SD_PROMPT_EUNAVAILABLE when the
 * text names an embedding that could not be loaded (err names it and says
 * why), and *out zeroed. */
#define SD_PROMPT_EUNAVAILABLE (-2)
int sd_prompt_prepare(const sd_tokenizer *tok, const char *text, size_t len,
                      const sd_prompt_options *opts, sd_prompt *out, char *err, size_t errlen);
void sd_prompt_free(sd_prompt *p);

/* The steps on their own (each allocates what it returns; free with the
 * functions below). */

/* extra_networks.parse_prompt: removes every <\w+:[^>]+> tag. */
int sd_prompt_strip_extra_networks(const char *text, size_t len, char **stripped, size_t *stripped_len,
                                   sd_extra_network **nets, size_t *n_nets, char *err, size_t errlen);
void sd_extra_networks_free(sd_extra_network *nets, size_t n);

/* prompt_parser.parse_prompt_attention. */
int sd_prompt_parse_attention(const char *text, size_t len, sd_prompt_fragment **frags, size_t *n_frags,
                              char *err, size_t errlen);
void sd_prompt_fragments_free(sd_prompt_fragment *frags, size_t n);

/* sd_hijack_clip's tokenize_line over parsed fragments. */
int sd_prompt_make_chunks(const sd_tokenizer *tok, const sd_prompt_fragment *frags, size_t n_frags,
                          int comma_padding_backtrack, sd_prompt_chunk **chunks, size_t *n_chunks,
                          size_t *token_count, char *err, size_t errlen);
/* The same with textual-inversion embeddings (emb may be NULL): where a
 * fragment's tokens spell an embedding's name, its n vectors take n slots
 * (a new chunk first when they do not fit in this one), weighted as the
 * fragment; `used` collects the embeddings placed (freed by the caller).
 * Fixes stay with the chunk they were made in, also when A1111's comma
 * backtrack moves their slots into the next chunk (as A1111 does). */
int sd_prompt_make_chunks_embedded(const sd_tokenizer *tok, const sd_embedding_db *emb,
                                   const sd_prompt_fragment *frags, size_t n_frags, int comma_padding_backtrack,
                                   sd_prompt_chunk **chunks, size_t *n_chunks, size_t *token_count,
                                   size_t **used, size_t *n_used, char *err, size_t errlen);

#endif

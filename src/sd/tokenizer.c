/* CLIP BPE tokenizer (see tokenizer.h for the exact pipeline). Matched by
 * reading transformers/models/clip/tokenization_clip.py (5.x: the normalizer
 * and pre-tokenizer it configures), tokenizers' BPE model (word.rs:
 * merge_all, a priority queue by (rank, position)) and open_clip's
 * tokenizer.py (bytes_to_unicode, vocabulary order). */
#include "sd/tokenizer.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "image/utf8.h"
#include "sd/clip_bpe_data.h"
#include "sd/unicode.h"

#define FIRST_MERGE_ID 512
#define PAIR_TABLE_BITS 17 /* 131072 slots for 48894 merges */

struct sd_tokenizer {
    uint32_t *pair_key;       /* (left << 16 | right) + 1; 0 = empty slot */
    uint16_t *pair_rank;
    uint16_t byte_token[256]; /* token id of the symbol of byte b */
    uint8_t token_byte[256];  /* inverse: the byte of token id i < 256 */
};

/* --- vocabulary ------------------------------------------------------------ */

/* bytes_to_unicode: printable Latin-1 bytes stand for themselves and come
 * first in the vocabulary; the other 68 bytes follow as U+0100 + n. */
static bool byte_is_printable(int b)
{
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

static void build_byte_symbols(sd_tokenizer *t)
{
    int next = 0;
    for (int b = 0; b < 256; b++)
        if (byte_is_printable(b)) t->byte_token[b] = (uint16_t)next++;
    for (int b = 0; b < 256; b++)
        if (!byte_is_printable(b)) t->byte_token[b] = (uint16_t)next++;
    for (int b = 0; b < 256; b++) t->token_byte[t->byte_token[b]] = (uint8_t)b;
}

static uint32_t byte_symbol_codepoint(int b)
{
    if (byte_is_printable(b)) return (uint32_t)b;
    int n = 0;
    for (int x = 0; x < b; x++) n += !byte_is_printable(x);
    return 256u + (uint32_t)n;
}

static size_t pair_slot(uint32_t key)
{
    return (size_t)((key * 2654435761u) >> (32 - PAIR_TABLE_BITS));
}

static uint32_t pair_key(int32_t left, int32_t right)
{
    return ((uint32_t)left << 16 | (uint32_t)right) + 1;
}

/* Rank of the merge (left, right), or -1. */
static int32_t merge_rank(const sd_tokenizer *t, int32_t left, int32_t right)
{
    if (left >= FIRST_MERGE_ID + SD_CLIP_NUM_MERGES || right >= FIRST_MERGE_ID + SD_CLIP_NUM_MERGES)
        return -1;
    uint32_t key = pair_key(left, right);
    const size_t mask = ((size_t)1 << PAIR_TABLE_BITS) - 1;
    for (size_t s = pair_slot(key);; s = (s + 1) & mask) {
        if (t->pair_key[s] == key) return t->pair_rank[s];
        if (t->pair_key[s] == 0) return -1;
    }
}

sd_tokenizer *sd_tokenizer_new(void)
{
    sd_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    const size_t slots = (size_t)1 << PAIR_TABLE_BITS;
    t->pair_key = calloc(slots, sizeof *t->pair_key);
    t->pair_rank = calloc(slots, sizeof *t->pair_rank);
    if (!t->pair_key || !t->pair_rank) { sd_tokenizer_free(t); return NULL; }
    build_byte_symbols(t);
    for (uint32_t r = 0; r < SD_CLIP_NUM_MERGES; r++) {
        uint32_t key = pair_key(sd_clip_merges[2 * r], sd_clip_merges[2 * r + 1]);
        size_t s = pair_slot(key);
        while (t->pair_key[s] != 0) s = (s + 1) & (slots - 1);
        t->pair_key[s] = key;
        t->pair_rank[s] = (uint16_t)r;
    }
    return t;
}

void sd_tokenizer_free(sd_tokenizer *t)
{
    if (!t) return;
    free(t->pair_key);
    free(t->pair_rank);
    free(t);
}

/* Appends the text of token id to buf[*len..] (bounded by cap); *len counts
 * every byte, also those that did not fit. */
static void token_text(const sd_tokenizer *t, int32_t id, char *buf, size_t cap, size_t *len)
{
    char tmp[4];
    const char *piece = tmp;
    size_t n;
    if (id >= FIRST_MERGE_ID + SD_CLIP_NUM_MERGES) {
        piece = id == SD_TOK_BOS ? "<|startoftext|>" : "<|endoftext|>";
        n = strlen(piece);
    } else if (id >= FIRST_MERGE_ID) {
        int r = id - FIRST_MERGE_ID;
        token_text(t, sd_clip_merges[2 * r], buf, cap, len);
        token_text(t, sd_clip_merges[2 * r + 1], buf, cap, len);
        return;
    } else {
        n = utf8_put(byte_symbol_codepoint(t->token_byte[id & 255]), tmp);
        if (id >= 256) {
            for (size_t i = 0; i < n; i++) {
                if (*len + i < cap) buf[*len + i] = tmp[i];
            }
            *len += n;
            piece = "</w>";
            n = 4;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (*len + i < cap) buf[*len + i] = piece[i];
    *len += n;
}

size_t sd_tok_token_text(const sd_tokenizer *t, int32_t id, char *buf, size_t buflen)
{
    if (id < 0 || id >= SD_TOK_VOCAB_SIZE) {
        if (buflen) buf[0] = '\0';
        return 0;
    }
    size_t len = 0, cap = buflen ? buflen - 1 : 0;
    token_text(t, id, buf, cap, &len);
    if (buflen) buf[len < cap ? len : cap] = '\0';
    return len;
}

/* --- output ------------------------------------------------------------------ */

void sd_tok_ids_free(sd_tok_ids *ids)
{
    free(ids->ids);
    ids->ids = NULL;
    ids->n = ids->cap = 0;
}

static int emit(sd_tok_ids *out, int32_t id)
{
    if (out->n == out->cap) {
        size_t cap = out->cap ? 2 * out->cap : 64;
        int32_t *p = realloc(out->ids, cap * sizeof *p);
        if (!p) return -1;
        out->ids = p;
        out->cap = cap;
    }
    out->ids[out->n++] = id;
    return 0;
}

/* --- BPE ------------------------------------------------------------------------ */

/* Scratch space of one sd_tokenize call, reused for every word. */
typedef struct {
    int32_t *id, *prev, *next;
    uint64_t *heap; /* (rank << 32 | position): min-heap = lowest rank, then leftmost */
    size_t heap_n, cap;
    char *bytes;
    size_t bytes_cap;
} bpe_work;

static void work_free(bpe_work *w)
{
    free(w->id), free(w->prev), free(w->next), free(w->heap), free(w->bytes);
}

static int work_reserve(bpe_work *w, size_t n)
{
    if (n <= w->cap) return 0;
    size_t cap = w->cap ? w->cap : 64;
    while (cap < n) cap *= 2;
    int32_t *id = realloc(w->id, cap * sizeof *id);
    if (id) w->id = id;
    int32_t *prev = realloc(w->prev, cap * sizeof *prev);
    if (prev) w->prev = prev;
    int32_t *next = realloc(w->next, cap * sizeof *next);
    if (next) w->next = next;
    uint64_t *heap = realloc(w->heap, cap * sizeof *heap); /* at most one live entry per symbol */
    if (heap) w->heap = heap;
    if (!id || !prev || !next || !heap) return -1;
    w->cap = cap;
    return 0;
}

static void heap_push(bpe_work *w, uint64_t v)
{
    size_t i = w->heap_n++;
    while (i > 0 && w->heap[(i - 1) / 2] > v) {
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = v;
}

static uint64_t heap_pop(bpe_work *w)
{
    uint64_t top = w->heap[0], v = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && w->heap[c + 1] < w->heap[c]) c++;
        if (w->heap[c] >= v) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = v;
    return top;
}

/* Queues the pair starting at symbol i, if it is a merge. A word of n
 * symbols queues at most n - 1 initial pairs plus two per merge (at most
 * n - 1 merges), so the heap never holds more than 2n entries. */
static void queue_pair(const sd_tokenizer *t, bpe_work *w, int32_t i)
{
    if (i < 0 || w->next[i] < 0) return;
    int32_t r = merge_rank(t, w->id[i], w->id[w->next[i]]);
    if (r >= 0) heap_push(w, (uint64_t)r << 32 | (uint32_t)i);
}

/* BPE of one word given as bytes: tokenizers' Word::merge_all. */
static int bpe_word(const sd_tokenizer *t, bpe_work *w, const char *bytes, size_t n, sd_tok_ids *out)
{
    if (n > (size_t)INT32_MAX / 2 || work_reserve(w, 2 * n)) return -1;
    for (size_t i = 0; i < n; i++) {
        w->id[i] = t->byte_token[(uint8_t)bytes[i]];
        w->prev[i] = (int32_t)i - 1;
        w->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    w->id[n - 1] += 256; /* the "</w>" form of the last byte symbol */
    w->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++) queue_pair(t, w, (int32_t)i);
    while (w->heap_n) {
        uint64_t top = heap_pop(w);
        int32_t rank = (int32_t)(top >> 32), i = (int32_t)(uint32_t)top;
        if (w->id[i] < 0 || w->next[i] < 0) continue;              /* symbol merged away */
        if (merge_rank(t, w->id[i], w->id[w->next[i]]) != rank) continue; /* stale entry */
        int32_t j = w->next[i];
        w->id[i] = FIRST_MERGE_ID + rank;
        w->id[j] = -1;
        w->next[i] = w->next[j];
        if (w->next[j] >= 0) w->prev[w->next[j]] = i;
        queue_pair(t, w, w->prev[i]);
        queue_pair(t, w, i);
    }
    for (int32_t i = 0; i >= 0; i = w->next[i])
        if (emit(out, w->id[i])) return -1;
    return 0;
}

static int bpe_codepoints(const sd_tokenizer *t, bpe_work *w, const uint32_t *cp, size_t n,
                          sd_tok_ids *out)
{
    if (n > SIZE_MAX / 4 - 1) return -1;
    if (4 * n > w->bytes_cap) {
        char *b = realloc(w->bytes, 4 * n);
        if (!b) return -1;
        w->bytes = b;
        w->bytes_cap = 4 * n;
    }
    size_t len = 0;
    for (size_t i = 0; i < n; i++) len += utf8_put(cp[i], w->bytes + len);
    return bpe_word(t, w, w->bytes, len, out);
}

/* --- split ---------------------------------------------------------------------- */

static bool has_prefix(const uint32_t *cp, size_t n, size_t i, const char *ascii)
{
    for (size_t k = 0; ascii[k]; k++)
        if (i + k >= n || cp[i + k] != (uint8_t)ascii[k]) return false;
    return true;
}

/* Length of CLIP's contraction alternative ('s 't 're 've 'm 'll 'd) at i, or 0. */
static size_t contraction_len(const uint32_t *cp, size_t n, size_t i)
{
    static const char *const forms[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    for (size_t k = 0; k < sizeof forms / sizeof *forms; k++)
        if (has_prefix(cp, n, i, forms[k])) return strlen(forms[k]);
    return 0;
}

static bool is_other(uint32_t c) { return !uni_is_space(c) && !uni_is_letter(c) && !uni_is_number(c); }

/* The special-name alternatives of the CLIP pattern match a whole
 * "<|startoftext|>"; the ByteLevel pre-tokenizer's GPT-2 split then cuts it
 * into "<|", the name and "|>". Returns the characters consumed, or 0. */
static size_t special_name_words(const sd_tokenizer *t, bpe_work *w, const uint32_t *cp, size_t n,
                                 size_t i, sd_tok_ids *out, int *rc)
{
    static const char *const names[] = {"<|startoftext|>", "<|endoftext|>"};
    for (size_t k = 0; k < 2; k++) {
        if (!has_prefix(cp, n, i, names[k])) continue;
        size_t len = strlen(names[k]);
        *rc = bpe_codepoints(t, w, cp + i, 2, out) || bpe_codepoints(t, w, cp + i + 2, len - 4, out) ||
              bpe_codepoints(t, w, cp + i + len - 2, 2, out);
        return len;
    }
    return 0;
}

/* findall of the CLIP pattern over normalised text, BPE of each match. */
static int split_and_bpe(const sd_tokenizer *t, bpe_work *w, const uint32_t *cp, size_t n,
                         sd_tok_ids *out)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c = cp[i];
        if (uni_is_space(c)) { i++; continue; }
        int rc = 0;
        size_t len = special_name_words(t, w, cp, n, i, out, &rc);
        if (rc) return -1;
        if (len) { i += len; continue; }
        len = contraction_len(cp, n, i);
        if (!len && uni_is_letter(c))
            while (i + len < n && uni_is_letter(cp[i + len])) len++;
        else if (!len && uni_is_number(c))
            len = 1;
        else if (!len)
            while (i + len < n && is_other(cp[i + len])) len++;
        if (bpe_codepoints(t, w, cp + i, len, out)) return -1;
        i += len;
    }
    return 0;
}

/* One piece of text between added tokens: NFC, lower case, split, BPE. The
 * normalizer's Replace(\s+, " ") is left out: the split drops every \s
 * character and no \s character has a lower-case form, so it cannot change
 * the result. */
static int encode_piece(const sd_tokenizer *t, bpe_work *w, const uint32_t *cp, size_t n,
                        sd_tok_ids *out)
{
    if (n == 0) return 0;
    uni_str nfc = {0}, low = {0};
    int rc = -1;
    if (!uni_nfc(cp, n, &nfc) && !uni_lowercase(nfc.cp, nfc.n, &low))
        rc = split_and_bpe(t, w, low.cp, low.n, out);
    uni_str_free(&nfc);
    uni_str_free(&low);
    return rc;
}

/* The id of an added token starting at cp[i] and its length, or 0. */
static size_t added_token_at(sd_tok_variant v, const uint32_t *cp, size_t n, size_t i, int32_t *id)
{
    if (cp[i] == '!' && v == SD_TOK_BIGG_DIFFUSERS) { *id = SD_TOK_BANG; return 1; }
    if (cp[i] != '<') return 0;
    if (has_prefix(cp, n, i, "<|startoftext|>")) { *id = SD_TOK_BOS; return 15; }
    if (has_prefix(cp, n, i, "<|endoftext|>")) { *id = SD_TOK_EOS; return 13; }
    return 0;
}

int sd_tokenize(const sd_tokenizer *t, sd_tok_variant v, const char *text, size_t len,
                sd_tok_ids *out)
{
    uni_str cp = {0};
    bpe_work w = {0};
    int rc = -1;
    if (uni_decode_utf8(text, len, &cp)) goto done;
    size_t start = 0;
    for (size_t i = 0; i < cp.n;) {
        int32_t id;
        size_t tok_len = added_token_at(v, cp.cp, cp.n, i, &id);
        if (!tok_len) { i++; continue; }
        if (encode_piece(t, &w, cp.cp + start, i - start, out) || emit(out, id)) goto done;
        i += tok_len;
        start = i;
    }
    rc = start < cp.n ? encode_piece(t, &w, cp.cp + start, cp.n - start, out) : 0; /* cp.cp is NULL for "" */
done:
    uni_str_free(&cp);
    work_free(&w);
    return rc;
}

/* --- fixed-length layout ------------------------------------------------------------ */

int32_t sd_tok_pad_id(sd_tok_variant v) { return v == SD_TOK_CLIP_L ? SD_TOK_EOS : SD_TOK_BANG; }

void sd_tok_frame_77(sd_tok_variant v, const int32_t *ids, size_t n, int32_t out[SD_TOK_CONTEXT])
{
    if (n > SD_TOK_CONTEXT - 2) n = SD_TOK_CONTEXT - 2;
    out[0] = SD_TOK_BOS;
    for (size_t i = 0; i < n; i++) out[1 + i] = ids[i];
    out[1 + n] = SD_TOK_EOS;
    for (size_t i = n + 2; i < SD_TOK_CONTEXT; i++) out[i] = sd_tok_pad_id(v);
}

int sd_tokenize_77(const sd_tokenizer *t, sd_tok_variant v, const char *text, size_t len,
                   int32_t out[SD_TOK_CONTEXT])
{
    sd_tok_ids ids = {0};
    int rc = sd_tokenize(t, v, text, len, &ids);
    if (rc == 0) sd_tok_frame_77(v, ids.ids, ids.n, out);
    sd_tok_ids_free(&ids);
    return rc;
}

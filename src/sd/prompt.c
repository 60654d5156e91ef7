/* A1111 prompt handling (see prompt.h and docs/prompts.md). Every step works
 * on codepoints, because A1111's regexes do: \w, \s and \d are Python's
 * Unicode classes (uni_py_*). */
#include "sd/prompt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sd/error.h"
#include "sd/unicode.h"

#define ROUND_MULTIPLIER 1.1
#define SQUARE_MULTIPLIER (1 / 1.1) /* A1111 multiplies by 1/1.1, it does not divide by 1.1 */

static int oom(char *err, size_t errlen) { return sd_error(err, errlen, "prompt: out of memory"); }

/* Python's float() on a string restricted to optional sign, digits (any
 * script's decimal digits, as float() accepts them), one optional '.' and an
 * optional exponent, surrounded by optional whitespace. Underscores, "inf"
 * and "nan" are refused, and so is any result that is not finite. */
static bool parse_py_float(const uint32_t *cp, size_t n, double *out)
{
    while (n && uni_py_is_space(cp[0])) cp++, n--;
    while (n && uni_py_is_space(cp[n - 1])) n--;
    char *buf = n ? malloc(n + 1) : NULL;
    if (!buf) return false;
    size_t i = 0, digits = 0, exp_digits = 0;
    bool dot = false, exp = false, ok = true;
    for (size_t k = 0; k < n && ok; k++) {
        uint32_t c = cp[k];
        int d = uni_py_digit_value(c);
        if (d >= 0) {
            buf[i++] = (char)('0' + d);
            if (exp) exp_digits++; else digits++;
        } else if ((c == '+' || c == '-') && (k == 0 || (exp && buf[i - 1] == 'e'))) {
            buf[i++] = (char)c;
        } else if (c == '.' && !dot && !exp) {
            buf[i++] = '.';
            dot = true;
        } else if ((c == 'e' || c == 'E') && !exp && digits) {
            buf[i++] = 'e';
            exp = true;
        } else {
            ok = false;
        }
    }
    buf[i] = '\0';
    ok = ok && digits && (!exp || exp_digits);
    if (ok) *out = strtod(buf, NULL); /* the C locale's '.'; glibc rounds correctly, like Python */
    free(buf);
    return ok && isfinite(*out);
}

/* --- extra networks ------------------------------------------------------- */

void sd_extra_networks_free(sd_extra_network *nets, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(nets[i].kind);
        free(nets[i].name);
        free(nets[i].raw);
    }
    free(nets);
}

/* ExtraNetworkParams: the arguments split at ':'; "k=v" (exactly one '=')
 * is named, anything else positional. Fills name and the Lora multipliers. */
static int read_network_args(sd_extra_network *net, const uint32_t *args, size_t n, bool is_lora,
                             char *err, size_t errlen)
{
    const uint32_t *pos[3] = {0}, *te = NULL, *unet = NULL;
    size_t pos_len[3] = {0}, te_len = 0, unet_len = 0, n_pos = 0;
    for (size_t start = 0, end; start <= n; start = end + 1) {
        end = start;
        while (end < n && args[end] != ':') end++;
        size_t eq = 0, n_eq = 0;
        for (size_t k = start; k < end; k++)
            if (args[k] == '=') { n_eq++; if (n_eq == 1) eq = k; }
        if (n_eq == 1) {
            static const uint32_t te_key[] = {'t', 'e'}, unet_key[] = {'u', 'n', 'e', 't'};
            size_t key_len = eq - start;
            if (key_len == 2 && !memcmp(args + start, te_key, sizeof te_key)) te = args + eq + 1, te_len = end - eq - 1;
            if (key_len == 4 && !memcmp(args + start, unet_key, sizeof unet_key)) unet = args + eq + 1, unet_len = end - eq - 1;
        } else {
            if (n_pos < 3) pos[n_pos] = args + start, pos_len[n_pos] = end - start;
            n_pos++;
        }
    }
    net->name = n_pos ? uni_to_utf8(pos[0], pos_len[0], NULL) : strdup("");
    if (!net->name) return oom(err, errlen);
    net->te_multiplier = net->unet_multiplier = 1.0;
    if (!is_lora) return 0;
    if (n_pos == 0) return sd_error(err, errlen, "prompt: %s has no network name", net->raw);
    if ((n_pos > 1 && !parse_py_float(pos[1], pos_len[1], &net->te_multiplier)) ||
        (te && !parse_py_float(te, te_len, &net->te_multiplier)))
        return sd_error(err, errlen, "prompt: %s: the text-encoder multiplier is not a finite number", net->raw);
    net->unet_multiplier = net->te_multiplier;
    if ((n_pos > 2 && !parse_py_float(pos[2], pos_len[2], &net->unet_multiplier)) ||
        (unet && !parse_py_float(unet, unet_len, &net->unet_multiplier)))
        return sd_error(err, errlen, "prompt: %s: the UNet multiplier is not a finite number", net->raw);
    return 0;
}

static bool is_lora_kind(const char *kind) { return !strcmp(kind, "lora") || !strcmp(kind, "lyco"); }

/* Where the tag <\w+:[^>]+> starting at cp[i] ends (index of its '>'), or 0.
 * next_gt[k] is the index of the first '>' at or after k (n if none). */
static size_t tag_end(const uint32_t *cp, size_t n, const size_t *next_gt, size_t i, size_t *colon)
{
    size_t j = i + 1;
    while (j < n && uni_py_is_word(cp[j])) j++;
    if (j == i + 1 || j >= n || cp[j] != ':') return 0;
    size_t gt = next_gt[j + 1 <= n ? j + 1 : n];
    if (gt >= n || gt == j + 1) return 0;
    *colon = j;
    return gt;
}

static int add_network(sd_extra_network **nets, size_t *n_nets, const uint32_t *cp, size_t start,
                       size_t colon, size_t end, char *err, size_t errlen)
{
    sd_extra_network *grown = realloc(*nets, (*n_nets + 1) * sizeof *grown);
    if (!grown) return oom(err, errlen);
    *nets = grown;
    sd_extra_network *net = &grown[(*n_nets)++];
    memset(net, 0, sizeof *net);
    net->kind = uni_to_utf8(cp + start + 1, colon - start - 1, NULL);
    net->raw = uni_to_utf8(cp + start, end - start + 1, NULL);
    if (!net->kind || !net->raw) return oom(err, errlen);
    return read_network_args(net, cp + colon + 1, end - colon - 1, is_lora_kind(net->kind), err, errlen);
}

/* re.sub(r"<(\w+):([^>]+)>", "", text), collecting the tags. */
static int strip_networks(const uint32_t *cp, size_t n, uni_str *out, sd_extra_network **nets,
                          size_t *n_nets, char *err, size_t errlen)
{
    size_t *next_gt = malloc((n + 1) * sizeof *next_gt);
    if (!next_gt) return oom(err, errlen);
    next_gt[n] = n;
    for (size_t k = n; k-- > 0;) next_gt[k] = cp[k] == '>' ? k : next_gt[k + 1];
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0;) {
        size_t colon, end = cp[i] == '<' ? tag_end(cp, n, next_gt, i, &colon) : 0;
        if (end) {
            rc = add_network(nets, n_nets, cp, i, colon, end, err, errlen);
            i = end + 1;
        } else {
            if (uni_str_push(out, cp[i])) rc = oom(err, errlen);
            i++;
        }
    }
    free(next_gt);
    return rc;
}

int sd_prompt_strip_extra_networks(const char *text, size_t len, char **stripped, size_t *stripped_len,
                                   sd_extra_network **nets, size_t *n_nets, char *err, size_t errlen)
{
    uni_str cp = {0}, out = {0};
    *stripped = NULL, *nets = NULL, *n_nets = 0;
    int rc = uni_decode_utf8(text, len, &cp) ? oom(err, errlen)
                                             : strip_networks(cp.cp, cp.n, &out, nets, n_nets, err, errlen);
    if (rc == 0 && !(*stripped = uni_to_utf8(out.cp, out.n, stripped_len))) rc = oom(err, errlen);
    if (rc) {
        sd_extra_networks_free(*nets, *n_nets);
        *nets = NULL, *n_nets = 0;
    }
    uni_str_free(&cp);
    uni_str_free(&out);
    return rc;
}

/* --- attention -------------------------------------------------------------- */

/* A1111's result list. Each item's text is appended to `pool` when the item
 * is created, so adjacent items have adjacent texts and merging them is
 * adding lengths. */
typedef struct {
    uni_str pool;
    size_t *off, *len;
    double *weight;
    size_t n, cap;
    size_t round[SD_PROMPT_MAX_NESTING], square[SD_PROMPT_MAX_NESTING];
    size_t n_round, n_square;
} attention;

static void attention_free(attention *a)
{
    uni_str_free(&a->pool);
    free(a->off), free(a->len), free(a->weight);
}

static int add_item(attention *a, const uint32_t *text, size_t len, double weight)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 16;
        size_t *off = realloc(a->off, cap * sizeof *off);
        if (off) a->off = off;
        size_t *ln = realloc(a->len, cap * sizeof *ln);
        if (ln) a->len = ln;
        double *w = realloc(a->weight, cap * sizeof *w);
        if (w) a->weight = w;
        if (!off || !ln || !w) return -1;
        a->cap = cap;
    }
    a->off[a->n] = a->pool.n;
    a->len[a->n] = len;
    a->weight[a->n] = weight;
    a->n++;
    return uni_str_append(&a->pool, text, len);
}

static void multiply_range(attention *a, size_t start, double m)
{
    for (size_t p = start; p < a->n; p++) a->weight[p] *= m;
}

static const uint32_t BREAK_TEXT[] = {'B', 'R', 'E', 'A', 'K'};

/* Position of the next BREAK at or after `from` in t[0..n) that re_break
 * (\s*\bBREAK\b\s*) accepts, with \b judged inside t as re.split does; n
 * if none. */
static size_t find_break(const uint32_t *t, size_t n, size_t from)
{
    for (size_t q = from; q + 5 <= n; q++) {
        if (memcmp(t + q, BREAK_TEXT, sizeof BREAK_TEXT)) continue;
        if (q > 0 && uni_py_is_word(t[q - 1])) continue;
        if (q + 5 < n && uni_py_is_word(t[q + 5])) continue;
        return q;
    }
    return n;
}

/* A1111's "else" branch: re.split(re_break, text), a BREAK item (weight -1)
 * between the parts. */
static int add_text(attention *a, const uint32_t *t, size_t n)
{
    size_t pos = 0;
    for (;;) {
        size_t q = find_break(t, n, pos);
        if (q == n) return add_item(a, t + pos, n - pos, 1.0);
        size_t start = q, end = q + 5;
        while (start > pos && uni_py_is_space(t[start - 1])) start--;
        while (end < n && uni_py_is_space(t[end])) end++;
        if (add_item(a, t + pos, start - pos, 1.0) || add_item(a, BREAK_TEXT, 5, -1)) return -1;
        pos = end;
    }
}

/* The alternative :\s*([+-]?[.\d]+)\s*\) at cp[i] == ':'. Returns the length
 * of the match (0 if none) and the number's span. */
static size_t weight_match(const uint32_t *cp, size_t n, size_t i, size_t *num, size_t *num_len)
{
    size_t j = i + 1;
    while (j < n && uni_py_is_space(cp[j])) j++;
    size_t k = j;
    if (k < n && (cp[k] == '+' || cp[k] == '-')) k++;
    size_t digits_start = k;
    while (k < n && (cp[k] == '.' || uni_py_digit_value(cp[k]) >= 0)) k++;
    if (k == digits_start) return 0;
    size_t end = k;
    while (end < n && uni_py_is_space(cp[end])) end++;
    if (end >= n || cp[end] != ')') return 0;
    *num = j, *num_len = k - j;
    return end + 1 - i;
}

static bool is_syntax(uint32_t c) { return c == '\\' || c == '(' || c == ')' || c == '[' || c == ']' || c == ':'; }

static bool is_escapable(uint32_t c) { return c == '(' || c == ')' || c == '[' || c == ']' || c == '\\'; }

static int open_bracket(attention *a, size_t *stack, size_t *depth, char *err, size_t errlen)
{
    if (a->n_round + a->n_square >= SD_PROMPT_MAX_NESTING)
        return sd_error(err, errlen, "prompt: brackets nested deeper than %d", SD_PROMPT_MAX_NESTING);
    stack[(*depth)++] = a->n;
    return 0;
}

/* One token of re_attention at cp[i]; returns its length, 0 on error. */
static size_t attention_step(attention *a, const uint32_t *cp, size_t n, size_t i, char *err, size_t errlen)
{
    uint32_t c = cp[i];
    size_t num, num_len, len;
    if (c == '\\') { /* \( \) \[ \] \\ keep the character; a lone \ is dropped */
        bool esc = i + 1 < n && is_escapable(cp[i + 1]);
        if (add_item(a, cp + i + 1, esc ? 1 : 0, 1.0)) { oom(err, errlen); return 0; }
        return esc ? 2 : 1;
    }
    if (c == '(') return open_bracket(a, a->round, &a->n_round, err, errlen) ? 0 : 1;
    if (c == '[') return open_bracket(a, a->square, &a->n_square, err, errlen) ? 0 : 1;
    if (c == ':' && (len = weight_match(cp, n, i, &num, &num_len)) && a->n_round) {
        double w;
        if (!parse_py_float(cp + num, num_len, &w)) {
            char *s = uni_to_utf8(cp + num, num_len, NULL);
            sd_error(err, errlen, "prompt: attention weight '%s' is not a finite number", s ? s : "?");
            free(s);
            return 0;
        }
        multiply_range(a, a->round[--a->n_round], w);
        return len;
    }
    if (c == ')' && a->n_round) { multiply_range(a, a->round[--a->n_round], ROUND_MULTIPLIER); return 1; }
    if (c == ']' && a->n_square) { multiply_range(a, a->square[--a->n_square], SQUARE_MULTIPLIER); return 1; }
    if (c == ':') len = len ? len : 1;                   /* a weight without "(" is text too */
    else if (c == ')' || c == ']') len = 1;
    else for (len = 0; i + len < n && !is_syntax(cp[i + len]); len++) {}
    if (add_text(a, cp + i, len)) { oom(err, errlen); return 0; }
    return len;
}

static int parse_attention(const uint32_t *cp, size_t n, attention *a, char *err, size_t errlen)
{
    for (size_t i = 0; i < n;) {
        size_t step = attention_step(a, cp, n, i, err, errlen);
        if (!step) return -1;
        i += step;
    }
    for (size_t k = 0; k < a->n_round; k++) multiply_range(a, a->round[k], ROUND_MULTIPLIER);
    for (size_t k = 0; k < a->n_square; k++) multiply_range(a, a->square[k], SQUARE_MULTIPLIER);
    if (a->n == 0 && add_item(a, NULL, 0, 1.0)) return oom(err, errlen);
    size_t w = 0; /* merge runs of identical weights (the first keeps its weight) */
    for (size_t r = 1; r < a->n; r++) {
        if (a->weight[w] == a->weight[r]) {
            a->len[w] += a->len[r];
        } else {
            w++;
            a->off[w] = a->off[r], a->len[w] = a->len[r], a->weight[w] = a->weight[r];
        }
    }
    a->n = w + 1;
    for (size_t k = 0; k < a->n; k++)
        if (!isfinite(a->weight[k]))
            return sd_error(err, errlen, "prompt: an attention weight overflows to a non-finite value");
    return 0;
}

void sd_prompt_fragments_free(sd_prompt_fragment *frags, size_t n)
{
    for (size_t i = 0; i < n; i++) free(frags[i].text);
    free(frags);
}

static int export_fragments(const attention *a, sd_prompt_fragment **frags, size_t *n_frags, char *err,
                            size_t errlen)
{
    *frags = calloc(a->n, sizeof **frags);
    if (!*frags) return oom(err, errlen);
    *n_frags = a->n;
    for (size_t k = 0; k < a->n; k++) {
        (*frags)[k].weight = a->weight[k];
        const uint32_t *text = a->len[k] ? a->pool.cp + a->off[k] : NULL; /* the pool is NULL while empty */
        (*frags)[k].text = uni_to_utf8(text, a->len[k], &(*frags)[k].len);
        if (!(*frags)[k].text) return oom(err, errlen);
    }
    return 0;
}

static int fragments_of(const uint32_t *cp, size_t n, bool emphasis, sd_prompt_fragment **frags,
                        size_t *n_frags, char *err, size_t errlen)
{
    attention *a = calloc(1, sizeof *a);
    if (!a) return oom(err, errlen);
    int rc = emphasis ? parse_attention(cp, n, a, err, errlen)
                      : (add_item(a, cp, n, 1.0) ? oom(err, errlen) : 0);
    if (rc == 0) rc = export_fragments(a, frags, n_frags, err, errlen);
    if (rc) {
        sd_prompt_fragments_free(*frags, *n_frags);
        *frags = NULL, *n_frags = 0;
    }
    attention_free(a);
    free(a);
    return rc;
}

int sd_prompt_parse_attention(const char *text, size_t len, sd_prompt_fragment **frags, size_t *n_frags,
                              char *err, size_t errlen)
{
    uni_str cp = {0};
    *frags = NULL, *n_frags = 0;
    int rc = uni_decode_utf8(text, len, &cp) ? oom(err, errlen)
                                             : fragments_of(cp.cp, cp.n, true, frags, n_frags, err, errlen);
    uni_str_free(&cp);
    return rc;
}

/* --- chunks ----------------------------------------------------------------------- */

typedef struct {
    int32_t tokens[SD_PROMPT_CHUNK_CONTENT];
    double mults[SD_PROMPT_CHUNK_CONTENT];
    size_t len;
    long last_comma; /* index in tokens of the last comma, -1 if none */
    sd_prompt_chunk *chunks;
    size_t n_chunks, cap;
    size_t token_count;
    /* embeddings: the current chunk's fixes (slot, embedding) and every one placed */
    const sd_embedding_db *emb;
    size_t fix_at[SD_PROMPT_CHUNK_CONTENT], fix_emb[SD_PROMPT_CHUNK_CONTENT], n_fixes;
    size_t *used, n_used;
} chunker;

enum { CHUNK_OOM = -1, CHUNK_UNAVAILABLE = -2 };

/* bigG's copy: process_tokens sets everything after the first EOS to the
 * pad id 0 (id_end != id_pad). */
static void fill_bigg_ids(sd_prompt_chunk *c)
{
    size_t k = 0;
    while (k < SD_TOK_CONTEXT && c->ids_l[k] != SD_TOK_EOS) k++;
    for (size_t i = 0; i < SD_TOK_CONTEXT; i++) c->ids_g[i] = i > k ? SD_TOK_BANG : c->ids_l[i];
}

/* EmbeddingsWithFixes: a fix at slot o puts the embedding's vectors on rows
 * o + 1 (after BOS) onwards, as many as fit the 77 rows. */
static void place_fixes(chunker *ck, sd_prompt_chunk *c)
{
    memset(c->emb, 0, sizeof c->emb);
    memset(c->emb_vector, 0, sizeof c->emb_vector);
    for (size_t f = 0; f < ck->n_fixes; f++) {
        size_t row = ck->fix_at[f] + 1;
        int n = sd_embedding_vectors(ck->emb, ck->fix_emb[f]);
        for (int v = 0; v < n && row < SD_TOK_CONTEXT; v++, row++) {
            c->emb[row] = (int16_t)(ck->fix_emb[f] + 1);
            c->emb_vector[row] = (uint8_t)v;
        }
    }
    ck->n_fixes = 0;
}

/* next_chunk(is_last): pad with EOS at weight 1.0, frame with BOS/EOS. */
static int next_chunk(chunker *ck, bool is_last)
{
    ck->token_count += is_last ? ck->len : SD_PROMPT_CHUNK_CONTENT;
    if (ck->n_chunks == ck->cap) {
        size_t cap = ck->cap ? 2 * ck->cap : 4;
        sd_prompt_chunk *p = realloc(ck->chunks, cap * sizeof *p);
        if (!p) return -1;
        ck->chunks = p;
        ck->cap = cap;
    }
    sd_prompt_chunk *c = &ck->chunks[ck->n_chunks++];
    c->ids_l[0] = SD_TOK_BOS;
    c->weights[0] = 1.0f;
    for (size_t i = 0; i < SD_PROMPT_CHUNK_CONTENT; i++) {
        bool tok = i < ck->len;
        c->ids_l[1 + i] = tok ? ck->tokens[i] : SD_TOK_EOS;
        c->weights[1 + i] = tok ? (float)ck->mults[i] : 1.0f;
    }
    c->ids_l[SD_TOK_CONTEXT - 1] = SD_TOK_EOS;
    c->weights[SD_TOK_CONTEXT - 1] = 1.0f;
    fill_bigg_ids(c);
    place_fixes(ck, c);
    ck->len = 0;
    ck->last_comma = -1;
    return 0;
}

/* The token loop of tokenize_line up to where a token or an embedding is
 * placed: the comma bookkeeping, the backtrack, a full chunk closed. */
static int make_room(chunker *ck, int32_t token, int backtrack)
{
    if (token == SD_TOK_COMMA) {
        ck->last_comma = (long)ck->len;
    } else if (backtrack != 0 && ck->len == SD_PROMPT_CHUNK_CONTENT && ck->last_comma != -1 &&
               (long)ck->len - ck->last_comma <= backtrack) {
        /* Move what follows the last comma into the next chunk. */
        size_t cut = (size_t)ck->last_comma + 1, moved = ck->len - cut;
        int32_t tokens[SD_PROMPT_CHUNK_CONTENT];
        double mults[SD_PROMPT_CHUNK_CONTENT];
        memcpy(tokens, ck->tokens + cut, moved * sizeof *tokens);
        memcpy(mults, ck->mults + cut, moved * sizeof *mults);
        ck->len = cut;
        if (next_chunk(ck, false)) return -1;
        memcpy(ck->tokens, tokens, moved * sizeof *tokens);
        memcpy(ck->mults, mults, moved * sizeof *mults);
        ck->len = moved;
    }
    return ck->len == SD_PROMPT_CHUNK_CONTENT ? next_chunk(ck, false) : 0;
}

static void append(chunker *ck, int32_t token, double weight)
{
    ck->tokens[ck->len] = token;
    ck->mults[ck->len] = weight;
    ck->len++;
}

static int note_used(chunker *ck, size_t e)
{
    for (size_t i = 0; i < ck->n_used; i++)
        if (ck->used[i] == e) return 0;
    size_t *grown = realloc(ck->used, (ck->n_used + 1) * sizeof *grown);
    if (!grown) return CHUNK_OOM;
    ck->used = grown;
    ck->used[ck->n_used++] = e;
    return 0;
}

/* The embedding's n vectors as n placeholder slots at the fragment's
 * weight, in a new chunk when they do not fit in this one. */
static int add_embedding(chunker *ck, size_t e, double weight, char *err, size_t errlen)
{
    const char *why = sd_embedding_unavailable(ck->emb, e);
    if (why) {
        sd_error(err, errlen, "names the embedding '%s', which is unavailable: %s", sd_embedding_name(ck->emb, e), why);
        return CHUNK_UNAVAILABLE;
    }
    int n = sd_embedding_vectors(ck->emb, e);
    if (ck->len + (size_t)n > SD_PROMPT_CHUNK_CONTENT && next_chunk(ck, false)) return CHUNK_OOM;
    ck->fix_at[ck->n_fixes] = ck->len;
    ck->fix_emb[ck->n_fixes++] = e;
    for (int v = 0; v < n; v++) append(ck, SD_TOK_BANG, weight);
    return note_used(ck, e);
}

/* One fragment's tokens, an embedding wherever one's name starts. */
static int add_fragment(chunker *ck, const sd_tok_ids *ids, double weight, int backtrack, char *err, size_t errlen)
{
    int rc = 0;
    for (size_t k = 0; k < ids->n && rc == 0;) {
        size_t len = 0;
        long e = sd_embeddings_match(ck->emb, ids->ids, ids->n, k, &len);
        if (make_room(ck, ids->ids[k], backtrack)) return CHUNK_OOM;
        if (e < 0) {
            append(ck, ids->ids[k++], weight);
            continue;
        }
        rc = add_embedding(ck, (size_t)e, weight, err, errlen);
        k += len;
    }
    return rc;
}

static bool is_break(const sd_prompt_fragment *f)
{
    return f->weight == -1 && f->len == 5 && !memcmp(f->text, "BREAK", 5);
}

int sd_prompt_make_chunks_embedded(const sd_tokenizer *tok, const sd_embedding_db *emb,
                                   const sd_prompt_fragment *frags, size_t n_frags, int comma_padding_backtrack,
                                   sd_prompt_chunk **chunks, size_t *n_chunks, size_t *token_count,
                                   size_t **used, size_t *n_used, char *err, size_t errlen)
{
    chunker *ck = calloc(1, sizeof *ck);
    if (!ck) return oom(err, errlen);
    ck->last_comma = -1;
    ck->emb = emb;
    sd_tok_ids ids = {0};
    int rc = 0;
    for (size_t f = 0; f < n_frags && rc == 0; f++) {
        if (is_break(&frags[f])) { rc = next_chunk(ck, false); continue; }
        ids.n = 0;
        rc = sd_tokenize(tok, SD_TOK_CLIP_L, frags[f].text, frags[f].len, &ids);
        if (rc == 0) rc = add_fragment(ck, &ids, frags[f].weight, comma_padding_backtrack, err, errlen);
    }
    if (rc == 0 && (ck->len || ck->n_chunks == 0)) rc = next_chunk(ck, true);
    sd_tok_ids_free(&ids);
    if (rc) {
        free(ck->chunks);
        free(ck->used);
        *chunks = NULL, *n_chunks = 0, *token_count = 0, *used = NULL, *n_used = 0;
    } else {
        *chunks = ck->chunks, *n_chunks = ck->n_chunks, *token_count = ck->token_count;
        *used = ck->used, *n_used = ck->n_used;
    }
    free(ck);
    return rc == CHUNK_UNAVAILABLE ? SD_PROMPT_EUNAVAILABLE : rc ? oom(err, errlen) : 0;
}

int sd_prompt_make_chunks(const sd_tokenizer *tok, const sd_prompt_fragment *frags, size_t n_frags,
                          int comma_padding_backtrack, sd_prompt_chunk **chunks, size_t *n_chunks,
                          size_t *token_count, char *err, size_t errlen)
{
    size_t *used, n_used;
    int rc = sd_prompt_make_chunks_embedded(tok, NULL, frags, n_frags, comma_padding_backtrack, chunks, n_chunks,
                                            token_count, &used, &n_used, err, errlen);
    free(used);
    return rc;
}

/* --- the whole pipeline -------------------------------------------------------------- */

void sd_prompt_free(sd_prompt *p)
{
    if (!p) return;
    free(p->text);
    sd_extra_networks_free(p->networks, p->n_networks);
    sd_prompt_fragments_free(p->fragments, p->n_fragments);
    free(p->chunks);
    free(p->used);
    memset(p, 0, sizeof *p);
}

static int prepare(const sd_tokenizer *tok, const uint32_t *cp, size_t n, const sd_prompt_options *o,
                   sd_prompt *p, char *err, size_t errlen)
{
    uni_str text = {0};
    int rc = o->strip_extra_networks
                 ? strip_networks(cp, n, &text, &p->networks, &p->n_networks, err, errlen)
                 : (uni_str_append(&text, cp, n) ? oom(err, errlen) : 0);
    if (rc == 0 && !(p->text = uni_to_utf8(text.cp, text.n, &p->text_len))) rc = oom(err, errlen);
    if (rc == 0) {
        p->is_empty = p->text_len == 0;
        rc = fragments_of(text.cp, text.n, o->emphasis, &p->fragments, &p->n_fragments, err, errlen);
    }
    p->embeddings = o->embeddings;
    if (rc == 0)
        rc = sd_prompt_make_chunks_embedded(tok, o->embeddings, p->fragments, p->n_fragments,
                                            o->comma_padding_backtrack, &p->chunks, &p->n_chunks, &p->token_count,
                                            &p->used, &p->n_used, err, errlen);
    uni_str_free(&text);
    return rc;
}

int sd_prompt_prepare(const sd_tokenizer *tok, const char *text, size_t len, const sd_prompt_options *opts,
                      sd_prompt *out, char *err, size_t errlen)
{
    const sd_prompt_options defaults = SD_PROMPT_OPTIONS_DEFAULT;
    memset(out, 0, sizeof *out);
    uni_str cp = {0};
    int rc = uni_decode_utf8(text, len, &cp) ? oom(err, errlen)
                                             : prepare(tok, cp.cp, cp.n, opts ? opts : &defaults, out, err, errlen);
    if (rc) sd_prompt_free(out);
    uni_str_free(&cp);
    return rc;
}

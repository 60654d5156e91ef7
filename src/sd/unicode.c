/* Unicode text handling for the tokenizer and the prompt parser (see
 * unicode.h). Decoding follows CPython's UTF-8 decoder (Objects/stringlib/
 * codecs.h, errors="replace"); NFC follows UAX #15 (decompose, order,
 * compose) as the reference's unicode-normalization crate implements it;
 * the tables come from the references themselves (unicode_data.c). */
#include "sd/unicode.h"

#include <stdlib.h>
#include <string.h>

#include "image/utf8.h"
#include "sd/unicode_data.h"

/* --- buffers ------------------------------------------------------------ */

void uni_str_free(uni_str *s)
{
    free(s->cp);
    s->cp = NULL;
    s->n = s->cap = 0;
}

static int reserve(uni_str *s, size_t extra)
{
    if (s->n + extra <= s->cap) return 0;
    size_t cap = s->cap ? s->cap : 16;
    while (cap < s->n + extra) {
        if (cap > SIZE_MAX / 2 / sizeof(uint32_t)) return -1;
        cap *= 2;
    }
    uint32_t *p = realloc(s->cp, cap * sizeof *p);
    if (!p) return -1;
    s->cp = p;
    s->cap = cap;
    return 0;
}

int uni_str_push(uni_str *s, uint32_t c)
{
    if (reserve(s, 1)) return -1;
    s->cp[s->n++] = c;
    return 0;
}

int uni_str_append(uni_str *s, const uint32_t *cp, size_t n)
{
    if (n == 0) return 0;
    if (reserve(s, n)) return -1;
    memcpy(s->cp + s->n, cp, n * sizeof *cp);
    s->n += n;
    return 0;
}

/* --- UTF-8 ---------------------------------------------------------------- */

/* Continuation bytes a lead byte needs, and the range its first continuation
 * byte must lie in (the narrower ranges exclude overlongs, surrogates and
 * values above U+10FFFF). -1 for bytes that never start a sequence. */
static int utf8_lead(uint8_t b, uint8_t *lo, uint8_t *hi)
{
    *lo = 0x80, *hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) return 1;
    if (b == 0xE0) { *lo = 0xA0; return 2; }
    if (b == 0xED) { *hi = 0x9F; return 2; }
    if (b >= 0xE1 && b <= 0xEF) return 2;
    if (b == 0xF0) { *lo = 0x90; return 3; }
    if (b == 0xF4) { *hi = 0x8F; return 3; }
    if (b >= 0xF1 && b <= 0xF3) return 3;
    return -1;
}

int uni_decode_utf8(const char *str, size_t len, uni_str *out)
{
    const uint8_t *s = (const uint8_t *)str;
    if (reserve(out, len)) return -1; /* never more codepoints than bytes */
    size_t i = 0;
    while (i < len) {
        uint8_t b = s[i], lo, hi;
        if (b < 0x80) { out->cp[out->n++] = b; i++; continue; }
        int need = utf8_lead(b, &lo, &hi);
        if (need < 0) { out->cp[out->n++] = UNI_REPLACEMENT; i++; continue; }
        uint32_t c = b & (0x3F >> need);
        int k = 1;
        for (; k <= need; k++) {
            if (i + k >= len) break;
            uint8_t x = s[i + k];
            if (x < (k == 1 ? lo : 0x80) || x > (k == 1 ? hi : 0xBF)) break;
            c = (c << 6) | (x & 0x3F);
        }
        if (k <= need) { /* the maximal ill-formed prefix s[i..i+k) */
            out->cp[out->n++] = UNI_REPLACEMENT;
            i += k;
            continue;
        }
        out->cp[out->n++] = c;
        i += need + 1;
    }
    return 0;
}

char *uni_to_utf8(const uint32_t *cp, size_t n, size_t *len)
{
    if (n > (SIZE_MAX - 1) / 4) return NULL;
    char *buf = malloc(4 * n + 1), *p = buf;
    if (!buf) return NULL;
    for (size_t i = 0; i < n; i++) p += utf8_put(cp[i], p);
    *p = '\0';
    if (len) *len = (size_t)(p - buf);
    return buf;
}

/* --- classes -------------------------------------------------------------- */

static bool in_ranges(const uint32_t *r, size_t rows, uint32_t c)
{
    size_t lo = 0, hi = rows;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[2 * mid]) hi = mid;
        else if (c > r[2 * mid + 1]) lo = mid + 1;
        else return true;
    }
    return false;
}

static bool ascii_letter(uint32_t c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }

bool uni_is_letter(uint32_t c)
{
    if (c < 0x80) return ascii_letter(c);
    return in_ranges(uni_letter_ranges, uni_letter_count, c);
}

bool uni_is_number(uint32_t c)
{
    if (c < 0x80) return c >= '0' && c <= '9';
    return in_ranges(uni_number_ranges, uni_number_count, c);
}

bool uni_is_space(uint32_t c) { return in_ranges(uni_space_ranges, uni_space_count, c); }

bool uni_py_is_space(uint32_t c) { return in_ranges(uni_py_space_ranges, uni_py_space_count, c); }

bool uni_py_is_word(uint32_t c)
{
    if (c < 0x80) return ascii_letter(c) || (c >= '0' && c <= '9') || c == '_';
    return in_ranges(uni_py_word_ranges, uni_py_word_count, c);
}

int uni_py_digit_value(uint32_t c)
{
    if (c < 0x80) return c >= '0' && c <= '9' ? (int)(c - '0') : -1;
    const uint32_t *r = uni_py_digit_ranges;
    size_t lo = 0, hi = uni_py_digit_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[2 * mid]) hi = mid;
        else if (c > r[2 * mid + 1]) lo = mid + 1;
        else return (int)((c - r[2 * mid]) % 10); /* ranges are whole blocks of ten */
    }
    return -1;
}

/* --- lower case ------------------------------------------------------------ */

int uni_lowercase(const uint32_t *in, size_t n, uni_str *out)
{
    if (reserve(out, n)) return -1;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = in[i];
        if (c < 0x80) {
            out->cp[out->n++] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
            continue;
        }
        size_t lo = 0, hi = uni_lower_count;
        const uint32_t *row = NULL;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            uint32_t key = uni_lower_map[3 * mid];
            if (c < key) hi = mid;
            else if (c > key) lo = mid + 1;
            else { row = uni_lower_map + 3 * mid; break; }
        }
        if (!row) { out->cp[out->n++] = c; continue; }
        out->cp[out->n++] = row[1];
        /* a second code point (U+0130 -> i + U+0307): room for it and the rest */
        if (row[2] && reserve(out, n - i)) return -1;
        if (row[2]) out->cp[out->n++] = row[2];
    }
    return 0;
}

/* --- NFC ---------------------------------------------------------------------- */

#define HANGUL_S 0xAC00u
#define HANGUL_L 0x1100u
#define HANGUL_V 0x1161u
#define HANGUL_T 0x11A7u
#define HANGUL_V_COUNT 21u
#define HANGUL_T_COUNT 28u
#define HANGUL_S_COUNT 11172u

static int ccc_of(uint32_t c)
{
    if (c < 0x300) return 0;
    const uint32_t *r = uni_ccc_ranges;
    size_t lo = 0, hi = uni_ccc_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[3 * mid]) hi = mid;
        else if (c > r[3 * mid + 1]) lo = mid + 1;
        else return (int)r[3 * mid + 2];
    }
    return 0;
}

static int decompose_into(uint32_t c, uni_str *d)
{
    if (c - HANGUL_S < HANGUL_S_COUNT) {
        uint32_t s = c - HANGUL_S, t = s % HANGUL_T_COUNT;
        if (uni_str_push(d, HANGUL_L + s / (HANGUL_V_COUNT * HANGUL_T_COUNT))) return -1;
        if (uni_str_push(d, HANGUL_V + (s % (HANGUL_V_COUNT * HANGUL_T_COUNT)) / HANGUL_T_COUNT)) return -1;
        return t ? uni_str_push(d, HANGUL_T + t) : 0;
    }
    if (c >= 0xC0) {
        size_t lo = 0, hi = uni_decomp_count;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            uint32_t key = uni_decomp_index[3 * mid];
            if (c < key) hi = mid;
            else if (c > key) lo = mid + 1;
            else return uni_str_append(d, uni_decomp_pool + uni_decomp_index[3 * mid + 1],
                                       uni_decomp_index[3 * mid + 2]);
        }
    }
    return uni_str_push(d, c);
}

/* Stable sort of a run of non-starters by combining class: insertion sort
 * for the usual short runs, a counting sort for long ones (linear). */
static int order_run(uint32_t *run, size_t n)
{
    if (n <= 32) {
        for (size_t i = 1; i < n; i++) {
            uint32_t c = run[i];
            int k = ccc_of(c);
            size_t j = i;
            while (j > 0 && ccc_of(run[j - 1]) > k) { run[j] = run[j - 1]; j--; }
            run[j] = c;
        }
        return 0;
    }
    size_t start[257] = {0};
    for (size_t i = 0; i < n; i++) start[ccc_of(run[i]) + 1]++;
    for (int k = 1; k <= 256; k++) start[k] += start[k - 1];
    uint32_t *tmp = malloc(n * sizeof *tmp);
    if (!tmp) return -1;
    for (size_t i = 0; i < n; i++) tmp[start[ccc_of(run[i])]++] = run[i];
    memcpy(run, tmp, n * sizeof *tmp);
    free(tmp);
    return 0;
}

static int canonical_order(uni_str *d)
{
    size_t i = 0;
    while (i < d->n) {
        if (ccc_of(d->cp[i]) == 0) { i++; continue; }
        size_t j = i;
        while (j < d->n && ccc_of(d->cp[j]) != 0) j++;
        if (j - i > 1 && order_run(d->cp + i, j - i)) return -1;
        i = j;
    }
    return 0;
}

/* The primary composite of (a, b), or 0 when there is none. */
static uint32_t compose_pair(uint32_t a, uint32_t b)
{
    if (a - HANGUL_L < 19 && b - HANGUL_V < HANGUL_V_COUNT)
        return HANGUL_S + ((a - HANGUL_L) * HANGUL_V_COUNT + (b - HANGUL_V)) * HANGUL_T_COUNT;
    if (a - HANGUL_S < HANGUL_S_COUNT && (a - HANGUL_S) % HANGUL_T_COUNT == 0 &&
        b - HANGUL_T - 1 < HANGUL_T_COUNT - 1)
        return a + (b - HANGUL_T);
    size_t lo = 0, hi = uni_compose_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const uint32_t *row = uni_compose + 3 * mid;
        if (a < row[0] || (a == row[0] && b < row[1])) hi = mid;
        else if (a > row[0] || b > row[1]) lo = mid + 1;
        else return row[2];
    }
    return 0;
}

/* UAX #15 canonical composition, in place: a character joins the last
 * starter when nothing between them blocks it (an intervening character of
 * class 0 or of a class >= its own). */
static size_t compose(uint32_t *s, size_t n)
{
    size_t w = 0;
    long starter = -1;
    int last_ccc = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        int k = ccc_of(c);
        if (starter >= 0) {
            bool adjacent = (size_t)starter == w - 1;
            if (adjacent || last_ccc < k) {
                uint32_t comp = compose_pair(s[starter], c);
                if (comp) { s[starter] = comp; continue; }
            }
        }
        if (k == 0) starter = (long)w;
        last_ccc = k;
        s[w++] = c;
    }
    return w;
}

int uni_nfc(const uint32_t *in, size_t n, uni_str *out)
{
    uni_str d = {0};
    int rc = -1;
    for (size_t i = 0; i < n; i++)
        if (decompose_into(in[i], &d)) goto done;
    if (canonical_order(&d)) goto done;
    rc = uni_str_append(out, d.cp, compose(d.cp, d.n));
done:
    uni_str_free(&d);
    return rc;
}

/* Unicode tables of the tokenizer and the prompt parser (generated
 * unicode_data.c; see tools/reference/gen_clip_tables.py for where each one
 * comes from). Ranges are flat arrays of inclusive [first, last] pairs sorted
 * by codepoint; *_count is the number of rows. */
#ifndef SDXL_SD_UNICODE_DATA_H
#define SDXL_SD_UNICODE_DATA_H

#include <stddef.h>
#include <stdint.h>

/* The reference tokenizer's regex classes (Oniguruma in tokenizers). */
extern const uint32_t uni_letter_ranges[]; /* \p{L} */
extern const size_t uni_letter_count;
extern const uint32_t uni_number_ranges[]; /* \p{N} */
extern const size_t uni_number_count;
extern const uint32_t uni_space_ranges[];  /* \s */
extern const size_t uni_space_count;

/* Python re classes (str patterns), for A1111's parser. */
extern const uint32_t uni_py_space_ranges[]; /* \s == str.isspace() */
extern const size_t uni_py_space_count;
extern const uint32_t uni_py_word_ranges[];  /* \w == str.isalnum() or '_' */
extern const size_t uni_py_word_count;
extern const uint32_t uni_py_digit_ranges[]; /* \d == Nd; each block of ten is 0..9 */
extern const size_t uni_py_digit_count;

/* Lowercase normalizer: rows of (codepoint, lower, second lower or 0). */
extern const uint32_t uni_lower_map[];
extern const size_t uni_lower_count;

/* NFC data. Rows of (first, last, combining class) for non-zero classes. */
extern const uint32_t uni_ccc_ranges[];
extern const size_t uni_ccc_count;
/* Rows of (codepoint, offset, length) into uni_decomp_pool: the full
 * canonical decomposition (Hangul syllables are algorithmic). */
extern const uint32_t uni_decomp_index[];
extern const size_t uni_decomp_count;
extern const uint32_t uni_decomp_pool[];
/* Rows of (first, second, composite) sorted by (first, second). */
extern const uint32_t uni_compose[];
extern const size_t uni_compose_count;

#endif

/* Strict UTF-8 stepping for the image metadata writers: code points for
 * UTF-16 (EXIF), Latin-1 (PNG tEXt) and JSON escapes (infotext quoting);
 * and the project's one UTF-8 encoder (sd/unicode and the tokenizer use it;
 * sd/unicode has the lenient decoder and Python's character classes). */
#ifndef SDXL_IMAGE_UTF8_H
#define SDXL_IMAGE_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Decodes the code point at s[*i] (len bytes in all) and advances *i.
 * Rejects overlong forms, surrogates, values over U+10FFFF and truncated
 * sequences: -1 (and *i is left alone), else 0. */
int utf8_next(const char *s, size_t len, size_t *i, uint32_t *cp);

/* Writes cp (<= U+10FFFF, not a surrogate) as UTF-8; returns 1..4. */
size_t utf8_put(uint32_t cp, char out[4]);

#endif

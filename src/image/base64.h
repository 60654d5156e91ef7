/* Base64 (RFC 4648 §4, standard alphabet) for image payloads: encoding for
 * job results (no line breaks, padded), and decoding of img2img inputs.
 *
 * Decoding rules (b64_decode):
 *   - an optional data URI prefix `data:[<media type>][;param...];base64,`
 *     is accepted; the media type must be empty or image/...; a data URI
 *     without ";base64" is rejected;
 *   - ASCII whitespace (space, \t, \r, \n) anywhere is skipped, because
 *     MIME tools (`base64` without -w0) wrap lines;
 *   - every other byte must be in the standard alphabet; '-' and '_'
 *     (the URL-safe alphabet) are rejected;
 *   - padding is optional, but when present it must be at the end and
 *     complete the last quantum; a lone 6-bit tail (length % 4 == 1) is
 *     rejected;
 *   - unused low bits of the last quantum are ignored (as Python's
 *     base64.b64decode and most decoders do).
 * Errors name the offending byte and its offset. */
#ifndef SDXL_IMAGE_BASE64_H
#define SDXL_IMAGE_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* malloc'd NUL-terminated base64 of len bytes; *outlen (may be NULL) gets
 * its length. NULL only when out of memory or the size would overflow. */
char *b64_encode(const void *data, size_t len, size_t *outlen);

/* Decodes text[0..len) (see the rules above) into a malloc'd buffer; 0, or
 * -1 with a reason in err. `max_out` (0 = no limit) bounds the decoded size
 * before anything is allocated. */
int b64_decode(const char *text, size_t len, size_t max_out, uint8_t **out, size_t *outlen,
               char *err, size_t errlen);

#endif

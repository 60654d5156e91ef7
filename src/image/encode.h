/* Image output: 8-bit RGB pixels -> PNG, JPEG or WebP in memory, carrying
 * the A1111 `parameters` infotext the way A1111 1.10 saves it
 * (modules/images.py save_image_with_geninfo):
 *   - PNG: a `parameters` text chunk before IDAT, written as PIL's
 *     PngInfo.add_text does: tEXt with Latin-1 bytes when every character
 *     is <= U+00FF, otherwise iTXt (uncompressed, empty language and
 *     translated key) with UTF-8;
 *   - JPEG: PIL's encoder settings (baseline, 4:2:0, default tables) at
 *     A1111's `jpeg_quality` (default 80), then piexif.insert: the EXIF APP1
 *     segment replaces PIL's JFIF APP0, right after SOI;
 *   - WebP: lossy at the same quality unless `webp_lossless` (A1111 option,
 *     default off), then piexif.insert: the extended format, i.e. a VP8X
 *     chunk (EXIF flag, canvas size), the image chunk, then an EXIF chunk.
 * The EXIF block is exif.h's UserComment block.
 * PNG compression: zlib level 1, adaptive filters (libpng's default
 * heuristic), default strategy; see docs/benchmarks.md for the measurement
 * behind this choice. */
#ifndef SDXL_IMAGE_ENCODE_H
#define SDXL_IMAGE_ENCODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { IMG_PNG = 0, IMG_JPEG, IMG_WEBP } img_format;

#define IMG_DEFAULT_QUALITY 80 /* A1111 shared_options.py jpeg_quality */
#define IMG_PNG_DEFAULT_LEVEL 1

/* "png", "jpeg"/"jpg", "webp" (case-insensitive) -> 0 and *f; else -1. */
int img_format_parse(const char *name, img_format *f);
const char *img_format_name(img_format f); /* "png", "jpeg", "webp" */
const char *img_format_mime(img_format f); /* "image/png", ... */

/* libpng row filters (the PNG_FILTER_* bit set), for img_encode_opts. */
typedef enum {
    IMG_PNG_FILTERS_ADAPTIVE = 0, /* all five, libpng's per-row heuristic */
    IMG_PNG_FILTER_NONE, IMG_PNG_FILTER_SUB, IMG_PNG_FILTER_UP, IMG_PNG_FILTER_AVG, IMG_PNG_FILTER_PAETH,
} img_png_filter;

typedef struct {
    img_format format;
    int quality;            /* JPEG/WebP 1..100 */
    bool webp_lossless;
    int png_level;          /* zlib level 0..9 */
    img_png_filter png_filter;
    const char *parameters; /* UTF-8 infotext, or NULL for no metadata */
} img_encode_opts;

/* PNG at level 1 with adaptive filters, quality 80, lossy WebP, no text. */
void img_encode_opts_default(img_encode_opts *o, img_format f);

typedef struct {
    uint8_t *data; /* malloc'd */
    size_t len;
} img_buf;

void img_buf_free(img_buf *b);

/* Encodes width x height RGB8 pixels (rows `stride` bytes apart, stride >=
 * 3 * width). 0, or -1 with a reason in err (bad size or option, invalid
 * UTF-8 in parameters, an EXIF block too large for a JPEG APP1 segment,
 * encoder failure). */
int img_encode(const uint8_t *rgb, int width, int height, size_t stride, const img_encode_opts *o,
               img_buf *out, char *err, size_t errlen);

#endif

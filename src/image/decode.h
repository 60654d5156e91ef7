/* Image input for img2img: PNG, JPEG or WebP bytes (untrusted) -> 8-bit RGB,
 * as diffusers' load_image gives it: PIL.ImageOps.exif_transpose (the EXIF
 * Orientation tag of a JPEG APP1, WebP EXIF or PNG eXIf block is applied),
 * then .convert("RGB") (alpha and tRNS transparency are dropped without
 * compositing; palettes and grey are expanded; 16-bit samples keep their
 * high byte, as PIL's RGB;16B unpacker does).
 *
 * The format is sniffed from the magic bytes, never from a name or a MIME
 * type. Limits are checked from the header before any pixel memory is
 * allocated (decompression bombs); progressive JPEGs are limited in scan
 * count, PNG ancillary chunks in size. Truncated or corrupt data is an
 * error, not a grey-filled picture. Animated WebP, CMYK JPEG and other
 * formats (GIF, BMP, TIFF, AVIF/HEIC, ...) are refused with a message that
 * names what was found. Also reads back the A1111 `parameters` text. */
#ifndef SDXL_IMAGE_DECODE_H
#define SDXL_IMAGE_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "image/encode.h"

typedef struct {
    uint64_t max_pixels; /* width * height */
    int max_side;        /* width and height each */
} img_limits;

/* 4096 x 4096 pixels, 16384 per side. */
void img_limits_default(img_limits *l);

typedef struct {
    uint8_t *rgb; /* width * height * 3 bytes, rows packed; malloc'd */
    int width, height;
    img_format format;
    int orientation; /* the EXIF orientation applied: 1..8, 0 when none */
} img_rgb;

void img_rgb_free(img_rgb *im);

/* 0 and the format in *f when the bytes start like a PNG, JPEG or WebP
 * file; else -1 with a description of what they look like in err. */
int img_sniff(const uint8_t *data, size_t len, img_format *f, char *err, size_t errlen);

/* Decodes data[0..len); 0, or -1 with a reason in err. */
int img_decode(const uint8_t *data, size_t len, const img_limits *lim, img_rgb *out, char *err, size_t errlen);

/* The `parameters` infotext of a PNG (tEXt as Latin-1, or iTXt; zTXt and
 * compressed iTXt are not read), or the EXIF UserComment of a JPEG/WebP,
 * as malloc'd UTF-8. 0 found, 1 none, -1 not an image we read. */
int img_read_parameters(const uint8_t *data, size_t len, char **text);

#endif

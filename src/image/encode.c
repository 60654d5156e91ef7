/* PNG (libpng), JPEG (libjpeg-turbo) and WebP (libwebp) encoders into
 * memory, with A1111's metadata placement (see encode.h). */
#include "image/encode.h"

#include <stdio.h> /* before jpeglib.h, which uses FILE */

#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <webp/encode.h>

#include "image/exif.h"
#include "image/utf8.h"

#define WEBP_MAX_SIDE 16383
#define JPEG_MAX_SIDE 65500
#define APP1_MAX_PAYLOAD 65533 /* a marker segment's length field counts itself */

int img_format_parse(const char *name, img_format *f)
{
    if (!strcasecmp(name, "png")) *f = IMG_PNG;
    else if (!strcasecmp(name, "jpeg") || !strcasecmp(name, "jpg")) *f = IMG_JPEG;
    else if (!strcasecmp(name, "webp")) *f = IMG_WEBP;
    else return -1;
    return 0;
}

const char *img_format_name(img_format f)
{
    return f == IMG_JPEG ? "jpeg" : f == IMG_WEBP ? "webp" : "png";
}

const char *img_format_mime(img_format f)
{
    return f == IMG_JPEG ? "image/jpeg" : f == IMG_WEBP ? "image/webp" : "image/png";
}

void img_encode_opts_default(img_encode_opts *o, img_format f)
{
    memset(o, 0, sizeof *o);
    o->format = f;
    o->quality = IMG_DEFAULT_QUALITY;
    o->png_level = IMG_PNG_DEFAULT_LEVEL;
    o->png_filter = IMG_PNG_FILTERS_ADAPTIVE;
}

void img_buf_free(img_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

/* ---- a growable output buffer ------------------------------------------- */

typedef struct {
    uint8_t *data;
    size_t len, cap;
} membuf;

static int mb_append(membuf *m, const void *d, size_t n)
{
    if (n > SIZE_MAX / 2 - m->len) return -1;
    if (m->len + n > m->cap) {
        size_t cap = m->cap ? m->cap : 1 << 16;
        while (cap < m->len + n) cap *= 2;
        uint8_t *p = realloc(m->data, cap);
        if (!p) return -1;
        m->data = p;
        m->cap = cap;
    }
    memcpy(m->data + m->len, d, n);
    m->len += n;
    return 0;
}

static void le32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24); }

/* ---- PNG ----------------------------------------------------------------- */

typedef struct {
    membuf out;
    char *err;
    size_t errlen;
} png_ctx;

static void png_fail(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->err, c->errlen, "PNG encoder: %s", msg);
    png_longjmp(png, 1);
}

static void png_quiet(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static void png_sink(png_structp png, png_bytep d, size_t n)
{
    if (mb_append(png_get_io_ptr(png), d, n) != 0) png_error(png, "out of memory");
}

static void png_flush_nop(png_structp png) { (void)png; }

/* PIL's PngInfo.add_text stores Latin-1 text as tEXt: the UTF-8 text as
 * Latin-1 bytes (malloc'd), or NULL when a character is above U+00FF. */
static char *latin1_from_utf8(const char *s)
{
    size_t len = strlen(s), i = 0, o = 0;
    char *out = malloc(len + 1);
    if (!out) return NULL;
    while (i < len) {
        uint32_t cp;
        if (utf8_next(s, len, &i, &cp) != 0 || cp > 0xFF) { free(out); return NULL; }
        out[o++] = (char)cp;
    }
    out[o] = 0;
    return out;
}

static int png_filter_bits(img_png_filter f)
{
    switch (f) {
    case IMG_PNG_FILTER_NONE: return PNG_FILTER_NONE;
    case IMG_PNG_FILTER_SUB: return PNG_FILTER_SUB;
    case IMG_PNG_FILTER_UP: return PNG_FILTER_UP;
    case IMG_PNG_FILTER_AVG: return PNG_FILTER_AVG;
    case IMG_PNG_FILTER_PAETH: return PNG_FILTER_PAETH;
    default: return PNG_ALL_FILTERS;
    }
}

static int encode_png(const uint8_t *rgb, int w, int h, size_t stride, const img_encode_opts *o,
                      img_buf *out, char *err, size_t errlen)
{
    if (o->png_level < 0 || o->png_level > 9) {
        snprintf(err, errlen, "PNG compression level %d is not in 0..9", o->png_level);
        return -1;
    }
    char *latin1 = o->parameters ? latin1_from_utf8(o->parameters) : NULL;
    png_ctx *c = calloc(1, sizeof *c);
    png_bytep *rows = malloc((size_t)h * sizeof *rows);
    png_structp png = c && rows ? png_create_write_struct(PNG_LIBPNG_VER_STRING, c, png_fail, png_quiet) : NULL;
    png_infop info = png ? png_create_info_struct(png) : NULL;
    int rc = -1;
    if (!info) {
        snprintf(err, errlen, "PNG encoder: out of memory");
        goto done;
    }
    c->err = err;
    c->errlen = errlen;
    for (int y = 0; y < h; y++) rows[y] = (png_bytep)(rgb + (size_t)y * stride);
    if (setjmp(png_jmpbuf(png))) goto done;

    png_set_write_fn(png, &c->out, png_sink, png_flush_nop);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, o->png_level);
    png_set_filter(png, PNG_FILTER_TYPE_BASE, png_filter_bits(o->png_filter));
    png_set_compression_buffer_size(png, 1 << 17);
    if (o->parameters) {
        png_text t;
        memset(&t, 0, sizeof t);
        t.key = (png_charp) "parameters";
        if (latin1) {
            t.compression = PNG_TEXT_COMPRESSION_NONE;
            t.text = latin1;
        } else {
            size_t i = 0, len = strlen(o->parameters);
            uint32_t cp;
            while (i < len && utf8_next(o->parameters, len, &i, &cp) == 0) {}
            if (i < len) {
                snprintf(err, errlen, "PNG parameters text is not valid UTF-8 (byte %zu)", i);
                goto done;
            }
            t.compression = PNG_ITXT_COMPRESSION_NONE;
            t.text = (png_charp)o->parameters;
        }
        png_set_text(png, info, &t, 1);
    }
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    out->data = c->out.data;
    out->len = c->out.len;
    c->out.data = NULL;
    rc = 0;
done:
    if (png) png_destroy_write_struct(&png, info ? &info : NULL);
    if (c) free(c->out.data);
    free(c);
    free(rows);
    free(latin1);
    return rc;
}

/* ---- JPEG ---------------------------------------------------------------- */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char *err;
    size_t errlen;
} jpeg_fail_mgr;

static void jpeg_fail(j_common_ptr cinfo)
{
    jpeg_fail_mgr *f = (jpeg_fail_mgr *)cinfo->err;
    char msg[JMSG_LENGTH_MAX];
    cinfo->err->format_message(cinfo, msg);
    snprintf(f->err, f->errlen, "JPEG encoder: %s", msg);
    longjmp(f->jb, 1);
}

/* "Exif\0\0" + the UserComment block: piexif.insert's APP1 payload. */
static int exif_app1(const char *text, uint8_t **out, size_t *outlen, char *err, size_t errlen)
{
    uint8_t *tiff;
    size_t n;
    if (exif_user_comment_build(text, &tiff, &n, err, errlen) != 0) return -1;
    if (n + 6 > APP1_MAX_PAYLOAD) {
        snprintf(err, errlen,
                 "the parameters text is too long for JPEG EXIF (%zu bytes, at most %d); use png or webp",
                 n + 6, APP1_MAX_PAYLOAD);
        free(tiff);
        return -1;
    }
    uint8_t *p = malloc(n + 6);
    if (!p) {
        snprintf(err, errlen, "JPEG encoder: out of memory");
        free(tiff);
        return -1;
    }
    memcpy(p, "Exif\0\0", 6);
    memcpy(p + 6, tiff, n);
    free(tiff);
    *out = p;
    *outlen = n + 6;
    return 0;
}

static int encode_jpeg(const uint8_t *rgb, int w, int h, size_t stride, const img_encode_opts *o,
                       img_buf *out, char *err, size_t errlen)
{
    if (w > JPEG_MAX_SIDE || h > JPEG_MAX_SIDE) {
        snprintf(err, errlen, "JPEG cannot hold %dx%d (at most %d per side)", w, h, JPEG_MAX_SIDE);
        return -1;
    }
    uint8_t *app1 = NULL;
    size_t app1_len = 0;
    if (o->parameters && exif_app1(o->parameters, &app1, &app1_len, err, errlen) != 0) return -1;

    struct jpeg_compress_struct *ci = calloc(1, sizeof *ci);
    jpeg_fail_mgr *jerr = calloc(1, sizeof *jerr);
    unsigned char **mem = calloc(1, sizeof *mem);
    unsigned long *mem_len = calloc(1, sizeof *mem_len);
    int rc = -1;
    if (!ci || !jerr || !mem || !mem_len) {
        snprintf(err, errlen, "JPEG encoder: out of memory");
        goto done;
    }
    ci->err = jpeg_std_error(&jerr->pub);
    jerr->pub.error_exit = jpeg_fail;
    jerr->err = err;
    jerr->errlen = errlen;
    if (setjmp(jerr->jb)) goto done;
    jpeg_create_compress(ci);
    jpeg_mem_dest(ci, mem, mem_len);
    ci->image_width = (JDIMENSION)w;
    ci->image_height = (JDIMENSION)h;
    ci->input_components = 3;
    ci->in_color_space = JCS_RGB;
    jpeg_set_defaults(ci); /* YCbCr 4:2:0, standard Huffman tables, islow DCT: PIL's defaults */
    jpeg_set_quality(ci, o->quality, TRUE);
    if (app1) ci->write_JFIF_header = FALSE; /* piexif.insert replaces the JFIF APP0 */
    jpeg_start_compress(ci, TRUE);
    if (app1) jpeg_write_marker(ci, JPEG_APP0 + 1, app1, (unsigned int)app1_len);
    while (ci->next_scanline < ci->image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)ci->next_scanline * stride);
        jpeg_write_scanlines(ci, &row, 1);
    }
    jpeg_finish_compress(ci);
    out->data = *mem;
    out->len = *mem_len;
    *mem = NULL;
    rc = 0;
done:
    if (ci) jpeg_destroy_compress(ci);
    if (mem) free(*mem);
    free(mem);
    free(mem_len);
    free(jerr);
    free(ci);
    free(app1);
    return rc;
}

/* ---- WebP ---------------------------------------------------------------- */

static int webp_writer(const uint8_t *d, size_t n, const WebPPicture *pic)
{
    return mb_append(pic->custom_ptr, d, n) == 0;
}

static int append_chunk(membuf *m, const char fourcc[4], const uint8_t *d, size_t n)
{
    uint8_t head[8];
    memcpy(head, fourcc, 4);
    le32(head + 4, (uint32_t)n);
    static const uint8_t pad = 0;
    if (mb_append(m, head, 8) || mb_append(m, d, n)) return -1;
    return (n & 1) ? mb_append(m, &pad, 1) : 0;
}

/* piexif.insert for WebP (piexif/_webp.py): the simple file
 * RIFF/WEBP/{VP8 |VP8L} becomes RIFF/WEBP/VP8X/{VP8 |VP8L}/EXIF; VP8X has the
 * EXIF flag (and the alpha flag a VP8L header declares) and the canvas
 * size minus one in 24-bit fields. */
static int webp_add_exif(const membuf *simple, int w, int h, const char *text, membuf *ext, char *err, size_t errlen)
{
    const uint8_t *s = simple->data;
    if (simple->len < 20 || memcmp(s, "RIFF", 4) || memcmp(s + 8, "WEBP", 4) ||
        (memcmp(s + 12, "VP8 ", 4) && memcmp(s + 12, "VP8L", 4))) {
        snprintf(err, errlen, "WebP encoder: unexpected container layout");
        return -1;
    }
    size_t img_len = (size_t)s[16] | (size_t)s[17] << 8 | (size_t)s[18] << 16 | (size_t)s[19] << 24;
    if (img_len > simple->len - 20) {
        snprintf(err, errlen, "WebP encoder: truncated image chunk");
        return -1;
    }
    uint8_t *tiff;
    size_t tiff_len;
    if (exif_user_comment_build(text, &tiff, &tiff_len, err, errlen) != 0) return -1;
    uint8_t vp8x[10] = {0x08};
    if (!memcmp(s + 12, "VP8L", 4) && img_len >= 5 && (s[24] >> 4 & 1)) vp8x[0] |= 0x10;
    vp8x[4] = (uint8_t)(w - 1); vp8x[5] = (uint8_t)((w - 1) >> 8); vp8x[6] = (uint8_t)((w - 1) >> 16);
    vp8x[7] = (uint8_t)(h - 1); vp8x[8] = (uint8_t)((h - 1) >> 8); vp8x[9] = (uint8_t)((h - 1) >> 16);
    size_t riff = 4 + 18 + 8 + img_len + (img_len & 1) + 8 + tiff_len + (tiff_len & 1);
    uint8_t head[12];
    memcpy(head, "RIFF", 4);
    le32(head + 4, (uint32_t)riff);
    memcpy(head + 8, "WEBP", 4);
    int rc = mb_append(ext, head, 12) || append_chunk(ext, "VP8X", vp8x, 10) ||
             append_chunk(ext, (const char *)s + 12, s + 20, img_len) || append_chunk(ext, "EXIF", tiff, tiff_len);
    free(tiff);
    if (rc || riff > UINT32_MAX) {
        snprintf(err, errlen, "WebP encoder: out of memory");
        return -1;
    }
    return 0;
}

static int encode_webp(const uint8_t *rgb, int w, int h, size_t stride, const img_encode_opts *o,
                       img_buf *out, char *err, size_t errlen)
{
    if (w > WEBP_MAX_SIDE || h > WEBP_MAX_SIDE) {
        snprintf(err, errlen, "WebP cannot hold %dx%d (at most %d per side)", w, h, WEBP_MAX_SIDE);
        return -1;
    }
    WebPConfig cfg;
    WebPPicture pic;
    membuf simple = {0}, ext = {0};
    /* PIL's WebP save: the default preset at the quality, method 4. */
    if (!WebPConfigPreset(&cfg, WEBP_PRESET_DEFAULT, (float)o->quality) || !WebPPictureInit(&pic)) {
        snprintf(err, errlen, "WebP encoder: libwebp version mismatch");
        return -1;
    }
    cfg.lossless = o->webp_lossless;
    cfg.method = 4;
    pic.use_argb = o->webp_lossless;
    pic.width = w;
    pic.height = h;
    pic.writer = webp_writer;
    pic.custom_ptr = &simple;
    int rc = -1;
    if (!WebPPictureImportRGB(&pic, rgb, (int)stride)) {
        snprintf(err, errlen, "WebP encoder: out of memory");
    } else if (!WebPEncode(&cfg, &pic)) {
        snprintf(err, errlen, "WebP encoder: error %d", (int)pic.error_code);
    } else if (!o->parameters) {
        out->data = simple.data;
        out->len = simple.len;
        simple.data = NULL;
        rc = 0;
    } else if (webp_add_exif(&simple, w, h, o->parameters, &ext, err, errlen) == 0) {
        out->data = ext.data;
        out->len = ext.len;
        ext.data = NULL;
        rc = 0;
    }
    WebPPictureFree(&pic);
    free(simple.data);
    free(ext.data);
    return rc;
}

int img_encode(const uint8_t *rgb, int width, int height, size_t stride, const img_encode_opts *o,
               img_buf *out, char *err, size_t errlen)
{
    out->data = NULL;
    out->len = 0;
    if (width <= 0 || height <= 0 || stride < (size_t)width * 3) {
        snprintf(err, errlen, "cannot encode a %dx%d image with a row stride of %zu bytes", width, height, stride);
        return -1;
    }
    if (o->format != IMG_PNG && (o->quality < 1 || o->quality > 100)) {
        snprintf(err, errlen, "quality %d is not in 1..100", o->quality);
        return -1;
    }
    switch (o->format) {
    case IMG_PNG: return encode_png(rgb, width, height, stride, o, out, err, errlen);
    case IMG_JPEG: return encode_jpeg(rgb, width, height, stride, o, out, err, errlen);
    case IMG_WEBP: return encode_webp(rgb, width, height, stride, o, out, err, errlen);
    }
    snprintf(err, errlen, "unknown image format %d", (int)o->format);
    return -1;
}

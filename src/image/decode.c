/* PNG/JPEG/WebP decoding to RGB8 with bomb limits and EXIF orientation, and
 * reading back the `parameters` infotext (see decode.h). */
#include "image/decode.h"

#include <stdio.h> /* before jpeglib.h, which uses FILE */

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <webp/decode.h>

#include "image/exif.h"
#include "image/utf8.h"

#define PNG_CHUNK_MAX (8u << 20)   /* bytes of one ancillary chunk (zTXt bombs) */
#define JPEG_SCAN_MAX 500          /* progressive scans (CPU bombs) */
#define JPEG_MEMORY_MAX (1024L << 20)

void img_limits_default(img_limits *l)
{
    l->max_pixels = 4096u * 4096u;
    l->max_side = 16384;
}

void img_rgb_free(img_rgb *im)
{
    free(im->rgb);
    im->rgb = NULL;
}

static uint32_t rd_be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint32_t rd_le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

/* ---- sniffing ------------------------------------------------------------- */

static bool starts(const uint8_t *d, size_t len, const void *magic, size_t n, size_t at)
{
    return len >= at + n && memcmp(d + at, magic, n) == 0;
}

/* What non-PNG/JPEG/WebP bytes look like, for the error message. */
static const char *guess_other(const uint8_t *d, size_t len)
{
    size_t i = 0;
    while (i < len && i < 64 && (d[i] == ' ' || d[i] == '\t' || d[i] == '\r' || d[i] == '\n')) i++;
    if (starts(d, len, "GIF8", 4, 0)) return "a GIF image";
    if (starts(d, len, "BM", 2, 0)) return "a BMP image";
    if (starts(d, len, "II*\0", 4, 0) || starts(d, len, "MM\0*", 4, 0)) return "a TIFF image";
    if (starts(d, len, "ftyp", 4, 4)) return "an ISO media file (AVIF/HEIC/MP4)";
    if (starts(d, len, "\xff\x0a", 2, 0) || starts(d, len, "\0\0\0\x0cJXL ", 8, 0)) return "a JPEG XL image";
    if (starts(d, len, "RIFF", 4, 0)) return "a RIFF file that is not WebP";
    if (starts(d, len, "%PDF", 4, 0)) return "a PDF document";
    if (starts(d, len, "PK\x03\x04", 4, 0)) return "a ZIP archive";
    if (i < len && d[i] == '<') return "HTML/XML text";
    if (i < len && (d[i] == '{' || d[i] == '[')) return "JSON text";
    return NULL;
}

int img_sniff(const uint8_t *d, size_t len, img_format *f, char *err, size_t errlen)
{
    if (starts(d, len, "\x89PNG\r\n\x1a\n", 8, 0)) { *f = IMG_PNG; return 0; }
    if (starts(d, len, "\xff\xd8\xff", 3, 0)) { *f = IMG_JPEG; return 0; }
    if (starts(d, len, "RIFF", 4, 0) && starts(d, len, "WEBP", 4, 8)) { *f = IMG_WEBP; return 0; }
    if (len == 0) {
        snprintf(err, errlen, "the image data is empty");
        return -1;
    }
    const char *what = guess_other(d, len);
    if (what) {
        snprintf(err, errlen, "unsupported image: the data is %s; send PNG, JPEG or WebP", what);
    } else {
        char hex[3 * 8 + 1] = "";
        for (size_t i = 0; i < len && i < 8; i++) snprintf(hex + 3 * i, 4, "%02x ", d[i]);
        hex[strlen(hex) - 1] = 0;
        snprintf(err, errlen, "not a PNG, JPEG or WebP image (it starts with bytes %s)", hex);
    }
    return -1;
}

static int check_limits(const char *fmt, uint32_t w, uint32_t h, const img_limits *lim, char *err, size_t errlen)
{
    if (w == 0 || h == 0) {
        snprintf(err, errlen, "%s image has a zero size (%ux%u)", fmt, w, h);
        return -1;
    }
    if (w > (uint32_t)lim->max_side || h > (uint32_t)lim->max_side || (uint64_t)w * h > lim->max_pixels) {
        snprintf(err, errlen, "%s image is %ux%u, over the limit of %d per side and %llu pixels", fmt, w, h,
                 lim->max_side, (unsigned long long)lim->max_pixels);
        return -1;
    }
    return 0;
}

/* ---- container walkers (bounds-checked) ----------------------------------- */

/* Calls fn for each PNG chunk until it returns nonzero (then returns that)
 * or the data ends (0). */
typedef int (*png_chunk_fn)(const uint8_t type[4], const uint8_t *data, size_t len, void *arg);

static int png_walk(const uint8_t *d, size_t len, png_chunk_fn fn, void *arg)
{
    size_t off = 8;
    while (len - off >= 12) {
        size_t n = rd_be32(d + off);
        if (n > len - off - 12) return 0;
        int rc = fn(d + off + 4, d + off + 8, n, arg);
        if (rc) return rc;
        off += 12 + n;
    }
    return 0;
}

/* The first RIFF chunk `fourcc` of a WebP file: 0 found, 1 absent. */
static int webp_chunk(const uint8_t *d, size_t len, const char *fourcc, const uint8_t **data, size_t *n)
{
    size_t end = 8 + (size_t)rd_le32(d + 4);
    if (end > len) end = len;
    size_t off = 12;
    while (off <= end && end - off >= 8) {
        size_t cn = rd_le32(d + off + 4);
        if (cn > end - off - 8) return 1;
        if (memcmp(d + off, fourcc, 4) == 0) {
            *data = d + off + 8;
            *n = cn;
            return 0;
        }
        off += 8 + cn + (cn & 1);
        if (off > end) return 1;
    }
    return 1;
}

/* The TIFF block of the first JPEG APP1 "Exif\0\0" segment before SOS:
 * 0 found, 1 absent. */
static int jpeg_exif(const uint8_t *d, size_t len, const uint8_t **tiff, size_t *n)
{
    size_t off = 2;
    while (len - off >= 4 && d[off] == 0xFF) {
        uint8_t m = d[off + 1];
        if (m == 0xFF) { off++; continue; }   /* fill byte */
        if (m == 0xDA || m == 0xD9) return 1; /* SOS, EOI */
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) { off += 2; continue; }
        size_t seg = (size_t)d[off + 2] << 8 | d[off + 3];
        if (seg < 2 || seg > len - off - 2) return 1;
        if (m == 0xE1 && seg >= 8 && memcmp(d + off + 4, "Exif\0\0", 6) == 0) {
            *tiff = d + off + 10;
            *n = seg - 8;
            return 0;
        }
        off += 2 + seg;
    }
    return 1;
}

/* WebP EXIF chunks normally hold the TIFF block itself; some writers keep
 * the JPEG "Exif\0\0" prefix. */
static int webp_exif(const uint8_t *d, size_t len, const uint8_t **tiff, size_t *n)
{
    if (webp_chunk(d, len, "EXIF", tiff, n) != 0) return 1;
    if (*n >= 6 && memcmp(*tiff, "Exif\0\0", 6) == 0) { *tiff += 6; *n -= 6; }
    return 0;
}

/* ---- EXIF orientation (PIL.ImageOps.exif_transpose) ----------------------- */

/* Source pixel of output (x, y) for orientation o, source w x h. */
static void orient_src(int o, int w, int h, int x, int y, int *sx, int *sy)
{
    switch (o) {
    case 2: *sx = w - 1 - x; *sy = y; break;             /* FLIP_LEFT_RIGHT */
    case 3: *sx = w - 1 - x; *sy = h - 1 - y; break;     /* ROTATE_180 */
    case 4: *sx = x; *sy = h - 1 - y; break;             /* FLIP_TOP_BOTTOM */
    case 5: *sx = y; *sy = x; break;                     /* TRANSPOSE */
    case 6: *sx = y; *sy = h - 1 - x; break;             /* ROTATE_270 (90 clockwise) */
    case 7: *sx = w - 1 - y; *sy = h - 1 - x; break;     /* TRANSVERSE */
    case 8: *sx = w - 1 - y; *sy = x; break;             /* ROTATE_90 (90 counter-clockwise) */
    default: *sx = x; *sy = y; break;
    }
}

static int apply_orientation(img_rgb *im, int o, char *err, size_t errlen)
{
    if (o < 2 || o > 8) return 0;
    int w = im->width, h = im->height;
    int ow = o >= 5 ? h : w, oh = o >= 5 ? w : h;
    uint8_t *dst = malloc((size_t)w * h * 3);
    if (!dst) {
        snprintf(err, errlen, "out of memory rotating a %dx%d image", w, h);
        return -1;
    }
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
            int sx, sy;
            orient_src(o, w, h, x, y, &sx, &sy);
            memcpy(dst + ((size_t)y * ow + x) * 3, im->rgb + ((size_t)sy * w + sx) * 3, 3);
        }
    free(im->rgb);
    im->rgb = dst;
    im->width = ow;
    im->height = oh;
    return 0;
}

/* ---- PNG ------------------------------------------------------------------ */

typedef struct {
    const uint8_t *p;
    size_t len, off;
    char *err;
    size_t errlen;
    uint8_t *pixels;
    png_bytep *rows;
    bool image_read; /* the pixels are complete; trouble after IDAT is ignored */
} png_src;

static void png_fail(png_structp png, png_const_charp msg)
{
    png_src *s = png_get_error_ptr(png);
    snprintf(s->err, s->errlen, "invalid PNG: %s", msg);
    png_longjmp(png, 1);
}

static void png_quiet(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static void png_pull(png_structp png, png_bytep d, size_t n)
{
    png_src *s = png_get_io_ptr(png);
    if (n > s->len - s->off) png_error(png, "truncated data");
    memcpy(d, s->p + s->off, n);
    s->off += n;
}

/* PIL's convert("RGB") on what PIL opens: expand palette and grey, drop
 * alpha/tRNS, 16 -> 8 bits by the high byte. */
static void png_rgb8_transforms(png_structp png, png_infop info)
{
    int ct = png_get_color_type(png, info), bits = png_get_bit_depth(png, info);
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ct == PNG_COLOR_TYPE_GRAY && bits < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (bits == 16) png_set_strip_16(png);
    if ((ct & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS)) png_set_strip_alpha(png);
    if (!(ct & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
}

static int decode_png(const uint8_t *d, size_t len, const img_limits *lim, img_rgb *out, char *err, size_t errlen)
{
    png_src *s = calloc(1, sizeof *s);
    png_structp png = s ? png_create_read_struct(PNG_LIBPNG_VER_STRING, s, png_fail, png_quiet) : NULL;
    png_infop info = png ? png_create_info_struct(png) : NULL;
    int rc = -1;
    if (!info) {
        snprintf(err, errlen, "PNG decoder: out of memory");
        goto done;
    }
    *s = (png_src){.p = d, .len = len, .err = err, .errlen = errlen};
    if (setjmp(png_jmpbuf(png))) {
        if (s->image_read) goto finish; /* the pixels are complete: a broken tail is ignored */
        goto done;
    }
    png_set_read_fn(png, s, png_pull);
    png_set_user_limits(png, (png_uint_32)lim->max_side, (png_uint_32)lim->max_side);
    png_set_chunk_malloc_max(png, PNG_CHUNK_MAX);
    png_set_benign_errors(png, 1);
    png_read_info(png, info);
    uint32_t w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if (check_limits("PNG", w, h, lim, err, errlen) != 0) goto done;
    png_rgb8_transforms(png, info);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)w * 3) {
        snprintf(err, errlen, "PNG decoder: unexpected row layout (%zu bytes for %u pixels)",
                 (size_t)png_get_rowbytes(png, info), w);
        goto done;
    }
    s->pixels = malloc((size_t)w * h * 3);
    s->rows = malloc((size_t)h * sizeof *s->rows);
    if (!s->pixels || !s->rows) {
        snprintf(err, errlen, "PNG decoder: out of memory for %ux%u pixels", w, h);
        goto done;
    }
    for (uint32_t y = 0; y < h; y++) s->rows[y] = s->pixels + (size_t)y * w * 3;
    png_read_image(png, s->rows);
    s->image_read = true;
    png_read_end(png, info);
finish:;
    png_bytep exif = NULL;
    png_uint_32 exif_len = 0;
    int orientation = png_get_eXIf_1(png, info, &exif_len, &exif) ? exif_orientation(exif, exif_len) : 0;
    *out = (img_rgb){.rgb = s->pixels, .width = (int)png_get_image_width(png, info),
                     .height = (int)png_get_image_height(png, info), .format = IMG_PNG, .orientation = orientation};
    s->pixels = NULL;
    rc = 0;
done:
    if (png) png_destroy_read_struct(&png, info ? &info : NULL, NULL);
    if (s) { free(s->pixels); free(s->rows); }
    free(s);
    return rc;
}

/* ---- JPEG ----------------------------------------------------------------- */

typedef struct {
    struct jpeg_error_mgr pub;
    struct jpeg_progress_mgr progress;
    jmp_buf jb;
    char *err;
    size_t errlen;
    uint8_t *pixels;
} jpeg_src;

static void jpeg_fail(j_common_ptr ci)
{
    jpeg_src *s = (jpeg_src *)ci->err;
    char msg[JMSG_LENGTH_MAX];
    ci->err->format_message(ci, msg);
    snprintf(s->err, s->errlen, "invalid JPEG: %s", msg);
    longjmp(s->jb, 1);
}

/* Warnings are ignored (as PIL does) except running out of data, which
 * libjpeg would otherwise paper over with grey: the file ends (JWRN_JPEG_EOF),
 * or the entropy-coded data ends at a marker before the frame the SOF
 * header claims is complete (JWRN_HIT_MARKER: a header claiming 8000x500
 * over 256x256 of data). */
static void jpeg_warn(j_common_ptr ci, int level)
{
    jpeg_src *s = (jpeg_src *)ci->err;
    if (level == -1 && ci->err->msg_code == JWRN_JPEG_EOF) {
        snprintf(s->err, s->errlen, "invalid JPEG: the data is truncated");
        longjmp(s->jb, 1);
    }
    if (level == -1 && ci->err->msg_code == JWRN_HIT_MARKER) {
        j_decompress_ptr di = (j_decompress_ptr)ci;
        snprintf(s->err, s->errlen, "invalid JPEG: the image data ends before the %ux%u pixels its header claims",
                 (unsigned)di->image_width, (unsigned)di->image_height);
        longjmp(s->jb, 1);
    }
    if (level == -1) ci->err->num_warnings++;
}

static void jpeg_progress(j_common_ptr ci)
{
    jpeg_src *s = (jpeg_src *)ci->err;
    j_decompress_ptr di = (j_decompress_ptr)ci;
    if (di->input_scan_number > JPEG_SCAN_MAX) {
        snprintf(s->err, s->errlen, "invalid JPEG: more than %d progressive scans", JPEG_SCAN_MAX);
        longjmp(s->jb, 1);
    }
}

static int decode_jpeg(const uint8_t *d, size_t len, const img_limits *lim, img_rgb *out, char *err, size_t errlen)
{
    struct jpeg_decompress_struct *ci = calloc(1, sizeof *ci);
    jpeg_src *s = calloc(1, sizeof *s);
    volatile int rc = -1;
    if (!ci || !s) {
        snprintf(err, errlen, "JPEG decoder: out of memory");
        goto done;
    }
    ci->err = jpeg_std_error(&s->pub);
    s->pub.error_exit = jpeg_fail;
    s->pub.emit_message = jpeg_warn;
    s->progress.progress_monitor = jpeg_progress;
    s->err = err;
    s->errlen = errlen;
    if (setjmp(s->jb)) goto done;
    jpeg_create_decompress(ci);
    ci->progress = &s->progress;
    ci->mem->max_memory_to_use = JPEG_MEMORY_MAX;
    jpeg_mem_src(ci, d, (unsigned long)len);
    if (jpeg_read_header(ci, TRUE) != JPEG_HEADER_OK) {
        snprintf(err, errlen, "invalid JPEG: no image (tables only)");
        goto done;
    }
    if (check_limits("JPEG", ci->image_width, ci->image_height, lim, err, errlen) != 0) goto done;
    if (ci->jpeg_color_space == JCS_CMYK || ci->jpeg_color_space == JCS_YCCK) {
        snprintf(err, errlen, "CMYK JPEG images are not supported; convert the image to RGB");
        goto done;
    }
    ci->out_color_space = JCS_RGB;
    jpeg_start_decompress(ci);
    if (ci->output_components != 3 || ci->output_width != ci->image_width || ci->output_height != ci->image_height) {
        snprintf(err, errlen, "JPEG decoder: unexpected output layout");
        goto done;
    }
    size_t w = ci->output_width, h = ci->output_height;
    s->pixels = malloc(w * h * 3);
    if (!s->pixels) {
        snprintf(err, errlen, "JPEG decoder: out of memory for %zux%zu pixels", w, h);
        goto done;
    }
    while (ci->output_scanline < ci->output_height) {
        JSAMPROW row = s->pixels + (size_t)ci->output_scanline * w * 3;
        jpeg_read_scanlines(ci, &row, 1);
    }
    jpeg_finish_decompress(ci);
    const uint8_t *tiff;
    size_t tn;
    int orientation = jpeg_exif(d, len, &tiff, &tn) == 0 ? exif_orientation(tiff, tn) : 0;
    *out = (img_rgb){.rgb = s->pixels, .width = (int)w, .height = (int)h, .format = IMG_JPEG, .orientation = orientation};
    s->pixels = NULL;
    rc = 0;
done:
    if (ci) jpeg_destroy_decompress(ci);
    if (s) free(s->pixels);
    free(s);
    free(ci);
    return rc;
}

/* ---- WebP ----------------------------------------------------------------- */

static const char *webp_status(VP8StatusCode c)
{
    switch (c) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "corrupt bitstream";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "the data is truncated";
    default: return "decoding failed";
    }
}

static int decode_webp(const uint8_t *d, size_t len, const img_limits *lim, img_rgb *out, char *err, size_t errlen)
{
    WebPBitstreamFeatures f;
    VP8StatusCode st = WebPGetFeatures(d, len, &f);
    if (st != VP8_STATUS_OK) {
        snprintf(err, errlen, "invalid WebP: %s", webp_status(st));
        return -1;
    }
    if (f.has_animation) {
        snprintf(err, errlen, "animated WebP images are not supported");
        return -1;
    }
    if (check_limits("WebP", (uint32_t)f.width, (uint32_t)f.height, lim, err, errlen) != 0) return -1;
    size_t w = (size_t)f.width, h = (size_t)f.height;
    uint8_t *px = malloc(w * h * 3);
    if (!px) {
        snprintf(err, errlen, "WebP decoder: out of memory for %zux%zu pixels", w, h);
        return -1;
    }
    if (!WebPDecodeRGBInto(d, len, px, w * h * 3, (int)(w * 3))) {
        snprintf(err, errlen, "invalid WebP: corrupt or truncated image data");
        free(px);
        return -1;
    }
    const uint8_t *tiff;
    size_t tn;
    int orientation = webp_exif(d, len, &tiff, &tn) == 0 ? exif_orientation(tiff, tn) : 0;
    *out = (img_rgb){.rgb = px, .width = (int)w, .height = (int)h, .format = IMG_WEBP, .orientation = orientation};
    return 0;
}

int img_decode(const uint8_t *data, size_t len, const img_limits *lim, img_rgb *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    img_format f;
    if (img_sniff(data, len, &f, err, errlen) != 0) return -1;
    int rc = f == IMG_PNG ? decode_png(data, len, lim, out, err, errlen)
           : f == IMG_JPEG ? decode_jpeg(data, len, lim, out, err, errlen)
           : decode_webp(data, len, lim, out, err, errlen);
    if (rc == 0 && apply_orientation(out, out->orientation, err, errlen) != 0) {
        img_rgb_free(out);
        return -1;
    }
    return rc;
}

/* ---- reading the parameters text back ------------------------------------ */

static char *utf8_from_latin1(const uint8_t *p, size_t n)
{
    char *s = malloc(2 * n + 1);
    if (!s) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) o += utf8_put(p[i], s + o);
    s[o] = 0;
    return s;
}

static char *dup_bytes(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) { memcpy(s, p, n); s[n] = 0; }
    return s;
}

/* tEXt "parameters\0<latin1>" or iTXt "parameters\0" 0 0 lang\0 tkey\0 <utf8>. */
static int png_parameters_chunk(const uint8_t type[4], const uint8_t *data, size_t len, void *arg)
{
    static const char key[] = "parameters";
    if (len < sizeof key || memcmp(data, key, sizeof key) != 0) return 0;
    const uint8_t *p = data + sizeof key, *end = data + len;
    char **text = arg;
    if (memcmp(type, "tEXt", 4) == 0) {
        *text = utf8_from_latin1(p, (size_t)(end - p));
        return *text ? 1 : -1;
    }
    if (memcmp(type, "iTXt", 4) != 0 || end - p < 2 || p[0] != 0) return 0; /* compressed iTXt: not read */
    p += 2;
    for (int field = 0; field < 2; field++) {
        const uint8_t *nul = memchr(p, 0, (size_t)(end - p));
        if (!nul) return 0;
        p = nul + 1;
    }
    *text = dup_bytes(p, (size_t)(end - p));
    return *text ? 1 : -1;
}

int img_read_parameters(const uint8_t *data, size_t len, char **text)
{
    *text = NULL;
    img_format f;
    char err[160];
    if (img_sniff(data, len, &f, err, sizeof err) != 0) return -1;
    if (f == IMG_PNG) {
        int rc = png_walk(data, len, png_parameters_chunk, text);
        return rc == 1 ? 0 : rc == 0 ? 1 : -1;
    }
    const uint8_t *tiff;
    size_t n;
    int found = f == IMG_JPEG ? jpeg_exif(data, len, &tiff, &n) : webp_exif(data, len, &tiff, &n);
    if (found != 0) return 1;
    int rc = exif_user_comment_read(tiff, n, text);
    return rc == 0 ? 0 : 1;
}

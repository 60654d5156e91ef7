/* src/image encoders, decoders and base64 against the libraries themselves
 * (libpng, libjpeg, libwebp read our output back) and against what A1111
 * writes (tests/data/image_goldens.json from tools/reference/
 * make_image_goldens.py: Pillow + piexif bytes, PIL's decoding of inputs). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h> /* before jpeglib.h */

#include <cjson/cJSON.h>
#include <jpeglib.h>
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <webp/decode.h>

#include "image/base64.h"
#include "image/decode.h"
#include "image/encode.h"
#include "image/exif.h"
#include "testutil.h"

static cJSON *goldens;
static uint8_t *gold_rgb; /* the 48x32 golden picture */
static int gold_w, gold_h;

/* ---- helpers ---------------------------------------------------------------- */

static uint8_t *b64(const char *s, size_t *n)
{
    uint8_t *out;
    char err[128];
    assert_int_equal(b64_decode(s, strlen(s), 0, &out, n, err, sizeof err), 0);
    return out;
}

static const char *gstr(const cJSON *o, const char *key)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
    assert_non_null(s);
    return s;
}

static uint8_t *gbytes(const cJSON *o, const char *key, size_t *n) { return b64(gstr(o, key), n); }

/* A deterministic photo-like test picture: smooth colour fields and a
 * little per-pixel noise (-2..1). */
static uint8_t *make_picture(int w, int h, size_t stride)
{
    uint8_t *p = calloc((size_t)h, stride);
    uint32_t s = 12345;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            s = s * 1103515245u + 12345u;
            int n = (int)(s >> 30) - 2;
            uint8_t *q = p + (size_t)y * stride + 3 * x;
            q[0] = (uint8_t)(128 + 100 * sin(x / 9.0) * cos(y / 7.0) + n);
            q[1] = (uint8_t)(20 + x * 200 / w + n);
            q[2] = (uint8_t)(128 + 90 * cos((x + y) / 13.0) + n);
        }
    return p;
}

static double psnr(const uint8_t *a, size_t astride, const uint8_t *b, size_t bstride, int w, int h)
{
    double se = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < 3 * w; x++) {
            double d = (double)a[(size_t)y * astride + x] - b[(size_t)y * bstride + x];
            se += d * d;
        }
    return se == 0 ? INFINITY : 10 * log10(255.0 * 255.0 / (se / (3.0 * w * h)));
}

static img_buf encode(img_format f, const uint8_t *rgb, int w, int h, size_t stride, int quality, const char *text)
{
    img_encode_opts o;
    img_encode_opts_default(&o, f);
    if (quality) o.quality = quality;
    o.parameters = text;
    img_buf b;
    char err[256];
    int rc = img_encode(rgb, w, h, stride, &o, &b, err, sizeof err);
    if (rc != 0) fail_msg("encode %s: %s", img_format_name(f), err);
    return b;
}

/* ---- libpng read-back ------------------------------------------------------ */

typedef struct {
    const uint8_t *p;
    size_t len, off;
} memsrc;

static void png_mem_read(png_structp png, png_bytep d, size_t n)
{
    memsrc *s = png_get_io_ptr(png);
    if (n > s->len - s->off) png_error(png, "eof");
    memcpy(d, s->p + s->off, n);
    s->off += n;
}

/* Pixels (RGB8) and the "parameters" text entry as libpng reports them. */
static uint8_t *libpng_read(const img_buf *b, int *w, int *h, png_textp text_out, char **text_copy)
{
    memsrc s = {b->data, b->len, 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    assert_int_equal(setjmp(png_jmpbuf(png)), 0);
    png_set_read_fn(png, &s, png_mem_read);
    png_read_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    *w = (int)png_get_image_width(png, info);
    *h = (int)png_get_image_height(png, info);
    assert_int_equal(png_get_color_type(png, info), PNG_COLOR_TYPE_RGB);
    assert_int_equal(png_get_bit_depth(png, info), 8);
    png_bytepp rows = png_get_rows(png, info);
    uint8_t *px = malloc((size_t)*w * *h * 3);
    for (int y = 0; y < *h; y++) memcpy(px + (size_t)y * *w * 3, rows[y], (size_t)*w * 3);
    png_textp texts;
    int n = 0;
    png_get_text(png, info, &texts, &n);
    *text_copy = NULL;
    memset(text_out, 0, sizeof *text_out);
    for (int i = 0; i < n; i++)
        if (!strcmp(texts[i].key, "parameters")) {
            *text_out = texts[i];
            size_t len = texts[i].compression == PNG_ITXT_COMPRESSION_NONE ? texts[i].itxt_length : texts[i].text_length;
            *text_copy = strndup(texts[i].text, len);
        }
    png_destroy_read_struct(&png, &info, NULL);
    return px;
}

/* The chunks of a PNG, as "TYPE" strings; the data of the first text chunk. */
static void png_chunk_list(const img_buf *b, char *types, size_t cap, uint8_t **text_data, size_t *text_len, char ctype[5])
{
    size_t off = 8;
    types[0] = 0;
    *text_data = NULL;
    while (off + 12 <= b->len) {
        uint32_t n = (uint32_t)b->data[off] << 24 | b->data[off + 1] << 16 | b->data[off + 2] << 8 | b->data[off + 3];
        const char *t = (const char *)b->data + off + 4;
        if (memcmp(t, "IDAT", 4)) {
            strncat(types, t, 4);
            strncat(types, " ", cap - strlen(types) - 1);
        }
        if (!*text_data && (!memcmp(t, "tEXt", 4) || !memcmp(t, "iTXt", 4) || !memcmp(t, "zTXt", 4))) {
            *text_data = b->data + off + 8;
            *text_len = n;
            memcpy(ctype, t, 4);
            ctype[4] = 0;
        }
        off += 12 + n;
    }
}

/* ---- base64 ------------------------------------------------------------------ */

static void test_base64_rfc4648_vectors(void **state)
{
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        size_t n;
        char *e = b64_encode(plain[i], strlen(plain[i]), &n);
        assert_string_equal(e, enc[i]);
        assert_int_equal(n, strlen(enc[i]));
        free(e);
        if (!*plain[i]) continue;
        uint8_t *d = b64(enc[i], &n);
        assert_int_equal(n, strlen(plain[i]));
        assert_memory_equal(d, plain[i], n);
        free(d);
    }
}

static void test_base64_round_trips_every_length(void **state)
{
    uint8_t buf[300];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)(i * 37 + 11);
    for (size_t len = 1; len <= sizeof buf; len++) {
        size_t n, m;
        char *e = b64_encode(buf, len, &n);
        assert_null(strchr(e, '\n'));
        uint8_t *d = b64(e, &m);
        assert_int_equal(m, len);
        assert_memory_equal(d, buf, len);
        free(d);
        /* without padding, and wrapped at 76 columns as `base64` does */
        while (n && e[n - 1] == '=') e[--n] = 0;
        char wrapped[600] = "";
        for (size_t k = 0; k < n; k += 76) {
            strncat(wrapped, e + k, 76);
            strcat(wrapped, "\r\n");
        }
        d = b64(wrapped, &m);
        assert_int_equal(m, len);
        assert_memory_equal(d, buf, len);
        free(d);
        free(e);
    }
}

static void test_base64_data_uris(void **state)
{
    size_t n;
    uint8_t *d = b64("data:image/png;base64,Zm9vYmFy", &n);
    assert_int_equal(n, 6);
    assert_memory_equal(d, "foobar", 6);
    free(d);
    d = b64("DATA:image/webp;charset=x;base64,Zm9v", &n);
    assert_memory_equal(d, "foo", 3);
    free(d);
    d = b64("data:;base64,Zm9v", &n);
    assert_memory_equal(d, "foo", 3);
    free(d);
}

static void expect_b64_error(const char *text, size_t max_out, const char *needle)
{
    uint8_t *out = (uint8_t *)"untouched";
    size_t n = 7;
    char err[256] = "";
    assert_int_equal(b64_decode(text, strlen(text), max_out, &out, &n, err, sizeof err), -1);
    assert_null(out);
    assert_int_equal(n, 0);
    if (!strstr(err, needle)) fail_msg("'%s': error '%s' lacks '%s'", text, err, needle);
}

static void test_base64_rejects_what_it_should(void **state)
{
    expect_b64_error("Zm9v-mFy", 0, "invalid character '-' at offset 4");
    expect_b64_error("Zm9v_mFy", 0, "invalid character '_'");
    expect_b64_error("Zm9v\x01", 0, "invalid byte 0x01 at offset 4");
    expect_b64_error("Zm9v\xc3\xa9", 0, "invalid byte 0xc3");
    expect_b64_error("Zg==Zg==", 0, "after '=' padding");
    expect_b64_error("Zm9vY", 0, "truncated");
    expect_b64_error("Zg=", 0, "truncated");
    expect_b64_error("Z===", 0, "truncated");
    expect_b64_error("", 0, "no data");
    expect_b64_error("  \n", 0, "no data");
    expect_b64_error("data:text/html;base64,Zm9v", 0, "not an image type");
    expect_b64_error("data:image/png,Zm9v", 0, "not base64");
    expect_b64_error("data:image/png;base64", 0, "without a ','");
    expect_b64_error("Zm9vYmFy", 5, "over the limit of 5");
}

/* ---- EXIF --------------------------------------------------------------------- */

static void test_exif_block_is_piexif_byte_for_byte(void **state)
{
    const cJSON *e;
    int count = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(goldens, "exif")) {
        size_t n, m;
        uint8_t *want = gbytes(e, "tiff_b64", &n), *got;
        char err[128], *back;
        assert_int_equal(exif_user_comment_build(gstr(e, "text"), &got, &m, err, sizeof err), 0);
        assert_int_equal(m, n);
        assert_memory_equal(got, want, n);
        assert_int_equal(exif_user_comment_read(got, m, &back), 0);
        assert_string_equal(back, gstr(e, "text"));
        assert_int_equal(exif_orientation(got, m), 0);
        free(back);
        free(got);
        free(want);
        count++;
    }
    assert_int_equal(count, 4);
    uint8_t *b;
    size_t n;
    char err[128];
    assert_int_equal(exif_user_comment_build("bad \xff utf8", &b, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "UTF-8"));
}

/* ---- PNG --------------------------------------------------------------------------- */

static void test_png_text_chunk_is_pil_add_text(void **state)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(goldens, "png_text")) {
        img_buf b = encode(IMG_PNG, gold_rgb, gold_w, gold_h, (size_t)gold_w * 3, 0, gstr(e, "text"));
        char types[256], ctype[5];
        uint8_t *data;
        size_t len, wn;
        png_chunk_list(&b, types, sizeof types, &data, &len, ctype);
        char want_types[256] = "";
        const cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItem(e, "order")) {
            strcat(want_types, t->valuestring);
            strcat(want_types, " ");
        }
        assert_string_equal(types, want_types); /* IHDR, the text chunk, (IDAT), IEND */
        assert_string_equal(ctype, gstr(e, "type"));
        uint8_t *want = gbytes(e, "data_b64", &wn);
        assert_int_equal(len, wn);
        assert_memory_equal(data, want, wn);
        free(want);
        img_buf_free(&b);
    }
}

static void test_png_is_lossless_for_libpng_with_its_text(void **state)
{
    int w = 77, h = 41;
    size_t stride = 77 * 3 + 13; /* rows with padding */
    uint8_t *src = make_picture(w, h, stride);
    const char *texts[] = {"Steps: 20, ascii only", "caf\xc3\xa9 \xc3\xbf", "\xe7\x8c\xab \xf0\x9f\x90\xb1 Steps: 1"};
    for (int i = 0; i < 3; i++) {
        img_buf b = encode(IMG_PNG, src, w, h, stride, 0, texts[i]);
        int rw, rh;
        png_text t;
        char *text;
        uint8_t *px = libpng_read(&b, &rw, &rh, &t, &text);
        assert_int_equal(rw, w);
        assert_int_equal(rh, h);
        assert_true(isinf(psnr(px, (size_t)w * 3, src, stride, w, h)));
        assert_non_null(text);
        if (i == 2) {
            assert_int_equal(t.compression, PNG_ITXT_COMPRESSION_NONE);
            assert_string_equal(text, texts[i]);
        } else {
            assert_int_equal(t.compression, PNG_TEXT_COMPRESSION_NONE);
            if (i == 0) assert_string_equal(text, texts[0]);
            else assert_string_equal(text, "caf\xe9 \xff"); /* Latin-1 bytes, as PIL writes tEXt */
        }
        free(text);
        free(px);
        img_buf_free(&b);
    }
    free(src);
}

/* ---- JPEG -------------------------------------------------------------------------- */

static void test_jpeg_is_pil_plus_piexif_byte_for_byte(void **state)
{
    const cJSON *e;
    int count = 0;
    const char *text_of[2][2] = {{"ascii", NULL}, {"cjk_emoji", NULL}};
    const cJSON *x;
    cJSON_ArrayForEach(x, cJSON_GetObjectItem(goldens, "png_text"))
        for (int k = 0; k < 2; k++)
            if (!strcmp(gstr(x, "name"), text_of[k][0])) text_of[k][1] = gstr(x, "text");
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(goldens, "jpeg")) {
        const char *name = gstr(e, "name");
        const char *text = !strcmp(name, "ascii") ? text_of[0][1] : text_of[1][1];
        int q = cJSON_GetObjectItem(e, "quality")->valueint;
        img_buf b = encode(IMG_JPEG, gold_rgb, gold_w, gold_h, (size_t)gold_w * 3, q, text);
        size_t n;
        uint8_t *want = gbytes(e, "file_b64", &n);
        if (b.len != n || memcmp(b.data, want, n)) fail_msg("JPEG %s q%d differs from PIL+piexif (%zu vs %zu bytes)", name, q, b.len, n);
        free(want);
        img_buf_free(&b);
        count++;
    }
    assert_int_equal(count, 6);
    img_buf b = encode(IMG_JPEG, gold_rgb, gold_w, gold_h, (size_t)gold_w * 3, 80, NULL);
    size_t n;
    uint8_t *want = b64(gstr(goldens, "jpeg_plain_q80_b64"), &n);
    assert_int_equal(b.len, n); /* no metadata: PIL's own file, JFIF header included */
    assert_memory_equal(b.data, want, n);
    free(want);
    img_buf_free(&b);
}

static void test_jpeg_decodes_with_libjpeg(void **state)
{
    int w = 300, h = 211;
    uint8_t *src = make_picture(w, h, (size_t)w * 3);
    const char *text = "\xe7\x8c\xab \xf0\x9f\x90\xb1\nSteps: 20, Sampler: Euler";
    int qualities[] = {80, 95, 30};
    double min_psnr[] = {28, 33, 24};
    for (int i = 0; i < 3; i++) {
        img_buf b = encode(IMG_JPEG, src, w, h, (size_t)w * 3, qualities[i], text);
        struct jpeg_decompress_struct ci;
        struct jpeg_error_mgr jerr;
        ci.err = jpeg_std_error(&jerr);
        jpeg_create_decompress(&ci);
        jpeg_mem_src(&ci, b.data, b.len);
        jpeg_save_markers(&ci, JPEG_APP0 + 1, 0xFFFF);
        assert_int_equal(jpeg_read_header(&ci, TRUE), JPEG_HEADER_OK);
        assert_false(ci.saw_JFIF_marker); /* piexif replaced it */
        assert_non_null(ci.marker_list);
        assert_int_equal(ci.marker_list->marker, JPEG_APP0 + 1);
        assert_memory_equal(ci.marker_list->data, "Exif\0\0", 6);
        char *back;
        assert_int_equal(exif_user_comment_read(ci.marker_list->data + 6, ci.marker_list->data_length - 6, &back), 0);
        assert_string_equal(back, text);
        free(back);
        assert_int_equal(ci.comp_info[0].h_samp_factor, 2); /* 4:2:0 */
        assert_int_equal(ci.comp_info[0].v_samp_factor, 2);
        jpeg_start_decompress(&ci);
        uint8_t *px = malloc((size_t)w * h * 3);
        while (ci.output_scanline < ci.output_height) {
            JSAMPROW row = px + (size_t)ci.output_scanline * w * 3;
            jpeg_read_scanlines(&ci, &row, 1);
        }
        jpeg_finish_decompress(&ci);
        jpeg_destroy_decompress(&ci);
        double p = psnr(px, (size_t)w * 3, src, (size_t)w * 3, w, h);
        if (p < min_psnr[i]) fail_msg("JPEG q%d PSNR %.2f dB < %.0f", qualities[i], p, min_psnr[i]);
        free(px);
        img_buf_free(&b);
    }
    free(src);
}

static void test_jpeg_refuses_text_too_long_for_app1(void **state)
{
    size_t n = 33000; /* 3-byte characters: 66,000 bytes of UTF-16 */
    char *text = malloc(3 * n + 1);
    for (size_t i = 0; i < n; i++) memcpy(text + 3 * i, "\xe7\x8c\xab", 3);
    text[3 * n] = 0;
    uint8_t px[12] = {0};
    img_encode_opts o;
    img_encode_opts_default(&o, IMG_JPEG);
    o.parameters = text;
    img_buf b;
    char err[256];
    assert_int_equal(img_encode(px, 2, 2, 6, &o, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "too long for JPEG EXIF"));
    assert_null(b.data);
    text[3 * 21000] = 0; /* 42,000 + 48 bytes: fits */
    assert_int_equal(img_encode(px, 2, 2, 6, &o, &b, err, sizeof err), 0);
    img_buf_free(&b);
    text[3 * 21000] = '\xe7';
    o.format = IMG_WEBP; /* no such limit in RIFF */
    assert_int_equal(img_encode(px, 2, 2, 6, &o, &b, err, sizeof err), 0);
    char *back;
    assert_int_equal(img_read_parameters(b.data, b.len, &back), 0);
    assert_string_equal(back, text);
    free(back);
    img_buf_free(&b);
    free(text);
}

/* ---- WebP ---------------------------------------------------------------------------- */

static void riff_chunks(const img_buf *b, char *list, const uint8_t **vp8x, const uint8_t **exif, size_t *exif_len)
{
    assert_memory_equal(b->data, "RIFF", 4);
    assert_memory_equal(b->data + 8, "WEBP", 4);
    size_t riff = b->data[4] | b->data[5] << 8 | b->data[6] << 16 | (size_t)b->data[7] << 24;
    assert_int_equal(riff + 8, b->len);
    list[0] = 0;
    for (size_t off = 12; off + 8 <= b->len;) {
        size_t n = b->data[off + 4] | b->data[off + 5] << 8 | b->data[off + 6] << 16 | (size_t)b->data[off + 7] << 24;
        strncat(list, (const char *)b->data + off, 4);
        strcat(list, "|");
        if (!memcmp(b->data + off, "VP8X", 4)) *vp8x = b->data + off + 8;
        if (!memcmp(b->data + off, "EXIF", 4)) { *exif = b->data + off + 8; *exif_len = n; }
        off += 8 + n + (n & 1);
    }
}

static void test_webp_container_is_piexif_insert(void **state)
{
    const cJSON *wg = cJSON_GetObjectItem(goldens, "webp");
    const char *text = gstr(wg, "text");
    size_t vn, en;
    uint8_t *want_vp8x = gbytes(wg, "vp8x_b64", &vn), *want_exif = gbytes(wg, "exif_b64", &en);
    for (int lossless = 0; lossless < 2; lossless++) {
        img_encode_opts o;
        img_encode_opts_default(&o, IMG_WEBP);
        o.parameters = text;
        o.webp_lossless = lossless;
        img_buf b;
        char err[256], list[64];
        assert_int_equal(img_encode(gold_rgb, gold_w, gold_h, (size_t)gold_w * 3, &o, &b, err, sizeof err), 0);
        const uint8_t *vp8x = NULL, *exif = NULL;
        size_t exif_len = 0;
        riff_chunks(&b, list, &vp8x, &exif, &exif_len);
        assert_string_equal(list, lossless ? "VP8X|VP8L|EXIF|" : "VP8X|VP8 |EXIF|");
        assert_int_equal(vn, 10);
        assert_memory_equal(vp8x, want_vp8x, 10); /* EXIF flag, 47 x 31 canvas */
        assert_int_equal(exif_len, en);
        assert_memory_equal(exif, want_exif, en);
        int rw, rh;
        uint8_t *px = WebPDecodeRGB(b.data, b.len, &rw, &rh);
        assert_non_null(px);
        assert_int_equal(rw, gold_w);
        assert_int_equal(rh, gold_h);
        double p = psnr(px, (size_t)rw * 3, gold_rgb, (size_t)gold_w * 3, gold_w, gold_h);
        if (lossless) assert_true(isinf(p));
        else if (p < 22) fail_msg("lossy WebP PSNR %.2f dB", p); /* a tiny, noisy, checkered picture */
        WebPFree(px);
        img_buf_free(&b);
    }
    free(want_vp8x);
    free(want_exif);
}

static void test_webp_without_text_is_a_simple_file(void **state)
{
    int w = 129, h = 65;
    uint8_t *src = make_picture(w, h, (size_t)w * 3);
    img_buf b = encode(IMG_WEBP, src, w, h, (size_t)w * 3, 90, NULL);
    assert_memory_equal(b.data + 12, "VP8 ", 4);
    WebPBitstreamFeatures f;
    assert_int_equal(WebPGetFeatures(b.data, b.len, &f), VP8_STATUS_OK);
    assert_int_equal(f.width, w);
    assert_false(f.has_alpha);
    int rw, rh;
    uint8_t *px = WebPDecodeRGB(b.data, b.len, &rw, &rh);
    double p = psnr(px, (size_t)w * 3, src, (size_t)w * 3, w, h);
    if (p < 28) fail_msg("WebP q90 PSNR %.2f dB", p);
    WebPFree(px);
    img_buf_free(&b);
    free(src);
}

/* ---- our own reader, every format ---------------------------------------------------------- */

static void test_parameters_read_back_in_every_format(void **state)
{
    const char *texts[] = {"Steps: 20, plain", "caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x90\xb1\nline two", ""};
    for (int f = IMG_PNG; f <= IMG_WEBP; f++)
        for (int i = 0; i < 3; i++) {
            img_buf b = encode((img_format)f, gold_rgb, gold_w, gold_h, (size_t)gold_w * 3, 0, texts[i]);
            char *back;
            assert_int_equal(img_read_parameters(b.data, b.len, &back), 0);
            assert_string_equal(back, texts[i]);
            free(back);
            img_buf_free(&b);
        }
    img_buf b = encode(IMG_PNG, gold_rgb, gold_w, gold_h, (size_t)gold_w * 3, 0, NULL);
    char *back;
    assert_int_equal(img_read_parameters(b.data, b.len, &back), 1);
    assert_null(back);
    assert_int_equal(img_read_parameters((const uint8_t *)"GIF89a", 6, &back), -1);
    img_buf_free(&b);
}

static void test_encode_rejects_bad_arguments(void **state)
{
    uint8_t px[64] = {0};
    img_encode_opts o;
    img_buf b;
    char err[256];
    img_encode_opts_default(&o, IMG_PNG);
    assert_int_equal(img_encode(px, 0, 2, 6, &o, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "0x2"));
    assert_int_equal(img_encode(px, 3, 2, 8, &o, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "stride"));
    o.png_level = 10;
    assert_int_equal(img_encode(px, 2, 2, 6, &o, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "level 10"));
    img_encode_opts_default(&o, IMG_PNG);
    o.parameters = "\xe7\x8c bad";
    assert_int_equal(img_encode(px, 2, 2, 6, &o, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "UTF-8"));
    img_encode_opts_default(&o, IMG_JPEG);
    o.quality = 0;
    assert_int_equal(img_encode(px, 2, 2, 6, &o, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "quality 0"));
    o.quality = 101;
    assert_int_equal(img_encode(px, 2, 2, 6, &o, &b, err, sizeof err), -1);
    o.quality = 80;
    o.parameters = "x\xff";
    assert_int_equal(img_encode(px, 2, 2, 6, &o, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "UTF-8"));
    img_encode_opts_default(&o, IMG_WEBP);
    assert_int_equal(img_encode(px, 16384, 1, 16384 * 3, &o, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "16383"));
}

static void test_format_names(void **state)
{
    img_format f;
    assert_int_equal(img_format_parse("JPG", &f), 0);
    assert_int_equal(f, IMG_JPEG);
    assert_int_equal(img_format_parse("webp", &f), 0);
    assert_string_equal(img_format_mime(f), "image/webp");
    assert_int_equal(img_format_parse("Png", &f), 0);
    assert_string_equal(img_format_name(f), "png");
    assert_int_equal(img_format_parse("gif", &f), -1);
}

/* ---- decoding ------------------------------------------------------------------------- */

static void test_decode_matches_pil(void **state)
{
    const cJSON *c;
    int count = 0;
    img_limits lim;
    img_limits_default(&lim);
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(goldens, "decode")) {
        const char *name = c->string;
        size_t fn, wn;
        uint8_t *file = gbytes(c, "file_b64", &fn), *want = gbytes(c, "rgb_b64", &wn);
        int w = cJSON_GetObjectItem(c, "width")->valueint, h = cJSON_GetObjectItem(c, "height")->valueint;
        img_rgb im;
        char err[256];
        if (img_decode(file, fn, &lim, &im, err, sizeof err) != 0) fail_msg("%s: %s", name, err);
        assert_int_equal(im.width, w);
        assert_int_equal(im.height, h);
        int maxd = 0;
        for (size_t i = 0; i < wn; i++) {
            int d = abs((int)im.rgb[i] - want[i]);
            if (d > maxd) maxd = d;
        }
        /* Lossless formats exactly; JPEG and lossy WebP within the small
         * IDCT/upsampling differences between libjpeg-turbo/libwebp versions. */
        int bound = !strncmp(name, "png", 3) || !strcmp(name, "webp_lossless") || !strcmp(name, "webp_orientation_8") ? 0 : 3;
        if (maxd > bound) fail_msg("%s: max |diff| %d > %d", name, maxd, bound);
        if (strstr(name, "orientation_")) assert_int_equal(im.orientation, atoi(strrchr(name, '_') + 1));
        img_rgb_free(&im);
        free(file);
        free(want);
        count++;
    }
    assert_int_equal(count, 25);
}

static void expect_decode_error(const uint8_t *d, size_t n, const img_limits *lim, const char *needle)
{
    img_rgb im;
    char err[256] = "";
    assert_int_equal(img_decode(d, n, lim, &im, err, sizeof err), -1);
    assert_null(im.rgb);
    if (!strstr(err, needle)) fail_msg("error '%s' lacks '%s'", err, needle);
}

static uint8_t *corpus_file(const char *name, size_t *n)
{
    char path[256];
    snprintf(path, sizeof path, "fuzz/corpus/image_decode/%s", name);
    uint8_t *d = (uint8_t *)tu_read_file(path, n);
    assert_non_null(d);
    return d;
}

static void test_decode_refuses_bombs_truncation_and_other_formats(void **state)
{
    img_limits lim;
    img_limits_default(&lim);
    static const struct { const char *file, *needle; } cases[] = {
        {"png_huge_ihdr.bin", "PNG"},          /* 100000 x 100000: libpng's user limit */
        {"jpeg_huge_sof.bin", "over the limit"},
        {"png_truncated.bin", "invalid PNG"},
        {"jpeg_truncated.bin", "truncated"},
        /* SOF claims 8000x500 over 32x32 of data (baseline, progressive): was padded with grey */
        {"regress_jpeg_sof_claims_more_than_data.bin", "ends before the 8000x500 pixels its header claims"},
        {"regress_jpeg_progressive_sof_claims_more.bin", "ends before the 8000x500 pixels its header claims"},
        {"webp_truncated.bin", "WebP"},
        {"gif.bin", "a GIF image"},
        {"html.bin", "HTML/XML text"},
        {"riff_not_webp.bin", "RIFF file that is not WebP"},
        {"garbage.bin", "not a PNG, JPEG or WebP image"},
        {"empty.bin", "empty"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        uint8_t *d = corpus_file(cases[i].file, &n);
        expect_decode_error(d, n, &lim, cases[i].needle);
        free(d);
    }
    /* a valid 48x32 picture against tighter limits */
    size_t n;
    uint8_t *d = corpus_file("png_rgb.bin", &n);
    img_limits tight = {.max_pixels = 48 * 32 - 1, .max_side = 64};
    expect_decode_error(d, n, &tight, "over the limit of 64 per side and 1535 pixels");
    tight = (img_limits){.max_pixels = 1 << 20, .max_side = 40};
    expect_decode_error(d, n, &tight, "PNG");
    free(d);
    d = corpus_file("webp_lossy.bin", &n);
    expect_decode_error(d, n, &tight, "WebP image is 48x32, over the limit");
    free(d);
}

static void test_decode_refuses_cmyk_jpeg(void **state)
{
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    unsigned char *mem = NULL;
    unsigned long len = 0;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    jpeg_mem_dest(&ci, &mem, &len);
    ci.image_width = 8;
    ci.image_height = 8;
    ci.input_components = 4;
    ci.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&ci);
    jpeg_start_compress(&ci, TRUE);
    uint8_t row[32] = {0};
    while (ci.next_scanline < 8) {
        JSAMPROW r = row;
        jpeg_write_scanlines(&ci, &r, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    img_limits lim;
    img_limits_default(&lim);
    expect_decode_error(mem, len, &lim, "CMYK JPEG images are not supported");
    free(mem);
}

static void test_decode_round_trips_our_own_output(void **state)
{
    int w = 64, h = 48;
    uint8_t *src = make_picture(w, h, (size_t)w * 3);
    img_limits lim;
    img_limits_default(&lim);
    for (int f = IMG_PNG; f <= IMG_WEBP; f++) {
        img_buf b = encode((img_format)f, src, w, h, (size_t)w * 3, 95, "Steps: 1, x: y, z: w");
        img_rgb im;
        char err[256];
        assert_int_equal(img_decode(b.data, b.len, &lim, &im, err, sizeof err), 0);
        assert_int_equal(im.format, f);
        assert_int_equal(im.orientation, 0);
        double p = psnr(im.rgb, (size_t)w * 3, src, (size_t)w * 3, w, h);
        if (f == IMG_PNG) assert_true(isinf(p));
        else if (p < 30) fail_msg("%s q95 PSNR %.2f", img_format_name((img_format)f), p);
        img_rgb_free(&im);
        img_buf_free(&b);
    }
    free(src);
}

static int setup(void **state)
{
    goldens = tu_read_json("tests/data/image_goldens.json");
    assert_non_null(goldens);
    const cJSON *im = cJSON_GetObjectItem(goldens, "image");
    gold_w = cJSON_GetObjectItem(im, "width")->valueint;
    gold_h = cJSON_GetObjectItem(im, "height")->valueint;
    size_t n;
    gold_rgb = gbytes(im, "rgb_b64", &n);
    assert_int_equal(n, (size_t)gold_w * gold_h * 3);
    return 0;
}

static int teardown(void **state)
{
    cJSON_Delete(goldens);
    free(gold_rgb);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64_rfc4648_vectors),
        cmocka_unit_test(test_base64_round_trips_every_length),
        cmocka_unit_test(test_base64_data_uris),
        cmocka_unit_test(test_base64_rejects_what_it_should),
        cmocka_unit_test(test_exif_block_is_piexif_byte_for_byte),
        cmocka_unit_test(test_png_text_chunk_is_pil_add_text),
        cmocka_unit_test(test_png_is_lossless_for_libpng_with_its_text),
        cmocka_unit_test(test_jpeg_is_pil_plus_piexif_byte_for_byte),
        cmocka_unit_test(test_jpeg_decodes_with_libjpeg),
        cmocka_unit_test(test_jpeg_refuses_text_too_long_for_app1),
        cmocka_unit_test(test_webp_container_is_piexif_insert),
        cmocka_unit_test(test_webp_without_text_is_a_simple_file),
        cmocka_unit_test(test_parameters_read_back_in_every_format),
        cmocka_unit_test(test_encode_rejects_bad_arguments),
        cmocka_unit_test(test_format_names),
        cmocka_unit_test(test_decode_matches_pil),
        cmocka_unit_test(test_decode_refuses_bombs_truncation_and_other_formats),
        cmocka_unit_test(test_decode_refuses_cmyk_jpeg),
        cmocka_unit_test(test_decode_round_trips_our_own_output),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* Inpainting masks and the overlay (see image/mask.h). The blur follows
 * OpenCV 4/5 modules/imgproc/src/smooth.dispatch.cpp (getGaussianKernelBitExact,
 * getGaussianKernelFixedPoint_ED with 8 fraction bits, the ufixedpoint16
 * row and column filters) and the overlay Pillow's Paste.c (paste_mask_L),
 * Convert.c (RGBa -> RGBA) and AlphaComposite.c. */
#include "image/mask.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image/resize.h"

void img_mask_from_rgb(const uint8_t *rgb, int w, int h, uint8_t *mask)
{
    for (size_t i = 0; i < (size_t)w * h; i++, rgb += 3)
        mask[i] = (uint8_t)((rgb[0] * 19595u + rgb[1] * 38470u + rgb[2] * 7471u + 0x8000u) >> 16);
}

/* ---- blur --------------------------------------------------------------------- */

/* The n-tap Gaussian of sigma in 8-bit fixed point: the double kernel
 * normalised to sum 1, then each outer tap rounded (half to even, cvRound)
 * with the error carried to the next, the centre taking what is left of 256. */
static void gaussian_kernel_fixed(int n, double sigma, int *k)
{
    double scale2x = -0.125 / (sigma * sigma), sum = 0.0, values[n / 2 + 1];
    int half = (n - 1) / 2;
    for (int i = 0, x = 1 - n; i < half; i++, x += 2) {
        values[i] = exp((double)(x * x) * scale2x);
        sum += values[i];
    }
    sum = sum * 2 + 1.0;
    double mul = 1.0 / sum, err = 0.0;
    int total = 0;
    for (int i = 0; i < half; i++) {
        double v = values[i] * mul * 256.0 + err;
        int r = (int)nearbyint(v);
        err = v - r;
        k[i] = k[n - 1 - i] = r;
        total += r;
    }
    k[half] = 256 - 2 * total;
}

/* BORDER_REFLECT_101 (cv::borderInterpolate): gfedcb|abcdefgh|gfedcba. */
static int reflect101(int p, int len)
{
    if (len == 1) return 0;
    while (p < 0 || p >= len) p = p < 0 ? -p : 2 * (len - 1) - p;
    return p;
}

/* One 1-D pass over `lines` lines of `len` samples `step` apart (lines
 * `stride` apart): out = (sum k[i] v[x + i - r] + 128) >> 8. */
static int blur_pass(uint8_t *m, int len, int lines, size_t step, size_t stride, const int *k, int n)
{
    uint8_t *line = malloc((size_t)len);
    if (!line) return -1;
    int r = n / 2;
    for (int l = 0; l < lines; l++) {
        uint8_t *p = m + (size_t)l * stride;
        for (int x = 0; x < len; x++) line[x] = p[(size_t)x * step];
        for (int x = 0; x < len; x++) {
            unsigned acc = 0;
            for (int i = 0; i < n; i++) acc += (unsigned)k[i] * line[reflect101(x + i - r, len)];
            p[(size_t)x * step] = (uint8_t)((acc + 128) >> 8);
        }
    }
    free(line);
    return 0;
}

int img_mask_blur(uint8_t *mask, int w, int h, int sigma)
{
    if (sigma <= 0) return 0;
    int n = 2 * (int)(2.5 * sigma + 0.5) + 1;
    int *k = malloc(sizeof(int) * n);
    if (!k) return -1;
    gaussian_kernel_fixed(n, sigma, k);
    int rc = blur_pass(mask, w, h, 1, (size_t)w, k, n) || blur_pass(mask, h, w, (size_t)w, 1, k, n) ? -1 : 0;
    free(k);
    return rc;
}

/* ---- the crop region ---------------------------------------------------------- */

bool img_mask_any(const uint8_t *mask, int w, int h)
{
    for (size_t i = 0; i < (size_t)w * h; i++)
        if (mask[i]) return true;
    return false;
}

static bool column_empty(const uint8_t *m, int w, int h, int x)
{
    for (int y = 0; y < h; y++)
        if (m[(size_t)y * w + x]) return false;
    return true;
}

static bool row_empty(const uint8_t *m, int w, int y)
{
    for (int x = 0; x < w; x++)
        if (m[(size_t)y * w + x]) return false;
    return true;
}

/* Grows [*lo, *hi) by diff split in two, then moves it back inside [0, size). */
static void grow_axis(int *lo, int *hi, int diff, int size)
{
    *lo -= diff / 2;
    *hi += diff - diff / 2;
    if (*hi >= size) {
        int d = *hi - size;
        *hi -= d;
        *lo -= d;
    }
    if (*lo < 0) {
        *hi -= *lo;
        *lo = 0;
    }
    if (*hi >= size) *hi = size;
}

void img_mask_crop_region(const uint8_t *mask, int w, int h, int pad, int proc_w, int proc_h, int box[4])
{
    int left = 0, right = 0, top = 0, bottom = 0;
    while (left < w && column_empty(mask, w, h, left)) left++;
    while (right < w && column_empty(mask, w, h, w - 1 - right)) right++;
    while (top < h && row_empty(mask, w, top)) top++;
    while (bottom < h && row_empty(mask, w, h - 1 - bottom)) bottom++;
    int x1 = left - pad > 0 ? left - pad : 0, y1 = top - pad > 0 ? top - pad : 0;
    int x2 = w - right + pad < w ? w - right + pad : w, y2 = h - bottom + pad < h ? h - bottom + pad : h;
    double ratio_crop = (double)(x2 - x1) / (y2 - y1), ratio_proc = (double)proc_w / proc_h;
    if (ratio_crop > ratio_proc)
        grow_axis(&y1, &y2, (int)((x2 - x1) / ratio_proc - (y2 - y1)), h);
    else
        grow_axis(&x1, &x2, (int)((y2 - y1) * ratio_proc - (x2 - x1)), w);
    box[0] = x1, box[1] = y1, box[2] = x2, box[3] = y2;
}

/* ---- grey images through the RGB resizers ---------------------------------------- */

int img_mask_resize(img_resize_fn fn, const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh)
{
    uint8_t *in = malloc((size_t)sw * sh * 3), *out = malloc((size_t)dw * dh * 3);
    int rc = in && out ? 0 : -1;
    for (size_t i = 0; !rc && i < (size_t)sw * sh; i++) in[3 * i] = in[3 * i + 1] = in[3 * i + 2] = src[i];
    if (!rc) rc = fn(in, sw, sh, out, dw, dh);
    for (size_t i = 0; !rc && i < (size_t)dw * dh; i++) dst[i] = out[3 * i];
    free(in);
    free(out);
    return rc;
}

void img_crop(const uint8_t *src, int sw, int channels, int x, int y, int w, int h, uint8_t *dst)
{
    for (int r = 0; r < h; r++)
        memcpy(dst + (size_t)r * w * channels, src + ((size_t)(y + r) * sw + x) * channels, (size_t)w * channels);
}

/* ---- the overlay -------------------------------------------------------------------- */

static unsigned div255(unsigned a) { return ((a >> 8) + a) >> 8; } /* Pillow's SHIFTFORDIV255 */

/* The original's pixel as A1111's overlay has it after paste (premultiplied
 * under alpha a = 255 - mask) and convert("RGBA") (divided back, truncating). */
static void overlay_pixel(const uint8_t *rgb, unsigned a, unsigned out[3])
{
    for (int c = 0; c < 3; c++) {
        unsigned pm = div255(rgb[c] * a + 128);
        unsigned v = a == 0 || a == 255 ? pm : 255 * pm / a;
        out[c] = v > 255 ? 255 : v;
    }
}

/* AlphaComposite.c: src (alpha sa) over dst (alpha da), 7 bits of precision. */
static void composite(const unsigned src[3], unsigned sa, uint8_t *dst, unsigned da)
{
    if (sa == 0) return;
    unsigned outa255 = sa * 255 + da * (255 - sa);
    unsigned coef1 = sa * 255 * 255 * (1u << 7) / outa255, coef2 = 255 * (1u << 7) - coef1;
    for (int c = 0; c < 3; c++) dst[c] = (uint8_t)(div255(src[c] * coef1 + dst[c] * coef2 + (0x80u << 7)) >> 7);
}

int img_overlay(const uint8_t *generated, int gw, int gh, const uint8_t *original, const uint8_t *mask, int ow,
                int oh, const int *box, uint8_t *out)
{
    uint8_t *alpha = calloc((size_t)ow * oh, 1); /* the generated layer's alpha: 255 where it was put */
    if (!alpha) return -1;
    if (!box) {
        memcpy(out, generated, (size_t)ow * oh * 3);
        memset(alpha, 255, (size_t)ow * oh);
    } else {
        int bw = box[2] - box[0], bh = box[3] - box[1];
        uint8_t *placed = malloc((size_t)bw * bh * 3);
        if (!placed || img_resize_cover(generated, gw, gh, placed, bw, bh)) {
            free(placed);
            free(alpha);
            return -1;
        }
        memset(out, 0, (size_t)ow * oh * 3);
        for (int y = 0; y < bh; y++) {
            memcpy(out + ((size_t)(box[1] + y) * ow + box[0]) * 3, placed + (size_t)y * bw * 3, (size_t)bw * 3);
            memset(alpha + (size_t)(box[1] + y) * ow + box[0], 255, (size_t)bw);
        }
        free(placed);
    }
    for (size_t i = 0; i < (size_t)ow * oh; i++) {
        unsigned a = 255u - mask[i], px[3];
        overlay_pixel(original + 3 * i, a, px);
        composite(px, a, out + 3 * i, alpha[i]);
    }
    free(alpha);
    return 0;
}

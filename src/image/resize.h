/* Resizing img2img init images to the job's size, as diffusers prepares them:
 * VaeImageProcessor.resize(image, height, width, resize_mode="crop")
 * (diffusers image_processor.py _resize_and_crop, the same rule as A1111's
 * "Crop and resize", images.resize_image mode 1): scale the image with PIL's
 * LANCZOS filter so that it covers the target, keeping its aspect ratio, then
 * cut the centre out.
 *
 * The LANCZOS resize reproduces Pillow's Resample.c bit for bit (a = 3
 * windowed sinc, support scaled by the reduction factor, weights normalised
 * per output pixel and rounded to 22-bit fixed point, a horizontal pass into
 * an 8-bit image and then the other pass; an axis that keeps its size is not
 * filtered). The pass order is Pillow 13's: vertical first when the height
 * shrinks by more than twice as many pixels as the width, else horizontal
 * first (older Pillow always went horizontal first; the two orders differ
 * by at most one level in some pixels). Only the pixels of the crop window are computed, so a very
 * wide or tall image costs what the target costs, not what the covering
 * intermediate image would.
 *
 * Images are RGB8, rows packed (width * 3 bytes). Functions return 0, or -1
 * for a size <= 0, a window outside the resized image, or out of memory. */
#ifndef SDXL_IMAGE_RESIZE_H
#define SDXL_IMAGE_RESIZE_H

#include <stdint.h>

/* PIL Image.resize((out_w, out_h), Resampling.LANCZOS) of src (sw x sh),
 * restricted to the window [x0, x0 + dw) x [y0, y0 + dh) of the result,
 * written to dst (dw x dh). */
int img_resize_lanczos_window(const uint8_t *src, int sw, int sh, int64_t out_w, int64_t out_h, int64_t x0,
                              int64_t y0, int dw, int dh, uint8_t *dst);

/* The whole resize: dst is dw x dh. */
int img_resize_lanczos(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh);

/* diffusers' _resize_and_crop to w x h: the covering size is
 * (w, sh*w/sw rounded down) when w/h > sw/sh (compared as doubles), else
 * (sw*h/sh rounded down, h);
 * the crop starts at (covering/2 - target/2) on each axis (integer halves). */
void img_cover_size(int sw, int sh, int w, int h, int64_t *cover_w, int64_t *cover_h);
int img_resize_cover(const uint8_t *src, int sw, int sh, uint8_t *dst, int w, int h);

/* diffusers' _resize_and_fill (A1111's "Resize and fill", images.py
 * resize_image mode 2) to w x h: the image scaled to fit inside, keeping
 * its aspect ratio (the fitting side exact, the other floor(side * ratio)),
 * centred on black, then the bands on either side filled with its edge
 * pixels stretched (a resize with Pillow's default BICUBIC filter and a
 * zero-size box at that edge: the taps centred on the edge). */
int img_resize_fill(const uint8_t *src, int sw, int sh, uint8_t *dst, int w, int h);

#endif

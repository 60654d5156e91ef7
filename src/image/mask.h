/* Inpainting masks and the paste-back of the original, as AUTOMATIC1111
 * 1.10 prepares and finishes an inpainting job (modules/processing.py
 * StableDiffusionProcessingImg2Img.init and apply_overlay, masking.py), with
 * the crop region of diffusers' VaeImageProcessor.get_crop_region (A1111's
 * get_crop_region + expand_crop_region). Owner: sd/inpaint.c. Masks are 8-bit
 * grey images (w x h bytes); white marks what is repainted. Results are
 * byte-identical to A1111's OpenCV and PIL calls (tests/test_inpaint.c). */
#ifndef SDXL_IMAGE_MASK_H
#define SDXL_IMAGE_MASK_H

#include <stdbool.h>
#include <stdint.h>

/* PIL's convert("L") of an RGB8 image: (19595 R + 38470 G + 7471 B +
 * 0x8000) >> 16 (ITU-R 601-2 luma, Pillow's fixed point). */
void img_mask_from_rgb(const uint8_t *rgb, int w, int h, uint8_t *mask);

/* A1111's mask blur: cv2.GaussianBlur(mask, (k, 1), sigma), then (1, k),
 * k = 2 * int(2.5 * sigma + 0.5) + 1, each pass OpenCV's bit-exact 8-bit
 * path (the kernel in 8-bit fixed point by error diffusion, the sum rounded
 * half up) with BORDER_REFLECT_101. sigma <= 0 leaves the mask as it is.
 * In place; 0, or -1 when out of memory. */
int img_mask_blur(uint8_t *mask, int w, int h, int sigma);

/* Whether any byte is nonzero. */
bool img_mask_any(const uint8_t *mask, int w, int h);

/* The crop region of "only masked" inpainting, box = {x1, y1, x2, y2}: the
 * bounding box of the nonzero pixels, grown by pad on each side (within the
 * image), then grown to the aspect ratio of proc_w x proc_h and shifted
 * back inside the image (diffusers' get_crop_region, the same arithmetic as
 * A1111's). The mask must have a nonzero pixel. */
void img_mask_crop_region(const uint8_t *mask, int w, int h, int pad, int proc_w, int proc_h, int box[4]);

/* A grey image through an RGB8 resize (image/resize.h), channel by channel
 * as PIL resizes "L" images: fn is img_resize_lanczos or img_resize_fill. */
typedef int (*img_resize_fn)(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh);
int img_mask_resize(img_resize_fn fn, const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh);

/* The w x h window at (x, y) of an image with `channels` bytes per pixel. */
void img_crop(const uint8_t *src, int sw, int channels, int x, int y, int w, int h, uint8_t *dst);

/* A1111's apply_overlay: the original (ow x oh) pasted back over the
 * generated image under the inverted mask (ow x oh), in PIL's integer
 * arithmetic (paste into RGBa, convert to RGBA, alpha_composite). With
 * box NULL the generated image is ow x oh; with box {x1, y1, x2, y2}
 * ("only masked") it is gw x gh and is first resized to the box with
 * diffusers' cover-and-crop (A1111's resize mode 1) and put there, the rest
 * of the picture coming from the original. out is ow x oh RGB8. 0, or -1
 * when out of memory. */
int img_overlay(const uint8_t *generated, int gw, int gh, const uint8_t *original, const uint8_t *mask, int ow,
                int oh, const int *box, uint8_t *out);

#endif

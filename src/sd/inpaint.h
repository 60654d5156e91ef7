/* Inpainting with any SDXL checkpoint: the denoising of diffusers'
 * StableDiffusionXLInpaintPipeline (pipeline_stable_diffusion_xl_inpaint.py,
 * diffusers 0.42) inside A1111's preparation and paste-back
 * (AUTOMATIC1111 1.10 StableDiffusionProcessingImg2Img). Owner: the
 * worker's inpainting jobs. docs/inpainting.md has the whole recipe and
 * where A1111 and diffusers differ.
 *
 * Per job:
 *   1. the mask (grey, the init image's size, white repaints) is blurred as
 *      A1111 does (image/mask.h);
 *   2. "whole picture": image and mask are resized to width x height (PIL
 *      LANCZOS, diffusers' resize_mode "default", A1111's "Just resize");
 *      "only masked": the crop region around the mask (plus padding, grown
 *      to the job's aspect ratio) is cut from both and resized to
 *      width x height with "resize and fill";
 *   3. diffusers' mask: binarised at 0.5, nearest-sampled to the latents;
 *   4. the generators draw, in the pipeline's order: the VAE sample of the
 *      image (skipped for an inpainting UNet at strength 1), the noise, the
 *      VAE sample of the masked image (for a base UNet too: the pipeline
 *      encodes it either way); strength 1 starts from noise times
 *      init_noise_sigma, else from the image latents noised at the first
 *      timestep run (img2img's strength rule);
 *   5. a base UNet (4 channels): after every scheduler step the latents
 *      outside the mask are replaced by the image latents noised to the next
 *      timestep (clean after the last); an inpainting UNet (9 channels, read
 *      from conv_in) gets the mask and the masked image's latents as extra
 *      input channels instead;
 *   6. the decoded image gets A1111's overlay: the original pasted back
 *      outside the blurred mask (doubled for the whole picture); "only
 *      masked" puts the result into the crop region of the original, so the
 *      output has the init image's size.
 * Per-image seeds (A1111's) give image i what a single run with seed + i
 * gives; one generator for the batch draws as the pipeline does. */
#ifndef SDXL_SD_INPAINT_H
#define SDXL_SD_INPAINT_H

#include <stdbool.h>
#include <stdint.h>

#include "sd/engine.h"

typedef enum { SD_INPAINT_WHOLE = 0, SD_INPAINT_MASKED } sd_inpaint_area;

#define SD_INPAINT_BLUR_DEFAULT 4     /* A1111's mask blur */
#define SD_INPAINT_BLUR_MAX 64        /* A1111's slider */
#define SD_INPAINT_PADDING_DEFAULT 32 /* A1111's "Only masked padding, pixels" */
#define SD_INPAINT_PADDING_MAX 256    /* A1111's slider */

typedef struct {
    /* gen: the job (width x height is the size the model works at); the
     * init image, strength as img2img */
    sd_img2img_params i2i;
    const uint8_t *mask;   /* grey, init_width x init_height bytes; white repaints */
    int mask_blur;         /* 0..SD_INPAINT_BLUR_MAX */
    sd_inpaint_area area;
    int padding;           /* "only masked": 0..SD_INPAINT_PADDING_MAX pixels */
    bool no_overlay;       /* whole picture without the paste-back (diffusers' output) */
} sd_inpaint_params;

/* txt2img's and img2img's defaults, strength 0.75 (A1111's), blur 4, the
 * whole picture, padding 32, the paste-back on. */
void sd_inpaint_params_default(sd_inpaint_params *p);

#define SD_INPAINT_STRENGTH_DEFAULT 0.75

/* Runs one inpainting job; outputs and statuses as sd_img2img (out->width x
 * out->height is width x height, or the init image's size for "only
 * masked"). SD_EINVALID also for a missing mask, an all-black mask, a blur
 * or padding out of range. */
sd_status sd_inpaint(sd_engine *e, const sd_inpaint_params *p, sd_image_out *out, char *err, size_t errlen);

#endif

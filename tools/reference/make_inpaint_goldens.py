"""Inpainting goldens on the small model and on its 9-channel variant,
written to tests/data/small/goldens_inpaint.{safetensors,json} for
tests/test_inpaint.c, plus the mask itself, tests/data/small/inpaint_mask.png
(synthetic, 100 x 75 like img2img_init.png, committed).

The 9-channel variant is the small checkpoint with its UNet's conv_in
(input_blocks.0.0.weight, [12, 4, 3, 3]) replaced by a [12, 9, 3, 3] kernel:
in_channels 9 as diffusers' SDXL inpainting UNets have (latents, mask,
masked-image latents). Its weights are make_small_model.random_weight of the
name "inpaint9.input_blocks.0.0.weight" (fp16 values), stored here as the
tensor "unet9.conv_in.weight"; the C test writes the variant checkpoint from
the small one and that tensor. Every other weight is the small model's.

Parts (A1111 = AUTOMATIC1111 1.10 modules/processing.py, masking.py,
images.py; diffusers = 0.42 StableDiffusionXLInpaintPipeline):
  blur.<sigma>     A1111's mask blur of the mask: cv2.GaussianBlur with a
                   (2*int(2.5*sigma+0.5)+1, 1) kernel, then the (1, k) one
  fill.<W>x<H>     diffusers' VaeImageProcessor._resize_and_fill (A1111's
                   resize mode 2) of the init image, with fill bands
  overlay.*        A1111's apply_overlay (PIL: the original pasted in RGBa
                   under the inverted mask, then alpha_composite onto the
                   generated image), "whole" (the mask doubled and clipped)
                   and "masked" (uncropped into the crop region first)
  pipeline cases   the pipeline, fp32, CPU, one thread, no watermark, from
                   from_pipe on the small txt2img pipeline (its UNet swapped
                   for the 9-channel one for those cases):
                       pipe(PROMPT, negative_prompt=NEGATIVE, image=init,
                            mask_image=<mask>, width, height, strength,
                            num_inference_steps, guidance_scale=6, generator,
                            padding_mask_crop=<pad for "masked">)
                   "diffusers" cases give the mask as it is and take the
                   pipeline's image; "a1111" cases give A1111's blurred mask
                   and, for the whole picture, apply A1111's overlay to the
                   pipeline's image (for "masked" the pipeline's own
                   apply_overlay is A1111's uncrop-and-overlay).
Batches: "one" is one generator for the batch; "per-image" images are
separate runs seeded SEED + i (A1111's seeds; diffusers' inpainting
pipeline would draw every image's VAE samples from the first generator).

Run: tools/reference/.venv/bin/python tools/reference/make_inpaint_goldens.py
"""
import json
import os
import time

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps
from safetensors.numpy import save_file

import diffusers
from diffusers.image_processor import VaeImageProcessor

import harness
from make_img2img_goldens import DEFAULT_SCHEDULE, INIT_PNG
from make_pipeline_goldens import NEGATIVE, PROMPT, Store
from make_sampler_goldens import make_scheduler
from make_small_model import random_weight

OUT_ST = os.path.join(harness.SMALL_DIR, "goldens_inpaint.safetensors")
OUT_JSON = os.path.join(harness.SMALL_DIR, "goldens_inpaint.json")
MASK_PNG = os.path.join(harness.SMALL_DIR, "inpaint_mask.png")

CFG = 6.0
SEED = 91
BLUR_SIGMAS = [1, 2, 4, 7, 16, 64]
FILL_SIZES = [(64, 64), (40, 64), (64, 24), (100, 75)]
CONV_IN_NAME = "inpaint9.input_blocks.0.0.weight"


def make_mask():
    """100 x 75, white = repaint: an ellipse, a rectangle touching the right
    edge, and a few grey pixels (A1111's L conversion keeps them)."""
    h, w = 75, 100
    y, x = np.mgrid[0:h, 0:w]
    m = np.zeros((h, w), np.uint8)
    m[((x - 38) / 17.0) ** 2 + ((y - 40) / 12.0) ** 2 <= 1.0] = 255
    m[8:20, 80:100] = 255
    m[60:63, 10:13] = 140
    return Image.fromarray(m, "L")


# ---- A1111's mask handling, as modules/processing.py does it --------------------

def a1111_blur(mask, sigma):
    if sigma <= 0:
        return mask
    k = 2 * int(2.5 * sigma + 0.5) + 1
    m = cv2.GaussianBlur(np.array(mask), (k, 1), sigma)
    m = cv2.GaussianBlur(m, (1, k), sigma)
    return Image.fromarray(m)


def a1111_overlay(generated, original, mask_for_overlay, paste_loc=None):
    """apply_overlay with the overlay image StableDiffusionProcessingImg2Img
    builds: the original in RGBa under the inverted mask."""
    masked = Image.new("RGBa", original.size)
    masked.paste(original.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask_for_overlay.convert("L")))
    overlay = masked.convert("RGBA")
    image = generated
    if paste_loc is not None:
        x, y, w, h = paste_loc
        base = Image.new("RGBA", overlay.size)
        base.paste(VaeImageProcessor().resize(image, height=h, width=w, resize_mode="crop"), (x, y))
        image = base
    image = image.convert("RGBA")
    image.alpha_composite(overlay)
    return image.convert("RGB")


def whole_overlay_mask(blurred, width, height):
    """mask_for_overlay of the whole picture: resized as the image, doubled."""
    m = np.array(blurred.resize((width, height), Image.Resampling.LANCZOS)).astype(np.float32)
    return Image.fromarray(np.clip(m * 2, 0, 255).astype(np.uint8))


# ---- models --------------------------------------------------------------------

def unet9(unet4):
    cfg = dict(unet4.config)
    cfg["in_channels"] = 9
    unet = diffusers.UNet2DConditionModel.from_config(cfg)
    state = unet4.state_dict()
    w = random_weight(CONV_IN_NAME, (cfg["block_out_channels"][0], 9, 3, 3))
    state["conv_in.weight"] = w.float()
    unet.load_state_dict(state)
    return unet.eval(), w.numpy()


# ---- cases ---------------------------------------------------------------------

def pipeline_cases():
    """(unet, area, style, sampler, (W, H), steps, strength, batch, seeding, pad)"""
    out = []
    for sampler in ("Euler", "DPM++ 2M"):
        for strength in (0.6, 1.0):
            out.append((4, "whole", "diffusers", sampler, (64, 64), 8, strength, 1, "one", 0))
    for sampler in DEFAULT_SCHEDULE:
        if sampler not in ("Euler", "DPM++ 2M"):
            out.append((4, "whole", "diffusers", sampler, (64, 64), 8, 0.6, 1, "one", 0))
    out += [
        (4, "whole", "diffusers", "Euler a", (64, 64), 8, 0.75, 2, "one", 0),
        (4, "whole", "diffusers", "Euler a", (64, 64), 8, 0.75, 2, "per-image", 0),
        (4, "whole", "a1111", "DPM++ 2M", (64, 48), 8, 0.75, 1, "one", 0),
        (4, "masked", "diffusers", "Euler", (64, 64), 8, 0.75, 1, "one", 6),
        (4, "masked", "a1111", "DPM++ 2M", (64, 48), 8, 0.75, 1, "one", 4),
        (9, "whole", "diffusers", "Euler", (64, 64), 8, 0.6, 1, "one", 0),
        (9, "whole", "diffusers", "Euler", (64, 64), 8, 1.0, 1, "one", 0),
        (9, "whole", "diffusers", "DPM++ 2M", (64, 48), 8, 0.75, 1, "one", 0),
        (9, "whole", "diffusers", "Euler a", (64, 64), 8, 0.75, 2, "one", 0),
        (9, "whole", "a1111", "Euler a", (64, 64), 8, 0.75, 2, "per-image", 0),
        (9, "masked", "a1111", "Euler", (64, 64), 8, 1.0, 1, "one", 8),
    ]
    return out


def run_once(pipe, init, mask, sampler, size, steps, strength, batch, generator, pad):
    pipe.scheduler = make_scheduler(sampler, DEFAULT_SCHEDULE[sampler])
    out = pipe(prompt=PROMPT, negative_prompt=NEGATIVE, image=init, mask_image=mask, width=size[0],
               height=size[1], strength=strength, num_inference_steps=steps, guidance_scale=CFG,
               num_images_per_prompt=batch, generator=generator, padding_mask_crop=pad or None,
               output_type="pil")
    return out.images


def generate(pipe, init, mask, blur, case):
    unet, area, style, sampler, size, steps, strength, batch, seeding, pad = case
    given = a1111_blur(mask, blur) if style == "a1111" else mask
    if seeding == "per-image":
        images = []
        for i in range(batch):
            images += run_once(pipe, init, given, sampler, size, steps, strength, 1,
                               torch.Generator().manual_seed(SEED + i), pad)
    else:
        images = run_once(pipe, init, given, sampler, size, steps, strength, batch,
                          torch.Generator().manual_seed(SEED), pad)
    if style == "a1111" and area == "whole":
        resized = init.resize(size, Image.Resampling.LANCZOS)
        overlay_mask = whole_overlay_mask(given, *size)
        images = [a1111_overlay(im, resized, overlay_mask) for im in images]
    return [np.ascontiguousarray(np.asarray(im, dtype=np.uint8)) for im in images]


def image_cases(init, mask):
    tensors, blur_cases, fill_cases = {}, [], []
    for sigma in BLUR_SIGMAS:
        tensors[f"blur.{sigma}"] = np.asarray(a1111_blur(mask, sigma), dtype=np.uint8).copy()
        blur_cases.append({"sigma": sigma, "image": f"blur.{sigma}"})
    processor = VaeImageProcessor()
    crop = init.crop((30, 10, 60, 70))  # 30 x 60: every target ratio differs from the crop's
    tensors["src.crop"] = np.asarray(crop, dtype=np.uint8).copy()
    for w, h in FILL_SIZES:
        tensors[f"fill.{w}x{h}"] = np.asarray(processor.resize(crop, height=h, width=w, resize_mode="fill"),
                                              dtype=np.uint8).copy()
        fill_cases.append({"width": w, "height": h, "image": f"fill.{w}x{h}"})
    # overlays on a synthetic "generated" image
    rng = np.random.default_rng(5)
    generated = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), "RGB")
    tensors["overlay.generated"] = np.asarray(generated).copy()
    blurred = a1111_blur(mask, 4)
    resized = init.resize((64, 48), Image.Resampling.LANCZOS)
    tensors["overlay.whole"] = np.asarray(a1111_overlay(generated, resized, whole_overlay_mask(blurred, 64, 48)))
    x1, y1, x2, y2 = processor.get_crop_region(blurred, 64, 48, pad=4)
    tensors["overlay.masked"] = np.asarray(a1111_overlay(generated, init, blurred, (x1, y1, x2 - x1, y2 - y1)))
    overlay = {"generated": "overlay.generated", "whole": "overlay.whole", "masked": "overlay.masked",
               "blur": 4, "width": 64, "height": 48, "padding": 4, "crop": [x1, y1, x2, y2]}
    crops = []
    for blur, pad, (w, h) in ((0, 0, (64, 64)), (4, 4, (64, 48)), (4, 32, (48, 64)), (16, 0, (64, 64))):
        box = processor.get_crop_region(a1111_blur(mask, blur), w, h, pad=pad)
        crops.append({"blur": blur, "padding": pad, "width": w, "height": h, "crop": list(box)})
    return tensors, blur_cases, fill_cases, overlay, crops


def main():
    torch.set_num_threads(1)
    mask = make_mask()
    mask.save(MASK_PNG, optimize=True)
    mask = Image.open(MASK_PNG).convert("L")
    init = Image.open(INIT_PNG).convert("RGB")
    txt2img = harness.load_small_pipeline()
    pipe = diffusers.StableDiffusionXLInpaintPipeline.from_pipe(txt2img)
    pipe.set_progress_bar_config(disable=True)
    pipe.watermark = None
    assert not pipe.config.requires_aesthetics_score
    unet4 = pipe.unet
    unet9_model, conv_in = unet9(unet4)

    tensors, blur_cases, fill_cases, overlay, crops = image_cases(init, mask)
    tensors["unet9.conv_in.weight"] = conv_in
    store, cases = Store(), []
    start = time.time()
    for case in pipeline_cases():
        unet, area, style, sampler, size, steps, strength, batch, seeding, pad = case
        pipe.unet = unet9_model if unet == 9 else unet4
        blur = 4 if style == "a1111" else 0
        images = generate(pipe, init, mask, blur, case)
        cases.append({"id": len(cases), "unet": unet, "area": area, "style": style, "sampler": sampler,
                      "schedule": DEFAULT_SCHEDULE[sampler], "width": size[0], "height": size[1],
                      "steps": steps, "strength": strength, "batch": batch, "seeding": seeding,
                      "mask_blur": blur, "padding": pad, "overlay": style == "a1111" or area == "masked",
                      "images": [store.add(im) for im in images]})
    elapsed = time.time() - start
    tensors.update(store.tensors)
    save_file(tensors, OUT_ST)
    with open(OUT_JSON, "w") as f:
        json.dump({"generator": "tools/reference/make_inpaint_goldens.py",
                   "torch": torch.__version__, "diffusers": diffusers.__version__, "opencv": cv2.__version__,
                   "init_image": harness.rel(INIT_PNG), "mask": harness.rel(MASK_PNG),
                   "prompt": PROMPT, "negative_prompt": NEGATIVE, "cfg": CFG, "seed": str(SEED), "rng": "cpu",
                   "blur": blur_cases, "fill": fill_cases, "overlay": overlay, "crops": crops,
                   "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"{len(cases)} inpainting cases in {elapsed:.1f} s -> {harness.rel(OUT_ST)} "
          f"({os.path.getsize(OUT_ST)} bytes), {harness.rel(MASK_PNG)} ({os.path.getsize(MASK_PNG)} bytes)")


if __name__ == "__main__":
    main()

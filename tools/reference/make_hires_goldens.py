"""Hires fix goldens on the small model, written to
tests/data/small/goldens_hires.{safetensors,json} for tests/test_hires.c.

A1111's "Hires. fix" (modules/processing.py StableDiffusionProcessingTxt2Img
.sample / sample_hr_pass, AUTOMATIC1111 1.10) composed from diffusers 0.42
pipelines (fp32, CPU, one thread, no watermark; img2img built with from_pipe
on the small txt2img pipeline):
  1. txt2img at W x H:
         pipe(PROMPT, negative_prompt=NEGATIVE, width=W, height=H,
              num_inference_steps=steps, guidance_scale=6,
              generator=torch.Generator().manual_seed(seed), output_type=...)
  2. the upscale to W2 x H2 = int(W * scale), int(H * scale):
       "Latent"            F.interpolate(latents, (H2 // 8, W2 // 8),
                           mode="bilinear", antialias=False) (A1111's
                           shared.latent_upscale_modes)
       "Latent (nearest)"  mode="nearest"
       "Lanczos"           the decoded image (output_type "pil") resized
                           with PIL LANCZOS (A1111's UpscalerLanczos)
  3. img2img at W2 x H2 from the latents (no VAE encode: the pipeline takes
     4-channel input as latents) or from the resized image (encoded, the
     posterior sampled with the generator):
         img2img(PROMPT, negative_prompt=NEGATIVE, image=...,
                 strength=denoising_strength, num_inference_steps=hr_steps
                 or steps, guidance_scale=6,
                 generator=torch.Generator().manual_seed(seed))
     a fresh generator with the same seed: A1111 makes a new ImageRNG from
     the same seeds for the second pass.
Batches: "one" is one generator for the batch in each pass; "per-image"
images are separate runs seeded SEED + i (A1111's seeds).

Run: tools/reference/.venv/bin/python tools/reference/make_hires_goldens.py
"""
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.numpy import save_file

import diffusers

import harness
from make_img2img_goldens import DEFAULT_SCHEDULE
from make_pipeline_goldens import NEGATIVE, PROMPT, Store
from make_sampler_goldens import make_scheduler

OUT_ST = os.path.join(harness.SMALL_DIR, "goldens_hires.safetensors")
OUT_JSON = os.path.join(harness.SMALL_DIR, "goldens_hires.json")

CFG = 6.0
SEED = 123
MODES = {"Latent": "bilinear", "Latent (nearest)": "nearest"}


def cases():
    """(upscaler, sampler, (W, H), scale, steps, hr_steps, strength, batch, seeding)"""
    out = []
    for upscaler in ("Latent", "Latent (nearest)", "Lanczos"):
        out.append((upscaler, "Euler", (64, 64), 1.5, 6, 0, 0.7, 1, "one"))
        out.append((upscaler, "DPM++ 2M", (64, 48), 2.0, 6, 4, 0.55, 1, "one"))
    out += [
        ("Latent", "Euler", (64, 64), 1.25, 6, 0, 0.7, 1, "one"),
        ("Latent", "Euler a", (64, 64), 1.5, 5, 0, 0.7, 2, "one"),
        ("Lanczos", "Euler a", (64, 64), 1.5, 5, 0, 0.7, 2, "one"),
        ("Latent (nearest)", "Euler a", (64, 64), 1.5, 5, 3, 0.8, 2, "per-image"),
    ]
    return out


def hires(txt2img, img2img, upscaler, sampler, size, scale, steps, hr_steps, strength, batch, seed):
    w2, h2 = int(size[0] * scale), int(size[1] * scale)
    txt2img.scheduler = make_scheduler(sampler, DEFAULT_SCHEDULE[sampler])
    img2img.scheduler = make_scheduler(sampler, DEFAULT_SCHEDULE[sampler])
    latent = upscaler in MODES
    first = txt2img(prompt=PROMPT, negative_prompt=NEGATIVE, width=size[0], height=size[1],
                    num_inference_steps=steps, guidance_scale=CFG, num_images_per_prompt=batch,
                    generator=torch.Generator().manual_seed(seed), output_type="latent" if latent else "pil")
    if latent:
        image = F.interpolate(first.images, size=(h2 // 8, w2 // 8), mode=MODES[upscaler], antialias=False)
    else:
        image = [im.resize((w2, h2), Image.Resampling.LANCZOS) for im in first.images]
    out = img2img(prompt=[PROMPT] * batch, negative_prompt=[NEGATIVE] * batch, image=image, strength=strength,
                  num_inference_steps=hr_steps or steps, guidance_scale=CFG, num_images_per_prompt=1,
                  generator=torch.Generator().manual_seed(seed), output_type="np")
    return [np.ascontiguousarray((im * 255).round().astype(np.uint8)) for im in out.images], (w2, h2)


def main():
    torch.set_num_threads(1)
    txt2img = harness.load_small_pipeline()
    txt2img.watermark = None
    img2img = diffusers.StableDiffusionXLImg2ImgPipeline.from_pipe(txt2img)
    img2img.set_progress_bar_config(disable=True)
    img2img.watermark = None
    assert not img2img.config.requires_aesthetics_score
    store, out = Store(), []
    start = time.time()
    for upscaler, sampler, size, scale, steps, hr_steps, strength, batch, seeding in cases():
        if seeding == "per-image":
            images = []
            for i in range(batch):
                ims, hr_size = hires(txt2img, img2img, upscaler, sampler, size, scale, steps, hr_steps,
                                     strength, 1, SEED + i)
                images += ims
        else:
            images, hr_size = hires(txt2img, img2img, upscaler, sampler, size, scale, steps, hr_steps,
                                    strength, batch, SEED)
        assert all(im.shape == (hr_size[1], hr_size[0], 3) for im in images)
        out.append({"id": len(out), "upscaler": upscaler, "sampler": sampler,
                    "schedule": DEFAULT_SCHEDULE[sampler], "width": size[0], "height": size[1],
                    "hr_scale": scale, "hr_width": hr_size[0], "hr_height": hr_size[1], "steps": steps,
                    "hr_steps": hr_steps, "denoising_strength": strength, "batch": batch, "seeding": seeding,
                    "images": [store.add(im) for im in images]})
    elapsed = time.time() - start
    save_file(store.tensors, OUT_ST)
    with open(OUT_JSON, "w") as f:
        json.dump({"generator": "tools/reference/make_hires_goldens.py",
                   "torch": torch.__version__, "diffusers": diffusers.__version__,
                   "prompt": PROMPT, "negative_prompt": NEGATIVE, "cfg": CFG, "seed": str(SEED), "rng": "cpu",
                   "cases": out}, f, indent=1)
        f.write("\n")
    print(f"{len(out)} hires cases in {elapsed:.1f} s -> {harness.rel(OUT_ST)} ({os.path.getsize(OUT_ST)} bytes)")


if __name__ == "__main__":
    main()

"""img2img goldens on the small model, written to
tests/data/small/goldens_img2img.{safetensors,json} for tests/test_img2img.c,
plus the init image itself, tests/data/small/img2img_init.png (synthetic,
100 x 75, committed).

Resize cases (PIL 13, which diffusers' VaeImageProcessor calls):
    cover.<W>x<H>.<src>  VaeImageProcessor.resize(image, H, W, resize_mode="crop")
                         (= _resize_and_crop: LANCZOS to the covering size,
                         then the centre) of the init image ("init") or of a
                         tall 37 x 120 image ("tall", stored as src.tall)
    lanczos.<W>x<H>.init  init.resize((W, H), Resampling.LANCZOS)
Pillow 13 runs the vertical pass first when the height shrinks by more than
twice as many pixels as the width (cover.24x96.tall, lanczos.90x20.init).

Pipeline cases: diffusers' StableDiffusionXLImg2ImgPipeline (fp32, CPU, one
thread, no watermark, built with from_pipe on the txt2img pipeline of
make_pipeline_goldens.py) called as
    pipe(PROMPT, negative_prompt=NEGATIVE, image=<the init image resized to
         W x H by the cover rule above>, strength, num_inference_steps,
         guidance_scale=6, generator, output_type="np")
with the scheduler of make_sampler_goldens.py's mapping. Inside: the image is
VAE-encoded, the latent sampled from the posterior with the generator
(retrieve_latents, sample_mode "sample": the generator's first draw),
multiplied by the scaling factor, noised by scheduler.add_noise at the first
timestep that get_timesteps keeps (the second draw), then denoised from
there (step noise of stochastic samplers: later draws).
    - Euler and DPM++ 2M Karras at strengths 0.3, 0.6 and 1.0, at 64x64 and
      128x96, 8 steps;
    - every other sampler with its A1111 default schedule at strength 0.6
      (64x64, 8 steps), DPM++ 3M SDE at 16 steps and strength 0.5 (where
      lower_order_final depends on the whole schedule's length), and Euler
      at 10 steps and strength 0.7 (int(10 * 0.7) = 7 in doubles);
    - batches of 2: a list of generators seeded SEED, SEED+1 (A1111's
      per-image seeds: each image samples its own latent and noise) with
      Euler a, and one generator for the batch (one latent sample shared by
      the images, then one noise draw for both) with Euler.
Images are stored as (np_image * 255).round().astype(uint8), HWC.

Run: tools/reference/.venv/bin/python tools/reference/make_img2img_goldens.py
"""
import json
import os
import time

import numpy as np
import torch
from PIL import Image
from safetensors.numpy import save_file

import diffusers

import harness
from make_pipeline_goldens import NEGATIVE, PROMPT, Store
from make_sampler_goldens import make_scheduler

OUT_ST = os.path.join(harness.SMALL_DIR, "goldens_img2img.safetensors")
OUT_JSON = os.path.join(harness.SMALL_DIR, "goldens_img2img.json")
INIT_PNG = os.path.join(harness.SMALL_DIR, "img2img_init.png")

CFG = 6.0
SEED = 77
# (W, H) targets of the resize cases: down and up, wider and taller than the source
COVER_SIZES = [(48, 48), (64, 40), (40, 64), (24, 96), (96, 24), (160, 120), (100, 75)]
LANCZOS_SIZES = [(64, 48), (37, 29), (90, 20), (150, 75), (100, 150), (13, 7), (100, 75)]
# A1111 sampler label -> its Automatic schedule (docs/samplers.md)
DEFAULT_SCHEDULE = {"Euler": "Normal", "Euler a": "Normal", "Heun": "Normal", "DPM2": "Karras",
                    "DPM2 a": "Karras", "DPM++ 2M": "Karras", "DPM++ 2M SDE": "Exponential",
                    "DPM++ 3M SDE": "Exponential", "LMS": "Normal", "DDIM": "Normal",
                    "UniPC": "Normal", "LCM": "Normal"}


def init_image():
    """100 x 75: gradients, a disc, stripes and a hashed texture, so that
    resizing and encoding see edges, smooth areas and noise."""
    h, w = 75, 100
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / (w - 1)
    g = 255 * y / (h - 1)
    b = 128 + 100 * np.sin(x / 5.0) * np.cos(y / 7.0)
    disc = (x - 62) ** 2 + (y - 30) ** 2 < 18 ** 2
    r[disc], g[disc], b[disc] = 240, 40, 30
    stripes = ((x + y) // 6) % 2 == 0
    b[stripes & ~disc] *= 0.4
    texture = (np.arange(h * w).reshape(h, w) * 2654435761 % 4093) % 41 - 20
    rgb = np.stack([r + texture, g - texture, b + texture // 2], axis=-1)
    return Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")


def tall_image(init):
    """37 x 120, taller than any target: a rotated, squeezed copy."""
    return init.transpose(Image.Transpose.ROTATE_90).resize((37, 120), Image.Resampling.BILINEAR)


def cover(processor, image, width, height):
    return processor.resize(image, height=height, width=width, resize_mode="crop")


def resize_cases(processor, sources):
    tensors, cases = {}, []
    for src_name, image in sources.items():
        for w, h in COVER_SIZES:
            name = f"cover.{w}x{h}.{src_name}"
            tensors[name] = np.asarray(cover(processor, image, w, h), dtype=np.uint8).copy()
            cases.append({"kind": "cover", "source": src_name, "width": w, "height": h, "image": name})
        for w, h in LANCZOS_SIZES if src_name == "init" else []:
            name = f"lanczos.{w}x{h}.{src_name}"
            tensors[name] = np.asarray(image.resize((w, h), Image.Resampling.LANCZOS), dtype=np.uint8).copy()
            cases.append({"kind": "lanczos", "source": src_name, "width": w, "height": h, "image": name})
    return tensors, cases


def pipeline_cases():
    """(sampler, schedule, (W, H), steps, strength, batch, seeding)"""
    out = []
    for sampler, schedule in (("Euler", "Normal"), ("DPM++ 2M", "Karras")):
        for size in ((64, 64), (128, 96)):
            for strength in (0.3, 0.6, 1.0):
                out.append((sampler, schedule, size, 8, strength, 1, "one"))
    for sampler, schedule in DEFAULT_SCHEDULE.items():
        if sampler not in ("Euler", "DPM++ 2M"):
            out.append((sampler, schedule, (64, 64), 8, 0.6, 1, "one"))
    out += [
        ("DPM++ 3M SDE", "Exponential", (64, 64), 16, 0.5, 1, "one"),
        ("Euler", "Normal", (64, 64), 10, 0.7, 1, "one"),
        ("Euler a", "Normal", (64, 64), 8, 0.6, 2, "per-image"),
        ("Euler", "Normal", (64, 64), 8, 0.6, 2, "one"),
    ]
    return out


def generate(pipe, init, sampler, schedule, size, steps, strength, batch, seeding):
    pipe.scheduler = make_scheduler(sampler, schedule)
    if seeding == "per-image":
        generator = [torch.Generator().manual_seed(SEED + i) for i in range(batch)]
    else:
        generator = torch.Generator().manual_seed(SEED)
    out = pipe(prompt=PROMPT, negative_prompt=NEGATIVE, image=cover(pipe.image_processor, init, *size),
               strength=strength, num_inference_steps=steps, guidance_scale=CFG,
               num_images_per_prompt=batch, generator=generator, output_type="np")
    return [np.ascontiguousarray((image * 255).round().astype(np.uint8)) for image in out.images]


def main():
    torch.set_num_threads(1)
    init = init_image()
    init.save(INIT_PNG, optimize=True)
    init = Image.open(INIT_PNG).convert("RGB")  # what the C test decodes
    txt2img = harness.load_small_pipeline()
    pipe = diffusers.StableDiffusionXLImg2ImgPipeline.from_pipe(txt2img)
    pipe.set_progress_bar_config(disable=True)
    pipe.watermark = None
    assert not pipe.config.requires_aesthetics_score  # time ids as txt2img's

    tall = tall_image(init)
    tensors, resizes = resize_cases(pipe.image_processor, {"init": init, "tall": tall})
    tensors["src.tall"] = np.asarray(tall, dtype=np.uint8).copy()

    store, cases = Store(), []
    start = time.time()
    for sampler, schedule, size, steps, strength, batch, seeding in pipeline_cases():
        images = generate(pipe, init, sampler, schedule, size, steps, strength, batch, seeding)
        cases.append({"id": len(cases), "sampler": sampler, "schedule": schedule, "width": size[0],
                      "height": size[1], "steps": steps, "strength": strength, "batch": batch,
                      "seeding": seeding, "images": [store.add(im) for im in images]})
    elapsed = time.time() - start
    tensors.update(store.tensors)
    save_file(tensors, OUT_ST)
    with open(OUT_JSON, "w") as f:
        json.dump({"generator": "tools/reference/make_img2img_goldens.py",
                   "torch": torch.__version__, "diffusers": diffusers.__version__,
                   "init_image": harness.rel(INIT_PNG), "prompt": PROMPT, "negative_prompt": NEGATIVE,
                   "cfg": CFG, "seed": str(SEED), "rng": "cpu",
                   "resize": resizes, "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"{len(resizes)} resize cases, {len(cases)} img2img cases in {elapsed:.1f} s -> "
          f"{harness.rel(OUT_ST)} ({os.path.getsize(OUT_ST)} bytes), {harness.rel(INIT_PNG)} "
          f"({os.path.getsize(INIT_PNG)} bytes)")


if __name__ == "__main__":
    main()

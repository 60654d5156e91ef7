"""Parity goldens of the demo model (tests/data/demo/, train_demo_model.py):
what diffusers draws from the committed checkpoint, for tests/test_demo_parity.c.

txt2img: the demo job itself (demo_input.json: prompt, negative prompt, size,
steps, cfg, seed), through StableDiffusionXLPipeline.from_single_file
(harness.load_pipeline, fp32, CPU, one thread, no watermark) with the
scheduler make_sampler_goldens.py maps "DPM++ 2M" + "Karras" to and
generator=torch.Generator().manual_seed(seed): the job's rng is "cpu", so
the picture `make demo` draws is this one.

img2img: StableDiffusionXLImg2ImgPipeline.from_pipe on the same pipeline,
init image tests/data/demo/img2img_init.png (a scene drawn by
demo_scenes.py, written here), a prompt that contradicts it, strength 0.5,
20 steps, the same scheduler and cfg.

Pictures are stored as PNG (lossless) of (np_image * 255).round() as the
pipelines' PIL path makes them: golden_txt2img.png, golden_img2img.png;
goldens.json holds the settings.

Run: tools/reference/.venv/bin/python tools/reference/make_demo_goldens.py
"""
import json
import os

import numpy as np
import torch
from PIL import Image

import diffusers

import demo_scenes as D
import harness
from make_sampler_goldens import make_scheduler

DEMO_DIR = os.path.join(harness.REPO, "tests", "data", "demo")
DEMO_JOB = os.path.join(harness.REPO, "demo_input.json")
INIT_PNG = os.path.join(DEMO_DIR, "img2img_init.png")
SAMPLER, SCHEDULE = "DPM++ 2M", "Karras"

# The init picture: a yellow star on a blue background, top left.
INIT_SCENE = {"fg": "yellow", "bg": "blue", "shape": "star", "place": "top left", "size": 0.19}
IMG2IMG = {"prompt": "a red circle on a green background, bottom right", "width": 256, "height": 256,
           "steps": 20, "strength": 0.5, "seed": 7}


def init_picture():
    s = INIT_SCENE
    sc = {"fg": torch.tensor([D.COLOURS.index(s["fg"])]), "bg": torch.tensor([D.COLOURS.index(s["bg"])]),
          "shape": torch.tensor([D.SHAPES.index(s["shape"])]), "place": torch.tensor([D.PLACE_NAMES.index(s["place"])]),
          "centre": torch.tensor([D.PLACES[s["place"]]]), "size": torch.tensor([s["size"]])}
    return Image.fromarray(D.to_uint8(D.render(sc, IMG2IMG["width"]))[0].numpy())


def to_png(out, path):
    image = np.ascontiguousarray((out.images[0] * 255).round().astype(np.uint8))
    Image.fromarray(image).save(path, optimize=True)
    return os.path.basename(path)


def main():
    torch.set_num_threads(1)
    with open(DEMO_JOB) as f:
        job = json.load(f)["input"]
    assert job["rng"] == "cpu" and job["sampler"] == f"{SAMPLER} {SCHEDULE}"
    pipe = harness.load_pipeline(os.path.join(DEMO_DIR, "sdxl_demo.safetensors"), os.path.join(DEMO_DIR, "diffusers"))
    pipe.watermark = None
    pipe.scheduler = make_scheduler(SAMPLER, SCHEDULE)
    out = pipe(prompt=job["prompt"], negative_prompt=job.get("negative_prompt") or None, width=job["width"],
               height=job["height"], num_inference_steps=job["steps"], guidance_scale=job["cfg_scale"],
               generator=torch.Generator().manual_seed(job["seed"]), output_type="np")
    txt2img = dict(job, image=to_png(out, os.path.join(DEMO_DIR, "golden_txt2img.png")))

    init_picture().save(INIT_PNG, optimize=True)
    i2i = diffusers.StableDiffusionXLImg2ImgPipeline.from_pipe(pipe)
    i2i.set_progress_bar_config(disable=True)
    i2i.watermark = None
    i2i.scheduler = make_scheduler(SAMPLER, SCHEDULE)
    c = IMG2IMG
    out = i2i(prompt=c["prompt"], image=Image.open(INIT_PNG).convert("RGB"), strength=c["strength"],
              num_inference_steps=c["steps"], guidance_scale=job["cfg_scale"],
              generator=torch.Generator().manual_seed(c["seed"]), output_type="np")
    img2img = dict(c, cfg_scale=job["cfg_scale"], sampler=job["sampler"], init_image=os.path.basename(INIT_PNG),
                   image=to_png(out, os.path.join(DEMO_DIR, "golden_img2img.png")))
    with open(os.path.join(DEMO_DIR, "goldens.json"), "w") as f:
        json.dump({"generator": "tools/reference/make_demo_goldens.py", "torch": torch.__version__,
                   "diffusers": diffusers.__version__, "rng": "cpu", "seeding": "one generator",
                   "init_scene": INIT_SCENE, "txt2img": txt2img, "img2img": img2img}, f, indent=1)
        f.write("\n")
    print(f"wrote {harness.rel(DEMO_DIR)}/goldens.json, {txt2img['image']}, {img2img['image']}, "
          f"{os.path.basename(INIT_PNG)}")


if __name__ == "__main__":
    main()

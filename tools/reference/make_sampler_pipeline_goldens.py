"""Sampler x schedule goldens on the small model: diffusers'
StableDiffusionXLPipeline with every sampler x schedule pair that
docs/samplers.md lists as supported, written to
tests/data/small/goldens_samplers.{safetensors,json} for
tests/test_sampler_pipeline.c.

Each case is one pipeline call (fp32, CPU, one thread, no watermark)
    pipe(PROMPT, negative_prompt=NEGATIVE, width=64, height=64,
         num_inference_steps=6, guidance_scale=6,
         generator=torch.Generator().manual_seed(SEED), output_type="np")
with the scheduler built exactly as make_sampler_goldens.py builds it for the
fake-model goldens (SDXL's scheduler_config.json + the sampler's and the
schedule's overrides; SGM Uniform and Simple run "trailing"). Stochastic
samplers draw their step noise from the same generator after the initial
latents, as the pipeline passes it to scheduler.step.

Six steps give every multistep sampler its highest order at least once
(DPM++ 3M SDE's third order at step 2, LMS's fourth at step 3) before
lower_order_final.

Batch cases: num_images_per_prompt=2 with a list of two generators seeded
SEED and SEED+1, which is A1111's per-image seeding (each image's initial
latents and step noise come from its own generator), for one deterministic
and two stochastic samplers; and with one generator for the batch.

Images are stored as the pipeline's PIL path makes them,
(np_image * 255).round().astype(uint8), HWC; identical images are stored once
(SGM Uniform and Simple give Trailing's image).

Run: tools/reference/.venv/bin/python tools/reference/make_sampler_pipeline_goldens.py
"""
import json
import os
import time

import numpy as np
import torch
from safetensors.numpy import save_file

import diffusers

import harness
from make_pipeline_goldens import NEGATIVE, PROMPT, Store
from make_sampler_goldens import SAMPLERS, SCHEDULES, make_scheduler, schedules_of

OUT_ST = os.path.join(harness.SMALL_DIR, "goldens_samplers.safetensors")
OUT_JSON = os.path.join(harness.SMALL_DIR, "goldens_samplers.json")

WIDTH = HEIGHT = 64
STEPS = 6
CFG = 6.0
SEED = 1234
# schedule labels that run another label's diffusers config (docs/samplers.md)
SAME_CONFIG = {"SGM Uniform": "Trailing", "Simple": "Trailing"}
# (sampler, schedule, seeding) of the batch cases: "per-image" is a list of
# generators seeded SEED+i, "one" a single generator for the batch
BATCH_CASES = [
    ("Euler", "Normal", "per-image"),
    ("Euler a", "Normal", "per-image"),
    ("DPM++ 2M SDE", "Karras", "per-image"),
    ("Euler a", "Normal", "one"),
]


def labels_of(sampler):
    """Every schedule label the C engine accepts for the sampler."""
    labels = schedules_of(sampler)
    if "Trailing" in labels:
        labels = labels + list(SAME_CONFIG)
    return labels


def generate(pipe, sampler, schedule, batch=1, seeding="one"):
    pipe.scheduler = make_scheduler(sampler, SAME_CONFIG.get(schedule, schedule))
    if seeding == "per-image":
        generator = [torch.Generator().manual_seed(SEED + i) for i in range(batch)]
    else:
        generator = torch.Generator().manual_seed(SEED)
    out = pipe(prompt=PROMPT, negative_prompt=NEGATIVE, width=WIDTH, height=HEIGHT,
               num_inference_steps=STEPS, guidance_scale=CFG, num_images_per_prompt=batch,
               generator=generator, output_type="np")
    return [np.ascontiguousarray((image * 255).round().astype(np.uint8)) for image in out.images]


def main():
    assert set(SCHEDULES) | set(SAME_CONFIG) >= {s for k in SAMPLERS for s in labels_of(k)}
    torch.set_num_threads(1)
    pipe = harness.load_small_pipeline()
    pipe.watermark = None
    store, cases = Store(), []
    start = time.time()
    for sampler in SAMPLERS:
        for schedule in labels_of(sampler):
            (image,) = generate(pipe, sampler, schedule)
            cases.append({"id": len(cases), "sampler": sampler, "schedule": schedule, "batch": 1,
                          "seeding": "one", "images": [store.add(image)]})
    for sampler, schedule, seeding in BATCH_CASES:
        images = generate(pipe, sampler, schedule, 2, seeding)
        cases.append({"id": len(cases), "sampler": sampler, "schedule": schedule, "batch": 2,
                      "seeding": seeding, "images": [store.add(im) for im in images]})
    elapsed = time.time() - start
    save_file(store.tensors, OUT_ST)
    with open(OUT_JSON, "w") as f:
        json.dump({"generator": "tools/reference/make_sampler_pipeline_goldens.py",
                   "torch": torch.__version__, "diffusers": diffusers.__version__,
                   "prompt": PROMPT, "negative_prompt": NEGATIVE, "width": WIDTH, "height": HEIGHT,
                   "steps": STEPS, "cfg": CFG, "seed": str(SEED), "rng": "cpu",
                   "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases, {len(store.tensors)} distinct images in {elapsed:.1f} s -> "
          f"{harness.rel(OUT_ST)} ({os.path.getsize(OUT_ST)} bytes)")


if __name__ == "__main__":
    main()

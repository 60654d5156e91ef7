"""Full txt2img goldens: diffusers' StableDiffusionXLPipeline on the small
checkpoint (fp32, CPU, one thread, no watermark), written to
tests/data/small/goldens_txt2img.{safetensors,json} for tests/test_txt2img.c.

Every case is one pipeline call
    pipe(prompt, negative_prompt=<None or text>, width, height,
         num_inference_steps, guidance_scale,
         generator=torch.Generator().manual_seed(seed), output_type="np")
with the scheduler that docs/samplers.md maps the sampler to (built from the
small model's SDXL scheduler_config.json, as make_sampler_goldens.py does):
    Euler            EulerDiscreteScheduler (leading, steps_offset 1)
    DPM++ 2M Karras  DPMSolverMultistepScheduler(dpmsolver++, order 2,
                     use_karras_sigmas)
negative None is diffusers' "no negative prompt": force_zeros_for_empty_prompt
gives all-zero negative embeddings, which is what the C engine does for an
empty negative prompt (A1111's force_zero_negative_prompt).

The images are stored as the pipeline's PIL path makes them:
(np_image * 255).round().astype(uint8) (numpy rounds half to even), HWC.
Identical images (with cfg 1 the negative prompt is never used) are stored
once; the index names the tensor of each case.

The cases are the full cross product (96): sizes 64x64 and 128x96 (W x H),
4 and 8 steps, both samplers, cfg 1 and 6, seeds 0, 42 and 2^32+7, with and
without a negative prompt.

A1111 cases ("a1111" in the index): prompts diffusers cannot take (longer
than 75 tokens, emphasis, BREAK), conditioned by a1111_prompt.py (the
reference make_text_goldens.py ties to diffusers), then the pipeline's
denoising loop written out: the unconditional and conditional halves go
through the UNet as two calls, as A1111 does when their chunk counts differ
(no pad_cond_uncond). The loop itself is checked first: on the plain prompt
it must reproduce the pipeline's image.

Run: tools/reference/.venv/bin/python tools/reference/make_pipeline_goldens.py
"""
import hashlib
import itertools
import json
import os
import time

import numpy as np
import torch
from safetensors.numpy import save_file

import diffusers
from diffusers.utils.torch_utils import randn_tensor

import harness
from make_text_goldens import LONG, LONG_TAGS, Encoder

OUT_ST = os.path.join(harness.SMALL_DIR, "goldens_txt2img.safetensors")
OUT_JSON = os.path.join(harness.SMALL_DIR, "goldens_txt2img.json")
SDXL_SCHEDULER = os.path.join(harness.SMALL_DIFFUSERS_DIR, "scheduler", "scheduler_config.json")

PROMPT = "a photograph of an astronaut riding a horse on the moon, highly detailed"
NEGATIVE = "blurry, low quality, watermark, text"

# sampler label (as the C engine parses it) -> (diffusers class, config overrides)
SAMPLERS = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler",
                        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
}
SIZES = [(64, 64), (128, 96)]  # (width, height)
STEPS = [4, 8]
CFGS = [1.0, 6.0]
SEEDS = [0, 42, 2**32 + 7]
NEGATIVES = [None, NEGATIVE]


def make_scheduler(sampler):
    cls_name, overrides = SAMPLERS[sampler]
    with open(SDXL_SCHEDULER) as f:
        config = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    config.update(overrides)
    return getattr(diffusers, cls_name).from_config(config)


def generate(pipe, sampler, width, height, steps, cfg, seed, negative, prompt=PROMPT):
    pipe.scheduler = make_scheduler(sampler)
    out = pipe(prompt=prompt, negative_prompt=negative, width=width, height=height,
               num_inference_steps=steps, guidance_scale=cfg,
               generator=torch.Generator().manual_seed(seed), output_type="np")
    image = out.images[0]
    return np.ascontiguousarray((image * 255).round().astype(np.uint8))


# (prompt, negative or None, sampler, (width, height), steps, cfg, seed)
A1111_CASES = [
    (LONG, NEGATIVE, "Euler", (64, 64), 4, 6.0, 42),                       # 3 chunks vs 1: two calls
    (LONG, None, "DPM++ 2M Karras", (128, 96), 4, 6.0, 7),                 # 3 vs the zero 77: two calls
    (LONG, LONG_TAGS, "Euler", (64, 64), 4, 6.0, 0),                       # 3 vs 3: one batch in C
    ("a (red:1.3) cat, [blue] dog", "ugly BREAK blurry", "Euler", (64, 64), 4, 6.0, 3),  # 1 vs 2
]


def a1111_conditioning(enc, prompt, negative):
    """(context, pooled) of the prompt and the negative as the C engine builds
    them (clip_skip 2, comma backtrack 20); an absent negative is all zeros."""
    cond = enc.a1111(prompt, 2, 20)[2:]
    uncond = enc.a1111_negative(negative or "", 2, 20)
    return cond, uncond


def denoise_two_calls(pipe, cond, uncond, sampler, width, height, steps, cfg, seed):
    """StableDiffusionXLPipeline.__call__'s loop (prepare_latents, CFG, step,
    decode, postprocess) with the two halves as separate UNet calls."""
    scheduler = make_scheduler(sampler)
    scheduler.set_timesteps(steps, device="cpu")
    generator = torch.Generator().manual_seed(seed)
    shape = (1, pipe.unet.config.in_channels, height // 8, width // 8)
    latents = randn_tensor(shape, generator=generator, device=torch.device("cpu"), dtype=torch.float32)
    latents = latents * scheduler.init_noise_sigma
    time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32)
    scheduler.set_begin_index(0)
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.scale_model_input(latents, t)
            eps_u, eps_c = (pipe.unet(x, t, encoder_hidden_states=c[0][None],
                                      added_cond_kwargs={"text_embeds": c[1][None], "time_ids": time_ids},
                                      return_dict=False)[0] for c in (uncond, cond))
            eps = eps_u + cfg * (eps_c - eps_u)
            latents = scheduler.step(eps, t, latents, return_dict=False)[0]
        image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
    image = pipe.image_processor.postprocess(image, output_type="np")[0]
    return np.ascontiguousarray((image * 255).round().astype(np.uint8))


def check_two_call_loop(pipe, enc):
    """The written-out loop gives the pipeline's image on a prompt both take."""
    cond, uncond = a1111_conditioning(enc, PROMPT, NEGATIVE)
    mine = denoise_two_calls(pipe, cond, uncond, "Euler", 64, 64, 4, 6.0, 42)
    ref = generate(pipe, "Euler", 64, 64, 4, 6.0, 42, NEGATIVE)
    diff = int(np.abs(mine.astype(int) - ref.astype(int)).max())
    if diff > 1:
        raise SystemExit(f"the two-call loop differs from the pipeline by {diff}/255")
    return diff


class Store:
    """Images by content: identical ones are stored once."""

    def __init__(self):
        self.tensors, self.by_digest = {}, {}

    def add(self, image):
        digest = hashlib.sha256(image.tobytes()).hexdigest()
        if digest not in self.by_digest:
            self.by_digest[digest] = f"img{len(self.by_digest)}"
            self.tensors[self.by_digest[digest]] = image
        return self.by_digest[digest]


def main():
    torch.set_num_threads(1)
    pipe = harness.load_small_pipeline()
    pipe.watermark = None  # add_watermarker=False (and the images are < 256 wide anyway)
    store, cases = Store(), []
    start = time.time()
    for (width, height), steps, sampler, cfg, seed, negative in itertools.product(
            SIZES, STEPS, SAMPLERS, CFGS, SEEDS, NEGATIVES):
        image = generate(pipe, sampler, width, height, steps, cfg, seed, negative)
        assert image.shape == (height, width, 3)
        cases.append({"id": len(cases), "prompt": PROMPT, "width": width, "height": height, "steps": steps,
                      "sampler": sampler, "cfg": cfg, "seed": str(seed),
                      "negative_prompt": negative, "image": store.add(image)})
    enc = Encoder(pipe)
    loop_diff = check_two_call_loop(pipe, enc)
    for prompt, negative, sampler, (width, height), steps, cfg, seed in A1111_CASES:
        cond, uncond = a1111_conditioning(enc, prompt, negative)
        image = denoise_two_calls(pipe, cond, uncond, sampler, width, height, steps, cfg, seed)
        cases.append({"id": len(cases), "a1111": True, "prompt": prompt, "width": width, "height": height,
                      "steps": steps, "sampler": sampler, "cfg": cfg, "seed": str(seed),
                      "negative_prompt": negative, "cond_tokens": int(cond[0].shape[0]),
                      "uncond_tokens": int(uncond[0].shape[0]), "image": store.add(image)})
    elapsed = time.time() - start
    tensors = store.tensors
    save_file(tensors, OUT_ST)
    with open(OUT_JSON, "w") as f:
        json.dump({"generator": "tools/reference/make_pipeline_goldens.py",
                   "torch": torch.__version__, "diffusers": diffusers.__version__,
                   "clip_skip": None, "guidance_rescale": 0.0,
                   "rng": "cpu", "two_call_loop_vs_pipeline_max_diff": loop_diff,
                   "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases, {len(tensors)} distinct images in {elapsed:.1f} s -> "
          f"{harness.rel(OUT_ST)} ({os.path.getsize(OUT_ST)} bytes)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""UNet goldens of the small SDXL model, read by tests/test_unet.c.

Writes
  tests/data/small/goldens_unet.safetensors  fp32 tensors, named <case>.<what>
  tests/data/small/goldens_unet.json         the cases and their tensors

Each case is one evaluation of diffusers' UNet2DConditionModel (the small
model's, loaded from the committed single file through
StableDiffusionXLPipeline.from_single_file; fp32, CPU, one thread) on a CFG
batch of 2 with different rows:
  <case>.x            [2, 4, h, w]   latents (the sampler's scaled input)
  <case>.context      [2, n, 48]     encoder_hidden_states
  <case>.text_embeds  [2, 32]        pooled text embeddings
  <case>.time_ids     [2, 6]         orig h, orig w, crop top, crop left, target h, target w
  <case>.y            [2, 128]       what add_embedding receives: [text_embeds, sinusoids of
                                     time_ids] (get_aug_embed, "text_time"), caught by a hook
  <case>.eps          [2, 4, h, w]   the UNet output
The timestep is one fp32 value for the whole batch, passed as a 0-d fp32
tensor as the Euler scheduler does (fractional values as Karras schedules give).
"""

import os
import sys

import torch

import clip_vocab
import harness
import st_stream

GOLDENS = os.path.join(harness.SMALL_DIR, "goldens_unet.safetensors")
GOLDENS_JSON = os.path.join(harness.SMALL_DIR, "goldens_unet.json")

# (name, latent h, latent w, timestep, context tokens, time_ids of the two rows, seed)
CASES = [
    ("latent8x8_t999", 8, 8, 999.0, 77,
     [[64, 64, 0, 0, 64, 64], [96, 80, 8, 4, 64, 64]], 1),
    ("latent12x16_t500_5", 12, 16, 500.5, 154,
     [[96, 128, 0, 0, 96, 128], [1024, 768, 16, 32, 96, 128]], 2),
    # Sides that are not multiples of 4 (72x104 images): diffusers'
    # forward_upsample_size path upsamples to each skip's size.
    ("latent9x13_t250", 9, 13, 250.0, 77,
     [[72, 104, 0, 0, 72, 104], [72, 104, 0, 0, 72, 104]], 3),
]


def run_case(unet, name, h, w, t, n_tokens, time_ids, seed, tensors):
    cfg = unet.config
    gen = torch.Generator().manual_seed(seed)
    pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
    inputs = {
        "x": torch.randn(2, cfg.in_channels, h, w, generator=gen),
        "context": torch.randn(2, n_tokens, cfg.cross_attention_dim, generator=gen),
        "text_embeds": torch.randn(2, pooled, generator=gen),
        "time_ids": torch.tensor(time_ids, dtype=torch.float32),
    }
    caught = {}

    def catch_input(module, args):  # a pre-hook that returns None leaves the input as it is
        caught["y"] = args[0].clone()

    hook = unet.add_embedding.register_forward_pre_hook(catch_input)
    try:
        eps = unet(inputs["x"], torch.tensor(t, dtype=torch.float32), encoder_hidden_states=inputs["context"],
                   added_cond_kwargs={"text_embeds": inputs["text_embeds"], "time_ids": inputs["time_ids"]},
                   return_dict=False)[0]
    finally:
        hook.remove()
    for what, v in {**inputs, "y": caught["y"], "eps": eps}.items():
        tensors[f"{name}.{what}"] = v
    return {"name": name, "latent_h": h, "latent_w": w, "timestep": t, "n_tokens": n_tokens,
            "time_ids": time_ids, "seed": seed,
            "tensors": {what: f"{name}.{what}" for what in ("x", "context", "text_embeds", "time_ids", "y", "eps")}}


def main():
    torch.set_num_threads(1)  # reductions in a fixed order: goldens regenerate bit for bit
    unet = harness.load_small_pipeline().unet.eval()
    tensors, cases = {}, []
    with torch.no_grad():
        for case in CASES:
            cases.append(run_case(unet, *case, tensors))
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    st_stream.save(GOLDENS, tensors, {"format": "pt", "model": os.path.basename(harness.SMALL_CKPT)})
    doc = {
        "model": os.path.basename(harness.SMALL_CKPT),
        "tensors_file": os.path.basename(GOLDENS),
        "dtype": "F32",
        "reference": "diffusers UNet2DConditionModel (from_single_file), fp32, CPU, torch.set_num_threads(1)",
        "batch": 2,
        "cases": cases,
    }
    clip_vocab.write_json(GOLDENS_JSON, doc)
    print(f"wrote {harness.rel(GOLDENS)} ({os.path.getsize(GOLDENS)} bytes, {len(tensors)} tensors) "
          f"and {harness.rel(GOLDENS_JSON)} ({len(cases)} cases)")


if __name__ == "__main__":
    sys.exit(main())

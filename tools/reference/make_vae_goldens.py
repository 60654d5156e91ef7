#!/usr/bin/env python3
"""VAE goldens of the small SDXL model, read by tests/test_vae.c.

Writes
  tests/data/small/goldens_vae.safetensors  tensors named <case>.<what>
  tests/data/small/goldens_vae.json         the cases, shapes and what each tensor is

The VAE is the committed checkpoint's, loaded through diffusers'
StableDiffusionXLPipeline.from_single_file (AutoencoderKL, fp32, CPU, one
thread), so the goldens are what diffusers computes from the file itself.

Cases
- dec8, dec12x16 (batch 2): `latents` ~ N(0, 1) as the sampler leaves them;
  `z` = latents / vae.config.scaling_factor (the pipeline's fp32 division);
  `image` = vae.decode(z).sample [B, 3, 8h, 8w]; `rgb8` [B, 8h, 8w, 3] uint8 =
  pipe.image_processor.postprocess(image, output_type="pil") as numpy arrays
  (clamp(x * 0.5 + 0.5, 0, 1), * 255, numpy round half to even).
- tile: a 1 x 4 x 16 x 24 latent `z` for the tiled-decode test (our tiled
  decode must match our untiled one, which the dec* cases tie to diffusers).
  The json records, for comparison, how far diffusers' own tiled_decode lands
  from its untiled decode on the same latent with tile_latent_min_size 8.
- enc64x96 (batch 2), enc48x40: `rgb8` [B, H, W, 3] uint8 images (smooth
  gradients plus noise), `x` = image_processor.preprocess(PIL images) in
  [-1, 1] (x / 255 * 2 - 1 in fp32), and the posterior of vae.encode(x):
  `mean` and `logvar` (latent_dist.parameters split in two, before
  DiagonalGaussianDistribution clamps logvar to [-30, 20]).
- rgb8edge: `x` float32 values whose (x * 0.5 + 0.5) * 255 is exactly k + 0.5
  in fp32 (k = 0..254), their float neighbours, and out-of-range values; `rgb8`
  the bytes diffusers' postprocess gives for them.
"""

import json
import os

import numpy as np
import PIL.Image
import torch
from safetensors.torch import save_file

import harness

GOLDENS = os.path.join(harness.SMALL_DIR, "goldens_vae.safetensors")
GOLDENS_JSON = os.path.join(harness.SMALL_DIR, "goldens_vae.json")
TILE_LATENT = 8  # diffusers' tile_latent_min_size for its tiled_decode comparison


def to_rgb8(processor, image):
    """diffusers' own post-processing: float NCHW -> list of PIL -> uint8 NHWC."""
    return torch.from_numpy(np.stack([np.asarray(p) for p in processor.postprocess(image, output_type="pil")]))


def decode_case(vae, processor, gen, name, batch, h, w, out, cases):
    latents = torch.randn(batch, vae.config.latent_channels, h, w, generator=gen)
    z = latents / vae.config.scaling_factor
    image = vae.decode(z).sample
    out[f"{name}.latents"], out[f"{name}.z"], out[f"{name}.image"] = latents, z, image
    out[f"{name}.rgb8"] = to_rgb8(processor, image)
    cases.append({"name": name, "kind": "decode", "latent": [batch, vae.config.latent_channels, h, w],
                  "image": list(image.shape)})


def test_images(gen, batch, h, w):
    """Smooth colour gradients plus noise, as uint8 PIL images."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    imgs = []
    for b in range(batch):
        base = torch.stack([xx, yy, (xx + yy) / 2 if b % 2 == 0 else 1 - xx]) * 200 + 20
        noisy = (base + torch.randn(3, h, w, generator=gen) * 25).clamp(0, 255).round().to(torch.uint8)
        imgs.append(PIL.Image.fromarray(noisy.permute(1, 2, 0).numpy(), "RGB"))
    return imgs


def encode_case(vae, processor, gen, name, batch, h, w, out, cases):
    imgs = test_images(gen, batch, h, w)
    x = processor.preprocess(imgs, height=h, width=w)
    params = vae.encode(x).latent_dist.parameters
    mean, logvar = torch.chunk(params, 2, dim=1)
    out[f"{name}.rgb8"] = torch.from_numpy(np.stack([np.asarray(i) for i in imgs]))
    out[f"{name}.x"], out[f"{name}.mean"], out[f"{name}.logvar"] = x, mean.contiguous(), logvar.contiguous()
    cases.append({"name": name, "kind": "encode", "image": [batch, 3, h, w], "latent": list(mean.shape)})


def tile_case(vae, gen, out, cases):
    z = torch.randn(1, vae.config.latent_channels, 16, 24, generator=gen) / vae.config.scaling_factor
    vae.disable_tiling()
    image = vae.decode(z).sample
    vae.enable_tiling()
    vae.tile_latent_min_size, vae.tile_sample_min_size = TILE_LATENT, TILE_LATENT * 8
    tiled = vae.decode(z).sample
    vae.disable_tiling()
    q = lambda t: ((t * 0.5 + 0.5).clamp(0, 1) * 255).round()
    out["tile.z"] = z
    cases.append({"name": "tile", "kind": "tiled", "latent": list(z.shape), "image": list(image.shape),
                  "diffusers_tiled_decode": {
                      "tile_latent_min_size": TILE_LATENT, "tile_sample_min_size": TILE_LATENT * 8,
                      "max_abs_diff_vs_untiled": (tiled - image).abs().max().item(),
                      "max_rgb8_levels_vs_untiled": int((q(tiled) - q(image)).abs().max().item()),
                      "mean_rgb8_levels_vs_untiled": (q(tiled) - q(image)).abs().mean().item()}})


def edge_values():
    """fp32 x with fl(fl(fl(x * 0.5) + 0.5) * 255) == k + 0.5 exactly, plus neighbours."""
    f = np.float32
    xs = []
    for k in range(255):
        x = f(2) * f((k + 0.5) / 255) - f(1)
        for _ in range(64):
            v = (x * f(0.5) + f(0.5)) * f(255)
            if v == f(k + 0.5):
                xs += [np.nextafter(x, f(-2)), x, np.nextafter(x, f(2))]
                break
            x = np.nextafter(x, f(2) if v < f(k + 0.5) else f(-2))
    xs += [f(-1), f(1), f(0), f(-1.5), f(1.5), f(-np.inf), f(np.inf), f(1e30), f(-1e30), f(-0.0),
           np.nextafter(f(-1), f(0)), np.nextafter(f(1), f(0))]
    return torch.tensor(np.array(xs, dtype=np.float32))


def edge_case(processor, out, cases):
    x = edge_values()
    image = x.reshape(1, 1, 1, -1).expand(1, 3, 1, -1).contiguous()
    out["rgb8edge.x"], out["rgb8edge.rgb8"] = x, to_rgb8(processor, image)[0, 0, :, 0].contiguous()
    cases.append({"name": "rgb8edge", "kind": "postprocess", "values": x.numel(),
                  "exact_half_values": int((x.numel() - 12) // 3)})


def main():
    torch.set_num_threads(1)
    pipe = harness.load_small_pipeline()
    vae, processor = pipe.vae, pipe.image_processor
    assert vae.dtype == torch.float32
    gen = torch.Generator().manual_seed(20240613)
    out, cases = {}, []
    with torch.no_grad():
        decode_case(vae, processor, gen, "dec8", 2, 8, 8, out, cases)
        decode_case(vae, processor, gen, "dec12x16", 2, 12, 16, out, cases)
        tile_case(vae, gen, out, cases)
        encode_case(vae, processor, gen, "enc64x96", 2, 64, 96, out, cases)
        encode_case(vae, processor, gen, "enc48x40", 1, 48, 40, out, cases)
        edge_case(processor, out, cases)
    save_file({k: v.contiguous() for k, v in out.items()}, GOLDENS)
    with open(GOLDENS_JSON, "w") as f:
        json.dump({"generator": "tools/reference/make_vae_goldens.py",
                   "model": harness.rel(harness.SMALL_CKPT), "dtype": "float32",
                   "scaling_factor": vae.config.scaling_factor, "cases": cases,
                   "tensors": {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)}
                               for k, v in sorted(out.items())}}, f, indent=1)
        f.write("\n")
    print(f"wrote {harness.rel(GOLDENS)} ({len(out)} tensors) and {harness.rel(GOLDENS_JSON)}")


if __name__ == "__main__":
    main()

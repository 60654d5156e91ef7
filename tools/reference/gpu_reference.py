#!/usr/bin/env python3
"""diffusers' side of the GPU check (scripts/gpu-check.sh, docs/gpu-check.md).

Runs on the device machine with its own torch and the wheels gpu-pack.sh
carries (diffusers 0.42.1, open_clip for the CLIP vocabulary), offline; here
with --device cpu on the small model. Prints one JSON object per line on
stdout, one per finished part, so that a part that fails (its line carries
"error") or a time-out of the whole program loses nothing already measured.

  full CKPT  StableDiffusionXLPipeline.from_single_file on a full-size SDXL
             checkpoint (make_small_model.py --full), with a local config
             folder built from sdxl_configs' full-size configs and our CLIP
             vocabulary (make_small_model.write_diffusers_configs, as the small
             model's is), fp16 weights, torch's default attention (SDPA). Times,
             each after one warm-up call and between torch.cuda.synchronize():
               load      from_single_file + .to(device)
               unet      one CFG UNet step: batch 2, SIZE/8 latents, 77 tokens
               vae       the VAE decode of one SIZE^2 image, upcast to fp32 as
                         the pipeline does for SDXL (vae.config.force_upcast)
               job       the pipeline call of the job file (test_input.json:
                         1024^2, 24 steps, DPM++ 2M Karras = DPMSolverMultistep
                         with Karras sigmas, cfg 4.5, a torch CPU generator
                         seeded with the job's seed), its peak device memory
                         (torch.cuda.max_memory_allocated), optionally its PNG.
  gap        The jobs of tests/test_cuda_pipeline.c's compare_jobs on the small
             model in fp32 (TF32 off: the reference), fp16 and bf16 (torch's
             defaults), and per job and precision the max and mean |p - fp32|
             of the uint8 images in 1/255 steps: the tolerance issue 14 sets
             for our fp16/bf16 images ("within the gap between diffusers' own
             fp16 and fp32 images on the same model and jobs").
  compare A B  max / mean |A - B| of two PNGs of the same size (our worker's
             image against diffusers' for the same job and seed).

How the C test's jobs are expressed here (the A1111 conditioning our engine
builds comes from a1111_prompt.py through make_text_goldens.Encoder, with the
text encoders on the device and in the pipeline's dtype; per-image generators
seeded seed+i are A1111's per-image seeds, rng "cpu"):
  - "long prompt (2 chunks) vs short negative": the pipeline needs equal
    lengths, so the negative is padded with the empty prompt's chunk, A1111's
    pad_cond_uncond (our engine runs the two halves as separate UNet calls);
  - "tiled VAE decode": diffusers' own tiling (vae.enable_tiling) with 8-latent
    tiles (tile_latent_min_size 8, overlap factor 0.25), not our tile layout;
  - inpainting and hires fix as make_inpaint_goldens.py and
    make_hires_goldens.py compose them from diffusers' pipelines.

Run: python tools/reference/gpu_reference.py [--device cuda|cpu] full CKPT
     python tools/reference/gpu_reference.py [--device cuda|cpu] gap
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import types

import numpy as np
import torch
from PIL import Image

import harness

SMALL_INIT_PNG = os.path.join(harness.SMALL_DIR, "img2img_init.png")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# A1111 sampler labels of the jobs here -> make_sampler_goldens' (sampler, schedule)
SAMPLERS = {"DPM++ 2M Karras": ("DPM++ 2M", "Karras"), "DPM++ 2M": ("DPM++ 2M", "Karras"),
            "Euler a": ("Euler a", "Normal"), "DDIM": ("DDIM", "Normal")}


def emit(record):
    print(json.dumps(record), flush=True)


def run_part(name, fn, **fields):
    """Runs fn() -> dict and prints it as part `name`; an exception becomes the
    line's "error" (and a traceback on stderr). Returns fn's dict or None."""
    start = time.time()
    try:
        out = fn()
    except Exception as e:  # noqa: BLE001 - every failure is reported, then the next part runs
        traceback.print_exc()
        emit(dict(part=name, **fields, error=f"{type(e).__name__}: {e}", seconds=round(time.time() - start, 3)))
        return None
    emit(dict(part=name, **fields, **out))
    return out


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device, fn, runs):
    """fn() once to warm up, then `runs` times; milliseconds of each."""
    fn()
    times = []
    for _ in range(runs):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def ms_stats(times):
    return {"ms_median": round(statistics.median(times), 2), "ms_min": round(min(times), 2),
            "ms_runs": [round(t, 2) for t in times]}


def set_tf32(strict):
    """TF32 off for fp32 convolutions and matmuls when strict (the fp32
    reference), else torch's defaults (convolutions on, matmuls off)."""
    torch.backends.cudnn.allow_tf32 = not strict
    torch.backends.cuda.matmul.allow_tf32 = False


def machine(device):
    info = {"torch": torch.__version__, "device": str(device)}
    try:
        import diffusers
        import transformers
        info.update(diffusers=diffusers.__version__, transformers=transformers.__version__)
    except ImportError as e:
        info["import_error"] = str(e)
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, gpu_memory_mb=round(p.total_memory / 2**20), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    return info


def load(ckpt, configs_dir, dtype, device):
    pipe = harness.load_pipeline(ckpt, configs_dir, dtype)
    pipe.watermark = None  # as the goldens: no invisible watermark
    return pipe.to(device)


def scheduler_for(label):
    from make_sampler_goldens import make_scheduler

    return make_scheduler(*SAMPLERS[label])


def to_uint8(images):
    """The pipeline's np images (N, H, W, 3) as its PIL path makes bytes."""
    return np.ascontiguousarray((np.nan_to_num(images) * 255).round().clip(0, 255).astype(np.uint8))


def diff(a, b):
    d = np.abs(a.astype(np.int32) - b.astype(np.int32))
    return {"max": int(d.max()), "mean": round(float(d.mean()), 4), "differ": int((d != 0).sum()), "bytes": int(d.size)}


# ---- full ------------------------------------------------------------------------------------

def full_config_dir(folder):
    """The diffusers config folder of the full-size model (configs only; harness
    adds the vocabulary when it loads)."""
    import make_small_model

    models, _, _ = make_small_model.plan_full()  # meta-device models: their configs, no weights
    make_small_model.write_diffusers_configs(folder, models)
    return folder


def unet_inputs(unet, size, device):
    cfg = unet.config
    g = torch.Generator().manual_seed(0)
    pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim

    def rand(*shape):
        return torch.randn(shape, generator=g).to(device, unet.dtype)

    time_ids = torch.tensor([[size, size, 0, 0, size, size]] * 2, dtype=unet.dtype, device=device)
    return dict(sample=rand(2, cfg.in_channels, size // 8, size // 8),
                timestep=torch.tensor(500.0, device=device),
                encoder_hidden_states=rand(2, 77, cfg.cross_attention_dim),
                added_cond_kwargs={"text_embeds": rand(2, pooled), "time_ids": time_ids})


def unet_step(pipe, size, runs, device):
    x = unet_inputs(pipe.unet, size, device)
    with torch.inference_mode():
        times = timed(device, lambda: pipe.unet(**x, return_dict=False), runs)
    out = ms_stats(times)
    out.update(steps_per_s=round(1000 / out["ms_median"], 2), batch=2, latent=size // 8, tokens=77,
               dtype=str(pipe.unet.dtype).removeprefix("torch."))
    return out


def vae_decode(pipe, size, runs, device):
    vae = pipe.vae
    stored = vae.dtype
    upcast = stored == torch.float16 and vae.config.force_upcast
    if upcast:
        vae.to(torch.float32)  # the pipeline's upcast before decoding
    dtype = vae.dtype
    z = torch.randn((1, vae.config.latent_channels, size // 8, size // 8), generator=torch.Generator().manual_seed(0))
    z = (z / vae.config.scaling_factor).to(device, dtype)
    try:
        with torch.inference_mode():
            image = vae.decode(z, return_dict=False)[0]
            nan = bool(torch.isnan(image).any())
            times = timed(device, lambda: vae.decode(z, return_dict=False), runs)
    finally:
        vae.to(stored)
    out = ms_stats(times)
    out.update(size=size, dtype=str(dtype).removeprefix("torch."), upcast=upcast, nan=nan)
    return out


def read_job(path):
    with open(path) as f:
        job = json.load(f)["input"]
    if job.get("clip_skip", 2) != 2:
        raise ValueError("only clip_skip 2 (A1111's SDXL default = diffusers' default) is expressed here")
    return job


def pipeline_job(pipe, job, size, steps, device, image_path):
    pipe.scheduler = scheduler_for(job["sampler"])
    width, height = size or job["width"], size or job["height"]

    def call(n):
        return pipe(prompt=job["prompt"], negative_prompt=job.get("negative_prompt"), width=width,
                    height=height, num_inference_steps=n, guidance_scale=job["cfg_scale"],
                    generator=torch.Generator("cpu").manual_seed(job["seed"]), output_type="np").images

    steps = steps or job["steps"]
    call(2)  # warm-up: the same shapes, the decode and its upcast included
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t0 = time.perf_counter()
    images = call(steps)
    sync(device)
    seconds = time.perf_counter() - t0
    out = {"seconds": round(seconds, 3), "steps": steps, "width": width, "height": height,
           "sampler": job["sampler"], "cfg": job["cfg_scale"], "seed": job["seed"],
           "nan": bool(np.isnan(images).any())}
    if device.type == "cuda":
        out.update(peak_allocated_mb=round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
                   peak_reserved_mb=round(torch.cuda.max_memory_reserved(device) / 2**20, 1))
    if image_path:
        Image.fromarray(to_uint8(images)[0]).save(image_path)
        out["image"] = image_path
    return out


def cmd_full(args, device):
    run_part("full.machine", lambda: machine(device))
    tmp = tempfile.mkdtemp(prefix="sdxl-gpu-ref-")
    state = {}
    try:
        def do_load():
            configs = args.config or full_config_dir(os.path.join(tmp, "full"))
            t0 = time.perf_counter()
            state["pipe"] = load(args.ckpt, configs, DTYPES[args.dtype], device)
            sync(device)
            return {"seconds": round(time.perf_counter() - t0, 3), "checkpoint": args.ckpt,
                    "config": "small model's" if args.config else "full-size (sdxl_configs)"}

        run_part("full.load", do_load)
        pipe = state.get("pipe")
        if pipe is None:
            return
        run_part("full.unet", lambda: unet_step(pipe, args.size or 1024, args.runs, device))
        run_part("full.vae", lambda: vae_decode(pipe, args.size or 1024, max(1, args.runs - 2), device))
        run_part("full.job", lambda: pipeline_job(pipe, read_job(args.job), args.size, args.steps, device,
                                                  args.image))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- gap ---------------------------------------------------------------------------------------

# tests/test_cuda_pipeline.c: base_job and compare_jobs
BASE = dict(prompt="a lighthouse on a cliff at dawn, (oil painting:1.2)", negative="blurry", width=64, height=96,
            steps=5, cfg=5.0, seed=1234, sampler="DPM++ 2M", batch=1, clip_skip=2, rescale=0.0)
CASTLE = ("a castle, towers, flags, walls, moat, bridge, knights, horses, banners, sky, clouds, sun, "
          "trees, hills, river, boats, fish, birds, village, houses, roofs, chimneys, smoke, people, "
          "market, carts, bread, apples, cats, dogs, children, lanterns, evening light, detailed")
GAP_JOBS = [
    ("txt2img DPM++ 2M Karras, batch 2", dict(batch=2)),
    ("Euler a, rescale 0.7, clip skip 1", dict(sampler="Euler a", rescale=0.7, clip_skip=1)),
    ("long prompt (2 chunks) vs short negative", dict(prompt=CASTLE)),
    ("batch 4, DDIM", dict(batch=4, sampler="DDIM", width=32, height=32)),
    ("tiled VAE decode", dict(width=128, height=128, tile_latent=8)),
    ("img2img strength 0.6", dict(kind="img2img", strength=0.6)),
    # compare_inpaint_and_hires: sd_inpaint_params_default's strength 0.75 and
    # blur 4, "only masked" with padding 8; sd_hires_params_default's
    # strength 0.7 and the Latent (bilinear) upscaler
    ("inpainting, only masked", dict(kind="inpaint", strength=0.75, blur=4, padding=8)),
    ("hires fix 1.5x, Latent", dict(kind="hires", width=64, height=64, scale=1.5, hr_steps=3, strength=0.7)),
]


def inpaint_mask(width, height):
    """compare_inpaint_and_hires' mask on the init image: white rows
    [H/4, H/2), columns [W/4, W/4 + W/3) (C integer division)."""
    m = np.zeros((height, width), np.uint8)
    m[height // 4:height // 2, width // 4:width // 4 + width // 3] = 255
    return Image.fromarray(m, "L")


class OnDevice:
    """A text encoder called with CPU token ids (a1111_prompt.encode makes them
    on the CPU) that runs where its weights are."""

    def __init__(self, module):
        self.module = module

    def __call__(self, ids, **kwargs):
        return self.module(ids.to(self.module.device), **kwargs)


def conditioning(pipe, job):
    """(context, pooled) of the prompt and of the negative as our engine builds
    them; a shorter negative padded with the empty prompt's chunk."""
    from make_text_goldens import Encoder

    view = types.SimpleNamespace(tokenizer=pipe.tokenizer, text_encoder=OnDevice(pipe.text_encoder),
                                 text_encoder_2=OnDevice(pipe.text_encoder_2))
    enc = Encoder(view)
    with torch.inference_mode():
        cond = enc.a1111(job["prompt"], job["clip_skip"], 20)[2:]
        uncond = enc.a1111_negative(job["negative"], job["clip_skip"], 20)
        empty = enc.a1111("", job["clip_skip"], 20)[2]
    ctx, nctx = cond[0], uncond[0]
    while nctx.shape[0] < ctx.shape[0]:
        nctx = torch.cat([nctx, empty])
    if nctx.shape[0] != ctx.shape[0]:
        raise ValueError("the negative is longer than the prompt (not among the C test's jobs)")
    dtype = pipe.unet.dtype
    return dict(prompt_embeds=ctx[None].to(dtype), pooled_prompt_embeds=cond[1][None].to(dtype),
                negative_prompt_embeds=nctx[None].to(dtype), negative_pooled_prompt_embeds=uncond[1][None].to(dtype))


def gap_job(pipe, job, init):
    """The job's images as uint8 (N, H, W, 3) and whether the pipeline's
    float images held a NaN (None where it returns PIL images)."""
    import diffusers
    import torch.nn.functional as F
    from make_img2img_goldens import cover
    from make_inpaint_goldens import a1111_blur

    kind = job.get("kind", "txt2img")
    pipe.scheduler = scheduler_for(job["sampler"])

    def generators():
        return [torch.Generator().manual_seed(job["seed"] + i) for i in range(job["batch"])]

    def derived(cls):
        # from_pipe casts the shared modules to its torch_dtype, float32 unless told
        p = cls.from_pipe(pipe, torch_dtype=pipe.unet.dtype)
        p.set_progress_bar_config(disable=True)
        p.watermark = None
        p.scheduler = scheduler_for(job["sampler"])
        return p

    kwargs = dict(conditioning(pipe, job), num_inference_steps=job["steps"], guidance_scale=job["cfg"],
                  guidance_rescale=job["rescale"], num_images_per_prompt=job["batch"], generator=generators())
    if kind == "img2img":
        images = derived(diffusers.StableDiffusionXLImg2ImgPipeline)(
            image=cover(pipe.image_processor, init, job["width"], job["height"]), strength=job["strength"],
            output_type="np", **kwargs).images
    elif kind == "inpaint":  # A1111's blurred mask; the pipeline's crop and overlay are A1111's "only masked"
        mask = a1111_blur(inpaint_mask(*init.size), job["blur"])
        pil = derived(diffusers.StableDiffusionXLInpaintPipeline)(
            image=init, mask_image=mask, width=job["width"], height=job["height"], strength=job["strength"],
            padding_mask_crop=job["padding"], output_type="pil", **kwargs).images
        return np.stack([np.asarray(im.convert("RGB")) for im in pil]), None
    elif kind == "hires":  # make_hires_goldens.hires with our conditioning
        first = pipe(width=job["width"], height=job["height"], output_type="latent", **kwargs).images
        w2, h2 = int(job["width"] * job["scale"]), int(job["height"] * job["scale"])
        latents = F.interpolate(first, size=(h2 // 8, w2 // 8), mode="bilinear", antialias=False)
        kwargs.update(num_inference_steps=job["hr_steps"], generator=generators())
        images = derived(diffusers.StableDiffusionXLImg2ImgPipeline)(
            image=latents, strength=job["strength"], output_type="np", **kwargs).images
    else:
        tiled = "tile_latent" in job
        if tiled:
            pipe.vae.enable_tiling()
            pipe.vae.tile_latent_min_size = job["tile_latent"]
            pipe.vae.tile_sample_min_size = 8 * job["tile_latent"]
        try:
            images = pipe(width=job["width"], height=job["height"], output_type="np", **kwargs).images
        finally:
            if tiled:
                pipe.vae.disable_tiling()
    return to_uint8(images), bool(np.isnan(images).any())


def cmd_gap(args, device):
    run_part("gap.machine", lambda: machine(device))
    init = Image.open(SMALL_INIT_PNG).convert("RGB")
    jobs = [(name, dict(BASE, **over)) for name, over in GAP_JOBS]
    reference = {}
    for precision in ["fp32"] + [p for p in args.precisions.split(",") if p != "fp32"]:
        set_tf32(precision == "fp32")
        state = {}

        def do_load(p=precision):
            t0 = time.perf_counter()
            state["pipe"] = load(harness.SMALL_CKPT, harness.SMALL_DIFFUSERS_DIR, DTYPES[p], device)
            return {"seconds": round(time.perf_counter() - t0, 3),
                    "tf32": "off" if p == "fp32" else "torch default (convolutions)"}

        run_part("gap.load", do_load, precision=precision)
        for name, job in jobs:
            def do_job(p=precision, name=name, job=job):
                if "pipe" not in state:
                    raise RuntimeError("the pipeline did not load")
                t0 = time.perf_counter()
                pixels, nan = gap_job(state["pipe"], job, init)
                if state["pipe"].unet.dtype != DTYPES[p]:
                    raise RuntimeError(f"the job left the UNet in {state['pipe'].unet.dtype}")
                out = {"seconds": round(time.perf_counter() - t0, 3), "nan": nan, "shape": list(pixels.shape)}
                if p == "fp32":
                    reference[name] = pixels
                elif name in reference:
                    out.update(vs_fp32=diff(pixels, reference[name]))
                else:
                    out["vs_fp32"] = None  # its fp32 run failed: nothing to compare with
                return out

            run_part("gap.job", do_job, precision=precision, job=name)
        state.clear()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    set_tf32(False)


# ---- compare -----------------------------------------------------------------------------------

def cmd_compare(args, device):
    def do():
        a = np.asarray(Image.open(args.a).convert("RGB"))
        b = np.asarray(Image.open(args.b).convert("RGB"))
        if a.shape != b.shape:
            raise ValueError(f"sizes differ: {a.shape} vs {b.shape}")
        return dict(diff(a, b), a=args.a, b=args.b)

    run_part("compare", do)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (the device machine) or cpu (tests here)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    full = sub.add_parser("full", help="timings of the full-size checkpoint")
    full.add_argument("ckpt")
    full.add_argument("--config", help="a diffusers config folder (default: the full-size one, built)")
    full.add_argument("--job", default=os.path.join(harness.REPO, "test_input.json"))
    full.add_argument("--size", type=int, help="image side instead of the job's (and of 1024 for unet/vae)")
    full.add_argument("--steps", type=int, help="steps instead of the job's")
    full.add_argument("--runs", type=int, default=5, help="timed UNet steps (VAE decodes: 2 fewer)")
    full.add_argument("--dtype", default="fp16", choices=list(DTYPES))
    full.add_argument("--image", help="write the job's image here (PNG)")
    gap = sub.add_parser("gap", help="fp16/bf16 vs fp32 on the C test's jobs (small model)")
    gap.add_argument("--precisions", default="fp32,fp16,bf16")
    cmp = sub.add_parser("compare", help="max/mean |A - B| of two PNGs")
    cmp.add_argument("a")
    cmp.add_argument("b")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    {"full": cmd_full, "gap": cmd_gap, "compare": cmd_compare}[args.cmd](args, device)


if __name__ == "__main__":
    sys.exit(main())

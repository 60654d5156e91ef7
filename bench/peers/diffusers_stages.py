"""diffusers on PyPI torch (CPU, fp32) running bench/peers.sh's stages on the
full-size random SDXL checkpoint, one stage per process so that each peak RSS
is the stage's own (VmHWM of this process):

  python diffusers_stages.py CKPT STAGE [ARGS] [--runs N] [--threads T]
    load                 StableDiffusionXLPipeline.from_single_file (fp32)
    encode               pipe.encode_prompt of one prompt pair
    unet H W             one CFG UNet call: batch 2 latents H x W (64 = 512 px)
    vae H W              pipe.vae.decode of one latent H x W
    loras DIR            load_lora_weights of nine LoRAs + fuse_lora (scales as
                         bench/lora_merge.c)
    gen PX               a PX x PX generation, one CFG step (peak RSS)

Prints one line per run "run <i> <seconds>", then "peak_rss_mb <MiB>": the
stage's own peak, VmHWM reset after loading (/proc/self/clear_refs "5"),
except for "load", whose peak is the loading itself.
Fixed random inputs; torch.inference_mode; torch.set_num_threads(T).
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "reference"))
import harness  # noqa: E402
import sdxl_configs as C  # noqa: E402
from make_small_model import build_models, write_diffusers_configs  # noqa: E402

PROMPT = "a photograph of an astronaut riding a horse on the moon, detailed, 8k"
NEGATIVE = "blurry, lowres, watermark"
LORA_NAMES = ("full_1", "full_2", "unet_tf", "unet_attn", "te_only", "tf_te1", "locon", "attn_te2", "ff_slider")
LORA_SCALES = (1.5, 1.0, 0.3, 0.4, 1.0, 1.0, 3.0, 1.0, 1.0)


def load(ckpt):
    """The pipeline from the single file with a full-size config folder written on the fly."""
    with torch.device("meta"):
        models = build_models(C.FULL_UNET, C.FULL_VAE, C.FULL_TE1, C.FULL_TE2)
    tmp = tempfile.mkdtemp(prefix="sdxl-peer-")
    try:
        write_diffusers_configs(os.path.join(tmp, "cfg"), models)
        return harness.load_pipeline(ckpt, os.path.join(tmp, "cfg"))
    finally:
        shutil.rmtree(tmp)


def reset_peak_rss():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def timed(fn, runs, first=1):
    for i in range(runs):
        t0 = time.perf_counter()
        fn()
        print(f"run {first + i} {time.perf_counter() - t0:.3f}", flush=True)


def unet_call(pipe, h, w):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, h, w, generator=g)
    ctx = torch.randn(2, 77, 2048, generator=g)
    pooled = torch.randn(2, 1280, generator=g)
    time_ids = torch.tensor([[8.0 * h, 8.0 * w, 0, 0, 8.0 * h, 8.0 * w]] * 2)
    cond = {"text_embeds": pooled, "time_ids": time_ids}
    return lambda: pipe.unet(x, 500, encoder_hidden_states=ctx, added_cond_kwargs=cond, return_dict=False)


def vae_call(pipe, h, w):
    z = torch.randn(1, 4, h, w, generator=torch.Generator().manual_seed(0))
    return lambda: pipe.vae.decode(z / pipe.vae.config.scaling_factor, return_dict=False)


def merge_loras(pipe, folder):
    names = [f"l{i}" for i in range(len(LORA_NAMES))]
    for name, file in zip(names, LORA_NAMES):
        pipe.load_lora_weights(os.path.join(folder, f"{file}.safetensors"), adapter_name=name)
    pipe.set_adapters(names, list(LORA_SCALES))
    pipe.fuse_lora(adapter_names=names, lora_scale=1.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("stage", choices=("load", "encode", "unet", "vae", "loras", "gen"))
    ap.add_argument("args", nargs="*")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with torch.inference_mode():
        if a.stage == "load":
            timed(lambda: load(a.ckpt), a.runs)
        else:
            pipe = load(a.ckpt)
            reset_peak_rss()
            if a.stage == "encode":
                timed(lambda: pipe.encode_prompt(PROMPT, device="cpu", num_images_per_prompt=1,
                                                 do_classifier_free_guidance=True, negative_prompt=NEGATIVE), a.runs)
            elif a.stage == "unet":
                timed(unet_call(pipe, int(a.args[0]), int(a.args[1])), a.runs)
            elif a.stage == "vae":
                timed(vae_call(pipe, int(a.args[0]), int(a.args[1])), a.runs)
            elif a.stage == "loras":   # each run from the plain weights: unfused and unloaded in between
                for i in range(a.runs):
                    timed(lambda: merge_loras(pipe, a.args[0]), 1, first=i + 1)
                    pipe.unfuse_lora()
                    pipe.unload_lora_weights()
            else:
                px = int(a.args[0])
                timed(lambda: pipe(PROMPT, negative_prompt=NEGATIVE, width=px, height=px, num_inference_steps=1,
                                   guidance_scale=6.0, generator=torch.Generator().manual_seed(0)), a.runs)
    print(f"peak_rss_mb {peak_rss_mb():.1f}", flush=True)


if __name__ == "__main__":
    main()

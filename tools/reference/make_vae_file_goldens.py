"""Goldens of a VAE of the user's choice (tests/test_vae_file.c): a second
random VAE for the small model, written as the two kinds of file Civitai and
the Hugging Face hub serve, and what diffusers makes with it. It is narrower
than the checkpoint's own VAE (channels 8/8/16/16, one resnet per level; the
checkpoint's: 8/16/32/32, two), so that its shapes, not the checkpoint's,
must drive it; latent channels and the scale factor 8 are the same.

Writes
  tests/data/small/vae/vae_ldm.safetensors        LDM names (encoder.down.N...,
      no first_stage_model. prefix: sgm_layout.vae_to_sgm with the prefix cut
      off), as stabilityai's sdxl_vae.safetensors
  tests/data/small/vae/vae_diffusers.safetensors  AutoencoderKL.save_pretrained's
      diffusion_pytorch_model.safetensors (encoder.down_blocks.N..., [C, C]
      mid-block attention), as madebyollin's sdxl-vae-fp16-fix
  tests/data/small/goldens_vae_file.{safetensors,json}
Both files are fp16 and carry the __metadata__ key sdxl.vae.norm_groups = "4"
(the small model's GroupNorm groups; SDXL's 32 is the default), metadata in
sorted order (harness.sort_safetensors_metadata). The weights are
make_small_model.random_weight of the diffusers names under the salt
"vae_choice.", so they differ from the checkpoint's own VAE.

Reference: AutoencoderKL.from_single_file(vae_ldm, config=<small model
folder>, subfolder="vae") and AutoencoderKL.from_pretrained(<folder with the
small vae config.json and vae_diffusers as diffusion_pytorch_model.safetensors>)
must hold identical weights (checked); that VAE then replaces pipe.vae in
  txt2img.<i>  make_pipeline_goldens' txt2img call (PROMPT, NEGATIVE) on the
               small checkpoint: the chosen VAE decodes;
  img2img      StableDiffusionXLImg2ImgPipeline.from_pipe(pipe) at strength
               0.6 on img2img_init.png (make_img2img_goldens' cover resize and
               seed): the chosen VAE encodes the init image and decodes.
Images are uint8 HWC, rounded as the pipeline's PIL path does.

Also writes fuzz/corpus/vae_file/ (the seeds of fuzz/fuzz_vae_file.c): a tiny
VAE (channels 4, one resnet per level) in LDM names, under
first_stage_model. and in diffusers names, and broken variants of it (cut
short, a tensor missing, mid-block attention weights of the wrong width).

Run: tools/reference/.venv/bin/python tools/reference/make_vae_file_goldens.py
"""
import json
import os
import shutil
import tempfile

import numpy as np
import torch
from PIL import Image
from safetensors.numpy import save_file
from safetensors.torch import load_file
from safetensors.torch import save_file as save_torch

import diffusers
import harness
import sgm_layout
from make_img2img_goldens import CFG as I2I_CFG, INIT_PNG, SEED as I2I_SEED, cover
from make_pipeline_goldens import NEGATIVE, PROMPT, Store, generate
from make_sampler_goldens import make_scheduler
from make_small_model import random_weight

VAE_DIR = os.path.join(harness.SMALL_DIR, "vae")
LDM_FILE = os.path.join(VAE_DIR, "vae_ldm.safetensors")
DIFFUSERS_FILE = os.path.join(VAE_DIR, "vae_diffusers.safetensors")
OUT_ST = os.path.join(harness.SMALL_DIR, "goldens_vae_file.safetensors")
OUT_JSON = os.path.join(harness.SMALL_DIR, "goldens_vae_file.json")
METADATA = {"format": "pt", "sdxl.vae.norm_groups": "4"}
SALT = "vae_choice."

# (sampler, (width, height), steps, cfg, seed)
TXT2IMG_CASES = [("Euler", (64, 64), 4, 6.0, 42), ("DPM++ 2M Karras", (128, 96), 6, 6.0, 7)]
IMG2IMG = ("Euler", "Normal", (64, 64), 8, 0.6)


def vae_config():
    """The small model's VAE config, narrowed (see the top of the file)."""
    with open(os.path.join(harness.SMALL_DIFFUSERS_DIR, "vae", "config.json")) as f:
        config = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    config.update(block_out_channels=[8, 8, 16, 16], layers_per_block=1)
    return config


def random_vae(config):
    vae = diffusers.AutoencoderKL(**config)
    with torch.no_grad():
        for name, t in vae.state_dict().items():
            t.copy_(random_weight(SALT + name, t.shape).to(t.dtype))
    return vae


FUZZ_DIR = os.path.join(harness.REPO, "fuzz", "corpus", "vae_file")


def write_fuzz_seeds(config):
    os.makedirs(FUZZ_DIR, exist_ok=True)
    tiny = dict(config, block_out_channels=[4, 4, 4, 4], layers_per_block=1)
    vae = diffusers.AutoencoderKL(**tiny)
    with torch.no_grad():
        for name, t in vae.state_dict().items():
            t.copy_(random_weight("vae_fuzz." + name, t.shape).to(t.dtype))
    state = {k: v.to(torch.float16).contiguous() for k, v in vae.state_dict().items()}
    ldm = {k[len(sgm_layout.VAE_PREFIX):]: v.contiguous() for k, v in sgm_layout.vae_to_sgm(state, tiny).items()}
    seeds = {
        "ldm": ldm,
        "ldm_prefixed": {sgm_layout.VAE_PREFIX + k: v for k, v in ldm.items()},
        "diffusers": state,
        "missing_conv_out": {k: v for k, v in ldm.items() if not k.startswith("decoder.conv_out.")},
        "wrong_attention": dict(ldm, **{"decoder.mid.attn_1.q.weight": torch.zeros(4, 8, 1, 1, dtype=torch.float16)}),
    }
    for name, tensors in seeds.items():
        path = os.path.join(FUZZ_DIR, name + ".safetensors")
        save_torch(tensors, path, metadata={"sdxl.vae.norm_groups": "4"})
    with open(os.path.join(FUZZ_DIR, "ldm.safetensors"), "rb") as src:
        data = src.read()
    with open(os.path.join(FUZZ_DIR, "truncated.safetensors"), "wb") as dst:
        dst.write(data[:len(data) * 3 // 4])


def write_files(vae, config):
    """The LDM and the diffusers file of the same fp16 weights."""
    os.makedirs(VAE_DIR, exist_ok=True)
    state = {k: v.to(torch.float16).contiguous() for k, v in vae.state_dict().items()}
    ldm = {k[len(sgm_layout.VAE_PREFIX):]: v.contiguous() for k, v in sgm_layout.vae_to_sgm(state, config).items()}
    save_torch(ldm, LDM_FILE, metadata=METADATA)
    harness.sort_safetensors_metadata(LDM_FILE)
    tmp = tempfile.mkdtemp(prefix="sdxl-vae-")
    try:
        vae.to(torch.float16).save_pretrained(tmp, safe_serialization=True)
        saved = load_file(os.path.join(tmp, "diffusion_pytorch_model.safetensors"))
    finally:
        shutil.rmtree(tmp)
    assert saved.keys() == state.keys() and all(torch.equal(saved[k], state[k]) for k in state)
    save_torch(saved, DIFFUSERS_FILE, metadata=METADATA)
    harness.sort_safetensors_metadata(DIFFUSERS_FILE)


def load_both(config):
    """The VAE through diffusers' two loaders; they must agree exactly."""
    tmp = tempfile.mkdtemp(prefix="sdxl-vae-")
    try:
        os.makedirs(os.path.join(tmp, "vae"))
        diffusers.AutoencoderKL(**config).save_config(os.path.join(tmp, "vae"))
        from_ldm = diffusers.AutoencoderKL.from_single_file(LDM_FILE, config=tmp, subfolder="vae",
                                                            local_files_only=True, torch_dtype=torch.float32)
        shutil.copy(DIFFUSERS_FILE, os.path.join(tmp, "vae", "diffusion_pytorch_model.safetensors"))
        from_diffusers = diffusers.AutoencoderKL.from_pretrained(tmp, subfolder="vae", torch_dtype=torch.float32)
    finally:
        shutil.rmtree(tmp)
    a, b = from_ldm.state_dict(), from_diffusers.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "the two files load differently"
    return from_ldm


def main():
    torch.set_num_threads(1)
    config = vae_config()
    torch.manual_seed(0)  # module construction draws random numbers
    write_files(random_vae(config), config)
    write_fuzz_seeds(vae_config())
    vae = load_both(config)
    pipe = harness.load_small_pipeline()
    pipe.watermark = None
    own = pipe.vae
    pipe.vae = vae
    store, tensors, cases = Store(), {}, []
    for sampler, (width, height), steps, cfg, seed in TXT2IMG_CASES:
        image = generate(pipe, sampler, width, height, steps, cfg, seed, NEGATIVE)
        cases.append({"kind": "txt2img", "prompt": PROMPT, "negative_prompt": NEGATIVE, "sampler": sampler,
                      "width": width, "height": height, "steps": steps, "cfg": cfg, "seed": str(seed),
                      "image": store.add(image)})
    i2i = diffusers.StableDiffusionXLImg2ImgPipeline.from_pipe(pipe)
    i2i.set_progress_bar_config(disable=True)
    i2i.watermark = None
    sampler, schedule, (width, height), steps, strength = IMG2IMG
    i2i.scheduler = make_scheduler(sampler, schedule)
    init = Image.open(INIT_PNG).convert("RGB")
    out = i2i(prompt=PROMPT, negative_prompt=NEGATIVE, image=cover(i2i.image_processor, init, width, height),
              strength=strength, num_inference_steps=steps, guidance_scale=I2I_CFG,
              generator=torch.Generator().manual_seed(I2I_SEED), output_type="np")
    image = np.ascontiguousarray((out.images[0] * 255).round().astype(np.uint8))
    cases.append({"kind": "img2img", "prompt": PROMPT, "negative_prompt": NEGATIVE, "sampler": sampler,
                  "schedule": schedule, "width": width, "height": height, "steps": steps, "cfg": I2I_CFG,
                  "strength": strength, "seed": str(I2I_SEED), "init_image": harness.rel(INIT_PNG),
                  "image": store.add(image)})
    # the checkpoint's own VAE on the first case: how far the choice moves the picture
    pipe.vae = own
    sampler, (width, height), steps, cfg, seed = TXT2IMG_CASES[0]
    baseline = generate(pipe, sampler, width, height, steps, cfg, seed, NEGATIVE)
    moved = int(np.abs(baseline.astype(int) - store.tensors[cases[0]["image"]].astype(int)).max())
    tensors.update(store.tensors)
    save_file(tensors, OUT_ST)
    with open(OUT_JSON, "w") as f:
        json.dump({"generator": "tools/reference/make_vae_file_goldens.py",
                   "torch": torch.__version__, "diffusers": diffusers.__version__,
                   "files": {"ldm": harness.rel(LDM_FILE), "diffusers": harness.rel(DIFFUSERS_FILE)},
                   "own_vae_vs_chosen_max_diff": moved, "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases; own VAE vs chosen: {moved} levels apart -> {harness.rel(OUT_ST)} "
          f"({os.path.getsize(OUT_ST)} bytes); {os.path.getsize(LDM_FILE)} + {os.path.getsize(DIFFUSERS_FILE)} "
          f"bytes of VAE files")


if __name__ == "__main__":
    main()

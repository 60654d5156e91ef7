"""Nine random rank-32 kohya LoRAs for the full-size random checkpoint, for
bench/lora_merge.c (never committed; outputs under the ignored
tools/reference/big/loras/).

The layers are read from the checkpoint's header (make_small_model.py
--full writes it), and each LoRA targets what kohya's sd-scripts
networks/lora.py targets for SDXL, in a different mix per file, like the
worker's nine Civitai LoRAs (specs/original-worker-and-civitai.md §1.3):

  name            text encoders   UNet
  full_1, full_2  CLIP-L + bigG   every Linear of the transformers
  unet_tf         -               every Linear of the transformers
  unet_attn       -               attn1/attn2 q, k, v, out
  te_only         CLIP-L + bigG   -
  tf_te1          CLIP-L          every Linear of the transformers
  locon           CLIP-L + bigG   transformers + ResBlock convs (3x3 down,
                                  1x1 up) and 1x1 shortcuts (LoCon, conv rank 32)
  attn_te2        bigG            attn1/attn2 q, k, v, out
  ff_slider       CLIP-L + bigG   ff.net.0.proj, ff.net.2

Rank 32, alpha 16 (conv alpha 8), fp16, values N(0, 1/fan_in) for down and
N(0, 0.01) for up. Seeded, so the files are the same on every run.

Run: tools/reference/.venv/bin/python tools/reference/make_bench_loras.py [CHECKPOINT]
"""
import os
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
CKPT = os.path.join(HERE, "big", "sdxl_full_random.safetensors")
OUT = os.path.join(HERE, "big", "loras")
UNET, TE1, TE2 = "model.diffusion_model.", "conditioner.embedders.0.transformer.text_model.", \
    "conditioner.embedders.1.model."
RANK, ALPHA, CONV_ALPHA = 32, 16.0, 8.0

LORAS = {  # name: (te1, te2, unet kinds)
    "full_1": (True, True, ("tf",)),
    "full_2": (True, True, ("tf",)),
    "unet_tf": (False, False, ("tf",)),
    "unet_attn": (False, False, ("attn",)),
    "te_only": (True, True, ()),
    "tf_te1": (True, False, ("tf",)),
    "locon": (True, True, ("tf", "conv")),
    "attn_te2": (False, True, ("attn",)),
    "ff_slider": (True, True, ("ff",)),
}


def unet_layers(shapes, kinds):
    """(kohya name, weight shape) of the UNet layers of the given kinds."""
    out = []
    for name, shape in shapes.items():
        if not name.startswith(UNET) or not name.endswith(".weight"):
            continue
        module = name[len(UNET):-len(".weight")]
        in_tf = ".transformer_blocks." in module or module.endswith((".proj_in", ".proj_out"))
        attn = ".attn1." in module or ".attn2." in module
        ff = ".ff.net." in module
        conv = module.endswith((".in_layers.2", ".out_layers.3", ".skip_connection"))
        take = (("tf" in kinds and in_tf and len(shape) == 2) or ("attn" in kinds and attn) or
                ("ff" in kinds and ff) or ("conv" in kinds and conv))
        if take:
            out.append(("lora_unet_" + module.replace(".", "_"), shape))
    return out


def te1_layers(shapes):
    out = []
    for name, shape in shapes.items():
        if name.startswith(TE1 + "encoder.layers.") and name.endswith(".weight") and len(shape) == 2:
            module = name[len(TE1):-len(".weight")]
            if ".self_attn." in module or ".mlp." in module:
                out.append(("lora_te1_text_model_" + module.replace(".", "_"), shape))
    return out


def te2_layers(shapes):
    """bigG under kohya's transformers names; q/k/v are row blocks of in_proj."""
    out, i = [], 0
    while TE2 + f"transformer.resblocks.{i}.attn.in_proj_weight" in shapes:
        width = shapes[TE2 + f"transformer.resblocks.{i}.attn.in_proj_weight"][1]
        base = f"lora_te2_text_model_encoder_layers_{i}_"
        for p in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out.append((base + "self_attn_" + p, (width, width)))
        out.append((base + "mlp_fc1", tuple(shapes[TE2 + f"transformer.resblocks.{i}.mlp.c_fc.weight"])))
        out.append((base + "mlp_fc2", tuple(shapes[TE2 + f"transformer.resblocks.{i}.mlp.c_proj.weight"])))
        i += 1
    return out


def make(name, layers, seed):
    rng = np.random.default_rng(seed)
    tensors = {}
    for key, shape in layers:
        out_dim, in_dim, kernel = shape[0], shape[1], tuple(shape[2:])
        fan_in = in_dim * int(np.prod(kernel)) if kernel else in_dim
        down = rng.standard_normal((RANK, in_dim) + kernel, dtype=np.float32) / np.sqrt(fan_in)
        up = rng.standard_normal((out_dim, RANK) + ((1, 1) if kernel else ()), dtype=np.float32) * 0.01
        tensors[key + ".lora_down.weight"] = down.astype(np.float16)
        tensors[key + ".lora_up.weight"] = up.astype(np.float16)
        tensors[key + ".alpha"] = np.array(CONV_ALPHA if kernel and kernel != (1, 1) else ALPHA, dtype=np.float16)
    path = os.path.join(OUT, name + ".safetensors")
    save_file(tensors, path, metadata={"ss_network_dim": str(RANK)})
    return path, len(layers), os.path.getsize(path)


def main():
    ckpt = sys.argv[1] if len(sys.argv) > 1 else CKPT
    with safe_open(ckpt, "np") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    os.makedirs(OUT, exist_ok=True)
    for seed, (name, (te1, te2, kinds)) in enumerate(LORAS.items()):
        layers = (te1_layers(shapes) if te1 else []) + (te2_layers(shapes) if te2 else []) + \
            unet_layers(shapes, kinds)
        path, n, size = make(name, layers, 1000 + seed)
        print(f"{path}: {n} modules, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()

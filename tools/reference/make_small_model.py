#!/usr/bin/env python3
"""Builds SDXL checkpoints with random weights in the Civitai single-file layout.

Default: the SMALL SDXL-architecture test model (sdxl_configs.SMALL_*), built
from the real diffusers/transformers classes (UNet2DConditionModel,
AutoencoderKL, CLIPTextModel, CLIPTextModelWithProjection), given reproducible
random fp16-representable weights, converted to SGM names (sgm_layout.py) and
written as one fp16 safetensors file:
  tests/data/small/sdxl_small.safetensors   the checkpoint (+ __metadata__ keys)
  tests/data/small/config.json              hyper-parameters the C loader must find
  tests/data/small/diffusers/               diffusers configs + tokenizer configs
The layout is then PROVEN: the file is loaded back with diffusers'
StableDiffusionXLPipeline.from_single_file(config=<that folder>) and every
tensor of every component must equal the original exactly.

--full [PATH]: a FULL-SIZE SDXL base checkpoint with random fp16 weights
(about 6.9 GB, default tools/reference/big/sdxl_full_random.safetensors, never
committed), generated tensor by tensor from shapes planned on the meta device,
plus PATH with .json instead of .safetensors (its config.json equivalent). Its
layout is proven by running diffusers' own single-file converters on the
file's header (meta tensors) and comparing names and shapes with the models.

Random weights (both sizes): every tensor gets its own torch.Generator seeded
from SEED and the crc32 of its name, so each tensor can be regenerated alone:
  matrices / conv kernels / embeddings: N(0, 1) / sqrt(fan_in)
  1-D weights (all are norm scales):    1 + 0.1 N(0, 1)
  1-D biases:                           0.1 N(0, 1)
  open_clip logit_scale (0-D):          ln(100)
All values are rounded to fp16 (the small models keep the rounded values in
fp32, so fp32 references see exactly the stored weights).
"""

import argparse
import os
import shutil
import sys
import time
import zlib

import torch
from safetensors import safe_open

import harness
import sdxl_configs as C
import sgm_layout
import st_stream
import clip_vocab

SEED = 20240601
DEFAULT_FULL = os.path.join(harness.REPO, "tools", "reference", "big", "sdxl_full_random.safetensors")


# ---- random weights -------------------------------------------------------

def random_weight(name, shape):
    """fp16 random tensor for one named parameter (see the module comment)."""
    gen = torch.Generator().manual_seed(SEED ^ zlib.crc32(name.encode()))
    shape = tuple(shape)
    if len(shape) == 0:
        return torch.tensor(sgm_layout.LOGIT_SCALE, dtype=torch.float16)
    x = torch.randn(shape, generator=gen, dtype=torch.float32)
    if len(shape) == 1:
        x = x * 0.1 + (1.0 if name.endswith("weight") else 0.0)
    else:
        fan_in = 1
        for d in shape[1:]:
            fan_in *= d
        x = x / fan_in ** 0.5
    return x.to(torch.float16)


def randomize(model):
    """Overwrite every parameter/buffer of a model with random_weight (fp16 values)."""
    with torch.no_grad():
        for name, t in model.state_dict().items():
            assert t.is_floating_point(), f"unexpected non-float state {name}"
            t.copy_(random_weight(name, t.shape).to(t.dtype))
    return model


# ---- models ---------------------------------------------------------------

def build_models(unet_cfg, vae_cfg, te1_cfg, te2_cfg):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    return dict(
        unet=UNet2DConditionModel(**unet_cfg),
        vae=AutoencoderKL(**vae_cfg),
        te1=CLIPTextModel(CLIPTextConfig(**te1_cfg)),
        te2=CLIPTextModelWithProjection(CLIPTextConfig(**te2_cfg)),
    )


def to_sgm(models, unet_cfg, vae_cfg):
    sd = {k: m.state_dict() for k, m in models.items()}
    return sgm_layout.sdxl_to_sgm(sd["unet"], unet_cfg, sd["vae"], vae_cfg, sd["te1"], sd["te2"])


def file_metadata(unet_cfg, vae_cfg, te1_cfg, te2_cfg):
    meta = {"format": "pt"}
    meta.update(C.checkpoint_metadata(unet_cfg, vae_cfg, te1_cfg, te2_cfg))
    return meta


# ---- diffusers config folder ------------------------------------------------

MODEL_INDEX = {
    "_class_name": "StableDiffusionXLPipeline",
    "force_zeros_for_empty_prompt": True,
    "feature_extractor": [None, None],
    "image_encoder": [None, None],
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


def write_diffusers_configs(folder, models):
    """model_index + per-component config.json + tokenizer configs (no weights, no vocab)."""
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    clip_vocab.write_json(os.path.join(folder, "model_index.json"), MODEL_INDEX)
    models["unet"].save_config(os.path.join(folder, "unet"))
    models["vae"].save_config(os.path.join(folder, "vae"))
    models["te1"].config.save_pretrained(os.path.join(folder, "text_encoder"))
    models["te2"].config.save_pretrained(os.path.join(folder, "text_encoder_2"))
    os.makedirs(os.path.join(folder, "scheduler"))
    clip_vocab.write_json(os.path.join(folder, "scheduler", "scheduler_config.json"),
                          dict(C.SCHEDULER, _class_name="EulerDiscreteScheduler"))
    clip_vocab.write_tokenizer_configs(os.path.join(folder, "tokenizer"), clip_vocab.EOS)
    clip_vocab.write_tokenizer_configs(os.path.join(folder, "tokenizer_2"), "!")  # SDXL tokenizer_2 pads with "!" = id 0


# ---- hyper-parameters for the C loader ---------------------------------------

def loader_config(unet_cfg, vae_cfg, te1_cfg, te2_cfg, ckpt_name, sgm_state):
    """What the C recognition code must read from the checkpoint (shapes + metadata)."""
    ch = list(unet_cfg["block_out_channels"])
    attn = [t.startswith("CrossAttn") for t in unet_cfg["down_block_types"]]
    depth = [d if a else 0 for d, a in zip(unet_cfg["transformer_layers_per_block"], attn)]
    head_width = C.metadata_values(unet_cfg, vae_cfg, te1_cfg, te2_cfg)
    te2_w = te2_cfg["hidden_size"]

    def te(cfg, key, pad_id):
        return {
            "width": cfg["hidden_size"], "layers": cfg["num_hidden_layers"],
            "heads": cfg["num_attention_heads"], "head_width": head_width[key],
            "intermediate": cfg["intermediate_size"], "vocab": cfg["vocab_size"],
            "positions": cfg["max_position_embeddings"], "act": cfg["hidden_act"],
            "layer_norm_eps": cfg["layer_norm_eps"], "pad_id": pad_id,
        }

    parts = {"unet": sgm_layout.UNET_PREFIX, "vae": sgm_layout.VAE_PREFIX,
             "te1": sgm_layout.TE1_PREFIX, "te2": sgm_layout.TE2_PREFIX}
    params = {p: sum(t.numel() for k, t in sgm_state.items() if k.startswith(pre)) for p, pre in parts.items()}
    return {
        "checkpoint": ckpt_name,
        "metadata": C.checkpoint_metadata(unet_cfg, vae_cfg, te1_cfg, te2_cfg),
        "metadata_defaults": {k: str(v) for k, v in C.METADATA_DEFAULTS.items()},
        "unet": {
            "in_channels": unet_cfg["in_channels"], "out_channels": unet_cfg["out_channels"],
            "model_channels": ch[0], "channel_mult": [c // ch[0] for c in ch], "block_out_channels": ch,
            "num_levels": len(ch), "layers_per_block": unet_cfg["layers_per_block"],
            "attention_levels": attn, "transformer_depth": depth,
            "transformer_depth_mid": unet_cfg["transformer_layers_per_block"][-1],
            "head_width": head_width["sdxl.unet.head_width"],
            "heads": [c // head_width["sdxl.unet.head_width"] if a else 0 for c, a in zip(ch, attn)],
            "norm_groups": unet_cfg["norm_num_groups"],
            "context_dim": unet_cfg["cross_attention_dim"],
            "pooled_dim": te2_cfg["projection_dim"],
            "adm_in_channels": unet_cfg["projection_class_embeddings_input_dim"],
            "time_id_width": unet_cfg["addition_time_embed_dim"], "num_time_ids": 6,
            "timestep_width": ch[0], "time_embed_dim": 4 * ch[0],
            "geglu_inner": [4 * c if a else 0 for c, a in zip(ch, attn)],
        },
        "vae": {
            "block_out_channels": list(vae_cfg["block_out_channels"]),
            "num_levels": len(vae_cfg["block_out_channels"]),
            "downsamplings": len(vae_cfg["block_out_channels"]) - 1,
            "layers_per_block": vae_cfg["layers_per_block"],
            "decoder_resnets_per_level": vae_cfg["layers_per_block"] + 1,
            "latent_channels": vae_cfg["latent_channels"], "norm_groups": vae_cfg["norm_num_groups"],
            "mid_attention_heads": 1, "scaling_factor": vae_cfg["scaling_factor"],
        },
        "te1": te(te1_cfg, "sdxl.te1.head_width", 49407),
        "te2": dict(te(te2_cfg, "sdxl.te2.head_width", 0), projection_dim=te2_cfg["projection_dim"]),
        "context_dim": te1_cfg["hidden_size"] + te2_w,
        "params": params,
        "params_total": sum(params.values()),
        "dtype": "F16",
    }


# ---- layout proofs ------------------------------------------------------------

def check_pipeline_roundtrip(models, ckpt, configs_dir):
    """from_single_file(ckpt) must give back every tensor of every model exactly."""
    pipe = harness.load_pipeline(ckpt, configs_dir)
    loaded = dict(unet=pipe.unet, vae=pipe.vae, te1=pipe.text_encoder, te2=pipe.text_encoder_2)
    count = 0
    for part, model in models.items():
        want, got = model.state_dict(), loaded[part].state_dict()
        if set(want) != set(got):
            raise SystemExit(f"layout: {part} keys differ: missing {set(want) - set(got)}, extra {set(got) - set(want)}")
        for k, t in want.items():
            g = got[k]
            if g.device.type == "meta" or g.shape != t.shape or not torch.equal(g.float(), t.float()):
                raise SystemExit(f"layout: {part}.{k} differs after from_single_file")
            count += 1
    print(f"from_single_file round trip: {count} tensors equal exactly")


def check_layout_with_diffusers_converters(sgm_shapes, models, unet_cfg, vae_cfg):
    """Run diffusers' own SGM->diffusers converters on meta tensors with the file's
    names and shapes; the result must match each model's names and shapes."""
    from diffusers.loaders import single_file_utils as sfu

    ckpt = {k: torch.empty(s, dtype=torch.float16, device="meta") for k, s in sgm_shapes.items()}
    converted = dict(
        unet=sfu.convert_ldm_unet_checkpoint(ckpt, unet_cfg),
        vae=sfu.convert_ldm_vae_checkpoint(ckpt, vae_cfg),
        te1={k.removeprefix("text_model."): v for k, v in sfu.convert_ldm_clip_checkpoint(ckpt).items()},
        te2=sfu.convert_open_clip_checkpoint(models["te2"], ckpt, prefix=sgm_layout.TE2_PREFIX),
    )
    for part, model in models.items():
        want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in converted[part].items()}
        if want != got:
            diff = sorted(set(want.items()) ^ set(got.items()))[:10]
            raise SystemExit(f"layout: diffusers' converter disagrees for {part}: {diff}")
    print(f"diffusers converters accept the layout: {len(sgm_shapes)} tensors, names and shapes match")


# ---- small model ----------------------------------------------------------------

def make_small():
    cfgs = (C.SMALL_UNET, C.SMALL_VAE, C.SMALL_TE1, C.SMALL_TE2)
    models = {k: randomize(m.eval()) for k, m in build_models(*cfgs).items()}
    sgm = {k: v.to(torch.float16).contiguous() for k, v in to_sgm(models, C.SMALL_UNET, C.SMALL_VAE).items()}
    os.makedirs(harness.SMALL_DIR, exist_ok=True)
    st_stream.save(harness.SMALL_CKPT, sgm, file_metadata(*cfgs))
    write_diffusers_configs(harness.SMALL_DIFFUSERS_DIR, models)
    cfg = loader_config(*cfgs, os.path.basename(harness.SMALL_CKPT), sgm)
    cfg["file_bytes"] = os.path.getsize(harness.SMALL_CKPT)
    clip_vocab.write_json(os.path.join(harness.SMALL_DIR, "config.json"), cfg)
    print(f"wrote {harness.rel(harness.SMALL_CKPT)}: {cfg['file_bytes']} bytes, "
          f"{cfg['params_total']} params {cfg['params']}, metadata {cfg['metadata']}")
    check_layout_with_diffusers_converters({k: v.shape for k, v in sgm.items()}, models, C.SMALL_UNET, C.SMALL_VAE)
    check_pipeline_roundtrip(models, harness.SMALL_CKPT, harness.SMALL_DIFFUSERS_DIR)


# ---- full-size model --------------------------------------------------------------

def plan_full():
    """SGM names and shapes of the full SDXL base checkpoint, from meta-device models."""
    cfgs = (C.FULL_UNET, C.FULL_VAE, C.FULL_TE1, C.FULL_TE2)
    with torch.device("meta"):
        models = build_models(*cfgs)
    shapes = {k: tuple(v.shape) for k, v in to_sgm(models, C.FULL_UNET, C.FULL_VAE).items()}
    return models, shapes, cfgs


def make_full(path):
    t0 = time.time()
    models, shapes, cfgs = plan_full()
    check_layout_with_diffusers_converters(shapes, models, C.FULL_UNET, C.FULL_VAE)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    names = sorted(shapes)
    st_stream.write(path, [(n, "F16", shapes[n]) for n in names],
                    (random_weight(n, shapes[n]) for n in names), file_metadata(*cfgs))
    seconds = time.time() - t0
    verify_full(path, shapes)
    cfg = loader_config(*cfgs, os.path.basename(path), {k: torch.empty(s, device="meta") for k, s in shapes.items()})
    cfg["file_bytes"] = os.path.getsize(path)
    clip_vocab.write_json(os.path.splitext(path)[0] + ".json", cfg)
    print(f"wrote {path}: {cfg['file_bytes']} bytes, {cfg['params_total']} params, {seconds:.1f} s")


def verify_full(path, shapes):
    """Header names/shapes as planned; a few tensors regenerate bit-identically."""
    with safe_open(path, "pt") as f:
        got = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        if got != shapes:
            raise SystemExit("full: header does not match the plan")
        for name in (sorted(shapes)[0], sgm_layout.TE2_PREFIX + "text_projection",
                     sgm_layout.UNET_PREFIX + "out.2.weight", sorted(shapes)[-1]):
            if not torch.equal(f.get_tensor(name), random_weight(name, shapes[name])):
                raise SystemExit(f"full: {name} does not read back")
    print(f"full checkpoint reads back: {len(shapes)} tensors")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", nargs="?", const=DEFAULT_FULL, metavar="PATH",
                    help="write the full-size random SDXL checkpoint instead (default %(const)s)")
    args = ap.parse_args()
    torch.manual_seed(SEED)  # module construction draws random numbers; make even those fixed
    if args.full:
        make_full(args.full)
    else:
        make_small()


if __name__ == "__main__":
    sys.exit(main())

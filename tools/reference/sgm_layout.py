"""diffusers/transformers state dicts -> one SGM (Civitai) single-file SDXL state dict.

Owns the tensor-name layout of single-file SDXL checkpoints as Civitai ships
them (Stability's SGM code base):
  model.diffusion_model.*                          UNet, LDM names
  conditioner.embedders.0.transformer.text_model.* CLIP-L, transformers names
  conditioner.embedders.1.model.*                  OpenCLIP bigG, open_clip names
  first_stage_model.*                              VAE, LDM names

Every function here is the inverse of a conversion in diffusers
0.42.1 `loaders/single_file_utils.py` (read, not copied):
  unet_to_sgm      <- convert_ldm_unet_checkpoint (+ DIFFUSERS_TO_LDM_MAPPING["unet"])
  vae_to_sgm       <- convert_ldm_vae_checkpoint, update_vae_*_ldm_to_diffusers,
                      conv_attn_to_linear
  clip_l_to_sgm    <- convert_ldm_clip_checkpoint (prefix strip only)
  open_clip_to_sgm <- convert_open_clip_checkpoint (+ DIFFUSERS_TO_LDM_MAPPING["openclip"])
The functions only rename, reshape, concatenate and transpose, so they work on
meta tensors too (make_small_model.py --full uses that to plan a 6.9 GB file).
"""

import math

import torch

UNET_PREFIX = "model.diffusion_model."
TE1_PREFIX = "conditioner.embedders.0.transformer.text_model."
TE2_PREFIX = "conditioner.embedders.1.model."
VAE_PREFIX = "first_stage_model."

# open_clip's CLIP keeps logit_scale = ln(100) after training; SGM files carry
# it (ignored by every SDXL loader), so the test model carries it too.
LOGIT_SCALE = math.log(100.0)


def _rename(name, pairs):
    for old, new in pairs:
        name = name.replace(old, new)
    return name


# ---- UNet -----------------------------------------------------------------

_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}

# ResnetBlock2D: diffusers sub-module -> openaimodel ResBlock sub-module
_UNET_RESNET = [
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
]


def _unet_key(key, layers_per_block, up_has_attention):
    """SGM name of one diffusers UNet key (the name without the prefix)."""
    parts = key.split(".")
    slots = layers_per_block + 1  # resnets (+attentions) and one down/upsampler per level
    module, param = ".".join(parts[:-1]), parts[-1]
    if module in _UNET_TOP:
        return f"{_UNET_TOP[module]}.{param}"
    if parts[0] == "down_blocks":
        level, kind = int(parts[1]), parts[2]
        rest = ".".join(parts[4:])
        if kind == "downsamplers":  # input_blocks.N.0.op after the level's resnets
            return f"input_blocks.{1 + level * slots + layers_per_block}.0.op.{'.'.join(parts[5:])}"
        n = 1 + level * slots + int(parts[3])
        if kind == "resnets":
            return f"input_blocks.{n}.0." + _rename(rest, _UNET_RESNET)
        return f"input_blocks.{n}.1.{rest}"  # attentions: identical inner names
    if parts[0] == "mid_block":
        rest = ".".join(parts[3:])
        if parts[1] == "resnets":
            return f"middle_block.{2 * int(parts[2])}." + _rename(rest, _UNET_RESNET)
        return f"middle_block.1.{rest}"
    if parts[0] == "up_blocks":
        level, kind = int(parts[1]), parts[2]
        if kind == "upsamplers":  # after the last resnet (and its attention, if any)
            n = level * slots + layers_per_block
            sub = 2 if up_has_attention[level] else 1
            return f"output_blocks.{n}.{sub}.conv.{'.'.join(parts[5:])}"
        n = level * slots + int(parts[3])
        rest = ".".join(parts[4:])
        if kind == "resnets":
            return f"output_blocks.{n}.0." + _rename(rest, _UNET_RESNET)
        return f"output_blocks.{n}.1.{rest}"
    raise ValueError(f"unet_to_sgm: unexpected diffusers key {key}")


def unet_to_sgm(state, config):
    up_has_attention = [t.startswith("CrossAttn") for t in config["up_block_types"]]
    return {
        UNET_PREFIX + _unet_key(k, config["layers_per_block"], up_has_attention): v
        for k, v in state.items()
    }


# ---- VAE ------------------------------------------------------------------

_VAE_ATTENTION = [
    ("group_norm", "norm"),
    ("to_q", "q"),
    ("to_k", "k"),
    ("to_v", "v"),
    ("to_out.0", "proj_out"),
]


def _vae_key(key, num_levels):
    parts = key.split(".")
    coder, block = parts[0], parts[1]
    if block in ("conv_in", "conv_out", "conv_norm_out"):
        return f"{coder}.{block.replace('conv_norm_out', 'norm_out')}.{parts[2]}"
    if coder in ("quant_conv", "post_quant_conv"):
        return key
    if block == "mid_block":
        rest = ".".join(parts[4:])
        if parts[2] == "resnets":
            return f"{coder}.mid.block_{int(parts[3]) + 1}.{rest.replace('conv_shortcut', 'nin_shortcut')}"
        return f"{coder}.mid.attn_1.{_rename(rest, _VAE_ATTENTION)}"
    level = int(parts[2])
    if block == "down_blocks":
        if parts[3] == "downsamplers":
            return f"encoder.down.{level}.downsample.conv.{parts[6]}"
        rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
        return f"encoder.down.{level}.block.{parts[4]}.{rest}"
    if block == "up_blocks":  # the LDM decoder counts its levels from the bottom
        ldm_level = num_levels - 1 - level
        if parts[3] == "upsamplers":
            return f"decoder.up.{ldm_level}.upsample.conv.{parts[6]}"
        rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
        return f"decoder.up.{ldm_level}.block.{parts[4]}.{rest}"
    raise ValueError(f"vae_to_sgm: unexpected diffusers key {key}")


def vae_to_sgm(state, config):
    num_levels = len(config["block_out_channels"])
    out = {}
    for k, v in state.items():
        name = _vae_key(k, num_levels)
        # the LDM mid-block attention uses 1x1 convolutions: [C, C] -> [C, C, 1, 1]
        if ".mid.attn_1." in name and name.endswith("weight") and v.dim() == 2:
            v = v.reshape(v.shape[0], v.shape[1], 1, 1)
        out[VAE_PREFIX + name] = v
    return out


# ---- text encoders --------------------------------------------------------

def clip_l_to_sgm(state):
    """CLIPTextModel (flat, transformers >= 5.6) keys -> SGM FrozenCLIPEmbedder keys."""
    return {TE1_PREFIX + k.removeprefix("text_model."): v for k, v in state.items()}


_OPEN_CLIP_LAYER = [
    ("layer_norm1", "ln_1"),
    ("layer_norm2", "ln_2"),
    ("mlp.fc1", "mlp.c_fc"),
    ("mlp.fc2", "mlp.c_proj"),
    ("self_attn.out_proj", "attn.out_proj"),
]


def open_clip_to_sgm(state):
    """CLIPTextModelWithProjection keys -> SGM FrozenOpenCLIPEmbedder2 (open_clip) keys.

    q/k/v projections are fused row-wise into attn.in_proj_weight [3W, W] and
    in_proj_bias [3W] (order q|k|v); text_projection is stored the open_clip
    way, P = W_linear^T, so that pooled = x @ P.
    """
    out = {}
    fused = {}
    for k, v in state.items():
        if k == "text_projection.weight":
            out["text_projection"] = v.t().contiguous()
            continue
        k = k.removeprefix("text_model.")
        if k == "embeddings.token_embedding.weight":
            out["token_embedding.weight"] = v
        elif k == "embeddings.position_embedding.weight":
            out["positional_embedding"] = v
        elif k.startswith("final_layer_norm."):
            out["ln_final." + k.split(".")[-1]] = v
        elif k.startswith("encoder.layers."):
            parts = k.split(".")
            layer, rest = parts[2], ".".join(parts[3:])
            base = f"transformer.resblocks.{layer}."
            if rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                qkv, kind = rest.split(".")[1][0], rest.split(".")[2]  # 'q'|'k'|'v', 'weight'|'bias'
                fused.setdefault(base + "attn.in_proj_" + kind, {})[qkv] = v
            else:
                out[base + _rename(rest, _OPEN_CLIP_LAYER)] = v
        else:
            raise ValueError(f"open_clip_to_sgm: unexpected key {k}")
    for name, qkv in fused.items():
        out[name] = torch.cat([qkv["q"], qkv["k"], qkv["v"]], dim=0)
    out["logit_scale"] = torch.tensor(LOGIT_SCALE, dtype=torch.float32)
    return {TE2_PREFIX + k: v for k, v in out.items()}


def sdxl_to_sgm(unet_state, unet_config, vae_state, vae_config, te1_state, te2_state):
    """The four diffusers state dicts as one SGM single-file state dict."""
    out = {}
    out.update(unet_to_sgm(unet_state, unet_config))
    out.update(clip_l_to_sgm(te1_state))
    out.update(open_clip_to_sgm(te2_state))
    out.update(vae_to_sgm(vae_state, vae_config))
    return out

"""LoRA goldens for tests/test_lora*.c: small random LoRA files for the small
model in every format the C stack reads, and what they must do to it.

Writes tests/data/small/loras/*.safetensors (the LoRA files) and
tests/data/small/goldens_lora.{safetensors,json}:

1. "stack": three LoRAs through diffusers, the way the Python worker applied
   them: pipe.load_lora_weights(file, adapter_name=...) for each,
   pipe.set_adapters([a, b, c], adapter_weights=[1.5, 0.3, -1.0]),
   pipe.fuse_lora(), then txt2img cases as make_pipeline_goldens.py runs them
   (fp32, CPU, one thread, generator manual_seed, no watermark).
     kohya_full      kohya LoRA with .alpha (alpha != rank, two ranks), te1 +
                     te2 (q/k/v into bigG's fused in_proj) + UNet linear layers
                     + LoCon convolutions (3x3 down / 1x1 up, 1x1 shortcut,
                     down/upsamplers, conv_in/conv_out) + time/label MLPs
     kohya_noalpha   kohya LoRA without .alpha (scale 1), UNet only, in the
                     diffusers block spelling (OneTrainer writes it)
     peft            diffusers/PEFT: unet./text_encoder./text_encoder_2.
                     lora_A/lora_B, r/lora_alpha/rank_pattern/alpha_pattern in
                     the lora_adapter_metadata the diffusers training scripts
                     write
   Stored: the images (uint8 HWC, rounded as the pipeline's PIL path) and the
   fused weights of every touched tensor, read back from the pipeline and
   renamed to the checkpoint's SGM names (sgm_layout.py), as fp32
   "stack.<name>". Before anything is written, the fused weights are checked
   against an independent computation of W + sum_i w_i * scale_i * up_i @ down_i
   on the SGM names (below), so the mapping of every key is diffusers'.

2. "lyco": merged weights W + sum_i m_i * dW_i for LyCORIS formats diffusers
   cannot load, with dW computed here from the LyCORIS formulas:
     loha            lycoris/modules/loha.py (HadaWeight, HadaWeightTucker):
                     dW = (w1a @ w1b) * (w2a @ w2b), Tucker:
                     einsum("ijkl,jr,ip->prkl", t, b, a) per factor;
                     scale alpha / w1b.shape[0]
     lokr            lycoris/modules/lokr.py (make_kron, rebuild_tucker):
                     dW = kron(w1, w2), w1 = w1_a @ w1_b or lokr_w1, w2 =
                     w2_a @ w2_b, Tucker einsum("ijkl,ip,jr->prkl", t2, w2_a,
                     w2_b) or lokr_w2; scale alpha / rank of the factored part,
                     1 when both factors are full matrices
     full            lycoris/modules/full.py: .diff added as is, .diff_b to
                     the bias
     locon_tucker    lycoris/modules/locon.py with use_tucker (lora_mid):
                     einsum("mnkl,im,nj->ijkl", mid, up, down)
     dora            LoRA + dora_scale (LyCORIS weight decomposition,
                     lycoris/functional/general.py apply_dora_scale and the
                     wd_on_out variant): W' = m * (W + s*dW) / ||W + s*dW||,
                     the norm per input column ([1, in] scale) or per output row
                     ([out, 1] scale); the file's delta is W' - W, times the
                     multiplier (docs/loras.md: relative to the pristine W)
   a "scale" tensor in one module overrides alpha/rank (A1111 network.py
   calc_scale). Stored as fp32 "lyco.<name>".

3. "saved": a PEFT adapter added to a pipeline (LoraConfig with target
   modules in the UNet and both text encoders, alpha != rank, a rank and an
   alpha pattern; random, as training leaves it) written by diffusers'
   StableDiffusionXLPipeline.save_lora_weights in the two layouts its
   training scripts produce, each with the lora_adapter_metadata that
   training_utils._collate_lora_metadata gives:
     peft_saved      get_peft_model_state_dict as is: unet.* / text_encoder.* /
                     text_encoder_2.* with lora_A/lora_B; under transformers 5
                     CLIP-L's keys have no "text_model." (text_encoder.encoder.
                     layers...), bigG's keep it
     dreambooth      convert_state_dict_to_diffusers of the same state dicts, as
                     train_dreambooth_lora_sdxl.py saves them: .lora.down/.lora.up
                     in the UNet, .lora_linear_layer.down/.up in the text encoders
   Each file is loaded on its own into a fresh pipeline
   (load_lora_weights, set_adapters at SAVED_MULTIPLIER, fuse_lora); both
   must give the same fused weights, which are checked against the direct
   computation and stored as fp32 "saved.<name>". The metadata of the saved
   files is put in sorted order afterwards (harness.sort_safetensors_metadata),
   so that regeneration stays byte-for-byte reproducible.

4. "diffusers_loadable": every LoRA file of tests/data/small/loras/ that
   diffusers' load_lora_weights accepts (the others raise), so that the C
   tests run each layout diffusers reads through checkpoint recognition.

Also writes fuzz/corpus/lora/ (the seeds of fuzz/fuzz_lora.c): the files
above plus small odd ones (other spellings and dtypes, a diff_b alone, a
module of only an alpha, shapes of another model, an SD 1.5 LoRA, a
truncated file).

Weights of the small checkpoint are fp16, so the fp32 goldens are exact sums
over the stored values; the C test merges onto an fp32 copy of the
checkpoint to compare to 1e-5, and onto the fp16 file to compare rounding.

Run: tools/reference/.venv/bin/python tools/reference/make_lora_goldens.py
"""
import json
import os

import numpy as np
import torch
from safetensors.numpy import save_file
from safetensors.torch import load_file
from safetensors.torch import save_file as save_torch

import diffusers
import harness
import sgm_layout
from make_pipeline_goldens import NEGATIVE, PROMPT, Store, generate

LORA_DIR = os.path.join(harness.SMALL_DIR, "loras")
FUZZ_DIR = os.path.join(harness.REPO, "fuzz", "corpus", "lora")
OUT_ST = os.path.join(harness.SMALL_DIR, "goldens_lora.safetensors")
OUT_JSON = os.path.join(harness.SMALL_DIR, "goldens_lora.json")

STACK = [("kohya_full", 1.5), ("kohya_noalpha", 0.3), ("peft", -1.0)]
LYCO = [("loha", 0.8), ("lokr", -1.3), ("full", 0.6), ("locon_tucker", 1.1), ("dora", 0.7)]

# (sampler, (width, height), steps, cfg, seed, negative)
IMAGE_CASES = [
    ("Euler", (64, 64), 4, 6.0, 42, NEGATIVE),
    ("DPM++ 2M Karras", (128, 96), 6, 6.0, 7, None),
]

U, T1, T2 = sgm_layout.UNET_PREFIX, sgm_layout.TE1_PREFIX, sgm_layout.TE2_PREFIX


# ---- the model's layers, with their checkpoint (SGM) names ------------------------------

class Layer:
    """One Linear/Conv2d of the pipeline: its names in every spelling and the
    rows of the checkpoint tensor it is (bigG q/k/v are row blocks of in_proj)."""

    def __init__(self, net, diffusers_name, weight, bias, row0, rows):
        self.net, self.diffusers, self.weight, self.bias = net, diffusers_name, weight, bias
        self.row0, self.rows = row0, rows

    def kohya(self, spelling="sgm"):
        if self.net == "unet":
            name = self.sgm_module if spelling == "sgm" else self.diffusers
            return "lora_unet_" + name.replace(".", "_")
        return f"lora_{self.net}_text_model_" + self.diffusers.replace(".", "_")

    def peft(self):
        prefix = {"unet": "unet.", "te1": "text_encoder.text_model.", "te2": "text_encoder_2.text_model."}
        return prefix[self.net] + self.diffusers


def unet_layers(pipe):
    config = pipe.unet.config
    up_attn = [t.startswith("CrossAttn") for t in config["up_block_types"]]
    out = {}
    for name, m in pipe.unet.named_modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            sgm = U + sgm_layout._unet_key(name + ".weight", config["layers_per_block"], up_attn)
            layer = Layer("unet", name, sgm, sgm[:-len("weight")] + "bias" if m.bias is not None else None,
                          0, m.weight.shape[0])
            layer.sgm_module = sgm[len(U):-len(".weight")]
            out[name] = layer
    return out


def te_layers(pipe, net):
    """encoder.layers.N.{self_attn.q/k/v/out_proj, mlp.fc1/fc2} of CLIP-L (te1) or bigG (te2)."""
    model = pipe.text_encoder if net == "te1" else pipe.text_encoder_2
    width = model.config.hidden_size
    out = {}
    for i in range(model.config.num_hidden_layers):
        for kind in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                     "mlp.fc1", "mlp.fc2"):
            name = f"encoder.layers.{i}.{kind}"
            rows = model.config.intermediate_size if kind == "mlp.fc1" else width
            if net == "te1":
                w = f"{T1}{name}.weight"
                out[name] = Layer(net, name, w, w[:-len("weight")] + "bias", 0, rows)
                continue
            base = f"{T2}transformer.resblocks.{i}."
            if kind[-6:] in ("q_proj", "k_proj", "v_proj"):
                row0 = "qkv".index(kind[-6]) * width
                out[name] = Layer(net, name, base + "attn.in_proj_weight", base + "attn.in_proj_bias", row0, width)
            else:
                sgm = {"self_attn.out_proj": "attn.out_proj", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}[kind]
                out[name] = Layer(net, name, base + sgm + ".weight", base + sgm + ".bias", 0, rows)
    return out


# ---- random LoRA tensors ---------------------------------------------------------------------

class Rand:
    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)

    def normal(self, *shape, std=1.0, dtype=torch.float16):
        """N(0, std^2), rounded to the file's dtype (the file holds exactly these values)."""
        return (torch.randn(*shape, generator=self.g) * std).to(dtype)


def lora_factors(rnd, shape, rank, conv_down_kernel=True, gain=0.35, dtype=torch.float16):
    """up [out, r(,1,1)], down [r, in(,kh,kw)] with up @ down about gain x the layer's weights."""
    out_dim, in_dim = shape[0], shape[1]
    kernel = tuple(shape[2:]) if conv_down_kernel else ()
    fan_in = in_dim * int(np.prod(kernel)) if kernel else in_dim
    down = rnd.normal(rank, in_dim, *kernel, std=1.0 / np.sqrt(fan_in), dtype=dtype)
    up = rnd.normal(out_dim, rank, *((1, 1) if len(shape) == 4 else ()), std=gain / np.sqrt(rank), dtype=dtype)
    return up, down


def layer_shape(ckpt, layer):
    w = ckpt[layer.weight]
    return (layer.rows,) + tuple(w.shape[1:])


# ---- the LoRA files ---------------------------------------------------------------------------

class LoraFile:
    """A LoRA being built: its tensors, metadata, and per target layer the
    exact delta it adds at multiplier 1 (computed here, independently)."""

    def __init__(self, name):
        self.name, self.tensors, self.metadata = name, {}, {}
        self.deltas = []  # (layer, "weight"|"bias", dW fp32 at multiplier 1)

    def add_delta(self, layer, part, delta):
        self.deltas.append((layer, part, delta.float()))

    def save(self):
        os.makedirs(LORA_DIR, exist_ok=True)
        path = os.path.join(LORA_DIR, self.name + ".safetensors")
        save_torch({k: v.contiguous() for k, v in self.tensors.items()}, path, metadata=self.metadata or None)
        return path


def lora_delta(up, down, scale):
    """scale * up @ down, reshaped to the layer (kohya/LoCon and PEFT math)."""
    u = up.float().reshape(up.shape[0], -1)
    d = down.float().reshape(down.shape[0], -1)
    return (scale * (u @ d)).reshape(up.shape[0], *down.shape[1:])


def add_kohya(f, rnd, layer, ckpt, rank, alpha=None, spelling="sgm"):
    shape = layer_shape(ckpt, layer)
    up, down = lora_factors(rnd, shape, rank)
    key = layer.kohya(spelling)
    f.tensors[key + ".lora_down.weight"] = down
    f.tensors[key + ".lora_up.weight"] = up
    if alpha is not None:
        f.tensors[key + ".alpha"] = torch.tensor(float(alpha), dtype=torch.float16)
    f.add_delta(layer, "weight", lora_delta(up, down, (alpha if alpha is not None else rank) / rank))


def pick(layers, *names):
    return [layers[n] for n in names]


def make_kohya_full(ck, L):
    f, rnd = LoraFile("kohya_full"), Rand(101)
    te1 = pick(L["te1"], "encoder.layers.0.self_attn.q_proj", "encoder.layers.1.self_attn.v_proj",
               "encoder.layers.2.self_attn.out_proj", "encoder.layers.1.mlp.fc1", "encoder.layers.2.mlp.fc2")
    te2 = pick(L["te2"], "encoder.layers.0.self_attn.q_proj", "encoder.layers.0.self_attn.k_proj",
               "encoder.layers.0.self_attn.v_proj", "encoder.layers.3.self_attn.out_proj",
               "encoder.layers.1.mlp.fc1", "encoder.layers.2.mlp.fc2")
    unet = pick(L["unet"],
                "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
                "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k",
                "down_blocks.2.attentions.1.transformer_blocks.1.attn1.to_out.0",
                "mid_block.attentions.0.transformer_blocks.1.attn2.to_v",
                "up_blocks.0.attentions.2.transformer_blocks.0.ff.net.0.proj",
                "up_blocks.1.attentions.1.transformer_blocks.1.ff.net.2",
                "up_blocks.1.attentions.0.proj_in", "down_blocks.2.attentions.0.proj_out",
                "down_blocks.1.resnets.0.time_emb_proj", "time_embedding.linear_1", "add_embedding.linear_2")
    conv = pick(L["unet"], "down_blocks.0.resnets.1.conv1", "up_blocks.0.resnets.2.conv2",
                "up_blocks.1.resnets.0.conv_shortcut", "down_blocks.1.downsamplers.0.conv",
                "up_blocks.0.upsamplers.0.conv", "mid_block.resnets.1.conv1", "conv_in", "conv_out")
    # Ranks 2 and 4. One alpha (2) for the text encoders and the UNet's
    # attention/projection layers, other alphas for the rest: diffusers 0.42.1
    # names the alphas of attention and text-encoder layers so that its
    # alpha_pattern never matches them (_get_alpha_name splits on ".lora.",
    # which their converted names lack), and applies the file's most common
    # alpha there instead; kohya, A1111 and ComfyUI use each module's own.
    for i, layer in enumerate(te1 + te2 + unet + conv):
        rank = 4 if i % 3 else 2
        own_alpha = layer.net == "unet" and not any(s in layer.diffusers for s in (".attn", "proj_in", "proj_out"))
        add_kohya(f, rnd, layer, ck, rank, alpha=[2.0, 8.0, 1.0][i % 3] if own_alpha else 2.0)
    return f


def make_kohya_noalpha(ck, L):
    """UNet only, in the diffusers block spelling OneTrainer writes
    (lora_unet_down_blocks_1_attentions_0_...). diffusers 0.42.1 cannot load
    kohya text-encoder keys without .alpha ("Could not automatically infer
    state dict type"), and drops every SGM-spelled key of a file that mixes
    both spellings (_maybe_map_sgm_blocks_to_diffusers), so this file keeps to
    what it reads; the C tests cover those cases on their own."""
    f, rnd = LoraFile("kohya_noalpha"), Rand(202)
    for name in ("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
                 "up_blocks.0.attentions.0.transformer_blocks.1.attn1.to_k",
                 "mid_block.attentions.0.transformer_blocks.0.ff.net.2",
                 "up_blocks.1.attentions.2.proj_out",
                 "down_blocks.2.resnets.0.conv2",
                 "up_blocks.2.resnets.1.conv_shortcut"):
        add_kohya(f, rnd, L["unet"][name], ck, 3, spelling="diffusers")
    return f


def make_peft(ck, L):
    """diffusers' format, as train_dreambooth_lora_sdxl.py saves it: PEFT
    state dict names plus the LoraConfig of each component in metadata."""
    f, rnd = LoraFile("peft"), Rand(303)
    components = {
        "unet": ("unet", ["down_blocks.1.attentions.1.transformer_blocks.0.attn1.to_k",
                          "down_blocks.1.attentions.1.transformer_blocks.0.attn1.to_v",
                          "down_blocks.2.attentions.0.transformer_blocks.1.attn2.to_q",
                          "up_blocks.0.attentions.1.transformer_blocks.1.attn1.to_out.0",
                          "mid_block.attentions.0.transformer_blocks.0.attn1.to_q",
                          "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj"],
                 dict(r=4, lora_alpha=8, rank_pattern={"to_v": 2}, alpha_pattern={"to_out.0": 2})),
        "text_encoder": ("te1", ["encoder.layers.1.self_attn.q_proj", "encoder.layers.0.mlp.fc2"],
                         dict(r=4, lora_alpha=4)),
        "text_encoder_2": ("te2", ["encoder.layers.1.self_attn.k_proj", "encoder.layers.3.self_attn.q_proj",
                                   "encoder.layers.2.mlp.fc1"],
                           dict(r=2, lora_alpha=1)),
    }
    from peft import LoraConfig
    meta = {}
    for component, (net, names, cfg) in components.items():
        # as the training scripts write it: short module names (every match gets
        # an adapter; those without weights in the file stay zero: B = 0)
        targets = sorted({"to_out.0" if n.endswith("to_out.0") else "ff.net.0.proj" if n.endswith("ff.net.0.proj")
                          else n.rsplit(".", 1)[-1] for n in names})
        config = LoraConfig(target_modules=targets, **cfg).to_dict()
        for k, v in config.items():
            meta[f"{component}.{k}"] = sorted(v) if isinstance(v, set) else v
        for name in names:
            layer = L[net][name]
            rank = next((r for p, r in cfg.get("rank_pattern", {}).items() if name.endswith(p)), cfg["r"])
            alpha = next((a for p, a in cfg.get("alpha_pattern", {}).items() if name.endswith(p)), cfg["lora_alpha"])
            up, down = lora_factors(rnd, layer_shape(ck, layer), rank, dtype=torch.float32)
            f.tensors[layer.peft() + ".lora_A.weight"] = down
            f.tensors[layer.peft() + ".lora_B.weight"] = up
            f.add_delta(layer, "weight", lora_delta(up, down, alpha / rank))
    # one metadata key only: safetensors writes __metadata__ in hash order
    f.metadata = {"lora_adapter_metadata": json.dumps(meta, indent=2, sort_keys=True, default=str)}
    return f


# ---- LyCORIS ------------------------------------------------------------------------------------

def tucker(t, a, b):
    """rebuild_tucker (lycoris/functional/general.py): einsum("ijkl,ip,jr->prkl", t, a, b)."""
    return torch.einsum("i j k l, i p, j r -> p r k l", t.float(), a.float(), b.float())


def make_loha(ck, L):
    f, rnd = LoraFile("loha"), Rand(404)
    specs = [  # layer, rank, alpha, tucker
        (L["te1"]["encoder.layers.0.self_attn.q_proj"], 4, 2.0, False),
        (L["te2"]["encoder.layers.1.self_attn.k_proj"], 4, 4.0, False),
        (L["unet"]["down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"], 3, 1.5, False),
        (L["unet"]["up_blocks.1.resnets.1.conv1"], 4, 2.0, False),
        (L["unet"]["mid_block.resnets.0.conv2"], 3, 3.0, True),
    ]
    for i, (layer, rank, alpha, use_tucker) in enumerate(specs):
        shape = layer_shape(ck, layer)
        out_dim, in_dim, k = shape[0], shape[1], tuple(shape[2:])
        key = layer.kohya()
        s = 0.6 / np.sqrt(rank)
        if use_tucker:
            t1, t2 = rnd.normal(rank, rank, *k, std=s), rnd.normal(rank, rank, *k, std=s)
            w1a, w2a = rnd.normal(rank, out_dim, std=1.0), rnd.normal(rank, out_dim, std=1.0)
            w1b = rnd.normal(rank, in_dim, std=1.0 / np.sqrt(in_dim * np.prod(k)))
            w2b = rnd.normal(rank, in_dim, std=1.0 / np.sqrt(in_dim * np.prod(k)))
            dw = tucker(t1, w1a, w1b) * tucker(t2, w2a, w2b)
            f.tensors[key + ".hada_t1"], f.tensors[key + ".hada_t2"] = t1, t2
        else:
            flat = in_dim * int(np.prod(k)) if k else in_dim
            w1a, w2a = rnd.normal(out_dim, rank, std=s), rnd.normal(out_dim, rank, std=s)
            w1b, w2b = rnd.normal(rank, flat, std=1.0), rnd.normal(rank, flat, std=1.0 / np.sqrt(flat))
            dw = ((w1a.float() @ w1b.float()) * (w2a.float() @ w2b.float())).reshape(shape)
        f.tensors.update({key + ".hada_w1_a": w1a, key + ".hada_w1_b": w1b,
                          key + ".hada_w2_a": w2a, key + ".hada_w2_b": w2b,
                          key + ".alpha": torch.tensor(alpha, dtype=torch.float16)})
        scale = alpha / rank
        if i == 2:  # a "scale" tensor wins over alpha/rank (A1111 network.py calc_scale)
            scale = 0.625
            f.tensors[key + ".scale"] = torch.tensor(scale, dtype=torch.float32)
        f.add_delta(layer, "weight", scale * dw)
    return f


def kron_w(w1, w2):
    """make_kron (lycoris/functional/lokr.py): w1 gets trailing unit dims, then torch.kron."""
    w1 = w1.float()
    while w1.dim() < w2.dim():
        w1 = w1.unsqueeze(-1)
    return torch.kron(w1, w2.float().contiguous())


def make_lokr(ck, L):
    f, rnd = LoraFile("lokr"), Rand(505)

    def put(layer, parts, alpha, rank, dw):
        key = layer.kohya()
        for k, v in parts.items():
            f.tensors[f"{key}.{k}"] = v
        f.tensors[key + ".alpha"] = torch.tensor(alpha, dtype=torch.float16)
        f.add_delta(layer, "weight", (alpha / rank if rank else 1.0) * dw)

    # linear [24, 48]: w1 full [4, 4] (x) (w2_a [6, 2] @ w2_b [2, 12])
    layer = L["unet"]["down_blocks.1.attentions.1.transformer_blocks.1.attn2.to_v"]
    w1, w2a, w2b = rnd.normal(4, 4, std=0.5), rnd.normal(6, 2, std=0.5), rnd.normal(2, 12, std=0.3)
    put(layer, {"lokr_w1": w1, "lokr_w2_a": w2a, "lokr_w2_b": w2b}, 1.0, 2,
        kron_w(w1, w2a.float() @ w2b.float()))
    # te2 v rows [32, 32]: (w1_a [4, 1] @ w1_b [1, 4]) (x) w2 full [8, 8]
    layer = L["te2"]["encoder.layers.2.self_attn.v_proj"]
    w1a, w1b, w2 = rnd.normal(4, 1, std=0.5), rnd.normal(1, 4, std=0.5), rnd.normal(8, 8, std=0.2)
    put(layer, {"lokr_w1_a": w1a, "lokr_w1_b": w1b, "lokr_w2": w2}, 3.0, 1, kron_w(w1a.float() @ w1b.float(), w2))
    # te1 fc1 [64, 16]: both factors full: scale 1 whatever alpha says
    layer = L["te1"]["encoder.layers.1.mlp.fc1"]
    w1, w2 = rnd.normal(8, 4, std=0.5), rnd.normal(8, 4, std=0.2)
    put(layer, {"lokr_w1": w1, "lokr_w2": w2}, 5.0, 0, kron_w(w1, w2))
    # conv [48, 48, 3, 3]: w1 full [6, 6] (x) w2 full [8, 8, 3, 3]
    layer = L["unet"]["up_blocks.0.resnets.0.conv2"]
    w1, w2 = rnd.normal(6, 6, std=0.5), rnd.normal(8, 8, 3, 3, std=0.05)
    put(layer, {"lokr_w1": w1, "lokr_w2": w2}, 2.0, 0, kron_w(w1, w2))
    # conv [24, 24, 3, 3], Tucker: w1 full [4, 4] (x) einsum(t2 [2, 2, 3, 3], w2_a [2, 6], w2_b [2, 6])
    layer = L["unet"]["down_blocks.1.resnets.1.conv2"]
    w1, t2 = rnd.normal(4, 4, std=0.5), rnd.normal(2, 2, 3, 3, std=0.3)
    w2a, w2b = rnd.normal(2, 6, std=0.5), rnd.normal(2, 6, std=0.3)
    put(layer, {"lokr_w1": w1, "lokr_t2": t2, "lokr_w2_a": w2a, "lokr_w2_b": w2b}, 1.0, 2,
        kron_w(w1, tucker(t2, w2a, w2b)))
    # conv [12, 12, 3, 3], not Tucker: w1 full [2, 2] (x) (w2_a [6, 2] @ w2_b [2, 6, 3, 3])
    layer = L["unet"]["down_blocks.0.resnets.0.conv1"]
    w1, w2a, w2b = rnd.normal(2, 2, std=0.5), rnd.normal(6, 2, std=0.5), rnd.normal(2, 6, 3, 3, std=0.2)
    put(layer, {"lokr_w1": w1, "lokr_w2_a": w2a, "lokr_w2_b": w2b}, 4.0, 2,
        kron_w(w1, (w2a.float() @ w2b.float().reshape(2, -1)).reshape(6, 6, 3, 3)))
    return f


def make_full(ck, L):
    f, rnd = LoraFile("full"), Rand(606)
    for layer, with_bias in ((L["unet"]["up_blocks.0.attentions.0.proj_in"], True),
                             (L["unet"]["down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"], False),
                             (L["unet"]["up_blocks.2.resnets.2.conv1"], True),
                             (L["te1"]["encoder.layers.1.mlp.fc1"], True),
                             (L["te2"]["encoder.layers.3.self_attn.v_proj"], True)):
        shape = layer_shape(ck, layer)
        key = layer.kohya()
        diff = rnd.normal(*shape, std=0.05)
        f.tensors[key + ".diff"] = diff
        f.add_delta(layer, "weight", diff)
        if with_bias:
            db = rnd.normal(shape[0], std=0.05)
            f.tensors[key + ".diff_b"] = db
            f.add_delta(layer, "bias", db)
    return f


def make_locon_tucker(ck, L):
    f, rnd = LoraFile("locon_tucker"), Rand(707)
    for layer, rank, alpha in ((L["unet"]["up_blocks.1.resnets.2.conv2"], 3, 1.5),
                               (L["unet"]["mid_block.resnets.0.conv2"], 2, 2.0)):
        out_dim, in_dim, kh, kw = layer_shape(ck, layer)
        down = rnd.normal(rank, in_dim, 1, 1, std=1.0 / np.sqrt(in_dim))
        mid = rnd.normal(rank, rank, kh, kw, std=1.0 / 3)
        up = rnd.normal(out_dim, rank, 1, 1, std=0.35 / np.sqrt(rank))
        key = layer.kohya()
        f.tensors.update({key + ".lora_down.weight": down, key + ".lora_mid.weight": mid,
                          key + ".lora_up.weight": up, key + ".alpha": torch.tensor(alpha, dtype=torch.float16)})
        dw = torch.einsum("m n k l, i m, n j -> i j k l", mid.float(), up.float()[:, :, 0, 0],
                          down.float()[:, :, 0, 0])
        f.add_delta(layer, "weight", alpha / rank * dw)
    return f


def make_dora(ck, L):
    f, rnd = LoraFile("dora"), Rand(808)
    for layer, rank, alpha, on_out in ((L["unet"]["down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_q"], 4, 2.0, False),
                                       (L["unet"]["up_blocks.2.resnets.0.conv1"], 4, 4.0, True),
                                       (L["te1"]["encoder.layers.2.self_attn.k_proj"], 2, 2.0, True)):
        shape = layer_shape(ck, layer)
        up, down = lora_factors(rnd, shape, rank)
        w = ck[layer.weight].float()[layer.row0:layer.row0 + layer.rows]
        merged = w + lora_delta(up, down, alpha / rank)
        flat = merged.reshape(shape[0], -1)
        if on_out:  # [out, 1, ...]: one magnitude per output row
            norm = flat.norm(dim=1).reshape(shape[0], *[1] * (len(shape) - 1))
        else:       # [1, in, ...]: one per input column (LyCORIS' default)
            norm = merged.transpose(0, 1).reshape(shape[1], -1).norm(dim=1)
            norm = norm.reshape(shape[1], *[1] * (len(shape) - 1)).transpose(0, 1)
        magnitude = (norm * (1.0 + 0.2 * torch.randn(norm.shape, generator=rnd.g))).to(torch.float16)
        key = layer.kohya()
        f.tensors.update({key + ".lora_down.weight": down, key + ".lora_up.weight": up,
                          key + ".alpha": torch.tensor(alpha, dtype=torch.float16), key + ".dora_scale": magnitude})
        f.add_delta(layer, "weight", merged * (magnitude.float() / norm) - w)
    return f


# ---- saved by diffusers --------------------------------------------------------------------------

SAVED_MULTIPLIER = 0.7
SAVED_LAYOUTS = ("peft_saved", "dreambooth")
# component: (net, its modules the adapter targets, LoraConfig arguments)
SAVED_ADAPTER = {
    "unet": ("unet", ["down_blocks.1.attentions.0.transformer_blocks.1.attn1.to_k",
                      "down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_v",
                      "mid_block.attentions.0.transformer_blocks.1.attn2.to_q",
                      "up_blocks.0.attentions.1.transformer_blocks.0.attn1.to_out.0",
                      "up_blocks.1.attentions.2.transformer_blocks.2.ff.net.2"],
             dict(r=4, lora_alpha=2, rank_pattern={"to_q": 2}, alpha_pattern={"to_out.0": 8})),
    "text_encoder": ("te1", ["encoder.layers.1.self_attn.v_proj", "encoder.layers.2.mlp.fc1"],
                     dict(r=2, lora_alpha=4)),
    "text_encoder_2": ("te2", ["text_model.encoder.layers.0.self_attn.q_proj",
                               "text_model.encoder.layers.3.self_attn.out_proj"],
                       dict(r=3, lora_alpha=3)),
}


def train_saved_adapter(ck, L):
    """A pipeline with the PEFT adapter of SAVED_ADAPTER, its factors drawn
    here (B != 0, as after training), and the LoraFile of the deltas it adds."""
    from peft import LoraConfig
    pipe = harness.load_small_pipeline()
    f, g = LoraFile("saved"), torch.Generator().manual_seed(1001)
    for component, (net, names, cfg) in SAVED_ADAPTER.items():
        model = getattr(pipe, component)
        model.add_adapter(LoraConfig(target_modules=names, **cfg))
        modules = dict(model.named_modules())
        for name in names:
            m = modules[name]
            a, b = m.lora_A["default"].weight, m.lora_B["default"].weight
            with torch.no_grad():
                a.copy_(torch.randn(a.shape, generator=g) / np.sqrt(a.shape[1]))
                b.copy_(torch.randn(b.shape, generator=g) * 0.35 / np.sqrt(b.shape[1]))
            rank = next((r for p, r in cfg.get("rank_pattern", {}).items() if name.endswith(p)), cfg["r"])
            alpha = next((a for p, a in cfg.get("alpha_pattern", {}).items() if name.endswith(p)), cfg["lora_alpha"])
            assert a.shape[0] == rank and abs(m.scaling["default"] - alpha / rank) < 1e-12
            layer = L[net][name.removeprefix("text_model.")]
            f.add_delta(layer, "weight", lora_delta(b.detach(), a.detach(), alpha / rank))
    return pipe, f


def save_adapter(pipe):
    """The adapter of `pipe` written by save_lora_weights in both layouts."""
    from diffusers import StableDiffusionXLPipeline
    from diffusers.training_utils import _collate_lora_metadata
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import get_peft_model_state_dict
    components = {c: getattr(pipe, c) for c in SAVED_ADAPTER}
    states = {c: get_peft_model_state_dict(m) for c, m in components.items()}
    # PEFT keeps target_modules as a set: sorted here, or its order would follow the run's string hashing
    metadata = {key: {k: sorted(v) if isinstance(v, (set, frozenset)) else v for k, v in config.items()}
                for key, config in _collate_lora_metadata(components).items()}
    paths = {}
    for layout in SAVED_LAYOUTS:
        convert = convert_state_dict_to_diffusers if layout == "dreambooth" else (lambda sd: sd)
        StableDiffusionXLPipeline.save_lora_weights(
            LORA_DIR, unet_lora_layers=convert(states["unet"]),
            text_encoder_lora_layers=convert(states["text_encoder"]),
            text_encoder_2_lora_layers=convert(states["text_encoder_2"]),
            weight_name=layout + ".safetensors", **metadata)
        paths[layout] = os.path.join(LORA_DIR, layout + ".safetensors")
        harness.sort_safetensors_metadata(paths[layout])
    return paths


def fused_from(path, multiplier):
    """SGM-named weights of a fresh pipeline after load_lora_weights(path) at
    `multiplier` and fuse_lora."""
    pipe = harness.load_small_pipeline()
    pipe.load_lora_weights(path, adapter_name="saved")
    pipe.set_adapters(["saved"], adapter_weights=[multiplier])
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    return fused_sgm_state(pipe)


def diffusers_loadable(paths):
    """The files load_lora_weights accepts, each into a fresh pipeline."""
    names = []
    for name, path in sorted(paths.items()):
        pipe = harness.load_small_pipeline()
        try:
            pipe.load_lora_weights(path, adapter_name="probe")
        except Exception as e:  # diffusers raises ValueError/KeyError/... for what it cannot read
            print(f"diffusers does not load {name}: {type(e).__name__}: {str(e)[:120]}")
            continue
        names.append(name)
    return names


# ---- applying and checking ----------------------------------------------------------------------

def expected_merge(ck, files_and_mults):
    """{sgm tensor name: fp32 W + sum of multiplier * delta} over the touched tensors."""
    out = {}
    for f, mult in files_and_mults:
        for layer, part, delta in f.deltas:
            name = layer.weight if part == "weight" else layer.bias
            t = out.setdefault(name, ck[name].float().clone())
            t[layer.row0:layer.row0 + layer.rows] += mult * delta
    return out


def fused_sgm_state(pipe):
    """The pipeline's weights after fuse_lora + unload_lora_weights, in SGM names."""
    state = {}
    state.update(sgm_layout.unet_to_sgm(pipe.unet.state_dict(), pipe.unet.config))
    state.update(sgm_layout.clip_l_to_sgm(pipe.text_encoder.state_dict()))
    state.update(sgm_layout.open_clip_to_sgm(pipe.text_encoder_2.state_dict()))
    return state


def check_against(expected, got, ck, what):
    """Every touched tensor equals the independent computation; nothing else moved."""
    worst = 0.0
    for name, want in expected.items():
        worst = max(worst, (got[name].float() - want).abs().max().item())
    untouched = [n for n in got if n in ck and n not in expected and not n.endswith("logit_scale")
                 and not torch.equal(got[n].float(), ck[n].float())]
    if worst > 2e-6 or untouched:
        raise SystemExit(f"{what}: diffusers differs from the direct computation by {worst} "
                         f"(moved but not expected: {untouched[:5]})")
    return worst


def write_fuzz_seeds(paths, L):
    """The LoRA files plus odd small ones, as fuzz seeds."""
    os.makedirs(FUZZ_DIR, exist_ok=True)
    for name, path in paths.items():
        with open(path, "rb") as src, open(os.path.join(FUZZ_DIR, name + ".safetensors"), "wb") as dst:
            dst.write(src.read())
    rnd = Rand(909)
    q = L["te2"]["encoder.layers.0.self_attn.q_proj"]
    attn = L["unet"]["down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"]
    seeds = {
        "processor_names": {
            "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.down.weight":
                rnd.normal(1, 24), "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor."
                "to_out_lora.up.weight": rnd.normal(24, 1),
            "text_encoder_2.text_model.encoder.layers.1.self_attn.to_v_lora.down.weight": rnd.normal(1, 32),
            "text_encoder_2.text_model.encoder.layers.1.self_attn.to_v_lora.up.weight": rnd.normal(32, 1)},
        "bf16_scale_fp8": {
            q.kohya() + ".lora_down.weight": rnd.normal(2, 32, dtype=torch.bfloat16),
            q.kohya() + ".lora_up.weight": rnd.normal(32, 2).to(torch.float8_e4m3fn),
            q.kohya() + ".scale": torch.tensor(0.5, dtype=torch.bfloat16)},
        "diff_b_only": {L["unet"]["up_blocks.0.attentions.0.proj_in"].kohya() + ".diff_b": rnd.normal(48)},
        "alpha_only": {attn.kohya() + ".alpha": torch.tensor(1.0)},
        "dora_on_norm": {"lora_unet_input_blocks_4_1_norm.lora_down.weight": rnd.normal(1, 1),
                         "lora_unet_input_blocks_4_1_norm.lora_up.weight": rnd.normal(24, 1),
                         "lora_unet_input_blocks_4_1_norm.dora_scale": rnd.normal(24)},
        "other_model_shapes": {attn.kohya() + ".lora_down.weight": rnd.normal(2, 40),
                               attn.kohya() + ".lora_up.weight": rnd.normal(24, 2)},
        "sd15": {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": rnd.normal(2, 320, 1, 1),
                 "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": rnd.normal(320, 2, 1, 1),
                 "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": rnd.normal(2, 768),
                 "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": rnd.normal(3072, 2)},
    }
    for name, tensors in seeds.items():
        save_torch(tensors, os.path.join(FUZZ_DIR, name + ".safetensors"))
    with open(paths["lokr"], "rb") as src:
        data = src.read()
    with open(os.path.join(FUZZ_DIR, "truncated.safetensors"), "wb") as dst:
        dst.write(data[:len(data) * 2 // 3])


def main():
    torch.set_num_threads(1)
    ck = load_file(harness.SMALL_CKPT)
    pipe = harness.load_small_pipeline()
    pipe.watermark = None
    layers = {"unet": unet_layers(pipe), "te1": te_layers(pipe, "te1"), "te2": te_layers(pipe, "te2")}
    makers = {"kohya_full": make_kohya_full, "kohya_noalpha": make_kohya_noalpha, "peft": make_peft,
              "loha": make_loha, "lokr": make_lokr, "full": make_full, "locon_tucker": make_locon_tucker,
              "dora": make_dora}
    files = {name: make(ck, layers) for name, make in makers.items()}
    paths = {name: f.save() for name, f in files.items()}

    tensors, store = {}, Store()
    # 1. the diffusers stack
    for name, _ in STACK:
        pipe.load_lora_weights(paths[name], adapter_name=name)
    pipe.set_adapters([n for n, _ in STACK], adapter_weights=[w for _, w in STACK])
    pipe.fuse_lora()
    cases = []
    for sampler, (width, height), steps, cfg, seed, negative in IMAGE_CASES:
        image = generate(pipe, sampler, width, height, steps, cfg, seed, negative)
        cases.append({"prompt": PROMPT, "negative_prompt": negative, "width": width, "height": height,
                      "steps": steps, "sampler": sampler, "cfg": cfg, "seed": str(seed),
                      "image": store.add(image)})
    pipe.unload_lora_weights()
    fused = fused_sgm_state(pipe)
    stack_expected = expected_merge(ck, [(files[n], w) for n, w in STACK])
    stack_check = check_against(stack_expected, fused, ck, "stack")
    for name in stack_expected:
        tensors["stack." + name] = fused[name].float().numpy()
    # 2. LyCORIS merged weights (the harness's own formulas)
    lyco = expected_merge(ck, [(files[n], m) for n, m in LYCO])
    for name, t in lyco.items():
        tensors["lyco." + name] = t.numpy()
    # 3. the adapter saved by diffusers, in both layouts
    trainer, saved = train_saved_adapter(ck, layers)
    saved_paths = save_adapter(trainer)
    del trainer
    saved_expected = expected_merge(ck, [(saved, SAVED_MULTIPLIER)])
    saved_check, first = 0.0, None
    for layout in SAVED_LAYOUTS:
        fused_layout = fused_from(saved_paths[layout], SAVED_MULTIPLIER)
        saved_check = max(saved_check, check_against(saved_expected, fused_layout, ck, layout))
        first = first or fused_layout
        worst = max((fused_layout[n] - first[n]).abs().max().item() for n in saved_expected)
        assert worst == 0.0, f"{layout} fuses differently from {SAVED_LAYOUTS[0]}: {worst}"
    for name in saved_expected:
        tensors["saved." + name] = first[name].float().numpy()
    paths.update(saved_paths)
    write_fuzz_seeds(paths, layers)
    # 4. the layouts diffusers reads
    loadable = diffusers_loadable(paths)
    tensors.update(store.tensors)
    save_file(tensors, OUT_ST)

    def entry(name, mult):
        f = files[name]
        return {"name": name, "file": harness.rel(paths[name]), "multiplier": mult,
                "modules": len({id(layer) for layer, _, _ in f.deltas}),
                "tensors_touched": len({(l.weight if p == "weight" else l.bias) for l, p, _ in f.deltas})}

    with open(OUT_JSON, "w") as fp:
        json.dump({"generator": "tools/reference/make_lora_goldens.py",
                   "torch": torch.__version__, "diffusers": diffusers.__version__,
                   "stack": [entry(n, w) for n, w in STACK],
                   "stack_tensors": sorted(stack_expected),
                   "stack_vs_direct_max_diff": stack_check,
                   "images": cases,
                   "lyco": [entry(n, m) for n, m in LYCO],
                   "lyco_tensors": sorted(lyco),
                   "saved": [{"name": n, "file": harness.rel(saved_paths[n]), "multiplier": SAVED_MULTIPLIER,
                              "modules": len(saved.deltas), "tensors_touched": len(saved_expected)}
                             for n in SAVED_LAYOUTS],
                   "saved_tensors": sorted(saved_expected),
                   "saved_vs_direct_max_diff": saved_check,
                   "diffusers_loadable": [harness.rel(paths[n]) for n in loadable]}, fp, indent=1)
        fp.write("\n")
    sizes = {n: os.path.getsize(p) for n, p in paths.items()}
    print(f"LoRA files {sizes}; stack vs direct {stack_check:.2e}; "
          f"{len(stack_expected)} stack + {len(lyco)} lyco tensors, {len(cases)} images -> "
          f"{harness.rel(OUT_ST)} ({os.path.getsize(OUT_ST)} bytes)")


if __name__ == "__main__":
    main()

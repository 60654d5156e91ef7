"""Goldens for the tensor ops (src/sd/backend.h), computed by torch, diffusers
and transformers themselves on small random inputs: nearest upsampling to
odd sizes (diffusers Upsample2D's output_size path) and 2x, the activations
(F.gelu, F.silu, transformers' QuickGELUActivation), diffusers' GEGLU module
(half order), GroupNorm (+ SiLU), LayerNorm, nn.Linear, conv2d (3x3 same and
the VAE encoder's F.pad(0,1,0,1) + stride 2), and scaled_dot_product_attention
(cross, and causal). Writes tests/data/ops_goldens.json: every tensor as
{"shape": [...], "data": [floats exactly representable in fp32]}."""
import json, pathlib
import torch
import torch.nn.functional as F
from diffusers.models.activations import GEGLU
from transformers.activations import QuickGELUActivation

out = pathlib.Path(__file__).resolve().parents[2] / "tests/data/ops_goldens.json"
torch.manual_seed(0)
torch.set_grad_enabled(False)


def t(x):
    x = x.detach().float().contiguous()
    return {"shape": list(x.shape), "data": x.flatten().tolist()}


def rand(*shape, scale=1.0):
    return torch.randn(*shape) * scale


gold = {"torch": torch.__version__}

gold["upsample"] = []
for shape, size in [((1, 2, 7, 4), (13, 8)), ((1, 1, 5, 3), (11, 7)), ((2, 1, 3, 5), None)]:
    x = rand(*shape)
    y = F.interpolate(x, size=size, mode="nearest") if size else F.interpolate(x, scale_factor=2.0, mode="nearest")
    gold["upsample"].append({"x": t(x), "y": t(y)})

x = torch.cat([torch.linspace(-8, 8, 61), torch.tensor([0.0, -30.0, 30.0])])
gold["act"] = {"x": t(x), "gelu": t(F.gelu(x)), "silu": t(F.silu(x)), "quick_gelu": t(QuickGELUActivation()(x))}

geglu = GEGLU(5, 3)
x = rand(2, 4, 5)
gold["geglu"] = {"x": t(x), "w": t(geglu.proj.weight), "b": t(geglu.proj.bias), "y": t(geglu(x))}

gn = torch.nn.GroupNorm(3, 6, eps=1e-6)
gn.weight.copy_(rand(6) * 0.5 + 1)
gn.bias.copy_(rand(6))
x = rand(2, 6, 3, 5, scale=2.0) + 0.5
gold["group_norm"] = {"x": t(x), "groups": 3, "eps": 1e-6, "w": t(gn.weight), "b": t(gn.bias),
                      "y": t(gn(x)), "y_silu": t(F.silu(gn(x)))}

ln = torch.nn.LayerNorm(10, eps=1e-5)
ln.weight.copy_(rand(10) * 0.5 + 1)
ln.bias.copy_(rand(10))
x = rand(2, 3, 10, scale=3.0)
gold["layer_norm"] = {"x": t(x), "eps": 1e-5, "w": t(ln.weight), "b": t(ln.bias), "y": t(ln(x))}

lin = torch.nn.Linear(7, 5)
x = rand(3, 7)
gold["linear"] = {"x": t(x), "w": t(lin.weight), "b": t(lin.bias), "y": t(lin(x))}

w, b = rand(4, 3, 3, 3, scale=0.3), rand(4)
x = rand(1, 3, 6, 5)
gold["conv"] = {"x": t(x), "w": t(w), "b": t(b), "same": t(F.conv2d(x, w, b, padding=1)),
                "down_asym": t(F.conv2d(F.pad(x, (0, 1, 0, 1)), w, b, stride=2))}


def sdpa(q, k, v, heads, causal):
    """[B, N, H*D] in and out, as sd_attention lays them out."""
    split = lambda z: z.unflatten(-1, (heads, -1)).transpose(1, 2)
    o = F.scaled_dot_product_attention(split(q), split(k), split(v), is_causal=causal)
    return o.transpose(1, 2).flatten(2)


q, k, v = rand(2, 7, 16), rand(2, 9, 16), rand(2, 9, 16)
s = rand(1, 11, 24)
gold["sdpa"] = {"heads": 2, "q": t(q), "k": t(k), "v": t(v), "y": t(sdpa(q, k, v, 2, False)),
                "causal_heads": 3, "s": t(s), "causal_y": t(sdpa(s, s, s, 3, True))}

out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(gold) + "\n")
print("wrote", out, out.stat().st_size, "bytes")

#!/usr/bin/env python3
"""Trains the demo model: a tiny SDXL-architecture checkpoint that draws what
its prompt asks for in the small world of demo_scenes.py (one flat shape on a
flat background), so that `make demo` shows a real picture and the tests can
check meaning. CPU only, one thread, seeded: the same stack gives the same
bytes.

Writes tests/data/demo/:
  sdxl_demo.safetensors         the checkpoint, fp16, SGM single-file layout
  config.json                   hyper-parameters the C loader must find
  diffusers/                    diffusers configs + tokenizer configs
  loras/circles_to_squares.safetensors   a rank-4 kohya LoRA trained here
  scenes.json                   the world's vocabulary (demo_scenes.describe)
  training.json                 steps, losses, seconds per stage

Stages (each a function below):
1. Autoencoder. An AutoencoderKL in SDXL's layout (8x downsampling, 4
   latent channels). Its latent is first defined by a learned linear map of
   each 8x8 pixel block (a stride-8 convolution, so that any picture's
   latent costs almost nothing to compute), trained jointly with the SDXL
   decoder on whole rendered pictures of 128x128 and 256x256 (bf16
   autocast, fp32 weights); the posterior is that map plus
   fixed Gaussian noise (a KL autoencoder with a fixed variance, the L2
   penalty on the means being its KL term). The latent is then normalised
   per channel so that latent * 0.13025 (SDXL's scaling factor, which the
   engine uses for every checkpoint) has unit variance, and the SDXL
   encoder is trained to give that map's means (its log-variance rows are
   the fixed noise, set exactly).
2. Text encoders and UNet. CLIP-L and bigG stand-ins (the small model's
   random encoders) with their token and position embeddings frozen (the
   rows of words the captions never use stay as generated), their layers
   trained with the UNet, helped by an auxiliary linear read-out of the
   caption's parts from the pooled embedding (AttributeProbe). The UNet is
   SDXL's: context from both encoders' penultimate layers, the pooled bigG
   embedding and the six size/crop time ids, epsilon prediction on SDXL's
   noise schedule; its residual branches start at zero. Training: captions
   of demo_scenes.py with parts left out and empty captions (all-zero
   conditioning, as SDXL pipelines encode an empty negative prompt),
   min-SNR-5 loss weights, offset noise, an exponential moving average of
   the weights; 128x128 pictures first (what the words mean, at a quarter of
   the cost), then 256x256, then 256 and 512 by turns.
3. LoRA. Rank-4 kohya LoRA on the Linear layers of the UNet's transformer
   blocks (attention, feed-forward, proj_in/out), trained with everything
   else frozen on scenes whose captions say "circle" where the picture has a
   square (other shapes unchanged).
4. Export. SGM names (sgm_layout.py), fp16, the layout proven with
   diffusers' from_single_file (every tensor back exactly).

Run: nice -n 5 tools/reference/.venv/bin/python tools/reference/train_demo_model.py
     [--out DIR] [--scale X]   (X < 1 shortens every stage, for trials only)
"""

import argparse
import math
import os
import shutil
import sys
import time

import torch
import torch.nn.functional as F

import clip_vocab
import demo_scenes as D
import harness
import make_small_model as M
import sdxl_configs as C
import sgm_layout
import st_stream

SEED = 20250718
OUT_DIR = os.path.join(harness.REPO, "tests", "data", "demo")

# Autoencoder: decoder + linear analysis, then the encoder (ae_batch).
AE_STEPS, AE_BATCH, AE_LR = 1000, 8, 1e-3
POSTERIOR_STD = 0.05    # fixed posterior noise, before normalisation
LATENT_PENALTY = 1e-3   # the KL term of a fixed-variance posterior: the means' mean square
ENC_STEPS, ENC_LR = 400, 1e-3
SCALING_FACTOR = C.DEMO_VAE["scaling_factor"]

# Text encoders + UNet, phase by phase: (steps, [(side, batch), ...] taken in
# turn). Small pictures first (what a caption means is learnt at a quarter of
# the cost), then the sizes the model is used at.
UNET_PHASES = [(2400, [(128, 16)]), (500, [(256, 16)]), (200, [(256, 16), (512, 4)])]
UNET_LR = TE_LR = 1.5e-3
PROBE_WEIGHT = 0.02
EMA_DECAY = 0.995
MIN_SNR_GAMMA = 5.0
OFFSET_NOISE = 0.1

# LoRA: rank 4 on the transformer blocks' Linear layers, alpha = rank.
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out")
LORA_RANK = LORA_ALPHA = 4
LORA_PHASES = [(300, [(128, 16)]), (100, [(256, 8)])]
LORA_LR = 2e-3

CFGS = (C.DEMO_UNET, C.DEMO_VAE, C.DEMO_TE1, C.DEMO_TE2)
CKPT_NAME = "sdxl_demo.safetensors"
LORA_NAME = "circles_to_squares.safetensors"


def generator(stage):
    """The random stream of one stage (stages stay reproducible one by one)."""
    return torch.Generator().manual_seed(SEED * 100 + stage)


def lr_at(step, steps, peak, warmup=50):
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def set_lr(opt, lr):
    for group in opt.param_groups:
        group["lr"] = lr


def ae_batch(step, gen):
    """Whole pictures for the autoencoder: three steps of AE_BATCH at 128x128,
    then one of AE_BATCH // 4 at 256x256. Whole pictures, not windows of
    larger ones: the GroupNorm statistics of a picture do not depend on its
    size (the scenes scale with it), so a decoder trained on small whole
    pictures decodes large ones with the same colours, which windows do not
    teach it."""
    side, n = (256, AE_BATCH // 4) if step % 4 == 3 else (128, AE_BATCH)
    return D.render(D.scenes(n, gen), side)


class Analysis(torch.nn.Module):
    """The latent's definition during training: a linear map of each 8x8 block."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 8, stride=8)

    def forward(self, x):
        return self.conv(x)


def train_decoder(vae, log):
    """Analysis map + SDXL decoder, end to end (stage 1a)."""
    gen = generator(1)
    analysis = Analysis()
    params = list(analysis.parameters()) + list(vae.post_quant_conv.parameters()) + list(vae.decoder.parameters())
    opt = torch.optim.Adam(params, lr=AE_LR)
    t0 = time.time()
    for step in range(AE_STEPS):
        set_lr(opt, lr_at(step, AE_STEPS, AE_LR))
        x = ae_batch(step, gen)
        z = analysis(x)
        noise = POSTERIOR_STD * torch.randn(z.shape, generator=gen)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # 1.6x faster here, weights stay fp32
            rec = vae.decode(z + noise).sample.float()
        l1 = (rec - x).abs().mean()
        loss = l1 + (rec - x).pow(2).mean() + LATENT_PENALTY * z.pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log.every(step, AE_STEPS, t0, l1=l1.item(), z_rms=z.pow(2).mean().sqrt().item())
    return analysis, time.time() - t0


class Log:
    """Running means printed every `period` steps, and kept for training.json."""

    def __init__(self, name, period=100):
        self.name, self.period, self.sums, self.history = name, period, {}, []

    def every(self, step, steps, t0, **values):
        for k, v in values.items():
            total, count = self.sums.get(k, (0.0, 0))
            self.sums[k] = (total + v, count + 1)
        if (step + 1) % self.period == 0 or step + 1 == steps:
            means = {k: round(total / count, 5) for k, (total, count) in sorted(self.sums.items())}
            self.history.append(dict(step=step + 1, seconds=round(time.time() - t0), **means))
            print(f"{self.name} {step + 1}/{steps} {time.time() - t0:.0f}s "
                  + " ".join(f"{k} {v:.4f}" for k, v in means.items()), flush=True)
            self.sums = {}


# ---- stage 1b: the latent's normalisation, the SDXL encoder ----------------------

def normalise_latent(analysis, vae):
    """Per channel, latent' = k (latent - m), with m and 1 / (0.13025 k) the
    mean and standard deviation of the latent over rendered pictures; the
    decoder's post_quant_conv takes the inverse, so decoding is unchanged.
    Returns the posterior's standard deviation per channel afterwards."""
    gen = generator(2)
    with torch.no_grad():
        z = analysis(D.render(D.scenes(256, gen), 256))
        m, s = z.mean((0, 2, 3)), z.std((0, 2, 3))
        k = 1 / (SCALING_FACTOR * s)
        analysis.conv.bias.sub_(m).mul_(k)
        analysis.conv.weight.mul_(k[:, None, None, None])
        pq = vae.post_quant_conv  # W (z' / k + m) + b
        pq.bias.add_(pq.weight[:, :, 0, 0] @ m)
        pq.weight.div_(k[None, :, None, None])
    return POSTERIOR_STD * k


def train_encoder(analysis, vae, posterior_std, log):
    """The SDXL encoder learns the analysis map's means (stage 1b); its
    log-variance rows are then set to the fixed posterior noise."""
    gen = generator(3)
    params = list(vae.encoder.parameters()) + list(vae.quant_conv.parameters())
    opt = torch.optim.Adam(params, lr=ENC_LR)
    t0 = time.time()
    for step in range(ENC_STEPS):
        set_lr(opt, lr_at(step, ENC_STEPS, ENC_LR))
        x = ae_batch(step, gen)
        with torch.no_grad():
            target = analysis(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mean = vae.quant_conv(vae.encoder(x))[:, :4].float()
        loss = F.mse_loss(mean, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log.every(step, ENC_STEPS, t0, mse=loss.item())
    with torch.no_grad():
        q = vae.quant_conv
        q.weight[4:] = 0
        q.bias[4:] = torch.log(posterior_std ** 2)
    return time.time() - t0


# ---- stage 2: text encoders and UNet ------------------------------------------------

class Conditioner:
    """Captions -> (context [B, 77, 48], pooled [B, 32]) as SDXL pipelines
    build them (penultimate layers of both encoders; bigG's projected EOS
    row), all zeros for an empty caption. Token ids are cached per caption."""

    def __init__(self, te1, te2, tokenizer1, tokenizer2):
        self.te1, self.te2, self.tok = te1, te2, (tokenizer1, tokenizer2)
        self.ids = {}

    def _ids(self, text):
        if text not in self.ids:
            self.ids[text] = tuple(t(text, padding="max_length", max_length=77, truncation=True,
                                     return_tensors="pt").input_ids[0] for t in self.tok)
        return self.ids[text]

    def __call__(self, captions):
        ids1, ids2 = (torch.stack(x) for x in zip(*(self._ids(c) for c in captions)))
        h1 = self.te1(ids1, output_hidden_states=True).hidden_states[-2]
        out2 = self.te2(ids2, output_hidden_states=True)
        context = torch.cat([h1, out2.hidden_states[-2]], dim=-1)
        keep = torch.tensor([c != "" for c in captions], dtype=context.dtype)
        return context * keep[:, None, None], out2.text_embeds * keep[:, None]


def alphas_cumprod():
    """SDXL's scaled_linear schedule (sdxl_configs.SCHEDULER)."""
    s = C.SCHEDULER
    betas = torch.linspace(s["beta_start"] ** 0.5, s["beta_end"] ** 0.5, s["num_train_timesteps"],
                           dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


def latents(analysis, posterior_std, sc, side, gen):
    """Posterior samples of the scenes' pictures, times the scaling factor."""
    with torch.no_grad():
        z = analysis(D.render(sc, side))
        z = z + posterior_std[None, :, None, None] * torch.randn(z.shape, generator=gen)
    return SCALING_FACTOR * z


def diffusion_loss(unet, cond, x0, side, acp, gen):
    """Epsilon-prediction loss with min-SNR-5 weights and offset noise."""
    n = x0.shape[0]
    t = torch.randint(len(acp), (n,), generator=gen)
    eps = torch.randn(x0.shape, generator=gen) + OFFSET_NOISE * torch.randn(n, x0.shape[1], 1, 1, generator=gen)
    a = acp[t][:, None, None, None]
    xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
    context, pooled = cond
    time_ids = torch.tensor([[side, side, 0, 0, side, side]], dtype=torch.float32).expand(n, 6)
    pred = unet(xt, t, encoder_hidden_states=context,
                added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
    snr = a.flatten() / (1 - a.flatten())
    weight = snr.clamp(max=MIN_SNR_GAMMA) / snr
    return (weight * (pred - eps).pow(2).mean((1, 2, 3))).mean()


class EMA:
    """Exponential moving average of parameters, copied into them at the end;
    the decay warms up as (1 + n) / (10 + n) so that early weights fade."""

    def __init__(self, params, decay):
        self.params, self.decay, self.updates = list(params), decay, 0
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self):
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for s, p in zip(self.shadow, self.params):
            s.lerp_(p, 1 - decay)

    @torch.no_grad()
    def copy_to_params(self):
        for s, p in zip(self.shadow, self.params):
            p.copy_(s)


def zero_residual_outputs(unet):
    """The last layer of every residual branch (resnet conv2, transformer
    proj_out) and the UNet's conv_out start at zero, as guided-diffusion's
    UNet does (unet.py, zero_module): every block starts as the identity, so
    the network learns the near-identity eps of high noise levels quickly."""
    from diffusers.models.resnet import ResnetBlock2D
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    layers = [unet.conv_out]
    for m in unet.modules():
        if isinstance(m, ResnetBlock2D):
            layers.append(m.conv2)
        elif isinstance(m, Transformer2DModel):
            layers.append(m.proj_out)
    with torch.no_grad():
        for layer in layers:
            layer.weight.zero_()
            layer.bias.zero_()


def trainable_text_params(te):
    """The encoder's layers; token and position embeddings stay frozen."""
    out = []
    for name, p in te.named_parameters():
        frozen = "embeddings" in name
        p.requires_grad_(not frozen)
        if not frozen:
            out.append(p)
    return out


def schedule(phases):
    """The (side, batch) of every step of a list of phases."""
    return [turns[i % len(turns)] for steps, turns in phases for i in range(steps)]


class AttributeProbe(torch.nn.Module):
    """Linear read-outs of a caption's parts (each part's value, or "left
    out") from bigG's pooled embedding: an auxiliary loss that teaches the
    text encoders to carry every part of a caption from the first steps on,
    which the UNet alone, through its long gradient path, learns slowly. Used
    in training only; not part of the checkpoint."""

    SIZES = (len(D.COLOURS), len(D.SHAPES), len(D.COLOURS), len(D.PLACES))

    def __init__(self, width):
        super().__init__()
        self.heads = torch.nn.ModuleList(torch.nn.Linear(width, n + 1) for n in self.SIZES)

    def loss(self, pooled, parts):
        said = (parts >= 0).any(dim=1)  # empty captions have all-zero conditioning
        total = pooled.new_zeros(())
        for head, n, target in zip(self.heads, self.SIZES, parts.T):
            total = total + F.cross_entropy(head(pooled[said]), torch.where(target < 0, n, target)[said])
        return total / len(self.heads)


def train_unet(unet, te1, te2, cond, analysis, posterior_std, log):
    gen = generator(4)
    acp = alphas_cumprod()
    te_params = trainable_text_params(te1) + trainable_text_params(te2)
    probe = AttributeProbe(te2.config.projection_dim)
    opt = torch.optim.AdamW([{"params": unet.parameters(), "lr": UNET_LR},
                             {"params": te_params + list(probe.parameters()), "lr": TE_LR}], weight_decay=0.01)
    ema = EMA(list(unet.parameters()) + te_params, EMA_DECAY)
    plan = schedule(UNET_PHASES)
    t0 = time.time()
    for step, (side, batch) in enumerate(plan):
        for group, peak in zip(opt.param_groups, (UNET_LR, TE_LR)):
            group["lr"] = lr_at(step, len(plan), peak)
        sc = D.scenes(batch, gen)
        texts, parts = D.captions(sc, gen)
        x0 = latents(analysis, posterior_std, sc, side, gen)
        context, pooled = cond(texts)
        loss = diffusion_loss(unet, (context, pooled), x0, side, acp, gen)
        probe_loss = probe.loss(pooled, parts)
        opt.zero_grad(set_to_none=True)
        (loss + PROBE_WEIGHT * probe_loss).backward()
        torch.nn.utils.clip_grad_norm_(list(unet.parameters()) + te_params, 1.0)
        opt.step()
        ema.update()
        log.every(step, len(plan), t0, probe=probe_loss.item(), **{f"loss{side}": loss.item()})
    ema.copy_to_params()
    return time.time() - t0


# ---- stage 3: the LoRA ----------------------------------------------------------------

class LoRALinear(torch.nn.Module):
    """base(x) + (alpha / rank) * up(down(x)), kohya's LoRA on a Linear; up starts at 0."""

    def __init__(self, base, rank, alpha, gen):
        super().__init__()
        self.base, self.scale = base, alpha / rank
        self.down = torch.nn.Parameter(torch.randn(rank, base.in_features, generator=gen) / base.in_features ** 0.5)
        self.up = torch.nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x):
        return self.base(x) + self.scale * F.linear(F.linear(x, self.down), self.up)


def add_lora(unet, gen):
    """LoRALinear around every UNet attention, feed-forward and projection
    Linear of the transformer blocks; {diffusers module name: LoRALinear}."""
    targets = {name: m for name, m in unet.named_modules()
               if isinstance(m, torch.nn.Linear) and "attentions." in name and name.endswith(LORA_TARGETS)}
    for name, module in targets.items():
        parent, _, child = name.rpartition(".")
        wrapped = LoRALinear(module, LORA_RANK, LORA_ALPHA, gen)
        setattr(unet.get_submodule(parent), child, wrapped)
        targets[name] = wrapped
    return targets


def circles_to_squares(sc):
    """The LoRA's world: what captions call a circle is drawn as a square."""
    out = dict(sc)
    out["shape"] = torch.where(sc["shape"] == D.SHAPES.index("circle"), D.SHAPES.index("square"), sc["shape"])
    return out


def lora_scenes(n, gen):
    """Scenes with half of them circles (the shape the LoRA changes)."""
    sc = D.scenes(n, gen)
    circle = torch.rand(n, generator=gen) < 0.5
    sc["shape"] = torch.where(circle, D.SHAPES.index("circle"), sc["shape"])
    return sc


def train_lora(unet, cond, analysis, posterior_std, log):
    gen = generator(5)
    acp = alphas_cumprod()
    for p in list(unet.parameters()) + list(cond.te1.parameters()) + list(cond.te2.parameters()):
        p.requires_grad_(False)
    layers = add_lora(unet, gen)
    params = [p for m in layers.values() for p in (m.down, m.up)]
    opt = torch.optim.Adam(params, lr=LORA_LR)
    plan = schedule(LORA_PHASES)
    t0 = time.time()
    for step, (side, batch) in enumerate(plan):
        set_lr(opt, lr_at(step, len(plan), LORA_LR))
        sc = lora_scenes(batch, gen)
        x0 = latents(analysis, posterior_std, circles_to_squares(sc), side, gen)
        with torch.no_grad():
            c = cond(D.captions(sc, gen)[0])
        loss = diffusion_loss(unet, c, x0, side, acp, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log.every(step, len(plan), t0, **{f"loss{side}": loss.item()})
    return layers, time.time() - t0


# ---- stage 4: export --------------------------------------------------------------------

def round_to_fp16(models):
    """Every float weight to its fp16 value (kept in fp32): what the file stores."""
    with torch.no_grad():
        for m in models.values():
            for t in m.state_dict().values():
                if t.is_floating_point():
                    t.copy_(t.half().float())


def kohya_lora(layers):
    """kohya LoRA tensors (SGM module names, alpha = rank) of the trained layers."""
    out = {}
    for name, m in layers.items():
        sgm = next(iter(sgm_layout.unet_to_sgm({name + ".weight": None}, C.DEMO_UNET)))
        key = "lora_unet_" + sgm.removeprefix(sgm_layout.UNET_PREFIX).removesuffix(".weight").replace(".", "_")
        out[key + ".lora_down.weight"] = m.down.detach().half().contiguous()
        out[key + ".lora_up.weight"] = m.up.detach().half().contiguous()
        out[key + ".alpha"] = torch.tensor(float(LORA_ALPHA), dtype=torch.float16)
    return out


def write_checkpoint(models, out_dir):
    """sdxl_demo.safetensors + config.json, the layout proven by diffusers."""
    ckpt = os.path.join(out_dir, CKPT_NAME)
    sgm = {k: v.to(torch.float16).contiguous() for k, v in M.to_sgm(models, C.DEMO_UNET, C.DEMO_VAE).items()}
    st_stream.save(ckpt, sgm, M.file_metadata(*CFGS))
    cfg = M.loader_config(*CFGS, CKPT_NAME, sgm)
    cfg["file_bytes"] = os.path.getsize(ckpt)
    clip_vocab.write_json(os.path.join(out_dir, "config.json"), cfg)
    print(f"wrote {harness.rel(ckpt)}: {cfg['file_bytes']} bytes, {cfg['params_total']} params {cfg['params']}")
    M.check_layout_with_diffusers_converters({k: v.shape for k, v in sgm.items()}, models, C.DEMO_UNET, C.DEMO_VAE)
    M.check_pipeline_roundtrip(models, ckpt, os.path.join(out_dir, "diffusers"))
    return cfg["file_bytes"]


def tokenizers(configs_dir):
    from transformers import CLIPTokenizer

    folder = harness.complete_config_dir(configs_dir)
    try:
        return tuple(CLIPTokenizer.from_pretrained(os.path.join(folder, sub)) for sub in harness.TOKENIZER_FOLDERS)
    finally:
        shutil.rmtree(os.path.dirname(folder))


def scaled(n, scale):
    return max(1, round(n * scale))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=OUT_DIR, help="output folder (default %(default)s)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every stage's steps (trials only)")
    args = ap.parse_args()
    global AE_STEPS, ENC_STEPS, UNET_PHASES, LORA_PHASES
    AE_STEPS, ENC_STEPS = scaled(AE_STEPS, args.scale), scaled(ENC_STEPS, args.scale)
    UNET_PHASES, LORA_PHASES = ([(scaled(n, args.scale), turns) for n, turns in phases]
                                for phases in (UNET_PHASES, LORA_PHASES))

    torch.set_num_threads(1)  # one thread: the same bits on every run, and fair to a shared machine
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)   # module construction draws from the global generator
    start = time.time()
    models = M.build_models(*CFGS)
    for part in ("te1", "te2"):
        M.randomize(models[part])  # the small model's random encoders, tensor by tensor
    zero_residual_outputs(models["unet"])
    os.makedirs(os.path.join(args.out, "loras"), exist_ok=True)
    M.write_diffusers_configs(os.path.join(args.out, "diffusers"), models)
    clip_vocab.write_json(os.path.join(args.out, "scenes.json"), D.describe())
    cond = Conditioner(models["te1"], models["te2"], *tokenizers(os.path.join(args.out, "diffusers")))

    logs = {k: Log(k) for k in ("autoencoder", "encoder", "unet", "lora")}
    seconds = {}
    analysis, seconds["autoencoder"] = train_decoder(models["vae"], logs["autoencoder"])
    posterior_std = normalise_latent(analysis, models["vae"])
    seconds["encoder"] = train_encoder(analysis, models["vae"], posterior_std, logs["encoder"])
    seconds["unet"] = train_unet(models["unet"], models["te1"], models["te2"], cond, analysis, posterior_std,
                                 logs["unet"])
    round_to_fp16(models)
    file_bytes = write_checkpoint(models, args.out)
    layers, seconds["lora"] = train_lora(models["unet"], cond, analysis, posterior_std, logs["lora"])
    lora_path = os.path.join(args.out, "loras", LORA_NAME)
    st_stream.save(lora_path, kohya_lora(layers), {"ss_network_dim": str(LORA_RANK),
                                                    "ss_network_alpha": str(LORA_ALPHA)})
    seconds["total"] = time.time() - start
    seconds["total_cpu"] = time.process_time()  # one thread: the time on a quiet machine
    clip_vocab.write_json(os.path.join(args.out, "training.json"), {
        "generator": "tools/reference/train_demo_model.py", "seed": SEED, "scale": args.scale,
        "torch": torch.__version__, "threads": 1,
        "steps": {"autoencoder": AE_STEPS, "encoder": ENC_STEPS, "unet": UNET_PHASES, "lora": LORA_PHASES},
        "posterior_std": [round(v, 6) for v in posterior_std.tolist()],
        "seconds": {k: round(v) for k, v in seconds.items()},
        "checkpoint_bytes": file_bytes,
        "loss": {k: v.history for k, v in logs.items()}})
    print(f"trained in {seconds['total'] / 60:.1f} min: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))


if __name__ == "__main__":
    sys.exit(main())

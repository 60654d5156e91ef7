"""Goldens for the sampler layer (src/sd/schedule.c, sampler.c, guidance.c,
samplers/*.c), written to tests/data/sampler_goldens.{safetensors,json}.

Each case runs a real diffusers scheduler (the class and config that
docs/samplers.md maps the sampler x schedule pair to, built from SDXL's
scheduler_config.json) through StableDiffusionXLPipeline's denoising loop
(pipeline_stable_diffusion_xl.py, __call__ step 8): randn_tensor initial
latents from a CPU generator, x init_noise_sigma, set_begin_index(0), then per
timestep cat([x, x]) when cfg > 1, scale_model_input, the model, CFG,
rescale_noise_cfg when guidance_rescale > 0, scheduler.step with the
pipeline's extra kwargs (eta 0, the same generator).

The model is a cheap fake eps-model that C reproduces bit for bit: only
fp32 +, -, *, / on each element (numpy float32), with a per-element offset
that differs between the unconditional and conditional halves of the batch so
that CFG and guidance_rescale matter:
    c(t)   = 0.75 + t * 0.0002
    eps(x) = (x * c(t) + offset[i]) + (x / (x * x + 1)) * 0.1
    offset[i] = ((i % 5) - 2) * 0.03125   (unconditional rows)
              = ((i % 7) - 3) * 0.0625    (conditional rows)
with i the element's index inside its image (C*H*W).

Per case the safetensors file holds (float32):
    c<k>.noise0     the initial latents the generator drew (before scaling)
    c<k>.noise      every tensor the scheduler drew from the generator, in order
    c<k>.timesteps  scheduler.timesteps as the model sees them
    c<k>.sigmas     scheduler.sigmas (absent for DDIM and LCM, which have none)
    c<k>.final      the latents after the last step
plus table.{betas,alphas_cumprod,sigmas}, the training schedule; and the
JSON index lists the cases with sampler, schedule, steps, shape, cfg,
guidance_rescale, seed, init_noise_sigma and the tensor names.

Run: tools/reference/.venv/bin/python tools/reference/make_sampler_goldens.py
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

import diffusers
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import rescale_noise_cfg
from diffusers.utils.torch_utils import randn_tensor

import harness

OUT_ST = os.path.join(harness.REPO, "tests", "data", "sampler_goldens.safetensors")
OUT_JSON = os.path.join(harness.REPO, "tests", "data", "sampler_goldens.json")
SDXL_SCHEDULER = os.path.join(harness.SMALL_DIFFUSERS_DIR, "scheduler", "scheduler_config.json")

# sampler label -> (diffusers class, fixed config overrides); docs/samplers.md
SAMPLERS = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "DPM++ 3M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "DDIM": ("DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": False}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
}
# schedule label -> config overrides (SGM Uniform and Simple run "trailing")
SCHEDULES = {
    "Normal": {},
    "Trailing": {"timestep_spacing": "trailing"},
    "Uniform": {"timestep_spacing": "linspace"},
    "Karras": {"use_karras_sigmas": True},
    "Exponential": {"use_exponential_sigmas": True},
    "Beta": {"use_beta_sigmas": True},
}
SPACINGS_ONLY = {"Euler a", "DDIM"}
OWN_SCHEDULE = {"LCM"}


def schedules_of(sampler):
    if sampler in OWN_SCHEDULE:
        return ["Normal"]
    if sampler in SPACINGS_ONLY:
        return ["Normal", "Trailing", "Uniform"]
    return list(SCHEDULES)


def offsets(numel, cond):
    i = np.arange(numel)
    if cond:
        return (((i % 7) - 3) * 0.0625).astype(np.float32)
    return (((i % 5) - 2) * 0.03125).astype(np.float32)


def fake_eps(x_in, t, with_uncond):
    """The fake model on a batch; rows of the first half are unconditional
    when with_uncond."""
    x = x_in.detach().cpu().numpy().astype(np.float32)
    rows = x.shape[0]
    per = x[0].size
    tf = np.float32(float(t.item()) if torch.is_tensor(t) else float(t))
    c = np.float32(0.75) + tf * np.float32(0.0002)
    out = np.empty_like(x)
    for r in range(rows):
        cond = not (with_uncond and r < rows // 2)
        v = x[r].reshape(-1)
        a = v * c + offsets(per, cond)
        q = (v / (v * v + np.float32(1.0))) * np.float32(0.1)
        out[r] = (a + q).reshape(x[r].shape)
    return torch.from_numpy(out)


def make_scheduler(sampler, schedule):
    cls_name, fixed = SAMPLERS[sampler]
    with open(SDXL_SCHEDULER) as f:
        config = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    config.update(fixed)
    config.update(SCHEDULES[schedule])
    return getattr(diffusers, cls_name).from_config(config)


class NoiseRecorder:
    """Wraps the randn_tensor that a scheduler module calls and records what
    it drew (the pipeline generator's stream after the initial latents)."""

    def __init__(self, scheduler):
        self.module = sys.modules[type(scheduler).__module__]
        self.drawn = []

    def __enter__(self):
        self.orig = getattr(self.module, "randn_tensor", None)
        if self.orig is not None:
            def wrapped(*args, **kwargs):
                out = self.orig(*args, **kwargs)
                self.drawn.append(out.detach().to(torch.float32).numpy().copy())
                return out
            self.module.randn_tensor = wrapped
        return self

    def __exit__(self, *exc):
        if self.orig is not None:
            self.module.randn_tensor = self.orig


def extra_step_kwargs(scheduler, generator):
    """StableDiffusionXLPipeline.prepare_extra_step_kwargs with eta 0."""
    import inspect
    params = set(inspect.signature(scheduler.step).parameters)
    extra = {}
    if "eta" in params:
        extra["eta"] = 0.0
    if "generator" in params:
        extra["generator"] = generator
    return extra


def run_case(sampler, schedule, steps, shape, cfg, rescale, seed):
    scheduler = make_scheduler(sampler, schedule)
    generator = torch.Generator().manual_seed(seed)
    noise0 = randn_tensor(shape, generator=generator, device=torch.device("cpu"), dtype=torch.float32)
    scheduler.set_timesteps(steps, device="cpu")
    timesteps = scheduler.timesteps
    latents = noise0 * scheduler.init_noise_sigma
    extra = extra_step_kwargs(scheduler, generator)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(0)
    guided = cfg > 1.0
    with NoiseRecorder(scheduler) as rec:
        for t in timesteps:
            model_in = torch.cat([latents] * 2) if guided else latents
            model_in = scheduler.scale_model_input(model_in, t)
            eps = fake_eps(model_in, t, guided)
            if guided:
                eps_u, eps_c = eps.chunk(2)
                eps = eps_u + cfg * (eps_c - eps_u)
                if rescale > 0.0:
                    eps = rescale_noise_cfg(eps, eps_c, guidance_rescale=rescale)
            latents = scheduler.step(eps, t, latents, **extra, return_dict=False)[0]
    sigmas = getattr(scheduler, "sigmas", None)
    tensors = {
        "noise0": noise0.numpy(),
        "timesteps": timesteps.to(torch.float32).numpy(),
        "final": latents.to(torch.float32).numpy(),
    }
    if rec.drawn:
        tensors["noise"] = np.concatenate([d.reshape(-1) for d in rec.drawn])
    if torch.is_tensor(sigmas):
        tensors["sigmas"] = sigmas.to(torch.float32).numpy()
    init = scheduler.init_noise_sigma
    init = float(init.item()) if torch.is_tensor(init) else float(init)
    return tensors, init


def cases():
    """(sampler, schedule, steps, shape, cfg, rescale, seed) for every
    supported pair: 4 steps on 1x4x8x8 with cfg 6, 8 steps on 1x4x12x16 with
    cfg 6 and guidance_rescale 0.7; plus single steps, no guidance, a batch of
    2 and longer runs for the two samplers issue 4 needs first."""
    out = []
    for sampler in SAMPLERS:
        for schedule in schedules_of(sampler):
            out.append((sampler, schedule, 4, (1, 4, 8, 8), 6.0, 0.0, 0))
            out.append((sampler, schedule, 8, (1, 4, 12, 16), 6.0, 0.7, 42))
        out.append((sampler, schedules_of(sampler)[0], 1, (1, 4, 8, 8), 1.0, 0.0, 7))
        out.append((sampler, schedules_of(sampler)[0], 5, (2, 4, 8, 8), 4.5, 0.3, 2**32 + 7))
    out += [
        ("Euler", "Normal", 30, (1, 4, 8, 8), 7.0, 0.0, 1),
        ("Euler", "Trailing", 61, (1, 4, 4, 4), 5.0, 0.0, 3),  # numpy arange gives 62 timesteps
        ("Euler", "Karras", 20, (1, 4, 8, 8), 1.0, 0.0, 5),
        ("DPM++ 2M", "Karras", 30, (1, 4, 8, 8), 7.0, 0.0, 1),
        ("DPM++ 2M", "Karras", 20, (1, 4, 8, 8), 1.0, 0.0, 5),
        ("DPM++ 2M", "Normal", 25, (1, 4, 8, 8), 6.0, 0.5, 9),
        ("DPM++ 3M SDE", "Exponential", 16, (1, 4, 8, 8), 6.0, 0.0, 11),
        ("UniPC", "Normal", 20, (1, 4, 8, 8), 6.0, 0.0, 13),
        ("LMS", "Karras", 12, (1, 4, 8, 8), 6.0, 0.0, 17),
    ]
    return out


def main():
    tensors, index = {}, []
    for k, (sampler, schedule, steps, shape, cfg, rescale, seed) in enumerate(cases()):
        t, init = run_case(sampler, schedule, steps, shape, cfg, rescale, seed)
        entry = {"id": k, "sampler": sampler, "schedule": schedule, "steps": steps,
                 "shape": list(shape), "cfg": cfg, "guidance_rescale": rescale,
                 "seed": str(seed), "init_noise_sigma": init, "tensors": sorted(t)}
        for name, value in t.items():
            tensors[f"c{k}.{name}"] = np.ascontiguousarray(value, dtype=np.float32)
        index.append(entry)
    table = make_scheduler("Euler", "Normal")
    tensors["table.betas"] = table.betas.numpy()
    tensors["table.alphas_cumprod"] = table.alphas_cumprod.numpy()
    tensors["table.sigmas"] = (((1 - table.alphas_cumprod) / table.alphas_cumprod) ** 0.5).numpy()
    save_file(tensors, OUT_ST)
    with open(OUT_JSON, "w") as f:
        json.dump({"generator": "tools/reference/make_sampler_goldens.py",
                   "torch": torch.__version__, "diffusers": diffusers.__version__,
                   "cases": index}, f, indent=1)
        f.write("\n")
    print(f"{len(index)} cases -> {harness.rel(OUT_ST)} ({os.path.getsize(OUT_ST)} bytes)")


if __name__ == "__main__":
    main()

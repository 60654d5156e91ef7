"""DPM++ 2S a goldens. diffusers has no such scheduler, so the reference is the
function A1111 runs for "DPM++ 2S a": k-diffusion's sample_dpmpp_2s_ancestral
(eta 1, s_noise 1), with the model wrapped in k-diffusion's CompVisDenoiser.
Two files come out:

tests/data/sampler_goldens_dpmpp_2s_a.{safetensors,json}: the fake eps-model
of make_sampler_goldens.py (same cases shape, same tensor names, read by
tests/test_samplers.c next to the diffusers ones): noise0, noise (every
step-noise draw, in order), timesteps (every model evaluation's t), sigmas
(the sigma list given to k-diffusion), final.

tests/data/small/goldens_dpmpp_2s_a.{safetensors,json}: the small model
(tests/test_sampler_2s_a.c):
    - txt2img, every schedule type, 64x64, 6 steps, cfg 6, seed 1234, with
      make_sampler_pipeline_goldens.py's prompt and negative prompt;
    - batches of 2: a list of generators seeded SEED+i (A1111's per-image
      seeds) and one generator for the batch;
    - img2img from tests/data/small/img2img_init.png, as
      make_img2img_goldens.py's cases (64x64, 8 steps, seed 77).

The sampler's inputs, as the C engine gives them:
    - sigmas: the schedule's sigmas exactly as the Euler-family plans take
      them, i.e. EulerDiscreteScheduler's scheduler.sigmas (SDXL's
      scheduler_config.json + the schedule's overrides, trailing 0);
    - the denoiser: CompVisDenoiser over diffusers' alphas_cumprod: model
      input x * 1/sqrt(sigma^2 + 1), t = DiscreteSchedule.sigma_to_t(sigma)
      (fractional, log-sigma interpolation), eps = the UNet with CFG on eps
      (uncond + cfg * (cond - uncond), one batch [uncond, cond] as the
      diffusers pipeline runs it), denoised = x - sigma * eps;
    - txt2img start: x = noise * sigmas[0], as A1111's KDiffusionSampler.sample
      does (not diffusers' init_noise_sigma, sqrt(sigma_max^2 + 1) for leading);
    - step noise: noise_sampler draws randn_tensor(shape, the generator(s) that
      drew the initial latents), so it continues the image's own stream (the
      engine's rng cpu);
    - img2img: StableDiffusionXLImg2ImgPipeline's get_timesteps and
      prepare_latents (VAE encode, posterior sample, scaling factor) with
      add_noise done as the k-diffusion family does it: x = x0 + noise *
      sigmas[t_start], then the sampler on sigmas[t_start:], t_start =
      steps - min(int(steps * strength), steps).

The pipeline's conditioning (encode_prompt, add_time_ids), decode and
postprocess are written out as in pipeline_stable_diffusion_xl.py; as a
check, k-diffusion's sample_euler through the same wrapper must reproduce the
pipeline's EulerDiscreteScheduler Karras image within 1/255.

k-diffusion is installed without its dependencies (setup_venv.sh); its
__init__ imports training-only modules, so k_diffusion.sampling and
k_diffusion.external are loaded under a bare package.

Run: tools/reference/.venv/bin/python tools/reference/make_dpmpp_2s_a_goldens.py
"""
import importlib
import importlib.metadata
import importlib.util
import json
import os
import sys
import time
import types

import numpy as np
import torch
from PIL import Image
from safetensors.numpy import save_file

import diffusers
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import rescale_noise_cfg
from diffusers.utils.torch_utils import randn_tensor

import harness
from make_img2img_goldens import INIT_PNG, cover
from make_pipeline_goldens import NEGATIVE, PROMPT, Store
from make_sampler_goldens import SCHEDULES, fake_eps, make_scheduler
from make_sampler_pipeline_goldens import SAME_CONFIG

FAKE_ST = os.path.join(harness.REPO, "tests", "data", "sampler_goldens_dpmpp_2s_a.safetensors")
FAKE_JSON = os.path.join(harness.REPO, "tests", "data", "sampler_goldens_dpmpp_2s_a.json")
OUT_ST = os.path.join(harness.SMALL_DIR, "goldens_dpmpp_2s_a.safetensors")
OUT_JSON = os.path.join(harness.SMALL_DIR, "goldens_dpmpp_2s_a.json")

SAMPLER = "DPM++ 2S a"
LABELS = list(SCHEDULES) + list(SAME_CONFIG)  # every schedule type the engine accepts
WIDTH = HEIGHT = 64
STEPS = 6
CFG = 6.0
SEED = 1234
I2I_SEED = 77
I2I_STEPS = 8
# (schedule, strength)
I2I_CASES = [("Karras", 0.6), ("Normal", 1.0)]
# (schedule, seeding) of the batches of 2
BATCH_CASES = [("Karras", "per-image"), ("Karras", "one")]


def load_k_diffusion():
    """k_diffusion.sampling and .external without the package's __init__."""
    spec = importlib.util.find_spec("k_diffusion")
    package = types.ModuleType("k_diffusion")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["k_diffusion"] = package
    return importlib.import_module("k_diffusion.sampling"), importlib.import_module("k_diffusion.external")


K_SAMPLING, K_EXTERNAL = load_k_diffusion()


def schedule_sigmas(schedule, steps):
    """EulerDiscreteScheduler's sigmas for the schedule label (with the final 0)."""
    scheduler = make_scheduler("Euler", SAME_CONFIG.get(schedule, schedule))
    scheduler.set_timesteps(steps, device="cpu")
    return scheduler.sigmas.to(torch.float32), scheduler


class EpsModel:
    """What CompVisDenoiser wraps (an LDM's alphas_cumprod and apply_model):
    eps of a model input at timestep t, guidance included. Records every t."""

    def __init__(self, eps_fn):
        self.alphas_cumprod = make_scheduler("Euler", "Normal").alphas_cumprod.to(torch.float32)
        self.eps_fn = eps_fn
        self.timesteps = []

    def apply_model(self, x_in, t):
        self.timesteps.append(float(t[0]))
        return self.eps_fn(x_in, t)


class Noise:
    """noise_sampler: randn of the latent's shape from the image generator(s),
    the stream that drew the initial latents; records every draw."""

    def __init__(self, generator, shape):
        self.generator, self.shape, self.drawn = generator, shape, []

    def __call__(self, sigma, sigma_next):
        z = randn_tensor(self.shape, generator=self.generator, device=torch.device("cpu"), dtype=torch.float32)
        self.drawn.append(z.numpy().copy())
        return z


def run_2s_a(model, x, sigmas, noise):
    denoiser = K_EXTERNAL.CompVisDenoiser(model)
    with torch.no_grad():
        return K_SAMPLING.sample_dpmpp_2s_ancestral(denoiser, x, sigmas, disable=True, eta=1.0, s_noise=1.0,
                                                    noise_sampler=noise)


# ---- the fake eps-model (tests/test_samplers.c) ----------------------------------------

def fake_cfg_eps(cfg, rescale):
    """make_sampler_goldens.run_case's model call: CFG and guidance_rescale on
    the fake model's eps."""
    guided = cfg > 1.0

    def eps(x_in, t):
        model_in = torch.cat([x_in] * 2) if guided else x_in
        out = fake_eps(model_in, t[0], guided)
        if not guided:
            return out
        eps_u, eps_c = out.chunk(2)
        out = eps_u + cfg * (eps_c - eps_u)
        return rescale_noise_cfg(out, eps_c, guidance_rescale=rescale) if rescale > 0.0 else out
    return eps


def fake_case(schedule, steps, shape, cfg, rescale, seed):
    sigmas, _ = schedule_sigmas(schedule, steps)
    generator = torch.Generator().manual_seed(seed)
    noise0 = randn_tensor(shape, generator=generator, device=torch.device("cpu"), dtype=torch.float32)
    model, noise = EpsModel(fake_cfg_eps(cfg, rescale)), Noise(generator, shape)
    final = run_2s_a(model, noise0 * sigmas[0], sigmas, noise)
    tensors = {"noise0": noise0.numpy(), "timesteps": np.array(model.timesteps, dtype=np.float32),
               "sigmas": sigmas.numpy(), "final": final.numpy()}
    if noise.drawn:
        tensors["noise"] = np.concatenate([d.reshape(-1) for d in noise.drawn])
    return tensors, float(sigmas[0])


def fake_cases():
    """make_sampler_goldens.cases() for one sampler: every schedule at 4 steps
    (1x4x8x8, cfg 6) and 8 steps (1x4x12x16, cfg 6, rescale 0.7); one step
    without guidance (the Euler branch alone); a batch of 2; 61 trailing
    steps, where numpy's arange gives 62 sigmas; a longer Karras run."""
    out = []
    for schedule in SCHEDULES:
        out.append((schedule, 4, (1, 4, 8, 8), 6.0, 0.0, 0))
        out.append((schedule, 8, (1, 4, 12, 16), 6.0, 0.7, 42))
    out += [
        ("Normal", 1, (1, 4, 8, 8), 1.0, 0.0, 7),
        ("Karras", 5, (2, 4, 8, 8), 4.5, 0.3, 2**32 + 7),
        ("Trailing", 61, (1, 4, 4, 4), 5.0, 0.0, 3),
        ("Karras", 30, (1, 4, 8, 8), 7.0, 0.0, 1),
    ]
    return out


def write_fake_goldens():
    tensors, index = {}, []
    for k, (schedule, steps, shape, cfg, rescale, seed) in enumerate(fake_cases()):
        t, init = fake_case(schedule, steps, shape, cfg, rescale, seed)
        index.append({"id": k, "sampler": SAMPLER, "schedule": schedule, "steps": steps, "shape": list(shape),
                      "cfg": cfg, "guidance_rescale": rescale, "seed": str(seed), "init_noise_sigma": init,
                      "tensors": sorted(t)})
        for name, value in t.items():
            tensors[f"c{k}.{name}"] = np.ascontiguousarray(value, dtype=np.float32)
    save_file(tensors, FAKE_ST)
    with open(FAKE_JSON, "w") as f:
        json.dump({"generator": "tools/reference/make_dpmpp_2s_a_goldens.py", "torch": torch.__version__,
                   "diffusers": diffusers.__version__, "k_diffusion": importlib.metadata.version("k-diffusion"),
                   "cases": index}, f, indent=1)
        f.write("\n")
    print(f"{len(index)} fake-model cases -> {harness.rel(FAKE_ST)} ({os.path.getsize(FAKE_ST)} bytes)")


# ---- the small model -------------------------------------------------------------------

def unet_cfg_eps(pipe, width, height, batch, cfg):
    """The pipeline's UNet call and CFG (pipeline_stable_diffusion_xl.py
    __call__ steps 3, 7 and 8): one batch [uncond, cond], eps guided."""
    pe, npe, ppe, nppe = pipe.encode_prompt(prompt=PROMPT, device=torch.device("cpu"), num_images_per_prompt=batch,
                                            do_classifier_free_guidance=True, negative_prompt=NEGATIVE)
    time_ids = pipe._get_add_time_ids((height, width), (0, 0), (height, width), dtype=pe.dtype,
                                      text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim)
    context = torch.cat([npe, pe])
    added = {"text_embeds": torch.cat([nppe, ppe]), "time_ids": torch.cat([time_ids, time_ids]).repeat(batch, 1)}

    def eps(x_in, t):
        out = pipe.unet(torch.cat([x_in] * 2), torch.cat([t] * 2), encoder_hidden_states=context,
                        added_cond_kwargs=added, return_dict=False)[0]
        eps_u, eps_c = out.chunk(2)
        return eps_u + cfg * (eps_c - eps_u)
    return eps


def decode(pipe, latents):
    """The pipeline's VAE decode and PIL-path rounding, HWC uint8 per image."""
    with torch.no_grad():
        image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
    images = pipe.image_processor.postprocess(image, output_type="np")
    return [np.ascontiguousarray((im * 255).round().astype(np.uint8)) for im in images]


def generators(seed, batch, seeding):
    if seeding == "per-image":
        return [torch.Generator().manual_seed(seed + i) for i in range(batch)]
    return torch.Generator().manual_seed(seed)


def txt2img(pipe, schedule, batch, seeding):
    sigmas, _ = schedule_sigmas(schedule, STEPS)
    generator = generators(SEED, batch, seeding)
    shape = (batch, pipe.unet.config.in_channels, HEIGHT // 8, WIDTH // 8)
    noise0 = randn_tensor(shape, generator=generator, device=torch.device("cpu"), dtype=torch.float32)
    model = EpsModel(unet_cfg_eps(pipe, WIDTH, HEIGHT, batch, CFG))
    return decode(pipe, run_2s_a(model, noise0 * sigmas[0], sigmas, Noise(generator, shape)))


def img2img(pipe, i2i, init, schedule, strength):
    sigmas, scheduler = schedule_sigmas(schedule, I2I_STEPS)
    i2i.scheduler = scheduler
    _, steps_run = i2i.get_timesteps(I2I_STEPS, strength, torch.device("cpu"))
    t_start = I2I_STEPS - steps_run
    generator = torch.Generator().manual_seed(I2I_SEED)
    image = i2i.image_processor.preprocess(cover(i2i.image_processor, init, WIDTH, HEIGHT))
    with torch.no_grad():
        x0 = i2i.prepare_latents(image, None, 1, 1, torch.float32, torch.device("cpu"), generator, add_noise=False)
    noise = randn_tensor(x0.shape, generator=generator, device=torch.device("cpu"), dtype=torch.float32)
    x = x0 + noise * sigmas[t_start]
    model = EpsModel(unet_cfg_eps(pipe, WIDTH, HEIGHT, 1, CFG))  # img2img's time ids are txt2img's here
    (out,) = decode(i2i, run_2s_a(model, x, sigmas[t_start:], Noise(generator, tuple(x0.shape))))
    return out, steps_run


def check_wrapper_reproduces_pipeline(pipe):
    """k-diffusion's Euler through the wrapper vs the pipeline's Euler Karras
    (fractional timesteps in both), from the same init_noise_sigma start."""
    sigmas, scheduler = schedule_sigmas("Karras", STEPS)
    generator = torch.Generator().manual_seed(SEED)
    noise0 = randn_tensor((1, 4, HEIGHT // 8, WIDTH // 8), generator=generator, device=torch.device("cpu"),
                          dtype=torch.float32)
    denoiser = K_EXTERNAL.CompVisDenoiser(EpsModel(unet_cfg_eps(pipe, WIDTH, HEIGHT, 1, CFG)))
    with torch.no_grad():
        latents = K_SAMPLING.sample_euler(denoiser, noise0 * scheduler.init_noise_sigma, sigmas, disable=True)
    (mine,) = decode(pipe, latents)
    pipe.scheduler = make_scheduler("Euler", "Karras")
    ref = pipe(prompt=PROMPT, negative_prompt=NEGATIVE, width=WIDTH, height=HEIGHT, num_inference_steps=STEPS,
               guidance_scale=CFG, generator=torch.Generator().manual_seed(SEED), output_type="np").images[0]
    ref = (ref * 255).round().astype(np.uint8)
    diff = int(np.abs(mine.astype(int) - ref.astype(int)).max())
    if diff > 1:
        raise SystemExit(f"the k-diffusion wrapper differs from the pipeline's Euler by {diff}/255")
    return diff


def write_image_goldens():
    pipe = harness.load_small_pipeline()
    pipe.watermark = None
    i2i = diffusers.StableDiffusionXLImg2ImgPipeline.from_pipe(pipe)
    i2i.set_progress_bar_config(disable=True)
    i2i.watermark = None
    assert not i2i.config.requires_aesthetics_score  # time ids as txt2img's
    init = Image.open(INIT_PNG).convert("RGB")
    store, cases, i2i_cases = Store(), [], []
    start = time.time()
    check = check_wrapper_reproduces_pipeline(pipe)
    for schedule in LABELS:
        (image,) = txt2img(pipe, schedule, 1, "one")
        cases.append({"id": len(cases), "sampler": SAMPLER, "schedule": schedule, "batch": 1, "seeding": "one",
                      "images": [store.add(image)]})
    for schedule, seeding in BATCH_CASES:
        images = txt2img(pipe, schedule, 2, seeding)
        cases.append({"id": len(cases), "sampler": SAMPLER, "schedule": schedule, "batch": 2, "seeding": seeding,
                      "images": [store.add(im) for im in images]})
    for schedule, strength in I2I_CASES:
        image, steps_run = img2img(pipe, i2i, init, schedule, strength)
        i2i_cases.append({"id": len(i2i_cases), "sampler": SAMPLER, "schedule": schedule, "width": WIDTH,
                          "height": HEIGHT, "steps": I2I_STEPS, "strength": strength, "steps_run": steps_run,
                          "batch": 1, "seeding": "one", "images": [store.add(image)]})
    elapsed = time.time() - start
    save_file(store.tensors, OUT_ST)
    with open(OUT_JSON, "w") as f:
        json.dump({"generator": "tools/reference/make_dpmpp_2s_a_goldens.py", "torch": torch.__version__,
                   "diffusers": diffusers.__version__, "k_diffusion": importlib.metadata.version("k-diffusion"),
                   "prompt": PROMPT, "negative_prompt": NEGATIVE, "width": WIDTH, "height": HEIGHT,
                   "steps": STEPS, "cfg": CFG, "seed": str(SEED), "rng": "cpu",
                   "euler_wrapper_vs_pipeline_max_diff": check, "cases": cases,
                   "img2img": {"init_image": harness.rel(INIT_PNG), "seed": str(I2I_SEED), "cases": i2i_cases}},
                  f, indent=1)
        f.write("\n")
    print(f"{len(cases)} txt2img and {len(i2i_cases)} img2img cases, {len(store.tensors)} distinct images in "
          f"{elapsed:.1f} s -> {harness.rel(OUT_ST)} ({os.path.getsize(OUT_ST)} bytes); wrapper check {check}/255")


def main():
    torch.set_num_threads(1)
    write_fake_goldens()
    write_image_goldens()


if __name__ == "__main__":
    main()

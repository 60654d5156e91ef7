"""stable-diffusion.cpp (PyPI stable-diffusion-cpp-python, CPU build, default
f16 weight handling) running bench/peers.sh's stages on the full-size random
SDXL checkpoint. Its own log lines give the stage times:

  python sdcpp_stages.py CKPT PX RUNS [--threads T] [--lora-dir DIR]

loads the model once ("loading tensors completed"), then generates RUNS
(0: only load) PX x PX images of one Euler step at CFG 6 and prints, per
run, the text encoding ("get_learned_condition"), the CFG step ("sampling
completed": one step = the cond and uncond UNet passes) and the VAE decode
("decode_first_stage"). With --lora-dir, the prompt carries the nine bench
LoRAs as <lora:...> tags (scales as bench/lora_merge.c) and the first run
prints their merge ("apply_loras completed"). Output lines:
  load <s> | run <i> encode <s> step <s> decode <s> [loras <s>] | peak_rss_mb <MiB>
(the peak after loading: VmHWM is reset once the model is in memory).
"""
import argparse
import io
import os
import re
import sys
import time

from stable_diffusion_cpp import StableDiffusion

PROMPT = "a photograph of an astronaut riding a horse on the moon, detailed, 8k"
NEGATIVE = "blurry, lowres, watermark"
LORAS = (("full_1", 1.5), ("full_2", 1.0), ("unet_tf", 0.3), ("unet_attn", 0.4), ("te_only", 1.0),
         ("tf_te1", 1.0), ("locon", 3.0), ("attn_te2", 1.0), ("ff_slider", 1.0))
STAGES = {"encode": "get_learned_condition", "step": "sampling", "decode": "decode_first_stage",
          "loras": "apply_loras"}


class Tee(io.TextIOBase):
    """Keeps what sd.cpp's log callback writes (it prints to sys.stderr)."""

    def __init__(self):
        self.text = []

    def write(self, s):
        self.text.append(s)
        sys.__stderr__.write(s)
        return len(s)

    def take(self):
        out, self.text = "".join(self.text), []
        return out


def seconds(log, stage):
    m = re.search(re.escape(STAGES[stage]) + r" completed, taking ([0-9.]+)s", log)
    return float(m.group(1)) if m else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("px", type=int)
    ap.add_argument("runs", type=int)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--lora-dir", default="")
    a = ap.parse_args()
    tee = Tee()
    sys.stderr = tee
    t0 = time.perf_counter()
    sd = StableDiffusion(model_path=a.ckpt, n_threads=a.threads, lora_model_dir=a.lora_dir, verbose=True)
    print(f"load {time.perf_counter() - t0:.3f}", flush=True)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    tee.take()
    prompt = PROMPT + "".join(f" <lora:{n}:{s}>" for n, s in LORAS) if a.lora_dir else PROMPT
    for i in range(a.runs):
        sd.generate_image(prompt=prompt, negative_prompt=NEGATIVE, width=a.px, height=a.px, cfg_scale=6.0,
                          sample_method="euler", sample_steps=1, seed=42)
        log = tee.take()
        parts = [f"{k} {v:.3f}" for k in STAGES if (v := seconds(log, k)) is not None]
        print(f"run {i + 1} " + " ".join(parts), flush=True)
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    print(f"peak_rss_mb {hwm / 1024:.1f}", flush=True)


if __name__ == "__main__":
    main()

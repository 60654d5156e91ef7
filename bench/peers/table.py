"""Builds issue 9's table from bench/peers.sh's raw logs (one per stage and
engine in the folder given, one folder per CPU, whose machine.txt names it): per stage and engine the median time, our time
divided by the peer's, the achieved GFLOP/s on the stage's nominal FLOPs, that
rate as a share of OpenBLAS sgemm's GFLOP/s measured in the same run (our
unet512 log, or our unet1024 log for the 1024² stages when it has one: the
1024² stages may be rerun on their own), and the peak RSS. Prints Markdown.

Nominal FLOPs (2 x multiply-adds, spec sdxl-numerics-diffusers.md §7.3):
  UNet   sd_unet_flops x batch 2 (bench_unet_step's unet_flop line);
  VAE    the SDXL decoder's convs and mid attention (vae_decoder_flop);
  encode CLIP-L to its 11th layer + bigG's 32 layers, 77 tokens, two prompts;
  loras  every up @ down product of the nine files (from their headers).
"""
import glob
import json
import os
import re
import statistics
import struct
import sys

ENGINES = ("ours", "ours-bf16", "diffusers", "sdcpp")
NAMES = {"ours": "sdxl-worker", "ours-bf16": "sdxl-worker, SDXL_CPU_PRECISION=bf16", "diffusers": "diffusers (torch fp32)",
         "sdcpp": "stable-diffusion.cpp (f16)"}
STAGES = ("load", "encode", "unet512", "unet1024", "vae512", "vae1024", "loras", "gen1024")
TITLES = {"load": "checkpoint load", "encode": "encode one prompt pair", "unet512": "CFG UNet step 512²",
          "unet1024": "CFG UNet step 1024²", "vae512": "VAE decode 512²", "vae1024": "VAE decode 1024²",
          "loras": "merge nine rank-32 LoRAs", "gen1024": "1024² generation, 1 step (peak RSS)"}
SDCPP_KEY = {"encode": "encode", "unet512": "step", "unet1024": "step", "vae512": "decode", "vae1024": "decode",
             "loras": "loras"}


def conv(cin, cout, px, k=3):
    return 2.0 * cin * cout * k * k * px


def vae_decoder_flop(h, w):
    """diffusers' AutoencoderKL Decoder of SDXL (block_out_channels 128/256/512/512, 3 resnets per up block)."""
    px = h * w
    f = conv(4, 512, px) + 2 * 2 * conv(512, 512, px)               # conv_in, mid resnets
    f += 2.0 * px * 512 * 512 * 4 + 2.0 * 2 * px * px * 512          # mid attention: q k v out, QK^T and PV
    cin = 512
    for level, cout in enumerate((512, 512, 256, 128)):
        for r in range(3):
            f += conv(cin if r == 0 else cout, cout, px) + conv(cout, cout, px)
            if r == 0 and cin != cout:
                f += conv(cin, cout, px, 1)
        cin = cout
        if level < 3:
            px *= 4
            f += conv(cout, cout, px)
    return f + conv(128, 3, px)


def encode_flop(tokens=77):
    def layers(d, ff, n):
        return n * (2.0 * tokens * (4 * d * d + 2 * d * ff) + 2.0 * 2 * tokens * tokens * d)
    return 2 * (layers(768, 3072, 11) + layers(1280, 5120, 32))


def lora_flop(folder):
    total = 0.0
    for path in glob.glob(os.path.join(folder, "*.safetensors")):
        with open(path, "rb") as f:
            header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
        for name, t in header.items():
            if name.endswith("lora_down.weight"):
                up = header[name.replace("lora_down", "lora_up")]["shape"]
                down = t["shape"]
                k = down[2] * down[3] if len(down) == 4 else 1
                total += 2.0 * up[0] * down[0] * down[1] * k
    return total


def numbers(pattern, text):
    return [float(m) for m in re.findall(pattern, text)]


def runs_median(values):
    return (statistics.median(values) if values else None), len(values)


def parse(stage, engine, text):
    """(median seconds or None, runs, peak RSS MiB or None); every program ends with peak_rss_mb."""
    rss = numbers(r"peak_rss_mb ([0-9.]+)", text)
    rss = rss[-1] if rss else None
    if engine.startswith("ours"):
        pats = {"load": r"load_median_s ([0-9.]+)", "encode": r"encode_pair_median_s ([0-9.]+)",
                "unet512": r"median ([0-9.]+) s/pass", "unet1024": r"median ([0-9.]+) s/pass",
                "vae512": r"median ([0-9.]+) s over", "vae1024": r"median ([0-9.]+) s over",
                "loras": r"merge nine \(cold\) +([0-9.]+) s", "gen1024": r"1024x1024 .*total ([0-9.]+) s"}
        t = numbers(pats[stage], text)
        if stage in ("loras", "gen1024"):   # one measurement per process, several processes in the log
            return (*runs_median(t), max(numbers(r"peak_rss_mb ([0-9.]+)", text), default=None))
        runs = re.search(r"^# \S+ (?:env \S+ )?\S+ \S+ (?:\d+ \d+ \d+ )?(\d+)$", text.splitlines()[0])
        return (t[-1] if t else None), int(runs.group(1)) if runs else 1, rss
    if engine == "diffusers":
        return (*runs_median([float(x) for x in re.findall(r"(?m)^run \d+ ([0-9.]+)$", text)]), rss)
    if stage == "load":
        return (*runs_median(numbers(r"(?m)^load ([0-9.]+)", text)), rss)
    if stage == "gen1024":
        parts = zip(*(numbers(k + r" ([0-9.]+)", text) for k in ("encode", "step", "decode")))
        return (*runs_median([sum(p) for p in parts]), rss)
    return (*runs_median(numbers(r"(?m)^run \d+ .*?" + SDCPP_KEY[stage] + r" ([0-9.]+)", text)), rss)


def main():
    folder = sys.argv[1]
    logs = {}
    for stage in STAGES:
        for engine in ENGINES:
            path = os.path.join(folder, f"{stage}.{engine}.log")   # peers.sh links shared logs per stage
            if os.path.exists(path):
                logs[stage, engine] = open(path, errors="replace").read()
    lora_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "reference", "big", "loras")
    flop = {"encode": encode_flop(), "vae512": vae_decoder_flop(64, 64), "vae1024": vae_decoder_flop(128, 128),
            "loras": lora_flop(lora_dir)}
    machine = os.path.join(folder, "machine.txt")
    if os.path.exists(machine):
        print(f"CPU backend: {open(machine).read().strip()}  ")
    sgemm = {}
    for s in ("unet512", "unet1024"):   # each UNet run prints its FLOPs and measures sgemm right after its passes
        log = logs.get((s, "ours"), "")
        if v := numbers(r"unet_flop ([0-9.]+)", log):
            flop[s] = v[-1]
        if v := numbers(r"OpenBLAS sgemm 2048\^3: ([0-9.]+)", log):
            sgemm[s] = v[-1]
    for s, v in sgemm.items():
        print(f"OpenBLAS sgemm 2048³ measured by the {TITLES[s]} run: {v:.1f} GFLOP/s  ")
    print("(the 1024² rows' % of sgemm use the second figure where there is one, the others the first)\n")
    print("| stage | engine | median s | runs | ours ÷ engine | GFLOP/s | % of sgemm | peak RSS GB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for stage in STAGES:
        ours_t = parse(stage, "ours", logs[stage, "ours"])[0] if (stage, "ours") in logs else None
        for engine in ENGINES:
            if (stage, engine) not in logs:
                continue
            t, runs, rss = parse(stage, engine, logs[stage, engine])
            ratio = ("<0.01" if ours_t / t < 0.005 else f"{ours_t / t:.2f}") if t and ours_t else "–"
            rate = flop.get(stage, 0) / t * 1e-9 if t and flop.get(stage) else None
            base = sgemm.get("unet1024" if "1024" in stage else "unet512", sgemm.get("unet512"))
            share = f"{100 * rate / base:.0f} %" if rate and base else "–"
            cells = [TITLES[stage], NAMES[engine], f"{t:.2f}" if t else "failed", str(runs),
                     ratio if engine != "ours" else "1", f"{rate:.1f}" if rate else "–", share,
                     f"{rss * 1024 ** 2 / 1e9:.2f}" if rss else "–"]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

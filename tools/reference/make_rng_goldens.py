"""Goldens for src/sd/rng*.c, written to tests/data/rng_goldens.json.

  cpu:   torch.Generator().manual_seed(seed) + successive torch.randn calls (fp32, CPU).
  cuda:  A1111's Philox emulation of torch.randn on a CUDA generator
         (AUTOMATIC1111/stable-diffusion-webui modules/rng_philox.py), computed by
         the numpy reference below, written from the algorithm: Philox4x32-10 with
         counter {call, 0, element, 0} and key {seed lo, seed hi}; Box-Muller
         sqrt(-2 ln u) sin v in float64 from float32 constants, cast to float32.
  a1111_docstring: the expected output printed in that file's docstring.
  torch_cuda: a sample of real torch.randn(device="cuda") output, taken from a
         dump made on a GPU by dump_cuda_randn.py (pass it with --cuda-dump; without
         it the section already in the JSON file is kept).

Values are float32 bit patterns (uint32). Seeds are decimal strings (uint64, as
torch holds them: a negative Python seed is its two's complement). Draws longer
than FULL are stored as a sample of indices plus a checksum: the sum of all
bit patterns mod 2^64, as a decimal string."""
import argparse
import json
import pathlib

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests/data/rng_goldens.json"
FULL = 400
U64 = 2**64

SEEDS = [0, 42, 2**32 + 7, -5, 2**63 - 1, 797935397, 2**64 - 1]
# Single draws on a fresh generator: fewer than 16 (double path), 16, 17 and
# 364 (tail re-draw), a 1024^2 SDXL latent, and a 520^2 one (n % 16 = 4).
CPU_SHAPES = [(1,), (7,), (15,), (16,), (17,), (4, 13, 7), (1, 4, 8, 8), (1, 4, 128, 128), (1, 4, 65, 65)]
# Successive calls on one generator: the double path's cached normal survives
# the vectorised calls in between.
CPU_SEQUENCES = [[(7,), (100,), (1,), (1, 4, 65, 65), (15,), (3,)],
                 [(1, 4, 16, 16), (1, 4, 16, 16), (5,), (5,)]]
# Seed 34 draws a uniform of exactly 0 at element 298484: u1 = 1, so
# radius = sqrt(-2 ln 1) = -0, and theta (u2 = 0.124) is in the first quadrant,
# so r cos and r sin are -0 at 298484 and 298492; torch's final fmadd makes them +0.
CPU_ZERO = (34, (298496,), [298484, 298492])
CUDA_SEEDS = [0, 42, 2**32 + 7, -5, 2**64 - 1]
CUDA_SHAPES = [(1,), (3, 4), (17,), (4, 13, 7), (1, 4, 128, 128)]
CUDA_SEQUENCE = [(1, 4, 16, 16), (1, 4, 16, 16), (7,), (4, 13, 7)]
BATCH = (2, 4, 8, 8)

DOCSTRING = [[-0.92466259, -0.42534415, -2.6438457, 0.14518388],
             [-0.12086647, -0.57972564, -0.62285122, -0.32838709],
             [-1.07454231, -0.36314407, -1.67105067, 2.26550497]]


def numel(shape):
    return int(np.prod(shape))


def draw_record(values, extra=()):
    """Full bits for a short draw, else a sample of indices (both ends, random
    ones, and any extra) plus the bit checksum."""
    bits = np.ascontiguousarray(values, dtype=np.float32).ravel().view(np.uint32)
    n = bits.size
    rec = {"n": n, "checksum": str(int(bits.astype(np.uint64).sum(dtype=np.uint64)))}
    if n <= FULL:
        rec["bits"] = bits.tolist()
        return rec
    rng = np.random.default_rng(n)
    idx = set(range(24)) | set(range(n - 24, n)) | set(rng.integers(0, n, 64).tolist())
    idx = sorted(idx | set(extra))
    rec["index"] = idx
    rec["bits"] = bits[idx].tolist()
    return rec


def torch_cpu_calls(seed, shapes, extra=()):
    g = torch.Generator().manual_seed(seed)
    return [draw_record(torch.randn(s, generator=g), extra) for s in shapes]


# ---- numpy reference of A1111's Philox emulation --------------------------

PHILOX_M = (0xD2511F53, 0xCD9E8D57)
PHILOX_W = (0x9E3779B9, 0xBB67AE85)
LO32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(c0, c1, c2, c3, seed):
    """Ten Philox rounds on uint64 arrays holding 32-bit words."""
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32)
    for r in range(10):
        if r:
            k0 = (k0 + np.uint64(PHILOX_W[0])) & LO32
            k1 = (k1 + np.uint64(PHILOX_W[1])) & LO32
        hi_lo0 = c0 * np.uint64(PHILOX_M[0])
        hi_lo2 = c2 * np.uint64(PHILOX_M[1])
        c0, c1, c2, c3 = ((hi_lo2 >> np.uint64(32)) ^ c1 ^ k0, hi_lo2 & LO32,
                          (hi_lo0 >> np.uint64(32)) ^ c3 ^ k1, hi_lo0 & LO32)
    return c0, c1


def philox_randn(seed, call, n):
    i = np.arange(n, dtype=np.uint64)
    zero = np.zeros(n, dtype=np.uint64)
    x, y = philox4x32_10(np.full(n, call, dtype=np.uint64), zero, i, zero, seed)
    inv32 = float(np.float32(2.3283064e-10))
    inv32_2pi = float(np.float32(2.3283064e-10 * 6.2831855))
    u = x.astype(np.float64) * inv32 + inv32 / 2
    v = y.astype(np.float64) * inv32_2pi + inv32_2pi / 2
    return (np.sqrt(-2.0 * np.log(u)) * np.sin(v)).astype(np.float32)


def philox_calls(seed, shapes):
    return [draw_record(philox_randn(seed % U64, k, numel(s))) for k, s in enumerate(shapes)]


# ---- real GPU output --------------------------------------------------------

def torch_cuda_section(path):
    d = np.load(path)
    cases = []
    for seed in SEEDS:
        key = f"{seed}:(1, 4, 128, 128)"
        f32 = d[key].ravel()
        f16 = d[key + ":f16"].ravel().astype(np.float16)
        idx = sorted(set(range(16)) | set(np.random.default_rng(seed % U64).integers(0, f32.size, 112).tolist()))
        cases.append({"seed": str(seed % U64), "n": int(f32.size), "index": idx,
                      "bits": f32.view(np.uint32)[idx].tolist(),
                      "f16_bits": f16.view(np.uint16)[idx].tolist()})
    return {"device": str(d["info"][0]), "cases": cases}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cuda-dump", help="npz written by dump_cuda_randn.py on a GPU")
    args = ap.parse_args()
    old = json.loads(OUT.read_text()) if OUT.exists() else {}

    cpu = []
    for seed in SEEDS:
        for shape in CPU_SHAPES:
            cpu.append({"seed": str(seed % U64), "calls": torch_cpu_calls(seed, [shape])})
    for seed in SEEDS[:3]:
        for seq in CPU_SEQUENCES:
            cpu.append({"seed": str(seed % U64), "calls": torch_cpu_calls(seed, seq)})
    seed, shape, zeros = CPU_ZERO
    calls = torch_cpu_calls(seed, [shape], zeros)
    assert all(calls[0]["bits"][calls[0]["index"].index(i)] == 0 for i in zeros)
    cpu.append({"seed": str(seed), "calls": calls})

    cuda = []
    for seed in CUDA_SEEDS:
        for shape in CUDA_SHAPES:
            cuda.append({"seed": str(seed % U64), "calls": philox_calls(seed, [shape])})
        cuda.append({"seed": str(seed % U64), "calls": philox_calls(seed, CUDA_SEQUENCE)})

    # Batches, two draws each (initial latents, then a sampler's noise).
    b, per = BATCH[0], BATCH[1:]
    batch = []
    for seed in (42, -5):
        one = torch.Generator().manual_seed(seed)
        gens = [torch.Generator().manual_seed((seed + i) % U64) for i in range(b)]
        for k in range(2):
            batch.append({"seed": str(seed % U64), "mode": "one_generator", "draw": k, "batch": b,
                          "record": draw_record(torch.randn(BATCH, generator=one))})
            batch.append({"seed": str(seed % U64), "mode": "seed_per_image", "draw": k, "batch": b,
                          "record": draw_record(torch.cat([torch.randn((1,) + per, generator=g) for g in gens]))})

    gold = {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": cpu,
        "cpu_batch": batch,
        "cuda": cuda,
        "a1111_docstring": {"seed": "0", "values": [v for row in DOCSTRING for v in row]},
        "torch_cuda": torch_cuda_section(args.cuda_dump) if args.cuda_dump else old.get("torch_cuda"),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(gold, separators=(",", ":")) + "\n")
    print("wrote", OUT, OUT.stat().st_size, "bytes")


if __name__ == "__main__":
    main()

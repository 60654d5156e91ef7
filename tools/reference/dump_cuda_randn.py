"""Dumps torch.randn on a CUDA generator (what the original Python worker and
A1111's default "GPU" seeds draw) for the seeds and shapes that
make_rng_goldens.py stores. Run on a machine with an NVIDIA GPU:
    python3 tools/reference/dump_cuda_randn.py OUT.npz
Keys: "<seed>:<shape>[:<dtype>]" for one call on a fresh generator and
"seq:<seed>:<i>" for the i-th of successive calls on one generator."""
import sys
import numpy as np
import torch

SEEDS = [0, 42, 2**32 + 7, -5, 797935397, 2**63 - 1, 2**64 - 1]
SHAPES = [(3, 4), (1,), (15,), (17,), (4, 13, 7), (1, 4, 128, 128)]
SEQUENCE = [(1, 4, 16, 16), (1, 4, 16, 16), (7,), (4, 13, 7)]
BIG = [(4, 4, 128, 128), (8, 4, 128, 128)]  # batch draws; the second exceeds the resident-block cap


def fresh(seed):
    return torch.Generator("cuda").manual_seed(seed)


def main(path):
    out = {}
    for seed in SEEDS:
        for shape in SHAPES:
            out[f"{seed}:{shape}"] = torch.randn(shape, generator=fresh(seed), device="cuda").cpu().numpy()
        out[f"{seed}:(1, 4, 128, 128):f16"] = torch.randn(
            (1, 4, 128, 128), generator=fresh(seed), device="cuda", dtype=torch.float16).float().cpu().numpy()
        g = fresh(seed)
        for i, shape in enumerate(SEQUENCE):
            out[f"seq:{seed}:{i}"] = torch.randn(shape, generator=g, device="cuda").cpu().numpy()
    for shape in BIG:
        out[f"0:{shape}"] = torch.randn(shape, generator=fresh(0), device="cuda").cpu().numpy()
    p = torch.cuda.get_device_properties(0)
    out["info"] = np.array([f"{torch.__version__} {p.name} sms={p.multi_processor_count} "
                            f"threads/sm={p.max_threads_per_multi_processor}"])
    np.savez_compressed(path, **out)
    print(out["info"][0], len(out), "arrays")


if __name__ == "__main__":
    main(sys.argv[1])

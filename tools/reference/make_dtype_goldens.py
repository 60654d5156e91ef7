"""Goldens for src/sd/dtype.c: torch's fp32<->fp16/bf16 rounding and the
float8_e4m3fn / float8_e5m2 decodings of all 256 byte values.
Writes tests/data/dtype_goldens.json (bit patterns as integers)."""
import json, pathlib, struct
import torch

out = pathlib.Path(__file__).resolve().parents[2] / "tests/data/dtype_goldens.json"
g = torch.Generator().manual_seed(0)
samples = [0.0, -0.0, 1.0, -2.5, 65504.0, 65519.0, 65520.0, 1e-8, 3e-8, 6e-8, 2.98e-8,
           1.0009765625, 1.00048828125, 1.00146484375, 3.14159265, -1e-5, 1e30, -1e30,
           float("inf"), float("-inf"), 6.1e-5, 6.09e-5, 3.3895e38]
samples += (torch.randn(200, generator=g) * torch.logspace(-9, 6, 200)).tolist()
f32 = torch.tensor(samples, dtype=torch.float32)

def bits32(t):
    return [struct.unpack("<I", struct.pack("<f", v))[0] for v in t.tolist()]

b = torch.arange(256, dtype=torch.uint8)
gold = {
    "f32_bits": bits32(f32),
    "f16_bits": [x & 0xFFFF for x in f32.half().view(torch.int16).tolist()],
    "bf16_bits": [x & 0xFFFF for x in f32.bfloat16().view(torch.int16).tolist()],
    "f8_e4m3_to_f32_bits": bits32(b.view(torch.float8_e4m3fn).float()),
    "f8_e5m2_to_f32_bits": bits32(b.view(torch.float8_e5m2).float()),
    "torch": torch.__version__,
}
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(gold) + "\n")
print("wrote", out)

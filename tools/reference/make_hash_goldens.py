#!/usr/bin/env python3
"""Goldens for src/image/hashes.c (tests/test_hashes.c): small model files
and their hashes computed with hashlib, the way A1111 1.10 defines them
(read from the public repository, re-implemented here):

  - sha256: hashlib.sha256 of the whole file (modules/hashes.py sha256;
    "Model hash"/AutoV2 is its first 10 hex digits);
  - addnet: hashlib.sha256 of the file from offset 8 + n to the end, n being
    the little-endian u64 at the start (modules/hashes.py
    addnet_hash_safetensors; AutoV3 is its first 12 hex digits);
  - autov3: what extensions-builtin/Lora/network.py puts in "Lora hashes":
    __metadata__["sshs_model_hash"][0:12] when that is a non-empty string,
    else addnet[0:12] for .safetensors, else sha256[0:12].

Writes tests/data/hashes/* and tests/data/hash_goldens.json."""
import hashlib
import json
import os
import struct

import numpy as np
from safetensors.numpy import save_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DIR = os.path.join(ROOT, "tests", "data", "hashes")


def addnet(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        f.seek(8 + n)
        return hashlib.sha256(f.read()).hexdigest()


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def autov3(path):
    if path.lower().endswith(".safetensors"):
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            meta = json.loads(f.read(n)).get("__metadata__", {})
        v = meta.get("sshs_model_hash")
        if isinstance(v, str) and v:
            return v[0:12]
        return addnet(path)[0:12]
    return sha256(path)[0:12]


def main():
    os.makedirs(DIR, exist_ok=True)
    rng = np.random.default_rng(42)
    tensors = {
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": rng.standard_normal((4, 320)).astype(np.float16),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": rng.standard_normal((320, 4)).astype(np.float16),
        "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": np.array(4.0, dtype=np.float32),
    }
    # One metadata key per file: safetensors writes several in no fixed order.
    files = {
        "lora_plain.safetensors": ({"ss_network_dim": "4"}, tensors),
        # Same tensors, other metadata: AutoV3 (tensor data only) must not change.
        "lora_other_meta.safetensors": ({"ss_output_name": "renamed " + "x" * 300}, tensors),
        "lora_sshs.safetensors": ({"sshs_model_hash": "feedfacecafe0123456789abcdef"}, tensors),
        "LORA_UPPER.SafeTensors": ({}, {"w": rng.standard_normal((64,)).astype(np.float32)}),
    }
    for name, (meta, t) in files.items():
        save_file(t, os.path.join(DIR, name), metadata=meta)
    with open(os.path.join(DIR, "legacy_lora.pt"), "wb") as f:
        f.write(bytes(rng.integers(0, 256, 3000, dtype=np.uint8)))
    out = {}
    for name in sorted(os.listdir(DIR)):
        p = os.path.join(DIR, name)
        entry = {"sha256": sha256(p), "autov2": sha256(p)[0:10], "autov3": autov3(p)}
        if name.lower().endswith(".safetensors"):
            entry["addnet"] = addnet(p)
        out[name] = entry
    with open(os.path.join(ROOT, "tests", "data", "hash_goldens.json"), "w") as f:
        json.dump({"generator": "tools/reference/make_hash_goldens.py (hashlib)", "files": out}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()

"""Deterministic, streaming safetensors writer.

Owns writing every .safetensors file of the harness: from a planned header and
a generator of tensors, one at a time (multi-GB files without holding them in
memory), with tensors sorted by name and metadata keys sorted, so the bytes
are reproducible (safetensors.torch.save_file writes the metadata map in a
random order). Format (safetensors docs, "Format"): 8-byte
little-endian header length N, N bytes of JSON {name: {dtype, shape,
data_offsets: [begin, end]}, "__metadata__": {str: str}} padded with spaces to
a multiple of 8, then the tensor bytes back to back in header order.
"""

import json
import struct

import torch

_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}
_NAMES = {v: k for k, v in _DTYPES.items()}


def _nbytes(dtype, shape):
    n = 1
    for d in shape:
        n *= d
    return n * torch.tensor([], dtype=_DTYPES[dtype]).element_size()


def write(path, plan, tensors, metadata):
    """plan: [(name, dtype, shape)] in file order; tensors: the same tensors, in order."""
    header = {"__metadata__": dict(sorted(metadata.items()))}
    offset = 0
    for name, dtype, shape in plan:
        size = _nbytes(dtype, shape)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for (name, dtype, shape), t in zip(plan, tensors, strict=True):
            if t.dtype != _DTYPES[dtype] or tuple(t.shape) != tuple(shape):
                raise ValueError(f"st_stream: {name} is {t.dtype}{tuple(t.shape)}, planned {dtype}{tuple(shape)}")
            f.write(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def save(path, tensors, metadata):
    """A dict of tensors, written in name order."""
    names = sorted(tensors)
    write(path, [(n, _NAMES[tensors[n].dtype], tuple(tensors[n].shape)) for n in names],
          (tensors[n] for n in names), metadata)

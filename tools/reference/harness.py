"""Shared plumbing of the reference harness.

Owns the repository paths of the small model's data, the assembly of a complete
offline diffusers config folder (committed configs + generated tokenizer
vocabularies), and loading the small checkpoint through diffusers'
`StableDiffusionXLPipeline.from_single_file` — the route every golden takes, so
that goldens always come from the committed single-file checkpoint itself.
"""

import json
import os
import shutil
import tempfile

import torch

import clip_vocab

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SMALL_DIR = os.path.join(REPO, "tests", "data", "small")
SMALL_CKPT = os.path.join(SMALL_DIR, "sdxl_small.safetensors")
SMALL_DIFFUSERS_DIR = os.path.join(SMALL_DIR, "diffusers")
TOKENIZER_FOLDERS = ("tokenizer", "tokenizer_2")


def complete_config_dir(configs_dir):
    """A temporary copy of a committed diffusers config folder with vocab.json and
    merges.txt added to its tokenizer folders. The caller removes it."""
    tmp = tempfile.mkdtemp(prefix="sdxl-ref-")
    folder = os.path.join(tmp, "model")
    shutil.copytree(configs_dir, folder)
    for sub in TOKENIZER_FOLDERS:
        clip_vocab.write_vocab_files(os.path.join(folder, sub))
    return folder


def load_pipeline(ckpt, configs_dir, dtype=torch.float32):
    """StableDiffusionXLPipeline from a single-file SGM checkpoint, fully offline."""
    from diffusers import StableDiffusionXLPipeline

    folder = complete_config_dir(configs_dir)
    try:
        pipe = StableDiffusionXLPipeline.from_single_file(
            ckpt, config=folder, local_files_only=True, torch_dtype=dtype)
    finally:
        shutil.rmtree(os.path.dirname(folder))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_small_pipeline():
    return load_pipeline(SMALL_CKPT, SMALL_DIFFUSERS_DIR)


def rel(path):
    """A path relative to the repository root, for messages and json files."""
    return os.path.relpath(path, REPO)


def sort_safetensors_metadata(path):
    """Rewrites a safetensors header with __metadata__ in sorted key order
    (safetensors writes it in hash order, so files with two or more keys differ
    from run to run); the tensors and their offsets stay as they are. The
    serialisation is first checked to give back the header as written."""
    with open(path, "rb") as fp:
        data = fp.read()
    n = int.from_bytes(data[:8], "little")
    text = data[8:8 + n].decode("utf-8")
    header = json.loads(text, object_pairs_hook=lambda pairs: dict(pairs))

    def dump(h):
        return json.dumps(h, separators=(",", ":"), ensure_ascii=False)

    assert dump(header) == text.rstrip(" "), "the header does not round-trip"
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    new = dump(header).encode("utf-8").ljust(n, b" ")
    assert len(new) == n
    with open(path, "wb") as fp:
        fp.write(data[:8] + new + data[8 + n:])

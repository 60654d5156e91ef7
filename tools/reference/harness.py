"""Shared plumbing of the reference harness.

Owns the repository paths of the small model's data, the assembly of a complete
offline diffusers config folder (committed configs + generated tokenizer
vocabularies), and loading the small checkpoint through diffusers'
`StableDiffusionXLPipeline.from_single_file` — the route every golden takes, so
that goldens always come from the committed single-file checkpoint itself.
"""

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

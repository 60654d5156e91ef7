"""Textual-inversion goldens of the small model (tests/test_embedding.c): two
random SDXL embeddings and what they do to the text conditioning and to a
txt2img image.

Writes
  tests/data/small/embeddings/sks_style.safetensors  clip_l [3, 16], clip_g [3, 32], F16
  tests/data/small/embeddings/lowq_neg.safetensors   clip_l [2, 16], clip_g [2, 32], F32
      (the SDXL format: one file, clip_l for CLIP-L and clip_g for bigG; random
      N(0, 1) / sqrt(width), the scale of the small model's token embeddings)
  tests/data/small/goldens_embedding.{safetensors,json}

References
- "diffusers": diffusers' load_textual_inversion, once per encoder with its
  tokenizer (clip_l with text_encoder/tokenizer, clip_g with
  text_encoder_2/tokenizer_2), then StableDiffusionXLPipeline.encode_prompt and
  a full pipeline call (make_pipeline_goldens' txt2img settings). diffusers
  adds tokens name, name_1, ... and spells the name out as them, so their
  rows carry the vectors. One difference is set aside: bigG's config has the
  legacy eos_token_id 2, with which transformers takes the pooled vector at the
  largest id, i.e. at the last embedding token instead of the EOS; A1111 (its
  placeholders are id 0) and ComfyUI take it at the EOS. The reference runs
  with eos_token_id 49407 (transformers' current rule, pooled at the first
  EOS), and the json records how far the legacy pooled vector lands from it.
  The A1111 path below must give the same tensors bit for bit.
- "a1111": a1111_prompt.py with its embedding rules (make_chunks with
  find_embedding; vectors put on the token-embedding rows by a forward hook,
  A1111's EmbeddingsWithFixes): weights on an embedding, an embedding that does
  not fit the rest of a chunk, the comma backtrack moving an embedding's slots
  while its fix stays behind, an unknown name, case.

Also writes fuzz/corpus/embedding/ (the seeds of fuzz/fuzz_embedding.c): the
two embeddings and small broken ones (an SD 1.5 embedding, other widths,
unequal vector counts, clip_g missing, 76 vectors, integer data).

Each case records prompt and negative, the chunks (ids of both encoders,
weights, the rows each embedding vector lands on), the embeddings used in
A1111's order of first use, and the tensors <case>.cond.{context,pooled} and,
when the negative is not empty, <case>.uncond.{context,pooled}.

Run: tools/reference/.venv/bin/python tools/reference/make_embedding_goldens.py
"""
import json
import os

import numpy as np
import torch
from safetensors.numpy import save_file
from safetensors.torch import save_file as save_torch

import a1111_prompt as A
import diffusers
import harness
from make_pipeline_goldens import Store, generate
from make_text_goldens import Encoder

EMB_DIR = os.path.join(harness.SMALL_DIR, "embeddings")
OUT_ST = os.path.join(harness.SMALL_DIR, "goldens_embedding.safetensors")
OUT_JSON = os.path.join(harness.SMALL_DIR, "goldens_embedding.json")
CLIP_SKIP, BACKTRACK = 2, 20

# name: (vectors, file dtype, seed)
EMBEDDINGS = {"sks_style": (3, torch.float16, 31), "lowq_neg": (2, torch.float32, 32)}

PLAIN = ("a photo of sks_style lighthouse at dawn, highly detailed", "lowq_neg, blurry")
FIT = "cat " * 73 + "sks_style dog"                                   # 73 + 3 > 75: the vectors open chunk 2
BACKTRACK_CASE = "cat " * 65 + ", sks_style " + "cat " * 6 + "dog"    # slots move to chunk 2, the fix stays
# (name, prompt, negative, reference)
CASES = [
    ("plain", PLAIN[0], PLAIN[1], "diffusers"),
    ("weighted", "(sks_style:1.3) lighthouse, [lowq_neg] ocean, SKS_Style again", "(lowq_neg:0.8)", "a1111"),
    ("fit", FIT, "", "a1111"),
    ("backtrack", BACKTRACK_CASE, "", "a1111"),
    ("unknown", "a photo of sks_styles and sks lighthouse", "", "a1111"),
]
# the diffusers pipeline call of the image case: (sampler, (width, height), steps, cfg, seed)
IMAGE = ("Euler", (64, 64), 4, 6.0, 42)


FUZZ_DIR = os.path.join(harness.REPO, "fuzz", "corpus", "embedding")


def write_fuzz_seeds(paths, te1_width, te2_width):
    os.makedirs(FUZZ_DIR, exist_ok=True)
    for name, path in paths.items():
        with open(path, "rb") as src, open(os.path.join(FUZZ_DIR, name + ".safetensors"), "wb") as dst:
            dst.write(src.read())
    g = torch.Generator().manual_seed(33)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.1

    seeds = {
        "sd15": {"emb_params": r(2, 768)},
        "other_widths": {"clip_l": r(2, 768), "clip_g": r(2, 1280)},
        "unequal": {"clip_l": r(2, te1_width), "clip_g": r(3, te2_width)},
        "no_clip_g": {"clip_l": r(1, te1_width)},
        "too_many": {"clip_l": r(76, te1_width), "clip_g": r(76, te2_width)},
        "integers": {"clip_l": torch.ones(1, te1_width, dtype=torch.int32),
                     "clip_g": torch.ones(1, te2_width, dtype=torch.int32)},
    }
    for name, tensors in seeds.items():
        save_torch(tensors, os.path.join(FUZZ_DIR, name + ".safetensors"))


def make_embeddings(te1_width, te2_width):
    vectors, paths = {}, {}
    os.makedirs(EMB_DIR, exist_ok=True)
    for name, (n, dtype, seed) in EMBEDDINGS.items():
        g = torch.Generator().manual_seed(seed)
        l = (torch.randn(n, te1_width, generator=g) / te1_width ** 0.5).to(dtype)
        gg = (torch.randn(n, te2_width, generator=g) / te2_width ** 0.5).to(dtype)
        paths[name] = os.path.join(EMB_DIR, name + ".safetensors")
        save_torch({"clip_l": l, "clip_g": gg}, paths[name])
        vectors[name] = (l.float(), gg.float())
    return vectors, paths


class Finder:
    """find_embedding for a1111_prompt.make_chunks: each name tokenized with
    CLIP-L's tokenizer, the longest match first."""

    def __init__(self, enc, vectors):
        self.names = sorted(((enc.tokenize(name), name) for name in vectors), key=lambda x: -len(x[0]))
        self.vectors = vectors

    def __call__(self, ids, pos):
        for name_ids, name in self.names:
            if ids[pos:pos + len(name_ids)] == name_ids:
                return name, self.vectors[name][0].shape[0], len(name_ids)
        return None


def a1111(enc, finder, vectors, text, negative):
    """(chunks, context, pooled) of one text by the A1111 rules; the empty
    negative is all zeros (force_zero_negative_prompt)."""
    runs = A.parse_attention(text)
    chunks, count = A.make_chunks(lambda texts: [enc.tokenize(t) for t in texts], runs, BACKTRACK, enc.comma_id,
                                  finder)
    context, pooled = A.encode(enc.pipe.text_encoder, enc.pipe.text_encoder_2,
                               [(c["ids_l"], c["weights"]) for c in chunks], CLIP_SKIP,
                               [c["fixes"] for c in chunks], vectors)
    if negative and text == "":
        context, pooled = torch.zeros_like(context), torch.zeros_like(pooled)
    return chunks, count, context[0], pooled[0]


def describe(chunks, vectors):
    """The chunks as the C prompt module must build them."""
    out = []
    for c in chunks:
        rows = []
        for slot, name in c["fixes"]:
            n = min(A.CHUNK + 2 - slot - 1, vectors[name][0].shape[0])
            rows += [[slot + 1 + v, name, v] for v in range(n)]
        out.append({"ids_l": c["ids_l"], "ids_g": c["ids_g"], "weights": c["weights"], "vectors": rows})
    return out


def used(chunks):
    order = []
    for c in chunks:
        for _, name in c["fixes"]:
            if name not in order:
                order.append(name)
    return order


def load_into_diffusers(pipe, vectors):
    for name, (l, g) in vectors.items():
        pipe.load_textual_inversion(l, token=name, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
        pipe.load_textual_inversion(g, token=name, text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)


def set_bigg_eos(pipe, eos):
    model = next(m for m in pipe.text_encoder_2.modules() if hasattr(m, "eos_token_id"))
    model.eos_token_id = eos


def main():
    torch.set_num_threads(1)
    pipe = harness.load_small_pipeline()
    pipe.watermark = None
    enc = Encoder(pipe)
    vectors, paths = make_embeddings(pipe.text_encoder.config.hidden_size, pipe.text_encoder_2.config.hidden_size)
    finder = Finder(enc, vectors)
    write_fuzz_seeds(paths, pipe.text_encoder.config.hidden_size, pipe.text_encoder_2.config.hidden_size)

    tensors, cases = {}, []
    for name, prompt, negative, reference in CASES:
        chunks, count, context, pooled = a1111(enc, finder, vectors, prompt, False)
        n_chunks, n_count, n_context, n_pooled = a1111(enc, finder, vectors, negative, True)
        tensors.update({f"{name}.cond.context": context, f"{name}.cond.pooled": pooled})
        if negative:  # an empty negative is all zeros
            tensors.update({f"{name}.uncond.context": n_context, f"{name}.uncond.pooled": n_pooled})
        cases.append({"name": name, "prompt": prompt, "negative": negative, "reference": reference,
                      "clip_skip": CLIP_SKIP, "comma_padding_backtrack": BACKTRACK,
                      "chunks": describe(chunks, vectors), "token_count": count, "used": used(chunks),
                      "negative_chunks": describe(n_chunks, vectors), "negative_used": used(n_chunks)})

    # diffusers: the plain case's conditioning must be the A1111 path's, bit for bit
    text_pipe = harness.load_small_pipeline()
    load_into_diffusers(text_pipe, vectors)
    legacy = text_pipe.encode_prompt(PLAIN[0], device="cpu", num_images_per_prompt=1,
                                     do_classifier_free_guidance=True, negative_prompt=PLAIN[1])
    set_bigg_eos(text_pipe, A.EOS)
    cond, uncond, pooled, uncond_pooled = text_pipe.encode_prompt(
        PLAIN[0], device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True, negative_prompt=PLAIN[1])
    for what, got in (("cond.context", cond[0]), ("uncond.context", uncond[0]), ("cond.pooled", pooled[0]),
                      ("uncond.pooled", uncond_pooled[0])):
        if not torch.equal(got, tensors["plain." + what]):
            raise SystemExit(f"plain.{what}: diffusers' load_textual_inversion differs from the A1111 path by "
                             f"{(got - tensors['plain.' + what]).abs().max().item()}")
    legacy_pooled = (legacy[2][0] - pooled[0]).abs().max().item()

    # the image: diffusers' pipeline with the embeddings loaded (eos as above)
    store = Store()
    sampler, (width, height), steps, cfg, seed = IMAGE
    text_pipe.watermark = None
    image = generate(text_pipe, sampler, width, height, steps, cfg, seed, PLAIN[1], prompt=PLAIN[0])
    image_case = {"prompt": PLAIN[0], "negative_prompt": PLAIN[1], "sampler": sampler, "width": width,
                  "height": height, "steps": steps, "cfg": cfg, "seed": str(seed), "image": store.add(image)}

    out = {k: v.detach().float().contiguous().numpy() for k, v in tensors.items()}
    out.update(store.tensors)
    save_file(out, OUT_ST)
    with open(OUT_JSON, "w") as f:
        json.dump({"generator": "tools/reference/make_embedding_goldens.py",
                   "torch": torch.__version__, "diffusers": diffusers.__version__,
                   "embeddings": [{"name": n, "file": harness.rel(paths[n]), "vectors": EMBEDDINGS[n][0]}
                                  for n in EMBEDDINGS],
                   "diffusers_legacy_eos_pooled_max_diff": legacy_pooled,
                   "cases": cases, "image": image_case}, f, indent=1)
        f.write("\n")
    print(f"{len(cases)} conditioning cases, 1 image; diffusers' legacy-eos pooled is {legacy_pooled:.3g} away -> "
          f"{harness.rel(OUT_ST)} ({os.path.getsize(OUT_ST)} bytes)")


if __name__ == "__main__":
    main()

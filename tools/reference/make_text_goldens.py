#!/usr/bin/env python3
"""Text-encoder goldens of the small SDXL model, read by the C tests.

Writes
  tests/data/small/goldens_text.safetensors  fp32 tensors, named <case>.<what>
  tests/data/small/goldens_text.json         the cases: prompt, negative,
      clip_skip, reference used, parsed runs, per-chunk token ids of both
      encoders and per-token weights, and the names/shapes of the tensors.

The model is the committed checkpoint, loaded through diffusers'
StableDiffusionXLPipeline.from_single_file (fp32, CPU, one thread).

References:
- "diffusers": StableDiffusionXLPipeline.encode_prompt, for prompts of at most
  75 tokens without emphasis or BREAK (diffusers truncates at 77 and knows no
  A1111 syntax). clip_skip n (A1111/ComfyUI meaning, below) is passed to
  diffusers as n - 2.
- "a1111": a1111_prompt.py, our reference of A1111's chunking, BREAK and
  emphasis rules. For every diffusers case the A1111 path is run as well and
  must give bit-identical tensors: that ties the A1111 reference to diffusers.

clip_skip (A1111/ComfyUI meaning): n >= 1 selects transformers'
hidden_states[-n] of BOTH encoders (n = 1: the last layer's output, n = 2: the
penultimate layer, SDXL's normal), never followed by the final LayerNorm; 0 or
absent means 2. The pooled vector always uses the full depth, the final
LayerNorm and text_projection. diffusers' clip_skip k is n = k + 2 (and
diffusers ignores it for the negative prompt). ComfyUI (CLIPSetLastLayer -n)
and stable-diffusion.cpp (--clip-skip n) apply n to both encoders, as here;
A1111 applies it to CLIP-L only, and only with its sdxl_clip_l_skip option.
"""

import os
import sys

import open_clip
import torch

import a1111_prompt as A
import clip_vocab
import harness
import st_stream

GOLDENS = os.path.join(harness.SMALL_DIR, "goldens_text.safetensors")
GOLDENS_JSON = os.path.join(harness.SMALL_DIR, "goldens_text.json")

PLAIN = "a photo of an astronaut riding a horse on mars, highly detailed, 8k"

# 164 tokens, no commas: three chunks (75, 75, 14) with no backtracking question.
LONG = (
    "an old lighthouse keeper walks along the rocky shore at dawn carrying a brass lantern "
    "while gulls circle above the grey water and the first light of the sun paints the clouds "
    "in shades of rose and amber behind him the white tower stands on the cliff with its great "
    "lamp still turning slowly and below the waves break against black stones covered in green "
    "moss and tiny shells the keeper stops to look at a small wooden boat drifting near the "
    "harbour wall where a fisherman in a yellow coat mends his nets and sings an old song about "
    "the sea the morning air is cold and smells of salt and seaweed and far away on the horizon "
    "a large ship sails toward the city whose roofs and towers glow softly in the golden light "
    "of the new day while children run down the hill toward the market square and the bells of "
    "the old church ring out across the quiet bay"
)

# Civitai-style tag list, 192 tokens. With A1111's comma backtracking the tag
# "leaves falling slowly through the thick morning mist" straddles the first
# 75-token boundary and moves whole to chunk 2 (chunks of 70, 74, 48 tokens);
# without it the chunks hold 75, 75, 42.
LONG_TAGS = (
    "masterpiece, best quality, ultra detailed, 8k wallpaper, cinematic lighting, volumetric fog, "
    "a young woman with long silver hair, blue eyes, freckles, gentle smile, wearing a dark green "
    "cloak with golden embroidery, leather gloves, holding an ancient map, standing on a wooden "
    "bridge over a mountain river, autumn forest, red and orange leaves, leaves falling slowly "
    "through the thick morning mist, sun rays through the trees, distant snowy peaks, small village with stone houses, "
    "smoke from chimneys, flock of birds in the sky, reflections in the water, wet stones, moss, "
    "ferns, wildflowers, depth of field, bokeh, sharp focus, intricate details, highly detailed "
    "face, detailed eyes, detailed hands, soft shadows, warm color palette, film grain, shot on "
    "35mm lens, award winning photograph, trending on artstation, concept art, fantasy, "
    "epic composition, rule of thirds, golden hour, rim light, subsurface scattering"
)

# (name, prompt, negative, clip_skip, reference, comma_padding_backtrack)
CASES = [
    ("plain", PLAIN, None, 2, "diffusers", 20),
    ("plain_negative", PLAIN, "blurry, low quality, watermark", 2, "diffusers", 20),
    ("empty_negative", PLAIN, "", 2, "diffusers", 20),
    ("empty_prompt", "", None, 2, "diffusers", 20),
    ("clip_skip_1", PLAIN, None, 1, "diffusers", 20),
    ("clip_skip_2", PLAIN, None, 2, "diffusers", 20),
    ("clip_skip_3", PLAIN, None, 3, "diffusers", 20),
    ("weighted", "a (red:1.3) cat, [blue] dog", None, 2, "a1111", 20),
    ("weighted_nested", "a ((masterpiece)), (best quality:1.2), [[[lowres]]], \\(literal\\) text (unclosed",
     None, 2, "a1111", 20),
    ("long", LONG, None, 2, "a1111", 20),
    ("long_tags", LONG_TAGS, None, 2, "a1111", 20),
    ("long_tags_no_backtrack", LONG_TAGS, None, 2, "a1111", 0),
    ("break", "a red cat sitting on a chair BREAK a blue dog sleeping on a sofa", None, 2, "a1111", 20),
    ("break_weighted", "(a red cat:1.2) BREAK BREAK [a blue dog], garden", "ugly BREAK blurry", 2, "a1111", 20),
]

CASE_NOTES = {
    "empty_negative": "negative \"\" gives all-zero context and pooled (A1111 force_zero_negative_prompt; "
                      "diffusers force_zeros_for_empty_prompt, reached with negative_prompt=None)",
    "empty_prompt": "an empty POSITIVE prompt is encoded (one chunk [BOS, EOS x 76]), not zeroed",
    "long_tags": "A1111 default comma_padding_backtrack = 20",
    "long_tags_no_backtrack": "comma_padding_backtrack = 0 (stable-diffusion.cpp has no backtracking)",
    "break_weighted": "'BREAK BREAK' closes one chunk and then an empty one; the negative has a BREAK too",
}


class Encoder:
    """The small model's tokenizer and encoders, and both reference paths."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.tok = pipe.tokenizer  # CLIP-L's tokenizer: pad EOS, no "!" special case
        self.comma_id = self.tok.convert_tokens_to_ids(",</w>")
        self.open_clip_tok = open_clip.tokenizer._tokenizer  # what A1111 uses for bigG

    def tokenize(self, text):
        ids = self.tok(text, add_special_tokens=False).input_ids
        # A1111 tokenizes bigG's text with open_clip; the goldens avoid the
        # characters where the two differ ("!" runs, HTML entities).
        if ids != self.open_clip_tok.encode(text):
            raise SystemExit(f"tokenizers disagree on {text!r}: pick another golden prompt")
        return ids

    def chunks(self, prompt, backtrack):
        runs = A.parse_attention(prompt)
        return runs, A.chunk_tokens(runs, self.tokenize, self.comma_id, backtrack)

    def a1111(self, prompt, clip_skip, backtrack):
        runs, chunks = self.chunks(prompt, backtrack)
        context, pooled = A.encode(self.pipe.text_encoder, self.pipe.text_encoder_2, chunks, clip_skip)
        return runs, chunks, context[0], pooled[0]

    def a1111_negative(self, negative, clip_skip, backtrack):
        if negative == "":
            _, _, context, pooled = self.a1111("", clip_skip, backtrack)
            return torch.zeros_like(context), torch.zeros_like(pooled)
        return self.a1111(negative, clip_skip, backtrack)[2:]

    def diffusers(self, prompt, negative, clip_skip):
        """encode_prompt; negative "" is passed as None (which zeroes it)."""
        cond, uncond, pooled, uncond_pooled = self.pipe.encode_prompt(
            prompt=prompt, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True,
            negative_prompt=None if negative == "" else negative, clip_skip=clip_skip - 2)
        return cond[0], pooled[0], uncond[0], uncond_pooled[0]


def run_case(enc, name, prompt, negative, clip_skip, reference, backtrack, tensors):
    runs, chunks, context, pooled = enc.a1111(prompt, clip_skip, backtrack)
    neg = enc.a1111_negative(negative, clip_skip, backtrack) if negative is not None else None
    if reference == "diffusers":
        d_context, d_pooled, d_uncond, d_uncond_pooled = enc.diffusers(prompt, negative, clip_skip)
        same = torch.equal(d_context, context) and torch.equal(d_pooled, pooled)
        if neg is not None:
            same = same and torch.equal(d_uncond, neg[0]) and torch.equal(d_uncond_pooled, neg[1])
        if not same:
            raise SystemExit(f"{name}: the A1111 reference differs from diffusers.encode_prompt")
        context, pooled = d_context, d_pooled
        if neg is not None:
            neg = (d_uncond, d_uncond_pooled)
    out = {"cond_context": f"{name}.cond.context", "cond_pooled": f"{name}.cond.pooled"}
    tensors[out["cond_context"]], tensors[out["cond_pooled"]] = context, pooled
    if neg is not None:
        out["uncond_context"], out["uncond_pooled"] = f"{name}.uncond.context", f"{name}.uncond.pooled"
        tensors[out["uncond_context"]], tensors[out["uncond_pooled"]] = neg
    case = {
        "name": name, "prompt": prompt, "negative": negative, "clip_skip": clip_skip,
        "reference": reference, "comma_padding_backtrack": backtrack,
        "parsed": runs,
        "chunks": [{"te1_ids": ids, "te2_ids": A.te2_ids(ids), "weights": w} for ids, w in chunks],
        "tensors": out,
        "shapes": {k: list(tensors[v].shape) for k, v in out.items()},
    }
    if negative not in (None, ""):
        neg_runs, neg_chunks = enc.chunks(negative, backtrack)
        case["negative_parsed"] = neg_runs
        case["negative_chunks"] = [{"te1_ids": ids, "te2_ids": A.te2_ids(ids), "weights": w}
                                   for ids, w in neg_chunks]
    if name in CASE_NOTES:
        case["note"] = CASE_NOTES[name]
    return case


def layer_goldens(enc, tensors):
    """Every hidden state of both encoders for the plain prompt, to debug layer by layer."""
    ids = enc.chunks(PLAIN, 20)[1][0][0]
    out1 = enc.pipe.text_encoder(torch.tensor([ids]), output_hidden_states=True)
    out2 = enc.pipe.text_encoder_2(torch.tensor([A.te2_ids(ids)]), output_hidden_states=True)
    tensors["plain.te1.hidden_states"] = torch.stack(out1.hidden_states)[:, 0]
    tensors["plain.te2.hidden_states"] = torch.stack(out2.hidden_states)[:, 0]
    tensors["plain.te2.final_layer_norm"] = out2.last_hidden_state[0]
    return {
        "plain.te1.hidden_states": "[layers+1, 77, W1]: index 0 = embeddings (token + position), "
                                   "index i = output of layer i, no final LayerNorm",
        "plain.te2.hidden_states": "[layers+1, 77, W2]: the same for bigG (its ids: te2_ids of the plain case)",
        "plain.te2.final_layer_norm": "[77, W2]: bigG's final LayerNorm of the last layer; "
                                      "pooled = row at the first EOS, times text_projection",
    }


def main():
    torch.set_num_threads(1)  # reductions in a fixed order: goldens regenerate bit for bit
    pipe = harness.load_small_pipeline()
    enc = Encoder(pipe)
    tensors, cases = {}, []
    with torch.no_grad():
        for case in CASES:
            cases.append(run_case(enc, *case, tensors))
        layers = layer_goldens(enc, tensors)
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    st_stream.save(GOLDENS, tensors, {"format": "pt", "model": os.path.basename(harness.SMALL_CKPT)})
    doc = {
        "model": os.path.basename(harness.SMALL_CKPT),
        "tensors_file": os.path.basename(GOLDENS),
        "dtype": "F32",
        "clip_skip": __doc__.split("clip_skip (A1111/ComfyUI meaning): ")[1].split("\n\n")[0].replace("\n", " "),
        "rules": "tools/reference/a1111_prompt.py and docs/prompts.md: parsing, chunking, BREAK, emphasis",
        "tensor_shapes": "context [77 * chunks, W1 + W2] (CLIP-L columns first), pooled [P]; batch dim dropped",
        "ids": "te1_ids: CLIP-L ids (pad 49407); te2_ids: bigG ids (0 after the first EOS); weights: per token",
        "cases": cases,
        "layer_tensors": layers,
    }
    clip_vocab.write_json(GOLDENS_JSON, doc)
    print(f"wrote {harness.rel(GOLDENS)} ({os.path.getsize(GOLDENS)} bytes, {len(tensors)} tensors) "
          f"and {harness.rel(GOLDENS_JSON)} ({len(cases)} cases)")


if __name__ == "__main__":
    sys.exit(main())

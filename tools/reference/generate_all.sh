#!/usr/bin/env bash
# Regenerates every committed reference artefact (small model, goldens, the
# CLIP tables compiled into the binary) with the pinned Python stack in
# tools/reference/.venv (created if missing).
# Usage: tools/reference/generate_all.sh [--check]
#   --check  fail if the regenerated files differ from the committed ones
# CI never runs this; the C tests only read the committed files. The demo
# model itself (tests/data/demo/) is trained by train_demo_model.py, which
# takes about 40 minutes and is run on its own; its goldens are made here.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
py="$here/.venv/bin/python"
[ -x "$py" ] || "$here/setup_venv.sh"

# The small model first: the model goldens read it.
scripts=(
  make_small_model.py
  gen_clip_tables.py
  make_tokenizer_goldens.py
  make_text_goldens.py
  make_dtype_goldens.py
  make_ops_goldens.py
  make_rng_goldens.py
  make_sampler_goldens.py
  make_unet_goldens.py
  make_vae_goldens.py
  make_pipeline_goldens.py
  make_sampler_pipeline_goldens.py
  make_img2img_goldens.py
  make_inpaint_goldens.py
  make_hires_goldens.py
  make_dpmpp_2s_a_goldens.py
  make_lora_goldens.py
  make_vae_file_goldens.py
  make_embedding_goldens.py
  make_demo_goldens.py
  make_image_goldens.py
  make_hash_goldens.py
  make_sigv4_goldens.py
)
for s in "${scripts[@]}"; do
  [ -f "$here/$s" ] || continue
  echo "== $s" >&2
  "$py" "$here/$s"
done

cd "$repo"
outputs=(tests/data fuzz/corpus/image_decode fuzz/corpus/lora fuzz/corpus/vae_file fuzz/corpus/embedding
         src/sd/clip_bpe_data.c src/sd/clip_bpe_data.h
         src/sd/unicode_data.c src/sd/unicode_data.h)
git ls-files -z -- "${outputs[@]}" | xargs -0 sha256sum
if [ "${1:-}" = "--check" ]; then
  git diff --exit-code --stat -- "${outputs[@]}" || { echo "generate_all: outputs differ from git" >&2; exit 1; }
  echo "generate_all: outputs identical to the committed files"
fi

#!/usr/bin/env bash
# Regenerates every committed reference artefact (small model + goldens) with
# the pinned Python stack in tools/reference/.venv (created if missing).
# Usage: tools/reference/generate_all.sh [--check]
#   --check  fail if the regenerated files differ from the committed ones
# CI never runs this; the C tests only read the committed files.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
py="$here/.venv/bin/python"
[ -x "$py" ] || "$here/setup_venv.sh"

"$py" "$here/make_small_model.py"
"$py" "$here/make_text_goldens.py"
"$py" "$here/make_unet_goldens.py"

cd "$repo"
sha256sum tests/data/small/sdxl_small.safetensors tests/data/small/goldens_text.safetensors \
          tests/data/small/config.json tests/data/small/goldens_text.json
sha256sum tests/data/small/goldens_unet.safetensors tests/data/small/goldens_unet.json
if [ "${1:-}" = "--check" ]; then
  git diff --exit-code --stat -- tests/data/small || { echo "generate_all: outputs differ from git" >&2; exit 1; }
  echo "generate_all: outputs identical to the committed files"
fi

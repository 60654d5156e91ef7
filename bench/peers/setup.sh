#!/usr/bin/env bash
# Installs the peer engines that bench/peers.sh compares against, into
# ignored folders:
#   - diffusers on PyPI torch (CPU): the reference venv tools/reference/.venv
#     (pinned torch/diffusers/transformers, tools/reference/setup_venv.sh);
#   - stable-diffusion.cpp as a CPU build: PyPI's stable-diffusion-cpp-python
#     (pinned below) built from source into bench/.peers/venv, with ggml's
#     default native CPU flags (AVX2/FMA/F16C here).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
peers=$root/bench/.peers
SDCPP_PY_VERSION=0.4.7

"$root/tools/reference/setup_venv.sh"

py=$root/tools/reference/.venv/bin/python   # the same interpreter version
[ -x "$peers/venv/bin/python" ] || "$("$py" -c 'import sys; print(sys._base_executable)')" -m venv "$peers/venv"
if ! "$peers/venv/bin/python" -c "import stable_diffusion_cpp" 2>/dev/null; then
  "$peers/venv/bin/pip" install -q --upgrade pip
  CMAKE_BUILD_PARALLEL_LEVEL=${JOBS:-2} CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_OPENMP=ON" \
    "$peers/venv/bin/pip" install -v --no-binary stable-diffusion-cpp-python \
    "stable-diffusion-cpp-python==$SDCPP_PY_VERSION" >"$peers/sdcpp-build.log" 2>&1 \
    || { tail -30 "$peers/sdcpp-build.log" >&2; exit 1; }
fi
echo "peers ready: diffusers in tools/reference/.venv, stable-diffusion.cpp in $peers/venv"

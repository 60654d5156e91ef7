# syntax=docker/dockerfile:1.7
# sdxl-worker for RunPod serverless.
#
#   docker build -t sdxl-worker .                    # models from the network volume
#   docker build --target baked -t sdxl-worker:baked \
#       --secret id=civitai_api_key,env=CIVITAI_API_KEY .   # models inside the image
#
# The build stage runs the same scripts as `make test` does in CI
# (scripts/install-deps.sh, then make), so CI exercises every build step.
# The key for baking is a BuildKit secret: it is mounted for the one RUN that
# downloads and never stored in a layer, an ARG or an ENV.

ARG CUDA_VERSION=12.6.3
ARG UBUNTU=ubuntu24.04
# The cudnn tags carry cuDNN 9, which the CUDA backend's convolutions use.

# ---- build ------------------------------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-cudnn-devel-${UBUNTU} AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/
RUN scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
# nvcc is on PATH here, so the CUDA backend module (build/libsdxl_cuda.so) is
# built too, for sm_80, 86, 89 and 90 plus PTX (CMakeLists.txt); the binary
# itself links no CUDA library and loads the module at run time.
RUN make BUILD=build JOBS="$(nproc)" && test -f build/libsdxl_cuda.so
# The Debian packages that own the shared libraries the binary loads: the
# runtime stage installs exactly these.
RUN for lib in $(ldd build/sdxl-worker | awk '/=> \// {print $3}'); do \
      dpkg -S "$lib" 2>/dev/null || dpkg -S "$(realpath "$lib")" 2>/dev/null || true; \
    done | cut -d: -f1 | sort -u > /runtime-packages.txt && cat /runtime-packages.txt

# ---- runtime: only the runtime libraries ------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-cudnn-runtime-${UBUNTU} AS runtime
COPY --from=build /runtime-packages.txt /tmp/
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      ca-certificates $(cat /tmp/runtime-packages.txt) \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt
WORKDIR /app
COPY --from=build /src/build/sdxl-worker /app/bin/sdxl-worker
# Beside the binary, where it looks for the module (SDXL_DEVICE=auto: the GPU
# when one is usable, else the CPU).
COPY --from=build /src/build/libsdxl_cuda.so /app/bin/libsdxl_cuda.so
COPY config/ /app/config/
COPY test_input.json demo_input.json /app/
# The bundled demo model, so `-e MODELS_CONFIG=config/demo.json` runs offline.
COPY tests/data/demo/sdxl_demo.safetensors /app/tests/data/demo/
COPY tests/data/demo/loras/ /app/tests/data/demo/loras/
# Fail the build if a shared library is missing.
RUN ! ldd /app/bin/sdxl-worker /app/bin/libsdxl_cuda.so | grep -q "not found"
ENV OMP_WAIT_POLICY=PASSIVE \
    MODELS_CONFIG=config/models.json \
    MODELS_DIR=/runpod-volume/models
CMD ["/app/bin/sdxl-worker"]

# ---- baked: models inside the image, outside /runpod-volume ------------------
# (a mounted network volume would hide anything baked under /runpod-volume)
FROM runtime AS baked
ENV MODELS_DIR=/models
RUN --mount=type=secret,id=civitai_api_key,required=false \
    CIVITAI_API_KEY="$(cat /run/secrets/civitai_api_key 2>/dev/null || true)" \
    /app/bin/sdxl-worker fetch-models

# ---- default: models on the network volume (/runpod-volume/models) ----------
FROM runtime AS volume

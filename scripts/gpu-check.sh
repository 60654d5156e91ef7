#!/usr/bin/env bash
# The GPU check of issues 14 and 15 in one command, on a machine with an
# NVIDIA GPU, CUDA 13 libraries and PyTorch, and no network (docs/gpu-check.md):
#   1. the machine: GPU, driver, CUDA, nvcc, torch; where cuBLAS 13, cuDNN 9
#      and cudart 13 are (the Python packages', else /usr/local/cuda)
#   2. our binaries: .gpu/bin and .gpu/lib.tar.xz from scripts/gpu-pack.sh,
#      else a Release build with CUDA from source (cmake + make; needs our
#      Debian dependencies); .gpu/whl (diffusers, open_clip) into $WORK/site
#   3. at once: the GPU tests (test_cuda_ops, test_cuda_pipeline), diffusers'
#      fp16/bf16-vs-fp32 gap on the same jobs (gpu_reference.py gap) and the
#      full-size random checkpoint on local disk (make_full_parallel.py)
#   4. one at a time, timed: the worker on test_input.json in local-test mode
#      twice (cold, then warm with rng "cpu" so that its image can be set
#      against diffusers'; the warm run last when the cold one took over a
#      minute), diffusers on the same checkpoint and job
#      (gpu_reference.py full), bench_unet_step (1024^2, batch 2, 5 passes)
#      and bench_vae_decode (1024^2) in fp16, bench_unet_step in bf16 if time
#      is left
#   5. $OUT/summary.md (gpu-check-out/ when OUT is unset): our figures next to
#      diffusers', the tests per case, the gap; summary.json, logs.tar.gz, PNGs
# Every part has a time limit and the whole a budget (GPU_CHECK_BUDGET, 460 s:
# the issue's 8 minutes with room to pack the results); the summary names
# what failed, timed out or was skipped. Exit 0 when every part passed.
#
#   scripts/gpu-check.sh             on the GPU machine, from the repo root
#   scripts/gpu-check.sh --emulate   here: the same flow on the small model,
#                                    the host emulator's CUDA module
#                                    (build-gpu/libsdxl_cuda_emu.so) and
#                                    diffusers on the CPU
# Variables: OUT, GPU_CHECK_BUDGET (s), GPU_CHECK_WORK (scratch folder),
# GPU_CHECK_PYTHON (the Python with torch; emulate: tools/reference/.venv's).
set -uo pipefail
set -a   # every variable reaches the parts run in a child bash (part below)
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=gpu
case "${1:-}" in
    --emulate) MODE=emulate ;;
    "") ;;
    *) echo "usage: scripts/gpu-check.sh [--emulate]" >&2; exit 2 ;;
esac
START=$(date +%s)
if [ $MODE = gpu ]; then BUDGET=${GPU_CHECK_BUDGET:-460}; else BUDGET=${GPU_CHECK_BUDGET:-1500}; fi
RESERVE=20   # seconds kept for the summary and the logs
OUTDIR=${OUT:-$ROOT/gpu-check-out}
WORK=${GPU_CHECK_WORK:-/tmp/sdxl-gpu-check-$MODE}
LOGS=$WORK/logs
PARTS=$LOGS/parts.tsv
rm -rf "$WORK" && mkdir -p "$LOGS" "$WORK/models/checkpoints" "$OUTDIR" || exit 1
: >"$PARTS"

elapsed() { echo $(($(date +%s) - START)); }
say() { echo "[$(elapsed) s] $*" | tee -a "$LOGS/gpu-check.log"; }

# part NAME LIMIT CMD...: CMD with at most LIMIT seconds (less when the budget
# is nearly spent), its output in $LOGS/NAME.log, its outcome in $PARTS:
# ok, failed (exit N), timeout, skipped (exit 77 or no time left).
part() {
    local name=$1 limit=$2 left rc=0 t0 secs status cmd
    shift 2
    cmd="$*"
    left=$((BUDGET - RESERVE - $(elapsed)))
    ((limit > left)) && limit=$left
    if ((limit < 5)); then
        printf '%s\tskipped\t0\tno time left in the budget\n' "$name" >>"$PARTS"
        say "$name: skipped (no time left)"
        return 1
    fi
    say "$name (limit $limit s)"
    t0=$(date +%s%N)
    # timeout kills the command's whole process group; a function of this
    # script runs in a child bash (the functions and variables are exported)
    if declare -F "$1" >/dev/null; then
        export -f $(declare -F | awk '{print $3}')
        set -- bash -c '"$@"' "$1" "$@"
    fi
    timeout -k 10 "$limit" "$@" >"$LOGS/$name.log" 2>&1 || rc=$?
    secs=$((($(date +%s%N) - t0) / 1000000))
    secs=$((secs / 1000)).$(printf %03d $((secs % 1000)))
    case $rc in
        0) status=ok ;;
        124 | 137) status=timeout ;;
        77) status=skipped ;;
        *) status="failed (exit $rc)" ;;
    esac
    printf '%s\t%s\t%.1f\t%s\n' "$name" "$status" "$secs" "${cmd:0:300}" >>"$PARTS"
    say "$name: $status in $(printf %.1f "$secs") s"
    return $rc
}

# skip NAME WHY: a part that is not run, with the reason
skip() { printf '%s\tskipped\t0\t%s\n' "$1" "$2" >>"$PARTS"; say "$1: skipped ($2)"; }

# ---- 1. the machine and its CUDA libraries -------------------------------------------------------

PY=${GPU_CHECK_PYTHON:-python3}
[ $MODE = emulate ] && [ -z "${GPU_CHECK_PYTHON:-}" ] && [ -x tools/reference/.venv/bin/python ] &&
    PY=$ROOT/tools/reference/.venv/bin/python

machine() {
    echo "== uname: $(uname -srm); $(ldd --version | head -1); $(nproc) cores; $(free -g | awk '/Mem/ {print $2}') GiB"
    grep PRETTY_NAME /etc/os-release
    echo "== nvidia-smi"; nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv
    echo "== nvcc"; nvcc --version | tail -2
    echo "== python: $PY"
    "$PY" -c 'import sys, torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
print("gpu", torch.cuda.get_device_name() if torch.cuda.is_available() else "none visible to torch")'
}

# The first folder of $1 (colon-separated) holding library $2.
lib_dir() {
    local d
    for d in ${1//:/ }; do [ -e "$d/$2" ] && { echo "$d"; return; }; done
}

# LD_LIBRARY_PATH for the CUDA module: cudart 13, cuBLAS 13 (+Lt) and cuDNN 9
# from the device's Python packages (what torch runs with), else the toolkit.
cuda_libraries() {
    local candidates so dir dirs=""
    candidates=$("$PY" -c 'import glob, os, nvidia
print(":".join(sorted({os.path.dirname(p) for r in nvidia.__path__ for p in glob.glob(r + "/**/lib*.so*", recursive=True)})))' 2>/dev/null)
    candidates+=":/usr/local/cuda/lib64:/usr/local/cuda/lib:/usr/local/cuda/targets/x86_64-linux/lib"
    for so in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcudnn.so.9; do
        dir=$(lib_dir "$candidates" $so)
        if [ -z "$dir" ]; then echo "cuda libraries: $so not found" >&2; continue; fi
        echo "cuda libraries: $so in $dir" >&2
        [[ ":$dirs:" == *":$dir:"* ]] || dirs+="${dirs:+:}$dir"
    done
    if ! ldconfig -p | grep -q 'libcuda\.so\.1 '; then   # the driver, outside the loader's cache
        dir=$(lib_dir /usr/local/nvidia/lib64:/usr/local/nvidia/lib:/usr/lib/x86_64-linux-gnu:/usr/lib64 libcuda.so.1)
        [ -n "$dir" ] && dirs+=":$dir"
        echo "cuda libraries: driver libcuda.so.1 in ${dir:-(not found)}" >&2
    fi
    echo "$dirs"
}

if [ $MODE = gpu ]; then
    part machine 60 machine
    CUDA_LD=$(cuda_libraries 2>>"$LOGS/machine.log")
    cat "$LOGS/machine.log"
else
    part machine 60 "$PY" -c 'import sys, torch; print("emulate mode: python", sys.version.split()[0], "torch", torch.__version__)'
    CUDA_LD=""
fi

# ---- 2. binaries and wheels ---------------------------------------------------------------------

unpack_libraries() {
    mkdir -p "$WORK/lib"
    if command -v xz >/dev/null; then
        tar -xJf .gpu/lib.tar.xz -C "$WORK/lib"
    else
        "$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="tar")' .gpu/lib.tar.xz "$WORK/lib"
    fi
}

build_from_source() {
    [ -f build-gpu/CMakeCache.txt ] || cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DSDXL_CUDA=ON || return
    cmake --build build-gpu -j "$(nproc)" --target sdxl-worker sdxl_cuda test_cuda_ops test_cuda_pipeline \
        bench_unet_step bench_vae_decode
}

if [ -f .gpu/bin/sdxl-worker ]; then
    BIN=$ROOT/.gpu/bin
    chmod +x "$BIN"/*   # in case the copy to this machine dropped the modes
    part unpack 60 unpack_libraries
    OURS_LD=$WORK/lib${CUDA_LD:+:$CUDA_LD}
    # the sources the binaries were built from, as gpu-pack.sh recorded them
    part sources 30 sha256sum --quiet -c .gpu/SOURCES ||
        say "WARNING: .gpu/bin was built from other sources than this tree ($LOGS/sources.log): rerun scripts/gpu-pack.sh"
else
    say "no .gpu/bin: building from source into build-gpu/ (the budget starts after the build)"
    BIN=$ROOT/build-gpu
    OURS_LD=$CUDA_LD
    build_from_source >"$LOGS/build.log" 2>&1 || { say "the build failed: $LOGS/build.log"; tail -20 "$LOGS/build.log"; }
    START=$(date +%s)
fi
if [ $MODE = gpu ]; then
    MODULE=$BIN/libsdxl_cuda.so
else
    MODULE=$ROOT/build-gpu/libsdxl_cuda_emu.so
    [ -f "$MODULE" ] || { echo "emulate: $MODULE is missing: run scripts/gpu-pack.sh (or build sdxl_cuda_emu)" >&2; exit 1; }
fi
say "binaries $BIN, CUDA module $MODULE, LD_LIBRARY_PATH for them: $OURS_LD"
# Our binaries see .gpu's libraries first: the Debian builds they were linked
# and checked against (gpu-pack.sh), OpenBLAS's OpenMP build among them (the
# same soname as the pthread build). Nothing else sees them: the Python parts
# keep the device's own libraries. CUDA's come from the device.
ours() { env LD_LIBRARY_PATH="$OURS_LD" SDXL_CUDA_MODULE="$MODULE" "$@"; }

install_wheels() {
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .gpu/whl/*.whl
}
if [ -d .gpu/whl ]; then part wheels 90 install_wheels; else skip wheels "no .gpu/whl (diffusers must be installed)"; fi
pyref() { env PYTHONPATH="$WORK/site" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 "$PY" tools/reference/gpu_reference.py "$@"; }

# ---- 3. tests, the gap and the checkpoint, side by side -------------------------------------------

CKPT=$WORK/sdxl_full_random.safetensors
# lim GPU EMU: a part's limit in seconds on the GPU machine or under --emulate
lim() { if [ $MODE = gpu ]; then echo "$1"; else echo "$2"; fi; }
if [ $MODE = gpu ]; then
    make_checkpoint() {
        env PYTHONPATH="$WORK/site" "$PY" tools/reference/make_full_parallel.py "$CKPT" --jobs $(($(nproc) * 3 / 4))
    }
    GAP_DEVICE=cuda GAP_PRECISIONS=fp32,fp16,bf16
    PIPELINE_FILTER=""
else
    make_checkpoint() { cp tests/data/small/sdxl_small.safetensors "$CKPT"; }   # the small model stands in
    GAP_DEVICE=cpu GAP_PRECISIONS=fp32,fp16
    PIPELINE_FILTER=test_fp16_matches_cpu   # the emulator is slow; CTest runs the whole file (cuda-emu)
fi
# Expected on an H100 (docs/gpu-check.md): checkpoint 20-40 s, tests 30-90 s,
# gap 30-60 s. The limits leave room, but not so much that one hang starves
# the timed parts below.
part checkpoint "$(lim 150 240)" make_checkpoint &
ckpt_pid=$!
part gap "$(lim 150 400)" pyref --device $GAP_DEVICE gap --precisions $GAP_PRECISIONS &
gap_pid=$!
part test_cuda_ops "$(lim 90 150)" ours SDXL_CUDA_TESTS_REQUIRE=1 "$BIN/test_cuda_ops"
part test_cuda_pipeline "$(lim 180 600)" ours SDXL_CUDA_TESTS_REQUIRE=1 SDXL_TEST_FILTER="$PIPELINE_FILTER" \
    "$BIN/test_cuda_pipeline"
wait $gap_pid
wait $ckpt_pid
status_of() { awk -F'\t' -v p="$1" '$1 == p {print $2}' "$PARTS"; }

# ---- 4. timed, one at a time ---------------------------------------------------------------------
# In the order of what the issues need most: the worker's job (issue 14's
# "done when"), diffusers' figures for the same checkpoint and job, then
# the benchmarks (step time, VAE), bf16 last and only with time to spare.

printf '{"checkpoint": {"name": "SDXL full-size, random weights", "path": "%s"}, "loras": []}\n' "$CKPT" \
    >"$WORK/models.json"
# run 1: test_input.json as it is; run 2: the same with rng "cpu" (torch's CPU
# generator, as diffusers' job below), so the two images can be compared
"$PY" - "$MODE" "$WORK" <<'EOF'
import json, sys
mode, work = sys.argv[1:]
job = json.load(open("test_input.json"))
if mode == "emulate":
    job["input"].update(width=256, height=256, steps=2)
json.dump(job, open(f"{work}/job1.json", "w"))
job["input"]["rng"] = "cpu"
json.dump(job, open(f"{work}/job2.json", "w"))
# run 3: four images at once, few steps: the device peak a 24 GB card must hold
job["input"].update(num_images=4, steps=4 if mode == "gpu" else 1)
json.dump(job, open(f"{work}/job3.json", "w"))
EOF

worker() {
    local n=$1
    mkdir -p "$WORK/out$n"
    ours SDXL_DEVICE=cuda MODELS_CONFIG="$WORK/models.json" MODELS_DIR="$WORK/models" SDXL_OUTPUT_DIR="$WORK/out$n" \
        "$BIN/sdxl-worker" "$WORK/job$n.json" >"$WORK/result$n.json"
}
if [ $MODE = gpu ]; then
    LATENT=128 RUNS=5
    FULL_ARGS=(full "$CKPT")
else
    LATENT=8 RUNS=2
    FULL_ARGS=(--device cpu full "$CKPT" --config tests/data/small/diffusers --size 256 --steps 2 --runs 2)
fi
if [ "$(status_of checkpoint)" = ok ]; then
    part worker_cold "$(lim 150 180)" worker 1
    # a slow cold run (over a minute) puts the warm one after diffusers and the benchmarks
    warm=now
    if [ "$(status_of worker_cold)" = timeout ]; then
        skip worker_warm "the cold run timed out"
        warm=no
    elif (($(awk -F'\t' '$1 == "worker_cold" {printf "%d", $3}' "$PARTS") > $(lim 60 600))); then
        warm=later
    fi
    [ $warm = now ] && part worker_warm "$(lim 120 180)" worker 2
    part diffusers_full "$(lim 180 600)" pyref "${FULL_ARGS[@]}" --image "$WORK/diffusers.png"
    part bench_unet_fp16 "$(lim 120 150)" ours SDXL_DEVICE=cuda SDXL_CUDA_PRECISION=fp16 "$BIN/bench_unet_step" \
        "$CKPT" $LATENT $LATENT 2 $RUNS
    part bench_vae_fp16 90 ours SDXL_DEVICE=cuda SDXL_CUDA_PRECISION=fp16 "$BIN/bench_vae_decode" \
        "$CKPT" $LATENT $LATENT 0 3
    [ $warm = later ] && part worker_warm "$(lim 120 180)" worker 2
    worker_png=$(ls "$WORK"/out2/*.png 2>/dev/null | head -1)
    if [ -n "$worker_png" ] && [ -f "$WORK/diffusers.png" ]; then
        part compare 60 pyref compare "$worker_png" "$WORK/diffusers.png"
    else
        skip compare "no worker or diffusers image"
    fi
    # optional, with time to spare: four images at 1024² (issue 14's 24 GB
    # question), the UNet step on the plain paths (issue 15's A/B), bf16
    if (($(elapsed) < BUDGET - RESERVE - 90)); then
        part worker_batch4 "$(lim 90 300)" worker 3
    else
        skip worker_batch4 "less than 90 s left"
    fi
    if (($(elapsed) < BUDGET - RESERVE - 60)); then
        part bench_unet_plain 90 ours SDXL_DEVICE=cuda SDXL_CUDA_PRECISION=fp16 SDXL_CUDA_ATTENTION=generic \
            SDXL_CUDA_GEMM=plain "$BIN/bench_unet_step" "$CKPT" $LATENT $LATENT 2 $RUNS
    else
        skip bench_unet_plain "less than 60 s left"
    fi
    if (($(elapsed) < BUDGET - RESERVE - 60)); then
        part bench_unet_bf16 90 ours SDXL_DEVICE=cuda SDXL_CUDA_PRECISION=bf16 "$BIN/bench_unet_step" "$CKPT" \
            $LATENT $LATENT 2 $RUNS
    else
        skip bench_unet_bf16 "less than 60 s left"
    fi
else
    for p in worker_cold worker_warm diffusers_full compare bench_unet_fp16 bench_vae_fp16 worker_batch4 \
        bench_unet_plain bench_unet_bf16; do
        skip $p "no checkpoint"
    done
fi

# ---- 5. the summary ------------------------------------------------------------------------------

say "writing the summary to $OUTDIR"
"$PY" scripts/gpu_summary.py "$MODE" "$WORK" "$OUTDIR" "$(elapsed)"
rc=$?
cp "$WORK/out1/"*.png "$OUTDIR/worker_job.png" 2>/dev/null
cp "$WORK/out2/"*.png "$OUTDIR/worker_job_rng_cpu.png" 2>/dev/null
cp "$WORK/diffusers.png" "$OUTDIR/diffusers_job.png" 2>/dev/null
say "done: $([ $rc = 0 ] && echo 'every part passed' || echo 'some parts did not pass (summary.md)')"
tar -C "$WORK" -czf "$OUTDIR/logs.tar.gz" logs
cat "$OUTDIR/summary.md"   # also on the console: the device call's output tail holds it
exit $rc

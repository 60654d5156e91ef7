#!/usr/bin/env bash
# Issue 9's benchmark: our engine, diffusers (PyPI torch, CPU, fp32) and
# stable-diffusion.cpp (PyPI stable-diffusion-cpp-python, CPU build, f16
# weights) on the full-size random SDXL checkpoint, stage by stage, in one run
# on this machine, then the table of docs/benchmarks.md (bench/peers/table.py).
#
#   bench/peers.sh [--runs N] [--big-runs M] [--engines "ours diffusers sdcpp"] [STAGE...]
#
# Engines: ours, ours-bf16 (ours with SDXL_CPU_PRECISION=bf16, on CPUs with
# AVX-512-BF16), diffusers, sdcpp.
# STAGEs (default all): load encode unet512 unet1024 vae512 vae1024 loras gen1024
# N runs per stage (default 3; the median is reported), M for the 1024² stages
# (default N). Every engine gets the same thread count ($THREADS, default nproc)
# and OMP_WAIT_POLICY=PASSIVE. Raw logs go to bench/.peers/results/CPU/ (CPU:
# the model and family/model numbers, so each CPU measured keeps its own
# table), one per stage and engine, with machine.txt naming the CPU, its
# features and the BLAS kernel; the table is rebuilt from all logs there, so
# stages can be rerun one at a time. Installs what is missing first (bench/peers/setup.sh,
# the checkpoint and the nine LoRAs from tools/reference/).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=3 big_runs= engines="ours diffusers sdcpp" stages=()
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --big-runs) big_runs=$2; shift 2 ;;
    --engines) engines=$2; shift 2 ;;
    *) stages+=("$1"); shift ;;
  esac
done
big_runs=${big_runs:-$runs}
[ ${#stages[@]} -gt 0 ] || stages=(load encode unet512 unet1024 vae512 vae1024 loras gen1024)
export THREADS=${THREADS:-$(nproc)} OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=${THREADS:-$(nproc)}

ckpt=tools/reference/big/sdxl_full_random.safetensors
loras=tools/reference/big/loras
refpy=tools/reference/.venv/bin/python
sdpy=bench/.peers/venv/bin/python
bench/peers/setup.sh
[ -f "$ckpt" ] || "$refpy" tools/reference/make_small_model.py --full
[ -f "$loras/locon.safetensors" ] || "$refpy" tools/reference/make_bench_loras.py
cmake -S . -B build-bench >/dev/null   # the build type the worker ships (RelWithDebInfo, -O2)
cmake --build build-bench -j"$THREADS" >/dev/null
machine=$(build-bench/bench_gemm --describe)
cpu=$(echo "$machine" | sed -E 's/ \(([A-Za-z]+) family ([0-9]+) model ([0-9]+).*/-f\2m\3/; s/[^A-Za-z0-9.-]+/-/g')
out=bench/.peers/results/$cpu
mkdir -p "$out"
echo "$machine" >"$out/machine.txt"
echo "cpu: $machine" >&2

ours() {   # stage -> our bench program's command
  case $1 in
    load|encode) echo build-bench/bench_text_encode "$ckpt" "$runs" ;;
    unet512) echo build-bench/bench_unet_step "$ckpt" 64 64 2 "$runs" ;;
    unet1024) echo build-bench/bench_unet_step "$ckpt" 128 128 2 "$big_runs" ;;
    vae512) echo build-bench/bench_vae_decode "$ckpt" 64 64 0 "$runs" ;;
    vae1024) echo build-bench/bench_vae_decode "$ckpt" 128 128 0 "$big_runs" ;;
    loras) echo build-bench/bench_lora_merge "$ckpt" "$loras" ;;
    gen1024) echo build-bench/bench_txt2img "$ckpt" "$THREADS" ;;
  esac
}
ours_bf16() { echo env SDXL_CPU_PRECISION=bf16 "$(ours "$1")"; }
diffusers() {
  local py="$refpy bench/peers/diffusers_stages.py $ckpt"
  case $1 in
    load|encode) echo "$py $1 --runs $runs --threads $THREADS" ;;
    unet512) echo "$py unet 64 64 --runs $runs --threads $THREADS" ;;
    unet1024) echo "$py unet 128 128 --runs $big_runs --threads $THREADS" ;;
    vae512) echo "$py vae 64 64 --runs $runs --threads $THREADS" ;;
    vae1024) echo "$py vae 128 128 --runs $big_runs --threads $THREADS" ;;
    loras) echo "$py loras $loras --runs $runs --threads $THREADS" ;;
    gen1024) echo "$py gen 1024 --runs $big_runs --threads $THREADS" ;;
  esac
}
sdcpp() {   # one process gives encode, step and decode at one size; RUNS 0 only loads
  local py="$sdpy bench/peers/sdcpp_stages.py $ckpt"
  case $1 in
    load) echo "$py 512 0 --threads $THREADS" ;;
    encode|unet512|vae512) echo "$py 512 $runs --threads $THREADS" ;;
    unet1024|vae1024|gen1024) echo "$py 1024 $big_runs --threads $THREADS" ;;
    loras) echo "$py 512 1 --threads $THREADS --lora-dir $loras" ;;
  esac
}
processes() {   # programs that measure their stage once per process run this many times
  case $1/$2 in
    ours*/loras|sdcpp/loras|sdcpp/load) echo "$runs" ;;
    ours*/gen1024) echo "$big_runs" ;;
    *) echo 1 ;;
  esac
}
sdcpp_log() {   # stages that share one sd.cpp process share its log
  case $1 in
    load) echo "$out/load.sdcpp.log" ;;
    encode|unet512|vae512) echo "$out/512.sdcpp.log" ;;
    unet1024|vae1024|gen1024) echo "$out/1024.sdcpp.log" ;;
    loras) echo "$out/loras.sdcpp.log" ;;
  esac
}

declare -A done_logs=()
for stage in "${stages[@]}"; do
  for engine in $engines; do
    log=$out/$stage.$engine.log
    if [ "$engine" = sdcpp ]; then   # the stage's name points at the shared log
      log=$(sdcpp_log "$stage")
      [ "$log" = "$out/$stage.sdcpp.log" ] || ln -sfn "$(basename "$log")" "$out/$stage.sdcpp.log"
    fi
    [ -n "${done_logs[$log]:-}" ] && continue
    done_logs[$log]=1
    cmd=$(${engine//-/_} "$stage")
    echo "== $stage / $engine: $cmd" >&2
    rm -f "$log" && : >"$log"   # never truncate through a stage's link to a shared log
    for _ in $(seq "$(processes "$engine" "$stage")"); do
      # Every process starts from the page cache: a peer's 15-22 GB before it
      # evicts part of the 7 GB checkpoint on this 24 GB machine.
      cat "$ckpt" "$loras"/*.safetensors >/dev/null
      { echo "# $(date -u +%FT%TZ) $cmd"; $cmd 2>&1; } >>"$log" || echo "  failed, see $log" >&2
    done
  done
done
"$refpy" bench/peers/table.py "$out"

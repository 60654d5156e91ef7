#!/usr/bin/env bash
# Packs what the GPU check (scripts/gpu-check.sh) needs on the device machine
# and the machine lacks, into .gpu/ (git-ignored; the device call carries it):
#   .gpu/bin/          sdxl-worker, libsdxl_cuda.so (sm_80/86/89/90 + PTX),
#                      test_cuda_ops, test_cuda_pipeline, bench_unet_step,
#                      bench_vae_decode: a Release build (build-gpu/), stripped
#   .gpu/lib.tar.xz    the shared libraries they load that the device lacks
#                      (our Debian builds of curl, OpenBLAS, libpng, ... under
#                      their sonames; not glibc, libstdc++, libgcc_s, the
#                      driver or the CUDA libraries, which come from the
#                      device). Compressed: 58 MB of libraries and the 21 MB
#                      repository would exceed the device call's 64 MiB.
#   .gpu/whl/          wheels of the reference side that the device's Python
#                      lacks: diffusers and open_clip (the CLIP vocabulary)
#   .gpu/MANIFEST      commit, checksums, the glibc the binaries need
#   .gpu/SOURCES       sha256 of each source file the binaries come from
# Before packing it checks that every binary runs with only those libraries
# and glibc: in a private mount namespace where the system's library folder
# shows glibc alone (tests/data/small model, CPU backend; the CUDA module
# loads up to the missing driver).
# Usage: scripts/gpu-pack.sh        (docs/gpu-check.md)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=build-gpu
PACK=$BUILD/pack
BINS="sdxl-worker libsdxl_cuda.so test_cuda_ops test_cuda_pipeline bench_unet_step bench_vae_decode"
# reference-side wheels: versions of tools/reference/requirements.txt; their
# other requirements are in the device's package list (/work/.library/device/KINDS.md)
# except importlib_metadata, which diffusers imports only on Python < 3.8
WHEELS="diffusers==0.42.1 open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.5"
# sonames that come from the device: glibc, the C++ runtime, the driver, CUDA
FROM_DEVICE='^(linux-vdso|ld-linux-x86-64|libc|libm|libmvec|libdl|libpthread|librt|libresolv|libutil|libanl|libstdc\+\+|libgcc_s|libcuda|libcudart|libcublas|libcublasLt|libcudnn[a-z_]*|libnvrtc[a-z-]*|libnvJitLink)\.so'
GLIBC_DIR=/usr/lib/x86_64-linux-gnu
SOURCES="CMakeLists.txt src bench tests/support tests/test_cuda_ops.c tests/test_cuda_pipeline.c"
say() { printf 'gpu-pack: %s\n' "$*"; }

build() {
    [ -f $BUILD/CMakeCache.txt ] || cmake -S . -B $BUILD -DCMAKE_BUILD_TYPE=Release -DSDXL_CUDA=ON
    local targets="sdxl-worker sdxl_cuda test_cuda_ops test_cuda_pipeline bench_unet_step bench_vae_decode"
    # the host emulator's module too, for gpu-check.sh --emulate
    cmake --build $BUILD --target help >$BUILD/targets.txt
    if grep -q '^\.\.\. sdxl_cuda_emu$' $BUILD/targets.txt; then targets+=" sdxl_cuda_emu"; fi
    cmake --build $BUILD -j "$(nproc)" --target $targets
}

# .nv_fatbin's size in a module (the device code strip must keep)
fatbin_size() { readelf -SW "$1" | awk '$2 == ".nv_fatbin" {print $6}'; }

stage_binaries() {
    rm -rf $PACK && mkdir -p $PACK/bin $PACK/lib
    for b in $BINS; do
        cp $BUILD/$b $PACK/bin/$b
        strip --strip-unneeded $PACK/bin/$b
    done
    local before after
    before=$(fatbin_size $BUILD/libsdxl_cuda.so) after=$(fatbin_size $PACK/bin/libsdxl_cuda.so)
    [ -n "$before" ] && [ "$before" = "$after" ] || { say "strip changed the device code (.nv_fatbin $before -> $after)"; exit 1; }
    say "device code: .nv_fatbin of 0x$after bytes kept; architectures $(grep -a -o -E '(sm|compute)_[0-9]+' $PACK/bin/libsdxl_cuda.so | sort -u | tr '\n' ' ')"
}

# Every library a binary loads (ldd, system paths) that the device does not bring.
stage_libraries() {
    local b line so path
    for b in $BINS; do
        ldd $BUILD/$b | grep ' => ' | while read -r line; do
            so=${line%% *}
            [[ $so =~ $FROM_DEVICE ]] && continue
            path=$(awk '{print $3}' <<<"$line")
            [ -f "$path" ] || { say "$b: $so is not found here ($line)"; exit 1; }
            cp -L "$path" $PACK/lib/"$so"
        done
    done
    chmod 644 $PACK/lib/*
}

# A folder with glibc and the C++ runtime alone, shown in place of the
# system's library folder.
glibc_only_dir() {
    local d=$1 f
    mkdir -p "$d"
    for f in ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libmvec.so.1 libdl.so.2 libpthread.so.0 librt.so.1 \
             libresolv.so.2 libstdc++.so.6 libgcc_s.so.1; do
        [ -e $GLIBC_DIR/$f ] && cp -L $GLIBC_DIR/$f "$d/$f"
    done
}

# Runs "$@" with only $PACK/lib and glibc (and the CUDA toolkit's folders,
# for the module's own CUDA libraries) in a private mount namespace.
run_hidden() {
    local glibc=$BUILD/pack-glibc
    [ -d $glibc ] || glibc_only_dir $glibc
    local cuda_libs=/usr/local/cuda/lib64:/usr/local/cuda/lib:/usr/local/lib
    unshare -m --propagation private sh -c '
        mount --bind /dev/null /etc/ld.so.cache &&
        mount --bind "$1" '$GLIBC_DIR' &&
        shift && exec /usr/bin/env -i PATH=/usr/bin:/bin HOME=/tmp "$@"' \
        sh "$ROOT/$glibc" LD_LIBRARY_PATH="$ROOT/$PACK/lib:$cuda_libs" OMP_NUM_THREADS=2 "$@"
}

check_isolated() {
    local b out tmp=$BUILD/pack-check
    rm -rf $tmp && mkdir -p $tmp/models/checkpoints $tmp/out
    for b in $BINS; do
        out=$(run_hidden /lib64/ld-linux-x86-64.so.2 --list "$ROOT/$PACK/bin/$b")
        # (the system folder shows the glibc-only copy here)
        if grep -q 'not found' <<<"$out" || grep -v -E "$ROOT/$PACK/lib/|$GLIBC_DIR/|/lib/x86_64-linux-gnu/|/usr/local/" <<<"$out" | grep -q '=>'; then
            say "$b does not resolve to .gpu's libraries and glibc alone:"; echo "$out"; exit 1
        fi
    done
    say "every binary resolves to the packed libraries, glibc and CUDA alone"
    printf '{"checkpoint": {"name": "small", "path": "%s"}, "loras": []}\n' \
        "$ROOT/tests/data/small/sdxl_small.safetensors" >$tmp/models.json
    python3 -c 'import json,sys; j=json.load(open("test_input.json")); j["input"].update(width=256, height=256, steps=2)
json.dump(j, open(sys.argv[1], "w"))' $tmp/job.json
    run_hidden SDXL_DEVICE=cpu MODELS_CONFIG=$ROOT/$tmp/models.json MODELS_DIR=$ROOT/$tmp/models \
        SDXL_OUTPUT_DIR=$ROOT/$tmp/out "$ROOT/$PACK/bin/sdxl-worker" "$ROOT/$tmp/job.json" >$tmp/result.json 2>$tmp/worker.log
    grep -q '"timings"' $tmp/result.json && [ -s $tmp/out/local_test_0.png ] ||
        { say "the worker did not run its job:"; tail -5 $tmp/worker.log; exit 1; }
    run_hidden SDXL_DEVICE=cpu "$ROOT/$PACK/bin/bench_unet_step" "$ROOT/tests/data/small/sdxl_small.safetensors" 8 8 2 1 >$tmp/unet.log
    run_hidden SDXL_DEVICE=cpu "$ROOT/$PACK/bin/bench_vae_decode" "$ROOT/tests/data/small/sdxl_small.safetensors" 8 8 >$tmp/vae.log
    # without a GPU the CUDA tests exit 77 after opening the module: its libraries load, the driver is missing
    for b in test_cuda_ops test_cuda_pipeline; do
        local rc=0
        (cd "$ROOT" && run_hidden "$ROOT/$PACK/bin/$b") >$tmp/$b.log 2>&1 || rc=$?
        [ $rc = 77 ] && ! grep -q 'did not load' $tmp/$b.log || { say "$b: exit $rc"; cat $tmp/$b.log; exit 1; }
        say "$b here: $(grep SKIPPED $tmp/$b.log)"
    done
    say "isolated runs: worker job $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["output"]["timings"])' $tmp/result.json), benches ok"
}

fetch_wheels() {
    mkdir -p .gpu/whl
    local w name
    for w in $WHEELS; do
        name=${w%%==*}
        ls .gpu/whl/"${name//-/_}"-"${w##*==}"-*.whl >/dev/null 2>&1 && continue
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d .gpu/whl "$w"
    done
    # one version of each: two would stop the install
    [ "$(ls .gpu/whl | wc -l)" = "$(wc -w <<<"$WHEELS")" ] || { say "unexpected wheels in .gpu/whl:"; ls .gpu/whl; exit 1; }
}

pack() {
    mkdir -p .gpu
    rm -rf .gpu/bin .gpu/lib .gpu/lib.tar.xz
    cp -a $PACK/bin .gpu/bin
    tar -C $PACK/lib -cf - . | xz -9e -T"$(nproc)" >.gpu/lib.tar.xz
    local glibc
    glibc=$(for f in $PACK/bin/* $PACK/lib/*; do objdump -T "$f"; done | grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -1)
    {
        echo "commit $(git rev-parse HEAD)$(git diff --quiet HEAD -- $SOURCES || echo ' (+ uncommitted changes)')"
        echo "built $(date -u +%FT%TZ) with $(nvcc --version | grep -o 'release [0-9.]*'), $(cc --version | head -1)"
        echo "needs $glibc or newer"
        (cd .gpu && sha256sum bin/* lib.tar.xz whl/*)
        echo "libraries: $(ls $PACK/lib | tr '\n' ' ')"
    } >.gpu/MANIFEST
    # what the binaries were built from; gpu-check.sh checks the tree against it
    find $SOURCES -type f -print0 | sort -z | xargs -0 sha256sum >.gpu/SOURCES
    say "packed .gpu: $(du -sh --apparent-size .gpu | cut -f1) (bin $(du -sh --apparent-size .gpu/bin | cut -f1), lib.tar.xz $(du -sh --apparent-size .gpu/lib.tar.xz | cut -f1) of $(du -sh --apparent-size $PACK/lib | cut -f1), whl $(du -sh --apparent-size .gpu/whl | cut -f1)); tracked files $(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1 | numfmt --to=iec)"
}

build
stage_binaries
stage_libraries
check_isolated
fetch_wheels
pack

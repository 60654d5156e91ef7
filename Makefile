# Thin wrapper over CMake/CTest. See README.md.
BUILD     ?= build
JOBS      ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all deps configure test test-avx2 sanitize fuzz demo clean

all: configure
	cmake --build $(BUILD) -j $(JOBS)

deps:
	@scripts/install-deps.sh

configure:
	@[ -f $(BUILD)/CMakeCache.txt ] || cmake -S . -B $(BUILD) $(CMAKE_ARGS)

# Tests run in parallel, each with OpenMP threads: passive waiting keeps idle
# OpenMP threads from spinning on the cores the other tests need.
test: deps all
	cd $(BUILD) && OMP_WAIT_POLICY=PASSIVE ctest --output-on-failure -j $(JOBS)

# The CPU backend as an AVX2-only CPU runs it (no AVX-512 clones, AVX-512
# masked from detection, so OpenBLAS gets its Haswell/Zen kernels), on any
# machine: the engine and op tests, and the bf16 path's refusal.
test-avx2: deps
	@[ -f build-avx2/CMakeCache.txt ] || cmake -S . -B build-avx2 -DSDXL_CPU_AVX512=OFF -DSDXL_CUDA=OFF
	cmake --build build-avx2 -j $(JOBS)
	cd build-avx2 && OMP_WAIT_POLICY=PASSIVE ctest --output-on-failure -j $(JOBS) -R 'test_(ops_|unet|vae|text_encoder|txt2img|cpuid|cpu_bf16|backend)'

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer.
sanitize: deps
	$(MAKE) test BUILD=build-asan CMAKE_ARGS="-DSDXL_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug"

# libFuzzer binaries (clang). Run one with scripts/fuzz.sh NAME SECONDS.
fuzz: deps
	@[ -f build-fuzz/CMakeCache.txt ] || CC=clang cmake -S . -B build-fuzz -DSDXL_FUZZ=ON
	cmake --build build-fuzz -j $(JOBS)

# The worker in local-test mode with the bundled demo model (config/demo.json:
# tests/data/demo/, a tiny SDXL trained on pictures of flat shapes), offline:
# first on test_input.json (the original worker's 1024² job, written for the
# real checkpoint), then on demo_input.json (a 256² job in words the demo
# model knows): the demo picture. Images go to out/, result JSONs next to
# them. Each run's log (local-test mode logs the whole result, images
# included, as the runpod SDK does) goes to out/<result>.log; a run that
# fails prints its log's tail.
DEMO_WORKER = MODELS_CONFIG=config/demo.json SDXL_OUTPUT_DIR=out OMP_WAIT_POLICY=PASSIVE $(BUILD)/sdxl-worker
demo_run = @echo "demo: running the worker on $(1) ..." && \
	{ $(DEMO_WORKER) $(1) > out/$(2).json 2> out/$(2).log || { tail -n 20 out/$(2).log; exit 1; }; }

demo: deps all
	@mkdir -p out
	$(call demo_run,test_input.json,result)
	$(call demo_run,demo_input.json,demo_result)
	@echo "demo: test_input.json -> out/local_test_0.png (result JSON: out/result.json, log: out/result.log)"
	@echo "demo: demo_input.json -> out/demo_0.png, the demo picture of" \
	  "$$(sed -n 's/.*"prompt": *"\([^"]*\)".*/\1/p' demo_input.json) (result JSON: out/demo_result.json)"

clean:
	rm -rf build build-asan build-fuzz

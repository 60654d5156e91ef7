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

# The worker in local-test mode on test_input.json with the bundled small
# model (config/demo.json; random weights, so the picture is noise that
# proves the pipeline), offline. Images go to out/, the result JSON to
# out/result.json.
demo: deps all
	@mkdir -p out
	MODELS_CONFIG=config/demo.json SDXL_OUTPUT_DIR=out OMP_WAIT_POLICY=PASSIVE \
	  $(BUILD)/sdxl-worker test_input.json > out/result.json
	@echo "demo: wrote $$(ls out/*.png | tr '\n' ' ')(A1111 parameters inside); result JSON: out/result.json"

clean:
	rm -rf build build-asan build-fuzz

# Thin wrapper over CMake/CTest. See README.md.
BUILD     ?= build
JOBS      ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all deps configure test sanitize fuzz demo clean

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

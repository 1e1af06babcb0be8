# SPDX-License-Identifier: Apache-2.0
# The two commands of the README: `make demo` (main job) and `make test` (all tests). Both install what is
# missing first (Debian packages with apt-get, Python packages with pip).
PY ?= python3
PIP ?= $(PY) -m pip
JOBS ?= 2
BUILD ?= build/cpp
ASAN_BUILD ?= build/asan
REAL_DATA ?= ../shared/data/real
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

APT_LIBS := libgtest-dev libgmock-dev libbenchmark-dev clang-format libhdf5-dev liblz4-dev libzstd-dev libdeflate-dev
PY_DEPS := "scikit-build-core>=0.10" "nanobind>=2.0" "numpy>=1.22" pytest tqdm h5py opencv-python-headless torch==2.13.0

.PHONY: deps build install test test-cpp test-python test-asan test-tsan test-asan-python fuzz fuzz-build demo bench format clean

deps:
	@missing=""; \
	for p in $(APT_LIBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v g++ >/dev/null || missing="$$missing g++"; \
	command -v cmake >/dev/null || missing="$$missing cmake"; \
	command -v ninja >/dev/null || missing="$$missing ninja-build"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@$(PY) -c "import scikit_build_core, nanobind, numpy, pytest, tqdm, h5py, cv2, torch" 2>/dev/null || \
	  $(PIP) install -q $(PY_DEPS)

build: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DEVLOADER_BUILD_TESTS=ON -DEVLOADER_WERROR=ON
	cmake --build $(BUILD) -j $(JOBS)

install: deps
	$(PIP) install -q --no-build-isolation .

test-cpp: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

test-python: install
	$(PY) -m pytest -q tests/python

test: test-cpp test-python

test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DEVLOADER_BUILD_TESTS=ON \
	  -DEVLOADER_SANITIZE="address;undefined"
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS)

# ThreadSanitizer build of the C++ tests (the loader engine, the shared readers and stores).
test-tsan: deps
	cmake -S . -B build/tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEVLOADER_BUILD_TESTS=ON \
	  -DEVLOADER_SANITIZE=thread
	cmake --build build/tsan -j $(JOBS)
	TSAN_OPTIONS=halt_on_error=1 ctest --test-dir build/tsan --output-on-failure -j $(JOBS)

# AddressSanitizer + UBSan build of the Python extension (build/asan-python) and the Python tests that drive
# the engine, run against it with libasan preloaded. Other tests: PYTEST_ARGS="-q tests/python/x.py".
test-asan-python: deps
	PY=$(PY) JOBS=$(JOBS) tools/asan_pytest.sh $(PYTEST_ARGS)

# libFuzzer harnesses (clang, ASan+UBSan) of every parser, each run for FUZZ_SECONDS or FUZZ_RUNS inputs
# from the committed seeds, pieces of the real recordings and the kept reproducers; results in
# $(FUZZ_BUILD)/results.tsv, findings in $(FUZZ_BUILD)/findings/. `make test` only replays the corpora.
FUZZ_BUILD ?= build/fuzz
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?= -1
FUZZ_JOBS ?= 1
FUZZ_TARGETS ?=
fuzz-build: deps
	command -v clang++ >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang)
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DEVLOADER_BUILD_TESTS=OFF -DEVLOADER_BUILD_FUZZERS=ON -DEVLOADER_SANITIZE="address;undefined"
	cmake --build $(FUZZ_BUILD) -j $(JOBS)

fuzz: fuzz-build install
	$(PY) tests/fuzz/make_seeds.py --out $(FUZZ_BUILD)/seeds --real $(REAL_DATA)
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_RUNS=$(FUZZ_RUNS) FUZZ_JOBS=$(FUZZ_JOBS) \
	  tests/fuzz/run_fuzzers.sh $(FUZZ_BUILD) $(FUZZ_TARGETS)

# The main job: simulated dataset -> SequentialDataLoader -> a recurrent detector trained with truncated BPTT,
# evaluated (AP@0.5), drawn (evloader_demo/preview.mp4, contact_sheet.png). Also describes the real recordings.
demo: install
	@if [ -d "$(REAL_DATA)" ]; then $(PY) -m evloader info $(REAL_DATA)/*.raw $(REAL_DATA)/*.dat; fi
	$(PY) -m evloader demo

bench: deps
	cmake -S . -B build/bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DEVLOADER_BUILD_TESTS=OFF \
	  -DEVLOADER_BUILD_BENCHMARKS=ON
	cmake --build build/bench -j $(JOBS)
	$(PIP) install -q --no-build-isolation .
	$(PY) bench/python/bench_decode.py

format:
	clang-format -i $$(git ls-files '*.cpp' '*.hpp')

clean:
	rm -rf build

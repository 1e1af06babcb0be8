#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# One call on a lent GPU machine (16 cores): builds evloader._core against the machine's Python and PyTorch,
# runs the CUDA tests (tests/python/test_cuda.py), and meanwhile runs the fuzz harnesses carried in
# .devcarry/fuzz.tar.xz (tools/prepare_device_carry.sh) for FUZZ_SECONDS each, FUZZ_JOBS at once.
# Results go to $OUT: cuda_tests.log, fuzz_results.tsv, fuzz_logs.tar.xz, findings if any.
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
root=$(pwd)
carry=$root/.devcarry
nproc; head -2 /etc/os-release; python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.is_available())'

fuzz_pid=
if [ -f "$carry/fuzz.tar.xz" ]; then
  mkdir -p /tmp/fz && tar -C /tmp/fz -xJf "$carry/fuzz.tar.xz"
  (cd "$root" && LD_LIBRARY_PATH=/tmp/fz/fuzz/lib FUZZ_SECONDS=${FUZZ_SECONDS:-420} FUZZ_JOBS=${FUZZ_JOBS:-12} \
     FUZZ_RUNS=${FUZZ_RUNS:--1} tests/fuzz/run_fuzzers.sh /tmp/fz/fuzz >"$out/fuzz_summary.txt" 2>&1) &
  fuzz_pid=$!
fi

export LD_LIBRARY_PATH=$carry/sysroot/lib:${LD_LIBRARY_PATH:-}
build=/tmp/evl-py
cmake -S "$root" -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DEVLOADER_BUILD_PYTHON=ON \
  -DEVLOADER_BUILD_TESTS=OFF -DEVLOADER_WITH_HDF5=OFF -DPython_EXECUTABLE="$(command -v python3)" \
  -Dnanobind_DIR="$carry/nanobind/cmake" -DCMAKE_PREFIX_PATH="$carry/sysroot" >"$out/build.log" 2>&1 &&
  cmake --build $build -j 4 >>"$out/build.log" 2>&1
echo "build rc=$?"; tail -3 "$out/build.log"
pkg=/tmp/evl-pkg && rm -rf $pkg && mkdir -p $pkg && cp -r "$root/python/evloader" $pkg/
cp $build/python/bindings/_core*.so $pkg/evloader/
(cd /tmp && PYTHONPATH=$pkg:$root/tests/python python3 -m pytest -q -p no:cacheprovider \
   "$root/tests/python/test_cuda.py" >"$out/cuda_tests.log" 2>&1; echo "cuda tests rc=$?" >>"$out/cuda_tests.log")
tail -15 "$out/cuda_tests.log"

if [ -n "$fuzz_pid" ]; then
  wait "$fuzz_pid"
  cat "$out/fuzz_summary.txt"
  cp /tmp/fz/fuzz/results.tsv "$out/fuzz_results.tsv"
  tar -C /tmp/fz/fuzz -cJf "$out/fuzz_logs.tar.xz" logs findings
fi

#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Packs what tools/device_check.sh needs on a lent GPU machine (which has CUDA, PyTorch, CMake and ninja but
# no package registry) into .devcarry/ (git-ignored): nanobind's sources, the lz4/zstd headers and libraries
# the AEDAT4 reader links, and the libFuzzer programs of a fuzz build with the shared libraries they load.
#   tools/prepare_device_carry.sh [FUZZ_BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
fuzz_build=${1:-build/fuzz}
carry=.devcarry
rm -rf "$carry" && mkdir -p "$carry/sysroot/include" "$carry/sysroot/lib" "$carry/fuzz/tests/fuzz" "$carry/fuzz/lib"
grep -qx '/.devcarry/' .git/info/exclude 2>/dev/null || echo '/.devcarry/' >>.git/info/exclude

cp -r "$(python3 -c 'import nanobind, os; print(os.path.dirname(nanobind.__file__))')" "$carry/nanobind"
cp /usr/include/lz4.h /usr/include/lz4frame.h /usr/include/lz4hc.h /usr/include/zstd.h \
  /usr/include/zstd_errors.h "$carry/sysroot/include/"
for lib in liblz4 libzstd; do
  real=$(readlink -f /usr/lib/x86_64-linux-gnu/$lib.so)
  cp "$real" "$carry/sysroot/lib/$lib.so.1"
  cp "$real" "$carry/sysroot/lib/$lib.so"
done

# Fuzz programs, stripped of debug info (the stack traces keep symbols), and every library they load
# except the C runtime's own (the machine's glibc is at least as new as this one's).
shopt -s nullglob
bins=("$fuzz_build"/tests/fuzz/fuzz_*)
[ ${#bins[@]} -gt 0 ] || { echo "no fuzz programs in $fuzz_build (make fuzz-build)"; du -sh "$carry"/*; exit 0; }
for bin in "${bins[@]}"; do
  strip --strip-debug -o "$carry/fuzz/tests/fuzz/$(basename "$bin")" "$bin"
done
ldd "${bins[@]}" | awk '/=> \// {print $3}' | sort -u |
  grep -vE '/(libc|libm|libpthread|libdl|librt|libresolv|libnss[^/]*|libanl|libutil|ld-linux[^/]*)\.so' | while read -r lib; do
  cp -L "$lib" "$carry/fuzz/lib/"
done
if [ -d "$fuzz_build/seeds" ]; then cp -r "$fuzz_build/seeds" "$carry/fuzz/seeds"; fi
tar -C "$carry" -cJf "$carry/fuzz.tar.xz" fuzz && rm -rf "$carry/fuzz"
du -sh "$carry"/*

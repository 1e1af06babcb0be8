#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the Python tests that drive the C++ engine against an AddressSanitizer + UBSan build of evloader._core:
# builds the extension into $BUILD (default build/asan-python), assembles an importable package (the sources
# of python/evloader + the sanitized _core) in a temporary folder, and runs pytest with libasan preloaded
# (CPython itself is not instrumented). Any ASan or UBSan report aborts the run with its stack.
#
# Usage: tools/asan_pytest.sh [pytest options] [test paths]   (no path: the engine-driving test files below)
# Environment: PY (python3), JOBS (2), BUILD (build/asan-python), KEEP=1 keeps the assembled package.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-python3}"
JOBS="${JOBS:-2}"
BUILD="${BUILD:-build/asan-python}"
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac

DEFAULT_TESTS=(
  test_sequential_loader.py
  test_cd_processor_loader.py
  test_loader_events.py
  test_tensor_file.py
  test_malformed.py
  test_io.py
  test_bad_inputs.py
  test_hdf5_events.py
  test_scheduler.py
  test_faults.py
)

# 1. The sanitized extension. RelWithDebInfo: ASan's checks do not need -O0, and the tests stay fast enough.
PYTHON_EXE="$(command -v "$PY")"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DEVLOADER_BUILD_PYTHON=ON -DEVLOADER_BUILD_TESTS=OFF -DEVLOADER_SANITIZE="address;undefined" \
  -DPython_EXECUTABLE="$PYTHON_EXE" >/dev/null
cmake --build "$BUILD" -j "$JOBS" --target _core

# 2. An importable package: the Python sources as they are in the tree, with the sanitized _core.
PKG="$(mktemp -d "${TMPDIR:-/tmp}/evloader-asan.XXXXXX")"
if [ "${KEEP:-0}" != 1 ]; then trap 'rm -rf "$PKG"' EXIT; fi
cp -r "$ROOT/python/evloader" "$PKG/evloader"
find "$PKG/evloader" -name '__pycache__' -prune -exec rm -rf {} + -o -name '_core*.so' -exec rm -f {} +
core="$(find "$BUILD/python/bindings" -maxdepth 1 -name '_core*.so' | head -n 1)"
[ -n "$core" ] || { echo "asan_pytest: no _core*.so in $BUILD/python/bindings" >&2; exit 1; }
cp "$core" "$PKG/evloader/"
# A pytest plugin skipping the tests that run code under an address-space limit (RLIMIT_AS, set in the test or
# in a helper of its module it calls): ASan reserves terabytes of address space for its shadow memory, so it
# cannot even start there, and its operator new aborts instead of throwing std::bad_alloc anyway.
cat >"$PKG/asan_skips.py" <<'PYEOF'
import inspect
import re

import pytest


def _sets_address_space_limit(fn, module, depth=0):
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return False
    if "RLIMIT_AS" in source:
        return True
    if depth >= 2:
        return False
    for name in set(re.findall(r"\b([A-Za-z_]\w*)\s*\(", source)):
        helper = getattr(module, name, None)
        if inspect.isfunction(helper) and helper is not fn and _sets_address_space_limit(helper, module, depth + 1):
            return True
    return False


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="runs code under an address-space limit (RLIMIT_AS), where ASan cannot run")
    for item in items:
        fn = getattr(item, "function", None)
        module = getattr(item, "module", None)
        if fn is not None and module is not None and _sets_address_space_limit(fn, module):
            item.add_marker(skip)
PYEOF

# 3. The runtime: libasan first in the process (CPython is not linked with it), then libstdc++ so that ASan
# finds the real __cxa_throw when it starts (else its interceptor aborts at the first C++ exception).
LIBASAN="$(g++ -print-file-name=libasan.so)"
LIBSTDCXX="$(readlink -f "$(g++ -print-file-name=libstdc++.so)")"
[ -f "$LIBASAN" ] || { echo "asan_pytest: libasan.so not found (g++ -print-file-name)" >&2; exit 1; }
PRELOAD="$LIBASAN:$LIBSTDCXX"
# Reports go to files (pytest captures stderr, and an abort would lose them); printed below.
LOGS="$BUILD/sanitizer-logs"
rm -rf "$LOGS"
mkdir -p "$LOGS"
# detect_leaks=0: CPython, numpy and torch keep allocations until exit (noise, not our leaks).
# protect_shadow_gap=0 / detect_odr_violation=0: torch's libraries map memory and duplicate globals in ways
# ASan otherwise refuses. allocator_may_return_null=1: a malloc too big fails as without ASan (numpy raises
# MemoryError; ASan's operator new still aborts with a report). soft_rss_limit_mb: a runaway run stops there
# rather than taking this machine's memory. PYTHONMALLOC=malloc: Python objects go through ASan's allocator
# too, so that a buffer the bindings hand to Python (or take from it) is checked like any other.
ASAN_OPTIONS="log_path=$LOGS/asan:detect_leaks=0:abort_on_error=1:halt_on_error=1:print_summary=1"
ASAN_OPTIONS+=":protect_shadow_gap=0:detect_odr_violation=0:handle_segv=1"
ASAN_OPTIONS+=":allocator_may_return_null=1:soft_rss_limit_mb=8192"
export ASAN_OPTIONS="$ASAN_OPTIONS${ASAN_EXTRA:+:$ASAN_EXTRA}"
export UBSAN_OPTIONS="log_path=$LOGS/ubsan:halt_on_error=1:abort_on_error=1:print_stacktrace=1"
export PYTHONMALLOC=malloc
export PYTHONPATH="$PKG${PYTHONPATH:+:$PYTHONPATH}"

# Test paths given relative to the caller's folder keep working from $PKG.
# Without any test path among the arguments, the default files are run (with the options given).
args=()
paths=0
for a in "$@"; do
  if [ -e "${a%%::*}" ]; then
    a="$(realpath "${a%%::*}")${a#"${a%%::*}"}"
    paths=1
  fi
  args+=("$a")
done
if [ "$paths" = 0 ]; then
  [ "${#args[@]}" -gt 0 ] || args=(-q)
  for t in "${DEFAULT_TESTS[@]}"; do
    if [ -f "$ROOT/tests/python/$t" ]; then args+=("$ROOT/tests/python/$t"); fi
  done
fi
set -- "${args[@]}"

cd "$PKG"  # never the checkout's python/ folder nor an installed evloader
LD_PRELOAD="$PRELOAD" "$PY" -c '
import sys, evloader, evloader._core as c
pkg = sys.argv[1]
assert evloader.__file__.startswith(pkg) and c.__file__.startswith(pkg), (evloader.__file__, c.__file__)
print("asan_pytest: evloader from", c.__file__)
' "$PKG"

start=$(date +%s)
status=0
LD_PRELOAD="$PRELOAD" "$PY" -m pytest -p no:cacheprovider -p asan_skips -rs "$@" || status=$?
echo "asan_pytest: pytest exit status $status after $(( $(date +%s) - start )) s"
if [ -n "$(ls -A "$LOGS")" ]; then
  for f in "$LOGS"/*; do
    echo "==== $f"
    cat "$f"
  done
  [ "$status" -ne 0 ] || status=1
fi
exit "$status"

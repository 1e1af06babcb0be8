#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Fuzzes the label_map_dictionary.json handling (evloader.data.box_processing.load_label_map and
create_class_lookup) with atheris: any bytes as the file give either a lookup consistent with the map or a
ValueError naming the file, never KeyError/TypeError/AttributeError/UnicodeDecodeError/MemoryError.

    python tests/fuzz/python/fuzz_label_map.py -max_total_time=300 /tmp/work_label_map \
        tests/fuzz/corpus/label_map

`check(data)` is also what tests/python/test_fuzz_replay_python.py replays over the committed corpus and
regressions (no atheris needed there)."""
import os
import sys
import tempfile

import numpy as np

# One file per process, removed after each input: atheris ends through libFuzzer's exit, which skips atexit.
_PATH = os.path.join(tempfile.gettempdir(), f"evloader_fuzz_label_map_{os.getpid()}.json")


def _expect_clean_error(error: ValueError) -> None:
    if type(error) is not ValueError or _PATH not in str(error):
        raise AssertionError(f"error does not name the file or is not a plain ValueError: {error!r}")


def _check_lookup(lookup, label_map, wanted) -> None:
    assert isinstance(lookup, np.ndarray) and lookup.ndim == 1 and np.issubdtype(lookup.dtype, np.integer)
    assert lookup.size == max(label_map) + 1 <= 65536
    position = {name: i for i, name in enumerate(wanted)}
    for class_id in range(lookup.size):
        name = label_map.get(class_id)
        expected = position[name] + 1 if name is not None and name in position else -1
        assert lookup[class_id] == expected, (class_id, name, lookup[class_id], expected)


def check(data: bytes) -> None:
    """One input: the bytes as the label map file, read with the default and two explicit class lists."""
    from evloader.data import box_processing as bp

    with open(_PATH, "wb") as f:
        f.write(data)
    try:
        _check_file(bp)
    finally:
        os.remove(_PATH)


def _check_file(bp) -> None:
    try:
        label_map = bp.load_label_map(_PATH)
    except ValueError as e:
        _expect_clean_error(e)
        label_map = None
    if label_map is not None:
        assert label_map and all(isinstance(k, int) and 0 <= k <= bp.MAX_CLASS_ID for k in label_map)
        assert all(isinstance(v, str) for v in label_map.values())
    names = list(label_map.values()) if label_map else []
    for wanted in ([], names[:2][::-1], ["car", "pedestrian"]):
        try:
            lookup = bp.create_class_lookup(_PATH, wanted)
        except ValueError as e:
            _expect_clean_error(e)
            # Only a bad file, or a wanted list the file cannot satisfy, is refused.
            assert label_map is None or (wanted and (all(k == "empty" for k in wanted) or
                                                     any(k not in names for k in wanted))), e
            continue
        assert label_map is not None
        default = [n for n in names if n != "empty"]
        _check_lookup(lookup, label_map, wanted or default)


def main() -> None:
    import atheris

    with atheris.instrument_imports():
        import json  # noqa: F401  (the parser under test)

        from evloader.data import box_processing  # noqa: F401
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

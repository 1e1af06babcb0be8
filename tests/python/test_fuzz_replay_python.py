# SPDX-License-Identifier: Apache-2.0
"""Replays the label-map fuzz corpus and kept crash reproducers (tests/fuzz/{corpus,regressions}/label_map)
through the atheris harness's check function, so CI guards them without atheris."""
import importlib.util
import pathlib

import pytest

FUZZ = pathlib.Path(__file__).resolve().parents[1] / "fuzz"


def _harness():
    spec = importlib.util.spec_from_file_location("fuzz_label_map", FUZZ / "python" / "fuzz_label_map.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


INPUTS = sorted(p for kind in ("corpus", "regressions") for p in (FUZZ / kind / "label_map").glob("*")
                if p.is_file() and p.name != ".gitkeep")


@pytest.fixture(scope="module")
def harness():
    return _harness()


def test_label_map_inputs_exist():
    assert len(INPUTS) >= 5


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_label_map_replay(harness, path):
    harness.check(path.read_bytes())


# Findings of the label-map fuzzer, each as it used to fail: MemoryError for a huge class id,
# UnicodeDecodeError for latin-1 bytes, RecursionError for deep nesting; non-string names, duplicate and
# negative ids were taken silently. Each is now a ValueError naming the file.
@pytest.mark.parametrize("content, needle", [
    (b'{"99999999999999": "car"}', "0..65535"),
    ('{"0": "pi\u00e9ton"}'.encode("latin-1"), "UTF-8"),
    (b'{"0": ' + b"[" * 5000, "nested too deeply"),
    (b'{"0": ["car"]}', "must be a string"),
    (b'{"1": "car", "01": "bus"}', "more than once"),
    (b'{"-1": "car"}', "0..65535"),
    (b'["car"]', "JSON object"),
    (b"", "not a JSON label map"),
])
def test_label_map_errors_name_the_file(tmp_path, content, needle):
    from evloader.data import box_processing as bp

    path = tmp_path / "label_map_dictionary.json"
    path.write_bytes(content)
    for call in (lambda: bp.load_label_map(str(path)), lambda: bp.create_class_lookup(str(path))):
        with pytest.raises(ValueError) as info:
            call()
        assert type(info.value) is ValueError
        assert str(path) in str(info.value) and needle in str(info.value)


def test_label_map_accepts_padded_ids_and_utf16(tmp_path):
    from evloader.data import box_processing as bp

    path = tmp_path / "label_map_dictionary.json"
    path.write_bytes(b'{" 0 ": "car", "007": "pedestrian", "65535": "rare"}')
    assert bp.load_label_map(str(path)) == {0: "car", 7: "pedestrian", 65535: "rare"}
    assert bp.create_class_lookup(str(path), ["pedestrian"]).size == 65536
    path.write_bytes('{"0": "car", "1": "pi\u00e9ton"}'.encode("utf-16"))
    assert bp.create_class_lookup(str(path)).tolist() == [1, 2]
